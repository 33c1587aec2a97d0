/* Board detection from a fake /proc and /sys tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hw.h"

#include <glib/gstdio.h>
#include <gst/gst.h>

static char *
make_tree (const char *const *files)
{
  char *root = g_dir_make_tmp ("edged-hw-XXXXXX", NULL);
  for (guint i = 0; files[i]; i += 2) {
    g_autofree char *path = g_build_filename (root, files[i], NULL);
    g_autofree char *dir = g_path_get_dirname (path);
    g_mkdir_with_parents (dir, 0700);
    /* Device-tree strings end in NUL: keep it, as the kernel does. */
    g_file_set_contents (path, files[i + 1], strlen (files[i + 1]) + 1, NULL);
  }
  return root;
}

static void
remove_tree (char *root)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", root);
  assert_int_equal (system (cmd), 0);
  g_free (root);
}

static void
test_raspberry_pi (void **state)
{
  static const char *const files[] = { "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0",
                                       "proc/meminfo", "MemTotal:        8245760 kB\nMemFree: 1 kB\n",
                                       NULL };
  char *root = make_tree (files);
  g_autoptr (HwBoard) b = hw_board_detect (root);
  assert_string_equal (b->model, "Raspberry Pi 5 Model B Rev 1.0");
  assert_true (b->raspberry_pi);
  assert_int_equal (b->memory_bytes, 8245760ULL * 1024);
  assert_true (b->cpus >= 1);
  remove_tree (root);
}

static void
test_x86_dmi_and_unknown (void **state)
{
  static const char *const files[] = { "sys/class/dmi/id/sys_vendor", "Intel Corporation\n",
                                       "sys/class/dmi/id/product_name", "NUC8i5BEH\n", NULL };
  char *root = make_tree (files);
  g_autoptr (HwBoard) b = hw_board_detect (root);
  assert_string_equal (b->model, "Intel Corporation NUC8i5BEH");
  assert_false (b->raspberry_pi);
  assert_int_equal (b->memory_bytes, 0);
  remove_tree (root);

  static const char *const none[] = { NULL };
  root = make_tree (none);
  g_autoptr (HwBoard) u = hw_board_detect (root);
  assert_string_equal (u->model, "unknown");
  assert_non_null (u->arch);
  remove_tree (root);
}

/* The encoder choice: a device node alone is not enough, the GStreamer
 * element must exist too (on this machine neither v4l2h264enc nor
 * vaapih264enc is installed, so x264 is chosen whatever the tree says). */
static void
test_encoder_choice (void **state)
{
  (void) state;
  gst_init (NULL, NULL);
  static const char *const none[] = { NULL };
  char *root = make_tree (none);
  assert_int_equal (hw_encoder_detect (root), HW_ENCODER_X264);
  remove_tree (root);

  static const char *const pi4[] = { "dev/video11", "", "dev/dri/renderD128", "", NULL };
  root = make_tree (pi4);
  g_autoptr (GstElementFactory) v4l2 = gst_element_factory_find ("v4l2h264enc");
  g_autoptr (GstElementFactory) vaapi = gst_element_factory_find ("vaapih264enc");
  HwEncoderKind expected = v4l2 ? HW_ENCODER_V4L2 : vaapi ? HW_ENCODER_VAAPI : HW_ENCODER_X264;
  assert_int_equal (hw_encoder_detect (root), expected);
  remove_tree (root);

  assert_string_equal (hw_encoder_name (HW_ENCODER_X264), "x264enc");
  g_autofree char *x264 = hw_encoder_pipeline (HW_ENCODER_X264, 1500, 30);
  assert_non_null (strstr (x264, "bitrate=1500"));
  assert_non_null (strstr (x264, "key-int-max=30"));
  g_autofree char *pi = hw_encoder_pipeline (HW_ENCODER_V4L2, 2000, 60);
  assert_non_null (strstr (pi, "video_bitrate=2000000"));
  assert_non_null (strstr (pi, "h264_i_frame_period=60"));
  /* Every description parses as a GStreamer pipeline fragment. */
  g_autofree char *launch = g_strdup_printf ("videotestsrc num-buffers=1 ! %s ! fakesink", x264);
  g_autoptr (GError) error = NULL;
  g_autoptr (GstElement) pipeline = gst_parse_launch (launch, &error);
  assert_non_null (pipeline);
}

static void
test_decoder_choice (void **state)
{
  (void) state;
  gst_init (NULL, NULL);
  /* No decoder device: libav's, one thread. */
  static const char *const none[] = { NULL };
  char *root = make_tree (none);
  g_autofree char *h264 = hw_decoder_pipeline (root, FALSE);
  g_autofree char *h265 = hw_decoder_pipeline (root, TRUE);
  assert_string_equal (h264, "avdec_h264 max-threads=1");
  assert_string_equal (h265, "avdec_h265 max-threads=1");
  remove_tree (root);

  /* A Raspberry Pi 4's decode node: its V4L2 decoder, where the plugin
   * offers one (it registers v4l2h264dec only for a real device). */
  static const char *const pi4[] = { "dev/video10", "", NULL };
  root = make_tree (pi4);
  g_autoptr (GstElementFactory) v4l2 = gst_element_factory_find ("v4l2h264dec");
  g_autofree char *pi = hw_decoder_pipeline (root, FALSE);
  assert_string_equal (pi, v4l2 ? "v4l2h264dec" : "avdec_h264 max-threads=1");
  remove_tree (root);

  /* Every choice parses in the detection branch's place. */
  g_autofree char *launch = g_strdup_printf ("fakesrc num-buffers=0 ! h264parse ! %s ! fakesink",
                                             h264);
  g_autoptr (GError) error = NULL;
  g_autoptr (GstElement) pipeline = gst_parse_launch (launch, &error);
  assert_non_null (pipeline);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_raspberry_pi),
    cmocka_unit_test (test_x86_dmi_and_unknown),
    cmocka_unit_test (test_encoder_choice),
    cmocka_unit_test (test_decoder_choice),
  };
  return cmocka_run_group_tests_name ("hw", tests, NULL, NULL);
}
