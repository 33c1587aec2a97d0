/* Fuzzes the Runtime API's HTTP/1.1 server (functions/runtime-http.c) with
 * whatever a runtime could send on one connection: the input is written to
 * the other end of a socket pair in pieces, the loop turning between them.
 * Every request that is whole is answered at once (a body over the limit
 * with 413), except "/park", which is answered only after the input ends,
 * or dropped with its connection. Everything the server writes must be
 * HTTP/1.1 answers; the server must neither crash nor leak. */
#include "functions-private.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BODY 4096

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static FunctionsRuntimeRequest *parked;

static void
on_request (FunctionsRuntimeRequest *request, gpointer data)
{
  if (g_str_equal (functions_runtime_request_path (request), "/park") && parked == NULL) {
    parked = request;
    return;
  }
  if (functions_runtime_request_too_large (request)) {
    functions_runtime_answer_json (request, 413, "{}");
    return;
  }
  GBytes *body = functions_runtime_request_body (request);
  if (body == NULL || g_bytes_get_size (body) > MAX_BODY)
    __builtin_trap ();
  const char *const headers[] = { "X-Method", "m", NULL };
  functions_runtime_answer (request, 200, headers, body);
}

static void
on_gone (FunctionsRuntimeRequest *request, gpointer data)
{
  if (request != parked)
    __builtin_trap (); /* only a request never answered can be gone */
  parked = NULL;
}

static void
turn (void)
{
  for (int i = 0; i < 8 && g_main_context_iteration (NULL, FALSE); i++)
    ;
}

/* Reads what the server wrote; each answer must start as one. */
static void
drain (int fd, GString *seen)
{
  char buf[8192];
  ssize_t n;
  while ((n = recv (fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
    g_string_append_len (seen, buf, n);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size > 32 * 1024)
    return 0;
  int pair[2];
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0)
    return 0;
  FunctionsRuntimeServer *server =
      functions_runtime_server_new (MAX_BODY, on_request, on_gone, NULL, NULL);
  if (server == NULL) {
    close (pair[0]);
    close (pair[1]);
    return 0;
  }
  functions_runtime_server_adopt (server, pair[0]);
  GString *seen = g_string_new (NULL);
  /* The first byte sets the size of the pieces the rest is sent in. */
  gsize piece = size > 0 ? 1 + data[0] % 64 : 1;
  for (gsize at = size > 0 ? 1 : 0; at < size;) {
    ssize_t n = send (pair[1], data + at, MIN (piece, size - at), MSG_NOSIGNAL);
    if (n <= 0)
      break; /* closed by the server, or its buffer is full */
    at += (gsize) n;
    turn ();
    drain (pair[1], seen);
  }
  turn ();
  if (parked) {
    FunctionsRuntimeRequest *request = parked;
    parked = NULL;
    functions_runtime_answer_json (request, 200, "{}");
    turn ();
  }
  drain (pair[1], seen);
  if (seen->len > 0 && !g_str_has_prefix (seen->str, "HTTP/1.1 "))
    __builtin_trap ();
  close (pair[1]);
  turn ();
  parked = NULL;
  functions_runtime_server_free (server);
  turn ();
  g_string_free (seen, TRUE);
  return 0;
}
