/* keys.c: hash-key and sequence-number arithmetic, pure.
 *
 * Hash keys are unsigned 128-bit integers, kept as 16 big-endian bytes and
 * computed with the compiler's 128-bit integers. */
#define G_LOG_DOMAIN "stream"
/* Partition keys are hashed with OpenSSL's one-shot MD5 (), which OpenSSL
 * 3 deprecates in favour of EVP_Digest: for keys of a few bytes, EVP's
 * dispatch costs more than the hash (about 2,000 instructions a key
 * against 960), and every record put has its key hashed. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "stream.h"

#include <openssl/md5.h>

G_DEFINE_QUARK (stream-error-quark, stream_error)

__extension__ typedef unsigned __int128 u128;

#define SEQUENCE_SHIFT 80

static u128
to_u128 (const guint8 b[16])
{
  u128 v = 0;
  for (int i = 0; i < 16; i++)
    v = v << 8 | b[i];
  return v;
}

static void
from_u128 (u128 v, guint8 b[16])
{
  for (int i = 15; i >= 0; i--) {
    b[i] = (guint8) v;
    v >>= 8;
  }
}

/* Decimal digits of @v into @out (room for 40), NUL-terminated; returns
 * the length. Works in 19-digit chunks so that only the first two steps
 * divide 128-bit numbers. */
/* "00" to "99": the digits of a number two at a time. */
static const char digit_pairs[] =
    "0001020304050607080910111213141516171819"
    "2021222324252627282930313233343536373839"
    "4041424344454647484950515253545556575859"
    "6061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Writes @p's decimal digits to end just before @end, at least @width of
 * them (zeros in front); returns where they begin. */
static char *
digits_before (guint64 p, char *end, int width)
{
  char *q = end;
  while (p >= 100) {
    q -= 2;
    memcpy (q, digit_pairs + (p % 100) * 2, 2);
    p /= 100;
  }
  if (p >= 10) {
    q -= 2;
    memcpy (q, digit_pairs + p * 2, 2);
  } else {
    *--q = (char) ('0' + p);
  }
  while (end - q < width)
    *--q = '0';
  return q;
}

static gsize
format_u128_to (u128 v, char out[40])
{
  /* In chunks of 19 digits, least significant first: one 128-bit
   * division each, the digits then in 64 bits, two at a time. */
  const guint64 chunk = 10000000000000000000ull; /* 10^19 */
  char text[40];
  char *p = text + sizeof text;
  for (;;) {
    u128 q = v / chunk;
    guint64 part = (guint64) (v - q * chunk);
    if (q == 0) {
      p = digits_before (part, p, 1);
      break;
    }
    p = digits_before (part, p, 19);
    v = q;
  }
  gsize len = (gsize) (text + sizeof text - p);
  memcpy (out, p, len);
  out[len] = '\0';
  return len;
}

static char *
format_u128 (u128 v)
{
  char digits[40];
  gsize len = format_u128_to (v, digits);
  return g_strndup (digits, len);
}

static gboolean
parse_u128 (const char *text, u128 *ret)
{
  u128 v = 0;
  const u128 max = ~(u128) 0;
  if (text == NULL || text[0] == '\0' || strlen (text) > 39)
    return FALSE;
  for (const char *p = text; *p; p++) {
    if (!g_ascii_isdigit (*p))
      return FALSE;
    unsigned d = (unsigned) (*p - '0');
    if (v > (max - d) / 10)
      return FALSE;
    v = v * 10 + d;
  }
  *ret = v;
  return TRUE;
}

StreamHashKey
stream_hash_key_for_partition_key (const char *key, gsize len)
{
  StreamHashKey out;
  MD5 ((const unsigned char *) key, len, out.bytes);
  return out;
}

gboolean
stream_hash_key_parse (const char *decimal, StreamHashKey *ret_key)
{
  u128 v;
  if (!parse_u128 (decimal, &v))
    return FALSE;
  from_u128 (v, ret_key->bytes);
  return TRUE;
}

char *
stream_hash_key_format (const StreamHashKey *key)
{
  return format_u128 (to_u128 (key->bytes));
}

int
stream_hash_key_compare (const StreamHashKey *a, const StreamHashKey *b)
{
  return memcmp (a->bytes, b->bytes, 16);
}

void
stream_hash_key_range (guint index, guint count, StreamHashKey *ret_start, StreamHashKey *ret_end)
{
  const u128 max = ~(u128) 0;
  /* floor(2^128 / count), computed without 2^128 itself. */
  u128 width = max / count + (max % count == count - 1 ? 1 : 0);
  u128 start = width * index;
  u128 end = index + 1 == count ? max : width * (index + 1) - 1;
  g_return_if_fail (count > 0 && index < count);
  from_u128 (start, ret_start->bytes);
  from_u128 (end, ret_end->bytes);
}

char *
stream_sequence_format (guint32 shard_ordinal, guint64 record_number)
{
  return format_u128 (((u128) shard_ordinal + 1) << SEQUENCE_SHIFT | record_number);
}

gsize
stream_sequence_format_to (guint32 shard_ordinal, guint64 record_number,
                           char ret[STREAM_SEQUENCE_MAX_LEN + 1])
{
  return format_u128_to (((u128) shard_ordinal + 1) << SEQUENCE_SHIFT | record_number, ret);
}

gboolean
stream_sequence_parse (const char *decimal, guint32 *ret_shard_ordinal, guint64 *ret_record_number)
{
  u128 v, high, low;
  if (!parse_u128 (decimal, &v))
    return FALSE;
  high = v >> SEQUENCE_SHIFT;
  low = v & (((u128) 1 << SEQUENCE_SHIFT) - 1);
  if (high == 0 || high - 1 > G_MAXUINT32 || low > G_MAXUINT64)
    return FALSE;
  if (ret_shard_ordinal)
    *ret_shard_ordinal = (guint32) (high - 1);
  if (ret_record_number)
    *ret_record_number = (guint64) low;
  return TRUE;
}

void
stream_record_free (StreamRecord *record)
{
  if (record == NULL)
    return;
  g_free (record->partition_key);
  g_clear_pointer (&record->data, g_bytes_unref);
  g_clear_pointer (&record->attributes, g_bytes_unref);
  g_free (record);
}
