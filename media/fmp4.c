/* fmp4.c: the boxes of one video track (ISO/IEC 14496-12 and -15).
 *
 * Why by hand: GStreamer 1.22's muxers cut fragments by time, not at
 * keyframes (mp4mux fragment-duration), or hang at EOS (splitmuxsink); the
 * camera owns where a fragment starts, so it writes the boxes itself.
 *
 * Init segment (one per codec configuration):
 *
 *   ftyp  iso6, compatible iso6 cmfc avc1|hvc1 mp41
 *   moov
 *     mvhd            timescale 1000, duration 0, next track 2
 *     trak
 *       tkhd          track 1, enabled|in-movie, width x height
 *       mdia
 *         mdhd        timescale 90000, language und
 *         hdlr        vide
 *         minf
 *           vmhd
 *           dinf/dref url (self-contained)
 *           stbl      stsd(avc1{avcC} | hvc1{hvcC}), empty stts stsc stsz stco
 *     mvex/trex       track 1, sample description 1
 *
 * Fragment (each starts on a keyframe):
 *
 *   moof
 *     mfhd            sequence number
 *     traf
 *       tfhd          track 1, default-base-is-moof
 *       tfdt v1       64-bit decode time of the first sample
 *       trun v1       data offset, then per sample: duration, size, flags,
 *                     signed composition offset
 *   mdat              the samples, length-prefixed NAL units
 *
 * A clip (media_mp4_clip) is the same track laid out progressively: moov
 * with stts/ctts/stss/stsc/stsz/co64 built from the fragments' runs, then
 * one mdat holding every fragment's samples in order.
 */
#include "fmp4.h"

#include "edge-core.h"

#include <string.h>

G_DEFINE_QUARK (media-fmp4-error-quark, media_fmp4_error)

/* Sample flags (14496-12 8.8.3.1): a sync sample depends on nothing; any
 * other sample depends on others and is not a sync sample. */
#define SAMPLE_FLAGS_KEY 0x02000000u
#define SAMPLE_FLAGS_DELTA 0x01010000u
#define SAMPLE_FLAG_NON_SYNC 0x00010000u

#define TRUN_DATA_OFFSET 0x000001u
#define TRUN_FIRST_SAMPLE_FLAGS 0x000004u
#define TRUN_DURATION 0x000100u
#define TRUN_SIZE 0x000200u
#define TRUN_FLAGS 0x000400u
#define TRUN_CTS 0x000800u

#define TFHD_BASE_DATA_OFFSET 0x000001u
#define TFHD_SAMPLE_DESCRIPTION 0x000002u
#define TFHD_DEFAULT_DURATION 0x000008u
#define TFHD_DEFAULT_SIZE 0x000010u
#define TFHD_DEFAULT_FLAGS 0x000020u
#define TFHD_DEFAULT_BASE_IS_MOOF 0x020000u

/* ---- writing ---- */

static void
put_u16 (GByteArray *b, guint16 v)
{
  guint8 p[2] = { (guint8) (v >> 8), (guint8) v };
  g_byte_array_append (b, p, 2);
}

static void
put_u32 (GByteArray *b, guint32 v)
{
  guint8 p[4];
  edge_put_be32 (p, v);
  g_byte_array_append (b, p, 4);
}

static void
put_u64 (GByteArray *b, guint64 v)
{
  guint8 p[8];
  edge_put_be64 (p, v);
  g_byte_array_append (b, p, 8);
}

static void
put_zeros (GByteArray *b, guint n)
{
  static const guint8 zeros[64];
  g_assert (n <= sizeof zeros);
  g_byte_array_append (b, zeros, n);
}

static void
put_fourcc (GByteArray *b, const char *code)
{
  g_byte_array_append (b, (const guint8 *) code, 4);
}

/* Opens a box: writes its size placeholder and type; returns the offset
 * that box_end patches. */
static guint
box_begin (GByteArray *b, const char *type)
{
  guint at = b->len;
  put_u32 (b, 0);
  put_fourcc (b, type);
  return at;
}

static guint
full_box_begin (GByteArray *b, const char *type, guint8 version, guint32 flags)
{
  guint at = box_begin (b, type);
  put_u32 (b, (guint32) version << 24 | (flags & 0xffffff));
  return at;
}

static void
box_end (GByteArray *b, guint at)
{
  edge_put_be32 (b->data + at, b->len - at);
}

static void
put_matrix (GByteArray *b)
{
  static const guint32 unity[9] = { 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000 };
  for (guint i = 0; i < 9; i++)
    put_u32 (b, unity[i]);
}

static void
put_ftyp (GByteArray *b, const char *major, const char *const *compatible)
{
  guint box = box_begin (b, "ftyp");
  put_fourcc (b, major);
  put_u32 (b, 0x200);
  for (guint i = 0; compatible[i]; i++)
    put_fourcc (b, compatible[i]);
  box_end (b, box);
}

static void
put_mvhd (GByteArray *b, guint32 duration_ms)
{
  guint box = full_box_begin (b, "mvhd", 0, 0);
  put_u32 (b, 0);    /* creation time */
  put_u32 (b, 0);    /* modification time */
  put_u32 (b, 1000); /* timescale */
  put_u32 (b, duration_ms);
  put_u32 (b, 0x00010000); /* rate 1.0 */
  put_u16 (b, 0x0100);     /* volume 1.0 */
  put_zeros (b, 10);
  put_matrix (b);
  put_zeros (b, 24); /* pre_defined */
  put_u32 (b, 2);    /* next track id */
  box_end (b, box);
}

static void
put_tkhd (GByteArray *b, const MediaTrack *track, guint32 duration_ms)
{
  guint box = full_box_begin (b, "tkhd", 0, 0x3); /* enabled, in movie */
  put_u32 (b, 0);
  put_u32 (b, 0);
  put_u32 (b, 1); /* track id */
  put_u32 (b, 0);
  put_u32 (b, duration_ms);
  put_zeros (b, 8);
  put_u16 (b, 0); /* layer */
  put_u16 (b, 0); /* alternate group */
  put_u16 (b, 0); /* volume: video */
  put_u16 (b, 0);
  put_matrix (b);
  put_u32 (b, track->width << 16);
  put_u32 (b, track->height << 16);
  box_end (b, box);
}

static void
put_sample_entry (GByteArray *b, const MediaTrack *track)
{
  gboolean h265 = track->codec == MEDIA_CODEC_H265;
  guint entry = box_begin (b, h265 ? "hvc1" : "avc1");
  put_zeros (b, 6);
  put_u16 (b, 1); /* data reference index */
  put_zeros (b, 16);
  put_u16 (b, (guint16) track->width);
  put_u16 (b, (guint16) track->height);
  put_u32 (b, 0x00480000); /* 72 dpi */
  put_u32 (b, 0x00480000);
  put_u32 (b, 0);
  put_u16 (b, 1); /* frame count */
  guint8 name[32] = { 0 };
  static const char compressor[] = "edged";
  name[0] = sizeof compressor - 1;
  memcpy (name + 1, compressor, sizeof compressor - 1);
  g_byte_array_append (b, name, sizeof name);
  put_u16 (b, 0x0018); /* depth */
  put_u16 (b, 0xffff); /* pre_defined -1 */
  guint config = box_begin (b, h265 ? "hvcC" : "avcC");
  g_byte_array_append (b, track->codec_private, (guint) track->codec_private_len);
  box_end (b, config);
  box_end (b, entry);
}

static void
put_media_header (GByteArray *b, guint64 duration)
{
  guint box = full_box_begin (b, "mdhd", 1, 0);
  put_u64 (b, 0);
  put_u64 (b, 0);
  put_u32 (b, MEDIA_TIMESCALE);
  put_u64 (b, duration);
  put_u16 (b, 0x55c4); /* "und" */
  put_u16 (b, 0);
  box_end (b, box);

  box = full_box_begin (b, "hdlr", 0, 0);
  put_u32 (b, 0);
  put_fourcc (b, "vide");
  put_zeros (b, 12);
  static const char name[] = "edged video";
  g_byte_array_append (b, (const guint8 *) name, sizeof name); /* NUL included */
  box_end (b, box);
}

static void
put_video_media_info (GByteArray *b)
{
  guint box = full_box_begin (b, "vmhd", 0, 1);
  put_zeros (b, 8);
  box_end (b, box);
  guint dinf = box_begin (b, "dinf");
  guint dref = full_box_begin (b, "dref", 0, 0);
  put_u32 (b, 1);
  guint url = full_box_begin (b, "url ", 0, 1); /* media in this file */
  box_end (b, url);
  box_end (b, dref);
  box_end (b, dinf);
}

GBytes *
media_fmp4_init_segment (const MediaTrack *track)
{
  static const char *const h264_brands[] = { "iso6", "cmfc", "avc1", "mp41", NULL };
  static const char *const h265_brands[] = { "iso6", "cmfc", "hvc1", "mp41", NULL };
  GByteArray *b = g_byte_array_sized_new (1024);

  put_ftyp (b, "iso6", track->codec == MEDIA_CODEC_H265 ? h265_brands : h264_brands);
  guint moov = box_begin (b, "moov");
  put_mvhd (b, 0);
  guint trak = box_begin (b, "trak");
  put_tkhd (b, track, 0);
  guint mdia = box_begin (b, "mdia");
  put_media_header (b, 0);
  guint minf = box_begin (b, "minf");
  put_video_media_info (b);
  guint stbl = box_begin (b, "stbl");
  guint stsd = full_box_begin (b, "stsd", 0, 0);
  put_u32 (b, 1);
  put_sample_entry (b, track);
  box_end (b, stsd);
  static const char *const empty_tables[] = { "stts", "stsc", "stco" };
  for (guint i = 0; i < G_N_ELEMENTS (empty_tables); i++) {
    guint t = full_box_begin (b, empty_tables[i], 0, 0);
    put_u32 (b, 0);
    box_end (b, t);
  }
  guint stsz = full_box_begin (b, "stsz", 0, 0);
  put_u32 (b, 0);
  put_u32 (b, 0);
  box_end (b, stsz);
  box_end (b, stbl);
  box_end (b, minf);
  box_end (b, mdia);
  box_end (b, trak);
  guint mvex = box_begin (b, "mvex");
  guint trex = full_box_begin (b, "trex", 0, 0);
  put_u32 (b, 1); /* track id */
  put_u32 (b, 1); /* sample description index */
  put_u32 (b, 0);
  put_u32 (b, 0);
  put_u32 (b, 0);
  box_end (b, trex);
  box_end (b, mvex);
  box_end (b, moov);
  return g_byte_array_free_to_bytes (b);
}

GBytes *
media_fmp4_fragment (guint32 sequence, guint64 base_decode_time, const MediaSample *samples,
                     guint n_samples, const guint8 *data, gsize data_len)
{
  GByteArray *b = g_byte_array_sized_new (256 + n_samples * 16 + (guint) data_len);
  guint moof = box_begin (b, "moof");
  guint mfhd = full_box_begin (b, "mfhd", 0, 0);
  put_u32 (b, sequence);
  box_end (b, mfhd);
  guint traf = box_begin (b, "traf");
  guint tfhd = full_box_begin (b, "tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF);
  put_u32 (b, 1);
  box_end (b, tfhd);
  guint tfdt = full_box_begin (b, "tfdt", 1, 0);
  put_u64 (b, base_decode_time);
  box_end (b, tfdt);
  guint trun = full_box_begin (b, "trun", 1,
                               TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS | TRUN_CTS);
  put_u32 (b, n_samples);
  guint data_offset_at = b->len;
  put_u32 (b, 0);
  for (guint i = 0; i < n_samples; i++) {
    put_u32 (b, samples[i].duration);
    put_u32 (b, samples[i].size);
    put_u32 (b, samples[i].keyframe ? SAMPLE_FLAGS_KEY : SAMPLE_FLAGS_DELTA);
    put_u32 (b, (guint32) samples[i].cts_offset);
  }
  box_end (b, trun);
  box_end (b, traf);
  box_end (b, moof);
  /* default-base-is-moof: the offset counts from the moof's first byte. */
  edge_put_be32 (b->data + data_offset_at, b->len - moof + 8);
  put_u32 (b, (guint32) (8 + data_len));
  put_fourcc (b, "mdat");
  g_byte_array_append (b, data, (guint) data_len);
  return g_byte_array_free_to_bytes (b);
}

/* ---- reading ---- */

typedef struct {
  const guint8 *p, *end;
} Cursor;

static gboolean
cursor_u32 (Cursor *c, guint32 *ret)
{
  if (c->end - c->p < 4)
    return FALSE;
  *ret = edge_get_be32 (c->p);
  c->p += 4;
  return TRUE;
}

static gboolean
cursor_u64 (Cursor *c, guint64 *ret)
{
  if (c->end - c->p < 8)
    return FALSE;
  *ret = edge_get_be64 (c->p);
  c->p += 8;
  return TRUE;
}

/* Reads the box header at @c: type and the box's whole extent. 64-bit
 * sizes are honoured; size 0 ("to the end") is taken as the rest. */
static gboolean
cursor_box (Cursor *c, char ret_type[5], Cursor *ret_body, const guint8 **ret_start)
{
  const guint8 *start = c->p;
  guint32 size32;
  guint64 size;
  if (!cursor_u32 (c, &size32) || c->end - c->p < 4)
    return FALSE;
  memcpy (ret_type, c->p, 4);
  ret_type[4] = '\0';
  c->p += 4;
  size = size32;
  if (size32 == 1 && !cursor_u64 (c, &size))
    return FALSE;
  if (size32 == 0)
    size = (guint64) (c->end - start);
  guint64 header = (guint64) (c->p - start);
  if (size < header || size > (guint64) (c->end - start))
    return FALSE;
  ret_body->p = c->p;
  ret_body->end = start + size;
  c->p = start + size;
  if (ret_start)
    *ret_start = start;
  return TRUE;
}

gssize
media_fmp4_find_box (const guint8 *data, gsize len, const char *path, gsize *ret_size)
{
  g_auto (GStrv) parts = g_strsplit (path, "/", 0);
  Cursor c = { data, data + len };
  const guint8 *start = NULL;
  for (guint depth = 0; parts[depth]; depth++) {
    gboolean found = FALSE;
    Cursor body;
    char type[5];
    if (strlen (parts[depth]) != 4)
      return -1;
    while (c.p < c.end) {
      if (!cursor_box (&c, type, &body, &start))
        return -1;
      if (memcmp (type, parts[depth], 4) == 0) {
        found = TRUE;
        break;
      }
    }
    if (!found)
      return -1;
    if (parts[depth + 1] == NULL) {
      *ret_size = (gsize) (body.end - start);
      return start - data;
    }
    c = body;
  }
  return -1;
}

static gboolean
format_error (GError **error, const char *what)
{
  g_set_error (error, MEDIA_FMP4_ERROR, MEDIA_FMP4_ERROR_FORMAT, "fragment: %s", what);
  return FALSE;
}

typedef struct {
  guint32 flags;
  guint64 base_data_offset;
  guint32 default_duration, default_size, default_flags;
} TrackFragmentHeader;

static gboolean
parse_tfhd (Cursor body, TrackFragmentHeader *h)
{
  guint32 word, track;
  if (!cursor_u32 (&body, &word) || !cursor_u32 (&body, &track))
    return FALSE;
  h->flags = word & 0xffffff;
  if ((h->flags & TFHD_BASE_DATA_OFFSET) && !cursor_u64 (&body, &h->base_data_offset))
    return FALSE;
  if (h->flags & TFHD_SAMPLE_DESCRIPTION && !cursor_u32 (&body, &word))
    return FALSE;
  if ((h->flags & TFHD_DEFAULT_DURATION) && !cursor_u32 (&body, &h->default_duration))
    return FALSE;
  if ((h->flags & TFHD_DEFAULT_SIZE) && !cursor_u32 (&body, &h->default_size))
    return FALSE;
  if ((h->flags & TFHD_DEFAULT_FLAGS) && !cursor_u32 (&body, &h->default_flags))
    return FALSE;
  return TRUE;
}

static gboolean
parse_trun (Cursor body, const TrackFragmentHeader *h, GArray *samples, gint64 *ret_data_offset,
            GError **error)
{
  guint32 word, count, first_flags = 0, value;
  gint64 data_offset = -1;
  if (!cursor_u32 (&body, &word) || !cursor_u32 (&body, &count))
    return format_error (error, "trun truncated");
  guint version = word >> 24;
  guint32 flags = word & 0xffffff;
  if (count > MEDIA_FRAGMENT_MAX_SAMPLES) {
    g_set_error (error, MEDIA_FMP4_ERROR, MEDIA_FMP4_ERROR_LIMIT,
                 "fragment: %u samples in one run (at most %u)", count,
                 MEDIA_FRAGMENT_MAX_SAMPLES);
    return FALSE;
  }
  if (flags & TRUN_DATA_OFFSET) {
    if (!cursor_u32 (&body, &value))
      return format_error (error, "trun truncated");
    data_offset = (gint32) value;
  }
  if ((flags & TRUN_FIRST_SAMPLE_FLAGS) && !cursor_u32 (&body, &first_flags))
    return format_error (error, "trun truncated");
  for (guint32 i = 0; i < count; i++) {
    MediaSample s = { .duration = h->default_duration, .size = h->default_size };
    guint32 sample_flags = h->default_flags;
    if ((flags & TRUN_DURATION) && !cursor_u32 (&body, &s.duration))
      return format_error (error, "trun truncated");
    if ((flags & TRUN_SIZE) && !cursor_u32 (&body, &s.size))
      return format_error (error, "trun truncated");
    if ((flags & TRUN_FLAGS) && !cursor_u32 (&body, &sample_flags))
      return format_error (error, "trun truncated");
    if (i == 0 && (flags & TRUN_FIRST_SAMPLE_FLAGS))
      sample_flags = first_flags;
    if (flags & TRUN_CTS) {
      if (!cursor_u32 (&body, &value))
        return format_error (error, "trun truncated");
      s.cts_offset = version == 0 ? (gint32) MIN (value, (guint32) G_MAXINT32) : (gint32) value;
    }
    s.keyframe = (sample_flags & SAMPLE_FLAG_NON_SYNC) == 0;
    g_array_append_val (samples, s);
  }
  *ret_data_offset = data_offset;
  return TRUE;
}

gboolean
media_fmp4_parse_fragment (const guint8 *data, gsize len, MediaFragmentInfo *ret_info,
                           GError **error)
{
  Cursor top = { data, data + len };
  Cursor moof = { 0 }, mdat = { 0 }, body;
  const guint8 *moof_start = NULL, *start;
  char type[5];
  gboolean have_tfdt = FALSE, have_trun = FALSE;
  TrackFragmentHeader tfhd = { 0 };
  gint64 data_offset = -1;
  guint32 sequence = 0;
  guint64 decode_time = 0;

  if (len > MEDIA_FRAGMENT_MAX_BYTES) {
    g_set_error (error, MEDIA_FMP4_ERROR, MEDIA_FMP4_ERROR_LIMIT,
                 "fragment: %" G_GSIZE_FORMAT " bytes (at most %u)", len,
                 MEDIA_FRAGMENT_MAX_BYTES);
    return FALSE;
  }
  while (top.p < top.end) {
    if (!cursor_box (&top, type, &body, &start))
      return format_error (error, "a box runs past the end");
    if (g_str_equal (type, "moof") && moof_start == NULL) {
      moof = body;
      moof_start = start;
    } else if (g_str_equal (type, "mdat") && moof_start != NULL && mdat.p == NULL) {
      mdat = body;
    }
  }
  if (moof_start == NULL || mdat.p == NULL)
    return format_error (error, "no moof followed by an mdat");

  g_autoptr (GArray) samples = g_array_new (FALSE, FALSE, sizeof (MediaSample));
  while (moof.p < moof.end) {
    if (!cursor_box (&moof, type, &body, NULL))
      return format_error (error, "a box in moof runs past its end");
    if (g_str_equal (type, "mfhd")) {
      guint32 word;
      if (!cursor_u32 (&body, &word) || !cursor_u32 (&body, &sequence))
        return format_error (error, "mfhd truncated");
    } else if (g_str_equal (type, "traf")) {
      if (have_trun)
        return format_error (error, "more than one track fragment");
      Cursor traf = body;
      while (traf.p < traf.end) {
        if (!cursor_box (&traf, type, &body, NULL))
          return format_error (error, "a box in traf runs past its end");
        if (g_str_equal (type, "tfhd")) {
          if (!parse_tfhd (body, &tfhd))
            return format_error (error, "tfhd truncated");
        } else if (g_str_equal (type, "tfdt")) {
          guint32 word, low;
          if (!cursor_u32 (&body, &word))
            return format_error (error, "tfdt truncated");
          if (word >> 24 == 1) {
            if (!cursor_u64 (&body, &decode_time))
              return format_error (error, "tfdt truncated");
          } else {
            if (!cursor_u32 (&body, &low))
              return format_error (error, "tfdt truncated");
            decode_time = low;
          }
          have_tfdt = TRUE;
        } else if (g_str_equal (type, "trun")) {
          if (have_trun)
            return format_error (error, "more than one track run");
          if (!parse_trun (body, &tfhd, samples, &data_offset, error))
            return FALSE;
          have_trun = TRUE;
        }
      }
    }
  }
  if (!have_trun || !have_tfdt)
    return format_error (error, "no tfdt or no trun");

  /* Where the run's bytes start: relative to the moof (default-base-is-moof,
   * or no base given), or to an explicit base offset in the file, which for
   * a fragment read on its own is its first byte. */
  guint64 first;
  if (tfhd.flags & TFHD_BASE_DATA_OFFSET)
    first = tfhd.base_data_offset;
  else
    first = (guint64) (moof_start - data);
  if (data_offset >= 0)
    first += (guint64) data_offset;
  else
    first = (guint64) (mdat.p - data);
  guint64 total = 0, duration = 0;
  for (guint i = 0; i < samples->len; i++) {
    total += g_array_index (samples, MediaSample, i).size;
    duration += g_array_index (samples, MediaSample, i).duration;
  }
  if (first < (guint64) (mdat.p - data) || first + total > (guint64) (mdat.end - data))
    return format_error (error, "samples lie outside the mdat");

  ret_info->sequence = sequence;
  ret_info->base_decode_time = decode_time;
  ret_info->samples = g_steal_pointer (&samples);
  ret_info->data_offset = (gsize) first;
  ret_info->duration = duration;
  return TRUE;
}

void
media_fragment_info_clear (MediaFragmentInfo *info)
{
  g_clear_pointer (&info->samples, g_array_unref);
}

/* ---- progressive clips ---- */

typedef struct {
  MediaFragmentInfo info;
  GBytes *bytes;
} ClipPart;

/* Writes the moov of a clip; @mdat_data_start is where the first sample
 * will be, so chunk offsets come out right once the moov's size is known. */
static void
put_clip_moov (GByteArray *b, const MediaTrack *track, const guint8 *stsd, gsize stsd_len,
               const ClipPart *parts, guint n_parts, guint64 mdat_data_start)
{
  guint64 duration = 0;
  guint n_samples = 0;
  gboolean any_cts = FALSE;
  for (guint i = 0; i < n_parts; i++) {
    n_samples += parts[i].info.samples->len;
    for (guint j = 0; j < parts[i].info.samples->len; j++)
      any_cts |= g_array_index (parts[i].info.samples, MediaSample, j).cts_offset != 0;
  }
  if (n_parts > 0)
    duration = parts[n_parts - 1].info.base_decode_time + parts[n_parts - 1].info.duration -
               parts[0].info.base_decode_time;
  guint32 duration_ms = (guint32) MIN (duration / (MEDIA_TIMESCALE / 1000), G_MAXUINT32);

  guint moov = box_begin (b, "moov");
  put_mvhd (b, duration_ms);
  guint trak = box_begin (b, "trak");
  put_tkhd (b, track, duration_ms);
  guint mdia = box_begin (b, "mdia");
  put_media_header (b, duration);
  guint minf = box_begin (b, "minf");
  put_video_media_info (b);
  guint stbl = box_begin (b, "stbl");
  g_byte_array_append (b, stsd, (guint) stsd_len);

  /* stts: run-length sample durations. The last sample of a fragment lasts
   * until the next fragment starts, so that gaps keep their length. */
  guint stts = full_box_begin (b, "stts", 0, 0);
  guint count_at = b->len;
  guint32 runs = 0, run_count = 0, run_delta = 0;
  put_u32 (b, 0);
  for (guint i = 0; i < n_parts; i++) {
    GArray *s = parts[i].info.samples;
    for (guint j = 0; j < s->len; j++) {
      guint32 delta = g_array_index (s, MediaSample, j).duration;
      if (j + 1 == s->len && i + 1 < n_parts) {
        guint64 next = parts[i + 1].info.base_decode_time;
        guint64 here = parts[i].info.base_decode_time + parts[i].info.duration - delta;
        if (next > here)
          delta = (guint32) MIN (next - here, G_MAXUINT32);
      }
      if (run_count > 0 && delta == run_delta) {
        run_count++;
        continue;
      }
      if (run_count > 0) {
        put_u32 (b, run_count);
        put_u32 (b, run_delta);
        runs++;
      }
      run_count = 1;
      run_delta = delta;
    }
  }
  if (run_count > 0) {
    put_u32 (b, run_count);
    put_u32 (b, run_delta);
    runs++;
  }
  edge_put_be32 (b->data + count_at, runs);
  box_end (b, stts);

  if (any_cts) {
    guint ctts = full_box_begin (b, "ctts", 1, 0);
    put_u32 (b, n_samples);
    for (guint i = 0; i < n_parts; i++)
      for (guint j = 0; j < parts[i].info.samples->len; j++) {
        put_u32 (b, 1);
        put_u32 (b, (guint32) g_array_index (parts[i].info.samples, MediaSample, j).cts_offset);
      }
    box_end (b, ctts);
  }

  guint stss = full_box_begin (b, "stss", 0, 0);
  count_at = b->len;
  put_u32 (b, 0);
  guint32 n_sync = 0, number = 1;
  for (guint i = 0; i < n_parts; i++)
    for (guint j = 0; j < parts[i].info.samples->len; j++, number++)
      if (g_array_index (parts[i].info.samples, MediaSample, j).keyframe) {
        put_u32 (b, number);
        n_sync++;
      }
  edge_put_be32 (b->data + count_at, n_sync);
  box_end (b, stss);

  /* One chunk per fragment. */
  guint stsc = full_box_begin (b, "stsc", 0, 0);
  count_at = b->len;
  put_u32 (b, 0);
  guint32 entries = 0, last_per_chunk = G_MAXUINT32;
  for (guint i = 0; i < n_parts; i++) {
    guint32 per_chunk = parts[i].info.samples->len;
    if (per_chunk == last_per_chunk)
      continue;
    put_u32 (b, i + 1);
    put_u32 (b, per_chunk);
    put_u32 (b, 1);
    entries++;
    last_per_chunk = per_chunk;
  }
  edge_put_be32 (b->data + count_at, entries);
  box_end (b, stsc);

  guint stsz = full_box_begin (b, "stsz", 0, 0);
  put_u32 (b, 0);
  put_u32 (b, n_samples);
  for (guint i = 0; i < n_parts; i++)
    for (guint j = 0; j < parts[i].info.samples->len; j++)
      put_u32 (b, g_array_index (parts[i].info.samples, MediaSample, j).size);
  box_end (b, stsz);

  guint co64 = full_box_begin (b, "co64", 0, 0);
  put_u32 (b, n_parts);
  guint64 offset = mdat_data_start;
  for (guint i = 0; i < n_parts; i++) {
    put_u64 (b, offset);
    for (guint j = 0; j < parts[i].info.samples->len; j++)
      offset += g_array_index (parts[i].info.samples, MediaSample, j).size;
  }
  box_end (b, co64);

  box_end (b, stbl);
  box_end (b, minf);
  box_end (b, mdia);
  box_end (b, trak);
  box_end (b, moov);
}

/* stsd: 16 bytes of box header and entry count; the sample entry: an 8-byte
 * header and 78 bytes of visual fields (width and height at 24 and 26 of
 * them), then the avcC / hvcC box. */
#define STSD_ENTRY 16
#define ENTRY_CONFIG 86

gboolean
media_fmp4_read_init (const guint8 *init, gsize len, MediaTrack *ret_track, gsize *ret_stsd_at,
                      gsize *ret_stsd_len, GError **error)
{
  gsize size = 0;
  gssize at = media_fmp4_find_box (init, len, "moov/trak/mdia/minf/stbl/stsd", &size);
  if (at < 0 || size < STSD_ENTRY + ENTRY_CONFIG + 8)
    return format_error (error, "the init segment has no video sample description");
  const guint8 *entry = init + at + STSD_ENTRY;
  const guint8 *config = entry + ENTRY_CONFIG;
  guint32 config_size = edge_get_be32 (config);
  if (config_size < 8 || STSD_ENTRY + ENTRY_CONFIG + (gsize) config_size > size)
    return format_error (error, "the init segment's codec configuration runs past its box");
  MediaTrack track = {
    .codec = memcmp (entry + 4, "hvc1", 4) == 0 || memcmp (entry + 4, "hev1", 4) == 0
                 ? MEDIA_CODEC_H265
                 : MEDIA_CODEC_H264,
    .width = edge_get_be16 (entry + 32),
    .height = edge_get_be16 (entry + 34),
    .codec_private = config + 8,
    .codec_private_len = config_size - 8,
  };
  *ret_track = track;
  if (ret_stsd_at)
    *ret_stsd_at = (gsize) at;
  if (ret_stsd_len)
    *ret_stsd_len = size;
  return TRUE;
}

GBytes *
media_mp4_clip (GBytes *init, GBytes *const *fragments, guint n_fragments, GError **error)
{
  static const char *const brands[] = { "isom", "iso2", "avc1", "mp41", NULL };
  gsize init_len, stsd_at, stsd_len;
  const guint8 *init_data = g_bytes_get_data (init, &init_len);
  MediaTrack track = { 0 };
  g_autofree ClipPart *parts = g_new0 (ClipPart, MAX (n_fragments, 1));
  GByteArray *b = NULL;
  guint parsed = 0;
  guint64 media_bytes = 0;

  if (!media_fmp4_read_init (init_data, init_len, &track, &stsd_at, &stsd_len, error))
    return NULL;
  for (; parsed < n_fragments; parsed++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (fragments[parsed], &len);
    parts[parsed].bytes = fragments[parsed];
    if (!media_fmp4_parse_fragment (data, len, &parts[parsed].info, error))
      goto out;
    for (guint j = 0; j < parts[parsed].info.samples->len; j++)
      media_bytes += g_array_index (parts[parsed].info.samples, MediaSample, j).size;
  }

  /* The moov's size does not depend on the offsets in it: write it once to
   * learn where the mdat starts, then again with the right offsets. */
  b = g_byte_array_new ();
  put_ftyp (b, "isom", brands);
  guint moov_at = b->len;
  put_clip_moov (b, &track, init_data + stsd_at, stsd_len, parts, n_fragments, 0);
  guint64 header = (media_bytes + 8 > G_MAXUINT32) ? 16 : 8;
  guint64 data_start = b->len + header;
  g_byte_array_set_size (b, moov_at);
  put_clip_moov (b, &track, init_data + stsd_at, stsd_len, parts, n_fragments, data_start);
  if (header == 16) {
    put_u32 (b, 1);
    put_fourcc (b, "mdat");
    put_u64 (b, media_bytes + 16);
  } else {
    put_u32 (b, (guint32) (media_bytes + 8));
    put_fourcc (b, "mdat");
  }
  for (guint i = 0; i < n_fragments; i++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (parts[i].bytes, &len);
    guint64 run = 0;
    for (guint j = 0; j < parts[i].info.samples->len; j++)
      run += g_array_index (parts[i].info.samples, MediaSample, j).size;
    g_byte_array_append (b, data + parts[i].info.data_offset, (guint) run);
  }

out:
  for (guint i = 0; i < parsed; i++)
    media_fragment_info_clear (&parts[i].info);
  if (parsed < n_fragments) {
    if (b)
      g_byte_array_unref (b);
    return NULL;
  }
  return g_byte_array_free_to_bytes (b);
}
