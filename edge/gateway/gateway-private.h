/* gateway-private.h: what the gateway's files share. Not installed, not for
 * modules. */
#pragma once

#include "edge-gateway.h"
#include "router.h"

typedef struct {
  char *method;
  char *pattern;
  char *summary;
  char *tag;
  gint64 max_body_bytes;
  EdgeErrorShape errors;
  gboolean admin_only;
  EdgeRouteFunc handler; /* NULL for WebSocket routes */
  EdgeWsOpenFunc ws_open;
  EdgeWsAcceptFunc ws_accept;
  gpointer user_data;
} GatewayRoute;

typedef struct {
  char *name;
  EdgeHealthFunc func;
  gpointer user_data;
} GatewayHealthCheck;

typedef struct _GatewayAuth GatewayAuth;

struct _EdgeGateway {
  char *listen;
  char *tls_cert_file;
  char *tls_key_file;
  char *web_root;
  gint64 max_body_bytes;
  gint64 max_connections;
  gboolean access_log;
  gint64 ws_max_buffered_bytes;
  gint64 ws_max_message_bytes;
  gint64 ws_stall_timeout_ms;
  EdgeMetrics *metrics;
  gint64 max_connections_per_client;
  gint64 header_timeout_ms;
  gint64 keepalive_timeout_ms;
  GatewayAuth *auth;        /* NULL: everyone is let in */
  GHashTable *per_client;   /* remote address text -> open connections (GUINT_TO_POINTER) */
  GHashTable *conns;        /* "address#port" -> Conn (gateway.c; borrowed from streams) */
  GHashTable *body_deadlines; /* EdgeRequest * set: those waiting for more body */

  GTlsCertificate *tls_certificate; /* NULL: plain HTTP */
  SoupServer *server;
  GSocketService *service;
  guint16 port;
  char *host;
  guint connections;
  EdgeRouter *router;
  GPtrArray *routes;        /* GatewayRoute */
  GPtrArray *health_checks; /* GatewayHealthCheck */
  GHashTable *peers;        /* EdgeWsPeer * set (one reference each) */
  GHashTable *streams;      /* accepted GIOStream * (weakly referenced) -> Conn */
  GHashTable *amz_targets;  /* service prefix -> GatewayRoute (handler, user_data) */
  GPtrArray *h2_conns;      /* H2Conn: HTTP/2 connections (gateway-h2.c) */
  guint ws_timer;
  GCancellable *cancellable;
};

struct _EdgeRequest {
  EdgeGateway *gateway;
  SoupServerMessage *msg; /* borrowed: the message owns the request */
  GatewayRoute *route;    /* NULL unless matched */
  EdgeRouterResult match;
  char *allow;
  GHashTable *params;
  char *path;
  char *peer; /* "address#port": the key of its Conn in gateway->conns */
  gint64 start_us;
  gint64 body_limit;
  gint64 body_seen;
  gboolean paused;
  gboolean responded;
  gboolean refused; /* answered on a connection taken back from libsoup */
  /* An answer sent as it is produced (edge_request_stream_begin). */
  gboolean streaming, stream_ended, held;
  gsize stream_queued;
  GSource *hangup; /* watches the client's socket while streaming */
  GSource *body_deadline; /* while the body comes: fires header_timeout after its last chunk */
  gint64 body_last_us;    /* when the last chunk came */
  GSocket *socket;        /* the client's, when it is ours to watch (not HTTP/2's) */
  gboolean corked;        /* TCP_CORK on it until libsoup has written the answer */
  EdgeRequestGoneFunc gone;
  gpointer gone_data;
  /* Set by authentication (auth.c). */
  char *principal;
  char *key_id; /* the API key it used, directly or through a session */
  gboolean admin;
  gint64 auth_expires_s; /* when the credential ends (0: it does not) */
  char *auth_query;      /* the ?token= it came with, encoded */
  char *authorizer_context;
};

/* auth.c */
typedef void (*EdgeGatewayContinueFunc) (EdgeRequest *request);
GatewayAuth *gateway_auth_new (EdgeGateway *gateway, const EdgeConfig *config, EdgeState *state,
                               GError **error);
void gateway_auth_register (GatewayAuth *auth);
void gateway_auth_free (GatewayAuth *auth);
/* Lets @request through to @next (now or later), or answers it. */
void gateway_auth_check (EdgeRequest *request, EdgeGatewayContinueFunc next);
/* Security and CORS headers, for every answer. */
void gateway_auth_decorate (EdgeRequest *request, const char *content_type);
/* Answers a CORS preflight; FALSE if @request is not one. */
gboolean gateway_auth_preflight (EdgeRequest *request);

/* gateway-ws.c */
void gateway_ws_upgrade (EdgeGateway *gateway, EdgeRequest *request);
void gateway_ws_start (EdgeGateway *gateway);
void gateway_ws_stop (EdgeGateway *gateway);

/* gateway-h2.c: serves an accepted connection that opened with the HTTP/2
 * preface (still unread); stop ends them all. */
void gateway_h2_serve (EdgeGateway *gateway, GSocketConnection *connection);
void gateway_h2_stop (EdgeGateway *gateway);

/* gateway.c: @connection turned out to speak HTTP/2. */
void gateway_conn_speaks_h2 (EdgeGateway *gateway, GSocketConnection *connection);

/* gateway-builtin.c: /healthz, /metrics, /v1/openapi.json, the web UI */
void gateway_builtin_register (EdgeGateway *gateway);

/* A metric label for the matched route, bounded in cardinality. */
const char *gateway_route_label (EdgeRequest *request);
