/*
 * sample.h - next-token choice from logits, as transformers' generate does it.
 *
 * The processors run in generate's order (generation/utils.py
 * _get_logits_processor): repetition penalty over the ids seen so far
 * (prompt included), then, when sampling, temperature, top-k, top-p, min-p;
 * greedy takes the first maximal logit (torch.argmax). Each step follows
 * generation/logits_process.py (see sample.c for the rules and lines).
 * Sampling draws from the filtered softmax with vtok's own generator
 * (splitmix64-seeded xoshiro256**): the same seed gives the same tokens here,
 * not the same as torch.multinomial.
 */
#ifndef VT_SAMPLE_H
#define VT_SAMPLE_H

#include "../core/vt.h"

typedef struct vt_sample_params {
    int      greedy;             /* 1: argmax (do_sample=False); the rest unused but the penalty */
    float    temperature;        /* > 0; 1 = off                                                */
    int64_t  top_k;              /* 0 = off                                                     */
    float    top_p;              /* (0, 1]; 1 = off                                             */
    float    min_p;              /* [0, 1]; 0 = off                                             */
    float    repetition_penalty; /* > 0; 1 = off                                                */
    uint64_t seed;
} vt_sample_params;

/* Checks the ranges transformers checks; 0 or VTOK_EINVAL with st set. */
int vt_sample_check(const vt_sample_params *p, vtok_status *st);

typedef struct vt_sample_vi {
    float   v;
    int32_t id;
} vt_sample_vi;

typedef struct vt_sampler {
    vt_sample_params p;
    uint64_t s[4];       /* generator state */
    int64_t  vocab;
    float   *work;       /* vocab floats: filtered logits          */
    int32_t *order;      /* vocab: selection order (top-k)         */
    vt_sample_vi *vi;    /* vocab: (value, id) sorted (top-p)      */
    uint8_t *seen;       /* vocab: repetition penalty marks        */
} vt_sampler;

int  vt_sampler_init(vt_sampler *s, const vt_sample_params *p, int64_t vocab, vtok_status *st);
void vt_sampler_free(vt_sampler *s);

/* The filtered scores transformers would sample from (-inf = removed), in
 * s->work; the processors only (no draw). history: the ids so far. */
void vt_sampler_filter(vt_sampler *s, const float *logits, const int32_t *history,
                       int64_t n_history);

/* The next id: filter, then argmax (greedy) or a draw from softmax(work). */
int32_t vt_sample(vt_sampler *s, const float *logits, const int32_t *history, int64_t n_history);

#endif /* VT_SAMPLE_H */
