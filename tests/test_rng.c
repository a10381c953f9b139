/* test_rng.c — sd_rng against golden/rng/randn.json and the noise tensors of every golden case.
 *
 * randn.json (reference draws of docs/SEMANTICS.md §8.1–§8.2): one generator per seed, its draws in order; accepted
 * tolerance 1e-6, and we count how many values are bit-exact (all of torch_cpu must be).
 * Cases (docs/SEMANTICS.md §8.3): noise, step_noise and vae_sample_noise reproduced from
 * the case's seed in the reference order, bit for bit (tolerance 0).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <string.h>

#include "sdgen/npy.h"
#include "sdgen/rng.h"
#include "testutil.h"

/* Seeds are JSON numbers; cJSON keeps them as doubles, exact below 2^53 (the largest seed in
 * randn.json is 2^32 + 1). */
static uint64_t seed_of(const cJSON *entry)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(entry, "seed");
    CHECK(cJSON_IsNumber(s) && s->valuedouble >= 0 && s->valuedouble < 9007199254740992.0, "bad seed");
    return cJSON_IsNumber(s) && s->valuedouble >= 0 ? (uint64_t)s->valuedouble : 0;
}

static int bits_equal(float a, float b) { return memcmp(&a, &b, 4) == 0; }

static void check_group(const cJSON *root, const char *group, int kind, long *n_total, long *n_exact,
                        double *max_err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, group);
    CHECK(cJSON_IsArray(arr), "%s missing", group);
    const cJSON *entry;
    cJSON_ArrayForEach(entry, arr) {
        uint64_t seed = seed_of(entry);
        sd_rng r;
        sd_rng_init(&r, kind, seed);
        const cJSON *draw;
        int d = 0;
        cJSON_ArrayForEach(draw, cJSON_GetObjectItemCaseSensitive(entry, "draws")) {
            const cJSON *vals = cJSON_GetObjectItemCaseSensitive(draw, "values");
            int n = cJSON_GetArraySize(vals);
            float *got = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
            float *want = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
            sd_rng_randn(&r, got, n);
            int i = 0;
            const cJSON *v;
            cJSON_ArrayForEach(v, vals) want[i++] = (float)v->valuedouble;
            char what[128];
            snprintf(what, sizeof what, "%s seed %llu draw %d (n=%d)", group, (unsigned long long)seed, d, n);
            CHECK_CLOSE(what, got, want, n, 1e-6);
            for (i = 0; i < n; i++) {
                double e = fabs((double)got[i] - (double)want[i]);
                if (e > *max_err) *max_err = e;
                *n_exact += bits_equal(got[i], want[i]);
            }
            *n_total += n;
            free(got);
            free(want);
            d++;
        }
    }
}

static void test_randn_json(void)
{
    char *txt = sd_test_read_text(sd_test_path("golden/rng/randn.json"));
    CHECK(txt != NULL, "cannot read randn.json");
    if (!txt) return;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    CHECK(root != NULL, "randn.json does not parse");
    if (!root) return;

    long tot = 0, exact = 0;
    double maxe = 0;
    check_group(root, "torch_cpu", SD_RNG_CPU, &tot, &exact, &maxe);
    printf("torch_cpu: %ld/%ld values bit-exact, max abs error %.3g\n", exact, tot, maxe);
    CHECK(exact == tot, "torch_cpu: %ld of %ld values not bit-exact", tot - exact, tot);

    tot = exact = 0;
    maxe = 0;
    check_group(root, "philox_cuda", SD_RNG_CUDA, &tot, &exact, &maxe);
    printf("philox_cuda: %ld/%ld values bit-exact, max abs error %.3g\n", exact, tot, maxe);

    /* The expected output published with A1111's re-implementation (seed 0, 3×4). */
    const cJSON *pub = cJSON_GetObjectItemCaseSensitive(root, "philox_published");
    const cJSON *vals = cJSON_GetObjectItemCaseSensitive(pub, "values");
    int n = cJSON_GetArraySize(vals);
    CHECK(n == 12, "philox_published has %d values", n);
    if (n == 12) {
        float got[12], want[12];
        sd_rng r;
        sd_rng_init(&r, SD_RNG_CUDA, seed_of(pub));
        sd_rng_randn(&r, got, 12);
        int i = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, vals) want[i++] = (float)v->valuedouble;
        CHECK_CLOSE("philox_published seed 0 (3x4)", got, want, 12, 1e-6);
    }
    cJSON_Delete(root);
}

/* Raw mt19937 outputs: the C++ standard's check value (10000th output of the default seed
 * 5489 is 4123659995) and the first output for that seed. */
static void test_mt19937(void)
{
    sd_rng r;
    sd_rng_init(&r, SD_RNG_CPU, 5489);
    uint32_t first = sd_rng_next_u32(&r), v = first;
    for (int i = 1; i < 10000; i++) v = sd_rng_next_u32(&r);
    CHECK(first == 3499211612u, "mt19937 first output %u", first);
    CHECK(v == 4123659995u, "mt19937 10000th output %u", v);
    /* Seeds are taken mod 2^32 (PyTorch's mt19937 init_with_uint32). */
    sd_rng a, b;
    sd_rng_init(&a, SD_RNG_CPU, UINT64_C(4294967297));
    sd_rng_init(&b, SD_RNG_CPU, 1);
    float xa[32], xb[32];
    sd_rng_randn(&a, xa, 32);
    sd_rng_randn(&b, xb, 32);
    CHECK(memcmp(xa, xb, sizeof xa) == 0, "seed 2^32+1 differs from seed 1 on the CPU generator");
    /* …but not on Philox, whose key holds the high word. */
    sd_rng_init(&a, SD_RNG_CUDA, UINT64_C(4294967297));
    sd_rng_init(&b, SD_RNG_CUDA, 1);
    sd_rng_randn(&a, xa, 32);
    sd_rng_randn(&b, xb, 32);
    CHECK(memcmp(xa, xb, sizeof xa) != 0, "philox ignores the seed's high word");
    int kind = -1;
    CHECK(sd_rng_kind_parse("cpu", &kind) == 0 && kind == SD_RNG_CPU, "parse cpu");
    CHECK(sd_rng_kind_parse("CUDA", &kind) == 0 && kind == SD_RNG_CUDA, "parse cuda");
    CHECK(sd_rng_kind_parse("gpu", &kind) == 0 && kind == SD_RNG_CUDA, "parse gpu");
    CHECK(sd_rng_kind_parse("tpu", &kind) != 0, "parse tpu must fail");
    CHECK(strcmp(sd_rng_kind_name(SD_RNG_CUDA), "cuda") == 0, "name cuda");
}

/* Compare n floats bit for bit; report the count of differing values. */
static void check_exact(const char *what, const float *got, const float *want, int64_t n)
{
    int64_t diff = 0;
    double maxe = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!bits_equal(got[i], want[i])) diff++;
        double e = fabs((double)got[i] - (double)want[i]);
        if (e > maxe) maxe = e;
    }
    CHECK(diff == 0, "%s: %lld of %lld values differ (max abs %.3g)", what, (long long)diff, (long long)n, maxe);
    if (diff == 0) printf("ok   %s: %lld values bit-exact\n", what, (long long)n);
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

static void test_case_noise(const char *dir)
{
    char rel[512];
    snprintf(rel, sizeof rel, "golden/cases/%s/case.json", dir);
    char *txt = sd_test_read_text(sd_test_path(rel));
    CHECK(txt != NULL, "cannot read %s", rel);
    if (!txt) return;
    cJSON *c = cJSON_Parse(txt);
    free(txt);
    CHECK(c != NULL, "%s does not parse", rel);
    if (!c) return;
    uint64_t seed = seed_of(c);
    const cJSON *rngk = cJSON_GetObjectItemCaseSensitive(c, "rng");
    int kind = SD_RNG_CPU;
    if (cJSON_IsString(rngk)) CHECK(sd_rng_kind_parse(rngk->valuestring, &kind) == 0, "%s: rng", dir);
    int img2img = cJSON_GetObjectItemCaseSensitive(c, "init_image") != NULL;

    sd_rng r;
    sd_rng_init(&r, kind, seed);
    sd_npy a;
    char what[256];
    if (img2img) {
        /* docs/SEMANTICS.md §8.3: draw 1 = the VAE posterior sample ε, draw 2 = the add_noise noise. */
        CHECK(load(&a, dir, "vae_sample_noise.npy") == 0, "%s: vae_sample_noise.npy", dir);
        float *got = malloc(sizeof(float) * (size_t)a.numel);
        sd_rng_randn(&r, got, a.numel);
        snprintf(what, sizeof what, "%s vae_sample_noise", dir);
        check_exact(what, got, a.f32, a.numel);
        free(got);
        sd_npy_free(&a);
    }
    CHECK(load(&a, dir, "noise.npy") == 0, "%s: noise.npy", dir);
    int64_t lat = a.numel;
    float *got = malloc(sizeof(float) * (size_t)lat);
    sd_rng_randn(&r, got, lat);
    snprintf(what, sizeof what, "%s noise", dir);
    check_exact(what, got, a.f32, lat);
    sd_npy_free(&a);
    /* step_noise exists for the samplers that draw during steps (docs/SEMANTICS.md §6.7: ddpm when t > 0, euler and
     * euler_a every step); the cases that have it are euler / euler_a, one draw per step. */
    if (load(&a, dir, "step_noise.npy") == 0) {
        int64_t steps = a.shape[0];
        CHECK(steps * lat == a.numel, "%s: step_noise shape", dir);
        for (int64_t i = 0; i < steps && steps * lat == a.numel; i++) {
            sd_rng_randn(&r, got, lat);
            snprintf(what, sizeof what, "%s step_noise[%lld]", dir, (long long)i);
            check_exact(what, got, a.f32 + i * lat, lat);
        }
        sd_npy_free(&a);
    }
    free(got);
    cJSON_Delete(c);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void)
{
    test_mt19937();
    if (sd_test_skip_shared("reference draws (golden/rng, golden/cases)")) TEST_MAIN_END();
    test_randn_json();

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
            test_case_noise(names[i]);
            free(names[i]);
        }
    }
    TEST_MAIN_END();
}
