/* test_unet.c — the U-Net against the golden cases: (unet0_sample, unet0_timestep,
 * unet0_context) -> unet0_out within 1.5e-5 max abs (docs/SEMANTICS.md §14.3), for every case in
 * golden/cases except the full-size p5 (tests/test_unet_full.c). Also: a latent whose size is
 * not a multiple of 2 per level, a second call on the same arena, and bad inputs. */
#include <cjson/cJSON.h>
#include <dirent.h>

#include "sdgen/model.h"
#include "sdgen/npy.h"
#include "sdgen/ops.h"
#include "sdgen/unet.h"
#include "testutil.h"

static sd_tensor view(const sd_npy *a)
{
    sd_tensor t = {0};
    t.data = a->f32;
    t.ndim = a->ndim;
    for (int i = 0; i < SD_MAX_DIMS; i++) t.ne[i] = i < a->ndim ? a->shape[i] : 1;
    return t;
}

static int all_finite(sd_tensor t)
{
    for (int64_t i = 0; i < sd_numel(t); i++)
        if (!isfinite(t.data[i])) return 0;
    return 1;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void run_case(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "golden/cases/%s/case.json", name);
    char *js = sd_test_read_text(sd_test_path(path));
    CHECK(js != NULL, "%s: cannot read case.json", name);
    if (!js) return;
    cJSON *cj = cJSON_Parse(js);
    free(js);
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(cj, "model");
    if (!cJSON_IsString(jm) || !strncmp(jm->valuestring, "gen:", 4)) {
        printf("skip %s (full-size model: test_unet_full)\n", name);
        cJSON_Delete(cj);
        return;
    }
    snprintf(path, sizeof path, "golden/%s", jm->valuestring);
    char model_path[4096];
    snprintf(model_path, sizeof model_path, "%s", sd_test_path(path));
    cJSON_Delete(cj);

    sd_err err = {0};
    sd_model m;
    int rc = sd_model_open(&m, model_path, &err);
    CHECK(rc == 0, "%s: open %s: %s", name, model_path, err.msg);
    if (rc) return;

    sd_npy in[4];
    const char *files[4] = {"unet0_sample", "unet0_timestep", "unet0_context", "unet0_out"};
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "golden/cases/%s/%s.npy", name, files[i]);
        if (sd_npy_read(&in[i], sd_test_path(path), &err)) {
            CHECK(0, "%s: %s", name, err.msg);
            for (int j = 0; j < i; j++) sd_npy_free(&in[j]);
            ok = 0;
            break;
        }
    }
    if (!ok) { sd_model_close(&m); return; }
    sd_tensor x = view(&in[0]), ctx = view(&in[2]), want = view(&in[3]);
    float t[64];
    for (int64_t i = 0; i < x.ne[0] && i < 64; i++) t[i] = in[1].f32[0];

    sd_arena a;
    sd_arena_init(&a, 0, 0);
    sd_tensor out = {0};
    double t0 = sd_now();
    rc = sd_unet_forward(&m, &a, x, t, ctx, (sd_tensor){0}, &out, &err);
    double t1 = sd_now();
    CHECK(rc == 0, "%s: forward: %s", name, err.msg);
    if (rc == 0) {
        char what[256];
        snprintf(what, sizeof what, "%s unet0_out (t=%g, latent %lldx%lld, first call %.3f s)", name, t[0],
                 (long long)x.ne[2], (long long)x.ne[3], t1 - t0);
        CHECK(out.ndim == 4 && sd_numel(out) == sd_numel(want), "%s: output size", name);
        if (sd_numel(out) == sd_numel(want)) CHECK_CLOSE(what, out.data, want.data, sd_numel(want), 1.5e-5);

        /* a second call on the reset arena (one merged block) gives the same numbers */
        sd_tensor keep = {0};
        float *copy = malloc((size_t)sd_numel(out) * sizeof(float));
        memcpy(copy, out.data, (size_t)sd_numel(out) * sizeof(float));
        sd_arena_reset(&a);
        t0 = sd_now();
        rc = sd_unet_forward(&m, &a, x, t, ctx, (sd_tensor){0}, &keep, &err);
        t1 = sd_now();
        CHECK(rc == 0 && !memcmp(copy, keep.data, (size_t)sd_numel(out) * sizeof(float)),
              "%s: second call differs", name);
        printf("     %s: second call %.3f s, arena peak %.1f MB\n", name, t1 - t0, a.peak / 1048576.0);
        free(copy);
    }
    sd_arena_free(&a);
    for (int i = 0; i < 4; i++) sd_npy_free(&in[i]);
    sd_model_close(&m);
}

/* Latent sizes that are not multiples of 2 per level (72×104 images -> 9×13 latent; 8×12 and
 * 1×1 for completeness): the output has the input's size and is finite; batch items are
 * independent (item 1 of a batch of 2 equals the same item run alone). */
static void odd_sizes(void)
{
    sd_err err = {0};
    sd_model m;
    if (sd_model_open(&m, sd_test_path("golden/models/tiny-sd1.safetensors"), &err)) {
        CHECK(0, "open tiny-sd1: %s", err.msg);
        return;
    }
    const int sizes[3][2] = {{9, 13}, {8, 12}, {1, 1}};
    sd_arena a;
    sd_arena_init(&a, 0, 0);
    for (int s = 0; s < 3; s++) {
        sd_arena_reset(&a);
        const int h = sizes[s][0], w = sizes[s][1];
        sd_tensor x = sd_tensor_4d(&a, 2, 4, h, w);
        sd_tensor ctx = sd_tensor_3d(&a, 2, 77, m.unet.context_dim);
        for (int64_t i = 0; i < sd_numel(x); i++) x.data[i] = sinf(0.37f * (float)i);
        for (int64_t i = 0; i < sd_numel(ctx); i++) ctx.data[i] = cosf(0.11f * (float)i);
        float t[2] = {500.5f, 10.0f};
        sd_tensor out;
        int rc = sd_unet_forward(&m, &a, x, t, ctx, (sd_tensor){0}, &out, &err);
        CHECK(rc == 0, "latent %dx%d: %s", h, w, err.msg);
        if (rc) continue;
        CHECK(out.ndim == 4 && out.ne[0] == 2 && out.ne[1] == 4 && out.ne[2] == h && out.ne[3] == w,
              "latent %dx%d: output shape", h, w);
        CHECK(all_finite(out), "latent %dx%d: non-finite output", h, w);
        sd_tensor x1 = sd_tensor_slice0(x, 1, 1), c1 = sd_tensor_slice0(ctx, 1, 1), o1;
        rc = sd_unet_forward(&m, &a, x1, t + 1, c1, (sd_tensor){0}, &o1, &err);
        CHECK(rc == 0, "latent %dx%d batch 1: %s", h, w, err.msg);
        if (rc == 0) {
            char what[64];
            snprintf(what, sizeof what, "latent %dx%d: batch item alone vs in batch", h, w);
            CHECK_CLOSE(what, o1.data, out.data + sd_numel(o1), sd_numel(o1), 1e-5);
        }
    }
    /* bad inputs are errors, not crashes */
    sd_arena_reset(&a);
    sd_tensor x = sd_tensor_4d(&a, 1, 3, 8, 8), out;
    sd_tensor ctx = sd_tensor_3d(&a, 1, 77, m.unet.context_dim);
    float t[1] = {1};
    CHECK(sd_unet_forward(&m, &a, x, t, ctx, (sd_tensor){0}, &out, &err) != 0, "3-channel latent accepted");
    x = sd_tensor_4d(&a, 1, 4, 8, 8);
    sd_tensor ctx2 = sd_tensor_3d(&a, 1, 77, m.unet.context_dim + 1);
    CHECK(sd_unet_forward(&m, &a, x, t, ctx2, (sd_tensor){0}, &out, &err) != 0, "wrong context width accepted");
    sd_tensor ctx3 = sd_tensor_3d(&a, 2, 77, m.unet.context_dim);
    CHECK(sd_unet_forward(&m, &a, x, t, ctx3, (sd_tensor){0}, &out, &err) != 0, "batch mismatch accepted");
    t[0] = NAN;
    CHECK(sd_unet_forward(&m, &a, x, t, ctx, (sd_tensor){0}, &out, &err) != 0, "NaN timestep accepted");
    /* an arena that cannot grow (limit 1 byte) gives an OOM error through the guard */
    sd_arena small;
    sd_arena_init(&small, 0, 1);
    t[0] = 1;
    sd_tensor xs = {0};
    float buf[4 * 8 * 8] = {0};
    xs.data = buf; xs.ndim = 4; xs.ne[0] = 1; xs.ne[1] = 4; xs.ne[2] = 8; xs.ne[3] = 8;
    int rc = sd_unet_forward(&m, &small, xs, t, ctx, (sd_tensor){0}, &out, &err);
    CHECK(rc != 0 && err.code == SD_ERR_NOMEM, "tiny arena: rc %d code %d (%s)", rc, err.code, err.msg);
    sd_arena_free(&small);
    sd_arena_free(&a);
    sd_model_close(&m);
}

/* 9×13 latent against PyTorch (tests/fixtures/ops/unet_odd_*, scripts/make-op-fixtures.py): the
 * downsample gives 5×7 and the upsampler must interpolate to the skip's 9×13 as diffusers does. */
static void odd_size_reference(void)
{
    const char *src = getenv("SDGEN_SOURCE_DIR");
    const char *names[4] = {"unet_odd_x", "unet_odd_t", "unet_odd_ctx", "unet_odd_y"};
    sd_npy f[4];
    sd_err err = {0};
    for (int i = 0; i < 4; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/fixtures/ops/%s.npy", src && *src ? src : ".", names[i]);
        if (sd_npy_read(&f[i], path, &err)) {
            CHECK(0, "%s", err.msg);
            for (int j = 0; j < i; j++) sd_npy_free(&f[j]);
            return;
        }
    }
    sd_model m;
    if (sd_model_open(&m, sd_test_path("golden/models/tiny-sd1.safetensors"), &err)) {
        CHECK(0, "open tiny-sd1: %s", err.msg);
    } else {
        sd_arena a;
        sd_arena_init(&a, 0, 0);
        sd_tensor out;
        int rc = sd_unet_forward(&m, &a, view(&f[0]), f[1].f32, view(&f[2]), (sd_tensor){0}, &out, &err);
        CHECK(rc == 0, "odd-size reference: %s", err.msg);
        if (rc == 0) {
            CHECK(out.ne[2] == 9 && out.ne[3] == 13, "odd-size output shape");
            CHECK_CLOSE("tiny-sd1 latent 9x13 vs PyTorch (upsample to skip size)", out.data, f[3].f32, f[3].numel,
                        1.5e-5);
        }
        sd_arena_free(&a);
        sd_model_close(&m);
    }
    for (int i = 0; i < 4; i++) sd_npy_free(&f[i]);
}

int main(void)
{
    sd_set_threads(2);
    sd_test_require_shared();
    DIR *d = opendir(sd_test_path("golden/cases"));
    CHECK(d != NULL, "cannot list %s", sd_test_path("golden/cases"));
    char *names[64];
    int n = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) && n < 64)
            if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
        closedir(d);
    }
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    CHECK(n >= 6, "only %d golden cases", n);
    for (int i = 0; i < n; i++) {
        run_case(names[i]);
        free(names[i]);
    }
    odd_sizes();
    odd_size_reference();
    TEST_MAIN_END();
}
