/* Route matching: parameters, specificity, methods, malformed patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "edge-gateway.h"
#include "router.h"

static const char *const patterns[][2] = {
  { "GET", "/" },
  { "GET", "/healthz" },
  { "GET", "/v1/cameras" },
  { "POST", "/v1/cameras" },
  { "GET", "/v1/cameras/{name}" },
  { "DELETE", "/v1/cameras/{name}" },
  { "GET", "/v1/cameras/new" },
  { "GET", "/v1/cameras/{name}/hls/{file}" },
  { "GET", "/assets/{path*}" },
  { "GET", "/assets/special.js" },
  { "POST", "/2015-03-31/functions/{name}/invocations" },
  { "GET", "/2015-03-31/functions/" },
};

typedef struct {
  const char *method;
  const char *path;
  EdgeRouterResult result;
  const char *pattern; /* FOUND */
  const char *params;  /* "k=v;k=v", FOUND */
  const char *allow;   /* METHOD_NOT_ALLOWED */
} MatchCase;

static const MatchCase cases[] = {
  { "GET", "/", EDGE_ROUTER_FOUND, "/", "", NULL },
  { "GET", "/healthz", EDGE_ROUTER_FOUND, "/healthz", "", NULL },
  { "HEAD", "/healthz", EDGE_ROUTER_FOUND, "/healthz", "", NULL },
  { "GET", "/healthz/", EDGE_ROUTER_NOT_FOUND, NULL, NULL, NULL },
  { "GET", "/v1/cameras", EDGE_ROUTER_FOUND, "/v1/cameras", "", NULL },
  { "POST", "/v1/cameras", EDGE_ROUTER_FOUND, "/v1/cameras", "", NULL },
  { "GET", "/v1/cameras/door", EDGE_ROUTER_FOUND, "/v1/cameras/{name}", "name=door", NULL },
  { "GET", "/v1/cameras/new", EDGE_ROUTER_FOUND, "/v1/cameras/new", "", NULL },
  { "DELETE", "/v1/cameras/new", EDGE_ROUTER_FOUND, "/v1/cameras/{name}", "name=new", NULL },
  { "GET", "/v1/cameras/front%20door", EDGE_ROUTER_FOUND, "/v1/cameras/{name}",
    "name=front door", NULL },
  { "GET", "/v1/cameras/a%2Fb", EDGE_ROUTER_FOUND, "/v1/cameras/{name}", "name=a/b", NULL },
  { "GET", "/v1/cameras/door/hls/live.m3u8", EDGE_ROUTER_FOUND, "/v1/cameras/{name}/hls/{file}",
    "name=door;file=live.m3u8", NULL },
  { "GET", "/v1/cameras//hls/x", EDGE_ROUTER_NOT_FOUND, NULL, NULL, NULL },
  { "PUT", "/v1/cameras/door", EDGE_ROUTER_METHOD_NOT_ALLOWED, NULL, NULL, "GET, DELETE" },
  { "DELETE", "/v1/cameras", EDGE_ROUTER_METHOD_NOT_ALLOWED, NULL, NULL, "GET, POST" },
  { "GET", "/assets/app.js", EDGE_ROUTER_FOUND, "/assets/{path*}", "path=app.js", NULL },
  { "GET", "/assets/img/logo.svg", EDGE_ROUTER_FOUND, "/assets/{path*}", "path=img/logo.svg",
    NULL },
  { "GET", "/assets/special.js", EDGE_ROUTER_FOUND, "/assets/special.js", "", NULL },
  { "GET", "/assets", EDGE_ROUTER_NOT_FOUND, NULL, NULL, NULL },
  { "POST", "/2015-03-31/functions/hello/invocations", EDGE_ROUTER_FOUND,
    "/2015-03-31/functions/{name}/invocations", "name=hello", NULL },
  /* A trailing slash is part of a path: a pattern may end in one. */
  { "GET", "/2015-03-31/functions/", EDGE_ROUTER_FOUND, "/2015-03-31/functions/", "", NULL },
  { "GET", "/2015-03-31/functions", EDGE_ROUTER_NOT_FOUND, NULL, NULL, NULL },
  { "GET", "/v1/cameras/%zz", EDGE_ROUTER_NOT_FOUND, NULL, NULL, NULL },
  { "GET", "/v1/cameras/a%00b", EDGE_ROUTER_NOT_FOUND, NULL, NULL, NULL },
  { "GET", "relative", EDGE_ROUTER_NOT_FOUND, NULL, NULL, NULL },
  { "GET", "/nope", EDGE_ROUTER_NOT_FOUND, NULL, NULL, NULL },
};

static EdgeRouter *
make_router (void)
{
  EdgeRouter *r = edge_router_new ();
  for (gsize i = 0; i < G_N_ELEMENTS (patterns); i++) {
    g_autoptr (GError) error = NULL;
    if (!edge_router_add (r, patterns[i][0], patterns[i][1], (gpointer) patterns[i][1], &error))
      fail_msg ("%s", error->message);
  }
  return r;
}

static void
test_matching (void **state)
{
  g_autoptr (EdgeRouter) r = make_router ();
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    const MatchCase *c = &cases[i];
    gpointer value = NULL;
    g_autoptr (GHashTable) params = NULL;
    g_autofree char *allow = NULL;
    EdgeRouterResult result = edge_router_match (r, c->method, c->path, &value, &params, &allow);
    if (result != c->result)
      fail_msg ("%s %s: result %d, expected %d", c->method, c->path, result, c->result);
    if (result == EDGE_ROUTER_FOUND) {
      assert_string_equal (value, c->pattern);
      g_auto (GStrv) expected = g_strsplit (c->params, ";", -1);
      guint n = 0;
      for (guint j = 0; expected[j] && expected[j][0]; j++, n++) {
        g_auto (GStrv) kv = g_strsplit (expected[j], "=", 2);
        const char *got = g_hash_table_lookup (params, kv[0]);
        if (got == NULL || !g_str_equal (got, kv[1]))
          fail_msg ("%s %s: param %s = %s, expected %s", c->method, c->path, kv[0],
                    got ? got : "(none)", kv[1]);
      }
      assert_int_equal (g_hash_table_size (params), n);
    } else {
      assert_null (params);
    }
    if (result == EDGE_ROUTER_METHOD_NOT_ALLOWED)
      assert_string_equal (allow, c->allow);
    else
      assert_null (allow);
  }
}

static void
test_bad_patterns (void **state)
{
  static const char *const bad[] = { "", "healthz", "/a//b", "/{}", "/{a b}", "/{rest*}/x",
                                     "/a{b}", "/{a", "/x/{*}" };
  g_autoptr (EdgeRouter) r = make_router ();
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    if (edge_router_add (r, "GET", bad[i], NULL, &error))
      fail_msg ("pattern \"%s\" accepted", bad[i]);
    assert_non_null (strstr (error->message, "malformed"));
  }
  /* Same shape, other parameter name: taken. */
  g_autoptr (GError) error = NULL;
  assert_false (edge_router_add (r, "GET", "/v1/cameras/{id}", NULL, &error));
  assert_non_null (strstr (error->message, "already taken by /v1/cameras/{name}"));
  assert_int_equal (edge_router_entries (r)->len, G_N_ELEMENTS (patterns));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_matching),
    cmocka_unit_test (test_bad_patterns),
  };
  return cmocka_run_group_tests_name ("router", tests, NULL, NULL);
}
