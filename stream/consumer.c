/* consumer.c: in-process consumers with checkpoints, for the modules that
 * act on records (function triggers, delivery, analytics).
 *
 * Per shard the consumer keeps a position (the next record number to hand
 * out) and at most one batch out at a time:
 *
 *     idle --read on a worker--> reading --records--> out (handler has it)
 *       ^                           |                      |
 *       |<------- none yet ---------+      done(ok): checkpoint = after batch,
 *       |                                   stored in the state DB
 *       +--------------------------------- done(fail): same batch, later
 *
 * A shard with nothing new waits for the store to say it grew. A closed
 * shard read to its sealed end is finished; its children start only when
 * all their parents (that this consumer reads) are finished.
 */
#define G_LOG_DOMAIN "stream"

#include "stream.h"

#define READ_BYTES (4 * 1024 * 1024)

typedef struct {
  StreamConsumer *consumer;
  guint32 ordinal;
  char *shard_id;
  char *parents[2];
  guint64 position;
  gboolean busy;     /* a read or a batch is out */
  gboolean again;    /* the shard grew while busy */
  gboolean finished; /* closed, sealed, consumed to its end */
  guint retry;
  gint64 window_until; /* monotonic ms: a short batch is held until then */
  guint window_timer;
} Lane;

struct _StreamConsumer {
  gint refcount; /* the owner's, and one per read or batch out */
  StreamStore *store;
  char *stream;
  char *name;
  StreamStart start;
  guint batch_size;
  guint window_ms;
  StreamConsumeFunc func;
  gpointer user_data;
  GPtrArray *lanes; /* Lane */
  guint watch;
  gboolean started; /* lanes added from now on are shards born of resharding */
  gboolean stopped;
};

typedef struct {
  StreamBatch batch; /* first: the handler's pointer is this struct's */
  Lane *lane;
  guint64 next;
} Batch;

static void lane_pump (Lane *lane);

static void
lane_free (gpointer data)
{
  Lane *l = data;
  if (l->retry)
    g_source_remove (l->retry);
  if (l->window_timer)
    g_source_remove (l->window_timer);
  g_free (l->shard_id);
  g_free (l->parents[0]);
  g_free (l->parents[1]);
  g_free (l);
}

static StreamConsumer *
consumer_ref (StreamConsumer *c)
{
  c->refcount++;
  return c;
}

static void
consumer_unref (StreamConsumer *c)
{
  if (--c->refcount > 0)
    return;
  g_ptr_array_unref (c->lanes);
  g_free (c->stream);
  g_free (c->name);
  g_free (c);
}

static Lane *
find_lane (StreamConsumer *c, const char *shard_id)
{
  for (guint i = 0; i < c->lanes->len; i++) {
    Lane *l = g_ptr_array_index (c->lanes, i);
    if (g_str_equal (l->shard_id, shard_id))
      return l;
  }
  return NULL;
}

/* Adds a lane for every shard of the stream the consumer has none for. */
static void
add_lanes (StreamConsumer *c)
{
  const StreamInfo *info = stream_store_lookup (c->store, c->stream, NULL);
  for (guint i = 0; info && i < info->shards->len; i++) {
    const StreamShardInfo *s = g_ptr_array_index (info->shards, i);
    if (find_lane (c, s->id))
      continue;
    Lane *l = g_new0 (Lane, 1);
    guint64 first = 0, next = 0;
    l->consumer = c;
    l->ordinal = s->ordinal;
    l->shard_id = g_strdup (s->id);
    l->parents[0] = g_strdup (s->parent);
    l->parents[1] = g_strdup (s->adjacent_parent);
    if (!stream_store_get_checkpoint (c->store, c->stream, c->name, s->ordinal, &l->position)) {
      stream_store_shard_range (c->store, c->stream, s->ordinal, &first, &next, NULL);
      /* Shards born after the consumer started are read from their start:
       * everything in them came after the resharding. */
      l->position = c->start == STREAM_START_LATEST && !c->started ? next : first;
      /* Store it, so that a restart does not move a LATEST start. */
      stream_store_set_checkpoint (c->store, c->stream, c->name, s->ordinal, l->position, NULL);
    }
    g_ptr_array_add (c->lanes, l);
  }
}

static gboolean
waiting_for_parents (Lane *l)
{
  for (int i = 0; i < 2; i++) {
    Lane *p = l->parents[i] ? find_lane (l->consumer, l->parents[i]) : NULL;
    if (p && !p->finished)
      return TRUE;
  }
  return FALSE;
}

static void
pump_all (StreamConsumer *c)
{
  for (guint i = 0; i < c->lanes->len; i++)
    lane_pump (g_ptr_array_index (c->lanes, i));
}

static gboolean retry_lane (gpointer data);

static gboolean
window_over (gpointer data)
{
  Lane *l = data;
  l->window_timer = 0;
  lane_pump (l);
  return G_SOURCE_REMOVE;
}

/* With a batching window, a batch shorter than the batch size is held
 * (the records let go, read again later) until the window since its first
 * record was seen is over, or the shard has a full batch. */
static gboolean
hold_for_window (Lane *l, guint n)
{
  StreamConsumer *c = l->consumer;
  if (c->window_ms == 0 || n >= c->batch_size)
    return FALSE;
  gint64 now = g_get_monotonic_time () / 1000;
  if (l->window_until == 0)
    l->window_until = now + c->window_ms;
  if (now >= l->window_until)
    return FALSE;
  if (l->window_timer == 0)
    l->window_timer = g_timeout_add ((guint) (l->window_until - now), window_over, l);
  return TRUE;
}

static void
read_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Lane *l = data;
  StreamConsumer *c = l->consumer;
  guint64 next = l->position;
  g_autoptr (GError) error = NULL;
  GPtrArray *records = stream_store_read_finish (c->store, result, &next, &error);

  if (c->stopped || records == NULL) {
    if (records)
      g_ptr_array_unref (records);
    l->busy = FALSE;
    /* A deleted stream ends the lane; any other failure (a damaged batch,
     * an I/O error) is tried again later rather than skipped. */
    if (!c->stopped && error && error->code != STREAM_ERROR_NOT_FOUND && l->retry == 0)
      l->retry = g_timeout_add (STREAM_CONSUMER_RETRY_MS, retry_lane, l);
    consumer_unref (c);
    return;
  }
  if (records->len == 0) {
    guint64 shard_next = 0;
    g_ptr_array_unref (records);
    l->busy = FALSE;
    l->position = MAX (l->position, next);
    stream_store_shard_range (c->store, c->stream, l->ordinal, NULL, &shard_next, NULL);
    if (!l->finished && l->position >= shard_next &&
        stream_store_shard_sealed (c->store, c->stream, l->ordinal)) {
      l->finished = TRUE;
      add_lanes (c);
      pump_all (c);
    } else if (l->again) {
      l->again = FALSE;
      lane_pump (l);
    }
    consumer_unref (c);
    return;
  }
  if (hold_for_window (l, records->len)) {
    g_ptr_array_unref (records);
    l->busy = FALSE;
    if (l->again) {
      l->again = FALSE;
      lane_pump (l);
    }
    consumer_unref (c);
    return;
  }
  l->window_until = 0;
  if (l->window_timer) {
    g_source_remove (l->window_timer);
    l->window_timer = 0;
  }
  Batch *b = g_new0 (Batch, 1);
  b->lane = l;
  b->batch.shard_ordinal = l->ordinal;
  b->batch.shard_id = l->shard_id;
  b->batch.records = records;
  b->next = ((StreamRecord *) g_ptr_array_index (records, records->len - 1))->number + 1;
  /* The batch keeps the consumer reference this read took. */
  c->func (c, &b->batch, c->user_data);
}

static gboolean
retry_lane (gpointer data)
{
  Lane *l = data;
  l->retry = 0;
  lane_pump (l);
  return G_SOURCE_REMOVE;
}

void
stream_consumer_done (StreamConsumer *c, StreamBatch *batch, gboolean success)
{
  Batch *b = (Batch *) batch;
  Lane *l = b->lane;
  g_autoptr (GError) error = NULL;

  l->busy = FALSE;
  if (!c->stopped) {
    if (success &&
        stream_store_set_checkpoint (c->store, c->stream, c->name, l->ordinal, b->next, &error)) {
      l->position = b->next;
      lane_pump (l);
    } else if (l->retry == 0) {
      /* Failed (or the checkpoint could not be stored): the same records again. */
      l->retry = g_timeout_add (STREAM_CONSUMER_RETRY_MS, retry_lane, l);
    }
  }
  g_ptr_array_unref (b->batch.records);
  g_free (b);
  consumer_unref (c);
}

guint64
stream_consumer_release (StreamConsumer *c, StreamBatch *batch)
{
  Batch *b = (Batch *) batch;
  Lane *l = b->lane;
  guint64 next = b->next;

  l->busy = FALSE;
  l->position = MAX (l->position, next);
  if (!c->stopped)
    lane_pump (l);
  g_ptr_array_unref (b->batch.records);
  g_free (b);
  consumer_unref (c);
  return next;
}

gboolean
stream_consumer_commit (StreamConsumer *c, guint32 ordinal, guint64 next, GError **error)
{
  return stream_store_set_checkpoint (c->store, c->stream, c->name, ordinal, next, error);
}

static void
lane_pump (Lane *l)
{
  StreamConsumer *c = l->consumer;
  if (c->stopped)
    return;
  if (l->busy) {
    l->again = TRUE;
    return;
  }
  if (l->finished || l->retry || waiting_for_parents (l))
    return;
  l->busy = TRUE;
  l->again = FALSE;
  consumer_ref (c);
  stream_store_read_async (c->store, c->stream, l->ordinal, l->position, c->batch_size, READ_BYTES,
                           read_done, l);
}

static void
on_grew (const char *stream, guint32 ordinal, guint64 next, gpointer data)
{
  StreamConsumer *c = data;
  gboolean known = FALSE;
  for (guint i = 0; i < c->lanes->len; i++) {
    Lane *l = g_ptr_array_index (c->lanes, i);
    if (l->ordinal == ordinal) {
      known = TRUE;
      lane_pump (l);
    }
  }
  if (!known) {
    add_lanes (c);
    pump_all (c);
  }
}

StreamConsumer *
stream_consumer_start (StreamStore *store, const char *stream, const char *name, StreamStart start,
                       guint batch_size, StreamConsumeFunc func, gpointer user_data, GError **error)
{
  g_autoptr (GPtrArray) registered = stream_store_list_consumers (store, stream, error);
  gboolean known = FALSE;
  if (registered == NULL)
    return NULL;
  for (guint i = 0; i < registered->len; i++)
    known |= g_str_equal (((StreamConsumerInfo *) g_ptr_array_index (registered, i))->name, name);
  if (!known && !stream_store_register_consumer (store, stream, name, error))
    return NULL;

  StreamConsumer *c = g_new0 (StreamConsumer, 1);
  c->refcount = 1;
  c->store = store;
  c->stream = g_strdup (stream);
  c->name = g_strdup (name);
  c->start = start;
  c->batch_size = CLAMP (batch_size, 1, 10000);
  c->func = func;
  c->user_data = user_data;
  c->lanes = g_ptr_array_new_with_free_func (lane_free);
  add_lanes (c);
  c->started = TRUE;
  c->watch = stream_store_watch (store, stream, on_grew, c);
  pump_all (c);
  return c;
}

void
stream_consumer_stop (StreamConsumer *c)
{
  if (c == NULL)
    return;
  c->stopped = TRUE;
  if (c->watch)
    stream_store_unwatch (c->store, c->watch);
  c->watch = 0;
  for (guint i = 0; i < c->lanes->len; i++) {
    Lane *l = g_ptr_array_index (c->lanes, i);
    if (l->retry) {
      g_source_remove (l->retry);
      l->retry = 0;
    }
    if (l->window_timer) {
      g_source_remove (l->window_timer);
      l->window_timer = 0;
    }
  }
  consumer_unref (c);
}

void
stream_store_consumer_lag (StreamStore *store, const char *stream, const char *consumer,
                           StreamStart start, guint64 *ret_records, guint64 *ret_bytes)
{
  const StreamInfo *info = stream_store_lookup (store, stream, NULL);
  guint64 records = 0, bytes = 0;
  for (guint i = 0; info && i < info->shards->len; i++) {
    const StreamShardInfo *shard = g_ptr_array_index (info->shards, i);
    guint64 first = 0, next = 0, done, size = 0;
    if (!stream_store_shard_range (store, stream, shard->ordinal, &first, &next, NULL))
      continue;
    if (!stream_store_get_checkpoint (store, stream, consumer, shard->ordinal, &done))
      done = start == STREAM_START_LATEST ? next : first;
    guint64 behind = next - MIN (next, MAX (done, first));
    records += behind;
    if (ret_bytes && behind && stream_store_shard_bytes (store, stream, shard->ordinal, &size, NULL))
      bytes += size / (next - first) * behind;
  }
  if (ret_records)
    *ret_records = records;
  if (ret_bytes)
    *ret_bytes = bytes;
}

void
stream_consumer_set_batching_window (StreamConsumer *c, guint ms)
{
  c->window_ms = ms;
}
