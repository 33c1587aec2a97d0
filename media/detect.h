/* detect.h: a camera's detection branch and the detectors it runs
 * (media/detect.c, media/motion.c).
 *
 * The branch takes the access units the fragmenter takes, decodes them in
 * a pipeline of its own (the board's decoder where hw/ finds one), drops
 * to a few frames a second at a small size and hands each frame to the
 * camera's detectors. The recording never waits for it: when it falls
 * behind, access units are dropped up to the next keyframe.
 *
 * A detector says, per frame, whether it sees something, how sure it is
 * and where. The branch turns that into events: one that starts when two
 * frames in a row see something, and ends when nothing was seen for the
 * cooldown. Detectors are classes (MediaDetectorClass); a new one is a
 * table entry in detect.c and nothing else.
 */
#pragma once

#include "edge-core.h"
#include "motion.h"

#include <gst/video/video.h>

G_BEGIN_DECLS

#define MEDIA_DETECT_BOXES_MAX MEDIA_MOTION_BOXES_MAX

typedef struct {
  gboolean detected;
  double score; /* 0 to 1 */
  guint n_boxes;
  MediaBox boxes[MEDIA_DETECT_BOXES_MAX];
} MediaDetectorResult;

typedef struct {
  const char *name; /* the events' type: "motion", "face" */
  /* FALSE with @error saying what this machine lacks (a plugin, a model). */
  gboolean (*available) (GError **error);
  /* FALSE with @error for settings the detector cannot use. */
  gpointer (*create) (const EdgeConfigCamera *config, GError **error);
  /* One decoded frame (I420, the detection size) from the branch's thread. */
  void (*process) (gpointer detector, const GstVideoFrame *frame, MediaDetectorResult *ret);
  void (*free) (gpointer detector);
} MediaDetectorClass;

/* Faces (media/face.c), through GStreamer's OpenCV plugin where installed. */
extern const MediaDetectorClass media_face_detector;

/* Checks a camera's detection settings (detect, zones, min area, ...)
 * without building anything; FALSE with @error naming the setting. */
gboolean media_detect_check (const EdgeConfigCamera *config, GError **error);

typedef enum {
  MEDIA_EVENT_START,
  MEDIA_EVENT_END,
} MediaEventPhase;

/* An event starting or ending, on the camera's main context. */
typedef struct {
  const char *id;     /* the same for the start and the end */
  const char *camera;
  const char *type;   /* the detector's name */
  MediaEventPhase phase;
  gint64 start_ms;    /* producer time of the first frame that saw it */
  gint64 end_ms;      /* of the last (END only; 0 for START) */
  gint64 server_ms;   /* when edged decided */
  guint64 fragment;   /* the fragment holding the first frame */
  double score;       /* the highest so far */
  guint n_boxes;      /* START: the first frame's; END: the union over the event */
  const MediaBox *boxes;
  GBytes *snapshot;   /* START: a JPEG of the frame that started it; nullable */
} MediaEvent;

typedef void (*MediaEventFunc) (const MediaEvent *event, gpointer user_data);

typedef struct _MediaDetect MediaDetect;

/* Starts the branch for @config's detectors (none: returns NULL and no
 * error). Events go to @func on @context. (transfer full) */
MediaDetect *media_detect_new (const EdgeConfigCamera *config, GMainContext *context,
                               MediaEventFunc func, gpointer user_data, GError **error);
/* One access unit (length-prefixed, @codec_private its avcC/hvcC), from the
 * thread the camera's frames arrive in; @decode_90k and @pts_90k on the
 * fragments' timeline (Unix time × 90 kHz). Never blocks. */
void media_detect_push (MediaDetect *detect, gboolean h265, GBytes *codec_private,
                        const guint8 *data, gsize size, gboolean keyframe, guint64 decode_90k,
                        guint64 pts_90k, guint64 fragment);
/* The camera's source started again (after a loss, or a file's loop): the
 * pictures from the next access unit on are a new start, which the
 * detectors look at for the warm-up time before any event starts in them,
 * as at the first. Accepts NULL. */
void media_detect_source_restarted (MediaDetect *detect);
/* Frames decoded and examined, and access units dropped for being behind;
 * 0 for NULL (no detectors). */
guint64 media_detect_frames (MediaDetect *detect);
guint64 media_detect_dropped (MediaDetect *detect);
/* Stops the branch, ends the events still open (their END goes to the
 * callback before this returns: on the main thread), and drops events
 * still queued for the main context. Accepts NULL. */
void media_detect_free (MediaDetect *detect);

G_END_DECLS
