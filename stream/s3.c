/* s3.c: putting objects into S3-compatible storage (AWS S3, MinIO, Ceph,
 * s3rver), for delivery streams.
 *
 * Path-style addressing (ENDPOINT/BUCKET/KEY), which every S3-compatible
 * server takes. Requests are signed with SigV4 as S3 wants it: the path
 * encoded once (not twice, as for other services), the payload's SHA-256 in
 * x-amz-content-sha256. An object up to S3_SINGLE_PUT_MAX goes up in one
 * PUT; a larger one as a multipart upload of S3_PART_BYTES parts, aborted
 * if a part fails, so that no half object is ever visible.
 */
#define G_LOG_DOMAIN "delivery"

#include "delivery.h"


#define S3_SINGLE_PUT_MAX (16 * 1024 * 1024)
#define S3_PART_BYTES (8 * 1024 * 1024)
#define S3_ANSWER_MAX (64 * 1024)

typedef struct {
  SoupSession *session;
  StreamS3 s3;
  char *key;
  GBytes *body;
  char *content_type;
  char *content_encoding;
  char *upload_id;
  GPtrArray *etags; /* char *, one per part sent */
  gsize offset;
} Upload;

static void
upload_free (Upload *u)
{
  g_object_unref (u->session);
  stream_s3_clear (&u->s3);
  g_free (u->key);
  g_bytes_unref (u->body);
  g_free (u->content_type);
  g_free (u->content_encoding);
  g_free (u->upload_id);
  g_ptr_array_unref (u->etags);
  g_free (u);
}

void
stream_s3_clear (StreamS3 *s3)
{
  g_clear_pointer (&s3->endpoint, g_free);
  g_clear_pointer (&s3->bucket, g_free);
  g_clear_pointer (&s3->region, g_free);
  g_clear_pointer (&s3->access_key_id, g_free);
  g_clear_pointer (&s3->secret_access_key, g_free);
}

void
stream_s3_copy (StreamS3 *to, const StreamS3 *from)
{
  to->endpoint = g_strdup (from->endpoint);
  to->bucket = g_strdup (from->bucket);
  to->region = g_strdup (from->region);
  to->access_key_id = g_strdup (from->access_key_id);
  to->secret_access_key = g_strdup (from->secret_access_key);
}

/* RFC 3986 unreserved characters stay; everything else is %XX, and '/' too
 * unless @keep_slash. */
static void
append_uri_encoded (GString *out, const char *text, gboolean keep_slash)
{
  for (const guchar *p = (const guchar *) text; *p; p++) {
    if (g_ascii_isalnum (*p) || strchr ("-_.~", *p) || (keep_slash && *p == '/'))
      g_string_append_c (out, (char) *p);
    else
      g_string_append_printf (out, "%%%02X", *p);
  }
}

/* A signed request: @query is canonical already (sorted, encoded). @u
 * (nullable) gives the object's Content-Type and Content-Encoding. */
static SoupMessage *
signed_message (const StreamS3 *s3, const char *method, const char *key, const char *query,
                GBytes *body, const Upload *u, GError **error)
{
  g_autoptr (GString) path = g_string_new ("/");
  append_uri_encoded (path, s3->bucket, FALSE);
  if (key) {
    g_string_append_c (path, '/');
    append_uri_encoded (path, key, TRUE);
  }
  g_autofree char *url = g_strdup_printf ("%s%s%s%s", s3->endpoint, path->str,
                                          query[0] ? "?" : "", query);
  g_autoptr (GUri) uri = g_uri_parse (url, G_URI_FLAGS_ENCODED, error);
  if (uri == NULL)
    return NULL;
  SoupMessage *msg = soup_message_new_from_uri (method, uri);
  SoupMessageHeaders *headers = soup_message_get_request_headers (msg);
  if (body)
    soup_message_set_request_body_from_bytes (msg, NULL, body);
  if (u && u->content_type)
    soup_message_headers_replace (headers, "Content-Type", u->content_type);
  if (u && u->content_encoding)
    soup_message_headers_replace (headers, "Content-Encoding", u->content_encoding);
  EdgeClientCredentials credentials = { s3->access_key_id, s3->secret_access_key, s3->region };
  edge_client_sign (msg, &credentials, "s3", body, TRUE);
  return msg;
}

/* The text of <@tag> in an S3 XML answer; NULL if absent. */
static char *
xml_value (GBytes *answer, const char *tag)
{
  gsize len;
  const char *data = answer ? g_bytes_get_data (answer, &len) : NULL;
  if (data == NULL || len > S3_ANSWER_MAX)
    return NULL;
  g_autofree char *text = g_strndup (data, len);
  g_autofree char *open = g_strdup_printf ("<%s>", tag);
  g_autofree char *close = g_strdup_printf ("</%s>", tag);
  const char *start = strstr (text, open);
  const char *end = start ? strstr (start, close) : NULL;
  return end ? g_strndup (start + strlen (open), end - start - strlen (open)) : NULL;
}

/* An error answer as "STATUS Code: Message". */
static void
set_answer_error (GError **error, SoupMessage *msg, GBytes *answer, const char *what)
{
  g_autofree char *code = xml_value (answer, "Code");
  g_autofree char *message = xml_value (answer, "Message");
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "S3 %s: %u %s%s%s", what,
               soup_message_get_status (msg), code ? code : soup_message_get_reason_phrase (msg),
               message ? ": " : "", message ? message : "");
}

/* Whether a request of @what succeeded: FALSE with @error for a failure
 * to send or an error status (S3's code and message in it). @ret_msg
 * gets the message (for its headers), @ret_answer the body; both are
 * optional. */
static gboolean
request_ok (GObject *source, GAsyncResult *result, const char *what, SoupMessage **ret_msg,
            GBytes **ret_answer, GError **error)
{
  SoupMessage *msg = edge_client_send_message (result);
  g_autoptr (GBytes) answer = edge_client_send_finish (result, error);
  if (ret_msg)
    *ret_msg = msg;
  if (answer == NULL)
    return FALSE;
  if (!SOUP_STATUS_IS_SUCCESSFUL (soup_message_get_status (msg))) {
    set_answer_error (error, msg, answer, what);
    return FALSE;
  }
  if (ret_answer)
    *ret_answer = g_steal_pointer (&answer);
  return TRUE;
}

static void send_next_part (GTask *task);

/* An abort is best effort: the server drops abandoned uploads anyway. */
static void
aborted (GObject *source, GAsyncResult *result, gpointer data)
{
  request_ok (source, result, "AbortMultipartUpload", NULL, NULL, NULL);
}

/* Fails @task after a failed part, aborting the upload so that the server
 * drops the parts it holds. */
static void
fail_multipart (GTask *task, GError *error)
{
  Upload *u = g_task_get_task_data (task);
  g_autofree char *encoded = g_uri_escape_string (u->upload_id, NULL, FALSE);
  g_autofree char *query = g_strdup_printf ("uploadId=%s", encoded);
  g_autoptr (SoupMessage) msg = signed_message (&u->s3, "DELETE", u->key, query, NULL, NULL, NULL);
  if (msg)
    edge_client_send_async (u->session, msg, S3_ANSWER_MAX, NULL, aborted, NULL);
  g_task_return_error (task, error);
  g_object_unref (task);
}

static void
completed (GObject *source, GAsyncResult *result, gpointer data)
{
  GTask *task = data;
  SoupMessage *msg;
  GError *error = NULL;
  g_autoptr (GBytes) answer = NULL;
  request_ok (source, result, "CompleteMultipartUpload", &msg, &answer, &error);
  /* S3 may answer 200 to CompleteMultipartUpload with an <Error> inside. */
  g_autofree char *code = answer ? xml_value (answer, "Code") : NULL;
  if (code)
    set_answer_error (&error, msg, answer, "CompleteMultipartUpload");
  if (error) {
    fail_multipart (task, error);
    return;
  }
  g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

static void
complete_upload (GTask *task)
{
  Upload *u = g_task_get_task_data (task);
  g_autoptr (GString) xml = g_string_new ("<CompleteMultipartUpload>");
  for (guint i = 0; i < u->etags->len; i++)
    g_string_append_printf (xml, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", i + 1,
                            (const char *) g_ptr_array_index (u->etags, i));
  g_string_append (xml, "</CompleteMultipartUpload>");
  g_autoptr (GBytes) body = g_string_free_to_bytes (g_steal_pointer (&xml));
  g_autofree char *encoded = g_uri_escape_string (u->upload_id, NULL, FALSE);
  g_autofree char *query = g_strdup_printf ("uploadId=%s", encoded);
  GError *error = NULL;
  g_autoptr (SoupMessage) msg = signed_message (&u->s3, "POST", u->key, query, body, NULL, &error);
  if (msg == NULL) {
    fail_multipart (task, error);
    return;
  }
  edge_client_send_async (u->session, msg, S3_ANSWER_MAX, g_task_get_cancellable (task),
                                    completed, task);
}

static void
part_sent (GObject *source, GAsyncResult *result, gpointer data)
{
  GTask *task = data;
  Upload *u = g_task_get_task_data (task);
  SoupMessage *msg;
  GError *error = NULL;
  request_ok (source, result, "UploadPart", &msg, NULL, &error);
  const char *etag = msg ? soup_message_headers_get_one (soup_message_get_response_headers (msg),
                                                         "ETag")
                         : NULL;
  if (error == NULL && etag == NULL)
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, "S3 UploadPart: no ETag in the answer");
  if (error) {
    fail_multipart (task, error);
    return;
  }
  g_ptr_array_add (u->etags, g_strdup (etag));
  send_next_part (task);
}

static void
send_next_part (GTask *task)
{
  Upload *u = g_task_get_task_data (task);
  gsize total = g_bytes_get_size (u->body);
  if (u->offset >= total) {
    complete_upload (task);
    return;
  }
  gsize len = MIN (S3_PART_BYTES, total - u->offset);
  g_autoptr (GBytes) part = g_bytes_new_from_bytes (u->body, u->offset, len);
  u->offset += len;
  g_autofree char *encoded = g_uri_escape_string (u->upload_id, NULL, FALSE);
  g_autofree char *query = g_strdup_printf ("partNumber=%u&uploadId=%s", u->etags->len + 1, encoded);
  GError *error = NULL;
  g_autoptr (SoupMessage) msg = signed_message (&u->s3, "PUT", u->key, query, part, NULL, &error);
  if (msg == NULL) {
    fail_multipart (task, error);
    return;
  }
  edge_client_send_async (u->session, msg, S3_ANSWER_MAX, g_task_get_cancellable (task),
                                    part_sent, task);
}

static void
upload_created (GObject *source, GAsyncResult *result, gpointer data)
{
  GTask *task = data;
  Upload *u = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (GBytes) answer = NULL;
  request_ok (source, result, "CreateMultipartUpload", NULL, &answer, &error);
  if (error == NULL && (u->upload_id = xml_value (answer, "UploadId")) == NULL)
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED,
                         "S3 CreateMultipartUpload: no UploadId in the answer");
  if (error) {
    g_task_return_error (task, error);
    g_object_unref (task);
    return;
  }
  send_next_part (task);
}

static void
put_done (GObject *source, GAsyncResult *result, gpointer data)
{
  GTask *task = data;
  GError *error = NULL;
  request_ok (source, result, "PutObject", NULL, NULL, &error);
  if (error)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

void
stream_s3_put_async (SoupSession *session, const StreamS3 *s3, const char *key, GBytes *body,
                     const char *content_type, const char *content_encoding,
                     GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Upload *u = g_new0 (Upload, 1);
  GError *error = NULL;

  u->session = g_object_ref (session);
  stream_s3_copy (&u->s3, s3);
  u->key = g_strdup (key);
  u->body = g_bytes_ref (body);
  u->content_type = g_strdup (content_type);
  u->content_encoding = g_strdup (content_encoding);
  u->etags = g_ptr_array_new_with_free_func (g_free);
  g_task_set_task_data (task, u, (GDestroyNotify) upload_free);

  gboolean multipart = g_bytes_get_size (body) > S3_SINGLE_PUT_MAX;
  g_autoptr (SoupMessage) msg = multipart
                                    ? signed_message (s3, "POST", key, "uploads=", NULL, u, &error)
                                    : signed_message (s3, "PUT", key, "", body, u, &error);
  if (msg == NULL) {
    g_task_return_error (task, error);
    g_object_unref (task);
    return;
  }
  edge_client_send_async (session, msg, S3_ANSWER_MAX, cancellable,
                                    multipart ? upload_created : put_done, task);
}

gboolean
stream_s3_put_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
delete_done (GObject *source, GAsyncResult *result, gpointer data)
{
  GTask *task = data;
  GError *error = NULL;
  if (request_ok (source, result, "DeleteObject", NULL, NULL, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
  g_object_unref (task);
}

void
stream_s3_delete_async (SoupSession *session, const StreamS3 *s3, const char *key,
                        GCancellable *cancellable, GAsyncReadyCallback callback,
                        gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  GError *error = NULL;
  g_autoptr (SoupMessage) msg = signed_message (s3, "DELETE", key, "", NULL, NULL, &error);
  if (msg == NULL) {
    g_task_return_error (task, error);
    g_object_unref (task);
    return;
  }
  edge_client_send_async (session, msg, S3_ANSWER_MAX, cancellable, delete_done, task);
}

gboolean
stream_s3_delete_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}
