/* service.c: brokers, subscriptions, rules and their actions.
 *
 * One MqttClient per broker. Each message is matched against the broker's
 * subscriptions and rules here (the broker delivers a message once however
 * many of our filters match it). A subscription puts the payload into its
 * stream; for QoS 1 the client holds the acknowledgement until the stream
 * has called back durable. Rules select from the message and act: put to a
 * stream (durable before the acknowledgement too), invoke a function
 * asynchronously (committed to the state database before the call
 * returns), republish.
 */
#define G_LOG_DOMAIN "mqtt"

#include "mqtt-private.h"

#include <math.h>
#include <mosquitto.h>

G_DEFINE_QUARK (edged-mqtt-error-quark, mqtt_error)

typedef struct _Broker Broker;

typedef struct {
  const EdgeConfigMqttSubscription *config;
  MqttTemplate *key;
  guint64 stored;
} Subscription;

typedef struct {
  const EdgeConfigMqttRule *config;
  MqttRule *rule;
  MqttTemplate *key;       /* stream action */
  MqttTemplate *republish; /* republish action */
  guint64 matches;
  guint64 errors;
  guint64 reported_matches, reported_errors; /* what the metrics have */
} Rule;

typedef struct {
  const EdgeConfigMqttPublish *config;
  MqttService *service;
  Broker *broker;
  MqttTemplate *topic;
  StreamConsumer *consumer;
  guint64 published;
} Publication;

struct _Broker {
  MqttService *service;
  const EdgeConfigMqttBroker *config;
  MqttClient *client;
  GPtrArray *subscriptions; /* Subscription *, borrowed from the service */
  GPtrArray *rules;         /* Rule *, borrowed */
  char *label;              /* broker="NAME" */
  guint64 pending;          /* messages being made durable */
  guint64 dropped;
  GHashTable *batches;      /* stream -> Batch *: records of the current read */
  MqttClientCounters reported; /* what the metrics have */
  guint64 reported_dropped;
};

struct _MqttService {
  EdgeGateway *gateway;
  EdgeMetrics *metrics;
  StreamStore *streams;
  FunctionsService *functions;
  char *instance; /* for default client ids */
  GPtrArray *brokers;       /* Broker * */
  GPtrArray *subscriptions; /* Subscription * */
  GPtrArray *rules;         /* Rule * */
  GPtrArray *publications;  /* Publication * */
  /* The demo sensors. */
  Broker *demo;
  guint demo_id;
  guint64 demo_tick;
  /* Home Assistant discovery: the (topic, field) pairs announced. */
  gboolean home_assistant;
  const char *home_assistant_prefix;
  GHashTable *announced;
  /* Outstanding puts hold a reference, so that a late callback finds the
   * service gone rather than freed. */
  gatomicrefcount refs;
  gboolean stopped;
};

static Broker *
find_broker (MqttService *service, const char *name)
{
  for (guint i = 0; i < service->brokers->len; i++) {
    Broker *b = service->brokers->pdata[i];
    if (g_str_equal (b->config->name, name))
      return b;
  }
  return NULL;
}

/* ---- puts: the messages of one read, one put per stream ---- */

/* One message's record, and whose hold it releases. */
typedef struct {
  Subscription *subscription; /* or */
  Rule *rule;
  guint token;    /* the client's hold, if one was taken */
  gboolean held;
  char *topic;
} Entry;

/* The records for one stream gathered from one read of the socket. */
typedef struct {
  MqttService *service;
  Broker *broker;
  char *stream;
  GArray *records; /* StreamPutRecord: partition key and data owned */
  GArray *entries; /* Entry, parallel */
} Batch;

#define BATCH_MAX_RECORDS 500

static void
service_unref (MqttService *service)
{
  if (g_atomic_ref_count_dec (&service->refs))
    g_free (service);
}

static void
batch_free (Batch *batch)
{
  for (guint i = 0; i < batch->records->len; i++) {
    StreamPutRecord *r = &g_array_index (batch->records, StreamPutRecord, i);
    g_free ((char *) r->partition_key);
    g_bytes_unref (r->data);
    if (r->attributes)
      g_bytes_unref (r->attributes);
    g_free (g_array_index (batch->entries, Entry, i).topic);
  }
  g_array_unref (batch->records);
  g_array_unref (batch->entries);
  g_free (batch->stream);
  g_free (batch);
}

/* Errors that say "not now", after which the broker must send the message
 * again; any other is the message's own fault, and retrying cannot help. */
static gboolean
is_transient (const GError *error)
{
  return error->domain != STREAM_ERROR || error->code == STREAM_ERROR_IO ||
         error->code == STREAM_ERROR_NO_SPACE || error->code == STREAM_ERROR_THROTTLED;
}

/* One record's outcome: the hold released, a permanent failure counted. */
static void
settle (Batch *batch, Entry *entry, const GError *error)
{
  Broker *broker = batch->broker;
  gboolean ok = TRUE;
  broker->pending--;
  if (error) {
    if (is_transient (error)) {
      g_warning ("broker %s: message on %s not stored in %s (%s): the broker will send it "
                 "again", broker->config->name, entry->topic, batch->stream, error->message);
      ok = FALSE;
    } else {
      g_warning ("broker %s: message on %s dropped: %s", broker->config->name, entry->topic,
                 error->message);
      broker->dropped++;
    }
    if (entry->rule)
      entry->rule->errors++;
  } else if (entry->subscription) {
    entry->subscription->stored++;
  }
  if (entry->held)
    mqtt_client_release (broker->client, entry->token, ok);
}

static void
on_put (StreamPutResult *results, guint n, gpointer user_data)
{
  Batch *batch = user_data;
  MqttService *service = batch->service;
  if (!service->stopped)
    for (guint i = 0; i < n && i < batch->entries->len; i++)
      settle (batch, &g_array_index (batch->entries, Entry, i), results[i].error);
  batch_free (batch);
  service_unref (service);
}

/* Puts @batch, which is then the store's (or freed). A batch refused as a
 * whole (a record over the limit, the stream gone) is put again record by
 * record, so that only the records at fault are dropped. */
static void
submit (Batch *batch)
{
  MqttService *service = batch->service;
  g_autoptr (GError) error = NULL;
  g_atomic_ref_count_inc (&service->refs);
  if (stream_store_put (service->streams, batch->stream,
                        (const StreamPutRecord *) (void *) batch->records->data,
                        batch->records->len, on_put, batch, &error))
    return;
  g_atomic_ref_count_dec (&service->refs);
  if (batch->records->len == 1) {
    settle (batch, &g_array_index (batch->entries, Entry, 0), error);
    batch_free (batch);
    return;
  }
  for (guint i = 0; i < batch->records->len; i++) {
    Batch *one = g_new0 (Batch, 1);
    one->service = service;
    one->broker = batch->broker;
    one->stream = g_strdup (batch->stream);
    one->records = g_array_new (FALSE, FALSE, sizeof (StreamPutRecord));
    one->entries = g_array_new (FALSE, FALSE, sizeof (Entry));
    g_array_append_val (one->records, g_array_index (batch->records, StreamPutRecord, i));
    g_array_append_val (one->entries, g_array_index (batch->entries, Entry, i));
    submit (one);
  }
  g_array_set_size (batch->records, 0); /* moved */
  g_array_set_size (batch->entries, 0);
  batch_free (batch);
}

/* Puts what the broker's last read gathered. */
static void
flush_batches (Broker *broker)
{
  GHashTableIter iter;
  gpointer value;
  g_hash_table_iter_init (&iter, broker->batches);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    g_hash_table_iter_steal (&iter);
    submit (value);
  }
}

static void
on_drained (MqttClient *client, gpointer user_data)
{
  flush_batches (user_data);
}

/* What is kept beside the payload: the topic and the message's flags (the
 * properties an MQTT 3.1.1 PUBLISH has), and the rule that made it. */
static GBytes *
attributes (MqttMessage *message, Rule *rule)
{
  GString *out = g_string_sized_new (64);
  g_string_append (out, "{\"topic\":");
  edge_json_append_string (out, message->topic, strlen (message->topic));
  g_string_append_printf (out, ",\"qos\":%d,\"retain\":%s", message->qos,
                          message->retain ? "true" : "false");
  if (rule) {
    g_string_append (out, ",\"rule\":");
    edge_json_append_string (out, rule->config->name, strlen (rule->config->name));
  }
  g_string_append_c (out, '}');
  if (out->len > STREAM_ATTRIBUTES_MAX_BYTES) { /* a topic of over 16 KiB: keep the flags */
    g_string_free (out, TRUE);
    return NULL;
  }
  gsize len = out->len;
  return g_bytes_new_take (g_string_free (out, FALSE), len);
}

/* A partition key Kinesis would take: 1 to 256 characters. */
static char *
fit_key (char *key, const char *topic)
{
  if (key[0] == '\0') {
    g_free (key);
    key = g_strdup (topic);
  }
  if (g_utf8_strlen (key, -1) > 256) {
    char *cut = g_utf8_substring (key, 0, 256);
    g_free (key);
    key = cut;
  }
  return key;
}

static void
put_record (Broker *broker, Subscription *subscription, Rule *rule, const char *stream,
            MqttTemplate *key_template, MqttMessage *message, GBytes *data, int qos)
{
  MqttService *service = broker->service;
  Batch *batch = g_hash_table_lookup (broker->batches, stream);
  if (batch == NULL) {
    batch = g_new0 (Batch, 1);
    batch->service = service;
    batch->broker = broker;
    batch->stream = g_strdup (stream);
    batch->records = g_array_new (FALSE, FALSE, sizeof (StreamPutRecord));
    batch->entries = g_array_new (FALSE, FALSE, sizeof (Entry));
    g_hash_table_insert (broker->batches, batch->stream, batch);
  }
  StreamPutRecord record = {
    .partition_key = fit_key (mqtt_template_expand (key_template, message), message->topic),
    .data = g_bytes_ref (data),
    .attributes = attributes (message, rule),
  };
  Entry entry = { .subscription = subscription, .rule = rule, .topic = g_strdup (message->topic) };
  if (qos > 0) {
    entry.token = mqtt_client_hold (broker->client);
    entry.held = TRUE;
  }
  g_array_append_val (batch->records, record);
  g_array_append_val (batch->entries, entry);
  broker->pending++;
  if (batch->records->len >= BATCH_MAX_RECORDS) {
    g_hash_table_steal (broker->batches, stream);
    submit (batch);
  }
}

static void
run_rule (Broker *broker, Rule *rule, MqttMessage *message, int qos)
{
  MqttService *service = broker->service;
  g_autoptr (GBytes) selected = mqtt_rule_apply (rule->rule, message);
  if (selected == NULL)
    return;
  rule->matches++;
  if (rule->config->stream[0])
    put_record (broker, NULL, rule, rule->config->stream, rule->key, message, selected, qos);
  if (rule->config->function[0]) {
    g_autoptr (GError) error = NULL;
    if (!functions_service_invoke_async (service->functions, rule->config->function, selected,
                                         &error)) {
      g_warning ("rule %s: cannot invoke %s: %s", rule->config->name, rule->config->function,
                 error->message);
      rule->errors++;
    }
  }
  if (rule->republish) {
    g_autofree char *topic = mqtt_template_expand (rule->republish, message);
    g_autoptr (GError) error = NULL;
    gsize len;
    const void *data = g_bytes_get_data (selected, &len);
    if (!mqtt_client_publish (broker->client, topic, data, len, (int) rule->config->republish_qos,
                              FALSE, NULL, NULL, &error)) {
      g_warning ("rule %s: cannot republish: %s", rule->config->name, error->message);
      rule->errors++;
    }
  }
}

/* ---- Home Assistant discovery ---- */

#define MAX_ANNOUNCED 1000

static const struct {
  const char *field, *device_class, *unit;
} known_fields[] = {
  { "temperature", "temperature", "°C" }, { "humidity", "humidity", "%" },
  { "pressure", "pressure", "hPa" },      { "battery", "battery", "%" },
  { "illuminance", "illuminance", "lx" }, { "co2", "carbon_dioxide", "ppm" },
  { "voltage", "voltage", "V" },          { "power", "power", "W" },
};

/* Announces each numeric field of a sensor's JSON messages, once, as a
 * Home Assistant sensor reading the sensor's own topic: Home Assistant then
 * shows it with no configuration of its own. */
static void
announce (Broker *broker, MqttMessage *message, JsonNode *root)
{
  MqttService *service = broker->service;
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return;
  JsonObjectIter iter;
  const char *field;
  JsonNode *node;
  json_object_iter_init (&iter, json_node_get_object (root));
  while (json_object_iter_next (&iter, &field, &node)) {
    if (!JSON_NODE_HOLDS_VALUE (node) || (json_node_get_value_type (node) != G_TYPE_INT64 &&
                                          json_node_get_value_type (node) != G_TYPE_DOUBLE))
      continue;
    g_autofree char *key = g_strdup_printf ("%s\n%s", message->topic, field);
    if (g_hash_table_contains (service->announced, key) ||
        g_hash_table_size (service->announced) >= MAX_ANNOUNCED)
      continue;
    g_autofree char *device = g_strdup (message->topic);
    g_strcanon (device, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", '_');
    g_autofree char *object = g_strdup (field);
    g_strcanon (object, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", '_');
    g_autofree char *unique = g_strdup_printf ("edged_%s_%s", device, object);
    g_autoptr (JsonBuilder) b = json_builder_new ();
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "name");
    json_builder_add_string_value (b, field);
    json_builder_set_member_name (b, "unique_id");
    json_builder_add_string_value (b, unique);
    json_builder_set_member_name (b, "state_topic");
    json_builder_add_string_value (b, message->topic);
    json_builder_set_member_name (b, "value_template");
    g_autoptr (JsonNode) quoted = json_node_new (JSON_NODE_VALUE);
    json_node_set_string (quoted, field);
    g_autofree char *field_json = json_to_string (quoted, FALSE);
    g_autofree char *value = g_strdup_printf ("{{ value_json[%s] }}", field_json);
    json_builder_add_string_value (b, value);
    json_builder_set_member_name (b, "state_class");
    json_builder_add_string_value (b, "measurement");
    for (gsize i = 0; i < G_N_ELEMENTS (known_fields); i++)
      if (g_ascii_strcasecmp (field, known_fields[i].field) == 0) {
        json_builder_set_member_name (b, "device_class");
        json_builder_add_string_value (b, known_fields[i].device_class);
        json_builder_set_member_name (b, "unit_of_measurement");
        json_builder_add_string_value (b, known_fields[i].unit);
      }
    json_builder_set_member_name (b, "device");
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "identifiers");
    json_builder_begin_array (b);
    g_autofree char *device_id = g_strdup_printf ("edged_%s", device);
    json_builder_add_string_value (b, device_id);
    json_builder_end_array (b);
    json_builder_set_member_name (b, "name");
    json_builder_add_string_value (b, message->topic);
    json_builder_set_member_name (b, "manufacturer");
    json_builder_add_string_value (b, "edged");
    json_builder_end_object (b);
    json_builder_end_object (b);
    g_autoptr (JsonNode) config = json_builder_get_root (b);
    g_autofree char *text = json_to_string (config, FALSE);
    g_autofree char *topic = g_strdup_printf ("%s/sensor/%s/config",
                                              service->home_assistant_prefix, unique);
    g_autoptr (GError) error = NULL;
    if (mqtt_client_publish (broker->client, topic, text, strlen (text), 1, TRUE, NULL, NULL,
                             &error))
      g_hash_table_add (service->announced, g_steal_pointer (&key));
    else
      g_debug ("home assistant discovery: %s", error->message);
  }
}

static void
on_message (MqttClient *client, const char *topic, const guint8 *payload, gsize len, int qos,
            gboolean retain, gpointer user_data)
{
  Broker *broker = user_data;
  MqttMessage message = {
    .topic = topic,
    .payload = payload,
    .len = len,
    .client_id = "",
    .timestamp_ms = g_get_real_time () / 1000,
    .qos = qos,
    .retain = retain,
  };
  g_autoptr (GBytes) data = NULL;
  for (guint i = 0; i < broker->subscriptions->len; i++) {
    Subscription *s = broker->subscriptions->pdata[i];
    bool matches = false;
    if (mosquitto_topic_matches_sub (s->config->topic, topic, &matches) != MOSQ_ERR_SUCCESS ||
        !matches)
      continue;
    if (data == NULL)
      data = g_bytes_new (payload, len);
    put_record (broker, s, NULL, s->config->stream, s->key, &message, data, qos);
  }
  for (guint i = 0; i < broker->rules->len; i++)
    run_rule (broker, broker->rules->pdata[i], &message, qos);
  if (data && broker->service->home_assistant && len <= 64 * 1024 &&
      g_utf8_validate ((const char *) payload, (gssize) len, NULL)) {
    g_autoptr (JsonParser) parser = json_parser_new_immutable ();
    if (json_parser_load_from_data (parser, (const char *) payload, (gssize) len, NULL))
      announce (broker, &message, json_parser_get_root (parser));
  }
  mqtt_message_clear (&message);
}

/* ---- publications: stream records out to MQTT ---- */

typedef struct {
  Publication *publication;
  StreamBatch *batch;
  guint outstanding;
  gboolean failed;
} PublishBatch;

static void
publish_batch_step (PublishBatch *pb)
{
  if (pb->outstanding > 0)
    return;
  if (!pb->failed)
    pb->publication->published += pb->batch->records->len;
  stream_consumer_done (pb->publication->consumer, pb->batch, !pb->failed);
  g_free (pb);
}

static void
on_published (gboolean ok, gpointer user_data)
{
  PublishBatch *pb = user_data;
  if (!ok)
    pb->failed = TRUE;
  pb->outstanding--;
  publish_batch_step (pb);
}

static void
on_publication_batch (StreamConsumer *consumer, StreamBatch *batch, gpointer user_data)
{
  Publication *p = user_data;
  PublishBatch *pb = g_new0 (PublishBatch, 1);
  pb->publication = p;
  pb->batch = batch;
  pb->outstanding = 1; /* this function's own, dropped at the end */
  if (!mqtt_client_connected (p->broker->client)) {
    pb->failed = TRUE; /* delivered again after the consumer's retry wait */
  } else {
    for (guint i = 0; i < batch->records->len && !pb->failed; i++) {
      StreamRecord *r = batch->records->pdata[i];
      gsize len;
      const guint8 *data = g_bytes_get_data (r->data, &len);
      MqttMessage message = {
        .topic = p->config->stream,
        .payload = data,
        .len = len,
        .client_id = "",
        .timestamp_ms = r->arrival_ms,
      };
      g_autofree char *topic = mqtt_template_expand (p->topic, &message);
      mqtt_message_clear (&message);
      g_autoptr (GError) error = NULL;
      pb->outstanding++;
      if (!mqtt_client_publish (p->broker->client, topic, data, len, (int) p->config->qos,
                                p->config->retain, on_published, pb, &error)) {
        g_warning ("publish %s -> %s: %s (record skipped)", p->config->stream, topic,
                   error->message);
        pb->outstanding--; /* a bad topic from this record: retrying cannot help */
      }
    }
  }
  pb->outstanding--;
  publish_batch_step (pb);
}

/* ---- the demo sensors ---- */

static gboolean
on_demo (gpointer user_data)
{
  MqttService *service = user_data;
  if (!mqtt_client_connected (service->demo->client))
    return G_SOURCE_CONTINUE;
  service->demo_tick++;
  static const char *const rooms[] = { "kitchen", "garage", "greenhouse" };
  for (guint i = 0; i < G_N_ELEMENTS (rooms); i++) {
    double t = (double) service->demo_tick / 30.0 + i;
    double temperature = 21.0 + i * 3.0 + 4.0 * sin (t) + g_random_double_range (-0.3, 0.3);
    double humidity = 45.0 + 10.0 * cos (t * 0.7) + g_random_double_range (-1.0, 1.0);
    char temp_text[G_ASCII_DTOSTR_BUF_SIZE], hum_text[G_ASCII_DTOSTR_BUF_SIZE];
    g_ascii_formatd (temp_text, sizeof temp_text, "%.2f", temperature);
    g_ascii_formatd (hum_text, sizeof hum_text, "%.1f", humidity);
    g_autofree char *topic = g_strdup_printf ("sensors/demo-%u/telemetry", i + 1);
    g_autofree char *payload = g_strdup_printf (
        "{\"sensor\":\"demo-%u\",\"room\":\"%s\",\"temperature\":%s,\"humidity\":%s}", i + 1,
        rooms[i], temp_text, hum_text);
    g_autoptr (GError) error = NULL;
    if (!mqtt_client_publish (service->demo->client, topic, payload, strlen (payload), 1, FALSE,
                              NULL, NULL, &error))
      g_debug ("demo sensor: %s", error->message);
  }
  return G_SOURCE_CONTINUE;
}

/* ---- status and metrics ---- */

static void
handle_status (EdgeRequest *request, gpointer user_data)
{
  MqttService *service = user_data;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "brokers");
  json_builder_begin_array (b);
  for (guint i = 0; i < service->brokers->len; i++) {
    Broker *broker = service->brokers->pdata[i];
    JsonNode *status = mqtt_client_status (broker->client);
    JsonObject *o = json_node_get_object (status);
    json_object_set_int_member (o, "pending", (gint64) broker->pending);
    json_object_set_int_member (o, "dropped", (gint64) broker->dropped);
    json_builder_add_value (b, status);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "subscriptions");
  json_builder_begin_array (b);
  for (guint i = 0; i < service->subscriptions->len; i++) {
    Subscription *s = service->subscriptions->pdata[i];
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "broker");
    json_builder_add_string_value (b, s->config->broker);
    json_builder_set_member_name (b, "topic");
    json_builder_add_string_value (b, s->config->topic);
    json_builder_set_member_name (b, "stream");
    json_builder_add_string_value (b, s->config->stream);
    json_builder_set_member_name (b, "qos");
    json_builder_add_int_value (b, MIN (s->config->qos, 1));
    json_builder_set_member_name (b, "stored");
    json_builder_add_int_value (b, (gint64) s->stored);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "rules");
  json_builder_begin_array (b);
  for (guint i = 0; i < service->rules->len; i++) {
    Rule *r = service->rules->pdata[i];
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "name");
    json_builder_add_string_value (b, r->config->name);
    json_builder_set_member_name (b, "broker");
    json_builder_add_string_value (b, r->config->broker);
    json_builder_set_member_name (b, "sql");
    json_builder_add_string_value (b, r->config->sql);
    json_builder_set_member_name (b, "matches");
    json_builder_add_int_value (b, (gint64) r->matches);
    json_builder_set_member_name (b, "errors");
    json_builder_add_int_value (b, (gint64) r->errors);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "publish");
  json_builder_begin_array (b);
  for (guint i = 0; i < service->publications->len; i++) {
    Publication *p = service->publications->pdata[i];
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "stream");
    json_builder_add_string_value (b, p->config->stream);
    json_builder_set_member_name (b, "broker");
    json_builder_add_string_value (b, p->config->broker);
    json_builder_set_member_name (b, "topic");
    json_builder_add_string_value (b, p->config->topic);
    json_builder_set_member_name (b, "published");
    json_builder_add_int_value (b, (gint64) p->published);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

/* Counters are kept as running totals; the metrics get what was added
 * since the last render. */
static void
report (EdgeMetrics *metrics, const char *name, const char *labels, guint64 total,
        guint64 *reported)
{
  if (total > *reported)
    edge_metrics_add (metrics, name, labels, (double) (total - *reported));
  *reported = total;
}

/* POST /v1/mqtt/publish {"broker", "topic", "payload", "qos", "retain"}:
 * answered once the broker has the message (QoS 1 and 2) or it is written
 * (QoS 0). */
typedef struct {
  EdgeRequest *request; /* NULL once answered */
  guint timeout_id;
  int refs;
} PublishRequest;

static void
publish_request_unref (PublishRequest *pr)
{
  if (--pr->refs == 0)
    g_free (pr);
}

static void
on_publish_request_done (gboolean ok, gpointer user_data)
{
  PublishRequest *pr = user_data;
  if (pr->request) {
    if (ok)
      edge_request_respond (pr->request, 204, NULL, NULL);
    else
      edge_request_respond_error (pr->request, 503, "BrokerUnavailable",
                                  "the connection to the broker was lost before it took the "
                                  "message");
    pr->request = NULL;
    if (pr->timeout_id) {
      g_source_remove (pr->timeout_id);
      pr->timeout_id = 0;
      publish_request_unref (pr);
    }
  }
  publish_request_unref (pr);
}

static gboolean
on_publish_request_timeout (gpointer user_data)
{
  PublishRequest *pr = user_data;
  edge_request_respond_error (pr->request, 504, "BrokerTimeout",
                              "the broker did not acknowledge the message within 10 s (it may "
                              "still take it)");
  pr->request = NULL;
  pr->timeout_id = 0;
  publish_request_unref (pr);
  return G_SOURCE_REMOVE;
}

static void
handle_publish (EdgeRequest *request, gpointer user_data)
{
  MqttService *service = user_data;
  g_autoptr (JsonNode) root = edge_request_json (request);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  const char *name = o ? json_object_get_string_member_with_default (o, "broker", NULL) : NULL;
  const char *topic = o ? json_object_get_string_member_with_default (o, "topic", NULL) : NULL;
  const char *payload = o ? json_object_get_string_member_with_default (o, "payload", "") : NULL;
  gint64 qos = o ? json_object_get_int_member_with_default (o, "qos", 1) : 1;
  gboolean retain = o ? json_object_get_boolean_member_with_default (o, "retain", FALSE) : FALSE;
  if (o == NULL || topic == NULL || payload == NULL || qos < 0 || qos > 2) {
    edge_request_respond_error (request, 400, "InvalidArgument",
                                "expected {\"broker\": NAME, \"topic\": TOPIC, \"payload\": "
                                "TEXT, \"qos\": 0-2, \"retain\": BOOL}");
    return;
  }
  Broker *broker = name ? find_broker (service, name)
                        : service->brokers->len ? service->brokers->pdata[0] : NULL;
  if (broker == NULL) {
    edge_request_respond_error (request, 404, "NotFound", "no broker %s", name ? name : "at all");
    return;
  }
  if (!mqtt_client_connected (broker->client)) {
    edge_request_respond_error (request, 503, "BrokerUnavailable", "broker %s is not connected",
                                broker->config->name);
    return;
  }
  PublishRequest *pr = g_new0 (PublishRequest, 1);
  pr->request = request;
  pr->refs = 2; /* the publish callback's and the timeout's */
  g_autoptr (GError) error = NULL;
  if (mosquitto_pub_topic_check (topic) != MOSQ_ERR_SUCCESS || topic[0] == '\0' ||
      !mqtt_client_publish (broker->client, topic, payload, strlen (payload), (int) qos, retain,
                            on_publish_request_done, pr, &error)) {
    edge_request_respond_error (request, 400, "InvalidArgument", "%s",
                                error ? error->message : "not a topic to publish to");
    g_free (pr);
    return;
  }
  if (pr->request == NULL) { /* answered already: written at once */
    publish_request_unref (pr);
    return;
  }
  edge_request_pause (request);
  pr->timeout_id = g_timeout_add_seconds (10, on_publish_request_timeout, pr);
}

static void
collect_metrics (EdgeMetrics *metrics, gpointer user_data)
{
  MqttService *service = user_data;
  for (guint i = 0; i < service->brokers->len; i++) {
    Broker *broker = service->brokers->pdata[i];
    MqttClientCounters c;
    mqtt_client_counters (broker->client, &c);
    const char *l = broker->label;
    report (metrics, "edged_mqtt_messages_received_total", l, c.messages_in,
            &broker->reported.messages_in);
    report (metrics, "edged_mqtt_received_bytes_total", l, c.bytes_in, &broker->reported.bytes_in);
    report (metrics, "edged_mqtt_messages_sent_total", l, c.messages_out,
            &broker->reported.messages_out);
    report (metrics, "edged_mqtt_sent_bytes_total", l, c.bytes_out, &broker->reported.bytes_out);
    report (metrics, "edged_mqtt_reconnects_total", l, c.reconnects, &broker->reported.reconnects);
    report (metrics, "edged_mqtt_dropped_messages_total", l, broker->dropped,
            &broker->reported_dropped);
    edge_metrics_set (metrics, "edged_mqtt_connected", l,
                      mqtt_client_connected (broker->client) ? 1 : 0);
    edge_metrics_set (metrics, "edged_mqtt_pending_messages", l, (double) broker->pending);
  }
  for (guint i = 0; i < service->rules->len; i++) {
    Rule *r = service->rules->pdata[i];
    g_autofree char *name = edge_metrics_escape_label (r->config->name);
    g_autofree char *label = g_strdup_printf ("rule=\"%s\"", name);
    report (metrics, "edged_mqtt_rule_matches_total", label, r->matches, &r->reported_matches);
    report (metrics, "edged_mqtt_rule_errors_total", label, r->errors, &r->reported_errors);
  }
}

static void
declare_metrics (EdgeMetrics *metrics)
{
  static const struct {
    const char *name;
    EdgeMetricType type;
    const char *help;
  } families[] = {
    { "edged_mqtt_messages_received_total", EDGE_METRIC_COUNTER, "MQTT messages received" },
    { "edged_mqtt_received_bytes_total", EDGE_METRIC_COUNTER, "MQTT payload bytes received" },
    { "edged_mqtt_messages_sent_total", EDGE_METRIC_COUNTER, "MQTT messages published" },
    { "edged_mqtt_sent_bytes_total", EDGE_METRIC_COUNTER, "MQTT payload bytes published" },
    { "edged_mqtt_reconnects_total", EDGE_METRIC_COUNTER, "Connections to the broker after the first" },
    { "edged_mqtt_connected", EDGE_METRIC_GAUGE, "1 while connected to the broker" },
    { "edged_mqtt_pending_messages", EDGE_METRIC_GAUGE,
      "Messages received and not yet durable (their acknowledgements held)" },
    { "edged_mqtt_dropped_messages_total", EDGE_METRIC_COUNTER,
      "Messages a stream refused for good (too large, stream gone)" },
    { "edged_mqtt_rule_matches_total", EDGE_METRIC_COUNTER, "Messages a topic rule selected" },
    { "edged_mqtt_rule_errors_total", EDGE_METRIC_COUNTER, "Topic rule actions that failed" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (families); i++)
    edge_metrics_declare (metrics, families[i].name, families[i].type, families[i].help, NULL, 0);
}

/* ---- set-up ---- */

static gboolean
check_stream (MqttService *service, const char *stream, const char *what, GError **error)
{
  if (stream_store_lookup (service->streams, stream, NULL) != NULL)
    return TRUE;
  g_set_error (error, MQTT_ERROR, MQTT_ERROR_NOT_FOUND,
               "%s: no data stream \"%s\" (declare it under streams:)", what, stream);
  return FALSE;
}

static void
subscription_free (gpointer data)
{
  Subscription *s = data;
  mqtt_template_free (s->key);
  g_free (s);
}

static void
rule_free (gpointer data)
{
  Rule *r = data;
  mqtt_rule_free (r->rule);
  mqtt_template_free (r->key);
  mqtt_template_free (r->republish);
  g_free (r);
}

static void
publication_free (gpointer data)
{
  Publication *p = data;
  if (p->consumer)
    stream_consumer_stop (p->consumer);
  mqtt_template_free (p->topic);
  g_free (p);
}

static void
broker_free (gpointer data)
{
  Broker *b = data;
  mqtt_client_free (b->client);
  /* Not put: never acknowledged either, so the broker keeps them. */
  GHashTableIter iter;
  gpointer value;
  g_hash_table_iter_init (&iter, b->batches);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    batch_free (value);
  g_hash_table_unref (b->batches);
  g_ptr_array_unref (b->subscriptions);
  g_ptr_array_unref (b->rules);
  g_free (b->label);
  g_free (b);
}

static gboolean
add_filter (GPtrArray *filters, GArray *qos, const char *filter, int q)
{
  for (guint i = 0; i < filters->len; i++)
    if (g_str_equal (filters->pdata[i], filter)) {
      g_array_index (qos, int, i) = MAX (g_array_index (qos, int, i), q);
      return TRUE;
    }
  g_ptr_array_add (filters, (gpointer) filter);
  g_array_append_val (qos, q);
  return TRUE;
}

static gboolean
setup (MqttService *service, const EdgeConfig *config, GError **error)
{
  for (guint i = 0; i < config->mqtt_brokers->len; i++) {
    Broker *b = g_new0 (Broker, 1);
    b->service = service;
    b->config = config->mqtt_brokers->pdata[i];
    b->subscriptions = g_ptr_array_new ();
    b->rules = g_ptr_array_new ();
    b->batches = g_hash_table_new (g_str_hash, g_str_equal);
    g_autofree char *name = edge_metrics_escape_label (b->config->name);
    b->label = g_strdup_printf ("broker=\"%s\"", name);
    g_ptr_array_add (service->brokers, b);
  }
  for (guint i = 0; i < config->mqtt_subscriptions->len; i++) {
    const EdgeConfigMqttSubscription *c = config->mqtt_subscriptions->pdata[i];
    g_autofree char *what = g_strdup_printf ("mqtt.subscriptions[%u] (%s)", i, c->topic);
    Broker *b = find_broker (service, c->broker);
    if (b == NULL) {
      g_set_error (error, MQTT_ERROR, MQTT_ERROR_NOT_FOUND, "%s: no broker %s", what, c->broker);
      return FALSE;
    }
    if (mosquitto_sub_topic_check (c->topic) != MOSQ_ERR_SUCCESS || c->topic[0] == '\0') {
      g_set_error (error, MQTT_ERROR, MQTT_ERROR_INVALID,
                   "%s: not a topic filter (+ and # stand for whole levels, # only last)", what);
      return FALSE;
    }
    if (!check_stream (service, c->stream, what, error))
      return FALSE;
    Subscription *s = g_new0 (Subscription, 1);
    s->config = c;
    g_ptr_array_add (service->subscriptions, s);
    s->key = mqtt_template_parse (c->partition_key, error);
    if (s->key == NULL) {
      g_prefix_error (error, "%s: partition_key: ", what);
      return FALSE;
    }
    g_ptr_array_add (b->subscriptions, s);
  }
  for (guint i = 0; i < config->mqtt_rules->len; i++) {
    const EdgeConfigMqttRule *c = config->mqtt_rules->pdata[i];
    g_autofree char *what = g_strdup_printf ("mqtt.rules[%u] (%s)", i, c->name);
    Broker *b = find_broker (service, c->broker);
    if (b == NULL) {
      g_set_error (error, MQTT_ERROR, MQTT_ERROR_NOT_FOUND, "%s: no broker %s", what, c->broker);
      return FALSE;
    }
    Rule *r = g_new0 (Rule, 1);
    r->config = c;
    g_ptr_array_add (service->rules, r);
    r->rule = mqtt_rule_parse (c->sql, error);
    if (r->rule == NULL) {
      g_prefix_error (error, "%s: sql: ", what);
      return FALSE;
    }
    if (c->stream[0]) {
      if (!check_stream (service, c->stream, what, error))
        return FALSE;
      r->key = mqtt_template_parse (c->partition_key, error);
      if (r->key == NULL) {
        g_prefix_error (error, "%s: partition_key: ", what);
        return FALSE;
      }
    }
    if (c->function[0] && service->functions == NULL) {
      g_set_error (error, MQTT_ERROR, MQTT_ERROR_NOT_FOUND, "%s: no function %s", what,
                   c->function);
      return FALSE;
    }
    if (c->republish[0]) {
      r->republish = mqtt_template_parse (c->republish, error);
      if (r->republish == NULL) {
        g_prefix_error (error, "%s: republish: ", what);
        return FALSE;
      }
    }
    g_ptr_array_add (b->rules, r);
  }
  /* One client per broker, subscribed to the filters of both. QoS 2 is
   * taken as 1 (see client.c). */
  for (guint i = 0; i < service->brokers->len; i++) {
    Broker *b = service->brokers->pdata[i];
    g_autoptr (GPtrArray) filters = g_ptr_array_new ();
    g_autoptr (GArray) qos = g_array_new (FALSE, FALSE, sizeof (int));
    for (guint j = 0; j < b->subscriptions->len; j++) {
      Subscription *s = b->subscriptions->pdata[j];
      add_filter (filters, qos, s->config->topic, (int) MIN (s->config->qos, 1));
    }
    for (guint j = 0; j < b->rules->len; j++) {
      Rule *r = b->rules->pdata[j];
      add_filter (filters, qos, mqtt_rule_topic_filter (r->rule), 1);
    }
    b->client = mqtt_client_new (b->config, (const char *const *) filters->pdata,
                                 (const int *) (void *) qos->data, filters->len, service->instance,
                                 on_message, on_drained, b, error);
    if (b->client == NULL)
      return FALSE;
  }
  for (guint i = 0; i < config->mqtt_publish->len; i++) {
    const EdgeConfigMqttPublish *c = config->mqtt_publish->pdata[i];
    g_autofree char *what = g_strdup_printf ("mqtt.publish[%u] (%s)", i, c->stream);
    if (!check_stream (service, c->stream, what, error))
      return FALSE;
    Publication *p = g_new0 (Publication, 1);
    p->config = c;
    p->service = service;
    p->broker = find_broker (service, c->broker);
    g_ptr_array_add (service->publications, p);
    p->topic = mqtt_template_parse (c->topic, error);
    if (p->topic == NULL) {
      g_prefix_error (error, "%s: topic: ", what);
      return FALSE;
    }
    g_autofree char *consumer = g_strdup_printf ("mqtt-%s-%u", c->broker, i);
    p->consumer = stream_consumer_start (service->streams, c->stream, consumer,
                                         STREAM_START_LATEST, 100, on_publication_batch, p,
                                         error);
    if (p->consumer == NULL) {
      g_prefix_error (error, "%s: ", what);
      return FALSE;
    }
  }
  service->home_assistant = config->mqtt_home_assistant;
  service->home_assistant_prefix = config->mqtt_home_assistant_prefix;
  if (config->mqtt_demo_broker[0]) {
    service->demo = find_broker (service, config->mqtt_demo_broker);
    service->demo_id = g_timeout_add ((guint) config->mqtt_demo_interval_ms, on_demo, service);
  }
  return TRUE;
}

static gboolean
check_template (const char *text, const char *name, const char *what, const char *key,
                GError **error)
{
  g_autoptr (MqttTemplate) t = mqtt_template_parse (text, error);
  if (t == NULL)
    g_prefix_error (error, "%s: %s: %s: ", name, what, key);
  return t != NULL;
}

gboolean
mqtt_check_config (const EdgeConfig *config, const char *name, GError **error)
{
  for (guint i = 0; i < config->mqtt_subscriptions->len; i++) {
    const EdgeConfigMqttSubscription *c = config->mqtt_subscriptions->pdata[i];
    g_autofree char *what = g_strdup_printf ("mqtt.subscriptions[%u] (%s)", i, c->topic);
    if (mosquitto_sub_topic_check (c->topic) != MOSQ_ERR_SUCCESS || c->topic[0] == '\0') {
      g_set_error (error, MQTT_ERROR, MQTT_ERROR_INVALID,
                   "%s: %s: topic: not a topic filter (+ and # stand for whole levels, # only "
                   "last)", name, what);
      return FALSE;
    }
    if (!check_template (c->partition_key, name, what, "partition_key", error))
      return FALSE;
  }
  for (guint i = 0; i < config->mqtt_rules->len; i++) {
    const EdgeConfigMqttRule *c = config->mqtt_rules->pdata[i];
    g_autofree char *what = g_strdup_printf ("mqtt.rules[%u] (%s)", i, c->name);
    g_autoptr (MqttRule) rule = mqtt_rule_parse (c->sql, error);
    if (rule == NULL) {
      g_prefix_error (error, "%s: %s: sql: ", name, what);
      return FALSE;
    }
    if (!check_template (c->partition_key, name, what, "partition_key", error) ||
        !check_template (c->republish, name, what, "republish", error))
      return FALSE;
  }
  for (guint i = 0; i < config->mqtt_publish->len; i++) {
    const EdgeConfigMqttPublish *c = config->mqtt_publish->pdata[i];
    g_autofree char *what = g_strdup_printf ("mqtt.publish[%u] (%s)", i, c->stream);
    if (!check_template (c->topic, name, what, "topic", error))
      return FALSE;
  }
  return TRUE;
}

MqttService *
mqtt_service_new (const EdgeConfig *config, const char *instance_id, EdgeGateway *gateway,
                  EdgeMetrics *metrics, StreamStore *streams, FunctionsService *functions,
                  GError **error)
{
  MqttService *service = g_new0 (MqttService, 1);
  g_atomic_ref_count_init (&service->refs);
  service->gateway = gateway;
  service->metrics = metrics;
  service->streams = streams;
  service->functions = functions;
  service->instance = g_strndup (instance_id, 8);
  service->brokers = g_ptr_array_new_with_free_func (broker_free);
  service->subscriptions = g_ptr_array_new_with_free_func (subscription_free);
  service->rules = g_ptr_array_new_with_free_func (rule_free);
  service->publications = g_ptr_array_new_with_free_func (publication_free);
  service->announced = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  static const EdgeRoute status_route = { "GET", "/v1/mqtt", handle_status,
                                          "MQTT brokers, subscriptions and rules", "mqtt", 0 };
  static const EdgeRoute publish_route = { "POST", "/v1/mqtt/publish", handle_publish,
                                           "Publish a message through a broker", "mqtt",
                                           1024 * 1024 };
  if (!setup (service, config, error) ||
      !edge_gateway_add_route (gateway, &status_route, service, error) ||
      !edge_gateway_add_route (gateway, &publish_route, service, error)) {
    mqtt_service_free (service);
    return NULL;
  }
  if (metrics) {
    declare_metrics (metrics);
    edge_metrics_add_collector (metrics, collect_metrics, service);
  }
  return service;
}

void
mqtt_service_free (MqttService *service)
{
  if (service == NULL)
    return;
  service->stopped = TRUE;
  if (service->demo_id)
    g_source_remove (service->demo_id);
  /* Brokers first: their clients fail the publishes still out, which
   * finishes the publications' batches. */
  g_ptr_array_unref (service->brokers);
  g_ptr_array_unref (service->publications);
  g_ptr_array_unref (service->rules);
  g_ptr_array_unref (service->subscriptions);
  g_hash_table_unref (service->announced);
  g_free (service->instance);
  service_unref (service);
}
