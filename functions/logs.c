/* logs.c: functions' logs, kept as data streams (functions/functions-private.h).
 *
 * Each function has a stream, "function-logs-NAME" (one shard, batched
 * fsync, 24 hours and 64 MiB kept), created when the function is added.
 * Each line an environment writes (stdout and stderr) becomes a record whose
 * partition key is the request id of the invocation it ran then ("-" for
 * lines outside one, such as a runtime's start-up), and so do the START,
 * END and REPORT lines. Lines are gathered and put together every 100 ms,
 * so a chatty handler costs one append per flush, not one per line; a line
 * longer than 256 KiB is cut there, and a function that writes more than
 * 10000 lines between two flushes loses the rest (counted).
 *
 * Anything that reads streams reads them: GET /v1/functions/{name}/logs
 * (the last lines), the WebSocket subscription (edgectl functions logs
 * --follow), the Kinesis API.
 */
#define G_LOG_DOMAIN "functions"

#include "functions-private.h"

#include <string.h>

#define FLUSH_MS 100
#define MAX_PENDING 10000
#define RETENTION_BYTES (64 * 1024 * 1024)

struct _FunctionsLogs {
  StreamStore *streams;
  EdgeMetrics *metrics;
  GHashTable *pending; /* function name -> GPtrArray of Line */
  guint flush_source;
};

typedef struct {
  char *key;
  GBytes *data;
} Line;

static void
line_free (gpointer data)
{
  Line *line = data;
  g_free (line->key);
  g_bytes_unref (line->data);
  g_free (line);
}

char *
functions_logs_stream (const char *function)
{
  return g_strdup_printf ("function-logs-%s", function);
}

gboolean
functions_logs_ensure (FunctionsLogs *logs, const char *function, GError **error)
{
  if (logs->streams == NULL)
    return TRUE;
  g_autofree char *name = functions_logs_stream (function);
  if (stream_store_lookup (logs->streams, name, NULL))
    return TRUE;
  StreamSettings settings;
  stream_settings_init (&settings);
  settings.durability = STREAM_DURABILITY_BATCH;
  settings.batch_ms = 200;
  settings.retention_bytes = RETENTION_BYTES;
  if (!stream_store_create (logs->streams, name, 1, &settings, error))
    return FALSE;
  g_info ("function \"%s\": logs go to the stream %s", function, name);
  return TRUE;
}

static void
on_put (StreamPutResult *results, guint n, gpointer data)
{
  for (guint i = 0; i < n; i++)
    if (results[i].error) {
      g_debug ("a log line was not kept: %s", results[i].error->message);
      break;
    }
}

static gboolean
flush (gpointer data)
{
  FunctionsLogs *logs = data;
  logs->flush_source = 0;
  GHashTableIter iter;
  gpointer key, value;
  g_hash_table_iter_init (&iter, logs->pending);
  while (g_hash_table_iter_next (&iter, &key, &value)) {
    GPtrArray *lines = value;
    g_autofree char *name = functions_logs_stream (key);
    g_autofree StreamPutRecord *records = g_new0 (StreamPutRecord, lines->len);
    for (guint i = 0; i < lines->len; i++) {
      Line *line = g_ptr_array_index (lines, i);
      records[i].partition_key = line->key;
      records[i].data = line->data;
    }
    g_autoptr (GError) error = NULL;
    if (!stream_store_put (logs->streams, name, records, lines->len, on_put, NULL, &error))
      g_debug ("function \"%s\": %u log lines not kept: %s", (const char *) key, lines->len,
               error->message);
    g_hash_table_iter_remove (&iter);
  }
  return G_SOURCE_REMOVE;
}

void
functions_logs_line (FunctionsLogs *logs, const char *function, const char *request_id,
                     const char *text, gsize len)
{
  if (logs->streams == NULL)
    return;
  GPtrArray *lines = g_hash_table_lookup (logs->pending, function);
  if (lines == NULL) {
    lines = g_ptr_array_new_with_free_func (line_free);
    g_hash_table_insert (logs->pending, g_strdup (function), lines);
  }
  if (lines->len >= MAX_PENDING) {
    if (logs->metrics) {
      g_autofree char *labels = g_strdup_printf ("function=\"%s\"", function);
      edge_metrics_add (logs->metrics, "edged_function_log_lines_dropped_total", labels, 1);
    }
    return;
  }
  Line *line = g_new0 (Line, 1);
  line->key = g_strdup (request_id && *request_id ? request_id : "-");
  line->data = g_bytes_new (text, MIN (len, FUNCTIONS_LOG_LINE_MAX));
  g_ptr_array_add (lines, line);
  if (logs->flush_source == 0)
    logs->flush_source = g_timeout_add (FLUSH_MS, flush, logs);
}

FunctionsLogs *
functions_logs_new (StreamStore *streams, EdgeMetrics *metrics)
{
  FunctionsLogs *logs = g_new0 (FunctionsLogs, 1);
  logs->streams = streams;
  logs->metrics = metrics;
  logs->pending = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify) g_ptr_array_unref);
  if (metrics)
    edge_metrics_declare (metrics, "edged_function_log_lines_dropped_total", EDGE_METRIC_COUNTER,
                          "Log lines not kept: more than 10000 between two flushes.", NULL, 0);
  return logs;
}

void
functions_logs_free (FunctionsLogs *logs)
{
  if (logs == NULL)
    return;
  /* What is pending is put now; the store finishes it before it closes. */
  g_clear_handle_id (&logs->flush_source, g_source_remove);
  if (logs->streams)
    flush (logs);
  g_hash_table_unref (logs->pending);
  g_free (logs);
}
