/* rtsp.h: an RTSP client for cameras, RTP interleaved over the RTSP
 * connection (media/rtsp.c).
 *
 * Why not rtspsrc: recording one camera through it cost about 2.5 times
 * ffmpeg's CPU, almost all of it in rtspsrc's receive task (two reads and a
 * poll per RTP packet) and its jitterbuffer thread (docs/benchmarks.md). Over
 * TCP nothing is lost or reordered, so no jitterbuffer is needed, and the
 * connection can be read in large blocks. This client does the RTSP
 * exchange (DESCRIBE, SETUP, PLAY, keep-alives; Basic and Digest logins),
 * then reads the interleaved stream, turns the video packets into access
 * units (media/rtp.c) and hands each to the camera's fragmenter in its own
 * thread: no GStreamer element and no thread hand-off per frame.
 */
#pragma once

#include "fmp4.h"

G_BEGIN_DECLS

typedef struct _MediaRtspClient MediaRtspClient;

/* One access unit from the camera. */
typedef struct {
  const MediaTrack *track; /* the codec configuration; valid during the call */
  const guint8 *data;      /* NAL units, each after a 4-byte big-endian length */
  gsize size;
  gboolean keyframe;
  guint64 pts;             /* 90 kHz, from the RTP timestamp; 0 at the session's first packet */
  gint64 received_us;      /* wall clock at which the session's first packet arrived, plus pts */
} MediaRtspFrame;

typedef struct {
  /* Each access unit, in the client's thread. */
  void (*frame) (const MediaRtspFrame *frame, gpointer user_data);
  /* The session failed (connection, login, no H.264/H.265 video, no data
   * for 5 s), in the client's thread, which then ends. Not called after a
   * stop. */
  void (*failed) (const char *message, gpointer user_data);
} MediaRtspCallbacks;

/* Starts a thread that connects to @url (rtsp://[user:pass@]host[:port]/path)
 * and delivers frames until stopped or failed. (transfer full) */
MediaRtspClient *media_rtsp_client_start (const char *url, const MediaRtspCallbacks *callbacks,
                                          gpointer user_data);

/* Stops the thread (closing the connection, which ends the session on the
 * camera's side) and frees. No callback runs after it returns. Accepts
 * NULL. */
void media_rtsp_client_stop (MediaRtspClient *client);

G_END_DECLS
