/* sigv4.h: checking AWS Signature Version 4 (private to the gateway; pure,
 * so that tests and fuzzers drive it without sockets).
 *
 * The AWS CLI and SDKs sign each request with a secret access key; the
 * server rebuilds the same canonical request from what it received and
 * compares signatures. The rules followed are the ones botocore and the
 * JavaScript SDK v3 (@smithy/signature-v4) implement for every service but
 * S3: the path's dot segments and empty segments removed and the path
 * percent-encoded a second time, the query decoded, re-encoded strictly and
 * sorted, header values trimmed with inner runs of spaces collapsed.
 */
#pragma once

#include <glib.h>

#define EDGE_SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
/* The longest Authorization header or signed-header list looked at. */
#define EDGE_SIGV4_MAX_HEADER 4096
#define EDGE_SIGV4_MAX_SIGNED_HEADERS 32

#define EDGE_SIGV4_ERROR (edge_sigv4_error_quark ())
GQuark edge_sigv4_error_quark (void);
typedef enum {
  EDGE_SIGV4_ERROR_MALFORMED, /* IncompleteSignatureException */
  EDGE_SIGV4_ERROR_UNSUPPORTED,
} EdgeSigv4Error;

/* The parts of "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
 * SignedHeaders=a;b, Signature=HEX". */
typedef struct {
  char *access_key_id;
  char *date; /* YYYYMMDD */
  char *region;
  char *service;
  char *signed_headers; /* "host;x-amz-date", lowercase, as signed */
  char signature[65];   /* lowercase hex */
} EdgeSigv4Authorization;

gboolean edge_sigv4_parse_authorization (const char *header, EdgeSigv4Authorization *out,
                                         GError **error);
void edge_sigv4_authorization_clear (EdgeSigv4Authorization *auth);

/* "DATE/REGION/SERVICE/aws4_request". (transfer full) */
char *edge_sigv4_scope (const EdgeSigv4Authorization *auth);

typedef struct {
  const char *name; /* any case */
  const char *value;
} EdgeSigv4Header;

/* The canonical request for @method, the raw (percent-encoded) @path and
 * @query (nullable, without '?'), the received @headers, the signed header
 * names (";"-separated, sorted, lowercase) and the payload's hex SHA-256.
 * Fails if a signed header is missing or the list is not in order.
 * (transfer full) */
char *edge_sigv4_canonical_request (const char *method, const char *path, const char *query,
                                    const EdgeSigv4Header *headers, gsize n_headers,
                                    const char *signed_headers, const char *payload_hash,
                                    GError **error);

/* The hex SHA-256 of @data. */
void edge_sigv4_sha256_hex (const void *data, gsize len, char out[65]);

/* The signature of @canonical_request signed at @amz_date ("20261129T153600Z")
 * with @secret under the scope of @auth. */
void edge_sigv4_sign (const char *secret, const EdgeSigv4Authorization *auth,
                      const char *amz_date, const char *canonical_request, char out[65]);

/* Parses "YYYYMMDDTHHMMSSZ" into Unix seconds; FALSE if malformed. */
gboolean edge_sigv4_parse_amz_date (const char *text, gint64 *ret_seconds);
