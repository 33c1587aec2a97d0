/* motion.c: motion in small grey frames (see motion.h).
 *
 * Background: 12.4 fixed point per pixel, moved half the way to each
 * frame: a short memory (a few frames) that smooths sensor noise, so that
 * what moves between detection frames shows, and an object that stops is
 * scenery again within three frames (0.6 s at 5 frames a second): events
 * end when the motion does, not when a slow background has caught up.
 *
 * Changed pixels are counted per 8×8 cell; a cell counts as changed when a
 * quarter of its pixels inside the zones did (single-pixel noise from
 * compression never does). Changed cells up to three cells apart are one
 * object (a plain object moving changes only at its edges); its box is the
 * cells' bounding box.
 */
#define G_LOG_DOMAIN "media"

#include "motion.h"

#include <gio/gio.h>
#include <stdlib.h>
#include <string.h>

#define CELL 8
/* Changed cells this many cells apart or closer (24 pixels at 320 wide)
 * are one object: the leading and trailing edges of something plain that
 * moves are one box. */
#define JOIN 3
/* More than this fraction of the zones changing in one frame is light
 * (a cloud, a lamp, the camera's exposure), not something moving. */
#define LIGHTING_FRACTION 0.7

struct _MediaMotion {
  guint threshold;
  double min_area;
  MediaZone zones[MEDIA_ZONES_MAX];
  guint n_zones;

  guint width, height;
  guint cells_x, cells_y;
  guint16 *background; /* width × height, grey << 4 */
  guint8 *mask;        /* width × height: 1 where motion counts */
  guint mask_pixels;
  guint16 *cell_mask;    /* pixels of each cell inside the zones */
  guint16 *cell_changed; /* changed pixels of each cell, this frame */
  guint32 *stack;        /* flood fill */
  guint8 *seen;
};

/* ---- zones ---- */

static gboolean
zone_error (GError **error, guint index, const char *what)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "zone %u: %s", index + 1, what);
  return FALSE;
}

gboolean
media_zones_parse (const char *text, MediaZone *zones, guint *ret_n, GError **error)
{
  *ret_n = 0;
  if (strlen (text) > MEDIA_ZONES_TEXT_MAX) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "zones: longer than %u characters", MEDIA_ZONES_TEXT_MAX);
    return FALSE;
  }
  g_auto (GStrv) parts = g_strsplit (text, ";", -1);
  guint n = 0;
  for (guint i = 0; parts[i]; i++) {
    g_auto (GStrv) words = g_strsplit_set (g_strstrip (parts[i]), " \t\n", -1);
    guint w = 0;
    while (words[w] && words[w][0] == '\0')
      w++;
    if (words[w] == NULL) {
      if (parts[i + 1] == NULL && i > 0)
        break; /* a trailing ";" */
      if (i == 0 && parts[1] == NULL)
        break; /* the empty text */
      return zone_error (error, n, "empty");
    }
    if (n == MEDIA_ZONES_MAX) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "zones: at most %d",
                   MEDIA_ZONES_MAX);
      return FALSE;
    }
    MediaZone *z = &zones[n];
    memset (z, 0, sizeof *z);
    if (g_str_equal (words[w], "exclude"))
      z->exclude = TRUE;
    else if (!g_str_equal (words[w], "include"))
      return zone_error (error, n, "starts with include or exclude");
    for (w++; words[w]; w++) {
      if (words[w][0] == '\0')
        continue;
      if (z->n_points == MEDIA_ZONE_POINTS_MAX)
        return zone_error (error, n, "more than " G_STRINGIFY (MEDIA_ZONE_POINTS_MAX) " points");
      char *end = NULL;
      double x = g_ascii_strtod (words[w], &end);
      if (end == words[w] || *end != ',')
        return zone_error (error, n, "a point is X,Y with X and Y from 0 to 1");
      const char *ys = end + 1;
      double y = g_ascii_strtod (ys, &end);
      if (end == ys || *end != '\0' || !(x >= 0 && x <= 1) || !(y >= 0 && y <= 1))
        return zone_error (error, n, "a point is X,Y with X and Y from 0 to 1");
      z->points[z->n_points++] = (MediaPoint) { x, y };
    }
    if (z->n_points < 3)
      return zone_error (error, n, "needs at least three points");
    n++;
  }
  *ret_n = n;
  return TRUE;
}

/* Even-odd rule: a ray from (@x, @y) to the right crosses the edges. */
static gboolean
zone_contains (const MediaZone *z, double x, double y)
{
  gboolean inside = FALSE;
  for (guint i = 0, j = z->n_points - 1; i < z->n_points; j = i++) {
    const MediaPoint *a = &z->points[i], *b = &z->points[j];
    if ((a->y > y) != (b->y > y) && x < (b->x - a->x) * (y - a->y) / (b->y - a->y) + a->x)
      inside = !inside;
  }
  return inside;
}

/* ---- the detector ---- */

MediaMotion *
media_motion_new (guint sensitivity, double min_area, const MediaZone *zones, guint n_zones)
{
  MediaMotion *m = g_new0 (MediaMotion, 1);
  sensitivity = CLAMP (sensitivity, 1, 100);
  /* 1 → 60 grey levels, 50 → 34, 100 → 8. */
  m->threshold = 60 - (sensitivity - 1) * 52 / 99;
  m->min_area = CLAMP (min_area, 0.0, 1.0);
  m->n_zones = MIN (n_zones, MEDIA_ZONES_MAX);
  if (m->n_zones)
    memcpy (m->zones, zones, m->n_zones * sizeof (MediaZone));
  return m;
}

static void
motion_clear_frame (MediaMotion *m)
{
  g_clear_pointer (&m->background, g_free);
  g_clear_pointer (&m->mask, g_free);
  g_clear_pointer (&m->cell_mask, g_free);
  g_clear_pointer (&m->cell_changed, g_free);
  g_clear_pointer (&m->stack, g_free);
  g_clear_pointer (&m->seen, g_free);
  m->width = m->height = 0;
}

void
media_motion_free (MediaMotion *motion)
{
  if (motion == NULL)
    return;
  motion_clear_frame (motion);
  g_free (motion);
}

/* A new frame size: the mask drawn from the zones, an empty background. */
static void
motion_resize (MediaMotion *m, guint width, guint height)
{
  motion_clear_frame (m);
  m->width = width;
  m->height = height;
  m->cells_x = (width + CELL - 1) / CELL;
  m->cells_y = (height + CELL - 1) / CELL;
  gsize pixels = (gsize) width * height, cells = (gsize) m->cells_x * m->cells_y;
  m->background = g_new (guint16, pixels);
  m->mask = g_new (guint8, pixels);
  m->cell_mask = g_new0 (guint16, cells);
  m->cell_changed = g_new0 (guint16, cells);
  m->stack = g_new (guint32, cells);
  m->seen = g_new (guint8, cells);

  gboolean any_include = FALSE;
  for (guint z = 0; z < m->n_zones; z++)
    any_include |= !m->zones[z].exclude;
  m->mask_pixels = 0;
  for (guint y = 0; y < height; y++) {
    double fy = (y + 0.5) / height;
    for (guint x = 0; x < width; x++) {
      double fx = (x + 0.5) / width;
      gboolean in = !any_include;
      for (guint z = 0; z < m->n_zones && !in; z++)
        if (!m->zones[z].exclude && zone_contains (&m->zones[z], fx, fy))
          in = TRUE;
      for (guint z = 0; z < m->n_zones && in; z++)
        if (m->zones[z].exclude && zone_contains (&m->zones[z], fx, fy))
          in = FALSE;
      m->mask[(gsize) y * width + x] = (guint8) in;
      if (in) {
        m->mask_pixels++;
        m->cell_mask[(y / CELL) * m->cells_x + x / CELL]++;
      }
    }
  }
}

static void
background_reset (MediaMotion *m, const guint8 *gray, guint stride)
{
  for (guint y = 0; y < m->height; y++)
    for (guint x = 0; x < m->width; x++)
      m->background[(gsize) y * m->width + x] = (guint16) (gray[(gsize) y * stride + x] << 4);
}

/* A cell inside the zones where a quarter of its pixels there (at least
 * two) changed. */
static gboolean
cell_moved (const MediaMotion *m, gsize cell)
{
  return m->cell_mask[cell] > 0 && m->cell_changed[cell] >= MAX (2, m->cell_mask[cell] / 4);
}

static int
box_larger_first (const void *a, const void *b)
{
  const MediaBox *x = a, *y = b;
  return (y->width * y->height > x->width * x->height) -
         (y->width * y->height < x->width * x->height);
}

void
media_motion_process (MediaMotion *m, const guint8 *gray, guint width, guint height, guint stride,
                      MediaMotionResult *ret)
{
  memset (ret, 0, sizeof *ret);
  if (width == 0 || height == 0 || stride < width)
    return;
  if (width != m->width || height != m->height) {
    motion_resize (m, width, height);
    background_reset (m, gray, stride);
    return;
  }
  if (m->mask_pixels == 0)
    return;

  gsize cells = (gsize) m->cells_x * m->cells_y;
  memset (m->cell_changed, 0, cells * sizeof (guint16));
  guint changed = 0;
  for (guint y = 0; y < height; y++) {
    const guint8 *row = gray + (gsize) y * stride;
    guint16 *bg = m->background + (gsize) y * width;
    const guint8 *mask = m->mask + (gsize) y * width;
    guint16 *cell_row = m->cell_changed + (y / CELL) * m->cells_x;
    for (guint x = 0; x < width; x++) {
      gint value = row[x] << 4;
      gint delta = value - bg[x];
      gboolean moved = (guint) ABS (delta) > (m->threshold << 4);
      bg[x] = (guint16) (bg[x] + delta / 2);
      if (moved && mask[x]) {
        changed++;
        cell_row[x / CELL]++;
      }
    }
  }
  ret->score = (double) changed / m->mask_pixels;
  if (ret->score > LIGHTING_FRACTION) {
    ret->lighting = TRUE;
    background_reset (m, gray, stride);
    return;
  }

  /* Changed cells into objects. */
  memset (m->seen, 0, cells);
  double frame = (double) width * height;
  MediaBox boxes[MEDIA_MOTION_BOXES_MAX * 4];
  guint n_boxes = 0;
  for (gsize start = 0; start < cells; start++) {
    if (m->seen[start] || !cell_moved (m, start))
      continue;
    guint top = 0, x0 = G_MAXUINT, y0 = G_MAXUINT, x1 = 0, y1 = 0, pixels = 0;
    m->seen[start] = 1;
    m->stack[top++] = (guint32) start;
    while (top > 0) {
      guint32 c = m->stack[--top];
      guint cx = c % m->cells_x, cy = c / m->cells_x;
      x0 = MIN (x0, cx);
      y0 = MIN (y0, cy);
      x1 = MAX (x1, cx);
      y1 = MAX (y1, cy);
      pixels += m->cell_changed[c];
      for (gint dy = -JOIN; dy <= JOIN; dy++)
        for (gint dx = -JOIN; dx <= JOIN; dx++) {
          gint nx = (gint) cx + dx, ny = (gint) cy + dy;
          if (nx < 0 || ny < 0 || nx >= (gint) m->cells_x || ny >= (gint) m->cells_y)
            continue;
          gsize n = (gsize) ny * m->cells_x + (gsize) nx;
          if (m->seen[n] || !cell_moved (m, n))
            continue;
          m->seen[n] = 1;
          m->stack[top++] = (guint32) n;
        }
    }
    double bx = (double) x0 * CELL / width, by = (double) y0 * CELL / height;
    double bw = MIN ((double) (x1 + 1) * CELL, width) / width - bx;
    double bh = MIN ((double) (y1 + 1) * CELL, height) / height - by;
    if (bw * bh < m->min_area)
      continue;
    if (n_boxes == G_N_ELEMENTS (boxes))
      continue;
    boxes[n_boxes++] = (MediaBox) { bx, by, bw, bh, pixels / frame };
  }
  qsort (boxes, n_boxes, sizeof (MediaBox), box_larger_first);
  ret->n_boxes = MIN (n_boxes, MEDIA_MOTION_BOXES_MAX);
  memcpy (ret->boxes, boxes, ret->n_boxes * sizeof (MediaBox));
  ret->motion = n_boxes > 0;
}
