/* rtp.c: RTP video payloads to access units (media/rtp.h).
 *
 * Packets of one access unit share an RTP timestamp; the last carries the
 * marker bit. Each payload holds one NAL unit, several (aggregation:
 * 16-bit size, NAL unit, ...), or a piece of one (fragmentation: a start
 * bit, an end bit and the NAL unit's type in a header of its own; the NAL
 * header is rebuilt from it). NAL units go into one buffer as they
 * complete, each after a 4-byte length written once its size is known, so
 * that a finished access unit goes out without a copy.
 *
 * Parameter sets are kept in the access units (a decoder may meet a new
 * one mid-stream) and copied aside; the latest of each makes the track:
 *
 *   avcC  version 1, profile, compatibility, level (SPS bytes 1-3),
 *         4-byte lengths, the SPS, the PPS; for the High profiles, chroma
 *         format and bit depths (ISO/IEC 14496-15 5.3.3.1)
 *   hvcC  version 1, the SPS's general profile_tier_level (12 bytes),
 *         chroma format, bit depths, temporal layers, 4-byte lengths, then
 *         arrays of one VPS, one SPS, one PPS (8.3.3.1)
 *
 * Picture size and the fields above that sit behind exp-Golomb codes come
 * from GStreamer's SPS parsers.
 */
#define G_LOG_DOMAIN "media"

#include "rtp.h"

#include "edge-core.h"

#include <gio/gio.h>
/* The codec parsers are marked unstable; the calls used here have kept
 * their shape since GStreamer 1.4, and the build pins 1.22. */
#define GST_USE_UNSTABLE_API
#include <gst/codecparsers/gsth264parser.h>
#include <gst/codecparsers/gsth265parser.h>
#include <string.h>

#define NO_FRAGMENT G_MAXSIZE

enum { PS_VPS, PS_SPS, PS_PPS, PS_COUNT };

struct _MediaRtpDepay {
  MediaCodec codec;
  MediaRtpFrameFunc on_frame;
  gpointer user_data;

  GBytes *sets[PS_COUNT];   /* the latest parameter sets, NAL header included */
  gboolean sets_changed;
  MediaTrack track;
  GBytes *codec_private;
  gboolean have_track;
  GstH264NalParser *h264;
  GstH265Parser *h265;

  /* The access unit being gathered. */
  GByteArray *frame;
  gboolean in_frame;
  guint32 frame_time;
  gboolean keyframe;
  gboolean have_slice; /* a picture's slice is in it */
  gboolean damaged;
  gsize fragment_at; /* where the NAL unit being reassembled starts; NO_FRAGMENT */

  gboolean have_sequence;
  guint16 next_sequence;
  gboolean need_keyframe; /* a damaged frame went: nothing until a keyframe */
  guint64 dropped;
};

static const char *const h265_sprop[PS_COUNT] = { "sprop-vps", "sprop-sps", "sprop-pps" };

/* ---- parameter sets and the track ---- */

static guint
nal_type (MediaCodec codec, const guint8 *nal)
{
  return codec == MEDIA_CODEC_H264 ? nal[0] & 0x1f : (nal[0] >> 1) & 0x3f;
}

/* Which parameter set a NAL unit type is, or -1. */
static gint
parameter_set_kind (MediaCodec codec, guint type)
{
  if (codec == MEDIA_CODEC_H264)
    return type == 7 ? PS_SPS : type == 8 ? PS_PPS : -1;
  return type == 32 ? PS_VPS : type == 33 ? PS_SPS : type == 34 ? PS_PPS : -1;
}

static void
keep_parameter_set (MediaRtpDepay *d, const guint8 *nal, gsize len)
{
  gint kind = parameter_set_kind (d->codec, nal_type (d->codec, nal));
  if (kind < 0 || len > MEDIA_RTP_PARAMETER_SET_MAX_BYTES)
    return;
  if (d->sets[kind]) {
    gsize old_len;
    const guint8 *old = g_bytes_get_data (d->sets[kind], &old_len);
    if (old_len == len && memcmp (old, nal, len) == 0)
      return;
    g_bytes_unref (d->sets[kind]);
  }
  d->sets[kind] = g_bytes_new (nal, len);
  d->sets_changed = TRUE;
}

/* The first @max bytes of a NAL unit's payload, without its emulation
 * prevention bytes (00 00 03 -> 00 00). Returns how many were written. */
static gsize
unescape (const guint8 *nal, gsize len, guint8 *out, gsize max)
{
  gsize n = 0, zeros = 0;
  for (gsize i = 0; i < len && n < max; i++) {
    if (zeros >= 2 && nal[i] == 3) {
      zeros = 0;
      continue;
    }
    zeros = nal[i] == 0 ? zeros + 1 : 0;
    out[n++] = nal[i];
  }
  return n;
}

static void
put_set (GByteArray *out, GBytes *set)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (set, &len);
  guint8 size[2] = { (guint8) (len >> 8), (guint8) len };
  g_byte_array_append (out, size, 2);
  g_byte_array_append (out, data, (guint) len);
}

/* The SPS in a 4-byte-length buffer, as the parsers' identify calls take. */
static GByteArray *
length_prefixed (GBytes *set)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (set, &len);
  GByteArray *out = g_byte_array_sized_new ((guint) len + 4);
  guint8 size[4];
  edge_put_be32 (size, (guint32) len);
  g_byte_array_append (out, size, 4);
  g_byte_array_append (out, data, (guint) len);
  return out;
}

static gboolean
track_h264 (MediaRtpDepay *d, GByteArray *config)
{
  g_autoptr (GByteArray) buf = length_prefixed (d->sets[PS_SPS]);
  GstH264NalUnit nalu;
  GstH264SPS sps;
  if (buf->len < 8 ||
      gst_h264_parser_identify_nalu_avc (d->h264, buf->data, 0, buf->len, 4, &nalu) !=
          GST_H264_PARSER_OK ||
      gst_h264_parse_sps (&nalu, &sps) != GST_H264_PARSER_OK)
    return FALSE;
  d->track.width = (guint) (sps.frame_cropping_flag ? sps.crop_rect_width : sps.width);
  d->track.height = (guint) (sps.frame_cropping_flag ? sps.crop_rect_height : sps.height);
  const guint8 *s = buf->data + 4;
  guint8 head[6] = { 1, s[1], s[2], s[3], 0xfc | 3, 0xe0 | 1 };
  g_byte_array_append (config, head, sizeof head);
  put_set (config, d->sets[PS_SPS]);
  guint8 one = 1;
  g_byte_array_append (config, &one, 1);
  put_set (config, d->sets[PS_PPS]);
  if (sps.profile_idc == 100 || sps.profile_idc == 110 || sps.profile_idc == 122 ||
      sps.profile_idc == 144) {
    guint8 high[4] = { (guint8) (0xfc | sps.chroma_format_idc),
                       (guint8) (0xf8 | sps.bit_depth_luma_minus8),
                       (guint8) (0xf8 | sps.bit_depth_chroma_minus8), 0 };
    g_byte_array_append (config, high, sizeof high);
  }
  gst_h264_sps_clear (&sps);
  return TRUE;
}

static gboolean
track_h265 (MediaRtpDepay *d, GByteArray *config)
{
  if (d->sets[PS_VPS] == NULL)
    return FALSE;
  g_autoptr (GByteArray) buf = length_prefixed (d->sets[PS_SPS]);
  GstH265NalUnit nalu;
  GstH265SPS sps;
  if (gst_h265_parser_identify_nalu_hevc (d->h265, buf->data, 0, buf->len, 4, &nalu) !=
          GST_H265_PARSER_OK ||
      gst_h265_parse_sps (d->h265, &nalu, &sps, FALSE) != GST_H265_PARSER_OK)
    return FALSE;
  /* NAL header (2), then video_parameter_set_id / max_sub_layers_minus1 /
   * temporal_id_nesting_flag (1), then the general profile_tier_level. */
  guint8 rbsp[15];
  if (unescape (buf->data + 4, buf->len - 4, rbsp, sizeof rbsp) < sizeof rbsp)
    return FALSE;
  d->track.width = (guint) (sps.conformance_window_flag ? sps.crop_rect_width : sps.width);
  d->track.height = (guint) (sps.conformance_window_flag ? sps.crop_rect_height : sps.height);
  guint8 one = 1;
  g_byte_array_append (config, &one, 1);
  g_byte_array_append (config, rbsp + 3, 12);
  guint8 rest[10] = {
    0xf0, 0x00,                                   /* min_spatial_segmentation_idc 0 */
    0xfc,                                         /* parallelismType unknown */
    (guint8) (0xfc | sps.chroma_format_idc),
    (guint8) (0xf8 | sps.bit_depth_luma_minus8),
    (guint8) (0xf8 | sps.bit_depth_chroma_minus8),
    0x00, 0x00,                                   /* avgFrameRate unknown */
    (guint8) (((sps.max_sub_layers_minus1 + 1) & 7) << 3 |
              (sps.temporal_id_nesting_flag & 1) << 2 | 3),
    3,                                            /* arrays: VPS, SPS, PPS */
  };
  g_byte_array_append (config, rest, sizeof rest);
  static const guint8 types[PS_COUNT] = { 32, 33, 34 };
  for (guint k = 0; k < PS_COUNT; k++) {
    guint8 array[3] = { (guint8) (0x80 | types[k]), 0, 1 };
    g_byte_array_append (config, array, 3);
    put_set (config, d->sets[k]);
  }
  return TRUE;
}

/* Rebuilds the track after the parameter sets changed. FALSE while they
 * are incomplete or do not parse. */
static gboolean
update_track (MediaRtpDepay *d)
{
  if (!d->sets_changed)
    return d->have_track;
  d->sets_changed = FALSE;
  if (d->sets[PS_SPS] == NULL || d->sets[PS_PPS] == NULL)
    return d->have_track = FALSE;
  g_autoptr (GByteArray) config = g_byte_array_new ();
  gboolean ok = d->codec == MEDIA_CODEC_H264 ? track_h264 (d, config) : track_h265 (d, config);
  if (!ok || config->len > MEDIA_CODEC_PRIVATE_MAX_BYTES) {
    g_debug ("RTP: parameter sets that do not parse; waiting for others");
    return d->have_track = FALSE;
  }
  g_clear_pointer (&d->codec_private, g_bytes_unref);
  d->codec_private = g_byte_array_free_to_bytes (g_steal_pointer (&config));
  d->track.codec = d->codec;
  d->track.codec_private = g_bytes_get_data (d->codec_private, &d->track.codec_private_len);
  return d->have_track = TRUE;
}

/* ---- access units ---- */

static void
frame_reset (MediaRtpDepay *d)
{
  g_byte_array_set_size (d->frame, 0);
  d->in_frame = FALSE;
  d->keyframe = FALSE;
  d->have_slice = FALSE;
  d->damaged = FALSE;
  d->fragment_at = NO_FRAGMENT;
}

static void
frame_finish (MediaRtpDepay *d)
{
  if (!d->in_frame)
    return;
  if (d->fragment_at != NO_FRAGMENT)
    d->damaged = TRUE; /* a NAL unit whose last piece never came */
  gboolean usable = !d->damaged && d->frame->len > 0;
  if (usable && d->need_keyframe && !d->keyframe)
    usable = FALSE;
  if (usable && !update_track (d))
    usable = FALSE;
  if (!usable) {
    if (d->damaged)
      d->need_keyframe = TRUE;
    if (d->frame->len > 0 || d->damaged)
      d->dropped++;
    frame_reset (d);
    return;
  }
  d->need_keyframe = FALSE;
  MediaRtpFrame frame = {
    .track = &d->track,
    .data = d->frame->data,
    .size = d->frame->len,
    .keyframe = d->keyframe,
    .rtp_time = d->frame_time,
  };
  d->on_frame (&frame, d->user_data);
  frame_reset (d);
}

static gboolean
frame_room (MediaRtpDepay *d, gsize more)
{
  if (d->frame->len + more > MEDIA_RTP_FRAME_MAX_BYTES) {
    d->damaged = TRUE;
    return FALSE;
  }
  return TRUE;
}

/* The NAL unit at @at (its length field) is whole: its length goes in,
 * and what it says about the frame is noted. Access unit delimiters are
 * left out (fragments do not carry them). */
static void
nal_complete (MediaRtpDepay *d, gsize at)
{
  guint8 *nal = d->frame->data + at + 4;
  gsize len = d->frame->len - at - 4;
  gsize header = d->codec == MEDIA_CODEC_H264 ? 1 : 2;
  if (len < header) {
    g_byte_array_set_size (d->frame, (guint) at);
    return;
  }
  guint type = nal_type (d->codec, nal);
  if ((d->codec == MEDIA_CODEC_H264 && type == 9) || (d->codec == MEDIA_CODEC_H265 && type == 35)) {
    g_byte_array_set_size (d->frame, (guint) at);
    return;
  }
  edge_put_be32 (d->frame->data + at, (guint32) len);
  gboolean h264 = d->codec == MEDIA_CODEC_H264;
  if (h264 ? type == 1 || type == 2 || type == 5 : type <= 31) {
    /* A picture's first slice says so in the first bit after the NAL
     * header (first_mb_in_slice 0; first_slice_segment_in_pic_flag; a
     * slice header opens these types, not data partitions B and C). An
     * access unit whose first slice is a later one lost its head: a
     * client that joins a stream between an encoder's slices gets the
     * bottom of a keyframe, which decodes to a smear. */
    if (!d->have_slice && (len <= header || !(nal[header] & 0x80)))
      d->damaged = TRUE;
    d->have_slice = TRUE;
  }
  if (h264 ? type == 5 : type >= 16 && type <= 21)
    d->keyframe = TRUE;
  keep_parameter_set (d, nal, len);
}

static void
add_nal (MediaRtpDepay *d, const guint8 *nal, gsize len)
{
  if (len == 0 || !frame_room (d, len + 4))
    return;
  gsize at = d->frame->len;
  static const guint8 zero[4];
  g_byte_array_append (d->frame, zero, 4);
  g_byte_array_append (d->frame, nal, (guint) len);
  nal_complete (d, at);
}

/* An aggregation packet's NAL units, from @p (after the payload header). */
static void
add_aggregate (MediaRtpDepay *d, const guint8 *p, gsize len)
{
  while (len >= 2) {
    gsize size = edge_get_be16 (p);
    if (size == 0 || size > len - 2) {
      d->damaged = TRUE;
      return;
    }
    add_nal (d, p + 2, size);
    p += 2 + size;
    len -= 2 + size;
  }
}

/* A fragmentation unit's piece: @header is the rebuilt NAL header
 * (@header_len bytes), @piece what follows the FU header. */
static void
add_fragment (MediaRtpDepay *d, gboolean start, gboolean end, const guint8 *header,
              gsize header_len, const guint8 *piece, gsize len)
{
  if (start) {
    if (d->fragment_at != NO_FRAGMENT) {
      d->damaged = TRUE; /* the previous one never ended */
      g_byte_array_set_size (d->frame, (guint) d->fragment_at);
    }
    if (!frame_room (d, 4 + header_len + len))
      return;
    d->fragment_at = d->frame->len;
    static const guint8 zero[4];
    g_byte_array_append (d->frame, zero, 4);
    g_byte_array_append (d->frame, header, (guint) header_len);
  } else if (d->fragment_at == NO_FRAGMENT) {
    d->damaged = TRUE; /* its start was lost */
    return;
  }
  if (!frame_room (d, len)) {
    g_byte_array_set_size (d->frame, (guint) d->fragment_at);
    d->fragment_at = NO_FRAGMENT;
    return;
  }
  g_byte_array_append (d->frame, piece, (guint) len);
  if (end) {
    gsize at = d->fragment_at;
    d->fragment_at = NO_FRAGMENT;
    nal_complete (d, at);
  }
}

static void
payload_h264 (MediaRtpDepay *d, const guint8 *p, gsize len)
{
  guint type = p[0] & 0x1f;
  if (type >= 1 && type <= 23) {
    add_nal (d, p, len);
  } else if (type == 24) { /* STAP-A */
    add_aggregate (d, p + 1, len - 1);
  } else if (type == 28) { /* FU-A */
    if (len < 2) {
      d->damaged = TRUE;
      return;
    }
    guint8 header = (guint8) ((p[0] & 0xe0) | (p[1] & 0x1f));
    add_fragment (d, p[1] & 0x80, p[1] & 0x40, &header, 1, p + 2, len - 2);
  } else {
    /* STAP-B, MTAP, FU-B: interleaved mode only, which SETUP never asks
     * for; reserved types carry nothing to decode. */
    d->damaged = d->damaged || (type >= 25 && type <= 29);
  }
}

static void
payload_h265 (MediaRtpDepay *d, const guint8 *p, gsize len)
{
  if (len < 2) {
    d->damaged = TRUE;
    return;
  }
  guint type = (p[0] >> 1) & 0x3f;
  if (type < 48) {
    add_nal (d, p, len);
  } else if (type == 48) { /* aggregation packet */
    add_aggregate (d, p + 2, len - 2);
  } else if (type == 49) { /* fragmentation unit */
    if (len < 3) {
      d->damaged = TRUE;
      return;
    }
    guint8 header[2] = { (guint8) ((p[0] & 0x81) | (p[2] & 0x3f) << 1), p[1] };
    add_fragment (d, p[2] & 0x80, p[2] & 0x40, header, 2, p + 3, len - 3);
  }
  /* 50 (PACI) and the unspecified types carry nothing this track needs. */
}

void
media_rtp_depay_push (MediaRtpDepay *d, const guint8 *packet, gsize len)
{
  if (len < 12 || (packet[0] >> 6) != 2)
    return;
  gsize header = 12 + 4 * (gsize) (packet[0] & 0x0f);
  if (packet[0] & 0x10) { /* a header extension */
    if (len < header + 4)
      return;
    header += 4 + 4 * (gsize) edge_get_be16 (packet + header + 2);
  }
  gsize end = len;
  if (packet[0] & 0x20) { /* padding: its count is the last byte */
    if (packet[len - 1] == 0 || packet[len - 1] > len)
      return;
    end = len - packet[len - 1];
  }
  if (header >= end)
    return;

  guint16 sequence = edge_get_be16 (packet + 2);
  guint32 time = edge_get_be32 (packet + 4);
  gboolean lost = d->have_sequence && sequence != d->next_sequence;
  d->have_sequence = TRUE;
  d->next_sequence = (guint16) (sequence + 1);
  if (lost && d->in_frame)
    d->damaged = TRUE; /* its tail may be what went missing */
  if (d->in_frame && time != d->frame_time)
    frame_finish (d);
  if (!d->in_frame) {
    d->in_frame = TRUE;
    d->frame_time = time;
  }
  if (lost)
    d->damaged = TRUE; /* ... or its head */

  if (d->codec == MEDIA_CODEC_H264)
    payload_h264 (d, packet + header, end - header);
  else
    payload_h265 (d, packet + header, end - header);
  if (packet[1] & 0x80)
    frame_finish (d);
}

/* ---- setup ---- */

/* The value of @key in an fmtp line ("k=v; k=v"), or NULL. */
static char *
fmtp_value (const char *fmtp, const char *key)
{
  if (fmtp == NULL)
    return NULL;
  g_auto (GStrv) params = g_strsplit (fmtp, ";", -1);
  for (guint i = 0; params[i]; i++) {
    char *eq = strchr (params[i], '=');
    if (eq == NULL)
      continue;
    *eq = '\0';
    if (g_ascii_strcasecmp (g_strstrip (params[i]), key) == 0)
      return g_strdup (g_strstrip (eq + 1));
  }
  return NULL;
}

/* Base64 parameter sets, comma-separated, as the SDP announces them. */
static void
keep_announced (MediaRtpDepay *d, const char *value)
{
  if (value == NULL)
    return;
  g_auto (GStrv) sets = g_strsplit (value, ",", 8);
  for (guint i = 0; sets[i]; i++) {
    gsize len = 0;
    g_strstrip (sets[i]);
    if (sets[i][0] == '\0' || strlen (sets[i]) > 2 * MEDIA_RTP_PARAMETER_SET_MAX_BYTES)
      continue;
    g_autofree guint8 *nal = g_base64_decode (sets[i], &len);
    if (len >= (d->codec == MEDIA_CODEC_H264 ? 1u : 2u))
      keep_parameter_set (d, nal, len);
  }
}

MediaRtpDepay *
media_rtp_depay_new (MediaCodec codec, const char *fmtp, MediaRtpFrameFunc on_frame,
                     gpointer user_data, GError **error)
{
  if (codec == MEDIA_CODEC_H264) {
    g_autofree char *mode = fmtp_value (fmtp, "packetization-mode");
    if (mode && g_ascii_strtoull (mode, NULL, 10) > 1) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "H.264 packetization-mode=%s (interleaved) is not supported", mode);
      return NULL;
    }
  } else {
    g_autofree char *don = fmtp_value (fmtp, "sprop-max-don-diff");
    if (don && g_ascii_strtoull (don, NULL, 10) > 0) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "H.265 with decoding order numbers (sprop-max-don-diff=%s) is not supported",
                   don);
      return NULL;
    }
  }
  MediaRtpDepay *d = g_new0 (MediaRtpDepay, 1);
  d->codec = codec;
  d->on_frame = on_frame;
  d->user_data = user_data;
  d->frame = g_byte_array_new ();
  d->fragment_at = NO_FRAGMENT;
  if (codec == MEDIA_CODEC_H264) {
    d->h264 = gst_h264_nal_parser_new ();
    g_autofree char *sets = fmtp_value (fmtp, "sprop-parameter-sets");
    keep_announced (d, sets);
  } else {
    d->h265 = gst_h265_parser_new ();
    for (guint k = 0; k < PS_COUNT; k++) {
      g_autofree char *sets = fmtp_value (fmtp, h265_sprop[k]);
      keep_announced (d, sets);
    }
  }
  return d;
}

gboolean
media_rtp_depay_in_frame (MediaRtpDepay *d)
{
  return d->in_frame;
}

guint64
media_rtp_depay_dropped (MediaRtpDepay *d)
{
  return d->dropped;
}

void
media_rtp_depay_free (MediaRtpDepay *d)
{
  if (d == NULL)
    return;
  for (guint k = 0; k < PS_COUNT; k++)
    g_clear_pointer (&d->sets[k], g_bytes_unref);
  g_clear_pointer (&d->codec_private, g_bytes_unref);
  g_clear_pointer (&d->h264, gst_h264_nal_parser_free);
  g_clear_pointer (&d->h265, gst_h265_parser_free);
  g_byte_array_unref (d->frame);
  g_free (d);
}
