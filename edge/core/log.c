/* log.c: the process-wide log writer.
 *
 * One line per message on stderr. Under systemd (JOURNAL_STREAM set and
 * naming our stderr) each line starts with a syslog priority ("<4>") that
 * journald turns into the entry's priority, and the timestamp is left to the
 * journal; elsewhere a UTC timestamp leads. The domain (one per module) comes
 * before the message: "WARN gateway: cannot listen ...".
 */
#include "edge-core.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static gint min_level = G_LOG_LEVEL_INFO; /* most verbose level written */
static gboolean to_journal;

static gboolean
stderr_is_journal (void)
{
  const char *stream = g_getenv ("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;

  if (stream == NULL || sscanf (stream, "%llu:%llu", &dev, &ino) != 2)
    return FALSE;
  if (fstat (STDERR_FILENO, &st) != 0)
    return FALSE;
  return st.st_dev == dev && st.st_ino == ino;
}

gboolean
edge_log_set_level (const char *level)
{
  static const struct {
    const char *name;
    GLogLevelFlags level;
  } levels[] = {
    { "error", G_LOG_LEVEL_CRITICAL },
    { "warning", G_LOG_LEVEL_WARNING },
    { "info", G_LOG_LEVEL_INFO },
    { "debug", G_LOG_LEVEL_DEBUG },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (levels); i++) {
    if (g_str_equal (level, levels[i].name)) {
      g_atomic_int_set (&min_level, levels[i].level);
      return TRUE;
    }
  }
  return FALSE;
}

gboolean
edge_log_enabled (GLogLevelFlags level)
{
  /* Levels are bit flags ordered from ERROR (most severe) to DEBUG. */
  return (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) ||
         (level & G_LOG_LEVEL_MASK) <= (GLogLevelFlags) g_atomic_int_get (&min_level);
}

static const char *
level_name (GLogLevelFlags level, int *ret_priority)
{
  if (level & G_LOG_LEVEL_ERROR) {
    *ret_priority = 2;
    return "FATAL";
  }
  if (level & G_LOG_LEVEL_CRITICAL) {
    *ret_priority = 3;
    return "ERROR";
  }
  if (level & G_LOG_LEVEL_WARNING) {
    *ret_priority = 4;
    return "WARN";
  }
  if (level & G_LOG_LEVEL_MESSAGE) {
    *ret_priority = 5;
    return "NOTICE";
  }
  if (level & G_LOG_LEVEL_INFO) {
    *ret_priority = 6;
    return "INFO";
  }
  *ret_priority = 7;
  return "DEBUG";
}

static GLogWriterOutput
edge_log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  const char *domain = NULL, *message = NULL;
  int priority;
  const char *name;
  GString *line;

  if (!edge_log_enabled (level))
    return G_LOG_WRITER_HANDLED;

  for (gsize i = 0; i < n_fields; i++) {
    if (g_str_equal (fields[i].key, "GLIB_DOMAIN"))
      domain = fields[i].value;
    else if (g_str_equal (fields[i].key, "MESSAGE"))
      message = fields[i].value;
  }
  name = level_name (level, &priority);
  line = g_string_sized_new (128);
  if (to_journal) {
    g_string_append_printf (line, "<%d>", priority);
  } else {
    g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
    g_autofree char *stamp = g_date_time_format (now, "%Y-%m-%dT%H:%M:%S");
    g_string_append_printf (line, "%s.%03dZ ", stamp, g_date_time_get_microsecond (now) / 1000);
  }
  g_string_append_printf (line, "%-5s %s: %s\n", name, domain ? domain : "edged",
                          message ? message : "");
  fwrite (line->str, 1, line->len, stderr);
  fflush (stderr);
  g_string_free (line, TRUE);
  return G_LOG_WRITER_HANDLED;
}

void
edge_log_init (void)
{
  to_journal = stderr_is_journal ();
  g_log_set_writer_func (edge_log_writer, NULL, NULL);
}
