/* service.h: what the media service's parts share (service.c holds the
 * cameras and the REST API; live.c, hls.c, kvs.c and images.c serve them).
 * Main thread only, unless a function says otherwise. */
#pragma once

#include "camera.h"
#include "media.h"
#include "mkv.h"
#include "store.h"
#include "stream.h"

G_BEGIN_DECLS

/* Fragments kept in memory per camera for live viewers and the live
 * playlist, newest last. */
#define MEDIA_RECENT_FRAGMENTS 8
/* Clip limits, as Kinesis Video Streams sets them for GetClip. */
#define MEDIA_CLIP_MAX_FRAGMENTS 200
#define MEDIA_CLIP_MAX_BYTES (100u * 1024 * 1024)

typedef struct {
  MediaFragmentMeta meta;
  GBytes *bytes;
} MediaRecentFragment;

typedef struct {
  MediaService *service;
  MediaCamera *camera;
  char *name;
  gboolean from_config;
  gint64 created_ms;
  GPtrArray *viewers; /* live viewers (live.c) */
  guint64 live_skipped; /* fragments and chunks skipped for slow viewers */
  gboolean have_init;
  MediaInitMeta init_meta;
  GBytes *init;       /* the current init segment */
  GQueue recent;      /* MediaRecentFragment * */
  guint64 events;     /* detection events started and ended since edged started */
} MediaServiceCamera;

struct _MediaService {
  EdgeGateway *gateway;
  EdgeState *state;
  EdgeKeyring *keyring;
  MediaStore *store;
  const HwChoice *hw; /* the board's defaults (hw/), once GStreamer is up */
  gboolean gstreamer_started;
  GHashTable *cameras; /* name -> MediaServiceCamera * */
  guint retention_timer;
  guint space_timer;
  guint64 keep_free_bytes; /* storage.min_free_bytes + storage.video_reserve_bytes */
  guint jobs; /* worker-thread reads and decodes in flight */
  StreamStore *streams; /* nullable: where detection events go (events.c) */
};

/* The camera called @name, or NULL. */
MediaServiceCamera *media_service_lookup (MediaService *service, const char *name);

/* The camera named by the route's {name}; answers 404 itself when there is
 * none. */
MediaServiceCamera *media_request_camera (EdgeRequest *request, MediaService *service);

/* A query parameter of Unix seconds (fractions allowed) as milliseconds;
 * @fallback when absent, or, when @fallback is negative, a 400 answered
 * here. FALSE after answering a malformed value. */
gboolean media_request_time (EdgeRequest *request, const char *name, gint64 fallback,
                             gint64 *ret_ms);

/* The route's camera and the ?start=&end= range (Unix seconds) as ms: with
 * @required both must be given and end after start, else they default to
 * everything. NULL once a 404 or 400 is answered. */
MediaServiceCamera *media_request_range (EdgeRequest *request, MediaService *service,
                                         gboolean required, gint64 *ret_start, gint64 *ret_end);

/* The RFC 6381 codec string of an init segment's track ("avc1.64001f"),
 * for MediaSource.isTypeSupported and HLS CODECS. (transfer full) */
char *media_codec_string (GBytes *init);

/* Reads fragments (and their init segments) from the store on a worker
 * thread; @done runs on the main thread with the plaintext bytes in the
 * order asked, or an error. */
typedef void (*MediaReadDone) (GPtrArray *fragments, GBytes *init, GError *error,
                               gpointer user_data);
void media_service_read_async (MediaService *service, const char *camera, guint32 init_id,
                               const guint64 *numbers, guint n, MediaReadDone done,
                               gpointer user_data);

/* Reads the fragments and builds one progressive MP4 of them
 * (media_mp4_clip) on a worker thread; @done runs on the main thread. */
typedef void (*MediaClipDone) (GBytes *clip, GError *error, gpointer user_data);
void media_service_clip_async (MediaService *service, const char *camera, guint32 init_id,
                               const guint64 *numbers, guint n, MediaClipDone done,
                               gpointer user_data);

/* The same, as Matroska (media_mkv_from_fragments) with each fragment's
 * Kinesis Video tags. */
void media_service_mkv_async (MediaService *service, const char *camera, guint32 init_id,
                              const guint64 *numbers, const MediaMkvFragmentTags *tags, guint n,
                              MediaClipDone done, gpointer user_data);

/* Chooses a clip's fragments: those of @camera overlapping the range, in
 * order, as far as the first change of init segment and the clip limits.
 * Returns the numbers (empty when none) and the init id. (transfer full) */
GArray *media_clip_select (MediaService *service, const char *camera, MediaTimeKind kind,
                           gint64 start_ms, gint64 end_ms, guint32 *ret_init_id);

/* Unix milliseconds as ISO 8601 UTC with milliseconds. (transfer full) */
char *media_format_time (gint64 ms);

/* The base URL a client reached us by (scheme and Host of @request).
 * (transfer full) */
char *media_request_base_url (EdgeRequest *request);

/* Registration of each part's routes. */
gboolean media_live_register (MediaService *service, GError **error);
void media_live_publish (MediaServiceCamera *camera, const MediaFragmentEvent *event);
void media_live_close_all (MediaServiceCamera *camera);
gboolean media_hls_register (MediaService *service, GError **error);
gboolean media_kvs_register (MediaService *service, GError **error);
gboolean media_images_register (MediaService *service, GError **error);
gboolean media_events_register (MediaService *service, GError **error);
/* A camera's detection event (user data: its MediaServiceCamera). */
void media_events_on_event (const MediaEvent *event, gpointer user_data);
/* Makes @config's events stream when it is missing; FALSE (logged) when
 * it cannot be made or there are no streams. */
gboolean media_events_ensure_stream (MediaService *service, const EdgeConfigCamera *config);
/* Ends the events a crash left open, where their camera's footage ends. */
void media_events_close_open (MediaService *service);
/* Forgets events past their retention. */
void media_events_expire (MediaService *service);

/* Adds a camera (started at once) or fails for a bad name or source or a
 * taken name. */
MediaServiceCamera *media_service_add_camera (MediaService *service,
                                              const EdgeConfigCamera *config,
                                              gboolean from_config, GError **error);
/* Adds a camera through the API: started, and kept in the state database
 * so that it starts again with edged. */
MediaServiceCamera *media_service_create_camera (MediaService *service,
                                                 const EdgeConfigCamera *config, GError **error);
/* Fills @ret (strings borrowed from @o) from the API's camera settings. */
gboolean media_service_camera_settings_from_json (JsonObject *o, EdgeConfigCamera *ret,
                                                  GError **error);
/* Stops @name and deletes its recordings. */
gboolean media_service_remove_camera (MediaService *service, const char *name, GError **error);

G_END_DECLS
