/* rtsp.c: RTSP over TCP for cameras (media/rtsp.h).
 *
 * The exchange (RFC 2326):
 *
 *   OPTIONS url             which methods the camera knows
 *   DESCRIBE url            -> SDP: the first m=video with H264 or H265
 *   SETUP control           Transport: RTP/AVP/TCP;unicast;interleaved=0-1
 *                           (the answer's interleaved= says which channel RTP uses)
 *   PLAY url                Session: id
 *   GET_PARAMETER url       every session timeout / 2, as a keep-alive
 *                           (OPTIONS where the camera does not list it)
 *   (stopped: the connection is closed, which ends the session)
 *
 * Each request may be answered 401 once; the client then logs in with the
 * URL's credentials (Basic, or Digest with MD5) and sends every later
 * request with them. After PLAY the connection carries interleaved frames,
 * '$' channel length(16) payload, channel 0 being RTP; responses to the
 * keep-alives come in between and are skipped. The connection is read in
 * blocks of up to 64 KiB into one buffer, so a read returns many packets.
 *
 * Video packets go through the depayloader (media/rtp.c) and each access
 * unit straight to the caller, in this thread.
 *
 * Timestamps: a frame's pts is its RTP timestamp's distance from the first
 * packet's (extended past 32-bit wrap-around, scaled to 90 kHz), so the
 * camera's own clock paces the frames, not the network's jitter; the wall
 * clock at that first packet anchors them.
 */
#define G_LOG_DOMAIN "media"

#include "rtsp.h"

#include "edge-core.h"
#include "rtp.h"

#include <gio/gio.h>
#include <openssl/evp.h>
#include <string.h>

#define READ_BLOCK (64 * 1024)
/* Largest RTSP response head and body (an SDP) accepted. */
#define RESPONSE_MAX (64 * 1024)
#define IO_TIMEOUT_S 5
#define DEFAULT_PORT 554

struct _MediaRtspClient {
  char *url;
  MediaRtspCallbacks callbacks;
  gpointer user_data;
  GThread *thread;
  GCancellable *cancellable; /* for the connect */
  GMutex lock;
  GSocket *socket;           /* once connected; stop shuts it down */
  gboolean stopping;
};

typedef struct {
  MediaRtspClient *client;
  GSocketConnection *connection;
  GSocket *socket;
  GOutputStream *out;
  GByteArray *buffer; /* read but not yet consumed */
  char *request_url;  /* the URL without credentials */
  char *user, *password;
  char *auth_scheme;  /* NULL, "Basic" or "Digest" */
  char *realm, *nonce, *qop, *opaque;
  guint nonce_count;
  gboolean get_parameter; /* the camera lists GET_PARAMETER: the keep-alive */
  guint cseq;
  char *session;
  guint session_timeout_s;
  guint channel;      /* the interleaved channel RTP comes on */
  gboolean streaming; /* PLAY answered: reads are batched (fill) */
  gboolean drained;   /* the last read left nothing in the socket */
} Session;

typedef struct {
  guint status;
  char *reason;
  GHashTable *headers; /* lower-case name -> value */
  char *body;
} Response;

static void
response_clear (Response *r)
{
  g_clear_pointer (&r->reason, g_free);
  g_clear_pointer (&r->headers, g_hash_table_unref);
  g_clear_pointer (&r->body, g_free);
}

/* ---- reading ---- */

/* Reads more into the buffer; FALSE on end of stream, error or stop.
 *
 * While streaming, reads are shaped by frames: a camera sends each access
 * unit as a burst of packets, a frame interval apart. When the last read
 * emptied the socket, the client waits for the next burst (a poll) if the
 * last frame was whole, or, in the middle of one (@mid_frame), pauses
 * BATCH_PAUSE_US so that one read takes the rest of it. A read per packet
 * would cost a wake-up, a poll and a recv each (at 4 Mb/s, hundreds a
 * second) for nothing. The pause adds at most BATCH_PAUSE_US to live
 * latency, and only for frames that do not arrive in one piece. */
#define BATCH_PAUSE_US 8000

static gboolean
fill (Session *s, gboolean mid_frame, GError **error)
{
  if (s->streaming && s->drained) {
    if (mid_frame)
      g_usleep (BATCH_PAUSE_US);
    else if (!g_socket_condition_timed_wait (s->socket, G_IO_IN,
                                             (gint64) IO_TIMEOUT_S * G_USEC_PER_SEC, NULL, error))
      return FALSE;
  }
  guint old = s->buffer->len;
  g_byte_array_set_size (s->buffer, old + READ_BLOCK);
  gssize n = g_socket_receive (s->socket, (char *) s->buffer->data + old, READ_BLOCK, NULL, error);
  g_byte_array_set_size (s->buffer, old + (guint) MAX (n, 0));
  if (n == 0 && error && *error == NULL)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                 "the camera closed the connection");
  s->drained = n < READ_BLOCK;
  return n > 0;
}

static void
consume (Session *s, gsize n)
{
  g_byte_array_remove_range (s->buffer, 0, (guint) n);
}

/* Skips interleaved frames that arrive before a response. */
static gboolean
skip_interleaved (Session *s, GError **error)
{
  while (s->buffer->len > 0 && s->buffer->data[0] == '$') {
    while (s->buffer->len < 4)
      if (!fill (s, FALSE, error))
        return FALSE;
    gsize len = 4 + ((gsize) s->buffer->data[2] << 8 | s->buffer->data[3]);
    while (s->buffer->len < len)
      if (!fill (s, FALSE, error))
        return FALSE;
    consume (s, len);
  }
  return TRUE;
}

/* Reads one response (head and body). */
static gboolean
read_response (Session *s, Response *r, GError **error)
{
  const guint8 *end;
  for (;;) {
    if (!skip_interleaved (s, error))
      return FALSE;
    end = s->buffer->len >= 4 ? memmem (s->buffer->data, s->buffer->len, "\r\n\r\n", 4) : NULL;
    if (end && s->buffer->data[0] != '$')
      break;
    if (s->buffer->len > RESPONSE_MAX) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "an RTSP response over %u bytes",
                   RESPONSE_MAX);
      return FALSE;
    }
    if (!fill (s, FALSE, error))
      return FALSE;
  }
  gsize head_len = (gsize) (end - s->buffer->data) + 4;
  g_autofree char *head = g_strndup ((const char *) s->buffer->data, head_len);
  consume (s, head_len);
  g_auto (GStrv) lines = g_strsplit (head, "\r\n", -1);
  if (!g_str_has_prefix (lines[0], "RTSP/1.0 ") || strlen (lines[0]) < 12) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "not an RTSP response: %.40s",
                 lines[0]);
    return FALSE;
  }
  r->status = (guint) g_ascii_strtoull (lines[0] + 9, NULL, 10);
  r->reason = g_strdup (strlen (lines[0]) > 13 ? lines[0] + 13 : "");
  r->headers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  for (guint i = 1; lines[i] && lines[i][0]; i++) {
    char *colon = strchr (lines[i], ':');
    if (colon == NULL)
      continue;
    char *name = g_ascii_strdown (lines[i], colon - lines[i]);
    g_hash_table_replace (r->headers, name, g_strstrip (g_strdup (colon + 1)));
  }
  const char *length = g_hash_table_lookup (r->headers, "content-length");
  guint64 body_len = length ? g_ascii_strtoull (length, NULL, 10) : 0;
  if (body_len > RESPONSE_MAX) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "an RTSP body of %" G_GUINT64_FORMAT
                 " bytes", body_len);
    return FALSE;
  }
  while (s->buffer->len < body_len)
    if (!fill (s, FALSE, error))
      return FALSE;
  r->body = g_strndup ((const char *) s->buffer->data, (gsize) body_len);
  consume (s, (gsize) body_len);
  return TRUE;
}

/* ---- requests and logins ---- */

static char *
md5_hex (const char *text)
{
  guint8 digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest (text, strlen (text), digest, &len, EVP_md5 (), NULL);
  GString *hex = g_string_sized_new (32);
  for (unsigned int i = 0; i < len; i++)
    g_string_append_printf (hex, "%02x", digest[i]);
  return g_string_free (hex, FALSE);
}

/* The value of @key="..." (or key=token) in a WWW-Authenticate header. */
static char *
auth_param (const char *header, const char *key)
{
  g_autofree char *needle = g_strconcat (key, "=", NULL);
  const char *p = header;
  while ((p = strstr (p, needle)) != NULL) {
    if (p == header || p[-1] == ' ' || p[-1] == ',') {
      p += strlen (needle);
      if (*p == '"') {
        const char *close = strchr (p + 1, '"');
        return close ? g_strndup (p + 1, close - p - 1) : NULL;
      }
      gsize n = strcspn (p, ", ");
      return g_strndup (p, n);
    }
    p += strlen (needle);
  }
  return NULL;
}

static char *
authorization (Session *s, const char *method, const char *url)
{
  if (s->auth_scheme == NULL || s->user == NULL)
    return NULL;
  if (g_str_equal (s->auth_scheme, "Basic")) {
    g_autofree char *plain = g_strconcat (s->user, ":", s->password ? s->password : "", NULL);
    g_autofree char *encoded = g_base64_encode ((const guchar *) plain, strlen (plain));
    return g_strconcat ("Basic ", encoded, NULL);
  }
  g_autofree char *a1 = g_strconcat (s->user, ":", s->realm, ":", s->password ? s->password : "",
                                     NULL);
  g_autofree char *a2 = g_strconcat (method, ":", url, NULL);
  g_autofree char *h1 = md5_hex (a1);
  g_autofree char *h2 = md5_hex (a2);
  g_autoptr (GString) header = g_string_new (NULL);
  g_string_append_printf (header, "Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\"",
                          s->user, s->realm, s->nonce, url);
  if (s->qop) {
    /* RFC 2617 with qop=auth: a client nonce and a count go into the hash. */
    char cnonce[17], nc[9];
    g_snprintf (cnonce, sizeof cnonce, "%08x%08x", g_random_int (), g_random_int ());
    g_snprintf (nc, sizeof nc, "%08x", ++s->nonce_count);
    g_autofree char *all = g_strconcat (h1, ":", s->nonce, ":", nc, ":", cnonce, ":auth:", h2, NULL);
    g_autofree char *response = md5_hex (all);
    g_string_append_printf (header, ", qop=auth, nc=%s, cnonce=\"%s\", response=\"%s\"", nc,
                            cnonce, response);
  } else {
    g_autofree char *all = g_strconcat (h1, ":", s->nonce, ":", h2, NULL);
    g_autofree char *response = md5_hex (all);
    g_string_append_printf (header, ", response=\"%s\"", response);
  }
  if (s->opaque)
    g_string_append_printf (header, ", opaque=\"%s\"", s->opaque);
  return g_string_free (g_steal_pointer (&header), FALSE);
}

static gboolean
send_request (Session *s, const char *method, const char *url, const char *extra, GError **error)
{
  g_autoptr (GString) req = g_string_new (NULL);
  g_autofree char *auth = authorization (s, method, url);
  g_string_append_printf (req, "%s %s RTSP/1.0\r\nCSeq: %u\r\nUser-Agent: edged\r\n", method, url,
                          ++s->cseq);
  if (auth)
    g_string_append_printf (req, "Authorization: %s\r\n", auth);
  if (s->session)
    g_string_append_printf (req, "Session: %s\r\n", s->session);
  if (extra)
    g_string_append (req, extra);
  g_string_append (req, "\r\n");
  return g_output_stream_write_all (s->out, req->str, req->len, NULL, NULL, error);
}

/* Sends a request and reads its answer, logging in once when asked to
 * (Basic, or Digest with MD5, with or without qop=auth).
 * FALSE (with a message naming the method and status) unless 2xx. */
static gboolean
request (Session *s, const char *method, const char *url, const char *extra, Response *r,
         GError **error)
{
  for (guint attempt = 0;; attempt++) {
    if (!send_request (s, method, url, extra, error) || !read_response (s, r, error))
      return FALSE;
    if (r->status == 401 && attempt == 0 && s->user != NULL) {
      const char *challenge = g_hash_table_lookup (r->headers, "www-authenticate");
      if (challenge && g_str_has_prefix (challenge, "Digest")) {
        g_free (s->auth_scheme);
        s->auth_scheme = g_strdup ("Digest");
        g_free (s->realm);
        s->realm = auth_param (challenge, "realm");
        g_free (s->nonce);
        s->nonce = auth_param (challenge, "nonce");
        g_free (s->opaque);
        s->opaque = auth_param (challenge, "opaque");
        g_autofree char *qop = auth_param (challenge, "qop");
        g_free (s->qop);
        s->qop = qop && strstr (qop, "auth") ? g_strdup ("auth") : NULL;
        s->nonce_count = 0;
        if (s->realm == NULL || s->nonce == NULL)
          break;
      } else {
        g_free (s->auth_scheme);
        s->auth_scheme = g_strdup ("Basic");
      }
      response_clear (r);
      continue;
    }
    break;
  }
  if (r->status < 200 || r->status >= 300) {
    g_set_error (error, G_IO_ERROR, r->status == 401 ? G_IO_ERROR_PERMISSION_DENIED
                                                     : G_IO_ERROR_FAILED,
                 "%s: %u %s%s", method, r->status, r->reason,
                 r->status == 401 ? (s->user ? " (the camera refused the credentials)"
                                             : " (the camera needs user:password@ in its URL)")
                                  : "");
    return FALSE;
  }
  return TRUE;
}

/* ---- SDP ---- */

typedef struct {
  char *control;
  MediaCodec codec;
  guint clock_rate;
  char *fmtp; /* the payload's a=fmtp parameters, or NULL */
} VideoTrack;

/* The first H.264 or H.265 video section of @sdp: codec, clock rate, fmtp
 * parameters and control URL. */
static gboolean
sdp_video_track (const char *sdp, const char *base, VideoTrack *ret, GError **error)
{
  g_auto (GStrv) lines = g_strsplit (sdp, "\n", -1);
  gboolean in_video = FALSE;
  g_autofree char *payload = NULL, *encoding = NULL, *control = NULL, *fmtp = NULL;
  guint clock_rate = 90000;
  for (guint i = 0; lines[i]; i++) {
    char *line = g_strstrip (lines[i]);
    if (g_str_has_prefix (line, "m=")) {
      if (in_video && encoding)
        break; /* the first usable video section is enough */
      in_video = g_str_has_prefix (line, "m=video ");
      g_clear_pointer (&payload, g_free);
      g_clear_pointer (&encoding, g_free);
      g_clear_pointer (&control, g_free);
      g_clear_pointer (&fmtp, g_free);
      if (in_video) {
        g_auto (GStrv) f = g_strsplit (line, " ", 5);
        payload = g_strv_length (f) >= 4 ? g_strdup (f[3]) : NULL;
      }
      continue;
    }
    if (!in_video || payload == NULL)
      continue;
    g_autofree char *rtpmap = g_strdup_printf ("a=rtpmap:%s ", payload);
    g_autofree char *fmtp_prefix = g_strdup_printf ("a=fmtp:%s ", payload);
    if (g_str_has_prefix (line, rtpmap)) {
      const char *value = line + strlen (rtpmap);
      g_auto (GStrv) parts = g_strsplit (value, "/", 3);
      if (parts[0] && (g_ascii_strcasecmp (parts[0], "H264") == 0 ||
                       g_ascii_strcasecmp (parts[0], "H265") == 0)) {
        encoding = g_ascii_strup (parts[0], -1);
        if (parts[1])
          clock_rate = (guint) g_ascii_strtoull (parts[1], NULL, 10);
      }
    } else if (g_str_has_prefix (line, fmtp_prefix)) {
      fmtp = g_strdup (line + strlen (fmtp_prefix));
    } else if (g_str_has_prefix (line, "a=control:")) {
      control = g_strdup (line + strlen ("a=control:"));
    }
  }
  if (!in_video || encoding == NULL || payload == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                 "the camera offers no H.264 or H.265 video");
    return FALSE;
  }
  ret->codec = g_str_equal (encoding, "H265") ? MEDIA_CODEC_H265 : MEDIA_CODEC_H264;
  ret->clock_rate = MAX (clock_rate, 1);
  ret->fmtp = g_steal_pointer (&fmtp);
  if (control == NULL || g_str_equal (control, "*"))
    ret->control = g_strdup (base);
  else if (g_str_has_prefix (control, "rtsp://") || g_str_has_prefix (control, "rtsps://"))
    ret->control = g_strdup (control);
  else
    ret->control = g_strconcat (base, g_str_has_suffix (base, "/") ? "" : "/", control, NULL);
  return TRUE;
}

/* ---- the session ---- */

/* The session's clock: RTP timestamps extended to 64 bits, from the first
 * packet's. */
typedef struct {
  MediaRtspClient *client;
  guint clock_rate;
  gboolean started;
  guint32 first_ts, last_ts;
  guint64 extended;
  gint64 first_us;
} Timeline;

static void
on_frame (const MediaRtpFrame *frame, gpointer data)
{
  Timeline *t = data;
  t->extended += (guint64) (gint64) (gint32) (frame->rtp_time - t->last_ts);
  t->last_ts = frame->rtp_time;
  gint64 since = (gint64) (t->extended - t->first_ts);
  guint64 pts = since > 0 ? (guint64) since : 0;
  if (t->clock_rate != MEDIA_TIMESCALE)
    pts = pts * MEDIA_TIMESCALE / t->clock_rate;
  MediaRtspFrame out = {
    .track = frame->track,
    .data = frame->data,
    .size = frame->size,
    .keyframe = frame->keyframe,
    .pts = pts,
    .received_us = t->first_us + (gint64) (pts * 1000 / (MEDIA_TIMESCALE / 1000)),
  };
  t->client->callbacks.frame (&out, t->client->user_data);
}

static gboolean
stream (Session *s, MediaRtpDepay *depay, Timeline *t, GError **error)
{
  gint64 keepalive_at = g_get_monotonic_time () + (gint64) s->session_timeout_s * G_USEC_PER_SEC / 2;

  for (;;) {
    /* Whole frames in the buffer first; then read more. */
    gsize at = 0;
    while (s->buffer->len - at >= 4) {
      const guint8 *p = s->buffer->data + at;
      if (p[0] == '$') {
        gsize len = edge_get_be16 (p + 2);
        if (s->buffer->len - at < 4 + len)
          break;
        if (p[1] == s->channel && len >= 12) {
          if (!t->started) {
            t->started = TRUE;
            t->first_ts = t->last_ts = edge_get_be32 (p + 8);
            t->extended = t->first_ts;
            t->first_us = g_get_real_time ();
          }
          media_rtp_depay_push (depay, p + 4, len);
        }
        at += 4 + len;
      } else if (p[0] == 'R' && s->buffer->len - at >= 8 && memcmp (p, "RTSP/1.0", 8) == 0) {
        /* A keep-alive's answer: head and body, skipped. */
        const guint8 *end = memmem (p, s->buffer->len - at, "\r\n\r\n", 4);
        if (end == NULL)
          break;
        g_autofree char *head = g_strndup ((const char *) p, end - p);
        char *length = g_strstr_len (head, -1, "Content-Length:");
        gsize body = length ? (gsize) g_ascii_strtoull (length + 15, NULL, 10) : 0;
        gsize total = (gsize) (end - p) + 4 + body;
        if (s->buffer->len - at < total)
          break;
        at += total;
      } else {
        at++; /* resynchronise on the next '$' */
      }
    }
    consume (s, at);
    if (s->buffer->len > RESPONSE_MAX + 70000) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "unparseable data from the camera");
      return FALSE;
    }
    if (g_get_monotonic_time () >= keepalive_at) {
      if (!send_request (s, s->get_parameter ? "GET_PARAMETER" : "OPTIONS", s->request_url, NULL,
                         error))
        return FALSE;
      keepalive_at = g_get_monotonic_time () + (gint64) s->session_timeout_s * G_USEC_PER_SEC / 2;
    }
    if (!fill (s, s->buffer->len > 0 || media_rtp_depay_in_frame (depay), error))
      return FALSE;
  }
}

static gpointer
client_thread (gpointer data)
{
  MediaRtspClient *client = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GUri) uri = g_uri_parse (client->url, G_URI_FLAGS_HAS_PASSWORD, &error);
  Session s = { .client = client, .buffer = g_byte_array_new (), .session_timeout_s = 60 };
  Response r = { 0 };
  VideoTrack track = { 0 };
  MediaRtpDepay *depay = NULL;
  g_autoptr (GSocketClient) sockets = g_socket_client_new ();

  if (uri == NULL)
    goto out;
  s.user = g_strdup (g_uri_get_user (uri));
  s.password = g_strdup (g_uri_get_password (uri));
  s.request_url = g_uri_join (G_URI_FLAGS_NONE, g_uri_get_scheme (uri), NULL, g_uri_get_host (uri),
                              g_uri_get_port (uri), g_uri_get_path (uri), g_uri_get_query (uri),
                              NULL);
  g_socket_client_set_timeout (sockets, IO_TIMEOUT_S);
  s.connection = g_socket_client_connect_to_host (
      sockets, g_uri_get_host (uri), g_uri_get_port (uri) > 0 ? g_uri_get_port (uri) : DEFAULT_PORT,
      client->cancellable, &error);
  if (s.connection == NULL)
    goto out;
  s.socket = g_socket_connection_get_socket (s.connection);
  g_socket_set_timeout (s.socket, IO_TIMEOUT_S);
  s.out = g_io_stream_get_output_stream (G_IO_STREAM (s.connection));
  g_mutex_lock (&client->lock);
  client->socket = g_object_ref (s.socket);
  gboolean stopping = client->stopping;
  g_mutex_unlock (&client->lock);
  if (stopping)
    goto out;

  if (!request (&s, "OPTIONS", s.request_url, NULL, &r, &error))
    goto out;
  const char *public = g_hash_table_lookup (r.headers, "public");
  s.get_parameter = public && strstr (public, "GET_PARAMETER") != NULL;
  response_clear (&r);
  if (!request (&s, "DESCRIBE", s.request_url, "Accept: application/sdp\r\n", &r, &error))
    goto out;
  const char *base = g_hash_table_lookup (r.headers, "content-base");
  if (!sdp_video_track (r.body, base ? base : s.request_url, &track, &error))
    goto out;
  response_clear (&r);
  if (!request (&s, "SETUP", track.control, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
                &r, &error))
    goto out;
  const char *session = g_hash_table_lookup (r.headers, "session");
  if (session == NULL) {
    g_set_error (&error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "SETUP: no Session in the answer");
    goto out;
  }
  s.session = g_strndup (session, strcspn (session, ";"));
  const char *timeout = strstr (session, "timeout=");
  if (timeout)
    s.session_timeout_s = CLAMP ((guint) g_ascii_strtoull (timeout + 8, NULL, 10), 10, 600);
  /* The camera may pick other channels than the ones asked for. */
  const char *transport = g_hash_table_lookup (r.headers, "transport");
  const char *interleaved = transport ? strstr (transport, "interleaved=") : NULL;
  if (interleaved)
    s.channel = (guint) MIN (g_ascii_strtoull (interleaved + 12, NULL, 10), 255);
  response_clear (&r);
  Timeline timeline = { .client = client, .clock_rate = track.clock_rate };
  depay = media_rtp_depay_new (track.codec, track.fmtp, on_frame, &timeline, &error);
  if (depay == NULL)
    goto out;
  if (!request (&s, "PLAY", s.request_url, "Range: npt=0.000-\r\n", &r, &error))
    goto out;
  response_clear (&r);
  s.streaming = TRUE;
  stream (&s, depay, &timeline, &error);

out:
  g_mutex_lock (&client->lock);
  stopping = client->stopping;
  g_mutex_unlock (&client->lock);
  if (error && !stopping)
    client->callbacks.failed (error->message, client->user_data);
  response_clear (&r);
  media_rtp_depay_free (depay);
  g_free (track.control);
  g_free (track.fmtp);
  if (s.connection)
    g_io_stream_close (G_IO_STREAM (s.connection), NULL, NULL);
  g_mutex_lock (&client->lock);
  g_clear_object (&client->socket);
  g_mutex_unlock (&client->lock);
  g_clear_object (&s.connection);
  g_byte_array_unref (s.buffer);
  g_free (s.request_url);
  g_free (s.user);
  g_free (s.password);
  g_free (s.auth_scheme);
  g_free (s.realm);
  g_free (s.nonce);
  g_free (s.qop);
  g_free (s.opaque);
  g_free (s.session);
  return NULL;
}

MediaRtspClient *
media_rtsp_client_start (const char *url, const MediaRtspCallbacks *callbacks, gpointer user_data)
{
  MediaRtspClient *client = g_new0 (MediaRtspClient, 1);
  client->url = g_strdup (url);
  client->callbacks = *callbacks;
  client->user_data = user_data;
  client->cancellable = g_cancellable_new ();
  g_mutex_init (&client->lock);
  client->thread = g_thread_new ("rtsp-client", client_thread, client);
  return client;
}

void
media_rtsp_client_stop (MediaRtspClient *client)
{
  if (client == NULL)
    return;
  /* Wakes the thread wherever it waits: connecting (the cancellable) or
   * reading and writing (the socket, shut down; the camera sees the
   * connection close, which ends the session on its side). */
  g_mutex_lock (&client->lock);
  client->stopping = TRUE;
  if (client->socket)
    g_socket_shutdown (client->socket, TRUE, TRUE, NULL);
  g_mutex_unlock (&client->lock);
  g_cancellable_cancel (client->cancellable);
  g_thread_join (client->thread);
  g_clear_object (&client->cancellable);
  g_mutex_clear (&client->lock);
  g_free (client->url);
  g_free (client);
}
