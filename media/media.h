/* media.h: the video plane of edged (docs/internals/media.md).
 *
 * Cameras captured through GStreamer, cut into keyframe-aligned fMP4
 * fragments, sealed into the fragment store and indexed; live playback over
 * WebSocket (Media Source Extensions), HLS, clips and snapshots; the Kinesis
 * Video Streams archived-media and control-plane calls that apply to
 * cameras. Everything is registered into the gateway by media_service_new.
 *
 * Threads: every function here is for the main thread.
 */
#pragma once

#include "edge-core.h"
#include "edge-gateway.h"
#include "stream.h"

G_BEGIN_DECLS

typedef struct _MediaService MediaService;

/* Opens the fragment store under @directory, registers the camera routes
 * and starts the cameras added at run time in earlier runs. Detection
 * events are appended to data streams of @streams (nullable: only
 * indexed). Everything is borrowed and must outlive the service.
 * (transfer full) */
MediaService *media_service_new (EdgeGateway *gateway, EdgeState *state, EdgeKeyring *keyring,
                                 StreamStore *streams, const char *directory,
                                 GError **error);

/* Checks the cameras of @config (sources, detection settings) without
 * starting anything; FALSE with @error naming the file (@name), the camera
 * and the setting. */
gboolean media_check_config (const EdgeConfig *config, const char *name, GError **error);

/* Starts a camera declared in the configuration (@config is copied). Fails
 * for an invalid name or source, or a name already taken. */
gboolean media_service_add_configured_camera (MediaService *service,
                                              const EdgeConfigCamera *config, GError **error);

/* Keeps free space on the data disk: recordings are removed, oldest first
 * across cameras, while less than @min_free_bytes + @video_reserve_bytes is
 * free (checked every 2 s). 0 + 0 turns it off. */
void media_service_set_free_space (MediaService *service, guint64 min_free_bytes,
                                   guint64 video_reserve_bytes);

/* ---- video uploads to S3-compatible storage (upload.c) ---- */

typedef struct _MediaUploads MediaUploads;

gboolean media_uploads_check_config (const EdgeConfig *config, const char *source,
                                     GError **error);
/* Starts the configured video uploads (their positions in @state) and
 * registers GET /v1/uploads, GET /v1/uploads/{name} and their lag in
 * @metrics (nullable). */
MediaUploads *media_uploads_new (MediaService *media, EdgeGateway *gateway, EdgeState *state,
                                 const EdgeConfig *config, EdgeMetrics *metrics, GError **error);
/* Stops uploading; a fragment under way goes again after the next start. */
void media_uploads_free (MediaUploads *uploads);

/* Stops every camera (each flushes its last fragment) and closes the
 * store. Accepts NULL. */
void media_service_free (MediaService *service);

G_END_DECLS
