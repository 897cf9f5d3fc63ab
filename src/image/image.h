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

/* ---- resampling internals (src/image/resample.c, resample_avx2.c) ----
 * Declared here so the ISA file and tests/unit/test_resample.c can reach
 * them; not part of the public API. */

/* Pillow's fixed-point format for 8-bit resampling (libImaging/Resample.c,
 * PRECISION_BITS = 32 - 8 - 2): coefficients carry 22 fraction bits, sums
 * start at 1 << 21 (round half up), results are clip8(sum >> 22). */
#define VT_RESAMPLE_PRECISION_BITS (32 - 8 - 2)

/* One axis' coefficients as Pillow's precompute_coeffs +
 * normalize_coeffs_8bpc make them: output i reads n = bounds[2i+1] source
 * pixels from bounds[2i] on, with weights k[i*ksize .. i*ksize+n). */
typedef struct vt_resample_coeffs {
    int      out_size;
    int      ksize;   /* row stride of k (Pillow's ksize) */
    int32_t *bounds;  /* [out_size][2]: first source index, tap count */
    int32_t *k;       /* [out_size][ksize], VT_RESAMPLE_PRECISION_BITS fraction */
} vt_resample_coeffs;

/* vtok_image_resize with a chosen code path: 0 plain C (the specification),
 * 1 AVX2 (plain C when the CPU lacks AVX2), -1 best available unless the
 * reference kernels are forced (VTOK_FORCE_REF=1 or
 * vtok_force_reference_kernels(1)) - what vtok_image_resize uses. */
int vt_image_resize_isa(const vtok_image *src, int64_t width, int64_t height,
                        vtok_resample filter, int isa, vtok_image *dst, vtok_status *st);

/* AVX2 passes (resample_avx2.c), bit-identical to the plain-C ones.
 * Horizontal: rows of src (stride src_stride bytes, RGB8, in_w pixels) ->
 * rows of dst (stride dst_stride, c->out_size pixels). It reads up to 8
 * bytes past a pixel it uses, so a row whose read would pass src_end is first
 * copied into pad (at least in_w * 3 + 32 bytes). table is
 * vt_resample_h_avx2_table_ints(c) int32s filled by vt_resample_h_avx2_prepare.
 * Vertical: dst row i = taps of c over src rows; row_bytes per row. */
size_t vt_resample_h_avx2_table_ints(const vt_resample_coeffs *c);
void   vt_resample_h_avx2_prepare(const vt_resample_coeffs *c, int32_t *table);
void   vt_resample_h_avx2(const uint8_t *src, size_t src_stride, int rows, int in_w,
                          const uint8_t *src_end, uint8_t *pad, uint8_t *dst,
                          size_t dst_stride, const vt_resample_coeffs *c,
                          const int32_t *table);
void   vt_resample_v_avx2(const uint8_t *src, size_t src_stride, size_t row_bytes,
                          uint8_t *dst, size_t dst_stride, const vt_resample_coeffs *c);

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

#endif /* VT_IMAGE_H */
