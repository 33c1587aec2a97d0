/* Motion in grey frames and zones (media/motion.c): what moves is found
 * where it moves, a still or noisy scene is quiet, zones include and
 * exclude, light changes are not motion, and bad zones are named. */
#include "motion.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#define W 320
#define H 180

/* A grey scene with a white square of @side pixels at (@x, @y), and a
 * little deterministic noise (±@noise grey levels). */
static void
draw (guint8 *frame, guint x, guint y, guint side, guint noise, guint seed)
{
  guint32 state = seed * 2654435761u + 1;
  for (guint i = 0; i < W * H; i++) {
    state = state * 1664525u + 1013904223u;
    frame[i] = (guint8) (80 + (noise ? (gint) (state >> 24) % (gint) (2 * noise + 1) - (gint) noise : 0));
  }
  for (guint row = y; row < y + side && row < H; row++)
    for (guint col = x; col < x + side && col < W; col++)
      frame[row * W + col] = 230;
}

static MediaMotionResult
run (MediaMotion *m, guint8 *frame)
{
  MediaMotionResult r;
  media_motion_process (m, frame, W, H, W, &r);
  return r;
}

static void
test_still_scene_is_quiet (void **state)
{
  g_autoptr (MediaMotion) m = media_motion_new (50, 0.005, NULL, 0);
  guint8 *frame = g_malloc (W * H);
  for (guint i = 0; i < 50; i++) {
    draw (frame, 100, 60, 24, 6, i); /* the same scene, noise differing per frame */
    MediaMotionResult r = run (m, frame);
    assert_false (r.motion);
    assert_int_equal (r.n_boxes, 0);
  }
  g_free (frame);
}

static void
test_moving_square_is_found_where_it_is (void **state)
{
  g_autoptr (MediaMotion) m = media_motion_new (50, 0.005, NULL, 0);
  guint8 *frame = g_malloc (W * H);
  draw (frame, 200, 70, 24, 4, 0);
  run (m, frame);
  guint moving = 0;
  for (guint i = 1; i <= 10; i++) {
    guint x = 200 + i * 8;
    draw (frame, x < W - 24 ? x : W - 24, 70, 24, 4, i);
    MediaMotionResult r = run (m, frame);
    if (!r.motion)
      continue;
    moving++;
    assert_true (r.n_boxes >= 1);
    const MediaBox *b = &r.boxes[0];
    /* The box covers the square's rows and lies in the right part. */
    assert_true (b->x >= 180.0 / W);
    assert_true (b->y <= 70.0 / H && b->y + b->height >= 94.0 / H);
    assert_true (b->width * b->height < 0.1);
    assert_true (r.score > 0 && r.score < 0.1);
  }
  assert_true (moving >= 8);
  /* It stops: quiet again within three frames. */
  guint quiet = 0;
  for (guint i = 0; i < 6; i++) {
    draw (frame, W - 24, 70, 24, 4, 100 + i);
    if (!run (m, frame).motion)
      quiet++;
  }
  assert_true (quiet >= 3);
  g_free (frame);
}

static void
test_small_objects_and_low_sensitivity (void **state)
{
  guint8 *frame = g_malloc (W * H);
  /* A 6-pixel speck moving: below a 1% minimum area. */
  g_autoptr (MediaMotion) m = media_motion_new (50, 0.01, NULL, 0);
  draw (frame, 10, 10, 6, 0, 0);
  run (m, frame);
  for (guint i = 1; i < 10; i++) {
    draw (frame, 10 + i * 10, 10, 6, 0, i);
    assert_false (run (m, frame).motion);
  }
  /* A faint change (20 grey levels) is motion at 100, not at 1. */
  g_autoptr (MediaMotion) keen = media_motion_new (100, 0.005, NULL, 0);
  g_autoptr (MediaMotion) dull = media_motion_new (1, 0.005, NULL, 0);
  memset (frame, 80, W * H);
  run (keen, frame);
  run (dull, frame);
  for (guint row = 40; row < 100; row++)
    memset (frame + row * W + 40, 100, 60);
  assert_true (run (keen, frame).motion);
  assert_false (run (dull, frame).motion);
  g_free (frame);
}

static void
test_zones (void **state)
{
  MediaZone zones[MEDIA_ZONES_MAX];
  guint n = 0;
  guint8 *frame = g_malloc (W * H);
  /* The right half excluded: a square moving there is not motion. */
  assert_true (media_zones_parse ("exclude 0.5,0 1,0 1,1 0.5,1", zones, &n, NULL));
  assert_int_equal (n, 1);
  g_autoptr (MediaMotion) fenced = media_motion_new (50, 0.005, zones, n);
  /* Only a triangle in the top left included: the same. */
  assert_true (media_zones_parse ("include 0,0 0.4,0 0,0.4;", zones, &n, NULL));
  g_autoptr (MediaMotion) corner = media_motion_new (50, 0.005, zones, n);
  g_autoptr (MediaMotion) open = media_motion_new (50, 0.005, NULL, 0);
  draw (frame, 200, 70, 24, 0, 0);
  run (fenced, frame);
  run (corner, frame);
  run (open, frame);
  for (guint i = 1; i < 8; i++) {
    draw (frame, 200 + i * 8, 70, 24, 0, i);
    assert_false (run (fenced, frame).motion);
    assert_false (run (corner, frame).motion);
    assert_true (run (open, frame).motion);
  }
  /* In the top-left corner the included zone sees it. */
  draw (frame, 10, 5, 24, 0, 0);
  run (corner, frame);
  draw (frame, 20, 5, 24, 0, 1);
  assert_true (run (corner, frame).motion);
  g_free (frame);
}

static void
test_light_change_is_not_motion (void **state)
{
  g_autoptr (MediaMotion) m = media_motion_new (50, 0.005, NULL, 0);
  guint8 *frame = g_malloc (W * H);
  memset (frame, 60, W * H);
  run (m, frame);
  memset (frame, 200, W * H);
  MediaMotionResult r = run (m, frame);
  assert_false (r.motion);
  assert_true (r.lighting);
  assert_false (run (m, frame).motion);
  g_free (frame);
}

static void
test_size_change_restarts (void **state)
{
  g_autoptr (MediaMotion) m = media_motion_new (50, 0.005, NULL, 0);
  guint8 *frame = g_malloc0 (640 * 360);
  run (m, frame);
  MediaMotionResult r;
  memset (frame, 255, 640 * 360 / 2);
  media_motion_process (m, frame, 640, 360, 640, &r); /* a new size: no comparison */
  assert_false (r.motion);
  media_motion_process (m, frame, 0, 0, 0, &r);
  assert_false (r.motion);
  g_free (frame);
}

static void
test_zone_errors (void **state)
{
  MediaZone zones[MEDIA_ZONES_MAX];
  guint n = 7;
  assert_true (media_zones_parse ("", zones, &n, NULL));
  assert_int_equal (n, 0);
  assert_true (media_zones_parse ("include 0,0 1,0 1,1; exclude 0.1,0.1 0.2,0.1 0.2,0.2", zones,
                                  &n, NULL));
  assert_int_equal (n, 2);
  assert_false (zones[0].exclude);
  assert_true (zones[1].exclude);
  assert_int_equal (zones[1].n_points, 3);
  static const struct {
    const char *text, *message;
  } bad[] = {
    { "exclude 0,0 1,0", "zone 1: needs at least three points" },
    { "include 0,0 1,0 1,1; around 0,0 1,0 1,1", "zone 2: starts with include or exclude" },
    { "include 0,0 1.5,0 1,1", "zone 1: a point is X,Y with X and Y from 0 to 1" },
    { "include 0,0 1,0 1;1", "zone 1: a point is X,Y" },
    { "include 0,0 nan,0 1,1", "zone 1: a point is X,Y" },
    { "include 0,0 1,0 1,1;;include 0,0 1,0 1,1", "zone 2: empty" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    assert_false (media_zones_parse (bad[i].text, zones, &n, &error));
    assert_non_null (strstr (error->message, bad[i].message));
  }
  /* Limits: zones, points per zone, text length. */
  g_autoptr (GString) many = g_string_new (NULL);
  for (guint i = 0; i <= MEDIA_ZONES_MAX; i++)
    g_string_append (many, "include 0,0 1,0 1,1;");
  g_autoptr (GError) error = NULL;
  assert_false (media_zones_parse (many->str, zones, &n, &error));
  assert_non_null (strstr (error->message, "at most"));
  g_string_assign (many, "include");
  for (guint i = 0; i <= MEDIA_ZONE_POINTS_MAX; i++)
    g_string_append (many, " 0.5,0.5");
  g_clear_error (&error);
  assert_false (media_zones_parse (many->str, zones, &n, &error));
  assert_non_null (strstr (error->message, "points"));
  g_autofree char *long_text = g_strnfill (MEDIA_ZONES_TEXT_MAX + 1, ' ');
  g_clear_error (&error);
  assert_false (media_zones_parse (long_text, zones, &n, &error));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_still_scene_is_quiet),
    cmocka_unit_test (test_moving_square_is_found_where_it_is),
    cmocka_unit_test (test_small_objects_and_low_sensitivity),
    cmocka_unit_test (test_zones),
    cmocka_unit_test (test_light_change_is_not_motion),
    cmocka_unit_test (test_size_change_restarts),
    cmocka_unit_test (test_zone_errors),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
