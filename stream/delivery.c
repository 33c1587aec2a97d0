/* delivery.c: delivery streams. A data stream's records, gathered into
 * batches by size and age, optionally gzip'd, delivered to a directory,
 * S3-compatible storage or an HTTP endpoint, as Firehose delivers them.
 *
 * Each delivery stream reads its data stream as the registered consumer
 * "delivery-NAME". Batches of the consumer are released as soon as their
 * records are in the buffer (so the consumer reads on), but the checkpoint
 * moves only once the destination has acknowledged the whole buffer:
 *
 *   records --> filling --(size or age)--> flushing --ok--> commit positions
 *                  ^                          |  fail: retry with back-off
 *   held batches --+ (while filling is full |  past retry_duration:
 *                     and a flush is out)     +--> error directory --> commit
 *
 * One flush is out at a time; while it is and the next buffer is full, the
 * consumer's next batch is held, which stops the consumer (back-pressure).
 * After a crash or restart, delivery resumes from the last commit: what
 * was buffered or in flight is delivered again (at least once).
 *
 * Building a body (joining, gzip) and writing files run on a worker
 * thread; S3 and HTTP requests run on the main loop (libsoup).
 */
#define G_LOG_DOMAIN "delivery"

#include "delivery-private.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <unistd.h>
#include <zstd.h>

#define CONSUMER_BATCH 10000
#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS 30000
#define HTTP_TIMEOUT_S 60
/* An HTTP endpoint answers with a small JSON object (requestId, timestamp,
 * errorMessage). */
#define HTTP_ANSWER_MAX (64 * 1024)
#define NATS_ACK_WAIT_MS 10000

static const char *
compression_content_type (Compression c)
{
  return c == COMPRESSION_GZIP   ? "application/gzip"
         : c == COMPRESSION_ZSTD ? "application/zstd"
                                 : "application/octet-stream";
}

static void maybe_flush (Delivery *d);
static void flush (Delivery *d);
static void intake (Delivery *d, StreamBatch *batch);

/* ---- buffers ---- */

static Buffer *
buffer_new (void)
{
  Buffer *b = g_new0 (Buffer, 1);
  b->records = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  b->arrivals = g_array_new (FALSE, FALSE, sizeof (gint64));
  b->positions = g_array_new (FALSE, FALSE, sizeof (Position));
  return b;
}

static void
buffer_free (Buffer *b)
{
  if (b == NULL)
    return;
  g_ptr_array_unref (b->records);
  g_array_unref (b->arrivals);
  g_array_unref (b->positions);
  g_free (b->key);
  if (b->body)
    g_bytes_unref (b->body);
  g_free (b->last_error);
  g_free (b);
}

static void
buffer_set_position (Buffer *b, guint32 ordinal, guint64 next)
{
  for (guint i = 0; i < b->positions->len; i++) {
    Position *p = &g_array_index (b->positions, Position, i);
    if (p->ordinal == ordinal) {
      p->next = MAX (p->next, next);
      return;
    }
  }
  Position p = { ordinal, next };
  g_array_append_val (b->positions, p);
}

/* ---- names ---- */

gboolean
delivery_name_valid (const char *name)
{
  return edge_name_valid (name, DELIVERY_NAME_MAX);
}

/* Firehose's object name: PREFIX YYYY/MM/DD/HH/NAME-1-YYYY-MM-DD-HH-MM-SS-UUID,
 * in UTC, from the first record's arrival. */
static char *
object_key (const char *prefix, const char *name, gint64 arrival_ms, const char *suffix)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (arrival_ms / 1000);
  g_autofree char *hour = g_date_time_format (t, "%Y/%m/%d/%H/");
  g_autofree char *stamp = g_date_time_format (t, "%Y-%m-%d-%H-%M-%S");
  g_autofree char *uuid = edge_uuid_random ();
  return g_strdup_printf ("%s%s%s-1-%s-%s%s", prefix, hour, name, stamp, uuid, suffix);
}

/* ---- bodies and files (worker thread) ---- */

typedef struct {
  Destination destination;
  Compression compression;
  GPtrArray *records;   /* GBytes *, referenced */
  GArray *arrivals;
  char *path;           /* a file to write the body to; NULL for none */
  char *request_id;     /* http */
  char *error_code;     /* set: the body is error records (JSON lines) */
  char *error_message;
  GPtrArray *codes;     /* per record, overriding error_code and error_message; nullable */
  GPtrArray *messages;
  char *lambda_arn;     /* transform failures: the function */
  int attempts;
  char *stream_name;
  GBytes *body;         /* out */
} Job;

static void
job_free (Job *j)
{
  g_ptr_array_unref (j->records);
  g_array_unref (j->arrivals);
  g_free (j->path);
  g_free (j->request_id);
  g_free (j->error_code);
  g_free (j->error_message);
  if (j->codes)
    g_ptr_array_unref (j->codes);
  if (j->messages)
    g_ptr_array_unref (j->messages);
  g_free (j->lambda_arn);
  g_free (j->stream_name);
  if (j->body)
    g_bytes_unref (j->body);
  g_free (j);
}

/* Records one after another, each ending in a newline (added where the
 * record has none), as Firehose users expect of newline-delimited data. */
static GBytes *
join_lines (GPtrArray *records)
{
  gsize total = 0;
  for (guint i = 0; i < records->len; i++)
    total += g_bytes_get_size (g_ptr_array_index (records, i)) + 1;
  GByteArray *out = g_byte_array_sized_new ((guint) MIN (total, G_MAXUINT));
  for (guint i = 0; i < records->len; i++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (g_ptr_array_index (records, i), &len);
    g_byte_array_append (out, data, (guint) len);
    if (len == 0 || data[len - 1] != '\n')
      g_byte_array_append (out, (const guint8 *) "\n", 1);
  }
  return g_byte_array_free_to_bytes (out);
}

/* Firehose's HTTP endpoint delivery request: {"requestId", "timestamp",
 * "records": [{"data": BASE64}]}. */
static GBytes *
http_request_body (GPtrArray *records, const char *request_id)
{
  GString *out = g_string_new (NULL);
  g_string_append_printf (out, "{\"requestId\":\"%s\",\"timestamp\":%" G_GINT64_FORMAT
                               ",\"records\":[",
                          request_id, g_get_real_time () / 1000);
  for (guint i = 0; i < records->len; i++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (g_ptr_array_index (records, i), &len);
    g_autofree char *b64 = g_base64_encode (data, len);
    g_string_append_printf (out, "%s{\"data\":\"%s\"}", i ? "," : "", b64);
  }
  g_string_append (out, "]}");
  return g_string_free_to_bytes (out);
}

/* Firehose's error output: a JSON object per line for each record that
 * could not be delivered, its data in rawData (base64). */
static GBytes *
error_records_body (const Job *j)
{
  GString *out = g_string_new (NULL);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  gint64 now = g_get_real_time () / 1000;
  for (guint i = 0; i < j->records->len; i++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (g_ptr_array_index (j->records, i), &len);
    g_autofree char *b64 = g_base64_encode (data, len);
    json_builder_reset (b);
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "attemptsMade");
    json_builder_add_int_value (b, j->attempts);
    json_builder_set_member_name (b, "arrivalTimestamp");
    json_builder_add_int_value (b, g_array_index (j->arrivals, gint64, i));
    json_builder_set_member_name (b, "errorCode");
    json_builder_add_string_value (b, j->codes ? g_ptr_array_index (j->codes, i) : j->error_code);
    json_builder_set_member_name (b, "errorMessage");
    json_builder_add_string_value (b, j->messages ? g_ptr_array_index (j->messages, i)
                                                  : j->error_message);
    json_builder_set_member_name (b, "attemptEndingTimestamp");
    json_builder_add_int_value (b, now);
    json_builder_set_member_name (b, "rawData");
    json_builder_add_string_value (b, b64);
    json_builder_set_member_name (b, "deliveryStreamName");
    json_builder_add_string_value (b, j->stream_name);
    if (j->lambda_arn) {
      json_builder_set_member_name (b, "lambdaArn");
      json_builder_add_string_value (b, j->lambda_arn);
    }
    json_builder_end_object (b);
    g_autoptr (JsonNode) node = json_builder_get_root (b);
    g_autofree char *line = json_to_string (node, FALSE);
    g_string_append (out, line);
    g_string_append_c (out, '\n');
  }
  return g_string_free_to_bytes (out);
}

/* zstd at its default level (3): about gzip -6's ratio on JSON lines at
 * several times its speed. */
static GBytes *
zstd_bytes (GBytes *in, GError **error)
{
  gsize in_len;
  const void *data = g_bytes_get_data (in, &in_len);
  gsize bound = ZSTD_compressBound (in_len);
  void *out = g_malloc (bound);
  gsize len = ZSTD_compress (out, bound, data, in_len, ZSTD_CLEVEL_DEFAULT);
  if (ZSTD_isError (len)) {
    g_free (out);
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "zstd: %s", ZSTD_getErrorName (len));
    return NULL;
  }
  return g_bytes_new_take (g_realloc (out, MAX (len, 1)), len);
}

static GBytes *
gzip_bytes (GBytes *in, GError **error)
{
  g_autoptr (GZlibCompressor) compressor = g_zlib_compressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP, 6);
  gsize in_len, done = 0;
  const guint8 *data = g_bytes_get_data (in, &in_len);
  GByteArray *out = g_byte_array_sized_new ((guint) MIN (in_len / 2 + 64, G_MAXUINT));
  guint8 chunk[64 * 1024];
  for (;;) {
    gsize read, written;
    GConverterResult r = g_converter_convert (G_CONVERTER (compressor), data + done, in_len - done,
                                              chunk, sizeof chunk, G_CONVERTER_INPUT_AT_END, &read,
                                              &written, error);
    if (r == G_CONVERTER_ERROR) {
      g_byte_array_unref (out);
      return NULL;
    }
    done += read;
    g_byte_array_append (out, chunk, (guint) written);
    if (r == G_CONVERTER_FINISHED)
      break;
  }
  return g_byte_array_free_to_bytes (out);
}

/* Writes @body to @path whole: a temporary file beside it, synced, renamed
 * into place, the directory synced, so that a reader never sees a part. */
static gboolean
write_file_atomically (const char *path, GBytes *body, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  if (g_mkdir_with_parents (dir, 0750) < 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "%s: %s", dir,
                 g_strerror (saved));
    return FALSE;
  }
  gsize len;
  const char *data = g_bytes_get_data (body, &len);
  if (!g_file_set_contents_full (path, data, (gssize) len,
                                 G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                 0640, error))
    return FALSE;
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync (fd);
    close (fd);
  }
  return TRUE;
}

static void
run_job (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  Job *j = data;
  GError *error = NULL;
  g_autoptr (GBytes) body = NULL;

  if (j->error_code)
    body = error_records_body (j);
  else if (j->destination == DEST_HTTP)
    body = http_request_body (j->records, j->request_id);
  else
    body = join_lines (j->records);
  if (j->compression != COMPRESSION_NONE && j->error_code == NULL) {
    GBytes *packed = j->compression == COMPRESSION_GZIP ? gzip_bytes (body, &error)
                                                        : zstd_bytes (body, &error);
    if (packed == NULL) {
      g_task_return_error (task, error);
      return;
    }
    g_bytes_unref (body);
    body = packed;
  }
  if (j->path && !write_file_atomically (j->path, body, &error)) {
    g_task_return_error (task, error);
    return;
  }
  j->body = g_steal_pointer (&body);
  g_task_return_boolean (task, TRUE);
}

/* ---- the flush ---- */

static Delivery *
delivery_ref (Delivery *d)
{
  d->refs++;
  return d;
}

static void
delivery_unref (Delivery *d)
{
  if (--d->refs > 0)
    return;
  buffer_free (d->filling);
  buffer_free (d->flushing);
  delivery_config_free (d->owned);
  stream_s3_clear (&d->s3);
  stream_jetstream_free (d->jetstream);
  g_free (d->subject);
  g_free (d->error_directory);
  g_free (d->last_error);
  g_clear_object (&d->cancellable);
  g_free (d);
}

static const char *
error_code (Delivery *d)
{
  return d->destination == DEST_S3     ? "S3.PutFailed"
         : d->destination == DEST_HTTP ? "HttpEndpoint.RequestFailed"
         : d->destination == DEST_NATS ? "Nats.PublishFailed"
                                       : "Directory.WriteFailed";
}

/* The flushing buffer is safe (at its destination, or in the error
 * directory): move the checkpoints past it and go on. */
static void
flush_done (Delivery *d, gboolean to_errors)
{
  Buffer *b = g_steal_pointer (&d->flushing);
  for (guint i = 0; i < b->positions->len; i++) {
    Position *p = &g_array_index (b->positions, Position, i);
    g_autoptr (GError) error = NULL;
    /* A checkpoint that cannot be stored only means a redelivery later. */
    if (!stream_consumer_commit (d->consumer, p->ordinal, p->next, &error))
      g_warning ("delivery \"%s\": checkpoint not stored: %s", d->config->name, error->message);
  }
  if (to_errors) {
    d->error_records += b->records->len;
    d->error_objects++;
  } else {
    d->delivered_records += b->records->len;
    d->delivered_bytes += b->bytes;
    d->objects++;
    d->last_delivery_ms = g_get_real_time () / 1000;
  }
  g_debug ("delivery \"%s\": %u records %s", d->config->name, b->records->len,
           to_errors ? "to the error directory" : "delivered");
  buffer_free (b);
  /* Batches held for room (one per shard at most) go into the buffer now. */
  while (!g_queue_is_empty (&d->held))
    intake (d, g_queue_pop_head (&d->held));
  maybe_flush (d);
}

static void attempt (Delivery *d);

static gboolean
on_retry (gpointer data)
{
  Delivery *d = data;
  d->retry_timer = 0;
  attempt (d);
  return G_SOURCE_REMOVE;
}

static void
errors_written (GObject *source, GAsyncResult *result, gpointer data)
{
  Delivery *d = data;
  g_autoptr (GError) error = NULL;
  if (d->stopped) {
    delivery_unref (d);
    return;
  }
  if (!g_task_propagate_boolean (G_TASK (result), &error)) {
    /* Not even the error directory (a full disk): keep the batch, retry. */
    g_warning ("delivery \"%s\": the failed batch could not be written to %s either: %s",
               d->config->name, d->error_directory, error->message);
    d->retry_timer = g_timeout_add (RETRY_MAX_MS, on_retry, d);
  } else {
    flush_done (d, TRUE);
  }
  delivery_unref (d);
}

/* Past retry_duration: the batch goes to the error directory, as error
 * records that say why. */
static void
write_errors (Delivery *d)
{
  Buffer *b = d->flushing;
  Job *j = g_new0 (Job, 1);
  j->destination = DEST_DIRECTORY;
  j->records = g_ptr_array_ref (b->records);
  j->arrivals = g_array_ref (b->arrivals);
  j->error_code = g_strdup (error_code (d));
  j->error_message = g_strdup (b->last_error);
  j->attempts = b->attempts;
  j->stream_name = g_strdup (d->config->name);
  g_autofree char *key = object_key (d->config->error_prefix, d->config->name,
                                     g_array_index (b->arrivals, gint64, 0), "");
  j->path = g_build_filename (d->error_directory, key, NULL);
  g_warning ("delivery \"%s\": %u records failed for %.0f s (%s): written to %s",
             d->config->name, b->records->len,
             (g_get_real_time () / 1000 - b->first_attempt_ms) / 1000.0, b->last_error, j->path);
  GTask *task = g_task_new (NULL, NULL, errors_written, delivery_ref (d));
  g_task_set_task_data (task, j, (GDestroyNotify) job_free);
  g_task_run_in_thread (task, run_job);
  g_object_unref (task);
}

/* The attempt of the flushing buffer ended: done, retried later, or given
 * up on (to the error directory). */
static void
attempt_ended (Delivery *d, GError *error)
{
  Buffer *b = d->flushing;
  if (error == NULL) {
    flush_done (d, FALSE);
    return;
  }
  d->failed_attempts++;
  g_free (b->last_error);
  b->last_error = g_strdup (error->message);
  g_free (d->last_error);
  d->last_error = g_strdup (error->message);
  gint64 failing_ms = g_get_real_time () / 1000 - b->first_attempt_ms;
  if (failing_ms >= d->config->retry_duration_ms) {
    write_errors (d);
    return;
  }
  guint wait = RETRY_FIRST_MS << MIN (b->attempts - 1, 5);
  wait = MIN (wait, RETRY_MAX_MS);
  if (b->attempts == 1 || b->attempts % 10 == 0)
    g_warning ("delivery \"%s\": attempt %d failed: %s (retrying for %.0f s more)",
               d->config->name, b->attempts, error->message,
               (d->config->retry_duration_ms - failing_ms) / 1000.0);
  d->retry_timer = g_timeout_add (wait, on_retry, d);
}

static void
s3_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Delivery *d = data;
  GError *error = NULL;
  stream_s3_put_finish (result, &error);
  if (!d->stopped)
    attempt_ended (d, error);
  g_clear_error (&error);
  delivery_unref (d);
}

static void
http_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Delivery *d = data;
  SoupMessage *msg = edge_client_send_message (result);
  GError *error = NULL;
  g_autoptr (GBytes) answer = edge_client_send_finish (result, &error);
  if (d->stopped) {
    g_clear_error (&error);
    delivery_unref (d);
    return;
  }
  if (error == NULL) {
    guint status = soup_message_get_status (msg);
    gsize len = 0;
    const char *text = answer ? g_bytes_get_data (answer, &len) : NULL;
    g_autofree char *copy = text && len ? g_strndup (text, len) : NULL;
    g_autoptr (JsonNode) node = copy ? json_from_string (copy, NULL) : NULL;
    JsonObject *o = node && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
    const char *message = edge_json_member_string (o, "errorMessage");
    const char *request_id = edge_json_member_string (o, "requestId");
    const char *sent = soup_message_headers_get_one (soup_message_get_request_headers (msg),
                                                     "X-Amz-Firehose-Request-Id");
    if (!SOUP_STATUS_IS_SUCCESSFUL (status))
      error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, "HTTP endpoint answered %u%s%s", status,
                           message ? ": " : "", message ? message : "");
    else if (request_id && sent && !g_str_equal (request_id, sent))
      error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED,
                           "HTTP endpoint answered for request %s, not %s", request_id, sent);
  }
  attempt_ended (d, error);
  g_clear_error (&error);
  delivery_unref (d);
}

static void
send_http (Delivery *d, Buffer *b, const char *request_id)
{
  SoupMessage *msg = soup_message_new ("POST", d->config->url);
  if (msg == NULL) {
    g_autoptr (GError) error = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                            "%s is not a URL", d->config->url);
    attempt_ended (d, error);
    return;
  }
  SoupMessageHeaders *h = soup_message_get_request_headers (msg);
  g_autofree char *arn = g_strdup_printf ("arn:aws:firehose:us-east-1:000000000000:"
                                          "deliverystream/%s", d->config->name);
  soup_message_headers_replace (h, "X-Amz-Firehose-Protocol-Version", "1.0");
  soup_message_headers_replace (h, "X-Amz-Firehose-Request-Id", request_id);
  soup_message_headers_replace (h, "X-Amz-Firehose-Source-Arn", arn);
  if (d->config->access_key[0])
    soup_message_headers_replace (h, "X-Amz-Firehose-Access-Key", d->config->access_key);
  if (d->compression == COMPRESSION_GZIP)
    soup_message_headers_replace (h, "Content-Encoding", "gzip");
  soup_message_set_request_body_from_bytes (msg, "application/json", b->body);
  edge_client_send_async (d->service->session, msg, HTTP_ANSWER_MAX, d->cancellable, http_done,
                          delivery_ref (d));
  g_object_unref (msg);
}

static void
body_ready (GObject *source, GAsyncResult *result, gpointer data)
{
  Delivery *d = data;
  Job *j = g_task_get_task_data (G_TASK (result));
  GError *error = NULL;
  gboolean ok = g_task_propagate_boolean (G_TASK (result), &error);

  if (d->stopped) {
    g_clear_error (&error);
    delivery_unref (d);
    return;
  }
  Buffer *b = d->flushing;
  if (!ok) {
    attempt_ended (d, error);
  } else if (d->destination == DEST_DIRECTORY) {
    attempt_ended (d, NULL);
  } else {
    /* Kept for the retries: a retry to S3 sends the same bytes. */
    if (b->body)
      g_bytes_unref (b->body);
    b->body = g_steal_pointer (&j->body);
    if (d->destination == DEST_S3)
      stream_s3_put_async (d->service->session, &d->s3, b->key, b->body,
                           compression_content_type (d->compression),
                           NULL, d->cancellable, s3_done, delivery_ref (d));
    else
      send_http (d, b, j->request_id);
  }
  g_clear_error (&error);
  delivery_unref (d);
}

static char *
nats_subject (const EdgeConfigDelivery *c)
{
  g_autoptr (GString) s = g_string_new (c->subject);
  g_string_replace (s, "{name}", c->name, 0);
  g_string_replace (s, "{stream}", c->stream, 0);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

static void
nats_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Delivery *d = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *reason = NULL;
  g_autoptr (GArray) results = stream_jetstream_publish_finish (result, &reason, &error);
  (void) source;
  if (d->stopped) {
    delivery_unref (d);
    return;
  }
  guint failed = 0;
  for (guint i = 0; results && i < results->len; i++)
    failed += g_array_index (results, guint8, i) != STREAM_JETSTREAM_STORED;
  if (results && failed)
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, "%u of %u records not acknowledged: %s",
                         failed, results->len, reason ? reason : "too large for the servers");
  attempt_ended (d, error);
  delivery_unref (d);
}

/* Each record one message. Its id is the batch's object key (made once per
 * batch) and its place in the batch: a batch sent again after a failure is
 * stored once by JetStream, within the stream's duplicate window. */
static void
send_nats (Delivery *d, Buffer *b)
{
  g_autoptr (GPtrArray) messages = g_ptr_array_new_with_free_func (
      (GDestroyNotify) stream_jetstream_message_free);
  for (guint i = 0; i < b->records->len; i++) {
    StreamJetStreamMessage *m = g_new0 (StreamJetStreamMessage, 1);
    m->subject = g_strdup (d->subject);
    m->msg_id = g_strdup_printf ("%s/%u", b->key, i);
    m->data = g_bytes_ref (g_ptr_array_index (b->records, i));
    g_autofree char *arrival = g_strdup_printf ("%" G_GINT64_FORMAT,
                                                g_array_index (b->arrivals, gint64, i));
    const char *headers[] = { "Edged-Delivery-Stream", d->config->name, "Edged-Stream",
                              d->config->stream, "Edged-Arrival-Ms", arrival, NULL };
    m->headers = g_strdupv ((char **) headers);
    g_ptr_array_add (messages, m);
  }
  stream_jetstream_publish_async (d->jetstream, messages, NATS_ACK_WAIT_MS, d->cancellable,
                                  nats_done, delivery_ref (d));
}

/* One attempt at the flushing buffer. Files are written by the job itself;
 * bodies for S3 and HTTP are made once and kept. */
static void
attempt (Delivery *d)
{
  Buffer *b = d->flushing;
  b->attempts++;
  if (d->destination == DEST_NATS) {
    send_nats (d, b);
    return;
  }
  if (b->body && d->destination == DEST_S3) {
    stream_s3_put_async (d->service->session, &d->s3, b->key, b->body,
                         compression_content_type (d->compression),
                         NULL, d->cancellable, s3_done, delivery_ref (d));
    return;
  }
  Job *j = g_new0 (Job, 1);
  j->destination = d->destination;
  j->compression = d->compression;
  j->records = g_ptr_array_ref (b->records);
  j->arrivals = g_array_ref (b->arrivals);
  j->request_id = edge_uuid_random ();
  if (d->destination == DEST_DIRECTORY)
    j->path = g_build_filename (d->config->directory, b->key, NULL);
  GTask *task = g_task_new (NULL, NULL, body_ready, delivery_ref (d));
  g_task_set_task_data (task, j, (GDestroyNotify) job_free);
  g_task_run_in_thread (task, run_job);
  g_object_unref (task);
}

static void
flush (Delivery *d)
{
  g_clear_handle_id (&d->interval_timer, g_source_remove);
  d->interval_due = FALSE;
  d->flushing = g_steal_pointer (&d->filling);
  d->filling = buffer_new ();
  Buffer *b = d->flushing;
  b->key = object_key (d->config->prefix, d->config->name, g_array_index (b->arrivals, gint64, 0),
                       d->compression == COMPRESSION_GZIP   ? ".gz"
                       : d->compression == COMPRESSION_ZSTD ? ".zst"
                                                            : "");
  b->first_attempt_ms = g_get_real_time () / 1000;
  attempt (d);
}

static gboolean
on_interval (gpointer data)
{
  Delivery *d = data;
  d->interval_timer = 0;
  d->interval_due = TRUE;
  maybe_flush (d);
  return G_SOURCE_REMOVE;
}

/* Flushes the filling buffer if it is due and no flush is out; arms the
 * interval when a buffer gets its first records. */
static void
maybe_flush (Delivery *d)
{
  Buffer *f = d->filling;
  if (d->stopped || f->records->len == 0)
    return;
  gboolean full = f->bytes >= (gsize) d->config->buffer_bytes;
  if (d->flushing == NULL && (full || d->interval_due || d->config->buffer_interval_ms == 0)) {
    flush (d);
    return;
  }
  if (d->interval_timer == 0 && !d->interval_due)
    d->interval_timer = g_timeout_add ((guint) d->config->buffer_interval_ms, on_interval, d);
}

/* Records (and their arrival times) join the filling buffer, and the batch
 * they came from is released: its shard's position is where the buffer
 * stands now. */
static void
take_records (Delivery *d, StreamBatch *batch, GPtrArray *datas, GArray *arrivals)
{
  Buffer *f = d->filling;
  for (guint i = 0; i < datas->len; i++) {
    GBytes *data = g_ptr_array_index (datas, i);
    g_ptr_array_add (f->records, g_bytes_ref (data));
    g_array_append_val (f->arrivals, g_array_index (arrivals, gint64, i));
    f->bytes += g_bytes_get_size (data);
  }
  guint32 ordinal = batch->shard_ordinal;
  buffer_set_position (f, ordinal, stream_consumer_release (d->consumer, batch));
  if (f->records->len == 0 && d->flushing == NULL) {
    /* Nothing to deliver (every record dropped by the transform): the
     * positions are safe now. */
    for (guint i = 0; i < f->positions->len; i++) {
      Position *p = &g_array_index (f->positions, Position, i);
      stream_consumer_commit (d->consumer, p->ordinal, p->next, NULL);
    }
    g_array_set_size (f->positions, 0);
  }
  maybe_flush (d);
}

/* ---- transforms (Firehose data transformation) ---- */

#define TRANSFORM_CHUNK_BYTES (1024 * 1024) /* of record data per invocation */
#define TRANSFORM_ATTEMPTS 4                 /* the first and three retries, as Firehose */

typedef struct {
  Delivery *d;
  StreamBatch *batch;
  guint chunk_start, chunk_len; /* the records of the invocation out */
  int attempts;                 /* of the chunk out */
  int most_attempts;            /* that any chunk took */
  GPtrArray *ok;                /* GBytes: transformed data */
  GArray *ok_arrivals;
  GPtrArray *failed;            /* GBytes: the original data of failed records */
  GArray *failed_arrivals;
  GPtrArray *codes, *messages;  /* char *, per failed record */
} Transform;

static void
transform_free (Transform *t)
{
  g_ptr_array_unref (t->ok);
  g_array_unref (t->ok_arrivals);
  g_ptr_array_unref (t->failed);
  g_array_unref (t->failed_arrivals);
  g_ptr_array_unref (t->codes);
  g_ptr_array_unref (t->messages);
  g_free (t);
}

static void transform_next (Transform *t);

static void
transform_fail_record (Transform *t, StreamRecord *r, const char *code, const char *message)
{
  g_ptr_array_add (t->failed, g_bytes_ref (r->data));
  g_array_append_val (t->failed_arrivals, r->arrival_ms);
  g_ptr_array_add (t->codes, g_strdup (code));
  g_ptr_array_add (t->messages, g_strdup (message));
}

static char *
record_id (StreamBatch *batch, StreamRecord *r)
{
  return stream_sequence_format (batch->shard_ordinal, r->number);
}

/* Firehose's data transformation event for the chunk out. */
static GBytes *
transform_event (Transform *t)
{
  Delivery *d = t->d;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autofree char *invocation = edge_uuid_random ();
  g_autofree char *arn = g_strdup_printf ("arn:aws:firehose:us-east-1:000000000000:"
                                          "deliverystream/%s", d->config->name);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "invocationId");
  json_builder_add_string_value (b, invocation);
  json_builder_set_member_name (b, "deliveryStreamArn");
  json_builder_add_string_value (b, arn);
  json_builder_set_member_name (b, "region");
  json_builder_add_string_value (b, "us-east-1");
  json_builder_set_member_name (b, "records");
  json_builder_begin_array (b);
  for (guint i = t->chunk_start; i < t->chunk_start + t->chunk_len; i++) {
    StreamRecord *r = g_ptr_array_index (t->batch->records, i);
    gsize len;
    const guint8 *data = g_bytes_get_data (r->data, &len);
    g_autofree char *b64 = g_base64_encode (data, len);
    g_autofree char *id = record_id (t->batch, r);
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "recordId");
    json_builder_add_string_value (b, id);
    json_builder_set_member_name (b, "approximateArrivalTimestamp");
    json_builder_add_int_value (b, r->arrival_ms);
    json_builder_set_member_name (b, "data");
    json_builder_add_string_value (b, b64);
    json_builder_set_member_name (b, "kinesisRecordMetadata");
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "shardId");
    json_builder_add_string_value (b, t->batch->shard_id);
    json_builder_set_member_name (b, "partitionKey");
    json_builder_add_string_value (b, r->partition_key);
    json_builder_set_member_name (b, "approximateArrivalTimestamp");
    json_builder_add_int_value (b, r->arrival_ms);
    json_builder_set_member_name (b, "sequenceNumber");
    json_builder_add_string_value (b, id);
    json_builder_set_member_name (b, "subsequenceNumber");
    json_builder_add_int_value (b, 0);
    json_builder_end_object (b);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *text = json_to_string (root, FALSE);
  return g_bytes_new (text, strlen (text));
}

/* The function's answer for the chunk out: each record Ok (with its new
 * data), Dropped, or ProcessingFailed; a record the answer leaves out or
 * garbles fails too. */
static void
transform_apply (Transform *t, JsonObject *answer)
{
  Delivery *d = t->d;
  g_autoptr (GHashTable) by_id = g_hash_table_new (g_str_hash, g_str_equal);
  JsonNode *node = json_object_get_member (answer, "records");
  JsonArray *records = node && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
  for (guint i = 0; records && i < json_array_get_length (records); i++) {
    JsonNode *item = json_array_get_element (records, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT (item) ? json_node_get_object (item) : NULL;
    const char *id = edge_json_member_string (o, "recordId");
    if (id)
      g_hash_table_insert (by_id, (gpointer) id, o);
  }
  for (guint i = t->chunk_start; i < t->chunk_start + t->chunk_len; i++) {
    StreamRecord *r = g_ptr_array_index (t->batch->records, i);
    g_autofree char *id = record_id (t->batch, r);
    JsonObject *o = g_hash_table_lookup (by_id, id);
    const char *result = edge_json_member_string (o, "result");
    const char *data = edge_json_member_string (o, "data");
    if (o == NULL) {
      transform_fail_record (t, r, "Lambda.MissingRecordId",
                             "the function's answer has no record with this recordId");
    } else if (result && g_str_equal (result, "Dropped")) {
      d->dropped_records++;
    } else if (result && g_str_equal (result, "ProcessingFailed")) {
      transform_fail_record (t, r, "Lambda.ProcessingFailed",
                             "the function answered ProcessingFailed");
    } else if (result && g_str_equal (result, "Ok") && data) {
      gsize len;
      guchar *decoded = g_base64_decode (data, &len);
      g_ptr_array_add (t->ok, g_bytes_new_take (decoded, len));
      g_array_append_val (t->ok_arrivals, r->arrival_ms);
      d->transformed_records++;
    } else {
      transform_fail_record (t, r, "Lambda.InvalidResult",
                             "result must be Ok (with data), Dropped or ProcessingFailed");
    }
  }
}

static void
transform_errors_written (GObject *source, GAsyncResult *result, gpointer data)
{
  Transform *t = data;
  Delivery *d = t->d;
  g_autoptr (GError) error = NULL;
  gboolean ok = g_task_propagate_boolean (G_TASK (result), &error);
  if (d->stopped) {
    d->transforms_out--;
    stream_consumer_done (d->consumer, t->batch, FALSE);
    transform_free (t);
    delivery_unref (d);
    return;
  }
  if (!ok) {
    /* The failed records are not safe: the batch is read again later. */
    g_warning ("delivery \"%s\": records the transform failed could not be written to %s: %s",
               d->config->name, d->error_directory, error->message);
    d->transforms_out--;
    stream_consumer_done (d->consumer, t->batch, FALSE);
    transform_free (t);
    delivery_unref (d);
    return;
  }
  d->processing_failed_records += t->failed->len;
  d->transforms_out--;
  take_records (d, t->batch, t->ok, t->ok_arrivals);
  transform_free (t);
  delivery_unref (d);
}

/* Every record of the batch went through the function: failures to the
 * error directory first, then the rest into the buffer. */
static void
transform_finish (Transform *t)
{
  Delivery *d = t->d;
  if (t->failed->len == 0) {
    d->transforms_out--;
    take_records (d, t->batch, t->ok, t->ok_arrivals);
    transform_free (t);
    delivery_unref (d);
    return;
  }
  Job *j = g_new0 (Job, 1);
  j->destination = DEST_DIRECTORY;
  j->records = g_ptr_array_ref (t->failed);
  j->arrivals = g_array_ref (t->failed_arrivals);
  j->error_code = g_strdup ("Lambda.ProcessingFailed");
  j->error_message = g_strdup ("");
  j->codes = g_ptr_array_ref (t->codes);
  j->messages = g_ptr_array_ref (t->messages);
  j->attempts = t->most_attempts;
  j->stream_name = g_strdup (d->config->name);
  j->lambda_arn = g_strdup_printf ("arn:aws:lambda:us-east-1:000000000000:function:%s",
                                   d->config->transform);
  g_autofree char *prefix = g_strconcat (d->config->error_prefix, "processing-failed/", NULL);
  g_autofree char *key = object_key (prefix, d->config->name,
                                     g_array_index (t->failed_arrivals, gint64, 0), "");
  j->path = g_build_filename (d->error_directory, key, NULL);
  GTask *task = g_task_new (NULL, NULL, transform_errors_written, t);
  g_task_set_task_data (task, j, (GDestroyNotify) job_free);
  g_task_run_in_thread (task, run_job);
  g_object_unref (task);
}

static void
transform_done (GBytes *answer, const char *error, gpointer data)
{
  Transform *t = data;
  Delivery *d = t->d;
  if (d->stopped) {
    d->transforms_out--;
    stream_consumer_done (d->consumer, t->batch, FALSE);
    transform_free (t);
    delivery_unref (d);
    return;
  }
  g_autoptr (JsonNode) root = NULL;
  if (answer) {
    gsize len;
    const char *text = g_bytes_get_data (answer, &len);
    g_autoptr (GError) parse_error = NULL;
    root = edge_json_parse (text ? text : "", len, G_MAXSIZE, &parse_error);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
      error = "the function's answer is not a JSON object";
  }
  t->attempts++;
  t->most_attempts = MAX (t->most_attempts, t->attempts);
  if (error) {
    if (t->attempts < TRANSFORM_ATTEMPTS) {
      g_warning ("delivery \"%s\": transform %s failed (%s): trying again", d->config->name,
                 d->config->transform, error);
      transform_next (t);
      return;
    }
    for (guint i = t->chunk_start; i < t->chunk_start + t->chunk_len; i++)
      transform_fail_record (t, g_ptr_array_index (t->batch->records, i), "Lambda.FunctionError",
                             error);
  } else {
    transform_apply (t, json_node_get_object (root));
  }
  t->attempts = 0;
  t->chunk_start += t->chunk_len;
  t->chunk_len = 0;
  transform_next (t);
}

/* Invokes the function with the next chunk (or the same one again), or
 * finishes when the batch is through. */
static void
transform_next (Transform *t)
{
  Delivery *d = t->d;
  StreamDeliveryService *service = d->service;
  GPtrArray *records = t->batch->records;
  if (t->chunk_start >= records->len) {
    transform_finish (t);
    return;
  }
  if (t->chunk_len == 0) {
    gsize bytes = 0;
    while (t->chunk_start + t->chunk_len < records->len) {
      StreamRecord *r = g_ptr_array_index (records, t->chunk_start + t->chunk_len);
      bytes += g_bytes_get_size (r->data);
      if (t->chunk_len > 0 && bytes > TRANSFORM_CHUNK_BYTES)
        break;
      t->chunk_len++;
    }
  }
  g_autoptr (GBytes) event = transform_event (t);
  service->transform (d->config->transform, event, transform_done, t, service->transform_data);
}

static void
intake (Delivery *d, StreamBatch *batch)
{
  if (d->config->transform[0] == '\0') {
    g_autoptr (GPtrArray) datas = g_ptr_array_new ();
    g_autoptr (GArray) arrivals = g_array_new (FALSE, FALSE, sizeof (gint64));
    for (guint i = 0; i < batch->records->len; i++) {
      StreamRecord *r = g_ptr_array_index (batch->records, i);
      g_ptr_array_add (datas, r->data);
      g_array_append_val (arrivals, r->arrival_ms);
    }
    take_records (d, batch, datas, arrivals);
    return;
  }
  if (d->service->transform == NULL) {
    /* Not wired (no functions): keep the records unread until it is. */
    stream_consumer_done (d->consumer, batch, FALSE);
    return;
  }
  Transform *t = g_new0 (Transform, 1);
  t->d = delivery_ref (d);
  t->batch = batch;
  t->ok = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  t->ok_arrivals = g_array_new (FALSE, FALSE, sizeof (gint64));
  t->failed = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  t->failed_arrivals = g_array_new (FALSE, FALSE, sizeof (gint64));
  t->codes = g_ptr_array_new_with_free_func (g_free);
  t->messages = g_ptr_array_new_with_free_func (g_free);
  d->transforms_out++;
  transform_next (t);
}

void
stream_delivery_set_transform (StreamDeliveryService *service, StreamTransformFunc func,
                               gpointer user_data)
{
  service->transform = func;
  service->transform_data = user_data;
}

static void
on_batch (StreamConsumer *consumer, StreamBatch *batch, gpointer data)
{
  Delivery *d = data;
  Buffer *f = d->filling;
  if (d->flushing && f->bytes >= (gsize) d->config->buffer_bytes) {
    /* No room until the flush out now is done: hold the batch, which
     * holds the consumer. */
    g_queue_push_tail (&d->held, batch);
    return;
  }
  intake (d, batch);
}

/* ---- configuration ---- */

gboolean
stream_delivery_check_config (const EdgeConfig *config, const char *source, GError **error)
{
  for (guint i = 0; i < config->deliveries->len; i++) {
    const EdgeConfigDelivery *c = config->deliveries->pdata[i];
    const char *missing = NULL;
    if (!delivery_name_valid (c->name)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: delivery_streams: name \"%s\": use 1 to %d of a-z, A-Z, 0-9, _ . and -",
                   source, c->name, DELIVERY_NAME_MAX);
      return FALSE;
    }
    if (g_str_equal (c->destination, "directory") && c->directory[0] == '\0')
      missing = "directory";
    else if (g_str_equal (c->destination, "s3") &&
             (c->endpoint[0] == '\0' || c->bucket[0] == '\0' || c->access_key_id[0] == '\0' ||
              c->secret_access_key[0] == '\0'))
      missing = "endpoint, bucket, access_key_id and secret_access_key";
    else if (g_str_equal (c->destination, "http") && c->url[0] == '\0')
      missing = "url";
    else if (g_str_equal (c->destination, "nats") && !g_str_has_prefix (c->servers, "nats://") &&
             !g_str_has_prefix (c->servers, "tls://"))
      missing = "servers, nats://HOST:PORT[,nats://...]";
    if (missing) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: delivery_streams: %s: destination %s needs %s", source, c->name,
                   c->destination, missing);
      return FALSE;
    }
    if (g_str_equal (c->destination, "nats") && !g_str_equal (c->compression, "none")) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: delivery_streams: %s: compression: nats publishes each record as it is "
                   "(none)", source, c->name);
      return FALSE;
    }
    if (g_str_equal (c->destination, "http") && g_str_equal (c->compression, "zstd")) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: delivery_streams: %s: compression: an HTTP endpoint takes gzip or none "
                   "(Firehose's HTTP endpoint protocol has no zstd)", source, c->name);
      return FALSE;
    }
    if (g_str_equal (c->destination, "s3") && !g_str_has_prefix (c->endpoint, "http://") &&
        !g_str_has_prefix (c->endpoint, "https://")) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: delivery_streams: %s: endpoint: expected http(s)://HOST[:PORT]", source,
                   c->name);
      return FALSE;
    }
  }
  return TRUE;
}

/* ---- the service ---- */

Delivery *
delivery_start (StreamDeliveryService *service, const EdgeConfigDelivery *config,
                EdgeConfigDelivery *owned, GError **error)
{
  Delivery *d = g_new0 (Delivery, 1);
  d->refs = 1;
  d->service = service;
  d->config = owned ? owned : config;
  d->owned = owned;
  config = d->config;
  d->created_ms = g_get_real_time () / 1000;
  g_autofree char *consumer = g_strdup_printf ("delivery-%s", config->name);
  d->destination = g_str_equal (config->destination, "s3")     ? DEST_S3
                   : g_str_equal (config->destination, "http") ? DEST_HTTP
                   : g_str_equal (config->destination, "nats") ? DEST_NATS
                                                               : DEST_DIRECTORY;
  if (d->destination == DEST_NATS) {
    d->subject = nats_subject (config);
    d->jetstream = stream_jetstream_new (config->servers, config->jetstream_stream, d->subject,
                                         (int) config->replicas);
    stream_jetstream_set_security (d->jetstream, config->tls_ca_file, config->tls_cert_file,
                                   config->tls_key_file, config->credentials_file);
  }
  d->compression = g_str_equal (config->compression, "gzip")   ? COMPRESSION_GZIP
                   : g_str_equal (config->compression, "zstd") ? COMPRESSION_ZSTD
                                                               : COMPRESSION_NONE;
  d->s3.endpoint = g_strdup (config->endpoint);
  d->s3.bucket = g_strdup (config->bucket);
  d->s3.region = g_strdup (config->region);
  d->s3.access_key_id = g_strdup (config->access_key_id);
  d->s3.secret_access_key = g_strdup (config->secret_access_key);
  d->error_directory = config->error_directory[0]
                           ? g_strdup (config->error_directory)
                           : g_build_filename (service->data_dir, "delivery-errors", config->name,
                                               NULL);
  d->filling = buffer_new ();
  d->cancellable = g_cancellable_new ();
  d->consumer = stream_consumer_start (service->store, config->stream, consumer,
                                       g_str_equal (config->starting_position, "LATEST")
                                           ? STREAM_START_LATEST
                                           : STREAM_START_TRIM_HORIZON,
                                       CONSUMER_BATCH, on_batch, d, error);
  if (d->consumer == NULL) {
    g_prefix_error (error, "delivery stream %s: ", config->name);
    delivery_unref (d);
    return NULL;
  }
  g_ptr_array_add (service->deliveries, d);
  g_message ("delivery \"%s\": %s to %s%s%s", config->name, config->stream, config->destination,
             d->destination == DEST_DIRECTORY ? " " : "",
             d->destination == DEST_DIRECTORY ? config->directory : "");
  return d;
}

static void
delivery_stop (Delivery *d)
{
  d->stopped = TRUE;
  g_cancellable_cancel (d->cancellable);
  g_clear_handle_id (&d->interval_timer, g_source_remove);
  g_clear_handle_id (&d->retry_timer, g_source_remove);
  /* The consumer stays valid while batches are out (transforms finishing
   * after this hand theirs back). */
  stream_consumer_stop (d->consumer);
  while (!g_queue_is_empty (&d->held))
    stream_consumer_release (d->consumer, g_queue_pop_head (&d->held));
  delivery_unref (d);
}

void
delivery_remove (StreamDeliveryService *service, Delivery *d)
{
  g_ptr_array_remove (service->deliveries, d);
  delivery_stop (d);
}

Delivery *
delivery_find (StreamDeliveryService *service, const char *name)
{
  for (guint i = 0; name && i < service->deliveries->len; i++) {
    Delivery *d = g_ptr_array_index (service->deliveries, i);
    if (g_str_equal (d->config->name, name))
      return d;
  }
  return NULL;
}

/* Records of the data stream not yet delivered (buffered, in flight or not
 * read yet): from the checkpoints to the ends of the shards. */
static gint64
lag_records (Delivery *d)
{
  g_autofree char *consumer = g_strdup_printf ("delivery-%s", d->config->name);
  guint64 records;
  stream_store_consumer_lag (d->service->store, d->config->stream, consumer,
                             g_str_equal (d->config->starting_position, "LATEST")
                                 ? STREAM_START_LATEST
                                 : STREAM_START_TRIM_HORIZON,
                             &records, NULL);
  return (gint64) records;
}

static void
delivery_to_json (Delivery *d, JsonBuilder *b)
{
  const EdgeConfigDelivery *c = d->config;
  json_builder_begin_object (b);
  edge_json_add_string (b, "name", c->name);
  edge_json_add_string (b, "stream", c->stream);
  edge_json_add_string (b, "destination", c->destination);
  edge_json_add_string (b, "target", d->destination == DEST_DIRECTORY ? c->directory
                                     : d->destination == DEST_S3      ? c->bucket
                                     : d->destination == DEST_NATS    ? d->subject
                                                                      : c->url);
  edge_json_add_string (b, "compression", c->compression);
  edge_json_add_int (b, "buffer_bytes", c->buffer_bytes);
  edge_json_add_int (b, "buffer_interval_ms", c->buffer_interval_ms);
  edge_json_add_int (b, "buffered_records", d->filling->records->len);
  edge_json_add_int (b, "buffered_bytes", (gint64) d->filling->bytes);
  edge_json_add_int (b, "in_flight_records", d->flushing ? d->flushing->records->len : 0);
  edge_json_add_int (b, "lag_records", lag_records (d));
  edge_json_add_int (b, "delivered_records", (gint64) d->delivered_records);
  edge_json_add_int (b, "delivered_bytes", (gint64) d->delivered_bytes);
  edge_json_add_int (b, "objects", (gint64) d->objects);
  edge_json_add_int (b, "failed_attempts", (gint64) d->failed_attempts);
  edge_json_add_int (b, "error_records", (gint64) d->error_records);
  if (c->transform[0]) {
    edge_json_add_string (b, "transform", c->transform);
    edge_json_add_int (b, "transformed_records", (gint64) d->transformed_records);
    edge_json_add_int (b, "dropped_records", (gint64) d->dropped_records);
    edge_json_add_int (b, "processing_failed_records", (gint64) d->processing_failed_records);
  }
  edge_json_add_string (b, "error_directory", d->error_directory);
  if (d->last_delivery_ms)
    edge_json_add_int (b, "last_delivery_ms", d->last_delivery_ms);
  if (d->last_error)
    edge_json_add_string (b, "last_error", d->last_error);
  json_builder_end_object (b);
}

static void
handle_list (EdgeRequest *request, gpointer data)
{
  StreamDeliveryService *service = data;
  edge_request_respond_array (request, "delivery_streams", service->deliveries,
                              (EdgeJsonWriteFunc) delivery_to_json);
}

static void
handle_get (EdgeRequest *request, gpointer data)
{
  Delivery *d = delivery_find (data, edge_request_param (request, "name"));
  if (d == NULL) {
    edge_request_respond_error (request, 404, "NotFound", "no delivery stream %s",
                                edge_request_param (request, "name"));
    return;
  }
  edge_request_respond_object (request, d, (EdgeJsonWriteFunc) delivery_to_json);
}

void
delivery_config_free (EdgeConfigDelivery *c)
{
  if (c == NULL)
    return;
  char **strings[] = { &c->name, &c->stream, &c->destination, &c->directory, &c->endpoint,
                       &c->bucket, &c->region, &c->access_key_id, &c->secret_access_key, &c->url,
                       &c->access_key, &c->prefix, &c->error_prefix, &c->error_directory,
                       &c->compression, &c->starting_position, &c->transform, &c->servers,
                       &c->subject, &c->jetstream_stream, &c->tls_ca_file, &c->tls_cert_file,
                       &c->tls_key_file, &c->credentials_file };
  for (guint i = 0; i < G_N_ELEMENTS (strings); i++)
    g_free (*strings[i]);
  g_free (c);
}

StreamDeliveryService *
stream_delivery_service_new (EdgeGateway *gateway, StreamStore *store, EdgeState *state,
                             const EdgeConfig *config, const char *data_dir, GError **error)
{
  static const EdgeRoute routes[] = {
    { "GET", "/v1/delivery", handle_list, "Delivery streams and what they delivered", "delivery" },
    { "GET", "/v1/delivery/{name}", handle_get, "One delivery stream", "delivery" },
  };
  g_autoptr (StreamDeliveryService) service = g_new0 (StreamDeliveryService, 1);
  service->gateway = gateway;
  service->store = store;
  service->state = state;
  service->config = config;
  service->data_dir = g_strdup (data_dir);
  service->session = soup_session_new_with_options ("timeout", HTTP_TIMEOUT_S, NULL);
  service->deliveries = g_ptr_array_new ();
  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (gateway, &routes[i], service, error))
      return NULL;
  for (guint i = 0; i < config->deliveries->len; i++)
    if (!delivery_start (service, config->deliveries->pdata[i], NULL, error))
      return NULL;
  if (!firehose_start (service, error))
    return NULL;
  return g_steal_pointer (&service);
}

void
stream_delivery_service_free (StreamDeliveryService *service)
{
  if (service == NULL)
    return;
  for (guint i = 0; i < service->deliveries->len; i++)
    delivery_stop (g_ptr_array_index (service->deliveries, i));
  g_ptr_array_unref (service->deliveries);
  g_object_unref (service->session);
  g_free (service->data_dir);
  g_free (service);
}
