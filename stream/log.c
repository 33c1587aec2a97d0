/* log.c: one shard's append-only log of encrypted record batches.
 *
 * A shard directory holds segment files named after the first record number
 * they hold (20 digits, so that names sort as numbers):
 *
 *     shard-0/00000000000000000000.seg
 *             00000000000000052311.seg   <- the open segment, appended to
 *
 * Segment file, integers big-endian:
 *
 *     +--------------------------------------------------------------+
 *     | "EDGS" | ver=1 | 0 | header len=32 (u16) | shard ordinal u32 |  segment header
 *     | 0 (u32) | first record number (u64) | created, Unix ms (i64) |  (32 bytes)
 *     | key check: an empty frame sealed with the 32 bytes above as   |
 *     |   AAD (60 bytes)                                              |
 *     +--------------------------------------------------------------+
 *     | batch header (24 bytes, clear, authenticated):                |
 *     |   first record number u64 | count u32 | 0 u32 | arrival ms i64|
 *     | frame: EDGF header | AES-256-GCM ciphertext | tag              |  batch 1
 *     |   AAD = shard ordinal u32 || batch header                     |
 *     +--------------------------------------------------------------+
 *     | batch 2 ...                                                   |
 *
 * Batch plaintext: per record, partition key length u16 | data length u32 |
 * partition key | data. A record with attributes has the top bit of its key
 * length set (keys are at most 1024 bytes) and attributes length u32 |
 * attributes after its data. No payload byte is ever written in the clear; the
 * batch header (numbers, count, time) is, so that the log can be indexed and
 * cut without decrypting, and it is authenticated with the frame so it cannot
 * be altered either. Binding the shard ordinal and the record numbers into
 * the tag means a batch copied to another shard or another position does not
 * open.
 *
 * The key check tells a wrong key from damage: without it, a log opened
 * with the wrong master key file would fail every batch and recovery would
 * cut them all away. With it, the open is refused and nothing is touched.
 *
 * Recovery: older segments are indexed from their batch headers; the last
 * segment (the only one a crash can leave half-written) is authenticated
 * batch by batch to its end and cut at the first batch that is incomplete,
 * or that fails with nothing authentic after it: that removes a torn tail.
 * A damaged batch followed by good ones is damage, not a tail: it stays, and
 * reads report it. Reads authenticate every batch they
 * return, so a byte flipped anywhere later is detected, never served.
 *
 * Threads: one writer (append, sync, trim) and any number of readers. The
 * segment list is under a mutex; file data is read with pread outside it.
 */
#define G_LOG_DOMAIN "stream"

#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEGMENT_MAGIC "EDGS"
#define SEGMENT_VERSION 1
#define SEGMENT_FIXED_BYTES 32
#define SEGMENT_HEADER_BYTES (SEGMENT_FIXED_BYTES + EDGE_FRAME_OVERHEAD)
#define BATCH_HEADER_BYTES 24
#define BATCH_MAX_RECORDS 100000
#define KEY_HAS_ATTRIBUTES 0x8000
#define DEFAULT_SEGMENT_BYTES (64 * 1024 * 1024)

typedef struct {
  guint64 first;
  guint32 count;
  guint32 length; /* batch header + frame */
  guint64 offset;
  gint64 arrival_ms;
} BatchEntry;

typedef struct {
  char *path;
  guint64 first; /* from the file name and header */
  guint64 next;  /* one past the last record */
  guint64 size;  /* bytes of valid content */
  gint64 created_ms;
  GArray *batches; /* BatchEntry */
} Segment;

struct _StreamLog {
  char *directory;
  guint32 ordinal;
  gint64 segment_max_bytes;
  EdgeCipher *write_cipher; /* writer thread only */
  EdgeCipher *read_cipher;  /* under read_lock */
  GMutex read_lock;
  GMutex lock;          /* segments, next */
  GPtrArray *segments;  /* Segment, by first number */
  guint64 next;
  int fd;               /* the open (last) segment, writer only */
  gboolean dirty;       /* written since the last sync */
};

static void
segment_free (gpointer data)
{
  Segment *s = data;
  g_free (s->path);
  g_array_unref (s->batches);
  g_free (s);
}

static Segment *
segment_new (const char *directory, guint64 first)
{
  Segment *s = g_new0 (Segment, 1);
  g_autofree char *name = g_strdup_printf ("%020" G_GUINT64_FORMAT ".seg", first);
  s->path = g_build_filename (directory, name, NULL);
  s->first = s->next = first;
  s->batches = g_array_new (FALSE, FALSE, sizeof (BatchEntry));
  return s;
}

static gboolean
io_error (GError **error, const char *what, const char *path)
{
  int saved = errno;
  /* A full disk is a condition to back off from, not a failure of the log. */
  StreamError code = saved == ENOSPC || saved == EDQUOT ? STREAM_ERROR_NO_SPACE : STREAM_ERROR_IO;
  g_set_error (error, STREAM_ERROR, code, "%s %s: %s", what, path, g_strerror (saved));
  return FALSE;
}

static gboolean
pread_all (int fd, guint8 *buf, gsize len, guint64 offset)
{
  while (len > 0) {
    ssize_t n = pread (fd, buf, len, (off_t) offset);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return FALSE;
    buf += n;
    len -= n;
    offset += n;
  }
  return TRUE;
}

static gboolean
pwrite_all (int fd, const guint8 *buf, gsize len, guint64 offset)
{
  while (len > 0) {
    ssize_t n = pwrite (fd, buf, len, (off_t) offset);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO;
      return FALSE;
    }
    buf += n;
    len -= n;
    offset += n;
  }
  return TRUE;
}

static void
fsync_directory (const char *directory)
{
  int fd = open (directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync (fd);
    close (fd);
  }
}

/* --- batches --- */

static void
batch_aad (guint8 aad[4 + BATCH_HEADER_BYTES], guint32 ordinal, const guint8 *header)
{
  edge_put_be32 (aad, ordinal);
  memcpy (aad + 4, header, BATCH_HEADER_BYTES);
}

/* Opens the batch at @buf (exactly @len bytes) into its records. */
static gboolean
batch_decode (StreamLog *log, const guint8 *buf, gsize len, GPtrArray *out, GError **error)
{
  guint8 aad[4 + BATCH_HEADER_BYTES];
  guint64 first = edge_get_be64 (buf);
  guint32 count = edge_get_be32 (buf + 8);
  gint64 arrival = (gint64) edge_get_be64 (buf + 16);
  gsize frame_len = len - BATCH_HEADER_BYTES;
  g_autofree guint8 *plain = g_try_malloc (frame_len);
  gsize plain_len = 0;
  gboolean ok;

  if (plain == NULL) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_IO, "out of memory for a %zu-byte batch", len);
    return FALSE;
  }
  batch_aad (aad, log->ordinal, buf);
  g_mutex_lock (&log->read_lock);
  ok = edge_cipher_open (log->read_cipher, buf + BATCH_HEADER_BYTES, frame_len, aad, sizeof aad,
                         plain, &plain_len, error);
  g_mutex_unlock (&log->read_lock);
  if (!ok) {
    g_prefix_error (error, "records %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ": ", first,
                    first + count - 1);
    if (error && *error) {
      (*error)->domain = STREAM_ERROR;
      (*error)->code = STREAM_ERROR_CORRUPT;
    }
    return FALSE;
  }
  /* Records' data are slices of the batch's plaintext, not copies: a read
   * of thousands of records allocates once per batch. */
  g_autoptr (GBytes) batch = g_bytes_new_take (g_steal_pointer (&plain), plain_len);
  const guint8 *p = g_bytes_get_data (batch, NULL);
  gsize off = 0;
  for (guint32 i = 0; i < count; i++) {
    if (plain_len - off < 6)
      goto malformed;
    guint16 key_len = (guint16) (p[off] << 8 | p[off + 1]);
    gboolean has_attributes = (key_len & KEY_HAS_ATTRIBUTES) != 0;
    key_len &= ~KEY_HAS_ATTRIBUTES;
    guint32 data_len = edge_get_be32 (p + off + 2);
    off += 6;
    if (key_len > plain_len - off || data_len > plain_len - off - key_len)
      goto malformed;
    StreamRecord *r = g_new0 (StreamRecord, 1);
    r->number = first + i;
    r->arrival_ms = arrival;
    r->partition_key = g_strndup ((const char *) p + off, key_len);
    r->data = g_bytes_new_from_bytes (batch, off + key_len, data_len);
    g_ptr_array_add (out, r);
    off += key_len + data_len;
    if (has_attributes) {
      if (plain_len - off < 4)
        goto malformed;
      guint32 attr_len = edge_get_be32 (p + off);
      off += 4;
      if (attr_len > plain_len - off)
        goto malformed;
      r->attributes = g_bytes_new_from_bytes (batch, off, attr_len);
      off += attr_len;
    }
  }
  if (off != plain_len)
    goto malformed;
  return TRUE;

malformed:
  /* Authentic but not a batch we would write: a bug, never served. */
  g_set_error (error, STREAM_ERROR, STREAM_ERROR_CORRUPT,
               "records %" G_GUINT64_FORMAT ": batch content is malformed", first);
  return FALSE;
}

/* Reads the batch header and frame length at @offset; the batch's total
 * length in *ret_length, or FALSE if what is there is not a whole batch. */
static gboolean
batch_peek (int fd, guint64 offset, guint64 file_size, guint8 header[BATCH_HEADER_BYTES],
            guint32 *ret_length)
{
  guint8 frame_header[EDGE_FRAME_HEADER_BYTES];
  gssize frame_len;

  if (file_size - offset < BATCH_HEADER_BYTES + EDGE_FRAME_OVERHEAD)
    return FALSE;
  if (!pread_all (fd, header, BATCH_HEADER_BYTES, offset) ||
      !pread_all (fd, frame_header, sizeof frame_header, offset + BATCH_HEADER_BYTES))
    return FALSE;
  frame_len = edge_frame_length (frame_header, sizeof frame_header, NULL);
  if (frame_len < 0 || (guint64) frame_len > file_size - offset - BATCH_HEADER_BYTES)
    return FALSE;
  *ret_length = BATCH_HEADER_BYTES + (guint32) frame_len;
  return TRUE;
}

static gboolean
batch_authentic (StreamLog *log, int fd, guint64 offset, guint32 length)
{
  g_autofree guint8 *buf = g_try_malloc (length);
  g_autoptr (GPtrArray) records = g_ptr_array_new_with_free_func (
      (GDestroyNotify) stream_record_free);
  return buf != NULL && pread_all (fd, buf, length, offset) &&
         batch_decode (log, buf, length, records, NULL);
}

/* --- opening --- */

static gboolean
segment_write_header (StreamLog *log, int fd, guint64 first, gint64 created_ms, GError **error)
{
  guint8 h[SEGMENT_HEADER_BYTES] = { 0 };
  memcpy (h, SEGMENT_MAGIC, 4);
  h[4] = SEGMENT_VERSION;
  h[6] = 0;
  h[7] = SEGMENT_FIXED_BYTES;
  edge_put_be32 (h + 8, log->ordinal);
  edge_put_be64 (h + 16, first);
  edge_put_be64 (h + 24, (guint64) created_ms);
  if (!edge_cipher_seal (log->write_cipher, NULL, 0, h, SEGMENT_FIXED_BYTES,
                         h + SEGMENT_FIXED_BYTES, error))
    return FALSE;
  if (!pwrite_all (fd, h, sizeof h, 0)) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_IO, "cannot write a segment header: %s",
                 g_strerror (errno));
    return FALSE;
  }
  return TRUE;
}

/* Indexes @s from its file. With @authenticate, every batch is opened and
 * the file is cut at the first one that is incomplete or fails; without, the
 * index stops at the first batch that is not whole. */
static gboolean
segment_load (StreamLog *log, Segment *s, gboolean authenticate, GError **error)
{
  guint8 h[SEGMENT_HEADER_BYTES];
  struct stat st;
  guint64 offset = SEGMENT_HEADER_BYTES;
  int fd = open (s->path, (authenticate ? O_RDWR : O_RDONLY) | O_CLOEXEC);

  if (fd < 0)
    return io_error (error, "cannot open", s->path);
  if (fstat (fd, &st) != 0) {
    close (fd);
    return io_error (error, "cannot stat", s->path);
  }
  if ((guint64) st.st_size < SEGMENT_HEADER_BYTES || !pread_all (fd, h, sizeof h, 0) ||
      memcmp (h, SEGMENT_MAGIC, 4) != 0 || h[4] != SEGMENT_VERSION ||
      h[7] != SEGMENT_FIXED_BYTES || edge_get_be32 (h + 8) != log->ordinal ||
      edge_get_be64 (h + 16) != s->first) {
    close (fd);
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_CORRUPT, "%s: not a segment of this shard",
                 s->path);
    return FALSE;
  }
  {
    guint8 nothing[1];
    gsize len;
    g_autoptr (GError) key_error = NULL;
    g_mutex_lock (&log->read_lock);
    gboolean ok = edge_cipher_open (log->read_cipher, h + SEGMENT_FIXED_BYTES, EDGE_FRAME_OVERHEAD,
                                    h, SEGMENT_FIXED_BYTES, nothing, &len, &key_error);
    g_mutex_unlock (&log->read_lock);
    if (!ok) {
      close (fd);
      g_set_error (error, STREAM_ERROR, STREAM_ERROR_WRONG_KEY,
                   "%s: sealed under keys this master key file does not hold (%s); nothing was "
                   "changed",
                   s->path, key_error->message);
      return FALSE;
    }
  }
  s->created_ms = (gint64) edge_get_be64 (h + 24);

  for (;;) {
    guint8 header[BATCH_HEADER_BYTES];
    guint32 length;
    if (!batch_peek (fd, offset, (guint64) st.st_size, header, &length))
      break;
    guint64 first = edge_get_be64 (header);
    guint32 count = edge_get_be32 (header + 8);
    if (first != s->next || count == 0 || count > BATCH_MAX_RECORDS)
      break;
    if (authenticate && !batch_authentic (log, fd, offset, length)) {
      /* A torn tail ends the file; a damaged batch with a whole, authentic
       * successor is damage in place: keep it indexed (reads report it)
       * rather than cut away the good batches after it. */
      guint8 next_header[BATCH_HEADER_BYTES];
      guint32 next_length;
      if (!batch_peek (fd, offset + length, (guint64) st.st_size, next_header, &next_length) ||
          edge_get_be64 (next_header) != first + count ||
          !batch_authentic (log, fd, offset + length, next_length))
        break;
    }
    BatchEntry e = { first, count, length, offset, (gint64) edge_get_be64 (header + 16) };
    g_array_append_val (s->batches, e);
    s->next = first + count;
    offset += length;
  }
  s->size = offset;
  if (authenticate && offset < (guint64) st.st_size) {
    /* A torn or corrupt tail: cut it, durably, before anything is appended. */
    if (ftruncate (fd, (off_t) offset) != 0 || fsync (fd) != 0) {
      close (fd);
      return io_error (error, "cannot truncate the torn tail of", s->path);
    }
  }
  close (fd);
  return TRUE;
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static gboolean
log_start_segment (StreamLog *log, guint64 first, GError **error)
{
  Segment *s = segment_new (log->directory, first);
  gint64 now = g_get_real_time () / 1000;
  int fd = open (s->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    io_error (error, "cannot create", s->path);
    segment_free (s);
    return FALSE;
  }
  if (!segment_write_header (log, fd, first, now, error) || fdatasync (fd) != 0) {
    if (error && *error == NULL)
      io_error (error, "cannot sync", s->path);
    close (fd);
    g_unlink (s->path);
    segment_free (s);
    return FALSE;
  }
  fsync_directory (log->directory);
  s->created_ms = now;
  s->size = SEGMENT_HEADER_BYTES;
  if (log->fd >= 0) {
    /* The previous segment's tail must be durable before the new one is. */
    fdatasync (log->fd);
    close (log->fd);
  }
  log->fd = fd;
  g_mutex_lock (&log->lock);
  g_ptr_array_add (log->segments, s);
  g_mutex_unlock (&log->lock);
  return TRUE;
}

StreamLog *
stream_log_open (const StreamLogOptions *options, GError **error)
{
  g_autoptr (StreamLog) log = g_new0 (StreamLog, 1);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GDir) dir = NULL;
  g_autoptr (GError) dir_error = NULL;
  const char *name;

  log->directory = g_strdup (options->directory);
  log->ordinal = options->shard_ordinal;
  log->segment_max_bytes =
      options->segment_max_bytes > 0 ? options->segment_max_bytes : DEFAULT_SEGMENT_BYTES;
  log->segments = g_ptr_array_new_with_free_func (segment_free);
  log->fd = -1;
  g_mutex_init (&log->lock);
  g_mutex_init (&log->read_lock);
  log->write_cipher = edge_cipher_new (options->keyring, options->context, error);
  if (log->write_cipher == NULL)
    return NULL;
  log->read_cipher = edge_cipher_new (options->keyring, options->context, error);
  if (log->read_cipher == NULL)
    return NULL;

  if (g_mkdir_with_parents (log->directory, 0700) != 0) {
    io_error (error, "cannot create", log->directory);
    return NULL;
  }
  dir = g_dir_open (log->directory, 0, &dir_error);
  if (dir == NULL) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_IO, "%s", dir_error->message);
    return NULL;
  }
  while ((name = g_dir_read_name (dir)) != NULL) {
    guint64 first;
    if (strlen (name) == 24 && g_str_has_suffix (name, ".seg")) {
      g_autofree char *digits = g_strndup (name, 20);
      if (g_ascii_string_to_unsigned (digits, 10, 0, G_MAXUINT64, &first, NULL))
        g_ptr_array_add (names, g_strdup (name));
    }
  }
  g_ptr_array_sort (names, compare_names);

  for (guint i = 0; i < names->len; i++) {
    const char *n = g_ptr_array_index (names, i);
    g_autofree char *digits = g_strndup (n, 20);
    guint64 first = g_ascii_strtoull (digits, NULL, 10);
    gboolean last = i + 1 == names->len;
    Segment *s = segment_new (log->directory, first);

    if (log->segments->len > 0) {
      Segment *prev = g_ptr_array_index (log->segments, log->segments->len - 1);
      if (first < prev->next) {
        segment_free (s);
        g_set_error (error, STREAM_ERROR, STREAM_ERROR_CORRUPT,
                     "%s: segment %s overlaps the one before it", log->directory, n);
        return NULL;
      }
    }
    if (!segment_load (log, s, last, error)) {
      /* A last segment whose header never reached the disk holds nothing:
       * start it again. Anything else is for a person to look at. */
      struct stat st;
      if (last && stat (s->path, &st) == 0 && st.st_size < SEGMENT_HEADER_BYTES) {
        g_clear_error (error);
        g_unlink (s->path);
        segment_free (s);
        continue;
      }
      segment_free (s);
      return NULL;
    }
    g_ptr_array_add (log->segments, s);
  }

  if (log->segments->len == 0) {
    if (!log_start_segment (log, 0, error))
      return NULL;
    log->next = 0;
  } else {
    Segment *last = g_ptr_array_index (log->segments, log->segments->len - 1);
    log->next = last->next;
    log->fd = open (last->path, O_RDWR | O_CLOEXEC);
    if (log->fd < 0) {
      io_error (error, "cannot open", last->path);
      return NULL;
    }
  }
  return g_steal_pointer (&log);
}

void
stream_log_close (StreamLog *log)
{
  if (log == NULL)
    return;
  if (log->fd >= 0) {
    if (log->dirty)
      fdatasync (log->fd);
    close (log->fd);
  }
  edge_cipher_free (log->write_cipher);
  edge_cipher_free (log->read_cipher);
  if (log->segments)
    g_ptr_array_unref (log->segments);
  g_mutex_clear (&log->lock);
  g_mutex_clear (&log->read_lock);
  g_free (log->directory);
  g_free (log);
}

/* --- appending --- */

gboolean
stream_log_append (StreamLog *log, const char *const *partition_keys, GBytes *const *data,
                   GBytes *const *attributes, guint n, gint64 arrival_ms, guint64 *ret_first,
                   GError **error)
{
  Segment *seg;
  gsize plain_len = 0;
  guint8 header[BATCH_HEADER_BYTES] = { 0 };
  guint8 aad[4 + BATCH_HEADER_BYTES];

  if (n == 0 || n > BATCH_MAX_RECORDS) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID, "a batch holds 1 to %d records",
                 BATCH_MAX_RECORDS);
    return FALSE;
  }
  for (guint i = 0; i < n; i++) {
    gsize key_len = strlen (partition_keys[i]);
    gsize attr_len = attributes && attributes[i] ? g_bytes_get_size (attributes[i]) : 0;
    if (key_len > STREAM_PARTITION_KEY_MAX_BYTES ||
        g_bytes_get_size (data[i]) > STREAM_RECORD_HARD_MAX_BYTES ||
        attr_len > STREAM_ATTRIBUTES_MAX_BYTES) {
      g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID, "record %u is over the limits", i);
      return FALSE;
    }
    plain_len += 6 + key_len + g_bytes_get_size (data[i]);
    if (attributes && attributes[i])
      plain_len += 4 + attr_len;
  }
  if (plain_len > EDGE_FRAME_MAX_PAYLOAD) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_INVALID, "a batch of %zu bytes is too large",
                 plain_len);
    return FALSE;
  }

  g_mutex_lock (&log->lock);
  seg = g_ptr_array_index (log->segments, log->segments->len - 1);
  g_mutex_unlock (&log->lock);
  if (seg->size > SEGMENT_HEADER_BYTES &&
      seg->size + BATCH_HEADER_BYTES + EDGE_FRAME_OVERHEAD + plain_len > (guint64) log->segment_max_bytes) {
    if (!log_start_segment (log, log->next, error))
      return FALSE;
    g_mutex_lock (&log->lock);
    seg = g_ptr_array_index (log->segments, log->segments->len - 1);
    g_mutex_unlock (&log->lock);
  }

  gsize total = BATCH_HEADER_BYTES + EDGE_FRAME_OVERHEAD + plain_len;
  g_autofree guint8 *buf = g_try_malloc (total);
  g_autofree guint8 *plain = g_try_malloc (plain_len);
  if (buf == NULL || plain == NULL) {
    g_set_error (error, STREAM_ERROR, STREAM_ERROR_IO, "out of memory for a %zu-byte batch", total);
    return FALSE;
  }
  gsize off = 0;
  for (guint i = 0; i < n; i++) {
    gsize key_len = strlen (partition_keys[i]);
    gsize data_len;
    const guint8 *bytes = g_bytes_get_data (data[i], &data_len);
    GBytes *attrs = attributes ? attributes[i] : NULL;
    guint16 key_field = (guint16) key_len | (attrs ? KEY_HAS_ATTRIBUTES : 0);
    plain[off] = (guint8) (key_field >> 8);
    plain[off + 1] = (guint8) key_field;
    edge_put_be32 (plain + off + 2, (guint32) data_len);
    memcpy (plain + off + 6, partition_keys[i], key_len);
    if (data_len)
      memcpy (plain + off + 6 + key_len, bytes, data_len);
    off += 6 + key_len + data_len;
    if (attrs) {
      gsize attr_len;
      const guint8 *attr = g_bytes_get_data (attrs, &attr_len);
      edge_put_be32 (plain + off, (guint32) attr_len);
      if (attr_len)
        memcpy (plain + off + 4, attr, attr_len);
      off += 4 + attr_len;
    }
  }

  edge_put_be64 (header, log->next);
  edge_put_be32 (header + 8, n);
  edge_put_be64 (header + 16, (guint64) arrival_ms);
  memcpy (buf, header, BATCH_HEADER_BYTES);
  batch_aad (aad, log->ordinal, header);
  if (!edge_cipher_seal (log->write_cipher, plain, plain_len, aad, sizeof aad,
                         buf + BATCH_HEADER_BYTES, error))
    return FALSE;

  if (!pwrite_all (log->fd, buf, total, seg->size)) {
    int saved = errno;
    /* Leave no partial batch behind for the next append to follow. */
    if (ftruncate (log->fd, (off_t) seg->size) != 0) {
      /* recovery will cut it on the next open */
    }
    errno = saved;
    return io_error (error, "cannot write to", seg->path);
  }
  BatchEntry e = { log->next, n, (guint32) total, seg->size, arrival_ms };
  g_mutex_lock (&log->lock);
  g_array_append_val (seg->batches, e);
  seg->size += total;
  seg->next = log->next + n;
  if (ret_first)
    *ret_first = log->next;
  log->next += n;
  g_mutex_unlock (&log->lock);
  log->dirty = TRUE;
  return TRUE;
}

gboolean
stream_log_sync (StreamLog *log, GError **error)
{
  if (!log->dirty)
    return TRUE;
  if (fdatasync (log->fd) != 0) {
    Segment *seg = g_ptr_array_index (log->segments, log->segments->len - 1);
    return io_error (error, "cannot sync", seg->path);
  }
  log->dirty = FALSE;
  return TRUE;
}

guint64
stream_log_next_number (StreamLog *log)
{
  g_mutex_lock (&log->lock);
  guint64 next = log->next;
  g_mutex_unlock (&log->lock);
  return next;
}

guint64
stream_log_first_number (StreamLog *log)
{
  g_mutex_lock (&log->lock);
  Segment *s = g_ptr_array_index (log->segments, 0);
  guint64 first = s->batches->len ? g_array_index (s->batches, BatchEntry, 0).first : s->first;
  g_mutex_unlock (&log->lock);
  return first;
}

guint64
stream_log_size (StreamLog *log)
{
  guint64 total = 0;
  g_mutex_lock (&log->lock);
  for (guint i = 0; i < log->segments->len; i++)
    total += ((Segment *) g_ptr_array_index (log->segments, i))->size;
  g_mutex_unlock (&log->lock);
  return total;
}

/* --- reading --- */

/* With the lock held: the batches to read from @from, copied out, with the
 * segment path. FALSE when @from is at or past the end. */
static gboolean
log_locate (StreamLog *log, guint64 from, gsize max_bytes, char **ret_path, GArray **ret_batches)
{
  for (guint i = 0; i < log->segments->len; i++) {
    Segment *s = g_ptr_array_index (log->segments, i);
    if (s->next <= from || s->batches->len == 0)
      continue;
    /* The first batch whose range reaches @from (binary search). */
    guint lo = 0, hi = s->batches->len;
    while (lo < hi) {
      guint mid = (lo + hi) / 2;
      BatchEntry *e = &g_array_index (s->batches, BatchEntry, mid);
      if (e->first + e->count <= from)
        lo = mid + 1;
      else
        hi = mid;
    }
    GArray *out = g_array_new (FALSE, FALSE, sizeof (BatchEntry));
    gsize bytes = 0;
    for (guint b = lo; b < s->batches->len && (out->len == 0 || bytes < max_bytes); b++) {
      BatchEntry *e = &g_array_index (s->batches, BatchEntry, b);
      g_array_append_val (out, *e);
      bytes += e->length;
    }
    *ret_path = g_strdup (s->path);
    *ret_batches = out;
    return TRUE;
  }
  return FALSE;
}

gboolean
stream_log_read (StreamLog *log, guint64 from, guint max_records, gsize max_bytes, GPtrArray *out,
                 guint64 *ret_next, GError **error)
{
  g_autofree char *path = NULL;
  g_autoptr (GArray) batches = NULL;
  guint64 next = from;
  gsize bytes = 0;
  guint taken = 0;
  int fd;

  g_mutex_lock (&log->lock);
  gboolean found = log_locate (log, from, max_bytes, &path, &batches);
  guint64 first_kept = ((Segment *) g_ptr_array_index (log->segments, 0))->first;
  g_mutex_unlock (&log->lock);
  if (from < first_kept && ret_next) {
    /* Trimmed by retention: continue from the oldest record kept. */
    from = next = first_kept;
    g_clear_pointer (&path, g_free);
    g_clear_pointer (&batches, g_array_unref);
    g_mutex_lock (&log->lock);
    found = log_locate (log, from, max_bytes, &path, &batches);
    g_mutex_unlock (&log->lock);
  }
  if (!found) {
    if (ret_next)
      *ret_next = from;
    return TRUE;
  }

  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      g_set_error (error, STREAM_ERROR, STREAM_ERROR_TRIMMED,
                   "record %" G_GUINT64_FORMAT " was removed by retention", from);
      return FALSE;
    }
    return io_error (error, "cannot open", path);
  }
  for (guint b = 0; b < batches->len && taken < max_records; b++) {
    BatchEntry *e = &g_array_index (batches, BatchEntry, b);
    g_autofree guint8 *buf = g_try_malloc (e->length);
    g_autoptr (GPtrArray) records = g_ptr_array_new_with_free_func (
        (GDestroyNotify) stream_record_free);
    if (buf == NULL || !pread_all (fd, buf, e->length, e->offset)) {
      close (fd);
      return io_error (error, "cannot read", path);
    }
    if (!batch_decode (log, buf, e->length, records, taken > 0 ? NULL : error)) {
      if (taken > 0)
        break; /* return the good records; the next read reports the damage */
      close (fd);
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
    for (guint i = 0; i < records->len && taken < max_records; i++) {
      StreamRecord *r = g_ptr_array_index (records, i);
      if (r->number < from)
        continue;
      gsize size = g_bytes_get_size (r->data);
      if (taken > 0 && bytes + size > max_bytes)
        goto done;
      g_ptr_array_add (out, r);
      records->pdata[i] = NULL; /* now out's */
      bytes += size;
      taken++;
      next = r->number + 1;
    }
  }
done:
  close (fd);
  if (ret_next)
    *ret_next = next;
  return TRUE;
}

guint64
stream_log_find_time (StreamLog *log, gint64 arrival_ms)
{
  guint64 result;
  g_mutex_lock (&log->lock);
  result = log->next;
  for (guint i = 0; i < log->segments->len; i++) {
    Segment *s = g_ptr_array_index (log->segments, i);
    for (guint b = 0; b < s->batches->len; b++) {
      BatchEntry *e = &g_array_index (s->batches, BatchEntry, b);
      if (e->arrival_ms >= arrival_ms) {
        result = e->first;
        goto out;
      }
    }
  }
out:
  g_mutex_unlock (&log->lock);
  return result;
}

guint
stream_log_trim (StreamLog *log, gint64 before_ms, guint64 max_bytes)
{
  guint removed = 0;
  g_mutex_lock (&log->lock);
  guint64 total = 0;
  for (guint i = 0; i < log->segments->len; i++)
    total += ((Segment *) g_ptr_array_index (log->segments, i))->size;
  while (log->segments->len > 1) {
    Segment *s = g_ptr_array_index (log->segments, 0);
    gint64 newest = s->batches->len
                        ? g_array_index (s->batches, BatchEntry, s->batches->len - 1).arrival_ms
                        : s->created_ms;
    if (newest >= before_ms && (max_bytes == 0 || total <= max_bytes))
      break;
    g_unlink (s->path);
    total -= s->size;
    g_ptr_array_remove_index (log->segments, 0);
    removed++;
  }
  g_mutex_unlock (&log->lock);
  if (removed)
    fsync_directory (log->directory);
  return removed;
}
