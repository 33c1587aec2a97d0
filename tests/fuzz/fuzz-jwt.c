/* Fuzzes JWT decoding and verification: the input is a token, checked
 * against an HS256 secret and a JWKS (RSA and EC keys); and, as a JWKS
 * document, loaded as keys. Nothing random is accepted. */
#include "jwt.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const char jwks[] =
  "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e1\","
  "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
  "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";

static EdgeJwtKeys *keys;

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (keys == NULL) {
    keys = edge_jwt_keys_new ();
    edge_jwt_keys_add_secret (keys, "0123456789abcdef0123456789abcdef", 32, NULL, NULL);
    edge_jwt_keys_add_jwks (keys, jwks, strlen (jwks), NULL);
  }
  EdgeJwtClaims claims;
  EdgeJwtPolicy policy = { "issuer", "audience", 60 };
  GError *error = NULL;
  if (edge_jwt_verify (keys, (const char *) data, size, 1800000000, &policy, &claims, &error))
    __builtin_trap (); /* no forged signature verifies */
  g_clear_error (&error);

  EdgeJwtKeys *loaded = edge_jwt_keys_new ();
  edge_jwt_keys_add_jwks (loaded, (const char *) data, size, NULL);
  if (edge_jwt_keys_count (loaded) > EDGE_JWT_MAX_KEYS)
    __builtin_trap ();
  edge_jwt_keys_free (loaded);
  return 0;
}
