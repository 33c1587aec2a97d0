/* test-auth: the gateway's credential checks without sockets: SigV4
 * (canonical requests and signatures, against vectors botocore produced)
 * and JWTs (HS256, RS256, ES256, JWKS; tokens signed by Node.js's crypto).
 */
#include "jwt.h"
#include "sigv4.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define AMZ_DATE "20150830T123600Z"

/* Signs like the server checks: parse, canonicalise, sign, compare. */
static gboolean
check (const char *authorization, const char *method, const char *path, const char *query,
       const EdgeSigv4Header *headers, gsize n, const char *body)
{
  EdgeSigv4Authorization auth;
  g_autoptr (GError) error = NULL;
  char payload[65], signature[65];
  assert_true (edge_sigv4_parse_authorization (authorization, &auth, &error));
  edge_sigv4_sha256_hex (body, strlen (body), payload);
  g_autofree char *canonical = edge_sigv4_canonical_request (method, path, query, headers, n,
                                                             auth.signed_headers, payload, &error);
  assert_non_null (canonical);
  edge_sigv4_sign (SECRET, &auth, AMZ_DATE, canonical, signature);
  gboolean same = g_str_equal (signature, auth.signature);
  edge_sigv4_authorization_clear (&auth);
  return same;
}

static void
test_sigv4_vanilla (void **state)
{
  const EdgeSigv4Header headers[] = { { "Host", "example.amazonaws.com" },
                                      { "X-Amz-Date", AMZ_DATE } };
  const char *auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                     "aws4_request, SignedHeaders=host;x-amz-date, Signature="
                     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
  assert_true (check (auth, "GET", "/", NULL, headers, 2, ""));
  /* Anything else signed differently. */
  assert_false (check (auth, "POST", "/", NULL, headers, 2, ""));
  assert_false (check (auth, "GET", "/x", NULL, headers, 2, ""));
  assert_false (check (auth, "GET", "/", "a=b", headers, 2, ""));
  assert_false (check (auth, "GET", "/", NULL, headers, 2, "body"));
}

static void
test_sigv4_query_order (void **state)
{
  const EdgeSigv4Header headers[] = { { "host", "example.amazonaws.com" },
                                      { "x-amz-date", AMZ_DATE } };
  const char *auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                     "aws4_request, SignedHeaders=host;x-amz-date, Signature="
                     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
  assert_true (check (auth, "GET", "/", "Param2=value2&Param1=value1", headers, 2, ""));
}

/* An encoded path segment is encoded again, the query's space as %20,
 * header values trimmed with inner runs made one space. */
static void
test_sigv4_post_encoded (void **state)
{
  const EdgeSigv4Header headers[] = {
    { "Content-Type", "application/json" },
    { "Host", "example.amazonaws.com" },
    { "My-Header1", "  a   b  c " },
    { "X-Amz-Date", AMZ_DATE },
    { "User-Agent", "not signed" },
  };
  const char *auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                     "aws4_request, SignedHeaders=content-type;host;my-header1;x-amz-date, "
                     "Signature=52bb307d8e7253ade64b30f982bfe092b2d210b64e89269ee30cd3cb1a8380a8";
  assert_true (check (auth, "POST", "/2015-03-31/functions/my%3Afn/invocations", "Qualifier=a%20b",
                      headers, G_N_ELEMENTS (headers), "{\"x\":1}"));
}

static void
test_sigv4_malformed (void **state)
{
  const char *bad[] = {
    "",
    "AWS4-HMAC-SHA1 Credential=A/20150830/r/s/aws4_request, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=A/2015083/r/s/aws4_request, SignedHeaders=host, Signature="
    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=x-b;host, Signature="
    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=host, Signature=zz",
    "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=Host, Signature="
    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, Signature="
    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "AWS4-HMAC-SHA256 Credential=A//r/s/aws4_request, SignedHeaders=host, Signature="
    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    EdgeSigv4Authorization auth;
    g_autoptr (GError) error = NULL;
    assert_false (edge_sigv4_parse_authorization (bad[i], &auth, &error));
    assert_non_null (error);
    assert_null (auth.access_key_id);
  }
  /* A signed header the request lacks. */
  const EdgeSigv4Header headers[] = { { "host", "h" } };
  g_autoptr (GError) error = NULL;
  assert_null (edge_sigv4_canonical_request ("GET", "/", NULL, headers, 1, "host;x-amz-date",
                                             "e3", &error));
  assert_non_null (error);
}

static void
test_sigv4_dates (void **state)
{
  gint64 t;
  assert_true (edge_sigv4_parse_amz_date (AMZ_DATE, &t));
  assert_int_equal (t, 1440938160);
  assert_false (edge_sigv4_parse_amz_date ("20150830T123600", &t));
  assert_false (edge_sigv4_parse_amz_date ("20151330T123600Z", &t));
  assert_false (edge_sigv4_parse_amz_date ("2015-08-30T12:36Z", &t));
  assert_false (edge_sigv4_parse_amz_date (NULL, &t));
}

/* ---- JWT ---- */

static const char hs_token[] =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vaWQuZXhhbXB"
  "sZSIsImF1ZCI6ImVkZ2VkIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsInNjb3BlIjoicmVhZCB"
  "lZGdlZDphZG1pbiJ9.WtSZZPjqI4dgfO5sH2ef1m14Lm2QUHA9sk-RPkLSRO8";
static const char rs_token[] =
  "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InIxIn0.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBz"
  "Oi8vaWQuZXhhbXBsZSIsImF1ZCI6ImVkZ2VkIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsInNj"
  "b3BlIjoicmVhZCBlZGdlZDphZG1pbiJ9.l4Fv6_UHDGDYaqqgzS551rvzob_mNMp7mdMkC-rDptU20UrD7i0uKE5"
  "Y2fFHKAyP9PRmr5NSlf1NRKwaNBE2-GTI1bwbazrSSiddmR3fMqUYpZpPMpd4HyT4jS06Cs1ruczWxG8foxXSY7Y"
  "v0LZcvOrYHaT6wbRTXHbwhZ8BaHSB-JMFN8cNK36sHBzDSIXTqTiSL7p82VSx1fSnhpo0XNzerURue4LRVyovF1w"
  "VI9nQTBMpYLLqFpqqLLZ8IrOi6nsmm-5VMdC5Dgsos2TUJ642JxFE7oKfNFuUeFJMEAa0eVVNs6iLrJQAlMuaVN4"
  "NEfVBmJSOj4Eef0r56DKKBA";
static const char es_token[] =
  "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImUxIn0.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBz"
  "Oi8vaWQuZXhhbXBsZSIsImF1ZCI6ImVkZ2VkIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsInNj"
  "b3BlIjoicmVhZCBlZGdlZDphZG1pbiJ9.qTJ7d3N3F8SGJkAqEPOcE3valGuVuKZaxnwfKTBXdjPtP6S4S4m7Q-r"
  "Nyqh0Xinp60t6ti9SXZNjBRofYDkfVA";
static const char rsa_pem[] =
  "-----BEGIN PUBLIC KEY-----\n"
  "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA8eroETBcOGBczUoohlS0\n"
  "E6ckChoRSoUCtgqsKZhyGMq561QZ8aoB7VorwVtSQkq6FlUuqvbtsQ26Da0q1qmw\n"
  "v2IbrsQ0lCF1plSUtBj/OlLgkx9q/MbDaGcKrYUyEFRPOYQyAsrFdm0DjS6EVwuO\n"
  "FicBm367cAtp/U0vLKV5u/4g6zb6wKUzZm/ROfvu1RkmSL+qYjijYBt3OVIWIvpe\n"
  "V0PbyShWvasBTtg8IjIV6BO3+Lk+cq+B4a32g+CPOYUhUSYlUNz7v/oB4B71eKzR\n"
  "45wBNT/uiTYLjr4fTPSU1XM11TMfS/x9P7UduBucJ8emjluLTmZcblfWBWOkwNID\n"
  "RQIDAQAB\n"
  "-----END PUBLIC KEY-----\n";
static const char jwks[] =
  "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"8eroETBcOGBczUoohlS0E6ckChoRSoUCtgqsKZhyGMq561QZ8aoB"
  "7VorwVtSQkq6FlUuqvbtsQ26Da0q1qmwv2IbrsQ0lCF1plSUtBj_OlLgkx9q_MbDaGcKrYUyEFRPOYQyAsrFdm0D"
  "jS6EVwuOFicBm367cAtp_U0vLKV5u_4g6zb6wKUzZm_ROfvu1RkmSL-qYjijYBt3OVIWIvpeV0PbyShWvasBTtg8"
  "IjIV6BO3-Lk-cq-B4a32g-CPOYUhUSYlUNz7v_oB4B71eKzR45wBNT_uiTYLjr4fTPSU1XM11TMfS_x9P7UduBuc"
  "J8emjluLTmZcblfWBWOkwNIDRQ\",\"e\":\"AQAB\",\"kid\":\"r1\",\"alg\":\"RS256\",\"use\":\"s"
  "ig\"},{\"kty\":\"EC\",\"x\":\"iyqURpUZWy78F0Tyy5zJEiA_UWQqD-9hNxPlI3Bf2l8\",\"y\":\"RQ1B"
  "d6FEx84fjW8JwIYExV_RlUlMvIo3kbgNEkXkuy8\",\"crv\":\"P-256\",\"kid\":\"e1\"}]}";
#define HS_SECRET "0123456789abcdef0123456789abcdef"
#define NOW 1800000000

static void
assert_verifies (EdgeJwtKeys *keys, const char *token, const EdgeJwtPolicy *policy)
{
  EdgeJwtClaims claims;
  g_autoptr (GError) error = NULL;
  if (!edge_jwt_verify (keys, token, strlen (token), NOW, policy, &claims, &error))
    fail_msg ("%s", error->message);
  assert_string_equal (claims.subject, "alice");
  assert_string_equal (claims.scope, "read edged:admin");
  assert_int_equal (claims.expires_s, 4102444800);
  edge_jwt_claims_clear (&claims);
}

static int
refusal (EdgeJwtKeys *keys, const char *token, gint64 now, const EdgeJwtPolicy *policy)
{
  EdgeJwtClaims claims;
  g_autoptr (GError) error = NULL;
  assert_false (edge_jwt_verify (keys, token, strlen (token), now, policy, &claims, &error));
  assert_null (claims.subject);
  return error->code;
}

static void
test_jwt_algorithms (void **state)
{
  g_autoptr (EdgeJwtKeys) keys = edge_jwt_keys_new ();
  g_autoptr (GError) error = NULL;
  EdgeJwtPolicy policy = { "https://id.example", "edged", 60 };
  assert_true (edge_jwt_keys_add_secret (keys, HS_SECRET, strlen (HS_SECRET), NULL, &error));
  assert_true (edge_jwt_keys_add_jwks (keys, jwks, strlen (jwks), &error));
  assert_int_equal (edge_jwt_keys_count (keys), 3);
  assert_verifies (keys, hs_token, &policy);
  assert_verifies (keys, rs_token, &policy);
  assert_verifies (keys, es_token, &policy);
}

static void
test_jwt_pem (void **state)
{
  g_autoptr (EdgeJwtKeys) keys = edge_jwt_keys_new ();
  g_autoptr (GError) error = NULL;
  assert_true (edge_jwt_keys_add_pem (keys, rsa_pem, strlen (rsa_pem), NULL, &error));
  assert_verifies (keys, rs_token, NULL);
  /* Another algorithm than the key's: refused, not tried. */
  assert_int_equal (refusal (keys, hs_token, NOW, NULL), EDGE_JWT_ERROR_SIGNATURE);
  assert_int_equal (refusal (keys, es_token, NOW, NULL), EDGE_JWT_ERROR_SIGNATURE);
}

static void
test_jwt_claims (void **state)
{
  g_autoptr (EdgeJwtKeys) keys = edge_jwt_keys_new ();
  g_autoptr (GError) error = NULL;
  assert_true (edge_jwt_keys_add_secret (keys, HS_SECRET, strlen (HS_SECRET), NULL, &error));
  EdgeJwtPolicy wrong_iss = { "https://other", NULL, 0 };
  EdgeJwtPolicy wrong_aud = { NULL, "someone-else", 0 };
  EdgeJwtPolicy leeway = { NULL, NULL, 60 };
  assert_int_equal (refusal (keys, hs_token, NOW, &wrong_iss), EDGE_JWT_ERROR_CLAIMS);
  assert_int_equal (refusal (keys, hs_token, NOW, &wrong_aud), EDGE_JWT_ERROR_CLAIMS);
  /* exp 4102444800; iat 1700000000 */
  assert_int_equal (refusal (keys, hs_token, 4102444800 + 61, &leeway), EDGE_JWT_ERROR_EXPIRED);
  assert_int_equal (refusal (keys, hs_token, 1700000000 - 61, &leeway), EDGE_JWT_ERROR_CLAIMS);
  EdgeJwtClaims claims;
  assert_true (edge_jwt_verify (keys, hs_token, strlen (hs_token), 4102444800 + 59, &leeway,
                                &claims, &error));
  edge_jwt_claims_clear (&claims);
}

static void
test_jwt_tampered (void **state)
{
  g_autoptr (EdgeJwtKeys) keys = edge_jwt_keys_new ();
  g_autoptr (GError) error = NULL;
  assert_true (edge_jwt_keys_add_secret (keys, HS_SECRET, strlen (HS_SECRET), NULL, &error));
  assert_true (edge_jwt_keys_add_jwks (keys, jwks, strlen (jwks), &error));
  const char *tokens[] = { hs_token, rs_token, es_token };
  for (gsize t = 0; t < G_N_ELEMENTS (tokens); t++) {
    gsize len = strlen (tokens[t]);
    /* Every character changed in turn is refused (the last one of a
     * base64url signature may carry only padding bits: skipped). */
    for (gsize i = 0; i + 1 < len; i++) {
      g_autofree char *copy = g_strdup (tokens[t]);
      if (copy[i] == '.')
        continue;
      copy[i] = copy[i] == 'A' ? 'B' : 'A';
      EdgeJwtClaims claims;
      g_autoptr (GError) e = NULL;
      if (edge_jwt_verify (keys, copy, len, NOW, NULL, &claims, &e))
        fail_msg ("token %zu with byte %zu changed was accepted", t, i);
    }
  }
  /* alg none, and shapes that are not tokens. */
  const char *bad[] = { "", "a.b", "a.b.c.d", "eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.",
                        "....", "!!.??.**" };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    refusal (keys, bad[i], NOW, NULL);
}

static void
test_jwt_keys_refused (void **state)
{
  g_autoptr (EdgeJwtKeys) keys = edge_jwt_keys_new ();
  g_autoptr (GError) error = NULL;
  assert_false (edge_jwt_keys_add_secret (keys, "short", 5, NULL, &error));
  g_clear_error (&error);
  assert_false (edge_jwt_keys_add_pem (keys, "not pem", 7, NULL, &error));
  g_clear_error (&error);
  assert_false (edge_jwt_keys_add_jwks (keys, "[]", 2, &error));
  assert_int_equal (edge_jwt_keys_count (keys), 0);
}

static void
test_base64url (void **state)
{
  gsize len;
  g_autofree guint8 *a = edge_base64url_decode ("aGk", 3, &len);
  assert_non_null (a);
  assert_int_equal (len, 2);
  assert_memory_equal (a, "hi", 2);
  assert_null (edge_base64url_decode ("aGk=", 4, &len));
  assert_null (edge_base64url_decode ("a+k", 3, &len));
  assert_null (edge_base64url_decode ("a", 1, &len));
  assert_null (edge_base64url_decode ("aGl", 3, &len)); /* stray bits */
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_sigv4_vanilla),     cmocka_unit_test (test_sigv4_query_order),
    cmocka_unit_test (test_sigv4_post_encoded), cmocka_unit_test (test_sigv4_malformed),
    cmocka_unit_test (test_sigv4_dates),       cmocka_unit_test (test_jwt_algorithms),
    cmocka_unit_test (test_jwt_pem),           cmocka_unit_test (test_jwt_claims),
    cmocka_unit_test (test_jwt_tampered),      cmocka_unit_test (test_jwt_keys_refused),
    cmocka_unit_test (test_base64url),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
