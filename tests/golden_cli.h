/* golden_cli.h — run a golden case through the `sdgen` binary, exactly as a user would (its
 * case.json keys become command-line options verbatim), and compare every dumped tensor, the
 * PNG's pixels and its parameters chunk against the reference (tolerances: docs/SEMANTICS.md §14.3). */
#ifndef SDGEN_GOLDEN_CLI_H
#define SDGEN_GOLDEN_CLI_H

#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sdgen/image.h"
#include "sdgen/npy.h"
#include "sdgen/params.h"
#include "testutil.h"

static inline int run_argv(char **argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static inline double max_abs_of(const float *v, long n)
{
    double m = 0;
    for (long i = 0; i < n; i++)
        if (fabs(v[i]) > m) m = fabs(v[i]);
    return m;
}

/* The tolerance rule of one comparison, applied to the reference's largest |value| m:
 * max(abs, rel·m, scale·max(10, m)), with abs < 0 meaning the latents' 3e-5·max(1, m). */
typedef struct npy_tol {
    double abs, rel, scale;
} npy_tol;

/* Compare DIR_GOT/name.npy with DIR_WANT/name.npy (the reference) within the rule; label names it. */
static inline void compare_npy_in(const char *dir_got, const char *dir_want, const char *name, npy_tol t,
                                  const char *label)
{
    char a[4096], b[4096], what[4400];
    snprintf(a, sizeof a, "%s/%s.npy", dir_got, name);
    snprintf(b, sizeof b, "%s/%s.npy", dir_want, name);
    sd_npy got, want;
    sd_err e1 = {0}, e2 = {0};
    int ok1 = sd_npy_read(&got, a, &e1) == 0, ok2 = sd_npy_read(&want, b, &e2) == 0;
    CHECK(ok1, "%s: %s", name, e1.msg);
    CHECK(ok2, "%s: %s", name, e2.msg);
    if (ok1 && ok2) {
        CHECK(got.numel == want.numel, "%s: %lld values, reference has %lld", name, (long long)got.numel,
              (long long)want.numel);
        if (got.numel == want.numel) {
            const double m = max_abs_of(want.f32, (long)want.numel);
            double tol = t.abs < 0 ? 3e-5 * fmax(1.0, m) : t.abs;
            tol = fmax(tol, t.rel * m);
            if (t.scale > 0) tol = fmax(tol, t.scale * fmax(10.0, m));
            snprintf(what, sizeof what, "%s %s", label, name);
            CHECK_CLOSE(what, got.f32, want.f32, got.numel, tol);
        }
    }
    if (ok1) sd_npy_free(&got);
    if (ok2) sd_npy_free(&want);
}

/* Compare OUT/name.npy with CASE/name.npy within tol; tol < 0 means relative latent tolerance
 * 3e-5·max(1, max|ref|); scale > 0 widens tol to scale·max(10, max|ref|) where that is larger (the
 * full-size SDXL text embeddings, |x| up to ~27 without a final LayerNorm: docs/SEMANTICS.md §14). */
static inline void compare_npy_scaled(const char *case_dir, const char *out_dir, const char *name, double tol,
                                      double scale)
{
    compare_npy_in(out_dir, case_dir, name, (npy_tol){tol, 0, scale}, strrchr(case_dir, '/') + 1);
}

static inline void compare_npy(const char *case_dir, const char *out_dir, const char *name, double tol)
{
    compare_npy_scaled(case_dir, out_dir, name, tol, 0);
}

/* Compare DIR_A/name.npy with DIR_B/name.npy (B the reference) within rel × max|B|. */
static inline void compare_npy_rel(const char *dir_a, const char *dir_b, const char *name, double rel)
{
    char label[4200];
    snprintf(label, sizeof label, "%s vs %s (relative tol %.1g):", dir_a, dir_b, rel);
    compare_npy_in(dir_a, dir_b, name, (npy_tol){0, rel, 0}, label);
}

static inline const char *jstr(const cJSON *c, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Append "--opt AxB" (sep 'x', from a [h, w] pair: W x H) or "--opt A,B" (sep ',': [top, left]) for a
 * case.json pair key. */
static inline void pair_option(const cJSON *c, const char *key, const char *opt, char sep, char **argv, int *n,
                               char *val, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2) return;
    const int a = cJSON_GetArrayItem(v, 0)->valueint, b = cJSON_GetArrayItem(v, 1)->valueint;
    if (sep == 'x') snprintf(val, cap, "%dx%d", b, a); /* [h, w] -> WxH */
    else snprintf(val, cap, "%d,%d", a, b);
    argv[(*n)++] = (char *)opt;
    argv[(*n)++] = val;
}

/* Run case `case_name` of the golden set folder `set` ("cases", "cases-sdxl", ...). */
/* One case of a set, with extra options for sdgen (NULL-terminated list, or NULL) and its dumps in a folder
 * named after the case and `tag` (NULL: none). */
static inline void run_golden_case_opts(const char *sdgen, const char *set, const char *case_name,
                                        const char *model_override, const char *const *extra, const char *tag)
{
    char case_dir[4096], json_path[4200], set_path[256];
    snprintf(set_path, sizeof set_path, "golden/%s", set);
    snprintf(case_dir, sizeof case_dir, "%s", sd_test_path(set_path));
    snprintf(case_dir + strlen(case_dir), sizeof case_dir - strlen(case_dir), "/%s", case_name);
    snprintf(json_path, sizeof json_path, "%s/case.json", case_dir);
    char *txt = sd_test_read_text(json_path);
    CHECK(txt != NULL, "cannot read %s", json_path);
    if (!txt) return;
    cJSON *c = cJSON_Parse(txt);
    free(txt);
    CHECK(c != NULL, "%s: bad JSON", json_path);
    if (!c) return;

    char out_dir[4096], png[4200], model[4096], init[4200], vocab[4096], taesd[4200];
    snprintf(out_dir, sizeof out_dir, "%s/golden-%s%s%s", sd_test_tmp(), case_name, tag ? "-" : "", tag ? tag : "");
    snprintf(png, sizeof png, "%s/image.png", out_dir);
    mkdir(out_dir, 0777);
    snprintf(vocab, sizeof vocab, "%s", sd_test_path("clip"));
    if (model_override) snprintf(model, sizeof model, "%s", model_override);
    else snprintf(model, sizeof model, "%s/%s", sd_test_path("golden"), jstr(c, "model"));

    /* case.json key -> CLI option, verbatim */
    static const char *keys[][2] = {{"prompt", "--prompt"},     {"negative_prompt", "--negative-prompt"},
                                    {"width", "--width"},       {"height", "--height"},
                                    {"steps", "--steps"},       {"cfg_scale", "--cfg-scale"},
                                    {"seed", "--seed"},         {"sampler", "--sampler"},
                                    {"schedule", "--schedule"}, {"rng", "--rng"},
                                    {"prediction", "--prediction"}, {"clip_skip", "--clip-skip"},
                                    {"strength", "--strength"}, {"timestep_spacing", "--timestep-spacing"},
                                    {"eta", "--eta"}};
    char *argv[64];
    char vals[40][256];
    int n = 0, nv = 0;
    argv[n++] = (char *)sdgen;
    argv[n++] = "-q";
    argv[n++] = "--overwrite";
    argv[n++] = "--model";
    argv[n++] = model;
    argv[n++] = "--vocab";
    argv[n++] = vocab;
    argv[n++] = "--output";
    argv[n++] = png;
    argv[n++] = "--dump-dir";
    argv[n++] = out_dir;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, keys[k][0]);
        if (!v || cJSON_IsNull(v)) continue; /* null: not given (SDXL's negative prompt: zeros) */
        argv[n++] = (char *)keys[k][1];
        if (cJSON_IsString(v)) snprintf(vals[nv], sizeof vals[nv], "%s", v->valuestring);
        else if (v->valuedouble == (double)(long long)v->valuedouble) snprintf(vals[nv], sizeof vals[nv], "%lld", (long long)v->valuedouble);
        else snprintf(vals[nv], sizeof vals[nv], "%.17g", v->valuedouble);
        argv[n++] = vals[nv++];
    }
    if (jstr(c, "init_image")) {
        snprintf(init, sizeof init, "%s/%s", case_dir, jstr(c, "init_image"));
        argv[n++] = "--init-image";
        argv[n++] = init;
    }
    /* golden README §11: "vae": {"kind": "taesd", "model": folder} swaps the decoder for the tiny one */
    const cJSON *vae = cJSON_GetObjectItemCaseSensitive(c, "vae");
    const int tiny = vae && jstr(vae, "kind") && !strcmp(jstr(vae, "kind"), "taesd") && jstr(vae, "model");
    if (tiny) {
        snprintf(taesd, sizeof taesd, "%s/%s", sd_test_path("golden"), jstr(vae, "model"));
        argv[n++] = "--vae-decoder";
        argv[n++] = taesd;
    }
    pair_option(c, "original_size", "--original-size", 'x', argv, &n, vals[nv++], sizeof vals[0]);
    pair_option(c, "target_size", "--target-size", 'x', argv, &n, vals[nv++], sizeof vals[0]);
    pair_option(c, "crops_coords_top_left", "--crop-top-left", ',', argv, &n, vals[nv++], sizeof vals[0]);
    /* golden README §12: "lora": [{"file", "scale", ...}] in application order -> --lora FILE:SCALE */
    char lora_args[4][4400];
    const cJSON *loras = cJSON_GetObjectItemCaseSensitive(c, "lora");
    for (int k = 0; cJSON_IsArray(loras) && k < cJSON_GetArraySize(loras) && k < 4; k++) {
        const cJSON *l = cJSON_GetArrayItem(loras, k);
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(l, "scale");
        snprintf(lora_args[k], sizeof lora_args[k], "%s/%s:%.17g", sd_test_path("golden"), jstr(l, "file"),
                 cJSON_IsNumber(sc) ? sc->valuedouble : 1.0);
        argv[n++] = "--lora";
        argv[n++] = lora_args[k];
    }
    for (int k = 0; extra && extra[k] && n < 62; k++) argv[n++] = (char *)extra[k];
    argv[n] = NULL;
    int rc = run_argv(argv);
    CHECK(rc == 0, "%s: sdgen exited with %d", case_name, rc);
    if (rc == 0) {
        int img2img = jstr(c, "init_image") != NULL;
        compare_npy(case_dir, out_dir, "tokens_cond", 0);
        const int sdxl = jstr(c, "family") && !strcmp(jstr(c, "family"), "sdxl");
        const char *uncond = jstr(c, "uncond");
        if (!sdxl || (uncond && !strcmp(uncond, "encoded"))) compare_npy(case_dir, out_dir, "tokens_uncond", 0);
        if (sdxl) {
            /* golden README §9: the second tokenizer, pooled vectors and size ids */
            compare_npy(case_dir, out_dir, "tokens_2_cond", 0);
            compare_npy(case_dir, out_dir, "pooled_cond", 2e-5);
            if (uncond && strcmp(uncond, "none")) compare_npy(case_dir, out_dir, "pooled_uncond", 2e-5);
            compare_npy(case_dir, out_dir, "add_time_ids", 0);
        }
        const double text_scale = sdxl ? 2e-6 : 0;
        compare_npy_scaled(case_dir, out_dir, "text_emb_cond", 2e-5, text_scale);
        if (!uncond || strcmp(uncond, "none")) compare_npy_scaled(case_dir, out_dir, "text_emb_uncond", 2e-5, text_scale);
        compare_npy(case_dir, out_dir, "timesteps", 0);
        compare_npy(case_dir, out_dir, "unet0_out", 1.5e-5);
        if (img2img) {
            compare_npy(case_dir, out_dir, "latents_encoded", 1e-4);
            compare_npy(case_dir, out_dir, "latents_init", 1e-4);
        } else {
            compare_npy(case_dir, out_dir, "latents_init", 0);
        }
        compare_npy(case_dir, out_dir, "step_latents", -1);
        compare_npy(case_dir, out_dir, "latents_final", -1);
        if (tiny) {
            /* golden README §12: the tiny decoder sees raw latents (no GroupNorm), so a whole run's latents error
             * (3e-5 relative) reaches its outputs: 1e-3 */
            compare_npy(case_dir, out_dir, "taesd_clamped", 1e-3);
            compare_npy(case_dir, out_dir, "taesd_raw", 1e-3);
            compare_npy(case_dir, out_dir, "image_float", 1e-3);
        } else {
            compare_npy(case_dir, out_dir, "image_float", 1e-4);
        }

        /* PNG: every value within 1 LSB, at most 0.2% differ */
        char ref[4200];
        snprintf(ref, sizeof ref, "%s/image.png", case_dir);
        sd_image ia = {0}, ib = {0};
        sd_err le = {0};
        int la = sd_image_load(&ia, png, &le) == 0, lb = sd_image_load(&ib, ref, &le) == 0;
        const unsigned char *a = la ? ia.rgb : NULL, *b = lb ? ib.rgb : NULL;
        int w1 = ia.w, h1 = ia.h, w2 = ib.w, h2 = ib.h;
        CHECK(a && b && w1 == w2 && h1 == h2, "%s: PNG missing or of the wrong size", case_name);
        if (a && b && w1 == w2 && h1 == h2) {
            long nval = (long)w1 * h1 * 3, ndiff = 0;
            int maxd = 0;
            for (long i = 0; i < nval; i++) {
                int d = abs((int)a[i] - (int)b[i]);
                if (d) ndiff++;
                if (d > maxd) maxd = d;
            }
            printf("%s image.png: max diff %d LSB, %ld of %ld values differ\n", case_name, maxd, ndiff, nval);
            CHECK(maxd <= 1 && ndiff * 500 <= nval, "%s image.png: max diff %d, %ld of %ld differ", case_name, maxd,
                  ndiff, nval);
        }
        sd_image_free(&ia);
        sd_image_free(&ib);

        /* the parameters chunk parses back to the run's settings */
        char *text = NULL;
        int itxt = 0;
        sd_err e = {0};
        CHECK(sd_png_read_text(png, "parameters", &text, &itxt, &e) == 0, "%s: %s", case_name, e.msg);
        if (text) {
            sd_gen_params gp;
            sd_params_init(&gp);
            CHECK(sd_params_parse(text, &gp, &e) == 0, "%s: parameters do not parse: %s", case_name, e.msg);
            CHECK(!strcmp(gp.prompt, jstr(c, "prompt")), "%s: prompt read back as \"%s\"", case_name, gp.prompt);
            const char *seed = sd_params_get(&gp, "Seed");
            char want_seed[32];
            snprintf(want_seed, sizeof want_seed, "%d", cJSON_GetObjectItem(c, "seed")->valueint);
            CHECK(seed && !strcmp(seed, want_seed), "%s: Seed read back as %s", case_name, seed ? seed : "(none)");
            const char *steps = sd_params_get(&gp, "Steps");
            CHECK(steps && atoi(steps) == cJSON_GetObjectItem(c, "steps")->valueint, "%s: Steps read back as %s",
                  case_name, steps ? steps : "(none)");
            sd_params_free(&gp);
            free(text);
        }
    }
    cJSON_Delete(c);
}

static inline void run_golden_case_in(const char *sdgen, const char *set, const char *case_name,
                                      const char *model_override)
{
    run_golden_case_opts(sdgen, set, case_name, model_override, NULL, NULL);
}

static inline void run_golden_case(const char *sdgen, const char *case_name, const char *model_override)
{
    run_golden_case_in(sdgen, "cases", case_name, model_override);
}

#endif
