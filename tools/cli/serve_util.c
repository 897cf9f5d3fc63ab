/*
 * serve_util.c - text buffer, JSON writers, base64, data URIs and metrics for
 * `vtok serve` (see serve_util.h). Everything here takes untrusted bytes from
 * the network: lengths are checked before every write, sizes are size_t and
 * never wrap, and nothing assumes NUL termination of its input.
 */
#include "serve_util.h"
#include "vtok.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double sv_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ------------------------------------------------------------- buffer -- */

static int grow(sv_buf *b, size_t more)
{
    if (b->oom)
        return -1;
    if (more <= b->cap - b->n && b->p)
        return 0;
    if (more > SIZE_MAX / 2 - b->n) {
        b->oom = 1;
        return -1;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n <= more) /* room for the NUL too */
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void sv_buf_put(sv_buf *b, const char *s, size_t n)
{
    if (grow(b, n + 1))
        return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void sv_buf_str(sv_buf *b, const char *s)
{
    sv_buf_put(b, s, strlen(s));
}

void sv_buf_printf(sv_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)k < sizeof small) {
        sv_buf_put(b, small, (size_t)k);
        return;
    }
    if (grow(b, (size_t)k + 1))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid
 * (overlongs, surrogates and values past U+10FFFF included: RFC 3629). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    unsigned v = c & (0x3F >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    return len;
}

void sv_buf_json_str(sv_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    sv_buf_put(b, "\"", 1);
    size_t i = 0, run = 0; /* bytes [i - run, i) to copy as they are */
    while (i < n) {
        unsigned c = u[i];
        size_t l = c >= 0x20 && c != '"' && c != '\\' ? utf8_len(u + i, n - i) : 0;
        if (l) {
            i += l;
            run += l;
            continue;
        }
        sv_buf_put(b, s + i - run, run);
        run = 0;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sv_buf_put(b, e, 2);
        } else if (c == '\n')
            sv_buf_put(b, "\\n", 2);
        else if (c == '\r')
            sv_buf_put(b, "\\r", 2);
        else if (c == '\t')
            sv_buf_put(b, "\\t", 2);
        else if (c < 0x20)
            sv_buf_printf(b, "\\u%04x", c);
        else
            sv_buf_put(b, "\xEF\xBF\xBD", 3); /* a byte that starts no valid sequence */
        i++;
    }
    sv_buf_put(b, s + i - run, run);
    sv_buf_put(b, "\"", 1);
}

void sv_buf_json_floats(sv_buf *b, const float *x, int64_t n)
{
    /* 9 significant digits identify a float32 (IEEE 754-2008 5.12.2: Pmin = 9) */
    if (n > 0 && grow(b, (size_t)n * 17 + 2))
        return;
    sv_buf_put(b, "[", 1);
    for (int64_t i = 0; i < n; i++) {
        if (grow(b, 20))
            return;
        if (i)
            b->p[b->n++] = ',';
        if (!isfinite(x[i])) {
            memcpy(b->p + b->n, "null", 4);
            b->n += 4;
        } else
            b->n += (size_t)snprintf(b->p + b->n, 18, "%.9g", (double)x[i]);
        b->p[b->n] = '\0';
    }
    sv_buf_put(b, "]", 1);
}

void sv_buf_b64_floats(sv_buf *b, const float *x, int64_t n)
{
    size_t bytes = (size_t)n * 4, chars = (bytes + 2) / 3 * 4;
    unsigned char *raw = malloc(bytes ? bytes : 1);
    if (!raw || grow(b, chars + 3)) {
        free(raw);
        b->oom = 1;
        return;
    }
    for (int64_t i = 0; i < n; i++) { /* little-endian whatever the host is */
        uint32_t u;
        memcpy(&u, &x[i], 4);
        raw[4 * i] = (unsigned char)u;
        raw[4 * i + 1] = (unsigned char)(u >> 8);
        raw[4 * i + 2] = (unsigned char)(u >> 16);
        raw[4 * i + 3] = (unsigned char)(u >> 24);
    }
    b->p[b->n++] = '"';
    b->n += sv_b64_encode(raw, bytes, b->p + b->n);
    b->p[b->n++] = '"';
    b->p[b->n] = '\0';
    free(raw);
}

char *sv_buf_take(sv_buf *b, size_t *len)
{
    if (!b->oom && !b->p)
        sv_buf_put(b, "", 0);
    char *p = b->oom ? NULL : b->p;
    if (len)
        *len = b->oom ? 0 : b->n;
    if (b->oom)
        free(b->p);
    memset(b, 0, sizeof *b);
    return p;
}

void sv_buf_free(sv_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------- base64 -- */

static const char b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

size_t sv_b64_encode(const unsigned char *src, size_t n, char *dst)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        dst[o++] = b64_chars[v >> 18];
        dst[o++] = b64_chars[(v >> 12) & 63];
        dst[o++] = b64_chars[(v >> 6) & 63];
        dst[o++] = b64_chars[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)src[i] << 16;
        dst[o++] = b64_chars[v >> 18];
        dst[o++] = b64_chars[(v >> 12) & 63];
        dst[o++] = '=';
        dst[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
        dst[o++] = b64_chars[v >> 18];
        dst[o++] = b64_chars[(v >> 12) & 63];
        dst[o++] = b64_chars[(v >> 6) & 63];
        dst[o++] = '=';
    }
    return o;
}

int sv_b64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len,
                  const char **why)
{
    const unsigned char *u = (const unsigned char *)s;
    *out = NULL;
    *out_len = 0;
    size_t pad = 0;
    while (pad < 2 && n > pad && u[n - 1 - pad] == '=')
        pad++;
    size_t m = n - pad; /* data characters */
    if (pad && n % 4) {
        *why = "bad base64: padding in the wrong place";
        return -1;
    }
    if (m % 4 == 1) {
        *why = "bad base64: truncated (a lone character at the end)";
        return -1;
    }
    if (pad && (m % 4) + pad != 4) {
        *why = "bad base64: wrong padding";
        return -1;
    }
    size_t len = m / 4 * 3 + (m % 4 ? m % 4 - 1 : 0);
    unsigned char *d = malloc(len ? len : 1);
    if (!d) {
        *why = "out of memory";
        return -1;
    }
    size_t o = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < m; i++) {
        int v = b64_val(u[i]);
        if (v < 0) {
            free(d);
            *why = u[i] == '=' ? "bad base64: '=' inside the data"
                               : "bad base64: a character outside A-Z a-z 0-9 + /";
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            d[o++] = (unsigned char)(acc >> 16);
            d[o++] = (unsigned char)(acc >> 8);
            d[o++] = (unsigned char)acc;
            acc = 0;
        }
    }
    /* RFC 4648 section 3.5: the unused bits of the last character must be 0 */
    if (m % 4 == 2) {
        if (acc & 0xF) {
            free(d);
            *why = "bad base64: non-zero bits after the last byte";
            return -1;
        }
        d[o++] = (unsigned char)(acc >> 4);
    } else if (m % 4 == 3) {
        if (acc & 0x3) {
            free(d);
            *why = "bad base64: non-zero bits after the last byte";
            return -1;
        }
        d[o++] = (unsigned char)(acc >> 10);
        d[o++] = (unsigned char)(acc >> 2);
    }
    *out = d;
    *out_len = o;
    return 0;
}

int sv_data_uri(const char *s, size_t n, unsigned char **out, size_t *out_len, const char **why)
{
    *out = NULL;
    *out_len = 0;
    if (n < 5 || strncmp(s, "data:", 5)) {
        *why = "not a data URI (data:image/...;base64,...)";
        return -1;
    }
    const char *comma = memchr(s, ',', n);
    if (!comma) {
        *why = "bad data URI: no ',' before the data";
        return -1;
    }
    size_t head = (size_t)(comma - s);
    if (head < 12 || strncmp(comma - 7, ";base64", 7)) {
        *why = "bad data URI: only base64 payloads are taken (\";base64,\")";
        return -1;
    }
    return sv_b64_decode(comma + 1, n - head - 1, out, out_len, why);
}

/* ------------------------------------------------------------ metrics -- */

/* the codes the server sends; the last slot counts any other */
static const int codes[SV_N_CODES - 1] = {200, 400, 401, 404, 405, 413, 415, 429, 500, 503};
static const double lat_le[SV_N_LAT - 1] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                            0.5,   1,    2.5,   5,    10};
static const uint64_t batch_le[SV_N_BATCH - 1] = {1, 2, 4, 8, 16, 32, 64, 128};
static const char *const ep_names[SV_EP_COUNT] = {
    "/health", "/v1/models", "/v1/embeddings", "/v1/tokenize", "/v1/detokenize",
    "/v1/chat/completions", "/metrics", "other"};

const char *sv_endpoint_name(int ep)
{
    return ep >= 0 && ep < SV_EP_COUNT ? ep_names[ep] : "other";
}

void sv_metrics_request(sv_metrics *m, int ep, int status, double seconds)
{
    if (ep < 0 || ep >= SV_EP_COUNT)
        ep = SV_EP_OTHER;
    int k = SV_N_CODES - 1;
    for (int i = 0; i < SV_N_CODES - 1; i++)
        if (codes[i] == status)
            k = i;
    atomic_fetch_add(&m->req[ep][k], 1);
    int b = SV_N_LAT - 1;
    for (int i = 0; i < SV_N_LAT - 1; i++)
        if (seconds <= lat_le[i]) {
            b = i;
            break;
        }
    atomic_fetch_add(&m->lat[ep][b], 1);
    atomic_fetch_add(&m->lat_us[ep], (uint64_t)(seconds > 0 ? seconds * 1e6 : 0));
}

/* Add v to the slot of the current second of a rate ring. */
static void rate_add(sv_metrics *m, _Atomic uint64_t *ring, uint64_t v)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    int64_t sec = (int64_t)t.tv_sec;
    int k = (int)(sec % SV_RATE_SECS);
    int64_t old = atomic_load(&m->rate_sec[k]);
    if (old != sec && atomic_compare_exchange_strong(&m->rate_sec[k], &old, sec)) {
        /* a new second takes the slot: forget what an old one left there */
        atomic_store(&m->rate_img[k], 0);
        atomic_store(&m->rate_tok[k], 0);
    }
    atomic_fetch_add(&ring[k], v);
}

/* Mean per second over the last 10 whole seconds. */
static double rate_get(sv_metrics *m, _Atomic uint64_t *ring)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    int64_t now = (int64_t)t.tv_sec;
    uint64_t sum = 0;
    for (int64_t s = now - 10; s < now; s++) {
        int k = (int)(s % SV_RATE_SECS);
        if (atomic_load(&m->rate_sec[k]) == s)
            sum += atomic_load(&ring[k]);
    }
    return (double)sum / 10.0;
}

void sv_metrics_batch(sv_metrics *m, int64_t images)
{
    uint64_t n = images > 0 ? (uint64_t)images : 0;
    atomic_fetch_add(&m->images, n);
    atomic_fetch_add(&m->batches, 1);
    atomic_fetch_add(&m->batch_images, n);
    uint64_t mx = atomic_load(&m->batch_max);
    while (n > mx && !atomic_compare_exchange_weak(&m->batch_max, &mx, n))
        ;
    int b = SV_N_BATCH - 1;
    for (int i = 0; i < SV_N_BATCH - 1; i++)
        if (n <= batch_le[i]) {
            b = i;
            break;
        }
    atomic_fetch_add(&m->batch_hist[b], 1);
    rate_add(m, m->rate_img, n);
}

void sv_metrics_tokens(sv_metrics *m, int64_t prompt, int64_t generated)
{
    atomic_fetch_add(&m->prompt_tokens, (uint64_t)(prompt > 0 ? prompt : 0));
    atomic_fetch_add(&m->gen_tokens, (uint64_t)(generated > 0 ? generated : 0));
    rate_add(m, m->rate_tok, (uint64_t)(generated > 0 ? generated : 0));
}

void sv_metrics_print(sv_metrics *m, sv_buf *b, int64_t queue_depth, int64_t chat_queue_depth,
                      int ready)
{
    sv_buf_str(b, "# HELP vtok_requests_total HTTP requests answered, by endpoint and status code.\n"
                  "# TYPE vtok_requests_total counter\n");
    for (int e = 0; e < SV_EP_COUNT; e++)
        for (int k = 0; k < SV_N_CODES; k++) {
            uint64_t v = atomic_load(&m->req[e][k]);
            if (!v)
                continue;
            if (k < SV_N_CODES - 1)
                sv_buf_printf(b, "vtok_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n",
                              ep_names[e], codes[k], (unsigned long long)v);
            else
                sv_buf_printf(b, "vtok_requests_total{endpoint=\"%s\",code=\"other\"} %llu\n",
                              ep_names[e], (unsigned long long)v);
        }
    sv_buf_str(b, "# HELP vtok_request_duration_seconds Time from the request's headers to "
                  "its last byte sent.\n# TYPE vtok_request_duration_seconds histogram\n");
    for (int e = 0; e < SV_EP_COUNT; e++) {
        uint64_t cum = 0;
        for (int i = 0; i < SV_N_LAT; i++)
            cum += atomic_load(&m->lat[e][i]);
        if (!cum)
            continue;
        cum = 0;
        for (int i = 0; i < SV_N_LAT; i++) {
            cum += atomic_load(&m->lat[e][i]);
            if (i < SV_N_LAT - 1)
                sv_buf_printf(b, "vtok_request_duration_seconds_bucket{endpoint=\"%s\",le=\"%g\"} "
                              "%llu\n", ep_names[e], lat_le[i], (unsigned long long)cum);
            else
                sv_buf_printf(b, "vtok_request_duration_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} "
                              "%llu\n", ep_names[e], (unsigned long long)cum);
        }
        sv_buf_printf(b, "vtok_request_duration_seconds_sum{endpoint=\"%s\"} %.6f\n", ep_names[e],
                      (double)atomic_load(&m->lat_us[e]) * 1e-6);
        sv_buf_printf(b, "vtok_request_duration_seconds_count{endpoint=\"%s\"} %llu\n",
                      ep_names[e], (unsigned long long)cum);
    }
    sv_buf_str(b, "# HELP vtok_batch_images Images per encoder / recipe run (dynamic batching).\n"
                  "# TYPE vtok_batch_images histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < SV_N_BATCH; i++) {
        cum += atomic_load(&m->batch_hist[i]);
        if (i < SV_N_BATCH - 1)
            sv_buf_printf(b, "vtok_batch_images_bucket{le=\"%llu\"} %llu\n",
                          (unsigned long long)batch_le[i], (unsigned long long)cum);
        else
            sv_buf_printf(b, "vtok_batch_images_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)cum);
    }
    sv_buf_printf(b, "vtok_batch_images_sum %llu\nvtok_batch_images_count %llu\n",
                  (unsigned long long)atomic_load(&m->batch_images),
                  (unsigned long long)atomic_load(&m->batches));
    sv_buf_printf(b, "# HELP vtok_batch_images_max Largest batch run so far.\n"
                     "# TYPE vtok_batch_images_max gauge\nvtok_batch_images_max %llu\n",
                  (unsigned long long)atomic_load(&m->batch_max));
    sv_buf_printf(b, "# HELP vtok_images_total Images encoded.\n# TYPE vtok_images_total counter\n"
                     "vtok_images_total %llu\n", (unsigned long long)atomic_load(&m->images));
    sv_buf_printf(b, "# HELP vtok_images_per_second Images encoded per second, mean of the last "
                     "10 s.\n# TYPE vtok_images_per_second gauge\nvtok_images_per_second %.3f\n",
                  rate_get(m, m->rate_img));
    sv_buf_printf(b, "# HELP vtok_prompt_tokens_total Prompt positions evaluated by the LLM.\n"
                     "# TYPE vtok_prompt_tokens_total counter\nvtok_prompt_tokens_total %llu\n",
                  (unsigned long long)atomic_load(&m->prompt_tokens));
    sv_buf_printf(b, "# HELP vtok_generated_tokens_total Tokens generated by the LLM.\n"
                     "# TYPE vtok_generated_tokens_total counter\nvtok_generated_tokens_total %llu\n",
                  (unsigned long long)atomic_load(&m->gen_tokens));
    sv_buf_printf(b, "# HELP vtok_tokens_per_second Generated tokens per second, mean of the last "
                     "10 s.\n# TYPE vtok_tokens_per_second gauge\nvtok_tokens_per_second %.3f\n",
                  rate_get(m, m->rate_tok));
    sv_buf_printf(b, "# HELP vtok_queue_depth Requests waiting for a worker.\n"
                     "# TYPE vtok_queue_depth gauge\nvtok_queue_depth{queue=\"encode\"} %lld\n"
                     "vtok_queue_depth{queue=\"chat\"} %lld\n",
                  (long long)queue_depth, (long long)chat_queue_depth);
    sv_buf_printf(b, "# HELP vtok_requests_in_flight Requests received and not yet answered.\n"
                     "# TYPE vtok_requests_in_flight gauge\nvtok_requests_in_flight %lld\n",
                  (long long)atomic_load(&m->in_flight));
    sv_buf_printf(b, "# HELP vtok_ready 1 once the models are loaded.\n# TYPE vtok_ready gauge\n"
                     "vtok_ready %d\n", ready);
}

/* ------------------------------------------------------------- errors -- */

int sv_fail(sv_err *e, int status, const char *type, const char *code, const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void sv_error_body(sv_buf *b, const sv_err *e)
{
    sv_buf_str(b, "{\"error\":{\"message\":");
    sv_buf_json_str(b, e->msg, strlen(e->msg));
    sv_buf_str(b, ",\"type\":");
    sv_buf_json_str(b, e->type, strlen(e->type));
    sv_buf_str(b, ",\"param\":null,\"code\":");
    if (e->code)
        sv_buf_json_str(b, e->code, strlen(e->code));
    else
        sv_buf_str(b, "null");
    sv_buf_str(b, "}}\n");
}

int sv_image_from_uri(const char *s, size_t n, const vtok_image_params *ip, vtok_image *img,
                      int64_t idx, sv_err *e)
{
    unsigned char *bytes = NULL;
    size_t len = 0;
    const char *why = NULL;
    memset(img, 0, sizeof *img);
    if (n >= 5 && (!strncmp(s, "http:", 5) || (n >= 6 && !strncmp(s, "https:", 6))))
        return sv_fail(e, 400, "invalid_request_error", "invalid_image",
                       "input %lld: remote URLs are not fetched; send the image as a data URI "
                       "(data:image/png;base64,...)", (long long)idx);
    if (sv_data_uri(s, n, &bytes, &len, &why))
        return sv_fail(e, 400, "invalid_request_error", "invalid_image", "input %lld: %s",
                       (long long)idx, why);
    vtok_status st = {0};
    int rc = vtok_image_decode(bytes, len, ip, img, &st);
    free(bytes);
    if (rc)
        return sv_fail(e, 400, "invalid_request_error",
                       rc == VTOK_ELIMIT ? "image_too_large" : "invalid_image",
                       "input %lld: %s", (long long)idx, st.msg[0] ? st.msg : vtok_strerror(rc));
    return 0;
}
