/* ids.c: random identifiers. */
#include "edge-core.h"

#include <string.h>

char *
edge_uuid_random (void)
{
  static const char hex[] = "0123456789abcdef";
  guint8 bytes[16];
  for (gsize i = 0; i < sizeof bytes; i += 4) {
    guint32 r = g_random_int ();
    memcpy (bytes + i, &r, sizeof r);
  }
  bytes[6] = (guint8) ((bytes[6] & 0x0f) | 0x40); /* version 4 */
  bytes[8] = (guint8) ((bytes[8] & 0x3f) | 0x80); /* the RFC 4122 variant */
  char *out = g_malloc (37), *p = out;
  for (gsize i = 0; i < sizeof bytes; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      *p++ = '-';
    *p++ = hex[bytes[i] >> 4];
    *p++ = hex[bytes[i] & 0x0f];
  }
  *p = '\0';
  return out;
}
