/*
 * Winograd F(4x4, 3x3) and F(6x6, 3x3) convolution for float32 CPU inference ('same' 3x3, stride 1,
 * padding 1).
 *
 * Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), eq. 7:
 *
 *     Y = A^T [ U (.) V ] A,   U = G g G^T (3x3 kernel -> a x a),   V = B^T d B (a x a input tile)
 *
 * with a = m + 2 for m x m output tiles, summed over input channels, so each of the a^2 tile
 * positions is one GEMM M[pos] (tiles x c_out) = V[pos] (tiles x c_in) @ U[pos] (c_in x c_out):
 * a^2 multiplications per m x m output pixels and channel pair instead of 9 m^2, i.e. 4x fewer
 * for F(4x4, 3x3) (points 0, +-1, +-2, infinity; Lavin & Gray, section 4.2) and 5.06x fewer for
 * F(6x6, 3x3) (points 0, +-1, +-2, +-1/2, infinity; the matrices of NNPACK and wincnn), at some
 * more float32 rounding (about 1e-6 vs 1e-5 relative).
 *
 * One call computes the output tile rows [ty0, ty1) of one image, in blocks of `tb` tiles along a
 * tile row, so that every intermediate of a block stays in the L2 cache:
 *
 *   1. gather the block's a input rows (with the zero border) into P (rows, cols, c_in8), any
 *      input layout (strides given), from one or several inputs side by side (a fused channel
 *      concatenation), channels padded to a multiple of 8 with zeros;
 *   2. input transform, 8 channels per vector: V (a^2, tb, c_in8);
 *   3. a^2 GEMMs with a 6-tile x 16-channel register block: M (a^2, tb, cc), for chunks of cc <= 64
 *      output channels (V is reused across chunks, M stays small);
 *   4. output transform (+ bias): O (m, m * tb, cc);
 *   5. epilogue and store: y = act(O) (+ residual), written with the output's strides, optionally
 *      pixel-shuffled (PixelShuffle(r) fused: each channel goes straight to its sub-pixel).
 *
 * U is the transformed weight (a^2, c_in8, c_out16) computed once by the caller (in float64).
 * No threads here: the Python side splits the tile rows across workers (ctypes releases the GIL).
 * Vectors are GCC vector extensions (AVX2/FMA in the x86-64-v3 build, SSE2 in the portable one).
 */
#include <stdint.h>
#include <string.h>

#define COUT_CHUNK 64 /* output channels per GEMM + output-transform pass (keeps M in L2) */

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

static inline v8 ld(const float *p) { return *(const v8u *)p; }
static inline void st(float *p, v8 v) { *(v8u *)p = v; }
static inline v8 bc(float s) { return (v8){s, s, s, s, s, s, s, s}; }

typedef int32_t v8i __attribute__((vector_size(32)));

/* act 0: identity, 1: ReLU, 2: LeakyReLU(slope) (a bitwise select: no branches per element). */
static inline v8 activate(v8 v, int64_t act, float slope) {
    if (act == 0) return v;
    const v8i pos = v > bc(0.0f);
    const v8 neg = act == 1 ? bc(0.0f) : v * bc(slope);
    return (v8)(((v8i)v & pos) | ((v8i)neg & ~pos));
}

static inline float activate1(float v, int64_t act, float slope) {
    return act == 0 || v > 0.0f ? v : (act == 1 ? 0.0f : v * slope);
}

/* Offset of output channel co at pixel (yy, xx) of the convolution.  With a fused pixel shuffle of
 * factor r = shuf > 1 the kernel's channels are ordered (i, j, c) (the caller permutes the weight),
 * co = (i * r + j) * cs + c, and land at (c, r * yy + i, r * xx + j) of the shuffled output. */
static inline int64_t dest(int64_t co, int64_t yy, int64_t xx, int64_t shuf, int64_t cs, int64_t ysc,
                           int64_t ysy, int64_t ysx) {
    if (shuf == 1) return co * ysc + yy * ysy + xx * ysx;
    const int64_t q = co / cs, c = co - q * cs, i = q / shuf, j = q - i * shuf;
    return c * ysc + (shuf * yy + i) * ysy + (shuf * xx + j) * ysx;
}

/* t = B^T d for one column of 6 values (stride s in v8 units), written with stride o. */
static inline void bt6(const v8 *d, int64_t s, v8 *t, int64_t o) {
    const v8 d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
    const v8 four = bc(4.0f), five = bc(5.0f), two = bc(2.0f);
    const v8 a = d4 - four * d2, b = d3 - four * d1; /* t1 = a + b, t2 = a - b */
    const v8 c = d4 - d2, e = two * (d3 - d1);        /* t3 = c + e, t4 = c - e */
    t[0] = four * d0 - five * d2 + d4;
    t[o] = a + b;
    t[2 * o] = a - b;
    t[3 * o] = c + e;
    t[4 * o] = c - e;
    t[5 * o] = four * d1 - five * d3 + d5;
}

/* y = A^T m for one column of 6 values (stride s), written with stride o (4 values). */
static inline void at6(const v8 *m, int64_t s, v8 *y, int64_t o) {
    const v8 m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
    const v8 p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4;
    y[0] = m0 + p12 + p34;
    y[o] = d12 + bc(2.0f) * d34;
    y[2 * o] = p12 + bc(4.0f) * p34;
    y[3 * o] = d12 + bc(8.0f) * d34 + m5;
}

/* t = B^T d of F(6x6, 3x3) for one column of 8 values (stride s), written with stride o. */
static inline void bt8(const v8 *d, int64_t s, v8 *t, int64_t o) {
    const v8 d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
    const v8 d6 = d[6 * s], d7 = d[7 * s];
    const v8 a1 = d2 + d6 - bc(4.25f) * d4, b1 = d1 + d5 - bc(4.25f) * d3;
    const v8 a3 = bc(0.25f) * d2 - bc(1.25f) * d4 + d6, b3 = bc(0.5f) * d1 - bc(2.5f) * d3 + bc(2.0f) * d5;
    const v8 a5 = bc(4.0f) * d2 - bc(5.0f) * d4 + d6, b5 = bc(2.0f) * d1 - bc(2.5f) * d3 + bc(0.5f) * d5;
    t[0] = d0 - d6 + bc(5.25f) * (d4 - d2);
    t[o] = a1 + b1;
    t[2 * o] = a1 - b1;
    t[3 * o] = a3 + b3;
    t[4 * o] = a3 - b3;
    t[5 * o] = a5 + b5;
    t[6 * o] = a5 - b5;
    t[7 * o] = d7 - d1 + bc(5.25f) * (d3 - d5);
}

/* y = A^T m of F(6x6, 3x3) for one column of 8 values (stride s), written with stride o (6 values). */
static inline void at8(const v8 *m, int64_t s, v8 *y, int64_t o) {
    const v8 m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
    const v8 m6 = m[6 * s], m7 = m[7 * s];
    const v8 p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4, p56 = m5 + m6, d56 = m5 - m6;
    y[0] = m0 + p12 + p34 + p56;
    y[o] = d12 + bc(2.0f) * d34 + bc(0.5f) * d56;
    y[2 * o] = p12 + bc(4.0f) * p34 + bc(0.25f) * p56;
    y[3 * o] = d12 + bc(8.0f) * d34 + bc(0.125f) * d56;
    y[4 * o] = p12 + bc(16.0f) * p34 + bc(0.0625f) * p56;
    y[5 * o] = d12 + bc(32.0f) * d34 + bc(0.03125f) * d56 + m7;
}

/* Step 3: M[pos][t][:] = V[pos][t][:] @ U[pos][:, cb0:cb1] for the np positions and the nt6
 * (multiple of 6) tiles of a block; M rows hold the cc = cb1 - cb0 channels of the chunk. */
static void block_gemm(const float *restrict V, const float *restrict U, float *restrict M, int64_t np,
                       int64_t tb, int64_t nt6, int64_t cin8, int64_t cout16, int64_t cb0, int64_t cb1) {
    const int64_t cc = cb1 - cb0;
    for (int64_t pos = 0; pos < np; ++pos) {
        const float *Vp = V + pos * tb * cin8;
        const float *Up = U + pos * cin8 * cout16;
        float *Mp = M + pos * tb * cc;
        for (int64_t cb = cb0; cb < cb1; cb += 16) {
            for (int64_t t0 = 0; t0 < nt6; t0 += 6) {
                v8 a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0};
                v8 a30 = {0}, a31 = {0}, a40 = {0}, a41 = {0}, a50 = {0}, a51 = {0};
                const float *v0 = Vp + t0 * cin8;
                const float *ur = Up + cb;
                for (int64_t k = 0; k < cin8; ++k) {
                    const v8 u0 = ld(ur + k * cout16), u1 = ld(ur + k * cout16 + 8);
                    v8 b = bc(v0[k]);
                    a00 += b * u0, a01 += b * u1;
                    b = bc(v0[cin8 + k]);
                    a10 += b * u0, a11 += b * u1;
                    b = bc(v0[2 * cin8 + k]);
                    a20 += b * u0, a21 += b * u1;
                    b = bc(v0[3 * cin8 + k]);
                    a30 += b * u0, a31 += b * u1;
                    b = bc(v0[4 * cin8 + k]);
                    a40 += b * u0, a41 += b * u1;
                    b = bc(v0[5 * cin8 + k]);
                    a50 += b * u0, a51 += b * u1;
                }
                float *m = Mp + t0 * cc + (cb - cb0);
                st(m, a00), st(m + 8, a01);
                st(m + cc, a10), st(m + cc + 8, a11);
                st(m + 2 * cc, a20), st(m + 2 * cc + 8, a21);
                st(m + 3 * cc, a30), st(m + 3 * cc + 8, a31);
                st(m + 4 * cc, a40), st(m + 4 * cc + 8, a41);
                st(m + 5 * cc, a50), st(m + 5 * cc + 8, a51);
            }
        }
    }
}

/*
 * xs[0 .. nin): input images, concatenated along channels: image i has xinfo[4i] channels at
 * strides xinfo[4i + 1 .. 4i + 3] (channel, row, column); y and res (may be NULL): output and
 * residual (c_out, h, w) at strides (ysc, ysy, ysx); u: (a^2, cin8, cout16); bias: c_out or NULL.
 * m: output tile size, 4 or 6 (a = m + 2). act: 0 none, 1 ReLU, 2 LeakyReLU(slope);
 * y = act(conv(x) + bias) + res.  shuf > 1: y and res are the pixel-shuffled output
 * (c_out / shuf^2, shuf * h, shuf * w), see dest().  Tile rows are [ty0, ty1) of ceil(h / m).
 * scratch: at least wino_scratch_floats(m, tb, cin8, cout16) floats.
 */
int64_t wino_scratch_floats(int64_t m, int64_t tb, int64_t cin8, int64_t cout16) {
    const int64_t cc = cout16 < COUT_CHUNK ? cout16 : COUT_CHUNK, a = m + 2;
    return a * (m * tb + 2) * cin8 + a * a * tb * cin8 + a * a * tb * cc + m * m * tb * cc + 64;
}

void wino_f32(const float *const *xs, const int64_t *xinfo, int64_t nin, const float *restrict u,
              const float *restrict bias, const float *restrict res, float *restrict y, int64_t h, int64_t w,
              int64_t cout, int64_t ysc, int64_t ysy, int64_t ysx, int64_t m, int64_t act, float slope,
              int64_t shuf, int64_t tb, float *restrict scratch, int64_t ty0, int64_t ty1) {
    if (m != 4 && m != 6) return;
    int64_t cin = 0;
    for (int64_t i = 0; i < nin; ++i) cin += xinfo[4 * i];
    const int64_t a = m + 2, np = a * a;
    const int64_t cs = cout / (shuf * shuf); /* channels after the pixel shuffle */
    const int64_t cin8 = (cin + 7) / 8 * 8, cout16 = (cout + 15) / 16 * 16;
    const int64_t pw = m * tb + 2; /* gathered columns per block */
    float *P = scratch;            /* (a, pw, cin8) */
    float *V = P + a * pw * cin8;  /* (a^2, tb, cin8) */
    const int64_t ccmax = cout16 < COUT_CHUNK ? cout16 : COUT_CHUNK;
    float *M = V + np * tb * cin8;   /* (a^2, tb, cc) */
    float *O = M + np * tb * ccmax;  /* (m, m * tb, cc) */
    const int64_t tw = (w + m - 1) / m;
    for (int64_t ty = ty0; ty < ty1; ++ty) {
        const int64_t oy = m * ty;
        for (int64_t tx0 = 0; tx0 < tw; tx0 += tb) {
            const int64_t nt = tw - tx0 < tb ? tw - tx0 : tb, nt6 = (nt + 5) / 6 * 6;
            const int64_t ox = m * tx0, ncol = m * nt + 2;
            /* 1. gather input rows oy-1 .. oy+m, cols ox-1 .. ox+m*nt (zero outside the image) */
            memset(P, 0, (size_t)(a * pw * cin8) * sizeof(float));
            for (int64_t r = 0; r < a; ++r) {
                const int64_t iy = oy - 1 + r;
                if (iy < 0 || iy >= h) continue;
                const int64_t c0 = ox - 1 < 0 ? 1 : 0;
                const int64_t c1 = ox - 1 + ncol > w ? w - (ox - 1) : ncol;
                /* the inputs' channels side by side (a fused torch.cat along channels) */
                for (int64_t i = 0, cofs = 0; i < nin; cofs += xinfo[4 * i], ++i) {
                    const int64_t ci = xinfo[4 * i], xsc = xinfo[4 * i + 1], xsy = xinfo[4 * i + 2];
                    const int64_t xsx = xinfo[4 * i + 3];
                    float *pr = P + r * pw * cin8 + cofs;
                    const float *xr = xs[i] + iy * xsy + (ox - 1) * xsx;
                    if (xsc == 1) {
                        for (int64_t j = c0; j < c1; ++j) memcpy(pr + j * cin8, xr + j * xsx, (size_t)ci * sizeof(float));
                    } else {
                        for (int64_t c = 0; c < ci; ++c)
                            for (int64_t j = c0; j < c1; ++j) pr[j * cin8 + c] = xr[c * xsc + j * xsx];
                    }
                }
            }
            /* 2. input transform: V[i * a + k][t][c] = (B^T d_t B)[i][k] */
            if (nt6 > nt) memset(V, 0, (size_t)(np * tb * cin8) * sizeof(float));
            for (int64_t t = 0; t < nt; ++t) {
                for (int64_t c = 0; c < cin8; c += 8) {
                    v8 d[64], tmp[64], out[64];
                    for (int r = 0; r < a; ++r)
                        for (int j = 0; j < a; ++j) d[r * a + j] = ld(P + (r * pw + m * t + j) * cin8 + c);
                    if (m == 4) {
                        for (int j = 0; j < 6; ++j) bt6(d + j, 6, tmp + j, 6);           /* columns: B^T d */
                        for (int i = 0; i < 6; ++i) bt6(tmp + 6 * i, 1, out + 6 * i, 1); /* rows: (B^T d) B */
                    } else {
                        for (int j = 0; j < 8; ++j) bt8(d + j, 8, tmp + j, 8);
                        for (int i = 0; i < 8; ++i) bt8(tmp + 8 * i, 1, out + 8 * i, 1);
                    }
                    for (int p = 0; p < np; ++p) st(V + (p * tb + t) * cin8 + c, out[p]);
                }
            }
            const int64_t nrow = h - oy < m ? h - oy : m, nx = w - ox < m * nt ? w - ox : m * nt;
            for (int64_t cb0 = 0; cb0 < cout16; cb0 += COUT_CHUNK) {
                const int64_t cb1 = cb0 + COUT_CHUNK < cout16 ? cb0 + COUT_CHUNK : cout16, cc = cb1 - cb0;
                const int64_t ce = cb1 < cout ? cb1 : cout; /* real channels of the chunk: [cb0, ce) */
                /* 3. the a^2 GEMMs of this chunk of output channels */
                block_gemm(V, u, M, np, tb, nt6, cin8, cout16, cb0, cb1);
                /* 4. output transform + bias: O[r][m * t + q][c - cb0] */
                float bpad[COUT_CHUNK] = {0}; /* the chunk's bias, zero past c_out */
                for (int64_t k = 0; bias && k < cc && cb0 + k < cout; ++k) bpad[k] = bias[cb0 + k];
                for (int64_t t = 0; t < nt; ++t) {
                    for (int64_t c = 0; c < cc; c += 8) {
                        v8 mm[64], s[48], o[36];
                        for (int p = 0; p < np; ++p) mm[p] = ld(M + (p * tb + t) * cc + c);
                        if (m == 4) {
                            for (int i = 0; i < 6; ++i) at6(mm + 6 * i, 1, s + 4 * i, 1); /* rows: m A */
                            for (int q = 0; q < 4; ++q) at6(s + q, 4, o + q, 4);       /* columns: A^T (m A) */
                        } else {
                            for (int i = 0; i < 8; ++i) at8(mm + 8 * i, 1, s + 6 * i, 1);
                            for (int q = 0; q < 6; ++q) at8(s + q, 6, o + q, 6);
                        }
                        const v8 b = ld(bpad + c);
                        for (int r = 0; r < m; ++r)
                            for (int q = 0; q < m; ++q) st(O + (r * m * tb + m * t + q) * cc + c, o[r * m + q] + b);
                    }
                }
                /* 5. epilogue and store of channels [cb0, ce): pixel (oy + r, ox + j) of channel co */
                const int vec = ysc == 1 && (shuf == 1 || cs % 8 == 0);
                for (int64_t r = 0; r < nrow; ++r)
                    for (int64_t j = 0; j < nx; ++j) {
                        const float *o = O + (r * m * tb + j) * cc - cb0;
                        int64_t c = cb0;
                        for (; vec && c + 8 <= ce; c += 8) {
                            const int64_t off = dest(c, oy + r, ox + j, shuf, cs, ysc, ysy, ysx);
                            v8 v = activate(ld(o + c), act, slope);
                            if (res) v += ld(res + off);
                            st(y + off, v);
                        }
                        for (; c < ce; ++c) {
                            const int64_t off = dest(c, oy + r, ox + j, shuf, cs, ysc, ysy, ysx);
                            y[off] = activate1(o[c], act, slope) + (res ? res[off] : 0.0f);
                        }
                    }
            }
        }
    }
}
