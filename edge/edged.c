/* edged: the daemon. Loads the configuration, takes the data directory,
 * opens keys and state, wires the modules into the gateway and runs one
 * GLib main loop until SIGTERM or SIGINT.
 *
 * Exit status: 0 after a clean shutdown, 1 when it cannot start (data
 * directory in use, key file refused, address taken), 2 for an invalid
 * configuration or command line.
 */
#define G_LOG_DOMAIN "edged"

#include "edge-core.h"
#include "edge-gateway.h"
#include "delivery.h"
#include "forward.h"
#include "analytics.h"
#include "edged-version.h"
#include "functions.h"
#include "hw-service.h"
#include "hw.h"
#include "media.h"
#include "mqtt.h"
#include "stream.h"

#include <errno.h>
#include <glib-unix.h>
#include <gst/gst.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct {
  EdgeConfig *config;
  char *config_source;
  EdgeDataDir *data_dir;
  EdgeKeyring *keyring;
  EdgeState *state;
  EdgeMetrics *metrics;
  EdgeGateway *gateway;
  StreamStore *streams;
  StreamKinesis *kinesis;
  MediaService *media;
  FunctionsService *functions;
  MqttService *mqtt;
  HwService *hw;
  StreamDeliveryService *delivery;
  StreamForwardService *forward;
  StreamAnalyticsService *analytics;
  MediaUploads *uploads;
  HwBoard *board;
  guint watchdog;
  GMainLoop *loop;
  GDateTime *started_at;
  gint64 started_us;
  int exit_status;
} Daemon;

/* ---- systemd readiness (sd_notify protocol, without libsystemd) ---- */

static void
notify_systemd (const char *state)
{
  const char *path = g_getenv ("NOTIFY_SOCKET");
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  gsize len;
  int fd;

  if (path == NULL || (path[0] != '/' && path[0] != '@') || strlen (path) >= sizeof addr.sun_path)
    return;
  len = strlen (path);
  memcpy (addr.sun_path, path, len);
  if (addr.sun_path[0] == '@')
    addr.sun_path[0] = '\0'; /* abstract namespace */
  fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return;
  if (sendto (fd, state, strlen (state), MSG_NOSIGNAL, (struct sockaddr *) &addr,
              offsetof (struct sockaddr_un, sun_path) + len) < 0)
    g_debug ("sd_notify: %s", g_strerror (errno));
  close (fd);
}

/* With WatchdogSec= in the unit, systemd restarts edged when the main loop
 * stops turning: it pings from the loop at half the interval. */
static gboolean
on_watchdog (gpointer data)
{
  notify_systemd ("WATCHDOG=1");
  return G_SOURCE_CONTINUE;
}

static guint
watchdog_start (void)
{
  const char *usec = g_getenv ("WATCHDOG_USEC");
  const char *pid = g_getenv ("WATCHDOG_PID");
  guint64 interval;

  if (usec == NULL || !g_ascii_string_to_unsigned (usec, 10, 1, G_MAXUINT64, &interval, NULL))
    return 0;
  if (pid && g_ascii_strtoull (pid, NULL, 10) != (guint64) getpid ())
    return 0;
  return g_timeout_add ((guint) MIN (interval / 2000, G_MAXUINT), on_watchdog, NULL);
}

/* ---- delivery streams' transforms run as functions ---- */

typedef struct {
  StreamTransformDone done;
  gpointer done_data;
  char *error; /* an invocation refused at once, answered from an idle */
} TransformCall;

static gboolean
transform_refused (gpointer data)
{
  TransformCall *call = data;
  call->done (NULL, call->error, call->done_data);
  g_free (call->error);
  g_free (call);
  return G_SOURCE_REMOVE;
}

static void
transform_invoked (const FunctionsResult *result, gpointer data)
{
  TransformCall *call = data;
  g_autofree char *error = NULL;
  if (result->stopping)
    error = g_strdup ("edged is stopping");
  else if (result->error_type)
    error = g_strdup (result->error_type);
  else if (result->function_error)
    error = g_strdup_printf ("the function failed (%s)", result->function_error);
  call->done (error ? NULL : result->payload, error, call->done_data);
  g_free (call);
}

static void
invoke_transform (const char *function, GBytes *event, StreamTransformDone done,
                  gpointer done_data, gpointer user_data)
{
  Daemon *d = user_data;
  g_autoptr (GError) error = NULL;
  TransformCall *call = g_new0 (TransformCall, 1);
  call->done = done;
  call->done_data = done_data;
  if (!functions_service_invoke (d->functions, function, NULL, event, transform_invoked, call,
                                 &error)) {
    call->error = g_strdup (error->message);
    g_idle_add (transform_refused, call);
  }
}

/* ---- routes the daemon itself serves ---- */

static void
handle_status (EdgeRequest *request, gpointer data)
{
  Daemon *d = data;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autofree char *started = g_date_time_format_iso8601 (d->started_at);
  g_autofree char *url = edge_gateway_url (d->gateway);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "version");
  json_builder_add_string_value (b, EDGED_VERSION);
  json_builder_set_member_name (b, "instance_id");
  json_builder_add_string_value (b, edge_state_instance_id (d->state));
  json_builder_set_member_name (b, "started_at");
  json_builder_add_string_value (b, started);
  json_builder_set_member_name (b, "uptime_seconds");
  json_builder_add_double_value (b, (g_get_monotonic_time () - d->started_us) / 1e6);
  json_builder_set_member_name (b, "config");
  json_builder_add_string_value (b, d->config_source);
  json_builder_set_member_name (b, "data_dir");
  json_builder_add_string_value (b, edge_data_dir_path (d->data_dir));

  json_builder_set_member_name (b, "gateway");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "url");
  json_builder_add_string_value (b, url);
  json_builder_set_member_name (b, "tls");
  json_builder_add_boolean_value (b, d->config->gateway_tls_cert[0] != '\0');
  json_builder_set_member_name (b, "auth");
  json_builder_add_boolean_value (b, edge_gateway_auth_enabled (d->gateway));
  json_builder_end_object (b);

  json_builder_set_member_name (b, "encryption");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "cipher");
  json_builder_add_string_value (b, "AES-256-GCM");
  json_builder_set_member_name (b, "active_key_id");
  json_builder_add_int_value (b, edge_keyring_active_id (d->keyring));
  json_builder_set_member_name (b, "keys");
  json_builder_add_int_value (b, edge_keyring_count (d->keyring));
  json_builder_end_object (b);

  json_builder_set_member_name (b, "board");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, d->board->model);
  json_builder_set_member_name (b, "cpu_model");
  json_builder_add_string_value (b, d->board->cpu_model);
  json_builder_set_member_name (b, "arch");
  json_builder_add_string_value (b, d->board->arch);
  json_builder_set_member_name (b, "kernel");
  json_builder_add_string_value (b, d->board->kernel);
  json_builder_set_member_name (b, "cpus");
  json_builder_add_int_value (b, d->board->cpus);
  json_builder_set_member_name (b, "memory_bytes");
  json_builder_add_int_value (b, (gint64) d->board->memory_bytes);
  json_builder_set_member_name (b, "raspberry_pi");
  json_builder_add_boolean_value (b, d->board->raspberry_pi);
  json_builder_end_object (b);
  json_builder_end_object (b);

  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, SOUP_STATUS_OK, root);
}

static gboolean
check_state (gpointer data, GError **error)
{
  Daemon *d = data;
  return edge_state_ping (d->state, error);
}

static gboolean
check_data_dir (gpointer data, GError **error)
{
  Daemon *d = data;
  if (access (edge_data_dir_path (d->data_dir), W_OK) != 0) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "%s is not writable: %s",
                 edge_data_dir_path (d->data_dir), g_strerror (errno));
    return FALSE;
  }
  return TRUE;
}

/* Creates the streams the configuration declares and does not exist yet,
 * and brings the retention and write limits of every one in line with it. */
static gboolean
apply_configured_streams (Daemon *d, GError **error)
{
  static const char *const durabilities[] = { "sync", "batch", "none" };
  for (guint i = 0; i < d->config->streams->len; i++) {
    EdgeConfigStream *c = g_ptr_array_index (d->config->streams, i);
    const StreamInfo *info = stream_store_lookup (d->streams, c->name, NULL);
    gboolean created = info == NULL;
    if (created) {
      StreamSettings settings;
      stream_settings_init (&settings);
      for (guint k = 0; k < G_N_ELEMENTS (durabilities); k++)
        if (g_str_equal (c->durability, durabilities[k]))
          settings.durability = (StreamDurability) k;
      settings.batch_ms = (guint) c->batch_ms;
      settings.retention_hours = (guint) c->retention_hours;
      settings.max_record_bytes = (guint64) c->max_record_bytes;
      settings.retention_bytes = (guint64) c->retention_bytes;
      if (!stream_store_create (d->streams, c->name, (guint) c->shards, &settings, error)) {
        g_prefix_error (error, "streams[%u] (%s): ", i, c->name);
        return FALSE;
      }
      g_message ("stream %s: created with %" G_GINT64_FORMAT " shard%s, as configured", c->name,
                 c->shards, c->shards == 1 ? "" : "s");
      info = stream_store_lookup (d->streams, c->name, NULL);
    }
    StreamWriteLimit limit = { (guint64) c->write_records_per_second,
                               (guint64) c->write_bytes_per_second };
    if (!stream_store_set_write_limit (d->streams, c->name, &limit, error))
      return FALSE;
    if (info->settings.retention_bytes != (guint64) c->retention_bytes) {
      if (!stream_store_set_retention_bytes (d->streams, c->name, (guint64) c->retention_bytes,
                                             error))
        return FALSE;
      g_message ("stream %s: retention set to %" G_GINT64_FORMAT " bytes per shard, as configured",
                 c->name, c->retention_bytes);
    }
    if (info->shards->len != (guint) c->shards && !created)
      g_warning ("stream %s: configured with %" G_GINT64_FORMAT " shards but has %u; resharding "
                 "is done through the API, not the configuration",
                 c->name, c->shards, info->shards->len);
    if (info->settings.retention_hours != (guint) c->retention_hours) {
      if (!stream_store_set_retention (d->streams, c->name, (guint) c->retention_hours, error))
        return FALSE;
      g_message ("stream %s: retention set to %" G_GINT64_FORMAT " hours, as configured", c->name,
                 c->retention_hours);
    }
  }
  return TRUE;
}

/* ---- lifecycle ---- */

static gboolean
on_stop_signal (gpointer data)
{
  Daemon *d = data;
  g_message ("stopping");
  notify_systemd ("STOPPING=1");
  g_main_loop_quit (d->loop);
  return G_SOURCE_CONTINUE;
}

static gboolean
daemon_start (Daemon *d, GError **error)
{
  g_autofree char *key_path = NULL;
  g_autofree char *db_path = NULL;
  g_autofree char *url = NULL;
  const EdgeConfig *c = d->config;

  d->data_dir = edge_data_dir_open (c->data_dir, error);
  if (d->data_dir == NULL)
    return FALSE;
  key_path = edge_config_master_key_path (c);
  d->keyring = edge_keyring_open (key_path, TRUE, error);
  if (d->keyring == NULL)
    return FALSE;
  db_path = g_build_filename (edge_data_dir_path (d->data_dir), "state.db", NULL);
  d->state = edge_state_open (db_path, error);
  if (d->state == NULL)
    return FALSE;
  d->board = hw_board_detect ("/");
  d->metrics = edge_metrics_new ();
  edge_metrics_add_process_collector (d->metrics);

  EdgeGatewayOptions options = {
    .listen = c->gateway_listen,
    .tls_cert_file = c->gateway_tls_cert,
    .tls_key_file = c->gateway_tls_key,
    .max_body_bytes = c->gateway_max_body_bytes,
    .max_connections = c->gateway_max_connections,
    .access_log = c->gateway_access_log,
    .web_root = c->gateway_web_root,
    .ws_max_buffered_bytes = c->gateway_ws_max_buffered_bytes,
    .ws_max_message_bytes = c->gateway_ws_max_message_bytes,
    .ws_stall_timeout_ms = c->gateway_ws_stall_timeout_ms,
    .max_connections_per_client = c->gateway_max_connections_per_client,
    .header_timeout_ms = c->gateway_header_timeout_ms,
    .keepalive_timeout_ms = c->gateway_keepalive_timeout_ms,
    .config = c,
    .state = d->state,
    .metrics = d->metrics,
  };
  d->gateway = edge_gateway_new (&options, error);
  if (d->gateway == NULL)
    return FALSE;
  static const EdgeRoute status_route = { "GET", "/v1/status", handle_status,
                                          "What this edged is and runs", "system", 0 };
  if (!edge_gateway_add_route (d->gateway, &status_route, d, error))
    return FALSE;

  g_autofree char *streams_dir = g_build_filename (edge_data_dir_path (d->data_dir), "streams", NULL);
  d->streams = stream_store_open (streams_dir, d->state, d->keyring, error);
  if (d->streams == NULL)
    return FALSE;
  stream_store_set_min_free (d->streams, (guint64) d->config->storage_min_free_bytes);
  if (!apply_configured_streams (d, error))
    return FALSE;
  d->kinesis = stream_kinesis_new (d->gateway, d->streams, d->keyring, error);
  if (d->kinesis == NULL || !stream_subscribe_register (d->gateway, d->streams, error) ||
      !stream_rest_register (d->gateway, d->streams, error))
    return FALSE;
  g_autofree char *media_dir = g_build_filename (edge_data_dir_path (d->data_dir), "media", NULL);
  d->media = media_service_new (d->gateway, d->state, d->keyring, d->streams, media_dir,
                                error);
  if (d->media == NULL)
    return FALSE;
  media_service_set_free_space (d->media, (guint64) c->storage_min_free_bytes,
                                (guint64) c->storage_video_reserve_bytes);
  for (guint i = 0; i < c->cameras->len; i++)
    if (!media_service_add_configured_camera (d->media, g_ptr_array_index (c->cameras, i), error)) {
      g_prefix_error (error, "%s: cameras: ", d->config_source);
      return FALSE;
    }
  g_autofree char *functions_dir =
      g_build_filename (edge_data_dir_path (d->data_dir), "functions", NULL);
  d->functions = functions_service_new (d->gateway, d->metrics, d->state, d->keyring, d->streams,
                                        functions_dir, error);
  if (d->functions == NULL)
    return FALSE;
  for (guint i = 0; i < c->functions->len; i++)
    if (!functions_service_add (d->functions, g_ptr_array_index (c->functions, i), error)) {
      g_prefix_error (error, "%s: functions: ", d->config_source);
      return FALSE;
    }
  for (guint i = 0; i < c->routes->len; i++)
    if (!functions_service_add_route (d->functions, g_ptr_array_index (c->routes, i), error)) {
      g_prefix_error (error, "%s: routes: ", d->config_source);
      return FALSE;
    }
  for (guint i = 0; i < c->schedules->len; i++)
    if (!functions_service_add_schedule (d->functions, g_ptr_array_index (c->schedules, i),
                                         error)) {
      g_prefix_error (error, "%s: schedules: ", d->config_source);
      return FALSE;
    }
  for (guint i = 0; i < c->mappings->len; i++)
    if (!functions_service_add_mapping (d->functions, g_ptr_array_index (c->mappings, i),
                                        error)) {
      g_prefix_error (error, "%s: event_source_mappings: ", d->config_source);
      return FALSE;
    }
  for (guint i = 0; i < c->websockets->len; i++)
    if (!functions_service_add_websocket (d->functions, g_ptr_array_index (c->websockets, i),
                                          error)) {
      g_prefix_error (error, "%s: websockets: ", d->config_source);
      return FALSE;
    }
  for (guint i = 0; i < c->websocket_routes->len; i++)
    if (!functions_service_add_websocket_route (d->functions,
                                                g_ptr_array_index (c->websocket_routes, i), error)) {
      g_prefix_error (error, "%s: websocket_routes: ", d->config_source);
      return FALSE;
    }
  if (!functions_service_start (d->functions, error))
    return FALSE;
  d->mqtt = mqtt_service_new (c, edge_state_instance_id (d->state), d->gateway, d->metrics,
                             d->streams, d->functions, error);
  if (d->mqtt == NULL) {
    g_prefix_error (error, "%s: ", d->config_source);
    return FALSE;
  }
  d->hw = hw_service_new (d->gateway, d->streams, c, error);
  if (d->hw == NULL)
    return FALSE;
  d->delivery = stream_delivery_service_new (d->gateway, d->streams, d->state, c,
                                             edge_data_dir_path (d->data_dir), error);
  if (d->delivery == NULL)
    return FALSE;
  stream_delivery_set_transform (d->delivery, invoke_transform, d);
  d->forward = stream_forward_service_new (d->gateway, d->streams, c, d->metrics, error);
  if (d->forward == NULL)
    return FALSE;
  d->analytics = stream_analytics_service_new (d->gateway, d->streams, c,
                                               edge_data_dir_path (d->data_dir), error);
  if (d->analytics == NULL)
    return FALSE;
  d->uploads = media_uploads_new (d->media, d->gateway, d->state, c, d->metrics, error);
  if (d->uploads == NULL)
    return FALSE;
  edge_gateway_add_health_check (d->gateway, "state", check_state, d);
  edge_gateway_add_health_check (d->gateway, "data_dir", check_data_dir, d);
  if (!edge_gateway_start (d->gateway, error))
    return FALSE;

  url = edge_gateway_url (d->gateway);
  g_message ("edged %s on %s (%s), data in %s", EDGED_VERSION, d->board->model, d->board->arch,
             edge_data_dir_path (d->data_dir));
  g_message ("ready: open %s/ in a browser", url);
  g_autofree char *ready = g_strdup_printf ("READY=1\nSTATUS=serving on %s", url);
  notify_systemd (ready);
  d->watchdog = watchdog_start ();
  return TRUE;
}

static void
daemon_stop (Daemon *d)
{
  /* Answer the API calls under way, then stop serving, then close the
   * stores (which finish and sync their writes). */
  g_clear_pointer (&d->kinesis, stream_kinesis_free);
  g_clear_handle_id (&d->watchdog, g_source_remove);
  g_clear_pointer (&d->mqtt, mqtt_service_free);
  g_clear_pointer (&d->hw, hw_service_free);
  g_clear_pointer (&d->delivery, stream_delivery_service_free);
  g_clear_pointer (&d->forward, stream_forward_service_free);
  g_clear_pointer (&d->analytics, stream_analytics_service_free);
  g_clear_pointer (&d->uploads, media_uploads_free);
  g_clear_pointer (&d->functions, functions_service_free);
  g_clear_pointer (&d->media, media_service_free);
  g_clear_pointer (&d->gateway, edge_gateway_free);
  /* Let libsoup finish closing what the gateway let go of. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_clear_pointer (&d->streams, stream_store_close);
  g_clear_pointer (&d->metrics, edge_metrics_free);
  g_clear_pointer (&d->state, edge_state_close);
  g_clear_pointer (&d->keyring, edge_keyring_free);
  g_clear_pointer (&d->board, hw_board_free);
  g_clear_pointer (&d->data_dir, edge_data_dir_close);
}

/* ---- command line ---- */

static char *opt_config;
static char *opt_check_config;
static char **opt_set;
static gboolean opt_print_default;
static gboolean opt_reference;
static gboolean opt_rotate_key;
static gboolean opt_version;
static gboolean opt_json;

static const GOptionEntry options[] = {
  { "config", 'c', 0, G_OPTION_ARG_FILENAME, &opt_config,
    "Configuration file (default: the embedded default)", "FILE" },
  { "set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &opt_set,
    "Override one configuration key, e.g. --set gateway.listen=0.0.0.0:8080", "KEY=VALUE" },
  { "check-config", 0, 0, G_OPTION_ARG_FILENAME, &opt_check_config,
    "Validate FILE and exit: 0 when valid, 2 when not", "FILE" },
  { "print-default-config", 0, 0, G_OPTION_ARG_NONE, &opt_print_default,
    "Print the embedded default configuration as YAML and exit", NULL },
  { "config-reference", 0, 0, G_OPTION_ARG_NONE, &opt_reference,
    "Print the configuration reference (Markdown) and exit", NULL },
  { "rotate-master-key", 0, 0, G_OPTION_ARG_NONE, &opt_rotate_key,
    "Add a new master key, make it the active one, and exit (edged must not be running)", NULL },
  { "version", 'V', 0, G_OPTION_ARG_NONE, &opt_version, "Print the version and exit", NULL },
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt_json, "With hw probe: print the probe as JSON", NULL },
  G_OPTION_ENTRY_NULL,
};

/* The sample function's bootstrap, where this build finds one: in the
 * source tree it was built from, or where it was installed. */
static char *
sample_bootstrap (void)
{
  g_auto (GStrv) dirs = g_strsplit (EDGED_EXAMPLES_DIRS, ":", -1);
  for (guint i = 0; dirs[i]; i++) {
    g_autofree char *path = g_build_filename (dirs[i], "hello", "bootstrap", NULL);
    if (g_file_test (path, G_FILE_TEST_IS_EXECUTABLE))
      return g_steal_pointer (&path);
  }
  return NULL;
}

static EdgeConfig *
load_config (char **ret_source, GError **error)
{
  g_autoptr (EdgeConfig) config = NULL;
  if (opt_config) {
    config = edge_config_load_file (opt_config, error);
    *ret_source = g_strdup (opt_config);
  } else {
    g_autofree char *sample = sample_bootstrap ();
    config = edge_config_new_embedded (sample);
    *ret_source = g_strdup ("(embedded default)");
  }
  if (config == NULL)
    return NULL;
  for (guint i = 0; opt_set && opt_set[i]; i++) {
    char *eq = strchr (opt_set[i], '=');
    if (eq == NULL) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "--set %s: expected KEY=VALUE", opt_set[i]);
      return NULL;
    }
    g_autofree char *key = g_strndup (opt_set[i], eq - opt_set[i]);
    if (!edge_config_set (config, key, eq + 1, error)) {
      g_prefix_error (error, "--set: ");
      return NULL;
    }
  }
  if (!edge_config_validate (config, *ret_source, error) ||
      !media_check_config (config, *ret_source, error) ||
      !mqtt_check_config (config, *ret_source, error) ||
      !hw_check_config (config, *ret_source, error) ||
      !stream_delivery_check_config (config, *ret_source, error) ||
      !stream_forward_check_config (config, *ret_source, error) ||
      !stream_analytics_check_config (config, *ret_source, error) ||
      !media_uploads_check_config (config, *ret_source, error))
    return NULL;
  return g_steal_pointer (&config);
}

static int
rotate_master_key (EdgeConfig *config)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeDataDir) dir = edge_data_dir_open (config->data_dir, &error);
  g_autofree char *path = edge_config_master_key_path (config);
  g_autoptr (EdgeKeyring) keyring = NULL;

  if (dir == NULL || (keyring = edge_keyring_open (path, FALSE, &error)) == NULL ||
      !edge_keyring_rotate (keyring, &error)) {
    g_printerr ("edged: %s\n", error->message);
    return 1;
  }
  g_print ("%s: key %u is now active (%u keys)\n", path, edge_keyring_active_id (keyring),
           edge_keyring_count (keyring));
  return 0;
}

static void
free_options (void)
{
  g_clear_pointer (&opt_config, g_free);
  g_clear_pointer (&opt_check_config, g_free);
  g_clear_pointer (&opt_set, g_strfreev);
}

/* ---- edged hw probe ---- */

static void
print_codecs (const HwProbe *probe, gboolean encoders)
{
  gboolean first = TRUE;
  for (guint i = 0; i < probe->codecs->len; i++) {
    const HwCodec *c = g_ptr_array_index (probe->codecs, i);
    if (c->encoder != encoders)
      continue;
    g_print ("%-10s %-14s %-5s %-8s %-12s %s\n", first ? (encoders ? "Encoders" : "Decoders") : "",
             c->element, c->codec, c->hardware ? "hardware" : "software",
             !c->present ? "missing" : c->works ? "works" : "not working",
             c->present ? c->detail : "");
    first = FALSE;
  }
}

/* Prints what this machine has and what edged would do with it. */
static int
hw_probe_command (void)
{
  gst_init (NULL, NULL);
  g_autoptr (HwProbe) probe = hw_probe_run ("/", HW_PROBE_CAMERAS | HW_PROBE_TEST_CODECS);
  g_autoptr (HwChoice) choice = hw_choose (probe);
  const HwBoard *board = probe->board;

  if (opt_json) {
    g_autoptr (JsonBuilder) b = json_builder_new ();
    json_builder_begin_object (b);
    hw_probe_to_json (probe, b);
    json_builder_set_member_name (b, "choice");
    hw_choice_to_json (choice, b);
    json_builder_end_object (b);
    g_autoptr (JsonNode) root = json_builder_get_root (b);
    g_autoptr (JsonGenerator) gen = json_generator_new ();
    json_generator_set_root (gen, root);
    json_generator_set_pretty (gen, TRUE);
    g_autofree char *text = json_generator_to_data (gen, NULL);
    g_print ("%s\n", text);
    return 0;
  }
  g_print ("%-10s %s\n", "Board", board->model);
  g_print ("%-10s %u x %s (%s), %.1f GiB, kernel %s\n", "", board->cpus, board->cpu_model,
           board->arch, (double) board->memory_bytes / (1 << 30), board->kernel);
  g_autofree char *files = g_strjoinv (" ", probe->device_files);
  g_print ("%-10s %s\n", "Devices", files[0] ? files : "(no codec devices)");
  if (probe->cameras->len == 0)
    g_print ("%-10s %s\n", "Cameras", "(none found)");
  for (guint i = 0; i < probe->cameras->len; i++) {
    const HwCamera *camera = g_ptr_array_index (probe->cameras, i);
    g_autofree char *formats = g_strjoinv (", ", camera->formats);
    g_print ("%-10s %s  %s  %s\n", i == 0 ? "Cameras" : "", camera->source, camera->name, formats);
  }
  print_codecs (probe, TRUE);
  print_codecs (probe, FALSE);
  g_print ("\n%-10s %s\n", "Profile", choice->profile);
  if (choice->encoder_threads)
    g_print ("%-10s %s, %u threads\n", "Encoder", choice->encoder, choice->encoder_threads);
  else
    g_print ("%-10s %s\n", "Encoder", choice->encoder[0] ? choice->encoder : "(none works)");
  g_print ("%-10s %s (H.264), %s (H.265)\n", "Decoders", choice->decoder_h264,
           choice->decoder_h265);
  g_print ("%-10s\n", "Why");
  for (guint i = 0; i < choice->reasons->len; i++)
    g_print ("  - %s\n", (const char *) g_ptr_array_index (choice->reasons, i));
  return 0;
}

/* The commands that print or check something and exit; -1 when none was asked for. */
static int
run_one_shot_command (void)
{
  g_autoptr (GError) error = NULL;

  if (opt_version) {
    g_print ("edged %s\n", EDGED_VERSION);
    return 0;
  }
  if (opt_reference) {
    g_autofree char *text = edge_config_reference_markdown ();
    g_print ("%s", text);
    return 0;
  }
  if (opt_print_default) {
    g_autofree char *sample = sample_bootstrap ();
    g_autoptr (EdgeConfig) config = edge_config_new_embedded (sample);
    g_autofree char *text = edge_config_to_yaml (config);
    g_print ("%s", text);
    return 0;
  }
  if (opt_check_config) {
    g_autoptr (EdgeConfig) config = edge_config_load_file (opt_check_config, &error);
    if (config == NULL || !media_check_config (config, opt_check_config, &error) ||
        !mqtt_check_config (config, opt_check_config, &error) ||
        !hw_check_config (config, opt_check_config, &error) ||
        !stream_delivery_check_config (config, opt_check_config, &error) ||
        !stream_forward_check_config (config, opt_check_config, &error) ||
        !stream_analytics_check_config (config, opt_check_config, &error) ||
        !media_uploads_check_config (config, opt_check_config, &error)) {
      g_printerr ("%s\n", error->message);
      return 2;
    }
    g_print ("%s: valid\n", opt_check_config);
    return 0;
  }
  return -1;
}

static int
run_daemon (void)
{
  g_autoptr (GError) error = NULL;
  Daemon d = { 0 };

  d.config = load_config (&d.config_source, &error);
  if (d.config == NULL) {
    g_printerr ("edged: %s\n", error->message);
    g_free (d.config_source);
    return 2;
  }
  edge_log_set_level (d.config->log_level);
  if (opt_rotate_key) {
    d.exit_status = rotate_master_key (d.config);
  } else {
    d.loop = g_main_loop_new (NULL, FALSE);
    d.started_at = g_date_time_new_now_utc ();
    d.started_us = g_get_monotonic_time ();
    guint term = g_unix_signal_add (SIGTERM, on_stop_signal, &d);
    guint intr = g_unix_signal_add (SIGINT, on_stop_signal, &d);
    signal (SIGPIPE, SIG_IGN);

    if (daemon_start (&d, &error)) {
      g_main_loop_run (d.loop);
      g_message ("stopped");
    } else {
      g_critical ("cannot start: %s", error->message);
      d.exit_status = 1;
    }
    daemon_stop (&d);
    g_source_remove (term);
    g_source_remove (intr);
    g_main_loop_unref (d.loop);
    g_date_time_unref (d.started_at);
  }
  edge_config_free (d.config);
  g_free (d.config_source);
  return d.exit_status;
}

/* Request bodies and the buffers built from them run to megabytes (a
 * PutRecords of 500 records of 1 KiB is 700 KB of JSON). glibc serves
 * allocations that large with mmap and unmaps them on free, so every
 * request faulted in fresh, zeroed pages: that cost more than decoding,
 * encrypting and writing the records (bench/streams/kinesis-sdk.mjs, 1 KiB
 * puts: 13.4 us of server CPU a record before, 4.6 after this and one
 * smaller change). Keeping them on the heap up to 16 MiB (above the
 * largest body) and returning freed memory past 64 MiB bounds what is kept
 * to the peak that was in use anyway. */
static void
tune_allocator (void)
{
#ifdef __GLIBC__
  mallopt (M_MMAP_THRESHOLD, 16 * 1024 * 1024);
  mallopt (M_TRIM_THRESHOLD, 64 * 1024 * 1024);
#endif
}

/* GIO's socket types, registered here, before any thread starts. GLib
 * 2.74 can deadlock when two threads register a type and its interfaces
 * for the first time at once: the main thread making the gateway's listen
 * address and an RTSP camera's thread making its GSocketClient did, now
 * and then, at start. */
static void
register_types (void)
{
  g_type_ensure (G_TYPE_SOCKET_ADDRESS);
  g_type_ensure (G_TYPE_INET_SOCKET_ADDRESS);
  g_type_ensure (G_TYPE_INET_ADDRESS);
  g_type_ensure (G_TYPE_SOCKET);
  g_type_ensure (G_TYPE_SOCKET_CLIENT);
  g_type_ensure (G_TYPE_SOCKET_CONNECTION);
  g_type_ensure (G_TYPE_TCP_CONNECTION);
  g_type_ensure (G_TYPE_NETWORK_ADDRESS);
  g_type_ensure (G_TYPE_PROXY_ADDRESS_ENUMERATOR);
  g_type_ensure (G_TYPE_SOCKET_ADDRESS_ENUMERATOR);
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) context = g_option_context_new ("[hw probe] - the edged edge gateway daemon");
  g_autoptr (GError) error = NULL;
  int status;

  g_option_context_add_main_entries (context, options, NULL);
  g_option_context_set_description (
      context, "Without --config, edged runs its embedded default: data in ./edged-data and the\n"
               "gateway on http://127.0.0.1:8080/. See --print-default-config for every key.\n");
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("edged: %s (try --help)\n", error->message);
    free_options ();
    return 2;
  }
  if (argc >= 2 && g_str_equal (argv[1], "hw")) {
    if (argc != 3 || !g_str_equal (argv[2], "probe")) {
      g_printerr ("edged: usage: edged hw probe [--json]\n");
      free_options ();
      return 2;
    }
    free_options ();
    return hw_probe_command ();
  }
  if (argc > 1) {
    g_printerr ("edged: unexpected argument \"%s\" (try --help)\n", argv[1]);
    free_options ();
    return 2;
  }
  status = run_one_shot_command ();
  if (status < 0) {
    edge_log_init ();
    tune_allocator ();
    register_types ();
    status = run_daemon ();
  }
  free_options ();
  return status;
}
