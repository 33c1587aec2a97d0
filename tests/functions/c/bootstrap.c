/* A custom runtime in C, for the integration tests: a compiled bootstrap
 * that speaks the Lambda Runtime API over plain sockets, with no library
 * but libc, as a handler compiled for a small board would. Its handler
 * answers {"runtime":"c","bytes":N,"event":EVENT}, or reports an error for
 * an event that holds "fail"; an event {"sleep": S} makes it wait S seconds
 * first. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BODY (6 * 1024 * 1024)

static char host[256], port[16];

static int
dial (void)
{
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
  if (getaddrinfo (host, port, &hints, &ai) != 0)
    return -1;
  int fd = socket (ai->ai_family, ai->ai_socktype, 0);
  if (fd >= 0 && connect (fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    close (fd);
    fd = -1;
  }
  freeaddrinfo (ai);
  return fd;
}

static int
write_all (int fd, const char *data, size_t len)
{
  while (len > 0) {
    ssize_t n = write (fd, data, len);
    if (n <= 0)
      return -1;
    data += n;
    len -= (size_t) n;
  }
  return 0;
}

/* One request on a fresh connection; the answer's body in *body (malloc'd,
 * NUL-terminated) and its request id header in @id. The status, or -1. */
static int
request (const char *method, const char *path, const char *body, size_t body_len,
         const char *extra_header, char **ret_body, char *id, size_t id_size)
{
  int fd = dial ();
  if (fd < 0)
    return -1;
  char head[1024];
  int n = snprintf (head, sizeof head,
                    "%s %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n"
                    "Content-Length: %zu\r\n%s\r\n",
                    method, path, host, port, body_len, extra_header ? extra_header : "");
  if (n < 0 || (size_t) n >= sizeof head || write_all (fd, head, (size_t) n) != 0 ||
      write_all (fd, body, body_len) != 0) {
    close (fd);
    return -1;
  }
  /* Read everything (the server closes after the answer). */
  size_t cap = 65536, len = 0;
  char *buf = malloc (cap + 1);
  for (;;) {
    if (len == cap) {
      if (cap > MAX_BODY + 65536)
        break;
      cap *= 2;
      buf = realloc (buf, cap + 1);
    }
    ssize_t r = read (fd, buf + len, cap - len);
    if (r <= 0)
      break;
    len += (size_t) r;
  }
  close (fd);
  buf[len] = '\0';
  int status = -1;
  char *end = strstr (buf, "\r\n\r\n");
  if (end == NULL || sscanf (buf, "HTTP/1.%*d %d", &status) != 1) {
    free (buf);
    return -1;
  }
  *end = '\0';
  if (id) {
    id[0] = '\0';
    for (char *line = strstr (buf, "\r\n"); line; line = strstr (line + 2, "\r\n")) {
      const char *name = "\r\nLambda-Runtime-Aws-Request-Id:";
      if (strncasecmp (line, name, strlen (name)) == 0) {
        const char *v = line + strlen (name);
        while (*v == ' ')
          v++;
        snprintf (id, id_size, "%.*s", (int) strcspn (v, "\r\n"), v);
      }
    }
  }
  if (ret_body) {
    size_t body_len_in = len - (size_t) (end + 4 - buf);
    *ret_body = malloc (body_len_in + 1);
    memcpy (*ret_body, end + 4, body_len_in);
    (*ret_body)[body_len_in] = '\0';
  }
  free (buf);
  return status;
}

int
main (void)
{
  const char *api = getenv ("AWS_LAMBDA_RUNTIME_API");
  const char *colon = api ? strrchr (api, ':') : NULL;
  if (colon == NULL || (size_t) (colon - api) >= sizeof host) {
    fprintf (stderr, "AWS_LAMBDA_RUNTIME_API is not HOST:PORT\n");
    return 1;
  }
  snprintf (host, sizeof host, "%.*s", (int) (colon - api), api);
  snprintf (port, sizeof port, "%s", colon + 1);
  setvbuf (stdout, NULL, _IOLBF, 0);
  for (;;) {
    char id[128], path[256];
    char *event = NULL;
    if (request ("GET", "/2018-06-01/runtime/invocation/next", "", 0, NULL, &event, id,
                 sizeof id) != 200 || id[0] == '\0') {
      free (event);
      return 1;
    }
    printf ("c handler: %s\n", id);
    const char *sleep_at = strstr (event, "\"sleep\"");
    if (sleep_at) {
      const char *colon_at = strchr (sleep_at, ':');
      double seconds = colon_at ? strtod (colon_at + 1, NULL) : 0;
      if (seconds > 0 && seconds < 900) {
        struct timespec ts = { (time_t) seconds, (long) ((seconds - (time_t) seconds) * 1e9) };
        nanosleep (&ts, NULL);
      }
    }
    if (strstr (event, "fail")) {
      const char *error = "{\"errorType\":\"CHandlerError\",\"errorMessage\":\"asked to fail\"}";
      snprintf (path, sizeof path, "/2018-06-01/runtime/invocation/%s/error", id);
      request ("POST", path, error, strlen (error),
               "Lambda-Runtime-Function-Error-Type: CHandlerError\r\n", NULL, NULL, 0);
    } else {
      size_t n = strlen (event);
      char *answer = malloc (n + 64);
      int len = snprintf (answer, n + 64, "{\"runtime\":\"c\",\"bytes\":%zu,\"event\":%s}", n,
                          n ? event : "null");
      snprintf (path, sizeof path, "/2018-06-01/runtime/invocation/%s/response", id);
      request ("POST", path, answer, (size_t) len, NULL, NULL, NULL, 0);
      free (answer);
    }
    free (event);
  }
}
