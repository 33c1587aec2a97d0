/* functions-private.h: what the parts of the functions module share.
 *
 *   service.c    functions, execution environments, the Lambda API
 *   async.c      asynchronous (Event) invocations: a durable queue, retries,
 *                destinations
 *   schedule.c   rate() and cron() expressions, and the schedules
 *   routes.c     HTTP API routes (payload format 2.0)
 *   runtime-http.c  the Runtime API's HTTP/1.1 server, one per environment
 */
#pragma once

#include "functions.h"

#define FUNCTIONS_ACCOUNT "000000000000"
#define FUNCTIONS_REGION "us-east-1"

/* ---- service.c ---- */

/* The definition of @name, NULL if none. (transfer none) */
const EdgeConfigFunction *functions_service_function (FunctionsService *service,
                                                      const char *name);
/* arn:aws:lambda:REGION:ACCOUNT:function:NAME, NULL if none. (transfer none) */
const char *functions_service_arn (FunctionsService *service, const char *name);

/* ---- runtime-http.c ---- */

typedef struct _FunctionsRuntimeServer FunctionsRuntimeServer;
typedef struct _FunctionsRuntimeRequest FunctionsRuntimeRequest;

/* A whole request: answer it with functions_runtime_answer, now or later
 * (until then no other request on its connection is read). */
typedef void (*FunctionsRuntimeHandler) (FunctionsRuntimeRequest *request, gpointer data);
/* A request handed over but not answered lost its connection: it is freed
 * after this returns and must not be answered. */
typedef void (*FunctionsRuntimeGone) (FunctionsRuntimeRequest *request, gpointer data);

/* An HTTP/1.1 server for one environment's Runtime API on a free loopback
 * port; bodies over @max_body are not read (the request says so). */
FunctionsRuntimeServer *functions_runtime_server_new (gsize max_body,
                                                      FunctionsRuntimeHandler handler,
                                                      FunctionsRuntimeGone gone, gpointer data,
                                                      GError **error);
guint16 functions_runtime_server_port (FunctionsRuntimeServer *server);
/* Serves one connection already made (@fd, non-blocking; the server owns
 * it): what the listener does with each it accepts. */
void functions_runtime_server_adopt (FunctionsRuntimeServer *server, int fd);
/* Closes every connection; requests not answered are dropped, without
 * @gone. Accepts NULL. */
void functions_runtime_server_free (FunctionsRuntimeServer *server);

const char *functions_runtime_request_method (FunctionsRuntimeRequest *request);
/* The request's path, without its query. */
const char *functions_runtime_request_path (FunctionsRuntimeRequest *request);
/* The body; NULL when it was over the limit (and not read). */
GBytes *functions_runtime_request_body (FunctionsRuntimeRequest *request);
gboolean functions_runtime_request_too_large (FunctionsRuntimeRequest *request);
/* Answers @request (which is freed) with @status, a JSON @body (nullable)
 * and @headers: name, value, ..., NULL (nullable). */
void functions_runtime_answer (FunctionsRuntimeRequest *request, guint status,
                               const char *const *headers, GBytes *body);
void functions_runtime_answer_json (FunctionsRuntimeRequest *request, guint status,
                                    const char *json);

/* ---- cgroup.c ---- */

typedef struct _FunctionsCgroups FunctionsCgroups;
typedef struct _FunctionsCgroup FunctionsCgroup;

/* Finds where environments' control groups can be made (v2 delegated, or
 * v1 memory and pids as root), and says which at start. (transfer full) */
FunctionsCgroups *functions_cgroups_new (void);
gboolean functions_cgroups_available (FunctionsCgroups *cgroups);
void functions_cgroups_free (FunctionsCgroups *cgroups);
/* A group for one environment with its limits; NULL where none can be made. */
FunctionsCgroup *functions_cgroup_new (FunctionsCgroups *cgroups, const char *name,
                                       guint64 memory_bytes, guint max_processes);
/* In the child, between fork and exec: joins @group (nullable). */
void functions_cgroup_join (const FunctionsCgroup *group);
/* Peak memory of the group's processes so far; 0 if unknown. */
guint64 functions_cgroup_peak_bytes (const FunctionsCgroup *group);
/* Processes the kernel killed in the group for memory. */
guint64 functions_cgroup_oom_kills (const FunctionsCgroup *group);
/* Removes the group (its processes must be gone). Accepts NULL. */
void functions_cgroup_free (FunctionsCgroup *group);

/* ---- async.c ---- */

typedef struct _FunctionsAsync FunctionsAsync;

/* Keeps Event invocations in @state (table function_events), payloads
 * sealed with keys derived for "functions/events". (transfer full) */
FunctionsAsync *functions_async_new (FunctionsService *service, EdgeState *state,
                                     EdgeKeyring *keyring, StreamStore *streams,
                                     EdgeMetrics *metrics, GError **error);
/* Resumes the invocations kept from before (functions must be added). */
gboolean functions_async_start (FunctionsAsync *async, GError **error);
/* Stores an invocation of @function (committed when this returns TRUE) and
 * runs it when it can. */
gboolean functions_async_enqueue (FunctionsAsync *async, const char *function,
                                  const char *request_id, GBytes *payload, GError **error);
/* Frees; what is kept stays for the next start. Accepts NULL. */
void functions_async_free (FunctionsAsync *async);

/* TRUE when @destination (a stream name or a Kinesis stream ARN) names a
 * stream of @streams. */
gboolean functions_destination_check (StreamStore *streams, const char *destination,
                                      GError **error);
/* The stream name @destination names. (transfer none: points into it) */
const char *functions_destination_stream (const char *destination);

/* ---- routes.c ---- */

typedef struct _FunctionsRoute FunctionsRoute;

/* Checks an API Gateway route key ("GET /items/{id}", "ANY /{proxy+}") and
 * gives its method ("ANY" included) and the gateway pattern it becomes. */
gboolean functions_route_parse (const char *key, char **ret_method, char **ret_pattern,
                                GError **error);
/* Routes @config's requests to its function through @gateway; the route
 * is appended to @routes (owned there, freed with functions_route_free)
 * once any method of it may be routed. */
gboolean functions_route_add (FunctionsService *service, EdgeGateway *gateway,
                              const EdgeConfigRoute *config, GPtrArray *routes, GError **error);
void functions_route_free (FunctionsRoute *route);
/* @ms (Unix) as ISO 8601 in UTC with milliseconds: "2019-11-14T18:16:05.568Z". */
char *functions_iso_time (gint64 ms);
/* @ms (Unix) as API Gateway writes request times: "09/Feb/2019:17:36:08 +0000". */
char *functions_apigw_time (gint64 ms);

/* ---- websocket.c ---- */

typedef struct _FunctionsWebSockets FunctionsWebSockets;

FunctionsWebSockets *functions_websockets_new (FunctionsService *service, EdgeGateway *gateway);
/* Serves @config's WebSocket API (and, with the first, /@connections/{id}). */
gboolean functions_websockets_add (FunctionsWebSockets *ws, const EdgeConfigWebSocket *config,
                                   GError **error);
/* Routes the messages with @config's action to its function. */
gboolean functions_websockets_add_route (FunctionsWebSockets *ws,
                                         const EdgeConfigWebSocketRoute *config, GError **error);
void functions_websockets_free (FunctionsWebSockets *ws);

/* ---- schedule.c ---- */

typedef struct _FunctionsCron FunctionsCron;

/* Parses rate(...), cron(...) or at(...) (EventBridge's syntax, in UTC).
 * (transfer full) */
FunctionsCron *functions_cron_parse (const char *expression, GError **error);
/* The first time (Unix seconds) after @after_s that @cron fires, for a
 * schedule started at @start_s (rates count from it); -1 for none before
 * the year 2200. */
gint64 functions_cron_next (const FunctionsCron *cron, gint64 after_s, gint64 start_s);
void functions_cron_free (FunctionsCron *cron);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FunctionsCron, functions_cron_free)

typedef struct _FunctionsSchedule FunctionsSchedule;

/* Starts @config's schedule: at each time, an asynchronous invocation of
 * its function through @async. (transfer full) */
FunctionsSchedule *functions_schedule_new (FunctionsAsync *async,
                                           const EdgeConfigSchedule *config,
                                           gboolean function_exists, GError **error);
const char *functions_schedule_name (FunctionsSchedule *schedule);
void functions_schedule_free (FunctionsSchedule *schedule);

/* ---- mappings.c ---- */

typedef struct _FunctionsMapping FunctionsMapping;

/* Invokes @config's function with its stream's records, from the
 * consumer's checkpoints. (transfer full) */
FunctionsMapping *functions_mapping_new (FunctionsService *service, StreamStore *streams,
                                         EdgeMetrics *metrics, const EdgeConfigMapping *config,
                                         GError **error);
const char *functions_mapping_stream (FunctionsMapping *mapping);
/* A UUID for the Lambda API, the same across restarts. (transfer full) */
char *functions_mapping_uuid (FunctionsMapping *mapping);
/* As Lambda's EventSourceMappingConfiguration. (transfer full) */
JsonNode *functions_mapping_describe (FunctionsMapping *mapping);
const char *functions_mapping_function (FunctionsMapping *mapping);
/* Stops; batches under way are delivered again after a restart. */
void functions_mapping_free (FunctionsMapping *mapping);

/* ---- logs.c ---- */

typedef struct _FunctionsLogs FunctionsLogs;

/* Functions' log lines into their streams (nullable @streams: nowhere). */
FunctionsLogs *functions_logs_new (StreamStore *streams, EdgeMetrics *metrics);
/* The logs stream of @function: "function-logs-NAME". (transfer full) */
char *functions_logs_stream (const char *function);
/* Creates @function's logs stream if it does not exist. */
gboolean functions_logs_ensure (FunctionsLogs *logs, const char *function, GError **error);
/* One line (no newline) for @function's stream, of @request_id (nullable). */
void functions_logs_line (FunctionsLogs *logs, const char *function, const char *request_id,
                          const char *text, gsize len);
/* Puts what is pending, and frees. Accepts NULL. */
void functions_logs_free (FunctionsLogs *logs);

/* The JSON text of @payload if it is a JSON document, else @payload as a
 * JSON string, appended to @out. */
void functions_append_json_or_string (GString *out, GBytes *payload);
