/* schedule.c: EventBridge schedule expressions, and schedules that invoke
 * functions (functions/functions-private.h).
 *
 *   rate(VALUE UNIT)    every VALUE minutes, hours or days ("1 minute",
 *                       "5 minutes": singular for 1, as EventBridge wants),
 *                       counted from when the schedule starts; edged also
 *                       takes seconds ("rate(10 seconds)"), which
 *                       EventBridge does not
 *   cron(MIN HOUR DOM MONTH DOW YEAR)
 *                       EventBridge's six fields, in UTC: lists (,), ranges
 *                       (-), steps (/), * and ?; one of DOM and DOW is ?;
 *                       DOM takes L (the last day), NW (the weekday nearest
 *                       day N) and LW; DOW is 1-7 or SUN-SAT (1 is Sunday)
 *                       and takes NL (the last such day of the month) and
 *                       N#K (the K-th); MONTH takes JAN-DEC; YEAR 1970-2199
 *   at(YYYY-MM-DDTHH:MM:SS)
 *                       once, in UTC (EventBridge Scheduler's one-time
 *                       schedule)
 *
 * A schedule sends its function an asynchronous invocation (so retries and
 * destinations apply) with EventBridge's Scheduled Event, or the input it
 * is given. Times missed while edged was not running are not made up for,
 * as with EventBridge.
 */
#define G_LOG_DOMAIN "functions"

#include "functions-private.h"

#include <string.h>

#define MAX_EXPRESSION 256
#define FIRST_YEAR 1970
#define LAST_YEAR 2199

typedef enum { KIND_RATE, KIND_CRON, KIND_AT } Kind;

struct _FunctionsCron {
  Kind kind;
  gint64 period_s;  /* rate */
  gint64 at_s;      /* at: Unix time */
  guint64 minutes;  /* bit m: minute m */
  guint32 hours;    /* bit h */
  guint32 days;     /* bit d: day of month d (1-31) */
  gboolean dom_any; /* DOM is ? (DOW decides) */
  gboolean last_day;     /* L */
  gboolean last_weekday; /* LW */
  guint32 near_weekday;  /* bit d: dW */
  guint16 months;   /* bit m: month m (1-12) */
  guint8 weekdays;  /* bit d: weekday d (1 Sunday - 7 Saturday) */
  gboolean dow_any; /* DOW is ? */
  guint8 last_of_weekday; /* bit d: dL */
  guint8 nth_weekday[8];  /* [d]: bit k for d#k */
  guint64 years[4]; /* bit y - FIRST_YEAR */
};

static gboolean
fail (GError **error, const char *expression, const char *what)
{
  g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID, "schedule expression \"%s\": %s",
               expression, what);
  return FALSE;
}

/* ---- cron fields ---- */

typedef struct {
  const char *name;
  guint min, max;
  const char *const *names; /* names for min, min + 1, ...; nullable */
} Field;

static const char *const month_names[] = { "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                           "AUG", "SEP", "OCT", "NOV", "DEC", NULL };
static const char *const day_names[] = { "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL };

static const Field fields[] = {
  { "minutes", 0, 59, NULL },
  { "hours", 0, 23, NULL },
  { "day-of-month", 1, 31, NULL },
  { "month", 1, 12, month_names },
  { "day-of-week", 1, 7, day_names },
  { "year", FIRST_YEAR, LAST_YEAR, NULL },
};

/* A number or a name of @field at *p, advancing it. */
static gboolean
parse_value (const Field *field, const char **p, guint *ret)
{
  if (field->names && g_ascii_isalpha (**p)) {
    for (guint i = 0; field->names[i]; i++)
      if (g_ascii_strncasecmp (*p, field->names[i], 3) == 0 && !g_ascii_isalpha ((*p)[3])) {
        *p += 3;
        *ret = field->min + i;
        return TRUE;
      }
    return FALSE;
  }
  if (!g_ascii_isdigit (**p))
    return FALSE;
  guint v = 0;
  for (int digits = 0; g_ascii_isdigit (**p); (*p)++) {
    if (++digits > 4)
      return FALSE;
    v = v * 10 + (guint) (**p - '0');
  }
  if (v < field->min || v > field->max)
    return FALSE;
  *ret = v;
  return TRUE;
}

static void
set_bit (FunctionsCron *cron, guint field, guint v)
{
  switch (field) {
  case 0: cron->minutes |= G_GUINT64_CONSTANT (1) << v; break;
  case 1: cron->hours |= 1u << v; break;
  case 2: cron->days |= 1u << v; break;
  case 3: cron->months |= (guint16) (1u << v); break;
  case 4: cron->weekdays |= (guint8) (1u << v); break;
  default: cron->years[(v - FIRST_YEAR) / 64] |= G_GUINT64_CONSTANT (1) << ((v - FIRST_YEAR) % 64);
  }
}

/* One comma-separated item of field @f: *, N, N-M, with /STEP, or the
 * special forms of DOM and DOW. */
static gboolean
parse_item (FunctionsCron *cron, guint f, const char *item)
{
  const Field *field = &fields[f];
  const char *p = item;
  if (f == 2 && (g_str_equal (item, "L") || g_str_equal (item, "LW"))) {
    if (item[1])
      cron->last_weekday = TRUE;
    else
      cron->last_day = TRUE;
    return TRUE;
  }
  if (f == 4 && g_str_equal (item, "L")) {
    set_bit (cron, 4, 7); /* Quartz: L alone is Saturday */
    return TRUE;
  }
  guint lo = field->min, hi = field->max, step = 1;
  if (*p == '*') {
    p++;
  } else {
    if (!parse_value (field, &p, &lo))
      return FALSE;
    hi = lo;
    if (f == 2 && *p == 'W' && p[1] == '\0') {
      cron->near_weekday |= 1u << lo;
      return TRUE;
    }
    if (f == 4 && *p == 'L' && p[1] == '\0') {
      cron->last_of_weekday |= (guint8) (1u << lo);
      return TRUE;
    }
    if (f == 4 && *p == '#') {
      p++;
      if (*p < '1' || *p > '5' || p[1] != '\0')
        return FALSE;
      cron->nth_weekday[lo] |= (guint8) (1u << (*p - '0'));
      return TRUE;
    }
    if (*p == '-') {
      p++;
      if (!parse_value (field, &p, &hi) || hi < lo)
        return FALSE;
    }
  }
  if (*p == '/') {
    p++;
    guint64 s = 0;
    const char *start = p;
    while (g_ascii_isdigit (*p) && p - start < 4)
      s = s * 10 + (guint64) (*p++ - '0');
    if (p == start || s == 0)
      return FALSE;
    step = (guint) s;
    /* "0/15" runs from 0 to the end, as "*" does. */
    if (item[0] != '*' && strchr (item, '-') == NULL)
      hi = field->max;
  }
  if (*p != '\0')
    return FALSE;
  for (guint v = lo; v <= hi; v += step)
    set_bit (cron, f, v);
  return TRUE;
}

static gboolean
parse_cron (FunctionsCron *cron, const char *expression, const char *body, GError **error)
{
  g_auto (GStrv) parts = g_strsplit_set (body, " ", -1);
  g_autoptr (GPtrArray) words = g_ptr_array_new ();
  for (guint i = 0; parts[i]; i++)
    if (parts[i][0])
      g_ptr_array_add (words, parts[i]);
  if (words->len != 6)
    return fail (error, expression, "cron() takes six fields: minutes hours day-of-month month "
                                    "day-of-week year");
  cron->kind = KIND_CRON;
  for (guint f = 0; f < 6; f++) {
    const char *word = words->pdata[f];
    if (g_str_equal (word, "?")) {
      if (f != 2 && f != 4)
        return fail (error, expression, "? is for day-of-month or day-of-week only");
      if (f == 2)
        cron->dom_any = TRUE;
      else
        cron->dow_any = TRUE;
      continue;
    }
    g_auto (GStrv) items = g_strsplit (word, ",", -1);
    for (guint i = 0; items[i]; i++)
      if (!parse_item (cron, f, items[i])) {
        g_autofree char *what = g_strdup_printf ("the %s field \"%s\" is not valid (%u-%u)",
                                                 fields[f].name, word, fields[f].min,
                                                 fields[f].max);
        return fail (error, expression, what);
      }
  }
  if (cron->dom_any == cron->dow_any)
    return fail (error, expression, "one of day-of-month and day-of-week must be ?, the other "
                                    "not");
  return TRUE;
}

static gboolean
parse_rate (FunctionsCron *cron, const char *expression, const char *body, GError **error)
{
  static const struct {
    const char *one, *many;
    gint64 seconds;
  } units[] = {
    { "second", "seconds", 1 },
    { "minute", "minutes", 60 },
    { "hour", "hours", 3600 },
    { "day", "days", 86400 },
  };
  const char *p = body;
  guint64 value = 0;
  while (g_ascii_isdigit (*p) && value < 1000000000)
    value = value * 10 + (guint64) (*p++ - '0');
  if (p == body || value == 0 || value >= 1000000000 || *p != ' ')
    return fail (error, expression, "rate() takes a positive whole number and a unit");
  while (*p == ' ')
    p++;
  for (gsize i = 0; i < G_N_ELEMENTS (units); i++) {
    if (g_str_equal (p, value == 1 ? units[i].one : units[i].many)) {
      cron->kind = KIND_RATE;
      cron->period_s = (gint64) value * units[i].seconds;
      return TRUE;
    }
  }
  return fail (error, expression, "the unit is minute, hour or day (or second), singular for 1 "
                                  "and plural otherwise");
}

static gboolean
parse_at (FunctionsCron *cron, const char *expression, const char *body, GError **error)
{
  int y, mo, d, h, mi, s, n = 0;
  if (strlen (body) != 19 || sscanf (body, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s,
                                     &n) != 6 || n != 19)
    return fail (error, expression, "at() takes a time as YYYY-MM-DDTHH:MM:SS");
  g_autoptr (GDateTime) t = g_date_time_new_utc (y, mo, d, h, mi, s);
  if (t == NULL || y < FIRST_YEAR || y > LAST_YEAR)
    return fail (error, expression, "at() takes a time as YYYY-MM-DDTHH:MM:SS");
  cron->kind = KIND_AT;
  cron->at_s = g_date_time_to_unix (t);
  return TRUE;
}

FunctionsCron *
functions_cron_parse (const char *expression, GError **error)
{
  gsize len = strlen (expression);
  if (len == 0 || len > MAX_EXPRESSION) {
    fail (error, "", "1 to 256 characters");
    return NULL;
  }
  const char *open = strchr (expression, '(');
  if (open == NULL || expression[len - 1] != ')') {
    fail (error, expression, "expected rate(...), cron(...) or at(...)");
    return NULL;
  }
  g_autofree char *kind = g_strndup (expression, open - expression);
  g_autofree char *body = g_strndup (open + 1, expression + len - 1 - (open + 1));
  g_autofree FunctionsCron *cron = g_new0 (FunctionsCron, 1);
  gboolean ok;
  if (g_str_equal (kind, "rate"))
    ok = parse_rate (cron, expression, body, error);
  else if (g_str_equal (kind, "cron"))
    ok = parse_cron (cron, expression, body, error);
  else if (g_str_equal (kind, "at"))
    ok = parse_at (cron, expression, body, error);
  else
    ok = fail (error, expression, "expected rate(...), cron(...) or at(...)");
  return ok ? g_steal_pointer (&cron) : NULL;
}

void
functions_cron_free (FunctionsCron *cron)
{
  g_free (cron);
}

/* ---- the next time ---- */

static guint
days_in_month (guint year, guint month)
{
  return g_date_get_days_in_month ((GDateMonth) month, (GDateYear) year);
}

/* Weekday of a date, 1 (Sunday) to 7 (Saturday). */
static guint
weekday (guint year, guint month, guint day)
{
  GDate date;
  g_date_clear (&date, 1);
  g_date_set_dmy (&date, (GDateDay) day, (GDateMonth) month, (GDateYear) year);
  return g_date_get_weekday (&date) % 7 + 1; /* GLib: Monday 1 ... Sunday 7 */
}

/* The weekday (Monday-Friday) nearest to @day, within its month. */
static guint
nearest_weekday (guint year, guint month, guint day)
{
  guint n = days_in_month (year, month);
  if (day > n)
    return 0;
  guint wd = weekday (year, month, day);
  if (wd == 7) /* Saturday: Friday, or Monday on the 1st */
    return day > 1 ? day - 1 : day + 2;
  if (wd == 1) /* Sunday: Monday, or Friday on the last day */
    return day < n ? day + 1 : day - 2;
  return day;
}

static gboolean
day_matches (const FunctionsCron *cron, guint year, guint month, guint day)
{
  guint n = days_in_month (year, month);
  if (!cron->dom_any) {
    if (cron->days & (1u << day))
      return TRUE;
    if (cron->last_day && day == n)
      return TRUE;
    if (cron->last_weekday && day == nearest_weekday (year, month, n))
      return TRUE;
    for (guint d = 1; d <= 31; d++)
      if ((cron->near_weekday & (1u << d)) && nearest_weekday (year, month, d) == day)
        return TRUE;
    return FALSE;
  }
  guint wd = weekday (year, month, day);
  if (cron->weekdays & (1u << wd))
    return TRUE;
  if ((cron->last_of_weekday & (1u << wd)) && day + 7 > n)
    return TRUE;
  if (cron->nth_weekday[wd] & (1u << ((day - 1) / 7 + 1)))
    return TRUE;
  return FALSE;
}

static gboolean
year_matches (const FunctionsCron *cron, guint year)
{
  guint i = year - FIRST_YEAR;
  return year >= FIRST_YEAR && year <= LAST_YEAR &&
         (cron->years[i / 64] & (G_GUINT64_CONSTANT (1) << (i % 64)));
}

gint64
functions_cron_next (const FunctionsCron *cron, gint64 after_s, gint64 start_s)
{
  switch (cron->kind) {
  case KIND_AT:
    return cron->at_s > after_s ? cron->at_s : -1;
  case KIND_RATE: {
    /* Every period from the start. */
    if (after_s < start_s)
      return start_s + cron->period_s;
    return start_s + ((after_s - start_s) / cron->period_s + 1) * cron->period_s;
  }
  case KIND_CRON:
    break;
  }
  /* The first whole minute after @after_s. */
  gint64 t = (after_s / 60 + 1) * 60;
  if (after_s < 0)
    t = 0;
  g_autoptr (GDateTime) from = g_date_time_new_from_unix_utc (t);
  if (from == NULL)
    return -1;
  guint year = (guint) g_date_time_get_year (from);
  guint month = (guint) g_date_time_get_month (from);
  guint day = (guint) g_date_time_get_day_of_month (from);
  guint hour = (guint) g_date_time_get_hour (from);
  guint minute = (guint) g_date_time_get_minute (from);
  /* Day by day; within a day, the first hour and minute that match. */
  for (; year <= LAST_YEAR; year++, month = 1, day = 1, hour = 0, minute = 0) {
    if (!year_matches (cron, year))
      continue;
    for (; month <= 12; month++, day = 1, hour = 0, minute = 0) {
      if (!(cron->months & (1u << month)))
        continue;
      for (; day <= days_in_month (year, month); day++, hour = 0, minute = 0) {
        if (!day_matches (cron, year, month, day))
          continue;
        for (; hour < 24; hour++, minute = 0) {
          if (!(cron->hours & (1u << hour)))
            continue;
          for (; minute < 60; minute++) {
            if (cron->minutes & (G_GUINT64_CONSTANT (1) << minute)) {
              g_autoptr (GDateTime) at =
                  g_date_time_new_utc ((gint) year, (gint) month, (gint) day, (gint) hour,
                                       (gint) minute, 0);
              return g_date_time_to_unix (at);
            }
          }
        }
      }
    }
  }
  return -1;
}

/* ---- schedules ---- */

struct _FunctionsSchedule {
  FunctionsAsync *async;
  char *name;
  char *function;
  char *arn;
  char *input; /* "" for the Scheduled Event */
  FunctionsCron *cron;
  gint64 start_s;
  gint64 next_s;
  guint timer;
};

static void schedule_arm (FunctionsSchedule *schedule);

static GBytes *
scheduled_event (FunctionsSchedule *schedule, gint64 at_s)
{
  if (schedule->input[0])
    return g_bytes_new (schedule->input, strlen (schedule->input));
  g_autoptr (GDateTime) at = g_date_time_new_from_unix_utc (at_s);
  g_autofree char *time = g_date_time_format (at, "%Y-%m-%dT%H:%M:%SZ");
  g_autofree char *id = edge_uuid_random ();
  GString *out = g_string_new ("{\"version\":\"0\",\"id\":");
  edge_json_append_string (out, id, strlen (id));
  g_string_append (out, ",\"detail-type\":\"Scheduled Event\",\"source\":\"aws.events\","
                        "\"account\":\"" FUNCTIONS_ACCOUNT "\",\"time\":");
  edge_json_append_string (out, time, strlen (time));
  g_string_append (out, ",\"region\":\"" FUNCTIONS_REGION "\",\"resources\":[");
  edge_json_append_string (out, schedule->arn, strlen (schedule->arn));
  g_string_append (out, "],\"detail\":{}}");
  return g_string_free_to_bytes (out);
}

static gboolean
on_fire (gpointer data)
{
  FunctionsSchedule *schedule = data;
  schedule->timer = 0;
  gint64 now_ms = g_get_real_time () / 1000;
  if (now_ms < schedule->next_s * 1000) {
    schedule_arm (schedule); /* woken early (the clock moved): wait on */
    return G_SOURCE_REMOVE;
  }
  g_autoptr (GBytes) event = scheduled_event (schedule, schedule->next_s);
  g_autofree char *id = edge_uuid_random ();
  g_autoptr (GError) error = NULL;
  if (functions_async_enqueue (schedule->async, schedule->function, id, event, &error))
    g_info ("schedule \"%s\": invoking \"%s\" (%s)", schedule->name, schedule->function, id);
  else
    g_warning ("schedule \"%s\": cannot invoke \"%s\": %s", schedule->name, schedule->function,
               error->message);
  /* The next time after now: times missed (a suspended machine, a clock
   * set forward) are not made up for. */
  schedule->next_s = functions_cron_next (schedule->cron, now_ms / 1000, schedule->start_s);
  schedule_arm (schedule);
  return G_SOURCE_REMOVE;
}

static void
schedule_arm (FunctionsSchedule *schedule)
{
  g_clear_handle_id (&schedule->timer, g_source_remove);
  if (schedule->next_s < 0) {
    g_info ("schedule \"%s\": no more times", schedule->name);
    return;
  }
  gint64 delay_ms = schedule->next_s * 1000 - g_get_real_time () / 1000;
  /* Long waits are cut, so that a clock that moves is followed. */
  delay_ms = CLAMP (delay_ms, 0, 60 * 60 * 1000);
  schedule->timer = g_timeout_add_full (G_PRIORITY_HIGH, (guint) delay_ms, on_fire, schedule,
                                        NULL);
}

static gboolean
valid_schedule_name (const char *name)
{
  gsize n = strlen (name);
  if (n == 0 || n > 64)
    return FALSE;
  for (gsize i = 0; i < n; i++)
    if (!g_ascii_isalnum (name[i]) && !strchr ("_.-", name[i]))
      return FALSE;
  return TRUE;
}

FunctionsSchedule *
functions_schedule_new (FunctionsAsync *async, const EdgeConfigSchedule *config,
                        gboolean function_exists, GError **error)
{
  if (!valid_schedule_name (config->name)) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "schedule name \"%s\": 1 to 64 of a-z, A-Z, 0-9, _ . and -", config->name);
    return NULL;
  }
  if (!function_exists) {
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "schedule \"%s\": no function \"%s\"", config->name, config->function);
    return NULL;
  }
  if (config->input[0]) {
    g_autoptr (GError) json_error = NULL;
    g_autoptr (JsonNode) input = edge_json_parse (config->input, strlen (config->input),
                                                  FUNCTIONS_MAX_EVENT_BYTES, &json_error);
    if (input == NULL) {
      g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                   "schedule \"%s\": input is not JSON: %s", config->name, json_error->message);
      return NULL;
    }
  }
  FunctionsCron *cron = functions_cron_parse (config->expression, error);
  if (cron == NULL) {
    g_prefix_error (error, "schedule \"%s\": ", config->name);
    return NULL;
  }
  gint64 now_s = g_get_real_time () / G_USEC_PER_SEC;
  gint64 next = functions_cron_next (cron, now_s, now_s);
  if (next < 0 && cron->kind != KIND_AT) {
    functions_cron_free (cron);
    g_set_error (error, FUNCTIONS_ERROR, FUNCTIONS_ERROR_INVALID,
                 "schedule \"%s\": %s never fires", config->name, config->expression);
    return NULL;
  }
  FunctionsSchedule *schedule = g_new0 (FunctionsSchedule, 1);
  schedule->async = async;
  schedule->name = g_strdup (config->name);
  schedule->function = g_strdup (config->function);
  schedule->arn = g_strdup_printf ("arn:aws:events:" FUNCTIONS_REGION ":" FUNCTIONS_ACCOUNT
                                   ":rule/%s", config->name);
  schedule->input = g_strdup (config->input);
  schedule->cron = cron;
  schedule->start_s = now_s;
  schedule->next_s = next;
  if (next >= 0) {
    g_autoptr (GDateTime) at = g_date_time_new_from_unix_utc (next);
    g_autofree char *when = g_date_time_format_iso8601 (at);
    g_message ("schedule \"%s\": %s -> function \"%s\", next at %s", schedule->name,
               config->expression, schedule->function, when);
  }
  schedule_arm (schedule);
  return schedule;
}

const char *
functions_schedule_name (FunctionsSchedule *schedule)
{
  return schedule->name;
}

void
functions_schedule_free (FunctionsSchedule *schedule)
{
  g_clear_handle_id (&schedule->timer, g_source_remove);
  functions_cron_free (schedule->cron);
  g_free (schedule->name);
  g_free (schedule->function);
  g_free (schedule->arn);
  g_free (schedule->input);
  g_free (schedule);
}
