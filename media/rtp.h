/* rtp.h: RTP video payloads to access units, for the RTSP client
 * (media/rtp.c).
 *
 * H.264 (RFC 6184: single NAL unit, STAP-A and FU-A packets) and H.265
 * (RFC 7798: single NAL unit, aggregation and fragmentation units, without
 * decoding order numbers). Out come whole access units in the form the
 * fragments store: each NAL unit after a 4-byte big-endian length, with the
 * track (size, avcC / hvcC) built from the parameter sets the SDP announced
 * or the stream carried. An access unit hit by a lost packet is dropped,
 * and so is everything after it up to the next keyframe: a decoder cannot
 * use a picture whose references are gone.
 */
#pragma once

#include "fmp4.h"

G_BEGIN_DECLS

/* Largest access unit gathered, and largest parameter set kept. */
#define MEDIA_RTP_FRAME_MAX_BYTES (16u * 1024 * 1024)
#define MEDIA_RTP_PARAMETER_SET_MAX_BYTES 4096

typedef struct _MediaRtpDepay MediaRtpDepay;

typedef struct {
  /* The codec configuration the frame decodes with; valid until the next
   * frame. Its codec_private changes when the parameter sets do. */
  const MediaTrack *track;
  const guint8 *data; /* NAL units, each after a 4-byte big-endian length */
  gsize size;
  gboolean keyframe;  /* holds an IDR picture (H.264) or an IRAP picture (H.265) */
  guint32 rtp_time;   /* the RTP timestamp of its packets */
} MediaRtpFrame;

typedef void (*MediaRtpFrameFunc) (const MediaRtpFrame *frame, gpointer user_data);

/* A depayloader for @codec. @fmtp is the SDP's a=fmtp value for the payload
 * (nullable): its sprop-parameter-sets (H.264) or sprop-vps, sprop-sps and
 * sprop-pps (H.265) give the first track before the stream repeats them.
 * Fails when the payload format is one this depayloader does not take
 * (interleaved H.264, H.265 with decoding order numbers). */
MediaRtpDepay *media_rtp_depay_new (MediaCodec codec, const char *fmtp,
                                    MediaRtpFrameFunc on_frame, gpointer user_data,
                                    GError **error);

/* One RTP packet (header and payload). Calls on_frame for each access unit
 * completed: at a packet with the marker bit, or at the first packet of the
 * next timestamp when a marker went missing. */
void media_rtp_depay_push (MediaRtpDepay *depay, const guint8 *packet, gsize len);

/* Whether an access unit is under way: packets of it came, its last has
 * not. */
gboolean media_rtp_depay_in_frame (MediaRtpDepay *depay);

/* Access units dropped so far: damaged by a lost packet, over the size
 * limit, before the first parameter sets or waiting for a keyframe. */
guint64 media_rtp_depay_dropped (MediaRtpDepay *depay);

void media_rtp_depay_free (MediaRtpDepay *depay);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MediaRtpDepay, media_rtp_depay_free)

G_END_DECLS
