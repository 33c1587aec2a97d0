/* Fuzzes substitution templates (partition keys, republish topics): the
 * parser, and expansion against a JSON message and a raw one. */
#include "mqtt-private.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = g_strndup ((const char *) data, size);
  MqttTemplate *t = mqtt_template_parse (text, NULL);
  if (t) {
    static const char *const payloads[] = { "{\"device\":{\"id\":\"pump\"},\"n\":4}", "\xff\x00raw" };
    for (gsize i = 0; i < G_N_ELEMENTS (payloads); i++) {
      MqttMessage m = { .topic = "site/east/pump", .payload = (const guint8 *) payloads[i],
                        .len = i == 0 ? strlen (payloads[i]) : 5, .client_id = "c1",
                        .timestamp_ms = 5 };
      char *out = mqtt_template_expand (t, &m);
      /* Text without "${" comes out as it went in. */
      if (strstr (text, "${") == NULL && strcmp (out, text) != 0)
        __builtin_trap ();
      g_free (out);
      mqtt_message_clear (&m);
    }
    mqtt_template_free (t);
  }
  g_free (text);
  return 0;
}
