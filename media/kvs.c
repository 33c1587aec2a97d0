/* kvs.c: the Kinesis Video Streams API, for the AWS CLI and SDKs pointed at
 * edged with --endpoint-url. Each camera is a Kinesis Video stream of the
 * same name.
 *
 * Archived media (POST, JSON bodies, the rest-json protocol):
 *   /listFragments             fragments by server or producer time range
 *   /getMediaForFragmentList   the fragments named, as Matroska with Kinesis
 *                              Video's per-fragment tags
 *   /getClip                   one progressive MP4 of a time range
 *   /getImages                 JPEG or PNG at a sampling interval, base64
 *   /getHLSStreamingSessionURL a URL of edged's own HLS playlists
 * Control plane:
 *   /describeStream /listStreams /getDataEndpoint /createStream /deleteStream
 *
 * Errors are rest-json's: the status, X-Amzn-ErrorType naming the exception,
 * and {"message": ...}.
 */
#define G_LOG_DOMAIN "media"

#include "images.h"
#include "service.h"

#include <math.h>
#include <string.h>

#define ARN_PREFIX "arn:aws:kinesisvideo:local:000000000000:stream/"
#define LIST_FRAGMENTS_DEFAULT 100
#define LIST_FRAGMENTS_MAX 1000
#define GET_MEDIA_MAX_FRAGMENTS 1000
#define IMAGES_DEFAULT 25
#define IMAGES_MAX 100
#define LIST_STREAMS_MAX 10000

static void
kvs_json (EdgeRequest *request, JsonNode *node)
{
  gsize len;
  g_autofree char *text = edge_json_to_string (node, &len);
  g_autoptr (GBytes) bytes = g_bytes_new_take (g_steal_pointer (&text), len);
  edge_request_respond (request, 200, "application/json", bytes);
}

/* Answers {"NAME": "VALUE"}. */
static void
kvs_json_string (EdgeRequest *request, const char *name, const char *value)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, name);
  json_builder_add_string_value (b, value);
  json_builder_end_object (b);
  g_autoptr (JsonNode) out = json_builder_get_root (b);
  kvs_json (request, out);
}

/* The body as an object; answers InvalidArgumentException itself. */
static JsonObject *
kvs_body (EdgeRequest *request, JsonNode **ret_root)
{
  g_autoptr (GError) error = NULL;
  GBytes *body = edge_request_body (request);
  gsize len;
  const char *data = g_bytes_get_data (body, &len);
  JsonNode *root = len == 0 ? json_node_init_object (json_node_alloc (), json_object_new ())
                            : edge_json_parse (data, len, len, &error);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                     "the body must be a JSON object%s%s", error ? ": " : "",
                                     error ? error->message : "");
    if (root)
      json_node_unref (root);
    return NULL;
  }
  *ret_root = root;
  return json_node_get_object (root);
}

/* A timestamp member in epoch seconds (the protocol's unixTimestamp). */
static gboolean
member_time (JsonObject *o, const char *name, gint64 *ret_ms)
{
  JsonNode *n = json_object_get_member (o, name);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  double seconds;
  if (t == G_TYPE_INT64)
    seconds = (double) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    seconds = json_node_get_double (n);
  else
    return FALSE;
  if (!(seconds >= 0 && seconds < 1e11))
    return FALSE;
  *ret_ms = (gint64) llround (seconds * 1000);
  return TRUE;
}

static gboolean
member_int (JsonObject *o, const char *name, gint64 def, gint64 *ret)
{
  JsonNode *n = json_object_get_member (o, name);
  if (n == NULL) {
    *ret = def;
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *ret = json_node_get_int (n);
  return TRUE;
}

static void
add_seconds (JsonBuilder *b, const char *name, gint64 ms)
{
  json_builder_set_member_name (b, name);
  json_builder_add_double_value (b, ms / 1000.0);
}

static char *
stream_arn (MediaServiceCamera *c)
{
  return g_strdup_printf (ARN_PREFIX "%s/%" G_GINT64_FORMAT, c->name, c->created_ms);
}

/* The camera named by StreamName or StreamARN; answers the error itself. */
static MediaServiceCamera *
kvs_camera (EdgeRequest *request, MediaService *service, JsonObject *o)
{
  const char *name = edge_json_member_string (o, "StreamName");
  const char *arn = edge_json_member_string (o, "StreamARN");
  g_autofree char *from_arn = NULL;
  if (name == NULL && arn != NULL) {
    if (g_str_has_prefix (arn, "arn:aws:kinesisvideo:") && strstr (arn, ":stream/")) {
      const char *start = strstr (arn, ":stream/") + strlen (":stream/");
      const char *slash = strchr (start, '/');
      from_arn = slash ? g_strndup (start, slash - start) : g_strdup (start);
      name = from_arn;
    } else {
      edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                       "%s is not a Kinesis Video stream ARN", arn);
      return NULL;
    }
  }
  if (name == NULL) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                     "StreamName or StreamARN is required");
    return NULL;
  }
  MediaServiceCamera *c = media_service_lookup (service, name);
  if (c == NULL)
    edge_request_respond_rest_error (request, 404, "ResourceNotFoundException",
               "The requested stream %s was not found", name);
  return c;
}

/* A selector {FragmentSelectorType, TimestampRange{StartTimestamp,
 * EndTimestamp}}; answers the error itself. @require_end: both ends. */
static gboolean
kvs_selector (EdgeRequest *request, JsonObject *o, const char *member, gboolean require_end,
              MediaTimeKind *ret_kind, gint64 *ret_start, gint64 *ret_end)
{
  JsonNode *n = json_object_get_member (o, member);
  if (n == NULL || !JSON_NODE_HOLDS_OBJECT (n)) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException", "%s is required",
                                     member);
    return FALSE;
  }
  JsonObject *sel = json_node_get_object (n);
  const char *type = edge_json_member_string (sel, "FragmentSelectorType");
  if (g_strcmp0 (type, "SERVER_TIMESTAMP") == 0) {
    *ret_kind = MEDIA_TIME_SERVER;
  } else if (g_strcmp0 (type, "PRODUCER_TIMESTAMP") == 0) {
    *ret_kind = MEDIA_TIME_PRODUCER;
  } else {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "%s.FragmentSelectorType must be SERVER_TIMESTAMP or PRODUCER_TIMESTAMP", member);
    return FALSE;
  }
  JsonNode *range = json_object_get_member (sel, "TimestampRange");
  JsonObject *r = range && JSON_NODE_HOLDS_OBJECT (range) ? json_node_get_object (range) : NULL;
  if (r == NULL || !member_time (r, "StartTimestamp", ret_start)) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "%s.TimestampRange.StartTimestamp is required", member);
    return FALSE;
  }
  if (!member_time (r, "EndTimestamp", ret_end)) {
    if (require_end) {
      edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                 "%s.TimestampRange.EndTimestamp is required", member);
      return FALSE;
    }
    *ret_end = 0;
  } else if (*ret_end <= *ret_start) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "EndTimestamp must be later than StartTimestamp");
    return FALSE;
  }
  return TRUE;
}

/* ---- ListFragments ---- */

/* NextToken: where the next page starts, with the query it continues. */
static char *
token_encode (MediaTimeKind kind, gint64 start, gint64 end, guint64 after)
{
  g_autofree char *plain =
      g_strdup_printf ("1:%d:%" G_GINT64_FORMAT ":%" G_GINT64_FORMAT ":%" G_GUINT64_FORMAT,
                       (int) kind, start, end, after);
  return g_base64_encode ((const guchar *) plain, strlen (plain));
}

static gboolean
token_decode (const char *token, MediaTimeKind *kind, gint64 *start, gint64 *end, guint64 *after)
{
  gsize len = 0;
  if (strlen (token) > 512)
    return FALSE;
  g_autofree guchar *plain = g_base64_decode (token, &len);
  g_autofree char *text = g_strndup ((const char *) plain, len);
  int k = 0;
  char tail;
  if (sscanf (text, "1:%d:%" G_GINT64_FORMAT ":%" G_GINT64_FORMAT ":%" G_GUINT64_FORMAT "%c", &k,
              start, end, after, &tail) != 4 ||
      (k != MEDIA_TIME_SERVER && k != MEDIA_TIME_PRODUCER))
    return FALSE;
  *kind = (MediaTimeKind) k;
  return TRUE;
}

static void
handle_list_fragments (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonNode) root = NULL;
  JsonObject *o = kvs_body (request, &root);
  MediaServiceCamera *c;
  MediaTimeKind kind = MEDIA_TIME_SERVER;
  gint64 start = 0, end = G_MAXINT64 / 2, max;
  guint64 after = 0;
  if (o == NULL || (c = kvs_camera (request, service, o)) == NULL)
    return;
  if (!member_int (o, "MaxResults", LIST_FRAGMENTS_DEFAULT, &max) || max < 1 ||
      max > LIST_FRAGMENTS_MAX) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                     "MaxResults must be 1 to %d", LIST_FRAGMENTS_MAX);
    return;
  }
  const char *token = edge_json_member_string (o, "NextToken");
  if (token) {
    if (!token_decode (token, &kind, &start, &end, &after)) {
      edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                       "NextToken is not one edged gave");
      return;
    }
  } else if (json_object_has_member (o, "FragmentSelector")) {
    if (!kvs_selector (request, o, "FragmentSelector", TRUE, &kind, &start, &end))
      return;
  }
  /* One more than asked tells whether another page follows. */
  g_autoptr (GArray) list =
      media_store_list (service->store, c->name, kind, start, end, after, (guint) max + 1);
  gboolean more = list->len > (guint) max;
  if (more)
    g_array_set_size (list, (guint) max);

  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Fragments");
  json_builder_begin_array (b);
  for (guint i = 0; i < list->len; i++) {
    const MediaFragmentMeta *m = &g_array_index (list, MediaFragmentMeta, i);
    g_autofree char *number = g_strdup_printf ("%" G_GUINT64_FORMAT, m->number);
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "FragmentNumber");
    json_builder_add_string_value (b, number);
    json_builder_set_member_name (b, "FragmentSizeInBytes");
    json_builder_add_int_value (b, (gint64) m->bytes);
    add_seconds (b, "ProducerTimestamp", m->producer_ms);
    add_seconds (b, "ServerTimestamp", m->server_ms);
    json_builder_set_member_name (b, "FragmentLengthInMilliseconds");
    json_builder_add_int_value (b, m->duration_ms);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  if (more) {
    g_autofree char *next = token_encode (
        kind, start, end, g_array_index (list, MediaFragmentMeta, list->len - 1).number);
    json_builder_set_member_name (b, "NextToken");
    json_builder_add_string_value (b, next);
  }
  json_builder_end_object (b);
  g_autoptr (JsonNode) out = json_builder_get_root (b);
  kvs_json (request, out);
}

/* ---- GetMediaForFragmentList ---- */

static void
media_list_done (GBytes *mkv, GError *error, gpointer data)
{
  EdgeRequest *request = data;
  if (mkv == NULL) {
    gboolean gone = g_error_matches (error, MEDIA_STORE_ERROR, MEDIA_STORE_ERROR_NOT_FOUND);
    if (!gone)
      g_warning ("GetMediaForFragmentList: %s", error->message);
    edge_request_respond_rest_error (request, gone ? 404 : 500,
               gone ? "ResourceNotFoundException" : "InternalFailure",
               gone ? "a fragment is no longer recorded" : "the recording does not open");
    return;
  }
  edge_request_respond (request, 200, "video/webm", mkv);
}

static void
handle_get_media_for_fragment_list (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonNode) root = NULL;
  JsonObject *o = kvs_body (request, &root);
  MediaServiceCamera *c;
  if (o == NULL || (c = kvs_camera (request, service, o)) == NULL)
    return;
  JsonNode *n = json_object_get_member (o, "Fragments");
  JsonArray *list = n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
  guint len = list ? json_array_get_length (list) : 0;
  if (len < 1 || len > GET_MEDIA_MAX_FRAGMENTS) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "Fragments must list 1 to %d fragment numbers", GET_MEDIA_MAX_FRAGMENTS);
    return;
  }
  g_autoptr (GArray) numbers = g_array_sized_new (FALSE, FALSE, sizeof (guint64), len);
  g_autoptr (GArray) tags = g_array_sized_new (FALSE, FALSE, sizeof (MediaMkvFragmentTags), len);
  guint32 init_id = 0;
  guint64 bytes = 0;
  for (guint i = 0; i < len; i++) {
    JsonNode *e = json_array_get_element (list, i);
    const char *text = JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING
                           ? json_node_get_string (e)
                           : NULL;
    char *end = NULL;
    guint64 number = text && g_ascii_isdigit (text[0]) ? g_ascii_strtoull (text, &end, 10) : 0;
    MediaFragmentMeta meta;
    if (number == 0 || *end != '\0') {
      edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                       "Fragments[%u] is not a fragment number", i);
      return;
    }
    if (!media_store_lookup (service->store, c->name, number, &meta)) {
      edge_request_respond_rest_error (request, 404, "ResourceNotFoundException",
                                       "fragment %s is not recorded", text);
      return;
    }
    if (i > 0 && meta.init_id != init_id) {
      edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                 "fragment %s was recorded with another codec configuration than the first; "
                 "ask for it separately",
                 text);
      return;
    }
    bytes += meta.bytes;
    if (bytes > MEDIA_CLIP_MAX_BYTES) {
      edge_request_respond_rest_error (request, 400, "ClientLimitExceededException",
                 "the fragments add up to more than %u MiB", MEDIA_CLIP_MAX_BYTES >> 20);
      return;
    }
    init_id = meta.init_id;
    g_array_append_val (numbers, number);
    MediaMkvFragmentTags t = { number, meta.producer_ms, meta.server_ms };
    g_array_append_val (tags, t);
  }
  edge_request_pause (request);
  media_service_mkv_async (service, c->name, init_id, (const guint64 *) (void *) numbers->data,
                           (const MediaMkvFragmentTags *) (void *) tags->data, numbers->len,
                           media_list_done, request);
}

/* ---- GetClip ---- */

static void
kvs_clip_done (GBytes *clip, GError *error, gpointer data)
{
  EdgeRequest *request = data;
  if (clip == NULL) {
    g_warning ("GetClip: %s", error->message);
    edge_request_respond_rest_error (request, 500, "InternalFailure",
                                     "the recording does not open");
    return;
  }
  edge_request_respond (request, 200, "video/mp4", clip);
}

static void
handle_get_clip (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonNode) root = NULL;
  JsonObject *o = kvs_body (request, &root);
  MediaServiceCamera *c;
  MediaTimeKind kind;
  gint64 start, end;
  guint32 init_id;
  if (o == NULL || (c = kvs_camera (request, service, o)) == NULL ||
      !kvs_selector (request, o, "ClipFragmentSelector", TRUE, &kind, &start, &end))
    return;
  g_autoptr (GArray) numbers = media_clip_select (service, c->name, kind, start, end, &init_id);
  if (numbers->len == 0) {
    edge_request_respond_rest_error (request, 404, "ResourceNotFoundException",
               "No fragments found in the stream %s for the requested time range", c->name);
    return;
  }
  edge_request_pause (request);
  media_service_clip_async (service, c->name, init_id, (const guint64 *) (void *) numbers->data,
                            numbers->len, kvs_clip_done, request);
}

/* ---- GetImages ---- */

typedef struct {
  EdgeRequest *request;
  GArray *times; /* gint64 ms per point */
  gboolean png;
  char *next_token;
} ImagesCall;

static void
images_done (GPtrArray *images, GPtrArray *errors, gpointer data)
{
  ImagesCall *call = data;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "Images");
  json_builder_begin_array (b);
  for (guint i = 0; i < call->times->len; i++) {
    GBytes *image = g_ptr_array_index (images, i);
    const char *error = g_ptr_array_index (errors, i);
    json_builder_begin_object (b);
    add_seconds (b, "TimeStamp", g_array_index (call->times, gint64, i));
    if (image) {
      g_autofree char *encoded =
          g_base64_encode (g_bytes_get_data (image, NULL), g_bytes_get_size (image));
      json_builder_set_member_name (b, "ImageContent");
      json_builder_add_string_value (b, encoded);
    } else {
      if (error)
        g_warning ("GetImages: %s", error);
      json_builder_set_member_name (b, "Error");
      json_builder_add_string_value (b, error ? "MEDIA_ERROR" : "NO_MEDIA");
    }
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  if (call->next_token) {
    json_builder_set_member_name (b, "NextToken");
    json_builder_add_string_value (b, call->next_token);
  }
  json_builder_end_object (b);
  g_autoptr (JsonNode) out = json_builder_get_root (b);
  kvs_json (call->request, out);
  g_array_unref (call->times);
  g_free (call->next_token);
  g_free (call);
}

static void
handle_get_images (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonNode) root = NULL;
  JsonObject *o = kvs_body (request, &root);
  MediaServiceCamera *c;
  gint64 start, end, interval, max, width, height;
  if (o == NULL || (c = kvs_camera (request, service, o)) == NULL)
    return;
  const char *selector = edge_json_member_string (o, "ImageSelectorType");
  const char *format = edge_json_member_string (o, "Format");
  MediaTimeKind kind = g_strcmp0 (selector, "PRODUCER_TIMESTAMP") == 0 ? MEDIA_TIME_PRODUCER
                                                                        : MEDIA_TIME_SERVER;
  if (g_strcmp0 (selector, "PRODUCER_TIMESTAMP") != 0 &&
      g_strcmp0 (selector, "SERVER_TIMESTAMP") != 0) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "ImageSelectorType must be SERVER_TIMESTAMP or PRODUCER_TIMESTAMP");
    return;
  }
  if (g_strcmp0 (format, "JPEG") != 0 && g_strcmp0 (format, "PNG") != 0) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                     "Format must be JPEG or PNG");
    return;
  }
  if (!member_time (o, "StartTimestamp", &start) || !member_time (o, "EndTimestamp", &end) ||
      end <= start) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "StartTimestamp and a later EndTimestamp are required");
    return;
  }
  if (!member_int (o, "SamplingInterval", -1, &interval) || interval < 200 || interval > 20000) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "SamplingInterval (milliseconds) must be 200 to 20000");
    return;
  }
  if (!member_int (o, "MaxResults", IMAGES_DEFAULT, &max) || max < 1 || max > IMAGES_MAX ||
      !member_int (o, "WidthPixels", 0, &width) || width < 0 || width > 3840 ||
      !member_int (o, "HeightPixels", 0, &height) || height < 0 || height > 2160) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "MaxResults must be 1 to %d, WidthPixels at most 3840, HeightPixels at most 2160",
               IMAGES_MAX);
    return;
  }
  MediaImageOptions options = { .png = g_str_equal (format, "PNG"), .width = (guint) width,
                                .height = (guint) height, .quality = 85 };
  JsonNode *fc = json_object_get_member (o, "FormatConfig");
  if (fc && JSON_NODE_HOLDS_OBJECT (fc)) {
    const char *q = edge_json_member_string (json_node_get_object (fc), "JPEGQuality");
    guint64 quality = q ? g_ascii_strtoull (q, NULL, 10) : 0;
    if (q && (quality < 1 || quality > 100)) {
      edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                       "JPEGQuality must be 1 to 100");
      return;
    }
    if (q)
      options.quality = (guint) quality;
  }
  const char *token = edge_json_member_string (o, "NextToken");
  if (token) {
    char *tail = NULL;
    gint64 resume = g_ascii_strtoll (token, &tail, 10);
    if (tail == token || *tail != '\0' || resume < start || resume >= end) {
      edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                       "NextToken is not one edged gave");
      return;
    }
    start = resume;
  }

  ImagesCall *call = g_new0 (ImagesCall, 1);
  call->request = request;
  call->times = g_array_new (FALSE, FALSE, sizeof (gint64));
  g_autoptr (GArray) numbers = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autoptr (GArray) inits = g_array_new (FALSE, FALSE, sizeof (guint32));
  gint64 t = start;
  for (; t < end && call->times->len < (guint) max; t += interval) {
    g_autoptr (GArray) at = media_store_list (service->store, c->name, kind, t, t + 1, 0, 1);
    guint64 number = at->len ? g_array_index (at, MediaFragmentMeta, 0).number : 0;
    guint32 init = at->len ? g_array_index (at, MediaFragmentMeta, 0).init_id : 0;
    g_array_append_val (call->times, t);
    g_array_append_val (numbers, number);
    g_array_append_val (inits, init);
  }
  if (t < end)
    call->next_token = g_strdup_printf ("%" G_GINT64_FORMAT, t);
  edge_request_pause (request);
  media_images_async (service, c->name, numbers, inits, &options, images_done, call);
}

/* ---- GetHLSStreamingSessionURL ---- */

static void
handle_get_hls_url (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonNode) root = NULL;
  JsonObject *o = kvs_body (request, &root);
  MediaServiceCamera *c;
  if (o == NULL || (c = kvs_camera (request, service, o)) == NULL)
    return;
  const char *mode = edge_json_member_string (o, "PlaybackMode");
  const char *container = edge_json_member_string (o, "ContainerFormat");
  mode = mode ? mode : "LIVE";
  if (container && !g_str_equal (container, "FRAGMENTED_MP4")) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "edged serves HLS with ContainerFormat FRAGMENTED_MP4 only");
    return;
  }
  g_autofree char *base = media_request_base_url (request);
  g_autofree char *escaped = g_uri_escape_string (c->name, NULL, FALSE);
  g_autofree char *url = NULL;
  if (g_str_equal (mode, "LIVE")) {
    url = g_strdup_printf ("%s/v1/cameras/%s/hls/live.m3u8", base, escaped);
  } else if (g_str_equal (mode, "ON_DEMAND") || g_str_equal (mode, "LIVE_REPLAY")) {
    MediaTimeKind kind;
    gint64 start, end;
    gboolean on_demand = g_str_equal (mode, "ON_DEMAND");
    if (!kvs_selector (request, o, "HLSFragmentSelector", on_demand, &kind, &start, &end))
      return;
    if (end == 0)
      end = g_get_real_time () / 1000;
    url = g_strdup_printf ("%s/v1/cameras/%s/hls/playlist.m3u8?start=%.3f&end=%.3f%s", base,
                           escaped, start / 1000.0, end / 1000.0,
                           kind == MEDIA_TIME_PRODUCER ? "&producer=1" : "");
  } else {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "PlaybackMode must be LIVE, LIVE_REPLAY or ON_DEMAND");
    return;
  }
  /* With authentication on, the URL carries a session of the caller's for
   * Expires seconds (300 by default, as Kinesis Video), since players
   * cannot sign their requests. */
  gint64 expires = 300;
  JsonNode *expires_node = json_object_get_member (o, "Expires");
  if (expires_node && JSON_NODE_HOLDS_VALUE (expires_node) &&
      json_node_get_value_type (expires_node) == G_TYPE_INT64)
    expires = CLAMP (json_node_get_int (expires_node), 300, 43200);
  g_autofree char *token = edge_request_issue_session (request, expires);
  if (token) {
    g_autofree char *with = g_strdup_printf ("%s%stoken=%s", url, strchr (url, '?') ? "&" : "?",
                                             token);
    g_free (url);
    url = g_steal_pointer (&with);
  }
  kvs_json_string (request, "HLSStreamingSessionURL", url);
}

/* ---- control plane ---- */

static void
add_stream_info (JsonBuilder *b, MediaServiceCamera *c)
{
  g_autofree char *arn = stream_arn (c);
  MediaInitMeta track = { 0 };
  gboolean known = media_camera_track (c->camera, &track);
  if (!known && c->have_init) {
    track = c->init_meta;
    known = TRUE;
  }
  gboolean h265 = known && track.codec == MEDIA_CODEC_H265;
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "DeviceName");
  json_builder_add_string_value (b, "edged");
  json_builder_set_member_name (b, "StreamName");
  json_builder_add_string_value (b, c->name);
  json_builder_set_member_name (b, "StreamARN");
  json_builder_add_string_value (b, arn);
  json_builder_set_member_name (b, "MediaType");
  json_builder_add_string_value (b, h265 ? "video/h265" : "video/h264");
  json_builder_set_member_name (b, "KmsKeyId");
  json_builder_add_string_value (b, "edged-master-key");
  json_builder_set_member_name (b, "Version");
  json_builder_add_string_value (b, "1");
  json_builder_set_member_name (b, "Status");
  json_builder_add_string_value (b, "ACTIVE");
  add_seconds (b, "CreationTime", c->created_ms);
  json_builder_set_member_name (b, "DataRetentionInHours");
  json_builder_add_int_value (b, media_camera_config (c->camera)->retention_hours);
  json_builder_end_object (b);
}

static void
handle_describe_stream (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonNode) root = NULL;
  JsonObject *o = kvs_body (request, &root);
  MediaServiceCamera *c;
  if (o == NULL || (c = kvs_camera (request, service, o)) == NULL)
    return;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "StreamInfo");
  add_stream_info (b, c);
  json_builder_end_object (b);
  g_autoptr (JsonNode) out = json_builder_get_root (b);
  kvs_json (request, out);
}

static void
handle_list_streams (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonNode) root = NULL;
  JsonObject *o = kvs_body (request, &root);
  gint64 max;
  if (o == NULL)
    return;
  if (!member_int (o, "MaxResults", LIST_STREAMS_MAX, &max) || max < 1 || max > LIST_STREAMS_MAX) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                     "MaxResults must be 1 to %d", LIST_STREAMS_MAX);
    return;
  }
  const char *prefix = NULL;
  JsonNode *cond = json_object_get_member (o, "StreamNameCondition");
  if (cond && JSON_NODE_HOLDS_OBJECT (cond)) {
    JsonObject *co = json_node_get_object (cond);
    const char *op = edge_json_member_string (co, "ComparisonOperator");
    if (op && !g_str_equal (op, "BEGINS_WITH")) {
      edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                 "ComparisonOperator must be BEGINS_WITH");
      return;
    }
    prefix = edge_json_member_string (co, "ComparisonValue");
  }
  const char *after = edge_json_member_string (o, "NextToken");
  g_autoptr (GList) names = g_hash_table_get_keys (service->cameras);
  names = g_list_sort (names, (GCompareFunc) strcmp);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "StreamInfoList");
  json_builder_begin_array (b);
  gint64 listed = 0;
  const char *last = NULL;
  gboolean more = FALSE;
  for (GList *l = names; l; l = l->next) {
    if (prefix && !g_str_has_prefix (l->data, prefix))
      continue;
    if (after && strcmp (l->data, after) <= 0)
      continue;
    if (listed == max) {
      more = TRUE;
      break;
    }
    add_stream_info (b, media_service_lookup (service, l->data));
    last = l->data;
    listed++;
  }
  json_builder_end_array (b);
  if (more && last) {
    json_builder_set_member_name (b, "NextToken");
    json_builder_add_string_value (b, last);
  }
  json_builder_end_object (b);
  g_autoptr (JsonNode) out = json_builder_get_root (b);
  kvs_json (request, out);
}

static void
handle_get_data_endpoint (EdgeRequest *request, gpointer data)
{
  static const char *const apis[] = { "PUT_MEDIA",
                                      "GET_MEDIA",
                                      "LIST_FRAGMENTS",
                                      "GET_MEDIA_FOR_FRAGMENT_LIST",
                                      "GET_HLS_STREAMING_SESSION_URL",
                                      "GET_DASH_STREAMING_SESSION_URL",
                                      "GET_CLIP",
                                      "GET_IMAGES",
                                      NULL };
  MediaService *service = data;
  g_autoptr (JsonNode) root = NULL;
  JsonObject *o = kvs_body (request, &root);
  if (o == NULL || kvs_camera (request, service, o) == NULL)
    return;
  const char *api = edge_json_member_string (o, "APIName");
  if (api == NULL || !g_strv_contains (apis, api)) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                     "APIName is required (e.g. LIST_FRAGMENTS)");
    return;
  }
  g_autofree char *base = media_request_base_url (request);
  kvs_json_string (request, "DataEndpoint", base);
}

static void
handle_create_stream (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GError) error = NULL;
  JsonObject *o = kvs_body (request, &root);
  if (o == NULL)
    return;
  const char *name = edge_json_member_string (o, "StreamName");
  JsonNode *tags = json_object_get_member (o, "Tags");
  const char *source = tags && JSON_NODE_HOLDS_OBJECT (tags)
                           ? edge_json_member_string (json_node_get_object (tags), "edged:source")
                           : NULL;
  gint64 hours;
  if (name == NULL) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                     "StreamName is required");
    return;
  }
  if (media_service_lookup (service, name)) {
    edge_request_respond_rest_error (request, 400, "ResourceInUseException",
                                     "The stream %s already exists", name);
    return;
  }
  if (source == NULL) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
               "edged records cameras: give the camera's source as the tag edged:source "
               "(rtsp://..., test://, ...)");
    return;
  }
  if (!member_int (o, "DataRetentionInHours", 24, &hours) || hours < 0 || hours > 8760) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                     "DataRetentionInHours must be 0 to 8760");
    return;
  }
  g_autoptr (JsonObject) settings = json_object_new ();
  json_object_set_string_member (settings, "source", source);
  json_object_set_int_member (settings, "retention_hours", MAX (hours, 1));
  EdgeConfigCamera config = { .name = (char *) name };
  MediaServiceCamera *c = NULL;
  if (media_service_camera_settings_from_json (settings, &config, &error))
    c = media_service_create_camera (service, &config, &error);
  if (c == NULL) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException", "%s",
                                     error->message);
    return;
  }
  g_autofree char *arn = stream_arn (c);
  kvs_json_string (request, "StreamARN", arn);
}

static void
handle_delete_stream (EdgeRequest *request, gpointer data)
{
  MediaService *service = data;
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GError) error = NULL;
  JsonObject *o = kvs_body (request, &root);
  MediaServiceCamera *c;
  if (o == NULL)
    return;
  if (edge_json_member_string (o, "StreamARN") == NULL) {
    edge_request_respond_rest_error (request, 400, "InvalidArgumentException",
                                     "StreamARN is required");
    return;
  }
  if ((c = kvs_camera (request, service, o)) == NULL)
    return;
  g_autofree char *name = g_strdup (c->name);
  if (!media_service_remove_camera (service, name, &error)) {
    edge_request_respond_rest_error (request, 400, "ResourceInUseException", "%s", error->message);
    return;
  }
  g_autoptr (GBytes) empty = g_bytes_new_static ("{}", 2);
  edge_request_respond (request, 200, "application/json", empty);
}

gboolean
media_kvs_register (MediaService *service, GError **error)
{
  static const EdgeRoute routes[] = {
    { "POST", "/listFragments", handle_list_fragments, "Kinesis Video ListFragments",
      "kinesis-video", 64 * 1024, EDGE_ERRORS_AWS_REST },
    { "POST", "/getMediaForFragmentList", handle_get_media_for_fragment_list,
      "Kinesis Video GetMediaForFragmentList", "kinesis-video", 256 * 1024,
      EDGE_ERRORS_AWS_REST },
    { "POST", "/getClip", handle_get_clip, "Kinesis Video GetClip", "kinesis-video", 64 * 1024,
      EDGE_ERRORS_AWS_REST },
    { "POST", "/getImages", handle_get_images, "Kinesis Video GetImages", "kinesis-video",
      64 * 1024, EDGE_ERRORS_AWS_REST },
    { "POST", "/getHLSStreamingSessionURL", handle_get_hls_url,
      "Kinesis Video GetHLSStreamingSessionURL", "kinesis-video", 64 * 1024,
      EDGE_ERRORS_AWS_REST },
    { "POST", "/describeStream", handle_describe_stream, "Kinesis Video DescribeStream",
      "kinesis-video", 64 * 1024, EDGE_ERRORS_AWS_REST },
    { "POST", "/listStreams", handle_list_streams, "Kinesis Video ListStreams", "kinesis-video",
      64 * 1024, EDGE_ERRORS_AWS_REST },
    { "POST", "/getDataEndpoint", handle_get_data_endpoint, "Kinesis Video GetDataEndpoint",
      "kinesis-video", 64 * 1024, EDGE_ERRORS_AWS_REST },
    { "POST", "/createStream", handle_create_stream,
      "Kinesis Video CreateStream (the source as the tag edged:source)", "kinesis-video",
      64 * 1024, EDGE_ERRORS_AWS_REST },
    { "POST", "/deleteStream", handle_delete_stream, "Kinesis Video DeleteStream",
      "kinesis-video", 64 * 1024, EDGE_ERRORS_AWS_REST },
  };
  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    if (!edge_gateway_add_route (service->gateway, &routes[i], service, error))
      return FALSE;
  return TRUE;
}
