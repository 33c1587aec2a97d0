/* store.c: every data stream of the daemon.
 *
 * Metadata (streams, shards, tags) lives in the state database; records live
 * in one StreamLog per shard under DIRECTORY/<stream id>/shard-<ordinal>/,
 * sealed with keys derived for "stream/<stream id>".
 *
 * Writes go through one writer thread, which takes whatever appends are
 * queued, writes them, then syncs each touched shard once: that is the group
 * commit. The stream's durability decides when an append is acknowledged:
 *
 *     sync   write, fdatasync, acknowledge       (a group per fsync)
 *     batch  wait up to batch_ms for more, write, fdatasync, acknowledge
 *     none   write, acknowledge                  (the kernel flushes)
 *
 *     main loop                 writer thread
 *     ---------                 -------------
 *     put() --AppendJob-->  queue --> append x N --> sync shards --+
 *     callback <--g_main_context_invoke------------------------------+
 *
 * Reads run on GLib's worker pool and read the logs directly (they are
 * safe with one concurrent writer). Shards are reference counted so that a
 * stream deleted while a job or a read holds one of its shards stays valid
 * until they finish; its files are removed by the writer after every job
 * queued before the delete.
 */
#define G_LOG_DOMAIN "stream"

#include "stream.h"

#include <errno.h>
#include <ftw.h>
#include <sys/statvfs.h>
#include <glib/gstdio.h>
#include <fcntl.h>
#include <unistd.h>

#define WRITER_MAX_JOBS_PER_ROUND 4096
/* Space set aside in a file so that freeing space (DeleteStream) still works
 * on a full disk: the state database needs a few pages to record it. */
#define SPACE_RESERVE_BYTES (4 * 1024 * 1024)
#define RETENTION_INTERVAL_S 300

typedef struct {
  gint refcount;
  StreamLog *log;
  guint32 ordinal;
  StreamDurability durability;
  guint batch_ms;
  gint sealed; /* atomic: closed, and every put accepted for it is in its log */
  /* Write-rate buckets (main thread): tokens left and when last filled. */
  double record_tokens, byte_tokens;
  gint64 filled_us;
} Shard;

typedef struct {
  StreamInfo info;
  GPtrArray *shards; /* Shard *, by ordinal */
  char *directory;
  StreamWriteLimit limit;
} Stream;

typedef enum { JOB_APPEND, JOB_BARRIER, JOB_STOP } JobKind;

typedef struct _PutRequest PutRequest;

typedef struct {
  JobKind kind;
  /* JOB_APPEND */
  PutRequest *request;
  Shard *shard;
  GPtrArray *keys; /* char * */
  GPtrArray *data; /* GBytes * */
  GPtrArray *attributes; /* GBytes * or NULL; NULL as a whole when no record has any */
  GArray *indexes; /* guint: positions in the request */
  gint64 arrival_ms;
  /* JOB_BARRIER */
  GFunc barrier;
  gpointer barrier_data;
} Job;

struct _PutRequest {
  StreamStore *store;
  char *stream;
  StreamPutResult *results;
  guint n;
  gint pending;
  StreamPutFunc func;
  gpointer user_data;
};

typedef struct {
  guint id;
  char *stream;
  StreamWatchFunc func;
  gpointer user_data;
} Watch;

struct _StreamStore {
  GPtrArray *watches; /* Watch, main thread */
  guint next_watch;
  char *directory;
  EdgeState *state;
  EdgeKeyring *keyring;
  GMainContext *context;
  GHashTable *streams; /* name -> Stream */
  GAsyncQueue *queue;  /* Job */
  GThread *writer;
  guint retention_timer;
  guint64 min_free;
  gint64 free_checked_us;
  guint64 free_bytes;
};

static const char *const stream_schema[] = {
  /* 1 */
  "CREATE TABLE streams ("
  "  id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, created_ms INTEGER NOT NULL,"
  "  durability TEXT NOT NULL, batch_ms INTEGER NOT NULL, retention_hours INTEGER NOT NULL,"
  "  retention_bytes INTEGER NOT NULL, max_record_bytes INTEGER NOT NULL);"
  "CREATE TABLE shards ("
  "  stream_id TEXT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,"
  "  ordinal INTEGER NOT NULL, shard_id TEXT NOT NULL, start_hash BLOB NOT NULL,"
  "  end_hash BLOB NOT NULL, parent TEXT, adjacent_parent TEXT,"
  "  closed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (stream_id, ordinal));"
  "CREATE TABLE stream_tags ("
  "  stream_id TEXT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,"
  "  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (stream_id, key));",
  /* 2: registered consumers, and where each has got to in each shard */
  "CREATE TABLE stream_consumers ("
  "  stream_id TEXT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,"
  "  name TEXT NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (stream_id, name));"
  "CREATE TABLE stream_checkpoints ("
  "  stream_id TEXT NOT NULL, consumer TEXT NOT NULL, ordinal INTEGER NOT NULL,"
  "  next_number INTEGER NOT NULL, PRIMARY KEY (stream_id, consumer, ordinal),"
  "  FOREIGN KEY (stream_id, consumer) REFERENCES stream_consumers (stream_id, name)"
  "    ON DELETE CASCADE);",
};

static const char *const durability_names[] = { "sync", "batch", "none" };

void
stream_settings_init (StreamSettings *settings)
{
  settings->durability = STREAM_DURABILITY_SYNC;
  settings->batch_ms = 50;
  settings->retention_hours = 24;
  settings->retention_bytes = 0;
  settings->max_record_bytes = STREAM_RECORD_DEFAULT_MAX_BYTES;
}

/* ---- shards and streams ---- */

static Shard *
shard_ref (Shard *shard)
{
  g_atomic_int_inc (&shard->refcount);
  return shard;
}

static void
shard_unref (Shard *shard)
{
  if (shard && g_atomic_int_dec_and_test (&shard->refcount)) {
    stream_log_close (shard->log);
    g_free (shard);
  }
}

static void
shard_info_free (gpointer data)
{
  StreamShardInfo *s = data;
  g_free (s->id);
  g_free (s->parent);
  g_free (s->adjacent_parent);
  g_free (s);
}

static void
stream_free (gpointer data)
{
  Stream *s = data;
  g_free (s->info.name);
  g_free (s->info.id);
  g_ptr_array_unref (s->info.shards);
  g_hash_table_unref (s->info.tags);
  g_ptr_array_unref (s->shards);
  g_free (s->directory);
  g_free (s);
}

static Stream *
stream_new (StreamStore *store, const char *name, const char *id)
{
  Stream *s = g_new0 (Stream, 1);
  s->info.name = g_strdup (name);
  s->info.id = g_strdup (id);
  s->info.shards = g_ptr_array_new_with_free_func (shard_info_free);
  s->info.tags = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  s->shards = g_ptr_array_new_with_free_func ((GDestroyNotify) shard_unref);
  s->directory = g_build_filename (store->directory, id, NULL);
  return s;
}

static gboolean
stream_open_shard (StreamStore *store, Stream *stream, StreamShardInfo *info, GError **error)
{
  g_autofree char *name = g_strdup_printf ("shard-%u", info->ordinal);
  g_autofree char *dir = g_build_filename (stream->directory, name, NULL);
  g_autofree char *context = g_strconcat ("stream/", stream->info.id, NULL);
  StreamLogOptions options = { dir, info->ordinal, store->keyring, context, 0 };
  Shard *shard = g_new0 (Shard, 1);

  shard->refcount = 1;
  shard->ordinal = info->ordinal;
  shard->durability = stream->info.settings.durability;
  shard->batch_ms = stream->info.settings.batch_ms;
  shard->log = stream_log_open (&options, error);
  if (shard->log == NULL) {
    g_prefix_error (error, "stream %s, %s: ", stream->info.name, info->id);
    g_free (shard);
    return FALSE;
  }
  g_ptr_array_add (stream->shards, shard);
  return TRUE;
}

static Stream *
store_find (StreamStore *store, const char *name, GError **error)
{
  Stream *s = name ? g_hash_table_lookup (store->streams, name) : NULL;
  if (s == NULL)
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_NOT_FOUND, "stream %s not found",
                 name ? name : "(none)");
  return s;
}

static Shard *
stream_shard (Stream *stream, guint32 ordinal, GError **error)
{
  if (ordinal >= stream->shards->len) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_NOT_FOUND, "stream %s has no shard %u",
                 stream->info.name, ordinal);
    return NULL;
  }
  return g_ptr_array_index (stream->shards, ordinal);
}

/* ---- SQL helpers ---- */

static gboolean
sql_error (StreamStore *store, GError **error)
{
  g_set_error (error, STREAM_ERROR, STREAM_ERROR_IO, "state database: %s",
               sqlite3_errmsg (edge_state_db (store->state)));
  return FALSE;
}

static gboolean
sql_exec (StreamStore *store, const char *sql, GError **error)
{
  if (sqlite3_exec (edge_state_db (store->state), sql, NULL, NULL, NULL) != SQLITE_OK)
    return sql_error (store, error);
  return TRUE;
}

static sqlite3_stmt *
sql_prepare (StreamStore *store, const char *sql)
{
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (edge_state_db (store->state), sql, -1, &stmt, NULL) != SQLITE_OK)
    return NULL;
  return stmt;
}

static gboolean
store_load (StreamStore *store, GError **error)
{
  sqlite3_stmt *st = sql_prepare (store, "SELECT id, name, created_ms, durability, batch_ms,"
                                         " retention_hours, retention_bytes, max_record_bytes"
                                         " FROM streams");
  sqlite3_stmt *sh = sql_prepare (store, "SELECT ordinal, shard_id, start_hash, end_hash, parent,"
                                         " adjacent_parent, closed FROM shards"
                                         " WHERE stream_id = ? ORDER BY ordinal");
  sqlite3_stmt *tg = sql_prepare (store, "SELECT key, value FROM stream_tags WHERE stream_id = ?");
  gboolean ok = st && sh && tg;

  if (!ok)
    sql_error (store, error);
  while (ok && sqlite3_step (st) == SQLITE_ROW) {
    Stream *s = stream_new (store, (const char *) sqlite3_column_text (st, 1),
                            (const char *) sqlite3_column_text (st, 0));
    s->info.created_ms = sqlite3_column_int64 (st, 2);
    const char *durability = (const char *) sqlite3_column_text (st, 3);
    for (guint i = 0; i < G_N_ELEMENTS (durability_names); i++)
      if (g_str_equal (durability, durability_names[i]))
        s->info.settings.durability = (StreamDurability) i;
    s->info.settings.batch_ms = (guint) sqlite3_column_int64 (st, 4);
    s->info.settings.retention_hours = (guint) sqlite3_column_int64 (st, 5);
    s->info.settings.retention_bytes = (guint64) sqlite3_column_int64 (st, 6);
    s->info.settings.max_record_bytes = (guint64) sqlite3_column_int64 (st, 7);

    sqlite3_reset (sh);
    sqlite3_bind_text (sh, 1, s->info.id, -1, SQLITE_TRANSIENT);
    while (ok && sqlite3_step (sh) == SQLITE_ROW) {
      StreamShardInfo *info = g_new0 (StreamShardInfo, 1);
      info->ordinal = (guint32) sqlite3_column_int64 (sh, 0);
      info->id = g_strdup ((const char *) sqlite3_column_text (sh, 1));
      if (sqlite3_column_bytes (sh, 2) == 16)
        memcpy (info->start.bytes, sqlite3_column_blob (sh, 2), 16);
      if (sqlite3_column_bytes (sh, 3) == 16)
        memcpy (info->end.bytes, sqlite3_column_blob (sh, 3), 16);
      info->parent = g_strdup ((const char *) sqlite3_column_text (sh, 4));
      info->adjacent_parent = g_strdup ((const char *) sqlite3_column_text (sh, 5));
      info->closed = sqlite3_column_int (sh, 6) != 0;
      g_ptr_array_add (s->info.shards, info);
      ok = stream_open_shard (store, s, info, error);
      if (ok && info->closed)
        ((Shard *) g_ptr_array_index (s->shards, s->shards->len - 1))->sealed = TRUE;
    }
    sqlite3_reset (tg);
    sqlite3_bind_text (tg, 1, s->info.id, -1, SQLITE_TRANSIENT);
    while (ok && sqlite3_step (tg) == SQLITE_ROW)
      g_hash_table_insert (s->info.tags, g_strdup ((const char *) sqlite3_column_text (tg, 0)),
                           g_strdup ((const char *) sqlite3_column_text (tg, 1)));
    g_hash_table_insert (store->streams, s->info.name, s);
  }
  sqlite3_finalize (st);
  sqlite3_finalize (sh);
  sqlite3_finalize (tg);
  return ok;
}

/* ---- the writer thread ---- */

static void
bytes_unref_nullable (gpointer bytes)
{
  if (bytes)
    g_bytes_unref (bytes);
}

static void
job_free (Job *job)
{
  if (job->shard)
    shard_unref (job->shard);
  if (job->keys)
    g_ptr_array_unref (job->keys);
  if (job->data)
    g_ptr_array_unref (job->data);
  if (job->attributes)
    g_ptr_array_unref (job->attributes);
  if (job->indexes)
    g_array_unref (job->indexes);
  g_free (job);
}

static void
put_request_free (PutRequest *request)
{
  for (guint i = 0; i < request->n; i++)
    g_clear_error (&request->results[i].error);
  g_free (request->results);
  g_free (request->stream);
  g_free (request);
}

static void
watch_free (gpointer data)
{
  Watch *w = data;
  g_free (w->stream);
  g_free (w);
}

guint
stream_store_watch (StreamStore *store, const char *name, StreamWatchFunc func, gpointer user_data)
{
  Watch *w = g_new0 (Watch, 1);
  w->id = ++store->next_watch;
  w->stream = g_strdup (name);
  w->func = func;
  w->user_data = user_data;
  g_ptr_array_add (store->watches, w);
  return w->id;
}

void
stream_store_unwatch (StreamStore *store, guint id)
{
  for (guint i = 0; i < store->watches->len; i++) {
    if (((Watch *) g_ptr_array_index (store->watches, i))->id == id) {
      g_ptr_array_remove_index (store->watches, i);
      return;
    }
  }
}

static void notify_watchers (StreamStore *store, const char *stream, guint32 ordinal,
                             guint64 next);

static gboolean
put_request_complete (gpointer data)
{
  PutRequest *request = data;
  StreamStore *store = request->store;
  request->func (request->results, request->n, request->user_data);

  /* Tell the watchers of this stream which shards grew. */
  if (store->watches->len > 0 && g_hash_table_contains (store->streams, request->stream)) {
    Stream *s = g_hash_table_lookup (store->streams, request->stream);
    g_autofree gboolean *grew = g_new0 (gboolean, s->shards->len);
    for (guint i = 0; i < request->n; i++)
      if (request->results[i].error == NULL && request->results[i].shard_ordinal < s->shards->len)
        grew[request->results[i].shard_ordinal] = TRUE;
    for (guint o = 0; o < s->shards->len; o++)
      if (grew[o])
        notify_watchers (store, request->stream, o,
                         stream_log_next_number (((Shard *) g_ptr_array_index (s->shards, o))->log));
  }
  put_request_free (request);
  return G_SOURCE_REMOVE;
}

static void
job_finish (StreamStore *store, Job *job, const GError *error, guint64 first)
{
  PutRequest *request = job->request;
  for (guint i = 0; i < job->indexes->len; i++) {
    StreamPutResult *r = &request->results[g_array_index (job->indexes, guint, i)];
    r->shard_ordinal = job->shard->ordinal;
    if (error)
      r->error = g_error_copy (error);
    else
      r->number = first + i;
  }
  if (g_atomic_int_dec_and_test (&request->pending))
    g_main_context_invoke (store->context, put_request_complete, request);
}

static gpointer
writer_main (gpointer data)
{
  StreamStore *store = data;
  gboolean stop = FALSE;
  g_autoptr (GPtrArray) jobs = g_ptr_array_new ();
  g_autoptr (GArray) firsts = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autoptr (GPtrArray) errors = g_ptr_array_new ();

  while (!stop) {
    Job *job = g_async_queue_pop (store->queue);
    gint64 deadline = 0;

    g_ptr_array_set_size (jobs, 0);
    do {
      g_ptr_array_add (jobs, job);
      if (job->kind == JOB_APPEND && job->shard->durability == STREAM_DURABILITY_BATCH &&
          deadline == 0)
        deadline = g_get_monotonic_time () + (gint64) job->shard->batch_ms * 1000;
      if (job->kind != JOB_APPEND || jobs->len >= WRITER_MAX_JOBS_PER_ROUND)
        break;
      if (deadline) {
        gint64 left = deadline - g_get_monotonic_time ();
        job = left > 0 ? g_async_queue_timeout_pop (store->queue, (guint64) left) : NULL;
      } else {
        job = g_async_queue_try_pop (store->queue);
      }
    } while (job != NULL);

    /* Append everything, then sync each touched shard once. */
    g_array_set_size (firsts, jobs->len);
    g_ptr_array_set_size (errors, jobs->len);
    g_autoptr (GHashTable) touched = g_hash_table_new (NULL, NULL);
    for (guint i = 0; i < jobs->len; i++) {
      Job *j = g_ptr_array_index (jobs, i);
      GError *error = NULL;
      g_ptr_array_index (errors, i) = NULL;
      if (j->kind != JOB_APPEND)
        continue;
      if (!stream_log_append (j->shard->log, (const char *const *) j->keys->pdata,
                              (GBytes *const *) j->data->pdata,
                              j->attributes ? (GBytes *const *) j->attributes->pdata : NULL,
                              j->keys->len, j->arrival_ms,
                              &g_array_index (firsts, guint64, i), &error))
        g_ptr_array_index (errors, i) = error;
      else if (j->shard->durability != STREAM_DURABILITY_NONE)
        g_hash_table_add (touched, j->shard);
    }
    GHashTableIter iter;
    gpointer key;
    g_autoptr (GHashTable) sync_failed = g_hash_table_new_full (NULL, NULL, NULL,
                                                               (GDestroyNotify) g_error_free);
    g_hash_table_iter_init (&iter, touched);
    while (g_hash_table_iter_next (&iter, &key, NULL)) {
      Shard *shard = key;
      GError *error = NULL;
      if (!stream_log_sync (shard->log, &error))
        g_hash_table_insert (sync_failed, shard, error);
    }

    for (guint i = 0; i < jobs->len; i++) {
      Job *j = g_ptr_array_index (jobs, i);
      GError *error = g_ptr_array_index (errors, i);
      switch (j->kind) {
      case JOB_APPEND: {
        const GError *failure = error ? error : g_hash_table_lookup (sync_failed, j->shard);
        job_finish (store, j, failure, g_array_index (firsts, guint64, i));
        g_clear_error (&error);
        break;
      }
      case JOB_BARRIER:
        j->barrier (j->barrier_data, NULL);
        break;
      case JOB_STOP:
        stop = TRUE;
        break;
      }
      job_free (j);
    }
  }
  return NULL;
}

static void
store_push_barrier (StreamStore *store, GFunc func, gpointer data)
{
  Job *job = g_new0 (Job, 1);
  job->kind = JOB_BARRIER;
  job->barrier = func;
  job->barrier_data = data;
  g_async_queue_push (store->queue, job);
}

/* ---- lifecycle ---- */

static gboolean
retention_tick (gpointer data)
{
  stream_store_apply_retention (data);
  return G_SOURCE_CONTINUE;
}

static void space_reserve_restore (const char *store_directory);

StreamStore *
stream_store_open (const char *directory, EdgeState *state, EdgeKeyring *keyring, GError **error)
{
  StreamStore *store = g_new0 (StreamStore, 1);
  store->directory = g_strdup (directory);
  store->state = state;
  store->keyring = keyring;
  store->context = g_main_context_ref_thread_default ();
  store->streams = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, stream_free);
  store->queue = g_async_queue_new ();
  store->watches = g_ptr_array_new_with_free_func (watch_free);

  if (g_mkdir_with_parents (directory, 0700) != 0) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_IO, "cannot create %s: %s", directory,
                 g_strerror (errno));
    stream_store_close (store);
    return NULL;
  }
  if (!edge_state_migrate (state, "stream", stream_schema, G_N_ELEMENTS (stream_schema), error) ||
      !store_load (store, error)) {
    stream_store_close (store);
    return NULL;
  }
  space_reserve_restore (store->directory);
  store->writer = g_thread_new ("stream-writer", writer_main, store);
  store->retention_timer = g_timeout_add_seconds (RETENTION_INTERVAL_S, retention_tick, store);
  return store;
}

void
stream_store_close (StreamStore *store)
{
  if (store == NULL)
    return;
  if (store->retention_timer)
    g_source_remove (store->retention_timer);
  if (store->writer) {
    Job *stop = g_new0 (Job, 1);
    stop->kind = JOB_STOP;
    g_async_queue_push (store->queue, stop);
    g_thread_join (store->writer);
    /* Deliver the acknowledgements the writer queued for this context. */
    while (g_main_context_iteration (store->context, FALSE))
      ;
  }
  g_hash_table_unref (store->streams);
  g_ptr_array_unref (store->watches);
  g_async_queue_unref (store->queue);
  g_main_context_unref (store->context);
  g_free (store->directory);
  g_free (store);
}

/* ---- streams ---- */

static int
remove_entry (const char *path, const struct stat *st, int type, struct FTW *ftw)
{
  return type == FTW_DP ? rmdir (path) : unlink (path);
}

static void
remove_tree (gpointer data, gpointer unused)
{
  char *directory = data;
  nftw (directory, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  g_free (directory);
}

/* (Re)creates the reserve file; best effort (a full disk has no room for it). */
static void
space_reserve_restore (const char *store_directory)
{
  g_autofree char *path = g_build_filename (store_directory, ".space-reserve", NULL);
  int fd = open (path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return;
  if (posix_fallocate (fd, 0, SPACE_RESERVE_BYTES) != 0)
    unlink (path); /* a partial reserve would only mislead */
  close (fd);
}

static void
space_reserve_release (const char *store_directory)
{
  g_autofree char *path = g_build_filename (store_directory, ".space-reserve", NULL);
  unlink (path);
}

typedef struct {
  char *stream_directory;
  char *store_directory;
} RemoveJob;

/* Writer thread: the stream's files go, then the reserve comes back. */
static void
remove_stream_files (gpointer data, gpointer unused)
{
  RemoveJob *job = data;
  remove_tree (job->stream_directory, NULL);
  space_reserve_restore (job->store_directory);
  g_free (job->store_directory);
  g_free (job);
}


static gboolean
valid_stream_name (const char *name)
{
  gsize len = strlen (name);
  if (len == 0 || len > STREAM_NAME_MAX)
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '_' && *p != '-' && *p != '.')
      return FALSE;
  return TRUE;
}

static gboolean
check_settings (const StreamSettings *s, GError **error)
{
  if (s->retention_hours < STREAM_RETENTION_MIN_HOURS ||
      s->retention_hours > STREAM_RETENTION_MAX_HOURS) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID,
                 "retention must be %d to %d hours, got %u", STREAM_RETENTION_MIN_HOURS,
                 STREAM_RETENTION_MAX_HOURS, s->retention_hours);
    return FALSE;
  }
  if (s->max_record_bytes < 1024 || s->max_record_bytes > STREAM_RECORD_HARD_MAX_BYTES) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID,
                 "the record size limit must be 1 KiB to 10 MiB");
    return FALSE;
  }
  if (s->durability == STREAM_DURABILITY_BATCH && (s->batch_ms == 0 || s->batch_ms > 10000)) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID, "batch_ms must be 1 to 10000");
    return FALSE;
  }
  return TRUE;
}

gboolean
stream_store_create (StreamStore *store, const char *name, guint shard_count,
                     const StreamSettings *settings, GError **error)
{
  StreamSettings defaults;
  g_autofree char *id = edge_uuid_random ();
  Stream *s;
  sqlite3_stmt *stmt;

  if (settings == NULL) {
    stream_settings_init (&defaults);
    settings = &defaults;
  }
  if (!valid_stream_name (name)) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID,
                 "stream names are 1 to %d characters of a-z, A-Z, 0-9, _ - and .",
                 STREAM_NAME_MAX);
    return FALSE;
  }
  if (shard_count == 0 || shard_count > STREAM_MAX_SHARDS) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_LIMIT, "a stream has 1 to %d shards, not %u",
                 STREAM_MAX_SHARDS, shard_count);
    return FALSE;
  }
  if (!check_settings (settings, error))
    return FALSE;
  if (g_hash_table_contains (store->streams, name)) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_EXISTS, "stream %s already exists", name);
    return FALSE;
  }

  s = stream_new (store, name, id);
  s->info.created_ms = g_get_real_time () / 1000;
  s->info.settings = *settings;
  for (guint i = 0; i < shard_count; i++) {
    StreamShardInfo *info = g_new0 (StreamShardInfo, 1);
    info->ordinal = i;
    info->id = g_strdup_printf ("shardId-%012u", i);
    stream_hash_key_range (i, shard_count, &info->start, &info->end);
    g_ptr_array_add (s->info.shards, info);
  }

  if (!sql_exec (store, "BEGIN IMMEDIATE;", error))
    goto fail;
  stmt = sql_prepare (store, "INSERT INTO streams VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  if (stmt == NULL)
    goto rollback;
  sqlite3_bind_text (stmt, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (stmt, 3, s->info.created_ms);
  sqlite3_bind_text (stmt, 4, durability_names[settings->durability], -1, SQLITE_STATIC);
  sqlite3_bind_int64 (stmt, 5, settings->batch_ms);
  sqlite3_bind_int64 (stmt, 6, settings->retention_hours);
  sqlite3_bind_int64 (stmt, 7, (gint64) settings->retention_bytes);
  sqlite3_bind_int64 (stmt, 8, (gint64) settings->max_record_bytes);
  gboolean ok = sqlite3_step (stmt) == SQLITE_DONE;
  sqlite3_finalize (stmt);
  if (!ok)
    goto rollback;
  stmt = sql_prepare (store, "INSERT INTO shards (stream_id, ordinal, shard_id, start_hash, end_hash)"
                             " VALUES (?, ?, ?, ?, ?)");
  if (stmt == NULL)
    goto rollback;
  for (guint i = 0; i < shard_count && ok; i++) {
    StreamShardInfo *info = g_ptr_array_index (s->info.shards, i);
    sqlite3_reset (stmt);
    sqlite3_bind_text (stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 2, i);
    sqlite3_bind_text (stmt, 3, info->id, -1, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, 4, info->start.bytes, 16, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, 5, info->end.bytes, 16, SQLITE_STATIC);
    ok = sqlite3_step (stmt) == SQLITE_DONE;
  }
  sqlite3_finalize (stmt);
  if (!ok)
    goto rollback;
  for (guint i = 0; i < shard_count; i++)
    if (!stream_open_shard (store, s, g_ptr_array_index (s->info.shards, i), error))
      goto rollback_quiet;
  if (!sql_exec (store, "COMMIT;", error))
    goto rollback_quiet;
  g_hash_table_insert (store->streams, s->info.name, s);
  return TRUE;

rollback:
  sql_error (store, error);
rollback_quiet:
  sql_exec (store, "ROLLBACK;", NULL);
fail:
  {
    char *directory = g_strdup (s->directory);
    stream_free (s); /* closes the shard logs first */
    remove_tree (directory, NULL);
  }
  return FALSE;
}

gboolean
stream_store_delete (StreamStore *store, const char *name, GError **error)
{
  Stream *s = store_find (store, name, error);
  sqlite3_stmt *stmt;
  if (s == NULL)
    return FALSE;
  gboolean ok = FALSE;
  for (int attempt = 0; attempt < 2 && !ok; attempt++) {
    stmt = sql_prepare (store, "DELETE FROM streams WHERE id = ?");
    if (stmt == NULL && attempt == 0) {
      space_reserve_release (store->directory);
      continue;
    }
    if (stmt == NULL)
      break;
    sqlite3_bind_text (stmt, 1, s->info.id, -1, SQLITE_STATIC);
    int rc = sqlite3_step (stmt);
    sqlite3_finalize (stmt);
    ok = rc == SQLITE_DONE;
    /* A full disk: give back the reserve, which is there for this, and try again. */
    if (!ok && (rc == SQLITE_FULL || rc == SQLITE_IOERR))
      space_reserve_release (store->directory);
    else if (!ok)
      break;
  }
  if (!ok)
    return sql_error (store, error);
  /* The files go after every append queued before this delete. */
  RemoveJob *job = g_new0 (RemoveJob, 1);
  job->stream_directory = g_strdup (s->directory);
  job->store_directory = g_strdup (store->directory);
  store_push_barrier (store, remove_stream_files, job);
  g_hash_table_remove (store->streams, name);
  return TRUE;
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

GPtrArray *
stream_store_list (StreamStore *store)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  GHashTableIter iter;
  gpointer key;
  g_hash_table_iter_init (&iter, store->streams);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (names, g_strdup (key));
  g_ptr_array_sort (names, compare_strings);
  return names;
}

const StreamInfo *
stream_store_lookup (StreamStore *store, const char *name, GError **error)
{
  Stream *s = store_find (store, name, error);
  return s ? &s->info : NULL;
}

gboolean
stream_store_set_retention (StreamStore *store, const char *name, guint hours, GError **error)
{
  Stream *s = store_find (store, name, error);
  StreamSettings settings;
  sqlite3_stmt *stmt;
  if (s == NULL)
    return FALSE;
  settings = s->info.settings;
  settings.retention_hours = hours;
  if (!check_settings (&settings, error))
    return FALSE;
  stmt = sql_prepare (store, "UPDATE streams SET retention_hours = ? WHERE id = ?");
  if (stmt == NULL)
    return sql_error (store, error);
  sqlite3_bind_int64 (stmt, 1, hours);
  sqlite3_bind_text (stmt, 2, s->info.id, -1, SQLITE_STATIC);
  gboolean ok = sqlite3_step (stmt) == SQLITE_DONE;
  sqlite3_finalize (stmt);
  if (!ok)
    return sql_error (store, error);
  s->info.settings.retention_hours = hours;
  return TRUE;
}

gboolean
stream_store_set_retention_bytes (StreamStore *store, const char *name, guint64 bytes,
                                  GError **error)
{
  Stream *s = store_find (store, name, error);
  if (s == NULL)
    return FALSE;
  if (bytes > G_MAXINT64) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID, "retention of %" G_GUINT64_FORMAT
                 " bytes is out of range", bytes);
    return FALSE;
  }
  sqlite3_stmt *stmt = sql_prepare (store, "UPDATE streams SET retention_bytes = ? WHERE id = ?");
  if (stmt == NULL)
    return sql_error (store, error);
  sqlite3_bind_int64 (stmt, 1, (gint64) bytes);
  sqlite3_bind_text (stmt, 2, s->info.id, -1, SQLITE_STATIC);
  gboolean ok = sqlite3_step (stmt) == SQLITE_DONE;
  sqlite3_finalize (stmt);
  if (!ok)
    return sql_error (store, error);
  s->info.settings.retention_bytes = bytes;
  return TRUE;
}

gboolean
stream_store_set_write_limit (StreamStore *store, const char *name, const StreamWriteLimit *limit,
                              GError **error)
{
  Stream *s = store_find (store, name, error);
  if (s == NULL)
    return FALSE;
  s->limit = *limit;
  for (guint i = 0; i < s->shards->len; i++)
    ((Shard *) g_ptr_array_index (s->shards, i))->filled_us = 0; /* full buckets */
  return TRUE;
}

gboolean
stream_store_set_tags (StreamStore *store, const char *name, GHashTable *add,
                       const char *const *remove, GError **error)
{
  Stream *s = store_find (store, name, error);
  sqlite3_stmt *put, *del;
  gboolean ok = TRUE;
  if (s == NULL)
    return FALSE;
  if (!sql_exec (store, "BEGIN IMMEDIATE;", error))
    return FALSE;
  put = sql_prepare (store, "INSERT INTO stream_tags VALUES (?, ?, ?)"
                            " ON CONFLICT (stream_id, key) DO UPDATE SET value = excluded.value");
  del = sql_prepare (store, "DELETE FROM stream_tags WHERE stream_id = ? AND key = ?");
  ok = put && del;
  if (add) {
    GHashTableIter iter;
    gpointer k, v;
    g_hash_table_iter_init (&iter, add);
    while (ok && g_hash_table_iter_next (&iter, &k, &v)) {
      sqlite3_reset (put);
      sqlite3_bind_text (put, 1, s->info.id, -1, SQLITE_STATIC);
      sqlite3_bind_text (put, 2, k, -1, SQLITE_STATIC);
      sqlite3_bind_text (put, 3, v, -1, SQLITE_STATIC);
      ok = sqlite3_step (put) == SQLITE_DONE;
    }
  }
  for (guint i = 0; ok && remove && remove[i]; i++) {
    sqlite3_reset (del);
    sqlite3_bind_text (del, 1, s->info.id, -1, SQLITE_STATIC);
    sqlite3_bind_text (del, 2, remove[i], -1, SQLITE_STATIC);
    ok = sqlite3_step (del) == SQLITE_DONE;
  }
  sqlite3_finalize (put);
  sqlite3_finalize (del);
  if (!ok) {
    sql_error (store, error);
    sql_exec (store, "ROLLBACK;", NULL);
    return FALSE;
  }
  if (!sql_exec (store, "COMMIT;", error))
    return FALSE;
  if (add) {
    GHashTableIter iter;
    gpointer k, v;
    g_hash_table_iter_init (&iter, add);
    while (g_hash_table_iter_next (&iter, &k, &v))
      g_hash_table_insert (s->info.tags, g_strdup (k), g_strdup (v));
  }
  for (guint i = 0; remove && remove[i]; i++)
    g_hash_table_remove (s->info.tags, remove[i]);
  return TRUE;
}

gboolean
stream_store_shard_range (StreamStore *store, const char *name, guint32 ordinal,
                          guint64 *ret_first, guint64 *ret_next, GError **error)
{
  Stream *s = store_find (store, name, error);
  Shard *shard = s ? stream_shard (s, ordinal, error) : NULL;
  if (shard == NULL)
    return FALSE;
  if (ret_first)
    *ret_first = stream_log_first_number (shard->log);
  if (ret_next)
    *ret_next = stream_log_next_number (shard->log);
  return TRUE;
}

gboolean
stream_store_shard_bytes (StreamStore *store, const char *name, guint32 ordinal, guint64 *ret_bytes,
                          GError **error)
{
  Stream *s = store_find (store, name, error);
  Shard *shard = s ? stream_shard (s, ordinal, error) : NULL;
  if (shard == NULL)
    return FALSE;
  *ret_bytes = stream_log_size (shard->log);
  return TRUE;
}

gboolean
stream_store_shard_find_time (StreamStore *store, const char *name, guint32 ordinal,
                              gint64 arrival_ms, guint64 *ret_number, GError **error)
{
  Stream *s = store_find (store, name, error);
  Shard *shard = s ? stream_shard (s, ordinal, error) : NULL;
  if (shard == NULL)
    return FALSE;
  *ret_number = stream_log_find_time (shard->log, arrival_ms);
  return TRUE;
}

/* ---- registered consumers ---- */

void
stream_consumer_info_free (StreamConsumerInfo *info)
{
  if (info == NULL)
    return;
  g_free (info->name);
  g_free (info);
}

static gboolean
valid_consumer_name (const char *name)
{
  gsize len = strlen (name);
  if (len == 0 || len > 128)
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '_' && *p != '-' && *p != '.')
      return FALSE;
  return TRUE;
}

GPtrArray *
stream_store_list_consumers (StreamStore *store, const char *name, GError **error)
{
  Stream *s = store_find (store, name, error);
  sqlite3_stmt *stmt;
  if (s == NULL)
    return NULL;
  stmt = sql_prepare (store, "SELECT name, created_ms FROM stream_consumers WHERE stream_id = ?"
                             " ORDER BY name");
  if (stmt == NULL) {
    sql_error (store, error);
    return NULL;
  }
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_consumer_info_free);
  sqlite3_bind_text (stmt, 1, s->info.id, -1, SQLITE_STATIC);
  while (sqlite3_step (stmt) == SQLITE_ROW) {
    StreamConsumerInfo *c = g_new0 (StreamConsumerInfo, 1);
    c->name = g_strdup ((const char *) sqlite3_column_text (stmt, 0));
    c->created_ms = sqlite3_column_int64 (stmt, 1);
    g_ptr_array_add (out, c);
  }
  sqlite3_finalize (stmt);
  return out;
}

gboolean
stream_store_register_consumer (StreamStore *store, const char *name, const char *consumer,
                                GError **error)
{
  g_autoptr (GPtrArray) existing = stream_store_list_consumers (store, name, error);
  Stream *s = store_find (store, name, NULL);
  sqlite3_stmt *stmt;
  if (existing == NULL)
    return FALSE;
  if (!valid_consumer_name (consumer)) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID,
                 "consumer names are 1 to 128 characters of a-z, A-Z, 0-9, _ - and .");
    return FALSE;
  }
  for (guint i = 0; i < existing->len; i++) {
    if (g_str_equal (((StreamConsumerInfo *) g_ptr_array_index (existing, i))->name, consumer)) {
      g_set_error (error, STREAM_ERROR, STREAM_ERROR_EXISTS, "consumer %s of stream %s exists",
                   consumer, name);
      return FALSE;
    }
  }
  if (existing->len >= STREAM_MAX_CONSUMERS) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_LIMIT, "a stream has at most %d consumers",
                 STREAM_MAX_CONSUMERS);
    return FALSE;
  }
  stmt = sql_prepare (store, "INSERT INTO stream_consumers VALUES (?, ?, ?)");
  if (stmt == NULL)
    return sql_error (store, error);
  sqlite3_bind_text (stmt, 1, s->info.id, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, consumer, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (stmt, 3, g_get_real_time () / 1000);
  gboolean ok = sqlite3_step (stmt) == SQLITE_DONE;
  sqlite3_finalize (stmt);
  return ok ? TRUE : sql_error (store, error);
}

gboolean
stream_store_deregister_consumer (StreamStore *store, const char *name, const char *consumer,
                                  GError **error)
{
  Stream *s = store_find (store, name, error);
  sqlite3_stmt *stmt;
  if (s == NULL)
    return FALSE;
  stmt = sql_prepare (store, "DELETE FROM stream_consumers WHERE stream_id = ? AND name = ?");
  if (stmt == NULL)
    return sql_error (store, error);
  sqlite3_bind_text (stmt, 1, s->info.id, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, consumer, -1, SQLITE_STATIC);
  gboolean ok = sqlite3_step (stmt) == SQLITE_DONE;
  sqlite3_finalize (stmt);
  if (!ok)
    return sql_error (store, error);
  if (sqlite3_changes (edge_state_db (store->state)) == 0) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_NOT_FOUND, "consumer %s of stream %s not found",
                 consumer, name);
    return FALSE;
  }
  return TRUE;
}

gboolean
stream_store_get_checkpoint (StreamStore *store, const char *name, const char *consumer,
                             guint32 ordinal, guint64 *ret_next)
{
  Stream *s = store_find (store, name, NULL);
  sqlite3_stmt *stmt;
  gboolean found = FALSE;
  if (s == NULL)
    return FALSE;
  stmt = sql_prepare (store, "SELECT next_number FROM stream_checkpoints"
                             " WHERE stream_id = ? AND consumer = ? AND ordinal = ?");
  if (stmt == NULL)
    return FALSE;
  sqlite3_bind_text (stmt, 1, s->info.id, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, consumer, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (stmt, 3, ordinal);
  if (sqlite3_step (stmt) == SQLITE_ROW) {
    *ret_next = (guint64) sqlite3_column_int64 (stmt, 0);
    found = TRUE;
  }
  sqlite3_finalize (stmt);
  return found;
}

gboolean
stream_store_set_checkpoint (StreamStore *store, const char *name, const char *consumer,
                             guint32 ordinal, guint64 next, GError **error)
{
  Stream *s = store_find (store, name, error);
  sqlite3_stmt *stmt;
  if (s == NULL)
    return FALSE;
  stmt = sql_prepare (store, "INSERT INTO stream_checkpoints VALUES (?, ?, ?, ?)"
                             " ON CONFLICT (stream_id, consumer, ordinal)"
                             " DO UPDATE SET next_number = excluded.next_number");
  if (stmt == NULL)
    return sql_error (store, error);
  sqlite3_bind_text (stmt, 1, s->info.id, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, consumer, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (stmt, 3, ordinal);
  sqlite3_bind_int64 (stmt, 4, (gint64) next);
  gboolean ok = sqlite3_step (stmt) == SQLITE_DONE;
  sqlite3_finalize (stmt);
  return ok ? TRUE : sql_error (store, error);
}

/* ---- resharding ---- */

typedef struct {
  StreamStore *store;
  char *stream;
  GPtrArray *shards; /* Shard *, referenced */
} SealJob;

static void
seal_job_free (SealJob *job)
{
  g_ptr_array_unref (job->shards);
  g_free (job->stream);
  g_free (job);
}

static void
notify_watchers (StreamStore *store, const char *stream, guint32 ordinal, guint64 next)
{
  /* A watcher may unwatch from its callback: walk a copy of the ids. */
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint));
  for (guint i = 0; i < store->watches->len; i++) {
    Watch *w = g_ptr_array_index (store->watches, i);
    if (g_str_equal (w->stream, stream))
      g_array_append_val (ids, w->id);
  }
  for (guint k = 0; k < ids->len; k++) {
    for (guint i = 0; i < store->watches->len; i++) {
      Watch *w = g_ptr_array_index (store->watches, i);
      if (w->id == g_array_index (ids, guint, k)) {
        w->func (stream, ordinal, next, w->user_data);
        break;
      }
    }
  }
}

/* On the main context: readers waiting at the end of a sealed shard may
 * now move on to its children. */
static gboolean
sealed_notify (gpointer data)
{
  SealJob *job = data;
  if (g_hash_table_contains (job->store->streams, job->stream)) {
    for (guint i = 0; i < job->shards->len; i++) {
      Shard *shard = g_ptr_array_index (job->shards, i);
      notify_watchers (job->store, job->stream, shard->ordinal, stream_log_next_number (shard->log));
    }
  }
  seal_job_free (job);
  return G_SOURCE_REMOVE;
}

static void
seal_shards (gpointer data, gpointer unused)
{
  SealJob *job = data;
  for (guint i = 0; i < job->shards->len; i++)
    g_atomic_int_set (&((Shard *) g_ptr_array_index (job->shards, i))->sealed, TRUE);
  g_main_context_invoke (job->store->context, sealed_notify, job);
}

gboolean
stream_store_shard_sealed (StreamStore *store, const char *name, guint32 ordinal)
{
  Stream *s = store_find (store, name, NULL);
  Shard *shard = s ? stream_shard (s, ordinal, NULL) : NULL;
  return shard != NULL && g_atomic_int_get (&shard->sealed);
}

gboolean
stream_store_reshard (StreamStore *store, const char *name, const guint32 *close, guint n_close,
                      const StreamNewShard *new_shards, guint n_new, GError **error)
{
  Stream *s = store_find (store, name, error);
  guint open = 0, first_new;
  sqlite3_stmt *stmt = NULL;
  gboolean ok = TRUE;

  if (s == NULL)
    return FALSE;
  for (guint i = 0; i < s->info.shards->len; i++)
    open += !((StreamShardInfo *) g_ptr_array_index (s->info.shards, i))->closed;
  for (guint i = 0; i < n_close; i++) {
    if (close[i] >= s->info.shards->len ||
        ((StreamShardInfo *) g_ptr_array_index (s->info.shards, close[i]))->closed) {
      g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID, "shard %u of %s is not open",
                   close[i], name);
      return FALSE;
    }
  }
  if (open - n_close + n_new > STREAM_MAX_SHARDS ||
      s->info.shards->len + n_new > STREAM_MAX_SHARD_IDS) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_LIMIT,
                 "a stream has at most %d open shards and %d shards over its life",
                 STREAM_MAX_SHARDS, STREAM_MAX_SHARD_IDS);
    return FALSE;
  }

  if (!sql_exec (store, "BEGIN IMMEDIATE;", error))
    return FALSE;
  stmt = sql_prepare (store, "UPDATE shards SET closed = 1 WHERE stream_id = ? AND ordinal = ?");
  ok = stmt != NULL;
  for (guint i = 0; ok && i < n_close; i++) {
    sqlite3_reset (stmt);
    sqlite3_bind_text (stmt, 1, s->info.id, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 2, close[i]);
    ok = sqlite3_step (stmt) == SQLITE_DONE;
  }
  sqlite3_finalize (stmt);
  stmt = ok ? sql_prepare (store, "INSERT INTO shards (stream_id, ordinal, shard_id, start_hash,"
                                  " end_hash, parent, adjacent_parent) VALUES (?, ?, ?, ?, ?, ?, ?)")
            : NULL;
  ok = ok && stmt != NULL;
  first_new = s->info.shards->len;
  for (guint i = 0; ok && i < n_new; i++) {
    guint32 ordinal = first_new + i;
    g_autofree char *id = g_strdup_printf ("shardId-%012u", ordinal);
    sqlite3_reset (stmt);
    sqlite3_bind_text (stmt, 1, s->info.id, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 2, ordinal);
    sqlite3_bind_text (stmt, 3, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob (stmt, 4, new_shards[i].start.bytes, 16, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, 5, new_shards[i].end.bytes, 16, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 6, new_shards[i].parent, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 7, new_shards[i].adjacent_parent, -1, SQLITE_STATIC);
    ok = sqlite3_step (stmt) == SQLITE_DONE;
  }
  sqlite3_finalize (stmt);
  if (!ok) {
    sql_error (store, error);
    sql_exec (store, "ROLLBACK;", NULL);
    return FALSE;
  }
  /* Open the new shards' logs before committing, so that a failure leaves
   * the stream as it was. */
  for (guint i = 0; i < n_new; i++) {
    StreamShardInfo *info = g_new0 (StreamShardInfo, 1);
    info->ordinal = first_new + i;
    info->id = g_strdup_printf ("shardId-%012u", info->ordinal);
    info->start = new_shards[i].start;
    info->end = new_shards[i].end;
    info->parent = g_strdup (new_shards[i].parent);
    info->adjacent_parent = g_strdup (new_shards[i].adjacent_parent);
    g_ptr_array_add (s->info.shards, info);
    if (!stream_open_shard (store, s, info, error)) {
      g_ptr_array_set_size (s->shards, first_new);
      g_ptr_array_set_size (s->info.shards, first_new);
      sql_exec (store, "ROLLBACK;", NULL);
      return FALSE;
    }
  }
  if (!sql_exec (store, "COMMIT;", error)) {
    g_ptr_array_set_size (s->shards, first_new);
    g_ptr_array_set_size (s->info.shards, first_new);
    return FALSE;
  }
  SealJob *seal = g_new0 (SealJob, 1);
  seal->store = store;
  seal->stream = g_strdup (name);
  seal->shards = g_ptr_array_new_with_free_func ((GDestroyNotify) shard_unref);
  for (guint i = 0; i < n_close; i++) {
    ((StreamShardInfo *) g_ptr_array_index (s->info.shards, close[i]))->closed = TRUE;
    g_ptr_array_add (seal->shards, shard_ref (g_ptr_array_index (s->shards, close[i])));
  }
  /* Sealed after every append queued before this point. */
  store_push_barrier (store, seal_shards, seal);
  return TRUE;
}

/* ---- writing ---- */

void
stream_store_set_min_free (StreamStore *store, guint64 bytes)
{
  store->min_free = bytes;
  store->free_checked_us = 0;
}

/* FALSE with STREAM_ERROR_NO_SPACE below the reserve. */
/* Takes one record of @bytes from @shard's buckets, filling them first for
 * the time since they were last filled; FALSE when the shard is over its
 * rate. A record larger than a second's bytes passes on a full bucket and
 * leaves it in debt, so that it is delayed, never refused forever. */
static gboolean
shard_admit (const StreamWriteLimit *limit, Shard *shard, gsize bytes, gint64 now_us)
{
  double records_cap = (double) limit->records_per_second;
  double bytes_cap = (double) limit->bytes_per_second;
  if (records_cap == 0 && bytes_cap == 0)
    return TRUE;
  if (shard->filled_us == 0) {
    shard->record_tokens = records_cap;
    shard->byte_tokens = bytes_cap;
  } else {
    double seconds = (double) (now_us - shard->filled_us) / G_USEC_PER_SEC;
    shard->record_tokens = MIN (records_cap, shard->record_tokens + seconds * records_cap);
    shard->byte_tokens = MIN (bytes_cap, shard->byte_tokens + seconds * bytes_cap);
  }
  shard->filled_us = now_us;
  if ((records_cap > 0 && shard->record_tokens < 1) || (bytes_cap > 0 && shard->byte_tokens <= 0))
    return FALSE;
  if (bytes_cap > 0 && (double) bytes > shard->byte_tokens && shard->byte_tokens < bytes_cap)
    return FALSE;
  shard->record_tokens -= records_cap > 0 ? 1 : 0;
  shard->byte_tokens -= bytes_cap > 0 ? (double) bytes : 0;
  return TRUE;
}

static gboolean
put_request_complete (gpointer data);

static gboolean
check_free_space (StreamStore *store, GError **error)
{
  gint64 now = g_get_monotonic_time ();
  struct statvfs st;
  if (store->min_free == 0)
    return TRUE;
  if (now - store->free_checked_us > G_USEC_PER_SEC) {
    if (statvfs (store->directory, &st) == 0)
      store->free_bytes = (guint64) st.f_bavail * st.f_frsize;
    store->free_checked_us = now;
  }
  if (store->free_bytes < store->min_free) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_NO_SPACE,
                 "the disk holding the streams has %" G_GUINT64_FORMAT " bytes free, below the "
                 "reserve of %" G_GUINT64_FORMAT " (storage.min_free_bytes)",
                 store->free_bytes, store->min_free);
    return FALSE;
  }
  return TRUE;
}

static guint32
route (Stream *s, const StreamHashKey *key)
{
  for (guint i = 0; i < s->info.shards->len; i++) {
    StreamShardInfo *info = g_ptr_array_index (s->info.shards, i);
    if (!info->closed && stream_hash_key_compare (key, &info->start) >= 0 &&
        stream_hash_key_compare (key, &info->end) <= 0)
      return info->ordinal;
  }
  g_assert_not_reached (); /* the open shards cover the key space */
}

/* The ordinal of the stream's only open shard, or -1 when it has several:
 * with one, every key goes there and none needs hashing. */
static gint64
only_open_shard (Stream *s)
{
  gint64 found = -1;
  for (guint i = 0; i < s->info.shards->len; i++) {
    StreamShardInfo *info = g_ptr_array_index (s->info.shards, i);
    if (info->closed)
      continue;
    if (found >= 0)
      return -1;
    found = info->ordinal;
  }
  return found;
}

gboolean
stream_store_put (StreamStore *store, const char *name, const StreamPutRecord *records, guint n,
                  StreamPutFunc func, gpointer user_data, GError **error)
{
  Stream *s = store_find (store, name, error);
  g_autofree Job **jobs = NULL;
  PutRequest *request;
  gint64 now = g_get_real_time () / 1000;
  guint n_jobs = 0;

  if (s == NULL)
    return FALSE;
  if (n == 0) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID, "no records to put");
    return FALSE;
  }
  if (!check_free_space (store, error))
    return FALSE;
  for (guint i = 0; i < n; i++) {
    gsize key_len = strlen (records[i].partition_key);
    if (key_len == 0 || key_len > STREAM_PARTITION_KEY_MAX_BYTES) {
      g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID,
                   "a partition key is 1 to %d bytes", STREAM_PARTITION_KEY_MAX_BYTES);
      return FALSE;
    }
    if (g_bytes_get_size (records[i].data) + key_len > s->info.settings.max_record_bytes) {
      g_set_error (error, STREAM_ERROR, STREAM_ERROR_LIMIT,
                   "a record of %zu bytes (data and partition key) is over this stream's limit "
                   "of %" G_GUINT64_FORMAT " bytes",
                   g_bytes_get_size (records[i].data) + key_len, s->info.settings.max_record_bytes);
      return FALSE;
    }
    if (records[i].attributes &&
        g_bytes_get_size (records[i].attributes) > STREAM_ATTRIBUTES_MAX_BYTES) {
      g_set_error (error, STREAM_ERROR, STREAM_ERROR_LIMIT,
                   "a record's attributes are over %d bytes", STREAM_ATTRIBUTES_MAX_BYTES);
      return FALSE;
    }
  }

  request = g_new0 (PutRequest, 1);
  request->store = store;
  request->stream = g_strdup (name);
  request->results = g_new0 (StreamPutResult, n);
  request->n = n;
  request->func = func;
  request->user_data = user_data;
  jobs = g_new0 (Job *, s->shards->len);
  gint64 now_us = g_get_monotonic_time ();
  gint64 only = only_open_shard (s);
  for (guint i = 0; i < n; i++) {
    gsize key_len = strlen (records[i].partition_key);
    guint32 ordinal;
    if (only >= 0) {
      ordinal = (guint32) only;
    } else {
      StreamHashKey key = records[i].explicit_hash_key ? *records[i].explicit_hash_key
                                                       : stream_hash_key_for_partition_key (
                                                             records[i].partition_key, key_len);
      ordinal = route (s, &key);
    }
    Shard *shard = g_ptr_array_index (s->shards, ordinal);
    if (!shard_admit (&s->limit, shard, g_bytes_get_size (records[i].data) + key_len, now_us)) {
      const StreamShardInfo *info = g_ptr_array_index (s->info.shards, ordinal);
      request->results[i].shard_ordinal = ordinal;
      request->results[i].error =
          g_error_new (STREAM_ERROR, STREAM_ERROR_THROTTLED,
                       "Rate exceeded for shard %s in stream %s under account 000000000000.",
                       info->id, s->info.name);
      continue;
    }
    Job *job = jobs[ordinal];
    if (job == NULL) {
      job = jobs[ordinal] = g_new0 (Job, 1);
      job->kind = JOB_APPEND;
      job->request = request;
      job->shard = shard_ref (g_ptr_array_index (s->shards, ordinal));
      job->keys = g_ptr_array_new_with_free_func (g_free);
      job->data = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
      job->indexes = g_array_new (FALSE, FALSE, sizeof (guint));
      job->arrival_ms = now;
      n_jobs++;
    }
    g_ptr_array_add (job->keys, g_strdup (records[i].partition_key));
    g_ptr_array_add (job->data, g_bytes_ref (records[i].data));
    if (records[i].attributes && job->attributes == NULL) {
      job->attributes = g_ptr_array_new_with_free_func (bytes_unref_nullable);
      g_ptr_array_set_size (job->attributes, (gint) job->keys->len - 1);
    }
    if (job->attributes)
      g_ptr_array_add (job->attributes,
                       records[i].attributes ? g_bytes_ref (records[i].attributes) : NULL);
    g_array_append_val (job->indexes, i);
  }
  request->pending = (gint) n_jobs;
  if (n_jobs == 0) {
    /* Every record was throttled: answer from the loop, never from here. */
    GSource *idle = g_idle_source_new ();
    g_source_set_callback (idle, put_request_complete, request, NULL);
    g_source_attach (idle, store->context);
    g_source_unref (idle);
    return TRUE;
  }
  for (guint i = 0; i < s->shards->len; i++)
    if (jobs[i])
      g_async_queue_push (store->queue, jobs[i]);
  return TRUE;
}

/* ---- reading ---- */

typedef struct {
  Shard *shard;
  guint64 from;
  guint max_records;
  gsize max_bytes;
  guint64 next;
} ReadTask;

static void
read_task_free (ReadTask *t)
{
  shard_unref (t->shard);
  g_free (t);
}

static void
read_in_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  ReadTask *t = data;
  GError *error = NULL;
  GPtrArray *records = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_record_free);
  if (stream_log_read (t->shard->log, t->from, t->max_records, t->max_bytes, records, &t->next,
                       &error))
    g_task_return_pointer (task, records, (GDestroyNotify) g_ptr_array_unref);
  else {
    g_ptr_array_unref (records);
    g_task_return_error (task, error);
  }
}

void
stream_store_read_async (StreamStore *store, const char *name, guint32 ordinal, guint64 from,
                         guint max_records, gsize max_bytes, GAsyncReadyCallback callback,
                         gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (NULL, NULL, callback, user_data);
  GError *error = NULL;
  Stream *s = store_find (store, name, &error);
  Shard *shard = s ? stream_shard (s, ordinal, &error) : NULL;
  if (shard == NULL) {
    g_task_return_error (task, error);
    return;
  }
  ReadTask *t = g_new0 (ReadTask, 1);
  t->shard = shard_ref (shard);
  t->from = from;
  t->max_records = max_records;
  t->max_bytes = max_bytes;
  t->next = from;
  g_task_set_task_data (task, t, (GDestroyNotify) read_task_free);
  g_task_run_in_thread (task, read_in_thread);
}

GPtrArray *
stream_store_read_finish (StreamStore *store, GAsyncResult *result, guint64 *ret_next,
                          GError **error)
{
  GTask *task = G_TASK (result);
  GPtrArray *records = g_task_propagate_pointer (task, error);
  ReadTask *t = g_task_get_task_data (task);
  if (records && ret_next)
    *ret_next = t ? t->next : 0;
  return records;
}

void
stream_store_apply_retention (StreamStore *store)
{
  gint64 now = g_get_real_time () / 1000;
  GHashTableIter iter;
  gpointer value;
  g_hash_table_iter_init (&iter, store->streams);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    Stream *s = value;
    gint64 before = now - (gint64) s->info.settings.retention_hours * 3600 * 1000;
    for (guint i = 0; i < s->shards->len; i++) {
      Shard *shard = g_ptr_array_index (s->shards, i);
      stream_log_trim (shard->log, before, s->info.settings.retention_bytes);
    }
  }
}
