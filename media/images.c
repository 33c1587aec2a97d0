/* images.c: still images from recorded video.
 *
 *   GET /v1/cameras/{name}/snapshot.jpg   the keyframe starting the fragment at
 *                                         ?time= (Unix seconds; default: newest),
 *                                         scaled to ?width= / ?height=
 *
 * A fragment starts on a keyframe, so an image needs no decoding of what came
 * before it: the keyframe's access unit goes alone into a decoder whose caps
 * carry the track's avcC / hvcC, then through a scaler into jpegenc or
 * pngenc. Each decode runs on a worker thread with its own small pipeline:
 *
 *   appsrc ! avdec_h264 | avdec_h265 ! videoconvert ! videoscale ! jpegenc ! appsink
 */
#define G_LOG_DOMAIN "media"

#include "images.h"

#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <string.h>

#define DECODE_TIMEOUT_S 10

GBytes *
media_image_decode (GBytes *init, GBytes *fragment, const MediaImageOptions *options,
                    GError **error)
{
  MediaTrack track;
  gsize len;
  MediaFragmentInfo info = { 0 };
  const guint8 *data = g_bytes_get_data (fragment, &len);

  if (!media_fmp4_read_init (g_bytes_get_data (init, NULL), g_bytes_get_size (init), &track, NULL,
                             NULL, error))
    return NULL;
  MediaCodec codec = track.codec;
  if (!media_fmp4_parse_fragment (data, len, &info, error))
    return NULL;
  if (info.samples->len == 0) {
    media_fragment_info_clear (&info);
    g_set_error (error, MEDIA_FMP4_ERROR, MEDIA_FMP4_ERROR_FORMAT, "an empty fragment");
    return NULL;
  }
  guint32 key_size = g_array_index (info.samples, MediaSample, 0).size;
  gsize key_at = info.data_offset;
  media_fragment_info_clear (&info);

  g_autofree char *scale = NULL;
  if (options->width && options->height)
    scale = g_strdup_printf (",width=%u,height=%u", options->width, options->height);
  else if (options->width)
    scale = g_strdup_printf (",width=%u", options->width);
  else if (options->height)
    scale = g_strdup_printf (",height=%u", options->height);
  g_autofree char *encoder = options->png ? g_strdup ("pngenc")
                                          : g_strdup_printf ("jpegenc quality=%u",
                                                             options->quality ? options->quality
                                                                              : 85);
  g_autofree char *description = g_strdup_printf (
      "appsrc name=src format=time ! %s ! videoconvert ! videoscale add-borders=false ! "
      "video/x-raw,pixel-aspect-ratio=1/1%s ! %s ! appsink name=sink sync=false",
      codec == MEDIA_CODEC_H265 ? "avdec_h265" : "avdec_h264", scale ? scale : "", encoder);
  g_autoptr (GstElement) pipeline = gst_parse_launch (description, error);
  if (pipeline == NULL)
    return NULL;
  g_autoptr (GstElement) src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
  g_autoptr (GstElement) sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  GstBuffer *codec_data = gst_buffer_new_memdup (track.codec_private, track.codec_private_len);
  g_autoptr (GstCaps) caps =
      codec == MEDIA_CODEC_H265
          ? gst_caps_new_simple ("video/x-h265", "stream-format", G_TYPE_STRING, "hvc1",
                                 "alignment", G_TYPE_STRING, "au", "codec_data", GST_TYPE_BUFFER,
                                 codec_data, NULL)
          : gst_caps_new_simple ("video/x-h264", "stream-format", G_TYPE_STRING, "avc",
                                 "alignment", G_TYPE_STRING, "au", "codec_data", GST_TYPE_BUFFER,
                                 codec_data, NULL);
  gst_buffer_unref (codec_data);
  gst_app_src_set_caps (GST_APP_SRC (src), caps);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);

  GstBuffer *key = gst_buffer_new_memdup (data + key_at, key_size);
  GST_BUFFER_PTS (key) = 0;
  GST_BUFFER_DTS (key) = 0;
  GST_BUFFER_DURATION (key) = GST_SECOND / 30;
  gst_app_src_push_buffer (GST_APP_SRC (src), key);
  gst_app_src_end_of_stream (GST_APP_SRC (src));

  g_autoptr (GstSample) sample =
      gst_app_sink_try_pull_sample (GST_APP_SINK (sink), DECODE_TIMEOUT_S * GST_SECOND);
  GBytes *image = NULL;
  if (sample && gst_sample_get_buffer (sample)) {
    GstBuffer *out = gst_sample_get_buffer (sample);
    GstMapInfo map;
    if (gst_buffer_map (out, &map, GST_MAP_READ)) {
      image = g_bytes_new (map.data, map.size);
      gst_buffer_unmap (out, &map);
    }
  }
  if (image == NULL) {
    /* The bus says why, if anything does. */
    g_autoptr (GstBus) bus = gst_element_get_bus (pipeline);
    g_autoptr (GstMessage) message = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    g_autoptr (GError) cause = NULL;
    if (message)
      gst_message_parse_error (message, &cause, NULL);
    g_set_error (error, MEDIA_FMP4_ERROR, MEDIA_FMP4_ERROR_FORMAT, "the keyframe did not decode%s%s",
                 cause ? ": " : "", cause ? cause->message : "");
  }
  gst_element_set_state (pipeline, GST_STATE_NULL);
  return image;
}

/* ---- batches on a worker thread ---- */

typedef struct {
  MediaService *service;
  char *camera;
  GArray *numbers;  /* guint64; 0: no fragment at that point */
  GArray *init_ids; /* guint32 */
  MediaImageOptions options;
  MediaImagesDone done;
  gpointer user_data;
  GPtrArray *images; /* GBytes * or NULL per point */
  GPtrArray *errors; /* char * or NULL per point */
} ImagesJob;

static void
images_job_free (ImagesJob *job)
{
  g_free (job->camera);
  g_array_unref (job->numbers);
  g_array_unref (job->init_ids);
  g_ptr_array_unref (job->images);
  g_ptr_array_unref (job->errors);
  g_free (job);
}

static void
images_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  ImagesJob *job = data;
  g_autoptr (GHashTable) inits =
      g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, (GDestroyNotify) g_bytes_unref);
  for (guint i = 0; i < job->numbers->len; i++) {
    guint64 number = g_array_index (job->numbers, guint64, i);
    guint32 init_id = g_array_index (job->init_ids, guint32, i);
    g_autoptr (GError) error = NULL;
    GBytes *image = NULL;
    if (number == 0) {
      g_ptr_array_add (job->images, NULL);
      g_ptr_array_add (job->errors, NULL);
      continue;
    }
    GBytes *init = g_hash_table_lookup (inits, GUINT_TO_POINTER (init_id));
    if (init == NULL) {
      init = media_store_read_init (job->service->store, job->camera, init_id, &error);
      if (init)
        g_hash_table_insert (inits, GUINT_TO_POINTER (init_id), init);
    }
    g_autoptr (GBytes) fragment =
        init ? media_store_read_fragment (job->service->store, job->camera, number, &error)
             : NULL;
    if (fragment)
      image = media_image_decode (init, fragment, &job->options, &error);
    g_ptr_array_add (job->images, image);
    g_ptr_array_add (job->errors, image ? NULL : g_strdup (error ? error->message : "no image"));
  }
  g_task_return_boolean (task, TRUE);
}

static void
images_finished (GObject *source, GAsyncResult *result, gpointer data)
{
  ImagesJob *job = g_task_get_task_data (G_TASK (result));
  job->service->jobs--;
  job->done (job->images, job->errors, job->user_data);
}

void
media_images_async (MediaService *service, const char *camera, GArray *numbers, GArray *init_ids,
                    const MediaImageOptions *options, MediaImagesDone done, gpointer user_data)
{
  ImagesJob *job = g_new0 (ImagesJob, 1);
  job->service = service;
  job->camera = g_strdup (camera);
  job->numbers = g_array_ref (numbers);
  job->init_ids = g_array_ref (init_ids);
  job->options = *options;
  job->done = done;
  job->user_data = user_data;
  job->images = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  job->errors = g_ptr_array_new_with_free_func (g_free);
  service->jobs++;
  g_autoptr (GTask) task = g_task_new (NULL, NULL, images_finished, NULL);
  g_task_set_task_data (task, job, (GDestroyNotify) images_job_free);
  g_task_run_in_thread (task, images_thread);
}

/* ---- the snapshot route ---- */

static void
snapshot_done (GPtrArray *images, GPtrArray *errors, gpointer data)
{
  EdgeRequest *request = data;
  GBytes *image = g_ptr_array_index (images, 0);
  if (image == NULL) {
    g_warning ("snapshot: %s", (const char *) g_ptr_array_index (errors, 0));
    edge_request_respond_error (request, 500, "InternalError", "the keyframe did not decode");
    return;
  }
  edge_request_respond (request, 200, "image/jpeg", image);
}

static gboolean
query_uint (EdgeRequest *request, const char *name, guint max, guint *ret)
{
  const char *text = edge_request_query (request, name);
  char *end = NULL;
  *ret = 0;
  if (text == NULL)
    return TRUE;
  guint64 v = g_ascii_strtoull (text, &end, 10);
  if (end == text || *end != '\0' || v < 1 || v > max) {
    edge_request_respond_error (request, 400, "InvalidArgument", "%s: 1 to %u", name, max);
    return FALSE;
  }
  *ret = (guint) v;
  return TRUE;
}

static void
handle_snapshot (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  const char *name = edge_request_param (request, "name");
  const char *time = edge_request_query (request, "time");
  MediaServiceCamera *c = media_service_lookup (service, name);
  MediaImageOptions options = { .quality = 85 };
  g_autoptr (GArray) list = NULL;

  if (c == NULL) {
    edge_request_respond_error (request, 404, "NotFound", "camera %s not found", name);
    return;
  }
  if (!query_uint (request, "width", 3840, &options.width) ||
      !query_uint (request, "height", 2160, &options.height))
    return;
  if (time) {
    gint64 ms;
    if (!media_request_time (request, "time", -1, &ms))
      return;
    list = media_store_list (service->store, c->name, MEDIA_TIME_SERVER, ms, ms + 1, 0, 1);
  } else {
    list = media_store_list_last (service->store, c->name, 1);
  }
  if (list->len == 0) {
    edge_request_respond_error (request, 404, "NotFound", "camera %s has no recording there",
                                c->name);
    return;
  }
  g_autoptr (GArray) numbers = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autoptr (GArray) inits = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_array_append_val (numbers, g_array_index (list, MediaFragmentMeta, 0).number);
  g_array_append_val (inits, g_array_index (list, MediaFragmentMeta, 0).init_id);
  edge_request_pause (request);
  media_images_async (service, c->name, numbers, inits, &options, snapshot_done, request);
}

gboolean
media_images_register (MediaService *service, GError **error)
{
  static const EdgeRoute route = { "GET", "/v1/cameras/{name}/snapshot.jpg", handle_snapshot,
                                   "A JPEG of the newest keyframe (or at ?time=)", "cameras", 0 };
  return edge_gateway_add_route (service->gateway, &route, service, error);
}
