/* Fuzzes schedule expressions (rate, cron, at) and the next time they
 * fire: whatever parses must give a time after the one asked about (or
 * none), on a whole minute for cron(), and the same time again when asked
 * from just before it. */
#include "functions-private.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = g_strndup ((const char *) data, size);
  FunctionsCron *cron = functions_cron_parse (text, NULL);
  if (cron) {
    const gint64 start = 1795932000; /* 2026-11-29T06:00:00Z */
    const gint64 afters[] = { start, start + 37, 4102444800 /* 2100 */ };
    for (gsize i = 0; i < G_N_ELEMENTS (afters); i++) {
      gint64 next = functions_cron_next (cron, afters[i], start);
      if (next == -1)
        continue;
      if (next <= afters[i])
        __builtin_trap ();
      if (g_str_has_prefix (text, "cron(") && next % 60 != 0)
        __builtin_trap ();
      if (functions_cron_next (cron, next - 1, start) != next)
        __builtin_trap ();
    }
    functions_cron_free (cron);
  }
  g_free (text);
  return 0;
}
