/* face.c: faces, through GStreamer's OpenCV plugin (see detect.h).
 *
 * The detector owns a small pipeline, videoconvert ! facedetect ! fakesink,
 * that it drives itself: a pad of its own pushes each frame from the
 * detection branch's thread, so the frame runs through facedetect (Haar
 * cascades from Debian's opencv-data) in that same thread, and the
 * "facedetect" message it posts is caught by a synchronous bus handler
 * before gst_pad_push returns. Nothing runs in the background.
 *
 * Where the plugin or the cascade is missing, available() says which, and
 * cameras asking for faces log it and run their other detectors.
 */
#define G_LOG_DOMAIN "media"

#include "detect.h"

#include <gio/gio.h>
#include <string.h>

#define FACE_CASCADE "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"

typedef struct {
  GstElement *pipeline;
  GstPad *src; /* ours, linked to videoconvert */
  GstCaps *caps;
  guint32 seqnum;
  guint width, height;
  MediaDetectorResult *result; /* the frame being pushed's */
} FaceDetector;

static gboolean
face_available (GError **error)
{
  g_autoptr (GstElementFactory) factory = gst_element_factory_find ("facedetect");
  if (factory == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                 "GStreamer's OpenCV plugin (facedetect, Debian: gstreamer1.0-opencv) is not "
                 "installed");
    return FALSE;
  }
  if (!g_file_test (FACE_CASCADE, G_FILE_TEST_EXISTS)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                 "no face model at %s (Debian: opencv-data)", FACE_CASCADE);
    return FALSE;
  }
  return TRUE;
}

/* facedetect's message for the frame in flight: its faces, as boxes. */
static GstBusSyncReply
on_message (GstBus *bus, GstMessage *message, gpointer data)
{
  FaceDetector *d = data;
  const GstStructure *s = gst_message_get_structure (message);
  if (GST_MESSAGE_TYPE (message) != GST_MESSAGE_ELEMENT || d->result == NULL || s == NULL ||
      !gst_structure_has_name (s, "facedetect"))
    return GST_BUS_DROP; /* the bus unrefs it */
  const GValue *faces = gst_structure_get_value (s, "faces");
  guint n = faces && GST_VALUE_HOLDS_LIST (faces) ? gst_value_list_get_size (faces) : 0;
  MediaDetectorResult *r = d->result;
  for (guint i = 0; i < n && r->n_boxes < MEDIA_DETECT_BOXES_MAX; i++) {
    const GValue *face = gst_value_list_get_value (faces, i);
    const GstStructure *f = GST_VALUE_HOLDS_STRUCTURE (face) ? gst_value_get_structure (face)
                                                             : NULL;
    guint x = 0, y = 0, w = 0, h = 0;
    if (f == NULL || !gst_structure_get_uint (f, "x", &x) || !gst_structure_get_uint (f, "y", &y) ||
        !gst_structure_get_uint (f, "width", &w) || !gst_structure_get_uint (f, "height", &h) ||
        d->width == 0 || d->height == 0)
      continue;
    MediaBox *b = &r->boxes[r->n_boxes++];
    *b = (MediaBox) {
      .x = (double) x / d->width,
      .y = (double) y / d->height,
      .width = (double) w / d->width,
      .height = (double) h / d->height,
    };
    b->area = b->width * b->height;
  }
  if (r->n_boxes > 0) {
    /* Haar cascades give no confidence: a face found is a face. */
    r->detected = TRUE;
    r->score = 1.0;
  }
  return GST_BUS_DROP;
}

static void face_free (gpointer detector);

static gpointer
face_create (const EdgeConfigCamera *config, GError **error)
{
  FaceDetector *d = g_new0 (FaceDetector, 1);
  d->pipeline = gst_parse_launch ("videoconvert name=convert ! facedetect display=false "
                                  "updates=every_frame ! fakesink sync=false async=false",
                                  error);
  if (d->pipeline == NULL) {
    g_free (d);
    return NULL;
  }
  g_autoptr (GstBus) bus = gst_element_get_bus (d->pipeline);
  gst_bus_set_sync_handler (bus, on_message, d, NULL);
  g_autoptr (GstElement) convert = gst_bin_get_by_name (GST_BIN (d->pipeline), "convert");
  g_autoptr (GstPad) sink = gst_element_get_static_pad (convert, "sink");
  d->src = gst_pad_new ("src", GST_PAD_SRC);
  gst_pad_set_active (d->src, TRUE);
  if (gst_pad_link (d->src, sink) != GST_PAD_LINK_OK ||
      gst_element_set_state (d->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "the face detector does not start");
    face_free (d);
    return NULL;
  }
  d->seqnum = gst_util_seqnum_next ();
  GstEvent *start = gst_event_new_stream_start ("edged-faces");
  gst_event_set_seqnum (start, d->seqnum);
  gst_pad_push_event (d->src, start);
  return d;
}

static void
face_process (gpointer detector, const GstVideoFrame *frame, MediaDetectorResult *ret)
{
  FaceDetector *d = detector;
  g_autoptr (GstCaps) caps = gst_video_info_to_caps ((GstVideoInfo *) &frame->info);
  if (d->caps == NULL || !gst_caps_is_equal (d->caps, caps)) {
    gst_caps_replace (&d->caps, caps);
    d->width = (guint) GST_VIDEO_INFO_WIDTH (&frame->info);
    d->height = (guint) GST_VIDEO_INFO_HEIGHT (&frame->info);
    gst_pad_push_event (d->src, gst_event_new_caps (caps));
    GstSegment segment;
    gst_segment_init (&segment, GST_FORMAT_TIME);
    gst_pad_push_event (d->src, gst_event_new_segment (&segment));
  }
  d->result = ret;
  GstBuffer *buffer = gst_buffer_ref (frame->buffer);
  GstFlowReturn flow = gst_pad_push (d->src, buffer);
  d->result = NULL;
  if (flow != GST_FLOW_OK)
    g_debug ("face detector: %s", gst_flow_get_name (flow));
}

static void
face_free (gpointer detector)
{
  FaceDetector *d = detector;
  gst_element_set_state (d->pipeline, GST_STATE_NULL);
  g_clear_object (&d->src);
  gst_caps_replace (&d->caps, NULL);
  gst_object_unref (d->pipeline);
  g_free (d);
}

const MediaDetectorClass media_face_detector = {
  "face", face_available, face_create, face_process, face_free,
};
