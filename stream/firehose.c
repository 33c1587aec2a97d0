/* firehose.c: the Amazon Data Firehose API over delivery streams, so that
 * `aws firehose ...` and the SDKs work with --endpoint-url.
 *
 *   CreateDeliveryStream   DirectPut or KinesisStreamAsSource; to S3
 *                          (S3DestinationConfiguration or
 *                          ExtendedS3DestinationConfiguration, at the
 *                          server of delivery.s3.*) or to an HTTP endpoint
 *   DescribeDeliveryStream, ListDeliveryStreams, DeleteDeliveryStream
 *   PutRecord, PutRecordBatch   DirectPut streams only, as in Firehose
 *
 * A DirectPut delivery stream keeps what it is given in a data stream of
 * its own ("firehose-NAME", one shard, durable before the answer), which
 * it then delivers like any other: a PutRecord that was answered survives
 * a crash. Delivery streams made here are kept in the state database and
 * started again with edged; those of the configuration file are described
 * but cannot be deleted here.
 */
#define G_LOG_DOMAIN "delivery"

#include "delivery-private.h"

#include "kinesis-decode.h"

#define ACCOUNT "000000000000"
#define BATCH_MAX_RECORDS 500
#define BATCH_MAX_BYTES (4 * 1024 * 1024)
#define RECORD_MAX_BYTES (1000 * 1024)

static const char *const migrations[] = {
  "CREATE TABLE firehose_streams (name TEXT PRIMARY KEY, definition TEXT NOT NULL,"
  " direct_put INTEGER NOT NULL, created_ms INTEGER NOT NULL)",
};

typedef struct {
  StreamDeliveryService *service;
  EdgeRequest *request;
  JsonNode *root;
  JsonObject *body;
  char *region;
  gboolean batch;   /* PutRecordBatch, not PutRecord */
} Call;

static void
call_free (Call *call)
{
  if (call->root)
    json_node_unref (call->root);
  g_free (call->region);
  g_free (call);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Call, call_free)

static void fail (Call *call, const char *type, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
fail (Call *call, const char *type, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  g_autofree char *message = g_strdup_vprintf (format, args);
  va_end (args);
  edge_request_respond_amz_error (call->request, g_str_equal (type, "ServiceUnavailableException")
                                                     ? 503
                                                     : 400,
                                  type, "%s", message);
}

static JsonObject *
member_object (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;
  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static gboolean
member_int (JsonObject *o, const char *name, gint64 *ret)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *ret = json_node_get_int (n);
  return TRUE;
}

static char *
delivery_arn (Call *call, const char *name)
{
  return g_strdup_printf ("arn:aws:firehose:%s:" ACCOUNT ":deliverystream/%s", call->region, name);
}

static const char *
required_name (Call *call)
{
  const char *name = edge_json_member_string (call->body, "DeliveryStreamName");
  if (name == NULL) {
    fail (call, "InvalidArgumentException", "DeliveryStreamName is required");
    return NULL;
  }
  return name;
}

static Delivery *
get_delivery (Call *call)
{
  const char *name = required_name (call);
  if (name == NULL)
    return NULL;
  Delivery *d = delivery_find (call->service, name);
  if (d == NULL)
    fail (call, "ResourceNotFoundException",
          "Firehose %s under account " ACCOUNT " not found.", name);
  return d;
}

char *
firehose_backing_stream (const char *name)
{
  return g_strdup_printf ("firehose-%s", name);
}

/* ---- definitions kept in the state database ---- */

#define FIELDS(X)                                                                               \
  X (name) X (stream) X (destination) X (directory) X (endpoint) X (bucket) X (region)          \
  X (access_key_id) X (secret_access_key) X (url) X (access_key) X (prefix) X (error_prefix)    \
  X (error_directory) X (compression) X (starting_position) X (transform)

static char *
definition_to_json (const EdgeConfigDelivery *c)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
#define ADD(f)                            \
  json_builder_set_member_name (b, #f); \
  json_builder_add_string_value (b, c->f);
  FIELDS (ADD)
#undef ADD
  json_builder_set_member_name (b, "buffer_bytes");
  json_builder_add_int_value (b, c->buffer_bytes);
  json_builder_set_member_name (b, "buffer_interval_ms");
  json_builder_add_int_value (b, c->buffer_interval_ms);
  json_builder_set_member_name (b, "retry_duration_ms");
  json_builder_add_int_value (b, c->retry_duration_ms);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

static EdgeConfigDelivery *
definition_from_json (const char *text)
{
  g_autoptr (JsonNode) root = json_from_string (text, NULL);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  if (o == NULL)
    return NULL;
  EdgeConfigDelivery *c = g_new0 (EdgeConfigDelivery, 1);
#define GET(f) c->f = g_strdup (edge_json_member_string (o, #f) ? edge_json_member_string (o, #f) : "");
  FIELDS (GET)
#undef GET
  c->buffer_bytes = json_object_get_int_member_with_default (o, "buffer_bytes", 5 << 20);
  c->buffer_interval_ms = json_object_get_int_member_with_default (o, "buffer_interval_ms", 300000);
  c->retry_duration_ms = json_object_get_int_member_with_default (o, "retry_duration_ms", 300000);
  return c;
}

static gboolean
persist (StreamDeliveryService *service, const EdgeConfigDelivery *c, gboolean direct_put,
         GError **error)
{
  sqlite3 *db = edge_state_db (service->state);
  sqlite3_stmt *stmt = NULL;
  g_autofree char *definition = definition_to_json (c);
  gboolean ok = sqlite3_prepare_v2 (db, "INSERT INTO firehose_streams VALUES (?, ?, ?, ?)", -1,
                                    &stmt, NULL) == SQLITE_OK;
  if (ok) {
    sqlite3_bind_text (stmt, 1, c->name, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 2, definition, -1, SQLITE_STATIC);
    sqlite3_bind_int (stmt, 3, direct_put);
    sqlite3_bind_int64 (stmt, 4, g_get_real_time () / 1000);
    ok = sqlite3_step (stmt) == SQLITE_DONE;
  }
  if (!ok)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "state database: %s", sqlite3_errmsg (db));
  sqlite3_finalize (stmt);
  return ok;
}

static void
forget (StreamDeliveryService *service, const char *name)
{
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (edge_state_db (service->state),
                          "DELETE FROM firehose_streams WHERE name = ?", -1, &stmt, NULL) == SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_step (stmt);
  }
  sqlite3_finalize (stmt);
}

/* ---- CreateDeliveryStream ---- */

static gboolean
buffering_hints (Call *call, JsonObject *dest, EdgeConfigDelivery *c)
{
  JsonObject *hints = member_object (dest, "BufferingHints");
  gint64 mb = 5, seconds = 300;
  if (hints && json_object_has_member (hints, "SizeInMBs") && !member_int (hints, "SizeInMBs", &mb))
    mb = -1;
  if (hints && json_object_has_member (hints, "IntervalInSeconds") &&
      !member_int (hints, "IntervalInSeconds", &seconds))
    seconds = -1;
  if (mb < 1 || mb > 128 || seconds < 0 || seconds > 900) {
    fail (call, "InvalidArgumentException",
          "BufferingHints: SizeInMBs from 1 to 128, IntervalInSeconds from 0 to 900");
    return FALSE;
  }
  c->buffer_bytes = mb << 20;
  c->buffer_interval_ms = seconds * 1000;
  return TRUE;
}

/* A prefix that stays below the destination: no "..", no leading '/'. */
static gboolean
prefix_ok (const char *prefix)
{
  return prefix[0] != '/' && strstr (prefix, "..") == NULL && strlen (prefix) <= 1024;
}

static gboolean
s3_destination (Call *call, JsonObject *dest, EdgeConfigDelivery *c)
{
  const EdgeConfig *config = call->service->config;
  const char *bucket_arn = edge_json_member_string (dest, "BucketARN");
  const char *prefix = edge_json_member_string (dest, "Prefix");
  const char *error_prefix = edge_json_member_string (dest, "ErrorOutputPrefix");
  const char *compression = edge_json_member_string (dest, "CompressionFormat");

  if (bucket_arn == NULL || !g_str_has_prefix (bucket_arn, "arn:aws:s3:::") ||
      !bucket_arn[strlen ("arn:aws:s3:::")] || strchr (bucket_arn + strlen ("arn:aws:s3:::"), '/')) {
    fail (call, "InvalidArgumentException", "BucketARN must be arn:aws:s3:::BUCKET");
    return FALSE;
  }
  if (config->delivery_s3_endpoint[0] == '\0') {
    fail (call, "InvalidArgumentException",
          "this edged has no S3-compatible server to deliver to: set delivery.s3.endpoint "
          "(and its credentials) in its configuration");
    return FALSE;
  }
  if (compression && !g_str_equal (compression, "UNCOMPRESSED") && !g_str_equal (compression, "GZIP")) {
    fail (call, "InvalidArgumentException",
          "CompressionFormat %s is not supported here: UNCOMPRESSED or GZIP", compression);
    return FALSE;
  }
  if ((prefix && !prefix_ok (prefix)) || (error_prefix && !prefix_ok (error_prefix))) {
    fail (call, "InvalidArgumentException", "Prefix and ErrorOutputPrefix must not hold \"..\"");
    return FALSE;
  }
  c->destination = g_strdup ("s3");
  c->endpoint = g_strdup (config->delivery_s3_endpoint);
  c->bucket = g_strdup (bucket_arn + strlen ("arn:aws:s3:::"));
  c->region = g_strdup (config->delivery_s3_region);
  c->access_key_id = g_strdup (config->delivery_s3_access_key_id);
  c->secret_access_key = g_strdup (config->delivery_s3_secret_access_key);
  c->prefix = g_strdup (prefix ? prefix : "");
  c->error_prefix = g_strdup (error_prefix ? error_prefix : "errors/");
  c->compression = g_strdup (compression && g_str_equal (compression, "GZIP") ? "gzip" : "none");
  return buffering_hints (call, dest, c);
}

static gboolean
http_destination (Call *call, JsonObject *dest, EdgeConfigDelivery *c)
{
  JsonObject *endpoint = member_object (dest, "EndpointConfiguration");
  JsonObject *request = member_object (dest, "RequestConfiguration");
  JsonObject *retry = member_object (dest, "RetryOptions");
  const char *url = edge_json_member_string (endpoint, "Url");
  const char *key = edge_json_member_string (endpoint, "AccessKey");
  const char *encoding = edge_json_member_string (request, "ContentEncoding");
  gint64 retry_s = 300;

  if (url == NULL || !(g_str_has_prefix (url, "http://") || g_str_has_prefix (url, "https://"))) {
    fail (call, "InvalidArgumentException", "EndpointConfiguration.Url must be an http(s) URL");
    return FALSE;
  }
  if (retry && json_object_has_member (retry, "DurationInSeconds") &&
      (!member_int (retry, "DurationInSeconds", &retry_s) || retry_s < 0 || retry_s > 7200)) {
    fail (call, "InvalidArgumentException", "RetryOptions.DurationInSeconds from 0 to 7200");
    return FALSE;
  }
  c->destination = g_strdup ("http");
  c->url = g_strdup (url);
  c->access_key = g_strdup (key ? key : "");
  c->compression = g_strdup (encoding && g_str_equal (encoding, "GZIP") ? "gzip" : "none");
  c->retry_duration_ms = retry_s * 1000;
  return buffering_hints (call, dest, c);
}

static void
fill_defaults (EdgeConfigDelivery *c)
{
  char **strings[] = { &c->destination, &c->directory, &c->endpoint, &c->bucket, &c->region,
                       &c->access_key_id, &c->secret_access_key, &c->url, &c->access_key,
                       &c->prefix, &c->error_prefix, &c->error_directory, &c->compression,
                       &c->starting_position, &c->transform };
  for (guint i = 0; i < G_N_ELEMENTS (strings); i++)
    if (*strings[i] == NULL)
      *strings[i] = g_strdup ("");
}

static void
op_create (Call *call)
{
  StreamDeliveryService *service = call->service;
  const char *name = required_name (call);
  const char *type = edge_json_member_string (call->body, "DeliveryStreamType");
  JsonObject *source = member_object (call->body, "KinesisStreamSourceConfiguration");
  JsonObject *s3 = member_object (call->body, "ExtendedS3DestinationConfiguration");
  JsonObject *http = member_object (call->body, "HttpEndpointDestinationConfiguration");
  g_autoptr (GError) error = NULL;

  if (name == NULL)
    return;
  if (!delivery_name_valid (name)) {
    fail (call, "InvalidArgumentException",
          "DeliveryStreamName: 1 to %d of a-z, A-Z, 0-9, _ . and -", DELIVERY_NAME_MAX);
    return;
  }
  if (delivery_find (service, name)) {
    fail (call, "ResourceInUseException", "Firehose %s under account " ACCOUNT " already exists.",
          name);
    return;
  }
  if (s3 == NULL)
    s3 = member_object (call->body, "S3DestinationConfiguration");
  if ((s3 != NULL) + (http != NULL) != 1) {
    fail (call, "InvalidArgumentException",
          "exactly one destination: ExtendedS3DestinationConfiguration, S3DestinationConfiguration "
          "or HttpEndpointDestinationConfiguration");
    return;
  }
  gboolean direct_put = type == NULL || g_str_equal (type, "DirectPut");
  if (!direct_put && !g_str_equal (type, "KinesisStreamAsSource")) {
    fail (call, "InvalidArgumentException",
          "DeliveryStreamType %s is not supported here: DirectPut or KinesisStreamAsSource", type);
    return;
  }
  g_autofree char *source_stream = NULL;
  if (!direct_put) {
    const char *arn = edge_json_member_string (source, "KinesisStreamARN");
    const char *slash = arn ? strstr (arn, ":stream/") : NULL;
    if (slash == NULL || !stream_store_lookup (service->store, slash + strlen (":stream/"), NULL)) {
      fail (call, "InvalidArgumentException",
            "KinesisStreamSourceConfiguration.KinesisStreamARN must name a data stream of this "
            "edged (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)");
      return;
    }
    source_stream = g_strdup (slash + strlen (":stream/"));
  }

  EdgeConfigDelivery *c = g_new0 (EdgeConfigDelivery, 1);
  c->name = g_strdup (name);
  c->retry_duration_ms = 300000;
  if (!(s3 ? s3_destination (call, s3, c) : http_destination (call, http, c))) {
    fill_defaults (c);
    delivery_config_free (c);
    return;
  }
  c->starting_position = g_strdup (direct_put ? "TRIM_HORIZON" : "LATEST");
  c->stream = direct_put ? firehose_backing_stream (name) : g_steal_pointer (&source_stream);
  fill_defaults (c);

  if (direct_put && !stream_store_lookup (service->store, c->stream, NULL)) {
    StreamSettings settings;
    stream_settings_init (&settings);
    settings.max_record_bytes = RECORD_MAX_BYTES + 256;
    if (!stream_store_create (service->store, c->stream, 1, &settings, &error)) {
      delivery_config_free (c);
      fail (call, "LimitExceededException", "cannot make the stream behind %s: %s", name,
            error->message);
      return;
    }
  }
  if (!persist (service, c, direct_put, &error)) {
    delivery_config_free (c);
    fail (call, "ServiceUnavailableException", "%s", error->message);
    return;
  }
  Delivery *d = delivery_start (service, NULL, c, &error);
  if (d == NULL) {
    forget (service, name);
    fail (call, "InvalidArgumentException", "%s", error->message);
    return;
  }
  d->direct_put = direct_put;
  g_autofree char *arn = delivery_arn (call, name);
  g_autofree char *answer = g_strdup_printf ("{\"DeliveryStreamARN\":\"%s\"}", arn);
  g_autoptr (GBytes) body = g_bytes_new (answer, strlen (answer));
  edge_request_respond (call->request, 200, "application/x-amz-json-1.1", body);
}

/* ---- Describe, List, Delete ---- */

static void
add_hints (JsonBuilder *b, const EdgeConfigDelivery *c)
{
  json_builder_set_member_name (b, "BufferingHints");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "SizeInMBs");
  json_builder_add_int_value (b, MAX (1, c->buffer_bytes >> 20));
  json_builder_set_member_name (b, "IntervalInSeconds");
  json_builder_add_int_value (b, c->buffer_interval_ms / 1000);
  json_builder_end_object (b);
}

static void
describe_destination (JsonBuilder *b, const EdgeConfigDelivery *c)
{
  json_builder_begin_object (b);
  edge_json_add_string (b, "DestinationId", "destinationId-000000000001");
  if (g_str_equal (c->destination, "http")) {
    json_builder_set_member_name (b, "HttpEndpointDestinationDescription");
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "EndpointConfiguration");
    json_builder_begin_object (b);
    edge_json_add_string (b, "Url", c->url);
    edge_json_add_string (b, "Name", c->name);
    json_builder_end_object (b);
    add_hints (b, c);
    json_builder_set_member_name (b, "RequestConfiguration");
    json_builder_begin_object (b);
    edge_json_add_string (b, "ContentEncoding", g_str_equal (c->compression, "gzip") ? "GZIP" : "NONE");
    json_builder_end_object (b);
    json_builder_set_member_name (b, "RetryOptions");
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "DurationInSeconds");
    json_builder_add_int_value (b, c->retry_duration_ms / 1000);
    json_builder_end_object (b);
    json_builder_end_object (b);
  } else {
    g_autofree char *bucket = g_strdup_printf ("arn:aws:s3:::%s", g_str_equal (c->destination, "s3")
                                                                   ? c->bucket
                                                                   : c->directory);
    const char *names[] = { "S3DestinationDescription", "ExtendedS3DestinationDescription" };
    for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
      json_builder_set_member_name (b, names[i]);
      json_builder_begin_object (b);
      edge_json_add_string (b, "RoleARN", "arn:aws:iam::" ACCOUNT ":role/edged");
      edge_json_add_string (b, "BucketARN", bucket);
      edge_json_add_string (b, "Prefix", c->prefix);
      edge_json_add_string (b, "ErrorOutputPrefix", c->error_prefix);
      add_hints (b, c);
      edge_json_add_string (b, "CompressionFormat", g_str_equal (c->compression, "gzip") ? "GZIP"
                                                                              : "UNCOMPRESSED");
      json_builder_set_member_name (b, "EncryptionConfiguration");
      json_builder_begin_object (b);
      edge_json_add_string (b, "NoEncryptionConfig", "NoEncryption");
      json_builder_end_object (b);
      json_builder_end_object (b);
    }
  }
  json_builder_end_object (b);
}

static void
respond_builder (Call *call, JsonBuilder *b)
{
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_amz_json (call->request, root);
}

static void
op_describe (Call *call)
{
  Delivery *d = get_delivery (call);
  if (d == NULL)
    return;
  const EdgeConfigDelivery *c = d->config;
  g_autofree char *arn = delivery_arn (call, c->name);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "DeliveryStreamDescription");
  json_builder_begin_object (b);
  edge_json_add_string (b, "DeliveryStreamName", c->name);
  edge_json_add_string (b, "DeliveryStreamARN", arn);
  edge_json_add_string (b, "DeliveryStreamStatus", "ACTIVE");
  edge_json_add_string (b, "DeliveryStreamType", d->direct_put ? "DirectPut" : "KinesisStreamAsSource");
  edge_json_add_string (b, "VersionId", "1");
  json_builder_set_member_name (b, "CreateTimestamp");
  json_builder_add_double_value (b, d->created_ms / 1000.0);
  if (!d->direct_put) {
    g_autofree char *stream_arn = g_strdup_printf ("arn:aws:kinesis:%s:" ACCOUNT ":stream/%s",
                                                   call->region, c->stream);
    json_builder_set_member_name (b, "Source");
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "KinesisStreamSourceDescription");
    json_builder_begin_object (b);
    edge_json_add_string (b, "KinesisStreamARN", stream_arn);
    edge_json_add_string (b, "RoleARN", "arn:aws:iam::" ACCOUNT ":role/edged");
    json_builder_end_object (b);
    json_builder_end_object (b);
  }
  json_builder_set_member_name (b, "Destinations");
  json_builder_begin_array (b);
  describe_destination (b, c);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "HasMoreDestinations");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_end_object (b);
  json_builder_end_object (b);
  respond_builder (call, b);
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static void
op_list (Call *call)
{
  StreamDeliveryService *service = call->service;
  const char *type = edge_json_member_string (call->body, "DeliveryStreamType");
  const char *after = edge_json_member_string (call->body, "ExclusiveStartDeliveryStreamName");
  gint64 limit = 10;
  if (json_object_has_member (call->body, "Limit") &&
      (!member_int (call->body, "Limit", &limit) || limit < 1 || limit > 10000)) {
    fail (call, "InvalidArgumentException", "Limit from 1 to 10000");
    return;
  }
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  for (guint i = 0; i < service->deliveries->len; i++) {
    Delivery *d = g_ptr_array_index (service->deliveries, i);
    const char *kind = d->direct_put ? "DirectPut" : "KinesisStreamAsSource";
    if ((type == NULL || g_str_equal (type, kind)) &&
        (after == NULL || strcmp (d->config->name, after) > 0))
      g_ptr_array_add (names, (gpointer) d->config->name);
  }
  g_ptr_array_sort (names, compare_names);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "DeliveryStreamNames");
  json_builder_begin_array (b);
  for (guint i = 0; i < names->len && i < limit; i++)
    json_builder_add_string_value (b, g_ptr_array_index (names, i));
  json_builder_end_array (b);
  json_builder_set_member_name (b, "HasMoreDeliveryStreams");
  json_builder_add_boolean_value (b, names->len > (guint) limit);
  json_builder_end_object (b);
  respond_builder (call, b);
}

static void
op_delete (Call *call)
{
  StreamDeliveryService *service = call->service;
  Delivery *d = get_delivery (call);
  if (d == NULL)
    return;
  if (d->owned == NULL) {
    fail (call, "ResourceInUseException",
          "Firehose %s is defined in edged's configuration file: remove it there", d->config->name);
    return;
  }
  g_autofree char *name = g_strdup (d->config->name);
  g_autofree char *stream = g_strdup (d->config->stream);
  g_autofree char *consumer = g_strdup_printf ("delivery-%s", name);
  gboolean direct_put = d->direct_put;
  delivery_remove (service, d);
  forget (service, name);
  if (direct_put)
    stream_store_delete (service->store, stream, NULL);
  else
    stream_store_deregister_consumer (service->store, stream, consumer, NULL);
  g_autoptr (JsonObject) empty = json_object_new ();
  g_autoptr (JsonNode) answer = json_node_init_object (json_node_alloc (), empty);
  edge_request_respond_amz_json (call->request, answer);
}

/* ---- PutRecord, PutRecordBatch ---- */

static void
put_done (StreamPutResult *results, guint n, gpointer data)
{
  g_autoptr (Call) call = data;
  GString *out = g_string_new (NULL);
  guint failed = 0;
  if (!call->batch) {
    if (results[0].error) {
      fail (call, "ServiceUnavailableException", "%s", results[0].error->message);
      g_string_free (out, TRUE);
      return;
    }
    g_autofree char *id = stream_sequence_format (results[0].shard_ordinal, results[0].number);
    g_string_append_printf (out, "{\"RecordId\":\"%s\",\"Encrypted\":false}", id);
  } else {
    for (guint i = 0; i < n; i++)
      failed += results[i].error != NULL;
    g_string_append_printf (out, "{\"FailedPutCount\":%u,\"Encrypted\":false,\"RequestResponses\":[",
                            failed);
    for (guint i = 0; i < n; i++) {
      if (results[i].error) {
        g_autofree char *message = g_strescape (results[i].error->message, NULL);
        g_string_append_printf (out, "%s{\"ErrorCode\":\"ServiceUnavailableException\","
                                     "\"ErrorMessage\":\"%s\"}",
                                i ? "," : "", message);
      } else {
        g_autofree char *id = stream_sequence_format (results[i].shard_ordinal, results[i].number);
        g_string_append_printf (out, "%s{\"RecordId\":\"%s\"}", i ? "," : "", id);
      }
    }
    g_string_append (out, "]}");
  }
  g_autoptr (GBytes) body = g_string_free_to_bytes (out);
  edge_request_respond (call->request, 200, "application/x-amz-json-1.1", body);
}

/* Decodes Record.Data (base64) into @ret; FALSE having answered. */
static gboolean
decode_record (Call *call, JsonObject *record, const char *where, GBytes **ret)
{
  const char *data = edge_json_member_string (record, "Data");
  if (data == NULL) {
    fail (call, "InvalidArgumentException", "%s.Data is required (base64)", where);
    return FALSE;
  }
  gsize len = strlen (data);
  g_autofree guint8 *out = g_malloc (len / 4 * 3 + 3);
  gssize n = kinesis_decode_base64 (data, len, out);
  if (n < 0) {
    fail (call, "SerializationException", "%s.Data is not valid base64", where);
    return FALSE;
  }
  if (n > RECORD_MAX_BYTES) {
    fail (call, "InvalidArgumentException",
          "%s.Data is %" G_GSSIZE_FORMAT " bytes; a record is at most %d", where, n,
          RECORD_MAX_BYTES);
    return FALSE;
  }
  *ret = g_bytes_new_take (g_steal_pointer (&out), (gsize) n);
  return TRUE;
}

static gboolean
op_put (Call *call, gboolean batch)
{
  StreamDeliveryService *service = call->service;
  Delivery *d = get_delivery (call);
  if (d == NULL)
    return FALSE;
  if (!d->direct_put) {
    fail (call, "InvalidArgumentException",
          "This operation is not permitted on KinesisStreamAsSource delivery stream type.");
    return FALSE;
  }
  g_autoptr (GPtrArray) datas = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  if (batch) {
    JsonNode *node = json_object_get_member (call->body, "Records");
    JsonArray *records = node && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
    guint n = records ? json_array_get_length (records) : 0;
    gsize total = 0;
    if (n < 1 || n > BATCH_MAX_RECORDS) {
      fail (call, "InvalidArgumentException", "Records: 1 to %d records", BATCH_MAX_RECORDS);
      return FALSE;
    }
    for (guint i = 0; i < n; i++) {
      JsonNode *item = json_array_get_element (records, i);
      GBytes *data = NULL;
      g_autofree char *where = g_strdup_printf ("Records[%u]", i);
      if (!JSON_NODE_HOLDS_OBJECT (item)) {
        fail (call, "InvalidArgumentException", "%s must be an object", where);
        return FALSE;
      }
      if (!decode_record (call, json_node_get_object (item), where, &data))
        return FALSE;
      total += g_bytes_get_size (data);
      g_ptr_array_add (datas, data);
    }
    if (total > BATCH_MAX_BYTES) {
      fail (call, "InvalidArgumentException", "Records: %" G_GSIZE_FORMAT " bytes; at most %d",
            total, BATCH_MAX_BYTES);
      return FALSE;
    }
  } else {
    GBytes *data = NULL;
    JsonObject *record = member_object (call->body, "Record");
    if (record == NULL) {
      fail (call, "InvalidArgumentException", "Record is required");
      return FALSE;
    }
    if (!decode_record (call, record, "Record", &data))
      return FALSE;
    g_ptr_array_add (datas, data);
  }
  g_autofree StreamPutRecord *puts = g_new0 (StreamPutRecord, datas->len);
  for (guint i = 0; i < datas->len; i++) {
    puts[i].partition_key = "firehose";
    puts[i].data = g_ptr_array_index (datas, i);
  }
  call->batch = batch;
  g_autoptr (GError) error = NULL;
  if (!stream_store_put (service->store, d->config->stream, puts, datas->len, put_done, call,
                         &error)) {
    fail (call, "ServiceUnavailableException", "%s", error->message);
    return FALSE;
  }
  edge_request_pause (call->request);
  return TRUE;
}

/* ---- dispatch ---- */

static void
handle_firehose (EdgeRequest *request, gpointer data)
{
  const char *target = edge_request_header (request, "X-Amz-Target");
  const char *op = strchr (target, '.') + 1;
  gsize len;
  const char *text = g_bytes_get_data (edge_request_body (request), &len);
  g_autoptr (GError) error = NULL;
  g_autoptr (Call) call = g_new0 (Call, 1);

  call->service = data;
  call->request = request;
  call->region = edge_request_aws_region (request);
  call->root = edge_json_parse (text ? text : "", len, G_MAXSIZE, &error);
  if (call->root == NULL || !JSON_NODE_HOLDS_OBJECT (call->root)) {
    fail (call, "SerializationException", "the request body must be a JSON object%s%s",
          error ? ": " : "", error ? error->message : "");
    return;
  }
  call->body = json_node_get_object (call->root);
  if (g_str_equal (op, "CreateDeliveryStream"))
    op_create (call);
  else if (g_str_equal (op, "DescribeDeliveryStream"))
    op_describe (call);
  else if (g_str_equal (op, "ListDeliveryStreams"))
    op_list (call);
  else if (g_str_equal (op, "DeleteDeliveryStream"))
    op_delete (call);
  else if (g_str_equal (op, "PutRecord") || g_str_equal (op, "PutRecordBatch")) {
    if (op_put (call, g_str_equal (op, "PutRecordBatch")))
      g_steal_pointer (&call); /* put_done answers and frees it */
  } else
    edge_request_respond_amz_error (request, 400, "UnknownOperationException",
                                    "edged does not implement Firehose %s", op);
}

gboolean
firehose_start (StreamDeliveryService *service, GError **error)
{
  if (!edge_state_migrate (service->state, "firehose", migrations, G_N_ELEMENTS (migrations), error) ||
      !edge_gateway_add_amz_target (service->gateway, "Firehose_20150804", handle_firehose,
                                    "Amazon Data Firehose API", service, error))
    return FALSE;
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (edge_state_db (service->state),
                          "SELECT definition, direct_put, created_ms FROM firehose_streams "
                          "ORDER BY name", -1, &stmt, NULL) != SQLITE_OK) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "state database: %s",
                 sqlite3_errmsg (edge_state_db (service->state)));
    return FALSE;
  }
  while (sqlite3_step (stmt) == SQLITE_ROW) {
    EdgeConfigDelivery *c = definition_from_json ((const char *) sqlite3_column_text (stmt, 0));
    g_autoptr (GError) start_error = NULL;
    if (c == NULL)
      continue;
    if (delivery_find (service, c->name)) {
      g_warning ("delivery \"%s\": made with the API and also in the configuration file: the "
                 "file's is used", c->name);
      delivery_config_free (c);
      continue;
    }
    Delivery *d = delivery_start (service, NULL, c, &start_error);
    if (d == NULL) {
      g_warning ("%s", start_error->message);
      continue;
    }
    d->direct_put = sqlite3_column_int (stmt, 1);
    d->created_ms = sqlite3_column_int64 (stmt, 2);
  }
  sqlite3_finalize (stmt);
  return TRUE;
}
