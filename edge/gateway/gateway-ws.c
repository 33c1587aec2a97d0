/* gateway-ws.c: WebSocket endpoints with back-pressure.
 *
 * libsoup's SoupWebsocketConnection queues every message it is given and
 * says nothing about how much is still queued, so a client that reads slower
 * than a camera produces would grow our memory without bound. We therefore
 * put a counting output stream between the connection and the socket:
 *
 *     SoupWebsocketConnection --frames--> CountingOutput --bytes--> socket
 *          ^ queued += frame size              | written += bytes
 *
 * buffered = queued - written is what still sits in libsoup's queue; a send
 * that would take it past gateway.websocket.max_buffered_bytes is refused
 * (EDGE_WS_DROPPED) and the producer decides what to skip. A client whose
 * queue does not move for the stall timeout is cut off: its socket is shut
 * down (a close frame could never get past the full queue).
 */
#define G_LOG_DOMAIN "gateway"

#include "gateway-private.h"

#include <gio/gio.h>

/* ---- a GIOStream whose output counts the bytes the socket accepted ---- */

#define COUNTING_TYPE_OUTPUT (counting_output_get_type ())
G_DECLARE_FINAL_TYPE (CountingOutput, counting_output, COUNTING, OUTPUT, GOutputStream)

struct _CountingOutput {
  GOutputStream parent;
  GOutputStream *base;
  guint64 written;
};

static void counting_output_pollable_init (GPollableOutputStreamInterface *iface);
G_DEFINE_TYPE_WITH_CODE (CountingOutput, counting_output, G_TYPE_OUTPUT_STREAM,
                         G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_OUTPUT_STREAM,
                                                counting_output_pollable_init))

static gssize
counting_output_write (GOutputStream *stream, const void *buffer, gsize count,
                       GCancellable *cancellable, GError **error)
{
  CountingOutput *self = COUNTING_OUTPUT (stream);
  gssize n = g_output_stream_write (self->base, buffer, count, cancellable, error);
  if (n > 0)
    self->written += n;
  return n;
}

static gboolean
counting_output_close (GOutputStream *stream, GCancellable *cancellable, GError **error)
{
  return TRUE; /* the base stream is closed with the GIOStream */
}

static gboolean
counting_output_can_poll (GPollableOutputStream *stream)
{
  return TRUE;
}

static gboolean
counting_output_is_writable (GPollableOutputStream *stream)
{
  return g_pollable_output_stream_is_writable (
      G_POLLABLE_OUTPUT_STREAM (COUNTING_OUTPUT (stream)->base));
}

static GSource *
counting_output_create_source (GPollableOutputStream *stream, GCancellable *cancellable)
{
  CountingOutput *self = COUNTING_OUTPUT (stream);
  g_autoptr (GSource) base =
      g_pollable_output_stream_create_source (G_POLLABLE_OUTPUT_STREAM (self->base), cancellable);
  return g_pollable_source_new_full (stream, base, cancellable);
}

static gssize
counting_output_write_nonblocking (GPollableOutputStream *stream, const void *buffer, gsize count,
                                   GError **error)
{
  CountingOutput *self = COUNTING_OUTPUT (stream);
  gssize n = g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (self->base),
                                                         buffer, count, NULL, error);
  if (n > 0)
    self->written += n;
  return n;
}

static void
counting_output_finalize (GObject *object)
{
  g_clear_object (&COUNTING_OUTPUT (object)->base);
  G_OBJECT_CLASS (counting_output_parent_class)->finalize (object);
}

static void
counting_output_class_init (CountingOutputClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = counting_output_finalize;
  G_OUTPUT_STREAM_CLASS (klass)->write_fn = counting_output_write;
  G_OUTPUT_STREAM_CLASS (klass)->close_fn = counting_output_close;
}

static void
counting_output_pollable_init (GPollableOutputStreamInterface *iface)
{
  iface->can_poll = counting_output_can_poll;
  iface->is_writable = counting_output_is_writable;
  iface->create_source = counting_output_create_source;
  iface->write_nonblocking = counting_output_write_nonblocking;
}

static void
counting_output_init (CountingOutput *self)
{
}

#define COUNTING_TYPE_IO_STREAM (counting_io_stream_get_type ())
G_DECLARE_FINAL_TYPE (CountingIOStream, counting_io_stream, COUNTING, IO_STREAM, GIOStream)

struct _CountingIOStream {
  GIOStream parent;
  GIOStream *base;
  CountingOutput *output;
};

G_DEFINE_TYPE (CountingIOStream, counting_io_stream, G_TYPE_IO_STREAM)

static GInputStream *
counting_io_stream_get_input (GIOStream *stream)
{
  return g_io_stream_get_input_stream (COUNTING_IO_STREAM (stream)->base);
}

static GOutputStream *
counting_io_stream_get_output (GIOStream *stream)
{
  return G_OUTPUT_STREAM (COUNTING_IO_STREAM (stream)->output);
}

static gboolean
counting_io_stream_close (GIOStream *stream, GCancellable *cancellable, GError **error)
{
  return g_io_stream_close (COUNTING_IO_STREAM (stream)->base, cancellable, error);
}

static void
counting_io_stream_closed (GObject *source, GAsyncResult *result, gpointer data)
{
  GTask *task = data;
  GError *error = NULL;
  if (g_io_stream_close_finish (G_IO_STREAM (source), result, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
  g_object_unref (task);
}

static void
counting_io_stream_close_async (GIOStream *stream, int priority, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer data)
{
  GTask *task = g_task_new (stream, cancellable, callback, data);
  g_io_stream_close_async (COUNTING_IO_STREAM (stream)->base, priority, cancellable,
                           counting_io_stream_closed, task);
}

static gboolean
counting_io_stream_close_finish (GIOStream *stream, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
counting_io_stream_finalize (GObject *object)
{
  CountingIOStream *self = COUNTING_IO_STREAM (object);
  g_clear_object (&self->output);
  g_clear_object (&self->base);
  G_OBJECT_CLASS (counting_io_stream_parent_class)->finalize (object);
}

static void
counting_io_stream_class_init (CountingIOStreamClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = counting_io_stream_finalize;
  G_IO_STREAM_CLASS (klass)->get_input_stream = counting_io_stream_get_input;
  G_IO_STREAM_CLASS (klass)->get_output_stream = counting_io_stream_get_output;
  G_IO_STREAM_CLASS (klass)->close_fn = counting_io_stream_close;
  G_IO_STREAM_CLASS (klass)->close_async = counting_io_stream_close_async;
  G_IO_STREAM_CLASS (klass)->close_finish = counting_io_stream_close_finish;
}

static void
counting_io_stream_init (CountingIOStream *self)
{
}

static CountingIOStream *
counting_io_stream_new (GIOStream *base)
{
  CountingIOStream *self = g_object_new (COUNTING_TYPE_IO_STREAM, NULL);
  self->base = g_object_ref (base);
  self->output = g_object_new (COUNTING_TYPE_OUTPUT, NULL);
  self->output->base = g_object_ref (g_io_stream_get_output_stream (base));
  return self;
}

/* ---- peers ---- */

struct _EdgeWsPeer {
  gint refcount;
  EdgeGateway *gateway; /* NULL once the gateway is gone */
  SoupWebsocketConnection *connection;
  CountingIOStream *stream;
  GSocket *socket; /* nullable */
  char *route_label;
  guint64 queued;
  guint64 dropped;
  guint64 last_written; /* at the last stall check */
  gint64 stalled_since_us;
  gint64 expires_s; /* its credential's end (Unix seconds), 0: none */
  gboolean open;
  gboolean close_notified; /* on_close has run: it runs once */
  EdgeWsMessageFunc on_message;
  EdgeWsCloseFunc on_close;
  gpointer user_data;
  GDestroyNotify destroy;
};

EdgeWsPeer *
edge_ws_peer_ref (EdgeWsPeer *peer)
{
  g_atomic_int_inc (&peer->refcount);
  return peer;
}

void
edge_ws_peer_unref (EdgeWsPeer *peer)
{
  if (peer == NULL || !g_atomic_int_dec_and_test (&peer->refcount))
    return;
  if (peer->destroy)
    peer->destroy (peer->user_data);
  if (peer->connection) {
    g_signal_handlers_disconnect_by_data (peer->connection, peer);
    g_object_unref (peer->connection);
  }
  g_clear_object (&peer->stream);
  g_clear_object (&peer->socket);
  g_free (peer->route_label);
  g_free (peer);
}

gsize
edge_ws_peer_buffered (EdgeWsPeer *peer)
{
  guint64 written = peer->stream->output->written;
  /* Control frames libsoup sends on its own (pongs, close) are written but
   * were never counted as queued: never report less than nothing. */
  return peer->queued > written ? (gsize) (peer->queued - written) : 0;
}

gsize
edge_ws_peer_max_buffered (EdgeWsPeer *peer)
{
  return peer->gateway ? (gsize) peer->gateway->ws_max_buffered_bytes : 0;
}

guint64
edge_ws_peer_dropped (EdgeWsPeer *peer)
{
  return peer->dropped;
}

gboolean
edge_ws_peer_is_open (EdgeWsPeer *peer)
{
  return peer->open &&
         soup_websocket_connection_get_state (peer->connection) == SOUP_WEBSOCKET_STATE_OPEN;
}

/* Bytes a server frame carrying @len bytes of payload takes on the wire. */
static gsize
frame_size (gsize len)
{
  return len + 2 + (len > 125 ? (len > 65535 ? 8 : 2) : 0);
}

EdgeWsSendResult
edge_ws_peer_send (EdgeWsPeer *peer, GBytes *message, gboolean binary)
{
  gsize len = g_bytes_get_size (message);
  gsize size = frame_size (len);

  if (!edge_ws_peer_is_open (peer))
    return EDGE_WS_CLOSED;
  if (peer->gateway && edge_ws_peer_buffered (peer) + size > (gsize) peer->gateway->ws_max_buffered_bytes) {
    peer->dropped++;
    edge_metrics_add (peer->gateway->metrics, "edged_ws_messages_dropped_total", "", 1);
    return EDGE_WS_DROPPED;
  }
  peer->queued += size;
  if (binary) {
    soup_websocket_connection_send_message (peer->connection, SOUP_WEBSOCKET_DATA_BINARY, message);
  } else {
    soup_websocket_connection_send_message (peer->connection, SOUP_WEBSOCKET_DATA_TEXT, message);
  }
  return EDGE_WS_SENT;
}

EdgeWsSendResult
edge_ws_peer_send_text (EdgeWsPeer *peer, const char *text)
{
  g_autoptr (GBytes) bytes = g_bytes_new (text, strlen (text));
  return edge_ws_peer_send (peer, bytes, FALSE);
}

void
edge_ws_peer_set_handlers (EdgeWsPeer *peer, EdgeWsMessageFunc on_message, EdgeWsCloseFunc on_close,
                           gpointer user_data, GDestroyNotify destroy)
{
  if (peer->destroy)
    peer->destroy (peer->user_data);
  peer->on_message = on_message;
  peer->on_close = on_close;
  peer->user_data = user_data;
  peer->destroy = destroy;
}

void
edge_ws_peer_close (EdgeWsPeer *peer, gushort code, const char *reason)
{
  if (soup_websocket_connection_get_state (peer->connection) == SOUP_WEBSOCKET_STATE_OPEN)
    soup_websocket_connection_close (peer->connection, code, reason);
}

/* Cuts a peer off without waiting for its queue to drain. */
static void
peer_abort (EdgeWsPeer *peer)
{
  if (peer->socket)
    g_socket_shutdown (peer->socket, TRUE, TRUE, NULL);
  else
    g_io_stream_close_async (G_IO_STREAM (peer->stream), G_PRIORITY_DEFAULT, NULL, NULL, NULL);
}

static void
on_ws_message (SoupWebsocketConnection *connection, gint type, GBytes *message, gpointer data)
{
  EdgeWsPeer *peer = data;
  if (peer->on_message)
    peer->on_message (peer, message, type == SOUP_WEBSOCKET_DATA_BINARY, peer->user_data);
}

static void
peer_notify_closed (EdgeWsPeer *peer)
{
  peer->open = FALSE;
  if (peer->close_notified)
    return;
  peer->close_notified = TRUE;
  if (peer->on_close)
    peer->on_close (peer, peer->user_data);
}

static void
on_ws_closed (SoupWebsocketConnection *connection, gpointer data)
{
  EdgeWsPeer *peer = data;
  peer_notify_closed (peer);
  if (peer->gateway) {
    EdgeGateway *gateway = peer->gateway;
    peer->gateway = NULL;
    if (g_hash_table_remove (gateway->peers, peer)) {
      edge_metrics_set (gateway->metrics, "edged_ws_peers", "", g_hash_table_size (gateway->peers));
      edge_ws_peer_unref (peer);
    }
  }
}

static void
on_wrote_informational (SoupServerMessage *msg, gpointer data)
{
  EdgeRequest *request = data;
  EdgeGateway *gateway = request->gateway;
  GatewayRoute *route = request->route;
  g_autoptr (GIOStream) stream = NULL;
  EdgeWsPeer *peer;
  g_autoptr (GUri) uri = NULL;

  if (soup_server_message_get_status (msg) != SOUP_STATUS_SWITCHING_PROTOCOLS)
    return;
  g_object_ref (msg);
  stream = soup_server_message_steal_connection (msg);
  if (stream == NULL) {
    g_object_unref (msg);
    return;
  }
  peer = g_new0 (EdgeWsPeer, 1);
  peer->refcount = 1;
  peer->gateway = gateway;
  peer->socket = g_object_get_data (G_OBJECT (stream), "GSocket");
  if (peer->socket)
    g_object_ref (peer->socket);
  peer->stream = counting_io_stream_new (stream);
  peer->route_label = g_strdup (route->pattern);
  peer->expires_s = request->auth_expires_s;
  peer->open = TRUE;
  uri = g_uri_ref (soup_server_message_get_uri (msg));
  peer->connection = soup_websocket_connection_new (
      G_IO_STREAM (peer->stream), uri, SOUP_WEBSOCKET_CONNECTION_SERVER,
      soup_message_headers_get_one (soup_server_message_get_request_headers (msg), "Origin"), NULL,
      NULL);
  soup_websocket_connection_set_max_incoming_payload_size (peer->connection,
                                                           (guint64) gateway->ws_max_message_bytes);
  soup_websocket_connection_set_keepalive_interval (peer->connection, 30);
  g_signal_connect (peer->connection, "message", G_CALLBACK (on_ws_message), peer);
  g_signal_connect (peer->connection, "closed", G_CALLBACK (on_ws_closed), peer);
  g_hash_table_add (gateway->peers, peer);
  edge_metrics_set (gateway->metrics, "edged_ws_peers", "", g_hash_table_size (gateway->peers));

  route->ws_open (peer, request, route->user_data);
  g_object_unref (msg);
}

void
gateway_ws_upgrade (EdgeGateway *gateway, EdgeRequest *request)
{
  SoupServerMessage *msg = request->msg;
  g_autoptr (GError) error = NULL;

  if (!soup_websocket_server_check_handshake (msg, NULL, NULL, NULL, &error)) {
    edge_request_respond_error (request, SOUP_STATUS_BAD_REQUEST, "WebSocketRequired",
                                "%s is a WebSocket endpoint: %s", request->path, error->message);
    return;
  }
  if (request->route->ws_accept) {
    request->route->ws_accept (request, request->route->user_data);
    return;
  }
  edge_request_ws_accept (request);
}

void
edge_request_ws_accept (EdgeRequest *request)
{
  SoupServerMessage *msg = request->msg;
  g_return_if_fail (!request->responded);
  if (!soup_websocket_server_process_handshake (msg, NULL, NULL, NULL, NULL)) {
    edge_request_respond_error (request, SOUP_STATUS_BAD_REQUEST, "WebSocketRequired",
                                "WebSocket handshake failed");
    return;
  }
  g_signal_connect (msg, "wrote-informational", G_CALLBACK (on_wrote_informational), request);
  request->responded = TRUE;
  if (request->paused) {
    request->paused = FALSE;
    soup_server_message_unpause (msg);
    g_object_unref (msg);
  }
}

/* Once a second: cut off peers whose queue has not moved for the stall timeout. */
static gboolean
ws_check_stalls (gpointer data)
{
  EdgeGateway *gateway = data;
  gint64 now = g_get_monotonic_time ();
  GHashTableIter iter;
  gpointer key;
  g_autoptr (GPtrArray) slow = g_ptr_array_new ();
  g_autoptr (GPtrArray) expired = g_ptr_array_new ();
  gint64 now_s = g_get_real_time () / G_USEC_PER_SEC;

  g_hash_table_iter_init (&iter, gateway->peers);
  while (g_hash_table_iter_next (&iter, &key, NULL)) {
    EdgeWsPeer *peer = key;
    guint64 written = peer->stream->output->written;
    if (peer->expires_s > 0 && now_s >= peer->expires_s && peer->open)
      g_ptr_array_add (expired, peer);
    if (edge_ws_peer_buffered (peer) == 0 || written != peer->last_written) {
      peer->stalled_since_us = 0;
    } else if (peer->stalled_since_us == 0) {
      peer->stalled_since_us = now;
    } else if (now - peer->stalled_since_us > gateway->ws_stall_timeout_ms * 1000) {
      g_ptr_array_add (slow, peer);
    }
    peer->last_written = written;
  }
  for (guint i = 0; i < expired->len; i++) {
    EdgeWsPeer *peer = g_ptr_array_index (expired, i);
    peer->expires_s = 0;
    g_info ("WebSocket client on %s: its credential expired, closing", peer->route_label);
    edge_ws_peer_close (peer, SOUP_WEBSOCKET_CLOSE_POLICY_VIOLATION, "credentials expired");
  }
  for (guint i = 0; i < slow->len; i++) {
    EdgeWsPeer *peer = g_ptr_array_index (slow, i);
    edge_metrics_add (gateway->metrics, "edged_ws_peers_closed_slow_total", "", 1);
    g_info ("WebSocket client on %s is not reading: disconnecting (%zu bytes queued)",
            peer->route_label, edge_ws_peer_buffered (peer));
    peer_abort (peer);
  }
  return G_SOURCE_CONTINUE;
}

void
gateway_ws_start (EdgeGateway *gateway)
{
  gateway->ws_timer = g_timeout_add_seconds (1, ws_check_stalls, gateway);
}

void
gateway_ws_stop (EdgeGateway *gateway)
{
  GHashTableIter iter;
  gpointer key;

  if (gateway->ws_timer) {
    g_source_remove (gateway->ws_timer);
    gateway->ws_timer = 0;
  }
  if (gateway->peers == NULL)
    return;
  g_hash_table_iter_init (&iter, gateway->peers);
  while (g_hash_table_iter_next (&iter, &key, NULL)) {
    EdgeWsPeer *peer = key;
    peer->gateway = NULL;
    edge_ws_peer_close (peer, SOUP_WEBSOCKET_CLOSE_GOING_AWAY, "edged is shutting down");
    /* Producers stop now, not whenever the close handshake ends. */
    peer_notify_closed (peer);
    g_hash_table_iter_remove (&iter);
    edge_ws_peer_unref (peer);
  }
}
