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

/* The CPU's name from /proc/cpuinfo: "model name" on x86; on ARM, the core
 * named from its "CPU part" (the kernel prints no name there). */
static char *
read_cpu_model (const char *root)
{
  static const struct {
    const char *part;
    const char *name;
  } arm_cores[] = {
    { "0xd03", "Cortex-A53" }, { "0xd04", "Cortex-A35" }, { "0xd05", "Cortex-A55" },
    { "0xd07", "Cortex-A57" }, { "0xd08", "Cortex-A72" }, { "0xd09", "Cortex-A73" },
    { "0xd0a", "Cortex-A75" }, { "0xd0b", "Cortex-A76" }, { "0xd0d", "Cortex-A77" },
    { "0xd41", "Cortex-A78" }, { "0xd46", "Cortex-A510" }, { "0xd47", "Cortex-A710" },
  };
  g_autofree char *path = g_build_filename (root, "proc/cpuinfo", NULL);
  g_autofree char *contents = NULL;
  g_auto (GStrv) lines = NULL;
  const char *part = NULL, *implementer = NULL;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return NULL;
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i]; i++) {
    char *colon = strchr (lines[i], ':');
    if (colon == NULL)
      continue;
    *colon = '\0';
    const char *key = g_strstrip (lines[i]);
    const char *value = g_strstrip (colon + 1);
    if (g_str_equal (key, "model name") && value[0])
      return g_strdup (value);
    if (g_str_equal (key, "CPU part") && part == NULL)
      part = value;
    if (g_str_equal (key, "CPU implementer") && implementer == NULL)
      implementer = value;
  }
  if (part && implementer && g_ascii_strcasecmp (implementer, "0x41") == 0)
    for (guint i = 0; i < G_N_ELEMENTS (arm_cores); i++)
      if (g_ascii_strcasecmp (part, arm_cores[i].part) == 0)
        return g_strdup (arm_cores[i].name);
  return part ? g_strdup_printf ("ARM part %s", part) : NULL;
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
  board->cpu_model = read_cpu_model (root);
  if (board->cpu_model == NULL)
    board->cpu_model = g_strdup ("unknown");
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
  g_free (board->cpu_model);
  g_free (board->arch);
  g_free (board->kernel);
  g_free (board);
}
