/* Kinesis put bodies, decoded as the API decodes them: records, keys and
 * data byte for byte, and every refusal with the __type Kinesis gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kinesis-decode.h"
#include "kinesis-subscribe.h"

static KinesisPut *
decode (const char *body, gboolean single, KinesisFault *fault)
{
  return kinesis_decode_put (body, strlen (body), single, fault);
}

static void
assert_record (KinesisPut *put, guint i, const char *key, const char *data)
{
  KinesisRecord *r = &g_array_index (put->records, KinesisRecord, i);
  gsize len;
  const char *bytes = g_bytes_get_data (r->data, &len);
  assert_string_equal (r->partition_key, key);
  assert_int_equal (r->partition_key_len, strlen (key));
  assert_int_equal (len, strlen (data));
  assert_memory_equal (bytes ? bytes : "", data, len);
}

static void
test_put_records (void **state)
{
  (void) state;
  KinesisFault fault = { NULL, NULL };
  /* Members in any order, unknown ones skipped, "\/" in base64, a repeated
   * member (the last wins), keys with escapes and multi-byte characters. */
  const char *body =
      "{\"Records\": [{\"Data\": \"aGVsbG8=\", \"PartitionKey\": \"k1\"},"
      " {\"PartitionKey\": \"caf\\u00e9\", \"Unknown\": {\"x\": [1]}, \"Data\": \"\"},"
      " {\"Data\": \"Pz8\\/\", \"Data\": \"YWJj\", \"PartitionKey\": \"k3\","
      "  \"ExplicitHashKey\": \"340282366920938463463374607431768211455\"}],"
      " \"StreamARN\": null, \"StreamName\": \"orders\"}";
  g_autoptr (KinesisPut) put = decode (body, FALSE, &fault);
  assert_non_null (put);
  assert_string_equal (put->stream_name, "orders");
  assert_null (put->stream_arn);
  assert_int_equal (put->records->len, 3);
  assert_record (put, 0, "k1", "hello");
  assert_record (put, 1, "caf\xc3\xa9", "");
  assert_record (put, 2, "k3", "abc");
  KinesisRecord *r = &g_array_index (put->records, KinesisRecord, 2);
  assert_true (r->has_explicit_hash_key);
  for (int i = 0; i < 16; i++)
    assert_int_equal (r->explicit_hash_key.bytes[i], 0xff);
  assert_false (g_array_index (put->records, KinesisRecord, 0).has_explicit_hash_key);

  assert_true (kinesis_put_check (put, FALSE, 5 + 2, &fault));
  assert_false (kinesis_put_check (put, FALSE, 6, &fault));
  assert_string_equal (fault.type, "ValidationException");
  assert_non_null (strstr (fault.message, "'records.1.member.data'"));
  kinesis_fault_clear (&fault);
}

static void
test_put_record (void **state)
{
  (void) state;
  KinesisFault fault = { NULL, NULL };
  g_autoptr (KinesisPut) put =
      decode ("{\"StreamARN\": \"arn:aws:kinesis:us-east-1:000000000000:stream/s\","
              " \"Data\": \"QUI=\", \"PartitionKey\": \"k\", \"SequenceNumberForOrdering\": \"1\"}",
              TRUE, &fault);
  assert_non_null (put);
  assert_null (put->stream_name);
  assert_string_equal (put->stream_arn, "arn:aws:kinesis:us-east-1:000000000000:stream/s");
  assert_int_equal (put->records->len, 1);
  assert_record (put, 0, "k", "AB");
}

typedef struct {
  const char *body;
  gboolean single;
  const char *type;
  const char *message; /* a part of it */
} Refusal;

/* A good record, for bodies that need many. */
#define R "{\"PartitionKey\": \"a\", \"Data\": \"YQ==\"}, "

static const Refusal refusals[] = {
  { "", FALSE, "SerializationException", "not a JSON object" },
  { "[]", FALSE, "SerializationException", "must be a JSON object" },
  { "{\"Records\": [}", FALSE, "SerializationException", "not valid JSON" },
  { "{\"StreamName\": \"s\"} x", FALSE, "SerializationException", "trailing data" },
  { "{\"StreamName\": \"s\"}", FALSE, "ValidationException", "Value null at 'records'" },
  { "{\"Records\": null}", FALSE, "ValidationException", "Value null at 'records'" },
  { "{\"Records\": []}", FALSE, "ValidationException", "greater than or equal to 1" },
  { "{\"Records\": {}}", FALSE, "SerializationException", "list of records" },
  { "{\"Records\": [1]}", FALSE, "SerializationException", "each record is an object" },
  { "{\"StreamName\": 5, \"Records\": []}", FALSE, "SerializationException",
    "StreamName must be a string" },
  { "{\"Records\": [{\"Data\": \"YQ==\", \"PartitionKey\": \"a\"}, {\"Data\": \"YQ==\"}]}", FALSE,
    "ValidationException", "Value null at 'records.2.member.partitionKey'" },
  { "{\"Records\": [{\"PartitionKey\": \"a\", \"Data\": null}]}", FALSE, "ValidationException",
    "Value null at 'records.1.member.data'" },
  { "{\"Records\": [" R R R R R R R R R R R "{\"PartitionKey\": \"a\", \"Data\": \"YQ=\"}]}",
    FALSE, "SerializationException", "records.12.member.data is not valid base64" },
  { "{\"Records\": [{\"PartitionKey\": \"a\", \"Data\": 12}]}", FALSE, "SerializationException",
    "Data must be a string" },
  { "{\"Records\": [{\"PartitionKey\": \"a\", \"Data\": \"YQ=\"}]}", FALSE,
    "SerializationException", "records.1.member.data is not valid base64" },
  { "{\"Records\": [{\"PartitionKey\": \"a\", \"Data\": \"Y Q=\"}]}", FALSE,
    "SerializationException", "not valid base64" },
  { "{\"Records\": [{\"PartitionKey\": \"a\", \"Data\": \"YQ=A\"}]}", FALSE,
    "SerializationException", "not valid base64" },
  { "{\"Records\": [{\"PartitionKey\": \"a\", \"Data\": \"Y===\"}]}", FALSE,
    "SerializationException", "not valid base64" },
  { "{\"Records\": [{\"PartitionKey\": \"\", \"Data\": \"\"}]}", FALSE, "ValidationException",
    "length between 1 and 256" },
  { "{\"Records\": [{\"PartitionKey\": \"a\\u0000b\", \"Data\": \"\"}]}", FALSE,
    "ValidationException", "U+0000" },
  { "{\"Records\": [{\"PartitionKey\": \"a\", \"Data\": \"\", \"ExplicitHashKey\": \"-1\"}]}",
    FALSE, "InvalidArgumentException", "ExplicitHashKey -1" },
  { "{\"Records\": [{\"PartitionKey\": \"a\", \"Data\": \"\","
    " \"ExplicitHashKey\": \"340282366920938463463374607431768211456\"}]}",
    FALSE, "InvalidArgumentException", "2^128 - 1" },
  { "{\"Data\": \"YQ==\"}", TRUE, "ValidationException", "Value null at 'partitionKey'" },
  { "{\"PartitionKey\": \"k\"}", TRUE, "ValidationException", "Value null at 'data'" },
};

static void
test_refusals (void **state)
{
  (void) state;
  for (gsize i = 0; i < G_N_ELEMENTS (refusals); i++) {
    const Refusal *c = &refusals[i];
    KinesisFault fault = { NULL, NULL };
    KinesisPut *put = decode (c->body, c->single, &fault);
    if (put != NULL)
      fail_msg ("%s: accepted", c->body);
    if (!g_str_equal (fault.type, c->type) || strstr (fault.message, c->message) == NULL)
      fail_msg ("%s: %s: %s", c->body, fault.type, fault.message);
    kinesis_fault_clear (&fault);
  }
}

/* Builds a PutRecords body of @n records of @key_chars-character keys and
 * @data_bytes bytes of data each. */
static GString *
batch (guint n, guint key_chars, const char *key_char, gsize data_bytes)
{
  g_autofree guint8 *data = g_malloc0 (MAX (data_bytes, 1));
  g_autofree char *data64 = g_base64_encode (data, data_bytes);
  GString *body = g_string_new ("{\"StreamName\": \"s\", \"Records\": [");
  for (guint i = 0; i < n; i++) {
    g_string_append_printf (body, "%s{\"Data\": \"%s\", \"PartitionKey\": \"", i ? "," : "",
                            data64);
    for (guint k = 0; k < key_chars; k++)
      g_string_append (body, key_char);
    g_string_append (body, "\"}");
  }
  g_string_append (body, "]}");
  return body;
}

static void
test_limits (void **state)
{
  (void) state;
  KinesisFault fault = { NULL, NULL };
  struct {
    guint n, key_chars;
    const char *key_char;
    gsize data_bytes;
    const char *type; /* NULL: accepted */
  } cases[] = {
    { 500, 1, "k", 10, NULL },
    { 501, 1, "k", 10, "ValidationException" },
    { 1, 256, "\xc3\xa9", 0, NULL }, /* 256 characters, 512 bytes */
    { 1, 257, "k", 0, "ValidationException" },
    { 5, 1, "k", 1024 * 1024 - 1, NULL }, /* 5 MiB with the keys */
    { 5, 1, "k", 1024 * 1024, "InvalidArgumentException" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GString) body = batch (cases[i].n, cases[i].key_chars, cases[i].key_char,
                                      cases[i].data_bytes);
    g_autoptr (KinesisPut) put = kinesis_decode_put (body->str, body->len, FALSE, &fault);
    if (cases[i].type == NULL) {
      assert_non_null (put);
      assert_int_equal (put->records->len, cases[i].n);
    } else {
      assert_null (put);
      assert_string_equal (fault.type, cases[i].type);
      kinesis_fault_clear (&fault);
    }
  }
}

static void
test_base64 (void **state)
{
  (void) state;
  static const char *const cases[][2] = {
    { "", "" },       { "QQ==", "A" },      { "QUI=", "AB" },      { "QUJD", "ABC" },
    { "QUJDRA==", "ABCD" }, { "+/+/", "\xfb\xff\xbf" }, { "QQ==QUJD", NULL }, { "QUJ", NULL },
    { "=QUJ", NULL }, { "QU=D", NULL }, { "QUJ-", NULL },     { "Q\nJD", NULL },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    guint8 out[16];
    gssize n = kinesis_decode_base64 (cases[i][0], strlen (cases[i][0]), out);
    if (cases[i][1] == NULL) {
      if (n != -1)
        fail_msg ("%s: decoded", cases[i][0]);
      continue;
    }
    assert_int_equal (n, strlen (cases[i][1]));
    assert_memory_equal (out, cases[i][1], (gsize) n);
  }
}

/* A GetRecords record as the answer writes it. */
static void
test_append_record (void **state)
{
  (void) state;
  static const struct {
    gint64 ms;
    const char *want;
  } times[] = { { 1764494400123, "1764494400.123" }, { 1764494400005, "1764494400.005" },
                { 42, "0.042" }, { 0, "0.000" } };
  for (gsize i = 0; i < G_N_ELEMENTS (times); i++) {
    g_autoptr (GBytes) data = g_bytes_new_static ("ABC", 3);
    StreamRecord r = { .number = 7, .arrival_ms = times[i].ms, .partition_key = (char *) "k\"1",
                       .data = data };
    g_autoptr (GString) out = g_string_new (NULL);
    kinesis_append_record (out, 2, &r);
    char seq[STREAM_SEQUENCE_MAX_LEN + 1];
    stream_sequence_format_to (2, 7, seq);
    g_autofree char *want = g_strdup_printf (
        "{\"SequenceNumber\":\"%s\",\"ApproximateArrivalTimestamp\":%s,\"Data\":\"QUJD\","
        "\"PartitionKey\":\"k\\\"1\",\"EncryptionType\":\"KMS\"}",
        seq, times[i].want);
    assert_string_equal (out->str, want);
  }
}

/* Long and short data, every length to 400 bytes, both ways (the vector
 * code takes blocks of twelve bytes and sixteen characters, the rest is
 * scalar), against GLib's. */
static void
test_base64_lengths (void **state)
{
  (void) state;
  guint8 data[400], back[400];
  char text[540];
  for (guint len = 0; len <= sizeof data; len++) {
    for (guint i = 0; i < len; i++)
      data[i] = (guint8) g_random_int ();
    g_autofree char *want = g_base64_encode (data, len);
    gsize n = kinesis_encode_base64 (data, len, text);
    assert_int_equal (n, strlen (want));
    assert_memory_equal (text, want, n);
    assert_int_equal (kinesis_decode_base64 (text, n, back), len);
    assert_memory_equal (back, data, len);
  }
}

/* Each of the 256 byte values at each place of a text (the last quad
 * apart, where '=' may be): decoded only when it is in the alphabet, and
 * then as GLib decodes it. */
static void
test_base64_every_byte (void **state)
{
  (void) state;
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  guint8 data[72], out[72];
  for (guint i = 0; i < sizeof data; i++)
    data[i] = (guint8) g_random_int ();
  g_autofree char *text = g_base64_encode (data, sizeof data);
  gsize len = strlen (text);
  for (gsize at = 0; at + 4 < len; at++) {
    char original = text[at];
    for (guint b = 0; b < 256; b++) {
      text[at] = (char) b;
      gboolean valid = b != 0 && strchr (alphabet, (int) b) != NULL;
      gssize n = kinesis_decode_base64 (text, len, out);
      if (!valid) {
        if (n != -1)
          fail_msg ("byte 0x%02x at %zu: decoded", b, at);
        continue;
      }
      gsize want_len;
      g_autofree guchar *want = g_base64_decode (text, &want_len);
      assert_int_equal (n, want_len);
      assert_memory_equal (out, want, want_len);
    }
    text[at] = original;
  }
}

/* Every data length (and so every padding), each through the in-place
 * decoder and, escaped as some encoders do ("\/"), through the general one. */
static void
test_data_round_trip (void **state)
{
  (void) state;
  KinesisFault fault = { NULL, NULL };
  for (int escaped = 0; escaped < 2; escaped++) {
    g_autoptr (GString) body = g_string_new ("{\"StreamName\": \"s\", \"Records\": [");
    g_autoptr (GPtrArray) originals = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
    for (guint len = 0; len < 200; len++) {
      guint8 data[200];
      for (guint i = 0; i < len; i++)
        data[i] = (guint8) g_random_int ();
      if (len > 0)
        data[0] = 0xff; /* a "/" in the base64 text */
      g_autofree char *text = g_base64_encode (data, len);
      g_auto (GStrv) parts = g_strsplit (text, "/", -1);
      g_autofree char *json = g_strjoinv (escaped ? "\\/" : "/", parts);
      g_string_append_printf (body, "%s{\"PartitionKey\": \"k%u\", \"Data\": \"%s\"}",
                              len ? "," : "", len, json);
      g_ptr_array_add (originals, g_bytes_new (data, len));
    }
    g_string_append (body, "]}");
    g_autoptr (KinesisPut) put = kinesis_decode_put (body->str, body->len, FALSE, &fault);
    if (put == NULL)
      fail_msg ("%s: %s", fault.type, fault.message);
    /* The encoder writes what GLib's does. */
    for (guint i = 0; i < originals->len; i++) {
      gsize len;
      const guint8 *data = g_bytes_get_data (g_ptr_array_index (originals, i), &len);
      g_autofree char *want = g_base64_encode (data, len);
      char got[300];
      assert_int_equal (kinesis_encode_base64 (data, len, got), strlen (want));
      assert_memory_equal (got, want, strlen (want));
    }
    assert_int_equal (put->records->len, originals->len);
    for (guint i = 0; i < originals->len; i++)
      assert_true (g_bytes_equal (g_array_index (put->records, KinesisRecord, i).data,
                                  g_ptr_array_index (originals, i)));
  }
}

/* SubscribeToShard's event stream framing: lengths, both CRCs, headers. */
static void
test_event_stream (void **state)
{
  (void) state;
  assert_int_equal (kinesis_crc32 (0, (const guint8 *) "123456789", 9), 0xcbf43926u);
  g_autoptr (GBytes) event = kinesis_event_encode ("event", "SubscribeToShardEvent", "{}", 2);
  gsize len;
  const guint8 *m = g_bytes_get_data (event, &len);
  assert_int_equal (edge_get_be32 (m), len);
  guint32 headers_len = edge_get_be32 (m + 4);
  assert_int_equal (edge_get_be32 (m + 8), kinesis_crc32 (0, m, 8));
  assert_int_equal (edge_get_be32 (m + len - 4), kinesis_crc32 (0, m, len - 4));
  assert_memory_equal (m + 12 + headers_len, "{}", 2);
  assert_int_equal (12 + headers_len + 2 + 4, len);
  /* The first header, as a decoder reads it. */
  assert_int_equal (m[12], strlen (":message-type"));
  assert_memory_equal (m + 13, ":message-type", 13);
  assert_int_equal (m[26], 7);
  assert_int_equal (m[27] << 8 | m[28], 5);
  assert_memory_equal (m + 29, "event", 5);
  const char *h = (const char *) m + 12;
  assert_non_null (memmem (h, headers_len, ":event-type", 11));
  assert_non_null (memmem (h, headers_len, "SubscribeToShardEvent", 21));
  g_autoptr (GBytes) error = kinesis_event_encode ("exception", "ResourceNotFoundException",
                                                   "{\"message\":\"x\"}", 15);
  h = (const char *) g_bytes_get_data (error, NULL) + 12;
  assert_non_null (memmem (h, 60, ":exception-type", 15));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_put_records),
    cmocka_unit_test (test_put_record),
    cmocka_unit_test (test_refusals),
    cmocka_unit_test (test_limits),
    cmocka_unit_test (test_base64),
    cmocka_unit_test (test_base64_lengths),
    cmocka_unit_test (test_append_record),
    cmocka_unit_test (test_base64_every_byte),
    cmocka_unit_test (test_data_round_trip),
    cmocka_unit_test (test_event_stream),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
