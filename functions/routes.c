/* routes.c: HTTP API routes, served by functions (functions/functions.h).
 *
 * A route is API Gateway's route key, "METHOD /path", with {name} for one
 * segment and a last {name+} for the rest of the path; METHOD may be ANY.
 * It becomes a gateway route ({name+} is the gateway's {name*}), so it is
 * matched, limited and logged like every other, and edged's own routes
 * keep their precedence (more literal segments win).
 *
 * The function gets the request as API Gateway's payload format 2.0 and
 * answers either with a response object ({"statusCode", "headers",
 * "cookies", "body", "isBase64Encoded"}) or with any other JSON, which is
 * sent as it is with 200 and application/json. Errors are API Gateway's:
 * 500 {"message":"Internal Server Error"} for a handler error or a
 * malformed response, 503 "Service Unavailable" past the route's timeout,
 * 429 "Too Many Requests" when the function's queue is full, 413 "Request
 * Entity Too Large" for a request whose event would pass 6 MiB.
 */
#define G_LOG_DOMAIN "functions"

#include "functions-private.h"

#include <string.h>

#define MAX_ROUTE_KEY 512

static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
                                       NULL };

/* Paths edged serves itself, which routes may not take. */
static const char *const reserved_prefixes[] = { "/v1/", "/2015-03-31/", "/2018-06-01/",
                                                 "/2019-09-25/", "/2019-09-30/", "/healthz",
                                                 "/metrics", NULL };

struct _FunctionsRoute {
  FunctionsService *service;
  char *key;      /* "ANY /items/{id}" */
  char *function;
  gint64 timeout_ms;
};

static gboolean
route_error (GError **error, const char *key, const char *what)
{
  g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID, "route \"%s\": %s", key, what);
  return FALSE;
}

static gboolean
literal_char (char c)
{
  return g_ascii_isalnum (c) || strchr ("-._~!$&'()*,;=:@", c) != NULL;
}

gboolean
functions_route_parse (const char *key, char **ret_method, char **ret_pattern, GError **error)
{
  gsize len = strlen (key);
  if (len == 0 || len > MAX_ROUTE_KEY)
    return route_error (error, "", "1 to 512 characters");
  const char *space = strchr (key, ' ');
  if (space == NULL || space[1] != '/')
    return route_error (error, key, "expected METHOD /path");
  g_autofree char *method = g_strndup (key, space - key);
  gboolean known = g_str_equal (method, "ANY");
  for (gsize i = 0; methods[i] && !known; i++)
    known = g_str_equal (method, methods[i]);
  if (!known)
    return route_error (error, key, "METHOD is one of GET, POST, PUT, PATCH, DELETE, HEAD, "
                                    "OPTIONS or ANY");
  const char *path = space + 1;
  for (gsize i = 0; reserved_prefixes[i]; i++)
    if (g_str_has_prefix (path, reserved_prefixes[i]))
      return route_error (error, key, "the path is one edged serves itself");
  GString *pattern = g_string_new (NULL);
  g_autoptr (GHashTable) names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  const char *p = path;
  if (g_str_equal (path, "/"))
    p = ""; /* the root: no segment */
  guint segments = 0;
  while (*p == '/') {
    const char *start = p + 1;
    if (++segments > EDGE_GATEWAY_MAX_PATH_SEGMENTS) {
      g_string_free (pattern, TRUE);
      return route_error (error, key, "more than 32 path segments");
    }
    const char *end = strchrnul (start, '/');
    gsize n = end - start;
    if (n == 0) {
      g_string_free (pattern, TRUE);
      return route_error (error, key, "empty path segment");
    }
    if (start[0] == '{') {
      gboolean greedy = n >= 3 && start[n - 2] == '+';
      gsize name_len = n - 2 - greedy;
      gboolean ok = start[n - 1] == '}' && name_len > 0 && (!greedy || *end == '\0');
      for (gsize i = 0; ok && i < name_len; i++)
        ok = g_ascii_isalnum (start[1 + i]) || start[1 + i] == '_' || start[1 + i] == '-';
      if (!ok) {
        g_string_free (pattern, TRUE);
        return route_error (error, key, "a parameter is {name} (letters, digits, _ and -), or "
                                        "{name+} as the last segment");
      }
      char *name = g_strndup (start + 1, name_len);
      if (!g_hash_table_add (names, name)) {
        g_string_free (pattern, TRUE);
        return route_error (error, key, "a parameter name is used twice");
      }
      g_string_append_printf (pattern, "/{%s%s}", name, greedy ? "*" : "");
    } else {
      for (gsize i = 0; i < n; i++)
        if (!literal_char (start[i])) {
          g_string_free (pattern, TRUE);
          return route_error (error, key, "a path segment holds a character routes do not "
                                          "take (letters, digits and -._~!$&'()*,;=:@)");
        }
      g_string_append_c (pattern, '/');
      g_string_append_len (pattern, start, (gssize) n);
    }
    p = end;
  }
  if (*p != '\0') {
    g_string_free (pattern, TRUE);
    return route_error (error, key, "expected METHOD /path");
  }
  if (pattern->len == 0)
    g_string_append_c (pattern, '/');
  if (ret_method)
    *ret_method = g_steal_pointer (&method);
  if (ret_pattern)
    *ret_pattern = g_string_free (pattern, FALSE);
  else
    g_string_free (pattern, TRUE);
  return TRUE;
}

/* ---- the request as payload format 2.0 ---- */

static void
string_free (gpointer string)
{
  g_string_free (string, TRUE);
}

static void
member (GString *out, const char *name)
{
  if (out->str[out->len - 1] != '{')
    g_string_append_c (out, ',');
  edge_json_append_string (out, name, strlen (name));
  g_string_append_c (out, ':');
}

static void
member_string (GString *out, const char *name, const char *value)
{
  member (out, name);
  edge_json_append_string (out, value, strlen (value));
}

/* Query parameters, decoded, repeated ones joined with commas (as API
 * Gateway does). */
static void
append_query (GString *out, const char *query)
{
  g_autoptr (GHashTable) values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                         string_free);
  g_autoptr (GPtrArray) order = g_ptr_array_new ();
  g_auto (GStrv) pairs = g_strsplit (query, "&", -1);
  for (guint i = 0; pairs[i]; i++) {
    if (pairs[i][0] == '\0')
      continue;
    char *eq = strchr (pairs[i], '=');
    if (eq)
      *eq = '\0';
    g_strdelimit (pairs[i], "+", ' ');
    if (eq)
      g_strdelimit (eq + 1, "+", ' ');
    g_autofree char *name = g_uri_unescape_string (pairs[i], NULL);
    g_autofree char *value = g_uri_unescape_string (eq ? eq + 1 : "", NULL);
    if (name == NULL || value == NULL)
      continue; /* not decodable: left out, still in rawQueryString */
    GString *joined = g_hash_table_lookup (values, name);
    if (joined) {
      g_string_append_c (joined, ',');
      g_string_append (joined, value);
    } else {
      g_ptr_array_add (order, name);
      g_hash_table_insert (values, g_steal_pointer (&name), g_string_new (value));
    }
  }
  if (order->len == 0)
    return;
  member (out, "queryStringParameters");
  g_string_append_c (out, '{');
  for (guint i = 0; i < order->len; i++) {
    GString *joined = g_hash_table_lookup (values, order->pdata[i]);
    member (out, order->pdata[i]);
    edge_json_append_string (out, joined->str, joined->len);
  }
  g_string_append_c (out, '}');
}

static gboolean
textual (const char *content_type)
{
  if (content_type == NULL)
    return TRUE;
  static const char *const text[] = { "text/", "application/json", "application/xml",
                                      "application/javascript", "application/x-www-form-urlencoded",
                                      "application/ld+json", "application/problem+json", NULL };
  for (gsize i = 0; text[i]; i++)
    if (g_ascii_strncasecmp (content_type, text[i], strlen (text[i])) == 0)
      return TRUE;
  return strstr (content_type, "+json") != NULL || strstr (content_type, "+xml") != NULL;
}

static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

char *
functions_iso_time (gint64 ms)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (ms / 1000);
  g_autofree char *s = g_date_time_format (t, "%Y-%m-%dT%H:%M:%S");
  return g_strdup_printf ("%s.%03dZ", s, (int) (ms % 1000));
}

char *
functions_apigw_time (gint64 ms)
{
  /* Every event of a route has one: made once a second. */
  static _Thread_local gint64 cached_s = -1;
  static _Thread_local char cached[32];
  gint64 s = ms / 1000;
  if (s != cached_s) {
    g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (s);
    g_snprintf (cached, sizeof cached, "%02d/%s/%04d:%02d:%02d:%02d +0000",
                g_date_time_get_day_of_month (t), months[g_date_time_get_month (t) - 1],
                g_date_time_get_year (t), g_date_time_get_hour (t), g_date_time_get_minute (t),
                g_date_time_get_second (t));
    cached_s = s;
  }
  return g_strdup (cached);
}

static GBytes *
request_event (FunctionsRoute *route, EdgeRequest *request, const char *request_id)
{
  GUri *uri = edge_request_uri (request);
  SoupMessageHeaders *headers = edge_request_headers (request);
  /* libsoup hands over the path decoded: encoded again, as it came
   * (a %2F in it was a separator to the router too). */
  g_autofree char *raw_path = g_uri_escape_string (g_uri_get_path (uri), "/!$&'()*+,;=:@", FALSE);
  const char *query = g_uri_get_query (uri);
  GString *out = g_string_new ("{\"version\":\"2.0\"");
  member_string (out, "routeKey", route->key);
  member_string (out, "rawPath", raw_path);
  member_string (out, "rawQueryString", query ? query : "");

  /* Headers by lower-case name, repeated ones joined with commas; cookies
   * apart, as a list. */
  g_autoptr (GHashTable) joined = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                         string_free);
  g_autoptr (GPtrArray) order = g_ptr_array_new ();
  g_autoptr (GPtrArray) cookies = g_ptr_array_new_with_free_func (g_free);
  SoupMessageHeadersIter iter;
  const char *name, *value;
  soup_message_headers_iter_init (&iter, headers);
  while (soup_message_headers_iter_next (&iter, &name, &value)) {
    g_autofree char *lower = g_ascii_strdown (name, -1);
    if (g_str_equal (lower, "cookie")) {
      g_auto (GStrv) parts = g_strsplit (value, ";", -1);
      for (guint i = 0; parts[i]; i++) {
        char *cookie = g_strstrip (parts[i]);
        if (*cookie)
          g_ptr_array_add (cookies, g_strdup (cookie));
      }
      continue;
    }
    GString *v = g_hash_table_lookup (joined, lower);
    if (v) {
      g_string_append_c (v, ',');
      g_string_append (v, value);
    } else {
      g_ptr_array_add (order, lower);
      g_hash_table_insert (joined, g_steal_pointer (&lower), g_string_new (value));
    }
  }
  if (cookies->len > 0) {
    member (out, "cookies");
    g_string_append_c (out, '[');
    for (guint i = 0; i < cookies->len; i++) {
      if (i)
        g_string_append_c (out, ',');
      edge_json_append_string (out, cookies->pdata[i], strlen (cookies->pdata[i]));
    }
    g_string_append_c (out, ']');
  }
  member (out, "headers");
  g_string_append_c (out, '{');
  for (guint i = 0; i < order->len; i++) {
    GString *v = g_hash_table_lookup (joined, order->pdata[i]);
    member (out, order->pdata[i]);
    edge_json_append_string (out, v->str, v->len);
  }
  g_string_append_c (out, '}');
  if (query)
    append_query (out, query);

  const char *host = soup_message_headers_get_one (headers, "Host");
  g_autofree char *domain = g_strndup (host ? host : "localhost",
                                       strcspn (host ? host : "localhost", ":"));
  g_autofree char *prefix = g_strndup (domain, strcspn (domain, "."));
  const char *user_agent = soup_message_headers_get_one (headers, "User-Agent");
  const char *source = edge_request_remote_host (request);
  SoupHTTPVersion version = edge_request_http_version (request);
  g_autofree char *time = functions_apigw_time (g_get_real_time () / 1000);
  member (out, "requestContext");
  g_string_append_c (out, '{');
  member_string (out, "accountId", FUNCTIONS_ACCOUNT);
  member_string (out, "apiId", "edged");
  member_string (out, "domainName", domain);
  member_string (out, "domainPrefix", prefix);
  member (out, "http");
  g_string_append_c (out, '{');
  member_string (out, "method", edge_request_method (request));
  member_string (out, "path", raw_path);
  member_string (out, "protocol", version == SOUP_HTTP_2_0   ? "HTTP/2.0"
                                  : version == SOUP_HTTP_1_0 ? "HTTP/1.0"
                                                             : "HTTP/1.1");
  member_string (out, "sourceIp", source ? source : "");
  member_string (out, "userAgent", user_agent ? user_agent : "");
  g_string_append_c (out, '}');
  const char *authorizer = edge_request_authorizer_context (request);
  if (authorizer) {
    /* What a Lambda authorizer returned as its context. */
    member (out, "authorizer");
    g_string_append (out, "{\"lambda\":");
    g_string_append (out, authorizer);
    g_string_append_c (out, '}');
  }
  member_string (out, "requestId", request_id);
  member_string (out, "routeKey", route->key);
  member_string (out, "stage", "$default");
  member_string (out, "time", time);
  member (out, "timeEpoch");
  edge_string_append_fixed (out, (guint64) (g_get_real_time () / 1000), 0);
  g_string_append_c (out, '}');

  GHashTable *params = edge_request_params (request);
  if (params && g_hash_table_size (params) > 0) {
    member (out, "pathParameters");
    g_string_append_c (out, '{');
    GHashTableIter piter;
    gpointer k, v;
    g_hash_table_iter_init (&piter, params);
    while (g_hash_table_iter_next (&piter, &k, &v)) {
      member (out, k);
      edge_json_append_string (out, v, strlen (v));
    }
    g_string_append_c (out, '}');
  }

  GBytes *body = edge_request_body (request);
  gsize len;
  const char *data = g_bytes_get_data (body, &len);
  gboolean base64 = FALSE;
  if (len > 0) {
    base64 = !textual (soup_message_headers_get_content_type (headers, NULL)) ||
             !g_utf8_validate (data, (gssize) len, NULL) || memchr (data, '\0', len) != NULL;
    member (out, "body");
    if (base64) {
      g_autofree char *encoded = g_base64_encode ((const guchar *) data, len);
      edge_json_append_string (out, encoded, strlen (encoded));
    } else {
      edge_json_append_string (out, data, len);
    }
  }
  member (out, "isBase64Encoded");
  g_string_append (out, base64 ? "true}" : "false}");
  return g_string_free_to_bytes (out);
}

/* ---- the answer ---- */

typedef struct {
  FunctionsRoute *route;
  EdgeRequest *request; /* NULL once answered (past the timeout) */
  guint timeout_source;
} Call;

static void
answer_message (EdgeRequest *request, guint status, const char *message)
{
  char *text = g_strdup_printf ("{\"message\":\"%s\"}", message);
  g_autoptr (GBytes) body = g_bytes_new_take (text, strlen (text));
  edge_request_respond (request, status, "application/json", body);
}

/* ---- the function's answer, read as API Gateway reads it ----
 *
 * One pass over the JSON without a tree (every answer of every route comes
 * through here). Members are taken as a JSON object keeps them: the last of
 * a repeated name counts. A response object is malformed when statusCode is
 * not an integer from 100 to 599, a header value is not a string, number or
 * boolean (or is no valid header), a cookie is not a string, or the body is
 * neither a string nor null; headers that are no object and cookies that
 * are no array are left out, as API Gateway leaves them. */

typedef struct {
  gboolean has_status;  /* an object with a statusCode: a response object */
  gint64 status;        /* -1: not an integer */
  GPtrArray *headers;   /* name, value, name, value...; NULL when malformed */
  GPtrArray *cookies;   /* NULL when malformed */
  GString *body;        /* NULL: none (absent or null) */
  gboolean body_valid;
  gboolean base64;
} Answer;

static void
answer_clear (Answer *a)
{
  g_clear_pointer (&a->headers, g_ptr_array_unref);
  g_clear_pointer (&a->cookies, g_ptr_array_unref);
  if (a->body)
    g_string_free (g_steal_pointer (&a->body), TRUE);
}

static gboolean
valid_header (const char *name, const char *value, gsize value_len)
{
  if (name[0] == '\0')
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && strchr ("!#$%&'*+-.^_`|~", *p) == NULL)
      return FALSE;
  for (gsize i = 0; i < value_len; i++)
    if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
      return FALSE;
  return TRUE;
}

static gboolean
is_member (const char *name, gsize len, const char *wanted)
{
  return len == strlen (wanted) && memcmp (name, wanted, len) == 0;
}

/* A number as API Gateway writes it in a header: integers as they are,
 * others in their shortest round-trip form. */
static char *
number_text (const char *text, gsize len)
{
  g_autofree char *s = g_strndup (text, len);
  if (strpbrk (s, ".eE") == NULL)
    return g_strdup_printf ("%" G_GINT64_FORMAT, g_ascii_strtoll (s, NULL, 10));
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  return g_strdup (g_ascii_dtostr (buf, sizeof buf, g_ascii_strtod (s, NULL)));
}

/* A header's value (string, number or boolean), or NULL past any other
 * value (skipped). */
static char *
read_header_value (EdgeJsonReader *r)
{
  const char *text;
  gsize len;
  switch (edge_json_reader_peek (r)) {
  case EDGE_JSON_STRING:
    return edge_json_reader_read_string (r, &text, &len) ? g_strndup (text, len) : NULL;
  case EDGE_JSON_NUMBER:
    return edge_json_reader_read_number (r, &text, &len) ? number_text (text, len) : NULL;
  case EDGE_JSON_TRUE:
  case EDGE_JSON_FALSE: {
    gboolean yes = edge_json_reader_peek (r) == EDGE_JSON_TRUE;
    return edge_json_reader_skip (r) ? g_strdup (yes ? "true" : "false") : NULL;
  }
  default:
    edge_json_reader_skip (r);
    return NULL;
  }
}

static void
read_headers (EdgeJsonReader *r, Answer *a)
{
  g_clear_pointer (&a->headers, g_ptr_array_unref);
  if (edge_json_reader_peek (r) != EDGE_JSON_OBJECT) {
    a->headers = g_ptr_array_new_with_free_func (g_free);
    edge_json_reader_skip (r);
    return;
  }
  /* Collected by name, the last of a repeated one counting. */
  g_autoptr (GPtrArray) pairs = g_ptr_array_new_with_free_func (g_free);
  gboolean valid = TRUE;
  const char *name;
  gsize name_len;
  edge_json_reader_enter_object (r);
  while (edge_json_reader_next_member (r, &name, &name_len)) {
    char *key = memchr (name, '\0', name_len) ? NULL : g_strndup (name, name_len);
    char *value = read_header_value (r);
    if (key == NULL || value == NULL || !valid_header (key, value, strlen (value))) {
      valid = FALSE;
      g_free (key);
      g_free (value);
      continue;
    }
    for (guint i = 0; i < pairs->len; i += 2)
      if (g_str_equal (pairs->pdata[i], key)) {
        g_ptr_array_remove_range (pairs, i, 2);
        break;
      }
    g_ptr_array_add (pairs, key);
    g_ptr_array_add (pairs, value);
  }
  if (valid)
    a->headers = g_steal_pointer (&pairs);
}

static void
read_cookies (EdgeJsonReader *r, Answer *a)
{
  g_clear_pointer (&a->cookies, g_ptr_array_unref);
  g_autoptr (GPtrArray) cookies = g_ptr_array_new_with_free_func (g_free);
  if (edge_json_reader_peek (r) != EDGE_JSON_ARRAY) {
    a->cookies = g_steal_pointer (&cookies);
    edge_json_reader_skip (r);
    return;
  }
  gboolean valid = TRUE;
  edge_json_reader_enter_array (r);
  while (edge_json_reader_next_element (r)) {
    const char *text;
    gsize len;
    if (edge_json_reader_peek (r) != EDGE_JSON_STRING) {
      edge_json_reader_skip (r);
      valid = FALSE;
    } else if (edge_json_reader_read_string (r, &text, &len) &&
               valid_header ("Set-Cookie", text, len)) {
      g_ptr_array_add (cookies, g_strndup (text, len));
    } else {
      valid = FALSE;
    }
  }
  if (valid)
    a->cookies = g_steal_pointer (&cookies);
}

static void
read_body (EdgeJsonReader *r, Answer *a)
{
  if (a->body)
    g_string_free (g_steal_pointer (&a->body), TRUE);
  a->body_valid = TRUE;
  const char *text;
  gsize len;
  switch (edge_json_reader_peek (r)) {
  case EDGE_JSON_STRING:
    if (edge_json_reader_read_string (r, &text, &len))
      a->body = g_string_new_len (text, (gssize) len);
    break;
  case EDGE_JSON_NULL:
    edge_json_reader_skip (r);
    break;
  default:
    a->body_valid = FALSE;
    edge_json_reader_skip (r);
    break;
  }
}

/* statusCode's value: a status, or -1 for anything but an integer from 100
 * to 999 (skipped). */
static gint64
read_status (EdgeJsonReader *r)
{
  const char *text;
  gsize len;
  if (edge_json_reader_peek (r) != EDGE_JSON_NUMBER) {
    edge_json_reader_skip (r);
    return -1;
  }
  if (!edge_json_reader_read_number (r, &text, &len) || len != 3)
    return -1;
  gint64 status = 0;
  for (gsize i = 0; i < len; i++) {
    if (!g_ascii_isdigit (text[i]))
      return -1;
    status = status * 10 + (text[i] - '0');
  }
  return status;
}

/* Reads @data into @a; FALSE if it is not JSON. */
static gboolean
read_answer (const char *data, gsize len, Answer *a)
{
  EdgeJsonReader r;
  const char *name;
  gsize name_len;

  *a = (Answer){ .status = -1, .body_valid = TRUE };
  a->headers = g_ptr_array_new_with_free_func (g_free);
  a->cookies = g_ptr_array_new_with_free_func (g_free);
  edge_json_reader_init (&r, data, len);
  if (edge_json_reader_peek (&r) == EDGE_JSON_OBJECT) {
    edge_json_reader_enter_object (&r);
    while (edge_json_reader_next_member (&r, &name, &name_len)) {
      if (is_member (name, name_len, "statusCode")) {
        a->has_status = TRUE;
        a->status = read_status (&r);
      } else if (is_member (name, name_len, "headers")) {
        read_headers (&r, a);
      } else if (is_member (name, name_len, "cookies")) {
        read_cookies (&r, a);
      } else if (is_member (name, name_len, "body")) {
        read_body (&r, a);
      } else if (is_member (name, name_len, "isBase64Encoded")) {
        a->base64 = edge_json_reader_peek (&r) == EDGE_JSON_TRUE;
        edge_json_reader_skip (&r);
      } else {
        edge_json_reader_skip (&r);
      }
    }
  } else {
    edge_json_reader_skip (&r);
  }
  gboolean json = r.error == NULL && edge_json_reader_finish (&r);
  edge_json_reader_clear (&r);
  return json;
}

/* Sends a response object; FALSE if it is not a valid one. */
static gboolean
respond_answer (EdgeRequest *request, Answer *a)
{
  if (a->status < 100 || a->status > 599 || a->headers == NULL || a->cookies == NULL ||
      !a->body_valid)
    return FALSE;
  SoupMessageHeaders *out =
      edge_request_response_headers (request);
  const char *content_type = NULL;
  for (guint i = 0; i < a->headers->len; i += 2) {
    const char *name = a->headers->pdata[i], *value = a->headers->pdata[i + 1];
    if (g_ascii_strcasecmp (name, "Content-Type") == 0)
      content_type = value;
    else if (g_ascii_strcasecmp (name, "Content-Length") != 0 &&
             g_ascii_strcasecmp (name, "Transfer-Encoding") != 0 &&
             g_ascii_strcasecmp (name, "Connection") != 0)
      soup_message_headers_append (out, name, value);
  }
  for (guint i = 0; i < a->cookies->len; i++)
    soup_message_headers_append (out, "Set-Cookie", a->cookies->pdata[i]);
  g_autoptr (GBytes) body = NULL;
  if (a->body && a->base64) {
    gsize len;
    guchar *decoded = g_base64_decode (a->body->str, &len);
    body = g_bytes_new_take (decoded, len);
  } else if (a->body) {
    gsize len = a->body->len;
    body = g_bytes_new_take (g_string_free (g_steal_pointer (&a->body), FALSE), len);
  }
  edge_request_respond (request, (guint) a->status,
                        content_type ? content_type : (body ? "text/plain; charset=utf-8" : NULL),
                        body);
  return TRUE;
}

static void
call_free (Call *call)
{
  g_clear_handle_id (&call->timeout_source, g_source_remove);
  g_free (call);
}

static void
on_route_done (const FunctionsResult *result, gpointer data)
{
  Call *call = data;
  EdgeRequest *request = g_steal_pointer (&call->request);
  if (request == NULL) {
    call_free (call); /* answered at the timeout */
    return;
  }
  if (result->stopping) {
    answer_message (request, 503, "Service Unavailable");
  } else if (result->function_error) {
    answer_message (request, 500, "Internal Server Error");
  } else {
    gsize len;
    const char *raw = g_bytes_get_data (result->payload, &len);
    Answer answer;
    if (!read_answer (raw, len, &answer)) {
      g_warning ("route \"%s\": function \"%s\" answered something that is not JSON",
                 call->route->key, call->route->function);
      answer_message (request, 500, "Internal Server Error");
    } else if (!answer.has_status) {
      edge_request_respond (request, 200, "application/json", result->payload);
    } else if (!respond_answer (request, &answer)) {
      g_warning ("route \"%s\": function \"%s\" answered a malformed response object",
                 call->route->key, call->route->function);
      answer_message (request, 500, "Internal Server Error");
    }
    answer_clear (&answer);
  }
  call_free (call);
}

static gboolean
on_route_timeout (gpointer data)
{
  Call *call = data;
  call->timeout_source = 0;
  EdgeRequest *request = g_steal_pointer (&call->request);
  g_warning ("route \"%s\": function \"%s\" did not answer within %.1f s", call->route->key,
             call->route->function, call->route->timeout_ms / 1000.0);
  answer_message (request, 503, "Service Unavailable");
  return G_SOURCE_REMOVE;
}

static void
handle_route (EdgeRequest *request, gpointer data)
{
  FunctionsRoute *route = data;
  g_autofree char *id = edge_uuid_random ();
  g_autoptr (GBytes) event = request_event (route, request, id);
  if (g_bytes_get_size (event) > FUNCTIONS_MAX_PAYLOAD_BYTES) {
    answer_message (request, 413, "Request Entity Too Large");
    return;
  }
  SoupMessageHeaders *headers =
      edge_request_response_headers (request);
  soup_message_headers_replace (headers, "Apigw-Requestid", id);
  Call *call = g_new0 (Call, 1);
  call->route = route;
  call->request = request;
  g_autoptr (GError) error = NULL;
  if (!functions_service_invoke (route->service, route->function, id, event, on_route_done, call,
                                 &error)) {
    g_free (call);
    if (g_error_matches (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_THROTTLED))
      answer_message (request, 429, "Too Many Requests");
    else
      answer_message (request, 500, "Internal Server Error");
    return;
  }
  edge_request_pause (request);
  call->timeout_source = g_timeout_add ((guint) route->timeout_ms, on_route_timeout, call);
}

gboolean
functions_route_add (FunctionsService *service, EdgeGateway *gateway,
                     const EdgeConfigRoute *config, GPtrArray *routes, GError **error)
{
  g_autofree char *method = NULL;
  g_autofree char *pattern = NULL;
  if (!functions_route_parse (config->route, &method, &pattern, error))
    return FALSE;
  if (functions_service_function (service, config->function) == NULL) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "route \"%s\": no function \"%s\"", config->route, config->function);
    return FALSE;
  }
  FunctionsRoute *route = g_new0 (FunctionsRoute, 1);
  route->service = service;
  route->key = g_strdup (config->route);
  route->function = g_strdup (config->function);
  route->timeout_ms = config->timeout_ms;
  /* Kept from here on: methods routed to it stay routed if a later one
   * fails. */
  g_ptr_array_add (routes, route);
  g_autofree char *summary = g_strdup_printf ("Served by the function %s", config->function);
  gboolean any = g_str_equal (method, "ANY");
  for (gsize i = 0; methods[i]; i++) {
    if (!any && !g_str_equal (method, methods[i]))
      continue;
    EdgeRoute r = { methods[i], pattern, handle_route, summary, "routes",
                    FUNCTIONS_MAX_PAYLOAD_BYTES, EDGE_ERRORS_API_GATEWAY };
    if (!edge_gateway_add_route (gateway, &r, route, error)) {
      g_prefix_error (error, "route \"%s\": ", config->route);
      return FALSE;
    }
  }
  g_message ("route \"%s\" -> function \"%s\"", route->key, route->function);
  return TRUE;
}

void
functions_route_free (FunctionsRoute *route)
{
  g_free (route->key);
  g_free (route->function);
  g_free (route);
}
