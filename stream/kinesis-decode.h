/* kinesis-decode.h: the Kinesis wire format, pure: decoding put request
 * bodies, base64 both ways, and the JSON of records in answers (private to
 * stream/; fuzzed by tests/fuzz/fuzz-kinesis.c). Nothing here touches the
 * store or a socket: request bytes in, records or a Kinesis error out.
 *
 * PutRecord and PutRecords are the hot path of the Kinesis API, so their
 * bodies are decoded in one pass with the core's JSON reader, without a
 * tree: record data is base64-decoded straight into one buffer per request
 * and partition keys are copied beside it. */
#pragma once

#include "stream.h"

#include <json-glib/json-glib.h>

#define KINESIS_PUT_RECORDS_MAX 500
#define KINESIS_PUT_RECORDS_MAX_BYTES (5 * 1024 * 1024)

/* A refusal in Kinesis's terms: the __type and the message. */
typedef struct {
  char *type;
  char *message;
} KinesisFault;

void kinesis_fault_clear (KinesisFault *fault);

typedef struct {
  const char *partition_key; /* NUL-terminated, in the put's buffer */
  gsize partition_key_len;
  GBytes *data;              /* a slice of the put's buffer */
  gboolean has_explicit_hash_key;
  StreamHashKey explicit_hash_key;
} KinesisRecord;

typedef struct {
  char *stream_name;  /* nullable */
  char *stream_arn;   /* nullable */
  GArray *records;    /* KinesisRecord, at least one */
  GBytes *buffer;     /* holds every record's data and key */
} KinesisPut;

/* Decodes a PutRecords body (@single: a PutRecord body), checking the JSON
 * itself, member types, partition key lengths (1 to 256 characters),
 * base64, explicit hash keys, and the request against 500 records and
 * 5 MiB. The stream's own record limit is checked by kinesis_put_check.
 * Returns the put (transfer full), or NULL with @fault filled. */
KinesisPut *kinesis_decode_put (const char *body, gsize len, gboolean single, KinesisFault *fault);

/* Checks each record (data plus partition key) against @max_record_bytes;
 * @single words the error for PutRecord. */
gboolean kinesis_put_check (const KinesisPut *put, gboolean single, guint64 max_record_bytes,
                            KinesisFault *fault);

void kinesis_put_free (KinesisPut *put);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (KinesisPut, kinesis_put_free)

/* Decodes base64 as Kinesis sends it (RFC 4648, padded) into @out, which
 * has room for len / 4 * 3 bytes. Returns the decoded length, or -1 for
 * invalid input. */
gssize kinesis_decode_base64 (const char *text, gsize len, guint8 *out);

/* Encodes @len bytes as padded base64 into @out, which has room for
 * (len + 2) / 3 * 4 characters (no NUL is written); returns that length. */
gsize kinesis_encode_base64 (const guint8 *data, gsize len, char *out);

/* Writing answers: a record as GetRecords and SubscribeToShard events
 * carry it, the quoted decimal sequence number of (ordinal, number), and
 * the ChildShards array of a closed shard. */
void kinesis_append_record (GString *out, guint32 ordinal, const StreamRecord *r);
void kinesis_append_sequence (GString *out, guint32 ordinal, guint64 number);
void kinesis_append_child_shards (GString *out, const StreamInfo *info,
                                  const StreamShardInfo *parent);
/* "HashKeyRange": {"StartingHashKey": ..., "EndingHashKey": ...} as a member
 * of the object @b is building. */
void kinesis_add_hash_key_range (JsonBuilder *b, const StreamShardInfo *shard);
