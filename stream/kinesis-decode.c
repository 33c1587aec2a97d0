/* kinesis-decode.c: see kinesis-decode.h.
 *
 * One buffer holds everything a put decodes: base64 turns four characters
 * into at most three bytes and a partition key's text (quotes included) is
 * longer than the key plus its NUL, so the body's own length is always
 * enough, even for members a peer repeats.
 */
#define G_LOG_DOMAIN "stream"

#include "kinesis-decode.h"

#include <json-glib/json-glib.h>
#include <string.h>

#if defined(__x86_64__)
#include <tmmintrin.h>
#define BASE64_SSSE3 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define BASE64_NEON 1
#endif

void
kinesis_fault_clear (KinesisFault *fault)
{
  g_clear_pointer (&fault->type, g_free);
  g_clear_pointer (&fault->message, g_free);
}

static gboolean
set_fault (KinesisFault *fault, const char *type, const char *format, ...) G_GNUC_PRINTF (3, 4);

static gboolean
set_fault (KinesisFault *fault, const char *type, const char *format, ...)
{
  va_list args;
  kinesis_fault_clear (fault);
  va_start (args, format);
  fault->message = g_strdup_vprintf (format, args);
  va_end (args);
  fault->type = g_strdup (type);
  return FALSE;
}

/* Base64 decoding tables, one per position in a quad, each value already
 * shifted into place: a quad decodes with four loads and three ORs. Bytes
 * outside the alphabet ('=', '"', '\\', anything else) carry BASE64_BAD,
 * above the 24 bits a quad can fill. */
#define BASE64_BAD 0x01000000u
static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static guint32 base64_tables[4][256];

/* Vector code for long strings where the processor has it, chosen with the
 * tables (NULL otherwise): each takes whole blocks while it can and returns
 * how much of @in it took; the scalar code does the rest. */
static gsize (*decode_blocks) (const guchar *in, gsize len, guint8 *out);
static gsize (*encode_blocks) (const guint8 *in, gsize len, char *out);

#if defined(BASE64_SSSE3) || defined(BASE64_NEON)
/* Decoding in vector registers tells the alphabet from everything else by
 * each character's two nibbles: they index two tables of bit sets whose
 * AND is zero only for the alphabet's characters. The bits stand for the
 * low nibbles outside each high nibble's characters: 0x01 "+/" (high 2),
 * 0x02 "0-9" (3), 0x04 "A-O", "a-o" (4, 6), 0x08 "P-Z", "p-z" (5, 7), 0x10
 * always (the other high nibbles). */
static const guint8 base64_lo_bits[16] = { 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                           0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a };
static const guint8 base64_hi_bits[16] = { 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08,
                                           0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10 };
/* Then the high nibble (less one for '/') says what to add to make the
 * six bits: '/' + 16 = 63, '+' + 19 = 62, '0' + 4 = 52, 'A' - 65 = 0,
 * 'a' - 71 = 26. */
static const guint8 base64_add[16] = { 0, 16, 19, 4, (guint8) -65, (guint8) -65, (guint8) -71,
                                       (guint8) -71, 0, 0, 0, 0, 0, 0, 0, 0 };
#endif

#ifdef BASE64_NEON
/* Sixty-four characters into forty-eight bytes, in vector registers, while
 * every character is in the alphabet; returns how many characters it took
 * (a multiple of sixty-four). The load spreads each quad's four characters
 * over four vectors and the store gathers three vectors' bytes back into
 * place. */
static gsize
decode_blocks_neon (const guchar *in, gsize len, guint8 *out)
{
  const uint8x16_t lut_lo = vld1q_u8 (base64_lo_bits), lut_hi = vld1q_u8 (base64_hi_bits);
  const uint8x16_t lut_add = vld1q_u8 (base64_add);
  gsize i = 0;
  for (; i + 64 <= len; i += 64) {
    uint8x16x4_t c = vld4q_u8 (in + i);
    uint8x16_t bad = vdupq_n_u8 (0), six[4];
    for (int k = 0; k < 4; k++) {
      uint8x16_t hi = vshrq_n_u8 (c.val[k], 4);
      uint8x16_t lo = vandq_u8 (c.val[k], vdupq_n_u8 (0x0f));
      bad = vorrq_u8 (bad, vandq_u8 (vqtbl1q_u8 (lut_lo, lo), vqtbl1q_u8 (lut_hi, hi)));
      uint8x16_t slash = vceqq_u8 (c.val[k], vdupq_n_u8 ('/'));
      six[k] = vaddq_u8 (c.val[k], vqtbl1q_u8 (lut_add, vaddq_u8 (hi, slash)));
    }
    if (vmaxvq_u8 (bad) != 0)
      break;
    uint8x16x3_t bytes;
    bytes.val[0] = vorrq_u8 (vshlq_n_u8 (six[0], 2), vshrq_n_u8 (six[1], 4));
    bytes.val[1] = vorrq_u8 (vshlq_n_u8 (six[1], 4), vshrq_n_u8 (six[2], 2));
    bytes.val[2] = vorrq_u8 (vshlq_n_u8 (six[2], 6), six[3]);
    vst3q_u8 (out, bytes);
    out += 48;
  }
  return i;
}
#endif

#ifdef BASE64_SSSE3
/* Sixteen characters into twelve bytes, in vector registers, while every
 * character is in the alphabet; returns how many characters it took (a
 * multiple of sixteen). Two multiply-adds and a shuffle pack the six bits
 * into bytes. The scalar loop takes over at the first block with anything
 * else in it (padding, the closing quote, an escape, a bad character). */
__attribute__ ((target ("ssse3"))) static gsize
decode_blocks_ssse3 (const guchar *in, gsize len, guint8 *out)
{
  const __m128i lut_lo = _mm_loadu_si128 ((const __m128i *) base64_lo_bits);
  const __m128i lut_hi = _mm_loadu_si128 ((const __m128i *) base64_hi_bits);
  const __m128i lut_add = _mm_loadu_si128 ((const __m128i *) base64_add);
  const __m128i nibble = _mm_set1_epi8 (0x0f);
  const __m128i zero = _mm_setzero_si128 ();
  /* The three bytes of each 32-bit lane, big end first, then nothing. */
  const __m128i pack = _mm_setr_epi8 (2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
  gsize i = 0;
  for (; i + 16 <= len; i += 16) {
    __m128i c = _mm_loadu_si128 ((const __m128i *) (in + i));
    __m128i hi = _mm_and_si128 (_mm_srli_epi32 (c, 4), nibble);
    __m128i lo = _mm_and_si128 (c, nibble);
    __m128i bad = _mm_and_si128 (_mm_shuffle_epi8 (lut_lo, lo), _mm_shuffle_epi8 (lut_hi, hi));
    if (_mm_movemask_epi8 (_mm_cmpeq_epi8 (bad, zero)) != 0xffff)
      break;
    __m128i slash = _mm_cmpeq_epi8 (c, _mm_set1_epi8 ('/'));
    __m128i bits = _mm_add_epi8 (c, _mm_shuffle_epi8 (lut_add, _mm_add_epi8 (hi, slash)));
    /* Pairs of six bits into twelve, pairs of twelve into twenty-four. */
    __m128i twelve = _mm_maddubs_epi16 (bits, _mm_set1_epi32 (0x01400140));
    __m128i lanes = _mm_madd_epi16 (twelve, _mm_set1_epi32 (0x00011000));
    __m128i bytes = _mm_shuffle_epi8 (lanes, pack);
    _mm_storel_epi64 ((__m128i *) out, bytes);
    guint32 last = (guint32) _mm_cvtsi128_si32 (_mm_srli_si128 (bytes, 8));
    memcpy (out + 8, &last, 4);
    out += 12;
  }
  return i;
}
#endif

#ifdef BASE64_SSSE3
/* Twelve bytes into sixteen characters, in vector registers, while sixteen
 * bytes can be loaded; returns how many bytes it took (a multiple of
 * twelve). Each three bytes are spread over a 32-bit lane, a multiply by a
 * power of two moves each six bits into a byte of its own, and the byte's
 * range (A-Z, a-z, 0-9, +, /) says what to add to make its character. */
__attribute__ ((target ("ssse3"))) static gsize
encode_blocks_ssse3 (const guint8 *in, gsize len, char *out)
{
  const __m128i spread = _mm_setr_epi8 (1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
  /* By range: 26-51 (0), 52-61 (1-10), 62 (11), 63 (12), 0-25 (13). */
  const __m128i lut_add = _mm_setr_epi8 (71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16,
                                         65, 0, 0);
  gsize i = 0;
  for (; i + 16 <= len; i += 12) {
    __m128i lanes = _mm_shuffle_epi8 (_mm_loadu_si128 ((const __m128i *) (in + i)), spread);
    /* Sixes 1 and 3 of each lane to the bottom of their 16 bits; 2 and 4
     * to the top of their low byte's neighbour. */
    __m128i odd = _mm_mulhi_epu16 (_mm_and_si128 (lanes, _mm_set1_epi32 (0x0fc0fc00)),
                                   _mm_set1_epi32 (0x04000040));
    __m128i even = _mm_mullo_epi16 (_mm_and_si128 (lanes, _mm_set1_epi32 (0x003f03f0)),
                                    _mm_set1_epi32 (0x01000010));
    __m128i sixes = _mm_or_si128 (odd, even);
    __m128i range = _mm_subs_epu8 (sixes, _mm_set1_epi8 (51));
    __m128i upper = _mm_cmpgt_epi8 (_mm_set1_epi8 (26), sixes);
    range = _mm_or_si128 (range, _mm_and_si128 (upper, _mm_set1_epi8 (13)));
    __m128i chars = _mm_add_epi8 (sixes, _mm_shuffle_epi8 (lut_add, range));
    _mm_storeu_si128 ((__m128i *) out, chars);
    out += 16;
  }
  return i;
}
#endif

#ifdef BASE64_NEON
/* Forty-eight bytes into sixty-four characters, in vector registers: the
 * load spreads each three bytes over three vectors, shifts cut them into
 * four sixes, a table lookup makes the characters and the store
 * interleaves them. Returns how many bytes it took (a multiple of 48). */
static gsize
encode_blocks_neon (const guint8 *in, gsize len, char *out)
{
  const uint8x16x4_t alphabet = vld1q_u8_x4 ((const guint8 *) base64_alphabet);
  const uint8x16_t six_bits = vdupq_n_u8 (63);
  gsize i = 0;
  for (; i + 48 <= len; i += 48) {
    uint8x16x3_t b = vld3q_u8 (in + i);
    uint8x16x4_t chars;
    chars.val[0] = vshrq_n_u8 (b.val[0], 2);
    chars.val[1] = vorrq_u8 (vshlq_n_u8 (b.val[0], 4), vshrq_n_u8 (b.val[1], 4));
    chars.val[2] = vorrq_u8 (vshlq_n_u8 (b.val[1], 2), vshrq_n_u8 (b.val[2], 6));
    chars.val[1] = vandq_u8 (chars.val[1], six_bits);
    chars.val[2] = vandq_u8 (chars.val[2], six_bits);
    chars.val[3] = vandq_u8 (b.val[2], six_bits);
    for (int k = 0; k < 4; k++)
      chars.val[k] = vqtbl4q_u8 (alphabet, chars.val[k]);
    vst4q_u8 ((guint8 *) out, chars);
    out += 64;
  }
  return i;
}
#endif

static void
base64_tables_init (void)
{
  static gsize done = 0;
  if (g_once_init_enter (&done)) {
    for (int t = 0; t < 4; t++)
      for (int c = 0; c < 256; c++)
        base64_tables[t][c] = BASE64_BAD;
    for (guint32 i = 0; i < 64; i++)
      for (int t = 0; t < 4; t++)
        base64_tables[t][(guchar) base64_alphabet[i]] = i << (18 - 6 * t);
#if defined(BASE64_SSSE3)
    __builtin_cpu_init ();
    if (__builtin_cpu_supports ("ssse3")) {
      decode_blocks = decode_blocks_ssse3;
      encode_blocks = encode_blocks_ssse3;
    }
#elif defined(BASE64_NEON)
    decode_blocks = decode_blocks_neon;
    encode_blocks = encode_blocks_neon;
#endif
    g_once_init_leave (&done, 1);
  }
}

/* Decodes whole unpadded quads from @in while they last; returns how many
 * characters it took (a multiple of four). */
static gsize
decode_quads (const guchar *in, gsize len, guint8 *out)
{
  const guint32 *t0 = base64_tables[0], *t1 = base64_tables[1];
  const guint32 *t2 = base64_tables[2], *t3 = base64_tables[3];
  gsize i = 0;
  if (decode_blocks) {
    i = decode_blocks (in, len, out);
    out += i / 4 * 3;
  }
  for (; i + 4 <= len; i += 4) {
    guint32 q = t0[in[i]] | t1[in[i + 1]] | t2[in[i + 2]] | t3[in[i + 3]];
    if (q & BASE64_BAD)
      break;
    out[0] = (guint8) (q >> 16);
    out[1] = (guint8) (q >> 8);
    out[2] = (guint8) q;
    out += 3;
  }
  return i;
}

/* The last quad, which may end in one or two '='; bytes written, or -1. */
static gssize
decode_last_quad (const guchar *in, guint8 *out)
{
  guint pad = in[3] != '=' ? 0 : in[2] != '=' ? 1 : 2;
  guint32 q = base64_tables[0][in[0]] | base64_tables[1][in[1]] |
              (pad < 2 ? base64_tables[2][in[2]] : 0) | (pad < 1 ? base64_tables[3][in[3]] : 0);
  if (q & BASE64_BAD)
    return -1;
  out[0] = (guint8) (q >> 16);
  if (pad < 2)
    out[1] = (guint8) (q >> 8);
  if (pad < 1)
    out[2] = (guint8) q;
  return 3 - pad;
}

gssize
kinesis_decode_base64 (const char *text, gsize len, guint8 *out)
{
  const guchar *in = (const guchar *) text;
  base64_tables_init ();
  if (len % 4 != 0)
    return -1;
  if (len == 0)
    return 0;
  gsize done = decode_quads (in, len - 4, out);
  if (done != len - 4)
    return -1;
  gssize last = decode_last_quad (in + done, out + done / 4 * 3);
  return last < 0 ? -1 : (gssize) (done / 4 * 3) + last;
}

/* Encoding: a table of every pair of base64 characters for 12 bits, so
 * that three bytes become four characters with two lookups. */
static guint16 base64_pairs[4096];

static void
base64_pairs_init (void)
{
  static gsize done = 0;
  if (g_once_init_enter (&done)) {
    for (guint i = 0; i < 4096; i++) {
      char pair[2] = { base64_alphabet[i >> 6], base64_alphabet[i & 63] };
      memcpy (&base64_pairs[i], pair, 2);
    }
    g_once_init_leave (&done, 1);
  }
}

gsize
kinesis_encode_base64 (const guint8 *data, gsize len, char *out)
{
  const char *alphabet = base64_alphabet;
  char *o = out;
  gsize i = 0;
  base64_pairs_init ();
  base64_tables_init ();
  if (encode_blocks) {
    i = encode_blocks (data, len, out);
    o += i / 3 * 4;
  }
  /* Six bytes at a time from one eight-byte load, while eight remain. */
  for (; i + 8 <= len; i += 6) {
    guint64 v;
    memcpy (&v, data + i, 8);
    v = GUINT64_FROM_BE (v);
    memcpy (o, &base64_pairs[(v >> 52) & 0xfff], 2);
    memcpy (o + 2, &base64_pairs[(v >> 40) & 0xfff], 2);
    memcpy (o + 4, &base64_pairs[(v >> 28) & 0xfff], 2);
    memcpy (o + 6, &base64_pairs[(v >> 16) & 0xfff], 2);
    o += 8;
  }
  for (; i + 3 <= len; i += 3) {
    guint32 v = (guint32) data[i] << 16 | (guint32) data[i + 1] << 8 | data[i + 2];
    memcpy (o, &base64_pairs[v >> 12], 2);
    memcpy (o + 2, &base64_pairs[v & 0xfff], 2);
    o += 4;
  }
  if (i < len) {
    guint32 v = (guint32) data[i] << 16 | (i + 1 < len ? (guint32) data[i + 1] << 8 : 0);
    o[0] = alphabet[v >> 18];
    o[1] = alphabet[(v >> 12) & 63];
    o[2] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
    o[3] = '=';
    o += 4;
  }
  return (gsize) (o - out);
}

typedef struct {
  EdgeJsonReader json;
  KinesisFault *fault;
  KinesisPut *put;
  guint8 *buffer;
  gsize used, size;
  gboolean seen_records;
} Decoder;

/* The JSON itself is broken: SerializationException, as Kinesis answers. */
static gboolean
json_fault (Decoder *d)
{
  return set_fault (d->fault, "SerializationException", "the request body is not valid JSON: %s",
                    d->json.error ? d->json.error : "unexpected value");
}

/* A string member's value; *ret NULL for JSON null. */
static gboolean
read_string_or_null (Decoder *d, const char *member, const char **ret, gsize *ret_len)
{
  switch (edge_json_reader_peek (&d->json)) {
  case EDGE_JSON_NULL:
    *ret = NULL;
    *ret_len = 0;
    return edge_json_reader_skip (&d->json) || json_fault (d);
  case EDGE_JSON_STRING:
    return edge_json_reader_read_string (&d->json, ret, ret_len) || json_fault (d);
  case EDGE_JSON_NONE:
    return json_fault (d);
  default:
    return set_fault (d->fault, "SerializationException", "%s must be a string", member);
  }
}

static char *
copy_string_or_null (Decoder *d, const char *member, gboolean *ok)
{
  const char *s;
  gsize len;
  *ok = read_string_or_null (d, member, &s, &len);
  return *ok && s ? g_strndup (s, len) : NULL;
}

static gboolean
member_is (const char *name, gsize len, const char *want)
{
  return strlen (want) == len && memcmp (name, want, len) == 0;
}

/* Characters in well-formed UTF-8: the bytes that start one. */
static gsize
utf8_chars (const char *s, gsize len)
{
  gsize n = 0;
  for (gsize i = 0; i < len; i++)
    n += ((guchar) s[i] & 0xc0) != 0x80;
  return n;
}

/* The usual Data member, plain base64 between its quotes, decoded as it is
 * scanned, without a pass to find the closing quote first. Returns the
 * length decoded into the buffer (not yet counted as used), or -1 to take
 * the general path (escapes, bad base64, not a string), the reader unmoved. */
static gssize
decode_data_in_place (Decoder *d)
{
  const char *begin = edge_json_reader_string_begin (&d->json);
  if (begin == NULL)
    return -1;
  const guchar *in = (const guchar *) begin;
  gsize avail = (gsize) (d->json.end - begin);
  guint8 *out = d->buffer + d->used;
  /* The buffer is as long as the document and never holds more than the
   * document before this string decodes to, so this string's 3/4 fits. */
  gsize done = decode_quads (in, avail, out);
  gssize n = (gssize) (done / 4 * 3);
  if (done < avail && in[done] == '"') {
    /* It ended on a whole quad (no padding). */
  } else if (done + 5 <= avail && in[done + 4] == '"') {
    gssize last = decode_last_quad (in + done, out + n);
    if (last < 0)
      return -1;
    n += last;
    done += 4;
  } else {
    return -1;
  }
  edge_json_reader_string_done (&d->json, begin + done + 1);
  return n;
}

typedef struct {
  gboolean has_data, has_key;
  gsize data_offset, data_len;
} Pending;

/* Reads one member of a record (or of a PutRecord body) if it is a record
 * member; *ret_taken says whether it was. */
static gboolean
read_record_member (Decoder *d, const char *name, gsize name_len, const char *where,
                    KinesisRecord *r, Pending *pending, gboolean *ret_taken)
{
  const char *s;
  gsize len;
  *ret_taken = TRUE;
  if (member_is (name, name_len, "Data")) {
    gssize fast = decode_data_in_place (d);
    if (fast >= 0) {
      pending->has_data = TRUE;
      pending->data_offset = d->used;
      pending->data_len = (gsize) fast;
      d->used += (gsize) fast;
      return TRUE;
    }
    if (!read_string_or_null (d, "Data", &s, &len))
      return FALSE;
    pending->has_data = s != NULL;
    if (s == NULL)
      return TRUE;
    if (len / 4 * 3 > d->size - d->used)
      return set_fault (d->fault, "InternalFailure", "decode buffer exhausted");
    gssize n = kinesis_decode_base64 (s, len, d->buffer + d->used);
    if (n < 0)
      return set_fault (d->fault, "SerializationException", "%sdata is not valid base64", where);
    pending->data_offset = d->used;
    pending->data_len = (gsize) n;
    d->used += (gsize) n;
  } else if (member_is (name, name_len, "PartitionKey")) {
    if (!read_string_or_null (d, "PartitionKey", &s, &len))
      return FALSE;
    pending->has_key = s != NULL;
    if (s == NULL)
      return TRUE;
    gsize chars = utf8_chars (s, len);
    if (chars < 1 || chars > 256 || len > STREAM_PARTITION_KEY_MAX_BYTES)
      return set_fault (d->fault, "ValidationException",
                        "1 validation error detected: Value at '%spartitionKey' failed to "
                        "satisfy constraint: Member must have length between 1 and 256",
                        where);
    if (memchr (s, '\0', len) != NULL)
      return set_fault (d->fault, "ValidationException",
                        "1 validation error detected: Value at '%spartitionKey' failed to "
                        "satisfy constraint: Member must not contain U+0000",
                        where);
    if (len + 1 > d->size - d->used)
      return set_fault (d->fault, "InternalFailure", "decode buffer exhausted");
    char *key = (char *) d->buffer + d->used;
    memcpy (key, s, len);
    key[len] = '\0';
    d->used += len + 1;
    r->partition_key = key;
    r->partition_key_len = len;
  } else if (member_is (name, name_len, "ExplicitHashKey")) {
    if (!read_string_or_null (d, "ExplicitHashKey", &s, &len))
      return FALSE;
    r->has_explicit_hash_key = s != NULL;
    if (s == NULL)
      return TRUE;
    char text[48];
    if (len >= sizeof text || (memcpy (text, s, len), text[len] = '\0',
                               !stream_hash_key_parse (text, &r->explicit_hash_key)))
      return set_fault (d->fault, "InvalidArgumentException",
                        "ExplicitHashKey %.*s is not a decimal number from 0 to 2^128 - 1",
                        (int) MIN (len, 64), s);
  } else {
    *ret_taken = FALSE;
  }
  return TRUE;
}

static gboolean
finish_record (Decoder *d, const char *where, KinesisRecord *r, const Pending *pending)
{
  if (!pending->has_data || !pending->has_key)
    return set_fault (d->fault, "ValidationException",
                      "1 validation error detected: Value null at '%s%s' failed to satisfy "
                      "constraint: Member must not be null",
                      where, !pending->has_data ? "data" : "partitionKey");
  r->data = g_bytes_new_from_bytes (d->put->buffer, pending->data_offset, pending->data_len);
  return TRUE;
}

static gboolean
decode_stream_member (Decoder *d, const char *name, gsize len, gboolean *ret_taken)
{
  gboolean ok = TRUE;
  *ret_taken = TRUE;
  if (member_is (name, len, "StreamName")) {
    g_free (d->put->stream_name);
    d->put->stream_name = copy_string_or_null (d, "StreamName", &ok);
  } else if (member_is (name, len, "StreamARN")) {
    g_free (d->put->stream_arn);
    d->put->stream_arn = copy_string_or_null (d, "StreamARN", &ok);
  } else {
    *ret_taken = FALSE;
  }
  return ok;
}

/* Reads the members of one record object, the reader just inside it, into
 * @r. A PutRecord body is such an object with StreamName and StreamARN
 * beside the record's own members (@with_stream). */
static gboolean
decode_record_object (Decoder *d, const char *where, gboolean with_stream, KinesisRecord *r)
{
  Pending pending = { 0 };
  const char *name;
  gsize len;
  gboolean taken;

  while (edge_json_reader_next_member (&d->json, &name, &len)) {
    taken = FALSE;
    if (with_stream && !decode_stream_member (d, name, len, &taken))
      return FALSE;
    if (!taken && !read_record_member (d, name, len, where, r, &pending, &taken))
      return FALSE;
    if (!taken && !edge_json_reader_skip (&d->json)) /* SequenceNumberForOrdering, ... */
      return json_fault (d);
  }
  if (d->json.error)
    return json_fault (d);
  return finish_record (d, where, r, &pending);
}

static gboolean
decode_single (Decoder *d)
{
  KinesisRecord r = { 0 }; /* its data is set last, so a failure holds nothing */
  if (!decode_record_object (d, "", TRUE, &r))
    return FALSE;
  g_array_append_val (d->put->records, r);
  return TRUE;
}

/* "records.N.member.", the place an error message names: made for every
 * record, so without printf. */
static void
record_place (char where[32], guint n)
{
  char digits[12];
  int len = 0;
  do {
    digits[len++] = (char) ('0' + n % 10);
    n /= 10;
  } while (n > 0);
  char *p = where;
  memcpy (p, "records.", 8);
  p += 8;
  while (len > 0)
    *p++ = digits[--len];
  memcpy (p, ".member.", sizeof ".member.");
}

static gboolean
decode_records (Decoder *d)
{
  GArray *records = d->put->records;
  g_array_set_size (records, 0);
  if (!edge_json_reader_enter_array (&d->json))
    return set_fault (d->fault, "SerializationException", "Records must be a list of records");
  while (edge_json_reader_next_element (&d->json)) {
    if (records->len == KINESIS_PUT_RECORDS_MAX)
      return set_fault (d->fault, "ValidationException",
                        "1 validation error detected: Value at 'records' failed to satisfy "
                        "constraint: Member must have length less than or equal to %d",
                        KINESIS_PUT_RECORDS_MAX);
    char where[32];
    record_place (where, records->len + 1);
    EdgeJsonToken token = edge_json_reader_peek (&d->json);
    if (token == EDGE_JSON_NONE) {
      edge_json_reader_skip (&d->json); /* names the error */
      return json_fault (d);
    }
    if (token != EDGE_JSON_OBJECT)
      return set_fault (d->fault, "SerializationException", "each record is an object");
    edge_json_reader_enter_object (&d->json);
    KinesisRecord r = { 0 };
    if (!decode_record_object (d, where, FALSE, &r))
      return FALSE;
    g_array_append_val (records, r);
  }
  return d->json.error == NULL || json_fault (d);
}

static gboolean
decode_batch (Decoder *d)
{
  const char *name;
  gsize len;
  gboolean taken, seen_records = FALSE;

  while (edge_json_reader_next_member (&d->json, &name, &len)) {
    if (!decode_stream_member (d, name, len, &taken))
      return FALSE;
    if (taken)
      continue;
    if (member_is (name, len, "Records") &&
        edge_json_reader_peek (&d->json) != EDGE_JSON_NULL) {
      if (!decode_records (d))
        return FALSE;
      seen_records = TRUE;
    } else if (!edge_json_reader_skip (&d->json)) {
      return json_fault (d);
    }
  }
  if (d->json.error)
    return json_fault (d);
  d->seen_records = seen_records;
  return TRUE;
}

/* What a batch must hold, checked once the JSON is known to be whole. */
static gboolean
check_batch (Decoder *d)
{
  if (!d->seen_records)
    return set_fault (d->fault, "ValidationException",
                      "1 validation error detected: Value null at 'records' failed to satisfy "
                      "constraint: Member must not be null");
  if (d->put->records->len == 0)
    return set_fault (d->fault, "ValidationException",
                      "1 validation error detected: Value at 'records' failed to satisfy "
                      "constraint: Member must have length greater than or equal to 1");
  return TRUE;
}

static void
record_clear (gpointer data)
{
  KinesisRecord *r = data;
  g_clear_pointer (&r->data, g_bytes_unref);
}

void
kinesis_put_free (KinesisPut *put)
{
  if (put == NULL)
    return;
  g_free (put->stream_name);
  g_free (put->stream_arn);
  if (put->records)
    g_array_unref (put->records);
  if (put->buffer)
    g_bytes_unref (put->buffer);
  g_free (put);
}

KinesisPut *
kinesis_decode_put (const char *body, gsize len, gboolean single, KinesisFault *fault)
{
  g_autoptr (KinesisPut) put = g_new0 (KinesisPut, 1);
  Decoder d = { .fault = fault, .put = put, .size = len };

  base64_tables_init ();
  /* Filled below, before any slice of it is shared. */
  d.buffer = g_try_malloc (MAX (len, 1));
  if (d.buffer == NULL) {
    set_fault (fault, "InternalFailure", "out of memory for a request of %zu bytes", len);
    return NULL;
  }
  put->buffer = g_bytes_new_take (d.buffer, len);
  put->records = g_array_sized_new (FALSE, TRUE, sizeof (KinesisRecord), single ? 1 : 64);
  g_array_set_clear_func (put->records, record_clear);
  edge_json_reader_init (&d.json, body, len);

  gboolean ok;
  if (edge_json_reader_peek (&d.json) != EDGE_JSON_OBJECT) {
    ok = d.json.error || edge_json_reader_peek (&d.json) == EDGE_JSON_NONE
             ? set_fault (fault, "SerializationException",
                          "the request body is not a JSON object")
             : set_fault (fault, "SerializationException",
                          "the request body must be a JSON object");
  } else {
    edge_json_reader_enter_object (&d.json);
    ok = (single ? decode_single (&d) : decode_batch (&d)) &&
         (edge_json_reader_finish (&d.json) || json_fault (&d)) && (single || check_batch (&d));
  }
  edge_json_reader_clear (&d.json);
  if (!ok)
    return NULL;

  gsize total = 0;
  for (guint i = 0; i < put->records->len; i++) {
    KinesisRecord *r = &g_array_index (put->records, KinesisRecord, i);
    total += g_bytes_get_size (r->data) + r->partition_key_len;
  }
  if (total > KINESIS_PUT_RECORDS_MAX_BYTES) {
    set_fault (fault, "InvalidArgumentException", "Records size exceeds %d MB limit: %zu bytes",
               KINESIS_PUT_RECORDS_MAX_BYTES >> 20, total);
    return NULL;
  }
  return g_steal_pointer (&put);
}

gboolean
kinesis_put_check (const KinesisPut *put, gboolean single, guint64 max_record_bytes,
                   KinesisFault *fault)
{
  for (guint i = 0; i < put->records->len; i++) {
    const KinesisRecord *r = &g_array_index (put->records, KinesisRecord, i);
    if (g_bytes_get_size (r->data) + r->partition_key_len <= max_record_bytes)
      continue;
    char where[48] = "";
    if (!single)
      g_snprintf (where, sizeof where, "records.%u.member.", i + 1);
    return set_fault (fault, "ValidationException",
                      "1 validation error detected: Value at '%sdata' failed to satisfy "
                      "constraint: Member must have length less than or equal to %" G_GUINT64_FORMAT,
                      where, max_record_bytes);
  }
  return TRUE;
}

/* ---- answers ---- */

void
kinesis_append_sequence (GString *out, guint32 ordinal, guint64 number)
{
  char seq[STREAM_SEQUENCE_MAX_LEN + 1];
  gsize len = stream_sequence_format_to (ordinal, number, seq);
  g_string_append_c (out, '"');
  g_string_append_len (out, seq, (gssize) len);
  g_string_append_c (out, '"');
}

/* Base64 of @bytes, quoted, encoded straight into @out. */
static void
append_base64 (GString *out, GBytes *bytes)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  gsize at = out->len + 1;
  g_string_set_size (out, at + (len + 2) / 3 * 4 + 1);
  out->str[at - 1] = '"';
  kinesis_encode_base64 (data, len, out->str + at);
  out->str[out->len - 1] = '"';
}


void
kinesis_add_hash_key_range (JsonBuilder *b, const StreamShardInfo *shard)
{
  g_autofree char *start = stream_hash_key_format (&shard->start);
  g_autofree char *end = stream_hash_key_format (&shard->end);
  json_builder_set_member_name (b, "HashKeyRange");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "StartingHashKey");
  json_builder_add_string_value (b, start);
  json_builder_set_member_name (b, "EndingHashKey");
  json_builder_add_string_value (b, end);
  json_builder_end_object (b);
}

void
kinesis_append_child_shards (GString *out, const StreamInfo *info, const StreamShardInfo *parent)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_array (b);
  for (guint i = 0; i < info->shards->len; i++) {
    const StreamShardInfo *c = g_ptr_array_index (info->shards, i);
    if (g_strcmp0 (c->parent, parent->id) != 0 && g_strcmp0 (c->adjacent_parent, parent->id) != 0)
      continue;
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "ShardId");
    json_builder_add_string_value (b, c->id);
    json_builder_set_member_name (b, "ParentShards");
    json_builder_begin_array (b);
    if (c->parent)
      json_builder_add_string_value (b, c->parent);
    if (c->adjacent_parent)
      json_builder_add_string_value (b, c->adjacent_parent);
    json_builder_end_array (b);
    kinesis_add_hash_key_range (b, c);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  gsize len;
  g_autofree char *text = json_generator_to_data (gen, &len);
  g_string_append_len (out, text, (gssize) len);
}

void
kinesis_append_record (GString *out, guint32 ordinal, const StreamRecord *r)
{
  g_string_append (out, "{\"SequenceNumber\":");
  kinesis_append_sequence (out, ordinal, r->number);
  g_string_append (out, ",\"ApproximateArrivalTimestamp\":");
  edge_string_append_fixed (out, r->arrival_ms < 0 ? 0 : (guint64) r->arrival_ms, 3);
  g_string_append (out, ",\"Data\":");
  append_base64 (out, r->data);
  g_string_append (out, ",\"PartitionKey\":");
  edge_json_append_string (out, r->partition_key, strlen (r->partition_key));
  g_string_append (out, ",\"EncryptionType\":\"KMS\"}");
}
