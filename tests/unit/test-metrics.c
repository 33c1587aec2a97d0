/* The metrics registry renders valid Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "edge-core.h"

static void
test_render (void **state)
{
  g_autoptr (EdgeMetrics) m = edge_metrics_new ();
  static const double buckets[] = { 0.1, 1 };
  edge_metrics_declare (m, "jobs_total", EDGE_METRIC_COUNTER, "Jobs done.", NULL, 0);
  edge_metrics_declare (m, "queue_depth", EDGE_METRIC_GAUGE, "Jobs waiting.", NULL, 0);
  edge_metrics_declare (m, "job_seconds", EDGE_METRIC_HISTOGRAM, "Job time.", buckets, 2);
  edge_metrics_add (m, "jobs_total", "kind=\"a\"", 2);
  edge_metrics_add (m, "jobs_total", "kind=\"a\"", 3);
  edge_metrics_add (m, "jobs_total", "kind=\"b\"", 1);
  edge_metrics_set (m, "queue_depth", "", 7);
  edge_metrics_set (m, "queue_depth", "", 4);
  edge_metrics_observe (m, "job_seconds", "", 0.05);
  edge_metrics_observe (m, "job_seconds", "", 0.5);
  edge_metrics_observe (m, "job_seconds", "", 5);
  g_autofree char *text = edge_metrics_render (m);
  static const char *const lines[] = {
    "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\n",
    "jobs_total{kind=\"a\"} 5\n",
    "jobs_total{kind=\"b\"} 1\n",
    "# TYPE queue_depth gauge\nqueue_depth 4\n",
    "job_seconds_bucket{le=\"0.1\"} 1\n",
    "job_seconds_bucket{le=\"1\"} 2\n",
    "job_seconds_bucket{le=\"+Inf\"} 3\n",
    "job_seconds_sum 5.55\n",
    "job_seconds_count 3\n",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (lines); i++)
    if (strstr (text, lines[i]) == NULL)
      fail_msg ("missing %s in:\n%s", lines[i], text);
}

static void
test_series_are_bounded (void **state)
{
  g_autoptr (EdgeMetrics) m = edge_metrics_new ();
  edge_metrics_declare (m, "hits_total", EDGE_METRIC_COUNTER, "Hits.", NULL, 0);
  for (int i = 0; i < EDGE_METRICS_MAX_SERIES + 50; i++) {
    g_autofree char *labels = g_strdup_printf ("id=\"%d\"", i);
    edge_metrics_add (m, "hits_total", labels, 1);
  }
  g_autofree char *text = edge_metrics_render (m);
  assert_non_null (strstr (text, "edged_metrics_dropped_series_total 50\n"));
  assert_null (strstr (text, "id=\"1000\""));
}

static void
test_escape (void **state)
{
  g_autofree char *e = edge_metrics_escape_label ("a\"b\\c\nd");
  assert_string_equal (e, "a\\\"b\\\\c\\nd");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_render),
    cmocka_unit_test (test_series_are_bounded),
    cmocka_unit_test (test_escape),
  };
  return cmocka_run_group_tests_name ("metrics", tests, NULL, NULL);
}
