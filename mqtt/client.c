/* client.c: one broker connection, libmosquitto on the GLib main loop.
 *
 * libmosquitto runs without a thread of its own: its socket is a GSource
 * on the main loop, read with mosquitto_loop_read() when readable, written
 * with mosquitto_loop_write() when it has something to send, and a one
 * second timer drives mosquitto_loop_misc() (keepalive pings).
 *
 * Acknowledgements. libmosquitto acknowledges a QoS 1 PUBLISH before it
 * tells the application: handle__publish() queues the PUBACK, then calls
 * on_message. Unthreaded, "queued" means written to the socket at once, so
 * a crash between the PUBACK and the stream's fsync would lose a message
 * the broker has already forgotten. The client is therefore marked
 * threaded (mosquitto_threaded_set): libmosquitto then only queues packets
 * and writes nothing until mosquitto_loop_write() is called, and that call
 * is ours. The message handler takes a hold for each message it is making
 * durable; while any hold is out nothing is written, so the PUBACKs (and
 * whatever was queued after them) go out only once every message read so
 * far is durable. A message that cannot be kept releases its hold with
 * ok = FALSE: the connection is then shut down with its queue unwritten and
 * the broker, which never saw those PUBACKs, sends them again after the
 * reconnect (the session is persistent). QoS 2 is not used for the
 * subscriptions: libmosquitto answers PUBREC before it hands the message
 * over, and only hands it over on PUBREL, after which the broker no longer
 * has it (docs/internals/mqtt.md).
 */
#define G_LOG_DOMAIN "mqtt"

#include "mqtt-private.h"

#include <errno.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define BACKOFF_FIRST_MS 1000
#define READS_PER_DISPATCH 256
/* Under load, reading pauses this long after a read that found several
 * messages, so that the next read finds more: fewer, larger puts and
 * PUBACK writes for a millisecond of latency. A lone message is read at
 * once. */
#define READ_COALESCE_MS 1

typedef struct {
  GSource source;
  gpointer tag;
  MqttClient *client;
} SocketSource;

typedef struct {
  MqttPublishedFunc done;
  gpointer user_data;
} Published;

struct _MqttClient {
  const EdgeConfigMqttBroker *config;
  char *client_id;
  struct mosquitto *mosq;
  GPtrArray *filters; /* char * */
  GArray *qos;        /* int */
  MqttClientMessageFunc func;
  MqttClientDrainedFunc drained;
  gpointer user_data;

  SocketSource *source; /* while a socket is open */
  GIOCondition events;  /* what the source watches for */
  guint read_pause_id;  /* reading paused to let messages gather */
  guint misc_id;
  guint reconnect_id;
  guint backoff_ms;
  gboolean started;     /* mosquitto_connect_async has been called once */
  gboolean connected;   /* CONNACK accepted */
  gboolean poisoned;    /* a message could not be kept: write nothing more */
  gboolean ever_connected;
  gboolean closing;     /* being freed: no more reconnects */
  guint generation;     /* bumped at each connection loss */
  guint holds;
  GHashTable *published; /* mid -> Published * */

  char *last_error;
  char *log_error; /* libmosquitto's last error line (OpenSSL's reasons) */
  gint64 connected_since_ms;
  MqttClientCounters counters;
};

static void client_schedule_reconnect (MqttClient *client);

static void
set_error (MqttClient *client, const char *message)
{
  if (g_strcmp0 (client->last_error, message) != 0)
    g_warning ("broker %s (%s:%" G_GINT64_FORMAT "): %s", client->config->name,
               client->config->host, client->config->port, message);
  g_free (client->last_error);
  client->last_error = g_strdup (message);
}

/* ---- the socket source ---- */

static void client_io (MqttClient *client, GIOCondition condition);

static gboolean
socket_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  SocketSource *s = (SocketSource *) source;
  client_io (s->client, g_source_query_unix_fd (source, s->tag));
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs socket_funcs = { NULL, NULL, socket_dispatch, NULL, NULL, NULL };

static void
detach_socket (MqttClient *client)
{
  if (client->read_pause_id) {
    g_source_remove (client->read_pause_id);
    client->read_pause_id = 0;
  }
  if (client->source) {
    g_source_destroy ((GSource *) client->source);
    g_source_unref ((GSource *) client->source);
    client->source = NULL;
  }
}

static gboolean
may_write (MqttClient *client)
{
  return client->holds == 0 && !client->poisoned;
}

/* Watches for output only when there is something to write and writing
 * is allowed. */
static void
update_watch (MqttClient *client)
{
  if (client->source == NULL)
    return;
  GIOCondition events = client->read_pause_id ? 0 : G_IO_IN | G_IO_HUP | G_IO_ERR;
  if (may_write (client) && mosquitto_want_write (client->mosq))
    events |= G_IO_OUT;
  /* A change wakes the main context up: only when there is one. */
  if (events != client->events) {
    g_source_modify_unix_fd ((GSource *) client->source, client->source->tag, events);
    client->events = events;
  }
}

static void
attach_socket (MqttClient *client)
{
  detach_socket (client);
  int fd = mosquitto_socket (client->mosq);
  if (fd < 0)
    return;
  SocketSource *s = (SocketSource *) g_source_new (&socket_funcs, sizeof (SocketSource));
  s->client = client;
  client->events = G_IO_IN | G_IO_OUT | G_IO_HUP | G_IO_ERR;
  s->tag = g_source_add_unix_fd ((GSource *) s, fd, client->events);
  g_source_set_static_name ((GSource *) s, "mqtt socket");
  g_source_attach ((GSource *) s, NULL);
  client->source = s;
  update_watch (client);
}

static void
cork (int fd, gboolean on)
{
#ifdef TCP_CORK
  int value = on;
  if (fd >= 0)
    setsockopt (fd, IPPROTO_TCP, TCP_CORK, &value, sizeof value);
#endif
}

/* Writes what libmosquitto has queued, if nothing is held. */
static void
flush (MqttClient *client)
{
  if (client->source && may_write (client) && mosquitto_want_write (client->mosq)) {
    /* libmosquitto sends each queued packet with a write of its own: a
     * read's worth of PUBACKs would go out as as many TCP segments, and
     * the broker would wake up for each. Corked, they leave together. */
    int fd = mosquitto_socket (client->mosq);
    cork (fd, TRUE);
    int rc = mosquitto_loop_write (client->mosq, 1);
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN)
      return; /* on_disconnect has run (and closed the socket) */
    cork (fd, FALSE);
  }
  update_watch (client);
}

static gboolean
on_read_resume (gpointer user_data)
{
  MqttClient *client = user_data;
  client->read_pause_id = 0;
  update_watch (client);
  return G_SOURCE_REMOVE;
}

static void
client_io (MqttClient *client, GIOCondition condition)
{
  if (condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)) {
    guint64 before = client->counters.messages_in;
    /* mosquitto_loop_read() handles one packet per call when nothing of
     * QoS > 0 is queued: read on while calls bring messages (errno cannot
     * tell: libmosquitto's own wake-up pipe leaves EAGAIN in it), a bounded
     * number of times so that the rest of the loop gets its turn. */
    for (guint i = 0; i < READS_PER_DISPATCH; i++) {
      guint64 seen = client->counters.messages_in;
      int rc = mosquitto_loop_read (client->mosq, 1);
      if (rc != MOSQ_ERR_SUCCESS || client->source == NULL) {
        if (client->drained)
          client->drained (client, client->user_data);
        return; /* the socket is closed; on_disconnect scheduled a reconnect */
      }
      if (client->counters.messages_in == seen)
        break;
    }
    if (client->drained)
      client->drained (client, client->user_data);
    if (client->counters.messages_in - before > 1 && client->read_pause_id == 0)
      client->read_pause_id = g_timeout_add (READ_COALESCE_MS, on_read_resume, client);
  }
  flush (client);
}

static gboolean
on_misc (gpointer user_data)
{
  MqttClient *client = user_data;
  if (client->source) {
    /* Keepalive: sends PINGREQ when due, and closes a connection whose
     * broker stopped answering (on_disconnect follows). */
    mosquitto_loop_misc (client->mosq);
    flush (client);
  }
  return G_SOURCE_CONTINUE;
}

/* ---- libmosquitto callbacks (run inside loop_read, loop_write, loop_misc) ---- */

static void
fail_published (MqttClient *client, gboolean all)
{
  /* QoS 0 publishes still queued are dropped with the connection;
   * libmosquitto keeps QoS 1 and 2 ones and sends them again. */
  GHashTableIter iter;
  gpointer key, value;
  g_autoptr (GPtrArray) failed = g_ptr_array_new_with_free_func (g_free);
  g_hash_table_iter_init (&iter, client->published);
  while (g_hash_table_iter_next (&iter, &key, &value)) {
    if (all || GPOINTER_TO_INT (key) < 0) {
      g_ptr_array_add (failed, value);
      g_hash_table_iter_steal (&iter);
    }
  }
  for (guint i = 0; i < failed->len; i++) {
    Published *p = failed->pdata[i];
    if (p->done)
      p->done (FALSE, p->user_data);
  }
}

static void
on_connect (struct mosquitto *mosq, void *user_data, int rc)
{
  MqttClient *client = user_data;
  if (rc != 0) {
    g_autofree char *message = g_strdup_printf ("connection refused: %s",
                                                mosquitto_connack_string (rc));
    set_error (client, message);
    return; /* the broker closes; on_disconnect schedules the retry */
  }
  if (client->ever_connected)
    client->counters.reconnects++;
  client->ever_connected = TRUE;
  client->connected = TRUE;
  client->connected_since_ms = g_get_real_time () / 1000;
  client->backoff_ms = BACKOFF_FIRST_MS;
  g_clear_pointer (&client->last_error, g_free);
  g_message ("broker %s: connected to %s:%" G_GINT64_FORMAT " as %s", client->config->name,
             client->config->host, client->config->port, client->client_id);
  if (client->filters->len > 0) {
    /* mosquitto_subscribe_multiple takes one QoS for all: subscribe one by one. */
    for (guint i = 0; i < client->filters->len; i++) {
      int qos = g_array_index (client->qos, int, i);
      int src = mosquitto_subscribe (mosq, NULL, client->filters->pdata[i], qos);
      if (src != MOSQ_ERR_SUCCESS)
        g_warning ("broker %s: cannot subscribe to %s: %s", client->config->name,
                   (char *) client->filters->pdata[i], mosquitto_strerror (src));
    }
  }
}

static gboolean
on_reconnect_after_loss (gpointer user_data)
{
  MqttClient *client = user_data;
  client->reconnect_id = 0;
  detach_socket (client);
  client_schedule_reconnect (client);
  return G_SOURCE_REMOVE;
}

static void
on_disconnect (struct mosquitto *mosq, void *user_data, int rc)
{
  MqttClient *client = user_data;
  if (client->closing)
    return;
  if (client->connected)
    g_message ("broker %s: disconnected (%s)", client->config->name,
               rc == MOSQ_ERR_SUCCESS ? "closed" : mosquitto_strerror (rc));
  else if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_REFUSED) {
    g_autofree char *message = g_strdup_printf (
        "%s%s%s%s", rc == MOSQ_ERR_ERRNO ? g_strerror (errno) : mosquitto_strerror (rc),
        client->log_error ? " (" : "", client->log_error ? client->log_error : "",
        client->log_error ? ")" : "");
    set_error (client, message);
  }
  g_clear_pointer (&client->log_error, g_free);
  client->connected = FALSE;
  client->generation++;
  client->holds = 0;
  client->poisoned = FALSE;
  fail_published (client, FALSE);
  /* libmosquitto closed the socket: stop watching it. */
  detach_socket (client);
  if (client->reconnect_id == 0)
    client->reconnect_id = g_idle_add (on_reconnect_after_loss, client);
}

static void
on_message (struct mosquitto *mosq, void *user_data, const struct mosquitto_message *message)
{
  MqttClient *client = user_data;
  client->counters.messages_in++;
  client->counters.bytes_in += (guint64) message->payloadlen;
  client->func (client, message->topic, message->payload, (gsize) message->payloadlen,
                message->qos, message->retain, client->user_data);
}

static void
on_publish (struct mosquitto *mosq, void *user_data, int mid)
{
  MqttClient *client = user_data;
  Published *p = NULL;
  /* QoS 0 publishes are kept under -mid (never acknowledged, only written). */
  if (!g_hash_table_steal_extended (client->published, GINT_TO_POINTER (mid), NULL,
                                    (gpointer *) &p))
    g_hash_table_steal_extended (client->published, GINT_TO_POINTER (-mid), NULL,
                                 (gpointer *) &p);
  if (p) {
    if (p->done)
      p->done (TRUE, p->user_data);
    g_free (p);
  }
}

static void
on_log (struct mosquitto *mosq, void *user_data, int level, const char *text)
{
  MqttClient *client = user_data;
  if (level & MOSQ_LOG_ERR) {
    g_free (client->log_error);
    client->log_error = g_strdup (text);
  }
  g_debug ("libmosquitto: %s", text);
}

/* ---- connecting ---- */

static gboolean
on_reconnect (gpointer user_data)
{
  MqttClient *client = user_data;
  client->reconnect_id = 0;
  int rc;
  if (!client->started) {
    rc = mosquitto_connect_async (client->mosq, client->config->host, (int) client->config->port,
                                  (int) (client->config->keepalive_ms / 1000));
    /* Past argument checks host and port are set: reconnect from now on. */
    client->started = rc != MOSQ_ERR_INVAL;
  } else {
    rc = mosquitto_reconnect_async (client->mosq);
  }
  if (rc != MOSQ_ERR_SUCCESS) {
    set_error (client, rc == MOSQ_ERR_ERRNO ? g_strerror (errno) : mosquitto_strerror (rc));
    client_schedule_reconnect (client);
    return G_SOURCE_REMOVE;
  }
  attach_socket (client);
  flush (client);
  return G_SOURCE_REMOVE;
}

static void
client_schedule_reconnect (MqttClient *client)
{
  if (client->reconnect_id)
    g_source_remove (client->reconnect_id);
  /* Full jitter over the upper half, so that several edged do not come
   * back in step after a broker restart. */
  guint delay = client->backoff_ms / 2 + g_random_int_range (0, (gint32) client->backoff_ms / 2 + 1);
  client->reconnect_id = g_timeout_add (delay, on_reconnect, client);
  client->backoff_ms = MIN (client->backoff_ms * 2, (guint) client->config->reconnect_max_ms);
}

static char *
default_client_id (const EdgeConfigMqttBroker *config, const char *instance)
{
  g_autofree char *host = g_strdup (g_get_host_name ());
  g_strcanon (host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", '-');
  char *id = g_strdup_printf ("edged-%s-%s-%s", host, instance, config->name);
  if (strlen (id) > 64)
    id[64] = '\0';
  return id;
}

static gboolean
check (int rc, const char *what, GError **error)
{
  if (rc == MOSQ_ERR_SUCCESS)
    return TRUE;
  g_set_error (error, MQTT_ERROR, MQTT_ERROR_FAILED, "%s: %s", what,
               rc == MOSQ_ERR_ERRNO ? g_strerror (errno) : mosquitto_strerror (rc));
  return FALSE;
}

MqttClient *
mqtt_client_new (const EdgeConfigMqttBroker *config, const char *const *filters, const int *qos,
                 guint n_filters, const char *instance, MqttClientMessageFunc func,
                 MqttClientDrainedFunc drained, gpointer user_data, GError **error)
{
  static gsize initialised = 0;
  if (g_once_init_enter (&initialised)) {
    mosquitto_lib_init ();
    g_once_init_leave (&initialised, 1);
  }
  MqttClient *client = g_new0 (MqttClient, 1);
  client->config = config;
  client->func = func;
  client->drained = drained;
  client->user_data = user_data;
  client->backoff_ms = BACKOFF_FIRST_MS;
  client->client_id = config->client_id[0] ? g_strdup (config->client_id)
                                           : default_client_id (config, instance);
  client->filters = g_ptr_array_new_with_free_func (g_free);
  client->qos = g_array_new (FALSE, FALSE, sizeof (int));
  client->published = g_hash_table_new_full (NULL, NULL, NULL, g_free);
  for (guint i = 0; i < n_filters; i++) {
    g_ptr_array_add (client->filters, g_strdup (filters[i]));
    g_array_append_val (client->qos, qos[i]);
  }
  client->mosq = mosquitto_new (client->client_id, config->clean_session, client);
  if (client->mosq == NULL) {
    g_set_error (error, MQTT_ERROR, MQTT_ERROR_FAILED, "broker %s: cannot create a client: %s",
                 config->name, g_strerror (errno));
    mqtt_client_free (client);
    return NULL;
  }
  /* We write: see the comment at the top. */
  mosquitto_threaded_set (client->mosq, true);
  mosquitto_int_option (client->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_connect_callback_set (client->mosq, on_connect);
  mosquitto_disconnect_callback_set (client->mosq, on_disconnect);
  mosquitto_message_callback_set (client->mosq, on_message);
  mosquitto_publish_callback_set (client->mosq, on_publish);
  mosquitto_log_callback_set (client->mosq, on_log);
  g_autofree char *what = g_strdup_printf ("broker %s", config->name);
  if (config->username[0] &&
      !check (mosquitto_username_pw_set (client->mosq, config->username,
                                         config->password[0] ? config->password : NULL),
              what, error)) {
    mqtt_client_free (client);
    return NULL;
  }
  if (config->tls_ca_file[0] &&
      !check (mosquitto_tls_set (client->mosq, config->tls_ca_file, NULL,
                                 config->tls_cert_file[0] ? config->tls_cert_file : NULL,
                                 config->tls_key_file[0] ? config->tls_key_file : NULL, NULL),
              what, error)) {
    mqtt_client_free (client);
    return NULL;
  }
  client->misc_id = g_timeout_add_seconds (1, on_misc, client);
  client->reconnect_id = g_idle_add (on_reconnect, client);
  return client;
}

void
mqtt_client_free (MqttClient *client)
{
  if (client == NULL)
    return;
  if (client->misc_id)
    g_source_remove (client->misc_id);
  if (client->reconnect_id)
    g_source_remove (client->reconnect_id);
  client->closing = TRUE;
  if (client->mosq) {
    /* Hold-free: say goodbye properly; held: leave the queue unwritten. */
    if (client->source && may_write (client)) {
      mosquitto_disconnect (client->mosq);
      mosquitto_loop_write (client->mosq, 1);
    }
    mosquitto_destroy (client->mosq);
  }
  detach_socket (client);
  if (client->published) {
    fail_published (client, TRUE);
    g_hash_table_unref (client->published);
  }
  g_ptr_array_unref (client->filters);
  g_array_unref (client->qos);
  g_free (client->client_id);
  g_free (client->last_error);
  g_free (client->log_error);
  g_free (client);
}

guint
mqtt_client_hold (MqttClient *client)
{
  client->holds++;
  update_watch (client);
  return client->generation;
}

void
mqtt_client_release (MqttClient *client, guint token, gboolean ok)
{
  if (token != client->generation || client->holds == 0)
    return;
  client->holds--;
  if (!ok && !client->poisoned) {
    client->poisoned = TRUE;
    set_error (client, "a message could not be stored: reconnecting, so that the broker sends "
                       "it again");
    /* Shut down without writing the queue: the broker sees the connection
     * end and keeps every message it has no acknowledgement for. */
    int fd = mosquitto_socket (client->mosq);
    if (fd >= 0)
      shutdown (fd, SHUT_RDWR);
    return;
  }
  flush (client);
}

gboolean
mqtt_client_publish (MqttClient *client, const char *topic, const void *payload, gsize len,
                     int qos, gboolean retain, MqttPublishedFunc done, gpointer user_data,
                     GError **error)
{
  if (len > 256 * 1024 * 1024) {
    g_set_error (error, MQTT_ERROR, MQTT_ERROR_INVALID, "payload of %" G_GSIZE_FORMAT
                 " bytes is too large for MQTT", len);
    return FALSE;
  }
  int mid = 0;
  int rc = mosquitto_publish (client->mosq, &mid, topic, (int) len, payload, qos, retain);
  if (rc != MOSQ_ERR_SUCCESS) {
    g_autofree char *what = g_strdup_printf ("publish to %s", topic);
    return check (rc, what, error);
  }
  client->counters.messages_out++;
  client->counters.bytes_out += len;
  Published *p = g_new0 (Published, 1);
  p->done = done;
  p->user_data = user_data;
  g_hash_table_replace (client->published, GINT_TO_POINTER (qos == 0 ? -mid : mid), p);
  flush (client);
  return TRUE;
}

const char *
mqtt_client_name (MqttClient *client)
{
  return client->config->name;
}

const char *
mqtt_client_id (MqttClient *client)
{
  return client->client_id;
}

gboolean
mqtt_client_connected (MqttClient *client)
{
  return client->connected;
}

void
mqtt_client_counters (MqttClient *client, MqttClientCounters *ret)
{
  *ret = client->counters;
}

JsonNode *
mqtt_client_status (MqttClient *client)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, client->config->name);
  json_builder_set_member_name (b, "host");
  json_builder_add_string_value (b, client->config->host);
  json_builder_set_member_name (b, "port");
  json_builder_add_int_value (b, client->config->port);
  json_builder_set_member_name (b, "tls");
  json_builder_add_boolean_value (b, client->config->tls_ca_file[0] != '\0');
  json_builder_set_member_name (b, "client_id");
  json_builder_add_string_value (b, client->client_id);
  json_builder_set_member_name (b, "connected");
  json_builder_add_boolean_value (b, client->connected);
  json_builder_set_member_name (b, "last_error");
  if (client->last_error)
    json_builder_add_string_value (b, client->last_error);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "connected_since");
  if (client->connected) {
    g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (client->connected_since_ms / 1000);
    g_autofree char *text = g_date_time_format_iso8601 (t);
    json_builder_add_string_value (b, text);
  } else {
    json_builder_add_null_value (b);
  }
  const struct {
    const char *name;
    guint64 value;
  } counters[] = {
    { "reconnects", client->counters.reconnects },
    { "messages_in", client->counters.messages_in },
    { "bytes_in", client->counters.bytes_in },
    { "messages_out", client->counters.messages_out },
    { "bytes_out", client->counters.bytes_out },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (counters); i++) {
    json_builder_set_member_name (b, counters[i].name);
    json_builder_add_int_value (b, (gint64) counters[i].value);
  }
  json_builder_set_member_name (b, "subscriptions");
  json_builder_begin_array (b);
  for (guint i = 0; i < client->filters->len; i++) {
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "topic");
    json_builder_add_string_value (b, client->filters->pdata[i]);
    json_builder_set_member_name (b, "qos");
    json_builder_add_int_value (b, g_array_index (client->qos, int, i));
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}
