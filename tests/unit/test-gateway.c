/* The gateway as a module sees it: routes with parameters and JSON bodies,
 * and WebSocket endpoints whose clients may be slow. Runs a real gateway on
 * a loopback port with real clients (libsoup, and a raw socket that never
 * reads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "edge-gateway.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BUFFERED (256 * 1024)
#define MESSAGE_BYTES (16 * 1024)

typedef struct {
  EdgeMetrics *metrics;
  EdgeGateway *gateway;
  char *url;
  /* flood route state */
  EdgeWsPeer *peer;
  guint flood_source;
  guint64 sent, dropped, closed_results;
  guint64 next_seq;
  gsize max_buffered_seen;
  gboolean peer_closed;
  gboolean flood_limit_reached;
  guint64 flood_limit;
} Fixture;

static gboolean
run_until (gboolean *flag, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + timeout_ms * 1000;
  while (!g_atomic_int_get (flag) && g_get_monotonic_time () < deadline)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (1000);
  return g_atomic_int_get (flag);
}

static void
run_for (guint ms)
{
  gint64 deadline = g_get_monotonic_time () + ms * 1000;
  while (g_get_monotonic_time () < deadline)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (1000);
}

/* ---- routes under test ---- */

static void
handle_echo (EdgeRequest *request, gpointer data)
{
  g_autoptr (JsonNode) body = edge_request_json (request);
  if (body == NULL)
    return; /* edge_request_json answered 400 */
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, edge_request_param (request, "name"));
  json_builder_set_member_name (b, "q");
  const char *q = edge_request_query (request, "q");
  json_builder_add_string_value (b, q ? q : "");
  json_builder_set_member_name (b, "body");
  json_builder_add_value (b, json_node_copy (body));
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

static void
on_flood_closed (EdgeWsPeer *peer, gpointer data)
{
  Fixture *f = data;
  f->peer_closed = TRUE;
}

/* Sends numbered messages as fast as the loop turns, as a camera would. */
static gboolean
flood (gpointer data)
{
  Fixture *f = data;
  if (f->peer == NULL)
    return G_SOURCE_CONTINUE;
  for (int i = 0; i < 8; i++) {
    if (f->flood_limit && f->sent >= f->flood_limit) {
      f->flood_limit_reached = TRUE;
      return G_SOURCE_CONTINUE;
    }
    g_autofree guint8 *msg = g_malloc0 (MESSAGE_BYTES);
    memcpy (msg, &f->next_seq, sizeof f->next_seq);
    g_autoptr (GBytes) bytes = g_bytes_new_take (g_steal_pointer (&msg), MESSAGE_BYTES);
    switch (edge_ws_peer_send (f->peer, bytes, TRUE)) {
    case EDGE_WS_SENT:
      f->sent++;
      f->next_seq++;
      break;
    case EDGE_WS_DROPPED:
      f->dropped++;
      break;
    case EDGE_WS_CLOSED:
      f->closed_results++;
      break;
    }
    f->max_buffered_seen = MAX (f->max_buffered_seen, edge_ws_peer_buffered (f->peer));
  }
  return G_SOURCE_CONTINUE;
}

static void
open_flood (EdgeWsPeer *peer, EdgeRequest *request, gpointer data)
{
  Fixture *f = data;
  f->peer = edge_ws_peer_ref (peer);
  edge_ws_peer_set_handlers (peer, NULL, on_flood_closed, f, NULL);
  f->flood_source = g_idle_add (flood, f);
}

static int
setup (void **state)
{
  Fixture *f = g_new0 (Fixture, 1);
  g_autoptr (GError) error = NULL;
  f->metrics = edge_metrics_new ();
  EdgeGatewayOptions options = {
    .listen = "127.0.0.1:0",
    .max_body_bytes = 64 * 1024,
    .max_connections = 64,
    .access_log = FALSE,
    .ws_max_buffered_bytes = MAX_BUFFERED,
    .ws_max_message_bytes = 4096,
    .ws_stall_timeout_ms = 1500,
    .metrics = f->metrics,
  };
  f->gateway = edge_gateway_new (&options, &error);
  assert_non_null (f->gateway);
  static const EdgeRoute echo = { "POST", "/v1/things/{name}", handle_echo, "Echo", "test", 0 };
  static const EdgeWsRoute flood_route = { "/v1/flood", open_flood, "Floods", "test", NULL };
  assert_true (edge_gateway_add_route (f->gateway, &echo, f, &error));
  assert_true (edge_gateway_add_websocket (f->gateway, &flood_route, f, &error));
  assert_true (edge_gateway_start (f->gateway, &error));
  assert_true (edge_gateway_port (f->gateway) > 0);
  f->url = edge_gateway_url (f->gateway);
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  Fixture *f = *state;
  if (f->flood_source)
    g_source_remove (f->flood_source);
  g_clear_pointer (&f->peer, edge_ws_peer_unref);
  edge_gateway_free (f->gateway);
  run_for (50);
  edge_metrics_free (f->metrics);
  g_free (f->url);
  g_free (f);
  return 0;
}

/* ---- HTTP ---- */

/* A blocking client request runs on its own thread while this one keeps
 * the gateway's loop turning. */
typedef struct {
  const char *method;
  char *url;
  GBytes *body;
  guint status;
  char *response;
  gboolean done;
} ClientCall;

static gpointer
client_thread (gpointer data)
{
  ClientCall *call = data;
  g_autoptr (SoupSession) session = soup_session_new ();
  g_autoptr (SoupMessage) msg = soup_message_new (call->method, call->url);
  if (call->body)
    soup_message_set_request_body_from_bytes (msg, "application/json", call->body);
  g_autoptr (GBytes) response = soup_session_send_and_read (session, msg, NULL, NULL);
  call->status = soup_message_get_status (msg);
  call->response = response ? g_strndup (g_bytes_get_data (response, NULL),
                                         g_bytes_get_size (response))
                            : g_strdup ("");
  g_atomic_int_set (&call->done, TRUE);
  return NULL;
}

static guint
request (Fixture *f, const char *method, const char *path, const char *body, gsize len,
         char **ret_body)
{
  ClientCall call = { method, g_strconcat (f->url, path, NULL), NULL, 0, NULL, FALSE };
  if (body)
    call.body = g_bytes_new (body, len);
  GThread *thread = g_thread_new ("client", client_thread, &call);
  assert_true (run_until (&call.done, 30000));
  g_thread_join (thread);
  g_free (call.url);
  g_clear_pointer (&call.body, g_bytes_unref);
  if (ret_body)
    *ret_body = call.response;
  else
    g_free (call.response);
  return call.status;
}

static guint
post (Fixture *f, const char *path, const char *body, gsize len, char **ret_body)
{
  return request (f, "POST", path, body, len, ret_body);
}

static void
test_route_params_query_and_json (void **state)
{
  Fixture *f = *state;
  g_autofree char *body = NULL;
  static const char json[] = "{\"n\": 1, \"s\": \"caf\xc3\xa9\"}";
  assert_int_equal (post (f, "/v1/things/front%20door?q=a%26b", json, strlen (json), &body), 200);
  assert_string_equal (body, "{\"name\":\"front door\",\"q\":\"a&b\",\"body\":{\"n\":1,\"s\":\"caf\xc3\xa9\"}}");
}

static void
test_untrusted_json_is_checked (void **state)
{
  Fixture *f = *state;
  struct {
    const char *body;
    const char *expect; /* in the error message */
  } cases[] = {
    { "{\"a\": ", "not valid JSON" },
    { "{} trailing", "not valid JSON" },
    { "\xff\xfe", "not UTF-8" },
    { "", "not valid JSON" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *body = NULL;
    assert_int_equal (post (f, "/v1/things/x", cases[i].body, strlen (cases[i].body), &body), 400);
    if (strstr (body, cases[i].expect) == NULL || strstr (body, "\"code\":\"InvalidJson\"") == NULL)
      fail_msg ("case %zu: %s", i, body);
  }
  /* 60 KB of '[' would crash json-glib's recursive parser: refused first. */
  gsize deep = 60000;
  g_autofree char *brackets = g_strnfill (deep, '[');
  g_autofree char *body = NULL;
  assert_int_equal (post (f, "/v1/things/x", brackets, deep, &body), 400);
  assert_non_null (strstr (body, "nested deeper than 64 levels"));
  /* Brackets inside strings do not count. */
  g_autofree char *in_string = g_strdup_printf ("{\"s\": \"%s\"}", brackets);
  g_clear_pointer (&body, g_free);
  assert_int_equal (post (f, "/v1/things/x", in_string, strlen (in_string), &body), 200);
}

static void
test_oversized_body_refused (void **state)
{
  Fixture *f = *state;
  gsize big = 64 * 1024 + 1;
  g_autofree char *data = g_strnfill (big, ' ');
  g_autofree char *body = NULL;
  assert_int_equal (post (f, "/v1/things/x", data, big, &body), 413);
  assert_non_null (strstr (body, "\"code\":\"PayloadTooLarge\""));
  assert_non_null (strstr (body, "limit of 65536 bytes"));
  /* The gateway still serves the next request. */
  g_clear_pointer (&body, g_free);
  assert_int_equal (post (f, "/v1/things/x", "{}", 2, &body), 200);
}

/* ---- WebSockets ---- */

/* Opens a WebSocket by hand and then never reads: the slowest client there is. */
static int
connect_non_reading_client (Fixture *f, const char *path)
{
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons (edge_gateway_port (f->gateway)) };
  int fd = socket (AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  char request[512];
  inet_pton (AF_INET, "127.0.0.1", &addr.sin_addr);
  setsockopt (fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  assert_int_equal (connect (fd, (struct sockaddr *) &addr, sizeof addr), 0);
  int n = g_snprintf (request, sizeof request,
                      "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n",
                      path);
  assert_int_equal (write (fd, request, n), n);
  return fd;
}

static void
test_slow_client_bounded_then_cut_off (void **state)
{
  Fixture *f = *state;
  int fd = connect_non_reading_client (f, "/v1/flood");
  gboolean have_peer = FALSE;

  for (int i = 0; i < 2000 && !have_peer; i++) {
    g_main_context_iteration (NULL, FALSE);
    have_peer = f->peer != NULL;
    g_usleep (1000);
  }
  assert_true (have_peer);
  /* Flood for a while: far more than the limit is offered. */
  run_for (800);
  assert_true (f->dropped > 0);
  assert_true (f->max_buffered_seen <= MAX_BUFFERED);
  assert_true (edge_ws_peer_buffered (f->peer) <= MAX_BUFFERED);
  assert_int_equal (edge_ws_peer_dropped (f->peer), f->dropped);
  /* What was accepted is at most the limit plus what the kernel buffers hold. */
  assert_true (f->sent * (MESSAGE_BYTES + 4) < MAX_BUFFERED + 8 * 1024 * 1024);

  /* The queue does not move: after the stall timeout the client is cut off. */
  assert_true (run_until (&f->peer_closed, 5000));
  assert_false (edge_ws_peer_is_open (f->peer));
  g_autofree char *metrics = edge_metrics_render (f->metrics);
  assert_non_null (strstr (metrics, "edged_ws_peers_closed_slow_total 1\n"));
  assert_non_null (strstr (metrics, "edged_ws_messages_dropped_total "));
  close (fd);
}

typedef struct {
  guint64 received;
  guint64 next_expected;
  gboolean out_of_order;
  gboolean done;
  SoupWebsocketConnection *conn;
} Reader;

static void
on_reader_message (SoupWebsocketConnection *conn, gint type, GBytes *message, gpointer data)
{
  Reader *r = data;
  guint64 seq;
  assert_int_equal (g_bytes_get_size (message), MESSAGE_BYTES);
  memcpy (&seq, g_bytes_get_data (message, NULL), sizeof seq);
  if (seq != r->next_expected)
    r->out_of_order = TRUE;
  r->next_expected = seq + 1;
  r->received++;
}

static void
on_reader_connected (GObject *source, GAsyncResult *result, gpointer data)
{
  Reader *r = data;
  g_autoptr (GError) error = NULL;
  r->conn = soup_session_websocket_connect_finish (SOUP_SESSION (source), result, &error);
  if (r->conn == NULL)
    fail_msg ("connect: %s", error->message);
  soup_websocket_connection_set_max_incoming_payload_size (r->conn, 1 << 20);
  g_signal_connect (r->conn, "message", G_CALLBACK (on_reader_message), r);
}

static void
test_reading_client_gets_every_sent_message_in_order (void **state)
{
  Fixture *f = *state;
  g_autoptr (SoupSession) session = soup_session_new ();
  g_autofree char *url = g_strdup_printf ("ws://127.0.0.1:%u/v1/flood", edge_gateway_port (f->gateway));
  g_autoptr (SoupMessage) msg = soup_message_new ("GET", url);
  Reader r = { 0 };

  f->flood_limit = 3000; /* 48 MB through a 256 KiB window */
  soup_session_websocket_connect_async (session, msg, NULL, NULL, G_PRIORITY_DEFAULT, NULL,
                                        on_reader_connected, &r);
  assert_true (run_until (&f->flood_limit_reached, 60000));
  /* Every message reported SENT arrives, in order, none invented. */
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (r.received < f->sent && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  assert_int_equal (r.received, f->sent);
  assert_false (r.out_of_order);
  assert_true (f->max_buffered_seen <= MAX_BUFFERED);
  soup_websocket_connection_close (r.conn, 1000, NULL);
  run_for (100);
  g_clear_object (&r.conn);
}

static void
test_websocket_route_needs_upgrade (void **state)
{
  Fixture *f = *state;
  g_autofree char *body = NULL;
  assert_int_equal (request (f, "GET", "/v1/flood", NULL, 0, &body), 400);
  assert_non_null (strstr (body, "\"code\":\"WebSocketRequired\""));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_route_params_query_and_json, setup, teardown),
    cmocka_unit_test_setup_teardown (test_untrusted_json_is_checked, setup, teardown),
    cmocka_unit_test_setup_teardown (test_oversized_body_refused, setup, teardown),
    cmocka_unit_test_setup_teardown (test_websocket_route_needs_upgrade, setup, teardown),
    cmocka_unit_test_setup_teardown (test_slow_client_bounded_then_cut_off, setup, teardown),
    cmocka_unit_test_setup_teardown (test_reading_client_gets_every_sent_message_in_order, setup,
                                     teardown),
  };
  return cmocka_run_group_tests_name ("gateway", tests, NULL, NULL);
}
