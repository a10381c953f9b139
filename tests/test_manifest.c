/* test_manifest.c — shard specs (--shard and the batch systems' variables), the flat JSON reader, manifest
 * records (format ↔ parse), and merging: latest record wins, missing / failed / duplicated items, torn lines. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdgen/batch.h"
#include "sdgen/manifest.h"
#include "testutil.h"

/* ---- shards ---- */

static void test_shard_parse(void)
{
    sd_shard s;
    sd_err e = {0};
    CHECK(sd_shard_parse("--shard", "2/4", &s, &e) == 0 && s.index == 2 && s.count == 4, "2/4: %s", e.msg);
    CHECK(sd_shard_parse("--shard", "0/1", &s, &e) == 0 && s.index == 0 && s.count == 1, "0/1: %s", e.msg);
    CHECK(sd_shard_parse("--shard", "99999/100000", &s, &e) == 0, "the largest count: %s", e.msg);
    static const struct { const char *text, *msg; } bad[] = {
        {"3/2", "shard index 3 is not below the shard count 2"},
        {"2/2", "shard index 2 is not below the shard count 2"},
        {"0/0", "the shard count must be at least 1"},
        {"-1/4", "the index \"-1\" is not a whole number"},
        {"1/-4", "the count \"-4\" is not a whole number"},
        {"a/4", "the index \"a\" is not a whole number"},
        {"1/4x", "the count \"4x\" is not a whole number"},
        {" 1/4", "the index \" 1\" is not a whole number"},
        {"1.0/4", "the index \"1.0\" is not a whole number"},
        {"1/100001", "the count \"100001\" is not a whole number in [1, 100000]"},
        {"99999999999999999999/4", "is not a whole number"},
        {"4", "expected I/N"},
        {"", "expected I/N"},
        {"1/2/3", "the count \"2/3\" is not a whole number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e = (sd_err){0};
        int rc = sd_shard_parse("--shard", bad[i].text, &s, &e);
        CHECK(rc == -1 && e.code == SD_ERR_INPUT && strstr(e.msg, bad[i].msg), "\"%s\": rc %d, \"%s\" (want \"%s\")",
              bad[i].text, rc, e.msg, bad[i].msg);
    }
}

/* A fake environment: "NAME=VALUE" strings, NULL-terminated. */
static const char *fake_get(void *user, const char *name)
{
    const char *const *env = user;
    size_t l = strlen(name);
    for (; *env; env++)
        if (!strncmp(*env, name, l) && (*env)[l] == '=') return *env + l + 1;
    return NULL;
}

static void env_case(const char *what, const char *const *env, int want_rc, int want_i, int want_n, const char *msg)
{
    sd_shard s;
    sd_err e = {0};
    int rc = sd_shard_from_env(fake_get, (void *)env, &s, &e);
    if (want_rc == 1)
        CHECK(rc == 1 && s.index == want_i && s.count == want_n && strstr(s.source, msg),
              "%s: rc %d, %d/%d from \"%s\" (want %d/%d from \"%s\"): %s", what, rc, s.index, s.count, s.source, want_i,
              want_n, msg, e.msg);
    else if (want_rc == 0)
        CHECK(rc == 0, "%s: rc %d (want 0: nothing set)", what, rc);
    else
        CHECK(rc == -1 && strstr(e.msg, msg), "%s: rc %d, \"%s\" (want \"%s\")", what, rc, e.msg, msg);
}

static void test_shard_env(void)
{
    const char *none[] = {"HOME=/root", "SDGEN_SHARD_COUNT=4", "AWS_BATCH_JOB_ARRAY_SIZE=3", NULL};
    env_case("nothing set (counts alone do nothing)", none, 0, 0, 0, "");
    const char *slurm[] = {"SLURM_ARRAY_TASK_ID=2", "SLURM_ARRAY_TASK_COUNT=4", "SLURM_ARRAY_TASK_MIN=0",
                           "SLURM_ARRAY_TASK_MAX=3", "SLURM_ARRAY_TASK_STEP=1", NULL};
    env_case("slurm 0-3", slurm, 1, 2, 4, "SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_COUNT=4");
    const char *slurm1[] = {"SLURM_ARRAY_TASK_ID=4", "SLURM_ARRAY_TASK_COUNT=4", "SLURM_ARRAY_TASK_MIN=1",
                            "SLURM_ARRAY_TASK_MAX=4", NULL};
    env_case("slurm 1-4 (MIN respected)", slurm1, 1, 3, 4, "SLURM_ARRAY_TASK_MIN=1");
    const char *nomin[] = {"SLURM_ARRAY_TASK_ID=1", "SLURM_ARRAY_TASK_COUNT=2", NULL};
    env_case("slurm without MIN/MAX", nomin, 1, 1, 2, "SLURM_ARRAY_TASK_ID=1");
    const char *resub[] = {"SLURM_ARRAY_TASK_ID=2", "SLURM_ARRAY_TASK_COUNT=1", "SLURM_ARRAY_TASK_MIN=2",
                           "SLURM_ARRAY_TASK_MAX=2", NULL};
    env_case("slurm re-submitted index", resub, -1, 0, 0, "in an array of one task");
    const char *noc[] = {"SLURM_ARRAY_TASK_ID=2", NULL};
    env_case("slurm index without count", noc, -1, 0, 0, "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not");
    const char *step[] = {"SLURM_ARRAY_TASK_ID=4", "SLURM_ARRAY_TASK_COUNT=4", "SLURM_ARRAY_TASK_MIN=0",
                          "SLURM_ARRAY_TASK_MAX=12", "SLURM_ARRAY_TASK_STEP=4", NULL};
    env_case("slurm stepped array", step, -1, 0, 0, "SLURM_ARRAY_TASK_STEP=4");
    const char *gaps[] = {"SLURM_ARRAY_TASK_ID=3", "SLURM_ARRAY_TASK_COUNT=2", "SLURM_ARRAY_TASK_MIN=1",
                          "SLURM_ARRAY_TASK_MAX=3", NULL};
    env_case("slurm list 1,3", gaps, -1, 0, 0, "the array 1-3 is not one range of SLURM_ARRAY_TASK_COUNT=2 tasks");
    const char *below[] = {"SLURM_ARRAY_TASK_ID=0", "SLURM_ARRAY_TASK_COUNT=2", "SLURM_ARRAY_TASK_MIN=1", NULL};
    env_case("slurm id below min", below, -1, 0, 0, "is below SLURM_ARRAY_TASK_MIN=1");
    const char *nan[] = {"SLURM_ARRAY_TASK_ID=two", "SLURM_ARRAY_TASK_COUNT=4", NULL};
    env_case("slurm id not a number", nan, -1, 0, 0, "SLURM_ARRAY_TASK_ID=\"two\" is not a whole number");
    const char *empty[] = {"SLURM_ARRAY_TASK_ID=", "SLURM_ARRAY_TASK_COUNT=4", NULL};
    env_case("slurm id empty", empty, -1, 0, 0, "SLURM_ARRAY_TASK_ID=\"\" is not a whole number");
    const char *k8s[] = {"JOB_COMPLETION_INDEX=7", "SDGEN_SHARD_COUNT=8", NULL};
    env_case("kubernetes", k8s, 1, 7, 8, "JOB_COMPLETION_INDEX=7, SDGEN_SHARD_COUNT=8");
    const char *k8s_no[] = {"JOB_COMPLETION_INDEX=7", NULL};
    env_case("kubernetes without count", k8s_no, -1, 0, 0, "JOB_COMPLETION_INDEX is set but SDGEN_SHARD_COUNT is not");
    const char *k8s_big[] = {"JOB_COMPLETION_INDEX=8", "SDGEN_SHARD_COUNT=8", NULL};
    env_case("kubernetes index = count", k8s_big, -1, 0, 0, "shard index 8 is not below the shard count 8");
    const char *k8s_zero[] = {"JOB_COMPLETION_INDEX=0", "SDGEN_SHARD_COUNT=0", NULL};
    env_case("kubernetes count 0", k8s_zero, -1, 0, 0, "the shard count must be at least 1");
    const char *aws[] = {"AWS_BATCH_JOB_ARRAY_INDEX=0", "AWS_BATCH_JOB_ARRAY_SIZE=10", NULL};
    env_case("aws", aws, 1, 0, 10, "AWS_BATCH_JOB_ARRAY_INDEX=0, AWS_BATCH_JOB_ARRAY_SIZE=10");
    const char *aws_no[] = {"AWS_BATCH_JOB_ARRAY_INDEX=1", NULL};
    env_case("aws without size", aws_no, -1, 0, 0, "AWS_BATCH_JOB_ARRAY_INDEX is set but AWS_BATCH_JOB_ARRAY_SIZE is not");
    const char *aws_neg[] = {"AWS_BATCH_JOB_ARRAY_INDEX=-1", "AWS_BATCH_JOB_ARRAY_SIZE=10", NULL};
    env_case("aws negative", aws_neg, -1, 0, 0, "AWS_BATCH_JOB_ARRAY_INDEX=\"-1\" is not a whole number");
    const char *both[] = {"AWS_BATCH_JOB_ARRAY_INDEX=1", "AWS_BATCH_JOB_ARRAY_SIZE=2", "SLURM_ARRAY_TASK_ID=0",
                          "SLURM_ARRAY_TASK_COUNT=3", NULL};
    env_case("slurm before aws", both, 1, 0, 3, "SLURM_ARRAY_TASK_ID=0");
}

/* ---- flat JSON ---- */

static void test_json_flat(void)
{
    sd_json_field f[8];
    char msg[200];
    const char *ok = "{\"a\": \"x\\u00e9\\n\", \"b\" :18446744073709551615, \"c\":true,\"d\":null, \"e\": -1.5e3}";
    int n = sd_json_flat_parse(ok, strlen(ok), f, 8, msg, sizeof msg);
    CHECK(n == 5, "flat object: %d fields (%s)", n, msg);
    if (n == 5) {
        CHECK(!strcmp(f[0].key, "a") && f[0].type == SD_JSON_STRING && !strcmp(f[0].value, "x\xc3\xa9\n"),
              "string decoded: \"%s\"", f[0].value);
        CHECK(f[1].type == SD_JSON_NUMBER && !strcmp(f[1].value, "18446744073709551615"), "number kept as written");
        CHECK(f[2].type == SD_JSON_TRUE && f[3].type == SD_JSON_NULL && !f[3].value, "true, null");
        CHECK(f[4].type == SD_JSON_NUMBER && !strcmp(f[4].value, "-1.5e3"), "real kept as written");
        sd_json_fields_free(f, n);
    }
    static const struct { const char *text, *msg; } bad[] = {
        {"{\"a\":1,\"a\":2}", "duplicate key \"a\""},
        {"{\"a\":[1]}", "\"a\": nested value"},
        {"{\"a\":{}}", "\"a\": nested value"},
        {"{\"a\":1} x", "unexpected text after the object"},
        {"{\"a\":1", "',' or '}' expected"},
        {"{\"a\":\"x", "unterminated string"},
        {"[1]", "not a JSON object"},
        {"{\"a\":01}", "',' or '}' expected"},
        {"{\"a\":\xff}", "not valid UTF-8 (byte 6)"},
        {"{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9}", "too many keys (max 8)"},
        {"{\"a\":tru}", "unexpected character"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        n = sd_json_flat_parse(bad[i].text, strlen(bad[i].text), f, 8, msg, sizeof msg);
        CHECK(n == -1 && strstr(msg, bad[i].msg), "bad JSON %zu: %d \"%s\" (want \"%s\")", i, n, msg, bad[i].msg);
    }
    n = sd_json_flat_parse("{\"a\":1\0}", 8, f, 8, msg, sizeof msg);
    CHECK(n == -1 && strstr(msg, "NUL"), "NUL byte: %d \"%s\"", n, msg);
}

/* ---- records ---- */

static const char *SHA_A = "1111111111111111111111111111111111111111111111111111111111111111";
static const char *SHA_B = "2222222222222222222222222222222222222222222222222222222222222222";

static sd_manifest_rec ok_rec(int item, int image, int images, double t)
{
    sd_manifest_rec r;
    memset(&r, 0, sizeof r);
    r.item = item;
    r.image = image;
    r.images = images;
    r.items = 5;
    r.index = item + 1;
    r.line = item + 2;
    r.shard = "0/1";
    r.status = SD_MREC_OK;
    r.prompt = "a \"quoted\"\tprompt\nline two \xe2\x82\xac";
    r.negative_prompt = "";
    r.has_seed = 1;
    r.seed = UINT64_MAX;
    r.steps = 20;
    r.has_cfg = 1;
    r.cfg_scale = 7.5;
    r.sampler = "euler_a";
    r.width = r.height = 64;
    r.output = "out/1.png";
    r.sha256 = (char *)SHA_A;
    r.parameters = "p\nSteps: 20";
    r.batch_sha256 = (char *)SHA_B;
    r.seconds = 0.25;
    r.time = t;
    return r;
}

static char *fmt(const sd_manifest_rec *r)
{
    char *line = NULL;
    size_t n = 0;
    sd_err e = {0};
    CHECK(sd_manifest_format(r, &line, &n, &e) == 0, "format: %s", e.msg);
    CHECK(line && n > 0 && line[n - 1] == '\n' && !memchr(line, '\n', n - 1), "one line with its newline");
    return line;
}

static void test_records(void)
{
    sd_manifest_rec r = ok_rec(3, 0, 1, 1700000000.125), back;
    char *line = fmt(&r);
    if (!line) return;
    char msg[300];
    int rc = sd_manifest_parse_line(line, strlen(line) - 1, &back, msg, sizeof msg);
    CHECK(rc == 0, "parse back: %s (%s)", msg, line);
    if (rc == 0) {
        CHECK(back.item == 3 && back.image == 0 && back.images == 1 && back.items == 5 && back.index == 4 &&
                  back.line == 5, "numbers back");
        CHECK(back.status == SD_MREC_OK && !strcmp(back.prompt, r.prompt) && !strcmp(back.negative_prompt, ""),
              "prompt back: \"%s\"", back.prompt);
        CHECK(back.has_seed && back.seed == UINT64_MAX, "a 64-bit seed survives: %llu", (unsigned long long)back.seed);
        CHECK(back.has_cfg && back.cfg_scale == 7.5 && back.steps == 20 && back.width == 64, "settings back");
        CHECK(!strcmp(back.sha256, SHA_A) && !strcmp(back.output, "out/1.png") && !strcmp(back.parameters, r.parameters),
              "output, sha256, parameters back");
        CHECK(back.time == 1700000000.125 && back.seconds == 0.25, "times back");
        sd_manifest_rec_free(&back);
    }
    free(line);
    /* bytes that are not UTF-8 are written as \u00XX: the line stays valid JSON */
    r.message = "bad \xff byte";
    r.status = SD_MREC_FAILED;
    line = fmt(&r);
    if (line) {
        CHECK(strstr(line, "\"message\":\"bad \\u00ff byte\"") != NULL, "invalid byte escaped: %s", line);
        rc = sd_manifest_parse_line(line, strlen(line) - 1, &back, msg, sizeof msg);
        CHECK(rc == 0 && back.status == SD_MREC_FAILED, "failed record parses: %s", msg);
        if (rc == 0) sd_manifest_rec_free(&back);
        free(line);
    }
    static const struct { const char *text, *msg; } bad[] = {
        {"{\"image\":0,\"items\":2,\"status\":\"failed\",\"message\":\"m\",\"batch_sha256\":\"%s\"}", "missing \"item\""},
        {"{\"item\":2,\"image\":0,\"items\":2,\"status\":\"failed\",\"message\":\"m\",\"batch_sha256\":\"%s\"}",
         "\"item\" 2 is not below \"items\" 2"},
        {"{\"item\":0,\"image\":0,\"items\":2,\"status\":\"done\",\"batch_sha256\":\"%s\"}", "\"status\" must be"},
        {"{\"item\":0,\"image\":0,\"items\":2,\"status\":\"failed\",\"batch_sha256\":\"%s\"}", "needs \"message\""},
        {"{\"item\":0,\"image\":0,\"items\":2,\"status\":\"ok\",\"batch_sha256\":\"%s\"}", "a ok record needs \"output\""},
        {"{\"item\":-1,\"image\":0,\"items\":2,\"status\":\"failed\",\"message\":\"m\",\"batch_sha256\":\"%s\"}",
         "\"item\" must be a whole number in [0, 99999]"},
        {"{\"item\":0,\"image\":3,\"images\":2,\"items\":2,\"status\":\"failed\",\"message\":\"m\",\"batch_sha256\":\"%s\"}",
         "\"image\" 3 is not below \"images\" 2"},
        {"{\"item\":0,\"image\":0,\"items\":2,\"status\":\"failed\",\"message\":7,\"batch_sha256\":\"%s\"}",
         "\"message\" must be a string"},
        {"{\"item\":0,\"image\":0,\"items\":2,\"status\":\"failed\",\"message\":\"m\",\"batch_sha256\":\"%.63s\"}",
         "\"batch_sha256\" must be 64 lowercase hex digits"},
        {"{\"item\":0,\"image\":0,\"items\":2,\"status\":\"failed\",\"message\":\"m\",\"seed\":-1,\"batch_sha256\":\"%s\"}",
         "\"seed\" must be a whole number"},
        {"{\"item\":0.5,\"image\":0,\"items\":2,\"status\":\"failed\",\"message\":\"m\",\"batch_sha256\":\"%s\"}",
         "\"item\" must be a whole number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[512];
        snprintf(text, sizeof text, bad[i].text, SHA_B);
        rc = sd_manifest_parse_line(text, strlen(text), &back, msg, sizeof msg);
        CHECK(rc == -1 && strstr(msg, bad[i].msg), "bad record %zu: rc %d \"%s\" (want \"%s\")", i, rc, msg, bad[i].msg);
        if (rc == 0) sd_manifest_rec_free(&back);
    }
    /* unknown keys (a newer writer) are ignored */
    char text[512];
    snprintf(text, sizeof text, "{\"item\":0,\"image\":0,\"items\":2,\"status\":\"failed\",\"message\":\"m\","
                                "\"future\":[1,2],\"batch_sha256\":\"%s\"}", SHA_B);
    rc = sd_manifest_parse_line(text, strlen(text), &back, msg, sizeof msg);
    CHECK(rc == -1 && strstr(msg, "nested value"), "a nested unknown value is still not a flat record: %s", msg);
    snprintf(text, sizeof text, "{\"item\":0,\"image\":0,\"items\":2,\"status\":\"failed\",\"message\":\"m\","
                                "\"future\":1,\"batch_sha256\":\"%s\"}", SHA_B);
    rc = sd_manifest_parse_line(text, strlen(text), &back, msg, sizeof msg);
    CHECK(rc == 0, "an unknown scalar key is ignored: %s", msg);
    if (rc == 0) sd_manifest_rec_free(&back);
}

/* ---- merging ---- */

typedef struct { char lines[16][400]; int n; } reports;

static void collect(void *user, const char *line)
{
    reports *r = user;
    if (r->n < 16) snprintf(r->lines[r->n++], sizeof r->lines[0], "%s", line);
}

static int reported(const reports *r, const char *s)
{
    for (int i = 0; i < r->n; i++)
        if (strstr(r->lines[i], s)) return 1;
    return 0;
}

static void append(char *buf, size_t cap, const sd_manifest_rec *r)
{
    char *line = fmt(r);
    if (line && strlen(buf) + strlen(line) < cap) strcat(buf, line);
    free(line);
}

static void test_merge(void)
{
    /* 5 items: 0 ok; 1 failed, then ok in a later file (latest wins); 2 two images, one missing; 3 ok twice in
     * two files (duplicated); 4 no record at all */
    static char a[8192], b[8192];
    a[0] = b[0] = 0;
    sd_manifest_rec r = ok_rec(0, 0, 1, 100);
    append(a, sizeof a, &r);
    r = ok_rec(1, 0, 1, 101);
    r.status = SD_MREC_FAILED;
    r.message = "it broke";
    append(a, sizeof a, &r);
    r = ok_rec(2, 1, 2, 102);
    append(a, sizeof a, &r);
    r = ok_rec(3, 0, 1, 103);
    append(a, sizeof a, &r);
    strcat(a, "{\"item\":4,\"ima"); /* torn: a writer killed inside write(), then a rerun's '\n' */
    strcat(a, "\n");
    r = ok_rec(1, 0, 1, 200);
    append(b, sizeof b, &r);
    r = ok_rec(3, 0, 1, 201);
    r.output = "out/3.png";
    append(b, sizeof b, &r);
    sd_manifest_set m;
    sd_manifest_set_init(&m);
    sd_err e = {0};
    CHECK(sd_manifest_add_mem(&m, a, strlen(a), "a.jsonl", &e) == 0, "add a: %s", e.msg);
    CHECK(sd_manifest_add_mem(&m, b, strlen(b), "b.jsonl", &e) == 0, "add b: %s", e.msg);
    CHECK(m.n_records == 6 && m.n_torn == 1 && !strcmp(m.torn_first, "a.jsonl:5"), "6 records, 1 torn at a.jsonl:5: %d, %d, %s",
          m.n_records, m.n_torn, m.torn_first);
    sd_manifest_summary s;
    reports rep = {0};
    CHECK(sd_manifest_summarize(&m, &s, collect, &rep, &e) == 0, "summarize: %s", e.msg);
    CHECK(s.items == 5 && s.complete == 3 && s.failed == 0 && s.missing == 2 && s.duplicated == 1 && s.images == 4,
          "summary: items %d complete %d failed %d missing %d duplicated %d images %d", s.items, s.complete, s.failed,
          s.missing, s.duplicated, s.images);
    CHECK(reported(&rep, "missing: item 2 (line 4): 1 of its 2 images have no record"), "item 2's missing image reported");
    CHECK(reported(&rep, "missing: 1 of 5 items have no record: 4"), "item 4 reported");
    CHECK(reported(&rep, "duplicated: item 3 (line 5) image 0 was generated 2 times (a.jsonl:4, b.jsonl:2)"),
          "item 3 duplicated");
    CHECK(!reported(&rep, "failed"), "item 1's failure was superseded");
    const sd_manifest_entry **v;
    size_t n;
    CHECK(sd_manifest_sorted(&m, &v, &n, &e) == 0 && n == 4, "sorted: %zu", n);
    if (n == 4) {
        CHECK(v[0]->rec.item == 0 && v[1]->rec.item == 1 && v[2]->rec.item == 2 && v[3]->rec.item == 3, "order");
        CHECK(v[1]->rec.status == SD_MREC_OK && v[1]->file == 1, "item 1: the later ok record wins");
        CHECK(!strcmp(v[3]->rec.output, "out/3.png") && v[3]->file == 1, "item 3: the later record wins");
    }
    free(v);
    /* a record of another batch */
    char other[1024] = "";
    r = ok_rec(0, 0, 1, 300);
    r.batch_sha256 = (char *)SHA_A;
    append(other, sizeof other, &r);
    e = (sd_err){0};
    CHECK(sd_manifest_add_mem(&m, other, strlen(other), "c.jsonl", &e) == -1 &&
              strstr(e.msg, "c.jsonl:1: a record of another batch"), "another batch: %s", e.msg);
    sd_manifest_set_free(&m);

    /* within one file the later line wins even with an earlier time (a clock set back) */
    a[0] = 0;
    r = ok_rec(0, 0, 1, 500);
    r.status = SD_MREC_FAILED;
    r.message = "first";
    append(a, sizeof a, &r);
    r = ok_rec(0, 0, 1, 400);
    append(a, sizeof a, &r);
    sd_manifest_set_init(&m);
    CHECK(sd_manifest_add_mem(&m, a, strlen(a), "d.jsonl", &e) == 0, "add d: %s", e.msg);
    CHECK(sd_manifest_sorted(&m, &v, &n, &e) == 0 && n == 1 && v[0]->rec.status == SD_MREC_OK, "later line wins");
    free(v);
    sd_manifest_set_free(&m);

    /* lines that are not records */
    static const struct { const char *text, *msg; } bad[] = {
        {"hello\n", "x.jsonl:1: not a manifest record: not a JSON object"},
        {"\n\n[1,2]\n", "x.jsonl:3: not a manifest record"},
        {"{\"item\":0}\n", "x.jsonl:1: not a manifest record: missing \"image\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sd_manifest_set_init(&m);
        e = (sd_err){0};
        int rc = sd_manifest_add_mem(&m, bad[i].text, strlen(bad[i].text), "x.jsonl", &e);
        CHECK(rc == -1 && strstr(e.msg, bad[i].msg), "bad file %zu: \"%s\" (want \"%s\")", i, e.msg, bad[i].msg);
        sd_manifest_set_free(&m);
    }
    /* no records at all: reported, nothing complete */
    sd_manifest_set_init(&m);
    CHECK(sd_manifest_add_mem(&m, "", 0, "empty.jsonl", &e) == 0, "empty file reads");
    rep.n = 0;
    CHECK(sd_manifest_summarize(&m, &s, collect, &rep, &e) == 0 && s.items == 0 && reported(&rep, "no records at all"),
          "empty: reported");
    sd_manifest_set_free(&m);
}

/* The writer: a torn last line gets its newline before the next record. */
static void test_writer(const char *tmp)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/w.jsonl", tmp);
    FILE *f = fopen(path, "wb");
    if (!f) {
        CHECK(0, "cannot create %s", path);
        return;
    }
    fputs("{\"item\":0,\"ima", f);
    fclose(f);
    sd_manifest_writer w;
    sd_err e = {0};
    CHECK(sd_manifest_open(&w, path, &e) == 0, "open: %s", e.msg);
    sd_manifest_rec r = ok_rec(1, 0, 1, 10);
    CHECK(sd_manifest_append(&w, &r, &e) == 0, "append: %s", e.msg);
    sd_manifest_close(&w);
    sd_manifest_set m;
    sd_manifest_set_init(&m);
    CHECK(sd_manifest_add_file(&m, path, &e) == 0 && m.n_records == 1 && m.n_torn == 1, "read back: %s, %d records, %d torn",
          e.msg, m.n_records, m.n_torn);
    sd_manifest_set_free(&m);
    CHECK(sd_manifest_open(&w, tmp, &e) == -1 && strstr(e.msg, "cannot open the manifest"), "a folder: %s", e.msg);
}

int main(void)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/manifest", sd_test_tmp());
    mkdir(tmp, 0755);
    test_shard_parse();
    test_shard_env();
    test_json_flat();
    test_records();
    test_merge();
    test_writer(tmp);
    TEST_MAIN_END();
}
