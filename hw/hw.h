/* hw.h: what board edged runs on.
 *
 * Board detection today; encoder and camera discovery and GPIO come with
 * their issues. Depends on edge/core only. Pure readers of /proc and /sys:
 * no logging, no side effects.
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

G_END_DECLS
