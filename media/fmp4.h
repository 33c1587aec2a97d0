/* fmp4.h: ISO BMFF boxes for one H.264 or H.265 video track, written and
 * read without any I/O (docs/internals/media.md).
 *
 * Writes the init segment (ftyp + moov with an empty sample table and mvex),
 * fragments (moof + mdat, one traf, one trun with every per-sample field),
 * and a progressive MP4 (ftyp + moov with a full sample table + mdat) from an
 * init segment and fragments, for clips. Reads fragments back into their
 * samples. All of it is pure: bytes in, bytes or structs out, so the fuzzer
 * and the unit tests drive it directly.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define MEDIA_FMP4_ERROR (media_fmp4_error_quark ())
GQuark media_fmp4_error_quark (void);
typedef enum {
  MEDIA_FMP4_ERROR_FORMAT, /* not the boxes expected, or lengths that do not add up */
  MEDIA_FMP4_ERROR_LIMIT,  /* more samples or bytes than the limits below */
} MediaFmp4Error;

/* The track's time base: 90 kHz, as RTP video uses. */
#define MEDIA_TIMESCALE 90000
/* Samples one fragment may hold (10 s at 240 fps, far above a 2 s fragment). */
#define MEDIA_FRAGMENT_MAX_SAMPLES 2400
/* Largest fragment read or written. */
#define MEDIA_FRAGMENT_MAX_BYTES (64u * 1024 * 1024)
/* Largest codec private data (avcC / hvcC) accepted. */
#define MEDIA_CODEC_PRIVATE_MAX_BYTES (64u * 1024)

typedef enum {
  MEDIA_CODEC_H264,
  MEDIA_CODEC_H265,
} MediaCodec;

/* What the init segment describes. */
typedef struct {
  MediaCodec codec;
  guint width, height;
  const guint8 *codec_private; /* avcC or hvcC payload (borrowed) */
  gsize codec_private_len;
} MediaTrack;

/* One access unit as a fragment records it. */
typedef struct {
  guint32 size;
  guint32 duration;   /* MEDIA_TIMESCALE units */
  gint32 cts_offset;  /* presentation minus decode time */
  gboolean keyframe;
} MediaSample;

/* The init segment for @track. (transfer full) */
GBytes *media_fmp4_init_segment (const MediaTrack *track);

/* A fragment: moof (sequence @sequence, decode time @base_decode_time) and
 * mdat holding @data, the @n_samples samples' bytes back to back (their sizes
 * must add up to @data_len). (transfer full) */
GBytes *media_fmp4_fragment (guint32 sequence, guint64 base_decode_time, const MediaSample *samples,
                             guint n_samples, const guint8 *data, gsize data_len);

/* A fragment read back. */
typedef struct {
  guint32 sequence;
  guint64 base_decode_time;
  GArray *samples;   /* MediaSample; (transfer full) */
  gsize data_offset; /* where the first sample's bytes start in the fragment */
  guint64 duration;  /* sum of the sample durations */
} MediaFragmentInfo;

/* Parses one moof + mdat with a single track run (what media_fmp4_fragment
 * writes, and what other muxers write for one track), checking that every
 * sample lies inside the mdat. On success fills @ret_info, whose samples the
 * caller frees with media_fragment_info_clear. */
gboolean media_fmp4_parse_fragment (const guint8 *data, gsize len, MediaFragmentInfo *ret_info,
                                    GError **error);
void media_fragment_info_clear (MediaFragmentInfo *info);

/* Finds the first box of @type (a four-character code) at the top level of
 * @data, or inside the container boxes moov/trak/mdia/minf/stbl along the way
 * when @path is given ("moov/trak/mdia/minf/stbl/stsd"). Returns the box's
 * offset (its size field) and sets *ret_size, or -1. */
gssize media_fmp4_find_box (const guint8 *data, gsize len, const char *path, gsize *ret_size);

/* Reads an init segment's video track: codec, size and the avcC / hvcC
 * payload (@ret_track->codec_private points into @init). The stsd box's
 * offset and size go to @ret_stsd_at and @ret_stsd_len (nullable). */
gboolean media_fmp4_read_init (const guint8 *init, gsize len, MediaTrack *ret_track,
                               gsize *ret_stsd_at, gsize *ret_stsd_len, GError **error);

/* A progressive (not fragmented) MP4 holding the @n_fragments fragments in
 * order, played against @init: one chunk per fragment, the sample table
 * rebuilt from their track runs, the moov before the mdat so that players
 * can start at once. Fragments must follow each other in decode time; a gap
 * between two is kept as a longer last sample. (transfer full) or NULL with
 * @error when a fragment or the init segment does not parse. */
GBytes *media_mp4_clip (GBytes *init, GBytes *const *fragments, guint n_fragments, GError **error);

G_END_DECLS
