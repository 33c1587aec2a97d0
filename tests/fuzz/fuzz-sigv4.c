/* Fuzzes the SigV4 checker: line 1 is the Authorization header, line 2 the
 * method, line 3 the path, line 4 the query, the rest "name: value"
 * headers. The canonical request built from any of it must be a
 * well-formed text whose signature is deterministic. */
#include "sigv4.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = g_strndup ((const char *) data, size);
  char **lines = g_strsplit (text, "\n", 64);
  guint n = g_strv_length (lines);
  EdgeSigv4Authorization auth;
  GError *error = NULL;

  if (n >= 1 && edge_sigv4_parse_authorization (lines[0], &auth, &error)) {
    if (strlen (auth.signature) != 64 || auth.access_key_id == NULL || auth.signed_headers == NULL)
      __builtin_trap ();
    EdgeSigv4Header headers[60];
    gsize n_headers = 0;
    for (guint i = 4; i < n; i++) {
      char *colon = strchr (lines[i], ':');
      if (colon == NULL)
        continue;
      *colon = '\0';
      headers[n_headers].name = lines[i];
      headers[n_headers].value = colon + 1;
      n_headers++;
    }
    char *canonical = edge_sigv4_canonical_request (
        n > 1 ? lines[1] : "GET", n > 2 ? lines[2] : "/", n > 3 ? lines[3] : NULL, headers,
        n_headers, auth.signed_headers, "UNSIGNED-PAYLOAD", &error);
    if (canonical) {
      char a[65], b[65];
      edge_sigv4_sign ("secret", &auth, "20261129T000000Z", canonical, a);
      edge_sigv4_sign ("secret", &auth, "20261129T000000Z", canonical, b);
      if (memcmp (a, b, 65) != 0 || strlen (a) != 64)
        __builtin_trap ();
      g_free (canonical);
    }
    g_clear_error (&error);
    edge_sigv4_authorization_clear (&auth);
  }
  g_clear_error (&error);
  gint64 t;
  edge_sigv4_parse_amz_date (text, &t);
  g_strfreev (lines);
  g_free (text);
  return 0;
}
