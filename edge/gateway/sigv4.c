/* sigv4.c: AWS Signature Version 4, the server's side (see sigv4.h). */
#include "sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

G_DEFINE_QUARK (edge-sigv4-error-quark, edge_sigv4_error)

static const char hexdigits[] = "0123456789abcdef";

static void
to_hex (const guint8 *data, gsize len, char *out)
{
  for (gsize i = 0; i < len; i++) {
    out[2 * i] = hexdigits[data[i] >> 4];
    out[2 * i + 1] = hexdigits[data[i] & 15];
  }
  out[2 * len] = '\0';
}

void
edge_sigv4_sha256_hex (const void *data, gsize len, char out[65])
{
  guint8 digest[SHA256_DIGEST_LENGTH];
  SHA256 (data, len, digest);
  to_hex (digest, sizeof digest, out);
}

/* ---- the Authorization header ---- */

void
edge_sigv4_authorization_clear (EdgeSigv4Authorization *auth)
{
  g_clear_pointer (&auth->access_key_id, g_free);
  g_clear_pointer (&auth->date, g_free);
  g_clear_pointer (&auth->region, g_free);
  g_clear_pointer (&auth->service, g_free);
  g_clear_pointer (&auth->signed_headers, g_free);
  auth->signature[0] = '\0';
}

static gboolean
malformed (GError **error, const char *what)
{
  g_set_error (error, EDGE_SIGV4_ERROR, EDGE_SIGV4_ERROR_MALFORMED,
               "Authorization header requires %s", what);
  return FALSE;
}

static gboolean
all_digits (const char *s, gsize n)
{
  for (gsize i = 0; i < n; i++)
    if (!g_ascii_isdigit (s[i]))
      return FALSE;
  return s[n] == '\0';
}

/* A credential scope part: printable, no '/', not empty. */
static gboolean
scope_part_ok (const char *s)
{
  if (*s == '\0')
    return FALSE;
  for (; *s; s++)
    if (*s <= ' ' || *s >= 0x7f || *s == '/')
      return FALSE;
  return TRUE;
}

static gboolean
parse_credential (const char *value, EdgeSigv4Authorization *out, GError **error)
{
  g_auto (GStrv) parts = g_strsplit (value, "/", 6);
  if (g_strv_length (parts) != 5 || !g_str_equal (parts[4], "aws4_request"))
    return malformed (error, "Credential=ACCESS_KEY/DATE/REGION/SERVICE/aws4_request");
  for (guint i = 0; i < 4; i++)
    if (!scope_part_ok (parts[i]))
      return malformed (error, "Credential=ACCESS_KEY/DATE/REGION/SERVICE/aws4_request");
  if (strlen (parts[1]) != 8 || !all_digits (parts[1], 8))
    return malformed (error, "a credential date of the form YYYYMMDD");
  out->access_key_id = g_strdup (parts[0]);
  out->date = g_strdup (parts[1]);
  out->region = g_strdup (parts[2]);
  out->service = g_strdup (parts[3]);
  return TRUE;
}

static gboolean
parse_signed_headers (const char *value, EdgeSigv4Authorization *out, GError **error)
{
  g_auto (GStrv) names = g_strsplit (value, ";", EDGE_SIGV4_MAX_SIGNED_HEADERS + 1);
  guint n = g_strv_length (names);
  if (n == 0 || n > EDGE_SIGV4_MAX_SIGNED_HEADERS)
    return malformed (error, "SignedHeaders with 1 to 32 names");
  for (guint i = 0; i < n; i++) {
    if (names[i][0] == '\0')
      return malformed (error, "SignedHeaders without empty names");
    /* The JavaScript SDK over HTTP/2 signs the :authority pseudo-header
     * in place of host. */
    if (g_str_equal (names[i], ":authority"))
      continue;
    for (const char *c = names[i]; *c; c++)
      if (!(g_ascii_islower (*c) || g_ascii_isdigit (*c) || *c == '-' || *c == '_' || *c == '.'))
        return malformed (error, "SignedHeaders of lowercase header names");
    if (i > 0 && strcmp (names[i - 1], names[i]) >= 0)
      return malformed (error, "SignedHeaders sorted, without repeats");
  }
  out->signed_headers = g_strdup (value);
  return TRUE;
}

gboolean
edge_sigv4_parse_authorization (const char *header, EdgeSigv4Authorization *out, GError **error)
{
  gsize alg_len = strlen (EDGE_SIGV4_ALGORITHM);
  gboolean have_credential = FALSE, have_signed = FALSE, have_signature = FALSE;

  memset (out, 0, sizeof *out);
  if (strlen (header) > EDGE_SIGV4_MAX_HEADER)
    return malformed (error, "at most 4096 bytes");
  if (strncmp (header, EDGE_SIGV4_ALGORITHM, alg_len) != 0 || header[alg_len] != ' ') {
    g_set_error (error, EDGE_SIGV4_ERROR, EDGE_SIGV4_ERROR_UNSUPPORTED,
                 "only " EDGE_SIGV4_ALGORITHM " signatures are accepted");
    return FALSE;
  }
  g_auto (GStrv) fields = g_strsplit (header + alg_len + 1, ",", 8);
  for (guint i = 0; fields[i]; i++) {
    char *field = g_strstrip (fields[i]);
    char *eq = strchr (field, '=');
    if (eq == NULL)
      goto fail;
    *eq = '\0';
    const char *value = eq + 1;
    if (g_str_equal (field, "Credential") && !have_credential) {
      if (!parse_credential (value, out, error))
        goto fail_set;
      have_credential = TRUE;
    } else if (g_str_equal (field, "SignedHeaders") && !have_signed) {
      if (!parse_signed_headers (value, out, error))
        goto fail_set;
      have_signed = TRUE;
    } else if (g_str_equal (field, "Signature") && !have_signature) {
      if (strlen (value) != 64)
        goto fail;
      for (guint k = 0; k < 64; k++)
        if (!g_ascii_isxdigit (value[k]))
          goto fail;
      for (guint k = 0; k <= 64; k++)
        out->signature[k] = g_ascii_tolower (value[k]);
      have_signature = TRUE;
    } else {
      goto fail;
    }
  }
  if (have_credential && have_signed && have_signature)
    return TRUE;
fail:
  edge_sigv4_authorization_clear (out);
  return malformed (error, "Credential, SignedHeaders and Signature (a 64-digit hex value), "
                           "each once");
fail_set:
  edge_sigv4_authorization_clear (out);
  return FALSE;
}

char *
edge_sigv4_scope (const EdgeSigv4Authorization *auth)
{
  return g_strdup_printf ("%s/%s/%s/aws4_request", auth->date, auth->region, auth->service);
}

/* ---- the canonical request ---- */

static gboolean
unreserved (guchar c)
{
  return g_ascii_isalnum (c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static void
append_encoded (GString *out, const char *s, gsize len, gboolean keep_slash)
{
  for (gsize i = 0; i < len; i++) {
    guchar c = (guchar) s[i];
    if (unreserved (c) || (keep_slash && c == '/'))
      g_string_append_c (out, (char) c);
    else
      g_string_append_printf (out, "%%%02X", c);
  }
}

/* Dot segments and empty segments removed, as both SDKs do before signing. */
static void
append_canonical_path (GString *out, const char *path)
{
  gsize len = strlen (path);
  g_auto (GStrv) segments = g_strsplit (path, "/", -1);
  GPtrArray *kept = g_ptr_array_new ();
  for (guint i = 0; segments[i]; i++) {
    if (segments[i][0] == '\0' || g_str_equal (segments[i], "."))
      continue;
    if (g_str_equal (segments[i], "..")) {
      if (kept->len > 0)
        g_ptr_array_remove_index (kept, kept->len - 1);
      continue;
    }
    g_ptr_array_add (kept, segments[i]);
  }
  g_string_append_c (out, '/');
  for (guint i = 0; i < kept->len; i++) {
    const char *segment = g_ptr_array_index (kept, i);
    if (i > 0)
      g_string_append_c (out, '/');
    append_encoded (out, segment, strlen (segment), FALSE);
  }
  if (kept->len > 0 && len > 0 && path[len - 1] == '/')
    g_string_append_c (out, '/');
  g_ptr_array_unref (kept);
}

typedef struct {
  char *key;   /* encoded */
  char *value; /* encoded */
} QueryPair;

static int
compare_pairs (gconstpointer a, gconstpointer b)
{
  const QueryPair *x = a, *y = b;
  int c = strcmp (x->key, y->key);
  return c ? c : strcmp (x->value, y->value);
}

static char *
reencode (const char *s, gsize len)
{
  g_autofree char *raw = g_strndup (s, len);
  g_autofree char *decoded = g_uri_unescape_string (raw, NULL);
  GString *out = g_string_new (NULL);
  /* Undecodable text ("%zz", "%00") is signed as sent, encoded once. */
  const char *text = decoded ? decoded : raw;
  append_encoded (out, text, strlen (text), FALSE);
  return g_string_free (out, FALSE);
}

static void
append_canonical_query (GString *out, const char *query)
{
  if (query == NULL || query[0] == '\0')
    return;
  g_auto (GStrv) pairs = g_strsplit (query, "&", -1);
  guint n = g_strv_length (pairs);
  QueryPair *sorted = g_new0 (QueryPair, n);
  guint used = 0;
  for (guint i = 0; i < n; i++) {
    if (pairs[i][0] == '\0')
      continue;
    const char *eq = strchr (pairs[i], '=');
    gsize key_len = eq ? (gsize) (eq - pairs[i]) : strlen (pairs[i]);
    sorted[used].key = reencode (pairs[i], key_len);
    sorted[used].value = eq ? reencode (eq + 1, strlen (eq + 1)) : g_strdup ("");
    used++;
  }
  qsort (sorted, used, sizeof *sorted, compare_pairs);
  for (guint i = 0; i < used; i++) {
    if (i > 0)
      g_string_append_c (out, '&');
    g_string_append_printf (out, "%s=%s", sorted[i].key, sorted[i].value);
    g_free (sorted[i].key);
    g_free (sorted[i].value);
  }
  g_free (sorted);
}

/* Leading and trailing spaces dropped, inner runs made one space. */
static void
append_trimmed (GString *out, const char *value)
{
  gboolean space = FALSE, started = FALSE;
  for (const char *c = value; *c; c++) {
    if (*c == ' ' || *c == '\t') {
      space = started;
      continue;
    }
    if (space)
      g_string_append_c (out, ' ');
    g_string_append_c (out, *c);
    space = FALSE;
    started = TRUE;
  }
}

char *
edge_sigv4_canonical_request (const char *method, const char *path, const char *query,
                              const EdgeSigv4Header *headers, gsize n_headers,
                              const char *signed_headers, const char *payload_hash,
                              GError **error)
{
  g_autoptr (GString) out = g_string_sized_new (512);
  g_auto (GStrv) names = g_strsplit (signed_headers, ";", EDGE_SIGV4_MAX_SIGNED_HEADERS + 1);

  g_string_append_printf (out, "%s\n", method);
  append_canonical_path (out, path);
  g_string_append_c (out, '\n');
  append_canonical_query (out, query);
  g_string_append_c (out, '\n');
  for (guint i = 0; names[i]; i++) {
    gboolean found = FALSE;
    /* :authority is what an HTTP/1.1 request carries as Host. */
    const char *lookup = g_str_equal (names[i], ":authority") ? "host" : names[i];
    g_string_append_printf (out, "%s:", names[i]);
    for (gsize h = 0; h < n_headers; h++) {
      if (g_ascii_strcasecmp (headers[h].name, lookup) != 0)
        continue;
      if (found)
        g_string_append_c (out, ',');
      append_trimmed (out, headers[h].value);
      found = TRUE;
    }
    if (!found) {
      g_set_error (error, EDGE_SIGV4_ERROR, EDGE_SIGV4_ERROR_MALFORMED,
                   "signed header %s is not in the request", names[i]);
      return NULL;
    }
    g_string_append_c (out, '\n');
  }
  g_string_append_printf (out, "\n%s\n%s", signed_headers, payload_hash);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* ---- signing ---- */

static void
hmac (const void *key, gsize key_len, const char *data, guint8 out[32])
{
  unsigned int len = 32;
  HMAC (EVP_sha256 (), key, (int) key_len, (const guchar *) data, strlen (data), out, &len);
}

void
edge_sigv4_sign (const char *secret, const EdgeSigv4Authorization *auth, const char *amz_date,
                 const char *canonical_request, char out[65])
{
  g_autofree char *k_secret = g_strconcat ("AWS4", secret, NULL);
  g_autofree char *scope = edge_sigv4_scope (auth);
  guint8 key[32], signature[32];
  char request_hash[65];

  hmac (k_secret, strlen (k_secret), auth->date, key);
  hmac (key, sizeof key, auth->region, key);
  hmac (key, sizeof key, auth->service, key);
  hmac (key, sizeof key, "aws4_request", key);
  edge_sigv4_sha256_hex (canonical_request, strlen (canonical_request), request_hash);
  g_autofree char *to_sign = g_strdup_printf (EDGE_SIGV4_ALGORITHM "\n%s\n%s\n%s", amz_date, scope,
                                              request_hash);
  hmac (key, sizeof key, to_sign, signature);
  to_hex (signature, sizeof signature, out);
  OPENSSL_cleanse (key, sizeof key);
  OPENSSL_cleanse (k_secret, strlen (k_secret));
}

gboolean
edge_sigv4_parse_amz_date (const char *text, gint64 *ret_seconds)
{
  if (text == NULL || strlen (text) != 16 || text[8] != 'T' || text[15] != 'Z')
    return FALSE;
  for (guint i = 0; i < 15; i++)
    if (i != 8 && !g_ascii_isdigit (text[i]))
      return FALSE;
  int v[6];
  const guint at[6] = { 0, 4, 6, 9, 11, 13 }, width[6] = { 4, 2, 2, 2, 2, 2 };
  for (guint i = 0; i < 6; i++) {
    v[i] = 0;
    for (guint k = 0; k < width[i]; k++)
      v[i] = v[i] * 10 + (text[at[i] + k] - '0');
  }
  g_autoptr (GDateTime) dt = g_date_time_new_utc (v[0], v[1], v[2], v[3], v[4], v[5]);
  if (dt == NULL)
    return FALSE;
  *ret_seconds = g_date_time_to_unix (dt);
  return TRUE;
}
