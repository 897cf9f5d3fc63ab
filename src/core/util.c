/*
 * util.c - status messages, aligned allocation, dtype facts, half floats.
 */
#include "vt.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

void vt_msg_oneline(char *msg)
{
    for (unsigned char *p = (unsigned char *)msg; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
}

int vt_fail(vtok_status *st, int code, const char *fmt, ...)
{
    if (st) {
        va_list ap;
        va_start(ap, fmt);
        st->code = code;
        vsnprintf(st->msg, sizeof st->msg, fmt, ap);
        va_end(ap);
        /* Messages quote names from files (tensor names, JSON keys), which may
         * hold newlines or escapes: a status message is one printable line
         * (found by tests/fuzz/fuzz_model and fuzz_json). */
        vt_msg_oneline(st->msg);
    }
    return code;
}

/* The params ABI rule of vtok.h; core/ctx.c has the why. Here, not in
 * ctx.c, because the image decoders (and their fuzzer) use it alone. */
int vt_params_read(void *dst, size_t full, const void *src, const char *what, vtok_status *st)
{
    if (!src)
        return 0;
    size_t size;
    memcpy(&size, src, sizeof size);
    if (size < sizeof(size_t))
        return vt_fail(st, VTOK_EINVAL,
                       "%s.size is %zu: start from the default params (they set it)", what, size);
    if (size > full) {
        const unsigned char *b = src;
        for (size_t i = full; i < size; i++)
            if (b[i])
                return vt_fail(st, VTOK_EUNSUPPORTED,
                               "%s sets a field this vtok %s does not know (byte %zu of %zu): "
                               "the program was built against a newer vtok.h",
                               what, vtok_version(), i, size);
        size = full;
    }
    memcpy(dst, src, size);
    return 0;
}

void vt_params_init(void *dst, size_t size, const void *defaults, size_t full)
{
    if (!dst || size < sizeof(size_t))
        return;
    memset(dst, 0, size);
    memcpy(dst, defaults, size < full ? size : full);
    memcpy(dst, &size, sizeof size);
}

const char *vtok_strerror(int code)
{
    switch (code) {
    case VTOK_OK:           return "success";
    case VTOK_EINVAL:       return "invalid argument";
    case VTOK_ENOMEM:       return "out of memory";
    case VTOK_EIO:          return "I/O error";
    case VTOK_EFORMAT:      return "malformed file";
    case VTOK_EUNSUPPORTED: return "unsupported";
    case VTOK_EMISSING:     return "missing tensor or key";
    case VTOK_ESHAPE:       return "wrong shape";
    case VTOK_ELIMIT:       return "limit exceeded";
    case VTOK_EABORTED:     return "aborted";
    default:                return "unknown error";
    }
}

const char *vtok_version(void)
{
    return VTOK_VERSION_STRING;
}

static const struct { const char *name; size_t size; } dtypes[VT_DTYPE_COUNT] = {
    [VT_F32] = {"F32", 4},   [VT_F16] = {"F16", 2},   [VT_BF16] = {"BF16", 2},
    [VT_F64] = {"F64", 8},   [VT_I64] = {"I64", 8},   [VT_I32] = {"I32", 4},
    [VT_I16] = {"I16", 2},   [VT_I8] = {"I8", 1},     [VT_U8] = {"U8", 1},
    [VT_BOOL] = {"BOOL", 1}, [VT_F8_E4M3] = {"F8_E4M3", 1}, [VT_F8_E5M2] = {"F8_E5M2", 1},
};

const char *vt_dtype_name(vt_dtype t)
{
    return (unsigned)t < VT_DTYPE_COUNT ? dtypes[t].name : "?";
}

size_t vt_dtype_size(vt_dtype t)
{
    return (unsigned)t < VT_DTYPE_COUNT ? dtypes[t].size : 0;
}

void *vt_alloc(size_t size)
{
    if (size == 0)
        size = VT_ALIGN;
    if (size > SIZE_MAX - VT_ALIGN)
        return NULL;
    size = (size + VT_ALIGN - 1) / VT_ALIGN * VT_ALIGN;
    return aligned_alloc(VT_ALIGN, size);
}

void *vt_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = vt_alloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void vt_free(void *p)
{
    free(p);
}

double vt_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* float -> IEEE half (binary16), round to nearest even; overflow to +-inf, NaN quiet. */
uint16_t vt_f32_to_f16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: a half denormal (or zero) */
        if (a < 0x33000000u) /* below 2^-25: rounds to zero */
            return (uint16_t)sign;
        const uint32_t m = (a & 0x7fffffu) | 0x800000u;
        const int shift = 126 - (int)(a >> 23); /* 14..24 */
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((a >> 13) - (112u << 10)); /* rebias 127 -> 15 */
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

float vt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: value = man * 2^-24, exact in float32 */
            float v = (float)man * 0x1p-24f;
            memcpy(&bits, &v, 4);
            bits |= sign;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float vt_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int vt_mul_ok(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0)
        return 0;
    if (a != 0 && b > INT64_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

/* ---- id formats ("<img_%05d>"): parsed here, never handed to printf ---- */

/* The one conversion of f: *pre = bytes before it, *width (0: none), *zero,
 * *post = offset after it. Returns 0, or -1 unless f has exactly one %d /
 * %Nd / %0Nd (N <= 9) and otherwise only %% escapes. */
static int id_format_parse(const char *f, size_t *pre, int *width, int *zero, size_t *post)
{
    int found = 0;
    for (size_t i = 0; f[i]; i++) {
        if (f[i] != '%')
            continue;
        if (f[i + 1] == '%') {
            i++;
            continue;
        }
        if (found)
            return -1;
        size_t j = i + 1;
        *zero = f[j] == '0';
        j += (size_t)*zero;
        *width = 0;
        if (f[j] >= '1' && f[j] <= '9')
            *width = f[j++] - '0';
        if (f[j] != 'd')
            return -1;
        *pre = i;
        *post = j + 1;
        found = 1;
        i = j;
    }
    return found ? 0 : -1;
}

int vt_id_format_check(const char *f)
{
    size_t pre, post;
    int width, zero;
    return id_format_parse(f, &pre, &width, &zero, &post);
}

/* Append the literal text of f[a..b) (%% -> %). */
static size_t put_literal(const char *f, size_t a, size_t b, char *out, size_t n, size_t at)
{
    for (size_t i = a; i < b; i++) {
        if (f[i] == '%' && i + 1 < b && f[i + 1] == '%')
            i++;
        if (at + 1 < n)
            out[at] = f[i];
        at++;
    }
    return at;
}

int64_t vt_id_format(const char *f, int64_t id, char *out, size_t n)
{
    size_t pre, post;
    int width, zero;
    if (id_format_parse(f, &pre, &width, &zero, &post))
        return -1;
    char num[32];
    int len = snprintf(num, sizeof num, zero ? "%0*lld" : "%*lld", width, (long long)id);
    size_t at = put_literal(f, 0, pre, out, n, 0);
    for (int i = 0; i < len; i++, at++)
        if (at + 1 < n)
            out[at] = num[i];
    at = put_literal(f, post, strlen(f), out, n, at);
    if (n)
        out[at < n ? at : n - 1] = '\0';
    return (int64_t)at;
}

int vt_id_parse(const char *f, const char *text, int64_t *id)
{
    size_t pre, post;
    int width, zero;
    if (id_format_parse(f, &pre, &width, &zero, &post))
        return -1;
    char head[96], tail[96];
    size_t nh = put_literal(f, 0, pre, head, sizeof head, 0);
    size_t nt = put_literal(f, post, strlen(f), tail, sizeof tail, 0);
    head[nh < sizeof head ? nh : sizeof head - 1] = '\0';
    tail[nt < sizeof tail ? nt : sizeof tail - 1] = '\0';
    size_t n = strlen(text);
    if (nh >= sizeof head || nt >= sizeof tail || n < nh + nt + 1 || memcmp(text, head, nh) ||
        memcmp(text + n - nt, tail, nt))
        return -1;
    int64_t v = 0;
    for (size_t i = nh; i < n - nt; i++) {
        if (text[i] == ' ' && !zero && v == 0)
            continue; /* "%5d" pads with spaces */
        if (text[i] < '0' || text[i] > '9' || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (text[i] - '0');
    }
    /* only the exact text vt_id_format writes: no extra zeros, no other widths */
    char back[192];
    int64_t len = vt_id_format(f, v, back, sizeof back);
    if (len < 0 || (size_t)len != n || strcmp(back, text))
        return -1;
    *id = v;
    return 0;
}

int vt_is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int vt_folder_of(const char *path, char *dir, size_t n)
{
    if (vt_is_dir(path)) {
        snprintf(dir, n, "%s", path);
        return 1;
    }
    const char *s = strrchr(path, '/');
    if (!s)
        snprintf(dir, n, ".");
    else
        snprintf(dir, n, "%.*s", (int)(s - path) > 0 ? (int)(s - path) : 1, path);
    return 0;
}

int vt_grow(void *pp, int64_t *cap, int64_t need, size_t elsz)
{
    if (need <= *cap)
        return 1;
    int64_t nc = *cap ? *cap * 2 : 16;
    if (nc < need)
        nc = need;
    void *np = realloc(*(void **)pp, (size_t)nc * elsz);
    if (!np)
        return 0;
    *(void **)pp = np;
    *cap = nc;
    return 1;
}

int64_t vt_square_side(int64_t n)
{
    int64_t s = 0;
    while (s * s < n)
        s++;
    return s;
}
