/* motion.h: motion in small grey frames, and the zones it is looked for in
 * (media/motion.c). Pure: no GStreamer, no I/O; fuzzed and unit-tested.
 *
 * Each frame is compared with a background that follows the scene slowly
 * (a running average); pixels that differ by more than the sensitivity's
 * threshold are gathered into 8×8 cells, and neighbouring changed cells
 * into objects. A frame has motion when an object at least the minimum
 * area large lies inside the zones. Boxes and areas are fractions of the
 * frame (0 to 1), so they do not depend on the detection size.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define MEDIA_ZONES_MAX 16
#define MEDIA_ZONE_POINTS_MAX 32
#define MEDIA_ZONES_TEXT_MAX 4096
#define MEDIA_MOTION_BOXES_MAX 16

typedef struct {
  double x, y; /* fractions of the frame's width and height */
} MediaPoint;

typedef struct {
  gboolean exclude;
  guint n_points;
  MediaPoint points[MEDIA_ZONE_POINTS_MAX];
} MediaZone;

/* Parses zones written as "include|exclude X,Y X,Y X,Y ...", separated by
 * ";": at least three points each, coordinates from 0 to 1. An empty text
 * is no zone (the whole frame). FALSE with @error naming the zone and what
 * is wrong. */
gboolean media_zones_parse (const char *text, MediaZone *zones, guint *ret_n, GError **error);

typedef struct {
  double x, y, width, height; /* fractions of the frame */
  double area;                /* fraction of the frame that changed inside the box */
} MediaBox;

typedef struct {
  gboolean motion;  /* an object at least min_area large moved */
  double score;     /* fraction of the zones' area that changed, 0 to 1 */
  guint n_boxes;    /* the objects, largest first */
  MediaBox boxes[MEDIA_MOTION_BOXES_MAX];
  gboolean lighting; /* most of the frame changed at once: taken as light, not motion */
} MediaMotionResult;

typedef struct _MediaMotion MediaMotion;

/* @sensitivity 1 (only strong changes) to 100 (the faintest); @min_area a
 * fraction of the frame. The zones are copied. (transfer full) */
MediaMotion *media_motion_new (guint sensitivity, double min_area, const MediaZone *zones,
                               guint n_zones);
void media_motion_free (MediaMotion *motion);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MediaMotion, media_motion_free)

/* Compares one grey frame (@stride bytes a row) with the background and
 * folds it in. A frame of another size starts the background again (no
 * motion reported for it). */
void media_motion_process (MediaMotion *motion, const guint8 *gray, guint width, guint height,
                           guint stride, MediaMotionResult *ret);

G_END_DECLS
