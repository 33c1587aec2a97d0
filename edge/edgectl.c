/* edgectl: a command-line client for a running edged, over its REST API.
 *
 *   edgectl [--url URL] status [--json]
 *   edgectl check-config FILE
 *   edgectl version
 *
 * The daemon's address comes from --url, else $EDGED_URL, else
 * http://127.0.0.1:8080. Exit status: 0 success, 1 the daemon could not be
 * reached or answered an error, 2 bad usage or an invalid configuration.
 */
#define G_LOG_DOMAIN "edgectl"

#include "edge-core.h"
#include "edged-version.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <stdio.h>

#define RESPONSE_MAX_BYTES (16 * 1024 * 1024)

static char *opt_url;
static gboolean opt_json;
static gboolean opt_insecure;

static const GOptionEntry options[] = {
  { "url", 'u', 0, G_OPTION_ARG_STRING, &opt_url,
    "edged's base URL (default: $EDGED_URL or http://127.0.0.1:8080)", "URL" },
  { "json", 'j', 0, G_OPTION_ARG_NONE, &opt_json, "Print the raw JSON answer", NULL },
  { "insecure", 'k', 0, G_OPTION_ARG_NONE, &opt_insecure,
    "Accept any TLS certificate (self-signed boxes)", NULL },
  G_OPTION_ENTRY_NULL,
};

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

/* GETs @path and parses the JSON answer. Prints its own error and returns
 * NULL on failure. (transfer full) */
static JsonNode *
get_json (const char *path)
{
  g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", 10, NULL);
  g_autofree char *url = g_strconcat (base_url (), path, NULL);
  g_autoptr (SoupMessage) msg = soup_message_new ("GET", url);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) body = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  gsize len;

  if (msg == NULL) {
    g_printerr ("edgectl: %s is not a valid URL\n", url);
    return NULL;
  }
  if (opt_insecure)
    g_signal_connect (msg, "accept-certificate", G_CALLBACK (accept_any_certificate), NULL);
  body = soup_session_send_and_read (session, msg, NULL, &error);
  if (body == NULL) {
    g_printerr ("edgectl: cannot reach edged at %s: %s (is edged running?)\n", base_url (),
                error->message);
    return NULL;
  }
  const char *data = g_bytes_get_data (body, &len);
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
    g_printerr ("edgectl: %s: %u %s\n", path, soup_message_get_status (msg),
                err && json_object_has_member (err, "message")
                    ? json_object_get_string_member (err, "message")
                    : soup_message_get_reason_phrase (msg));
    return NULL;
  }
  return json_parser_steal_root (parser);
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
                                         "  check-config FILE   validate a configuration file\n"
                                         "  version             print edgectl's version");
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("edgectl: %s (try --help)\n", error->message);
    return 2;
  }
  if (argc < 2) {
    g_autofree char *help = g_option_context_get_help (context, TRUE, NULL);
    g_printerr ("%s", help);
    return 2;
  }
  if (g_str_equal (argv[1], "status") && argc == 2)
    status = cmd_status ();
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
  return status;
}
