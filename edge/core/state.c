/* state.c: the metadata database (SQLite in WAL mode).
 *
 * Streams, functions, routes, API keys and consumer checkpoints live here;
 * bulk data (records, fragments) lives in each module's own files. Each module
 * owns its tables and brings them up to date with edge_state_migrate(); the
 * versions are kept in schema_versions, one row per module, so modules
 * evolve independently. A database written by a newer edged is refused
 * rather than misread.
 */
#define G_LOG_DOMAIN "core"

#include "edge-core.h"

G_DEFINE_QUARK (edge-state-error-quark, edge_state_error)

struct _EdgeState {
  sqlite3 *db;
  char *instance_id;
};

static const char *const core_schema[] = {
  /* 1 */
  "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
  "INSERT INTO meta (key, value) VALUES ('instance_id', lower(hex(randomblob(4)) || '-' ||"
  "  hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' ||"
  "  substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' ||"
  "  hex(randomblob(6))));"
  "INSERT INTO meta (key, value) VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));",
};

static gboolean
exec (EdgeState *state, const char *sql, GError **error)
{
  char *message = NULL;
  if (sqlite3_exec (state->db, sql, NULL, NULL, &message) != SQLITE_OK) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "state database: %s",
                 message ? message : sqlite3_errmsg (state->db));
    sqlite3_free (message);
    return FALSE;
  }
  return TRUE;
}

static gint64
module_version (EdgeState *state, const char *module)
{
  sqlite3_stmt *stmt = NULL;
  gint64 version = 0;
  if (sqlite3_prepare_v2 (state->db, "SELECT version FROM schema_versions WHERE module = ?", -1,
                          &stmt, NULL) != SQLITE_OK)
    return -1;
  sqlite3_bind_text (stmt, 1, module, -1, SQLITE_STATIC);
  if (sqlite3_step (stmt) == SQLITE_ROW)
    version = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
  return version;
}

gboolean
edge_state_migrate (EdgeState *state, const char *module, const char *const *steps,
                    guint n_steps, GError **error)
{
  gint64 version = module_version (state, module);

  if (version < 0) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "state database: %s",
                 sqlite3_errmsg (state->db));
    return FALSE;
  }
  if (version > n_steps) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_TOO_NEW,
                 "state database: %s tables are at version %" G_GINT64_FORMAT
                 ", newer than this edged knows (%u): was it written by a newer edged?",
                 module, version, n_steps);
    return FALSE;
  }
  for (guint i = (guint) version; i < n_steps; i++) {
    g_autofree char *bump = g_strdup_printf (
        "INSERT INTO schema_versions (module, version) VALUES ('%s', %u)"
        " ON CONFLICT (module) DO UPDATE SET version = excluded.version;",
        module, i + 1);
    if (!exec (state, "BEGIN IMMEDIATE;", error))
      return FALSE;
    if (!exec (state, steps[i], error) || !exec (state, bump, error)) {
      exec (state, "ROLLBACK;", NULL);
      g_prefix_error (error, "migrating %s to version %u: ", module, i + 1);
      return FALSE;
    }
    if (!exec (state, "COMMIT;", error))
      return FALSE;
  }
  return TRUE;
}

EdgeState *
edge_state_open (const char *path, GError **error)
{
  g_autoptr (EdgeState) state = g_new0 (EdgeState, 1);
  sqlite3_stmt *stmt = NULL;

  if (sqlite3_open_v2 (path, &state->db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
      SQLITE_OK) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_OPEN, "cannot open %s: %s", path,
                 state->db ? sqlite3_errmsg (state->db) : "out of memory");
    return NULL;
  }
  sqlite3_busy_timeout (state->db, 5000);
  /* WAL with synchronous=FULL: a committed transaction survives power loss. */
  if (!exec (state, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                    " PRAGMA foreign_keys = ON;",
             error) ||
      !exec (state, "CREATE TABLE IF NOT EXISTS schema_versions"
                    " (module TEXT PRIMARY KEY, version INTEGER NOT NULL);",
             error) ||
      !edge_state_migrate (state, "core", core_schema, G_N_ELEMENTS (core_schema), error)) {
    g_prefix_error (error, "%s: ", path);
    return NULL;
  }
  if (sqlite3_prepare_v2 (state->db, "SELECT value FROM meta WHERE key = 'instance_id'", -1, &stmt,
                          NULL) == SQLITE_OK &&
      sqlite3_step (stmt) == SQLITE_ROW)
    state->instance_id = g_strdup ((const char *) sqlite3_column_text (stmt, 0));
  sqlite3_finalize (stmt);
  if (state->instance_id == NULL) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "%s: no instance id", path);
    return NULL;
  }
  return g_steal_pointer (&state);
}

const char *
edge_state_instance_id (EdgeState *state)
{
  return state->instance_id;
}

sqlite3 *
edge_state_db (EdgeState *state)
{
  return state->db;
}

gboolean
edge_state_ping (EdgeState *state, GError **error)
{
  return exec (state, "SELECT 1 FROM meta LIMIT 1;", error);
}

void
edge_state_close (EdgeState *state)
{
  if (state == NULL)
    return;
  if (state->db) {
    sqlite3_exec (state->db, "PRAGMA wal_checkpoint(TRUNCATE);", NULL, NULL, NULL);
    sqlite3_close_v2 (state->db);
  }
  g_free (state->instance_id);
  g_free (state);
}
