/* kinesis-subscribe.h: SubscribeToShard, the push side of the Kinesis API
 * (private to stream/). kinesis.c checks the request; this file keeps the
 * subscription: an event stream of records as they land. */
#pragma once

#include "stream.h"

/* One AWS event stream message (application/vnd.amazon.eventstream):
 *
 *   +--------------+----------------+------------+---------+---------+-----------+
 *   | total length | headers length | prelude    | headers | payload | message   |
 *   | u32 BE       | u32 BE         | CRC32 (8B) |         |         | CRC32     |
 *   +--------------+----------------+------------+---------+---------+-----------+
 *   header: name length u8 | name | type 7 (string) | value length u16 BE | value
 *
 * with string headers :message-type ("event" or "exception"), :event-type
 * (or :exception-type) and :content-type. (transfer full) */
GBytes *kinesis_event_encode (const char *message_type, const char *type, const char *payload,
                              gsize payload_len);

/* CRC-32 (IEEE 802.3, as zlib computes it), continued from @crc (0 to start). */
guint32 kinesis_crc32 (guint32 crc, const guint8 *data, gsize len);

/* Starts a subscription on @request (already checked): answers 200 with an
 * event stream from record @from of shard @ordinal, which lasts five
 * minutes, as Kinesis's do. @lease ("consumer ARN|shard") is added to
 * @leases while it runs, so that a second subscription of one consumer to
 * one shard can be refused. The store and @leases must outlive it (see
 * kinesis_subscribe_stop_all). */
void kinesis_subscribe_start (StreamStore *store, EdgeRequest *request, const StreamInfo *info,
                              guint32 ordinal, guint64 from, GHashTable *leases,
                              const char *lease);

/* Whether a subscription under @lease may start: TRUE if there is none, or
 * if the one there started at least 5 s ago, which then ends (with a
 * ResourceInUseException event); FALSE within 5 s, as Kinesis refuses. */
gboolean kinesis_subscribe_take_over (GHashTable *leases, const char *lease);

/* The lease table kinesis_subscribe_start takes. (transfer full) */
GHashTable *kinesis_subscribe_leases_new (void);
/* Ends every subscription in @leases (at shutdown). */
void kinesis_subscribe_stop_all (GHashTable *leases);
