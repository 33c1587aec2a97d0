/* router.c: see router.h. Linear matching: edged has tens of routes, and a
 * scan over pre-split patterns costs well under a microsecond per request. */
#define G_LOG_DOMAIN "gateway"

#include "router.h"

#include "edge-gateway.h"

#define MAX_SEGMENTS EDGE_GATEWAY_MAX_PATH_SEGMENTS

typedef enum { SEG_LITERAL, SEG_PARAM, SEG_REST } SegmentKind;

typedef struct {
  SegmentKind kind;
  char *text; /* literal text, or parameter name */
} Segment;

typedef struct {
  EdgeRouterEntry entry;
  Segment *segments;
  guint n_segments;
} Route;

struct _EdgeRouter {
  GPtrArray *routes;  /* Route */
  GPtrArray *entries; /* EdgeRouterEntry *, borrowed from routes */
};

static void
route_free (gpointer data)
{
  Route *r = data;
  for (guint i = 0; i < r->n_segments; i++)
    g_free (r->segments[i].text);
  g_free (r->segments);
  g_free (r->entry.method);
  g_free (r->entry.pattern);
  g_free (r);
}

EdgeRouter *
edge_router_new (void)
{
  EdgeRouter *router = g_new0 (EdgeRouter, 1);
  router->routes = g_ptr_array_new_with_free_func (route_free);
  router->entries = g_ptr_array_new ();
  return router;
}

void
edge_router_free (EdgeRouter *router)
{
  if (router == NULL)
    return;
  g_ptr_array_unref (router->entries);
  g_ptr_array_unref (router->routes);
  g_free (router);
}

static gboolean
valid_name (const char *s, gsize len)
{
  if (len == 0)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isalnum (s[i]) && s[i] != '_' && s[i] != '-')
      return FALSE;
  return TRUE;
}

/* Splits a pattern; NULL for a malformed one. */
static Route *
route_parse (const char *pattern)
{
  g_autoptr (GArray) segments = g_array_new (FALSE, TRUE, sizeof (Segment));
  Route *route;

  if (pattern[0] != '/')
    return NULL;
  if (pattern[1] != '\0') {
    g_auto (GStrv) parts = g_strsplit (pattern + 1, "/", -1);
    guint n = g_strv_length (parts);
    if (n > MAX_SEGMENTS)
      return NULL;
    for (guint i = 0; i < n; i++) {
      const char *p = parts[i];
      gsize len = strlen (p);
      Segment seg = { SEG_LITERAL, NULL };
      /* An empty segment only last: a pattern with a trailing slash
       * ("/2015-03-31/functions/", as AWS clients call it). */
      if (len == 0 && i != n - 1)
        goto bad;
      if (p[0] == '{') {
        if (p[len - 1] != '}')
          goto bad;
        if (len > 3 && p[len - 2] == '*') {
          if (i != n - 1 || !valid_name (p + 1, len - 3))
            goto bad;
          seg.kind = SEG_REST;
          seg.text = g_strndup (p + 1, len - 3);
        } else {
          if (!valid_name (p + 1, len - 2))
            goto bad;
          seg.kind = SEG_PARAM;
          seg.text = g_strndup (p + 1, len - 2);
        }
      } else {
        if (strpbrk (p, "{}") != NULL)
          goto bad;
        seg.text = g_strdup (p);
      }
      g_array_append_val (segments, seg);
    }
  }
  route = g_new0 (Route, 1);
  route->n_segments = segments->len;
  route->segments = (Segment *) g_array_free (g_steal_pointer (&segments), FALSE);
  return route;

bad:
  for (guint i = 0; i < segments->len; i++)
    g_free (g_array_index (segments, Segment, i).text);
  return NULL;
}

/* Two patterns are the same shape if they differ only in parameter names. */
static gboolean
route_same_shape (const Route *a, const Route *b)
{
  if (a->n_segments != b->n_segments)
    return FALSE;
  for (guint i = 0; i < a->n_segments; i++) {
    if (a->segments[i].kind != b->segments[i].kind)
      return FALSE;
    if (a->segments[i].kind == SEG_LITERAL && !g_str_equal (a->segments[i].text, b->segments[i].text))
      return FALSE;
  }
  return TRUE;
}

gboolean
edge_router_add (EdgeRouter *router, const char *method, const char *pattern, gpointer value,
                 GError **error)
{
  Route *route = route_parse (pattern);
  if (route == NULL) {
    g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_ROUTE, "malformed route pattern \"%s\"",
                 pattern);
    return FALSE;
  }
  for (guint i = 0; i < router->routes->len; i++) {
    Route *other = g_ptr_array_index (router->routes, i);
    if (g_str_equal (other->entry.method, method) && route_same_shape (route, other)) {
      g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_ROUTE,
                   "%s %s is already taken by %s", method, pattern, other->entry.pattern);
      route_free (route);
      return FALSE;
    }
  }
  route->entry.method = g_strdup (method);
  route->entry.pattern = g_strdup (pattern);
  route->entry.value = value;
  g_ptr_array_add (router->routes, route);
  g_ptr_array_add (router->entries, &route->entry);
  return TRUE;
}

/* Matches decoded @segs against @route. @score gets one bit per literal
 * segment, most significant first, so comparing scores compares specificity
 * from the left. */
static gboolean
route_matches (const Route *route, char **segs, guint n, guint64 *ret_score)
{
  guint64 score = 0;
  guint i;

  for (i = 0; i < route->n_segments; i++) {
    const Segment *seg = &route->segments[i];
    if (seg->kind == SEG_REST) {
      /* One or more segments, not nothing ("/assets/" is not an asset). */
      if (i >= n || (i == n - 1 && segs[i][0] == '\0'))
        return FALSE;
      score <<= (MAX_SEGMENTS - i);
      *ret_score = score;
      return TRUE;
    }
    if (i >= n)
      return FALSE;
    score <<= 1;
    if (seg->kind == SEG_LITERAL) {
      if (!g_str_equal (seg->text, segs[i]))
        return FALSE;
      score |= 1;
    } else if (segs[i][0] == '\0') {
      return FALSE;
    }
  }
  if (i != n)
    return FALSE;
  score <<= (MAX_SEGMENTS - i);
  *ret_score = score;
  return TRUE;
}

EdgeRouterResult
edge_router_match (EdgeRouter *router, const char *method, const char *path, gpointer *ret_value,
                   GHashTable **ret_params, char **ret_allow)
{
  g_auto (GStrv) segs = NULL;
  guint n = 0;
  Route *best = NULL;
  guint64 best_score = 0;
  g_autoptr (GString) allow = NULL;

  if (path[0] != '/')
    return EDGE_ROUTER_NOT_FOUND;
  /* "/" has no segments; "/a/b/" keeps a trailing empty one, which no
   * pattern matches: trailing slashes are distinct paths. */
  if (path[1] != '\0') {
    segs = g_strsplit (path + 1, "/", MAX_SEGMENTS + 2);
    n = g_strv_length (segs);
    if (n > MAX_SEGMENTS)
      return EDGE_ROUTER_NOT_FOUND;
    for (guint i = 0; i < n; i++) {
      char *decoded = g_uri_unescape_string (segs[i], NULL);
      if (decoded == NULL) /* a bad escape, or an encoded NUL */
        return EDGE_ROUTER_NOT_FOUND;
      g_free (segs[i]);
      segs[i] = decoded;
    }
  } else {
    segs = g_new0 (char *, 1);
  }

  for (guint r = 0; r < router->routes->len; r++) {
    Route *route = g_ptr_array_index (router->routes, r);
    guint64 score;
    if (!route_matches (route, segs, n, &score))
      continue;
    if (!g_str_equal (route->entry.method, method) &&
        !(g_str_equal (method, "HEAD") && g_str_equal (route->entry.method, "GET"))) {
      if (allow == NULL)
        allow = g_string_new (NULL);
      if (!strstr (allow->str, route->entry.method)) {
        if (allow->len)
          g_string_append (allow, ", ");
        g_string_append (allow, route->entry.method);
      }
      continue;
    }
    if (best == NULL || score > best_score) {
      best = route;
      best_score = score;
    }
  }

  if (best == NULL) {
    if (allow != NULL) {
      if (ret_allow)
        *ret_allow = g_string_free (g_steal_pointer (&allow), FALSE);
      return EDGE_ROUTER_METHOD_NOT_ALLOWED;
    }
    return EDGE_ROUTER_NOT_FOUND;
  }

  if (ret_params) {
    GHashTable *params = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
    for (guint i = 0; i < best->n_segments; i++) {
      const Segment *seg = &best->segments[i];
      if (seg->kind == SEG_PARAM)
        g_hash_table_insert (params, g_strdup (seg->text), g_strdup (segs[i]));
      else if (seg->kind == SEG_REST)
        g_hash_table_insert (params, g_strdup (seg->text), g_strjoinv ("/", segs + i));
    }
    *ret_params = params;
  }
  if (ret_value)
    *ret_value = best->entry.value;
  return EDGE_ROUTER_FOUND;
}

const GPtrArray *
edge_router_entries (EdgeRouter *router)
{
  return router->entries;
}
