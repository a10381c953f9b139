/* serve_worker.c — `sdgen serve`: the bounded FIFO queue and the one worker thread that owns the pipeline.
 *
 * One generation at a time: the CPU is the bottleneck, and one model in memory serves every request. A job
 * makes batch_size x n_iter images with seeds S, S+1, ... (A1111 modules/processing.py process_images:
 * all_seeds = seed + i when there is no variation seed; the CLI's --batch-count does the same), each through
 * sd_generate exactly as the command does, so the same seed and settings give the same PNG bytes: the
 * pixels, the encoder (sd_png_encode) and the A1111 `parameters` chunk (sd_gen_infotext with the model
 * hash and name the CLI uses).
 *
 * The answer follows A1111's TextToImageResponse / ImageToImageResponse (modules/api/models.py): images
 * (base64 PNG), parameters (the request with its defaults), info (Processed.js(): a JSON string with seed,
 * all_seeds, infotexts, ...). OpenAI's endpoint answers {"created", "data": [{"b64_json"}]}.
 */
#define _GNU_SOURCE /* malloc_trim */
#include "serve.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "sdgen/batch.h"
#include "sdgen/image.h"
#include "sdgen/ops.h"
#include "sdgen/options.h"
#include "sdgen/rng.h"
#include "sdgen/sched.h"

void sv_log(const char *fmt, ...)
{
    char raw[2048], safe[4096], stamp[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    sd_escape_text(raw, safe, sizeof safe);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + k, sizeof stamp - k, ".%03dZ", (int)(ts.tv_nsec / 1000000));
    /* one fprintf per line: stdio's lock keeps the lines of concurrent requests whole */
    fprintf(stderr, "%s %s\n", stamp, safe);
}

void sv_job_free(sv_job *j)
{
    if (!j) return;
    sv_spec_free(&j->spec);
    free(j->body);
    free(j);
}

int sv_retry_after(sv_server *s)
{
    double t = s->avg_job_s > 0 ? s->avg_job_s : 1;
    double w = ceil(t * (s->q_len + 1));
    return w < 1 ? 1 : w > 3600 ? 3600 : (int)w;
}

/* ---- queue (callers hold s->mu) ---- */

static void q_push(sv_server *s, sv_job *j)
{
    s->queue[(s->q_head + s->q_len) % s->queue_cap] = j;
    s->q_len++;
}

static sv_job *q_pop(sv_server *s)
{
    sv_job *j = s->queue[s->q_head];
    s->q_head = (s->q_head + 1) % s->queue_cap;
    s->q_len--;
    return j;
}

int sv_enqueue(sv_server *s, sv_job *j)
{
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (s->stopping) rc = 2;
    else if (s->q_len >= s->queue_cap) rc = 1;
    else {
        j->id = ++s->next_id;
        j->state = SV_QUEUED;
        q_push(s, j);
        pthread_cond_signal(&s->cv_work);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- one job ---- */

typedef struct run_ctx {
    sv_server *s;
    sv_job *j;
} run_ctx;

static void on_step(void *user, int step, int n_steps, double secs)
{
    (void)secs;
    run_ctx *r = user;
    pthread_mutex_lock(&r->s->mu);
    r->s->prog_step = step;
    r->s->prog_steps = n_steps;
    r->j->steps_done = step;
    r->j->steps_total = n_steps;
    if (r->j->stop_reason) r->j->stop = 1; /* the pipeline stops before the next step */
    pthread_mutex_unlock(&r->s->mu);
}

static uint64_t draw_seed(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) v = (uint32_t)(sd_now() * 1e6);
    return v; /* A1111 draws random seeds below 2^32 (get_fixed_seed), as the CLI does */
}

/* A PNG the client asked to keep (save_images): <dir>/<UTC time>-<counter>-<seed>-<prompt>.png, the prompt
 * sanitised as in the CLI's {prompt} (batch.h: no separators, no leading dot, at most 80 bytes), so no
 * request can name a file outside the folder. */
static int save_png(sv_server *s, const sv_spec *sp, uint64_t seed, const uint8_t *png, size_t n, sd_err *err)
{
    char part[SD_PROMPT_PART_MAX + 1], stamp[32], path[4096];
    sd_sanitize_prompt(sp->prompt, part, sizeof part);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    pthread_mutex_lock(&s->mu);
    unsigned long long k = ++s->save_counter;
    pthread_mutex_unlock(&s->mu);
    snprintf(path, sizeof path, "%s/%s-%05llu-%llu-%s.png", s->save_dir, stamp, k, (unsigned long long)seed, part);
    return sd_file_write_atomic(path, png, n, err);
}

static char *data_url(const char *b64)
{
    size_t n = strlen(b64);
    char *u = malloc(n + 32);
    if (u) snprintf(u, n + 32, "data:image/png;base64,%s", b64);
    return u;
}

/* The response body of a finished (or interrupted) job. */
static char *build_answer(sv_server *s, const sv_job *j, const sd_gen_opts *o, int n_done, char **b64,
                          char **infotexts, const uint64_t *seeds, int total, int w, int h)
{
    const sv_spec *sp = &j->spec;
    cJSON *root = cJSON_CreateObject(), *info = NULL;
    char *out = NULL, *info_text = NULL;
    if (!root) return NULL;
    if (sp->kind == SV_OPENAI) {
        cJSON_AddNumberToObject(root, "created", (double)time(NULL));
        cJSON *data = cJSON_AddArrayToObject(root, "data");
        for (int k = 0; data && k < n_done; k++) {
            cJSON *it = cJSON_CreateObject();
            if (!it) goto done;
            cJSON_AddItemToArray(data, it);
            if (sp->url_format) {
                char *u = data_url(b64[k]);
                if (!u) goto done;
                cJSON_AddStringToObject(it, "url", u);
                free(u);
            } else {
                cJSON_AddItemToObject(it, "b64_json", cJSON_CreateStringReference(b64[k]));
            }
            cJSON_AddStringToObject(it, "revised_prompt", sp->prompt);
        }
    } else {
        cJSON *imgs = cJSON_AddArrayToObject(root, "images");
        for (int k = 0; imgs && sp->send_images && k < n_done; k++)
            cJSON_AddItemToArray(imgs, cJSON_CreateStringReference(b64[k]));
        cJSON *echo_obj = sv_spec_echo(sp);
        if (!echo_obj) goto done;
        cJSON_AddItemToObject(root, "parameters", echo_obj);
        /* info: A1111 Processed.js() */
        info = cJSON_CreateObject();
        if (!info) goto done;
        cJSON *ap = cJSON_AddArrayToObject(info, "all_prompts");
        cJSON *an = cJSON_AddArrayToObject(info, "all_negative_prompts");
        cJSON *as = cJSON_AddArrayToObject(info, "all_seeds");
        cJSON *asub = cJSON_AddArrayToObject(info, "all_subseeds");
        cJSON *it = cJSON_AddArrayToObject(info, "infotexts");
        if (!ap || !an || !as || !asub || !it) goto done;
        for (int k = 0; k < total; k++) {
            cJSON_AddItemToArray(ap, cJSON_CreateString(sp->prompt));
            cJSON_AddItemToArray(an, cJSON_CreateString(sp->negative_prompt));
            cJSON_AddItemToArray(as, cJSON_CreateNumber((double)seeds[k]));
            cJSON_AddItemToArray(asub, cJSON_CreateNumber(-1));
        }
        for (int k = 0; k < n_done; k++) cJSON_AddItemToArray(it, cJSON_CreateString(infotexts[k]));
        cJSON_AddStringToObject(info, "prompt", sp->prompt);
        cJSON_AddStringToObject(info, "negative_prompt", sp->negative_prompt);
        cJSON_AddNumberToObject(info, "seed", (double)seeds[0]);
        cJSON_AddNumberToObject(info, "subseed", -1);
        cJSON_AddNumberToObject(info, "subseed_strength", 0);
        cJSON_AddNumberToObject(info, "width", w);
        cJSON_AddNumberToObject(info, "height", h);
        cJSON_AddStringToObject(info, "sampler_name", sd_sampler_a1111_name(o->sampler));
        cJSON_AddNumberToObject(info, "cfg_scale", sp->cfg_requested);
        cJSON_AddNumberToObject(info, "steps", sp->steps);
        cJSON_AddNumberToObject(info, "batch_size", sp->batch_size);
        cJSON_AddFalseToObject(info, "restore_faces");
        cJSON_AddNullToObject(info, "face_restoration_model");
        cJSON_AddStringToObject(info, "sd_model_name", s->model_name);
        if (s->model_hash[0]) cJSON_AddStringToObject(info, "sd_model_hash", s->model_hash);
        else cJSON_AddNullToObject(info, "sd_model_hash");
        cJSON_AddNullToObject(info, "sd_vae_name");
        cJSON_AddNullToObject(info, "sd_vae_hash");
        cJSON_AddNumberToObject(info, "seed_resize_from_w", -1);
        cJSON_AddNumberToObject(info, "seed_resize_from_h", -1);
        if (sp->kind == SV_IMG2IMG) cJSON_AddNumberToObject(info, "denoising_strength", sp->strength);
        else cJSON_AddNumberToObject(info, "denoising_strength", sp->denoising_echo);
        cJSON *extra = cJSON_AddObjectToObject(info, "extra_generation_params");
        if (extra) cJSON_AddStringToObject(extra, "Schedule type", sd_schedule_a1111_name(o->schedule));
        cJSON_AddNumberToObject(info, "index_of_first_image", 0);
        cJSON_AddItemToObject(info, "styles", cJSON_CreateArray());
        cJSON_AddStringToObject(info, "job_timestamp", s->prog_timestamp);
        cJSON_AddNumberToObject(info, "clip_skip", sp->clip_skip);
        cJSON_AddFalseToObject(info, "is_using_inpainting_conditioning");
        cJSON_AddStringToObject(info, "version", "sdgen " SDGEN_VERSION);
        info_text = cJSON_PrintUnformatted(info);
        if (!info_text) goto done;
        cJSON_AddStringToObject(root, "info", info_text);
    }
    out = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(info);
    cJSON_Delete(root);
    free(info_text);
    return out;
}

static void job_fail(sv_job *j, int status, const char *msg)
{
    free(j->body);
    j->status = status;
    j->body = sv_error_json(status, msg, j->spec.kind == SV_OPENAI);
    j->body_len = j->body ? strlen(j->body) : 0;
}

/* The generator's options for a request (what the CLI's options would set for the same image). */
static void job_options(const sv_server *s, const sv_spec *sp, sd_gen_opts *o)
{
    sd_gen_opts_default(o);
    o->lora_dir = s->lora_dir;
    o->lora_mode = s->lora_mode;
    o->prompt = sp->prompt;
    o->negative_prompt = sp->negative_prompt;
    o->width = sp->width;
    o->height = sp->height;
    o->steps = sp->steps;
    o->cfg_scale = sp->cfg_scale;
    o->sampler = (sd_sampler)sp->sampler;
    if (o->sampler == SD_SAMPLER_DDIM && sp->eta >= 0) o->eta = sp->eta;
    o->schedule = (sd_schedule)sp->schedule;
    o->rng_kind = sp->rng_kind;
    o->clip_skip = sp->clip_skip;
    o->strength = sp->strength;
    o->original_h = sp->original_size[0];
    o->original_w = sp->original_size[1];
    o->crop_top = sp->crop_top_left[0];
    o->crop_left = sp->crop_top_left[1];
    o->target_h = sp->target_size[0];
    o->target_w = sp->target_size[1];
}

static void run_job(sv_server *s, sv_job *j)
{
    sv_spec *sp = &j->spec;
    const int total = sp->batch_size * sp->n_iter;
    char **b64 = calloc((size_t)total, sizeof *b64);
    char **texts = calloc((size_t)total, sizeof *texts);
    uint64_t *seeds = calloc((size_t)total, sizeof *seeds);
    sd_image init = {0};
    sd_err err = {0};
    int n_done = 0, out_w = sp->width, out_h = sp->height;
    double t0 = sd_now();
    if (!b64 || !texts || !seeds) {
        job_fail(j, 503, "out of memory starting the job");
        goto out;
    }
    uint64_t seed0 = sp->random_seed ? draw_seed() : sp->seed;
    for (int k = 0; k < total; k++) seeds[k] = seed0 + (uint64_t)k; /* wraps at 2^64 as the CLI's batch */

    sd_gen_opts o;
    job_options(s, sp, &o);
    o.interrupted = &j->stop;
    run_ctx rc = {s, j};
    o.progress = on_step;
    o.progress_user = &rc;
    if (sp->kind == SV_IMG2IMG) {
        if (sd_image_load_mem(&init, sp->init_data, sp->init_len, "init_images[0]", &err)) {
            job_fail(j, err.code == SD_ERR_NOMEM ? 503 : 422, err.msg);
            goto out;
        }
        o.init_image = "init_images[0]";
        o.init_pixels = &init;
    }
    /* Against the model and the memory there is now (the CLI's check before any work): a size that can never
     * fit is the request's problem (422), not a passing one. */
    if (sd_gen_validate(&s->pipe, &o, &err)) {
        job_fail(j, 422, err.msg);
        goto out;
    }
    for (int k = 0; k < total; k++) {
        pthread_mutex_lock(&s->mu);
        s->prog_job_no = k;
        s->prog_step = 0;
        if (j->stop_reason) j->stop = 1;
        pthread_mutex_unlock(&s->mu);
        if (j->stop) break;
        o.seed = seeds[k];
        sd_gen_result res;
        err = (sd_err){0};
        if (sd_generate(&s->pipe, &o, &res, &err)) {
            if (err.code == SD_ERR_INTERRUPTED || j->stop) break;
            job_fail(j, err.code == SD_ERR_NOMEM ? 503 : 422, err.msg);
            goto out;
        }
        out_w = res.w;
        out_h = res.h;
        uint8_t *png = NULL;
        size_t png_len = 0;
        o.lora_hashes = res.lora_hashes; /* the infotext's "Lora hashes", as the CLI writes it */
        int bad = sd_gen_infotext(&o, res.w, res.h, s->model_hash, s->model_name, &texts[k], &err) ||
                  sd_png_encode(res.rgb, res.w, res.h, "parameters", texts[k], &png, &png_len, &err);
        o.lora_hashes = NULL;
        sd_gen_result_free(&res);
        if (!bad && sp->save_images && save_png(s, sp, o.seed, png, png_len, &err)) {
            free(png);
            job_fail(j, 500, err.msg);
            goto out;
        }
        if (!bad && !(b64[k] = sv_base64_encode(png, png_len, NULL))) {
            bad = 1;
            sd_errcf(&err, SD_ERR_NOMEM, "out of memory encoding the image");
        }
        free(png);
        if (bad) {
            job_fail(j, err.code == SD_ERR_NOMEM ? 503 : 500, err.msg);
            goto out;
        }
        n_done = k + 1;
        pthread_mutex_lock(&s->mu);
        j->images_done = n_done;
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_lock(&s->mu);
    const int reason = j->stop ? j->stop_reason : 0;
    pthread_mutex_unlock(&s->mu);
    if (reason == 3) {
        char m[200];
        snprintf(m, sizeof m, "the server is shutting down: the job was cancelled after %d of %d images", n_done, total);
        job_fail(j, 503, m);
        goto out;
    }
    if (reason == 2) goto out; /* nobody to answer */
    j->body = build_answer(s, j, &o, n_done, b64, texts, seeds, total, out_w, out_h);
    if (!j->body) {
        job_fail(j, 503, "out of memory building the answer");
        goto out;
    }
    j->body_len = strlen(j->body);
    j->status = 200;
out:
    pthread_mutex_lock(&s->mu);
    if (j->stop)
        sv_log("sdgen serve: job %llu: %s after step %d of %d (image %d of %d)", (unsigned long long)j->id,
               j->stop_reason == 2   ? "client gone, cancelled"
               : j->stop_reason == 3 ? "cancelled for shutdown"
                                     : "interrupted",
               j->steps_done, j->steps_total, n_done + (n_done < total), total);
    double dt = sd_now() - t0;
    s->avg_job_s = s->avg_job_s > 0 ? 0.7 * s->avg_job_s + 0.3 * dt : dt;
    pthread_mutex_unlock(&s->mu);
    for (int k = 0; b64 && k < total; k++) free(b64[k]);
    for (int k = 0; texts && k < total; k++) free(texts[k]);
    free(b64);
    free(texts);
    free(seeds);
    sd_image_free(&init);
}

static void *worker_main(void *arg)
{
    sv_server *s = arg;
    if (s->threads) sd_set_threads(s->threads); /* OpenMP's count is per thread: set it in the one that runs */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->q_len && !s->worker_exit) pthread_cond_wait(&s->cv_work, &s->mu);
        if (!s->q_len) break;
        sv_job *j = q_pop(s);
        if (s->stopping) { /* refused: answered by the waiting connection thread */
            job_fail(j, 503, "the server is shutting down");
            j->state = SV_DONE;
            pthread_cond_broadcast(&s->cv_done);
            continue;
        }
        j->state = SV_RUNNING;
        s->running = j;
        s->prog_job = j->spec.kind == SV_IMG2IMG ? "img2img" : "txt2img";
        s->prog_job_count = j->spec.batch_size * j->spec.n_iter;
        s->prog_job_no = s->prog_step = s->prog_steps = 0;
        s->prog_interrupted = 0;
        s->prog_t0 = sd_now();
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(s->prog_timestamp, sizeof s->prog_timestamp, "%Y%m%d%H%M%S", &tm); /* A1111 job_timestamp */
        pthread_mutex_unlock(&s->mu);

        run_job(s, j);

        pthread_mutex_lock(&s->mu);
        s->running = NULL;
        s->prog_job_count = s->prog_job_no = s->prog_step = s->prog_steps = 0;
        s->prog_job = "";
        j->state = SV_DONE;
        pthread_cond_broadcast(&s->cv_done);
        if (!s->q_len) {
            /* Idle: hand the freed memory of the job (images, base64, JSON) back to the system, so the
             * resident size returns to the loaded model's between bursts (glibc keeps it otherwise). */
            pthread_mutex_unlock(&s->mu);
            malloc_trim(0);
            pthread_mutex_lock(&s->mu);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int sv_worker_start(sv_server *s, sd_err *err)
{
    s->queue = calloc((size_t)(s->queue_cap > 0 ? s->queue_cap : 1), sizeof *s->queue);
    if (!s->queue) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the queue");
    if (s->queue_cap < 1) s->queue_cap = 1; /* --queue 0: the running job only (see sv_enqueue) */
    s->prog_job = "";
    int e = pthread_create(&s->worker, NULL, worker_main, s);
    if (e) return sd_errf(err, "cannot start the worker thread: %s", strerror(e));
    s->worker_started = 1;
    return 0;
}

void sv_interrupt(sv_server *s)
{
    pthread_mutex_lock(&s->mu);
    sv_job *j = s->running;
    if (j && !j->stop_reason) {
        j->stop_reason = 1;
        s->prog_interrupted = 1;
        sv_log("sdgen serve: job %llu: interrupt at step %d of %d (image %d of %d)", (unsigned long long)j->id,
               j->steps_done, j->steps_total, j->images_done + 1, j->spec.batch_size * j->spec.n_iter);
    }
    pthread_mutex_unlock(&s->mu);
}

char *sv_progress_json(sv_server *s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    pthread_mutex_lock(&s->mu);
    /* A1111 modules/api/api.py progressapi: 0 with no job; else 0.01 + job_no/job_count +
     * step/steps/job_count, and eta = elapsed/progress - elapsed */
    double progress = 0, eta = 0;
    if (s->prog_job_count > 0) {
        progress = 0.01 + (double)s->prog_job_no / s->prog_job_count;
        if (s->prog_steps > 0) progress += (double)s->prog_step / s->prog_steps / s->prog_job_count;
        double el = sd_now() - s->prog_t0;
        eta = el / progress - el;
        if (progress > 1) progress = 1;
    }
    cJSON_AddNumberToObject(o, "progress", progress);
    cJSON_AddNumberToObject(o, "eta_relative", eta);
    cJSON *st = cJSON_AddObjectToObject(o, "state");
    if (st) { /* A1111 modules/shared_state.py State.dict() */
        cJSON_AddFalseToObject(st, "skipped");
        cJSON_AddBoolToObject(st, "interrupted", s->prog_interrupted);
        cJSON_AddFalseToObject(st, "stopping_generation");
        cJSON_AddStringToObject(st, "job", s->prog_job ? s->prog_job : "");
        cJSON_AddNumberToObject(st, "job_count", s->prog_job_count);
        cJSON_AddStringToObject(st, "job_timestamp", s->prog_timestamp);
        cJSON_AddNumberToObject(st, "job_no", s->prog_job_no);
        cJSON_AddNumberToObject(st, "sampling_step", s->prog_step);
        cJSON_AddNumberToObject(st, "sampling_steps", s->prog_steps);
        cJSON_AddNumberToObject(st, "queued", s->q_len); /* sdgen's own: jobs waiting behind this one */
    }
    pthread_mutex_unlock(&s->mu);
    cJSON_AddNullToObject(o, "current_image");
    cJSON_AddNullToObject(o, "textinfo");
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

void sv_worker_stop(sv_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    s->worker_exit = 1;
    if (s->running && !s->running->stop_reason) s->running->stop_reason = 3;
    pthread_cond_broadcast(&s->cv_work);
    pthread_cond_broadcast(&s->cv_done);
    pthread_mutex_unlock(&s->mu);
    if (s->worker_started) pthread_join(s->worker, NULL);
    s->worker_started = 0;
}
