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
 *
 * Two entry points:
 *   dcn_im2col_f32            offsets and masks given (mmcv layout, NCHW planes);
 *   dcn_flow_guided_im2col_f32  BasicVSR++'s SecondOrderDeformableAlignment: offsets and masks
 *                             computed on the fly from the raw conv_offset output and two flows
 *                             (no offset/mask tensors are ever written).
 * The tanh and logistic functions of the flow-guided kernel use exp_f below, a polynomial exp
 * written in plain arithmetic so that the per-pixel loops vectorise (-fno-trapping-math) without
 * a vector math library.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Bilinear samples of the GK = G * K points of one output pixel, written to dst (K, C), for images
 * of fewer than 2^31 elements (32-bit corner offsets; the caller checks): point
 * j = g * K + k at (py[j], px[j]) with modulation m[j] fills dst[k * C + g * Cg + (0 .. Cg)].
 * mmcv's semantics: a point outside (-1, H) x (-1, W) gives 0; inside, each of the four bilinear
 * corners that falls off the image contributes 0.  Two passes, so that the first vectorises:
 *   1. per point: corner weights (validity and mask folded in, 0 where a corner is off the image)
 *      and clamped corner offsets, for all GK points at once (branch-free loops over arrays);
 *   2. per point: the Cg-channel weighted sum of its four corners (the gather). */
static void sample_points(const float *restrict xn, int64_t H, int64_t W, int64_t C, int64_t Cg, int64_t K,
                          int64_t GK, const float *restrict py, const float *restrict px,
                          const float *restrict m, float *restrict dst) {
    float w00[GK], w01[GK], w10[GK], w11[GK];
    int32_t i00[GK], i01[GK], i10[GK], i11[GK];
    const float fh = (float)H, fw = (float)W;
    for (int64_t j = 0; j < GK; ++j) {
        const float y = py[j], x = px[j];
        const int inside = y > -1.0f && x > -1.0f && y < fh && x < fw;
        /* clamp before floor so the integer conversion is defined for any input (NaN -> -2) */
        const float ylo = y > -2.0f ? y : -2.0f, xlo = x > -2.0f ? x : -2.0f;
        const float yc = ylo < fh + 1.0f ? ylo : fh + 1.0f, xc = xlo < fw + 1.0f ? xlo : fw + 1.0f;
        const float fy = floorf(yc), fx = floorf(xc);
        const float ly = yc - fy, lx = xc - fx, hy = 1.0f - ly, hx = 1.0f - lx;
        const int32_t y0 = (int32_t)fy, x0 = (int32_t)fx;
        const float mm = inside ? m[j] : 0.0f;
        const float vy0 = y0 >= 0 ? 1.0f : 0.0f, vy1 = y0 + 1 <= H - 1 ? 1.0f : 0.0f;
        const float vx0 = x0 >= 0 ? 1.0f : 0.0f, vx1 = x0 + 1 <= W - 1 ? 1.0f : 0.0f;
        w00[j] = hy * hx * mm * vy0 * vx0;
        w01[j] = hy * lx * mm * vy0 * vx1;
        w10[j] = ly * hx * mm * vy1 * vx0;
        w11[j] = ly * lx * mm * vy1 * vx1;
        const int32_t ya = y0 < 0 ? 0 : (y0 > H - 1 ? (int32_t)H - 1 : y0);
        const int32_t yb = y0 + 1 < 0 ? 0 : (y0 + 1 > H - 1 ? (int32_t)H - 1 : y0 + 1);
        const int32_t xa = x0 < 0 ? 0 : (x0 > W - 1 ? (int32_t)W - 1 : x0);
        const int32_t xb = x0 + 1 < 0 ? 0 : (x0 + 1 > W - 1 ? (int32_t)W - 1 : x0 + 1);
        i00[j] = (ya * (int32_t)W + xa) * (int32_t)C;
        i01[j] = (ya * (int32_t)W + xb) * (int32_t)C;
        i10[j] = (yb * (int32_t)W + xa) * (int32_t)C;
        i11[j] = (yb * (int32_t)W + xb) * (int32_t)C;
    }
    for (int64_t g = 0, j = 0; g < GK / K; ++g)
        for (int64_t k = 0; k < K; ++k, ++j) {
            const float *restrict a00 = xn + i00[j] + g * Cg, *restrict a01 = xn + i01[j] + g * Cg;
            const float *restrict a10 = xn + i10[j] + g * Cg, *restrict a11 = xn + i11[j] + g * Cg;
            float *restrict d = dst + k * C + g * Cg;
            const float b00 = w00[j], b01 = w01[j], b10 = w10[j], b11 = w11[j];
            if (Cg == 8) {
                for (int c = 0; c < 8; ++c) d[c] = b00 * a00[c] + b01 * a01[c] + b10 * a10[c] + b11 * a11[c];
            } else {
                for (int64_t c = 0; c < Cg; ++c) d[c] = b00 * a00[c] + b01 * a01[c] + b10 * a10[c] + b11 * a11[c];
            }
        }
}

void dcn_im2col_f32(const float *restrict x, const float *restrict offset, const float *restrict mask,
                    float *restrict cols, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo,
                    int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                    int64_t dw, int64_t G, int64_t p0, int64_t p1, int64_t col_p0) {
    const int64_t K = kh * kw;
    const int64_t GK = G * K;
    const int64_t Cg = C / G;
    const int64_t HWo = Ho * Wo;
    float py[GK], px[GK], m[GK], ky[GK], kx[GK];
    for (int64_t j = 0; j < GK; ++j) { /* kernel point k = j % K relative to the window corner */
        ky[j] = (float)(((j % K) / kw) * dh);
        kx[j] = (float)(((j % K) % kw) * dw);
    }
    for (int64_t p = p0; p < p1; ++p) {
        /* 1. pixel p of the flattened (N, Ho, Wo) output grid */
        const int64_t n = p / HWo;
        const int64_t r = p - n * HWo;
        const int64_t ho = r / Wo;
        const int64_t wo = r - ho * Wo;
        const float *xn = x + n * H * W * C;
        const float *offn = offset + n * G * K * 2 * HWo + r;
        const float *mn = mask + n * G * K * HWo + r;
        /* 2. sampling points p_k + dp_k; offset channels are (g, k, [dy, dx]), NCHW planes */
        const float by = (float)(ho * sh - ph), bx = (float)(wo * sw - pw);
        for (int64_t j = 0; j < GK; ++j) {
            py[j] = (by + ky[j]) + offn[(2 * j) * HWo];
            px[j] = (bx + kx[j]) + offn[(2 * j + 1) * HWo];
            m[j] = mn[j * HWo];
        }
        /* 3. bilinear samples of the groups' channels, modulated by the mask */
        sample_points(xn, H, W, C, Cg, K, GK, py, px, m, cols + (p - col_p0) * K * C);
    }
}

/* exp(x) for float x (clamped to [-87, 88]): Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, a
 * degree-6 Taylor polynomial of e^r (relative error < 2e-7) and 2^n from the exponent bits. */
static inline float exp_f(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float n = floorf(x * 1.44269504088896341f + 0.5f);
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Offsets mrm * tanh(raw[j]) (tanh x = 1 - 2 / (e^2x + 1)) and masks sigmoid(raw[2GK + j]) of one
 * pixel; both loops vectorise.  Absolute error vs double precision: < 3e-6 px offset (mrm = 10),
 * < 1e-7 mask. */
static void flow_guided_params(const float *restrict raw, int64_t sc, float *restrict off, float *restrict msk,
                               int64_t GK, float mrm) {
    if (sc == 1) { /* channels-last raw: contiguous channels */
        for (int64_t j = 0; j < 2 * GK; ++j) off[j] = mrm * (1.0f - 2.0f / (exp_f(2.0f * raw[j]) + 1.0f));
        for (int64_t j = 0; j < GK; ++j) msk[j] = 1.0f / (1.0f + exp_f(-raw[2 * GK + j]));
        return;
    }
    /* NCHW raw: gather the pixel's channels (consecutive pixels share the cache lines), then vectorise */
    float v[3 * GK];
    for (int64_t j = 0; j < 3 * GK; ++j) v[j] = raw[j * sc];
    for (int64_t j = 0; j < 2 * GK; ++j) off[j] = mrm * (1.0f - 2.0f / (exp_f(2.0f * v[j]) + 1.0f));
    for (int64_t j = 0; j < GK; ++j) msk[j] = 1.0f / (1.0f + exp_f(-v[2 * GK + j]));
}

/* Columns of SecondOrderDeformableAlignment (stride 1, dilation 1, output size = input size):
 *
 *   raw = conv_offset(...) at pixel p, 3*G*K channels: element (n, j, r) at n*3GK*HW + j*rsc + r*rsp
 *         (channels-last (N, H, W, 3GK): rsc = 1, rsp = 3GK; NCHW planes: rsc = HW, rsp = 1);
 *   offset = mrm * tanh(raw[0 : 2GK]) + flow   (flow_1 for groups < G/2, flow_2 for the rest,
 *            added as (dy, dx) to every kernel point: the official ``flow.flip(1).repeat``);
 *   mask   = sigmoid(raw[2GK : 3GK]);
 *   cols[p][k][c] = mask[g,k] * bilinear(x[c], p_k + offset[g,k]).
 *
 * flow1/flow2 are (N, 2, H, W) with channels (dx, dy). */
void dcn_flow_guided_im2col_f32(const float *restrict x, const float *restrict raw,
                                const float *restrict flow1, const float *restrict flow2, float mrm,
                                float *restrict cols, int64_t H, int64_t W, int64_t C, int64_t kh, int64_t kw,
                                int64_t ph, int64_t pw, int64_t G, int64_t rsc, int64_t rsp, int64_t p0, int64_t p1,
                                int64_t col_p0) {
    const int64_t K = kh * kw;
    const int64_t GK = G * K;
    const int64_t Cg = C / G;
    const int64_t HW = H * W;
    float off[2 * GK], msk[GK], py[GK], px[GK], ky[GK], kx[GK];
    int32_t second[GK]; /* point j = g * K + k follows flow_2 when its group g >= G / 2 */
    for (int64_t j = 0; j < GK; ++j) { /* kernel point k = j % K relative to the pixel */
        ky[j] = (float)((j % K) / kw - ph);
        kx[j] = (float)((j % K) % kw - pw);
        second[j] = 2 * (j / K) >= G;
    }
    for (int64_t p = p0; p < p1; ++p) {
        /* 1. pixel p of the flattened (N, H, W) grid */
        const int64_t n = p / HW;
        const int64_t r = p - n * HW;
        const int64_t ho = r / W;
        const int64_t wo = r - ho * W;
        const float *xn = x + n * HW * C;
        /* 2. offsets and masks of this pixel from its raw conv_offset channels */
        flow_guided_params(raw + n * 3 * GK * HW + r * rsp, rsc, off, msk, GK, mrm);
        const float f1x = flow1[n * 2 * HW + r], f1y = flow1[n * 2 * HW + HW + r];
        const float f2x = flow2[n * 2 * HW + r], f2y = flow2[n * 2 * HW + HW + r];
        float *dst = cols + (p - col_p0) * K * C;
        /* 3. sampling points p_k + flow + residue (offset channels are (g, k, [dy, dx])) */
        for (int64_t j = 0; j < GK; ++j) {
            py[j] = ((float)ho + ky[j]) + (off[2 * j] + (second[j] ? f2y : f1y));
            px[j] = ((float)wo + kx[j]) + (off[2 * j + 1] + (second[j] ? f2x : f1x));
        }
        sample_points(xn, H, W, C, Cg, K, GK, py, px, msk, dst);
    }
}

/* flow_warp (mmedit semantics: grid_sample, bilinear, zero padding, align_corners=True) of the
 * pixels [p0, p1) of the flattened (N, H, W) grid:
 *
 *   out[p] = bilinear(x, (ho, wo) + flow[p]),   flow[p] = (dx, dy) at flow + n*fsn + r*fsp (+ fsc)
 *
 * x and out are channels-last (N, H, W, C).  The sampling position goes through grid_sample's own
 * normalisation, g = 2 (base + d) / (size - 1) - 1 and back, i = (g + 1) * (size - 1) / 2, so the
 * result matches F.grid_sample up to float rounding of the bilinear sum.  Corners off the image
 * contribute 0 (zero padding). */
void flow_warp_f32(const float *restrict x, const float *restrict flow, float *restrict out, int64_t H,
                   int64_t W, int64_t C, int64_t fsn, int64_t fsp, int64_t fsc, int64_t p0, int64_t p1) {
    const int64_t HW = H * W;
    const float dw = (float)(W - 1 > 1 ? W - 1 : 1), dh = (float)(H - 1 > 1 ? H - 1 : 1);
    const float sw = 0.5f * (float)(W - 1), sh = 0.5f * (float)(H - 1);
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t n = p / HW, r = p - n * HW, ho = r / W, wo = r - ho * W;
        const float *f = flow + n * fsn + r * fsp;
        const float gx = 2.0f * ((float)wo + f[0]) / dw - 1.0f, gy = 2.0f * ((float)ho + f[fsc]) / dh - 1.0f;
        const float ix = (gx + 1.0f) * sw, iy = (gy + 1.0f) * sh;
        float *restrict o = out + p * C;
        if (ix != ix || iy != iy) { /* NaN position: NaN out, as grid_sample gives */
            for (int64_t c = 0; c < C; ++c) o[c] = ix + iy;
            continue;
        }
        if (!(iy > -2.0f && ix > -2.0f && iy < (float)H + 1.0f && ix < (float)W + 1.0f)) {
            memset(o, 0, (size_t)C * sizeof(float)); /* far outside: every corner is off the image */
            continue;
        }
        const float fy = floorf(iy), fx = floorf(ix);
        const int64_t y0 = (int64_t)fy, x0 = (int64_t)fx;
        const float ly = iy - fy, lx = ix - fx, hy = 1.0f - ly, hx = 1.0f - lx;
        const int vy0 = y0 >= 0 && y0 < H, vy1 = y0 + 1 >= 0 && y0 + 1 < H;
        const int vx0 = x0 >= 0 && x0 < W, vx1 = x0 + 1 >= 0 && x0 + 1 < W;
        const float w00 = vy0 && vx0 ? hy * hx : 0.0f, w01 = vy0 && vx1 ? hy * lx : 0.0f;
        const float w10 = vy1 && vx0 ? ly * hx : 0.0f, w11 = vy1 && vx1 ? ly * lx : 0.0f;
        const int64_t ya = vy0 ? y0 : (vy1 ? y0 + 1 : 0), yb = vy1 ? y0 + 1 : ya;
        const int64_t xa = vx0 ? x0 : (vx1 ? x0 + 1 : 0), xb = vx1 ? x0 + 1 : xa;
        const float *xn = x + n * HW * C;
        const float *restrict a00 = xn + (ya * W + xa) * C, *restrict a01 = xn + (ya * W + xb) * C;
        const float *restrict a10 = xn + (yb * W + xa) * C, *restrict a11 = xn + (yb * W + xb) * C;
        for (int64_t c = 0; c < C; ++c) o[c] = w00 * a00[c] + w01 * a01[c] + w10 * a10[c] + w11 * a11[c];
    }
}
