/* cmd_bench.c — `sdgen bench`: how fast this machine runs a model, against how fast the same
 * process runs OpenBLAS sgemm. Loads once, warms up, then times the text encoder, the U-Net with
 * classifier-free guidance (batch 2) and the VAE decoder. FLOPs are counted from the architecture
 * (convolutions, linears and attention products: 2 per multiply-add; norms and activations are
 * not counted), so "GFLOP/s" compares directly with sgemm's. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "sdgen/clip.h"
#include "sdgen/cond.h"
#include "sdgen/ops.h"
#include "sdgen/options.h"
#include "sdgen/pipeline.h"
#include "sdgen/rng.h"
#include "sdgen/taesd.h"
#include "sdgen/unet.h"
#include "sdgen/vae.h"

/* ---- sgemm peak, measured here ---- */

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* OpenBLAS's own threaded sgemm on n×n×n, called back to back for at least `seconds` (after one
 * warm-up call); each call's rate (GFLOP/s of wall time, and GFLOP per CPU-second of the whole
 * process) is appended to r->wall / r->cpu. The reference the U-Net is compared with is the
 * median of these calls, taken before and after the timed steps: on this 2-vCPU VM single 25 ms
 * calls scatter from 165 to 310 GFLOP/s (turbo bursts, the host's other tenants), while a step
 * runs for seconds at the sustained rate, so a best-of-3 burst made the ratio a lottery
 * (docs/PERFORMANCE.md, "Measuring"). The best call is reported too. */
typedef struct {
    double wall[4096], cpu[4096];
    int n;
} sgemm_calls;

static void sgemm_measure(int n, double seconds, sgemm_calls *r)
{
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return;
    }
    for (long i = 0; i < (long)n * n; i++) {
        a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    }
    const double flop = 2.0 * n * n * n;
    sd_blas_threads_begin();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    const double start = sd_now();
    int calls = 0;
    while (r->n < 4096 && (calls < 3 || sd_now() - start < seconds)) {
        double t = sd_now(), tc = cpu_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = sd_now() - t;
        tc = cpu_seconds() - tc;
        r->wall[r->n] = flop / t / 1e9;
        r->cpu[r->n] = tc > 0 ? flop / tc / 1e9 : r->wall[r->n];
        r->n++;
        calls++;
    }
    sd_blas_threads_end();
    free(a);
    free(b);
    free(c);
}

static int cmp_double(const void *x, const void *y);

static double median_of(double *v, int n)
{
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- per-op profile table ---- */

static void print_profile(const char *title, const sd_op_profile *p, int reps, double total)
{
    double sw = 0, sc = 0;
    printf("  %s, per run (%d timed):\n", title, reps);
    printf("    %-36s %7s %9s %9s %9s %9s %7s\n", "op", "calls", "wall s", "cpu s", "GFLOP", "GFLOP/s", "% wall");
    for (int k = 0; k < SD_OP_KINDS; k++) {
        if (!p->calls[k]) continue;
        const double w = p->wall[k] / reps, c = p->cpu[k] / reps, f = p->flops[k] / reps;
        sw += w;
        sc += c;
        printf("    %-36s %7lld %9.3f %9.3f %9.1f %9.1f %6.1f%%\n", sd_op_kind_name((sd_op_kind)k),
               (long long)(p->calls[k] / reps), w, c, f / 1e9, w > 0 ? f / w / 1e9 : 0, 100 * w / total);
    }
    printf("    %-36s %7s %9.3f %9.3f\n", "sum of ops", "", sw, sc);
    printf("    %-36s %7s %9.3f %9s %9s %9s %6.1f%%\n", "outside ops (glue)", "", total - sw, "", "", "",
           100 * (total - sw) / total);
}

static cJSON *profile_json(const sd_op_profile *p, int reps)
{
    cJSON *arr = cJSON_CreateArray();
    for (int k = 0; k < SD_OP_KINDS; k++) {
        if (!p->calls[k]) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", sd_op_kind_name((sd_op_kind)k));
        cJSON_AddNumberToObject(o, "calls", (double)p->calls[k] / reps);
        cJSON_AddNumberToObject(o, "wall_s", p->wall[k] / reps);
        cJSON_AddNumberToObject(o, "cpu_s", p->cpu[k] / reps);
        cJSON_AddNumberToObject(o, "gflop", p->flops[k] / reps / 1e9);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The benchmark's own bounds, with the strict integer syntax every option uses (options.h). */
static int bench_int(const char *opt, const char *v, long long lo, long long hi, int *out)
{
    long long x;
    if (sd_parse_ll(v, 0, &x) || x < lo || x > hi) {
        sd_cli_say("sdgen bench", "%s expects an integer in [%lld, %lld], got \"%s\"", opt, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* ---- the command ---- */

typedef struct bench_opts {
    const char *model, *vocab, *vae_decoder;
    int W, H, steps, threads, json, no_vae, profile;
    float cfg;
    sd_sampler sampler;     /* of the whole-image runs (the timed U-Net steps are single model calls) */
    sd_schedule schedule;
    sd_weights_mode wmode;
} bench_opts;

typedef struct bench_result {
    double t_text_first;                    /* the first text encode of the process */
    double img_wall[2], img_text[2], img_unet[2], img_dec[2]; /* whole images: first in the process, then again */
    double t_load, t_text, t_warm, med, t_min, wall_mean, cpu_steps, t_vae, cpu_vae;
    double peak, peak_cpu, peak_best; /* sgemm reference: median / per CPU-s / best call */
    int sgemm_calls;
    size_t arena_unet, arena_vae;
    double f_unet, f_vae, f_text;
    sd_op_profile prof_text, prof_unet, prof_vae;
} bench_result;

/* Returns -1 to go on, else the exit code (0 after --help). */
static int parse_bench_args(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->W = o->H = 512;
    o->steps = 3;
    o->cfg = 7.5f;
    sd_gen_opts def;
    sd_gen_opts_default(&def); /* the generator's sampler unless --sampler names another */
    o->sampler = def.sampler;
    o->schedule = def.schedule;
    o->wmode = SD_WEIGHTS_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) o->model = argv[++i];
        else if ((!strcmp(a, "-W") || !strcmp(a, "--width")) && v) {
            if (bench_int(a, argv[++i], 8, 4096, &o->W)) return SD_EXIT_INPUT;
        } else if ((!strcmp(a, "-H") || !strcmp(a, "--height")) && v) {
            if (bench_int(a, argv[++i], 8, 4096, &o->H)) return SD_EXIT_INPUT;
        } else if (!strcmp(a, "--steps") && v) {
            if (bench_int(a, argv[++i], 1, 1000, &o->steps)) return SD_EXIT_INPUT;
        } else if (!strcmp(a, "--threads") && v) {
            if (bench_int(a, argv[++i], 1, 1024, &o->threads)) return SD_EXIT_INPUT;
        } else if (!strcmp(a, "--vocab") && v) {
            o->vocab = argv[++i];
        } else if ((!strcmp(a, "--vae-decoder") || !strcmp(a, "--taesd")) && v) {
            o->vae_decoder = argv[++i];
        } else if (!strcmp(a, "--sampler") && v) {
            const char *sv = argv[++i];
            if (sd_sampler_parse(sv, &o->sampler, &o->schedule)) {
                sd_cli_say("sdgen bench", "--sampler: unknown sampler \"%s\" (%s)", sv, sd_sampler_list());
                return SD_EXIT_INPUT;
            }
        } else if (!strcmp(a, "--cfg-scale") && v) {
            double cfg;
            const char *cv = argv[++i];
            if (sd_parse_real(cv, &cfg) || cfg < 0 || cfg > 100) {
                sd_cli_say("sdgen bench", "--cfg-scale expects a number in [0, 100], got \"%s\"", cv);
                return SD_EXIT_INPUT;
            }
            o->cfg = (float)cfg;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--profile")) {
            o->profile = 1;
        } else if (!strcmp(a, "--winograd") && v) {
            const char *wv = argv[++i];
            if (!strcmp(wv, "on")) sd_set_winograd(1);
            else if (!strcmp(wv, "off")) sd_set_winograd(0);
            else {
                sd_cli_say("sdgen bench", "--winograd expects on or off, got \"%s\"", wv);
                return SD_EXIT_INPUT;
            }
        } else if (!strcmp(a, "--weights") && v) {
            const char *wv = argv[++i];
            if (!strcmp(wv, "f16")) o->wmode = SD_WEIGHTS_F16;
            else if (!strcmp(wv, "f32")) o->wmode = SD_WEIGHTS_F32;
            else {
                sd_cli_say("sdgen bench", "--weights expects f16 or f32, got \"%s\"", wv);
                return SD_EXIT_INPUT;
            }
        } else if (!strcmp(a, "--no-vae")) {
            o->no_vae = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: sdgen bench -m MODEL [-W 512] [-H 512] [--steps 3] [--cfg-scale 7.5] [--vae-decoder TAESD] [--threads N]\n"
                   "                   [--sampler NAME] [--weights f16|f32] [--no-vae] [--winograd on|off] [--profile] [--json]\n"
                   "Times whole images (--steps steps of --sampler, counted in model calls too: heun, dpm2 and dpm2_a\n"
                   "call the model twice a step; the first image of the process, then one more), the text encoder,\n"
                   "U-Net steps (CFG: batch 2; --cfg-scale 1 or less: batch 1, no negative prompt), after one warm-up\n"
                   "step, and the decoder (the VAE, or the tiny autoencoder given with --vae-decoder / --taesd);\n"
                   "reports s/step, achieved GFLOP/s, that as a share of OpenBLAS sgemm measured in the same process,\n"
                   "and peak resident memory. --profile adds a per-op table (wall and CPU time, GFLOP) for the\n"
                   "timed text encode, U-Net steps and VAE decode. --winograd off: 3x3 convolutions as im2col products only.\n");
            return 0;
        } else {
            sd_cli_say("sdgen bench", "unknown or incomplete option %s (see --help)", a);
            return SD_EXIT_INPUT;
        }
    }
    if (!o->model) {
        fprintf(stderr, "sdgen bench: no model given (-m MODEL)\n");
        return SD_EXIT_INPUT;
    }
    if (o->W % 8 || o->H % 8) {
        fprintf(stderr, "sdgen bench: width/height must be multiples of 8 up to 4096\n");
        return SD_EXIT_INPUT;
    }
    return -1;
}

/* Text: cond (+ uncond with guidance) through the pipeline's conditioner: the first call, then one timed
 * after it. */
static int measure_text(sd_pipeline *p, const bench_opts *o, const sd_gen_opts *go, sd_cond *c, sd_cond *u,
                        bench_result *r, sd_err *err)
{
    const double t1 = sd_now();
    if (sd_pipeline_condition(p, go, c, u, err)) return -1;
    r->t_text_first = sd_now() - t1;
    sd_cond_free(c);
    if (u) sd_cond_free(u);
    if (o->profile) sd_ops_set_profile(&r->prof_text);
    const double t0 = sd_now();
    const int rc = sd_pipeline_condition(p, go, c, u, err);
    r->t_text = sd_now() - t0;
    sd_ops_set_profile(NULL);
    if (rc) return -1;
    return sd_pipeline_vectors(p, go, go->width, go->height, c, u, err);
}

/* The denoiser as the generator calls it (sd_pipeline_guided: batch 2 for CFG): one warm-up step,
 * then `steps` timed ones; the median, fastest and mean wall time and the CPU time per step. */
static int measure_unet(sd_pipeline *p, const bench_opts *o, const sd_gen_opts *go, sd_tensor xt, const sd_cond *c,
                        const sd_cond *u, bench_result *r, sd_err *err)
{
    const int64_t n = sd_numel(xt);
    float *g = malloc(sizeof(float) * (size_t)n);
    double *times = malloc(sizeof(double) * (size_t)o->steps);
    if (!g || !times) {
        free(g);
        free(times);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    }
    const double tw = sd_now();
    int ok = sd_pipeline_guided(p, xt, 999, c, u, go->cfg_scale, g, NULL, 1, err) == 0;
    r->t_warm = sd_now() - tw;
    r->arena_unet = p->arena.peak;
    if (o->profile) sd_ops_set_profile(&r->prof_unet);
    double cpu = cpu_seconds(), wall_sum = 0;
    for (int s = 0; ok && s < o->steps; s++) {
        const double t0 = sd_now();
        ok = sd_pipeline_guided(p, xt, 999, c, u, go->cfg_scale, g, NULL, 1, err) == 0;
        times[s] = sd_now() - t0;
        wall_sum += times[s];
    }
    r->cpu_steps = (cpu_seconds() - cpu) / o->steps;
    sd_ops_set_profile(NULL);
    if (ok) {
        qsort(times, (size_t)o->steps, sizeof(double), cmp_double);
        const int k = o->steps;
        r->med = k % 2 ? times[k / 2] : 0.5 * (times[k / 2 - 1] + times[k / 2]);
        r->t_min = times[0];
        r->wall_mean = wall_sum / k;
    }
    free(times);
    free(g);
    return ok ? 0 : -1;
}

/* One whole image with the bench's settings, as the generator makes it (k: 0 first, 1 again). */
static int measure_image(sd_pipeline *p, const sd_gen_opts *go, int k, bench_result *r, sd_err *err)
{
    sd_gen_result res;
    const double t0 = sd_now();
    if (sd_generate(p, go, &res, err)) return -1;
    r->img_wall[k] = sd_now() - t0;
    r->img_text[k] = res.t_text;
    r->img_unet[k] = res.t_denoise;
    r->img_dec[k] = res.t_decode;
    sd_gen_result_free(&res);
    return 0;
}

/* One decode of a standard-normal latent (scaled latents are distributed like one). */
static int measure_vae(sd_pipeline *p, const bench_opts *o, sd_tensor xt, bench_result *r, sd_err *err)
{
    sd_model *m = &p->model;
    sd_model_release_pages(m, SD_PREFIX_UNET);
    sd_tensor z = sd_tensor_4d(&p->arena, 1, xt.ne[1], xt.ne[2], xt.ne[3]);
    if (!z.data) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the decoder input");
    memcpy(z.data, xt.data, (size_t)sd_numel(xt) * sizeof(float));
    if (o->profile) sd_ops_set_profile(&r->prof_vae);
    const double tv = sd_now(), tvc = cpu_seconds();
    sd_tensor img;
    const int rc = p->taesd ? sd_taesd_decode(p->taesd, &p->arena, z, &img, err)
                            : sd_vae_decode(m, &p->arena, z, &img, err);
    r->t_vae = sd_now() - tv;
    r->cpu_vae = cpu_seconds() - tvc;
    sd_ops_set_profile(NULL);
    r->arena_vae = p->arena.peak;
    sd_arena_reset(&p->arena);
    return rc;
}

static void report_json(const bench_opts *o, const bench_result *r, int nthreads, double rss)
{
    const double g_unet = r->f_unet / r->med / 1e9, g_vae = o->no_vae ? 0 : r->f_vae / r->t_vae / 1e9;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddNumberToObject(j, "width", o->W);
    cJSON_AddNumberToObject(j, "height", o->H);
    cJSON_AddNumberToObject(j, "threads", nthreads);
    cJSON_AddStringToObject(j, "weights", o->wmode == SD_WEIGHTS_F16 ? "f16" : "f32");
    cJSON_AddBoolToObject(j, "winograd", sd_winograd());
    cJSON_AddNumberToObject(j, "load_s", r->t_load);
    cJSON_AddNumberToObject(j, "sgemm_gflops", r->peak);
    cJSON_AddNumberToObject(j, "sgemm_gflop_per_cpu_s", r->peak_cpu);
    cJSON_AddNumberToObject(j, "sgemm_best_gflops", r->peak_best);
    cJSON_AddNumberToObject(j, "sgemm_calls", r->sgemm_calls);
    cJSON_AddNumberToObject(j, "cfg_scale", o->cfg);
    cJSON_AddNumberToObject(j, "text_encode_s", r->t_text);
    cJSON_AddNumberToObject(j, "text_encode_first_s", r->t_text_first);
    if (o->vae_decoder) cJSON_AddStringToObject(j, "vae_decoder", o->vae_decoder);
    if (!o->no_vae) {
        cJSON_AddStringToObject(j, "sampler", sd_sampler_name(o->sampler));
        cJSON_AddNumberToObject(j, "image_steps", o->steps);
        cJSON_AddNumberToObject(j, "image_model_calls", sd_sampler_model_calls(o->sampler, o->steps));
        cJSON_AddNumberToObject(j, "image_first_s", r->img_wall[0]);
        cJSON_AddNumberToObject(j, "image_again_s", r->img_wall[1]);
        cJSON_AddNumberToObject(j, "image_again_text_s", r->img_text[1]);
        cJSON_AddNumberToObject(j, "image_again_unet_s", r->img_unet[1]);
        cJSON_AddNumberToObject(j, "image_again_decode_s", r->img_dec[1]);
    }
    cJSON_AddNumberToObject(j, "text_gflops", r->f_text / r->t_text / 1e9);
    cJSON_AddNumberToObject(j, "unet_warmup_s", r->t_warm);
    cJSON_AddNumberToObject(j, "unet_steps_timed", o->steps);
    cJSON_AddNumberToObject(j, "unet_s_per_step", r->med);
    cJSON_AddNumberToObject(j, "unet_s_per_step_min", r->t_min);
    cJSON_AddNumberToObject(j, "unet_steps_per_s", 1 / r->med);
    cJSON_AddNumberToObject(j, "unet_tflop_per_step", r->f_unet / 1e12);
    cJSON_AddNumberToObject(j, "unet_gflops", g_unet);
    cJSON_AddNumberToObject(j, "unet_pct_of_sgemm", 100 * g_unet / r->peak);
    cJSON_AddNumberToObject(j, "unet_cpu_s_per_step", r->cpu_steps);
    cJSON_AddNumberToObject(j, "unet_pct_of_sgemm_cpu", 100 * (r->f_unet / r->cpu_steps / 1e9) / r->peak_cpu);
    if (!o->no_vae) {
        cJSON_AddNumberToObject(j, "vae_decode_s", r->t_vae);
        cJSON_AddNumberToObject(j, "vae_tflop", r->f_vae / 1e12);
        cJSON_AddNumberToObject(j, "vae_gflops", g_vae);
        cJSON_AddNumberToObject(j, "vae_pct_of_sgemm", 100 * g_vae / r->peak);
        cJSON_AddNumberToObject(j, "vae_cpu_s", r->cpu_vae);
    }
    cJSON_AddNumberToObject(j, "arena_peak_unet_bytes", (double)r->arena_unet);
    cJSON_AddNumberToObject(j, "arena_peak_vae_bytes", (double)r->arena_vae);
    cJSON_AddNumberToObject(j, "peak_rss_bytes", rss);
    if (o->profile) {
        cJSON_AddItemToObject(j, "profile_text", profile_json(&r->prof_text, 1));
        cJSON_AddItemToObject(j, "profile_unet_per_step", profile_json(&r->prof_unet, o->steps));
        if (!o->no_vae) cJSON_AddItemToObject(j, "profile_vae", profile_json(&r->prof_vae, 1));
    }
    char *s = cJSON_PrintUnformatted(j);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

static void report_text(const bench_opts *o, const bench_result *r, int nthreads, double rss)
{
    const double g_unet = r->f_unet / r->med / 1e9, g_vae = o->no_vae ? 0 : r->f_vae / r->t_vae / 1e9;
    const double g_text = r->f_text / r->t_text / 1e9, peak = r->peak;
    printf("sdgen bench: %s, %dx%d, %d threads, %s weights in memory, Winograd 3x3 %s\n", o->model, o->W, o->H,
           nthreads, o->wmode == SD_WEIGHTS_F16 ? "f16" : "f32", sd_winograd() ? "on" : "off");
    printf("  %-28s %10s %12s %10s\n", "stage", "seconds", "GFLOP/s", "% sgemm");
    printf("  %-28s %10.3f %12.1f %9.0f%%   (median of %d calls before and after the steps; best %.1f)\n",
           "sgemm 1536^3 (reference)", 2.0 * 1536 * 1536 * 1536 / peak / 1e9, peak, 100.0, r->sgemm_calls,
           r->peak_best);
    const int cfg = o->cfg > 1.0f;
    printf("  %-28s %10.3f %12.1f %9.0f%%   (first call of the process %.3f s)\n",
           cfg ? "text encode (cond+uncond)" : "text encode (cond)", r->t_text, g_text, 100 * g_text / peak,
           r->t_text_first);
    printf("  %-28s %10.3f %12.1f %9.0f%%\n", cfg ? "U-Net step, CFG (median)" : "U-Net step, no CFG (median)", r->med,
           g_unet, 100 * g_unet / peak);
    if (!o->no_vae)
        printf("  %-28s %10.3f %12.1f %9.0f%%\n", o->vae_decoder ? "TAESD decode" : "VAE decode", r->t_vae, g_vae,
               100 * g_vae / peak);
    for (int k = 0; k < 2 && !o->no_vae; k++)
        printf("  %-28s %10.3f   = text %.3f + U-Net %.3f (%s, %d step%s = %d model calls) + decode %.3f + "
               "other %.3f\n",
               k ? "whole image (again)" : "whole image (first)", r->img_wall[k], r->img_text[k], r->img_unet[k],
               sd_sampler_name(o->sampler), o->steps, o->steps > 1 ? "s" : "",
               sd_sampler_model_calls(o->sampler, o->steps), r->img_dec[k],
               r->img_wall[k] - r->img_text[k] - r->img_unet[k] - r->img_dec[k]);
    printf("  U-Net: %.3f TFLOP per %s step, %.3f steps/s (%d timed after a %.2f s warm-up; fastest %.3f s)\n",
           r->f_unet / 1e12, o->cfg > 1.0f ? "CFG" : "no-CFG", 1 / r->med, o->steps, r->t_warm, r->t_min);
    if (!o->no_vae) printf("  %s decode: %.3f TFLOP\n", o->vae_decoder ? "TAESD" : "VAE", r->f_vae / 1e12);
    printf("  memory: peak RSS %.2f GB; activation arena peak U-Net %.0f MB, VAE %.0f MB; load %.2f s\n", rss / 1e9,
           r->arena_unet / 1e6, r->arena_vae / 1e6, r->t_load);
    printf("  CPU time: U-Net %.3f CPU-s per step (%.1f GFLOP per CPU-s = %.0f%% of sgemm's %.1f)", r->cpu_steps,
           r->f_unet / r->cpu_steps / 1e9, 100 * (r->f_unet / r->cpu_steps / 1e9) / r->peak_cpu, r->peak_cpu);
    if (!o->no_vae) printf(", VAE %.3f CPU-s", r->cpu_vae);
    printf("\n");
    if (o->profile) {
        print_profile("text encoder profile", &r->prof_text, 1, r->t_text);
        print_profile("U-Net step profile", &r->prof_unet, o->steps, r->wall_mean);
        if (!o->no_vae) print_profile("VAE decode profile", &r->prof_vae, 1, r->t_vae);
    }
}

int sd_cmd_bench(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_bench_args(argc, argv, &o);
    if (rc >= 0) return rc;
    if (o.threads > 0) sd_set_threads(o.threads);
    bench_result *r = calloc(1, sizeof *r);
    sgemm_calls *ref = calloc(1, sizeof *ref);
    if (!r || !ref) {
        free(r);
        free(ref);
        fprintf(stderr, "sdgen bench: out of memory\n");
        return SD_EXIT_OOM;
    }
    sd_pipeline p;
    sd_err err = {0};
    sd_cond c = {0}, u = {0};
    float *x = NULL;
    const double tl = sd_now();
    if (sd_pipeline_open(&p, o.model, o.vocab, &err)) {
        sd_cli_say("sdgen", "%s", err.msg);
        free(r);
        free(ref);
        return sd_cli_exit_code(err.code);
    }
    r->t_load = sd_now() - tl;
    sd_model *m = &p.model;
    rc = 0;
    if (sd_model_set_weights_mode(m, o.wmode, &err)) goto fail;
    if (o.vae_decoder && sd_pipeline_set_taesd(&p, o.vae_decoder, &err)) goto fail;
    const int f = sd_vae_factor(&m->vae), h = o.H / f, w = o.W / f, zc = m->vae.z_channels;
    const int64_t n = (int64_t)zc * h * w;
    x = malloc(sizeof(float) * (size_t)n);
    if (!x) {
        sd_errcf(&err, SD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    sd_rng rng;
    sd_rng_init(&rng, SD_RNG_CPU, 0);
    sd_rng_randn(&rng, x, n);
    const sd_tensor xt = {.data = x, .ndim = 4, .ne = {1, zc, h, w}};
    sd_gen_opts go;
    sd_gen_opts_default(&go);
    go.prompt = "a photograph of an astronaut riding a horse";
    go.width = o.W;
    go.height = o.H;
    go.cfg_scale = o.cfg;
    go.steps = o.steps;
    go.sampler = o.sampler;
    go.schedule = o.schedule;
    go.seed = 1;
    sd_cond *uc = o.cfg > 1.0f ? &u : NULL; /* diffusers: guidance <= 1 runs no unconditional pass */
    if (!o.no_vae && measure_image(&p, &go, 0, r, &err)) goto fail;

    sgemm_measure(1536, 2.0, ref); /* the reference: 2 s of calls now and 2 s after the timed steps, pooled */
    if (measure_text(&p, &o, &go, &c, uc, r, &err) || measure_unet(&p, &o, &go, xt, &c, uc, r, &err)) goto fail;
    sgemm_measure(1536, 2.0, ref);
    for (int i = 0; i < ref->n; i++)
        if (ref->wall[i] > r->peak_best) r->peak_best = ref->wall[i];
    r->peak = median_of(ref->wall, ref->n);
    r->peak_cpu = median_of(ref->cpu, ref->n);
    r->sgemm_calls = ref->n;
    if (!o.no_vae && (measure_vae(&p, &o, xt, r, &err) || measure_image(&p, &go, 1, r, &err))) goto fail;

    r->f_unet = (uc ? 2 : 1) * sd_unet_flops(&m->unet, h, w, SD_TOK_CONTEXT);
    r->f_vae = p.taesd ? sd_taesd_decode_flops(p.taesd, h, w) : sd_vae_decode_flops(&m->vae, h, w);
    for (int i = 0; i < m->n_text; i++) r->f_text += (uc ? 2 : 1) * sd_text_flops(&m->text[i]); /* SDXL: both */
    if (o.json) report_json(&o, r, sd_threads(), (double)sd_peak_rss_bytes());
    else report_text(&o, r, sd_threads(), (double)sd_peak_rss_bytes());
    goto done;
fail:
    sd_cli_say("sdgen", "%s", err.msg);
    rc = sd_cli_exit_code(err.code);
done:
    free(x);
    free(r);
    free(ref);
    sd_cond_free(&c);
    sd_cond_free(&u);
    sd_pipeline_close(&p);
    return rc;
}
