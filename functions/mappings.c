/* mappings.c: event source mappings, a function invoked with a data
 * stream's records (functions/functions-private.h).
 *
 * A mapping is a registered consumer of its stream ("lambda-FUNCTION"),
 * so each shard's records come in order, one batch at a time, from the
 * consumer's checkpoint, which moves past a batch only once all of it is
 * settled: delivery is at least once, across restarts and kill -9.
 *
 * A batch is worked as a list of ranges, first the whole of it:
 *
 *   invoke(range) ── success ──────────────────────────────▶ next range
 *        │         ── batchItemFailures from record i ──▶ [i, end) failed
 *        └─ error ─▶ retries left? ── bisect, > 1 record ──▶ two halves, in order
 *                         │       └── otherwise ─────────▶ the same range again
 *                         └─ none ──▶ on_failure gets its KinesisBatchInfo ──▶ next range
 *
 * When no range is left the batch is done and the checkpoint moves.
 * Records older than max_record_age are not sent: they go to on_failure
 * as a batch of their own ("RecordAgeExceeded").
 */
#define G_LOG_DOMAIN "functions"

#include "functions-private.h"

#include <math.h>
#include <string.h>

/* A range tried again waits this long, doubled each time, up to the cap. */
#define RETRY_FIRST_MS 200
#define RETRY_MAX_MS 30000
/* An invocation refused (queue full) or a destination that failed: again
 * after this. */
#define BUSY_RETRY_MS 1000

typedef struct _Work Work;

typedef struct {
  guint start, end; /* records [start, end) of the batch */
  guint attempts;   /* failed invocations of this range */
} Range;

struct _FunctionsMapping {
  FunctionsService *service;
  StreamStore *streams;
  EdgeMetrics *metrics;
  EdgeConfigMapping config;
  char *stream_arn;
  char *function_arn;
  char *label; /* "function=\"F\",stream=\"S\"" */
  StreamConsumer *consumer;
  GPtrArray *works; /* Work *, batches under way */
};

struct _Work {
  FunctionsMapping *mapping; /* NULL once the mapping is gone */
  StreamBatch *batch;
  GQueue ranges;             /* Range *, still to settle, in order */
  guint timer;
  gboolean putting;          /* a destination record is being stored */
};

static void work_run (Work *work);
static gboolean on_retry (gpointer data);

/* ---- the Kinesis event ---- */

static void
append_event_source (GString *out, FunctionsMapping *m)
{
  g_string_append (out, "\"eventSource\":\"aws:kinesis\",\"eventVersion\":\"1.0\","
                        "\"eventName\":\"aws:kinesis:record\",\"invokeIdentityArn\":"
                        "\"arn:aws:iam::" FUNCTIONS_ACCOUNT ":role/edged\",\"awsRegion\":\""
                        FUNCTIONS_REGION "\",\"eventSourceARN\":");
  edge_json_append_string (out, m->stream_arn, strlen (m->stream_arn));
}

static GBytes *
kinesis_event (FunctionsMapping *m, StreamBatch *batch, const Range *range)
{
  GString *out = g_string_new ("{\"Records\":[");
  for (guint i = range->start; i < range->end; i++) {
    StreamRecord *r = g_ptr_array_index (batch->records, i);
    char seq[STREAM_SEQUENCE_MAX_LEN + 1];
    stream_sequence_format_to (batch->shard_ordinal, r->number, seq);
    if (i > range->start)
      g_string_append_c (out, ',');
    g_string_append (out, "{\"kinesis\":{\"kinesisSchemaVersion\":\"1.0\",\"partitionKey\":");
    edge_json_append_string (out, r->partition_key, strlen (r->partition_key));
    g_string_append_printf (out, ",\"sequenceNumber\":\"%s\",\"data\":\"", seq);
    gsize len;
    const guchar *data = g_bytes_get_data (r->data, &len);
    g_autofree char *base64 = g_base64_encode (data, len);
    g_string_append (out, base64);
    g_string_append_printf (out, "\",\"approximateArrivalTimestamp\":%" G_GINT64_FORMAT ".%03d},",
                            r->arrival_ms / 1000, (int) (r->arrival_ms % 1000));
    g_string_append_printf (out, "\"eventID\":\"%s:%s\",", batch->shard_id, seq);
    append_event_source (out, m);
    g_string_append_c (out, '}');
  }
  g_string_append (out, "]}");
  return g_string_free_to_bytes (out);
}

/* ---- on_failure ---- */

/* Lambda's record for a batch given up on: where it is, not what it held. */
static GBytes *
failure_record (Work *work, const Range *range, const char *condition,
                const FunctionsResult *result, const char *request_id)
{
  FunctionsMapping *m = work->mapping;
  StreamBatch *batch = work->batch;
  StreamRecord *first = g_ptr_array_index (batch->records, range->start);
  StreamRecord *last = g_ptr_array_index (batch->records, range->end - 1);
  char start_seq[STREAM_SEQUENCE_MAX_LEN + 1], end_seq[STREAM_SEQUENCE_MAX_LEN + 1];
  stream_sequence_format_to (batch->shard_ordinal, first->number, start_seq);
  stream_sequence_format_to (batch->shard_ordinal, last->number, end_seq);
  g_autofree char *now = functions_iso_time (g_get_real_time () / 1000);
  g_autofree char *first_at = functions_iso_time (first->arrival_ms);
  g_autofree char *last_at = functions_iso_time (last->arrival_ms);
  GString *out = g_string_new ("{\"requestContext\":{\"requestId\":");
  edge_json_append_string (out, request_id, strlen (request_id));
  g_string_append (out, ",\"functionArn\":");
  edge_json_append_string (out, m->function_arn, strlen (m->function_arn));
  g_string_append_printf (out, ",\"condition\":\"%s\",\"approximateInvokeCount\":%u}", condition,
                          range->attempts);
  if (result && result->payload) {
    g_string_append (out, ",\"responseContext\":{\"statusCode\":200,\"executedVersion\":"
                          "\"$LATEST\"");
    if (result->function_error)
      g_string_append_printf (out, ",\"functionError\":\"%s\"", result->function_error);
    g_string_append_c (out, '}');
  }
  g_string_append_printf (out, ",\"version\":\"1.0\",\"timestamp\":\"%s\",\"KinesisBatchInfo\":"
                          "{\"shardId\":\"%s\",\"startSequenceNumber\":\"%s\","
                          "\"endSequenceNumber\":\"%s\",\"approximateArrivalOfFirstRecord\":"
                          "\"%s\",\"approximateArrivalOfLastRecord\":\"%s\",\"batchSize\":%u,"
                          "\"streamArn\":",
                          now, batch->shard_id, start_seq, end_seq, first_at, last_at,
                          range->end - range->start);
  edge_json_append_string (out, m->stream_arn, strlen (m->stream_arn));
  g_string_append (out, "}}");
  return g_string_free_to_bytes (out);
}

static void
count (FunctionsMapping *m, const char *metric, const char *result, double n)
{
  if (m->metrics == NULL)
    return;
  g_autofree char *labels = result ? g_strdup_printf ("%s,result=\"%s\"", m->label, result)
                                   : g_strdup (m->label);
  edge_metrics_add (m->metrics, metric, labels, n);
}

static void
work_free (Work *work)
{
  g_clear_handle_id (&work->timer, g_source_remove);
  g_queue_clear_full (&work->ranges, g_free);
  g_free (work);
}

/* Ends @work: the batch is done with (@settled) or is to come again. */
static void
work_finish (Work *work, StreamConsumer *consumer, gboolean settled)
{
  FunctionsMapping *m = work->mapping;
  if (m)
    g_ptr_array_remove_fast (m->works, work);
  stream_consumer_done (consumer, work->batch, settled);
  work_free (work);
}

typedef struct {
  Work *work;
  StreamConsumer *consumer; /* a reference the put holds */
} Put;

static void
on_failure_put (StreamPutResult *results, guint n, gpointer data)
{
  Put *put = data;
  Work *work = put->work;
  StreamConsumer *consumer = put->consumer;
  g_free (put);
  work->putting = FALSE;
  if (work->mapping == NULL) {
    /* The mapping went meanwhile: the batch comes again after a restart. */
    stream_consumer_done (consumer, work->batch, FALSE);
    work_free (work);
    return;
  }
  FunctionsMapping *m = work->mapping;
  if (n != 1 || results[0].error) {
    g_warning ("mapping %s -> %s: on_failure %s: %s (trying again)", m->config.stream,
               m->config.function, m->config.on_failure,
               n == 1 ? results[0].error->message : "not stored");
    work->timer = g_timeout_add (BUSY_RETRY_MS, on_retry, work);
    return;
  }
  count (m, "edged_function_mapping_records_total", "failed",
         ((Range *) g_queue_peek_head (&work->ranges))->end -
             ((Range *) g_queue_peek_head (&work->ranges))->start);
  g_free (g_queue_pop_head (&work->ranges));
  work_run (work);
}

/* The head range is given up on: its record goes to on_failure (if any),
 * then the work goes on. */
static void
give_up (Work *work, const char *condition, const FunctionsResult *result,
         const char *request_id)
{
  FunctionsMapping *m = work->mapping;
  Range *range = g_queue_peek_head (&work->ranges);
  g_warning ("mapping %s -> %s: %s: giving up on %u record%s of %s (%s)", m->config.stream,
             m->config.function, condition, range->end - range->start,
             range->end - range->start == 1 ? "" : "s", work->batch->shard_id,
             m->config.on_failure[0] ? "sent to on_failure" : "no on_failure stream: dropped");
  if (m->config.on_failure[0] == '\0') {
    count (m, "edged_function_mapping_records_total", "dropped", range->end - range->start);
    g_free (g_queue_pop_head (&work->ranges));
    work_run (work);
    return;
  }
  g_autoptr (GBytes) record = failure_record (work, range, condition, result, request_id);
  /* Kept in the work until stored: retried from the work's timer. */
  StreamPutRecord put = { .partition_key = work->batch->shard_id, .data = record };
  Put *p = g_new0 (Put, 1);
  p->work = work;
  p->consumer = m->consumer;
  g_autoptr (GError) error = NULL;
  if (!stream_store_put (m->streams, functions_destination_stream (m->config.on_failure), &put, 1,
                         on_failure_put, p, &error)) {
    g_free (p);
    g_warning ("mapping %s -> %s: on_failure %s: %s (trying again)", m->config.stream,
               m->config.function, m->config.on_failure, error->message);
    /* Run again: the range is still at the head and still over its retries. */
    work->timer = g_timeout_add (BUSY_RETRY_MS, on_retry, work);
    return;
  }
  work->putting = TRUE;
}

/* ---- invoking ---- */

/* The index of the first record of @range that the response lists in
 * batchItemFailures; range->end for none; G_MAXUINT when the list is
 * malformed or names a record not in the range (then all of it failed). */
static guint
first_item_failure (Work *work, const Range *range, GBytes *payload)
{
  gsize len;
  const char *data = g_bytes_get_data (payload, &len);
  g_autoptr (JsonNode) root = edge_json_parse (data, len, FUNCTIONS_MAX_PAYLOAD_BYTES, NULL);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return range->end;
  JsonNode *failures = json_object_get_member (json_node_get_object (root), "batchItemFailures");
  if (failures == NULL || JSON_NODE_HOLDS_NULL (failures))
    return range->end;
  if (!JSON_NODE_HOLDS_ARRAY (failures))
    return G_MAXUINT;
  JsonArray *array = json_node_get_array (failures);
  guint first = range->end;
  for (guint i = 0; i < json_array_get_length (array); i++) {
    JsonNode *item = json_array_get_element (array, i);
    const char *id = JSON_NODE_HOLDS_OBJECT (item)
                         ? json_object_get_string_member_with_default (
                               json_node_get_object (item), "itemIdentifier", NULL)
                         : NULL;
    guint32 ordinal;
    guint64 number;
    if (id == NULL || !stream_sequence_parse (id, &ordinal, &number) ||
        ordinal != work->batch->shard_ordinal)
      return G_MAXUINT;
    guint found = G_MAXUINT;
    for (guint r = range->start; r < range->end && found == G_MAXUINT; r++)
      if (((StreamRecord *) g_ptr_array_index (work->batch->records, r))->number == number)
        found = r;
    if (found == G_MAXUINT)
      return G_MAXUINT;
    first = MIN (first, found);
  }
  return first;
}

static gboolean
on_retry (gpointer data)
{
  Work *work = data;
  work->timer = 0;
  work_run (work);
  return G_SOURCE_REMOVE;
}

static void
on_invoked (const FunctionsResult *result, gpointer data)
{
  Work *work = data;
  FunctionsMapping *m = work->mapping;
  if (result->stopping || m == NULL) {
    if (m)
      work_finish (work, m->consumer, FALSE);
    return;
  }
  Range *range = g_queue_peek_head (&work->ranges);
  guint failed_from = range->start;
  if (result->function_error == NULL) {
    failed_from = m->config.report_batch_item_failures
                      ? first_item_failure (work, range, result->payload)
                      : range->end;
    if (failed_from == G_MAXUINT)
      failed_from = range->start;
  }
  if (failed_from == range->end) {
    count (m, "edged_function_mapping_records_total", "success", range->end - range->start);
    g_free (g_queue_pop_head (&work->ranges));
    work_run (work);
    return;
  }
  /* Records before the first failure are done. */
  if (failed_from > range->start) {
    count (m, "edged_function_mapping_records_total", "success", failed_from - range->start);
    range->start = failed_from;
  }
  range->attempts++;
  gint64 max = m->config.max_retry_attempts;
  if (m->config.bisect_on_error && range->end - range->start > 1) {
    /* Two halves, each with its own retries. */
    Range *second = g_new0 (Range, 1);
    second->start = range->start + (range->end - range->start) / 2;
    second->end = range->end;
    range->end = second->start;
    range->attempts = 0;
    g_queue_push_nth (&work->ranges, second, 1);
    work_run (work);
    return;
  }
  if (max >= 0 && range->attempts > (guint) max) {
    give_up (work, "RetryAttemptsExhausted", result, result->request_id);
    return;
  }
  guint delay = (guint) MIN ((gint64) RETRY_FIRST_MS << MIN (range->attempts - 1, 10u),
                             RETRY_MAX_MS);
  work->timer = g_timeout_add (delay, on_retry, work);
}

/* Settles the head range, or finishes the batch when none is left. */
static void
work_run (Work *work)
{
  FunctionsMapping *m = work->mapping;
  work->timer = 0;
  Range *range = g_queue_peek_head (&work->ranges);
  if (range == NULL) {
    work_finish (work, m->consumer, TRUE);
    return;
  }
  if (m->config.max_retry_attempts >= 0 && range->attempts > (guint) m->config.max_retry_attempts) {
    give_up (work, "RetryAttemptsExhausted", NULL, "");
    return;
  }
  g_autoptr (GBytes) event = kinesis_event (m, work->batch, range);
  g_autoptr (GError) error = NULL;
  if (!functions_service_invoke (m->service, m->config.function, NULL, event, on_invoked, work,
                                 &error))
    work->timer = g_timeout_add (BUSY_RETRY_MS, on_retry, work);
}

static void
on_batch (StreamConsumer *consumer, StreamBatch *batch, gpointer data)
{
  FunctionsMapping *m = data;
  Work *work = g_new0 (Work, 1);
  work->mapping = m;
  work->batch = batch;
  g_queue_init (&work->ranges);
  g_ptr_array_add (m->works, work);
  guint n = batch->records->len, fresh = 0;
  /* Records past their age, oldest first, go apart. */
  if (m->config.max_record_age_ms > 0) {
    gint64 oldest = g_get_real_time () / 1000 - m->config.max_record_age_ms;
    while (fresh < n &&
           ((StreamRecord *) g_ptr_array_index (batch->records, fresh))->arrival_ms < oldest)
      fresh++;
  }
  if (fresh < n) {
    Range *range = g_new0 (Range, 1);
    range->start = fresh;
    range->end = n;
    g_queue_push_tail (&work->ranges, range);
  }
  if (fresh > 0) {
    Range *old = g_new0 (Range, 1);
    old->end = fresh;
    g_queue_push_head (&work->ranges, old);
    give_up (work, "RecordAgeExceeded", NULL, "");
    return;
  }
  work_run (work);
}

/* ---- the mapping ---- */

FunctionsMapping *
functions_mapping_new (FunctionsService *service, StreamStore *streams, EdgeMetrics *metrics,
                       const EdgeConfigMapping *config, GError **error)
{
  const char *function_arn = functions_service_arn (service, config->function);
  if (function_arn == NULL) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "mapping %s -> %s: no function \"%s\"", config->stream, config->function,
                 config->function);
    return NULL;
  }
  if (streams == NULL || stream_store_lookup (streams, config->stream, NULL) == NULL) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "mapping %s -> %s: no data stream \"%s\" (declare it under streams)",
                 config->stream, config->function, config->stream);
    return NULL;
  }
  if (config->on_failure[0] && !functions_destination_check (streams, config->on_failure, error)) {
    g_prefix_error (error, "mapping %s -> %s: on_failure: ", config->stream, config->function);
    return NULL;
  }
  FunctionsMapping *m = g_new0 (FunctionsMapping, 1);
  m->service = service;
  m->streams = streams;
  m->metrics = metrics;
  m->config = *config;
  m->config.stream = g_strdup (config->stream);
  m->config.function = g_strdup (config->function);
  m->config.starting_position = g_strdup (config->starting_position);
  m->config.on_failure = g_strdup (config->on_failure);
  m->stream_arn = g_strdup_printf ("arn:aws:kinesis:" FUNCTIONS_REGION ":" FUNCTIONS_ACCOUNT
                                   ":stream/%s", config->stream);
  m->function_arn = g_strdup (function_arn);
  m->label = g_strdup_printf ("function=\"%s\",stream=\"%s\"", config->function, config->stream);
  m->works = g_ptr_array_new ();
  g_autofree char *consumer = g_strdup_printf ("lambda-%s", config->function);
  m->consumer = stream_consumer_start (
      streams, config->stream, consumer,
      g_str_equal (config->starting_position, "TRIM_HORIZON") ? STREAM_START_TRIM_HORIZON
                                                               : STREAM_START_LATEST,
      (guint) config->batch_size, on_batch, m, error);
  if (m->consumer == NULL) {
    functions_mapping_free (m);
    return NULL;
  }
  stream_consumer_set_batching_window (m->consumer, (guint) config->batching_window_ms);
  g_message ("mapping %s -> %s: batches of %" G_GINT64_FORMAT " from %s", config->stream,
             config->function, config->batch_size, config->starting_position);
  return m;
}

char *
functions_mapping_uuid (FunctionsMapping *m)
{
  /* Stable across restarts: from what identifies the mapping. */
  g_autofree char *key = g_strdup_printf ("%s\n%s", m->config.stream, m->config.function);
  g_autofree char *h = g_compute_checksum_for_string (G_CHECKSUM_SHA256, key, -1);
  return g_strdup_printf ("%.8s-%.4s-4%.3s-a%.3s-%.12s", h, h + 8, h + 12, h + 15, h + 18);
}

JsonNode *
functions_mapping_describe (FunctionsMapping *m)
{
  g_autofree char *uuid = functions_mapping_uuid (m);
  const EdgeConfigMapping *c = &m->config;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "UUID");
  json_builder_add_string_value (b, uuid);
  json_builder_set_member_name (b, "EventSourceArn");
  json_builder_add_string_value (b, m->stream_arn);
  json_builder_set_member_name (b, "FunctionArn");
  json_builder_add_string_value (b, m->function_arn);
  json_builder_set_member_name (b, "StartingPosition");
  json_builder_add_string_value (b, c->starting_position);
  json_builder_set_member_name (b, "BatchSize");
  json_builder_add_int_value (b, c->batch_size);
  json_builder_set_member_name (b, "MaximumBatchingWindowInSeconds");
  json_builder_add_int_value (b, c->batching_window_ms / 1000);
  json_builder_set_member_name (b, "ParallelizationFactor");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "MaximumRetryAttempts");
  json_builder_add_int_value (b, c->max_retry_attempts);
  json_builder_set_member_name (b, "MaximumRecordAgeInSeconds");
  json_builder_add_int_value (b, c->max_record_age_ms > 0 ? c->max_record_age_ms / 1000 : -1);
  json_builder_set_member_name (b, "BisectBatchOnFunctionError");
  json_builder_add_boolean_value (b, c->bisect_on_error);
  json_builder_set_member_name (b, "FunctionResponseTypes");
  json_builder_begin_array (b);
  if (c->report_batch_item_failures)
    json_builder_add_string_value (b, "ReportBatchItemFailures");
  json_builder_end_array (b);
  json_builder_set_member_name (b, "DestinationConfig");
  json_builder_begin_object (b);
  if (c->on_failure[0]) {
    g_autofree char *arn = g_str_has_prefix (c->on_failure, "arn:")
                               ? g_strdup (c->on_failure)
                               : g_strdup_printf ("arn:aws:kinesis:" FUNCTIONS_REGION
                                                  ":" FUNCTIONS_ACCOUNT ":stream/%s",
                                                  c->on_failure);
    json_builder_set_member_name (b, "OnFailure");
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "Destination");
    json_builder_add_string_value (b, arn);
    json_builder_end_object (b);
  }
  json_builder_end_object (b);
  json_builder_set_member_name (b, "State");
  json_builder_add_string_value (b, "Enabled");
  json_builder_set_member_name (b, "StateTransitionReason");
  json_builder_add_string_value (b, "USER_INITIATED");
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

const char *
functions_mapping_stream (FunctionsMapping *m)
{
  return m->config.stream;
}

const char *
functions_mapping_function (FunctionsMapping *m)
{
  return m->config.function;
}

void
functions_mapping_free (FunctionsMapping *m)
{
  /* Batches under way come again after a restart; one whose destination
   * record is being stored finishes when the store answers. */
  while (m->works && m->works->len > 0) {
    Work *work = g_ptr_array_steal_index_fast (m->works, m->works->len - 1);
    work->mapping = NULL;
    g_clear_handle_id (&work->timer, g_source_remove);
    if (!work->putting) {
      stream_consumer_done (m->consumer, work->batch, FALSE);
      work_free (work);
    }
  }
  if (m->consumer) {
    /* A put under way holds on to the consumer: stop only lets go of ours. */
    stream_consumer_stop (m->consumer);
  }
  if (m->works)
    g_ptr_array_unref (m->works);
  g_free (m->config.stream);
  g_free (m->config.function);
  g_free (m->config.starting_position);
  g_free (m->config.on_failure);
  g_free (m->stream_arn);
  g_free (m->function_arn);
  g_free (m->label);
  g_free (m);
}
