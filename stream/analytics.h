/* analytics.h: analytics applications (Kinesis Data Analytics semantics):
 * SQL over windows of a data stream's JSON records, evaluated by SQLite,
 * with a streaming anomaly score per key. See docs/internals/analytics.md. */
#pragma once

#include "edge-core.h"
#include "edge-gateway.h"
#include "stream.h"

G_BEGIN_DECLS

/* ---- one application's window state (analytics-sql.c) ---- */

typedef struct _StreamAnalytics StreamAnalytics;

/* Opens (or makes) the application's SQLite database at @path (":memory:"
 * for none), with its records, open windows, positions, key statistics and
 * results not yet written. Fails on bad SQL with SQLite's message and the
 * SQL with a caret under the error. (transfer full) */
StreamAnalytics *stream_analytics_open (const EdgeConfigAnalytics *config, const char *path,
                                        GError **error);
void stream_analytics_close (StreamAnalytics *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (StreamAnalytics, stream_analytics_close)

/* Everything from begin to commit is one transaction: records taken,
 * positions, windows closed and their results. */
gboolean stream_analytics_begin (StreamAnalytics *a, GError **error);
gboolean stream_analytics_commit (StreamAnalytics *a, GError **error);
void stream_analytics_rollback (StreamAnalytics *a);

/* Where the application stands in shard @ordinal: the next record number
 * it has not taken (0 if none). */
guint64 stream_analytics_position (StreamAnalytics *a, guint32 ordinal);
/* Takes @record of shard @ordinal unless it was taken before (its number
 * is below the shard's position), and moves the position past it. A
 * record that is not a JSON object, or has no time, is counted invalid; one
 * for windows already closed is counted late. Inside a transaction. */
gboolean stream_analytics_add (StreamAnalytics *a, guint32 ordinal, const StreamRecord *record,
                               GError **error);
/* Closes the windows that time has passed and queues their results. Time
 * is the latest record time taken, or the clock (@now_ms) for
 * applications on arrival time; the shards in @behind, which still have
 * records to take, hold it back to the latest time taken from each.
 * Inside a transaction. */
gboolean stream_analytics_advance (StreamAnalytics *a, gint64 now_ms, const guint32 *behind,
                                   guint n_behind, GError **error);

typedef struct {
  gint64 id;
  char *partition_key;
  char *data; /* a JSON object */
} StreamAnalyticsResult;

void stream_analytics_result_free (StreamAnalyticsResult *r);
/* Up to @max results not yet written, oldest first. (transfer full) */
GPtrArray *stream_analytics_pending (StreamAnalytics *a, guint max);
/* Forgets results up to and including @id (written). */
gboolean stream_analytics_written (StreamAnalytics *a, gint64 id, GError **error);

typedef struct {
  guint64 records;     /* taken into windows */
  guint64 invalid;     /* not JSON objects, or without a time */
  guint64 late;        /* for windows already closed */
  guint64 windows;     /* closed and evaluated */
  guint64 results;     /* rows of results */
  guint64 anomalies;
  guint64 open_records; /* kept for windows still open */
  guint64 pending;     /* results not yet written */
  gint64 watermark_ms; /* windows ending at or before it are closed */
} StreamAnalyticsStats;

void stream_analytics_stats (StreamAnalytics *a, StreamAnalyticsStats *stats);

/* Checks an application's SQL without keeping anything. */
gboolean stream_analytics_check (const EdgeConfigAnalytics *config, GError **error);

/* ---- the service (analytics.c) ---- */

typedef struct _StreamAnalyticsService StreamAnalyticsService;

gboolean stream_analytics_check_config (const EdgeConfig *config, const char *source,
                                        GError **error);
/* Starts the configured applications (each consuming its stream as
 * "analytics-NAME", its state in @data_dir/analytics/NAME.db) and
 * registers GET /v1/analytics and GET /v1/analytics/{name}. */
StreamAnalyticsService *stream_analytics_service_new (EdgeGateway *gateway, StreamStore *store,
                                                      const EdgeConfig *config,
                                                      const char *data_dir, GError **error);
void stream_analytics_service_free (StreamAnalyticsService *service);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (StreamAnalyticsService, stream_analytics_service_free)

G_END_DECLS
