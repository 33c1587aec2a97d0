/* Topic rules and templates: what a rule selects from a message, and where
 * a bad rule is said to be wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "mqtt-private.h"

/* Applies @sql to one message; the result as text, or NULL for no match. */
static char *
apply (const char *sql, const char *topic, const char *payload)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MqttRule) rule = mqtt_rule_parse (sql, &error);
  if (rule == NULL)
    fail_msg ("%s: %s", sql, error->message);
  MqttMessage m = { .topic = topic, .payload = (const guint8 *) payload, .len = strlen (payload),
                    .client_id = "dev-1", .timestamp_ms = 1700000000123 };
  g_autoptr (GBytes) out = mqtt_rule_apply (rule, &m);
  mqtt_message_clear (&m);
  if (out == NULL)
    return NULL;
  return g_strndup (g_bytes_get_data (out, NULL), g_bytes_get_size (out));
}

static void
assert_selects (const char *sql, const char *topic, const char *payload, const char *want)
{
  g_autofree char *got = apply (sql, topic, payload);
  if (want == NULL && got != NULL)
    fail_msg ("%s on %s %s: expected no match, got %s", sql, topic, payload, got);
  if (want != NULL && g_strcmp0 (got, want) != 0)
    fail_msg ("%s on %s %s: expected %s, got %s", sql, topic, payload, want,
              got ? got : "(no match)");
}

static void
test_select_and_where (void **state)
{
  const char *hot = "SELECT temperature, topic(2) AS device FROM 'sensors/+/telemetry' "
                    "WHERE temperature > 30";
  assert_selects (hot, "sensors/a/telemetry", "{\"temperature\":31.5,\"x\":1}",
                  "{\"temperature\":31.5,\"device\":\"a\"}");
  assert_selects (hot, "sensors/a/telemetry", "{\"temperature\":30}", NULL);
  assert_selects (hot, "sensors/a/status", "{\"temperature\":99}", NULL);
  assert_selects (hot, "sensors/a/b/telemetry", "{\"temperature\":99}", NULL);
  /* A string is not a number: Undefined, so WHERE is not true. */
  assert_selects (hot, "sensors/a/telemetry", "{\"temperature\":\"99\"}", NULL);
  assert_selects (hot, "sensors/a/telemetry", "not json", NULL);
  assert_selects (hot, "sensors/a/telemetry", "", NULL);
}

static void
test_star (void **state)
{
  assert_selects ("SELECT * FROM 'a/#'", "a/b", "{\"x\":1}", "{\"x\":1}");
  /* A payload that is not a JSON object passes through as it is. */
  assert_selects ("SELECT * FROM 'a/#'", "a/b", "\x01\x02 raw", "\x01\x02 raw");
  assert_selects ("SELECT *, topic() AS t FROM 'a/#'", "a/b", "{\"x\":1}",
                  "{\"x\":1,\"t\":\"a/b\"}");
}

static void
test_expressions (void **state)
{
  const char *p = "{\"a\":{\"b\":[10,{\"c\":\"deep\"}]},\"n\":7,\"s\":\"Hi\",\"t\":true,\"z\":null}";
  assert_selects ("SELECT a.b[0] AS v FROM 'x'", "x", p, "{\"v\":10}");
  assert_selects ("SELECT a.b[1].c AS v FROM 'x'", "x", p, "{\"v\":\"deep\"}");
  assert_selects ("SELECT a.b[5] AS v, a.nope AS w FROM 'x'", "x", p, "{}");
  assert_selects ("SELECT n * 2 + 1 AS v, n % 4 AS m, -n AS neg, n / 2 AS h FROM 'x'", "x", p,
                  "{\"v\":15,\"m\":3,\"neg\":-7,\"h\":3.5}");
  assert_selects ("SELECT n / 0 AS v FROM 'x'", "x", p, "{}");
  assert_selects ("SELECT s + '!' AS v, lower(s) AS l, upper(s) AS u FROM 'x'", "x", p,
                  "{\"v\":\"Hi!\",\"l\":\"hi\",\"u\":\"HI\"}");
  assert_selects ("SELECT concat(s, '-', n) AS v FROM 'x'", "x", p, "{\"v\":\"Hi-7\"}");
  assert_selects ("SELECT abs(-2.5) AS a, round(2.5) AS r, floor(2.7) AS f, ceil(2.1) AS c "
                  "FROM 'x'", "x", p, "{\"a\":2.5,\"r\":3,\"f\":2,\"c\":3}");
  assert_selects ("SELECT timestamp() AS ts, clientid() AS c FROM 'x'", "x", p,
                  "{\"ts\":1700000000123,\"c\":\"dev-1\"}");
  assert_selects ("SELECT z, t FROM 'x'", "x", p, "{\"z\":null,\"t\":true}");
  assert_selects ("SELECT `n` AS v FROM 'x'", "x", p, "{\"v\":7}");
  assert_selects ("SELECT 'it''s' AS v FROM 'x'", "x", p, "{\"v\":\"it's\"}");
  assert_selects ("SELECT topic(1) AS a, topic(3) AS b FROM 'x/#'", "x/y", "{}", "{\"a\":\"x\"}");
}

static void
test_logic (void **state)
{
  const char *p = "{\"n\":7,\"s\":\"on\"}";
  assert_selects ("SELECT n FROM 'x' WHERE n = 7 AND s = 'on'", "x", p, "{\"n\":7}");
  assert_selects ("SELECT n FROM 'x' WHERE n <> 7 OR s != 'on'", "x", p, NULL);
  assert_selects ("SELECT n FROM 'x' WHERE NOT n < 7", "x", p, "{\"n\":7}");
  assert_selects ("SELECT n FROM 'x' WHERE n >= 7 and n <= 7", "x", p, "{\"n\":7}");
  /* Undefined spreads, except where AND or OR can decide without it. */
  assert_selects ("SELECT n FROM 'x' WHERE missing > 1", "x", p, NULL);
  assert_selects ("SELECT n FROM 'x' WHERE NOT missing > 1", "x", p, NULL);
  assert_selects ("SELECT n FROM 'x' WHERE missing > 1 OR n = 7", "x", p, "{\"n\":7}");
  assert_selects ("SELECT n FROM 'x' WHERE isUndefined(missing) AND NOT isUndefined(n)", "x", p,
                  "{\"n\":7}");
  /* Precedence: AND binds tighter than OR, * tighter than +. */
  assert_selects ("SELECT n FROM 'x' WHERE n = 1 AND s = 'no' OR n = 7", "x", p, "{\"n\":7}");
  assert_selects ("SELECT 1 + 2 * 3 AS v FROM 'x'", "x", p, "{\"v\":7}");
  assert_selects ("SELECT (1 + 2) * 3 AS v FROM 'x'", "x", p, "{\"v\":9}");
  /* Keywords are case-insensitive. */
  assert_selects ("select n from 'x' where n = 7", "x", p, "{\"n\":7}");
}

static void
assert_error (const char *sql, const char *want)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MqttRule) rule = mqtt_rule_parse (sql, &error);
  if (rule != NULL)
    fail_msg ("%s: parsed, expected %s", sql, want);
  if (strstr (error->message, want) == NULL)
    fail_msg ("%s: expected \"%s\" in \"%s\"", sql, want, error->message);
}

static void
test_errors (void **state)
{
  assert_error ("", "1:1: expected SELECT, got the end");
  assert_error ("SELEC * FROM 'a'", "1:1: expected SELECT");
  assert_error ("SELECT temperature, FROM 'a/b'", "1:21: expected a value, got the keyword FROM");
  assert_error ("SELECT * FROM sensors", "1:15: expected a topic filter in quotes");
  assert_error ("SELECT * FROM 'a/#/b'", "1:15: 'a/#/b' is not a topic filter");
  assert_error ("SELECT * FROM 'a/b+'", "1:15:");
  assert_error ("SELECT * FROM 'a' WHERE", "1:24: expected a value, got the end");
  assert_error ("SELECT * FROM 'a' WHERE x = 'open", "1:29: unterminated string");
  assert_error ("SELECT * FROM 'a' LIMIT 3", "1:19: expected WHERE or the end");
  assert_error ("SELECT a +1 FROM 'a'", "1:8: name this expression with AS");
  assert_error ("SELECT nope() FROM 'a'", "1:8: unknown function nope()");
  assert_error ("SELECT topic(1, 2) AS t FROM 'a'", "1:8: topic() takes 0 to 1 arguments, got 2");
  assert_error ("SELECT abs() AS t FROM 'a'", "abs() takes 1 argument, got 0");
  assert_error ("SELECT a[-1] AS t FROM 'a'", "1:10: expected an array index");
  assert_error ("SELECT a. AS t FROM 'a'", "1:11: expected a field name");
  assert_error ("SELECT a AS FROM 'a'", "1:13: expected a name after AS");
  assert_error ("SELECT (a AS t FROM 'a'", "1:11: expected \")\"");
  assert_error ("SELECT a ~ b FROM 'a'", "1:10: unexpected character '~'");
  assert_error ("SELECT *\nFROM 'a'\nWHERE a >", "3:10: expected a value");
  /* Nesting has a bound: no stack overflow from a hostile rule. */
  g_autoptr (GString) deep = g_string_new ("SELECT ");
  for (int i = 0; i < 500; i++)
    g_string_append_c (deep, '(');
  g_string_append (deep, "1 AS x FROM 'a'");
  assert_error (deep->str, "nested too deeply");
  g_autoptr (GString) negs = g_string_new ("SELECT ");
  for (int i = 0; i < 500; i++)
    g_string_append (negs, "NOT ");
  g_string_append (negs, "1 AS x FROM 'a'");
  assert_error (negs->str, "nested too deeply");
  g_autofree char *huge = g_strnfill (MQTT_SQL_MAX_BYTES + 1, 'a');
  assert_error (huge, "longer than");
}

static void
test_templates (void **state)
{
  const char *payload = "{\"device\":{\"id\":\"pump-3\"},\"n\":4}";
  MqttMessage m = { .topic = "site/east/pump", .payload = (const guint8 *) payload,
                    .len = strlen (payload), .client_id = "c1", .timestamp_ms = 5 };
  const struct {
    const char *template, *want;
  } cases[] = {
    { "${topic(2)}", "east" },
    { "${device.id}", "pump-3" },
    { "room-${clientid()}-${n * 2}", "room-c1-8" },
    { "${device}", "{\"id\":\"pump-3\"}" },
    { "${missing}", "" },
    { "plain $ and {braces}", "plain $ and {braces}" },
    { "${topic()}/${'}'}", "site/east/pump/}" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (MqttTemplate) t = mqtt_template_parse (cases[i].template, &error);
    assert_non_null (t);
    g_autofree char *got = mqtt_template_expand (t, &m);
    assert_string_equal (got, cases[i].want);
  }
  mqtt_message_clear (&m);

  const struct {
    const char *template, *want;
  } bad[] = {
    { "${topic(2)", "1:11: expected \"}\" to close \"${\", got the end" },
    { "x-${}", "1:5: expected a value, got \"}\"" },
    { "${a b}", "1:5: expected \"}\"" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (MqttTemplate) t = mqtt_template_parse (bad[i].template, &error);
    assert_null (t);
    if (strstr (error->message, bad[i].want) == NULL)
      fail_msg ("%s: expected \"%s\" in \"%s\"", bad[i].template, bad[i].want, error->message);
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_select_and_where),
    cmocka_unit_test (test_star),
    cmocka_unit_test (test_expressions),
    cmocka_unit_test (test_logic),
    cmocka_unit_test (test_errors),
    cmocka_unit_test (test_templates),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
