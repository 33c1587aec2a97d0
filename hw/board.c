/* board.c: board detection from the device tree (ARM boards) or DMI (x86). */
#define G_LOG_DOMAIN "hw"

#include "hw.h"

#include <sys/utsname.h>
#include <unistd.h>

/* The first line of @path under @root, stripped; NULL if unreadable or empty.
 * Device-tree strings end in NUL, which this drops. */
static char *
read_line (const char *root, const char *path)
{
  g_autofree char *full = g_build_filename (root, path, NULL);
  g_autofree char *contents = NULL;
  gsize len;
  if (!g_file_get_contents (full, &contents, &len, NULL) || len > 4096)
    return NULL;
  char *end = memchr (contents, '\n', len);
  if (end)
    *end = '\0';
  g_strstrip (contents);
  if (contents[0] == '\0' || !g_utf8_validate (contents, -1, NULL))
    return NULL;
  return g_steal_pointer (&contents);
}

static guint64
read_mem_total (const char *root)
{
  g_autofree char *path = g_build_filename (root, "proc/meminfo", NULL);
  g_autofree char *contents = NULL;
  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return 0;
  const char *line = strstr (contents, "MemTotal:");
  if (line == NULL)
    return 0;
  return g_ascii_strtoull (line + strlen ("MemTotal:"), NULL, 10) * 1024;
}

HwBoard *
hw_board_detect (const char *root)
{
  HwBoard *board = g_new0 (HwBoard, 1);
  struct utsname uts;
  long cpus = sysconf (_SC_NPROCESSORS_ONLN);

  board->model = read_line (root, "proc/device-tree/model");
  if (board->model == NULL) {
    g_autofree char *vendor = read_line (root, "sys/class/dmi/id/sys_vendor");
    g_autofree char *product = read_line (root, "sys/class/dmi/id/product_name");
    if (product)
      board->model = vendor ? g_strdup_printf ("%s %s", vendor, product) : g_strdup (product);
  }
  if (board->model == NULL)
    board->model = g_strdup ("unknown");
  board->raspberry_pi = g_str_has_prefix (board->model, "Raspberry Pi");
  if (uname (&uts) == 0) {
    board->arch = g_strdup (uts.machine);
    board->kernel = g_strdup (uts.release);
  } else {
    board->arch = g_strdup ("unknown");
    board->kernel = g_strdup ("unknown");
  }
  board->cpus = cpus > 0 ? (guint) cpus : 1;
  board->memory_bytes = read_mem_total (root);
  return board;
}

void
hw_board_free (HwBoard *board)
{
  if (board == NULL)
    return;
  g_free (board->model);
  g_free (board->arch);
  g_free (board->kernel);
  g_free (board);
}
