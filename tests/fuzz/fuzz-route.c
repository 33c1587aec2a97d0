/* Fuzzes HTTP API route keys and their matching: the first line is a route
 * key ("ANY /items/{id}"), the rest a request path. A key the parser takes
 * must become a pattern the gateway's router takes, and a path it matches
 * must bind every parameter of the key to a non-empty value. */
#include "functions-private.h"
#include "router.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = g_strndup ((const char *) data, size);
  char *nl = strchr (text, '\n');
  const char *path = "/";
  if (nl) {
    *nl = '\0';
    path = nl + 1;
  }
  char *method = NULL, *pattern = NULL;
  if (functions_route_parse (text, &method, &pattern, NULL)) {
    EdgeRouter *router = edge_router_new ();
    if (!edge_router_add (router, g_str_equal (method, "ANY") ? "GET" : method, pattern, text,
                          NULL))
      __builtin_trap ();
    guint braces = 0;
    for (const char *p = text; *p; p++)
      braces += *p == '{';
    gpointer value = NULL;
    GHashTable *params = NULL;
    char *allow = NULL;
    EdgeRouterResult r = edge_router_match (router, g_str_equal (method, "ANY") ? "GET" : method,
                                            path, &value, &params, &allow);
    if (r == EDGE_ROUTER_FOUND) {
      if (value != text || g_hash_table_size (params) != braces)
        __builtin_trap ();
      GHashTableIter iter;
      gpointer v;
      g_hash_table_iter_init (&iter, params);
      while (g_hash_table_iter_next (&iter, NULL, &v))
        if (((const char *) v)[0] == '\0')
          __builtin_trap ();
    }
    if (params)
      g_hash_table_unref (params);
    g_free (allow);
    edge_router_free (router);
  }
  g_free (method);
  g_free (pattern);
  g_free (text);
  return 0;
}
