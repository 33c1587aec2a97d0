/* Fuzzes the one entry point for untrusted JSON (size, depth, UTF-8 checks
 * in front of json-glib). */
#include "edge-gateway.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  JsonNode *node = edge_json_parse ((const char *) data, size, 1 << 20, &error);
  if (node) {
    gsize len;
    char *text = edge_json_to_string (node, &len);
    g_free (text);
    json_node_unref (node);
  } else if (error == NULL) {
    __builtin_trap ();
  }
  g_clear_error (&error);
  return 0;
}
