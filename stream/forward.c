/* forward.c: forwarders, a data stream mirrored upstream (see forward.h and
 * docs/internals/forward.md).
 *
 * A forwarder is an in-process consumer ("forward-NAME") of its stream.
 * Each shard hands it one batch at a time; the batch's records wait in that
 * shard's lane until the destination has acknowledged every one of them,
 * and only then does the shard's checkpoint move. A crash or an outage of
 * any length therefore loses nothing: the log still holds what was not
 * acknowledged, and forwarding resumes from the checkpoint.
 *
 * Order per partition key. Kinesis's PutRecords and JetStream's pipelined
 * publishes may each fail for some records and not others; resending a
 * failed record after a later one of its key succeeded would reorder them
 * upstream. So, when ordered (the default), a request carries at most one
 * record of each key: the first still pending of each, in log order. The
 * next record of a key goes only after the previous one was acknowledged.
 * Keys of different shards never meet (a key lives in one shard at a time,
 * and a child shard is read only after its parents), so the lanes of a
 * stream's shards run side by side.
 */
#define G_LOG_DOMAIN "forward"

#include "forward.h"

#define KINESIS_MAX_RECORDS 500
#define KINESIS_MAX_REQUEST_BYTES (5 * 1024 * 1024)
#define KINESIS_MAX_RECORD_BYTES (1024 * 1024) /* data and partition key */
#define KINESIS_ANSWER_MAX (1024 * 1024)
#define NATS_MAX_REQUEST_BYTES (8 * 1024 * 1024)
#define NATS_ACK_WAIT_MS 5000
#define HTTP_TIMEOUT_S 30
#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 10000

typedef enum { DEST_KINESIS, DEST_NATS } Destination;

typedef struct _Forwarder Forwarder;

struct _StreamForwardService {
  StreamStore *store;
  EdgeMetrics *metrics;
  SoupSession *session;
  GPtrArray *forwarders; /* Forwarder * */
};

/* One shard's batch on its way upstream. */
typedef struct {
  Forwarder *f;
  StreamBatch *batch;
  GPtrArray *pending; /* StreamRecord * (the batch's), in log order */
  GPtrArray *request; /* the records of the request under way */
  guint failures;     /* attempts in a row that failed for some record */
  guint retry_timer;
} Lane;

struct _Forwarder {
  gint refs;
  StreamForwardService *service;
  const EdgeConfigForwarder *config;
  Destination destination;
  char *source;
  char *consumer_name;
  char *labels;         /* forwarder="NAME", for its metrics */
  char *target;         /* kinesis: the stream written to; nats: the subject */
  char *url;            /* kinesis: ENDPOINT/ */
  StreamJetStream *jetstream;
  StreamConsumer *consumer;
  GPtrArray *lanes;     /* Lane * under way */
  GCancellable *cancellable;
  gboolean stopped;
  /* What /v1/forwarders shows. */
  guint64 forwarded_records, forwarded_bytes, requests, failed_requests, retried_records;
  guint64 skipped_records; /* larger than the destination takes */
  gint64 last_forward_ms;
  char *last_error;
  gint64 last_error_ms;
};

static Forwarder *
forwarder_ref (Forwarder *f)
{
  g_atomic_int_inc (&f->refs);
  return f;
}

static void
forwarder_unref (Forwarder *f)
{
  if (!g_atomic_int_dec_and_test (&f->refs))
    return;
  g_ptr_array_unref (f->lanes);
  g_object_unref (f->cancellable);
  stream_jetstream_free (f->jetstream);
  g_free (f->source);
  g_free (f->consumer_name);
  g_free (f->labels);
  g_free (f->target);
  g_free (f->url);
  g_free (f->last_error);
  g_free (f);
}

static void
lane_free (Lane *l)
{
  g_clear_handle_id (&l->retry_timer, g_source_remove);
  g_ptr_array_unref (l->pending);
  g_clear_pointer (&l->request, g_ptr_array_unref);
  g_free (l);
}

static void
set_error (Forwarder *f, const char *message)
{
  if (f->last_error == NULL || !g_str_equal (f->last_error, message))
    g_warning ("forwarder \"%s\": %s", f->config->name, message);
  g_free (f->last_error);
  f->last_error = g_strdup (message);
  f->last_error_ms = g_get_real_time () / 1000;
}

static gsize
record_bytes (const StreamRecord *r)
{
  return g_bytes_get_size (r->data) + strlen (r->partition_key);
}

/* A record larger than the destination takes can never go: it is counted,
 * reported and passed over, so that it does not hold its shard for ever. */
static void
skip_record (Forwarder *f, const StreamRecord *r, const char *shard_id)
{
  f->skipped_records++;
  if (f->service->metrics)
    edge_metrics_add (f->service->metrics, "edged_forwarder_skipped_records_total", f->labels, 1);
  g_autofree char *message = g_strdup_printf (
      "record %" G_GUINT64_FORMAT " of %s (%" G_GSIZE_FORMAT " bytes) is larger than %s takes: "
      "skipped", r->number, shard_id, record_bytes (r),
      f->destination == DEST_KINESIS ? "Kinesis (1 MiB)" : "the NATS servers");
  set_error (f, message);
}

/* ---- requests: at most one record of each key when ordered ---- */

static void send_request (Lane *l);

static void
lane_finish (Lane *l)
{
  Forwarder *f = l->f;
  g_ptr_array_remove (f->lanes, l);
  stream_consumer_done (f->consumer, l->batch, TRUE);
  l->batch = NULL;
  lane_free (l);
}

static gboolean
on_retry (gpointer data)
{
  Lane *l = data;
  l->retry_timer = 0;
  send_request (l);
  return G_SOURCE_REMOVE;
}

typedef enum {
  SENT_FAILED,  /* send it again */
  SENT_OK,      /* upstream */
  SENT_SKIPPED, /* larger than the destination takes: never will be */
} Sent;

/* The request under way ended: @sent[i] says what became of its i-th
 * record, @error why some failed. */
static void
request_ended (Lane *l, const guint8 *sent, const char *error)
{
  Forwarder *f = l->f;
  EdgeMetrics *metrics = f->service->metrics;
  g_autoptr (GHashTable) finished = g_hash_table_new (NULL, NULL);
  guint failed = 0;

  f->requests++;
  for (guint i = 0; i < l->request->len; i++) {
    StreamRecord *r = g_ptr_array_index (l->request, i);
    if (sent[i] == SENT_FAILED) {
      failed++;
      continue;
    }
    g_hash_table_add (finished, r);
    if (sent[i] == SENT_OK) {
      f->forwarded_records++;
      f->forwarded_bytes += g_bytes_get_size (r->data);
    } else {
      skip_record (f, r, l->batch->shard_id);
    }
  }
  if (g_hash_table_size (finished)) {
    guint kept = 0;
    for (guint i = 0; i < l->pending->len; i++)
      if (!g_hash_table_contains (finished, l->pending->pdata[i]))
        l->pending->pdata[kept++] = l->pending->pdata[i];
    g_ptr_array_set_size (l->pending, kept);
    f->last_forward_ms = g_get_real_time () / 1000;
  }
  g_clear_pointer (&l->request, g_ptr_array_unref);
  if (metrics && g_hash_table_size (finished))
    edge_metrics_add (metrics, "edged_forwarder_records_total", f->labels,
                      g_hash_table_size (finished));
  if (metrics && failed)
    edge_metrics_add (metrics, "edged_forwarder_failed_requests_total", f->labels, 1);

  if (failed) {
    f->failed_requests++;
    f->retried_records += failed;
    g_autofree char *message = g_strdup_printf ("%u of %u records not taken: %s", failed,
                                                (guint) (failed + g_hash_table_size (finished)),
                                                error ? error : "no reason given");
    set_error (f, message);
    guint delay = RETRY_FIRST_MS << MIN (l->failures, 7u);
    l->failures++;
    l->retry_timer = g_timeout_add (MIN (delay, RETRY_MAX_MS), on_retry, l);
    return;
  }
  l->failures = 0;
  if (l->pending->len == 0)
    lane_finish (l);
  else
    send_request (l);
}

/* The records of the next request: in log order, within the destination's
 * limits and, when ordered, the first pending one of each key. */
static GPtrArray *
next_request (Lane *l, guint max_records, gsize max_bytes)
{
  GPtrArray *request = g_ptr_array_new ();
  g_autoptr (GHashTable) keys = g_hash_table_new (g_str_hash, g_str_equal);
  gsize bytes = 0;
  for (guint i = 0; i < l->pending->len && request->len < max_records; i++) {
    StreamRecord *r = g_ptr_array_index (l->pending, i);
    if (l->f->config->ordered && !g_hash_table_add (keys, r->partition_key))
      continue;
    if (request->len && bytes + record_bytes (r) > max_bytes)
      break;
    bytes += record_bytes (r);
    g_ptr_array_add (request, r);
  }
  return request;
}

/* ---- Kinesis ---- */

typedef struct {
  Lane *l;
  Forwarder *f;
} Call;

static void
call_free (Call *c)
{
  forwarder_unref (c->f);
  g_free (c);
}

static char *
kinesis_error (SoupMessage *msg, GBytes *answer)
{
  gsize len = 0;
  const char *data = answer ? g_bytes_get_data (answer, &len) : NULL;
  g_autofree char *copy = data ? g_strndup (data, len) : NULL;
  g_autoptr (JsonNode) node = copy ? json_from_string (copy, NULL) : NULL;
  JsonObject *o = node && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  const char *type = edge_json_member_string (o, "__type");
  const char *message = edge_json_member_string (o, "message");
  if (message == NULL)
    message = edge_json_member_string (o, "Message");
  if (type && strchr (type, '#'))
    type = strchr (type, '#') + 1;
  return g_strdup_printf ("%u %s%s%s", soup_message_get_status (msg),
                          type ? type : soup_message_get_reason_phrase (msg), message ? ": " : "",
                          message ? message : "");
}

static void
kinesis_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Call *c = data;
  Lane *l = c->l;
  Forwarder *f = c->f;
  SoupMessage *msg = edge_client_send_message (result);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) answer = edge_client_send_finish (result, &error);
  (void) source;
  if (f->stopped) {
    call_free (c);
    return;
  }
  guint n = l->request->len;
  g_autofree guint8 *sent = g_new0 (guint8, n);
  g_autofree char *reason = NULL;

  if (answer == NULL) {
    reason = g_strdup (error->message);
  } else if (soup_message_get_status (msg) != SOUP_STATUS_OK) {
    reason = kinesis_error (msg, answer);
  } else {
    gsize len;
    const char *text = g_bytes_get_data (answer, &len);
    g_autofree char *copy = g_strndup (text, len);
    g_autoptr (JsonNode) node = json_from_string (copy, NULL);
    JsonObject *o = node && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
    JsonNode *records = o ? json_object_get_member (o, "Records") : NULL;
    JsonArray *a = records && JSON_NODE_HOLDS_ARRAY (records) ? json_node_get_array (records)
                                                              : NULL;
    if (a == NULL || json_array_get_length (a) != n) {
      reason = g_strdup ("PutRecords answered without one result per record");
    } else {
      for (guint i = 0; i < n; i++) {
        JsonNode *e = json_array_get_element (a, i);
        JsonObject *r = JSON_NODE_HOLDS_OBJECT (e) ? json_node_get_object (e) : NULL;
        const char *code = edge_json_member_string (r, "ErrorCode");
        sent[i] = r && code == NULL && edge_json_member_string (r, "SequenceNumber") ? SENT_OK
                                                                                     : SENT_FAILED;
        if (sent[i] == SENT_FAILED && reason == NULL) {
          const char *message = edge_json_member_string (r, "ErrorMessage");
          reason = g_strdup_printf ("%s%s%s", code ? code : "no sequence number",
                                    message ? ": " : "", message ? message : "");
        }
      }
    }
  }
  call_free (c);
  request_ended (l, sent, reason);
}

static void
send_kinesis (Lane *l)
{
  Forwarder *f = l->f;
  const EdgeConfigForwarder *config = f->config;
  l->request = next_request (l, KINESIS_MAX_RECORDS, KINESIS_MAX_REQUEST_BYTES);

  g_autoptr (GString) body = g_string_new ("{\"StreamName\":");
  edge_json_append_string (body, f->target, strlen (f->target));
  g_string_append (body, ",\"Records\":[");
  for (guint i = 0; i < l->request->len; i++) {
    StreamRecord *r = g_ptr_array_index (l->request, i);
    gsize len;
    const guchar *data = g_bytes_get_data (r->data, &len);
    g_autofree char *encoded = g_base64_encode (data, len);
    g_string_append (body, i ? ",{\"Data\":\"" : "{\"Data\":\"");
    g_string_append (body, encoded);
    g_string_append (body, "\",\"PartitionKey\":");
    edge_json_append_string (body, r->partition_key, strlen (r->partition_key));
    g_string_append_c (body, '}');
  }
  g_string_append (body, "]}");
  g_autoptr (GBytes) bytes = g_string_free_to_bytes (g_steal_pointer (&body));

  g_autoptr (SoupMessage) msg = soup_message_new ("POST", f->url);
  if (msg == NULL) {
    g_autofree guint8 *none = g_new0 (guint8, l->request->len);
    g_autofree char *reason = g_strdup_printf ("%s is not a URL", f->url);
    request_ended (l, none, reason);
    return;
  }
  SoupMessageHeaders *headers = soup_message_get_request_headers (msg);
  soup_message_set_request_body_from_bytes (msg, "application/x-amz-json-1.1", bytes);
  soup_message_headers_replace (headers, "X-Amz-Target", "Kinesis_20131202.PutRecords");
  EdgeClientCredentials credentials = { config->access_key_id, config->secret_access_key,
                                        config->region };
  edge_client_sign (msg, &credentials, "kinesis", bytes, FALSE);

  Call *c = g_new0 (Call, 1);
  c->l = l;
  c->f = forwarder_ref (f);
  edge_client_send_async (f->service->session, msg, KINESIS_ANSWER_MAX, f->cancellable,
                          kinesis_done, c);
}

/* ---- NATS JetStream ---- */

/* Header values cannot hold line breaks: control characters and '%' are
 * percent-encoded. */
static char *
header_value (const char *text)
{
  GString *out = g_string_new (NULL);
  for (const guchar *p = (const guchar *) text; *p; p++) {
    if (*p < 0x20 || *p == 0x7f || *p == '%')
      g_string_append_printf (out, "%%%02X", *p);
    else
      g_string_append_c (out, (char) *p);
  }
  return g_string_free (out, FALSE);
}

static void
nats_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Call *c = data;
  Lane *l = c->l;
  Forwarder *f = c->f;
  g_autoptr (GError) error = NULL;
  g_autofree char *reason = NULL;
  g_autoptr (GArray) results = stream_jetstream_publish_finish (result, &reason, &error);
  (void) source;
  if (f->stopped) {
    call_free (c);
    return;
  }
  guint n = l->request->len;
  g_autofree guint8 *sent = g_new0 (guint8, n);
  for (guint i = 0; results && i < n; i++) {
    guint8 r = g_array_index (results, guint8, i);
    sent[i] = r == STREAM_JETSTREAM_STORED ? SENT_OK
              : r == STREAM_JETSTREAM_TOO_LARGE ? SENT_SKIPPED
                                                 : SENT_FAILED;
  }
  if (results == NULL)
    reason = g_strdup (error->message);
  call_free (c);
  request_ended (l, sent, reason);
}

static void
send_nats (Lane *l)
{
  Forwarder *f = l->f;
  l->request = next_request (l, (guint) f->config->batch_records, NATS_MAX_REQUEST_BYTES);
  g_autoptr (GPtrArray) messages = g_ptr_array_new_with_free_func (
      (GDestroyNotify) stream_jetstream_message_free);
  for (guint i = 0; i < l->request->len; i++) {
    StreamRecord *r = g_ptr_array_index (l->request, i);
    StreamJetStreamMessage *m = g_new0 (StreamJetStreamMessage, 1);
    char sequence[STREAM_SEQUENCE_MAX_LEN + 1];
    stream_sequence_format_to (l->batch->shard_ordinal, r->number, sequence);
    m->subject = g_strdup (f->target);
    m->msg_id = g_strdup_printf ("%s/%s/%s", f->source, f->config->stream, sequence);
    m->data = g_bytes_ref (r->data);
    g_autoptr (GStrvBuilder) h = g_strv_builder_new ();
    g_autofree char *key = header_value (r->partition_key);
    g_autofree char *arrival = g_strdup_printf ("%" G_GINT64_FORMAT, r->arrival_ms);
    const char *pairs[] = { "Edged-Partition-Key", key,  "Edged-Sequence-Number", sequence,
                            "Edged-Shard-Id",      l->batch->shard_id,
                            "Edged-Arrival-Ms",    arrival,
                            "Edged-Source",        f->source,
                            "Edged-Stream",        f->config->stream };
    for (guint j = 0; j < G_N_ELEMENTS (pairs); j++)
      g_strv_builder_add (h, pairs[j]);
    m->headers = g_strv_builder_end (h);
    g_ptr_array_add (messages, m);
  }
  Call *c = g_new0 (Call, 1);
  c->l = l;
  c->f = forwarder_ref (f);
  stream_jetstream_publish_async (f->jetstream, messages, NATS_ACK_WAIT_MS, f->cancellable,
                                  nats_done, c);
}

static void
send_request (Lane *l)
{
  if (l->f->destination == DEST_KINESIS)
    send_kinesis (l);
  else
    send_nats (l);
}

static void
on_batch (StreamConsumer *consumer, StreamBatch *batch, gpointer data)
{
  Forwarder *f = data;
  (void) consumer;
  if (f->stopped) {
    stream_consumer_done (f->consumer, batch, FALSE);
    return;
  }
  Lane *l = g_new0 (Lane, 1);
  l->f = f;
  l->batch = batch;
  l->pending = g_ptr_array_sized_new (batch->records->len);
  for (guint i = 0; i < batch->records->len; i++) {
    StreamRecord *r = g_ptr_array_index (batch->records, i);
    if (f->destination == DEST_KINESIS && record_bytes (r) > KINESIS_MAX_RECORD_BYTES) {
      /* Kinesis takes no record over 1 MiB; edged's streams may hold up to
       * 10 MiB. Such a record can never go: it is counted and skipped. */
      skip_record (f, r, batch->shard_id);
      continue;
    }
    g_ptr_array_add (l->pending, r);
  }
  g_ptr_array_add (f->lanes, l);
  if (l->pending->len == 0)
    lane_finish (l);
  else
    send_request (l);
}

/* ---- configuration and lifetime ---- */

/* A NATS subject: dot-separated tokens of printable characters, without
 * spaces or wildcards (a publish subject). */
static gboolean
subject_valid (const char *subject)
{
  if (subject[0] == '\0' || subject[0] == '.' || g_str_has_suffix (subject, ".") ||
      strstr (subject, ".."))
    return FALSE;
  for (const guchar *p = (const guchar *) subject; *p; p++)
    if (*p <= ' ' || *p == 0x7f || *p == '*' || *p == '>')
      return FALSE;
  return TRUE;
}

static char *
expand_subject (const char *pattern, const char *source, const char *stream)
{
  g_autoptr (GString) s = g_string_new (pattern);
  g_string_replace (s, "{source}", source, 0);
  g_string_replace (s, "{stream}", stream, 0);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static char *
default_source (void)
{
  return g_strdup (g_get_host_name ());
}

gboolean
stream_forward_check_config (const EdgeConfig *config, const char *source, GError **error)
{
  for (guint i = 0; i < config->forwarders->len; i++) {
    const EdgeConfigForwarder *c = g_ptr_array_index (config->forwarders, i);
    const char *problem = NULL;
    g_autofree char *subject = NULL;
    if (!edge_name_valid (c->name, 64))
      problem = "the name must be 1 to 64 of a-z, A-Z, 0-9, _ . and -";
    else if (c->stream[0] == '\0')
      problem = "stream is required";
    else if (g_str_equal (c->destination, "kinesis")) {
      if (!g_str_has_prefix (c->endpoint, "http://") && !g_str_has_prefix (c->endpoint, "https://"))
        problem = "kinesis needs endpoint, http(s)://HOST[:PORT]";
      else if (c->access_key_id[0] == '\0' || c->secret_access_key[0] == '\0')
        problem = "kinesis needs access_key_id and secret_access_key (any values for a server "
                  "that does not check them)";
      else if (c->batch_records > KINESIS_MAX_RECORDS)
        problem = "kinesis takes at most 500 records a request: batch_records must be <= 500";
    } else {
      subject = expand_subject (c->subject, "source", c->stream);
      if (!g_str_has_prefix (c->servers, "nats://") && !g_str_has_prefix (c->servers, "tls://"))
        problem = "nats needs servers, nats://HOST:PORT[,nats://...]";
      else if ((c->tls_cert_file[0] != '\0') != (c->tls_key_file[0] != '\0'))
        problem = "tls_cert_file and tls_key_file go together";
      else if (!subject_valid (subject))
        problem = "subject must be a NATS subject (dot-separated tokens, no spaces or wildcards)";
      else if (c->jetstream_stream[0] &&
               (strpbrk (c->jetstream_stream, " .*>/\\") || strlen (c->jetstream_stream) > 255))
        problem = "jetstream_stream must be a JetStream stream name (no spaces, '.', '*', '>', "
                  "'/' or '\\\\')";
    }
    for (guint j = 0; problem == NULL && j < i; j++)
      if (g_str_equal (c->name, ((EdgeConfigForwarder *) config->forwarders->pdata[j])->name))
        problem = "the name is used twice";
    if (problem) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: forwarders[%u] (%s): %s", source, i, c->name, problem);
      return FALSE;
    }
  }
  return TRUE;
}

static Forwarder *
forwarder_start (StreamForwardService *service, const EdgeConfigForwarder *config,
                 GError **error)
{
  Forwarder *f = g_new0 (Forwarder, 1);
  f->refs = 1;
  f->service = service;
  f->config = config;
  f->destination = g_str_equal (config->destination, "kinesis") ? DEST_KINESIS : DEST_NATS;
  f->source = config->source[0] ? g_strdup (config->source) : default_source ();
  f->consumer_name = g_strdup_printf ("forward-%s", config->name);
  g_autofree char *escaped = edge_metrics_escape_label (config->name);
  f->labels = g_strdup_printf ("forwarder=\"%s\"", escaped);
  f->lanes = g_ptr_array_new ();
  f->cancellable = g_cancellable_new ();
  if (f->destination == DEST_KINESIS) {
    f->target = g_strdup (config->target_stream[0] ? config->target_stream : config->stream);
    f->url = g_strdup_printf ("%s%s", config->endpoint,
                              g_str_has_suffix (config->endpoint, "/") ? "" : "/");
  } else {
    f->target = expand_subject (config->subject, f->source, config->stream);
    f->jetstream = stream_jetstream_new (config->servers, config->jetstream_stream, f->target,
                                         (int) config->replicas);
    stream_jetstream_set_security (f->jetstream, config->tls_ca_file, config->tls_cert_file,
                                   config->tls_key_file, config->credentials_file);
  }
  f->consumer = stream_consumer_start (service->store, config->stream, f->consumer_name,
                                       g_str_equal (config->starting_position, "LATEST")
                                           ? STREAM_START_LATEST
                                           : STREAM_START_TRIM_HORIZON,
                                       (guint) config->batch_records, on_batch, f, error);
  if (f->consumer == NULL) {
    g_prefix_error (error, "forwarder %s: ", config->name);
    forwarder_unref (f);
    return NULL;
  }
  g_message ("forwarder \"%s\": %s to %s %s%s%s", config->name, config->stream,
             config->destination, f->destination == DEST_KINESIS ? config->endpoint
                                                                 : config->servers,
             f->destination == DEST_KINESIS ? " stream " : " subject ", f->target);
  return f;
}

static void
forwarder_stop (Forwarder *f)
{
  f->stopped = TRUE;
  g_cancellable_cancel (f->cancellable);
  stream_consumer_stop (f->consumer);
  /* Unacknowledged batches go back unfinished: their checkpoints stay. */
  for (guint i = 0; i < f->lanes->len; i++) {
    Lane *l = g_ptr_array_index (f->lanes, i);
    stream_consumer_done (f->consumer, l->batch, FALSE);
    lane_free (l);
  }
  g_ptr_array_set_size (f->lanes, 0);
  forwarder_unref (f);
}

/* ---- lag, /v1/forwarders and metrics ---- */

typedef struct {
  gint64 records;
  gint64 bytes;    /* estimated from each shard's mean record size on disk */
  gint64 seconds;  /* age of the oldest record not yet upstream */
} Lag;

static Lag
forwarder_lag (Forwarder *f)
{
  Lag lag = { 0, 0, 0 };
  guint64 records, bytes;
  stream_store_consumer_lag (f->service->store, f->config->stream, f->consumer_name,
                             g_str_equal (f->config->starting_position, "LATEST")
                                 ? STREAM_START_LATEST
                                 : STREAM_START_TRIM_HORIZON,
                             &records, &bytes);
  lag.records = (gint64) records;
  lag.bytes = (gint64) bytes;
  gint64 oldest = G_MAXINT64;
  for (guint i = 0; i < f->lanes->len; i++) {
    Lane *l = g_ptr_array_index (f->lanes, i);
    if (l->pending->len)
      oldest = MIN (oldest, ((StreamRecord *) l->pending->pdata[0])->arrival_ms);
  }
  if (lag.records && oldest != G_MAXINT64)
    lag.seconds = MAX (0, g_get_real_time () / 1000 - oldest) / 1000;
  return lag;
}

static void
forwarder_to_json (Forwarder *f, JsonBuilder *b)
{
  const EdgeConfigForwarder *c = f->config;
  Lag lag = forwarder_lag (f);
  guint in_flight = 0;
  for (guint i = 0; i < f->lanes->len; i++)
    in_flight += ((Lane *) f->lanes->pdata[i])->pending->len;

  json_builder_begin_object (b);
  edge_json_add_string (b, "name", c->name);
  edge_json_add_string (b, "stream", c->stream);
  edge_json_add_string (b, "destination", c->destination);
  if (f->destination == DEST_KINESIS) {
    edge_json_add_string (b, "endpoint", c->endpoint);
    edge_json_add_string (b, "target_stream", f->target);
  } else {
    edge_json_add_string (b, "servers", c->servers);
    edge_json_add_string (b, "subject", f->target);
    if (c->jetstream_stream[0])
      edge_json_add_string (b, "jetstream_stream", c->jetstream_stream);
  }
  edge_json_add_string (b, "source", f->source);
  json_builder_set_member_name (b, "ordered");
  json_builder_add_boolean_value (b, c->ordered);
  edge_json_add_int (b, "lag_records", lag.records);
  edge_json_add_int (b, "lag_bytes", lag.bytes);
  edge_json_add_int (b, "lag_seconds", lag.seconds);
  edge_json_add_int (b, "in_flight_records", in_flight);
  edge_json_add_int (b, "forwarded_records", (gint64) f->forwarded_records);
  edge_json_add_int (b, "forwarded_bytes", (gint64) f->forwarded_bytes);
  edge_json_add_int (b, "requests", (gint64) f->requests);
  edge_json_add_int (b, "failed_requests", (gint64) f->failed_requests);
  edge_json_add_int (b, "retried_records", (gint64) f->retried_records);
  edge_json_add_int (b, "skipped_records", (gint64) f->skipped_records);
  if (f->last_forward_ms)
    edge_json_add_int (b, "last_forward_ms", f->last_forward_ms);
  if (f->last_error) {
    edge_json_add_string (b, "last_error", f->last_error);
    edge_json_add_int (b, "last_error_ms", f->last_error_ms);
  }
  json_builder_end_object (b);
}

static Forwarder *
forwarder_find (StreamForwardService *service, const char *name)
{
  for (guint i = 0; name && i < service->forwarders->len; i++) {
    Forwarder *f = g_ptr_array_index (service->forwarders, i);
    if (g_str_equal (f->config->name, name))
      return f;
  }
  return NULL;
}

static void
handle_list (EdgeRequest *request, gpointer data)
{
  StreamForwardService *service = data;
  edge_request_respond_array (request, "forwarders", service->forwarders,
                              (EdgeJsonWriteFunc) forwarder_to_json);
}

static void
handle_get (EdgeRequest *request, gpointer data)
{
  Forwarder *f = forwarder_find (data, edge_request_param (request, "name"));
  if (f == NULL) {
    edge_request_respond_error (request, 404, "NotFound", "no forwarder %s",
                                edge_request_param (request, "name"));
    return;
  }
  edge_request_respond_object (request, f, (EdgeJsonWriteFunc) forwarder_to_json);
}

/* The lag gauges, at each render; the counters move as records go. */
static void
collect (EdgeMetrics *metrics, gpointer data)
{
  StreamForwardService *service = data;
  for (guint i = 0; i < service->forwarders->len; i++) {
    Forwarder *f = g_ptr_array_index (service->forwarders, i);
    Lag lag = forwarder_lag (f);
    edge_metrics_set (metrics, "edged_forwarder_lag_records", f->labels, (double) lag.records);
    edge_metrics_set (metrics, "edged_forwarder_lag_bytes", f->labels, (double) lag.bytes);
    edge_metrics_set (metrics, "edged_forwarder_lag_seconds", f->labels, (double) lag.seconds);
  }
}

StreamForwardService *
stream_forward_service_new (EdgeGateway *gateway, StreamStore *store, const EdgeConfig *config,
                            EdgeMetrics *metrics, GError **error)
{
  static const EdgeRoute routes[] = {
    { "GET", "/v1/forwarders", handle_list, "Forwarders, what they sent and their lag",
      "forwarders" },
    { "GET", "/v1/forwarders/{name}", handle_get, "One forwarder", "forwarders" },
  };
  g_autoptr (StreamForwardService) service = g_new0 (StreamForwardService, 1);
  service->store = store;
  service->metrics = metrics;
  service->session = soup_session_new_with_options ("timeout", HTTP_TIMEOUT_S, NULL);
  service->forwarders = g_ptr_array_new ();
  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (gateway, &routes[i], service, error))
      return NULL;
  for (guint i = 0; i < config->forwarders->len; i++) {
    Forwarder *f = forwarder_start (service, config->forwarders->pdata[i], error);
    if (f == NULL)
      return NULL;
    g_ptr_array_add (service->forwarders, f);
  }
  if (metrics) {
    static const struct {
      const char *name;
      EdgeMetricType type;
      const char *help;
    } families[] = {
      { "edged_forwarder_lag_records", EDGE_METRIC_GAUGE,
        "Records of the stream not yet acknowledged upstream." },
      { "edged_forwarder_lag_bytes", EDGE_METRIC_GAUGE,
        "Bytes not yet acknowledged upstream (estimated from the mean record size on disk)." },
      { "edged_forwarder_lag_seconds", EDGE_METRIC_GAUGE,
        "Age of the oldest record not yet acknowledged upstream." },
      { "edged_forwarder_records_total", EDGE_METRIC_COUNTER,
        "Records acknowledged upstream since the start." },
      { "edged_forwarder_failed_requests_total", EDGE_METRIC_COUNTER,
        "Requests upstream that failed for some record (each retried)." },
      { "edged_forwarder_skipped_records_total", EDGE_METRIC_COUNTER,
        "Records larger than the destination takes, skipped." },
    };
    for (guint i = 0; i < G_N_ELEMENTS (families); i++)
      edge_metrics_declare (metrics, families[i].name, families[i].type, families[i].help, NULL,
                            0);
    edge_metrics_add_collector (metrics, collect, service);
  }
  return g_steal_pointer (&service);
}

void
stream_forward_service_free (StreamForwardService *service)
{
  if (service == NULL)
    return;
  for (guint i = 0; i < service->forwarders->len; i++)
    forwarder_stop (g_ptr_array_index (service->forwarders, i));
  g_ptr_array_unref (service->forwarders);
  g_object_unref (service->session);
  g_free (service);
}
