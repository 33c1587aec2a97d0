/* subscribe.c: WS /v1/streams/{name}/subscribe, a SubscribeToShard that
 * works from a browser.
 *
 * Each connection keeps a cursor per shard. A shard is "pumped": read from
 * its cursor on a worker thread (at most 500 records or 1 MiB at a time),
 * the records sent, the cursor moved past what was sent, and read again
 * until it is caught up; then it waits for the store to say the shard grew.
 * Records are never dropped for a slow client: while more than half of its
 * queue limit is still buffered, reading pauses and is retried every 50 ms.
 *
 * Messages are JSON text, one record each:
 *   {"shardId": "shardId-000000000000", "sequenceNumber": "...",
 *    "partitionKey": "...", "arrivalTime": 1795890940813,
 *    "data": "<base64>", "text": "<the data, when it is UTF-8>",
 *    "attributes": {...}}   (what was kept beside the data, if anything:
 *                            an MQTT message's topic, qos and retain flag)
 * An error (unknown stream or shard, bad position) is one message
 * {"error": {"code": ..., "message": ...}} followed by close code 1008.
 * To resume after a reconnect, ask for AFTER_SEQUENCE_NUMBER with the last
 * sequence number seen on that shard.
 *
 * A subscription to every shard (no "shard" in the query) follows
 * resharding: shards created later join it from their first record, and a
 * shard is read only once its parents are read to their sealed end, so each
 * partition key's records arrive in order across splits and merges.
 */
#define G_LOG_DOMAIN "stream"

#include "stream.h"

#define READ_RECORDS 500
#define READ_BYTES (1024 * 1024)
#define RETRY_MS 50

typedef struct _Subscription Subscription;

typedef struct {
  Subscription *sub;
  guint32 ordinal;
  char *shard_id;
  char *parents[2]; /* shard ids; read only after these are finished */
  guint64 cursor;
  gboolean reading;
  gboolean again;    /* the shard grew while a read was under way */
  gboolean finished; /* closed, sealed and read to its end */
} Cursor;

struct _Subscription {
  gint refcount;
  gboolean all_shards; /* follows resharding: new shards join */
  StreamStore *store;
  EdgeWsPeer *peer;
  char *stream;
  char *stream_id;
  GPtrArray *cursors; /* Cursor */
  guint watch;
  guint retry;
  gboolean closed;
};

typedef struct {
  StreamStore *store;
} SubscribeApi;

static void pump (Cursor *c);

static Subscription *
sub_ref (Subscription *sub)
{
  sub->refcount++;
  return sub;
}

static void
cursor_free (gpointer data)
{
  Cursor *c = data;
  g_free (c->shard_id);
  g_free (c->parents[0]);
  g_free (c->parents[1]);
  g_free (c);
}

static Cursor *
find_cursor (Subscription *sub, const char *shard_id)
{
  for (guint i = 0; i < sub->cursors->len; i++) {
    Cursor *c = g_ptr_array_index (sub->cursors, i);
    if (g_str_equal (c->shard_id, shard_id))
      return c;
  }
  return NULL;
}

/* A child waits for parents this subscription reads and has not finished. */
static gboolean
waiting_for_parents (Cursor *c)
{
  for (int i = 0; i < 2; i++) {
    Cursor *p = c->parents[i] ? find_cursor (c->sub, c->parents[i]) : NULL;
    if (p && !p->finished)
      return TRUE;
  }
  return FALSE;
}

/* Adds cursors for shards created since the subscription started (from
 * their first record). */
static void
add_new_shards (Subscription *sub)
{
  const StreamInfo *info = stream_store_lookup (sub->store, sub->stream, NULL);
  if (info == NULL || !sub->all_shards)
    return;
  for (guint i = 0; i < info->shards->len; i++) {
    const StreamShardInfo *shard = g_ptr_array_index (info->shards, i);
    if (find_cursor (sub, shard->id))
      continue;
    Cursor *c = g_new0 (Cursor, 1);
    c->sub = sub;
    c->ordinal = shard->ordinal;
    c->shard_id = g_strdup (shard->id);
    c->parents[0] = g_strdup (shard->parent);
    c->parents[1] = g_strdup (shard->adjacent_parent);
    g_ptr_array_add (sub->cursors, c);
  }
}

static void
sub_unref (Subscription *sub)
{
  if (--sub->refcount > 0)
    return;
  if (sub->watch)
    stream_store_unwatch (sub->store, sub->watch);
  if (sub->retry)
    g_source_remove (sub->retry);
  g_ptr_array_unref (sub->cursors);
  g_clear_pointer (&sub->peer, edge_ws_peer_unref);
  g_free (sub->stream);
  g_free (sub->stream_id);
  g_free (sub);
}

static void
send_error (EdgeWsPeer *peer, const char *code, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
send_error (EdgeWsPeer *peer, const char *code, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  g_autofree char *message = g_strdup_vprintf (format, args);
  va_end (args);
  g_autofree char *text = edge_json_error (code, message, NULL);
  edge_ws_peer_send_text (peer, text);
  edge_ws_peer_close (peer, 1008, message);
}

static char *
record_message (Cursor *c, StreamRecord *r)
{
  gsize len;
  const char *data = g_bytes_get_data (r->data, &len);
  g_autofree char *seq = stream_sequence_format (c->ordinal, r->number);
  g_autofree char *b64 = g_base64_encode ((const guchar *) data, len);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "shardId");
  json_builder_add_string_value (b, c->shard_id);
  json_builder_set_member_name (b, "sequenceNumber");
  json_builder_add_string_value (b, seq);
  json_builder_set_member_name (b, "partitionKey");
  json_builder_add_string_value (b, r->partition_key);
  json_builder_set_member_name (b, "arrivalTime");
  json_builder_add_int_value (b, r->arrival_ms);
  json_builder_set_member_name (b, "data");
  json_builder_add_string_value (b, b64);
  if (g_utf8_validate_len (data ? data : "", len, NULL) && memchr (data ? data : "", 0, len) == NULL) {
    g_autofree char *text = g_strndup (data ? data : "", len);
    json_builder_set_member_name (b, "text");
    json_builder_add_string_value (b, text);
  }
  if (r->attributes) {
    /* Written by edged as a JSON object; anything else is left out. */
    gsize attr_len;
    const char *attrs = g_bytes_get_data (r->attributes, &attr_len);
    g_autoptr (JsonParser) parser = json_parser_new_immutable ();
    if (attr_len > 0 && json_parser_load_from_data (parser, attrs, (gssize) attr_len, NULL) &&
        JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
      json_builder_set_member_name (b, "attributes");
      json_builder_add_value (b, json_node_copy (json_parser_get_root (parser)));
    }
  }
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  return edge_json_to_string (root, NULL);
}

static gboolean
retry_pumps (gpointer data)
{
  Subscription *sub = data;
  sub->retry = 0;
  for (guint i = 0; i < sub->cursors->len; i++)
    pump (g_ptr_array_index (sub->cursors, i));
  return G_SOURCE_REMOVE;
}

static void
schedule_retry (Subscription *sub)
{
  if (sub->retry == 0 && !sub->closed)
    sub->retry = g_timeout_add (RETRY_MS, retry_pumps, sub);
}

static void
read_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Cursor *c = data;
  Subscription *sub = c->sub;
  guint64 next = c->cursor;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) records = stream_store_read_finish (sub->store, result, &next, &error);
  gboolean full = FALSE;

  c->reading = FALSE;
  if (!sub->closed && records == NULL) {
    if (error->code == STREAM_ERROR_NOT_FOUND)
      send_error (sub->peer, "ResourceNotFound", "stream %s was deleted", sub->stream);
    else
      send_error (sub->peer, "InternalFailure", "%s", error->message);
  } else if (!sub->closed) {
    for (guint i = 0; i < records->len; i++) {
      StreamRecord *r = g_ptr_array_index (records, i);
      g_autofree char *text = record_message (c, r);
      EdgeWsSendResult sent = edge_ws_peer_send_text (sub->peer, text);
      if (sent != EDGE_WS_SENT) {
        full = TRUE; /* the cursor stays on this record */
        break;
      }
      c->cursor = r->number + 1;
    }
    if (records->len == 0) {
      guint64 shard_next = 0;
      c->cursor = MAX (c->cursor, next); /* skipped past trimmed records */
      stream_store_shard_range (sub->store, sub->stream, c->ordinal, NULL, &shard_next, NULL);
      if (!c->finished && c->cursor >= shard_next &&
          stream_store_shard_sealed (sub->store, sub->stream, c->ordinal)) {
        /* Its children may start now. */
        c->finished = TRUE;
        add_new_shards (sub);
        for (guint i = 0; i < sub->cursors->len; i++)
          pump (g_ptr_array_index (sub->cursors, i));
      }
    }
    if (full || records->len > 0 || c->again) {
      c->again = FALSE;
      if (full)
        schedule_retry (sub);
      else
        pump (c);
    }
  }
  sub_unref (sub);
}

static void
pump (Cursor *c)
{
  Subscription *sub = c->sub;
  if (sub->closed)
    return;
  if (c->reading) {
    c->again = TRUE;
    return;
  }
  if (c->finished || waiting_for_parents (c))
    return;
  /* Past half the client's queue limit, wait: a read brings up to 1 MiB. */
  if (edge_ws_peer_buffered (sub->peer) > edge_ws_peer_max_buffered (sub->peer) / 2) {
    schedule_retry (sub);
    return;
  }
  c->reading = TRUE;
  sub_ref (sub);
  stream_store_read_async (sub->store, sub->stream, c->ordinal, c->cursor, READ_RECORDS, READ_BYTES,
                           read_done, c);
}

static void
on_grew (const char *stream, guint32 ordinal, guint64 next, gpointer data)
{
  Subscription *sub = data;
  gboolean known = FALSE;
  for (guint i = 0; i < sub->cursors->len; i++) {
    Cursor *c = g_ptr_array_index (sub->cursors, i);
    if (c->ordinal == ordinal) {
      known = TRUE;
      /* Grew, or was sealed: either way there is something to look at. */
      pump (c);
    }
  }
  if (!known && sub->all_shards) {
    /* A shard born of resharding: join it, and look again at the closed
     * parents (they are finished once read to their sealed end). */
    add_new_shards (sub);
    for (guint i = 0; i < sub->cursors->len; i++)
      pump (g_ptr_array_index (sub->cursors, i));
  }
}

static void
on_closed (EdgeWsPeer *peer, gpointer data)
{
  Subscription *sub = data;
  sub->closed = TRUE;
  if (sub->watch) {
    stream_store_unwatch (sub->store, sub->watch);
    sub->watch = 0;
  }
  /* Break the cycle (the peer holds the subscription as its handler data):
   * the gateway still holds the peer while this runs. */
  g_clear_pointer (&sub->peer, edge_ws_peer_unref);
}

/* The starting record number of @shard for the requested position; FALSE
 * having told the client why not. */
static gboolean
start_position (Subscription *sub, EdgeRequest *request, const StreamShardInfo *shard,
                guint64 *ret)
{
  const char *position = edge_request_query (request, "position");
  guint64 first = 0, next = 0;
  stream_store_shard_range (sub->store, sub->stream, shard->ordinal, &first, &next, NULL);
  if (position == NULL || g_str_equal (position, "LATEST")) {
    *ret = next;
  } else if (g_str_equal (position, "TRIM_HORIZON")) {
    *ret = first;
  } else if (g_str_equal (position, "AT_SEQUENCE_NUMBER") ||
             g_str_equal (position, "AFTER_SEQUENCE_NUMBER")) {
    const char *seq = edge_request_query (request, "sequence");
    guint32 ordinal;
    if (seq == NULL || !stream_sequence_parse (seq, &ordinal, ret) || ordinal != shard->ordinal) {
      send_error (sub->peer, "InvalidArgument",
                  "position %s needs sequence=<a sequence number of %s>", position, shard->id);
      return FALSE;
    }
    if (g_str_equal (position, "AFTER_SEQUENCE_NUMBER"))
      (*ret)++;
  } else if (g_str_equal (position, "AT_TIMESTAMP")) {
    const char *ts = edge_request_query (request, "timestamp");
    char *end = NULL;
    double seconds = ts ? g_ascii_strtod (ts, &end) : 0;
    if (ts == NULL || end == ts || *end != '\0') {
      send_error (sub->peer, "InvalidArgument", "position AT_TIMESTAMP needs timestamp=<epoch seconds>");
      return FALSE;
    }
    stream_store_shard_find_time (sub->store, sub->stream, shard->ordinal,
                                  (gint64) (seconds * 1000), ret, NULL);
  } else {
    send_error (sub->peer, "InvalidArgument",
                "position must be LATEST, TRIM_HORIZON, AT_SEQUENCE_NUMBER, "
                "AFTER_SEQUENCE_NUMBER or AT_TIMESTAMP, not %s",
                position);
    return FALSE;
  }
  return TRUE;
}

static void
open_subscription (EdgeWsPeer *peer, EdgeRequest *request, gpointer data)
{
  SubscribeApi *api = data;
  const char *name = edge_request_param (request, "name");
  const char *shard_id = edge_request_query (request, "shard");
  const StreamInfo *info = stream_store_lookup (api->store, name, NULL);
  Subscription *sub;

  if (info == NULL) {
    send_error (peer, "ResourceNotFound", "stream %s not found", name);
    return;
  }
  sub = g_new0 (Subscription, 1);
  sub->refcount = 1;
  sub->store = api->store;
  sub->peer = edge_ws_peer_ref (peer);
  sub->stream = g_strdup (info->name);
  sub->stream_id = g_strdup (info->id);
  sub->cursors = g_ptr_array_new_with_free_func (cursor_free);
  sub->all_shards = shard_id == NULL;
  for (guint i = 0; i < info->shards->len; i++) {
    const StreamShardInfo *shard = g_ptr_array_index (info->shards, i);
    if (shard_id && !g_str_equal (shard_id, shard->id))
      continue;
    Cursor *c = g_new0 (Cursor, 1);
    c->sub = sub;
    c->ordinal = shard->ordinal;
    c->shard_id = g_strdup (shard->id);
    if (sub->all_shards) {
      c->parents[0] = g_strdup (shard->parent);
      c->parents[1] = g_strdup (shard->adjacent_parent);
    }
    if (!start_position (sub, request, shard, &c->cursor)) {
      cursor_free (c);
      sub_unref (sub);
      return;
    }
    g_ptr_array_add (sub->cursors, c);
  }
  if (sub->cursors->len == 0) {
    send_error (peer, "ResourceNotFound", "stream %s has no shard %s", name, shard_id);
    sub_unref (sub);
    return;
  }
  /* The peer's reference: dropped when the peer goes. */
  edge_ws_peer_set_handlers (peer, NULL, on_closed, sub, (GDestroyNotify) sub_unref);
  sub->watch = stream_store_watch (api->store, sub->stream, on_grew, sub);
  for (guint i = 0; i < sub->cursors->len; i++)
    pump (g_ptr_array_index (sub->cursors, i));
}

gboolean
stream_subscribe_register (EdgeGateway *gateway, StreamStore *store, GError **error)
{
  static SubscribeApi api;
  static const EdgeWsRoute route = {
    "/v1/streams/{name}/subscribe", open_subscription,
    "Records of a stream as they land (WebSocket; ?shard=&position=&sequence=&timestamp=)",
    "streams", NULL
  };
  api.store = store;
  return edge_gateway_add_websocket (gateway, &route, &api, error);
}
