/* sql.c: topic rules in AWS IoT's SQL, and substitution templates.
 *
 *     SELECT temperature, topic(2) AS device FROM 'sensors/+/telemetry'
 *     WHERE temperature > 30 AND NOT (status = 'test')
 *
 * A rule is parsed once into a tree and evaluated per message against its
 * payload as JSON. Values follow AWS IoT's rules: a field that is missing,
 * or an operation on mismatched types (a string compared with a number,
 * arithmetic on a string), is Undefined; a WHERE clause passes only when
 * it is true; an Undefined value is left out of what SELECT builds.
 *
 * Grammar (lowest precedence first):
 *
 *     rule     := SELECT items FROM string [WHERE expr]
 *     items    := item {"," item};  item := "*" | expr [AS name]
 *     expr     := and {OR and};  and := not {AND not};  not := NOT not | cmp
 *     cmp      := sum [("=" | "<>" | "!=" | "<" | "<=" | ">" | ">=") sum]
 *     sum      := product {("+" | "-") product}
 *     product  := unary {("*" | "/" | "%") unary}
 *     unary    := "-" unary | postfix
 *     postfix  := primary {"." name | "[" integer "]"}
 *     primary  := number | string | TRUE | FALSE | NULL | name
 *               | name "(" [expr {"," expr}] ")" | "(" expr ")"
 *
 * A template is text with ${expression} parts, the same expressions.
 *
 * Keywords are case-insensitive; strings are in single quotes ('' for a
 * quote inside). Errors give the line and column of the token at fault.
 */
#define G_LOG_DOMAIN "mqtt"

#include "mqtt-private.h"

#include <math.h>
#include <mosquitto.h>

/* ---- values ---- */

typedef enum {
  V_UNDEFINED,
  V_NULL,
  V_BOOL,
  V_NUMBER,
  V_STRING,
  V_JSON, /* an object or an array */
} ValueKind;

typedef struct {
  ValueKind kind;
  gboolean b;
  double n;
  char *s;        /* V_STRING, owned */
  JsonNode *node; /* V_JSON, owned */
} Value;

static void
value_clear (Value *v)
{
  g_free (v->s);
  if (v->node)
    json_node_unref (v->node);
  *v = (Value) { 0 };
}

static Value
value_from_node (JsonNode *node)
{
  if (node == NULL)
    return (Value) { .kind = V_UNDEFINED };
  switch (JSON_NODE_TYPE (node)) {
  case JSON_NODE_NULL:
    return (Value) { .kind = V_NULL };
  case JSON_NODE_VALUE:
    switch (json_node_get_value_type (node)) {
    case G_TYPE_BOOLEAN:
      return (Value) { V_BOOL, .b = json_node_get_boolean (node) };
    case G_TYPE_INT64:
      return (Value) { V_NUMBER, .n = (double) json_node_get_int (node) };
    case G_TYPE_DOUBLE:
      return (Value) { V_NUMBER, .n = json_node_get_double (node) };
    case G_TYPE_STRING:
      return (Value) { V_STRING, .s = g_strdup (json_node_get_string (node)) };
    default:
      return (Value) { .kind = V_UNDEFINED };
    }
  default:
    return (Value) { V_JSON, .node = json_node_copy (node) };
  }
}

/* (transfer full), NULL for Undefined. */
static JsonNode *
value_to_node (const Value *v)
{
  JsonNode *node;
  switch (v->kind) {
  case V_NULL:
    return json_node_new (JSON_NODE_NULL);
  case V_BOOL:
    node = json_node_new (JSON_NODE_VALUE);
    json_node_set_boolean (node, v->b);
    return node;
  case V_NUMBER:
    node = json_node_new (JSON_NODE_VALUE);
    if (v->n == floor (v->n) && fabs (v->n) < 9007199254740992.0)
      json_node_set_int (node, (gint64) v->n);
    else
      json_node_set_double (node, v->n);
    return node;
  case V_STRING:
    node = json_node_new (JSON_NODE_VALUE);
    json_node_set_string (node, v->s);
    return node;
  case V_JSON:
    return json_node_copy (v->node);
  case V_UNDEFINED:
  default:
    return NULL;
  }
}

/* ---- the tree ---- */

typedef enum {
  E_LITERAL,
  E_FIELD,    /* a top-level payload field */
  E_MEMBER,   /* child.name */
  E_INDEX,    /* child[index] */
  E_CALL,
  E_NOT,
  E_NEG,
  E_BINARY,
} ExprKind;

typedef enum {
  OP_OR,
  OP_AND,
  OP_EQ,
  OP_NE,
  OP_LT,
  OP_LE,
  OP_GT,
  OP_GE,
  OP_ADD,
  OP_SUB,
  OP_MUL,
  OP_DIV,
  OP_MOD,
} BinaryOp;

typedef enum {
  FN_TOPIC,
  FN_TIMESTAMP,
  FN_CLIENTID,
  FN_ABS,
  FN_ROUND,
  FN_FLOOR,
  FN_CEIL,
  FN_LOWER,
  FN_UPPER,
  FN_CONCAT,
  FN_IS_UNDEFINED,
} Function;

typedef struct _Expr Expr;
struct _Expr {
  ExprKind kind;
  Value literal;    /* E_LITERAL */
  char *name;       /* E_FIELD, E_MEMBER; the function's name for E_CALL */
  gint64 index;     /* E_INDEX */
  Function function;
  BinaryOp op;
  Expr *left, *right; /* E_MEMBER, E_INDEX, E_NOT, E_NEG: left only */
  GPtrArray *args;  /* E_CALL: Expr * */
};

static void
expr_free (Expr *e)
{
  if (e == NULL)
    return;
  value_clear (&e->literal);
  g_free (e->name);
  expr_free (e->left);
  expr_free (e->right);
  if (e->args)
    g_ptr_array_unref (e->args);
  g_free (e);
}

static Expr *
expr_new (ExprKind kind)
{
  Expr *e = g_new0 (Expr, 1);
  e->kind = kind;
  return e;
}

typedef struct {
  Expr *expr; /* NULL for "*" */
  char *name; /* the member it becomes */
} SelectItem;

static void
select_item_free (gpointer data)
{
  SelectItem *item = data;
  expr_free (item->expr);
  g_free (item->name);
  g_free (item);
}

struct _MqttRule {
  GPtrArray *items; /* SelectItem * */
  gboolean star;
  char *filter;
  Expr *where; /* nullable */
};

/* ---- the lexer ---- */

typedef enum {
  T_END,
  T_NAME,
  T_NUMBER,
  T_STRING,
  T_PUNCT, /* one of , ( ) . [ ] * / % + - = < > <= >= <> != */
} TokenKind;

typedef struct {
  TokenKind kind;
  char *text;   /* T_NAME, T_STRING (unquoted), T_PUNCT, T_NUMBER */
  double number;
  gsize offset;     /* where it starts in the source */
  gboolean quoted;  /* a `name`: never a keyword */
} Token;

typedef struct {
  const char *src;
  gsize len;
  gsize pos;
  Token tok;
  guint depth;
  GError *error;
} Parser;

static void
position (const Parser *p, gsize offset, guint *ret_line, guint *ret_col)
{
  guint line = 1, col = 1;
  for (gsize i = 0; i < offset && i < p->len; i++) {
    if (p->src[i] == '\n') {
      line++;
      col = 1;
    } else if (((guchar) p->src[i] & 0xC0) != 0x80) {
      col++;
    }
  }
  *ret_line = line;
  *ret_col = col;
}

/* Records the first error only, at @offset. */
G_GNUC_PRINTF (3, 4)
static void
fail_at (Parser *p, gsize offset, const char *format, ...)
{
  if (p->error)
    return;
  va_list args;
  va_start (args, format);
  g_autofree char *message = g_strdup_vprintf (format, args);
  va_end (args);
  guint line, col;
  position (p, offset, &line, &col);
  g_set_error (&p->error, MQTT_ERROR, MQTT_ERROR_INVALID, "%u:%u: %s", line, col, message);
}

/* What the current token is, for messages. (transfer full) */
static char *
describe (const Token *t)
{
  switch (t->kind) {
  case T_END:
    return g_strdup ("the end");
  case T_STRING:
    return g_strdup_printf ("'%s'", t->text);
  default:
    return g_strdup_printf ("\"%s\"", t->text);
  }
}

static gboolean
is_name_start (char c)
{
  return g_ascii_isalpha (c) || c == '_';
}

static gboolean
is_name_char (char c)
{
  return g_ascii_isalnum (c) || c == '_';
}

static void
next (Parser *p)
{
  g_clear_pointer (&p->tok.text, g_free);
  p->tok = (Token) { .kind = T_END };
  if (p->error)
    return;
  while (p->pos < p->len && g_ascii_isspace (p->src[p->pos]))
    p->pos++;
  p->tok.offset = p->pos;
  if (p->pos >= p->len)
    return;
  const char *s = p->src + p->pos;
  gsize rest = p->len - p->pos;
  char c = s[0];

  if (is_name_start (c) || c == '`') {
    gsize n = 0;
    if (c == '`') { /* `quoted name`, for fields with other characters */
      const char *end = memchr (s + 1, '`', rest - 1);
      if (end == NULL || end == s + 1) {
        fail_at (p, p->pos, "unterminated or empty `name`");
        return;
      }
      p->tok.kind = T_NAME;
      p->tok.quoted = TRUE;
      p->tok.text = g_strndup (s + 1, (gsize) (end - s - 1));
      p->pos += (gsize) (end - s) + 1;
      return;
    }
    while (n < rest && is_name_char (s[n]))
      n++;
    p->tok.kind = T_NAME;
    p->tok.text = g_strndup (s, n);
    p->pos += n;
    return;
  }
  if (g_ascii_isdigit (c) || (c == '.' && rest > 1 && g_ascii_isdigit (s[1]))) {
    gsize n = 0;
    while (n < rest && (g_ascii_isdigit (s[n]) || s[n] == '.'))
      n++;
    if (n < rest && (s[n] == 'e' || s[n] == 'E')) {
      gsize m = n + 1;
      if (m < rest && (s[m] == '+' || s[m] == '-'))
        m++;
      if (m < rest && g_ascii_isdigit (s[m])) {
        while (m < rest && g_ascii_isdigit (s[m]))
          m++;
        n = m;
      }
    }
    g_autofree char *text = g_strndup (s, n);
    char *end = NULL;
    double value = g_ascii_strtod (text, &end);
    if (end == NULL || *end != '\0' || !isfinite (value)) {
      fail_at (p, p->pos, "bad number \"%s\"", text);
      return;
    }
    p->tok.kind = T_NUMBER;
    p->tok.number = value;
    p->tok.text = g_steal_pointer (&text);
    p->pos += n;
    return;
  }
  if (c == '\'' || c == '"') {
    GString *out = g_string_new (NULL);
    gsize i = 1;
    for (;;) {
      if (i >= rest) {
        g_string_free (out, TRUE);
        fail_at (p, p->pos, "unterminated string");
        return;
      }
      if (s[i] == c) {
        if (i + 1 < rest && s[i + 1] == c) { /* '' is one quote */
          g_string_append_c (out, c);
          i += 2;
          continue;
        }
        break;
      }
      if (s[i] == '\0') {
        g_string_free (out, TRUE);
        fail_at (p, p->pos + i, "NUL character in a string");
        return;
      }
      g_string_append_c (out, s[i]);
      i++;
    }
    p->tok.kind = T_STRING;
    p->tok.text = g_string_free (out, FALSE);
    p->pos += i + 1;
    return;
  }
  static const char *const two[] = { "<=", ">=", "<>", "!=" };
  for (gsize i = 0; i < G_N_ELEMENTS (two); i++)
    if (rest >= 2 && s[0] == two[i][0] && s[1] == two[i][1]) {
      p->tok.kind = T_PUNCT;
      p->tok.text = g_strdup (two[i]);
      p->pos += 2;
      return;
    }
  if (strchr (",().[]*/%+-=<>}", c) && c != '\0') {
    p->tok.kind = T_PUNCT;
    p->tok.text = g_strndup (s, 1);
    p->pos += 1;
    return;
  }
  if ((guchar) c < 0x20 || (guchar) c >= 0x7F)
    fail_at (p, p->pos, "unexpected character 0x%02x", (guchar) c);
  else
    fail_at (p, p->pos, "unexpected character '%c'", c);
}

static gboolean
is_punct (const Parser *p, const char *text)
{
  return p->tok.kind == T_PUNCT && g_str_equal (p->tok.text, text);
}

static gboolean
is_keyword (const Parser *p, const char *word)
{
  return p->tok.kind == T_NAME && !p->tok.quoted && g_ascii_strcasecmp (p->tok.text, word) == 0;
}

static gboolean
is_reserved (const char *name)
{
  static const char *const words[] = { "SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT" };
  for (gsize i = 0; i < G_N_ELEMENTS (words); i++)
    if (g_ascii_strcasecmp (name, words[i]) == 0)
      return TRUE;
  return FALSE;
}

static gboolean
expect_punct (Parser *p, const char *text, const char *what)
{
  if (is_punct (p, text)) {
    next (p);
    return TRUE;
  }
  g_autofree char *got = describe (&p->tok);
  fail_at (p, p->tok.offset, "expected %s, got %s", what, got);
  return FALSE;
}

/* ---- the parser ---- */

static Expr *parse_expr (Parser *p);

static const struct {
  const char *name;
  Function function;
  guint min_args, max_args;
} functions[] = {
  { "topic", FN_TOPIC, 0, 1 },     { "timestamp", FN_TIMESTAMP, 0, 0 },
  { "clientid", FN_CLIENTID, 0, 0 }, { "abs", FN_ABS, 1, 1 },
  { "round", FN_ROUND, 1, 1 },     { "floor", FN_FLOOR, 1, 1 },
  { "ceil", FN_CEIL, 1, 1 },       { "lower", FN_LOWER, 1, 1 },
  { "upper", FN_UPPER, 1, 1 },     { "concat", FN_CONCAT, 1, 16 },
  { "isundefined", FN_IS_UNDEFINED, 1, 1 },
};

static Expr *
parse_call (Parser *p, char *name, gsize offset)
{
  gsize fi = G_N_ELEMENTS (functions);
  for (gsize i = 0; i < G_N_ELEMENTS (functions); i++)
    if (g_ascii_strcasecmp (name, functions[i].name) == 0)
      fi = i;
  if (fi == G_N_ELEMENTS (functions)) {
    fail_at (p, offset, "unknown function %s() (known: topic, timestamp, clientid, abs, round, "
             "floor, ceil, lower, upper, concat, isUndefined)", name);
    g_free (name);
    return NULL;
  }
  Expr *e = expr_new (E_CALL);
  e->name = g_ascii_strdown (name, -1);
  g_free (name);
  e->function = functions[fi].function;
  e->args = g_ptr_array_new_with_free_func ((GDestroyNotify) expr_free);
  next (p); /* ( */
  if (!is_punct (p, ")")) {
    for (;;) {
      if (e->args->len >= 16) {
        fail_at (p, p->tok.offset, "too many arguments");
        break;
      }
      Expr *arg = parse_expr (p);
      if (arg == NULL)
        break;
      g_ptr_array_add (e->args, arg);
      if (!is_punct (p, ","))
        break;
      next (p);
    }
  }
  if (p->error || !expect_punct (p, ")", "\")\" after the arguments")) {
    expr_free (e);
    return NULL;
  }
  if (e->args->len < functions[fi].min_args || e->args->len > functions[fi].max_args) {
    if (functions[fi].min_args == functions[fi].max_args)
      fail_at (p, offset, "%s() takes %u argument%s, got %u", e->name, functions[fi].min_args,
               functions[fi].min_args == 1 ? "" : "s", e->args->len);
    else
      fail_at (p, offset, "%s() takes %u to %u arguments, got %u", e->name,
               functions[fi].min_args, functions[fi].max_args, e->args->len);
    expr_free (e);
    return NULL;
  }
  return e;
}

static Expr *
parse_primary (Parser *p)
{
  Expr *e;
  switch (p->tok.kind) {
  case T_NUMBER:
    e = expr_new (E_LITERAL);
    e->literal = (Value) { V_NUMBER, .n = p->tok.number };
    next (p);
    return e;
  case T_STRING:
    e = expr_new (E_LITERAL);
    e->literal = (Value) { V_STRING, .s = g_strdup (p->tok.text) };
    next (p);
    return e;
  case T_NAME: {
    if (is_keyword (p, "true") || is_keyword (p, "false")) {
      e = expr_new (E_LITERAL);
      e->literal = (Value) { V_BOOL, .b = is_keyword (p, "true") };
      next (p);
      return e;
    }
    if (is_keyword (p, "null")) {
      e = expr_new (E_LITERAL);
      e->literal = (Value) { .kind = V_NULL };
      next (p);
      return e;
    }
    if (!p->tok.quoted && is_reserved (p->tok.text)) {
      fail_at (p, p->tok.offset, "expected a value, got the keyword %s", p->tok.text);
      return NULL;
    }
    gsize offset = p->tok.offset;
    char *name = g_steal_pointer (&p->tok.text);
    next (p);
    if (is_punct (p, "("))
      return parse_call (p, name, offset);
    e = expr_new (E_FIELD);
    e->name = name;
    return e;
  }
  case T_PUNCT:
    if (is_punct (p, "(")) {
      next (p);
      e = parse_expr (p);
      if (e && !expect_punct (p, ")", "\")\"")) {
        expr_free (e);
        return NULL;
      }
      return e;
    }
    G_GNUC_FALLTHROUGH;
  case T_END:
  default: {
    g_autofree char *got = describe (&p->tok);
    fail_at (p, p->tok.offset, "expected a value, got %s", got);
    return NULL;
  }
  }
}

static Expr *
parse_postfix (Parser *p)
{
  Expr *e = parse_primary (p);
  while (e && !p->error) {
    if (is_punct (p, ".")) {
      next (p);
      if (p->tok.kind != T_NAME || (!p->tok.quoted && is_reserved (p->tok.text))) {
        g_autofree char *got = describe (&p->tok);
        fail_at (p, p->tok.offset, "expected a field name after \".\", got %s", got);
        break;
      }
      Expr *m = expr_new (E_MEMBER);
      m->left = e;
      m->name = g_steal_pointer (&p->tok.text);
      e = m;
      next (p);
    } else if (is_punct (p, "[")) {
      next (p);
      if (p->tok.kind != T_NUMBER || p->tok.number != floor (p->tok.number) ||
          p->tok.number < 0 || p->tok.number > G_MAXINT32) {
        g_autofree char *got = describe (&p->tok);
        fail_at (p, p->tok.offset, "expected an array index (0, 1, ...), got %s", got);
        break;
      }
      Expr *x = expr_new (E_INDEX);
      x->left = e;
      x->index = (gint64) p->tok.number;
      e = x;
      next (p);
      if (!expect_punct (p, "]", "\"]\""))
        break;
    } else {
      break;
    }
  }
  if (p->error) {
    expr_free (e);
    return NULL;
  }
  return e;
}

static Expr *
binary (BinaryOp op, Expr *left, Expr *right)
{
  Expr *e = expr_new (E_BINARY);
  e->op = op;
  e->left = left;
  e->right = right;
  return e;
}

/* Guards recursion: a peer-written rule cannot exhaust the stack. */
static gboolean
enter (Parser *p)
{
  if (++p->depth > MQTT_SQL_MAX_DEPTH) {
    fail_at (p, p->tok.offset, "expression nested too deeply (more than %d levels)",
             MQTT_SQL_MAX_DEPTH);
    return FALSE;
  }
  return TRUE;
}

static Expr *
parse_unary (Parser *p)
{
  if (!enter (p))
    return NULL;
  Expr *e;
  if (is_punct (p, "-")) {
    next (p);
    Expr *inner = parse_unary (p);
    e = NULL;
    if (inner) {
      e = expr_new (E_NEG);
      e->left = inner;
    }
  } else {
    e = parse_postfix (p);
  }
  p->depth--;
  return e;
}

/* How a binary operator is written: punctuation, or a keyword. */
typedef struct {
  const char *text;
  gboolean keyword;
  BinaryOp op;
} Spelling;

static gboolean
match_operator (Parser *p, const Spelling *ops, gsize n, BinaryOp *ret_op)
{
  for (gsize i = 0; i < n; i++)
    if (ops[i].keyword ? is_keyword (p, ops[i].text) : is_punct (p, ops[i].text)) {
      *ret_op = ops[i].op;
      return TRUE;
    }
  return FALSE;
}

/* operand {op operand}, left-associative; or, when @chain is FALSE, at most
 * one op (comparisons: a < b < c is not a rule). */
static Expr *
parse_binary (Parser *p, Expr *(*operand) (Parser *), const Spelling *ops, gsize n,
              gboolean chain)
{
  Expr *e = operand (p);
  BinaryOp op;
  while (e && match_operator (p, ops, n, &op)) {
    next (p);
    Expr *r = operand (p);
    if (r == NULL) {
      expr_free (e);
      return NULL;
    }
    e = binary (op, e, r);
    if (!chain)
      break;
  }
  return e;
}

static Expr *
parse_product (Parser *p)
{
  static const Spelling ops[] = { { "*", FALSE, OP_MUL }, { "/", FALSE, OP_DIV },
                                  { "%", FALSE, OP_MOD } };
  return parse_binary (p, parse_unary, ops, G_N_ELEMENTS (ops), TRUE);
}

static Expr *
parse_sum (Parser *p)
{
  static const Spelling ops[] = { { "+", FALSE, OP_ADD }, { "-", FALSE, OP_SUB } };
  return parse_binary (p, parse_product, ops, G_N_ELEMENTS (ops), TRUE);
}

static Expr *
parse_comparison (Parser *p)
{
  static const Spelling ops[] = { { "=", FALSE, OP_EQ },  { "<>", FALSE, OP_NE },
                                  { "!=", FALSE, OP_NE }, { "<", FALSE, OP_LT },
                                  { "<=", FALSE, OP_LE }, { ">", FALSE, OP_GT },
                                  { ">=", FALSE, OP_GE } };
  return parse_binary (p, parse_sum, ops, G_N_ELEMENTS (ops), FALSE);
}

static Expr *
parse_not (Parser *p)
{
  if (!is_keyword (p, "not"))
    return parse_comparison (p);
  if (!enter (p))
    return NULL;
  next (p);
  Expr *inner = parse_not (p);
  p->depth--;
  if (inner == NULL)
    return NULL;
  Expr *e = expr_new (E_NOT);
  e->left = inner;
  return e;
}

static Expr *
parse_and (Parser *p)
{
  static const Spelling ops[] = { { "and", TRUE, OP_AND } };
  return parse_binary (p, parse_not, ops, G_N_ELEMENTS (ops), TRUE);
}

static Expr *
parse_expr (Parser *p)
{
  static const Spelling ops[] = { { "or", TRUE, OP_OR } };
  if (!enter (p))
    return NULL;
  Expr *e = parse_binary (p, parse_and, ops, G_N_ELEMENTS (ops), TRUE);
  p->depth--;
  if (p->error) {
    expr_free (e);
    return NULL;
  }
  return e;
}

/* The member name an unnamed item gets: a field's last name, a function's
 * name; NULL when it needs AS. */
static const char *
implicit_name (const Expr *e)
{
  switch (e->kind) {
  case E_FIELD:
  case E_MEMBER:
  case E_CALL:
    return e->name;
  default:
    return NULL;
  }
}

static void
parser_init (Parser *p, const char *src, gsize len)
{
  *p = (Parser) { .src = src, .len = len };
}

static gboolean
check_length (const char *text, const char *what, GError **error)
{
  gsize len = strlen (text);
  if (len > MQTT_SQL_MAX_BYTES) {
    g_set_error (error, MQTT_ERROR, MQTT_ERROR_INVALID, "%s longer than %d bytes", what,
                 MQTT_SQL_MAX_BYTES);
    return FALSE;
  }
  if (!g_utf8_validate (text, (gssize) len, NULL)) {
    g_set_error (error, MQTT_ERROR, MQTT_ERROR_INVALID, "%s is not valid UTF-8", what);
    return FALSE;
  }
  return TRUE;
}

MqttRule *
mqtt_rule_parse (const char *sql, GError **error)
{
  if (!check_length (sql, "rule", error))
    return NULL;
  Parser p;
  parser_init (&p, sql, strlen (sql));
  g_autoptr (MqttRule) rule = g_new0 (MqttRule, 1);
  rule->items = g_ptr_array_new_with_free_func (select_item_free);

  next (&p);
  if (!p.error && !is_keyword (&p, "select")) {
    g_autofree char *got = describe (&p.tok);
    fail_at (&p, p.tok.offset, "expected SELECT, got %s", got);
  }
  next (&p);
  while (!p.error) {
    SelectItem *item = g_new0 (SelectItem, 1);
    g_ptr_array_add (rule->items, item);
    gsize offset = p.tok.offset;
    if (is_punct (&p, "*")) {
      rule->star = TRUE;
      next (&p);
    } else {
      item->expr = parse_expr (&p);
      if (item->expr == NULL)
        break;
      if (is_keyword (&p, "as")) {
        next (&p);
        if (p.tok.kind != T_NAME || (!p.tok.quoted && is_reserved (p.tok.text))) {
          g_autofree char *got = describe (&p.tok);
          fail_at (&p, p.tok.offset, "expected a name after AS, got %s", got);
          break;
        }
        item->name = g_steal_pointer (&p.tok.text);
        next (&p);
      } else if (implicit_name (item->expr)) {
        item->name = g_strdup (implicit_name (item->expr));
      } else {
        fail_at (&p, offset, "name this expression with AS (SELECT a + b AS total)");
        break;
      }
    }
    if (rule->items->len > 100) {
      fail_at (&p, offset, "more than 100 items in SELECT");
      break;
    }
    if (!is_punct (&p, ","))
      break;
    next (&p);
  }
  if (!p.error && !is_keyword (&p, "from")) {
    g_autofree char *got = describe (&p.tok);
    fail_at (&p, p.tok.offset, "expected \",\" or FROM after a SELECT item, got %s", got);
  }
  next (&p);
  if (!p.error) {
    if (p.tok.kind != T_STRING) {
      g_autofree char *got = describe (&p.tok);
      fail_at (&p, p.tok.offset, "expected a topic filter in quotes after FROM, got %s", got);
    } else if (mosquitto_sub_topic_check (p.tok.text) != MOSQ_ERR_SUCCESS ||
               p.tok.text[0] == '\0') {
      fail_at (&p, p.tok.offset,
               "'%s' is not a topic filter (+ and # stand for whole levels, # only last)",
               p.tok.text);
    } else {
      rule->filter = g_steal_pointer (&p.tok.text);
      next (&p);
    }
  }
  if (!p.error && is_keyword (&p, "where")) {
    next (&p);
    rule->where = parse_expr (&p);
  }
  if (!p.error && p.tok.kind != T_END) {
    g_autofree char *got = describe (&p.tok);
    fail_at (&p, p.tok.offset, "expected WHERE or the end of the rule, got %s", got);
  }
  g_clear_pointer (&p.tok.text, g_free);
  if (p.error) {
    g_propagate_error (error, p.error);
    return NULL;
  }
  return g_steal_pointer (&rule);
}

void
mqtt_rule_free (MqttRule *rule)
{
  if (rule == NULL)
    return;
  g_ptr_array_unref (rule->items);
  g_free (rule->filter);
  expr_free (rule->where);
  g_free (rule);
}

const char *
mqtt_rule_topic_filter (const MqttRule *rule)
{
  return rule->filter;
}

/* ---- evaluation ---- */

void
mqtt_message_clear (MqttMessage *message)
{
  g_clear_pointer (&message->json, json_node_unref);
  message->parsed = FALSE;
}

/* The payload as JSON, or NULL. (transfer none) */
static JsonNode *
message_json (MqttMessage *m)
{
  if (!m->parsed) {
    m->parsed = TRUE;
    if (m->len > 0 && m->len <= 1024 * 1024 &&
        g_utf8_validate ((const char *) m->payload, (gssize) m->len, NULL)) {
      g_autoptr (JsonParser) parser = json_parser_new_immutable ();
      if (json_parser_load_from_data (parser, (const char *) m->payload, (gssize) m->len, NULL) &&
          json_parser_get_root (parser))
        m->json = json_node_ref (json_parser_get_root (parser));
    }
  }
  return m->json;
}

static Value eval (const Expr *e, MqttMessage *m);

static char *
number_text (double n)
{
  if (n == floor (n) && fabs (n) < 9007199254740992.0)
    return g_strdup_printf ("%" G_GINT64_FORMAT, (gint64) n);
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  return g_strdup (g_ascii_dtostr (buf, sizeof buf, n));
}

/* The text a value has in a string context; NULL for Undefined. */
static char *
value_text (const Value *v)
{
  switch (v->kind) {
  case V_STRING:
    return g_strdup (v->s);
  case V_NUMBER:
    return number_text (v->n);
  case V_BOOL:
    return g_strdup (v->b ? "true" : "false");
  case V_NULL:
    return g_strdup ("null");
  case V_JSON:
    return json_to_string (v->node, FALSE);
  default:
    return NULL;
  }
}

static Value
eval_call (const Expr *e, MqttMessage *m)
{
  Value a = { .kind = V_UNDEFINED }, result = { .kind = V_UNDEFINED };
  if (e->args->len > 0 && e->function != FN_CONCAT)
    a = eval (e->args->pdata[0], m);
  switch (e->function) {
  case FN_TOPIC:
    if (e->args->len == 0) {
      result = (Value) { V_STRING, .s = g_strdup (m->topic) };
    } else if (a.kind == V_NUMBER && a.n >= 1 && a.n == floor (a.n)) {
      g_auto (GStrv) levels = g_strsplit (m->topic, "/", -1);
      if (a.n <= g_strv_length (levels))
        result = (Value) { V_STRING, .s = g_strdup (levels[(gsize) a.n - 1]) };
    }
    break;
  case FN_TIMESTAMP:
    result = (Value) { V_NUMBER, .n = (double) m->timestamp_ms };
    break;
  case FN_CLIENTID:
    result = (Value) { V_STRING, .s = g_strdup (m->client_id ? m->client_id : "") };
    break;
  case FN_ABS:
  case FN_ROUND:
  case FN_FLOOR:
  case FN_CEIL:
    if (a.kind == V_NUMBER) {
      double n = e->function == FN_ABS     ? fabs (a.n)
                 : e->function == FN_ROUND ? round (a.n)
                 : e->function == FN_FLOOR ? floor (a.n)
                                           : ceil (a.n);
      result = (Value) { V_NUMBER, .n = n };
    }
    break;
  case FN_LOWER:
  case FN_UPPER:
    if (a.kind == V_STRING)
      result = (Value) { V_STRING, .s = e->function == FN_LOWER ? g_utf8_strdown (a.s, -1)
                                                                 : g_utf8_strup (a.s, -1) };
    break;
  case FN_IS_UNDEFINED:
    result = (Value) { V_BOOL, .b = a.kind == V_UNDEFINED };
    break;
  case FN_CONCAT: {
    GString *out = g_string_new (NULL);
    gboolean defined = TRUE;
    for (guint i = 0; i < e->args->len && defined; i++) {
      Value v = eval (e->args->pdata[i], m);
      g_autofree char *text = value_text (&v);
      value_clear (&v);
      if (text == NULL)
        defined = FALSE;
      else if (out->len + strlen (text) > 1024 * 1024)
        defined = FALSE;
      else
        g_string_append (out, text);
    }
    if (defined)
      result = (Value) { V_STRING, .s = g_string_free (out, FALSE) };
    else
      g_string_free (out, TRUE);
    break;
  }
  }
  value_clear (&a);
  return result;
}

/* -1, 0, 1; or 2 when the two cannot be compared. */
static int
compare (const Value *a, const Value *b)
{
  if (a->kind == V_NUMBER && b->kind == V_NUMBER)
    return a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
  if (a->kind == V_STRING && b->kind == V_STRING) {
    int c = strcmp (a->s, b->s);
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a->kind == V_BOOL && b->kind == V_BOOL)
    return a->b == b->b ? 0 : a->b ? 1 : -1;
  if (a->kind == V_NULL && b->kind == V_NULL)
    return 0;
  if (a->kind == V_JSON && b->kind == V_JSON)
    return json_node_equal (a->node, b->node) ? 0 : 2;
  return 2;
}

static Value
eval_binary (const Expr *e, MqttMessage *m)
{
  Value l = eval (e->left, m);
  Value result = { .kind = V_UNDEFINED };
  if (e->op == OP_AND || e->op == OP_OR) {
    /* Short-circuit as SQL does: false AND x is false, true OR x true. */
    if (l.kind == V_BOOL && l.b == (e->op == OP_OR)) {
      result = (Value) { V_BOOL, .b = l.b };
    } else {
      Value r = eval (e->right, m);
      if (l.kind == V_BOOL && r.kind == V_BOOL)
        result = (Value) { V_BOOL, .b = r.b };
      else if (r.kind == V_BOOL && r.b == (e->op == OP_OR))
        result = (Value) { V_BOOL, .b = r.b };
      value_clear (&r);
    }
    value_clear (&l);
    return result;
  }
  Value r = eval (e->right, m);
  switch (e->op) {
  case OP_EQ:
  case OP_NE:
  case OP_LT:
  case OP_LE:
  case OP_GT:
  case OP_GE: {
    int c = compare (&l, &r);
    if (c == 2 && (e->op == OP_EQ || e->op == OP_NE) && l.kind != V_UNDEFINED &&
        r.kind != V_UNDEFINED) {
      result = (Value) { V_BOOL, .b = e->op == OP_NE };
    } else if (c != 2 && !(l.kind == V_JSON && e->op != OP_EQ && e->op != OP_NE)) {
      gboolean b = e->op == OP_EQ   ? c == 0
                   : e->op == OP_NE ? c != 0
                   : e->op == OP_LT ? c < 0
                   : e->op == OP_LE ? c <= 0
                   : e->op == OP_GT ? c > 0
                                    : c >= 0;
      result = (Value) { V_BOOL, .b = b };
    }
    break;
  }
  case OP_ADD:
    if (l.kind == V_STRING && r.kind == V_STRING) {
      if (strlen (l.s) + strlen (r.s) <= 1024 * 1024)
        result = (Value) { V_STRING, .s = g_strconcat (l.s, r.s, NULL) };
      break;
    }
    G_GNUC_FALLTHROUGH;
  case OP_SUB:
  case OP_MUL:
  case OP_DIV:
  case OP_MOD:
    if (l.kind == V_NUMBER && r.kind == V_NUMBER) {
      double n;
      switch (e->op) {
      case OP_ADD:
        n = l.n + r.n;
        break;
      case OP_SUB:
        n = l.n - r.n;
        break;
      case OP_MUL:
        n = l.n * r.n;
        break;
      case OP_DIV:
        n = r.n == 0 ? NAN : l.n / r.n;
        break;
      default:
        n = r.n == 0 ? NAN : fmod (l.n, r.n);
        break;
      }
      if (isfinite (n))
        result = (Value) { V_NUMBER, .n = n };
    }
    break;
  default:
    break;
  }
  value_clear (&l);
  value_clear (&r);
  return result;
}

static Value
eval (const Expr *e, MqttMessage *m)
{
  switch (e->kind) {
  case E_LITERAL: {
    Value v = e->literal;
    v.s = g_strdup (v.s);
    v.node = v.node ? json_node_copy (v.node) : NULL;
    return v;
  }
  case E_FIELD: {
    JsonNode *root = message_json (m);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
      return (Value) { .kind = V_UNDEFINED };
    return value_from_node (json_object_get_member (json_node_get_object (root), e->name));
  }
  case E_MEMBER: {
    Value parent = eval (e->left, m);
    Value v = { .kind = V_UNDEFINED };
    if (parent.kind == V_JSON && JSON_NODE_HOLDS_OBJECT (parent.node))
      v = value_from_node (json_object_get_member (json_node_get_object (parent.node), e->name));
    value_clear (&parent);
    return v;
  }
  case E_INDEX: {
    Value parent = eval (e->left, m);
    Value v = { .kind = V_UNDEFINED };
    if (parent.kind == V_JSON && JSON_NODE_HOLDS_ARRAY (parent.node)) {
      JsonArray *a = json_node_get_array (parent.node);
      if (e->index < json_array_get_length (a))
        v = value_from_node (json_array_get_element (a, (guint) e->index));
    }
    value_clear (&parent);
    return v;
  }
  case E_CALL:
    return eval_call (e, m);
  case E_NOT: {
    Value v = eval (e->left, m);
    Value r = { .kind = V_UNDEFINED };
    if (v.kind == V_BOOL)
      r = (Value) { V_BOOL, .b = !v.b };
    value_clear (&v);
    return r;
  }
  case E_NEG: {
    Value v = eval (e->left, m);
    Value r = { .kind = V_UNDEFINED };
    if (v.kind == V_NUMBER)
      r = (Value) { V_NUMBER, .n = -v.n };
    value_clear (&v);
    return r;
  }
  case E_BINARY:
    return eval_binary (e, m);
  }
  return (Value) { .kind = V_UNDEFINED };
}

GBytes *
mqtt_rule_apply (const MqttRule *rule, MqttMessage *message)
{
  bool matches = false;
  if (mosquitto_topic_matches_sub (rule->filter, message->topic, &matches) != MOSQ_ERR_SUCCESS ||
      !matches)
    return NULL;
  if (rule->where) {
    Value w = eval (rule->where, message);
    gboolean pass = w.kind == V_BOOL && w.b;
    value_clear (&w);
    if (!pass)
      return NULL;
  }
  JsonNode *payload = message_json (message);
  gboolean payload_object = payload && JSON_NODE_HOLDS_OBJECT (payload);
  if (rule->star && rule->items->len == 1 && !payload_object)
    return g_bytes_new (message->payload, message->len);

  g_autoptr (JsonObject) out = json_object_new ();
  for (guint i = 0; i < rule->items->len; i++) {
    const SelectItem *item = rule->items->pdata[i];
    if (item->expr == NULL) {
      if (payload_object) {
        JsonObjectIter iter;
        const char *name;
        JsonNode *node;
        json_object_iter_init (&iter, json_node_get_object (payload));
        while (json_object_iter_next (&iter, &name, &node))
          json_object_set_member (out, name, json_node_copy (node));
      }
      continue;
    }
    Value v = eval (item->expr, message);
    JsonNode *node = value_to_node (&v);
    value_clear (&v);
    if (node)
      json_object_set_member (out, item->name, node);
  }
  g_autoptr (JsonNode) root = json_node_new (JSON_NODE_OBJECT);
  json_node_set_object (root, out);
  gsize len = 0;
  char *text = json_to_string (root, FALSE);
  len = strlen (text);
  return g_bytes_new_take (text, len);
}

/* ---- templates ---- */

typedef struct {
  char *text; /* literal, or NULL for an expression */
  Expr *expr;
} Part;

struct _MqttTemplate {
  GArray *parts; /* Part */
};

static void
part_clear (gpointer data)
{
  Part *part = data;
  g_free (part->text);
  expr_free (part->expr);
}

MqttTemplate *
mqtt_template_parse (const char *text, GError **error)
{
  if (!check_length (text, "template", error))
    return NULL;
  g_autoptr (MqttTemplate) t = g_new0 (MqttTemplate, 1);
  t->parts = g_array_new (FALSE, TRUE, sizeof (Part));
  g_array_set_clear_func (t->parts, part_clear);
  gsize len = strlen (text);
  gsize i = 0;
  GString *literal = g_string_new (NULL);
  while (i < len) {
    if (text[i] != '$' || i + 1 >= len || text[i + 1] != '{') {
      g_string_append_c (literal, text[i++]);
      continue;
    }
    if (literal->len) {
      Part part = { g_strdup (literal->str), NULL };
      g_array_append_val (t->parts, part);
      g_string_truncate (literal, 0);
    }
    Parser p;
    parser_init (&p, text, len);
    p.pos = i + 2;
    next (&p);
    Expr *e = p.error ? NULL : parse_expr (&p);
    if (e && !p.error && !is_punct (&p, "}")) {
      g_autofree char *got = describe (&p.tok);
      fail_at (&p, p.tok.offset, "expected \"}\" to close \"${\", got %s", got);
    }
    if (e == NULL || p.error) {
      expr_free (e);
      g_clear_pointer (&p.tok.text, g_free);
      g_string_free (literal, TRUE);
      if (p.error == NULL)
        fail_at (&p, i, "bad substitution");
      g_propagate_error (error, p.error);
      return NULL;
    }
    Part part = { NULL, e };
    g_array_append_val (t->parts, part);
    i = p.tok.offset + 1;
    g_clear_pointer (&p.tok.text, g_free);
  }
  if (literal->len) {
    Part part = { g_strdup (literal->str), NULL };
    g_array_append_val (t->parts, part);
  }
  g_string_free (literal, TRUE);
  return g_steal_pointer (&t);
}

void
mqtt_template_free (MqttTemplate *template)
{
  if (template == NULL)
    return;
  g_array_unref (template->parts);
  g_free (template);
}

char *
mqtt_template_expand (const MqttTemplate *template, MqttMessage *message)
{
  GString *out = g_string_new (NULL);
  for (guint i = 0; i < template->parts->len; i++) {
    const Part *part = &g_array_index (template->parts, Part, i);
    if (part->text) {
      g_string_append (out, part->text);
      continue;
    }
    Value v = eval (part->expr, message);
    g_autofree char *text = value_text (&v);
    value_clear (&v);
    if (text && out->len + strlen (text) <= 1024 * 1024)
      g_string_append (out, text);
  }
  return g_string_free (out, FALSE);
}
