/* events.c: what the detectors saw, kept and handed on.
 *
 *   GET /v1/events                    newest first; ?camera= ?type= ?since= ?until=
 *                                     (Unix seconds, on the event's start) ?limit=
 *   GET /v1/events/{id}               one event
 *   GET /v1/events/{id}/snapshot.jpg  the frame that started it
 *
 * Each event's start and end is a record of the camera's events stream
 * (events_stream, made when missing; partition key: the camera), which is
 * how functions (event source mappings) and MQTT (mqtt.publish) get them.
 * The index row (media_events) holds the event's times, boxes and its
 * snapshot, sealed under the camera's key with the event id as additional
 * data, and says which footage to keep: from pre-roll before the start to
 * post-roll after the end, until event_retention_hours after the start
 * (store.c's retention and free-space passes skip or defer it).
 */
#define G_LOG_DOMAIN "media"

#include "service.h"

#include <math.h>
#include <string.h>

#define EVENTS_LIST_MAX 1000
#define EVENTS_LIST_DEFAULT 100

/* ---- the record and the API's shape ----
 *
 * Written by hand rather than through json-glib, whose doubles come out with
 * 17 digits (0.47499999999999998): fractions here have four decimals. */

typedef struct {
  const char *id, *camera, *type;
  gint64 start_ms, end_ms; /* end 0: still going */
  gint64 server_ms;
  guint64 fragment;
  double score;
  const char *boxes; /* a JSON array, as boxes_text wrote it */
  gboolean has_snapshot;
  gint64 pre_ms, post_ms;
} EventRow;

/* @v (0 to 1) with at most four decimals: 0.55, 0.1333, 1. */
static void
append_fraction (GString *out, double v)
{
  char text[G_ASCII_DTOSTR_BUF_SIZE];
  g_ascii_formatd (text, sizeof text, "%.4f", CLAMP (v, 0.0, 1.0));
  gsize n = strlen (text);
  while (n > 1 && text[n - 1] == '0')
    n--;
  if (text[n - 1] == '.')
    n--;
  g_string_append_len (out, text, (gssize) n);
}

static void
append_key (GString *out, const char *key)
{
  g_string_append_printf (out, "%s\"%s\":", out->str[out->len - 1] == '{' ? "" : ",", key);
}

static void
append_string_member (GString *out, const char *key, const char *value)
{
  append_key (out, key);
  if (value)
    edge_json_append_string (out, value, strlen (value));
  else
    g_string_append (out, "null");
}

static void
append_int_member (GString *out, const char *key, gint64 value)
{
  append_key (out, key);
  g_string_append_printf (out, "%" G_GINT64_FORMAT, value);
}

static char *
boxes_text (const MediaBox *boxes, guint n)
{
  GString *out = g_string_new ("[");
  for (guint i = 0; i < n; i++) {
    g_string_append (out, i ? ",{\"x\":" : "{\"x\":");
    append_fraction (out, boxes[i].x);
    g_string_append (out, ",\"y\":");
    append_fraction (out, boxes[i].y);
    g_string_append (out, ",\"width\":");
    append_fraction (out, boxes[i].width);
    g_string_append (out, ",\"height\":");
    append_fraction (out, boxes[i].height);
    g_string_append_c (out, '}');
  }
  g_string_append_c (out, ']');
  return g_string_free (out, FALSE);
}

/* The event as the API and the stream show it; @phase is NULL for the
 * API (which shows the event as it is now). */
static void
append_event (GString *out, const EventRow *e, const char *phase)
{
  g_string_append_c (out, '{');
  append_string_member (out, "id", e->id);
  append_string_member (out, "camera", e->camera);
  append_string_member (out, "type", e->type);
  if (phase)
    append_string_member (out, "phase", phase);
  append_key (out, "active");
  g_string_append (out, e->end_ms == 0 ? "true" : "false");
  append_key (out, "score");
  append_fraction (out, e->score);
  append_key (out, "boxes");
  g_string_append (out, e->boxes);
  append_int_member (out, "start_ms", e->start_ms);
  append_key (out, "end_ms");
  if (e->end_ms)
    g_string_append_printf (out, "%" G_GINT64_FORMAT, e->end_ms);
  else
    g_string_append (out, "null");
  append_int_member (out, "producer_timestamp_ms", e->start_ms);
  append_int_member (out, "server_timestamp_ms", e->server_ms);
  g_autofree char *fragment = g_strdup_printf ("%" G_GUINT64_FORMAT, e->fragment);
  append_string_member (out, "fragment_number", fragment);
  g_autofree char *snapshot = g_strdup_printf ("/v1/events/%s/snapshot.jpg", e->id);
  append_string_member (out, "snapshot_url", e->has_snapshot ? snapshot : NULL);
  /* The clip runs from pre-roll before the start to post-roll after the
   * end (or, while the event lasts, to now), on the producer timeline. */
  gint64 clip_end = (e->end_ms ? e->end_ms : e->server_ms) + e->post_ms;
  char start_s[G_ASCII_DTOSTR_BUF_SIZE], end_s[G_ASCII_DTOSTR_BUF_SIZE];
  g_ascii_formatd (start_s, sizeof start_s, "%.3f", MAX (0, e->start_ms - e->pre_ms) / 1000.0);
  g_ascii_formatd (end_s, sizeof end_s, "%.3f", clip_end / 1000.0);
  g_autofree char *clip = g_strdup_printf ("/v1/cameras/%s/clip.mp4?start=%s&end=%s&producer=1",
                                           e->camera, start_s, end_s);
  append_string_member (out, "clip_url", clip);
  g_autofree char *playback = g_strdup_printf ("/camera?name=%s&time=%s", e->camera, start_s);
  append_string_member (out, "playback_url", playback);
  g_string_append_c (out, '}');
}

/* ---- the events stream ---- */

static void
on_put (StreamPutResult *results, guint n, gpointer data)
{
  char *camera = data;
  for (guint i = 0; i < n; i++)
    if (results[i].error)
      g_warning ("camera \"%s\": an event was not stored in its stream: %s", camera,
                 results[i].error->message);
  g_free (camera);
}

gboolean
media_events_ensure_stream (MediaService *service, const EdgeConfigCamera *config)
{
  if (service->streams == NULL)
    return FALSE;
  if (stream_store_lookup (service->streams, config->events_stream, NULL))
    return TRUE;
  g_autoptr (GError) error = NULL;
  StreamSettings settings;
  stream_settings_init (&settings);
  if (!stream_store_create (service->streams, config->events_stream, 1, &settings, &error)) {
    g_warning ("camera \"%s\": no events stream %s: %s", config->name, config->events_stream,
               error->message);
    return FALSE;
  }
  g_message ("events of camera \"%s\" go to the new stream %s", config->name,
             config->events_stream);
  return TRUE;
}

static void
append_to_stream (MediaService *service, const EdgeConfigCamera *config, GString *record)
{
  g_autoptr (GError) error = NULL;
  if (!media_events_ensure_stream (service, config))
    return;
  g_autoptr (GBytes) data = g_bytes_new (record->str, record->len);
  StreamPutRecord put = { .partition_key = config->name, .data = data };
  if (!stream_store_put (service->streams, config->events_stream, &put, 1, on_put,
                         g_strdup (config->name), &error))
    g_warning ("camera \"%s\": an event was not stored in its stream: %s", config->name,
               error->message);
}

/* ---- the index ---- */

static GBytes *
seal_snapshot (MediaService *service, const char *camera, const char *id, GBytes *jpeg)
{
  g_autofree char *context = g_strdup_printf ("camera/%s", camera);
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeCipher) cipher = edge_cipher_new (service->keyring, context, &error);
  gsize len;
  const guint8 *plain = g_bytes_get_data (jpeg, &len);
  if (cipher == NULL || len > EDGE_FRAME_MAX_PAYLOAD) {
    g_warning ("camera \"%s\": snapshot not kept: %s", camera,
               error ? error->message : "too large");
    return NULL;
  }
  guint8 *sealed = g_malloc (len + EDGE_FRAME_OVERHEAD);
  if (!edge_cipher_seal (cipher, plain, len, (const guint8 *) id, strlen (id), sealed, &error)) {
    g_warning ("camera \"%s\": snapshot not kept: %s", camera, error->message);
    g_free (sealed);
    return NULL;
  }
  return g_bytes_new_take (sealed, len + EDGE_FRAME_OVERHEAD);
}

static void
index_event (MediaService *service, const EdgeConfigCamera *config, const EventRow *row,
             GBytes *snapshot)
{
  sqlite3 *db = edge_state_db (service->state);
  sqlite3_stmt *st = NULL;
  gboolean start = row->end_ms == 0;
  const char *sql =
      start ? "INSERT OR REPLACE INTO media_events (id, camera, type, start_ms, end_ms, server_ms,"
              " fragment, score, boxes, snapshot, pre_ms, post_ms, keep_until_ms)"
              " VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            : "UPDATE media_events SET end_ms = ?13, score = ?7, boxes = ?8 WHERE id = ?1";
  if (sqlite3_prepare_v2 (db, sql, -1, &st, NULL) != SQLITE_OK) {
    g_warning ("camera \"%s\": event not indexed: %s", config->name, sqlite3_errmsg (db));
    return;
  }
  g_autoptr (GBytes) sealed = NULL;
  if (start && snapshot)
    sealed = seal_snapshot (service, config->name, row->id, snapshot);
  sqlite3_bind_text (st, 1, row->id, -1, SQLITE_STATIC);
  if (start) {
    sqlite3_bind_text (st, 2, config->name, -1, SQLITE_STATIC);
    sqlite3_bind_text (st, 3, row->type, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (st, 4, row->start_ms);
    sqlite3_bind_int64 (st, 5, row->server_ms);
    sqlite3_bind_int64 (st, 6, (sqlite3_int64) row->fragment);
    if (sealed)
      sqlite3_bind_blob (st, 9, g_bytes_get_data (sealed, NULL), (int) g_bytes_get_size (sealed),
                         SQLITE_STATIC);
    sqlite3_bind_int64 (st, 10, row->pre_ms);
    sqlite3_bind_int64 (st, 11, row->post_ms);
    sqlite3_bind_int64 (st, 12, row->start_ms + config->event_retention_hours * 3600 * 1000);
  } else {
    sqlite3_bind_int64 (st, 13, row->end_ms);
  }
  sqlite3_bind_double (st, 7, row->score);
  sqlite3_bind_text (st, 8, row->boxes, -1, SQLITE_STATIC);
  if (sqlite3_step (st) != SQLITE_DONE)
    g_warning ("camera \"%s\": event not indexed: %s", config->name, sqlite3_errmsg (db));
  sqlite3_finalize (st);
}

void
media_events_on_event (const MediaEvent *event, gpointer user_data)
{
  MediaServiceCamera *c = user_data;
  MediaService *service = c->service;
  const EdgeConfigCamera *config = media_camera_config (c->camera);
  g_autofree char *boxes = boxes_text (event->boxes, event->n_boxes);
  gboolean start = event->phase == MEDIA_EVENT_START;
  EventRow row = {
    .id = event->id,
    .camera = config->name,
    .type = event->type,
    .start_ms = event->start_ms,
    /* An end is after the start, so that 0 can mean "still going". */
    .end_ms = start ? 0 : MAX (event->end_ms, event->start_ms + 1),
    .server_ms = event->server_ms,
    .fragment = event->fragment,
    .score = event->score,
    .boxes = boxes,
    .has_snapshot = start ? event->snapshot != NULL : TRUE,
    .pre_ms = config->event_pre_roll_ms,
    .post_ms = config->event_post_roll_ms,
  };
  index_event (service, config, &row, event->snapshot);
  const char *phase = start ? "start" : "end";
  g_autoptr (GString) record = g_string_new (NULL);
  append_event (record, &row, phase);
  append_to_stream (service, config, record);
  c->events++;
  g_info ("camera \"%s\": %s %s (score %.3f)", config->name, event->type, phase, event->score);
}

void
media_events_close_open (MediaService *service)
{
  /* A stop ends open events (media_detect_free); a crash leaves them
   * open. They ended, at the latest, where the camera's footage did. */
  sqlite3 *db = edge_state_db (service->state);
  char *message = NULL;
  if (sqlite3_exec (db,
                    "UPDATE media_events SET end_ms = max(start_ms + 1, coalesce("
                    " (SELECT max(f.producer_ms + f.duration_ms) FROM media_fragments f"
                    "  WHERE f.camera = media_events.camera), 0))"
                    " WHERE end_ms IS NULL",
                    NULL, NULL, &message) != SQLITE_OK) {
    g_warning ("events left open by a crash: %s", message);
    sqlite3_free (message);
  }
}

void
media_events_expire (MediaService *service)
{
  sqlite3 *db = edge_state_db (service->state);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (db, "DELETE FROM media_events WHERE keep_until_ms < ?", -1, &st,
                          NULL) != SQLITE_OK)
    return;
  sqlite3_bind_int64 (st, 1, g_get_real_time () / 1000);
  sqlite3_step (st);
  sqlite3_finalize (st);
}

/* ---- the routes ---- */

#define ROW_COLUMNS \
  "id, camera, type, start_ms, end_ms, server_ms, fragment, score, boxes, snapshot IS NOT NULL," \
  " pre_ms, post_ms"

static void
append_row (GString *out, sqlite3_stmt *st)
{
  EventRow row = {
    .id = (const char *) sqlite3_column_text (st, 0),
    .camera = (const char *) sqlite3_column_text (st, 1),
    .type = (const char *) sqlite3_column_text (st, 2),
    .start_ms = sqlite3_column_int64 (st, 3),
    .end_ms = sqlite3_column_int64 (st, 4),
    .server_ms = sqlite3_column_int64 (st, 5),
    .fragment = (guint64) sqlite3_column_int64 (st, 6),
    .score = sqlite3_column_double (st, 7),
    .boxes = (const char *) sqlite3_column_text (st, 8),
    .has_snapshot = sqlite3_column_int (st, 9),
    .pre_ms = sqlite3_column_int64 (st, 10),
    .post_ms = sqlite3_column_int64 (st, 11),
  };
  append_event (out, &row, NULL);
}

static void
respond_text (EdgeRequest *request, GString *text)
{
  g_autoptr (GBytes) body = g_bytes_new (text->str, text->len);
  edge_request_respond (request, 200, "application/json", body);
}

static void
handle_list (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  const char *camera = edge_request_query (request, "camera");
  const char *type = edge_request_query (request, "type");
  const char *limit_text = edge_request_query (request, "limit");
  gint64 since, until;
  guint64 limit = EVENTS_LIST_DEFAULT;
  if (!media_request_time (request, "since", 0, &since) ||
      !media_request_time (request, "until", G_MAXINT64 / 2, &until))
    return;
  if (limit_text && (!g_ascii_string_to_unsigned (limit_text, 10, 1, EVENTS_LIST_MAX, &limit,
                                                  NULL))) {
    edge_request_respond_error (request, 400, "InvalidArgument", "limit: 1 to %d",
                                EVENTS_LIST_MAX);
    return;
  }
  sqlite3 *db = edge_state_db (service->state);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (db,
                          "SELECT " ROW_COLUMNS " FROM media_events"
                          " WHERE (?1 IS NULL OR camera = ?1) AND (?2 IS NULL OR type = ?2)"
                          " AND start_ms >= ?3 AND start_ms < ?4"
                          " ORDER BY start_ms DESC LIMIT ?5",
                          -1, &st, NULL) != SQLITE_OK) {
    edge_request_respond_error (request, 500, "InternalError", "state database: %s",
                                sqlite3_errmsg (db));
    return;
  }
  sqlite3_bind_text (st, 1, camera, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 2, type, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 3, since);
  sqlite3_bind_int64 (st, 4, until);
  sqlite3_bind_int64 (st, 5, (sqlite3_int64) limit);
  g_autoptr (GString) out = g_string_new ("{\"events\":[");
  for (guint n = 0; sqlite3_step (st) == SQLITE_ROW; n++) {
    if (n)
      g_string_append_c (out, ',');
    append_row (out, st);
  }
  sqlite3_finalize (st);
  g_string_append (out, "]}");
  respond_text (request, out);
}

static sqlite3_stmt *
lookup (EdgeRequest *request, MediaService *service, const char *columns)
{
  const char *id = edge_request_param (request, "id");
  sqlite3 *db = edge_state_db (service->state);
  sqlite3_stmt *st = NULL;
  g_autofree char *sql = g_strdup_printf ("SELECT %s FROM media_events WHERE id = ?", columns);
  if (sqlite3_prepare_v2 (db, sql, -1, &st, NULL) != SQLITE_OK) {
    edge_request_respond_error (request, 500, "InternalError", "state database: %s",
                                sqlite3_errmsg (db));
    return NULL;
  }
  sqlite3_bind_text (st, 1, id, -1, SQLITE_TRANSIENT);
  if (sqlite3_step (st) != SQLITE_ROW) {
    sqlite3_finalize (st);
    edge_request_respond_error (request, 404, "NotFound", "event %s not found", id);
    return NULL;
  }
  return st;
}

static void
handle_get (EdgeRequest *request, gpointer data)
{
  sqlite3_stmt *st = lookup (request, data, ROW_COLUMNS);
  if (st == NULL)
    return;
  g_autoptr (GString) out = g_string_new (NULL);
  append_row (out, st);
  sqlite3_finalize (st);
  respond_text (request, out);
}

static void
handle_snapshot (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  sqlite3_stmt *st = lookup (request, service, "id, camera, snapshot");
  if (st == NULL)
    return;
  const char *id = (const char *) sqlite3_column_text (st, 0);
  const char *camera = (const char *) sqlite3_column_text (st, 1);
  const guint8 *sealed = sqlite3_column_blob (st, 2);
  gsize len = (gsize) sqlite3_column_bytes (st, 2);
  if (sealed == NULL || len <= EDGE_FRAME_OVERHEAD) {
    sqlite3_finalize (st);
    edge_request_respond_error (request, 404, "NotFound", "event %s has no snapshot",
                                edge_request_param (request, "id"));
    return;
  }
  g_autofree char *context = g_strdup_printf ("camera/%s", camera);
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeCipher) cipher = edge_cipher_new (service->keyring, context, &error);
  guint8 *plain = g_malloc (len - EDGE_FRAME_OVERHEAD);
  gsize plain_len = 0;
  if (cipher == NULL ||
      !edge_cipher_open (cipher, sealed, len, (const guint8 *) id, strlen (id), plain, &plain_len,
                         &error)) {
    g_warning ("event %s: the snapshot does not open: %s", id, error->message);
    g_free (plain);
    sqlite3_finalize (st);
    edge_request_respond_error (request, 500, "InternalError", "the snapshot does not open");
    return;
  }
  sqlite3_finalize (st);
  g_autoptr (GBytes) jpeg = g_bytes_new_take (plain, plain_len);
  edge_request_respond (request, 200, "image/jpeg", jpeg);
}

gboolean
media_events_register (MediaService *service, GError **error)
{
  static const EdgeRoute routes[] = {
    { "GET", "/v1/events", handle_list,
      "Detection events, newest first (?camera= ?type= ?since= ?until= ?limit=)", "events", 0 },
    { "GET", "/v1/events/{id}", handle_get, "One detection event", "events", 0 },
    { "GET", "/v1/events/{id}/snapshot.jpg", handle_snapshot,
      "The frame that started an event (JPEG)", "events", 0 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (service->gateway, &routes[i], service, error))
      return FALSE;
  return TRUE;
}
