/* runtime-http.c: the HTTP/1.1 server an execution environment's runtime
 * talks to (the Lambda Runtime API, functions-private.h).
 *
 * Its peer is one runtime on the loopback, asking for the next invocation
 * and posting its answer, two requests per invocation: this serves them
 * straight from the socket, with a request object and two buffers a
 * connection, where a general-purpose server would build messages,
 * signals and sources for each. It speaks what runtime clients send:
 * keep-alive and Connection: close, HTTP/1.0, Content-Length and chunked
 * bodies, Expect: 100-continue, pipelined requests (answered in order).
 *
 *   read ──▶ head (≤ RUNTIME_HEAD_MAX) ──▶ body (Content-Length or chunks,
 *            ≤ the server's limit) ──▶ handler ··· answer ──▶ write
 *
 * A connection handles one request at a time: the next is read only once
 * the one before has been answered (a parked "next" can wait minutes).
 * While it waits, the connection is still watched, so that a runtime that
 * hangs up is noticed (the server's gone callback) rather than handed an
 * invocation it will never answer. A body over the limit is not read: the
 * handler is told (functions_runtime_request_too_large), answers, and the
 * connection ends after the answer.
 */
#define G_LOG_DOMAIN "functions"

#include "functions-private.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* A request's line and headers. Runtime clients send a few short headers;
 * an error report may carry an X-Ray cause, which Lambda caps at 1 MiB. */
#define RUNTIME_HEAD_MAX (1024 * 1024 + 64 * 1024)
#define RUNTIME_READ_CHUNK (64 * 1024)
/* Connections one environment's runtime may hold open at once. */
#define RUNTIME_CONNECTIONS_MAX 64

typedef struct _Conn Conn;

typedef enum {
  BODY_NONE,
  BODY_LENGTH,  /* Content-Length bytes */
  BODY_CHUNKED, /* chunk size lines, chunks, trailers */
} BodyKind;

struct _FunctionsRuntimeRequest {
  Conn *conn;
  char *method;
  char *path;   /* without its query */
  GBytes *body; /* NULL when too large */
  gboolean too_large;
  gboolean close_after; /* the connection ends with the answer */
};

struct _Conn {
  gint refs;
  FunctionsRuntimeServer *server;
  int fd;
  guint watch;             /* the socket: G_IO_IN, and G_IO_OUT while output waits */
  GIOCondition watched;    /* what watch is for */
  guint process_source;    /* parses a request already read (pipelined) */
  GByteArray *in;          /* read, not yet parsed */
  GString *out;            /* the answer's head, then its body if copied */
  GBytes *out_body;        /* the answer's body, written from where it is */
  gsize out_done;          /* bytes of out, then of out_body, written */
  gboolean closing;        /* ends once out is written */
  gboolean closed;
  FunctionsRuntimeRequest *request; /* being read, or waiting for its answer */
  gboolean dispatched;     /* request is with the handler */
  gboolean processing;     /* in conn_process, which goes on to the next request */
  /* The request being read */
  gsize head_len;          /* 0: head not whole yet */
  BodyKind body_kind;
  gsize body_length;       /* BODY_LENGTH: its length */
  GByteArray *body;        /* BODY_CHUNKED: the chunks so far */
  gsize parsed;            /* BODY_CHUNKED: bytes of in consumed after the head */
  gboolean chunks_done;    /* the last chunk came; trailers follow */
  gsize head_scanned;      /* bytes of in searched for the head's end, without finding it */
};

struct _FunctionsRuntimeServer {
  int fd;
  guint16 port;
  guint accept_watch;
  gsize max_body;
  FunctionsRuntimeHandler handler;
  FunctionsRuntimeGone gone;
  gpointer data;
  GPtrArray *conns; /* Conn * */
};

static void conn_close (Conn *conn);
static void conn_process (Conn *conn);
static void conn_rewatch (Conn *conn);

/* ---- requests ---- */

static void
request_free (FunctionsRuntimeRequest *request)
{
  if (request == NULL)
    return;
  g_free (request->method);
  g_free (request->path);
  g_clear_pointer (&request->body, g_bytes_unref);
  g_free (request);
}

const char *
functions_runtime_request_method (FunctionsRuntimeRequest *request)
{
  return request->method;
}

const char *
functions_runtime_request_path (FunctionsRuntimeRequest *request)
{
  return request->path;
}

GBytes *
functions_runtime_request_body (FunctionsRuntimeRequest *request)
{
  return request->body;
}

gboolean
functions_runtime_request_too_large (FunctionsRuntimeRequest *request)
{
  return request->too_large;
}

/* ---- connections ---- */

static void
conn_unref (Conn *conn)
{
  if (--conn->refs > 0)
    return;
  g_byte_array_unref (conn->in);
  g_string_free (conn->out, TRUE);
  g_clear_pointer (&conn->out_body, g_bytes_unref);
  g_clear_pointer (&conn->body, g_byte_array_unref);
  request_free (conn->request);
  g_free (conn);
}

static gboolean
conn_output_waiting (Conn *conn)
{
  return conn->out->len > 0 || conn->out_body;
}

/* Writes what output waits, as far as the socket takes it now. FALSE when
 * the connection failed (it is closed). */
static gboolean
conn_flush (Conn *conn)
{
  while (conn_output_waiting (conn)) {
    struct iovec iov[2];
    int n = 0;
    gsize done = conn->out_done;
    if (done < conn->out->len) {
      iov[n++] = (struct iovec) { conn->out->str + done, conn->out->len - done };
      done = 0;
    } else
      done -= conn->out->len;
    gsize body_len = 0;
    const char *body = conn->out_body ? g_bytes_get_data (conn->out_body, &body_len) : NULL;
    if (body_len > done)
      iov[n++] = (struct iovec) { (char *) body + done, body_len - done };
    if (n == 0) {
      g_string_truncate (conn->out, 0);
      g_clear_pointer (&conn->out_body, g_bytes_unref);
      conn->out_done = 0;
      break;
    }
    ssize_t written = writev (conn->fd, iov, n);
    if (written < 0 && errno == EINTR)
      continue;
    if (written < 0 && errno == EAGAIN)
      return TRUE;
    if (written < 0) {
      conn_close (conn);
      return FALSE;
    }
    conn->out_done += (gsize) written;
  }
  if (conn->closing) {
    conn_close (conn);
    return FALSE;
  }
  return TRUE;
}

/* Queues @head and @body (nullable) and writes what it can now; the
 * socket's readiness writes the rest. */
static void
conn_send (Conn *conn, const char *head, gsize head_len, GBytes *body)
{
  if (conn->closed)
    return;
  if (conn->out_body) {
    /* An earlier answer still going out: this one's body follows it whole. */
    gsize len;
    const char *data = g_bytes_get_data (conn->out_body, &len);
    g_string_append_len (conn->out, data, (gssize) len);
    g_clear_pointer (&conn->out_body, g_bytes_unref);
  }
  g_string_append_len (conn->out, head, (gssize) head_len);
  conn->out_body = body ? g_bytes_ref (body) : NULL;
  if (conn_flush (conn))
    conn_rewatch (conn);
}

static void
conn_close (Conn *conn)
{
  if (conn->closed)
    return;
  conn->closed = TRUE;
  g_clear_handle_id (&conn->watch, g_source_remove);
  g_clear_handle_id (&conn->process_source, g_source_remove);
  close (conn->fd);
  conn->fd = -1;
  FunctionsRuntimeServer *server = conn->server;
  FunctionsRuntimeRequest *request = g_steal_pointer (&conn->request);
  if (request && conn->dispatched && server->gone)
    server->gone (request, server->data);
  request_free (request);
  g_ptr_array_remove_fast (server->conns, conn);
  conn_unref (conn);
}

/* An answer to a request that never was one: the connection ends. */
static void
conn_refuse (Conn *conn, guint status, const char *reason)
{
  g_autofree char *body = g_strdup_printf (
      "{\"errorType\":\"InvalidRequest\",\"errorMessage\":\"%s\"}", reason);
  g_autofree char *head = g_strdup_printf (
      "HTTP/1.1 %u %s\r\nServer: edged-runtime\r\nContent-Type: application/json\r\n"
      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
      status, status == 431 ? "Request Header Fields Too Large" : "Bad Request",
      strlen (body), body);
  conn->closing = TRUE;
  g_clear_pointer (&conn->body, g_byte_array_unref);
  request_free (g_steal_pointer (&conn->request));
  conn->head_len = 0;
  conn->body_kind = BODY_NONE;
  g_byte_array_set_size (conn->in, 0);
  conn_send (conn, head, strlen (head), NULL);
}

/* The value of header @name in the head's header lines [@start, @end),
 * with its length; NULL if absent. */
static const char *
head_find (const char *start, const char *end, const char *name, gsize *ret_len)
{
  gsize name_len = strlen (name);
  const char *line = start;
  while (line < end) {
    const char *eol = memchr (line, '\n', (gsize) (end - line));
    if (eol == NULL)
      eol = end;
    if ((gsize) (eol - line) > name_len && line[name_len] == ':' &&
        g_ascii_strncasecmp (line, name, name_len) == 0) {
      const char *value = line + name_len + 1;
      const char *value_end = eol;
      while (value < value_end && (*value == ' ' || *value == '\t'))
        value++;
      while (value_end > value && (value_end[-1] == '\r' || value_end[-1] == ' ' ||
                                   value_end[-1] == '\t'))
        value_end--;
      *ret_len = (gsize) (value_end - value);
      return value;
    }
    line = eol + 1;
  }
  return NULL;
}

static gboolean
value_has_token (const char *value, gsize len, const char *token)
{
  gsize token_len = strlen (token);
  for (gsize i = 0; i + token_len <= len; i++)
    if (g_ascii_strncasecmp (value + i, token, token_len) == 0 &&
        (i == 0 || value[i - 1] == ',' || value[i - 1] == ' ') &&
        (i + token_len == len || value[i + token_len] == ',' || value[i + token_len] == ' '))
      return TRUE;
  return FALSE;
}

/* Parses the head of conn->in (conn->head_len bytes, ending in the blank
 * line) into a new request. FALSE when it is not one (answered 400). */
static gboolean
conn_parse_head (Conn *conn)
{
  const char *head = (const char *) conn->in->data;
  const char *end = head + conn->head_len;
  const char *eol = memchr (head, '\n', conn->head_len);
  /* METHOD SP TARGET SP HTTP/1.x */
  const char *sp1 = memchr (head, ' ', (gsize) (eol - head));
  const char *sp2 = sp1 ? memchr (sp1 + 1, ' ', (gsize) (eol - sp1 - 1)) : NULL;
  const char *version = sp2 ? sp2 + 1 : NULL;
  gsize version_len = version ? (gsize) (eol - version) : 0;
  if (version_len > 0 && version[version_len - 1] == '\r')
    version_len--;
  if (sp1 == NULL || sp2 == NULL || sp1 == head || sp2 == sp1 + 1 || version_len != 8 ||
      strncmp (version, "HTTP/1.", 7) != 0 || (version[7] != '0' && version[7] != '1')) {
    conn_refuse (conn, 400, "not an HTTP/1.x request line");
    return FALSE;
  }
  for (const char *c = head; c < sp2; c++)
    if ((guchar) *c < 0x21 && c != sp1) {
      conn_refuse (conn, 400, "not an HTTP/1.x request line");
      return FALSE;
    }
  gboolean http10 = version[7] == '0';
  const char *headers = eol + 1;

  FunctionsRuntimeRequest *request = g_new0 (FunctionsRuntimeRequest, 1);
  request->conn = conn;
  request->method = g_strndup (head, (gsize) (sp1 - head));
  const char *target = sp1 + 1;
  const char *query = memchr (target, '?', (gsize) (sp2 - target));
  request->path = g_strndup (target, (gsize) ((query ? query : sp2) - target));
  conn->request = request;

  gsize len;
  const char *connection = head_find (headers, end, "Connection", &len);
  if (connection && value_has_token (connection, len, "close"))
    request->close_after = TRUE;
  else if (http10)
    request->close_after = !(connection && value_has_token (connection, len, "keep-alive"));

  gsize encoding_len, length_len;
  const char *encoding = head_find (headers, end, "Transfer-Encoding", &encoding_len);
  const char *length = head_find (headers, end, "Content-Length", &length_len);
  conn->body_kind = BODY_NONE;
  conn->body_length = 0;
  conn->parsed = 0;
  conn->chunks_done = FALSE;
  if (encoding) {
    if (length || http10 || !value_has_token (encoding, encoding_len, "chunked")) {
      conn_refuse (conn, 400, "a body with both a length and chunks, or unknown coding");
      return FALSE;
    }
    conn->body_kind = BODY_CHUNKED;
    conn->body = g_byte_array_new ();
  } else if (length) {
    guint64 value = 0;
    char digits[20] = "";
    if (length_len > 0 && length_len < sizeof digits)
      memcpy (digits, length, length_len);
    if (length_len == 0 || length_len >= sizeof digits ||
        !g_ascii_string_to_unsigned (digits, 10, 0, G_MAXINT64, &value, NULL)) {
      conn_refuse (conn, 400, "a Content-Length that is not a number");
      return FALSE;
    }
    conn->body_kind = value > 0 ? BODY_LENGTH : BODY_NONE;
    conn->body_length = (gsize) value;
    if (value > conn->server->max_body)
      request->too_large = TRUE;
  }
  const char *expect = head_find (headers, end, "Expect", &len);
  if (expect && conn->body_kind != BODY_NONE && !request->too_large &&
      value_has_token (expect, len, "100-continue")) {
    static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";
    conn_send (conn, go_on, sizeof go_on - 1, NULL);
  }
  return !conn->closed;
}

/* Reads chunks from conn->in past the head. TRUE when the body is whole;
 * FALSE when more must come or the connection ended (conn->closed). */
static gboolean
conn_parse_chunks (Conn *conn)
{
  FunctionsRuntimeServer *server = conn->server;
  for (;;) {
    const guint8 *data = conn->in->data + conn->head_len + conn->parsed;
    gsize avail = conn->in->len - conn->head_len - conn->parsed;
    const guint8 *eol = memchr (data, '\n', avail);
    if (eol == NULL) {
      if (avail > 4096) /* a size line, an extension, or a trailer that never ends */
        conn_refuse (conn, 400, "a chunk line too long");
      return FALSE;
    }
    gsize line_len = (gsize) (eol - data) + 1;
    if (conn->chunks_done) {
      /* Trailers, up to the blank line. */
      conn->parsed += line_len;
      if (line_len == 1 || (line_len == 2 && data[0] == '\r'))
        return TRUE;
      continue;
    }
    char *size_end = NULL;
    guint64 size = g_ascii_strtoull ((const char *) data, &size_end, 16);
    if (!g_ascii_isxdigit (data[0]) ||
        (*size_end != '\r' && *size_end != '\n' && *size_end != ';' && *size_end != ' ' &&
         *size_end != '\t')) {
      conn_refuse (conn, 400, "not a chunk size");
      return FALSE;
    }
    if (size > server->max_body) {
      conn->request->too_large = TRUE;
      return TRUE;
    }
    if (size == 0) {
      conn->chunks_done = TRUE;
      conn->parsed += line_len;
      continue;
    }
    if (avail < line_len + size + 2)
      return FALSE; /* the rest of the chunk is still to come */
    const guint8 *chunk = data + line_len;
    if (chunk[size] != '\r' || chunk[size + 1] != '\n') {
      conn_refuse (conn, 400, "a chunk without its line end");
      return FALSE;
    }
    if (conn->body->len + size > server->max_body) {
      conn->request->too_large = TRUE;
      return TRUE;
    }
    g_byte_array_append (conn->body, chunk, (guint) size);
    conn->parsed += line_len + size + 2;
  }
}

/* Hands the request to the handler, once it is whole. */
static void
conn_dispatch (Conn *conn, gsize consumed)
{
  FunctionsRuntimeRequest *request = conn->request;
  FunctionsRuntimeServer *server = conn->server;
  if (request->too_large) {
    /* Its body is not read: the connection ends with the answer. */
    request->close_after = TRUE;
    g_byte_array_set_size (conn->in, 0);
  } else {
    if (conn->body_kind == BODY_CHUNKED)
      request->body = g_byte_array_free_to_bytes (g_steal_pointer (&conn->body));
    else
      request->body = g_bytes_new (conn->in->data + conn->head_len, conn->body_length);
    g_byte_array_remove_range (conn->in, 0, (guint) consumed);
  }
  g_clear_pointer (&conn->body, g_byte_array_unref);
  conn->head_len = 0;
  conn->dispatched = TRUE;
  server->handler (request, server->data);
}

/* The length of the head at the start of conn->in, up to and with its
 * blank line; 0 while it is not all in. Each byte is searched once, however
 * many reads a long head takes. */
static gsize
conn_find_head_end (Conn *conn)
{
  const guint8 *data = conn->in->data;
  gsize len = conn->in->len;
  for (gsize i = conn->head_scanned; i + 1 < len; i++) {
    const guint8 *nl = memchr (data + i, '\n', len - 1 - i);
    if (nl == NULL)
      break;
    i = (gsize) (nl - data);
    if (nl[1] == '\n')
      return i + 2;
    if (nl[1] == '\r' && i + 2 < len && nl[2] == '\n')
      return i + 3;
    if (nl[1] == '\r' && i + 2 == len)
      break; /* "\n\r" at the end: the "\n" may still come */
  }
  /* The last two bytes may begin the blank line: searched again next time. */
  conn->head_scanned = len >= 2 ? len - 2 : 0;
  return 0;
}

/* Parses what has been read into a request, and hands it over once whole. */
static void
conn_process (Conn *conn)
{
  conn->refs++;
  conn->processing = TRUE;
  while (!conn->closed && !conn->dispatched && !conn->closing && conn->in->len > 0) {
    if (conn->head_len == 0) {
      /* Blank lines before a request are allowed (RFC 9112, 2.2). */
      guint skip = 0;
      while (skip < conn->in->len && (conn->in->data[skip] == '\r' || conn->in->data[skip] == '\n'))
        skip++;
      if (skip > 0) {
        g_byte_array_remove_range (conn->in, 0, skip);
        conn->head_scanned = 0;
      }
      gsize head_len = conn_find_head_end (conn);
      if (head_len == 0) {
        if (conn->in->len > RUNTIME_HEAD_MAX)
          conn_refuse (conn, 431, "the request's head is too long");
        break;
      }
      conn->head_len = head_len;
      conn->head_scanned = 0;
      if (!conn_parse_head (conn))
        break;
    }
    gsize consumed = conn->head_len;
    if (conn->request->too_large) {
      conn_dispatch (conn, consumed);
      break;
    }
    if (conn->body_kind == BODY_LENGTH) {
      if (conn->in->len - conn->head_len < conn->body_length)
        break; /* the rest is still to come */
      consumed += conn->body_length;
    } else if (conn->body_kind == BODY_CHUNKED) {
      if (!conn_parse_chunks (conn))
        break;
      consumed += conn->parsed;
    }
    conn_dispatch (conn, consumed);
  }
  conn->processing = FALSE;
  conn_unref (conn);
}

/* Reads what the socket has. FALSE when the connection ended. */
static gboolean
conn_read (Conn *conn)
{
  /* Unparsed input beyond one request's worth waits: the peer is sending
   * faster than its requests are answered. */
  gsize limit = RUNTIME_HEAD_MAX + conn->server->max_body + 64 * 1024;
  if (conn->closing) {
    /* Ending after its answer: what still comes is dropped, and read, so
     * that the answer is not lost to a reset. */
    char scratch[RUNTIME_READ_CHUNK];
    for (int rounds = 0; rounds < 16; rounds++) {
      ssize_t n = read (conn->fd, scratch, sizeof scratch);
      if (n > 0 || (n < 0 && errno == EINTR))
        continue;
      if (n < 0 && errno == EAGAIN)
        return TRUE;
      conn_close (conn);
      return FALSE;
    }
    return TRUE;
  }
  for (int rounds = 0; rounds < 16; rounds++) {
    gsize want = RUNTIME_READ_CHUNK;
    if (conn->body_kind == BODY_LENGTH && conn->request && !conn->request->too_large &&
        conn->in->len < conn->head_len + conn->body_length)
      want = MAX (want, conn->head_len + conn->body_length - conn->in->len);
    if (conn->in->len >= limit) {
      if (conn->dispatched)
        conn_close (conn); /* flooding while its request waits */
      else
        conn_refuse (conn, 400, "more than one request's worth sent at once");
      return FALSE;
    }
    want = MIN (want, limit - conn->in->len);
    guint old = conn->in->len;
    g_byte_array_set_size (conn->in, (guint) (old + want));
    ssize_t n = read (conn->fd, conn->in->data + old, want);
    g_byte_array_set_size (conn->in, (guint) (old + MAX (n, 0)));
    if (n > 0) {
      if ((gsize) n < want)
        return TRUE;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return TRUE;
    conn_close (conn); /* the runtime hung up, or the connection failed */
    return FALSE;
  }
  return TRUE;
}

static gboolean
on_conn_io (gint fd, GIOCondition condition, gpointer data)
{
  Conn *conn = data;
  conn->refs++;
  gboolean alive = TRUE;
  if (condition & G_IO_OUT)
    alive = conn_flush (conn);
  if (alive && (condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)))
    alive = conn_read (conn);
  if (alive)
    conn_process (conn);
  conn_rewatch (conn); /* output may have started or stopped waiting */
  conn_unref (conn);
  /* A closed connection's watch, or one replaced, is gone already. */
  return G_SOURCE_CONTINUE;
}

/* Watches the socket for input, and for room while output waits. */
static void
conn_rewatch (Conn *conn)
{
  if (conn->closed)
    return;
  GIOCondition want = G_IO_IN | (conn_output_waiting (conn) ? G_IO_OUT : 0);
  if (conn->watch && conn->watched == want)
    return;
  g_clear_handle_id (&conn->watch, g_source_remove);
  conn->watch = edge_fd_watch (conn->fd, want, on_conn_io, conn, NULL);
  conn->watched = want;
}

static gboolean
on_process (gpointer data)
{
  Conn *conn = data;
  conn->process_source = 0;
  conn->refs++;
  conn_process (conn);
  conn_rewatch (conn);
  conn_unref (conn);
  return G_SOURCE_REMOVE;
}

/* ---- answers ---- */

static const char *
reason_phrase (guint status)
{
  switch (status) {
  case 200: return "OK";
  case 202: return "Accepted";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 410: return "Gone";
  case 413: return "Payload Too Large";
  case 500: return "Internal Server Error";
  default: return "Unknown";
  }
}

void
functions_runtime_answer (FunctionsRuntimeRequest *request, guint status,
                          const char *const *headers, GBytes *body)
{
  Conn *conn = request->conn;
  g_return_if_fail (conn->request == request && conn->dispatched);
  gsize body_len = body ? g_bytes_get_size (body) : 0;
  char head[1024];
  GString *long_head = NULL;
  int n = g_snprintf (head, sizeof head,
                      "HTTP/1.1 %u %s\r\nServer: edged-runtime\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n%s",
                      status, reason_phrase (status), body_len,
                      request->close_after ? "Connection: close\r\n" : "");
  if (headers && headers[0]) {
    long_head = g_string_new_len (head, n);
    for (guint i = 0; headers[i] && headers[i + 1]; i += 2) {
      g_string_append (long_head, headers[i]);
      g_string_append_len (long_head, ": ", 2);
      g_string_append (long_head, headers[i + 1]);
      g_string_append_len (long_head, "\r\n", 2);
    }
    g_string_append (long_head, "\r\n");
  } else
    n += g_snprintf (head + n, sizeof head - (gsize) n, "\r\n");
  conn->refs++;
  conn->request = NULL;
  conn->dispatched = FALSE;
  if (request->close_after)
    conn->closing = TRUE;
  if (long_head) {
    conn_send (conn, long_head->str, long_head->len, body);
    g_string_free (long_head, TRUE);
  } else
    conn_send (conn, head, (gsize) n, body);
  request_free (request); /* after: @body may be its own */
  /* The next request may be in already (pipelined). Answered from inside
   * the handler, conn_process goes on to it; answered later, it is parsed
   * from the loop, not from inside whatever answered this one. */
  if (!conn->closed && !conn->processing && conn->in->len > 0 && conn->process_source == 0)
    conn->process_source = g_idle_add (on_process, conn);
  conn_unref (conn);
}

void
functions_runtime_answer_json (FunctionsRuntimeRequest *request, guint status, const char *json)
{
  g_autoptr (GBytes) body = g_bytes_new (json, strlen (json));
  functions_runtime_answer (request, status, NULL, body);
}

/* ---- the server ---- */

static gboolean
on_accept (gint fd, GIOCondition condition, gpointer data)
{
  FunctionsRuntimeServer *server = data;
  for (int i = 0; i < 16; i++) {
    int client = accept4 (fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
        g_warning ("Runtime API on port %u: accept: %s", server->port, g_strerror (errno));
      break;
    }
    if (server->conns->len >= RUNTIME_CONNECTIONS_MAX) {
      g_warning ("Runtime API on port %u: over %d connections, refusing one", server->port,
                 RUNTIME_CONNECTIONS_MAX);
      close (client);
      continue;
    }
    int on = 1;
    setsockopt (client, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    functions_runtime_server_adopt (server, client);
  }
  return G_SOURCE_CONTINUE;
}

void
functions_runtime_server_adopt (FunctionsRuntimeServer *server, int fd)
{
  Conn *conn = g_new0 (Conn, 1);
  conn->refs = 1;
  conn->server = server;
  conn->fd = fd;
  conn->in = g_byte_array_new ();
  conn->out = g_string_new (NULL);
  g_ptr_array_add (server->conns, conn);
  conn_rewatch (conn);
}

FunctionsRuntimeServer *
functions_runtime_server_new (gsize max_body, FunctionsRuntimeHandler handler,
                              FunctionsRuntimeGone gone, gpointer data, GError **error)
{
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
  socklen_t addr_len = sizeof addr;
  if (fd < 0 || bind (fd, (struct sockaddr *) &addr, sizeof addr) != 0 || listen (fd, 16) != 0 ||
      getsockname (fd, (struct sockaddr *) &addr, &addr_len) != 0) {
    int saved = errno;
    if (fd >= 0)
      close (fd);
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                 "cannot listen on the loopback for the Runtime API: %s", g_strerror (saved));
    return NULL;
  }
  FunctionsRuntimeServer *server = g_new0 (FunctionsRuntimeServer, 1);
  server->fd = fd;
  server->port = ntohs (addr.sin_port);
  server->max_body = max_body;
  server->handler = handler;
  server->gone = gone;
  server->data = data;
  server->conns = g_ptr_array_new ();
  server->accept_watch = edge_fd_watch (fd, G_IO_IN, on_accept, server, NULL);
  return server;
}

guint16
functions_runtime_server_port (FunctionsRuntimeServer *server)
{
  return server->port;
}

void
functions_runtime_server_free (FunctionsRuntimeServer *server)
{
  if (server == NULL)
    return;
  g_clear_handle_id (&server->accept_watch, g_source_remove);
  close (server->fd);
  server->gone = NULL; /* the handler's owner is the one letting go */
  while (server->conns->len > 0)
    conn_close (g_ptr_array_index (server->conns, server->conns->len - 1));
  g_ptr_array_unref (server->conns);
  g_free (server);
}
