/* gpio.h: GPIO lines (gpio.c) and the service that turns them into
 * records and REST routes (service.c).
 *
 * A line is requested from a chip through libgpiod (the kernel's GPIO
 * character device): as an input watched for edges, or as an output.
 * A chip named "replay:FILE" is a stand-in for boards and kernels without
 * GPIO (and for tests): its input lines replay the edges recorded in FILE,
 * in gpiomon's output format, at their recorded pace from the moment the
 * line is requested; its outputs append "TIME_NS OFFSET VALUE" lines to
 * FILE.out.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  HW_GPIO_EDGES_BOTH,
  HW_GPIO_EDGES_RISING,
  HW_GPIO_EDGES_FALLING,
} HwGpioEdges;

typedef enum {
  HW_GPIO_BIAS_AS_IS,
  HW_GPIO_BIAS_PULL_UP,
  HW_GPIO_BIAS_PULL_DOWN,
  HW_GPIO_BIAS_DISABLED,
} HwGpioBias;

typedef struct {
  gint64 timestamp_ns; /* CLOCK_MONOTONIC, from the kernel's event timestamp */
  gboolean rising;     /* logical level after the edge (active_low applied) */
} HwGpioEdge;

typedef struct _HwGpioLine HwGpioLine;

/* @chip: "gpiochip0", "/dev/gpiochip0", a chip label ("pinctrl-bcm2711"),
 * a number, or "replay:FILE". @line: an offset ("17") or a line name
 * ("GPIO17"). @consumer is shown by gpioinfo. (transfer full) */
HwGpioLine *hw_gpio_open_input (const char *chip, const char *line, HwGpioEdges edges,
                                gboolean active_low, HwGpioBias bias, const char *consumer,
                                GError **error);
HwGpioLine *hw_gpio_open_output (const char *chip, const char *line, gboolean active_low,
                                 int initial, const char *consumer, GError **error);
void hw_gpio_close (HwGpioLine *line);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HwGpioLine, hw_gpio_close)

/* The line's offset on its chip. */
guint hw_gpio_offset (HwGpioLine *line);
/* An input's file descriptor: readable when edges are waiting. */
int hw_gpio_fd (HwGpioLine *line);
/* Takes one waiting edge; FALSE when none is. */
gboolean hw_gpio_read_edge (HwGpioLine *line, HwGpioEdge *ret_edge);
/* The logical level (active_low applied); -1 with @error on failure. */
int hw_gpio_get (HwGpioLine *line, GError **error);
gboolean hw_gpio_set (HwGpioLine *line, int value, GError **error);

/* Debounce: a change is reported once the line has held its new level for
 * the debounce time, stamped with the first edge of the change (when it
 * happened, not when it settled). Pure; times in nanoseconds. */
typedef struct {
  gint64 debounce_ns;
  HwGpioEdges edges;
  int stable;           /* the level last reported (or read at start) */
  gboolean active;      /* edges seen since */
  int level;            /* the level after the last edge */
  gint64 first_ns, last_ns;
  gint64 last_event_ns; /* single-edge mode: the last edge seen */
} HwDebounce;

void hw_debounce_init (HwDebounce *d, HwGpioEdges edges, gint64 debounce_ns, int level);
/* Feeds one edge. When it shows that an earlier change had settled before
 * it came, that change is returned (TRUE, @ret_level, @ret_ns). */
gboolean hw_debounce_edge (HwDebounce *d, const HwGpioEdge *edge, int *ret_level,
                           gint64 *ret_ns);
/* A change that has settled by @now_ns: TRUE with its level and time. */
gboolean hw_debounce_poll (HwDebounce *d, gint64 now_ns, int *ret_level, gint64 *ret_ns);
/* When hw_debounce_poll may next report: a time in ns, or -1 for never. */
gint64 hw_debounce_deadline (const HwDebounce *d);

G_END_DECLS
