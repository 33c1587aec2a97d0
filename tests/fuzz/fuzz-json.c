/* Fuzzes the one entry point for untrusted JSON (size and UTF-8 checks and
 * the strict reader in front of json-glib), and the tree-less reader on its
 * own: every string it hands out is valid UTF-8 that the writer escapes and
 * the reader reads back. */
#include "edge-gateway.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* UTF-8, where U+0000 (which JSON may escape) counts as a character. */
static gboolean
is_utf8 (const char *s, gsize len)
{
  char *copy = g_memdup2 (s, len);
  for (gsize i = 0; i < len; i++)
    if (copy[i] == '\0')
      copy[i] = ' ';
  gboolean ok = g_utf8_validate_len (copy, len, NULL);
  g_free (copy);
  return ok;
}

/* Walks a value, checking each string round-trips through the writer. */
static gboolean
walk (EdgeJsonReader *r)
{
  const char *s;
  gsize len;
  switch (edge_json_reader_peek (r)) {
  case EDGE_JSON_OBJECT:
    edge_json_reader_enter_object (r);
    while (edge_json_reader_next_member (r, &s, &len))
      if (!is_utf8 (s, len) || !walk (r))
        return FALSE;
    return r->error == NULL;
  case EDGE_JSON_ARRAY:
    edge_json_reader_enter_array (r);
    while (edge_json_reader_next_element (r))
      if (!walk (r))
        return FALSE;
    return r->error == NULL;
  case EDGE_JSON_STRING: {
    if (!edge_json_reader_read_string (r, &s, &len))
      return FALSE;
    if (!is_utf8 (s, len))
      __builtin_trap ();
    GString *out = g_string_new (NULL);
    edge_json_append_string (out, s, len);
    EdgeJsonReader back;
    const char *t;
    gsize t_len;
    edge_json_reader_init (&back, out->str, out->len);
    if (!edge_json_reader_read_string (&back, &t, &t_len) || t_len != len ||
        memcmp (s, t, len) != 0 || !edge_json_reader_finish (&back))
      __builtin_trap ();
    edge_json_reader_clear (&back);
    g_string_free (out, TRUE);
    return TRUE;
  }
  default:
    return edge_json_reader_skip (r);
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  JsonNode *node = edge_json_parse ((const char *) data, size, 1 << 20, &error);
  if (node) {
    gsize len;
    char *text = edge_json_to_string (node, &len);
    g_free (text);
    json_node_unref (node);
  } else if (error == NULL) {
    __builtin_trap ();
  }
  g_clear_error (&error);

  EdgeJsonReader r;
  edge_json_reader_init (&r, (const char *) data, size);
  gboolean ok = walk (&r) && edge_json_reader_finish (&r);
  if (!ok && r.error == NULL)
    __builtin_trap ();
  edge_json_reader_clear (&r);
  return 0;
}
