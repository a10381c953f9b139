/* test_unet_full.c (label "full") — the U-Net on the full-size random-weight checkpoints:
 *   SD 1.5 (gen:sd15): golden case p5 unet0_sample/timestep/context -> unet0_out within 1.5e-5;
 *   SD 2.1 768-v (gen:sd21): one call at a 64×64-image latent (8×8) with a deterministic
 *   pseudo-random context [2, 77, 1024]: output shape and finiteness.
 * The checkpoints are $SDGEN_SD15 / $SDGEN_SD21 when set, else they are generated into
 * $SDGEN_TEST_TMP/full by scripts/make-full-ckpts.sh (2.1 + 2.6 GB, about a minute). */
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sdgen/model.h"
#include "sdgen/npy.h"
#include "sdgen/ops.h"
#include "sdgen/unet.h"
#include "testutil.h"

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Path of a full-size checkpoint, generating it when needed; NULL on failure. */
static const char *checkpoint(const char *env, const char *name, char *buf, size_t n)
{
    const char *p = getenv(env);
    if (p && *p) {
        snprintf(buf, n, "%s", p);
        if (file_exists(buf)) return buf;
        fprintf(stderr, "%s=%s does not exist\n", env, p);
        return NULL;
    }
    const char *src = getenv("SDGEN_SOURCE_DIR");
    char dir[4200], cmd[9000];
    snprintf(dir, sizeof dir, "%s/full", sd_test_tmp());
    snprintf(buf, n, "%s/%s.safetensors", dir, name);
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/make-full-ckpts.sh' '%s' %s", src && *src ? src : ".", dir, name);
    if (system(cmd) != 0 || !file_exists(buf)) return NULL;
    return buf;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static sd_tensor view(const sd_npy *a)
{
    sd_tensor t = {0};
    t.data = a->f32;
    t.ndim = a->ndim;
    for (int i = 0; i < SD_MAX_DIMS; i++) t.ne[i] = i < a->ndim ? a->shape[i] : 1;
    return t;
}

static void sd15_p5(void)
{
    char path[4400];
    const char *ck = checkpoint("SDGEN_SD15", "sd15", path, sizeof path);
    CHECK(ck != NULL, "no SD 1.5 checkpoint");
    if (!ck) return;
    sd_err err = {0};
    sd_model m;
    double t0 = sd_now();
    int rc = sd_model_open(&m, ck, &err);
    CHECK(rc == 0, "open %s: %s", ck, err.msg);
    if (rc) return;
    CHECK(m.unet.model_channels == 320 && m.unet.context_dim == 768, "sd15 config: %d channels, context %d",
          m.unet.model_channels, m.unet.context_dim);
    sd_npy in[4];
    const char *files[4] = {"unet0_sample", "unet0_timestep", "unet0_context", "unet0_out"};
    for (int i = 0; i < 4; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "golden/cases/p5-sd15-ddim/%s.npy", files[i]);
        if (sd_npy_read(&in[i], sd_test_path(rel), &err)) {
            CHECK(0, "%s", err.msg);
            for (int j = 0; j < i; j++) sd_npy_free(&in[j]);
            sd_model_close(&m);
            return;
        }
    }
    sd_tensor x = view(&in[0]), ctx = view(&in[2]), want = view(&in[3]);
    float t[2] = {in[1].f32[0], in[1].f32[0]};
    sd_arena a;
    sd_arena_init(&a, 0, 0);
    sd_tensor out;
    double t1 = sd_now();
    rc = sd_unet_forward(&m, &a, x, t, ctx, (sd_tensor){0}, &out, &err);
    double t2 = sd_now();
    CHECK(rc == 0, "sd15 forward: %s", err.msg);
    if (rc == 0) {
        char what[256];
        snprintf(what, sizeof what, "p5-sd15-ddim unet0_out (t=%g, latent 8x8, batch 2)", t[0]);
        CHECK(sd_numel(out) == sd_numel(want), "sd15 output size");
        if (sd_numel(out) == sd_numel(want)) CHECK_CLOSE(what, out.data, want.data, sd_numel(want), 1.5e-5);
        sd_arena_reset(&a);
        double t3 = sd_now(), c3 = cpu_now();
        rc = sd_unet_forward(&m, &a, x, t, ctx, (sd_tensor){0}, &out, &err);
        double t4 = sd_now(), c4 = cpu_now();
        CHECK(rc == 0, "sd15 second call: %s", err.msg);
        printf("     sd15: open %.2f s, first call (with f16->f32 weight conversion) %.2f s, second call %.2f s "
               "(%.2f s CPU), arena peak %.1f MB, %d threads\n", t1 - t0, t2 - t1, t4 - t3, c4 - c3,
               a.peak / 1048576.0, sd_threads());
    }
    sd_arena_free(&a);
    for (int i = 0; i < 4; i++) sd_npy_free(&in[i]);
    sd_model_close(&m);
}

static void sd21_shape(void)
{
    char path[4400];
    const char *ck = checkpoint("SDGEN_SD21", "sd21", path, sizeof path);
    CHECK(ck != NULL, "no SD 2.1 checkpoint");
    if (!ck) return;
    sd_err err = {0};
    sd_model m;
    int rc = sd_model_open(&m, ck, &err);
    CHECK(rc == 0, "open %s: %s", ck, err.msg);
    if (rc) return;
    CHECK(m.unet.model_channels == 320 && m.unet.context_dim == 1024 && m.unet.linear_proj,
          "sd21 config: %d channels, context %d, linear_proj %d", m.unet.model_channels, m.unet.context_dim,
          m.unet.linear_proj);
    sd_arena a;
    sd_arena_init(&a, 0, 0);
    sd_tensor x = sd_tensor_4d(&a, 2, 4, 8, 8);
    sd_tensor ctx = sd_tensor_3d(&a, 2, 77, 1024);
    uint64_t s = 12345;
    for (int64_t i = 0; i < sd_numel(ctx); i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        ctx.data[i] = (float)((double)(s >> 11) * 0x1p-53 * 2.0 - 1.0);
    }
    for (int64_t i = 0; i < sd_numel(x); i++) x.data[i] = sinf(0.3f * (float)i);
    float t[2] = {999.0f, 999.0f};
    sd_tensor out;
    double t0 = sd_now();
    rc = sd_unet_forward(&m, &a, x, t, ctx, (sd_tensor){0}, &out, &err);
    double t1 = sd_now();
    CHECK(rc == 0, "sd21 forward: %s", err.msg);
    if (rc == 0) {
        CHECK(out.ndim == 4 && out.ne[0] == 2 && out.ne[1] == 4 && out.ne[2] == 8 && out.ne[3] == 8,
              "sd21 output shape");
        int finite = 1;
        double ss = 0;
        for (int64_t i = 0; i < sd_numel(out); i++) {
            finite &= isfinite(out.data[i]) != 0;
            ss += (double)out.data[i] * out.data[i];
        }
        CHECK(finite, "sd21 output not finite");
        CHECK(ss > 0, "sd21 output all zero");
        printf("ok   sd21 8x8 latent batch 2: finite, rms %.4g, first call (with weight conversion) %.2f s\n",
               sqrt(ss / (double)sd_numel(out)), t1 - t0);
    }
    sd_arena_free(&a);
    sd_model_close(&m);
}

int main(int argc, char **argv)
{
    (void)argc;
    sd_test_require_shared();
#if defined(__x86_64__)
    /* As src/main.c: OpenBLAS 0.3.21 falls back to its SSE3 kernels on CPUs it does not know
     * (2x slower here); it reads OPENBLAS_CORETYPE only at load, so set it and re-execute once. */
    if (!getenv("OPENBLAS_CORETYPE")) {
        __builtin_cpu_init();
        const char *core = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
                               ? "SkylakeX"
                           : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "Haswell"
                                                                                             : NULL;
        if (core) {
            setenv("OPENBLAS_CORETYPE", core, 1);
            execv("/proc/self/exe", argv);
        }
    }
#else
    (void)argv;
#endif
    sd_set_threads(2);
    sd15_p5();
    sd21_shape();
    TEST_MAIN_END();
}
