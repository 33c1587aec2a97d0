/* stream.h: data streams, the data plane of edged (docs/internals/stream.md).
 *
 * A stream is a set of shards over the 128-bit hash-key space; a record goes
 * to the shard whose range holds MD5(partition key), as Kinesis does. Each
 * shard is an append-only log of encrypted record batches in segment files.
 *
 * This header has three parts: the hash-key and sequence-number arithmetic
 * (pure), the shard log (one shard's files: append, recover, read), and the
 * batch codec the log and the tests share.
 *
 * Errors: gboolean + GError in STREAM_ERROR. Nothing here logs.
 */
#pragma once

#include "edge-core.h"
#include "edge-gateway.h"

#include <gio/gio.h>

G_BEGIN_DECLS

#define STREAM_ERROR (stream_error_quark ())
GQuark stream_error_quark (void);
typedef enum {
  STREAM_ERROR_IO,        /* a file could not be read or written */
  STREAM_ERROR_CORRUPT,   /* bytes on disk failed their check: never served */
  STREAM_ERROR_INVALID,   /* an argument out of range */
  STREAM_ERROR_TRIMMED,   /* the record asked for was removed by retention */
  STREAM_ERROR_WRONG_KEY, /* sealed under keys the key file does not hold: nothing touched */
  STREAM_ERROR_NOT_FOUND, /* no such stream or shard */
  STREAM_ERROR_EXISTS,    /* a stream of that name exists */
  STREAM_ERROR_LIMIT,     /* a configured limit says no */
  STREAM_ERROR_NO_SPACE,  /* the disk is full, or below the configured reserve: back off */
  STREAM_ERROR_THROTTLED, /* over a shard's configured write rate: back off */
} StreamError;

/* Record limits. A stream's own limit is between 1 KiB and the hard maximum. */
#define STREAM_RECORD_DEFAULT_MAX_BYTES (1024 * 1024)
#define STREAM_RECORD_HARD_MAX_BYTES (10 * 1024 * 1024)
/* Kinesis allows 256 characters: up to 1024 bytes of UTF-8. */
#define STREAM_PARTITION_KEY_MAX_BYTES 1024
/* A record's attributes: what its producer knew beside the data (an MQTT
 * message's topic and flags), a JSON object. Not part of the data. */
#define STREAM_ATTRIBUTES_MAX_BYTES (16 * 1024)

/* ---- hash keys (unsigned 128-bit, big-endian bytes) ---- */

typedef struct {
  guint8 bytes[16];
} StreamHashKey;

/* MD5 of the partition key, as Kinesis maps keys to shards. */
StreamHashKey stream_hash_key_for_partition_key (const char *key, gsize len);
/* Parses a decimal ExplicitHashKey (0 .. 2^128-1). */
gboolean stream_hash_key_parse (const char *decimal, StreamHashKey *ret_key);
/* The decimal form. (transfer full) */
char *stream_hash_key_format (const StreamHashKey *key);
int stream_hash_key_compare (const StreamHashKey *a, const StreamHashKey *b);
/* Splits the whole key space into @count equal ranges, as CreateStream does:
 * range i is [start_i, end_i], inclusive. */
void stream_hash_key_range (guint index, guint count, StreamHashKey *ret_start,
                            StreamHashKey *ret_end);

/* ---- sequence numbers ----
 * A record's position is (shard ordinal, record number). Its sequence number
 * is the decimal form of (ordinal + 1) * 2^80 + record number: strictly
 * increasing within a shard, distinct across shards, and parsed back without
 * any lookup. */
char *stream_sequence_format (guint32 shard_ordinal, guint64 record_number);
/* The longest sequence number: 2^112 - 1 has 34 digits; 39 for any u128. */
#define STREAM_SEQUENCE_MAX_LEN 39
/* The same into @ret, NUL-terminated, without allocating; returns the length. */
gsize stream_sequence_format_to (guint32 shard_ordinal, guint64 record_number,
                                 char ret[STREAM_SEQUENCE_MAX_LEN + 1]);
gboolean stream_sequence_parse (const char *decimal, guint32 *ret_shard_ordinal,
                                guint64 *ret_record_number);

/* ---- records and batches ---- */

typedef struct {
  guint64 number;     /* record number within the shard */
  gint64 arrival_ms;  /* approximate arrival time, Unix ms */
  char *partition_key; /* NUL-terminated, <= 256 bytes */
  GBytes *data;
  GBytes *attributes; /* nullable: the JSON object put beside the data */
} StreamRecord;

void stream_record_free (StreamRecord *record);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (StreamRecord, stream_record_free)

/* ---- the shard log ---- */

typedef enum {
  STREAM_DURABILITY_SYNC,  /* acknowledged after fsync */
  STREAM_DURABILITY_BATCH, /* fsync at least every batch window; acknowledged after it */
  STREAM_DURABILITY_NONE,  /* acknowledged after write(2); the kernel flushes */
} StreamDurability;

typedef struct {
  const char *directory;  /* the shard's own directory, created if missing */
  guint32 shard_ordinal;  /* bound into every batch's authenticated data */
  EdgeKeyring *keyring;   /* borrowed; must outlive the log */
  const char *context;    /* key context, "stream/<id>": the stream's own keys */
  gint64 segment_max_bytes; /* roll to a new segment file past this size */
} StreamLogOptions;

typedef struct _StreamLog StreamLog;

/* Opens a shard's log, recovering from a crash: the last segment is read
 * and authenticated to its end, and a torn or corrupt tail is cut off, so
 * that every record the log holds afterwards is whole and authentic. A log
 * sealed under other keys (the wrong master key file) is refused with
 * STREAM_ERROR_WRONG_KEY before anything is changed. (transfer full) */
StreamLog *stream_log_open (const StreamLogOptions *options, GError **error);
void stream_log_close (StreamLog *log);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (StreamLog, stream_log_close)

/* Appends @n records as one batch: numbers are assigned from next_number,
 * arrival times are the caller's. Written, not yet synced. On failure the
 * log is unchanged (a partial write is truncated away). Returns the first
 * number assigned in *ret_first. @attributes (nullable, and each nullable)
 * are kept beside the records' data. One writer thread at a time. */
gboolean stream_log_append (StreamLog *log, const char *const *partition_keys,
                            GBytes *const *data, GBytes *const *attributes, guint n,
                            gint64 arrival_ms, guint64 *ret_first, GError **error);
/* Makes every appended batch durable (fdatasync of the open segment). */
gboolean stream_log_sync (StreamLog *log, GError **error);

/* The number the next appended record will get; records [first, next) exist. */
guint64 stream_log_next_number (StreamLog *log);
guint64 stream_log_first_number (StreamLog *log);
/* Bytes on disk, all segments. */
guint64 stream_log_size (StreamLog *log);

/* Reads records with numbers >= @from, at most @max_records and about
 * @max_bytes of data (at least one record if any exists), into @out
 * (StreamRecord *, owned by the array's free function). Every batch read is
 * authenticated; a corrupt batch is an error naming where it is, and none
 * of its records is returned. *ret_next is the number to read from next.
 * Any thread, concurrently with the writer. */
gboolean stream_log_read (StreamLog *log, guint64 from, guint max_records, gsize max_bytes,
                          GPtrArray *out, guint64 *ret_next, GError **error);

/* The number of the first record that arrived at or after @arrival_ms
 * (next_number if none did). */
guint64 stream_log_find_time (StreamLog *log, gint64 arrival_ms);

/* Removes whole segments whose records all arrived before @before_ms, or,
 * oldest first, while the log is larger than @max_bytes (0: no size limit).
 * The open segment is never removed. Returns the number of segments removed. */
guint stream_log_trim (StreamLog *log, gint64 before_ms, guint64 max_bytes);

/* ---- the store: every stream of the daemon ---- */

#define STREAM_NAME_MAX 128
#define STREAM_MAX_SHARDS 256      /* open shards of one stream */
#define STREAM_MAX_SHARD_IDS 4096  /* shards of one stream over its life, closed ones too */
#define STREAM_RETENTION_MIN_HOURS 24
#define STREAM_RETENTION_MAX_HOURS 8760

typedef struct {
  StreamDurability durability;
  guint batch_ms;            /* STREAM_DURABILITY_BATCH: longest wait for an fsync */
  guint retention_hours;     /* 24 .. 8760 */
  guint64 retention_bytes;   /* per shard; 0: no size limit */
  guint64 max_record_bytes;  /* 1 KiB .. 10 MiB, data plus partition key */
} StreamSettings;

/* The defaults: sync, 24 hours, 1 MiB records. */
void stream_settings_init (StreamSettings *settings);

typedef struct {
  char *id;            /* "shardId-000000000000" */
  guint32 ordinal;
  StreamHashKey start; /* inclusive hash-key range */
  StreamHashKey end;
  char *parent;        /* nullable */
  char *adjacent_parent; /* nullable */
  gboolean closed;     /* takes no more records */
} StreamShardInfo;

typedef struct {
  char *name;
  char *id;              /* stable across renames of nothing: keys and files hang off it */
  gint64 created_ms;
  StreamSettings settings;
  GPtrArray *shards;     /* StreamShardInfo, by ordinal */
  GHashTable *tags;      /* char * -> char * */
} StreamInfo;

typedef struct _StreamStore StreamStore;

/* Opens every stream under @directory whose metadata @state holds,
 * recovering each shard's log. The state, keyring and the thread-default
 * main context (where callbacks run) are borrowed and must outlive the
 * store. (transfer full) */
StreamStore *stream_store_open (const char *directory, EdgeState *state, EdgeKeyring *keyring,
                                GError **error);
/* Puts are refused with STREAM_ERROR_NO_SPACE, before anything is written,
 * while the file system holding the store has fewer than @bytes free
 * (0: only a full disk stops writes). Checked at most once a second. */
void stream_store_set_min_free (StreamStore *store, guint64 bytes);

/* Finishes the writes under way (their callbacks still run) and closes. */
void stream_store_close (StreamStore *store);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (StreamStore, stream_store_close)

gboolean stream_store_create (StreamStore *store, const char *name, guint shard_count,
                              const StreamSettings *settings, GError **error);
gboolean stream_store_delete (StreamStore *store, const char *name, GError **error);
/* Stream names, sorted. (transfer full: free with g_ptr_array_unref) */
GPtrArray *stream_store_list (StreamStore *store);
/* (transfer none), valid on the main thread until the stream is deleted or
 * changed; NULL with STREAM_ERROR_NOT_FOUND. */
const StreamInfo *stream_store_lookup (StreamStore *store, const char *name, GError **error);
gboolean stream_store_set_retention (StreamStore *store, const char *name, guint hours,
                                     GError **error);
/* Keeps at most @bytes per shard (whole segments are removed, oldest
 * first, at the next retention pass); 0: no size limit. Persisted. */
gboolean stream_store_set_retention_bytes (StreamStore *store, const char *name, guint64 bytes,
                                           GError **error);

/* Write rates each shard of a stream takes; 0: no limit. Records over them
 * fail one by one with STREAM_ERROR_THROTTLED (a put of several records
 * may partly succeed), as Kinesis throttles a shard. Each shard's bucket
 * holds one second's worth, so bursts up to that pass at once; a record
 * larger than a second's bytes passes when the bucket is full. Set by the
 * configuration at every start, not persisted. */
typedef struct {
  guint64 records_per_second;
  guint64 bytes_per_second;
} StreamWriteLimit;

gboolean stream_store_set_write_limit (StreamStore *store, const char *name,
                                       const StreamWriteLimit *limit, GError **error);
gboolean stream_store_set_tags (StreamStore *store, const char *name, GHashTable *add,
                                const char *const *remove, GError **error);
/* [first, next) record numbers of a shard. */
gboolean stream_store_shard_range (StreamStore *store, const char *name, guint32 ordinal,
                                   guint64 *ret_first, guint64 *ret_next, GError **error);
/* Bytes the shard's log holds on disk. */
gboolean stream_store_shard_bytes (StreamStore *store, const char *name, guint32 ordinal,
                                   guint64 *ret_bytes, GError **error);
/* The first record number that arrived at or after @arrival_ms. */
gboolean stream_store_shard_find_time (StreamStore *store, const char *name, guint32 ordinal,
                                       gint64 arrival_ms, guint64 *ret_number, GError **error);

/* ---- registered consumers ---- */

#define STREAM_MAX_CONSUMERS 20

typedef struct {
  char *name;
  gint64 created_ms;
} StreamConsumerInfo;

void stream_consumer_info_free (StreamConsumerInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (StreamConsumerInfo, stream_consumer_info_free)

/* Registers a named consumer of @name (STREAM_ERROR_EXISTS if taken,
 * STREAM_ERROR_LIMIT past STREAM_MAX_CONSUMERS). */
gboolean stream_store_register_consumer (StreamStore *store, const char *name,
                                         const char *consumer, GError **error);
gboolean stream_store_deregister_consumer (StreamStore *store, const char *name,
                                           const char *consumer, GError **error);
/* The checkpoint (next record number to deliver) of @consumer in a shard;
 * FALSE when it has none. Main thread. */
gboolean stream_store_get_checkpoint (StreamStore *store, const char *name, const char *consumer,
                                      guint32 ordinal, guint64 *ret_next);
gboolean stream_store_set_checkpoint (StreamStore *store, const char *name, const char *consumer,
                                      guint32 ordinal, guint64 next, GError **error);
/* StreamConsumerInfo *, by name. (transfer full) */
GPtrArray *stream_store_list_consumers (StreamStore *store, const char *name, GError **error);

/* ---- in-process consumers with checkpoints ---- */

typedef enum {
  STREAM_START_TRIM_HORIZON, /* the oldest record kept */
  STREAM_START_LATEST,       /* records that arrive after the start */
} StreamStart;

typedef struct _StreamConsumer StreamConsumer;

/* Records of one shard, in order, handed to a consumer. */
typedef struct {
  guint32 shard_ordinal;
  const char *shard_id;
  GPtrArray *records; /* StreamRecord *, owned by the batch */
} StreamBatch;

/* Runs on the main context. The handler calls stream_consumer_done for the
 * batch exactly once, now or later. */
typedef void (*StreamConsumeFunc) (StreamConsumer *consumer, StreamBatch *batch,
                                   gpointer user_data);

/* Starts consuming @stream as the registered consumer @name (registered if
 * it is not yet), from its checkpoints, or from @start in shards it has
 * none for. Each shard has at most one batch (of at most @batch_size
 * records) out at a time, so records reach the handler in shard order; a
 * shard born of resharding is consumed only after its parents are consumed
 * to their end, so per-key order holds across splits and merges.
 * Delivery is at least once: a batch is delivered again after a restart
 * unless its success was recorded. (transfer full) */
StreamConsumer *stream_consumer_start (StreamStore *store, const char *stream, const char *name,
                                       StreamStart start, guint batch_size,
                                       StreamConsumeFunc func, gpointer user_data,
                                       GError **error);
/* Finishes @batch (which is freed): on success the shard's checkpoint moves
 * past it and is stored; on failure the same records are delivered again
 * after @retry_ms. */
void stream_consumer_done (StreamConsumer *consumer, StreamBatch *batch, gboolean success);
/* For handlers that gather several batches before they are done with them
 * (delivery's buffers): lets the shard's lane read on past @batch (which is
 * freed) without moving its checkpoint, and returns the record number that
 * follows the batch. The checkpoint moves with stream_consumer_commit once
 * the gathered records are safe; after a restart, delivery resumes from the
 * last commit. */
guint64 stream_consumer_release (StreamConsumer *consumer, StreamBatch *batch);
/* Stores @next as the checkpoint of shard @ordinal. */
gboolean stream_consumer_commit (StreamConsumer *consumer, guint32 ordinal, guint64 next,
                                 GError **error);
/* What @consumer has not yet checkpointed in @stream: from each shard's
 * checkpoint (or from @start before its first) to the shard's end, in
 * records, and estimated in bytes on disk (records behind times the
 * shard's mean record size on disk). Main thread. */
void stream_store_consumer_lag (StreamStore *store, const char *stream, const char *consumer,
                                StreamStart start, guint64 *ret_records, guint64 *ret_bytes);
/* Holds a batch shorter than the batch size for up to @ms after its first
 * record was seen, so that more records join it (0: deliver at once). */
void stream_consumer_set_batching_window (StreamConsumer *consumer, guint ms);
/* Stops delivering. Batches still out may be finished (or not) afterwards:
 * stream_consumer_done stays valid until they are. */
void stream_consumer_stop (StreamConsumer *consumer);

#define STREAM_CONSUMER_RETRY_MS 1000

/* ---- resharding ---- */

typedef struct {
  StreamHashKey start;         /* inclusive range of the new shard */
  StreamHashKey end;
  const char *parent;          /* shard id it continues, nullable */
  const char *adjacent_parent; /* the second parent of a merge, nullable */
} StreamNewShard;

/* Closes the open shards @close (ordinals) and opens @new_shards in their
 * place, in one step: puts routed after this call go to the new shards.
 * The open shards must still cover the whole key space afterwards (the
 * caller computes ranges; see kinesis.c). A closed shard is sealed, i.e.
 * its last record known, once every put accepted for it before the close
 * is in its log; readers move on to its children only then. */
gboolean stream_store_reshard (StreamStore *store, const char *name, const guint32 *close,
                               guint n_close, const StreamNewShard *new_shards, guint n_new,
                               GError **error);
/* TRUE for a closed shard whose last record is known. */
gboolean stream_store_shard_sealed (StreamStore *store, const char *name, guint32 ordinal);

typedef struct {
  const char *partition_key;
  const StreamHashKey *explicit_hash_key; /* nullable: MD5 of the partition key */
  GBytes *data;
  GBytes *attributes; /* nullable: a JSON object of at most STREAM_ATTRIBUTES_MAX_BYTES,
                       * kept beside the data (not counted in it) */
} StreamPutRecord;

typedef struct {
  guint32 shard_ordinal;
  guint64 number;
  GError *error; /* set when this record was not stored */
} StreamPutResult;

/* Runs on the main context once every record is durable under the stream's
 * setting (or failed). @results are owned by the store. */
typedef void (*StreamPutFunc) (StreamPutResult *results, guint n, gpointer user_data);

/* Routes @n records to their shards and queues them for the writer thread,
 * which appends and syncs in groups. Fails at once (and @func is not
 * called) for an unknown stream or a record over the limits. */
gboolean stream_store_put (StreamStore *store, const char *name, const StreamPutRecord *records,
                           guint n, StreamPutFunc func, gpointer user_data, GError **error);

/* Reads on a worker thread; the result is a GPtrArray of StreamRecord. */
void stream_store_read_async (StreamStore *store, const char *name, guint32 ordinal, guint64 from,
                              guint max_records, gsize max_bytes, GAsyncReadyCallback callback,
                              gpointer user_data);
GPtrArray *stream_store_read_finish (StreamStore *store, GAsyncResult *result, guint64 *ret_next,
                                     GError **error);

/* Called on the main context after records were acknowledged on a shard
 * of the watched stream; @next is the shard's next record number. */
typedef void (*StreamWatchFunc) (const char *stream, guint32 ordinal, guint64 next,
                                 gpointer user_data);
/* Returns an id for stream_store_unwatch. Main thread. */
guint stream_store_watch (StreamStore *store, const char *name, StreamWatchFunc func,
                          gpointer user_data);
void stream_store_unwatch (StreamStore *store, guint id);

/* Applies retention to every shard now (the store also does it hourly). */
void stream_store_apply_retention (StreamStore *store);

/* ---- the Kinesis Data Streams API ---- */

typedef struct _StreamKinesis StreamKinesis;

/* Serves the Kinesis API (X-Amz-Target Kinesis_20131202.*) on @gateway over
 * @store. The gateway, store and keyring are borrowed. Free it before the
 * gateway and the store: freeing waits for the calls under way (writes
 * being synced, reads on worker threads) and answers them. (transfer full) */
StreamKinesis *stream_kinesis_new (EdgeGateway *gateway, StreamStore *store, EdgeKeyring *keyring,
                                   GError **error);
void stream_kinesis_free (StreamKinesis *api);

/* ---- the management REST API ---- */

/* Serves GET/POST /v1/streams and GET/DELETE /v1/streams/{name}. */
gboolean stream_rest_register (EdgeGateway *gateway, StreamStore *store, GError **error);

/* ---- live subscriptions over WebSocket ---- */

/* Serves WS /v1/streams/{name}/subscribe: records pushed as they land, as
 * JSON text messages, from a position given in the query
 * (?shard=shardId-…&position=TRIM_HORIZON|LATEST|AT_SEQUENCE_NUMBER|
 * AFTER_SEQUENCE_NUMBER|AT_TIMESTAMP&sequence=…&timestamp=…). Without
 * "shard", every shard of the stream. A slow client is not dropped records:
 * reading pauses until its queue drains. */
gboolean stream_subscribe_register (EdgeGateway *gateway, StreamStore *store, GError **error);

G_END_DECLS
