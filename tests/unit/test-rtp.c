/* The RTP depayloader the RTSP client records through: access units put
 * back together from single-NAL, aggregation and fragmentation packets, the
 * avcC / hvcC and picture size built from real encoders' parameter sets
 * (x264's and x265's, 640x360), and what a lost packet costs: the damaged
 * frame and everything up to the next keyframe, never a broken picture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "edge-core.h"
#include "rtp.h"

/* x264, High profile, 640x360 (cropped from 640x368). */
static const guint8 h264_sps[] = { 0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9,
                                   0x70, 0x16, 0xa0, 0xc0, 0xc0, 0xd4, 0xa0, 0x00, 0x00, 0x03,
                                   0x00, 0x20, 0x00, 0x00, 0x07, 0x91, 0xe2, 0xc5, 0xb2, 0xc0 };
static const guint8 h264_pps[] = { 0x68, 0xeb, 0xec, 0xb2, 0x2c };
/* x265, Main profile, 640x360. */
static const char h265_fmtp[] =
    "sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA/lZgJ; "
    "sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA/oAUCAWlllZpJMr/8AAQABagwMDAgAAADACAAAAMDwQ==; "
    "sprop-pps=RAHBcrRiQA==";

typedef struct {
  GPtrArray *frames;  /* GBytes of each frame's data */
  GArray *keyframes;  /* gboolean */
  GBytes *config;     /* the last frame's codec_private */
  guint width, height;
  MediaCodec codec;
} Collected;

static void
collect (const MediaRtpFrame *frame, gpointer data)
{
  Collected *c = data;
  g_ptr_array_add (c->frames, g_bytes_new (frame->data, frame->size));
  g_array_append_val (c->keyframes, frame->keyframe);
  g_clear_pointer (&c->config, g_bytes_unref);
  c->config = g_bytes_new (frame->track->codec_private, frame->track->codec_private_len);
  c->width = frame->track->width;
  c->height = frame->track->height;
  c->codec = frame->track->codec;
}

static Collected *
collected_new (void)
{
  Collected *c = g_new0 (Collected, 1);
  c->frames = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  c->keyframes = g_array_new (FALSE, FALSE, sizeof (gboolean));
  return c;
}

static void
collected_free (Collected *c)
{
  g_ptr_array_unref (c->frames);
  g_array_unref (c->keyframes);
  g_clear_pointer (&c->config, g_bytes_unref);
  g_free (c);
}

/* Sends RTP packets with consecutive sequence numbers. */
typedef struct {
  MediaRtpDepay *depay;
  guint16 sequence;
} Sender;

static void
send_packet (Sender *s, guint32 time, gboolean marker, const guint8 *payload, gsize len)
{
  g_autofree guint8 *p = g_malloc (12 + len);
  p[0] = 0x80;
  p[1] = (guint8) ((marker ? 0x80 : 0) | 96);
  p[2] = (guint8) (s->sequence >> 8);
  p[3] = (guint8) s->sequence;
  edge_put_be32 (p + 4, time);
  edge_put_be32 (p + 8, 0x12345678);
  memcpy (p + 12, payload, len);
  media_rtp_depay_push (s->depay, p, 12 + len);
  s->sequence++;
}

/* A slice NAL unit of @len bytes: header @header, then a counting pattern
 * whose first bit says whether it is its picture's first slice
 * (first_mb_in_slice 0 is the one bit 1). */
static GByteArray *
make_slice (guint8 header, gsize len, gboolean first)
{
  GByteArray *nal = g_byte_array_sized_new ((guint) len);
  g_byte_array_append (nal, &header, 1);
  for (gsize i = 1; i < len; i++) {
    guint8 b = (guint8) (i * 13 + header);
    if (i == 1)
      b = first ? (guint8) (b | 0x80) : (guint8) (b & 0x7f);
    g_byte_array_append (nal, &b, 1);
  }
  return nal;
}

static GByteArray *
make_nal (guint8 header, gsize len)
{
  return make_slice (header, len, TRUE);
}

/* Sends @nal as FU-A packets of at most @piece payload bytes. */
static void
send_fu_a (Sender *s, guint32 time, gboolean marker_at_end, const GByteArray *nal, gsize piece)
{
  gsize at = 1;
  while (at < nal->len) {
    gsize n = MIN (piece, nal->len - at);
    guint8 buf[2048];
    buf[0] = (guint8) ((nal->data[0] & 0xe0) | 28);
    buf[1] = (guint8) ((at == 1 ? 0x80 : 0) | (at + n == nal->len ? 0x40 : 0) |
                       (nal->data[0] & 0x1f));
    memcpy (buf + 2, nal->data + at, n);
    send_packet (s, time, marker_at_end && at + n == nal->len, buf, n + 2);
    at += n;
  }
}

/* Whether @frame holds exactly the NAL units given, each length-prefixed. */
static void
assert_frame (GBytes *frame, const guint8 *const *nals, const gsize *lens, guint n)
{
  gsize size;
  const guint8 *d = g_bytes_get_data (frame, &size);
  gsize at = 0;
  for (guint i = 0; i < n; i++) {
    assert_true (at + 4 + lens[i] <= size);
    assert_int_equal (edge_get_be32 (d + at), lens[i]);
    assert_memory_equal (d + at + 4, nals[i], lens[i]);
    at += 4 + lens[i];
  }
  assert_int_equal (at, size);
}

static char *
h264_fmtp (void)
{
  g_autofree char *sps = g_base64_encode (h264_sps, sizeof h264_sps);
  g_autofree char *pps = g_base64_encode (h264_pps, sizeof h264_pps);
  return g_strdup_printf ("packetization-mode=1;profile-level-id=64001e;"
                          "sprop-parameter-sets=%s,%s",
                          sps, pps);
}

static void
test_h264_track_from_sdp (void **state)
{
  (void) state;
  Collected *c = collected_new ();
  g_autofree char *fmtp = h264_fmtp ();
  g_autoptr (MediaRtpDepay) d = media_rtp_depay_new (MEDIA_CODEC_H264, fmtp, collect, c, NULL);
  assert_non_null (d);
  Sender s = { d, 65530 }; /* wraps around mid-test */
  static const guint8 idr[] = { 0x65, 0x88, 0x84, 0x00, 0x33 };
  send_packet (&s, 1000, TRUE, idr, sizeof idr);
  assert_int_equal (c->frames->len, 1);
  assert_true (g_array_index (c->keyframes, gboolean, 0));
  assert_int_equal (c->codec, MEDIA_CODEC_H264);
  assert_int_equal (c->width, 640);
  assert_int_equal (c->height, 360);

  /* avcC: version, profile / compatibility / level from the SPS, 4-byte
   * lengths, one SPS, one PPS, and the High profile's chroma format (4:2:0)
   * and 8-bit depths. */
  gsize len;
  const guint8 *avcc = g_bytes_get_data (c->config, &len);
  static const guint8 head[] = { 0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, sizeof h264_sps };
  assert_int_equal (len, 8 + sizeof h264_sps + 3 + sizeof h264_pps + 4);
  assert_memory_equal (avcc, head, sizeof head);
  assert_memory_equal (avcc + 8, h264_sps, sizeof h264_sps);
  assert_int_equal (avcc[8 + sizeof h264_sps], 1);
  assert_int_equal (edge_get_be16 (avcc + 9 + sizeof h264_sps), sizeof h264_pps);
  assert_memory_equal (avcc + 11 + sizeof h264_sps, h264_pps, sizeof h264_pps);
  static const guint8 high[] = { 0xfd, 0xf8, 0xf8, 0x00 };
  assert_memory_equal (avcc + len - 4, high, 4);
  collected_free (c);
}

static void
test_h264_packets (void **state)
{
  (void) state;
  Collected *c = collected_new ();
  g_autoptr (MediaRtpDepay) d = media_rtp_depay_new (MEDIA_CODEC_H264, NULL, collect, c, NULL);
  Sender s = { d, 100 };

  /* Frame 1: STAP-A with an access unit delimiter, the SPS and the PPS,
   * then an IDR slice in FU-A pieces. No parameter sets came in the SDP:
   * these make the track. */
  static const guint8 aud[] = { 0x09, 0xf0 };
  GByteArray *stap = g_byte_array_new ();
  guint8 type = 0x18;
  g_byte_array_append (stap, &type, 1);
  const guint8 *parts[] = { aud, h264_sps, h264_pps };
  const gsize part_lens[] = { sizeof aud, sizeof h264_sps, sizeof h264_pps };
  for (guint i = 0; i < 3; i++) {
    guint8 size[2] = { 0, (guint8) part_lens[i] };
    g_byte_array_append (stap, size, 2);
    g_byte_array_append (stap, parts[i], (guint) part_lens[i]);
  }
  send_packet (&s, 3000, FALSE, stap->data, stap->len);
  g_autoptr (GByteArray) idr = make_nal (0x65, 5000);
  send_fu_a (&s, 3000, TRUE, idr, 1400);
  assert_int_equal (c->frames->len, 1);
  /* The delimiter is gone; the parameter sets stay in band. */
  const guint8 *want1[] = { h264_sps, h264_pps, idr->data };
  const gsize want1_lens[] = { sizeof h264_sps, sizeof h264_pps, idr->len };
  assert_frame (g_ptr_array_index (c->frames, 0), want1, want1_lens, 3);
  assert_true (g_array_index (c->keyframes, gboolean, 0));
  assert_int_equal (c->width, 640);

  /* Frame 2: two single-NAL slices, no marker; frame 3's first packet (a
   * new timestamp) closes it. */
  g_autoptr (GByteArray) p1 = make_nal (0x41, 300);
  g_autoptr (GByteArray) p2 = make_slice (0x41, 200, FALSE);
  send_packet (&s, 6000, FALSE, p1->data, p1->len);
  send_packet (&s, 6000, FALSE, p2->data, p2->len);
  assert_int_equal (c->frames->len, 1);
  g_autoptr (GByteArray) p3 = make_nal (0x41, 100);
  send_packet (&s, 9000, TRUE, p3->data, p3->len);
  assert_int_equal (c->frames->len, 3);
  const guint8 *want2[] = { p1->data, p2->data };
  const gsize want2_lens[] = { p1->len, p2->len };
  assert_frame (g_ptr_array_index (c->frames, 1), want2, want2_lens, 2);
  assert_false (g_array_index (c->keyframes, gboolean, 1));
  assert_int_equal (media_rtp_depay_dropped (d), 0);
  g_byte_array_unref (stap);
  collected_free (c);
}

/* A lost packet inside a fragmented slice: that frame goes, and so do the
 * frames after it until a keyframe, which comes out whole. */
static void
test_h264_loss (void **state)
{
  (void) state;
  Collected *c = collected_new ();
  g_autofree char *fmtp = h264_fmtp ();
  g_autoptr (MediaRtpDepay) d = media_rtp_depay_new (MEDIA_CODEC_H264, fmtp, collect, c, NULL);
  Sender s = { d, 7 };
  g_autoptr (GByteArray) idr = make_nal (0x65, 3000);
  g_autoptr (GByteArray) slice = make_nal (0x41, 3000);
  send_fu_a (&s, 0, TRUE, idr, 1000);
  assert_int_equal (c->frames->len, 1);

  /* Frame 2 in three pieces; the middle one never arrives. */
  guint16 first = s.sequence;
  send_fu_a (&s, 3000, TRUE, slice, 1000); /* sends 3: first, first+1, first+2 */
  assert_int_equal (c->frames->len, 2);    /* (sanity: whole, it goes through) */
  s.sequence = first + 3;
  guint8 buf[1100];
  buf[0] = 0x5c; /* FU-A, NRI 2 */
  buf[1] = 0x80 | 1;
  memcpy (buf + 2, slice->data + 1, 1000);
  send_packet (&s, 6000, FALSE, buf, 1002);
  s.sequence++; /* lost: the middle piece */
  buf[1] = 0x40 | 1;
  send_packet (&s, 6000, TRUE, buf, 1002);
  assert_int_equal (c->frames->len, 2);

  /* A whole delta frame after it is dropped too: its reference is gone. */
  send_fu_a (&s, 9000, TRUE, slice, 1000);
  assert_int_equal (c->frames->len, 2);
  /* The next keyframe comes through. */
  send_fu_a (&s, 12000, TRUE, idr, 1000);
  assert_int_equal (c->frames->len, 3);
  assert_true (g_array_index (c->keyframes, gboolean, 2));
  const guint8 *want[] = { idr->data };
  const gsize want_lens[] = { idr->len };
  assert_frame (g_ptr_array_index (c->frames, 2), want, want_lens, 1);
  assert_int_equal (media_rtp_depay_dropped (d), 2);
  collected_free (c);
}

/* A client that joins a stream between an encoder's slices (a shared
 * camera stream, an encoder that cuts each picture into slices) first
 * gets the bottom of a picture. Its first slice missing, it would decode
 * to a smear: it goes, and so does what follows until a whole keyframe,
 * in H.264 and in H.265. */
static void
test_joined_mid_picture (void **state)
{
  (void) state;
  Collected *c = collected_new ();
  g_autofree char *fmtp = h264_fmtp ();
  g_autoptr (MediaRtpDepay) d = media_rtp_depay_new (MEDIA_CODEC_H264, fmtp, collect, c, NULL);
  Sender s = { d, 40000 };
  g_autoptr (GByteArray) idr_top = make_slice (0x65, 2000, TRUE);
  g_autoptr (GByteArray) idr_bottom = make_slice (0x65, 2000, FALSE);
  g_autoptr (GByteArray) delta_top = make_slice (0x41, 300, TRUE);
  g_autoptr (GByteArray) delta_bottom = make_slice (0x41, 300, FALSE);
  /* The keyframe's second slice, in pieces: the first never came. */
  send_fu_a (&s, 0, TRUE, idr_bottom, 700);
  send_packet (&s, 3000, FALSE, delta_top->data, delta_top->len);
  send_packet (&s, 3000, TRUE, delta_bottom->data, delta_bottom->len);
  assert_int_equal (c->frames->len, 0);
  assert_int_equal (media_rtp_depay_dropped (d), 2);
  /* The next whole keyframe, both slices, comes through. */
  send_fu_a (&s, 6000, FALSE, idr_top, 700);
  send_fu_a (&s, 6000, TRUE, idr_bottom, 700);
  assert_int_equal (c->frames->len, 1);
  assert_true (g_array_index (c->keyframes, gboolean, 0));
  const guint8 *want[] = { idr_top->data, idr_bottom->data };
  const gsize want_lens[] = { idr_top->len, idr_bottom->len };
  assert_frame (g_ptr_array_index (c->frames, 0), want, want_lens, 2);

  /* H.265: an IDR_N_LP slice segment that is not its picture's first. */
  Collected *c5 = collected_new ();
  g_autoptr (MediaRtpDepay) d5 = media_rtp_depay_new (MEDIA_CODEC_H265, h265_fmtp, collect, c5,
                                                      NULL);
  Sender s5 = { d5, 9 };
  static const guint8 later[] = { 20 << 1, 1, 0x12, 0x34 }, first[] = { 20 << 1, 1, 0x92, 0x34 };
  send_packet (&s5, 0, TRUE, later, sizeof later);
  assert_int_equal (c5->frames->len, 0);
  send_packet (&s5, 3000, TRUE, first, sizeof first);
  assert_int_equal (c5->frames->len, 1);
  assert_true (g_array_index (c5->keyframes, gboolean, 0));
  assert_int_equal (media_rtp_depay_dropped (d5), 1);
  collected_free (c5);
  collected_free (c);
}

/* Padding and header extensions are stepped over; a frame larger than the
 * limit is dropped rather than gathered without bound. */
static void
test_h264_padding_extension_and_limit (void **state)
{
  (void) state;
  Collected *c = collected_new ();
  g_autofree char *fmtp = h264_fmtp ();
  g_autoptr (MediaRtpDepay) d = media_rtp_depay_new (MEDIA_CODEC_H264, fmtp, collect, c, NULL);
  static const guint8 idr[] = { 0x65, 0x91, 0x22, 0x33 };
  guint8 p[12 + 8 + sizeof idr + 3] = { 0xb0, 0x80 | 96, 0, 1 }; /* P and X set */
  edge_put_be32 (p + 4, 500);
  p[12] = 0xbe;
  p[13] = 0xde;
  p[15] = 1; /* one 32-bit word of extension */
  memcpy (p + 20, idr, sizeof idr);
  p[sizeof p - 1] = 3; /* three bytes of padding */
  media_rtp_depay_push (d, p, sizeof p);
  assert_int_equal (c->frames->len, 1);
  const guint8 *want[] = { idr };
  const gsize want_lens[] = { sizeof idr };
  assert_frame (g_ptr_array_index (c->frames, 0), want, want_lens, 1);

  Sender s = { d, 2 };
  guint8 piece[1402];
  memset (piece, 0x5a, sizeof piece);
  piece[0] = 0x7c;
  piece[1] = 0x80 | 5;
  send_packet (&s, 1000, FALSE, piece, sizeof piece);
  piece[1] = 5;
  for (guint i = 0; i < MEDIA_RTP_FRAME_MAX_BYTES / 1400 + 10; i++)
    send_packet (&s, 1000, FALSE, piece, sizeof piece);
  piece[1] = 0x40 | 5;
  send_packet (&s, 1000, TRUE, piece, sizeof piece);
  assert_int_equal (c->frames->len, 1);
  assert_int_equal (media_rtp_depay_dropped (d), 1);
  collected_free (c);
}

static void
test_refused_modes (void **state)
{
  (void) state;
  g_autoptr (GError) error = NULL;
  assert_null (media_rtp_depay_new (MEDIA_CODEC_H264, "packetization-mode=2", collect, NULL,
                                    &error));
  assert_non_null (strstr (error->message, "interleaved"));
  g_clear_error (&error);
  assert_null (media_rtp_depay_new (MEDIA_CODEC_H265, "sprop-max-don-diff=2", collect, NULL,
                                    &error));
  assert_non_null (strstr (error->message, "decoding order"));
}

static void
test_h265 (void **state)
{
  (void) state;
  Collected *c = collected_new ();
  g_autoptr (MediaRtpDepay) d = media_rtp_depay_new (MEDIA_CODEC_H265, h265_fmtp, collect, c,
                                                     NULL);
  assert_non_null (d);
  Sender s = { d, 1 };
  /* An IDR_W_RADL slice (type 19) in fragmentation units, then an
   * aggregation packet of two TRAIL_R slices (type 1). */
  GByteArray *idr = g_byte_array_new ();
  static const guint8 idr_header[2] = { 19 << 1, 1 };
  g_byte_array_append (idr, idr_header, 2);
  for (guint i = 0; i < 2500; i++) {
    guint8 b = (guint8) (i == 0 ? 0x80 : i * 7); /* the picture's first slice */
    g_byte_array_append (idr, &b, 1);
  }
  for (gsize at = 2; at < idr->len; at += 1000) {
    gsize n = MIN (1000, idr->len - at);
    guint8 buf[1003] = { 49 << 1, 1, (guint8) ((at == 2 ? 0x80 : 0) |
                                               (at + n == idr->len ? 0x40 : 0) | 19) };
    memcpy (buf + 3, idr->data + at, n);
    send_packet (&s, 90000, at + n == idr->len, buf, n + 3);
  }
  static const guint8 t1[] = { 1 << 1, 1, 0xaa, 0xbb }, t2[] = { 1 << 1, 1, 0x4c };
  guint8 ap[2 + 2 + sizeof t1 + 2 + sizeof t2] = { 48 << 1, 1, 0, sizeof t1 };
  memcpy (ap + 4, t1, sizeof t1);
  ap[4 + sizeof t1 + 1] = sizeof t2;
  memcpy (ap + 6 + sizeof t1, t2, sizeof t2);
  send_packet (&s, 93000, TRUE, ap, sizeof ap);

  assert_int_equal (c->frames->len, 2);
  const guint8 *want1[] = { idr->data };
  const gsize want1_lens[] = { idr->len };
  assert_frame (g_ptr_array_index (c->frames, 0), want1, want1_lens, 1);
  assert_true (g_array_index (c->keyframes, gboolean, 0));
  const guint8 *want2[] = { t1, t2 };
  const gsize want2_lens[] = { sizeof t1, sizeof t2 };
  assert_frame (g_ptr_array_index (c->frames, 1), want2, want2_lens, 2);
  assert_false (g_array_index (c->keyframes, gboolean, 1));

  /* hvcC as h265parse writes it for the same stream: version 1, the general
   * profile_tier_level (emulation prevention bytes removed), 4:2:0, 8 bits,
   * one temporal layer, nested, 4-byte lengths; then VPS, SPS, PPS. */
  assert_int_equal (c->codec, MEDIA_CODEC_H265);
  assert_int_equal (c->width, 640);
  assert_int_equal (c->height, 360);
  gsize len;
  const guint8 *hvcc = g_bytes_get_data (c->config, &len);
  static const guint8 head[23] = { 0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00,
                                   0x00, 0x00, 0x00, 0x00, 0x3f, 0xf0, 0x00, 0xfc,
                                   0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03 };
  assert_true (len > sizeof head);
  assert_memory_equal (hvcc, head, sizeof head);
  gsize at = sizeof head;
  static const guint8 types[] = { 32, 33, 34 };
  for (guint k = 0; k < 3; k++) {
    assert_int_equal (hvcc[at] & 0x3f, types[k]);
    assert_int_equal (edge_get_be16 (hvcc + at + 1), 1);
    at += 5 + edge_get_be16 (hvcc + at + 3);
  }
  assert_int_equal (at, len);
  g_byte_array_unref (idr);
  collected_free (c);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_h264_track_from_sdp),
    cmocka_unit_test (test_h264_packets),
    cmocka_unit_test (test_h264_loss),
    cmocka_unit_test (test_joined_mid_picture),
    cmocka_unit_test (test_h264_padding_extension_and_limit),
    cmocka_unit_test (test_refused_modes),
    cmocka_unit_test (test_h265),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
