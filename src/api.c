/* api.c — the public library API (include/sdgen.h) on top of the pipeline.
 *
 * The internal modules report failures in an sd_err whose code is one of the CLI's exit codes
 * (sdgen/common.h); this file translates them into the API's own sdgen_status values, so that a
 * program using the library never sees process exit codes.
 */
#include "sdgen.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sdgen/family.h"
#include "sdgen/hash.h"
#include "sdgen/image.h"
#include "sdgen/ops.h"
#include "sdgen/params.h"
#include "sdgen/pipeline.h"
#include "sdgen/rng.h"

struct sdgen_ctx {
    sd_pipeline pipe;
    int opened;                  /* pipe holds a model */
    int threads;                 /* 0: leave OpenMP's count alone */
    char model_path[4096];
    char model_name[256];        /* A1111 "Model" value */
    char model_hash[16];         /* A1111 "Model hash", "" when unavailable */
    int hash_tried;
    sd_err err;                  /* the last failure; msg "" after a success */

    /* the run in flight */
    const sdgen_params *run;
    volatile sig_atomic_t stop;  /* what the pipeline polls between steps */
    int steps_done, steps_total; /* as last reported by the pipeline */
};

const char *sdgen_status_string(int status)
{
    switch (status) {
    case SDGEN_OK: return "ok";
    case SDGEN_ERR_INPUT: return "bad input";
    case SDGEN_ERR_NOMEM: return "out of memory";
    case SDGEN_ERR_CANCELLED: return "cancelled";
    case SDGEN_ERR_IO: return "write error";
    default: return "unknown status";
    }
}

const char *sdgen_version(void) { return SDGEN_VERSION; }

/* Internal exit-code classes -> API status. */
static int status_of(const sd_err *e)
{
    switch (e->code) {
    case SD_ERR_NOMEM: return SDGEN_ERR_NOMEM;
    case SD_ERR_INTERRUPTED: return SDGEN_ERR_CANCELLED;
    default: return SDGEN_ERR_INPUT;
    }
}

/* Record a failure of the API's own checks: one line, like the internal messages. */
static int fail(sdgen_ctx *ctx, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(sdgen_ctx *ctx, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err.msg, sizeof ctx->err.msg, fmt, ap);
    va_end(ap);
    return status;
}

static void clear_err(sdgen_ctx *ctx)
{
    ctx->err.code = 0;
    ctx->err.msg[0] = 0;
}

/* ---- opening ---- */

sdgen_model_opts sdgen_model_opts_default(void)
{
    sdgen_model_opts o;
    memset(&o, 0, sizeof o);
    o.weights = SDGEN_WEIGHTS_F16;
    return o;
}

int sdgen_open(const char *model_path, const sdgen_model_opts *opts, sdgen_ctx **out)
{
    if (!out) return SDGEN_ERR_INPUT;
    sdgen_ctx *ctx = calloc(1, sizeof *ctx);
    *out = ctx;
    if (!ctx) return SDGEN_ERR_NOMEM;
    sdgen_model_opts o = opts ? *opts : sdgen_model_opts_default();
    if (o.weights != SDGEN_WEIGHTS_F16 && o.weights != SDGEN_WEIGHTS_F32)
        return fail(ctx, SDGEN_ERR_INPUT, "weights must be SDGEN_WEIGHTS_F16 or SDGEN_WEIGHTS_F32 (got %d)", o.weights);
    if (o.threads < 0 || o.threads > 1024)
        return fail(ctx, SDGEN_ERR_INPUT, "threads must be between 0 and 1024 (got %d)", o.threads);
    ctx->threads = o.threads;
    if (model_path) {
        if (!*model_path) return fail(ctx, SDGEN_ERR_INPUT, "model path is empty");
        if (strlen(model_path) >= sizeof ctx->model_path)
            return fail(ctx, SDGEN_ERR_INPUT, "model path is longer than %zu bytes", sizeof ctx->model_path - 1);
        snprintf(ctx->model_path, sizeof ctx->model_path, "%s", model_path);
    } else if (sd_default_model_path(ctx->model_path, sizeof ctx->model_path, &ctx->err)) {
        ctx->model_path[0] = 0;
        return status_of(&ctx->err);
    }
    if (sd_pipeline_open(&ctx->pipe, ctx->model_path, o.vocab_path, &ctx->err)) {
        ctx->model_path[0] = 0;
        return status_of(&ctx->err);
    }
    ctx->opened = 1;
    if ((o.weights == SDGEN_WEIGHTS_F32 && sd_model_set_weights_mode(&ctx->pipe.model, SD_WEIGHTS_F32, &ctx->err)) ||
        (o.vae_decoder && sd_pipeline_set_taesd(&ctx->pipe, o.vae_decoder, &ctx->err))) {
        int st = status_of(&ctx->err);
        sd_pipeline_close(&ctx->pipe);
        ctx->opened = 0;
        ctx->model_path[0] = 0;
        return st;
    }
    sd_params_model_name(ctx->model_path, ctx->model_name, sizeof ctx->model_name);
    return SDGEN_OK;
}

void sdgen_close(sdgen_ctx *ctx)
{
    if (!ctx) return;
    if (ctx->opened) sd_pipeline_close(&ctx->pipe);
    free(ctx);
}

const char *sdgen_errmsg(const sdgen_ctx *ctx)
{
    return ctx ? ctx->err.msg : "no sdgen handle (sdgen_open had no place to put it, or ran out of memory)";
}

const char *sdgen_model_path(const sdgen_ctx *ctx) { return ctx ? ctx->model_path : ""; }

static int need_model(sdgen_ctx *ctx)
{
    if (!ctx) return SDGEN_ERR_INPUT;
    clear_err(ctx);
    if (!ctx->opened) return fail(ctx, SDGEN_ERR_INPUT, "no model: sdgen_open failed on this handle");
    return SDGEN_OK;
}

int sdgen_default_size(const sdgen_ctx *ctx, int *width, int *height)
{
    if (!ctx || !ctx->opened || !width || !height) return SDGEN_ERR_INPUT;
    sd_family_default_size(&ctx->pipe.model, ctx->pipe.model.prediction, width, height);
    return SDGEN_OK;
}

/* ---- parameters ---- */

sdgen_params sdgen_params_default(void)
{
    sdgen_params p;
    memset(&p, 0, sizeof p);
    p.prompt = "";
    p.negative_prompt = "";
    p.steps = 20;
    p.cfg_scale = 7.5;
    p.sampler = "euler_a";
    p.schedule = "default";
    p.rng = "cpu";
    p.clip_skip = 1;
    p.prompt_weighting = 1;
    p.strength = 0.75;
    return p;
}

/* Name of an in-memory init image in messages and in the pipeline's img2img switch. */
static const char k_init_buffer_name[] = "init image buffer";

/* sdgen_params -> the pipeline's options. Checks what the pipeline does not (names, the init image
 * buffer); sd_gen_validate checks the numbers against the model before the run. */
static int to_gen_opts(sdgen_ctx *ctx, const sdgen_params *p, sd_gen_opts *o, sd_image *init)
{
    sd_gen_opts_default(o);
    o->prompt = p->prompt ? p->prompt : "";
    o->negative_prompt = p->negative_prompt ? p->negative_prompt : "";
    o->steps = p->steps;
    if (!(p->cfg_scale >= 0 && p->cfg_scale <= 100))
        return fail(ctx, SDGEN_ERR_INPUT, "cfg_scale must be between 0 and 100 (got %g)", p->cfg_scale);
    o->cfg_scale = (float)p->cfg_scale; /* the pipeline works in float32, as the CLI's --cfg-scale */
    o->seed = p->seed;
    sd_schedule implied = SD_SCHEDULE_DEFAULT;
    if (p->sampler && sd_sampler_parse(p->sampler, &o->sampler, &implied))
        return fail(ctx, SDGEN_ERR_INPUT, "sampler: unknown sampler \"%s\" (%s)", p->sampler, sd_sampler_list());
    if (p->schedule && sd_schedule_parse(p->schedule, &o->schedule))
        return fail(ctx, SDGEN_ERR_INPUT, "schedule: unknown schedule \"%s\" (default, karras)", p->schedule);
    if (implied == SD_SCHEDULE_KARRAS) o->schedule = implied; /* "dpmpp_2m_karras"-style names, as the CLI */
    sd_err eta_err = {0};
    if (sd_sampler_check_eta(o->sampler, p->eta, &eta_err)) return fail(ctx, SDGEN_ERR_INPUT, "%s", eta_err.msg);
    o->eta = p->eta;
    if (p->timestep_spacing && sd_spacing_parse(p->timestep_spacing, &o->spacing))
        return fail(ctx, SDGEN_ERR_INPUT,
                    "timestep_spacing: unknown spacing \"%s\" (leading, linspace, trailing)", p->timestep_spacing);
    if (p->prediction && sd_prediction_parse(p->prediction, &o->prediction))
        return fail(ctx, SDGEN_ERR_INPUT, "prediction: expected eps or v, got \"%s\"", p->prediction);
    if (p->rng && sd_rng_kind_parse(p->rng, &o->rng_kind))
        return fail(ctx, SDGEN_ERR_INPUT, "rng: expected cpu or cuda, got \"%s\"", p->rng);
    o->clip_skip = p->clip_skip;
    o->weighting = p->prompt_weighting != 0;
    o->strength = p->strength;
    o->max_memory = p->max_memory;
    if (p->vae_tiling) {
        o->vae_tile = 64; /* diffusers enable_vae_tiling: 512-pixel tiles, overlap factor 0.25 (as --vae-tiling) */
        o->vae_tile_overlap = 16;
    }

    if (p->init_image_path && p->init_rgb)
        return fail(ctx, SDGEN_ERR_INPUT, "set init_image_path or init_rgb, not both");
    if (p->init_image_path) {
        if (!*p->init_image_path) return fail(ctx, SDGEN_ERR_INPUT, "init_image_path is empty");
        o->init_image = p->init_image_path;
    } else if (p->init_rgb) {
        if (p->init_width < 1 || p->init_height < 1 || p->init_width > SD_IMAGE_MAX_SIDE ||
            p->init_height > SD_IMAGE_MAX_SIDE || (long long)p->init_width * p->init_height > SD_IMAGE_MAX_PIXELS)
            return fail(ctx, SDGEN_ERR_INPUT, "%s: size %dx%d is outside 1..%d per side and %lld pixels",
                        k_init_buffer_name, p->init_width, p->init_height, SD_IMAGE_MAX_SIDE,
                        (long long)SD_IMAGE_MAX_PIXELS);
        init->w = p->init_width;
        init->h = p->init_height;
        init->rgb = (uint8_t *)p->init_rgb; /* read only: the pipeline makes its own copy */
        o->init_image = k_init_buffer_name;
        o->init_pixels = init;
    }

    /* Size: 0 is the model's (with the prediction the run uses, as the CLI); image-to-image with both 0
     * takes the init image's size. */
    if (p->width < 0 || p->height < 0)
        return fail(ctx, SDGEN_ERR_INPUT, "width and height must be positive multiples of 8 (got %dx%d)", p->width,
                    p->height);
    o->width = p->width;
    o->height = p->height;
    if (!(o->init_image && !p->width && !p->height)) {
        int dw, dh;
        sd_prediction pred = o->prediction != SD_PRED_UNKNOWN ? o->prediction : ctx->pipe.model.prediction;
        sd_family_default_size(&ctx->pipe.model, pred, &dw, &dh);
        if (!o->width) o->width = dw;
        if (!o->height) o->height = dh;
    }
    return SDGEN_OK;
}

/* The pipeline calls this after each step: report, then turn the caller's cancel requests into the
 * flag the pipeline polls before the next step. */
static void on_step(void *user, int step, int n_steps, double seconds)
{
    (void)seconds;
    sdgen_ctx *ctx = user;
    const sdgen_params *p = ctx->run;
    ctx->steps_done = step;
    ctx->steps_total = n_steps;
    if (p->progress) p->progress(step, n_steps, p->progress_user);
    if ((p->cancel_flag && *p->cancel_flag) || (p->cancel && p->cancel(p->cancel_user))) ctx->stop = 1;
}

/* One run into memory. o and res are the caller's so that the PNG writer can describe the run. */
static int run(sdgen_ctx *ctx, const sdgen_params *p, sdgen_image *out, sd_gen_opts *o, sd_gen_result *res)
{
    sd_image init = {0};
    int st = to_gen_opts(ctx, p, o, &init);
    if (st) return st;
    if (sd_gen_validate(&ctx->pipe, o, &ctx->err)) return status_of(&ctx->err);
    /* Text the PNG chunk cannot hold (invalid UTF-8) is refused up front, as by the CLI. */
    char *probe = NULL;
    if (sd_gen_infotext(o, o->width, o->height, NULL, ctx->model_name, &probe, &ctx->err)) return status_of(&ctx->err);
    free(probe);

    ctx->run = p;
    ctx->stop = 0;
    ctx->steps_done = ctx->steps_total = 0;
    o->progress = on_step;
    o->progress_user = ctx;
    o->interrupted = &ctx->stop;
    if ((p->cancel_flag && *p->cancel_flag) || (p->cancel && p->cancel(p->cancel_user)))
        return fail(ctx, SDGEN_ERR_CANCELLED, "cancelled before the first step");

    int prev_threads = sd_threads();
    if (ctx->threads) sd_set_threads(ctx->threads);
    int rc = sd_generate(&ctx->pipe, o, res, &ctx->err);
    if (ctx->threads) sd_set_threads(prev_threads);
    ctx->run = NULL;
    if (rc) {
        if (ctx->err.code == SD_ERR_INTERRUPTED)
            return fail(ctx, SDGEN_ERR_CANCELLED, "cancelled after step %d of %d", ctx->steps_done, ctx->steps_total);
        return status_of(&ctx->err);
    }
    out->width = res->w;
    out->height = res->h;
    out->rgb = res->rgb;
    res->rgb = NULL; /* now the caller's (sdgen_image_free) */
    return SDGEN_OK;
}

int sdgen_generate(sdgen_ctx *ctx, const sdgen_params *p, sdgen_image *out)
{
    int st = need_model(ctx);
    if (st) return st;
    if (!p || !out) return fail(ctx, SDGEN_ERR_INPUT, "sdgen_generate: params and out must not be NULL");
    memset(out, 0, sizeof *out);
    sd_gen_opts o;
    sd_gen_result res;
    memset(&res, 0, sizeof res);
    return run(ctx, p, out, &o, &res);
}

int sdgen_generate_png(sdgen_ctx *ctx, const sdgen_params *p, const char *path)
{
    int st = need_model(ctx);
    if (st) return st;
    if (!p || !path || !*path) return fail(ctx, SDGEN_ERR_INPUT, "sdgen_generate_png: params and path must be given");
    /* Before the run: a folder in the way, or one that cannot be written, would only show at the end. */
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return fail(ctx, SDGEN_ERR_IO, "%s: is a directory, not an image file name", path);
    if (sd_check_output_dir(path, &ctx->err)) return ctx->err.code == SD_ERR_NOMEM ? SDGEN_ERR_NOMEM : SDGEN_ERR_IO;

    sdgen_image img = {0};
    sd_gen_opts o;
    sd_gen_result res;
    memset(&res, 0, sizeof res);
    st = run(ctx, p, &img, &o, &res);
    if (st) return st;
    if (!ctx->hash_tried) {
        /* As the CLI: a model whose hash cannot be had is named without one. */
        sd_err he = {0};
        if (sd_model_hash(ctx->model_path, NULL, ctx->model_hash, &he)) ctx->model_hash[0] = 0;
        ctx->hash_tried = 1;
    }
    char *text = NULL;
    if (sd_gen_infotext(&o, img.width, img.height, ctx->model_hash, ctx->model_name, &text, &ctx->err)) {
        sdgen_image_free(&img);
        return status_of(&ctx->err);
    }
    int rc = sd_png_write(path, img.rgb, img.width, img.height, text, 1, &ctx->err);
    free(text);
    sdgen_image_free(&img);
    if (rc) return ctx->err.code == SD_ERR_NOMEM ? SDGEN_ERR_NOMEM : SDGEN_ERR_IO;
    return SDGEN_OK;
}

void sdgen_image_free(sdgen_image *img)
{
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}
