/* Fuzzes path matching: the first line is a method, the rest a path. */
#include "edge-gateway.h"
#include "router.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static EdgeRouter *router;

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const char *const patterns[] = { "/", "/healthz", "/v1/cameras/{name}",
                                          "/v1/cameras/new", "/v1/cameras/{name}/hls/{file}",
                                          "/assets/{path*}" };
  if (router == NULL) {
    router = edge_router_new ();
    for (gsize i = 0; i < G_N_ELEMENTS (patterns); i++)
      edge_router_add (router, "GET", patterns[i], (gpointer) patterns[i], NULL);
  }
  char *text = g_strndup ((const char *) data, size);
  char *nl = strchr (text, '\n');
  const char *method = "GET", *path = text;
  if (nl) {
    *nl = '\0';
    method = text;
    path = nl + 1;
  }
  gpointer value = NULL;
  GHashTable *params = NULL;
  char *allow = NULL;
  EdgeRouterResult r = edge_router_match (router, method, path, &value, &params, &allow);
  if (r == EDGE_ROUTER_FOUND && (value == NULL || params == NULL))
    __builtin_trap ();
  if (params)
    g_hash_table_unref (params);
  g_free (allow);
  /* Patterns from bytes must be accepted or refused, never crash. */
  EdgeRouter *other = edge_router_new ();
  edge_router_add (other, method, path, NULL, NULL);
  edge_router_free (other);
  g_free (text);
  return 0;
}
