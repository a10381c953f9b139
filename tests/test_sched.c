/* test_sched.c — schedules and sampler steps against the golden cases and a torch re-derivation.
 *
 * Golden cases (docs/SEMANTICS.md §5, §6, §9): alphas_cumprod, timesteps, sigmas exact; the start
 * latent (txt2img noise·init_noise_sigma, img2img add_noise) exact; the first U-Net input
 * (input scaling) exact; every step from the reference latent before it, the guided output and
 * the step noise to step_latents[i] within 3e-5·max(1, max|ref|) (we print the real errors).
 * Unit checks: docs/SEMANTICS.md §5 examples (Karras n = 6, spacings), strength rounding (§9.2), names.
 * tests/fixtures/sched/sched_ref.json (scripts/make-sched-fixtures.py, torch float32 and numpy
 * re-derivation of the diffusers classes): ddpm eps/v steps, spacings and Karras lists that no
 * golden case covers. tests/fixtures/sched/karras_ref.json (scripts/make-karras-fixtures.py, numpy
 * re-derivation of the 0.25.1 Heun, LMS, KDPM2, KDPM2 a and UniPC classes with use_karras_sigmas):
 * their Karras σ lists, per-call timesteps and init_noise_sigma for 1, 2, 4, 20 and 25 steps.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <string.h>

#include "sdgen/npy.h"
#include "sdgen/sched.h"
#include "testutil.h"

static int bits_equal(float a, float b) { return memcmp(&a, &b, 4) == 0; }

static int64_t count_diff(const float *a, const float *b, int64_t n)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += !bits_equal(a[i], b[i]);
    return d;
}

static int load(sd_npy *a, const char *dir, const char *name)
{
    char rel[512];
    snprintf(rel, sizeof rel, "golden/cases/%s/%s", dir, name);
    FILE *f = fopen(sd_test_path(rel), "rb");
    if (!f) return -1;
    fclose(f);
    sd_err err;
    if (sd_npy_read(a, sd_test_path(rel), &err)) {
        CHECK(0, "%s: %s", rel, err.msg);
        return -1;
    }
    return 0;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *k, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static double g_worst_rel = 0; /* worst step error / max(1, max|ref|) over all cases */

static void test_case(const char *dir)
{
    char rel[512];
    snprintf(rel, sizeof rel, "golden/cases/%s/case.json", dir);
    char *txt = sd_test_read_text(sd_test_path(rel));
    CHECK(txt != NULL, "cannot read %s", rel);
    if (!txt) return;
    cJSON *c = cJSON_Parse(txt);
    free(txt);
    if (!c) { CHECK(0, "%s does not parse", rel); return; }

    sd_sampler sampler;
    sd_schedule schedule;
    sd_prediction pred = !strcmp(jstr(c, "prediction"), "v") ? SD_PRED_V : SD_PRED_EPS;
    CHECK(sd_sampler_parse(jstr(c, "sampler"), &sampler, NULL) == 0, "%s: sampler", dir);
    CHECK(sd_schedule_parse(jstr(c, "schedule"), &schedule) == 0, "%s: schedule", dir);
    int steps = (int)jnum(c, "steps", 0);
    double strength = jnum(c, "strength", -1);

    sd_sched s;
    sd_err err;
    if (sd_sched_init(&s, sampler, schedule, SD_SPACING_DEFAULT, pred, steps, NULL, &err)) {
        CHECK(0, "%s: sd_sched_init: %s", dir, err.msg);
        cJSON_Delete(c);
        return;
    }
    if (strength > 0 && sd_sched_set_strength(&s, strength, &err)) CHECK(0, "%s: set_strength: %s", dir, err.msg);

    sd_npy a, b, m, z;
    char what[256];
    /* ᾱ table */
    if (load(&a, dir, "alphas_cumprod.npy") == 0) {
        CHECK(a.numel == s.num_train, "%s: alphas_cumprod has %lld values", dir, (long long)a.numel);
        int64_t d = count_diff(s.alphas_cumprod, a.f32, a.numel);
        snprintf(what, sizeof what, "%s alphas_cumprod", dir);
        CHECK(d == 0, "%s: %lld of %lld values not bit-exact", what, (long long)d, (long long)a.numel);
        if (d == 0) printf("ok   %s: %lld values bit-exact\n", what, (long long)a.numel);
        sd_npy_free(&a);
    }
    /* timesteps of the steps run */
    if (load(&a, dir, "timesteps.npy") == 0) {
        CHECK(a.numel == s.n_steps, "%s: %lld timesteps, schedule runs %d", dir, (long long)a.numel, s.n_steps);
        if (a.numel == s.n_steps) {
            int64_t d = count_diff(s.timesteps, a.f32, a.numel);
            CHECK(d == 0, "%s timesteps: %lld differ (first: got %g want %g)", dir, (long long)d, s.timesteps[0], a.f32[0]);
            if (d == 0) printf("ok   %s timesteps exact (%d: %g … %g)\n", dir, s.n_steps, s.timesteps[0], s.timesteps[s.n_steps - 1]);
        }
        sd_npy_free(&a);
    }
    if (load(&a, dir, "sigmas.npy") == 0) {
        CHECK(s.has_sigmas && a.numel == s.n_steps + 1, "%s: sigmas count %lld", dir, (long long)a.numel);
        if (a.numel == s.n_steps + 1) {
            int64_t d = count_diff(s.sigmas, a.f32, a.numel);
            snprintf(what, sizeof what, "%s sigmas", dir);
            if (d) CHECK_CLOSE(what, s.sigmas, a.f32, a.numel, 0.0);
            else printf("ok   %s: %lld values bit-exact\n", what, (long long)a.numel);
            CHECK(d == 0, "%s not exact", what);
        }
        sd_npy_free(&a);
    }
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(c, "init_noise_sigma");
    if (cJSON_IsNumber(ins))
        CHECK(s.init_noise_sigma == (float)ins->valuedouble, "%s: init_noise_sigma %.9g want %.9g", dir,
              s.init_noise_sigma, ins->valuedouble);

    /* start latent */
    sd_npy init, noise;
    if (load(&init, dir, "latents_init.npy") || load(&noise, dir, "noise.npy")) {
        CHECK(0, "%s: latents_init / noise missing", dir);
        sd_sched_free(&s);
        cJSON_Delete(c);
        return;
    }
    int64_t n = init.numel;
    float *x = malloc(sizeof(float) * (size_t)n);
    if (strength > 0) {
        sd_npy enc;
        CHECK(load(&enc, dir, "latents_encoded.npy") == 0, "%s: latents_encoded", dir);
        sd_sched_add_noise(&s, enc.f32, noise.f32, x, n);
        sd_npy_free(&enc);
        snprintf(what, sizeof what, "%s latents_init = add_noise(latents_encoded, noise, t=%g)", dir, s.timesteps[0]);
    } else {
        sd_sched_init_latent(&s, noise.f32, x, n);
        snprintf(what, sizeof what, "%s latents_init = noise·%g", dir, s.init_noise_sigma);
    }
    int64_t d = count_diff(x, init.f32, n);
    CHECK(d == 0, "%s: %lld values not bit-exact", what, (long long)d);
    if (d == 0) printf("ok   %s: bit-exact\n", what);

    /* first U-Net input and timestep */
    if (load(&a, dir, "unet0_sample.npy") == 0) {
        float *xin = malloc(sizeof(float) * (size_t)n);
        sd_sched_scale_input(&s, 0, init.f32, xin, n);
        int64_t d0 = count_diff(xin, a.f32, n), d1 = a.numel == 2 * n ? count_diff(xin, a.f32 + n, n) : n;
        CHECK(d0 == 0 && d1 == 0, "%s unet0_sample: %lld/%lld values differ", dir, (long long)d0, (long long)d1);
        free(xin);
        sd_npy_free(&a);
    }
    if (load(&a, dir, "unet0_timestep.npy") == 0) {
        CHECK(a.f32[0] == s.timesteps[0], "%s unet0_timestep %g vs %g", dir, a.f32[0], s.timesteps[0]);
        sd_npy_free(&a);
    }

    /* every step from the reference latent before it */
    int have_noise = load(&z, dir, "step_noise.npy") == 0;
    if (load(&b, dir, "step_latents.npy") == 0 && load(&m, dir, "step_model_output.npy") == 0) {
        CHECK(b.numel == n * s.n_steps && m.numel == n * s.n_steps, "%s: step tensors have %lld values", dir,
              (long long)b.numel);
        for (int i = 0; i < s.n_steps && b.numel == n * s.n_steps; i++) {
            memcpy(x, i == 0 ? init.f32 : b.f32 + (int64_t)(i - 1) * n, sizeof(float) * (size_t)n);
            int need = sd_sched_needs_noise(&s, i);
            CHECK(need == have_noise, "%s step %d: needs_noise %d but step_noise.npy %s", dir, i, need,
                  have_noise ? "exists" : "is absent");
            const float *zi = have_noise ? z.f32 + (int64_t)i * n : NULL;
            if (sd_sched_step(&s, i, x, m.f32 + (int64_t)i * n, zi, n, &err)) {
                CHECK(0, "%s step %d: %s", dir, i, err.msg);
                break;
            }
            const float *ref = b.f32 + (int64_t)i * n;
            double maxref = 0, maxabs = 0;
            for (int64_t j = 0; j < n; j++) {
                if (fabs(ref[j]) > maxref) maxref = fabs(ref[j]);
                double e = fabs((double)x[j] - ref[j]);
                if (e > maxabs) maxabs = e;
            }
            double scale = maxref > 1 ? maxref : 1;
            if (maxabs / scale > g_worst_rel) g_worst_rel = maxabs / scale;
            snprintf(what, sizeof what, "%s step %d (t=%g) [%lld/%lld bit-exact, err/max(1,max|ref|)=%.2g]", dir, i,
                     s.timesteps[i], (long long)(n - count_diff(x, ref, n)), (long long)n, maxabs / scale);
            CHECK_CLOSE(what, x, ref, n, 3e-5 * scale);
        }
        sd_npy_free(&b);
        sd_npy_free(&m);
    }
    if (have_noise) sd_npy_free(&z);
    free(x);
    sd_npy_free(&init);
    sd_npy_free(&noise);
    sd_sched_free(&s);
    cJSON_Delete(c);
}

/* docs/SEMANTICS.md §5.2–§5.3 examples. */
static void test_examples(void)
{
    sd_sched s;
    sd_err err;
    CHECK(sd_sched_init(&s, SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_KARRAS, SD_SPACING_DEFAULT, SD_PRED_EPS, 6, NULL, &err) == 0,
          "karras init: %s", err.msg);
    const float kt[6] = {999, 837, 594, 249, 30, 0};
    const double ks[7] = {14.614645, 6.082158, 2.2321613, 0.6925739, 0.16975795, 0.029167533, 0};
    for (int i = 0; i < 6; i++) CHECK(s.timesteps[i] == kt[i], "karras n=6 t[%d] = %g want %g", i, s.timesteps[i], kt[i]);
    for (int i = 0; i < 7; i++)
        CHECK(fabs(s.sigmas[i] - ks[i]) <= 1e-7 * ks[i] + 1e-12, "karras n=6 σ[%d] = %.9g want %.9g", i, s.sigmas[i], ks[i]);
    CHECK(fabsf(s.sigma_table[0] - 0.0291675f) < 1e-7f && fabsf(s.sigma_table[999] - 14.614645f) < 2e-6f,
          "σ table ends %.9g %.9g", s.sigma_table[0], s.sigma_table[999]);
    sd_sched_free(&s);

    struct { sd_sampler smp; sd_spacing sp; int n; float t[6]; } ex[] = {
        {SD_SAMPLER_DDIM, SD_SPACING_DEFAULT, 4, {751, 501, 251, 1}},
        {SD_SAMPLER_DDPM, SD_SPACING_DEFAULT, 5, {801, 601, 401, 201, 1}},
        {SD_SAMPLER_EULER_A, SD_SPACING_DEFAULT, 5, {999, 749.25f, 499.5f, 249.75f, 0}},
        {SD_SAMPLER_DPMPP_2M, SD_SPACING_DEFAULT, 5, {999, 799, 599, 400, 200}},
        {SD_SAMPLER_DDIM, SD_SPACING_TRAILING, 4, {999, 749, 499, 249}},
        {SD_SAMPLER_EULER, SD_SPACING_LEADING, 4, {751, 501, 251, 1}},
    };
    for (size_t e = 0; e < sizeof ex / sizeof ex[0]; e++) {
        CHECK(sd_sched_init(&s, ex[e].smp, SD_SCHEDULE_DEFAULT, ex[e].sp, SD_PRED_EPS, ex[e].n, NULL, &err) == 0,
              "init: %s", err.msg);
        for (int i = 0; i < ex[e].n; i++)
            CHECK(s.timesteps[i] == ex[e].t[i], "%s/%s n=%d t[%d] = %g want %g", sd_sampler_name(ex[e].smp),
                  sd_spacing_name(s.spacing), ex[e].n, i, s.timesteps[i], ex[e].t[i]);
        sd_sched_free(&s);
    }
    /* dpmpp_2m default: σ_i are table entries, σ_n = 0. */
    sd_sched_init(&s, SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 5, NULL, &err);
    CHECK(s.sigmas[0] == s.sigma_table[999] && s.sigmas[3] == s.sigma_table[400] && s.sigmas[5] == 0.0f,
          "dpmpp default σ list");
    CHECK(s.init_noise_sigma == 1.0f, "dpmpp init_noise_sigma");
    sd_sched_free(&s);
    /* euler leading: init_noise_sigma = sqrt(σmax² + 1) */
    sd_sched_init(&s, SD_SAMPLER_EULER, SD_SCHEDULE_DEFAULT, SD_SPACING_LEADING, SD_PRED_EPS, 4, NULL, &err);
    CHECK(s.init_noise_sigma == sqrtf(s.sigmas[0] * s.sigmas[0] + 1.0f), "euler leading init_noise_sigma %g",
          s.init_noise_sigma);
    sd_sched_free(&s);
}

static void test_strength_and_errors(void)
{
    sd_sched s;
    sd_err err;
    /* docs/SEMANTICS.md §9.2: 50·0.58 = 28.999999999999996 → 28 steps; 100·0.29 → 28. */
    sd_sched_init(&s, SD_SAMPLER_DDIM, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 50, NULL, &err);
    CHECK(sd_sched_set_strength(&s, 0.58, &err) == 0 && s.n_steps == 28 && s.t_start == 22, "50·0.58 → %d steps",
          s.n_steps);
    CHECK(s.timesteps[0] == s.timesteps_all[22] && s.timesteps[27] == 1.0f, "strength timesteps");
    sd_sched_free(&s);
    sd_sched_init(&s, SD_SAMPLER_EULER, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 100, NULL, &err);
    CHECK(sd_sched_set_strength(&s, 0.29, &err) == 0 && s.n_steps == 28, "100·0.29 → %d steps", s.n_steps);
    CHECK(s.sigmas[0] == s.sigmas_all[72] && s.sigmas[28] == 0.0f, "euler strength σ list");
    CHECK(sd_sched_set_strength(&s, 1.0, &err) == 0 && s.n_steps == 100 && s.t_start == 0, "strength 1");
    CHECK(sd_sched_set_strength(&s, 0.001, &err) != 0, "strength·steps < 1 must fail");
    CHECK(sd_sched_set_strength(&s, 1.5, &err) != 0, "strength > 1 must fail");
    sd_sched_free(&s);
    CHECK(sd_sched_init(&s, SD_SAMPLER_DDIM, SD_SCHEDULE_KARRAS, SD_SPACING_DEFAULT, SD_PRED_EPS, 10, NULL, &err) != 0 &&
              strstr(err.msg, "karras") != NULL,
          "ddim + karras must fail with a clear message");
    printf("     ddim+karras: %s\n", err.msg);
    CHECK(sd_sched_init(&s, SD_SAMPLER_DDPM, SD_SCHEDULE_KARRAS, SD_SPACING_DEFAULT, SD_PRED_EPS, 10, NULL, &err) != 0,
          "ddpm + karras must fail");
    CHECK(sd_sched_init(&s, SD_SAMPLER_EULER, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 0, NULL, &err) != 0,
          "0 steps must fail");
    CHECK(sd_sched_init(&s, SD_SAMPLER_EULER, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 1001, NULL, &err) != 0,
          "1001 steps must fail");
    /* diffusers' np.arange(1000, 0, -1000/61) has 62 entries: refused. */
    CHECK(sd_sched_init(&s, SD_SAMPLER_DDIM, SD_SCHEDULE_DEFAULT, SD_SPACING_TRAILING, SD_PRED_EPS, 61, NULL, &err) != 0,
          "trailing 61 must fail");
    /* steps out of order */
    float x[16] = {0}, g[16] = {0};
    sd_sched_init(&s, SD_SAMPLER_DDIM, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 4, NULL, &err);
    CHECK(sd_sched_step(&s, 1, x, g, NULL, 16, &err) != 0, "step 1 before step 0 must fail");
    CHECK(sd_sched_step(&s, 0, x, g, NULL, 16, &err) == 0, "step 0");
    sd_sched_free(&s);
    sd_sched_init(&s, SD_SAMPLER_EULER_A, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 4, NULL, &err);
    CHECK(sd_sched_step(&s, 0, x, g, NULL, 16, &err) != 0, "euler_a without noise must fail");
    sd_sched_free(&s);
}

static void test_names(void)
{
    sd_sampler smp;
    sd_schedule sch = SD_SCHEDULE_DEFAULT;
    const char *ok[][2] = {{"ddim", "DDIM"}, {"ddpm", "DDPM"}, {"euler", "Euler"}, {"euler_a", "Euler a"}, {"dpmpp_2m", "DPM++ 2M"}};
    for (int i = 0; i < 5; i++) {
        CHECK(sd_sampler_parse(ok[i][0], &smp, NULL) == 0 && smp == (sd_sampler)i, "parse %s", ok[i][0]);
        CHECK(sd_sampler_parse(ok[i][1], &smp, NULL) == 0 && smp == (sd_sampler)i, "parse %s", ok[i][1]);
        CHECK(!strcmp(sd_sampler_name((sd_sampler)i), ok[i][0]), "name %d", i);
        CHECK(!strcmp(sd_sampler_a1111_name((sd_sampler)i), ok[i][1]), "a1111 name %d", i);
    }
    CHECK(sd_sampler_parse("euler-a", &smp, NULL) == 0 && smp == SD_SAMPLER_EULER_A, "euler-a");
    CHECK(sd_sampler_parse("DPM++ 2M Karras", &smp, &sch) == 0 && smp == SD_SAMPLER_DPMPP_2M && sch == SD_SCHEDULE_KARRAS,
          "DPM++ 2M Karras");
    CHECK(sd_sampler_parse("plms", &smp, NULL) != 0, "plms must fail");
    /* the newer samplers: sdgen name, A1111 display name, k-diffusion / A1111 aliases */
    static const struct { const char *name, *a1111, *alias; sd_sampler s; int calls4; } more[] = {
        {"lcm", "LCM", "k_lcm", SD_SAMPLER_LCM, 4},
        {"unipc", "UniPC", "uni_pc", SD_SAMPLER_UNIPC, 4},
        {"heun", "Heun", "k_heun", SD_SAMPLER_HEUN, 7},
        {"lms", "LMS", "k_lms", SD_SAMPLER_LMS, 4},
        {"dpm2", "DPM2", "k_dpm_2", SD_SAMPLER_DPM2, 7},
        {"dpm2_a", "DPM2 a", "dpm_2_ancestral", SD_SAMPLER_DPM2_A, 7},
        {"dpmpp_2m_sde", "DPM++ 2M SDE", "k_dpmpp_2m_sde", SD_SAMPLER_DPMPP_2M_SDE, 4},
    };
    for (size_t i = 0; i < sizeof more / sizeof *more; i++) {
        const char *names[3] = {more[i].name, more[i].a1111, more[i].alias};
        for (int k = 0; k < 3; k++)
            CHECK(sd_sampler_parse(names[k], &smp, NULL) == 0 && smp == more[i].s, "parse %s", names[k]);
        CHECK(!strcmp(sd_sampler_name(more[i].s), more[i].name), "name of %s", more[i].name);
        CHECK(!strcmp(sd_sampler_a1111_name(more[i].s), more[i].a1111), "a1111 name of %s", more[i].name);
        CHECK(sd_sampler_model_calls(more[i].s, 4) == more[i].calls4, "%s: %d model calls for 4 steps, want %d",
              more[i].name, sd_sampler_model_calls(more[i].s, 4), more[i].calls4);
    }
    sch = SD_SCHEDULE_DEFAULT;
    CHECK(sd_sampler_parse("DPM++ 2M SDE Karras", &smp, &sch) == 0 && smp == SD_SAMPLER_DPMPP_2M_SDE &&
              sch == SD_SCHEDULE_KARRAS,
          "DPM++ 2M SDE Karras");
    CHECK(sd_sampler_parse("DPM2 a b", &smp, NULL) != 0 && sd_sampler_parse("", &smp, NULL) != 0, "bad names");
    sd_sched st;
    sd_err e = {0};
    CHECK(sd_sched_init(&st, SD_SAMPLER_LCM, SD_SCHEDULE_KARRAS, SD_SPACING_DEFAULT, SD_PRED_EPS, 4, NULL, &e) != 0 &&
              strstr(e.msg, "karras is not available for the lcm sampler") && strstr(e.msg, "LCMScheduler"),
          "lcm karras refused: %s", e.msg);
    /* every σ sampler takes Karras σ; ddim, ddpm and lcm do not */
    for (int k = 0; k < SD_SAMPLER_COUNT; k++) {
        int want = k != SD_SAMPLER_DDIM && k != SD_SAMPLER_DDPM && k != SD_SAMPLER_LCM;
        CHECK(sd_sampler_has_karras((sd_sampler)k) == want, "has_karras(%s) = %d, want %d", sd_sampler_name((sd_sampler)k),
              sd_sampler_has_karras((sd_sampler)k), want);
    }
    /* A1111's pre-1.9 combined names of the newly Karras-capable samplers */
    static const struct { const char *a1111; sd_sampler s; } kn[] = {
        {"LMS Karras", SD_SAMPLER_LMS}, {"DPM2 Karras", SD_SAMPLER_DPM2}, {"DPM2 a Karras", SD_SAMPLER_DPM2_A},
        {"Heun Karras", SD_SAMPLER_HEUN}, {"UniPC Karras", SD_SAMPLER_UNIPC}};
    for (size_t i = 0; i < sizeof kn / sizeof *kn; i++) {
        sch = SD_SCHEDULE_DEFAULT;
        CHECK(sd_sampler_parse(kn[i].a1111, &smp, &sch) == 0 && smp == kn[i].s && sch == SD_SCHEDULE_KARRAS,
              "parse \"%s\" → %s + karras", kn[i].a1111, sd_sampler_name(kn[i].s));
    }
    CHECK(sd_sched_init(&st, SD_SAMPLER_LCM, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 51, NULL, &e) != 0 &&
              strstr(e.msg, "at most 50 steps"),
          "lcm 51 steps refused: %s", e.msg);
    CHECK(sd_sched_init(&st, SD_SAMPLER_EULER, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 4, NULL, &e) == 0 &&
              sd_sched_set_eta(&st, 0.5, &e) != 0 && strstr(e.msg, "only the ddim sampler has an eta"),
          "eta on euler refused: %s", e.msg);
    sd_sched_free(&st);
    CHECK(sd_schedule_parse("karras", &sch) == 0 && sch == SD_SCHEDULE_KARRAS, "karras");
    CHECK(sd_schedule_parse("default", &sch) == 0 && sch == SD_SCHEDULE_DEFAULT, "default");
    CHECK(!strcmp(sd_schedule_a1111_name(SD_SCHEDULE_KARRAS), "Karras"), "Karras label");
    CHECK(!strcmp(sd_schedule_a1111_name(SD_SCHEDULE_DEFAULT), "Automatic"), "Automatic label");
    sd_spacing sp;
    CHECK(sd_spacing_parse("trailing", &sp) == 0 && sp == SD_SPACING_TRAILING, "trailing");
    CHECK(sd_spacing_parse("bogus", &sp) != 0, "bogus spacing");
}

/* ---- fixture: torch/numpy re-derivation (scripts/make-sched-fixtures.py) ---- */

static void read_floats(const cJSON *arr, float *out, int cap, int *n)
{
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) if (i < cap) out[i++] = (float)v->valuedouble;
    *n = i;
}

/* tests/fixtures/sched/NAME parsed (NULL, with a failed check, when it cannot be read or parsed). */
static cJSON *load_fixture(const char *name)
{
    char path[4096];
    const char *src = getenv("SDGEN_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/fixtures/sched/%s", src && *src ? src : "..", name);
    char *txt = sd_test_read_text(path);
    CHECK(txt != NULL, "cannot read %s", path);
    if (!txt) return NULL;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    CHECK(root != NULL, "%s does not parse", path);
    return root;
}

static void test_fixture(void)
{
    cJSON *root = load_fixture("sched_ref.json");
    if (!root) return;

    /* schedules: timesteps / sigmas / init_noise_sigma for sampler × schedule × spacing × n */
    int n_sched = 0, n_sched_exact = 0;
    double worst_t = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "schedules")) {
        sd_sampler smp;
        sd_schedule sch;
        sd_spacing sp;
        int ok = sd_sampler_parse(jstr(e, "sampler"), &smp, NULL) == 0 && sd_schedule_parse(jstr(e, "schedule"), &sch) == 0 &&
                 sd_spacing_parse(jstr(e, "spacing"), &sp) == 0;
        CHECK(ok, "fixture entry names");
        if (!ok) continue;
        int steps = (int)jnum(e, "steps", 0);
        sd_sched s;
        sd_err err;
        if (sd_sched_init(&s, smp, sch, sp, SD_PRED_EPS, steps, NULL, &err)) {
            CHECK(0, "fixture %s/%s/%s n=%d: %s", jstr(e, "sampler"), jstr(e, "schedule"), jstr(e, "spacing"), steps, err.msg);
            continue;
        }
        static float t[SD_SCHED_MAX_STEPS + 1], sg[SD_SCHED_MAX_STEPS + 2];
        int nt, ns;
        read_floats(cJSON_GetObjectItemCaseSensitive(e, "timesteps"), t, SD_SCHED_MAX_STEPS + 1, &nt);
        read_floats(cJSON_GetObjectItemCaseSensitive(e, "sigmas"), sg, SD_SCHED_MAX_STEPS + 2, &ns);
        int exact = nt == s.n_steps && count_diff(t, s.timesteps, nt) == 0;
        if (ns) exact = exact && ns == s.n_steps + 1 && count_diff(sg, s.sigmas, ns) == 0;
        exact = exact && s.init_noise_sigma == (float)jnum(e, "init_noise_sigma", 0);
        n_sched++;
        n_sched_exact += exact;
        if (!exact) {
            double mt = 0, ms = 0;
            for (int i = 0; i < nt && i < s.n_steps; i++) if (fabs(t[i] - s.timesteps[i]) > mt) mt = fabs(t[i] - s.timesteps[i]);
            for (int i = 0; i < ns && i <= s.n_steps; i++)
                if (fabs(sg[i] - s.sigmas[i]) / (sg[i] > 1 ? sg[i] : 1) > ms) ms = fabs(sg[i] - s.sigmas[i]) / (sg[i] > 1 ? sg[i] : 1);
            if (mt > worst_t) worst_t = mt;
            CHECK(0, "fixture %s/%s/%s n=%d: timesteps/sigmas differ (max |dt| %.3g, max rel dsigma %.3g, n %d/%d, "
                     "init_noise_sigma %.9g vs %.9g)",
                  jstr(e, "sampler"), jstr(e, "schedule"), jstr(e, "spacing"), steps, mt, ms, nt, s.n_steps,
                  s.init_noise_sigma, jnum(e, "init_noise_sigma", 0));
        }
        sd_sched_free(&s);
    }
    printf("fixture schedules: %d/%d bit-exact (max |dt| elsewhere %.3g)\n", n_sched_exact, n_sched, worst_t);
    CHECK(n_sched > 0, "fixture has no schedules");

    /* step runs: whole trajectories in float32 from the fixture's start latent */
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "runs")) {
        sd_sampler smp;
        sd_schedule sch;
        sd_spacing sp;
        sd_sampler_parse(jstr(e, "sampler"), &smp, NULL);
        sd_schedule_parse(jstr(e, "schedule"), &sch);
        sd_spacing_parse(jstr(e, "spacing"), &sp);
        sd_prediction pred = !strcmp(jstr(e, "prediction"), "v") ? SD_PRED_V : SD_PRED_EPS;
        int steps = (int)jnum(e, "steps", 0);
        double strength = jnum(e, "strength", -1);
        sd_sched s;
        sd_err err;
        if (sd_sched_init(&s, smp, sch, sp, pred, steps, NULL, &err)) {
            CHECK(0, "fixture run %s: %s", jstr(e, "name"), err.msg);
            continue;
        }
        if (strength > 0) sd_sched_set_strength(&s, strength, &err);
        const cJSON *xs = cJSON_GetObjectItemCaseSensitive(e, "x");
        const cJSON *gs = cJSON_GetObjectItemCaseSensitive(e, "g");
        const cJSON *zs = cJSON_GetObjectItemCaseSensitive(e, "z");
        int nsteps = cJSON_GetArraySize(gs);
        CHECK(nsteps == s.n_steps, "fixture run %s: %d steps vs %d", jstr(e, "name"), nsteps, s.n_steps);
        float x[256], ref[256], g[256], z[256];
        int n, ng, nz;
        read_floats(cJSON_GetArrayItem(xs, 0), x, 256, &n);
        if (strength > 0) {
            /* img2img start latent: add_noise(enc, noise) at the first step run (docs/SEMANTICS.md §9.4). */
            float enc[256], nz0[256], got[256];
            int ne, nn;
            read_floats(cJSON_GetObjectItemCaseSensitive(e, "enc"), enc, 256, &ne);
            read_floats(cJSON_GetObjectItemCaseSensitive(e, "noise"), nz0, 256, &nn);
            sd_sched_add_noise(&s, enc, nz0, got, ne);
            CHECK(ne == n && nn == n && count_diff(got, x, n) == 0, "fixture run %s: add_noise not bit-exact",
                  jstr(e, "name"));
        }
        double worst = 0;
        int64_t exact = 0, total = 0;
        for (int i = 0; i < nsteps && nsteps == s.n_steps; i++) {
            read_floats(cJSON_GetArrayItem(gs, i), g, 256, &ng);
            read_floats(cJSON_GetArrayItem(zs, i), z, 256, &nz);
            CHECK(sd_sched_needs_noise(&s, i) == (nz > 0), "fixture run %s step %d needs_noise", jstr(e, "name"), i);
            /* Each step starts from the reference latent, as for the golden cases. */
            int nr;
            if (i > 0) read_floats(cJSON_GetArrayItem(xs, i), x, 256, &nr);
            if (sd_sched_step(&s, i, x, g, nz ? z : NULL, n, &err)) { CHECK(0, "run %s: %s", jstr(e, "name"), err.msg); break; }
            read_floats(cJSON_GetArrayItem(xs, i + 1), ref, 256, &nr);
            double maxref = 0, maxabs = 0;
            for (int j = 0; j < n; j++) {
                if (fabs(ref[j]) > maxref) maxref = fabs(ref[j]);
                if (fabs((double)x[j] - ref[j]) > maxabs) maxabs = fabs((double)x[j] - ref[j]);
            }
            double r = maxabs / (maxref > 1 ? maxref : 1);
            if (r > worst) worst = r;
            exact += n - count_diff(x, ref, n);
            total += n;
        }
        char what[256];
        snprintf(what, sizeof what, "fixture run %s: %lld/%lld bit-exact, worst err/max(1,max|ref|) %.3g", jstr(e, "name"),
                 (long long)exact, (long long)total, worst);
        /* Every operation follows the reference's float32 order (with SLEEF's log/exp), so the
         * whole trajectory must be bit-exact, not just close. */
        CHECK(exact == total, "%s", what);
        if (exact == total) printf("ok   %s\n", what);
        sd_sched_free(&s);
    }
    cJSON_Delete(root);
}

/* ---- fixture: Karras σ of heun, lms, dpm2, dpm2_a, unipc (scripts/make-karras-fixtures.py) ---- */

/* JSON numbers, null read as NaN (the NaN ends of the KDPM2 classes' lists). */
static int read_floats_nan(const cJSON *arr, float *out, int cap)
{
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) if (i < cap) out[i++] = cJSON_IsNumber(v) ? (float)v->valuedouble : NAN;
    return i;
}

/* Both NaN, or |a − b| ≤ tol·max(1, |b|) (tol 0: bit-exact). */
static int same_or_close(float a, float b, double tol)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (tol == 0) return bits_equal(a, b);
    return fabs((double)a - b) <= tol * fmax(1.0, fabs(b));
}

/* Compares n values; returns the count outside tol and the worst relative difference. */
static int cmp_list(const float *got, const float *want, int n, double tol, double *worst)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (!same_or_close(got[i], want[i], tol)) bad++;
        if (!isnan(got[i]) && !isnan(want[i])) {
            double d = fabs((double)got[i] - want[i]) / fmax(1.0, fabs(want[i]));
            if (d > *worst) *worst = d;
        }
    }
    return bad;
}

/* The σ lists, per-call timesteps, σ_up/σ_down and init_noise_sigma come from float64 set-up and
 * float32 IEEE arithmetic in diffusers: bit-exact. Only the KDPM2 classes' interpolated σ̂ (torch's
 * float32 log/exp, which numpy's differ from by an ulp) and the timesteps derived from them get a
 * tolerance: 2e-6 relative for σ̂, 1e-3 for its (fractional) timestep. */
static void test_karras_fixture(void)
{
    cJSON *root = load_fixture("karras_ref.json");
    if (!root) return;
    int count = 0, seen[SD_SAMPLER_COUNT] = {0};
    double worst_interp = 0, worst_tinterp = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "schedules")) {
        sd_sampler smp;
        sd_spacing sp;
        const char *name = jstr(e, "sampler");
        int steps = (int)jnum(e, "steps", 0);
        if (sd_sampler_parse(name, &smp, NULL) || sd_spacing_parse(jstr(e, "spacing"), &sp)) {
            CHECK(0, "karras fixture: names %s/%s", name, jstr(e, "spacing"));
            continue;
        }
        char what[160];
        snprintf(what, sizeof what, "karras %s/%s n=%d", name, jstr(e, "spacing"), steps);
        static sd_sched s;
        sd_err err = {0};
        if (sd_sched_init(&s, smp, SD_SCHEDULE_KARRAS, sp, SD_PRED_EPS, steps, NULL, &err)) {
            CHECK(0, "%s: %s", what, err.msg);
            continue;
        }
        count++;
        seen[smp]++;
        static float want[SD_SCHED_MAX_SIGMAS];
        const int dpm2 = smp == SD_SAMPLER_DPM2 || smp == SD_SAMPLER_DPM2_A;
        /* per-call timesteps; the odd calls of dpm2/dpm2_a run at the interpolated σ̂ */
        int nt = read_floats_nan(cJSON_GetObjectItemCaseSensitive(e, "timesteps"), want, SD_SCHED_MAX_SIGMAS);
        CHECK(nt == s.n_calls_all, "%s: %d timesteps, sdgen has %d", what, nt, s.n_calls_all);
        for (int i = 0; i < nt && nt == s.n_calls_all; i++) {
            int interp = dpm2 && (i & 1);
            double d = fabs((double)s.timesteps_all[i] - want[i]);
            if (interp && d > worst_tinterp) worst_tinterp = d;
            CHECK(interp ? d <= 1e-3 : bits_equal(s.timesteps_all[i], want[i]), "%s: timestep %d = %.9g, want %.9g", what,
                  i, s.timesteps_all[i], want[i]);
        }
        double w = 0;
        int ns = read_floats_nan(cJSON_GetObjectItemCaseSensitive(e, "sigmas"), want, SD_SCHED_MAX_SIGMAS);
        CHECK(ns == s.n_sigmas_all, "%s: %d sigmas, sdgen has %d", what, ns, s.n_sigmas_all);
        if (ns == s.n_sigmas_all) {
            int bad = cmp_list(s.sigmas_all, want, ns, 0, &w);
            CHECK(bad == 0, "%s: %d of %d sigmas not bit-exact (worst rel %.3g; first σ %.9g want %.9g)", what, bad, ns, w,
                  s.sigmas_all[0], want[0]);
        }
        if (dpm2) {
            int ni = read_floats_nan(cJSON_GetObjectItemCaseSensitive(e, "sigmas_interpol"), want, SD_SCHED_MAX_SIGMAS);
            CHECK(ni == s.n_sigmas_all && cmp_list(s.interp_all, want, ni, 2e-6, &worst_interp) == 0,
                  "%s: interpolated sigmas differ (%d values, worst rel %.3g)", what, ni, worst_interp);
        }
        if (smp == SD_SAMPLER_DPM2_A) {
            const char *keys[2] = {"sigmas_up", "sigmas_down"};
            const float *got[2] = {s.up_all, s.down_all};
            for (int k = 0; k < 2; k++) {
                int nu = read_floats_nan(cJSON_GetObjectItemCaseSensitive(e, keys[k]), want, SD_SCHED_MAX_SIGMAS);
                double wu = 0;
                CHECK(nu == s.n_sigmas_all && cmp_list(got[k], want, nu, 0, &wu) == 0, "%s: %s not bit-exact (worst rel %.3g)",
                      what, keys[k], wu);
            }
        }
        CHECK(s.init_noise_sigma == (float)jnum(e, "init_noise_sigma", -1), "%s: init_noise_sigma %.9g want %.9g", what,
              s.init_noise_sigma, jnum(e, "init_noise_sigma", -1));
        sd_sched_free(&s);
    }
    /* unipc's repeated last σ: the last predictor step has h = 0 and returns its input unchanged; with one
     * step (no corrector) the run returns the start latent bit for bit; longer runs stay finite. */
    for (int steps = 1; steps <= 4; steps += 3) {
        static sd_sched u;
        sd_err err = {0};
        float x[16], x0[16], g[16];
        for (int j = 0; j < 16; j++) {
            x[j] = x0[j] = (float)(j - 8) * 0.37f;
            g[j] = (float)((j * 7) % 5 - 2) * 0.21f;
        }
        int ok = sd_sched_init(&u, SD_SAMPLER_UNIPC, SD_SCHEDULE_KARRAS, SD_SPACING_DEFAULT, SD_PRED_EPS, steps, NULL, &err) == 0;
        for (int i = 0; ok && i < u.n_calls; i++) ok = sd_sched_step(&u, i, x, g, NULL, 16, &err) == 0;
        CHECK(ok, "unipc karras %d steps: %s", steps, err.msg);
        int finite = 1;
        for (int j = 0; j < 16; j++) finite = finite && isfinite(x[j]);
        CHECK(finite, "unipc karras %d steps: non-finite latent", steps);
        if (steps == 1) CHECK(count_diff(x, x0, 16) == 0, "unipc karras 1 step: the h = 0 step changed the latent");
        sd_sched_free(&u);
    }
    const sd_sampler need[] = {SD_SAMPLER_HEUN, SD_SAMPLER_LMS, SD_SAMPLER_DPM2, SD_SAMPLER_DPM2_A, SD_SAMPLER_UNIPC};
    for (size_t k = 0; k < sizeof need / sizeof *need; k++)
        CHECK(seen[need[k]] >= 5, "karras fixture: only %d schedules for %s", seen[need[k]], sd_sampler_name(need[k]));
    printf("karras fixture: %d schedules (heun, lms, dpm2, dpm2_a, unipc); interpolated σ worst rel %.3g, their "
           "timesteps worst |dt| %.3g\n",
           count, worst_interp, worst_tinterp);
    cJSON_Delete(root);
}

/* A case of the sampler set (golden README §8): the schedule (per-call timesteps, σ list, start
 * latent, the first U-Net input) and every model call's update from the reference's own input latent,
 * guided output and noise draws to its step_latents entry. The reference re-derives each call to ≤ 1e-6
 * relative in float64; here float32 against float32. */
static double g_worst_call = 0;

static int load_s(sd_npy *a, const char *dir, const char *name)
{
    char rel[512];
    snprintf(rel, sizeof rel, "golden/cases-samplers/%s/%s", dir, name);
    sd_err err = {0};
    if (sd_npy_read(a, sd_test_path(rel), &err)) {
        CHECK(0, "%s: %s", rel, err.msg);
        return -1;
    }
    return 0;
}

static void test_sampler_case(const char *dir)
{
    char rel[512];
    snprintf(rel, sizeof rel, "golden/cases-samplers/%s/case.json", dir);
    char *txt = sd_test_read_text(sd_test_path(rel));
    CHECK(txt != NULL, "cannot read %s", rel);
    cJSON *c = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    if (!c) { CHECK(0, "%s does not parse", rel); return; }
    sd_sampler sampler;
    sd_spacing spacing = SD_SPACING_DEFAULT;
    CHECK(sd_sampler_parse(jstr(c, "sampler"), &sampler, NULL) == 0, "%s: sampler", dir);
    if (*jstr(c, "timestep_spacing")) CHECK(sd_spacing_parse(jstr(c, "timestep_spacing"), &spacing) == 0, "%s", dir);
    sd_sched s;
    sd_err err = {0};
    int ok = sd_sched_init(&s, sampler, SD_SCHEDULE_DEFAULT, spacing, SD_PRED_EPS, (int)jnum(c, "steps", 0), NULL,
                           &err) == 0 &&
             sd_sched_set_eta(&s, jnum(c, "eta", 0), &err) == 0;
    CHECK(ok, "%s: %s", dir, err.msg);
    CHECK(!ok || s.n_calls == (int)jnum(c, "unet_calls", -1), "%s: %d model calls, case has %g", dir, s.n_calls,
          jnum(c, "unet_calls", -1));
    sd_npy ts = {0}, sg = {0}, noise = {0}, init = {0}, x = {0}, g = {0}, z = {0}, lat = {0}, u0 = {0};
    const int have_sig = s.has_sigmas;
    if (!ok || load_s(&ts, dir, "timesteps.npy") || (have_sig && load_s(&sg, dir, "sigmas.npy")) ||
        load_s(&noise, dir, "noise.npy") || load_s(&init, dir, "latents_init.npy") ||
        load_s(&x, dir, "step_sample_in.npy") || load_s(&g, dir, "step_model_output.npy") ||
        load_s(&lat, dir, "step_latents.npy") || load_s(&u0, dir, "unet0_sample.npy"))
        goto out;
    CHECK(ts.numel == s.n_calls && count_diff(s.timesteps, ts.f32, ts.numel) == 0, "%s: per-call timesteps differ", dir);
    if (ts.numel == s.n_calls && count_diff(s.timesteps, ts.f32, ts.numel) == 0)
        printf("ok   %s: %d timesteps exact (%g … %g)\n", dir, s.n_calls, s.timesteps[0], s.timesteps[s.n_calls - 1]);
    if (have_sig) {
        CHECK(sg.numel == s.n_sigmas && count_diff(s.sigmas, sg.f32, sg.numel) == 0, "%s: σ list differs (%lld vs %d)",
              dir, (long long)sg.numel, s.n_sigmas);
    }
    const int64_t n = noise.numel;
    float *buf = malloc(sizeof(float) * (size_t)n);
    if (!buf) goto out;
    sd_sched_init_latent(&s, noise.f32, buf, n);
    CHECK(count_diff(buf, init.f32, n) == 0, "%s: start latent not exact", dir);
    sd_sched_scale_input(&s, 0, x.f32, buf, n);
    CHECK(count_diff(buf, u0.f32, n) == 0, "%s: first U-Net input not exact", dir);
    int zi = 0;
    char zrel[512];
    snprintf(zrel, sizeof zrel, "golden/cases-samplers/%s/step_noise.npy", dir);
    FILE *zf = fopen(sd_test_path(zrel), "rb");
    if (zf) {
        fclose(zf);
        if (load_s(&z, dir, "step_noise.npy")) { free(buf); goto out; }
    }
    double worst = 0;
    for (int i = 0; i < s.n_calls; i++) {
        memcpy(buf, x.f32 + (int64_t)i * n, sizeof(float) * (size_t)n);
        const float *zz = NULL;
        if (sd_sched_needs_noise(&s, i)) {
            CHECK(z.f32 && (zi + 1) * n <= z.numel, "%s: call %d draws more noise than the case", dir, i);
            if (!z.f32 || (zi + 1) * n > z.numel) break;
            zz = z.f32 + (int64_t)zi++ * n;
        }
        if (sd_sched_step(&s, i, buf, g.f32 + (int64_t)i * n, zz, n, &err)) {
            CHECK(0, "%s call %d: %s", dir, i, err.msg);
            break;
        }
        const float *ref = lat.f32 + (int64_t)i * n;
        double m = 0, d = 0;
        for (int64_t j = 0; j < n; j++) {
            if (fabs(ref[j]) > m) m = fabs(ref[j]);
            if (fabs(buf[j] - ref[j]) > d) d = fabs(buf[j] - ref[j]);
        }
        if (d / fmax(1.0, m) > worst) worst = d / fmax(1.0, m);
    }
    CHECK(zi * n == (z.f32 ? z.numel : 0), "%s: %d draws, the case has %lld", dir, zi,
          (long long)(z.f32 ? z.numel / n : 0));
    CHECK(worst <= 1e-6, "%s: a model call's update differs by %.3g·max(1, max|ref|) (tolerance 1e-6)", dir, worst);
    printf("ok   %s: %d model calls from the reference inputs, worst err/max(1,max|ref|) %.3g\n", dir, s.n_calls, worst);
    if (worst > g_worst_call) g_worst_call = worst;
    free(buf);
out:
    sd_npy *all[] = {&ts, &sg, &noise, &init, &x, &g, &z, &lat, &u0};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++) sd_npy_free(all[k]);
    sd_sched_free(&s);
    cJSON_Delete(c);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void)
{
    test_examples();
    test_strength_and_errors();
    test_names();
    test_fixture();
    test_karras_fixture();
    if (sd_test_skip_shared("the golden cases' schedules and steps")) TEST_MAIN_END();

    DIR *d = opendir(sd_test_path("golden/cases"));
    CHECK(d != NULL, "cannot list golden/cases");
    if (d) {
        char *names[64];
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)) && n < 64)
            if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
        closedir(d);
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        CHECK(n >= 7, "expected at least 7 cases, found %d", n);
        for (int i = 0; i < n; i++) {
            test_case(names[i]);
            free(names[i]);
        }
    }
    printf("golden steps: worst err/max(1,max|ref|) = %.3g (tolerance 3e-5)\n", g_worst_rel);
    static const char *const samplers[] = {"p15-tiny-sd1-lcm",    "p16-tiny-sd1-euler-trailing", "p17-tiny-sd1-unipc",
                                           "p18-tiny-sd1-heun",   "p19-tiny-sd1-lms",            "p20-tiny-sd1-dpm2",
                                           "p21-tiny-sd1-dpm2-a", "p22-tiny-sd1-dpmpp-2m-sde",   "p23-tiny-sd1-ddim-eta"};
    for (size_t i = 0; i < sizeof samplers / sizeof *samplers; i++) test_sampler_case(samplers[i]);
    printf("sampler set: worst model-call err/max(1,max|ref|) = %.3g (tolerance 1e-6)\n", g_worst_call);
    TEST_MAIN_END();
}
