#include "kernels/kernels_internal.h"
void vt_gelu_erf_f32_avx512(int64_t n, float *x) { vt_ref_gelu_erf_f32(n, x); }
void vt_gelu_tanh_f32_avx512(int64_t n, float *x) { vt_ref_gelu_tanh_f32(n, x); }
void vt_quick_gelu_f32_avx512(int64_t n, float *x) { vt_ref_quick_gelu_f32(n, x); }
void vt_silu_f32_avx512(int64_t n, float *x) { vt_ref_silu_f32(n, x); }
void vt_tanh_f32_avx512(int64_t n, float *x) { vt_ref_tanh_f32(n, x); }
