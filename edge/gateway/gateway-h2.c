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
 * once whole, is replayed as an HTTP/1.1 request into libsoup over a
 * socketpair, so that every route, limit, access log line and metric is the
 * same whichever protocol a client speaks. The HTTP/1.1 answer is relayed
 * as it arrives: its head as the stream's HEADERS, its body (undoing chunked
 * coding; otherwise up to the socket's end, as every answer says
 * "Connection: close") as DATA, so that event streams flow too. While more
 * than H2_PENDING_MAX bytes wait for a slow client, reading from libsoup
 * stops, and libsoup's own back-pressure takes over.
 *
 *   client ==h2==> H2Conn (nghttp2) --stream 1--> socketpair --> libsoup --> route
 *                                  <-- HTTP/1.1 answer ----
 *
 * Limits: at most H2_MAX_STREAMS concurrent streams per connection,
 * request headers of at most H2_MAX_HEADER_BYTES, and a body of at most the
 * largest any route accepts (the route's own limit is applied by libsoup's
 * side as for HTTP/1.1). WebSocket routes are HTTP/1.1 only. Errors on a
 * stream reset that stream; protocol errors end the connection with GOAWAY.
 */
#define G_LOG_DOMAIN "gateway"

#include "gateway-private.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#define H2_MAX_STREAMS 100
#define H2_MAX_HEADER_BYTES (64 * 1024)
#define H2_WINDOW_BYTES (8 * 1024 * 1024)
#define H2_READ_BYTES (64 * 1024)
#define H2_SEND_BYTES (64 * 1024)
/* Answer bytes held for a client that reads slowly before reading from
 * libsoup stops (and libsoup's own back-pressure takes over). */
#define H2_PENDING_MAX (1024 * 1024)

typedef struct _H2Conn H2Conn;

typedef struct {
  H2Conn *conn;
  gint32 id;
  GString *head;     /* the HTTP/1.1 request head, built from the HEADERS */
  char *method, *path, *authority;
  GByteArray *body;
  GIOStream *backend; /* our end of the socketpair */
  GCancellable *cancellable;
  gboolean refused;
  /* The HTTP/1.1 answer, relayed as it arrives. */
  GByteArray *raw;     /* read, not yet taken apart */
  gboolean headers_sent;
  gboolean chunked;
  int chunk_state;     /* CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, CHUNK_DONE */
  guint64 chunk_left;
  GByteArray *pending; /* body bytes for DATA frames */
  gsize pending_at;    /* of which this many are sent */
  gboolean body_done;  /* pending holds the rest of the body */
  gboolean deferred;   /* nghttp2 waits for pending */
  gboolean reading;    /* a read from libsoup is under way */
} H2Stream;

enum { CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, CHUNK_DONE };

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
  gboolean receiving; /* inside nghttp2_session_mem_recv: no sending from callbacks */
  gboolean dead;     /* the socket failed or the peer left: free at once */
  guint drain_timer; /* after our GOAWAY: reading what is left, until EOF */
};

static void h2_conn_flush (H2Conn *conn);

/* ---- streams ---- */

static void
h2_stream_free (H2Stream *s)
{
  if (s->cancellable) {
    g_cancellable_cancel (s->cancellable);
    g_object_unref (s->cancellable);
  }
  if (s->backend) {
    g_io_stream_close (s->backend, NULL, NULL);
    g_object_unref (s->backend);
  }
  if (s->head)
    g_string_free (s->head, TRUE);
  g_free (s->method);
  g_free (s->path);
  g_free (s->authority);
  if (s->body)
    g_byte_array_unref (s->body);
  if (s->raw)
    g_byte_array_unref (s->raw);
  if (s->pending)
    g_byte_array_unref (s->pending);
  g_free (s);
}

/* The largest body any route takes: HTTP/2 buffers a request whole before
 * libsoup applies the matched route's own limit. */
static gsize
largest_body (EdgeGateway *gateway)
{
  gint64 max = gateway->max_body_bytes;
  for (guint i = 0; i < gateway->routes->len; i++)
    max = MAX (max, ((GatewayRoute *) g_ptr_array_index (gateway->routes, i))->max_body_bytes);
  return (gsize) max;
}

static ssize_t pending_read (nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                             uint32_t *data_flags, nghttp2_data_source *source, void *user_data);

/* Answers the stream itself (bad request, refusal) in edged's error shape,
 * through the same DATA path as relayed answers. */
static void
h2_stream_fail (H2Stream *s, guint status, const char *code, const char *message)
{
  gsize len;
  g_autofree char *text = edge_json_error (code, message, &len);
  char status_text[8];
  g_snprintf (status_text, sizeof status_text, "%u", status);
  g_autofree char *length = g_strdup_printf ("%zu", len);
  nghttp2_nv nva[] = {
    { (uint8_t *) ":status", (uint8_t *) status_text, 7, strlen (status_text),
      NGHTTP2_NV_FLAG_NONE },
    { (uint8_t *) "content-type", (uint8_t *) "application/json", 12, 16, NGHTTP2_NV_FLAG_NONE },
    { (uint8_t *) "content-length", (uint8_t *) length, 14, strlen (length),
      NGHTTP2_NV_FLAG_NONE },
  };
  s->refused = TRUE;
  s->headers_sent = TRUE;
  s->body_done = TRUE;
  g_byte_array_set_size (s->pending, 0);
  s->pending_at = 0;
  g_byte_array_append (s->pending, (const guint8 *) text, (guint) len);
  nghttp2_data_provider provider = { .source.ptr = s, .read_callback = pending_read };
  nghttp2_submit_response (s->conn->session, s->id, nva, G_N_ELEMENTS (nva), &provider);
  h2_conn_flush (s->conn);
}

/* Headers HTTP/2 forbids in a response (RFC 9113, 8.2.2). */
static gboolean
connection_specific (const char *name)
{
  static const char *const names[] = { "connection", "keep-alive", "proxy-connection",
                                       "transfer-encoding", "upgrade", NULL };
  return g_strv_contains (names, name);
}

static void backend_read (H2Stream *s);

/* Body bytes waiting for DATA frames. */
static gsize
pending_len (H2Stream *s)
{
  return s->pending->len - s->pending_at;
}

/* DATA for an answer: what has arrived, or wait for more. A frame takes
 * its bytes from the front of pending; they are let go of in bulk, not
 * moved down after every frame (a 16 KiB frame from a 1 MiB answer moved
 * the whole rest of it each time). */
static ssize_t
pending_read (nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
              uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
  H2Stream *s = source->ptr;
  gsize n = MIN (length, pending_len (s));
  if (n == 0 && !s->body_done) {
    s->deferred = TRUE;
    return NGHTTP2_ERR_DEFERRED;
  }
  memcpy (buf, s->pending->data + s->pending_at, n);
  s->pending_at += n;
  if (s->pending_at == s->pending->len) {
    g_byte_array_set_size (s->pending, 0);
    s->pending_at = 0;
  } else if (s->pending_at >= H2_PENDING_MAX / 4 && s->pending_at >= s->pending->len / 2) {
    g_byte_array_remove_range (s->pending, 0, (guint) s->pending_at);
    s->pending_at = 0;
  }
  if (s->body_done && pending_len (s) == 0)
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  if (!s->reading && !s->body_done && s->backend && pending_len (s) < H2_PENDING_MAX / 2)
    backend_read (s);
  return (ssize_t) n;
}

/* The answer's head has arrived: send it as HEADERS. */
static gboolean
h2_stream_send_head (H2Stream *s, gsize head_len)
{
  g_autoptr (SoupMessageHeaders) headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_RESPONSE);
  guint status = 0;
  if (!soup_headers_parse_response ((const char *) s->raw->data, (int) head_len, headers, NULL,
                                    &status, NULL))
    return FALSE;
  s->chunked = soup_message_headers_get_encoding (headers) == SOUP_ENCODING_CHUNKED;
  /* An answer to HEAD has the length of the body it does not carry. */
  gboolean head_only = g_str_equal (s->method, "HEAD");

  g_autoptr (GArray) nva = g_array_new (FALSE, FALSE, sizeof (nghttp2_nv));
  g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func (g_free);
  char *status_text = g_strdup_printf ("%u", status);
  g_ptr_array_add (owned, status_text);
  nghttp2_nv nv = { (uint8_t *) ":status", (uint8_t *) status_text, 7, strlen (status_text),
                    NGHTTP2_NV_FLAG_NONE };
  g_array_append_val (nva, nv);
  SoupMessageHeadersIter iter;
  const char *name, *value;
  soup_message_headers_iter_init (&iter, headers);
  while (soup_message_headers_iter_next (&iter, &name, &value)) {
    char *lower = g_ascii_strdown (name, -1);
    g_ptr_array_add (owned, lower);
    if (connection_specific (lower))
      continue;
    nghttp2_nv h = { (uint8_t *) lower, (uint8_t *) value, strlen (lower), strlen (value),
                     NGHTTP2_NV_FLAG_NONE };
    g_array_append_val (nva, h);
  }
  g_byte_array_remove_range (s->raw, 0, (guint) head_len);
  s->headers_sent = TRUE;
  if (head_only)
    s->body_done = TRUE;
  nghttp2_data_provider provider = { .source.ptr = s, .read_callback = pending_read };
  /* nghttp2 copies the header block when the response is submitted. */
  nghttp2_submit_response (s->conn->session, s->id, (nghttp2_nv *) nva->data, nva->len,
                           head_only ? NULL : &provider);
  return TRUE;
}

/* Moves body bytes from raw to pending, undoing chunked coding. FALSE if
 * the coding is malformed. */
static gboolean
h2_stream_take_body (H2Stream *s)
{
  GByteArray *raw = s->raw;
  if (!s->chunked) {
    g_byte_array_append (s->pending, raw->data, raw->len);
    g_byte_array_set_size (raw, 0);
    return TRUE;
  }
  gsize at = 0;
  while (at < raw->len && s->chunk_state != CHUNK_DONE) {
    if (s->chunk_state == CHUNK_SIZE) {
      const guint8 *eol = memchr (raw->data + at, '\n', raw->len - at);
      if (eol == NULL) {
        if (raw->len - at > 1024)
          return FALSE;
        break;
      }
      char *end;
      s->chunk_left = g_ascii_strtoull ((const char *) raw->data + at, &end, 16);
      if (end == (const char *) raw->data + at)
        return FALSE;
      at = (gsize) (eol - raw->data) + 1;
      s->chunk_state = s->chunk_left > 0 ? CHUNK_DATA : CHUNK_DONE;
    } else if (s->chunk_state == CHUNK_DATA) {
      gsize n = (gsize) MIN (s->chunk_left, raw->len - at);
      g_byte_array_append (s->pending, raw->data + at, (guint) n);
      at += n;
      s->chunk_left -= n;
      if (s->chunk_left == 0)
        s->chunk_state = CHUNK_CRLF;
    } else { /* CHUNK_CRLF */
      if (raw->len - at < 2)
        break;
      if (raw->data[at] != '\r' || raw->data[at + 1] != '\n')
        return FALSE;
      at += 2;
      s->chunk_state = CHUNK_SIZE;
    }
  }
  g_byte_array_remove_range (raw, 0, (guint) at);
  if (s->chunk_state == CHUNK_DONE)
    s->body_done = TRUE;
  return TRUE;
}

/* Ends a stream whose answer broke: 502 before its head, a reset after. */
static void
h2_stream_broken (H2Stream *s, const char *why)
{
  g_debug ("HTTP/2 stream %d: %s", s->id, why);
  g_clear_object (&s->backend);
  if (!s->headers_sent) {
    h2_stream_fail (s, 502, "BadGateway", why);
    return;
  }
  nghttp2_submit_rst_stream (s->conn->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
  h2_conn_flush (s->conn);
}

static void
backend_read_done (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) chunk =
      g_input_stream_read_bytes_finish (G_INPUT_STREAM (source), result, &error);
  if (chunk == NULL && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return; /* the stream is gone */
  H2Stream *s = data;
  s->reading = FALSE;
  if (chunk == NULL) {
    h2_stream_broken (s, error->message);
    return;
  }
  gsize size = g_bytes_get_size (chunk);
  g_byte_array_append (s->raw, g_bytes_get_data (chunk, NULL), (guint) size);
  if (!s->headers_sent) {
    const guint8 *end = s->raw->len >= 4 ? memmem (s->raw->data, s->raw->len, "\r\n\r\n", 4)
                                         : NULL;
    if (end == NULL && (size == 0 || s->raw->len > H2_MAX_HEADER_BYTES)) {
      h2_stream_broken (s, "the request was not answered");
      return;
    }
    if (end && !h2_stream_send_head (s, (gsize) (end - s->raw->data) + 4)) {
      h2_stream_broken (s, "the answer was malformed");
      return;
    }
  }
  if (s->headers_sent && !s->body_done && !h2_stream_take_body (s)) {
    h2_stream_broken (s, "the answer was malformed");
    return;
  }
  if (size == 0 && s->headers_sent && !s->body_done) {
    if (s->chunked) {
      h2_stream_broken (s, "the answer ended early");
      return;
    }
    s->body_done = TRUE; /* Content-Length or EOF-delimited: the end is the socket's */
  }
  if (s->body_done)
    g_clear_object (&s->backend);
  else if (size > 0 && pending_len (s) < H2_PENDING_MAX)
    backend_read (s);
  if (s->deferred && (pending_len (s) > 0 || s->body_done)) {
    s->deferred = FALSE;
    nghttp2_session_resume_data (s->conn->session, s->id);
  }
  /* Last: sending may finish the stream, which frees it. */
  h2_conn_flush (s->conn);
}

static void
backend_read (H2Stream *s)
{
  s->reading = TRUE;
  g_input_stream_read_bytes_async (g_io_stream_get_input_stream (s->backend), H2_READ_BYTES,
                                   G_PRIORITY_DEFAULT, s->cancellable, backend_read_done, s);
}

static void
backend_written (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;
  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error) &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_debug ("HTTP/2 stream: %s", error->message); /* libsoup answered early (413, 404) */
}

/* The request is whole: replay it to libsoup as HTTP/1.1. */
static void
h2_stream_dispatch (H2Stream *s)
{
  EdgeGateway *gateway = s->conn->gateway;
  int fds[2];

  if (s->method == NULL || s->path == NULL || s->path[0] != '/') {
    h2_stream_fail (s, 400, "BadRequest", "an HTTP/2 request needs :method and an origin :path");
    return;
  }
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    h2_stream_fail (s, 503, "Unavailable", g_strerror (errno));
    return;
  }
  g_autoptr (GSocket) ours = g_socket_new_from_fd (fds[0], NULL);
  g_autoptr (GSocket) theirs = g_socket_new_from_fd (fds[1], NULL);
  if (ours == NULL || theirs == NULL) {
    if (ours == NULL)
      close (fds[0]);
    if (theirs == NULL)
      close (fds[1]);
    h2_stream_fail (s, 503, "Unavailable", "cannot set up the request");
    return;
  }
  g_autoptr (GSocketConnection) server_side = g_socket_connection_factory_create_connection (theirs);
  s->backend = G_IO_STREAM (g_socket_connection_factory_create_connection (ours));
  g_autoptr (GSocketAddress) local = g_socket_connection_get_local_address (s->conn->connection, NULL);
  g_autoptr (GSocketAddress) remote =
      g_socket_connection_get_remote_address (s->conn->connection, NULL);
  g_object_set_data_full (G_OBJECT (server_side), "GSocket", g_object_ref (theirs), g_object_unref);
  soup_server_accept_iostream (gateway->server, G_IO_STREAM (server_side), local, remote, NULL);

  GString *req = g_string_sized_new (s->head->len + 256);
  g_string_append_printf (req, "%s %s HTTP/1.1\r\nHost: %s\r\n", s->method, s->path,
                          s->authority ? s->authority : "localhost");
  g_string_append_len (req, s->head->str, (gssize) s->head->len);
  g_string_append_printf (req, "Content-Length: %u\r\nConnection: close\r\n\r\n", s->body->len);
  g_string_append_len (req, (const char *) s->body->data, s->body->len);
  gsize req_len = req->len;
  GBytes *bytes = g_bytes_new_take (g_string_free (req, FALSE), req_len);
  g_object_set_data_full (G_OBJECT (s->backend), "edge-h2-request", bytes,
                          (GDestroyNotify) g_bytes_unref);
  g_clear_pointer (&s->body, g_byte_array_unref);
  s->raw = g_byte_array_new ();
  s->cancellable = g_cancellable_new ();
  g_output_stream_write_all_async (g_io_stream_get_output_stream (s->backend),
                                   g_bytes_get_data (bytes, NULL), req_len, G_PRIORITY_DEFAULT,
                                   s->cancellable, backend_written, s);
  backend_read (s);
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
  s->head = g_string_new (NULL);
  s->body = g_byte_array_new ();
  s->pending = g_byte_array_new ();
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
  if (s->head->len + name_len + value_len > H2_MAX_HEADER_BYTES)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
  /* nghttp2 has checked names and values against RFC 9113 (no CR, LF or
   * NUL, lowercase names), so they are safe to write into an HTTP/1.1 head. */
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
  if ((name_len == 4 && memcmp (name, "host", 4) == 0) ||
      (name_len == 14 && memcmp (name, "content-length", 14) == 0))
    return 0; /* written from :authority and the body */
  g_string_append_len (s->head, (const char *) name, (gssize) name_len);
  g_string_append_len (s->head, ": ", 2);
  g_string_append_len (s->head, (const char *) value, (gssize) value_len);
  g_string_append_len (s->head, "\r\n", 2);
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
  if (s && !s->refused && s->backend == NULL)
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
