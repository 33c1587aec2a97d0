/* mqtt.h: sensors over MQTT (docs/internals/mqtt.md).
 *
 * edged is a client of the site's brokers (libmosquitto, its socket on the
 * main loop). Subscriptions put every message into a data stream, and a
 * QoS 1 message is acknowledged to the broker only once the stream has it
 * durably. Topic rules (AWS IoT's SQL) select from messages and put the
 * result to a stream, invoke a function or republish it. Data streams'
 * records can be published back out. GET /v1/mqtt tells each broker's
 * state.
 *
 * Threading: the main thread only.
 */
#pragma once

#include "edge-core.h"
#include "edge-gateway.h"
#include "functions.h"
#include "stream.h"

G_BEGIN_DECLS

#define MQTT_ERROR (mqtt_error_quark ())
GQuark mqtt_error_quark (void);

typedef enum {
  MQTT_ERROR_INVALID,   /* a bad rule, template, filter or setting */
  MQTT_ERROR_NOT_FOUND, /* a broker, stream or function named is not there */
  MQTT_ERROR_FAILED,    /* libmosquitto refused */
} MqttError;

typedef struct _MqttService MqttService;

/* Checks what the configuration's MQTT sections say without connecting:
 * topic filters, rules' SQL, templates. Messages are prefixed with @name
 * and the item: "edged.yaml: mqtt.rules[0] (hot): sql: 1:27: ...". */
gboolean mqtt_check_config (const EdgeConfig *config, const char *name, GError **error);

/* Sets up @config's brokers, subscriptions, rules and publications, checks
 * that the streams and functions they name exist, and starts connecting.
 * Registers GET /v1/mqtt and the MQTT metrics. Client ids default to
 * edged-HOST-INSTANCE-BROKER, INSTANCE the first 8 characters of
 * @instance_id: stable across restarts (the broker keeps the session), and
 * two edged on one host do not take each other's sessions. Everything is borrowed.
 * @functions may be NULL when no rule invokes one. (transfer full) */
MqttService *mqtt_service_new (const EdgeConfig *config, const char *instance_id,
                               EdgeGateway *gateway, EdgeMetrics *metrics, StreamStore *streams,
                               FunctionsService *functions, GError **error);

/* Disconnects; messages not yet durable are not acknowledged, so the
 * broker sends them again next time. Accepts NULL. */
void mqtt_service_free (MqttService *service);

G_END_DECLS
