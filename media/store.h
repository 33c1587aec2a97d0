/* store.h: the encrypted fragment store and its index (media/store.c).
 *
 * Every fragment and init segment is one file under DIR/CAMERA/, sealed as
 * one AES-256-GCM frame under the camera's key (context "camera/NAME"),
 * bound to the camera and the fragment number, and self-describing: the
 * sealed payload starts with the fragment's metadata, so the index (SQLite,
 * the state database) can be rebuilt from the files after a crash between
 * the write and the index insert.
 *
 * Threads: media_store_write_* run on a camera's streaming thread (one
 * MediaStoreWriter per thread); media_store_read_* on any thread; every
 * other call on the main thread.
 */
#pragma once

#include "edge-core.h"
#include "fmp4.h"

G_BEGIN_DECLS

#define MEDIA_STORE_ERROR (media_store_error_quark ())
GQuark media_store_error_quark (void);
typedef enum {
  MEDIA_STORE_ERROR_IO,
  MEDIA_STORE_ERROR_NOT_FOUND,
  MEDIA_STORE_ERROR_CORRUPT, /* a file that does not open or parse */
  MEDIA_STORE_ERROR_SQL,
} MediaStoreError;

/* Camera (and Kinesis Video stream) names: 1 to 128 of a-z A-Z 0-9 _ . - */
#define MEDIA_CAMERA_NAME_MAX 128
gboolean media_camera_name_valid (const char *name);

/* What the index holds of one fragment. Times are Unix milliseconds. */
typedef struct {
  guint64 number;      /* monotonic per camera, from 1 */
  guint32 init_id;     /* the init segment it plays against */
  gint64 producer_ms;  /* when the source captured its first frame */
  gint64 server_ms;    /* when edged received its first frame */
  guint64 decode_time; /* tfdt, MEDIA_TIMESCALE units */
  guint32 duration_ms;
  guint32 frames;
  guint64 bytes;       /* plaintext fMP4 bytes */
} MediaFragmentMeta;

typedef struct {
  guint32 id;
  MediaCodec codec;
  guint width, height;
  gint64 created_ms;
} MediaInitMeta;

typedef struct _MediaStore MediaStore;

/* Opens the store under @directory (created 0700), migrates the media tables
 * and indexes any fragment file the index lacks. @state and @keyring are
 * borrowed. (transfer full) */
MediaStore *media_store_open (const char *directory, EdgeState *state, EdgeKeyring *keyring,
                              GError **error);
void media_store_close (MediaStore *store);

/* The next fragment number and init id for @camera: one past the largest
 * the index or the files hold. */
guint64 media_store_next_fragment (MediaStore *store, const char *camera);
guint32 media_store_next_init (MediaStore *store, const char *camera);

/* ---- writing (one writer per streaming thread) ---- */

typedef struct _MediaStoreWriter MediaStoreWriter;
MediaStoreWriter *media_store_writer_new (MediaStore *store, const char *camera, GError **error);
void media_store_writer_free (MediaStoreWriter *writer);
/* Seals and writes @fragment (moof + mdat) durably (written, fdatasync'd,
 * renamed into place). The caller indexes it with media_store_index_*. */
gboolean media_store_write_fragment (MediaStoreWriter *writer, const MediaFragmentMeta *meta,
                                     GBytes *fragment, GError **error);
gboolean media_store_write_init (MediaStoreWriter *writer, const MediaInitMeta *meta,
                                 GBytes *init, GError **error);

/* ---- the index (main thread) ---- */

gboolean media_store_index_fragment (MediaStore *store, const char *camera,
                                     const MediaFragmentMeta *meta, GError **error);
gboolean media_store_index_init (MediaStore *store, const char *camera, const MediaInitMeta *meta,
                                 GError **error);
/* A gap: the source gave nothing from @start_ms to @end_ms. */
gboolean media_store_index_gap (MediaStore *store, const char *camera, gint64 start_ms,
                                gint64 end_ms, const char *reason, GError **error);

typedef enum {
  MEDIA_TIME_SERVER,
  MEDIA_TIME_PRODUCER,
} MediaTimeKind;

/* Fragments of @camera that overlap [start_ms, end_ms) by @kind time
 * (a fragment overlaps when it starts before end_ms and ends after
 * start_ms), in fragment order, from the one after @after_number, at most
 * @limit. (transfer full): GArray of MediaFragmentMeta. */
GArray *media_store_list (MediaStore *store, const char *camera, MediaTimeKind kind,
                          gint64 start_ms, gint64 end_ms, guint64 after_number, guint limit);
/* The last @count fragments of @camera, oldest first. (transfer full) */
GArray *media_store_list_last (MediaStore *store, const char *camera, guint count);
/* One fragment's metadata; FALSE when the index has none. */
gboolean media_store_lookup (MediaStore *store, const char *camera, guint64 number,
                             MediaFragmentMeta *ret_meta);
gboolean media_store_lookup_init (MediaStore *store, const char *camera, guint32 id,
                                  MediaInitMeta *ret_meta);
/* Gaps of @camera overlapping [start_ms, end_ms): GArray of gint64 pairs
 * (start, end). (transfer full) */
GArray *media_store_gaps (MediaStore *store, const char *camera, gint64 start_ms, gint64 end_ms);

typedef struct {
  guint64 fragments;
  guint64 bytes;
  gint64 oldest_ms, newest_ms; /* server time; 0 when empty */
} MediaStoreUsage;
void media_store_usage (MediaStore *store, const char *camera, MediaStoreUsage *ret_usage);

/* Removes the oldest fragments of @camera until none is older than
 * @max_age_ms and the total is at most @max_bytes (0: no limit of that
 * kind). Returns how many were removed. */
guint media_store_enforce_retention (MediaStore *store, const char *camera, gint64 max_age_ms,
                                     guint64 max_bytes);
/* Removes the oldest fragments of any camera (by server time) until about
 * @bytes of them are gone; returns the bytes removed. */
guint64 media_store_remove_oldest (MediaStore *store, guint64 bytes);
/* Free bytes on the disk holding the store (statvfs), or G_MAXUINT64. */
guint64 media_store_free_bytes (MediaStore *store);

/* Forgets @camera's recordings: index rows (its events too) and files. */
gboolean media_store_delete_camera (MediaStore *store, const char *camera, GError **error);

/* ---- reading (any thread) ---- */

/* The plaintext fMP4 bytes of one fragment or init segment, authenticated.
 * (transfer full) */
GBytes *media_store_read_fragment (MediaStore *store, const char *camera, guint64 number,
                                   GError **error);
GBytes *media_store_read_init (MediaStore *store, const char *camera, guint32 id, GError **error);

G_END_DECLS
