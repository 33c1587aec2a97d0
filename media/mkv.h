/* mkv.h: fragments as Matroska, the way Kinesis Video Streams returns media
 * (GetMediaForFragmentList). Pure: bytes in, bytes out. */
#pragma once

#include "fmp4.h"

G_BEGIN_DECLS

/* What Kinesis Video tags each fragment's cluster with. */
typedef struct {
  guint64 number;
  gint64 producer_ms;
  gint64 server_ms;
} MediaMkvFragmentTags;

/* One Matroska stream (EBML header, then a Segment of unknown size: Info,
 * Tracks, and per fragment a Cluster of SimpleBlocks followed by Tags naming
 * AWS_KINESISVIDEO_FRAGMENT_NUMBER, _SERVER_TIMESTAMP and
 * _PRODUCER_TIMESTAMP) holding @n fragments played against @init. Timecodes
 * are milliseconds: the fragments' decode times are Unix time in 90 kHz
 * units, so cluster timecodes are Unix milliseconds. (transfer full) or NULL
 * with @error when a fragment or the init segment does not parse. */
GBytes *media_mkv_from_fragments (GBytes *init, GBytes *const *fragments,
                                  const MediaMkvFragmentTags *tags, guint n, GError **error);

G_END_DECLS
