/* delivery.h: delivery streams (Firehose semantics) and the S3 client they
 * use. See docs/internals/delivery.md. */
#pragma once

#include "edge-core.h"
#include "edge-gateway.h"
#include "stream.h"

#include <libsoup/soup.h>

G_BEGIN_DECLS

/* ---- S3-compatible object storage (s3.c) ---- */

typedef struct {
  char *endpoint; /* http(s)://host[:port] */
  char *bucket;
  char *region;
  char *access_key_id;
  char *secret_access_key;
} StreamS3;

void stream_s3_clear (StreamS3 *s3);
void stream_s3_copy (StreamS3 *to, const StreamS3 *from);

/* Puts @body as the object @key (multipart past 16 MiB), signed with SigV4.
 * Fails with the server's error code and message. */
void stream_s3_put_async (SoupSession *session, const StreamS3 *s3, const char *key, GBytes *body,
                          const char *content_type, const char *content_encoding,
                          GCancellable *cancellable, GAsyncReadyCallback callback,
                          gpointer user_data);
gboolean stream_s3_put_finish (GAsyncResult *result, GError **error);
/* Deletes the object @key (S3 answers 204 whether it existed or not). */
void stream_s3_delete_async (SoupSession *session, const StreamS3 *s3, const char *key,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data);
gboolean stream_s3_delete_finish (GAsyncResult *result, GError **error);

/* ---- delivery streams (delivery.c) ---- */

typedef struct _StreamDeliveryService StreamDeliveryService;

/* Transforms: @event is Firehose's data transformation event; @done gets
 * the function's answer (NULL, with @error, when the invocation failed).
 * Runs @done once, on the main thread, later. */
typedef void (*StreamTransformDone) (GBytes *answer, const char *error, gpointer done_data);
typedef void (*StreamTransformFunc) (const char *function, GBytes *event, StreamTransformDone done,
                                     gpointer done_data, gpointer user_data);

/* Checks the delivery_streams section beyond the tables: names, and what
 * each destination needs. */
gboolean stream_delivery_check_config (const EdgeConfig *config, const char *source,
                                       GError **error);

/* Starts the configured delivery streams (each consuming its data stream
 * as the registered consumer "delivery-NAME") and the ones made with the
 * Firehose API (kept in @state), and registers the Firehose API and
 * GET /v1/delivery and GET /v1/delivery/{name}. Failed batches go under
 * @data_dir/delivery-errors/NAME unless configured otherwise. */
StreamDeliveryService *stream_delivery_service_new (EdgeGateway *gateway, StreamStore *store,
                                                    EdgeState *state, const EdgeConfig *config,
                                                    const char *data_dir, GError **error);
/* How delivery streams with a transform invoke their function (the
 * functions module, wired by the daemon before the first records come). */
void stream_delivery_set_transform (StreamDeliveryService *service, StreamTransformFunc func,
                                    gpointer user_data);

/* Stops delivering; what is buffered and not yet delivered is delivered
 * again after the next start (its checkpoint did not move). */
void stream_delivery_service_free (StreamDeliveryService *service);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (StreamDeliveryService, stream_delivery_service_free)

G_END_DECLS
