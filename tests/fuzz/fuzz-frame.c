/* Fuzzes frame opening and sealed-stream opening on attacker-controlled
 * bytes (a tampered file). Nothing may open except what was sealed. */
#include "edge-core.h"

#include <stdint.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static EdgeKeyring *keyring;
static EdgeCipher *cipher;

static void
init (void)
{
  char dir[] = "/tmp/edged-fuzz-XXXXXX";
  if (mkdtemp (dir) == NULL)
    __builtin_trap ();
  char *path = g_build_filename (dir, "master.key", NULL);
  keyring = edge_keyring_open (path, TRUE, NULL);
  cipher = keyring ? edge_cipher_new (keyring, "fuzz", NULL) : NULL;
  if (cipher == NULL)
    __builtin_trap ();
  unlink (path);
  rmdir (dir);
  g_free (path);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (cipher == NULL)
    init ();
  if (size >= EDGE_FRAME_OVERHEAD) {
    guint8 *out = g_malloc (size - EDGE_FRAME_OVERHEAD + 1);
    gsize len;
    /* Random bytes never authenticate under our key. */
    if (edge_cipher_open (cipher, data, size, NULL, 0, out, &len, NULL))
      __builtin_trap ();
    g_free (out);
  }
  edge_frame_length (data, size, NULL);

  EdgeOpenStream *stream = edge_open_stream_new (cipher, NULL, 0);
  GByteArray *plain = g_byte_array_new ();
  if (edge_open_stream_write (stream, data, size, plain, NULL) &&
      edge_open_stream_finish (stream, NULL))
    __builtin_trap ();
  g_byte_array_unref (plain);
  edge_open_stream_free (stream);
  return 0;
}
