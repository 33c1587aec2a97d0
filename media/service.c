/* service.c: the cameras of one edged and the /v1/cameras API.
 *
 *   GET    /v1/cameras                      every camera and its status
 *   POST   /v1/cameras                      add one (kept across restarts)
 *   GET    /v1/cameras/{name}               one camera's status
 *   DELETE /v1/cameras/{name}               stop it and delete its recordings
 *   GET    /v1/cameras/{name}/fragments     the index, by server time range
 *   GET    /v1/cameras/{name}/gaps          when the source gave nothing
 *
 * Cameras from the configuration start with the daemon and cannot be
 * removed through the API; cameras added through it are stored in the state
 * database and started again on the next run.
 */
#define G_LOG_DOMAIN "media"

#include "service.h"

#include "detect.h"
#include "hw.h"

#include <gst/gst.h>
#include <math.h>
#include <string.h>

#define RETENTION_INTERVAL_S 10
/* Cameras one edged runs at most (the config's list has the same limit). */
#define MAX_CAMERAS 64
#define FRAGMENT_LIST_MAX 5000

/* ---- the camera registry ---- */

static void
recent_free (gpointer data)
{
  MediaRecentFragment *r = data;
  g_bytes_unref (r->bytes);
  g_free (r);
}

static void
service_camera_free (gpointer data)
{
  MediaServiceCamera *c = data;
  media_live_close_all (c);
  media_camera_free (c->camera);
  g_ptr_array_unref (c->viewers);
  g_clear_pointer (&c->init, g_bytes_unref);
  g_queue_clear_full (&c->recent, recent_free);
  g_free (c->name);
  g_free (c);
}

MediaServiceCamera *
media_service_lookup (MediaService *service, const char *name)
{
  return name ? g_hash_table_lookup (service->cameras, name) : NULL;
}

static void
on_fragment (const MediaFragmentEvent *event, gpointer user_data)
{
  MediaServiceCamera *c = user_data;
  if (event->init) {
    g_clear_pointer (&c->init, g_bytes_unref);
    c->init = g_bytes_ref (event->init);
    c->init_meta = *event->init_meta;
    c->have_init = TRUE;
  }
  MediaRecentFragment *r = g_new0 (MediaRecentFragment, 1);
  r->meta = *event->meta;
  r->bytes = g_bytes_ref (event->fragment);
  g_queue_push_tail (&c->recent, r);
  while (g_queue_get_length (&c->recent) > MEDIA_RECENT_FRAGMENTS)
    recent_free (g_queue_pop_head (&c->recent));
  media_live_publish (c, event);
}

/* GStreamer starts with the first camera: a box without cameras never
 * loads its registry or plugins. */
static void
service_start_gstreamer (MediaService *service)
{
  if (service->gstreamer_started)
    return;
  if (!gst_is_initialized ())
    gst_init (NULL, NULL);
  service->hw = hw_choice_default ();
  service->gstreamer_started = TRUE;
  g_message ("video: %s profile; raw sources encode with %s", service->hw->profile,
             service->hw->encoder[0] ? service->hw->encoder : "(no encoder works here)");
}

MediaServiceCamera *
media_service_add_camera (MediaService *service, const EdgeConfigCamera *config,
                          gboolean from_config, GError **error)
{
  if (!media_camera_name_valid (config->name)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "camera name \"%s\": use 1 to %u of a-z, A-Z, 0-9, _ - and .", config->name,
                 MEDIA_CAMERA_NAME_MAX);
    return NULL;
  }
  if (g_hash_table_contains (service->cameras, config->name)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS, "camera \"%s\" already exists",
                 config->name);
    return NULL;
  }
  if (g_hash_table_size (service->cameras) >= MAX_CAMERAS) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "at most %d cameras", MAX_CAMERAS);
    return NULL;
  }
  if (!media_camera_source_check (config, error))
    return NULL;
  service_start_gstreamer (service);
  if (config->detect[0])
    media_events_ensure_stream (service, config);
  MediaServiceCamera *c = g_new0 (MediaServiceCamera, 1);
  c->service = service;
  c->name = g_strdup (config->name);
  c->from_config = from_config;
  c->created_ms = g_get_real_time () / 1000;
  c->viewers = g_ptr_array_new ();
  g_queue_init (&c->recent);
  g_hash_table_insert (service->cameras, c->name, c);
  /* The init segment the camera recorded against last, so that live
   * viewers and playlists have one before the first new fragment. */
  GArray *last = media_store_list_last (service->store, config->name, 1);
  if (last->len > 0) {
    guint32 id = g_array_index (last, MediaFragmentMeta, 0).init_id;
    c->init = media_store_read_init (service->store, config->name, id, NULL);
    c->have_init = c->init && media_store_lookup_init (service->store, config->name, id,
                                                       &c->init_meta);
  }
  g_array_unref (last);
  c->camera = media_camera_new (config, service->store, service->hw, on_fragment,
                                media_events_on_event, c);
  g_autofree char *shown = media_camera_display_source (config->source);
  g_message ("camera \"%s\": recording from %s", config->name, shown);
  return c;
}

gboolean
media_service_add_configured_camera (MediaService *service, const EdgeConfigCamera *config,
                                     GError **error)
{
  return media_service_add_camera (service, config, TRUE, error) != NULL;
}

/* ---- cameras added at run time, kept in the state database ---- */

/* The detection settings that are strings, with their defaults. */
static const struct {
  const char *name;
  gsize offset;
  const char *def;
} camera_strings[] = {
  { "detect", G_STRUCT_OFFSET (EdgeConfigCamera, detect), "" },
  { "motion_min_area", G_STRUCT_OFFSET (EdgeConfigCamera, motion_min_area), "0.5%" },
  { "zones", G_STRUCT_OFFSET (EdgeConfigCamera, zones), "" },
  { "events_stream", G_STRUCT_OFFSET (EdgeConfigCamera, events_stream), "events" },
};

static JsonNode *
camera_config_to_json (const EdgeConfigCamera *c)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "source");
  json_builder_add_string_value (b, c->source);
  json_builder_set_member_name (b, "rtsp_transport");
  json_builder_add_string_value (b, c->rtsp_transport);
  static const struct {
    const char *name;
    gsize offset;
  } ints[] = {
    { "fragment_duration_ms", G_STRUCT_OFFSET (EdgeConfigCamera, fragment_ms) },
    { "retention_hours", G_STRUCT_OFFSET (EdgeConfigCamera, retention_hours) },
    { "retention_bytes", G_STRUCT_OFFSET (EdgeConfigCamera, retention_bytes) },
    { "bitrate_kbps", G_STRUCT_OFFSET (EdgeConfigCamera, bitrate_kbps) },
    { "keyframe_interval_ms", G_STRUCT_OFFSET (EdgeConfigCamera, keyframe_ms) },
    { "width", G_STRUCT_OFFSET (EdgeConfigCamera, width) },
    { "height", G_STRUCT_OFFSET (EdgeConfigCamera, height) },
    { "fps", G_STRUCT_OFFSET (EdgeConfigCamera, fps) },
    { "detect_fps", G_STRUCT_OFFSET (EdgeConfigCamera, detect_fps) },
    { "detect_width", G_STRUCT_OFFSET (EdgeConfigCamera, detect_width) },
    { "motion_sensitivity", G_STRUCT_OFFSET (EdgeConfigCamera, motion_sensitivity) },
    { "event_cooldown_ms", G_STRUCT_OFFSET (EdgeConfigCamera, event_cooldown_ms) },
    { "event_pre_roll_ms", G_STRUCT_OFFSET (EdgeConfigCamera, event_pre_roll_ms) },
    { "event_post_roll_ms", G_STRUCT_OFFSET (EdgeConfigCamera, event_post_roll_ms) },
    { "event_retention_hours", G_STRUCT_OFFSET (EdgeConfigCamera, event_retention_hours) },
  };
  for (guint i = 0; i < G_N_ELEMENTS (ints); i++) {
    json_builder_set_member_name (b, ints[i].name);
    json_builder_add_int_value (b, G_STRUCT_MEMBER (gint64, c, ints[i].offset));
  }
  for (guint i = 0; i < G_N_ELEMENTS (camera_strings); i++) {
    json_builder_set_member_name (b, camera_strings[i].name);
    json_builder_add_string_value (b, G_STRUCT_MEMBER (char *, c, camera_strings[i].offset));
  }
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

/* Reads a camera's settings from a JSON object (the POST body or the stored
 * form), each optional one defaulting as in the configuration, each
 * checked against the configuration's limits. */
static gboolean
camera_config_from_json (JsonObject *o, EdgeConfigCamera *ret, GError **error)
{
  static const struct {
    const char *name;
    gsize offset;
    gint64 def, min, max;
  } ints[] = {
    { "fragment_duration_ms", G_STRUCT_OFFSET (EdgeConfigCamera, fragment_ms), 2000, 500, 10000 },
    { "retention_hours", G_STRUCT_OFFSET (EdgeConfigCamera, retention_hours), 24, 1, 8760 },
    { "retention_bytes", G_STRUCT_OFFSET (EdgeConfigCamera, retention_bytes), 0, 0, G_MAXINT64 },
    { "bitrate_kbps", G_STRUCT_OFFSET (EdgeConfigCamera, bitrate_kbps), 1500, 50, 100000 },
    { "keyframe_interval_ms", G_STRUCT_OFFSET (EdgeConfigCamera, keyframe_ms), 2000, 200, 10000 },
    { "width", G_STRUCT_OFFSET (EdgeConfigCamera, width), 0, 0, 7680 },
    { "height", G_STRUCT_OFFSET (EdgeConfigCamera, height), 0, 0, 4320 },
    { "fps", G_STRUCT_OFFSET (EdgeConfigCamera, fps), 0, 0, 240 },
    { "detect_fps", G_STRUCT_OFFSET (EdgeConfigCamera, detect_fps), 5, 1, 30 },
    { "detect_width", G_STRUCT_OFFSET (EdgeConfigCamera, detect_width), 320, 64, 1920 },
    { "motion_sensitivity", G_STRUCT_OFFSET (EdgeConfigCamera, motion_sensitivity), 50, 1, 100 },
    { "event_cooldown_ms", G_STRUCT_OFFSET (EdgeConfigCamera, event_cooldown_ms), 5000, 200,
      600000 },
    { "event_pre_roll_ms", G_STRUCT_OFFSET (EdgeConfigCamera, event_pre_roll_ms), 5000, 0, 60000 },
    { "event_post_roll_ms", G_STRUCT_OFFSET (EdgeConfigCamera, event_post_roll_ms), 5000, 0,
      60000 },
    { "event_retention_hours", G_STRUCT_OFFSET (EdgeConfigCamera, event_retention_hours), 168, 1,
      8760 },
  };
  JsonNode *source = json_object_get_member (o, "source");
  if (source == NULL || !JSON_NODE_HOLDS_VALUE (source) ||
      json_node_get_value_type (source) != G_TYPE_STRING) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "source (a string) is required");
    return FALSE;
  }
  ret->source = (char *) json_node_get_string (source);
  ret->rtsp_transport = (char *) "tcp";
  JsonNode *transport = json_object_get_member (o, "rtsp_transport");
  if (transport) {
    const char *t = JSON_NODE_HOLDS_VALUE (transport) ? json_node_get_string (transport) : NULL;
    if (g_strcmp0 (t, "tcp") != 0 && g_strcmp0 (t, "udp") != 0) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "rtsp_transport: \"tcp\" or \"udp\"");
      return FALSE;
    }
    ret->rtsp_transport = (char *) t;
  }
  for (guint i = 0; i < G_N_ELEMENTS (ints); i++) {
    gint64 value = ints[i].def;
    JsonNode *node = json_object_get_member (o, ints[i].name);
    if (node) {
      if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64) {
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s: an integer",
                     ints[i].name);
        return FALSE;
      }
      value = json_node_get_int (node);
    }
    if (value < ints[i].min || value > ints[i].max) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "%s: %" G_GINT64_FORMAT " is out of range (%" G_GINT64_FORMAT " to %" G_GINT64_FORMAT ")",
                   ints[i].name, value, ints[i].min, ints[i].max);
      return FALSE;
    }
    G_STRUCT_MEMBER (gint64, ret, ints[i].offset) = value;
  }
  /* Strings are borrowed from @o, as the source is. */
  for (guint i = 0; i < G_N_ELEMENTS (camera_strings); i++) {
    const char *value = camera_strings[i].def;
    JsonNode *node = json_object_get_member (o, camera_strings[i].name);
    if (node) {
      if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING) {
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s: a string",
                     camera_strings[i].name);
        return FALSE;
      }
      value = json_node_get_string (node);
    }
    G_STRUCT_MEMBER (const char *, ret, camera_strings[i].offset) = value;
  }
  return media_detect_check (ret, error);
}

static gboolean
persist_camera (MediaService *service, const EdgeConfigCamera *config, gint64 created_ms,
                GError **error)
{
  g_autoptr (JsonNode) node = camera_config_to_json (config);
  g_autofree char *text = edge_json_to_string (node, NULL);
  sqlite3 *db = edge_state_db (service->state);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (db, "INSERT OR REPLACE INTO media_cameras (name, config, created_ms)"
                              " VALUES (?, ?, ?)", -1, &st, NULL) != SQLITE_OK) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "state database: %s", sqlite3_errmsg (db));
    return FALSE;
  }
  sqlite3_bind_text (st, 1, config->name, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 2, text, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 3, created_ms);
  gboolean ok = sqlite3_step (st) == SQLITE_DONE;
  sqlite3_finalize (st);
  if (!ok)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "state database: %s", sqlite3_errmsg (db));
  return ok;
}

static void
forget_camera (MediaService *service, const char *name)
{
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (edge_state_db (service->state),
                          "DELETE FROM media_cameras WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_text (st, 1, name, -1, SQLITE_STATIC);
  sqlite3_step (st);
  sqlite3_finalize (st);
}

static void
start_stored_cameras (MediaService *service)
{
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (edge_state_db (service->state),
                          "SELECT name, config, created_ms FROM media_cameras ORDER BY name", -1,
                          &st, NULL) != SQLITE_OK)
    return;
  while (sqlite3_step (st) == SQLITE_ROW) {
    const char *name = (const char *) sqlite3_column_text (st, 0);
    const char *text = (const char *) sqlite3_column_text (st, 1);
    g_autoptr (GError) error = NULL;
    g_autoptr (JsonNode) node = edge_json_parse (text, strlen (text), 64 * 1024, &error);
    EdgeConfigCamera config = { .name = (char *) name };
    MediaServiceCamera *c = NULL;
    if (node && JSON_NODE_HOLDS_OBJECT (node) &&
        camera_config_from_json (json_node_get_object (node), &config, &error))
      c = media_service_add_camera (service, &config, FALSE, &error);
    if (c)
      c->created_ms = sqlite3_column_int64 (st, 2);
    else
      g_warning ("camera \"%s\" (added through the API): %s", name,
                 error ? error->message : "stored settings unreadable");
  }
  sqlite3_finalize (st);
}

MediaServiceCamera *
media_service_create_camera (MediaService *service, const EdgeConfigCamera *config,
                             GError **error)
{
  MediaServiceCamera *c = media_service_add_camera (service, config, FALSE, error);
  if (c == NULL)
    return NULL;
  if (!persist_camera (service, config, c->created_ms, error)) {
    media_service_remove_camera (service, config->name, NULL);
    return NULL;
  }
  return c;
}

gboolean
media_service_camera_settings_from_json (JsonObject *o, EdgeConfigCamera *ret, GError **error)
{
  return camera_config_from_json (o, ret, error);
}

gboolean
media_service_remove_camera (MediaService *service, const char *name, GError **error)
{
  MediaServiceCamera *c = media_service_lookup (service, name);
  if (c == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "camera \"%s\" not found", name);
    return FALSE;
  }
  if (c->from_config) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_BUSY,
                 "camera \"%s\" is declared in the configuration file; remove it there", name);
    return FALSE;
  }
  g_autofree char *owned = g_strdup (name);
  g_hash_table_remove (service->cameras, owned);
  forget_camera (service, owned);
  g_message ("camera \"%s\": removed with its recordings", owned);
  return media_store_delete_camera (service->store, owned, error);
}

/* ---- retention ---- */

static gboolean
retention_tick (gpointer data)
{
  MediaService *service = data;
  GHashTableIter iter;
  gpointer value;
  g_hash_table_iter_init (&iter, service->cameras);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    MediaServiceCamera *c = value;
    const EdgeConfigCamera *config = media_camera_config (c->camera);
    guint removed = media_store_enforce_retention (service->store, c->name,
                                                   config->retention_hours * 3600 * 1000,
                                                   (guint64) config->retention_bytes);
    if (removed > 0)
      g_debug ("camera \"%s\": retention removed %u fragments", c->name, removed);
  }
  media_events_expire (service);
  return G_SOURCE_CONTINUE;
}

/* ---- free space ---- */

#define SPACE_INTERVAL_S 2

static gboolean
space_tick (gpointer data)
{
  MediaService *service = data;
  guint64 free_bytes = media_store_free_bytes (service->store);
  if (service->keep_free_bytes == 0 || free_bytes >= service->keep_free_bytes)
    return G_SOURCE_CONTINUE;
  guint64 removed = media_store_remove_oldest (service->store,
                                               service->keep_free_bytes - free_bytes);
  if (removed > 0)
    g_message ("video: %.1f MiB free of the %.1f MiB to keep; removed %.1f MiB of the oldest "
               "recordings",
               free_bytes / 1048576.0, service->keep_free_bytes / 1048576.0, removed / 1048576.0);
  return G_SOURCE_CONTINUE;
}

void
media_service_set_free_space (MediaService *service, guint64 min_free_bytes,
                              guint64 video_reserve_bytes)
{
  service->keep_free_bytes = min_free_bytes + video_reserve_bytes;
  if (service->space_timer == 0)
    service->space_timer = g_timeout_add_seconds (SPACE_INTERVAL_S, space_tick, service);
}

/* ---- status ---- */

static void
add_time (JsonBuilder *b, const char *name, gint64 ms)
{
  json_builder_set_member_name (b, name);
  if (ms == 0) {
    json_builder_add_null_value (b);
    return;
  }
  g_autofree char *text = media_format_time (ms);
  json_builder_add_string_value (b, text);
}

static JsonNode *
camera_status (MediaService *service, MediaServiceCamera *c)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  const EdgeConfigCamera *config = media_camera_config (c->camera);
  g_autofree char *source = media_camera_display_source (config->source);
  MediaStoreUsage usage;
  MediaInitMeta track;
  media_store_usage (service->store, c->name, &usage);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, c->name);
  json_builder_set_member_name (b, "source");
  json_builder_add_string_value (b, source);
  json_builder_set_member_name (b, "state");
  json_builder_add_string_value (b, media_camera_state_name (media_camera_state (c->camera)));
  json_builder_set_member_name (b, "error");
  if (media_camera_last_error (c->camera))
    json_builder_add_string_value (b, media_camera_last_error (c->camera));
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "fromConfig");
  json_builder_add_boolean_value (b, c->from_config);
  add_time (b, "created", c->created_ms);
  json_builder_set_member_name (b, "codec");
  if (media_camera_track (c->camera, &track) || c->have_init) {
    if (!media_camera_track (c->camera, &track))
      track = c->init_meta;
    json_builder_add_string_value (b, track.codec == MEDIA_CODEC_H265 ? "h265" : "h264");
    json_builder_set_member_name (b, "width");
    json_builder_add_int_value (b, track.width);
    json_builder_set_member_name (b, "height");
    json_builder_add_int_value (b, track.height);
  } else {
    json_builder_add_null_value (b);
  }
  json_builder_set_member_name (b, "fragmentDurationMs");
  json_builder_add_int_value (b, config->fragment_ms);
  json_builder_set_member_name (b, "retentionHours");
  json_builder_add_int_value (b, config->retention_hours);
  json_builder_set_member_name (b, "retentionBytes");
  json_builder_add_int_value (b, config->retention_bytes);
  json_builder_set_member_name (b, "framesReceived");
  json_builder_add_int_value (b, (gint64) media_camera_frames (c->camera));
  json_builder_set_member_name (b, "restarts");
  json_builder_add_int_value (b, media_camera_restarts (c->camera));
  json_builder_set_member_name (b, "liveViewers");
  json_builder_add_int_value (b, c->viewers->len);
  json_builder_set_member_name (b, "liveSkipped");
  json_builder_add_int_value (b, (gint64) c->live_skipped);
  MediaDetect *detect = media_camera_detect (c->camera);
  json_builder_set_member_name (b, "detection");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "detectors");
  json_builder_add_string_value (b, config->detect);
  json_builder_set_member_name (b, "framesExamined");
  json_builder_add_int_value (b, (gint64) media_detect_frames (detect));
  json_builder_set_member_name (b, "accessUnitsDropped");
  json_builder_add_int_value (b, (gint64) media_detect_dropped (detect));
  json_builder_set_member_name (b, "events");
  json_builder_add_int_value (b, (gint64) c->events);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "recorded");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "fragments");
  json_builder_add_int_value (b, (gint64) usage.fragments);
  json_builder_set_member_name (b, "bytes");
  json_builder_add_int_value (b, (gint64) usage.bytes);
  add_time (b, "oldest", usage.oldest_ms);
  add_time (b, "newest", usage.newest_ms);
  json_builder_end_object (b);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

static void
handle_list (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (GList) names = g_hash_table_get_keys (service->cameras);
  names = g_list_sort (names, (GCompareFunc) strcmp);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "cameras");
  json_builder_begin_array (b);
  for (GList *l = names; l; l = l->next)
    json_builder_add_value (b, camera_status (service, media_service_lookup (service, l->data)));
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

MediaServiceCamera *
media_request_camera (EdgeRequest *request, MediaService *service)
{
  const char *name = edge_request_param (request, "name");
  MediaServiceCamera *c = media_service_lookup (service, name);
  if (c == NULL)
    edge_request_respond_error (request, 404, "NotFound", "camera %s not found", name);
  return c;
}

static void
handle_get (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  MediaServiceCamera *c = media_request_camera (request, service);
  if (c == NULL)
    return;
  g_autoptr (JsonNode) root = camera_status (service, c);
  edge_request_respond_json (request, 200, root);
}

static void
handle_create (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonNode) root = edge_request_json (request);
  g_autoptr (GError) error = NULL;
  if (root == NULL)
    return;
  if (!JSON_NODE_HOLDS_OBJECT (root)) {
    edge_request_respond_error (request, 400, "InvalidArgument", "the body must be a JSON object");
    return;
  }
  JsonObject *o = json_node_get_object (root);
  JsonNode *name = json_object_get_member (o, "name");
  EdgeConfigCamera config = { 0 };
  if (name == NULL || !JSON_NODE_HOLDS_VALUE (name) ||
      json_node_get_value_type (name) != G_TYPE_STRING) {
    edge_request_respond_error (request, 400, "InvalidArgument", "name (a string) is required");
    return;
  }
  config.name = (char *) json_node_get_string (name);
  if (!camera_config_from_json (o, &config, &error)) {
    edge_request_respond_error (request, 400, "InvalidArgument", "%s", error->message);
    return;
  }
  MediaServiceCamera *c = media_service_create_camera (service, &config, &error);
  if (c == NULL) {
    gboolean exists = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_EXISTS);
    gboolean invalid = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT) ||
                       g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE) ||
                       error->domain == G_URI_ERROR;
    edge_request_respond_error (request, exists ? 409 : invalid ? 400 : 500,
                                exists    ? "AlreadyExists"
                                : invalid ? "InvalidArgument"
                                          : "InternalError",
                                "%s", error->message);
    return;
  }
  g_autoptr (JsonNode) status = camera_status (service, c);
  edge_request_respond_json (request, 201, status);
}

static void
handle_delete (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (GError) error = NULL;
  if (media_request_camera (request, service) == NULL)
    return;
  if (!media_service_remove_camera (service, edge_request_param (request, "name"), &error)) {
    gboolean busy = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_BUSY);
    edge_request_respond_error (request, busy ? 409 : 500, busy ? "Conflict" : "InternalError",
                                "%s", error->message);
    return;
  }
  edge_request_respond (request, 204, NULL, NULL);
}

gboolean
media_request_time (EdgeRequest *request, const char *name, gint64 fallback, gint64 *ret_ms)
{
  const char *text = edge_request_query (request, name);
  char *end = NULL;
  if (text == NULL && fallback >= 0) {
    *ret_ms = fallback;
    return TRUE;
  }
  if (text == NULL) {
    edge_request_respond_error (request, 400, "InvalidArgument", "%s (Unix seconds) is required",
                                name);
    return FALSE;
  }
  double seconds = g_ascii_strtod (text, &end);
  if (end == text || *end != '\0' || !(seconds >= 0 && seconds < 1e11)) {
    edge_request_respond_error (request, 400, "InvalidArgument",
                                "%s: Unix seconds expected, got \"%s\"", name, text);
    return FALSE;
  }
  *ret_ms = (gint64) llround (seconds * 1000);
  return TRUE;
}

MediaServiceCamera *
media_request_range (EdgeRequest *request, MediaService *service, gboolean required,
                     gint64 *ret_start, gint64 *ret_end)
{
  MediaServiceCamera *c = media_request_camera (request, service);
  if (c == NULL || !media_request_time (request, "start", required ? -1 : 0, ret_start) ||
      !media_request_time (request, "end", required ? -1 : G_MAXINT64 / 2, ret_end))
    return NULL;
  if (required && *ret_end <= *ret_start) {
    edge_request_respond_error (request, 400, "InvalidArgument", "end must be after start");
    return NULL;
  }
  return c;
}

static void
handle_fragments (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  gint64 start, end;
  MediaServiceCamera *c = media_request_range (request, service, FALSE, &start, &end);
  if (c == NULL)
    return;
  g_autoptr (GArray) list =
      media_store_list (service->store, c->name, MEDIA_TIME_SERVER, start, end, 0,
                        FRAGMENT_LIST_MAX);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "fragments");
  json_builder_begin_array (b);
  for (guint i = 0; i < list->len; i++) {
    const MediaFragmentMeta *m = &g_array_index (list, MediaFragmentMeta, i);
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "number");
    json_builder_add_int_value (b, (gint64) m->number);
    json_builder_set_member_name (b, "serverMs");
    json_builder_add_int_value (b, m->server_ms);
    json_builder_set_member_name (b, "producerMs");
    json_builder_add_int_value (b, m->producer_ms);
    json_builder_set_member_name (b, "durationMs");
    json_builder_add_int_value (b, m->duration_ms);
    json_builder_set_member_name (b, "frames");
    json_builder_add_int_value (b, m->frames);
    json_builder_set_member_name (b, "bytes");
    json_builder_add_int_value (b, (gint64) m->bytes);
    json_builder_set_member_name (b, "init");
    json_builder_add_int_value (b, m->init_id);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "truncated");
  json_builder_add_boolean_value (b, list->len == FRAGMENT_LIST_MAX);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

static void
handle_gaps (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  gint64 start, end;
  MediaServiceCamera *c = media_request_range (request, service, FALSE, &start, &end);
  if (c == NULL)
    return;
  g_autoptr (GArray) gaps = media_store_gaps (service->store, c->name, start, end);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "gaps");
  json_builder_begin_array (b);
  for (guint i = 0; i + 1 < gaps->len; i += 2) {
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "startMs");
    json_builder_add_int_value (b, g_array_index (gaps, gint64, i));
    json_builder_set_member_name (b, "endMs");
    json_builder_add_int_value (b, g_array_index (gaps, gint64, i + 1));
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, 200, root);
}

/* ---- shared helpers ---- */

char *
media_format_time (gint64 ms)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (ms / 1000);
  g_autofree char *text = g_date_time_format (t, "%Y-%m-%dT%H:%M:%S");
  return g_strdup_printf ("%s.%03dZ", text, (int) (ms % 1000));
}

char *
media_codec_string (GBytes *init)
{
  MediaTrack track;
  if (!media_fmp4_read_init (g_bytes_get_data (init, NULL), g_bytes_get_size (init), &track, NULL,
                             NULL, NULL) ||
      track.codec_private_len < 13)
    return g_strdup ("avc1.42e01e");
  const guint8 *config = track.codec_private;
  if (track.codec == MEDIA_CODEC_H264)
    return g_strdup_printf ("avc1.%02x%02x%02x", config[1], config[2], config[3]);
  /* hvcC: profile space, tier and profile; compatibility flags (bit
   * reversed); level; constraint bytes (trailing zeros dropped). */
  guint8 b1 = config[1];
  const char *space[] = { "", "A", "B", "C" };
  guint32 compat = edge_get_be32 (config + 2), reversed = 0;
  for (guint i = 0; i < 32; i++)
    if (compat & (1u << i))
      reversed |= 1u << (31 - i);
  g_autoptr (GString) s = g_string_new (NULL);
  g_string_append_printf (s, "hvc1.%s%u.%X.%c%u", space[b1 >> 6], b1 & 0x1f, reversed,
                          (b1 & 0x20) ? 'H' : 'L', config[12]);
  guint last = 6;
  while (last > 0 && config[6 + last - 1] == 0)
    last--;
  for (guint i = 0; i < last; i++)
    g_string_append_printf (s, ".%X", config[6 + i]);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

char *
media_request_base_url (EdgeRequest *request)
{
  const char *host = edge_request_header (request, "Host");
  GUri *uri = edge_request_uri (request);
  const char *scheme = g_uri_get_scheme (uri) ? g_uri_get_scheme (uri) : "http";
  if (host == NULL || host[0] == '\0' || strpbrk (host, "/\\ \"<>") != NULL)
    return g_strdup_printf ("%s://%s:%d", scheme, g_uri_get_host (uri), g_uri_get_port (uri));
  return g_strdup_printf ("%s://%s", scheme, host);
}

typedef struct {
  MediaService *service;
  char *camera;
  guint32 init_id;
  GArray *numbers;
  MediaReadDone done;
  gpointer user_data;
  GPtrArray *fragments;
  GBytes *init;
  gboolean make_clip;
  GArray *mkv_tags; /* MediaMkvFragmentTags: make Matroska instead of a clip */
  MediaClipDone clip_done;
  GBytes *clip;
} ReadJob;

static void
read_job_free (ReadJob *job)
{
  g_free (job->camera);
  g_array_unref (job->numbers);
  g_clear_pointer (&job->fragments, g_ptr_array_unref);
  g_clear_pointer (&job->init, g_bytes_unref);
  g_clear_pointer (&job->clip, g_bytes_unref);
  g_clear_pointer (&job->mkv_tags, g_array_unref);
  g_free (job);
}

static void
read_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  ReadJob *job = data;
  GError *error = NULL;
  if (job->init_id != 0) {
    job->init = media_store_read_init (job->service->store, job->camera, job->init_id, &error);
    if (job->init == NULL) {
      g_task_return_error (task, error);
      return;
    }
  }
  job->fragments = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  for (guint i = 0; i < job->numbers->len; i++) {
    GBytes *bytes = media_store_read_fragment (job->service->store, job->camera,
                                               g_array_index (job->numbers, guint64, i), &error);
    if (bytes == NULL) {
      g_task_return_error (task, error);
      return;
    }
    g_ptr_array_add (job->fragments, bytes);
  }
  if (job->make_clip) {
    job->clip = job->mkv_tags
                    ? media_mkv_from_fragments (job->init,
                                                (GBytes *const *) job->fragments->pdata,
                                                (const MediaMkvFragmentTags *) (void *)
                                                    job->mkv_tags->data,
                                                job->fragments->len, &error)
                    : media_mp4_clip (job->init, (GBytes *const *) job->fragments->pdata,
                                      job->fragments->len, &error);
    if (job->clip == NULL) {
      g_task_return_error (task, error);
      return;
    }
  }
  g_task_return_boolean (task, TRUE);
}

static void
read_finished (GObject *source, GAsyncResult *result, gpointer data)
{
  GTask *task = G_TASK (result);
  ReadJob *job = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  job->service->jobs--;
  gboolean ok = g_task_propagate_boolean (task, &error);
  if (job->make_clip)
    job->clip_done (ok ? job->clip : NULL, error, job->user_data);
  else if (!ok)
    job->done (NULL, NULL, error, job->user_data);
  else
    job->done (job->fragments, job->init, NULL, job->user_data);
}

static ReadJob *
read_job_new (MediaService *service, const char *camera, guint32 init_id, const guint64 *numbers,
              guint n, gpointer user_data)
{
  ReadJob *job = g_new0 (ReadJob, 1);
  job->service = service;
  job->camera = g_strdup (camera);
  job->init_id = init_id;
  job->numbers = g_array_sized_new (FALSE, FALSE, sizeof (guint64), n);
  g_array_append_vals (job->numbers, numbers, n);
  job->user_data = user_data;
  return job;
}

static void
read_job_run (ReadJob *job)
{
  job->service->jobs++;
  g_autoptr (GTask) task = g_task_new (NULL, NULL, read_finished, NULL);
  g_task_set_task_data (task, job, (GDestroyNotify) read_job_free);
  g_task_run_in_thread (task, read_thread);
}

void
media_service_read_async (MediaService *service, const char *camera, guint32 init_id,
                          const guint64 *numbers, guint n, MediaReadDone done, gpointer user_data)
{
  ReadJob *job = read_job_new (service, camera, init_id, numbers, n, user_data);
  job->done = done;
  read_job_run (job);
}

void
media_service_clip_async (MediaService *service, const char *camera, guint32 init_id,
                          const guint64 *numbers, guint n, MediaClipDone done, gpointer user_data)
{
  ReadJob *job = read_job_new (service, camera, init_id, numbers, n, user_data);
  job->make_clip = TRUE;
  job->clip_done = done;
  read_job_run (job);
}

void
media_service_mkv_async (MediaService *service, const char *camera, guint32 init_id,
                         const guint64 *numbers, const MediaMkvFragmentTags *tags, guint n,
                         MediaClipDone done, gpointer user_data)
{
  ReadJob *job = read_job_new (service, camera, init_id, numbers, n, user_data);
  job->make_clip = TRUE;
  job->mkv_tags = g_array_sized_new (FALSE, FALSE, sizeof (MediaMkvFragmentTags), n);
  g_array_append_vals (job->mkv_tags, tags, n);
  job->clip_done = done;
  read_job_run (job);
}

/* ---- lifecycle ---- */

MediaService *
media_service_new (EdgeGateway *gateway, EdgeState *state, EdgeKeyring *keyring,
                   StreamStore *streams, const char *directory, GError **error)
{
  static const EdgeRoute routes[] = {
    { "GET", "/v1/cameras", handle_list, "List cameras and their status", "cameras", 0 },
    { "POST", "/v1/cameras", handle_create, "Add a camera", "cameras", 64 * 1024 },
    { "GET", "/v1/cameras/{name}", handle_get, "A camera's status", "cameras", 0 },
    { "DELETE", "/v1/cameras/{name}", handle_delete, "Remove a camera and its recordings",
      "cameras", 0 },
    { "GET", "/v1/cameras/{name}/fragments", handle_fragments,
      "Recorded fragments by server time (start, end: Unix seconds)", "cameras", 0 },
    { "GET", "/v1/cameras/{name}/gaps", handle_gaps, "When the source gave nothing", "cameras",
      0 },
  };
  MediaService *service = g_new0 (MediaService, 1);
  service->gateway = gateway;
  service->state = state;
  service->keyring = keyring;
  service->streams = streams;
  service->cameras = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, service_camera_free);
  service->store = media_store_open (directory, state, keyring, error);
  if (service->store == NULL) {
    media_service_free (service);
    return NULL;
  }
  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (gateway, &routes[i], service, error)) {
      media_service_free (service);
      return NULL;
    }
  if (!media_live_register (service, error) || !media_hls_register (service, error) ||
      !media_kvs_register (service, error) || !media_images_register (service, error) ||
      !media_events_register (service, error)) {
    media_service_free (service);
    return NULL;
  }
  media_events_close_open (service);
  start_stored_cameras (service);
  service->retention_timer = g_timeout_add_seconds (RETENTION_INTERVAL_S, retention_tick, service);
  return service;
}

void
media_service_free (MediaService *service)
{
  if (service == NULL)
    return;
  if (service->retention_timer)
    g_source_remove (service->retention_timer);
  if (service->space_timer)
    g_source_remove (service->space_timer);
  /* Reads in flight answer their requests first. */
  while (service->jobs > 0)
    g_main_context_iteration (NULL, TRUE);
  g_clear_pointer (&service->cameras, g_hash_table_unref);
  g_clear_pointer (&service->store, media_store_close);
  g_free (service);
}


gboolean
media_check_config (const EdgeConfig *config, const char *name, GError **error)
{
  for (guint i = 0; i < config->cameras->len; i++) {
    const EdgeConfigCamera *c = config->cameras->pdata[i];
    if (!media_camera_source_check (c, error)) {
      g_prefix_error (error, "%s: cameras[%u] (%s): ", name, i, c->name);
      return FALSE;
    }
  }
  return TRUE;
}
