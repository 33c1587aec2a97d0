/* Fuzzes topic rules: the parser (an error must say where), and what a
 * parsed rule makes of a few messages (JSON or not): a match is a JSON
 * object, or the payload itself for SELECT *. */
#include "mqtt-private.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = g_strndup ((const char *) data, size);
  GError *error = NULL;
  MqttRule *rule = mqtt_rule_parse (text, &error);
  if (rule == NULL) {
    /* "LINE:COLUMN: what" or a length/encoding complaint. */
    if (error == NULL || error->message[0] == '\0')
      __builtin_trap ();
    g_error_free (error);
    g_free (text);
    return 0;
  }
  static const struct {
    const char *topic, *payload;
  } messages[] = {
    { "sensors/a/telemetry", "{\"temperature\":31.5,\"a\":{\"b\":[1,{\"c\":\"x\"}]},\"s\":\"on\"}" },
    { "sensors/b/telemetry", "[1,2,3]" },
    { "a", "not json" },
    { "x/y/z", "" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (messages); i++) {
    MqttMessage m = { .topic = messages[i].topic, .payload = (const guint8 *) messages[i].payload,
                      .len = strlen (messages[i].payload), .client_id = "c", .timestamp_ms = 1 };
    GBytes *out = mqtt_rule_apply (rule, &m);
    if (out) {
      gsize len;
      const char *bytes = g_bytes_get_data (out, &len);
      gboolean passthrough = len == m.len && (len == 0 || memcmp (bytes, m.payload, len) == 0);
      if (!passthrough && (len == 0 || bytes[0] != '{'))
        __builtin_trap ();
      g_bytes_unref (out);
    }
    mqtt_message_clear (&m);
  }
  mqtt_rule_free (rule);
  g_free (text);
  return 0;
}
