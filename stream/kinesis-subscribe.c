/* kinesis-subscribe.c: see kinesis-subscribe.h.
 *
 * A subscription reads its shard from a cursor on a worker thread (at most
 * READ_RECORDS records or READ_BYTES at a time), sends the records as one
 * SubscribeToShardEvent, moves the cursor and reads again until it has
 * caught up; then it waits for the store to say the shard grew. At least
 * every HEARTBEAT_S it sends an event, empty if need be, so that the
 * client's ContinuationSequenceNumber and MillisBehindLatest stay fresh.
 * While the client has more than QUEUE_MAX bytes unread, reading pauses.
 * When the shard is closed and read to its sealed end, a last event names
 * its ChildShards and the stream ends; otherwise it ends after LIFETIME_S,
 * and the client subscribes again from its ContinuationSequenceNumber.
 *
 * ContinuationSequenceNumber is the sequence number of the last record
 * sent (resume AFTER_SEQUENCE_NUMBER it); before any record, that of the
 * record before the cursor, or, at the very start of a shard, the first
 * sequence number it will have (resume AT_SEQUENCE_NUMBER it).
 */
#define G_LOG_DOMAIN "stream"

#include "kinesis-subscribe.h"

#include "kinesis-decode.h"

#define READ_RECORDS 1000
#define READ_BYTES (1024 * 1024)
#define QUEUE_MAX (4 * 1024 * 1024)
#define RETRY_MS 50
#define HEARTBEAT_S 5
#define LIFETIME_S (5 * 60)
/* A second subscription of one consumer to one shard is refused within
 * this time of the first, and takes over after it, as Kinesis does. */
#define TAKE_OVER_S 5

/* ---- event stream messages ---- */

guint32
kinesis_crc32 (guint32 crc, const guint8 *data, gsize len)
{
  static guint32 table[256];
  static gsize ready = 0;
  if (g_once_init_enter (&ready)) {
    for (guint32 i = 0; i < 256; i++) {
      guint32 c = i;
      for (int k = 0; k < 8; k++)
        c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    g_once_init_leave (&ready, 1);
  }
  crc = ~crc;
  for (gsize i = 0; i < len; i++)
    crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static void
add_header (GByteArray *out, const char *name, const char *value)
{
  guint8 name_len = (guint8) strlen (name);
  guint16 value_len = (guint16) strlen (value);
  guint8 type = 7; /* string */
  guint8 len_be[2] = { (guint8) (value_len >> 8), (guint8) value_len };
  g_byte_array_append (out, &name_len, 1);
  g_byte_array_append (out, (const guint8 *) name, name_len);
  g_byte_array_append (out, &type, 1);
  g_byte_array_append (out, len_be, 2);
  g_byte_array_append (out, (const guint8 *) value, value_len);
}

GBytes *
kinesis_event_encode (const char *message_type, const char *type, const char *payload,
                      gsize payload_len)
{
  g_autoptr (GByteArray) headers = g_byte_array_new ();
  add_header (headers, ":message-type", message_type);
  add_header (headers, g_str_equal (message_type, "exception") ? ":exception-type" : ":event-type",
              type);
  add_header (headers, ":content-type", "application/json");

  gsize total = 12 + headers->len + payload_len + 4;
  GByteArray *out = g_byte_array_sized_new ((guint) total);
  guint8 prelude[12];
  edge_put_be32 (prelude, (guint32) total);
  edge_put_be32 (prelude + 4, headers->len);
  edge_put_be32 (prelude + 8, kinesis_crc32 (0, prelude, 8));
  g_byte_array_append (out, prelude, 12);
  g_byte_array_append (out, headers->data, headers->len);
  g_byte_array_append (out, (const guint8 *) payload, (guint) payload_len);
  guint8 crc[4];
  edge_put_be32 (crc, kinesis_crc32 (0, out->data, out->len));
  g_byte_array_append (out, crc, 4);
  return g_byte_array_free_to_bytes (out);
}

/* ---- subscriptions ---- */

typedef struct {
  gint refcount;
  StreamStore *store;
  EdgeRequest *request; /* NULL once the client is gone or the stream ended */
  GHashTable *leases;
  char *lease;
  char *stream;
  char *stream_id;
  guint32 ordinal;
  guint64 cursor;
  gboolean sent_any;      /* a record has been sent: continue after the last one */
  gint64 last_arrival_ms; /* of the last record sent */
  gboolean reading, again;
  guint watch, heartbeat, lifetime, retry;
  gint64 last_event_us;
  gint64 started_us;
} Subscription;

static void pump (Subscription *sub);

static Subscription *
sub_ref (Subscription *sub)
{
  sub->refcount++;
  return sub;
}

static void
sub_unref (Subscription *sub)
{
  if (--sub->refcount > 0)
    return;
  g_free (sub->lease);
  g_free (sub->stream);
  g_free (sub->stream_id);
  g_free (sub);
}

/* Stops everything that would touch the request or the store. */
static void
sub_detach (Subscription *sub)
{
  if (sub->watch)
    stream_store_unwatch (sub->store, sub->watch);
  g_clear_handle_id (&sub->heartbeat, g_source_remove);
  g_clear_handle_id (&sub->lifetime, g_source_remove);
  g_clear_handle_id (&sub->retry, g_source_remove);
  sub->watch = 0;
  GHashTable *leases = sub->leases;
  sub->leases = NULL;
  if (leases)
    g_hash_table_remove (leases, sub->lease); /* drops its reference: @sub may be gone */
}

static void
sub_end (Subscription *sub)
{
  if (sub->request == NULL)
    return;
  EdgeRequest *request = sub->request;
  sub->request = NULL;
  sub_detach (sub);
  edge_request_stream_end (request);
}

static void
on_gone (gpointer data)
{
  Subscription *sub = data;
  sub->request = NULL;
  sub_detach (sub);
}

static void
send_event (Subscription *sub, GPtrArray *records, const StreamInfo *info, gboolean final)
{
  g_autoptr (GString) out = g_string_new ("{\"Records\":[");
  for (guint i = 0; records && i < records->len; i++) {
    StreamRecord *r = g_ptr_array_index (records, i);
    if (i > 0)
      g_string_append_c (out, ',');
    kinesis_append_record (out, sub->ordinal, r);
    sub->last_arrival_ms = r->arrival_ms;
  }
  g_string_append (out, "],\"ContinuationSequenceNumber\":");
  if (sub->cursor > 0)
    kinesis_append_sequence (out, sub->ordinal, sub->cursor - 1);
  else
    kinesis_append_sequence (out, sub->ordinal, 0);
  guint64 next = 0;
  stream_store_shard_range (sub->store, sub->stream, sub->ordinal, NULL, &next, NULL);
  gint64 behind = sub->cursor >= next || sub->last_arrival_ms == 0
                      ? 0
                      : MAX (0, g_get_real_time () / 1000 - sub->last_arrival_ms);
  g_string_append_printf (out, ",\"MillisBehindLatest\":%" G_GINT64_FORMAT, behind);
  if (final) {
    g_string_append (out, ",\"ChildShards\":");
    kinesis_append_child_shards (out, info, g_ptr_array_index (info->shards, sub->ordinal));
  }
  g_string_append_c (out, '}');
  g_autoptr (GBytes) event = kinesis_event_encode ("event", "SubscribeToShardEvent", out->str,
                                                   out->len);
  edge_request_stream_write (sub->request, event);
  sub->last_event_us = g_get_monotonic_time ();
}

/* The stream as it is now, if it is still the one subscribed to. */
static const StreamInfo *
sub_stream (Subscription *sub)
{
  const StreamInfo *info = stream_store_lookup (sub->store, sub->stream, NULL);
  return info && g_str_equal (info->id, sub->stream_id) ? info : NULL;
}

static void
send_exception (Subscription *sub, const char *type, const char *message)
{
  g_autoptr (GString) out = g_string_new ("{\"message\":");
  edge_json_append_string (out, message, strlen (message));
  g_string_append_c (out, '}');
  g_autoptr (GBytes) event = kinesis_event_encode ("exception", type, out->str, out->len);
  edge_request_stream_write (sub->request, event);
  sub_end (sub);
}

static void
read_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Subscription *sub = data;
  guint64 next = 0;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) records = stream_store_read_finish (sub->store, result, &next, &error);
  sub->reading = FALSE;
  if (sub->request == NULL) {
    sub_unref (sub);
    return;
  }
  const StreamInfo *info = sub_stream (sub);
  if (info == NULL) {
    send_exception (sub, "ResourceNotFoundException", "the stream was deleted");
  } else if (records == NULL) {
    send_exception (sub, "InternalFailureException", error->message);
  } else if (records->len > 0) {
    sub->cursor = next;
    send_event (sub, records, info, FALSE);
    pump (sub); /* more may be there */
  } else {
    guint64 shard_next = 0;
    const StreamShardInfo *shard = g_ptr_array_index (info->shards, sub->ordinal);
    stream_store_shard_range (sub->store, sub->stream, sub->ordinal, NULL, &shard_next, NULL);
    sub->cursor = MAX (sub->cursor, next);
    if (shard->closed && sub->cursor >= shard_next &&
        stream_store_shard_sealed (sub->store, sub->stream, sub->ordinal)) {
      send_event (sub, NULL, info, TRUE);
      sub_end (sub);
    } else if (sub->again) {
      sub->again = FALSE;
      pump (sub);
    }
  }
  sub_unref (sub);
}

static gboolean
retry_pump (gpointer data)
{
  Subscription *sub = data;
  sub->retry = 0;
  pump (sub);
  return G_SOURCE_REMOVE;
}

static void
pump (Subscription *sub)
{
  if (sub->request == NULL)
    return;
  if (sub->reading) {
    sub->again = TRUE;
    return;
  }
  if (edge_request_stream_queued (sub->request) > QUEUE_MAX) {
    if (sub->retry == 0)
      sub->retry = g_timeout_add (RETRY_MS, retry_pump, sub);
    return;
  }
  sub->reading = TRUE;
  sub->again = FALSE;
  stream_store_read_async (sub->store, sub->stream, sub->ordinal, sub->cursor, READ_RECORDS,
                           READ_BYTES, read_done, sub_ref (sub));
}

static void
on_grew (const char *stream, guint32 ordinal, guint64 next, gpointer data)
{
  Subscription *sub = data;
  if (ordinal == sub->ordinal)
    pump (sub);
}

static gboolean
on_heartbeat (gpointer data)
{
  Subscription *sub = data;
  const StreamInfo *info = sub_stream (sub);
  if (info == NULL) {
    send_exception (sub, "ResourceNotFoundException", "the stream was deleted");
    return G_SOURCE_REMOVE; /* sub_end cleared the id */
  }
  if (!sub->reading && g_get_monotonic_time () - sub->last_event_us >= HEARTBEAT_S * G_USEC_PER_SEC / 2)
    send_event (sub, NULL, info, FALSE);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_lifetime (gpointer data)
{
  Subscription *sub = data;
  sub->lifetime = 0;
  sub_end (sub);
  return G_SOURCE_REMOVE;
}

static void
lease_free (gpointer data)
{
  sub_unref (data);
}

gboolean
kinesis_subscribe_take_over (GHashTable *leases, const char *lease)
{
  Subscription *old = g_hash_table_lookup (leases, lease);
  if (old == NULL)
    return TRUE;
  if (g_get_monotonic_time () - old->started_us < TAKE_OVER_S * G_USEC_PER_SEC)
    return FALSE;
  sub_ref (old);
  send_exception (old, "ResourceInUseException",
                  "another subscription of this consumer took over the shard");
  sub_unref (old);
  return TRUE;
}

void
kinesis_subscribe_start (StreamStore *store, EdgeRequest *request, const StreamInfo *info,
                         guint32 ordinal, guint64 from, GHashTable *leases, const char *lease)
{
  Subscription *sub = g_new0 (Subscription, 1);
  sub->started_us = g_get_monotonic_time ();
  sub->refcount = 1;
  sub->store = store;
  sub->request = request;
  sub->leases = leases;
  sub->lease = g_strdup (lease);
  sub->stream = g_strdup (info->name);
  sub->stream_id = g_strdup (info->id);
  sub->ordinal = ordinal;
  sub->cursor = from;
  g_hash_table_insert (leases, g_strdup (lease), sub_ref (sub));

  edge_request_stream_begin (request, SOUP_STATUS_OK, "application/vnd.amazon.eventstream",
                             on_gone, sub);
  g_autoptr (GBytes) initial = kinesis_event_encode ("event", "initial-response", "{}", 2);
  edge_request_stream_write (request, initial);
  sub->last_event_us = g_get_monotonic_time ();
  sub->watch = stream_store_watch (store, info->name, on_grew, sub);
  sub->heartbeat = g_timeout_add_seconds (HEARTBEAT_S, on_heartbeat, sub);
  sub->lifetime = g_timeout_add_seconds (LIFETIME_S, on_lifetime, sub);
  pump (sub);
  sub_unref (sub); /* the lease holds it */
}

void
kinesis_subscribe_stop_all (GHashTable *leases)
{
  GHashTableIter iter;
  gpointer sub;
  g_autoptr (GPtrArray) subs = g_ptr_array_new_with_free_func (lease_free);
  g_hash_table_iter_init (&iter, leases);
  while (g_hash_table_iter_next (&iter, NULL, &sub))
    g_ptr_array_add (subs, sub_ref (sub));
  for (guint i = 0; i < subs->len; i++)
    sub_end (g_ptr_array_index (subs, i));
}

GHashTable *
kinesis_subscribe_leases_new (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, g_free, lease_free);
}
