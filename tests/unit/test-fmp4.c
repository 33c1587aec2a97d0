/* fMP4 boxes as the camera writes them and as clips and images read them:
 * round trips, the refusals of a malformed fragment, and clips whose sample
 * tables match the fragments they were made of. (ffprobe, gst-discoverer and
 * Chromium check the same bytes in the integration tests.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "edge-core.h"
#include "fmp4.h"

static const guint8 avcc[] = { 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04,
                               0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02, 0x68, 0xee };

static GBytes *
make_init (void)
{
  MediaTrack track = { MEDIA_CODEC_H264, 640, 360, avcc, sizeof avcc };
  return media_fmp4_init_segment (&track);
}

/* A fragment of @n samples of sizes 100, 101, ...; the first a keyframe,
 * the second with a composition offset. */
static GBytes *
make_fragment (guint32 sequence, guint64 decode_time, guint n)
{
  g_autofree MediaSample *samples = g_new0 (MediaSample, n);
  GByteArray *data = g_byte_array_new ();
  for (guint i = 0; i < n; i++) {
    samples[i].size = 100 + i;
    samples[i].duration = 6000;
    samples[i].keyframe = i == 0;
    samples[i].cts_offset = i == 1 ? 3000 : 0;
    for (guint j = 0; j < samples[i].size; j++) {
      guint8 b = (guint8) (i * 7 + j);
      g_byte_array_append (data, &b, 1);
    }
  }
  GBytes *f = media_fmp4_fragment (sequence, decode_time, samples, n, data->data, data->len);
  g_byte_array_unref (data);
  return f;
}

static void
test_init_segment (void **state)
{
  (void) state;
  g_autoptr (GBytes) init = make_init ();
  gsize len, size;
  const guint8 *d = g_bytes_get_data (init, &len);
  /* Top-level boxes tile the segment exactly. */
  gsize ftyp = edge_get_be32 (d), moov = edge_get_be32 (d + ftyp);
  assert_memory_equal (d + 4, "ftyp", 4);
  assert_memory_equal (d + ftyp + 4, "moov", 4);
  assert_int_equal (ftyp + moov, len);
  gssize at = media_fmp4_find_box (d, len, "moov/trak/mdia/minf/stbl/stsd", &size);
  assert_true (at > 0);
  assert_memory_equal (d + at + 16 + 4, "avc1", 4);
  /* The avcC payload is carried byte for byte. */
  assert_memory_equal (d + at + 16 + 86 + 4, "avcC", 4);
  assert_memory_equal (d + at + 16 + 86 + 8, avcc, sizeof avcc);
  assert_true (media_fmp4_find_box (d, len, "moov/mvex/trex", &size) > 0);
  assert_int_equal (media_fmp4_find_box (d, len, "moov/trak/edts", &size), -1);
}

static void
test_fragment_round_trip (void **state)
{
  (void) state;
  g_autoptr (GBytes) f = make_fragment (7, G_GUINT64_CONSTANT (161997210000000), 5);
  gsize len;
  const guint8 *d = g_bytes_get_data (f, &len);
  MediaFragmentInfo info = { 0 };
  g_autoptr (GError) error = NULL;
  assert_true (media_fmp4_parse_fragment (d, len, &info, &error));
  assert_int_equal (info.sequence, 7);
  assert_true (info.base_decode_time == G_GUINT64_CONSTANT (161997210000000));
  assert_int_equal (info.samples->len, 5);
  assert_int_equal (info.duration, 5 * 6000);
  gsize offset = info.data_offset;
  for (guint i = 0; i < 5; i++) {
    MediaSample *s = &g_array_index (info.samples, MediaSample, i);
    assert_int_equal (s->size, 100 + i);
    assert_int_equal (s->duration, 6000);
    assert_int_equal (s->keyframe, i == 0);
    assert_int_equal (s->cts_offset, i == 1 ? 3000 : 0);
    assert_int_equal (d[offset], (guint8) (i * 7));
    offset += s->size;
  }
  assert_int_equal (offset, len); /* the samples end the mdat */
  media_fragment_info_clear (&info);
}

static void
test_fragment_refusals (void **state)
{
  (void) state;
  g_autoptr (GBytes) f = make_fragment (1, 0, 3);
  gsize len;
  const guint8 *d = g_bytes_get_data (f, &len);
  MediaFragmentInfo info = { 0 };

  /* Every truncation is refused, never read past. */
  for (gsize cut = 0; cut < len; cut++) {
    g_autofree guint8 *copy = g_memdup2 (d, cut);
    g_autoptr (GError) error = NULL;
    assert_false (media_fmp4_parse_fragment (copy, cut, &info, &error));
    assert_non_null (error);
  }
  /* A sample size that runs past the mdat. */
  g_autofree guint8 *bad = g_memdup2 (d, len);
  gsize size;
  gssize trun = media_fmp4_find_box (bad, len, "moof/traf/trun", &size);
  assert_true (trun > 0);
  edge_put_be32 (bad + trun + 24, 0x7fffffff); /* the first sample's size */
  g_autoptr (GError) error = NULL;
  assert_false (media_fmp4_parse_fragment (bad, len, &info, &error));
  assert_true (g_error_matches (error, MEDIA_FMP4_ERROR, MEDIA_FMP4_ERROR_FORMAT));
  /* More samples than the limit. */
  g_clear_error (&error);
  memcpy (bad, d, len);
  edge_put_be32 (bad + trun + 12, MEDIA_FRAGMENT_MAX_SAMPLES + 1);
  assert_false (media_fmp4_parse_fragment (bad, len, &info, &error));
  assert_true (g_error_matches (error, MEDIA_FMP4_ERROR, MEDIA_FMP4_ERROR_LIMIT));
  /* An init segment is not a fragment. */
  g_clear_error (&error);
  g_autoptr (GBytes) init = make_init ();
  assert_false (media_fmp4_parse_fragment (g_bytes_get_data (init, NULL), g_bytes_get_size (init),
                                           &info, &error));
}

static void
test_clip (void **state)
{
  (void) state;
  g_autoptr (GBytes) init = make_init ();
  /* Two fragments with a one-second hole between them. */
  GBytes *fragments[2] = { make_fragment (1, 900000, 4), make_fragment (2, 900000 + 24000 + 90000, 3) };
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) clip = media_mp4_clip (init, fragments, 2, &error);
  assert_non_null (clip);
  gsize len, size;
  const guint8 *d = g_bytes_get_data (clip, &len);

  gssize stsz = media_fmp4_find_box (d, len, "moov/trak/mdia/minf/stbl/stsz", &size);
  assert_true (stsz > 0);
  assert_int_equal (edge_get_be32 (d + stsz + 16), 7);
  gssize stss = media_fmp4_find_box (d, len, "moov/trak/mdia/minf/stbl/stss", &size);
  assert_int_equal (edge_get_be32 (d + stss + 12), 2); /* two keyframes: samples 1 and 5 */
  assert_int_equal (edge_get_be32 (d + stss + 16), 1);
  assert_int_equal (edge_get_be32 (d + stss + 20), 5);
  /* stts: the fourth sample lasts until the second fragment starts. */
  gssize stts = media_fmp4_find_box (d, len, "moov/trak/mdia/minf/stbl/stts", &size);
  guint32 runs = edge_get_be32 (d + stts + 12);
  guint64 total = 0;
  for (guint32 i = 0; i < runs; i++)
    total += (guint64) edge_get_be32 (d + stts + 16 + i * 8) * edge_get_be32 (d + stts + 20 + i * 8);
  assert_int_equal (total, 7 * 6000 + 90000);
  /* The chunk offsets point at the samples' bytes in the mdat. */
  gssize co64 = media_fmp4_find_box (d, len, "moov/trak/mdia/minf/stbl/co64", &size);
  assert_int_equal (edge_get_be32 (d + co64 + 12), 2);
  guint64 first = edge_get_be64 (d + co64 + 16), second = edge_get_be64 (d + co64 + 24);
  assert_int_equal (d[first], 0);
  assert_int_equal (d[first + 100], 7); /* sample 2 of fragment 1 */
  assert_int_equal (second - first, 100 + 101 + 102 + 103);
  gssize mdat = media_fmp4_find_box (d, len, "mdat", &size);
  assert_int_equal (mdat + size, len);
  assert_int_equal (first, mdat + 8);
  gssize moov = media_fmp4_find_box (d, len, "moov", &size);
  assert_true (moov < mdat);
  assert_int_equal (media_fmp4_find_box (d, len, "moof", &size), -1);

  /* A broken fragment fails the clip with a reason. */
  g_clear_error (&error);
  GBytes *broken[1] = { g_bytes_new_static ("\0\0\0\x08moov", 8) };
  assert_null (media_mp4_clip (init, broken, 1, &error));
  assert_non_null (error);
  g_bytes_unref (broken[0]);
  g_bytes_unref (fragments[0]);
  g_bytes_unref (fragments[1]);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_init_segment),
    cmocka_unit_test (test_fragment_round_trip),
    cmocka_unit_test (test_fragment_refusals),
    cmocka_unit_test (test_clip),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
