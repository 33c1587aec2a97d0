/* Data directory lock and state database migrations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "edge-core.h"

#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void
test_lock_refuses_second_owner (void **state)
{
  g_autofree char *tmp = g_dir_make_tmp ("edged-state-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (tmp, "data", "nested", NULL);
  g_autoptr (GError) error = NULL;
  struct stat st;

  EdgeDataDir *first = edge_data_dir_open (path, &error);
  assert_non_null (first);
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (st.st_mode & 0777, 0700);

  EdgeDataDir *second = edge_data_dir_open (path, &error);
  assert_null (second);
  assert_int_equal (error->code, EDGE_DATA_DIR_ERROR_IN_USE);
  g_autofree char *pid = g_strdup_printf ("(pid %ld)", (long) getpid ());
  assert_non_null (strstr (error->message, "in use by another edged"));
  assert_non_null (strstr (error->message, pid));

  /* Released on close: the next owner gets it. */
  edge_data_dir_close (first);
  g_clear_error (&error);
  EdgeDataDir *third = edge_data_dir_open (path, &error);
  assert_non_null (third);
  edge_data_dir_close (third);
  edge_data_dir_close (NULL);
}

static const char *const module_v2[] = {
  "CREATE TABLE things (name TEXT PRIMARY KEY);",
  "ALTER TABLE things ADD COLUMN size INTEGER NOT NULL DEFAULT 0;",
};

static void
test_migrations (void **state)
{
  g_autofree char *tmp = g_dir_make_tmp ("edged-state-XXXXXX", NULL);
  g_autofree char *db = g_build_filename (tmp, "state.db", NULL);
  g_autoptr (GError) error = NULL;
  g_autofree char *instance = NULL;

  {
    g_autoptr (EdgeState) s = edge_state_open (db, &error);
    assert_non_null (s);
    instance = g_strdup (edge_state_instance_id (s));
    assert_int_equal (strlen (instance), 36);
    assert_true (edge_state_migrate (s, "things", module_v2, 1, &error));
    assert_int_equal (sqlite3_exec (edge_state_db (s), "INSERT INTO things VALUES ('a')", NULL,
                                    NULL, NULL),
                      SQLITE_OK);
  }
  {
    /* Reopened: same instance, data kept, the next step applies once. */
    g_autoptr (EdgeState) s = edge_state_open (db, &error);
    assert_non_null (s);
    assert_string_equal (edge_state_instance_id (s), instance);
    assert_true (edge_state_migrate (s, "things", module_v2, 2, &error));
    assert_true (edge_state_migrate (s, "things", module_v2, 2, &error));
    sqlite3_stmt *stmt;
    assert_int_equal (sqlite3_prepare_v2 (edge_state_db (s), "SELECT name, size FROM things", -1,
                                          &stmt, NULL),
                      SQLITE_OK);
    assert_int_equal (sqlite3_step (stmt), SQLITE_ROW);
    assert_string_equal ((const char *) sqlite3_column_text (stmt, 0), "a");
    sqlite3_finalize (stmt);
    /* journal_mode is WAL. */
    assert_int_equal (sqlite3_prepare_v2 (edge_state_db (s), "PRAGMA journal_mode", -1, &stmt, NULL),
                      SQLITE_OK);
    assert_int_equal (sqlite3_step (stmt), SQLITE_ROW);
    assert_string_equal ((const char *) sqlite3_column_text (stmt, 0), "wal");
    sqlite3_finalize (stmt);
    /* An older edged (knowing one step) refuses a newer database. */
    assert_false (edge_state_migrate (s, "things", module_v2, 1, &error));
    assert_int_equal (error->code, EDGE_STATE_ERROR_TOO_NEW);
    g_clear_error (&error);
    /* A failing step rolls back and says which. */
    static const char *const broken[] = { "CREATE TABLE x (a);", "THIS IS NOT SQL;" };
    assert_false (edge_state_migrate (s, "broken", broken, 2, &error));
    assert_non_null (strstr (error->message, "migrating broken to version 2"));
    assert_true (edge_state_ping (s, NULL));
  }
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmp);
  assert_int_equal (system (cmd), 0);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_lock_refuses_second_owner),
    cmocka_unit_test (test_migrations),
  };
  return cmocka_run_group_tests_name ("state", tests, NULL, NULL);
}
