/* metrics.c: a small Prometheus registry.
 *
 * Families are declared once (name, type, help, buckets); series are keyed by
 * their label text. All updates take one mutex: they are a hash lookup and an
 * add, far cheaper than the requests they count. The number of series per
 * family is capped so that a label taken from a peer (it should never be)
 * cannot grow memory without bound.
 */
#define G_LOG_DOMAIN "core"

#include "edge-core.h"

#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct {
  double value;     /* counter, gauge; histogram: sum */
  guint64 count;    /* histogram */
  guint64 *buckets; /* histogram: cumulative counts per bound, n_buckets of them */
} Series;

typedef struct {
  char *name;
  char *help;
  EdgeMetricType type;
  double *bounds;
  guint n_bounds;
  GHashTable *series; /* label text -> Series */
  GPtrArray *order;   /* label texts in first-seen order, for stable output */
} Family;

typedef struct {
  EdgeMetricsCollectFunc func;
  gpointer user_data;
} Collector;

struct _EdgeMetrics {
  GMutex lock;
  GHashTable *families; /* name -> Family */
  GPtrArray *order;     /* Family, declaration order */
  GArray *collectors;   /* Collector */
  guint64 dropped_series;
};

static void
series_free (gpointer data)
{
  Series *s = data;
  g_free (s->buckets);
  g_free (s);
}

static void
family_free (gpointer data)
{
  Family *f = data;
  g_hash_table_unref (f->series);
  g_ptr_array_unref (f->order);
  g_free (f->bounds);
  g_free (f->name);
  g_free (f->help);
  g_free (f);
}

EdgeMetrics *
edge_metrics_new (void)
{
  EdgeMetrics *m = g_new0 (EdgeMetrics, 1);
  g_mutex_init (&m->lock);
  m->families = g_hash_table_new (g_str_hash, g_str_equal);
  m->order = g_ptr_array_new_with_free_func (family_free);
  m->collectors = g_array_new (FALSE, FALSE, sizeof (Collector));
  return m;
}

void
edge_metrics_free (EdgeMetrics *metrics)
{
  if (metrics == NULL)
    return;
  g_hash_table_unref (metrics->families);
  g_ptr_array_unref (metrics->order);
  g_array_unref (metrics->collectors);
  g_mutex_clear (&metrics->lock);
  g_free (metrics);
}

void
edge_metrics_declare (EdgeMetrics *metrics, const char *name, EdgeMetricType type,
                      const char *help, const double *buckets, guint n_buckets)
{
  Family *f;
  g_return_if_fail (type != EDGE_METRIC_HISTOGRAM || n_buckets > 0);

  g_mutex_lock (&metrics->lock);
  if (g_hash_table_contains (metrics->families, name)) {
    g_mutex_unlock (&metrics->lock);
    g_critical ("metric %s declared twice", name);
    return;
  }
  f = g_new0 (Family, 1);
  f->name = g_strdup (name);
  f->help = g_strdup (help);
  f->type = type;
  if (type == EDGE_METRIC_HISTOGRAM) {
    f->bounds = g_memdup2 (buckets, n_buckets * sizeof (double));
    f->n_bounds = n_buckets;
  }
  f->series = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, series_free);
  f->order = g_ptr_array_new ();
  g_hash_table_insert (metrics->families, f->name, f);
  g_ptr_array_add (metrics->order, f);
  g_mutex_unlock (&metrics->lock);
}

/* With the lock held. NULL if the family is unknown or full. */
static Series *
series_get (EdgeMetrics *metrics, const char *name, const char *labels, EdgeMetricType type)
{
  Family *f = g_hash_table_lookup (metrics->families, name);
  Series *s;
  char *key;

  if (f == NULL || f->type != type) {
    g_critical ("metric %s used before it was declared, or with another type", name);
    return NULL;
  }
  s = g_hash_table_lookup (f->series, labels);
  if (s != NULL)
    return s;
  if (g_hash_table_size (f->series) >= EDGE_METRICS_MAX_SERIES) {
    metrics->dropped_series++;
    return NULL;
  }
  s = g_new0 (Series, 1);
  if (type == EDGE_METRIC_HISTOGRAM)
    s->buckets = g_new0 (guint64, f->n_bounds);
  key = g_strdup (labels);
  g_hash_table_insert (f->series, key, s);
  g_ptr_array_add (f->order, key);
  return s;
}

void
edge_metrics_add (EdgeMetrics *metrics, const char *name, const char *labels, double value)
{
  g_mutex_lock (&metrics->lock);
  Series *s = series_get (metrics, name, labels, EDGE_METRIC_COUNTER);
  if (s)
    s->value += value;
  g_mutex_unlock (&metrics->lock);
}

void
edge_metrics_set (EdgeMetrics *metrics, const char *name, const char *labels, double value)
{
  g_mutex_lock (&metrics->lock);
  Series *s = series_get (metrics, name, labels, EDGE_METRIC_GAUGE);
  if (s)
    s->value = value;
  g_mutex_unlock (&metrics->lock);
}

void
edge_metrics_observe (EdgeMetrics *metrics, const char *name, const char *labels, double value)
{
  g_mutex_lock (&metrics->lock);
  Series *s = series_get (metrics, name, labels, EDGE_METRIC_HISTOGRAM);
  if (s) {
    Family *f = g_hash_table_lookup (metrics->families, name);
    for (guint i = 0; i < f->n_bounds; i++)
      if (value <= f->bounds[i])
        s->buckets[i]++;
    s->count++;
    s->value += value;
  }
  g_mutex_unlock (&metrics->lock);
}

char *
edge_metrics_escape_label (const char *value)
{
  GString *out = g_string_sized_new (strlen (value) + 8);
  for (const char *p = value; *p; p++) {
    if (*p == '\\' || *p == '"')
      g_string_append_c (out, '\\');
    if (*p == '\n') {
      g_string_append (out, "\\n");
      continue;
    }
    g_string_append_c (out, *p);
  }
  return g_string_free (out, FALSE);
}

void
edge_metrics_add_collector (EdgeMetrics *metrics, EdgeMetricsCollectFunc func, gpointer user_data)
{
  Collector c = { func, user_data };
  g_mutex_lock (&metrics->lock);
  g_array_append_val (metrics->collectors, c);
  g_mutex_unlock (&metrics->lock);
}

static void
append_number (GString *out, double v)
{
  if (isinf (v))
    g_string_append (out, v > 0 ? "+Inf" : "-Inf");
  else if (isnan (v))
    g_string_append (out, "NaN");
  else if (v == (double) (gint64) v && fabs (v) < 1e15)
    g_string_append_printf (out, "%" G_GINT64_FORMAT, (gint64) v);
  else {
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    g_string_append (out, g_ascii_formatd (buf, sizeof buf, "%.15g", v));
  }
}

static void
append_sample (GString *out, const char *name, const char *suffix, const char *labels,
               const char *extra, double v)
{
  gboolean any = labels[0] || (extra && extra[0]);
  g_string_append_printf (out, "%s%s", name, suffix);
  if (any) {
    g_string_append_c (out, '{');
    g_string_append (out, labels);
    if (labels[0] && extra && extra[0])
      g_string_append_c (out, ',');
    if (extra)
      g_string_append (out, extra);
    g_string_append_c (out, '}');
  }
  g_string_append_c (out, ' ');
  append_number (out, v);
  g_string_append_c (out, '\n');
}

char *
edge_metrics_render (EdgeMetrics *metrics)
{
  static const char *const type_names[] = { "counter", "gauge", "histogram" };
  GString *out = g_string_sized_new (4096);
  g_autoptr (GArray) collectors = NULL;

  g_mutex_lock (&metrics->lock);
  collectors = g_array_copy (metrics->collectors);
  g_mutex_unlock (&metrics->lock);
  for (guint i = 0; i < collectors->len; i++) {
    Collector *c = &g_array_index (collectors, Collector, i);
    c->func (metrics, c->user_data);
  }

  g_mutex_lock (&metrics->lock);
  for (guint i = 0; i < metrics->order->len; i++) {
    Family *f = g_ptr_array_index (metrics->order, i);
    g_string_append_printf (out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                            type_names[f->type]);
    for (guint j = 0; j < f->order->len; j++) {
      const char *labels = g_ptr_array_index (f->order, j);
      Series *s = g_hash_table_lookup (f->series, labels);
      if (f->type != EDGE_METRIC_HISTOGRAM) {
        append_sample (out, f->name, "", labels, NULL, s->value);
        continue;
      }
      for (guint b = 0; b < f->n_bounds; b++) {
        char le[64], num[G_ASCII_DTOSTR_BUF_SIZE];
        g_snprintf (le, sizeof le, "le=\"%s\"",
                    g_ascii_formatd (num, sizeof num, "%.15g", f->bounds[b]));
        append_sample (out, f->name, "_bucket", labels, le, (double) s->buckets[b]);
      }
      append_sample (out, f->name, "_bucket", labels, "le=\"+Inf\"", (double) s->count);
      append_sample (out, f->name, "_sum", labels, NULL, s->value);
      append_sample (out, f->name, "_count", labels, NULL, (double) s->count);
    }
  }
  g_string_append_printf (out,
                          "# HELP edged_metrics_dropped_series_total Observations dropped because "
                          "a family reached %d label sets.\n"
                          "# TYPE edged_metrics_dropped_series_total counter\n"
                          "edged_metrics_dropped_series_total %" G_GUINT64_FORMAT "\n",
                          EDGE_METRICS_MAX_SERIES, metrics->dropped_series);
  g_mutex_unlock (&metrics->lock);
  return g_string_free (out, FALSE);
}

/* --- process collector --- */

static double process_start_time;

static void
collect_process (EdgeMetrics *metrics, gpointer user_data)
{
  g_autofree char *stat = NULL;
  double ticks = (double) sysconf (_SC_CLK_TCK);
  double page = (double) sysconf (_SC_PAGESIZE);
  struct rlimit rl;

  if (g_file_get_contents ("/proc/self/stat", &stat, NULL, NULL)) {
    /* Fields after the command name, which may hold spaces: find the last ')'. */
    const char *p = strrchr (stat, ')');
    g_auto (GStrv) f = p ? g_strsplit (p + 2, " ", -1) : NULL;
    if (f && g_strv_length (f) > 22) {
      /* f[0] is field 3 (state): utime is field 14, stime 15, vsize 23, rss 24. */
      double utime = g_ascii_strtod (f[11], NULL), stime = g_ascii_strtod (f[12], NULL);
      edge_metrics_set (metrics, "process_cpu_seconds_total", "", (utime + stime) / ticks);
      edge_metrics_set (metrics, "process_virtual_memory_bytes", "", g_ascii_strtod (f[20], NULL));
      edge_metrics_set (metrics, "process_resident_memory_bytes", "",
                        g_ascii_strtod (f[21], NULL) * page);
    }
  }
  g_autoptr (GDir) fds = g_dir_open ("/proc/self/fd", 0, NULL);
  if (fds) {
    double n = 0;
    while (g_dir_read_name (fds))
      n++;
    edge_metrics_set (metrics, "process_open_fds", "", n);
  }
  if (getrlimit (RLIMIT_NOFILE, &rl) == 0)
    edge_metrics_set (metrics, "process_max_fds", "", (double) rl.rlim_cur);
  edge_metrics_set (metrics, "process_start_time_seconds", "", process_start_time);
}

void
edge_metrics_add_process_collector (EdgeMetrics *metrics)
{
  /* Prometheus' convention is a gauge-typed cpu counter when set from /proc;
   * declare it a gauge so that edge_metrics_set applies. */
  edge_metrics_declare (metrics, "process_cpu_seconds_total", EDGE_METRIC_GAUGE,
                        "Total user and system CPU time spent in seconds.", NULL, 0);
  edge_metrics_declare (metrics, "process_resident_memory_bytes", EDGE_METRIC_GAUGE,
                        "Resident memory size in bytes.", NULL, 0);
  edge_metrics_declare (metrics, "process_virtual_memory_bytes", EDGE_METRIC_GAUGE,
                        "Virtual memory size in bytes.", NULL, 0);
  edge_metrics_declare (metrics, "process_open_fds", EDGE_METRIC_GAUGE,
                        "Number of open file descriptors.", NULL, 0);
  edge_metrics_declare (metrics, "process_max_fds", EDGE_METRIC_GAUGE,
                        "Maximum number of open file descriptors.", NULL, 0);
  edge_metrics_declare (metrics, "process_start_time_seconds", EDGE_METRIC_GAUGE,
                        "Start time of the process since unix epoch in seconds.", NULL, 0);
  process_start_time = (double) g_get_real_time () / G_USEC_PER_SEC;
  edge_metrics_add_collector (metrics, collect_process, NULL);
}
