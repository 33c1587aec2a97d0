/* gateway-h2.c: cleartext HTTP/2 (h2c with prior knowledge) in front of
 * libsoup.
 *
 * The AWS SDK for JavaScript v3 speaks HTTP/2 by default, and on an http://
 * endpoint it opens with the HTTP/2 preface straight away. libsoup's server
 * never speaks cleartext HTTP/2, so the accept loop peeks at the first bytes
 * of each plain connection: the preface sends it here, anything else goes
 * to libsoup as before.
 *
 * nghttp2 does the framing, HPACK and flow control. Each request stream,
 * once whole, becomes an EdgeRequest (gateway_request_new_h2) that takes
 * the same way as libsoup's requests: the route's limits, authentication,
 * the handler, the access log and the metrics. Its answer goes out as the
 * stream's HEADERS and DATA; an answer sent as it is produced (an event
 * stream) flows as it is written, and the handler sees how much of it is
 * still queued (edge_request_stream_queued), as over HTTP/1.1.
 *
 *   client ==h2==> H2Conn (nghttp2) --stream 1--> EdgeRequest --> route
 *                                  <-- status, headers, body parts --
 *
 * Limits: at most H2_MAX_STREAMS concurrent streams per connection,
 * request headers of at most H2_MAX_HEADER_BYTES, and a body of at most the
 * largest any route accepts while it comes (the route's own limit once the
 * stream is whole). WebSocket routes are HTTP/1.1 only. Errors on a stream
 * reset that stream; protocol errors end the connection with GOAWAY.
 */
#define G_LOG_DOMAIN "gateway"

#include "gateway-private.h"

#include "edged-version.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#define H2_MAX_STREAMS 100
#define H2_MAX_HEADER_BYTES (64 * 1024)
#define H2_WINDOW_BYTES (8 * 1024 * 1024)
#define H2_READ_BYTES (64 * 1024)
#define H2_SEND_BYTES (64 * 1024)

typedef struct _H2Conn H2Conn;

typedef struct _H2Stream H2Stream;

struct _H2Stream {
  H2Conn *conn;
  gint32 id;
  char *method, *path, *authority;
  SoupMessageHeaders *headers; /* the request's, as they come */
  gsize header_bytes;
  GByteArray *body;
  gboolean refused;      /* answered before it was whole */
  EdgeRequest *request;  /* once whole, until the stream closes */
  /* The answer's body: parts (GBytes) taken in order from @out_index and
   * @out_offset on, @queued bytes of them not sent yet. */
  GPtrArray *out;
  guint out_index;
  gsize out_offset;
  gsize queued;
  gboolean body_done;  /* out holds the rest of the body */
  gboolean deferred;   /* nghttp2 waits for more of it */
};

struct _H2Conn {
  EdgeGateway *gateway;
  GSocketConnection *connection;
  GSocket *socket;
  nghttp2_session *session;
  GSource *source;       /* reading, always */
  GSource *write_source; /* while the socket holds back what we send */
  GByteArray *out;       /* framed bytes nghttp2 produced that the socket has not taken */
  GPtrArray *streams;    /* open H2Stream (nghttp2_session_del does not close them) */
  gsize max_body;
  char *remote_host;
  gboolean receiving; /* inside nghttp2_session_mem_recv: no sending from callbacks */
  gboolean dead;     /* the socket failed or the peer left: free at once */
  guint drain_timer; /* after our GOAWAY: reading what is left, until EOF */
};

static void h2_conn_flush (H2Conn *conn);

/* ---- streams ---- */

static void
h2_stream_free (H2Stream *s)
{
  if (s->request) {
    EdgeRequest *request = g_steal_pointer (&s->request);
    request->link = NULL;
    gateway_request_done (request);
  }
  g_free (s->method);
  g_free (s->path);
  g_free (s->authority);
  g_clear_pointer (&s->headers, soup_message_headers_unref);
  if (s->body)
    g_byte_array_unref (s->body);
  g_ptr_array_unref (s->out);
  g_free (s);
}

/* The largest body any route takes: HTTP/2 buffers a request whole before
 * the matched route's own limit applies. */
static gsize
largest_body (EdgeGateway *gateway)
{
  gint64 max = gateway->max_body_bytes;
  for (guint i = 0; i < gateway->routes->len; i++)
    max = MAX (max, ((GatewayRoute *) g_ptr_array_index (gateway->routes, i))->max_body_bytes);
  return (gsize) max;
}

/* DATA for an answer: what has been given, or wait for more. Parts are let
 * go of once sent. */
static ssize_t
body_read (nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
           uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
  H2Stream *s = source->ptr;
  gsize n = 0;
  while (n < length && s->out_index < s->out->len) {
    gsize size;
    const guint8 *data = g_bytes_get_data (g_ptr_array_index (s->out, s->out_index), &size);
    gsize take = MIN (length - n, size - s->out_offset);
    memcpy (buf + n, data + s->out_offset, take);
    n += take;
    s->out_offset += take;
    if (s->out_offset == size) {
      s->out_index++;
      s->out_offset = 0;
    }
  }
  if (s->out_index > 0) {
    g_ptr_array_remove_range (s->out, 0, s->out_index);
    s->out_index = 0;
  }
  s->queued -= n;
  if (s->request)
    s->request->stream_queued -= MIN (s->request->stream_queued, n);
  if (n == 0 && !s->body_done) {
    s->deferred = TRUE;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (s->body_done && s->queued == 0)
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t) n;
}

static void
h2_stream_queue (H2Stream *s, GBytes *bytes)
{
  gsize size = g_bytes_get_size (bytes);
  if (size == 0)
    return;
  g_ptr_array_add (s->out, g_bytes_ref (bytes));
  s->queued += size;
}

/* Headers HTTP/2 forbids in a response (RFC 9113, 8.2.2). */
static gboolean
connection_specific (const char *name)
{
  static const char *const names[] = { "connection", "keep-alive", "proxy-connection",
                                       "transfer-encoding", "upgrade", NULL };
  return g_strv_contains (names, name);
}

/* Sends the answer's HEADERS: @status, @headers and, for an answer given
 * whole, its length. The body follows from out (none for HEAD). */
static void
h2_stream_send_head (H2Stream *s, guint status, SoupMessageHeaders *headers,
                     gboolean whole)
{
  gboolean head_only = g_strcmp0 (s->method, "HEAD") == 0;
  g_autoptr (GArray) nva = g_array_new (FALSE, FALSE, sizeof (nghttp2_nv));
  g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func (g_free);
  char status_text[8];
  g_snprintf (status_text, sizeof status_text, "%u", status);
  nghttp2_nv nv = { (uint8_t *) ":status", (uint8_t *) status_text, 7, strlen (status_text),
                    NGHTTP2_NV_FLAG_NONE };
  g_array_append_val (nva, nv);
  const char *date = gateway_http_date ();
  nghttp2_nv server[] = {
    { (uint8_t *) "server", (uint8_t *) "edged/" EDGED_VERSION, 6,
      strlen ("edged/" EDGED_VERSION), NGHTTP2_NV_FLAG_NONE },
    { (uint8_t *) "date", (uint8_t *) date, 4, strlen (date), NGHTTP2_NV_FLAG_NONE },
  };
  g_array_append_vals (nva, server, G_N_ELEMENTS (server));
  SoupMessageHeadersIter iter;
  const char *name, *value;
  soup_message_headers_iter_init (&iter, headers);
  while (soup_message_headers_iter_next (&iter, &name, &value)) {
    char *lower = g_ascii_strdown (name, -1);
    g_ptr_array_add (owned, lower);
    if (connection_specific (lower) || g_str_equal (lower, "content-length"))
      continue;
    nghttp2_nv h = { (uint8_t *) lower, (uint8_t *) value, strlen (lower), strlen (value),
                     NGHTTP2_NV_FLAG_NONE };
    g_array_append_val (nva, h);
  }
  char length[24];
  if (whole) {
    g_snprintf (length, sizeof length, "%zu", s->queued);
    nghttp2_nv h = { (uint8_t *) "content-length", (uint8_t *) length, 14, strlen (length),
                     NGHTTP2_NV_FLAG_NONE };
    g_array_append_val (nva, h);
  }
  if (head_only) {
    g_ptr_array_set_size (s->out, 0);
    s->out_index = 0;
    s->out_offset = 0;
    s->queued = 0;
    s->body_done = TRUE;
  }
  nghttp2_data_provider provider = { .source.ptr = s, .read_callback = body_read };
  /* nghttp2 copies the header block when the response is submitted. */
  nghttp2_submit_response (s->conn->session, s->id, (nghttp2_nv *) nva->data, nva->len,
                           head_only ? NULL : &provider);
  h2_conn_flush (s->conn);
}

/* Answers the stream itself (bad request, refusal) in edged's error shape. */
static void
h2_stream_fail (H2Stream *s, guint status, const char *code, const char *message)
{
  gsize len;
  char *text = edge_json_error (code, message, &len);
  g_autoptr (GBytes) body = g_bytes_new_take (text, len);
  g_autoptr (SoupMessageHeaders) headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_RESPONSE);
  soup_message_headers_replace (headers, "Content-Type", "application/json");
  s->refused = TRUE;
  h2_stream_queue (s, body);
  s->body_done = TRUE;
  h2_stream_send_head (s, status, headers, TRUE);
}

static void
gateway_h2_respond (EdgeRequest *request)
{
  H2Stream *s = request->link;
  if (s == NULL)
    return;
  for (guint i = 0; i < request->parts->len; i++)
    h2_stream_queue (s, g_ptr_array_index (request->parts, i));
  s->body_done = TRUE;
  h2_stream_send_head (s, request->status, request->response_headers, TRUE);
}

static void
gateway_h2_stream_begin (EdgeRequest *request)
{
  H2Stream *s = request->link;
  if (s == NULL)
    return;
  h2_stream_send_head (s, request->status, request->response_headers, FALSE);
}

/* More of a streamed answer: nghttp2 asked for DATA and was told to wait. */
static void
h2_stream_more (H2Stream *s)
{
  if (s->deferred) {
    s->deferred = FALSE;
    nghttp2_session_resume_data (s->conn->session, s->id);
  }
  h2_conn_flush (s->conn);
}

static void
gateway_h2_stream_write (EdgeRequest *request, GBytes *bytes)
{
  H2Stream *s = request->link;
  if (s == NULL || s->body_done)
    return;
  h2_stream_queue (s, bytes);
  h2_stream_more (s);
}

static void
gateway_h2_stream_end (EdgeRequest *request)
{
  H2Stream *s = request->link;
  if (s == NULL || s->body_done)
    return;
  s->body_done = TRUE;
  h2_stream_more (s);
}

const GatewayTransport gateway_h2_transport = {
  .respond = gateway_h2_respond,
  .stream_begin = gateway_h2_stream_begin,
  .stream_write = gateway_h2_stream_write,
  .stream_end = gateway_h2_stream_end,
  .version = SOUP_HTTP_2_0,
};

/* The request is whole: it goes the way of every request. */
static void
h2_stream_dispatch (H2Stream *s)
{
  H2Conn *conn = s->conn;
  if (s->method == NULL || s->path == NULL || s->path[0] != '/') {
    h2_stream_fail (s, 400, "BadRequest", "an HTTP/2 request needs :method and an origin :path");
    return;
  }
  /* The URI as libsoup makes it from a request line and Host. */
  const char *authority = s->authority ? s->authority : "localhost";
  if (strchr (authority, '/')) {
    h2_stream_fail (s, 400, "BadRequest", "a malformed :authority");
    return;
  }
  g_autofree char *url = g_strconcat ("http://", authority, s->path, NULL);
  g_autoptr (GUri) parsed = g_uri_parse (url, SOUP_HTTP_URI_FLAGS, NULL);
  g_autoptr (GUri) uri = parsed ? gateway_uri_decoded (parsed) : NULL;
  if (uri == NULL) {
    h2_stream_fail (s, 400, "BadRequest", "a malformed :path");
    return;
  }
  soup_message_headers_replace (s->headers, "Host", authority);
  g_autoptr (GBytes) body = g_byte_array_free_to_bytes (g_steal_pointer (&s->body));
  s->request = gateway_request_new (conn->gateway, &gateway_h2_transport, s, s->method, uri,
                                    s->headers, conn->remote_host);
  gateway_request_set_body (s->request, body);
  /* The request may be answered, and the stream closed, before this returns:
   * the stream keeps its reference until it closes. */
  gateway_request_start (s->request);
}

/* ---- nghttp2 callbacks ---- */

static int
on_begin_headers (nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
  H2Conn *conn = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  H2Stream *s = g_new0 (H2Stream, 1);
  s->conn = conn;
  s->id = frame->hd.stream_id;
  s->headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_REQUEST);
  s->body = g_byte_array_new ();
  s->out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_ptr_array_add (conn->streams, s);
  nghttp2_session_set_stream_user_data (session, s->id, s);
  return 0;
}

static int
on_header (nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
           size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
           void *user_data)
{
  H2Stream *s = nghttp2_session_get_stream_user_data (session, frame->hd.stream_id);
  if (s == NULL || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  s->header_bytes += name_len + value_len;
  if (s->header_bytes > H2_MAX_HEADER_BYTES)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
  /* nghttp2 has checked names and values against RFC 9113 (no CR, LF or
   * NUL, lowercase names). */
  if (name_len > 0 && name[0] == ':') {
    char **slot = NULL;
    if (name_len == 7 && memcmp (name, ":method", 7) == 0)
      slot = &s->method;
    else if (name_len == 5 && memcmp (name, ":path", 5) == 0)
      slot = &s->path;
    else if (name_len == 10 && memcmp (name, ":authority", 10) == 0)
      slot = &s->authority;
    if (slot) {
      g_free (*slot);
      *slot = g_strndup ((const char *) value, value_len);
    }
    return 0;
  }
  g_autofree char *n = g_strndup ((const char *) name, name_len);
  g_autofree char *v = g_strndup ((const char *) value, value_len);
  soup_message_headers_append (s->headers, n, v);
  return 0;
}

static int
on_data_chunk (nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
               size_t len, void *user_data)
{
  H2Conn *conn = user_data;
  H2Stream *s = nghttp2_session_get_stream_user_data (session, id);
  if (s == NULL || s->body == NULL || s->refused)
    return 0;
  if (s->body->len + len > conn->max_body) {
    edge_metrics_add (conn->gateway->metrics, "edged_http_body_rejected_total", "", 1);
    g_autofree char *message = g_strdup_printf ("request body larger than the limit of %zu bytes",
                                                conn->max_body);
    h2_stream_fail (s, 413, "PayloadTooLarge", message);
    return 0;
  }
  g_byte_array_append (s->body, data, (guint) len);
  return 0;
}

static int
on_frame_recv (nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  H2Stream *s = nghttp2_session_get_stream_user_data (session, frame->hd.stream_id);
  if (s && !s->refused && s->request == NULL && s->body)
    h2_stream_dispatch (s);
  return 0;
}

static int
on_stream_close (nghttp2_session *session, int32_t id, uint32_t error_code, void *user_data)
{
  H2Conn *conn = user_data;
  H2Stream *s = nghttp2_session_get_stream_user_data (session, id);
  if (s == NULL)
    return 0;
  nghttp2_session_set_stream_user_data (session, id, NULL);
  g_ptr_array_remove_fast (conn->streams, s); /* frees it */
  return 0;
}

/* ---- the connection ---- */

static void
h2_conn_free (H2Conn *conn)
{
  if (conn->source) {
    g_source_destroy (conn->source);
    g_source_unref (conn->source);
  }
  if (conn->write_source) {
    g_source_destroy (conn->write_source);
    g_source_unref (conn->write_source);
  }
  if (conn->drain_timer)
    g_source_remove (conn->drain_timer);
  nghttp2_session_del (conn->session);
  g_ptr_array_unref (conn->streams);
  g_byte_array_unref (conn->out);
  g_ptr_array_remove_fast (conn->gateway->h2_conns, conn);
  g_free (conn->remote_host);
  g_io_stream_close (G_IO_STREAM (conn->connection), NULL, NULL);
  g_object_unref (conn->connection);
  g_free (conn);
}

static gboolean h2_conn_writable (GSocket *socket, GIOCondition condition, gpointer data);

/* Writes what nghttp2 has to send, as far as the socket takes it; the rest
 * waits for the socket to be writable again. */
static void
h2_conn_flush (H2Conn *conn)
{
  if (conn->receiving)
    return; /* h2_conn_io sends once nghttp2 has taken the input */
  while (!conn->dead) {
    /* Frames gathered into one send of up to H2_SEND_BYTES, not a system
     * call for each 16 KiB DATA frame. */
    while (conn->out->len < H2_SEND_BYTES) {
      const uint8_t *data;
      ssize_t n = nghttp2_session_mem_send (conn->session, &data);
      if (n < 0)
        conn->dead = TRUE;
      if (n <= 0)
        break;
      g_byte_array_append (conn->out, data, (guint) n);
    }
    if (conn->dead || conn->out->len == 0)
      break;
    g_autoptr (GError) error = NULL;
    gssize n = g_socket_send (conn->socket, (const char *) conn->out->data, conn->out->len, NULL,
                              &error);
    if (n < 0) {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        conn->dead = TRUE;
      break;
    }
    g_byte_array_remove_range (conn->out, 0, (guint) n);
    if (conn->out->len > 0)
      break;
  }
  if (!conn->dead && conn->out->len > 0 && conn->write_source == NULL) {
    conn->write_source = g_socket_create_source (conn->socket, G_IO_OUT, NULL);
    edge_source_quiet (conn->write_source);
    g_source_set_callback (conn->write_source, (GSourceFunc) (void (*) (void)) h2_conn_writable,
                           conn, NULL);
    g_source_attach (conn->write_source, NULL);
  }
}

static gboolean
h2_conn_writable (GSocket *socket, GIOCondition condition, gpointer data)
{
  H2Conn *conn = data;
  g_source_unref (conn->write_source);
  conn->write_source = NULL;
  h2_conn_flush (conn);
  return G_SOURCE_REMOVE;
}

static gboolean
h2_conn_drained (gpointer data)
{
  H2Conn *conn = data;
  conn->drain_timer = 0;
  h2_conn_free (conn);
  return G_SOURCE_REMOVE;
}

static gboolean
h2_conn_io (GSocket *socket, GIOCondition condition, gpointer data)
{
  H2Conn *conn = data;
  guint8 buf[H2_READ_BYTES];

  if (condition & G_IO_IN) {
    g_autoptr (GError) error = NULL;
    gssize n = g_socket_receive (socket, (char *) buf, sizeof buf, NULL, &error);
    if (n == 0 || (n < 0 && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)))
      conn->dead = TRUE;
    else if (n > 0 && !conn->drain_timer) {
      conn->receiving = TRUE;
      nghttp2_session_mem_recv (conn->session, buf, (size_t) n); /* errors: GOAWAY queued */
      conn->receiving = FALSE;
    }
  } else if (condition & (G_IO_HUP | G_IO_ERR)) {
    conn->dead = TRUE;
  }
  if (!conn->drain_timer)
    h2_conn_flush (conn);
  if (conn->dead) {
    g_source_unref (conn->source);
    conn->source = NULL;
    h2_conn_free (conn);
    return G_SOURCE_REMOVE;
  }
  if (!conn->drain_timer && !nghttp2_session_want_read (conn->session) &&
      !nghttp2_session_want_write (conn->session) && conn->out->len == 0) {
    /* Our GOAWAY is out. Closing with unread bytes would make the kernel
     * reset the connection, and the peer could lose the GOAWAY: end our
     * side and read until the peer closes, for a while. */
    g_socket_shutdown (socket, FALSE, TRUE, NULL);
    conn->drain_timer = g_timeout_add_seconds (2, h2_conn_drained, conn);
  }
  return G_SOURCE_CONTINUE;
}

void
gateway_h2_serve (EdgeGateway *gateway, GSocketConnection *connection)
{
  static const nghttp2_settings_entry settings[] = {
    { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS },
    { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW_BYTES },
    { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_BYTES },
  };
  nghttp2_session_callbacks *callbacks;
  H2Conn *conn = g_new0 (H2Conn, 1);

  conn->gateway = gateway;
  conn->connection = g_object_ref (connection);
  conn->socket = g_socket_connection_get_socket (connection);
  conn->out = g_byte_array_new ();
  conn->streams = g_ptr_array_new_with_free_func ((GDestroyNotify) h2_stream_free);
  conn->max_body = largest_body (gateway);
  g_autoptr (GSocketAddress) remote = g_socket_connection_get_remote_address (connection, NULL);
  if (G_IS_INET_SOCKET_ADDRESS (remote))
    conn->remote_host = g_inet_address_to_string (
        g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (remote)));
  g_socket_set_blocking (conn->socket, FALSE);
  nghttp2_session_callbacks_new (&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback (callbacks, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback (callbacks, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback (callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback (callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback (callbacks, on_stream_close);
  nghttp2_session_server_new (&conn->session, callbacks, conn);
  nghttp2_session_callbacks_del (callbacks);
  nghttp2_submit_settings (conn->session, NGHTTP2_FLAG_NONE, settings, G_N_ELEMENTS (settings));
  nghttp2_session_set_local_window_size (conn->session, NGHTTP2_FLAG_NONE, 0, H2_WINDOW_BYTES);
  g_ptr_array_add (gateway->h2_conns, conn);

  conn->source = g_socket_create_source (conn->socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  edge_source_quiet (conn->source);
  g_source_set_callback (conn->source, (GSourceFunc) (void (*) (void)) h2_conn_io, conn, NULL);
  g_source_attach (conn->source, NULL);
  h2_conn_flush (conn);
}

void
gateway_h2_stop (EdgeGateway *gateway)
{
  while (gateway->h2_conns->len > 0)
    h2_conn_free (g_ptr_array_index (gateway->h2_conns, 0));
}
