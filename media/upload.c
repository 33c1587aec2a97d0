/* upload.c: a camera's recording copied to S3-compatible storage as it is
 * made (the "video_uploads" list; see docs/fleet.md).
 *
 * Each upload walks the camera's fragments in number order from where it
 * stopped (kept in the state database), one at a time: the fragment's init
 * segment first if that one is not up yet, then the fragment, then the
 * playlist of the fragment's hour. The position moves once the fragment is
 * up, so an outage of any length, a restart or a crash resumes where it
 * stopped; a PUT repeated after a crash writes the same bytes again. What
 * the camera's own retention removed before it went up is counted as
 * skipped, and the playlist marks the discontinuity.
 *
 * The uploaded copy has its own retention: fragments recorded longer ago
 * than it are deleted from the bucket (and the playlists of hours entirely
 * past it, and init segments no fragment uses), whatever the camera keeps.
 */
#define G_LOG_DOMAIN "media"

#include "delivery.h"
#include "media.h"
#include "service.h"
#include "store.h"

#include <sqlite3.h>

#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS 30000
#define IDLE_MS 1000
#define RETENTION_EVERY_MS 5000
#define RETENTION_BATCH 100
#define HTTP_TIMEOUT_S 60
#define LAG_SCAN_MAX 100000

static const char *const schema[] = {
  "CREATE TABLE media_uploads (name TEXT PRIMARY KEY, next INTEGER NOT NULL);"
  "CREATE TABLE media_uploaded (name TEXT NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL,"
  "  fragment INTEGER, init_id INTEGER, hour INTEGER, duration_ms INTEGER, server_ms INTEGER,"
  "  PRIMARY KEY (name, key));"
  "CREATE INDEX media_uploaded_hour ON media_uploaded (name, hour, fragment);",
};

struct _MediaUploads {
  MediaService *media;
  EdgeState *state;
  SoupSession *session;
  GPtrArray *uploads; /* Upload * */
};

typedef struct {
  gint refs;
  MediaUploads *owner;
  const EdgeConfigVideoUpload *config;
  StreamS3 s3;
  guint64 next;           /* the next fragment number to upload */
  GArray *stale_hours;    /* gint64: hours whose playlist is to be written again */
  gint64 last_hour;       /* of the last fragment uploaded */
  gint64 writing_hour;    /* the playlist under way */
  gboolean busy;
  gboolean deleting;
  gboolean stopped;
  guint timer;
  guint retention_timer;
  guint failures;
  GCancellable *cancellable;
  /* The fragment under way. */
  MediaFragmentMeta meta;
  GBytes *fragment;
  GBytes *init;
  char *key;
  /* What /v1/uploads shows. */
  guint64 uploaded_fragments, uploaded_bytes, skipped_fragments, remote_deleted;
  gint64 last_upload_ms;
  char *last_error;
} Upload;

static Upload *
upload_ref (Upload *u)
{
  g_atomic_int_inc (&u->refs);
  return u;
}

static void
upload_clear_job (Upload *u)
{
  g_clear_pointer (&u->fragment, g_bytes_unref);
  g_clear_pointer (&u->init, g_bytes_unref);
  g_clear_pointer (&u->key, g_free);
}

static void
upload_unref (Upload *u)
{
  if (!g_atomic_int_dec_and_test (&u->refs))
    return;
  upload_clear_job (u);
  stream_s3_clear (&u->s3);
  g_array_unref (u->stale_hours);
  g_object_unref (u->cancellable);
  g_free (u->last_error);
  g_free (u);
}

static sqlite3 *
db (Upload *u)
{
  return edge_state_db (u->owner->state);
}

static void
set_error (Upload *u, const char *message)
{
  if (u->last_error == NULL || !g_str_equal (u->last_error, message))
    g_warning ("video upload \"%s\": %s", u->config->name, message);
  g_free (u->last_error);
  u->last_error = g_strdup (message);
}

/* ---- object names ---- */

static char *
camera_prefix (Upload *u)
{
  return g_strdup_printf ("%s%s/", u->config->prefix, u->config->camera);
}

static gint64
hour_of (gint64 ms)
{
  return ms / 3600000 * 3600000;
}

static char *
hour_prefix (Upload *u, gint64 hour_ms)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (hour_ms / 1000);
  g_autofree char *path = g_date_time_format (t, "%Y/%m/%d/%H/");
  g_autofree char *camera = camera_prefix (u);
  return g_strconcat (camera, path, NULL);
}

static char *
init_key (Upload *u, guint32 init_id)
{
  g_autofree char *camera = camera_prefix (u);
  return g_strdup_printf ("%sinit-%u.mp4", camera, init_id);
}

static char *
fragment_name (guint64 number)
{
  return g_strdup_printf ("%012" G_GUINT64_FORMAT ".m4s", number);
}

/* ---- the state database ---- */

static gboolean
uploaded (Upload *u, const char *key)
{
  sqlite3_stmt *stmt = NULL;
  gboolean found = FALSE;
  if (sqlite3_prepare_v2 (db (u), "SELECT 1 FROM media_uploaded WHERE name = ?1 AND key = ?2", -1,
                          &stmt, NULL) == SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, u->config->name, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 2, key, -1, SQLITE_STATIC);
    found = sqlite3_step (stmt) == SQLITE_ROW;
  }
  sqlite3_finalize (stmt);
  return found;
}

static void
remember (Upload *u, const char *key, const char *kind, const MediaFragmentMeta *meta,
          guint32 init_id, gint64 hour)
{
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (db (u),
                          "INSERT OR REPLACE INTO media_uploaded VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                          "?7, ?8)", -1, &stmt, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_text (stmt, 1, u->config->name, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, key, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 3, kind, -1, SQLITE_STATIC);
  if (meta) {
    sqlite3_bind_int64 (stmt, 4, (gint64) meta->number);
    sqlite3_bind_int64 (stmt, 7, meta->duration_ms);
    sqlite3_bind_int64 (stmt, 8, meta->server_ms);
  } else {
    sqlite3_bind_int64 (stmt, 8, g_get_real_time () / 1000);
  }
  sqlite3_bind_int64 (stmt, 5, init_id);
  sqlite3_bind_int64 (stmt, 6, hour);
  if (sqlite3_step (stmt) != SQLITE_DONE)
    g_warning ("video upload \"%s\": %s", u->config->name, sqlite3_errmsg (db (u)));
  sqlite3_finalize (stmt);
}

static void
save_next (Upload *u)
{
  char *sql = sqlite3_mprintf ("INSERT INTO media_uploads VALUES (%Q, %lld) ON CONFLICT (name) "
                               "DO UPDATE SET next = excluded.next",
                               u->config->name, (long long) u->next);
  char *message = NULL;
  if (sqlite3_exec (db (u), sql, NULL, NULL, &message) != SQLITE_OK)
    g_warning ("video upload \"%s\": %s", u->config->name, message);
  sqlite3_free (message);
  sqlite3_free (sql);
}

/* The playlist of one hour: every fragment of it that is up, in order, with
 * the init segment each plays against. */
static GBytes *
playlist (Upload *u, gint64 hour, gboolean ended)
{
  sqlite3_stmt *stmt = NULL;
  g_autoptr (GString) body = g_string_new (NULL);
  g_autoptr (GString) entries = g_string_new (NULL);
  gint64 max_ms = 1000, first = -1, previous = -1, init = -1;
  if (sqlite3_prepare_v2 (db (u),
                          "SELECT fragment, init_id, duration_ms, server_ms FROM media_uploaded "
                          "WHERE name = ?1 AND kind = 'fragment' AND hour = ?2 ORDER BY fragment",
                          -1, &stmt, NULL) == SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, u->config->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 2, hour);
    while (sqlite3_step (stmt) == SQLITE_ROW) {
      gint64 number = sqlite3_column_int64 (stmt, 0), init_id = sqlite3_column_int64 (stmt, 1);
      gint64 duration = sqlite3_column_int64 (stmt, 2), server_ms = sqlite3_column_int64 (stmt, 3);
      if (first < 0)
        first = number;
      else if (number != previous + 1 || init_id != init)
        g_string_append (entries, "#EXT-X-DISCONTINUITY\n");
      if (init_id != init) {
        /* From CAMERA/YYYY/MM/DD/HH/ back up to CAMERA/. */
        g_string_append_printf (entries, "#EXT-X-MAP:URI=\"../../../../init-%" G_GINT64_FORMAT
                                ".mp4\"\n", init_id);
        init = init_id;
      }
      if (number != previous + 1) {
        g_autofree char *when = media_format_time (server_ms);
        g_string_append_printf (entries, "#EXT-X-PROGRAM-DATE-TIME:%s\n", when);
      }
      g_autofree char *name = fragment_name ((guint64) number);
      g_string_append_printf (entries, "#EXTINF:%.3f,\n%s\n", duration / 1000.0, name);
      max_ms = MAX (max_ms, duration);
      previous = number;
    }
  }
  sqlite3_finalize (stmt);
  g_string_append_printf (body,
                          "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:%" G_GINT64_FORMAT
                          "\n#EXT-X-MEDIA-SEQUENCE:%" G_GINT64_FORMAT
                          "\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-INDEPENDENT-SEGMENTS\n%s",
                          (max_ms + 999) / 1000, MAX (first, 0), entries->str);
  if (ended)
    g_string_append (body, "#EXT-X-ENDLIST\n");
  return g_string_free_to_bytes (g_steal_pointer (&body));
}

/* ---- uploading, one fragment at a time ---- */

static void pump (Upload *u);

static void
mark_stale (Upload *u, gint64 hour)
{
  for (guint i = 0; i < u->stale_hours->len; i++)
    if (g_array_index (u->stale_hours, gint64, i) == hour)
      return;
  g_array_append_val (u->stale_hours, hour);
}

static gboolean
on_timer (gpointer data)
{
  Upload *u = data;
  u->timer = 0;
  pump (u);
  return G_SOURCE_REMOVE;
}

static void
later (Upload *u, guint ms)
{
  if (u->timer == 0 && !u->stopped)
    u->timer = g_timeout_add (ms, on_timer, u);
}

static void
failed (Upload *u, const char *what, GError *error)
{
  g_autofree char *message = g_strdup_printf ("%s: %s", what, error->message);
  set_error (u, message);
  upload_clear_job (u);
  u->busy = FALSE;
  guint delay = RETRY_FIRST_MS << MIN (u->failures, 5u);
  u->failures++;
  later (u, MIN (delay, RETRY_MAX_MS));
}

static void
playlist_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Upload *u = data;
  g_autoptr (GError) error = NULL;
  gboolean ok = stream_s3_put_finish (result, &error);
  (void) source;
  if (!u->stopped) {
    u->busy = FALSE;
    if (!ok) {
      /* The fragment is up; the playlist goes again after a pause. */
      g_autofree char *message = g_strdup_printf ("playlist: %s", error->message);
      set_error (u, message);
      mark_stale (u, u->writing_hour);
      later (u, RETRY_FIRST_MS);
    } else {
      pump (u);
    }
  }
  upload_unref (u);
}

static void
fragment_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Upload *u = data;
  g_autoptr (GError) error = NULL;
  gboolean ok = stream_s3_put_finish (result, &error);
  (void) source;
  if (u->stopped) {
    upload_unref (u);
    return;
  }
  if (!ok) {
    failed (u, "fragment", error);
    upload_unref (u);
    return;
  }
  gint64 hour = hour_of (u->meta.server_ms);
  remember (u, u->key, "fragment", &u->meta, u->meta.init_id, hour);
  u->next = u->meta.number + 1;
  save_next (u);
  u->uploaded_fragments++;
  u->uploaded_bytes += g_bytes_get_size (u->fragment);
  u->last_upload_ms = g_get_real_time () / 1000;
  u->failures = 0;
  g_clear_pointer (&u->last_error, g_free);
  upload_clear_job (u);
  /* The hour's playlist now lists the fragment; the hour before, once a
   * fragment of a new hour went up, is over: its playlist ends. */
  if (u->last_hour && u->last_hour != hour)
    mark_stale (u, u->last_hour);
  mark_stale (u, hour);
  u->last_hour = hour;
  u->busy = FALSE;
  pump (u);
  upload_unref (u);
}

/* Writes the playlist of the first stale hour; FALSE if none is stale. An
 * hour that is over gets EXT-X-ENDLIST; one the bucket's retention has
 * wholly passed is not written again. */
static gboolean
write_stale_playlist (Upload *u)
{
  gint64 now = g_get_real_time () / 1000;
  while (u->stale_hours->len) {
    gint64 hour = g_array_index (u->stale_hours, gint64, 0);
    g_array_remove_index (u->stale_hours, 0);
    if (u->config->retention_ms && hour + 3600000 <= now - u->config->retention_ms)
      continue;
    g_autoptr (GBytes) index = playlist (u, hour, hour_of (now) > hour || u->last_hour > hour);
    g_autofree char *dir = hour_prefix (u, hour);
    g_autofree char *key = g_strconcat (dir, "index.m3u8", NULL);
    remember (u, key, "index", NULL, 0, hour);
    u->writing_hour = hour;
    u->busy = TRUE;
    stream_s3_put_async (u->owner->session, &u->s3, key, index, "application/vnd.apple.mpegurl",
                         NULL, u->cancellable, playlist_done, upload_ref (u));
    return TRUE;
  }
  return FALSE;
}

static void
put_fragment (Upload *u)
{
  g_autofree char *dir = hour_prefix (u, hour_of (u->meta.server_ms));
  g_autofree char *name = fragment_name (u->meta.number);
  u->key = g_strconcat (dir, name, NULL);
  stream_s3_put_async (u->owner->session, &u->s3, u->key, u->fragment, "video/iso.segment", NULL,
                       u->cancellable, fragment_done, upload_ref (u));
}

static void
init_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Upload *u = data;
  g_autoptr (GError) error = NULL;
  gboolean ok = stream_s3_put_finish (result, &error);
  (void) source;
  if (!u->stopped) {
    if (!ok) {
      failed (u, "init segment", error);
    } else {
      g_autofree char *key = init_key (u, u->meta.init_id);
      remember (u, key, "init", NULL, u->meta.init_id, 0);
      put_fragment (u);
    }
  }
  upload_unref (u);
}

static void
read_done (GPtrArray *fragments, GBytes *init, GError *error, gpointer data)
{
  Upload *u = data;
  if (u->stopped) {
    upload_unref (u);
    return;
  }
  if (error) {
    failed (u, "reading the recording", error);
    upload_unref (u);
    return;
  }
  u->fragment = g_bytes_ref (g_ptr_array_index (fragments, 0));
  u->init = g_bytes_ref (init);
  g_autofree char *key = init_key (u, u->meta.init_id);
  if (uploaded (u, key))
    put_fragment (u);
  else
    stream_s3_put_async (u->owner->session, &u->s3, key, u->init, "video/mp4", NULL,
                         u->cancellable, init_done, upload_ref (u));
  upload_unref (u);
}

static void
pump (Upload *u)
{
  if (u->busy || u->stopped || write_stale_playlist (u))
    return;
  MediaStore *store = u->owner->media->store;
  g_autoptr (GArray) next = media_store_list (store, u->config->camera, MEDIA_TIME_SERVER,
                                              G_MININT64, G_MAXINT64, u->next ? u->next - 1 : 0,
                                              1);
  if (next->len == 0) {
    later (u, IDLE_MS);
    return;
  }
  u->meta = g_array_index (next, MediaFragmentMeta, 0);
  if (u->meta.number > u->next && u->next > 0) {
    /* Gone before it went up (the camera's retention, or a full disk). */
    u->skipped_fragments += u->meta.number - u->next;
    g_autofree char *message = g_strdup_printf (
        "fragments %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT
        " were removed on this box before they went up",
        u->next, u->meta.number - 1);
    set_error (u, message);
  }
  u->busy = TRUE;
  media_service_read_async (u->owner->media, u->config->camera, u->meta.init_id, &u->meta.number,
                            1, read_done, upload_ref (u));
}

/* ---- the uploaded copy's retention ---- */

typedef struct {
  Upload *u;
  GPtrArray *keys;
  GArray *fragment_hours; /* gint64 per key: its hour if a fragment, else 0 */
  guint at;
} Deletion;

static void
deletion_free (Deletion *del)
{
  Upload *u = del->u;
  u->deleting = FALSE;
  /* Playlists that listed what went are written again. */
  if (!u->stopped)
    pump (u);
  g_ptr_array_unref (del->keys);
  g_array_unref (del->fragment_hours);
  upload_unref (u);
  g_free (del);
}

static void delete_next (Deletion *del);

static void
forget (Upload *u, const char *key)
{
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (db (u), "DELETE FROM media_uploaded WHERE name = ?1 AND key = ?2", -1,
                          &stmt, NULL) == SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, u->config->name, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 2, key, -1, SQLITE_STATIC);
    sqlite3_step (stmt);
  }
  sqlite3_finalize (stmt);
}

static void
deleted (GObject *source, GAsyncResult *result, gpointer data)
{
  Deletion *del = data;
  Upload *u = del->u;
  g_autoptr (GError) error = NULL;
  gboolean ok = stream_s3_delete_finish (result, &error);
  (void) source;
  if (!u->stopped && ok) {
    forget (u, g_ptr_array_index (del->keys, del->at));
    gint64 hour = g_array_index (del->fragment_hours, gint64, del->at);
    if (hour)
      mark_stale (u, hour);
    u->remote_deleted++;
    del->at++;
    delete_next (del);
    return;
  }
  if (!u->stopped) {
    g_autofree char *message = g_strdup_printf ("retention: %s", error->message);
    set_error (u, message);
  }
  deletion_free (del);
}

static void
delete_next (Deletion *del)
{
  Upload *u = del->u;
  if (del->at >= del->keys->len || u->stopped) {
    deletion_free (del);
    return;
  }
  stream_s3_delete_async (u->owner->session, &u->s3, g_ptr_array_index (del->keys, del->at),
                          u->cancellable, deleted, del);
}

static gboolean
on_retention (gpointer data)
{
  Upload *u = data;
  if (u->deleting)
    return G_SOURCE_CONTINUE;
  gint64 cutoff = g_get_real_time () / 1000 - u->config->retention_ms;
  /* Fragments recorded before the cutoff; playlists of hours wholly
   * before it; init segments no fragment left uses. */
  sqlite3_stmt *stmt = NULL;
  GPtrArray *keys = g_ptr_array_new_with_free_func (g_free);
  GArray *hours = g_array_new (FALSE, FALSE, sizeof (gint64));
  if (sqlite3_prepare_v2 (
          db (u),
          "SELECT key, CASE kind WHEN 'fragment' THEN hour ELSE 0 END FROM media_uploaded m "
          "WHERE name = ?1 AND ("
          " (kind = 'fragment' AND server_ms < ?2) OR"
          " (kind = 'index' AND hour + 3600000 <= ?2) OR"
          " (kind = 'init' AND server_ms < ?2 AND NOT EXISTS (SELECT 1 FROM media_uploaded f"
          "   WHERE f.name = m.name AND f.kind = 'fragment' AND f.init_id = m.init_id"
          "   AND f.server_ms >= ?2))) "
          "ORDER BY kind = 'init', server_ms LIMIT ?3",
          -1, &stmt, NULL) == SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, u->config->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 2, cutoff);
    sqlite3_bind_int (stmt, 3, RETENTION_BATCH);
    while (sqlite3_step (stmt) == SQLITE_ROW) {
      g_ptr_array_add (keys, g_strdup ((const char *) sqlite3_column_text (stmt, 0)));
      gint64 hour = sqlite3_column_int64 (stmt, 1);
      g_array_append_val (hours, hour);
    }
  }
  sqlite3_finalize (stmt);
  if (keys->len == 0) {
    g_ptr_array_unref (keys);
    g_array_unref (hours);
    return G_SOURCE_CONTINUE;
  }
  Deletion *del = g_new0 (Deletion, 1);
  del->u = upload_ref (u);
  del->keys = keys;
  del->fragment_hours = hours;
  u->deleting = TRUE;
  delete_next (del);
  return G_SOURCE_CONTINUE;
}

/* ---- configuration, lifetime and /v1/uploads ---- */

gboolean
media_uploads_check_config (const EdgeConfig *config, const char *source, GError **error)
{
  for (guint i = 0; i < config->video_uploads->len; i++) {
    const EdgeConfigVideoUpload *c = g_ptr_array_index (config->video_uploads, i);
    const char *problem = NULL;
    if (!edge_name_valid (c->name, 64))
      problem = "the name must be 1 to 64 of a-z, A-Z, 0-9, _ . and -";
    else if (!media_camera_name_valid (c->camera))
      problem = "camera must be a camera name";
    else if (!g_str_has_prefix (c->endpoint, "http://") &&
             !g_str_has_prefix (c->endpoint, "https://"))
      problem = "endpoint: expected http(s)://HOST[:PORT]";
    else if (c->bucket[0] == '\0')
      problem = "bucket must not be empty";
    for (guint j = 0; problem == NULL && j < i; j++)
      if (g_str_equal (c->name, ((EdgeConfigVideoUpload *) config->video_uploads->pdata[j])->name))
        problem = "the name is used twice";
    if (problem) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: video_uploads[%u] (%s): %s", source, i, c->name, problem);
      return FALSE;
    }
  }
  return TRUE;
}

typedef struct {
  gint64 fragments, bytes, seconds;
} Lag;

/* The recording not yet up: fragments from the position on (counted up to
 * LAG_SCAN_MAX), their bytes, and the age of the oldest. */
static Lag
upload_lag (Upload *u)
{
  g_autoptr (GArray) behind = media_store_list (u->owner->media->store, u->config->camera,
                                                MEDIA_TIME_SERVER, G_MININT64, G_MAXINT64,
                                                u->next ? u->next - 1 : 0, LAG_SCAN_MAX);
  Lag lag = { behind->len, 0, 0 };
  for (guint i = 0; i < behind->len; i++)
    lag.bytes += (gint64) g_array_index (behind, MediaFragmentMeta, i).bytes;
  gint64 oldest = behind->len ? g_array_index (behind, MediaFragmentMeta, 0).server_ms : 0;
  lag.seconds = oldest ? MAX (0, g_get_real_time () / 1000 - oldest) / 1000 : 0;
  return lag;
}

static void
collect (EdgeMetrics *metrics, gpointer data)
{
  MediaUploads *owner = data;
  for (guint i = 0; i < owner->uploads->len; i++) {
    Upload *u = g_ptr_array_index (owner->uploads, i);
    g_autofree char *name = edge_metrics_escape_label (u->config->name);
    g_autofree char *labels = g_strdup_printf ("upload=\"%s\"", name);
    Lag lag = upload_lag (u);
    edge_metrics_set (metrics, "edged_video_upload_lag_fragments", labels, (double) lag.fragments);
    edge_metrics_set (metrics, "edged_video_upload_lag_bytes", labels, (double) lag.bytes);
    edge_metrics_set (metrics, "edged_video_upload_lag_seconds", labels, (double) lag.seconds);
  }
}

static void
upload_to_json (Upload *u, JsonBuilder *b)
{
  const EdgeConfigVideoUpload *c = u->config;
  Lag lag = upload_lag (u);
  json_builder_begin_object (b);
  edge_json_add_string (b, "name", c->name);
  edge_json_add_string (b, "camera", c->camera);
  edge_json_add_string (b, "endpoint", c->endpoint);
  edge_json_add_string (b, "bucket", c->bucket);
  edge_json_add_string (b, "prefix", c->prefix);
  edge_json_add_int (b, "retention_ms", c->retention_ms);
  edge_json_add_int (b, "next_fragment", (gint64) u->next);
  edge_json_add_int (b, "lag_fragments", lag.fragments);
  edge_json_add_int (b, "lag_bytes", lag.bytes);
  edge_json_add_int (b, "lag_seconds", lag.seconds);
  edge_json_add_int (b, "uploaded_fragments", (gint64) u->uploaded_fragments);
  edge_json_add_int (b, "uploaded_bytes", (gint64) u->uploaded_bytes);
  edge_json_add_int (b, "skipped_fragments", (gint64) u->skipped_fragments);
  edge_json_add_int (b, "deleted_objects", (gint64) u->remote_deleted);
  if (u->last_upload_ms)
    edge_json_add_int (b, "last_upload_ms", u->last_upload_ms);
  if (u->last_error)
    edge_json_add_string (b, "last_error", u->last_error);
  json_builder_end_object (b);
}

static void
handle_list (EdgeRequest *request, gpointer data)
{
  MediaUploads *owner = data;
  edge_request_respond_array (request, "video_uploads", owner->uploads,
                              (EdgeJsonWriteFunc) upload_to_json);
}

static void
handle_get (EdgeRequest *request, gpointer data)
{
  MediaUploads *owner = data;
  const char *name = edge_request_param (request, "name");
  for (guint i = 0; i < owner->uploads->len; i++) {
    Upload *u = g_ptr_array_index (owner->uploads, i);
    if (g_str_equal (u->config->name, name)) {
      edge_request_respond_object (request, u, (EdgeJsonWriteFunc) upload_to_json);
      return;
    }
  }
  edge_request_respond_error (request, 404, "NotFound", "no video upload %s", name);
}

static guint64
load_next (MediaUploads *owner, const char *name)
{
  sqlite3_stmt *stmt = NULL;
  guint64 next = 0;
  if (sqlite3_prepare_v2 (edge_state_db (owner->state),
                          "SELECT next FROM media_uploads WHERE name = ?1", -1, &stmt,
                          NULL) == SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step (stmt) == SQLITE_ROW)
      next = (guint64) sqlite3_column_int64 (stmt, 0);
  }
  sqlite3_finalize (stmt);
  return next;
}

MediaUploads *
media_uploads_new (MediaService *media, EdgeGateway *gateway, EdgeState *state,
                   const EdgeConfig *config, EdgeMetrics *metrics, GError **error)
{
  static const EdgeRoute routes[] = {
    { "GET", "/v1/uploads", handle_list, "Video uploads to S3: lag and what went up", "cameras" },
    { "GET", "/v1/uploads/{name}", handle_get, "One video upload", "cameras" },
  };
  if (!edge_state_migrate (state, "media-uploads", schema, G_N_ELEMENTS (schema), error))
    return NULL;
  MediaUploads *owner = g_new0 (MediaUploads, 1);
  owner->media = media;
  owner->state = state;
  owner->session = soup_session_new_with_options ("timeout", HTTP_TIMEOUT_S, NULL);
  owner->uploads = g_ptr_array_new ();
  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (gateway, &routes[i], owner, error)) {
      media_uploads_free (owner);
      return NULL;
    }
  for (guint i = 0; i < config->video_uploads->len; i++) {
    const EdgeConfigVideoUpload *c = g_ptr_array_index (config->video_uploads, i);
    Upload *u = g_new0 (Upload, 1);
    u->refs = 1;
    u->owner = owner;
    u->config = c;
    u->s3.endpoint = g_strdup (c->endpoint);
    u->s3.bucket = g_strdup (c->bucket);
    u->s3.region = g_strdup (c->region);
    u->s3.access_key_id = g_strdup (c->access_key_id);
    u->s3.secret_access_key = g_strdup (c->secret_access_key);
    u->cancellable = g_cancellable_new ();
    u->stale_hours = g_array_new (FALSE, FALSE, sizeof (gint64));
    u->next = load_next (owner, c->name);
    if (c->retention_ms > 0)
      u->retention_timer = g_timeout_add (RETENTION_EVERY_MS, on_retention, u);
    g_ptr_array_add (owner->uploads, u);
    g_message ("video upload \"%s\": camera %s to %s/%s/%s", c->name, c->camera, c->endpoint,
               c->bucket, c->prefix);
    pump (u);
  }
  if (metrics && owner->uploads->len) {
    edge_metrics_declare (metrics, "edged_video_upload_lag_fragments", EDGE_METRIC_GAUGE,
                          "Fragments of the camera not yet uploaded.", NULL, 0);
    edge_metrics_declare (metrics, "edged_video_upload_lag_bytes", EDGE_METRIC_GAUGE,
                          "Bytes of the camera's recording not yet uploaded.", NULL, 0);
    edge_metrics_declare (metrics, "edged_video_upload_lag_seconds", EDGE_METRIC_GAUGE,
                          "Age of the oldest fragment not yet uploaded.", NULL, 0);
    edge_metrics_add_collector (metrics, collect, owner);
  }
  return owner;
}

void
media_uploads_free (MediaUploads *owner)
{
  if (owner == NULL)
    return;
  for (guint i = 0; i < owner->uploads->len; i++) {
    Upload *u = g_ptr_array_index (owner->uploads, i);
    u->stopped = TRUE;
    g_cancellable_cancel (u->cancellable);
    g_clear_handle_id (&u->timer, g_source_remove);
    g_clear_handle_id (&u->retention_timer, g_source_remove);
    upload_unref (u);
  }
  g_ptr_array_unref (owner->uploads);
  g_object_unref (owner->session);
  g_free (owner);
}
