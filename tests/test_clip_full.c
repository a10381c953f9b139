/* test_clip_full.c — the full-size SD 1.5 case p5 (gen:sd15): text encoder (CLIP ViT-L/14,
 * 12 layers, width 768) tokens → text_emb within 2e-5, and the full VAE decoder
 * latents_final / 0.18215 → image_float within 1e-4 (docs/SEMANTICS.md §4, §10, §14.3).
 *
 * The 2 GB checkpoint is $SDGEN_SD15 when that names a file; otherwise it is generated (never
 * skipped) into $SDGEN_TEST_TMP/full: with scripts/make-full-ckpts.sh when present, else by
 * building the shared tools/mkckpt.c and running `mkckpt golden/manifests/sd15.json
 * sd15.safetensors 0` (about 30 s). Label "full" (tests/CMakeLists.txt).
 */
#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "sdgen/clip.h"
#include "sdgen/model.h"
#include "sdgen/npy.h"
#include "sdgen/ops.h"
#include "sdgen/vae.h"
#include "testutil.h"

#define SD15_BYTES 2132674926LL

static int is_file_of(const char *p, long long bytes)
{
    struct stat st;
    return p && *p && stat(p, &st) == 0 && S_ISREG(st.st_mode) && (bytes < 0 || st.st_size == bytes);
}

/* Find or make the SD 1.5 checkpoint; path into out. */
static int sd15_path(char *out, size_t outsz)
{
    const char *env = getenv("SDGEN_SD15");
    if (is_file_of(env, -1)) {
        snprintf(out, outsz, "%s", env);
        return 0;
    }
    /* $SDGEN_TEST_TMP/full, where the other full-size tests generate it too. */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/full", sd_test_tmp());
    char mk[4300];
    snprintf(mk, sizeof mk, "mkdir -p '%s'", tmp);
    if (system(mk) != 0) return -1;
    snprintf(out, outsz, "%s/sd15.safetensors", tmp);
    if (is_file_of(out, SD15_BYTES)) return 0;

    char cmd[8192];
    const char *src = getenv("SDGEN_SOURCE_DIR");
    char script[4096];
    snprintf(script, sizeof script, "%s/scripts/make-full-ckpts.sh", src && *src ? src : ".");
    if (is_file_of(script, -1)) {
        /* The script writes OUT_DIR/sd15.safetensors and checks its sha256. */
        snprintf(cmd, sizeof cmd, "bash '%s' '%s' sd15", script, tmp);
        printf("generating the SD 1.5 checkpoint: %s\n", cmd);
        fflush(stdout);
        if (system(cmd) == 0 && is_file_of(out, SD15_BYTES)) return 0;
        fprintf(stderr, "make-full-ckpts.sh did not leave %s; building mkckpt directly\n", out);
    }
    snprintf(cmd, sizeof cmd,
             "cc -O2 -o '%s/mkckpt' '%s/tools/mkckpt.c' -lcjson -lm && '%s/mkckpt' '%s/golden/manifests/sd15.json' "
             "'%s.part' 0 && mv '%s.part' '%s'",
             tmp, sd_test_shared(), tmp, sd_test_shared(), out, out, out);
    printf("generating the SD 1.5 checkpoint: %s\n", cmd);
    fflush(stdout);
    if (system(cmd) != 0 || !is_file_of(out, SD15_BYTES)) return -1;
    return 0;
}

static int load(const char *dir, const char *name, sd_npy *a)
{
    char p[4096];
    sd_err err;
    snprintf(p, sizeof p, "%s/%s.npy", dir, name);
    if (sd_npy_read(a, p, &err)) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    return 0;
}

int main(void)
{
    sd_test_require_shared();
    char path[4096];
    CHECK(sd15_path(path, sizeof path) == 0, "no SD 1.5 checkpoint: set SDGEN_SD15 or let the test generate it");
    if (t_fail) TEST_MAIN_END();
    printf("checkpoint: %s\n", path);

    char dir[4096];
    snprintf(dir, sizeof dir, "%s", sd_test_path("golden/cases/p5-sd15-ddim"));
    sd_model m;
    sd_err err;
    if (sd_model_open(&m, path, &err)) {
        CHECK(0, "open %s: %s", path, err.msg);
        TEST_MAIN_END();
    }
    CHECK(m.text[0].kind == SD_TEXT_CLIP_HF && m.text[0].width == 768 && m.text[0].layers == 12,
          "SD 1.5 text config (kind %d width %d layers %d)", (int)m.text[0].kind, m.text[0].width, m.text[0].layers);
    sd_arena a;
    sd_arena_init(&a, 0, 0);

    /* Text encoder. */
    sd_npy tc, tu, ec, eu;
    if (!load(dir, "tokens_cond", &tc) && !load(dir, "tokens_uncond", &tu) && !load(dir, "text_emb_cond", &ec) &&
        !load(dir, "text_emb_uncond", &eu)) {
        int32_t ids[2 * 77];
        for (int i = 0; i < 77; i++) {
            ids[i] = (int32_t)tc.i64[i];
            ids[77 + i] = (int32_t)tu.i64[i];
        }
        sd_tensor emb;
        double t0 = sd_now();
        int rc = sd_text_encode(&m, &m.text[0], &a, ids, 2, 1, &emb, NULL, &err);
        double dt = sd_now() - t0;
        CHECK(rc == 0, "encode: %s", err.msg);
        if (rc == 0) {
            printf("---- p5 text encode of 2 sequences: %.1f ms (first call includes F16→F32 conversion)\n", dt * 1e3);
            CHECK(emb.ne[2] == 768 && ec.numel == 77 * 768, "text_emb shape");
            if (ec.numel == 77 * 768 && emb.ne[2] == 768) {
                CHECK_CLOSE("p5 text_emb_cond", emb.data, ec.f32, ec.numel, 2e-5);
                CHECK_CLOSE("p5 text_emb_uncond", emb.data + 77 * 768, eu.f32, eu.numel, 2e-5);
            }
        }
        sd_npy_free(&tc);
        sd_npy_free(&tu);
        sd_npy_free(&ec);
        sd_npy_free(&eu);
    }
    sd_arena_reset(&a);

    /* VAE decoder. */
    sd_npy lat, ref;
    if (!load(dir, "latents_final", &lat) && !load(dir, "image_float", &ref)) {
        sd_tensor z = {0};
        z.data = lat.f32;
        z.ndim = 4;
        for (int i = 0; i < 4; i++) z.ne[i] = lat.shape[i];
        const float sf = 0.18215f;
        for (int64_t i = 0; i < lat.numel; i++) lat.f32[i] = lat.f32[i] / sf;
        sd_tensor img;
        double t0 = sd_now();
        int rc = sd_vae_decode(&m, &a, z, &img, &err);
        double dt = sd_now() - t0;
        CHECK(rc == 0, "decode: %s", err.msg);
        if (rc == 0) {
            printf("---- p5 VAE decode %lldx%lld: %.1f ms (first call includes F16→F32 conversion)\n",
                   (long long)img.ne[3], (long long)img.ne[2], dt * 1e3);
            CHECK(sd_numel(img) == ref.numel, "image shape");
            if (sd_numel(img) == ref.numel) CHECK_CLOSE("p5 image_float", img.data, ref.f32, ref.numel, 1e-4);
        }
        sd_npy_free(&lat);
        sd_npy_free(&ref);
    }
    sd_arena_free(&a);
    sd_model_close(&m);
    TEST_MAIN_END();
}
