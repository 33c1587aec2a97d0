/* Configuration: valid files, and every kind of invalid one with the exact
 * file:line message a user sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "edge-core.h"

#include <glib/gstdio.h>

static EdgeConfig *
load (const char *yaml, GError **error)
{
  return edge_config_load_data (yaml, strlen (yaml), "edged.yaml", "/etc/edged", error);
}

static void
test_empty_file_gives_defaults (void **state)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeConfig) c = load ("", &error);
  assert_non_null (c);
  assert_string_equal (c->gateway_listen, "127.0.0.1:8080");
  assert_string_equal (c->log_level, "info");
  assert_string_equal (c->gateway_tls_cert, "");
  assert_int_equal (c->gateway_max_body_bytes, 16 * 1024 * 1024);
  assert_true (c->gateway_access_log);
  /* Relative to the config file's directory. */
  assert_string_equal (c->data_dir, "/etc/edged/edged-data");

  g_autoptr (EdgeConfig) comments = load ("# nothing here\n\n# at all\n", &error);
  assert_non_null (comments);
  assert_string_equal (comments->log_level, "info");
}

static void
test_full_file (void **state)
{
  static const char yaml[] = "data_dir: /var/lib/edged\n"
                             "log:\n"
                             "  level: debug\n"
                             "gateway:\n"
                             "  listen: \"[::1]:9443\"\n"
                             "  tls:\n"
                             "    cert: certs/edged.pem\n"
                             "    key: /etc/ssl/edged.key\n"
                             "  max_body_bytes: 4MiB\n"
                             "  max_connections: 64\n"
                             "  access_log: off\n"
                             "  websocket:\n"
                             "    max_buffered_bytes: 512KiB\n"
                             "    max_message_bytes: 4096\n"
                             "    stall_timeout: 1500ms\n"
                             "keys:\n"
                             "  master_key_file: ~\n";
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeConfig) c = load (yaml, &error);
  assert_null (error);
  assert_non_null (c);
  assert_string_equal (c->data_dir, "/var/lib/edged");
  assert_string_equal (c->log_level, "debug");
  assert_string_equal (c->gateway_listen, "[::1]:9443");
  assert_string_equal (c->gateway_tls_cert, "/etc/edged/certs/edged.pem");
  assert_string_equal (c->gateway_tls_key, "/etc/ssl/edged.key");
  assert_int_equal (c->gateway_max_body_bytes, 4 * 1024 * 1024);
  assert_int_equal (c->gateway_max_connections, 64);
  assert_false (c->gateway_access_log);
  assert_int_equal (c->gateway_ws_max_buffered_bytes, 512 * 1024);
  assert_int_equal (c->gateway_ws_max_message_bytes, 4096);
  assert_int_equal (c->gateway_ws_stall_timeout_ms, 1500);
  assert_string_equal (c->keys_master_key_file, "");
  g_autofree char *key_path = edge_config_master_key_path (c);
  assert_string_equal (key_path, "/var/lib/edged/master.key");
}

typedef struct {
  const char *yaml;
  const char *message; /* the whole error message */
} InvalidCase;

static const InvalidCase invalid_cases[] = {
  { "gateway:\n  listen: \"80\"\n", "edged.yaml:2: gateway.listen: expected HOST:PORT, got \"80\"" },
  { "gateway:\n  listen: 127.0.0.1:70000\n",
    "edged.yaml:2: gateway.listen: expected HOST:PORT, got \"127.0.0.1:70000\"" },
  { "gateway:\n  listen: \"::1:8080\"\n",
    "edged.yaml:2: gateway.listen: expected HOST:PORT, got \"::1:8080\"" },
  { "gatway:\n  listen: 127.0.0.1:80\n",
    "edged.yaml:1: gatway: unknown key (did you mean \"gateway\"?)" },
  { "\ngateway:\n  lisen: 127.0.0.1:80\n",
    "edged.yaml:3: gateway.lisen: unknown key (did you mean \"gateway.listen\"?)" },
  { "sensors: []\n", "edged.yaml:1: sensors: unknown key" },
  { "stream: []\n", "edged.yaml:1: stream: unknown key (did you mean \"streams\"?)" },
  { "log:\n  level: verbose\n",
    "edged.yaml:2: log.level: expected one of error, warning, info, debug, got \"verbose\"" },
  { "gateway:\n  access_log: maybe\n",
    "edged.yaml:2: gateway.access_log: expected true or false, got \"maybe\"" },
  { "gateway:\n  max_body_bytes: 10\n",
    "edged.yaml:2: gateway.max_body_bytes: expected a size from 1KiB to 1GiB (e.g. 16MiB), "
    "got \"10\"" },
  { "gateway:\n  max_body_bytes: 12 parsecs\n",
    "edged.yaml:2: gateway.max_body_bytes: expected a size from 1KiB to 1GiB (e.g. 16MiB), "
    "got \"12 parsecs\"" },
  { "gateway:\n  max_connections: -1\n",
    "edged.yaml:2: gateway.max_connections: expected an integer from 1 to 65536, got \"-1\"" },
  { "gateway:\n  websocket:\n    stall_timeout: 15\n",
    "edged.yaml:3: gateway.websocket.stall_timeout: expected a duration from 1000ms to 3600s, got "
    "\"15\"" },
  { "log:\n  level: info\nlog:\n  level: debug\n", "edged.yaml:3: log: duplicate key" },
  { "gateway: 8080\n", "edged.yaml:1: gateway: expected a mapping of settings, got a scalar" },
  { "data_dir:\n  path: /x\n", "edged.yaml:2: data_dir: expected a single value, got a mapping" },
  { "data_dir: [a, b]\n", "edged.yaml:1: data_dir: expected a single value, got a list" },
  { "- data_dir: /x\n", "edged.yaml:1: expected a mapping of settings at the top, got a list" },
  { "gateway:\n  listen: [\n", "edged.yaml:3: did not find expected node content" },
  { "data_dir: \"\"\n", "edged.yaml: data_dir: must not be empty" },
  { "gateway:\n  tls:\n    cert: /c.pem\n",
    "edged.yaml: gateway.tls: cert and key must be given together" },
  { "log:\n  level: info\n---\nlog:\n  level: debug\n",
    "edged.yaml:3: only one YAML document is allowed" },
  { "{a: 1}: 2\n", "edged.yaml:1: expected a key name, got a mapping" },
  { "data_dir: \"/a\\0b\"\n", "edged.yaml:1: data_dir: the value contains a NUL character" },
};

static void
test_invalid_files (void **state)
{
  for (gsize i = 0; i < G_N_ELEMENTS (invalid_cases); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (EdgeConfig) c = load (invalid_cases[i].yaml, &error);
    if (c != NULL || error == NULL)
      fail_msg ("case %zu was accepted:\n%s", i, invalid_cases[i].yaml);
    if (!g_str_equal (error->message, invalid_cases[i].message))
      fail_msg ("case %zu:\n  got      %s\n  expected %s", i, error->message,
                invalid_cases[i].message);
    assert_true (error->domain == EDGE_CONFIG_ERROR);
  }
}

static void
test_not_text (void **state)
{
  g_autoptr (GError) error = NULL;
  static const char bad_utf8[] = "data_dir: \xff\xfe\n";
  g_autoptr (EdgeConfig) c = edge_config_load_data (bad_utf8, sizeof bad_utf8 - 1, "x.yaml", NULL,
                                                    &error);
  assert_null (c);
  assert_string_equal (error->message, "x.yaml: not UTF-8 text");

  g_clear_error (&error);
  gsize big = EDGE_CONFIG_MAX_FILE_BYTES + 1;
  g_autofree char *huge = g_malloc (big);
  memset (huge, '#', big);
  g_autoptr (EdgeConfig) c2 = edge_config_load_data (huge, big, "x.yaml", NULL, &error);
  assert_null (c2);
  assert_non_null (strstr (error->message, "larger than"));
}

static void
test_missing_file (void **state)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeConfig) c = edge_config_load_file ("/nonexistent/edged.yaml", &error);
  assert_null (c);
  assert_int_equal (error->code, EDGE_CONFIG_ERROR_IO);
  assert_non_null (strstr (error->message, "/nonexistent/edged.yaml"));
}

static void
test_default_yaml_round_trips (void **state)
{
  g_autoptr (EdgeConfig) defaults = edge_config_new_default ();
  g_autofree char *yaml = edge_config_to_yaml (defaults);
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeConfig) loaded = edge_config_load_data (yaml, strlen (yaml), "default.yaml", NULL,
                                                         &error);
  assert_null (error);
  g_autofree char *again = edge_config_to_yaml (loaded);
  assert_string_equal (yaml, again);

  /* A changed configuration survives too, odd characters included. */
  assert_true (edge_config_set (loaded, "data_dir", "/tmp/a \"quoted\" dir\\x\b\t\xe2\x80\xa8\xc3\xa9", &error));
  assert_true (edge_config_set (loaded, "gateway.max_body_bytes", "3000", &error));
  assert_true (edge_config_set (loaded, "gateway.websocket.stall_timeout", "90s", &error));
  g_autofree char *changed = edge_config_to_yaml (loaded);
  g_autoptr (EdgeConfig) reloaded = edge_config_load_data (changed, strlen (changed), "c.yaml",
                                                           NULL, &error);
  assert_non_null (reloaded);
  assert_string_equal (reloaded->data_dir, "/tmp/a \"quoted\" dir\\x\b\t\xe2\x80\xa8\xc3\xa9");
  assert_int_equal (reloaded->gateway_max_body_bytes, 3000);
  assert_int_equal (reloaded->gateway_ws_stall_timeout_ms, 90000);
}

static void
test_set_from_command_line (void **state)
{
  g_autoptr (EdgeConfig) c = edge_config_new_default ();
  g_autoptr (GError) error = NULL;
  assert_true (edge_config_set (c, "gateway.listen", "0.0.0.0:9000", &error));
  assert_string_equal (c->gateway_listen, "0.0.0.0:9000");
  assert_false (edge_config_set (c, "gateway.lissen", "x", &error));
  assert_string_equal (error->message,
                       "gateway.lissen: unknown key (did you mean \"gateway.listen\"?)");
  g_clear_error (&error);
  assert_false (edge_config_set (c, "log.level", "loud", &error));
  assert_string_equal (error->message,
                       "log.level: expected one of error, warning, info, debug, got \"loud\"");
}

static void
test_reference_lists_every_key (void **state)
{
  g_autofree char *md = edge_config_reference_markdown ();
  static const char *const keys[] = { "data_dir", "log.level", "gateway.listen", "gateway.tls.cert",
                                      "gateway.tls.key", "gateway.max_body_bytes",
                                      "keys.master_key_file" };
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++) {
    g_autofree char *cell = g_strdup_printf ("| `%s` |", keys[i]);
    assert_non_null (strstr (md, cell));
  }
  assert_non_null (strstr (md, "`127.0.0.1:8080`"));
}

static void
test_camera_list (void **state)
{
  (void) state;
  static const char yaml[] = "cameras:\n"
                             "  - name: door\n"
                             "    source: rtsp://user:pass@10.0.0.5/stream1\n"
                             "    rtsp_transport: udp\n"
                             "    fragment_duration: 4s\n"
                             "    retention_bytes: 10GiB\n"
                             "  - name: yard\n"
                             "    source: test://\n";
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeConfig) c = load (yaml, &error);
  assert_null (error);
  assert_int_equal (c->cameras->len, 2);
  EdgeConfigCamera *door = g_ptr_array_index (c->cameras, 0);
  EdgeConfigCamera *yard = g_ptr_array_index (c->cameras, 1);
  assert_string_equal (door->source, "rtsp://user:pass@10.0.0.5/stream1");
  assert_string_equal (door->rtsp_transport, "udp");
  assert_int_equal (door->fragment_ms, 4000);
  assert_true (door->retention_bytes == G_GINT64_CONSTANT (10) * 1024 * 1024 * 1024);
  assert_string_equal (yard->rtsp_transport, "tcp"); /* the defaults */
  assert_int_equal (yard->fragment_ms, 2000);
  assert_int_equal (yard->retention_hours, 24);
  assert_int_equal (yard->bitrate_kbps, 1500);

  static const char *const bad[][2] = {
    { "cameras:\n  - name: a\n", "edged.yaml:2: cameras[0]: source is required" },
    { "cameras:\n  - name: a\n    source: test://\n    fragment_duration: 100ms\n",
      "fragment_duration" },
    { "cameras:\n  - name: a\n    source: test://\n    rtsp_transport: http\n",
      "rtsp_transport" },
    { "cameras:\n  - name: a\n    source: test://\n  - name: a\n    source: test://\n",
      "\"a\"" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) e = NULL;
    g_autoptr (EdgeConfig) none = load (bad[i][0], &e);
    assert_null (none);
    if (strstr (e->message, bad[i][1]) == NULL)
      fail_msg ("case %u: %s lacks %s", i, e->message, bad[i][1]);
  }

  /* The embedded default is the defaults plus one test camera and, where
   * its bootstrap is found, the sample function. */
  g_autoptr (EdgeConfig) embedded = edge_config_new_embedded ("/opt/hello/bootstrap");
  assert_int_equal (embedded->cameras->len, 1);
  assert_int_equal (embedded->functions->len, 1);
  EdgeConfigFunction *hello = g_ptr_array_index (embedded->functions, 0);
  assert_string_equal (hello->name, "hello");
  assert_string_equal (hello->bootstrap, "/opt/hello/bootstrap");
  assert_int_equal (hello->timeout_ms, 3000);
  g_autoptr (EdgeConfig) bare = edge_config_new_embedded (NULL);
  assert_int_equal (bare->functions->len, 0);
  EdgeConfigCamera *demo = g_ptr_array_index (embedded->cameras, 0);
  assert_string_equal (demo->name, "demo");
  assert_string_equal (demo->source, "test://?pattern=visitor");
  assert_string_equal (demo->detect, "motion");
  /* Its events run the sample function, and go out over MQTT. */
  assert_int_equal (embedded->mappings->len, 1);
  assert_int_equal (bare->mappings->len, 0);
  assert_int_equal (embedded->mqtt_publish->len, 1);
  g_autofree char *out = edge_config_to_yaml (embedded);
  g_autoptr (EdgeConfig) again = load (out, &error);
  assert_null (error);
  assert_int_equal (again->cameras->len, 1);
  assert_int_equal (again->functions->len, 1);
  EdgeConfigCamera *reloaded = g_ptr_array_index (again->cameras, 0);
  assert_string_equal (reloaded->zones, demo->zones);
}

static void
test_stream_list (void **state)
{
  static const char yaml[] = "streams:\n"
                             "  - name: sensors\n"
                             "    shards: 4\n"
                             "    durability: batch\n"
                             "    batch_ms: 20ms\n"
                             "  - name: detections\n"
                             "    retention_hours: 168\n"
                             "    max_record_bytes: 64KiB\n";
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeConfig) c = load (yaml, &error);
  assert_null (error);
  assert_int_equal (c->streams->len, 2);
  EdgeConfigStream *a = g_ptr_array_index (c->streams, 0);
  EdgeConfigStream *b = g_ptr_array_index (c->streams, 1);
  assert_string_equal (a->name, "sensors");
  assert_int_equal (a->shards, 4);
  assert_string_equal (a->durability, "batch");
  assert_int_equal (a->batch_ms, 20);
  assert_int_equal (a->retention_hours, 24); /* defaults fill what is not said */
  assert_string_equal (b->name, "detections");
  assert_int_equal (b->shards, 1);
  assert_string_equal (b->durability, "sync");
  assert_int_equal (b->retention_hours, 168);
  assert_int_equal (b->max_record_bytes, 64 * 1024);

  /* Written out and read back, the list is the same. */
  g_autofree char *out = edge_config_to_yaml (c);
  g_autoptr (EdgeConfig) again = load (out, &error);
  assert_null (error);
  g_autofree char *out2 = edge_config_to_yaml (again);
  assert_string_equal (out, out2);
  assert_non_null (strstr (out, "streams:\n  - name: \"sensors\"\n    shards: 4\n"));

  g_autoptr (EdgeConfig) empty = load ("streams: []\n", &error);
  assert_int_equal (empty->streams->len, 0);
  g_autofree char *md = edge_config_reference_markdown ();
  assert_non_null (strstr (md, "| `streams[].name` | string | (required) |"));
  assert_false (edge_config_set (c, "streams", "x", &error));
}

static const InvalidCase invalid_list_cases[] = {
  { "streams:\n  - shards: 2\n", "edged.yaml:2: streams[0]: name is required" },
  { "streams:\n  - name: a\n    shard: 2\n",
    "edged.yaml:3: streams[0].shard: unknown key (did you mean \"shards\"?)" },
  { "streams:\n  - name: a\n  - name: a\n", "edged.yaml:3: streams[1]: name \"a\" appears twice" },
  { "streams:\n  - name: a\n    shards: 1000\n",
    "edged.yaml:3: streams[0].shards: expected an integer from 1 to 256, got \"1000\"" },
  { "streams:\n  - name: a\n    durability: maybe\n",
    "edged.yaml:3: streams[0].durability: expected one of sync, batch, none, got \"maybe\"" },
  { "streams:\n  name: a\n", "edged.yaml:2: streams: expected a list, got a mapping" },
  { "streams:\n  - a\n", "edged.yaml:2: streams[0]: expected a mapping of settings, got a scalar" },
  { "streams:\n  - name: a\n    name: b\n", "edged.yaml:3: streams[0].name: duplicate key" },
  { "streams:\n  - name: ~\n", "edged.yaml:2: streams[0]: name is required" },
};

static void
test_invalid_lists (void **state)
{
  for (gsize i = 0; i < G_N_ELEMENTS (invalid_list_cases); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (EdgeConfig) c = load (invalid_list_cases[i].yaml, &error);
    if (c != NULL)
      fail_msg ("list case %zu was accepted", i);
    if (!g_str_equal (error->message, invalid_list_cases[i].message))
      fail_msg ("list case %zu:\n  got      %s\n  expected %s", i, error->message,
                invalid_list_cases[i].message);
  }
}

static void
test_parse_listen (void **state)
{
  g_autofree char *host = NULL;
  guint16 port = 0;
  assert_true (edge_config_parse_listen ("localhost:0", &host, &port, NULL));
  assert_string_equal (host, "localhost");
  assert_int_equal (port, 0);
  g_clear_pointer (&host, g_free);
  assert_true (edge_config_parse_listen ("[fe80::1]:443", &host, &port, NULL));
  assert_string_equal (host, "fe80::1");
  assert_int_equal (port, 443);
  assert_false (edge_config_parse_listen (":8080", NULL, NULL, NULL));
  assert_false (edge_config_parse_listen ("host:", NULL, NULL, NULL));
  assert_false (edge_config_parse_listen ("a b:80", NULL, NULL, NULL));
  assert_false (edge_config_parse_listen ("[1.2.3.4]:80", NULL, NULL, NULL));
}

/* Functions, with the environment a handler gets: a mapping, checked for
 * names, Lambda's reserved names and its 4 KiB, and written back out. */
static void
test_function_list (void **state)
{
  (void) state;
  static const char yaml[] = "functions:\n"
                             "  - name: alarm\n"
                             "    bootstrap: alarm/bootstrap\n"
                             "    handler: index.handler\n"
                             "    timeout: 30s\n"
                             "    environment:\n"
                             "      GREETING: \"hi: there\"\n"
                             "      EMPTY:\n"
                             "      LANG: C\n"
                             "  - name: quiet\n"
                             "    bootstrap: /opt/quiet/bootstrap\n";
  g_autoptr (GError) error = NULL;
  g_autoptr (EdgeConfig) config = load (yaml, &error);
  assert_null (error);
  assert_int_equal (config->functions->len, 2);
  EdgeConfigFunction *alarm = g_ptr_array_index (config->functions, 0);
  assert_string_equal (alarm->bootstrap, "/etc/edged/alarm/bootstrap");
  assert_int_equal (alarm->timeout_ms, 30000);
  assert_int_equal (g_strv_length (alarm->environment), 3);
  assert_string_equal (alarm->environment[0], "GREETING=hi: there");
  assert_string_equal (alarm->environment[1], "EMPTY=");
  assert_string_equal (alarm->environment[2], "LANG=C");
  EdgeConfigFunction *quiet = g_ptr_array_index (config->functions, 1);
  assert_int_equal (g_strv_length (quiet->environment), 0);
  assert_int_equal (quiet->concurrency, 10);

  g_autofree char *out = edge_config_to_yaml (config);
  g_autoptr (EdgeConfig) again = load (out, &error);
  assert_null (error);
  EdgeConfigFunction *back = g_ptr_array_index (again->functions, 0);
  assert_int_equal (g_strv_length (back->environment), 3);
  assert_string_equal (back->environment[0], "GREETING=hi: there");

  g_autofree char *big = g_strnfill (4100, 'x');
  g_autofree char *too_big = g_strdup_printf ("functions:\n  - name: f\n    bootstrap: /b\n"
                                              "    environment:\n      BIG: %s\n", big);
  const char *const bad[][2] = {
    { "functions:\n  - name: f\n    bootstrap: /b\n    environment:\n      AWS_REGION: x\n",
      "AWS_REGION is reserved" },
    { "functions:\n  - name: f\n    bootstrap: /b\n    environment:\n      1X: y\n",
      "is not a variable name" },
    { "functions:\n  - name: f\n    bootstrap: /b\n    environment: [A, B]\n",
      "expected a mapping of NAME: value" },
    { "functions:\n  - name: f\n    bootstrap: /b\n    environment:\n      A:\n        B: c\n",
      "expected a single value" },
    { too_big, "more than 4096 bytes of variables" },
    { "functions:\n  - name: f\n", "bootstrap is required" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) e = NULL;
    g_autoptr (EdgeConfig) none = load (bad[i][0], &e);
    assert_null (none);
    if (strstr (e->message, bad[i][1]) == NULL)
      fail_msg ("case %u: %s lacks %s", i, e->message, bad[i][1]);
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_empty_file_gives_defaults),
    cmocka_unit_test (test_full_file),
    cmocka_unit_test (test_invalid_files),
    cmocka_unit_test (test_not_text),
    cmocka_unit_test (test_missing_file),
    cmocka_unit_test (test_default_yaml_round_trips),
    cmocka_unit_test (test_set_from_command_line),
    cmocka_unit_test (test_reference_lists_every_key),
    cmocka_unit_test (test_parse_listen),
    cmocka_unit_test (test_stream_list),
    cmocka_unit_test (test_camera_list),
    cmocka_unit_test (test_function_list),
    cmocka_unit_test (test_invalid_lists),
  };
  return cmocka_run_group_tests_name ("config", tests, NULL, NULL);
}
