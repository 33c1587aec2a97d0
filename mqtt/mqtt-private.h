/* mqtt-private.h: what the parts of the MQTT module share.
 *
 *   sql.c      topic rules (AWS IoT's SQL) and substitution templates
 *   client.c   one broker connection: libmosquitto on the main loop, with
 *              acknowledgements held until messages are durable
 *   service.c  brokers, subscriptions, rules and their actions, /v1/mqtt
 */
#pragma once

#include "mqtt.h"

#include <json-glib/json-glib.h>

/* ---- sql.c ---- */

/* Longest rule and template text, deepest expression nesting. */
#define MQTT_SQL_MAX_BYTES 8192
#define MQTT_SQL_MAX_DEPTH 64

/* One message as rules and templates see it. */
typedef struct {
  const char *topic;
  const guint8 *payload;
  gsize len;
  const char *client_id; /* "" when unknown */
  gint64 timestamp_ms;
  int qos;
  gboolean retain;
  /* The payload parsed as JSON, filled on first use; parsed marks the try. */
  JsonNode *json;
  gboolean parsed;
} MqttMessage;

/* Frees what evaluation filled in (the parsed payload). */
void mqtt_message_clear (MqttMessage *message);

typedef struct _MqttRule MqttRule;

/* Parses SELECT ... FROM 'filter' [WHERE ...]. Errors say where:
 * "1:27: expected a topic filter in quotes after FROM". (transfer full) */
MqttRule *mqtt_rule_parse (const char *sql, GError **error);
void mqtt_rule_free (MqttRule *rule);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MqttRule, mqtt_rule_free)

/* The FROM topic filter. (transfer none) */
const char *mqtt_rule_topic_filter (const MqttRule *rule);

/* NULL when the message's topic does not match FROM or WHERE is not true;
 * else what the rule selected: a JSON object, or the payload itself for a
 * lone SELECT * of a payload that is not a JSON object. (transfer full) */
GBytes *mqtt_rule_apply (const MqttRule *rule, MqttMessage *message);

typedef struct _MqttTemplate MqttTemplate;

/* Text with ${expression} substitutions: "${topic(2)}", "${device.id}",
 * "room-${clientid()}". (transfer full) */
MqttTemplate *mqtt_template_parse (const char *text, GError **error);
void mqtt_template_free (MqttTemplate *template);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MqttTemplate, mqtt_template_free)
/* Substitutes each expression's value (a string as it is, a number or
 * JSON as its JSON text, an undefined value as nothing). (transfer full) */
char *mqtt_template_expand (const MqttTemplate *template, MqttMessage *message);

/* ---- client.c ---- */

typedef struct _MqttClient MqttClient;

/* A message received (QoS as it arrived). The callee may hold the
 * broker's acknowledgements back with mqtt_client_hold(). */
typedef void (*MqttClientMessageFunc) (MqttClient *client, const char *topic,
                                       const guint8 *payload, gsize len, int qos,
                                       gboolean retain, gpointer user_data);
/* The socket has been read as far as it goes for now (or closed): the
 * messages of this read can be handled together. */
typedef void (*MqttClientDrainedFunc) (MqttClient *client, gpointer user_data);
/* A publish went out: for QoS 0 written, for QoS 1 and 2 acknowledged by
 * the broker; @ok FALSE when the connection was lost before that. */
typedef void (*MqttPublishedFunc) (gboolean ok, gpointer user_data);

/* Connects to @config's broker (borrowed; it must outlive the client), and
 * reconnects with back-off, subscribing to @filters (@qos each) on every
 * connect. The default client id is edged-HOST-@instance-NAME.
 * (transfer full) */
MqttClient *mqtt_client_new (const EdgeConfigMqttBroker *config, const char *const *filters,
                             const int *qos, guint n_filters, const char *instance,
                             MqttClientMessageFunc func, MqttClientDrainedFunc drained,
                             gpointer user_data, GError **error);
void mqtt_client_free (MqttClient *client);

/* Holds acknowledgements back: nothing more is written to the broker until
 * every hold of this connection is released. Returns the token for
 * mqtt_client_release(). */
guint mqtt_client_hold (MqttClient *client);
/* Releases a hold. @ok FALSE means the message could not be kept: the
 * connection is dropped without writing anything still queued (the
 * acknowledgements among it), so that the broker sends those messages
 * again after the reconnect. A token of an older connection is ignored. */
void mqtt_client_release (MqttClient *client, guint token, gboolean ok);

/* Queues a publish, written when nothing is held; @done (nullable) is
 * called once. Fails at once for a bad topic or payload. */
gboolean mqtt_client_publish (MqttClient *client, const char *topic, const void *payload,
                              gsize len, int qos, gboolean retain, MqttPublishedFunc done,
                              gpointer user_data, GError **error);

const char *mqtt_client_name (MqttClient *client);
const char *mqtt_client_id (MqttClient *client);
gboolean mqtt_client_connected (MqttClient *client);
/* name, host, port, client_id, connected, last_error, connected_since,
 * reconnects, messages and bytes in and out. (transfer full) */
JsonNode *mqtt_client_status (MqttClient *client);
/* Counters for metrics. */
typedef struct {
  guint64 messages_in, bytes_in, messages_out, bytes_out, reconnects;
} MqttClientCounters;
void mqtt_client_counters (MqttClient *client, MqttClientCounters *ret);
