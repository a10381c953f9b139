/* test_api.c — the public library API (include/sdgen.h): status codes and messages for bad models and
 * bad parameters, the progress callback, cancellation by flag and by callback, PNG output with its
 * parameters chunk, the thread option, and golden cases (txt2img and image-to-image, from a file and from
 * a buffer) through the API against the reference images.
 * The demo model in models/ needs nothing else; the golden part needs the shared reference data and,
 * when that is absent, the test reports a skip (exit 77) after running the rest. */
#include "sdgen.h"

#include "golden_cli.h"
#include "sdgen/image.h"
#include "sdgen/ops.h"
#include "sdgen/params.h"

#define SKIP_CODE 77

static char g_demo[4096];

static int contains(const char *s, const char *sub) { return s && sub && strstr(s, sub) != NULL; }

/* ---- callbacks ---- */

typedef struct steps_seen {
    int calls, last, total, increasing;
    int cancel_at;                  /* set *flag at this step (0: never) */
    volatile sig_atomic_t flag;
} steps_seen;

static void record_step(int step, int total, void *user)
{
    steps_seen *s = user;
    if (step != s->last + 1) s->increasing = 0;
    s->last = step;
    s->total = total;
    s->calls++;
    if (s->cancel_at && step == s->cancel_at) s->flag = 1;
}

static int cancel_after_two(void *user)
{
    const steps_seen *s = user;
    return s->calls >= 2;
}

/* ---- helpers ---- */

/* Pixels of a and b (w x h x 3): every value within max_lsb and at most 0.2% differing (the golden
 * image tolerance of tests/golden_cli.h). */
static void compare_rgb(const char *what, const uint8_t *a, const uint8_t *b, int w, int h, int max_lsb)
{
    long n = (long)w * h * 3, ndiff = 0;
    int maxd = 0;
    for (long i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d) ndiff++;
        if (d > maxd) maxd = d;
    }
    printf("%s: max diff %d LSB, %ld of %ld values differ\n", what, maxd, ndiff, n);
    if (max_lsb == 0) CHECK(maxd == 0, "%s: %ld values differ (max %d), expected identical", what, ndiff, maxd);
    else CHECK(maxd <= max_lsb && ndiff * 500 <= n, "%s: max diff %d, %ld of %ld differ", what, maxd, ndiff, n);
}

static sdgen_ctx *open_demo(void)
{
    sdgen_ctx *ctx = NULL;
    int rc = sdgen_open(g_demo, NULL, &ctx);
    CHECK(rc == SDGEN_OK, "open %s: %d %s", g_demo, rc, sdgen_errmsg(ctx));
    if (rc) {
        sdgen_close(ctx);
        return NULL;
    }
    return ctx;
}

static sdgen_params demo_params(int steps)
{
    sdgen_params p = sdgen_params_default();
    p.prompt = "a small yellow star at the top, black background";
    p.seed = 7;
    p.steps = steps;
    p.sampler = "ddim";
    return p;
}

/* ---- tests ---- */

static void test_statuses(void)
{
    CHECK(!strcmp(sdgen_status_string(SDGEN_OK), "ok"), "status string of OK: %s", sdgen_status_string(SDGEN_OK));
    CHECK(!strcmp(sdgen_status_string(SDGEN_ERR_NOMEM), "out of memory"), "NOMEM: %s",
          sdgen_status_string(SDGEN_ERR_NOMEM));
    CHECK(!strcmp(sdgen_status_string(99), "unknown status"), "99: %s", sdgen_status_string(99));
    int ma, mi, pa;
    char end;
    CHECK(sscanf(sdgen_version(), "%d.%d.%d%c", &ma, &mi, &pa, &end) == 3, "version \"%s\"", sdgen_version());
    CHECK(contains(sdgen_errmsg(NULL), "no sdgen handle"), "errmsg(NULL): %s", sdgen_errmsg(NULL));
    CHECK(sdgen_open(g_demo, NULL, NULL) == SDGEN_ERR_INPUT, "open with out = NULL");
    sdgen_close(NULL);
    sdgen_image_free(NULL);
}

static void test_bad_open(void)
{
    const char *bad = "/nonexistent-dir/no-such-model.safetensors";
    sdgen_ctx *ctx = NULL;
    int rc = sdgen_open(bad, NULL, &ctx);
    CHECK(rc == SDGEN_ERR_INPUT, "missing model: status %d, want SDGEN_ERR_INPUT", rc);
    CHECK(ctx != NULL, "missing model: no handle for the message");
    CHECK(contains(sdgen_errmsg(ctx), bad), "missing model: message does not name the file: \"%s\"", sdgen_errmsg(ctx));
    printf("missing model: \"%s\"\n", sdgen_errmsg(ctx));
    CHECK(!strcmp(sdgen_model_path(ctx), ""), "model path after a failed open: \"%s\"", sdgen_model_path(ctx));
    sdgen_params p = sdgen_params_default();
    sdgen_image img;
    rc = sdgen_generate(ctx, &p, &img);
    CHECK(rc == SDGEN_ERR_INPUT && contains(sdgen_errmsg(ctx), "no model"), "generate on a failed handle: %d \"%s\"",
          rc, sdgen_errmsg(ctx));
    int w = 0, h = 0;
    CHECK(sdgen_default_size(ctx, &w, &h) == SDGEN_ERR_INPUT, "default size on a failed handle");
    sdgen_close(ctx);

    /* a tiny autoencoder that is not there: the open fails naming it, and the handle has no model */
    sdgen_model_opts mo = sdgen_model_opts_default();
    mo.vae_decoder = "/nonexistent-dir/taesd";
    rc = sdgen_open(g_demo, &mo, &ctx);
    CHECK(rc == SDGEN_ERR_INPUT && contains(sdgen_errmsg(ctx), "/nonexistent-dir/taesd"),
          "missing vae_decoder: status %d \"%s\"", rc, sdgen_errmsg(ctx));
    CHECK(!strcmp(sdgen_model_path(ctx), ""), "model path after a failed vae_decoder: \"%s\"", sdgen_model_path(ctx));
    sdgen_close(ctx);

    /* a file that is not a model */
    char junk[4200];
    snprintf(junk, sizeof junk, "%s/api-junk.safetensors", sd_test_tmp());
    FILE *f = fopen(junk, "wb");
    CHECK(f != NULL, "cannot create %s", junk);
    if (f) {
        fputs("not a safetensors file", f);
        fclose(f);
        rc = sdgen_open(junk, NULL, &ctx);
        CHECK(rc == SDGEN_ERR_INPUT && contains(sdgen_errmsg(ctx), junk), "junk model: %d \"%s\"", rc,
              sdgen_errmsg(ctx));
        sdgen_close(ctx);
    }

    mo = sdgen_model_opts_default();
    mo.threads = -1;
    rc = sdgen_open(g_demo, &mo, &ctx);
    CHECK(rc == SDGEN_ERR_INPUT && contains(sdgen_errmsg(ctx), "threads"), "threads -1: %d \"%s\"", rc,
          sdgen_errmsg(ctx));
    sdgen_close(ctx);
    mo = sdgen_model_opts_default();
    mo.weights = 5;
    rc = sdgen_open(g_demo, &mo, &ctx);
    CHECK(rc == SDGEN_ERR_INPUT && contains(sdgen_errmsg(ctx), "weights"), "weights 5: %d \"%s\"", rc,
          sdgen_errmsg(ctx));
    sdgen_close(ctx);
    mo = sdgen_model_opts_default();
    mo.vocab_path = "/nonexistent-dir/vocab.json";
    rc = sdgen_open(g_demo, &mo, &ctx);
    CHECK(rc == SDGEN_ERR_INPUT && contains(sdgen_errmsg(ctx), "/nonexistent-dir/vocab.json"), "bad vocab: %d \"%s\"",
          rc, sdgen_errmsg(ctx));
    sdgen_close(ctx);

    /* no path: $SDGEN_MODEL, then the demo model */
    setenv("SDGEN_MODEL", bad, 1);
    rc = sdgen_open(NULL, NULL, &ctx);
    CHECK(rc == SDGEN_ERR_INPUT && contains(sdgen_errmsg(ctx), bad), "SDGEN_MODEL=%s: %d \"%s\"", bad, rc,
          sdgen_errmsg(ctx));
    sdgen_close(ctx);
    unsetenv("SDGEN_MODEL");
    rc = sdgen_open(NULL, NULL, &ctx);
    const char *mp = sdgen_model_path(ctx);
    size_t ml = strlen(mp), sl = strlen("/models/demo.safetensors");
    CHECK(rc == SDGEN_OK && ml > sl && !strcmp(mp + ml - sl, "/models/demo.safetensors"),
          "default model: %d \"%s\" path \"%s\"", rc, sdgen_errmsg(ctx), mp);
    sdgen_close(ctx);
}

/* A refused call: the status, a message naming the problem, no image and no step run. */
static void expect_refused(sdgen_ctx *ctx, const char *what, sdgen_params p, int want, const char *msg)
{
    steps_seen s = {.increasing = 1};
    p.progress = record_step;
    p.progress_user = &s;
    sdgen_image img;
    int rc = sdgen_generate(ctx, &p, &img);
    CHECK(rc == want && contains(sdgen_errmsg(ctx), msg), "%s: status %d (want %d), message \"%s\" (want \"%s\" in it)",
          what, rc, want, sdgen_errmsg(ctx), msg);
    CHECK(img.rgb == NULL && s.calls == 0, "%s: an image or steps after a refused call (%d steps)", what, s.calls);
    printf("%-12s -> %s: %s\n", what, sdgen_status_string(rc), sdgen_errmsg(ctx));
}

static void test_bad_params(sdgen_ctx *ctx)
{
    sdgen_params p;
    p = demo_params(2), p.steps = 0;
    expect_refused(ctx, "steps 0", p, SDGEN_ERR_INPUT, "steps must be between 1 and 1000 (got 0)");
    p = demo_params(2), p.width = 12;
    expect_refused(ctx, "width 12", p, SDGEN_ERR_INPUT, "multiples of 8 (got 12x64)");
    p = demo_params(2), p.height = -8;
    expect_refused(ctx, "height -8", p, SDGEN_ERR_INPUT, "multiples of 8");
    p = demo_params(2), p.cfg_scale = 101;
    expect_refused(ctx, "cfg 101", p, SDGEN_ERR_INPUT, "cfg_scale must be between 0 and 100");
    p = demo_params(2), p.sampler = "bogus";
    expect_refused(ctx, "sampler", p, SDGEN_ERR_INPUT, "unknown sampler \"bogus\"");
    p = demo_params(2), p.schedule = "weekly";
    expect_refused(ctx, "schedule", p, SDGEN_ERR_INPUT, "unknown schedule \"weekly\"");
    p = demo_params(2), p.rng = "gpu2";
    expect_refused(ctx, "rng", p, SDGEN_ERR_INPUT, "\"gpu2\"");
    p = demo_params(2), p.sampler = "euler", p.eta = 0.3;
    expect_refused(ctx, "eta with euler", p, SDGEN_ERR_INPUT, "only the ddim sampler has an eta");
    p = demo_params(2), p.sampler = "ddim", p.eta = 1.5;
    expect_refused(ctx, "eta 1.5", p, SDGEN_ERR_INPUT, "1.5");
    p = demo_params(2), p.prediction = "x0";
    expect_refused(ctx, "prediction", p, SDGEN_ERR_INPUT, "\"x0\"");
    p = demo_params(2), p.clip_skip = 99;
    expect_refused(ctx, "clip skip 99", p, SDGEN_ERR_INPUT, "clip skip must be between 1 and");
    p = demo_params(2), p.prompt = "bad \xC3\x28 byte";
    expect_refused(ctx, "bad UTF-8", p, SDGEN_ERR_INPUT, "UTF-8");
    p = demo_params(2), p.max_memory = 1000;
    expect_refused(ctx, "memory", p, SDGEN_ERR_NOMEM, "of activation memory but only");
    p = demo_params(2), p.init_rgb = (const uint8_t *)"abc";
    expect_refused(ctx, "init 0x0", p, SDGEN_ERR_INPUT, "init image buffer: size 0x0");
    p = demo_params(2), p.init_rgb = (const uint8_t *)"abc", p.init_width = p.init_height = 1, p.init_image_path = "x.png";
    expect_refused(ctx, "two inits", p, SDGEN_ERR_INPUT, "not both");
    p = demo_params(2), p.init_image_path = "/nonexistent-dir/init.png";
    expect_refused(ctx, "init file", p, SDGEN_ERR_INPUT, "/nonexistent-dir/init.png");
    p = demo_params(2), p.strength = 1.5, p.init_image_path = "/nonexistent-dir/init.png";
    expect_refused(ctx, "strength", p, SDGEN_ERR_INPUT, "strength must be between 0 and 1");
    sdgen_image img;
    CHECK(sdgen_generate(ctx, NULL, &img) == SDGEN_ERR_INPUT, "NULL params");
    CHECK(sdgen_generate(NULL, &p, &img) == SDGEN_ERR_INPUT, "NULL handle");
}

static void test_progress_and_cancel(sdgen_ctx *ctx)
{
    int w = 0, h = 0;
    CHECK(sdgen_default_size(ctx, &w, &h) == SDGEN_OK && w == 64 && h == 64, "demo default size %dx%d", w, h);

    /* progress: called once per step, 1..steps */
    steps_seen s = {.increasing = 1};
    sdgen_params p = demo_params(5);
    p.progress = record_step;
    p.progress_user = &s;
    sdgen_image img;
    int rc = sdgen_generate(ctx, &p, &img);
    CHECK(rc == SDGEN_OK, "5 steps: %d %s", rc, sdgen_errmsg(ctx));
    CHECK(s.calls == 5 && s.last == 5 && s.total == 5 && s.increasing, "progress: %d calls, last %d of %d, increasing %d",
          s.calls, s.last, s.total, s.increasing);
    CHECK(img.rgb && img.width == 64 && img.height == 64, "image %dx%d", img.width, img.height);
    CHECK(!strcmp(sdgen_errmsg(ctx), ""), "message after success: \"%s\"", sdgen_errmsg(ctx));

    /* the same run again: the same pixels; and with F32 weights and one thread: the same pixels too */
    sdgen_image again;
    rc = sdgen_generate(ctx, &p, &again);
    CHECK(rc == SDGEN_OK, "again: %d %s", rc, sdgen_errmsg(ctx));
    if (rc == SDGEN_OK && img.rgb) compare_rgb("demo run twice", img.rgb, again.rgb, 64, 64, 0);
    sdgen_image_free(&again);
    CHECK(again.rgb == NULL && again.width == 0, "sdgen_image_free leaves an empty image");
    sdgen_model_opts mo = sdgen_model_opts_default();
    mo.weights = SDGEN_WEIGHTS_F32;
    sdgen_ctx *c32 = NULL;
    rc = sdgen_open(g_demo, &mo, &c32);
    CHECK(rc == SDGEN_OK, "open F32: %d %s", rc, sdgen_errmsg(c32));
    if (rc == SDGEN_OK) {
        rc = sdgen_generate(c32, &p, &again);
        CHECK(rc == SDGEN_OK, "F32 run: %d %s", rc, sdgen_errmsg(c32));
        if (rc == SDGEN_OK && img.rgb) compare_rgb("demo F16 vs F32 weights", img.rgb, again.rgb, 64, 64, 0);
        sdgen_image_free(&again);
    }
    sdgen_close(c32);
    mo = sdgen_model_opts_default();
    mo.threads = 1;
    sdgen_ctx *c1 = NULL;
    rc = sdgen_open(g_demo, &mo, &c1);
    CHECK(rc == SDGEN_OK, "open threads=1: %d %s", rc, sdgen_errmsg(c1));
    if (rc == SDGEN_OK) {
        int before = sd_threads();
        rc = sdgen_generate(c1, &p, &again);
        CHECK(rc == SDGEN_OK && again.width == 64, "threads=1 run: %d %s", rc, sdgen_errmsg(c1));
        CHECK(sd_threads() == before, "the caller's OpenMP thread count is %d after the call, was %d", sd_threads(),
              before);
        sdgen_image_free(&again);
    }
    sdgen_close(c1);
    sdgen_image_free(&img);

    /* cancel flag set by the first step's callback: no second step */
    steps_seen c = {.increasing = 1, .cancel_at = 1};
    p = demo_params(5);
    p.progress = record_step;
    p.progress_user = &c;
    p.cancel_flag = &c.flag;
    rc = sdgen_generate(ctx, &p, &img);
    CHECK(rc == SDGEN_ERR_CANCELLED, "cancel flag at step 1: status %d (%s), want SDGEN_ERR_CANCELLED", rc,
          sdgen_errmsg(ctx));
    CHECK(c.calls == 1 && c.last == 1, "cancel flag at step 1: %d progress calls, last step %d", c.calls, c.last);
    CHECK(img.rgb == NULL, "cancel flag: an image came back");
    CHECK(contains(sdgen_errmsg(ctx), "cancelled after step 1 of 5"), "cancel message: \"%s\"", sdgen_errmsg(ctx));

    /* cancel callback, true from the second step on */
    steps_seen cb = {.increasing = 1};
    p = demo_params(5);
    p.progress = record_step;
    p.progress_user = &cb;
    p.cancel = cancel_after_two;
    p.cancel_user = &cb;
    rc = sdgen_generate(ctx, &p, &img);
    CHECK(rc == SDGEN_ERR_CANCELLED && cb.calls == 2 && img.rgb == NULL,
          "cancel callback: status %d, %d progress calls (want 2)", rc, cb.calls);

    /* flag already set: nothing runs */
    steps_seen pre = {.increasing = 1, .flag = 1};
    p = demo_params(5);
    p.progress = record_step;
    p.progress_user = &pre;
    p.cancel_flag = &pre.flag;
    rc = sdgen_generate(ctx, &p, &img);
    CHECK(rc == SDGEN_ERR_CANCELLED && pre.calls == 0 && contains(sdgen_errmsg(ctx), "before the first step"),
          "pre-set flag: status %d, %d steps, \"%s\"", rc, pre.calls, sdgen_errmsg(ctx));

    /* and the handle still works after a cancelled run */
    p = demo_params(2);
    rc = sdgen_generate(ctx, &p, &img);
    CHECK(rc == SDGEN_OK && img.rgb, "run after cancel: %d %s", rc, sdgen_errmsg(ctx));
    sdgen_image_free(&img);
}

static void test_png(sdgen_ctx *ctx)
{
    char path[4200], dir_path[4200], nodir[4200];
    snprintf(path, sizeof path, "%s/api-out.png", sd_test_tmp());
    snprintf(dir_path, sizeof dir_path, "%s", sd_test_tmp());
    snprintf(nodir, sizeof nodir, "%s/no-such-folder/x.png", sd_test_tmp());
    remove(path);
    sdgen_params p = demo_params(3);
    p.negative_prompt = "blue";
    int rc = sdgen_generate_png(ctx, &p, dir_path);
    CHECK(rc == SDGEN_ERR_IO && contains(sdgen_errmsg(ctx), "is a directory"), "PNG onto a folder: %d \"%s\"", rc,
          sdgen_errmsg(ctx));
    steps_seen s = {.increasing = 1};
    p.progress = record_step;
    p.progress_user = &s;
    rc = sdgen_generate_png(ctx, &p, nodir);
    CHECK(rc == SDGEN_ERR_IO && contains(sdgen_errmsg(ctx), "no-such-folder") && s.calls == 0,
          "PNG into a missing folder: %d \"%s\", %d steps run", rc, sdgen_errmsg(ctx), s.calls);
    rc = sdgen_generate_png(ctx, &p, path);
    CHECK(rc == SDGEN_OK, "PNG: %d %s", rc, sdgen_errmsg(ctx));
    rc = sdgen_generate_png(ctx, &p, path); /* an existing file is replaced */
    CHECK(rc == SDGEN_OK, "PNG over an existing file: %d %s", rc, sdgen_errmsg(ctx));
    sdgen_image mem;
    rc = sdgen_generate(ctx, &p, &mem);
    CHECK(rc == SDGEN_OK, "buffer: %d %s", rc, sdgen_errmsg(ctx));
    sd_image file = {0};
    sd_err e = {0};
    int lrc = sd_image_load(&file, path, &e);
    CHECK(lrc == 0, "%s", e.msg);
    if (lrc == 0 && rc == SDGEN_OK) {
        CHECK(file.w == 64 && file.h == 64, "PNG size %dx%d", file.w, file.h);
        if (file.w == mem.width && file.h == mem.height) compare_rgb("PNG vs buffer", file.rgb, mem.rgb, 64, 64, 0);
    }
    sd_image_free(&file);
    sdgen_image_free(&mem);
    char *text = NULL;
    CHECK(sd_png_read_text(path, "parameters", &text, NULL, &e) == 0 && text, "no parameters chunk: %s", e.msg);
    if (text) {
        sd_gen_params gp;
        sd_params_init(&gp);
        CHECK(sd_params_parse(text, &gp, &e) == 0, "parameters do not parse: %s", e.msg);
        const char *v;
        CHECK(!strcmp(gp.prompt, p.prompt), "prompt read back as \"%s\"", gp.prompt);
        CHECK(!strcmp(gp.negative_prompt, "blue"), "negative read back as \"%s\"", gp.negative_prompt);
        CHECK((v = sd_params_get(&gp, "Seed")) && !strcmp(v, "7"), "Seed %s", v ? v : "(none)");
        CHECK((v = sd_params_get(&gp, "Steps")) && !strcmp(v, "3"), "Steps %s", v ? v : "(none)");
        CHECK((v = sd_params_get(&gp, "Sampler")) && !strcmp(v, "DDIM"), "Sampler %s", v ? v : "(none)");
        CHECK((v = sd_params_get(&gp, "Model")) && !strcmp(v, "demo"), "Model %s", v ? v : "(none)");
        CHECK((v = sd_params_get(&gp, "Model hash")) && strlen(v) == 10, "Model hash %s", v ? v : "(none)");
        printf("parameters: %s\n", text);
        sd_params_free(&gp);
        free(text);
    }
}

/* case.json -> sdgen_params: the same keys the CLI test turns into options. */
static void params_from_case(const cJSON *c, sdgen_params *p)
{
    *p = sdgen_params_default();
    p->prompt = jstr(c, "prompt");
    if (jstr(c, "negative_prompt")) p->negative_prompt = jstr(c, "negative_prompt");
    if (jstr(c, "sampler")) p->sampler = jstr(c, "sampler");
    if (jstr(c, "schedule")) p->schedule = jstr(c, "schedule");
    if (jstr(c, "rng")) p->rng = jstr(c, "rng");
    if (jstr(c, "prediction")) p->prediction = jstr(c, "prediction");
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(c, "width"))) p->width = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(c, "height"))) p->height = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(c, "steps"))) p->steps = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(c, "cfg_scale"))) p->cfg_scale = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(c, "seed"))) p->seed = (uint64_t)v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(c, "clip_skip"))) p->clip_skip = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(c, "strength"))) p->strength = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(c, "eta"))) p->eta = v->valuedouble;
}

/* One golden case of a set ("cases", "cases-samplers", ...) through the API; a case with a tiny
 * autoencoder ("vae": {"kind": "taesd"}) opens the model with it; img2img cases also run from a pixel
 * buffer, which must give the same pixels as the file. */
static void golden_case(const char *set, const char *name)
{
    char case_dir[4096], json[4200], model[4200], vocab[4096], init[4200], ref[4200], taesd[4200];
    snprintf(case_dir, sizeof case_dir, "%s/%s/%s", sd_test_path("golden"), set, name);
    snprintf(json, sizeof json, "%s/case.json", case_dir);
    snprintf(ref, sizeof ref, "%s/image.png", case_dir);
    snprintf(vocab, sizeof vocab, "%s", sd_test_path("clip"));
    char *txt = sd_test_read_text(json);
    CHECK(txt != NULL, "cannot read %s", json);
    if (!txt) return;
    cJSON *c = cJSON_Parse(txt);
    free(txt);
    CHECK(c && jstr(c, "model") && jstr(c, "prompt"), "%s: bad case.json", json);
    if (!c || !jstr(c, "model") || !jstr(c, "prompt")) {
        cJSON_Delete(c);
        return;
    }
    snprintf(model, sizeof model, "%s/%s", sd_test_path("golden"), jstr(c, "model"));
    sdgen_model_opts mo = sdgen_model_opts_default();
    mo.vocab_path = vocab;
    const cJSON *vae = cJSON_GetObjectItemCaseSensitive(c, "vae");
    if (vae && jstr(vae, "kind") && !strcmp(jstr(vae, "kind"), "taesd") && jstr(vae, "model")) {
        snprintf(taesd, sizeof taesd, "%s/%s", sd_test_path("golden"), jstr(vae, "model"));
        mo.vae_decoder = taesd;
    }
    sdgen_ctx *ctx = NULL;
    int rc = sdgen_open(model, &mo, &ctx);
    CHECK(rc == SDGEN_OK, "%s: open: %s", name, sdgen_errmsg(ctx));
    sd_image want = {0}, init_px = {0};
    sd_err e = {0};
    int wrc = sd_image_load(&want, ref, &e);
    CHECK(wrc == 0, "%s: %s", name, e.msg);
    if (rc == SDGEN_OK && wrc == 0) {
        sdgen_params p;
        params_from_case(c, &p);
        if (jstr(c, "init_image")) {
            snprintf(init, sizeof init, "%s/%s", case_dir, jstr(c, "init_image"));
            p.init_image_path = init;
        }
        sdgen_image got;
        rc = sdgen_generate(ctx, &p, &got);
        CHECK(rc == SDGEN_OK, "%s: %d %s", name, rc, sdgen_errmsg(ctx));
        if (rc == SDGEN_OK) {
            CHECK(got.width == want.w && got.height == want.h, "%s: %dx%d, reference %dx%d", name, got.width,
                  got.height, want.w, want.h);
            char what[256];
            snprintf(what, sizeof what, "%s via the API vs image.png", name);
            if (got.width == want.w && got.height == want.h) compare_rgb(what, got.rgb, want.rgb, want.w, want.h, 1);
        }
        if (rc == SDGEN_OK && p.init_image_path) {
            int irc = sd_image_load(&init_px, init, &e);
            CHECK(irc == 0, "%s: %s", name, e.msg);
            if (irc == 0) {
                p.init_image_path = NULL;
                p.init_rgb = init_px.rgb;
                p.init_width = init_px.w;
                p.init_height = init_px.h;
                sdgen_image buf;
                rc = sdgen_generate(ctx, &p, &buf);
                CHECK(rc == SDGEN_OK, "%s from a buffer: %d %s", name, rc, sdgen_errmsg(ctx));
                if (rc == SDGEN_OK && buf.width == got.width && buf.height == got.height)
                    compare_rgb("img2img buffer vs file", buf.rgb, got.rgb, got.width, got.height, 0);
                sdgen_image_free(&buf);
            }
        }
        sdgen_image_free(&got);
    }
    sd_image_free(&want);
    sd_image_free(&init_px);
    sdgen_close(ctx);
    cJSON_Delete(c);
}

int main(void)
{
    const char *src = getenv("SDGEN_SOURCE_DIR");
    CHECK(src && *src, "SDGEN_SOURCE_DIR must be set");
    if (!src) TEST_MAIN_END();
    snprintf(g_demo, sizeof g_demo, "%s/models/demo.safetensors", src);
    unsetenv("SDGEN_VOCAB");
    unsetenv("SDGEN_MODEL");
    char cache[4200];
    snprintf(cache, sizeof cache, "%s/api-cache", sd_test_tmp());
    setenv("XDG_CACHE_HOME", cache, 1); /* the model-hash cache of sdgen_generate_png stays in the test folder */

    test_statuses();
    test_bad_open();
    sdgen_ctx *ctx = open_demo();
    if (ctx) {
        test_bad_params(ctx);
        test_progress_and_cancel(ctx);
        test_png(ctx);
    }
    sdgen_close(ctx);

    char probe[4200];
    snprintf(probe, sizeof probe, "%s/cases/p1-tiny-sd1-ddim/case.json", sd_test_path("golden"));
    if (access(probe, R_OK) != 0) {
        printf("SKIP golden cases: %s is missing (no shared reference data)\n", probe);
        printf("%d passed, %d failed\n", t_pass, t_fail);
        return t_fail ? 1 : SKIP_CODE;
    }
    golden_case("cases", "p1-tiny-sd1-ddim");
    golden_case("cases", "p7-tiny-sd1-img2img-ddim");
    golden_case("cases-samplers", "p23-tiny-sd1-ddim-eta"); /* sdgen_params.eta */
    golden_case("cases-taesd", "pt3-tiny-sd1-taesd-ddim");  /* sdgen_model_opts.vae_decoder */
    TEST_MAIN_END();
}
