/* websocket.c: WebSocket APIs served by functions (functions/functions.h).
 *
 * A client connects to the API's gateway path. Its connection gets an id
 * (API Gateway's connectionId) and three kinds of events go to functions,
 * in API Gateway's WebSocket event shape:
 *
 *   $connect      before the handshake is answered: the function lets the
 *                 client in by succeeding (a statusCode, if it gives one,
 *                 of 2xx); otherwise the handshake is refused with that
 *                 status (500 for a handler error)
 *   $default      each message; a "body" in the answer goes back to the
 *                 client, a handler error sends it API Gateway's
 *                 {"message": "Internal server error", ...}
 *   $disconnect   once the connection has closed
 *
 * and any function (or anything else that can reach the gateway) sends to
 * a client with POST /@connections/{id}, reads it with GET and closes it
 * with DELETE: API Gateway's management API, so that the AWS SDK's
 * ApiGatewayManagementApi client works with the gateway as its endpoint.
 */
#define G_LOG_DOMAIN "functions"

#include "functions-private.h"

#include <string.h>

/* Largest message POST /@connections/{id} sends (API Gateway's frame limit). */
#define MAX_POST_BYTES (128 * 1024)

struct _FunctionsWebSockets {
  FunctionsService *service;
  EdgeGateway *gateway;
  GPtrArray *apis;          /* Api * */
  GHashTable *connections;  /* id -> Connection */
  gboolean routes_added;
};

typedef struct {
  FunctionsWebSockets *ws;
  EdgeConfigWebSocket config;
  GHashTable *actions; /* action -> function */
} Api;

typedef struct {
  gint refs;
  Api *api;
  char *id;
  EdgeWsPeer *peer; /* NULL until open, and once closed */
  gint64 connected_ms;
  gint64 active_ms;
  char *source_ip;
  char *user_agent;
  char *domain;
  gboolean gone;     /* closed */
  gboolean detached; /* the API went first (edged stopping): api is not to be used */
} Connection;

static Connection *
connection_ref (Connection *c)
{
  c->refs++;
  return c;
}

static void
connection_unref (Connection *c)
{
  if (--c->refs > 0)
    return;
  g_clear_pointer (&c->peer, edge_ws_peer_unref);
  g_free (c->id);
  g_free (c->source_ip);
  g_free (c->user_agent);
  g_free (c->domain);
  g_free (c);
}

static char *
connection_id (void)
{
  guint8 bytes[12];
  for (gsize i = 0; i < sizeof bytes; i += 4) {
    guint32 r = g_random_int ();
    memcpy (bytes + i, &r, 4);
  }
  char *id = g_base64_encode (bytes, sizeof bytes);
  g_strdelimit (id, "+", '-');
  g_strdelimit (id, "/", '_');
  return id;
}

/* ---- events ---- */

static void
append_member (GString *out, const char *name, const char *value)
{
  if (out->str[out->len - 1] != '{')
    g_string_append_c (out, ',');
  edge_json_append_string (out, name, strlen (name));
  g_string_append_c (out, ':');
  edge_json_append_string (out, value, strlen (value));
}

/* {"requestContext": {...}, then the caller's members, then "}". */
static GString *
event_begin (Connection *c, const char *route_key, const char *event_type, const char *request_id)
{
  gint64 now = g_get_real_time () / 1000;
  g_autofree char *time = functions_apigw_time (now);
  g_autofree char *message_id = edge_uuid_random ();
  GString *out = g_string_new ("{\"requestContext\":{");
  append_member (out, "routeKey", route_key);
  if (g_str_equal (event_type, "MESSAGE"))
    append_member (out, "messageId", message_id);
  append_member (out, "eventType", event_type);
  append_member (out, "extendedRequestId", request_id);
  append_member (out, "requestTime", time);
  append_member (out, "messageDirection", "IN");
  append_member (out, "stage", "$default");
  g_string_append_printf (out, ",\"connectedAt\":%" G_GINT64_FORMAT
                          ",\"requestTimeEpoch\":%" G_GINT64_FORMAT ",\"identity\":{",
                          c->connected_ms, now);
  append_member (out, "sourceIp", c->source_ip);
  append_member (out, "userAgent", c->user_agent);
  g_string_append_c (out, '}');
  append_member (out, "requestId", request_id);
  append_member (out, "domainName", c->domain);
  append_member (out, "connectionId", c->id);
  append_member (out, "apiId", "edged");
  g_string_append_c (out, '}');
  return out;
}

static GBytes *
connect_event (Connection *c, EdgeRequest *request, const char *request_id)
{
  SoupServerMessage *msg = edge_request_message (request);
  GString *out = event_begin (c, "$connect", "CONNECT", request_id);
  g_string_append (out, ",\"headers\":{");
  SoupMessageHeadersIter iter;
  const char *name, *value;
  soup_message_headers_iter_init (&iter, soup_server_message_get_request_headers (msg));
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  while (soup_message_headers_iter_next (&iter, &name, &value)) {
    if (!g_hash_table_add (seen, (gpointer) name))
      continue;
    append_member (out, name, soup_message_headers_get_list (
                                  soup_server_message_get_request_headers (msg), name));
  }
  g_string_append_c (out, '}');
  const char *query = g_uri_get_query (soup_server_message_get_uri (msg));
  if (query && *query) {
    g_string_append (out, ",\"queryStringParameters\":{");
    g_autoptr (GHashTable) params = g_uri_parse_params (query, -1, "&", G_URI_PARAMS_WWW_FORM,
                                                        NULL);
    if (params) {
      GHashTableIter piter;
      gpointer k, v;
      g_hash_table_iter_init (&piter, params);
      while (g_hash_table_iter_next (&piter, &k, &v))
        append_member (out, k, v);
    }
    g_string_append_c (out, '}');
  }
  g_string_append (out, ",\"isBase64Encoded\":false}");
  return g_string_free_to_bytes (out);
}

static GBytes *
simple_event (Connection *c, const char *route_key, const char *event_type,
              const char *request_id, GBytes *body, gboolean binary)
{
  GString *out = event_begin (c, route_key, event_type, request_id);
  gboolean base64 = FALSE;
  if (body) {
    gsize len;
    const char *data = g_bytes_get_data (body, &len);
    base64 = binary || !g_utf8_validate (data, (gssize) len, NULL);
    g_string_append (out, ",\"body\":");
    if (base64) {
      g_autofree char *encoded = g_base64_encode ((const guchar *) data, len);
      edge_json_append_string (out, encoded, strlen (encoded));
    } else {
      edge_json_append_string (out, data, len);
    }
  }
  g_string_append_printf (out, ",\"isBase64Encoded\":%s}", base64 ? "true" : "false");
  return g_string_free_to_bytes (out);
}

/* The "statusCode" of a response object; 200 for any other answer. */
static gint64
answer_status (GBytes *payload, JsonNode **ret_root)
{
  gsize len;
  const char *data = g_bytes_get_data (payload, &len);
  JsonNode *root = edge_json_parse (data, len, FUNCTIONS_MAX_PAYLOAD_BYTES, NULL);
  gint64 status = 200;
  if (root && JSON_NODE_HOLDS_OBJECT (root)) {
    JsonNode *code = json_object_get_member (json_node_get_object (root), "statusCode");
    if (code && JSON_NODE_HOLDS_VALUE (code) && json_node_get_value_type (code) == G_TYPE_INT64)
      status = json_node_get_int (code);
  }
  *ret_root = root;
  return status;
}

/* ---- $default and $disconnect ---- */

static void
on_message_done (const FunctionsResult *result, gpointer data)
{
  Connection *c = data;
  if (!result->stopping && c->peer && !c->gone) {
    if (result->function_error) {
      g_autoptr (GString) text = g_string_new ("{\"message\":\"Internal server error\"");
      g_string_append (text, ",\"connectionId\":");
      edge_json_append_string (text, c->id, strlen (c->id));
      g_string_append (text, ",\"requestId\":");
      edge_json_append_string (text, result->request_id, strlen (result->request_id));
      g_string_append_c (text, '}');
      edge_ws_peer_send_text (c->peer, text->str);
    } else {
      g_autoptr (JsonNode) root = NULL;
      answer_status (result->payload, &root);
      JsonNode *body = root && JSON_NODE_HOLDS_OBJECT (root)
                           ? json_object_get_member (json_node_get_object (root), "body")
                           : NULL;
      if (body && JSON_NODE_HOLDS_VALUE (body) && json_node_get_value_type (body) == G_TYPE_STRING)
        edge_ws_peer_send_text (c->peer, json_node_get_string (body));
    }
  }
  connection_unref (c);
}

static void
on_ws_message (EdgeWsPeer *peer, GBytes *message, gboolean binary, gpointer data)
{
  Connection *c = data;
  if (c->detached)
    return;
  c->active_ms = g_get_real_time () / 1000;
  /* The route: the message's "action" if a route has it, else $default. */
  const char *route_key = "$default";
  const char *function = c->api->config.message;
  gsize len;
  const char *raw = g_bytes_get_data (message, &len);
  g_autoptr (JsonNode) root = NULL;
  if (!binary && g_hash_table_size (c->api->actions) > 0 && len > 0 && raw[0] == '{' &&
      (root = edge_json_parse (raw, len, FUNCTIONS_MAX_PAYLOAD_BYTES, NULL)) &&
      JSON_NODE_HOLDS_OBJECT (root)) {
    const char *action =
        json_object_get_string_member_with_default (json_node_get_object (root), "action", NULL);
    const char *routed = action ? g_hash_table_lookup (c->api->actions, action) : NULL;
    if (routed) {
      route_key = action;
      function = routed;
    }
  }
  g_autofree char *id = edge_uuid_random ();
  g_autoptr (GBytes) event = simple_event (c, route_key, "MESSAGE", id, message, binary);
  g_autoptr (GError) error = NULL;
  if (!functions_service_invoke (c->api->ws->service, function, id, event, on_message_done,
                                 connection_ref (c), &error)) {
    connection_unref (c);
    g_autoptr (GString) text = g_string_new ("{\"message\":");
    const char *what = g_error_matches (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_THROTTLED)
                           ? "Too many requests"
                           : "Internal server error";
    edge_json_append_string (text, what, strlen (what));
    g_string_append (text, ",\"connectionId\":");
    edge_json_append_string (text, c->id, strlen (c->id));
    g_string_append_c (text, '}');
    edge_ws_peer_send_text (peer, text->str);
  }
}

static void
on_disconnect_done (const FunctionsResult *result, gpointer data)
{
  connection_unref (data);
}

static void
on_ws_close (EdgeWsPeer *peer, gpointer data)
{
  Connection *c = data;
  if (c->detached)
    return;
  FunctionsWebSockets *ws = c->api->ws;
  c->gone = TRUE;
  g_hash_table_remove (ws->connections, c->id);
  if (c->api->config.disconnect[0]) {
    g_autofree char *id = edge_uuid_random ();
    g_autoptr (GBytes) event = simple_event (c, "$disconnect", "DISCONNECT", id, NULL, FALSE);
    if (!functions_service_invoke (ws->service, c->api->config.disconnect, id, event,
                                   on_disconnect_done, connection_ref (c), NULL))
      connection_unref (c);
  }
}

/* ---- $connect ---- */

static void
on_ws_open (EdgeWsPeer *peer, EdgeRequest *request, gpointer data)
{
  Connection *c = g_object_get_data (G_OBJECT (edge_request_message (request)),
                                     "edge-ws-connection");
  if (c == NULL) {
    edge_ws_peer_close (peer, 1011, "no connection");
    return;
  }
  c->peer = edge_ws_peer_ref (peer);
  g_hash_table_insert (c->api->ws->connections, c->id, connection_ref (c));
  edge_ws_peer_set_handlers (peer, on_ws_message, on_ws_close, connection_ref (c),
                             (GDestroyNotify) connection_unref);
}

typedef struct {
  Connection *connection;
  EdgeRequest *request;
} Connecting;

static void
let_in (Connection *c, EdgeRequest *request)
{
  g_object_set_data_full (G_OBJECT (edge_request_message (request)), "edge-ws-connection",
                          connection_ref (c), (GDestroyNotify) connection_unref);
  edge_request_ws_accept (request);
}

static void
on_connect_done (const FunctionsResult *result, gpointer data)
{
  Connecting *connecting = data;
  Connection *c = connecting->connection;
  EdgeRequest *request = connecting->request;
  g_free (connecting);
  if (result->stopping) {
    edge_request_respond_rest_error (request, 503, "ServiceUnavailable", "Service Unavailable");
  } else if (result->function_error) {
    edge_request_respond_rest_error (request, 500, "InternalServerError",
                                     "Internal server error");
  } else {
    g_autoptr (JsonNode) root = NULL;
    gint64 status = answer_status (result->payload, &root);
    if (status >= 200 && status < 300)
      let_in (c, request);
    else if (status >= 400 && status < 600)
      edge_request_respond_rest_error (request, (guint) status, "Forbidden", "Forbidden");
    else
      edge_request_respond_rest_error (request, 500, "InternalServerError",
                                       "Internal server error");
  }
  connection_unref (c);
}

static void
on_ws_accept (EdgeRequest *request, gpointer data)
{
  Api *api = data;
  SoupServerMessage *msg = edge_request_message (request);
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
  Connection *c = g_new0 (Connection, 1);
  c->refs = 1;
  c->api = api;
  c->id = connection_id ();
  c->connected_ms = c->active_ms = g_get_real_time () / 1000;
  const char *ip = soup_server_message_get_remote_host (msg);
  c->source_ip = g_strdup (ip ? ip : "");
  const char *agent = soup_message_headers_get_one (headers, "User-Agent");
  c->user_agent = g_strdup (agent ? agent : "");
  const char *host = soup_message_headers_get_one (headers, "Host");
  c->domain = g_strndup (host ? host : "localhost", strcspn (host ? host : "localhost", ":"));
  if (api->config.connect[0] == '\0') {
    let_in (c, request);
    connection_unref (c);
    return;
  }
  g_autofree char *id = edge_uuid_random ();
  g_autoptr (GBytes) event = connect_event (c, request, id);
  Connecting *connecting = g_new0 (Connecting, 1);
  connecting->connection = c;
  connecting->request = request;
  g_autoptr (GError) error = NULL;
  if (!functions_service_invoke (api->ws->service, api->config.connect, id, event,
                                 on_connect_done, connecting, &error)) {
    g_free (connecting);
    connection_unref (c);
    edge_request_respond_rest_error (request, 429, "TooManyRequestsException",
                                     "Too many requests");
    return;
  }
  edge_request_pause (request);
}

/* ---- /@connections/{id} ---- */

static Connection *
request_connection (FunctionsWebSockets *ws, EdgeRequest *request)
{
  const char *id = edge_request_param (request, "id");
  Connection *c = g_hash_table_lookup (ws->connections, id);
  if (c == NULL || c->gone || c->peer == NULL || !edge_ws_peer_is_open (c->peer)) {
    edge_request_respond_rest_error (request, 410, "GoneException",
                                     "no connection %s (it closed, or never was)", id);
    return NULL;
  }
  return c;
}

static void
handle_post_connection (EdgeRequest *request, gpointer data)
{
  Connection *c = request_connection (data, request);
  if (c == NULL)
    return;
  GBytes *body = edge_request_body (request);
  gsize len;
  const char *text = g_bytes_get_data (body, &len);
  gboolean binary = !g_utf8_validate (text, (gssize) len, NULL);
  if (edge_ws_peer_send (c->peer, body, binary) == EDGE_WS_DROPPED) {
    edge_request_respond_rest_error (request, 429, "LimitExceededException",
                                     "the client's queue is full");
    return;
  }
  edge_request_respond (request, 200, NULL, NULL);
}

static void
handle_get_connection (EdgeRequest *request, gpointer data)
{
  Connection *c = request_connection (data, request);
  if (c == NULL)
    return;
  g_autofree char *connected = functions_iso_time (c->connected_ms);
  g_autofree char *active = functions_iso_time (c->active_ms);
  g_autoptr (GString) out = g_string_new ("{");
  append_member (out, "connectedAt", connected);
  g_string_append (out, ",\"identity\":{");
  append_member (out, "sourceIp", c->source_ip);
  append_member (out, "userAgent", c->user_agent);
  g_string_append_c (out, '}');
  append_member (out, "lastActiveAt", active);
  g_string_append_c (out, '}');
  g_autoptr (GBytes) body = g_bytes_new (out->str, out->len);
  edge_request_respond (request, 200, "application/json", body);
}

static void
handle_delete_connection (EdgeRequest *request, gpointer data)
{
  Connection *c = request_connection (data, request);
  if (c == NULL)
    return;
  edge_ws_peer_close (c->peer, 1000, "closed by the server");
  edge_request_respond (request, 204, NULL, NULL);
}

/* ---- the APIs ---- */

FunctionsWebSockets *
functions_websockets_new (FunctionsService *service, EdgeGateway *gateway)
{
  FunctionsWebSockets *ws = g_new0 (FunctionsWebSockets, 1);
  ws->service = service;
  ws->gateway = gateway;
  ws->apis = g_ptr_array_new ();
  ws->connections = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                           (GDestroyNotify) connection_unref);
  return ws;
}

gboolean
functions_websockets_add (FunctionsWebSockets *ws, const EdgeConfigWebSocket *config,
                          GError **error)
{
  const char *named[] = { config->connect, config->disconnect, config->message };
  for (gsize i = 0; i < G_N_ELEMENTS (named); i++)
    if (named[i][0] && functions_service_function (ws->service, named[i]) == NULL) {
      g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                   "websocket %s: no function \"%s\"", config->path, named[i]);
      return FALSE;
    }
  g_autofree char *key = g_strdup_printf ("GET %s", config->path);
  g_autofree char *method = NULL, *pattern = NULL;
  if (!functions_route_parse (key, &method, &pattern, error))
    return FALSE;
  if (!ws->routes_added) {
    static const EdgeRoute routes[] = {
      { "POST", "/@connections/{id}", handle_post_connection,
        "Send a message to a WebSocket client (PostToConnection)", "websockets",
        MAX_POST_BYTES, EDGE_ERRORS_AWS_REST },
      { "GET", "/@connections/{id}", handle_get_connection,
        "A WebSocket client's connection (GetConnection)", "websockets", 0,
        EDGE_ERRORS_AWS_REST },
      { "DELETE", "/@connections/{id}", handle_delete_connection,
        "Close a WebSocket client's connection (DeleteConnection)", "websockets", 0,
        EDGE_ERRORS_AWS_REST },
    };
    for (gsize i = 0; i < G_N_ELEMENTS (routes); i++)
      if (!edge_gateway_add_route (ws->gateway, &routes[i], ws, error))
        return FALSE;
    ws->routes_added = TRUE;
  }
  Api *api = g_new0 (Api, 1);
  api->ws = ws;
  api->config.path = g_strdup (config->path);
  api->config.connect = g_strdup (config->connect);
  api->config.disconnect = g_strdup (config->disconnect);
  api->config.message = g_strdup (config->message);
  api->actions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_ptr_array_add (ws->apis, api); /* the gateway may hold it from here */
  g_autofree char *summary = g_strdup_printf ("WebSocket API (messages to the function %s)",
                                              config->message);
  EdgeWsRoute route = { pattern, on_ws_open, summary, "websockets", on_ws_accept };
  if (!edge_gateway_add_websocket (ws->gateway, &route, api, error)) {
    g_prefix_error (error, "websocket %s: ", config->path);
    return FALSE;
  }
  g_message ("websocket %s -> function \"%s\"", config->path, config->message);
  return TRUE;
}

gboolean
functions_websockets_add_route (FunctionsWebSockets *ws, const EdgeConfigWebSocketRoute *config,
                                GError **error)
{
  Api *api = NULL;
  for (guint i = 0; i < ws->apis->len && api == NULL; i++)
    if (g_str_equal (((Api *) ws->apis->pdata[i])->config.path, config->path))
      api = ws->apis->pdata[i];
  if (api == NULL) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "websocket route %s %s: no WebSocket API at %s in websockets", config->path,
                 config->action, config->path);
    return FALSE;
  }
  if (functions_service_function (ws->service, config->function) == NULL) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "websocket route %s %s: no function \"%s\"", config->path, config->action,
                 config->function);
    return FALSE;
  }
  if (config->action[0] == '\0' || config->action[0] == '$' ||
      g_hash_table_contains (api->actions, config->action)) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "websocket route %s \"%s\": an action is a non-empty name, once per API (the "
                 "$ routes are the API's own keys)", config->path, config->action);
    return FALSE;
  }
  g_hash_table_insert (api->actions, g_strdup (config->action), g_strdup (config->function));
  g_message ("websocket %s: action \"%s\" -> function \"%s\"", config->path, config->action,
             config->function);
  return TRUE;
}

void
functions_websockets_free (FunctionsWebSockets *ws)
{
  if (ws == NULL)
    return;
  /* Connections still open are closed by the gateway as it stops; their
   * handlers keep what they need. */
  GHashTableIter iter;
  gpointer value;
  g_hash_table_iter_init (&iter, ws->connections);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    ((Connection *) value)->detached = TRUE;
  g_hash_table_unref (ws->connections);
  for (guint i = 0; i < ws->apis->len; i++) {
    Api *api = ws->apis->pdata[i];
    g_free (api->config.path);
    g_free (api->config.connect);
    g_free (api->config.disconnect);
    g_free (api->config.message);
    g_hash_table_unref (api->actions);
    g_free (api);
  }
  g_ptr_array_unref (ws->apis);
  g_free (ws);
}
