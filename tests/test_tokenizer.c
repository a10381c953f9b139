/* test_tokenizer.c — the CLIP tokenizer against the reference ids (docs/SEMANTICS.md §2).
 *
 * 1. every case of golden/tokenizer/cases.json (sd1, sd2, sd1_unpadded, sd2_unpadded), exact, with the
 *    vocabulary loaded in each form: the clip/ folder, bpe_simple_vocab_16e6.txt.gz, vocab.json,
 *    merges.txt (partner found beside it), the tiny-cfg diffusers tokenizer/ folder, and the merges
 *    text held in memory (CLIP construction);
 * 2. tokens_cond / tokens_uncond of every golden/cases/<case>/ (family from case.json), exact;
 * 3. Unicode prompts, expected ids from scripts/clip_tok_ref.py (a pure-Python re-implementation of
 *    transformers' slow CLIPTokenizer without ftfy, itself checked against cases.json: transformers
 *    is not installed here);
 * 4. a small in-memory merges list (demo-model form), vocabulary errors, search-order errors.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>

#include "sdgen/npy.h"
#include "sdgen/tokenizer.h"
#include "testutil.h"

static int ids_equal(const int32_t *got, int ng, const cJSON *want, char *why, size_t whysz)
{
    int nw = cJSON_GetArraySize(want);
    if (nw != ng) { snprintf(why, whysz, "length %d, want %d", ng, nw); return 0; }
    int i = 0;
    for (const cJSON *e = want->child; e; e = e->next, i++)
        if (got[i] != (int32_t)e->valuedouble) {
            snprintf(why, whysz, "at %d: got %d want %d", i, got[i], (int)e->valuedouble);
            return 0;
        }
    return 1;
}

static void check_cases(sd_tokenizer *t, const cJSON *cases, const char *form)
{
    int bad = 0, n = 0;
    for (const cJSON *c = cases->child; c; c = c->next) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        for (int fam = 0; fam < 2; fam++) {
            int pad = fam ? SD_TOK_SD2_PAD : SD_TOK_SD1_PAD;
            char why[128];
            sd_err err;
            int32_t ids[SD_TOK_CONTEXT];
            int nt, tr;
            int rc = sd_tokenize_77(t, prompt, pad, ids, &nt, &tr, &err);
            CHECK(rc == 0, "%s: tokenize failed: %s", form, err.msg);
            int ok = ids_equal(ids, SD_TOK_CONTEXT, cJSON_GetObjectItem(c, fam ? "sd2" : "sd1"), why, sizeof why);
            CHECK(ok, "%s %s %s: %s", form, fam ? "sd2" : "sd1", prompt, why);
            CHECK(nt == cJSON_GetObjectItem(c, "n_tokens")->valueint || fam, "%s: n_tokens %d for %s", form, nt, prompt);
            CHECK(tr == cJSON_IsTrue(cJSON_GetObjectItem(c, "truncated")), "%s: truncated flag for %s", form, prompt);
            bad += !ok;
            sd_tokens tk = {0};
            rc = sd_tokenize(t, prompt, pad, &tk, &err);
            int32_t *full = malloc(((size_t)tk.n + 2) * sizeof *full);
            full[0] = sd_tokenizer_bos(t);
            for (int i = 0; i < tk.n; i++) full[1 + i] = tk.ids[i];
            full[tk.n + 1] = sd_tokenizer_eos(t);
            ok = rc == 0 && ids_equal(full, tk.n + 2, cJSON_GetObjectItem(c, fam ? "sd2_unpadded" : "sd1_unpadded"), why, sizeof why);
            CHECK(ok, "%s %s_unpadded %s: %s", form, fam ? "sd2" : "sd1", prompt, why);
            bad += !ok;
            n += 2;
            free(full);
            sd_tokens_free(&tk);
        }
    }
    printf("%-44s %d/%d id lists exact\n", form, n - bad, n);
}

/* int32 [1,77] npy equal to sd_tokenize_77 of text */
static void check_npy(sd_tokenizer *t, const char *dir, const char *name, const char *text, int pad)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s.npy", dir, name);
    sd_npy a;
    sd_err err;
    if (sd_npy_read(&a, p, &err)) { CHECK(0, "%s", err.msg); return; }
    int32_t ids[SD_TOK_CONTEXT];
    CHECK(sd_tokenize_77(t, text, pad, ids, NULL, NULL, &err) == 0, "%s", err.msg);
    int ok = a.numel == SD_TOK_CONTEXT;
    for (int i = 0; ok && i < SD_TOK_CONTEXT; i++) ok = a.i64[i] == ids[i];
    CHECK(ok, "%s: ids differ from the golden tokens for \"%s\"", p, text);
    if (ok) printf("ok   %s\n", p);
    sd_npy_free(&a);
}

static void check_golden_cases(sd_tokenizer *t)
{
    const char *root = sd_test_path("golden/cases");
    DIR *d = opendir(root);
    CHECK(d != NULL, "cannot open %s", root);
    if (!d) return;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char dir[4096], p[4200];
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        snprintf(p, sizeof p, "%s/case.json", dir);
        char *js = sd_test_read_file(p, NULL);
        if (!js) continue;
        cJSON *j = cJSON_Parse(js);
        free(js);
        const char *fam = cJSON_GetObjectItem(j, "family")->valuestring;
        int pad = cJSON_GetObjectItem(j, "tokenizer_pad_id")->valueint;
        CHECK(pad == (strcmp(fam, "sd2") ? SD_TOK_SD1_PAD : SD_TOK_SD2_PAD), "%s: pad id %d vs family %s", dir, pad, fam);
        check_npy(t, dir, "tokens_cond", cJSON_GetObjectItem(j, "prompt")->valuestring, pad);
        check_npy(t, dir, "tokens_uncond", cJSON_GetObjectItem(j, "negative_prompt")->valuestring, pad);
        cJSON_Delete(j);
        n++;
    }
    closedir(d);
    CHECK(n >= 7, "only %d golden cases found", n);
}

static void expect(sd_tokenizer *t, const char *text, int pad, const int32_t *want, int nw)
{
    sd_tokens tk = {0};
    sd_err err;
    int rc = sd_tokenize(t, text, pad, &tk, &err);
    int ok = rc == 0 && tk.n == nw;
    for (int i = 0; ok && i < nw; i++) ok = tk.ids[i] == want[i];
    if (!ok) {
        fprintf(stderr, "got:");
        for (int i = 0; i < tk.n; i++) fprintf(stderr, " %d", tk.ids[i]);
        fprintf(stderr, "\n");
    }
    CHECK(ok, "ids of \"%s\" (pad %d)", text, pad);
    sd_tokens_free(&tk);
}
#define EXPECT(t, text, pad, ...) do { static const int32_t w_[] = {__VA_ARGS__}; expect(t, text, pad, w_, (int)(sizeof w_ / sizeof *w_)); } while (0)

static void check_unicode(sd_tokenizer *t)
{
    /* expected ids: python3 scripts/clip_tok_ref.py ../shared/clip TEXT */
    EXPECT(t, "Caf\u00e9 \u00dcn\u00efc\u00f6d\u00e9 na\u00efve", 49407, 15304, 6522, 77, 35689, 66, 7255, 67, 4166, 1097, 35689, 563);
    /* decomposed input is composed (NFC) first; U+212B ANGSTROM SIGN → Å */
    EXPECT(t, "cafe\u0301 nai\u0308ve A\u030a \u212b", 49407, 15304, 1097, 35689, 563, 127, 354, 127, 354);
    /* CJK ideographs are words of their own; kana are letters */
    EXPECT(t, "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u6771\u4eac", 49407,
           37156, 19277, 361, 34002, 508, 21575, 2429, 228, 47121, 32421, 486, 27667, 365, 21078, 361);
    EXPECT(t, "emoji \U0001F600\U0001F3A8 cat\U0001F431", 49407, 16327, 12832, 13461, 2368, 22979);
    /* Greek (final sigma), Cyrillic, German sharp s */
    EXPECT(t, "\u039f\u0394\u039f\u03a3 \u03a3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2 \u041c\u041e\u0421\u041a\u0412\u0410 Stra\u00dfe", 49407,
           138, 123, 138, 112, 138, 123, 139, 480, 139, 225, 138, 107, 139, 225, 139, 227, 139, 228, 138, 123, 139, 480,
           38018, 13506, 23669, 27152, 39813, 27080, 1894, 127, 253, 324);
    /* İ → i + U+0307, title-case digraph, ligature, letter-number Ⅻ, ½ (No), Arabic-Indic digit */
    EXPECT(t, "\u0130stanbul \u01c5emal \ufb01ne \u216b \u00bd \u0663", 49407,
           328, 16384, 11231, 131, 228, 908, 566, 171, 105, 223, 1422, 158, 227, 375, 33613, 149, 352);
    /* U+200B (Cf) dropped, NBSP / ideographic space / line separator / tab are spaces, VT dropped */
    EXPECT(t, "zero\u200bwidth\u00a0nbsp\u3000ideo\u2028line\x0bvt\tnel", 49407, 14867, 23571, 6459, 4393, 1909, 334, 1254, 776, 339, 2693);
    EXPECT(t, "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", 49407, 15197, 250, 31871, 255, 31625, 368, 169, 227, 235, 20305, 39820);
    /* canonical reordering of combining marks */
    EXPECT(t, "q\u0323\u0307 \u1e0b\u0323", 49407, 336, 136, 96, 16384, 157, 116, 491, 16384);
    EXPECT(t, "\u01c4 \u01c5 \u01c6 \u03a3\u0391\u03a3", 49407, 131, 484, 131, 484, 131, 484, 139, 225, 138, 109, 139, 480);
    /* special tokens written in the text; control characters dropped */
    EXPECT(t, "a<|endoftext|>b <|STARTOFTEXT|>", 49407, 320, 49407, 321, 49406);
    EXPECT(t, "x\x01y", 49407, 11443);
    /* SD 2.x: every "!" is the pad token, id 0 */
    EXPECT(t, "hello!world! '!' !!", 0, 3306, 0, 1002, 0, 262, 0, 262, 0, 0);
    /* invalid UTF-8 bytes are dropped (transformers never sees them: Python would not decode) */
    EXPECT(t, "ca\xfft", 49407, 2368);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f) { fputs(text, f); fclose(f); }
}

static void check_small_and_errors(void)
{
    sd_err err;
    sd_tokenizer *t = NULL;
    /* demo-model form: merges in memory, header line, CLIP construction */
    const char *m = "#version: 0.2\nh e\n\nl l\nhe ll\n"; /* blank lines are skipped */
    CHECK(sd_tokenizer_from_merges(&t, m, strlen(m), "demo", &err) == 0, "from_merges: %s", err.msg);
    if (t) {
        CHECK(sd_tokenizer_vocab_size(t) == 517, "demo vocab size %d", sd_tokenizer_vocab_size(t));
        CHECK(sd_tokenizer_bos(t) == 515 && sd_tokenizer_eos(t) == 516, "demo bos/eos %d %d", sd_tokenizer_bos(t), sd_tokenizer_eos(t));
        CHECK(sd_tokenizer_comma(t) == 256 + (',' - '!'), "demo comma %d", sd_tokenizer_comma(t));
        /* 'l' is byte symbol 108-33 = 75, "l</w>" 331, "o</w>" 256+78 = 334, he 512, hell 514 */
        EXPECT(t, "hell", 516, 512, 75, 331);
        EXPECT(t, "Hello", 516, 514, 334);
        int32_t ids[SD_TOK_CONTEXT];
        CHECK(sd_tokenize_77(t, "", 0, ids, NULL, NULL, &err) == 0 && ids[0] == 515 && ids[1] == 516 && ids[2] == 0 && ids[76] == 0,
              "demo empty prompt, SD 2.x padding");
        CHECK(!strcmp(sd_tokenizer_token_str(t, 514), "hell"), "token_str 514");
        sd_tokenizer_free(t);
    }
    /* without a header line every line is a merge */
    const char *m2 = "a b\n";
    CHECK(sd_tokenizer_from_merges(&t, m2, strlen(m2), "demo2", &err) == 0 && sd_tokenizer_vocab_size(t) == 515, "headerless merges");
    sd_tokenizer_free(t);
    t = NULL;

    const char *tmp = sd_test_tmp();
    char d[4096], p[4200], q[4200];
    snprintf(d, sizeof d, "%s/tokvocab", tmp);
    snprintf(p, sizeof p, "mkdir -p '%s'", d);
    CHECK(system(p) == 0, "mkdir");
    snprintf(p, sizeof p, "%s/vocab.json", d);
    snprintf(q, sizeof q, "%s/merges.txt", d);
    write_file(p, "[1,2,3]");
    write_file(q, "#version: 0.2\na b\n");
    CHECK(sd_tokenizer_load(&t, d, &err) != 0 && strstr(err.msg, "vocab.json") && strstr(err.msg, "JSON object"), "bad vocab.json: %s", err.msg);
    write_file(p, "{\"a\": 1, \"<|startoftext|>\": 2, \"<|endoftext|>\": 3}");
    write_file(q, "#version: 0.2\na b c\n");
    CHECK(sd_tokenizer_load(&t, p, &err) != 0 && strstr(err.msg, "merges.txt") && strstr(err.msg, "line 2"), "bad merges line: %s", err.msg);
    write_file(p, "{\"a\": -5}");
    CHECK(sd_tokenizer_load(&t, p, &err) != 0 && strstr(err.msg, "vocab.json"), "negative id: %s", err.msg);
    write_file(p, "{\"a\": 1}");
    write_file(q, "#version: 0.2\na b\n");
    CHECK(sd_tokenizer_load(&t, q, &err) != 0 && strstr(err.msg, "<|startoftext|>"), "vocab without specials: %s", err.msg);
    remove(p);
    CHECK(sd_tokenizer_load(&t, q, &err) == 0 && sd_tokenizer_vocab_size(t) == 515, "merges.txt alone: CLIP construction: %s", err.msg);
    sd_tokenizer_free(t);
    t = NULL;
    snprintf(p, sizeof p, "%s/vocab.json", d);
    write_file(p, "{}");
    remove(q);
    CHECK(sd_tokenizer_load(&t, p, &err) != 0 && strstr(err.msg, "merges.txt"), "vocab.json without partner: %s", err.msg);
    /* a truncated .gz is refused, not read as a shorter merges list */
    {
        size_t glen;
        char *gzb = sd_test_read_file(sd_test_path("clip/bpe_simple_vocab_16e6.txt.gz"), &glen);
        snprintf(p, sizeof p, "%s/trunc.txt.gz", d);
        FILE *f = fopen(p, "wb");
        if (f && gzb) { fwrite(gzb, 1, glen / 2, f); }
        if (f) fclose(f);
        free(gzb);
        CHECK(sd_tokenizer_load(&t, p, &err) != 0 && strstr(err.msg, "trunc.txt.gz") && strstr(err.msg, "truncated"),
              "truncated gz: %s", err.msg);
    }
    snprintf(p, sizeof p, "%s/nope", d);
    CHECK(sd_tokenizer_load(&t, p, &err) != 0 && strstr(err.msg, "nope"), "missing path: %s", err.msg);
    snprintf(p, sizeof p, "%s/empty", d);
    snprintf(q, sizeof q, "mkdir -p '%s'", p);
    CHECK(system(q) == 0, "mkdir");
    CHECK(sd_tokenizer_load(&t, p, &err) != 0 && strstr(err.msg, "no CLIP vocabulary"), "empty folder: %s", err.msg);
    CHECK(t == NULL, "no tokenizer on failure");

    /* search order: --vocab wins; a broken explicit location is an error; nothing found lists the places */
    sd_vocab_search s = {0};
    s.cli_path = sd_test_path("clip/vocab.json");
    setenv("SDGEN_VOCAB", "/nonexistent/vocab", 1);
    CHECK(sd_tokenizer_find(&t, &s, &err) == 0, "--vocab first: %s", err.msg);
    sd_tokenizer_free(t);
    t = NULL;
    s.cli_path = NULL;
    CHECK(sd_tokenizer_find(&t, &s, &err) != 0 && strstr(err.msg, "SDGEN_VOCAB") && strstr(err.msg, "/nonexistent/vocab"),
          "broken SDGEN_VOCAB: %s", err.msg);
    setenv("SDGEN_VOCAB", sd_test_path("clip"), 1);
    s.embedded_merges = "#h\na b\n";
    CHECK(sd_tokenizer_find(&t, &s, &err) == 0 && sd_tokenizer_vocab_size(t) == 49408, "SDGEN_VOCAB before model merges");
    sd_tokenizer_free(t);
    t = NULL;
    unsetenv("SDGEN_VOCAB");
    CHECK(sd_tokenizer_find(&t, &s, &err) == 0 && sd_tokenizer_vocab_size(t) == 515, "model merges");
    sd_tokenizer_free(t);
    t = NULL;
    s.embedded_merges = NULL;
    s.model_path = sd_test_path("golden/models/tiny-cfg");
    s.model_is_folder = 1;
    CHECK(sd_tokenizer_find(&t, &s, &err) == 0 && strstr(sd_tokenizer_source(t), "tokenizer"), "diffusers tokenizer/: %s", err.msg);
    sd_tokenizer_free(t);
    t = NULL;
    s.model_path = sd_test_path("golden/models/tiny-sd1.safetensors");
    s.model_is_folder = 0;
    int rc = sd_tokenizer_find(&t, &s, &err);
    if (rc == 0) { /* an installed data folder may hold one */
        printf("note: a vocabulary was found at %s\n", sd_tokenizer_source(t));
        sd_tokenizer_free(t);
        t = NULL;
    } else {
        CHECK(strstr(err.msg, "--vocab (not given)") && strstr(err.msg, "$SDGEN_VOCAB (not set)") && strstr(err.msg, "golden/models") &&
              strstr(err.msg, "share/sdgen") && strstr(err.msg, "bpe_simple_vocab_16e6.txt.gz"), "not-found message: %s", err.msg);
        printf("not found: %s\n", err.msg);
    }
}

int main(void)
{
    sd_test_require_shared();
    size_t len;
    char *js = sd_test_read_file(sd_test_path("golden/tokenizer/cases.json"), &len);
    CHECK(js != NULL, "cannot read golden/tokenizer/cases.json");
    if (!js) TEST_MAIN_END();
    cJSON *root = cJSON_Parse(js);
    free(js);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    CHECK(cJSON_GetArraySize(cases) == 40, "40 cases, found %d", cJSON_GetArraySize(cases));

    const char *forms[] = {"clip", "clip/bpe_simple_vocab_16e6.txt.gz", "clip/vocab.json", "clip/merges.txt",
                           "golden/models/tiny-cfg/tokenizer"};
    sd_tokenizer *gz = NULL;
    for (int f = 0; f < 5; f++) {
        sd_tokenizer *t;
        sd_err err;
        if (sd_tokenizer_load(&t, sd_test_path(forms[f]), &err)) { CHECK(0, "%s", err.msg); continue; }
        CHECK(sd_tokenizer_bos(t) == 49406 && sd_tokenizer_eos(t) == 49407 && sd_tokenizer_vocab_size(t) == 49408 &&
              sd_tokenizer_comma(t) == 267, "%s: bos/eos/size/comma", forms[f]);
        check_cases(t, cases, forms[f]);
        if (f == 1) gz = t; else sd_tokenizer_free(t);
    }
    /* merges text in memory (the demo model's form), here the full CLIP list */
    char *mt = sd_test_read_file(sd_test_path("clip/merges.txt"), &len);
    sd_tokenizer *mem = NULL;
    sd_err err;
    CHECK(mt && sd_tokenizer_from_merges(&mem, mt, len, "merges in memory", &err) == 0, "from_merges: %s", mt ? err.msg : "no file");
    if (mem) {
        CHECK(sd_tokenizer_vocab_size(mem) == 49408 && sd_tokenizer_bos(mem) == 49406, "in-memory vocab size");
        check_cases(mem, cases, "merges.txt text in memory");
        sd_tokenizer_free(mem);
    }
    free(mt);
    if (gz) {
        check_golden_cases(gz);
        check_unicode(gz);
        /* bounded input */
        size_t big = (32 << 10) + 1;
        char *s = malloc(big + 1);
        memset(s, 'a', big);
        s[big] = 0;
        sd_tokens tk = {0};
        CHECK(sd_tokenize(gz, s, 49407, &tk, &err) != 0 && strstr(err.msg, "too long"), "over-long prompt refused");
        sd_tokens_free(&tk);
        free(s);
        sd_tokenizer_free(gz);
    }
    cJSON_Delete(root);
    check_small_and_errors();
    TEST_MAIN_END();
}
