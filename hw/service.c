/* service.c: the hardware module in the daemon.
 *
 *   GET /v1/hw            the probe and the choice (edged hw probe --json)
 *   GET /v1/gpio          every configured line and its level
 *   GET /v1/gpio/{name}
 *   PUT /v1/gpio/{name}   {"value": 0|1[, "pulse_ms": N]} sets an output
 *
 * Input lines are watched on the main loop; their debounced edges become
 * records in a data stream, stamped with the kernel's edge time. Output
 * changes are recorded too, with who made them. A line that cannot be
 * requested (no such chip yet, a line in use) is retried every few seconds
 * and its error shown in /v1/gpio.
 */
#define G_LOG_DOMAIN "hw"

#include "hw-service.h"

#include "gpio.h"
#include "hw.h"

#include <glib-unix.h>
#include <gst/gst.h>

#define RETRY_SECONDS 5
#define PULSE_MAX_MS 60000
#define GPIO_NAME_MAX 64

typedef struct {
  HwService *service;
  gboolean output;
  const EdgeConfigGpioInput *in;   /* inputs */
  const EdgeConfigGpioOutput *out; /* outputs */
  const char *name, *chip, *line_name, *stream;
  HwGpioLine *line;
  char *error;
  guint watch;
  guint debounce_timer;
  guint pulse_timer;
  HwDebounce debounce;
  guint64 events;
  gint64 last_event_ns;
} Line;

struct _HwService {
  EdgeGateway *gateway;
  StreamStore *streams;
  GPtrArray *lines; /* Line * */
  guint retry_timer;
  gint64 real_offset_ns; /* CLOCK_REALTIME - CLOCK_MONOTONIC, as last taken */
};

static gboolean
name_valid (const char *name)
{
  gsize len = strlen (name);
  if (len == 0 || len > GPIO_NAME_MAX)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isalnum (name[i]) && !strchr ("_.-", name[i]))
      return FALSE;
  return TRUE;
}

gboolean
hw_check_config (const EdgeConfig *config, const char *source, GError **error)
{
  g_autoptr (GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
  guint n_in = config->gpio_inputs->len;
  for (guint i = 0; i < n_in + config->gpio_outputs->len; i++) {
    const char *name = i < n_in ? ((EdgeConfigGpioInput *) config->gpio_inputs->pdata[i])->name
                                : ((EdgeConfigGpioOutput *) config->gpio_outputs->pdata[i - n_in])->name;
    const char *list = i < n_in ? "gpio.inputs" : "gpio.outputs";
    if (!name_valid (name)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: %s: name \"%s\": use 1 to %d of a-z, A-Z, 0-9, _ . and -", source, list,
                   name, GPIO_NAME_MAX);
      return FALSE;
    }
    if (!g_hash_table_add (names, (gpointer) name)) {
      g_set_error (error, EDGE_CONFIG_ERROR, EDGE_CONFIG_ERROR_INVALID,
                   "%s: %s: name \"%s\" is taken by another GPIO line", source, list, name);
      return FALSE;
    }
  }
  return TRUE;
}

/* ---- records ---- */

static gboolean
ensure_stream (HwService *service, const char *stream)
{
  g_autoptr (GError) error = NULL;
  StreamSettings settings;
  if (stream_store_lookup (service->streams, stream, NULL))
    return TRUE;
  stream_settings_init (&settings);
  if (!stream_store_create (service->streams, stream, 1, &settings, &error)) {
    g_warning ("gpio: no stream %s: %s", stream, error->message);
    return FALSE;
  }
  g_message ("gpio: records go to the new stream %s", stream);
  return TRUE;
}

static void
on_put (StreamPutResult *results, guint n, gpointer user_data)
{
  g_autofree char *name = user_data;
  for (guint i = 0; i < n; i++)
    if (results[i].error)
      g_warning ("gpio \"%s\": a record was not stored: %s", name, results[i].error->message);
}

static char *
iso_time (gint64 ns)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (ns / 1000000000);
  g_autofree char *base = g_date_time_format (t, "%Y-%m-%dT%H:%M:%S");
  return g_strdup_printf ("%s.%09" G_GINT64_FORMAT "Z", base, ns % 1000000000);
}

/* Appends {"sensor"|"output": name, ..., "timestamp"} to the line's stream. */
static void
record (Line *l, int level, gint64 ns, const char *what, const char *source)
{
  HwService *service = l->service;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *when = iso_time (ns);

  if (l->stream[0] == '\0' || !ensure_stream (service, l->stream))
    return;
  json_builder_begin_object (b);
  json_builder_set_member_name (b, l->output ? "output" : "sensor");
  json_builder_add_string_value (b, l->name);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "gpio");
  json_builder_set_member_name (b, "chip");
  json_builder_add_string_value (b, l->chip);
  json_builder_set_member_name (b, "line");
  json_builder_add_int_value (b, hw_gpio_offset (l->line));
  json_builder_set_member_name (b, "value");
  json_builder_add_int_value (b, level);
  json_builder_set_member_name (b, what);
  json_builder_add_string_value (b, source);
  json_builder_set_member_name (b, "timestamp");
  json_builder_add_string_value (b, when);
  json_builder_set_member_name (b, "timestamp_ns");
  json_builder_add_int_value (b, ns);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *text = json_to_string (root, FALSE);
  g_autoptr (GBytes) data = g_bytes_new (text, strlen (text));
  StreamPutRecord put = { .partition_key = l->name, .data = data };
  if (!stream_store_put (service->streams, l->stream, &put, 1, on_put, g_strdup (l->name), &error))
    g_warning ("gpio \"%s\": a record was not stored: %s", l->name, error->message);
  l->events++;
  l->last_event_ns = ns;
}

/* ---- inputs ---- */

/* Edges and debounce keep CLOCK_MONOTONIC time (a Raspberry Pi has no
 * real-time clock and sets the time from the network after boot); records
 * carry the wall-clock time of that moment. */
static gint64
monotonic_ns (void)
{
  return g_get_monotonic_time () * 1000;
}

/* The wall-clock time of a CLOCK_MONOTONIC moment. The offset is kept while
 * it holds to a millisecond, so that records are exactly as far apart as
 * their edges, and taken afresh when the clock was set. */
static gint64
wall_time_ns (HwService *service, gint64 mono_ns)
{
  gint64 offset = (g_get_real_time () - g_get_monotonic_time ()) * 1000;
  if (ABS (offset - service->real_offset_ns) > 1000000)
    service->real_offset_ns = offset;
  return mono_ns + service->real_offset_ns;
}

static void
report_edge (Line *l, int level, gint64 mono_ns)
{
  gint64 real_ns = wall_time_ns (l->service, mono_ns);
  g_debug ("gpio \"%s\": %s", l->name, level ? "rising" : "falling");
  record (l, level, real_ns, "edge", level ? "rising" : "falling");
}

static void arm_debounce (Line *l);

static gboolean
on_debounce_timer (gpointer data)
{
  Line *l = data;
  int level;
  gint64 ns;
  l->debounce_timer = 0;
  if (hw_debounce_poll (&l->debounce, monotonic_ns (), &level, &ns))
    report_edge (l, level, ns);
  arm_debounce (l);
  return G_SOURCE_REMOVE;
}

static void
arm_debounce (Line *l)
{
  gint64 deadline = hw_debounce_deadline (&l->debounce);
  g_clear_handle_id (&l->debounce_timer, g_source_remove);
  if (deadline < 0)
    return;
  gint64 wait_ms = (deadline - monotonic_ns ()) / 1000000 + 1;
  l->debounce_timer = g_timeout_add ((guint) CLAMP (wait_ms, 0, 60000), on_debounce_timer, l);
}

static gboolean
on_edges (int fd, GIOCondition condition, gpointer data)
{
  Line *l = data;
  HwGpioEdge edge;
  int level;
  gint64 ns;

  if (condition & (G_IO_ERR | G_IO_HUP | G_IO_NVAL)) {
    /* The chip went away (a USB GPIO expander unplugged): let go of the
     * line; the retry timer requests it again when it is back. */
    g_warning ("gpio \"%s\": the line was lost (retrying every %d s)", l->name, RETRY_SECONDS);
    g_free (l->error);
    l->error = g_strdup ("the line was lost; retrying");
    l->watch = 0;
    g_clear_handle_id (&l->debounce_timer, g_source_remove);
    g_clear_pointer (&l->line, hw_gpio_close);
    return G_SOURCE_REMOVE;
  }
  while (hw_gpio_read_edge (l->line, &edge))
    if (hw_debounce_edge (&l->debounce, &edge, &level, &ns))
      report_edge (l, level, ns);
  if (hw_debounce_poll (&l->debounce, monotonic_ns (), &level, &ns))
    report_edge (l, level, ns);
  arm_debounce (l);
  return G_SOURCE_CONTINUE;
}

static HwGpioEdges
parse_edges (const char *text)
{
  return g_str_equal (text, "rising")    ? HW_GPIO_EDGES_RISING
         : g_str_equal (text, "falling") ? HW_GPIO_EDGES_FALLING
                                         : HW_GPIO_EDGES_BOTH;
}

static HwGpioBias
parse_bias (const char *text)
{
  return g_str_equal (text, "pull-up")     ? HW_GPIO_BIAS_PULL_UP
         : g_str_equal (text, "pull-down") ? HW_GPIO_BIAS_PULL_DOWN
         : g_str_equal (text, "disabled")  ? HW_GPIO_BIAS_DISABLED
                                           : HW_GPIO_BIAS_AS_IS;
}

/* Requests the line; FALSE (and the error kept for /v1/gpio) on failure. */
static gboolean
line_open (Line *l)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *consumer = g_strdup_printf ("edged:%s", l->name);

  if (l->output)
    l->line = hw_gpio_open_output (l->chip, l->line_name, l->out->active_low,
                                   (int) l->out->initial, consumer, &error);
  else
    l->line = hw_gpio_open_input (l->chip, l->line_name, parse_edges (l->in->edges),
                                  l->in->active_low, parse_bias (l->in->bias), consumer, &error);
  if (l->line == NULL) {
    if (g_strcmp0 (l->error, error->message) != 0)
      g_warning ("gpio \"%s\": %s (retrying every %d s)", l->name, error->message, RETRY_SECONDS);
    g_free (l->error);
    l->error = g_strdup (error->message);
    return FALSE;
  }
  g_clear_pointer (&l->error, g_free);
  if (!l->output) {
    int level = hw_gpio_get (l->line, NULL);
    hw_debounce_init (&l->debounce, parse_edges (l->in->edges), l->in->debounce_ms * 1000000,
                      MAX (level, 0));
    l->watch = edge_fd_watch (hw_gpio_fd (l->line), G_IO_IN, on_edges, l, NULL);
  }
  g_message ("gpio \"%s\": %s line %u of %s", l->name, l->output ? "output" : "input",
             hw_gpio_offset (l->line), l->chip);
  return TRUE;
}

static gboolean
on_retry (gpointer data)
{
  HwService *service = data;
  for (guint i = 0; i < service->lines->len; i++) {
    Line *l = g_ptr_array_index (service->lines, i);
    if (l->line == NULL)
      line_open (l);
  }
  return G_SOURCE_CONTINUE;
}

static void
line_free (Line *l)
{
  g_clear_handle_id (&l->watch, g_source_remove);
  g_clear_handle_id (&l->debounce_timer, g_source_remove);
  g_clear_handle_id (&l->pulse_timer, g_source_remove);
  hw_gpio_close (l->line);
  g_free (l->error);
  g_free (l);
}

/* ---- routes ---- */

static Line *
find_line (HwService *service, const char *name)
{
  for (guint i = 0; name && i < service->lines->len; i++) {
    Line *l = g_ptr_array_index (service->lines, i);
    if (g_str_equal (l->name, name))
      return l;
  }
  return NULL;
}

static void
line_to_json (Line *l, JsonBuilder *b)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, l->name);
  json_builder_set_member_name (b, "direction");
  json_builder_add_string_value (b, l->output ? "output" : "input");
  json_builder_set_member_name (b, "chip");
  json_builder_add_string_value (b, l->chip);
  json_builder_set_member_name (b, "line");
  json_builder_add_string_value (b, l->line_name);
  json_builder_set_member_name (b, "active_low");
  json_builder_add_boolean_value (b, l->output ? l->out->active_low : l->in->active_low);
  json_builder_set_member_name (b, "stream");
  json_builder_add_string_value (b, l->stream);
  if (!l->output) {
    json_builder_set_member_name (b, "edges");
    json_builder_add_string_value (b, l->in->edges);
    json_builder_set_member_name (b, "debounce_ms");
    json_builder_add_int_value (b, l->in->debounce_ms);
  }
  if (l->line) {
    json_builder_set_member_name (b, "offset");
    json_builder_add_int_value (b, hw_gpio_offset (l->line));
    int value = hw_gpio_get (l->line, NULL);
    json_builder_set_member_name (b, "value");
    if (value >= 0)
      json_builder_add_int_value (b, value);
    else
      json_builder_add_null_value (b);
  }
  json_builder_set_member_name (b, "events");
  json_builder_add_int_value (b, (gint64) l->events);
  if (l->last_event_ns) {
    g_autofree char *when = iso_time (l->last_event_ns);
    json_builder_set_member_name (b, "last_event");
    json_builder_add_string_value (b, when);
  }
  if (l->error) {
    json_builder_set_member_name (b, "error");
    json_builder_add_string_value (b, l->error);
  }
  json_builder_end_object (b);
}

static void
respond_line (EdgeRequest *request, Line *l)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  line_to_json (l, b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

static void
handle_list (EdgeRequest *request, gpointer data)
{
  HwService *service = data;
  edge_request_respond_array (request, "lines", service->lines, (EdgeJsonWriteFunc) line_to_json);
}

static void
handle_get (EdgeRequest *request, gpointer data)
{
  Line *l = find_line (data, edge_request_param (request, "name"));
  if (l == NULL) {
    edge_request_respond_error (request, 404, "NotFound", "no GPIO line %s",
                                edge_request_param (request, "name"));
    return;
  }
  respond_line (request, l);
}

static gboolean
set_output (Line *l, int value, const char *source, GError **error)
{
  if (!hw_gpio_set (l->line, value, error))
    return FALSE;
  g_message ("gpio \"%s\": set to %d (%s)", l->name, value, source);
  record (l, value, g_get_real_time () * 1000, "source", source);
  return TRUE;
}

static gboolean
on_pulse_end (gpointer data)
{
  Line *l = data;
  g_autoptr (GError) error = NULL;
  l->pulse_timer = 0;
  if (l->line && !set_output (l, !hw_gpio_get (l->line, NULL), "pulse", &error))
    g_warning ("gpio \"%s\": pulse did not end: %s", l->name, error->message);
  return G_SOURCE_REMOVE;
}

static void
handle_put (EdgeRequest *request, gpointer data)
{
  Line *l = find_line (data, edge_request_param (request, "name"));
  g_autoptr (GError) error = NULL;

  if (l == NULL) {
    edge_request_respond_error (request, 404, "NotFound", "no GPIO line %s",
                                edge_request_param (request, "name"));
    return;
  }
  if (!l->output) {
    edge_request_respond_error (request, 409, "NotAnOutput",
                                "%s is an input line: only outputs can be set", l->name);
    return;
  }
  g_autoptr (JsonNode) body = edge_request_json (request);
  if (body == NULL)
    return;
  JsonObject *o = JSON_NODE_HOLDS_OBJECT (body) ? json_node_get_object (body) : NULL;
  JsonNode *value = o ? json_object_get_member (o, "value") : NULL;
  JsonNode *pulse = o ? json_object_get_member (o, "pulse_ms") : NULL;
  if (value == NULL || json_node_get_value_type (value) != G_TYPE_INT64 ||
      (json_node_get_int (value) != 0 && json_node_get_int (value) != 1)) {
    edge_request_respond_error (request, 400, "InvalidArgument",
                                "expected {\"value\": 0 or 1} (and optionally \"pulse_ms\")");
    return;
  }
  if (pulse && (json_node_get_value_type (pulse) != G_TYPE_INT64 ||
                json_node_get_int (pulse) < 1 || json_node_get_int (pulse) > PULSE_MAX_MS)) {
    edge_request_respond_error (request, 400, "InvalidArgument",
                                "pulse_ms: 1 to %d milliseconds", PULSE_MAX_MS);
    return;
  }
  if (l->line == NULL) {
    edge_request_respond_error (request, 503, "LineUnavailable", "%s: %s", l->name,
                                l->error ? l->error : "not requested");
    return;
  }
  g_clear_handle_id (&l->pulse_timer, g_source_remove);
  if (!set_output (l, (int) json_node_get_int (value), pulse ? "api pulse" : "api", &error)) {
    edge_request_respond_error (request, 500, "SetFailed", "%s: %s", l->name, error->message);
    return;
  }
  if (pulse)
    l->pulse_timer = g_timeout_add ((guint) json_node_get_int (pulse), on_pulse_end, l);
  respond_line (request, l);
}

static void
handle_hw (EdgeRequest *request, gpointer data)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  if (!gst_is_initialized ())
    gst_init (NULL, NULL);
  json_builder_begin_object (b);
  hw_probe_to_json (hw_probe_default (), b);
  json_builder_set_member_name (b, "choice");
  hw_choice_to_json (hw_choice_default (), b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

HwService *
hw_service_new (EdgeGateway *gateway, StreamStore *streams, const EdgeConfig *config,
                GError **error)
{
  static const EdgeRoute routes[] = {
    { "GET", "/v1/hw", handle_hw, "The board, its cameras and codecs, and the defaults chosen",
      "system" },
    { "GET", "/v1/gpio", handle_list, "GPIO lines and their levels", "gpio" },
    { "GET", "/v1/gpio/{name}", handle_get, "One GPIO line", "gpio" },
    { "PUT", "/v1/gpio/{name}", handle_put, "Set a GPIO output: {\"value\": 0|1, \"pulse_ms\"}",
      "gpio", 4096 },
  };
  g_autoptr (HwService) service = g_new0 (HwService, 1);
  service->gateway = gateway;
  service->streams = streams;
  service->lines = g_ptr_array_new_with_free_func ((GDestroyNotify) line_free);

  for (guint i = 0; i < config->gpio_inputs->len; i++) {
    const EdgeConfigGpioInput *in = config->gpio_inputs->pdata[i];
    Line *l = g_new0 (Line, 1);
    *l = (Line) { .service = service, .in = in, .name = in->name, .chip = in->chip,
                  .line_name = in->line, .stream = in->stream };
    g_ptr_array_add (service->lines, l);
  }
  for (guint i = 0; i < config->gpio_outputs->len; i++) {
    const EdgeConfigGpioOutput *out = config->gpio_outputs->pdata[i];
    Line *l = g_new0 (Line, 1);
    *l = (Line) { .service = service, .output = TRUE, .out = out, .name = out->name,
                  .chip = out->chip, .line_name = out->line, .stream = out->stream };
    g_ptr_array_add (service->lines, l);
  }
  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (gateway, &routes[i], service, error))
      return NULL;
  for (guint i = 0; i < service->lines->len; i++)
    line_open (g_ptr_array_index (service->lines, i));
  if (service->lines->len > 0)
    service->retry_timer = g_timeout_add_seconds (RETRY_SECONDS, on_retry, service);
  return g_steal_pointer (&service);
}

void
hw_service_free (HwService *service)
{
  if (service == NULL)
    return;
  g_clear_handle_id (&service->retry_timer, g_source_remove);
  g_ptr_array_unref (service->lines);
  g_free (service);
}
