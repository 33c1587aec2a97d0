/* router.h: matching request paths to route patterns (private to the gateway;
 * pure, so that tests and fuzzers drive it without sockets).
 *
 * A pattern is a list of '/'-separated segments: a literal ("v1"), a
 * parameter ("{name}", one non-empty segment) or, last only, a rest parameter
 * ("{path*}", one or more segments). When several patterns match, the one
 * with the most literal segments before the first difference wins, so
 * "/v1/cameras/new" beats "/v1/cameras/{name}" whatever the order they were
 * added in. Paths are matched on their percent-decoded segments.
 */
#pragma once

#include <glib.h>

typedef struct _EdgeRouter EdgeRouter;

typedef enum {
  EDGE_ROUTER_FOUND,
  EDGE_ROUTER_NOT_FOUND,
  EDGE_ROUTER_METHOD_NOT_ALLOWED,
} EdgeRouterResult;

typedef struct {
  char *method;
  char *pattern;
  gpointer value; /* not owned */
} EdgeRouterEntry;

EdgeRouter *edge_router_new (void);
void edge_router_free (EdgeRouter *router);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeRouter, edge_router_free)

/* Adds @method @pattern -> @value. Fails (EDGE_GATEWAY_ERROR_ROUTE) for a
 * malformed pattern or one already taken for @method. */
gboolean edge_router_add (EdgeRouter *router, const char *method, const char *pattern,
                          gpointer value, GError **error);

/* Matches @path (raw, percent-encoded, without query). On FOUND, *ret_value
 * is the entry's value and *ret_params (transfer full, nullable out) maps
 * parameter names to decoded values. On METHOD_NOT_ALLOWED, *ret_allow
 * (transfer full, nullable out) lists the methods that would match, e.g.
 * "GET, POST". Out parameters are written only for the result they belong to. */
EdgeRouterResult edge_router_match (EdgeRouter *router, const char *method, const char *path,
                                    gpointer *ret_value, GHashTable **ret_params,
                                    char **ret_allow);

/* All entries in registration order. (transfer none) */
const GPtrArray *edge_router_entries (EdgeRouter *router);
