/* test_options.c — the strict number parsers, the shared table of numeric settings and message-safe
 * text (options.h): every accepted and refused spelling asserted with its value or its message, and the
 * batch-file keys checked against the command-line options of the same meaning. */
#include <stdint.h>
#include <string.h>

#include "sdgen/batch.h"
#include "sdgen/options.h"
#include "testutil.h"

static void test_integers(void)
{
    static const struct { const char *s; int minus; int ok; long long v; } L[] = {
        {"0", 0, 1, 0}, {"42", 0, 1, 42}, {"007", 0, 1, 7}, {"9223372036854775807", 0, 1, 9223372036854775807LL},
        {"-5", 1, 1, -5}, {"-9223372036854775808", 1, 1, (-9223372036854775807LL - 1)},
        {"9223372036854775808", 0, 0, 0}, {"-9223372036854775809", 1, 0, 0}, {"-5", 0, 0, 0}, {" 5", 0, 0, 0},
        {"5 ", 0, 0, 0}, {"+5", 0, 0, 0}, {"", 0, 0, 0}, {"-", 1, 0, 0}, {"0x10", 0, 0, 0}, {"1e3", 0, 0, 0},
        {"5.0", 0, 0, 0}, {"\t5", 0, 0, 0}, {"--5", 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof L / sizeof *L; i++) {
        long long v = 12345;
        int rc = sd_parse_ll(L[i].s, L[i].minus, &v);
        CHECK((rc == 0) == L[i].ok && (!L[i].ok || v == L[i].v), "sd_parse_ll(\"%s\", minus %d): rc %d value %lld",
              L[i].s, L[i].minus, rc, v);
    }
    static const struct { const char *s; int ok; uint64_t v; } U[] = {
        {"0", 1, 0}, {"18446744073709551615", 1, UINT64_MAX}, {"18446744073709551616", 0, 0},
        {"99999999999999999999999", 0, 0}, {"-1", 0, 0}, {" -5", 0, 0}, {"-0", 0, 0}, {"+1", 0, 0}, {"1 ", 0, 0},
    };
    for (size_t i = 0; i < sizeof U / sizeof *U; i++) {
        uint64_t v = 7;
        int rc = sd_parse_u64(U[i].s, &v);
        CHECK((rc == 0) == U[i].ok && (!U[i].ok || v == U[i].v), "sd_parse_u64(\"%s\"): rc %d value %llu", U[i].s, rc,
              (unsigned long long)v);
    }
}

static void test_reals(void)
{
    static const struct { const char *s; int ok; double v; } R[] = {
        {"7.5", 1, 7.5}, {"0", 1, 0}, {".5", 1, 0.5}, {"5.", 1, 5}, {"-1", 1, -1}, {"1e-3", 1, 1e-3}, {"2E+2", 1, 200},
        {"inf", 0, 0}, {"-inf", 0, 0}, {"nan", 0, 0}, {"NaN", 0, 0}, {"infinity", 0, 0}, {"1e999", 0, 0},
        {"0x10", 0, 0}, {" 7", 0, 0}, {"7 ", 0, 0}, {"+7", 0, 0}, {"", 0, 0}, {".", 0, 0}, {"-", 0, 0},
        {"1e", 0, 0}, {"1e+", 0, 0}, {"1.2.3", 0, 0}, {"7,5", 0, 0},
    };
    for (size_t i = 0; i < sizeof R / sizeof *R; i++) {
        double v = -99;
        int rc = sd_parse_real(R[i].s, &v);
        CHECK((rc == 0) == R[i].ok && (!R[i].ok || v == R[i].v), "sd_parse_real(\"%s\"): rc %d value %g", R[i].s, rc, v);
    }
}

static void test_sizes(void)
{
    static const struct { const char *s; int ok; uint64_t v; } S[] = {
        {"8G", 1, 8000000000ull}, {"512M", 1, 512000000ull}, {"1.5G", 1, 1500000000ull}, {"8gb", 1, 8000000000ull},
        {"1024", 1, 1024}, {"1K", 1, 1000}, {"2T", 1, 2000000000000ull}, {"0.5K", 1, 500}, {"1.000K", 1, 1000},
        {".5M", 1, 500000}, {"0", 1, 0},
        {"inf", 0, 0}, {"1e30T", 0, 0}, {"1e9", 0, 0}, {"0.5", 0, 0}, {"1.0001K", 0, 0}, {"-1G", 0, 0}, {"+8G", 0, 0},
        {" 8G", 0, 0}, {"8G ", 0, 0}, {"8X", 0, 0}, {"8GG", 0, 0}, {"8BB", 0, 0}, {"G", 0, 0}, {"", 0, 0},
        {"nanG", 0, 0}, {"99999999999999999999T", 0, 0}, {"18446744073709551616", 0, 0},
    };
    for (size_t i = 0; i < sizeof S / sizeof *S; i++) {
        uint64_t v = 7;
        int rc = sd_parse_size(S[i].s, &v);
        CHECK((rc == 0) == S[i].ok && (!S[i].ok || v == S[i].v), "sd_parse_size(\"%s\"): rc %d value %llu", S[i].s, rc,
              (unsigned long long)v);
    }
}

/* The table: the command line and the batch file see the same entry for the same setting, with the ranges
 * docs/RELIABILITY.md lists. */
static void test_table(void)
{
    static const struct { const char *key, *opt; } PAIRS[] = {
        {"steps", "--steps"}, {"width", "--width"}, {"height", "--height"}, {"cfg_scale", "--cfg-scale"},
        {"strength", "--strength"}, {"seed", "--seed"}, {"clip_skip", "--clip-skip"}, {"batch_count", "--batch-count"},
        {"eta", "--eta"},
    };
    for (size_t i = 0; i < sizeof PAIRS / sizeof *PAIRS; i++) {
        const sd_num_opt *a = sd_num_opt_by_key(PAIRS[i].key), *b = sd_num_opt_by_opt(PAIRS[i].opt);
        CHECK(a && a == b, "%s and %s share one table entry (%p, %p)", PAIRS[i].key, PAIRS[i].opt, (const void *)a,
              (const void *)b);
    }
    CHECK(!sd_num_opt_by_key("threads") && sd_num_opt_by_opt("--max-memory") && !sd_num_opt_by_key("nonsense"),
          "command-line-only --threads/--max-memory");
    static const struct { const char *key, *text; int ok; const char *msg; } V[] = {
        {"batch_count", "0", 0, "\"batch_count\" expects an integer in [1, 100000], got \"0\""},
        {"batch_count", "-1", 0, "[1, 100000]"},
        {"batch_count", "2147483647", 0, "[1, 100000]"},
        {"batch_count", "100000", 1, NULL},
        {"steps", "1001", 0, "\"steps\" expects an integer in [1, 1000]"},
        {"width", "60", 0, "that is a multiple of 8, got \"60\""},
        {"width", "64", 1, NULL},
        {"strength", "0", 0, "\"strength\" expects a number in (0, 1], got \"0\""},
        {"strength", "1", 1, NULL},
        {"strength", "0.001", 1, NULL},
        {"cfg_scale", "100.5", 0, "[0, 100]"},
        {"eta", "1.5", 0, "\"eta\" expects a number in [0, 1], got \"1.5\""},
        {"eta", "-0.1", 0, "[0, 1]"},
        {"eta", "0.5", 1, NULL},
        {"eta", "0", 1, NULL},
        {"seed", "-1", 0, "[0, 2^64-1]"},
        {"clip_skip", "65", 0, "[1, 64]"},
    };
    for (size_t i = 0; i < sizeof V / sizeof *V; i++) {
        char name[64];
        snprintf(name, sizeof name, "\"%s\"", V[i].key);
        sd_num out;
        sd_err err = {0};
        int rc = sd_num_parse(sd_num_opt_by_key(V[i].key), name, V[i].text, &out, &err);
        CHECK((rc == 0) == V[i].ok && (V[i].ok || strstr(err.msg, V[i].msg)), "%s = %s: rc %d, '%s' (want '%s')", V[i].key,
              V[i].text, rc, err.msg, V[i].msg ? V[i].msg : "accepted");
    }
    sd_num out;
    sd_err err = {0};
    CHECK(sd_num_parse(sd_num_opt_by_opt("--max-memory"), "--max-memory", "1.5G", &out, &err) == 0 &&
              out.u == 1500000000ull,
          "--max-memory 1.5G: %llu", (unsigned long long)out.u);
    CHECK(sd_num_parse(sd_num_opt_by_opt("--max-memory"), "--max-memory", "2000T", &out, &err) != 0 &&
              strstr(err.msg, "from 1 to 1000T"),
          "--max-memory 2000T: '%s'", err.msg);
    CHECK(sd_num_parse(sd_num_opt_by_opt("--max-memory"), "--max-memory", "0", &out, &err) != 0, "--max-memory 0");
}

/* A batch line's keys get the command line's ranges (parsed by batch.c through the same entry). */
static void test_batch_keys(void)
{
    static const struct { const char *line, *want; } B[] = {
        {"{\"prompt\": \"a\", \"batch_count\": 0}", "\"batch_count\" expects an integer in [1, 100000], got \"0\""},
        {"{\"prompt\": \"a\", \"batch_count\": -5}", "\"batch_count\" expects an integer in [1, 100000], got \"-5\""},
        {"{\"prompt\": \"a\", \"batch_count\": 2147483647}", "\"batch_count\" expects an integer in [1, 100000]"},
        {"{\"prompt\": \"a\", \"height\": 65544}", "\"height\" expects an integer in [8, 65536]"},
        {"{\"prompt\": \"a\", \"clip_skip\": 0}", "\"clip_skip\" expects an integer in [1, 64]"},
        {"{\"prompt\": \"a\", \"cfg_scale\": -0.5}", "\"cfg_scale\" expects a number in [0, 100]"},
        {"{\"prompt\": \"a\", \"strength\": 0}", "\"strength\" expects a number in (0, 1]"},
        {"{\"prompt\": \"a\", \"eta\": 2}", "\"eta\" expects a number in [0, 1], got \"2\""},
    };
    for (size_t i = 0; i < sizeof B / sizeof *B; i++) {
        sd_batch b;
        sd_err err = {0};
        int rc = sd_batch_parse_mem(B[i].line, strlen(B[i].line), "k.jsonl", &b, &err);
        CHECK(rc == 0 && b.n == 1 && b.items[0].error && strstr(b.items[0].error, B[i].want), "%s: '%s' (want '%s')",
              B[i].line, rc == 0 && b.items[0].error ? b.items[0].error : err.msg, B[i].want);
        if (rc == 0) sd_batch_free(&b);
    }
    const char *good = "{\"prompt\": \"a\", \"batch_count\": 3, \"strength\": 0.5, \"width\": 72, \"seed\": 18446744073709551615}";
    sd_batch b;
    sd_err err = {0};
    int rc = sd_batch_parse_mem(good, strlen(good), "k.jsonl", &b, &err);
    CHECK(rc == 0 && b.n == 1 && !b.items[0].error && b.items[0].batch_count == 3 && b.items[0].strength == 0.5 &&
              b.items[0].width == 72 && b.items[0].seed == UINT64_MAX,
          "good line: %s", rc == 0 && b.items[0].error ? b.items[0].error : "");
    if (rc == 0) sd_batch_free(&b);
}

static void test_escape(void)
{
    static const struct { const char *in, *out; } E[] = {
        {"plain text", "plain text"},
        {"a\nb\tc\rd", "a\\nb\\tc\\rd"},
        {"\x1b[2Jred", "\\x1b[2Jred"},
        {"del\x7f", "del\\x7f"},
        {"c1 \xc2\x9b" "31m", "c1 \\u009b31m"},                  /* U+009B CSI */
        {"nbsp \xc2\xa0 ok", "nbsp \xc2\xa0 ok"},                  /* U+00A0 is not a control */
        {"caf\xc3\xa9 \xe7\x8c\xab", "caf\xc3\xa9 \xe7\x8c\xab"},  /* UTF-8 kept */
        {"bad \xff\xc3", "bad \\xff\\xc3"},                        /* not UTF-8 */
        {"back\\slash", "back\\slash"},
    };
    for (size_t i = 0; i < sizeof E / sizeof *E; i++) {
        char out[256];
        sd_escape_text(E[i].in, out, sizeof out);
        CHECK(!strcmp(out, E[i].out), "escape case %zu: got \"%s\" want \"%s\"", i, out, E[i].out);
    }
    /* cut on a whole escape / character, always terminated */
    char small[8];
    size_t n = sd_escape_text("abcd\x1b" "efgh", small, sizeof small);
    CHECK(n == 4 && !strcmp(small, "abcd"), "escape into 8 bytes: \"%s\" (%zu)", small, n);
    n = sd_escape_text("ab\xe7\x8c\xab\xe7\x8c\xab", small, sizeof small);
    CHECK(n == 5 && !strcmp(small, "ab\xe7\x8c\xab"), "UTF-8 cut: %zu", n);
    CHECK(sd_find_control("ok.png") == 0 && sd_find_control("a\x1b.png") == 2 && sd_find_control("x\xc2\x85") == 2 &&
              sd_find_control("\xc2\xa0") == 0,
          "sd_find_control");
}

int main(void)
{
    test_integers();
    test_reals();
    test_sizes();
    test_table();
    test_batch_keys();
    test_escape();
    TEST_MAIN_END();
}
