/* gateway-http1.c: plain HTTP/1.1 connections served by the gateway itself,
 * with libsoup behind it for what this does not take.
 *
 * libsoup builds a message per request, with its signals, sources and a
 * copy of the body for every 8 KiB read: about half of the CPU an
 * invocation of a function through a route cost edged, and three user-space
 * copies of every PutRecords body (docs/benchmarks.md). Here a connection
 * has one descriptor watch, one deadline and a buffer; a request's head is
 * parsed by libsoup's own parser (soup_headers_parse_request), its body is
 * read straight into one buffer of its declared length, and the answer
 * leaves in one writev. The request then takes the way every request takes
 * (gateway_request_start: limits, authentication, the route).
 *
 *   readable ─▶ peek ─▶ whole head? ─no─▶ libsoup takes the connection
 *                          │ yes            (nothing of it read yet)
 *                          ▼
 *               HTTP/1.1, origin-form, Host, Content-Length (or no body)
 *               within the route's limit, no Upgrade, no Expect, at most
 *               EDGE_GATEWAY_MAX_HEADER_FIELDS fields? ─no─▶ libsoup
 *                          │ yes
 *                          ▼
 *               head read, body read ─▶ EdgeRequest ─▶ ... ─▶ answer written
 *                          ▲                                      │
 *                          └────────── kept alive ◀───────────────┘
 *
 * Anything else (a head in pieces, a WebSocket upgrade, HTTP/1.0, chunked
 * or oversized bodies, Expect: 100-continue, malformed requests) goes to
 * libsoup at the boundary of a request, before any of it is read: libsoup
 * then serves that connection to its end as it served every connection
 * before, with its refusals (400, 413, 431) and the idle handling of
 * gateway.c. A request is read only once the one before it has been
 * answered; bytes that come while a request is under way wait (the watch
 * stops looking at them until then). The connection's deadline is one
 * source whose time its own callback moves: idle for
 * gateway.keepalive_timeout after an answer, or gateway.header_timeout
 * without a piece of a body, ends the connection.
 */
#define G_LOG_DOMAIN "gateway"

#include "gateway-private.h"

#include "edged-version.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* The largest head served here; longer ones go to libsoup (which refuses
 * them past its own limit). */
#define H1_HEAD_MAX (16 * 1024)
/* A body's first allocation when little of it has come yet. */
#define H1_BODY_FIRST (64 * 1024)
/* Parts written by one writev at most. */
#define H1_IOV_MAX 64

typedef enum {
  H1_IDLE,      /* between requests (or before the first) */
  H1_BODY,      /* reading a body */
  H1_BUSY,      /* the handler has the request */
  H1_WRITING,   /* the answer, given whole, is going out */
  H1_STREAMING, /* an answer written as it is produced */
} H1State;

typedef struct {
  GSource source;
  H1Conn *h1;
  gpointer tag;
} H1Source;

struct _H1Conn {
  EdgeGateway *gateway;
  Conn *conn;
  GSocketConnection *connection;
  int fd;
  H1Source *watch;   /* G_IO_IN while a request may be read; 0 otherwise */
  gboolean reading;  /* the watch asks for G_IO_IN */
  GSource *deadline;
  H1State state;
  gint64 since_us;      /* when the state, or the body's last piece, began */
  gboolean close_after; /* the request (or the gateway) said close */
  guint served;         /* requests answered */
  EdgeRequest *request; /* from its head to its answer's last byte */
  guint8 *body;
  gsize body_len, body_got;
  gsize body_size; /* allocated: grows with what has come, not with what is declared */
  /* What is to be written: parts (GBytes), @out_offset bytes of the first
   * sent already. */
  GPtrArray *out;
  gsize out_offset;
  gboolean out_last; /* the answer's end is in out */
  GSource *write_source;
};

static void h1_take_request (H1Conn *h1);
static void h1_close (H1Conn *h1);
static void h1_flush (H1Conn *h1);

/* ---- the watch and the deadline ---- */

/* Whether the watch looks for readable bytes. GLib wakes its loop (an
 * eventfd write) for each change, so this changes only when bytes come
 * while a request is under way, and back after its answer. */
static void
h1_reading (H1Conn *h1, gboolean reading)
{
  if (h1->reading == reading)
    return;
  h1->reading = reading;
  g_source_modify_unix_fd ((GSource *) h1->watch, h1->watch->tag,
                           reading ? G_IO_IN | G_IO_HUP | G_IO_ERR : G_IO_HUP | G_IO_ERR);
}

static void h1_io (H1Conn *h1, GIOCondition condition);

static gboolean
h1_source_dispatch (GSource *source, GSourceFunc callback, gpointer data)
{
  H1Source *s = (H1Source *) source;
  h1_io (s->h1, g_source_query_unix_fd (source, s->tag));
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs h1_source_funcs = { .dispatch = h1_source_dispatch };

/* When the current state's time is up (0: never). */
static gint64
h1_due_us (H1Conn *h1)
{
  EdgeGateway *gateway = h1->gateway;
  if (h1->state == H1_IDLE && gateway->keepalive_timeout_ms > 0)
    return h1->since_us + gateway->keepalive_timeout_ms * 1000;
  if (h1->state == H1_BODY && gateway->header_timeout_ms > 0)
    return h1->since_us + gateway->header_timeout_ms * 1000;
  return 0;
}

/* The shortest of the two timeouts: the deadline fires at least this often,
 * so that a state begun after it last fired is never overlooked. */
static gint64
h1_period_us (H1Conn *h1)
{
  gint64 a = h1->gateway->keepalive_timeout_ms, b = h1->gateway->header_timeout_ms;
  gint64 ms = a > 0 && b > 0 ? MIN (a, b) : MAX (a, b);
  return ms * 1000;
}

static gboolean
h1_deadline_passed (gpointer data)
{
  H1Conn *h1 = data;
  gint64 now = g_get_monotonic_time ();
  gint64 due = h1_due_us (h1);
  if (due > 0 && now >= due) {
    if (h1->state == H1_BODY)
      edge_metrics_add (h1->gateway->metrics, "edged_http_slow_clients_total",
                        "stage=\"body\"", 1);
    h1_close (h1);
    return G_SOURCE_REMOVE;
  }
  gint64 next = now + h1_period_us (h1);
  g_source_set_ready_time (h1->deadline, due > 0 ? MIN (due, next) : next);
  return G_SOURCE_CONTINUE;
}

static void
h1_set_state (H1Conn *h1, H1State state)
{
  h1->state = state;
  h1->since_us = g_get_monotonic_time ();
  h1->conn->idle_since = state == H1_IDLE ? h1->since_us : 0;
}

/* ---- the end of a connection, or its handover ---- */

static void
h1_stop (H1Conn *h1)
{
  if (h1->watch) {
    g_source_destroy ((GSource *) h1->watch);
    g_source_unref ((GSource *) h1->watch);
    h1->watch = NULL;
  }
  if (h1->deadline) {
    g_source_destroy (h1->deadline);
    g_clear_pointer (&h1->deadline, g_source_unref);
  }
  if (h1->write_source) {
    g_source_destroy (h1->write_source);
    g_clear_pointer (&h1->write_source, g_source_unref);
  }
  if (h1->request) {
    EdgeRequest *request = g_steal_pointer (&h1->request);
    request->link = NULL;
    gateway_request_done (request);
  }
  g_free (h1->body);
  h1->body = NULL;
  g_ptr_array_unref (h1->out);
  h1->conn->h1 = NULL;
}

/* Ends the connection (freeing the stream ends its Conn, gateway.c). */
static void
h1_close (H1Conn *h1)
{
  GSocketConnection *connection = h1->connection;
  h1_stop (h1);
  g_free (h1);
  g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
  g_object_unref (connection);
}

void
gateway_h1_close (H1Conn *h1)
{
  h1_close (h1);
}

gboolean
gateway_h1_idle (H1Conn *h1)
{
  return h1->state == H1_IDLE && h1->served > 0;
}

/* libsoup takes the connection, at a request's first byte. */
static void
h1_hand_over (H1Conn *h1)
{
  EdgeGateway *gateway = h1->gateway;
  GSocketConnection *connection = h1->connection;
  Conn *conn = h1->conn;
  h1_stop (h1);
  g_free (h1);
  gateway_conn_to_soup (gateway, conn, connection);
  g_object_unref (connection);
}

/* ---- reading a request ---- */

/* Where @head (@n bytes) ends, past its blank line; 0 if it does not. */
static gsize
head_end (const char *head, gsize n)
{
  const char *end = memmem (head, n, "\r\n\r\n", 4);
  return end ? (gsize) (end - head) + 4 : 0;
}

static gboolean
h1_request_close (SoupMessageHeaders *headers)
{
  return soup_message_headers_header_contains (headers, "Connection", "close");
}

/* The body is whole: the request goes its way. */
static void
h1_dispatch (H1Conn *h1)
{
  EdgeRequest *request = h1->request;
  gsize len = h1->body_len;
  GBytes *body = h1->body ? g_bytes_new_take (g_steal_pointer (&h1->body), len)
                          : g_bytes_new_static ("", 0);
  gateway_request_set_body (request, body);
  g_bytes_unref (body);
  h1_set_state (h1, H1_BUSY);
  gateway_request_start (request);
}

/* Room for the body: what has come so far and some, never more than its
 * declared length, so that a client declaring megabytes and sending
 * nothing holds no memory for them. */
static void
h1_body_room (H1Conn *h1)
{
  if (h1->body_got < h1->body_size || h1->body_size == h1->body_len)
    return;
  int waiting = 0;
  if (ioctl (h1->fd, FIONREAD, &waiting) != 0)
    waiting = 0;
  gsize want = MAX (h1->body_size * 4, h1->body_got + (gsize) MAX (waiting, 0));
  h1->body_size = MIN (MAX (want, H1_BODY_FIRST), h1->body_len);
  h1->body = g_realloc (h1->body, h1->body_size + 1);
}

/* Reads what has come of the body; dispatches it once whole. */
static void
h1_read_body (H1Conn *h1)
{
  while (h1->body_got < h1->body_len) {
    h1_body_room (h1);
    gssize n = recv (h1->fd, h1->body + h1->body_got, h1->body_size - h1->body_got, MSG_DONTWAIT);
    if (n > 0) {
      h1->body_got += (gsize) n;
      h1->since_us = g_get_monotonic_time ();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return; /* more to come */
    h1_close (h1); /* the client left mid-body */
    return;
  }
  h1->body[h1->body_len] = '\0'; /* as libsoup's bodies end */
  h1_dispatch (h1);
}

/* A request's head has come whole (peeked, not read): served here, or
 * the connection goes to libsoup. */
static void
h1_take_request (H1Conn *h1)
{
  EdgeGateway *gateway = h1->gateway;
  char head[H1_HEAD_MAX];
  gssize n = recv (h1->fd, head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    h1_close (h1); /* the client's end, or an error */
    return;
  }
  gsize end = head_end (head, (gsize) n);
  if (end == 0) {
    h1_hand_over (h1); /* in pieces, or too long: libsoup waits for the rest */
    return;
  }

  g_autoptr (SoupMessageHeaders) headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_REQUEST);
  g_autofree char *method = NULL, *path = NULL;
  SoupHTTPVersion version;
  /* The head without its blank line, as libsoup parses it. */
  guint status = soup_headers_parse_request (head, (int) end - 2, headers, &method, &path, &version);
  const char *host = soup_message_headers_get_one (headers, "Host");
  SoupEncoding encoding = soup_message_headers_get_encoding (headers);
  if (status != SOUP_STATUS_OK || version != SOUP_HTTP_1_1 || path[0] != '/' ||
      host == NULL || strchr (host, '/') ||
      (encoding != SOUP_ENCODING_CONTENT_LENGTH && encoding != SOUP_ENCODING_NONE) ||
      soup_message_headers_get_one (headers, "Upgrade") ||
      soup_message_headers_get_one (headers, "Expect") || g_str_equal (method, "CONNECT")) {
    h1_hand_over (h1);
    return;
  }
  g_autofree char *url = g_strconcat ("http://", host, path, NULL);
  g_autoptr (GUri) parsed = g_uri_parse (url, SOUP_HTTP_URI_FLAGS, NULL);
  g_autoptr (GUri) uri = parsed && g_uri_get_host (parsed) ? gateway_uri_decoded (parsed) : NULL;
  if (uri == NULL) {
    h1_hand_over (h1); /* libsoup answers 400 */
    return;
  }
  EdgeRequest *request = gateway_request_new (gateway, &gateway_h1_transport, h1, method, uri,
                                              headers, h1->conn->client);
  gateway_request_match (request);
  goffset length = encoding == SOUP_ENCODING_CONTENT_LENGTH
                       ? soup_message_headers_get_content_length (headers)
                       : 0;
  if (gateway_request_too_many_fields (request) || length > request->body_limit) {
    gateway_request_unref (request); /* libsoup refuses it, as it refuses its own */
    h1_hand_over (h1);
    return;
  }

  /* Ours: the head is read, and the body after it. */
  if (recv (h1->fd, head, end, MSG_DONTWAIT) != (gssize) end) {
    gateway_request_unref (request);
    h1_close (h1);
    return;
  }
  gateway_conn_clear_head_deadline (h1->conn);
  h1->request = request;
  h1->close_after = h1_request_close (headers) || gateway->keepalive_timeout_ms <= 0;
  if (length > 0) {
    h1->body_len = (gsize) length;
    h1->body_got = 0;
    h1->body_size = 0;
    h1_set_state (h1, H1_BODY);
    h1_read_body (h1);
  } else {
    h1->body_len = 0;
    h1_dispatch (h1);
  }
}

static void
h1_io (H1Conn *h1, GIOCondition condition)
{
  if (condition & (G_IO_HUP | G_IO_ERR) && !(condition & G_IO_IN)) {
    h1_close (h1);
    return;
  }
  switch (h1->state) {
  case H1_IDLE:
    h1_take_request (h1);
    return;
  case H1_BODY:
    h1_read_body (h1);
    return;
  case H1_STREAMING:
  case H1_BUSY:
  case H1_WRITING:
    break;
  }
  /* A request is under way: bytes now are the next request, come early
   * (pipelined), or the end of what the client sends, which may still read
   * the answer (a half close, after which the connection ends). During an
   * event stream the client has nothing to send: readable means it has
   * gone (or broken the protocol), as libsoup's requests are watched
   * (gateway.c). */
  char byte;
  gssize n = recv (h1->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n < 0 || h1->state == H1_STREAMING) {
    h1_close (h1);
    return;
  }
  if (n == 0)
    h1->close_after = TRUE;
  h1_reading (h1, FALSE); /* looked at again once this one is answered */
}

/* ---- writing the answer ---- */

static gboolean
h1_writable (GSocket *socket, GIOCondition condition, gpointer data)
{
  H1Conn *h1 = data;
  g_clear_pointer (&h1->write_source, g_source_unref);
  h1_flush (h1);
  return G_SOURCE_REMOVE;
}

/* The answer is out: the next request, or the end. */
static void
h1_answered (H1Conn *h1)
{
  EdgeRequest *request = g_steal_pointer (&h1->request);
  request->link = NULL;
  gboolean close_after = h1->close_after;
  gateway_request_done (request);
  if (close_after) {
    h1_close (h1);
    return;
  }
  h1->served++;
  h1_set_state (h1, H1_IDLE);
  h1->out_last = FALSE;
  /* A request that came meanwhile is taken on the loop's next turn, not
   * here, deep in the one before's answer. */
  h1_reading (h1, TRUE);
}

/* Writes what is queued, as far as the socket takes it. */
static void
h1_flush (H1Conn *h1)
{
  while (h1->out->len > 0) {
    struct iovec iov[H1_IOV_MAX];
    guint count = MIN (h1->out->len, H1_IOV_MAX);
    for (guint i = 0; i < count; i++) {
      gsize size;
      const char *data = g_bytes_get_data (g_ptr_array_index (h1->out, i), &size);
      gsize skip = i == 0 ? h1->out_offset : 0;
      iov[i].iov_base = (char *) data + skip;
      iov[i].iov_len = size - skip;
    }
    struct msghdr message = { .msg_iov = iov, .msg_iovlen = count };
    gssize n = sendmsg (h1->fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN) {
      if (h1->write_source == NULL) {
        h1->write_source = g_socket_create_source (
            g_socket_connection_get_socket (h1->connection), G_IO_OUT, NULL);
        edge_source_quiet (h1->write_source);
        g_source_set_callback (h1->write_source, (GSourceFunc) (void (*) (void)) h1_writable, h1,
                               NULL);
        g_source_attach (h1->write_source, NULL);
      }
      return;
    }
    if (n < 0) {
      h1_close (h1);
      return;
    }
    gsize left = (gsize) n;
    if (h1->request)
      h1->request->stream_queued -= MIN (h1->request->stream_queued, left);
    guint done = 0;
    while (done < h1->out->len) {
      gsize size = g_bytes_get_size (g_ptr_array_index (h1->out, done)) - h1->out_offset;
      if (left < size) {
        h1->out_offset += left;
        break;
      }
      left -= size;
      h1->out_offset = 0;
      done++;
    }
    g_ptr_array_remove_range (h1->out, 0, done);
  }
  if (h1->out_last)
    h1_answered (h1);
}

static void
h1_queue (H1Conn *h1, GBytes *bytes)
{
  if (g_bytes_get_size (bytes) > 0)
    g_ptr_array_add (h1->out, g_bytes_ref (bytes));
}

static void
h1_queue_text (H1Conn *h1, GString *text)
{
  gsize len = text->len;
  g_ptr_array_add (h1->out, g_bytes_new_take (g_string_free (text, FALSE), len));
}

/* The answer's head: @length of body, chunked with -1, neither with -2. */
static GString *
h1_head (H1Conn *h1, EdgeRequest *request, gssize length)
{
  GString *head = g_string_sized_new (512);
  char number[24];
  g_string_append (head, "HTTP/1.1 ");
  g_snprintf (number, sizeof number, "%u ", request->status);
  g_string_append (head, number);
  g_string_append (head, soup_status_get_phrase (request->status));
  g_string_append (head, "\r\nServer: edged/" EDGED_VERSION "\r\nDate: ");
  g_string_append (head, gateway_http_date ());
  g_string_append (head, "\r\n");
  SoupMessageHeadersIter iter;
  const char *name, *value;
  soup_message_headers_iter_init (&iter, request->response_headers);
  while (soup_message_headers_iter_next (&iter, &name, &value)) {
    if (g_ascii_strcasecmp (name, "Content-Length") == 0 ||
        g_ascii_strcasecmp (name, "Transfer-Encoding") == 0 ||
        g_ascii_strcasecmp (name, "Connection") == 0)
      continue;
    g_string_append (head, name);
    g_string_append (head, ": ");
    g_string_append (head, value);
    g_string_append (head, "\r\n");
  }
  if (length >= 0) {
    g_string_append (head, "Content-Length: ");
    g_snprintf (number, sizeof number, "%zd", length);
    g_string_append (head, number);
    g_string_append (head, "\r\n");
  } else if (length == -1) {
    g_string_append (head, "Transfer-Encoding: chunked\r\n");
  }
  if (h1->close_after)
    g_string_append (head, "Connection: close\r\n");
  g_string_append (head, "\r\n");
  return head;
}

static void
h1_respond (EdgeRequest *request)
{
  H1Conn *h1 = request->link;
  if (h1 == NULL)
    return;
  gsize length = 0;
  for (guint i = 0; i < request->parts->len; i++)
    length += g_bytes_get_size (g_ptr_array_index (request->parts, i));
  /* Answers that have no body say no length either (RFC 9110, 8.6). */
  guint status = request->status;
  gboolean bodiless = SOUP_STATUS_IS_INFORMATIONAL (status) || status == SOUP_STATUS_NO_CONTENT ||
                      status == SOUP_STATUS_NOT_MODIFIED;
  h1_queue_text (h1, h1_head (h1, request, bodiless ? -2 : (gssize) length));
  if (!bodiless && !g_str_equal (request->method, "HEAD"))
    for (guint i = 0; i < request->parts->len; i++)
      h1_queue (h1, g_ptr_array_index (request->parts, i));
  h1->out_last = TRUE;
  h1_set_state (h1, H1_WRITING);
  h1_flush (h1);
}

static void
h1_stream_begin (EdgeRequest *request)
{
  H1Conn *h1 = request->link;
  if (h1 == NULL)
    return;
  h1_queue_text (h1, h1_head (h1, request, -1));
  h1_set_state (h1, H1_STREAMING);
  h1_reading (h1, TRUE); /* to notice the client's end */
  h1_flush (h1);
}

static void
h1_stream_write (EdgeRequest *request, GBytes *bytes)
{
  H1Conn *h1 = request->link;
  gsize size = g_bytes_get_size (bytes);
  if (h1 == NULL || h1->out_last || size == 0)
    return;
  GString *line = g_string_new (NULL);
  g_string_printf (line, "%zx\r\n", size);
  h1_queue_text (h1, line);
  h1_queue (h1, bytes);
  h1_queue_text (h1, g_string_new ("\r\n"));
  h1_flush (h1);
}

static void
h1_stream_end (EdgeRequest *request)
{
  H1Conn *h1 = request->link;
  if (h1 == NULL || h1->out_last)
    return;
  h1_queue_text (h1, g_string_new ("0\r\n\r\n"));
  h1->out_last = TRUE;
  h1_flush (h1);
}

const GatewayTransport gateway_h1_transport = {
  .respond = h1_respond,
  .stream_begin = h1_stream_begin,
  .stream_write = h1_stream_write,
  .stream_end = h1_stream_end,
  .version = SOUP_HTTP_1_1,
};

/* ---- a new connection ---- */

void
gateway_h1_serve (EdgeGateway *gateway, Conn *conn, GSocketConnection *connection)
{
  H1Conn *h1 = g_new0 (H1Conn, 1);
  h1->gateway = gateway;
  h1->conn = conn;
  h1->connection = g_object_ref (connection);
  h1->fd = g_socket_get_fd (g_socket_connection_get_socket (connection));
  h1->out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  conn->h1 = h1;
  h1_set_state (h1, H1_IDLE);

  h1->watch = (H1Source *) g_source_new (&h1_source_funcs, sizeof (H1Source));
  h1->watch->h1 = h1;
  h1->watch->tag = g_source_add_unix_fd ((GSource *) h1->watch, h1->fd,
                                         G_IO_IN | G_IO_HUP | G_IO_ERR);
  h1->reading = TRUE;
  g_source_set_name ((GSource *) h1->watch, "edge http1");
  edge_source_quiet ((GSource *) h1->watch);
  g_source_attach ((GSource *) h1->watch, NULL);

  if (h1_period_us (h1) > 0) {
    h1->deadline = edge_deadline_source_new (g_get_monotonic_time () + h1_period_us (h1));
    g_source_set_callback (h1->deadline, h1_deadline_passed, h1, NULL);
    g_source_attach (h1->deadline, NULL);
  }
  /* The first request may be waiting already (the sniff saw bytes). */
  h1_take_request (h1);
}
