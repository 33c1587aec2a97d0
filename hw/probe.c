/* probe.c: what this machine's cameras and codecs can do.
 *
 * An element being installed proves little: v4l2h264enc is registered on
 * any board with a V4L2 encoder device, VA-API elements load without a
 * working driver, nvh264enc without a free NVENC session. So each codec
 * present is tried: a short test encode through the very pipeline fragment
 * a camera would use (hw_encoder_pipeline), or a decode of a stream made
 * here. Cameras come from GStreamer's device monitor (its V4L2 provider,
 * and libcamera's where that plugin is installed).
 */
#define G_LOG_DOMAIN "hw"

#include "edge-gateway.h"
#include "hw.h"

#include <gst/app/gstappsink.h>
#include <gst/gst.h>

/* The codecs tried, in order of preference within each kind. */
static const struct {
  const char *element;
  const char *codec;
  gboolean encoder;
  gboolean hardware;
} candidates[] = {
  { "v4l2h264enc", "h264", TRUE, TRUE }, /* Raspberry Pi 4: bcm2835-codec */
  { "nvh264enc", "h264", TRUE, TRUE },   /* NVIDIA NVENC */
  { "vah264enc", "h264", TRUE, TRUE },   /* VA (Intel, AMD), GStreamer's va plugin */
  { "vaapih264enc", "h264", TRUE, TRUE }, /* VA, gstreamer-vaapi */
  { "x264enc", "h264", TRUE, FALSE },
  { "openh264enc", "h264", TRUE, FALSE },
  { "v4l2h264dec", "h264", FALSE, TRUE }, /* Raspberry Pi 4 */
  { "nvh264dec", "h264", FALSE, TRUE },
  { "vah264dec", "h264", FALSE, TRUE },
  { "vaapih264dec", "h264", FALSE, TRUE },
  { "avdec_h264", "h264", FALSE, FALSE },
  { "v4l2slh265dec", "h265", FALSE, TRUE }, /* Raspberry Pi 5: rpivid */
  { "v4l2h265dec", "h265", FALSE, TRUE },
  { "nvh265dec", "h265", FALSE, TRUE },
  { "vah265dec", "h265", FALSE, TRUE },
  { "vaapih265dec", "h265", FALSE, TRUE },
  { "avdec_h265", "h265", FALSE, FALSE },
};

/* Device files that tell which codec hardware a board has. */
static const char *const codec_devices[] = {
  "dev/video10", "dev/video11", "dev/video19", "dev/dri/renderD128", "dev/dri/renderD129",
  "dev/nvidia0", "dev/nvidiactl", NULL,
};

#define TEST_FRAMES 10
#define TEST_TIMEOUT_NS (5 * GST_SECOND)
#define TEST_SOURCE "videotestsrc num-buffers=10 pattern=ball ! " \
                    "video/x-raw,width=320,height=240,framerate=15/1"

static void
codec_free (HwCodec *codec)
{
  g_free (codec->element);
  g_free (codec->codec);
  g_free (codec->detail);
  g_free (codec);
}

static void
camera_free (HwCamera *camera)
{
  g_free (camera->name);
  g_free (camera->api);
  g_free (camera->source);
  g_strfreev (camera->formats);
  g_free (camera);
}

static HwProbe *
probe_new (void)
{
  HwProbe *probe = g_new0 (HwProbe, 1);
  probe->cameras = g_ptr_array_new_with_free_func ((GDestroyNotify) camera_free);
  probe->codecs = g_ptr_array_new_with_free_func ((GDestroyNotify) codec_free);
  return probe;
}

void
hw_probe_free (HwProbe *probe)
{
  if (probe == NULL)
    return;
  hw_board_free (probe->board);
  g_ptr_array_unref (probe->cameras);
  g_ptr_array_unref (probe->codecs);
  g_strfreev (probe->device_files);
  g_free (probe);
}

const HwCodec *
hw_probe_codec (const HwProbe *probe, const char *element)
{
  for (guint i = 0; i < probe->codecs->len; i++) {
    const HwCodec *codec = g_ptr_array_index (probe->codecs, i);
    if (g_str_equal (codec->element, element))
      return codec;
  }
  return NULL;
}

/* ---- codec tests ---- */

/* Runs @description (ending in an appsink named "sink") to its end, for at
 * most TEST_TIMEOUT_NS. TRUE when frames came out and the stream ended;
 * @detail says what happened either way. */
static gboolean
run_test_pipeline (const char *description, guint *ret_frames, double *ret_ms, char **detail)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GstElement) pipeline = gst_parse_launch (description, &error);
  gint64 start = g_get_monotonic_time ();
  guint frames = 0;
  gboolean ended = FALSE;

  *ret_frames = 0;
  *ret_ms = 0;
  if (pipeline == NULL || error != NULL) {
    *detail = g_strdup_printf ("pipeline refused: %s", error ? error->message : "unknown");
    return FALSE;
  }
  g_autoptr (GstElement) sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  g_autoptr (GstBus) bus = gst_element_get_bus (pipeline);
  if (gst_element_set_state (pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    g_autoptr (GstMessage) msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    g_autoptr (GError) gst_error = NULL;
    if (msg)
      gst_message_parse_error (msg, &gst_error, NULL);
    *detail = g_strdup_printf ("did not start: %s",
                               gst_error ? gst_error->message : "state change failed");
    gst_element_set_state (pipeline, GST_STATE_NULL);
    return FALSE;
  }
  for (;;) {
    GstClockTime left = TEST_TIMEOUT_NS - (GstClockTime) (g_get_monotonic_time () - start) * 1000;
    if ((gint64) left <= 0)
      break;
    g_autoptr (GstSample) sample = gst_app_sink_try_pull_sample (GST_APP_SINK (sink), left);
    if (sample == NULL) {
      ended = gst_app_sink_is_eos (GST_APP_SINK (sink));
      break;
    }
    frames++;
  }
  *ret_ms = (double) (g_get_monotonic_time () - start) / 1000.0;
  *ret_frames = frames;

  g_autoptr (GstMessage) msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  if (msg) {
    g_autoptr (GError) gst_error = NULL;
    gst_message_parse_error (msg, &gst_error, NULL);
    *detail = g_strdup_printf ("failed after %u frames: %s", frames, gst_error->message);
  } else if (!ended) {
    *detail = g_strdup_printf ("timed out after %u frames in %.0f ms", frames, *ret_ms);
  } else if (frames == 0) {
    *detail = g_strdup ("ended without a frame");
  }
  gst_element_set_state (pipeline, GST_STATE_NULL);
  return ended && frames > 0 && msg == NULL;
}

static void
test_encoder (HwCodec *codec)
{
  g_autofree char *fragment = hw_encoder_pipeline (codec->element, 0, 500, 5);
  g_autofree char *description =
      g_strdup_printf ("%s ! %s ! h264parse ! appsink name=sink sync=false", TEST_SOURCE, fragment);
  guint frames;

  codec->works = run_test_pipeline (description, &frames, &codec->test_ms, &codec->detail);
  if (codec->works)
    codec->detail = g_strdup_printf ("encoded %u test frames (320x240) in %.0f ms", frames,
                                     codec->test_ms);
}

/* A software encoder of @codec that works here, to make a decoder's test
 * stream with; NULL when none. */
static const char *
test_stream_encoder (const char *codec)
{
  if (g_str_equal (codec, "h264")) {
    g_autoptr (GstElementFactory) x264 = gst_element_factory_find ("x264enc");
    if (x264)
      return "videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency "
             "speed-preset=ultrafast key-int-max=5 ! h264parse";
    g_autoptr (GstElementFactory) openh264 = gst_element_factory_find ("openh264enc");
    if (openh264)
      return "videoconvert ! video/x-raw,format=I420 ! openh264enc gop-size=5 ! h264parse";
    return NULL;
  }
  g_autoptr (GstElementFactory) x265 = gst_element_factory_find ("x265enc");
  if (x265)
    return "videoconvert ! video/x-raw,format=I420 ! x265enc tune=zerolatency "
           "speed-preset=ultrafast key-int-max=5 ! h265parse";
  return NULL;
}

static void
test_decoder (HwCodec *codec)
{
  const char *encoder = test_stream_encoder (codec->codec);
  guint frames;

  if (encoder == NULL) {
    codec->detail = g_strdup_printf ("not tested: no %s encoder here to make a test stream",
                                     g_str_equal (codec->codec, "h264") ? "H.264" : "H.265");
    return;
  }
  g_autofree char *description = g_strdup_printf ("%s ! %s ! %s ! appsink name=sink sync=false",
                                                  TEST_SOURCE, encoder, codec->element);
  codec->works = run_test_pipeline (description, &frames, &codec->test_ms, &codec->detail);
  if (codec->works)
    codec->detail = g_strdup_printf ("decoded %u of %u test frames in %.0f ms", frames,
                                     TEST_FRAMES, codec->test_ms);
}

static void
probe_codecs (HwProbe *probe, gboolean test)
{
  for (guint i = 0; i < G_N_ELEMENTS (candidates); i++) {
    HwCodec *codec = g_new0 (HwCodec, 1);
    g_autoptr (GstElementFactory) factory = gst_element_factory_find (candidates[i].element);

    codec->element = g_strdup (candidates[i].element);
    codec->codec = g_strdup (candidates[i].codec);
    codec->encoder = candidates[i].encoder;
    codec->hardware = candidates[i].hardware;
    codec->present = factory != NULL;
    if (!codec->present)
      codec->detail = g_strdup ("not installed");
    else if (!test)
      codec->detail = g_strdup ("installed, not tested");
    else if (codec->encoder)
      test_encoder (codec);
    else
      test_decoder (codec);
    g_ptr_array_add (probe->codecs, codec);
  }
}

/* ---- cameras ---- */

/* The distinct media types of @caps, in order. */
static char **
caps_media_types (GstCaps *caps)
{
  g_autoptr (GStrvBuilder) types = g_strv_builder_new ();
  g_autoptr (GPtrArray) seen = g_ptr_array_new ();

  for (guint i = 0; caps && i < gst_caps_get_size (caps); i++) {
    const char *name = gst_structure_get_name (gst_caps_get_structure (caps, i));
    if (!g_ptr_array_find_with_equal_func (seen, name, g_str_equal, NULL)) {
      g_ptr_array_add (seen, (gpointer) name);
      g_strv_builder_add (types, name);
    }
  }
  return g_strv_builder_end (types);
}

char **
hw_v4l2_formats (const char *device)
{
  g_autoptr (GstElement) src = gst_element_factory_make ("v4l2src", NULL);
  if (src == NULL)
    return NULL;
  g_object_set (src, "device", device, NULL);
  if (gst_element_set_state (src, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE) {
    gst_element_set_state (src, GST_STATE_NULL);
    return NULL;
  }
  g_autoptr (GstPad) pad = gst_element_get_static_pad (src, "src");
  g_autoptr (GstCaps) caps = gst_pad_query_caps (pad, NULL);
  char **types = caps_media_types (caps);
  gst_element_set_state (src, GST_STATE_NULL);
  return types;
}

static HwCamera *
camera_from_device (GstDevice *device)
{
  g_autoptr (GstStructure) props = gst_device_get_properties (device);
  g_autoptr (GstCaps) caps = gst_device_get_caps (device);
  g_autofree char *display = gst_device_get_display_name (device);
  const char *api = props ? gst_structure_get_string (props, "device.api") : NULL;
  const char *path = props ? gst_structure_get_string (props, "device.path") : NULL;
  HwCamera *camera;

  if (api == NULL && GST_IS_DEVICE (device) && props)
    api = gst_structure_get_string (props, "device.provider");
  camera = g_new0 (HwCamera, 1);
  camera->name = g_strdup (display ? display : "camera");
  if (api && g_str_equal (api, "v4l2") && path) {
    camera->api = g_strdup ("v4l2");
    camera->source = g_strdup_printf ("v4l2://%s", path);
  } else if (api && g_str_has_prefix (api, "libcamera")) {
    camera->api = g_strdup ("libcamera");
    camera->source = g_strdup_printf ("libcamera://%s", display ? display : "");
  } else {
    camera->api = g_strdup (api ? api : "unknown");
    camera->source = g_strdup ("");
  }
  camera->formats = caps_media_types (caps);
  return camera;
}

static void
probe_cameras (HwProbe *probe)
{
  g_autoptr (GstDeviceMonitor) monitor = gst_device_monitor_new ();
  gst_device_monitor_add_filter (monitor, "Video/Source", NULL);
  if (!gst_device_monitor_start (monitor))
    return;
  GList *devices = gst_device_monitor_get_devices (monitor);
  for (GList *l = devices; l; l = l->next) {
    HwCamera *camera = camera_from_device (l->data);
    /* The bcm2835 ISP and codec nodes are not cameras; the monitor lists
     * capture devices only, but keep out what has no source edged takes. */
    if (camera->source[0] == '\0')
      camera_free (camera);
    else
      g_ptr_array_add (probe->cameras, camera);
  }
  g_list_free_full (devices, gst_object_unref);
  gst_device_monitor_stop (monitor);
}

HwProbe *
hw_probe_run (const char *root, HwProbeFlags flags)
{
  HwProbe *probe = probe_new ();
  g_autoptr (GStrvBuilder) files = g_strv_builder_new ();

  probe->board = hw_board_detect (root);
  for (guint i = 0; codec_devices[i]; i++) {
    g_autofree char *path = g_build_filename (root, codec_devices[i], NULL);
    g_autofree char *shown = g_strconcat ("/", codec_devices[i], NULL);
    if (g_file_test (path, G_FILE_TEST_EXISTS))
      g_strv_builder_add (files, shown);
  }
  probe->device_files = g_strv_builder_end (files);
  if (flags & HW_PROBE_CAMERAS)
    probe_cameras (probe);
  probe_codecs (probe, (flags & HW_PROBE_TEST_CODECS) != 0);
  return probe;
}

/* ---- JSON ---- */

static void
add_strv (JsonBuilder *b, const char *name, char **values)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_array (b);
  for (guint i = 0; values && values[i]; i++)
    json_builder_add_string_value (b, values[i]);
  json_builder_end_array (b);
}

void
hw_probe_to_json (const HwProbe *probe, JsonBuilder *b)
{
  const HwBoard *board = probe->board;

  json_builder_set_member_name (b, "board");
  json_builder_begin_object (b);
  edge_json_add_string (b, "model", board->model);
  edge_json_add_string (b, "cpu_model", board->cpu_model);
  edge_json_add_string (b, "arch", board->arch);
  edge_json_add_string (b, "kernel", board->kernel);
  json_builder_set_member_name (b, "cpus");
  json_builder_add_int_value (b, board->cpus);
  json_builder_set_member_name (b, "memory_bytes");
  json_builder_add_int_value (b, (gint64) board->memory_bytes);
  json_builder_set_member_name (b, "raspberry_pi");
  json_builder_add_boolean_value (b, board->raspberry_pi);
  json_builder_end_object (b);

  add_strv (b, "device_files", probe->device_files);

  json_builder_set_member_name (b, "cameras");
  json_builder_begin_array (b);
  for (guint i = 0; i < probe->cameras->len; i++) {
    const HwCamera *camera = g_ptr_array_index (probe->cameras, i);
    json_builder_begin_object (b);
    edge_json_add_string (b, "name", camera->name);
    edge_json_add_string (b, "api", camera->api);
    edge_json_add_string (b, "source", camera->source);
    add_strv (b, "formats", camera->formats);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);

  json_builder_set_member_name (b, "codecs");
  json_builder_begin_array (b);
  for (guint i = 0; i < probe->codecs->len; i++) {
    const HwCodec *codec = g_ptr_array_index (probe->codecs, i);
    json_builder_begin_object (b);
    edge_json_add_string (b, "element", codec->element);
    edge_json_add_string (b, "codec", codec->codec);
    edge_json_add_string (b, "role", codec->encoder ? "encoder" : "decoder");
    json_builder_set_member_name (b, "hardware");
    json_builder_add_boolean_value (b, codec->hardware);
    json_builder_set_member_name (b, "present");
    json_builder_add_boolean_value (b, codec->present);
    json_builder_set_member_name (b, "works");
    json_builder_add_boolean_value (b, codec->works);
    json_builder_set_member_name (b, "test_ms");
    json_builder_add_double_value (b, codec->test_ms);
    edge_json_add_string (b, "detail", codec->detail ? codec->detail : "");
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
}

static gboolean
probe_error (GError **error, const char *what)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "not a probe: %s", what);
  return FALSE;
}

static const char *
or_default (const char *value, const char *fallback)
{
  return value ? value : fallback;
}

/* The @i-th element of @array if it is an object, else NULL. */
static JsonObject *
array_object (JsonArray *array, guint i)
{
  JsonNode *node = json_array_get_element (array, i);
  return JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
}

static char **
member_strv (JsonObject *o, const char *name)
{
  g_autoptr (GStrvBuilder) values = g_strv_builder_new ();
  JsonNode *node = json_object_get_member (o, name);
  if (node && JSON_NODE_HOLDS_ARRAY (node)) {
    JsonArray *array = json_node_get_array (node);
    for (guint i = 0; i < json_array_get_length (array); i++) {
      JsonNode *item = json_array_get_element (array, i);
      if (JSON_NODE_HOLDS_VALUE (item) && json_node_get_value_type (item) == G_TYPE_STRING)
        g_strv_builder_add (values, json_node_get_string (item));
    }
  }
  return g_strv_builder_end (values);
}

static gboolean
board_from_json (JsonObject *o, HwProbe *probe, GError **error)
{
  const char *model = edge_json_member_string (o, "model");
  const char *arch = edge_json_member_string (o, "arch");
  if (model == NULL || arch == NULL)
    return probe_error (error, "board.model and board.arch are required");
  HwBoard *board = g_new0 (HwBoard, 1);
  board->model = g_strdup (model);
  board->arch = g_strdup (arch);
  board->cpu_model = g_strdup (or_default (edge_json_member_string (o, "cpu_model"), "unknown"));
  board->kernel = g_strdup (or_default (edge_json_member_string (o, "kernel"), "unknown"));
  board->cpus = (guint) CLAMP (json_object_get_int_member_with_default (o, "cpus", 1), 1, 4096);
  board->memory_bytes = (guint64) MAX (0, json_object_get_int_member_with_default (o, "memory_bytes", 0));
  board->raspberry_pi = g_str_has_prefix (model, "Raspberry Pi");
  probe->board = board;
  return TRUE;
}

HwProbe *
hw_probe_from_json (JsonNode *node, GError **error)
{
  g_autoptr (HwProbe) probe = probe_new ();
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node)) {
    probe_error (error, "expected an object");
    return NULL;
  }
  JsonObject *root = json_node_get_object (node);
  JsonNode *board = json_object_get_member (root, "board");
  JsonNode *codecs = json_object_get_member (root, "codecs");
  if (board == NULL || !JSON_NODE_HOLDS_OBJECT (board) || codecs == NULL ||
      !JSON_NODE_HOLDS_ARRAY (codecs)) {
    probe_error (error, "board (an object) and codecs (an array) are required");
    return NULL;
  }
  if (!board_from_json (json_node_get_object (board), probe, error))
    return NULL;
  probe->device_files = member_strv (root, "device_files");

  JsonNode *cameras = json_object_get_member (root, "cameras");
  JsonArray *array = cameras && JSON_NODE_HOLDS_ARRAY (cameras) ? json_node_get_array (cameras)
                                                                 : NULL;
  for (guint i = 0; array && i < json_array_get_length (array); i++) {
    JsonObject *o = array_object (array, i);
    if (o == NULL || edge_json_member_string (o, "api") == NULL || edge_json_member_string (o, "source") == NULL) {
      probe_error (error, "each camera needs api and source");
      return NULL;
    }
    HwCamera *camera = g_new0 (HwCamera, 1);
    camera->name = g_strdup (or_default (edge_json_member_string (o, "name"), "camera"));
    camera->api = g_strdup (edge_json_member_string (o, "api"));
    camera->source = g_strdup (edge_json_member_string (o, "source"));
    camera->formats = member_strv (o, "formats");
    g_ptr_array_add (probe->cameras, camera);
  }

  array = json_node_get_array (codecs);
  for (guint i = 0; i < json_array_get_length (array); i++) {
    JsonObject *o = array_object (array, i);
    const char *role = o ? edge_json_member_string (o, "role") : NULL;
    if (o == NULL || edge_json_member_string (o, "element") == NULL || edge_json_member_string (o, "codec") == NULL ||
        role == NULL || !(g_str_equal (role, "encoder") || g_str_equal (role, "decoder"))) {
      probe_error (error, "each codec needs element, codec and role (encoder or decoder)");
      return NULL;
    }
    HwCodec *codec = g_new0 (HwCodec, 1);
    codec->element = g_strdup (edge_json_member_string (o, "element"));
    codec->codec = g_strdup (edge_json_member_string (o, "codec"));
    codec->encoder = g_str_equal (role, "encoder");
    codec->hardware = json_object_get_boolean_member_with_default (o, "hardware", FALSE);
    codec->present = json_object_get_boolean_member_with_default (o, "present", FALSE);
    codec->works = json_object_get_boolean_member_with_default (o, "works", FALSE);
    codec->test_ms = json_object_get_double_member_with_default (o, "test_ms", 0);
    codec->detail = g_strdup (or_default (edge_json_member_string (o, "detail"), ""));
    g_ptr_array_add (probe->codecs, codec);
  }
  return g_steal_pointer (&probe);
}

/* ---- this machine, once ---- */

const HwProbe *
hw_probe_default (void)
{
  static gsize once;
  static HwProbe *probe;
  if (g_once_init_enter (&once)) {
    gint64 start = g_get_monotonic_time ();
    probe = hw_probe_run ("/", HW_PROBE_CAMERAS | HW_PROBE_TEST_CODECS);
    g_debug ("probe took %.0f ms", (double) (g_get_monotonic_time () - start) / 1000.0);
    g_once_init_leave (&once, 1);
  }
  return probe;
}

const HwChoice *
hw_choice_default (void)
{
  static gsize once;
  static HwChoice *choice;
  if (g_once_init_enter (&once)) {
    choice = hw_choose (hw_probe_default ());
    g_once_init_leave (&once, 1);
  }
  return choice;
}
