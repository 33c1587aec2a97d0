/* images.h: still images decoded from recorded keyframes (media/images.c). */
#pragma once

#include "service.h"

G_BEGIN_DECLS

typedef struct {
  gboolean png;   /* PNG instead of JPEG */
  guint width;    /* 0: from the height and the aspect ratio, or the source's */
  guint height;
  guint quality;  /* JPEG quality 1 to 100; 0: 85 */
} MediaImageOptions;

/* Decodes the keyframe that starts @fragment (played against @init) into
 * one image. Blocks (up to 10 s): for worker threads. (transfer full) */
GBytes *media_image_decode (GBytes *init, GBytes *fragment, const MediaImageOptions *options,
                            GError **error);

/* Decodes the keyframe of each fragment in @numbers (guint64; 0: none, the
 * point gets no image) against the init segments @init_ids (guint32) on a
 * worker thread; @done gets, per point, the image or NULL and an error
 * message or NULL, on the main thread. */
typedef void (*MediaImagesDone) (GPtrArray *images, GPtrArray *errors, gpointer user_data);
void media_images_async (MediaService *service, const char *camera, GArray *numbers,
                         GArray *init_ids, const MediaImageOptions *options, MediaImagesDone done,
                         gpointer user_data);

G_END_DECLS
