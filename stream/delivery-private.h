/* delivery-private.h: what delivery.c and firehose.c (the Firehose API)
 * share. */
#pragma once

#include "delivery.h"
#include "forward.h"

#define DELIVERY_NAME_MAX 64

typedef enum { DEST_DIRECTORY, DEST_S3, DEST_HTTP, DEST_NATS } Destination;
typedef enum { COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_ZSTD } Compression;

typedef struct {
  guint32 ordinal;
  guint64 next;
} Position;

typedef struct {
  GPtrArray *records; /* GBytes *, each record's data */
  GArray *arrivals;   /* gint64 Unix ms, one per record */
  gsize bytes;
  GArray *positions;  /* Position: where each shard stands after these records */
  /* Once flushing: */
  char *key;          /* the object's key (or file's path below the directory) */
  GBytes *body;       /* as sent */
  int attempts;
  gint64 first_attempt_ms;
  char *last_error;
} Buffer;

typedef struct _Delivery Delivery;

struct _StreamDeliveryService {
  EdgeGateway *gateway;
  StreamStore *store;
  EdgeState *state;
  const EdgeConfig *config;
  char *data_dir;
  SoupSession *session;
  GPtrArray *deliveries; /* Delivery * */
  StreamTransformFunc transform;
  gpointer transform_data;
};

struct _Delivery {
  gint refs;
  StreamDeliveryService *service;
  const EdgeConfigDelivery *config;
  EdgeConfigDelivery *owned; /* made with the Firehose API: config points here */
  gboolean direct_put;       /* fed by PutRecord(Batch) through its own data stream */
  gint64 created_ms;
  Destination destination;
  Compression compression;
  StreamS3 s3;
  StreamJetStream *jetstream; /* nats */
  char *subject;              /* nats */
  char *error_directory;
  StreamConsumer *consumer;
  Buffer *filling;
  Buffer *flushing;
  GQueue held;      /* StreamBatch *: batches waiting for room, one per shard at most */
  guint interval_timer;
  gboolean interval_due;
  guint retry_timer;
  GCancellable *cancellable;
  gboolean stopped;
  /* What /v1/delivery shows. */
  guint64 delivered_records, delivered_bytes, objects, failed_attempts;
  guint64 error_records, error_objects;
  guint64 transformed_records, dropped_records, processing_failed_records;
  guint transforms_out;
  gint64 last_delivery_ms;
  char *last_error;
};


/* Starts delivering @config (borrowed; or @owned, taken, for one made with
 * the API). */
Delivery *delivery_start (StreamDeliveryService *service, const EdgeConfigDelivery *config,
                          EdgeConfigDelivery *owned, GError **error);
Delivery *delivery_find (StreamDeliveryService *service, const char *name);
/* Stops @d and forgets it (its consumer's checkpoints stay with the stream). */
void delivery_remove (StreamDeliveryService *service, Delivery *d);
gboolean delivery_name_valid (const char *name);
void delivery_config_free (EdgeConfigDelivery *config);

/* The Firehose API (firehose.c): registers Firehose_20150804.* and starts
 * the delivery streams it made before. */
gboolean firehose_start (StreamDeliveryService *service, GError **error);

/* The data stream behind a DirectPut delivery stream. (transfer full) */
char *firehose_backing_stream (const char *name);
