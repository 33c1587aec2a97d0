/* client.c: requests edged makes to other servers (S3, Kinesis, Firehose
 * HTTP endpoints): answers read with a limit, and SigV4 signing.
 *
 * libsoup's soup_session_send_and_read reads whatever the server sends into
 * memory. A destination is a peer too, and every size a peer controls has
 * a limit: here the answer is read in chunks and the request fails once it
 * passes the caller's maximum.
 */
#include "edge-gateway.h"

#include "sigv4.h"

#define CHUNK_BYTES 16384

typedef struct {
  SoupMessage *msg;
  GInputStream *body;
  GByteArray *answer;
  gsize max_bytes;
} Read;

static void
read_free (Read *r)
{
  g_object_unref (r->msg);
  g_clear_object (&r->body);
  g_byte_array_unref (r->answer);
  g_free (r);
}

static void read_more (GTask *task);

static void
chunk_read (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GTask) task = data;
  Read *r = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (GBytes) chunk = g_input_stream_read_bytes_finish (G_INPUT_STREAM (source), result,
                                                               &error);
  if (chunk == NULL) {
    g_task_return_error (task, error);
    return;
  }
  gsize len = g_bytes_get_size (chunk);
  if (len == 0) {
    g_task_return_pointer (task, g_byte_array_free_to_bytes (g_byte_array_ref (r->answer)),
                           (GDestroyNotify) g_bytes_unref);
    return;
  }
  if (r->answer->len + len > r->max_bytes) {
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                             "the answer of %s is larger than %" G_GSIZE_FORMAT " bytes",
                             g_uri_get_host (soup_message_get_uri (r->msg)), r->max_bytes);
    return;
  }
  g_byte_array_append (r->answer, g_bytes_get_data (chunk, NULL), len);
  read_more (g_steal_pointer (&task));
}

static void
read_more (GTask *task)
{
  Read *r = g_task_get_task_data (task);
  g_input_stream_read_bytes_async (r->body, CHUNK_BYTES, G_PRIORITY_DEFAULT,
                                   g_task_get_cancellable (task), chunk_read, task);
}

static void
sent (GObject *source, GAsyncResult *result, gpointer data)
{
  GTask *task = data;
  Read *r = g_task_get_task_data (task);
  GError *error = NULL;
  r->body = soup_session_send_finish (SOUP_SESSION (source), result, &error);
  if (r->body == NULL) {
    g_task_return_error (task, error);
    g_object_unref (task);
    return;
  }
  goffset length = soup_message_headers_get_content_length (
      soup_message_get_response_headers (r->msg));
  if (length > 0 && (guint64) length > r->max_bytes) {
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                             "the answer of %s is larger than %" G_GSIZE_FORMAT " bytes",
                             g_uri_get_host (soup_message_get_uri (r->msg)), r->max_bytes);
    g_object_unref (task);
    return;
  }
  read_more (task);
}

void
edge_client_send_async (SoupSession *session, SoupMessage *msg, gsize max_bytes,
                        GCancellable *cancellable, GAsyncReadyCallback callback,
                        gpointer user_data)
{
  GTask *task = g_task_new (session, cancellable, callback, user_data);
  Read *r = g_new0 (Read, 1);
  r->msg = g_object_ref (msg);
  r->answer = g_byte_array_new ();
  r->max_bytes = max_bytes;
  g_task_set_task_data (task, r, (GDestroyNotify) read_free);
  soup_session_send_async (session, msg, G_PRIORITY_DEFAULT, cancellable, sent, task);
}

GBytes *
edge_client_send_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

SoupMessage *
edge_client_send_message (GAsyncResult *result)
{
  return ((Read *) g_task_get_task_data (G_TASK (result)))->msg;
}

/* "host[:port]" as the Host header carries it. */
static char *
host_header (GUri *uri)
{
  int port = g_uri_get_port (uri);
  const char *scheme = g_uri_get_scheme (uri);
  gboolean default_port = port < 0 || (g_str_equal (scheme, "http") && port == 80) ||
                          (g_str_equal (scheme, "https") && port == 443);
  return default_port ? g_strdup (g_uri_get_host (uri))
                      : g_strdup_printf ("%s:%d", g_uri_get_host (uri), port);
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

void
edge_client_sign (SoupMessage *msg, const EdgeClientCredentials *credentials,
                  const char *service, GBytes *body, gboolean content_sha256_header)
{
  GUri *uri = soup_message_get_uri (msg);
  SoupMessageHeaders *headers = soup_message_get_request_headers (msg);
  g_autofree char *host = host_header (uri);
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *amz_date = g_date_time_format (now, "%Y%m%dT%H%M%SZ");
  g_autofree char *date = g_date_time_format (now, "%Y%m%d");
  char payload_hash[65];
  gsize len = 0;
  const void *data = body ? g_bytes_get_data (body, &len) : "";

  edge_sigv4_sha256_hex (data, len, payload_hash);
  soup_message_headers_replace (headers, "Host", host);
  soup_message_headers_replace (headers, "X-Amz-Date", amz_date);
  if (content_sha256_header)
    soup_message_headers_replace (headers, "X-Amz-Content-Sha256", payload_hash);

  /* Every header the request carries is signed but the ones a proxy may
   * change: names in lowercase, sorted. */
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  SoupMessageHeadersIter iter;
  const char *name, *value;
  soup_message_headers_iter_init (&iter, headers);
  while (soup_message_headers_iter_next (&iter, &name, &value))
    if (g_ascii_strcasecmp (name, "Authorization") != 0 &&
        g_ascii_strcasecmp (name, "User-Agent") != 0 &&
        g_ascii_strcasecmp (name, "Content-Length") != 0 &&
        g_ascii_strcasecmp (name, "Accept-Encoding") != 0 &&
        g_ascii_strcasecmp (name, "Connection") != 0)
      g_ptr_array_add (names, g_ascii_strdown (name, -1));
  g_ptr_array_sort (names, compare_names);

  g_autoptr (GString) canonical = g_string_new (NULL);
  const char *query = g_uri_get_query (uri);
  g_string_append_printf (canonical, "%s\n%s\n%s\n", soup_message_get_method (msg),
                          g_uri_get_path (uri)[0] ? g_uri_get_path (uri) : "/",
                          query ? query : "");
  g_autoptr (GString) signed_headers = g_string_new (NULL);
  for (guint i = 0; i < names->len; i++) {
    const char *n = g_ptr_array_index (names, i);
    g_autofree char *trimmed = g_strstrip (g_strdup (soup_message_headers_get_one (headers, n)));
    g_string_append_printf (canonical, "%s:%s\n", n, trimmed);
    g_string_append_printf (signed_headers, "%s%s", i ? ";" : "", n);
  }
  g_string_append_printf (canonical, "\n%s\n%s", signed_headers->str, payload_hash);

  EdgeSigv4Authorization scope = { .date = date, .region = (char *) credentials->region,
                                   .service = (char *) service };
  char signature[65];
  edge_sigv4_sign (credentials->secret_access_key, &scope, amz_date, canonical->str, signature);
  g_autofree char *authorization = g_strdup_printf (
      EDGE_SIGV4_ALGORITHM " Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
      credentials->access_key_id, date, credentials->region, service, signed_headers->str,
      signature);
  soup_message_headers_replace (headers, "Authorization", authorization);
}
