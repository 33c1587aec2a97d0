/* crypto.c: master keys and AES-256-GCM frames (docs/internals/crypto.md).
 *
 * Master key file (text, mode 0600, one key per line, the last is active):
 *
 *     # edged master keys ...
 *     1 3f9a...64 hex digits...
 *     2 c04e...
 *
 * Key derivation: a cipher for context C sealing under master key K with
 * session salt S uses
 *
 *     data_key = HKDF-SHA256(ikm = K, salt = S, info = "edged/v1/" || C)
 *
 * S is 16 random bytes drawn when the cipher is made, so every cipher (every
 * process start, every stream) seals under its own key and may count nonces
 * from zero: nonce = 4 zero bytes || 64-bit counter. A (key, nonce) pair can
 * only repeat if two ciphers draw the same 128-bit salt.
 *
 * Frame, all integers big-endian:
 *
 *      0       4       5       6       8              12
 *     +-------+-------+-------+-------+--------------+
 *     | magic "EDGF"  | ver=1 | flags | header len=44 |
 *     +---------------+-------+-------+--------------+
 *     | master key id (u32)                          |  8
 *     +----------------------------------------------+
 *     | session salt (16 bytes)                      | 12
 *     +----------------------------------------------+
 *     | nonce (12 bytes: 0000 || counter u64)        | 28
 *     +----------------------------------------------+
 *     | payload length N (u32)                       | 40
 *     +----------------------------------------------+
 *     | ciphertext (N bytes)                         | 44
 *     +----------------------------------------------+
 *     | GCM tag (16 bytes)                           | 44 + N
 *     +----------------------------------------------+
 *
 * The whole header is additional authenticated data, followed by the
 * caller's AAD; so every header bit and every payload bit is covered by the
 * tag. Flags: bit 0 STREAM (a chunk of a sealed stream), bit 1 FINAL (its last
 * chunk). A stream chunk's AAD also carries the stream id (the nonce counter
 * of chunk 0) and the chunk index, so chunks cannot be reordered, dropped or
 * spliced between streams without the tag failing.
 */
#define G_LOG_DOMAIN "core"

#include "edge-core.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

G_DEFINE_QUARK (edge-crypto-error-quark, edge_crypto_error)

#define MAGIC "EDGF"
#define FRAME_VERSION 1
#define FLAG_STREAM 0x01
#define FLAG_FINAL 0x02
#define SALT_BYTES 16
#define NONCE_BYTES 12
#define KEY_FILE_MAX_BYTES (64 * 1024)
#define KEYRING_MAX_KEYS 1000
#define DERIVED_CACHE_MAX 64

/* Offsets in the header. */
#define OFF_VERSION 4
#define OFF_FLAGS 5
#define OFF_HEADER_LEN 6
#define OFF_KEY_ID 8
#define OFF_SALT 12
#define OFF_NONCE 28
#define OFF_LENGTH 40

typedef struct {
  guint32 id;
  guint8 key[EDGE_KEY_BYTES];
} MasterKey;

struct _EdgeKeyring {
  char *path;
  GArray *keys; /* MasterKey, in file order; the last is active */
};

static void
keyring_clear_keys (GArray *keys)
{
  OPENSSL_cleanse (keys->data, keys->len * sizeof (MasterKey));
}

void
edge_keyring_free (EdgeKeyring *keyring)
{
  if (keyring == NULL)
    return;
  if (keyring->keys) {
    keyring_clear_keys (keyring->keys);
    g_array_unref (keyring->keys);
  }
  g_free (keyring->path);
  g_free (keyring);
}

static gboolean
keyring_parse (EdgeKeyring *keyring, const char *text, GError **error)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (guint n = 0; lines[n]; n++) {
    char *line = g_strstrip (lines[n]);
    g_auto (GStrv) fields = NULL;
    guint64 id;
    MasterKey key = { 0 };

    if (line[0] == '\0' || line[0] == '#')
      continue;
    fields = g_strsplit_set (line, " \t", -1);
    if (g_strv_length (fields) != 2 ||
        !g_ascii_string_to_unsigned (fields[0], 10, 1, G_MAXUINT32, &id, NULL) ||
        strlen (fields[1]) != 2 * EDGE_KEY_BYTES) {
      g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_KEY_FILE,
                   "%s:%u: expected \"ID HEX\" with a 64-digit hex key", keyring->path, n + 1);
      return FALSE;
    }
    for (guint i = 0; i < EDGE_KEY_BYTES; i++) {
      int hi = g_ascii_xdigit_value (fields[1][2 * i]);
      int lo = g_ascii_xdigit_value (fields[1][2 * i + 1]);
      if (hi < 0 || lo < 0) {
        OPENSSL_cleanse (&key, sizeof key);
        g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_KEY_FILE,
                     "%s:%u: the key is not hex", keyring->path, n + 1);
        return FALSE;
      }
      key.key[i] = (guint8) (hi << 4 | lo);
    }
    key.id = (guint32) id;
    for (guint i = 0; i < keyring->keys->len; i++) {
      if (g_array_index (keyring->keys, MasterKey, i).id == key.id) {
        OPENSSL_cleanse (&key, sizeof key);
        g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_KEY_FILE,
                     "%s:%u: key id %u appears twice", keyring->path, n + 1, key.id);
        return FALSE;
      }
    }
    if (keyring->keys->len >= KEYRING_MAX_KEYS) {
      OPENSSL_cleanse (&key, sizeof key);
      g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_KEY_FILE,
                   "%s: more than %u keys", keyring->path, KEYRING_MAX_KEYS);
      return FALSE;
    }
    g_array_append_val (keyring->keys, key);
    OPENSSL_cleanse (&key, sizeof key);
  }
  if (keyring->keys->len == 0) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_KEY_FILE, "%s: holds no key",
                 keyring->path);
    return FALSE;
  }
  return TRUE;
}

static GString *
keyring_format (EdgeKeyring *keyring)
{
  GString *out = g_string_new (
      "# edged master keys. Keep this file secret (mode 0600) and back it up apart from the\n"
      "# data directory: without it, encrypted streams and recordings cannot be read.\n"
      "# One key per line, \"ID HEX\"; the last line is the key new data is sealed with.\n");
  for (guint i = 0; i < keyring->keys->len; i++) {
    MasterKey *k = &g_array_index (keyring->keys, MasterKey, i);
    g_string_append_printf (out, "%u ", k->id);
    for (guint j = 0; j < EDGE_KEY_BYTES; j++)
      g_string_append_printf (out, "%02x", k->key[j]);
    g_string_append_c (out, '\n');
  }
  return out;
}

static void
string_free_cleansed (GString *s)
{
  OPENSSL_cleanse (s->str, s->allocated_len);
  g_string_free (s, TRUE);
}

/* Writes the key file atomically: a 0600 temporary in the same directory,
 * fsync, rename, fsync of the directory. */
static gboolean
keyring_write (EdgeKeyring *keyring, GError **error)
{
  GString *text = keyring_format (keyring);
  g_autofree char *tmp = g_strconcat (keyring->path, ".tmp", NULL);
  g_autofree char *dir = g_path_get_dirname (keyring->path);
  gboolean ok = FALSE;
  int fd;

  unlink (tmp);
  fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    goto fail;
  for (gsize off = 0; off < text->len;) {
    ssize_t n = write (fd, text->str + off, text->len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      close (fd);
      goto fail;
    }
    off += n;
  }
  if (fsync (fd) != 0) {
    close (fd);
    goto fail;
  }
  close (fd);
  if (rename (tmp, keyring->path) != 0)
    goto fail;
  fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync (fd);
    close (fd);
  }
  ok = TRUE;
fail:
  if (!ok) {
    int saved = errno;
    unlink (tmp);
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_IO, "cannot write %s: %s",
                 keyring->path, g_strerror (saved));
  }
  string_free_cleansed (text);
  return ok;
}

static gboolean
keyring_add_random (EdgeKeyring *keyring, GError **error)
{
  MasterKey key = { 0 };
  guint32 next = 1;
  for (guint i = 0; i < keyring->keys->len; i++)
    next = MAX (next, g_array_index (keyring->keys, MasterKey, i).id + 1);
  key.id = next;
  if (RAND_bytes (key.key, sizeof key.key) != 1) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_INTERNAL,
                 "the random generator failed");
    return FALSE;
  }
  g_array_append_val (keyring->keys, key);
  OPENSSL_cleanse (&key, sizeof key);
  return TRUE;
}

EdgeKeyring *
edge_keyring_open (const char *path, gboolean create, GError **error)
{
  g_autoptr (EdgeKeyring) keyring = g_new0 (EdgeKeyring, 1);
  struct stat st;
  int fd;

  keyring->path = g_strdup (path);
  keyring->keys = g_array_new (FALSE, TRUE, sizeof (MasterKey));

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT && create) {
    if (!keyring_add_random (keyring, error) || !keyring_write (keyring, error))
      return NULL;
    return g_steal_pointer (&keyring);
  }
  if (fd < 0) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_IO, "cannot open master key file %s: %s",
                 path, g_strerror (errno));
    return NULL;
  }
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
    close (fd);
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_KEY_FILE,
                 "master key file %s is not a regular file", path);
    return NULL;
  }
  if ((st.st_mode & 077) != 0) {
    close (fd);
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_KEY_FILE,
                 "master key file %s has mode %04o: it must not be readable or writable by "
                 "group or others (run: chmod 600 %s)",
                 path, (unsigned) (st.st_mode & 07777), path);
    return NULL;
  }
  if (st.st_size > KEY_FILE_MAX_BYTES) {
    close (fd);
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_KEY_FILE,
                 "master key file %s is larger than %d bytes", path, KEY_FILE_MAX_BYTES);
    return NULL;
  }

  GString *text = g_string_sized_new (st.st_size + 1);
  for (;;) {
    char buf[4096];
    ssize_t n = read (fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int saved = errno;
      close (fd);
      string_free_cleansed (text);
      g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_IO, "cannot read %s: %s", path,
                   g_strerror (saved));
      return NULL;
    }
    if (n == 0)
      break;
    g_string_append_len (text, buf, n);
    OPENSSL_cleanse (buf, sizeof buf);
    if (text->len > KEY_FILE_MAX_BYTES)
      break;
  }
  close (fd);
  gboolean ok = keyring_parse (keyring, text->str, error);
  string_free_cleansed (text);
  if (!ok)
    return NULL;
  return g_steal_pointer (&keyring);
}

gboolean
edge_keyring_rotate (EdgeKeyring *keyring, GError **error)
{
  if (!keyring_add_random (keyring, error))
    return FALSE;
  if (!keyring_write (keyring, error)) {
    g_array_set_size (keyring->keys, keyring->keys->len - 1);
    return FALSE;
  }
  return TRUE;
}

guint32
edge_keyring_active_id (EdgeKeyring *keyring)
{
  return g_array_index (keyring->keys, MasterKey, keyring->keys->len - 1).id;
}

guint
edge_keyring_count (EdgeKeyring *keyring)
{
  return keyring->keys->len;
}

static const MasterKey *
keyring_find (EdgeKeyring *keyring, guint32 id)
{
  for (guint i = 0; i < keyring->keys->len; i++)
    if (g_array_index (keyring->keys, MasterKey, i).id == id)
      return &g_array_index (keyring->keys, MasterKey, i);
  return NULL;
}

/* --- ciphers --- */

/* An AES-256-GCM context keyed with one derived key; the key schedule is
 * computed once, each frame only sets its nonce. */
typedef struct {
  guint32 key_id;
  guint8 salt[SALT_BYTES];
  EVP_CIPHER_CTX *encrypt;
  EVP_CIPHER_CTX *decrypt;
} DerivedKey;

struct _EdgeCipher {
  EdgeKeyring *keyring; /* borrowed */
  char *info;           /* "edged/v1/" context */
  DerivedKey *sealing;  /* active key, this cipher's own salt */
  guint64 counter;      /* next nonce counter under sealing */
  GHashTable *opening;  /* (key id, salt) bytes -> DerivedKey, for frames of other sessions */
};

static void
derived_key_free (DerivedKey *dk)
{
  if (dk == NULL)
    return;
  EVP_CIPHER_CTX_free (dk->encrypt);
  EVP_CIPHER_CTX_free (dk->decrypt);
  g_free (dk);
}

static DerivedKey *
derived_key_new (EdgeCipher *cipher, guint32 key_id, const guint8 *salt, GError **error)
{
  const MasterKey *master = keyring_find (cipher->keyring, key_id);
  guint8 key[EDGE_KEY_BYTES];
  EVP_KDF *kdf;
  EVP_KDF_CTX *kctx;
  OSSL_PARAM params[5];
  DerivedKey *dk;
  int ok;

  if (master == NULL) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_UNKNOWN_KEY,
                 "sealed under master key %u, which the key file does not hold", key_id);
    return NULL;
  }
  kdf = EVP_KDF_fetch (NULL, "HKDF", NULL);
  kctx = kdf ? EVP_KDF_CTX_new (kdf) : NULL;
  EVP_KDF_free (kdf);
  params[0] = OSSL_PARAM_construct_utf8_string (OSSL_KDF_PARAM_DIGEST, (char *) "SHA256", 0);
  params[1] = OSSL_PARAM_construct_octet_string (OSSL_KDF_PARAM_KEY, (void *) master->key,
                                                 EDGE_KEY_BYTES);
  params[2] = OSSL_PARAM_construct_octet_string (OSSL_KDF_PARAM_SALT, (void *) salt, SALT_BYTES);
  params[3] = OSSL_PARAM_construct_octet_string (OSSL_KDF_PARAM_INFO, cipher->info,
                                                 strlen (cipher->info));
  params[4] = OSSL_PARAM_construct_end ();
  ok = kctx != NULL && EVP_KDF_derive (kctx, key, sizeof key, params) == 1;
  EVP_KDF_CTX_free (kctx);

  dk = g_new0 (DerivedKey, 1);
  dk->key_id = key_id;
  memcpy (dk->salt, salt, SALT_BYTES);
  dk->encrypt = EVP_CIPHER_CTX_new ();
  dk->decrypt = EVP_CIPHER_CTX_new ();
  ok = ok && dk->encrypt && dk->decrypt &&
       EVP_EncryptInit_ex (dk->encrypt, EVP_aes_256_gcm (), NULL, key, NULL) == 1 &&
       EVP_DecryptInit_ex (dk->decrypt, EVP_aes_256_gcm (), NULL, key, NULL) == 1;
  OPENSSL_cleanse (key, sizeof key);
  if (!ok) {
    derived_key_free (dk);
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_INTERNAL, "key derivation failed");
    return NULL;
  }
  return dk;
}

EdgeCipher *
edge_cipher_new (EdgeKeyring *keyring, const char *context, GError **error)
{
  g_autoptr (EdgeCipher) cipher = g_new0 (EdgeCipher, 1);
  guint8 salt[SALT_BYTES];

  g_return_val_if_fail (keyring != NULL && context != NULL, NULL);
  cipher->keyring = keyring;
  cipher->info = g_strconcat ("edged/v1/", context, NULL);
  cipher->opening = g_hash_table_new_full (g_bytes_hash, g_bytes_equal,
                                           (GDestroyNotify) g_bytes_unref,
                                           (GDestroyNotify) derived_key_free);
  if (RAND_bytes (salt, sizeof salt) != 1) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_INTERNAL,
                 "the random generator failed");
    return NULL;
  }
  cipher->sealing = derived_key_new (cipher, edge_keyring_active_id (keyring), salt, error);
  if (cipher->sealing == NULL)
    return NULL;
  return g_steal_pointer (&cipher);
}

void
edge_cipher_free (EdgeCipher *cipher)
{
  if (cipher == NULL)
    return;
  derived_key_free (cipher->sealing);
  if (cipher->opening)
    g_hash_table_unref (cipher->opening);
  g_free (cipher->info);
  g_free (cipher);
}

/* Seals with explicit flags and the extra AAD of stream chunks. */
static gboolean
cipher_seal_frame (EdgeCipher *cipher, guint8 flags, const guint8 *plain, gsize len,
                   const guint8 *aad, gsize aad_len, const guint8 *aad2, gsize aad2_len,
                   guint8 *out, guint64 *ret_counter, GError **error)
{
  DerivedKey *dk = cipher->sealing;
  guint8 *nonce = out + OFF_NONCE;
  int n = 0;

  if (len > EDGE_FRAME_MAX_PAYLOAD) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_LIMIT,
                 "%zu bytes is more than one frame holds (%u)", len, EDGE_FRAME_MAX_PAYLOAD);
    return FALSE;
  }
  if (cipher->counter == G_MAXUINT64) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_LIMIT,
                 "nonce space of this cipher exhausted");
    return FALSE;
  }

  memcpy (out, MAGIC, 4);
  out[OFF_VERSION] = FRAME_VERSION;
  out[OFF_FLAGS] = flags;
  out[OFF_HEADER_LEN] = 0;
  out[OFF_HEADER_LEN + 1] = EDGE_FRAME_HEADER_BYTES;
  edge_put_be32 (out + OFF_KEY_ID, dk->key_id);
  memcpy (out + OFF_SALT, dk->salt, SALT_BYTES);
  memset (nonce, 0, 4);
  edge_put_be64 (nonce + 4, cipher->counter);
  edge_put_be32 (out + OFF_LENGTH, (guint32) len);

  if (EVP_EncryptInit_ex (dk->encrypt, NULL, NULL, NULL, nonce) != 1 ||
      EVP_EncryptUpdate (dk->encrypt, NULL, &n, out, EDGE_FRAME_HEADER_BYTES) != 1 ||
      (aad_len > 0 && EVP_EncryptUpdate (dk->encrypt, NULL, &n, aad, (int) aad_len) != 1) ||
      (aad2_len > 0 && EVP_EncryptUpdate (dk->encrypt, NULL, &n, aad2, (int) aad2_len) != 1) ||
      (len > 0 &&
       EVP_EncryptUpdate (dk->encrypt, out + EDGE_FRAME_HEADER_BYTES, &n, plain, (int) len) != 1) ||
      EVP_EncryptFinal_ex (dk->encrypt, out + EDGE_FRAME_HEADER_BYTES + len, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl (dk->encrypt, EVP_CTRL_GCM_GET_TAG, EDGE_FRAME_TAG_BYTES,
                           out + EDGE_FRAME_HEADER_BYTES + len) != 1) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_INTERNAL, "AES-GCM encryption failed");
    return FALSE;
  }
  if (ret_counter)
    *ret_counter = cipher->counter;
  cipher->counter++;
  return TRUE;
}

gboolean
edge_cipher_seal (EdgeCipher *cipher, const guint8 *plain, gsize len, const guint8 *aad,
                  gsize aad_len, guint8 *out, GError **error)
{
  return cipher_seal_frame (cipher, 0, plain, len, aad, aad_len, NULL, 0, out, NULL, error);
}

gssize
edge_frame_length (const guint8 *buf, gsize len, GError **error)
{
  guint32 payload;
  if (len < EDGE_FRAME_HEADER_BYTES || memcmp (buf, MAGIC, 4) != 0) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_FORMAT, "not an edged frame");
    return -1;
  }
  if (buf[OFF_VERSION] != FRAME_VERSION || buf[OFF_HEADER_LEN] != 0 ||
      buf[OFF_HEADER_LEN + 1] != EDGE_FRAME_HEADER_BYTES) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_FORMAT,
                 "frame version %u is not supported", buf[OFF_VERSION]);
    return -1;
  }
  if ((buf[OFF_FLAGS] & ~(FLAG_STREAM | FLAG_FINAL)) != 0 ||
      (buf[OFF_FLAGS] & (FLAG_STREAM | FLAG_FINAL)) == FLAG_FINAL) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_FORMAT, "unknown frame flags 0x%02x",
                 buf[OFF_FLAGS]);
    return -1;
  }
  payload = edge_get_be32 (buf + OFF_LENGTH);
  if (payload > EDGE_FRAME_MAX_PAYLOAD) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_LIMIT,
                 "frame claims %u bytes, more than the limit %u", payload, EDGE_FRAME_MAX_PAYLOAD);
    return -1;
  }
  return (gssize) payload + EDGE_FRAME_OVERHEAD;
}

static DerivedKey *
cipher_key_for_frame (EdgeCipher *cipher, const guint8 *frame, GError **error)
{
  guint32 key_id = edge_get_be32 (frame + OFF_KEY_ID);
  const guint8 *salt = frame + OFF_SALT;
  guint8 lookup[4 + SALT_BYTES];
  DerivedKey *dk;

  if (key_id == cipher->sealing->key_id && memcmp (salt, cipher->sealing->salt, SALT_BYTES) == 0)
    return cipher->sealing;

  memcpy (lookup, frame + OFF_KEY_ID, 4);
  memcpy (lookup + 4, salt, SALT_BYTES);
  g_autoptr (GBytes) id = g_bytes_new (lookup, sizeof lookup);
  dk = g_hash_table_lookup (cipher->opening, id);
  if (dk != NULL)
    return dk;
  dk = derived_key_new (cipher, key_id, salt, error);
  if (dk == NULL)
    return NULL;
  /* Bounded: a reader walking many sessions' frames re-derives (a few µs)
   * rather than growing the cache. */
  if (g_hash_table_size (cipher->opening) >= DERIVED_CACHE_MAX)
    g_hash_table_remove_all (cipher->opening);
  g_hash_table_insert (cipher->opening, g_steal_pointer (&id), dk);
  return dk;
}

static gboolean
cipher_open_frame (EdgeCipher *cipher, const guint8 *frame, gsize frame_len, const guint8 *aad,
                   gsize aad_len, const guint8 *aad2, gsize aad2_len, guint8 *out, gsize *ret_len,
                   GError **error)
{
  gssize expected = edge_frame_length (frame, frame_len, error);
  DerivedKey *dk;
  gsize len;
  int n = 0;

  if (expected < 0)
    return FALSE;
  if ((gsize) expected != frame_len) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_FORMAT,
                 "frame is %zu bytes, its header says %zd", frame_len, expected);
    return FALSE;
  }
  dk = cipher_key_for_frame (cipher, frame, error);
  if (dk == NULL)
    return FALSE;
  len = frame_len - EDGE_FRAME_OVERHEAD;

  if (EVP_DecryptInit_ex (dk->decrypt, NULL, NULL, NULL, frame + OFF_NONCE) != 1 ||
      EVP_DecryptUpdate (dk->decrypt, NULL, &n, frame, EDGE_FRAME_HEADER_BYTES) != 1 ||
      (aad_len > 0 && EVP_DecryptUpdate (dk->decrypt, NULL, &n, aad, (int) aad_len) != 1) ||
      (aad2_len > 0 && EVP_DecryptUpdate (dk->decrypt, NULL, &n, aad2, (int) aad2_len) != 1) ||
      (len > 0 &&
       EVP_DecryptUpdate (dk->decrypt, out, &n, frame + EDGE_FRAME_HEADER_BYTES, (int) len) != 1) ||
      EVP_CIPHER_CTX_ctrl (dk->decrypt, EVP_CTRL_GCM_SET_TAG, EDGE_FRAME_TAG_BYTES,
                           (void *) (frame + EDGE_FRAME_HEADER_BYTES + len)) != 1 ||
      EVP_DecryptFinal_ex (dk->decrypt, out + len, &n) != 1) {
    /* Never hand back unauthenticated plaintext. */
    OPENSSL_cleanse (out, len);
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_AUTH,
                 "frame failed authentication (tampered, or sealed under another key or context)");
    return FALSE;
  }
  *ret_len = len;
  return TRUE;
}

gboolean
edge_cipher_open (EdgeCipher *cipher, const guint8 *frame, gsize frame_len, const guint8 *aad,
                  gsize aad_len, guint8 *out, gsize *ret_len, GError **error)
{
  if (frame_len >= EDGE_FRAME_HEADER_BYTES && (frame[OFF_FLAGS] & FLAG_STREAM)) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_FORMAT,
                 "frame is a chunk of a sealed stream");
    return FALSE;
  }
  return cipher_open_frame (cipher, frame, frame_len, aad, aad_len, NULL, 0, out, ret_len, error);
}

/* --- sealed streams --- */

/* The chunk AAD after the caller's: stream id (u64) || chunk index (u64). */
static void
chunk_aad (guint8 out[16], guint64 stream_id, guint64 index)
{
  edge_put_be64 (out, stream_id);
  edge_put_be64 (out + 8, index);
}

struct _EdgeSealStream {
  EdgeCipher *cipher;
  GBytes *aad;
  gsize chunk_size;
  GByteArray *pending;
  guint64 stream_id;
  guint64 index;
  gboolean finished;
};

EdgeSealStream *
edge_seal_stream_new (EdgeCipher *cipher, const guint8 *aad, gsize aad_len, gsize chunk_size)
{
  EdgeSealStream *stream;
  g_return_val_if_fail (chunk_size > 0 && chunk_size <= EDGE_FRAME_MAX_PAYLOAD, NULL);
  stream = g_new0 (EdgeSealStream, 1);
  stream->cipher = cipher;
  stream->aad = g_bytes_new (aad, aad_len);
  stream->chunk_size = chunk_size;
  stream->pending = g_byte_array_new ();
  /* Chunk 0 will take the cipher's next counter: that is the stream id. */
  stream->stream_id = cipher->counter;
  return stream;
}

static gboolean
seal_stream_emit (EdgeSealStream *stream, const guint8 *data, gsize len, gboolean final,
                  GByteArray *out, GError **error)
{
  guint8 extra[16];
  gsize aad_len;
  const guint8 *aad = g_bytes_get_data (stream->aad, &aad_len);
  guint old = out->len;
  guint64 counter;

  if (stream->index == 0)
    stream->stream_id = stream->cipher->counter;
  chunk_aad (extra, stream->stream_id, stream->index);
  g_byte_array_set_size (out, old + len + EDGE_FRAME_OVERHEAD);
  if (!cipher_seal_frame (stream->cipher, FLAG_STREAM | (final ? FLAG_FINAL : 0), data, len, aad,
                          aad_len, extra, sizeof extra, out->data + old, &counter, error)) {
    g_byte_array_set_size (out, old);
    return FALSE;
  }
  stream->index++;
  return TRUE;
}

gboolean
edge_seal_stream_write (EdgeSealStream *stream, const guint8 *data, gsize len, GByteArray *out,
                        GError **error)
{
  g_return_val_if_fail (!stream->finished, FALSE);
  g_byte_array_append (stream->pending, data, len);
  gsize off = 0;
  /* Keep at least one byte pending so that the final chunk is never empty
   * unless the whole stream is. */
  while (stream->pending->len - off > stream->chunk_size) {
    if (!seal_stream_emit (stream, stream->pending->data + off, stream->chunk_size, FALSE, out,
                           error))
      return FALSE;
    off += stream->chunk_size;
  }
  g_byte_array_remove_range (stream->pending, 0, off);
  return TRUE;
}

gboolean
edge_seal_stream_finish (EdgeSealStream *stream, GByteArray *out, GError **error)
{
  g_return_val_if_fail (!stream->finished, FALSE);
  stream->finished = TRUE;
  return seal_stream_emit (stream, stream->pending->data, stream->pending->len, TRUE, out, error);
}

void
edge_seal_stream_free (EdgeSealStream *stream)
{
  if (stream == NULL)
    return;
  g_bytes_unref (stream->aad);
  OPENSSL_cleanse (stream->pending->data, stream->pending->len);
  g_byte_array_unref (stream->pending);
  g_free (stream);
}

struct _EdgeOpenStream {
  EdgeCipher *cipher;
  GBytes *aad;
  GByteArray *pending;
  guint64 stream_id;
  guint64 index;
  guint8 session[4 + SALT_BYTES]; /* key id and salt of chunk 0 */
  gboolean finished;
  gboolean failed;
};

EdgeOpenStream *
edge_open_stream_new (EdgeCipher *cipher, const guint8 *aad, gsize aad_len)
{
  EdgeOpenStream *stream = g_new0 (EdgeOpenStream, 1);
  stream->cipher = cipher;
  stream->aad = g_bytes_new (aad, aad_len);
  stream->pending = g_byte_array_new ();
  return stream;
}

gboolean
edge_open_stream_write (EdgeOpenStream *stream, const guint8 *data, gsize len, GByteArray *out,
                        GError **error)
{
  gsize off = 0;

  if (stream->failed) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_FORMAT, "stream already failed");
    return FALSE;
  }
  g_byte_array_append (stream->pending, data, len);
  while (stream->pending->len - off >= EDGE_FRAME_HEADER_BYTES) {
    const guint8 *frame = stream->pending->data + off;
    gssize frame_len = edge_frame_length (frame, stream->pending->len - off, error);
    guint8 extra[16];
    gsize aad_len, plain_len;
    const guint8 *aad = g_bytes_get_data (stream->aad, &aad_len);

    if (frame_len < 0)
      goto fail;
    if (stream->finished) {
      g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_FORMAT,
                   "data after the final chunk of a sealed stream");
      goto fail;
    }
    if (!(frame[OFF_FLAGS] & FLAG_STREAM)) {
      g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_FORMAT,
                   "a single frame where a stream chunk was expected");
      goto fail;
    }
    if (stream->pending->len - off < (gsize) frame_len)
      break;
    if (stream->index == 0) {
      stream->stream_id = edge_get_be64 (frame + OFF_NONCE + 4);
      memcpy (stream->session, frame + OFF_KEY_ID, sizeof stream->session);
    } else if (memcmp (stream->session, frame + OFF_KEY_ID, sizeof stream->session) != 0) {
      g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_AUTH,
                   "chunk %" G_GUINT64_FORMAT " belongs to another stream", stream->index);
      goto fail;
    }
    chunk_aad (extra, stream->stream_id, stream->index);
    guint old = out->len;
    guint8 nothing[1]; /* an empty chunk decrypts into no buffer at all */
    g_byte_array_set_size (out, old + frame_len - EDGE_FRAME_OVERHEAD);
    if (!cipher_open_frame (stream->cipher, frame, frame_len, aad, aad_len, extra, sizeof extra,
                            out->len > 0 ? out->data + old : nothing, &plain_len, error)) {
      g_byte_array_set_size (out, old);
      goto fail;
    }
    stream->index++;
    stream->finished = (frame[OFF_FLAGS] & FLAG_FINAL) != 0;
    off += frame_len;
  }
  g_byte_array_remove_range (stream->pending, 0, off);
  return TRUE;

fail:
  stream->failed = TRUE;
  return FALSE;
}

gboolean
edge_open_stream_finish (EdgeOpenStream *stream, GError **error)
{
  if (stream->failed || !stream->finished || stream->pending->len != 0) {
    g_set_error (error, EDGE_CRYPTO_ERROR, EDGE_CRYPTO_ERROR_TRUNCATED,
                 "sealed stream ended after %" G_GUINT64_FORMAT " chunks without its final chunk",
                 stream->index);
    return FALSE;
  }
  return TRUE;
}

void
edge_open_stream_free (EdgeOpenStream *stream)
{
  if (stream == NULL)
    return;
  g_bytes_unref (stream->aad);
  g_byte_array_unref (stream->pending);
  g_free (stream);
}
