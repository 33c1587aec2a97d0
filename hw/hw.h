/* hw.h: the board edged runs on, what its cameras and codecs can do, the
 * defaults chosen from that, and GPIO lines.
 *
 * Three layers, each usable alone:
 *   - HwBoard: board, CPU and memory, read from /proc, /sys and the device
 *     tree (board.c);
 *   - HwProbe: cameras found (GStreamer's device monitor: V4L2, libcamera)
 *     and the encoders and decoders that work, each proved by a short test
 *     encode or decode (probe.c). A probe is written to and read from JSON,
 *     so that one recorded on a board can be replayed anywhere;
 *   - HwChoice: the profile, encoder, decoders and their settings chosen
 *     from a probe, with the reasons (profile.c). A pure function of the
 *     probe, tested against recorded probes of each supported board.
 * GPIO (gpio.c, gpio-service.c) is separate: lines through libgpiod.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct {
  char *model;          /* "Raspberry Pi 5 Model B Rev 1.0", or the DMI product, or "unknown" */
  char *cpu_model;      /* "Intel(R) Core(TM) i5-8259U ...", "Cortex-A76", or "unknown" */
  char *arch;           /* "x86_64", "aarch64", ... (uname -m) */
  char *kernel;         /* uname -r */
  guint cpus;           /* online processors */
  guint64 memory_bytes; /* MemTotal */
  gboolean raspberry_pi;
} HwBoard;

/* Reads the board description from @root ("/" normally; tests point it at a
 * fake tree holding proc/device-tree/model, sys/class/dmi/id/product_name,
 * proc/meminfo, proc/cpuinfo). Never fails: unknown fields say "unknown" or
 * 0. (transfer full) */
HwBoard *hw_board_detect (const char *root);
void hw_board_free (HwBoard *board);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HwBoard, hw_board_free)

/* ---- probe ---- */

/* One encoder or decoder element and what a test of it showed. */
typedef struct {
  char *element;    /* "v4l2h264enc" */
  char *codec;      /* "h264" or "h265" */
  gboolean encoder; /* FALSE: a decoder */
  gboolean hardware;
  gboolean present; /* the element is installed */
  gboolean works;   /* a test encode or decode produced frames */
  double test_ms;   /* how long that test took; 0 when not run */
  char *detail;     /* what the test did or why it failed */
} HwCodec;

/* One camera GStreamer's device monitor found. */
typedef struct {
  char *name;     /* "HD Pro Webcam C920", "imx708" */
  char *api;      /* "v4l2" or "libcamera" */
  char *source;   /* the camera source edged takes: v4l2:///dev/video0, libcamera://ID */
  char **formats; /* media types offered: "video/x-raw", "image/jpeg", "video/x-h264" */
} HwCamera;

typedef struct {
  HwBoard *board;
  GPtrArray *cameras;  /* HwCamera * */
  GPtrArray *codecs;   /* HwCodec *, encoders first, in order of preference */
  char **device_files; /* codec device files present: /dev/video11, /dev/dri/renderD128 ... */
} HwProbe;

typedef enum {
  HW_PROBE_CAMERAS = 1 << 0,     /* ask GStreamer's device monitor */
  HW_PROBE_TEST_CODECS = 1 << 1, /* run a short encode or decode through each codec present */
} HwProbeFlags;

/* Probes the machine whose /proc, /sys and /dev are under @root. Needs
 * gst_init. Takes about a second with HW_PROBE_TEST_CODECS (each test
 * is bounded by a few seconds). (transfer full) */
HwProbe *hw_probe_run (const char *root, HwProbeFlags flags);
void hw_probe_free (HwProbe *probe);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HwProbe, hw_probe_free)

/* A probe as JSON (what `edged hw probe --json` prints) and back; parsing
 * refuses a document that is not a probe. */
void hw_probe_to_json (const HwProbe *probe, JsonBuilder *b);
HwProbe *hw_probe_from_json (JsonNode *node, GError **error);

/* The codec entry for @element, or NULL. (transfer none) */
const HwCodec *hw_probe_codec (const HwProbe *probe, const char *element);

/* The media types a V4L2 capture device offers ("video/x-raw",
 * "video/x-h264", ...), asked of the device itself; NULL when it cannot
 * be opened. Needs gst_init. (transfer full) */
char **hw_v4l2_formats (const char *device);

/* ---- choice ---- */

typedef struct {
  char *profile;       /* raspberry-pi-4, raspberry-pi-5, x86-vaapi, nvenc, software */
  char *encoder;       /* H.264 encoder element for raw sources; "" when none works */
  guint encoder_threads; /* x264's threads; 0: the encoder's own choice */
  char *decoder_h264;  /* decoder element (with settings) for the detection branch */
  char *decoder_h265;
  gboolean passthrough; /* V4L2 cameras that offer H.264 are recorded without re-encoding */
  GPtrArray *reasons;  /* char *: each decision and why, in words */
} HwChoice;

/* The defaults for the machine @probe describes. Pure. (transfer full) */
HwChoice *hw_choose (const HwProbe *probe);
void hw_choice_free (HwChoice *choice);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HwChoice, hw_choice_free)
void hw_choice_to_json (const HwChoice *choice, JsonBuilder *b);

/* This machine's probe and choice, made once, on first use, with codec
 * tests (and cameras); later calls return the same. Thread-safe; needs
 * gst_init. (transfer none) */
const HwProbe *hw_probe_default (void);
const HwChoice *hw_choice_default (void);

/* A gst-launch fragment encoding raw I420 video to H.264 with @encoder (an
 * element of hw_choose's) at @bitrate_kbps, a keyframe every
 * @keyframe_frames frames, @threads threads (x264; 0: its own). NULL for
 * an element edged does not know. (transfer full) */
char *hw_encoder_pipeline (const char *encoder, guint threads, guint bitrate_kbps,
                           guint keyframe_frames);

/* ---- GPIO: see gpio.h ---- */

G_END_DECLS
