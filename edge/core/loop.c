/* loop.c: watching descriptors on the main loop without waking it
 * (edge/core/edge-core.h).
 *
 * While a source's callback runs, GLib takes the source's descriptors out
 * of the loop's poll set and puts them back after, unless the source may
 * recurse. In GLib 2.74 (Debian 12) each of those changes writes to the
 * loop's wake-up eventfd, even on the loop's own thread, so every dispatch
 * of a descriptor source cost two write(2)s and one more turn of the loop,
 * whose poll then returns at once for nothing: per request, a watched
 * connection paid that for every read. A source that may recurse is left
 * in the poll set. Recursion itself can only happen if a callback runs the
 * loop inside it, which edged's callbacks never do (the loop is run nested
 * only while shutting down, outside any dispatch).
 */
#include "edge-core.h"

void
edge_source_quiet (GSource *source)
{
  g_source_set_can_recurse (source, TRUE);
}

GSource *
edge_fd_source_new (int fd, GIOCondition condition)
{
  GSource *source = g_unix_fd_source_new (fd, condition);
  edge_source_quiet (source);
  return source;
}

guint
edge_fd_watch (int fd, GIOCondition condition, GUnixFDSourceFunc func, gpointer data,
               GDestroyNotify notify)
{
  GSource *source = edge_fd_source_new (fd, condition);
  g_source_set_callback (source, (GSourceFunc) (void (*) (void)) func, data, notify);
  guint id = g_source_attach (source, g_main_context_get_thread_default ());
  g_source_unref (source);
  return id;
}

static gboolean
deadline_dispatch (GSource *source, GSourceFunc callback, gpointer data)
{
  g_source_set_ready_time (source, -1);
  return callback (data);
}

static GSourceFuncs deadline_funcs = { .dispatch = deadline_dispatch };

GSource *
edge_deadline_source_new (gint64 ready_time)
{
  GSource *source = g_source_new (&deadline_funcs, sizeof (GSource));
  g_source_set_name (source, "edge deadline");
  g_source_set_ready_time (source, ready_time);
  return source;
}
