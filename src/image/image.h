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
#include "../kernels/kernels.h"

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

/* ---- resampling internals (src/image/resample.c) ----
 * Declared here so the ISA file and tests/unit/test_resample.c can reach
 * them; not part of the public API. */

/* VT_RESAMPLE_PRECISION_BITS, vt_resample_coeffs and the resampling passes
 * are in kernels/kernels.h (the kernel table). */

/* vtok_image_resize with a chosen code path: 0 the reference table's passes
 * (plain C, the specification), 1 the AVX2 table's (the reference when the
 * CPU lacks AVX2), -1 the active kernel table's (vt_kernels_get(): the
 * reference when VTOK_FORCE_REF=1 or vtok_force_reference_kernels(1)) -
 * what vtok_image_resize uses. */
int vt_image_resize_isa(const vtok_image *src, int64_t width, int64_t height,
                        vtok_resample filter, int isa, vtok_image *dst, vtok_status *st);

/* ---- decoder internals (src/image/decode*.c, exif.c) ---- */

/* Allocate img->data for w x h RGB8 (after vt_image_check_limits). */
int vt_image_alloc(vtok_image *img, int64_t w, int64_t h, vtok_status *st);

/* Apply EXIF orientation o (2..8) as PIL.ImageOps.exif_transpose does; other
 * values are no-ops. Re-checks the limits when width and height swap. On
 * failure img is freed, so a decoder can end with `return vt_image_orient(...)`. */
int vt_image_orient(vtok_image *img, int o, const vtok_image_params *p, vtok_status *st);

/* Orientation tag (0x0112) of IFD0 of an Exif blob (a TIFF header, optionally
 * preceded by "Exif\0\0"), read as Pillow's Exif class reads it. Returns -1
 * if the blob has no such tag (or is not TIFF), 0 if the tag is present but
 * not a usable integer, else its value. Never reads outside [data, data+size). */
int vt_exif_orientation(const uint8_t *data, size_t size);

/* Pillow's XMP fallback: the digit after the first 'tiff:Orientation="' or
 * 'tiff:Orientation>' in an XMP packet, or -1. */
int vt_xmp_orientation(const uint8_t *data, size_t size);

/* ImageMagick's "Raw profile type exif" text (PNG): hex after the third
 * newline. Decodes into a vt_alloc'ed buffer (*out, *out_size); returns 0 or
 * -1 if the text is not valid hex. */
int vt_exif_from_raw_profile(const uint8_t *text, size_t size, uint8_t **out, size_t *out_size);

/* ---- processors (processor.c) ---- */

struct cJSON;
/* A processor from an already parsed preprocessor_config.json object (the
 * recipes merge their overrides into it first). */
vtok_processor *vt_processor_from_json(const struct cJSON *cfg, vtok_status *st);

/* ---- high-resolution slicing (slice.c) ---- */

#define VT_SLICE_MAX_PIN  64
#define VT_SLICE_MAX_SIDE 65500
#define VT_SLICE_MAX_TILES 256 /* base view + crops of one image */

enum { VT_SLICE_NONE = 0, VT_SLICE_ANYRES, VT_SLICE_UHD };

typedef struct vt_slicing {
    int     type;                      /* VT_SLICE_*                                  */
    int     n_pin;                     /* anyres: (w, h) pinpoints, in list order      */
    int64_t pin[2 * VT_SLICE_MAX_PIN];
    int64_t unit;                      /* uhd: grid cell side (SliME: 336)            */
    int64_t max_slices;                /* uhd: clamp of the cell count (SliME: 6)     */
} vt_slicing;

/* The target resolution bw x bh (multiples of crop) for a W x H image. */
int vt_slice_grid(const vt_slicing *s, int64_t W, int64_t H, int64_t crop, int64_t *bw,
                  int64_t *bh, vtok_status *st);

/* tiles[0] = the image squashed to base x base; tiles[1 + y * gw + x] = crop
 * (x, y) of the image resized and padded on black to bw x bh (gw = bw / crop,
 * gh = bh / crop). Each tile is allocated (vtok_image_free); on failure none. */
int vt_slice_image(const vtok_image *img, int64_t bw, int64_t bh, int64_t crop, int64_t base,
                   vtok_image *tiles, vtok_status *st);

/* The processor's resize side (shortest_edge or the exact height) and crop
 * height (the resize side when it does not crop): LLaVA's
 * processor.size['shortest_edge'] and processor.crop_size['height']. */
void vt_processor_slice_sizes(const vtok_processor *p, int64_t *base, int64_t *crop);

#endif /* VT_IMAGE_H */
