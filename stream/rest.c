/* rest.c: the management API for streams, in edged's own REST shape
 * (camelCase JSON, errors {"error": {"code", "message"}}), for the web UI and
 * edgectl. The Kinesis API (kinesis.c) is the AWS-shaped view of the same
 * store.
 *
 *   GET    /v1/streams          every stream, with records and bytes held
 *   POST   /v1/streams          {"name", "shards", "durability", "batchMs",
 *                                "retentionHours", "maxRecordBytes"}
 *   GET    /v1/streams/{name}   one stream and its shards
 *   DELETE /v1/streams/{name}
 */
#define G_LOG_DOMAIN "stream"

#include "stream.h"

static const char *const durability_names[] = { "sync", "batch", "none" };

static void
add_stream (JsonBuilder *b, StreamStore *store, const StreamInfo *info, gboolean with_shards)
{
  guint64 records = 0, bytes = 0;
  g_autoptr (GDateTime) created = g_date_time_new_from_unix_utc (info->created_ms / 1000);
  g_autofree char *created_text = g_date_time_format_iso8601 (created);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, info->name);
  json_builder_set_member_name (b, "createdAt");
  json_builder_add_string_value (b, created_text);
  json_builder_set_member_name (b, "durability");
  json_builder_add_string_value (b, durability_names[info->settings.durability]);
  if (info->settings.durability == STREAM_DURABILITY_BATCH) {
    json_builder_set_member_name (b, "batchMs");
    json_builder_add_int_value (b, info->settings.batch_ms);
  }
  json_builder_set_member_name (b, "retentionHours");
  json_builder_add_int_value (b, info->settings.retention_hours);
  json_builder_set_member_name (b, "retentionBytes");
  json_builder_add_int_value (b, (gint64) info->settings.retention_bytes);
  json_builder_set_member_name (b, "maxRecordBytes");
  json_builder_add_int_value (b, (gint64) info->settings.max_record_bytes);
  json_builder_set_member_name (b, "encryption");
  json_builder_add_string_value (b, "AES-256-GCM");
  if (with_shards) {
    json_builder_set_member_name (b, "shards");
    json_builder_begin_array (b);
  }
  for (guint i = 0; i < info->shards->len; i++) {
    const StreamShardInfo *s = g_ptr_array_index (info->shards, i);
    guint64 first = 0, next = 0, shard_bytes = 0;
    stream_store_shard_range (store, info->name, s->ordinal, &first, &next, NULL);
    stream_store_shard_bytes (store, info->name, s->ordinal, &shard_bytes, NULL);
    records += next - first;
    bytes += shard_bytes;
    if (!with_shards)
      continue;
    g_autofree char *start = stream_hash_key_format (&s->start);
    g_autofree char *end = stream_hash_key_format (&s->end);
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "id");
    json_builder_add_string_value (b, s->id);
    json_builder_set_member_name (b, "hashKeyRange");
    json_builder_begin_array (b);
    json_builder_add_string_value (b, start);
    json_builder_add_string_value (b, end);
    json_builder_end_array (b);
    json_builder_set_member_name (b, "records");
    json_builder_add_int_value (b, (gint64) (next - first));
    json_builder_set_member_name (b, "bytes");
    json_builder_add_int_value (b, (gint64) shard_bytes);
    if (next > first) {
      g_autofree char *oldest = stream_sequence_format (s->ordinal, first);
      g_autofree char *newest = stream_sequence_format (s->ordinal, next - 1);
      json_builder_set_member_name (b, "oldestSequenceNumber");
      json_builder_add_string_value (b, oldest);
      json_builder_set_member_name (b, "newestSequenceNumber");
      json_builder_add_string_value (b, newest);
    }
    json_builder_end_object (b);
  }
  if (with_shards)
    json_builder_end_array (b);
  else {
    json_builder_set_member_name (b, "shards");
    json_builder_add_int_value (b, info->shards->len);
  }
  json_builder_set_member_name (b, "records");
  json_builder_add_int_value (b, (gint64) records);
  json_builder_set_member_name (b, "bytes");
  json_builder_add_int_value (b, (gint64) bytes);
  json_builder_end_object (b);
}

static void
respond_builder (EdgeRequest *request, guint status, JsonBuilder *b)
{
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, status, root);
}

static void
handle_list (EdgeRequest *request, gpointer data)
{
  StreamStore *store = data;
  g_autoptr (GPtrArray) names = stream_store_list (store);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "streams");
  json_builder_begin_array (b);
  for (guint i = 0; i < names->len; i++)
    add_stream (b, store, stream_store_lookup (store, g_ptr_array_index (names, i), NULL), FALSE);
  json_builder_end_array (b);
  json_builder_end_object (b);
  respond_builder (request, 200, b);
}

static void
handle_get (EdgeRequest *request, gpointer data)
{
  StreamStore *store = data;
  const char *name = edge_request_param (request, "name");
  const StreamInfo *info = stream_store_lookup (store, name, NULL);
  if (info == NULL) {
    edge_request_respond_error (request, 404, "NotFound", "stream %s not found", name);
    return;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  add_stream (b, store, info, TRUE);
  respond_builder (request, 200, b);
}

static gboolean
member_int (JsonObject *o, const char *name, gint64 *value, EdgeRequest *request)
{
  JsonNode *n = json_object_get_member (o, name);
  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64) {
    edge_request_respond_error (request, 400, "InvalidArgument", "%s must be an integer", name);
    return FALSE;
  }
  *value = json_node_get_int (n);
  return TRUE;
}

static void
handle_create (EdgeRequest *request, gpointer data)
{
  StreamStore *store = data;
  g_autoptr (JsonNode) root = edge_request_json (request);
  g_autoptr (GError) error = NULL;
  StreamSettings settings;
  gint64 shards = 1, batch_ms, retention, max_record;
  const char *name = NULL, *durability = NULL;

  if (root == NULL)
    return;
  if (!JSON_NODE_HOLDS_OBJECT (root)) {
    edge_request_respond_error (request, 400, "InvalidArgument", "the body must be a JSON object");
    return;
  }
  JsonObject *o = json_node_get_object (root);
  stream_settings_init (&settings);
  batch_ms = settings.batch_ms;
  retention = settings.retention_hours;
  max_record = (gint64) settings.max_record_bytes;
  if (json_object_has_member (o, "name") && JSON_NODE_HOLDS_VALUE (json_object_get_member (o, "name")))
    name = json_object_get_string_member (o, "name");
  if (name == NULL) {
    edge_request_respond_error (request, 400, "InvalidArgument", "name (a string) is required");
    return;
  }
  if (!member_int (o, "shards", &shards, request) || !member_int (o, "batchMs", &batch_ms, request) ||
      !member_int (o, "retentionHours", &retention, request) ||
      !member_int (o, "maxRecordBytes", &max_record, request))
    return;
  if (json_object_has_member (o, "durability")) {
    JsonNode *n = json_object_get_member (o, "durability");
    durability = JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
                     ? json_node_get_string (n)
                     : "";
    gboolean known = FALSE;
    for (guint i = 0; i < G_N_ELEMENTS (durability_names); i++)
      if (g_str_equal (durability, durability_names[i])) {
        settings.durability = (StreamDurability) i;
        known = TRUE;
      }
    if (!known) {
      edge_request_respond_error (request, 400, "InvalidArgument",
                                  "durability must be sync, batch or none");
      return;
    }
  }
  if (shards < 1 || shards > STREAM_MAX_SHARDS || batch_ms < 1 || batch_ms > 10000 ||
      retention < 0 || retention > G_MAXUINT || max_record < 0) {
    edge_request_respond_error (request, 400, "InvalidArgument",
                                "shards is 1 to %d and batchMs 1 to 10000", STREAM_MAX_SHARDS);
    return;
  }
  settings.batch_ms = (guint) batch_ms;
  settings.retention_hours = (guint) retention;
  settings.max_record_bytes = (guint64) max_record;
  if (!stream_store_create (store, name, (guint) shards, &settings, &error)) {
    guint status = error->code == STREAM_ERROR_EXISTS ? 409
                   : error->code == STREAM_ERROR_IO   ? 500
                                                      : 400;
    edge_request_respond_error (request, status,
                                status == 409 ? "Conflict"
                                : status == 500 ? "InternalError"
                                                : "InvalidArgument",
                                "%s", error->message);
    return;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  add_stream (b, store, stream_store_lookup (store, name, NULL), TRUE);
  respond_builder (request, 201, b);
}

static void
handle_delete (EdgeRequest *request, gpointer data)
{
  StreamStore *store = data;
  const char *name = edge_request_param (request, "name");
  g_autoptr (GError) error = NULL;
  if (!stream_store_delete (store, name, &error)) {
    edge_request_respond_error (request, error->code == STREAM_ERROR_NOT_FOUND ? 404 : 500,
                                error->code == STREAM_ERROR_NOT_FOUND ? "NotFound" : "InternalError",
                                "%s", error->message);
    return;
  }
  edge_request_respond (request, 204, NULL, NULL);
}

gboolean
stream_rest_register (EdgeGateway *gateway, StreamStore *store, GError **error)
{
  static const EdgeRoute routes[] = {
    { "GET", "/v1/streams", handle_list, "List data streams", "streams", 0 },
    { "POST", "/v1/streams", handle_create, "Create a data stream", "streams", 0 },
    { "GET", "/v1/streams/{name}", handle_get, "A data stream and its shards", "streams", 0 },
    { "DELETE", "/v1/streams/{name}", handle_delete, "Delete a data stream and its records",
      "streams", 0 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (gateway, &routes[i], store, error))
      return FALSE;
  return TRUE;
}
