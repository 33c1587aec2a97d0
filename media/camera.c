/* camera.c: capture pipelines and the keyframe-aligned fragmenter.
 *
 * Pipelines, by source:
 *
 *   test://        videotestsrc (ball) ! clockoverlay ! ENC ! h264parse ! appsink
 *   v4l2:///dev/X  v4l2src ! decodebin ! videoconvert ! ENC ! h264parse ! appsink
 *   libcamera://   libcamerasrc ! videoconvert ! ENC ! h264parse ! appsink
 *   rtsp://... TCP edged's own client (media/rtsp.c, media/rtp.c), no pipeline
 *   rtsp://... UDP rtspsrc ! rtph26Xdepay ! h26Xparse ! appsink       (no re-encode)
 *   rtsps://...    rtspsrc as above, over TLS
 *   file:///x.mp4  filesrc ! parsebin ! h26Xparse ! appsink (sync: real time, looped)
 *
 * ENC is the encoder hw/ chose. The appsink takes access units in "avc" /
 * "hvc1" form (length-prefixed NAL units, parameter sets in codec_data);
 * the RTSP client hands over the same form from its own thread. Either way
 * the fragmenter runs in the thread the frames arrive in.
 *
 * Time: the fragmenter maps the source's decode timestamps onto a 90 kHz
 * timeline anchored at the wall clock when a session (one pipeline run)
 * starts, never before the end of the last fragment. So tfdt / 90 is Unix
 * milliseconds, decode time only grows, and a source lost for a minute
 * leaves a minute-long hole between two fragments rather than a jump back.
 */
#define G_LOG_DOMAIN "media"

#include "camera.h"

#include "hw.h"
#include "rtsp.h"

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <string.h>

#define BACKOFF_MIN_S 1
#define BACKOFF_MAX_S 30
/* A running source that delivers nothing for this long is lost. */
#define STALL_MIN_MS 5000
/* How long a source may take to deliver its first frame (RTSP handshakes,
 * camera warm-up). */
#define FIRST_FRAME_TIMEOUT_MS 20000

typedef struct {
  MediaStoreWriter *writer;
  guint64 next_number;
  guint32 next_init_id;
  gint64 fragment_ms;

  /* The current codec configuration. */
  GstCaps *caps;       /* what it came from, for pipelines */
  gboolean caps_usable;
  GBytes *codec_private;
  gboolean have_init;
  MediaInitMeta init_meta;
  GBytes *init;
  gboolean init_unsent; /* goes out with the next fragment */

  /* The session's timeline. */
  gboolean session_started;
  guint64 first_dts;    /* 90 kHz, the source's timeline */
  guint64 session_base; /* 90 kHz */
  guint64 last_end;     /* end of the last fragment, 90 kHz; survives sessions */

  /* The fragment being gathered. */
  guint32 last_delta; /* the last frame interval, 90 kHz: a chunk's duration */
  gboolean chunk_init_sent;
  guint32 chunk_sequence;
  GArray *samples;  /* MediaSample */
  GArray *decode;   /* guint64 decode times, 90 kHz */
  GByteArray *data;
  gint64 first_server_ms;
  gboolean waiting_for_keyframe;
} Fragmenter;

struct _MediaCamera {
  gint refs;
  EdgeConfigCamera config;
  MediaStore *store;
  const HwChoice *hw; /* encoder and pass-through, from hw/ */
  MediaFragmentFunc on_fragment;
  gpointer user_data;
  GMainContext *context;
  GThread *main_thread; /* the context's: where events are handled */
  gboolean removed; /* freed by its owner; queued events are dropped */

  MediaCameraState state;
  char *last_error;
  guint restarts;
  guint backoff_s;
  guint retry_source;
  guint watchdog_source;
  guint scene_source; /* test://?pattern=visitor */
  GstElement *pipeline;
  MediaRtspClient *rtsp; /* RTSP over TCP: edged's own client, no pipeline */
  guint run;             /* counts source starts: a stale failure is ignored */
  guint bus_watch;
  gint64 started_us;
  gint64 lost_at_ms; /* server time the source was lost at; 0: not lost */
  const char *lost_reason; /* static; NULL: the last error says why */
  gint64 last_end_server_ms;
  gboolean have_track;
  MediaInitMeta track;

  /* Written by the streaming thread, read by the main thread. */
  gint64 last_sample_us; /* atomic */
  guint64 frames;        /* atomic */
  gint want_chunks;      /* atomic: low-latency viewers are watching */
  MediaChunkFunc on_chunk;
  MediaDetect *detect; /* nullable: no detectors */

  Fragmenter frag; /* the streaming thread's while a pipeline runs */
};

typedef struct {
  MediaCamera *camera;
  MediaFragmentMeta meta;
  GBytes *fragment;
  MediaInitMeta init_meta;
  GBytes *init;
  char *write_error;
} PendingFragment;

typedef struct {
  MediaCamera *camera;
  GBytes *chunk;
  gboolean keyframe;
  MediaInitMeta init_meta;
  GBytes *init;
} PendingChunk;

static void camera_start (MediaCamera *camera);
static void camera_stop_pipeline (MediaCamera *camera);

static MediaCamera *
camera_ref (MediaCamera *camera)
{
  g_atomic_int_inc (&camera->refs);
  return camera;
}

static void
config_copy (EdgeConfigCamera *to, const EdgeConfigCamera *from)
{
  *to = *from;
  to->name = g_strdup (from->name);
  to->source = g_strdup (from->source);
  to->rtsp_transport = g_strdup (from->rtsp_transport);
  to->detect = g_strdup (from->detect);
  to->motion_min_area = g_strdup (from->motion_min_area);
  to->zones = g_strdup (from->zones);
  to->events_stream = g_strdup (from->events_stream);
}

static void
camera_unref (MediaCamera *camera)
{
  if (!g_atomic_int_dec_and_test (&camera->refs))
    return;
  g_free (camera->config.name);
  g_free (camera->config.source);
  g_free (camera->config.rtsp_transport);
  g_free (camera->config.detect);
  g_free (camera->config.motion_min_area);
  g_free (camera->config.zones);
  g_free (camera->config.events_stream);
  g_free (camera->last_error);
  g_main_context_unref (camera->context);
  g_free (camera);
}

/* ---- sources ---- */

/* The videotestsrc patterns a test:// source takes ("test://?pattern=snow");
 * the moving ball by default. */
static const char *const test_patterns[] = { "ball", "smpte", "snow", "pinwheel", "circular",
                                             "gamut", "spokes", "visitor", NULL };
/* "visitor": a still scene (the clock alone) that a ball visits for
 * VISIT_S seconds out of every VISIT_PERIOD_S: motion to detect, then none. */
#define VISIT_S 8
#define VISIT_PERIOD_S 30

typedef enum {
  SOURCE_TEST,
  SOURCE_FILE,
  SOURCE_RTSP,
  SOURCE_V4L2,
  SOURCE_LIBCAMERA,
} SourceKind;

static gboolean
source_parse (const char *source, SourceKind *ret_kind, char **ret_target, GError **error)
{
  static const struct {
    const char *prefix;
    SourceKind kind;
  } schemes[] = {
    { "test://", SOURCE_TEST },       { "file://", SOURCE_FILE },
    { "rtsp://", SOURCE_RTSP },       { "rtsps://", SOURCE_RTSP },
    { "v4l2://", SOURCE_V4L2 },       { "libcamera://", SOURCE_LIBCAMERA },
  };
  for (guint i = 0; i < G_N_ELEMENTS (schemes); i++) {
    if (!g_str_has_prefix (source, schemes[i].prefix))
      continue;
    const char *rest = source + strlen (schemes[i].prefix);
    if (schemes[i].kind == SOURCE_RTSP) {
      g_autoptr (GUri) uri = g_uri_parse (source, G_URI_FLAGS_HAS_PASSWORD, error);
      if (uri == NULL)
        return FALSE;
      if (g_uri_get_host (uri) == NULL || g_uri_get_host (uri)[0] == '\0') {
        g_set_error (error, G_URI_ERROR, G_URI_ERROR_BAD_HOST, "%s: no host", source);
        return FALSE;
      }
      rest = source;
    }
    if ((schemes[i].kind == SOURCE_FILE || schemes[i].kind == SOURCE_V4L2) && rest[0] != '/') {
      g_set_error (error, G_URI_ERROR, G_URI_ERROR_BAD_PATH,
                   "%s: expected an absolute path (%s/path)", source, schemes[i].prefix);
      return FALSE;
    }
    if (schemes[i].kind == SOURCE_TEST && rest[0] != '\0' &&
        !(g_str_has_prefix (rest, "?pattern=") &&
          g_strv_contains (test_patterns, rest + strlen ("?pattern=")))) {
      g_autofree char *known = g_strjoinv (", ", (char **) test_patterns);
      g_set_error (error, G_URI_ERROR, G_URI_ERROR_BAD_QUERY,
                   "%s: test:// takes ?pattern= one of %s", source, known);
      return FALSE;
    }
    if (strchr (rest, '"') != NULL || strchr (rest, '\n') != NULL) {
      g_set_error (error, G_URI_ERROR, G_URI_ERROR_FAILED, "%s: quotes and newlines are not "
                   "allowed", source);
      return FALSE;
    }
    *ret_kind = schemes[i].kind;
    *ret_target = g_strdup (rest);
    return TRUE;
  }
  g_set_error (error, G_URI_ERROR, G_URI_ERROR_BAD_SCHEME,
               "%s: unknown source; expected test://, file://, rtsp://, v4l2:// or libcamera://",
               source);
  return FALSE;
}

gboolean
media_camera_source_check (const EdgeConfigCamera *config, GError **error)
{
  SourceKind kind;
  g_autofree char *target = NULL;
  return source_parse (config->source, &kind, &target, error) &&
         media_detect_check (config, error);
}

char *
media_camera_display_source (const char *source)
{
  g_autoptr (GUri) uri = NULL;
  if (!g_str_has_prefix (source, "rtsp"))
    return g_strdup (source);
  uri = g_uri_parse (source, G_URI_FLAGS_HAS_PASSWORD, NULL);
  if (uri == NULL || g_uri_get_password (uri) == NULL)
    return g_strdup (source);
  g_autoptr (GUri) shown =
      g_uri_build_with_user (G_URI_FLAGS_HAS_PASSWORD, g_uri_get_scheme (uri), g_uri_get_user (uri),
                             "***", NULL, g_uri_get_host (uri), g_uri_get_port (uri),
                             g_uri_get_path (uri), g_uri_get_query (uri), g_uri_get_fragment (uri));
  return g_uri_to_string (shown);
}

static const char *
test_pattern (const char *target)
{
  const char *p = g_str_has_prefix (target, "?pattern=") ? target + strlen ("?pattern=") : NULL;
  return p && g_strv_contains (test_patterns, p) ? p : "ball";
}

/* The pipeline description for a raw source: source, then conversion,
 * encoder and parser. */
static char *
raw_pipeline (MediaCamera *camera, SourceKind kind, const char *target)
{
  const EdgeConfigCamera *c = &camera->config;
  gint64 width = c->width, height = c->height, fps = c->fps;
  g_autofree char *encoder = NULL;
  g_autofree char *source = NULL;
  g_autoptr (GString) caps = g_string_new ("video/x-raw");

  if (kind == SOURCE_TEST) {
    width = width ? width : 640;
    height = height ? height : 360;
    fps = fps ? fps : 15;
  }
  guint keyframe_frames = (guint) MAX (1, (fps ? fps : 30) * c->keyframe_ms / 1000);
  if (width)
    g_string_append_printf (caps, ",width=%" G_GINT64_FORMAT, width);
  if (height)
    g_string_append_printf (caps, ",height=%" G_GINT64_FORMAT, height);
  if (fps)
    g_string_append_printf (caps, ",framerate=%" G_GINT64_FORMAT "/1", fps);

  switch (kind) {
  case SOURCE_TEST: {
    /* The clock is burnt in where GStreamer's Pango plugin is installed
     * (gstreamer1.0-x); without it the scene is the moving pattern alone. */
    g_autoptr (GstElementFactory) overlay = gst_element_factory_find ("clockoverlay");
    const char *pattern = test_pattern (target);
    source = g_strdup_printf ("videotestsrc name=testsrc is-live=true pattern=%s ! %s%s",
                              g_str_equal (pattern, "visitor") ? "black" : pattern, caps->str,
                              overlay ? " ! clockoverlay halignment=right valignment=bottom "
                                        "time-format=\"%Y-%m-%d %H:%M:%S\" "
                                        "font-desc=\"Sans 20\" ! "
                                        "timeoverlay halignment=left valignment=top"
                                      : "");
    break;
  }
  case SOURCE_V4L2: {
    /* A camera that sends H.264 (UVC H.264) is recorded as sent: its own
     * keyframes, no decode and re-encode. */
    g_auto (GStrv) formats = camera->hw->passthrough ? hw_v4l2_formats (target) : NULL;
    if (formats && g_strv_contains ((const char *const *) formats, "video/x-h264")) {
      g_autoptr (GString) h264 = g_string_new ("video/x-h264");
      g_string_append (h264, caps->str + strlen ("video/x-raw"));
      return g_strdup_printf ("v4l2src device=\"%s\" ! %s ! h264parse ! appsink name=sink",
                              target, h264->str);
    }
    source = g_strdup_printf ("v4l2src device=\"%s\" ! decodebin ! videoconvert ! videoscale ! "
                              "videorate ! %s",
                              target, caps->str);
    break;
  }
  case SOURCE_LIBCAMERA:
  default:
    source = target[0] ? g_strdup_printf ("libcamerasrc camera-name=\"%s\" ! %s", target, caps->str)
                       : g_strdup_printf ("libcamerasrc ! %s", caps->str);
    break;
  }
  encoder = hw_encoder_pipeline (camera->hw->encoder, camera->hw->encoder_threads,
                                 (guint) c->bitrate_kbps, keyframe_frames);
  if (encoder == NULL)
    return NULL;
  return g_strdup_printf ("%s ! %s ! h264parse ! appsink name=sink", source, encoder);
}

/* Runs @func with @data on the camera's main context: at once when called
 * from its thread, otherwise queued there. Never in another thread: a
 * source thread must not touch the index, nor stop itself, even while the
 * main loop is not running yet (when GLib's invoke would run @func in the
 * caller). */
static void
on_main (MediaCamera *camera, GSourceFunc func, gpointer data, GDestroyNotify destroy)
{
  if (g_thread_self () == camera->main_thread) {
    func (data);
    destroy (data);
    return;
  }
  GSource *source = g_idle_source_new ();
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, func, data, destroy);
  g_source_attach (source, camera->context);
  g_source_unref (source);
}

/* ---- the fragmenter (the source's thread) ---- */

static void
fragmenter_reset_pending (Fragmenter *f)
{
  g_array_set_size (f->samples, 0);
  g_array_set_size (f->decode, 0);
  g_byte_array_set_size (f->data, 0);
}

static void
deliver_on_main (MediaCamera *camera, PendingFragment *pending);

/* Closes the fragment gathered so far; @end is the decode time it ends at
 * (the next keyframe's), 0 to estimate it from the last frame interval. */
static void
fragmenter_emit (MediaCamera *camera, guint64 end)
{
  Fragmenter *f = &camera->frag;
  guint n = f->samples->len;
  if (n == 0)
    return;
  guint64 *decode = (guint64 *) (void *) f->decode->data;
  MediaSample *samples = (MediaSample *) (void *) f->samples->data;
  for (guint i = 0; i + 1 < n; i++)
    samples[i].duration = (guint32) MIN (decode[i + 1] - decode[i], G_MAXUINT32);
  guint32 last = n > 1 ? samples[n - 2].duration : MEDIA_TIMESCALE / 15;
  if (end > decode[n - 1])
    last = (guint32) MIN (end - decode[n - 1], G_MAXUINT32);
  samples[n - 1].duration = last;
  guint64 fragment_end = decode[n - 1] + last;

  PendingFragment *p = g_new0 (PendingFragment, 1);
  p->meta.number = f->next_number++;
  p->meta.init_id = f->init_meta.id;
  p->meta.decode_time = decode[0];
  p->meta.producer_ms = (gint64) (decode[0] / (MEDIA_TIMESCALE / 1000));
  p->meta.server_ms = f->first_server_ms;
  p->meta.duration_ms = (guint32) ((fragment_end - decode[0]) / (MEDIA_TIMESCALE / 1000));
  p->meta.frames = n;
  p->fragment = media_fmp4_fragment ((guint32) p->meta.number, decode[0], samples, n,
                                     f->data->data, f->data->len);
  p->meta.bytes = g_bytes_get_size (p->fragment);
  f->last_end = fragment_end;
  fragmenter_reset_pending (f);

  g_autoptr (GError) error = NULL;
  if (f->init_unsent) {
    p->init_meta = f->init_meta;
    p->init = g_bytes_ref (f->init);
    if (!media_store_write_init (f->writer, &f->init_meta, f->init, &error))
      p->write_error = g_strdup (error->message);
    f->init_unsent = FALSE;
  }
  if (p->write_error == NULL && !media_store_write_fragment (f->writer, &p->meta, p->fragment,
                                                            &error))
    p->write_error = g_strdup (error->message);
  deliver_on_main (camera, p);
}

static void deliver_chunk_on_main (MediaCamera *camera, PendingChunk *pending);

/* A chunk for low-latency viewers: the one frame just taken, as its own
 * moof + mdat. Its duration is not known until the next frame arrives; the
 * last frame interval stands in for it (exact at a steady frame rate). The
 * stored fragment is unaffected: it is cut with the true durations. */
static void
fragmenter_chunk (MediaCamera *camera, const MediaSample *sample, guint64 decode,
                  const guint8 *data)
{
  Fragmenter *f = &camera->frag;
  MediaSample one = *sample;
  one.duration = f->last_delta ? f->last_delta : MEDIA_TIMESCALE / 30;
  PendingChunk *p = g_new0 (PendingChunk, 1);
  p->chunk = media_fmp4_fragment (f->chunk_sequence++, decode, &one, 1, data, sample->size);
  p->keyframe = sample->keyframe;
  if (!f->chunk_init_sent) {
    p->init = g_bytes_ref (f->init);
    p->init_meta = f->init_meta;
    f->chunk_init_sent = TRUE;
  }
  deliver_chunk_on_main (camera, p);
}

/* Takes the codec configuration of the next frame: a new init segment
 * when it differs from the current one. */
static void
fragmenter_set_track (MediaCamera *camera, const MediaTrack *track)
{
  Fragmenter *f = &camera->frag;
  gsize len = MIN (track->codec_private_len, MEDIA_CODEC_PRIVATE_MAX_BYTES);
  if (f->have_init && f->init_meta.codec == track->codec && f->init_meta.width == track->width &&
      f->init_meta.height == track->height && g_bytes_get_size (f->codec_private) == len &&
      memcmp (g_bytes_get_data (f->codec_private, NULL), track->codec_private, len) == 0)
    return;
  MediaTrack clamped = *track;
  clamped.codec_private_len = len;
  GBytes *init = media_fmp4_init_segment (&clamped);

  /* What was gathered under the old configuration goes out first. */
  fragmenter_emit (camera, 0);
  g_clear_pointer (&f->init, g_bytes_unref);
  g_clear_pointer (&f->codec_private, g_bytes_unref);
  f->init = init;
  f->codec_private = g_bytes_new (track->codec_private, len);
  f->init_meta = (MediaInitMeta) {
    .id = f->next_init_id++,
    .codec = track->codec,
    .width = track->width,
    .height = track->height,
    .created_ms = g_get_real_time () / 1000,
  };
  f->have_init = TRUE;
  f->init_unsent = TRUE;
  f->chunk_init_sent = FALSE;
  f->waiting_for_keyframe = TRUE;
}

/* One access unit into the fragmenter. */
typedef struct {
  const guint8 *data;
  gsize size;
  gboolean keyframe;
  guint64 dts, pts;  /* 90 kHz, the source's timeline */
  gint64 entered_us; /* wall clock it entered edged (read for a session's first frame) */
} Frame;

static void
fragmenter_push (MediaCamera *camera, const Frame *frame)
{
  Fragmenter *f = &camera->frag;
  if (f->waiting_for_keyframe) {
    if (!frame->keyframe)
      return; /* every fragment starts on a keyframe */
    f->waiting_for_keyframe = FALSE;
  }
  if (!f->session_started) {
    /* The session is anchored at the wall-clock time its first frame
     * entered (captured, for a local camera; received, for RTSP), and its
     * pictures are a new start for the detectors. */
    media_detect_source_restarted (camera->detect);
    f->session_started = TRUE;
    f->first_dts = frame->dts;
    f->session_base = MAX ((guint64) (frame->entered_us / 1000) * (MEDIA_TIMESCALE / 1000),
                           f->last_end);
  }
  guint64 decode = f->session_base;
  if (frame->dts > f->first_dts)
    decode += frame->dts - f->first_dts;
  if (f->decode->len > 0) {
    guint64 previous = g_array_index (f->decode, guint64, f->decode->len - 1);
    if (decode <= previous)
      decode = previous + 1; /* decode times strictly increase */
    f->last_delta = (guint32) MIN (decode - previous, (guint64) MEDIA_TIMESCALE);
  }

  guint n = f->samples->len;
  if (frame->keyframe && n > 0) {
    guint64 start = g_array_index (f->decode, guint64, 0);
    if (decode - start >= (guint64) f->fragment_ms * (MEDIA_TIMESCALE / 1000))
      fragmenter_emit (camera, decode);
  } else if (n + 1 >= MEDIA_FRAGMENT_MAX_SAMPLES) {
    /* A source with no keyframe for minutes: close what we have and wait
     * for the next keyframe rather than start a fragment mid-GOP. */
    fragmenter_emit (camera, decode);
    f->waiting_for_keyframe = TRUE;
    return;
  }
  if (f->data->len + frame->size > MEDIA_FRAGMENT_MAX_BYTES - 64 * 1024) {
    fragmenter_emit (camera, decode);
    f->waiting_for_keyframe = TRUE;
    return;
  }
  if (f->samples->len == 0)
    f->first_server_ms = g_get_real_time () / 1000;
  gint64 cts = (gint64) frame->pts - (gint64) frame->dts;
  MediaSample s = {
    .size = (guint32) frame->size,
    .cts_offset = (gint32) CLAMP (cts, G_MININT32, G_MAXINT32),
    .keyframe = frame->keyframe,
  };
  g_array_append_val (f->samples, s);
  g_array_append_val (f->decode, decode);
  g_byte_array_append (f->data, frame->data, (guint) frame->size);
  if (g_atomic_int_get (&camera->want_chunks))
    fragmenter_chunk (camera, &s, decode, frame->data);
  if (camera->detect && f->codec_private)
    media_detect_push (camera->detect, f->init_meta.codec == MEDIA_CODEC_H265, f->codec_private,
                       frame->data, frame->size, frame->keyframe, decode,
                       (guint64) ((gint64) decode + s.cts_offset), f->next_number);
}

static void
frame_counted (MediaCamera *camera)
{
  __atomic_add_fetch (&camera->frames, 1, __ATOMIC_RELAXED);
  __atomic_store_n (&camera->last_sample_us, g_get_monotonic_time (), __ATOMIC_RELAXED);
}

/* ---- pipelines' frames (their streaming thread) ---- */

/* New caps from the appsink: the track they describe, when they carry
 * codec data. */
static void
take_caps (MediaCamera *camera, GstCaps *caps)
{
  Fragmenter *f = &camera->frag;
  gst_caps_replace (&f->caps, caps);
  f->caps_usable = FALSE;
  GstStructure *s = gst_caps_get_structure (caps, 0);
  const GValue *value = gst_structure_get_value (s, "codec_data");
  gint width = 0, height = 0;
  if (value == NULL || !GST_VALUE_HOLDS_BUFFER (value))
    return;
  GstBuffer *codec_data = gst_value_get_buffer (value);
  gst_structure_get_int (s, "width", &width);
  gst_structure_get_int (s, "height", &height);
  GstMapInfo map;
  if (!gst_buffer_map (codec_data, &map, GST_MAP_READ))
    return;
  MediaTrack track = {
    .codec = gst_structure_has_name (s, "video/x-h265") ? MEDIA_CODEC_H265 : MEDIA_CODEC_H264,
    .width = (guint) width,
    .height = (guint) height,
    .codec_private = map.data,
    .codec_private_len = map.size,
  };
  fragmenter_set_track (camera, &track);
  gst_buffer_unmap (codec_data, &map);
  f->caps_usable = TRUE;
}

/* How long ago (µs) the frame at @pts entered the pipeline: its running
 * time against the pipeline clock. Encoders shift their output segment (by
 * 1000 hours, to keep decode times positive): the frame's running time is
 * what the clock knows. */
static gint64
pipeline_age_us (GstAppSink *sink, GstSample *sample, GstClockTime pts)
{
  gint64 age_us = 0;
  GstClock *clock = gst_element_get_clock (GST_ELEMENT (sink));
  const GstSegment *segment = gst_sample_get_segment (sample);
  GstClockTime frame_running =
      segment ? gst_segment_to_running_time (segment, GST_FORMAT_TIME, pts) : pts;
  if (clock && GST_CLOCK_TIME_IS_VALID (frame_running)) {
    GstClockTime running =
        gst_clock_get_time (clock) - gst_element_get_base_time (GST_ELEMENT (sink));
    if (running > frame_running)
      age_us = (gint64) MIN ((running - frame_running) / GST_USECOND,
                             (GstClockTime) 10 * G_USEC_PER_SEC);
  }
  g_clear_object (&clock);
  return age_us;
}

static GstFlowReturn
on_new_sample (GstAppSink *sink, gpointer data)
{
  MediaCamera *camera = data;
  Fragmenter *f = &camera->frag;
  g_autoptr (GstSample) sample = gst_app_sink_pull_sample (sink);
  if (sample == NULL)
    return GST_FLOW_EOS;
  GstBuffer *buffer = gst_sample_get_buffer (sample);
  GstCaps *caps = gst_sample_get_caps (sample);
  frame_counted (camera);
  if (buffer == NULL || caps == NULL)
    return GST_FLOW_OK;
  if (f->caps == NULL || !gst_caps_is_equal (f->caps, caps))
    take_caps (camera, caps);
  if (!f->caps_usable)
    return GST_FLOW_OK;

  GstClockTime dts = GST_BUFFER_DTS_OR_PTS (buffer);
  GstClockTime pts = GST_BUFFER_PTS_IS_VALID (buffer) ? GST_BUFFER_PTS (buffer) : dts;
  if (!GST_CLOCK_TIME_IS_VALID (dts))
    return GST_FLOW_OK;
  GstMapInfo map;
  if (!gst_buffer_map (buffer, &map, GST_MAP_READ))
    return GST_FLOW_OK;
  Frame frame = {
    .data = map.data,
    .size = map.size,
    .keyframe = !GST_BUFFER_FLAG_IS_SET (buffer, GST_BUFFER_FLAG_DELTA_UNIT),
    .dts = gst_util_uint64_scale (dts, MEDIA_TIMESCALE, GST_SECOND),
    .pts = gst_util_uint64_scale (pts, MEDIA_TIMESCALE, GST_SECOND),
  };
  if (!f->session_started) {
    gint64 age_us = pipeline_age_us (sink, sample, pts);
    g_debug ("camera \"%s\": first frame entered the pipeline %.1f ms ago", camera->config.name,
             age_us / 1000.0);
    frame.entered_us = g_get_real_time () - age_us;
  }
  fragmenter_push (camera, &frame);
  gst_buffer_unmap (buffer, &map);
  return GST_FLOW_OK;
}

/* ---- RTSP frames (the client's thread) ---- */

static void
on_rtsp_frame (const MediaRtspFrame *in, gpointer data)
{
  MediaCamera *camera = data;
  frame_counted (camera);
  fragmenter_set_track (camera, in->track);
  Frame frame = {
    .data = in->data,
    .size = in->size,
    .keyframe = in->keyframe,
    .dts = in->pts,
    .pts = in->pts,
    .entered_us = in->received_us,
  };
  fragmenter_push (camera, &frame);
}

typedef struct {
  MediaCamera *camera;
  guint run;
  char *message;
} SourceFailure;

static void camera_lost (MediaCamera *camera, const char *why, gboolean immediately);

static gboolean
source_failed (gpointer data)
{
  SourceFailure *failure = data;
  MediaCamera *camera = failure->camera;
  if (!camera->removed && camera->rtsp != NULL && camera->run == failure->run) {
    g_autofree char *why = g_strdup_printf ("source failed: %s", failure->message);
    camera_lost (camera, why, FALSE);
  }
  return G_SOURCE_REMOVE;
}

static void
source_failure_free (SourceFailure *failure)
{
  camera_unref (failure->camera);
  g_free (failure->message);
  g_free (failure);
}

static void
on_rtsp_failed (const char *message, gpointer data)
{
  MediaCamera *camera = data;
  SourceFailure *failure = g_new0 (SourceFailure, 1);
  failure->camera = camera_ref (camera);
  failure->run = camera->run;
  failure->message = g_strdup (message);
  on_main (camera, source_failed, failure, (GDestroyNotify) source_failure_free);
}

/* ---- main-thread delivery ---- */

static void
pending_free (PendingFragment *p)
{
  g_clear_pointer (&p->fragment, g_bytes_unref);
  g_clear_pointer (&p->init, g_bytes_unref);
  g_free (p->write_error);
  camera_unref (p->camera);
  g_free (p);
}

static void
camera_set_error (MediaCamera *camera, const char *message)
{
  if (g_strcmp0 (camera->last_error, message) != 0)
    g_warning ("camera \"%s\": %s", camera->config.name, message);
  g_free (camera->last_error);
  camera->last_error = g_strdup (message);
}

static gboolean
deliver (gpointer data)
{
  PendingFragment *p = data;
  MediaCamera *camera = p->camera;
  g_autoptr (GError) error = NULL;

  if (camera->removed)
    return G_SOURCE_REMOVE;
  if (p->write_error) {
    camera_set_error (camera, p->write_error);
  } else {
    if (p->init && !media_store_index_init (camera->store, camera->config.name, &p->init_meta,
                                            &error))
      camera_set_error (camera, error->message);
    else if (!media_store_index_fragment (camera->store, camera->config.name, &p->meta, &error))
      camera_set_error (camera, error->message);
  }
  if (camera->lost_at_ms > 0) {
    g_clear_error (&error);
    if (!media_store_index_gap (camera->store, camera->config.name, camera->lost_at_ms,
                                p->meta.server_ms,
                                camera->lost_reason  ? camera->lost_reason
                                : camera->last_error ? camera->last_error
                                                     : "source lost",
                                &error))
      g_warning ("camera \"%s\": %s", camera->config.name, error->message);
    if (camera->lost_reason == NULL)
      g_message ("camera \"%s\": source back after %.1f s", camera->config.name,
                 (p->meta.server_ms - camera->lost_at_ms) / 1000.0);
    camera->lost_at_ms = 0;
    camera->lost_reason = NULL;
  }
  if (p->init) {
    camera->track = p->init_meta;
    camera->have_track = TRUE;
  }
  camera->state = MEDIA_CAMERA_RUNNING;
  camera->backoff_s = 0;
  camera->last_end_server_ms = p->meta.server_ms + p->meta.duration_ms;
  if (p->write_error == NULL)
    g_clear_pointer (&camera->last_error, g_free);

  MediaFragmentEvent event = {
    .camera = camera->config.name,
    .meta = &p->meta,
    .fragment = p->fragment,
    .init_meta = p->init ? &p->init_meta : NULL,
    .init = p->init,
  };
  if (camera->on_fragment)
    camera->on_fragment (&event, camera->user_data);
  return G_SOURCE_REMOVE;
}

static void
deliver_on_main (MediaCamera *camera, PendingFragment *p)
{
  p->camera = camera_ref (camera);
  on_main (camera, deliver, p, (GDestroyNotify) pending_free);
}

static void
pending_chunk_free (PendingChunk *p)
{
  g_clear_pointer (&p->chunk, g_bytes_unref);
  g_clear_pointer (&p->init, g_bytes_unref);
  camera_unref (p->camera);
  g_free (p);
}

static gboolean
deliver_chunk (gpointer data)
{
  PendingChunk *p = data;
  MediaCamera *camera = p->camera;
  if (camera->removed || camera->on_chunk == NULL)
    return G_SOURCE_REMOVE;
  MediaChunkEvent event = {
    .camera = camera->config.name,
    .chunk = p->chunk,
    .keyframe = p->keyframe,
    .init_meta = p->init ? &p->init_meta : NULL,
    .init = p->init,
  };
  camera->on_chunk (&event, camera->user_data);
  return G_SOURCE_REMOVE;
}

static void
deliver_chunk_on_main (MediaCamera *camera, PendingChunk *p)
{
  p->camera = camera_ref (camera);
  on_main (camera, deliver_chunk, p, (GDestroyNotify) pending_chunk_free);
}

void
media_camera_set_chunks (MediaCamera *camera, MediaChunkFunc on_chunk)
{
  camera->on_chunk = on_chunk;
  g_atomic_int_set (&camera->want_chunks, on_chunk != NULL);
}

/* ---- lifecycle (main thread) ---- */

static gboolean
retry_now (gpointer data)
{
  MediaCamera *camera = data;
  camera->retry_source = 0;
  camera->restarts++;
  camera_start (camera);
  return G_SOURCE_REMOVE;
}

/* Tears the source down and schedules the next attempt. */
static void
camera_lost (MediaCamera *camera, const char *why, gboolean immediately)
{
  /* The stop delivers what was gathered, which resets the backoff as any
   * fragment does; a source that keeps failing must still back off. */
  guint backoff = camera->backoff_s;
  camera_stop_pipeline (camera);
  camera->backoff_s = backoff;
  if (camera->lost_at_ms == 0)
    camera->lost_at_ms = camera->last_end_server_ms ? camera->last_end_server_ms
                                                    : g_get_real_time () / 1000;
  camera->state = MEDIA_CAMERA_RETRYING;
  if (immediately) {
    camera->retry_source = g_idle_add (retry_now, camera);
    return;
  }
  camera->backoff_s = camera->backoff_s == 0 ? BACKOFF_MIN_S
                                             : MIN (camera->backoff_s * 2, BACKOFF_MAX_S);
  g_autofree char *message = g_strdup_printf ("%s; retrying in %u s", why, camera->backoff_s);
  camera_set_error (camera, message);
  camera->retry_source = g_timeout_add_seconds (camera->backoff_s, retry_now, camera);
}

static gboolean
on_bus_message (GstBus *bus, GstMessage *message, gpointer data)
{
  MediaCamera *camera = data;
  switch (GST_MESSAGE_TYPE (message)) {
  case GST_MESSAGE_ERROR: {
    g_autoptr (GError) error = NULL;
    g_autofree char *debug = NULL;
    gst_message_parse_error (message, &error, &debug);
    g_debug ("camera \"%s\": %s (%s)", camera->config.name, error->message, debug);
    g_autofree char *why = g_strdup_printf ("source failed: %s", error->message);
    camera->bus_watch = 0;
    camera_lost (camera, why, FALSE);
    return G_SOURCE_REMOVE;
  }
  case GST_MESSAGE_EOS: {
    /* A file plays in a loop; any other source ending is a loss. */
    gboolean file = g_str_has_prefix (camera->config.source, "file://");
    camera->bus_watch = 0;
    if (file) {
      camera_stop_pipeline (camera);
      camera->retry_source = g_idle_add (retry_now, camera);
    } else {
      camera_lost (camera, "source ended", FALSE);
    }
    return G_SOURCE_REMOVE;
  }
  default:
    return G_SOURCE_CONTINUE;
  }
}

static gboolean
watchdog (gpointer data)
{
  MediaCamera *camera = data;
  if (camera->pipeline == NULL && camera->rtsp == NULL)
    return G_SOURCE_CONTINUE;
  gint64 now = g_get_monotonic_time ();
  gint64 last = __atomic_load_n (&camera->last_sample_us, __ATOMIC_RELAXED);
  gint64 stall_ms = MAX (STALL_MIN_MS, 3 * camera->config.fragment_ms);
  if (last == 0 && now - camera->started_us > (gint64) FIRST_FRAME_TIMEOUT_MS * 1000) {
    camera_lost (camera, "no frame from the source", FALSE);
  } else if (last != 0 && now - last > stall_ms * 1000) {
    g_autofree char *why = g_strdup_printf ("no frame for %.0f s", (now - last) / 1e6);
    camera_lost (camera, why, FALSE);
  }
  return G_SOURCE_CONTINUE;
}

/* Links a compressed video pad to parser and appsink; other pads to a
 * fakesink, so that audio tracks do not stall the pipeline. */
static void
link_compressed_pad (GstElement *pipeline, GstPad *pad, gboolean rtp, gboolean sync)
{
  g_autoptr (GstCaps) caps = gst_pad_get_current_caps (pad);
  if (caps == NULL)
    caps = gst_pad_query_caps (pad, NULL);
  GstStructure *s = gst_caps_get_structure (caps, 0);
  const char *depay = NULL, *parser = NULL;
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  gboolean sink_free = sink != NULL && GST_PAD_PEER (sink->sinkpads->data) == NULL;

  if (rtp) {
    const char *media = gst_structure_get_string (s, "media");
    const char *encoding = gst_structure_get_string (s, "encoding-name");
    if (g_strcmp0 (media, "video") == 0 && g_strcmp0 (encoding, "H264") == 0) {
      depay = "rtph264depay";
      parser = "h264parse";
    } else if (g_strcmp0 (media, "video") == 0 && g_strcmp0 (encoding, "H265") == 0) {
      depay = "rtph265depay";
      parser = "h265parse";
    }
  } else if (gst_structure_has_name (s, "video/x-h264")) {
    parser = "h264parse";
  } else if (gst_structure_has_name (s, "video/x-h265")) {
    parser = "h265parse";
  }

  GstElement *first = NULL;
  if (parser && sink_free) {
    GstElement *p = gst_element_factory_make (parser, NULL);
    GstElement *d = depay ? gst_element_factory_make (depay, NULL) : NULL;
    gst_bin_add (GST_BIN (pipeline), p);
    if (d) {
      gst_bin_add (GST_BIN (pipeline), d);
      gst_element_link (d, p);
      gst_element_sync_state_with_parent (d);
    }
    gst_element_link (p, sink);
    gst_element_sync_state_with_parent (p);
    g_object_set (sink, "sync", sync, NULL);
    first = d ? d : p;
  } else {
    first = gst_element_factory_make ("fakesink", NULL);
    g_object_set (first, "sync", FALSE, "async", FALSE, NULL);
    gst_bin_add (GST_BIN (pipeline), first);
    gst_element_sync_state_with_parent (first);
  }
  g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (first, "sink");
  gst_pad_link (pad, sinkpad);
  if (sink)
    gst_object_unref (sink);
}

static void
on_rtsp_pad (GstElement *src, GstPad *pad, gpointer pipeline)
{
  link_compressed_pad (pipeline, pad, TRUE, FALSE);
}

static void
on_parsed_pad (GstElement *parsebin, GstPad *pad, gpointer pipeline)
{
  link_compressed_pad (pipeline, pad, FALSE, TRUE);
}

/* RTSP over TCP goes through edged's own client (media/rtsp.c); over UDP,
 * and for rtsps://, through rtspsrc. */
static gboolean
rtsp_own_client (MediaCamera *camera)
{
  return g_str_has_prefix (camera->config.source, "rtsp://") &&
         !g_str_equal (camera->config.rtsp_transport, "udp");
}

static GstElement *
build_pipeline (MediaCamera *camera, GError **error)
{
  SourceKind kind;
  g_autofree char *target = NULL;
  g_autofree char *description = NULL;
  if (!source_parse (camera->config.source, &kind, &target, error))
    return NULL;
  static const char sink_caps[] = "appsink name=sink max-buffers=300 caps=\"video/x-h264,"
                                  "stream-format=avc,alignment=au;video/x-h265,"
                                  "stream-format=hvc1,alignment=au\"";
  switch (kind) {
  case SOURCE_RTSP:
    description = g_strdup_printf ("rtspsrc name=src location=\"%s\" protocols=%s latency=200 "
                                   "tcp-timeout=5000000 %s",
                                   target, g_str_equal (camera->config.rtsp_transport, "udp")
                                               ? "udp"
                                               : "tcp",
                                   sink_caps);
    break;
  case SOURCE_FILE:
    description = g_strdup_printf ("filesrc location=\"%s\" ! parsebin name=parse %s", target,
                                   sink_caps);
    break;
  default: {
    g_autofree char *raw = raw_pipeline (camera, kind, target);
    if (raw == NULL) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "no H.264 encoder works on this machine for a raw source (see edged hw probe)");
      return NULL;
    }
    /* The raw chain ends in "appsink name=sink"; give it its caps. */
    g_autofree char *stem = g_strndup (raw, strlen (raw) - strlen ("appsink name=sink"));
    description = g_strconcat (stem, sink_caps, NULL);
    break;
  }
  }
  GstElement *pipeline = gst_parse_launch_full (description, NULL, GST_PARSE_FLAG_FATAL_ERRORS,
                                                error);
  if (pipeline == NULL)
    return NULL;
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  GstAppSinkCallbacks callbacks = { .new_sample = on_new_sample };
  gst_app_sink_set_callbacks (GST_APP_SINK (sink), &callbacks, camera, NULL);
  if (kind != SOURCE_FILE)
    g_object_set (sink, "sync", FALSE, NULL);
  gst_object_unref (sink);
  if (kind == SOURCE_RTSP) {
    GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
    g_signal_connect (src, "pad-added", G_CALLBACK (on_rtsp_pad), pipeline);
    gst_object_unref (src);
  } else if (kind == SOURCE_FILE) {
    GstElement *parse = gst_bin_get_by_name (GST_BIN (pipeline), "parse");
    g_signal_connect (parse, "pad-added", G_CALLBACK (on_parsed_pad), pipeline);
    gst_object_unref (parse);
  }
  return pipeline;
}

/* test://?pattern=visitor: the ball comes and goes with the wall clock. */
static gboolean
scene_tick (gpointer data)
{
  MediaCamera *camera = data;
  if (camera->pipeline == NULL)
    return G_SOURCE_CONTINUE;
  GstElement *src = gst_bin_get_by_name (GST_BIN (camera->pipeline), "testsrc");
  if (src) {
    gboolean visiting = g_get_real_time () / G_USEC_PER_SEC % VISIT_PERIOD_S < VISIT_S;
    gst_util_set_object_arg (G_OBJECT (src), "pattern", visiting ? "ball" : "black");
    gst_object_unref (src);
  }
  return G_SOURCE_CONTINUE;
}

static void
camera_start (MediaCamera *camera)
{
  camera->run++;
  camera->frag.session_started = FALSE;
  camera->frag.waiting_for_keyframe = TRUE;
  __atomic_store_n (&camera->last_sample_us, 0, __ATOMIC_RELAXED);
  camera->started_us = g_get_monotonic_time ();
  camera->state = camera->state == MEDIA_CAMERA_RETRYING ? MEDIA_CAMERA_RETRYING
                                                         : MEDIA_CAMERA_STARTING;
  if (rtsp_own_client (camera)) {
    static const MediaRtspCallbacks callbacks = { on_rtsp_frame, on_rtsp_failed };
    camera->rtsp = media_rtsp_client_start (camera->config.source, &callbacks, camera);
    return;
  }

  g_autoptr (GError) error = NULL;
  GstElement *pipeline = build_pipeline (camera, &error);
  if (pipeline == NULL) {
    camera_lost (camera, error->message, FALSE);
    return;
  }
  camera->pipeline = pipeline;
  if (g_str_has_prefix (camera->config.source, "test://?pattern=visitor") &&
      camera->scene_source == 0)
    camera->scene_source = g_timeout_add (250, scene_tick, camera);
  GstBus *bus = gst_element_get_bus (pipeline);
  camera->bus_watch = gst_bus_add_watch (bus, on_bus_message, camera);
  gst_object_unref (bus);
  if (gst_element_set_state (pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    /* The bus says why; the watch handles it. Nothing more to do here. */
  }
}

static void
camera_stop_pipeline (MediaCamera *camera)
{
  if (camera->bus_watch) {
    g_source_remove (camera->bus_watch);
    camera->bus_watch = 0;
  }
  if (camera->retry_source) {
    g_source_remove (camera->retry_source);
    camera->retry_source = 0;
  }
  if (camera->scene_source) {
    g_source_remove (camera->scene_source);
    camera->scene_source = 0;
  }
  if (camera->rtsp == NULL && camera->pipeline == NULL)
    return;
  /* Joins the client's thread, or the pipeline's streaming threads: the
   * fragmenter is ours again after it. */
  g_clear_pointer (&camera->rtsp, media_rtsp_client_stop);
  if (camera->pipeline) {
    gst_element_set_state (camera->pipeline, GST_STATE_NULL);
    g_clear_pointer (&camera->pipeline, gst_object_unref);
  }
  fragmenter_emit (camera, 0);
  camera->frag.session_started = FALSE;
  /* The next session negotiates afresh; a new codec configuration makes a
   * new init segment, the same one reuses it. */
}

MediaCamera *
media_camera_new (const EdgeConfigCamera *config, MediaStore *store, const HwChoice *hw,
                  MediaFragmentFunc on_fragment, MediaEventFunc on_event, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  MediaCamera *camera = g_new0 (MediaCamera, 1);
  camera->refs = 1;
  config_copy (&camera->config, config);
  camera->store = store;
  camera->hw = hw;
  camera->on_fragment = on_fragment;
  camera->user_data = user_data;
  camera->context = g_main_context_ref_thread_default ();
  camera->main_thread = g_thread_self ();
  camera->state = MEDIA_CAMERA_STARTING;

  Fragmenter *f = &camera->frag;
  f->samples = g_array_new (FALSE, FALSE, sizeof (MediaSample));
  f->decode = g_array_new (FALSE, FALSE, sizeof (guint64));
  f->data = g_byte_array_new ();
  f->fragment_ms = config->fragment_ms;
  f->next_number = media_store_next_fragment (store, config->name);
  f->next_init_id = media_store_next_init (store, config->name);
  GArray *last = media_store_list_last (store, config->name, 1);
  if (last->len > 0) {
    /* Recording resumes after a stop or a crash: the time between is a gap. */
    const MediaFragmentMeta *m = &g_array_index (last, MediaFragmentMeta, 0);
    f->last_end = m->decode_time + (guint64) m->duration_ms * (MEDIA_TIMESCALE / 1000);
    camera->last_end_server_ms = m->server_ms + m->duration_ms;
    camera->lost_at_ms = camera->last_end_server_ms;
    camera->lost_reason = "edged was not recording";
  }
  g_array_unref (last);
  f->writer = media_store_writer_new (store, config->name, &error);
  if (f->writer == NULL) {
    camera_set_error (camera, error->message);
    camera->state = MEDIA_CAMERA_RETRYING;
    return camera;
  }
  if (on_event) {
    camera->detect = media_detect_new (config, camera->context, on_event, user_data, &error);
    if (error)
      g_warning ("camera \"%s\": no detection: %s", config->name, error->message);
  }
  camera->watchdog_source = g_timeout_add_seconds (1, watchdog, camera);
  camera_start (camera);
  return camera;
}

void
media_camera_free (MediaCamera *camera)
{
  if (camera == NULL)
    return;
  if (camera->watchdog_source)
    g_source_remove (camera->watchdog_source);
  /* The stop flushes the last fragment; on the main thread its delivery
   * (index, listener) runs at once (on_main). */
  camera_stop_pipeline (camera);
  camera->removed = TRUE;
  g_clear_pointer (&camera->detect, media_detect_free);
  Fragmenter *f = &camera->frag;
  media_store_writer_free (f->writer);
  g_array_unref (f->samples);
  g_array_unref (f->decode);
  g_byte_array_unref (f->data);
  g_clear_pointer (&f->init, g_bytes_unref);
  g_clear_pointer (&f->codec_private, g_bytes_unref);
  gst_caps_replace (&f->caps, NULL);
  camera->on_fragment = NULL;
  camera->on_chunk = NULL;
  camera_unref (camera);
}

const EdgeConfigCamera *
media_camera_config (MediaCamera *camera)
{
  return &camera->config;
}

MediaCameraState
media_camera_state (MediaCamera *camera)
{
  return camera->state;
}

const char *
media_camera_state_name (MediaCameraState state)
{
  switch (state) {
  case MEDIA_CAMERA_RUNNING:
    return "running";
  case MEDIA_CAMERA_RETRYING:
    return "retrying";
  case MEDIA_CAMERA_STARTING:
  default:
    return "starting";
  }
}

const char *
media_camera_last_error (MediaCamera *camera)
{
  return camera->last_error;
}

guint64
media_camera_frames (MediaCamera *camera)
{
  return __atomic_load_n (&camera->frames, __ATOMIC_RELAXED);
}


guint
media_camera_restarts (MediaCamera *camera)
{
  return camera->restarts;
}

gboolean
media_camera_track (MediaCamera *camera, MediaInitMeta *ret_init)
{
  if (!camera->have_track)
    return FALSE;
  *ret_init = camera->track;
  return TRUE;
}

MediaDetect *
media_camera_detect (MediaCamera *camera)
{
  return camera->detect;
}
