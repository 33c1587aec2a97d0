/* Fuzzes Kinesis request decoding as the API runs it: PutRecord and
 * PutRecords bodies straight from the request bytes (JSON, member types,
 * keys, base64, explicit hash keys, limits), then the per-stream record
 * limit. Every input is decoded or refused with a Kinesis error type, and a
 * decoded put's records fit inside the request. */
#include "kinesis-decode.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  for (int single = 0; single < 2; single++) {
    KinesisFault fault = { NULL, NULL };
    KinesisPut *put = kinesis_decode_put ((const char *) data, size, single, &fault);
    if (put == NULL && (fault.type == NULL || fault.message == NULL))
      __builtin_trap ();
    if (put != NULL) {
      gsize total = 0;
      if (put->records->len == 0 || (single && put->records->len != 1))
        __builtin_trap ();
      for (guint i = 0; i < put->records->len; i++) {
        KinesisRecord *r = &g_array_index (put->records, KinesisRecord, i);
        if (r->data == NULL || r->partition_key == NULL ||
            strlen (r->partition_key) != r->partition_key_len || r->partition_key_len == 0)
          __builtin_trap ();
        total += g_bytes_get_size (r->data) + r->partition_key_len;
      }
      if (total > size)
        __builtin_trap ();
      if (!kinesis_put_check (put, single, 16, &fault) && fault.type == NULL)
        __builtin_trap ();
    }
    kinesis_put_free (put);
    kinesis_fault_clear (&fault);
  }
  return 0;
}
