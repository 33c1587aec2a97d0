/* rtsp.h: an RTSP client for cameras, RTP interleaved over the RTSP
 * connection (media/rtsp.c).
 *
 * Why not rtspsrc: recording one camera through it cost about 2.5 times
 * ffmpeg's CPU, almost all of it in rtspsrc's receive task (two reads and a
 * poll per RTP packet) and its jitterbuffer thread (docs/benchmarks.md). Over
 * TCP nothing is lost or reordered, so no jitterbuffer is needed, and the
 * connection can be read in large blocks. This client does the RTSP
 * exchange (DESCRIBE, SETUP, PLAY, keep-alives; Basic and Digest logins),
 * then reads the interleaved stream and pushes each video RTP packet, stamped
 * from its RTP timestamp, into an appsrc; GStreamer's depayloader and parser
 * take it from there.
 */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

typedef struct _MediaRtspClient MediaRtspClient;

/* Starts a thread that connects to @url (rtsp://[user:pass@]host[:port]/path)
 * and feeds @appsrc (referenced) until stopped. The appsrc's caps are set
 * from the SDP before the first packet. A failure (connection, login,
 * no H.264/H.265 video, no data for 5 s) is posted as an error message on
 * the appsrc, so the pipeline's bus reports it like any element's.
 * (transfer full) */
MediaRtspClient *media_rtsp_client_start (const char *url, GstElement *appsrc);

/* Stops the thread (closing the connection, which ends the session on the
 * camera's side) and frees. Main thread; accepts NULL. */
void media_rtsp_client_stop (MediaRtspClient *client);

G_END_DECLS
