/* test_demo.c — the shipped demo model through the sdgen binary against the PyTorch sampler (docs/DEMO.md).
 *
 * tests/fixtures/demo/cases.txt lists prompts and seeds whose images scripts/demo-model/make_fixtures.py drew
 * with the training code's own sampler (sample.py: diffusers DDIM semantics, PyTorch CPU generator noise).
 * Here the binary draws them with no --model (the default-model path a newcomer uses), 20 DDIM steps, CFG 7.5,
 * 64x64, and at least 99% of the pixel values must agree within +-2 (the two are independent
 * implementations of the same computation). The fixtures' first line names the model file's SHA-256: a new
 * export without new fixtures fails here with that message. */
#include "golden_cli.h"

#include "sdgen/image.h"
#include "sdgen/hash.h"

static void check_case(const char *sdgen, const char *dir, long seed, const char *file, const char *prompt, int idx)
{
    char ref_path[4096], out_path[4096], seed_s[32];
    snprintf(ref_path, sizeof ref_path, "%s/%s", dir, file);
    snprintf(out_path, sizeof out_path, "%s/demo-%d.png", sd_test_tmp(), idx);
    snprintf(seed_s, sizeof seed_s, "%ld", seed);
    remove(out_path);
    char *argv[] = {(char *)sdgen, "-p", (char *)prompt, "--seed", seed_s, "--steps", "20", "--sampler", "ddim",
                    "--cfg-scale", "7.5", "-W", "64", "-H", "64", "-q", "-o", out_path, NULL};
    int rc = run_argv(argv);
    CHECK(rc == 0, "sdgen exit %d for \"%s\"", rc, prompt);
    if (rc) return;
    sd_image a, b;
    sd_err err;
    if (sd_image_load(&a, out_path, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    if (sd_image_load(&b, ref_path, &err)) {
        CHECK(0, "%s", err.msg);
        sd_image_free(&a);
        return;
    }
    CHECK(a.w == 64 && a.h == 64 && b.w == 64 && b.h == 64, "sizes %dx%d / %dx%d", a.w, a.h, b.w, b.h);
    if (a.w == b.w && a.h == b.h) {
        const long n = (long)a.w * a.h * 3;
        long within = 0;
        int maxd = 0;
        for (long i = 0; i < n; i++) {
            int d = abs((int)a.rgb[i] - (int)b.rgb[i]);
            if (d <= 2) within++;
            if (d > maxd) maxd = d;
        }
        printf("---- \"%s\" seed %ld: %ld of %ld values within +-2 (%.3f%%), max diff %d\n", prompt, seed, within, n,
               100.0 * (double)within / (double)n, maxd);
        CHECK((double)within >= 0.99 * (double)n, "\"%s\": only %.3f%% of values within +-2 (max diff %d)", prompt,
              100.0 * (double)within / (double)n, maxd);
    }
    sd_image_free(&a);
    sd_image_free(&b);
}

int main(void)
{
    const char *sdgen = getenv("SDGEN"), *src = getenv("SDGEN_SOURCE_DIR");
    CHECK(sdgen && *sdgen && src && *src, "SDGEN and SDGEN_SOURCE_DIR must be set");
    if (!sdgen || !src) TEST_MAIN_END();
    unsetenv("SDGEN_MODEL");
    unsetenv("SDGEN_VOCAB");
    char dir[4096], list[4200], model[4200];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/demo", src);
    snprintf(list, sizeof list, "%s/cases.txt", dir);
    snprintf(model, sizeof model, "%s/models/demo.safetensors", src);
    char *text = sd_test_read_text(list);
    CHECK(text != NULL, "cannot read %s", list);
    if (!text) TEST_MAIN_END();
    /* the fixtures belong to this model file */
    char hex[65] = "";
    uint8_t digest[32];
    sd_err err;
    int hrc = sd_sha256_file(model, digest, &err);
    CHECK(hrc == 0, "hash %s: %s", model, err.msg);
    if (hrc == 0) sd_sha256_hex(digest, hex);
    CHECK(strstr(text, hex) != NULL,
          "tests/fixtures/demo was made from another models/demo.safetensors (sha256 %s is not in cases.txt): rerun "
          "scripts/demo-model/make_fixtures.py", hex);
    int idx = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || !line[0]) continue;
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        CHECK(t1 && t2, "bad line in cases.txt: %s", line);
        if (!t1 || !t2) continue;
        *t1 = *t2 = 0;
        check_case(sdgen, dir, strtol(line, NULL, 10), t1 + 1, t2 + 1, idx++);
    }
    CHECK(idx >= 3, "expected at least 3 cases, found %d", idx);
    free(text);
    TEST_MAIN_END();
}
