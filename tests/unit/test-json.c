/* The tree-less JSON reader: what it accepts and refuses (checked against
 * the gateway's JSON entry point for every document), how it unescapes, and the
 * string writer's escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "edge-gateway.h"

typedef struct {
  const char *text;
  gboolean valid;
} Document;

static const Document documents[] = {
  { "{}", TRUE },
  { "[]", TRUE },
  { " \t\r\n{ } ", TRUE },
  { "\"x\"", TRUE },
  { "0", TRUE },
  { "-0.5e+3", TRUE },
  { "12E-2", TRUE },
  { "{\"a\":[1,2,{\"b\":null}],\"c\":true,\"d\":false}", TRUE },
  { "[\"\\u00e9\\ud83d\\ude00\", \"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", TRUE },
  { "\"plain text longer than one word, then an escape\\n\"", TRUE },
  { "\"caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac\"", TRUE },
  { "", FALSE },
  { "{,}", FALSE },
  { "[1,]", FALSE },
  { "[,1]", FALSE },
  { "{\"a\" 1}", FALSE },
  { "{\"a\":1,}", FALSE },
  { "{\"a\":1 \"b\":2}", FALSE },
  { "{1:2}", FALSE },
  { "01", FALSE }, /* json-glib alone takes it */
  { "1.", FALSE }, /* json-glib alone takes it */
  { ".5", FALSE }, /* json-glib alone takes it */
  { "-", FALSE },
  { "1e", FALSE },
  { "+1", FALSE },
  { "\"\x01\"", FALSE }, /* json-glib alone takes it */
  { "\"tab\there\"", FALSE }, /* json-glib alone takes it */
  { "\"\\ud800\"", FALSE },
  { "\"\\udc00\"", FALSE },
  { "\"\\ud800\\u0041\"", FALSE },
  { "\"\\u12\"", FALSE },
  { "\"\\q\"", FALSE }, /* json-glib alone takes it */
  { "\"\xc0\xaf\"", FALSE },
  { "\"\xe0\x80\xaf\"", FALSE },
  { "\"\xed\xa0\x80\"", FALSE },
  { "\"\xf4\x90\x80\x80\"", FALSE },
  { "\"\xc3\"", FALSE },
  { "\"abcdefghij\xff\"", FALSE },
  { "{} x", FALSE },
  { "{}{}", FALSE }, /* json-glib alone takes it */
  { "[", FALSE },
  { "[1", FALSE },
  { "{\"a\":", FALSE },
  { "\"abc", FALSE },
  { "tru", FALSE },
  { "nul", FALSE },
  { "True", FALSE },
  { "]", FALSE },
};

static void
test_documents (void **state)
{
  (void) state;
  for (gsize i = 0; i < G_N_ELEMENTS (documents); i++) {
    const Document *d = &documents[i];
    EdgeJsonReader r;
    edge_json_reader_init (&r, d->text, strlen (d->text));
    gboolean ok = edge_json_reader_skip (&r) && edge_json_reader_finish (&r);
    if (ok != d->valid)
      fail_msg ("%s: reader says %s (%s)", d->text, ok ? "valid" : "invalid", r.error);
    if (!ok && (r.error == NULL || strstr (r.error, "byte") == NULL))
      fail_msg ("%s: no error with an offset", d->text);
    edge_json_reader_clear (&r);

    /* So does the gateway's entry point in front of json-glib. */
    g_autoptr (GError) error = NULL;
    g_autoptr (JsonNode) node = edge_json_parse (d->text, strlen (d->text), 1 << 20, &error);
    if ((node != NULL) != d->valid)
      fail_msg ("%s: edge_json_parse says %s", d->text, node ? "valid" : "invalid");
  }
}

static void
test_nesting_limit (void **state)
{
  (void) state;
  for (guint depth = EDGE_JSON_READER_MAX_DEPTH; depth <= EDGE_JSON_READER_MAX_DEPTH + 1; depth++) {
    g_autoptr (GString) text = g_string_new (NULL);
    for (guint i = 0; i < depth; i++)
      g_string_append_c (text, '[');
    for (guint i = 0; i < depth; i++)
      g_string_append_c (text, ']');
    EdgeJsonReader r;
    edge_json_reader_init (&r, text->str, text->len);
    gboolean ok = edge_json_reader_skip (&r) && edge_json_reader_finish (&r);
    assert_int_equal (ok, depth <= EDGE_JSON_READER_MAX_DEPTH);
    if (!ok)
      assert_non_null (strstr (r.error, "nested deeper than 64 levels"));
    edge_json_reader_clear (&r);
  }
}

static void
test_walk_and_unescape (void **state)
{
  (void) state;
  const char *text = "{ \"plain\" : \"abcdefghijklmnopqrstuvwxyz\", \"esc\\u0061ped\": "
                     "\"a\\nb\\u00e9\\ud83d\\ude00\\/ and more text after the escapes\", "
                     "\"skip\": [1, {\"x\": \"y\"}], \"last\": null }";
  EdgeJsonReader r;
  const char *name, *value;
  gsize name_len, value_len;
  guint members = 0;

  edge_json_reader_init (&r, text, strlen (text));
  assert_true (edge_json_reader_enter_object (&r));
  while (edge_json_reader_next_member (&r, &name, &name_len)) {
    g_autofree char *n = g_strndup (name, name_len);
    members++;
    if (g_str_equal (n, "plain")) {
      assert_true (edge_json_reader_read_string (&r, &value, &value_len));
      assert_int_equal (value_len, 26);
      assert_memory_equal (value, "abcdefghijklmnopqrstuvwxyz", 26);
      assert_ptr_equal (value, strstr (text, "abc")); /* no copy without escapes */
    } else if (g_str_equal (n, "escaped")) {
      const char *want = "a\nb\xc3\xa9\xf0\x9f\x98\x80/ and more text after the escapes";
      assert_true (edge_json_reader_read_string (&r, &value, &value_len));
      assert_int_equal (value_len, strlen (want));
      assert_memory_equal (value, want, value_len);
    } else if (g_str_equal (n, "skip") || g_str_equal (n, "last")) {
      if (g_str_equal (n, "last"))
        assert_int_equal (edge_json_reader_peek (&r), EDGE_JSON_NULL);
      assert_true (edge_json_reader_skip (&r));
    } else {
      fail_msg ("unexpected member %s", n);
    }
  }
  assert_null (r.error);
  assert_int_equal (members, 4);
  assert_true (edge_json_reader_finish (&r));
  edge_json_reader_clear (&r);

  /* The wrong kind of value is an error, not a crash. */
  edge_json_reader_init (&r, "{\"a\": 1}", 8);
  assert_true (edge_json_reader_enter_object (&r));
  assert_true (edge_json_reader_next_member (&r, &name, &name_len));
  assert_false (edge_json_reader_read_string (&r, &value, &value_len));
  assert_non_null (strstr (r.error, "expected a string at byte 6"));
  assert_false (edge_json_reader_next_member (&r, &name, &name_len));
  edge_json_reader_clear (&r);
}

static void
test_append_string (void **state)
{
  (void) state;
  static const char *const cases[][2] = {
    { "plain", "\"plain\"" },
    { "", "\"\"" },
    { "quote \" backslash \\ slash /", "\"quote \\\" backslash \\\\ slash /\"" },
    { "\n\r\t\x01\x1f", "\"\\n\\r\\t\\u0001\\u001f\"" },
    { "caf\xc3\xa9", "\"caf\xc3\xa9\"" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GString) out = g_string_new ("x");
    edge_json_append_string (out, cases[i][0], strlen (cases[i][0]));
    assert_string_equal (out->str + 1, cases[i][1]);

    /* And it reads back as what was written. */
    EdgeJsonReader r;
    const char *value;
    gsize len;
    edge_json_reader_init (&r, out->str + 1, out->len - 1);
    assert_true (edge_json_reader_read_string (&r, &value, &len));
    assert_int_equal (len, strlen (cases[i][0]));
    assert_memory_equal (value, cases[i][0], len);
    assert_true (edge_json_reader_finish (&r));
    edge_json_reader_clear (&r);
  }
}

static void
test_read_number (void **state)
{
  (void) state;
  const char *text = "[0, -12.5e+3, 7 ,\"8\"]";
  static const char *const want[] = { "0", "-12.5e+3", "7" };
  EdgeJsonReader r;
  const char *value;
  gsize len;
  edge_json_reader_init (&r, text, strlen (text));
  assert_true (edge_json_reader_enter_array (&r));
  for (gsize i = 0; i < G_N_ELEMENTS (want); i++) {
    assert_true (edge_json_reader_next_element (&r));
    assert_true (edge_json_reader_read_number (&r, &value, &len));
    assert_int_equal (len, strlen (want[i]));
    assert_memory_equal (value, want[i], len);
  }
  /* A string is no number. */
  assert_true (edge_json_reader_next_element (&r));
  assert_false (edge_json_reader_read_number (&r, &value, &len));
  assert_non_null (strstr (r.error, "expected a number at byte 17"));
  edge_json_reader_clear (&r);
}

/* Not JSON, but as small: the request ids. */
static void
test_uuid (void **state)
{
  (void) state;
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i < 10000; i++) {
    char *id = edge_uuid_random ();
    assert_int_equal (strlen (id), 36);
    for (gsize j = 0; j < 36; j++) {
      if (j == 8 || j == 13 || j == 18 || j == 23)
        assert_int_equal (id[j], '-');
      else
        assert_non_null (strchr ("0123456789abcdef", id[j]));
    }
    assert_int_equal (id[14], '4');               /* version 4 */
    assert_non_null (strchr ("89ab", id[19]));   /* the RFC 4122 variant */
    assert_true (g_uuid_string_is_valid (id));
    assert_true (g_hash_table_add (seen, id));   /* no repeats */
  }
}

/* Fixed-point decimals without printf, against printf's own text. */
static void
test_append_fixed (void **state)
{
  static const guint64 values[] = { 0, 1, 9, 10, 99, 100, 999, 1000, 1005, 123456,
                                    1764494400123, G_MAXINT64, G_MAXUINT64 };
  for (gsize i = 0; i < G_N_ELEMENTS (values); i++)
    for (guint d = 0; d <= 4; d++) {
      g_autoptr (GString) got = g_string_new ("x");
      edge_string_append_fixed (got, values[i], d);
      guint64 scale = 1;
      for (guint k = 0; k < d; k++)
        scale *= 10;
      g_autofree char *want =
          d == 0 ? g_strdup_printf ("x%" G_GUINT64_FORMAT, values[i])
                 : g_strdup_printf ("x%" G_GUINT64_FORMAT ".%0*" G_GUINT64_FORMAT,
                                    values[i] / scale, (int) d, values[i] % scale);
      assert_string_equal (got->str, want);
    }
  g_autoptr (GString) seconds = g_string_new (NULL);
  edge_string_append_fixed (seconds, 1764494400123, 3);
  assert_string_equal (seconds->str, "1764494400.123");
  g_autoptr (GString) small = g_string_new (NULL);
  edge_string_append_fixed (small, 5, 2);
  assert_string_equal (small->str, "0.05");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_documents),
    cmocka_unit_test (test_nesting_limit),
    cmocka_unit_test (test_walk_and_unescape),
    cmocka_unit_test (test_append_string),
    cmocka_unit_test (test_read_number),
    cmocka_unit_test (test_uuid),
    cmocka_unit_test (test_append_fixed),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
