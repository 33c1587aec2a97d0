/* edgectl: a command-line client for a running edged, over its REST API.
 *
 *   edgectl [--url URL] status [--json]
 *   edgectl streams [list]                 data streams, records and bytes held
 *   edgectl streams create NAME [SHARDS]
 *   edgectl streams delete NAME
 *   edgectl streams tail NAME [--from-start]   print records as they land
 *   edgectl cameras [list]                 cameras, their state and what they recorded
 *   edgectl cameras add NAME SOURCE        record a camera (kept across restarts)
 *   edgectl cameras remove NAME            stop it and delete its recordings
 *   edgectl functions [list]               functions, their environments and queues
 *   edgectl functions invoke NAME [JSON]   invoke one and print its answer
 *   edgectl functions logs NAME [--follow] its last log lines (then new ones as they come)
 *   edgectl events [CAMERA]                the newest detection events (of one camera)
 *   edgectl mqtt [status]                  brokers, subscriptions and topic rules
 *   edgectl mqtt publish TOPIC MESSAGE [BROKER]   publish (QoS 1) through a broker
 *   edgectl keys [list]                    API keys (not their secrets) and usage plans
 *   edgectl keys create NAME [PLAN] [--admin]   a new API key, printed once
 *   edgectl keys delete ID
 *   edgectl delivery                       delivery streams: lag, delivered, errors
 *   edgectl forwarders                     forwarders: lag (records, bytes, age), forwarded
 *   edgectl analytics                      analytics applications: windows, results, anomalies
 *   edgectl uploads                        video uploads to S3: lag, uploaded, deleted there
 *   edgectl hw                             the board's profile and why (GET /v1/hw)
 *   edgectl gpio [list]                    GPIO lines and their levels
 *   edgectl gpio set NAME 0|1 [PULSE_MS]   set an output (for PULSE_MS, then back)
 *   edgectl check-config FILE
 *   edgectl version
 *
 * The daemon's address comes from --url, else $EDGED_URL, else
 * http://127.0.0.1:8080; an API key from --api-key-file, else $EDGED_API_KEY
 * (with authentication on: see docs/internals/auth.md). Exit status: 0
 * success, 1 the daemon could not be reached or answered an error, 2 bad
 * usage or an invalid configuration.
 */
#define G_LOG_DOMAIN "edgectl"

#include "edge-core.h"
#include "edged-version.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>

#define RESPONSE_MAX_BYTES (16 * 1024 * 1024)

static char *opt_url;
static gboolean opt_json;
static gboolean opt_insecure;
static gboolean opt_from_start;
static gboolean opt_follow;
static gboolean opt_admin;
static char *opt_api_key_file;
static char *api_key;

static const GOptionEntry options[] = {
  { "url", 'u', 0, G_OPTION_ARG_STRING, &opt_url,
    "edged's base URL (default: $EDGED_URL or http://127.0.0.1:8080)", "URL" },
  { "json", 'j', 0, G_OPTION_ARG_NONE, &opt_json, "Print the raw JSON answer", NULL },
  { "insecure", 'k', 0, G_OPTION_ARG_NONE, &opt_insecure,
    "Accept any TLS certificate (self-signed boxes)", NULL },
  { "from-start", 0, 0, G_OPTION_ARG_NONE, &opt_from_start,
    "streams tail: start at the oldest record kept, not at the newest", NULL },
  { "follow", 'f', 0, G_OPTION_ARG_NONE, &opt_follow,
    "functions logs: keep printing lines as they come", NULL },
  { "api-key-file", 0, 0, G_OPTION_ARG_FILENAME, &opt_api_key_file,
    "Read the API key from FILE (default: $EDGED_API_KEY)", "FILE" },
  { "admin", 0, 0, G_OPTION_ARG_NONE, &opt_admin,
    "keys create: the key may manage keys", NULL },
  G_OPTION_ENTRY_NULL,
};

/* The API key, if any, goes with every request. */
static void
authorize (SoupMessage *msg)
{
  if (api_key)
    soup_message_headers_replace (soup_message_get_request_headers (msg), "x-api-key", api_key);
}

static const char *
base_url (void)
{
  if (opt_url)
    return opt_url;
  if (g_getenv ("EDGED_URL"))
    return g_getenv ("EDGED_URL");
  return "http://127.0.0.1:8080";
}

static gboolean
accept_any_certificate (SoupMessage *msg, GTlsCertificate *cert, GTlsCertificateFlags errors,
                        gpointer data)
{
  return TRUE;
}

/* Sends @method @path (with a JSON @body, nullable) and parses the JSON
 * answer, NULL for an empty one. Prints its own error and sets *ret_failed. */
static JsonNode *
request_json (const char *method, const char *path, const char *body, gboolean *ret_failed)
{
  g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", 10, NULL);
  g_autofree char *url = g_strconcat (base_url (), path, NULL);
  g_autoptr (SoupMessage) msg = soup_message_new (method, url);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) answer = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  gsize len;

  *ret_failed = TRUE;
  if (msg == NULL) {
    g_printerr ("edgectl: %s is not a valid URL\n", url);
    return NULL;
  }
  if (opt_insecure)
    g_signal_connect (msg, "accept-certificate", G_CALLBACK (accept_any_certificate), NULL);
  authorize (msg);
  if (body) {
    g_autoptr (GBytes) bytes = g_bytes_new (body, strlen (body));
    soup_message_set_request_body_from_bytes (msg, "application/json", bytes);
  }
  answer = soup_session_send_and_read (session, msg, NULL, &error);
  if (answer == NULL) {
    g_printerr ("edgectl: cannot reach edged at %s: %s (is edged running?)\n", base_url (),
                error->message);
    return NULL;
  }
  const char *data = g_bytes_get_data (answer, &len);
  if (len == 0 && SOUP_STATUS_IS_SUCCESSFUL (soup_message_get_status (msg))) {
    *ret_failed = FALSE;
    return NULL;
  }
  if (len > RESPONSE_MAX_BYTES || !json_parser_load_from_data (parser, data, (gssize) len, &error)) {
    g_printerr ("edgectl: %s answered %u with something other than JSON\n", url,
                soup_message_get_status (msg));
    return NULL;
  }
  if (!SOUP_STATUS_IS_SUCCESSFUL (soup_message_get_status (msg))) {
    JsonObject *root = JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))
                           ? json_node_get_object (json_parser_get_root (parser))
                           : NULL;
    JsonObject *err = root && json_object_has_member (root, "error")
                          ? json_object_get_object_member (root, "error")
                          : NULL;
    g_printerr ("edgectl: %s %s: %u %s\n", method, path, soup_message_get_status (msg),
                err && json_object_has_member (err, "message")
                    ? json_object_get_string_member (err, "message")
                    : soup_message_get_reason_phrase (msg));
    return NULL;
  }
  *ret_failed = FALSE;
  return json_parser_steal_root (parser);
}

static JsonNode *
get_json (const char *path)
{
  gboolean failed;
  return request_json ("GET", path, NULL, &failed);
}

static void
print_json (JsonNode *node)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_pretty (gen, TRUE);
  json_generator_set_root (gen, node);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  g_print ("%s\n", text);
}

static const char *
member_string (JsonObject *object, const char *name)
{
  JsonNode *node = object ? json_object_get_member (object, name) : NULL;
  return node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING
             ? json_node_get_string (node)
             : "?";
}

static int
cmd_status (void)
{
  g_autoptr (JsonNode) status = get_json ("/v1/status");
  g_autoptr (JsonNode) health = NULL;
  if (status == NULL)
    return 1;
  if (opt_json) {
    print_json (status);
    return 0;
  }
  health = get_json ("/healthz");
  JsonObject *s = json_node_get_object (status);
  JsonObject *board = json_object_get_object_member (s, "board");
  JsonObject *gateway = json_object_get_object_member (s, "gateway");
  double memory_gib =
      (double) json_object_get_int_member_with_default (board, "memory_bytes", 0) / (1 << 30);
  double uptime = json_object_get_double_member_with_default (s, "uptime_seconds", 0);

  g_print ("edged %s  %s\n", member_string (s, "version"),
           health ? member_string (json_node_get_object (health), "status") : "unreachable");
  g_print ("  instance   %s\n", member_string (s, "instance_id"));
  g_print ("  up         %.0f s (since %s)\n", uptime, member_string (s, "started_at"));
  g_print ("  gateway    %s\n", member_string (gateway, "url"));
  g_print ("  data       %s\n", member_string (s, "data_dir"));
  g_print ("  config     %s\n", member_string (s, "config"));
  g_print ("  board      %s, %s, %" G_GINT64_FORMAT " CPUs, %.1f GiB\n",
           member_string (board, "model"), member_string (board, "arch"),
           json_object_get_int_member_with_default (board, "cpus", 0), memory_gib);
  return health ? 0 : 1;
}

static int
cmd_streams_list (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/streams");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonArray *streams = json_object_get_array_member (json_node_get_object (root), "streams");
  g_print ("%-32s %6s %12s %12s %-10s %s\n", "NAME", "SHARDS", "RECORDS", "BYTES", "DURABILITY",
           "RETENTION");
  for (guint i = 0; i < json_array_get_length (streams); i++) {
    JsonObject *s = json_array_get_object_element (streams, i);
    g_print ("%-32s %6" G_GINT64_FORMAT " %12" G_GINT64_FORMAT " %12" G_GINT64_FORMAT
             " %-10s %" G_GINT64_FORMAT " h\n",
             member_string (s, "name"), json_object_get_int_member_with_default (s, "shards", 0),
             json_object_get_int_member_with_default (s, "records", 0),
             json_object_get_int_member_with_default (s, "bytes", 0),
             member_string (s, "durability"),
             json_object_get_int_member_with_default (s, "retentionHours", 0));
  }
  return 0;
}

static int
cmd_streams_create (const char *name, const char *shards_text)
{
  guint64 shards = 1;
  gboolean failed;
  if (shards_text && !g_ascii_string_to_unsigned (shards_text, 10, 1, 256, &shards, NULL)) {
    g_printerr ("edgectl: SHARDS is a number from 1 to 256, not %s\n", shards_text);
    return 2;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, name);
  json_builder_set_member_name (b, "shards");
  json_builder_add_int_value (b, (gint64) shards);
  json_builder_end_object (b);
  g_autoptr (JsonNode) body = json_builder_get_root (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, body);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  JsonNode *answer = request_json ("POST", "/v1/streams", text, &failed);
  g_clear_pointer (&answer, json_node_unref);
  if (failed)
    return 1;
  g_print ("created stream %s with %" G_GUINT64_FORMAT " shard%s\n", name, shards,
           shards == 1 ? "" : "s");
  return 0;
}

static int
cmd_streams_delete (const char *name)
{
  gboolean failed;
  g_autofree char *escaped = g_uri_escape_string (name, NULL, FALSE);
  g_autofree char *path = g_strconcat ("/v1/streams/", escaped, NULL);
  JsonNode *answer = request_json ("DELETE", path, NULL, &failed);
  g_clear_pointer (&answer, json_node_unref);
  if (failed)
    return 1;
  g_print ("deleted stream %s\n", name);
  return 0;
}

typedef struct {
  GMainLoop *loop;
  SoupWebsocketConnection *connection;
  int status;
  gboolean log_lines; /* a function's logs: TIME REQUEST-ID LINE */
} Tail;

/* A log line as edgectl functions logs prints it. */
static void
print_log_line (gint64 ms, const char *request_id, const char *message)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_unix_local (ms / 1000);
  g_autofree char *when = t ? g_date_time_format (t, "%H:%M:%S") : g_strdup ("?");
  g_print ("%s.%03d %-36s %s\n", when, (int) (ms % 1000),
           g_str_equal (request_id, "-") ? "" : request_id, message);
}

static void
on_tail_message (SoupWebsocketConnection *connection, gint type, GBytes *message, gpointer data)
{
  Tail *tail = data;
  g_autoptr (JsonParser) parser = json_parser_new ();
  gsize len;
  const char *text = g_bytes_get_data (message, &len);
  if (!json_parser_load_from_data (parser, text, (gssize) len, NULL) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    return;
  JsonObject *o = json_node_get_object (json_parser_get_root (parser));
  if (json_object_has_member (o, "error")) {
    JsonObject *err = json_object_get_object_member (o, "error");
    g_printerr ("edgectl: %s\n", member_string (err, "message"));
    tail->status = 1;
    return;
  }
  if (opt_json) {
    g_print ("%.*s\n", (int) len, text);
  } else if (tail->log_lines) {
    print_log_line (json_object_get_int_member_with_default (o, "arrivalTime", 0),
                    member_string (o, "partitionKey"), member_string (o, "text"));
  } else {
    gboolean has_text = json_object_has_member (o, "text");
    g_print ("%s %s %s %s\n", member_string (o, "shardId"), member_string (o, "sequenceNumber"),
             member_string (o, "partitionKey"),
             has_text ? member_string (o, "text") : member_string (o, "data"));
  }
  fflush (stdout);
}

static void
on_tail_closed (SoupWebsocketConnection *connection, gpointer data)
{
  Tail *tail = data;
  g_main_loop_quit (tail->loop);
}

static void
on_tail_connected (GObject *source, GAsyncResult *result, gpointer data)
{
  Tail *tail = data;
  g_autoptr (GError) error = NULL;
  tail->connection = soup_session_websocket_connect_finish (SOUP_SESSION (source), result, &error);
  if (tail->connection == NULL) {
    g_printerr ("edgectl: cannot subscribe at %s: %s (is edged running?)\n", base_url (),
                error->message);
    tail->status = 1;
    g_main_loop_quit (tail->loop);
    return;
  }
  soup_websocket_connection_set_max_incoming_payload_size (tail->connection, 32 * 1024 * 1024);
  g_signal_connect (tail->connection, "message", G_CALLBACK (on_tail_message), tail);
  g_signal_connect (tail->connection, "closed", G_CALLBACK (on_tail_closed), tail);
}

static gboolean
on_tail_interrupt (gpointer data)
{
  g_main_loop_quit (((Tail *) data)->loop);
  return G_SOURCE_REMOVE;
}

/* Prints @name's records as they land, from @position (query text). */
static int
tail_stream (const char *name, const char *position, gboolean log_lines)
{
  Tail tail = { g_main_loop_new (NULL, FALSE), NULL, 0, log_lines };
  g_autoptr (SoupSession) session = soup_session_new ();
  g_autofree char *escaped = g_uri_escape_string (name, NULL, FALSE);
  g_autofree char *url = g_strdup_printf ("%s/v1/streams/%s/subscribe?%s", base_url (), escaped,
                                          position);
  g_autoptr (SoupMessage) msg = soup_message_new ("GET", url);
  if (msg == NULL) {
    g_printerr ("edgectl: %s is not a valid URL\n", url);
    return 2;
  }
  if (opt_insecure)
    g_signal_connect (msg, "accept-certificate", G_CALLBACK (accept_any_certificate), NULL);
  authorize (msg);
  g_unix_signal_add (SIGINT, on_tail_interrupt, &tail);
  g_unix_signal_add (SIGTERM, on_tail_interrupt, &tail);
  soup_session_websocket_connect_async (session, msg, NULL, NULL, G_PRIORITY_DEFAULT, NULL,
                                        on_tail_connected, &tail);
  g_main_loop_run (tail.loop);
  if (tail.connection) {
    if (soup_websocket_connection_get_state (tail.connection) == SOUP_WEBSOCKET_STATE_OPEN)
      soup_websocket_connection_close (tail.connection, 1000, NULL);
    g_object_unref (tail.connection);
  }
  g_main_loop_unref (tail.loop);
  return tail.status;
}

static int
cmd_streams_tail (const char *name)
{
  return tail_stream (name, opt_from_start ? "position=TRIM_HORIZON" : "position=LATEST", FALSE);
}

static int
cmd_streams (int argc, char **argv)
{
  const char *verb = argc > 2 ? argv[2] : "list";
  if (g_str_equal (verb, "list") && argc <= 3)
    return cmd_streams_list ();
  if (g_str_equal (verb, "create") && (argc == 4 || argc == 5))
    return cmd_streams_create (argv[3], argc == 5 ? argv[4] : NULL);
  if (g_str_equal (verb, "delete") && argc == 4)
    return cmd_streams_delete (argv[3]);
  if (g_str_equal (verb, "tail") && argc == 4)
    return cmd_streams_tail (argv[3]);
  g_printerr ("edgectl: usage: edgectl streams [list | create NAME [SHARDS] | delete NAME | "
              "tail NAME [--from-start]]\n");
  return 2;
}

static int
cmd_functions_list (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/functions");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonArray *functions = json_object_get_array_member (json_node_get_object (root), "functions");
  g_print ("%-20s %5s %8s %7s %8s %7s  %s\n", "NAME", "ENVS", "RUNNING", "QUEUED", "TIMEOUT",
           "MEMORY", "BOOTSTRAP");
  for (guint i = 0; i < json_array_get_length (functions); i++) {
    JsonObject *f = json_array_get_object_element (functions, i);
    g_print ("%-20s %5" G_GINT64_FORMAT " %8" G_GINT64_FORMAT " %7" G_GINT64_FORMAT
             " %7.1fs %5" G_GINT64_FORMAT "MB  %s\n",
             member_string (f, "name"), json_object_get_int_member_with_default (f, "environments", 0),
             json_object_get_int_member_with_default (f, "running", 0),
             json_object_get_int_member_with_default (f, "queued", 0),
             json_object_get_int_member_with_default (f, "timeout_ms", 0) / 1000.0,
             json_object_get_int_member_with_default (f, "memory_mb", 0),
             member_string (f, "bootstrap"));
  }
  return 0;
}

static int
cmd_functions_invoke (const char *name, const char *payload)
{
  gboolean failed;
  g_autofree char *escaped = g_uri_escape_string (name, NULL, FALSE);
  g_autofree char *path = g_strdup_printf ("/2015-03-31/functions/%s/invocations", escaped);
  g_autoptr (JsonNode) answer = request_json ("POST", path, payload ? payload : "{}", &failed);
  if (failed)
    return 1;
  if (answer)
    print_json (answer);
  return 0;
}

static int
cmd_functions_logs (const char *name)
{
  g_autofree char *escaped = g_uri_escape_string (name, NULL, FALSE);
  g_autofree char *path = g_strdup_printf ("/v1/functions/%s/logs", escaped);
  g_autoptr (JsonNode) root = get_json (path);
  if (root == NULL)
    return 1;
  JsonObject *o = json_node_get_object (root);
  JsonArray *events = json_object_get_array_member (o, "events");
  const char *last = NULL;
  for (guint i = 0; i < json_array_get_length (events); i++) {
    JsonObject *e = json_array_get_object_element (events, i);
    if (opt_json) {
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      json_generator_set_root (gen, json_array_get_element (events, i));
      g_autofree char *text = json_generator_to_data (gen, NULL);
      g_print ("%s\n", text);
    } else {
      const char *id = member_string (e, "requestId");
      print_log_line (json_object_get_int_member_with_default (e, "timestamp", 0),
                      *id ? id : "-", member_string (e, "message"));
    }
    last = member_string (e, "sequenceNumber");
  }
  fflush (stdout);
  if (!opt_follow)
    return 0;
  /* Then what comes after the last line shown. */
  g_autofree char *position =
      last ? g_strdup_printf ("shard=shardId-000000000000&position=AFTER_SEQUENCE_NUMBER&"
                              "sequence=%s", last)
           : g_strdup ("position=TRIM_HORIZON");
  return tail_stream (member_string (o, "stream"), position, TRUE);
}

static int
cmd_functions (int argc, char **argv)
{
  const char *verb = argc > 2 ? argv[2] : "list";
  if (g_str_equal (verb, "list") && argc <= 3)
    return cmd_functions_list ();
  if (g_str_equal (verb, "invoke") && (argc == 4 || argc == 5))
    return cmd_functions_invoke (argv[3], argc == 5 ? argv[4] : NULL);
  if (g_str_equal (verb, "logs") && argc == 4)
    return cmd_functions_logs (argv[3]);
  g_printerr ("edgectl: usage: edgectl functions [list | invoke NAME [JSON] | "
              "logs NAME [--follow]]\n");
  return 2;
}

static int
cmd_mqtt_status (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/mqtt");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonObject *o = json_node_get_object (root);
  JsonArray *brokers = json_object_get_array_member (o, "brokers");
  g_print ("%-16s %-24s %-13s %10s %10s %8s %10s  %s\n", "BROKER", "ADDRESS", "STATE",
           "IN", "OUT", "PENDING", "RECONNECTS", "LAST ERROR");
  for (guint i = 0; i < json_array_get_length (brokers); i++) {
    JsonObject *b = json_array_get_object_element (brokers, i);
    g_autofree char *address = g_strdup_printf (
        "%s:%" G_GINT64_FORMAT "%s", member_string (b, "host"),
        json_object_get_int_member_with_default (b, "port", 0),
        json_object_get_boolean_member_with_default (b, "tls", FALSE) ? " tls" : "");
    JsonNode *error = json_object_get_member (b, "last_error");
    const char *error_text = error && JSON_NODE_HOLDS_VALUE (error) ? json_node_get_string (error) : "";
    g_print ("%-16s %-24s %-13s %10" G_GINT64_FORMAT " %10" G_GINT64_FORMAT " %8" G_GINT64_FORMAT
             " %10" G_GINT64_FORMAT "  %s\n",
             member_string (b, "name"), address,
             json_object_get_boolean_member_with_default (b, "connected", FALSE) ? "connected"
                                                                                 : "disconnected",
             json_object_get_int_member_with_default (b, "messages_in", 0),
             json_object_get_int_member_with_default (b, "messages_out", 0),
             json_object_get_int_member_with_default (b, "pending", 0),
             json_object_get_int_member_with_default (b, "reconnects", 0),
             error_text);
  }
  JsonArray *subs = json_object_get_array_member (o, "subscriptions");
  if (json_array_get_length (subs) > 0)
    g_print ("\n%-16s %-32s %-20s %4s %10s\n", "BROKER", "SUBSCRIPTION", "STREAM", "QOS", "STORED");
  for (guint i = 0; i < json_array_get_length (subs); i++) {
    JsonObject *sub = json_array_get_object_element (subs, i);
    g_print ("%-16s %-32s %-20s %4" G_GINT64_FORMAT " %10" G_GINT64_FORMAT "\n",
             member_string (sub, "broker"), member_string (sub, "topic"),
             member_string (sub, "stream"), json_object_get_int_member_with_default (sub, "qos", 0),
             json_object_get_int_member_with_default (sub, "stored", 0));
  }
  JsonArray *rules = json_object_get_array_member (o, "rules");
  if (json_array_get_length (rules) > 0)
    g_print ("\n%-20s %8s %7s  %s\n", "RULE", "MATCHES", "ERRORS", "SQL");
  for (guint i = 0; i < json_array_get_length (rules); i++) {
    JsonObject *r = json_array_get_object_element (rules, i);
    g_print ("%-20s %8" G_GINT64_FORMAT " %7" G_GINT64_FORMAT "  %s\n", member_string (r, "name"),
             json_object_get_int_member_with_default (r, "matches", 0),
             json_object_get_int_member_with_default (r, "errors", 0), member_string (r, "sql"));
  }
  return 0;
}

static int
cmd_mqtt_publish (const char *topic, const char *message, const char *broker)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  if (broker) {
    json_builder_set_member_name (b, "broker");
    json_builder_add_string_value (b, broker);
  }
  json_builder_set_member_name (b, "topic");
  json_builder_add_string_value (b, topic);
  json_builder_set_member_name (b, "payload");
  json_builder_add_string_value (b, message);
  json_builder_set_member_name (b, "qos");
  json_builder_add_int_value (b, 1);
  json_builder_end_object (b);
  g_autoptr (JsonNode) body = json_builder_get_root (b);
  g_autofree char *text = json_to_string (body, FALSE);
  gboolean failed;
  JsonNode *answer = request_json ("POST", "/v1/mqtt/publish", text, &failed); /* 204: none */
  if (answer)
    json_node_unref (answer);
  return failed ? 1 : 0;
}

static int
cmd_mqtt (int argc, char **argv)
{
  const char *verb = argc > 2 ? argv[2] : "status";
  if (g_str_equal (verb, "status") && argc <= 3)
    return cmd_mqtt_status ();
  if (g_str_equal (verb, "publish") && (argc == 5 || argc == 6))
    return cmd_mqtt_publish (argv[3], argv[4], argc == 6 ? argv[5] : NULL);
  g_printerr ("edgectl: usage: edgectl mqtt [status | publish TOPIC MESSAGE [BROKER]]\n");
  return 2;
}

static int
cmd_keys_list (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/keys");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonArray *keys = json_object_get_array_member (json_node_get_object (root), "keys");
  g_print ("%-16s %-20s %-12s %-10s %-5s %10s  %s\n", "ID", "NAME", "PREFIX", "PLAN", "ADMIN",
           "TODAY", "CREATED");
  for (guint i = 0; i < json_array_get_length (keys); i++) {
    JsonObject *k = json_array_get_object_element (keys, i);
    const char *plan = member_string (k, "plan");
    g_print ("%-16s %-20s %-12s %-10s %-5s %10" G_GINT64_FORMAT "  %s\n", member_string (k, "id"),
             member_string (k, "name"), member_string (k, "prefix"), plan[0] ? plan : "-",
             json_object_get_boolean_member_with_default (k, "admin", FALSE) ? "yes" : "no",
             json_object_get_int_member_with_default (k, "requestsToday", 0),
             member_string (k, "created"));
  }
  return 0;
}

static int
cmd_keys_create (const char *name, const char *plan)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, name);
  if (plan) {
    json_builder_set_member_name (b, "plan");
    json_builder_add_string_value (b, plan);
  }
  json_builder_set_member_name (b, "admin");
  json_builder_add_boolean_value (b, opt_admin);
  json_builder_end_object (b);
  g_autoptr (JsonNode) body = json_builder_get_root (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, body);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  gboolean failed;
  g_autoptr (JsonNode) root = request_json ("POST", "/v1/keys", text, &failed);
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonObject *k = json_node_get_object (root);
  g_printerr ("API key %s (%s): keep it now, it is not shown again\n", member_string (k, "id"),
              member_string (k, "name"));
  g_print ("%s\n", member_string (k, "key"));
  return 0;
}

static int
cmd_keys (int argc, char **argv)
{
  if (argc == 2 || (argc == 3 && g_str_equal (argv[2], "list")))
    return cmd_keys_list ();
  if ((argc == 4 || argc == 5) && g_str_equal (argv[2], "create"))
    return cmd_keys_create (argv[3], argc == 5 ? argv[4] : NULL);
  if (argc == 4 && g_str_equal (argv[2], "delete")) {
    g_autofree char *escaped = g_uri_escape_string (argv[3], NULL, FALSE);
    g_autofree char *path = g_strconcat ("/v1/keys/", escaped, NULL);
    gboolean failed;
    JsonNode *answer = request_json ("DELETE", path, NULL, &failed);
    if (answer)
      json_node_unref (answer);
    return failed ? 1 : 0;
  }
  g_printerr ("edgectl: usage: edgectl keys [list | create NAME [PLAN] [--admin] | delete ID]\n");
  return 2;
}

static int
cmd_cameras_list (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/cameras");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonArray *cameras = json_object_get_array_member (json_node_get_object (root), "cameras");
  g_print ("%-20s %-9s %-14s %10s %12s  %s\n", "NAME", "STATE", "VIDEO", "FRAGMENTS", "BYTES",
           "SOURCE");
  for (guint i = 0; i < json_array_get_length (cameras); i++) {
    JsonObject *c = json_array_get_object_element (cameras, i);
    JsonObject *recorded = json_object_get_object_member (c, "recorded");
    g_autofree char *video = NULL;
    if (json_object_get_string_member_with_default (c, "codec", NULL))
      video = g_strdup_printf ("%s %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT,
                               json_object_get_string_member (c, "codec"),
                               json_object_get_int_member_with_default (c, "width", 0),
                               json_object_get_int_member_with_default (c, "height", 0));
    g_print ("%-20s %-9s %-14s %10" G_GINT64_FORMAT " %12" G_GINT64_FORMAT "  %s\n",
             member_string (c, "name"), member_string (c, "state"), video ? video : "-",
             json_object_get_int_member_with_default (recorded, "fragments", 0),
             json_object_get_int_member_with_default (recorded, "bytes", 0),
             member_string (c, "source"));
    const char *error = json_object_get_string_member_with_default (c, "error", NULL);
    if (error)
      g_print ("%-20s   %s\n", "", error);
  }
  return 0;
}

static int
cmd_cameras_add (const char *name, const char *source)
{
  gboolean failed;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, name);
  json_builder_set_member_name (b, "source");
  json_builder_add_string_value (b, source);
  json_builder_end_object (b);
  g_autoptr (JsonNode) body = json_builder_get_root (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, body);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  JsonNode *answer = request_json ("POST", "/v1/cameras", text, &failed);
  g_clear_pointer (&answer, json_node_unref);
  if (failed)
    return 1;
  g_print ("recording camera %s from %s\n", name, source);
  return 0;
}

static int
cmd_cameras_remove (const char *name)
{
  gboolean failed;
  g_autofree char *escaped = g_uri_escape_string (name, NULL, FALSE);
  g_autofree char *path = g_strconcat ("/v1/cameras/", escaped, NULL);
  JsonNode *answer = request_json ("DELETE", path, NULL, &failed);
  g_clear_pointer (&answer, json_node_unref);
  if (failed)
    return 1;
  g_print ("removed camera %s and its recordings\n", name);
  return 0;
}

static int
cmd_cameras (int argc, char **argv)
{
  if (argc == 2 || (argc == 3 && g_str_equal (argv[2], "list")))
    return cmd_cameras_list ();
  if (argc == 5 && g_str_equal (argv[2], "add"))
    return cmd_cameras_add (argv[3], argv[4]);
  if (argc == 4 && g_str_equal (argv[2], "remove"))
    return cmd_cameras_remove (argv[3]);
  g_printerr ("edgectl: usage: edgectl cameras [list | add NAME SOURCE | remove NAME]\n");
  return 2;
}

static int
cmd_events (const char *camera)
{
  g_autofree char *escaped = camera ? g_uri_escape_string (camera, NULL, FALSE) : NULL;
  g_autofree char *path = g_strdup_printf ("/v1/events?limit=50%s%s", camera ? "&camera=" : "",
                                           camera ? escaped : "");
  g_autoptr (JsonNode) root = get_json (path);
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonArray *events = json_object_get_array_member (json_node_get_object (root), "events");
  g_print ("%-24s %-16s %-8s %7s %9s  %s\n", "STARTED", "CAMERA", "TYPE", "SCORE", "LASTED",
           "ID");
  for (guint i = 0; i < json_array_get_length (events); i++) {
    JsonObject *e = json_array_get_object_element (events, i);
    gint64 start = json_object_get_int_member_with_default (e, "start_ms", 0);
    gint64 end = json_object_get_int_member_with_default (e, "end_ms", 0);
    g_autoptr (GDateTime) t = g_date_time_new_from_unix_local (start / 1000);
    g_autofree char *when = t ? g_date_time_format (t, "%Y-%m-%d %H:%M:%S") : g_strdup ("-");
    g_autofree char *lasted = end ? g_strdup_printf ("%.1fs", (end - start) / 1000.0)
                                  : g_strdup ("going on");
    g_print ("%-24s %-16s %-8s %7.3f %9s  %s\n", when, member_string (e, "camera"),
             member_string (e, "type"), json_object_get_double_member_with_default (e, "score", 0),
             lasted, member_string (e, "id"));
  }
  return 0;
}

static int
cmd_delivery (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/delivery");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonArray *list = json_object_get_array_member (json_node_get_object (root), "delivery_streams");
  g_print ("%-20s %-16s %-9s %-28s %8s %9s %11s %7s  %s\n", "NAME", "STREAM", "TO", "TARGET",
           "LAG", "BUFFERED", "DELIVERED", "ERRORS", "LAST ERROR");
  for (guint i = 0; i < json_array_get_length (list); i++) {
    JsonObject *d = json_array_get_object_element (list, i);
    g_print ("%-20s %-16s %-9s %-28s %8" G_GINT64_FORMAT " %9" G_GINT64_FORMAT
             " %11" G_GINT64_FORMAT " %7" G_GINT64_FORMAT "  %s\n",
             member_string (d, "name"), member_string (d, "stream"),
             member_string (d, "destination"), member_string (d, "target"),
             json_object_get_int_member_with_default (d, "lag_records", 0),
             json_object_get_int_member_with_default (d, "buffered_records", 0),
             json_object_get_int_member_with_default (d, "delivered_records", 0),
             json_object_get_int_member_with_default (d, "error_records", 0),
             json_object_has_member (d, "last_error") ? member_string (d, "last_error") : "");
  }
  return 0;
}

static int
cmd_forwarders (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/forwarders");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonArray *list = json_object_get_array_member (json_node_get_object (root), "forwarders");
  g_print ("%-20s %-16s %-8s %-36s %8s %10s %7s %11s %7s  %s\n", "NAME", "STREAM", "TO",
           "TARGET", "LAG", "LAG BYTES", "LAG AGE", "FORWARDED", "SKIPPED", "LAST ERROR");
  for (guint i = 0; i < json_array_get_length (list); i++) {
    JsonObject *f = json_array_get_object_element (list, i);
    gboolean kinesis = g_str_equal (member_string (f, "destination"), "kinesis");
    g_autofree char *target =
        kinesis ? g_strdup_printf ("%s/%s", member_string (f, "endpoint"),
                                   member_string (f, "target_stream"))
                : g_strdup (member_string (f, "subject"));
    g_autofree char *age = g_strdup_printf (
        "%" G_GINT64_FORMAT "s", json_object_get_int_member_with_default (f, "lag_seconds", 0));
    g_print ("%-20s %-16s %-8s %-36s %8" G_GINT64_FORMAT " %10" G_GINT64_FORMAT
             " %7s %11" G_GINT64_FORMAT " %7" G_GINT64_FORMAT "  %s\n",
             member_string (f, "name"), member_string (f, "stream"),
             member_string (f, "destination"), target,
             json_object_get_int_member_with_default (f, "lag_records", 0),
             json_object_get_int_member_with_default (f, "lag_bytes", 0), age,
             json_object_get_int_member_with_default (f, "forwarded_records", 0),
             json_object_get_int_member_with_default (f, "skipped_records", 0),
             json_object_has_member (f, "last_error") ? member_string (f, "last_error") : "");
  }
  return 0;
}

static int
cmd_analytics (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/analytics");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonArray *list = json_object_get_array_member (json_node_get_object (root), "applications");
  g_print ("%-20s %-16s %-16s %-9s %7s %8s %10s %8s %8s %9s  %s\n", "NAME", "STREAM", "OUTPUT",
           "WINDOW", "LENGTH", "LAG", "RECORDS", "WINDOWS", "RESULTS", "ANOMALIES", "LAST ERROR");
  for (guint i = 0; i < json_array_get_length (list); i++) {
    JsonObject *a = json_array_get_object_element (list, i);
    gint64 ms = json_object_has_member (a, "gap_ms")
                    ? json_object_get_int_member (a, "gap_ms")
                    : json_object_get_int_member_with_default (a, "size_ms", 0);
    g_autofree char *length = ms % 1000 ? g_strdup_printf ("%" G_GINT64_FORMAT "ms", ms)
                                        : g_strdup_printf ("%" G_GINT64_FORMAT "s", ms / 1000);
    g_print ("%-20s %-16s %-16s %-9s %7s %8" G_GINT64_FORMAT " %10" G_GINT64_FORMAT
             " %8" G_GINT64_FORMAT " %8" G_GINT64_FORMAT " %9" G_GINT64_FORMAT "  %s\n",
             member_string (a, "name"), member_string (a, "stream"), member_string (a, "output"),
             member_string (a, "window"), length,
             json_object_get_int_member_with_default (a, "lag_records", 0),
             json_object_get_int_member_with_default (a, "records", 0),
             json_object_get_int_member_with_default (a, "windows", 0),
             json_object_get_int_member_with_default (a, "results", 0),
             json_object_get_int_member_with_default (a, "anomalies", 0),
             json_object_has_member (a, "last_error") ? member_string (a, "last_error") : "");
  }
  return 0;
}

static int
cmd_uploads (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/uploads");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonArray *list = json_object_get_array_member (json_node_get_object (root), "video_uploads");
  g_print ("%-20s %-16s %-36s %8s %10s %7s %9s %8s %8s  %s\n", "NAME", "CAMERA", "TARGET", "LAG",
           "LAG BYTES", "LAG AGE", "UPLOADED", "SKIPPED", "DELETED", "LAST ERROR");
  for (guint i = 0; i < json_array_get_length (list); i++) {
    JsonObject *u = json_array_get_object_element (list, i);
    g_autofree char *target = g_strdup_printf ("%s/%s/%s", member_string (u, "endpoint"),
                                               member_string (u, "bucket"),
                                               member_string (u, "prefix"));
    g_autofree char *age = g_strdup_printf (
        "%" G_GINT64_FORMAT "s", json_object_get_int_member_with_default (u, "lag_seconds", 0));
    g_print ("%-20s %-16s %-36s %8" G_GINT64_FORMAT " %10" G_GINT64_FORMAT " %7s %9" G_GINT64_FORMAT
             " %8" G_GINT64_FORMAT " %8" G_GINT64_FORMAT "  %s\n",
             member_string (u, "name"), member_string (u, "camera"), target,
             json_object_get_int_member_with_default (u, "lag_fragments", 0),
             json_object_get_int_member_with_default (u, "lag_bytes", 0), age,
             json_object_get_int_member_with_default (u, "uploaded_fragments", 0),
             json_object_get_int_member_with_default (u, "skipped_fragments", 0),
             json_object_get_int_member_with_default (u, "deleted_objects", 0),
             json_object_has_member (u, "last_error") ? member_string (u, "last_error") : "");
  }
  return 0;
}

static int
cmd_hw (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/hw");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonObject *o = json_node_get_object (root);
  JsonObject *board = json_object_get_object_member (o, "board");
  JsonObject *choice = json_object_get_object_member (o, "choice");
  g_print ("board      %s, %" G_GINT64_FORMAT " x %s (%s)\n", member_string (board, "model"),
           json_object_get_int_member_with_default (board, "cpus", 0),
           member_string (board, "cpu_model"), member_string (board, "arch"));
  g_print ("profile    %s\n", member_string (choice, "profile"));
  g_print ("encoder    %s\n", member_string (choice, "encoder"));
  g_print ("decoders   %s, %s\n", member_string (choice, "decoder_h264"),
           member_string (choice, "decoder_h265"));
  JsonArray *reasons = json_object_get_array_member (choice, "reasons");
  for (guint i = 0; i < json_array_get_length (reasons); i++)
    g_print ("  - %s\n", json_array_get_string_element (reasons, i));
  return 0;
}

static int
cmd_gpio_list (void)
{
  g_autoptr (JsonNode) root = get_json ("/v1/gpio");
  if (root == NULL)
    return 1;
  if (opt_json) {
    print_json (root);
    return 0;
  }
  JsonArray *lines = json_object_get_array_member (json_node_get_object (root), "lines");
  g_print ("%-20s %-9s %-24s %-6s %5s %7s  %s\n", "NAME", "DIRECTION", "CHIP", "LINE", "VALUE",
           "EVENTS", "STREAM");
  for (guint i = 0; i < json_array_get_length (lines); i++) {
    JsonObject *l = json_array_get_object_element (lines, i);
    JsonNode *value = json_object_get_member (l, "value");
    g_autofree char *shown = value && JSON_NODE_HOLDS_VALUE (value)
                                 ? g_strdup_printf ("%" G_GINT64_FORMAT, json_node_get_int (value))
                                 : g_strdup ("-");
    g_print ("%-20s %-9s %-24s %-6s %5s %7" G_GINT64_FORMAT "  %s%s%s\n",
             member_string (l, "name"), member_string (l, "direction"), member_string (l, "chip"),
             member_string (l, "line"), shown, json_object_get_int_member_with_default (l, "events", 0),
             member_string (l, "stream"), json_object_has_member (l, "error") ? "  error: " : "",
             json_object_has_member (l, "error") ? member_string (l, "error") : "");
  }
  return 0;
}

static int
cmd_gpio_set (const char *name, const char *value, const char *pulse)
{
  guint64 v, ms = 0;
  if (!g_ascii_string_to_unsigned (value, 10, 0, 1, &v, NULL) ||
      (pulse && !g_ascii_string_to_unsigned (pulse, 10, 1, 60000, &ms, NULL))) {
    g_printerr ("edgectl: usage: edgectl gpio set NAME 0|1 [PULSE_MS (1 to 60000)]\n");
    return 2;
  }
  g_autofree char *escaped = g_uri_escape_string (name, NULL, FALSE);
  g_autofree char *path = g_strdup_printf ("/v1/gpio/%s", escaped);
  g_autofree char *body = pulse ? g_strdup_printf ("{\"value\": %u, \"pulse_ms\": %u}", (guint) v,
                                                   (guint) ms)
                                : g_strdup_printf ("{\"value\": %u}", (guint) v);
  gboolean failed;
  g_autoptr (JsonNode) answer = request_json ("PUT", path, body, &failed);
  if (answer == NULL)
    return 1;
  g_print ("%s: %" G_GINT64_FORMAT "\n", name,
           json_object_get_int_member_with_default (json_node_get_object (answer), "value", -1));
  return 0;
}

static int
cmd_gpio (int argc, char **argv)
{
  const char *verb = argc > 2 ? argv[2] : "list";
  if (g_str_equal (verb, "list") && argc <= 3)
    return cmd_gpio_list ();
  if (g_str_equal (verb, "set") && (argc == 5 || argc == 6))
    return cmd_gpio_set (argv[3], argv[4], argc == 6 ? argv[5] : NULL);
  g_printerr ("edgectl: usage: edgectl gpio [list | set NAME 0|1 [PULSE_MS]]\n");
  return 2;
}

static int
cmd_check_config (const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeConfig) config = edge_config_load_file (path, &error);
  if (config == NULL) {
    g_printerr ("%s\n", error->message);
    return 2;
  }
  g_print ("%s: valid\n", path);
  return 0;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) context = g_option_context_new ("COMMAND [ARGS]");
  g_autoptr (GError) error = NULL;
  int status;

  g_option_context_add_main_entries (context, options, NULL);
  g_option_context_set_summary (context, "Commands:\n"
                                         "  status              what the daemon runs, and its health\n"
                                         "  streams [list]      data streams, records and bytes held\n"
                                         "  streams create NAME [SHARDS]\n"
                                         "  streams delete NAME\n"
                                         "  streams tail NAME   print records as they land\n"
                                         "  cameras [list]      cameras, their state and recordings\n"
                                         "  cameras add NAME SOURCE\n"
                                         "  cameras remove NAME\n"
                                         "  functions [list]    functions, environments, queues\n"
                                         "  functions invoke NAME [JSON]\n"
                                         "  functions logs NAME [--follow]\n"
                                         "  events [CAMERA]     the newest detection events\n"
                                         "  mqtt [status]       brokers, subscriptions, topic rules\n"
                                         "  mqtt publish TOPIC MESSAGE [BROKER]\n"
                                         "  keys [list]         API keys and usage plans\n"
                                         "  keys create NAME [PLAN] [--admin]\n"
                                         "  keys delete ID\n"
                                         "  delivery            delivery streams: lag, delivered, errors\n"
                                         "  forwarders          forwarders upstream: lag, forwarded\n"
                                         "  analytics           analytics applications: windows, results\n"
                                         "  uploads             video uploads to S3: lag, uploaded\n"
                                         "  hw                  the board's profile, and why\n"
                                         "  gpio [list]         GPIO lines and their levels\n"
                                         "  gpio set NAME 0|1 [PULSE_MS]\n"
                                         "  check-config FILE   validate a configuration file\n"
                                         "  version             print edgectl's version");
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("edgectl: %s (try --help)\n", error->message);
    return 2;
  }
  if (opt_api_key_file) {
    g_autoptr (GError) key_error = NULL;
    if (!g_file_get_contents (opt_api_key_file, &api_key, NULL, &key_error)) {
      g_printerr ("edgectl: %s\n", key_error->message);
      return 2;
    }
    g_strstrip (api_key);
  } else if (g_getenv ("EDGED_API_KEY") && g_getenv ("EDGED_API_KEY")[0]) {
    api_key = g_strdup (g_getenv ("EDGED_API_KEY"));
  }
  if (argc < 2) {
    g_autofree char *help = g_option_context_get_help (context, TRUE, NULL);
    g_printerr ("%s", help);
    return 2;
  }
  if (g_str_equal (argv[1], "status") && argc == 2)
    status = cmd_status ();
  else if (g_str_equal (argv[1], "streams"))
    status = cmd_streams (argc, argv);
  else if (g_str_equal (argv[1], "cameras"))
    status = cmd_cameras (argc, argv);
  else if (g_str_equal (argv[1], "functions"))
    status = cmd_functions (argc, argv);
  else if (g_str_equal (argv[1], "mqtt"))
    status = cmd_mqtt (argc, argv);
  else if (g_str_equal (argv[1], "keys"))
    status = cmd_keys (argc, argv);
  else if (g_str_equal (argv[1], "delivery") && argc == 2)
    status = cmd_delivery ();
  else if (g_str_equal (argv[1], "forwarders") && argc == 2)
    status = cmd_forwarders ();
  else if (g_str_equal (argv[1], "analytics") && argc == 2)
    status = cmd_analytics ();
  else if (g_str_equal (argv[1], "uploads") && argc == 2)
    status = cmd_uploads ();
  else if (g_str_equal (argv[1], "hw") && argc == 2)
    status = cmd_hw ();
  else if (g_str_equal (argv[1], "gpio"))
    status = cmd_gpio (argc, argv);
  else if (g_str_equal (argv[1], "events") && argc <= 3)
    status = cmd_events (argc == 3 ? argv[2] : NULL);
  else if (g_str_equal (argv[1], "check-config") && argc == 3)
    status = cmd_check_config (argv[2]);
  else if (g_str_equal (argv[1], "version") && argc == 2) {
    g_print ("edgectl %s\n", EDGED_VERSION);
    status = 0;
  } else {
    g_printerr ("edgectl: unknown command or wrong arguments: %s (try --help)\n", argv[1]);
    status = 2;
  }
  g_free (opt_url);
  g_free (opt_api_key_file);
  g_free (api_key);
  return status;
}
