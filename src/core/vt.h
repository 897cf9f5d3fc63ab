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

/* Half-precision conversions (exact; NaN payloads preserved as quiet NaN). */
float vt_f16_to_f32(uint16_t h);
float vt_bf16_to_f32(uint16_t h);

/* a*b into *out; returns 0 on overflow (or negative operand), 1 otherwise. */
int vt_mul_ok(int64_t a, int64_t b, int64_t *out);

#endif /* VT_H */
