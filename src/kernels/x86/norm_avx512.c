#include "kernels/kernels_internal.h"
void vt_layernorm_f32_avx512(int64_t n, const float *x, const float *w, const float *b,
                             float eps, float *y) { vt_ref_layernorm_f32(n, x, w, b, eps, y); }
void vt_softmax_f32_avx512(int64_t n, float *x) { vt_ref_softmax_f32(n, x); }
