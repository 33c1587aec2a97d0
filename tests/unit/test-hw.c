/* Board detection from a fake /proc and /sys tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gpio.h"
#include "hw.h"

#include <glib/gstdio.h>
#include <gst/gst.h>

static char *
make_tree (const char *const *files)
{
  char *root = g_dir_make_tmp ("edged-hw-XXXXXX", NULL);
  for (guint i = 0; files[i]; i += 2) {
    g_autofree char *path = g_build_filename (root, files[i], NULL);
    g_autofree char *dir = g_path_get_dirname (path);
    g_mkdir_with_parents (dir, 0700);
    /* Device-tree strings end in NUL: keep it, as the kernel does. */
    g_file_set_contents (path, files[i + 1], strlen (files[i + 1]) + 1, NULL);
  }
  return root;
}

static void
remove_tree (char *root)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", root);
  assert_int_equal (system (cmd), 0);
  g_free (root);
}

static void
test_raspberry_pi (void **state)
{
  static const char *const files[] = { "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0",
                                       "proc/meminfo", "MemTotal:        8245760 kB\nMemFree: 1 kB\n",
                                       "proc/cpuinfo",
                                       "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\n"
                                       "CPU architecture: 8\nCPU part\t: 0xd0b\n\nprocessor\t: 1\n",
                                       NULL };
  char *root = make_tree (files);
  g_autoptr (HwBoard) b = hw_board_detect (root);
  assert_string_equal (b->model, "Raspberry Pi 5 Model B Rev 1.0");
  assert_true (b->raspberry_pi);
  assert_string_equal (b->cpu_model, "Cortex-A76");
  assert_int_equal (b->memory_bytes, 8245760ULL * 1024);
  assert_true (b->cpus >= 1);
  remove_tree (root);
}

static void
test_x86_dmi_and_unknown (void **state)
{
  static const char *const files[] = { "sys/class/dmi/id/sys_vendor", "Intel Corporation\n",
                                       "sys/class/dmi/id/product_name", "NUC8i5BEH\n",
                                       "proc/cpuinfo",
                                       "processor\t: 0\nvendor_id\t: GenuineIntel\n"
                                       "model name\t: Intel(R) Core(TM) i5-8259U CPU @ 2.30GHz\n",
                                       NULL };
  char *root = make_tree (files);
  g_autoptr (HwBoard) b = hw_board_detect (root);
  assert_string_equal (b->model, "Intel Corporation NUC8i5BEH");
  assert_string_equal (b->cpu_model, "Intel(R) Core(TM) i5-8259U CPU @ 2.30GHz");
  assert_false (b->raspberry_pi);
  assert_int_equal (b->memory_bytes, 0);
  remove_tree (root);

  static const char *const none[] = { NULL };
  root = make_tree (none);
  g_autoptr (HwBoard) u = hw_board_detect (root);
  assert_string_equal (u->model, "unknown");
  assert_non_null (u->arch);
  remove_tree (root);
}

/* ---- choices from recorded probes ---- */

static HwProbe *
load_probe (const char *name)
{
  g_autofree char *path = g_build_filename (g_getenv ("HW_PROBES"), name, NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  assert_true (json_parser_load_from_file (parser, path, &error));
  HwProbe *probe = hw_probe_from_json (json_parser_get_root (parser), &error);
  if (probe == NULL)
    fail_msg ("%s: %s", name, error->message);
  return probe;
}

static gboolean
reasons_mention (const HwChoice *choice, const char *text)
{
  for (guint i = 0; i < choice->reasons->len; i++)
    if (strstr (g_ptr_array_index (choice->reasons, i), text))
      return TRUE;
  return FALSE;
}

static void
test_choice_raspberry_pi_4 (void **state)
{
  g_autoptr (HwProbe) probe = load_probe ("raspberry-pi-4.json");
  g_autoptr (HwChoice) c = hw_choose (probe);
  assert_string_equal (c->profile, "raspberry-pi-4");
  assert_string_equal (c->encoder, "v4l2h264enc");
  assert_int_equal (c->encoder_threads, 0);
  assert_string_equal (c->decoder_h264, "v4l2h264dec");
  assert_string_equal (c->decoder_h265, "avdec_h265 max-threads=1");
  assert_true (c->passthrough);
  assert_true (reasons_mention (c, "v4l2h264enc, the board's hardware encoder"));
  /* The USB camera sends H.264 and is recorded as sent; the CSI one is raw. */
  assert_true (reasons_mention (c, "v4l2:///dev/video0 (HD Pro Webcam C920): sends H.264"));
  assert_true (reasons_mention (c, "(imx219): raw video, encoded here"));

  /* The same board without its codec driver falls back to x264 on 3 of 4
   * cores, and says why. */
  g_autoptr (HwProbe) bare = load_probe ("raspberry-pi-4-no-codec.json");
  g_autoptr (HwChoice) b = hw_choose (bare);
  assert_string_equal (b->profile, "raspberry-pi-4");
  assert_string_equal (b->encoder, "x264enc");
  assert_int_equal (b->encoder_threads, 3);
  assert_string_equal (b->decoder_h264, "avdec_h264 max-threads=1");
  assert_true (reasons_mention (b, "bcm2835-codec, /dev/video11) did not work here"));
}

static void
test_choice_raspberry_pi_5 (void **state)
{
  g_autoptr (HwProbe) probe = load_probe ("raspberry-pi-5.json");
  g_autoptr (HwChoice) c = hw_choose (probe);
  assert_string_equal (c->profile, "raspberry-pi-5");
  assert_string_equal (c->encoder, "x264enc");
  assert_int_equal (c->encoder_threads, 3);
  assert_string_equal (c->decoder_h264, "avdec_h264 max-threads=1");
  assert_string_equal (c->decoder_h265, "v4l2slh265dec");
  assert_true (c->passthrough);
  assert_true (reasons_mention (c, "no H.264 encoder block"));
  assert_true (reasons_mention (c, "3 threads, leaving one of the 4 Cortex-A76 cores"));
  g_autofree char *pipeline = hw_encoder_pipeline (c->encoder, c->encoder_threads, 2000, 30);
  assert_non_null (strstr (pipeline, "x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 "
                                     "key-int-max=30 threads=3"));
}

static void
test_choice_x86 (void **state)
{
  g_autoptr (HwProbe) vaapi = load_probe ("x86-vaapi.json");
  g_autoptr (HwChoice) v = hw_choose (vaapi);
  assert_string_equal (v->profile, "x86-vaapi");
  assert_string_equal (v->encoder, "vah264enc");
  assert_string_equal (v->decoder_h264, "vah264dec");
  assert_string_equal (v->decoder_h265, "vah265dec");
  /* Eight cores: x264 would not be limited, but VA-API is chosen anyway. */
  assert_int_equal (v->encoder_threads, 0);

  /* NVENC works; the VA elements load but fail, and are passed over. */
  g_autoptr (HwProbe) nvenc = load_probe ("x86-nvenc.json");
  g_autoptr (HwChoice) n = hw_choose (nvenc);
  assert_string_equal (n->profile, "nvenc");
  assert_string_equal (n->encoder, "nvh264enc");
  assert_string_equal (n->decoder_h264, "nvh264dec");
  assert_string_equal (n->decoder_h265, "nvh265dec");

  g_autoptr (HwProbe) soft = load_probe ("x86-software.json");
  g_autoptr (HwChoice) s = hw_choose (soft);
  assert_string_equal (s->profile, "software");
  assert_string_equal (s->encoder, "x264enc");
  assert_int_equal (s->encoder_threads, 1);
  assert_string_equal (s->decoder_h264, "avdec_h264 max-threads=1");
  assert_true (reasons_mention (s, "No hardware H.264 encoder found"));

  g_autoptr (HwProbe) none = load_probe ("no-encoder.json");
  g_autoptr (HwChoice) z = hw_choose (none);
  assert_string_equal (z->profile, "software");
  assert_string_equal (z->encoder, "");
  assert_true (reasons_mention (z, "only cameras that send H.264"));
  assert_true (reasons_mention (z, "v4l2:///dev/video1 (USB Camera): sends H.264, recorded as sent"));
}

/* A probe written as JSON reads back the same; what is not a probe is
 * refused with a reason. */
static void
test_probe_json (void **state)
{
  g_autoptr (HwProbe) probe = load_probe ("raspberry-pi-5.json");
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  hw_probe_to_json (probe, b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) node = json_builder_get_root (b);
  g_autoptr (GError) error = NULL;
  g_autoptr (HwProbe) again = hw_probe_from_json (node, &error);
  assert_non_null (again);
  assert_string_equal (again->board->model, "Raspberry Pi 5 Model B Rev 1.0");
  assert_string_equal (again->board->cpu_model, "Cortex-A76");
  assert_int_equal (again->cameras->len, 1);
  assert_int_equal (again->codecs->len, probe->codecs->len);
  assert_true (hw_probe_codec (again, "v4l2slh265dec")->works);
  assert_false (hw_probe_codec (again, "v4l2h264enc")->present);

  static const char *const bad[] = {
    "[]", "{}", "{\"board\": {\"model\": \"x\"}, \"codecs\": []}",
    "{\"board\": {\"model\": \"x\", \"arch\": \"y\"}, \"codecs\": [{\"element\": \"a\"}]}",
    "{\"board\": {\"model\": \"x\", \"arch\": \"y\"}, \"codecs\": [1]}",
    "{\"board\": {\"model\": \"x\", \"arch\": \"y\"}, \"codecs\": [], \"cameras\": [{}]}",
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (JsonNode) doc = json_from_string (bad[i], NULL);
    g_autoptr (GError) e = NULL;
    assert_null (hw_probe_from_json (doc, &e));
    assert_non_null (strstr (e->message, "not a probe"));
  }
}

static const HwCodec *
first_hardware_encoder (const HwProbe *probe)
{
  for (guint i = 0; i < probe->codecs->len; i++) {
    const HwCodec *c = g_ptr_array_index (probe->codecs, i);
    if (c->encoder && c->hardware && c->works)
      return c;
  }
  return NULL;
}

/* The probe of this machine: what it says works really encodes, and what
 * is not installed is never called working. */
static void
test_probe_this_machine (void **state)
{
  gst_init (NULL, NULL);
  g_autoptr (HwProbe) probe = hw_probe_run ("/", HW_PROBE_TEST_CODECS);
  g_autoptr (HwChoice) choice = hw_choose (probe);
  const HwCodec *x264 = hw_probe_codec (probe, "x264enc");
  g_autoptr (GstElementFactory) factory = gst_element_factory_find ("x264enc");

  assert_non_null (x264);
  assert_int_equal (x264->present, factory != NULL);
  if (factory) {
    assert_true (x264->works);
    assert_non_null (strstr (x264->detail, "encoded 10 test frames"));
    assert_true (x264->test_ms > 0);
  }
  for (guint i = 0; i < probe->codecs->len; i++) {
    const HwCodec *c = g_ptr_array_index (probe->codecs, i);
    if (!c->present)
      assert_false (c->works);
  }
  /* No hardware codec on the machines this runs on: software it is. */
  if (factory && first_hardware_encoder (probe) == NULL) {
    assert_string_equal (choice->profile, "software");
    assert_string_equal (choice->encoder, "x264enc");
  }
  /* A fragment edged does not know is refused, not guessed. */
  assert_null (hw_encoder_pipeline ("madeupenc", 0, 1000, 30));
}

/* ---- GPIO ---- */

#define MS (G_GINT64_CONSTANT (1000000))

static void
test_debounce_contact (void **state)
{
  HwDebounce d;
  int level;
  gint64 ns;
  const gint64 t0 = 1000 * MS;
  hw_debounce_init (&d, HW_GPIO_EDGES_BOTH, 20 * MS, 0);

  /* A contact closing bounces for 4 ms, then holds: one change, stamped
   * with its first edge, reported once it has held 20 ms. */
  const HwGpioEdge bounce[] = { { t0, TRUE }, { t0 + 1 * MS, FALSE }, { t0 + 2 * MS, TRUE },
                                { t0 + 3 * MS, FALSE }, { t0 + 4 * MS, TRUE } };
  for (guint i = 0; i < G_N_ELEMENTS (bounce); i++)
    assert_false (hw_debounce_edge (&d, &bounce[i], &level, &ns));
  assert_int_equal (hw_debounce_deadline (&d), t0 + 24 * MS);
  assert_false (hw_debounce_poll (&d, t0 + 23 * MS, &level, &ns));
  assert_true (hw_debounce_poll (&d, t0 + 24 * MS, &level, &ns));
  assert_int_equal (level, 1);
  assert_int_equal (ns, t0);
  assert_int_equal (hw_debounce_deadline (&d), -1);

  /* A 5 ms glitch low, back high: nothing. */
  const HwGpioEdge glitch[] = { { t0 + 100 * MS, FALSE }, { t0 + 105 * MS, TRUE } };
  for (guint i = 0; i < G_N_ELEMENTS (glitch); i++)
    assert_false (hw_debounce_edge (&d, &glitch[i], &level, &ns));
  assert_false (hw_debounce_poll (&d, t0 + 200 * MS, &level, &ns));

  /* The contact opens; the next edge, 300 ms later, shows it had settled:
   * reported from that edge even before any poll. */
  const HwGpioEdge open = { t0 + 300 * MS, FALSE }, close = { t0 + 600 * MS, TRUE };
  assert_false (hw_debounce_edge (&d, &open, &level, &ns));
  assert_true (hw_debounce_edge (&d, &close, &level, &ns));
  assert_int_equal (level, 0);
  assert_int_equal (ns, t0 + 300 * MS);
  assert_true (hw_debounce_poll (&d, t0 + 700 * MS, &level, &ns));
  assert_int_equal (level, 1);
  assert_int_equal (ns, t0 + 600 * MS);
}

static void
test_debounce_zero_and_pulses (void **state)
{
  HwDebounce d;
  int level;
  gint64 ns;
  int reported = 0;

  /* No debounce: every edge is a change, even read in one batch. */
  hw_debounce_init (&d, HW_GPIO_EDGES_BOTH, 0, 0);
  for (int i = 0; i < 6; i++) {
    HwGpioEdge e = { (i + 1) * MS, i % 2 == 0 };
    reported += hw_debounce_edge (&d, &e, &level, &ns);
  }
  reported += hw_debounce_poll (&d, 10 * MS, &level, &ns);
  assert_int_equal (reported, 6);
  assert_int_equal (level, 0);
  assert_int_equal (ns, 6 * MS);

  /* A PIR's rising edges: each is an event at once, chatter within
   * 50 ms of the last edge dropped. */
  hw_debounce_init (&d, HW_GPIO_EDGES_RISING, 50 * MS, 0);
  const gint64 times[] = { 0, 10 * MS, 30 * MS, 2000 * MS, 2040 * MS, 2100 * MS };
  const gboolean expected[] = { TRUE, FALSE, FALSE, TRUE, FALSE, TRUE };
  for (guint i = 0; i < G_N_ELEMENTS (times); i++) {
    HwGpioEdge e = { times[i] + 5000 * MS, TRUE };
    assert_int_equal (hw_debounce_edge (&d, &e, &level, &ns), expected[i]);
    if (expected[i])
      assert_int_equal (ns, e.timestamp_ns);
  }
  assert_int_equal (hw_debounce_deadline (&d), -1);
}

/* Waits up to @ms for @line's fd and takes an edge. */
static gboolean
wait_edge (HwGpioLine *line, guint ms, HwGpioEdge *edge)
{
  gint64 end = g_get_monotonic_time () + ms * 1000;
  while (g_get_monotonic_time () < end) {
    if (hw_gpio_read_edge (line, edge))
      return TRUE;
    GPollFD pfd = { hw_gpio_fd (line), G_IO_IN, 0 };
    g_poll (&pfd, 1, (int) MAX (1, (end - g_get_monotonic_time ()) / 1000));
  }
  return FALSE;
}

static void
test_gpio_replay (void **state)
{
  g_autofree char *dir = g_dir_make_tmp ("edged-gpio-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "edges.txt", NULL);
  g_autofree char *chip = g_strconcat ("replay:", path, NULL);
  g_autoptr (GError) error = NULL;
  /* gpiomon's own output, lines 17 and 27 interleaved. */
  static const char recording[] =
      "event:  RISING EDGE offset: 17 timestamp: [1700000000.100000000]\n"
      "event:  RISING EDGE offset: 27 timestamp: [1700000000.150000000]\n"
      "event: FALLING EDGE offset: 17 timestamp: [1700000000.400000000]\n";
  assert_true (g_file_set_contents (path, recording, -1, NULL));

  g_autoptr (HwGpioLine) line = hw_gpio_open_input (chip, "17", HW_GPIO_EDGES_BOTH, FALSE,
                                                    HW_GPIO_BIAS_AS_IS, "test", &error);
  assert_non_null (line);
  assert_int_equal (hw_gpio_offset (line), 17);
  assert_int_equal (hw_gpio_get (line, NULL), 0);
  gint64 opened = g_get_monotonic_time () * 1000;
  HwGpioEdge first, second, none;
  assert_true (wait_edge (line, 1000, &first));
  assert_true (first.rising);
  assert_int_equal (hw_gpio_get (line, NULL), 1);
  assert_true (wait_edge (line, 1000, &second));
  assert_false (second.rising);
  /* Paced as recorded: 300 ms apart, stamped from when replay began. */
  assert_int_equal (second.timestamp_ns - first.timestamp_ns, 300 * MS);
  assert_true (ABS (first.timestamp_ns - opened) < 50 * MS);
  assert_true (g_get_monotonic_time () * 1000 >= second.timestamp_ns);
  assert_false (wait_edge (line, 100, &none));

  /* Outputs append their physical level to FILE.out; active_low inverts. */
  g_autoptr (HwGpioLine) relay = hw_gpio_open_output (chip, "5", TRUE, 0, "test", &error);
  assert_non_null (relay);
  assert_true (hw_gpio_set (relay, 1, &error));
  assert_int_equal (hw_gpio_get (relay, NULL), 1);
  assert_false (hw_gpio_set (line, 1, &error));
  g_clear_error (&error);
  g_autofree char *out_path = g_strconcat (path, ".out", NULL);
  g_autofree char *out = NULL;
  assert_true (g_file_get_contents (out_path, &out, NULL, NULL));
  g_auto (GStrv) entries = g_strsplit (g_strstrip (out), "\n", -1);
  assert_int_equal (g_strv_length (entries), 2);
  assert_true (g_str_has_suffix (entries[0], " 5 1")); /* the initial 0, inverted */
  assert_true (g_str_has_suffix (entries[1], " 5 0"));

  /* A recording that is not gpiomon's is refused with the line number. */
  assert_true (g_file_set_contents (path, "event:  RISING EDGE offset: 17\n", -1, NULL));
  assert_null (hw_gpio_open_input (chip, "17", HW_GPIO_EDGES_BOTH, FALSE, HW_GPIO_BIAS_AS_IS,
                                   "test", &error));
  assert_non_null (strstr (error->message, "edges.txt:1: not a gpiomon event line"));
  g_clear_error (&error);
  /* A real chip that is not there says so. */
  assert_null (hw_gpio_open_input ("gpiochip-none", "3", HW_GPIO_EDGES_BOTH, FALSE,
                                   HW_GPIO_BIAS_AS_IS, "test", &error));
  assert_non_null (strstr (error->message, "gpiochip-none"));
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", dir);
  assert_int_equal (system (cmd), 0);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_raspberry_pi),
    cmocka_unit_test (test_x86_dmi_and_unknown),
    cmocka_unit_test (test_choice_raspberry_pi_4),
    cmocka_unit_test (test_choice_raspberry_pi_5),
    cmocka_unit_test (test_choice_x86),
    cmocka_unit_test (test_probe_json),
    cmocka_unit_test (test_probe_this_machine),
    cmocka_unit_test (test_debounce_contact),
    cmocka_unit_test (test_debounce_zero_and_pulses),
    cmocka_unit_test (test_gpio_replay),
  };
  return cmocka_run_group_tests_name ("hw", tests, NULL, NULL);
}
