/* Fuzzes the fMP4 box reader: media_fmp4_parse_fragment on any bytes, and
 * what clips and GetMediaForFragmentList do with a fragment that parses
 * (media_mp4_clip and media_mkv_from_fragments against a fixed init segment). Must refuse or succeed, never read out of
 * bounds, and a clip made must hold every sample's bytes. */
#include "edge-core.h"
#include "fmp4.h"
#include "mkv.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const guint8 avcc[] = { 0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x04,
                               0x67, 0x42, 0xc0, 0x1e, 0x01, 0x00, 0x02, 0x68, 0xce };

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static GBytes *init;
  MediaFragmentInfo info = { 0 };
  gsize box_size;

  if (init == NULL) {
    MediaTrack track = { MEDIA_CODEC_H264, 320, 240, avcc, sizeof avcc };
    init = media_fmp4_init_segment (&track);
  }
  media_fmp4_find_box (data, size, "moof/traf/trun", &box_size);
  if (!media_fmp4_parse_fragment (data, size, &info, NULL))
    return 0;
  guint64 total = 0;
  for (guint i = 0; i < info.samples->len; i++)
    total += g_array_index (info.samples, MediaSample, i).size;
  if (info.data_offset + total > size)
    __builtin_trap ();
  media_fragment_info_clear (&info);

  GBytes *fragment = g_bytes_new_static (data, size);
  GBytes *clip = media_mp4_clip (init, &fragment, 1, NULL);
  if (clip == NULL)
    __builtin_trap (); /* a fragment that parses makes a clip */
  if (g_bytes_get_size (clip) < total)
    __builtin_trap ();
  g_bytes_unref (clip);
  MediaMkvFragmentTags tags = { 1, 0, 0 };
  GBytes *mkv = media_mkv_from_fragments (init, &fragment, &tags, 1, NULL);
  if (mkv == NULL || g_bytes_get_size (mkv) < total)
    __builtin_trap ();
  g_bytes_unref (mkv);
  g_bytes_unref (fragment);
  return 0;
}
