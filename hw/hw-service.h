/* hw-service.h: the hardware module in the daemon (service.c): /v1/hw,
 * and GPIO lines as records and REST routes. */
#pragma once

#include "edge-core.h"
#include "edge-gateway.h"
#include "stream.h"

G_BEGIN_DECLS

typedef struct _HwService HwService;

/* Checks the gpio section beyond what the tables check: names. */
gboolean hw_check_config (const EdgeConfig *config, const char *source, GError **error);

/* Registers the routes and requests the configured lines (one that cannot
 * be requested is retried, its error shown in /v1/gpio). @config must
 * outlive the service. Fails only when a route cannot be added. */
HwService *hw_service_new (EdgeGateway *gateway, StreamStore *streams, const EdgeConfig *config,
                           GError **error);
void hw_service_free (HwService *service);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HwService, hw_service_free)

G_END_DECLS
