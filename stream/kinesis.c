/* kinesis.c: the Kinesis Data Streams API (JSON 1.1, X-Amz-Target
 * Kinesis_20131202.*) over the stream store, so that the AWS CLI and SDKs
 * work against edged with --endpoint-url.
 *
 * Shapes follow the public API reference: requests and responses are JSON,
 * blobs are base64, timestamps are epoch seconds, errors are
 * {"__type": "...Exception", "message": "..."} with status 400 (500 for
 * InternalFailure).
 *
 * Shard iterators are opaque and tamper-proof: the position (stream id,
 * shard, record number) and the time it was issued, sealed with a key
 * derived for "kinesis/iterators". They expire after five minutes, as
 * Kinesis's do, and survive a restart of the daemon within that time.
 */
#define G_LOG_DOMAIN "stream"

#include "stream.h"

#include "kinesis-decode.h"
#include "kinesis-subscribe.h"


#define ACCOUNT "000000000000"
#define ITERATOR_VERSION 1
#define ITERATOR_LIFETIME_MS (5 * 60 * 1000)
#define GET_RECORDS_MAX 10000
#define GET_RECORDS_MAX_BYTES (10 * 1024 * 1024)
#define LIST_MAX 10000
#define TAGS_MAX 50

struct _StreamKinesis {
  StreamStore *store;
  EdgeCipher *iterators; /* main thread only */
  GHashTable *leases;    /* SubscribeToShard subscriptions by stream, consumer and shard */
  guint pending;         /* calls waiting for the writer or a reader */
};

/* One request. Puts arrive decoded without a tree (@put); every other
 * operation reads its members from @body. */
typedef struct {
  StreamKinesis *api;
  EdgeRequest *request;
  JsonObject *body; /* borrowed from root; NULL for puts */
  JsonNode *root;
  KinesisPut *put;
  char *region;
} Call;

static void
call_free (Call *call)
{
  if (call->root)
    json_node_unref (call->root);
  kinesis_put_free (call->put);
  g_free (call->region);
  g_free (call);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Call, call_free)

/* ---- small JSON helpers ---- */

static gboolean
member_is (JsonObject *o, const char *name, GType type)
{
  JsonNode *n = json_object_get_member (o, name);
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == type;
}

static void
fail (Call *call, const char *type, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
fail (Call *call, const char *type, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  g_autofree char *message = g_strdup_vprintf (format, args);
  va_end (args);
  edge_request_respond_amz_error (call->request,
                                  g_str_equal (type, "InternalFailure") ? 500 : 400, type, "%s",
                                  message);
}

/* A string member; NULL (having answered ValidationException) when it is
 * missing and @required, or not a string. *ret_present tells absent apart. */
static gboolean
get_string (Call *call, const char *name, gboolean required, const char **ret)
{
  JsonNode *n = json_object_get_member (call->body, name);
  *ret = NULL;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n)) {
    if (required) {
      fail (call, "ValidationException",
            "1 validation error detected: Value null at '%c%s' failed to satisfy constraint: "
            "Member must not be null",
            g_ascii_tolower (name[0]), name + 1);
      return FALSE;
    }
    return TRUE;
  }
  if (!member_is (call->body, name, G_TYPE_STRING)) {
    fail (call, "SerializationException", "%s must be a string", name);
    return FALSE;
  }
  *ret = json_node_get_string (n);
  return TRUE;
}

static gboolean
get_int (Call *call, const char *name, gint64 min, gint64 max, gint64 fallback, gint64 *ret)
{
  JsonNode *n = json_object_get_member (call->body, name);
  *ret = fallback;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (!member_is (call->body, name, G_TYPE_INT64)) {
    fail (call, "SerializationException", "%s must be an integer", name);
    return FALSE;
  }
  *ret = json_node_get_int (n);
  if (*ret < min || *ret > max) {
    fail (call, "ValidationException",
          "1 validation error detected: Value '%" G_GINT64_FORMAT "' at '%c%s' failed to satisfy "
          "constraint: Member must have value between %" G_GINT64_FORMAT " and %" G_GINT64_FORMAT,
          *ret, g_ascii_tolower (name[0]), name + 1, min, max);
    return FALSE;
  }
  return TRUE;
}

static char *
stream_arn (Call *call, const char *name)
{
  return g_strdup_printf ("arn:aws:kinesis:%s:" ACCOUNT ":stream/%s", call->region, name);
}

/* The stream a request names, by StreamName or StreamARN; answers
 * ResourceNotFoundException itself. */
static const StreamInfo *
get_stream (Call *call)
{
  const char *name, *arn;
  if (call->put) {
    name = call->put->stream_name;
    arn = call->put->stream_arn;
  } else if (!get_string (call, "StreamName", FALSE, &name) ||
             !get_string (call, "StreamARN", FALSE, &arn)) {
    return NULL;
  }
  if (name == NULL && arn != NULL) {
    const char *slash = strstr (arn, ":stream/");
    name = slash ? slash + strlen (":stream/") : NULL;
  }
  if (name == NULL) {
    fail (call, "ValidationException", "either StreamName or StreamARN is required");
    return NULL;
  }
  const StreamInfo *info = stream_store_lookup (call->api->store, name, NULL);
  if (info == NULL)
    fail (call, "ResourceNotFoundException", "Stream %s under account " ACCOUNT " not found.",
          name);
  return info;
}

static const StreamShardInfo *
find_shard (const StreamInfo *info, const char *shard_id)
{
  for (guint i = 0; i < info->shards->len; i++) {
    const StreamShardInfo *s = g_ptr_array_index (info->shards, i);
    if (g_str_equal (s->id, shard_id))
      return s;
  }
  return NULL;
}

/* The shard a request names; answers ResourceNotFoundException itself. */
static const StreamShardInfo *
get_shard (Call *call, const StreamInfo *info, const char *shard_id)
{
  const StreamShardInfo *shard = find_shard (info, shard_id);
  if (shard == NULL)
    fail (call, "ResourceNotFoundException",
          "Shard %s in stream %s under account " ACCOUNT " does not exist", shard_id, info->name);
  return shard;
}

/* Answers with a JSON text built by hand (the hot paths). */
static void
respond_text (Call *call, GString *text)
{
  gsize len = text->len;
  g_autoptr (GBytes) bytes = g_bytes_new_take (g_string_free (text, FALSE), len);
  edge_request_respond (call->request, SOUP_STATUS_OK, "application/x-amz-json-1.1", bytes);
}

/* A GetRecords answer runs to tens of megabytes: built as one buffer, it
 * was fresh memory for every call, and faulting its pages in cost more
 * than encoding the records. So it is built in parts of about this size,
 * which the allocator hands out again and again. */
#define ANSWER_PART_BYTES (256 * 1024)

static void
answer_part_done (GPtrArray *parts, GString **out)
{
  gsize len = (*out)->len;
  g_ptr_array_add (parts, g_bytes_new_take (g_string_free (*out, FALSE), len));
  *out = g_string_sized_new (ANSWER_PART_BYTES + 4096);
}

static void
add_shard (JsonBuilder *b, StreamStore *store, const StreamInfo *info, const StreamShardInfo *s)
{
  g_autofree char *first = stream_sequence_format (s->ordinal, 0);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "ShardId");
  json_builder_add_string_value (b, s->id);
  if (s->parent) {
    json_builder_set_member_name (b, "ParentShardId");
    json_builder_add_string_value (b, s->parent);
  }
  if (s->adjacent_parent) {
    json_builder_set_member_name (b, "AdjacentParentShardId");
    json_builder_add_string_value (b, s->adjacent_parent);
  }
  kinesis_add_hash_key_range (b, s);
  json_builder_set_member_name (b, "SequenceNumberRange");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "StartingSequenceNumber");
  json_builder_add_string_value (b, first);
  if (s->closed && stream_store_shard_sealed (store, info->name, s->ordinal)) {
    guint64 next = 0;
    stream_store_shard_range (store, info->name, s->ordinal, NULL, &next, NULL);
    g_autofree char *last = stream_sequence_format (s->ordinal, next > 0 ? next - 1 : 0);
    json_builder_set_member_name (b, "EndingSequenceNumber");
    json_builder_add_string_value (b, last);
  }
  json_builder_end_object (b);
  json_builder_end_object (b);
}

static void
add_summary_fields (Call *call, JsonBuilder *b, const StreamInfo *info)
{
  g_autofree char *arn = stream_arn (call, info->name);
  json_builder_set_member_name (b, "StreamName");
  json_builder_add_string_value (b, info->name);
  json_builder_set_member_name (b, "StreamARN");
  json_builder_add_string_value (b, arn);
  json_builder_set_member_name (b, "StreamStatus");
  json_builder_add_string_value (b, "ACTIVE");
  json_builder_set_member_name (b, "StreamModeDetails");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "StreamMode");
  json_builder_add_string_value (b, "PROVISIONED");
  json_builder_end_object (b);
  json_builder_set_member_name (b, "StreamCreationTimestamp");
  json_builder_add_double_value (b, info->created_ms / 1000.0);
}

static void
add_stream_details (Call *call, JsonBuilder *b, const StreamInfo *info)
{
  add_summary_fields (call, b, info);
  json_builder_set_member_name (b, "RetentionPeriodHours");
  json_builder_add_int_value (b, info->settings.retention_hours);
  json_builder_set_member_name (b, "EnhancedMonitoring");
  json_builder_begin_array (b);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "ShardLevelMetrics");
  json_builder_begin_array (b);
  json_builder_end_array (b);
  json_builder_end_object (b);
  json_builder_end_array (b);
  /* Records are sealed at rest with edged's own keys (AES-256-GCM). */
  json_builder_set_member_name (b, "EncryptionType");
  json_builder_add_string_value (b, "KMS");
  json_builder_set_member_name (b, "KeyId");
  json_builder_add_string_value (b, "edged-master-key");
}

static void
respond (Call *call, JsonBuilder *b)
{
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_amz_json (call->request, root);
}

static void
respond_empty (Call *call)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_end_object (b);
  respond (call, b);
}

/* ---- stream management ---- */

static void
op_create_stream (Call *call)
{
  const char *name;
  gint64 shards;
  g_autoptr (GError) error = NULL;
  if (!get_string (call, "StreamName", TRUE, &name) ||
      !get_int (call, "ShardCount", 1, 100000, 4, &shards))
    return;
  if (!stream_store_create (call->api->store, name, (guint) shards, NULL, &error)) {
    const char *type = error->code == STREAM_ERROR_EXISTS  ? "ResourceInUseException"
                       : error->code == STREAM_ERROR_LIMIT ? "LimitExceededException"
                       : error->code == STREAM_ERROR_INVALID ? "ValidationException"
                                                             : "InternalFailure";
    if (error->code == STREAM_ERROR_EXISTS)
      fail (call, type, "Stream %s under account " ACCOUNT " already exists.", name);
    else
      fail (call, type, "%s", error->message);
    return;
  }
  respond_empty (call);
}

static void
op_delete_stream (Call *call)
{
  const StreamInfo *info = get_stream (call);
  g_autoptr (GError) error = NULL;
  if (info == NULL)
    return;
  g_autofree char *name = g_strdup (info->name);
  if (!stream_store_delete (call->api->store, name, &error)) {
    fail (call, "InternalFailure", "%s", error->message);
    return;
  }
  respond_empty (call);
}

static void
op_describe_stream (Call *call)
{
  const StreamInfo *info = get_stream (call);
  const char *start_after;
  gint64 limit;
  if (info == NULL || !get_string (call, "ExclusiveStartShardId", FALSE, &start_after) ||
      !get_int (call, "Limit", 1, 10000, 100, &limit))
    return;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "StreamDescription");
  json_builder_begin_object (b);
  add_stream_details (call, b, info);
  json_builder_set_member_name (b, "Shards");
  json_builder_begin_array (b);
  gboolean more = FALSE;
  gint64 listed = 0;
  for (guint i = 0; i < info->shards->len; i++) {
    const StreamShardInfo *s = g_ptr_array_index (info->shards, i);
    if (start_after && strcmp (s->id, start_after) <= 0)
      continue;
    if (listed == limit) {
      more = TRUE;
      break;
    }
    add_shard (b, call->api->store, info, s);
    listed++;
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "HasMoreShards");
  json_builder_add_boolean_value (b, more);
  json_builder_end_object (b);
  json_builder_end_object (b);
  respond (call, b);
}

static void
op_describe_stream_summary (Call *call)
{
  const StreamInfo *info = get_stream (call);
  if (info == NULL)
    return;
  guint open = 0;
  for (guint i = 0; i < info->shards->len; i++)
    open += !((StreamShardInfo *) g_ptr_array_index (info->shards, i))->closed;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "StreamDescriptionSummary");
  json_builder_begin_object (b);
  add_stream_details (call, b, info);
  json_builder_set_member_name (b, "OpenShardCount");
  json_builder_add_int_value (b, open);
  g_autoptr (GPtrArray) consumers = stream_store_list_consumers (call->api->store, info->name, NULL);
  json_builder_set_member_name (b, "ConsumerCount");
  json_builder_add_int_value (b, consumers ? consumers->len : 0);
  json_builder_end_object (b);
  json_builder_end_object (b);
  respond (call, b);
}

static void
op_list_streams (Call *call)
{
  const char *start_after, *token;
  gint64 limit;
  if (!get_string (call, "ExclusiveStartStreamName", FALSE, &start_after) ||
      !get_string (call, "NextToken", FALSE, &token) ||
      !get_int (call, "Limit", 1, LIST_MAX, LIST_MAX, &limit))
    return;
  /* The NextToken is the last name returned, encoded. */
  g_autofree char *from_token = NULL;
  if (token) {
    gsize len;
    guchar *raw = g_base64_decode (token, &len);
    from_token = g_strndup ((const char *) raw, len);
    g_free (raw);
    start_after = from_token;
  }
  g_autoptr (GPtrArray) names = stream_store_list (call->api->store);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (GPtrArray) listed = g_ptr_array_new ();
  gboolean more = FALSE;
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    if (start_after && strcmp (name, start_after) <= 0)
      continue;
    if ((gint64) listed->len == limit) {
      more = TRUE;
      break;
    }
    g_ptr_array_add (listed, (gpointer) name);
  }
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "StreamNames");
  json_builder_begin_array (b);
  for (guint i = 0; i < listed->len; i++)
    json_builder_add_string_value (b, g_ptr_array_index (listed, i));
  json_builder_end_array (b);
  json_builder_set_member_name (b, "StreamSummaries");
  json_builder_begin_array (b);
  for (guint i = 0; i < listed->len; i++) {
    const StreamInfo *info = stream_store_lookup (call->api->store, g_ptr_array_index (listed, i),
                                                  NULL);
    json_builder_begin_object (b);
    add_summary_fields (call, b, info);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "HasMoreStreams");
  json_builder_add_boolean_value (b, more);
  if (more && listed->len > 0) {
    const char *last = g_ptr_array_index (listed, listed->len - 1);
    g_autofree char *next = g_base64_encode ((const guchar *) last, strlen (last));
    json_builder_set_member_name (b, "NextToken");
    json_builder_add_string_value (b, next);
  }
  json_builder_end_object (b);
  respond (call, b);
}

static void
op_list_shards (Call *call)
{
  const char *token, *start_after, *name = NULL;
  gint64 limit;
  g_autofree char *token_stream = NULL, *token_after = NULL;
  const StreamInfo *info;

  if (!get_string (call, "NextToken", FALSE, &token) ||
      !get_string (call, "ExclusiveStartShardId", FALSE, &start_after) ||
      !get_int (call, "MaxResults", 1, 10000, 1000, &limit))
    return;
  if (token) {
    /* "stream\nlast shard id", base64. */
    gsize len;
    guchar *raw = g_base64_decode (token, &len);
    g_autofree char *text = g_strndup ((const char *) raw, len);
    g_free (raw);
    char *nl = strchr (text, '\n');
    if (nl == NULL || json_object_has_member (call->body, "StreamName")) {
      fail (call, "InvalidArgumentException",
            nl ? "NextToken and StreamName cannot be given together" : "Invalid NextToken.");
      return;
    }
    token_stream = g_strndup (text, nl - text);
    token_after = g_strdup (nl + 1);
    name = token_stream;
    start_after = token_after;
    info = stream_store_lookup (call->api->store, name, NULL);
    if (info == NULL) {
      fail (call, "ResourceNotFoundException", "Stream %s under account " ACCOUNT " not found.",
            name);
      return;
    }
  } else {
    info = get_stream (call);
    if (info == NULL)
      return;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Shards");
  json_builder_begin_array (b);
  const char *last = NULL;
  gboolean more = FALSE;
  gint64 listed = 0;
  for (guint i = 0; i < info->shards->len; i++) {
    const StreamShardInfo *s = g_ptr_array_index (info->shards, i);
    if (start_after && strcmp (s->id, start_after) <= 0)
      continue;
    if (listed == limit) {
      more = TRUE;
      break;
    }
    add_shard (b, call->api->store, info, s);
    last = s->id;
    listed++;
  }
  json_builder_end_array (b);
  if (more) {
    g_autofree char *raw = g_strconcat (info->name, "\n", last, NULL);
    g_autofree char *next = g_base64_encode ((const guchar *) raw, strlen (raw));
    json_builder_set_member_name (b, "NextToken");
    json_builder_add_string_value (b, next);
  }
  json_builder_end_object (b);
  respond (call, b);
}

static void
op_describe_limits (Call *call)
{
  g_autoptr (GPtrArray) names = stream_store_list (call->api->store);
  gint64 open = 0;
  for (guint i = 0; i < names->len; i++) {
    const StreamInfo *info = stream_store_lookup (call->api->store, g_ptr_array_index (names, i), NULL);
    for (guint j = 0; j < info->shards->len; j++)
      open += !((StreamShardInfo *) g_ptr_array_index (info->shards, j))->closed;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "ShardLimit");
  json_builder_add_int_value (b, STREAM_MAX_SHARDS);
  json_builder_set_member_name (b, "OpenShardCount");
  json_builder_add_int_value (b, open);
  json_builder_set_member_name (b, "OnDemandStreamCount");
  json_builder_add_int_value (b, 0);
  json_builder_set_member_name (b, "OnDemandStreamCountLimit");
  json_builder_add_int_value (b, 0);
  json_builder_end_object (b);
  respond (call, b);
}

static void
change_retention (Call *call, gboolean increase)
{
  const StreamInfo *info = get_stream (call);
  gint64 hours;
  g_autoptr (GError) error = NULL;
  if (info == NULL || !json_object_has_member (call->body, "RetentionPeriodHours")) {
    if (info)
      fail (call, "ValidationException", "RetentionPeriodHours is required");
    return;
  }
  if (!get_int (call, "RetentionPeriodHours", 1, 100000, 0, &hours))
    return;
  guint current = info->settings.retention_hours;
  if (increase ? hours < current : hours > current) {
    fail (call, "InvalidArgumentException",
          "Requested retention period (%" G_GINT64_FORMAT " hours) for stream %s can not be %s "
          "existing retention period (%u hours). Use %s.",
          hours, info->name, increase ? "shorter than" : "longer than", current,
          increase ? "DecreaseRetentionPeriod API" : "IncreaseRetentionPeriod API");
    return;
  }
  if (hours < STREAM_RETENTION_MIN_HOURS || hours > STREAM_RETENTION_MAX_HOURS) {
    fail (call, "InvalidArgumentException",
          "Minimum allowed retention period is %d hours. Maximum allowed retention period is %d "
          "hours. Requested retention period (%" G_GINT64_FORMAT " hours) is out of range.",
          STREAM_RETENTION_MIN_HOURS, STREAM_RETENTION_MAX_HOURS, hours);
    return;
  }
  g_autofree char *name = g_strdup (info->name);
  if (!stream_store_set_retention (call->api->store, name, (guint) hours, &error)) {
    fail (call, "InternalFailure", "%s", error->message);
    return;
  }
  respond_empty (call);
}

static void
op_increase_retention (Call *call)
{
  change_retention (call, TRUE);
}

static void
op_decrease_retention (Call *call)
{
  change_retention (call, FALSE);
}

static void
op_add_tags (Call *call)
{
  const StreamInfo *info = get_stream (call);
  JsonNode *tags_node = json_object_get_member (call->body, "Tags");
  g_autoptr (GError) error = NULL;
  if (info == NULL)
    return;
  if (tags_node == NULL || !JSON_NODE_HOLDS_OBJECT (tags_node)) {
    fail (call, "ValidationException", "Tags must be a map of tag keys to values");
    return;
  }
  JsonObject *tags = json_node_get_object (tags_node);
  g_autoptr (GHashTable) add = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GList) keys = json_object_get_members (tags);
  for (GList *l = keys; l; l = l->next) {
    if (!member_is (tags, l->data, G_TYPE_STRING) || strlen (l->data) == 0 ||
        strlen (l->data) > 128 || strlen (json_object_get_string_member (tags, l->data)) > 256) {
      fail (call, "InvalidArgumentException",
            "tag keys are 1 to 128 characters and values strings of at most 256");
      return;
    }
    g_hash_table_insert (add, l->data, (gpointer) json_object_get_string_member (tags, l->data));
  }
  guint total = g_hash_table_size (info->tags);
  for (GList *l = keys; l; l = l->next)
    total += !g_hash_table_contains (info->tags, l->data);
  if (total > TAGS_MAX) {
    fail (call, "LimitExceededException", "a stream has at most %d tags", TAGS_MAX);
    return;
  }
  g_autofree char *name = g_strdup (info->name);
  if (!stream_store_set_tags (call->api->store, name, add, NULL, &error)) {
    fail (call, "InternalFailure", "%s", error->message);
    return;
  }
  respond_empty (call);
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
op_list_tags (Call *call)
{
  const StreamInfo *info = get_stream (call);
  const char *start_after;
  gint64 limit;
  if (info == NULL || !get_string (call, "ExclusiveStartTagKey", FALSE, &start_after) ||
      !get_int (call, "Limit", 1, 50, 50, &limit))
    return;
  g_autoptr (GPtrArray) keys = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer k;
  g_hash_table_iter_init (&iter, info->tags);
  while (g_hash_table_iter_next (&iter, &k, NULL))
    g_ptr_array_add (keys, k);
  g_ptr_array_sort (keys, compare_strings);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Tags");
  json_builder_begin_array (b);
  gboolean more = FALSE;
  gint64 listed = 0;
  for (guint i = 0; i < keys->len; i++) {
    const char *key = g_ptr_array_index (keys, i);
    if (start_after && strcmp (key, start_after) <= 0)
      continue;
    if (listed == limit) {
      more = TRUE;
      break;
    }
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "Key");
    json_builder_add_string_value (b, key);
    json_builder_set_member_name (b, "Value");
    json_builder_add_string_value (b, g_hash_table_lookup (info->tags, key));
    json_builder_end_object (b);
    listed++;
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "HasMoreTags");
  json_builder_add_boolean_value (b, more);
  json_builder_end_object (b);
  respond (call, b);
}

static void
op_remove_tags (Call *call)
{
  const StreamInfo *info = get_stream (call);
  JsonNode *keys_node = json_object_get_member (call->body, "TagKeys");
  g_autoptr (GError) error = NULL;
  if (info == NULL)
    return;
  if (keys_node == NULL || !JSON_NODE_HOLDS_ARRAY (keys_node)) {
    fail (call, "ValidationException", "TagKeys must be a list of tag keys");
    return;
  }
  JsonArray *keys = json_node_get_array (keys_node);
  g_autoptr (GPtrArray) remove = g_ptr_array_new ();
  for (guint i = 0; i < json_array_get_length (keys); i++) {
    JsonNode *n = json_array_get_element (keys, i);
    if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING) {
      fail (call, "ValidationException", "TagKeys must be strings");
      return;
    }
    g_ptr_array_add (remove, (gpointer) json_node_get_string (n));
  }
  g_ptr_array_add (remove, NULL);
  g_autofree char *name = g_strdup (info->name);
  if (!stream_store_set_tags (call->api->store, name, NULL, (const char *const *) remove->pdata,
                              &error)) {
    fail (call, "InternalFailure", "%s", error->message);
    return;
  }
  respond_empty (call);
}

/* ---- writing ---- */

/* The Kinesis error code for a failed write: a full disk is throttling, so
 * that SDKs back off and retry rather than give up. */
static const char *
write_error_type (const GError *error)
{
  if (error->domain == STREAM_ERROR &&
      (error->code == STREAM_ERROR_NO_SPACE || error->code == STREAM_ERROR_THROTTLED))
    return "ProvisionedThroughputExceededException";
  return "InternalFailure";
}

static void
put_error_answer (Call *call, const GError *error)
{
  if (error->code == STREAM_ERROR_LIMIT || error->code == STREAM_ERROR_INVALID)
    fail (call, "ValidationException", "%s", error->message);
  else
    fail (call, write_error_type (error), "%s", error->message);
}

static const char *
shard_id_of (const StreamInfo *info, guint32 ordinal)
{
  return ((StreamShardInfo *) g_ptr_array_index (info->shards, ordinal))->id;
}

static void
put_record_answer (Call *call, StreamPutResult *r)
{
  const StreamInfo *info = get_stream (call);
  if (info == NULL)
    return; /* deleted meanwhile: answered */
  if (r->error) {
    if (g_error_matches (r->error, STREAM_ERROR, STREAM_ERROR_THROTTLED))
      fail (call, write_error_type (r->error), "%s", r->error->message);
    else
      fail (call, write_error_type (r->error), "the record was not stored: %s",
            r->error->message);
    return;
  }
  GString *out = g_string_sized_new (128);
  g_string_append_c (out, '{');
  g_string_append (out, "\"ShardId\":");
  edge_json_append_string (out, shard_id_of (info, r->shard_ordinal),
                           strlen (shard_id_of (info, r->shard_ordinal)));
  g_string_append_c (out, ',');
  g_string_append (out, "\"SequenceNumber\":");
  kinesis_append_sequence (out, r->shard_ordinal, r->number);
  g_string_append (out, ",\"EncryptionType\":\"KMS\"}");
  respond_text (call, out);
}

static void
put_record_done (StreamPutResult *results, guint n, gpointer data)
{
  Call *call = data;
  call->api->pending--;
  put_record_answer (call, &results[0]);
  call_free (call);
}

/* The store's view of the decoded records, checked against the stream's
 * record limit; NULL having answered. (transfer full; points into the put) */
static StreamPutRecord *
put_records_of (Call *call, const StreamInfo *info, gboolean single)
{
  KinesisFault fault = { NULL, NULL };
  GArray *records = call->put->records;
  if (!kinesis_put_check (call->put, single, info->settings.max_record_bytes, &fault)) {
    fail (call, fault.type, "%s", fault.message);
    kinesis_fault_clear (&fault);
    return NULL;
  }
  StreamPutRecord *puts = g_new0 (StreamPutRecord, records->len);
  for (guint i = 0; i < records->len; i++) {
    KinesisRecord *r = &g_array_index (records, KinesisRecord, i);
    puts[i].partition_key = r->partition_key;
    puts[i].data = r->data;
    puts[i].explicit_hash_key = r->has_explicit_hash_key ? &r->explicit_hash_key : NULL;
  }
  return puts;
}

static gboolean
op_put_record (Call *call)
{
  const StreamInfo *info = get_stream (call);
  g_autofree StreamPutRecord *puts = NULL;
  g_autoptr (GError) error = NULL;
  if (info == NULL || (puts = put_records_of (call, info, TRUE)) == NULL)
    return FALSE;
  if (!stream_store_put (call->api->store, info->name, puts, 1, put_record_done, call, &error)) {
    put_error_answer (call, error);
    return FALSE;
  }
  edge_request_pause (call->request);
  return TRUE; /* put_record_done owns the call now */
}

static void
put_records_answer (Call *call, StreamPutResult *results, guint n)
{
  const StreamInfo *info = get_stream (call);
  guint failed = 0;
  if (info == NULL)
    return;
  GString *out = g_string_sized_new (64 + (gsize) n * 96);
  g_string_append (out, "{\"Records\":[");
  for (guint i = 0; i < n; i++) {
    const StreamPutResult *r = &results[i];
    if (i > 0)
      g_string_append_c (out, ',');
    g_string_append_c (out, '{');
    if (r->error) {
      failed++;
      g_string_append (out, "\"ErrorCode\":");
      g_string_append_printf (out, "\"%s\",", write_error_type (r->error));
      g_string_append (out, "\"ErrorMessage\":");
      edge_json_append_string (out, r->error->message, strlen (r->error->message));
    } else {
      const char *shard = shard_id_of (info, r->shard_ordinal);
      g_string_append (out, "\"SequenceNumber\":");
      kinesis_append_sequence (out, r->shard_ordinal, r->number);
      g_string_append_c (out, ',');
      g_string_append (out, "\"ShardId\":");
      edge_json_append_string (out, shard, strlen (shard));
    }
    g_string_append_c (out, '}');
  }
  g_string_append_printf (out, "],\"FailedRecordCount\":%u,\"EncryptionType\":\"KMS\"}", failed);
  respond_text (call, out);
}

static void
put_records_done (StreamPutResult *results, guint n, gpointer data)
{
  Call *call = data;
  call->api->pending--;
  put_records_answer (call, results, n);
  call_free (call);
}

static gboolean
op_put_records (Call *call)
{
  const StreamInfo *info = get_stream (call);
  g_autofree StreamPutRecord *puts = NULL;
  g_autoptr (GError) error = NULL;
  if (info == NULL || (puts = put_records_of (call, info, FALSE)) == NULL)
    return FALSE;
  guint n = call->put->records->len;
  if (!stream_store_put (call->api->store, info->name, puts, n, put_records_done, call, &error)) {
    if (error->code != STREAM_ERROR_NO_SPACE) {
      put_error_answer (call, error);
      return FALSE;
    }
    /* Throttled: every record failed, as Kinesis reports it, for the SDK to retry. */
    g_autofree StreamPutResult *results = g_new0 (StreamPutResult, n);
    for (guint i = 0; i < n; i++)
      results[i].error = error;
    put_records_answer (call, results, n);
    return FALSE;
  }
  edge_request_pause (call->request);
  return TRUE;
}

/* ---- reading ---- */

/* Iterator plaintext: version u8 | ordinal u32 | number u64 | issued ms i64 | stream id. */
static char *
iterator_encode (StreamKinesis *api, const StreamInfo *info, guint32 ordinal, guint64 number)
{
  gsize id_len = strlen (info->id);
  gsize len = 21 + id_len;
  g_autofree guint8 *plain = g_malloc (len);
  g_autofree guint8 *sealed = g_malloc (len + EDGE_FRAME_OVERHEAD);
  gint64 now = g_get_real_time () / 1000;
  plain[0] = ITERATOR_VERSION;
  edge_put_be32 (plain + 1, ordinal);
  edge_put_be64 (plain + 5, number);
  edge_put_be64 (plain + 13, (guint64) now);
  memcpy (plain + 21, info->id, id_len);
  if (!edge_cipher_seal (api->iterators, plain, len, NULL, 0, sealed, NULL))
    return NULL;
  return g_base64_encode (sealed, len + EDGE_FRAME_OVERHEAD);
}

/* Decodes an iterator; answers the error itself and returns FALSE. */
static gboolean
iterator_decode (Call *call, const char *text, const StreamInfo **ret_info, guint32 *ret_ordinal,
                 guint64 *ret_number)
{
  gsize len = 0;
  g_autofree guint8 *sealed = NULL;
  guint8 plain[512];
  gsize plain_len;

  if (strlen (text) < 16 || strlen (text) > 1024) {
    fail (call, "InvalidArgumentException", "Invalid ShardIterator.");
    return FALSE;
  }
  sealed = g_base64_decode (text, &len);
  if (len < EDGE_FRAME_OVERHEAD + 21 || len - EDGE_FRAME_OVERHEAD > sizeof plain ||
      !edge_cipher_open (call->api->iterators, sealed, len, NULL, 0, plain, &plain_len, NULL) ||
      plain[0] != ITERATOR_VERSION) {
    fail (call, "InvalidArgumentException", "Invalid ShardIterator.");
    return FALSE;
  }
  guint32 ordinal = edge_get_be32 (plain + 1);
  guint64 number = edge_get_be64 (plain + 5), issued = edge_get_be64 (plain + 13);
  gint64 now = g_get_real_time () / 1000;
  if (now - (gint64) issued > ITERATOR_LIFETIME_MS) {
    fail (call, "ExpiredIteratorException",
          "Iterator expired. The iterator was created at time %" G_GINT64_FORMAT
          " while right now it is %" G_GINT64_FORMAT
          " which is further in the future than the tolerated delay of %d milliseconds.",
          (gint64) issued, now, ITERATOR_LIFETIME_MS);
    return FALSE;
  }
  g_autofree char *id = g_strndup ((const char *) plain + 21, plain_len - 21);
  g_autoptr (GPtrArray) names = stream_store_list (call->api->store);
  for (guint i = 0; i < names->len; i++) {
    const StreamInfo *info = stream_store_lookup (call->api->store, g_ptr_array_index (names, i),
                                                  NULL);
    if (g_str_equal (info->id, id) && ordinal < info->shards->len) {
      *ret_info = info;
      *ret_ordinal = ordinal;
      *ret_number = number;
      return TRUE;
    }
  }
  fail (call, "ResourceNotFoundException", "the stream of this shard iterator no longer exists");
  return FALSE;
}

/* The record number a starting position names (GetShardIterator's
 * ShardIteratorType, SubscribeToShard's StartingPosition); FALSE having
 * answered. [first, next) are the shard's records. */
static gboolean
resolve_position (Call *call, const char *op, const char *type_member, const StreamInfo *info,
                  const StreamShardInfo *shard, const char *type, const char *seq, JsonNode *t,
                  guint64 *ret_number)
{
  const char *shard_id = shard->id;
  guint64 first, next, number;
  g_autoptr (GError) error = NULL;
  if (!stream_store_shard_range (call->api->store, info->name, shard->ordinal, &first, &next,
                                 &error)) {
    fail (call, "InternalFailure", "%s", error->message);
    return FALSE;
  }
  if (g_str_equal (type, "TRIM_HORIZON")) {
    number = first;
  } else if (g_str_equal (type, "LATEST")) {
    number = next;
  } else if (g_str_equal (type, "AT_SEQUENCE_NUMBER") ||
             g_str_equal (type, "AFTER_SEQUENCE_NUMBER")) {
    guint32 seq_ordinal;
    if (seq == NULL) {
      fail (call, "InvalidArgumentException",
            "a starting sequence number is required for %s", type);
      return FALSE;
    }
    if (!stream_sequence_parse (seq, &seq_ordinal, &number) || seq_ordinal != shard->ordinal) {
      fail (call, "InvalidArgumentException",
            "StartingSequenceNumber %s used in %s on shard %s in stream %s under "
            "account " ACCOUNT " is invalid.",
            seq, op, shard_id, info->name);
      return FALSE;
    }
    if (g_str_equal (type, "AFTER_SEQUENCE_NUMBER"))
      number++;
  } else if (g_str_equal (type, "AT_TIMESTAMP")) {
    double seconds;
    if (t == NULL || !JSON_NODE_HOLDS_VALUE (t) ||
        (json_node_get_value_type (t) != G_TYPE_DOUBLE &&
         json_node_get_value_type (t) != G_TYPE_INT64)) {
      fail (call, "InvalidArgumentException",
            "Timestamp (epoch seconds) is required for AT_TIMESTAMP");
      return FALSE;
    }
    seconds = json_node_get_double (t);
    stream_store_shard_find_time (call->api->store, info->name, shard->ordinal,
                                  (gint64) (seconds * 1000), &number, NULL);
  } else {
    fail (call, "ValidationException",
          "1 validation error detected: Value '%s' at '%s' failed to satisfy "
          "constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, "
          "AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
          type, type_member);
    return FALSE;
  }
  *ret_number = number;
  return TRUE;
}

static void
op_get_shard_iterator (Call *call)
{
  const StreamInfo *info = get_stream (call);
  const char *shard_id, *type, *seq;
  guint64 number;

  if (info == NULL || !get_string (call, "ShardId", TRUE, &shard_id) ||
      !get_string (call, "ShardIteratorType", TRUE, &type) ||
      !get_string (call, "StartingSequenceNumber", FALSE, &seq))
    return;
  const StreamShardInfo *shard = get_shard (call, info, shard_id);
  if (shard == NULL)
    return;
  if (!resolve_position (call, "GetShardIterator", "shardIteratorType", info, shard, type, seq,
                         json_object_get_member (call->body, "Timestamp"), &number))
    return;
  g_autofree char *iterator = iterator_encode (call->api, info, shard->ordinal, number);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "ShardIterator");
  json_builder_add_string_value (b, iterator);
  json_builder_end_object (b);
  respond (call, b);
}


typedef struct {
  Call *call;
  char *stream_id;
  char *stream_name;
  guint32 ordinal;
} ReadCall;

static void
get_records_answer (ReadCall *rc, GAsyncResult *result)
{
  Call *call = rc->call;
  guint64 next = 0;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) records = stream_store_read_finish (call->api->store, result, &next, &error);
  const StreamInfo *info = stream_store_lookup (call->api->store, rc->stream_name, NULL);

  if (info == NULL || !g_str_equal (info->id, rc->stream_id)) {
    fail (call, "ResourceNotFoundException", "Stream %s under account " ACCOUNT " not found.",
          rc->stream_name);
    return;
  }
  if (records == NULL) {
    fail (call, "InternalFailure", "%s", error->message);
    return;
  }
  guint64 shard_next = 0;
  stream_store_shard_range (call->api->store, info->name, rc->ordinal, NULL, &shard_next, NULL);
  g_autoptr (GPtrArray) parts = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  GString *out = g_string_sized_new (ANSWER_PART_BYTES + 4096);
  g_string_append (out, "{\"Records\":[");
  gint64 last_arrival = 0;
  for (guint i = 0; i < records->len; i++) {
    StreamRecord *r = g_ptr_array_index (records, i);
    if (i > 0)
      g_string_append_c (out, ',');
    kinesis_append_record (out, rc->ordinal, r);
    last_arrival = r->arrival_ms;
    if (out->len >= ANSWER_PART_BYTES)
      answer_part_done (parts, &out);
  }
  g_string_append (out, "],");
  const StreamShardInfo *shard = g_ptr_array_index (info->shards, rc->ordinal);
  if (shard->closed && next >= shard_next &&
      stream_store_shard_sealed (call->api->store, info->name, rc->ordinal)) {
    /* The end of a closed shard: no next iterator, but where to go on. */
    g_string_append (out, "\"ChildShards\":");
    kinesis_append_child_shards (out, info, shard);
  } else {
    g_autofree char *iterator = iterator_encode (call->api, info, rc->ordinal, next);
    g_string_append (out, "\"NextShardIterator\":");
    edge_json_append_string (out, iterator, strlen (iterator));
  }
  gint64 behind = next >= shard_next || last_arrival == 0
                      ? 0
                      : MAX (0, g_get_real_time () / 1000 - last_arrival);
  g_string_append_printf (out, ",\"MillisBehindLatest\":%" G_GINT64_FORMAT "}", behind);
  gsize len = out->len;
  g_ptr_array_add (parts, g_bytes_new_take (g_string_free (out, FALSE), len));
  edge_request_respond_parts (call->request, SOUP_STATUS_OK, "application/x-amz-json-1.1", parts);
}

static void
get_records_done (GObject *source, GAsyncResult *result, gpointer data)
{
  ReadCall *rc = data;
  rc->call->api->pending--;
  get_records_answer (rc, result);
  call_free (rc->call);
  g_free (rc->stream_id);
  g_free (rc->stream_name);
  g_free (rc);
}

static gboolean
op_get_records (Call *call)
{
  const char *iterator;
  gint64 limit;
  const StreamInfo *info;
  guint32 ordinal;
  guint64 number;
  if (!get_string (call, "ShardIterator", TRUE, &iterator) ||
      !get_int (call, "Limit", 1, GET_RECORDS_MAX, GET_RECORDS_MAX, &limit) ||
      !iterator_decode (call, iterator, &info, &ordinal, &number))
    return FALSE;
  ReadCall *rc = g_new0 (ReadCall, 1);
  rc->call = call;
  rc->stream_id = g_strdup (info->id);
  rc->stream_name = g_strdup (info->name);
  rc->ordinal = ordinal;
  edge_request_pause (call->request);
  stream_store_read_async (call->api->store, info->name, ordinal, number, (guint) limit,
                           GET_RECORDS_MAX_BYTES, get_records_done, rc);
  return TRUE;
}

/* ---- registered consumers ---- */

static char *
consumer_arn (Call *call, const char *stream, const StreamConsumerInfo *c)
{
  return g_strdup_printf ("arn:aws:kinesis:%s:" ACCOUNT ":stream/%s/consumer/%s:%" G_GINT64_FORMAT,
                          call->region, stream, c->name, c->created_ms / 1000);
}

static void
add_consumer (Call *call, JsonBuilder *b, const char *stream, const StreamConsumerInfo *c,
              gboolean with_stream)
{
  g_autofree char *arn = consumer_arn (call, stream, c);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "ConsumerName");
  json_builder_add_string_value (b, c->name);
  json_builder_set_member_name (b, "ConsumerARN");
  json_builder_add_string_value (b, arn);
  json_builder_set_member_name (b, "ConsumerStatus");
  json_builder_add_string_value (b, "ACTIVE");
  json_builder_set_member_name (b, "ConsumerCreationTimestamp");
  json_builder_add_double_value (b, c->created_ms / 1000.0);
  if (with_stream) {
    g_autofree char *stream_arn_text = stream_arn (call, stream);
    json_builder_set_member_name (b, "StreamARN");
    json_builder_add_string_value (b, stream_arn_text);
  }
  json_builder_end_object (b);
}

/* The stream and consumer a request names, by StreamARN + ConsumerName or by
 * ConsumerARN; answers the error itself. *ret_consumer is (transfer full). */
static const StreamInfo *
get_consumer (Call *call, StreamConsumerInfo **ret_consumer)
{
  const char *name = NULL, *arn;
  g_autofree char *stream_name = NULL;
  const StreamInfo *info;
  if (!get_string (call, "ConsumerName", FALSE, &name) ||
      !get_string (call, "ConsumerARN", FALSE, &arn))
    return NULL;
  g_autofree char *arn_consumer = NULL;
  if (arn) {
    const char *p = strstr (arn, ":stream/");
    const char *c = p ? strstr (p, "/consumer/") : NULL;
    const char *colon = c ? strrchr (c, ':') : NULL;
    if (c == NULL || colon == NULL) {
      fail (call, "InvalidArgumentException", "ConsumerARN %s is not a consumer ARN", arn);
      return NULL;
    }
    stream_name = g_strndup (p + strlen (":stream/"), c - p - strlen (":stream/"));
    arn_consumer = g_strndup (c + strlen ("/consumer/"), colon - c - strlen ("/consumer/"));
    name = arn_consumer;
    info = stream_store_lookup (call->api->store, stream_name, NULL);
    if (info == NULL) {
      fail (call, "ResourceNotFoundException", "Stream %s under account " ACCOUNT " not found.",
            stream_name);
      return NULL;
    }
  } else {
    info = get_stream (call);
    if (info == NULL)
      return NULL;
    if (name == NULL) {
      fail (call, "InvalidArgumentException", "ConsumerName or ConsumerARN is required");
      return NULL;
    }
  }
  g_autoptr (GPtrArray) consumers = stream_store_list_consumers (call->api->store, info->name, NULL);
  for (guint i = 0; consumers && i < consumers->len; i++) {
    StreamConsumerInfo *c = g_ptr_array_index (consumers, i);
    if (g_str_equal (c->name, name)) {
      *ret_consumer = g_ptr_array_steal_index (consumers, i);
      return info;
    }
  }
  fail (call, "ResourceNotFoundException", "Consumer %s of stream %s not found", name, info->name);
  return NULL;
}

static void
op_register_consumer (Call *call)
{
  const StreamInfo *info = get_stream (call);
  const char *name;
  g_autoptr (GError) error = NULL;
  if (info == NULL || !get_string (call, "ConsumerName", TRUE, &name))
    return;
  if (!stream_store_register_consumer (call->api->store, info->name, name, &error)) {
    fail (call, error->code == STREAM_ERROR_EXISTS    ? "ResourceInUseException"
                : error->code == STREAM_ERROR_LIMIT   ? "LimitExceededException"
                : error->code == STREAM_ERROR_INVALID ? "ValidationException"
                                                      : "InternalFailure",
          "%s", error->message);
    return;
  }
  g_autoptr (GPtrArray) consumers = stream_store_list_consumers (call->api->store, info->name, NULL);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Consumer");
  for (guint i = 0; i < consumers->len; i++) {
    StreamConsumerInfo *c = g_ptr_array_index (consumers, i);
    if (g_str_equal (c->name, name))
      add_consumer (call, b, info->name, c, FALSE);
  }
  json_builder_end_object (b);
  respond (call, b);
}

static void
op_list_consumers (Call *call)
{
  const StreamInfo *info = get_stream (call);
  const char *token;
  gint64 limit;
  if (info == NULL || !get_string (call, "NextToken", FALSE, &token) ||
      !get_int (call, "MaxResults", 1, 10000, 100, &limit))
    return;
  g_autoptr (GPtrArray) consumers = stream_store_list_consumers (call->api->store, info->name, NULL);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Consumers");
  json_builder_begin_array (b);
  for (guint i = 0; i < consumers->len && (gint64) i < limit; i++)
    add_consumer (call, b, info->name, g_ptr_array_index (consumers, i), FALSE);
  json_builder_end_array (b);
  json_builder_end_object (b);
  respond (call, b);
}

static void
op_describe_consumer (Call *call)
{
  StreamConsumerInfo *c = NULL;
  const StreamInfo *info = get_consumer (call, &c);
  if (info == NULL)
    return;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "ConsumerDescription");
  add_consumer (call, b, info->name, c, TRUE);
  json_builder_end_object (b);
  respond (call, b);
  stream_consumer_info_free (c);
}

static void
op_deregister_consumer (Call *call)
{
  StreamConsumerInfo *c = NULL;
  const StreamInfo *info = get_consumer (call, &c);
  g_autoptr (GError) error = NULL;
  if (info == NULL)
    return;
  if (!stream_store_deregister_consumer (call->api->store, info->name, c->name, &error))
    fail (call, "InternalFailure", "%s", error->message);
  else
    respond_empty (call);
  stream_consumer_info_free (c);
}

/* ---- resharding ---- */

__extension__ typedef unsigned __int128 u128;

static u128
key_value (const StreamHashKey *k)
{
  u128 v = 0;
  for (int i = 0; i < 16; i++)
    v = v << 8 | k->bytes[i];
  return v;
}

static StreamHashKey
key_from (u128 v)
{
  StreamHashKey k;
  for (int i = 15; i >= 0; i--) {
    k.bytes[i] = (guint8) v;
    v >>= 8;
  }
  return k;
}

static void
reshard_answer (Call *call, const char *name, const guint32 *close, guint n_close,
                const StreamNewShard *shards, guint n_new)
{
  g_autoptr (GError) error = NULL;
  if (!stream_store_reshard (call->api->store, name, close, n_close, shards, n_new, &error)) {
    fail (call, error->code == STREAM_ERROR_LIMIT ? "LimitExceededException" : "InternalFailure",
          "%s", error->message);
    return;
  }
  respond_empty (call);
}

static const StreamShardInfo *
get_open_shard (Call *call, const StreamInfo *info, const char *member)
{
  const char *id;
  if (!get_string (call, member, TRUE, &id))
    return NULL;
  const StreamShardInfo *shard = find_shard (info, id);
  if (shard == NULL) {
    fail (call, "ResourceNotFoundException", "Could not find shard %s in stream %s under account "
          ACCOUNT ".", id, info->name);
    return NULL;
  }
  if (shard->closed) {
    fail (call, "ResourceInUseException", "Shard %s in stream %s under account " ACCOUNT
          " has already been merged or split, and thus is not eligible for merging or splitting.",
          id, info->name);
    return NULL;
  }
  return shard;
}

static void
op_split_shard (Call *call)
{
  const StreamInfo *info = get_stream (call);
  const char *key_text;
  StreamHashKey key;
  if (info == NULL)
    return;
  const StreamShardInfo *shard = get_open_shard (call, info, "ShardToSplit");
  if (shard == NULL || !get_string (call, "NewStartingHashKey", TRUE, &key_text))
    return;
  if (!stream_hash_key_parse (key_text, &key) ||
      stream_hash_key_compare (&key, &shard->start) <= 0 ||
      stream_hash_key_compare (&key, &shard->end) > 0) {
    g_autofree char *start = stream_hash_key_format (&shard->start);
    g_autofree char *end = stream_hash_key_format (&shard->end);
    fail (call, "InvalidArgumentException",
          "NewStartingHashKey %s must be above %s and at most %s, the range of %s", key_text,
          start, end, shard->id);
    return;
  }
  StreamNewShard children[2] = {
    { shard->start, key_from (key_value (&key) - 1), shard->id, NULL },
    { key, shard->end, shard->id, NULL },
  };
  g_autofree char *name = g_strdup (info->name);
  reshard_answer (call, name, &shard->ordinal, 1, children, 2);
}

static void
op_merge_shards (Call *call)
{
  const StreamInfo *info = get_stream (call);
  if (info == NULL)
    return;
  const StreamShardInfo *a = get_open_shard (call, info, "ShardToMerge");
  if (a == NULL)
    return;
  const StreamShardInfo *b = get_open_shard (call, info, "AdjacentShardToMerge");
  if (b == NULL)
    return;
  const StreamShardInfo *lo = stream_hash_key_compare (&a->start, &b->start) < 0 ? a : b;
  const StreamShardInfo *hi = lo == a ? b : a;
  if (a == b || key_value (&lo->end) + 1 != key_value (&hi->start)) {
    fail (call, "InvalidArgumentException",
          "Shards %s and %s in stream %s under account " ACCOUNT " are not an adjacent pair of "
          "shards eligible for merging",
          a->id, b->id, info->name);
    return;
  }
  guint32 close[2] = { a->ordinal, b->ordinal };
  StreamNewShard child = { lo->start, hi->end, a->id, b->id };
  g_autofree char *name = g_strdup (info->name);
  reshard_answer (call, name, close, 2, &child, 1);
}

static void
op_update_shard_count (Call *call)
{
  const StreamInfo *info = get_stream (call);
  const char *scaling;
  gint64 target;
  if (info == NULL || !get_string (call, "ScalingType", TRUE, &scaling) ||
      !get_int (call, "TargetShardCount", 1, 100000, 0, &target))
    return;
  if (!g_str_equal (scaling, "UNIFORM_SCALING")) {
    fail (call, "ValidationException", "ScalingType must be UNIFORM_SCALING");
    return;
  }
  g_autoptr (GPtrArray) open = g_ptr_array_new ();
  for (guint i = 0; i < info->shards->len; i++) {
    StreamShardInfo *s = g_ptr_array_index (info->shards, i);
    if (!s->closed)
      g_ptr_array_add (open, s);
  }
  gint64 current = open->len;
  if (target > 2 * current || 2 * target < current || target > STREAM_MAX_SHARDS) {
    fail (call, target > STREAM_MAX_SHARDS ? "LimitExceededException" : "InvalidArgumentException",
          "UpdateShardCount scales to between half and double the %" G_GINT64_FORMAT
          " open shards (and at most %d), not %" G_GINT64_FORMAT,
          current, STREAM_MAX_SHARDS, target);
    return;
  }
  g_autofree char *name = g_strdup (info->name);
  g_autofree char *arn = stream_arn (call, name);
  if (target != current) {
    g_autofree StreamNewShard *children = g_new0 (StreamNewShard, target);
    g_autofree guint32 *close = g_new0 (guint32, open->len);
    for (gint64 i = 0; i < target; i++) {
      StreamNewShard *c = &children[i];
      stream_hash_key_range ((guint) i, (guint) target, &c->start, &c->end);
      /* Its parents: the open shards its range overlaps. Readers that follow
       * lineage finish both before reading it, which keeps per-key order. */
      guint overlaps = 0;
      for (guint j = 0; j < open->len; j++) {
        StreamShardInfo *p = g_ptr_array_index (open, j);
        if (stream_hash_key_compare (&p->start, &c->end) > 0 ||
            stream_hash_key_compare (&c->start, &p->end) > 0)
          continue;
        if (overlaps == 0)
          c->parent = p->id;
        else if (overlaps == 1)
          c->adjacent_parent = p->id;
        overlaps++;
      }
      if (overlaps > 2) {
        fail (call, "InvalidArgumentException",
              "going from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT " shards in one step would "
              "give a new shard more than two parents, and readers could then break per-key "
              "order; scale in smaller steps (halving or doubling always works from even ranges)",
              current, target);
        return;
      }
    }
    for (guint j = 0; j < open->len; j++)
      close[j] = ((StreamShardInfo *) g_ptr_array_index (open, j))->ordinal;
    g_autoptr (GError) error = NULL;
    if (!stream_store_reshard (call->api->store, name, close, open->len, children, (guint) target,
                               &error)) {
      fail (call, error->code == STREAM_ERROR_LIMIT ? "LimitExceededException" : "InternalFailure",
            "%s", error->message);
      return;
    }
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "StreamName");
  json_builder_add_string_value (b, name);
  json_builder_set_member_name (b, "StreamARN");
  json_builder_add_string_value (b, arn);
  json_builder_set_member_name (b, "CurrentShardCount");
  json_builder_add_int_value (b, current);
  json_builder_set_member_name (b, "TargetShardCount");
  json_builder_add_int_value (b, target);
  json_builder_end_object (b);
  respond (call, b);
}

/* ---- SubscribeToShard ---- */

/* Checks the request, then hands it to a subscription (kinesis-subscribe.c)
 * that answers with an event stream. */
static void
op_subscribe_to_shard (Call *call)
{
  g_autoptr (StreamConsumerInfo) consumer = NULL;
  const char *arn, *shard_id, *type, *seq = NULL;
  guint64 from;

  if (!get_string (call, "ConsumerARN", TRUE, &arn) || !get_string (call, "ShardId", TRUE, &shard_id))
    return;
  JsonNode *position = json_object_get_member (call->body, "StartingPosition");
  if (position == NULL || !JSON_NODE_HOLDS_OBJECT (position)) {
    fail (call, "ValidationException",
          "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
          "constraint: Member must not be null");
    return;
  }
  JsonObject *p = json_node_get_object (position);
  JsonNode *type_node = json_object_get_member (p, "Type");
  JsonNode *seq_node = json_object_get_member (p, "SequenceNumber");
  if (type_node == NULL || !JSON_NODE_HOLDS_VALUE (type_node) ||
      json_node_get_value_type (type_node) != G_TYPE_STRING) {
    fail (call, "ValidationException",
          "1 validation error detected: Value null at 'startingPosition.type' failed to satisfy "
          "constraint: Member must not be null");
    return;
  }
  type = json_node_get_string (type_node);
  if (seq_node && JSON_NODE_HOLDS_VALUE (seq_node) &&
      json_node_get_value_type (seq_node) == G_TYPE_STRING)
    seq = json_node_get_string (seq_node);

  const StreamInfo *info = get_consumer (call, &consumer);
  if (info == NULL)
    return;
  const StreamShardInfo *shard = get_shard (call, info, shard_id);
  if (shard == NULL)
    return;
  if (!resolve_position (call, "SubscribeToShard", "startingPosition.type", info, shard, type,
                         seq, json_object_get_member (p, "Timestamp"), &from))
    return;
  g_autofree char *lease = g_strdup_printf ("%s|%s|%s", info->id, consumer->name, shard->id);
  if (!kinesis_subscribe_take_over (call->api->leases, lease)) {
    fail (call, "ResourceInUseException",
          "Another active subscription exists for consumer %s on shard %s, started less than "
          "5 seconds ago", consumer->name, shard->id);
    return;
  }
  kinesis_subscribe_start (call->api->store, call->request, info, shard->ordinal, from,
                           call->api->leases, lease);
}

/* ---- dispatch ---- */

typedef void (*SyncOp) (Call *call);
typedef gboolean (*AsyncOp) (Call *call); /* TRUE: it took the call */

static const struct {
  const char *name;
  SyncOp sync;
  AsyncOp async;
} operations[] = {
  { "CreateStream", op_create_stream, NULL },
  { "DeleteStream", op_delete_stream, NULL },
  { "DescribeStream", op_describe_stream, NULL },
  { "DescribeStreamSummary", op_describe_stream_summary, NULL },
  { "DescribeLimits", op_describe_limits, NULL },
  { "ListStreams", op_list_streams, NULL },
  { "ListShards", op_list_shards, NULL },
  { "IncreaseStreamRetentionPeriod", op_increase_retention, NULL },
  { "DecreaseStreamRetentionPeriod", op_decrease_retention, NULL },
  { "AddTagsToStream", op_add_tags, NULL },
  { "ListTagsForStream", op_list_tags, NULL },
  { "RemoveTagsFromStream", op_remove_tags, NULL },
  { "GetShardIterator", op_get_shard_iterator, NULL },
  { "RegisterStreamConsumer", op_register_consumer, NULL },
  { "ListStreamConsumers", op_list_consumers, NULL },
  { "DescribeStreamConsumer", op_describe_consumer, NULL },
  { "DeregisterStreamConsumer", op_deregister_consumer, NULL },
  { "SplitShard", op_split_shard, NULL },
  { "MergeShards", op_merge_shards, NULL },
  { "UpdateShardCount", op_update_shard_count, NULL },
  { "PutRecord", NULL, op_put_record },
  { "PutRecords", NULL, op_put_records },
  { "GetRecords", NULL, op_get_records },
  { "SubscribeToShard", op_subscribe_to_shard, NULL },
};

static void
handle_kinesis (EdgeRequest *request, gpointer data)
{
  StreamKinesis *api = data;
  const char *target = edge_request_header (request, "X-Amz-Target");
  const char *op = strchr (target, '.') + 1;
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (operations); i++)
    if (g_str_equal (operations[i].name, op))
      break;
  if (i == G_N_ELEMENTS (operations)) {
    edge_request_respond_amz_error (request, 400, "UnknownOperationException",
                                    "edged does not implement Kinesis %s", op);
    return;
  }

  gsize len;
  const char *body = g_bytes_get_data (edge_request_body (request), &len);
  g_autoptr (Call) call = g_new0 (Call, 1);
  call->api = api;
  call->request = request;
  call->region = edge_request_aws_region (request);
  if (operations[i].async == op_put_record || operations[i].async == op_put_records) {
    KinesisFault fault = { NULL, NULL };
    call->put = kinesis_decode_put (body ? body : "", len,
                                    operations[i].async == op_put_record, &fault);
    if (call->put == NULL) {
      fail (call, fault.type, "%s", fault.message);
      kinesis_fault_clear (&fault);
      return;
    }
  } else {
    g_autoptr (GError) error = NULL;
    call->root = edge_json_parse (body ? body : "", len, G_MAXSIZE, &error);
    if (call->root == NULL || !JSON_NODE_HOLDS_OBJECT (call->root)) {
      fail (call, "SerializationException", "the request body must be a JSON object%s%s",
            error ? ": " : "", error ? error->message : "");
      return;
    }
    call->body = json_node_get_object (call->root);
  }
  if (operations[i].sync) {
    operations[i].sync (call);
  } else if (operations[i].async (call)) {
    api->pending++;
    g_steal_pointer (&call); /* the operation's callback frees it */
  }
}

StreamKinesis *
stream_kinesis_new (EdgeGateway *gateway, StreamStore *store, EdgeKeyring *keyring, GError **error)
{
  StreamKinesis *api = g_new0 (StreamKinesis, 1);
  api->store = store;
  api->leases = kinesis_subscribe_leases_new ();
  api->iterators = edge_cipher_new (keyring, "kinesis/iterators", error);
  if (api->iterators == NULL ||
      !edge_gateway_add_amz_target (gateway, "Kinesis_20131202", handle_kinesis,
                                    "Kinesis Data Streams API", api, error)) {
    stream_kinesis_free (api);
    return NULL;
  }
  return api;
}

void
stream_kinesis_free (StreamKinesis *api)
{
  if (api == NULL)
    return;
  /* Answer the calls under way first: they point at this API and the store. */
  kinesis_subscribe_stop_all (api->leases);
  while (api->pending > 0)
    g_main_context_iteration (NULL, TRUE);
  g_hash_table_unref (api->leases);
  edge_cipher_free (api->iterators);
  g_free (api);
}
