/* ops.c — the neural-network operations (see include/sdgen/ops.h).
 *
 * Matrix products go through OpenBLAS sgemm, run single-threaded and split across sdgen's OpenMP
 * threads (see "matrix products" below); 3×3 stride-1 convolutions on 32×32 and larger images by
 * Winograd F(2×2, 3×3) (winograd.c), attention with head size ≤ 160 by AVX-512 kernels where the
 * CPU has them (attn_avx512.c). The inner loops of the activations, norms, softmax and Winograd
 * transforms go through the CPU kernel table (sd_cpu(), ops_internal.h), one per instruction set.
 * Elementwise loops, norms and im2col use OpenMP. Numerics follow PyTorch's CPU kernels closely
 * enough for the golden tolerances: norm statistics are accumulated in double, softmax subtracts
 * the row maximum, attention applies the 1/sqrt(d) scale as the sgemm alpha as diffusers'
 * AttnProcessor does (baddbmm with alpha = scale, then softmax, then bmm).
 * Inner loops carry `#pragma omp simd`: the build's -O2 uses GCC's "very cheap" vectoriser cost
 * model, which leaves loops with a remainder scalar; the pragma vectorises them regardless
 * (reductions then sum in a different order, well inside the tolerances).
 */
#include "sdgen/ops.h"

#include "ops_internal.h"
#include "sdgen/safetensors.h"
#include "torch_expf.h"

#include <assert.h>
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- threads ---- */

void sd_set_threads(int n)
{
    if (n < 1) n = 1;
    /* OpenBLAS stays single-threaded: the ops split products across OpenMP's threads
     * (see "matrix products" below). */
    openblas_set_num_threads(1);
    omp_set_num_threads(n);
}

int sd_threads(void) { return omp_get_max_threads(); }

/* Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions (sd_set_winograd): on by default. On the
 * full SD 1.5 U-Net it moves the output by at most 4.4e-6 (32×32 latent) and 5.0e-6 (64×64)
 * from the im2col products (|out| ≤ 2.3), the VAE image by 7.6e-6, against golden tolerances
 * of 1.5e-5 and 1e-4 (docs/PERFORMANCE.md). */
static int g_winograd = 1;

void sd_set_winograd(int on) { g_winograd = on != 0; }

int sd_winograd(void) { return g_winograd; }

void sd_blas_threads_begin(void) { openblas_set_num_threads(sd_threads()); }

void sd_blas_threads_end(void) { openblas_set_num_threads(1); }

/* Elementwise loops below this many elements are not worth waking the OpenMP team for: with
 * OpenBLAS's own pthreads on the same cores, every parallel region on a tiny tensor cost a
 * scheduler round trip (tiny U-Net call, 2 threads: 16384 -> 0.7 s, 65536 -> 0.025 s). */
#define SD_PAR_MIN 65536

/* ---- profile ---- */

static sd_op_profile *g_profile; /* installed by sd_ops_set_profile (bench --profile only) */

void sd_ops_set_profile(sd_op_profile *p) { g_profile = p; }

const char *sd_op_kind_name(sd_op_kind k)
{
    static const char *const names[SD_OP_KINDS] = {
        "conv 3x3", "conv 1x1", "conv other", "linear", "attention", "groupnorm (+silu)",
        "layernorm", "activations", "elementwise", "layout (concat/upsample/transpose)", "weights (fetch/convert)"};
    return (unsigned)k < SD_OP_KINDS ? names[k] : "?";
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

sd_op_timer sd_op_begin(void)
{
    sd_op_timer t = {0, 0};
    if (g_profile) {
        t.wall = sd_now();
        t.cpu = cpu_now();
    }
    return t;
}

void sd_op_end(sd_op_kind k, sd_op_timer t, double flops)
{
    if (!g_profile || (unsigned)k >= SD_OP_KINDS) return;
    g_profile->wall[k] += sd_now() - t.wall;
    g_profile->cpu[k] += cpu_now() - t.cpu;
    g_profile->flops[k] += flops;
    g_profile->calls[k]++;
}

/* ---- matrix products ----
 *
 * One thread pool: OpenBLAS runs single-threaded and every product is split across sdgen's OpenMP
 * threads, each calling sgemm on its own slice. With OpenBLAS's pthread pool next to OpenMP's,
 * each pool's workers busy-wait after their region (OpenBLAS ~0.1 s, libgomp its spin count)
 * while the other pool works, so on 2 cores the two pools took turns at half speed; and the
 * im2col, bias and softmax loops between products ran single-threaded or woke the other pool.
 * Splitting by hand also lets each thread build its own im2col panel or attention score block
 * right before its product, in cache. OpenBLAS computes every output element as the same dot
 * product whatever the slicing (its kernels split M and N, never K), so the results do not
 * depend on the number of threads beyond the kernels' edge handling. */

/* OpenBLAS with one thread, and calls from several threads at once are safe (the pthread build
 * locks its buffer pool). */
static void blas_single(void)
{
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

/* OpenBLAS's own buffer pool (driver/others/memory.c; exported by OpenBLAS as by GotoBLAS before it).
 * Taking one buffer per thread and holding them all until every thread has one is the only way to make
 * the pool map all of them now: sgemm calls made at once may still run one after the other. */
extern void *blas_memory_alloc(int procpos);
extern void blas_memory_free(void *buffer);

void sd_blas_warm(void)
{
    blas_single();
#pragma omp parallel num_threads(sd_threads())
    {
        void *b = blas_memory_alloc(0);
#pragma omp barrier
        blas_memory_free(b);
    }
}

/* Products smaller than this many FLOPs run on the calling thread alone. */
#define SD_GEMM_PAR_MIN 4e6

/* Exact F16 -> F32 of n values on all threads (the conversion is memory-bound; 64 Ki values per task
 * keep each task's output in L2). */
void sd_f16_to_f32_par(const uint16_t *src, float *dst, size_t n)
{
    const int64_t chunk = (int64_t)1 << 16, nchunks = (int64_t)((n + (size_t)chunk - 1) / (size_t)chunk);
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        const size_t o = (size_t)(c * chunk);
        sd_f16_to_f32(src + o, dst + o, n - o < (size_t)chunk ? n - o : (size_t)chunk);
    }
}

/* ---- products with a weight operand, F32 or F16 ----
 *
 * The weight of a linear layer or a convolution is a row-major matrix W [R, K] (a kernel [cout, cin,
 * kh, kw] viewed as [cout, cin·kh·kw]). Held as F16 halves (sd_model_weight_f16), it is not converted
 * whole into memory and then read back: the product runs over K in blocks, and each block of W is
 * converted right before sgemm packs it, into a buffer that is still in cache. Where the weights
 * outweigh the work (77-row text products, the U-Net's 8×8 and 16×16 convolutions) that is 1.1–1.45×
 * faster than converting first (docs/PERFORMANCE.md, "F16 weights converted in cache").
 *
 * The blocks are OpenBLAS's own split of K on SkylakeX (GEMM_Q = 448; the last stretch under 2·Q
 * halved and rounded up to 16; driver/level3.c): each output is then the same sum sgemm forms over
 * the whole of K. F32 weights run through the same blocked product without the conversion, so both
 * weight modes give the same bits on every machine (tests/weights_modes.h), and on SkylakeX the bits of
 * one whole sgemm call. */
#define SD_GEMM_KQ 448

static int64_t gemm_kblock(int64_t rest)
{
    if (rest >= 2 * SD_GEMM_KQ) return SD_GEMM_KQ;
    if (rest > SD_GEMM_KQ) return (rest / 2 + 15) / 16 * 16;
    return rest;
}

/* C [M, N] = W · X (w_left: W [M, K], X [K, N] with row stride ldx; convolutions) or X · Wᵀ (X [M, K],
 * W [N, K]; linear layers), plus beta · C; W is wf (F32) or wh (F16), K values per row. Split across
 * the threads along the longer of M and N (each thread packs all of the operand that is not split, so
 * the smaller one is duplicated), in slices of 16 rows/columns (the AVX-512 kernels' width). With F16
 * weights each K block of W is converted first: by each thread for the rows of W it alone multiplies,
 * or, when every thread multiplies all of W, by all of them together into one of two shared buffers
 * (a thread may convert block i + 1 into one while another still multiplies block i from the other). */
static void gemm_w(sd_arena *a, int w_left, int64_t M, int64_t N, int64_t K, const float *wf, const uint16_t *wh,
                   const float *X, int64_t ldx, float beta, float *C, int64_t ldc)
{
    assert((wf != NULL) != (wh != NULL));
    blas_single();
    int nt = sd_threads();
    const int split_m = M >= N;
    const int64_t L = split_m ? M : N, units = (L + 15) / 16, R = w_left ? M : N;
    if (nt > units) nt = (int)units;
    if (2.0 * (double)M * (double)N * (double)K < SD_GEMM_PAR_MIN) nt = 1;
    const int along_w = split_m == w_left; /* the threads split W's rows */
    const int own = along_w || nt == 1;    /* each thread converts the rows it multiplies */
    const int64_t kb = gemm_kblock(K), slice = (units + nt - 1) / nt * 16, rows_t = along_w ? slice : R;
    const size_t mark = sd_arena_mark(a);
    float *buf = NULL;
    if (wh) {
        const int64_t floats = own ? nt * rows_t * kb : (K > kb ? 2 : 1) * R * kb;
        buf = sd_arena_alloc(a, (size_t)floats * sizeof(float));
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t a0 = units * t / T * 16, a1 = units * (t + 1) / T * 16;
        if (a1 > L) a1 = L;
        const int64_t m0 = split_m ? a0 : 0, m1 = split_m ? a1 : M, n0 = split_m ? 0 : a0, n1 = split_m ? N : a1;
        const int64_t r0 = along_w ? a0 : 0, r1 = along_w ? a1 : R; /* the rows of W this thread multiplies */
        int64_t i = 0;
        for (int64_t k0 = 0; k0 < K; i++) {
            const int64_t kc = gemm_kblock(K - k0);
            const float *wb = wf ? wf + r0 * K + k0 : NULL;
            int64_t ldw = K;
            if (wh && own) {
                float *b = buf + (int64_t)t * rows_t * kb;
                for (int64_t r = r0; r < r1; r++) sd_f16_to_f32(wh + r * K + k0, b + (r - r0) * kc, (size_t)kc);
                wb = b;
                ldw = kc;
            } else if (wh) {
                float *b = buf + (i & 1) * R * kb;
                for (int64_t r = R * t / T; r < R * (t + 1) / T; r++)
                    sd_f16_to_f32(wh + r * K + k0, b + r * kc, (size_t)kc);
#pragma omp barrier
                wb = b;
                ldw = kc;
            }
            const float bk = k0 ? 1.0f : beta;
            if (a1 > a0) {
                if (w_left)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(m1 - m0), (int)(n1 - n0), (int)kc,
                                1.0f, wb, (int)ldw, X + k0 * ldx + n0, (int)ldx, bk, C + m0 * ldc + n0, (int)ldc);
                else
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(m1 - m0), (int)(n1 - n0), (int)kc,
                                1.0f, X + m0 * ldx + k0, (int)ldx, wb, (int)ldw, bk, C + m0 * ldc + n0, (int)ldc);
            }
            k0 += kc;
        }
    }
    sd_arena_release(a, mark);
}

/* ---- linear ---- */

sd_tensor sd_linear(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b)
{
    const sd_op_timer pt = sd_op_begin();
    int64_t in = x.ne[x.ndim - 1];
    int64_t out = w->ne[0];
    assert(sd_numel(*w) == out * in);
    int64_t m = sd_numel(x) / in;
    int64_t shape[SD_MAX_DIMS];
    for (int i = 0; i < x.ndim; i++) shape[i] = x.ne[i];
    shape[x.ndim - 1] = out;
    sd_tensor y = sd_tensor_new(a, x.ndim, shape);
    if (b) {
        /* PyTorch's addmm(bias, x, w^T): bias enters the product with beta = 1. */
        assert(sd_numel(*b) == out);
        float *yd = y.data;
        const float *bd = b->data;
#pragma omp parallel for if (m * out >= SD_PAR_MIN)
        for (int64_t i = 0; i < m; i++) memcpy(yd + i * out, bd, (size_t)out * sizeof(float));
    }
    gemm_w(a, 0, m, out, in, w->data, w->f16, x.data, in, b ? 1.0f : 0.0f, y.data, out);
    sd_op_end(SD_OP_LINEAR, pt, 2.0 * (double)m * (double)out * (double)in);
    return y;
}

/* ---- convolution ---- */

/* Columns (output pixels) per im2col panel in the per-thread path: each thread builds a panel
 * [K, rows·ow] of about this many columns and multiplies it at once, so the panel is still in
 * cache; larger panels repack the weights less often (OpenBLAS packs A once per call). */
#define SD_PANEL_COLS 1024

/* Bounds on im2col buffers (floats): a per-thread panel, and the shared panel of the few-pixels
 * path; beyond them the work goes in bands of output rows. */
#define SD_PANEL_MAX ((int64_t)4 << 20)
#define SD_SMALL_COL_MAX ((int64_t)8 << 20)
/* Winograd from 32×32 pixels (256 tiles per image: below, the 16 products are too narrow and
 * it measured slower: 16×16 with 320..1280 channels 0.55–1.0× the im2col path, 32×32 1.1–1.25×,
 * 64×64 1.4×), and while its transformed weights (16·cout·cin floats) stay under 128 MB. */
#define SD_WINOGRAD_MIN_PIXELS 1024
#define SD_WINOGRAD_U_MAX ((int64_t)32 << 20)
/* F(4×4, 3×3) (sd_conv2d_ae) from 128 tiles of 4×4 outputs per thread: at fewer the 36 products
 * are too narrow (640 channels at 32×32: 1.0×), at 64×64 with 64 channels it is 1.2×, from 128×128
 * 1.3–1.55× (docs/PERFORMANCE.md "Winograd F(4×4, 3×3) in the autoencoders"). */
#define SD_WINOGRAD4_MIN_TILES 128

typedef struct conv_geom {
    int64_t cin, h, w, kh, kw, oh, ow;
    int stride, pad_t, pad_l;
} conv_geom;

/* im2col of output rows [r0, r0 + rows) of one image xi [cin, h, w] into col: row k of col
 * (k = (ci·kh + ky)·kw + kx) starts at col + k·ld, the first pixel of the band at column 0.
 * par: split the rows of col across the threads (called outside a parallel region). */
static void im2col(const conv_geom *g, const float *xi, int64_t r0, int64_t rows, float *col, int64_t ld, int par)
{
    const int64_t K = g->cin * g->kh * g->kw, ow = g->ow;
#pragma omp parallel for if (par && K * rows * ow >= SD_PAR_MIN)
    for (int64_t k = 0; k < K; k++) {
        const int64_t ci = k / (g->kh * g->kw), ky = (k / g->kw) % g->kh, kx = k % g->kw;
        const float *xc = xi + ci * g->h * g->w;
        float *dst = col + k * ld;
        for (int64_t r = 0; r < rows; r++) {
            const int64_t iy = (r0 + r) * g->stride - g->pad_t + ky;
            float *d = dst + r * ow;
            if (iy < 0 || iy >= g->h) {
                memset(d, 0, (size_t)ow * sizeof(float));
                continue;
            }
            const float *src = xc + iy * g->w;
            const int64_t s = g->stride, off = kx - g->pad_l;
            if (s == 1) {
                /* valid ox: 0 <= ox + off < w; zeros left and right of it */
                int64_t lo = -off, hi = g->w - off;
                if (lo < 0) lo = 0;
                if (hi > ow) hi = ow;
                if (hi < lo) hi = lo;
                for (int64_t ox = 0; ox < lo; ox++) d[ox] = 0.0f;
                if (hi > lo) memcpy(d + lo, src + lo + off, (size_t)(hi - lo) * sizeof(float));
                for (int64_t ox = hi; ox < ow; ox++) d[ox] = 0.0f;
                continue;
            }
            for (int64_t ox = 0; ox < ow; ox++) {
                const int64_t ix = ox * s + off;
                d[ox] = (ix >= 0 && ix < g->w) ? src[ix] : 0.0f;
            }
        }
    }
}

void sd_conv_epilogue_apply(const sd_conv_epilogue *ep, float *p, const float *add, int64_t n)
{
    if (add)
        for (int64_t j = 0; j < n; j++) p[j] += add[j];
    if (ep->relu)
        for (int64_t j = 0; j < n; j++)
            if (p[j] < 0.0f) p[j] = 0.0f; /* NaN passes, as torch.relu lets it */
}

/* The epilogue over all of y [n, cout, ohw] (the paths that do not produce it band by band). */
static void epilogue_all(const sd_conv_epilogue *ep, sd_tensor y)
{
    const int64_t rows = y.ne[0] * y.ne[1], len = y.ne[2] * y.ne[3];
#pragma omp parallel for if (rows * len >= SD_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        sd_conv_epilogue_apply(ep, y.data + r * len, ep->add ? ep->add + r * len : NULL, len);
}

static sd_tensor conv2d_impl(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b, int stride, int pad_t,
                             int pad_b, int pad_l, int pad_r, const sd_conv_epilogue *ep, int tiles4, const sd_tensor *into)
{
    assert(x.ndim == 4 && w->ndim == 4 && stride >= 1);
    const sd_op_timer pt = sd_op_begin();
    blas_single();
    const int64_t n = x.ne[0], cin = x.ne[1], h = x.ne[2], wd = x.ne[3];
    const int64_t cout = w->ne[0], kh = w->ne[2], kw = w->ne[3];
    assert(w->ne[1] == cin);
    const int64_t oh = (h + pad_t + pad_b - kh) / stride + 1;
    const int64_t ow = (wd + pad_l + pad_r - kw) / stride + 1;
    assert(oh > 0 && ow > 0);
    sd_tensor y;
    if (into) { /* the caller's output tensor (sd_conv2d_ae_into) */
        assert(into->ndim == 4 && into->ne[0] == n && into->ne[1] == cout && into->ne[2] == oh && into->ne[3] == ow &&
               sd_tensor_writable(*into) && into->data != x.data);
        y = *into;
    } else {
        y = sd_tensor_4d(a, n, cout, oh, ow);
    }
    const int64_t ohw = oh * ow, K = cin * kh * kw;
    const conv_geom g = {cin, h, wd, kh, kw, oh, ow, stride, pad_t, pad_l};
    const int is1x1 = kh == 1 && kw == 1 && stride == 1 && !pad_t && !pad_b && !pad_l && !pad_r;
    /* Bias enters the product with beta = 1 (output prefilled), as PyTorch's addmm does. */
    const float beta = b ? 1.0f : 0.0f;
    if (b) assert(sd_numel(*b) == cout);
    const sd_op_kind kind = is1x1 ? SD_OP_CONV1X1 : (kh == 3 && kw == 3) ? SD_OP_CONV3X3 : SD_OP_CONV_OTHER;
    const double flops = 2.0 * (double)n * (double)cout * (double)K * (double)ohw;
    const int nt = sd_threads();

    const int wino = g_winograd && kh == 3 && kw == 3 && stride == 1 && pad_t == 1 && pad_b == 1 && pad_l == 1 &&
                     pad_r == 1 && oh * ow >= SD_WINOGRAD_MIN_PIXELS &&
                     (int64_t)sd_winograd_u_floats(cout, cin) <= SD_WINOGRAD_U_MAX;
    const int many = !wino && n * ohw >= cout && nt > 1 && flops >= SD_GEMM_PAR_MIN;
    const int64_t nc = n * ohw;
    /* A weight still in F16 (sd_model_weight_f16) is read in place, a block at a time, by the few-pixels
     * product (gemm_w); the other paths read it more than once, so they get it converted whole, for this
     * call only. */
    const size_t mark = sd_arena_mark(a);
    sd_tensor wv = *w;
    if (w->f16 && (wino || many || K * nc > SD_SMALL_COL_MAX)) {
        wv.data = sd_arena_alloc(a, (size_t)sd_numel(*w) * sizeof(float));
        wv.f16 = NULL;
        wv.mem = SD_MEM_HOST;
        sd_f16_to_f32_par(w->f16, wv.data, (size_t)sd_numel(*w));
    }
    w = &wv;

    if (wino) {
        /* F(4×4, 3×3) where the caller allows it and there are enough tiles (SD_WINOGRAD4_MIN_TILES) */
        const int f4 = tiles4 && n * ((oh + 3) / 4) * ((ow + 3) / 4) >= SD_WINOGRAD4_MIN_TILES * nt &&
                       (int64_t)sd_winograd4_u_floats(cout, cin) <= SD_WINOGRAD_U_MAX;
        const size_t nu = f4 ? sd_winograd4_u_floats(cout, cin) : sd_winograd_u_floats(cout, cin);
        const size_t ns = f4 ? sd_winograd4_scratch_floats(n, cin, h, wd, cout, nt)
                             : sd_winograd_scratch_floats(n, cin, h, wd, cout, nt);
        float *u = sd_arena_alloc(a, nu * sizeof(float)), *scr = sd_arena_alloc(a, ns * sizeof(float));
        (f4 ? sd_conv3x3_winograd4 : sd_conv3x3_winograd)(x.data, n, cin, h, wd, w->data, b ? b->data : NULL, cout,
                                                          y.data, u, scr, nt, ep);
        sd_arena_release(a, mark);
        sd_op_end(kind, pt, flops);
        return y;
    }

    if (many) {
        /* Many pixels (the product is wider than tall): tasks of `band` output rows of one image;
         * each thread builds the task's im2col panel in its own buffer and multiplies it alone,
         * Y[:, band] = W [cout, K] · col [K, band·ow]. */
        int64_t cols = SD_PANEL_COLS;
        if (cols * K > SD_PANEL_MAX) cols = SD_PANEL_MAX / K;
        int64_t band = cols / ow;
        if (band < 1) band = 1;
        if (band > oh) band = oh;
        /* at least two tasks per thread when the image allows it, for balance */
        while (band > 1 && n * ((oh + band - 1) / band) < 2 * nt) band = (band + 1) / 2;
        const int64_t nb = (oh + band - 1) / band, tasks = n * nb;
        float *panels = is1x1 ? NULL : sd_arena_alloc(a, (size_t)(nt * K * band * ow) * sizeof(float));
        float *yd = y.data;
        const float *xd = x.data, *wdat = w->data, *bd = b ? b->data : NULL;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (int64_t tk = 0; tk < tasks; tk++) {
            const int64_t i = tk / nb, r0 = (tk % nb) * band;
            const int64_t rows = r0 + band <= oh ? band : oh - r0, ncol = rows * ow;
            const float *xi = xd + i * cin * h * wd;
            float *yo = yd + i * cout * ohw + r0 * ow;
            if (bd)
                for (int64_t c = 0; c < cout; c++) {
                    float *p = yo + c * ohw;
#pragma omp simd
                    for (int64_t j = 0; j < ncol; j++) p[j] = bd[c];
                }
            const float *bm;
            int64_t ldb;
            if (is1x1) {
                bm = xi + r0 * ow;
                ldb = ohw;
            } else {
                float *col = panels + (int64_t)omp_get_thread_num() * K * band * ow;
                im2col(&g, xi, r0, rows, col, ncol, 0);
                bm = col;
                ldb = ncol;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, (int)ncol, (int)K, 1.0f, wdat,
                        (int)K, bm, (int)ldb, beta, yo, (int)ohw);
            if (ep)
                for (int64_t c = 0; c < cout; c++)
                    sd_conv_epilogue_apply(ep, yo + c * ohw, ep->add ? ep->add + (yo - yd) + c * ohw : NULL, ncol);
        }
        sd_arena_release(a, mark);
        sd_op_end(kind, pt, flops);
        return y;
    }

    /* Few pixels (8×8 .. 16×16 latents, where the weights dominate): the products are split
     * across threads by output channels. All items in one product when the panel is small,
     * T [cout, n·ohw] = W · col [K, n·ohw], then scattered to NCHW (a single image multiplies
     * straight into y); otherwise image by image in bands of output rows. */
    if (K * nc <= SD_SMALL_COL_MAX) {
        const float *bm = x.data;
        if (!(is1x1 && n == 1)) {
            float *col = sd_arena_alloc(a, (size_t)(K * nc) * sizeof(float));
            for (int64_t i = 0; i < n; i++) {
                const float *xi = x.data + i * cin * h * wd;
                if (is1x1) {
#pragma omp parallel for if (cin * ohw >= SD_PAR_MIN)
                    for (int64_t c = 0; c < cin; c++)
                        memcpy(col + c * nc + i * ohw, xi + c * ohw, (size_t)ohw * sizeof(float));
                } else {
                    im2col(&g, xi, 0, oh, col + i * ohw, nc, 1);
                }
            }
            bm = col;
        }
        float *tmp = n == 1 ? y.data : sd_arena_alloc(a, (size_t)(cout * nc) * sizeof(float));
        if (b) {
            const float *bd = b->data;
#pragma omp parallel for if (cout * nc >= SD_PAR_MIN)
            for (int64_t c = 0; c < cout; c++)
#pragma omp simd
                for (int64_t j = 0; j < nc; j++) tmp[c * nc + j] = bd[c];
        }
        gemm_w(a, 1, cout, nc, K, w->data, w->f16, bm, nc, beta, tmp, nc);
        if (n > 1) {
            float *yd = y.data;
#pragma omp parallel for collapse(2) if (cout * nc >= SD_PAR_MIN)
            for (int64_t i = 0; i < n; i++)
                for (int64_t c = 0; c < cout; c++)
                    memcpy(yd + (i * cout + c) * ohw, tmp + c * nc + i * ohw, (size_t)ohw * sizeof(float));
        }
        sd_arena_release(a, mark);
        if (ep) epilogue_all(ep, y);
        sd_op_end(kind, pt, flops);
        return y;
    }
    if (b) {
        float *yd = y.data;
        const float *bd = b->data;
#pragma omp parallel for collapse(2) if (n * cout * ohw >= SD_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < cout; c++) {
                float *p = yd + (i * cout + c) * ohw;
#pragma omp simd
                for (int64_t j = 0; j < ohw; j++) p[j] = bd[c];
            }
    }
    int64_t band = SD_SMALL_COL_MAX / (K * ow);
    if (band < 1) band = 1;
    if (band > oh) band = oh;
    float *col = is1x1 ? NULL : sd_arena_alloc(a, (size_t)(K * band * ow) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x.data + i * cin * h * wd;
        for (int64_t r0 = 0; r0 < oh; r0 += band) {
            const int64_t rows = r0 + band <= oh ? band : oh - r0, ncol = rows * ow;
            if (!is1x1) im2col(&g, xi, r0, rows, col, ncol, 1);
            gemm_w(a, 1, cout, ncol, K, w->data, NULL, is1x1 ? xi + r0 * ow : col, is1x1 ? ohw : ncol, beta,
                   y.data + i * cout * ohw + r0 * ow, ohw);
        }
    }
    sd_arena_release(a, mark);
    if (ep) epilogue_all(ep, y);
    sd_op_end(kind, pt, flops);
    return y;
}

sd_tensor sd_conv2d_pad(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b,
                        int stride, int pad_t, int pad_b, int pad_l, int pad_r)
{
    return conv2d_impl(a, x, w, b, stride, pad_t, pad_b, pad_l, pad_r, NULL, 0, NULL);
}

sd_tensor sd_conv2d_ep(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b, int stride, int pad,
                       const sd_conv_epilogue *ep)
{
    return conv2d_impl(a, x, w, b, stride, pad, pad, pad, pad, ep, 0, NULL);
}

sd_tensor sd_conv2d_ae(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b, int stride, int pad,
                       const sd_conv_epilogue *ep)
{
    return conv2d_impl(a, x, w, b, stride, pad, pad, pad, pad, ep, 1, NULL);
}

sd_tensor sd_conv2d_ae_into(sd_arena *a, sd_tensor y, sd_tensor x, const sd_tensor *w, const sd_tensor *b, int stride,
                            int pad, const sd_conv_epilogue *ep)
{
    return conv2d_impl(a, x, w, b, stride, pad, pad, pad, pad, ep, 1, &y);
}

sd_tensor sd_conv2d(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b, int stride,
                    int pad)
{
    return sd_conv2d_pad(a, x, w, b, stride, pad, pad, pad, pad);
}

/* ---- normalisation ---- */

/* GroupNorm as PyTorch's CPU kernel: per (n, group) mean and 1/sqrt(var + eps) (biased
 * variance), then y = x·(rstd·γ_c) + (β_c − mean·rstd·γ_c). Statistics in double. */
/* a NULL: in place (each group's statistics are taken before any of it is written) */
static sd_tensor groupnorm_impl(sd_arena *a, sd_tensor x, int groups, const sd_tensor *gain,
                                const sd_tensor *bias, float eps, int silu)
{
    assert(x.ndim >= 3 && groups > 0);
    const sd_op_timer pt = sd_op_begin();
    const int64_t n = x.ne[0], c = x.ne[1];
    assert(c % groups == 0);
    const int64_t hw = sd_numel(x) / (n * c);
    const int64_t cpg = c / groups, gsz = cpg * hw;
    assert(a || sd_tensor_writable(x));
    sd_tensor y = a ? sd_tensor_new(a, x.ndim, x.ne) : x;
    const float *xd = x.data;
    float *yd = y.data;
    const float *gd = gain ? gain->data : NULL, *bd = bias ? bias->data : NULL;
    const sd_cpu_kernels *k = sd_cpu();
#pragma omp parallel for collapse(2) if (n * c * hw >= SD_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t g = 0; g < groups; g++) {
            const float *p = xd + (i * c + g * cpg) * hw;
            double mean, var;
            k->mean_var(p, gsz, &mean, &var);
            const double rstd = 1.0 / sqrt(var + (double)eps);
            for (int64_t cc = 0; cc < cpg; cc++) {
                const int64_t ch = g * cpg + cc;
                const double gm = gd ? gd[ch] : 1.0;
                const float sc = (float)(rstd * gm);
                const float sh = (float)((bd ? bd[ch] : 0.0) - mean * rstd * gm);
                k->affine_act(yd + (i * c + ch) * hw, p + cc * hw, hw, sc, sh, silu);
            }
        }
    sd_op_end(SD_OP_GROUPNORM, pt, 0);
    return y;
}

sd_tensor sd_groupnorm(sd_arena *a, sd_tensor x, int groups, const sd_tensor *gain,
                       const sd_tensor *bias, float eps)
{
    return groupnorm_impl(a, x, groups, gain, bias, eps, 0);
}

sd_tensor sd_groupnorm_silu(sd_arena *a, sd_tensor x, int groups, const sd_tensor *gain,
                            const sd_tensor *bias, float eps)
{
    return groupnorm_impl(a, x, groups, gain, bias, eps, 1);
}

void sd_groupnorm_silu_(sd_tensor x, int groups, const sd_tensor *gain, const sd_tensor *bias, float eps)
{
    (void)groupnorm_impl(NULL, x, groups, gain, bias, eps, 1);
}

sd_tensor sd_layernorm(sd_arena *a, sd_tensor x, const sd_tensor *gain, const sd_tensor *bias,
                       float eps)
{
    const sd_op_timer pt = sd_op_begin();
    const int64_t d = x.ne[x.ndim - 1];
    const int64_t rows = sd_numel(x) / d;
    sd_tensor y = sd_tensor_new(a, x.ndim, x.ne);
    const float *xd = x.data;
    float *yd = y.data;
    const float *gd = gain ? gain->data : NULL, *bd = bias ? bias->data : NULL;
    const sd_cpu_kernels *k = sd_cpu();
#pragma omp parallel for if (rows * d >= SD_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) k->layernorm_row(xd + r * d, yd + r * d, d, gd, bd, eps);
    sd_op_end(SD_OP_LAYERNORM, pt, 0);
    return y;
}

/* ---- activations ---- */

void sd_silu_(sd_tensor x)
{
    assert(sd_tensor_writable(x));
    const sd_op_timer pt = sd_op_begin();
    const int64_t n = sd_numel(x), chunk = 4096;
    float *p = x.data;
    const sd_cpu_kernels *k = sd_cpu();
#pragma omp parallel for if (n >= SD_PAR_MIN)
    for (int64_t i = 0; i < n; i += chunk) k->affine_act(p + i, p + i, n - i < chunk ? n - i : chunk, 1.0f, 0.0f, 1);
    sd_op_end(SD_OP_ACTIVATION, pt, 0);
}

/* Exact GELU with erf as PyTorch's AVX2 kernel evaluates it (cpu_loops.h, sd_gelu1). */
void sd_gelu_(sd_tensor x)
{
    assert(sd_tensor_writable(x));
    const sd_op_timer pt = sd_op_begin();
    const int64_t n = sd_numel(x), chunk = 4096;
    float *p = x.data;
    const sd_cpu_kernels *k = sd_cpu();
#pragma omp parallel for if (n >= SD_PAR_MIN)
    for (int64_t i = 0; i < n; i += chunk) k->gelu_mul(p + i, NULL, p + i, n - i < chunk ? n - i : chunk);
    sd_op_end(SD_OP_ACTIVATION, pt, 0);
}

void sd_quick_gelu_(sd_tensor x)
{
    assert(sd_tensor_writable(x));
    /* transformers QuickGELUActivation (cpu_loops.h, sd_loop_quick_gelu) */
    const sd_op_timer pt = sd_op_begin();
    const int64_t n = sd_numel(x), chunk = 4096;
    float *p = x.data;
    const sd_cpu_kernels *k = sd_cpu();
#pragma omp parallel for if (n >= SD_PAR_MIN)
    for (int64_t i = 0; i < n; i += chunk) k->quick_gelu(p + i, n - i < chunk ? n - i : chunk);
    sd_op_end(SD_OP_ACTIVATION, pt, 0);
}

sd_tensor sd_geglu(sd_arena *a, sd_tensor x)
{
    const sd_op_timer pt = sd_op_begin();
    const int64_t d2 = x.ne[x.ndim - 1];
    assert(d2 % 2 == 0);
    const int64_t f = d2 / 2, rows = sd_numel(x) / d2;
    int64_t shape[SD_MAX_DIMS];
    for (int i = 0; i < x.ndim; i++) shape[i] = x.ne[i];
    shape[x.ndim - 1] = f;
    sd_tensor y = sd_tensor_new(a, x.ndim, shape);
    const float *xd = x.data;
    float *yd = y.data;
    const sd_cpu_kernels *k = sd_cpu();
#pragma omp parallel for if (rows * f >= SD_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *hp = xd + r * d2, *gp = hp + f;
        float *o = yd + r * f;
        k->gelu_mul(o, hp, gp, f);
    }
    sd_op_end(SD_OP_ACTIVATION, pt, 0);
    return y;
}

/* ---- elementwise / layout ---- */

void sd_add_(sd_tensor x, sd_tensor y)
{
    assert(sd_tensor_writable(x));
    const sd_op_timer pt = sd_op_begin();
    const int64_t n = sd_numel(x);
    assert(n == sd_numel(y));
    float *p = x.data;
    const float *q = y.data;
#pragma omp parallel for simd if (n >= SD_PAR_MIN)
    for (int64_t i = 0; i < n; i++) p[i] += q[i];
    sd_op_end(SD_OP_ELEMENTWISE, pt, 0);
}

void sd_scale_(sd_tensor x, float s)
{
    assert(sd_tensor_writable(x));
    const sd_op_timer pt = sd_op_begin();
    const int64_t n = sd_numel(x);
    float *p = x.data;
#pragma omp parallel for simd if (n >= SD_PAR_MIN)
    for (int64_t i = 0; i < n; i++) p[i] *= s;
    sd_op_end(SD_OP_ELEMENTWISE, pt, 0);
}

void sd_add_channel_bias_(sd_tensor x, sd_tensor v)
{
    assert(sd_tensor_writable(x));
    const sd_op_timer pt = sd_op_begin();
    const int64_t n = x.ne[0], c = x.ne[1];
    const int64_t hw = sd_numel(x) / (n * c);
    assert(sd_numel(v) == n * c);
    float *p = x.data;
    const float *q = v.data;
#pragma omp parallel for collapse(2) if (n * c * hw >= SD_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            float *d = p + (i * c + ch) * hw;
            const float s = q[i * c + ch];
#pragma omp simd
            for (int64_t j = 0; j < hw; j++) d[j] += s;
        }
    sd_op_end(SD_OP_ELEMENTWISE, pt, 0);
}

sd_tensor sd_concat1(sd_arena *a, sd_tensor x, sd_tensor y)
{
    assert(x.ndim >= 2 && x.ndim == y.ndim && x.ne[0] == y.ne[0]);
    const sd_op_timer pt = sd_op_begin();
    const int64_t n = x.ne[0];
    const int64_t xs = sd_numel(x) / n, ys = sd_numel(y) / n;
    assert(xs / x.ne[1] == ys / y.ne[1]);
    int64_t shape[SD_MAX_DIMS];
    for (int i = 0; i < x.ndim; i++) shape[i] = x.ne[i];
    shape[1] = x.ne[1] + y.ne[1];
    sd_tensor o = sd_tensor_new(a, x.ndim, shape);
    for (int64_t i = 0; i < n; i++) {
        memcpy(o.data + i * (xs + ys), x.data + i * xs, (size_t)xs * sizeof(float));
        memcpy(o.data + i * (xs + ys) + xs, y.data + i * ys, (size_t)ys * sizeof(float));
    }
    sd_op_end(SD_OP_LAYOUT, pt, 0);
    return o;
}

sd_tensor sd_upsample2x(sd_arena *a, sd_tensor x)
{
    assert(x.ndim == 4);
    const sd_op_timer pt = sd_op_begin();
    const int64_t nc = x.ne[0] * x.ne[1], h = x.ne[2], w = x.ne[3];
    sd_tensor y = sd_tensor_4d(a, x.ne[0], x.ne[1], 2 * h, 2 * w);
    const float *xd = x.data;
    float *yd = y.data;
#pragma omp parallel for collapse(2) if (nc * h * w * 4 >= SD_PAR_MIN)
    for (int64_t p = 0; p < nc; p++)
        for (int64_t r = 0; r < h; r++) {
            const float *s = xd + (p * h + r) * w;
            float *d0 = yd + (p * 2 * h + 2 * r) * 2 * w;
            for (int64_t c = 0; c < w; c++) d0[2 * c] = d0[2 * c + 1] = s[c];
            memcpy(d0 + 2 * w, d0, (size_t)(2 * w) * sizeof(float));
        }
    sd_op_end(SD_OP_LAYOUT, pt, 0);
    return y;
}

/* Transpose each of n row-major [rows, cols] matrices into [cols, rows], in 32×32 tiles. */
static void transpose_batched(const float *src, float *dst, int64_t n, int64_t rows, int64_t cols)
{
    const int64_t T = 32;
#pragma omp parallel for collapse(3) if (n * rows * cols >= SD_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t r0 = 0; r0 < rows; r0 += T)
            for (int64_t c0 = 0; c0 < cols; c0 += T) {
                const float *s = src + i * rows * cols;
                float *d = dst + i * rows * cols;
                const int64_t r1 = r0 + T < rows ? r0 + T : rows, c1 = c0 + T < cols ? c0 + T : cols;
                for (int64_t c = c0; c < c1; c++)
                    for (int64_t r = r0; r < r1; r++) d[c * rows + r] = s[r * cols + c];
            }
}

sd_tensor sd_nchw_to_nlc(sd_arena *a, sd_tensor x)
{
    assert(x.ndim == 4);
    const sd_op_timer pt = sd_op_begin();
    const int64_t n = x.ne[0], c = x.ne[1], hw = x.ne[2] * x.ne[3];
    sd_tensor y = sd_tensor_3d(a, n, hw, c);
    transpose_batched(x.data, y.data, n, c, hw); /* per image [c, hw] -> [hw, c] */
    sd_op_end(SD_OP_LAYOUT, pt, 0);
    return y;
}

sd_tensor sd_nlc_to_nchw(sd_arena *a, sd_tensor x, int64_t h, int64_t w)
{
    assert(x.ndim == 3 && x.ne[1] == h * w);
    const sd_op_timer pt = sd_op_begin();
    const int64_t n = x.ne[0], hw = x.ne[1], c = x.ne[2];
    sd_tensor y = sd_tensor_4d(a, n, c, h, w);
    transpose_batched(x.data, y.data, n, hw, c); /* per image [hw, c] -> [c, hw] */
    sd_op_end(SD_OP_LAYOUT, pt, 0);
    return y;
}

/* ---- softmax / attention ---- */

void sd_softmax_(sd_tensor x)
{
    assert(sd_tensor_writable(x));
    const sd_op_timer pt = sd_op_begin();
    const int64_t d = x.ne[x.ndim - 1], rows = sd_numel(x) / d;
    float *p = x.data;
    const sd_cpu_kernels *k = sd_cpu();
#pragma omp parallel for if (rows * d >= SD_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) k->softmax_row(p + r * d, d, d);
    sd_op_end(SD_OP_ACTIVATION, pt, 0);
}

/* Query rows per block: at most SD_ATTN_BLOCK, and one thread's score block [rows, lk] stays
 * within ~1 MB (L2), so the softmax reads and the P·V product re-read it from cache. */
#define SD_ATTN_BLOCK 256
#define SD_ATTN_SCORE_FLOATS ((int64_t)256 << 10)

sd_tensor sd_attention(sd_arena *a, sd_tensor q, sd_tensor k, sd_tensor v, int heads, int causal)
{
    assert(q.ndim == 3 && k.ndim == 3 && v.ndim == 3 && heads > 0);
    const sd_op_timer pt = sd_op_begin();
    blas_single();
    const int64_t b = q.ne[0], lq = q.ne[1], hd = q.ne[2], lk = k.ne[1];
    assert(k.ne[0] == b && v.ne[0] == b && k.ne[2] == hd && v.ne[2] == hd && v.ne[1] == lk);
    assert(hd % heads == 0);
    const int64_t d = hd / heads;
    const float scale = 1.0f / sqrtf((float)d);
    sd_tensor o = sd_tensor_3d(a, b, lq, hd);

    int64_t blk = SD_ATTN_SCORE_FLOATS / (lk > 0 ? lk : 1);
    if (blk > SD_ATTN_BLOCK) blk = SD_ATTN_BLOCK;
    if (blk < 16) blk = 16;
    if (blk > lq) blk = lq;
    const int64_t nblk = (lq + blk - 1) / blk, tasks = b * heads * nblk;
    int nt = sd_threads();
    if (nt > tasks) nt = (int)tasks;
    if (4.0 * (double)b * (double)lq * (double)lk * (double)hd < SD_GEMM_PAR_MIN) nt = 1;
    size_t mark = sd_arena_mark(a);
    const sd_cpu_kernels *ck = sd_cpu();
    if (d >= 1 && d <= ck->attn_max_d) {
        /* The kernel table's attention products (AVX-512: attn_avx512.c): K transposed to
         * kt [d, lkp] and V padded to vp [lk, dp] once per (item, head), then the same
         * query-block tasks as below. */
        const int64_t lkp = (lk + 15) / 16 * 16, dp = (d + 15) / 16 * 16, bh = b * heads;
        float *kt = sd_arena_alloc(a, (size_t)(bh * d * lkp) * sizeof(float));
        float *vp = sd_arena_alloc(a, (size_t)(bh * lk * dp) * sizeof(float));
        float *sb = sd_arena_alloc(a, (size_t)(nt * blk * lkp) * sizeof(float));
#pragma omp parallel num_threads(nt)
        {
#pragma omp for schedule(static)
            for (int64_t t = 0; t < bh; t++) {
                const int64_t bi = t / heads, h = t % heads;
                const float *kh = k.data + bi * lk * hd + h * d, *vh = v.data + bi * lk * hd + h * d;
                float *ktt = kt + t * d * lkp, *vpt = vp + t * lk * dp;
                /* K^T in tiles of 64 keys, each [d][w] (attn_avx512.c) */
                for (int64_t j0 = 0; j0 < lkp; j0 += 64) {
                    const int64_t wj = lkp - j0 < 64 ? lkp - j0 : 64;
                    float *kb = ktt + j0 * d;
                    for (int64_t j = j0; j < j0 + wj; j++)
                        for (int64_t c = 0; c < d; c++) kb[c * wj + (j - j0)] = j < lk ? kh[j * hd + c] : 0.0f;
                }
                for (int64_t j = 0; j < lk; j++) {
                    memcpy(vpt + j * dp, vh + j * hd, (size_t)d * sizeof(float));
                    for (int64_t c = d; c < dp; c++) vpt[j * dp + c] = 0.0f;
                }
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t tk = 0; tk < tasks; tk++) {
                const int64_t t = tk / nblk, bi = t / heads, h = t % heads, r0 = (tk % nblk) * blk;
                const int64_t rows = r0 + blk <= lq ? blk : lq - r0;
                float *s = sb + (int64_t)omp_get_thread_num() * blk * lkp;
                int64_t kn = lk;
                if (causal && r0 + rows < lk) kn = r0 + rows;
                ck->attn_scores(q.data + (bi * lq + r0) * hd + h * d, hd, rows, kt + t * d * lkp, lkp, d, scale,
                                s, lkp);
                for (int64_t r = 0; r < rows; r++) {
                    int64_t valid = kn;
                    if (causal && r0 + r + 1 < kn) valid = r0 + r + 1;
                    ck->attn_softmax_row(s + r * lkp, kn, valid);
                }
                ck->attn_pv(s, lkp, rows, kn, vp + t * lk * dp, d, o.data + (bi * lq + r0) * hd + h * d, hd);
            }
        }
        sd_arena_release(a, mark);
        sd_op_end(SD_OP_ATTENTION, pt, 4.0 * (double)b * (double)lq * (double)lk * (double)hd);
        return o;
    }
    float *sbuf = sd_arena_alloc(a, (size_t)(nt * blk * lk) * sizeof(float));
    /* Tasks (item, head, query block), each on one thread: S = scale · Q_blk K_h^T (diffusers:
     * baddbmm(..., beta=0, alpha=scale)), softmax of each row, O_blk = P · V_h. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t tk = 0; tk < tasks; tk++) {
        const int64_t bi = tk / (heads * nblk), h = (tk / nblk) % heads, r0 = (tk % nblk) * blk;
        const int64_t rows = r0 + blk <= lq ? blk : lq - r0;
        const float *qh = q.data + bi * lq * hd + h * d;
        const float *kh = k.data + bi * lk * hd + h * d;
        const float *vh = v.data + bi * lk * hd + h * d;
        float *oh = o.data + bi * lq * hd + h * d;
        float *s = sbuf + (int64_t)omp_get_thread_num() * blk * lk;
        /* With a causal mask the block only needs keys 0 .. r0+rows-1. */
        int64_t kn = lk;
        if (causal && r0 + rows < lk) kn = r0 + rows;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)kn, (int)d, scale, qh + r0 * hd,
                    (int)hd, kh, (int)hd, 0.0f, s, (int)kn);
        for (int64_t r = 0; r < rows; r++) {
            int64_t valid = kn;
            if (causal && r0 + r + 1 < kn) valid = r0 + r + 1;
            ck->softmax_row(s + r * kn, kn, valid);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)kn, 1.0f, s, (int)kn, vh,
                    (int)hd, 0.0f, oh + r0 * hd, (int)hd);
    }
    sd_arena_release(a, mark);
    sd_op_end(SD_OP_ATTENTION, pt, 4.0 * (double)b * (double)lq * (double)lk * (double)hd);
    return o;
}

/* ---- timestep embedding ---- */

sd_tensor sd_timestep_embedding(sd_arena *a, const float *t, int n, int dim)
{
    /* diffusers get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0):
     * exponent_j = -ln(10000)·j / half (float32), f_j = exp(exponent_j), arg = t·f_j (float32),
     * out = [cos(arg) | sin(arg)], zero-padded when dim is odd. */
    const int half = dim / 2;
    sd_tensor y = sd_tensor_2d(a, n, dim);
    const float lnp = (float)-log(10000.0);
    for (int i = 0; i < n; i++) {
        float *row = y.data + (int64_t)i * dim;
        for (int j = 0; j < half; j++) {
            const float e = (lnp * (float)j) / (float)half;
            const float f = sd_expf(e);
            const float arg = t[i] * f;
            row[j] = (float)cos((double)arg);
            row[half + j] = (float)sin((double)arg);
        }
        if (dim % 2) row[dim - 1] = 0.0f;
    }
    return y;
}
