/* The Runtime API's HTTP/1.1 server: what runtime clients send (kept-alive
 * connections, pipelining, chunked bodies, Expect: 100-continue, HTTP/1.0,
 * Connection: close), what it refuses, and a runtime hanging up on a
 * request that waits. The client is a plain socket driven from the test,
 * turning the server's loop between its reads and writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "functions-private.h"

#define MAX_BODY (64 * 1024)

typedef struct {
  FunctionsRuntimeServer *server;
  FunctionsRuntimeRequest *parked; /* a GET /park, unanswered */
  guint gone;
  guint handled;
  gboolean too_large;
} Fixture;

/* Answers at once with what it got: {"method","path","length"}; GET /park
 * waits for the test; a body over the limit is answered 413. */
static void
on_request (FunctionsRuntimeRequest *request, gpointer data)
{
  Fixture *f = data;
  f->handled++;
  const char *path = functions_runtime_request_path (request);
  if (g_str_equal (path, "/park")) {
    f->parked = request;
    return;
  }
  if (functions_runtime_request_too_large (request)) {
    f->too_large = TRUE;
    functions_runtime_answer_json (request, 413, "{\"errorType\":\"RequestEntityTooLarge\"}");
    return;
  }
  GBytes *body = functions_runtime_request_body (request);
  gsize len;
  const guint8 *bytes = g_bytes_get_data (body, &len);
  guint sum = 0;
  for (gsize i = 0; i < len; i++)
    sum += bytes[i];
  g_autofree char *json = g_strdup_printf (
      "{\"method\":\"%s\",\"path\":\"%s\",\"length\":%zu,\"sum\":%u}",
      functions_runtime_request_method (request), path, len, sum);
  const char *const headers[] = { "X-Echo", "yes", NULL };
  g_autoptr (GBytes) answer = g_bytes_new (json, strlen (json));
  functions_runtime_answer (request, 200, headers, answer);
}

static void
on_gone (FunctionsRuntimeRequest *request, gpointer data)
{
  Fixture *f = data;
  if (f->parked == request)
    f->parked = NULL;
  f->gone++;
}

static int
setup (void **state)
{
  Fixture *f = g_new0 (Fixture, 1);
  GError *error = NULL;
  f->server = functions_runtime_server_new (MAX_BODY, on_request, on_gone, f, &error);
  assert_null (error);
  assert_non_null (f->server);
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  Fixture *f = *state;
  functions_runtime_server_free (f->server);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_free (f);
  return 0;
}

static int
client (Fixture *f)
{
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK),
                              .sin_port = htons (functions_runtime_server_port (f->server)) };
  int rc = connect (fd, (struct sockaddr *) &addr, sizeof addr);
  assert_true (rc == 0 || errno == EINPROGRESS);
  return fd;
}

/* Whole answers in @in (each with its Content-Length), 100 Continue
 * interim answers not counted. */
static guint
answers_in (const GString *in)
{
  guint count = 0;
  const char *p = in->str, *end = in->str + in->len;
  while (p < end) {
    const char *blank = g_strstr_len (p, end - p, "\r\n\r\n");
    if (blank == NULL)
      break;
    if (g_str_has_prefix (p, "HTTP/1.1 100 ")) {
      p = blank + 4;
      continue;
    }
    const char *length = g_strstr_len (p, blank - p, "Content-Length: ");
    gsize body = length ? (gsize) g_ascii_strtoull (length + 16, NULL, 10) : 0;
    if ((gsize) (end - (blank + 4)) < body)
      break;
    count++;
    p = blank + 4 + body;
  }
  return count;
}

typedef struct {
  GString *in;
  gboolean closed; /* the server ended the connection */
} Exchange;

/* Sends @out (in pieces of @piece bytes, the loop turning between them),
 * then reads until @answers whole answers are in, the server closes, or
 * two seconds pass. */
static Exchange
exchange (int fd, const char *out, gsize out_len, gsize piece, guint answers)
{
  Exchange ex = { g_string_new (NULL), FALSE };
  gsize sent = 0;
  gint64 deadline = g_get_monotonic_time () + 2 * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < deadline) {
    if (sent < out_len) {
      ssize_t n = send (fd, out + sent, MIN (piece, out_len - sent), MSG_NOSIGNAL);
      if (n > 0)
        sent += (gsize) n;
      else if (n < 0 && errno != EAGAIN)
        sent = out_len; /* refused mid-way */
    }
    g_main_context_iteration (NULL, FALSE);
    char buf[65536];
    ssize_t n = recv (fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0)
      g_string_append_len (ex.in, buf, n);
    else if (n == 0 || (n < 0 && errno != EAGAIN)) {
      ex.closed = TRUE;
      break;
    }
    if (sent == out_len && answers > 0 && answers_in (ex.in) >= answers)
      break;
    if (n <= 0)
      g_usleep (200);
  }
  return ex;
}

static void
exchange_clear (Exchange *ex)
{
  g_string_free (ex->in, TRUE);
}

static void
test_kept_alive (void **state)
{
  Fixture *f = *state;
  int fd = client (f);
  for (int i = 0; i < 3; i++) {
    static const char get[] = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
                              "Host: 127.0.0.1\r\nUser-Agent: test\r\n\r\n";
    Exchange ex = exchange (fd, get, strlen (get), 4096, 1);
    assert_false (ex.closed);
    assert_true (g_str_has_prefix (ex.in->str, "HTTP/1.1 200 OK\r\n"));
    assert_non_null (strstr (ex.in->str, "\r\nX-Echo: yes\r\n"));
    assert_non_null (strstr (ex.in->str, "\r\nContent-Type: application/json\r\n"));
    assert_null (strstr (ex.in->str, "Connection: close"));
    assert_non_null (strstr (ex.in->str, "{\"method\":\"GET\",\"path\":\"/2018-06-01/runtime/"
                                         "invocation/next\",\"length\":0,\"sum\":0}"));
    exchange_clear (&ex);
  }
  assert_int_equal (f->handled, 3);
  close (fd);
}

static void
test_pipelined_in_order (void **state)
{
  Fixture *f = *state;
  int fd = client (f);
  static const char three[] = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                              "GET /b?x=1 HTTP/1.1\r\n\r\n"
                              "POST /c HTTP/1.1\r\nContent-Length: 1\r\n\r\nz";
  Exchange ex = exchange (fd, three, strlen (three), sizeof three, 3);
  assert_int_equal (answers_in (ex.in), 3);
  const char *a = strstr (ex.in->str, "\"path\":\"/a\",\"length\":3,\"sum\":294");
  const char *b = strstr (ex.in->str, "\"path\":\"/b\",\"length\":0");
  const char *c = strstr (ex.in->str, "\"path\":\"/c\",\"length\":1,\"sum\":122");
  assert_true (a && b && c && a < b && b < c);
  exchange_clear (&ex);
  close (fd);
}

static void
test_chunked_in_pieces (void **state)
{
  Fixture *f = *state;
  int fd = client (f);
  /* Chunks with an extension and a trailer, sent 3 bytes at a time. */
  static const char chunked[] = "POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "4;ext=1\r\nwxyz\r\n"
                                "A\r\n0123456789\r\n"
                                "0\r\nX-Trailer: t\r\n\r\n";
  Exchange ex = exchange (fd, chunked, strlen (chunked), 3, 1);
  assert_non_null (strstr (ex.in->str, "\"length\":14,"));
  exchange_clear (&ex);
  /* The connection goes on after it. */
  static const char get[] = "GET /after HTTP/1.1\r\n\r\n";
  ex = exchange (fd, get, strlen (get), 64, 1);
  assert_non_null (strstr (ex.in->str, "\"path\":\"/after\""));
  exchange_clear (&ex);
  close (fd);
}

static void
test_expect_continue (void **state)
{
  Fixture *f = *state;
  int fd = client (f);
  static const char head[] = "POST /e HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
  Exchange ex = exchange (fd, head, strlen (head), 4096, 0);
  assert_string_equal (ex.in->str, "HTTP/1.1 100 Continue\r\n\r\n");
  exchange_clear (&ex);
  ex = exchange (fd, "hello", 5, 4096, 1);
  assert_true (g_str_has_prefix (ex.in->str, "HTTP/1.1 200 OK\r\n"));
  assert_non_null (strstr (ex.in->str, "\"length\":5,"));
  exchange_clear (&ex);
  close (fd);
}

static void
test_big_body_in_pieces (void **state)
{
  Fixture *f = *state;
  int fd = client (f);
  gsize len = MAX_BODY; /* exactly the limit */
  g_autoptr (GString) out = g_string_new (NULL);
  g_string_printf (out, "POST /big HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", len);
  guint sum = 0;
  for (gsize i = 0; i < len; i++) {
    char c = (char) ('a' + i % 26);
    g_string_append_c (out, c);
    sum += (guint8) c;
  }
  Exchange ex = exchange (fd, out->str, out->len, 1000, 1);
  g_autofree char *want = g_strdup_printf ("\"length\":%zu,\"sum\":%u}", len, sum);
  assert_non_null (strstr (ex.in->str, want));
  exchange_clear (&ex);
  close (fd);
}

static void
test_too_large_ends_the_connection (void **state)
{
  Fixture *f = *state;
  /* Declared: refused before the body is sent (no 100 Continue). */
  int fd = client (f);
  g_autofree char *declared = g_strdup_printf (
      "POST /big HTTP/1.1\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", MAX_BODY + 1);
  Exchange ex = exchange (fd, declared, strlen (declared), 4096, 1);
  assert_true (g_str_has_prefix (ex.in->str, "HTTP/1.1 413 "));
  assert_non_null (strstr (ex.in->str, "Connection: close\r\n"));
  assert_true (f->too_large);
  exchange_clear (&ex);
  ex = exchange (fd, "", 0, 1, 0);
  assert_true (ex.closed);
  exchange_clear (&ex);
  close (fd);

  /* Chunked: refused once the chunks pass the limit. */
  f->too_large = FALSE;
  fd = client (f);
  g_autoptr (GString) out = g_string_new ("POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 3; i++) {
    g_string_append_printf (out, "%x\r\n", MAX_BODY / 2);
    for (int j = 0; j < MAX_BODY / 2; j++)
      g_string_append_c (out, 'x');
    g_string_append (out, "\r\n");
  }
  ex = exchange (fd, out->str, out->len, 8192, 1);
  assert_true (g_str_has_prefix (ex.in->str, "HTTP/1.1 413 "));
  assert_true (f->too_large);
  exchange_clear (&ex);
  ex = exchange (fd, "", 0, 1, 0);
  assert_true (ex.closed);
  exchange_clear (&ex);
  close (fd);
}

static void
test_close_and_http10 (void **state)
{
  Fixture *f = *state;
  static const char *const requests[] = {
    "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
    "GET /x HTTP/1.0\r\n\r\n",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (requests); i++) {
    int fd = client (f);
    Exchange ex = exchange (fd, requests[i], strlen (requests[i]), 4096, 0);
    assert_true (ex.closed);
    assert_int_equal (answers_in (ex.in), 1);
    assert_non_null (strstr (ex.in->str, "Connection: close\r\n"));
    exchange_clear (&ex);
    close (fd);
  }
  /* HTTP/1.0 that asks to be kept alive is. */
  int fd = client (f);
  static const char keep[] = "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  Exchange ex = exchange (fd, keep, strlen (keep), 4096, 1);
  assert_false (ex.closed);
  assert_null (strstr (ex.in->str, "Connection: close"));
  exchange_clear (&ex);
  close (fd);
}

static void
test_refused (void **state)
{
  Fixture *f = *state;
  static const struct {
    const char *request;
    const char *status;
  } cases[] = {
    { "NONSENSE\r\n\r\n", "HTTP/1.1 400 " },
    { "GET /x HTTP/2.0\r\n\r\n", "HTTP/1.1 400 " },
    { "GET  HTTP/1.1\r\n\r\n", "HTTP/1.1 400 " },
    { "POST /x HTTP/1.1\r\nContent-Length: ten\r\n\r\n", "HTTP/1.1 400 " },
    { "POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", "HTTP/1.1 400 " },
    { "POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400 " },
    { "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "HTTP/1.1 400 " },
    { "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HTTP/1.1 400 " },
    { "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcde\r\n", "HTTP/1.1 400 " },
  };
  guint handled = f->handled;
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    int fd = client (f);
    Exchange ex = exchange (fd, cases[i].request, strlen (cases[i].request), 4096, 0);
    if (!g_str_has_prefix (ex.in->str, cases[i].status))
      fail_msg ("%s: %s", cases[i].request, ex.in->str);
    assert_true (ex.closed);
    exchange_clear (&ex);
    close (fd);
  }
  assert_int_equal (f->handled, handled); /* none reached the handler */
}

static void
test_head_limit (void **state)
{
  Fixture *f = *state;
  int fd = client (f);
  g_autoptr (GString) out = g_string_new ("GET /x HTTP/1.1\r\n");
  while (out->len < 1200 * 1024)
    g_string_append (out, "X-Filler: 0123456789012345678901234567890123456789\r\n");
  Exchange ex = exchange (fd, out->str, out->len, 65536, 0);
  assert_true (g_str_has_prefix (ex.in->str, "HTTP/1.1 431 "));
  assert_true (ex.closed);
  assert_int_equal (f->handled, 0);
  exchange_clear (&ex);
  close (fd);
}

static void
test_hang_up_while_parked (void **state)
{
  Fixture *f = *state;
  int fd = client (f);
  static const char park[] = "GET /park HTTP/1.1\r\n\r\n";
  Exchange ex = exchange (fd, park, strlen (park), 4096, 0);
  assert_non_null (f->parked);
  assert_int_equal (ex.in->len, 0);
  exchange_clear (&ex);
  close (fd);
  for (int i = 0; i < 200 && f->gone == 0; i++) {
    g_main_context_iteration (NULL, FALSE);
    g_usleep (1000);
  }
  assert_int_equal (f->gone, 1);
  assert_null (f->parked);

  /* Answered later, a parked request goes out then, and a request sent
   * behind it (pipelined) is answered after it. */
  fd = client (f);
  static const char park_then_get[] = "GET /park HTTP/1.1\r\n\r\nGET /behind HTTP/1.1\r\n\r\n";
  ex = exchange (fd, park_then_get, strlen (park_then_get), 4096, 0);
  assert_non_null (f->parked);
  assert_int_equal (ex.in->len, 0);
  exchange_clear (&ex);
  g_autoptr (GBytes) body = g_bytes_new_static ("{}", 2);
  functions_runtime_answer (g_steal_pointer (&f->parked), 200, NULL, body);
  ex = exchange (fd, "", 0, 1, 2);
  assert_true (g_str_has_prefix (ex.in->str, "HTTP/1.1 200 OK\r\n"));
  const char *first = strstr (ex.in->str, "\r\n\r\n{}HTTP/1.1 200 OK\r\n");
  assert_non_null (first);
  assert_non_null (strstr (first, "\"path\":\"/behind\""));
  exchange_clear (&ex);
  close (fd);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_kept_alive, setup, teardown),
    cmocka_unit_test_setup_teardown (test_pipelined_in_order, setup, teardown),
    cmocka_unit_test_setup_teardown (test_chunked_in_pieces, setup, teardown),
    cmocka_unit_test_setup_teardown (test_expect_continue, setup, teardown),
    cmocka_unit_test_setup_teardown (test_big_body_in_pieces, setup, teardown),
    cmocka_unit_test_setup_teardown (test_too_large_ends_the_connection, setup, teardown),
    cmocka_unit_test_setup_teardown (test_close_and_http10, setup, teardown),
    cmocka_unit_test_setup_teardown (test_refused, setup, teardown),
    cmocka_unit_test_setup_teardown (test_head_limit, setup, teardown),
    cmocka_unit_test_setup_teardown (test_hang_up_while_parked, setup, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
