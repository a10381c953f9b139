/* test_vae.c — the VAE against the golden cases (docs/SEMANTICS.md §10, §9.3, tolerances §14.3).
 *
 * Decoder: for every case with a stored model, latents_final / 0.18215 → image_float within
 * 1e-4 max abs (docs/SEMANTICS.md §14.3: ≤ 4.3e-6 for a contiguous float32 decoder on the dumped
 * latent; the log prints the actual). The gen:sd15 case p5 is checked by test_clip_full.c.
 * Encoder (img2img cases): image_in → vae_moments within 4e-4, and
 * (vae_moments, vae_sample_noise) → latents_encoded within 1e-4 (docs/SEMANTICS.md §9.3: exact with SLEEF's expf).
 */
#include <cjson/cJSON.h>
#include <dirent.h>

#include "sdgen/model.h"
#include "sdgen/npy.h"
#include "sdgen/ops.h"
#include "sdgen/vae.h"
#include "testutil.h"

static void case_model(const char *case_dir, char *out, size_t outsz)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/case.json", case_dir);
    out[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (cJSON_IsString(m)) snprintf(out, outsz, "%s", m->valuestring);
    cJSON_Delete(j);
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

static sd_tensor view4(sd_npy *a)
{
    sd_tensor t = {0};
    t.data = a->f32;
    t.ndim = 4;
    for (int i = 0; i < 4; i++) t.ne[i] = a->ndim == 4 ? a->shape[i] : 1;
    return t;
}

static void check_case(const char *dir, const char *name)
{
    char model_rel[512], model_path[4096];
    case_model(dir, model_rel, sizeof model_rel);
    CHECK(model_rel[0], "%s: no model in case.json", name);
    if (!model_rel[0] || !strncmp(model_rel, "gen:", 4)) {
        printf("---- %s: model %s is a full-size file: see test_clip_full\n", name, model_rel);
        return;
    }
    snprintf(model_path, sizeof model_path, "%s", sd_test_path("golden/"));
    strncat(model_path, model_rel, sizeof model_path - strlen(model_path) - 1);
    sd_model m;
    sd_err err;
    if (sd_model_open(&m, model_path, &err)) {
        CHECK(0, "%s: open %s: %s", name, model_path, err.msg);
        return;
    }
    sd_arena a;
    sd_arena_init(&a, 0, 0);
    char what[256];

    /* Decoder on the dumped final latent. */
    sd_npy lat, ref;
    if (!load(dir, "latents_final", &lat)) {
        if (!load(dir, "image_float", &ref)) {
            sd_tensor z = view4(&lat);
            /* diffusers: latents / vae.config.scaling_factor, a float32 division. */
            const float sf = 0.18215f;
            for (int64_t i = 0; i < lat.numel; i++) lat.f32[i] = lat.f32[i] / sf;
            sd_tensor img;
            double t0 = sd_now();
            int rc = sd_vae_decode(&m, &a, z, &img, &err);
            double dt = sd_now() - t0;
            CHECK(rc == 0, "%s: decode: %s", name, err.msg);
            if (rc == 0) {
                printf("---- %s (%s): decode %lldx%lld in %.1f ms (arena peak %.1f MB)\n", name, model_rel,
                       (long long)img.ne[3], (long long)img.ne[2], dt * 1e3, a.peak / 1048576.0);
                CHECK(sd_numel(img) == ref.numel && img.ne[1] == 3, "%s: image shape", name);
                snprintf(what, sizeof what, "%s image_float", name);
                if (sd_numel(img) == ref.numel) CHECK_CLOSE(what, img.data, ref.f32, ref.numel, 1e-4);
                /* Second run on the (now single-block) arena, where every block compacts: same bits. */
                float *first = malloc((size_t)sd_numel(img) * sizeof(float));
                memcpy(first, img.data, (size_t)sd_numel(img) * sizeof(float));
                sd_arena_reset(&a);
                sd_tensor img2;
                t0 = sd_now();
                rc = sd_vae_decode(&m, &a, z, &img2, &err);
                dt = sd_now() - t0;
                CHECK(rc == 0 && !memcmp(first, img2.data, (size_t)sd_numel(img) * sizeof(float)),
                      "%s: second decode differs from the first", name);
                /* A batch of 2 (z, z/2) decodes item by item: item 0 is the same bits. */
                int64_t s2[4] = {2, z.ne[1], z.ne[2], z.ne[3]};
                sd_tensor zz = sd_tensor_new(&a, 4, s2);
                for (int64_t i = 0; i < sd_numel(z); i++) {
                    zz.data[i] = z.data[i];
                    zz.data[sd_numel(z) + i] = z.data[i] * 0.5f;
                }
                sd_tensor img3;
                rc = sd_vae_decode(&m, &a, zz, &img3, &err);
                CHECK(rc == 0 && img3.ne[0] == 2 && !memcmp(first, img3.data, (size_t)sd_numel(img) * sizeof(float)),
                      "%s: batch-of-2 decode, item 0 differs (rc %d)", name, rc);
                free(first);
                CHECK(rc == 0, "%s: second decode: %s", name, err.msg);
                if (rc == 0) {
                    snprintf(what, sizeof what, "%s image_float (2nd run)", name);
                    CHECK_CLOSE(what, img2.data, ref.f32, ref.numel, 1e-4);
                    printf("     2nd decode %.1f ms\n", dt * 1e3);
                }
            }
            sd_npy_free(&ref);
        }
        sd_npy_free(&lat);
    }
    sd_arena_reset(&a);

    /* Encoder (img2img cases). */
    char p[4600];
    snprintf(p, sizeof p, "%s/image_in.npy", dir);
    FILE *f = fopen(p, "rb");
    if (f) {
        fclose(f);
        sd_npy in, mom, eps, enc;
        if (!load(dir, "image_in", &in) && !load(dir, "vae_moments", &mom) && !load(dir, "vae_sample_noise", &eps) &&
            !load(dir, "latents_encoded", &enc)) {
            sd_tensor moments;
            double t0 = sd_now();
            int rc = sd_vae_encode(&m, &a, view4(&in), &moments, &err);
            double dt = sd_now() - t0;
            CHECK(rc == 0, "%s: encode: %s", name, err.msg);
            if (rc == 0) {
                printf("---- %s: encode in %.1f ms\n", name, dt * 1e3);
                CHECK(sd_numel(moments) == mom.numel && moments.ne[1] == 2 * m.vae.z_channels, "%s: moments shape",
                      name);
                snprintf(what, sizeof what, "%s vae_moments", name);
                if (sd_numel(moments) == mom.numel) CHECK_CLOSE(what, moments.data, mom.f32, mom.numel, 4e-4);
            }
            /* Posterior sample from the dumped moments and noise. */
            int64_t plane = eps.numel / m.vae.z_channels;
            CHECK(mom.numel == 2 * eps.numel && enc.numel == eps.numel, "%s: sample shapes", name);
            if (mom.numel == 2 * eps.numel && enc.numel == eps.numel) {
                float *out = malloc((size_t)enc.numel * sizeof(float));
                sd_vae_sample(mom.f32, eps.f32, plane, m.vae.z_channels, m.vae.scale_factor, out);
                snprintf(what, sizeof what, "%s latents_encoded (from dumped moments)", name);
                CHECK_CLOSE(what, out, enc.f32, enc.numel, 1e-4);
                long diff = 0;
                for (int64_t i = 0; i < enc.numel; i++) diff += out[i] != enc.f32[i];
                printf("     latents_encoded: %ld of %lld values differ from the golden bits\n", diff,
                       (long long)enc.numel);
                CHECK(diff == 0, "%s: latents_encoded not bit-exact from the dumped moments (docs/SEMANTICS.md §9.3)", name);
                /* And from our own moments (whole encoder path). */
                if (rc == 0 && sd_numel(moments) == mom.numel) {
                    sd_vae_sample(moments.data, eps.f32, plane, m.vae.z_channels, m.vae.scale_factor, out);
                    snprintf(what, sizeof what, "%s latents_encoded (from image_in)", name);
                    CHECK_CLOSE(what, out, enc.f32, enc.numel, 1e-4);
                }
                free(out);
            }
        }
        sd_npy_free(&in);
        sd_npy_free(&mom);
        sd_npy_free(&eps);
        sd_npy_free(&enc);
    }

    /* Bad input shape is refused with a message, not a crash. */
    {
        int64_t s[4] = {1, 3, 8, 8};
        sd_tensor bad = sd_tensor_zeros(&a, 4, s);
        sd_tensor o;
        CHECK(sd_vae_decode(&m, &a, bad, &o, &err) != 0, "%s: decode of a 3-channel latent must fail", name);
        int64_t s2[4] = {1, 3, 12, 16};
        bad = sd_tensor_zeros(&a, 4, s2);
        CHECK(sd_vae_encode(&m, &a, bad, &o, &err) != 0, "%s: encode of 12x16 must fail", name);
    }
    sd_arena_free(&a);
    sd_model_close(&m);
}

int main(void)
{
    sd_test_require_shared();
    char root[4096];
    snprintf(root, sizeof root, "%s", sd_test_path("golden/cases"));
    DIR *d = opendir(root);
    CHECK(d != NULL, "cannot open %s", root);
    if (!d) TEST_MAIN_END();
    char names[64][256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.') snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char t[256];
                memcpy(t, names[i], 256);
                memcpy(names[i], names[j], 256);
                memcpy(names[j], t, 256);
            }
    CHECK(n >= 7, "expected the 7 golden cases, found %d", n);
    for (int i = 0; i < n; i++) {
        char dir[4600];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        check_case(dir, names[i]);
    }
    TEST_MAIN_END();
}
