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
  guint64 sent, skipped;
} LiveViewer;

static void
viewer_free (gpointer data)
{
  LiveViewer *v = data;
  g_free (v);
}

static void
send_init (LiveViewer *v, GBytes *init, const MediaInitMeta *meta)
{
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
    v->sent++;
    break;
  case EDGE_WS_DROPPED:
    v->skipped++;
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
    if (event->init)
      send_init (v, event->init, event->init_meta);
    send_fragment (v, event->fragment);
  }
}

static void
on_viewer_closed (EdgeWsPeer *peer, gpointer data)
{
  LiveViewer *v = data;
  if (v->camera)
    g_ptr_array_remove (v->camera->viewers, v);
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
  LiveViewer *v = g_new0 (LiveViewer, 1);
  v->camera = camera;
  v->peer = peer;
  edge_ws_peer_set_handlers (peer, NULL, on_viewer_closed, v, viewer_free);
  g_ptr_array_add (camera->viewers, v);
  if (camera->have_init) {
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
    "Live video: an init segment, then fMP4 fragments (Media Source Extensions)", "cameras"
  };
  return edge_gateway_add_websocket (service->gateway, &route, service, error);
}
