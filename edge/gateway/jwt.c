/* jwt.c: JSON Web Token verification (see jwt.h). */
#include "jwt.h"

#include "edge-gateway.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

G_DEFINE_QUARK (edge-jwt-error-quark, edge_jwt_error)

typedef enum { KEY_HS256, KEY_RS256, KEY_ES256 } KeyAlg;

typedef struct {
  KeyAlg alg;
  char *kid;        /* nullable */
  GBytes *secret;   /* HS256 */
  EVP_PKEY *pkey;   /* RS256, ES256 */
} JwtKey;

struct _EdgeJwtKeys {
  GPtrArray *keys; /* JwtKey */
};

static const char *const alg_names[] = { "HS256", "RS256", "ES256" };

static void
jwt_key_free (gpointer data)
{
  JwtKey *key = data;
  g_free (key->kid);
  g_clear_pointer (&key->secret, g_bytes_unref);
  EVP_PKEY_free (key->pkey);
  g_free (key);
}

EdgeJwtKeys *
edge_jwt_keys_new (void)
{
  EdgeJwtKeys *keys = g_new0 (EdgeJwtKeys, 1);
  keys->keys = g_ptr_array_new_with_free_func (jwt_key_free);
  return keys;
}

void
edge_jwt_keys_free (EdgeJwtKeys *keys)
{
  if (keys == NULL)
    return;
  g_ptr_array_unref (keys->keys);
  g_free (keys);
}

guint
edge_jwt_keys_count (EdgeJwtKeys *keys)
{
  return keys->keys->len;
}

static gboolean
keys_add (EdgeJwtKeys *keys, KeyAlg alg, const char *kid, GBytes *secret, EVP_PKEY *pkey,
          GError **error)
{
  if (keys->keys->len >= EDGE_JWT_MAX_KEYS) {
    g_set_error (error, EDGE_JWT_ERROR, EDGE_JWT_ERROR_KEY, "more than %d JWT keys",
                 EDGE_JWT_MAX_KEYS);
    if (secret)
      g_bytes_unref (secret);
    EVP_PKEY_free (pkey);
    return FALSE;
  }
  JwtKey *key = g_new0 (JwtKey, 1);
  key->alg = alg;
  key->kid = kid && kid[0] ? g_strdup (kid) : NULL;
  key->secret = secret;
  key->pkey = pkey;
  g_ptr_array_add (keys->keys, key);
  return TRUE;
}

gboolean
edge_jwt_keys_add_secret (EdgeJwtKeys *keys, const void *secret, gsize len, const char *kid,
                          GError **error)
{
  if (len < 32) {
    /* RFC 7518 section 3.2: a key of at least the hash's size. */
    g_set_error (error, EDGE_JWT_ERROR, EDGE_JWT_ERROR_KEY,
                 "an HS256 secret needs at least 32 bytes, this one has %zu", len);
    return FALSE;
  }
  return keys_add (keys, KEY_HS256, kid, g_bytes_new (secret, len), NULL, error);
}

/* RS256 for RSA keys of 2048 bits or more, ES256 for P-256. */
static gboolean
alg_of_pkey (EVP_PKEY *pkey, KeyAlg *ret, GError **error)
{
  if (EVP_PKEY_is_a (pkey, "RSA")) {
    if (EVP_PKEY_get_bits (pkey) < 2048) {
      g_set_error (error, EDGE_JWT_ERROR, EDGE_JWT_ERROR_KEY,
                   "an RS256 key needs at least 2048 bits, this one has %d",
                   EVP_PKEY_get_bits (pkey));
      return FALSE;
    }
    *ret = KEY_RS256;
    return TRUE;
  }
  if (EVP_PKEY_is_a (pkey, "EC")) {
    char group[64] = "";
    size_t group_len = 0;
    if (EVP_PKEY_get_utf8_string_param (pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                        &group_len) &&
        (g_str_equal (group, "prime256v1") || g_str_equal (group, "P-256"))) {
      *ret = KEY_ES256;
      return TRUE;
    }
    g_set_error (error, EDGE_JWT_ERROR, EDGE_JWT_ERROR_KEY,
                 "an ES256 key must be on the P-256 curve, not %s", group[0] ? group : "?");
    return FALSE;
  }
  g_set_error (error, EDGE_JWT_ERROR, EDGE_JWT_ERROR_KEY,
               "a JWT public key must be RSA (RS256) or EC P-256 (ES256)");
  return FALSE;
}

gboolean
edge_jwt_keys_add_pem (EdgeJwtKeys *keys, const char *pem, gsize len, const char *kid,
                       GError **error)
{
  BIO *bio = BIO_new_mem_buf (pem, (int) MIN (len, (gsize) G_MAXINT));
  EVP_PKEY *pkey = PEM_read_bio_PUBKEY (bio, NULL, NULL, NULL);
  BIO_free (bio);
  KeyAlg alg;
  if (pkey == NULL) {
    g_set_error (error, EDGE_JWT_ERROR, EDGE_JWT_ERROR_KEY,
                 "not a PEM public key (-----BEGIN PUBLIC KEY-----)");
    return FALSE;
  }
  if (!alg_of_pkey (pkey, &alg, error)) {
    EVP_PKEY_free (pkey);
    return FALSE;
  }
  return keys_add (keys, alg, kid, NULL, pkey, error);
}

/* ---- base64url ---- */

static int
b64url_value (guchar c)
{
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '-')
    return 62;
  if (c == '_')
    return 63;
  return -1;
}

guint8 *
edge_base64url_decode (const char *text, gsize len, gsize *ret_len)
{
  if (len % 4 == 1)
    return NULL;
  guint8 *out = g_malloc (len * 3 / 4 + 3);
  gsize n = 0;
  guint32 acc = 0;
  guint bits = 0;
  for (gsize i = 0; i < len; i++) {
    int v = b64url_value ((guchar) text[i]);
    if (v < 0) {
      g_free (out);
      return NULL;
    }
    acc = (acc << 6) | (guint32) v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (guint8) (acc >> bits);
    }
  }
  /* Leftover bits must be zero (one text, one encoding). */
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    g_free (out);
    return NULL;
  }
  *ret_len = n;
  return out;
}

static GBytes *
member_b64 (JsonObject *o, const char *name)
{
  JsonNode *node = json_object_get_member (o, name);
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;
  const char *text = json_node_get_string (node);
  gsize len;
  guint8 *data = edge_base64url_decode (text, strlen (text), &len);
  return data ? g_bytes_new_take (data, len) : NULL;
}

static EVP_PKEY *
pkey_from_params (const char *type, OSSL_PARAM_BLD *bld)
{
  OSSL_PARAM *params = OSSL_PARAM_BLD_to_param (bld);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name (NULL, type, NULL);
  EVP_PKEY *pkey = NULL;
  if (params && ctx && EVP_PKEY_fromdata_init (ctx) > 0)
    EVP_PKEY_fromdata (ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  EVP_PKEY_CTX_free (ctx);
  OSSL_PARAM_free (params);
  return pkey;
}

static EVP_PKEY *
jwk_rsa (JsonObject *jwk)
{
  g_autoptr (GBytes) n = member_b64 (jwk, "n");
  g_autoptr (GBytes) e = member_b64 (jwk, "e");
  if (n == NULL || e == NULL || g_bytes_get_size (n) == 0 || g_bytes_get_size (e) == 0 ||
      g_bytes_get_size (n) > 1024 || g_bytes_get_size (e) > 16)
    return NULL;
  BIGNUM *bn_n = BN_bin2bn (g_bytes_get_data (n, NULL), (int) g_bytes_get_size (n), NULL);
  BIGNUM *bn_e = BN_bin2bn (g_bytes_get_data (e, NULL), (int) g_bytes_get_size (e), NULL);
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new ();
  EVP_PKEY *pkey = NULL;
  if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN (bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
      OSSL_PARAM_BLD_push_BN (bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
    pkey = pkey_from_params ("RSA", bld);
  OSSL_PARAM_BLD_free (bld);
  BN_free (bn_n);
  BN_free (bn_e);
  return pkey;
}

static EVP_PKEY *
jwk_ec (JsonObject *jwk)
{
  const char *crv = edge_json_member_string (jwk, "crv");
  g_autoptr (GBytes) x = member_b64 (jwk, "x");
  g_autoptr (GBytes) y = member_b64 (jwk, "y");
  if (crv == NULL || !g_str_equal (crv, "P-256") || x == NULL || y == NULL ||
      g_bytes_get_size (x) != 32 || g_bytes_get_size (y) != 32)
    return NULL;
  guint8 point[65];
  point[0] = 0x04; /* uncompressed */
  memcpy (point + 1, g_bytes_get_data (x, NULL), 32);
  memcpy (point + 33, g_bytes_get_data (y, NULL), 32);
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new ();
  EVP_PKEY *pkey = NULL;
  if (bld &&
      OSSL_PARAM_BLD_push_utf8_string (bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
      OSSL_PARAM_BLD_push_octet_string (bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point))
    pkey = pkey_from_params ("EC", bld);
  OSSL_PARAM_BLD_free (bld);
  return pkey;
}

gboolean
edge_jwt_keys_add_jwks (EdgeJwtKeys *keys, const char *json, gsize len, GError **error)
{
  g_autoptr (GError) parse_error = NULL;
  g_autoptr (JsonNode) root = edge_json_parse (json, len, 1024 * 1024, &parse_error);
  JsonNode *list = NULL;
  if (root && JSON_NODE_HOLDS_OBJECT (root))
    list = json_object_get_member (json_node_get_object (root), "keys");
  if (list == NULL || !JSON_NODE_HOLDS_ARRAY (list)) {
    g_set_error (error, EDGE_JWT_ERROR, EDGE_JWT_ERROR_KEY, "a JWKS is {\"keys\": [...]}%s%s",
                 parse_error ? ": " : "", parse_error ? parse_error->message : "");
    return FALSE;
  }
  JsonArray *array = json_node_get_array (list);
  for (guint i = 0; i < json_array_get_length (array); i++) {
    JsonNode *node = json_array_get_element (array, i);
    if (!JSON_NODE_HOLDS_OBJECT (node))
      continue;
    JsonObject *jwk = json_node_get_object (node);
    const char *kty = edge_json_member_string (jwk, "kty");
    const char *use = edge_json_member_string (jwk, "use");
    const char *alg = edge_json_member_string (jwk, "alg");
    const char *kid = edge_json_member_string (jwk, "kid");
    if (kty == NULL || (use && !g_str_equal (use, "sig")))
      continue;
    g_autoptr (GError) key_error = NULL;
    gboolean added;
    if (g_str_equal (kty, "oct")) {
      g_autoptr (GBytes) k = member_b64 (jwk, "k");
      if (k == NULL || (alg && !g_str_equal (alg, "HS256")))
        continue;
      added = edge_jwt_keys_add_secret (keys, g_bytes_get_data (k, NULL), g_bytes_get_size (k),
                                        kid, &key_error);
    } else {
      EVP_PKEY *pkey = NULL;
      KeyAlg key_alg;
      if (g_str_equal (kty, "RSA"))
        pkey = jwk_rsa (jwk);
      else if (g_str_equal (kty, "EC"))
        pkey = jwk_ec (jwk);
      if (pkey == NULL || !alg_of_pkey (pkey, &key_alg, &key_error) ||
          (alg && !g_str_equal (alg, alg_names[key_alg]))) {
        EVP_PKEY_free (pkey);
        if (key_error)
          g_debug ("JWKS key %u skipped: %s", i, key_error->message);
        continue;
      }
      added = keys_add (keys, key_alg, kid, NULL, pkey, &key_error);
    }
    if (!added) {
      if (key_error->code != EDGE_JWT_ERROR_KEY || keys->keys->len >= EDGE_JWT_MAX_KEYS) {
        g_propagate_error (error, g_steal_pointer (&key_error));
        return FALSE;
      }
      g_debug ("JWKS key %u skipped: %s", i, key_error->message);
    }
  }
  return TRUE;
}

/* ---- verification ---- */

void
edge_jwt_claims_clear (EdgeJwtClaims *claims)
{
  g_clear_pointer (&claims->subject, g_free);
  g_clear_pointer (&claims->scope, g_free);
  g_clear_pointer (&claims->claims, json_node_unref);
  claims->expires_s = 0;
}

static JsonObject *
decode_part (const char *text, gsize len, JsonNode **ret_root)
{
  gsize json_len;
  g_autofree guint8 *json = edge_base64url_decode (text, len, &json_len);
  if (json == NULL)
    return NULL;
  JsonNode *root = edge_json_parse ((const char *) json, json_len, EDGE_JWT_MAX_TOKEN, NULL);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    if (root)
      json_node_unref (root);
    return NULL;
  }
  *ret_root = root;
  return json_node_get_object (root);
}

static gboolean
verify_with (JwtKey *key, const char *signed_part, gsize signed_len, const guint8 *sig,
             gsize sig_len)
{
  if (key->alg == KEY_HS256) {
    guint8 mac[32];
    unsigned int mac_len = sizeof mac;
    gsize secret_len;
    const void *secret = g_bytes_get_data (key->secret, &secret_len);
    if (sig_len != sizeof mac)
      return FALSE;
    HMAC (EVP_sha256 (), secret, (int) secret_len, (const guchar *) signed_part, signed_len, mac,
          &mac_len);
    return CRYPTO_memcmp (mac, sig, sizeof mac) == 0;
  }

  guint8 *der = NULL;
  const guint8 *check = sig;
  gsize check_len = sig_len;
  if (key->alg == KEY_ES256) {
    /* JWS carries r || s (32 bytes each); OpenSSL verifies DER. */
    if (sig_len != 64)
      return FALSE;
    ECDSA_SIG *ecdsa = ECDSA_SIG_new ();
    BIGNUM *r = BN_bin2bn (sig, 32, NULL), *s = BN_bin2bn (sig + 32, 32, NULL);
    if (ecdsa == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0 (ecdsa, r, s)) {
      BN_free (r);
      BN_free (s);
      ECDSA_SIG_free (ecdsa);
      return FALSE;
    }
    int der_len = i2d_ECDSA_SIG (ecdsa, &der);
    ECDSA_SIG_free (ecdsa);
    if (der_len <= 0)
      return FALSE;
    check = der;
    check_len = (gsize) der_len;
  }
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  gboolean ok = ctx && EVP_DigestVerifyInit (ctx, NULL, EVP_sha256 (), NULL, key->pkey) == 1 &&
                EVP_DigestVerify (ctx, check, check_len, (const guchar *) signed_part,
                                  signed_len) == 1;
  EVP_MD_CTX_free (ctx);
  OPENSSL_free (der);
  return ok;
}

static gboolean
claim_time (JsonObject *payload, const char *name, gint64 *ret)
{
  JsonNode *node = json_object_get_member (payload, name);
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node))
    return FALSE;
  GType type = json_node_get_value_type (node);
  if (type == G_TYPE_INT64)
    *ret = json_node_get_int (node);
  else if (type == G_TYPE_DOUBLE && json_node_get_double (node) > -1e15 &&
           json_node_get_double (node) < 1e15)
    *ret = (gint64) json_node_get_double (node);
  else
    return FALSE;
  return TRUE;
}

static gboolean
audience_matches (JsonObject *payload, const char *audience)
{
  JsonNode *aud = json_object_get_member (payload, "aud");
  if (aud == NULL)
    return FALSE;
  if (JSON_NODE_HOLDS_VALUE (aud) && json_node_get_value_type (aud) == G_TYPE_STRING)
    return g_str_equal (json_node_get_string (aud), audience);
  if (!JSON_NODE_HOLDS_ARRAY (aud))
    return FALSE;
  JsonArray *list = json_node_get_array (aud);
  for (guint i = 0; i < json_array_get_length (list); i++) {
    JsonNode *one = json_array_get_element (list, i);
    if (JSON_NODE_HOLDS_VALUE (one) && json_node_get_value_type (one) == G_TYPE_STRING &&
        g_str_equal (json_node_get_string (one), audience))
      return TRUE;
  }
  return FALSE;
}

static gboolean
fail (GError **error, EdgeJwtError code, const char *message)
{
  g_set_error_literal (error, EDGE_JWT_ERROR, code, message);
  return FALSE;
}

gboolean
edge_jwt_verify (EdgeJwtKeys *keys, const char *token, gsize len, gint64 now_s,
                 const EdgeJwtPolicy *policy, EdgeJwtClaims *out, GError **error)
{
  g_autoptr (JsonNode) header_root = NULL;
  g_autoptr (JsonNode) payload_root = NULL;

  memset (out, 0, sizeof *out);
  if (len > EDGE_JWT_MAX_TOKEN)
    return fail (error, EDGE_JWT_ERROR_MALFORMED, "the token is longer than 8192 bytes");
  const char *dot1 = memchr (token, '.', len);
  const char *dot2 = dot1 ? memchr (dot1 + 1, '.', len - (gsize) (dot1 + 1 - token)) : NULL;
  if (dot2 == NULL || memchr (dot2 + 1, '.', len - (gsize) (dot2 + 1 - token)))
    return fail (error, EDGE_JWT_ERROR_MALFORMED, "a JWT has three parts separated by dots");

  JsonObject *header = decode_part (token, (gsize) (dot1 - token), &header_root);
  JsonObject *payload = decode_part (dot1 + 1, (gsize) (dot2 - dot1 - 1), &payload_root);
  gsize sig_len;
  g_autofree guint8 *sig = edge_base64url_decode (dot2 + 1, len - (gsize) (dot2 + 1 - token),
                                                  &sig_len);
  if (header == NULL || payload == NULL || sig == NULL)
    return fail (error, EDGE_JWT_ERROR_MALFORMED, "the token is not base64url-encoded JSON");

  const char *alg = edge_json_member_string (header, "alg");
  const char *kid = edge_json_member_string (header, "kid");
  if (alg == NULL)
    return fail (error, EDGE_JWT_ERROR_MALFORMED, "the token's header has no alg");
  if (json_object_has_member (header, "crit"))
    return fail (error, EDGE_JWT_ERROR_MALFORMED, "the token asks for extensions (crit)");
  gboolean verified = FALSE, alg_known = FALSE;
  for (guint i = 0; i < keys->keys->len && !verified; i++) {
    JwtKey *key = g_ptr_array_index (keys->keys, i);
    if (!g_str_equal (alg, alg_names[key->alg]))
      continue;
    alg_known = TRUE;
    if (kid && key->kid && !g_str_equal (kid, key->kid))
      continue;
    verified = verify_with (key, token, (gsize) (dot2 - token), sig, sig_len);
  }
  if (!verified)
    return fail (error, EDGE_JWT_ERROR_SIGNATURE,
                 alg_known ? "the token's signature does not verify"
                           : "the token's algorithm is not one a configured key uses");

  gint64 exp, nbf, iat;
  gint64 leeway = policy ? policy->leeway_s : 0;
  if (!claim_time (payload, "exp", &exp))
    return fail (error, EDGE_JWT_ERROR_CLAIMS, "the token has no exp claim");
  if (now_s > exp + leeway)
    return fail (error, EDGE_JWT_ERROR_EXPIRED, "the token has expired");
  if (json_object_has_member (payload, "nbf") &&
      (!claim_time (payload, "nbf", &nbf) || now_s + leeway < nbf))
    return fail (error, EDGE_JWT_ERROR_CLAIMS, "the token is not valid yet (nbf)");
  if (json_object_has_member (payload, "iat") &&
      (!claim_time (payload, "iat", &iat) || now_s + leeway < iat))
    return fail (error, EDGE_JWT_ERROR_CLAIMS, "the token was issued in the future (iat)");
  if (policy && policy->issuer && policy->issuer[0]) {
    const char *iss = edge_json_member_string (payload, "iss");
    if (iss == NULL || !g_str_equal (iss, policy->issuer))
      return fail (error, EDGE_JWT_ERROR_CLAIMS, "the token's issuer (iss) is not accepted");
  }
  if (policy && policy->audience && policy->audience[0] &&
      !audience_matches (payload, policy->audience))
    return fail (error, EDGE_JWT_ERROR_CLAIMS, "the token is not for this audience (aud)");

  const char *sub = edge_json_member_string (payload, "sub");
  const char *scope = edge_json_member_string (payload, "scope");
  out->subject = g_strdup (sub ? sub : "");
  out->scope = g_strdup (scope ? scope : "");
  out->expires_s = exp;
  out->claims = g_steal_pointer (&payload_root);
  return TRUE;
}
