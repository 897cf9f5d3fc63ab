/*
 * ref_act.c - reference activations, in place, written as PyTorch's CPU
 * float kernels write them (aten/src/ATen/native/cpu/Activation.cpp and
 * torch.sigmoid), with libm's expf / erff / tanhf for accuracy:
 *   gelu (erf):   0.5 * x * (1 + erf(x * M_SQRT1_2))        HF "gelu"
 *   gelu (tanh):  x3 = x*x*x; inner = kBeta * (x + 0.044715 * x3);
 *                 0.5 * x * (1 + tanh(inner)), kBeta = sqrt(2/pi)
 *                                                            HF "gelu_new",
 *                                                            "gelu_pytorch_tanh"
 *   quick_gelu:   x * sigmoid(1.702 * x), sigmoid(a) = 1 / (1 + exp(-a))
 *                                                            HF "quick_gelu" (CLIP)
 *   silu:         x / (1 + exp(-x))
 * Every step is a separate float rounding in the order written; ISA
 * versions may differ by a few ulp of each intermediate.
 */
#include "kernels/kernels_internal.h"

#include <math.h>

void vt_ref_gelu_erf_f32(int64_t n, float *x)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2));
    }
}

void vt_ref_gelu_tanh_f32(int64_t n, float *x)
{
    const float kBeta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5);
    const float kKappa = 0.044715f;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float v3 = v * v * v;
        float inner = kBeta * (v + kKappa * v3);
        x[i] = 0.5f * v * (1.0f + tanhf(inner));
    }
}

void vt_ref_quick_gelu_f32(int64_t n, float *x)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = v * (1.0f / (1.0f + expf(-(1.702f * v))));
    }
}

void vt_ref_silu_f32(int64_t n, float *x)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = v / (1.0f + expf(-v));
    }
}

void vt_ref_tanh_f32(int64_t n, float *x)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = tanhf(x[i]);
}
