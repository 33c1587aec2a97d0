/* Fuzzes the RTP depayloader (media/rtp.c), which takes whatever a camera
 * sends: the input is a codec byte, then packets, each after a 16-bit
 * length. Every frame that comes out must be NAL units, each after a 4-byte
 * length, that tile it exactly, with a track whose configuration is within
 * its limit; nothing may read out of bounds or grow without limit. */
#include "edge-core.h"
#include "rtp.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_frame (const MediaRtpFrame *frame, gpointer user_data)
{
  gsize at = 0;
  while (at < frame->size) {
    if (frame->size - at < 4)
      __builtin_trap ();
    guint32 len = edge_get_be32 (frame->data + at);
    if (len == 0 || len > frame->size - at - 4)
      __builtin_trap ();
    at += 4 + len;
  }
  if (frame->size == 0 || frame->size > MEDIA_RTP_FRAME_MAX_BYTES ||
      frame->track->codec_private_len == 0 ||
      frame->track->codec_private_len > MEDIA_CODEC_PRIVATE_MAX_BYTES)
    __builtin_trap ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  /* Parameter sets of a real 640x360 stream, so that frames come out; the
   * fuzzer's own in-band ones replace them. */
  static const char h264_fmtp[] =
      "packetization-mode=1;sprop-parameter-sets=Z2QAHqzZQKAv+XAWoMDA1KAAAAMAIAAAB5HixbLA,aOvssiw=";
  static const char h265_fmtp[] =
      "sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA/lZgJ;"
      "sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA/oAUCAWlllZpJMr/8AAQABagwMDAgAAADACAAAAMDwQ==;"
      "sprop-pps=RAHBcrRiQA==";
  MediaCodec codec = data[0] & 1 ? MEDIA_CODEC_H265 : MEDIA_CODEC_H264;
  MediaRtpDepay *depay = media_rtp_depay_new (
      codec, codec == MEDIA_CODEC_H265 ? h265_fmtp : h264_fmtp, check_frame, NULL, NULL);
  gsize at = 1;
  while (size - at >= 2) {
    gsize len = edge_get_be16 (data + at);
    at += 2;
    if (len > size - at)
      len = size - at;
    media_rtp_depay_push (depay, data + at, len);
    at += len;
  }
  media_rtp_depay_free (depay);
  return 0;
}
