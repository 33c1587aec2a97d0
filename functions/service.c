/* service.c: functions, their execution environments and the Lambda
 * Invoke API (functions/functions.h).
 *
 * An invocation waits in its function's queue until an environment asks
 * for it:
 *
 *   Invoke ──▶ queue ──▶ GET  /2018-06-01/runtime/invocation/next   (parked until one comes)
 *                        POST /2018-06-01/runtime/invocation/ID/response ──▶ 200 to the caller
 *                        POST /2018-06-01/runtime/invocation/ID/error    ──▶ 200, X-Amz-Function-Error
 *                        POST /2018-06-01/runtime/init/error             ──▶ the environment goes
 *
 * Environments start on demand, one per invocation waiting beyond those
 * already starting, up to the function's concurrency; one that finished
 * asks for the next invocation at once and is reused warm; one with
 * nothing to do for the idle timeout stops, so an idle function has no
 * process. Each environment is a process group of its own (a bootstrap's
 * children die with it) with its own Runtime API server on a loopback port
 * that only it is told (AWS_LAMBDA_RUNTIME_API), so it reaches only its own
 * invocations, and its own TMPDIR.
 *
 * Failures are Lambda's, with the invocation answered 200 and
 * X-Amz-Function-Error: Unhandled: the timeout kills the environment
 * ("Sandbox.Timedout", "Task timed out after N.NN seconds"); an environment
 * that exits mid-invocation fails it ("Runtime.ExitError"); an init error
 * fails the invocation waiting for that environment. None of it reaches the
 * daemon or the function's other environments.
 */
#define G_LOG_DOMAIN "functions"

#include "functions-private.h"

#include <ftw.h>
#include <sqlite3.h>
#include <math.h>
#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <glib-unix.h>
#include <stdio.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#define RUNTIME_PREFIX "/2018-06-01/runtime/"
/* An environment asked to stop is killed if still there after this. */
#define STOP_GRACE_MS 2000
/* A runtime must ask for its first invocation within this (Lambda's init
 * limit). */
#define INIT_LIMIT_MS 10000

typedef struct _Function Function;
typedef struct _Env Env;

typedef struct {
  char *id;
  Function *fn;
  GBytes *payload;
  char *client_context; /* nullable: the invoking client's, one line of JSON */
  guint64 cgroup_peak;  /* the environment's group's peak memory at the end, if it has one */
  FunctionsDoneFunc done; /* told the result, once */
  gpointer done_data;
  gint64 started_us;    /* when it came in */
  gint64 handed_us;     /* when an environment took it; 0: never did */
  GPid pid;             /* that environment's process */
  GString *log;         /* its lines, the last FUNCTIONS_LOG_TAIL_BYTES or so */
} Invocation;

struct _Env {
  gint refs;                    /* the function's, and a spawn under way's */
  gboolean released;            /* let go of by its function */
  gboolean spawning;            /* the process is being started, off the main thread */
  Function *fn;
  guint number;
  FunctionsRuntimeServer *runtime;
  char *tmp_dir;
  GSubprocess *process;
  GPid pid;
  gboolean started;             /* has asked for an invocation once */
  FunctionsRuntimeRequest *waiting; /* a parked GET .../next */
  Invocation *current;
  guint timeout_source;
  guint idle_source;
  guint kill_source;
  gboolean stopping;
  GCancellable *cancellable;
  GInputStream *output;
  guint output_source; /* watches output's pipe */
  FunctionsCgroup *cgroup; /* nullable: none to make here */
  struct {
    guint64 memory_limit;
    const FunctionsCgroup *cgroup;
  } setup;            /* what the child does before exec (child_setup) */
  GString *partial;   /* output past the last newline */
  gboolean skipping;  /* dropping the rest of a line over the limit */
};

struct _Function {
  FunctionsService *service;
  EdgeConfigFunction config;
  char *arn;
  char *task_root;
  guint64 memory_limit; /* bytes: memory_mb */
  GQueue queue; /* Invocation *, waiting for an environment */
  GPtrArray *envs;
  guint next_env;
  guint dispatch_source;
  gboolean from_api; /* created with POST /v1/functions (kept in the state database) */
};

struct _FunctionsService {
  EdgeGateway *gateway;
  EdgeMetrics *metrics;
  StreamStore *streams;
  FunctionsAsync *async;
  char *work_dir;
  GHashTable *functions; /* name -> Function */
  GPtrArray *order;      /* Function *, as added */
  gboolean stopping;     /* no more invocations */
  GPtrArray *routes;     /* FunctionsRoute * */
  GPtrArray *schedules;  /* FunctionsSchedule * */
  GPtrArray *mappings;   /* FunctionsMapping * */
  FunctionsLogs *logs;
  FunctionsWebSockets *websockets;
  EdgeState *state;
  GHashTable *referenced; /* function name -> triggers naming it (GUINT) */
  FunctionsCgroups *cgroups;
};

G_DEFINE_QUARK (functions-error-quark, functions_error)

static void env_stop (Env *env, gboolean now);
static void dispatch (Function *fn);

/* ---- answers to the caller ---- */

static void
invocation_free (Invocation *inv)
{
  if (inv->log)
    g_string_free (inv->log, TRUE);
  g_free (inv->id);
  g_free (inv->client_context);
  g_clear_pointer (&inv->payload, g_bytes_unref);
  g_free (inv);
}

/* A line of @fn's log, for @inv (nullable), to the function's logs stream
 * and the invocation's own tail (the daemon's log is the caller's). */
static void
keep_log_line (Function *fn, Invocation *inv, const char *text, gsize len)
{
  functions_logs_line (fn->service->logs, fn->config.name, inv ? inv->id : NULL, text, len);
  if (inv == NULL)
    return;
  if (inv->log == NULL)
    inv->log = g_string_new (NULL);
  g_string_append_len (inv->log, text, (gssize) len);
  g_string_append_c (inv->log, '\n');
  if (inv->log->len > 2 * FUNCTIONS_LOG_TAIL_BYTES)
    g_string_erase (inv->log, 0, (gssize) (inv->log->len - FUNCTIONS_LOG_TAIL_BYTES));
}

/* One of edged's own lines about @inv (START, END, REPORT, errors), to the
 * daemon's log as well as the function's. */
static void
function_log_line (Function *fn, Invocation *inv, const char *text, gsize len)
{
  if (edge_log_enabled (G_LOG_LEVEL_MESSAGE))
    g_message ("function \"%s\": %s", fn->config.name, text);
  keep_log_line (fn, inv, text, len);
}

/* Peak resident memory of @pid in MiB (what REPORT calls Max Memory
 * Used), 0 if unknown. */
static guint
peak_memory_mb (GPid pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", pid);
  g_autofree char *status = NULL;
  if (pid <= 0 || !g_file_get_contents (path, &status, NULL, NULL))
    return 0;
  const char *hwm = strstr (status, "VmHWM:");
  return hwm ? (guint) (g_ascii_strtoull (hwm + 6, NULL, 10) / 1024) : 0;
}

/* Ends @inv with @body: the handler's result, or with @function_error its
 * error ("Unhandled"; @error_type names a failure edged saw itself). Logs
 * Lambda's END and REPORT lines for an invocation that ran, counts it and
 * tells the caller. */
static void
invocation_finish (Invocation *inv, GBytes *body, const char *function_error,
                   const char *error_type)
{
  Function *fn = inv->fn;
  gint64 now = g_get_monotonic_time ();
  if (inv->handed_us) {
    guint64 us = (guint64) MAX (now - inv->handed_us, 0);
    g_autofree char *end = g_strconcat ("END RequestId: ", inv->id, NULL);
    function_log_line (fn, inv, end, strlen (end));
    /* Put together without printf: this runs for every invocation. */
    g_autoptr (GString) report = g_string_new ("REPORT RequestId: ");
    g_string_append (report, inv->id);
    g_string_append (report, "\tDuration: ");
    edge_string_append_fixed (report, (us + 5) / 10, 2);
    g_string_append (report, " ms\tBilled Duration: ");
    edge_string_append_fixed (report, MAX ((us + 999) / 1000, 1), 0);
    g_string_append (report, " ms\tMemory Size: ");
    edge_string_append_fixed (report, (guint64) fn->config.memory_mb, 0);
    g_string_append (report, " MB\tMax Memory Used: ");
    edge_string_append_fixed (report,
                              inv->cgroup_peak ? inv->cgroup_peak / (1024 * 1024)
                                               : peak_memory_mb (inv->pid),
                              0);
    g_string_append (report, " MB");
    function_log_line (fn, inv, report->str, report->len);
  }
  EdgeMetrics *metrics = fn->service->metrics;
  if (metrics) {
    /* Put together without printf: this runs for every invocation. */
    g_autofree char *name = g_strconcat ("function=\"", fn->config.name, "\"", NULL);
    g_autofree char *labels = g_strconcat (name, ",result=\"",
                                           function_error ? "error" : "success", "\"", NULL);
    edge_metrics_add (metrics, "edged_function_invocations_total", labels, 1);
    edge_metrics_observe (metrics, "edged_function_duration_seconds", name,
                          (now - inv->started_us) / 1e6);
  }
  FunctionsResult result = { .request_id = inv->id, .payload = body,
                             .function_error = function_error, .error_type = error_type,
                             .log = inv->log ? inv->log->str : "" };
  inv->done (&result, inv->done_data);
  invocation_free (inv);
}

/* Ends @inv unfinished: edged is stopping. */
static void
invocation_abandon (Invocation *inv)
{
  FunctionsResult result = { .request_id = inv->id, .stopping = TRUE };
  inv->done (&result, inv->done_data);
  invocation_free (inv);
}

/* Ends @inv with a Lambda error object {"errorType", "errorMessage"}. */
static void
invocation_fail (Invocation *inv, const char *type, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
invocation_fail (Invocation *inv, const char *type, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  g_autofree char *detail = g_strdup_vprintf (format, args);
  va_end (args);
  g_autofree char *message = g_strdup_printf ("RequestId: %s Error: %s", inv->id, detail);
  g_autoptr (GString) body = g_string_new ("{\"errorType\":");
  edge_json_append_string (body, type, strlen (type));
  g_string_append (body, ",\"errorMessage\":");
  edge_json_append_string (body, message, strlen (message));
  g_string_append_c (body, '}');
  g_autoptr (GBytes) bytes = g_bytes_new (body->str, body->len);
  invocation_finish (inv, bytes, "Unhandled", type);
}

/* ---- the Runtime API (one server per environment) ---- */

static void
runtime_error (FunctionsRuntimeRequest *request, guint status, const char *type,
               const char *message)
{
  g_autoptr (GString) body = g_string_new ("{\"errorType\":");
  edge_json_append_string (body, type, strlen (type));
  g_string_append (body, ",\"errorMessage\":");
  edge_json_append_string (body, message, strlen (message));
  g_string_append_c (body, '}');
  functions_runtime_answer_json (request, status, body->str);
}

/* Gives @inv to @env's parked request for the next invocation. */
static gboolean on_timeout (gpointer data);

static void
hand_over (Env *env, Invocation *inv)
{
  Function *fn = env->fn;
  FunctionsRuntimeRequest *next = g_steal_pointer (&env->waiting);
  g_clear_handle_id (&env->idle_source, g_source_remove);
  env->current = inv;
  inv->handed_us = g_get_monotonic_time ();
  inv->pid = env->pid;
  g_autofree char *start = g_strconcat ("START RequestId: ", inv->id, " Version: $LATEST", NULL);
  function_log_line (fn, inv, start, strlen (start));
  gint64 deadline_ms = g_get_real_time () / 1000 + fn->config.timeout_ms;
  char deadline[32];
  g_snprintf (deadline, sizeof deadline, "%" G_GINT64_FORMAT, deadline_ms);
  char trace[64];
  g_snprintf (trace, sizeof trace, "Root=1-%08x-%08x%08x%08x;Sampled=0",
              (guint) (g_get_real_time () / G_USEC_PER_SEC), g_random_int (), g_random_int (),
              g_random_int ());
  const char *const headers[] = {
    "Lambda-Runtime-Aws-Request-Id", inv->id,
    "Lambda-Runtime-Deadline-Ms", deadline,
    "Lambda-Runtime-Invoked-Function-Arn", fn->arn,
    "Lambda-Runtime-Trace-Id", trace,
    inv->client_context ? "Lambda-Runtime-Client-Context" : NULL, inv->client_context,
    NULL,
  };
  functions_runtime_answer (next, 200, headers, inv->payload);
  env->timeout_source = g_timeout_add ((guint) fn->config.timeout_ms, on_timeout, env);
}

static gboolean
on_idle (gpointer data)
{
  Env *env = data;
  env->idle_source = 0;
  g_info ("function \"%s\": environment %u idle for %" G_GINT64_FORMAT " s, stopping",
          env->fn->config.name, env->number, env->fn->config.idle_ms / 1000);
  env_stop (env, FALSE);
  return G_SOURCE_REMOVE;
}

static gboolean
on_timeout (gpointer data)
{
  Env *env = data;
  env->timeout_source = 0;
  Invocation *inv = g_steal_pointer (&env->current);
  if (inv)
    invocation_fail (inv, "Sandbox.Timedout", "Task timed out after %.2f seconds",
                     env->fn->config.timeout_ms / 1000.0);
  env_stop (env, TRUE);
  return G_SOURCE_REMOVE;
}

/* A runtime that never asked for an invocation: it goes, and the oldest
 * invocation waiting (which it was started for) fails. */
static gboolean
on_init_timeout (gpointer data)
{
  Env *env = data;
  env->timeout_source = 0;
  g_warning ("function \"%s\": environment %u did not ask for an invocation within %d s",
             env->fn->config.name, env->number, INIT_LIMIT_MS / 1000);
  Invocation *inv = g_queue_pop_head (&env->fn->queue);
  if (inv)
    invocation_fail (inv, "Sandbox.Timedout",
                     "Task timed out after %.2f seconds (the runtime did not start)",
                     INIT_LIMIT_MS / 1000.0);
  env_stop (env, TRUE);
  return G_SOURCE_REMOVE;
}

/* The invocation @id names, if it is @env's current one; otherwise
 * answers the runtime 400 and returns NULL. */
static Invocation *
take_current (Env *env, FunctionsRuntimeRequest *request, const char *id)
{
  if (env->current == NULL || !g_str_equal (env->current->id, id)) {
    runtime_error (request, 400, "InvalidRequestID", "not an invocation of this environment");
    return NULL;
  }
  g_clear_handle_id (&env->timeout_source, g_source_remove);
  env->current->cgroup_peak = functions_cgroup_peak_bytes (env->cgroup);
  return g_steal_pointer (&env->current);
}

static void fail_too_large (Env *env);
static void output_take (Env *env, const char *data, gsize len);

/* Reads what is already in @env's output pipe, now. The asynchronous read
 * that is pending would get it only on a later turn of the loop, after the
 * answer that follows it has ended the invocation. Reads only what the
 * pipe holds (FIONREAD), so it never blocks; the pending read then waits
 * for more as before (all of it runs on the main thread). */
static void
drain_output (Env *env)
{
  if (env->output == NULL || !G_IS_UNIX_INPUT_STREAM (env->output))
    return;
  int fd = g_unix_input_stream_get_fd (G_UNIX_INPUT_STREAM (env->output));
  char buf[16 * 1024];
  for (guint rounds = 0; rounds < 64; rounds++) { /* at most 1 MiB now */
    int queued = 0;
    if (ioctl (fd, FIONREAD, &queued) != 0 || queued <= 0)
      return;
    ssize_t n = read (fd, buf, MIN ((gsize) queued, sizeof buf));
    if (n <= 0)
      return;
    output_take (env, buf, (gsize) n);
  }
}

static void
on_runtime (FunctionsRuntimeRequest *request, gpointer data)
{
  Env *env = data;
  const char *method = functions_runtime_request_method (request);
  const char *path = functions_runtime_request_path (request);
  const char *rest = g_str_has_prefix (path, RUNTIME_PREFIX) ? path + strlen (RUNTIME_PREFIX) : "";

  if (env->stopping) {
    runtime_error (request, 410, "EnvironmentStopping", "this environment is stopping");
    return;
  }
  if (g_str_equal (rest, "invocation/next") && g_str_equal (method, "GET")) {
    if (env->waiting) {
      runtime_error (request, 400, "InvalidRequest", "already waiting for the next invocation");
      return;
    }
    if (env->current) {
      /* Asked for more without answering: the invocation is lost. */
      Invocation *inv = g_steal_pointer (&env->current);
      g_clear_handle_id (&env->timeout_source, g_source_remove);
      invocation_fail (inv, "Runtime.NoResponse",
                       "the runtime asked for the next invocation without answering this one");
    }
    if (!env->started)
      g_clear_handle_id (&env->timeout_source, g_source_remove); /* the init limit */
    env->started = TRUE;
    env->waiting = request;
    g_clear_handle_id (&env->idle_source, g_source_remove);
    env->idle_source = g_timeout_add ((guint) env->fn->config.idle_ms, on_idle, env);
    dispatch (env->fn);
    return;
  }
  if (g_str_equal (method, "POST") && g_str_has_prefix (rest, "invocation/")) {
    const char *id_start = rest + strlen ("invocation/");
    const char *slash = strchr (id_start, '/');
    gboolean response = slash && g_str_equal (slash, "/response");
    if (slash == NULL || (!response && !g_str_equal (slash, "/error"))) {
      runtime_error (request, 404, "NotFound", "unknown Runtime API path");
      return;
    }
    g_autofree char *id = g_strndup (id_start, slash - id_start);
    /* What the handler printed before it answered belongs to this
     * invocation (its REPORT, its log tail): take it in first. */
    drain_output (env);
    Invocation *inv = take_current (env, request, id);
    if (inv == NULL)
      return;
    if (functions_runtime_request_too_large (request)) {
      env->current = inv;
      fail_too_large (env);
      runtime_error (request, 413, "RequestEntityTooLarge", "the response is over 6 MiB");
      return;
    }
    invocation_finish (inv, functions_runtime_request_body (request),
                       response ? NULL : "Unhandled", NULL);
    functions_runtime_answer_json (request, 202, "{\"status\":\"OK\"}");
    return;
  }
  if (g_str_equal (rest, "init/error") && g_str_equal (method, "POST")) {
    GBytes *body = functions_runtime_request_body (request);
    if (body == NULL) {
      runtime_error (request, 413, "RequestEntityTooLarge", "the error is over 6 MiB");
      env_stop (env, TRUE);
      return;
    }
    g_warning ("function \"%s\": environment %u failed to start: %.*s", env->fn->config.name,
               env->number, (int) MIN (g_bytes_get_size (body), 500),
               (const char *) g_bytes_get_data (body, NULL));
    /* The invocation that would have gone to it gets the error. */
    Invocation *inv = g_queue_pop_head (&env->fn->queue);
    if (inv)
      invocation_finish (inv, body, "Unhandled", "Runtime.InitError");
    functions_runtime_answer_json (request, 202, "{\"status\":\"OK\"}");
    env_stop (env, TRUE);
    return;
  }
  runtime_error (request, 404, "NotFound", "unknown Runtime API path");
}

/* The runtime hung up while its request for the next invocation waited:
 * nothing is handed to it until it asks again. Its idle time runs on: one
 * that never asks again stops as idle. */
static void
on_runtime_gone (FunctionsRuntimeRequest *request, gpointer data)
{
  Env *env = data;
  if (env->waiting == request)
    env->waiting = NULL;
}

/* Fails @env's invocation for a response over the limit. */
static void
fail_too_large (Env *env)
{
  Invocation *inv = g_steal_pointer (&env->current);
  if (inv == NULL)
    return;
  g_clear_handle_id (&env->timeout_source, g_source_remove);
  invocation_fail (inv, "Function.ResponseSizeTooLarge",
                   "Response payload size exceeded maximum allowed payload size (%d bytes).",
                   FUNCTIONS_MAX_PAYLOAD_BYTES);
}

static void env_unref (Env *env);

/* ---- environments ---- */

static int
remove_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  remove (path);
  return 0;
}

/* Removes an environment's /tmp with whatever its handler left there. */
static void
remove_tree (const char *path)
{
  nftw (path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void
env_unref (Env *env)
{
  if (--env->refs > 0)
    return;
  g_clear_object (&env->process);
  functions_cgroup_free (env->cgroup);
  g_string_free (env->partial, TRUE);
  g_free (env);
}

/* Lets go of @env: its server, timers and /tmp go now; a spawn under way
 * finishes first (on_spawned), then it is freed. */
static void
env_release (Env *env)
{
  env->released = TRUE;
  g_clear_handle_id (&env->timeout_source, g_source_remove);
  g_clear_handle_id (&env->idle_source, g_source_remove);
  g_clear_handle_id (&env->kill_source, g_source_remove);
  if (env->waiting)
    runtime_error (g_steal_pointer (&env->waiting), 410, "EnvironmentStopping",
                   "this environment is stopping");
  g_clear_pointer (&env->runtime, functions_runtime_server_free);
  g_cancellable_cancel (env->cancellable);
  g_clear_object (&env->cancellable);
  g_clear_handle_id (&env->output_source, g_source_remove);
  g_clear_object (&env->output);
  if (env->tmp_dir) {
    remove_tree (env->tmp_dir);
    g_clear_pointer (&env->tmp_dir, g_free);
  }
  env_unref (env);
}

static void
signal_group (Env *env, int sig)
{
  if (env->pid > 0)
    kill (-env->pid, sig); /* the whole process group */
}

static gboolean
on_kill (gpointer data)
{
  Env *env = data;
  env->kill_source = 0;
  signal_group (env, SIGKILL);
  return G_SOURCE_REMOVE;
}

/* Asks @env to go (SIGTERM, then SIGKILL after a grace period), or kills
 * it @now; its exit removes it. */
static void
env_stop (Env *env, gboolean now)
{
  if (env->stopping && !now)
    return;
  env->stopping = TRUE;
  g_clear_handle_id (&env->idle_source, g_source_remove);
  if (now) {
    signal_group (env, SIGKILL);
    return;
  }
  signal_group (env, SIGTERM);
  if (env->kill_source == 0)
    env->kill_source = g_timeout_add (STOP_GRACE_MS, on_kill, env);
}

static void
on_exited (GObject *source, GAsyncResult *result, gpointer data)
{
  Env *env = data;
  gboolean exited = g_subprocess_wait_finish (G_SUBPROCESS (source), result, NULL);
  if (!exited || env->released) {
    env_unref (env); /* cancelled: its function let go of it */
    return;
  }
  env_unref (env); /* the function's reference keeps it */
  Function *fn = env->fn;
  /* Whatever else the group left behind goes with it. */
  signal_group (env, SIGKILL);
  g_autofree char *how =
      g_subprocess_get_if_signaled (env->process)
          ? g_strdup_printf ("signal %d", g_subprocess_get_term_sig (env->process))
          : g_strdup_printf ("exit status %d", g_subprocess_get_exit_status (env->process));
  if (!env->stopping)
    g_warning ("function \"%s\": environment %u exited (%s)", fn->config.name, env->number, how);
  Invocation *inv = g_steal_pointer (&env->current);
  guint64 oom_kills = functions_cgroup_oom_kills (env->cgroup);
  if (inv && oom_kills > 0) {
    /* The kernel killed in the environment's group for memory. */
    inv->cgroup_peak = functions_cgroup_peak_bytes (env->cgroup);
    invocation_fail (inv, "Runtime.OutOfMemory",
                     "Runtime exited with error: %s (out of memory: %" G_GINT64_FORMAT " MB)",
                     how, fn->config.memory_mb);
  } else if (inv)
    invocation_fail (inv, "Runtime.ExitError", "Runtime exited with error: %s", how);
  else if (!env->started && !env->stopping && (inv = g_queue_pop_head (&fn->queue)))
    /* Gone before asking for an invocation: the one it was started for
     * fails, rather than wait for a runtime that cannot start. */
    invocation_fail (inv, "Runtime.ExitError",
                     "Runtime exited without asking for an invocation: %s", how);
  g_ptr_array_remove (fn->envs, env);
  env_release (env);
  dispatch (fn);
}

static void read_output (Env *env);

/* One whole line of @env's output. */
static void
output_line (Env *env, const char *text, gsize len)
{
  if (len > 0 && text[len - 1] == '\r')
    len--;
  g_autofree char *line = g_utf8_make_valid (text, (gssize) len);
  Function *fn = env->fn;
  g_message ("function \"%s\" [%u]: %s", fn->config.name, env->number, line);
  keep_log_line (fn, env->current, line, strlen (line));
}

/* Splits what the environment wrote into lines; a line over the limit is
 * cut there and the rest of it dropped. */
static void
output_take (Env *env, const char *data, gsize len)
{
  while (len > 0) {
    const char *nl = memchr (data, '\n', len);
    gsize n = nl ? (gsize) (nl - data) : len;
    if (!env->skipping) {
      gsize room = FUNCTIONS_LOG_LINE_MAX - env->partial->len;
      g_string_append_len (env->partial, data, (gssize) MIN (n, room));
      if (n > room || (nl == NULL && env->partial->len >= FUNCTIONS_LOG_LINE_MAX)) {
        output_line (env, env->partial->str, env->partial->len);
        g_string_truncate (env->partial, 0);
        env->skipping = TRUE;
      }
    }
    if (nl == NULL)
      return;
    if (!env->skipping)
      output_line (env, env->partial->str, env->partial->len);
    g_string_truncate (env->partial, 0);
    env->skipping = FALSE;
    data = nl + 1;
    len -= n + 1;
  }
}

/* The environment's output, read as it comes, straight into lines: no
 * read is ever under way holding bytes that the lines do not have yet, so
 * drain_output, at an answer, sees everything printed before it. */
static gboolean
on_output_ready (gint fd, GIOCondition condition, gpointer data)
{
  Env *env = data;
  char buf[64 * 1024];
  if (env->released)
    return G_SOURCE_REMOVE;
  ssize_t n = read (fd, buf, sizeof buf);
  if (n > 0) {
    output_take (env, buf, (gsize) n);
    return G_SOURCE_CONTINUE;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return G_SOURCE_CONTINUE;
  if (env->partial->len > 0) {
    output_line (env, env->partial->str, env->partial->len); /* the last, unfinished */
    g_string_truncate (env->partial, 0);
  }
  env->output_source = 0;
  return G_SOURCE_REMOVE;
}

static void
env_unref_notify (gpointer data)
{
  env_unref (data);
}

/* Reads the environment's output into lines for the logs. The watch holds
 * a reference. */
static void
read_output (Env *env)
{
  int fd = g_unix_input_stream_get_fd (G_UNIX_INPUT_STREAM (env->output));
  g_unix_set_fd_nonblocking (fd, TRUE, NULL);
  env->refs++;
  env->output_source = edge_fd_watch (fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_output_ready, env,
                                      env_unref_notify);
}

/* In the child, before exec: a process group of its own, and the memory
 * limit as RLIMIT_DATA (the data segment and private writable mappings,
 * which is what allocators take memory from; unlike RLIMIT_AS it leaves
 * the address space that runtimes such as V8 reserve up front alone). An
 * allocation past it fails inside the handler: Node throws a RangeError,
 * Python a MemoryError, C's malloc returns NULL. The limit is inherited by
 * whatever the bootstrap starts. */
static void
child_setup (gpointer data)
{
  Env *env = data;
  setpgid (0, 0);
  struct rlimit r = { (rlim_t) env->setup.memory_limit, (rlim_t) env->setup.memory_limit };
  setrlimit (RLIMIT_DATA, &r);
  functions_cgroup_join (env->setup.cgroup);
}

typedef struct {
  GSubprocessLauncher *launcher;
  char *bootstrap;
} SpawnJob;

static void
spawn_job_free (SpawnJob *job)
{
  g_object_unref (job->launcher);
  g_free (job->bootstrap);
  g_free (job);
}

static void
spawn_in_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  SpawnJob *job = data;
  GError *error = NULL;
  GSubprocess *process = g_subprocess_launcher_spawn (job->launcher, &error, job->bootstrap, NULL);
  if (process)
    g_task_return_pointer (task, process, g_object_unref);
  else
    g_task_return_error (task, error);
}

/* The spawn's end, on the main thread. */
static void
on_spawned (GObject *source, GAsyncResult *result, gpointer data)
{
  Env *env = data;
  Function *fn = env->fn;
  g_autoptr (GError) error = NULL;
  GSubprocess *process = g_task_propagate_pointer (G_TASK (result), &error);
  env->spawning = FALSE;
  if (process) {
    const char *pid = g_subprocess_get_identifier (process);
    env->pid = pid ? (GPid) g_ascii_strtoll (pid, NULL, 10) : 0;
    env->process = process;
  }
  if (env->released) {
    /* Let go of while it started: it goes at once. */
    if (process) {
      signal_group (env, SIGKILL);
      g_subprocess_wait (process, NULL, NULL);
    }
    env_unref (env);
    return;
  }
  env_unref (env);
  if (process == NULL) {
    g_warning ("function \"%s\": cannot start an environment: %s", fn->config.name,
               error->message);
    if (!g_ptr_array_remove (fn->envs, env))
      return; /* the service is stopping: it releases it */
    env_release (env);
    /* The invocation it was started for fails, rather than start another
     * that would fail the same way. */
    Invocation *inv = g_queue_pop_head (&fn->queue);
    if (inv)
      invocation_fail (inv, "Runtime.StartError", "cannot start the runtime: %s", error->message);
    dispatch (fn);
    return;
  }
  g_info ("function \"%s\": environment %u started (pid %d)", fn->config.name, env->number,
          env->pid);
  if (env->stopping)
    signal_group (env, SIGKILL);
  env->output = g_object_ref (g_subprocess_get_stdout_pipe (process));
  read_output (env);
  env->refs++;
  g_subprocess_wait_async (process, env->cancellable, on_exited, env);
}

static Env *
env_start (Function *fn, GError **error)
{
  FunctionsService *service = fn->service;
  Env *env = g_new0 (Env, 1);
  env->refs = 1;
  env->fn = fn;
  env->partial = g_string_new (NULL);
  env->number = ++fn->next_env;
  env->cancellable = g_cancellable_new ();
  env->runtime = functions_runtime_server_new (FUNCTIONS_MAX_PAYLOAD_BYTES, on_runtime,
                                               on_runtime_gone, env, error);
  if (env->runtime == NULL) {
    env_release (env);
    return NULL;
  }
  guint port = functions_runtime_server_port (env->runtime);

  env->tmp_dir = g_strdup_printf ("%s/%s-%u-XXXXXX", service->work_dir, fn->config.name,
                                  env->number);
  if (g_mkdtemp_full (env->tmp_dir, 0700) == NULL) {
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "%s: %s", env->tmp_dir,
                 g_strerror (errno));
    g_clear_pointer (&env->tmp_dir, g_free);
    env_release (env);
    return NULL;
  }

  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (
      G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE |
      G_SUBPROCESS_FLAGS_STDIN_INHERIT);
  const char *path = g_getenv ("PATH");
  g_autofree char *runtime_api = g_strdup_printf ("127.0.0.1:%u", port);
  g_autofree char *memory = g_strdup_printf ("%" G_GINT64_FORMAT, fn->config.memory_mb);
  g_autofree char *log_group = g_strdup_printf ("/aws/lambda/%s", fn->config.name);
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *day = g_date_time_format (now, "%Y/%m/%d");
  g_autofree char *log_stream = g_strdup_printf ("%s/[$LATEST]%08x%08x", day, g_random_int (),
                                                 g_random_int ());
  /* Where the function reaches this edged's API (event snapshots, clips,
   * streams), when the gateway listens. */
  g_autofree char *edged_url = service->gateway ? edge_gateway_url (service->gateway) : NULL;
  /* Defaults the function's own variables may replace, then the
   * function's, then what Lambda sets and no function may. */
  const char *const defaults[][2] = {
    { "PATH", path ? path : "/usr/local/bin:/usr/bin:/bin" },
    { "LANG", "C.UTF-8" },
    { "TZ", ":UTC" },
    { "HOME", env->tmp_dir },
    { "TMPDIR", env->tmp_dir },
    { "EDGED_URL", edged_url ? edged_url : "" },
  };
  /* With authentication on, the key functions call the gateway back with. */
  const char *api_key = service->gateway ? edge_gateway_internal_key (service->gateway) : NULL;
  const char *const reserved[][2] = {
    { "AWS_LAMBDA_RUNTIME_API", runtime_api },
    { "_HANDLER", fn->config.handler },
    { "LAMBDA_TASK_ROOT", fn->task_root },
    { "LAMBDA_RUNTIME_DIR", fn->task_root },
    { "AWS_LAMBDA_FUNCTION_NAME", fn->config.name },
    { "AWS_LAMBDA_FUNCTION_VERSION", "$LATEST" },
    { "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory },
    { "AWS_LAMBDA_LOG_GROUP_NAME", log_group },
    { "AWS_LAMBDA_LOG_STREAM_NAME", log_stream },
    { "AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand" },
    { "AWS_REGION", FUNCTIONS_REGION },
    { "AWS_DEFAULT_REGION", FUNCTIONS_REGION },
  };
  g_auto (GStrv) envp = g_new0 (char *, 1);
  for (gsize i = 0; i < G_N_ELEMENTS (defaults); i++)
    envp = g_environ_setenv (envp, defaults[i][0], defaults[i][1], TRUE);
  if (api_key) {
    /* As Lambda hands a function its role's credentials: the AWS SDKs
     * sign with these, other clients send the key as x-api-key. */
    envp = g_environ_setenv (envp, "EDGED_API_KEY", api_key, TRUE);
    envp = g_environ_setenv (envp, "AWS_ACCESS_KEY_ID",
                             edge_gateway_internal_access_key_id (service->gateway), TRUE);
    envp = g_environ_setenv (envp, "AWS_SECRET_ACCESS_KEY", api_key, TRUE);
  }
  for (guint i = 0; fn->config.environment[i]; i++) {
    const char *pair = fn->config.environment[i];
    const char *eq = strchr (pair, '=');
    g_autofree char *name = g_strndup (pair, eq - pair);
    envp = g_environ_setenv (envp, name, eq + 1, TRUE);
  }
  for (gsize i = 0; i < G_N_ELEMENTS (reserved); i++)
    envp = g_environ_setenv (envp, reserved[i][0], reserved[i][1], TRUE);
  g_subprocess_launcher_set_environ (launcher, envp);
  g_subprocess_launcher_set_cwd (launcher, fn->task_root);
  /* Its own control group, where edged can make one (cgroup.c). */
  g_autofree char *group = g_strdup_printf ("%s-%u", fn->config.name, env->number);
  env->cgroup = functions_cgroup_new (service->cgroups, group, fn->memory_limit,
                                      (guint) fn->config.max_processes);
  env->setup.memory_limit = fn->memory_limit;
  env->setup.cgroup = env->cgroup;
  g_subprocess_launcher_set_child_setup (launcher, child_setup, env, NULL);
  /* GLib's spawn returns once the child has exec'd, which for a bootstrap
   * among fifty starting at once takes a good part of a second: off the
   * main thread, so that the gateway and the other environments do not
   * wait for it. */
  GTask *task = g_task_new (NULL, NULL, on_spawned, env);
  SpawnJob *job = g_new0 (SpawnJob, 1);
  job->launcher = g_object_ref (launcher);
  job->bootstrap = g_strdup (fn->config.bootstrap);
  g_task_set_task_data (task, job, (GDestroyNotify) spawn_job_free);
  env->refs++;
  env->spawning = TRUE;
  g_task_run_in_thread (task, spawn_in_thread);
  g_object_unref (task);
  g_ptr_array_add (fn->envs, env);
  g_info ("function \"%s\": environment %u starting (Runtime API %s)", fn->config.name,
          env->number, runtime_api);
  env->timeout_source = g_timeout_add (INIT_LIMIT_MS, on_init_timeout, env);
  return env;
}

/* Gives waiting invocations to environments waiting for one, and starts
 * environments for the rest, as far as the concurrency allows. */
static void
dispatch (Function *fn)
{
  while (!g_queue_is_empty (&fn->queue)) {
    Env *free_env = NULL;
    for (guint i = 0; i < fn->envs->len && free_env == NULL; i++) {
      Env *env = g_ptr_array_index (fn->envs, i);
      if (env->waiting && env->current == NULL && !env->stopping)
        free_env = env;
    }
    if (free_env == NULL)
      break;
    hand_over (free_env, g_queue_pop_head (&fn->queue));
  }
  guint starting = 0, live = 0;
  for (guint i = 0; i < fn->envs->len; i++) {
    Env *env = g_ptr_array_index (fn->envs, i);
    if (env->stopping)
      continue;
    live++;
    if (!env->started)
      starting++;
  }
  while (g_queue_get_length (&fn->queue) > starting && live < (guint) fn->config.concurrency) {
    g_autoptr (GError) error = NULL;
    if (env_start (fn, &error) == NULL) {
      g_warning ("function \"%s\": cannot start an environment: %s", fn->config.name,
                 error->message);
      Invocation *inv = g_queue_pop_head (&fn->queue);
      invocation_fail (inv, "Runtime.StartError", "cannot start the runtime: %s",
                       error->message);
      continue;
    }
    starting++;
    live++;
  }
}

static gboolean
on_dispatch (gpointer data)
{
  Function *fn = data;
  fn->dispatch_source = 0;
  dispatch (fn);
  return G_SOURCE_REMOVE;
}

/* ---- the Lambda API ---- */

/* The function a FunctionName path parameter names: a name, a name with
 * :$LATEST, or an ARN. */
static Function *
lookup (FunctionsService *service, const char *name)
{
  const char *at = strstr (name, ":function:");
  if (at)
    name = at + strlen (":function:");
  g_autofree char *bare = g_strndup (name, strcspn (name, ":"));
  const char *qualifier = name[strlen (bare)] == ':' ? name + strlen (bare) + 1 : NULL;
  if (qualifier && !g_str_equal (qualifier, "$LATEST"))
    return NULL;
  return g_hash_table_lookup (service->functions, bare);
}

/* The function the request's {name} names; otherwise answers 404. */
static Function *
request_function (FunctionsService *service, EdgeRequest *request)
{
  const char *name = edge_request_param (request, "name");
  Function *fn = lookup (service, name);
  if (fn == NULL)
    edge_request_respond_rest_error (
        request, 404, "ResourceNotFoundException",
        "Function not found: arn:aws:lambda:" FUNCTIONS_REGION ":" FUNCTIONS_ACCOUNT ":function:%s", name);
  return fn;
}

/* A RequestResponse invocation's end: the caller's answer. */
static void
on_sync_done (const FunctionsResult *result, gpointer data)
{
  EdgeRequest *request = data;
  if (result->stopping) {
    edge_request_respond_rest_error (request, 503, "ServiceException", "edged is stopping");
    return;
  }
  SoupMessageHeaders *headers =
      edge_request_response_headers (request);
  soup_message_headers_replace (headers, "X-Amz-Executed-Version", "$LATEST");
  soup_message_headers_replace (headers, "X-Amzn-RequestId", result->request_id);
  if (result->function_error)
    soup_message_headers_replace (headers, "X-Amz-Function-Error", result->function_error);
  const char *log_type = edge_request_header (request, "X-Amz-Log-Type");
  if (log_type && g_str_equal (log_type, "Tail")) {
    gsize len = strlen (result->log);
    const char *tail = result->log + (len > FUNCTIONS_LOG_TAIL_BYTES
                                          ? len - FUNCTIONS_LOG_TAIL_BYTES : 0);
    g_autofree char *encoded = g_base64_encode ((const guchar *) tail, strlen (tail));
    soup_message_headers_replace (headers, "X-Amz-Log-Result", encoded);
  }
  edge_request_respond (request, 200, "application/json", result->payload);
}

static void
count_throttle (Function *fn)
{
  if (fn->service->metrics) {
    g_autofree char *labels = g_strdup_printf ("function=\"%s\"", fn->config.name);
    edge_metrics_add (fn->service->metrics, "edged_function_throttles_total", labels, 1);
  }
}

/* X-Amz-Client-Context: up to 3583 bytes of base64 of a JSON object (the
 * AWS CLI's --client-context, the SDKs' ClientContext), handed to the
 * runtime as one line of JSON in *ret (NULL when absent). FALSE when it is
 * not one (answered 400). */
static gboolean
read_client_context (EdgeRequest *request, char **ret)
{
  const char *text = edge_request_header (request, "X-Amz-Client-Context");
  *ret = NULL;
  if (text == NULL || *text == '\0')
    return TRUE;
  gsize len = strlen (text);
  gboolean valid = len <= FUNCTIONS_MAX_CLIENT_CONTEXT && len % 4 == 0;
  for (gsize i = 0; valid && i < len; i++)
    valid = g_ascii_isalnum (text[i]) || text[i] == '+' || text[i] == '/' ||
            (text[i] == '=' && i >= len - 2 && (i == len - 1 || text[len - 1] == '='));
  g_autoptr (JsonNode) context = NULL;
  if (valid) {
    gsize size;
    g_autofree guchar *decoded = g_base64_decode (text, &size);
    context = edge_json_parse ((const char *) decoded, size, size, NULL);
  }
  if (context == NULL || !JSON_NODE_HOLDS_OBJECT (context)) {
    edge_request_respond_rest_error (request, 400, "InvalidRequestContentException",
                                     "Client context must be a valid Base64-encoded JSON object "
                                     "of at most %d bytes.", FUNCTIONS_MAX_CLIENT_CONTEXT);
    return FALSE;
  }
  *ret = json_to_string (context, FALSE); /* one line: no newline can reach the header */
  return TRUE;
}

static void
handle_invoke (EdgeRequest *request, gpointer data)
{
  FunctionsService *service = data;
  Function *fn = request_function (service, request);
  if (fn == NULL)
    return;
  const char *type = edge_request_header (request, "X-Amz-Invocation-Type");
  if (type == NULL)
    type = "RequestResponse";
  gboolean event = g_str_equal (type, "Event");
  if (!event && !g_str_equal (type, "RequestResponse") && !g_str_equal (type, "DryRun")) {
    edge_request_respond_rest_error (request, 400, "InvalidParameterValueException",
                                     "X-Amz-Invocation-Type must be RequestResponse, Event or "
                                     "DryRun, not %s", type);
    return;
  }
  GBytes *body = edge_request_body (request);
  gsize len = g_bytes_get_size (body);
  if (event && len > FUNCTIONS_MAX_EVENT_BYTES) {
    edge_request_respond_rest_error (request, 413, "RequestEntityTooLargeException",
                                     "Request must be smaller than %d bytes for the Event "
                                     "invocation type", FUNCTIONS_MAX_EVENT_BYTES);
    return;
  }
  if (len > 0) {
    g_autoptr (GError) error = NULL;
    g_autoptr (JsonNode) parsed = edge_json_parse (g_bytes_get_data (body, NULL), len,
                                                   FUNCTIONS_MAX_PAYLOAD_BYTES, &error);
    if (parsed == NULL) {
      edge_request_respond_rest_error (request, 400, "InvalidRequestContentException",
                                       "Could not parse request body into json: %s",
                                       error->message);
      return;
    }
  }
  g_autofree char *client_context = NULL;
  if (!read_client_context (request, &client_context))
    return;
  if (g_str_equal (type, "DryRun")) {
    edge_request_respond (request, 204, NULL, NULL);
    return;
  }
  g_autoptr (GBytes) payload = len > 0 ? g_bytes_ref (body) : g_bytes_new_static ("{}", 2);
  g_autofree char *id = edge_uuid_random ();
  g_autoptr (GError) error = NULL;
  if (event) {
    /* Kept durably before it is acknowledged. */
    if (!functions_async_enqueue (service->async, fn->config.name, id, payload, &error)) {
      if (g_error_matches (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_THROTTLED)) {
        count_throttle (fn);
        edge_request_respond_rest_error (request, 429, "TooManyRequestsException", "%s",
                                         error->message);
      } else {
        edge_request_respond_rest_error (request, 500, "ServiceException", "%s", error->message);
      }
      return;
    }
    SoupMessageHeaders *headers =
        edge_request_response_headers (request);
    soup_message_headers_replace (headers, "X-Amzn-RequestId", id);
    edge_request_respond (request, 202, NULL, NULL);
    return;
  }
  /* The client's context goes to synchronous invocations only, as in
   * Lambda. */
  if (!functions_service_invoke_with_context (service, fn->config.name, id, payload,
                                              client_context, on_sync_done, request, &error)) {
    edge_request_respond_rest_error (request, 429, "TooManyRequestsException", "Rate Exceeded.");
    return;
  }
  edge_request_pause (request);
}

static JsonNode *
function_configuration (Function *fn)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "FunctionName");
  json_builder_add_string_value (b, fn->config.name);
  json_builder_set_member_name (b, "FunctionArn");
  json_builder_add_string_value (b, fn->arn);
  json_builder_set_member_name (b, "Runtime");
  json_builder_add_string_value (b, "provided");
  json_builder_set_member_name (b, "Handler");
  json_builder_add_string_value (b, fn->config.handler);
  json_builder_set_member_name (b, "Timeout");
  json_builder_add_int_value (b, fn->config.timeout_ms / 1000);
  json_builder_set_member_name (b, "MemorySize");
  json_builder_add_int_value (b, fn->config.memory_mb);
  json_builder_set_member_name (b, "Version");
  json_builder_add_string_value (b, "$LATEST");
  json_builder_set_member_name (b, "State");
  json_builder_add_string_value (b, "Active");
  json_builder_set_member_name (b, "PackageType");
  json_builder_add_string_value (b, "Zip");
  json_builder_set_member_name (b, "Architectures");
  json_builder_begin_array (b);
#if defined(__aarch64__)
  json_builder_add_string_value (b, "arm64");
#else
  json_builder_add_string_value (b, "x86_64");
#endif
  json_builder_end_array (b);
  if (fn->config.environment[0]) {
    json_builder_set_member_name (b, "Environment");
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "Variables");
    json_builder_begin_object (b);
    for (char **e = fn->config.environment; *e; e++) {
      const char *eq = strchr (*e, '=');
      g_autofree char *name = g_strndup (*e, eq ? (gsize) (eq - *e) : strlen (*e));
      json_builder_set_member_name (b, name);
      json_builder_add_string_value (b, eq ? eq + 1 : "");
    }
    json_builder_end_object (b);
    json_builder_end_object (b);
  }
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

/* GetFunctionConfiguration: what GetFunction calls Configuration. */
static void
handle_get_configuration (EdgeRequest *request, gpointer data)
{
  Function *fn = request_function (data, request);
  if (fn == NULL)
    return;
  g_autoptr (JsonNode) root = function_configuration (fn);
  edge_request_respond_json (request, 200, root);
}

/* GetFunctionConcurrency: the function's concurrency, which edged always
 * reserves (an environment per concurrent invocation, up to it). */
static void
handle_get_concurrency (EdgeRequest *request, gpointer data)
{
  Function *fn = request_function (data, request);
  if (fn == NULL)
    return;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "ReservedConcurrentExecutions");
  json_builder_add_int_value (b, fn->config.concurrency);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

static void
add_destination (JsonBuilder *b, const char *name, const char *destination)
{
  if (destination == NULL || destination[0] == '\0')
    return;
  g_autofree char *arn =
      g_str_has_prefix (destination, "arn:")
          ? g_strdup (destination)
          : g_strconcat ("arn:aws:kinesis:" FUNCTIONS_REGION ":" FUNCTIONS_ACCOUNT ":stream/",
                         destination, NULL);
  json_builder_set_member_name (b, name);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Destination");
  json_builder_add_string_value (b, arn);
  json_builder_end_object (b);
}

/* GetFunctionEventInvokeConfig: how Event invocations are retried and where
 * their records go. */
static void
handle_get_event_invoke_config (EdgeRequest *request, gpointer data)
{
  Function *fn = request_function (data, request);
  if (fn == NULL)
    return;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "FunctionArn");
  json_builder_add_string_value (b, fn->arn);
  json_builder_set_member_name (b, "MaximumRetryAttempts");
  json_builder_add_int_value (b, fn->config.max_retry_attempts);
  json_builder_set_member_name (b, "MaximumEventAgeInSeconds");
  json_builder_add_int_value (b, fn->config.max_event_age_ms / 1000);
  json_builder_set_member_name (b, "DestinationConfig");
  json_builder_begin_object (b);
  add_destination (b, "OnSuccess", fn->config.on_success);
  add_destination (b, "OnFailure", fn->config.on_failure);
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

static void
handle_get_function (EdgeRequest *request, gpointer data)
{
  Function *fn = request_function (data, request);
  if (fn == NULL)
    return;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Configuration");
  json_builder_add_value (b, function_configuration (fn));
  json_builder_set_member_name (b, "Concurrency");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "ReservedConcurrentExecutions");
  json_builder_add_int_value (b, fn->config.concurrency);
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

static void
handle_list_functions (EdgeRequest *request, gpointer data)
{
  FunctionsService *service = data;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Functions");
  json_builder_begin_array (b);
  for (guint i = 0; i < service->order->len; i++)
    json_builder_add_value (b, function_configuration (g_ptr_array_index (service->order, i)));
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

/* ListEventSourceMappings, with the FunctionName and EventSourceArn filters. */
static void
handle_list_mappings (EdgeRequest *request, gpointer data)
{
  FunctionsService *service = data;
  const char *function = edge_request_query (request, "FunctionName");
  const char *source = edge_request_query (request, "EventSourceArn");
  Function *fn = NULL;
  if (function && (fn = lookup (service, function)) == NULL) {
    edge_request_respond_rest_error (
        request, 404, "ResourceNotFoundException",
        "Function not found: arn:aws:lambda:" FUNCTIONS_REGION ":" FUNCTIONS_ACCOUNT
        ":function:%s", function);
    return;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "EventSourceMappings");
  json_builder_begin_array (b);
  for (guint i = 0; i < service->mappings->len; i++) {
    FunctionsMapping *m = service->mappings->pdata[i];
    if (fn && !g_str_equal (functions_mapping_function (m), fn->config.name))
      continue;
    JsonNode *node = functions_mapping_describe (m);
    if (source && !g_str_equal (json_object_get_string_member (json_node_get_object (node),
                                                               "EventSourceArn"),
                                source)) {
      json_node_unref (node);
      continue;
    }
    json_builder_add_value (b, node);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

static void
handle_get_mapping (EdgeRequest *request, gpointer data)
{
  FunctionsService *service = data;
  const char *uuid = edge_request_param (request, "uuid");
  for (guint i = 0; i < service->mappings->len; i++) {
    FunctionsMapping *m = service->mappings->pdata[i];
    g_autofree char *id = functions_mapping_uuid (m);
    if (g_str_equal (id, uuid)) {
      g_autoptr (JsonNode) root = functions_mapping_describe (m);
      edge_request_respond_json (request, 200, root);
      return;
    }
  }
  edge_request_respond_rest_error (request, 404, "ResourceNotFoundException",
                                   "The resource you requested does not exist.");
}

/* ---- the management API: /v1/functions ---- */

static JsonNode *
function_status (Function *fn)
{
  guint busy = 0;
  for (guint i = 0; i < fn->envs->len; i++)
    busy += ((Env *) g_ptr_array_index (fn->envs, i))->current != NULL;
  g_autofree char *logs = functions_logs_stream (fn->config.name);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  const char *strings[][2] = {
    { "name", fn->config.name },   { "arn", fn->arn },
    { "bootstrap", fn->config.bootstrap }, { "handler", fn->config.handler },
    { "logs_stream", logs },
    { "on_success", fn->config.on_success }, { "on_failure", fn->config.on_failure },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (strings); i++) {
    json_builder_set_member_name (b, strings[i][0]);
    json_builder_add_string_value (b, strings[i][1]);
  }
  const struct {
    const char *name;
    gint64 value;
  } numbers[] = {
    { "timeout_ms", fn->config.timeout_ms },
    { "memory_mb", fn->config.memory_mb },
    { "concurrency", fn->config.concurrency },
    { "idle_timeout_ms", fn->config.idle_ms },
    { "environments", fn->envs->len },
    { "running", busy },
    { "queued", g_queue_get_length (&fn->queue) },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (numbers); i++) {
    json_builder_set_member_name (b, numbers[i].name);
    json_builder_add_int_value (b, numbers[i].value);
  }
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

static void
handle_rest_list (EdgeRequest *request, gpointer data)
{
  FunctionsService *service = data;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "functions");
  json_builder_begin_array (b);
  for (guint i = 0; i < service->order->len; i++)
    json_builder_add_value (b, function_status (g_ptr_array_index (service->order, i)));
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

static Function *
rest_function (FunctionsService *service, EdgeRequest *request)
{
  const char *name = edge_request_param (request, "name");
  Function *fn = g_hash_table_lookup (service->functions, name);
  if (fn == NULL)
    edge_request_respond_error (request, 404, "NotFound", "no function \"%s\"", name);
  return fn;
}

static void
handle_rest_get (EdgeRequest *request, gpointer data)
{
  Function *fn = rest_function (data, request);
  if (fn == NULL)
    return;
  g_autoptr (JsonNode) root = function_status (fn);
  edge_request_respond_json (request, 200, root);
}

static gboolean
exec_defined (FunctionsService *service, const char *sql, const char *name, const char *definition,
              GError **error)
{
  sqlite3 *db = edge_state_db (service->state);
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, name, -1, SQLITE_STATIC);
    if (definition)
      sqlite3_bind_text (stmt, 2, definition, -1, SQLITE_STATIC);
    rc = sqlite3_step (stmt);
  }
  sqlite3_finalize (stmt);
  if (rc != SQLITE_DONE) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "%s", sqlite3_errmsg (db));
    return FALSE;
  }
  return TRUE;
}

static void function_abandon (Function *fn);
static void function_free (Function *fn);
static EdgeConfig *parse_definition (const char *json, GError **error);

static void
function_remove (FunctionsService *service, Function *fn)
{
  g_hash_table_remove (service->functions, fn->config.name);
  g_ptr_array_remove (service->order, fn);
  function_abandon (fn);
  function_free (fn);
}

static void
handle_rest_create (EdgeRequest *request, gpointer data)
{
  FunctionsService *service = data;
  g_autoptr (JsonNode) root = edge_request_json (request);
  if (root == NULL)
    return;
  if (!JSON_NODE_HOLDS_OBJECT (root)) {
    edge_request_respond_error (request, 400, "InvalidDefinition",
                                "expected an object: the keys of a functions: item");
    return;
  }
  gsize len;
  g_autofree char *json = edge_json_to_string (root, &len);
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeConfig) config = parse_definition (json, &error);
  if (config == NULL) {
    edge_request_respond_error (request, 400, "InvalidDefinition", "%s", error->message);
    return;
  }
  const EdgeConfigFunction *c = config->functions->pdata[0];
  if (g_hash_table_contains (service->functions, c->name)) {
    edge_request_respond_error (request, 409, "AlreadyExists", "function \"%s\" exists",
                                c->name);
    return;
  }
  if (!functions_service_add (service, c, &error)) {
    edge_request_respond_error (request, 400, "InvalidDefinition", "%s", error->message);
    return;
  }
  Function *fn = g_hash_table_lookup (service->functions, c->name);
  fn->from_api = TRUE;
  if (!exec_defined (service, "INSERT INTO functions_defined (name, definition) VALUES (?1, ?2)",
                     c->name, json, &error)) {
    function_remove (service, fn);
    edge_request_respond_error (request, 500, "NotKept", "%s", error->message);
    return;
  }
  g_autoptr (JsonNode) status = function_status (fn);
  edge_request_respond_json (request, 201, status);
}

static void
handle_rest_delete (EdgeRequest *request, gpointer data)
{
  FunctionsService *service = data;
  Function *fn = rest_function (service, request);
  if (fn == NULL)
    return;
  if (!fn->from_api) {
    edge_request_respond_error (request, 409, "DefinedInConfiguration",
                                "function \"%s\" comes from the configuration file: remove it "
                                "there", fn->config.name);
    return;
  }
  guint uses = GPOINTER_TO_UINT (g_hash_table_lookup (service->referenced, fn->config.name));
  if (uses > 0) {
    edge_request_respond_error (request, 409, "InUse",
                                "function \"%s\" is named by %u trigger%s of the configuration",
                                fn->config.name, uses, uses == 1 ? "" : "s");
    return;
  }
  g_autoptr (GError) error = NULL;
  if (!exec_defined (service, "DELETE FROM functions_defined WHERE name = ?1", fn->config.name,
                     NULL, &error)) {
    edge_request_respond_error (request, 500, "NotKept", "%s", error->message);
    return;
  }
  g_message ("function \"%s\": deleted", fn->config.name);
  function_remove (service, fn);
  edge_request_respond (request, 204, NULL, NULL);
}

#define LOGS_DEFAULT_LIMIT 100
#define LOGS_MAX_LIMIT 10000

typedef struct {
  EdgeRequest *request;
  FunctionsService *service;
  char *stream;
  char *request_id; /* filter; nullable */
} LogsRead;

static void
on_logs_read (GObject *source, GAsyncResult *result, gpointer data)
{
  LogsRead *read = data;
  guint64 next = 0;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) records =
      stream_store_read_finish (read->service->streams, result, &next, &error);
  if (records == NULL) {
    edge_request_respond_error (read->request, 500, "ReadFailed", "%s", error->message);
  } else {
    g_autoptr (JsonBuilder) b = json_builder_new ();
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "stream");
    json_builder_add_string_value (b, read->stream);
    json_builder_set_member_name (b, "events");
    json_builder_begin_array (b);
    for (guint i = 0; i < records->len; i++) {
      StreamRecord *r = g_ptr_array_index (records, i);
      if (read->request_id && !g_str_equal (read->request_id, r->partition_key))
        continue;
      gsize len;
      const char *text = g_bytes_get_data (r->data, &len);
      g_autofree char *message = g_utf8_make_valid (text, (gssize) len);
      g_autofree char *seq = stream_sequence_format (0, r->number);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "timestamp");
      json_builder_add_int_value (b, r->arrival_ms);
      json_builder_set_member_name (b, "requestId");
      json_builder_add_string_value (b, g_str_equal (r->partition_key, "-") ? ""
                                                                           : r->partition_key);
      json_builder_set_member_name (b, "message");
      json_builder_add_string_value (b, message);
      json_builder_set_member_name (b, "sequenceNumber");
      json_builder_add_string_value (b, seq);
      json_builder_end_object (b);
    }
    json_builder_end_array (b);
    json_builder_end_object (b);
    g_autoptr (JsonNode) root = json_builder_get_root (b);
    edge_request_respond_json (read->request, 200, root);
  }
  g_free (read->stream);
  g_free (read->request_id);
  g_free (read);
}

static void
handle_rest_logs (EdgeRequest *request, gpointer data)
{
  FunctionsService *service = data;
  Function *fn = rest_function (service, request);
  if (fn == NULL)
    return;
  guint64 limit = LOGS_DEFAULT_LIMIT;
  gint64 since = -1;
  const char *text = edge_request_query (request, "limit");
  if (text && !g_ascii_string_to_unsigned (text, 10, 1, LOGS_MAX_LIMIT, &limit, NULL)) {
    edge_request_respond_error (request, 400, "InvalidParameter",
                                "limit: a whole number from 1 to %d", LOGS_MAX_LIMIT);
    return;
  }
  text = edge_request_query (request, "since");
  if (text && !g_ascii_string_to_signed (text, 10, 0, G_MAXINT64, &since, NULL)) {
    edge_request_respond_error (request, 400, "InvalidParameter",
                                "since: a time in milliseconds since 1970");
    return;
  }
  g_autofree char *stream = functions_logs_stream (fn->config.name);
  guint64 first = 0, next = 0, from;
  g_autoptr (GError) error = NULL;
  if (service->streams == NULL ||
      !stream_store_shard_range (service->streams, stream, 0, &first, &next, &error)) {
    edge_request_respond_error (request, 404, "NotFound", "no logs for \"%s\"%s%s",
                                fn->config.name, error ? ": " : "", error ? error->message : "");
    return;
  }
  /* From a time, the first lines after it; otherwise the last lines. */
  if (since >= 0) {
    if (!stream_store_shard_find_time (service->streams, stream, 0, since, &from, &error)) {
      edge_request_respond_error (request, 500, "ReadFailed", "%s", error->message);
      return;
    }
  } else {
    from = next - first > limit ? next - limit : first;
  }
  LogsRead *read = g_new0 (LogsRead, 1);
  read->request = request;
  read->service = service;
  read->stream = g_steal_pointer (&stream);
  read->request_id = g_strdup (edge_request_query (request, "request_id"));
  edge_request_pause (request);
  stream_store_read_async (service->streams, read->stream, 0, from, (guint) limit,
                           16 * 1024 * 1024, on_logs_read, read);
}

/* ---- the service ---- */

static gboolean
valid_name (const char *name)
{
  gsize n = strlen (name);
  if (n == 0 || n > 64)
    return FALSE;
  for (gsize i = 0; i < n; i++)
    if (!g_ascii_isalnum (name[i]) && name[i] != '_' && name[i] != '-')
      return FALSE;
  return TRUE;
}

/* Ends @fn's invocations unfinished, and stops its environments. */
static void
function_abandon (Function *fn)
{
  while (!g_queue_is_empty (&fn->queue)) {
    Invocation *inv = g_queue_pop_head (&fn->queue);
    invocation_abandon (inv);
  }
  /* No exit or output callback touches them from here on. */
  for (guint i = 0; i < fn->envs->len; i++) {
    Env *env = g_ptr_array_index (fn->envs, i);
    env->stopping = TRUE;
    g_cancellable_cancel (env->cancellable);
    g_clear_handle_id (&env->output_source, g_source_remove);
  }
  while (fn->envs->len > 0) {
    Env *env = g_ptr_array_steal_index (fn->envs, fn->envs->len - 1);
    Invocation *inv = g_steal_pointer (&env->current);
    if (inv)
      invocation_abandon (inv);
    /* A spawn under way finishes first, so that its process is not missed. */
    while (env->spawning)
      g_main_context_iteration (NULL, TRUE);
    signal_group (env, SIGKILL);
    /* Reap it, so that no zombie outlives the service. */
    if (env->process)
      g_subprocess_wait (env->process, NULL, NULL);
    env_release (env);
  }
}

static void
function_free (Function *fn)
{
  g_ptr_array_unref (fn->envs);
  g_clear_handle_id (&fn->dispatch_source, g_source_remove);
  g_free (fn->config.name);
  g_free (fn->config.bootstrap);
  g_free (fn->config.handler);
  g_strfreev (fn->config.environment);
  g_free (fn->config.on_success);
  g_free (fn->config.on_failure);
  g_free (fn->arn);
  g_free (fn->task_root);
  g_free (fn);
}

gboolean
functions_service_add (FunctionsService *service, const EdgeConfigFunction *config,
                       GError **error)
{
  if (!valid_name (config->name)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "function name \"%s\": 1 to 64 of a-z, A-Z, 0-9, _ and -", config->name);
    return FALSE;
  }
  if (g_hash_table_contains (service->functions, config->name)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS, "function \"%s\" is defined twice",
                 config->name);
    return FALSE;
  }
  if (!g_file_test (config->bootstrap, G_FILE_TEST_IS_REGULAR) ||
      access (config->bootstrap, X_OK) != 0) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                 "function \"%s\": bootstrap %s is not an executable file", config->name,
                 config->bootstrap);
    return FALSE;
  }
  const char *destinations[] = { config->on_success, config->on_failure };
  for (gsize i = 0; i < G_N_ELEMENTS (destinations); i++)
    if (destinations[i][0] && !functions_destination_check (service->streams, destinations[i],
                                                             error)) {
      g_prefix_error (error, "function \"%s\": %s: ", config->name,
                      i == 0 ? "on_success" : "on_failure");
      return FALSE;
    }
  if (!functions_logs_ensure (service->logs, config->name, error)) {
    g_prefix_error (error, "function \"%s\": logs: ", config->name);
    return FALSE;
  }
  Function *fn = g_new0 (Function, 1);
  fn->service = service;
  fn->config = *config;
  fn->config.name = g_strdup (config->name);
  fn->config.bootstrap = g_canonicalize_filename (config->bootstrap, NULL);
  fn->config.handler = g_strdup (config->handler);
  fn->config.environment = g_strdupv (config->environment);
  fn->config.on_success = g_strdup (config->on_success);
  fn->config.on_failure = g_strdup (config->on_failure);
  fn->arn = g_strdup_printf ("arn:aws:lambda:" FUNCTIONS_REGION ":" FUNCTIONS_ACCOUNT ":function:%s",
                             config->name);
  fn->task_root = g_path_get_dirname (fn->config.bootstrap);
  fn->memory_limit = (guint64) config->memory_mb * 1024 * 1024;
  fn->envs = g_ptr_array_new ();
  g_queue_init (&fn->queue);
  g_hash_table_insert (service->functions, fn->config.name, fn);
  g_ptr_array_add (service->order, fn);
  g_message ("function \"%s\": %s (timeout %.0f s, concurrency %" G_GINT64_FORMAT ")",
             fn->config.name, fn->config.bootstrap, fn->config.timeout_ms / 1000.0,
             fn->config.concurrency);
  return TRUE;
}

/* ---- Lambda authorizers for the gateway (gateway.auth.authorizer) ---- */

typedef struct {
  char *function;
  EdgeAuthorizerDoneFunc done;
  gpointer done_data;
} AuthorizeCall;

/* Whether an IAM policy answer allows: at least one statement, all Allow. */
static gboolean
policy_allows (JsonObject *answer)
{
  JsonNode *doc = json_object_get_member (answer, "policyDocument");
  JsonNode *statements = doc && JSON_NODE_HOLDS_OBJECT (doc)
                             ? json_object_get_member (json_node_get_object (doc), "Statement")
                             : NULL;
  if (statements == NULL || !JSON_NODE_HOLDS_ARRAY (statements))
    return FALSE;
  JsonArray *list = json_node_get_array (statements);
  guint n = json_array_get_length (list);
  for (guint i = 0; i < n; i++) {
    JsonNode *st = json_array_get_element (list, i);
    if (!JSON_NODE_HOLDS_OBJECT (st))
      return FALSE;
    const char *effect = json_object_get_string_member_with_default (json_node_get_object (st),
                                                                     "Effect", "");
    if (!g_str_equal (effect, "Allow"))
      return FALSE;
  }
  return n > 0;
}

static void
authorize_done (const FunctionsResult *result, gpointer data)
{
  AuthorizeCall *call = data;
  gboolean allow = FALSE;
  g_autofree char *context = NULL;
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GError) error = NULL;

  if (result->payload && !result->function_error && !result->error_type) {
    gsize len;
    const char *text = g_bytes_get_data (result->payload, &len);
    root = edge_json_parse (text ? text : "", len, FUNCTIONS_MAX_PAYLOAD_BYTES, &error);
  }
  if (root && JSON_NODE_HOLDS_OBJECT (root)) {
    JsonObject *answer = json_node_get_object (root);
    JsonNode *simple = json_object_get_member (answer, "isAuthorized");
    if (simple && JSON_NODE_HOLDS_VALUE (simple) &&
        json_node_get_value_type (simple) == G_TYPE_BOOLEAN)
      allow = json_node_get_boolean (simple);
    else
      allow = policy_allows (answer);
    JsonNode *ctx = json_object_get_member (answer, "context");
    if (ctx && JSON_NODE_HOLDS_OBJECT (ctx))
      context = edge_json_to_string (ctx, NULL);
  } else {
    g_warning ("authorizer %s failed (%s): the request is denied", call->function,
               result->error_type      ? result->error_type
               : result->function_error ? result->function_error
               : error                  ? error->message
                                        : "no answer");
  }
  call->done (allow, context, call->done_data);
  g_free (call->function);
  g_free (call);
}

static void
authorize (const char *function, GBytes *event, EdgeAuthorizerDoneFunc done, gpointer done_data,
           gpointer user_data)
{
  FunctionsService *service = user_data;
  g_autoptr (GError) error = NULL;
  AuthorizeCall *call = g_new0 (AuthorizeCall, 1);
  call->function = g_strdup (function);
  call->done = done;
  call->done_data = done_data;
  if (!functions_service_invoke (service, function, NULL, event, authorize_done, call, &error)) {
    g_warning ("authorizer %s: %s: the request is denied", function, error->message);
    g_free (call->function);
    g_free (call);
    done (FALSE, NULL, done_data);
  }
}

gboolean
functions_service_invoke (FunctionsService *service, const char *name, const char *request_id,
                          GBytes *payload, FunctionsDoneFunc done, gpointer user_data,
                          GError **error)
{
  return functions_service_invoke_with_context (service, name, request_id, payload, NULL, done,
                                                user_data, error);
}

gboolean
functions_service_invoke_with_context (FunctionsService *service, const char *name,
                                       const char *request_id, GBytes *payload,
                                       const char *client_context, FunctionsDoneFunc done,
                                       gpointer user_data, GError **error)
{
  Function *fn = g_hash_table_lookup (service->functions, name);
  if (fn == NULL) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_NOT_FOUND, "no function \"%s\"", name);
    return FALSE;
  }
  if (service->stopping) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_THROTTLED, "edged is stopping");
    return FALSE;
  }
  if (g_queue_get_length (&fn->queue) >= FUNCTIONS_MAX_QUEUED) {
    count_throttle (fn);
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_THROTTLED,
                 "function \"%s\": %d invocations already waiting", name, FUNCTIONS_MAX_QUEUED);
    return FALSE;
  }
  Invocation *inv = g_new0 (Invocation, 1);
  inv->id = request_id ? g_strdup (request_id) : edge_uuid_random ();
  inv->fn = fn;
  inv->payload = g_bytes_ref (payload);
  inv->client_context = g_strdup (client_context);
  inv->done = done;
  inv->done_data = user_data;
  inv->started_us = g_get_monotonic_time ();
  g_queue_push_tail (&fn->queue, inv);
  /* A warm environment waiting takes it now (that cannot end it). Anything
   * else is done from the main loop, so that @done never runs inside this
   * call (a start failure ends the invocation at once). */
  Env *warm = NULL;
  for (guint i = 0; i < fn->envs->len && warm == NULL && g_queue_get_length (&fn->queue) == 1;
       i++) {
    Env *env = g_ptr_array_index (fn->envs, i);
    if (env->waiting && env->current == NULL && !env->stopping)
      warm = env;
  }
  if (warm)
    hand_over (warm, g_queue_pop_head (&fn->queue));
  else if (fn->dispatch_source == 0)
    fn->dispatch_source = g_idle_add_full (G_PRIORITY_HIGH, on_dispatch, fn, NULL);
  return TRUE;
}

const EdgeConfigFunction *
functions_service_function (FunctionsService *service, const char *name)
{
  Function *fn = g_hash_table_lookup (service->functions, name);
  return fn ? &fn->config : NULL;
}

const char *
functions_service_arn (FunctionsService *service, const char *name)
{
  Function *fn = g_hash_table_lookup (service->functions, name);
  return fn ? fn->arn : NULL;
}

/* A trigger now names @function: it cannot be deleted through the API. */
static void
reference (FunctionsService *service, const char *function)
{
  if (function == NULL || function[0] == '\0')
    return;
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (service->referenced, function));
  g_hash_table_insert (service->referenced, g_strdup (function), GUINT_TO_POINTER (n + 1));
}

gboolean
functions_service_add_route (FunctionsService *service, const EdgeConfigRoute *config,
                             GError **error)
{
  reference (service, config->function);
  return functions_route_add (service, service->gateway, config, service->routes, error);
}

gboolean
functions_service_add_schedule (FunctionsService *service, const EdgeConfigSchedule *config,
                                GError **error)
{
  for (guint i = 0; i < service->schedules->len; i++)
    if (g_str_equal (functions_schedule_name (service->schedules->pdata[i]), config->name)) {
      g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                   "schedule \"%s\" is defined twice", config->name);
      return FALSE;
    }
  FunctionsSchedule *schedule = functions_schedule_new (
      service->async, config, g_hash_table_contains (service->functions, config->function), error);
  if (schedule == NULL)
    return FALSE;
  g_ptr_array_add (service->schedules, schedule);
  reference (service, config->function);
  return TRUE;
}

gboolean
functions_service_add_mapping (FunctionsService *service, const EdgeConfigMapping *config,
                               GError **error)
{
  for (guint i = 0; i < service->mappings->len; i++) {
    FunctionsMapping *m = service->mappings->pdata[i];
    if (g_str_equal (functions_mapping_stream (m), config->stream) &&
        g_str_equal (functions_mapping_function (m), config->function)) {
      g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                   "mapping %s -> %s is defined twice", config->stream, config->function);
      return FALSE;
    }
  }
  FunctionsMapping *m =
      functions_mapping_new (service, service->streams, service->metrics, config, error);
  if (m == NULL)
    return FALSE;
  g_ptr_array_add (service->mappings, m);
  reference (service, config->function);
  return TRUE;
}

gboolean
functions_service_add_websocket (FunctionsService *service, const EdgeConfigWebSocket *config,
                                 GError **error)
{
  reference (service, config->connect);
  reference (service, config->disconnect);
  reference (service, config->message);
  return functions_websockets_add (service->websockets, config, error);
}

gboolean
functions_service_add_websocket_route (FunctionsService *service,
                                       const EdgeConfigWebSocketRoute *config, GError **error)
{
  reference (service, config->function);
  return functions_websockets_add_route (service->websockets, config, error);
}

/* A definition as POST /v1/functions takes it (the keys and values of a
 * functions: item of the configuration file, as JSON), checked by the
 * configuration's own tables. (transfer full) */
static EdgeConfig *
parse_definition (const char *json, GError **error)
{
  g_autofree char *document = g_strdup_printf ("{\"functions\": [%s]}", json);
  EdgeConfig *config = edge_config_load_data (document, strlen (document), "definition", NULL,
                                              error);
  if (config == NULL)
    return NULL;
  if (config->functions->len != 1) {
    edge_config_free (config);
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID, "one function, please");
    return NULL;
  }
  const EdgeConfigFunction *c = config->functions->pdata[0];
  if (!g_path_is_absolute (c->bootstrap)) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "bootstrap: an absolute path on the box, not \"%s\"", c->bootstrap);
    edge_config_free (config);
    return NULL;
  }
  return config;
}

static const char *const defined_schema[] = {
  "CREATE TABLE functions_defined (name TEXT PRIMARY KEY, definition TEXT NOT NULL)",
};

/* Adds the functions created through the API before a restart. */
static void
load_defined (FunctionsService *service)
{
  sqlite3 *db = edge_state_db (service->state);
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (db, "SELECT name, definition FROM functions_defined", -1, &stmt,
                          NULL) != SQLITE_OK)
    return;
  while (sqlite3_step (stmt) == SQLITE_ROW) {
    const char *name = (const char *) sqlite3_column_text (stmt, 0);
    g_autoptr (GError) error = NULL;
    g_autoptr (EdgeConfig) config =
        parse_definition ((const char *) sqlite3_column_text (stmt, 1), &error);
    if (config == NULL ||
        !functions_service_add (service, config->functions->pdata[0], &error)) {
      g_warning ("function \"%s\" (created through the API) not started: %s", name,
                 error->message);
      continue;
    }
    ((Function *) g_hash_table_lookup (service->functions, name))->from_api = TRUE;
  }
  sqlite3_finalize (stmt);
}

gboolean
functions_service_start (FunctionsService *service, GError **error)
{
  if (service->state)
    load_defined (service);
  return functions_async_start (service->async, error);
}

gboolean
functions_service_invoke_async (FunctionsService *service, const char *name, GBytes *payload,
                                GError **error)
{
  if (functions_service_function (service, name) == NULL) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_NOT_FOUND, "no function %s", name);
    return FALSE;
  }
  if (g_bytes_get_size (payload) > FUNCTIONS_MAX_EVENT_BYTES) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "payload of %" G_GSIZE_FORMAT " bytes is over the %d bytes of an asynchronous "
                 "invocation", g_bytes_get_size (payload), FUNCTIONS_MAX_EVENT_BYTES);
    return FALSE;
  }
  g_autofree char *id = edge_uuid_random ();
  return functions_async_enqueue (service->async, name, id, payload, error);
}

guint
functions_service_environments (FunctionsService *service)
{
  guint n = 0;
  for (guint i = 0; i < service->order->len; i++)
    n += ((Function *) g_ptr_array_index (service->order, i))->envs->len;
  return n;
}

/* Gauges, at every /metrics render (the main thread). */
static void
collect (EdgeMetrics *metrics, gpointer data)
{
  FunctionsService *service = data;
  for (guint i = 0; i < service->order->len; i++) {
    Function *fn = g_ptr_array_index (service->order, i);
    guint busy = 0;
    for (guint j = 0; j < fn->envs->len; j++)
      busy += ((Env *) g_ptr_array_index (fn->envs, j))->current != NULL;
    g_autofree char *labels = g_strdup_printf ("function=\"%s\"", fn->config.name);
    edge_metrics_set (metrics, "edged_function_environments", labels, fn->envs->len);
    edge_metrics_set (metrics, "edged_function_concurrent_executions", labels, busy);
    edge_metrics_set (metrics, "edged_function_queued", labels, g_queue_get_length (&fn->queue));
  }
}

FunctionsService *
functions_service_new (EdgeGateway *gateway, EdgeMetrics *metrics, EdgeState *state,
                       EdgeKeyring *keyring, StreamStore *streams, const char *work_dir,
                       GError **error)
{
  if (g_mkdir_with_parents (work_dir, 0700) != 0) {
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "%s: %s", work_dir,
                 g_strerror (errno));
    return NULL;
  }
  FunctionsService *service = g_new0 (FunctionsService, 1);
  service->gateway = gateway;
  service->metrics = metrics;
  if (metrics) {
    static const double buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                      30, 60, 300, 900 };
    edge_metrics_declare (metrics, "edged_function_invocations_total", EDGE_METRIC_COUNTER,
                          "Invocations ended, by function and result (success, error).", NULL, 0);
    edge_metrics_declare (metrics, "edged_function_throttles_total", EDGE_METRIC_COUNTER,
                          "Invocations refused with TooManyRequestsException.", NULL, 0);
    edge_metrics_declare (metrics, "edged_function_duration_seconds", EDGE_METRIC_HISTOGRAM,
                          "Invocation time as the caller sees it (queue, start, run).", buckets,
                          G_N_ELEMENTS (buckets));
    edge_metrics_declare (metrics, "edged_function_environments", EDGE_METRIC_GAUGE,
                          "Execution environments running or starting.", NULL, 0);
    edge_metrics_declare (metrics, "edged_function_concurrent_executions", EDGE_METRIC_GAUGE,
                          "Invocations running now.", NULL, 0);
    edge_metrics_declare (metrics, "edged_function_queued", EDGE_METRIC_GAUGE,
                          "Invocations waiting for an environment.", NULL, 0);
    edge_metrics_declare (metrics, "edged_function_mapping_records_total", EDGE_METRIC_COUNTER,
                          "Stream records an event source mapping settled, by function, stream "
                          "and result (success; failed: sent to on_failure; dropped).", NULL, 0);
    edge_metrics_add_collector (metrics, collect, service);
  }
  service->streams = streams;
  service->state = state;
  service->referenced = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  service->cgroups = functions_cgroups_new ();
  service->work_dir = g_strdup (work_dir);
  service->functions = g_hash_table_new (g_str_hash, g_str_equal);
  service->order = g_ptr_array_new ();
  service->routes = g_ptr_array_new_with_free_func ((GDestroyNotify) functions_route_free);
  service->schedules =
      g_ptr_array_new_with_free_func ((GDestroyNotify) functions_schedule_free);
  service->mappings = g_ptr_array_new_with_free_func ((GDestroyNotify) functions_mapping_free);
  service->websockets = functions_websockets_new (service, gateway);
  service->logs = functions_logs_new (streams, metrics);
  service->async = functions_async_new (service, state, keyring, streams, metrics, error);
  if (service->async == NULL ||
      !edge_state_migrate (state, "functions_api", defined_schema, G_N_ELEMENTS (defined_schema),
                           error)) {
    functions_service_free (service);
    return NULL;
  }
  static const EdgeRoute routes[] = {
    { "POST", "/2015-03-31/functions/{name}/invocations", handle_invoke,
      "Invoke a function (Lambda Invoke)", "functions", FUNCTIONS_MAX_PAYLOAD_BYTES,
      EDGE_ERRORS_AWS_REST },
    { "GET", "/2015-03-31/functions/{name}", handle_get_function,
      "A function's configuration (Lambda GetFunction)", "functions", 0, EDGE_ERRORS_AWS_REST },
    { "GET", "/2015-03-31/functions/{name}/configuration", handle_get_configuration,
      "A function's configuration alone (Lambda GetFunctionConfiguration)", "functions", 0,
      EDGE_ERRORS_AWS_REST },
    { "GET", "/2019-09-30/functions/{name}/concurrency", handle_get_concurrency,
      "A function's concurrency (Lambda GetFunctionConcurrency)", "functions", 0,
      EDGE_ERRORS_AWS_REST },
    { "GET", "/2019-09-25/functions/{name}/event-invoke-config", handle_get_event_invoke_config,
      "How Event invocations are retried and where they go (Lambda "
      "GetFunctionEventInvokeConfig)", "functions", 0, EDGE_ERRORS_AWS_REST },
    { "GET", "/2015-03-31/functions/", handle_list_functions,
      "The functions (Lambda ListFunctions)", "functions", 0, EDGE_ERRORS_AWS_REST },
    { "GET", "/2015-03-31/event-source-mappings/", handle_list_mappings,
      "Event source mappings (Lambda ListEventSourceMappings)", "functions", 0,
      EDGE_ERRORS_AWS_REST },
    { "GET", "/2015-03-31/event-source-mappings/{uuid}", handle_get_mapping,
      "One event source mapping (Lambda GetEventSourceMapping)", "functions", 0,
      EDGE_ERRORS_AWS_REST },
    { "GET", "/v1/functions", handle_rest_list,
      "The functions, with their environments and queues", "functions", 0 },
    { "GET", "/v1/functions/{name}", handle_rest_get, "One function", "functions", 0 },
    { "POST", "/v1/functions", handle_rest_create,
      "Create a function (the keys of a functions: item, as JSON; kept across restarts)",
      "functions", 64 * 1024 },
    { "DELETE", "/v1/functions/{name}", handle_rest_delete,
      "Delete a function created through the API", "functions", 0 },
    { "GET", "/v1/functions/{name}/logs", handle_rest_logs,
      "A function's log lines (?limit=100, ?since=MS, ?request_id=)", "functions", 0 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (gateway, &routes[i], service, error)) {
      functions_service_free (service);
      return NULL;
    }
  if (gateway)
    edge_gateway_set_authorizer (gateway, authorize, service);
  return service;
}

void
functions_service_free (FunctionsService *service)
{
  if (service == NULL)
    return;
  service->stopping = TRUE;
  g_ptr_array_set_size (service->schedules, 0);
  /* Invocations under way end first (their callers are told), then what
   * made them goes. */
  for (guint i = 0; i < service->order->len; i++)
    function_abandon (g_ptr_array_index (service->order, i));
  g_ptr_array_set_size (service->mappings, 0);
  functions_websockets_free (service->websockets);
  functions_async_free (service->async);
  functions_logs_free (service->logs);
  for (guint i = 0; i < service->order->len; i++)
    function_free (g_ptr_array_index (service->order, i));
  g_ptr_array_unref (service->order);
  g_ptr_array_unref (service->routes);
  g_ptr_array_unref (service->schedules);
  g_ptr_array_unref (service->mappings);
  g_hash_table_unref (service->functions);
  g_hash_table_unref (service->referenced);
  functions_cgroups_free (service->cgroups);
  g_free (service->work_dir);
  g_free (service);
}
