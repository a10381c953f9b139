/* test_batch.c — the --prompts batch file (JSON Lines / plain text) and output-path templates. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdgen/batch.h"
#include "sdgen/preset.h"
#include "testutil.h"

static void write_text(const char *path, const char *s, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(s, 1, n, f);
        fclose(f);
    }
}

/* 20 item lines, 2 of them malformed, plus comments and blank lines between them. */
static void test_jsonl_20(const char *tmp)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/batch20.jsonl", tmp);
    char text[8192] = "# a batch of 20 prompts\n\n";
    int bad_lines[2] = {0, 0}, nb = 0;
    int line = 2;
    for (int i = 1; i <= 20; i++) {
        char l[512];
        if (i == 7) snprintf(l, sizeof l, "{\"prompt\": \"item %d\", \"steps\": 20,}\n", i);      /* trailing comma */
        else if (i == 15) snprintf(l, sizeof l, "{\"prompt\": \"item %d\", \"stepz\": 5}\n", i); /* unknown key */
        else snprintf(l, sizeof l, "{\"prompt\": \"item %d\", \"seed\": %d, \"steps\": %d, \"cfg_scale\": 7.5}\n", i, 100 + i, 10 + i);
        line++;
        if (i == 7 || i == 15) bad_lines[nb++] = line;
        strcat(text, l);
        if (i % 5 == 0) {
            strcat(text, "   # comment after item\n\n");
            line += 2;
        }
    }
    write_text(path, text, strlen(text));
    sd_batch b;
    sd_err err = {0};
    int rc = sd_batch_parse_file(path, &b, &err);
    CHECK(rc == 0, "parse batch20: %s", err.msg);
    if (rc) return;
    CHECK(b.json == 1, "JSON mode");
    CHECK(b.n == 20 && b.n_errors == 2, "20 items, 2 errors: got %d items, %d errors", b.n, b.n_errors);
    int good = 0, k = 0;
    for (int i = 0; i < b.n; i++) {
        const sd_batch_item *it = &b.items[i];
        if (it->error) {
            char want[4300];
            snprintf(want, sizeof want, "%s:%d: ", path, bad_lines[k < 2 ? k : 1]);
            CHECK(!strncmp(it->error, want, strlen(want)), "error %d: '%s' (want prefix '%s')", k, it->error, want);
            CHECK(it->line == bad_lines[k < 2 ? k : 1], "error line %d", it->line);
            k++;
            continue;
        }
        good++;
        char want[32];
        int num = atoi(it->prompt + 5);
        snprintf(want, sizeof want, "item %d", num);
        CHECK(!strcmp(it->prompt, want) && it->has_seed && it->seed == (uint64_t)(100 + num) && it->has_steps &&
                  it->steps == 10 + num && it->has_cfg_scale && it->cfg_scale == 7.5 && !it->has_width,
              "item %d fields", num);
        CHECK(it->n_set == 4 && !strcmp(it->set_key[1], "seed"), "item %d generic settings", num);
    }
    CHECK(good == 18, "18 good items, got %d", good);
    printf("ok   batch of 20 lines: %d items, %d errors:\n     %s\n     %s\n", good, b.n_errors, k > 0 ? b.items[6].error : "", k > 1 ? b.items[14].error : "");
    sd_batch_free(&b);
}

/* One malformed line each: the message names the problem. */
static void test_jsonl_errors(void)
{
    static const struct { const char *line, *want; } E[] = {
        {"{\"prompt\": \"a\", \"steps\": \"20\"}", "\"steps\" must be a number"},
        {"{\"prompt\": \"a\", \"steps\": 20.5}", "\"steps\" must be an integer"},
        {"{\"prompt\": \"a\", \"steps\": 1e3}", "\"steps\" must be an integer"},
        {"{\"prompt\": 5}", "\"prompt\" must be a string"},
        {"{\"negative_prompt\": \"x\"}", "missing \"prompt\""},
        {"{\"prompt\": \"a\", \"prompt\": \"b\"}", "duplicate key \"prompt\""},
        {"{\"prompt\": \"a\", \"Seed\": 1}", "unknown key \"Seed\""},
        {"{\"prompt\": \"a\", \"seed\": -1}", "\"seed\" expects an integer in [0, 2^64-1], got \"-1\""},
        {"{\"prompt\": \"a\", \"seed\": 18446744073709551616}", "\"seed\" expects an integer in [0, 2^64-1]"},
        {"{\"prompt\": \"a\", \"width\": 99999999999}", "\"width\" expects an integer in [8, 65536]"},
        {"{\"prompt\": \"a\"", "expected"},
        {"{\"prompt\": \"a\"} x", "unexpected text after the object"},
        {"{\"prompt\": \"a\\q\"}", "bad escape"},
        {"{\"prompt\": \"a\\ud800\"}", "surrogate"},
        {"{\"prompt\": \"a\\u0000b\"}", "NUL"},
        {"{\"prompt\": \"tab\there\"}", "control character"},
        {"{\"prompt\": 'single'}", "invalid JSON value starting with '''"},
        {"{\"prompt\": \"a\", \"cfg_scale\": 1e999}", "\"cfg_scale\" expects a number in [0, 100]"},
        {"{\"prompt\": \"a\", \"cfg_scale\": .5}", "invalid JSON value starting with '.'"},
        {"{\"prompt\": \"a\",}", "trailing comma"},
        {"{\"prompt\": \"a\", \"cfg_scale\": 01}", "',' or '}' expected"},
        {"{\"prompt\": \"a\", \"strength\": true}", "must be a number"},
        {"{\"prompt\": \"a\", \"stats\": {\"x\": [1, 2, {\"y\": null}]}, \"bad\": 1}", "unknown key \"bad\""},
        {"[\"prompt\"]", "not a JSON object"},
        {"{\"prompt\": \"caf\xe9\"}", "not valid UTF-8"},
        {"{\"prompt\": \"a\", \"preset\": \"turbo2\"}", "\"preset\": unknown preset \"turbo2\" (turbo, lcm, lightning, none)"},
        {"{\"prompt\": \"a\", \"preset\": 1}", "\"preset\" must be a string"},
        {"{\"prompt\": \"a\", \"preset\": \"lcm\", \"preset\": \"turbo\"}", "duplicate key \"preset\""},
    };
    for (size_t i = 0; i < sizeof E / sizeof *E; i++) {
        char buf[1024];
        int n = snprintf(buf, sizeof buf, "{\"prompt\": \"first\"}\n%s\n", E[i].line);
        sd_batch b;
        sd_err err = {0};
        int rc = sd_batch_parse_mem(buf, (size_t)n, "t.jsonl", &b, &err);
        CHECK(rc == 0 && b.n == 2 && b.n_errors == 1 && b.items[1].error && !strncmp(b.items[1].error, "t.jsonl:2: ", 11) &&
                  strstr(b.items[1].error, E[i].want),
              "case %zu (%s): got '%s', want '%s'", i, E[i].line, rc == 0 && b.n == 2 && b.items[1].error ? b.items[1].error : err.msg, E[i].want);
        if (rc == 0) sd_batch_free(&b);
    }
    /* good lines with every key, null, nested ignored case.json keys */
    const char *good =
        "{\"prompt\": \"p \\\"q\\\" \\u732b \\ud83d\\ude00\", \"negative_prompt\": \"n\", \"seed\": 18446744073709551615, \"steps\": 4,"
        " \"cfg_scale\": 7.5, \"width\": 64, \"height\": 48, \"sampler\": \"euler_a\", \"schedule\": \"karras\", \"output\": \"o-{index}.png\","
        " \"strength\": 0.6, \"init_image\": \"init.png\", \"clip_skip\": 2, \"rng\": \"cuda\", \"prediction\": \"v\", \"batch_count\": 3,"
        " \"timestep_spacing\": \"trailing\", \"eta\": 0, \"model\": \"m.safetensors\", \"family\": \"sd1\", \"latent_shape\": [1, 4, 8, 8],"
        " \"reference\": {\"a\": [true, false, null, -1.5e-3]}, \"name\": null}\r\n";
    sd_batch b;
    sd_err err = {0};
    int rc = sd_batch_parse_mem(good, strlen(good), "g.jsonl", &b, &err);
    CHECK(rc == 0 && b.n == 1 && b.n_errors == 0, "all keys: %s", rc ? err.msg : b.n && b.items[0].error ? b.items[0].error : "");
    if (rc == 0 && b.n == 1 && !b.items[0].error) {
        const sd_batch_item *it = &b.items[0];
        CHECK(!strcmp(it->prompt, "p \"q\" \xe7\x8c\xab \xf0\x9f\x98\x80"), "decoded prompt '%s'", it->prompt);
        CHECK(it->has_seed && it->seed == UINT64_MAX, "64-bit seed");
        CHECK(it->steps == 4 && it->width == 64 && it->height == 48 && it->clip_skip == 2 && it->batch_count == 3 && it->has_eta &&
                  it->eta == 0 && it->strength == 0.6,
              "numbers");
        CHECK(!strcmp(it->sampler, "euler_a") && !strcmp(it->schedule, "karras") && !strcmp(it->rng, "cuda") &&
                  !strcmp(it->prediction, "v") && !strcmp(it->timestep_spacing, "trailing") && !strcmp(it->output, "o-{index}.png") &&
                  !strcmp(it->init_image, "init.png") && !strcmp(it->model, "m.safetensors") && !strcmp(it->negative_prompt, "n"),
              "strings");
        CHECK(it->n_set == 19 && !strcmp(it->set_key[2], "seed") && !strcmp(it->set_value[2], "18446744073709551615"),
              "generic settings (%d)", it->n_set);
    }
    if (rc == 0) sd_batch_free(&b);
}

static void test_plain(void)
{
    const char *text = "\xEF\xBB\xBF# prompts\r\n"
                       "a red apple\r\n"
                       "\r\n"
                       "   # indented comment\n"
                       "  a blue car  \n"
                       "\t\n"
                       "{not json in plain mode}\n"
                       "bad \xff byte\n"
                       "last line without newline";
    sd_batch b;
    sd_err err = {0};
    int rc = sd_batch_parse_mem(text, strlen(text), "p.txt", &b, &err);
    CHECK(rc == 0 && b.json == 0, "plain mode: %s", err.msg);
    if (rc) return;
    CHECK(b.n == 5 && b.n_errors == 1, "plain: %d items %d errors", b.n, b.n_errors);
    if (b.n == 5) {
        CHECK(b.items[0].line == 2 && !strcmp(b.items[0].prompt, "a red apple"), "line 2 '%s'", b.items[0].prompt);
        CHECK(b.items[1].line == 5 && !strcmp(b.items[1].prompt, "a blue car"), "line 5 '%s'", b.items[1].prompt);
        CHECK(b.items[2].line == 7 && !strcmp(b.items[2].prompt, "{not json in plain mode}"), "line 7");
        CHECK(b.items[3].line == 8 && b.items[3].error && !strcmp(b.items[3].error, "p.txt:8: not valid UTF-8 (byte 5)"), "line 8: %s",
              b.items[3].error ? b.items[3].error : "(none)");
        CHECK(b.items[4].line == 9 && !strcmp(b.items[4].prompt, "last line without newline") && b.items[4].n_set == 1, "line 9");
    }
    sd_batch_free(&b);

    /* over-long line: an error item, the parse goes on */
    size_t big = SD_BATCH_MAX_LINE + 10;
    char *s = malloc(big + 32);
    memset(s, 'x', big);
    memcpy(s + big, "\nnext\n", 7);
    rc = sd_batch_parse_mem(s, big + 6, "long.txt", &b, &err);
    CHECK(rc == 0 && b.n == 2 && b.items[0].error && strstr(b.items[0].error, "long.txt:1: line too long") && !b.items[1].error,
          "long line: %s", rc == 0 && b.n ? (b.items[0].error ? b.items[0].error : "no error") : err.msg);
    if (rc == 0) sd_batch_free(&b);
    free(s);

    /* empty file and comments only: no items, not an error */
    rc = sd_batch_parse_mem("# nothing\n\n", 11, "e.txt", &b, &err);
    CHECK(rc == 0 && b.n == 0, "comments only");
    sd_batch_free(&b);
    rc = sd_batch_parse_file("/nonexistent/prompts.txt", &b, &err);
    CHECK(rc != 0 && strstr(err.msg, "/nonexistent/prompts.txt"), "missing file: '%s'", err.msg);
    /* NUL byte inside a line */
    rc = sd_batch_parse_mem("ok\nbad\0line\n", 12, "nul.txt", &b, &err);
    CHECK(rc == 0 && b.n == 2 && b.items[1].error && strstr(b.items[1].error, "nul.txt:2: contains a NUL byte"), "NUL line");
    if (rc == 0) sd_batch_free(&b);
}

static void test_golden_case_line(void)
{
    /* A golden case.json, joined onto one line, is a valid batch line */
    if (sd_test_skip_shared("golden case.json as a batch line")) return;
    FILE *f = fopen(sd_test_path("golden/cases/p7-tiny-sd1-img2img-ddim/case.json"), "rb");
    CHECK(f != NULL, "cannot read golden/cases/p7-tiny-sd1-img2img-ddim/case.json");
    if (!f) return;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++) if (buf[i] == '\n') buf[i] = ' ';
    sd_batch b;
    sd_err err = {0};
    int rc = sd_batch_parse_mem(buf, n, "case.jsonl", &b, &err);
    CHECK(rc == 0 && b.n == 1 && !b.items[0].error, "case.json line: %s", rc ? err.msg : b.items[0].error ? b.items[0].error : "");
    if (rc == 0 && b.n == 1 && !b.items[0].error) {
        const sd_batch_item *it = &b.items[0];
        CHECK(!strcmp(it->prompt, "a watercolor painting of a harbor") && it->seed == 21 && it->steps == 10 && it->strength == 0.6 &&
                  !strcmp(it->init_image, "init.png") && !strcmp(it->sampler, "ddim") && it->width == 64 && !strcmp(it->model, "models/tiny-sd1.safetensors"),
              "p7 settings");
    }
    if (rc == 0) sd_batch_free(&b);
}

static void test_output_path(void)
{
    char out[256];
    sd_err err = {0};
    CHECK(sd_output_path("out/{index}-{seed}.png", 3, 18446744073709551615ULL, "x", out, sizeof out, &err) == 0 &&
              !strcmp(out, "out/3-18446744073709551615.png"),
          "index/seed: %s", out);
    CHECK(sd_output_path("{prompt}.png", 1, 0, "A cat/dog: \"hello\"  <world>?\n\tline2 ", out, sizeof out, &err) == 0 &&
              !strcmp(out, "A_cat_dog_hello_world_line2.png"),
          "sanitised prompt: %s", out);
    CHECK(sd_output_path("{prompt}.png", 1, 0, "../../etc/passwd", out, sizeof out, &err) == 0 && !strcmp(out, "etc_passwd.png"),
          "no traversal: %s", out);
    CHECK(sd_output_path("{prompt}.png", 1, 0, "", out, sizeof out, &err) == 0 && !strcmp(out, "image.png"), "empty prompt: %s", out);
    CHECK(sd_output_path("{prompt}.png", 1, 0, "-rf --help", out, sizeof out, &err) == 0 && !strcmp(out, "rf_--help.png"), "leading dash: %s", out);
    CHECK(sd_output_path("{{literal}}_{index}.png", 12, 0, "", out, sizeof out, &err) == 0 && !strcmp(out, "{literal}_12.png"), "braces: %s", out);
    CHECK(sd_output_path("{idx}.png", 1, 0, "", out, sizeof out, &err) != 0 && strstr(err.msg, "{idx}"), "unknown placeholder: %s", err.msg);
    CHECK(sd_output_path("{index", 1, 0, "", out, sizeof out, &err) != 0, "unterminated placeholder");
    CHECK(sd_output_path("{prompt}{prompt}{prompt}{prompt}", 1, 0, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz", out, 64, &err) != 0 &&
              strstr(err.msg, "too long"),
          "too long for the buffer");
    /* 80-byte cap on a UTF-8 boundary: 30 × "猫" (3 bytes) -> 26 cats = 78 bytes */
    char cats[128] = "";
    for (int i = 0; i < 30; i++) strcat(cats, "\xe7\x8c\xab");
    char sp[128];
    sd_sanitize_prompt(cats, sp, sizeof sp);
    CHECK(strlen(sp) == 78, "UTF-8 cap: %zu bytes", strlen(sp));
    sd_sanitize_prompt("a\xff" "b", sp, sizeof sp);
    CHECK(!strcmp(sp, "a_b"), "invalid UTF-8 byte: %s", sp);
    CHECK(sd_output_template_varies("x_{seed}.png") && sd_output_template_varies("{index}") && !sd_output_template_varies("{prompt}.png"),
          "template varies");
}

/* "{{index}}" is literal text, not a placeholder: several images into it are numbered like any fixed name. */
static void test_template_escapes(void)
{
    static const struct { const char *t; int varies; } V[] = {
        {"{{index}}.png", 0}, {"{{seed}}", 0}, {"a{{{{index}}", 0}, {"{{{index}}}.png", 1}, {"x-{seed}", 1},
        {"{prompt}-{{index}}", 0}, {"{index", 0}, {"}}{index}", 1},
    };
    for (size_t i = 0; i < sizeof V / sizeof *V; i++)
        CHECK(sd_output_template_varies(V[i].t) == V[i].varies, "varies(\"%s\") = %d", V[i].t, !V[i].varies);
    char sp[SD_PROMPT_PART_MAX + 1];
    sd_sanitize_prompt("red\xc2\x9b" "31m apple\xc2\x85", sp, sizeof sp);
    CHECK(!strcmp(sp, "red_31m_apple"), "C1 controls become '_': %s", sp);
    sd_sanitize_prompt("caf\xc3\xa9\xc2\xa0ok", sp, sizeof sp);
    CHECK(!strcmp(sp, "caf\xc3\xa9\xc2\xa0ok"), "U+00A0 kept: %s", sp);
}

/* A batch file over SD_BATCH_MAX_FILE is refused from its size, before any read (sparse: no disk used). */
static void test_oversized_file(const char *tmp)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/huge.txt", tmp);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    CHECK(truncate(path, 300LL << 20) == 0, "sparse 300 MiB file");
    sd_batch b;
    sd_err err = {0};
    int rc = sd_batch_parse_file(path, &b, &err);
    CHECK(rc != 0 && strstr(err.msg, "file too large (314572800 bytes, max 268435456)"), "300 MiB: rc %d '%s'", rc, err.msg);
    CHECK(truncate(path, SD_BATCH_MAX_FILE + 1) == 0, "cap + 1");
    rc = sd_batch_parse_file(path, &b, &err);
    CHECK(rc != 0 && strstr(err.msg, "(268435457 bytes, max 268435456)"), "cap + 1 byte: rc %d '%s'", rc, err.msg);
    unlink(path);
}

/* SDXL micro-conditioning keys: [h, w] / [top, left] pairs, the golden SDXL case.json as a line, and each
 * malformed value failing its own item with a message that names the key. */
static void test_sdxl_keys(void)
{
    const char *good = "{\"prompt\": \"a\", \"original_size\": [512, 384], \"crops_coords_top_left\": [16, 8],"
                       " \"target_size\": [ 1024 , 0 ]}\n{\"prompt\": \"b\", \"original_size\": null}\n";
    sd_batch b;
    sd_err err = {0};
    int rc = sd_batch_parse_mem(good, strlen(good), "x.jsonl", &b, &err);
    CHECK(rc == 0 && b.n == 2 && b.n_errors == 0, "sdxl keys: %s", rc ? err.msg : b.n && b.items[0].error ? b.items[0].error : "");
    if (rc == 0 && b.n == 2 && !b.n_errors) {
        const sd_batch_item *it = &b.items[0];
        CHECK(it->has_original_size && it->original_h == 512 && it->original_w == 384 && it->has_crop && it->crop_top == 16 &&
                  it->crop_left == 8 && it->has_target_size && it->target_h == 1024 && it->target_w == 0,
              "pairs: original %d,%d crop %d,%d target %d,%d", it->original_h, it->original_w, it->crop_top, it->crop_left,
              it->target_h, it->target_w);
        CHECK(it->n_set == 4 && !strcmp(it->set_key[1], "original_size") && !strcmp(it->set_value[1], "512,384") &&
                  !strcmp(it->set_value[3], "1024,0"),
              "generic settings of the pairs (%d)", it->n_set);
        CHECK(!b.items[1].has_original_size && !b.items[1].has_crop && !b.items[1].has_target_size, "null = not set");
    }
    if (rc == 0) sd_batch_free(&b);

    static const struct {
        const char *value, *want;
    } E[] = {
        {"\"original_size\": [64]", "\"original_size\" must be [height, width]: two integers 0..16384"},
        {"\"original_size\": \"64x64\"", "\"original_size\" must be [height, width]"},
        {"\"target_size\": [64, 64, 1]", "\"target_size\" must be [height, width]: exactly two integers"},
        {"\"target_size\": [64, 16385]", "\"target_size\": 16385 is outside 0..16384"},
        {"\"crops_coords_top_left\": [-1, 0]", "\"crops_coords_top_left\": -1 is outside 0..16384"},
        {"\"crops_coords_top_left\": [0.5, 0]", "\"crops_coords_top_left\": 0.5 is not an integer"},
        {"\"crops_coords_top_left\": {\"top\": 1}", "\"crops_coords_top_left\" must be [top, left]"},
        {"\"original_size\": [64, \"64\"]", "\"original_size\" must be [height, width]"},
    };
    for (size_t i = 0; i < sizeof E / sizeof *E; i++) {
        char buf[512];
        int n = snprintf(buf, sizeof buf, "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", %s}\n{\"prompt\": \"c\"}\n", E[i].value);
        rc = sd_batch_parse_mem(buf, (size_t)n, "m.jsonl", &b, &err);
        CHECK(rc == 0 && b.n == 3 && b.n_errors == 1 && b.items[1].error && !strncmp(b.items[1].error, "m.jsonl:2: ", 11) &&
                  strstr(b.items[1].error, E[i].want) && !b.items[2].error && !strcmp(b.items[2].prompt, "c"),
              "%s: got '%s', want '%s'", E[i].value, rc == 0 && b.n == 3 && b.items[1].error ? b.items[1].error : err.msg, E[i].want);
        if (rc == 0) sd_batch_free(&b);
    }

    if (sd_test_skip_shared("golden SDXL case.json as a batch line")) return;
    FILE *f = fopen(sd_test_path("golden/cases-sdxl/p12-tiny-sdxl-microcond/case.json"), "rb");
    CHECK(f != NULL, "cannot read golden/cases-sdxl/p12-tiny-sdxl-microcond/case.json");
    if (!f) return;
    static char line[65536];
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n') line[i] = ' ';
    rc = sd_batch_parse_mem(line, n, "p12.jsonl", &b, &err);
    CHECK(rc == 0 && b.n == 1 && !b.items[0].error, "p12 case.json line: %s", rc ? err.msg : b.items[0].error ? b.items[0].error : "");
    if (rc == 0 && b.n == 1 && !b.items[0].error) {
        const sd_batch_item *it = &b.items[0];
        CHECK(it->original_h == 512 && it->original_w == 384 && it->crop_top == 16 && it->crop_left == 8 && it->target_h == 64 &&
                  it->target_w == 64 && !it->negative_prompt,
              "p12 micro-conditioning");
    }
    if (rc == 0) sd_batch_free(&b);
}

/* "lora_apply" on a line: one of sd_lora_mode_parse's words, kept for that line; any other word fails the line. */
static void test_lora_apply_items(void)
{
    const char *text = "{\"prompt\": \"a\", \"lora_apply\": \"fly\"}\n"
                       "{\"prompt\": \"b\"}\n"
                       "{\"prompt\": \"c\", \"lora_apply\": \"fused\"}\n"
                       "{\"prompt\": \"d\", \"lora_apply\": 1}\n";
    sd_batch b;
    sd_err err = {0};
    int rc = sd_batch_parse_mem(text, strlen(text), "l.jsonl", &b, &err);
    CHECK(rc == 0 && b.n == 4, "lora_apply lines: %s", rc ? err.msg : "");
    if (rc || b.n != 4) {
        if (rc == 0) sd_batch_free(&b);
        return;
    }
    CHECK(b.items[0].lora_apply && !strcmp(b.items[0].lora_apply, "fly") && !b.items[0].error, "line 1: \"%s\"",
          b.items[0].lora_apply ? b.items[0].lora_apply : "(null)");
    CHECK(!b.items[1].lora_apply && !b.items[1].error, "line 2: no key, no mode");
    CHECK(b.items[2].error && strstr(b.items[2].error, "l.jsonl:3: \"lora_apply\": unknown value \"fused\" (expected auto|merge|fly)"),
          "line 3: '%s'", b.items[2].error ? b.items[2].error : "(no error)");
    CHECK(b.items[3].error && strstr(b.items[3].error, "l.jsonl:4: \"lora_apply\" must be a string"), "line 4: '%s'",
          b.items[3].error ? b.items[3].error : "(no error)");
    sd_batch_free(&b);
}

/* "preset" on a line fills what neither the line nor the command line sets (sd_preset_apply_item), as
 * --preset does on the command line; "none" runs the line without the command line's preset. */
static void test_preset_items(void)
{
    const char *text = "{\"prompt\": \"a\", \"preset\": \"turbo\"}\n"                                  /* 1 */
                       "{\"prompt\": \"b\", \"preset\": \"Lightning\", \"steps\": 2}\n"                /* 2 */
                       "{\"prompt\": \"c\", \"preset\": \"lcm\", \"sampler\": \"DPM++ 2M Karras\"}\n"   /* 3 */
                       "{\"prompt\": \"d\", \"preset\": \"turbo\", \"timestep_spacing\": \"leading\", \"cfg_scale\": 3}\n"
                       "{\"prompt\": \"e\", \"preset\": \"none\"}\n"                                   /* 5 */
                       "{\"prompt\": \"f\", \"preset\": null}\n"                                       /* 6 */
                       "{\"prompt\": \"g\", \"preset\": \"turbo\", \"sampler\": \"lcm\"}\n";            /* 7 */
    sd_batch b;
    sd_err err = {0};
    int rc = sd_batch_parse_mem(text, strlen(text), "p.jsonl", &b, &err);
    CHECK(rc == 0 && b.n == 7 && b.n_errors == 0, "preset lines: %s", rc ? err.msg : b.n_errors ? "errors" : "");
    if (rc || b.n != 7 || b.n_errors) {
        if (rc == 0) sd_batch_free(&b);
        return;
    }
    CHECK(!strcmp(b.items[0].preset, "turbo") && !strcmp(b.items[1].preset, "Lightning") && b.items[5].preset == NULL,
          "preset strings");
    CHECK(b.items[0].n_set == 2 && !strcmp(b.items[0].set_key[1], "preset") && !strcmp(b.items[0].set_value[1], "turbo"),
          "preset in the generic settings");
    struct {
        unsigned cli_set;
        sd_sampler sampler;
        sd_spacing spacing;
        sd_schedule schedule;
        int steps;
        float cfg;
    } want[7] = {
        {0, SD_SAMPLER_EULER_A, SD_SPACING_TRAILING, SD_SCHEDULE_DEFAULT, 1, 1.0f},
        {0, SD_SAMPLER_EULER, SD_SPACING_TRAILING, SD_SCHEDULE_DEFAULT, 2, 1.0f},
        {0, SD_SAMPLER_DPMPP_2M, SD_SPACING_DEFAULT, SD_SCHEDULE_KARRAS, 4, 1.5f},
        {0, SD_SAMPLER_EULER_A, SD_SPACING_LEADING, SD_SCHEDULE_DEFAULT, 1, 3.0f},
        {0, SD_SAMPLER_EULER_A, SD_SPACING_DEFAULT, SD_SCHEDULE_DEFAULT, 20, 7.5f},
        {0, SD_SAMPLER_DDIM, SD_SPACING_DEFAULT, SD_SCHEDULE_DEFAULT, 30, 5.0f},
        {0, SD_SAMPLER_LCM, SD_SPACING_DEFAULT, SD_SCHEDULE_DEFAULT, 1, 1.0f},
    };
    for (int k = 0; k < 7; k++) {
        /* the command line: --sampler ddim --steps 30 --cfg-scale 5 for line 6 (no preset: unchanged), nothing else */
        sd_gen_opts o;
        sd_gen_opts_default(&o);
        if (k == 5) { o.sampler = SD_SAMPLER_DDIM; o.steps = 30; o.cfg_scale = 5.0f; }
        const sd_batch_item *it = &b.items[k];
        /* the line's own keys first, as the CLI applies them */
        if (it->sampler) {
            sd_schedule implied = SD_SCHEDULE_DEFAULT;
            sd_sampler_parse(it->sampler, &o.sampler, &implied);
            if (implied == SD_SCHEDULE_KARRAS) o.schedule = implied;
        }
        if (it->timestep_spacing) sd_spacing_parse(it->timestep_spacing, &o.spacing);
        if (it->has_steps) o.steps = it->steps;
        if (it->has_cfg_scale) o.cfg_scale = (float)it->cfg_scale;
        sd_preset_apply_item(it, k == 5 ? SD_SET_SAMPLER | SD_SET_STEPS | SD_SET_CFG : 0, &o);
        CHECK(o.sampler == want[k].sampler && o.spacing == want[k].spacing && o.schedule == want[k].schedule &&
                  o.steps == want[k].steps && o.cfg_scale == want[k].cfg,
              "line %d: got %s/%s/%s/%d steps/cfg %g, want %s/%s/%s/%d/%g", k + 1, sd_sampler_name(o.sampler),
              sd_spacing_name(o.spacing), sd_schedule_name(o.schedule), o.steps, o.cfg_scale, sd_sampler_name(want[k].sampler),
              sd_spacing_name(want[k].spacing), sd_schedule_name(want[k].schedule), want[k].steps, want[k].cfg);
    }
    /* explicit command-line settings win over the line's preset; "none" undoes the command line's preset */
    sd_gen_opts o;
    sd_gen_opts_default(&o);
    o.cfg_scale = 4.0f;                              /* --cfg-scale 4 */
    sd_preset_apply(SD_PRESET_LCM, SD_SET_CFG, &o);   /* --preset lcm */
    sd_preset_apply_item(&b.items[0], SD_SET_CFG, &o); /* line 1: turbo */
    CHECK(o.sampler == SD_SAMPLER_EULER_A && o.spacing == SD_SPACING_TRAILING && o.steps == 1 && o.cfg_scale == 4.0f,
          "--preset lcm --cfg-scale 4, line preset turbo: %s/%d/%g", sd_sampler_name(o.sampler), o.steps, o.cfg_scale);
    sd_gen_opts_default(&o);
    sd_preset_apply(SD_PRESET_TURBO, 0, &o);           /* --preset turbo */
    sd_preset_apply_item(&b.items[4], 0, &o);          /* line 5: none */
    CHECK(o.sampler == SD_SAMPLER_EULER_A && o.spacing == SD_SPACING_DEFAULT && o.steps == 20 && o.cfg_scale == 7.5f,
          "--preset turbo, line preset none: %s/%s/%d/%g", sd_sampler_name(o.sampler), sd_spacing_name(o.spacing), o.steps,
          o.cfg_scale);
    sd_batch_free(&b);
}

int main(void)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/batch", sd_test_tmp());
    mkdir(tmp, 0755);
    test_jsonl_20(tmp);
    test_jsonl_errors();
    test_preset_items();
    test_lora_apply_items();
    test_plain();
    test_golden_case_line();
    test_sdxl_keys();
    test_output_path();
    test_template_escapes();
    test_oversized_file(tmp);
    TEST_MAIN_END();
}
