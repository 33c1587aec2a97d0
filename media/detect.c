/* detect.c: a camera's detection branch (see detect.h).
 *
 *   appsrc (access units) ! h26Xparse ! DECODER ! videorate (at most fps)
 *     ! videoscale ! videoconvert ! I420, detection width ! appsink
 *
 * DECODER is hw/'s choice. The appsrc is fed from the camera's streaming
 * (or RTSP) thread and never blocks it: above DETECT_QUEUE_MAX access units
 * waiting, the rest are dropped up to the next keyframe, so the decoder
 * never sees a picture whose references are missing. Frames leave the
 * appsink on the branch's own streaming thread, where the detectors run
 * and events are decided; events go to the main context.
 */
#define G_LOG_DOMAIN "media"

#include "detect.h"

#include "hw.h"
#include "store.h"

#include <gio/gio.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <string.h>

#define DETECT_QUEUE_MAX 60
/* Frames in a row that must see something before an event starts: one
 * frame's noise is not an event. */
#define DETECT_START_FRAMES 2
/* The branch's first second of pictures (an encoder's first frames at
 * their roughest, a camera's exposure settling), and the first second
 * after the source comes back (the scene may have changed meanwhile: no
 * motion was seen), only show the detectors the scene: no event starts in
 * it. */
#define DETECT_WARMUP_NS GST_SECOND
/* Recent access units remembered to find a decoded frame's fragment. */
#define DETECT_RECENT 512
#define SNAPSHOT_TIMEOUT (2 * GST_SECOND)

/* ---- detectors ---- */

typedef struct {
  MediaMotion *motion;
} MotionDetector;

static gboolean
motion_available (GError **error)
{
  return TRUE;
}

static gboolean
parse_fraction (const char *text, double *ret)
{
  char *end = NULL;
  double v = g_ascii_strtod (text, &end);
  if (end == text)
    return FALSE;
  if (*end == '%') {
    v /= 100;
    end++;
  }
  if (*end != '\0' || !(v >= 0 && v <= 1))
    return FALSE;
  *ret = v;
  return TRUE;
}

static gpointer
motion_create (const EdgeConfigCamera *config, GError **error)
{
  MediaZone zones[MEDIA_ZONES_MAX];
  guint n_zones = 0;
  double min_area = 0;
  if (!media_zones_parse (config->zones, zones, &n_zones, error))
    return NULL;
  if (!parse_fraction (config->motion_min_area, &min_area)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "motion_min_area: a percentage of the frame (0.5%%) or a fraction (0.005), got "
                 "\"%s\"", config->motion_min_area);
    return NULL;
  }
  MotionDetector *d = g_new0 (MotionDetector, 1);
  d->motion = media_motion_new ((guint) config->motion_sensitivity, min_area, zones, n_zones);
  return d;
}

static void
motion_process (gpointer detector, const GstVideoFrame *frame, MediaDetectorResult *ret)
{
  MotionDetector *d = detector;
  MediaMotionResult r;
  media_motion_process (d->motion, GST_VIDEO_FRAME_PLANE_DATA (frame, 0),
                        (guint) GST_VIDEO_FRAME_WIDTH (frame), (guint) GST_VIDEO_FRAME_HEIGHT (frame),
                        (guint) GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0), &r);
  ret->detected = r.motion;
  ret->score = r.score;
  ret->n_boxes = r.n_boxes;
  memcpy (ret->boxes, r.boxes, r.n_boxes * sizeof (MediaBox));
}

static void
motion_free (gpointer detector)
{
  MotionDetector *d = detector;
  media_motion_free (d->motion);
  g_free (d);
}

static const MediaDetectorClass motion_detector = {
  "motion", motion_available, motion_create, motion_process, motion_free,
};

/* Every detector there is: a new one is a line here. */
static const MediaDetectorClass *const detectors[] = {
  &motion_detector,
  &media_face_detector,
};

/* The detector named @name, or NULL. */
static const MediaDetectorClass *
detector_find (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (detectors); i++)
    if (g_str_equal (detectors[i]->name, name))
      return detectors[i];
  return NULL;
}

/* Names of every detector, comma-separated. (transfer full) */
static char *
detector_names (void)
{
  GString *s = g_string_new (NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (detectors); i++)
    g_string_append_printf (s, "%s%s", i ? ", " : "", detectors[i]->name);
  return g_string_free (s, FALSE);
}

/* The detector names of @config->detect ("motion", "motion,face"). */
static gchar **
detect_names (const EdgeConfigCamera *config)
{
  gchar **names = g_strsplit (config->detect ? config->detect : "", ",", -1);
  guint n = 0;
  for (guint i = 0; names[i]; i++) {
    g_strstrip (names[i]);
    if (names[i][0])
      names[n++] = names[i];
    else
      g_free (names[i]);
  }
  names[n] = NULL;
  return names;
}

gboolean
media_detect_check (const EdgeConfigCamera *config, GError **error)
{
  g_auto (GStrv) names = detect_names (config);
  for (guint i = 0; names[i]; i++) {
    const MediaDetectorClass *klass = detector_find (names[i]);
    if (klass == NULL) {
      g_autofree char *known = detector_names ();
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "detect: no detector \"%s\" (there are: %s)", names[i], known);
      return FALSE;
    }
  }
  /* The motion settings are checked whether or not motion is on, so that a
   * mistake shows before it is switched on. */
  gpointer motion = motion_create (config, error);
  if (motion == NULL)
    return FALSE;
  motion_free (motion);
  if (!media_camera_name_valid (config->events_stream)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "events_stream: \"%s\" is not a stream name", config->events_stream);
    return FALSE;
  }
  return TRUE;
}

/* ---- events ---- */

typedef struct {
  const MediaDetectorClass *klass;
  gpointer detector;
  guint streak;       /* frames in a row that saw something */
  gboolean active;    /* an event is open */
  char *id;
  gint64 start_ms, last_ms;
  guint64 fragment;
  double score;
  MediaBox union_box;
  gboolean boxed; /* union_box holds a box */
} DetectorState;

struct _MediaDetect {
  gint refs;
  gint removed; /* atomic: the owner freed it */
  char *camera;
  GMainContext *context;
  MediaEventFunc func;
  gpointer user_data;
  gint64 cooldown_ms;
  guint fps, width;

  GstElement *pipeline;
  GstAppSrc *src;
  guint bus_watch;
  GMutex lock; /* caps, waiting_for_keyframe, recent, rewarm */
  GBytes *codec_private;
  gboolean h265;
  gboolean waiting_for_keyframe;
  /* The source restarted: the next access unit pushed starts a warm-up,
   * from its picture (rewarm_pts; GST_CLOCK_TIME_NONE: none waits) on. */
  gboolean rewarm_next;
  GstClockTime rewarm_pts;
  gboolean codec_warned;
  /* Buffers carry time since @base_ns (the first access unit, less a
   * second): videorate counts from the segment start, 0. */
  GstClockTime base_ns;
  struct {
    GstClockTime pts;
    guint64 fragment;
  } recent[DETECT_RECENT];
  guint recent_next;

  GArray *states;           /* DetectorState, the branch's thread's */
  GstClockTime warmup_end; /* the branch's thread's; 0 before the first frame */
  guint64 frames, dropped; /* atomic */
};

typedef struct {
  MediaDetect *detect;
  MediaEvent event;
  char *id, *type;
  MediaBox boxes[MEDIA_DETECT_BOXES_MAX];
} PendingEvent;

static MediaDetect *
detect_ref (MediaDetect *d)
{
  g_atomic_int_inc (&d->refs);
  return d;
}

static void
detect_unref (MediaDetect *d)
{
  if (!g_atomic_int_dec_and_test (&d->refs))
    return;
  g_clear_pointer (&d->codec_private, g_bytes_unref);
  g_mutex_clear (&d->lock);
  g_main_context_unref (d->context);
  g_free (d->camera);
  g_free (d);
}

static void
pending_free (gpointer data)
{
  PendingEvent *p = data;
  detect_unref (p->detect);
  g_clear_pointer (&p->event.snapshot, g_bytes_unref);
  g_free (p->id);
  g_free (p->type);
  g_free (p);
}

static gboolean
deliver (gpointer data)
{
  PendingEvent *p = data;
  if (!g_atomic_int_get (&p->detect->removed))
    p->detect->func (&p->event, p->detect->user_data);
  return G_SOURCE_REMOVE;
}

static void
emit (MediaDetect *d, DetectorState *s, MediaEventPhase phase, const MediaDetectorResult *r,
      GBytes *snapshot)
{
  PendingEvent *p = g_new0 (PendingEvent, 1);
  p->detect = detect_ref (d);
  p->id = g_strdup (s->id);
  p->type = g_strdup (s->klass->name);
  p->event = (MediaEvent) {
    .id = p->id,
    .camera = d->camera,
    .type = p->type,
    .phase = phase,
    .start_ms = s->start_ms,
    .end_ms = phase == MEDIA_EVENT_END ? s->last_ms : 0,
    .server_ms = g_get_real_time () / 1000,
    .fragment = s->fragment,
    .score = s->score,
    .boxes = p->boxes,
    .snapshot = snapshot ? g_bytes_ref (snapshot) : NULL,
  };
  if (phase == MEDIA_EVENT_START) {
    p->event.n_boxes = r->n_boxes;
    memcpy (p->boxes, r->boxes, r->n_boxes * sizeof (MediaBox));
  } else {
    p->event.n_boxes = 1;
    p->boxes[0] = s->union_box;
  }
  GSource *source = g_idle_source_new ();
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, deliver, p, pending_free);
  g_source_attach (source, d->context);
  g_source_unref (source);
}

static void
box_union (MediaBox *into, const MediaBox *b)
{
  double x1 = MAX (into->x + into->width, b->x + b->width);
  double y1 = MAX (into->y + into->height, b->y + b->height);
  into->x = MIN (into->x, b->x);
  into->y = MIN (into->y, b->y);
  into->width = x1 - into->x;
  into->height = y1 - into->y;
  into->area = MAX (into->area, b->area);
}

static GBytes *
snapshot_jpeg (GstSample *sample)
{
  g_autoptr (GstCaps) caps = gst_caps_new_empty_simple ("image/jpeg");
  g_autoptr (GError) error = NULL;
  g_autoptr (GstSample) jpeg = gst_video_convert_sample (sample, caps, SNAPSHOT_TIMEOUT, &error);
  if (jpeg == NULL) {
    g_debug ("no snapshot: %s", error ? error->message : "no encoder");
    return NULL;
  }
  GstBuffer *buffer = gst_sample_get_buffer (jpeg);
  GstMapInfo map;
  if (buffer == NULL || !gst_buffer_map (buffer, &map, GST_MAP_READ))
    return NULL;
  GBytes *bytes = g_bytes_new (map.data, map.size);
  gst_buffer_unmap (buffer, &map);
  return bytes;
}

/* Folds one frame's verdict into the event being gathered: the highest
 * score, the union of the boxes. */
static void
gather (DetectorState *s, const MediaDetectorResult *r)
{
  s->score = MAX (s->score, r->score);
  for (guint i = 0; i < r->n_boxes; i++) {
    if (s->boxed)
      box_union (&s->union_box, &r->boxes[i]);
    else
      s->union_box = r->boxes[i];
    s->boxed = TRUE;
  }
}

/* One detector's verdict on the frame at @ms, into events. */
static void
decide (MediaDetect *d, DetectorState *s, const MediaDetectorResult *r, gint64 ms,
        guint64 fragment, GstSample *sample)
{
  if (!r->detected) {
    s->streak = 0;
    if (s->active && ms - s->last_ms >= d->cooldown_ms) {
      s->active = FALSE;
      emit (d, s, MEDIA_EVENT_END, r, NULL);
    }
    return;
  }
  if (!s->active && s->streak == 0) {
    /* The event, if it becomes one, starts here. */
    s->start_ms = ms;
    s->fragment = fragment;
    s->score = 0;
    s->union_box = (MediaBox) { 0 };
    s->boxed = FALSE;
  }
  s->streak++;
  gather (s, r);
  if (s->active || s->streak >= DETECT_START_FRAMES)
    s->last_ms = ms;
  if (s->active || s->streak < DETECT_START_FRAMES)
    return;
  s->active = TRUE;
  g_free (s->id);
  s->id = edge_uuid_random ();
  g_autoptr (GBytes) snapshot = snapshot_jpeg (sample);
  emit (d, s, MEDIA_EVENT_START, r, snapshot);
}

static GstFlowReturn
on_frame (GstAppSink *sink, gpointer data)
{
  MediaDetect *d = data;
  g_autoptr (GstSample) sample = gst_app_sink_pull_sample (sink);
  if (sample == NULL)
    return GST_FLOW_EOS;
  GstBuffer *buffer = gst_sample_get_buffer (sample);
  GstVideoInfo info;
  GstVideoFrame frame;
  if (buffer == NULL || !gst_video_info_from_caps (&info, gst_sample_get_caps (sample)) ||
      !gst_video_frame_map (&frame, &info, buffer, GST_MAP_READ))
    return GST_FLOW_OK;
  __atomic_add_fetch (&d->frames, 1, __ATOMIC_RELAXED);
  GstClockTime pts = GST_BUFFER_PTS (buffer);
  gint64 ms = (gint64) ((pts + d->base_ns) / GST_MSECOND);
  guint64 fragment = 0;
  g_mutex_lock (&d->lock);
  for (guint i = 0; i < DETECT_RECENT; i++)
    if (d->recent[i].pts == pts) {
      fragment = d->recent[i].fragment;
      break;
    }
  gboolean restarted = d->rewarm_pts != GST_CLOCK_TIME_NONE && pts >= d->rewarm_pts;
  if (restarted)
    d->rewarm_pts = GST_CLOCK_TIME_NONE;
  g_mutex_unlock (&d->lock);
  if (d->warmup_end == 0 || restarted)
    d->warmup_end = pts + DETECT_WARMUP_NS;
  gboolean warming_up = pts < d->warmup_end;
  for (guint i = 0; i < d->states->len; i++) {
    DetectorState *s = &g_array_index (d->states, DetectorState, i);
    MediaDetectorResult r = { 0 };
    s->klass->process (s->detector, &frame, &r);
    if (!warming_up)
      decide (d, s, &r, ms, fragment, sample);
  }
  gst_video_frame_unmap (&frame);
  return GST_FLOW_OK;
}

/* ---- the pipeline ---- */

static gboolean
on_bus (GstBus *bus, GstMessage *message, gpointer data)
{
  MediaDetect *d = data;
  if (GST_MESSAGE_TYPE (message) == GST_MESSAGE_ERROR) {
    g_autoptr (GError) error = NULL;
    gst_message_parse_error (message, &error, NULL);
    g_warning ("camera \"%s\": detection branch: %s", d->camera, error->message);
  }
  return G_SOURCE_CONTINUE;
}

static GstElement *
detect_pipeline (MediaDetect *d, gboolean h265, GError **error)
{
  const HwChoice *hw = hw_choice_default ();
  const char *decoder = h265 ? hw->decoder_h265 : hw->decoder_h264;
  g_autofree char *description = g_strdup_printf (
      "appsrc name=src format=time is-live=true do-timestamp=false ! %s ! %s ! "
      "videorate drop-only=true max-rate=%u ! videoscale ! videoconvert ! "
      "video/x-raw,format=I420,width=%u,pixel-aspect-ratio=1/1,framerate=%u/1 ! "
      "appsink name=sink sync=false max-buffers=2 drop=true",
      h265 ? "h265parse" : "h264parse", decoder, d->fps, d->width, d->fps);
  return gst_parse_launch (description, error);
}

MediaDetect *
media_detect_new (const EdgeConfigCamera *config, GMainContext *context, MediaEventFunc func,
                  gpointer user_data, GError **error)
{
  g_auto (GStrv) names = detect_names (config);
  if (names[0] == NULL)
    return NULL;
  MediaDetect *d = g_new0 (MediaDetect, 1);
  d->refs = 1;
  d->rewarm_pts = GST_CLOCK_TIME_NONE;
  d->camera = g_strdup (config->name);
  d->context = g_main_context_ref (context);
  d->func = func;
  d->user_data = user_data;
  d->cooldown_ms = config->event_cooldown_ms;
  d->fps = (guint) config->detect_fps;
  d->width = (guint) config->detect_width & ~1u;
  d->waiting_for_keyframe = TRUE;
  g_mutex_init (&d->lock);
  d->states = g_array_new (FALSE, TRUE, sizeof (DetectorState));
  for (guint i = 0; names[i]; i++) {
    const MediaDetectorClass *klass = detector_find (names[i]);
    g_autoptr (GError) local = NULL;
    if (klass == NULL || !klass->available (&local)) {
      g_warning ("camera \"%s\": no %s detection: %s", config->name, names[i],
                 local ? local->message : "unknown detector");
      continue;
    }
    gpointer detector = klass->create (config, error);
    if (detector == NULL) {
      media_detect_free (d);
      return NULL;
    }
    DetectorState s = { .klass = klass, .detector = detector };
    g_array_append_val (d->states, s);
  }
  return d;
}

/* Builds the pipeline for the codec of the first access unit (the
 * streaming thread's, under the lock). */
static gboolean
detect_start (MediaDetect *d, gboolean h265)
{
  g_autoptr (GError) error = NULL;
  d->pipeline = detect_pipeline (d, h265, &error);
  if (d->pipeline == NULL) {
    g_warning ("camera \"%s\": no detection branch: %s", d->camera, error->message);
    return FALSE;
  }
  d->h265 = h265;
  d->src = GST_APP_SRC (gst_bin_get_by_name (GST_BIN (d->pipeline), "src"));
  g_autoptr (GstElement) sink = gst_bin_get_by_name (GST_BIN (d->pipeline), "sink");
  GstAppSinkCallbacks callbacks = { .new_sample = on_frame };
  gst_app_sink_set_callbacks (GST_APP_SINK (sink), &callbacks, d, NULL);
  g_autoptr (GstBus) bus = gst_element_get_bus (d->pipeline);
  GSource *watch = gst_bus_create_watch (bus);
  g_source_set_callback (watch, (GSourceFunc) (GCallback) on_bus, d, NULL);
  d->bus_watch = g_source_attach (watch, d->context);
  g_source_unref (watch);
  gst_element_set_state (d->pipeline, GST_STATE_PLAYING);
  return TRUE;
}

void
media_detect_push (MediaDetect *d, gboolean h265, GBytes *codec_private, const guint8 *data,
                   gsize size, gboolean keyframe, guint64 decode_90k, guint64 pts_90k,
                   guint64 fragment)
{
  if (d == NULL || d->states->len == 0)
    return;
  g_mutex_lock (&d->lock);
  if (d->pipeline == NULL) {
    if (!keyframe || !detect_start (d, h265)) {
      g_mutex_unlock (&d->lock);
      return;
    }
  }
  if (h265 != d->h265) {
    /* The branch's parser and decoder are for one codec. */
    if (!d->codec_warned)
      g_warning ("camera \"%s\": the codec changed; detection stops until edged restarts",
                 d->camera);
    d->codec_warned = TRUE;
    g_mutex_unlock (&d->lock);
    return;
  }
  if (d->codec_private == NULL || !g_bytes_equal (d->codec_private, codec_private)) {
    g_clear_pointer (&d->codec_private, g_bytes_unref);
    d->codec_private = g_bytes_ref (codec_private);
    gsize len;
    const guint8 *cp = g_bytes_get_data (codec_private, &len);
    g_autoptr (GstBuffer) codec_data = gst_buffer_new_memdup (cp, len);
    g_autoptr (GstCaps) caps =
        gst_caps_new_simple (h265 ? "video/x-h265" : "video/x-h264", "stream-format",
                             G_TYPE_STRING, h265 ? "hvc1" : "avc", "alignment", G_TYPE_STRING,
                             "au", "codec_data", GST_TYPE_BUFFER, codec_data, NULL);
    gst_app_src_set_caps (d->src, caps);
    d->waiting_for_keyframe = TRUE;
  }
  if (gst_app_src_get_current_level_buffers (d->src) >= DETECT_QUEUE_MAX) {
    /* Behind: drop, and start again at a keyframe. */
    d->waiting_for_keyframe = TRUE;
    __atomic_add_fetch (&d->dropped, 1, __ATOMIC_RELAXED);
    g_mutex_unlock (&d->lock);
    return;
  }
  if (d->waiting_for_keyframe && !keyframe) {
    __atomic_add_fetch (&d->dropped, 1, __ATOMIC_RELAXED);
    g_mutex_unlock (&d->lock);
    return;
  }
  d->waiting_for_keyframe = FALSE;
  if (d->base_ns == 0)
    d->base_ns = gst_util_uint64_scale (decode_90k, GST_SECOND, 90000) - GST_SECOND;
  GstClockTime pts = gst_util_uint64_scale (pts_90k, GST_SECOND, 90000) - d->base_ns;
  if (d->rewarm_next) {
    d->rewarm_next = FALSE;
    d->rewarm_pts = pts;
  }
  d->recent[d->recent_next].pts = pts;
  d->recent[d->recent_next].fragment = fragment;
  d->recent_next = (d->recent_next + 1) % DETECT_RECENT;
  GstAppSrc *src = GST_APP_SRC (gst_object_ref (d->src));
  g_mutex_unlock (&d->lock);

  GstBuffer *buffer = gst_buffer_new_memdup (data, size);
  GST_BUFFER_PTS (buffer) = pts;
  GST_BUFFER_DTS (buffer) = gst_util_uint64_scale (decode_90k, GST_SECOND, 90000) - d->base_ns;
  if (!keyframe)
    GST_BUFFER_FLAG_SET (buffer, GST_BUFFER_FLAG_DELTA_UNIT);
  gst_app_src_push_buffer (src, buffer);
  gst_object_unref (src);
}

void
media_detect_source_restarted (MediaDetect *d)
{
  if (d == NULL)
    return;
  g_mutex_lock (&d->lock);
  d->rewarm_next = TRUE;
  g_mutex_unlock (&d->lock);
}

guint64
media_detect_frames (MediaDetect *detect)
{
  return detect ? __atomic_load_n (&detect->frames, __ATOMIC_RELAXED) : 0;
}

guint64
media_detect_dropped (MediaDetect *detect)
{
  return detect ? __atomic_load_n (&detect->dropped, __ATOMIC_RELAXED) : 0;
}

/* Ends the events still open, at once (@d's owner is stopping it, on the
 * main thread): an event never stays open because edged stopped. */
static void
end_open_events (MediaDetect *d)
{
  for (guint i = 0; i < d->states->len; i++) {
    DetectorState *s = &g_array_index (d->states, DetectorState, i);
    if (!s->active)
      continue;
    s->active = FALSE;
    MediaEvent event = {
      .id = s->id,
      .camera = d->camera,
      .type = s->klass->name,
      .phase = MEDIA_EVENT_END,
      .start_ms = s->start_ms,
      .end_ms = s->last_ms,
      .server_ms = g_get_real_time () / 1000,
      .fragment = s->fragment,
      .score = s->score,
      .n_boxes = 1,
      .boxes = &s->union_box,
    };
    d->func (&event, d->user_data);
  }
}

void
media_detect_free (MediaDetect *d)
{
  if (d == NULL)
    return;
  if (d->pipeline) {
    gst_element_set_state (d->pipeline, GST_STATE_NULL);
    if (d->bus_watch) {
      GSource *watch = g_main_context_find_source_by_id (d->context, d->bus_watch);
      if (watch)
        g_source_destroy (watch);
    }
    gst_object_unref (d->src);
    gst_object_unref (d->pipeline);
  }
  /* The branch's thread has stopped: its states are ours. */
  end_open_events (d);
  g_atomic_int_set (&d->removed, 1);
  for (guint i = 0; i < d->states->len; i++) {
    DetectorState *s = &g_array_index (d->states, DetectorState, i);
    s->klass->free (s->detector);
    g_free (s->id);
  }
  g_array_unref (d->states);
  detect_unref (d);
}
