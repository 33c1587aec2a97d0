/* Fuzzes detection zones: the parser, and motion over a mask drawn from
 * whatever it accepted. */
#include "motion.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = g_strndup ((const char *) data, size);
  MediaZone zones[MEDIA_ZONES_MAX];
  guint n = 0;
  if (media_zones_parse (text, zones, &n, NULL)) {
    if (n > MEDIA_ZONES_MAX)
      __builtin_trap ();
    for (guint i = 0; i < n; i++)
      if (zones[i].n_points < 3 || zones[i].n_points > MEDIA_ZONE_POINTS_MAX)
        __builtin_trap ();
    static guint8 frame[48 * 32];
    MediaMotion *m = media_motion_new (50, 0.0, zones, n);
    MediaMotionResult r;
    for (guint i = 0; i < 3; i++) {
      for (guint p = 0; p < sizeof frame; p++)
        frame[p] = (guint8) ((p * 7 + i * 91) & 0xff);
      media_motion_process (m, frame, 48, 32, 48, &r);
      if (r.n_boxes > MEDIA_MOTION_BOXES_MAX || r.score < 0 || r.score > 1)
        __builtin_trap ();
    }
    media_motion_free (m);
  }
  g_free (text);
  return 0;
}
