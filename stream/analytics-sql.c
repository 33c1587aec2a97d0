/* analytics-sql.c: an analytics application's windows, kept and evaluated
 * in SQLite (see analytics.h and docs/internals/analytics.md).
 *
 * Each application has a database of its own. The records of windows still
 * open are rows of `log`, with their time (`ts`) and key worked out once, by
 * the application's own SQL expressions, when they are taken. A window is
 * evaluated by pointing the one-row table temp.bounds at it and running the
 * user's SELECT, prepared once, over the view `records` (log joined with
 * bounds). Results go to `outbox` in the same transaction as the records and
 * positions that produced them, so a crash never loses a window or counts a
 * record twice; the service empties the outbox into the output stream.
 */
#define G_LOG_DOMAIN "analytics"

#include "analytics.h"

#include <math.h>
#include <sqlite3.h>

#define EVAL_MAX_MS 5000 /* one window's SQL, at most */
#define NO_WINDOW G_MININT64

typedef enum { WINDOW_TUMBLING, WINDOW_SLIDING, WINDOW_SESSION } WindowKind;

/* Where the application stands in one shard. */
typedef struct {
  guint64 next;   /* the next record number not taken */
  gint64 max_ts;  /* the latest time taken from the shard, NO_WINDOW if none */
  gboolean dirty; /* moved since the last commit */
} Position;

struct _StreamAnalytics {
  sqlite3 *db;
  char *name;
  WindowKind kind;
  gint64 size, slide, gap, lateness;
  gboolean arrival_time;
  gboolean scored;
  double threshold;
  gint64 min_samples;
  sqlite3_stmt *compute, *insert, *user, *bounds, *count, *min_ts, *trim, *outbox;
  sqlite3_stmt *session_get, *session_put, *session_del, *session_due, *session_trim;
  sqlite3_stmt *stats_get, *stats_put, *position_put;
  GHashTable *positions; /* ordinal -> Position */
  gint64 max_ts;         /* the latest record time taken */
  gint64 emitted_end;    /* tumbling, sliding: windows ending at or before it are done */
  gint64 watermark;      /* the time windows were last closed at */
  gint64 deadline_us;    /* the window being evaluated stops past it */
  sqlite3_int64 changes_at_begin;
  StreamAnalyticsStats stats;
};

static gboolean save_positions (StreamAnalytics *a, GError **error);

/* ---- SQLite helpers ---- */

static gboolean
db_failed (StreamAnalytics *a, int rc, const char *what, GError **error)
{
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW)
    return FALSE;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "analytics %s: %s: %s", a->name, what,
               sqlite3_errmsg (a->db));
  return TRUE;
}

static gboolean
exec (StreamAnalytics *a, const char *sql, GError **error)
{
  char *message = NULL;
  if (sqlite3_exec (a->db, sql, NULL, NULL, &message) == SQLITE_OK)
    return TRUE;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "analytics %s: %s", a->name,
               message ? message : sqlite3_errmsg (a->db));
  sqlite3_free (message);
  return FALSE;
}

/* Prepares @sql; on failure the message quotes @what and @user_sql (the
 * part the user wrote) with a caret under the error. */
static sqlite3_stmt *
prepare (StreamAnalytics *a, const char *sql, const char *what, const char *user_sql,
         gsize user_offset, GError **error)
{
  sqlite3_stmt *stmt = NULL;
  const char *tail = NULL;
  if (sqlite3_prepare_v3 (a->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, &tail) == SQLITE_OK) {
    while (tail && g_ascii_isspace (*tail))
      tail++;
    if (tail && *tail && *tail != ';') {
      sqlite3_finalize (stmt);
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: one statement only; more follows at \"%.20s\"", what, tail);
      return NULL;
    }
    return stmt;
  }
  int at = sqlite3_error_offset (a->db);
  g_autoptr (GString) text = g_string_new (NULL);
  g_string_append_printf (text, "%s: %s", what, sqlite3_errmsg (a->db));
  if (user_sql && at >= (int) user_offset && at <= (int) (user_offset + strlen (user_sql))) {
    gsize column = (gsize) at - user_offset;
    g_string_append_printf (text, "\n  %s\n  %*s^", user_sql, (int) column, "");
  }
  g_set_error_literal (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID, text->str);
  return NULL;
}

static int
progress (void *data)
{
  StreamAnalytics *a = data;
  return a->deadline_us && g_get_monotonic_time () > a->deadline_us;
}

/* ---- percentile(x, p) and median(x) ---- */

static int
compare_doubles (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

typedef struct {
  GArray *values;
  double p;
} PercentileState;

/* percentile(x, p), or median(x) as percentile(x, 50). */
static void
percentile_step (sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
  PercentileState *s = sqlite3_aggregate_context (ctx, sizeof (PercentileState));
  if (s == NULL) {
    sqlite3_result_error_nomem (ctx);
    return;
  }
  if (s->values == NULL)
    s->values = g_array_new (FALSE, FALSE, sizeof (double));
  double p = argc == 2 ? sqlite3_value_double (argv[1]) : 50;
  if ((argc == 2 && sqlite3_value_numeric_type (argv[1]) == SQLITE_NULL) || p < 0 || p > 100) {
    sqlite3_result_error (ctx, "percentile(x, p): p must be a number from 0 to 100", -1);
    return;
  }
  s->p = p;
  if (sqlite3_value_numeric_type (argv[0]) == SQLITE_NULL)
    return;
  double x = sqlite3_value_double (argv[0]);
  g_array_append_val (s->values, x);
}

static void
percentile_final (sqlite3_context *ctx)
{
  PercentileState *s = sqlite3_aggregate_context (ctx, 0);
  if (s == NULL || s->values == NULL) {
    sqlite3_result_null (ctx);
    return;
  }
  /* Linear interpolation between the closest ranks, as numpy's default. */
  GArray *v = s->values;
  if (v->len == 0) {
    g_array_unref (v);
    sqlite3_result_null (ctx);
    return;
  }
  g_array_sort (v, compare_doubles);
  double rank = s->p / 100.0 * (v->len - 1);
  guint lo = (guint) floor (rank), hi = (guint) ceil (rank);
  sqlite3_result_double (ctx, g_array_index (v, double, lo) +
                                  (g_array_index (v, double, hi) - g_array_index (v, double, lo)) *
                                      (rank - lo));
  g_array_unref (v);
}

/* ---- opening ---- */

static const char *const window_names[] = { "tumbling", "sliding", "session" };

static gint64
floor_div (gint64 a, gint64 b)
{
  gint64 q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static gint64
meta_get (StreamAnalytics *a, const char *name, gint64 fallback)
{
  sqlite3_stmt *stmt = NULL;
  gint64 value = fallback;
  if (sqlite3_prepare_v2 (a->db, "SELECT value FROM meta WHERE name = ?1", -1, &stmt, NULL) ==
      SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step (stmt) == SQLITE_ROW)
      value = sqlite3_column_int64 (stmt, 0);
  }
  sqlite3_finalize (stmt);
  return value;
}

static gboolean
meta_set (StreamAnalytics *a, const char *name, gint64 value, GError **error)
{
  g_autofree char *sql = g_strdup_printf ("INSERT INTO meta VALUES ('%s', %" G_GINT64_FORMAT ") "
                                          "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                                          name, value);
  return exec (a, sql, error);
}

static void
load_positions (StreamAnalytics *a)
{
  sqlite3_stmt *stmt = NULL;
  g_hash_table_remove_all (a->positions);
  if (sqlite3_prepare_v2 (a->db, "SELECT shard, next, max_ts FROM positions", -1, &stmt, NULL) !=
      SQLITE_OK)
    return;
  while (sqlite3_step (stmt) == SQLITE_ROW) {
    Position *p = g_new0 (Position, 1);
    p->next = (guint64) sqlite3_column_int64 (stmt, 1);
    p->max_ts = sqlite3_column_type (stmt, 2) == SQLITE_NULL ? NO_WINDOW
                                                             : sqlite3_column_int64 (stmt, 2);
    g_hash_table_insert (a->positions, GUINT_TO_POINTER (sqlite3_column_int (stmt, 0)), p);
  }
  sqlite3_finalize (stmt);
}

static gint64
count_rows (StreamAnalytics *a, const char *table)
{
  g_autofree char *sql = g_strdup_printf ("SELECT count(*) FROM %s", table);
  sqlite3_stmt *stmt = NULL;
  gint64 n = 0;
  if (sqlite3_prepare_v2 (a->db, sql, -1, &stmt, NULL) == SQLITE_OK &&
      sqlite3_step (stmt) == SQLITE_ROW)
    n = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
  return n;
}

#define SCHEMA                                                                                \
  "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, partition_key TEXT NOT NULL, "   \
  "  arrival INTEGER NOT NULL, data TEXT NOT NULL, ts INTEGER NOT NULL, key TEXT);"          \
  "CREATE INDEX IF NOT EXISTS log_ts ON log (ts);"                                          \
  "CREATE TABLE IF NOT EXISTS positions (shard INTEGER PRIMARY KEY, next INTEGER NOT NULL, " \
  "  max_ts INTEGER);"                                                                      \
  "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"        \
  "CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, start INTEGER NOT NULL, "      \
  "  last INTEGER NOT NULL);"                                                               \
  "CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, n INTEGER NOT NULL, "             \
  "  mean REAL NOT NULL, m2 REAL NOT NULL);"                                                \
  "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, partition_key TEXT NOT NULL, " \
  "  data TEXT NOT NULL);"                                                                  \
  "CREATE TEMP TABLE bounds (start INTEGER, stop INTEGER, shown_end INTEGER, key TEXT);"     \
  "INSERT INTO temp.bounds VALUES (0, 0, 0, NULL);"

static gboolean
prepare_all (StreamAnalytics *a, const EdgeConfigAnalytics *c, GError **error)
{
  /* The expressions run over one record: partition_key, arrival, data. */
  static const char compute_head[] = "SELECT CAST((";
  g_autofree char *compute = g_strdup_printf (
      "%s%s) AS INTEGER), (%s), (%s) FROM (SELECT ?1 AS partition_key, ?2 AS arrival, "
      "?3 AS data) WHERE json_valid(?3) AND json_type(?3) = 'object'",
      compute_head, c->time, c->key, a->scored ? c->anomaly_value : "NULL");
  if (!(a->compute = prepare (a, compute, "time, key or anomaly_value", NULL, 0, error)))
    return FALSE;
  /* Each expression alone, for a message that names it. */
  const struct {
    const char *what, *sql;
  } parts[] = { { "time", c->time }, { "key", c->key },
                { "anomaly_value", a->scored ? c->anomaly_value : "NULL" } };
  for (guint i = 0; i < G_N_ELEMENTS (parts); i++) {
    static const char head[] = "SELECT (";
    g_autofree char *sql = g_strdup_printf ("%s%s) FROM (SELECT 'k' AS partition_key, 0 AS "
                                            "arrival, '{}' AS data)", head, parts[i].sql);
    sqlite3_stmt *stmt = prepare (a, sql, parts[i].what, parts[i].sql, strlen (head), error);
    if (stmt == NULL)
      return FALSE;
    sqlite3_finalize (stmt);
  }

  g_autofree char *view = g_strdup_printf (
      "CREATE TEMP VIEW records AS SELECT log.partition_key, log.arrival, log.data, log.ts, "
      "log.key, bounds.start AS window_start, bounds.shown_end AS window_end FROM log, "
      "temp.bounds AS bounds WHERE %s",
      a->kind == WINDOW_SESSION ? "log.key = bounds.key AND log.ts >= bounds.start AND "
                                  "log.ts < bounds.stop"
                                : "log.ts >= bounds.start AND log.ts < bounds.stop");
  if (!exec (a, view, error))
    return FALSE;
  if (c->sql[0] == '\0') {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID, "sql is required");
    return FALSE;
  }
  if (!(a->user = prepare (a, c->sql, "sql", c->sql, 0, error)))
    return FALSE;
  if (!sqlite3_stmt_readonly (a->user) || sqlite3_column_count (a->user) == 0) {
    g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                 "sql: must be a SELECT (it is run once per window, its rows are the results)");
    return FALSE;
  }

  static const struct {
    size_t offset;
    const char *sql;
  } statements[] = {
    { G_STRUCT_OFFSET (StreamAnalytics, insert),
      "INSERT INTO log (partition_key, arrival, data, ts, key) VALUES (?1, ?2, ?3, ?4, ?5)" },
    { G_STRUCT_OFFSET (StreamAnalytics, bounds),
      "UPDATE temp.bounds SET start = ?1, stop = ?2, shown_end = ?3, key = ?4" },
    { G_STRUCT_OFFSET (StreamAnalytics, count),
      "SELECT count(*) FROM log WHERE ts >= ?1 AND ts < ?2" },
    { G_STRUCT_OFFSET (StreamAnalytics, min_ts), "SELECT min(ts) FROM log" },
    { G_STRUCT_OFFSET (StreamAnalytics, trim), "DELETE FROM log WHERE ts < ?1" },
    { G_STRUCT_OFFSET (StreamAnalytics, outbox),
      "INSERT INTO outbox (partition_key, data) VALUES (?1, ?2)" },
    { G_STRUCT_OFFSET (StreamAnalytics, session_get),
      "SELECT start, last FROM sessions WHERE key = ?1" },
    { G_STRUCT_OFFSET (StreamAnalytics, session_put),
      "INSERT INTO sessions VALUES (?1, ?2, ?3) ON CONFLICT (key) DO UPDATE SET "
      "start = excluded.start, last = excluded.last" },
    { G_STRUCT_OFFSET (StreamAnalytics, session_del), "DELETE FROM sessions WHERE key = ?1" },
    { G_STRUCT_OFFSET (StreamAnalytics, session_due),
      "SELECT key, start, last FROM sessions WHERE last + ?1 <= ?2 ORDER BY last, key" },
    { G_STRUCT_OFFSET (StreamAnalytics, session_trim),
      "DELETE FROM log WHERE key = ?1 AND ts >= ?2 AND ts <= ?3" },
    { G_STRUCT_OFFSET (StreamAnalytics, stats_get),
      "SELECT n, mean, m2 FROM stats WHERE key = ?1" },
    { G_STRUCT_OFFSET (StreamAnalytics, stats_put),
      "INSERT INTO stats VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key) DO UPDATE SET "
      "n = excluded.n, mean = excluded.mean, m2 = excluded.m2" },
    { G_STRUCT_OFFSET (StreamAnalytics, position_put),
      "INSERT INTO positions VALUES (?1, ?2, ?3) ON CONFLICT (shard) DO UPDATE SET "
      "next = excluded.next, max_ts = excluded.max_ts" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (statements); i++) {
    sqlite3_stmt **slot = G_STRUCT_MEMBER_P (a, statements[i].offset);
    if (sqlite3_prepare_v3 (a->db, statements[i].sql, -1, SQLITE_PREPARE_PERSISTENT, slot,
                            NULL) != SQLITE_OK)
      return !db_failed (a, SQLITE_ERROR, statements[i].sql, error);
  }
  return TRUE;
}

static gboolean
settings_valid (StreamAnalytics *a, const EdgeConfigAnalytics *c, GError **error)
{
  const char *problem = NULL;
  char *end = NULL;
  a->threshold = g_ascii_strtod (c->anomaly_threshold, &end);
  if (a->kind == WINDOW_SLIDING && (a->slide > a->size || a->size % a->slide != 0))
    problem = "slide must divide size";
  else if (end == c->anomaly_threshold || *end || !(a->threshold > 0))
    problem = "anomaly_threshold must be a number above 0";
  else if (c->time[0] == '\0' || c->key[0] == '\0')
    problem = "time and key must not be empty";
  if (problem) {
    g_set_error_literal (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID, problem);
    return FALSE;
  }
  return TRUE;
}

StreamAnalytics *
stream_analytics_open (const EdgeConfigAnalytics *c, const char *path, GError **error)
{
  g_autoptr (StreamAnalytics) a = g_new0 (StreamAnalytics, 1);
  a->name = g_strdup (c->name);
  a->kind = g_str_equal (c->window, "session")   ? WINDOW_SESSION
            : g_str_equal (c->window, "sliding") ? WINDOW_SLIDING
                                                 : WINDOW_TUMBLING;
  a->size = c->size_ms;
  a->slide = a->kind == WINDOW_SLIDING && c->slide_ms ? c->slide_ms : c->size_ms;
  a->gap = c->gap_ms;
  a->lateness = c->lateness_ms;
  g_autofree char *time = g_strstrip (g_strdup (c->time));
  a->arrival_time = g_str_equal (time, "arrival");
  a->scored = c->anomaly_value[0] != '\0';
  a->min_samples = c->anomaly_min_samples;
  a->positions = g_hash_table_new_full (NULL, NULL, NULL, g_free);
  if (!settings_valid (a, c, error))
    return NULL;

  /* One thread uses the connection: no per-call locking. */
  if (sqlite3_open_v2 (path, &a->db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                       NULL) != SQLITE_OK) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "analytics %s: %s: %s", c->name, path,
                 a->db ? sqlite3_errmsg (a->db) : "cannot open");
    return NULL;
  }
  sqlite3_busy_timeout (a->db, 5000);
  sqlite3_progress_handler (a->db, 10000, progress, a);
  sqlite3_create_function (a->db, "percentile", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                           NULL, percentile_step, percentile_final);
  sqlite3_create_function (a->db, "median", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, NULL,
                           percentile_step, percentile_final);
  if (!exec (a, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;" SCHEMA, error) ||
      !exec (a, a->kind == WINDOW_SESSION
                    ? "CREATE INDEX IF NOT EXISTS log_key_ts ON log (key, ts)"
                    : "DROP INDEX IF EXISTS log_key_ts", error) ||
      !prepare_all (a, c, error))
    return NULL;

  /* What the last run left. */
  load_positions (a);
  a->max_ts = meta_get (a, "max_ts", NO_WINDOW);
  a->emitted_end = meta_get (a, "emitted_end", NO_WINDOW);
  a->watermark = meta_get (a, "watermark", NO_WINDOW);
  /* A window, a slide or a key different from the last run's make the
   * kept windows meaningless: start them afresh. */
  g_autofree char *shape = g_strdup_printf ("%s/%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT
                                            "/%" G_GINT64_FORMAT "\n%s\n%s",
                                            window_names[a->kind], a->size, a->slide, a->gap,
                                            c->time, c->key);
  gint64 hash = (gint64) (g_str_hash (shape) & 0x7fffffff);
  if (meta_get (a, "shape", hash) != hash) {
    g_message ("analytics %s: its windows changed: open windows dropped", a->name);
    if (!exec (a, "DELETE FROM log; DELETE FROM sessions; DELETE FROM meta WHERE name IN "
                  "('max_ts', 'emitted_end', 'watermark')", error))
      return NULL;
    a->max_ts = a->emitted_end = a->watermark = NO_WINDOW;
  }
  if (!meta_set (a, "shape", hash, error))
    return NULL;
  a->stats.open_records = (guint64) count_rows (a, "log");
  a->stats.pending = (guint64) count_rows (a, "outbox");
  return g_steal_pointer (&a);
}

void
stream_analytics_close (StreamAnalytics *a)
{
  if (a == NULL)
    return;
  sqlite3_stmt **all[] = { &a->compute,      &a->insert,      &a->user,        &a->bounds,
                           &a->count,        &a->min_ts,      &a->trim,        &a->outbox,
                           &a->session_get,  &a->session_put, &a->session_del, &a->session_due,
                           &a->session_trim, &a->stats_get,   &a->stats_put,   &a->position_put };
  for (guint i = 0; i < G_N_ELEMENTS (all); i++)
    sqlite3_finalize (*all[i]);
  if (a->db)
    sqlite3_close (a->db);
  g_hash_table_unref (a->positions);
  g_free (a->name);
  g_free (a);
}

gboolean
stream_analytics_check (const EdgeConfigAnalytics *config, GError **error)
{
  g_autoptr (StreamAnalytics) a = stream_analytics_open (config, ":memory:", error);
  return a != NULL;
}

gboolean
stream_analytics_begin (StreamAnalytics *a, GError **error)
{
  a->changes_at_begin = sqlite3_total_changes64 (a->db);
  return exec (a, "BEGIN IMMEDIATE", error);
}

/* A transaction that changed nothing (the clock ticked, no window closed)
 * commits without writing: an SD card is not written every second for
 * nothing. Time alone moving is kept in memory until something else is
 * written; after a restart it only starts from a little earlier. */
gboolean
stream_analytics_commit (StreamAnalytics *a, GError **error)
{
  if (!save_positions (a, error))
    return FALSE;
  if (sqlite3_total_changes64 (a->db) != a->changes_at_begin &&
      !(meta_set (a, "max_ts", a->max_ts, error) &&
        meta_set (a, "emitted_end", a->emitted_end, error) &&
        meta_set (a, "watermark", a->watermark, error)))
    return FALSE;
  return exec (a, "COMMIT", error);
}

void
stream_analytics_rollback (StreamAnalytics *a)
{
  exec (a, "ROLLBACK", NULL);
  /* What the transaction moved in memory goes back to the database's. */
  load_positions (a);
  a->max_ts = meta_get (a, "max_ts", NO_WINDOW);
  a->emitted_end = meta_get (a, "emitted_end", NO_WINDOW);
  a->watermark = meta_get (a, "watermark", NO_WINDOW);
  a->stats.open_records = (guint64) count_rows (a, "log");
  a->stats.pending = (guint64) count_rows (a, "outbox");
}

guint64
stream_analytics_position (StreamAnalytics *a, guint32 ordinal)
{
  Position *p = g_hash_table_lookup (a->positions, GUINT_TO_POINTER (ordinal));
  return p ? p->next : 0;
}

/* ---- results ---- */

static void
append_time (GString *out, const char *name, gint64 ms)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (floor_div (ms, 1000));
  g_autofree char *text = t ? g_date_time_format (t, "%Y-%m-%dT%H:%M:%S") : g_strdup ("?");
  g_string_append_printf (out, ",\"%s\":\"%s.%03dZ\"", name, text, (int) (ms - floor_div (ms, 1000) * 1000));
}

static gboolean
queue_result (StreamAnalytics *a, const char *partition_key, const char *json, GError **error)
{
  sqlite3_reset (a->outbox);
  sqlite3_bind_text (a->outbox, 1, partition_key, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text (a->outbox, 2, json, -1, SQLITE_TRANSIENT);
  if (db_failed (a, sqlite3_step (a->outbox), "outbox", error))
    return FALSE;
  a->stats.pending++;
  return TRUE;
}

/* Runs the user's SQL over one window and queues a result per row. */
static gboolean
evaluate (StreamAnalytics *a, gint64 start, gint64 stop, gint64 shown_end, const char *key,
          GError **error)
{
  sqlite3_reset (a->bounds);
  sqlite3_bind_int64 (a->bounds, 1, start);
  sqlite3_bind_int64 (a->bounds, 2, stop);
  sqlite3_bind_int64 (a->bounds, 3, shown_end);
  if (key)
    sqlite3_bind_text (a->bounds, 4, key, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null (a->bounds, 4);
  if (db_failed (a, sqlite3_step (a->bounds), "window bounds", error))
    return FALSE;

  a->deadline_us = g_get_monotonic_time () + EVAL_MAX_MS * 1000;
  sqlite3_reset (a->user);
  int rc, n = sqlite3_column_count (a->user);
  while ((rc = sqlite3_step (a->user)) == SQLITE_ROW) {
    g_autoptr (GString) out = g_string_new ("{");
    g_autofree char *partition_key = NULL;
    gboolean has_key = FALSE;
    for (int i = 0; i < n; i++) {
      const char *name = sqlite3_column_name (a->user, i);
      has_key |= g_str_equal (name, "key");
      if (i)
        g_string_append_c (out, ',');
      edge_json_append_string (out, name, strlen (name));
      g_string_append_c (out, ':');
      switch (sqlite3_column_type (a->user, i)) {
      case SQLITE_INTEGER:
        g_string_append_printf (out, "%" G_GINT64_FORMAT, (gint64) sqlite3_column_int64 (a->user, i));
        break;
      case SQLITE_FLOAT: {
        double v = sqlite3_column_double (a->user, i);
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        if (isfinite (v))
          g_string_append (out, g_ascii_formatd (buf, sizeof buf, "%.17g", v));
        else
          g_string_append (out, "null");
        break;
      }
      case SQLITE_NULL:
        g_string_append (out, "null");
        break;
      default: {
        const char *text = (const char *) sqlite3_column_text (a->user, i);
        edge_json_append_string (out, text ? text : "", (gsize) sqlite3_column_bytes (a->user, i));
      }
      }
      if (i == 0 && sqlite3_column_type (a->user, 0) != SQLITE_NULL) {
        /* At most 256 bytes, cut on a character boundary. */
        partition_key = g_strndup ((const char *) sqlite3_column_text (a->user, 0), 256);
        const char *valid_end;
        g_utf8_validate (partition_key, -1, &valid_end);
        partition_key[valid_end - partition_key] = '\0';
      }
    }
    if (key && !has_key) {
      g_string_append (out, ",\"key\":");
      edge_json_append_string (out, key, strlen (key));
    }
    append_time (out, "window_start", start);
    append_time (out, "window_end", shown_end);
    g_string_append_c (out, '}');
    /* A stream's partition keys are 1 to 256 bytes. */
    const char *pk = key && key[0] && strlen (key) <= 256          ? key
                     : !key && partition_key && partition_key[0] ? partition_key
                                                                 : a->name;
    if (!queue_result (a, pk, out->str, error)) {
      a->deadline_us = 0;
      return FALSE;
    }
    a->stats.results++;
  }
  a->deadline_us = 0;
  if (rc == SQLITE_INTERRUPT) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                 "analytics %s: the window's SQL ran past %d ms", a->name, EVAL_MAX_MS);
    sqlite3_reset (a->user);
    return FALSE;
  }
  if (db_failed (a, rc, "sql", error)) {
    sqlite3_reset (a->user);
    return FALSE;
  }
  sqlite3_reset (a->user);
  a->stats.windows++;
  return TRUE;
}

/* ---- sessions ---- */

static gboolean
close_session (StreamAnalytics *a, const char *key, gint64 start, gint64 last, GError **error)
{
  if (!evaluate (a, start, last + 1, last + a->gap, key, error))
    return FALSE;
  sqlite3_reset (a->session_trim);
  sqlite3_bind_text (a->session_trim, 1, key, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64 (a->session_trim, 2, start);
  sqlite3_bind_int64 (a->session_trim, 3, last);
  if (db_failed (a, sqlite3_step (a->session_trim), "session", error))
    return FALSE;
  a->stats.open_records -= MIN (a->stats.open_records, (guint64) sqlite3_changes (a->db));
  sqlite3_reset (a->session_del);
  sqlite3_bind_text (a->session_del, 1, key, -1, SQLITE_TRANSIENT);
  return !db_failed (a, sqlite3_step (a->session_del), "session", error);
}

/* Places a record of @key at @ts in its session; FALSE in *ret_late when
 * the record can join no open session. */
static gboolean
session_take (StreamAnalytics *a, const char *key, gint64 ts, gboolean *ret_late, GError **error)
{
  gint64 watermark = a->watermark;
  sqlite3_reset (a->session_get);
  sqlite3_bind_text (a->session_get, 1, key, -1, SQLITE_TRANSIENT);
  gboolean found = sqlite3_step (a->session_get) == SQLITE_ROW;
  gint64 start = found ? sqlite3_column_int64 (a->session_get, 0) : ts;
  gint64 last = found ? sqlite3_column_int64 (a->session_get, 1) : ts;
  sqlite3_reset (a->session_get);
  *ret_late = FALSE;
  if (found && ts > last + a->gap) {
    /* A record past the gap: the session before it is over. */
    if (!close_session (a, key, start, last, error))
      return FALSE;
    start = last = ts;
  } else if (found && ts < start - a->gap) {
    *ret_late = TRUE;
    return TRUE;
  } else if (!found && watermark != NO_WINDOW && ts + a->gap <= watermark) {
    *ret_late = TRUE;
    return TRUE;
  }
  start = MIN (start, ts);
  last = MAX (last, ts);
  sqlite3_reset (a->session_put);
  sqlite3_bind_text (a->session_put, 1, key, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64 (a->session_put, 2, start);
  sqlite3_bind_int64 (a->session_put, 3, last);
  return !db_failed (a, sqlite3_step (a->session_put), "session", error);
}

/* ---- anomaly scores: a streaming z-score per key (Welford's mean and
 * variance, kept in the database) ---- */

static gboolean
score (StreamAnalytics *a, const char *key, double x, gint64 ts, GError **error)
{
  sqlite3_reset (a->stats_get);
  sqlite3_bind_text (a->stats_get, 1, key, -1, SQLITE_TRANSIENT);
  gint64 n = 0;
  double mean = 0, m2 = 0;
  if (sqlite3_step (a->stats_get) == SQLITE_ROW) {
    n = sqlite3_column_int64 (a->stats_get, 0);
    mean = sqlite3_column_double (a->stats_get, 1);
    m2 = sqlite3_column_double (a->stats_get, 2);
  }
  sqlite3_reset (a->stats_get);
  if (n >= a->min_samples && n > 1) {
    double sd = sqrt (m2 / (double) (n - 1));
    double z = sd > 0 ? (x - mean) / sd : 0;
    if (fabs (z) >= a->threshold) {
      char v[G_ASCII_DTOSTR_BUF_SIZE], zs[G_ASCII_DTOSTR_BUF_SIZE], ms[G_ASCII_DTOSTR_BUF_SIZE],
          sds[G_ASCII_DTOSTR_BUF_SIZE];
      g_autoptr (GString) out = g_string_new ("{\"anomaly\":true,\"key\":");
      edge_json_append_string (out, key, strlen (key));
      g_string_append_printf (out, ",\"value\":%s,\"score\":%s,\"mean\":%s,\"stddev\":%s,"
                              "\"samples\":%" G_GINT64_FORMAT,
                              g_ascii_formatd (v, sizeof v, "%.17g", x),
                              g_ascii_formatd (zs, sizeof zs, "%.6g", z),
                              g_ascii_formatd (ms, sizeof ms, "%.17g", mean),
                              g_ascii_formatd (sds, sizeof sds, "%.17g", sd), n);
      append_time (out, "time", ts);
      g_string_append_c (out, '}');
      if (!queue_result (a, key, out->str, error))
        return FALSE;
      a->stats.anomalies++;
    }
  }
  n++;
  double delta = x - mean;
  mean += delta / (double) n;
  m2 += delta * (x - mean);
  sqlite3_reset (a->stats_put);
  sqlite3_bind_text (a->stats_put, 1, key, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64 (a->stats_put, 2, n);
  sqlite3_bind_double (a->stats_put, 3, mean);
  sqlite3_bind_double (a->stats_put, 4, m2);
  return !db_failed (a, sqlite3_step (a->stats_put), "stats", error);
}

/* ---- taking records ---- */

/* Moves the shard past a record; @ts is its time (NO_WINDOW for a record
 * not taken). Kept in memory; written with the transaction's commit. */
static gboolean
set_position (StreamAnalytics *a, guint32 ordinal, guint64 next, gint64 ts, GError **error)
{
  Position *p = g_hash_table_lookup (a->positions, GUINT_TO_POINTER (ordinal));
  (void) error;
  if (p == NULL) {
    p = g_new0 (Position, 1);
    p->max_ts = NO_WINDOW;
    g_hash_table_insert (a->positions, GUINT_TO_POINTER (ordinal), p);
  }
  p->next = next;
  p->dirty = TRUE;
  if (ts != NO_WINDOW)
    p->max_ts = p->max_ts == NO_WINDOW ? ts : MAX (p->max_ts, ts);
  return TRUE;
}

static gboolean
save_positions (StreamAnalytics *a, GError **error)
{
  GHashTableIter iter;
  gpointer key, value;
  g_hash_table_iter_init (&iter, a->positions);
  while (g_hash_table_iter_next (&iter, &key, &value)) {
    Position *p = value;
    if (!p->dirty)
      continue;
    sqlite3_reset (a->position_put);
    sqlite3_bind_int (a->position_put, 1, (int) GPOINTER_TO_UINT (key));
    sqlite3_bind_int64 (a->position_put, 2, (gint64) p->next);
    if (p->max_ts == NO_WINDOW)
      sqlite3_bind_null (a->position_put, 3);
    else
      sqlite3_bind_int64 (a->position_put, 3, p->max_ts);
    if (db_failed (a, sqlite3_step (a->position_put), "position", error))
      return FALSE;
    p->dirty = FALSE;
  }
  return TRUE;
}

gboolean
stream_analytics_add (StreamAnalytics *a, guint32 ordinal, const StreamRecord *r, GError **error)
{
  if (r->number < stream_analytics_position (a, ordinal))
    return TRUE; /* taken before a restart */
  gsize len;
  const char *data = g_bytes_get_data (r->data, &len);
  sqlite3_reset (a->compute);
  sqlite3_bind_text (a->compute, 1, r->partition_key, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (a->compute, 2, r->arrival_ms);
  sqlite3_bind_text (a->compute, 3, data ? data : "", (int) len, SQLITE_STATIC);
  int rc = sqlite3_step (a->compute);
  gboolean valid = rc == SQLITE_ROW && sqlite3_column_type (a->compute, 0) != SQLITE_NULL;
  gint64 ts = valid ? sqlite3_column_int64 (a->compute, 0) : 0;
  g_autofree char *key = valid && sqlite3_column_type (a->compute, 1) != SQLITE_NULL
                             ? g_strdup ((const char *) sqlite3_column_text (a->compute, 1))
                             : g_strdup (r->partition_key);
  gboolean has_value = valid && sqlite3_column_type (a->compute, 2) != SQLITE_NULL;
  double value = has_value ? sqlite3_column_double (a->compute, 2) : 0;
  sqlite3_reset (a->compute);
  /* A record whose expressions fail (malformed JSON deep inside) is
   * invalid, not an error of the application. */
  if (!valid) {
    a->stats.invalid++;
    return set_position (a, ordinal, r->number + 1, NO_WINDOW, error);
  }

  gboolean late = FALSE;
  if (a->kind == WINDOW_SESSION) {
    if (!session_take (a, key, ts, &late, error))
      return FALSE;
  } else if (a->emitted_end != NO_WINDOW) {
    gint64 last_window_end = floor_div (ts, a->slide) * a->slide + a->size;
    late = last_window_end <= a->emitted_end;
  }
  if (late) {
    a->stats.late++;
    return set_position (a, ordinal, r->number + 1, ts, error);
  }
  sqlite3_reset (a->insert);
  sqlite3_bind_text (a->insert, 1, r->partition_key, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (a->insert, 2, r->arrival_ms);
  sqlite3_bind_text (a->insert, 3, data, (int) len, SQLITE_STATIC);
  sqlite3_bind_int64 (a->insert, 4, ts);
  sqlite3_bind_text (a->insert, 5, key, -1, SQLITE_STATIC);
  if (db_failed (a, sqlite3_step (a->insert), "insert", error))
    return FALSE;
  a->stats.records++;
  a->stats.open_records++;
  a->max_ts = a->max_ts == NO_WINDOW ? ts : MAX (a->max_ts, ts);
  if (has_value && !score (a, key, value, ts, error))
    return FALSE;
  return set_position (a, ordinal, r->number + 1, ts, error);
}

/* ---- closing windows ---- */

static gboolean
step_int (StreamAnalytics *a, sqlite3_stmt *stmt, gint64 *ret, GError **error)
{
  int rc = sqlite3_step (stmt);
  if (rc == SQLITE_ROW) {
    *ret = sqlite3_column_type (stmt, 0) == SQLITE_NULL ? NO_WINDOW : sqlite3_column_int64 (stmt, 0);
    sqlite3_reset (stmt);
    return TRUE;
  }
  sqlite3_reset (stmt);
  return !db_failed (a, rc, "window", error);
}

static gboolean
close_time_windows (StreamAnalytics *a, gint64 watermark, GError **error)
{
  for (;;) {
    gint64 first;
    sqlite3_reset (a->min_ts);
    if (!step_int (a, a->min_ts, &first, error))
      return FALSE;
    if (first == NO_WINDOW)
      return TRUE;
    /* The earliest window holding the earliest record, or the one after
     * the last closed, whichever comes later. */
    gint64 start = (floor_div (first - a->size, a->slide) + 1) * a->slide;
    if (a->emitted_end != NO_WINDOW)
      start = MAX (start, a->emitted_end - a->size + a->slide);
    gint64 end = start + a->size;
    if (end > watermark)
      return TRUE;
    gint64 n;
    sqlite3_reset (a->count);
    sqlite3_bind_int64 (a->count, 1, start);
    sqlite3_bind_int64 (a->count, 2, end);
    if (!step_int (a, a->count, &n, error))
      return FALSE;
    if (n > 0 && !evaluate (a, start, end, end, NULL, error))
      return FALSE;
    a->emitted_end = end;
    /* Records in no window still open. */
    sqlite3_reset (a->trim);
    sqlite3_bind_int64 (a->trim, 1, start + a->slide);
    if (db_failed (a, sqlite3_step (a->trim), "trim", error))
      return FALSE;
    a->stats.open_records -= MIN (a->stats.open_records, (guint64) sqlite3_changes (a->db));
  }
}

static gboolean
close_sessions (StreamAnalytics *a, gint64 watermark, GError **error)
{
  g_autoptr (GPtrArray) due = g_ptr_array_new_with_free_func (g_free);
  GArray *bounds = g_array_new (FALSE, FALSE, sizeof (gint64));
  sqlite3_reset (a->session_due);
  sqlite3_bind_int64 (a->session_due, 1, a->gap);
  sqlite3_bind_int64 (a->session_due, 2, watermark);
  int rc;
  while ((rc = sqlite3_step (a->session_due)) == SQLITE_ROW) {
    g_ptr_array_add (due, g_strdup ((const char *) sqlite3_column_text (a->session_due, 0)));
    gint64 se[2] = { sqlite3_column_int64 (a->session_due, 1),
                     sqlite3_column_int64 (a->session_due, 2) };
    g_array_append_vals (bounds, se, 2);
  }
  sqlite3_reset (a->session_due);
  gboolean ok = !db_failed (a, rc, "sessions", error);
  for (guint i = 0; ok && i < due->len; i++)
    ok = close_session (a, due->pdata[i], g_array_index (bounds, gint64, 2 * i),
                        g_array_index (bounds, gint64, 2 * i + 1), error);
  g_array_unref (bounds);
  return ok;
}

gboolean
stream_analytics_advance (StreamAnalytics *a, gint64 now_ms, const guint32 *behind,
                          guint n_behind, GError **error)
{
  /* Time is what every shard has reached: a shard with records still to
   * take holds it back to the latest time taken from it (records of one
   * shard come roughly in time order; those of different shards do not).
   * Once every shard is taken to its end, time is the latest record's, or
   * the clock's for arrival time. */
  gint64 latest = a->arrival_time && a->max_ts != NO_WINDOW ? MAX (now_ms, a->max_ts)
                  : a->arrival_time                         ? now_ms
                                                            : a->max_ts;
  for (guint i = 0; i < n_behind; i++) {
    Position *p = g_hash_table_lookup (a->positions, GUINT_TO_POINTER (behind[i]));
    latest = p == NULL || p->max_ts == NO_WINDOW ? NO_WINDOW : MIN (latest, p->max_ts);
    if (latest == NO_WINDOW)
      break;
  }
  if (latest == NO_WINDOW)
    return TRUE;
  gint64 watermark = latest - a->lateness;
  if (a->watermark != NO_WINDOW && watermark < a->watermark)
    return TRUE; /* time never goes back */
  a->watermark = watermark;
  a->stats.watermark_ms = watermark;
  return a->kind == WINDOW_SESSION ? close_sessions (a, watermark, error)
                                   : close_time_windows (a, watermark, error);
}

/* ---- the outbox ---- */

void
stream_analytics_result_free (StreamAnalyticsResult *r)
{
  if (r == NULL)
    return;
  g_free (r->partition_key);
  g_free (r->data);
  g_free (r);
}

GPtrArray *
stream_analytics_pending (StreamAnalytics *a, guint max)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_analytics_result_free);
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (a->db, "SELECT id, partition_key, data FROM outbox ORDER BY id LIMIT ?1",
                          -1, &stmt, NULL) != SQLITE_OK)
    return out;
  sqlite3_bind_int (stmt, 1, (int) max);
  while (sqlite3_step (stmt) == SQLITE_ROW) {
    StreamAnalyticsResult *r = g_new0 (StreamAnalyticsResult, 1);
    r->id = sqlite3_column_int64 (stmt, 0);
    r->partition_key = g_strdup ((const char *) sqlite3_column_text (stmt, 1));
    r->data = g_strdup ((const char *) sqlite3_column_text (stmt, 2));
    g_ptr_array_add (out, r);
  }
  sqlite3_finalize (stmt);
  return out;
}

gboolean
stream_analytics_written (StreamAnalytics *a, gint64 id, GError **error)
{
  g_autofree char *sql = g_strdup_printf ("DELETE FROM outbox WHERE id <= %" G_GINT64_FORMAT, id);
  if (!exec (a, sql, error))
    return FALSE;
  a->stats.pending -= MIN (a->stats.pending, (guint64) sqlite3_changes (a->db));
  return TRUE;
}

void
stream_analytics_stats (StreamAnalytics *a, StreamAnalyticsStats *stats)
{
  *stats = a->stats;
}
