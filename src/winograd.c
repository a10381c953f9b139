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
 * stride (vectorised). The transforms themselves are entries of the CPU kernel table
 * (cpu_loops.h, compiled once per instruction set); this file is the driver. */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "ops_internal.h"

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
                         const float *bias, int64_t cout, float *y, float *u, float *scratch, int nt,
                         const sd_conv_epilogue *ep)
{
    const int64_t th = (h + 1) / 2, tw = (w + 1) / 2;
    const int64_t rows = task_rows(n, th, tw, nt);
    const int64_t nb = (th + rows - 1) / rows, tasks = n * nb;
    const int64_t tcap = rows * tw;
    /* per thread: V [16][cin][tcap], M [16][cout][tcap], row work space 12 × (tw + 2) */
    const int64_t per = 16 * cin * tcap + 16 * cout * tcap + 12 * (tw + 2);
    const sd_cpu_kernels *ck = sd_cpu();
    ck->wg_weights(wt, cout, cin, u);
    const int64_t cc = cout * cin;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t tk = 0; tk < tasks; tk++) {
        const int64_t i = tk / nb, ty0 = (tk % nb) * rows;
        const int64_t ty1 = ty0 + rows < th ? ty0 + rows : th, T = (ty1 - ty0) * tw;
        float *V = scratch + (int64_t)omp_get_thread_num() * per;
        float *M = V + 16 * cin * tcap;
        float *ws = M + 16 * cout * tcap;
        const float *xi = x + i * cin * h * w;
        for (int64_t ci = 0; ci < cin; ci++)
            ck->wg_in_rows(xi + ci * h * w, h, w, ty0, ty1, tw, V + ci * tcap, cin * tcap, ws);
        /* 16 products M_ξ [cout, T] = U_ξ [cout, cin] · V_ξ [cin, T] */
        for (int k = 0; k < 16; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, (int)T, (int)cin, 1.0f, u + k * cc,
                        (int)cin, V + k * cin * tcap, (int)tcap, 0.0f, M + k * cout * tcap, (int)tcap);
        float *yi = y + i * cout * h * w;
        const int64_t oy0 = 2 * ty0, oy1 = 2 * ty1 < h ? 2 * ty1 : h; /* the output rows of this task */
        for (int64_t co = 0; co < cout; co++) {
            float *yc = yi + co * h * w;
            ck->wg_out_rows(M + co * tcap, cout * tcap, bias ? bias[co] : 0.0f, yc, h, w, ty0, ty1, tw, ws);
            if (ep)
                sd_conv_epilogue_apply(ep, yc + oy0 * w, ep->add ? ep->add + (yc - y) + oy0 * w : NULL,
                                       (oy1 - oy0) * w);
        }
    }
}

size_t sd_winograd_scratch_floats(int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int nt)
{
    const int64_t th = (h + 1) / 2, tw = (w + 1) / 2;
    const int64_t tcap = task_rows(n, th, tw, nt) * tw;
    return (size_t)(nt * (16 * cin * tcap + 16 * cout * tcap + 12 * (tw + 2)));
}
