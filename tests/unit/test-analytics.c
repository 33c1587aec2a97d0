/* The analytics engine alone (stream/analytics-sql.c), in memory: window
 * boundaries, percentiles, records taken twice, late and invalid records,
 * time held back by a shard still behind, and the caret under bad SQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "analytics.h"

#define T0 G_GINT64_CONSTANT (1800000000000)

static EdgeConfigAnalytics *
config_new (const char *window, gint64 size_ms, gint64 slide_ms, const char *sql)
{
  EdgeConfigAnalytics *c = g_new0 (EdgeConfigAnalytics, 1);
  c->name = g_strdup ("t");
  c->stream = g_strdup ("in");
  c->output = g_strdup ("out");
  c->window = g_strdup (window);
  c->size_ms = size_ms;
  c->slide_ms = slide_ms;
  c->gap_ms = 5000;
  c->time = g_strdup ("data->>'ts'");
  c->key = g_strdup ("data->>'k'");
  c->sql = g_strdup (sql);
  c->anomaly_value = g_strdup ("");
  c->anomaly_threshold = g_strdup ("3");
  c->anomaly_min_samples = 20;
  c->starting_position = g_strdup ("TRIM_HORIZON");
  return c;
}

static void
config_free (EdgeConfigAnalytics *c)
{
  g_free (c->name);
  g_free (c->stream);
  g_free (c->output);
  g_free (c->window);
  g_free (c->time);
  g_free (c->key);
  g_free (c->sql);
  g_free (c->anomaly_value);
  g_free (c->anomaly_threshold);
  g_free (c->starting_position);
  g_free (c);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeConfigAnalytics, config_free)

/* Takes one record {"k": K, "ts": T0 + MS, "v": V} as number @n of shard 0. */
static void
take (StreamAnalytics *a, guint32 shard, guint64 n, const char *k, gint64 ms, double v)
{
  g_autofree char *json = g_strdup_printf ("{\"k\":\"%s\",\"ts\":%" G_GINT64_FORMAT ",\"v\":%g}",
                                           k, T0 + ms, v);
  StreamRecord r = { .number = n, .arrival_ms = T0, .partition_key = (char *) k,
                     .data = g_bytes_new (json, strlen (json)) };
  assert_true (stream_analytics_add (a, shard, &r, NULL));
  g_bytes_unref (r.data);
}

static GPtrArray *
advance (StreamAnalytics *a, const guint32 *behind, guint n_behind)
{
  assert_true (stream_analytics_advance (a, 0, behind, n_behind, NULL));
  assert_true (stream_analytics_commit (a, NULL));
  assert_true (stream_analytics_begin (a, NULL));
  GPtrArray *out = stream_analytics_pending (a, 1000);
  if (out->len)
    assert_true (stream_analytics_written (a, ((StreamAnalyticsResult *) out->pdata[out->len - 1])->id,
                                           NULL));
  return out;
}

static const char *
data (GPtrArray *results, guint i)
{
  return ((StreamAnalyticsResult *) results->pdata[i])->data;
}

static void
test_tumbling_boundaries (void **state)
{
  (void) state;
  g_autoptr (EdgeConfigAnalytics) c = config_new (
      "tumbling", 10000, 0,
      "SELECT count(*) AS n, sum(data->>'v') AS total, percentile(data->>'v', 50) AS p50, "
      "median(data->>'v') AS mid FROM records");
  g_autoptr (StreamAnalytics) a = stream_analytics_open (c, ":memory:", NULL);
  assert_non_null (a);
  assert_true (stream_analytics_begin (a, NULL));
  /* 0 and 9999 are in [0, 10 s); 10000 starts the next window. */
  take (a, 0, 0, "a", 0, 1);
  take (a, 0, 1, "a", 9999, 2);
  take (a, 0, 2, "a", 10000, 4);
  g_autoptr (GPtrArray) first = advance (a, NULL, 0);
  assert_int_equal (first->len, 1);
  assert_string_equal (data (first, 0), "{\"n\":2,\"total\":3,\"p50\":1.5,\"mid\":1.5,"
                                        "\"window_start\":\"2027-01-15T08:00:00.000Z\","
                                        "\"window_end\":\"2027-01-15T08:00:10.000Z\"}");
  /* Taken twice (a batch delivered again after a crash): counted once. */
  take (a, 0, 2, "a", 10000, 4);
  take (a, 0, 3, "a", 20000, 8);
  g_autoptr (GPtrArray) second = advance (a, NULL, 0);
  assert_int_equal (second->len, 1);
  assert_non_null (strstr (data (second, 0), "\"n\":1,\"total\":4,"));
  /* Late: its only window closed. Invalid: not a JSON object. */
  take (a, 0, 4, "a", 5000, 1);
  StreamRecord bad = { .number = 5, .arrival_ms = T0, .partition_key = (char *) "a",
                       .data = g_bytes_new_static ("[1,2]", 5) };
  assert_true (stream_analytics_add (a, 0, &bad, NULL));
  g_bytes_unref (bad.data);
  StreamAnalyticsStats st;
  stream_analytics_stats (a, &st);
  assert_int_equal (st.late, 1);
  assert_int_equal (st.invalid, 1);
  assert_int_equal (st.records, 4);
  assert_int_equal (stream_analytics_position (a, 0), 6);
  stream_analytics_rollback (a);
}

static void
test_sliding_windows_share_records (void **state)
{
  (void) state;
  g_autoptr (EdgeConfigAnalytics) c = config_new ("sliding", 10000, 5000,
                                                  "SELECT count(*) AS n FROM records");
  g_autoptr (StreamAnalytics) a = stream_analytics_open (c, ":memory:", NULL);
  assert_non_null (a);
  assert_true (stream_analytics_begin (a, NULL));
  take (a, 0, 0, "a", 7000, 1); /* in [0, 10) and [5, 15) */
  take (a, 0, 1, "a", 30000, 1);
  g_autoptr (GPtrArray) out = advance (a, NULL, 0);
  /* [0, 10), [5, 15), then nothing until [25, 35), still open. */
  assert_int_equal (out->len, 2);
  assert_non_null (strstr (data (out, 0), "\"window_start\":\"2027-01-15T08:00:00.000Z\""));
  assert_non_null (strstr (data (out, 1), "\"window_start\":\"2027-01-15T08:00:05.000Z\""));
  stream_analytics_rollback (a);
}

static void
test_a_shard_behind_holds_time_back (void **state)
{
  (void) state;
  g_autoptr (EdgeConfigAnalytics) c = config_new ("tumbling", 10000, 0,
                                                  "SELECT count(*) AS n FROM records");
  g_autoptr (StreamAnalytics) a = stream_analytics_open (c, ":memory:", NULL);
  assert_non_null (a);
  assert_true (stream_analytics_begin (a, NULL));
  take (a, 0, 0, "a", 1000, 1);
  take (a, 0, 1, "a", 25000, 1);
  /* Shard 1 has records not taken yet, none taken so far: nothing closes. */
  const guint32 behind[] = { 1 };
  g_autoptr (GPtrArray) none = advance (a, behind, 1);
  assert_int_equal (none->len, 0);
  /* Its records arrive, for the first window too. */
  take (a, 1, 0, "b", 2000, 1);
  take (a, 1, 1, "b", 12000, 1);
  g_autoptr (GPtrArray) out = advance (a, NULL, 0);
  assert_int_equal (out->len, 2);
  assert_non_null (strstr (data (out, 0), "\"n\":2,"));
  assert_non_null (strstr (data (out, 1), "\"n\":1,"));
  stream_analytics_rollback (a);
}

static void
test_sessions_and_anomalies (void **state)
{
  (void) state;
  g_autoptr (EdgeConfigAnalytics) c = config_new ("session", 0, 0,
                                                  "SELECT count(*) AS n FROM records");
  g_free (c->anomaly_value);
  c->anomaly_value = g_strdup ("data->>'v'");
  g_autoptr (StreamAnalytics) a = stream_analytics_open (c, ":memory:", NULL);
  assert_non_null (a);
  assert_true (stream_analytics_begin (a, NULL));
  guint64 n = 0;
  for (int i = 0; i < 40; i++)
    take (a, 0, n++, "a", i * 1000, 10 + (i % 4)); /* one session, no anomaly */
  take (a, 0, n++, "a", 40000, 50);               /* far off: an anomaly */
  take (a, 0, n++, "b", 100000, 1);               /* time passes a's gap */
  g_autoptr (GPtrArray) out = advance (a, NULL, 0);
  assert_int_equal (out->len, 2);
  assert_non_null (strstr (data (out, 0), "\"anomaly\":true,\"key\":\"a\",\"value\":50,"));
  assert_string_equal (data (out, 1), "{\"n\":41,\"key\":\"a\","
                                      "\"window_start\":\"2027-01-15T08:00:00.000Z\","
                                      "\"window_end\":\"2027-01-15T08:00:45.000Z\"}");
  stream_analytics_rollback (a);
}

static void
test_bad_sql_has_a_caret (void **state)
{
  (void) state;
  g_autoptr (EdgeConfigAnalytics) c = config_new ("tumbling", 1000, 0,
                                                  "SELECT count(* FROM records");
  g_autoptr (GError) error = NULL;
  assert_false (stream_analytics_check (c, &error));
  assert_string_equal (error->message, "sql: near \"FROM\": syntax error\n"
                                       "  SELECT count(* FROM records\n"
                                       "                 ^");
  /* Where SQLite names no place, the message alone. */
  g_free (c->sql);
  c->sql = g_strdup ("SELECT count(*) FROM recrods");
  g_clear_error (&error);
  assert_false (stream_analytics_check (c, &error));
  assert_string_equal (error->message, "sql: no such table: recrods");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_tumbling_boundaries),
    cmocka_unit_test (test_sliding_windows_share_records),
    cmocka_unit_test (test_a_shard_behind_holds_time_back),
    cmocka_unit_test (test_sessions_and_anomalies),
    cmocka_unit_test (test_bad_sql_has_a_caret),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
