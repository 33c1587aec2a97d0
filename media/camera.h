/* camera.h: one camera's capture pipeline and fragmenter (media/camera.c).
 *
 * A camera runs a GStreamer pipeline that ends in an appsink taking H.264
 * or H.265 access units (length-prefixed, one per buffer). On the pipeline's
 * streaming thread the fragmenter groups them into keyframe-aligned
 * fragments, writes each to the store (sealed, fdatasync'd), and hands it
 * to the main thread, which indexes it and calls the camera's listener. A
 * source that fails, ends or stalls is torn down, the gap recorded, and
 * retried with backoff; one camera's failure touches no other.
 *
 * Threads: every function here is for the main thread.
 */
#pragma once

#include "edge-core.h"
#include "detect.h"
#include "hw.h"
#include "store.h"

G_BEGIN_DECLS

typedef struct _MediaCamera MediaCamera;

typedef enum {
  MEDIA_CAMERA_STARTING, /* pipeline made, no fragment yet */
  MEDIA_CAMERA_RUNNING,  /* fragments arriving */
  MEDIA_CAMERA_RETRYING, /* the source failed; waiting to try again */
} MediaCameraState;

/* What a camera's listener is told, on the main thread. @init is non-NULL
 * when the fragment is the first against a new init segment. */
typedef struct {
  const char *camera;
  const MediaFragmentMeta *meta;
  GBytes *fragment;        /* moof + mdat */
  const MediaInitMeta *init_meta; /* nullable */
  GBytes *init;            /* nullable */
} MediaFragmentEvent;

typedef void (*MediaFragmentFunc) (const MediaFragmentEvent *event, gpointer user_data);

/* One frame as a CMAF chunk (moof + mdat) for low-latency live viewers.
 * @init is non-NULL on the first chunk against a new init segment. */
typedef struct {
  const char *camera;
  GBytes *chunk;
  gboolean keyframe;
  const MediaInitMeta *init_meta; /* nullable */
  GBytes *init;                   /* nullable */
} MediaChunkEvent;

typedef void (*MediaChunkFunc) (const MediaChunkEvent *event, gpointer user_data);

/* Asks for a chunk per frame (@on_chunk, with the camera's user data, on
 * the main thread), or stops them (NULL): chunks cost a little per frame,
 * so they are made only while someone watches with low latency. */
void media_camera_set_chunks (MediaCamera *camera, MediaChunkFunc on_chunk);

/* Parses @config->source and builds nothing yet. FALSE with @error for a
 * source edged cannot read (unknown scheme, malformed URL). */
gboolean media_camera_source_check (const EdgeConfigCamera *config, GError **error);

/* Starts capturing; @store is borrowed, @config copied. With @on_event,
 * the camera's detectors (config->detect) run and their events go there,
 * with @user_data, on the main thread. Never fails: a
 * source that cannot start is retried, its error shown in the status.
 * (transfer full) */
MediaCamera *media_camera_new (const EdgeConfigCamera *config, MediaStore *store,
                               const HwChoice *hw, MediaFragmentFunc on_fragment,
                               MediaEventFunc on_event, gpointer user_data);
/* Stops the pipeline (flushing what it has as a last fragment) and frees. */
void media_camera_free (MediaCamera *camera);

const EdgeConfigCamera *media_camera_config (MediaCamera *camera);
MediaCameraState media_camera_state (MediaCamera *camera);
const char *media_camera_state_name (MediaCameraState state);
/* The last error, or NULL. (transfer none) */
const char *media_camera_last_error (MediaCamera *camera);
/* The source with any password replaced by "***". (transfer full) */
char *media_camera_display_source (const char *source);
/* Frames received since start; restarts so far. */
guint64 media_camera_frames (MediaCamera *camera);
guint media_camera_restarts (MediaCamera *camera);
/* Codec and size of the current init segment, or FALSE before the first. */
gboolean media_camera_track (MediaCamera *camera, MediaInitMeta *ret_init);

/* The camera's detection branch, or NULL without detectors.
 * (transfer none) */
MediaDetect *media_camera_detect (MediaCamera *camera);

G_END_DECLS
