/* winograd.c — 3×3 stride-1 convolutions by Winograd's minimal filtering F(2×2, 3×3)
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
 *
 * Each 2×2 block of outputs comes from a 4×4 input tile d: Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, so the
 * 36 multiplications of the direct method become 16 — done as 16 matrix products
 * M_ξ [cout, tiles] = U_ξ [cout, cin] · V_ξ [cin, tiles], one per tile position ξ, through
 * OpenBLAS sgemm: 2.25× fewer FLOPs in the products. The transforms use only 0, ±1 and ±½
 * (exact scalings), so the rounding error stays of the order of the direct sum's (measured in
 * docs/PERFORMANCE.md and tests/test_ops.c).
 *
 *   Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]
 *   Aᵀ = [1 1 1 0; 0 1 -1 -1]
 *
 * Work is split in tasks of tile rows of one image; each thread transforms its rows into its
 * own V buffer, runs the 16 products and transforms back into y, so the buffers stay in cache.
 * Input rows are read as even/odd columns so every transform loop runs over tiles with unit
 * stride (vectorised). */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "ops_internal.h"

/* U[ξ][co][ci] = (G g Gᵀ)[ξ] for w [cout, cin, 3, 3]: G g per column, then (G g) Gᵀ per row,
 * written out as explicit sums so the loop over (co, ci) vectorises (strided loads of g). */
static void weight_transform(const float *w, int64_t cout, int64_t cin, float *u)
{
    const int64_t cc = cout * cin;
#pragma omp parallel for if (cc >= 65536) schedule(static)
    for (int64_t k0 = 0; k0 < cc; k0 += 1024) {
        const int64_t k1 = k0 + 1024 < cc ? k0 + 1024 : cc;
#pragma omp simd
        for (int64_t k = k0; k < k1; k++) {
            const float *g = w + k * 9;
            /* t = G g: rows 0..3, columns 0..2 */
            const float t00 = g[0], t01 = g[1], t02 = g[2];
            const float t10 = 0.5f * (g[0] + g[3] + g[6]), t11 = 0.5f * (g[1] + g[4] + g[7]),
                        t12 = 0.5f * (g[2] + g[5] + g[8]);
            const float t20 = 0.5f * (g[0] - g[3] + g[6]), t21 = 0.5f * (g[1] - g[4] + g[7]),
                        t22 = 0.5f * (g[2] - g[5] + g[8]);
            const float t30 = g[6], t31 = g[7], t32 = g[8];
#define WG_U(R, A, B, C)                                      \
    u[((R) * 4 + 0) * cc + k] = A;                            \
    u[((R) * 4 + 1) * cc + k] = 0.5f * ((A) + (B) + (C));     \
    u[((R) * 4 + 2) * cc + k] = 0.5f * ((A) - (B) + (C));     \
    u[((R) * 4 + 3) * cc + k] = C;
            WG_U(0, t00, t01, t02)
            WG_U(1, t10, t11, t12)
            WG_U(2, t20, t21, t22)
            WG_U(3, t30, t31, t32)
#undef WG_U
        }
    }
}

/* Input transform of tile rows [ty0, ty1) of one channel plane xc [h, w]:
 * vb[ξ·vs + (ty − ty0)·tw + tx] = (Bᵀ d B)[ξ] of the tile at (ty, tx). ws: 12·(tw + 2) floats. */
static void in_rows(const float *xc, int64_t h, int64_t w, int64_t ty0, int64_t ty1, int64_t tw, float *vb,
                    int64_t vs, float *ws)
{
    const int64_t rl = tw + 1;
    float *ev = ws, *pad = ws + 8 * (tw + 2);
    for (int64_t ty = ty0; ty < ty1; ty++) {
        /* rows 2ty-1 .. 2ty+2, columns -1 .. 2tw: even/odd split of the padded row */
        for (int r = 0; r < 4; r++) {
            float *e = ev + (2 * r) * rl, *o = e + rl;
            const int64_t iy = 2 * ty - 1 + r;
            if (iy < 0 || iy >= h) {
                memset(e, 0, (size_t)(2 * rl) * sizeof(float));
                continue;
            }
            /* padded row p[0] = 0, p[1 .. w] = x row, zeros after; e[k] = p[2k], o[k] = p[2k+1] */
            pad[0] = 0.0f;
            memcpy(pad + 1, xc + iy * w, (size_t)w * sizeof(float));
            for (int64_t k = w + 1; k < 2 * rl; k++) pad[k] = 0.0f;
#pragma omp simd
            for (int64_t k = 0; k < rl; k++) {
                e[k] = pad[2 * k];
                o[k] = pad[2 * k + 1];
            }
        }
        float *v = vb + (ty - ty0) * tw;
        const float *e0 = ev, *o0 = ev + rl, *e1 = ev + 2 * rl, *o1 = ev + 3 * rl;
        const float *e2 = ev + 4 * rl, *o2 = ev + 5 * rl, *e3 = ev + 6 * rl, *o3 = ev + 7 * rl;
        /* horizontal (d B): h0 = d0 - d2, h1 = d1 + d2, h2 = d2 - d1, h3 = d1 - d3 with
         * d0 = e[tx], d1 = o[tx], d2 = e[tx+1], d3 = o[tx+1]; then vertical (Bᵀ ·) */
#define WG_H(E, O, TX, H0, H1, H2, H3)                                                          \
    const float H0 = E[TX] - E[TX + 1], H1 = O[TX] + E[TX + 1], H2 = E[TX + 1] - O[TX], H3 = O[TX] - O[TX + 1];
#pragma omp simd
        for (int64_t tx = 0; tx < tw; tx++) {
            WG_H(e0, o0, tx, a0, a1, a2, a3)
            WG_H(e1, o1, tx, b0, b1, b2, b3)
            WG_H(e2, o2, tx, c0, c1, c2, c3)
            WG_H(e3, o3, tx, d0, d1, d2, d3)
            v[0 * vs + tx] = a0 - c0;
            v[1 * vs + tx] = a1 - c1;
            v[2 * vs + tx] = a2 - c2;
            v[3 * vs + tx] = a3 - c3;
            v[4 * vs + tx] = b0 + c0;
            v[5 * vs + tx] = b1 + c1;
            v[6 * vs + tx] = b2 + c2;
            v[7 * vs + tx] = b3 + c3;
            v[8 * vs + tx] = c0 - b0;
            v[9 * vs + tx] = c1 - b1;
            v[10 * vs + tx] = c2 - b2;
            v[11 * vs + tx] = c3 - b3;
            v[12 * vs + tx] = b0 - d0;
            v[13 * vs + tx] = b1 - d1;
            v[14 * vs + tx] = b2 - d2;
            v[15 * vs + tx] = b3 - d3;
        }
#undef WG_H
    }
}

/* Output transform of tile rows [ty0, ty1) of one output channel: Y = Aᵀ m A + bias with
 * m[ξ] = mb[ξ·ms + (ty − ty0)·tw + tx], into the plane yc [h, w]. ws: 12·(tw + 2) floats. */
static void out_rows(const float *mb0, int64_t ms, float bv, float *yc, int64_t h, int64_t w, int64_t ty0,
                     int64_t ty1, int64_t tw, float *ws)
{
    const int64_t rl = tw + 1;
    float *r0 = ws, *r1 = ws + 2 * rl; /* two output rows, 2·tw values each */
    float *pad = ws + 8 * (tw + 2);
    float *q0 = pad, *q1 = pad + rl, *q2 = pad + 2 * rl, *q3 = pad + 3 * rl;
    for (int64_t ty = ty0; ty < ty1; ty++) {
        const float *mb = mb0 + (ty - ty0) * tw;
        /* vertical (Aᵀ m): s0 = m0 + m1 + m2, s1 = m1 - m2 - m3 per column c */
#define WG_M(A, C) mb[((A) * 4 + (C)) * ms + tx]
#pragma omp simd
        for (int64_t tx = 0; tx < tw; tx++) {
            const float s00 = WG_M(0, 0) + WG_M(1, 0) + WG_M(2, 0), s10 = WG_M(1, 0) - WG_M(2, 0) - WG_M(3, 0);
            const float s01 = WG_M(0, 1) + WG_M(1, 1) + WG_M(2, 1), s11 = WG_M(1, 1) - WG_M(2, 1) - WG_M(3, 1);
            const float s02 = WG_M(0, 2) + WG_M(1, 2) + WG_M(2, 2), s12 = WG_M(1, 2) - WG_M(2, 2) - WG_M(3, 2);
            const float s03 = WG_M(0, 3) + WG_M(1, 3) + WG_M(2, 3), s13 = WG_M(1, 3) - WG_M(2, 3) - WG_M(3, 3);
            q0[tx] = (s00 + s01 + s02) + bv;
            q1[tx] = (s01 - s02 - s03) + bv;
            q2[tx] = (s10 + s11 + s12) + bv;
            q3[tx] = (s11 - s12 - s13) + bv;
        }
#undef WG_M
#pragma omp simd
        for (int64_t tx = 0; tx < tw; tx++) {
            r0[2 * tx] = q0[tx];
            r0[2 * tx + 1] = q1[tx];
            r1[2 * tx] = q2[tx];
            r1[2 * tx + 1] = q3[tx];
        }
        const int64_t oy = 2 * ty;
        memcpy(yc + oy * w, r0, (size_t)w * sizeof(float));
        if (oy + 1 < h) memcpy(yc + (oy + 1) * w, r1, (size_t)w * sizeof(float));
    }
}

/* ---- many pixels: tasks of tile rows of one image ---- */

/* Tile rows per task: about this many tiles (columns of the products) per task. */
#define WG_TASK_TILES 512

size_t sd_winograd_u_floats(int64_t cout, int64_t cin) { return (size_t)(16 * cout * cin); }

static int64_t task_rows(int64_t n, int64_t th, int64_t tw, int nt)
{
    int64_t rows = WG_TASK_TILES / tw;
    if (rows < 1) rows = 1;
    if (rows > th) rows = th;
    while (rows > 1 && n * ((th + rows - 1) / rows) < nt) rows = (rows + 1) / 2;
    return rows;
}

void sd_conv3x3_winograd(const float *x, int64_t n, int64_t cin, int64_t h, int64_t w, const float *wt,
                         const float *bias, int64_t cout, float *y, float *u, float *scratch, int nt)
{
    const int64_t th = (h + 1) / 2, tw = (w + 1) / 2;
    const int64_t rows = task_rows(n, th, tw, nt);
    const int64_t nb = (th + rows - 1) / rows, tasks = n * nb;
    const int64_t tcap = rows * tw;
    /* per thread: V [16][cin][tcap], M [16][cout][tcap], row work space 12 × (tw + 2) */
    const int64_t per = 16 * cin * tcap + 16 * cout * tcap + 12 * (tw + 2);
    weight_transform(wt, cout, cin, u);
    const int64_t cc = cout * cin;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t tk = 0; tk < tasks; tk++) {
        const int64_t i = tk / nb, ty0 = (tk % nb) * rows;
        const int64_t ty1 = ty0 + rows < th ? ty0 + rows : th, T = (ty1 - ty0) * tw;
        float *V = scratch + (int64_t)omp_get_thread_num() * per;
        float *M = V + 16 * cin * tcap;
        float *ws = M + 16 * cout * tcap;
        const float *xi = x + i * cin * h * w;
        for (int64_t ci = 0; ci < cin; ci++) in_rows(xi + ci * h * w, h, w, ty0, ty1, tw, V + ci * tcap, cin * tcap, ws);
        /* 16 products M_ξ [cout, T] = U_ξ [cout, cin] · V_ξ [cin, T] */
        for (int k = 0; k < 16; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, (int)T, (int)cin, 1.0f, u + k * cc,
                        (int)cin, V + k * cin * tcap, (int)tcap, 0.0f, M + k * cout * tcap, (int)tcap);
        float *yi = y + i * cout * h * w;
        for (int64_t co = 0; co < cout; co++)
            out_rows(M + co * tcap, cout * tcap, bias ? bias[co] : 0.0f, yi + co * h * w, h, w, ty0, ty1, tw, ws);
    }
}

size_t sd_winograd_scratch_floats(int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int nt)
{
    const int64_t th = (h + 1) / 2, tw = (w + 1) / 2;
    const int64_t tcap = task_rows(n, th, tw, nt) * tw;
    return (size_t)(nt * (16 * cin * tcap + 16 * cout * tcap + 12 * (tw + 2)));
}
