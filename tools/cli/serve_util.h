/*
 * serve_util.h - pieces of `vtok serve` that know nothing of HTTP: a growable
 * text buffer with JSON writers, base64 (RFC 4648) and data URIs (RFC 2397),
 * and the Prometheus metrics kept in atomics.
 */
#ifndef VTOK_CLI_SERVE_UTIL_H
#define VTOK_CLI_SERVE_UTIL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- text buffer: every writer is a no-op after an allocation failed ---- */
typedef struct sv_buf {
    char  *p;
    size_t n, cap;
    int    oom;
} sv_buf;

void sv_buf_put(sv_buf *b, const char *s, size_t n);
void sv_buf_str(sv_buf *b, const char *s); /* s as it is */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void sv_buf_printf(sv_buf *b, const char *fmt, ...);
/* A JSON string literal of s[0..n): quotes, backslashes and control
 * characters escaped (RFC 8259 section 7), invalid UTF-8 replaced by U+FFFD
 * so that the output always parses. */
void sv_buf_json_str(sv_buf *b, const char *s, size_t n);
/* n floats as a JSON array of numbers, each printed with 9 significant
 * digits (enough to read back the same float32); NaN / Inf as null. */
void sv_buf_json_floats(sv_buf *b, const float *x, int64_t n);
/* n floats as base64 of their little-endian float32 bytes, in quotes: what
 * the OpenAI client reads with np.frombuffer(base64.b64decode(s), "float32"). */
void sv_buf_b64_floats(sv_buf *b, const float *x, int64_t n);
/* Hand the text over (NUL-terminated; NULL after an allocation failure). */
char *sv_buf_take(sv_buf *b, size_t *len);
void  sv_buf_free(sv_buf *b);

/* ---- base64 ---- */
/* Decode standard base64 (RFC 4648 section 4: A-Z a-z 0-9 + /), padded with
 * '=' or not. Anything else (whitespace, URL-safe letters, a lone trailing
 * character, data after padding, non-zero bits left over in the last
 * character) is refused. *out is malloc'ed (free). Returns 0, or -1 with a
 * reason in why. */
int sv_b64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len,
                  const char **why);
/* Encode n bytes to dst (room for 4 * ceil(n / 3) characters, not
 * NUL-terminated); returns the characters written. */
size_t sv_b64_encode(const unsigned char *src, size_t n, char *dst);

/* A "data:[mediatype][;params];base64,DATA" URI: the decoded bytes (malloc'ed)
 * or -1 with a reason. Only base64 payloads are taken (images are binary). */
int sv_data_uri(const char *s, size_t n, unsigned char **out, size_t *out_len, const char **why);

/* ---- metrics ---- */
enum {
    SV_EP_HEALTH,
    SV_EP_MODELS,
    SV_EP_EMBEDDINGS,
    SV_EP_TOKENIZE,
    SV_EP_DETOKENIZE,
    SV_EP_CHAT,
    SV_EP_METRICS,
    SV_EP_OTHER,
    SV_EP_COUNT
};
#define SV_N_CODES   11 /* the status codes the server sends, plus "other" */
#define SV_N_LAT     12 /* latency buckets, +Inf included                  */
#define SV_N_BATCH   9  /* batch-size buckets, +Inf included               */
#define SV_RATE_SECS 16 /* seconds the rate ring remembers                 */

typedef struct sv_metrics {
    _Atomic uint64_t req[SV_EP_COUNT][SV_N_CODES];
    _Atomic uint64_t lat[SV_EP_COUNT][SV_N_LAT]; /* per bucket, summed when printed */
    _Atomic uint64_t lat_us[SV_EP_COUNT];
    _Atomic uint64_t images, batches, batch_images, batch_max;
    _Atomic uint64_t batch_hist[SV_N_BATCH];
    _Atomic uint64_t gen_tokens, prompt_tokens;
    _Atomic int64_t  in_flight;
    /* images and generated tokens per wall-clock second, a ring */
    _Atomic int64_t  rate_sec[SV_RATE_SECS];
    _Atomic uint64_t rate_img[SV_RATE_SECS], rate_tok[SV_RATE_SECS];
} sv_metrics;

const char *sv_endpoint_name(int ep);
void sv_metrics_request(sv_metrics *m, int ep, int status, double seconds);
void sv_metrics_batch(sv_metrics *m, int64_t images);
void sv_metrics_tokens(sv_metrics *m, int64_t prompt, int64_t generated);
/* The Prometheus text exposition (version 0.0.4) of m plus the gauges given. */
void sv_metrics_print(sv_metrics *m, sv_buf *b, int64_t queue_depth, int64_t chat_queue_depth,
                      int ready);

double sv_now(void); /* CLOCK_MONOTONIC seconds */

/* ---- errors in the OpenAI shape: {"error": {"message", "type", "code"}} ---- */
typedef struct sv_err {
    int         status; /* HTTP status                       */
    const char *type;   /* "invalid_request_error", ...      */
    const char *code;   /* "invalid_image", ... (static)     */
    char        msg[480];
} sv_err;

/* Fill e; returns -1 (for `return sv_fail(...)`). */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
int  sv_fail(sv_err *e, int status, const char *type, const char *code, const char *fmt, ...);
void sv_error_body(sv_buf *b, const sv_err *e);

/* An image from a data URI (input index idx, for messages): base64 decoded,
 * then decoded by vtok_image_decode under ip's limits (pixel counts are
 * checked from the header before any allocation: decompression bombs are
 * refused). 0, or -1 with e filled (400). */
struct vtok_image;
struct vtok_image_params;
int sv_image_from_uri(const char *s, size_t n, const struct vtok_image_params *ip,
                      struct vtok_image *img, int64_t idx, sv_err *e);

#endif
