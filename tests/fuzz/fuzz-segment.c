/* Fuzzes shard-log recovery: the input is what follows a valid segment
 * header on disk (batches, torn tails, garbage). Opening must recover or
 * refuse, never crash, and reading must return only authentic records. */
#include "stream.h"

#include <glib/gstdio.h>
#include <stdint.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static char *root, *dir, *segment;
static EdgeKeyring *keyring;
static guint8 header[256];
static gsize header_len;

static void
init (void)
{
  root = g_dir_make_tmp ("edged-fuzz-seg-XXXXXX", NULL);
  dir = g_build_filename (root, "shard-0", NULL);
  segment = g_build_filename (dir, "00000000000000000000.seg", NULL);
  g_autofree char *key_path = g_build_filename (root, "master.key", NULL);
  /* A fixed key, so that saved inputs mean the same thing on every run. */
  if (!g_file_set_contents_full (key_path,
                                 "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
                                 -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, NULL))
    __builtin_trap ();
  keyring = edge_keyring_open (key_path, FALSE, NULL);
  StreamLogOptions options = { dir, 0, keyring, "stream/fuzz", 0 };
  StreamLog *log = stream_log_open (&options, NULL);
  if (log == NULL)
    __builtin_trap ();
  stream_log_close (log);
  g_autofree char *contents = NULL;
  if (!g_file_get_contents (segment, &contents, &header_len, NULL) || header_len > sizeof header)
    __builtin_trap ();
  memcpy (header, contents, header_len);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (keyring == NULL)
    init ();
  GString *file = g_string_new_len ((const char *) header, (gssize) header_len);
  g_string_append_len (file, (const char *) data, (gssize) size);
  if (!g_file_set_contents_full (segment, file->str, (gssize) file->len,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600, NULL))
    __builtin_trap ();
  g_string_free (file, TRUE);

  StreamLogOptions options = { dir, 0, keyring, "stream/fuzz", 0 };
  StreamLog *log = stream_log_open (&options, NULL);
  if (log != NULL) {
    GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_record_free);
    guint64 next = 0;
    stream_log_read (log, 0, 100, 1 << 20, out, &next, NULL);
    g_ptr_array_unref (out);
    stream_log_close (log);
  }
  return 0;
}
