/* test_ops.c — every op of include/sdgen/ops.h against PyTorch 1.13 outputs
 * (tests/fixtures/ops/, written by scripts/make-op-fixtures.py), under the kernel set the CPU
 * picks (or $SDGEN_CPU); then every other kernel set this machine runs against the portable one
 * (check_kernel_sets). */
#include <stdint.h>

#include "sdgen/npy.h"
#include "sdgen/ops.h"
#include "sdgen/safetensors.h"
#include "testutil.h"

/* Direct convolution in double, for shapes the fixtures do not cover. */
static void naive_conv(const sd_tensor *x, const sd_tensor *w, const float *b, int s, int pt, int pl,
                       sd_tensor *y)
{
    const int64_t n = x->ne[0], ci = x->ne[1], h = x->ne[2], wd = x->ne[3];
    const int64_t co = w->ne[0], kh = w->ne[2], kw = w->ne[3], oh = y->ne[2], ow = y->ne[3];
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < co; o++)
            for (int64_t r = 0; r < oh; r++)
                for (int64_t c = 0; c < ow; c++) {
                    double acc = b ? b[o] : 0.0;
                    for (int64_t k = 0; k < ci; k++)
                        for (int64_t ky = 0; ky < kh; ky++)
                            for (int64_t kx = 0; kx < kw; kx++) {
                                const int64_t iy = r * s - pt + ky, ix = c * s - pl + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                acc += (double)x->data[((i * ci + k) * h + iy) * wd + ix] *
                                       w->data[((o * ci + k) * kh + ky) * kw + kx];
                            }
                    y->data[((i * co + o) * oh + r) * ow + c] = (float)acc;
                }
}

static void fill(sd_tensor t, unsigned seed)
{
    for (int64_t i = 0; i < sd_numel(t); i++) {
        seed = seed * 1664525u + 1013904223u;
        t.data[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
    }
}

#define NFIX 64
static sd_npy fix[NFIX];
static int nfix;

/* Load tests/fixtures/ops/NAME.npy as a tensor view (kept until exit). */
static sd_tensor load(const char *name)
{
    const char *src = getenv("SDGEN_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/ops/%s.npy", src && *src ? src : ".", name);
    sd_err err;
    sd_tensor t = {0};
    if (nfix >= NFIX || sd_npy_read(&fix[nfix], path, &err)) {
        fprintf(stderr, "cannot load %s: %s\n", path, nfix >= NFIX ? "too many" : err.msg);
        exit(1);
    }
    sd_npy *a = &fix[nfix++];
    t.data = a->f32;
    t.ndim = a->ndim;
    for (int i = 0; i < SD_MAX_DIMS; i++) t.ne[i] = i < a->ndim ? a->shape[i] : 1;
    return t;
}

static int same_shape(sd_tensor a, sd_tensor b)
{
    if (a.ndim != b.ndim) return 0;
    for (int i = 0; i < a.ndim; i++)
        if (a.ne[i] != b.ne[i]) return 0;
    return 1;
}

/* n floats of got and want with the same bits; prints how many and the first that differ. */
static void check_bits(const char *what, const float *got, const float *want, int64_t n)
{
    int64_t diff = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(got + i, want + i, sizeof(float))) {
            if (first < 0) first = i;
            diff++;
        }
    CHECK(diff == 0, "%s: %lld of %lld values differ in their bits (first at %lld: %.9g vs %.9g)", what,
          (long long)diff, (long long)n, (long long)first, first >= 0 ? got[first] : 0.0,
          first >= 0 ? want[first] : 0.0);
    if (diff == 0) printf("ok   %s: %lld values, same bits\n", what, (long long)n);
}

/* Outputs of the ops that go through the CPU kernel table, for one kernel set. */
enum { KS_SILU, KS_GELU, KS_QGELU, KS_GEGLU, KS_SOFTMAX, KS_GN, KS_GN_SILU, KS_LN, KS_GN_EXACT, KS_LN_EXACT,
       KS_ATTN, KS_ATTN_CAUSAL, KS_WINOGRAD, KS_WINOGRAD4, KS_F16, KS_N };

/* Fill each run of 2·half values with quarter-integers in [-2, 2] and then their negatives: the
 * run's sum is exactly 0 and every square and partial sum is exact, so the normalisation
 * statistics come out the same in any summation order, and only the kernels' own arithmetic
 * can make two kernel sets differ. */
static void fill_exact_stats(sd_tensor t, int64_t half)
{
    for (int64_t i = 0; i < sd_numel(t); i++) {
        const int64_t r = i % (2 * half), j = r < half ? r : r - half;
        const float v = 0.25f * (float)((j * 7) % 17 - 8);
        t.data[i] = r < half ? v : -v;
    }
}

static void run_kernel_ops(sd_arena *a, sd_tensor out[KS_N])
{
    /* activations over -120 .. 120 (sd_expf's clamps at -104 and 100, subnormal results) and
     * a random part; lengths off the vector widths so the scalar tails run too */
    sd_tensor act = sd_tensor_2d(a, 1, 4099);
    fill(act, 21);
    for (int64_t i = 0; i < 1200; i++) act.data[i] = -120.0f + 0.2f * (float)i;
    for (int64_t i = 1200; i < 4099; i++) act.data[i] *= 8.0f;
    out[KS_SILU] = sd_tensor_copy(a, act);
    sd_silu_(out[KS_SILU]);
    out[KS_GELU] = sd_tensor_copy(a, act);
    sd_gelu_(out[KS_GELU]);
    out[KS_QGELU] = sd_tensor_copy(a, act);
    sd_quick_gelu_(out[KS_QGELU]);
    sd_tensor gx = sd_tensor_2d(a, 3, 2 * 1003);
    fill(gx, 22);
    out[KS_GEGLU] = sd_geglu(a, gx);
    /* softmax rows of 203 values, scores up to ±200 (terms that underflow to 0) */
    sd_tensor sm = sd_tensor_2d(a, 7, 203);
    fill(sm, 23);
    for (int64_t i = 0; i < sd_numel(sm); i++) sm.data[i] *= i < 203 ? 200.0f : 20.0f;
    out[KS_SOFTMAX] = sm;
    sd_softmax_(out[KS_SOFTMAX]);
    sd_tensor x = sd_tensor_4d(a, 2, 64, 9, 11), g = sd_tensor_2d(a, 1, 64), b = sd_tensor_2d(a, 1, 64);
    fill(x, 24); fill(g, 25); fill(b, 26);
    for (int64_t i = 0; i < sd_numel(x); i++) x.data[i] = 3.0f * x.data[i] + 0.5f;
    out[KS_GN] = sd_groupnorm(a, x, 32, &g, &b, 1e-5f);
    out[KS_GN_SILU] = sd_groupnorm_silu(a, x, 32, &g, &b, 1e-6f);
    sd_tensor l = sd_tensor_2d(a, 37, 333), lg = sd_tensor_2d(a, 1, 333), lb = sd_tensor_2d(a, 1, 333);
    fill(l, 27); fill(lg, 28); fill(lb, 29);
    out[KS_LN] = sd_layernorm(a, l, &lg, &lb, 1e-5f);
    fill_exact_stats(x, 99); /* groups of 2 channels × 99 pixels */
    out[KS_GN_EXACT] = sd_groupnorm_silu(a, x, 32, &g, &b, 1e-5f);
    l = sd_tensor_2d(a, 37, 334);
    fill_exact_stats(l, 167);
    lg = sd_tensor_2d(a, 1, 334), lb = sd_tensor_2d(a, 1, 334);
    fill(lg, 28); fill(lb, 29);
    out[KS_LN_EXACT] = sd_layernorm(a, l, &lg, &lb, 1e-5f);
    /* attention: head size 40 (the U-Net's first level, AVX-512 kernels where present), 150
     * queries, 77 keys; causal with head size 64 (CLIP) */
    sd_tensor q = sd_tensor_3d(a, 2, 150, 80), k = sd_tensor_3d(a, 2, 77, 80), v = sd_tensor_3d(a, 2, 77, 80);
    fill(q, 30); fill(k, 31); fill(v, 32);
    out[KS_ATTN] = sd_attention(a, q, k, v, 2, 0);
    q = sd_tensor_3d(a, 1, 77, 128);
    k = sd_tensor_3d(a, 1, 77, 128);
    v = sd_tensor_3d(a, 1, 77, 128);
    fill(q, 33); fill(k, 34); fill(v, 35);
    out[KS_ATTN_CAUSAL] = sd_attention(a, q, k, v, 2, 1);
    /* 3×3 convolution on 40×36 pixels: Winograd (the transforms are table entries) */
    const int prev = sd_winograd();
    sd_set_winograd(1);
    sd_tensor cx = sd_tensor_4d(a, 1, 16, 40, 36), cw = sd_tensor_4d(a, 24, 16, 3, 3), cb = sd_tensor_2d(a, 1, 24);
    fill(cx, 36); fill(cw, 37); fill(cb, 38);
    out[KS_WINOGRAD] = sd_conv2d(a, cx, &cw, &cb, 1, 1);
    /* F(4×4, 3×3) on 66×70 pixels (17×18 tiles, the last ones partial) */
    cx = sd_tensor_4d(a, 1, 16, 66, 70);
    fill(cx, 39);
    out[KS_WINOGRAD4] = sd_conv2d_ae(a, cx, &cw, &cb, 1, 1, NULL);
    sd_set_winograd(prev);
    /* every binary16 pattern, NaNs included */
    out[KS_F16] = sd_tensor_2d(a, 1, 65536);
    uint16_t *h = sd_arena_alloc(a, 65536 * sizeof(uint16_t));
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    sd_f16_to_f32(h, out[KS_F16].data, 65536);
}

/* Each kernel set this machine runs against the portable one ("generic"): the same bits where
 * the project promises them (sd_expf and the activations and softmax built on it, F16 → F32, the
 * Winograd transforms around the same sgemm; attention too where both use sgemm; the
 * normalisations where their statistics are exact), and within 1e-6 for the normalisations of
 * arbitrary data (double statistics summed in another order) and the AVX-512 attention
 * products (another summation order than sgemm's). Then the selection API. */
static void check_kernel_sets(sd_arena *a)
{
    const char *env = getenv("SDGEN_CPU");
    const char *start = sd_cpu_name();
    if (env && *env && sd_cpu_available(env))
        CHECK(!strcmp(start, env), "SDGEN_CPU=%s, but the ops run on the '%s' kernels", env, start);
    printf("kernel set in use: %s\n", start);
    sd_err err;
    CHECK(sd_cpu_select("generic", &err) == 0 && !strcmp(sd_cpu_name(), "generic"), "select generic");
    sd_tensor ref[KS_N];
    run_kernel_ops(a, ref);
    static const char *const sets[] = {"avx2", "avx512"};
    int compared = 0;
    for (int si = 0; si < 2; si++) {
        const char *name = sets[si];
        if (!sd_cpu_available(name)) {
            err.msg[0] = 0;
            CHECK(sd_cpu_select(name, &err) == -1 && strstr(err.msg, "not available on this machine"),
                  "select %s where it cannot run: '%s'", name, err.msg);
            CHECK(!strcmp(sd_cpu_name(), "generic"), "a refused selection changed the kernels to %s", sd_cpu_name());
            printf("note: kernel set %s does not run here; nothing to compare it with\n", name);
            continue;
        }
        CHECK(sd_cpu_select(name, &err) == 0 && !strcmp(sd_cpu_name(), name), "select %s", name);
        sd_tensor got[KS_N];
        run_kernel_ops(a, got);
        char what[128];
#define SAME(K, label)                                                                         \
    snprintf(what, sizeof what, "%s = generic: %s", name, label);                              \
    check_bits(what, got[K].data, ref[K].data, sd_numel(ref[K]))
#define NEAR(K, label)                                                                         \
    snprintf(what, sizeof what, "%s ~ generic: %s", name, label);                              \
    CHECK_CLOSE(what, got[K].data, ref[K].data, sd_numel(ref[K]), 1e-6)
        SAME(KS_SILU, "silu");
        SAME(KS_GELU, "gelu");
        SAME(KS_QGELU, "quick_gelu");
        SAME(KS_GEGLU, "geglu");
        SAME(KS_SOFTMAX, "softmax");
        SAME(KS_WINOGRAD, "conv 3x3 Winograd");
        SAME(KS_WINOGRAD4, "conv 3x3 Winograd F(4x4, 3x3)");
        SAME(KS_F16, "F16 -> F32, all 65536 patterns");
        NEAR(KS_GN, "groupnorm");
        NEAR(KS_GN_SILU, "groupnorm+silu");
        NEAR(KS_LN, "layernorm");
        SAME(KS_GN_EXACT, "groupnorm+silu, exact statistics");
        SAME(KS_LN_EXACT, "layernorm, exact statistics");
        if (!strcmp(name, "avx512")) {
            NEAR(KS_ATTN, "attention d=40");
            NEAR(KS_ATTN_CAUSAL, "attention causal d=64");
        } else {
            SAME(KS_ATTN, "attention d=40");
            SAME(KS_ATTN_CAUSAL, "attention causal d=64");
        }
#undef SAME
#undef NEAR
        compared++;
    }
    printf("%d vector kernel set(s) compared with the portable one\n", compared);
    err.msg[0] = 0;
    CHECK(sd_cpu_select("sse9", &err) == -1 && strstr(err.msg, "unknown CPU kernel set 'sse9'"),
          "unknown kernel set: '%s'", err.msg);
    CHECK(!sd_cpu_available("sse9") && !sd_cpu_available(NULL) && sd_cpu_available("generic"), "sd_cpu_available");
    CHECK(sd_cpu_select("auto", &err) == 0, "select auto");
    CHECK(sd_cpu_select(start, &err) == 0 && !strcmp(sd_cpu_name(), start), "back to %s", start);
}

#define EXPECT(what, got, want, tol)                                                           \
    do {                                                                                       \
        sd_tensor g_ = (got), w_ = (want);                                                     \
        char b1_[64], b2_[64];                                                                 \
        CHECK(same_shape(g_, w_), "%s: shape %s, want %s", what, sd_shape_str(g_, b1_, 64),    \
              sd_shape_str(w_, b2_, 64));                                                      \
        if (same_shape(g_, w_)) CHECK_CLOSE(what, g_.data, w_.data, sd_numel(w_), tol);        \
    } while (0)

int main(void)
{
    sd_set_threads(2);
    CHECK(sd_threads() == 2, "sd_threads() = %d", sd_threads());
    sd_arena ar;
    sd_arena_init(&ar, 1 << 20, 0);
    sd_arena *a = &ar;

    {   /* linear */
        sd_tensor x = load("linear_x"), w = load("linear_w"), b = load("linear_b");
        EXPECT("linear", sd_linear(a, x, &w, &b), load("linear_y"), 2e-6);
        EXPECT("linear no bias", sd_linear(a, x, &w, NULL), load("linear_nb_y"), 2e-6);
    }
    {   /* convolutions */
        sd_tensor x = load("conv3_x"), w = load("conv3_w"), b = load("conv3_b");
        EXPECT("conv 3x3 s1 p1", sd_conv2d(a, x, &w, &b, 1, 1), load("conv3_y"), 2e-6);
        x = load("conv1_x"), w = load("conv1_w"), b = load("conv1_b");
        EXPECT("conv 1x1", sd_conv2d(a, x, &w, &b, 1, 0), load("conv1_y"), 2e-6);
        x = load("conv_s2a_x"), w = load("conv_s2a_w"), b = load("conv_s2a_b");
        EXPECT("conv 3x3 s2 pad(0,1,0,1)", sd_conv2d_pad(a, x, &w, &b, 2, 0, 1, 0, 1),
               load("conv_s2a_y"), 2e-6);
        x = load("conv_s2_x"), w = load("conv_s2_w");
        EXPECT("conv 3x3 s2 p1 odd, no bias", sd_conv2d(a, x, &w, NULL, 2, 1), load("conv_s2_y"), 2e-6);
    }
    {   /* paths the fixtures do not reach: 70×70 batch 2 (one sgemm per image), batch 3 small
         * stride 2 with asymmetric padding (one sgemm for the batch), 1×1 batch 3 */
        sd_tensor x = sd_tensor_4d(a, 2, 3, 70, 70), w = sd_tensor_4d(a, 4, 3, 3, 3), b = sd_tensor_2d(a, 1, 4);
        fill(x, 1); fill(w, 2); fill(b, 3);
        sd_tensor want = sd_tensor_4d(a, 2, 4, 70, 70);
        naive_conv(&x, &w, b.data, 1, 1, 1, &want);
        EXPECT("conv 3x3 70x70 batch 2 vs direct", sd_conv2d(a, x, &w, &b, 1, 1), want, 5e-6);
        x = sd_tensor_4d(a, 3, 5, 11, 10);
        w = sd_tensor_4d(a, 6, 5, 3, 3);
        fill(x, 4); fill(w, 5);
        want = sd_tensor_4d(a, 3, 6, 5, 5);
        naive_conv(&x, &w, NULL, 2, 0, 0, &want);
        EXPECT("conv 3x3 s2 pad(0,1,0,1) batch 3 vs direct", sd_conv2d_pad(a, x, &w, NULL, 2, 0, 1, 0, 1), want, 5e-6);
        w = sd_tensor_4d(a, 7, 5, 1, 1);
        fill(w, 6);
        want = sd_tensor_4d(a, 3, 7, 11, 10);
        naive_conv(&x, &w, b.data, 1, 0, 0, &want);
        sd_tensor b7 = sd_tensor_2d(a, 1, 7);
        memcpy(b7.data, b.data, 4 * sizeof(float));
        b7.data[4] = 0.5f; b7.data[5] = -0.25f; b7.data[6] = 0.125f;
        naive_conv(&x, &w, b7.data, 1, 0, 0, &want);
        EXPECT("conv 1x1 batch 3 vs direct", sd_conv2d(a, x, &w, &b7, 1, 0), want, 5e-6);
    }
    {   /* 3×3 stride 1: Winograd F(2x2,3x3) and the im2col products, odd sizes (partial tiles),
         * batch 2, bias; both against the direct sum in double */
        const int prev = sd_winograd();
        sd_tensor x = sd_tensor_4d(a, 2, 24, 33, 35), w = sd_tensor_4d(a, 20, 24, 3, 3), b = sd_tensor_2d(a, 1, 20);
        fill(x, 7); fill(w, 8); fill(b, 9);
        for (int64_t i = 0; i < sd_numel(w); i++) w.data[i] *= 0.2f;
        sd_tensor want = sd_tensor_4d(a, 2, 20, 33, 35);
        naive_conv(&x, &w, b.data, 1, 1, 1, &want);
        sd_set_winograd(1);
        EXPECT("conv 3x3 33x35 Winograd vs direct", sd_conv2d(a, x, &w, &b, 1, 1), want, 3e-6);
        sd_set_winograd(0);
        EXPECT("conv 3x3 33x35 im2col vs direct", sd_conv2d(a, x, &w, &b, 1, 1), want, 3e-6);
        /* F(4×4, 3×3), allowed to the autoencoders: on 66×70 pixels (2 × 306 tiles, enough for 2 threads)
         * against the direct sum at its own tolerance, and different bits from F(2×2, 3×3) (so the
         * path was taken); on 33×35 (162 tiles) it is not worth it and sd_conv2d_ae is F(2×2, 3×3). */
        sd_set_winograd(1);
        check_bits("conv 3x3 33x35: too few tiles for F(4x4, 3x3), sd_conv2d_ae = sd_conv2d",
                   sd_conv2d_ae(a, x, &w, &b, 1, 1, NULL).data, sd_conv2d(a, x, &w, &b, 1, 1).data, sd_numel(want));
        sd_tensor x4 = sd_tensor_4d(a, 2, 24, 66, 70), want4 = sd_tensor_4d(a, 2, 20, 66, 70);
        fill(x4, 10);
        naive_conv(&x4, &w, b.data, 1, 1, 1, &want4);
        EXPECT("conv 3x3 66x70 Winograd F(2x2) vs direct", sd_conv2d(a, x4, &w, &b, 1, 1), want4, 3e-6);
        sd_tensor y4 = sd_conv2d_ae(a, x4, &w, &b, 1, 1, NULL);
        EXPECT("conv 3x3 66x70 Winograd F(4x4) vs direct", y4, want4, 5e-5);
        sd_tensor y2 = sd_conv2d(a, x4, &w, &b, 1, 1);
        int64_t differ = 0;
        for (int64_t i = 0; i < sd_numel(y4); i++) differ += memcmp(&y4.data[i], &y2.data[i], sizeof(float)) != 0;
        CHECK(differ > sd_numel(y4) / 4, "sd_conv2d_ae on 66x70: only %lld of %lld values differ from F(2x2, 3x3): "
              "F(4x4, 3x3) not taken?", (long long)differ, (long long)sd_numel(y4));
        sd_set_winograd(0);
        check_bits("Winograd off: sd_conv2d_ae = im2col", sd_conv2d_ae(a, x4, &w, &b, 1, 1, NULL).data,
                   sd_conv2d(a, x4, &w, &b, 1, 1).data, sd_numel(want4));
        /* The epilogue (relu, or relu(y + add)) on every path — Winograd, im2col bands, the few-pixels
         * products (6×5: one panel; batch 1 straight into y) — has the bits of the conv followed by
         * sd_add_ and a separate ReLU pass. */
        const struct { int64_t n, h, w; int wg, ae; const char *what; } paths[] = {
            {2, 33, 35, 1, 0, "Winograd"}, {2, 66, 70, 1, 1, "Winograd F(4x4, 3x3)"}, {2, 33, 35, 0, 0, "im2col bands"},
            {2, 6, 5, 0, 0, "few pixels"}, {1, 6, 5, 0, 0, "few pixels, one image"}};
        for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
            sd_tensor xp = sd_tensor_4d(a, paths[p].n, 24, paths[p].h, paths[p].w);
            sd_tensor add = sd_tensor_4d(a, paths[p].n, 20, paths[p].h, paths[p].w);
            fill(xp, 11); fill(add, 12);
            sd_set_winograd(paths[p].wg);
            sd_tensor ref = paths[p].ae ? sd_conv2d_ae(a, xp, &w, &b, 1, 1, NULL) : sd_conv2d(a, xp, &w, &b, 1, 1);
            sd_tensor ref2 = paths[p].ae ? sd_conv2d_ae(a, xp, &w, &b, 1, 1, NULL) : sd_conv2d(a, xp, &w, &b, 1, 1);
            sd_add_(ref2, add);
            for (int64_t i = 0; i < sd_numel(ref); i++) {
                if (ref.data[i] < 0.0f) ref.data[i] = 0.0f;
                if (ref2.data[i] < 0.0f) ref2.data[i] = 0.0f;
            }
            const sd_conv_epilogue relu = {NULL, 1}, add_relu = {add.data, 1};
            char what[96];
            snprintf(what, sizeof what, "conv 3x3 + relu epilogue, %s", paths[p].what);
            sd_tensor (*conv_ep)(sd_arena *, sd_tensor, const sd_tensor *, const sd_tensor *, int, int,
                                 const sd_conv_epilogue *) = paths[p].ae ? sd_conv2d_ae : sd_conv2d_ep;
            check_bits(what, conv_ep(a, xp, &w, &b, 1, 1, &relu).data, ref.data, sd_numel(ref));
            snprintf(what, sizeof what, "conv 3x3 + add + relu epilogue, %s", paths[p].what);
            check_bits(what, conv_ep(a, xp, &w, &b, 1, 1, &add_relu).data, ref2.data, sd_numel(ref2));
        }
        sd_set_winograd(prev);
    }
    {   /* F16 weights read in place (sd_model_weight_f16: .f16 set, .data NULL) give the bits of the same
         * weights converted first, on every path of the products: linear with the threads splitting the
         * weight's rows (77 rows) or the inputs' (shared buffers; K = 1000 runs in 3 blocks), a product small
         * enough for one thread, and the convolutions: few pixels (K = 576: 2 blocks), many pixels, Winograd
         * (converted whole inside the op) */
        const int prev = sd_winograd();
        const struct { int64_t m, out, in; } lin[] = {{77, 300, 1000}, {600, 48, 1000}, {5, 7, 33}, {64, 64, 900}};
        for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
            sd_tensor x = sd_tensor_2d(a, lin[i].m, lin[i].in), w = sd_tensor_2d(a, lin[i].out, lin[i].in);
            sd_tensor b = sd_tensor_2d(a, 1, lin[i].out);
            fill(x, 20); fill(w, 21); fill(b, 22);
            uint16_t *h = malloc((size_t)sd_numel(w) * sizeof *h);
            for (int64_t j = 0; j < sd_numel(w); j++) h[j] = sd_f32_to_f16_1(w.data[j]);
            sd_f16_to_f32(h, w.data, (size_t)sd_numel(w)); /* the F32 weight = the halves, exactly */
            sd_tensor wh = w;
            wh.data = NULL;
            wh.f16 = h;
            char what[128];
            snprintf(what, sizeof what, "linear [%lld, %lld] x [%lld, %lld]^T: F16 weight read in place = converted",
                     (long long)lin[i].m, (long long)lin[i].in, (long long)lin[i].out, (long long)lin[i].in);
            b.ne[0] = lin[i].out, b.ne[1] = 1, b.ndim = 1;
            check_bits(what, sd_linear(a, x, &wh, &b).data, sd_linear(a, x, &w, &b).data, lin[i].m * lin[i].out);
            free(h);
        }
        const struct { int64_t n, cin, h, w, cout; int wg; const char *what; } cv[] = {
            {2, 64, 6, 5, 80, 0, "few pixels"}, {1, 64, 6, 5, 80, 0, "few pixels, one image"},
            {2, 24, 33, 35, 20, 0, "im2col bands"}, {2, 24, 33, 35, 20, 1, "Winograd"}};
        for (size_t i = 0; i < sizeof cv / sizeof cv[0]; i++) {
            sd_tensor x = sd_tensor_4d(a, cv[i].n, cv[i].cin, cv[i].h, cv[i].w);
            sd_tensor w = sd_tensor_4d(a, cv[i].cout, cv[i].cin, 3, 3), b = sd_tensor_2d(a, 1, cv[i].cout);
            fill(x, 23); fill(w, 24); fill(b, 25);
            uint16_t *h = malloc((size_t)sd_numel(w) * sizeof *h);
            for (int64_t j = 0; j < sd_numel(w); j++) h[j] = sd_f32_to_f16_1(0.1f * w.data[j]);
            sd_f16_to_f32(h, w.data, (size_t)sd_numel(w));
            sd_tensor wh = w;
            wh.data = NULL;
            wh.f16 = h;
            sd_set_winograd(cv[i].wg);
            char what[128];
            snprintf(what, sizeof what, "conv 3x3, %s: F16 weight read in place = converted", cv[i].what);
            sd_tensor yh = sd_conv2d(a, x, &wh, &b, 1, 1), yf = sd_conv2d(a, x, &w, &b, 1, 1);
            check_bits(what, yh.data, yf.data, sd_numel(yf));
            free(h);
        }
        sd_set_winograd(prev);
    }
    {   /* the forms that write into the caller's memory give the bits of the allocating ones */
        const int prev = sd_winograd();
        sd_set_winograd(1);
        sd_tensor x = sd_tensor_4d(a, 1, 24, 66, 70), w = sd_tensor_4d(a, 20, 24, 3, 3), b = sd_tensor_2d(a, 1, 20);
        fill(x, 26); fill(w, 27); fill(b, 28);
        b.ne[0] = 20, b.ne[1] = 1, b.ndim = 1;
        sd_tensor y = sd_tensor_4d(a, 1, 20, 66, 70);
        sd_tensor r = sd_conv2d_ae_into(a, y, x, &w, &b, 1, 1, NULL);
        CHECK(r.data == y.data, "sd_conv2d_ae_into returns its output tensor");
        check_bits("sd_conv2d_ae_into = sd_conv2d_ae (F(4x4, 3x3) path)", y.data,
                   sd_conv2d_ae(a, x, &w, &b, 1, 1, NULL).data, sd_numel(y));
        sd_tensor g = sd_tensor_2d(a, 1, 24), gb = sd_tensor_2d(a, 1, 24);
        fill(g, 29); fill(gb, 30);
        g.ne[0] = gb.ne[0] = 24, g.ne[1] = gb.ne[1] = 1, g.ndim = gb.ndim = 1;
        sd_tensor want = sd_groupnorm_silu(a, x, 4, &g, &gb, 1e-6f);
        sd_groupnorm_silu_(x, 4, &g, &gb, 1e-6f);
        check_bits("sd_groupnorm_silu_ (in place) = sd_groupnorm_silu", x.data, want.data, sd_numel(want));
        sd_set_winograd(prev);
    }
    {   /* per-op profile: ops add calls and FLOPs to the installed profile, nothing once removed */
        sd_op_profile prof;
        memset(&prof, 0, sizeof prof);
        sd_ops_set_profile(&prof);
        sd_tensor x = sd_tensor_4d(a, 1, 8, 16, 16), w = sd_tensor_4d(a, 4, 8, 3, 3);
        fill(x, 10); fill(w, 11);
        (void)sd_conv2d(a, x, &w, NULL, 1, 1);
        sd_tensor l = sd_tensor_2d(a, 5, 8), lw = sd_tensor_2d(a, 3, 8);
        fill(l, 12); fill(lw, 13);
        (void)sd_linear(a, l, &lw, NULL);
        sd_ops_set_profile(NULL);
        (void)sd_linear(a, l, &lw, NULL);
        CHECK(prof.calls[SD_OP_CONV3X3] == 1 && prof.flops[SD_OP_CONV3X3] == 2.0 * 4 * 8 * 9 * 256,
              "profile conv3x3: %lld calls, %g flops", (long long)prof.calls[SD_OP_CONV3X3], prof.flops[SD_OP_CONV3X3]);
        CHECK(prof.calls[SD_OP_LINEAR] == 1 && prof.flops[SD_OP_LINEAR] == 2.0 * 5 * 3 * 8,
              "profile linear: %lld calls, %g flops", (long long)prof.calls[SD_OP_LINEAR], prof.flops[SD_OP_LINEAR]);
        CHECK(prof.wall[SD_OP_CONV3X3] >= 0 && prof.cpu[SD_OP_LINEAR] >= 0, "profile times");
        CHECK(!strcmp(sd_op_kind_name(SD_OP_ATTENTION), "attention"), "op kind name");
    }
    {   /* norms */
        sd_tensor x = load("gn_x"), g = load("gn_g"), b = load("gn_b");
        EXPECT("groupnorm eps1e-5", sd_groupnorm(a, x, 4, &g, &b, 1e-5f), load("gn_y"), 2e-6);
        EXPECT("groupnorm+silu", sd_groupnorm_silu(a, x, 4, &g, &b, 1e-5f), load("gn_silu_y"), 2e-6);
        x = load("gn6_x"), g = load("gn6_g"), b = load("gn6_b");
        EXPECT("groupnorm eps1e-6 mean 3 std 0.01", sd_groupnorm(a, x, 2, &g, &b, 1e-6f), load("gn6_y"), 5e-5);
        x = load("ln_x"), g = load("ln_g"), b = load("ln_b");
        EXPECT("layernorm", sd_layernorm(a, x, &g, &b, 1e-5f), load("ln_y"), 2e-6);
    }
    {   /* activations */
        sd_tensor x = load("act_x");
        sd_tensor y = sd_tensor_copy(a, x);
        sd_silu_(y);
        EXPECT("silu", y, load("silu_y"), 2e-6);
        y = sd_tensor_copy(a, x);
        sd_gelu_(y);
        EXPECT("gelu", y, load("gelu_y"), 2e-6);
        y = sd_tensor_copy(a, x);
        sd_quick_gelu_(y);
        EXPECT("quick_gelu", y, load("quick_gelu_y"), 2e-6);
        EXPECT("geglu", sd_geglu(a, load("geglu_x")), load("geglu_y"), 2e-6);
        y = sd_tensor_copy(a, load("softmax_x"));
        sd_softmax_(y);
        EXPECT("softmax", y, load("softmax_y"), 1e-6);
    }
    {   /* layout */
        EXPECT("upsample2x", sd_upsample2x(a, load("up_x")), load("up_y"), 0);
        sd_tensor x = load("conv3_x"); /* [2,3,7,6] */
        sd_tensor l = sd_nchw_to_nlc(a, x);
        CHECK(l.ndim == 3 && l.ne[0] == 2 && l.ne[1] == 42 && l.ne[2] == 3, "nchw_to_nlc shape");
        CHECK(l.data[(1 * 42 + 5 * 6 + 4) * 3 + 2] == x.data[((1 * 3 + 2) * 7 + 5) * 6 + 4], "nchw_to_nlc value");
        EXPECT("nlc_to_nchw round trip", sd_nlc_to_nchw(a, l, 7, 6), x, 0);
        sd_tensor c = sd_concat1(a, load("conv_s2_y"), load("conv_s2_y"));
        CHECK(c.ne[1] == 6 && c.ne[2] == 5 && c.ne[3] == 4, "concat1 shape");
        sd_tensor cs = load("conv_s2_y"); /* [2,3,5,4] */
        CHECK(c.data[(1 * 6 + 4) * 20 + 7] == cs.data[(1 * 3 + 1) * 20 + 7], "concat1 value");
        sd_tensor z = sd_tensor_copy(a, cs);
        sd_add_(z, cs);
        sd_scale_(z, 0.25f);
        CHECK(z.data[13] == cs.data[13] * 0.5f, "add_/scale_");
        sd_tensor v = sd_tensor_2d(a, 2, 3);
        for (int i = 0; i < 6; i++) v.data[i] = (float)i;
        z = sd_tensor_copy(a, cs);
        sd_add_channel_bias_(z, v);
        CHECK(z.data[(1 * 3 + 2) * 20 + 3] == cs.data[(1 * 3 + 2) * 20 + 3] + 5.0f, "add_channel_bias_");
    }
    {   /* attention */
        EXPECT("attention 2 heads Lq 300 (> block) Lk 77",
               sd_attention(a, load("attn_q"), load("attn_k"), load("attn_v"), 2, 0), load("attn_y"), 2e-6);
        EXPECT("attention causal 4 heads",
               sd_attention(a, load("attnc_q"), load("attnc_k"), load("attnc_v"), 4, 1), load("attnc_y"), 2e-6);
        EXPECT("attention causal Lq 290 (> block)",
               sd_attention(a, load("attnc2_q"), load("attnc2_k"), load("attnc2_v"), 1, 1), load("attnc2_y"), 2e-6);
    }
    {   /* timestep embedding */
        sd_tensor t = load("temb_t");
        EXPECT("timestep embedding 320", sd_timestep_embedding(a, t.data, (int)t.ne[0], 320), load("temb320_y"), 3e-7);
        EXPECT("timestep embedding 32", sd_timestep_embedding(a, t.data, (int)t.ne[0], 32), load("temb32_y"), 3e-7);
    }
    check_kernel_sets(a);
    sd_arena_free(a);
    for (int i = 0; i < nfix; i++) sd_npy_free(&fix[i]);
    TEST_MAIN_END();
}
