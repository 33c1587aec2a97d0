/* store.c: the encrypted fragment store (media/store.h).
 *
 * Layout under the store directory:
 *
 *   CAMERA/
 *     00000000000000000001.init    init segment 1
 *     00000000000000000001.frag    fragment 1
 *     00000000000000000002.frag    ...
 *
 * Each file is exactly one AES-256-GCM frame (edge/core, docs/internals/
 * crypto.md) under the key derived for "camera/CAMERA", with additional data
 * binding it to its place ("edged-media", camera, kind, number), so a file
 * renamed, moved to another camera or swapped for an init segment does not
 * open. The sealed payload:
 *
 *   0       4    8       16      20        24          32        40
 *   +-------+----+-------+-------+---------+-----------+---------+
 *   | EDGM  |v k | number| init  | duration| producer  | server  |
 *   +-------+----+-------+-------+---------+-----------+---------+
 *   40          48      52      56     58      60    64
 *   +-----------+-------+-------+------+-------+-----+--------------
 *   | decode    | frames| codec | width| height| 0   | fMP4 bytes ...
 *   +-----------+-------+-------+------+-------+-----+--------------
 *
 *   v: format version (1); k: 1 fragment, 2 init segment; all integers
 *   big-endian; times in Unix ms, decode time in 90 kHz units.
 *
 * A fragment is written to NAME.tmp, fdatasync'd and renamed, then indexed
 * on the main thread. A crash between the rename and the index insert
 * leaves a file the index lacks: opening the store reads its header and
 * indexes it. *.tmp files are partial writes and are removed.
 */
#define G_LOG_DOMAIN "media"

#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

G_DEFINE_QUARK (media-store-error-quark, media_store_error)

#define HEADER_BYTES 64
#define FORMAT_VERSION 1
#define KIND_FRAGMENT 1
#define KIND_INIT 2

struct _MediaStore {
  char *directory;
  EdgeState *state;
  EdgeKeyring *keyring;
};

struct _MediaStoreWriter {
  MediaStore *store;
  char *camera;
  char *directory;
  EdgeCipher *cipher;
};

static const char *const media_schema[] = {
  "CREATE TABLE media_inits ("
  "  camera TEXT NOT NULL, id INTEGER NOT NULL, codec INTEGER NOT NULL,"
  "  width INTEGER NOT NULL, height INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
  "  PRIMARY KEY (camera, id)) WITHOUT ROWID;"
  "CREATE TABLE media_fragments ("
  "  camera TEXT NOT NULL, number INTEGER NOT NULL, init_id INTEGER NOT NULL,"
  "  producer_ms INTEGER NOT NULL, server_ms INTEGER NOT NULL, decode_time INTEGER NOT NULL,"
  "  duration_ms INTEGER NOT NULL, frames INTEGER NOT NULL, bytes INTEGER NOT NULL,"
  "  PRIMARY KEY (camera, number)) WITHOUT ROWID;"
  "CREATE INDEX media_fragments_server ON media_fragments (camera, server_ms);"
  "CREATE INDEX media_fragments_producer ON media_fragments (camera, producer_ms);"
  "CREATE TABLE media_gaps ("
  "  camera TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,"
  "  reason TEXT NOT NULL);"
  "CREATE INDEX media_gaps_camera ON media_gaps (camera, start_ms);",
  /* Cameras added at run time (POST /v1/cameras), restarted with edged. */
  "CREATE TABLE media_cameras ("
  "  name TEXT PRIMARY KEY, config TEXT NOT NULL, created_ms INTEGER NOT NULL);",
  /* Detection events (events.c); they also say which footage to keep
   * longer: producer time from start - pre_ms to end + post_ms, until
   * keep_until_ms. */
  "CREATE TABLE media_events ("
  "  id TEXT PRIMARY KEY, camera TEXT NOT NULL, type TEXT NOT NULL,"
  "  start_ms INTEGER NOT NULL, end_ms INTEGER, server_ms INTEGER NOT NULL,"
  "  fragment INTEGER NOT NULL, score REAL NOT NULL, boxes TEXT NOT NULL, snapshot BLOB,"
  "  pre_ms INTEGER NOT NULL, post_ms INTEGER NOT NULL, keep_until_ms INTEGER NOT NULL);"
  "CREATE INDEX media_events_start ON media_events (start_ms);"
  "CREATE INDEX media_events_camera ON media_events (camera, start_ms);",
};

/* TRUE for a fragment (columns f.camera, f.producer_ms, f.duration_ms)
 * that footage around an event still keeps; ?9 is now. An event still
 * going keeps everything after its start. */
#define PINNED_SQL \
  "EXISTS (SELECT 1 FROM media_events e WHERE e.camera = f.camera" \
  " AND e.keep_until_ms > ?9 AND f.producer_ms + f.duration_ms >= e.start_ms - e.pre_ms" \
  " AND (e.end_ms IS NULL OR f.producer_ms <= e.end_ms + e.post_ms))"

gboolean
media_camera_name_valid (const char *name)
{
  return edge_name_valid (name, MEDIA_CAMERA_NAME_MAX);
}

static gboolean
sql_error (MediaStore *store, GError **error)
{
  g_set_error (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_SQL, "state database: %s",
               sqlite3_errmsg (edge_state_db (store->state)));
  return FALSE;
}

static sqlite3_stmt *
prepare (MediaStore *store, const char *sql)
{
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (edge_state_db (store->state), sql, -1, &stmt, NULL) != SQLITE_OK) {
    g_warning ("media: cannot prepare %s: %s", sql, sqlite3_errmsg (edge_state_db (store->state)));
    return NULL;
  }
  return stmt;
}

static char *
file_name (guint64 number, guint kind)
{
  return g_strdup_printf ("%020" G_GUINT64_FORMAT ".%s", number,
                          kind == KIND_INIT ? "init" : "frag");
}

static char *
file_path (MediaStore *store, const char *camera, guint64 number, guint kind)
{
  g_autofree char *name = file_name (number, kind);
  return g_build_filename (store->directory, camera, name, NULL);
}

static GBytes *
file_aad (const char *camera, guint kind, guint64 number)
{
  GByteArray *aad = g_byte_array_new ();
  guint8 tail[9];
  static const char tag[] = "edged-media";
  g_byte_array_append (aad, (const guint8 *) tag, sizeof tag);
  g_byte_array_append (aad, (const guint8 *) camera, (guint) strlen (camera) + 1);
  tail[0] = (guint8) kind;
  edge_put_be64 (tail + 1, number);
  g_byte_array_append (aad, tail, sizeof tail);
  return g_byte_array_free_to_bytes (aad);
}

static char *
camera_context (const char *camera)
{
  return g_strconcat ("camera/", camera, NULL);
}

/* ---- headers ---- */

typedef struct {
  guint kind;
  MediaFragmentMeta fragment;
  MediaInitMeta init;
} FileHeader;

static void
header_write (guint8 *h, const FileHeader *f)
{
  memset (h, 0, HEADER_BYTES);
  memcpy (h, "EDGM", 4);
  h[4] = FORMAT_VERSION;
  h[5] = (guint8) f->kind;
  if (f->kind == KIND_FRAGMENT) {
    edge_put_be64 (h + 8, f->fragment.number);
    edge_put_be32 (h + 16, f->fragment.init_id);
    edge_put_be32 (h + 20, f->fragment.duration_ms);
    edge_put_be64 (h + 24, (guint64) f->fragment.producer_ms);
    edge_put_be64 (h + 32, (guint64) f->fragment.server_ms);
    edge_put_be64 (h + 40, f->fragment.decode_time);
    edge_put_be32 (h + 48, f->fragment.frames);
  } else {
    edge_put_be64 (h + 8, f->init.id);
    edge_put_be64 (h + 32, (guint64) f->init.created_ms);
    edge_put_be32 (h + 52, (guint32) f->init.codec);
    h[56] = (guint8) (f->init.width >> 8);
    h[57] = (guint8) f->init.width;
    h[58] = (guint8) (f->init.height >> 8);
    h[59] = (guint8) f->init.height;
  }
}

static gboolean
header_read (const guint8 *h, gsize len, FileHeader *f)
{
  if (len < HEADER_BYTES || memcmp (h, "EDGM", 4) != 0 || h[4] != FORMAT_VERSION)
    return FALSE;
  f->kind = h[5];
  if (f->kind == KIND_FRAGMENT) {
    f->fragment.number = edge_get_be64 (h + 8);
    f->fragment.init_id = edge_get_be32 (h + 16);
    f->fragment.duration_ms = edge_get_be32 (h + 20);
    f->fragment.producer_ms = (gint64) edge_get_be64 (h + 24);
    f->fragment.server_ms = (gint64) edge_get_be64 (h + 32);
    f->fragment.decode_time = edge_get_be64 (h + 40);
    f->fragment.frames = edge_get_be32 (h + 48);
    f->fragment.bytes = len - HEADER_BYTES;
    return TRUE;
  }
  if (f->kind == KIND_INIT) {
    f->init.id = (guint32) edge_get_be64 (h + 8);
    f->init.created_ms = (gint64) edge_get_be64 (h + 32);
    f->init.codec = (MediaCodec) edge_get_be32 (h + 52);
    f->init.width = edge_get_be16 (h + 56);
    f->init.height = edge_get_be16 (h + 58);
    return TRUE;
  }
  return FALSE;
}

/* ---- reading files ---- */

/* Reads and opens one file; returns the whole plaintext (header included). */
static GBytes *
read_sealed (MediaStore *store, const char *camera, guint kind, guint64 number, GError **error)
{
  g_autofree char *path = file_path (store, camera, number, kind);
  g_autofree char *context = camera_context (camera);
  g_autoptr (GBytes) aad = file_aad (camera, kind, number);
  g_autoptr (EdgeCipher) cipher = NULL;
  g_autofree guint8 *sealed = NULL;
  struct stat st;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd < 0) {
    g_set_error (error, MEDIA_STORE_ERROR,
                 errno == ENOENT ? MEDIA_STORE_ERROR_NOT_FOUND : MEDIA_STORE_ERROR_IO,
                 "%s: %s", path, g_strerror (errno));
    return NULL;
  }
  if (fstat (fd, &st) != 0 || st.st_size < EDGE_FRAME_OVERHEAD + HEADER_BYTES ||
      (guint64) st.st_size > MEDIA_FRAGMENT_MAX_BYTES + HEADER_BYTES + EDGE_FRAME_OVERHEAD) {
    g_set_error (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_CORRUPT, "%s: not a media file",
                 path);
    close (fd);
    return NULL;
  }
  gsize len = (gsize) st.st_size, got = 0;
  sealed = g_try_malloc (len);
  if (sealed == NULL) {
    g_set_error (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_IO, "%s: out of memory", path);
    close (fd);
    return NULL;
  }
  while (got < len) {
    ssize_t n = read (fd, sealed + got, len - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      g_set_error (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_IO, "%s: %s", path,
                   n == 0 ? "short read" : g_strerror (errno));
      close (fd);
      return NULL;
    }
    got += (gsize) n;
  }
  close (fd);

  cipher = edge_cipher_new (store->keyring, context, error);
  if (cipher == NULL)
    return NULL;
  guint8 *plain = g_malloc (len - EDGE_FRAME_OVERHEAD);
  gsize plain_len = 0;
  gsize aad_len;
  const guint8 *aad_data = g_bytes_get_data (aad, &aad_len);
  if (!edge_cipher_open (cipher, sealed, len, aad_data, aad_len, plain, &plain_len, error)) {
    g_free (plain);
    g_prefix_error (error, "%s: ", path);
    return NULL;
  }
  return g_bytes_new_take (plain, plain_len);
}

static GBytes *
read_media (MediaStore *store, const char *camera, guint kind, guint64 number, GError **error)
{
  g_autoptr (GBytes) whole = read_sealed (store, camera, kind, number, error);
  FileHeader header;
  if (whole == NULL)
    return NULL;
  if (!header_read (g_bytes_get_data (whole, NULL), g_bytes_get_size (whole), &header) ||
      header.kind != kind) {
    g_set_error (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_CORRUPT,
                 "camera \"%s\": media file %" G_GUINT64_FORMAT " has a bad header", camera,
                 number);
    return NULL;
  }
  return g_bytes_new_from_bytes (whole, HEADER_BYTES, g_bytes_get_size (whole) - HEADER_BYTES);
}

GBytes *
media_store_read_fragment (MediaStore *store, const char *camera, guint64 number, GError **error)
{
  return read_media (store, camera, KIND_FRAGMENT, number, error);
}

GBytes *
media_store_read_init (MediaStore *store, const char *camera, guint32 id, GError **error)
{
  return read_media (store, camera, KIND_INIT, id, error);
}

/* ---- writing ---- */

MediaStoreWriter *
media_store_writer_new (MediaStore *store, const char *camera, GError **error)
{
  g_autofree char *context = camera_context (camera);
  MediaStoreWriter *writer = g_new0 (MediaStoreWriter, 1);
  writer->store = store;
  writer->camera = g_strdup (camera);
  writer->directory = g_build_filename (store->directory, camera, NULL);
  writer->cipher = edge_cipher_new (store->keyring, context, error);
  if (writer->cipher == NULL || g_mkdir_with_parents (writer->directory, 0700) != 0) {
    if (writer->cipher != NULL)
      g_set_error (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_IO, "cannot create %s: %s",
                   writer->directory, g_strerror (errno));
    media_store_writer_free (writer);
    return NULL;
  }
  return writer;
}

void
media_store_writer_free (MediaStoreWriter *writer)
{
  if (writer == NULL)
    return;
  g_clear_pointer (&writer->cipher, edge_cipher_free);
  g_free (writer->camera);
  g_free (writer->directory);
  g_free (writer);
}

static gboolean
write_all (int fd, const guint8 *data, gsize len)
{
  while (len > 0) {
    ssize_t n = write (fd, data, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return FALSE;
    data += n;
    len -= (gsize) n;
  }
  return TRUE;
}

static gboolean
write_sealed (MediaStoreWriter *writer, const FileHeader *header, guint64 number, GBytes *media,
              GError **error)
{
  gsize media_len;
  const guint8 *media_data = g_bytes_get_data (media, &media_len);
  gsize plain_len = HEADER_BYTES + media_len;
  g_autoptr (GBytes) aad = file_aad (writer->camera, header->kind, number);
  g_autofree char *name = file_name (number, header->kind);
  g_autofree char *path = g_build_filename (writer->directory, name, NULL);
  g_autofree char *tmp = g_strconcat (path, ".tmp", NULL);
  g_autofree guint8 *plain = NULL, *sealed = NULL;
  gsize aad_len;
  const guint8 *aad_data = g_bytes_get_data (aad, &aad_len);

  if (media_len > MEDIA_FRAGMENT_MAX_BYTES) {
    g_set_error (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_IO,
                 "camera \"%s\": a fragment of %" G_GSIZE_FORMAT " bytes (at most %u)",
                 writer->camera, media_len, MEDIA_FRAGMENT_MAX_BYTES);
    return FALSE;
  }
  plain = g_malloc (plain_len);
  header_write (plain, header);
  memcpy (plain + HEADER_BYTES, media_data, media_len);
  sealed = g_malloc (plain_len + EDGE_FRAME_OVERHEAD);
  if (!edge_cipher_seal (writer->cipher, plain, plain_len, aad_data, aad_len, sealed, error))
    return FALSE;

  int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || !write_all (fd, sealed, plain_len + EDGE_FRAME_OVERHEAD) || fdatasync (fd) != 0) {
    g_set_error (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_IO, "%s: %s", tmp,
                 g_strerror (errno));
    if (fd >= 0) {
      close (fd);
      g_unlink (tmp);
    }
    return FALSE;
  }
  close (fd);
  if (rename (tmp, path) != 0) {
    g_set_error (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_IO, "%s: %s", path,
                 g_strerror (errno));
    g_unlink (tmp);
    return FALSE;
  }
  return TRUE;
}

gboolean
media_store_write_fragment (MediaStoreWriter *writer, const MediaFragmentMeta *meta,
                            GBytes *fragment, GError **error)
{
  FileHeader header = { .kind = KIND_FRAGMENT, .fragment = *meta };
  return write_sealed (writer, &header, meta->number, fragment, error);
}

gboolean
media_store_write_init (MediaStoreWriter *writer, const MediaInitMeta *meta, GBytes *init,
                        GError **error)
{
  FileHeader header = { .kind = KIND_INIT, .init = *meta };
  return write_sealed (writer, &header, meta->id, init, error);
}

/* ---- the index ---- */

gboolean
media_store_index_fragment (MediaStore *store, const char *camera, const MediaFragmentMeta *m,
                            GError **error)
{
  sqlite3_stmt *st = prepare (store, "INSERT OR REPLACE INTO media_fragments (camera, number,"
                                     " init_id, producer_ms, server_ms, decode_time, duration_ms,"
                                     " frames, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (st == NULL)
    return sql_error (store, error);
  sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 2, (sqlite3_int64) m->number);
  sqlite3_bind_int64 (st, 3, m->init_id);
  sqlite3_bind_int64 (st, 4, m->producer_ms);
  sqlite3_bind_int64 (st, 5, m->server_ms);
  sqlite3_bind_int64 (st, 6, (sqlite3_int64) m->decode_time);
  sqlite3_bind_int64 (st, 7, m->duration_ms);
  sqlite3_bind_int64 (st, 8, m->frames);
  sqlite3_bind_int64 (st, 9, (sqlite3_int64) m->bytes);
  gboolean ok = sqlite3_step (st) == SQLITE_DONE;
  sqlite3_finalize (st);
  return ok || sql_error (store, error);
}

gboolean
media_store_index_init (MediaStore *store, const char *camera, const MediaInitMeta *m,
                        GError **error)
{
  sqlite3_stmt *st = prepare (store, "INSERT OR REPLACE INTO media_inits (camera, id, codec,"
                                     " width, height, created_ms) VALUES (?, ?, ?, ?, ?, ?)");
  if (st == NULL)
    return sql_error (store, error);
  sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 2, m->id);
  sqlite3_bind_int64 (st, 3, m->codec);
  sqlite3_bind_int64 (st, 4, m->width);
  sqlite3_bind_int64 (st, 5, m->height);
  sqlite3_bind_int64 (st, 6, m->created_ms);
  gboolean ok = sqlite3_step (st) == SQLITE_DONE;
  sqlite3_finalize (st);
  return ok || sql_error (store, error);
}

gboolean
media_store_index_gap (MediaStore *store, const char *camera, gint64 start_ms, gint64 end_ms,
                       const char *reason, GError **error)
{
  sqlite3_stmt *st = prepare (store, "INSERT INTO media_gaps (camera, start_ms, end_ms, reason)"
                                     " VALUES (?, ?, ?, ?)");
  if (st == NULL)
    return sql_error (store, error);
  sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 2, start_ms);
  sqlite3_bind_int64 (st, 3, end_ms);
  sqlite3_bind_text (st, 4, reason, -1, SQLITE_STATIC);
  gboolean ok = sqlite3_step (st) == SQLITE_DONE;
  sqlite3_finalize (st);
  return ok || sql_error (store, error);
}

#define FRAGMENT_COLUMNS \
  "number, init_id, producer_ms, server_ms, decode_time, duration_ms, frames, bytes"

static void
row_to_meta (sqlite3_stmt *st, MediaFragmentMeta *m)
{
  m->number = (guint64) sqlite3_column_int64 (st, 0);
  m->init_id = (guint32) sqlite3_column_int64 (st, 1);
  m->producer_ms = sqlite3_column_int64 (st, 2);
  m->server_ms = sqlite3_column_int64 (st, 3);
  m->decode_time = (guint64) sqlite3_column_int64 (st, 4);
  m->duration_ms = (guint32) sqlite3_column_int64 (st, 5);
  m->frames = (guint32) sqlite3_column_int64 (st, 6);
  m->bytes = (guint64) sqlite3_column_int64 (st, 7);
}

static GArray *
collect (sqlite3_stmt *st)
{
  GArray *out = g_array_new (FALSE, FALSE, sizeof (MediaFragmentMeta));
  while (st && sqlite3_step (st) == SQLITE_ROW) {
    MediaFragmentMeta m;
    row_to_meta (st, &m);
    g_array_append_val (out, m);
  }
  sqlite3_finalize (st);
  return out;
}

GArray *
media_store_list (MediaStore *store, const char *camera, MediaTimeKind kind, gint64 start_ms,
                  gint64 end_ms, guint64 after_number, guint limit)
{
  /* A fragment lasts at most a minute, so the time index narrows the scan
   * to fragments starting within a minute before the range. */
  const char *sql =
      kind == MEDIA_TIME_SERVER
          ? "SELECT " FRAGMENT_COLUMNS " FROM media_fragments WHERE camera = ?1"
            " AND server_ms >= ?2 - 60000 AND server_ms < ?3 AND server_ms + duration_ms > ?2"
            " AND number > ?4 ORDER BY number LIMIT ?5"
          : "SELECT " FRAGMENT_COLUMNS " FROM media_fragments WHERE camera = ?1"
            " AND producer_ms >= ?2 - 60000 AND producer_ms < ?3"
            " AND producer_ms + duration_ms > ?2 AND number > ?4 ORDER BY number LIMIT ?5";
  sqlite3_stmt *st = prepare (store, sql);
  if (st) {
    sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (st, 2, start_ms);
    sqlite3_bind_int64 (st, 3, end_ms);
    sqlite3_bind_int64 (st, 4, (sqlite3_int64) after_number);
    sqlite3_bind_int64 (st, 5, limit);
  }
  return collect (st);
}

GArray *
media_store_list_last (MediaStore *store, const char *camera, guint count)
{
  sqlite3_stmt *st = prepare (store, "SELECT * FROM (SELECT " FRAGMENT_COLUMNS
                                     " FROM media_fragments WHERE camera = ? ORDER BY number DESC"
                                     " LIMIT ?) ORDER BY number");
  if (st) {
    sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (st, 2, count);
  }
  return collect (st);
}

gboolean
media_store_lookup (MediaStore *store, const char *camera, guint64 number,
                    MediaFragmentMeta *ret_meta)
{
  sqlite3_stmt *st = prepare (store, "SELECT " FRAGMENT_COLUMNS
                                     " FROM media_fragments WHERE camera = ? AND number = ?");
  gboolean found = FALSE;
  if (st == NULL)
    return FALSE;
  sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 2, (sqlite3_int64) number);
  if (sqlite3_step (st) == SQLITE_ROW) {
    row_to_meta (st, ret_meta);
    found = TRUE;
  }
  sqlite3_finalize (st);
  return found;
}

gboolean
media_store_lookup_init (MediaStore *store, const char *camera, guint32 id,
                         MediaInitMeta *ret_meta)
{
  sqlite3_stmt *st = prepare (store, "SELECT codec, width, height, created_ms FROM media_inits"
                                     " WHERE camera = ? AND id = ?");
  gboolean found = FALSE;
  if (st == NULL)
    return FALSE;
  sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 2, id);
  if (sqlite3_step (st) == SQLITE_ROW) {
    ret_meta->id = id;
    ret_meta->codec = (MediaCodec) sqlite3_column_int64 (st, 0);
    ret_meta->width = (guint) sqlite3_column_int64 (st, 1);
    ret_meta->height = (guint) sqlite3_column_int64 (st, 2);
    ret_meta->created_ms = sqlite3_column_int64 (st, 3);
    found = TRUE;
  }
  sqlite3_finalize (st);
  return found;
}

GArray *
media_store_gaps (MediaStore *store, const char *camera, gint64 start_ms, gint64 end_ms)
{
  GArray *out = g_array_new (FALSE, FALSE, sizeof (gint64));
  sqlite3_stmt *st = prepare (store, "SELECT start_ms, end_ms FROM media_gaps WHERE camera = ?"
                                     " AND start_ms < ? AND end_ms > ? ORDER BY start_ms");
  if (st == NULL)
    return out;
  sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 2, end_ms);
  sqlite3_bind_int64 (st, 3, start_ms);
  while (sqlite3_step (st) == SQLITE_ROW) {
    gint64 pair[2] = { sqlite3_column_int64 (st, 0), sqlite3_column_int64 (st, 1) };
    g_array_append_vals (out, pair, 2);
  }
  sqlite3_finalize (st);
  return out;
}

static gint64
query_int (MediaStore *store, const char *sql, const char *camera)
{
  sqlite3_stmt *st = prepare (store, sql);
  gint64 value = 0;
  if (st == NULL)
    return 0;
  sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
  if (sqlite3_step (st) == SQLITE_ROW)
    value = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  return value;
}

void
media_store_usage (MediaStore *store, const char *camera, MediaStoreUsage *ret_usage)
{
  sqlite3_stmt *st = prepare (store, "SELECT count(*), coalesce(sum(bytes), 0),"
                                     " coalesce(min(server_ms), 0), coalesce(max(server_ms), 0)"
                                     " FROM media_fragments WHERE camera = ?");
  memset (ret_usage, 0, sizeof *ret_usage);
  if (st == NULL)
    return;
  sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
  if (sqlite3_step (st) == SQLITE_ROW) {
    ret_usage->fragments = (guint64) sqlite3_column_int64 (st, 0);
    ret_usage->bytes = (guint64) sqlite3_column_int64 (st, 1);
    ret_usage->oldest_ms = sqlite3_column_int64 (st, 2);
    ret_usage->newest_ms = sqlite3_column_int64 (st, 3);
  }
  sqlite3_finalize (st);
}

/* The largest number among @camera's files of @kind, 0 when none. */
static guint64
largest_file_number (MediaStore *store, const char *camera, guint kind)
{
  g_autofree char *dir_path = g_build_filename (store->directory, camera, NULL);
  g_autoptr (GDir) dir = g_dir_open (dir_path, 0, NULL);
  const char *suffix = kind == KIND_INIT ? ".init" : ".frag";
  const char *name;
  guint64 largest = 0;
  while (dir && (name = g_dir_read_name (dir)) != NULL) {
    if (!g_str_has_suffix (name, suffix))
      continue;
    guint64 n = g_ascii_strtoull (name, NULL, 10);
    largest = MAX (largest, n);
  }
  return largest;
}

guint64
media_store_next_fragment (MediaStore *store, const char *camera)
{
  guint64 indexed = (guint64) query_int (
      store, "SELECT coalesce(max(number), 0) FROM media_fragments WHERE camera = ?", camera);
  return MAX (indexed, largest_file_number (store, camera, KIND_FRAGMENT)) + 1;
}

guint32
media_store_next_init (MediaStore *store, const char *camera)
{
  guint64 indexed = (guint64) query_int (
      store, "SELECT coalesce(max(id), 0) FROM media_inits WHERE camera = ?", camera);
  return (guint32) MAX (indexed, largest_file_number (store, camera, KIND_INIT)) + 1;
}

static void
remove_fragment_file (MediaStore *store, const char *camera, guint64 number)
{
  g_autofree char *path = file_path (store, camera, number, KIND_FRAGMENT);
  if (g_unlink (path) != 0 && errno != ENOENT)
    g_warning ("camera \"%s\": cannot remove %s: %s", camera, path, g_strerror (errno));
}

guint
media_store_enforce_retention (MediaStore *store, const char *camera, gint64 max_age_ms,
                               guint64 max_bytes)
{
  MediaStoreUsage usage;
  gint64 cutoff = max_age_ms > 0 ? g_get_real_time () / 1000 - max_age_ms : G_MININT64;
  guint removed = 0;

  media_store_usage (store, camera, &usage);
  if (usage.fragments == 0)
    return 0;
  sqlite3_stmt *oldest = prepare (store, "SELECT number, server_ms, bytes, " PINNED_SQL
                                         " FROM media_fragments f"
                                         " WHERE camera = ?1 ORDER BY number LIMIT 1000");
  sqlite3_stmt *del = prepare (store, "DELETE FROM media_fragments WHERE camera = ?"
                                      " AND number = ?");
  if (oldest == NULL || del == NULL) {
    sqlite3_finalize (oldest);
    sqlite3_finalize (del);
    return 0;
  }
  sqlite3_bind_text (oldest, 1, camera, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (oldest, 9, g_get_real_time () / 1000);
  sqlite3_bind_text (del, 1, camera, -1, SQLITE_STATIC);
  guint64 bytes = usage.bytes;
  GArray *doomed = g_array_new (FALSE, FALSE, sizeof (guint64));
  while (sqlite3_step (oldest) == SQLITE_ROW) {
    guint64 number = (guint64) sqlite3_column_int64 (oldest, 0);
    gint64 server_ms = sqlite3_column_int64 (oldest, 1);
    guint64 size = (guint64) sqlite3_column_int64 (oldest, 2);
    if (server_ms >= cutoff && (max_bytes == 0 || bytes <= max_bytes))
      break;
    if (sqlite3_column_int (oldest, 3))
      continue; /* footage around an event: kept for event_retention_hours */
    g_array_append_val (doomed, number);
    bytes -= size;
  }
  sqlite3_finalize (oldest);
  /* The index first: a fragment the index lacks is never served, and a
   * crash before the unlink leaves a file the next open indexes again and
   * the next pass removes. */
  sqlite3_exec (edge_state_db (store->state), "BEGIN", NULL, NULL, NULL);
  for (guint i = 0; i < doomed->len; i++) {
    sqlite3_bind_int64 (del, 2, (sqlite3_int64) g_array_index (doomed, guint64, i));
    sqlite3_step (del);
    sqlite3_reset (del);
  }
  sqlite3_exec (edge_state_db (store->state), "COMMIT", NULL, NULL, NULL);
  sqlite3_finalize (del);
  for (guint i = 0; i < doomed->len; i++)
    remove_fragment_file (store, camera, g_array_index (doomed, guint64, i));
  removed = doomed->len;
  g_array_unref (doomed);
  if (removed > 0) {
    /* Gaps wholly before what is left go with the footage. */
    sqlite3_stmt *g = prepare (store, "DELETE FROM media_gaps WHERE camera = ?1 AND end_ms <"
                                      " (SELECT coalesce(min(server_ms), 0) FROM media_fragments"
                                      " WHERE camera = ?1)");
    if (g) {
      sqlite3_bind_text (g, 1, camera, -1, SQLITE_STATIC);
      sqlite3_step (g);
      sqlite3_finalize (g);
    }
  }
  return removed;
}

guint64
media_store_free_bytes (MediaStore *store)
{
  struct statvfs st;
  if (statvfs (store->directory, &st) != 0)
    return G_MAXUINT64;
  return (guint64) st.f_bavail * st.f_frsize;
}

guint64
media_store_remove_oldest (MediaStore *store, guint64 bytes)
{
  /* Ordinary footage first; footage around events only when nothing else
   * is left to remove. */
  sqlite3_stmt *oldest = prepare (store, "SELECT camera, number, bytes FROM media_fragments f"
                                         " ORDER BY " PINNED_SQL ", server_ms LIMIT 500");
  sqlite3_stmt *del = prepare (store, "DELETE FROM media_fragments WHERE camera = ? AND number = ?");
  guint64 removed = 0;
  GPtrArray *cameras = g_ptr_array_new_with_free_func (g_free);
  GArray *numbers = g_array_new (FALSE, FALSE, sizeof (guint64));
  if (oldest == NULL || del == NULL)
    goto out;
  sqlite3_bind_int64 (oldest, 9, g_get_real_time () / 1000);
  while (removed < bytes && sqlite3_step (oldest) == SQLITE_ROW) {
    g_ptr_array_add (cameras, g_strdup ((const char *) sqlite3_column_text (oldest, 0)));
    guint64 number = (guint64) sqlite3_column_int64 (oldest, 1);
    g_array_append_val (numbers, number);
    removed += (guint64) sqlite3_column_int64 (oldest, 2);
  }
  sqlite3_reset (oldest);
  /* The index first, then the files (see media_store_enforce_retention). */
  sqlite3_exec (edge_state_db (store->state), "BEGIN", NULL, NULL, NULL);
  for (guint i = 0; i < numbers->len; i++) {
    sqlite3_bind_text (del, 1, g_ptr_array_index (cameras, i), -1, SQLITE_STATIC);
    sqlite3_bind_int64 (del, 2, (sqlite3_int64) g_array_index (numbers, guint64, i));
    sqlite3_step (del);
    sqlite3_reset (del);
  }
  sqlite3_exec (edge_state_db (store->state), "COMMIT", NULL, NULL, NULL);
  for (guint i = 0; i < numbers->len; i++)
    remove_fragment_file (store, g_ptr_array_index (cameras, i),
                          g_array_index (numbers, guint64, i));
out:
  sqlite3_finalize (oldest);
  sqlite3_finalize (del);
  g_ptr_array_unref (cameras);
  g_array_unref (numbers);
  return removed;
}

gboolean
media_store_delete_camera (MediaStore *store, const char *camera, GError **error)
{
  static const char *const tables[] = { "media_fragments", "media_inits", "media_gaps",
                                        "media_events" };
  g_autofree char *dir_path = g_build_filename (store->directory, camera, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (tables); i++) {
    g_autofree char *sql = g_strdup_printf ("DELETE FROM %s WHERE camera = ?", tables[i]);
    sqlite3_stmt *st = prepare (store, sql);
    if (st == NULL)
      return sql_error (store, error);
    sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
    gboolean ok = sqlite3_step (st) == SQLITE_DONE;
    sqlite3_finalize (st);
    if (!ok)
      return sql_error (store, error);
  }
  g_autoptr (GDir) dir = g_dir_open (dir_path, 0, NULL);
  const char *name;
  while (dir && (name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = g_build_filename (dir_path, name, NULL);
    g_unlink (path);
  }
  g_rmdir (dir_path);
  return TRUE;
}

/* ---- recovery ---- */

/* Indexes the files of @camera that the index lacks (written, then a crash
 * before the insert) and removes partial writes. */
static void
recover_camera (MediaStore *store, const char *camera)
{
  g_autofree char *dir_path = g_build_filename (store->directory, camera, NULL);
  g_autoptr (GDir) dir = g_dir_open (dir_path, 0, NULL);
  guint64 max_fragment = (guint64) query_int (
      store, "SELECT coalesce(max(number), 0) FROM media_fragments WHERE camera = ?", camera);
  guint64 max_init = (guint64) query_int (
      store, "SELECT coalesce(max(id), 0) FROM media_inits WHERE camera = ?", camera);
  const char *name;

  while (dir && (name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = g_build_filename (dir_path, name, NULL);
    g_autoptr (GError) error = NULL;
    gboolean init = g_str_has_suffix (name, ".init");
    if (g_str_has_suffix (name, ".tmp")) {
      g_unlink (path);
      continue;
    }
    if (!init && !g_str_has_suffix (name, ".frag"))
      continue;
    guint64 number = g_ascii_strtoull (name, NULL, 10);
    if (number <= (init ? max_init : max_fragment))
      continue;
    g_autoptr (GBytes) whole =
        read_sealed (store, camera, init ? KIND_INIT : KIND_FRAGMENT, number, &error);
    FileHeader h;
    if (whole == NULL ||
        !header_read (g_bytes_get_data (whole, NULL), g_bytes_get_size (whole), &h)) {
      g_warning ("camera \"%s\": %s does not open (%s); it is not served", camera, name,
                 error ? error->message : "bad header");
      continue;
    }
    gboolean ok = init ? media_store_index_init (store, camera, &h.init, &error)
                       : media_store_index_fragment (store, camera, &h.fragment, &error);
    if (!ok)
      g_warning ("camera \"%s\": cannot index %s: %s", camera, name, error->message);
    else
      g_message ("camera \"%s\": indexed %s, written before a crash", camera, name);
  }
}

MediaStore *
media_store_open (const char *directory, EdgeState *state, EdgeKeyring *keyring, GError **error)
{
  MediaStore *store = g_new0 (MediaStore, 1);
  store->directory = g_strdup (directory);
  store->state = state;
  store->keyring = keyring;

  if (g_mkdir_with_parents (directory, 0700) != 0) {
    g_set_error (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_IO, "cannot create %s: %s",
                 directory, g_strerror (errno));
    media_store_close (store);
    return NULL;
  }
  if (!edge_state_migrate (state, "media", media_schema, G_N_ELEMENTS (media_schema), error)) {
    media_store_close (store);
    return NULL;
  }
  g_autoptr (GDir) dir = g_dir_open (directory, 0, NULL);
  const char *name;
  while (dir && (name = g_dir_read_name (dir)) != NULL)
    if (media_camera_name_valid (name))
      recover_camera (store, name);
  return store;
}

void
media_store_close (MediaStore *store)
{
  if (store == NULL)
    return;
  g_free (store->directory);
  g_free (store);
}
