/* forward.h: forwarders (a data stream mirrored upstream, to a
 * Kinesis-compatible endpoint or NATS JetStream) and the JetStream
 * publisher they and delivery streams use. See docs/internals/forward.md. */
#pragma once

#include "edge-core.h"
#include "edge-gateway.h"
#include "stream.h"

G_BEGIN_DECLS

/* ---- NATS JetStream (jetstream.c) ---- */

typedef struct _StreamJetStream StreamJetStream;

typedef struct {
  char *subject;
  char *msg_id;   /* Nats-Msg-Id: JetStream drops a resent message it holds already */
  GBytes *data;
  GStrv headers;  /* NAME, VALUE, NAME, VALUE, ...; nullable */
} StreamJetStreamMessage;

void stream_jetstream_message_free (StreamJetStreamMessage *m);

/* A publisher for @servers ("nats://HOST:PORT[,nats://...]", user and
 * password in the URLs if the servers want them). It connects on first
 * use and reconnects on its own. With @stream (nullable), the JetStream
 * stream of that name is made on first use, if missing, taking @subjects
 * ("a,b") with @replicas copies. (transfer full) */
StreamJetStream *stream_jetstream_new (const char *servers, const char *stream,
                                       const char *subjects, int replicas);
/* TLS and credentials for the connection (each nullable or ""): CA
 * certificates to check the servers against, a client certificate and
 * key, a .creds file. Before the first publish. */
void stream_jetstream_set_security (StreamJetStream *js, const char *ca_file,
                                    const char *cert_file, const char *key_file,
                                    const char *credentials_file);
/* Drops the caller's reference; publishes under way finish first. */
void stream_jetstream_free (StreamJetStream *js);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (StreamJetStream, stream_jetstream_free)

/* Publishes @messages (StreamJetStreamMessage *) at once, awaiting each
 * one's acknowledgement (stored by the stream's replicas) for up to
 * @wait_ms. Runs off the main thread; @callback runs on the caller's main
 * context. */
void stream_jetstream_publish_async (StreamJetStream *js, GPtrArray *messages, guint wait_ms,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data);
typedef enum {
  STREAM_JETSTREAM_FAILED,    /* not acknowledged: send it again */
  STREAM_JETSTREAM_STORED,
  STREAM_JETSTREAM_TOO_LARGE, /* past the servers' max_payload: never will be */
} StreamJetStreamResult;

/* What became of each message (a guint8 StreamJetStreamResult per
 * message, in order); @ret_error gets the first failure's reason (NULL if
 * none failed). NULL with @error when nothing could be sent (no
 * connection). */
GArray *stream_jetstream_publish_finish (GAsyncResult *result, char **ret_error, GError **error);

/* ---- forwarders (forward.c) ---- */

typedef struct _StreamForwardService StreamForwardService;

/* Checks the forwarders section beyond the tables: names, streams, and what
 * each destination needs. */
gboolean stream_forward_check_config (const EdgeConfig *config, const char *source,
                                      GError **error);

/* Starts the configured forwarders, each consuming its data stream as the
 * registered consumer "forward-NAME", and registers GET /v1/forwarders,
 * GET /v1/forwarders/{name} and their metrics. */
StreamForwardService *stream_forward_service_new (EdgeGateway *gateway, StreamStore *store,
                                                  const EdgeConfig *config, EdgeMetrics *metrics,
                                                  GError **error);
void stream_forward_service_free (StreamForwardService *service);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (StreamForwardService, stream_forward_service_free)

G_END_DECLS
