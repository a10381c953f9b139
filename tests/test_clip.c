/* test_clip.c — text encoders against the golden cases (docs/SEMANTICS.md §4, tolerance §14.3: 2e-5 max abs).
 *
 * For every case under golden/cases/ whose model is stored (the gen:sd15 case p5 is checked by
 * test_clip_full.c), tokens_cond/tokens_uncond → text_emb_cond/text_emb_uncond, encoded as one
 * batch of 2. Also: out-of-vocabulary ids are refused, clip_skip semantics (A1111) on the tiny
 * models: SD 1.x clip_skip=layers+1 is refused, SD 2.x ignores clip_skip.
 */
#include <cjson/cJSON.h>
#include <dirent.h>

#include "sdgen/clip.h"
#include "sdgen/model.h"
#include "sdgen/npy.h"
#include "sdgen/ops.h"
#include "testutil.h"

/* The "model" entry of case.json, or "" when unreadable. */
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

static int load_tokens(const char *dir, const char *name, int32_t *ids)
{
    char p[4096];
    sd_npy a;
    sd_err err;
    snprintf(p, sizeof p, "%s/%s.npy", dir, name);
    if (sd_npy_read(&a, p, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    int ok = a.numel == 77;
    for (int i = 0; ok && i < 77; i++) ids[i] = (int32_t)a.i64[i];
    sd_npy_free(&a);
    return ok ? 0 : -1;
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
    int32_t ids[2 * 77];
    if (load_tokens(dir, "tokens_cond", ids) || load_tokens(dir, "tokens_uncond", ids + 77)) {
        CHECK(0, "%s: cannot read tokens", name);
        sd_model_close(&m);
        return;
    }
    sd_arena a;
    sd_arena_init(&a, 0, 0);
    sd_tensor emb;
    double t0 = sd_now();
    int rc = sd_text_encode(&m, &m.text[0], &a, ids, 2, 1, &emb, NULL, &err);
    double dt = sd_now() - t0;
    CHECK(rc == 0, "%s: encode: %s", name, err.msg);
    if (rc == 0) {
        printf("---- %s (%s, width %d, %d/%d layers): encode of 2 sequences %.1f ms\n", name, model_rel,
               m.text[0].width, m.text[0].layers_used, m.text[0].layers, dt * 1e3);
        const char *want[2] = {"text_emb_cond", "text_emb_uncond"};
        for (int s = 0; s < 2; s++) {
            char p[4096], what[256];
            sd_npy r;
            snprintf(p, sizeof p, "%s/%s.npy", dir, want[s]);
            if (sd_npy_read(&r, p, &err)) {
                CHECK(0, "%s", err.msg);
                continue;
            }
            CHECK(r.numel == 77 * emb.ne[2], "%s: %s has %lld values, output has %lld", name, want[s],
                  (long long)r.numel, (long long)(77 * emb.ne[2]));
            snprintf(what, sizeof what, "%s %s", name, want[s]);
            if (r.numel == 77 * emb.ne[2]) CHECK_CLOSE(what, emb.data + s * 77 * emb.ne[2], r.f32, r.numel, 2e-5);
            sd_npy_free(&r);
        }

        /* clip_skip, A1111 semantics. */
        sd_arena_reset(&a);
        if (m.text[0].kind == SD_TEXT_OPENCLIP) {
            sd_tensor e2;
            int rc2 = sd_text_encode(&m, &m.text[0], &a, ids, 2, 2, &e2, NULL, &err);
            CHECK(rc2 == 0, "%s: clip_skip 2: %s", name, err.msg);
            /* The arena was reset: re-encode the default to compare. */
            sd_tensor e1;
            int rc1 = sd_text_encode(&m, &m.text[0], &a, ids, 2, 1, &e1, NULL, &err);
            CHECK(rc1 == 0 && rc2 == 0 && !memcmp(e1.data, e2.data, (size_t)sd_numel(e1) * 4),
                  "%s: OpenCLIP must ignore clip_skip (A1111)", name);
        } else {
            sd_tensor e2;
            int rc2 = sd_text_encode(&m, &m.text[0], &a, ids, 1, m.text[0].layers + 1, &e2, NULL, &err);
            CHECK(rc2 != 0, "%s: clip_skip %d > layers must be refused", name, m.text[0].layers + 1);
            rc2 = sd_text_encode(&m, &m.text[0], &a, ids, 1, m.text[0].layers, &e2, NULL, &err);
            CHECK(rc2 == 0, "%s: clip_skip %d (one layer): %s", name, m.text[0].layers, err.msg);
        }
        /* Token ids are bounded by the vocabulary. */
        int32_t bad[77];
        memcpy(bad, ids, sizeof bad);
        bad[5] = m.text[0].vocab;
        sd_tensor e3;
        int rc3 = sd_text_encode(&m, &m.text[0], &a, bad, 1, 1, &e3, NULL, &err);
        CHECK(rc3 != 0 && strstr(err.msg, "vocabulary"), "%s: id %d must be refused (got rc %d: %s)", name,
              m.text[0].vocab, rc3, rc3 ? err.msg : "");
        bad[5] = -1;
        rc3 = sd_text_encode(&m, &m.text[0], &a, bad, 1, 1, &e3, NULL, &err);
        CHECK(rc3 != 0, "%s: id -1 must be refused", name);
    }
    sd_arena_free(&a);
    sd_model_close(&m);
}

int main(void)
{
    sd_test_require_shared();
    const char *cases = sd_test_path("golden/cases");
    char root[4096];
    snprintf(root, sizeof root, "%s", cases);
    DIR *d = opendir(root);
    CHECK(d != NULL, "cannot open %s", root);
    if (!d) TEST_MAIN_END();
    char names[64][256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.') snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    /* Sorted, for a stable log. */
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
