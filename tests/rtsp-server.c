/* rtsp-server: a camera for the tests. Serves rtsp://127.0.0.1:PORT/cam,
 * H.264 from a moving test pattern, with the gst-rtsp-server library. The
 * tests stop and restart it to take the source away and give it back.
 *
 *   rtsp-server PORT [KEYFRAME_FRAMES [WIDTH HEIGHT FPS KBPS]]
 *
 * (bench/media uses the larger sizes.) With RTSP_USER and RTSP_PASS in the
 * environment, clients must log in with them (Basic; Digest with
 * RTSP_AUTH=digest);
 * RTSP_PATTERN picks the videotestsrc pattern (snow: a stream at its full
 * bitrate); RTSP_CODEC=h265 sends H.265 (x265) instead of H.264.
 *
 * RTSP_PATTERN=scene is a scene the test steers, for motion detection: a
 * grey background and a white square in the right half of the picture
 * that stands still until a line "move" arrives on standard input, and
 * moves to and fro until "still". Each command is answered with "ok" once
 * the next frame shows it.
 */
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>
#include <stdio.h>
#include <string.h>

/* ---- the steered scene ---- */

typedef struct {
  guint width, height, fps;
  GstAppSrc *src; /* while a client plays the media */
  gboolean moving;
  gboolean answer; /* a command waits for its frame */
  guint step;      /* frames moved so far */
} Scene;

static void
scene_draw (Scene *scene, guint8 *y_plane, guint8 *u_plane, guint8 *v_plane)
{
  guint w = scene->width, h = scene->height, side = h / 8;
  memset (y_plane, 70, (gsize) w * h);
  memset (u_plane, 128, (gsize) (w / 2) * (h / 2));
  memset (v_plane, 128, (gsize) (w / 2) * (h / 2));
  /* To and fro between 55% and 95% of the width, a tenth of it a second. */
  guint span = (guint) (w * 0.40) - side, period = 2 * span;
  guint travelled = scene->step * (w / 10) / scene->fps % period;
  guint x = (guint) (w * 0.55) + (travelled < span ? travelled : period - travelled);
  guint y = h / 2 - side / 2;
  for (guint row = y; row < y + side; row++)
    memset (y_plane + (gsize) row * w + x, 230, side);
}

static gboolean
scene_tick (gpointer data)
{
  Scene *scene = data;
  if (scene->moving)
    scene->step++;
  if (scene->src == NULL)
    return G_SOURCE_CONTINUE;
  gsize y_size = (gsize) scene->width * scene->height, c_size = y_size / 4;
  GstBuffer *buffer = gst_buffer_new_allocate (NULL, y_size + 2 * c_size, NULL);
  GstMapInfo map;
  gst_buffer_map (buffer, &map, GST_MAP_WRITE);
  scene_draw (scene, map.data, map.data + y_size, map.data + y_size + c_size);
  gst_buffer_unmap (buffer, &map);
  GST_BUFFER_DURATION (buffer) = GST_SECOND / scene->fps;
  gst_app_src_push_buffer (scene->src, buffer);
  if (scene->answer) {
    g_print ("ok\n");
    scene->answer = FALSE;
  }
  return G_SOURCE_CONTINUE;
}

static gboolean
on_command (GIOChannel *channel, GIOCondition condition, gpointer data)
{
  Scene *scene = data;
  g_autofree char *line = NULL;
  if (g_io_channel_read_line (channel, &line, NULL, NULL, NULL) != G_IO_STATUS_NORMAL)
    return G_SOURCE_REMOVE;
  g_strstrip (line);
  if (g_str_equal (line, "move"))
    scene->moving = TRUE;
  else if (g_str_equal (line, "still"))
    scene->moving = FALSE;
  scene->answer = TRUE;
  return G_SOURCE_CONTINUE;
}

static void
on_media_configure (GstRTSPMediaFactory *factory, GstRTSPMedia *media, gpointer data)
{
  Scene *scene = data;
  GstElement *bin = gst_rtsp_media_get_element (media);
  GstElement *src = gst_bin_get_by_name (GST_BIN (bin), "scene");
  g_clear_object (&scene->src);
  scene->src = GST_APP_SRC (src);
  gst_object_unref (bin);
}

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  if (argc < 2) {
    g_printerr ("usage: rtsp-server PORT [KEYFRAME_FRAMES]\n");
    return 2;
  }
  guint keyframes = argc > 2 ? (guint) g_ascii_strtoull (argv[2], NULL, 10) : 30;
  guint width = argc > 6 ? (guint) g_ascii_strtoull (argv[3], NULL, 10) : 320;
  guint height = argc > 6 ? (guint) g_ascii_strtoull (argv[4], NULL, 10) : 240;
  guint fps = argc > 6 ? (guint) g_ascii_strtoull (argv[5], NULL, 10) : 15;
  guint kbps = argc > 6 ? (guint) g_ascii_strtoull (argv[6], NULL, 10) : 300;
  GMainLoop *loop = g_main_loop_new (NULL, FALSE);
  GstRTSPServer *server = gst_rtsp_server_new ();
  gst_rtsp_server_set_address (server, "127.0.0.1");
  gst_rtsp_server_set_service (server, argv[1]);
  GstRTSPMountPoints *mounts = gst_rtsp_server_get_mount_points (server);
  GstRTSPMediaFactory *factory = gst_rtsp_media_factory_new ();
  gboolean h265 = g_strcmp0 (g_getenv ("RTSP_CODEC"), "h265") == 0;
  g_autofree char *encoder =
      h265 ? g_strdup_printf ("x265enc tune=zerolatency speed-preset=ultrafast key-int-max=%u "
                              "bitrate=%u ! rtph265pay name=pay0 pt=96 config-interval=-1",
                              keyframes, kbps)
           : g_strdup_printf ("x264enc tune=zerolatency speed-preset=ultrafast key-int-max=%u "
                              "bitrate=%u ! rtph264pay name=pay0 pt=96 config-interval=-1",
                              keyframes, kbps);
  const char *pattern = g_getenv ("RTSP_PATTERN") ? g_getenv ("RTSP_PATTERN") : "ball";
  g_autofree char *launch = NULL;
  if (g_str_equal (pattern, "scene")) {
    static Scene scene;
    scene = (Scene) { .width = width, .height = height, .fps = fps };
    launch = g_strdup_printf ("( appsrc name=scene is-live=true do-timestamp=true format=time "
                              "caps=video/x-raw,format=I420,width=%u,height=%u,framerate=%u/1 "
                              "! videoconvert ! %s )",
                              width, height, fps, encoder);
    g_signal_connect (factory, "media-configure", G_CALLBACK (on_media_configure), &scene);
    g_timeout_add (1000 / fps, scene_tick, &scene);
    GIOChannel *in = g_io_channel_unix_new (0);
    g_io_add_watch (in, G_IO_IN | G_IO_HUP, on_command, &scene);
  } else {
    launch = g_strdup_printf (
        "( videotestsrc is-live=true pattern=%s ! video/x-raw,width=%u,height=%u,framerate=%u/1 "
        "! videoconvert ! %s )",
        pattern, width, height, fps, encoder);
  }
  gst_rtsp_media_factory_set_launch (factory, launch);
  gst_rtsp_media_factory_set_shared (factory, TRUE);
  const char *user = g_getenv ("RTSP_USER"), *pass = g_getenv ("RTSP_PASS");
  if (user && pass) {
    GstRTSPAuth *auth = gst_rtsp_auth_new ();
    GstRTSPToken *token = gst_rtsp_token_new (GST_RTSP_TOKEN_MEDIA_FACTORY_ROLE, G_TYPE_STRING,
                                              "camera", NULL);
    if (g_strcmp0 (g_getenv ("RTSP_AUTH"), "digest") == 0) {
      gst_rtsp_auth_set_supported_methods (auth, GST_RTSP_AUTH_DIGEST);
      gst_rtsp_auth_add_digest (auth, user, pass, token);
    } else {
      g_autofree char *basic = gst_rtsp_auth_make_basic (user, pass);
      gst_rtsp_auth_add_basic (auth, basic, token);
    }
    gst_rtsp_token_unref (token);
    gst_rtsp_server_set_auth (server, auth);
    g_object_unref (auth);
    GstRTSPPermissions *permissions = gst_rtsp_permissions_new ();
    gst_rtsp_permissions_add_role (permissions, "camera", GST_RTSP_PERM_MEDIA_FACTORY_ACCESS,
                                   G_TYPE_BOOLEAN, TRUE, GST_RTSP_PERM_MEDIA_FACTORY_CONSTRUCT,
                                   G_TYPE_BOOLEAN, TRUE, NULL);
    gst_rtsp_media_factory_set_permissions (factory, permissions);
    gst_rtsp_permissions_unref (permissions);
  }
  gst_rtsp_mount_points_add_factory (mounts, "/cam", factory);
  g_object_unref (mounts);
  if (gst_rtsp_server_attach (server, NULL) == 0) {
    g_printerr ("rtsp-server: cannot listen on port %s\n", argv[1]);
    return 1;
  }
  g_print ("ready\n");
  g_main_loop_run (loop);
  return 0;
}
