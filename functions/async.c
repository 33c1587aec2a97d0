/* async.c: asynchronous (Event) invocations (functions/functions-private.h).
 *
 * An Event invocation is acknowledged (202) only once it is committed to
 * the state database, its payload sealed; it is deleted only once it
 * succeeded, or once its invocation record is durable in its destination
 * stream. In between it survives restarts and kill -9: what was running
 * then runs again (at least once, as in Lambda).
 *
 *   Invoke (Event) ──▶ function_events ──▶ ready ──▶ invoke ──▶ success ──▶ on_success? ──▶ delete
 *                          ▲                                      │
 *                          └── waiting (retry_delay, ×2 each) ◀── failure
 *                                                                 │ retries spent / too old
 *                                                                 ▼
 *                                                         on_failure? ──▶ delete
 *
 * Each function runs at most its concurrency of them at once, so that
 * synchronous callers still find room in its queue. An invocation
 * throttled (its function's queue full) is tried again a second later,
 * without counting as an attempt.
 */
#define G_LOG_DOMAIN "functions"

#include "functions-private.h"

#include <sqlite3.h>
#include <string.h>

/* Invocations kept at most, over all functions; more are refused with
 * TooManyRequestsException. */
#define MAX_EVENTS 100000
#define THROTTLE_RETRY_MS 1000
/* A destination that could not take the record is tried again after. */
#define DESTINATION_RETRY_MS 5000
#define EVENTS_CONTEXT "functions/events"

typedef struct _Event Event;

typedef struct {
  char *name;
  GQueue ready;   /* Event *, due now */
  guint running;
} Lane;

struct _Event {
  FunctionsAsync *async;
  char *id;
  char *function;
  gint64 accepted_ms; /* wall clock */
  gint64 due_ms;
  guint attempts;     /* finished and failed */
  gboolean running;
  GBytes *record;     /* the invocation record waiting for its destination */
  char *destination;
  GSequenceIter *waiting; /* in async->waiting */
};

struct _FunctionsAsync {
  FunctionsService *service;
  EdgeState *state;
  StreamStore *streams;
  EdgeMetrics *metrics;
  EdgeCipher *cipher;
  GHashTable *events; /* id -> Event */
  GHashTable *lanes;  /* function name -> Lane */
  GSequence *waiting; /* Event *, by due_ms */
  GPtrArray *deliveries; /* Delivery *, puts under way */
  guint timer;
  gint64 timer_due_ms;
};

static const char *const schema[] = {
  "CREATE TABLE function_events ("
  "  id TEXT PRIMARY KEY,"
  "  function TEXT NOT NULL,"
  "  payload BLOB NOT NULL," /* sealed, bound to the id */
  "  attempts INTEGER NOT NULL,"
  "  accepted_ms INTEGER NOT NULL,"
  "  due_ms INTEGER NOT NULL)",
};

static void pump (FunctionsAsync *async, Lane *lane);
static void arm_timer (FunctionsAsync *async);

static gint64
now_ms (void)
{
  return g_get_real_time () / 1000;
}

/* ---- the table ---- */

static gboolean
exec_event (FunctionsAsync *async, const char *sql, const Event *event, GError **error)
{
  sqlite3 *db = edge_state_db (async->state);
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, event->id, -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count (stmt) >= 3) {
      sqlite3_bind_int64 (stmt, 2, event->attempts);
      sqlite3_bind_int64 (stmt, 3, event->due_ms);
    }
    rc = sqlite3_step (stmt);
  }
  sqlite3_finalize (stmt);
  if (rc != SQLITE_DONE && rc != SQLITE_OK) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "%s", sqlite3_errmsg (db));
    return FALSE;
  }
  return TRUE;
}

static void
event_forget (Event *event)
{
  g_autoptr (GError) error = NULL;
  if (!exec_event (event->async, "DELETE FROM function_events WHERE id = ?1", event, &error))
    g_warning ("function \"%s\": cannot delete event %s: %s", event->function, event->id,
               error->message);
  g_hash_table_remove (event->async->events, event->id);
}

static void
event_free (Event *event)
{
  if (event->waiting)
    g_sequence_remove (event->waiting);
  g_free (event->id);
  g_free (event->function);
  g_clear_pointer (&event->record, g_bytes_unref);
  g_free (event->destination);
  g_free (event);
}

/* The payload of @event, opened. (transfer full) */
static GBytes *
event_payload (Event *event, GError **error)
{
  FunctionsAsync *async = event->async;
  sqlite3 *db = edge_state_db (async->state);
  sqlite3_stmt *stmt = NULL;
  GBytes *payload = NULL;
  if (sqlite3_prepare_v2 (db, "SELECT payload FROM function_events WHERE id = ?1", -1, &stmt,
                          NULL) != SQLITE_OK) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "%s", sqlite3_errmsg (db));
    return NULL;
  }
  sqlite3_bind_text (stmt, 1, event->id, -1, SQLITE_STATIC);
  if (sqlite3_step (stmt) != SQLITE_ROW) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "event %s is gone", event->id);
  } else {
    const guint8 *frame = sqlite3_column_blob (stmt, 0);
    gsize len = (gsize) sqlite3_column_bytes (stmt, 0);
    gsize plain_len = 0;
    guint8 *plain = g_malloc (MAX (len, EDGE_FRAME_OVERHEAD) - EDGE_FRAME_OVERHEAD + 1);
    if (len >= EDGE_FRAME_OVERHEAD &&
        edge_cipher_open (async->cipher, frame, len, (const guint8 *) event->id,
                          strlen (event->id), plain, &plain_len, error))
      payload = g_bytes_new_take (plain, plain_len);
    else {
      g_free (plain);
      if (error && *error == NULL)
        g_set_error (error, EDGE_CRYPTO_ERROR, 0, "event %s: not a sealed frame", event->id);
    }
  }
  sqlite3_finalize (stmt);
  return payload;
}

/* ---- scheduling ---- */

static Lane *
lane_for (FunctionsAsync *async, const char *function)
{
  Lane *lane = g_hash_table_lookup (async->lanes, function);
  if (lane == NULL) {
    lane = g_new0 (Lane, 1);
    lane->name = g_strdup (function);
    g_queue_init (&lane->ready);
    g_hash_table_insert (async->lanes, lane->name, lane);
  }
  return lane;
}

static void
lane_free (Lane *lane)
{
  g_queue_clear (&lane->ready);
  g_free (lane->name);
  g_free (lane);
}

static gint
compare_due (gconstpointer a, gconstpointer b, gpointer data)
{
  const Event *x = a, *y = b;
  return (x->due_ms > y->due_ms) - (x->due_ms < y->due_ms);
}

/* Makes @event wait until @due_ms. */
static void
event_wait (Event *event, gint64 due_ms)
{
  FunctionsAsync *async = event->async;
  event->due_ms = due_ms;
  event->waiting = g_sequence_insert_sorted (async->waiting, event, compare_due, NULL);
  arm_timer (async);
}

static gboolean
on_timer (gpointer data)
{
  FunctionsAsync *async = data;
  async->timer = 0;
  gint64 now = now_ms ();
  g_autoptr (GHashTable) touched = g_hash_table_new (NULL, NULL);
  while (!g_sequence_is_empty (async->waiting)) {
    GSequenceIter *first = g_sequence_get_begin_iter (async->waiting);
    Event *event = g_sequence_get (first);
    if (event->due_ms > now)
      break;
    g_sequence_remove (first);
    event->waiting = NULL;
    Lane *lane = lane_for (async, event->function);
    g_queue_push_tail (&lane->ready, event);
    g_hash_table_add (touched, lane);
  }
  GHashTableIter iter;
  gpointer lane;
  g_hash_table_iter_init (&iter, touched);
  while (g_hash_table_iter_next (&iter, &lane, NULL))
    pump (async, lane);
  arm_timer (async);
  return G_SOURCE_REMOVE;
}

/* One timer, for the first invocation waiting. */
static void
arm_timer (FunctionsAsync *async)
{
  if (g_sequence_is_empty (async->waiting)) {
    g_clear_handle_id (&async->timer, g_source_remove);
    return;
  }
  Event *first = g_sequence_get (g_sequence_get_begin_iter (async->waiting));
  if (async->timer && async->timer_due_ms <= first->due_ms)
    return;
  g_clear_handle_id (&async->timer, g_source_remove);
  gint64 delay = MAX (0, first->due_ms - now_ms ());
  async->timer_due_ms = first->due_ms;
  async->timer = g_timeout_add ((guint) MIN (delay, G_MAXINT), on_timer, async);
}

/* ---- destinations ---- */

const char *
functions_destination_stream (const char *destination)
{
  const char *slash = g_str_has_prefix (destination, "arn:") ? strstr (destination, ":stream/")
                                                              : NULL;
  return slash ? slash + strlen (":stream/") : destination;
}

gboolean
functions_destination_check (StreamStore *streams, const char *destination, GError **error)
{
  if (g_str_has_prefix (destination, "arn:") &&
      (!g_str_has_prefix (destination, "arn:aws:kinesis:") ||
       strstr (destination, ":stream/") == NULL)) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "%s: only Kinesis streams (arn:aws:kinesis:…:stream/NAME) are destinations",
                 destination);
    return FALSE;
  }
  const char *name = functions_destination_stream (destination);
  if (streams == NULL || stream_store_lookup (streams, name, NULL) == NULL) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "no data stream \"%s\" (declare it under streams)", name);
    return FALSE;
  }
  return TRUE;
}

void
functions_append_json_or_string (GString *out, GBytes *payload)
{
  gsize len;
  const char *data = g_bytes_get_data (payload, &len);
  g_autoptr (JsonNode) parsed =
      len > 0 ? edge_json_parse (data, len, FUNCTIONS_MAX_PAYLOAD_BYTES, NULL) : NULL;
  if (parsed)
    g_string_append_len (out, data, (gssize) len);
  else if (g_utf8_validate (data, (gssize) len, NULL))
    edge_json_append_string (out, data, len);
  else {
    g_autofree char *base64 = g_base64_encode ((const guchar *) data, len);
    edge_json_append_string (out, base64, strlen (base64));
  }
}

/* Lambda's invocation record, as destinations receive it. */
static GBytes *
invocation_record (Event *event, const char *condition, GBytes *request,
                   const FunctionsResult *result)
{
  g_autofree char *timestamp = functions_iso_time (g_get_real_time () / 1000);
  const char *arn = functions_service_arn (event->async->service, event->function);
  GString *out = g_string_new ("{\"version\":\"1.0\",\"timestamp\":");
  edge_json_append_string (out, timestamp, strlen (timestamp));
  g_string_append (out, ",\"requestContext\":{\"requestId\":");
  edge_json_append_string (out, event->id, strlen (event->id));
  g_autofree char *qualified = g_strdup_printf ("%s:$LATEST", arn ? arn : event->function);
  g_string_append (out, ",\"functionArn\":");
  edge_json_append_string (out, qualified, strlen (qualified));
  g_string_append (out, ",\"condition\":");
  edge_json_append_string (out, condition, strlen (condition));
  g_string_append_printf (out, ",\"approximateInvokeCount\":%u},\"requestPayload\":",
                          event->attempts);
  if (request)
    functions_append_json_or_string (out, request);
  else
    g_string_append (out, "null");
  if (result && result->payload) {
    g_string_append (out, ",\"responseContext\":{\"statusCode\":200,"
                          "\"executedVersion\":\"$LATEST\"");
    if (result->function_error) {
      g_string_append (out, ",\"functionError\":");
      edge_json_append_string (out, result->function_error, strlen (result->function_error));
    }
    g_string_append (out, "},\"responsePayload\":");
    functions_append_json_or_string (out, result->payload);
  }
  g_string_append_c (out, '}');
  return g_string_free_to_bytes (out);
}

/* A put under way; outlives the queue if the service stops first. */
typedef struct {
  FunctionsAsync *async; /* NULL once the queue is freed */
  char *id;
} Delivery;

static void put_done (StreamPutResult *results, guint n, gpointer data);

/* Puts @event's record into its destination, then forgets the event. */
static void
deliver (Event *event)
{
  FunctionsAsync *async = event->async;
  const char *stream = functions_destination_stream (event->destination);
  StreamPutRecord put = { .partition_key = event->id, .data = event->record };
  Delivery *delivery = g_new0 (Delivery, 1);
  delivery->async = async;
  delivery->id = g_strdup (event->id);
  g_autoptr (GError) error = NULL;
  if (!stream_store_put (async->streams, stream, &put, 1, put_done, delivery, &error)) {
    g_free (delivery->id);
    g_free (delivery);
    g_warning ("function \"%s\": event %s: destination %s: %s (trying again in %d s)",
               event->function, event->id, stream, error->message, DESTINATION_RETRY_MS / 1000);
    event_wait (event, now_ms () + DESTINATION_RETRY_MS);
    return;
  }
  event->running = TRUE;
  g_ptr_array_add (async->deliveries, delivery);
}

static void
put_done (StreamPutResult *results, guint n, gpointer data)
{
  Delivery *delivery = data;
  FunctionsAsync *async = delivery->async;
  Event *event = async ? g_hash_table_lookup (async->events, delivery->id) : NULL;
  if (async)
    g_ptr_array_remove_fast (async->deliveries, delivery);
  g_free (delivery->id);
  g_free (delivery);
  if (event == NULL)
    return; /* kept for the next start */
  event->running = FALSE;
  if (n == 1 && results[0].error == NULL) {
    if (async->metrics) {
      g_autofree char *labels = g_strdup_printf ("function=\"%s\"", event->function);
      edge_metrics_add (async->metrics, "edged_function_destination_records_total", labels, 1);
    }
    event_forget (event);
    return;
  }
  g_warning ("function \"%s\": event %s: destination %s: %s (trying again in %d s)",
             event->function, event->id, event->destination,
             n == 1 ? results[0].error->message : "not stored", DESTINATION_RETRY_MS / 1000);
  event_wait (event, now_ms () + DESTINATION_RETRY_MS);
}

/* @event is done with: its record goes to @destination (if any), then it
 * is forgotten. */
static void
event_settle (Event *event, const char *condition, const char *destination, GBytes *request,
              const FunctionsResult *result)
{
  FunctionsAsync *async = event->async;
  Lane *lane = lane_for (async, event->function);
  if (destination == NULL || destination[0] == '\0') {
    if (!g_str_equal (condition, "Success"))
      g_warning ("function \"%s\": event %s dropped (%s, %u attempts; no on_failure stream)",
                 event->function, event->id, condition, event->attempts);
    event_forget (event);
  } else {
    event->record = invocation_record (event, condition, request, result);
    event->destination = g_strdup (destination);
    deliver (event);
  }
  pump (async, lane);
}

/* ---- running them ---- */

static void
on_event_done (const FunctionsResult *result, gpointer data)
{
  Event *event = data;
  FunctionsAsync *async = event->async;
  Lane *lane = lane_for (async, event->function);
  event->running = FALSE;
  lane->running--;
  if (result->stopping)
    return; /* kept for the next start */
  const EdgeConfigFunction *config = functions_service_function (async->service, event->function);
  if (config == NULL)
    return; /* cannot be: functions stay while the service runs */
  event->attempts++;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) request = event_payload (event, &error);
  if (result->function_error == NULL) {
    event_settle (event, "Success", config->on_success, request, result);
    return;
  }
  gint64 delay = config->retry_delay_ms << MIN (event->attempts - 1, 20u);
  gint64 due = now_ms () + delay;
  if (event->attempts > (guint) config->max_retry_attempts) {
    event_settle (event, "RetriesExhausted", config->on_failure, request, result);
    return;
  }
  if (due - event->accepted_ms > config->max_event_age_ms) {
    event_settle (event, "EventAgeExceeded", config->on_failure, request, result);
    return;
  }
  if (!exec_event (async, "UPDATE function_events SET attempts = ?2, due_ms = ?3 WHERE id = ?1",
                   &(Event){ .id = event->id, .attempts = event->attempts, .due_ms = due },
                   &error))
    g_warning ("function \"%s\": event %s: %s", event->function, event->id, error->message);
  g_message ("function \"%s\": event %s failed (attempt %u), retrying in %.1f s",
             event->function, event->id, event->attempts, delay / 1000.0);
  event_wait (event, due);
  pump (async, lane);
}

/* Starts what @lane has ready, up to its function's concurrency. */
static void
pump (FunctionsAsync *async, Lane *lane)
{
  const EdgeConfigFunction *config = functions_service_function (async->service, lane->name);
  while (!g_queue_is_empty (&lane->ready)) {
    Event *event = g_queue_peek_head (&lane->ready);
    if (config == NULL) {
      /* The function is no longer defined: kept until it is again. */
      g_queue_pop_head (&lane->ready);
      event_wait (event, now_ms () + 60 * 1000);
      continue;
    }
    if (event->record) {
      g_queue_pop_head (&lane->ready);
      deliver (event);
      continue;
    }
    if (now_ms () - event->accepted_ms > config->max_event_age_ms) {
      g_queue_pop_head (&lane->ready);
      g_autoptr (GBytes) request = event_payload (event, NULL);
      event_settle (event, "EventAgeExceeded", config->on_failure, request, NULL);
      return; /* event_settle pumped */
    }
    if (lane->running >= (guint) config->concurrency)
      return;
    g_queue_pop_head (&lane->ready);
    g_autoptr (GError) error = NULL;
    g_autoptr (GBytes) payload = event_payload (event, &error);
    if (payload == NULL) {
      g_warning ("function \"%s\": event %s cannot be read, dropped: %s", event->function,
                 event->id, error->message);
      event_forget (event);
      continue;
    }
    if (!functions_service_invoke (async->service, event->function, event->id, payload,
                                   on_event_done, event, &error)) {
      event_wait (event, now_ms () + THROTTLE_RETRY_MS);
      return;
    }
    event->running = TRUE;
    lane->running++;
  }
}

/* ---- the queue ---- */

static Event *
event_new (FunctionsAsync *async, const char *id, const char *function)
{
  Event *event = g_new0 (Event, 1);
  event->async = async;
  event->id = g_strdup (id);
  event->function = g_strdup (function);
  g_hash_table_insert (async->events, event->id, event);
  return event;
}

gboolean
functions_async_enqueue (FunctionsAsync *async, const char *function, const char *request_id,
                         GBytes *payload, GError **error)
{
  if (g_hash_table_size (async->events) >= MAX_EVENTS) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_THROTTLED,
                 "%d asynchronous invocations are already waiting", MAX_EVENTS);
    return FALSE;
  }
  gsize len;
  const guint8 *data = g_bytes_get_data (payload, &len);
  g_autofree guint8 *frame = g_malloc (len + EDGE_FRAME_OVERHEAD);
  if (!edge_cipher_seal (async->cipher, data, len, (const guint8 *) request_id,
                         strlen (request_id), frame, error))
    return FALSE;
  gint64 now = now_ms ();
  sqlite3 *db = edge_state_db (async->state);
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2 (db,
                               "INSERT INTO function_events (id, function, payload, attempts, "
                               "accepted_ms, due_ms) VALUES (?1, ?2, ?3, 0, ?4, ?4)",
                               -1, &stmt, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, request_id, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 2, function, -1, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, 3, frame, (int) (len + EDGE_FRAME_OVERHEAD), SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 4, now);
    rc = sqlite3_step (stmt);
  }
  sqlite3_finalize (stmt);
  if (rc != SQLITE_DONE) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "cannot keep the invocation: %s",
                 sqlite3_errmsg (db));
    return FALSE;
  }
  Event *event = event_new (async, request_id, function);
  event->accepted_ms = now;
  event_wait (event, now);
  return TRUE;
}

gboolean
functions_async_start (FunctionsAsync *async, GError **error)
{
  sqlite3 *db = edge_state_db (async->state);
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (db,
                          "SELECT id, function, attempts, accepted_ms, due_ms FROM "
                          "function_events ORDER BY accepted_ms",
                          -1, &stmt, NULL) != SQLITE_OK) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "%s", sqlite3_errmsg (db));
    return FALSE;
  }
  guint n = 0;
  while (sqlite3_step (stmt) == SQLITE_ROW) {
    const char *id = (const char *) sqlite3_column_text (stmt, 0);
    if (g_hash_table_contains (async->events, id))
      continue;
    Event *event = event_new (async, id, (const char *) sqlite3_column_text (stmt, 1));
    event->attempts = (guint) sqlite3_column_int64 (stmt, 2);
    event->accepted_ms = sqlite3_column_int64 (stmt, 3);
    event_wait (event, sqlite3_column_int64 (stmt, 4));
    n++;
  }
  sqlite3_finalize (stmt);
  if (n > 0)
    g_message ("functions: %u asynchronous invocation%s resumed", n, n == 1 ? "" : "s");
  return TRUE;
}

/* Gauges, at every /metrics render. */
static void
collect (EdgeMetrics *metrics, gpointer data)
{
  FunctionsAsync *async = data;
  g_autoptr (GHashTable) counts = g_hash_table_new (g_str_hash, g_str_equal);
  GHashTableIter iter;
  gpointer value;
  g_hash_table_iter_init (&iter, async->events);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    Event *event = value;
    guint n = GPOINTER_TO_UINT (g_hash_table_lookup (counts, event->function));
    g_hash_table_insert (counts, event->function, GUINT_TO_POINTER (n + 1));
  }
  g_hash_table_iter_init (&iter, async->lanes);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    Lane *lane = value;
    g_autofree char *labels = g_strdup_printf ("function=\"%s\"", lane->name);
    edge_metrics_set (metrics, "edged_function_async_events", labels,
                      GPOINTER_TO_UINT (g_hash_table_lookup (counts, lane->name)));
  }
}

FunctionsAsync *
functions_async_new (FunctionsService *service, EdgeState *state, EdgeKeyring *keyring,
                     StreamStore *streams, EdgeMetrics *metrics, GError **error)
{
  if (!edge_state_migrate (state, "functions", schema, G_N_ELEMENTS (schema), error))
    return NULL;
  EdgeCipher *cipher = edge_cipher_new (keyring, EVENTS_CONTEXT, error);
  if (cipher == NULL)
    return NULL;
  FunctionsAsync *async = g_new0 (FunctionsAsync, 1);
  async->service = service;
  async->state = state;
  async->streams = streams;
  async->metrics = metrics;
  async->cipher = cipher;
  async->events = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) event_free);
  async->lanes = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) lane_free);
  async->waiting = g_sequence_new (NULL);
  async->deliveries = g_ptr_array_new ();
  if (metrics) {
    edge_metrics_declare (metrics, "edged_function_async_events", EDGE_METRIC_GAUGE,
                          "Asynchronous invocations kept (waiting, running or retrying).", NULL,
                          0);
    edge_metrics_declare (metrics, "edged_function_destination_records_total",
                          EDGE_METRIC_COUNTER,
                          "Invocation records put into on_success and on_failure streams.",
                          NULL, 0);
    edge_metrics_add_collector (metrics, collect, async);
  }
  return async;
}

void
functions_async_free (FunctionsAsync *async)
{
  if (async == NULL)
    return;
  g_clear_handle_id (&async->timer, g_source_remove);
  for (guint i = 0; i < async->deliveries->len; i++)
    ((Delivery *) g_ptr_array_index (async->deliveries, i))->async = NULL;
  g_ptr_array_unref (async->deliveries);
  g_hash_table_unref (async->lanes);
  g_hash_table_unref (async->events);
  g_sequence_free (async->waiting);
  edge_cipher_free (async->cipher);
  g_free (async);
}
