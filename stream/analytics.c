/* analytics.c: analytics applications, run (see analytics.h).
 *
 * Each application consumes its stream as "analytics-NAME". A batch is taken
 * in one SQLite transaction with the windows it closes; the shard's
 * checkpoint moves after the commit. The application's own positions, kept
 * in that transaction, are what count: a batch delivered again after a
 * crash is skipped record by record, so no record is counted twice. Results
 * wait in the outbox until the output stream has them durably.
 */
#define G_LOG_DOMAIN "analytics"

#include "analytics.h"

#include <glib/gstdio.h>

#define CONSUMER_BATCH 10000
#define TICK_MS 1000
#define RESULTS_PER_PUT 500

typedef struct _App App;

struct _StreamAnalyticsService {
  StreamStore *store;
  GPtrArray *apps; /* App * */
};

struct _App {
  gint refs;
  StreamAnalyticsService *service;
  const EdgeConfigAnalytics *config;
  char *consumer_name;
  StreamAnalytics *engine;
  StreamConsumer *consumer;
  guint tick;
  gboolean putting;  /* a put of results is under way */
  gboolean stopped;
  guint64 written;   /* results in the output stream since the start */
  guint64 dropped;   /* results larger than the output stream takes */
  char *last_error;
};

static App *
app_ref (App *app)
{
  g_atomic_int_inc (&app->refs);
  return app;
}

static void
app_unref (App *app)
{
  if (!g_atomic_int_dec_and_test (&app->refs))
    return;
  stream_analytics_close (app->engine);
  g_free (app->consumer_name);
  g_free (app->last_error);
  g_free (app);
}

static void
set_error (App *app, const char *message)
{
  if (app->last_error == NULL || !g_str_equal (app->last_error, message))
    g_warning ("analytics %s: %s", app->config->name, message);
  g_free (app->last_error);
  app->last_error = g_strdup (message);
}

/* ---- results into the output stream ---- */

static void flush (App *app);

typedef struct {
  App *app;
  GPtrArray *results;
} Put;

static void
put_done (StreamPutResult *results, guint n, gpointer data)
{
  Put *p = data;
  App *app = p->app;
  app->putting = FALSE;
  if (!app->stopped) {
    /* Written up to the first failure; the rest goes again. */
    guint ok = 0;
    while (ok < n && results[ok].error == NULL)
      ok++;
    g_autoptr (GError) error = NULL;
    if (ok > 0) {
      StreamAnalyticsResult *last = g_ptr_array_index (p->results, ok - 1);
      if (stream_analytics_written (app->engine, last->id, &error))
        app->written += ok;
    }
    if (ok < n)
      set_error (app, results[ok].error->message);
    else if (error)
      set_error (app, error->message);
    else
      flush (app);
  }
  g_ptr_array_unref (p->results);
  app_unref (app);
  g_free (p);
}

static void
flush (App *app)
{
  StreamStore *store = app->service->store;
  if (app->putting || app->stopped)
    return;
  g_autoptr (GPtrArray) results = stream_analytics_pending (app->engine, RESULTS_PER_PUT);
  if (results->len == 0)
    return;
  g_autoptr (GError) error = NULL;
  const StreamInfo *info = stream_store_lookup (store, app->config->output, &error);
  if (info == NULL) {
    set_error (app, error->message);
    return;
  }
  /* A result larger than the output stream takes can never go. */
  guint64 max = info->settings.max_record_bytes;
  StreamAnalyticsResult *first = g_ptr_array_index (results, 0);
  if (strlen (first->data) + strlen (first->partition_key) > max) {
    g_autofree char *message = g_strdup_printf ("a result of %" G_GSIZE_FORMAT
                                                " bytes is larger than %s takes: dropped",
                                                strlen (first->data), app->config->output);
    set_error (app, message);
    app->dropped++;
    if (stream_analytics_written (app->engine, first->id, NULL))
      flush (app);
    return;
  }
  guint n = 1;
  while (n < results->len) {
    StreamAnalyticsResult *r = g_ptr_array_index (results, n);
    if (strlen (r->data) + strlen (r->partition_key) > max)
      break;
    n++;
  }
  g_ptr_array_set_size (results, n);
  g_autofree StreamPutRecord *records = g_new0 (StreamPutRecord, n);
  g_autoptr (GPtrArray) datas = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  for (guint i = 0; i < n; i++) {
    StreamAnalyticsResult *r = g_ptr_array_index (results, i);
    GBytes *data = g_bytes_new_static (r->data, strlen (r->data));
    g_ptr_array_add (datas, data);
    records[i].partition_key = r->partition_key;
    records[i].data = data;
  }
  Put *p = g_new0 (Put, 1);
  p->app = app_ref (app);
  p->results = g_ptr_array_ref (results);
  app->putting = TRUE;
  if (!stream_store_put (store, app->config->output, records, n, put_done, p, &error)) {
    app->putting = FALSE;
    set_error (app, error->message);
    g_ptr_array_unref (p->results);
    app_unref (app);
    g_free (p);
  }
}

/* ---- taking records and closing windows ---- */

/* The shards with records the application has not taken yet. */
static GArray *
shards_behind (App *app)
{
  StreamStore *store = app->service->store;
  GArray *behind = g_array_new (FALSE, FALSE, sizeof (guint32));
  const StreamInfo *info = stream_store_lookup (store, app->config->stream, NULL);
  for (guint i = 0; info && i < info->shards->len; i++) {
    const StreamShardInfo *shard = g_ptr_array_index (info->shards, i);
    guint64 first = 0, next = 0;
    if (stream_store_shard_range (store, app->config->stream, shard->ordinal, &first, &next,
                                  NULL) &&
        MAX (first, stream_analytics_position (app->engine, shard->ordinal)) < next)
      g_array_append_val (behind, shard->ordinal);
  }
  return behind;
}

static gboolean
run (App *app, StreamBatch *batch)
{
  g_autoptr (GError) error = NULL;
  gboolean ok = stream_analytics_begin (app->engine, &error);
  for (guint i = 0; ok && batch && i < batch->records->len; i++)
    ok = stream_analytics_add (app->engine, batch->shard_ordinal,
                               g_ptr_array_index (batch->records, i), &error);
  g_autoptr (GArray) behind = shards_behind (app);
  ok = ok &&
       stream_analytics_advance (app->engine, g_get_real_time () / 1000,
                                 (const guint32 *) (void *) behind->data, behind->len, &error) &&
       stream_analytics_commit (app->engine, &error);
  if (!ok) {
    stream_analytics_rollback (app->engine);
    set_error (app, error->message);
    return FALSE;
  }
  flush (app);
  return TRUE;
}

static void
on_batch (StreamConsumer *consumer, StreamBatch *batch, gpointer data)
{
  App *app = data;
  stream_consumer_done (consumer, batch, !app->stopped && run (app, batch));
}

/* Time passes without records too: windows on arrival time close by the
 * clock, and results that could not be written are tried again. */
static gboolean
on_tick (gpointer data)
{
  App *app = data;
  run (app, NULL);
  return G_SOURCE_CONTINUE;
}

/* ---- configuration and lifetime ---- */

gboolean
stream_analytics_check_config (const EdgeConfig *config, const char *source, GError **error)
{
  for (guint i = 0; i < config->analytics->len; i++) {
    const EdgeConfigAnalytics *c = g_ptr_array_index (config->analytics, i);
    g_autoptr (GError) problem = NULL;
    if (!edge_name_valid (c->name, 64))
      problem = g_error_new (EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                             "the name must be 1 to 64 of a-z, A-Z, 0-9, _ . and -");
    else if (g_str_equal (c->stream, c->output))
      problem = g_error_new (EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                             "output must be another stream than the one read");
    for (guint j = 0; problem == NULL && j < i; j++)
      if (g_str_equal (c->name, ((EdgeConfigAnalytics *) config->analytics->pdata[j])->name))
        problem = g_error_new (EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                               "the name is used twice");
    if (problem == NULL)
      stream_analytics_check (c, &problem);
    if (problem) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: analytics[%u] (%s): %s", source, i, c->name, problem->message);
      return FALSE;
    }
  }
  return TRUE;
}

static App *
app_start (StreamAnalyticsService *service, const EdgeConfigAnalytics *config,
           const char *directory, GError **error)
{
  g_autofree char *path = g_strdup_printf ("%s/%s.db", directory, config->name);
  App *app = g_new0 (App, 1);
  app->refs = 1;
  app->service = service;
  app->config = config;
  app->consumer_name = g_strdup_printf ("analytics-%s", config->name);
  app->engine = stream_analytics_open (config, path, error);
  if (app->engine == NULL) {
    app_unref (app);
    return NULL;
  }
  app->consumer = stream_consumer_start (service->store, config->stream, app->consumer_name,
                                         g_str_equal (config->starting_position, "LATEST")
                                             ? STREAM_START_LATEST
                                             : STREAM_START_TRIM_HORIZON,
                                         CONSUMER_BATCH, on_batch, app, error);
  if (app->consumer == NULL) {
    g_prefix_error (error, "analytics %s: ", config->name);
    app_unref (app);
    return NULL;
  }
  app->tick = g_timeout_add (TICK_MS, on_tick, app);
  flush (app); /* what the last run left unwritten */
  g_message ("analytics \"%s\": %s windows of %s into %s", config->name, config->window,
             config->stream, config->output);
  return app;
}

static void
app_stop (App *app)
{
  app->stopped = TRUE;
  g_clear_handle_id (&app->tick, g_source_remove);
  stream_consumer_stop (app->consumer);
  app_unref (app);
}

/* ---- /v1/analytics ---- */

static void
app_to_json (App *app, JsonBuilder *b)
{
  const EdgeConfigAnalytics *c = app->config;
  StreamAnalyticsStats st;
  stream_analytics_stats (app->engine, &st);
  guint64 lag = 0;
  stream_store_consumer_lag (app->service->store, c->stream, app->consumer_name,
                             g_str_equal (c->starting_position, "LATEST") ? STREAM_START_LATEST
                                                                           : STREAM_START_TRIM_HORIZON,
                             &lag, NULL);
  json_builder_begin_object (b);
  edge_json_add_string (b, "name", c->name);
  edge_json_add_string (b, "stream", c->stream);
  edge_json_add_string (b, "output", c->output);
  edge_json_add_string (b, "window", c->window);
  if (g_str_equal (c->window, "session")) {
    edge_json_add_int (b, "gap_ms", c->gap_ms);
  } else {
    edge_json_add_int (b, "size_ms", c->size_ms);
    edge_json_add_int (b, "slide_ms", g_str_equal (c->window, "sliding") && c->slide_ms ? c->slide_ms
                                                                               : c->size_ms);
  }
  edge_json_add_string (b, "time", c->time);
  edge_json_add_string (b, "sql", c->sql);
  edge_json_add_int (b, "lag_records", (gint64) lag);
  edge_json_add_int (b, "records", (gint64) st.records);
  edge_json_add_int (b, "open_records", (gint64) st.open_records);
  edge_json_add_int (b, "invalid_records", (gint64) st.invalid);
  edge_json_add_int (b, "late_records", (gint64) st.late);
  edge_json_add_int (b, "windows", (gint64) st.windows);
  edge_json_add_int (b, "results", (gint64) st.results);
  edge_json_add_int (b, "anomalies", (gint64) st.anomalies);
  edge_json_add_int (b, "pending_results", (gint64) st.pending);
  edge_json_add_int (b, "written_results", (gint64) app->written);
  edge_json_add_int (b, "dropped_results", (gint64) app->dropped);
  if (st.watermark_ms)
    edge_json_add_int (b, "watermark_ms", st.watermark_ms);
  if (app->last_error)
    edge_json_add_string (b, "last_error", app->last_error);
  json_builder_end_object (b);
}

static void
handle_list (EdgeRequest *request, gpointer data)
{
  StreamAnalyticsService *service = data;
  edge_request_respond_array (request, "applications", service->apps,
                              (EdgeJsonWriteFunc) app_to_json);
}

static void
handle_get (EdgeRequest *request, gpointer data)
{
  StreamAnalyticsService *service = data;
  const char *name = edge_request_param (request, "name");
  for (guint i = 0; i < service->apps->len; i++) {
    App *app = g_ptr_array_index (service->apps, i);
    if (g_str_equal (app->config->name, name)) {
      edge_request_respond_object (request, app, (EdgeJsonWriteFunc) app_to_json);
      return;
    }
  }
  edge_request_respond_error (request, 404, "NotFound", "no analytics application %s", name);
}

StreamAnalyticsService *
stream_analytics_service_new (EdgeGateway *gateway, StreamStore *store, const EdgeConfig *config,
                              const char *data_dir, GError **error)
{
  static const EdgeRoute routes[] = {
    { "GET", "/v1/analytics", handle_list, "Analytics applications and their windows",
      "analytics" },
    { "GET", "/v1/analytics/{name}", handle_get, "One analytics application", "analytics" },
  };
  g_autoptr (StreamAnalyticsService) service = g_new0 (StreamAnalyticsService, 1);
  service->store = store;
  service->apps = g_ptr_array_new ();
  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (gateway, &routes[i], service, error))
      return NULL;
  g_autofree char *directory = g_build_filename (data_dir, "analytics", NULL);
  if (config->analytics->len && g_mkdir_with_parents (directory, 0700) < 0) {
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "%s: %s", directory,
                 g_strerror (errno));
    return NULL;
  }
  for (guint i = 0; i < config->analytics->len; i++) {
    App *app = app_start (service, config->analytics->pdata[i], directory, error);
    if (app == NULL)
      return NULL;
    g_ptr_array_add (service->apps, app);
  }
  return g_steal_pointer (&service);
}

void
stream_analytics_service_free (StreamAnalyticsService *service)
{
  if (service == NULL)
    return;
  for (guint i = 0; i < service->apps->len; i++)
    app_stop (g_ptr_array_index (service->apps, i));
  g_ptr_array_unref (service->apps);
  g_free (service);
}
