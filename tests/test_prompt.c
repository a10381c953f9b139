/* test_prompt.c — A1111 prompt syntax (prompt_parser.parse_prompt_attention), chunking
 * (sd_hijack_clip.tokenize_line) and the conditioning built from them (cond.c).
 *
 * Parser expectations are A1111's own doctests plus nesting, escapes, unbalanced brackets, BREAK and
 * the empty prompt. Chunking is checked on prompts whose token counts are known ("a" = 320,
 * "," = 267, one token each). Conditioning: a plain prompt gives exactly the golden text_emb_cond
 * (p1, p6), a weighted one equals z·w·(mean z / mean z·w), and cond/uncond of different lengths
 * are padded with the empty prompt's encoding.
 */
#include <math.h>

#include "sdgen/clip.h"
#include "sdgen/cond.h"
#include "sdgen/model.h"
#include "sdgen/npy.h"
#include "sdgen/prompt.h"
#include "testutil.h"

typedef struct { const char *text; double w; } want_piece;

static void expect_parse(const char *prompt, const want_piece *w, int nw)
{
    sd_prompt_pieces p;
    sd_err err;
    if (sd_prompt_parse(prompt, &p, &err)) { CHECK(0, "parse \"%s\": %s", prompt, err.msg); return; }
    int ok = p.n == nw;
    for (int i = 0; ok && i < nw; i++)
        ok = !strcmp(p.items[i].text, w[i].text) && fabs(p.items[i].weight - w[i].w) < 1e-12;
    if (!ok) {
        fprintf(stderr, "parse \"%s\" gave:", prompt);
        for (int i = 0; i < p.n; i++) fprintf(stderr, " [\"%s\", %.17g]", p.items[i].text, p.items[i].weight);
        fprintf(stderr, "\n");
    }
    CHECK(ok, "parse \"%s\"", prompt);
    sd_prompt_pieces_free(&p);
}
#define PARSE(prompt, ...) do { static const want_piece w_[] = {__VA_ARGS__}; expect_parse(prompt, w_, (int)(sizeof w_ / sizeof *w_)); } while (0)

static void test_parser(void)
{
    /* A1111 doctests */
    PARSE("normal text", {"normal text", 1.0});
    PARSE("an (important) word", {"an ", 1.0}, {"important", 1.1}, {" word", 1.0});
    PARSE("(unbalanced", {"unbalanced", 1.1});
    PARSE("\\(literal\\]", {"(literal]", 1.0});
    PARSE("(unnecessary)(parens)", {"unnecessaryparens", 1.1});
    PARSE("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
          {"a ", 1.0}, {"house", 1.5730000000000004}, {" ", 1.1}, {"on", 1.0}, {" a ", 1.1}, {"hill", 0.55},
          {", sun, ", 1.1}, {"sky", 1.4641000000000006}, {".", 1.1});
    /* nesting and the basic forms */
    PARSE("((x))", {"x", 1.1 * 1.1});
    PARSE("[x]", {"x", 1 / 1.1});
    PARSE("[[x]]", {"x", (1 / 1.1) * (1 / 1.1)});
    PARSE("(x:1.5)", {"x", 1.5});
    PARSE("((x:1.5))", {"x", 1.5 * 1.1});
    PARSE("(x:-0.5) (y:+2) (z:.5)", {"x", -0.5}, {" ", 1.0}, {"y", 2.0}, {" ", 1.0}, {"z", 0.5});
    PARSE("([x])", {"x", 1.1 / 1.1 == 1.0 ? 1.0 : (1 / 1.1) * 1.1});
    /* escapes: \( \) \[ \] \\ literal; a lone backslash is dropped */
    PARSE("\\(a\\) \\[b\\] c\\\\d e\\f", {"(a) [b] c\\d ef", 1.0});
    /* unbalanced: unmatched closers are text; unclosed openers weight everything after them */
    PARSE("a) b] c", {"a) b] c", 1.0});
    PARSE("a [b", {"a ", 1.0}, {"b", 1 / 1.1});
    PARSE("a ((b", {"a ", 1.0}, {"b", 1.1 * 1.1});
    PARSE("(a [b) c]", {"a ", 1.1}, {"b", 1.1 / 1.1 == 1.0 ? 1.0 : (1 / 1.1) * 1.1}, {" c", 1 / 1.1});
    /* a weight with no open bracket, a lone colon, a weight-like text without ")" */
    PARSE("x:1.5) y", {"x:1.5) y", 1.0});
    PARSE("a:b (c:1.2 d)", {"a:b ", 1.0}, {"c:1.2 d", 1.1});
    /* BREAK: a whole word, whitespace around it eaten */
    PARSE("a BREAK b", {"a", 1.0}, {"BREAK", -1.0}, {"b", 1.0});
    PARSE("BREAK", {"", 1.0}, {"BREAK", -1.0}, {"", 1.0});
    PARSE("BREAKfast, aBREAK, break", {"BREAKfast, aBREAK, break", 1.0});
    PARSE("a,BREAK,b", {"a,", 1.0}, {"BREAK", -1.0}, {",b", 1.0});
    PARSE("(a BREAK b)", {"a", 1.1}, {"BREAK", -1.1}, {"b", 1.1}); /* inside brackets it is no break (A1111) */
    /* empty */
    PARSE("", {"", 1.0});
    PARSE("()", {"", 1.0});
    sd_prompt_pieces p;
    sd_err err;
    CHECK(sd_prompt_parse("(a:1.2.3)", &p, &err) != 0 && strstr(err.msg, "1.2.3"), "bad weight refused: %s", err.msg);
    CHECK(sd_prompt_parse("(a:.)", &p, &err) != 0, "weight \".\" refused");
}

/* "a a a ... a" with n words */
static char *words(int n, const char *w)
{
    size_t l = strlen(w);
    char *s = malloc((size_t)n * (l + 1) + 1);
    s[0] = 0;
    for (int i = 0; i < n; i++) { if (i) strcat(s, " "); strcat(s, w); }
    return s;
}

static int chunk_is(const sd_prompt_chunks *c, int k, int n_a, int comma_at, int pad, float w)
{
    const int32_t *t = c->tokens + (size_t)k * 77;
    const float *m = c->weights + (size_t)k * 77;
    if (t[0] != 49406 || m[0] != 1.0f || m[76] != 1.0f) return 0;
    int i = 1;
    for (int j = 0; j < n_a + (comma_at >= 0); j++, i++) {
        int32_t want = j == comma_at ? 267 : 320;
        if (t[i] != want || m[i] != w) return 0;
    }
    if (t[i] != 49407 || m[i] != 1.0f) return 0;
    for (i++; i < 77; i++)
        if (t[i] != (i == 76 && pad != 49407 ? pad : pad) || m[i] != 1.0f) return 0;
    return 1;
}

static void test_chunking(sd_tokenizer *t)
{
    sd_prompt_chunks c;
    sd_err err;
    /* short prompt: one chunk equal to the reference ids */
    int32_t ref[77];
    sd_tokenize_77(t, "a cat, sitting", 49407, ref, NULL, NULL, &err);
    CHECK(sd_prompt_chunk(t, "a cat, sitting", 49407, 1, &c, &err) == 0 && c.n_chunks == 1 && !c.weighted &&
          !memcmp(c.tokens, ref, sizeof ref) && c.n_text_tokens == 4, "short prompt = reference ids");
    sd_prompt_chunks_free(&c);
    /* empty prompt: BOS EOS pad (SD 2.x: 0 after the EOS) */
    CHECK(sd_prompt_chunk(t, "", 0, 1, &c, &err) == 0 && c.n_chunks == 1 && c.tokens[0] == 49406 && c.tokens[1] == 49407 &&
          c.tokens[2] == 0 && c.tokens[76] == 0, "empty prompt, SD 2.x");
    sd_prompt_chunks_free(&c);
    /* exactly 75 tokens: one chunk; 76: two */
    char *s = words(75, "a");
    CHECK(sd_prompt_chunk(t, s, 49407, 1, &c, &err) == 0 && c.n_chunks == 1 && chunk_is(&c, 0, 75, -1, 49407, 1.0f), "75 tokens, 1 chunk");
    sd_prompt_chunks_free(&c);
    free(s);
    s = words(80, "a");
    CHECK(sd_prompt_chunk(t, s, 49407, 1, &c, &err) == 0 && c.n_chunks == 2 && chunk_is(&c, 0, 75, -1, 49407, 1.0f) &&
          chunk_is(&c, 1, 5, -1, 49407, 1.0f) && c.token_count == 80 && c.n_text_tokens == 80, "80 tokens: 75 + 5");
    sd_prompt_chunks_free(&c);
    /* SD 2.x padding in both chunks */
    CHECK(sd_prompt_chunk(t, s, 0, 1, &c, &err) == 0 && c.n_chunks == 2 && chunk_is(&c, 1, 5, -1, 0, 1.0f), "80 tokens, SD 2.x pad");
    sd_prompt_chunks_free(&c);
    /* --no-weighting still chunks */
    CHECK(sd_prompt_chunk(t, s, 49407, 0, &c, &err) == 0 && c.n_chunks == 2, "no weighting: still chunked");
    sd_prompt_chunks_free(&c);
    free(s);
    /* comma within the last 20 tokens: the chunk breaks after it (70 a, comma, 10 a → 70a+, | 10a) */
    char *a70 = words(70, "a"), *a10 = words(10, "a"), buf[2048];
    snprintf(buf, sizeof buf, "%s, %s", a70, a10);
    CHECK(sd_prompt_chunk(t, buf, 49407, 1, &c, &err) == 0 && c.n_chunks == 2 && chunk_is(&c, 0, 70, 70, 49407, 1.0f) &&
          chunk_is(&c, 1, 10, -1, 49407, 1.0f), "comma backtrack");
    sd_prompt_chunks_free(&c);
    /* a comma farther back than 20 tokens: no backtrack (10 a, comma, 70 a → 75 | 6) */
    snprintf(buf, sizeof buf, "%s, %s", a10, a70);
    CHECK(sd_prompt_chunk(t, buf, 49407, 1, &c, &err) == 0 && c.n_chunks == 2 && chunk_is(&c, 0, 74, 10, 49407, 1.0f) &&
          chunk_is(&c, 1, 6, -1, 49407, 1.0f), "comma too far back: no backtrack");
    sd_prompt_chunks_free(&c);
    /* comma as the 75th token: the chunk just fills */
    char *a74 = words(74, "a");
    snprintf(buf, sizeof buf, "%s, a", a74);
    CHECK(sd_prompt_chunk(t, buf, 49407, 1, &c, &err) == 0 && c.n_chunks == 2 && chunk_is(&c, 0, 74, 74, 49407, 1.0f) &&
          chunk_is(&c, 1, 1, -1, 49407, 1.0f), "comma at position 75");
    sd_prompt_chunks_free(&c);
    free(a70); free(a10); free(a74);
    /* BREAK forces a new chunk; leading BREAK gives an empty first chunk */
    CHECK(sd_prompt_chunk(t, "a BREAK a a", 49407, 1, &c, &err) == 0 && c.n_chunks == 2 && chunk_is(&c, 0, 1, -1, 49407, 1.0f) &&
          chunk_is(&c, 1, 2, -1, 49407, 1.0f), "BREAK");
    sd_prompt_chunks_free(&c);
    CHECK(sd_prompt_chunk(t, "BREAK a", 49407, 1, &c, &err) == 0 && c.n_chunks == 2 && chunk_is(&c, 0, 0, -1, 49407, 1.0f),
          "leading BREAK");
    sd_prompt_chunks_free(&c);
    CHECK(sd_prompt_chunk(t, "a BREAK a", 49407, 0, &c, &err) == 0 && c.n_chunks == 1 && c.n_text_tokens == 3,
          "no weighting: BREAK is a word");
    sd_prompt_chunks_free(&c);
    /* weights per token */
    CHECK(sd_prompt_chunk(t, "(a) a [a] (a:1.5) ((a))", 49407, 1, &c, &err) == 0 && c.n_chunks == 1 && c.weighted, "weights");
    if (c.n_chunks == 1) {
        const float want[] = {1.0f, 1.1f, 1.0f, (float)(1 / 1.1), 1.5f, (float)(1.1 * 1.1), 1.0f, 1.0f};
        int ok = 1;
        for (int i = 0; i < 8; i++) ok &= c.weights[i] == want[i];
        for (int i = 1; i <= 5; i++) ok &= c.tokens[i] == 320;
        CHECK(ok, "weights per token: %g %g %g %g %g %g", c.weights[1], c.weights[2], c.weights[3], c.weights[4], c.weights[5], c.weights[6]);
    }
    sd_prompt_chunks_free(&c);
    /* --no-weighting: brackets literal, same as the plain tokenizer */
    sd_tokenize_77(t, "(a) [b]", 49407, ref, NULL, NULL, &err);
    CHECK(sd_prompt_chunk(t, "(a) [b]", 49407, 0, &c, &err) == 0 && !c.weighted && !memcmp(c.tokens, ref, sizeof ref), "no weighting = literal");
    sd_prompt_chunks_free(&c);
    /* the golden 179-token prompt: 3 chunks, nothing dropped */
    s = words(90, "red,");
    s[strlen(s) - 1] = 0; /* "red, red, ..., red" */
    CHECK(sd_prompt_chunk(t, s, 49407, 1, &c, &err) == 0 && c.n_chunks == 3 && c.n_text_tokens == 179, "179 tokens: %d chunks", c.n_chunks);
    if (c.n_chunks == 3)
        /* the 76th token is a comma: no backtrack (A1111 only backtracks on a non-comma token), so the
         * second chunk starts with it */
        CHECK(c.tokens[75] == 736 && c.tokens[76] == 49407 && c.tokens[77 + 1] == 267 && c.tokens[154 + 1] == 736,
              "chunk boundaries (%d %d %d)", c.tokens[75], c.tokens[78], c.tokens[155]);
    sd_prompt_chunks_free(&c);
    free(s);
}

static float *npy_f32(const char *rel, int64_t *n)
{
    sd_npy a;
    sd_err err;
    if (sd_npy_read(&a, sd_test_path(rel), &err)) { CHECK(0, "%s", err.msg); return NULL; }
    float *d = malloc((size_t)a.numel * sizeof *d);
    memcpy(d, a.f32, (size_t)a.numel * sizeof *d);
    *n = a.numel;
    sd_npy_free(&a);
    return d;
}

static double mean_d(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s / (double)n;
}

static void test_cond(sd_tokenizer *t)
{
    sd_model m;
    sd_err err;
    if (sd_model_open(&m, sd_test_path("golden/models/tiny-sd1.safetensors"), &err)) { CHECK(0, "%s", err.msg); return; }
    sd_arena a;
    sd_arena_init(&a, 0, 0);
    int64_t n;
    float *want = npy_f32("golden/cases/p1-tiny-sd1-ddim/text_emb_cond.npy", &n);
    float *want_u = npy_f32("golden/cases/p1-tiny-sd1-ddim/text_emb_uncond.npy", &n);
    sd_cond c = {0}, u = {0};
    CHECK(sd_text_condition(&m, &a, t, "a red apple on a wooden table", 1, 1, &c, &err) == 0, "%s", err.msg);
    CHECK(c.n_chunks == 1 && c.dim == 64 && !c.weighted, "plain cond shape");
    if (c.data && want) CHECK_CLOSE("p1 cond = golden text_emb_cond", c.data, want, n, 2e-5);
    /* weighted: same tokens, z·w then rescaled to the original mean */
    sd_cond w = {0};
    CHECK(sd_text_condition(&m, &a, t, "(a red apple) on a [wooden] table", 1, 1, &w, &err) == 0 && w.weighted, "%s", err.msg);
    if (w.data && c.data) {
        size_t per = 77 * 64;
        float *exp = malloc(per * sizeof *exp);
        const float mult[8] = {1.0f, 1.1f, 1.1f, 1.1f, 1.0f, 1.0f, (float)(1 / 1.1), 1.0f};
        for (int i = 0; i < 77; i++)
            for (int d = 0; d < 64; d++) exp[i * 64 + d] = c.data[i * 64 + d] * (i < 8 ? mult[i] : 1.0f);
        float r = (float)mean_d(c.data, per) / (float)mean_d(exp, per);
        for (size_t i = 0; i < per; i++) exp[i] *= r;
        CHECK_CLOSE("weighted cond = z*w*(mean z / mean z*w)", w.data, exp, per, 1e-6);
        CHECK(fabs(mean_d(w.data, per) - mean_d(c.data, per)) < 1e-6, "weighted cond keeps the mean");
        free(exp);
    }
    sd_cond_free(&w);
    sd_cond_free(&c);
    /* a two-chunk prompt against an empty negative: uncond padded with the empty encoding */
    char *s = malloc(100 * 6);
    s[0] = 0;
    for (int i = 0; i < 90; i++) strcat(s, i ? " apple" : "apple");
    CHECK(sd_text_condition(&m, &a, t, s, 1, 1, &c, &err) == 0 && c.n_chunks == 2, "long prompt: 2 chunks");
    CHECK(sd_text_condition(&m, &a, t, "", 1, 1, &u, &err) == 0 && u.n_chunks == 1, "empty negative");
    CHECK(sd_cond_match_length(&m, &a, t, 1, sd_text_condition, &c, &u, &err) == 0 && u.n_chunks == 2 && c.n_chunks == 2 && u.padded_chunks == 1,
          "match length");
    if (u.n_chunks == 2 && want_u) {
        CHECK_CLOSE("uncond chunk 0 = golden text_emb_uncond", u.data, want_u, n, 2e-5);
        CHECK_CLOSE("uncond chunk 1 = empty-prompt encoding", u.data + 77 * 64, want_u, n, 2e-5);
    }
    sd_tensor tt = sd_cond_tensor(&u);
    CHECK(tt.ndim == 3 && tt.ne[0] == 1 && tt.ne[1] == 154 && tt.ne[2] == 64, "cond tensor view [1,154,64]");
    sd_cond_free(&c);
    sd_cond_free(&u);
    free(s);
    free(want);
    free(want_u);
    sd_model_close(&m);
    /* SD 2.x (pad 0, penultimate layer) */
    if (sd_model_open(&m, sd_test_path("golden/models/tiny-sd2.safetensors"), &err)) { CHECK(0, "%s", err.msg); sd_arena_free(&a); return; }
    want = npy_f32("golden/cases/p6-tiny-sd2-v-ddim/text_emb_cond.npy", &n);
    CHECK(m.text[0].pad_id == 0, "sd2 pad id");
    CHECK(sd_text_condition(&m, &a, t, "a bowl of ramen", 1, 1, &c, &err) == 0 && c.n_chunks == 1, "%s", err.msg);
    if (c.data && want) CHECK_CLOSE("p6 cond = golden text_emb_cond (SD 2.x)", c.data, want, n, 2e-5);
    sd_cond_free(&c);
    free(want);
    sd_model_close(&m);
    sd_arena_free(&a);
}

int main(void)
{
    test_parser();
    if (sd_test_skip_shared("chunking and conditioning (CLIP vocabulary, tiny models)")) TEST_MAIN_END();
    sd_tokenizer *t;
    sd_err err;
    if (sd_tokenizer_load(&t, sd_test_path("clip"), &err)) { CHECK(0, "%s", err.msg); TEST_MAIN_END(); }
    test_chunking(t);
    test_cond(t);
    sd_tokenizer_free(t);
    TEST_MAIN_END();
}
