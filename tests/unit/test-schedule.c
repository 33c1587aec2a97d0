/* Schedule expressions: EventBridge's rate(), cron() and at(), the next
 * time each fires, and the expressions refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "functions-private.h"

static gint64
unix_of (const char *iso)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_iso8601 (iso, NULL);
  assert_non_null (t);
  return g_date_time_to_unix (t);
}

static char *
iso_of (gint64 s)
{
  if (s < 0)
    return g_strdup ("never");
  g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (s);
  return g_date_time_format (t, "%Y-%m-%dT%H:%M:%SZ");
}

typedef struct {
  const char *expression;
  const char *after;
  const char *next; /* "never" */
} NextCase;

static const NextCase cases[] = {
  /* Every minute, at the start of the next one. */
  { "cron(* * * * ? *)", "2026-11-29T06:20:31Z", "2026-11-29T06:21:00Z" },
  { "cron(* * * * ? *)", "2026-11-29T06:20:00Z", "2026-11-29T06:21:00Z" },
  /* Every 15 minutes from 0, weekdays 8-17 (1 is Sunday). */
  { "cron(0/15 8-17 ? * MON-FRI *)", "2026-11-27T17:50:00Z", "2026-11-30T08:00:00Z" },
  { "cron(0/15 8-17 ? * MON-FRI *)", "2026-11-30T08:00:00Z", "2026-11-30T08:15:00Z" },
  { "cron(*/20 * * * ? *)", "2026-11-29T06:41:00Z", "2026-11-29T07:00:00Z" },
  { "cron(5-30/10 * * * ? *)", "2026-11-29T06:16:00Z", "2026-11-29T06:25:00Z" },
  /* Lists, names, a year. */
  { "cron(0 12 1,15 JAN,JUL ? 2027)", "2026-11-29T00:00:00Z", "2027-01-01T12:00:00Z" },
  { "cron(0 12 1,15 JAN,JUL ? 2027)", "2027-01-01T12:00:00Z", "2027-01-15T12:00:00Z" },
  { "cron(0 12 1,15 JAN,JUL ? 2027)", "2027-07-15T12:00:00Z", "never" },
  /* The last day of the month, February of a leap year included. */
  { "cron(0 0 L * ? *)", "2028-02-01T00:00:00Z", "2028-02-29T00:00:00Z" },
  { "cron(0 0 L 2 ? *)", "2027-03-01T00:00:00Z", "2028-02-29T00:00:00Z" },
  /* The weekday nearest the 1st: 2026-08-01 is a Saturday, so Monday the 3rd. */
  { "cron(0 9 1W * ? *)", "2026-07-31T00:00:00Z", "2026-08-03T09:00:00Z" },
  /* The last weekday: 2026-05-31 is a Sunday, so Friday the 29th. */
  { "cron(0 9 LW * ? *)", "2026-05-01T00:00:00Z", "2026-05-29T09:00:00Z" },
  /* The second Tuesday, and the last Friday, of the month. */
  { "cron(0 10 ? * 3#2 *)", "2026-12-01T00:00:00Z", "2026-12-08T10:00:00Z" },
  { "cron(0 10 ? * 6L *)", "2026-12-01T00:00:00Z", "2026-12-25T10:00:00Z" },
  /* The 31st skips the months without one. */
  { "cron(30 23 31 * ? *)", "2026-11-01T00:00:00Z", "2026-12-31T23:30:00Z" },
  /* February 30th never comes. */
  { "cron(0 0 30 2 ? *)", "2026-01-01T00:00:00Z", "never" },
  /* Rates count from the start (here 2026-11-29T06:00:00Z). */
  { "rate(1 minute)", "2026-11-29T06:00:00Z", "2026-11-29T06:01:00Z" },
  { "rate(5 minutes)", "2026-11-29T06:07:00Z", "2026-11-29T06:10:00Z" },
  { "rate(2 hours)", "2026-11-29T06:00:00Z", "2026-11-29T08:00:00Z" },
  { "rate(1 day)", "2026-11-29T06:00:01Z", "2026-11-30T06:00:00Z" },
  { "rate(10 seconds)", "2026-11-29T06:00:25Z", "2026-11-29T06:00:30Z" },
  /* Once. */
  { "at(2026-12-24T18:00:00)", "2026-11-29T06:00:00Z", "2026-12-24T18:00:00Z" },
  { "at(2026-12-24T18:00:00)", "2026-12-24T18:00:00Z", "never" },
};

static void
test_next (void **state)
{
  gint64 start = unix_of ("2026-11-29T06:00:00Z");
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (FunctionsCron) cron = functions_cron_parse (cases[i].expression, &error);
    if (cron == NULL)
      fail_msg ("%s: %s", cases[i].expression, error->message);
    g_autofree char *next = iso_of (functions_cron_next (cron, unix_of (cases[i].after), start));
    if (!g_str_equal (next, cases[i].next))
      fail_msg ("%s after %s: %s, expected %s", cases[i].expression, cases[i].after, next,
                cases[i].next);
  }
}

static void
test_refused (void **state)
{
  static const char *const bad[][2] = {
    { "", "1 to 256" },
    { "every minute", "expected rate" },
    { "rate(1 minutes)", "singular for 1" },
    { "rate(5 minute)", "plural otherwise" },
    { "rate(0 minutes)", "positive whole number" },
    { "rate(-5 minutes)", "positive whole number" },
    { "rate(5 weeks)", "the unit is" },
    { "rate(99999999999 days)", "positive whole number" },
    { "cron(* * * * *)", "six fields" },
    { "cron(* * * * * *)", "must be ?" },
    { "cron(* * ? * ? *)", "must be ?" },
    { "cron(60 * * * ? *)", "minutes field" },
    { "cron(* 24 * * ? *)", "hours field" },
    { "cron(* * 0 * ? *)", "day-of-month field" },
    { "cron(* * * 13 ? *)", "month field" },
    { "cron(* * * FOO ? *)", "month field" },
    { "cron(* * ? * 8 *)", "day-of-week field" },
    { "cron(* * ? * 2#6 *)", "day-of-week field" },
    { "cron(* * * * ? 1969)", "year field" },
    { "cron(*/0 * * * ? *)", "minutes field" },
    { "cron(10-5 * * * ? *)", "minutes field" },
    { "cron(? * * * ? *)", "? is for" },
    { "at(2026-02-30T00:00:00)", "YYYY-MM-DD" },
    { "at(tomorrow)", "YYYY-MM-DD" },
    { "later(1)", "expected rate" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (FunctionsCron) cron = functions_cron_parse (bad[i][0], &error);
    if (cron != NULL)
      fail_msg ("%s was taken", bad[i][0]);
    if (strstr (error->message, bad[i][1]) == NULL)
      fail_msg ("%s: \"%s\" does not say \"%s\"", bad[i][0], error->message, bad[i][1]);
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_next),
    cmocka_unit_test (test_refused),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
