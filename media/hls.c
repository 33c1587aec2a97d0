/* hls.c: HLS playlists, the media objects they name, and clips.
 *
 *   GET /v1/cameras/{name}/hls/live.m3u8        the newest fragments, a sliding window
 *   GET /v1/cameras/{name}/hls/playlist.m3u8    a recorded range (start, end: Unix
 *                                               seconds; producer=1 for producer time)
 *   GET /v1/cameras/{name}/hls/init/{id}.mp4    an init segment
 *   GET /v1/cameras/{name}/hls/fragment/{n}.m4s a fragment (moof + mdat)
 *   GET /v1/cameras/{name}/clip.mp4             one progressive MP4 of a range
 *
 * Playlists are HLS version 7 with fMP4 segments: EXT-X-MAP names the init
 * segment, EXT-X-PROGRAM-DATE-TIME each fragment's producer time, and
 * EXT-X-DISCONTINUITY marks a change of init segment or a gap of more than
 * a second (a lost source) between two fragments.
 */
#define G_LOG_DOMAIN "media"

#include "service.h"

#include <string.h>

/* Fragments in the live playlist's window. */
#define LIVE_WINDOW 6
/* Segments one recorded playlist lists at most (the Kinesis Video limit). */
#define PLAYLIST_MAX 5000
/* A hole longer than this between fragments is a discontinuity. */
#define GAP_DISCONTINUITY_MS 1000

static void
append_program_date_time (GString *out, gint64 ms)
{
  g_autofree char *text = media_format_time (ms);
  g_string_append_printf (out, "#EXT-X-PROGRAM-DATE-TIME:%s\n", text);
}

/* @token: the ?token= the playlist was fetched with (encoded), or NULL:
 * a player resolves the segments' relative URIs without the playlist's
 * query, so the token is written into each of them. */
static GBytes *
playlist_text (GArray *list, gboolean live, const char *token)
{
  g_autofree char *suffix = token ? g_strconcat ("?token=", token, NULL) : g_strdup ("");
  GString *out = g_string_new ("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
  guint32 longest = 1000;
  for (guint i = 0; i < list->len; i++)
    longest = MAX (longest, g_array_index (list, MediaFragmentMeta, i).duration_ms);
  g_string_append_printf (out, "#EXT-X-TARGETDURATION:%u\n", (longest + 999) / 1000);
  if (list->len > 0)
    g_string_append_printf (out, "#EXT-X-MEDIA-SEQUENCE:%" G_GUINT64_FORMAT "\n",
                            g_array_index (list, MediaFragmentMeta, 0).number);
  if (!live)
    g_string_append (out, "#EXT-X-PLAYLIST-TYPE:VOD\n");
  for (guint i = 0; i < list->len; i++) {
    const MediaFragmentMeta *m = &g_array_index (list, MediaFragmentMeta, i);
    const MediaFragmentMeta *prev = i > 0 ? &g_array_index (list, MediaFragmentMeta, i - 1) : NULL;
    gboolean new_init = prev == NULL || prev->init_id != m->init_id;
    if (prev) {
      guint64 prev_end = prev->decode_time + (guint64) prev->duration_ms * 90;
      gboolean gap = m->decode_time > prev_end + GAP_DISCONTINUITY_MS * 90;
      if (new_init || gap)
        g_string_append (out, "#EXT-X-DISCONTINUITY\n");
    }
    if (new_init)
      g_string_append_printf (out, "#EXT-X-MAP:URI=\"init/%u.mp4%s\"\n", m->init_id, suffix);
    append_program_date_time (out, m->producer_ms);
    g_string_append_printf (out, "#EXTINF:%.3f,\nfragment/%" G_GUINT64_FORMAT ".m4s%s\n",
                            m->duration_ms / 1000.0, m->number, suffix);
  }
  if (!live)
    g_string_append (out, "#EXT-X-ENDLIST\n");
  return g_string_free_to_bytes (out);
}

static void
respond_playlist (EdgeRequest *request, GBytes *text)
{
  SoupMessageHeaders *headers =
      edge_request_response_headers (request);
  soup_message_headers_replace (headers, "Cache-Control", "no-cache");
  edge_request_respond (request, 200, "application/vnd.apple.mpegurl", text);
}

static void
handle_live_playlist (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  MediaServiceCamera *c = media_request_camera (request, service);
  if (c == NULL)
    return;
  g_autoptr (GArray) list = media_store_list_last (service->store, c->name, LIVE_WINDOW);
  g_autoptr (GBytes) text = playlist_text (list, TRUE, edge_request_auth_query (request));
  respond_playlist (request, text);
}

static MediaTimeKind
query_kind (EdgeRequest *request)
{
  const char *producer = edge_request_query (request, "producer");
  return g_strcmp0 (producer, "1") == 0 || g_strcmp0 (producer, "true") == 0
             ? MEDIA_TIME_PRODUCER
             : MEDIA_TIME_SERVER;
}

static void
handle_range_playlist (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  gint64 start, end;
  MediaServiceCamera *c = media_request_range (request, service, TRUE, &start, &end);
  if (c == NULL)
    return;
  g_autoptr (GArray) list =
      media_store_list (service->store, c->name, query_kind (request), start, end, 0,
                        PLAYLIST_MAX);
  if (list->len == 0) {
    edge_request_respond_error (request, 404, "NotFound",
                                "camera %s recorded nothing in that range", c->name);
    return;
  }
  g_autoptr (GBytes) text = playlist_text (list, FALSE, edge_request_auth_query (request));
  respond_playlist (request, text);
}

/* "12.m4s" -> 12 with the suffix checked. */
static gboolean
parse_object_name (const char *name, const char *suffix, guint64 *ret_number)
{
  char *end = NULL;
  if (name == NULL || !g_ascii_isdigit (name[0]))
    return FALSE;
  guint64 n = g_ascii_strtoull (name, &end, 10);
  if (n == 0 || g_strcmp0 (end, suffix) != 0)
    return FALSE;
  *ret_number = n;
  return TRUE;
}

typedef struct {
  EdgeRequest *request;
  gboolean want_init;
} ObjectRead;

static void
object_read_done (GPtrArray *fragments, GBytes *init, GError *error, gpointer data)
{
  ObjectRead *r = data;
  if (error) {
    gboolean gone = g_error_matches (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_NOT_FOUND);
    if (!gone)
      g_warning ("%s", error->message);
    edge_request_respond_error (r->request, gone ? 404 : 500, gone ? "NotFound" : "InternalError",
                                "%s", gone ? "no longer recorded" : "the recording does not open");
  } else {
    SoupMessageHeaders *headers =
        edge_request_response_headers (r->request);
    /* Recorded media never changes under its name. */
    soup_message_headers_replace (headers, "Cache-Control", "max-age=86400, immutable");
    edge_request_respond (r->request, 200, "video/mp4",
                          r->want_init ? init : g_ptr_array_index (fragments, 0));
  }
  g_free (r);
}

static void
handle_init (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  MediaServiceCamera *c = media_request_camera (request, service);
  guint64 id;
  MediaInitMeta meta;
  if (c == NULL)
    return;
  if (!parse_object_name (edge_request_param (request, "file"), ".mp4", &id) || id > G_MAXUINT32 ||
      !media_store_lookup_init (service->store, c->name, (guint32) id, &meta)) {
    edge_request_respond_error (request, 404, "NotFound", "no such init segment");
    return;
  }
  ObjectRead *r = g_new0 (ObjectRead, 1);
  r->request = request;
  r->want_init = TRUE;
  edge_request_pause (request);
  media_service_read_async (service, c->name, (guint32) id, NULL, 0, object_read_done, r);
}

static void
handle_fragment (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  MediaServiceCamera *c = media_request_camera (request, service);
  guint64 number;
  MediaFragmentMeta meta;
  if (c == NULL)
    return;
  if (!parse_object_name (edge_request_param (request, "file"), ".m4s", &number) ||
      !media_store_lookup (service->store, c->name, number, &meta)) {
    edge_request_respond_error (request, 404, "NotFound", "no such fragment");
    return;
  }
  ObjectRead *r = g_new0 (ObjectRead, 1);
  r->request = request;
  edge_request_pause (request);
  media_service_read_async (service, c->name, 0, &number, 1, object_read_done, r);
}

GArray *
media_clip_select (MediaService *service, const char *camera, MediaTimeKind kind,
                   gint64 start_ms, gint64 end_ms, guint32 *ret_init_id)
{
  g_autoptr (GArray) list = media_store_list (service->store, camera, kind, start_ms, end_ms, 0,
                                              MEDIA_CLIP_MAX_FRAGMENTS);
  GArray *numbers = g_array_new (FALSE, FALSE, sizeof (guint64));
  guint64 bytes = 0;
  *ret_init_id = 0;
  for (guint i = 0; i < list->len; i++) {
    const MediaFragmentMeta *m = &g_array_index (list, MediaFragmentMeta, i);
    if (i > 0 && m->init_id != *ret_init_id)
      break; /* one clip, one codec configuration */
    if (bytes + m->bytes > MEDIA_CLIP_MAX_BYTES)
      break;
    *ret_init_id = m->init_id;
    bytes += m->bytes;
    g_array_append_val (numbers, m->number);
  }
  return numbers;
}

static void
clip_done (GBytes *clip, GError *error, gpointer data)
{
  EdgeRequest *request = data;
  if (clip == NULL) {
    g_warning ("clip: %s", error->message);
    edge_request_respond_error (request, 500, "InternalError", "the recording does not open");
    return;
  }
  SoupMessageHeaders *headers =
      edge_request_response_headers (request);
  soup_message_headers_replace (headers, "Content-Disposition", "attachment; filename=\"clip.mp4\"");
  edge_request_respond (request, 200, "video/mp4", clip);
}

static void
handle_clip (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  gint64 start, end;
  guint32 init_id;
  MediaServiceCamera *c = media_request_range (request, service, TRUE, &start, &end);
  if (c == NULL)
    return;
  g_autoptr (GArray) numbers =
      media_clip_select (service, c->name, query_kind (request), start, end, &init_id);
  if (numbers->len == 0) {
    edge_request_respond_error (request, 404, "NotFound",
                                "camera %s recorded nothing in that range", c->name);
    return;
  }
  edge_request_pause (request);
  media_service_clip_async (service, c->name, init_id, (const guint64 *) (void *) numbers->data,
                            numbers->len, clip_done, request);
}

gboolean
media_hls_register (MediaService *service, GError **error)
{
  static const EdgeRoute routes[] = {
    { "GET", "/v1/cameras/{name}/hls/live.m3u8", handle_live_playlist,
      "HLS live playlist (fMP4)", "cameras", 0 },
    { "GET", "/v1/cameras/{name}/hls/playlist.m3u8", handle_range_playlist,
      "HLS playlist of a recorded range (start, end: Unix seconds)", "cameras", 0 },
    { "GET", "/v1/cameras/{name}/hls/init/{file}", handle_init, "An init segment", "cameras",
      0 },
    { "GET", "/v1/cameras/{name}/hls/fragment/{file}", handle_fragment,
      "A recorded fragment (moof + mdat)", "cameras", 0 },
    { "GET", "/v1/cameras/{name}/clip.mp4", handle_clip,
      "One MP4 of a recorded range (start, end: Unix seconds)", "cameras", 0 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (service->gateway, &routes[i], service, error))
      return FALSE;
  return TRUE;
}
