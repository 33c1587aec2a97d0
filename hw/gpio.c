/* gpio.c: GPIO lines through libgpiod (the v1 API of Debian 12's 1.6), a
 * replay stand-in, and debounce. */
#define G_LOG_DOMAIN "hw"

#include "gpio.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <gpiod.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define REPLAY_PREFIX "replay:"
#define REPLAY_MAX_BYTES (16 * 1024 * 1024)

typedef struct {
  gint64 offset_ns; /* from the recording's first edge */
  gboolean rising;
} ReplayEdge;

struct _HwGpioLine {
  guint offset;
  gboolean output;
  gboolean active_low;
  /* libgpiod */
  struct gpiod_chip *chip;
  struct gpiod_line *line;
  /* replay */
  gboolean replay;
  char *out_path;   /* outputs: where set values are appended */
  GArray *edges;    /* inputs: ReplayEdge */
  guint next;       /* the next edge to replay */
  int timer_fd;
  gint64 start_mono_ns;
  int level;        /* logical level (replayed input, or output as set) */
};

static gint64
clock_ns (clockid_t clock)
{
  struct timespec ts;
  clock_gettime (clock, &ts);
  return (gint64) ts.tv_sec * G_GINT64_CONSTANT (1000000000) + ts.tv_nsec;
}

static HwGpioLine *
line_new (void)
{
  HwGpioLine *line = g_new0 (HwGpioLine, 1);
  line->timer_fd = -1;
  return line;
}

void
hw_gpio_close (HwGpioLine *line)
{
  if (line == NULL)
    return;
  if (line->line)
    gpiod_line_release (line->line);
  if (line->chip)
    gpiod_chip_close (line->chip);
  if (line->timer_fd >= 0)
    close (line->timer_fd);
  if (line->edges)
    g_array_unref (line->edges);
  g_free (line->out_path);
  g_free (line);
}

guint
hw_gpio_offset (HwGpioLine *line)
{
  return line->offset;
}

/* ---- replay ---- */

/* One line of gpiomon's output: "event:  RISING EDGE offset: 17
 * timestamp: [1700000000.123456789]". */
static gboolean
parse_gpiomon_line (const char *text, guint *ret_offset, gint64 *ret_ns, gboolean *ret_rising)
{
  const char *offset = strstr (text, "offset:");
  const char *stamp = strstr (text, "timestamp:");
  char *end;
  guint64 value, seconds, nanos;

  if (strstr (text, "RISING EDGE"))
    *ret_rising = TRUE;
  else if (strstr (text, "FALLING EDGE"))
    *ret_rising = FALSE;
  else
    return FALSE;
  if (offset == NULL || stamp == NULL)
    return FALSE;
  offset += strlen ("offset:");
  while (*offset == ' ')
    offset++;
  value = g_ascii_strtoull (offset, &end, 10);
  if (end == offset || value > G_MAXUINT16)
    return FALSE;
  *ret_offset = (guint) value;
  stamp = strchr (stamp, '[');
  if (stamp == NULL)
    return FALSE;
  stamp++;
  while (*stamp == ' ')
    stamp++;
  seconds = g_ascii_strtoull (stamp, &end, 10);
  if (end == stamp || *end != '.' || seconds > G_MAXINT32)
    return FALSE;
  stamp = end + 1;
  nanos = g_ascii_strtoull (stamp, &end, 10);
  if (end - stamp != 9 || *end != ']')
    return FALSE;
  *ret_ns = (gint64) seconds * G_GINT64_CONSTANT (1000000000) + (gint64) nanos;
  return TRUE;
}

static gboolean
replay_load (HwGpioLine *line, const char *path, HwGpioEdges edges, GError **error)
{
  g_autofree char *contents = NULL;
  gsize len;
  g_auto (GStrv) lines = NULL;
  gint64 first_ns = -1;

  if (!g_file_get_contents (path, &contents, &len, error))
    return FALSE;
  if (len > REPLAY_MAX_BYTES) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: over %d MiB", path,
                 REPLAY_MAX_BYTES >> 20);
    return FALSE;
  }
  line->edges = g_array_new (FALSE, FALSE, sizeof (ReplayEdge));
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i]; i++) {
    const char *text = g_strstrip (lines[i]);
    guint offset;
    gint64 ns;
    gboolean rising;
    if (text[0] == '\0' || text[0] == '#')
      continue;
    if (!parse_gpiomon_line (text, &offset, &ns, &rising)) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s:%u: not a gpiomon event line (event: RISING EDGE offset: N "
                   "timestamp: [S.NNNNNNNNN])", path, i + 1);
      return FALSE;
    }
    if (first_ns < 0)
      first_ns = ns;
    if (ns < first_ns) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s:%u: timestamps go backwards", path, i + 1);
      return FALSE;
    }
    /* As the kernel does: only the edges the line was requested for. */
    if (offset != line->offset || (edges == HW_GPIO_EDGES_RISING && !rising) ||
        (edges == HW_GPIO_EDGES_FALLING && rising))
      continue;
    ReplayEdge edge = { ns - first_ns, rising != line->active_low };
    g_array_append_val (line->edges, edge);
  }
  /* Before its first edge, a line is at the level that edge leaves. */
  if (line->edges->len > 0)
    line->level = !g_array_index (line->edges, ReplayEdge, 0).rising;
  return TRUE;
}

static void
replay_arm (HwGpioLine *line)
{
  struct itimerspec spec = { 0 };
  if (line->next < line->edges->len) {
    gint64 due = line->start_mono_ns + g_array_index (line->edges, ReplayEdge, line->next).offset_ns;
    spec.it_value.tv_sec = due / 1000000000;
    spec.it_value.tv_nsec = due % 1000000000;
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0)
      spec.it_value.tv_nsec = 1;
  }
  timerfd_settime (line->timer_fd, TFD_TIMER_ABSTIME, &spec, NULL);
}

static gboolean
parse_offset (const char *text, guint *ret_offset)
{
  guint64 value;
  return g_ascii_string_to_unsigned (text, 10, 0, G_MAXUINT16, &value, NULL) &&
         (*ret_offset = (guint) value, TRUE);
}

static HwGpioLine *
replay_open (const char *chip, const char *name, gboolean output, HwGpioEdges edges,
             gboolean active_low, int initial, GError **error)
{
  g_autoptr (HwGpioLine) line = line_new ();
  const char *path = chip + strlen (REPLAY_PREFIX);

  line->replay = TRUE;
  line->output = output;
  line->active_low = active_low;
  if (!parse_offset (name, &line->offset)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "line \"%s\": a replay chip's lines are offsets (0 to 65535)", name);
    return NULL;
  }
  if (output) {
    line->out_path = g_strconcat (path, ".out", NULL);
    if (!hw_gpio_set (line, initial, error))
      return NULL;
    return g_steal_pointer (&line);
  }
  if (!replay_load (line, path, edges, error))
    return NULL;
  line->timer_fd = timerfd_create (CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (line->timer_fd < 0) {
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "timerfd: %s",
                 g_strerror (errno));
    return NULL;
  }
  line->start_mono_ns = clock_ns (CLOCK_MONOTONIC);
  replay_arm (line);
  return g_steal_pointer (&line);
}

static gboolean
replay_read_edge (HwGpioLine *line, HwGpioEdge *ret_edge)
{
  guint64 expirations;
  if (line->next < line->edges->len) {
    const ReplayEdge *edge = &g_array_index (line->edges, ReplayEdge, line->next);
    if (clock_ns (CLOCK_MONOTONIC) >= line->start_mono_ns + edge->offset_ns) {
      ret_edge->timestamp_ns = line->start_mono_ns + edge->offset_ns;
      ret_edge->rising = edge->rising;
      line->level = edge->rising;
      line->next++;
      return TRUE;
    }
  }
  /* Nothing due: clear the timer's expiry and wait for the next edge. */
  if (read (line->timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
    g_debug ("replay timer: %s", g_strerror (errno));
  replay_arm (line);
  return FALSE;
}

/* ---- libgpiod ---- */

static int
request_flags (gboolean active_low, HwGpioBias bias)
{
  int flags = active_low ? GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW : 0;
  switch (bias) {
  case HW_GPIO_BIAS_PULL_UP:
    return flags | GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_UP;
  case HW_GPIO_BIAS_PULL_DOWN:
    return flags | GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_DOWN;
  case HW_GPIO_BIAS_DISABLED:
    return flags | GPIOD_LINE_REQUEST_FLAG_BIAS_DISABLE;
  case HW_GPIO_BIAS_AS_IS:
  default:
    return flags;
  }
}

static HwGpioLine *
gpiod_open (const char *chip, const char *name, const struct gpiod_line_request_config *config,
            int initial, GError **error)
{
  g_autoptr (HwGpioLine) line = line_new ();
  guint offset;

  line->chip = gpiod_chip_open_lookup (chip);
  if (line->chip == NULL) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "chip \"%s\": %s", chip,
                 saved == ENOENT ? "no such GPIO chip (gpiodetect lists them)" : g_strerror (saved));
    return NULL;
  }
  line->line = parse_offset (name, &offset) ? gpiod_chip_get_line (line->chip, offset)
                                            : gpiod_chip_find_line (line->chip, name);
  if (line->line == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "chip \"%s\" has no line \"%s\"", chip,
                 name);
    return NULL;
  }
  line->offset = gpiod_line_offset (line->line);
  if (gpiod_line_request (line->line, config, initial) < 0) {
    int saved = errno;
    const char *holder = gpiod_line_consumer (line->line);
    gpiod_line_release (line->line);
    line->line = NULL;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "line %s of %s: %s%s%s", name,
                 chip, g_strerror (saved), holder ? "; in use by " : "", holder ? holder : "");
    return NULL;
  }
  return g_steal_pointer (&line);
}

HwGpioLine *
hw_gpio_open_input (const char *chip, const char *name, HwGpioEdges edges, gboolean active_low,
                    HwGpioBias bias, const char *consumer, GError **error)
{
  if (g_str_has_prefix (chip, REPLAY_PREFIX))
    return replay_open (chip, name, FALSE, edges, active_low, 0, error);
  struct gpiod_line_request_config config = {
    .consumer = consumer,
    .request_type = edges == HW_GPIO_EDGES_RISING    ? GPIOD_LINE_REQUEST_EVENT_RISING_EDGE
                    : edges == HW_GPIO_EDGES_FALLING ? GPIOD_LINE_REQUEST_EVENT_FALLING_EDGE
                                                     : GPIOD_LINE_REQUEST_EVENT_BOTH_EDGES,
    .flags = request_flags (active_low, bias),
  };
  HwGpioLine *line = gpiod_open (chip, name, &config, 0, error);
  if (line)
    line->active_low = active_low;
  return line;
}

HwGpioLine *
hw_gpio_open_output (const char *chip, const char *name, gboolean active_low, int initial,
                     const char *consumer, GError **error)
{
  if (g_str_has_prefix (chip, REPLAY_PREFIX))
    return replay_open (chip, name, TRUE, HW_GPIO_EDGES_BOTH, active_low, initial, error);
  struct gpiod_line_request_config config = {
    .consumer = consumer,
    .request_type = GPIOD_LINE_REQUEST_DIRECTION_OUTPUT,
    .flags = request_flags (active_low, HW_GPIO_BIAS_AS_IS),
  };
  HwGpioLine *line = gpiod_open (chip, name, &config, initial != 0, error);
  if (line) {
    line->output = TRUE;
    line->active_low = active_low;
    line->level = initial != 0;
  }
  return line;
}

int
hw_gpio_fd (HwGpioLine *line)
{
  if (line->replay)
    return line->timer_fd;
  return gpiod_line_event_get_fd (line->line);
}

/* Kernels since 5.7 stamp events with CLOCK_MONOTONIC, older ones with
 * CLOCK_REALTIME: tell them apart by distance from the wall clock. */
static gint64
event_monotonic_ns (const struct timespec *ts)
{
  gint64 ns = (gint64) ts->tv_sec * G_GINT64_CONSTANT (1000000000) + ts->tv_nsec;
  gint64 real = clock_ns (CLOCK_REALTIME);
  if (ABS (real - ns) >= G_GINT64_CONSTANT (86400000000000))
    return ns;
  return ns - (real - clock_ns (CLOCK_MONOTONIC));
}

gboolean
hw_gpio_read_edge (HwGpioLine *line, HwGpioEdge *ret_edge)
{
  const struct timespec no_wait = { 0, 0 };
  struct gpiod_line_event event;

  if (line->replay)
    return line->output ? FALSE : replay_read_edge (line, ret_edge);
  if (gpiod_line_event_wait (line->line, &no_wait) != 1 ||
      gpiod_line_event_read (line->line, &event) < 0)
    return FALSE;
  ret_edge->timestamp_ns = event_monotonic_ns (&event.ts);
  ret_edge->rising = event.event_type == GPIOD_LINE_EVENT_RISING_EDGE;
  line->level = ret_edge->rising;
  return TRUE;
}

int
hw_gpio_get (HwGpioLine *line, GError **error)
{
  if (line->replay)
    return line->level;
  int value = gpiod_line_get_value (line->line);
  if (value < 0)
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "line %u: %s", line->offset,
                 g_strerror (errno));
  return value;
}

gboolean
hw_gpio_set (HwGpioLine *line, int value, GError **error)
{
  value = value != 0;
  if (!line->output) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "line %u is an input",
                 line->offset);
    return FALSE;
  }
  if (line->replay) {
    /* What the line is driven to: its physical level. */
    g_autofree char *entry = g_strdup_printf ("%" G_GINT64_FORMAT " %u %d\n",
                                              clock_ns (CLOCK_REALTIME), line->offset,
                                              value != line->active_low);
    int fd = open (line->out_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    gboolean ok = fd >= 0 && write (fd, entry, strlen (entry)) == (ssize_t) strlen (entry);
    int saved = errno;
    if (fd >= 0)
      close (fd);
    if (!ok) {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "%s: %s", line->out_path,
                   g_strerror (saved));
      return FALSE;
    }
  } else if (gpiod_line_set_value (line->line, value) < 0) {
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "line %u: %s", line->offset,
                 g_strerror (errno));
    return FALSE;
  }
  line->level = value;
  return TRUE;
}

/* ---- debounce ---- */

void
hw_debounce_init (HwDebounce *d, HwGpioEdges edges, gint64 debounce_ns, int level)
{
  *d = (HwDebounce) { .debounce_ns = debounce_ns, .edges = edges, .stable = level != 0,
                      .level = level != 0, .last_event_ns = -1 };
}

gboolean
hw_debounce_poll (HwDebounce *d, gint64 now_ns, int *ret_level, gint64 *ret_ns)
{
  if (!d->active || now_ns - d->last_ns < d->debounce_ns)
    return FALSE;
  d->active = FALSE;
  if (d->level == d->stable)
    return FALSE; /* a glitch: the line came back before it settled */
  d->stable = d->level;
  *ret_level = d->level;
  *ret_ns = d->first_ns;
  return TRUE;
}

gboolean
hw_debounce_edge (HwDebounce *d, const HwGpioEdge *edge, int *ret_level, gint64 *ret_ns)
{
  if (d->edges != HW_GPIO_EDGES_BOTH) {
    /* One kind of edge (a PIR's rising pulses): each is an event, and
     * edges closer than the debounce time to the last one are chatter. */
    gboolean report = d->last_event_ns < 0 || edge->timestamp_ns - d->last_event_ns >= d->debounce_ns;
    d->last_event_ns = edge->timestamp_ns;
    d->level = d->stable = edge->rising;
    if (report) {
      *ret_level = edge->rising;
      *ret_ns = edge->timestamp_ns;
    }
    return report;
  }
  gboolean settled = hw_debounce_poll (d, edge->timestamp_ns, ret_level, ret_ns);
  if (!d->active) {
    d->active = TRUE;
    d->first_ns = edge->timestamp_ns;
  }
  d->last_ns = edge->timestamp_ns;
  d->level = edge->rising;
  return settled;
}

gint64
hw_debounce_deadline (const HwDebounce *d)
{
  return d->active ? d->last_ns + d->debounce_ns : -1;
}
