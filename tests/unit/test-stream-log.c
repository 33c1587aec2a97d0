/* Data streams below the API: hash keys, sequence numbers, and the shard
 * log's durability: round trips, segment rolls, retention, torn tails cut at
 * every possible byte, and tampering detected, never served. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stream.h"

#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- pure arithmetic ---- */

static void
test_hash_keys (void **state)
{
  static const struct {
    const char *key;
    const char *decimal;
  } md5[] = {
    { "a", "16955237001963240173058271559858726497" },
    { "partition-1", "198019941650871988756153596255032211816" },
    { "", "281949768489412648962353822266799178366" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (md5); i++) {
    StreamHashKey k = stream_hash_key_for_partition_key (md5[i].key, strlen (md5[i].key));
    g_autofree char *text = stream_hash_key_format (&k);
    assert_string_equal (text, md5[i].decimal);
    StreamHashKey parsed;
    assert_true (stream_hash_key_parse (md5[i].decimal, &parsed));
    assert_int_equal (stream_hash_key_compare (&k, &parsed), 0);
  }
  /* Any 128-bit key, with zeros anywhere, formats to what parses back,
   * without leading zeros. */
  for (guint i = 0; i < 20000; i++) {
    StreamHashKey r, back;
    for (guint j = 0; j < 16; j++) {
      guint32 x = g_random_int ();
      r.bytes[j] = (guint8) (x % 5 == 0 ? 0 : x >> 8); /* many zero bytes */
    }
    guint top = g_random_int_range (0, 17); /* and numbers of every size */
    memset (r.bytes, 0, top);
    g_autofree char *text = stream_hash_key_format (&r);
    assert_true (text[0] != '0' || text[1] == '\0');
    assert_true (stream_hash_key_parse (text, &back));
    assert_int_equal (stream_hash_key_compare (&r, &back), 0);
  }
  StreamHashKey k;
  assert_true (stream_hash_key_parse ("340282366920938463463374607431768211455", &k));
  g_autofree char *max = stream_hash_key_format (&k);
  assert_string_equal (max, "340282366920938463463374607431768211455");
  assert_true (stream_hash_key_parse ("10000000000000000000", &k)); /* 10^19: a chunk's edge */
  g_autofree char *edge = stream_hash_key_format (&k);
  assert_string_equal (edge, "10000000000000000000");
  assert_false (stream_hash_key_parse ("340282366920938463463374607431768211456", &k));
  assert_false (stream_hash_key_parse ("-1", &k));
  assert_false (stream_hash_key_parse ("12a", &k));
  assert_false (stream_hash_key_parse ("", &k));
}

static void
test_hash_ranges_match_kinesis (void **state)
{
  static const struct {
    guint index, count;
    const char *start, *end;
  } ranges[] = {
    { 0, 1, "0", "340282366920938463463374607431768211455" },
    { 0, 2, "0", "170141183460469231731687303715884105727" },
    { 1, 2, "170141183460469231731687303715884105728", "340282366920938463463374607431768211455" },
    { 0, 3, "0", "113427455640312821154458202477256070484" },
    { 1, 3, "113427455640312821154458202477256070485", "226854911280625642308916404954512140969" },
    { 2, 3, "226854911280625642308916404954512140970", "340282366920938463463374607431768211455" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (ranges); i++) {
    StreamHashKey s, e;
    stream_hash_key_range (ranges[i].index, ranges[i].count, &s, &e);
    g_autofree char *start = stream_hash_key_format (&s);
    g_autofree char *end = stream_hash_key_format (&e);
    assert_string_equal (start, ranges[i].start);
    assert_string_equal (end, ranges[i].end);
  }
}

static void
test_sequence_numbers (void **state)
{
  g_autofree char *a = stream_sequence_format (0, 0);
  g_autofree char *b = stream_sequence_format (7, 12345);
  assert_string_equal (a, "1208925819614629174706176");
  assert_string_equal (b, "9671406556917033397661753");
  guint32 ordinal;
  guint64 number;
  assert_true (stream_sequence_parse (b, &ordinal, &number));
  assert_int_equal (ordinal, 7);
  assert_int_equal (number, 12345);
  /* Strictly increasing within a shard, as numbers and as the strings compare by length. */
  g_autofree char *c = stream_sequence_format (0, 1);
  g_autofree char *d = stream_sequence_format (0, G_MAXUINT64);
  assert_true (strlen (a) == strlen (c) && strcmp (a, c) < 0);
  assert_true (stream_sequence_parse (d, &ordinal, &number));
  assert_true (number == G_MAXUINT64 && ordinal == 0);
  assert_false (stream_sequence_parse ("12345", NULL, NULL)); /* no shard part */
  assert_false (stream_sequence_parse ("abc", NULL, NULL));
  assert_false (stream_sequence_parse ("", NULL, NULL));
}

/* ---- the log ---- */

typedef struct {
  char *root;
  char *dir;
  char *key_path;
  EdgeKeyring *keyring;
} Fixture;

static int
setup (void **state)
{
  Fixture *f = g_new0 (Fixture, 1);
  f->root = g_dir_make_tmp ("edged-log-XXXXXX", NULL);
  f->dir = g_build_filename (f->root, "shard-0", NULL);
  f->key_path = g_build_filename (f->root, "master.key", NULL);
  f->keyring = edge_keyring_open (f->key_path, TRUE, NULL);
  assert_non_null (f->keyring);
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  Fixture *f = *state;
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", f->root);
  assert_int_equal (system (cmd), 0);
  edge_keyring_free (f->keyring);
  g_free (f->root);
  g_free (f->dir);
  g_free (f->key_path);
  g_free (f);
  return 0;
}

static StreamLog *
open_log (Fixture *f, gint64 segment_bytes)
{
  g_autoptr (GError) error = NULL;
  StreamLogOptions options = { f->dir, 3, f->keyring, "stream/test", segment_bytes };
  StreamLog *log = stream_log_open (&options, &error);
  if (log == NULL)
    fail_msg ("open: %s", error->message);
  return log;
}

/* Record i: key "k<i>", data "record <i>" repeated i % 7 + 1 times. */
static GBytes *
record_data (guint64 i)
{
  GString *s = g_string_new (NULL);
  for (guint r = 0; r <= i % 7; r++)
    g_string_append_printf (s, "record %" G_GUINT64_FORMAT ";", i);
  gsize len = s->len;
  return g_bytes_new_take (g_string_free (s, FALSE), len);
}

/* Appends records [from, from + n) in batches of @batch. */
static void
append_records (StreamLog *log, guint64 from, guint n, guint batch, gint64 arrival)
{
  for (guint done = 0; done < n;) {
    guint k = MIN (batch, n - done);
    g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
    g_autoptr (GPtrArray) data = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
    for (guint i = 0; i < k; i++) {
      g_ptr_array_add (keys, g_strdup_printf ("k%" G_GUINT64_FORMAT, from + done + i));
      g_ptr_array_add (data, record_data (from + done + i));
    }
    guint64 first = 0;
    g_autoptr (GError) error = NULL;
    if (!stream_log_append (log, (const char *const *) keys->pdata, (GBytes *const *) data->pdata,
                            NULL, k, arrival, &first, &error))
      fail_msg ("append: %s", error->message);
    assert_int_equal (first, from + done);
    done += k;
  }
}

/* Reads from @from and checks that records [from, to) come back exactly. */
static void
check_range (StreamLog *log, guint64 from, guint64 to)
{
  guint64 next = from;
  while (next < to) {
    g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_record_free);
    g_autoptr (GError) error = NULL;
    guint64 after;
    if (!stream_log_read (log, next, 1000, 1 << 20, out, &after, &error))
      fail_msg ("read at %" G_GUINT64_FORMAT ": %s", next, error->message);
    assert_true (out->len > 0);
    for (guint i = 0; i < out->len; i++) {
      StreamRecord *r = g_ptr_array_index (out, i);
      g_autofree char *key = g_strdup_printf ("k%" G_GUINT64_FORMAT, next);
      g_autoptr (GBytes) expected = record_data (next);
      assert_int_equal (r->number, next);
      assert_string_equal (r->partition_key, key);
      assert_true (g_bytes_equal (r->data, expected));
      next++;
    }
    assert_int_equal (after, next);
    if (next > to)
      fail_msg ("read past %" G_GUINT64_FORMAT, to);
  }
  assert_int_equal (next, to);
}

/* As check_range, and nothing comes after @to. */
static void
check_records (StreamLog *log, guint64 from, guint64 to)
{
  check_range (log, from, to);
  g_autoptr (GPtrArray) none = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_record_free);
  guint64 after = 0;
  assert_true (stream_log_read (log, to, 10, 1 << 20, none, &after, NULL));
  assert_int_equal (none->len, 0);
  assert_int_equal (after, to);
}

static void
test_round_trip_and_reopen (void **state)
{
  Fixture *f = *state;
  StreamLog *log = open_log (f, 0);
  assert_int_equal (stream_log_next_number (log), 0);
  append_records (log, 0, 1000, 37, 1000);
  assert_true (stream_log_sync (log, NULL));
  check_records (log, 0, 1000);
  check_records (log, 555, 1000);
  stream_log_close (log);

  log = open_log (f, 0);
  assert_int_equal (stream_log_next_number (log), 1000);
  append_records (log, 1000, 10, 3, 2000);
  check_records (log, 0, 1010);
  /* Limits: record count and bytes, and at least one record. */
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_record_free);
  guint64 next;
  assert_true (stream_log_read (log, 0, 5, 1 << 20, out, &next, NULL));
  assert_int_equal (out->len, 5);
  assert_int_equal (next, 5);
  g_ptr_array_set_size (out, 0);
  assert_true (stream_log_read (log, 0, 1000, 1, out, &next, NULL));
  assert_int_equal (out->len, 1);
  stream_log_close (log);
}

static void
test_no_payload_in_the_clear (void **state)
{
  Fixture *f = *state;
  StreamLog *log = open_log (f, 0);
  const char *keys[] = { "sensor-42" };
  g_autoptr (GBytes) data = g_bytes_new_static ("TEMPERATURE=21.5C", 17);
  assert_true (stream_log_append (log, keys, &data, NULL, 1, 5, NULL, NULL));
  stream_log_close (log);
  g_autofree char *path = g_build_filename (f->dir, "00000000000000000000.seg", NULL);
  g_autofree char *contents = NULL;
  gsize len;
  assert_true (g_file_get_contents (path, &contents, &len, NULL));
  assert_null (memmem (contents, len, "TEMPERATURE", 11));
  assert_null (memmem (contents, len, "sensor-42", 9));
}

/* Attributes ride beside some records of a batch, sealed like the data,
 * and come back with them (and not with the others) after a reopen. */
static void
test_attributes (void **state)
{
  Fixture *f = *state;
  StreamLog *log = open_log (f, 0);
  const char *keys[] = { "a", "b", "c" };
  g_autoptr (GBytes) d0 = g_bytes_new_static ("zero", 4);
  g_autoptr (GBytes) d1 = g_bytes_new_static ("", 0);
  g_autoptr (GBytes) d2 = g_bytes_new_static ("two", 3);
  GBytes *data[] = { d0, d1, d2 };
  g_autoptr (GBytes) a0 = g_bytes_new_static ("{\"topic\":\"SECRET/t\"}", 20);
  g_autoptr (GBytes) a2 = g_bytes_new_static ("{}", 2);
  GBytes *attributes[] = { a0, NULL, a2 };
  assert_true (stream_log_append (log, keys, data, attributes, 3, 7, NULL, NULL));
  assert_true (stream_log_append (log, keys, data, NULL, 1, 8, NULL, NULL));
  stream_log_close (log);
  g_autofree char *path = g_build_filename (f->dir, "00000000000000000000.seg", NULL);
  g_autofree char *contents = NULL;
  gsize len;
  assert_true (g_file_get_contents (path, &contents, &len, NULL));
  assert_null (memmem (contents, len, "SECRET", 6));

  log = open_log (f, 0);
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_record_free);
  guint64 next = 0;
  assert_true (stream_log_read (log, 0, 100, 1 << 20, out, &next, NULL));
  assert_int_equal (out->len, 4);
  StreamRecord *r = out->pdata[0];
  assert_non_null (r->attributes);
  assert_memory_equal (g_bytes_get_data (r->attributes, NULL), "{\"topic\":\"SECRET/t\"}", 20);
  assert_memory_equal (g_bytes_get_data (r->data, NULL), "zero", 4);
  r = out->pdata[1];
  assert_null (r->attributes);
  assert_int_equal (g_bytes_get_size (r->data), 0);
  r = out->pdata[2];
  assert_int_equal (g_bytes_get_size (r->attributes), 2);
  assert_string_equal (r->partition_key, "c");
  assert_null (((StreamRecord *) out->pdata[3])->attributes);
  stream_log_close (log);
}

static GPtrArray *
segment_files (Fixture *f)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GDir) dir = g_dir_open (f->dir, 0, NULL);
  const char *name;
  while ((name = g_dir_read_name (dir)))
    g_ptr_array_add (names, g_build_filename (f->dir, name, NULL));
  return names;
}

static void
test_segments_roll_and_retention (void **state)
{
  Fixture *f = *state;
  StreamLog *log = open_log (f, 4096);
  append_records (log, 0, 400, 10, 1000);
  append_records (log, 400, 400, 10, 5000);
  g_autoptr (GPtrArray) files = segment_files (f);
  assert_true (files->len > 10);
  check_records (log, 0, 800);
  stream_log_close (log);
  log = open_log (f, 4096);
  check_records (log, 0, 800);

  /* By time: everything that arrived before 5000 goes, whole segments only. */
  guint64 size_before = stream_log_size (log);
  guint removed = stream_log_trim (log, 5000, 0);
  assert_true (removed > 0);
  assert_true (stream_log_size (log) < size_before);
  guint64 first = stream_log_first_number (log);
  assert_true (first > 0 && first <= 400);
  check_records (log, first, 800);
  /* Reading a trimmed number continues from the oldest record kept. */
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_record_free);
  guint64 next;
  assert_true (stream_log_read (log, 0, 1, 1 << 20, out, &next, NULL));
  assert_int_equal (((StreamRecord *) g_ptr_array_index (out, 0))->number, first);
  /* By size. */
  stream_log_trim (log, 0, 8192);
  assert_true (stream_log_size (log) <= 8192 + 4096);
  assert_int_equal (stream_log_next_number (log), 800);
  /* Finding by time. */
  assert_int_equal (stream_log_find_time (log, 999999), 800);
  stream_log_close (log);
}

/* The torn-write fault: a crash at any byte of the last batch's write. */
static void
test_torn_tail_cut_at_every_byte (void **state)
{
  Fixture *f = *state;
  StreamLog *log = open_log (f, 0);
  append_records (log, 0, 50, 10, 1000);
  stream_log_close (log);
  g_autofree char *path = g_build_filename (f->dir, "00000000000000000000.seg", NULL);
  struct stat st;
  assert_int_equal (stat (path, &st), 0);
  gsize good = (gsize) st.st_size;

  log = open_log (f, 0);
  append_records (log, 50, 5, 5, 2000);
  stream_log_close (log);
  g_autofree char *full = NULL;
  gsize full_len;
  assert_true (g_file_get_contents (path, &full, &full_len, NULL));
  assert_true (full_len > good);

  for (gsize cut = good; cut < full_len; cut++) {
    assert_true (g_file_set_contents_full (path, full, (gssize) cut, G_FILE_SET_CONTENTS_CONSISTENT,
                                           0600, NULL));
    log = open_log (f, 0);
    if (stream_log_next_number (log) != 50)
    {
      g_autofree char *cmd = g_strdup_printf ("ls -la '%s'", f->dir);
      if (system (cmd)) {}
      fail_msg ("cut at %zu of %zu (good %zu): next %" G_GUINT64_FORMAT, cut, full_len, good,
                stream_log_next_number (log));
    }
    check_records (log, 0, 50);
    stream_log_close (log);
    assert_int_equal (stat (path, &st), 0);
    assert_int_equal ((gsize) st.st_size, good); /* the tail was cut, durably */
  }
  /* Garbage after a whole batch is a torn tail too. */
  GString *junk = g_string_new_len (full, (gssize) full_len);
  g_string_append_len (junk, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0EDGF", 30);
  assert_true (g_file_set_contents_full (path, junk->str, (gssize) junk->len,
                                         G_FILE_SET_CONTENTS_CONSISTENT, 0600, NULL));
  g_string_free (junk, TRUE);
  log = open_log (f, 0);
  assert_int_equal (stream_log_next_number (log), 55);
  check_records (log, 0, 55);
  /* And appending after recovery continues the numbering. */
  append_records (log, 55, 5, 5, 3000);
  check_records (log, 0, 60);
  stream_log_close (log);
}

static void
test_tampering_detected_not_served (void **state)
{
  Fixture *f = *state;
  StreamLog *log = open_log (f, 0);
  append_records (log, 0, 30, 10, 1000); /* three batches */
  stream_log_close (log);
  g_autofree char *path = g_build_filename (f->dir, "00000000000000000000.seg", NULL);
  g_autofree char *contents = NULL;
  gsize len;
  assert_true (g_file_get_contents (path, &contents, &len, NULL));

  /* Flip one byte in the middle of the second batch's ciphertext. */
  gsize target = len / 2;
  contents[target] ^= 0x40;
  assert_true (g_file_set_contents_full (path, contents, (gssize) len, G_FILE_SET_CONTENTS_CONSISTENT,
                                         0600, NULL));
  log = open_log (f, 0);
  /* Not a torn tail: the good third batch after it stays. */
  assert_int_equal (stream_log_next_number (log), 30);
  check_range (log, 0, 10); /* the good records before the damage come back */
  check_records (log, 20, 30);
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_record_free);
  g_autoptr (GError) error = NULL;
  guint64 next = 999;
  assert_false (stream_log_read (log, 10, 100, 1 << 20, out, &next, &error));
  assert_int_equal (error->code, STREAM_ERROR_CORRUPT);
  assert_non_null (strstr (error->message, "records 10..19"));
  assert_int_equal (out->len, 0);
  assert_int_equal (next, 999);
  stream_log_close (log);

  /* A tampered batch header (a record number) fails the tag as well. */
  contents[target] ^= 0x40;
  contents[92 + 7] ^= 0x01; /* first batch's first record number, low byte */
  assert_true (g_file_set_contents_full (path, contents, (gssize) len, G_FILE_SET_CONTENTS_CONSISTENT,
                                         0600, NULL));
  log = open_log (f, 0);
  g_ptr_array_set_size (out, 0);
  g_clear_error (&error);
  assert_false (stream_log_read (log, 0, 100, 1 << 20, out, &next, &error) && out->len > 0);
  stream_log_close (log);
}

static void
test_batch_moved_to_another_shard_does_not_open (void **state)
{
  Fixture *f = *state;
  StreamLog *log = open_log (f, 0);
  append_records (log, 0, 5, 5, 1000);
  stream_log_close (log);
  /* The same file presented as shard 4's: its header says shard 3. */
  g_autoptr (GError) error = NULL;
  StreamLogOptions options = { f->dir, 4, f->keyring, "stream/test", 0 };
  StreamLog *other = stream_log_open (&options, &error);
  assert_null (other);
  assert_int_equal (error->code, STREAM_ERROR_CORRUPT);
  /* Other keys (another stream's, or the wrong master key file) are
   * refused before anything is touched: not mistaken for a torn tail. */
  g_autofree char *path = g_build_filename (f->dir, "00000000000000000000.seg", NULL);
  struct stat before, after;
  assert_int_equal (stat (path, &before), 0);
  g_clear_error (&error);
  StreamLogOptions wrong = { f->dir, 3, f->keyring, "stream/other", 0 };
  other = stream_log_open (&wrong, &error);
  assert_null (other);
  assert_int_equal (error->code, STREAM_ERROR_WRONG_KEY);
  assert_non_null (strstr (error->message, "nothing was changed"));
  g_autofree char *other_key = g_build_filename (f->root, "other.key", NULL);
  g_autoptr (EdgeKeyring) other_ring = edge_keyring_open (other_key, TRUE, NULL);
  StreamLogOptions wrong_file = { f->dir, 3, other_ring, "stream/test", 0 };
  g_clear_error (&error);
  other = stream_log_open (&wrong_file, &error);
  assert_null (other);
  assert_int_equal (error->code, STREAM_ERROR_WRONG_KEY);
  assert_int_equal (stat (path, &after), 0);
  assert_int_equal (before.st_size, after.st_size);
  log = open_log (f, 0);
  check_records (log, 0, 5);
  stream_log_close (log);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_hash_keys),
    cmocka_unit_test (test_hash_ranges_match_kinesis),
    cmocka_unit_test (test_sequence_numbers),
    cmocka_unit_test_setup_teardown (test_round_trip_and_reopen, setup, teardown),
    cmocka_unit_test_setup_teardown (test_no_payload_in_the_clear, setup, teardown),
    cmocka_unit_test_setup_teardown (test_attributes, setup, teardown),
    cmocka_unit_test_setup_teardown (test_segments_roll_and_retention, setup, teardown),
    cmocka_unit_test_setup_teardown (test_torn_tail_cut_at_every_byte, setup, teardown),
    cmocka_unit_test_setup_teardown (test_tampering_detected_not_served, setup, teardown),
    cmocka_unit_test_setup_teardown (test_batch_moved_to_another_shard_does_not_open, setup,
                                     teardown),
  };
  return cmocka_run_group_tests_name ("stream-log", tests, NULL, NULL);
}
