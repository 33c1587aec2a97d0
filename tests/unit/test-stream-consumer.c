/* In-process consumers over a real store: batches in shard order, a failed
 * batch delivered again, checkpoints that survive reopening the store,
 * LATEST, and per-key order across a split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stream.h"

typedef struct {
  char *root;
  EdgeKeyring *keyring;
  EdgeState *state;
  StreamStore *store;
} Fixture;

static void
open_store (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *db = g_build_filename (f->root, "state.db", NULL);
  g_autofree char *dir = g_build_filename (f->root, "streams", NULL);
  f->state = edge_state_open (db, &error);
  assert_non_null (f->state);
  f->store = stream_store_open (dir, f->state, f->keyring, &error);
  if (f->store == NULL)
    fail_msg ("%s", error->message);
}

static void
close_store (Fixture *f)
{
  g_clear_pointer (&f->store, stream_store_close);
  g_clear_pointer (&f->state, edge_state_close);
}

static int
setup (void **state)
{
  Fixture *f = g_new0 (Fixture, 1);
  f->root = g_dir_make_tmp ("edged-consumer-XXXXXX", NULL);
  g_autofree char *key = g_build_filename (f->root, "master.key", NULL);
  f->keyring = edge_keyring_open (key, TRUE, NULL);
  open_store (f);
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  Fixture *f = *state;
  close_store (f);
  edge_keyring_free (f->keyring);
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", f->root);
  assert_int_equal (system (cmd), 0);
  g_free (f->root);
  g_free (f);
  return 0;
}

static void
put_done (StreamPutResult *results, guint n, gpointer data)
{
  for (guint i = 0; i < n; i++)
    assert_null (results[i].error);
  (*(int *) data)--;
}

/* Puts records "k<key>:<seq>" for seq in [from, to) and each of @keys keys;
 * waits until they are acknowledged. */
static void
put (Fixture *f, const char *stream, guint keys, guint from, guint to)
{
  int pending = 0;
  for (guint n = from; n < to; n++) {
    g_autofree StreamPutRecord *records = g_new0 (StreamPutRecord, keys);
    g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func (g_free);
    g_autoptr (GPtrArray) data = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
    for (guint k = 0; k < keys; k++) {
      char *key = g_strdup_printf ("k%u", k);
      char *text = g_strdup_printf ("k%u:%u", k, n);
      g_ptr_array_add (owned, key);
      g_ptr_array_add (data, g_bytes_new_take (text, strlen (text)));
      records[k].partition_key = key;
      records[k].data = g_ptr_array_index (data, k);
    }
    pending++;
    assert_true (stream_store_put (f->store, stream, records, keys, put_done, &pending, NULL));
  }
  while (pending > 0)
    g_main_context_iteration (NULL, TRUE);
}

typedef struct {
  GHashTable *last;  /* key -> last sequence seen (as pointer-sized int + 1) */
  guint delivered;
  guint distinct;
  GHashTable *seen;  /* "k:n" */
  guint fail_first;  /* fail this many batches before succeeding */
  gboolean out_of_order;
  GPtrArray *held;   /* batches held back to finish later */
} Sink;

static void
sink_handle (StreamConsumer *consumer, StreamBatch *batch, gpointer data)
{
  Sink *s = data;
  if (s->fail_first > 0) {
    s->fail_first--;
    stream_consumer_done (consumer, batch, FALSE);
    return;
  }
  for (guint i = 0; i < batch->records->len; i++) {
    StreamRecord *r = g_ptr_array_index (batch->records, i);
    g_autofree char *text = g_strndup (g_bytes_get_data (r->data, NULL), g_bytes_get_size (r->data));
    char *colon = strchr (text, ':');
    g_autofree char *key = g_strndup (text, colon - text);
    guint n = (guint) g_ascii_strtoull (colon + 1, NULL, 10);
    gpointer last = g_hash_table_lookup (s->last, key);
    if (last != NULL && GPOINTER_TO_UINT (last) - 1 >= n)
      s->out_of_order = TRUE;
    g_hash_table_insert (s->last, g_strdup (key), GUINT_TO_POINTER (n + 1));
    s->delivered++;
    if (g_hash_table_add (s->seen, g_strdup (text)))
      s->distinct++;
  }
  stream_consumer_done (consumer, batch, TRUE);
}

static void
sink_init (Sink *s)
{
  memset (s, 0, sizeof *s);
  s->last = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  s->seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

static void
sink_clear (Sink *s)
{
  g_hash_table_unref (s->last);
  g_hash_table_unref (s->seen);
}

static gboolean
wait_for (guint *counter, guint target, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + timeout_ms * 1000;
  while (*counter < target && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE) ? (void) 0 : g_usleep (1000);
  return *counter >= target;
}

static void
test_checkpoints_and_redelivery (void **state)
{
  Fixture *f = *state;
  g_autoptr (GError) error = NULL;
  assert_true (stream_store_create (f->store, "s", 2, NULL, &error));
  put (f, "s", 5, 0, 20); /* 100 records */

  Sink sink;
  sink_init (&sink);
  sink.fail_first = 2;
  StreamConsumer *c = stream_consumer_start (f->store, "s", "app", STREAM_START_TRIM_HORIZON, 7,
                                             sink_handle, &sink, &error);
  assert_non_null (c);
  assert_true (wait_for (&sink.distinct, 100, 10000));
  assert_false (sink.out_of_order);
  assert_int_equal (sink.delivered, 100); /* failed batches were never half-handled */
  stream_consumer_stop (c);

  /* It is a registered consumer. */
  g_autoptr (GPtrArray) consumers = stream_store_list_consumers (f->store, "s", NULL);
  assert_int_equal (consumers->len, 1);

  /* Reopened: the checkpoints hold, only new records come. */
  close_store (f);
  open_store (f);
  put (f, "s", 5, 20, 22); /* 10 more */
  Sink again;
  sink_init (&again);
  c = stream_consumer_start (f->store, "s", "app", STREAM_START_TRIM_HORIZON, 100, sink_handle,
                             &again, &error);
  assert_true (wait_for (&again.distinct, 10, 10000));
  g_usleep (100000);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  assert_int_equal (again.delivered, 10);
  stream_consumer_stop (c);

  /* A new consumer from LATEST sees only what comes after it starts. */
  Sink latest;
  sink_init (&latest);
  c = stream_consumer_start (f->store, "s", "late", STREAM_START_LATEST, 100, sink_handle, &latest,
                             &error);
  put (f, "s", 5, 22, 23);
  assert_true (wait_for (&latest.distinct, 5, 10000));
  g_usleep (100000);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  assert_int_equal (latest.delivered, 5);
  stream_consumer_stop (c);
  sink_clear (&sink);
  sink_clear (&again);
  sink_clear (&latest);
}

static void
test_key_order_across_a_split (void **state)
{
  Fixture *f = *state;
  g_autoptr (GError) error = NULL;
  assert_true (stream_store_create (f->store, "r", 1, NULL, &error));
  put (f, "r", 8, 0, 10);
  const StreamInfo *info = stream_store_lookup (f->store, "r", NULL);
  const StreamShardInfo *parent = g_ptr_array_index (info->shards, 0);
  StreamHashKey mid;
  assert_true (stream_hash_key_parse ("170141183460469231731687303715884105728", &mid));
  StreamNewShard children[2] = { { parent->start, { { 0 } }, parent->id, NULL },
                                 { mid, parent->end, parent->id, NULL } };
  assert_true (stream_hash_key_parse ("170141183460469231731687303715884105727", &children[0].end));
  guint32 close = 0;
  assert_true (stream_store_reshard (f->store, "r", &close, 1, children, 2, &error));
  put (f, "r", 8, 10, 20);
  /* Started now, the consumer finds the parent and its children all
   * holding records: it must finish the parent first. */
  Sink sink;
  sink_init (&sink);
  StreamConsumer *c = stream_consumer_start (f->store, "r", "app", STREAM_START_TRIM_HORIZON, 3,
                                             sink_handle, &sink, &error);
  assert_true (wait_for (&sink.distinct, 160, 10000));
  assert_false (sink.out_of_order);
  stream_consumer_stop (c);
  sink_clear (&sink);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_checkpoints_and_redelivery, setup, teardown),
    cmocka_unit_test_setup_teardown (test_key_order_across_a_split, setup, teardown),
  };
  return cmocka_run_group_tests_name ("stream-consumer", tests, NULL, NULL);
}
