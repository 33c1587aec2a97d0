/* Board detection from a fake /proc and /sys tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hw.h"

#include <glib/gstdio.h>

static char *
make_tree (const char *const *files)
{
  char *root = g_dir_make_tmp ("edged-hw-XXXXXX", NULL);
  for (guint i = 0; files[i]; i += 2) {
    g_autofree char *path = g_build_filename (root, files[i], NULL);
    g_autofree char *dir = g_path_get_dirname (path);
    g_mkdir_with_parents (dir, 0700);
    /* Device-tree strings end in NUL: keep it, as the kernel does. */
    g_file_set_contents (path, files[i + 1], strlen (files[i + 1]) + 1, NULL);
  }
  return root;
}

static void
remove_tree (char *root)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", root);
  assert_int_equal (system (cmd), 0);
  g_free (root);
}

static void
test_raspberry_pi (void **state)
{
  static const char *const files[] = { "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0",
                                       "proc/meminfo", "MemTotal:        8245760 kB\nMemFree: 1 kB\n",
                                       NULL };
  char *root = make_tree (files);
  g_autoptr (HwBoard) b = hw_board_detect (root);
  assert_string_equal (b->model, "Raspberry Pi 5 Model B Rev 1.0");
  assert_true (b->raspberry_pi);
  assert_int_equal (b->memory_bytes, 8245760ULL * 1024);
  assert_true (b->cpus >= 1);
  remove_tree (root);
}

static void
test_x86_dmi_and_unknown (void **state)
{
  static const char *const files[] = { "sys/class/dmi/id/sys_vendor", "Intel Corporation\n",
                                       "sys/class/dmi/id/product_name", "NUC8i5BEH\n", NULL };
  char *root = make_tree (files);
  g_autoptr (HwBoard) b = hw_board_detect (root);
  assert_string_equal (b->model, "Intel Corporation NUC8i5BEH");
  assert_false (b->raspberry_pi);
  assert_int_equal (b->memory_bytes, 0);
  remove_tree (root);

  static const char *const none[] = { NULL };
  root = make_tree (none);
  g_autoptr (HwBoard) u = hw_board_detect (root);
  assert_string_equal (u->model, "unknown");
  assert_non_null (u->arch);
  remove_tree (root);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_raspberry_pi),
    cmocka_unit_test (test_x86_dmi_and_unknown),
  };
  return cmocka_run_group_tests_name ("hw", tests, NULL, NULL);
}
