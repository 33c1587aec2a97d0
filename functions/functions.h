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

G_BEGIN_DECLS

/* Largest invocation payload and response (synchronous), as in Lambda. */
#define FUNCTIONS_MAX_PAYLOAD_BYTES (6 * 1024 * 1024)
/* Invocations waiting for an environment, per function, before more are
 * refused with TooManyRequestsException. */
#define FUNCTIONS_MAX_QUEUED 1000

typedef struct _FunctionsService FunctionsService;

/* Registers the Lambda API routes, and the functions' metrics in
 * @metrics (nullable; borrowed, must outlive the service). Environments'
 * private /tmp directories go under @work_dir (created). (transfer full) */
FunctionsService *functions_service_new (EdgeGateway *gateway, EdgeMetrics *metrics,
                                         const char *work_dir, GError **error);

/* Adds a function from the configuration. Fails for a bad name, a
 * duplicate, or a bootstrap that is not an executable file. */
gboolean functions_service_add (FunctionsService *service, const EdgeConfigFunction *config,
                                GError **error);

/* Execution environments running now, over all functions. */
guint functions_service_environments (FunctionsService *service);

/* Fails invocations under way (ServiceException), stops every environment
 * and frees. Accepts NULL. */
void functions_service_free (FunctionsService *service);

G_END_DECLS
