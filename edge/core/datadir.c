/* datadir.c: the data directory and its lock.
 *
 * PATH/edged.lock is held with an exclusive flock(2) for the daemon's life
 * and holds its pid, so that a second daemon can say who has the directory.
 * The kernel drops the lock when the holder dies, kill -9 included, so a
 * stale lock file never blocks a restart.
 */
#define G_LOG_DOMAIN "core"

#include "edge-core.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

G_DEFINE_QUARK (edge-data-dir-error-quark, edge_data_dir_error)

struct _EdgeDataDir {
  char *path;
  int lock_fd;
};

EdgeDataDir *
edge_data_dir_open (const char *path, GError **error)
{
  g_autoptr (EdgeDataDir) dir = g_new0 (EdgeDataDir, 1);
  g_autofree char *lock_path = NULL;
  char pid[32];
  int len;

  dir->lock_fd = -1;
  dir->path = g_canonicalize_filename (path, NULL);
  if (g_mkdir_with_parents (dir->path, 0700) != 0) {
    g_set_error (error, EDGE_DATA_DIR_ERROR, EDGE_DATA_DIR_ERROR_IO,
                 "cannot create data directory %s: %s", dir->path, g_strerror (errno));
    return NULL;
  }
  lock_path = g_build_filename (dir->path, "edged.lock", NULL);
  dir->lock_fd = open (lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (dir->lock_fd < 0) {
    g_set_error (error, EDGE_DATA_DIR_ERROR, EDGE_DATA_DIR_ERROR_IO, "cannot open %s: %s",
                 lock_path, g_strerror (errno));
    return NULL;
  }
  if (flock (dir->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int saved = errno;
    char holder[32] = "";
    ssize_t n = pread (dir->lock_fd, holder, sizeof holder - 1, 0);
    if (n > 0)
      holder[n] = '\0';
    g_strstrip (holder);
    if (saved == EWOULDBLOCK)
      g_set_error (error, EDGE_DATA_DIR_ERROR, EDGE_DATA_DIR_ERROR_IN_USE,
                   "data directory %s is in use by another edged%s%s%s", dir->path,
                   holder[0] ? " (pid " : "", holder, holder[0] ? ")" : "");
    else
      g_set_error (error, EDGE_DATA_DIR_ERROR, EDGE_DATA_DIR_ERROR_IO, "cannot lock %s: %s",
                   lock_path, g_strerror (saved));
    return NULL;
  }
  len = g_snprintf (pid, sizeof pid, "%ld\n", (long) getpid ());
  if (ftruncate (dir->lock_fd, 0) != 0 || pwrite (dir->lock_fd, pid, len, 0) != len) {
    g_set_error (error, EDGE_DATA_DIR_ERROR, EDGE_DATA_DIR_ERROR_IO, "cannot write %s: %s",
                 lock_path, g_strerror (errno));
    return NULL;
  }
  return g_steal_pointer (&dir);
}

const char *
edge_data_dir_path (EdgeDataDir *dir)
{
  return dir->path;
}

void
edge_data_dir_close (EdgeDataDir *dir)
{
  if (dir == NULL)
    return;
  if (dir->lock_fd >= 0) {
    /* Empty the pid before letting go, so a reader never names a dead process. */
    if (ftruncate (dir->lock_fd, 0) != 0) {
      /* nothing to do: the lock still goes with the descriptor */
    }
    close (dir->lock_fd);
  }
  g_free (dir->path);
  g_free (dir);
}
