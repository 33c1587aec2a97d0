/* kinesis-decode.h: pure decoding of Kinesis request bodies (private to
 * stream/; fuzzed by tests/fuzz/fuzz-kinesis.c). Nothing here touches the
 * store or a socket: JSON in, records or a Kinesis error out. */
#pragma once

#include "stream.h"

#define KINESIS_PUT_RECORDS_MAX 500
#define KINESIS_PUT_RECORDS_MAX_BYTES (5 * 1024 * 1024)

/* A refusal in Kinesis's terms: the __type and the message. */
typedef struct {
  char *type;
  char *message;
} KinesisFault;

void kinesis_fault_clear (KinesisFault *fault);

typedef struct {
  const char *partition_key; /* borrowed from the request's JSON */
  GBytes *data;
  gboolean has_explicit_hash_key;
  StreamHashKey explicit_hash_key;
} KinesisRecord;

/* Decodes the records of a PutRecords body (@single: the one record of a
 * PutRecord body), checking types, key lengths, base64, explicit hash keys,
 * each record against @max_record_bytes (data plus partition key) and the
 * request against 500 records and 5 MiB. Returns a GArray of KinesisRecord
 * (transfer full; it releases the data), or NULL with @fault filled. */
GArray *kinesis_decode_records (JsonObject *body, gboolean single, guint64 max_record_bytes,
                                KinesisFault *fault);

/* Base64 as Kinesis sends it, decoded with OpenSSL (which reports bad input,
 * unlike g_base64_decode). NULL for invalid input. (transfer full) */
GBytes *kinesis_decode_base64 (const char *text);
