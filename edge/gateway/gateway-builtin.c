/* gateway-builtin.c: the routes every edged serves whatever modules run:
 * GET /healthz, GET /metrics, GET /v1/openapi.json and the web UI.
 *
 * The OpenAPI document is generated from the route table at request time,
 * so a module's routes appear in it as soon as they are registered.
 */
#define G_LOG_DOMAIN "gateway"

#include "gateway-private.h"

#include "edged-version.h"
#include "edged-web.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define WEB_RESOURCE_PREFIX "/org/edged/web"
#define WEB_MAX_FILE_BYTES (16 * 1024 * 1024)

static void
handle_healthz (EdgeRequest *request, gpointer data)
{
  EdgeGateway *gateway = data;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  gboolean healthy = TRUE;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "checks");
  json_builder_begin_object (b);
  for (guint i = 0; i < gateway->health_checks->len; i++) {
    GatewayHealthCheck *check = g_ptr_array_index (gateway->health_checks, i);
    g_autoptr (GError) error = NULL;
    json_builder_set_member_name (b, check->name);
    if (check->func (check->user_data, &error)) {
      json_builder_add_string_value (b, "ok");
    } else {
      healthy = FALSE;
      json_builder_add_string_value (b, error ? error->message : "failing");
    }
  }
  json_builder_end_object (b);
  json_builder_set_member_name (b, "status");
  json_builder_add_string_value (b, healthy ? "ok" : "failing");
  json_builder_set_member_name (b, "version");
  json_builder_add_string_value (b, EDGED_VERSION);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, healthy ? SOUP_STATUS_OK : SOUP_STATUS_SERVICE_UNAVAILABLE,
                             root);
}

static void
handle_metrics (EdgeRequest *request, gpointer data)
{
  EdgeGateway *gateway = data;
  char *text = edge_metrics_render (gateway->metrics);
  g_autoptr (GBytes) body = g_bytes_new_take (text, strlen (text));
  edge_request_respond (request, SOUP_STATUS_OK, "text/plain; version=0.0.4; charset=utf-8", body);
}

/* "GET /v1/cameras/{name}" -> "getV1CamerasName": stable, unique per route. */
static char *
operation_id (const GatewayRoute *route)
{
  GString *id = g_string_new (NULL);
  g_autofree char *method = g_ascii_strdown (route->method, -1);
  g_string_append (id, method);
  gboolean upper = TRUE;
  for (const char *p = route->pattern; *p; p++) {
    if (!g_ascii_isalnum (*p)) {
      upper = TRUE;
      continue;
    }
    g_string_append_c (id, upper ? g_ascii_toupper (*p) : *p);
    upper = FALSE;
  }
  if (route->ws_open)
    g_string_append (id, "WebSocket");
  return g_string_free (id, FALSE);
}

static void
add_error_response (JsonBuilder *b, const char *status, const char *description)
{
  json_builder_set_member_name (b, status);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "description");
  json_builder_add_string_value (b, description);
  json_builder_set_member_name (b, "content");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "application/json");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "schema");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "$ref");
  json_builder_add_string_value (b, "#/components/schemas/Error");
  json_builder_end_object (b);
  json_builder_end_object (b);
  json_builder_end_object (b);
  json_builder_end_object (b);
}

static void
add_operation (JsonBuilder *b, const GatewayRoute *route)
{
  g_autofree char *method = g_ascii_strdown (route->method, -1);
  g_autofree char *op_id = operation_id (route);
  g_auto (GStrv) segments = g_strsplit (route->pattern, "/", -1);

  json_builder_set_member_name (b, method);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "operationId");
  json_builder_add_string_value (b, op_id);
  json_builder_set_member_name (b, "summary");
  json_builder_add_string_value (b, route->summary);
  json_builder_set_member_name (b, "tags");
  json_builder_begin_array (b);
  json_builder_add_string_value (b, route->tag);
  json_builder_end_array (b);
  if (route->ws_open) {
    json_builder_set_member_name (b, "description");
    json_builder_add_string_value (b, "WebSocket endpoint: upgrade with GET and Upgrade: websocket.");
    json_builder_set_member_name (b, "x-websocket");
    json_builder_add_boolean_value (b, TRUE);
  }
  json_builder_set_member_name (b, "parameters");
  json_builder_begin_array (b);
  for (guint i = 0; segments[i]; i++) {
    gsize len = strlen (segments[i]);
    if (len < 3 || segments[i][0] != '{')
      continue;
    gboolean rest = segments[i][len - 2] == '*';
    g_autofree char *name = g_strndup (segments[i] + 1, len - (rest ? 3 : 2));
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "name");
    json_builder_add_string_value (b, name);
    json_builder_set_member_name (b, "in");
    json_builder_add_string_value (b, "path");
    json_builder_set_member_name (b, "required");
    json_builder_add_boolean_value (b, TRUE);
    json_builder_set_member_name (b, "schema");
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "type");
    json_builder_add_string_value (b, "string");
    json_builder_end_object (b);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "responses");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, route->ws_open ? "101" : "200");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "description");
  json_builder_add_string_value (b, route->ws_open ? "Switching to the WebSocket protocol" : "Success");
  json_builder_end_object (b);
  add_error_response (b, "default", "An error, with a code and a message a person can act on");
  json_builder_end_object (b);
  json_builder_end_object (b);
}

/* "/v1/{path*}" is written "/v1/{path}" in OpenAPI. */
static char *
openapi_path (const char *pattern)
{
  GString *out = g_string_new (pattern);
  char *star = strstr (out->str, "*}");
  if (star)
    g_string_erase (out, star - out->str, 1);
  return g_string_free (out, FALSE);
}

static void
handle_openapi (EdgeRequest *request, gpointer data)
{
  EdgeGateway *gateway = data;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "openapi");
  json_builder_add_string_value (b, "3.0.3");
  json_builder_set_member_name (b, "info");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "title");
  json_builder_add_string_value (b, "edged");
  json_builder_set_member_name (b, "version");
  json_builder_add_string_value (b, EDGED_VERSION);
  json_builder_set_member_name (b, "description");
  json_builder_add_string_value (b, "Management, live and AWS-compatible APIs of an edged edge gateway.");
  json_builder_end_object (b);

  json_builder_set_member_name (b, "paths");
  json_builder_begin_object (b);
  /* Group the methods of one path under one key, keeping first-seen order. */
  for (guint i = 0; i < gateway->routes->len; i++) {
    GatewayRoute *route = g_ptr_array_index (gateway->routes, i);
    g_autofree char *path = openapi_path (route->pattern);
    gboolean seen = FALSE;
    for (guint j = 0; j < paths->len && !seen; j++)
      seen = g_str_equal (g_ptr_array_index (paths, j), path);
    if (seen)
      continue;
    json_builder_set_member_name (b, path);
    json_builder_begin_object (b);
    for (guint j = i; j < gateway->routes->len; j++) {
      GatewayRoute *other = g_ptr_array_index (gateway->routes, j);
      g_autofree char *other_path = openapi_path (other->pattern);
      if (g_str_equal (path, other_path))
        add_operation (b, other);
    }
    json_builder_end_object (b);
    g_ptr_array_add (paths, g_steal_pointer (&path));
  }
  json_builder_end_object (b);

  json_builder_set_member_name (b, "components");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "schemas");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Error");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "object");
  json_builder_set_member_name (b, "properties");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "error");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "object");
  json_builder_set_member_name (b, "properties");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "code");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "string");
  json_builder_end_object (b);
  json_builder_set_member_name (b, "message");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "string");
  json_builder_end_object (b);
  json_builder_end_object (b);
  json_builder_end_object (b);
  json_builder_end_object (b);
  json_builder_end_object (b);
  json_builder_end_object (b);
  json_builder_end_object (b);

  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, SOUP_STATUS_OK, root);
}

/* ---- the web UI ---- */

static const char *
content_type_for (const char *name)
{
  static const struct {
    const char *suffix;
    const char *type;
  } types[] = {
    { ".html", "text/html; charset=utf-8" },
    { ".js", "text/javascript; charset=utf-8" },
    { ".css", "text/css; charset=utf-8" },
    { ".svg", "image/svg+xml" },
    { ".png", "image/png" },
    { ".json", "application/json" },
    { ".ico", "image/x-icon" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (types); i++)
    if (g_str_has_suffix (name, types[i].suffix))
      return types[i].type;
  return "application/octet-stream";
}

/* Reads @name under the configured web root, refusing anything that leaves
 * it. NULL if absent. */
static GBytes *
web_file_from_root (const char *root, const char *name)
{
  g_autofree char *path = NULL;
  g_autofree char *real_root = NULL;
  g_autofree char *real_path = NULL;
  g_autofree char *contents = NULL;
  gsize len;

  path = g_build_filename (root, name, NULL);
  real_root = realpath (root, NULL);
  real_path = realpath (path, NULL);
  if (real_root == NULL || real_path == NULL || !g_str_has_prefix (real_path, real_root) ||
      real_path[strlen (real_root)] != '/')
    return NULL;
  if (!g_file_test (real_path, G_FILE_TEST_IS_REGULAR))
    return NULL;
  if (!g_file_get_contents (real_path, &contents, &len, NULL) || len > WEB_MAX_FILE_BYTES)
    return NULL;
  return g_bytes_new_take (g_steal_pointer (&contents), len);
}

static void
serve_web_file (EdgeRequest *request, EdgeGateway *gateway, const char *name)
{
  g_autoptr (GBytes) body = NULL;

  /* Names come from the router, decoded: no segment may climb out. */
  g_auto (GStrv) parts = g_strsplit (name, "/", -1);
  for (guint i = 0; parts[i]; i++) {
    if (parts[i][0] == '\0' || g_str_equal (parts[i], ".") || g_str_equal (parts[i], "..")) {
      edge_request_respond_error (request, SOUP_STATUS_NOT_FOUND, "NotFound", "no file %s", name);
      return;
    }
  }
  if (gateway->web_root) {
    body = web_file_from_root (gateway->web_root, name);
  } else {
    g_autofree char *path = g_strconcat (WEB_RESOURCE_PREFIX "/", name, NULL);
    body = g_resource_lookup_data (edged_web_get_resource (), path, G_RESOURCE_LOOKUP_FLAGS_NONE,
                                   NULL);
  }
  if (body == NULL) {
    edge_request_respond_error (request, SOUP_STATUS_NOT_FOUND, "NotFound", "no file %s", name);
    return;
  }
  SoupMessageHeaders *headers = request->response_headers;
  soup_message_headers_replace (headers, "Cache-Control", "no-cache");
  soup_message_headers_replace (headers, "X-Content-Type-Options", "nosniff");
  edge_request_respond (request, SOUP_STATUS_OK, content_type_for (name), body);
}

static void
handle_index (EdgeRequest *request, gpointer data)
{
  serve_web_file (request, data, "index.html");
}

static void
handle_camera_page (EdgeRequest *request, gpointer data)
{
  serve_web_file (request, data, "camera.html");
}

static void
handle_sensors_page (EdgeRequest *request, gpointer data)
{
  serve_web_file (request, data, "sensors.html");
}

static void
handle_events_page (EdgeRequest *request, gpointer data)
{
  serve_web_file (request, data, "events.html");
}

static void
handle_delivery_page (EdgeRequest *request, gpointer data)
{
  serve_web_file (request, data, "delivery.html");
}

static void
handle_login_page (EdgeRequest *request, gpointer data)
{
  serve_web_file (request, data, "login.html");
}

static void
handle_asset (EdgeRequest *request, gpointer data)
{
  g_autofree char *name = g_strconcat ("assets/", edge_request_param (request, "path"), NULL);
  serve_web_file (request, data, name);
}

void
gateway_builtin_register (EdgeGateway *gateway)
{
  static const EdgeRoute routes[] = {
    { "GET", "/healthz", handle_healthz, "Liveness and the health of each component", "system", 0 },
    { "GET", "/metrics", handle_metrics, "Prometheus metrics", "system", 0 },
    { "GET", "/v1/openapi.json", handle_openapi, "This OpenAPI document", "system", 0 },
    { "GET", "/", handle_index, "The web UI", "ui", 0 },
    { "GET", "/camera", handle_camera_page, "The web UI's page for one camera (?name=)", "ui", 0 },
    { "GET", "/sensors", handle_sensors_page, "The web UI's sensors page: readings, brokers, rules",
      "ui", 0 },
    { "GET", "/events", handle_events_page,
      "The web UI's events page: detections with snapshots, each opening its recording", "ui",
      0 },
    { "GET", "/delivery", handle_delivery_page,
      "The web UI's delivery page: delivery streams, their lag and errors", "ui", 0 },
    { "GET", "/login", handle_login_page, "The web UI's sign-in page", "ui", 0 },
    { "GET", "/assets/{path*}", handle_asset, "Files of the web UI", "ui", 0 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (routes); i++) {
    g_autoptr (GError) error = NULL;
    if (!edge_gateway_add_route (gateway, &routes[i], gateway, &error))
      g_error ("built-in route: %s", error->message);
  }
}
