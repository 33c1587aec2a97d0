/* Fuzzes Kinesis request decoding: the JSON entry point, then PutRecord and
 * PutRecords record decoding (types, keys, base64, explicit hash keys,
 * limits). Every input is decoded or refused with a Kinesis error type. */
#include "kinesis-decode.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  JsonNode *root = edge_json_parse ((const char *) data, size, 1 << 20, NULL);
  if (root != NULL && JSON_NODE_HOLDS_OBJECT (root)) {
    for (int single = 0; single < 2; single++) {
      KinesisFault fault = { NULL, NULL };
      GArray *records = kinesis_decode_records (json_node_get_object (root), single, 1024 * 1024,
                                                &fault);
      if (records == NULL && (fault.type == NULL || fault.message == NULL))
        __builtin_trap ();
      if (records != NULL && records->len == 0)
        __builtin_trap ();
      if (records)
        g_array_unref (records);
      kinesis_fault_clear (&fault);
    }
  }
  if (root)
    json_node_unref (root);
  char *text = g_strndup ((const char *) data, size);
  GBytes *decoded = kinesis_decode_base64 (text);
  if (decoded && g_bytes_get_size (decoded) > size)
    __builtin_trap ();
  if (decoded)
    g_bytes_unref (decoded);
  g_free (text);
  return 0;
}
