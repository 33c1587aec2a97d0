/* cgroup.c: a control group per execution environment, where the machine
 * lets edged make them (functions/functions-private.h).
 *
 * Each environment gets its own group with the function's memory size as
 * its memory limit (cgroup v2 memory.max, v1 memory.limit_in_bytes) and
 * max_processes as its process and thread limit (pids.max), so that a fork
 * bomb or a leak in one handler stays inside its environment. The group also
 * tells the peak memory of the whole environment (the bootstrap and all it
 * started) for REPORT, and whether the kernel killed something in it for
 * memory (then the invocation fails with Runtime.OutOfMemory).
 *
 * Where: cgroup v2 when /sys/fs/cgroup is the unified hierarchy and edged's
 * own group is delegated to it (systemd's Delegate=yes): edged moves itself
 * into a leaf "daemon" group first, as the no-internal-process rule wants,
 * and turns the memory and pids controllers on for its children. Otherwise
 * the v1 memory and pids hierarchies, if mounted and writable (edged as
 * root). Otherwise none: the memory limit is RLIMIT_DATA alone and there is
 * no process limit; edged says so at start.
 *
 * The child joins its groups itself, between fork and exec (writing "0" to
 * cgroup.procs, which moves the writer), so nothing it starts escapes them.
 */
#define G_LOG_DOMAIN "functions"

#include "functions-private.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#define V2_ROOT "/sys/fs/cgroup"
#define V1_MEMORY "/sys/fs/cgroup/memory"
#define V1_PIDS "/sys/fs/cgroup/pids"

struct _FunctionsCgroups {
  gboolean v2;
  char *memory_base; /* the directory environments' groups go under; NULL: no controller */
  char *pids_base;
};

struct _FunctionsCgroup {
  gboolean v2;
  int peak_fd; /* the peak memory file, kept open: read at every invocation's end */
  char *memory_dir;
  char *pids_dir;
  /* cgroup.procs paths the child writes itself into (NUL-terminated, fixed
   * before fork: the child must not allocate). */
  char procs[2][4096];
};

static gboolean
write_file (const char *path, const char *text)
{
  return g_file_set_contents_full (path, text, -1, G_FILE_SET_CONTENTS_NONE, 0644, NULL);
}

/* edged's own group in @controller's v1 hierarchy, or v2's ("" for v2). */
static char *
own_group (const char *controller)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents ("/proc/self/cgroup", &text, NULL, NULL))
    return NULL;
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i]; i++) {
    g_auto (GStrv) parts = g_strsplit (lines[i], ":", 3);
    if (g_strv_length (parts) != 3)
      continue;
    if (controller[0] == '\0' ? g_str_equal (parts[0], "0") && parts[1][0] == '\0'
                              : strstr (parts[1], controller) != NULL)
      return g_strdup (parts[2]);
  }
  return NULL;
}

/* Removes @dir's child groups, then @dir (all must be empty of processes);
 * a group still emptying is waited for a little. */
static void
remove_groups (const char *dir, gboolean with_dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d))) {
    g_autofree char *child = g_build_filename (dir, name, NULL);
    if (g_str_equal (name, "daemon") || !g_file_test (child, G_FILE_TEST_IS_DIR))
      continue; /* v2: edged's own leaf */
    for (int tries = 0; g_rmdir (child) != 0 && errno == EBUSY && tries < 50; tries++)
      g_usleep (10 * 1000); /* processes killed a moment ago, still exiting */
  }
  if (with_dir)
    g_rmdir (dir);
}

/* Groups left by an edged that was killed: "edged-PID" with no such process. */
static void
remove_stale (const char *own)
{
  g_autoptr (GDir) d = g_dir_open (own, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d))) {
    guint64 pid;
    if (!g_str_has_prefix (name, "edged-") ||
        !g_ascii_string_to_unsigned (name + 6, 10, 1, G_MAXINT, &pid, NULL))
      continue;
    g_autofree char *proc = g_strdup_printf ("/proc/%" G_GUINT64_FORMAT, pid);
    if (g_file_test (proc, G_FILE_TEST_EXISTS))
      continue;
    g_autofree char *dir = g_build_filename (own, name, NULL);
    remove_groups (dir, TRUE);
  }
}

/* A v1 directory edged may make groups in, under its own group. */
static char *
v1_base (const char *mount, const char *controller)
{
  g_autofree char *group = own_group (controller);
  if (group == NULL)
    return NULL;
  g_autofree char *own = g_build_filename (mount, group, NULL);
  remove_stale (own);
  char *base = g_strdup_printf ("%s/edged-%d", own, getpid ());
  if (g_mkdir (base, 0755) != 0 && errno != EEXIST) {
    g_free (base);
    return NULL;
  }
  return base;
}

static gboolean
v2_setup (FunctionsCgroups *cg)
{
  g_autofree char *controllers = NULL;
  if (!g_file_get_contents (V2_ROOT "/cgroup.controllers", &controllers, NULL, NULL))
    return FALSE; /* not the unified hierarchy at /sys/fs/cgroup */
  g_autofree char *group = own_group ("");
  if (group == NULL)
    return FALSE;
  g_autofree char *own = g_build_filename (V2_ROOT, group, NULL);
  g_autofree char *own_controllers_path = g_build_filename (own, "cgroup.controllers", NULL);
  g_autofree char *own_controllers = NULL;
  if (!g_file_get_contents (own_controllers_path, &own_controllers, NULL, NULL) ||
      !strstr (own_controllers, "memory") || !strstr (own_controllers, "pids"))
    return FALSE;
  /* edged into a leaf of its own, then the controllers on for the rest. */
  g_autofree char *daemon = g_build_filename (own, "daemon", NULL);
  g_autofree char *daemon_procs = g_build_filename (daemon, "cgroup.procs", NULL);
  g_autofree char *subtree = g_build_filename (own, "cgroup.subtree_control", NULL);
  g_autofree char *pid = g_strdup_printf ("%d", getpid ());
  if ((g_mkdir (daemon, 0755) != 0 && errno != EEXIST) || !write_file (daemon_procs, pid) ||
      !write_file (subtree, "+memory +pids"))
    return FALSE;
  cg->v2 = TRUE;
  cg->memory_base = g_strdup (own);
  cg->pids_base = g_strdup (own);
  return TRUE;
}

FunctionsCgroups *
functions_cgroups_new (void)
{
  FunctionsCgroups *cg = g_new0 (FunctionsCgroups, 1);
  if (!v2_setup (cg)) {
    cg->memory_base = v1_base (V1_MEMORY, "memory");
    cg->pids_base = v1_base (V1_PIDS, "pids");
  }
  if (cg->memory_base || cg->pids_base)
    g_message ("functions: environments in control groups (cgroup %s): memory limit %s, "
               "process limit %s",
               cg->v2 ? "v2" : "v1", cg->memory_base ? "yes" : "RLIMIT_DATA only",
               cg->pids_base ? "yes" : "none");
  else
    g_message ("functions: no control groups to make (not delegated, or not root): the memory "
               "limit is RLIMIT_DATA, and there is no process limit");
  return cg;
}

gboolean
functions_cgroups_available (FunctionsCgroups *cg)
{
  return cg && (cg->memory_base || cg->pids_base);
}

FunctionsCgroup *
functions_cgroup_new (FunctionsCgroups *cg, const char *name, guint64 memory_bytes,
                      guint max_processes)
{
  if (!functions_cgroups_available (cg))
    return NULL;
  FunctionsCgroup *group = g_new0 (FunctionsCgroup, 1);
  group->v2 = cg->v2;
  group->peak_fd = -1;
  guint n = 0;
  g_autofree char *memory = g_strdup_printf ("%" G_GUINT64_FORMAT, memory_bytes);
  g_autofree char *pids = g_strdup_printf ("%u", max_processes);
  if (cg->memory_base) {
    group->memory_dir = g_build_filename (cg->memory_base, name, NULL);
    g_autofree char *limit = g_build_filename (
        group->memory_dir, cg->v2 ? "memory.max" : "memory.limit_in_bytes", NULL);
    if ((g_mkdir (group->memory_dir, 0755) != 0 && errno != EEXIST) ||
        !write_file (limit, memory)) {
      g_warning ("function environment %s: no memory group: %s", name, g_strerror (errno));
      g_clear_pointer (&group->memory_dir, g_free);
    } else {
      if (cg->v2) {
        /* No swap to hide in. */
        g_autofree char *swap = g_build_filename (group->memory_dir, "memory.swap.max", NULL);
        write_file (swap, "0");
      }
      g_snprintf (group->procs[n++], sizeof group->procs[0], "%s/cgroup.procs",
                  group->memory_dir);
      g_autofree char *peak = g_build_filename (
          group->memory_dir, cg->v2 ? "memory.peak" : "memory.max_usage_in_bytes", NULL);
      group->peak_fd = open (peak, O_RDONLY | O_CLOEXEC);
    }
  }
  if (cg->pids_base) {
    /* v2: one group has both controllers. */
    group->pids_dir = g_build_filename (cg->pids_base, name, NULL);
    g_autofree char *limit = g_build_filename (group->pids_dir, "pids.max", NULL);
    if ((g_mkdir (group->pids_dir, 0755) != 0 && errno != EEXIST) || !write_file (limit, pids)) {
      g_warning ("function environment %s: no pids group: %s", name, g_strerror (errno));
      g_clear_pointer (&group->pids_dir, g_free);
    } else if (!cg->v2 || group->memory_dir == NULL) {
      g_snprintf (group->procs[n++], sizeof group->procs[0], "%s/cgroup.procs", group->pids_dir);
    }
  }
  return group;
}

void
functions_cgroup_join (const FunctionsCgroup *group)
{
  /* In the child between fork and exec: async-signal-safe calls only. */
  if (group == NULL)
    return;
  for (int i = 0; i < 2; i++) {
    if (group->procs[i][0] == '\0')
      continue;
    int fd = open (group->procs[i], O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (write (fd, "0", 1) < 0) {
        /* Left in edged's group: the limits do not apply, RLIMIT_DATA does. */
      }
      close (fd);
    }
  }
}

static guint64
read_number (const char *dir, const char *file, const char *key)
{
  if (dir == NULL)
    return 0;
  g_autofree char *path = g_build_filename (dir, file, NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  if (key == NULL)
    return g_ascii_strtoull (text, NULL, 10);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  gsize n = strlen (key);
  for (guint i = 0; lines[i]; i++)
    if (strncmp (lines[i], key, n) == 0 && lines[i][n] == ' ')
      return g_ascii_strtoull (lines[i] + n + 1, NULL, 10);
  return 0;
}

guint64
functions_cgroup_peak_bytes (const FunctionsCgroup *group)
{
  char text[32];
  if (group == NULL || group->peak_fd < 0)
    return 0;
  ssize_t n = pread (group->peak_fd, text, sizeof text - 1, 0);
  if (n <= 0)
    return 0;
  text[n] = '\0';
  return g_ascii_strtoull (text, NULL, 10);
}

guint64
functions_cgroup_oom_kills (const FunctionsCgroup *group)
{
  if (group == NULL)
    return 0;
  return read_number (group->memory_dir, group->v2 ? "memory.events" : "memory.oom_control",
                      "oom_kill");
}

void
functions_cgroup_free (FunctionsCgroup *group)
{
  if (group == NULL)
    return;
  if (group->peak_fd >= 0)
    close (group->peak_fd);
  /* Empty once the process group is gone; a group that is not yet empty
   * (a process still exiting) is left for the cleanup at stop. */
  if (group->memory_dir)
    g_rmdir (group->memory_dir);
  if (group->pids_dir && g_strcmp0 (group->pids_dir, group->memory_dir) != 0)
    g_rmdir (group->pids_dir);
  g_free (group->memory_dir);
  g_free (group->pids_dir);
  g_free (group);
}

void
functions_cgroups_free (FunctionsCgroups *cg)
{
  if (cg == NULL)
    return;
  /* The v1 base groups are edged's own (edged-PID); v2's base is its
   * delegated group, which stays (with edged's "daemon" in it). */
  if (cg->memory_base)
    remove_groups (cg->memory_base, !cg->v2);
  if (cg->pids_base && (!cg->v2 || cg->memory_base == NULL))
    remove_groups (cg->pids_base, !cg->v2);
  g_free (cg->memory_base);
  g_free (cg->pids_base);
  g_free (cg);
}
