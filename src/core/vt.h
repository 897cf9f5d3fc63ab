/*
 * vt.h - private core of vtok: status helpers, dtypes, small utilities.
 *
 * Everything under src/ includes this; nothing outside src/ may. Errors are
 * carried in a vtok_status (code + one-line message) so that loaders deep in
 * the stack can say exactly which tensor or key is wrong.
 */
#ifndef VT_H
#define VT_H

#include "vtok.h"

#include <stddef.h>
#include <stdint.h>

#define VT_ALIGN 64

/* Control characters (newline, ESC, ...) of msg replaced by '?', in place:
 * vt_fail applies it, so every status message is one printable line. */
void vt_msg_oneline(char *msg);

/* Set st (may be NULL) to code + printf-style message; returns code. */
int vt_fail(vtok_status *st, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/*
 * The params ABI rule of vtok.h: copy the caller's struct `src` (whose first
 * member is its size_t size) over `dst`, which already holds the library's
 * defaults and is `full` bytes. Reads exactly src->size bytes: a smaller
 * size keeps the defaults of the fields after it; a larger one is accepted
 * only if the bytes beyond `full` are zero. src NULL: dst stays the
 * defaults. Returns 0, VTOK_EINVAL (size 0) or VTOK_EUNSUPPORTED, with a
 * message naming `what`.
 */
int vt_params_read(void *dst, size_t full, const void *src, const char *what, vtok_status *st);

/* The init half of the rule: zero `size` bytes of dst, copy the defaults
 * that fit, set the size field. */
void vt_params_init(void *dst, size_t size, const void *defaults, size_t full);

/* Element types that appear in weight files. */
typedef enum vt_dtype {
    VT_F32 = 0, VT_F16, VT_BF16, VT_F64,
    VT_I64, VT_I32, VT_I16, VT_I8, VT_U8, VT_BOOL,
    VT_F8_E4M3, VT_F8_E5M2,
    VT_DTYPE_COUNT
} vt_dtype;

const char *vt_dtype_name(vt_dtype t);   /* "F32", "BF16", ... as safetensors spells them */
size_t      vt_dtype_size(vt_dtype t);   /* bytes per element */

/* 64-byte aligned allocation; free with vt_free. Returns NULL on failure or size overflow. */
void *vt_alloc(size_t size);
void *vt_calloc(size_t n, size_t size);
void  vt_free(void *p);
/* Milliseconds of the monotonic clock (stage timings). */
double vt_now_ms(void);

/* Half-precision conversions (exact; NaN payloads preserved as quiet NaN). */
float vt_f16_to_f32(uint16_t h);
float vt_bf16_to_f32(uint16_t h);
/* float -> IEEE half, round to nearest even (torch's .to(float16)). */
uint16_t vt_f32_to_f16(float x);

/* Grow the malloc'ed array *pp (a T **, passed as void *) of *cap elements of
 * elsz bytes to hold at least need (doubling, at least 16); 1 on success, 0
 * out of memory (the array untouched). */
int vt_grow(void *pp, int64_t *cap, int64_t need, size_t elsz);

/* The side of the smallest square holding n cells: the least s >= 0 with
 * s * s >= n (a token map's side; s * s == n when n is a square). */
int64_t vt_square_side(int64_t n);

/* a*b into *out; returns 0 on overflow (or negative operand), 1 otherwise. */
int vt_mul_ok(int64_t a, int64_t b, int64_t *out);

/* Id formats as recipes write them ("<img_%05d>": one %d, %Nd or %0Nd with
 * N <= 9, %% escapes): parsed by vtok, never passed to printf.
 * vt_id_format_check: 0 if f is one. vt_id_format: the text of id, like
 * snprintf (returns the full length, or -1 for a bad format). */
int     vt_id_format_check(const char *f);
int64_t vt_id_format(const char *f, int64_t id, char *out, size_t n);
/* vt_id_parse: the id whose vt_id_format text is exactly text, or -1. */
int     vt_id_parse(const char *f, const char *text, int64_t *id);

/* Model paths: vt_is_dir, 1 if path is a directory; vt_folder_of, the folder
 * of path (path itself if a directory, else the part before its last '/',
 * "." without one) into dir[n], returning vt_is_dir(path). */
int vt_is_dir(const char *path);
int vt_folder_of(const char *path, char *dir, size_t n);

/* Saturating size arithmetic for memory plans. Work sizes are sums of products
 * of caller-given counts (images, tokens, widths); computed with these, a size
 * that does not fit in int64_t becomes VT_SIZE_INF, which every later product
 * and sum keeps, and the planner (vt_plan_floats) refuses it as over the memory
 * limit. So the size formulas never overflow and the check is made once, where
 * memory is planned; a forward pass only runs on sizes the plan accepted.
 * Operands are >= 0 (a negative one also gives VT_SIZE_INF). */
#define VT_SIZE_INF INT64_MAX

static inline int64_t vt_szmul(int64_t a, int64_t b)
{
    int64_t r;
    return a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) ? VT_SIZE_INF : r;
}

static inline int64_t vt_szmul3(int64_t a, int64_t b, int64_t c)
{
    return vt_szmul(vt_szmul(a, b), c);
}

static inline int64_t vt_szadd(int64_t a, int64_t b)
{
    int64_t r;
    return a < 0 || b < 0 || __builtin_add_overflow(a, b, &r) ? VT_SIZE_INF : r;
}

/* n rounded up to a multiple of 16 floats (64 bytes), saturating. */
static inline int64_t vt_szr16(int64_t n)
{
    return n < 0 || n > VT_SIZE_INF - 15 ? VT_SIZE_INF : (n + 15) / 16 * 16;
}

#endif /* VT_H */
