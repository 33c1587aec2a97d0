/* profile.c: the defaults chosen from a probe, and why.
 *
 * Boards, and what the choice makes of them:
 *   - Raspberry Pi 4: the bcm2835 codec encodes H.264 (v4l2h264enc) and
 *     decodes it (v4l2h264dec), both proved by the probe's test runs;
 *   - Raspberry Pi 5: no H.264 encoder block. Raw cameras (libcamera, USB
 *     without H.264) go through x264 on all but one core, and cameras that
 *     send H.264 are recorded as sent. H.265 decodes in hardware (rpivid);
 *   - x86 with VA-API (Intel, AMD) or NVENC: that encoder and its decoder;
 *   - anything else: x264 (or OpenH264) and libav's decoders.
 * The choice is a pure function of the probe, so the tests replay probes
 * recorded on each board (tests/unit/hw-probes/).
 */
#define G_LOG_DOMAIN "hw"

#include "hw.h"

void
hw_choice_free (HwChoice *choice)
{
  if (choice == NULL)
    return;
  g_free (choice->profile);
  g_free (choice->encoder);
  g_free (choice->decoder_h264);
  g_free (choice->decoder_h265);
  g_ptr_array_unref (choice->reasons);
  g_free (choice);
}

G_GNUC_PRINTF (2, 3) static void
reason (HwChoice *choice, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  g_ptr_array_add (choice->reasons, g_strdup_vprintf (format, args));
  va_end (args);
}

/* The first codec (in the probe's order of preference) of @codec and @role
 * that works, hardware or software as @hardware says; NULL if none. */
static const HwCodec *
first_working (const HwProbe *probe, const char *codec, gboolean encoder, gboolean hardware)
{
  for (guint i = 0; i < probe->codecs->len; i++) {
    const HwCodec *c = g_ptr_array_index (probe->codecs, i);
    if (c->works && c->encoder == encoder && c->hardware == hardware &&
        g_str_equal (c->codec, codec))
      return c;
  }
  return NULL;
}

/* Hardware codecs of @codec and @role that are installed but failed their
 * test, as "element (detail)" for the reasons; NULL when none. */
static char *
failed_hardware (const HwProbe *probe, const char *codec, gboolean encoder)
{
  g_autoptr (GString) text = NULL;
  for (guint i = 0; i < probe->codecs->len; i++) {
    const HwCodec *c = g_ptr_array_index (probe->codecs, i);
    if (!c->hardware || !c->present || c->works || c->encoder != encoder ||
        !g_str_equal (c->codec, codec))
      continue;
    if (text == NULL)
      text = g_string_new (NULL);
    else
      g_string_append (text, "; ");
    g_string_append_printf (text, "%s: %s", c->element, c->detail ? c->detail : "failed");
  }
  return text ? g_string_free (g_steal_pointer (&text), FALSE) : NULL;
}

typedef enum { BOARD_PI4, BOARD_PI5, BOARD_OTHER } BoardKind;

static BoardKind
board_kind (const HwBoard *board)
{
  if (g_str_has_prefix (board->model, "Raspberry Pi 4") ||
      g_str_has_prefix (board->model, "Raspberry Pi Compute Module 4") ||
      g_str_has_prefix (board->model, "Raspberry Pi 400"))
    return BOARD_PI4;
  if (g_str_has_prefix (board->model, "Raspberry Pi 5") ||
      g_str_has_prefix (board->model, "Raspberry Pi Compute Module 5") ||
      g_str_has_prefix (board->model, "Raspberry Pi 500"))
    return BOARD_PI5;
  return BOARD_OTHER;
}

static void
choose_encoder (HwChoice *choice, const HwProbe *probe, BoardKind kind)
{
  const HwCodec *hardware = first_working (probe, "h264", TRUE, TRUE);
  const HwCodec *software = first_working (probe, "h264", TRUE, FALSE);
  g_autofree char *failed = failed_hardware (probe, "h264", TRUE);
  const HwBoard *board = probe->board;

  if (hardware) {
    choice->encoder = g_strdup (hardware->element);
    reason (choice, "H.264 encoder: %s, the board's hardware encoder (%s)", hardware->element,
            hardware->detail ? hardware->detail : "tested");
    return;
  }
  if (kind == BOARD_PI5)
    reason (choice, "The Raspberry Pi 5 has no H.264 encoder block: raw cameras are encoded in "
                    "software, and cameras that send H.264 are recorded as sent");
  else if (kind == BOARD_PI4)
    reason (choice, "The Raspberry Pi 4's H.264 encoder (bcm2835-codec, /dev/video11) did not "
                    "work here%s%s", failed ? ": " : " (v4l2h264enc is not registered)",
            failed ? failed : "");
  else if (failed)
    reason (choice, "Hardware encoders present but not working: %s", failed);
  else
    reason (choice, "No hardware H.264 encoder found (no VA-API render node, NVENC or V4L2 "
                    "encoder with a working GStreamer element)");
  if (software == NULL) {
    choice->encoder = g_strdup ("");
    reason (choice, "No H.264 encoder works here (install gstreamer1.0-plugins-ugly for x264): "
                    "only cameras that send H.264 (RTSP, USB H.264) can be recorded");
    return;
  }
  choice->encoder = g_strdup (software->element);
  /* x264 by default takes 1.5 threads per core. On a small board that
   * starves the gateway, the streams and the functions: leave one core. */
  if (g_str_equal (software->element, "x264enc") && (board->raspberry_pi || board->cpus <= 4) &&
      board->cpus > 1) {
    choice->encoder_threads = board->cpus - 1;
    reason (choice, "H.264 encoder: x264 (ultrafast, zerolatency) on %u thread%s, leaving one of "
                    "the %u %s cores to edged's streams, gateway and functions",
            choice->encoder_threads, choice->encoder_threads == 1 ? "" : "s", board->cpus,
            board->cpu_model);
  } else {
    reason (choice, "H.264 encoder: %s, in software (%s)", software->element,
            software->detail ? software->detail : "tested");
  }
}

/* The decoder for detection frames: hardware where one works, else libav
 * on one thread (a detection branch should cost one camera's share). */
static char *
choose_decoder (HwChoice *choice, const HwProbe *probe, const char *codec)
{
  const char *label = g_str_equal (codec, "h264") ? "H.264" : "H.265";
  const HwCodec *hardware = first_working (probe, codec, FALSE, TRUE);
  const HwCodec *software = first_working (probe, codec, FALSE, FALSE);

  if (hardware) {
    reason (choice, "%s decoder: %s, in hardware (%s)", label, hardware->element,
            hardware->detail ? hardware->detail : "tested");
    return g_strdup (hardware->element);
  }
  if (software && g_str_has_prefix (software->element, "avdec_")) {
    reason (choice, "%s decoder: %s on one thread", label, software->element);
    return g_strdup_printf ("%s max-threads=1", software->element);
  }
  if (software) {
    reason (choice, "%s decoder: %s", label, software->element);
    return g_strdup (software->element);
  }
  /* Nothing proved to work (not tested, or nothing installed): libav's,
   * which the detection branch reports on if it is missing too. */
  reason (choice, "%s decoder: none proved to work here; detection tries avdec_%s "
                  "(gstreamer1.0-libav)", label, codec);
  return g_strdup_printf ("avdec_%s max-threads=1", codec);
}

HwChoice *
hw_choose (const HwProbe *probe)
{
  HwChoice *choice = g_new0 (HwChoice, 1);
  BoardKind kind = board_kind (probe->board);

  choice->reasons = g_ptr_array_new_with_free_func (g_free);
  choose_encoder (choice, probe, kind);
  choice->decoder_h264 = choose_decoder (choice, probe, "h264");
  choice->decoder_h265 = choose_decoder (choice, probe, "h265");
  choice->passthrough = TRUE;
  reason (choice, "V4L2 cameras that offer H.264 are recorded as they send it: re-encoding "
                  "would cost CPU and quality");

  if (kind == BOARD_PI4)
    choice->profile = g_strdup ("raspberry-pi-4");
  else if (kind == BOARD_PI5)
    choice->profile = g_strdup ("raspberry-pi-5");
  else if (g_str_has_prefix (choice->encoder, "nv"))
    choice->profile = g_strdup ("nvenc");
  else if (g_str_has_prefix (choice->encoder, "va"))
    choice->profile = g_str_equal (probe->board->arch, "x86_64") ? g_strdup ("x86-vaapi")
                                                                  : g_strdup ("vaapi");
  else
    choice->profile = g_strdup ("software");
  for (guint i = 0; i < probe->cameras->len; i++) {
    const HwCamera *camera = g_ptr_array_index (probe->cameras, i);
    gboolean h264 = camera->formats && g_strv_contains ((const char *const *) camera->formats,
                                                        "video/x-h264");
    reason (choice, "Camera %s (%s): %s", camera->source, camera->name,
            h264 ? "sends H.264, recorded as sent"
                 : choice->encoder[0] ? "raw video, encoded here" : "raw video, no encoder for it");
  }
  return choice;
}

void
hw_choice_to_json (const HwChoice *choice, JsonBuilder *b)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "profile");
  json_builder_add_string_value (b, choice->profile);
  json_builder_set_member_name (b, "encoder");
  json_builder_add_string_value (b, choice->encoder);
  json_builder_set_member_name (b, "encoder_threads");
  json_builder_add_int_value (b, choice->encoder_threads);
  json_builder_set_member_name (b, "decoder_h264");
  json_builder_add_string_value (b, choice->decoder_h264);
  json_builder_set_member_name (b, "decoder_h265");
  json_builder_add_string_value (b, choice->decoder_h265);
  json_builder_set_member_name (b, "passthrough");
  json_builder_add_boolean_value (b, choice->passthrough);
  json_builder_set_member_name (b, "reasons");
  json_builder_begin_array (b);
  for (guint i = 0; i < choice->reasons->len; i++)
    json_builder_add_string_value (b, g_ptr_array_index (choice->reasons, i));
  json_builder_end_array (b);
  json_builder_end_object (b);
}

char *
hw_encoder_pipeline (const char *encoder, guint threads, guint bitrate_kbps,
                     guint keyframe_frames)
{
  if (g_str_equal (encoder, "x264enc")) {
    /* zerolatency: no B-frames and no lookahead, so a frame leaves the
     * encoder as soon as it is encoded. */
    g_autofree char *thread_option = threads ? g_strdup_printf (" threads=%u", threads)
                                             : g_strdup ("");
    return g_strdup_printf ("videoconvert ! video/x-raw,format=I420 ! x264enc "
                            "tune=zerolatency speed-preset=ultrafast bitrate=%u key-int-max=%u%s",
                            bitrate_kbps, keyframe_frames, thread_option);
  }
  if (g_str_equal (encoder, "openh264enc"))
    return g_strdup_printf ("videoconvert ! video/x-raw,format=I420 ! openh264enc "
                            "complexity=low bitrate=%u gop-size=%u",
                            bitrate_kbps * 1000, keyframe_frames);
  if (g_str_equal (encoder, "v4l2h264enc"))
    /* The bcm2835 encoder takes its settings as V4L2 controls. */
    return g_strdup_printf ("videoconvert ! video/x-raw,format=I420 ! v4l2h264enc "
                            "extra-controls=\"controls,video_bitrate=%u,h264_i_frame_period=%u,"
                            "repeat_sequence_header=1\" ! video/x-h264,level=(string)4",
                            bitrate_kbps * 1000, keyframe_frames);
  if (g_str_equal (encoder, "vah264enc"))
    return g_strdup_printf ("videoconvert ! video/x-raw,format=NV12 ! vah264enc "
                            "rate-control=cbr bitrate=%u key-int-max=%u b-frames=0",
                            bitrate_kbps, keyframe_frames);
  if (g_str_equal (encoder, "vaapih264enc"))
    return g_strdup_printf ("videoconvert ! video/x-raw,format=NV12 ! vaapih264enc "
                            "rate-control=cbr bitrate=%u keyframe-period=%u max-bframes=0",
                            bitrate_kbps, keyframe_frames);
  if (g_str_equal (encoder, "nvh264enc"))
    return g_strdup_printf ("videoconvert ! video/x-raw,format=NV12 ! nvh264enc "
                            "preset=low-latency-hq rc-mode=cbr zerolatency=true bframes=0 "
                            "bitrate=%u gop-size=%u",
                            bitrate_kbps, keyframe_frames);
  return NULL;
}
