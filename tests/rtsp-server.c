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
 */
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>

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
  g_autofree char *launch = g_strdup_printf (
      "( videotestsrc is-live=true pattern=%s ! video/x-raw,width=%u,height=%u,framerate=%u/1 "
      "! videoconvert ! %s )",
      g_getenv ("RTSP_PATTERN") ? g_getenv ("RTSP_PATTERN") : "ball", width, height, fps,
      encoder);
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
