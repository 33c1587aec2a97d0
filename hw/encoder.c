/* encoder.c: which H.264 encoder a raw camera source goes through.
 *
 * A first version of the choice: the V4L2 memory-to-memory encoder where the
 * board has one (Raspberry Pi 4: /dev/video11, bcm2835-codec), VA-API where a
 * render node and the GStreamer VA-API plugin exist, x264 otherwise. The Pi 5
 * has no H.264 encoder block, so it lands on x264 like an x86 box without
 * VA-API.
 */
#define G_LOG_DOMAIN "hw"

#include "hw.h"

#include <gst/gst.h>

static gboolean
element_exists (const char *name)
{
  g_autoptr (GstElementFactory) factory = gst_element_factory_find (name);
  return factory != NULL;
}

static gboolean
path_exists (const char *root, const char *path)
{
  g_autofree char *full = g_build_filename (root, path, NULL);
  return g_file_test (full, G_FILE_TEST_EXISTS);
}

HwEncoderKind
hw_encoder_detect (const char *root)
{
  if (path_exists (root, "dev/video11") && element_exists ("v4l2h264enc"))
    return HW_ENCODER_V4L2;
  if (path_exists (root, "dev/dri/renderD128") && element_exists ("vaapih264enc"))
    return HW_ENCODER_VAAPI;
  return HW_ENCODER_X264;
}

const char *
hw_encoder_name (HwEncoderKind kind)
{
  switch (kind) {
  case HW_ENCODER_V4L2:
    return "v4l2h264enc";
  case HW_ENCODER_VAAPI:
    return "vaapih264enc";
  case HW_ENCODER_X264:
  default:
    return "x264enc";
  }
}

char *
hw_encoder_pipeline (HwEncoderKind kind, guint bitrate_kbps, guint keyframe_frames)
{
  switch (kind) {
  case HW_ENCODER_V4L2:
    /* The bcm2835 encoder takes its settings as V4L2 controls. */
    return g_strdup_printf ("v4l2h264enc extra-controls=\"controls,video_bitrate=%u,"
                            "h264_i_frame_period=%u,repeat_sequence_header=1\" ! "
                            "video/x-h264,level=(string)4",
                            bitrate_kbps * 1000, keyframe_frames);
  case HW_ENCODER_VAAPI:
    return g_strdup_printf ("vaapih264enc rate-control=cbr bitrate=%u keyframe-period=%u "
                            "max-bframes=0",
                            bitrate_kbps, keyframe_frames);
  case HW_ENCODER_X264:
  default:
    /* zerolatency: no B-frames and no lookahead, so a frame leaves the
     * encoder as soon as it is encoded. */
    return g_strdup_printf ("x264enc tune=zerolatency speed-preset=ultrafast bitrate=%u "
                            "key-int-max=%u",
                            bitrate_kbps, keyframe_frames);
  }
}

/* ---- decoders, for the detection branch ---- */

char *
hw_decoder_pipeline (const char *root, gboolean h265)
{
  /* The Raspberry Pi 4's bcm2835 codec decodes H.264 at /dev/video10; the
   * Pi 5 decodes H.265 through the stateless rpivid driver. */
  if (!h265 && path_exists (root, "dev/video10") && element_exists ("v4l2h264dec"))
    return g_strdup ("v4l2h264dec");
  if (h265 && path_exists (root, "dev/video19") && element_exists ("v4l2slh265dec"))
    return g_strdup ("v4l2slh265dec");
  if (path_exists (root, "dev/dri/renderD128") &&
      element_exists (h265 ? "vaapih265dec" : "vaapih264dec"))
    return g_strdup (h265 ? "vaapih265dec" : "vaapih264dec");
  /* One thread: a detection branch should cost one camera's share, not
   * every core for a moment. */
  return g_strdup (h265 ? "avdec_h265 max-threads=1" : "avdec_h264 max-threads=1");
}
