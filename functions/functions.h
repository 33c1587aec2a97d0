/* functions.h: functions, run on demand in execution environments that
 * speak the Lambda Runtime API (docs/internals/functions.md).
 *
 * A function is a bootstrap executable (a custom runtime, or a script that
 * starts a runtime interface client) with a timeout, a memory size, a
 * concurrency and an idle timeout. An execution environment is one child
 * process of it with a Runtime API of its own, on a loopback port only that
 * environment is told. Invocations come through the Lambda Invoke API on the
 * gateway (POST /2015-03-31/functions/{name}/invocations), so that the AWS
 * CLI and SDKs work against edged with --endpoint-url.
 *
 * Threading: the main thread only.
 */
#pragma once

#include "edge-core.h"
#include "edge-gateway.h"
#include "stream.h"

G_BEGIN_DECLS

/* Largest invocation payload and response (synchronous), as in Lambda. */
#define FUNCTIONS_MAX_PAYLOAD_BYTES (6 * 1024 * 1024)
/* X-Amz-Client-Context, base64 (Lambda's limit). */
#define FUNCTIONS_MAX_CLIENT_CONTEXT 3583
/* Invocations waiting for an environment, per function, before more are
 * refused with TooManyRequestsException. */
#define FUNCTIONS_MAX_QUEUED 1000

/* Longest log line kept (CloudWatch's event limit); longer ones are cut. */
#define FUNCTIONS_LOG_LINE_MAX (256 * 1024)
/* What X-Amz-Log-Type: Tail returns of an invocation's log. */
#define FUNCTIONS_LOG_TAIL_BYTES 4096

/* Largest payload of an asynchronous (Event) invocation, as in Lambda. */
#define FUNCTIONS_MAX_EVENT_BYTES (256 * 1024)

#define FUNCTIONS_ERROR (functions_error_quark ())
GQuark functions_error_quark (void);
typedef enum {
  FUNCTIONS_ERROR_NOT_FOUND, /* no such function */
  FUNCTIONS_ERROR_THROTTLED, /* its queue is full */
  FUNCTIONS_ERROR_INVALID,   /* a bad definition */
} FunctionsError;

typedef struct _FunctionsService FunctionsService;

/* How an invocation ended. */
typedef struct {
  const char *request_id;
  GBytes *payload;            /* the handler's result, or its error object; NULL if stopping */
  const char *function_error; /* NULL when the handler succeeded, else "Unhandled" */
  const char *error_type;     /* a failure edged saw itself ("Sandbox.Timedout", ...), or NULL */
  gboolean stopping;          /* edged stopped first: it may or may not have run */
  const char *log;            /* its log lines (START ... REPORT), the last 4 KiB or so */
} FunctionsResult;

/* Called once per invocation, on the main thread, never from inside the
 * call that queued it. */
typedef void (*FunctionsDoneFunc) (const FunctionsResult *result, gpointer user_data);

/* Registers the Lambda API routes, and the functions' metrics in
 * @metrics (nullable). Asynchronous invocations are kept in @state,
 * sealed with @keyring; destinations are streams of @streams. Everything
 * is borrowed and must outlive the service. Environments' private /tmp
 * directories go under @work_dir (created). (transfer full) */
FunctionsService *functions_service_new (EdgeGateway *gateway, EdgeMetrics *metrics,
                                         EdgeState *state, EdgeKeyring *keyring,
                                         StreamStore *streams, const char *work_dir,
                                         GError **error);

/* Adds a function from the configuration. Fails for a bad name, a
 * duplicate, or a bootstrap that is not an executable file. */
gboolean functions_service_add (FunctionsService *service, const EdgeConfigFunction *config,
                                GError **error);

/* Serves an HTTP API route (routes.c) by its function, which must be
 * added. */
gboolean functions_service_add_route (FunctionsService *service, const EdgeConfigRoute *config,
                                      GError **error);

/* Invokes a function (which must be added) on a schedule (schedule.c). */
gboolean functions_service_add_schedule (FunctionsService *service,
                                         const EdgeConfigSchedule *config, GError **error);

/* Invokes a function (which must be added) with a data stream's records
 * (mappings.c). */
gboolean functions_service_add_mapping (FunctionsService *service, const EdgeConfigMapping *config,
                                        GError **error);

/* Serves a WebSocket API by functions (websocket.c), which must be added. */
gboolean functions_service_add_websocket (FunctionsService *service,
                                          const EdgeConfigWebSocket *config, GError **error);

/* A custom route of a WebSocket API added before. */
gboolean functions_service_add_websocket_route (FunctionsService *service,
                                                const EdgeConfigWebSocketRoute *config,
                                                GError **error);

/* Starts what needs every function added: the asynchronous invocations
 * kept from before a restart resume. */
gboolean functions_service_start (FunctionsService *service, GError **error);

/* Invokes @name with @payload (a JSON document) as request @request_id
 * (nullable: a new one). Fails, and @done is not called, for an unknown
 * function or a full queue. */
gboolean functions_service_invoke (FunctionsService *service, const char *name,
                                   const char *request_id, GBytes *payload,
                                   FunctionsDoneFunc done, gpointer user_data, GError **error);
/* The same, with the invoking client's context (nullable): a JSON object,
 * handed to the runtime as Lambda-Runtime-Client-Context. */
gboolean functions_service_invoke_with_context (FunctionsService *service, const char *name,
                                                const char *request_id, GBytes *payload,
                                                const char *client_context,
                                                FunctionsDoneFunc done, gpointer user_data,
                                                GError **error);

/* Invokes @name asynchronously (an Event invocation: kept durably before
 * this returns TRUE, retried, sent to its destinations) with @payload, a
 * JSON document of at most FUNCTIONS_MAX_EVENT_BYTES. Fails for an unknown
 * function, a payload too large, or a full queue (FUNCTIONS_ERROR_THROTTLED). */
gboolean functions_service_invoke_async (FunctionsService *service, const char *name,
                                         GBytes *payload, GError **error);
/* Execution environments running now, over all functions. */
guint functions_service_environments (FunctionsService *service);

/* Fails invocations under way (ServiceException), stops every environment
 * and frees. Accepts NULL. */
void functions_service_free (FunctionsService *service);

G_END_DECLS
