/* Fuzzes the configuration loader: any bytes must give a configuration or
 * an error, never a crash, a leak or unbounded work. */
#include "edge-core.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  EdgeConfig *config = edge_config_load_data ((const char *) data, size, "fuzz.yaml", "/base",
                                              &error);
  if (config != NULL) {
    /* What loads must also write out and load back. */
    char *yaml = edge_config_to_yaml (config);
    EdgeConfig *again = edge_config_load_data (yaml, strlen (yaml), "again.yaml", NULL, NULL);
    if (again == NULL)
      __builtin_trap ();
    edge_config_free (again);
    g_free (yaml);
    edge_config_free (config);
  } else if (error == NULL) {
    __builtin_trap ();
  }
  g_clear_error (&error);
  return 0;
}
