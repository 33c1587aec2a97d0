/* jetstream.c: publishing to NATS JetStream through libnats (see forward.h).
 *
 * libnats blocks (connecting, making a stream) and calls back on threads of
 * its own, so each publish runs in a GTask worker thread: it connects if it
 * must, sends every message with js_PublishMsgAsync (pipelined on the one
 * connection), then waits in js_PublishAsyncComplete for the
 * acknowledgements. Each publish gets a JetStream context of its own, whose
 * acknowledgement handler fills that publish's results, so concurrent
 * publishes (one per shard of a forwarded stream) never see each other's
 * answers. A message without an acknowledgement by the deadline counts as
 * not stored; sent again later with the same Nats-Msg-Id, it is dropped by
 * the server if it had been stored after all.
 */
#define G_LOG_DOMAIN "forward"

#include "forward.h"

#include <nats/nats.h>

#define CONNECT_TIMEOUT_MS 2000
#define RECONNECT_WAIT_MS 250

struct _StreamJetStream {
  gint refs;   /* the owner's, and one per publish under way */
  GMutex lock;
  char *servers;
  char *stream;
  char *subjects;
  int replicas;
  char *ca_file, *cert_file, *key_file, *credentials_file; /* NULL when unset */
  natsConnection *connection; /* under lock, made on first use */
  gboolean stream_ready;      /* under lock */
};

typedef struct {
  StreamJetStream *js;
  GPtrArray *messages;
  guint wait_ms;
  GHashTable *index;   /* msg id -> position + 1 */
  GMutex lock;         /* the acknowledgement handler runs on libnats' thread */
  GArray *results;     /* guint8 StreamJetStreamResult per message */
  char *first_error;
} Publish;

void
stream_jetstream_message_free (StreamJetStreamMessage *m)
{
  if (m == NULL)
    return;
  g_free (m->subject);
  g_free (m->msg_id);
  g_clear_pointer (&m->data, g_bytes_unref);
  g_strfreev (m->headers);
  g_free (m);
}

StreamJetStream *
stream_jetstream_new (const char *servers, const char *stream, const char *subjects, int replicas)
{
  StreamJetStream *js = g_new0 (StreamJetStream, 1);
  js->refs = 1;
  g_mutex_init (&js->lock);
  js->servers = g_strdup (servers);
  js->stream = stream && stream[0] ? g_strdup (stream) : NULL;
  js->subjects = g_strdup (subjects);
  js->replicas = replicas;
  return js;
}

void
stream_jetstream_free (StreamJetStream *js)
{
  if (js == NULL || !g_atomic_int_dec_and_test (&js->refs))
    return;
  if (js->connection) {
    natsConnection_Close (js->connection);
    natsConnection_Destroy (js->connection);
  }
  g_mutex_clear (&js->lock);
  g_free (js->ca_file);
  g_free (js->cert_file);
  g_free (js->key_file);
  g_free (js->credentials_file);
  g_free (js->servers);
  g_free (js->stream);
  g_free (js->subjects);
  g_free (js);
}

static char *
nonempty (const char *s)
{
  return s && s[0] ? g_strdup (s) : NULL;
}

void
stream_jetstream_set_security (StreamJetStream *js, const char *ca_file, const char *cert_file,
                               const char *key_file, const char *credentials_file)
{
  js->ca_file = nonempty (ca_file);
  js->cert_file = nonempty (cert_file);
  js->key_file = nonempty (key_file);
  js->credentials_file = nonempty (credentials_file);
}

static gboolean
nats_failed (natsStatus s, const char *what, GError **error)
{
  if (s == NATS_OK)
    return FALSE;
  const char *last = nats_GetLastError (NULL);
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "NATS %s: %s%s%s", what,
               natsStatus_GetText (s), last && last[0] ? ": " : "", last ? last : "");
  return TRUE;
}

/* Connects if not yet connected. Under js->lock. */
static gboolean
ensure_connected (StreamJetStream *js, GError **error)
{
  if (js->connection && !natsConnection_IsClosed (js->connection))
    return TRUE;
  if (js->connection) {
    natsConnection_Destroy (js->connection);
    js->connection = NULL;
  }
  natsOptions *opts = NULL;
  g_auto (GStrv) servers = g_strsplit (js->servers, ",", -1);
  for (guint i = 0; servers[i]; i++)
    g_strstrip (servers[i]);
  natsStatus s = natsOptions_Create (&opts);
  if (s == NATS_OK)
    s = natsOptions_SetServers (opts, (const char **) servers, (int) g_strv_length (servers));
  if (s == NATS_OK)
    s = natsOptions_SetTimeout (opts, CONNECT_TIMEOUT_MS);
  /* Once connected, reconnect for ever: the forwarder's log waits. */
  if (s == NATS_OK)
    s = natsOptions_SetMaxReconnect (opts, -1);
  if (s == NATS_OK)
    s = natsOptions_SetReconnectWait (opts, RECONNECT_WAIT_MS);
  if (s == NATS_OK)
    s = natsOptions_SetName (opts, "edged");
  if (s == NATS_OK && js->ca_file)
    s = natsOptions_LoadCATrustedCertificates (opts, js->ca_file);
  if (s == NATS_OK && js->cert_file && js->key_file)
    s = natsOptions_LoadCertificatesChain (opts, js->cert_file, js->key_file);
  if (s == NATS_OK && (js->ca_file || js->cert_file))
    s = natsOptions_SetSecure (opts, true);
  if (s == NATS_OK && js->credentials_file)
    s = natsOptions_SetUserCredentialsFromFiles (opts, js->credentials_file, NULL);
  if (s == NATS_OK)
    s = natsConnection_Connect (&js->connection, opts);
  natsOptions_Destroy (opts);
  if (nats_failed (s, "connect", error)) {
    js->connection = NULL;
    return FALSE;
  }
  return TRUE;
}

/* Makes the JetStream stream if it is missing. Under js->lock. */
static gboolean
ensure_stream (StreamJetStream *js, jsCtx *ctx, GError **error)
{
  if (js->stream == NULL || js->stream_ready)
    return TRUE;
  jsStreamInfo *info = NULL;
  jsErrCode code = 0;
  natsStatus s = js_GetStreamInfo (&info, ctx, js->stream, NULL, &code);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy (info);
    js->stream_ready = TRUE;
    return TRUE;
  }
  if (s != NATS_NOT_FOUND)
    return !nats_failed (s, "stream info", error);

  g_auto (GStrv) subjects = g_strsplit (js->subjects, ",", -1);
  jsStreamConfig config;
  jsStreamConfig_Init (&config);
  config.Name = js->stream;
  config.Subjects = (const char **) subjects;
  config.SubjectsLen = (int) g_strv_length (subjects);
  config.Storage = js_FileStorage;
  config.Replicas = js->replicas;
  s = js_AddStream (&info, ctx, &config, NULL, &code);
  if (s == NATS_OK)
    jsStreamInfo_Destroy (info);
  if (nats_failed (s, "add stream", error))
    return FALSE;
  g_message ("made JetStream stream %s (%s, %d replicas)", js->stream, js->subjects,
             js->replicas);
  js->stream_ready = TRUE;
  return TRUE;
}

static void
publish_free (Publish *p)
{
  stream_jetstream_free (p->js);
  g_ptr_array_unref (p->messages);
  g_hash_table_unref (p->index);
  g_mutex_clear (&p->lock);
  g_array_unref (p->results);
  g_free (p->first_error);
  g_free (p);
}

static void
note_failure (Publish *p, const char *reason)
{
  if (p->first_error == NULL)
    p->first_error = g_strdup (reason);
}

static void
on_ack (jsCtx *ctx, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
  Publish *p = closure;
  const char *id = NULL;
  (void) ctx;
  if (natsMsgHeader_Get (msg, "Nats-Msg-Id", &id) == NATS_OK && id) {
    guint at = GPOINTER_TO_UINT (g_hash_table_lookup (p->index, id));
    g_mutex_lock (&p->lock);
    if (at && pa)
      g_array_index (p->results, guint8, at - 1) = STREAM_JETSTREAM_STORED;
    else if (pae)
      note_failure (p, pae->ErrText ? pae->ErrText : natsStatus_GetText (pae->Err));
    g_mutex_unlock (&p->lock);
  }
  natsMsg_Destroy (msg);
}

static natsMsg *
make_message (const StreamJetStreamMessage *m, GError **error)
{
  natsMsg *msg = NULL;
  gsize len;
  const char *data = g_bytes_get_data (m->data, &len);
  natsStatus s = natsMsg_Create (&msg, m->subject, NULL, data, (int) len);
  if (s == NATS_OK)
    s = natsMsgHeader_Set (msg, "Nats-Msg-Id", m->msg_id);
  for (guint i = 0; s == NATS_OK && m->headers && m->headers[i] && m->headers[i + 1]; i += 2)
    s = natsMsgHeader_Set (msg, m->headers[i], m->headers[i + 1]);
  if (nats_failed (s, "message", error)) {
    natsMsg_Destroy (msg);
    return NULL;
  }
  return msg;
}

static void
run_publish (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  Publish *p = data;
  StreamJetStream *js = p->js;
  GError *error = NULL;
  jsCtx *ctx = NULL;
  jsOptions options;
  (void) source;
  (void) cancellable;

  jsOptions_Init (&options);
  options.Wait = p->wait_ms;
  options.PublishAsync.AckHandler = on_ack;
  options.PublishAsync.AckHandlerClosure = p;
  options.PublishAsync.MaxPending = (int64_t) p->messages->len + 1;

  g_mutex_lock (&js->lock);
  gboolean ready = ensure_connected (js, &error) &&
                   !nats_failed (natsConnection_JetStream (&ctx, js->connection, &options),
                                 "JetStream", &error) &&
                   ensure_stream (js, ctx, &error);
  g_mutex_unlock (&js->lock);
  if (!ready) {
    jsCtx_Destroy (ctx);
    g_task_return_error (task, error);
    return;
  }

  /* Room for the headers within the servers' max_payload. */
  gint64 max_data = natsConnection_GetMaxPayload (js->connection) - 1024;
  for (guint i = 0; i < p->messages->len; i++) {
    StreamJetStreamMessage *m = g_ptr_array_index (p->messages, i);
    if ((gint64) g_bytes_get_size (m->data) > max_data) {
      g_array_index (p->results, guint8, i) = STREAM_JETSTREAM_TOO_LARGE;
      continue;
    }
    natsMsg *msg = make_message (m, &error);
    natsStatus s = msg ? js_PublishMsgAsync (ctx, &msg, NULL) : NATS_ERR;
    if (s != NATS_OK) {
      natsMsg_Destroy (msg);
      g_mutex_lock (&p->lock);
      note_failure (p, error ? error->message : natsStatus_GetText (s));
      g_mutex_unlock (&p->lock);
      g_clear_error (&error);
      break; /* what follows would be out of order: the caller sends it again */
    }
  }

  jsPubOptions wait;
  jsPubOptions_Init (&wait);
  wait.MaxWait = p->wait_ms;
  natsStatus s = js_PublishAsyncComplete (ctx, &wait);
  if (s != NATS_OK) {
    /* Taken back unacknowledged: they count as not stored. */
    natsMsgList pending = { 0 };
    if (js_PublishAsyncGetPendingList (&pending, ctx) == NATS_OK)
      natsMsgList_Destroy (&pending);
    g_mutex_lock (&p->lock);
    note_failure (p, s == NATS_TIMEOUT ? "no acknowledgement in time" : natsStatus_GetText (s));
    g_mutex_unlock (&p->lock);
  }
  jsCtx_Destroy (ctx);
  g_task_return_boolean (task, TRUE);
}

void
stream_jetstream_publish_async (StreamJetStream *js, GPtrArray *messages, guint wait_ms,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Publish *p = g_new0 (Publish, 1);
  g_atomic_int_inc (&js->refs);
  p->js = js;
  p->messages = g_ptr_array_ref (messages);
  p->wait_ms = wait_ms;
  p->index = g_hash_table_new (g_str_hash, g_str_equal);
  g_mutex_init (&p->lock);
  p->results = g_array_sized_new (FALSE, TRUE, sizeof (guint8), messages->len);
  g_array_set_size (p->results, messages->len);
  for (guint i = 0; i < messages->len; i++) {
    StreamJetStreamMessage *m = g_ptr_array_index (messages, i);
    g_hash_table_insert (p->index, m->msg_id, GUINT_TO_POINTER (i + 1));
  }
  g_task_set_task_data (task, p, (GDestroyNotify) publish_free);
  g_task_run_in_thread (task, run_publish);
  g_object_unref (task);
}

GArray *
stream_jetstream_publish_finish (GAsyncResult *result, char **ret_error, GError **error)
{
  Publish *p = g_task_get_task_data (G_TASK (result));
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  if (ret_error)
    *ret_error = g_strdup (p->first_error);
  return g_array_ref (p->results);
}
