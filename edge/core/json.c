/* json.c: JSON without a tree; see edge-core.h.
 *
 * The reader is a cursor over one whole document in memory. It never
 * allocates for a string that holds no escapes (the usual case: base64
 * blobs, names, keys), and validates as it goes what a conforming parser
 * must (RFC 8259): UTF-8 without overlongs or surrogates, no raw control
 * characters in strings, the number grammar, commas and colons where they
 * belong, nothing after the top-level value. Nesting is bounded, so
 * skipping a peer's value never recurses without limit.
 *
 * Containers are walked with enter / next / (read or skip the value) /
 * next ... until next returns FALSE at the closing bracket. `first` says
 * whether the container being walked has produced an item yet, which is
 * all that comma placement needs: a nested container always closes back
 * into a parent that has just produced one.
 */
#define G_LOG_DOMAIN "edge"

#include "edge-core.h"

#include <string.h>

static gboolean
fail (EdgeJsonReader *r, const char *what)
{
  if (r->error == NULL) {
    if (r->p >= r->end)
      r->error = g_strdup_printf ("%s at the end of the document (byte %zu)", what,
                                  (gsize) (r->end - r->start));
    else if ((guchar) *r->p >= 0x20 && (guchar) *r->p < 0x7f)
      r->error = g_strdup_printf ("%s at byte %zu ('%c')", what, (gsize) (r->p - r->start), *r->p);
    else
      r->error = g_strdup_printf ("%s at byte %zu (0x%02x)", what, (gsize) (r->p - r->start),
                                  (guchar) *r->p);
  }
  r->p = r->end; /* nothing more is read after an error */
  return FALSE;
}

void
edge_json_reader_init (EdgeJsonReader *r, const char *data, gsize len)
{
  memset (r, 0, sizeof *r);
  r->start = r->p = data;
  r->end = data + len;
  r->first = TRUE;
}

void
edge_json_reader_clear (EdgeJsonReader *r)
{
  if (r->scratch)
    g_string_free (r->scratch, TRUE);
  if (r->name_scratch)
    g_string_free (r->name_scratch, TRUE);
  g_clear_pointer (&r->error, g_free);
  r->scratch = r->name_scratch = NULL;
}

static void
skip_space (EdgeJsonReader *r)
{
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
    r->p++;
}

EdgeJsonToken
edge_json_reader_peek (EdgeJsonReader *r)
{
  skip_space (r);
  if (r->error || r->p >= r->end)
    return EDGE_JSON_NONE;
  switch (*r->p) {
  case '{':
    return EDGE_JSON_OBJECT;
  case '[':
    return EDGE_JSON_ARRAY;
  case '"':
    return EDGE_JSON_STRING;
  case 't':
    return EDGE_JSON_TRUE;
  case 'f':
    return EDGE_JSON_FALSE;
  case 'n':
    return EDGE_JSON_NULL;
  default:
    return *r->p == '-' || g_ascii_isdigit (*r->p) ? EDGE_JSON_NUMBER : EDGE_JSON_NONE;
  }
}

static gboolean
enter (EdgeJsonReader *r, char open, const char *what)
{
  skip_space (r);
  if (r->p >= r->end || *r->p != open)
    return fail (r, what);
  if (r->depth >= EDGE_JSON_READER_MAX_DEPTH)
    return fail (r, "nested deeper than " G_STRINGIFY (EDGE_JSON_READER_MAX_DEPTH) " levels");
  r->p++;
  r->depth++;
  r->first = TRUE;
  return TRUE;
}

gboolean
edge_json_reader_enter_object (EdgeJsonReader *r)
{
  return enter (r, '{', "expected an object");
}

gboolean
edge_json_reader_enter_array (EdgeJsonReader *r)
{
  return enter (r, '[', "expected an array");
}

/* Before the next item of a container: the closing bracket (consumed,
 * FALSE) or the comma that must separate items. */
static gboolean
next_item (EdgeJsonReader *r, char close)
{
  skip_space (r);
  if (r->error || r->p >= r->end)
    return fail (r, "unfinished document");
  if (*r->p == close) {
    if (r->depth == 0)
      return fail (r, "unbalanced bracket");
    r->p++;
    r->depth--;
    r->first = FALSE;
    return FALSE;
  }
  if (!r->first) {
    if (*r->p != ',')
      return fail (r, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    r->p++;
    skip_space (r);
  }
  r->first = FALSE;
  return TRUE;
}

/* Decodes the four hex digits at @p. */
static gboolean
hex4 (const char *p, gunichar *ret)
{
  gunichar v = 0;
  for (int i = 0; i < 4; i++) {
    int d = g_ascii_xdigit_value (p[i]);
    if (d < 0)
      return FALSE;
    v = v << 4 | (gunichar) d;
  }
  *ret = v;
  return TRUE;
}

/* Length of the well-formed UTF-8 sequence at @p (lead byte >= 0x80), or 0. */
static gsize
utf8_sequence (const guchar *p, const guchar *end)
{
  guchar c = p[0];
  gsize n;
  gunichar min, v;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2, min = 0x80, v = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, min = 0x800, v = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, min = 0x10000, v = c & 0x07;
  else
    return 0;
  if ((gsize) (end - p) < n)
    return 0;
  for (gsize i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    v = v << 6 | (p[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
    return 0;
  return n;
}

/* Reads the string at the cursor. Without escapes it is returned where it
 * lies; with them it is unescaped into @scratch. */
static gboolean
read_string (EdgeJsonReader *r, GString **scratch, const char **ret, gsize *ret_len)
{
  skip_space (r);
  if (r->p >= r->end || *r->p != '"')
    return fail (r, "expected a string");
  const char *begin = ++r->p;
  GString *out = NULL;

  while (r->p < r->end) {
    /* Eight plain characters at a time: none is '"', '\\', below 0x20 or
     * above 0x7f. The word tricks mark such bytes; a mark may be false
     * above a true one (a borrow carries up), never below, so the lowest
     * mark is the first character that is not plain, and the ones before
     * it are skipped with the word. */
    if (out == NULL)
      while (r->end - r->p >= 8) {
        const guint64 ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
        guint64 w, quote, backslash;
        memcpy (&w, r->p, 8);
        w = GUINT64_FROM_LE (w); /* the first character in the low byte */
        quote = w ^ (ones * '"');
        backslash = w ^ (ones * '\\');
        guint64 marks = (((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) |
                         ((w - ones * 0x20) & ~w) | w) & high;
        if (marks) {
          r->p += __builtin_ctzll (marks) / 8;
          break;
        }
        r->p += 8;
      }
    if (r->p >= r->end)
      break;
    guchar c = (guchar) *r->p;
    if (c == '"') {
      if (out == NULL) {
        *ret = begin;
        *ret_len = (gsize) (r->p - begin);
      } else {
        *ret = out->str;
        *ret_len = out->len;
      }
      r->p++;
      return TRUE;
    }
    if (c < 0x20)
      return fail (r, "control character in a string");
    if (c >= 0x80) {
      gsize n = utf8_sequence ((const guchar *) r->p, (const guchar *) r->end);
      if (n == 0)
        return fail (r, "not UTF-8");
      if (out)
        g_string_append_len (out, r->p, (gssize) n);
      r->p += n;
      continue;
    }
    if (c != '\\') {
      if (out)
        g_string_append_c (out, (char) c);
      r->p++;
      continue;
    }
    if (out == NULL) {
      if (*scratch == NULL)
        *scratch = g_string_sized_new (64);
      out = *scratch;
      g_string_truncate (out, 0);
      g_string_append_len (out, begin, r->p - begin);
    }
    if (r->end - r->p < 2)
      return fail (r, "unfinished escape");
    char e = r->p[1];
    const char *simple = strchr ("\"\\/bfnrt", e);
    if (e != '\0' && simple != NULL && e != 'u') {
      static const char decoded[] = "\"\\/\b\f\n\r\t";
      g_string_append_c (out, decoded[simple - "\"\\/bfnrt"]);
      r->p += 2;
      continue;
    }
    gunichar u, low;
    if (e != 'u' || r->end - r->p < 6 || !hex4 (r->p + 2, &u))
      return fail (r, "invalid escape");
    r->p += 6;
    if (u >= 0xdc00 && u <= 0xdfff)
      return fail (r, "unpaired surrogate escape");
    if (u >= 0xd800 && u <= 0xdbff) {
      if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' || !hex4 (r->p + 2, &low) ||
          low < 0xdc00 || low > 0xdfff)
        return fail (r, "unpaired surrogate escape");
      r->p += 6;
      u = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00);
    }
    g_string_append_unichar (out, u);
  }
  return fail (r, "unterminated string");
}

gboolean
edge_json_reader_next_member (EdgeJsonReader *r, const char **ret_name, gsize *ret_len)
{
  if (!next_item (r, '}'))
    return FALSE;
  if (!read_string (r, &r->name_scratch, ret_name, ret_len))
    return FALSE;
  skip_space (r);
  if (r->p >= r->end || *r->p != ':')
    return fail (r, "expected ':'");
  r->p++;
  return TRUE;
}

gboolean
edge_json_reader_next_element (EdgeJsonReader *r)
{
  return next_item (r, ']');
}

gboolean
edge_json_reader_read_string (EdgeJsonReader *r, const char **ret, gsize *ret_len)
{
  return read_string (r, &r->scratch, ret, ret_len);
}

const char *
edge_json_reader_string_begin (EdgeJsonReader *r)
{
  return edge_json_reader_peek (r) == EDGE_JSON_STRING ? r->p + 1 : NULL;
}

void
edge_json_reader_string_done (EdgeJsonReader *r, const char *after)
{
  g_return_if_fail (after > r->p && after <= r->end && after[-1] == '"');
  r->p = after;
}

static gboolean
skip_number (EdgeJsonReader *r)
{
  const char *p = r->p, *end = r->end;
  if (p < end && *p == '-')
    p++;
  if (p < end && *p == '0')
    p++;
  else if (p < end && *p >= '1' && *p <= '9')
    while (p < end && g_ascii_isdigit (*p))
      p++;
  else
    return fail (r, "invalid number");
  if (p < end && *p == '.') {
    if (++p >= end || !g_ascii_isdigit (*p))
      return fail (r, "invalid number");
    while (p < end && g_ascii_isdigit (*p))
      p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    if (p >= end || !g_ascii_isdigit (*p))
      return fail (r, "invalid number");
    while (p < end && g_ascii_isdigit (*p))
      p++;
  }
  r->p = p;
  return TRUE;
}

gboolean
edge_json_reader_read_number (EdgeJsonReader *r, const char **ret, gsize *ret_len)
{
  if (edge_json_reader_peek (r) != EDGE_JSON_NUMBER)
    return fail (r, "expected a number");
  const char *start = r->p;
  if (!skip_number (r))
    return FALSE;
  *ret = start;
  *ret_len = (gsize) (r->p - start);
  return TRUE;
}

static gboolean
skip_literal (EdgeJsonReader *r, const char *word)
{
  gsize n = strlen (word);
  if ((gsize) (r->end - r->p) < n || memcmp (r->p, word, n) != 0)
    return fail (r, "invalid literal");
  r->p += n;
  return TRUE;
}

gboolean
edge_json_reader_skip (EdgeJsonReader *r)
{
  const char *s;
  gsize len;
  switch (edge_json_reader_peek (r)) {
  case EDGE_JSON_OBJECT:
    if (!edge_json_reader_enter_object (r))
      return FALSE;
    while (edge_json_reader_next_member (r, &s, &len))
      if (!edge_json_reader_skip (r))
        return FALSE;
    return r->error == NULL;
  case EDGE_JSON_ARRAY:
    if (!edge_json_reader_enter_array (r))
      return FALSE;
    while (edge_json_reader_next_element (r))
      if (!edge_json_reader_skip (r))
        return FALSE;
    return r->error == NULL;
  case EDGE_JSON_STRING:
    return read_string (r, &r->scratch, &s, &len);
  case EDGE_JSON_NUMBER:
    return skip_number (r);
  case EDGE_JSON_TRUE:
    return skip_literal (r, "true");
  case EDGE_JSON_FALSE:
    return skip_literal (r, "false");
  case EDGE_JSON_NULL:
    return skip_literal (r, "null");
  case EDGE_JSON_NONE:
  default:
    return fail (r, "expected a value");
  }
}

gboolean
edge_json_reader_finish (EdgeJsonReader *r)
{
  skip_space (r);
  if (r->error)
    return FALSE;
  if (r->depth != 0)
    return fail (r, "unfinished document");
  if (r->p != r->end)
    return fail (r, "trailing data after the document");
  return TRUE;
}

/* ---- output ---- */

void
edge_json_append_string (GString *out, const char *s, gsize len)
{
  static const char hex[] = "0123456789abcdef";
  gsize start = 0;
  g_string_append_c (out, '"');
  for (gsize i = 0; i < len; i++) {
    guchar c = (guchar) s[i];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    g_string_append_len (out, s + start, (gssize) (i - start));
    start = i + 1;
    switch (c) {
    case '"':
      g_string_append_len (out, "\\\"", 2);
      break;
    case '\\':
      g_string_append_len (out, "\\\\", 2);
      break;
    case '\n':
      g_string_append_len (out, "\\n", 2);
      break;
    case '\r':
      g_string_append_len (out, "\\r", 2);
      break;
    case '\t':
      g_string_append_len (out, "\\t", 2);
      break;
    default: {
      char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
      g_string_append_len (out, u, 6);
    }
    }
  }
  g_string_append_len (out, s + start, (gssize) (len - start));
  g_string_append_c (out, '"');
}

void
edge_string_append_fixed (GString *out, guint64 value, guint decimals)
{
  char text[48];
  char *p = text + sizeof text;
  g_return_if_fail (decimals <= 18);
  for (guint i = 0; i < decimals; i++, value /= 10)
    *--p = (char) ('0' + value % 10);
  if (decimals > 0)
    *--p = '.';
  do {
    *--p = (char) ('0' + value % 10);
    value /= 10;
  } while (value > 0);
  g_string_append_len (out, p, text + sizeof text - p);
}
