/* Keys and frames: round trips, every flipped bit rejected, wrong key and
 * wrong context rejected, nonces unique, key rotation, sealed streams that
 * detect truncation, reordering and splicing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "edge-core.h"

#include <glib/gstdio.h>
#include <sys/stat.h>

typedef struct {
  char *dir;
  char *key_path;
  EdgeKeyring *keyring;
} Fixture;

static int
setup (void **state)
{
  Fixture *f = g_new0 (Fixture, 1);
  g_autoptr (GError) error = NULL;
  f->dir = g_dir_make_tmp ("edged-crypto-XXXXXX", NULL);
  f->key_path = g_build_filename (f->dir, "master.key", NULL);
  f->keyring = edge_keyring_open (f->key_path, TRUE, &error);
  assert_non_null (f->keyring);
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  Fixture *f = *state;
  edge_keyring_free (f->keyring);
  g_unlink (f->key_path);
  g_rmdir (f->dir);
  g_free (f->key_path);
  g_free (f->dir);
  g_free (f);
  return 0;
}

static GBytes *
seal (EdgeCipher *cipher, const guint8 *data, gsize len, const char *aad)
{
  guint8 *out = g_malloc (len + EDGE_FRAME_OVERHEAD);
  g_autoptr (GError) error = NULL;
  assert_true (edge_cipher_seal (cipher, data, len, (const guint8 *) aad, aad ? strlen (aad) : 0,
                                 out, &error));
  return g_bytes_new_take (out, len + EDGE_FRAME_OVERHEAD);
}

/* Opens @frame; returns the plaintext or NULL, with the error code in *ret_code. */
static GBytes *
open_frame (EdgeCipher *cipher, GBytes *frame, const char *aad, int *ret_code)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (frame, &len);
  guint8 *out = g_malloc (len >= EDGE_FRAME_OVERHEAD ? len - EDGE_FRAME_OVERHEAD + 1 : 1);
  gsize plain_len = 12345;
  g_autoptr (GError) error = NULL;
  if (!edge_cipher_open (cipher, data, len, (const guint8 *) aad, aad ? strlen (aad) : 0, out,
                         &plain_len, &error)) {
    assert_int_equal (plain_len, 12345); /* untouched on failure */
    if (ret_code)
      *ret_code = error->code;
    g_free (out);
    return NULL;
  }
  return g_bytes_new_take (out, plain_len);
}

static void
test_key_file_created_private (void **state)
{
  Fixture *f = *state;
  struct stat st;
  assert_int_equal (stat (f->key_path, &st), 0);
  assert_int_equal (st.st_mode & 0777, 0600);
  assert_int_equal (edge_keyring_count (f->keyring), 1);
  assert_int_equal (edge_keyring_active_id (f->keyring), 1);

  /* Reopening reads the same key: a frame sealed before opens after. */
  g_autoptr (EdgeCipher) a = edge_cipher_new (f->keyring, "stream/x", NULL);
  g_autoptr (GBytes) frame = seal (a, (const guint8 *) "hello", 5, NULL);
  g_autoptr (EdgeKeyring) again = edge_keyring_open (f->key_path, FALSE, NULL);
  assert_non_null (again);
  g_autoptr (EdgeCipher) b = edge_cipher_new (again, "stream/x", NULL);
  g_autoptr (GBytes) plain = open_frame (b, frame, NULL, NULL);
  assert_non_null (plain);
  assert_memory_equal (g_bytes_get_data (plain, NULL), "hello", 5);
}

static void
test_loose_key_file_refused (void **state)
{
  Fixture *f = *state;
  g_autoptr (GError) error = NULL;
  assert_int_equal (chmod (f->key_path, 0644), 0);
  g_autoptr (EdgeKeyring) k = edge_keyring_open (f->key_path, FALSE, &error);
  assert_null (k);
  assert_int_equal (error->code, EDGE_CRYPTO_ERROR_KEY_FILE);
  assert_non_null (strstr (error->message, "mode 0644"));
  assert_non_null (strstr (error->message, "chmod 600"));
  chmod (f->key_path, 0600);

  /* Missing without create: an error naming the file. */
  g_clear_error (&error);
  g_autoptr (EdgeKeyring) none = edge_keyring_open ("/nonexistent/master.key", FALSE, &error);
  assert_null (none);
  assert_non_null (strstr (error->message, "/nonexistent/master.key"));
}

static void
test_malformed_key_file (void **state)
{
  Fixture *f = *state;
  static const char *const bad[] = {
    "1 abcd\n",
    "x 0000000000000000000000000000000000000000000000000000000000000000\n",
    "1 zz00000000000000000000000000000000000000000000000000000000000000\n",
    ("1 0000000000000000000000000000000000000000000000000000000000000000\n"
     "1 1111111111111111111111111111111111111111111111111111111111111111\n"),
    "# only a comment\n",
  };
  g_autofree char *path = g_build_filename (f->dir, "bad.key", NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    assert_true (g_file_set_contents_full (path, bad[i], -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, NULL));
    g_autoptr (EdgeKeyring) k = edge_keyring_open (path, FALSE, &error);
    if (k != NULL)
      fail_msg ("key file %zu accepted", i);
    assert_int_equal (error->code, EDGE_CRYPTO_ERROR_KEY_FILE);
  }
  g_unlink (path);
}

static void
test_round_trip_sizes (void **state)
{
  Fixture *f = *state;
  static const gsize sizes[] = { 0, 1, 15, 16, 17, 255, 4096, 65537, 1 << 20 };
  g_autoptr (EdgeCipher) cipher = edge_cipher_new (f->keyring, "camera/door", NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (sizes); i++) {
    g_autofree guint8 *data = g_malloc (sizes[i] + 1);
    for (gsize j = 0; j < sizes[i]; j++)
      data[j] = (guint8) (j * 31 + i);
    g_autoptr (GBytes) frame = seal (cipher, data, sizes[i], "aad");
    assert_int_equal (g_bytes_get_size (frame), sizes[i] + EDGE_FRAME_OVERHEAD);
    assert_int_equal (edge_frame_length (g_bytes_get_data (frame, NULL), g_bytes_get_size (frame),
                                         NULL),
                      sizes[i] + EDGE_FRAME_OVERHEAD);
    /* No plaintext byte run survives into the frame. */
    if (sizes[i] >= 16)
      assert_null (memmem (g_bytes_get_data (frame, NULL), g_bytes_get_size (frame), data, 16));
    g_autoptr (GBytes) plain = open_frame (cipher, frame, "aad", NULL);
    assert_non_null (plain);
    assert_int_equal (g_bytes_get_size (plain), sizes[i]);
    if (sizes[i])
      assert_memory_equal (g_bytes_get_data (plain, NULL), data, sizes[i]);
  }
}

static void
test_every_flipped_bit_rejected (void **state)
{
  Fixture *f = *state;
  g_autoptr (EdgeCipher) cipher = edge_cipher_new (f->keyring, "stream/sensors", NULL);
  static const char payload[] = "temperature=21.5 humidity=40";
  g_autoptr (GBytes) frame = seal (cipher, (const guint8 *) payload, sizeof payload, NULL);
  gsize len;
  const guint8 *data = g_bytes_get_data (frame, &len);
  guint rejected = 0;

  for (gsize bit = 0; bit < len * 8; bit++) {
    g_autofree guint8 *copy = g_memdup2 (data, len);
    copy[bit / 8] ^= (guint8) (1u << (bit % 8));
    g_autoptr (GBytes) tampered = g_bytes_new (copy, len);
    g_autoptr (GBytes) plain = open_frame (cipher, tampered, NULL, NULL);
    if (plain != NULL)
      fail_msg ("flipping bit %zu (byte %zu) went undetected", bit, bit / 8);
    rejected++;
  }
  assert_int_equal (rejected, len * 8);

  /* Truncated and extended frames too. */
  for (gsize cut = 0; cut < len; cut += 7) {
    g_autoptr (GBytes) shorter = g_bytes_new (data, cut);
    g_autoptr (GBytes) plain = open_frame (cipher, shorter, NULL, NULL);
    assert_null (plain);
  }
  g_autofree guint8 *longer = g_malloc0 (len + 1);
  memcpy (longer, data, len);
  g_autoptr (GBytes) extended = g_bytes_new (longer, len + 1);
  int code = -1;
  assert_null (open_frame (cipher, extended, NULL, &code));
  assert_int_equal (code, EDGE_CRYPTO_ERROR_FORMAT);
}

static void
test_wrong_key_context_or_aad_rejected (void **state)
{
  Fixture *f = *state;
  g_autoptr (EdgeCipher) cipher = edge_cipher_new (f->keyring, "stream/a", NULL);
  g_autoptr (GBytes) frame = seal (cipher, (const guint8 *) "secret", 6, "shard-0");
  int code = -1;

  /* Another master key (same id 1, different bytes). */
  g_autofree char *other_path = g_build_filename (f->dir, "other.key", NULL);
  g_autoptr (EdgeKeyring) other = edge_keyring_open (other_path, TRUE, NULL);
  g_autoptr (EdgeCipher) wrong_key = edge_cipher_new (other, "stream/a", NULL);
  assert_null (open_frame (wrong_key, frame, "shard-0", &code));
  assert_int_equal (code, EDGE_CRYPTO_ERROR_AUTH);
  g_unlink (other_path);

  /* Same key, another context. */
  g_autoptr (EdgeCipher) wrong_context = edge_cipher_new (f->keyring, "stream/b", NULL);
  assert_null (open_frame (wrong_context, frame, "shard-0", &code));
  assert_int_equal (code, EDGE_CRYPTO_ERROR_AUTH);

  /* Same key and context, other AAD. */
  assert_null (open_frame (cipher, frame, "shard-1", &code));
  assert_int_equal (code, EDGE_CRYPTO_ERROR_AUTH);
  assert_null (open_frame (cipher, frame, NULL, &code));

  /* And the right one still works. */
  g_autoptr (GBytes) plain = open_frame (cipher, frame, "shard-0", NULL);
  assert_non_null (plain);
}

static void
test_nonces_never_repeat (void **state)
{
  Fixture *f = *state;
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_bytes_hash, g_bytes_equal,
                                                       (GDestroyNotify) g_bytes_unref, NULL);
  guint8 frame[EDGE_FRAME_OVERHEAD + 1];
  guint total = 0;

  /* Many frames from one cipher, and frames from many ciphers of the same
   * context (as after many restarts): the (key id, salt, nonce) that picks
   * the AES-GCM key and nonce is never the same twice. */
  for (guint c = 0; c < 20; c++) {
    g_autoptr (EdgeCipher) cipher = edge_cipher_new (f->keyring, "stream/hot", NULL);
    guint n = c == 0 ? 200000 : 1000;
    for (guint i = 0; i < n; i++) {
      assert_true (edge_cipher_seal (cipher, (const guint8 *) "x", 1, NULL, 0, frame, NULL));
      GBytes *id = g_bytes_new (frame + 8, 4 + 16 + 12);
      if (!g_hash_table_add (seen, id))
        fail_msg ("nonce repeated at cipher %u frame %u", c, i);
      total++;
    }
  }
  assert_int_equal (g_hash_table_size (seen), total);
}

static void
test_rotation_keeps_old_frames_readable (void **state)
{
  Fixture *f = *state;
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeCipher) before = edge_cipher_new (f->keyring, "camera/yard", NULL);
  g_autoptr (GBytes) old_frame = seal (before, (const guint8 *) "old", 3, NULL);

  assert_true (edge_keyring_rotate (f->keyring, &error));
  assert_int_equal (edge_keyring_active_id (f->keyring), 2);
  assert_int_equal (edge_keyring_count (f->keyring), 2);

  g_autoptr (EdgeKeyring) reopened = edge_keyring_open (f->key_path, FALSE, &error);
  assert_non_null (reopened);
  assert_int_equal (edge_keyring_active_id (reopened), 2);
  g_autoptr (EdgeCipher) after = edge_cipher_new (reopened, "camera/yard", NULL);
  g_autoptr (GBytes) new_frame = seal (after, (const guint8 *) "new", 3, NULL);
  /* The new frame names key 2 in its header. */
  const guint8 *h = g_bytes_get_data (new_frame, NULL);
  assert_int_equal (h[8] << 24 | h[9] << 16 | h[10] << 8 | h[11], 2);

  g_autoptr (GBytes) a = open_frame (after, old_frame, NULL, NULL);
  g_autoptr (GBytes) b = open_frame (after, new_frame, NULL, NULL);
  assert_non_null (a);
  assert_non_null (b);
  assert_memory_equal (g_bytes_get_data (a, NULL), "old", 3);

  /* A keyring without key 2 names the missing key. */
  g_autofree char *lone_path = g_build_filename (f->dir, "lone.key", NULL);
  g_autoptr (EdgeKeyring) lone = edge_keyring_open (lone_path, TRUE, NULL);
  g_autoptr (EdgeCipher) lone_cipher = edge_cipher_new (lone, "camera/yard", NULL);
  int code = -1;
  assert_null (open_frame (lone_cipher, new_frame, NULL, &code));
  assert_int_equal (code, EDGE_CRYPTO_ERROR_UNKNOWN_KEY);
  g_unlink (lone_path);
}

/* Seals @len bytes as a stream and returns the sealed bytes. */
static GByteArray *
seal_stream (EdgeCipher *cipher, const guint8 *data, gsize len, gsize chunk, const char *aad)
{
  g_autoptr (EdgeSealStream) s = edge_seal_stream_new (cipher, (const guint8 *) aad, strlen (aad),
                                                       chunk);
  GByteArray *out = g_byte_array_new ();
  /* Feed in uneven pieces. */
  for (gsize off = 0; off < len;) {
    gsize piece = MIN (len - off, 1 + (off * 7919) % 5000);
    assert_true (edge_seal_stream_write (s, data + off, piece, out, NULL));
    off += piece;
  }
  assert_true (edge_seal_stream_finish (s, out, NULL));
  return out;
}

/* Opens @sealed fed in pieces of @step; returns the error code, or -1 when
 * it opened completely into @plain. */
static int
open_stream (EdgeCipher *cipher, const guint8 *sealed, gsize len, gsize step, const char *aad,
             GByteArray *plain)
{
  g_autoptr (EdgeOpenStream) s = edge_open_stream_new (cipher, (const guint8 *) aad, strlen (aad));
  g_autoptr (GError) error = NULL;
  for (gsize off = 0; off < len; off += step) {
    if (!edge_open_stream_write (s, sealed + off, MIN (step, len - off), plain, &error))
      return error->code;
  }
  if (!edge_open_stream_finish (s, &error))
    return error->code;
  return -1;
}

static void
test_sealed_stream (void **state)
{
  Fixture *f = *state;
  g_autoptr (EdgeCipher) cipher = edge_cipher_new (f->keyring, "camera/door", NULL);
  gsize len = 300000, chunk = 65536;
  g_autofree guint8 *data = g_malloc (len);
  for (gsize i = 0; i < len; i++)
    data[i] = (guint8) g_random_int ();

  g_autoptr (GByteArray) sealed = seal_stream (cipher, data, len, chunk, "fragment 7");
  gsize frame = chunk + EDGE_FRAME_OVERHEAD;
  guint n_chunks = (len + chunk - 1) / chunk;
  assert_int_equal (sealed->len, len + n_chunks * EDGE_FRAME_OVERHEAD);

  static const gsize steps[] = { 1, 13, 4096, 1 << 20 };
  for (gsize i = 0; i < G_N_ELEMENTS (steps); i++) {
    g_autoptr (GByteArray) plain = g_byte_array_new ();
    assert_int_equal (open_stream (cipher, sealed->data, sealed->len, steps[i], "fragment 7", plain),
                      -1);
    assert_int_equal (plain->len, len);
    assert_memory_equal (plain->data, data, len);
  }

  /* Truncated: the last chunk dropped. */
  g_autoptr (GByteArray) p1 = g_byte_array_new ();
  assert_int_equal (open_stream (cipher, sealed->data, sealed->len - (len % chunk) - EDGE_FRAME_OVERHEAD,
                                 4096, "fragment 7", p1),
                    EDGE_CRYPTO_ERROR_TRUNCATED);

  /* A middle chunk dropped. */
  g_autoptr (GByteArray) gap = g_byte_array_new ();
  g_byte_array_append (gap, sealed->data, frame);
  g_byte_array_append (gap, sealed->data + 2 * frame, sealed->len - 2 * frame);
  g_autoptr (GByteArray) p2 = g_byte_array_new ();
  assert_int_equal (open_stream (cipher, gap->data, gap->len, 4096, "fragment 7", p2),
                    EDGE_CRYPTO_ERROR_AUTH);

  /* Two chunks swapped. */
  g_autoptr (GByteArray) swapped = g_byte_array_new ();
  g_byte_array_append (swapped, sealed->data + frame, frame);
  g_byte_array_append (swapped, sealed->data, frame);
  g_byte_array_append (swapped, sealed->data + 2 * frame, sealed->len - 2 * frame);
  g_autoptr (GByteArray) p3 = g_byte_array_new ();
  assert_int_equal (open_stream (cipher, swapped->data, swapped->len, 4096, "fragment 7", p3),
                    EDGE_CRYPTO_ERROR_AUTH);

  /* A chunk spliced in from another stream sealed by the same cipher. */
  g_autoptr (GByteArray) other = seal_stream (cipher, data, len, chunk, "fragment 7");
  g_autoptr (GByteArray) spliced = g_byte_array_new ();
  g_byte_array_append (spliced, sealed->data, frame);
  g_byte_array_append (spliced, other->data + frame, frame);
  g_byte_array_append (spliced, sealed->data + 2 * frame, sealed->len - 2 * frame);
  g_autoptr (GByteArray) p4 = g_byte_array_new ();
  assert_int_equal (open_stream (cipher, spliced->data, spliced->len, 4096, "fragment 7", p4),
                    EDGE_CRYPTO_ERROR_AUTH);

  /* Wrong AAD. */
  g_autoptr (GByteArray) p5 = g_byte_array_new ();
  assert_int_equal (open_stream (cipher, sealed->data, sealed->len, 4096, "fragment 8", p5),
                    EDGE_CRYPTO_ERROR_AUTH);

  /* Trailing bytes after the final chunk. */
  g_autoptr (GByteArray) trailing = g_byte_array_new ();
  g_byte_array_append (trailing, sealed->data, sealed->len);
  g_byte_array_append (trailing, sealed->data, frame);
  g_autoptr (GByteArray) p6 = g_byte_array_new ();
  assert_int_not_equal (open_stream (cipher, trailing->data, trailing->len, 4096, "fragment 7", p6),
                        -1);

  /* A single frame is not a stream chunk, and a chunk is not a single frame. */
  g_autoptr (GBytes) single = seal (cipher, data, 100, NULL);
  g_autoptr (GByteArray) p7 = g_byte_array_new ();
  assert_int_equal (open_stream (cipher, g_bytes_get_data (single, NULL), g_bytes_get_size (single),
                                 4096, "", p7),
                    EDGE_CRYPTO_ERROR_FORMAT);
  g_autoptr (GBytes) chunk0 = g_bytes_new (sealed->data, frame);
  int code = -1;
  assert_null (open_frame (cipher, chunk0, "fragment 7", &code));
  assert_int_equal (code, EDGE_CRYPTO_ERROR_FORMAT);
}

static void
test_empty_sealed_stream (void **state)
{
  Fixture *f = *state;
  g_autoptr (EdgeCipher) cipher = edge_cipher_new (f->keyring, "x", NULL);
  g_autoptr (GByteArray) sealed = seal_stream (cipher, NULL, 0, 1024, "");
  assert_int_equal (sealed->len, EDGE_FRAME_OVERHEAD);
  g_autoptr (GByteArray) plain = g_byte_array_new ();
  assert_int_equal (open_stream (cipher, sealed->data, sealed->len, 7, "", plain), -1);
  assert_int_equal (plain->len, 0);
  /* Nothing at all is a truncated stream, not an empty one. */
  g_autoptr (GByteArray) none = g_byte_array_new ();
  assert_int_equal (open_stream (cipher, NULL, 0, 7, "", none), EDGE_CRYPTO_ERROR_TRUNCATED);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_key_file_created_private, setup, teardown),
    cmocka_unit_test_setup_teardown (test_loose_key_file_refused, setup, teardown),
    cmocka_unit_test_setup_teardown (test_malformed_key_file, setup, teardown),
    cmocka_unit_test_setup_teardown (test_round_trip_sizes, setup, teardown),
    cmocka_unit_test_setup_teardown (test_every_flipped_bit_rejected, setup, teardown),
    cmocka_unit_test_setup_teardown (test_wrong_key_context_or_aad_rejected, setup, teardown),
    cmocka_unit_test_setup_teardown (test_nonces_never_repeat, setup, teardown),
    cmocka_unit_test_setup_teardown (test_rotation_keeps_old_frames_readable, setup, teardown),
    cmocka_unit_test_setup_teardown (test_sealed_stream, setup, teardown),
    cmocka_unit_test_setup_teardown (test_empty_sealed_stream, setup, teardown),
  };
  return cmocka_run_group_tests_name ("crypto", tests, NULL, NULL);
}
