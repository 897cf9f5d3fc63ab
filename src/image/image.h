/*
 * image.h - private image layer: decoders (libjpeg-turbo, libpng, libwebp,
 * giflib) with Pillow's conversion to RGB, and Pillow-exact resampling.
 *
 * Images are untrusted input: dimensions and pixel counts are checked
 * against vtok_image_params before any allocation; every failure is a
 * vtok_status; nothing here aborts.
 */
#ifndef VT_IMAGE_H
#define VT_IMAGE_H

#include "../core/vt.h"

/* Format sniffed from the first bytes. */
typedef enum vt_image_format {
    VT_IMG_UNKNOWN = 0, VT_IMG_JPEG, VT_IMG_PNG, VT_IMG_WEBP, VT_IMG_GIF,
} vt_image_format;

vt_image_format vt_image_sniff(const void *buf, size_t size);

/* Check w x h against the limits; VTOK_ELIMIT with a message if over. */
int vt_image_check_limits(int64_t w, int64_t h, const vtok_image_params *p, vtok_status *st);

/* Per-format decoders: fill out->data (vt_alloc'ed RGB8) or fail cleanly. */
int vt_decode_jpeg(const void *buf, size_t size, const vtok_image_params *p, vtok_image *out,
                   vtok_status *st);
int vt_decode_png(const void *buf, size_t size, const vtok_image_params *p, vtok_image *out,
                  vtok_status *st);
int vt_decode_webp(const void *buf, size_t size, const vtok_image_params *p, vtok_image *out,
                   vtok_status *st);
int vt_decode_gif(const void *buf, size_t size, const vtok_image_params *p, vtok_image *out,
                  vtok_status *st);

#endif /* VT_IMAGE_H */
