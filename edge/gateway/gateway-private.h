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

typedef struct _H1Conn H1Conn;

/* One accepted TCP connection (plain or TLS), found by the stream libsoup
 * got (gateway->streams) or by its peer's address and port
 * (gateway->conns): libsoup tells a request's peer, not its socket. */
typedef struct {
  EdgeGateway *gateway;
  char *client; /* the peer's address, for per-client limits */
  char *peer;   /* address and port */
  GSocket *socket;
  GSource *head_deadline; /* until the request head is in */
  gboolean h2;            /* its requests come through gateway-h2.c */
  H1Conn *h1;             /* served by gateway-http1.c (until libsoup takes it) */
  /* Kept alive between two requests (conn_idle_begin). */
  GSource *idle;               /* watches the socket ahead of libsoup */
  SoupServerMessage *idle_msg; /* the last answered: the handle to end it by */
  gulong idle_handler;
  gint64 idle_since;           /* monotonic µs */
} Conn;

/* How a request that libsoup did not read is answered: gateway-h2.c's
 * streams, gateway-http1.c's connections. */
typedef struct {
  /* The answer, given whole: request->status, response_headers, parts. */
  void (*respond) (EdgeRequest *request);
  /* An answer sent as it is produced: its head, each piece, its end. */
  void (*stream_begin) (EdgeRequest *request);
  void (*stream_write) (EdgeRequest *request, GBytes *bytes);
  void (*stream_end) (EdgeRequest *request);
  SoupHTTPVersion version;
} GatewayTransport;

/* A request, whichever way it came: through libsoup (@msg, which owns the
 * request), or read by the gateway itself (@transport: HTTP/2 streams,
 * plain HTTP/1.1 connections), @msg NULL and the request counted by
 * @refs: its transport's, and a paused handler's. The fields below @msg
 * are the request's whole: for libsoup's, borrowed from the message;
 * otherwise owned. */
struct _EdgeRequest {
  EdgeGateway *gateway;
  SoupServerMessage *msg; /* borrowed: the message owns the request; NULL: HTTP/2 */
  const char *method;
  GUri *uri;
  SoupMessageHeaders *request_headers;
  SoupMessageHeaders *response_headers;
  GHashTable *query_form; /* the query, decoded when first asked */
  /* Read by the gateway itself: */
  const GatewayTransport *transport;
  gpointer link;          /* the transport's stream or connection, while open */
  gint refs;
  char *remote_host;
  GBytes *body;
  guint status;
  GPtrArray *parts;       /* the answer's body (GBytes) */
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
extern const GatewayTransport gateway_h2_transport;

/* gateway-http1.c: serves a plain connection that does not speak HTTP/2,
 * until a request comes that libsoup is to take (gateway_conn_to_soup). */
void gateway_h1_serve (EdgeGateway *gateway, Conn *conn, GSocketConnection *connection);
/* Between two requests, having answered one at least. */
gboolean gateway_h1_idle (H1Conn *h1);
void gateway_h1_close (H1Conn *h1);
extern const GatewayTransport gateway_h1_transport;

/* gateway.c: a request read by @transport (on @link), which holds the
 * first reference; its body comes with gateway_request_set_body. Then
 * matched (gateway_request_match, if not before), checked and handed to
 * its route as libsoup's requests are (gateway_request_start). */
EdgeRequest *gateway_request_new (EdgeGateway *gateway, const GatewayTransport *transport,
                                  gpointer link, const char *method, GUri *uri,
                                  SoupMessageHeaders *headers, const char *remote_host);
void gateway_request_set_body (EdgeRequest *request, GBytes *body);
void gateway_request_match (EdgeRequest *request);
gboolean gateway_request_too_many_fields (EdgeRequest *request);
void gateway_request_start (EdgeRequest *request);
/* Keeps @request (and its message) alive: for answers given later. */
void gateway_request_ref (EdgeRequest *request);
void gateway_request_unref (EdgeRequest *request);
/* Its transport is done with @request (answered, or gone: @request->link
 * is NULL by then, and it answers into nothing): logged if answered, a
 * streamed answer's gone function called, the transport's reference
 * dropped. */
void gateway_request_done (EdgeRequest *request);
/* Now as an HTTP date ("Mon, 30 Nov 2026 15:01:13 GMT"), as libsoup writes
 * it, made once a second. (transfer none) */
const char *gateway_http_date (void);
/* @uri (parsed from a request line, or HTTP/2's :path) with its path
 * percent-decoded, as libsoup's server hands requests over; NULL where
 * libsoup answers 400 (an invalid escape, or a ".." segment the decoding
 * would bring in). (transfer full) */
GUri *gateway_uri_decoded (GUri *uri);
/* libsoup takes @connection, plain, from here on. */
void gateway_conn_to_soup (EdgeGateway *gateway, Conn *conn, GSocketConnection *connection);
void gateway_conn_clear_head_deadline (Conn *conn);

/* gateway.c: @connection turned out to speak HTTP/2. */
void gateway_conn_speaks_h2 (EdgeGateway *gateway, GSocketConnection *connection);

/* gateway-builtin.c: /healthz, /metrics, /v1/openapi.json, the web UI */
void gateway_builtin_register (EdgeGateway *gateway);

/* A metric label for the matched route, bounded in cardinality. */
const char *gateway_route_label (EdgeRequest *request);
