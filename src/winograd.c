/* winograd.c — 3×3 stride-1 convolutions by Winograd's minimal filtering F(2×2, 3×3), and
 * F(4×4, 3×3) for the autoencoders (below; sd_conv2d_ae in include/sdgen/ops.h)
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
 * own V buffer, runs the 16 (or 36) products and transforms back into y, so the buffers stay in
 * cache. Input rows are read as even/odd columns (four phases for F(4×4, 3×3)) so every
 * transform loop runs over tiles with unit stride (vectorised). The transforms themselves are
 * entries of the CPU kernel table (cpu_loops.h, compiled once per instruction set); this file is
 * the driver. */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "cpu_loops.h"
#include "ops_internal.h"

/* Tile rows per task: about this many tiles (columns of the products) per task. */
#define WG_TASK_TILES 512
#define WG4_TASK_TILES 256

/* ---- F(4×4, 3×3) ----
 * Tiles of 4×4 outputs from 6×6 inputs: 36 products for 16 outputs where F(2×2, 3×3) needs 64
 * for the same 16, so 1.78× fewer multiplications again (4× fewer than the direct sum). Lavin &
 * Gray's matrices for the points 0, ±1, ±2 and ∞:
 *
 *   Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G  = [¼ 0 0; -⅙ -⅙ -⅙; -⅙ ⅙ -⅙; 1⁄24 1⁄12 ⅙; 1⁄24 -1⁄12 ⅙; 0 0 1]
 *   Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *
 * Bᵀ and Aᵀ are applied as sums and differences scaled by powers of two (cpu_loops.h), the same
 * bits in every table. G has thirds and twenty-fourths: U is computed in double precision and
 * rounded once, here (this file is built without contraction, so one result everywhere). The
 * rounding error is larger than F(2×2, 3×3)'s (the Aᵀ entries reach 8) and is measured in
 * tests/test_ops.c against a double-precision direct sum; docs/PERFORMANCE.md has the figures
 * on whole models. */

size_t sd_winograd4_u_floats(int64_t cout, int64_t cin) { return (size_t)(36 * cout * cin); }

#define WG4_WBLOCK 128
static void wg4_weights(const float *w, int64_t cout, int64_t cin, float *u)
{
    static const double G[6][3] = {{0.25, 0, 0},
                                   {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                   {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                   {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                   {0, 0, 1}};
    const int64_t cc = cout * cin;
    /* blocks of WG4_WBLOCK pairs through a buffer, written out one position at a time: the 36 streams lie
     * cout·cin floats apart and would share cache sets (as in sd_loop_wg_weights) */
#pragma omp parallel for if (cc >= 16384) schedule(static)
    for (int64_t k0 = 0; k0 < cc; k0 += WG4_WBLOCK) {
        float ub[36][WG4_WBLOCK];
        const int64_t nk = k0 + WG4_WBLOCK < cc ? WG4_WBLOCK : cc - k0;
        for (int64_t j = 0; j < nk; j++) {
            const float *g = w + (k0 + j) * 9;
            double t[6][3]; /* G g */
            for (int a = 0; a < 6; a++)
                for (int c = 0; c < 3; c++) t[a][c] = G[a][0] * g[c] + G[a][1] * g[3 + c] + G[a][2] * g[6 + c];
            for (int a = 0; a < 6; a++)
                for (int b = 0; b < 6; b++)
                    ub[a * 6 + b][j] = (float)(t[a][0] * G[b][0] + t[a][1] * G[b][1] + t[a][2] * G[b][2]);
        }
        for (int x = 0; x < 36; x++) memcpy(u + x * cc + k0, ub[x], (size_t)nk * sizeof(float));
    }
}

/* ---- the driver, for either tile size ---- */

typedef struct wg_variant {
    int m;     /* outputs per tile side: 2 or 4 */
    int npos;  /* tile positions ξ: (m + 2)² */
    int64_t task_tiles; /* about this many tiles (columns of the products) per task */
    void (*in_rows)(const float *xc, int64_t h, int64_t w, int64_t ty0, int64_t ty1, int64_t tw, float *vb,
                    int64_t vs, float *ws);
    void (*out_rows)(const float *mb, int64_t ms, float bias, float *yc, int64_t h, int64_t w, int64_t ty0,
                     int64_t ty1, int64_t tw, float *ws);
    int64_t (*ws_floats)(int64_t tw);
} wg_variant;

static int64_t wg2_ws_floats(int64_t tw) { return 12 * (tw + 2); }

static wg_variant variant(int m)
{
    const sd_cpu_kernels *ck = sd_cpu();
    if (m == 4) return (wg_variant){4, 36, WG4_TASK_TILES, ck->wg4_in_rows, ck->wg4_out_rows, sd_wg4_ws_floats};
    return (wg_variant){2, 16, WG_TASK_TILES, ck->wg_in_rows, ck->wg_out_rows, wg2_ws_floats};
}

/* Tile rows per task: about task_tiles tiles per task, at least one task per thread. */
static int64_t task_rows(int64_t n, int64_t th, int64_t tw, int64_t task_tiles, int nt)
{
    int64_t rows = task_tiles / tw;
    if (rows < 1) rows = 1;
    if (rows > th) rows = th;
    while (rows > 1 && n * ((th + rows - 1) / rows) < nt) rows = (rows + 1) / 2;
    return rows;
}

static int64_t per_thread_floats(const wg_variant *v, int64_t cin, int64_t cout, int64_t tcap, int64_t tw)
{
    /* V [npos][cin][tcap], M [npos][cout][tcap], the transforms' row work space */
    return v->npos * cin * tcap + v->npos * cout * tcap + v->ws_floats(tw);
}

static void winograd_run(const wg_variant *v, const float *x, int64_t n, int64_t cin, int64_t h, int64_t w,
                         const float *u, const float *bias, int64_t cout, float *y, float *scratch, int nt,
                         const sd_conv_epilogue *ep)
{
    const int m = v->m, np = v->npos;
    const int64_t th = (h + m - 1) / m, tw = (w + m - 1) / m;
    const int64_t rows = task_rows(n, th, tw, v->task_tiles, nt);
    const int64_t nb = (th + rows - 1) / rows, tasks = n * nb;
    const int64_t tcap = rows * tw;
    const int64_t per = per_thread_floats(v, cin, cout, tcap, tw);
    const int64_t cc = cout * cin;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t tk = 0; tk < tasks; tk++) {
        const int64_t i = tk / nb, ty0 = (tk % nb) * rows;
        const int64_t ty1 = ty0 + rows < th ? ty0 + rows : th, T = (ty1 - ty0) * tw;
        float *V = scratch + (int64_t)omp_get_thread_num() * per;
        float *M = V + np * cin * tcap;
        float *ws = M + np * cout * tcap;
        const float *xi = x + i * cin * h * w;
        for (int64_t ci = 0; ci < cin; ci++) v->in_rows(xi + ci * h * w, h, w, ty0, ty1, tw, V + ci * tcap, cin * tcap, ws);
        /* one product per tile position: M_ξ [cout, T] = U_ξ [cout, cin] · V_ξ [cin, T] */
        for (int k = 0; k < np; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, (int)T, (int)cin, 1.0f, u + k * cc,
                        (int)cin, V + k * cin * tcap, (int)tcap, 0.0f, M + k * cout * tcap, (int)tcap);
        float *yi = y + i * cout * h * w;
        const int64_t oy0 = m * ty0, oy1 = m * ty1 < h ? m * ty1 : h; /* the output rows of this task */
        for (int64_t co = 0; co < cout; co++) {
            float *yc = yi + co * h * w;
            v->out_rows(M + co * tcap, cout * tcap, bias ? bias[co] : 0.0f, yc, h, w, ty0, ty1, tw, ws);
            if (ep)
                sd_conv_epilogue_apply(ep, yc + oy0 * w, ep->add ? ep->add + (yc - y) + oy0 * w : NULL,
                                       (oy1 - oy0) * w);
        }
    }
}

static size_t scratch_floats(const wg_variant *v, int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int nt)
{
    const int64_t th = (h + v->m - 1) / v->m, tw = (w + v->m - 1) / v->m;
    const int64_t tcap = task_rows(n, th, tw, v->task_tiles, nt) * tw;
    return (size_t)(nt * per_thread_floats(v, cin, cout, tcap, tw));
}

size_t sd_winograd_u_floats(int64_t cout, int64_t cin) { return (size_t)(16 * cout * cin); }

size_t sd_winograd_scratch_floats(int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int nt)
{
    const wg_variant v = variant(2);
    return scratch_floats(&v, n, cin, h, w, cout, nt);
}

size_t sd_winograd4_scratch_floats(int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int nt)
{
    const wg_variant v = variant(4);
    return scratch_floats(&v, n, cin, h, w, cout, nt);
}

void sd_conv3x3_winograd(const float *x, int64_t n, int64_t cin, int64_t h, int64_t w, const float *wt,
                         const float *bias, int64_t cout, float *y, float *u, float *scratch, int nt,
                         const sd_conv_epilogue *ep)
{
    const wg_variant v = variant(2);
    sd_cpu()->wg_weights(wt, cout, cin, u);
    winograd_run(&v, x, n, cin, h, w, u, bias, cout, y, scratch, nt, ep);
}

void sd_conv3x3_winograd4(const float *x, int64_t n, int64_t cin, int64_t h, int64_t w, const float *wt,
                          const float *bias, int64_t cout, float *y, float *u, float *scratch, int nt,
                          const sd_conv_epilogue *ep)
{
    const wg_variant v = variant(4);
    wg4_weights(wt, cout, cin, u);
    winograd_run(&v, x, n, cin, h, w, u, bias, cout, y, scratch, nt, ep);
}
