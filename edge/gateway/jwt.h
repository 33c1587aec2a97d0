/* jwt.h: checking JSON Web Tokens (private to the gateway; pure, so that
 * tests and fuzzers drive it without sockets).
 *
 * A token is accepted when its signature verifies under one of the
 * configured keys (HS256 with a shared secret, RS256 with an RSA key, ES256
 * with a P-256 key; "none" and every other algorithm are refused), the key
 * fits the token's "alg" (and its "kid", when both name one), and the
 * claims hold: "exp" is required and in the future, "nbf" and "iat" not in
 * the future, "iss" and "aud" equal to the configured ones when configured
 * (each within the leeway for clock skew).
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

/* Longest token looked at, and the most keys a set holds. */
#define EDGE_JWT_MAX_TOKEN 8192
#define EDGE_JWT_MAX_KEYS 64

#define EDGE_JWT_ERROR (edge_jwt_error_quark ())
GQuark edge_jwt_error_quark (void);
typedef enum {
  EDGE_JWT_ERROR_MALFORMED, /* not a JWS compact token */
  EDGE_JWT_ERROR_SIGNATURE, /* no key verifies it */
  EDGE_JWT_ERROR_EXPIRED,   /* exp passed */
  EDGE_JWT_ERROR_CLAIMS,    /* nbf, iat, iss or aud */
  EDGE_JWT_ERROR_KEY,       /* a key that cannot be used */
} EdgeJwtError;

typedef struct _EdgeJwtKeys EdgeJwtKeys;

EdgeJwtKeys *edge_jwt_keys_new (void);
void edge_jwt_keys_free (EdgeJwtKeys *keys);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (EdgeJwtKeys, edge_jwt_keys_free)

/* An HS256 secret. @kid nullable. */
gboolean edge_jwt_keys_add_secret (EdgeJwtKeys *keys, const void *secret, gsize len,
                                   const char *kid, GError **error);
/* A PEM public key (RSA for RS256, EC P-256 for ES256). */
gboolean edge_jwt_keys_add_pem (EdgeJwtKeys *keys, const char *pem, gsize len, const char *kid,
                                GError **error);
/* Every usable key of a JWKS document ({"keys": [...]}, kty RSA, EC P-256
 * or oct). Keys for other uses ("use" other than "sig") are skipped. */
gboolean edge_jwt_keys_add_jwks (EdgeJwtKeys *keys, const char *json, gsize len, GError **error);
guint edge_jwt_keys_count (EdgeJwtKeys *keys);

typedef struct {
  const char *issuer;   /* nullable: not checked */
  const char *audience; /* nullable: not checked */
  gint64 leeway_s;
} EdgeJwtPolicy;

typedef struct {
  char *subject;    /* "sub", or "" */
  gint64 expires_s; /* "exp" */
  char *scope;      /* "scope" (a space-separated string), or "" */
  JsonNode *claims; /* the whole payload */
} EdgeJwtClaims;

void edge_jwt_claims_clear (EdgeJwtClaims *claims);

/* Verifies @token at time @now_s. */
gboolean edge_jwt_verify (EdgeJwtKeys *keys, const char *token, gsize len, gint64 now_s,
                          const EdgeJwtPolicy *policy, EdgeJwtClaims *out, GError **error);

/* Base64url without padding (RFC 7515, section 2); NULL for anything else.
 * (transfer full) */
guint8 *edge_base64url_decode (const char *text, gsize len, gsize *ret_len);
