/* In-process throughput of one shard log with encryption on: appends of
 * 500-record batches (framing, sealing, pwrite to the page cache; the final
 * fdatasync is outside the timing), then reads of everything back (opening
 * and authenticating every batch). Prints one JSON line.
 *
 *   stream-log-bench RECORDS RECORD_BYTES SEGMENT_MIB
 *
 * With segments larger than the data nothing is rolled and the append rate
 * is the CPU path; with smaller ones each roll syncs the segment it closes,
 * so long runs become bound by the disk. bench/streams/log.py runs every
 * configuration, interleaved, and reports medians.
 */
#include "stream.h"

#include <glib/gstdio.h>
#include <stdio.h>

static double
now (void)
{
  return g_get_monotonic_time () / 1e6;
}

static void
run (EdgeKeyring *keyring, const char *root, guint64 records, gsize size, gint64 segment_bytes)
{
  static guint n;
  g_autofree char *dir = g_strdup_printf ("%s/shard-%u", root, n++);
  StreamLogOptions options = { dir, 0, keyring, "stream/bench", segment_bytes };
  g_autoptr (GError) error = NULL;
  StreamLog *log = stream_log_open (&options, &error);
  if (log == NULL)
    g_error ("%s", error->message);
  enum { BATCH = 500 };
  const char *keys[BATCH];
  GBytes *data[BATCH];
  char key_text[BATCH][16];
  guint8 *payload = g_malloc (size);
  for (gsize i = 0; i < size; i++)
    payload[i] = (guint8) (i * 7);
  for (guint i = 0; i < BATCH; i++) {
    g_snprintf (key_text[i], sizeof key_text[i], "key-%u", i);
    keys[i] = key_text[i];
    data[i] = g_bytes_new_static (payload, size);
  }

  double t0 = now ();
  for (guint64 done = 0; done < records; done += BATCH)
    if (!stream_log_append (log, keys, data, NULL, BATCH, 1, NULL, &error))
      g_error ("%s", error->message);
  double append_s = now () - t0;
  /* Durable before reading, outside both timings. */
  stream_log_sync (log, NULL);

  t0 = now ();
  guint64 next = 0, read = 0;
  while (next < records) {
    GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) stream_record_free);
    if (!stream_log_read (log, next, 10000, 10 << 20, out, &next, &error))
      g_error ("%s", error->message);
    read += out->len;
    g_ptr_array_unref (out);
  }
  double read_s = now () - t0;
  if (read != records)
    g_error ("read %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT, read, records);

  printf ("{\"segment_MiB\": %" G_GINT64_FORMAT ", \"record_bytes\": %zu, \"records\": %" G_GUINT64_FORMAT ", "
          "\"append_records_per_s\": %.0f, \"append_MB_per_s\": %.1f, "
          "\"read_records_per_s\": %.0f, \"read_MB_per_s\": %.1f}\n",
          segment_bytes >> 20, size, records, records / append_s, records * size / append_s / 1e6, records / read_s,
          records * size / read_s / 1e6);
  fflush (stdout);
  for (guint i = 0; i < BATCH; i++)
    g_bytes_unref (data[i]);
  g_free (payload);
  stream_log_close (log);
}

int
main (int argc, char **argv)
{
  if (argc != 4) {
    fprintf (stderr, "usage: stream-log-bench RECORDS RECORD_BYTES SEGMENT_MIB\n");
    return 2;
  }
  guint64 records = g_ascii_strtoull (argv[1], NULL, 10);
  gsize size = (gsize) g_ascii_strtoull (argv[2], NULL, 10);
  gint64 segment = (gint64) g_ascii_strtoull (argv[3], NULL, 10) << 20;
  g_autofree char *root = g_dir_make_tmp ("edged-bench-XXXXXX", NULL);
  g_autofree char *key_path = g_build_filename (root, "master.key", NULL);
  g_autoptr (EdgeKeyring) keyring = edge_keyring_open (key_path, TRUE, NULL);
  run (keyring, root, records, size, segment);
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", root);
  return system (cmd);
}
