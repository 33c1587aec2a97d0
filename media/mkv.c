/* mkv.c: fMP4 fragments rewritten as Matroska (media/mkv.h).
 *
 *   EBML                 DocType matroska
 *   Segment (unknown size)
 *     Info               TimecodeScale 1 ms, MuxingApp edged
 *     Tracks/TrackEntry  1, video, V_MPEG4/ISO/AVC | V_MPEGH/ISO/HEVC,
 *                        CodecPrivate = the avcC / hvcC payload, PixelWidth/Height
 *     Cluster            Timecode = the fragment's first decode time in ms
 *       SimpleBlock ...  track 1, presentation time relative to the cluster,
 *                        keyframe flag; the access unit as stored (length-
 *                        prefixed NAL units, which both formats use)
 *     Tags               AWS_KINESISVIDEO_FRAGMENT_NUMBER, _SERVER_TIMESTAMP,
 *                        _PRODUCER_TIMESTAMP (seconds, as Kinesis Video writes them)
 *     Cluster, Tags ...  one pair per fragment
 */
#include "mkv.h"

#include "edge-core.h"

#include <string.h>

#define ID_EBML 0x1A45DFA3u
#define ID_SEGMENT 0x18538067u
#define ID_INFO 0x1549A966u
#define ID_TRACKS 0x1654AE6Bu
#define ID_TRACK_ENTRY 0xAEu
#define ID_CLUSTER 0x1F43B675u
#define ID_TIMECODE 0xE7u
#define ID_SIMPLE_BLOCK 0xA3u
#define ID_TAGS 0x1254C367u
#define ID_TAG 0x7373u
#define ID_TARGETS 0x63C0u
#define ID_SIMPLE_TAG 0x67C8u
#define ID_TAG_NAME 0x45A3u
#define ID_TAG_STRING 0x4487u

static void
put_id (GByteArray *b, guint32 id)
{
  guint8 bytes[4];
  guint n = id > 0xFFFFFF ? 4 : id > 0xFFFF ? 3 : id > 0xFF ? 2 : 1;
  for (guint i = 0; i < n; i++)
    bytes[i] = (guint8) (id >> (8 * (n - 1 - i)));
  g_byte_array_append (b, bytes, n);
}

/* Sizes as 8-byte vints: one width everywhere keeps patching simple. */
static void
put_size (GByteArray *b, guint64 size)
{
  guint8 bytes[8];
  edge_put_be64 (bytes, size);
  bytes[0] = 0x01;
  g_byte_array_append (b, bytes, 8);
}

static guint
element_begin (GByteArray *b, guint32 id)
{
  put_id (b, id);
  guint at = b->len;
  put_size (b, 0);
  return at;
}

static void
element_end (GByteArray *b, guint at)
{
  guint64 size = b->len - at - 8;
  edge_put_be64 (b->data + at, size);
  b->data[at] = 0x01;
}

static void
put_uint (GByteArray *b, guint32 id, guint64 value)
{
  guint8 bytes[8];
  guint n = 1;
  while (n < 8 && (value >> (8 * n)) != 0)
    n++;
  for (guint i = 0; i < n; i++)
    bytes[i] = (guint8) (value >> (8 * (n - 1 - i)));
  put_id (b, id);
  put_size (b, n);
  g_byte_array_append (b, bytes, n);
}

static void
put_binary (GByteArray *b, guint32 id, const void *data, gsize len)
{
  put_id (b, id);
  put_size (b, len);
  g_byte_array_append (b, data, (guint) len);
}

static void
put_string (GByteArray *b, guint32 id, const char *s)
{
  put_binary (b, id, s, strlen (s));
}

static void
put_simple_tag (GByteArray *b, const char *name, const char *value)
{
  guint tag = element_begin (b, ID_SIMPLE_TAG);
  put_string (b, ID_TAG_NAME, name);
  put_string (b, ID_TAG_STRING, value);
  element_end (b, tag);
}

GBytes *
media_mkv_from_fragments (GBytes *init, GBytes *const *fragments,
                          const MediaMkvFragmentTags *tags, guint n, GError **error)
{
  MediaTrack track;
  if (!media_fmp4_read_init (g_bytes_get_data (init, NULL), g_bytes_get_size (init), &track, NULL,
                             NULL, error))
    return NULL;
  gboolean h265 = track.codec == MEDIA_CODEC_H265;

  GByteArray *b = g_byte_array_sized_new (1024);
  guint ebml = element_begin (b, ID_EBML);
  put_uint (b, 0x4286, 1);
  put_uint (b, 0x42F7, 1);
  put_uint (b, 0x42F2, 4);
  put_uint (b, 0x42F3, 8);
  put_string (b, 0x4282, "matroska");
  put_uint (b, 0x4287, 4);
  put_uint (b, 0x4285, 2);
  element_end (b, ebml);

  /* A live stream's segment: its size is "unknown" (all ones). */
  put_id (b, ID_SEGMENT);
  static const guint8 unknown[8] = { 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
  g_byte_array_append (b, unknown, sizeof unknown);

  guint info = element_begin (b, ID_INFO);
  put_uint (b, 0x2AD7B1, 1000000); /* timecodes in ms */
  put_string (b, 0x4D80, "edged");
  put_string (b, 0x5741, "edged");
  element_end (b, info);

  guint tracks = element_begin (b, ID_TRACKS);
  guint entry = element_begin (b, ID_TRACK_ENTRY);
  put_uint (b, 0xD7, 1);   /* TrackNumber */
  put_uint (b, 0x73C5, 1); /* TrackUID */
  put_uint (b, 0x83, 1);   /* TrackType: video */
  put_string (b, 0x86, h265 ? "V_MPEGH/ISO/HEVC" : "V_MPEG4/ISO/AVC");
  put_binary (b, 0x63A2, track.codec_private, track.codec_private_len);
  guint video = element_begin (b, 0xE0);
  put_uint (b, 0xB0, track.width);
  put_uint (b, 0xBA, track.height);
  element_end (b, video);
  element_end (b, entry);
  element_end (b, tracks);

  for (guint i = 0; i < n; i++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (fragments[i], &len);
    MediaFragmentInfo fi = { 0 };
    if (!media_fmp4_parse_fragment (data, len, &fi, error)) {
      g_byte_array_unref (b);
      return NULL;
    }
    guint64 cluster_ms = fi.base_decode_time / (MEDIA_TIMESCALE / 1000);
    guint cluster = element_begin (b, ID_CLUSTER);
    put_uint (b, ID_TIMECODE, cluster_ms);
    guint64 decode = fi.base_decode_time;
    gsize offset = fi.data_offset;
    for (guint j = 0; j < fi.samples->len; j++) {
      const MediaSample *s = &g_array_index (fi.samples, MediaSample, j);
      /* Times come from the fragment's boxes: a sum past gint64 is pinned,
       * not overflowed. */
      gint64 pts;
      if (__builtin_add_overflow ((gint64) decode, (gint64) s->cts_offset, &pts))
        pts = s->cts_offset < 0 ? G_MININT64 : G_MAXINT64;
      gint64 pts_ms = pts / (MEDIA_TIMESCALE / 1000);
      gint64 relative = CLAMP (pts_ms - (gint64) cluster_ms, G_MININT16, G_MAXINT16);
      guint8 head[4] = { 0x81, (guint8) ((guint16) relative >> 8), (guint8) relative,
                         s->keyframe ? 0x80 : 0x00 };
      put_id (b, ID_SIMPLE_BLOCK);
      put_size (b, sizeof head + s->size);
      g_byte_array_append (b, head, sizeof head);
      g_byte_array_append (b, data + offset, s->size);
      offset += s->size;
      decode += s->duration;
    }
    element_end (b, cluster);
    media_fragment_info_clear (&fi);

    char number[32], server[32], producer[32];
    g_snprintf (number, sizeof number, "%" G_GUINT64_FORMAT, tags[i].number);
    g_snprintf (server, sizeof server, "%.3f", tags[i].server_ms / 1000.0);
    g_snprintf (producer, sizeof producer, "%.3f", tags[i].producer_ms / 1000.0);
    guint tags_at = element_begin (b, ID_TAGS);
    guint tag = element_begin (b, ID_TAG);
    guint targets = element_begin (b, ID_TARGETS);
    element_end (b, targets);
    put_simple_tag (b, "AWS_KINESISVIDEO_FRAGMENT_NUMBER", number);
    put_simple_tag (b, "AWS_KINESISVIDEO_SERVER_TIMESTAMP", server);
    put_simple_tag (b, "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", producer);
    element_end (b, tag);
    element_end (b, tags_at);
  }
  return g_byte_array_free_to_bytes (b);
}
