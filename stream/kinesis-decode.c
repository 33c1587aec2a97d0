/* kinesis-decode.c: see kinesis-decode.h. */
#define G_LOG_DOMAIN "stream"

#include "kinesis-decode.h"

#include <openssl/evp.h>

void
kinesis_fault_clear (KinesisFault *fault)
{
  g_clear_pointer (&fault->type, g_free);
  g_clear_pointer (&fault->message, g_free);
}

static gboolean
set_fault (KinesisFault *fault, const char *type, const char *format, ...) G_GNUC_PRINTF (3, 4);

static gboolean
set_fault (KinesisFault *fault, const char *type, const char *format, ...)
{
  va_list args;
  kinesis_fault_clear (fault);
  va_start (args, format);
  fault->message = g_strdup_vprintf (format, args);
  va_end (args);
  fault->type = g_strdup (type);
  return FALSE;
}

GBytes *
kinesis_decode_base64 (const char *text)
{
  gsize len = strlen (text);
  if (len % 4 != 0 || len > (gsize) G_MAXINT)
    return NULL;
  guint8 *out = g_try_malloc (len / 4 * 3 + 1);
  if (out == NULL)
    return NULL;
  int n = len ? EVP_DecodeBlock (out, (const unsigned char *) text, (int) len) : 0;
  if (n < 0) {
    g_free (out);
    return NULL;
  }
  /* EVP_DecodeBlock counts padding as zero bytes. */
  if (len >= 1 && text[len - 1] == '=')
    n--;
  if (len >= 2 && text[len - 2] == '=')
    n--;
  return g_bytes_new_take (out, (gsize) n);
}

static gboolean
is_string (JsonNode *n)
{
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING;
}

static void
record_clear (gpointer data)
{
  KinesisRecord *r = data;
  g_clear_pointer (&r->data, g_bytes_unref);
}

static gboolean
decode_record (JsonObject *o, const char *where, guint64 max_record_bytes, KinesisRecord *ret,
               KinesisFault *fault)
{
  JsonNode *d = json_object_get_member (o, "Data");
  JsonNode *k = json_object_get_member (o, "PartitionKey");
  JsonNode *e = json_object_get_member (o, "ExplicitHashKey");

  if (d == NULL || JSON_NODE_HOLDS_NULL (d) || k == NULL || JSON_NODE_HOLDS_NULL (k))
    return set_fault (fault, "ValidationException",
                      "1 validation error detected: Value null at '%s%s' failed to satisfy "
                      "constraint: Member must not be null",
                      where, d == NULL || JSON_NODE_HOLDS_NULL (d) ? "data" : "partitionKey");
  if (!is_string (d) || !is_string (k) || (e && !JSON_NODE_HOLDS_NULL (e) && !is_string (e)))
    return set_fault (fault, "SerializationException",
                      "Data, PartitionKey and ExplicitHashKey are strings");
  const char *key = json_node_get_string (k);
  glong key_chars = g_utf8_strlen (key, -1);
  if (key_chars < 1 || key_chars > 256 || strlen (key) > STREAM_PARTITION_KEY_MAX_BYTES)
    return set_fault (fault, "ValidationException",
                      "1 validation error detected: Value at '%spartitionKey' failed to satisfy "
                      "constraint: Member must have length between 1 and 256",
                      where);
  ret->partition_key = key;
  ret->data = kinesis_decode_base64 (json_node_get_string (d));
  if (ret->data == NULL)
    return set_fault (fault, "SerializationException", "%sdata is not valid base64", where);
  if (g_bytes_get_size (ret->data) + strlen (key) > max_record_bytes)
    return set_fault (fault, "ValidationException",
                      "1 validation error detected: Value at '%sdata' failed to satisfy "
                      "constraint: Member must have length less than or equal to %" G_GUINT64_FORMAT,
                      where, max_record_bytes);
  if (e && !JSON_NODE_HOLDS_NULL (e)) {
    if (!stream_hash_key_parse (json_node_get_string (e), &ret->explicit_hash_key))
      return set_fault (fault, "InvalidArgumentException",
                        "ExplicitHashKey %s is not a decimal number from 0 to 2^128 - 1",
                        json_node_get_string (e));
    ret->has_explicit_hash_key = TRUE;
  }
  return TRUE;
}

GArray *
kinesis_decode_records (JsonObject *body, gboolean single, guint64 max_record_bytes,
                        KinesisFault *fault)
{
  g_autoptr (GArray) records = g_array_new (FALSE, TRUE, sizeof (KinesisRecord));
  g_array_set_clear_func (records, record_clear);
  gsize total = 0;

  if (single) {
    g_array_set_size (records, 1);
    if (!decode_record (body, "", max_record_bytes, &g_array_index (records, KinesisRecord, 0),
                        fault))
      return NULL;
    return g_steal_pointer (&records);
  }
  JsonNode *list = json_object_get_member (body, "Records");
  if (list == NULL || !JSON_NODE_HOLDS_ARRAY (list)) {
    set_fault (fault, "ValidationException",
               "1 validation error detected: Value null at 'records' failed to satisfy "
               "constraint: Member must not be null");
    return NULL;
  }
  JsonArray *array = json_node_get_array (list);
  guint n = json_array_get_length (array);
  if (n < 1 || n > KINESIS_PUT_RECORDS_MAX) {
    set_fault (fault, "ValidationException",
               "1 validation error detected: Value at 'records' failed to satisfy constraint: "
               "Member must have length less than or equal to %d and greater than or equal to 1",
               KINESIS_PUT_RECORDS_MAX);
    return NULL;
  }
  g_array_set_size (records, n);
  for (guint i = 0; i < n; i++) {
    JsonNode *node = json_array_get_element (array, i);
    KinesisRecord *r = &g_array_index (records, KinesisRecord, i);
    g_autofree char *where = g_strdup_printf ("records.%u.member.", i + 1);
    if (!JSON_NODE_HOLDS_OBJECT (node)) {
      set_fault (fault, "SerializationException", "each record is an object");
      return NULL;
    }
    if (!decode_record (json_node_get_object (node), where, max_record_bytes, r, fault))
      return NULL;
    total += g_bytes_get_size (r->data) + strlen (r->partition_key);
  }
  if (total > KINESIS_PUT_RECORDS_MAX_BYTES) {
    set_fault (fault, "InvalidArgumentException", "Records size exceeds %d MB limit: %zu bytes",
               KINESIS_PUT_RECORDS_MAX_BYTES >> 20, total);
    return NULL;
  }
  return g_steal_pointer (&records);
}
