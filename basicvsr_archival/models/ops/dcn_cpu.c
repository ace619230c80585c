/*
 * Fused bilinear sampling for modulated deformable convolution (DCNv2) on the CPU.
 *
 * Writes the modulated, deformed columns of a row range of output pixels in the layout
 * (P, K, C): cols[p][k][c] = mask[g,k,p] * bilinear(x[c], p_k + offset[g,k,p]),
 * with g = c / (C / G) the deform group of input channel c.  The caller multiplies the
 * columns with the weight reshaped to (K * C, O) (one GEMM), so the whole layer is
 *
 *     y(p) = b + sum_k w_k * x(p + p_k + dp_k) * m_k            (Zhu et al., DCNv2, eq. 3)
 *
 * Semantics follow mmcv's modulated_deformable_im2col exactly: a sampling point outside
 * (-1, H) x (-1, W) gives 0; inside, each of the four bilinear corners that falls outside
 * the image contributes 0 (zero padding).
 *
 * x is channels-last (N, H, W, C) so the Cg channels of a deform group that share one
 * offset are contiguous: one coordinate/weight computation serves Cg channels, and the
 * channel loop is a plain vectorisable multiply-add.  No threads here: the Python side
 * splits the pixel range across threads (ctypes releases the GIL).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

void dcn_im2col_f32(const float *restrict x, const float *restrict offset, const float *restrict mask,
                    float *restrict cols, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo,
                    int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                    int64_t dw, int64_t G, int64_t p0, int64_t p1, int64_t col_p0) {
    const int64_t K = kh * kw;
    const int64_t Cg = C / G;
    const int64_t HWo = Ho * Wo;
    const float fH = (float)H, fW = (float)W;
    for (int64_t p = p0; p < p1; ++p) {
        /* 1. pixel p of the flattened (N, Ho, Wo) output grid */
        const int64_t n = p / HWo;
        const int64_t r = p - n * HWo;
        const int64_t ho = r / Wo;
        const int64_t wo = r - ho * Wo;
        const float *xn = x + n * H * W * C;
        const float *offn = offset + n * G * K * 2 * HWo + r;
        const float *mn = mask + n * G * K * HWo + r;
        float *dst = cols + (p - col_p0) * K * C;
        for (int64_t g = 0; g < G; ++g) {
            for (int64_t k = 0; k < K; ++k) {
                const int64_t ki = k / kw;
                const int64_t kj = k - ki * kw;
                /* 2. sampling point p_k + dp_k; offset channels are (g, k, [dy, dx]) */
                const float dy = offn[((g * K + k) * 2) * HWo];
                const float dx = offn[((g * K + k) * 2 + 1) * HWo];
                const float m = mn[(g * K + k) * HWo];
                const float py = (float)(ho * sh - ph + ki * dh) + dy;
                const float px = (float)(wo * sw - pw + kj * dw) + dx;
                float *restrict d = dst + k * C + g * Cg;
                if (!(py > -1.0f && px > -1.0f && py < fH && px < fW)) {
                    memset(d, 0, (size_t)Cg * sizeof(float));
                    continue;
                }
                /* 3. bilinear weights, modulated by the mask, zero for corners off the image */
                const float fy = floorf(py), fx = floorf(px);
                const int64_t y0 = (int64_t)fy, x0 = (int64_t)fx;
                const float ly = py - fy, lx = px - fx;
                const float hy = 1.0f - ly, hx = 1.0f - lx;
                float w00 = hy * hx * m, w01 = hy * lx * m, w10 = ly * hx * m, w11 = ly * lx * m;
                if (y0 < 0) w00 = w01 = 0.0f;
                if (y0 + 1 > H - 1) w10 = w11 = 0.0f;
                if (x0 < 0) w00 = w10 = 0.0f;
                if (x0 + 1 > W - 1) w01 = w11 = 0.0f;
                const int64_t yc0 = y0 < 0 ? 0 : y0, yc1 = y0 + 1 > H - 1 ? H - 1 : y0 + 1;
                const int64_t xc0 = x0 < 0 ? 0 : x0, xc1 = x0 + 1 > W - 1 ? W - 1 : x0 + 1;
                const float *restrict a00 = xn + (yc0 * W + xc0) * C + g * Cg;
                const float *restrict a01 = xn + (yc0 * W + xc1) * C + g * Cg;
                const float *restrict a10 = xn + (yc1 * W + xc0) * C + g * Cg;
                const float *restrict a11 = xn + (yc1 * W + xc1) * C + g * Cg;
                /* 4. the Cg channels of the group share the weights */
                if (Cg == 8) { /* BasicVSR++: 128 channels in 16 groups; a fixed trip count vectorises */
                    for (int c = 0; c < 8; ++c) {
                        d[c] = w00 * a00[c] + w01 * a01[c] + w10 * a10[c] + w11 * a11[c];
                    }
                } else {
                    for (int64_t c = 0; c < Cg; ++c) {
                        d[c] = w00 * a00[c] + w01 * a01[c] + w10 * a10[c] + w11 * a11[c];
                    }
                }
            }
        }
    }
}
