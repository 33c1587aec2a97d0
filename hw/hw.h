/* hw.h: what board edged runs on and which encoder it has.
 *
 * Board detection and the H.264 encoder choice; camera discovery and GPIO
 * come with their issues. Depends on edge/core and GStreamer's registry
 * only. Readers of /proc, /sys and /dev: no logging, no side effects.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char *model;         /* "Raspberry Pi 5 Model B Rev 1.0", or the DMI product, or "unknown" */
  char *arch;          /* "x86_64", "aarch64", ... (uname -m) */
  char *kernel;        /* uname -r */
  guint cpus;          /* online processors */
  guint64 memory_bytes; /* MemTotal */
  gboolean raspberry_pi;
} HwBoard;

/* Reads the board description from @root ("/" normally; tests point it at a
 * fake tree holding proc/device-tree/model, sys/class/dmi/id/product_name,
 * proc/meminfo). Never fails: unknown fields say "unknown" or 0.
 * (transfer full) */
HwBoard *hw_board_detect (const char *root);
void hw_board_free (HwBoard *board);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HwBoard, hw_board_free)

/* H.264 encoders for raw camera sources (hw/encoder.c). */
typedef enum {
  HW_ENCODER_X264,
  HW_ENCODER_V4L2,  /* V4L2 memory-to-memory (Raspberry Pi 4) */
  HW_ENCODER_VAAPI, /* VA-API (Intel, AMD) */
} HwEncoderKind;

/* The encoder raw sources should use on the machine whose device files are
 * under @root ("/"); needs gst_init. */
HwEncoderKind hw_encoder_detect (const char *root);
/* The GStreamer element's name. (transfer none) */
const char *hw_encoder_name (HwEncoderKind kind);
/* A gst-launch fragment encoding raw video at @bitrate_kbps with a keyframe
 * every @keyframe_frames frames. (transfer full) */
char *hw_encoder_pipeline (HwEncoderKind kind, guint bitrate_kbps, guint keyframe_frames);

/* A gst-launch fragment decoding H.264 (or H.265) access units for the
 * detection branch: the board's decoder where @root's device files show
 * one (V4L2 on a Raspberry Pi, VA-API), libav's otherwise. Needs gst_init.
 * (transfer full) */
char *hw_decoder_pipeline (const char *root, gboolean h265);

G_END_DECLS
