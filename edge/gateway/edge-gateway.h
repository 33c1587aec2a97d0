/* edge-gateway.h: the HTTP/WebSocket gateway (docs/internals/gateway.md).
 *
 * One listener (HTTP or HTTPS) on the main loop. Modules register routes and
 * WebSocket endpoints into it; it knows none of them. It owns the cross-cutting
 * parts: the router, body limits, JSON errors, the access log, request
 * metrics, /healthz, /metrics, /v1/openapi.json and the web UI's files.
 *
 * Threading: everything here runs on the thread whose GMainContext was the
 * thread-default when the gateway was made (the main thread); handlers run
 * there too and must not block.
 */
#pragma once

#include "edge-core.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

G_BEGIN_DECLS

#define EDGE_GATEWAY_ERROR (edge_gateway_error_quark ())
GQuark edge_gateway_error_quark (void);
typedef enum {
  EDGE_GATEWAY_ERROR_ROUTE,  /* a bad or duplicate route pattern */
  EDGE_GATEWAY_ERROR_LISTEN, /* the address could not be bound */
  EDGE_GATEWAY_ERROR_TLS,    /* certificate or key unusable */
  EDGE_GATEWAY_ERROR_AUTH,   /* an unusable auth configuration (keys, groups) */
} EdgeGatewayError;

/* Listen backlog: libsoup's default of 10 adds whole retransmit timeouts to
 * tail latency as soon as a few dozen clients connect at once. */
#define EDGE_GATEWAY_LISTEN_BACKLOG 1024
/* Header bytes a request may carry, and how many fields. */
#define EDGE_GATEWAY_MAX_HEADER_FIELDS 100
/* Segments a route pattern or a routed path has at most. */
#define EDGE_GATEWAY_MAX_PATH_SEGMENTS 32
/* Largest JSON nesting the shared JSON entry point accepts. */
#define EDGE_JSON_MAX_DEPTH EDGE_JSON_READER_MAX_DEPTH

typedef struct {
  const char *listen;        /* "HOST:PORT" */
  const char *tls_cert_file; /* nullable; with tls_key_file, HTTPS only */
  const char *tls_key_file;
  gint64 max_body_bytes;
  gint64 max_connections;
  gboolean access_log;
  const char *web_root; /* nullable: the web UI built into the binary */
  gint64 ws_max_buffered_bytes;
  gint64 ws_max_message_bytes;
  gint64 ws_stall_timeout_ms;
  EdgeMetrics *metrics; /* borrowed; must outlive the gateway */
  gint64 max_connections_per_client;
  gint64 header_timeout_ms; /* a connection's request head must arrive within this */
  gint64 keepalive_timeout_ms; /* an idle HTTP/1.1 connection is kept this long; 0: never */
  /* Authentication, usage plans and CORS (gateway.auth, gateway.cors):
   * with NULL, every request is let in. @state keeps the API keys. Both
   * borrowed. */
  const EdgeConfig *config;
  EdgeState *state;
} EdgeGatewayOptions;

typedef struct _EdgeGateway EdgeGateway;

/* Makes a gateway with the built-in routes (/healthz, /metrics,
 * /v1/openapi.json, the web UI). Nothing listens until edge_gateway_start.
 * Fails on an unusable TLS certificate or key. (transfer full) */
EdgeGateway *edge_gateway_new (const EdgeGatewayOptions *options, GError **error);

/* Binds and listens. The bound port (useful with port 0) is then
 * edge_gateway_port; the base URL edge_gateway_url. */
gboolean edge_gateway_start (EdgeGateway *gateway, GError **error);
guint16 edge_gateway_port (EdgeGateway *gateway);
/* "http://127.0.0.1:8080" (https with TLS). (transfer full) */
char *edge_gateway_url (EdgeGateway *gateway);

/* Stops listening and closes every connection, WebSocket peers included
 * (close code 1001). Accepts NULL. */
void edge_gateway_free (EdgeGateway *gateway);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeGateway, edge_gateway_free)

/* ---- requests ---- */

typedef struct _EdgeRequest EdgeRequest;

typedef void (*EdgeRouteFunc) (EdgeRequest *request, gpointer user_data);

/* The shape of the errors a route's clients expect (the gateway's own
 * refusals, such as authentication's, are given in it). */
typedef enum {
  EDGE_ERRORS_EDGED,       /* {"error": {"code", "message"}} */
  EDGE_ERRORS_AWS_JSON,    /* {"__type", "message"} (Kinesis) */
  EDGE_ERRORS_AWS_REST,    /* X-Amzn-ErrorType and {"message"} (Lambda, Kinesis Video) */
  EDGE_ERRORS_API_GATEWAY, /* {"message"} (functions' HTTP routes) */
} EdgeErrorShape;

typedef struct {
  const char *method;  /* "GET", "POST", ... */
  const char *pattern; /* "/v1/cameras/{name}"; a last segment "{path*}" takes the rest */
  EdgeRouteFunc handler;
  const char *summary; /* one line, for the OpenAPI document */
  const char *tag;     /* OpenAPI tag, e.g. "system" */
  gint64 max_body_bytes; /* 0: the gateway's limit */
  EdgeErrorShape errors;
  gboolean admin_only; /* with authentication on: admin credentials only */
} EdgeRoute;

/* Registers @route (copied). @user_data is passed to the handler and not
 * owned. Fails for a malformed pattern or a method+pattern already taken. */
gboolean edge_gateway_add_route (EdgeGateway *gateway, const EdgeRoute *route, gpointer user_data,
                                 GError **error);

/* AWS JSON protocol services share "POST /" and are told apart by the
 * X-Amz-Target header ("Kinesis_20131202.PutRecord"). Registers @handler for
 * every target whose part before the dot is @service; the gateway answers
 * unknown services in the AWS error shape. */
gboolean edge_gateway_add_amz_target (EdgeGateway *gateway, const char *service,
                                      EdgeRouteFunc handler, const char *summary,
                                      gpointer user_data, GError **error);

/* Answers in the AWS JSON 1.1 error shape: {"__type": TYPE, "message": ...}
 * with Content-Type application/x-amz-json-1.1. */
void edge_request_respond_amz_error (EdgeRequest *request, guint status, const char *type,
                                     const char *format, ...) G_GNUC_PRINTF (4, 5);
/* Answers in the AWS REST JSON error shape (Lambda, Kinesis Video):
 * X-Amzn-ErrorType: TYPE and {"message": ...}, application/json. */
void edge_request_respond_rest_error (EdgeRequest *request, guint status, const char *type,
                                      const char *format, ...) G_GNUC_PRINTF (4, 5);
/* Answers @body with Content-Type application/x-amz-json-1.1. */
void edge_request_respond_amz_json (EdgeRequest *request, JsonNode *body);

/* A named check run by GET /healthz; FALSE with @error makes the answer 503. */
typedef gboolean (*EdgeHealthFunc) (gpointer user_data, GError **error);
void edge_gateway_add_health_check (EdgeGateway *gateway, const char *name, EdgeHealthFunc func,
                                    gpointer user_data);

/* ---- authentication (auth.c, docs/internals/auth.md) ---- */

/* Whether the gateway asks for credentials (gateway.auth.enabled). */
gboolean edge_gateway_auth_enabled (EdgeGateway *gateway);
/* An API key valid while this edged runs, for its own functions to call
 * back (EDGED_API_KEY); NULL when authentication is off. */
const char *edge_gateway_internal_key (EdgeGateway *gateway);
/* The access key id that signs (SigV4) with that same key as its secret,
 * for the AWS SDKs in functions (AWS_ACCESS_KEY_ID). */
const char *edge_gateway_internal_access_key_id (EdgeGateway *gateway);
/* Whether a listen address ("HOST:PORT") is on the loopback interface. */
gboolean edge_listen_is_loopback (const char *listen);

/* A function authorizer's answer: @context is a JSON object's text or NULL. */
typedef void (*EdgeAuthorizerDoneFunc) (gboolean allow, const char *context, gpointer done_data);
/* Invokes @function with @event (an API Gateway REQUEST authorizer event,
 * payload 2.0) and calls @done once, on the main thread. */
typedef void (*EdgeGatewayAuthorizerFunc) (const char *function, GBytes *event,
                                           EdgeAuthorizerDoneFunc done, gpointer done_data,
                                           gpointer user_data);
void edge_gateway_set_authorizer (EdgeGateway *gateway, EdgeGatewayAuthorizerFunc func,
                                  gpointer user_data);

/* "ENCODED" when the request authenticated with ?token=ENCODED: links an
 * answer hands out (an HLS playlist's) carry it on. NULL otherwise. */
const char *edge_request_auth_query (EdgeRequest *request);
/* A session token (for ?token=) standing for the request's caller for
 * @ttl_s seconds, to hand to players that cannot sign requests; NULL when
 * authentication is off. (transfer full) */
char *edge_request_issue_session (EdgeRequest *request, gint64 ttl_s);
/* The context a function authorizer returned (a JSON object), or NULL. */
const char *edge_request_authorizer_context (EdgeRequest *request);

/* Request accessors: all (transfer none), valid until the handler responds. */
const char *edge_request_method (EdgeRequest *request);
const char *edge_request_path (EdgeRequest *request);
/* A {name} parameter of the matched pattern, percent-decoded; NULL if none. */
const char *edge_request_param (EdgeRequest *request, const char *name);
/* Every path parameter, name -> decoded value; NULL when the pattern has
 * none. (transfer none) */
GHashTable *edge_request_params (EdgeRequest *request);
/* A query parameter; NULL if absent. */
const char *edge_request_query (EdgeRequest *request, const char *name);
const char *edge_request_header (EdgeRequest *request, const char *name);
/* Every header of the request. */
SoupMessageHeaders *edge_request_headers (EdgeRequest *request);
/* The answer's headers, for a handler to add to before it responds. */
SoupMessageHeaders *edge_request_response_headers (EdgeRequest *request);
/* The request's URI: its path and query as sent (percent-encoded). */
GUri *edge_request_uri (EdgeRequest *request);
/* The client's address, as text. */
const char *edge_request_remote_host (EdgeRequest *request);
/* SOUP_HTTP_1_0, SOUP_HTTP_1_1 or SOUP_HTTP_2_0. */
SoupHTTPVersion edge_request_http_version (EdgeRequest *request);
/* The whole body (already bounded by the route's limit). */
GBytes *edge_request_body (EdgeRequest *request);
/* Parses the body as JSON through the checked entry point (size, depth,
 * UTF-8). On failure responds 400 itself and returns NULL. (transfer full) */
JsonNode *edge_request_json (EdgeRequest *request);
/* Answers {"@member": [...]} with @items written by @write, each an object. */
typedef void (*EdgeJsonWriteFunc) (gpointer item, JsonBuilder *builder);
/* 200 with the object @write makes of @item. */
void edge_request_respond_object (EdgeRequest *request, gpointer item, EdgeJsonWriteFunc write);
/* A member of the object being built. */
void edge_json_add_int (JsonBuilder *b, const char *name, gint64 value);
void edge_json_add_string (JsonBuilder *b, const char *name, const char *value);
void edge_request_respond_array (EdgeRequest *request, const char *member, GPtrArray *items,
                                 EdgeJsonWriteFunc write);
/* The region an AWS client signed for (its Authorization header's
 * Credential scope), or "us-east-1" for an unsigned request. (transfer full) */
char *edge_request_aws_region (EdgeRequest *request);
/* @object's member @name if it is a string; NULL when absent or another
 * type. Accepts a NULL @object. (transfer none) */
const char *edge_json_member_string (JsonObject *object, const char *name);
/* The underlying libsoup message, for WebSocket handlers; NULL for a
 * request that came over HTTP/2, which the gateway serves itself. */
SoupServerMessage *edge_request_message (EdgeRequest *request);

/* Responses. Each handler calls exactly one of these, before returning or,
 * after edge_request_pause, later on the main thread. */
void edge_request_respond (EdgeRequest *request, guint status, const char *content_type,
                           GBytes *body);
/* The body in @parts (GBytes, each referenced, not copied): for answers of
 * megabytes, built in pieces that the allocator reuses rather than one
 * fresh buffer per request. */
void edge_request_respond_parts (EdgeRequest *request, guint status, const char *content_type,
                                 GPtrArray *parts);
void edge_request_respond_json (EdgeRequest *request, guint status, JsonNode *body);
/* {"error": {"code": CODE, "message": MESSAGE}} with @status. */
void edge_request_respond_error (EdgeRequest *request, guint status, const char *code,
                                 const char *format, ...) G_GNUC_PRINTF (4, 5);
/* The error shape of edged's own APIs: {"error": {"code": CODE, "message":
 * MESSAGE}}, compact JSON text. (transfer full) */
char *edge_json_error (const char *code, const char *message, gsize *ret_len);

/* Keeps the request open after the handler returns; takes a reference
 * that the respond call releases. */
void edge_request_pause (EdgeRequest *request);

/* An answer whose body is sent as it is produced (chunked over HTTP/1.1,
 * DATA frames over HTTP/2), for event streams. After begin, the request
 * stays valid until stream_end, or until the client goes away: then @gone
 * is called once, on the main thread, and the request must not be used
 * after it returns. (Instead of one of the respond calls.) */
typedef void (*EdgeRequestGoneFunc) (gpointer user_data);
void edge_request_stream_begin (EdgeRequest *request, guint status, const char *content_type,
                                EdgeRequestGoneFunc gone, gpointer user_data);
/* Queues @bytes (referenced) for the client. */
void edge_request_stream_write (EdgeRequest *request, GBytes *bytes);
/* Bytes queued and not yet written: writers hold back while it is large. */
gsize edge_request_stream_queued (EdgeRequest *request);
/* Ends the body; @gone is not called after this. */
void edge_request_stream_end (EdgeRequest *request);

/* The one entry point for untrusted JSON: rejects more than @max_bytes,
 * nesting deeper than EDGE_JSON_MAX_DEPTH, invalid UTF-8 and trailing data,
 * before json-glib sees it. (transfer full) or NULL with @error. */
JsonNode *edge_json_parse (const char *data, gsize len, gsize max_bytes, GError **error);
/* Serialises compactly. (transfer full) */
char *edge_json_to_string (JsonNode *node, gsize *ret_len);

/* ---- WebSockets ---- */

typedef struct _EdgeWsPeer EdgeWsPeer;

/* Called once the handshake is done. The gateway keeps the peer until it
 * closes; take a reference to keep using it after this returns. */
typedef void (*EdgeWsOpenFunc) (EdgeWsPeer *peer, EdgeRequest *request, gpointer user_data);

/* Called, when set, before the handshake is answered: the handler either
 * refuses with one of the respond calls, or lets the client in with
 * edge_request_ws_accept (then @open follows), now or after
 * edge_request_pause. */
typedef void (*EdgeWsAcceptFunc) (EdgeRequest *request, gpointer user_data);

typedef struct {
  const char *pattern; /* "/v1/cameras/{name}/live" */
  EdgeWsOpenFunc open;
  const char *summary;
  const char *tag;
  EdgeWsAcceptFunc accept; /* nullable: everyone is let in */
} EdgeWsRoute;

/* Completes the handshake of a request an EdgeWsAcceptFunc was given. */
void edge_request_ws_accept (EdgeRequest *request);

gboolean edge_gateway_add_websocket (EdgeGateway *gateway, const EdgeWsRoute *route,
                                     gpointer user_data, GError **error);

typedef enum {
  EDGE_WS_SENT,    /* queued for the client */
  EDGE_WS_DROPPED, /* the client's queue is full: not sent (see below) */
  EDGE_WS_CLOSED,  /* the connection is closing or closed */
} EdgeWsSendResult;

/* Queues a message. A client that reads slower than we send would make the
 * queue grow without bound, so a send that would take the bytes queued for
 * this client past gateway.websocket.max_buffered_bytes is refused with
 * EDGE_WS_DROPPED: the caller decides what dropping means (live video skips
 * to the next keyframe). A client whose queue stays full for the stall
 * timeout is closed with code 1008. */
EdgeWsSendResult edge_ws_peer_send (EdgeWsPeer *peer, GBytes *message, gboolean binary);
EdgeWsSendResult edge_ws_peer_send_text (EdgeWsPeer *peer, const char *text);
/* Bytes queued for the client and not yet written to its socket. */
gsize edge_ws_peer_buffered (EdgeWsPeer *peer);
/* The queue limit sends are refused past (gateway.websocket.max_buffered_bytes). */
gsize edge_ws_peer_max_buffered (EdgeWsPeer *peer);
/* Messages refused with EDGE_WS_DROPPED so far. */
guint64 edge_ws_peer_dropped (EdgeWsPeer *peer);
gboolean edge_ws_peer_is_open (EdgeWsPeer *peer);

typedef void (*EdgeWsMessageFunc) (EdgeWsPeer *peer, GBytes *message, gboolean binary,
                                   gpointer user_data);
typedef void (*EdgeWsCloseFunc) (EdgeWsPeer *peer, gpointer user_data);
/* @on_close runs once: when the connection closes, or when the gateway
 * stops. @user_data is released with @destroy when the peer is finalised. */
void edge_ws_peer_set_handlers (EdgeWsPeer *peer, EdgeWsMessageFunc on_message,
                                EdgeWsCloseFunc on_close, gpointer user_data,
                                GDestroyNotify destroy);
void edge_ws_peer_close (EdgeWsPeer *peer, gushort code, const char *reason);

EdgeWsPeer *edge_ws_peer_ref (EdgeWsPeer *peer);
void edge_ws_peer_unref (EdgeWsPeer *peer);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeWsPeer, edge_ws_peer_unref)

/* ---- requests to other servers ---- */

/* Sends @msg and reads its answer whatever the status, failing with
 * G_IO_ERROR_MESSAGE_TOO_LARGE once the answer passes @max_bytes. The
 * status and headers are then @msg's. */
void edge_client_send_async (SoupSession *session, SoupMessage *msg, gsize max_bytes,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data);
GBytes *edge_client_send_finish (GAsyncResult *result, GError **error);
/* The message @result answers. (transfer none) */
SoupMessage *edge_client_send_message (GAsyncResult *result);

typedef struct {
  const char *access_key_id;
  const char *secret_access_key;
  const char *region;
} EdgeClientCredentials;

/* Signs @msg for @service with SigV4: X-Amz-Date, Host and
 * Authorization are set, and every header it carries is signed. Its body
 * (@body, nullable) must be set already; its URI's path is signed as it is
 * (encoded once, as S3 wants; other services' paths must need no
 * encoding). With @content_sha256_header, the payload hash goes in
 * X-Amz-Content-Sha256 too (S3). */
void edge_client_sign (SoupMessage *msg, const EdgeClientCredentials *credentials,
                       const char *service, GBytes *body, gboolean content_sha256_header);

G_END_DECLS
