/* live.c: WS /v1/cameras/{name}/live, live video for Media Source
 * Extensions.
 *
 * The messages, in order:
 *
 *   text    {"type":"init","codec":"avc1.42c01e","mime":"video/mp4; codecs=...",
 *            "width":640,"height":360}
 *   binary  the init segment (ftyp + moov)
 *   binary  the newest recorded fragment, so that playback starts at once
 *   binary  each new fragment (moof + mdat, starting on a keyframe) as it is cut
 *   ...     a new "init" text and init segment whenever the codec changes
 *
 * With ?latency=low the viewer gets chunks instead of fragments: each frame
 * as its own moof + mdat (a CMAF chunk) as soon as the camera has it, from
 * the next keyframe on, so that the picture is a frame behind the camera
 * rather than a fragment. The camera makes chunks only while such a viewer
 * watches.
 *
 * Every viewer of a camera shares its one pipeline: a fragment is encoded
 * and sealed once and the same bytes are queued for every viewer. A viewer
 * that reads slower than the camera produces would grow its queue without
 * bound; a fragment the gateway refuses for it (its queue past
 * gateway.websocket.max_buffered_bytes) is skipped, and since every fragment
 * starts on a keyframe the viewer resumes cleanly with the next one.
 */
#define G_LOG_DOMAIN "media"

#include "service.h"

#include <string.h>

typedef struct {
  MediaServiceCamera *camera; /* NULL once the camera is gone */
  EdgeWsPeer *peer;
  gboolean low_latency;
  gboolean waiting_for_keyframe; /* low latency: skip chunks until a keyframe */
  guint32 init_sent;             /* id of the init segment this viewer has; 0: none */
} LiveViewer;

static void update_chunks (MediaServiceCamera *camera);

static void
viewer_free (gpointer data)
{
  LiveViewer *v = data;
  g_free (v);
}

static void
send_init (LiveViewer *v, GBytes *init, const MediaInitMeta *meta)
{
  v->init_sent = meta->id;
  g_autofree char *codec = media_codec_string (init);
  g_autofree char *text = g_strdup_printf (
      "{\"type\":\"init\",\"codec\":\"%s\",\"mime\":\"video/mp4; codecs=\\\"%s\\\"\","
      "\"width\":%u,\"height\":%u}",
      codec, codec, meta->width, meta->height);
  edge_ws_peer_send_text (v->peer, text);
  edge_ws_peer_send (v->peer, init, TRUE);
}

static void
send_fragment (LiveViewer *v, GBytes *fragment)
{
  switch (edge_ws_peer_send (v->peer, fragment, TRUE)) {
  case EDGE_WS_SENT:
    break;
  case EDGE_WS_DROPPED:
    if (v->camera)
      v->camera->live_skipped++;
    break;
  case EDGE_WS_CLOSED:
    break;
  }
}

void
media_live_publish (MediaServiceCamera *camera, const MediaFragmentEvent *event)
{
  for (guint i = 0; i < camera->viewers->len; i++) {
    LiveViewer *v = g_ptr_array_index (camera->viewers, i);
    if (v->low_latency)
      continue;
    if (event->init && v->init_sent != event->init_meta->id)
      send_init (v, event->init, event->init_meta);
    send_fragment (v, event->fragment);
  }
}

static void
on_chunk (const MediaChunkEvent *event, gpointer data)
{
  MediaServiceCamera *camera = data;
  if (event->init) {
    /* A new codec configuration reaches chunk viewers before its first
     * fragment is cut. */
    g_clear_pointer (&camera->init, g_bytes_unref);
    camera->init = g_bytes_ref (event->init);
    camera->init_meta = *event->init_meta;
    camera->have_init = TRUE;
  }
  for (guint i = 0; i < camera->viewers->len; i++) {
    LiveViewer *v = g_ptr_array_index (camera->viewers, i);
    if (!v->low_latency || !camera->have_init)
      continue;
    if (v->waiting_for_keyframe && !event->keyframe)
      continue;
    if (v->init_sent != camera->init_meta.id) {
      if (!event->keyframe) {
        v->waiting_for_keyframe = TRUE;
        continue;
      }
      send_init (v, camera->init, &camera->init_meta);
    }
    v->waiting_for_keyframe = FALSE;
    switch (edge_ws_peer_send (v->peer, event->chunk, TRUE)) {
    case EDGE_WS_SENT:
      break;
    case EDGE_WS_DROPPED:
      /* Behind: skip to the next keyframe, which decodes on its own. */
      camera->live_skipped++;
      v->waiting_for_keyframe = TRUE;
      break;
    case EDGE_WS_CLOSED:
      break;
    }
  }
}

static void
update_chunks (MediaServiceCamera *camera)
{
  gboolean any = FALSE;
  for (guint i = 0; i < camera->viewers->len; i++)
    any |= ((LiveViewer *) g_ptr_array_index (camera->viewers, i))->low_latency;
  media_camera_set_chunks (camera->camera, any ? on_chunk : NULL);
}

static void
on_viewer_closed (EdgeWsPeer *peer, gpointer data)
{
  LiveViewer *v = data;
  if (v->camera) {
    g_ptr_array_remove (v->camera->viewers, v);
    update_chunks (v->camera);
  }
  v->camera = NULL;
}

void
media_live_close_all (MediaServiceCamera *camera)
{
  while (camera->viewers->len > 0) {
    LiveViewer *v = g_ptr_array_steal_index (camera->viewers, camera->viewers->len - 1);
    v->camera = NULL;
    edge_ws_peer_close (v->peer, 1001, "camera removed");
  }
}

static void
on_live_open (EdgeWsPeer *peer, EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  const char *name = edge_request_param (request, "name");
  MediaServiceCamera *camera = media_service_lookup (service, name);
  if (camera == NULL) {
    edge_ws_peer_close (peer, 4404, "camera not found");
    return;
  }
  const char *latency = edge_request_query (request, "latency");
  if (latency && !g_str_equal (latency, "low") && !g_str_equal (latency, "normal")) {
    edge_ws_peer_close (peer, 1008, "latency: low or normal");
    return;
  }
  LiveViewer *v = g_new0 (LiveViewer, 1);
  v->camera = camera;
  v->peer = peer;
  v->low_latency = g_strcmp0 (latency, "low") == 0;
  edge_ws_peer_set_handlers (peer, NULL, on_viewer_closed, v, viewer_free);
  g_ptr_array_add (camera->viewers, v);
  if (v->low_latency) {
    v->waiting_for_keyframe = TRUE;
    update_chunks (camera);
  } else if (camera->have_init) {
    send_init (v, camera->init, &camera->init_meta);
    MediaRecentFragment *newest = g_queue_peek_tail (&camera->recent);
    if (newest && newest->meta.init_id == camera->init_meta.id)
      send_fragment (v, newest->bytes);
  }
}

gboolean
media_live_register (MediaService *service, GError **error)
{
  static const EdgeWsRoute route = {
    "/v1/cameras/{name}/live", on_live_open,
    "Live video: an init segment, then fMP4 fragments (Media Source Extensions); "
    "?latency=low: a chunk per frame", "cameras", NULL
  };
  return edge_gateway_add_websocket (service->gateway, &route, service, error);
}
