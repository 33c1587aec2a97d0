/* auth.c: who may call the gateway, and how often (docs/internals/auth.md).
 *
 * Every request passes gateway_auth_check before its handler (or its
 * WebSocket upgrade) runs: one place, so a route a module adds tomorrow is
 * protected like the others. A request presents one credential:
 *
 *   Authorization: AWS4-HMAC-SHA256 ...   SigV4, as the AWS CLI and SDKs sign
 *   Authorization: Bearer edk_...         an API key (also x-api-key: edk_...)
 *   Authorization: Bearer eyJ...          a JWT
 *   Cookie: edged_session=eds_...         a browser session (POST /v1/login)
 *   ?token=...                            any of the last three, for browsers'
 *                                         WebSockets, <video> and <img>
 *
 * and the route's group (gateway.auth.groups, matched by pattern or tag)
 * says which kinds it takes; a group may instead ask a function (an API
 * Gateway Lambda authorizer, answers cached for a TTL). API keys are kept
 * as SHA-256 hashes only; a key with a usage plan is held to its rate,
 * burst (a token bucket) and daily quota, counted in memory and written
 * back every few seconds.
 *
 * Refusals come in the shape the caller's client understands: edged's
 * {"error": ...}, the AWS JSON protocol's __type (Kinesis), the AWS REST
 * protocol's X-Amzn-ErrorType (Lambda, Kinesis Video), or API Gateway's
 * {"message": ...} (functions' HTTP routes).
 */
#define G_LOG_DOMAIN "gateway"

#include "gateway-private.h"

#include "jwt.h"
#include "sigv4.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <unistd.h>

#define KEY_PREFIX "edk_"
#define SESSION_PREFIX "eds_"
#define SESSION_COOKIE "edged_session"
/* Usage counts reach the database this often. */
#define USAGE_FLUSH_S 5
/* Authorizer answers kept at most, whatever their TTL. */
#define AUTHORIZER_CACHE_MAX 10000
#define AUTHORIZER_MAX_CONTEXT_BYTES (8 * 1024)
#define MAX_KEYS 10000

typedef enum {
  MODE_NONE = 1 << 0,
  MODE_API_KEY = 1 << 1,
  MODE_JWT = 1 << 2,
  MODE_SIGV4 = 1 << 3,
  MODE_SESSION = 1 << 4,
  MODE_AUTHORIZER = 1 << 5,
} AuthMode;

static const struct {
  const char *name;
  AuthMode mode;
} mode_names[] = {
  { "none", MODE_NONE },   { "api_key", MODE_API_KEY }, { "jwt", MODE_JWT },
  { "sigv4", MODE_SIGV4 }, { "session", MODE_SESSION }, { "authorizer", MODE_AUTHORIZER },
};

typedef struct {
  char **patterns; /* a route pattern, a path prefix ending in "*", or "@tag" */
  guint modes;
  char *plan; /* nullable: a plan every API key is held to here */
} AuthGroup;

typedef struct {
  char *name;
  double rate;  /* requests per second */
  double burst; /* bucket size */
  gint64 quota; /* per UTC day; 0: none */
} UsagePlan;

typedef struct {
  char *id;
  char *name;
  char *hash; /* hex SHA-256 of the key */
  char *prefix; /* its first characters, to tell keys apart */
  char *plan;   /* "" for none */
  gboolean admin;
  gboolean internal; /* edged's own, for its functions; never stored */
  char *created;
  /* Usage. */
  double tokens;
  gint64 refilled_us;
  gint64 day; /* days since the epoch the count is of */
  gint64 used_today;
  gboolean dirty;
} ApiKey;

typedef struct {
  gboolean allow;
  char *context; /* JSON object text, or NULL */
  gint64 expires_us;
} AuthorizerAnswer;

struct _GatewayAuth {
  EdgeGateway *gateway;
  gboolean enabled;
  sqlite3 *db; /* nullable: no keys kept */
  char *admin_key_file;
  GHashTable *keys_by_hash; /* hash -> ApiKey (owned) */
  GHashTable *keys_by_id;   /* id -> ApiKey (borrowed) */
  GPtrArray *plans;         /* UsagePlan */
  GPtrArray *groups;        /* AuthGroup */
  guint default_modes;
  EdgeJwtKeys *jwt_keys;
  char *jwt_issuer, *jwt_audience, *jwt_admin_scope;
  gint64 jwt_leeway_s;
  GHashTable *sigv4_secrets; /* access key id -> secret */
  char *sigv4_region;
  gint64 replay_window_s;
  guint8 session_key[32];
  gint64 session_ttl_s;
  char *authorizer_function;
  char *authorizer_identity;
  gint64 authorizer_ttl_s;
  GHashTable *authorizer_cache; /* identity -> AuthorizerAnswer */
  EdgeGatewayAuthorizerFunc authorizer;
  gpointer authorizer_data;
  char *internal_key;
  char *internal_access_key_id; /* the same secret, for SigV4 */
  guint flush_timer;
  /* CORS */
  char **cors_origins;
  char *cors_methods, *cors_headers, *cors_expose;
  gint64 cors_max_age_s;
  gboolean cors_credentials;
  gboolean tls;
};

/* ---- small helpers ---- */

static gint64
now_s (void)
{
  return g_get_real_time () / G_USEC_PER_SEC;
}

static char *
random_hex (gsize bytes)
{
  guint8 buf[32];
  char *out = g_malloc (bytes * 2 + 1);
  g_assert (bytes <= sizeof buf);
  if (RAND_bytes (buf, (int) bytes) != 1)
    g_error ("the random generator failed");
  for (gsize i = 0; i < bytes; i++)
    g_snprintf (out + 2 * i, 3, "%02x", buf[i]);
  return out;
}

static char *
b64url (const guint8 *data, gsize len)
{
  g_autofree char *std = g_base64_encode (data, len);
  GString *out = g_string_new (NULL);
  for (const char *c = std; *c && *c != '='; c++)
    g_string_append_c (out, *c == '+' ? '-' : *c == '/' ? '_' : *c);
  return g_string_free (out, FALSE);
}

static void
api_key_free (gpointer data)
{
  ApiKey *key = data;
  g_free (key->id);
  g_free (key->name);
  g_free (key->hash);
  g_free (key->prefix);
  g_free (key->plan);
  g_free (key->created);
  g_free (key);
}

static void
authorizer_answer_free (gpointer data)
{
  AuthorizerAnswer *answer = data;
  g_free (answer->context);
  g_free (answer);
}

static UsagePlan *
plan_find (GatewayAuth *auth, const char *name)
{
  for (guint i = 0; name && i < auth->plans->len; i++) {
    UsagePlan *plan = g_ptr_array_index (auth->plans, i);
    if (g_str_equal (plan->name, name))
      return plan;
  }
  return NULL;
}

/* ---- the key table ---- */

static const char *const auth_schema[] = {
  /* 1 */
  "CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,"
  "  prefix TEXT NOT NULL, plan TEXT NOT NULL DEFAULT '', admin INTEGER NOT NULL DEFAULT 0,"
  "  created TEXT NOT NULL);"
  "CREATE TABLE api_key_usage (id TEXT NOT NULL, day INTEGER NOT NULL, requests INTEGER NOT NULL,"
  "  PRIMARY KEY (id, day));"
  "CREATE TABLE auth_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
};

static ApiKey *
key_insert_memory (GatewayAuth *auth, ApiKey *key)
{
  key->refilled_us = g_get_monotonic_time ();
  UsagePlan *plan = plan_find (auth, key->plan);
  key->tokens = plan ? plan->burst : 0;
  key->day = now_s () / 86400;
  g_hash_table_replace (auth->keys_by_hash, key->hash, key);
  g_hash_table_replace (auth->keys_by_id, key->id, key);
  return key;
}

static gboolean
keys_load (GatewayAuth *auth, GError **error)
{
  sqlite3_stmt *stmt = NULL;
  gint64 today = now_s () / 86400;
  if (sqlite3_prepare_v2 (auth->db,
                          "SELECT k.id, k.name, k.hash, k.prefix, k.plan, k.admin, k.created,"
                          " coalesce(u.requests, 0) FROM api_keys k LEFT JOIN api_key_usage u"
                          " ON u.id = k.id AND u.day = ?1",
                          -1, &stmt, NULL) != SQLITE_OK) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "API keys: %s",
                 sqlite3_errmsg (auth->db));
    return FALSE;
  }
  sqlite3_bind_int64 (stmt, 1, today);
  while (sqlite3_step (stmt) == SQLITE_ROW) {
    ApiKey *key = g_new0 (ApiKey, 1);
    key->id = g_strdup ((const char *) sqlite3_column_text (stmt, 0));
    key->name = g_strdup ((const char *) sqlite3_column_text (stmt, 1));
    key->hash = g_strdup ((const char *) sqlite3_column_text (stmt, 2));
    key->prefix = g_strdup ((const char *) sqlite3_column_text (stmt, 3));
    key->plan = g_strdup ((const char *) sqlite3_column_text (stmt, 4));
    key->admin = sqlite3_column_int (stmt, 5) != 0;
    key->created = g_strdup ((const char *) sqlite3_column_text (stmt, 6));
    key_insert_memory (auth, key);
    key->used_today = sqlite3_column_int64 (stmt, 7);
  }
  sqlite3_finalize (stmt);
  return TRUE;
}

static void
usage_flush (GatewayAuth *auth)
{
  GHashTableIter iter;
  gpointer value;
  sqlite3_stmt *stmt = NULL;
  if (auth->db == NULL ||
      sqlite3_prepare_v2 (auth->db,
                          "INSERT INTO api_key_usage (id, day, requests) VALUES (?1, ?2, ?3)"
                          " ON CONFLICT (id, day) DO UPDATE SET requests = excluded.requests",
                          -1, &stmt, NULL) != SQLITE_OK)
    return;
  g_hash_table_iter_init (&iter, auth->keys_by_hash);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    ApiKey *key = value;
    if (!key->dirty || key->internal)
      continue;
    sqlite3_bind_text (stmt, 1, key->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 2, key->day);
    sqlite3_bind_int64 (stmt, 3, key->used_today);
    if (sqlite3_step (stmt) == SQLITE_DONE)
      key->dirty = FALSE;
    else
      g_warning ("API key usage: %s", sqlite3_errmsg (auth->db));
    sqlite3_reset (stmt);
  }
  sqlite3_finalize (stmt);
}

static gboolean
on_flush_timer (gpointer data)
{
  usage_flush (data);
  return G_SOURCE_CONTINUE;
}

/* A new key: the secret is returned once and only its hash is kept. */
static ApiKey *
key_create (GatewayAuth *auth, const char *name, const char *plan, gboolean admin,
            gboolean internal, char **ret_secret, GError **error)
{
  g_autofree char *body = random_hex (24);
  char *secret = g_strconcat (KEY_PREFIX, body, NULL);
  char hash[65];
  edge_sigv4_sha256_hex (secret, strlen (secret), hash);
  ApiKey *key = g_new0 (ApiKey, 1);
  g_autofree char *id = random_hex (6);
  key->id = g_strconcat ("key-", id, NULL);
  key->name = g_strdup (name);
  key->hash = g_strdup (hash);
  key->prefix = g_strndup (secret, strlen (KEY_PREFIX) + 6);
  key->plan = g_strdup (plan ? plan : "");
  key->admin = admin;
  key->internal = internal;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  key->created = g_date_time_format_iso8601 (now);

  if (!internal) {
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (auth->db,
                                 "INSERT INTO api_keys (id, name, hash, prefix, plan, admin,"
                                 " created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                 -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
      sqlite3_bind_text (stmt, 1, key->id, -1, SQLITE_STATIC);
      sqlite3_bind_text (stmt, 2, key->name, -1, SQLITE_STATIC);
      sqlite3_bind_text (stmt, 3, key->hash, -1, SQLITE_STATIC);
      sqlite3_bind_text (stmt, 4, key->prefix, -1, SQLITE_STATIC);
      sqlite3_bind_text (stmt, 5, key->plan, -1, SQLITE_STATIC);
      sqlite3_bind_int (stmt, 6, admin);
      sqlite3_bind_text (stmt, 7, key->created, -1, SQLITE_STATIC);
      rc = sqlite3_step (stmt);
    }
    sqlite3_finalize (stmt);
    if (rc != SQLITE_DONE) {
      g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "API keys: %s",
                   sqlite3_errmsg (auth->db));
      api_key_free (key);
      OPENSSL_cleanse (secret, strlen (secret));
      g_free (secret);
      return NULL;
    }
  }
  *ret_secret = secret;
  return key_insert_memory (auth, key);
}

static gboolean
key_delete (GatewayAuth *auth, ApiKey *key)
{
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2 (auth->db,
                               "DELETE FROM api_keys WHERE id = ?1;", -1, &stmt, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text (stmt, 1, key->id, -1, SQLITE_STATIC);
    rc = sqlite3_step (stmt);
  }
  sqlite3_finalize (stmt);
  if (rc != SQLITE_DONE)
    return FALSE;
  sqlite3_exec (auth->db, "DELETE FROM api_key_usage WHERE id NOT IN (SELECT id FROM api_keys)",
                NULL, NULL, NULL);
  g_hash_table_remove (auth->keys_by_id, key->id);
  g_hash_table_remove (auth->keys_by_hash, key->hash); /* frees */
  return TRUE;
}

static ApiKey *
key_lookup (GatewayAuth *auth, const char *secret)
{
  char hash[65];
  if (!g_str_has_prefix (secret, KEY_PREFIX) || strlen (secret) > 128)
    return NULL;
  edge_sigv4_sha256_hex (secret, strlen (secret), hash);
  return g_hash_table_lookup (auth->keys_by_hash, hash);
}

/* The session secret signs browser sessions; it lives in the database so
 * that sessions survive a restart. */
static gboolean
session_key_load (GatewayAuth *auth, GError **error)
{
  sqlite3_stmt *stmt = NULL;
  gboolean found = FALSE;
  if (auth->db == NULL) {
    RAND_bytes (auth->session_key, sizeof auth->session_key);
    return TRUE;
  }
  if (sqlite3_prepare_v2 (auth->db, "SELECT value FROM auth_meta WHERE key = 'session_key'", -1,
                          &stmt, NULL) == SQLITE_OK &&
      sqlite3_step (stmt) == SQLITE_ROW &&
      sqlite3_column_bytes (stmt, 0) == (int) sizeof auth->session_key) {
    memcpy (auth->session_key, sqlite3_column_blob (stmt, 0), sizeof auth->session_key);
    found = TRUE;
  }
  sqlite3_finalize (stmt);
  if (found)
    return TRUE;
  if (RAND_bytes (auth->session_key, sizeof auth->session_key) != 1) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "the random generator failed");
    return FALSE;
  }
  int rc = sqlite3_prepare_v2 (auth->db,
                               "INSERT INTO auth_meta (key, value) VALUES ('session_key', ?1)", -1,
                               &stmt, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_blob (stmt, 1, auth->session_key, sizeof auth->session_key, SQLITE_STATIC);
    rc = sqlite3_step (stmt);
  }
  sqlite3_finalize (stmt);
  if (rc != SQLITE_DONE) {
    g_set_error (error, EDGE_STATE_ERROR, EDGE_STATE_ERROR_SQL, "session key: %s",
                 sqlite3_errmsg (auth->db));
    return FALSE;
  }
  return TRUE;
}

/* ---- sessions: eds_ PAYLOAD . MAC, PAYLOAD = "KEYID|EXPIRES|ADMIN|SUBJECT" ---- */

static char *
session_issue (GatewayAuth *auth, const char *key_id, gint64 expires_s, gboolean admin,
               const char *subject)
{
  g_autofree char *payload = g_strdup_printf ("%s|%" G_GINT64_FORMAT "|%d|%s", key_id ? key_id : "",
                                              expires_s, admin ? 1 : 0, subject);
  guint8 mac[32];
  unsigned int mac_len = sizeof mac;
  HMAC (EVP_sha256 (), auth->session_key, sizeof auth->session_key, (const guchar *) payload,
        strlen (payload), mac, &mac_len);
  g_autofree char *p = b64url ((const guint8 *) payload, strlen (payload));
  g_autofree char *m = b64url (mac, sizeof mac);
  return g_strdup_printf (SESSION_PREFIX "%s.%s", p, m);
}

typedef struct {
  char *key_id;
  gint64 expires_s;
  gboolean admin;
  char *subject;
} Session;

static gboolean
session_verify (GatewayAuth *auth, const char *token, Session *out)
{
  memset (out, 0, sizeof *out);
  if (!g_str_has_prefix (token, SESSION_PREFIX) || strlen (token) > 2048)
    return FALSE;
  const char *p = token + strlen (SESSION_PREFIX);
  const char *dot = strchr (p, '.');
  if (dot == NULL)
    return FALSE;
  gsize payload_len, mac_len;
  g_autofree guint8 *payload = edge_base64url_decode (p, (gsize) (dot - p), &payload_len);
  g_autofree guint8 *mac = edge_base64url_decode (dot + 1, strlen (dot + 1), &mac_len);
  guint8 expect[32];
  unsigned int expect_len = sizeof expect;
  if (payload == NULL || mac == NULL || mac_len != sizeof expect)
    return FALSE;
  HMAC (EVP_sha256 (), auth->session_key, sizeof auth->session_key, payload, payload_len, expect,
        &expect_len);
  if (CRYPTO_memcmp (expect, mac, sizeof expect) != 0)
    return FALSE;
  g_autofree char *text = g_strndup ((const char *) payload, payload_len);
  g_auto (GStrv) parts = g_strsplit (text, "|", 4);
  if (g_strv_length (parts) != 4)
    return FALSE;
  out->key_id = g_strdup (parts[0]);
  out->expires_s = g_ascii_strtoll (parts[1], NULL, 10);
  out->admin = g_str_equal (parts[2], "1");
  out->subject = g_strdup (parts[3]);
  return TRUE;
}

static void
session_clear (Session *s)
{
  g_free (s->key_id);
  g_free (s->subject);
}

/* ---- refusals, in the caller's protocol ---- */

typedef enum {
  DENY_MISSING,   /* no credentials */
  DENY_UNKNOWN,   /* a key or access key id we do not know */
  DENY_SIGNATURE, /* a signature that does not match */
  DENY_INCOMPLETE,
  DENY_EXPIRED,   /* a token or session past its time, a signature outside the window */
  DENY_FORBIDDEN, /* a valid caller this route refuses */
  DENY_THROTTLED,
  DENY_QUOTA,
} Deny;

static void
refuse (EdgeRequest *request, Deny deny, gint64 retry_after_s, const char *format, ...)
  G_GNUC_PRINTF (4, 5);

static void
refuse (EdgeRequest *request, Deny deny, gint64 retry_after_s, const char *format, ...)
{
  static const struct {
    guint status;
    const char *edged;
    const char *aws;
    const char *gateway_message;
  } kinds[] = {
    [DENY_MISSING] = { 401, "Unauthorized", "MissingAuthenticationTokenException", "Unauthorized" },
    [DENY_UNKNOWN] = { 403, "Forbidden", "UnrecognizedClientException", "Forbidden" },
    [DENY_SIGNATURE] = { 403, "Forbidden", "InvalidSignatureException", "Forbidden" },
    [DENY_INCOMPLETE] = { 400, "BadRequest", "IncompleteSignatureException", "Unauthorized" },
    [DENY_EXPIRED] = { 401, "Unauthorized", "ExpiredTokenException", "Unauthorized" },
    [DENY_FORBIDDEN] = { 403, "Forbidden", "AccessDeniedException", "Forbidden" },
    [DENY_THROTTLED] = { 429, "TooManyRequests", "ThrottlingException", "Too Many Requests" },
    [DENY_QUOTA] = { 429, "QuotaExceeded", "LimitExceededException", "Limit Exceeded" },
  };
  va_list args;
  va_start (args, format);
  g_autofree char *message = g_strdup_vprintf (format, args);
  va_end (args);
  SoupMessageHeaders *headers = request->response_headers;
  EdgeErrorShape shape = request->route ? request->route->errors : EDGE_ERRORS_EDGED;
  guint status = kinds[deny].status;

  if (deny == DENY_EXPIRED && g_str_has_prefix (message, "Signature expired"))
    deny = DENY_SIGNATURE; /* AWS: InvalidSignatureException "Signature expired: ..." */
  if (retry_after_s > 0) {
    g_autofree char *value = g_strdup_printf ("%" G_GINT64_FORMAT, retry_after_s);
    soup_message_headers_replace (headers, "Retry-After", value);
  }
  if (status == 401 && shape == EDGE_ERRORS_EDGED)
    soup_message_headers_replace (headers, "WWW-Authenticate",
                                  deny == DENY_EXPIRED
                                      ? "Bearer realm=\"edged\", error=\"invalid_token\""
                                      : "Bearer realm=\"edged\"");
  edge_metrics_add (request->gateway->metrics, "edged_http_auth_refused_total",
                    deny == DENY_THROTTLED || deny == DENY_QUOTA ? "reason=\"throttled\""
                    : deny == DENY_MISSING                       ? "reason=\"missing\""
                    : deny == DENY_FORBIDDEN                     ? "reason=\"forbidden\""
                                                                 : "reason=\"invalid\"",
                    1);
  switch (shape) {
  case EDGE_ERRORS_AWS_JSON:
    /* Kinesis answers its auth errors with 400, throttling with 400 too;
     * 429 keeps the SDKs' retry logic aware it was throttled. */
    edge_request_respond_amz_error (request, status == 429 ? 429 : 400, kinds[deny].aws, "%s",
                                    message);
    return;
  case EDGE_ERRORS_AWS_REST:
    edge_request_respond_rest_error (request, status == 429 ? 429 : 403,
                                     status == 429 ? "TooManyRequestsException" : kinds[deny].aws,
                                     "%s", message);
    return;
  case EDGE_ERRORS_API_GATEWAY: {
    g_autoptr (GString) text = g_string_new ("{\"message\":");
    const char *m = kinds[deny].gateway_message;
    edge_json_append_string (text, m, strlen (m));
    g_string_append_c (text, '}');
    g_autoptr (GBytes) body = g_bytes_new (text->str, text->len);
    edge_request_respond (request, status, "application/json", body);
    return;
  }
  case EDGE_ERRORS_EDGED:
    break;
  }
  const char *accept = edge_request_header (request, "Accept");
  if (status == 401 && accept && strstr (accept, "text/html") &&
      g_str_equal (edge_request_method (request), "GET")) {
    /* A browser on a page: to the login page, and back. */
    const char *query = g_uri_get_query (request->uri);
    g_autofree char *back = query ? g_strconcat (request->path, "?", query, NULL)
                                  : g_strdup (request->path);
    g_autofree char *next = g_uri_escape_string (back, "/", FALSE);
    g_autofree char *html = g_strdup_printf (
        "<!doctype html><meta charset=utf-8><title>Sign in</title>"
        "<meta http-equiv=refresh content=\"0; url=/login?next=%s\">"
        "<p>Sign in first: <a href=\"/login?next=%s\">/login</a></p>\n",
        next, next);
    gsize len = strlen (html); /* before the steal: arguments have no order */
    g_autoptr (GBytes) body = g_bytes_new_take (g_steal_pointer (&html), len);
    edge_request_respond (request, status, "text/html; charset=utf-8", body);
    return;
  }
  edge_request_respond_error (request, status, kinds[deny].edged, "%s", message);
}

/* ---- groups ---- */

static gboolean
group_matches (AuthGroup *group, EdgeRequest *request)
{
  GatewayRoute *route = request->route;
  for (guint i = 0; group->patterns[i]; i++) {
    const char *p = group->patterns[i];
    gsize len = strlen (p);
    if (p[0] == '@') {
      if (route && g_str_equal (route->tag, p + 1))
        return TRUE;
    } else if (len > 0 && p[len - 1] == '*') {
      if (request->path && strncmp (request->path, p, len - 1) == 0)
        return TRUE;
    } else if ((route && g_str_equal (route->pattern, p)) ||
               (request->path && g_str_equal (request->path, p))) {
      return TRUE;
    }
  }
  return FALSE;
}

static AuthGroup *
group_of (GatewayAuth *auth, EdgeRequest *request)
{
  for (guint i = 0; i < auth->groups->len; i++) {
    AuthGroup *group = g_ptr_array_index (auth->groups, i);
    if (group_matches (group, request))
      return group;
  }
  return NULL;
}

/* The login page and what it loads are for everyone. */
static gboolean
always_public (EdgeRequest *request)
{
  GatewayRoute *route = request->route;
  if (route == NULL)
    return FALSE;
  static const char *const open[] = { "/login", "/assets/{path*}", "/v1/login", "/v1/logout",
                                      NULL };
  return g_strv_contains (open, route->pattern);
}

/* ---- usage plans ---- */

static gboolean
key_admit (GatewayAuth *auth, EdgeRequest *request, ApiKey *key, const char *group_plan)
{
  UsagePlan *plan = plan_find (auth, key->plan[0] ? key->plan : group_plan);
  gint64 today = now_s () / 86400;
  if (key->day != today) {
    key->day = today;
    key->used_today = 0;
  }
  if (plan == NULL) {
    key->used_today++;
    key->dirty = TRUE;
    return TRUE;
  }
  if (plan->quota > 0 && key->used_today >= plan->quota) {
    gint64 retry = (today + 1) * 86400 - now_s ();
    refuse (request, DENY_QUOTA, MAX (retry, 1),
            "API key %s has used its daily quota of %" G_GINT64_FORMAT " requests (plan %s)",
            key->name, plan->quota, plan->name);
    return FALSE;
  }
  if (plan->rate > 0) {
    gint64 now = g_get_monotonic_time ();
    key->tokens = MIN (plan->burst, key->tokens + (now - key->refilled_us) / 1e6 * plan->rate);
    key->refilled_us = now;
    if (key->tokens < 1) {
      gint64 retry = (gint64) ceil ((1 - key->tokens) / plan->rate);
      refuse (request, DENY_THROTTLED, MAX (retry, 1),
              "API key %s is over its rate of %g requests/s (plan %s)", key->name, plan->rate,
              plan->name);
      return FALSE;
    }
    key->tokens -= 1;
  }
  key->used_today++;
  key->dirty = TRUE;
  return TRUE;
}

/* ---- credentials ---- */

static void
set_principal (EdgeRequest *request, const char *principal, gboolean admin, gint64 expires_s)
{
  g_free (request->principal);
  request->principal = g_strdup (principal);
  request->admin = admin;
  request->auth_expires_s = expires_s;
}

static gboolean
check_api_key (GatewayAuth *auth, EdgeRequest *request, const char *secret, AuthGroup *group)
{
  ApiKey *key = key_lookup (auth, secret);
  if (key == NULL) {
    refuse (request, DENY_UNKNOWN, 0, "the API key is not valid");
    return FALSE;
  }
  if (!key_admit (auth, request, key, group ? group->plan : NULL))
    return FALSE;
  set_principal (request, key->name, key->admin, 0);
  request->key_id = g_strdup (key->id);
  return TRUE;
}

static gboolean
check_session (GatewayAuth *auth, EdgeRequest *request, const char *token, AuthGroup *group)
{
  Session s;
  if (!session_verify (auth, token, &s)) {
    refuse (request, DENY_UNKNOWN, 0, "the session is not valid: sign in again");
    return FALSE;
  }
  gboolean ok = FALSE;
  ApiKey *key = s.key_id[0] ? g_hash_table_lookup (auth->keys_by_id, s.key_id) : NULL;
  if (now_s () >= s.expires_s)
    refuse (request, DENY_EXPIRED, 0, "the session has expired: sign in again");
  else if (s.key_id[0] && key == NULL)
    refuse (request, DENY_UNKNOWN, 0, "the API key of this session was deleted: sign in again");
  else if (key == NULL || key_admit (auth, request, key, group ? group->plan : NULL)) {
    set_principal (request, s.subject, s.admin, s.expires_s);
    if (key)
      request->key_id = g_strdup (key->id);
    ok = TRUE;
  }
  session_clear (&s);
  return ok;
}

static gboolean
jwt_check (GatewayAuth *auth, const char *token, EdgeJwtClaims *claims, GError **error)
{
  EdgeJwtPolicy policy = { auth->jwt_issuer, auth->jwt_audience, auth->jwt_leeway_s };
  if (auth->jwt_keys == NULL || edge_jwt_keys_count (auth->jwt_keys) == 0) {
    g_set_error (error, EDGE_JWT_ERROR, EDGE_JWT_ERROR_KEY, "JWTs are not configured");
    return FALSE;
  }
  return edge_jwt_verify (auth->jwt_keys, token, strlen (token), now_s (), &policy, claims, error);
}

static gboolean
scope_has (const char *scope, const char *wanted)
{
  if (wanted == NULL || wanted[0] == '\0')
    return FALSE;
  g_auto (GStrv) scopes = g_strsplit (scope, " ", 64);
  return g_strv_contains ((const char *const *) scopes, wanted);
}

static gboolean
check_jwt (GatewayAuth *auth, EdgeRequest *request, const char *token)
{
  g_autoptr (GError) error = NULL;
  EdgeJwtClaims claims;
  if (!jwt_check (auth, token, &claims, &error)) {
    refuse (request, error->code == EDGE_JWT_ERROR_EXPIRED ? DENY_EXPIRED : DENY_UNKNOWN, 0,
            "the bearer token is not valid: %s", error->message);
    return FALSE;
  }
  g_autofree char *who = g_strdup_printf ("jwt:%s", claims.subject);
  set_principal (request, who, scope_has (claims.scope, auth->jwt_admin_scope), claims.expires_s);
  edge_jwt_claims_clear (&claims);
  return TRUE;
}

static gboolean
check_sigv4 (GatewayAuth *auth, EdgeRequest *request, const char *header)
{
  g_autoptr (GError) error = NULL;
  EdgeSigv4Authorization sig;
  if (!edge_sigv4_parse_authorization (header, &sig, &error)) {
    g_debug ("SigV4: %s in: %s", error->message, header);
    refuse (request, DENY_INCOMPLETE, 0, "%s", error->message);
    return FALSE;
  }
  gboolean ok = FALSE;
  const char *secret = g_hash_table_lookup (auth->sigv4_secrets, sig.access_key_id);
  const char *amz_date = edge_request_header (request, "X-Amz-Date");
  gint64 signed_at = 0;
  if (secret == NULL) {
    refuse (request, DENY_UNKNOWN, 0, "The security token included in the request is invalid.");
  } else if (!edge_sigv4_parse_amz_date (amz_date, &signed_at) ||
             strncmp (amz_date, sig.date, 8) != 0) {
    refuse (request, DENY_INCOMPLETE, 0,
            "X-Amz-Date must be given as YYYYMMDDTHHMMSSZ and match the credential's date");
  } else if (ABS (now_s () - signed_at) > auth->replay_window_s) {
    refuse (request, DENY_EXPIRED, 0,
            "Signature expired: %s is outside the %" G_GINT64_FORMAT " s window around the "
            "server's time",
            amz_date, auth->replay_window_s);
  } else if (auth->sigv4_region[0] && !g_str_equal (sig.region, auth->sigv4_region)) {
    refuse (request, DENY_SIGNATURE, 0, "Credential should be scoped to a valid region, not '%s'",
            sig.region);
  } else {
    ok = TRUE;
  }
  if (ok) {
    ok = FALSE;
    SoupMessageHeaders *headers = request->request_headers;
    SoupMessageHeadersIter iter;
    const char *name, *value;
    g_autoptr (GArray) list = g_array_new (FALSE, FALSE, sizeof (EdgeSigv4Header));
    soup_message_headers_iter_init (&iter, headers);
    while (soup_message_headers_iter_next (&iter, &name, &value)) {
      EdgeSigv4Header h = { name, value };
      g_array_append_val (list, h);
    }
    GBytes *body = edge_request_body (request);
    gsize body_len;
    const char *body_data = g_bytes_get_data (body, &body_len);
    char payload_hash[65];
    const char *claimed = edge_request_header (request, "X-Amz-Content-Sha256");
    edge_sigv4_sha256_hex (body_data ? body_data : "", body_len, payload_hash);
    GUri *uri = request->uri;
    g_autofree char *canonical = NULL;
    if (claimed && !g_str_equal (claimed, "UNSIGNED-PAYLOAD") &&
        g_ascii_strcasecmp (claimed, payload_hash) != 0) {
      refuse (request, DENY_SIGNATURE, 0,
              "The provided 'x-amz-content-sha256' header does not match what was computed.");
    } else if ((!strstr (sig.signed_headers, "host") &&
                !strstr (sig.signed_headers, ":authority")) ||
               (canonical = edge_sigv4_canonical_request (
                    edge_request_method (request), g_uri_get_path (uri), g_uri_get_query (uri),
                    (const EdgeSigv4Header *) list->data, list->len, sig.signed_headers,
                    claimed && g_str_equal (claimed, "UNSIGNED-PAYLOAD") ? claimed : payload_hash,
                    &error)) == NULL) {
      refuse (request, DENY_INCOMPLETE, 0, "%s",
              error ? error->message : "SignedHeaders must include host");
    } else {
      char expected[65];
      edge_sigv4_sign (secret, &sig, amz_date, canonical, expected);
      if (CRYPTO_memcmp (expected, sig.signature, 64) != 0) {
        refuse (request, DENY_SIGNATURE, 0,
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.");
      } else {
        g_autofree char *who = g_strdup_printf ("aws:%s", sig.access_key_id);
        gboolean internal = auth->internal_access_key_id &&
                            g_str_equal (sig.access_key_id, auth->internal_access_key_id);
        set_principal (request, who, !internal, 0);
        ok = TRUE;
      }
    }
  }
  edge_sigv4_authorization_clear (&sig);
  return ok;
}

/* The value of cookie @name in the Cookie header, or NULL. (transfer full) */
static char *
cookie_value (EdgeRequest *request, const char *name)
{
  const char *header = edge_request_header (request, "Cookie");
  if (header == NULL)
    return NULL;
  g_auto (GStrv) crumbs = g_strsplit (header, ";", 64);
  gsize name_len = strlen (name);
  for (guint i = 0; crumbs[i]; i++) {
    const char *c = crumbs[i];
    while (*c == ' ')
      c++;
    if (strncmp (c, name, name_len) == 0 && c[name_len] == '=')
      return g_strdup (c + name_len + 1);
  }
  return NULL;
}

static const char *
mode_name (AuthMode mode)
{
  for (gsize i = 0; i < G_N_ELEMENTS (mode_names); i++)
    if (mode_names[i].mode == mode)
      return mode_names[i].name;
  return "?";
}

static gboolean
mode_allowed (EdgeRequest *request, guint modes, AuthMode mode)
{
  if (modes & mode)
    return TRUE;
  refuse (request, DENY_FORBIDDEN, 0, "%s %s does not take %s credentials",
          edge_request_method (request), request->path, mode_name (mode));
  return FALSE;
}

/* ---- the function authorizer ---- */

typedef struct {
  GatewayAuth *auth;
  EdgeRequest *request;
  char *identity;
  EdgeGatewayContinueFunc next;
} AuthorizerCall;

static void
authorizer_apply (EdgeRequest *request, const AuthorizerAnswer *answer,
                  EdgeGatewayContinueFunc next)
{
  if (!answer->allow) {
    refuse (request, DENY_FORBIDDEN, 0, "the authorizer denied the request");
    return;
  }
  g_free (request->authorizer_context);
  request->authorizer_context = g_strdup (answer->context);
  set_principal (request, "authorizer", FALSE, 0);
  next (request);
}

static void
authorizer_done (gboolean allow, const char *context, gpointer data)
{
  AuthorizerCall *call = data;
  GatewayAuth *auth = call->auth;
  AuthorizerAnswer *answer = g_new0 (AuthorizerAnswer, 1);
  answer->allow = allow;
  answer->context = context && strlen (context) <= AUTHORIZER_MAX_CONTEXT_BYTES
                        ? g_strdup (context)
                        : NULL;
  answer->expires_us = g_get_monotonic_time () + auth->authorizer_ttl_s * G_USEC_PER_SEC;
  authorizer_apply (call->request, answer, call->next);
  if (auth->authorizer_ttl_s > 0 &&
      g_hash_table_size (auth->authorizer_cache) < AUTHORIZER_CACHE_MAX)
    g_hash_table_replace (auth->authorizer_cache, g_steal_pointer (&call->identity), answer);
  else
    authorizer_answer_free (answer);
  gateway_request_unref (call->request);
  g_free (call->identity);
  g_free (call);
}

/* The event of an API Gateway HTTP API REQUEST authorizer (payload 2.0). */
static GBytes *
authorizer_event (EdgeRequest *request, const char *identity)
{
  g_autoptr (GString) out = g_string_new ("{\"version\":\"2.0\",\"type\":\"REQUEST\",");
  const char *method = edge_request_method (request);
  g_autofree char *route_key = g_strdup_printf ("%s %s", method,
                                                request->route ? request->route->pattern : "");
  g_autofree char *arn = g_strdup_printf (
      "arn:aws:execute-api:local:000000000000:edged/$default/%s%s", method, request->path);
  g_string_append (out, "\"routeArn\":");
  edge_json_append_string (out, arn, strlen (arn));
  g_string_append (out, ",\"identitySource\":[");
  edge_json_append_string (out, identity, strlen (identity));
  g_string_append (out, "],\"routeKey\":");
  edge_json_append_string (out, route_key, strlen (route_key));
  g_string_append (out, ",\"rawPath\":");
  edge_json_append_string (out, request->path, strlen (request->path));
  const char *query = g_uri_get_query (request->uri);
  g_string_append (out, ",\"rawQueryString\":");
  edge_json_append_string (out, query ? query : "", query ? strlen (query) : 0);
  g_string_append (out, ",\"headers\":{");
  SoupMessageHeadersIter iter;
  const char *name, *value;
  gboolean first = TRUE;
  soup_message_headers_iter_init (&iter, request->request_headers);
  while (soup_message_headers_iter_next (&iter, &name, &value)) {
    g_autofree char *lower = g_ascii_strdown (name, -1);
    if (!first)
      g_string_append_c (out, ',');
    first = FALSE;
    edge_json_append_string (out, lower, strlen (lower));
    g_string_append_c (out, ':');
    edge_json_append_string (out, value, strlen (value));
  }
  const char *peer = edge_request_remote_host (request);
  g_string_append (out, "},\"requestContext\":{\"http\":{\"method\":");
  edge_json_append_string (out, method, strlen (method));
  g_string_append (out, ",\"path\":");
  edge_json_append_string (out, request->path, strlen (request->path));
  g_string_append (out, ",\"sourceIp\":");
  edge_json_append_string (out, peer ? peer : "", peer ? strlen (peer) : 0);
  g_string_append (out, "},\"routeKey\":");
  edge_json_append_string (out, route_key, strlen (route_key));
  g_string_append (out, "}}");
  gsize len = out->len;
  return g_bytes_new_take (g_string_free (g_steal_pointer (&out), FALSE), len);
}

static void
check_authorizer (GatewayAuth *auth, EdgeRequest *request, EdgeGatewayContinueFunc next)
{
  const char *identity = edge_request_header (request, auth->authorizer_identity);
  if (identity == NULL || identity[0] == '\0') {
    refuse (request, DENY_MISSING, 0, "this route needs the %s header", auth->authorizer_identity);
    return;
  }
  AuthorizerAnswer *cached = g_hash_table_lookup (auth->authorizer_cache, identity);
  if (cached && cached->expires_us > g_get_monotonic_time ()) {
    authorizer_apply (request, cached, next);
    return;
  }
  if (cached)
    g_hash_table_remove (auth->authorizer_cache, identity);
  if (auth->authorizer == NULL) {
    refuse (request, DENY_FORBIDDEN, 0, "the authorizer function %s is not available",
            auth->authorizer_function);
    return;
  }
  AuthorizerCall *call = g_new0 (AuthorizerCall, 1);
  call->auth = auth;
  call->request = request;
  call->identity = g_strdup (identity);
  call->next = next;
  gateway_request_ref (request);
  edge_request_pause (request);
  g_autoptr (GBytes) event = authorizer_event (request, identity);
  auth->authorizer (auth->authorizer_function, event, authorizer_done, call,
                    auth->authorizer_data);
}

/* ---- the check ---- */

void
gateway_auth_check (EdgeRequest *request, EdgeGatewayContinueFunc next)
{
  GatewayAuth *auth = request->gateway->auth;
  if (auth == NULL || !auth->enabled || always_public (request)) {
    next (request);
    return;
  }
  AuthGroup *group = group_of (auth, request);
  guint modes = group ? group->modes : auth->default_modes;
  if (modes & MODE_NONE) {
    next (request);
    return;
  }

  const char *authorization = edge_request_header (request, "Authorization");
  const char *api_key = edge_request_header (request, "x-api-key");
  const char *token = edge_request_query (request, "token");
  g_autofree char *cookie = cookie_value (request, SESSION_COOKIE);
  gboolean ok;

  if (authorization && g_str_has_prefix (authorization, EDGE_SIGV4_ALGORITHM)) {
    ok = mode_allowed (request, modes, MODE_SIGV4) && check_sigv4 (auth, request, authorization);
  } else if (modes & MODE_AUTHORIZER) {
    check_authorizer (auth, request, next);
    return;
  } else {
    const char *bearer = NULL;
    if (authorization && g_ascii_strncasecmp (authorization, "Bearer ", 7) == 0)
      bearer = authorization + 7;
    else if (authorization) {
      refuse (request, DENY_INCOMPLETE, 0,
              "the Authorization header takes Bearer tokens and AWS4-HMAC-SHA256 signatures");
      return;
    }
    const char *credential = bearer ? bearer : api_key ? api_key : token ? token : cookie;
    if (token && !bearer && !api_key) {
      g_free (request->auth_query);
      request->auth_query = g_uri_escape_string (token, NULL, FALSE);
    }
    if (credential == NULL) {
      refuse (request, DENY_MISSING, 0,
              "%s %s needs credentials: an API key (x-api-key), a bearer token, an AWS "
              "signature or a session (sign in at /login)",
              edge_request_method (request), request->path);
      return;
    }
    if (g_str_has_prefix (credential, KEY_PREFIX))
      ok = mode_allowed (request, modes, MODE_API_KEY) &&
           check_api_key (auth, request, credential, group);
    else if (g_str_has_prefix (credential, SESSION_PREFIX))
      ok = mode_allowed (request, modes, MODE_SESSION) &&
           check_session (auth, request, credential, group);
    else if (api_key && credential == api_key) {
      refuse (request, DENY_UNKNOWN, 0, "the API key is not valid");
      ok = FALSE;
    } else
      ok = mode_allowed (request, modes, MODE_JWT) && check_jwt (auth, request, credential);
    /* A session's cookie goes to the same site only; a state-changing
     * request it carries must come from our own pages. */
    if (ok && credential == cookie && !g_str_equal (edge_request_method (request), "GET") &&
        !g_str_equal (edge_request_method (request), "HEAD")) {
      const char *origin = edge_request_header (request, "Origin");
      const char *host = edge_request_header (request, "Host");
      if (origin && (host == NULL || strstr (origin, "://") == NULL ||
                     !g_str_equal (strstr (origin, "://") + 3, host))) {
        refuse (request, DENY_FORBIDDEN, 0, "a session may not be used from %s", origin);
        return;
      }
    }
  }
  if (!ok)
    return;
  if (request->route && request->route->admin_only && !request->admin) {
    refuse (request, DENY_FORBIDDEN, 0, "%s %s is for administrators (an admin API key)",
            edge_request_method (request), request->path);
    return;
  }
  next (request);
}

const char *
edge_request_auth_query (EdgeRequest *request)
{
  return request->auth_query;
}

char *
edge_request_issue_session (EdgeRequest *request, gint64 ttl_s)
{
  GatewayAuth *auth = request->gateway->auth;
  if (auth == NULL || !auth->enabled)
    return NULL;
  gint64 expires = now_s () + ttl_s;
  if (request->auth_expires_s > 0)
    expires = MIN (expires, request->auth_expires_s);
  g_autofree char *token = session_issue (auth, request->key_id, expires, FALSE,
                                          request->principal ? request->principal : "?");
  return g_uri_escape_string (token, NULL, FALSE);
}

const char *
edge_request_authorizer_context (EdgeRequest *request)
{
  return request->authorizer_context;
}

/* ---- CORS and security headers, on every answer ---- */

static gboolean
origin_allowed (GatewayAuth *auth, const char *origin)
{
  if (origin == NULL || auth->cors_origins == NULL)
    return FALSE;
  for (guint i = 0; auth->cors_origins[i]; i++)
    if (g_str_equal (auth->cors_origins[i], "*") || g_str_equal (auth->cors_origins[i], origin))
      return TRUE;
  return FALSE;
}

void
gateway_auth_decorate (EdgeRequest *request, const char *content_type)
{
  GatewayAuth *auth = request->gateway->auth;
  SoupMessageHeaders *headers = request->response_headers;
  soup_message_headers_replace (headers, "X-Content-Type-Options", "nosniff");
  soup_message_headers_replace (headers, "Referrer-Policy", "no-referrer");
  soup_message_headers_replace (headers, "X-Frame-Options", "DENY");
  if (content_type && g_str_has_prefix (content_type, "text/html"))
    soup_message_headers_replace (
        headers, "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  if (auth == NULL)
    return;
  if (auth->tls)
    soup_message_headers_replace (headers, "Strict-Transport-Security", "max-age=31536000");
  const char *origin = edge_request_header (request, "Origin");
  if (origin_allowed (auth, origin)) {
    gboolean any = g_strv_contains ((const char *const *) auth->cors_origins, "*");
    soup_message_headers_replace (headers, "Access-Control-Allow-Origin",
                                  any && !auth->cors_credentials ? "*" : origin);
    soup_message_headers_append (headers, "Vary", "Origin");
    if (auth->cors_credentials)
      soup_message_headers_replace (headers, "Access-Control-Allow-Credentials", "true");
    if (auth->cors_expose[0])
      soup_message_headers_replace (headers, "Access-Control-Expose-Headers", auth->cors_expose);
  }
}

/* An OPTIONS request with Origin and Access-Control-Request-Method: a
 * CORS preflight, answered here (it carries no credentials). */
gboolean
gateway_auth_preflight (EdgeRequest *request)
{
  GatewayAuth *auth = request->gateway->auth;
  const char *origin = edge_request_header (request, "Origin");
  const char *method = edge_request_header (request, "Access-Control-Request-Method");
  if (!g_str_equal (edge_request_method (request), "OPTIONS") || origin == NULL || method == NULL)
    return FALSE;
  SoupMessageHeaders *headers = request->response_headers;
  if (auth == NULL || !origin_allowed (auth, origin)) {
    edge_request_respond_error (request, SOUP_STATUS_FORBIDDEN, "CorsRefused",
                                "origin %s is not in gateway.cors.allow_origins", origin);
    return TRUE;
  }
  soup_message_headers_replace (headers, "Access-Control-Allow-Methods", auth->cors_methods);
  const char *asked = edge_request_header (request, "Access-Control-Request-Headers");
  soup_message_headers_replace (headers, "Access-Control-Allow-Headers",
                                auth->cors_headers[0] ? auth->cors_headers : asked ? asked : "");
  g_autofree char *age = g_strdup_printf ("%" G_GINT64_FORMAT, auth->cors_max_age_s);
  soup_message_headers_replace (headers, "Access-Control-Max-Age", age);
  edge_request_respond (request, SOUP_STATUS_NO_CONTENT, NULL, NULL);
  return TRUE;
}

/* ---- /v1/login, /v1/logout, /v1/keys ---- */

static void
set_session_cookie (EdgeRequest *request, const char *value, gint64 max_age_s)
{
  GatewayAuth *auth = request->gateway->auth;
  g_autofree char *cookie = g_strdup_printf (
      SESSION_COOKIE "=%s; Path=/; Max-Age=%" G_GINT64_FORMAT "; HttpOnly; SameSite=Strict%s",
      value, max_age_s, auth->tls ? "; Secure" : "");
  soup_message_headers_append (request->response_headers,
                               "Set-Cookie", cookie);
}

static const char *
json_member_string (JsonNode *root, const char *name)
{
  return root && JSON_NODE_HOLDS_OBJECT (root)
             ? edge_json_member_string (json_node_get_object (root), name)
             : NULL;
}

static void
handle_login (EdgeRequest *request, gpointer data)
{
  GatewayAuth *auth = data;
  g_autoptr (JsonNode) root = edge_request_json (request);
  if (root == NULL)
    return;
  const char *secret = json_member_string (root, "key");
  const char *token = json_member_string (root, "token");
  gint64 expires = now_s () + auth->session_ttl_s;
  g_autofree char *session = NULL;
  if (!auth->enabled) {
    edge_request_respond_error (request, SOUP_STATUS_CONFLICT, "AuthDisabled",
                                "authentication is off on this listener: nothing to sign in to");
    return;
  }
  if (secret) {
    ApiKey *key = key_lookup (auth, secret);
    if (key == NULL || key->internal) {
      edge_request_respond_error (request, SOUP_STATUS_FORBIDDEN, "Forbidden",
                                  "the API key is not valid");
      return;
    }
    session = session_issue (auth, key->id, expires, key->admin, key->name);
  } else if (token) {
    g_autoptr (GError) error = NULL;
    EdgeJwtClaims claims;
    if (!jwt_check (auth, token, &claims, &error)) {
      edge_request_respond_error (request, SOUP_STATUS_FORBIDDEN, "Forbidden",
                                  "the token is not valid: %s", error->message);
      return;
    }
    expires = MIN (expires, claims.expires_s);
    g_autofree char *who = g_strdup_printf ("jwt:%s", claims.subject);
    session = session_issue (auth, NULL, expires, scope_has (claims.scope, auth->jwt_admin_scope),
                             who);
    edge_jwt_claims_clear (&claims);
  } else {
    edge_request_respond_error (request, SOUP_STATUS_BAD_REQUEST, "InvalidRequest",
                                "give {\"key\": API_KEY} or {\"token\": JWT}");
    return;
  }
  set_session_cookie (request, session, expires - now_s ());
  g_autofree char *body = g_strdup_printf ("{\"expires\":%" G_GINT64_FORMAT "}", expires);
  gsize len = strlen (body); /* before the steal: arguments have no order */
  g_autoptr (GBytes) bytes = g_bytes_new_take (g_steal_pointer (&body), len);
  edge_request_respond (request, SOUP_STATUS_OK, "application/json", bytes);
}

static void
handle_logout (EdgeRequest *request, gpointer data)
{
  set_session_cookie (request, "", 0);
  edge_request_respond (request, SOUP_STATUS_NO_CONTENT, NULL, NULL);
}

static void
key_to_json (JsonBuilder *b, ApiKey *key)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, key->id);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, key->name);
  json_builder_set_member_name (b, "prefix");
  json_builder_add_string_value (b, key->prefix);
  json_builder_set_member_name (b, "plan");
  json_builder_add_string_value (b, key->plan);
  json_builder_set_member_name (b, "admin");
  json_builder_add_boolean_value (b, key->admin);
  json_builder_set_member_name (b, "created");
  json_builder_add_string_value (b, key->created);
  json_builder_set_member_name (b, "requestsToday");
  json_builder_add_int_value (b, key->day == now_s () / 86400 ? key->used_today : 0);
  json_builder_end_object (b);
}

static int
compare_keys (gconstpointer a, gconstpointer b)
{
  const ApiKey *x = *(ApiKey *const *) a, *y = *(ApiKey *const *) b;
  int c = strcmp (x->created, y->created);
  return c ? c : strcmp (x->id, y->id);
}

static void
handle_keys_list (EdgeRequest *request, gpointer data)
{
  GatewayAuth *auth = data;
  g_autoptr (GPtrArray) keys = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;
  g_hash_table_iter_init (&iter, auth->keys_by_id);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (!((ApiKey *) value)->internal)
      g_ptr_array_add (keys, value);
  g_ptr_array_sort (keys, compare_keys);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "keys");
  json_builder_begin_array (b);
  for (guint i = 0; i < keys->len; i++)
    key_to_json (b, g_ptr_array_index (keys, i));
  json_builder_end_array (b);
  json_builder_set_member_name (b, "usagePlans");
  json_builder_begin_array (b);
  for (guint i = 0; i < auth->plans->len; i++) {
    UsagePlan *plan = g_ptr_array_index (auth->plans, i);
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "name");
    json_builder_add_string_value (b, plan->name);
    json_builder_set_member_name (b, "rate");
    json_builder_add_double_value (b, plan->rate);
    json_builder_set_member_name (b, "burst");
    json_builder_add_double_value (b, plan->burst);
    json_builder_set_member_name (b, "quotaPerDay");
    json_builder_add_int_value (b, plan->quota);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  edge_request_respond_json (request, SOUP_STATUS_OK, root);
}

static gboolean
key_name_ok (const char *name)
{
  gsize len = name ? strlen (name) : 0;
  if (len == 0 || len > 128)
    return FALSE;
  for (const char *c = name; *c; c++)
    if (!(g_ascii_isalnum (*c) || *c == '-' || *c == '_' || *c == '.' || *c == '@'))
      return FALSE;
  return TRUE;
}

static void
handle_keys_create (EdgeRequest *request, gpointer data)
{
  GatewayAuth *auth = data;
  g_autoptr (JsonNode) root = edge_request_json (request);
  g_autoptr (GError) error = NULL;
  g_autofree char *secret = NULL;
  if (root == NULL)
    return;
  const char *name = json_member_string (root, "name");
  const char *plan = json_member_string (root, "plan");
  JsonNode *admin_node = JSON_NODE_HOLDS_OBJECT (root)
                             ? json_object_get_member (json_node_get_object (root), "admin")
                             : NULL;
  gboolean admin = admin_node && JSON_NODE_HOLDS_VALUE (admin_node) &&
                   json_node_get_value_type (admin_node) == G_TYPE_BOOLEAN &&
                   json_node_get_boolean (admin_node);
  if (!key_name_ok (name)) {
    edge_request_respond_error (request, SOUP_STATUS_BAD_REQUEST, "InvalidName",
                                "a key's name is 1 to 128 of a-z, A-Z, 0-9, - _ . and @");
    return;
  }
  if (plan && plan[0] && plan_find (auth, plan) == NULL) {
    edge_request_respond_error (request, SOUP_STATUS_BAD_REQUEST, "UnknownPlan",
                                "no usage plan %s in gateway.auth.usage_plans", plan);
    return;
  }
  if (g_hash_table_size (auth->keys_by_id) >= MAX_KEYS) {
    edge_request_respond_error (request, SOUP_STATUS_CONFLICT, "LimitExceeded",
                                "at most %d API keys", MAX_KEYS);
    return;
  }
  ApiKey *key = key_create (auth, name, plan, admin, FALSE, &secret, &error);
  if (key == NULL) {
    edge_request_respond_error (request, SOUP_STATUS_INTERNAL_SERVER_ERROR, "InternalError", "%s",
                                error->message);
    return;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  key_to_json (b, key);
  g_autoptr (JsonNode) node = json_builder_get_root (b);
  json_object_set_string_member (json_node_get_object (node), "key", secret);
  edge_request_respond_json (request, SOUP_STATUS_CREATED, node);
  OPENSSL_cleanse (secret, strlen (secret));
}

static void
handle_keys_get (EdgeRequest *request, gpointer data)
{
  GatewayAuth *auth = data;
  ApiKey *key = g_hash_table_lookup (auth->keys_by_id, edge_request_param (request, "id"));
  if (key == NULL || key->internal) {
    edge_request_respond_error (request, SOUP_STATUS_NOT_FOUND, "NotFound", "no API key %s",
                                edge_request_param (request, "id"));
    return;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  key_to_json (b, key);
  g_autoptr (JsonNode) node = json_builder_get_root (b);
  edge_request_respond_json (request, SOUP_STATUS_OK, node);
}

static void
handle_keys_delete (EdgeRequest *request, gpointer data)
{
  GatewayAuth *auth = data;
  ApiKey *key = g_hash_table_lookup (auth->keys_by_id, edge_request_param (request, "id"));
  if (key == NULL || key->internal) {
    edge_request_respond_error (request, SOUP_STATUS_NOT_FOUND, "NotFound", "no API key %s",
                                edge_request_param (request, "id"));
    return;
  }
  if (!key_delete (auth, key)) {
    edge_request_respond_error (request, SOUP_STATUS_INTERNAL_SERVER_ERROR, "InternalError",
                                "API keys: %s", sqlite3_errmsg (auth->db));
    return;
  }
  edge_request_respond (request, SOUP_STATUS_NO_CONTENT, NULL, NULL);
}

/* ---- setup ---- */

static gboolean
read_file (const char *what, const char *path, gsize max, char **ret, gsize *ret_len,
           GError **error)
{
  g_autoptr (GError) read_error = NULL;
  if (!g_file_get_contents (path, ret, ret_len, &read_error)) {
    g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_AUTH, "%s: %s", what,
                 read_error->message);
    return FALSE;
  }
  if (*ret_len > max) {
    g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_AUTH,
                 "%s: %s is larger than %zu bytes", what, path, max);
    g_clear_pointer (ret, g_free);
    return FALSE;
  }
  return TRUE;
}

static gboolean
load_jwt_keys (GatewayAuth *auth, const EdgeConfig *c, GError **error)
{
  auth->jwt_keys = edge_jwt_keys_new ();
  g_autoptr (GError) key_error = NULL;
  if (c->gateway_auth_jwt_secret_file[0]) {
    g_autofree char *secret = NULL;
    gsize len;
    if (!read_file ("gateway.auth.jwt.secret_file", c->gateway_auth_jwt_secret_file, 4096,
                    &secret, &len, error))
      return FALSE;
    while (len > 0 && (secret[len - 1] == '\n' || secret[len - 1] == '\r'))
      len--;
    gboolean ok = edge_jwt_keys_add_secret (auth->jwt_keys, secret, len, NULL, &key_error);
    OPENSSL_cleanse (secret, len);
    if (!ok)
      goto fail;
  }
  if (c->gateway_auth_jwt_public_key_file[0]) {
    g_autofree char *pem = NULL;
    gsize len;
    if (!read_file ("gateway.auth.jwt.public_key_file", c->gateway_auth_jwt_public_key_file,
                    64 * 1024, &pem, &len, error))
      return FALSE;
    if (!edge_jwt_keys_add_pem (auth->jwt_keys, pem, len, NULL, &key_error))
      goto fail;
  }
  if (c->gateway_auth_jwt_jwks_file[0]) {
    g_autofree char *json = NULL;
    gsize len;
    if (!read_file ("gateway.auth.jwt.jwks_file", c->gateway_auth_jwt_jwks_file, 1024 * 1024,
                    &json, &len, error))
      return FALSE;
    if (!edge_jwt_keys_add_jwks (auth->jwt_keys, json, len, &key_error))
      goto fail;
  }
  return TRUE;
fail:
  g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_AUTH, "gateway.auth.jwt: %s",
               key_error->message);
  return FALSE;
}

/* The AWS credentials file format: [profile] sections with
 * aws_access_key_id and aws_secret_access_key. */
static gboolean
load_sigv4 (GatewayAuth *auth, const char *path, GError **error)
{
  g_autoptr (GKeyFile) file = g_key_file_new ();
  g_autoptr (GError) read_error = NULL;
  if (path[0] == '\0')
    return TRUE;
  if (!g_key_file_load_from_file (file, path, G_KEY_FILE_NONE, &read_error)) {
    g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_AUTH,
                 "gateway.auth.sigv4.credentials_file: %s: %s", path, read_error->message);
    return FALSE;
  }
  g_auto (GStrv) groups = g_key_file_get_groups (file, NULL);
  for (guint i = 0; groups[i]; i++) {
    g_autofree char *id = g_key_file_get_string (file, groups[i], "aws_access_key_id", NULL);
    g_autofree char *secret = g_key_file_get_string (file, groups[i], "aws_secret_access_key",
                                                     NULL);
    if (id == NULL || secret == NULL) {
      g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_AUTH,
                   "gateway.auth.sigv4.credentials_file: [%s] needs aws_access_key_id and "
                   "aws_secret_access_key",
                   groups[i]);
      return FALSE;
    }
    g_hash_table_replace (auth->sigv4_secrets, g_strstrip (g_steal_pointer (&id)),
                          g_strstrip (g_steal_pointer (&secret)));
  }
  return TRUE;
}

static guint
parse_modes (const char *text, GError **error)
{
  guint modes = 0;
  g_auto (GStrv) names = g_strsplit (text, ",", 16);
  for (guint i = 0; names[i]; i++) {
    const char *name = g_strstrip (names[i]);
    gboolean known = FALSE;
    if (name[0] == '\0')
      continue;
    for (gsize k = 0; k < G_N_ELEMENTS (mode_names); k++)
      if (g_str_equal (name, mode_names[k].name)) {
        modes |= mode_names[k].mode;
        known = TRUE;
      }
    if (!known) {
      g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_AUTH,
                   "unknown auth mode '%s' (none, api_key, jwt, sigv4, session, authorizer)",
                   name);
      return 0;
    }
  }
  return modes;
}

static char **
split_list (const char *text)
{
  g_auto (GStrv) parts = g_strsplit (text, ",", 256);
  GPtrArray *out = g_ptr_array_new ();
  for (guint i = 0; parts[i]; i++) {
    char *p = g_strstrip (parts[i]);
    if (p[0])
      g_ptr_array_add (out, g_strdup (p));
  }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

static void
group_free (gpointer data)
{
  AuthGroup *group = data;
  g_strfreev (group->patterns);
  g_free (group->plan);
  g_free (group);
}

static void
plan_free (gpointer data)
{
  UsagePlan *plan = data;
  g_free (plan->name);
  g_free (plan);
}

gboolean
edge_listen_is_loopback (const char *listen)
{
  g_autofree char *host = NULL;
  guint16 port;
  if (!edge_config_parse_listen (listen, &host, &port, NULL))
    return FALSE;
  if (g_str_equal (host, "localhost"))
    return TRUE;
  g_autoptr (GInetAddress) address = g_inet_address_new_from_string (host);
  return address && g_inet_address_get_is_loopback (address);
}

/* Writes a first admin key where the operator finds it, when there is no
 * way in at all. */
static gboolean
ensure_admin_key (GatewayAuth *auth, const EdgeConfig *c, GError **error)
{
  if (g_hash_table_size (auth->keys_by_id) > 0 || auth->admin_key_file == NULL)
    return TRUE;
  g_autofree char *secret = NULL;
  if (key_create (auth, "admin", NULL, TRUE, FALSE, &secret, error) == NULL)
    return FALSE;
  int fd = open (auth->admin_key_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g_autofree char *line = g_strconcat (secret, "\n", NULL);
  if (fd < 0 || write (fd, line, strlen (line)) != (gssize) strlen (line) || fsync (fd) != 0) {
    int e = errno;
    if (fd >= 0)
      close (fd);
    g_set_error (error, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_AUTH, "cannot write %s: %s",
                 auth->admin_key_file, g_strerror (e));
    return FALSE;
  }
  close (fd);
  OPENSSL_cleanse (secret, strlen (secret));
  OPENSSL_cleanse (line, strlen (line));
  g_message ("authentication is on and there were no API keys: an admin key was written to %s",
             auth->admin_key_file);
  return TRUE;
}

GatewayAuth *
gateway_auth_new (EdgeGateway *gateway, const EdgeConfig *c, EdgeState *state, GError **error)
{
  GatewayAuth *auth = g_new0 (GatewayAuth, 1);
  g_autoptr (GError) local = NULL;
  auth->gateway = gateway;
  auth->keys_by_hash = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, api_key_free);
  auth->keys_by_id = g_hash_table_new (g_str_hash, g_str_equal);
  auth->plans = g_ptr_array_new_with_free_func (plan_free);
  auth->groups = g_ptr_array_new_with_free_func (group_free);
  auth->sigv4_secrets = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  auth->authorizer_cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                  authorizer_answer_free);
  auth->tls = c->gateway_tls_cert[0] != '\0';
  auth->enabled = g_str_equal (c->gateway_auth_enabled, "on") ||
                  (g_str_equal (c->gateway_auth_enabled, "auto") &&
                   !edge_listen_is_loopback (c->gateway_listen));
  auth->session_ttl_s = c->gateway_auth_session_ttl_ms / 1000;
  auth->jwt_issuer = g_strdup (c->gateway_auth_jwt_issuer);
  auth->jwt_audience = g_strdup (c->gateway_auth_jwt_audience);
  auth->jwt_admin_scope = g_strdup (c->gateway_auth_jwt_admin_scope);
  auth->jwt_leeway_s = c->gateway_auth_jwt_leeway_ms / 1000;
  auth->sigv4_region = g_strdup (c->gateway_auth_sigv4_region);
  auth->replay_window_s = c->gateway_auth_sigv4_replay_window_ms / 1000;
  auth->authorizer_function = g_strdup (c->gateway_auth_authorizer_function);
  auth->authorizer_identity = g_strdup (c->gateway_auth_authorizer_identity);
  auth->authorizer_ttl_s = c->gateway_auth_authorizer_ttl_ms / 1000;
  auth->cors_origins = split_list (c->gateway_cors_allow_origins);
  auth->cors_methods = g_strdup (c->gateway_cors_allow_methods);
  auth->cors_headers = g_strdup (c->gateway_cors_allow_headers);
  auth->cors_expose = g_strdup (c->gateway_cors_expose_headers);
  auth->cors_max_age_s = c->gateway_cors_max_age_ms / 1000;
  auth->cors_credentials = c->gateway_cors_allow_credentials;

  for (guint i = 0; i < c->usage_plans->len; i++) {
    const EdgeConfigUsagePlan *p = g_ptr_array_index (c->usage_plans, i);
    UsagePlan *plan = g_new0 (UsagePlan, 1);
    plan->name = g_strdup (p->name);
    plan->rate = (double) p->rate;
    plan->burst = (double) (p->burst > 0 ? p->burst : MAX (p->rate, 1));
    plan->quota = p->quota_per_day;
    g_ptr_array_add (auth->plans, plan);
  }
  auth->default_modes = parse_modes (c->gateway_auth_modes, &local);
  if (auth->default_modes == 0)
    goto fail;
  for (guint i = 0; i < c->auth_groups->len; i++) {
    const EdgeConfigAuthGroup *g = g_ptr_array_index (c->auth_groups, i);
    AuthGroup *group = g_new0 (AuthGroup, 1);
    g_ptr_array_add (auth->groups, group);
    group->patterns = split_list (g->routes);
    group->modes = parse_modes (g->modes, &local);
    group->plan = g->usage_plan[0] ? g_strdup (g->usage_plan) : NULL;
    if (group->modes == 0)
      goto fail;
    if (group->plan && plan_find (auth, group->plan) == NULL) {
      g_set_error (&local, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_AUTH,
                   "gateway.auth.groups: no usage plan %s", group->plan);
      goto fail;
    }
    if ((group->modes & MODE_AUTHORIZER) && auth->authorizer_function[0] == '\0') {
      g_set_error (&local, EDGE_GATEWAY_ERROR, EDGE_GATEWAY_ERROR_AUTH,
                   "gateway.auth.groups: mode authorizer needs gateway.auth.authorizer.function");
      goto fail;
    }
  }
  if (!load_jwt_keys (auth, c, &local) ||
      !load_sigv4 (auth, c->gateway_auth_sigv4_credentials_file, &local))
    goto fail;

  if (state) {
    auth->db = edge_state_db (state);
    if (!edge_state_migrate (state, "gateway_auth", auth_schema, G_N_ELEMENTS (auth_schema),
                             &local) ||
        !keys_load (auth, &local))
      goto fail;
    auth->admin_key_file = g_build_filename (c->data_dir, "admin.key", NULL);
    auth->flush_timer = g_timeout_add_seconds (USAGE_FLUSH_S, on_flush_timer, auth);
  }
  if (!session_key_load (auth, &local))
    goto fail;
  if (auth->enabled && state && !ensure_admin_key (auth, c, &local))
    goto fail;
  if (auth->enabled) {
    g_autofree char *secret = NULL;
    key_create (auth, "edged-functions", NULL, FALSE, TRUE, &secret, NULL);
    auth->internal_key = g_steal_pointer (&secret);
    g_autofree char *suffix = random_hex (8);
    auth->internal_access_key_id = g_ascii_strup (suffix, -1);
    char *id = g_strconcat ("EDGEDFN", auth->internal_access_key_id, NULL);
    g_free (auth->internal_access_key_id);
    auth->internal_access_key_id = id;
    g_hash_table_replace (auth->sigv4_secrets, g_strdup (id), g_strdup (auth->internal_key));
  }
  return auth;

fail:
  g_propagate_prefixed_error (error, g_steal_pointer (&local), "%s", "");
  gateway_auth_free (auth);
  return NULL;
}

void
gateway_auth_register (GatewayAuth *auth)
{
  EdgeGateway *gateway = auth->gateway;
  const EdgeRoute routes[] = {
    { "POST", "/v1/login", handle_login, "Sign in with an API key or a JWT: sets a session cookie",
      "auth", 16 * 1024 },
    { "POST", "/v1/logout", handle_logout, "Sign out: clears the session cookie", "auth", 1024 },
    { "GET", "/v1/keys", handle_keys_list, "API keys (without their secrets) and usage plans",
      "auth", 0, .admin_only = TRUE },
    { "POST", "/v1/keys", handle_keys_create,
      "Create an API key {name, plan, admin}: the key is in this answer only", "auth", 16 * 1024,
      .admin_only = TRUE },
    { "GET", "/v1/keys/{id}", handle_keys_get, "One API key and its use today", "auth", 0,
      .admin_only = TRUE },
    { "DELETE", "/v1/keys/{id}", handle_keys_delete, "Delete an API key (its sessions end)",
      "auth", 0, .admin_only = TRUE },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (routes); i++) {
    g_autoptr (GError) error = NULL;
    if (!edge_gateway_add_route (gateway, &routes[i], auth, &error))
      g_critical ("%s", error->message);
  }
  edge_metrics_declare (gateway->metrics, "edged_http_auth_refused_total", EDGE_METRIC_COUNTER,
                        "Requests refused by authentication or a usage plan, by reason.", NULL, 0);
}

void
gateway_auth_free (GatewayAuth *auth)
{
  if (auth == NULL)
    return;
  if (auth->flush_timer)
    g_source_remove (auth->flush_timer);
  usage_flush (auth);
  g_hash_table_unref (auth->keys_by_id);
  g_hash_table_unref (auth->keys_by_hash);
  g_ptr_array_unref (auth->plans);
  g_ptr_array_unref (auth->groups);
  g_hash_table_unref (auth->sigv4_secrets);
  g_hash_table_unref (auth->authorizer_cache);
  edge_jwt_keys_free (auth->jwt_keys);
  OPENSSL_cleanse (auth->session_key, sizeof auth->session_key);
  if (auth->internal_key)
    OPENSSL_cleanse (auth->internal_key, strlen (auth->internal_key));
  g_free (auth->internal_key);
  g_free (auth->internal_access_key_id);
  g_free (auth->admin_key_file);
  g_free (auth->jwt_issuer);
  g_free (auth->jwt_audience);
  g_free (auth->jwt_admin_scope);
  g_free (auth->sigv4_region);
  g_free (auth->authorizer_function);
  g_free (auth->authorizer_identity);
  g_strfreev (auth->cors_origins);
  g_free (auth->cors_methods);
  g_free (auth->cors_headers);
  g_free (auth->cors_expose);
  g_free (auth);
}

const char *
edge_gateway_internal_key (EdgeGateway *gateway)
{
  return gateway->auth ? gateway->auth->internal_key : NULL;
}

const char *
edge_gateway_internal_access_key_id (EdgeGateway *gateway)
{
  return gateway->auth ? gateway->auth->internal_access_key_id : NULL;
}

gboolean
edge_gateway_auth_enabled (EdgeGateway *gateway)
{
  return gateway->auth && gateway->auth->enabled;
}

void
edge_gateway_set_authorizer (EdgeGateway *gateway, EdgeGatewayAuthorizerFunc func,
                             gpointer user_data)
{
  if (gateway->auth == NULL)
    return;
  gateway->auth->authorizer = func;
  gateway->auth->authorizer_data = user_data;
}
