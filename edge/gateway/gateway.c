/* gateway.c: the listener, request dispatch, limits, the access log and
 * request metrics (docs/internals/gateway.md).
 *
 * Connections are accepted by our own GSocketService, not libsoup's, so that
 * we choose the listen backlog, cap the number of connections, do the TLS
 * handshake with a deadline, and can later route by protocol; each accepted
 * stream is then handed to libsoup with soup_server_accept_iostream.
 *
 * A request's route is matched as soon as its headers arrive, so that the
 * route's body limit applies before any of the body is read: libsoup would
 * otherwise read (and keep) the whole body before the handler runs. An
 * oversized request gets its 413 on a connection taken back from libsoup,
 * which is then closed after a short, bounded drain.
 */
#define G_LOG_DOMAIN "gateway"

#include "gateway-private.h"

#include "edged-version.h"

#include <errno.h>
#include <gio/gio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

G_DEFINE_QUARK (edge-gateway-error-quark, edge_gateway_error)

#define REQUEST_KEY "edge-request"
#define TLS_HANDSHAKE_TIMEOUT_S 10
#define REFUSE_DRAIN_BYTES (1024 * 1024)
#define REFUSE_DRAIN_TIMEOUT_MS 2000

static const double latency_buckets[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,  0.5,    1,     2.5,  5,    10 };

/* ---- the connections accepted ---- */

/* HTTP/1.1 connections, plain and TLS, stay open between requests
 * (conn_idle_begin). */
static gboolean
gateway_keeps_alive (EdgeGateway *gateway)
{
  return gateway->keepalive_timeout_ms > 0;
}

static char *
peer_key (GSocketAddress *address)
{
  if (address == NULL || !G_IS_INET_SOCKET_ADDRESS (address))
    return NULL;
  GInetSocketAddress *inet = G_INET_SOCKET_ADDRESS (address);
  g_autofree char *host = g_inet_address_to_string (g_inet_socket_address_get_address (inet));
  return g_strdup_printf ("%s#%u", host, g_inet_socket_address_get_port (inet));
}

/* The peer key of a request's connection. libsoup hands every request of
 * a connection the same address object, which keeps the key once made. */
static char *
message_peer_key (SoupServerMessage *msg)
{
  static GQuark quark;
  if (G_UNLIKELY (quark == 0))
    quark = g_quark_from_static_string ("edge-peer-key");
  GSocketAddress *address = soup_server_message_get_remote_address (msg);
  if (address == NULL)
    return NULL;
  const char *key = g_object_get_qdata (G_OBJECT (address), quark);
  if (key == NULL) {
    char *made = peer_key (address);
    if (made == NULL)
      return NULL;
    g_object_set_qdata_full (G_OBJECT (address), quark, made, g_free);
    key = made;
  }
  return g_strdup (key);
}

static void
conn_clear_deadline (Conn *conn)
{
  if (conn->head_deadline) {
    g_source_destroy (conn->head_deadline);
    g_clear_pointer (&conn->head_deadline, g_source_unref);
  }
}

void
gateway_conn_clear_head_deadline (Conn *conn)
{
  conn_clear_deadline (conn);
}

static void conn_idle_end (Conn *conn);

static void
conn_free (gpointer data)
{
  Conn *conn = data;
  conn_clear_deadline (conn);
  conn_idle_end (conn);
  g_object_unref (conn->socket);
  g_free (conn->client);
  g_free (conn->peer);
  g_free (conn);
}

/* A client has header_timeout to send its request's head (slowloris);
 * the deadline goes when the head is in (on_got_headers) or the connection
 * turns out to speak HTTP/2 (gateway-h2.c has limits of its own). */
static gboolean
header_timed_out (gpointer data)
{
  Conn *conn = data;
  edge_metrics_add (conn->gateway->metrics, "edged_http_slow_clients_total",
                    "stage=\"head\"", 1);
  g_clear_pointer (&conn->head_deadline, g_source_unref);
  g_socket_shutdown (conn->socket, TRUE, TRUE, NULL);
  return G_SOURCE_REMOVE;
}

static void
conn_arm_deadline (Conn *conn)
{
  if (conn->gateway->header_timeout_ms <= 0 || conn->head_deadline)
    return;
  conn->head_deadline = g_timeout_source_new ((guint) conn->gateway->header_timeout_ms);
  g_source_set_callback (conn->head_deadline, header_timed_out, conn, NULL);
  g_source_attach (conn->head_deadline, NULL);
}

/* ---- kept-alive connections ----
 *
 * libsoup 3.2.3 keeps an HTTP/1.1 connection open after an answer only if
 * its server has a listener of its own (the gateway gives it one nobody can
 * reach, see unreachable_listener). Once such a connection is idle, libsoup
 * never lets go of it: a client that closes it leaves the socket and
 * libsoup's connection behind for good (fixed upstream in November 2022,
 * "server: do not leak idle connections closed by the client"; not in Debian
 * 12), and nothing times an idle one out. So between two requests the
 * gateway watches the socket itself, at a higher priority than libsoup's
 * own read, which therefore never runs first:
 *  - the next request's first bytes end the watch (and start the head
 *    deadline); libsoup reads them on the next turn of the loop;
 *  - the client's end, an error, or keepalive_timeout of silence end the
 *    connection, taken back from libsoup through the last answered message
 *    (soup_server_message_steal_connection) while libsoup still waits for
 *    a request on it, and closed.
 * When libsoup ends a connection itself (the request or the answer said
 * close), the message's "disconnected" ends the watch. */

static void
conn_idle_end (Conn *conn)
{
  if (conn->idle) {
    g_source_destroy (conn->idle);
    g_clear_pointer (&conn->idle, g_source_unref);
  }
  if (conn->idle_msg) {
    g_signal_handler_disconnect (conn->idle_msg, conn->idle_handler);
    g_clear_object (&conn->idle_msg);
  }
}

static void
idle_msg_disconnected (SoupServerMessage *msg, gpointer data)
{
  conn_idle_end (data);
}

/* Ends an idle connection: taken back from libsoup, which still waits for
 * a request on it, and closed. Freeing the stream frees @conn
 * (connection_gone), so nothing of it may be touched after. */
static void
conn_idle_close (Conn *conn)
{
  g_autoptr (SoupServerMessage) msg = g_object_ref (conn->idle_msg);
  conn_idle_end (conn);
  g_autoptr (GIOStream) stream = soup_server_message_steal_connection (msg);
  if (stream)
    g_io_stream_close (stream, NULL, NULL);
}

/* At a connection limit, the connection idle the longest between requests
 * gives way to a new one (from @client, or from anyone with NULL): its
 * client would open another when it needs one. FALSE if none is idle. */
static gboolean
gateway_close_idle (EdgeGateway *gateway, const char *client)
{
  GHashTableIter iter;
  gpointer value;
  Conn *found = NULL;
  g_hash_table_iter_init (&iter, gateway->streams);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    Conn *conn = value;
    gboolean idle = conn->idle_msg || (conn->h1 && gateway_h1_idle (conn->h1));
    if (idle && (client == NULL || g_str_equal (conn->client, client)) &&
        (found == NULL || conn->idle_since < found->idle_since))
      found = conn;
  }
  if (found == NULL)
    return FALSE;
  if (found->h1)
    gateway_h1_close (found->h1);
  else
    conn_idle_close (found);
  return TRUE;
}

/* The smallest TLS record an HTTP request can come in: a 27-byte request
 * head ("GET / HTTP/1.1\r\nHost: x\r\n\r\n") under TLS 1.3 is 5 + 27 + 1
 * + 16 bytes; a closing alert is 24 (TLS 1.3) or 31 (TLS 1.2, AES-GCM). */
#define TLS_REQUEST_RECORD_MIN 40
/* A TLS 1.3 KeyUpdate: 5 + a 5-byte handshake message + 1 + 16. */
#define TLS13_KEY_UPDATE_RECORD 27

/* Whether the bytes waiting on an idle TLS connection (@head, @n of them,
 * peeked) can start a request. Under TLS the socket's bytes are records,
 * and libsoup must not be the one to read the client's goodbye (a
 * close_notify alert before its end of stream): libsoup 3.2.3 would then
 * keep the connection for good. A request comes as application data (or
 * a handshake, for a renegotiation) in a record larger than any alert, or
 * after a TLS 1.3 KeyUpdate, which a client may send at any time and
 * which then goes to libsoup's TLS layer like a request (the head deadline
 * then runs). Anything followed by more records is not a goodbye either.
 * The rest (a lone alert, a record too short for a request, a header cut
 * in two, which TLS libraries do not send) ends the connection. */
static gboolean
tls_request_waiting (const guint8 *head, gssize n)
{
  if (n < 5)
    return FALSE;
  gsize record = 5 + ((gsize) head[3] << 8 | head[4]);
  return head[0] == 0x16 || (gsize) n > record ||
         (head[0] == 0x17 && (record >= TLS_REQUEST_RECORD_MIN || record == TLS13_KEY_UPDATE_RECORD));
}

/* @condition is 0 when keepalive_timeout has passed. */
static gboolean
conn_idle_ready (int fd, GIOCondition condition, gpointer data)
{
  Conn *conn = data;
  if (condition & G_IO_IN) {
    guint8 head[64];
    gssize n = recv (fd, head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return G_SOURCE_CONTINUE;
    if (n > 0 && (conn->gateway->tls_certificate == NULL || tls_request_waiting (head, n))) {
      /* The next request: libsoup takes it from here. */
      conn_idle_end (conn);
      conn_arm_deadline (conn);
      return G_SOURCE_REMOVE;
    }
  }
  /* The client's end, an error, or too long idle. */
  conn_idle_close (conn);
  return G_SOURCE_REMOVE;
}

/* After an answer on an HTTP/1.1 connection, which libsoup may keep. */
static void
conn_idle_begin (Conn *conn, SoupServerMessage *msg)
{
  conn_idle_end (conn);
  conn->idle_msg = g_object_ref (msg);
  conn->idle_since = g_get_monotonic_time ();
  conn->idle_handler = g_signal_connect (msg, "disconnected", G_CALLBACK (idle_msg_disconnected),
                                         conn);
  /* A plain descriptor source: a GSocket source's own timeout would mark
   * the socket timed out for libsoup's next read. */
  conn->idle = edge_fd_source_new (g_socket_get_fd (conn->socket), G_IO_IN | G_IO_HUP | G_IO_ERR);
  /* Set before attaching: on an attached source, GLib 2.74 wakes the loop
   * (an eventfd write) for each. */
  g_source_set_priority (conn->idle, G_PRIORITY_HIGH);
  g_source_set_ready_time (conn->idle,
                           g_get_monotonic_time () + conn->gateway->keepalive_timeout_ms * 1000);
  g_source_set_callback (conn->idle, (GSourceFunc) (void (*) (void)) conn_idle_ready, conn, NULL);
  g_source_attach (conn->idle, NULL);
}

/* The request's connection, while it is open: found by the peer's address
 * and port, worked out once when the request started. */
static Conn *
conn_of_request (EdgeRequest *request)
{
  return request->peer ? g_hash_table_lookup (request->gateway->conns, request->peer) : NULL;
}

void
gateway_conn_speaks_h2 (EdgeGateway *gateway, GSocketConnection *connection)
{
  g_autoptr (GSocketAddress) remote = g_socket_connection_get_remote_address (connection, NULL);
  g_autofree char *key = peer_key (remote);
  Conn *conn = key ? g_hash_table_lookup (gateway->conns, key) : NULL;
  if (conn) {
    conn->h2 = TRUE;
    conn_clear_deadline (conn);
  }
}

/* ---- requests ---- */

static void
body_deadline_clear (EdgeRequest *request)
{
  if (request->body_deadline) {
    g_hash_table_remove (request->gateway->body_deadlines, request);
    g_source_destroy (request->body_deadline);
    g_clear_pointer (&request->body_deadline, g_source_unref);
  }
}

/* An answer given whole leaves in as few TCP segments as it fits in.
 * libsoup writes its head and each part of its body with a send of its
 * own, and with TCP_NODELAY (set on every connection, on_incoming) each
 * would leave as a segment of its own and wake the client by itself. So
 * the socket is corked from the answer until libsoup has written it
 * (on_finished); answers that stream are not corked. */
static void
request_cork (EdgeRequest *request, gboolean cork)
{
  if (request->socket == NULL || request->corked == cork)
    return;
  int value = cork;
  if (setsockopt (g_socket_get_fd (request->socket), IPPROTO_TCP, TCP_CORK, &value,
                  sizeof value) == 0)
    request->corked = cork;
}

static void
request_free (gpointer data)
{
  EdgeRequest *request = data;
  request_cork (request, FALSE);
  body_deadline_clear (request);
  g_clear_pointer (&request->query_form, g_hash_table_unref);
  if (request->msg == NULL) { /* HTTP/2's: its own */
    g_free ((char *) request->method);
    g_clear_pointer (&request->uri, g_uri_unref);
    g_clear_pointer (&request->request_headers, soup_message_headers_unref);
    g_clear_pointer (&request->response_headers, soup_message_headers_unref);
    g_free (request->remote_host);
    g_clear_pointer (&request->body, g_bytes_unref);
    g_clear_pointer (&request->parts, g_ptr_array_unref);
  }
  g_clear_object (&request->socket);
  g_clear_pointer (&request->params, g_hash_table_unref);
  g_free (request->peer);
  g_free (request->principal);
  g_free (request->key_id);
  g_free (request->auth_query);
  g_free (request->authorizer_context);
  g_free (request->allow);
  g_free (request->path);
  g_free (request);
}

static EdgeRequest *
request_of (SoupServerMessage *msg)
{
  return g_object_get_data (G_OBJECT (msg), REQUEST_KEY);
}

const char *
edge_request_method (EdgeRequest *request)
{
  return request->method;
}

const char *
edge_request_path (EdgeRequest *request)
{
  return request->path;
}

const char *
edge_request_param (EdgeRequest *request, const char *name)
{
  return request->params ? g_hash_table_lookup (request->params, name) : NULL;
}

GHashTable *
edge_request_params (EdgeRequest *request)
{
  return request->params;
}

const char *
edge_request_query (EdgeRequest *request, const char *name)
{
  if (request->query_form == NULL) {
    const char *query = request->uri ? g_uri_get_query (request->uri) : NULL;
    request->query_form = query ? soup_form_decode (query)
                                : g_hash_table_new (g_str_hash, g_str_equal);
  }
  return g_hash_table_lookup (request->query_form, name);
}

const char *
edge_request_header (EdgeRequest *request, const char *name)
{
  return soup_message_headers_get_one (request->request_headers, name);
}

SoupMessageHeaders *
edge_request_headers (EdgeRequest *request)
{
  return request->request_headers;
}

SoupMessageHeaders *
edge_request_response_headers (EdgeRequest *request)
{
  return request->response_headers;
}

GUri *
edge_request_uri (EdgeRequest *request)
{
  return request->uri;
}

const char *
edge_request_remote_host (EdgeRequest *request)
{
  return request->msg ? soup_server_message_get_remote_host (request->msg) : request->remote_host;
}

SoupHTTPVersion
edge_request_http_version (EdgeRequest *request)
{
  return request->msg ? soup_server_message_get_http_version (request->msg)
                      : request->transport->version;
}

GBytes *
edge_request_body (EdgeRequest *request)
{
  if (request->msg == NULL)
    return request->body;
  SoupMessageBody *body = soup_server_message_get_request_body (request->msg);
  GBytes *bytes = soup_message_body_flatten (body);
  /* flatten returns a new reference; keep it with the message. */
  g_object_set_data_full (G_OBJECT (request->msg), "edge-body", bytes,
                          (GDestroyNotify) g_bytes_unref);
  return bytes;
}

SoupServerMessage *
edge_request_message (EdgeRequest *request)
{
  return request->msg;
}

void
gateway_request_ref (EdgeRequest *request)
{
  if (request->msg)
    g_object_ref (request->msg);
  else
    request->refs++;
}

void
gateway_request_unref (EdgeRequest *request)
{
  if (request->msg)
    g_object_unref (request->msg);
  else if (--request->refs == 0)
    request_free (request);
}

void
edge_request_pause (EdgeRequest *request)
{
  if (request->paused)
    return;
  request->paused = TRUE;
  gateway_request_ref (request);
  if (request->msg)
    soup_server_message_pause (request->msg);
}

static void
request_finish_response (EdgeRequest *request)
{
  g_return_if_fail (!request->responded);
  request->responded = TRUE;
  if (request->msg == NULL) {
    /* The transport may be done with the request before this returns. */
    gateway_request_ref (request);
    request->transport->respond (request);
    if (request->paused) {
      request->paused = FALSE;
      gateway_request_unref (request);
    }
    gateway_request_unref (request);
    return;
  }
  request_cork (request, TRUE);
  if (request->paused) {
    request->paused = FALSE;
    soup_server_message_unpause (request->msg);
    gateway_request_unref (request);
  }
}

/* Whether the client said this is its last request on the connection
 * (libsoup then ends it; the answer says so, as RFC 9112 asks). */
static gboolean
request_ends_connection (SoupServerMessage *msg)
{
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
  if (soup_message_headers_header_contains (headers, "Connection", "close"))
    return TRUE;
  return soup_server_message_get_http_version (msg) == SOUP_HTTP_1_0 &&
         !soup_message_headers_header_contains (headers, "Connection", "Keep-Alive");
}

/* Status and headers every answer has. Connections are kept alive only
 * where the gateway can watch them between requests (HTTP/1.1, see
 * conn_idle_begin); other answers end their connection. */
static void
answer_head (EdgeRequest *request, guint status, const char *content_type)
{
  SoupMessageHeaders *headers = request->response_headers;
  if (request->msg == NULL) {
    request->status = status;
  } else {
    soup_server_message_set_status (request->msg, status, NULL);
    if (!gateway_keeps_alive (request->gateway) || request_ends_connection (request->msg))
      soup_message_headers_replace (headers, "Connection", "close");
  }
  if (content_type)
    soup_message_headers_replace (headers, "Content-Type", content_type);
  gateway_auth_decorate (request, content_type);
}

/* ---- answers sent as they are produced ---- */

static void
on_wrote_body_data (SoupServerMessage *msg, guint size, gpointer data)
{
  EdgeRequest *request = request_of (msg);
  if (request)
    request->stream_queued -= MIN (request->stream_queued, size);
}

static void
stream_stop_watching (EdgeRequest *request)
{
  if (request->hangup) {
    g_source_destroy (request->hangup);
    g_clear_pointer (&request->hangup, g_source_unref);
  }
}

/* While an answer streams, libsoup reads nothing and notices a client that
 * left only at its next write, which for an idle event stream may be
 * seconds away. So the socket is watched: readable means the client closed
 * (or broke the protocol: it has nothing to send during the answer). */
static gboolean
on_stream_hangup (GSocket *socket, GIOCondition condition, gpointer data)
{
  EdgeRequest *request = data;
  char byte;
  gssize n = recv (g_socket_get_fd (socket), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return G_SOURCE_CONTINUE;
  g_clear_pointer (&request->hangup, g_source_unref);
  EdgeRequestGoneFunc gone = request->gone;
  request->gone = NULL;
  request->stream_ended = TRUE;
  g_socket_shutdown (socket, TRUE, TRUE, NULL); /* libsoup's next write fails and finishes it */
  soup_server_message_unpause (request->msg);
  if (gone)
    gone (request->gone_data);
  return G_SOURCE_REMOVE;
}

void
edge_request_stream_begin (EdgeRequest *request, guint status, const char *content_type,
                           EdgeRequestGoneFunc gone, gpointer user_data)
{
  SoupServerMessage *msg = request->msg;
  SoupMessageHeaders *headers = request->response_headers;
  g_return_if_fail (!request->responded);
  answer_head (request, status, content_type);
  if (msg == NULL) {
    request->streaming = TRUE;
    request->responded = TRUE;
    request->gone = gone;
    request->gone_data = user_data;
    /* Held until the stream closes (gateway_request_stream_closed). */
    request->held = TRUE;
    if (request->paused)
      request->paused = FALSE;
    else
      gateway_request_ref (request);
    request->transport->stream_begin (request);
    return;
  }
  soup_message_headers_set_encoding (headers, SOUP_ENCODING_CHUNKED);
  soup_message_body_set_accumulate (soup_server_message_get_response_body (msg), FALSE);
  g_signal_connect (msg, "wrote-body-data", G_CALLBACK (on_wrote_body_data), NULL);
  request->streaming = TRUE;
  request->responded = TRUE;
  request->gone = gone;
  request->gone_data = user_data;
  /* The message is held (and the request with it) until it finishes. */
  request->held = TRUE;
  if (request->paused) {
    request->paused = FALSE;
    soup_server_message_unpause (msg);
  } else {
    g_object_ref (msg);
  }
  GSocket *socket = request->socket;
  if (socket) {
    request->hangup = g_socket_create_source (socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
    edge_source_quiet (request->hangup);
    g_source_set_callback (request->hangup, (GSourceFunc) (void (*) (void)) on_stream_hangup,
                           request, NULL);
    g_source_attach (request->hangup, NULL);
  }
}

void
edge_request_stream_write (EdgeRequest *request, GBytes *bytes)
{
  g_return_if_fail (request->streaming);
  if (request->stream_ended)
    return; /* the client is gone; its gone function is on its way out */
  request->stream_queued += g_bytes_get_size (bytes);
  if (request->msg == NULL) {
    request->transport->stream_write (request, bytes);
    return;
  }
  soup_message_body_append_bytes (soup_server_message_get_response_body (request->msg), bytes);
  soup_server_message_unpause (request->msg);
}

gsize
edge_request_stream_queued (EdgeRequest *request)
{
  return request->stream_queued;
}

void
edge_request_stream_end (EdgeRequest *request)
{
  g_return_if_fail (request->streaming);
  if (request->stream_ended)
    return;
  request->stream_ended = TRUE;
  request->gone = NULL;
  if (request->msg == NULL) {
    request->transport->stream_end (request);
    return;
  }
  stream_stop_watching (request);
  soup_message_body_complete (soup_server_message_get_response_body (request->msg));
  soup_server_message_unpause (request->msg);
}

static void
request_append_body (EdgeRequest *request, GBytes *bytes)
{
  if (request->msg)
    soup_message_body_append_bytes (soup_server_message_get_response_body (request->msg), bytes);
  else
    g_ptr_array_add (request->parts, g_bytes_ref (bytes));
}

void
edge_request_respond_parts (EdgeRequest *request, guint status, const char *content_type,
                            GPtrArray *parts)
{
  answer_head (request, status, content_type);
  for (guint i = 0; i < parts->len; i++)
    request_append_body (request, g_ptr_array_index (parts, i));
  request_finish_response (request);
}

void
edge_request_respond (EdgeRequest *request, guint status, const char *content_type, GBytes *body)
{
  answer_head (request, status, body ? content_type : NULL);
  if (body != NULL)
    request_append_body (request, body);
  request_finish_response (request);
}

void
edge_request_respond_json (EdgeRequest *request, guint status, JsonNode *body)
{
  gsize len;
  char *text = edge_json_to_string (body, &len);
  g_autoptr (GBytes) bytes = g_bytes_new_take (text, len);
  edge_request_respond (request, status, "application/json", bytes);
}

char *
edge_json_error (const char *code, const char *message, gsize *ret_len)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "error");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "code");
  json_builder_add_string_value (b, code);
  json_builder_set_member_name (b, "message");
  json_builder_add_string_value (b, message);
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  return edge_json_to_string (root, ret_len);
}

void
edge_request_respond_error (EdgeRequest *request, guint status, const char *code,
                            const char *format, ...)
{
  va_list args;
  g_autofree char *message = NULL;
  gsize len;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  char *text = edge_json_error (code, message, &len);
  g_autoptr (GBytes) bytes = g_bytes_new_take (text, len);
  edge_request_respond (request, status, "application/json", bytes);
}

/* ---- JSON entry point ---- */

JsonNode *
edge_json_parse (const char *data, gsize len, gsize max_bytes, GError **error)
{
  g_autoptr (JsonParser) parser = NULL;
  if (len > max_bytes) {
    g_set_error (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                 "JSON body of %zu bytes is larger than the limit of %zu", len, max_bytes);
    return NULL;
  }
  if (!g_utf8_validate_len (data, len, NULL)) {
    g_set_error (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA, "JSON is not UTF-8");
    return NULL;
  }
  /* json-glib recurses per nesting level with no limit of its own, and
   * takes what RFC 8259 refuses (raw control characters in strings, "01",
   * "\q", a second document after the first): the strict reader goes first. */
  EdgeJsonReader reader;
  edge_json_reader_init (&reader, data, len);
  if (!edge_json_reader_skip (&reader) || !edge_json_reader_finish (&reader)) {
    g_set_error (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA, "%s", reader.error);
    edge_json_reader_clear (&reader);
    return NULL;
  }
  edge_json_reader_clear (&reader);
  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, data, (gssize) len, error))
    return NULL;
  if (json_parser_get_root (parser) == NULL) {
    g_set_error (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_PARSE, "empty JSON document");
    return NULL;
  }
  return json_parser_steal_root (parser);
}

char *
edge_json_to_string (JsonNode *node, gsize *ret_len)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, node);
  return json_generator_to_data (gen, ret_len);
}

void
edge_request_respond_array (EdgeRequest *request, const char *member, GPtrArray *items,
                            EdgeJsonWriteFunc write)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, member);
  json_builder_begin_array (b);
  for (guint i = 0; i < items->len; i++)
    write (g_ptr_array_index (items, i), b);
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

void
edge_request_respond_object (EdgeRequest *request, gpointer item, EdgeJsonWriteFunc write)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  write (item, b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

void
edge_json_add_int (JsonBuilder *b, const char *name, gint64 value)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, value);
}

void
edge_json_add_string (JsonBuilder *b, const char *name, const char *value)
{
  json_builder_set_member_name (b, name);
  json_builder_add_string_value (b, value);
}

char *
edge_request_aws_region (EdgeRequest *request)
{
  const char *auth = edge_request_header (request, "Authorization");
  const char *cred = auth ? strstr (auth, "Credential=") : NULL;
  if (cred) {
    g_auto (GStrv) parts = g_strsplit_set (cred + strlen ("Credential="), "/,", 5);
    if (g_strv_length (parts) >= 3 && parts[2][0] && strlen (parts[2]) < 32)
      return g_strdup (parts[2]);
  }
  return g_strdup ("us-east-1");
}

const char *
edge_json_member_string (JsonObject *object, const char *name)
{
  JsonNode *node = object ? json_object_get_member (object, name) : NULL;
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (node);
}

JsonNode *
edge_request_json (EdgeRequest *request)
{
  g_autoptr (GError) error = NULL;
  GBytes *body = edge_request_body (request);
  gsize len;
  const char *data = g_bytes_get_data (body, &len);
  JsonNode *node = edge_json_parse (data ? data : "", len, (gsize) request->body_limit, &error);
  if (node == NULL)
    edge_request_respond_error (request, SOUP_STATUS_BAD_REQUEST, "InvalidJson",
                                "request body is not valid JSON: %s", error->message);
  return node;
}

/* ---- routes ---- */

static void
gateway_route_free (gpointer data)
{
  GatewayRoute *r = data;
  g_free (r->method);
  g_free (r->pattern);
  g_free (r->summary);
  g_free (r->tag);
  g_free (r);
}

static gboolean
gateway_add (EdgeGateway *gateway, GatewayRoute *route, GError **error)
{
  if (!edge_router_add (gateway->router, route->method, route->pattern, route, error)) {
    gateway_route_free (route);
    return FALSE;
  }
  g_ptr_array_add (gateway->routes, route);
  return TRUE;
}

gboolean
edge_gateway_add_route (EdgeGateway *gateway, const EdgeRoute *route, gpointer user_data,
                        GError **error)
{
  GatewayRoute *r = g_new0 (GatewayRoute, 1);
  g_return_val_if_fail (route->handler != NULL, FALSE);
  r->method = g_strdup (route->method);
  r->pattern = g_strdup (route->pattern);
  r->summary = g_strdup (route->summary ? route->summary : "");
  r->tag = g_strdup (route->tag ? route->tag : "default");
  r->max_body_bytes = route->max_body_bytes;
  r->errors = route->errors;
  r->admin_only = route->admin_only;
  r->handler = route->handler;
  r->user_data = user_data;
  return gateway_add (gateway, r, error);
}

gboolean
edge_gateway_add_websocket (EdgeGateway *gateway, const EdgeWsRoute *route, gpointer user_data,
                            GError **error)
{
  GatewayRoute *r = g_new0 (GatewayRoute, 1);
  g_return_val_if_fail (route->open != NULL, FALSE);
  r->method = g_strdup ("GET");
  r->pattern = g_strdup (route->pattern);
  r->summary = g_strdup (route->summary ? route->summary : "");
  r->tag = g_strdup (route->tag ? route->tag : "default");
  r->max_body_bytes = 0;
  r->ws_open = route->open;
  r->ws_accept = route->accept;
  r->user_data = user_data;
  return gateway_add (gateway, r, error);
}

void
edge_request_respond_rest_error (EdgeRequest *request, guint status, const char *type,
                                 const char *format, ...)
{
  va_list args;
  va_start (args, format);
  g_autofree char *message = g_strdup_vprintf (format, args);
  va_end (args);
  g_autoptr (GString) text = g_string_new ("{\"message\":");
  edge_json_append_string (text, message, strlen (message));
  g_string_append_c (text, '}');
  soup_message_headers_replace (request->response_headers, "X-Amzn-ErrorType", type);
  g_autoptr (GBytes) body = g_bytes_new (text->str, text->len);
  edge_request_respond (request, status, "application/json", body);
}

void
edge_request_respond_amz_error (EdgeRequest *request, guint status, const char *type,
                                const char *format, ...)
{
  va_list args;
  g_autofree char *message = NULL;
  g_autoptr (JsonBuilder) b = json_builder_new ();

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "__type");
  json_builder_add_string_value (b, type);
  json_builder_set_member_name (b, "message");
  json_builder_add_string_value (b, message);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  soup_message_headers_replace (request->response_headers, "x-amzn-ErrorType", type);
  gsize len;
  char *text = edge_json_to_string (root, &len);
  g_autoptr (GBytes) body = g_bytes_new_take (text, len);
  edge_request_respond (request, status, "application/x-amz-json-1.1", body);
}

void
edge_request_respond_amz_json (EdgeRequest *request, JsonNode *body)
{
  gsize len;
  char *text = edge_json_to_string (body, &len);
  g_autoptr (GBytes) bytes = g_bytes_new_take (text, len);
  edge_request_respond (request, SOUP_STATUS_OK, "application/x-amz-json-1.1", bytes);
}

static void
dispatch_amz_target (EdgeRequest *request, gpointer data)
{
  EdgeGateway *gateway = data;
  const char *target = edge_request_header (request, "X-Amz-Target");
  const char *dot = target ? strchr (target, '.') : NULL;
  g_autofree char *service = dot ? g_strndup (target, dot - target) : NULL;
  GatewayRoute *route = service ? g_hash_table_lookup (gateway->amz_targets, service) : NULL;

  if (route == NULL) {
    edge_request_respond_amz_error (request, SOUP_STATUS_BAD_REQUEST, "UnknownOperationException",
                                    target ? "unknown X-Amz-Target %s" : "missing X-Amz-Target%s",
                                    target ? target : "");
    return;
  }
  route->handler (request, route->user_data);
}

gboolean
edge_gateway_add_amz_target (EdgeGateway *gateway, const char *service, EdgeRouteFunc handler,
                             const char *summary, gpointer user_data, GError **error)
{
  if (g_hash_table_contains (gateway->amz_targets, service)) {
    g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_ROUTE,
                 "X-Amz-Target service %s is already registered", service);
    return FALSE;
  }
  if (g_hash_table_size (gateway->amz_targets) == 0) {
    const EdgeRoute root = { "POST", "/", dispatch_amz_target,
                             "AWS JSON APIs (X-Amz-Target selects the operation)", "aws", 0,
                             EDGE_ERRORS_AWS_JSON };
    if (!edge_gateway_add_route (gateway, &root, gateway, error))
      return FALSE;
  }
  GatewayRoute *r = g_new0 (GatewayRoute, 1);
  r->method = g_strdup ("POST");
  r->pattern = g_strdup ("/");
  r->summary = g_strdup (summary ? summary : service);
  r->tag = g_strdup ("aws");
  r->errors = EDGE_ERRORS_AWS_JSON;
  r->handler = handler;
  r->user_data = user_data;
  g_hash_table_insert (gateway->amz_targets, g_strdup (service), r);
  return TRUE;
}

void
edge_gateway_add_health_check (EdgeGateway *gateway, const char *name, EdgeHealthFunc func,
                               gpointer user_data)
{
  GatewayHealthCheck *check = g_new0 (GatewayHealthCheck, 1);
  check->name = g_strdup (name);
  check->func = func;
  check->user_data = user_data;
  g_ptr_array_add (gateway->health_checks, check);
}

static void
health_check_free (gpointer data)
{
  GatewayHealthCheck *check = data;
  g_free (check->name);
  g_free (check);
}

const char *
gateway_route_label (EdgeRequest *request)
{
  if (request->route)
    return request->route->pattern;
  return request->match == EDGE_ROUTER_METHOD_NOT_ALLOWED ? "(method not allowed)" : "(no route)";
}

static const char *
method_label (const char *method)
{
  static const char *const known[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };
  for (gsize i = 0; method && i < G_N_ELEMENTS (known); i++)
    if (g_str_equal (method, known[i]))
      return known[i];
  return "OTHER";
}

/* ---- refusing an oversized body without reading it ---- */

typedef struct {
  GIOStream *stream;
  GSocket *socket; /* nullable */
  guint8 buf[16384];
  gsize drained;
  guint timeout;
  GCancellable *cancellable;
} Refusal;

static void
refusal_done (Refusal *refusal)
{
  if (refusal->timeout)
    g_source_remove (refusal->timeout);
  g_io_stream_close_async (refusal->stream, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
  g_object_unref (refusal->stream);
  g_clear_object (&refusal->socket);
  g_object_unref (refusal->cancellable);
  g_free (refusal);
}

static gboolean
refusal_timed_out (gpointer data)
{
  Refusal *refusal = data;
  refusal->timeout = 0;
  g_cancellable_cancel (refusal->cancellable);
  return G_SOURCE_REMOVE;
}

static void
refusal_drained (GObject *source, GAsyncResult *result, gpointer data)
{
  Refusal *refusal = data;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, NULL);
  if (n <= 0 || (refusal->drained += n) >= REFUSE_DRAIN_BYTES) {
    refusal_done (refusal);
    return;
  }
  /* Discarded, not kept: reading on only lets the client see our answer
   * instead of a reset. */
  g_input_stream_read_async (g_io_stream_get_input_stream (refusal->stream), refusal->buf,
                             sizeof refusal->buf, G_PRIORITY_LOW, refusal->cancellable,
                             refusal_drained, refusal);
}

static void
refusal_written (GObject *source, GAsyncResult *result, gpointer data)
{
  Refusal *refusal = data;
  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, NULL)) {
    refusal_done (refusal);
    return;
  }
  if (refusal->socket && !G_IS_TLS_CONNECTION (refusal->stream))
    g_socket_shutdown (refusal->socket, FALSE, TRUE, NULL);
  refusal->timeout = g_timeout_add (REFUSE_DRAIN_TIMEOUT_MS, refusal_timed_out, refusal);
  g_input_stream_read_async (g_io_stream_get_input_stream (refusal->stream), refusal->buf,
                             sizeof refusal->buf, G_PRIORITY_LOW, refusal->cancellable,
                             refusal_drained, refusal);
}

static void request_log (EdgeRequest *request, guint status, gsize bytes);

/* Answers @status with a JSON error on a connection taken from libsoup, and
 * closes it: the rest of the body is never read into memory. */
static void
request_refuse (EdgeRequest *request, guint status, const char *code, const char *message)
{
  SoupServerMessage *msg = request->msg;
  gsize len;
  g_autofree char *body = edge_json_error (code, message, &len);
  g_autofree char *head = g_strdup_printf ("HTTP/1.1 %u %s\r\n"
                                           "Content-Type: application/json\r\n"
                                           "Content-Length: %zu\r\n"
                                           "Connection: close\r\n"
                                           "Server: edged/" EDGED_VERSION "\r\n\r\n",
                                           status, soup_status_get_phrase (status), len);
  GIOStream *stream;
  Refusal *refusal;

  body_deadline_clear (request);
  request->responded = TRUE;
  request->refused = TRUE;
  request_log (request, status, len);
  g_object_ref (msg);
  stream = soup_server_message_steal_connection (msg);
  g_object_unref (msg);
  if (stream == NULL)
    return;

  refusal = g_new0 (Refusal, 1);
  refusal->stream = stream;
  refusal->socket = g_object_get_data (G_OBJECT (stream), "GSocket");
  if (refusal->socket)
    g_object_ref (refusal->socket);
  refusal->cancellable = g_cancellable_new ();
  GString *response = g_string_new (head);
  g_string_append_len (response, body, len);
  gsize response_len = response->len;
  char *response_data = g_string_free (response, FALSE);
  g_object_set_data_full (G_OBJECT (stream), "edge-refusal", response_data, g_free);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (stream), response_data,
                                   response_len, G_PRIORITY_DEFAULT, refusal->cancellable,
                                   refusal_written, refusal);
}

/* A client that stops sending mid-body for gateway.header_timeout is cut
 * off, as one that never finishes its head is. Chunks only note when they
 * came (a body of megabytes comes in hundreds of them); the deadline,
 * when it comes, moves itself to header_timeout after the last one. */
static gboolean
body_timed_out (gpointer data)
{
  EdgeRequest *request = data;
  gint64 due = request->body_last_us + request->gateway->header_timeout_ms * 1000;
  if (g_get_monotonic_time () < due) {
    g_source_set_ready_time (request->body_deadline, due);
    return G_SOURCE_CONTINUE;
  }
  GSocket *socket = request->socket;
  g_hash_table_remove (request->gateway->body_deadlines, request);
  g_clear_pointer (&request->body_deadline, g_source_unref);
  edge_metrics_add (request->gateway->metrics, "edged_http_slow_clients_total", "stage=\"body\"",
                    1);
  if (socket)
    g_socket_shutdown (socket, TRUE, TRUE, NULL);
  return G_SOURCE_REMOVE;
}

static void
on_got_body (SoupServerMessage *msg, gpointer data)
{
  EdgeRequest *request = request_of (msg);
  if (request)
    body_deadline_clear (request);
}

static void
on_got_chunk (SoupServerMessage *msg, GBytes *chunk, gpointer data)
{
  EdgeRequest *request = request_of (msg);
  if (request && request->body_deadline)
    request->body_last_us = g_get_monotonic_time ();
  if (request == NULL || request->responded)
    return;
  request->body_seen += g_bytes_get_size (chunk);
  if (request->body_seen > request->body_limit) {
    g_autofree char *message = g_strdup_printf (
        "request body is larger than the limit of %" G_GINT64_FORMAT " bytes", request->body_limit);
    edge_metrics_add (request->gateway->metrics, "edged_http_body_rejected_total", "", 1);
    request_refuse (request, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "PayloadTooLarge", message);
  }
}

/* The route for @request's method and path, and the body limit that
 * follows from it. */
static void
request_match (EdgeRequest *request)
{
  EdgeGateway *gateway = request->gateway;
  GatewayRoute *route = NULL;
  request->path = g_strdup (g_uri_get_path (request->uri));
  request->match = edge_router_match (gateway->router, request->method, request->path,
                                      (gpointer *) &route, &request->params, &request->allow);
  request->route = route;
  request->body_limit = route && route->max_body_bytes > 0 ? route->max_body_bytes
                                                           : gateway->max_body_bytes;
}

static gboolean
headers_too_many (SoupMessageHeaders *headers)
{
  guint n_fields = 0;
  SoupMessageHeadersIter iter;
  const char *name, *value;
  soup_message_headers_iter_init (&iter, headers);
  while (soup_message_headers_iter_next (&iter, &name, &value))
    n_fields++;
  return n_fields > EDGE_GATEWAY_MAX_HEADER_FIELDS;
}

#define TOO_MANY_FIELDS_MESSAGE "more than " G_STRINGIFY (EDGE_GATEWAY_MAX_HEADER_FIELDS) " header fields"

static void
on_got_headers (SoupServerMessage *msg, gpointer data)
{
  EdgeGateway *gateway = data;
  EdgeRequest *request = request_of (msg);
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);

  if (request == NULL)
    return;
  Conn *conn = conn_of_request (request);
  if (conn && !conn->h2) {
    conn_clear_deadline (conn);
    request->socket = g_object_ref (conn->socket);
  }
  request->method = soup_server_message_get_method (msg);
  request->uri = soup_server_message_get_uri (msg);
  request_match (request);

  if (headers_too_many (headers)) {
    request_refuse (request, 431, "HeadersTooLarge", TOO_MANY_FIELDS_MESSAGE);
    return;
  }

  SoupEncoding encoding = soup_message_headers_get_encoding (headers);
  if (gateway->header_timeout_ms > 0 &&
      (encoding != SOUP_ENCODING_CONTENT_LENGTH ||
       soup_message_headers_get_content_length (headers) > 0) &&
      encoding != SOUP_ENCODING_NONE) {
    request->body_last_us = g_get_monotonic_time ();
    request->body_deadline =
        edge_deadline_source_new (request->body_last_us + gateway->header_timeout_ms * 1000);
    g_source_set_callback (request->body_deadline, body_timed_out, request, NULL);
    g_source_attach (request->body_deadline, NULL);
    g_hash_table_add (gateway->body_deadlines, request);
    g_signal_connect (msg, "got-chunk", G_CALLBACK (on_got_chunk), gateway);
    g_signal_connect (msg, "got-body", G_CALLBACK (on_got_body), gateway);
  }
  switch (encoding) {
  case SOUP_ENCODING_CONTENT_LENGTH: {
    goffset declared = soup_message_headers_get_content_length (headers);
    if (declared > request->body_limit) {
      g_autofree char *message = g_strdup_printf (
          "request body of %" G_GOFFSET_FORMAT " bytes is larger than the limit of %" G_GINT64_FORMAT
          " bytes",
          declared, request->body_limit);
      edge_metrics_add (gateway->metrics, "edged_http_body_rejected_total", "", 1);
      request_refuse (request, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "PayloadTooLarge", message);
    }
    break;
  }
  case SOUP_ENCODING_CHUNKED:
  case SOUP_ENCODING_EOF:
    if (request->body_deadline == NULL)
      g_signal_connect (msg, "got-chunk", G_CALLBACK (on_got_chunk), gateway);
    break;
  default:
    break;
  }
}

/* The Combined Log Format (as Apache and nginx write it), with the
 * authenticated principal as the user and the duration appended:
 *   HOST - USER [29/Nov/2026:15:36:27 +0000] "GET /p HTTP/1.1" 200 123 "REFERER" "AGENT" 0.004 */
static void
access_log (EdgeRequest *request, guint status, gsize bytes, double seconds)
{
  SoupMessageHeaders *headers = request->request_headers;
  const char *peer = edge_request_remote_host (request);
  const char *referer = soup_message_headers_get_one (headers, "Referer");
  const char *agent = soup_message_headers_get_one (headers, "User-Agent");
  const char *query = request->uri ? g_uri_get_query (request->uri) : NULL;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *when = g_date_time_format (now, "%d/%b/%Y:%H:%M:%S +0000");
  g_autoptr (GString) line = g_string_new (NULL);
  g_autofree char *user = request->principal ? g_strescape (request->principal, NULL) : NULL;
  g_autofree char *target = g_strescape (request->path ? request->path : "?", NULL);
  g_string_append_printf (line, "%s - %s [%s] \"%s %s", peer ? peer : "-", user ? user : "-", when,
                          request->method ? request->method : "-", target);
  /* The token a browser passes in the query is a credential: not logged. */
  if (query && !strstr (query, "token="))
    g_string_append_printf (line, "?%s", query);
  g_autofree char *ref = referer ? g_strescape (referer, NULL) : NULL;
  g_autofree char *ua = agent ? g_strescape (agent, NULL) : NULL;
  g_string_append_printf (line, " %s\" %u %zu \"%s\" \"%s\" %.3f",
                          edge_request_http_version (request) == SOUP_HTTP_2_0 ? "HTTP/2.0"
                                                                                : "HTTP/1.1",
                          status, bytes, ref ? ref : "-",
                          ua ? ua : "-", seconds);
  g_log ("access", G_LOG_LEVEL_INFO, "%s", line->str);
}

static void
request_log (EdgeRequest *request, guint status, gsize bytes)
{
  EdgeGateway *gateway = request->gateway;
  double seconds = (g_get_monotonic_time () - request->start_us) / 1e6;
  const char *method = method_label (request->method);
  g_autofree char *route = edge_metrics_escape_label (gateway_route_label (request));
  char code[16];
  g_snprintf (code, sizeof code, "%u", status);
  /* Put together without printf: this runs for every request. */
  g_autofree char *latency_labels = g_strconcat ("method=\"", method, "\",route=\"", route, "\"",
                                                 NULL);
  g_autofree char *labels = g_strconcat (latency_labels, ",code=\"", code, "\"", NULL);

  edge_metrics_add (gateway->metrics, "edged_http_requests_total", labels, 1);
  edge_metrics_observe (gateway->metrics, "edged_http_request_duration_seconds", latency_labels,
                        seconds);
  if (gateway->access_log)
    access_log (request, status, bytes, seconds);
}

/* A streamed answer is over, however it ended: its producer hears of a
 * client gone (once, if it had not ended it), and stream_begin's hold on
 * the request is let go. */
static void
request_stream_over (EdgeRequest *request)
{
  EdgeRequestGoneFunc gone = request->gone;
  request->gone = NULL;
  request->stream_ended = TRUE;
  if (gone)
    gone (request->gone_data);
  if (request->held) {
    request->held = FALSE;
    gateway_request_unref (request);
  }
}

static void
on_finished (SoupServerMessage *msg, gpointer data)
{
  EdgeRequest *request = request_of (msg);
  guint status = soup_server_message_get_status (msg);
  if (request == NULL)
    return;
  request_cork (request, FALSE);
  if (status == SOUP_STATUS_SWITCHING_PROTOCOLS)
    return;
  if (request->refused) /* logged when refused */
    return;
  if (request->method == NULL) { /* libsoup refused its head itself */
    request->method = soup_server_message_get_method (msg);
    request->uri = soup_server_message_get_uri (msg);
  }
  request_log (request, status,
               (gsize) soup_server_message_get_response_body (msg)->length);
  if (request->streaming) {
    stream_stop_watching (request);
    request_stream_over (request); /* the emission holds a reference of its own */
  }
}

static void
on_request_started (SoupServer *server, SoupServerMessage *msg, gpointer data)
{
  EdgeGateway *gateway = data;
  EdgeRequest *request = g_new0 (EdgeRequest, 1);
  request->gateway = gateway;
  request->msg = msg;
  request->request_headers = soup_server_message_get_request_headers (msg);
  request->response_headers = soup_server_message_get_response_headers (msg);
  request->peer = message_peer_key (msg);
  /* A request that was already in libsoup's buffer (pipelined) starts
   * without the idle watch seeing it. */
  Conn *conn = conn_of_request (request);
  if (conn)
    conn_idle_end (conn);
  request->start_us = g_get_monotonic_time ();
  request->body_limit = gateway->max_body_bytes;
  g_object_set_data_full (G_OBJECT (msg), REQUEST_KEY, request, request_free);
  g_signal_connect (msg, "got-headers", G_CALLBACK (on_got_headers), gateway);
  g_signal_connect (msg, "finished", G_CALLBACK (on_finished), gateway);
}

/* After every "finished" handler of a message answered whole (a request
 * that failed is "request-aborted", and its connection ends): an
 * HTTP/1.1 connection that libsoup may keep is watched until its next
 * request. The watch holds the message, so the bodies go now, as they
 * would have with the message; only its headers stay. */
static void
on_request_finished (SoupServer *server, SoupServerMessage *msg, gpointer data)
{
  EdgeGateway *gateway = data;
  EdgeRequest *request = request_of (msg);
  if (!gateway_keeps_alive (gateway) || request == NULL || request->refused ||
      soup_server_message_get_status (msg) == SOUP_STATUS_SWITCHING_PROTOCOLS)
    return;
  Conn *conn = conn_of_request (request);
  if (conn == NULL || conn->h2)
    return;
  soup_message_body_truncate (soup_server_message_get_request_body (msg));
  soup_message_body_truncate (soup_server_message_get_response_body (msg));
  g_object_set_data (G_OBJECT (msg), "edge-body", NULL);
  conn_idle_begin (conn, msg);
}

/* Past authentication (so that strangers learn nothing of which routes
 * exist): the route's handler, its WebSocket upgrade, or 404 and 405. */
static void
dispatch_route (EdgeRequest *request)
{
  const char *method = edge_request_method (request);
  switch (request->match) {
  case EDGE_ROUTER_NOT_FOUND:
    edge_request_respond_error (request, SOUP_STATUS_NOT_FOUND, "NotFound", "no route for %s %s",
                                method, request->path);
    return;
  case EDGE_ROUTER_METHOD_NOT_ALLOWED:
    soup_message_headers_replace (request->response_headers, "Allow", request->allow);
    edge_request_respond_error (request, SOUP_STATUS_METHOD_NOT_ALLOWED, "MethodNotAllowed",
                                "%s is not allowed on %s (allowed: %s)", method, request->path,
                                request->allow);
    return;
  case EDGE_ROUTER_FOUND:
    break;
  }
  if (request->route->ws_open != NULL) {
    if (request->msg == NULL)
      edge_request_respond_error (request, SOUP_STATUS_BAD_REQUEST, "WebSocketRequired",
                                  "%s is a WebSocket endpoint, served over HTTP/1.1",
                                  request->path);
    else
      gateway_ws_upgrade (request->gateway, request);
    return;
  }
  request->route->handler (request, request->route->user_data);
  if (!request->responded && !request->paused) {
    g_critical ("handler for %s %s returned without responding", method, request->route->pattern);
    edge_request_respond_error (request, SOUP_STATUS_INTERNAL_SERVER_ERROR, "InternalError",
                                "the handler did not respond");
  }
}

static void
dispatch (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
          gpointer data)
{
  EdgeRequest *request = request_of (msg);

  if (request == NULL || request->responded)
    return;
  if (gateway_auth_preflight (request))
    return;
  gateway_auth_check (request, dispatch_route);
}

/* ---- requests the gateway read itself (gateway-h2.c, gateway-http1.c) ---- */

EdgeRequest *
gateway_request_new (EdgeGateway *gateway, const GatewayTransport *transport, gpointer link,
                     const char *method, GUri *uri, SoupMessageHeaders *headers,
                     const char *remote_host)
{
  EdgeRequest *request = g_new0 (EdgeRequest, 1);
  request->gateway = gateway;
  request->transport = transport;
  request->link = link;
  request->refs = 1;
  request->method = g_strdup (method);
  request->uri = g_uri_ref (uri);
  request->request_headers = soup_message_headers_ref (headers);
  request->response_headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_RESPONSE);
  request->remote_host = g_strdup (remote_host);
  request->parts = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  request->start_us = g_get_monotonic_time ();
  request->body_limit = gateway->max_body_bytes;
  return request;
}

void
gateway_request_set_body (EdgeRequest *request, GBytes *body)
{
  g_clear_pointer (&request->body, g_bytes_unref);
  request->body = g_bytes_ref (body);
}

void
gateway_request_match (EdgeRequest *request)
{
  if (request->path == NULL)
    request_match (request);
}

gboolean
gateway_request_too_many_fields (EdgeRequest *request)
{
  return headers_too_many (request->request_headers);
}

/* The checks libsoup's requests pass as their head and body come
 * (on_got_headers), on a request that came whole; then authentication and
 * the route. */
void
gateway_request_start (EdgeRequest *request)
{
  EdgeGateway *gateway = request->gateway;
  gateway_request_match (request);
  /* Answers may come, and the transport be done with the request, before
   * the handler returns. */
  gateway_request_ref (request);
  if (headers_too_many (request->request_headers)) {
    edge_request_respond_error (request, 431, "HeadersTooLarge", TOO_MANY_FIELDS_MESSAGE);
  } else if ((gint64) g_bytes_get_size (request->body) > request->body_limit) {
    edge_metrics_add (gateway->metrics, "edged_http_body_rejected_total", "", 1);
    edge_request_respond_error (request, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "PayloadTooLarge",
                                "request body of %zu bytes is larger than the limit of "
                                "%" G_GINT64_FORMAT " bytes",
                                g_bytes_get_size (request->body), request->body_limit);
  } else if (!gateway_auth_preflight (request)) {
    gateway_auth_check (request, dispatch_route);
  }
  gateway_request_unref (request);
}

void
gateway_request_done (EdgeRequest *request)
{
  if (request->responded) {
    gsize bytes = 0;
    for (guint i = 0; i < request->parts->len; i++)
      bytes += g_bytes_get_size (g_ptr_array_index (request->parts, i));
    request_log (request, request->status, bytes);
  }
  if (request->streaming)
    request_stream_over (request);
  gateway_request_unref (request);
}

const char *
gateway_http_date (void)
{
  static char text[64];
  static gint64 made_s = -1;
  gint64 now_s = g_get_real_time () / G_USEC_PER_SEC;
  if (now_s != made_s) {
    g_autoptr (GDateTime) now = g_date_time_new_from_unix_utc (now_s);
    g_autofree char *date = soup_date_time_to_string (now, SOUP_DATE_HTTP);
    g_strlcpy (text, date, sizeof text);
    made_s = now_s;
  }
  return text;
}

GUri *
gateway_uri_decoded (GUri *uri)
{
  g_autofree char *path = g_uri_unescape_string (g_uri_get_path (uri), NULL);
  if (path == NULL || strstr (path, "/../") || g_str_has_suffix (path, "/.."))
    return NULL;
  return soup_uri_copy (uri, SOUP_URI_PATH, path, SOUP_URI_NONE);
}

static void hand_to_soup (EdgeGateway *gateway, GIOStream *stream, GSocketConnection *connection);

void
gateway_conn_to_soup (EdgeGateway *gateway, Conn *conn, GSocketConnection *connection)
{
  /* Its next request's head must come in time, as a new connection's. */
  conn_arm_deadline (conn);
  hand_to_soup (gateway, G_IO_STREAM (connection), connection);
}

/* ---- connections ---- */

typedef struct {
  EdgeGateway *gateway;
  GSocketConnection *connection;
  GCancellable *cancellable;
  guint timeout;
} Handshake;

static void
client_release (EdgeGateway *gateway, const char *client)
{
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (gateway->per_client, client));
  if (n <= 1)
    g_hash_table_remove (gateway->per_client, client);
  else
    g_hash_table_insert (gateway->per_client, g_strdup (client), GUINT_TO_POINTER (n - 1));
}

static void
connection_gone (gpointer data, GObject *where_the_object_was)
{
  EdgeGateway *gateway = data;
  Conn *conn = g_hash_table_lookup (gateway->streams, where_the_object_was);
  if (conn) {
    client_release (gateway, conn->client);
    g_hash_table_remove (gateway->conns, conn->peer);
  }
  g_hash_table_remove (gateway->streams, where_the_object_was); /* frees @conn */
  gateway->connections--;
  edge_metrics_set (gateway->metrics, "edged_http_connections", "", gateway->connections);
}

static void
hand_to_soup (EdgeGateway *gateway, GIOStream *stream, GSocketConnection *connection)
{
  g_autoptr (GSocketAddress) local = g_socket_connection_get_local_address (connection, NULL);
  g_autoptr (GSocketAddress) remote = g_socket_connection_get_remote_address (connection, NULL);
  g_object_set_data_full (G_OBJECT (stream), "GSocket",
                          g_object_ref (g_socket_connection_get_socket (connection)),
                          g_object_unref);
  soup_server_accept_iostream (gateway->server, stream, local, remote, NULL);
}

static gboolean
handshake_timed_out (gpointer data)
{
  Handshake *hs = data;
  hs->timeout = 0;
  g_cancellable_cancel (hs->cancellable);
  return G_SOURCE_REMOVE;
}

static void
handshake_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Handshake *hs = data;
  g_autoptr (GError) error = NULL;
  GTlsConnection *tls = G_TLS_CONNECTION (source);

  if (hs->timeout)
    g_source_remove (hs->timeout);
  if (g_tls_connection_handshake_finish (tls, result, &error))
    hand_to_soup (hs->gateway, G_IO_STREAM (tls), hs->connection);
  else
    g_debug ("TLS handshake failed: %s", error->message);
  g_object_unref (tls);
  g_object_unref (hs->connection);
  g_object_unref (hs->cancellable);
  g_free (hs);
}

/* ---- HTTP/2 or HTTP/1.1: a look at the first bytes ---- */

#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24
/* How long a client may take to send enough to tell (then libsoup decides). */
#define SNIFF_TIMEOUT_US (10 * G_USEC_PER_SEC)

typedef struct {
  EdgeGateway *gateway;
  GSocketConnection *connection;
  GCancellable *cancellable; /* the gateway's: cancelled when it stops */
  gint64 deadline_us;
} Sniff;

static void sniff_wait (Sniff *sniff);

static void
sniff_free (Sniff *sniff)
{
  g_object_unref (sniff->connection);
  g_object_unref (sniff->cancellable);
  g_free (sniff);
}

/* Looks without reading: HTTP/2's preface goes to nghttp2, anything else
 * (an HTTP/1.1 request line, nothing, garbage) to libsoup. */
static gboolean
sniff_check (Sniff *sniff)
{
  char head[H2_PREFACE_LEN];
  GSocket *socket = g_socket_connection_get_socket (sniff->connection);

  if (g_cancellable_is_cancelled (sniff->cancellable)) {
    sniff_free (sniff);
    return G_SOURCE_REMOVE;
  }
  gssize n = recv (g_socket_get_fd (socket), head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    sniff_wait (sniff);
    return G_SOURCE_REMOVE;
  }
  gboolean h2 = n > 0 && memcmp (head, H2_PREFACE, (gsize) n) == 0;
  if (h2 && n < H2_PREFACE_LEN && g_get_monotonic_time () < sniff->deadline_us) {
    /* Part of the preface: look again shortly (the socket stays readable,
     * so waiting on it would spin). */
    GSource *timer = g_timeout_source_new (5);
    g_source_set_callback (timer, (GSourceFunc) sniff_check, sniff, NULL);
    g_source_attach (timer, NULL);
    g_source_unref (timer);
    return G_SOURCE_REMOVE;
  }
  if (h2 && n == H2_PREFACE_LEN)
    gateway_conn_speaks_h2 (sniff->gateway, sniff->connection);
  Conn *conn = g_hash_table_lookup (sniff->gateway->streams, sniff->connection);
  if (h2 && n == H2_PREFACE_LEN)
    gateway_h2_serve (sniff->gateway, sniff->connection);
  else if (conn && n > 0)
    gateway_h1_serve (sniff->gateway, conn, sniff->connection);
  else /* nothing yet but the end, or an error: libsoup's to end */
    hand_to_soup (sniff->gateway, G_IO_STREAM (sniff->connection), sniff->connection);
  sniff_free (sniff);
  return G_SOURCE_REMOVE;
}

static gboolean
sniff_readable (GSocket *socket, GIOCondition condition, gpointer data)
{
  return sniff_check (data);
}

static void
sniff_wait (Sniff *sniff)
{
  GSocket *socket = g_socket_connection_get_socket (sniff->connection);
  gint64 left = sniff->deadline_us - g_get_monotonic_time ();
  GSource *source = g_socket_create_source (socket, G_IO_IN | G_IO_HUP | G_IO_ERR,
                                            sniff->cancellable);
  g_source_set_ready_time (source, g_get_monotonic_time () + MAX (left, 0));
  g_source_set_callback (source, (GSourceFunc) (void (*) (void)) sniff_readable, sniff, NULL);
  g_source_attach (source, NULL);
  g_source_unref (source);
}

static void
client_hold (EdgeGateway *gateway, const char *client, guint open_before)
{
  g_hash_table_insert (gateway->per_client, g_strdup (client), GUINT_TO_POINTER (open_before + 1));
}

/* The peer's address, without its port: what per-client limits count. */
static char *
client_of (GSocketConnection *connection)
{
  g_autoptr (GSocketAddress) remote = g_socket_connection_get_remote_address (connection, NULL);
  if (remote == NULL || !G_IS_INET_SOCKET_ADDRESS (remote))
    return g_strdup ("?");
  return g_inet_address_to_string (
      g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (remote)));
}

static gboolean
on_incoming (GSocketService *service, GSocketConnection *connection, GObject *source, gpointer data)
{
  EdgeGateway *gateway = data;
  GSocket *socket = g_socket_connection_get_socket (connection);
  GIOStream *stream;

  g_autofree char *client = client_of (connection);
  guint from_client = GPOINTER_TO_UINT (g_hash_table_lookup (gateway->per_client, client));

  if (gateway->connections >= (guint) gateway->max_connections &&
      !gateway_close_idle (gateway, NULL)) {
    edge_metrics_add (gateway->metrics, "edged_http_connections_rejected_total",
                      "reason=\"total\"", 1);
    g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
    return TRUE;
  }
  if (from_client >= (guint) gateway->max_connections_per_client &&
      !gateway_close_idle (gateway, client)) {
    edge_metrics_add (gateway->metrics, "edged_http_connections_rejected_total",
                      "reason=\"per_client\"", 1);
    g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
    return TRUE;
  }
  /* Again: an idle connection of this client's may have given way. */
  from_client = GPOINTER_TO_UINT (g_hash_table_lookup (gateway->per_client, client));
  g_socket_set_option (socket, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  g_autoptr (GSocketAddress) remote = g_socket_connection_get_remote_address (connection, NULL);
  Conn *conn = g_new0 (Conn, 1);
  conn->gateway = gateway;
  conn->client = g_strdup (client);
  conn->peer = peer_key (remote);
  conn->socket = g_object_ref (socket);
  if (conn->peer == NULL)
    conn->peer = g_strdup_printf ("?%p", (void *) conn);
  conn_arm_deadline (conn);

  if (gateway->tls_certificate == NULL) {
    stream = G_IO_STREAM (connection);
    g_object_weak_ref (G_OBJECT (stream), connection_gone, gateway);
    g_hash_table_insert (gateway->streams, stream, conn);
    g_hash_table_replace (gateway->conns, conn->peer, conn);
    gateway->connections++;
    edge_metrics_set (gateway->metrics, "edged_http_connections", "", gateway->connections);
    client_hold (gateway, client, from_client);
    Sniff *sniff = g_new0 (Sniff, 1);
    sniff->gateway = gateway;
    sniff->connection = g_object_ref (connection);
    sniff->cancellable = g_object_ref (gateway->cancellable);
    sniff->deadline_us = g_get_monotonic_time () + SNIFF_TIMEOUT_US;
    sniff_check (sniff);
  } else {
    g_autoptr (GError) error = NULL;
    Handshake *hs;
    stream = g_tls_server_connection_new (G_IO_STREAM (connection), gateway->tls_certificate,
                                          &error);
    if (stream == NULL) {
      g_warning ("TLS: %s", error->message);
      conn_free (conn);
      return TRUE;
    }
    g_object_weak_ref (G_OBJECT (stream), connection_gone, gateway);
    g_hash_table_insert (gateway->streams, stream, conn);
    g_hash_table_replace (gateway->conns, conn->peer, conn);
    gateway->connections++;
    edge_metrics_set (gateway->metrics, "edged_http_connections", "", gateway->connections);
    client_hold (gateway, client, from_client);
    hs = g_new0 (Handshake, 1);
    hs->gateway = gateway;
    hs->connection = g_object_ref (connection);
    hs->cancellable = g_cancellable_new ();
    hs->timeout = g_timeout_add_seconds (TLS_HANDSHAKE_TIMEOUT_S, handshake_timed_out, hs);
    g_tls_connection_handshake_async (G_TLS_CONNECTION (stream), G_PRIORITY_DEFAULT,
                                      hs->cancellable, handshake_done, hs);
  }
  return TRUE;
}

/* ---- lifecycle ---- */

static void
declare_metrics (EdgeMetrics *metrics)
{
  edge_metrics_declare (metrics, "edged_http_requests_total", EDGE_METRIC_COUNTER,
                        "HTTP requests answered, by method, route pattern and status code.", NULL,
                        0);
  edge_metrics_declare (metrics, "edged_http_request_duration_seconds", EDGE_METRIC_HISTOGRAM,
                        "Time from the first header byte to the response, by method and route.",
                        latency_buckets, G_N_ELEMENTS (latency_buckets));
  edge_metrics_declare (metrics, "edged_http_connections", EDGE_METRIC_GAUGE,
                        "Open client connections.", NULL, 0);
  edge_metrics_declare (metrics, "edged_http_connections_rejected_total", EDGE_METRIC_COUNTER,
                        "Connections closed at once: gateway.max_connections were open (total), or "
                        "gateway.max_connections_per_client from its address (per_client).",
                        NULL, 0);
  edge_metrics_declare (metrics, "edged_http_slow_clients_total", EDGE_METRIC_COUNTER,
                        "Connections closed for going gateway.header_timeout without sending "
                        "their request's head (stage head) or more of its body (stage body).",
                        NULL, 0);
  edge_metrics_declare (metrics, "edged_http_body_rejected_total", EDGE_METRIC_COUNTER,
                        "Requests refused with 413 because of their body size.", NULL, 0);
  edge_metrics_declare (metrics, "edged_ws_peers", EDGE_METRIC_GAUGE,
                        "Open WebSocket connections.", NULL, 0);
  edge_metrics_declare (metrics, "edged_ws_messages_dropped_total", EDGE_METRIC_COUNTER,
                        "WebSocket messages not sent because the client's queue was full.", NULL, 0);
  edge_metrics_declare (metrics, "edged_ws_peers_closed_slow_total", EDGE_METRIC_COUNTER,
                        "WebSocket clients disconnected for reading too slowly.", NULL, 0);
}

EdgeGateway *
edge_gateway_new (const EdgeGatewayOptions *options, GError **error)
{
  g_autoptr (EdgeGateway) gateway = g_new0 (EdgeGateway, 1);
  g_autoptr (GError) parse_error = NULL;

  g_return_val_if_fail (options->metrics != NULL, NULL);
  gateway->listen = g_strdup (options->listen);
  gateway->tls_cert_file = g_strdup (options->tls_cert_file);
  gateway->tls_key_file = g_strdup (options->tls_key_file);
  gateway->web_root = options->web_root && options->web_root[0] ? g_strdup (options->web_root) : NULL;
  gateway->max_body_bytes = options->max_body_bytes;
  gateway->max_connections = options->max_connections > 0 ? options->max_connections : 1024;
  gateway->access_log = options->access_log;
  gateway->ws_max_buffered_bytes = options->ws_max_buffered_bytes;
  gateway->ws_max_message_bytes = options->ws_max_message_bytes;
  gateway->ws_stall_timeout_ms = options->ws_stall_timeout_ms;
  gateway->metrics = options->metrics;
  gateway->max_connections_per_client = options->max_connections_per_client > 0
                                            ? options->max_connections_per_client
                                            : gateway->max_connections;
  gateway->header_timeout_ms = options->header_timeout_ms;
  gateway->keepalive_timeout_ms = options->keepalive_timeout_ms;
  gateway->per_client = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gateway->body_deadlines = g_hash_table_new (NULL, NULL);
  gateway->router = edge_router_new ();
  gateway->routes = g_ptr_array_new_with_free_func (gateway_route_free);
  gateway->health_checks = g_ptr_array_new_with_free_func (health_check_free);
  gateway->peers = g_hash_table_new (NULL, NULL);
  gateway->streams = g_hash_table_new_full (NULL, NULL, NULL, conn_free);
  gateway->conns = g_hash_table_new (g_str_hash, g_str_equal);
  gateway->h2_conns = g_ptr_array_new ();
  gateway->amz_targets = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                gateway_route_free);
  gateway->cancellable = g_cancellable_new ();

  if (!edge_config_parse_listen (gateway->listen, &gateway->host, &gateway->port, &parse_error)) {
    g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_LISTEN, "gateway.listen: %s",
                 parse_error->message);
    return NULL;
  }

  if (gateway->tls_cert_file && gateway->tls_cert_file[0]) {
    g_autoptr (GError) tls_error = NULL;
    if (!g_tls_backend_supports_tls (g_tls_backend_get_default ())) {
      g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_TLS,
                   "gateway.tls: this GLib has no TLS backend (install glib-networking)");
      return NULL;
    }
    gateway->tls_certificate = g_tls_certificate_new_from_files (
        gateway->tls_cert_file, gateway->tls_key_file, &tls_error);
    if (gateway->tls_certificate == NULL) {
      g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_TLS,
                   "gateway.tls: cannot use certificate %s with key %s: %s", gateway->tls_cert_file,
                   gateway->tls_key_file, tls_error->message);
      return NULL;
    }
  }

  gateway->server = g_object_new (SOUP_TYPE_SERVER, "server-header", "edged/" EDGED_VERSION,
                                  NULL);
  g_signal_connect (gateway->server, "request-started", G_CALLBACK (on_request_started), gateway);
  g_signal_connect (gateway->server, "request-finished", G_CALLBACK (on_request_finished), gateway);
  soup_server_add_handler (gateway->server, NULL, dispatch, gateway, NULL);
  declare_metrics (gateway->metrics);
  if (options->config) {
    gateway->auth = gateway_auth_new (gateway, options->config, options->state, error);
    if (gateway->auth == NULL)
      return NULL;
    gateway_auth_register (gateway->auth);
  }
  gateway_builtin_register (gateway);
  return g_steal_pointer (&gateway);
}

/* libsoup 3.2 keeps a connection alive after an answer only if its server
 * has a listener of its own. The gateway accepts connections itself (for
 * its limits), so it gives libsoup one that nobody can reach: a Unix socket
 * whose name is gone as soon as it listens. */
static gboolean
unreachable_listener (EdgeGateway *gateway, GError **error)
{
  g_autofree char *dir = g_dir_make_tmp ("edged-XXXXXX", error);
  if (dir == NULL)
    return FALSE;
  g_autofree char *path = g_build_filename (dir, "l", NULL);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int fd = -1;
  gboolean ok = strlen (path) < sizeof addr.sun_path;
  if (ok) {
    memcpy (addr.sun_path, path, strlen (path) + 1);
    fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ok = fd >= 0 && bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0 && listen (fd, 1) == 0;
  } else {
    errno = ENAMETOOLONG;
  }
  int saved = errno;
  unlink (path);
  g_rmdir (dir);
  if (!ok) {
    g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_LISTEN,
                 "cannot make libsoup's listener in %s: %s (set TMPDIR to a short, writable "
                 "directory, or gateway.keepalive_timeout to 0s)",
                 dir, g_strerror (saved));
    if (fd >= 0)
      close (fd);
    return FALSE;
  }
  g_autoptr (GSocket) socket = g_socket_new_from_fd (fd, error);
  if (socket == NULL) {
    close (fd);
    return FALSE;
  }
  return soup_server_listen_socket (gateway->server, socket, 0, error);
}

gboolean
edge_gateway_start (EdgeGateway *gateway, GError **error)
{
  g_autoptr (GError) listen_error = NULL;
  g_autoptr (GSocketAddress) address = NULL;
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GInetAddress) inet = g_inet_address_new_from_string (gateway->host);

  if (inet == NULL) {
    /* A name: resolve it once, now (only "localhost" and the like make sense). */
    GResolver *resolver = g_resolver_get_default ();
    GList *addresses = g_resolver_lookup_by_name (resolver, gateway->host, NULL, &listen_error);
    g_object_unref (resolver);
    if (addresses == NULL) {
      g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_LISTEN,
                   "cannot listen on %s: %s", gateway->listen, listen_error->message);
      return FALSE;
    }
    inet = g_object_ref (addresses->data);
    g_resolver_free_addresses (addresses);
  }
  address = g_inet_socket_address_new (inet, gateway->port);
  gateway->service = g_socket_service_new ();
  g_socket_listener_set_backlog (G_SOCKET_LISTENER (gateway->service), EDGE_GATEWAY_LISTEN_BACKLOG);
  if (!g_socket_listener_add_address (G_SOCKET_LISTENER (gateway->service), address,
                                      G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, &bound,
                                      &listen_error)) {
    g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_LISTEN, "cannot listen on %s: %s",
                 gateway->listen, listen_error->message);
    g_clear_object (&gateway->service);
    return FALSE;
  }
  gateway->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  if (gateway_keeps_alive (gateway) && !unreachable_listener (gateway, error)) {
    g_socket_service_stop (gateway->service);
    g_socket_listener_close (G_SOCKET_LISTENER (gateway->service));
    g_clear_object (&gateway->service);
    return FALSE;
  }
  g_signal_connect (gateway->service, "incoming", G_CALLBACK (on_incoming), gateway);
  g_socket_service_start (gateway->service);
  gateway_ws_start (gateway);
  return TRUE;
}

guint16
edge_gateway_port (EdgeGateway *gateway)
{
  return gateway->port;
}

char *
edge_gateway_url (EdgeGateway *gateway)
{
  const char *scheme = gateway->tls_certificate ? "https" : "http";
  const char *host = gateway->host;
  /* A wildcard address is not somewhere to point a browser. */
  if (g_str_equal (host, "0.0.0.0"))
    host = "127.0.0.1";
  else if (g_str_equal (host, "::"))
    host = "::1";
  if (strchr (host, ':'))
    return g_strdup_printf ("%s://[%s]:%u", scheme, host, gateway->port);
  return g_strdup_printf ("%s://%s:%u", scheme, host, gateway->port);
}

void
edge_gateway_free (EdgeGateway *gateway)
{
  if (gateway == NULL)
    return;
  if (gateway->service) {
    g_socket_service_stop (gateway->service);
    g_socket_listener_close (G_SOCKET_LISTENER (gateway->service));
    g_signal_handlers_disconnect_by_data (gateway->service, gateway);
    g_clear_object (&gateway->service);
  }
  gateway_ws_stop (gateway);
  if (gateway->streams) {
    /* The connections served here end now: gathered first, since each
     * leaves the table as it ends. */
    g_autoptr (GPtrArray) h1 = g_ptr_array_new ();
    GHashTableIter iter;
    gpointer value;
    g_hash_table_iter_init (&iter, gateway->streams);
    while (g_hash_table_iter_next (&iter, NULL, &value))
      if (((Conn *) value)->h1)
        g_ptr_array_add (h1, ((Conn *) value)->h1);
    for (guint i = 0; i < h1->len; i++)
      gateway_h1_close (g_ptr_array_index (h1, i));
  }
  if (gateway->h2_conns) {
    gateway_h2_stop (gateway);
    g_clear_pointer (&gateway->h2_conns, g_ptr_array_unref);
  }
  if (gateway->cancellable) {
    g_cancellable_cancel (gateway->cancellable);
    g_clear_object (&gateway->cancellable);
  }
  if (gateway->server) {
    soup_server_disconnect (gateway->server);
    g_clear_object (&gateway->server);
  }
  g_clear_pointer (&gateway->peers, g_hash_table_unref);
  g_clear_pointer (&gateway->amz_targets, g_hash_table_unref);
  if (gateway->streams) {
    /* Connections libsoup has not let go of yet must not call back into us. */
    GHashTableIter iter;
    gpointer stream;
    g_hash_table_iter_init (&iter, gateway->streams);
    while (g_hash_table_iter_next (&iter, &stream, NULL))
      g_object_weak_unref (stream, connection_gone, gateway);
    g_clear_pointer (&gateway->conns, g_hash_table_unref);
    g_clear_pointer (&gateway->streams, g_hash_table_unref);
  }
  g_clear_pointer (&gateway->auth, gateway_auth_free);
  g_clear_pointer (&gateway->per_client, g_hash_table_unref);
  if (gateway->body_deadlines) {
    /* Requests libsoup still holds: their deadlines go with the gateway. */
    GHashTableIter iter;
    gpointer request;
    g_hash_table_iter_init (&iter, gateway->body_deadlines);
    while (g_hash_table_iter_next (&iter, &request, NULL)) {
      EdgeRequest *r = request;
      g_source_destroy (r->body_deadline);
      g_clear_pointer (&r->body_deadline, g_source_unref);
    }
    g_clear_pointer (&gateway->body_deadlines, g_hash_table_unref);
  }
  g_clear_object (&gateway->tls_certificate);
  g_clear_pointer (&gateway->router, edge_router_free);
  g_clear_pointer (&gateway->routes, g_ptr_array_unref);
  g_clear_pointer (&gateway->health_checks, g_ptr_array_unref);
  g_free (gateway->listen);
  g_free (gateway->host);
  g_free (gateway->tls_cert_file);
  g_free (gateway->tls_key_file);
  g_free (gateway->web_root);
  g_free (gateway);
}
