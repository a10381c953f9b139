/* cmd_generate.c — `sdgen [OPTIONS]`: generate images from prompts (one, N per prompt, or a
 * --prompts batch file), write PNGs with A1111-style parameters, report progress. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "sdgen/batch.h"
#include "sdgen/hash.h"
#include "sdgen/image.h"
#include "sdgen/ops.h"
#include "sdgen/options.h"
#include "sdgen/params.h"
#include "sdgen/family.h"
#include "sdgen/pipeline.h"
#include "sdgen/rng.h"

/* Set by the SIGINT / SIGTERM handler to the signal's number; polled between steps. SIGTERM (kill, timeout,
 * a batch system ending the job) stops like Ctrl-C: the image in progress is abandoned, the finished ones
 * stay, and the exit code is the shell's 128 + signal (130, 143). */
static volatile sig_atomic_t g_interrupted;

static void on_stop_signal(int sig)
{
    g_interrupted = sig;
    signal(sig, SIG_DFL); /* the same signal a second time kills at once */
}

typedef struct cli_opts {
    sd_gen_opts gen;
    const char *model, *output, *vocab, *prompts_file, *dump_dir;
    int threads, batch_count, quiet, verbose, overwrite, skip_existing;
    int weights_f32;
    int have_seed, have_width, have_height;
} cli_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdgen [OPTIONS] -p PROMPT [-o OUT.png]\n"
            "       sdgen info MODEL [--json]      describe a model (headers only)\n"
            "       sdgen tokenize [--vocab P] [--family sd1|sd2] [--chunks] TEXT\n"
            "       sdgen serve [-m MODEL] [--listen HOST:PORT] ...  the AUTOMATIC1111 web API (sdgen serve --help)\n"
            "       sdgen --version\n"
            "\n"
            "Generate images with a Stable Diffusion 1.x / 2.x checkpoint on the CPU.\n"
            "\n"
            "Model and text\n"
            "  -m, --model PATH           .safetensors checkpoint or diffusers folder (default: the demo model)\n"
            "  -p, --prompt TEXT          prompt; A1111 syntax: (word) (word:1.5) [word] BREAK, \\( \\) escapes\n"
            "  -n, --negative-prompt TEXT negative prompt (default \"\")\n"
            "      --no-weighting         take brackets in prompts literally\n"
            "      --vocab PATH           CLIP vocabulary: bpe_simple_vocab_16e6.txt.gz, vocab.json, merges.txt or\n"
            "                             a folder (default: $SDGEN_VOCAB, the model's tokenizer, the install dir)\n"
            "      --clip-skip N          stop N-1 text layers early, as A1111 counts it (default 1)\n"
            "Image\n"
            "  -W, --width N, -H, --height N  size in pixels, multiples of 8 (default: the model's, 512 for SD 1.x)\n"
            "      --steps N              denoising steps (default 20)\n"
            "      --cfg-scale X          classifier-free guidance scale; 1 skips the negative pass (default 7.5)\n"
            "      --sampler NAME         ddim | ddpm | euler | euler_a | dpmpp_2m (default euler_a)\n"
            "      --schedule NAME        default | karras (default: default)\n"
            "      --timestep-spacing S   leading | linspace | trailing (default: the sampler's own)\n"
            "      --prediction P         eps | v (default: from the model; SD 2.x files: v)\n"
            "      --seed N               random seed, 0..2^64-1, digits only (default or -1: random, printed)\n"
            "      --rng cpu|cuda         noise as PyTorch's CPU generator (default) or its CUDA generator\n"
            "                             (Philox, A1111's \"GPU\" seeds)\n"
            "  -i, --init-image FILE      image-to-image from a PNG/JPEG (size rounded down to multiples of 8)\n"
            "      --strength X           image-to-image strength in (0, 1]; int(steps * X) >= 1 (default 0.75)\n"
            "Output\n"
            "  -o, --output TEMPLATE      PNG path; {index} {seed} {prompt} are replaced, {{ }} are braces (default\n"
            "                             sdgen-{index}.png; several images into a name without {index} or {seed}\n"
            "                             are numbered name-{index}.png); every path is checked before the model loads\n"
            "      --batch-count N        N images per prompt, seeds S, S+1, ... (1..100000, default 1)\n"
            "      --prompts FILE         batch file: one prompt per line, or JSON Lines with case.json keys\n"
            "                             (numbers have the ranges of the options of the same name)\n"
            "      --overwrite            replace existing regular files (never links, devices, FIFOs, folders)\n"
            "      --skip-existing        skip items whose output is a complete PNG (resume a batch); an\n"
            "                             incomplete or damaged one is generated again and replaced\n"
            "      --dump-dir DIR         write intermediate tensors as .npy (golden-case names)\n"
            "Machine\n"
            "      --threads N            worker threads (default: all CPUs)\n"
            "      --max-memory SIZE      activation memory allowed, e.g. 8G or 1.5G: K M G T = 10^3 10^6 10^9 10^12\n"
            "                             bytes, a whole number of bytes up to 1000T (default: what is available)\n"
            "      --vae-tiling           decode in overlapping 512-pixel tiles (diffusers' tiled_decode): memory stays\n"
            "                             flat with the image size; pixels differ slightly from the untiled decode\n"
            "      --weights f16|f32      keep F16 weights as F16 and convert per use (default: less memory),\n"
            "                             or convert once to F32 (faster, twice the memory); same images\n"
            "  -q, --quiet, -v, --verbose, --version, -h, --help\n"
            "\n"
            "Exit codes: 0 ok, 1 some batch items failed, 2 usage or input error, 3 out of memory, 130 interrupted\n"
            "(SIGINT), 143 terminated (SIGTERM).\n");
}

/* Every message line that can hold user text (paths, option values, batch-file strings): "sdgen: " and
 * the text with its control characters escaped (commands.h), so that it cannot drive the terminal or
 * forge lines. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sd_cli_vsay("sdgen", fmt, ap);
    va_end(ap);
}

/* Numeric options go through the table and strict parser shared with the batch file (options.c); the
 * message names the option as it was typed (-W or --width). */
static int parse_num(const char *typed, const char *longopt, const char *v, sd_num *out)
{
    sd_err e = {0};
    const sd_num_opt *o = sd_num_opt_by_opt(longopt);
    if (!o) sd_errf(&e, "%s: no range defined", longopt);
    if (!o || sd_num_parse(o, typed, v, out, &e)) {
        say("%s", e.msg);
        return -1;
    }
    return 0;
}

static int parse_int(const char *typed, const char *longopt, const char *v, int *out)
{
    sd_num x;
    if (parse_num(typed, longopt, v, &x)) return -1;
    *out = (int)x.i;
    return 0;
}

static int parse_seed(const char *opt, const char *v, uint64_t *out)
{
    if (!strcmp(v, "-1")) return 1; /* A1111 uses -1 for "random" */
    if (sd_parse_u64(v, out)) {
        say("%s expects an integer in [0, 2^64-1] (or -1 for random), got \"%.64s\"", opt, v);
        return -1;
    }
    return 0;
}

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). Returns 0 when
 * valid, else the 1-based offset of the first bad byte. The prompt is checked here, before the model
 * is loaded, because the PNG parameters chunk needs valid UTF-8 and would otherwise fail only after
 * the image has been computed. */
static size_t utf8_bad_byte(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (s[i]) {
        unsigned c = s[i];
        int n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) n = 0;
        else if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c == 0xE0) n = 2, lo = 0xA0;
        else if (c == 0xED) n = 2, hi = 0x9F;
        else if (c >= 0xE1 && c <= 0xEF) n = 2;
        else if (c == 0xF0) n = 3, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) n = 3;
        else if (c == 0xF4) n = 3, hi = 0x8F;
        else return i + 1;
        for (int k = 1; k <= n; k++) {
            unsigned b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return i + k + 1;
        }
        i += (size_t)n + 1;
    }
    return 0;
}

static uint64_t random_seed(void)
{
    uint32_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) s = (uint32_t)(sd_now() * 1e6);
    return s; /* A1111 draws random seeds below 2^32 */
}

static int parse_args(int argc, char **argv, cli_opts *c)
{
    memset(c, 0, sizeof *c);
    sd_gen_opts_default(&c->gen);
    c->batch_count = 1;
    c->gen.width = c->gen.height = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(s, l) (!strcmp(a, s) || !strcmp(a, l))
#define NEEDV()                                                           \
    do {                                                                  \
        if (!v) {                                                         \
            fprintf(stderr, "sdgen: %s needs a value (see --help)\n", a); \
            return -1;                                                    \
        }                                                                 \
        i++;                                                              \
    } while (0)
        sd_num x;

        if (OPT("-h", "--help")) {
            usage(stdout);
            return 1;
        } else if (OPT("-m", "--model")) {
            NEEDV();
            c->model = v;
        } else if (OPT("-p", "--prompt")) {
            NEEDV();
            c->gen.prompt = v;
        } else if (OPT("-n", "--negative-prompt")) {
            NEEDV();
            c->gen.negative_prompt = v;
        } else if (OPT("-o", "--output")) {
            NEEDV();
            c->output = v;
        } else if (OPT("-W", "--width")) {
            NEEDV();
            if (parse_int(a, "--width", v, &c->gen.width)) return -1;
            c->have_width = 1;
        } else if (OPT("-H", "--height")) {
            NEEDV();
            if (parse_int(a, "--height", v, &c->gen.height)) return -1;
            c->have_height = 1;
        } else if (!strcmp(a, "--steps")) {
            NEEDV();
            if (parse_int(a, "--steps", v, &c->gen.steps)) return -1;
        } else if (!strcmp(a, "--cfg-scale")) {
            NEEDV();
            if (parse_num(a, "--cfg-scale", v, &x)) return -1;
            c->gen.cfg_scale = (float)x.d;
        } else if (!strcmp(a, "--seed")) {
            NEEDV();
            int r = parse_seed(a, v, &c->gen.seed);
            if (r < 0) return -1;
            c->have_seed = r == 0;
        } else if (!strcmp(a, "--sampler")) {
            NEEDV();
            sd_schedule implied = SD_SCHEDULE_DEFAULT;
            if (sd_sampler_parse(v, &c->gen.sampler, &implied)) {
                say("--sampler: unknown sampler \"%s\" (ddim, ddpm, euler, euler_a, dpmpp_2m)", v);
                return -1;
            }
            if (implied == SD_SCHEDULE_KARRAS) c->gen.schedule = implied;
        } else if (!strcmp(a, "--schedule")) {
            NEEDV();
            if (sd_schedule_parse(v, &c->gen.schedule)) {
                say("--schedule: unknown schedule \"%s\" (default, karras)", v);
                return -1;
            }
        } else if (!strcmp(a, "--timestep-spacing")) {
            NEEDV();
            if (sd_spacing_parse(v, &c->gen.spacing)) {
                say("--timestep-spacing: unknown spacing \"%s\" (leading, linspace, trailing)", v);
                return -1;
            }
        } else if (!strcmp(a, "--prediction")) {
            NEEDV();
            if (sd_prediction_parse(v, &c->gen.prediction)) {
                say("--prediction: expected eps or v, got \"%s\"", v);
                return -1;
            }
        } else if (!strcmp(a, "--rng")) {
            NEEDV();
            if (sd_rng_kind_parse(v, &c->gen.rng_kind)) {
                say("--rng: expected cpu or cuda, got \"%s\"", v);
                return -1;
            }
        } else if (!strcmp(a, "--clip-skip")) {
            NEEDV();
            if (parse_int(a, "--clip-skip", v, &c->gen.clip_skip)) return -1;
        } else if (!strcmp(a, "--threads")) {
            NEEDV();
            if (parse_int(a, "--threads", v, &c->threads)) return -1;
        } else if (!strcmp(a, "--vocab")) {
            NEEDV();
            c->vocab = v;
        } else if (!strcmp(a, "--batch-count")) {
            NEEDV();
            if (parse_int(a, "--batch-count", v, &c->batch_count)) return -1;
        } else if (OPT("-i", "--init-image")) {
            NEEDV();
            c->gen.init_image = v;
        } else if (!strcmp(a, "--strength")) {
            NEEDV();
            if (parse_num(a, "--strength", v, &x)) return -1;
            c->gen.strength = x.d;
        } else if (!strcmp(a, "--prompts")) {
            NEEDV();
            c->prompts_file = v;
        } else if (!strcmp(a, "--dump-dir")) {
            NEEDV();
            c->dump_dir = v;
        } else if (!strcmp(a, "--max-memory")) {
            NEEDV();
            if (parse_num(a, "--max-memory", v, &x)) return -1;
            c->gen.max_memory = (size_t)x.u;
        } else if (OPT("-q", "--quiet")) {
            c->quiet = 1;
        } else if (OPT("-v", "--verbose")) {
            c->verbose = 1;
        } else if (!strcmp(a, "--overwrite")) {
            c->overwrite = 1;
        } else if (!strcmp(a, "--skip-existing")) {
            c->skip_existing = 1;
        } else if (!strcmp(a, "--vae-tiling")) {
            c->gen.vae_tile = 64; /* diffusers enable_vae_tiling: 512-pixel tiles, overlap factor 0.25 */
            c->gen.vae_tile_overlap = 16;
        } else if (!strcmp(a, "--weights")) {
            NEEDV();
            if (!strcmp(v, "f32")) c->weights_f32 = 1;
            else if (!strcmp(v, "f16")) c->weights_f32 = 0;
            else {
                say("--weights: expected f16 or f32, got \"%s\"", v);
                return -1;
            }
        } else if (!strcmp(a, "--no-weighting")) {
            c->gen.weighting = 0;
        } else if (!strcmp(a, "--version")) {
            printf("sdgen %s\n", SDGEN_VERSION);
            return 1;
        } else {
            say("unknown option \"%s\" (see --help)", a);
            return -1;
        }

#undef OPT
#undef NEEDV
    }
    if (c->overwrite && c->skip_existing) {
        fprintf(stderr, "sdgen: --overwrite and --skip-existing contradict each other\n");
        return -1;
    }
    size_t bad;
    if ((bad = utf8_bad_byte(c->gen.prompt))) {
        fprintf(stderr, "sdgen: --prompt is not valid UTF-8 (byte %zu)\n", bad);
        return -1;
    }
    if ((bad = utf8_bad_byte(c->gen.negative_prompt))) {
        fprintf(stderr, "sdgen: --negative-prompt is not valid UTF-8 (byte %zu)\n", bad);
        return -1;
    }
    return 0;
}

/* ---- progress ---- */

typedef struct progress {
    int quiet, tty;
    int image, n_images;
    double start;
} progress;

static void on_step(void *user, int step, int n, double secs)
{
    progress *p = user;
    if (p->quiet) return;
    double el = sd_now() - p->start;
    double eta = step ? el / step * (n - step) : 0;
    if (p->tty) {
        int width = 30, fill = n ? step * width / n : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r[%d/%d] [%s] step %d/%d  %.2f s/step  ETA %.0f s ", p->image, p->n_images, bar, step, n, secs,
                eta);
        if (step == n) fputc('\n', stderr);
    } else {
        fprintf(stderr, "image %d/%d step %d/%d %.2f s/step eta %.0f s\n", p->image, p->n_images, step, n, secs, eta);
    }
}

/* ---- one image ---- */

typedef struct run_ctx {
    cli_opts *c;
    sd_pipeline *p;
    char model_hash[16];
    char model_name[256];
    int n_images_total, index, failed, skipped, written;
    int hash_tried;       /* the model hash is computed when the first PNG needs it, once */
    int stdout_gone;      /* stdout was closed or unwritable (EPIPE): stop printing, keep generating */
    unsigned char *item_bad; /* per batch item: failed before the model loaded (reported then) */
    unsigned char *img_bad;  /* per image index (1-based): failed before the model loaded */
    progress prog;
} run_ctx;

static char *infotext(run_ctx *r, const sd_gen_opts *o, const sd_gen_result *res, sd_err *err)
{
    char *text = NULL;
    if (sd_gen_infotext(o, res->w, res->h, r->model_hash, r->model_name, &text, err)) text = NULL;
    return text;
}

/* The A1111 "Model hash" for the infotext, computed when the first PNG is about to be written (a run that
 * writes nothing never reads the whole model) and stoppable by SIGINT/SIGTERM between blocks. Returns 0
 * (hash set, or unavailable: then omitted, as before), or -1 with code SD_EXIT_INTERRUPTED. */
static int model_hash_once(run_ctx *r, sd_err *err)
{
    if (r->hash_tried) return 0;
    r->hash_tried = 1;
    sd_err he = {0};
    char h10[16];
    if (sd_model_hash_stop(r->c->model, NULL, h10, &g_interrupted, &he) == 0) {
        snprintf(r->model_hash, sizeof r->model_hash, "%s", h10);
        return 0;
    }
    if (he.code == SD_EXIT_INTERRUPTED || g_interrupted) return sd_errcf(err, SD_EXIT_INTERRUPTED, "%s", he.msg);
    if (r->c->verbose) say("model hash unavailable: %s", he.msg);
    return 0;
}

/* Generate image `r->index` with options o into path; returns 0, or -1 with err (item failed). */
static int one_image(run_ctx *r, sd_gen_opts *o, const char *out_tmpl, const char *dump_root, int many, sd_err *err)
{
    char path[4096];
    if (sd_output_path(out_tmpl, r->index, o->seed, o->prompt, path, sizeof path, err)) return -1;
    /* Checked before the model loaded too; again now, as the folder may have changed since. */
    int mode = r->c->overwrite ? SD_WRITE_REPLACE : SD_WRITE_NEW;
    int state = sd_output_state(path, err);
    if (state < 0) return -1;
    if (state == 1) {
        if (r->c->skip_existing) {
            /* Only a complete PNG counts as done: a 0-byte or cut file (a killed writer of another
             * program, a full disk) is generated again and replaced, if it is still incomplete then. */
            int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0) return sd_errf(err, "%s: cannot read it to check that it is complete: %s", path, strerror(errno));
            close(fd);
            sd_err ve = {0};
            if (sd_png_verify(path, &ve) == 0) {
                if (!r->c->quiet) say("%s exists, skipped (--skip-existing)", path);
                r->skipped++;
                return 0;
            }
            if (ve.code == SD_EXIT_OOM) return sd_errcf(err, SD_EXIT_OOM, "%s", ve.msg);
            say("%s; generating it again (--skip-existing)", ve.msg);
            mode = SD_WRITE_REPLACE_INCOMPLETE;
        } else if (!r->c->overwrite) {
            return sd_errf(err, "%s: already exists (use --overwrite to replace it)", path);
        }
    }
    if (sd_check_output_dir(path, err)) return -1;
    char dump[4096];
    if (dump_root) {
        if (mkdir(dump_root, 0777) != 0 && errno != EEXIST)
            return sd_errf(err, "%s: cannot create directory: %s", dump_root, strerror(errno));
        if (many) snprintf(dump, sizeof dump, "%s/%d", dump_root, r->index);
        else snprintf(dump, sizeof dump, "%s", dump_root);
        o->dump_dir = dump;
    } else {
        o->dump_dir = NULL;
    }
    r->prog.image = r->index;
    r->prog.start = sd_now();
    sd_gen_result res;
    if (sd_generate(r->p, o, &res, err)) return -1;
    if (!r->c->quiet) {
        if (res.chunks_cond > 1 || res.chunks_uncond > 1)
            fprintf(stderr, "sdgen: the prompt is longer than 75 tokens: encoded as %d chunks of 75 (negative: %d)\n",
                    res.chunks_cond, res.chunks_uncond);
        if (res.init_resized) fprintf(stderr, "sdgen: init image resized to %dx%d\n", res.w, res.h);
    }
    if (model_hash_once(r, err)) {
        sd_gen_result_free(&res);
        return -1;
    }
    char *text = infotext(r, o, &res, err);
    if (!text) {
        sd_gen_result_free(&res);
        return -1;
    }
    /* No clobbering unless --overwrite: with --skip-existing too, a file that appeared meanwhile (another
     * run resuming the same batch) is kept and this item fails instead of replacing it. */
    int rc = sd_png_write(path, res.rgb, res.w, res.h, text, mode, err);
    free(text);
    if (rc == 0) {
        r->written++;
        if (!r->c->quiet)
            say("wrote %s (seed %llu; text %.2f s, denoise %.2f s, decode %.2f s)", path,
                    (unsigned long long)o->seed, res.t_text + res.t_encode, res.t_denoise, res.t_decode);
        /* -q lists the written files on stdout, one a line, flushed at once for a reader such as head.
         * Output paths hold no control characters (sd_check_output_name), so one path is one line. A
         * reader that quit (EPIPE; SIGPIPE is ignored in main.c) or a full stdout only ends the listing. */
        if (r->c->quiet && !r->stdout_gone && (printf("%s\n", path) < 0 || fflush(stdout) != 0)) r->stdout_gone = 1;
    }
    sd_gen_result_free(&res);
    return rc;
}

/* Apply a batch line's settings on top of the command line's. */
static int apply_item(const sd_batch_item *it, sd_gen_opts *o, int *batch_count, const char **output,
                      const cli_opts *c, sd_err *err)
{
    size_t bad;
    if (it->prompt && (bad = utf8_bad_byte(it->prompt))) return sd_errf(err, "prompt is not valid UTF-8 (byte %zu)", bad);
    if (it->negative_prompt && (bad = utf8_bad_byte(it->negative_prompt)))
        return sd_errf(err, "negative_prompt is not valid UTF-8 (byte %zu)", bad);
    if (it->prompt) o->prompt = it->prompt;
    if (it->negative_prompt) o->negative_prompt = it->negative_prompt;
    /* numbers were range-checked by the batch parser with the command line's table (options.c) */
    if (it->has_steps) o->steps = it->steps;
    if (it->has_width) o->width = it->width;
    if (it->has_height) o->height = it->height;
    if (it->has_cfg_scale) o->cfg_scale = (float)it->cfg_scale;
    if (it->has_strength) o->strength = it->strength;
    if (it->has_clip_skip) o->clip_skip = it->clip_skip;
    if (it->has_batch_count) *batch_count = it->batch_count;
    if (it->sampler) {
        sd_schedule implied = SD_SCHEDULE_DEFAULT;
        if (sd_sampler_parse(it->sampler, &o->sampler, &implied))
            return sd_errf(err, "unknown sampler \"%s\"", it->sampler);
        if (implied == SD_SCHEDULE_KARRAS) o->schedule = implied;
    }
    if (it->schedule && sd_schedule_parse(it->schedule, &o->schedule))
        return sd_errf(err, "unknown schedule \"%s\"", it->schedule);
    if (it->timestep_spacing && sd_spacing_parse(it->timestep_spacing, &o->spacing))
        return sd_errf(err, "unknown timestep spacing \"%s\"", it->timestep_spacing);
    if (it->rng && sd_rng_kind_parse(it->rng, &o->rng_kind)) return sd_errf(err, "unknown rng \"%s\"", it->rng);
    if (it->prediction && sd_prediction_parse(it->prediction, &o->prediction))
        return sd_errf(err, "unknown prediction \"%s\"", it->prediction);
    if (it->init_image) o->init_image = it->init_image;
    if (it->output) *output = it->output;
    if (it->model && c->model && strcmp(it->model, c->model) != 0)
        return sd_errf(err, "\"model\" differs from the loaded model (%s); a batch uses one model", c->model);
    return 0;
}

/* Settings that can be judged without the model, checked for every item before it loads: image-to-image
 * with int(steps·strength) = 0 runs no denoising step (diffusers StableDiffusionImg2ImgPipeline
 * get_timesteps; sd_sched_set_strength refuses it too, but only after the model and the image are loaded). */
static int check_early(const sd_gen_opts *o, sd_err *err)
{
    if (o->init_image && (int)((double)o->steps * o->strength) < 1)
        return sd_errf(err, "strength %g with %d steps runs no denoising step (int(steps·strength) = 0)", o->strength,
                       o->steps);
    return 0;
}

/* Several images into a template without {index} or {seed} would all get one name: they are numbered
 * "name-{index}.png" instead. */
static const char *numbered(const char *tmpl, int several, char *buf, size_t n)
{
    if (!several || sd_output_template_varies(tmpl)) return tmpl;
    const char *dot = strrchr(tmpl, '.');
    const char *slash = strrchr(tmpl, '/');
    if (dot && (!slash || dot > slash)) snprintf(buf, n, "%.*s-{index}%s", (int)(dot - tmpl), tmpl, dot);
    else snprintf(buf, n, "%s-{index}", tmpl);
    return buf;
}

/* Item k of the run (the command line itself without --prompts): its options, how many images it makes and
 * its output template (tbuf: room for a numbered one). The pre-load plan and the run loop both take their
 * items from here, so they agree on every path. Returns 0, or -1 with the message to report for the item. */
static int item_setup(const cli_opts *c, const sd_batch *batch, int k, const char *tmpl_default, sd_gen_opts *o,
                      int *bc, const char **tmpl, char *tbuf, size_t tn, sd_err *err)
{
    *o = c->gen;
    *bc = c->batch_count;
    *tmpl = tmpl_default;
    if (!c->prompts_file) return check_early(o, err);
    const sd_batch_item *it = &batch->items[k];
    if (it->error) return sd_errf(err, "%s", it->error); /* already "FILE:LINE: problem" */
    o->seed = c->gen.seed + (uint64_t)k; /* items without a seed: run seed + index − 1 */
    if (it->has_seed) o->seed = it->seed;
    const char *item_out = NULL;
    if (apply_item(it, o, bc, &item_out, c, err) || check_early(o, err))
        return sd_err_prefix(err, "%s:%d", c->prompts_file, it->line);
    if (item_out) *tmpl = numbered(item_out, *bc > 1, tbuf, tn);
    if (!it->has_width && !it->has_height && o->init_image && !c->have_width && !c->have_height)
        o->width = o->height = 0;
    return 0;
}

/* A map from 64-bit hashes to ints (open addressing), for the plan's folders and output paths. */
typedef struct hmap {
    uint64_t *key; /* 0 = empty slot */
    int *val;
    size_t cap, n;
} hmap;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a 64 (Fowler, Noll, Vo) */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ? h : 1;
}

/* The value slot of key k, added with value 0 when absent (*found = 0) ; NULL when out of memory. */
static int *hmap_slot(hmap *m, uint64_t k, int *found)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 1024;
        uint64_t *nk = calloc(nc, sizeof *nk);
        int *nv = calloc(nc, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return NULL;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->key[i]) continue;
            size_t j = m->key[i] & (nc - 1);
            while (nk[j]) j = (j + 1) & (nc - 1);
            nk[j] = m->key[i];
            nv[j] = m->val[i];
        }
        free(m->key);
        free(m->val);
        m->key = nk;
        m->val = nv;
        m->cap = nc;
    }
    size_t j = k & (m->cap - 1);
    while (m->key[j] && m->key[j] != k) j = (j + 1) & (m->cap - 1);
    *found = m->key[j] == k;
    if (!*found) {
        m->key[j] = k;
        m->val[j] = 0;
        m->n++;
    }
    return &m->val[j];
}

static void hmap_free(hmap *m)
{
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

/* The path of image `index` of item k, with its folder resolved (realpath) so that two spellings of one file
 * compare equal; canon gets "" when the folder does not exist (sd_check_output_dir reports that). */
static int image_path(const cli_opts *c, const sd_batch *batch, int k, int b, int index, const char *tmpl_default,
                      char *path, size_t pn, char *canon, size_t cn, sd_err *err)
{
    sd_gen_opts o;
    int bc;
    const char *tmpl;
    char tbuf[4096];
    if (item_setup(c, batch, k, tmpl_default, &o, &bc, &tmpl, tbuf, sizeof tbuf, err)) return -1;
    if (sd_output_path(tmpl, index, o.seed + (uint64_t)b, o.prompt, path, pn, err)) return -1;
    char dir[4096], real[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!slash) snprintf(dir, sizeof dir, ".");
    else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    canon[0] = 0;
    if (realpath(dir, real)) snprintf(canon, cn, "%s/%s", real, base);
    return 0;
}

/* Before the model loads (docs/RELIABILITY.md, "Robustness round 2, part B"): every batch line's settings,
 * then for every image of the run its output path: the template expands, the name is a legal file name without
 * control characters, nothing but a regular file is in the way and only with --overwrite or --skip-existing,
 * the folder can be written (and temporary files a killed run left there are removed), and no two images
 * share a file. Each failure is reported now and marked in r->item_bad / r->img_bad for the loop to skip.
 * `first_only`: stop at the first failure (a run from the command line alone is all or nothing). Returns
 * the number of failures, or -1 when out of memory. */
static int plan_run(run_ctx *r, const sd_batch *batch, int n_items, const int *item_bc, const char *tmpl_default,
                    int64_t start_ns, int first_only)
{
    const cli_opts *c = r->c;
    hmap dirs = {0}, paths = {0};
    int *img_item = calloc((size_t)r->n_images_total + 1, sizeof *img_item);
    int *item_first = calloc((size_t)n_items + 1, sizeof *item_first);
    int failures = 0, index = 0, oom = !img_item || !item_first;
    for (int k = 0; k < n_items && !oom && !(first_only && failures) && !g_interrupted; k++) {
        if (r->item_bad[k]) continue;
        item_first[k] = index + 1;
        for (int b = 0; b < item_bc[k] && !oom && !(first_only && failures); b++) {
            int idx = ++index;
            img_item[idx] = k;
            char path[4096], canon[PATH_MAX + 4096];
            sd_err e = {0};
            int bad = image_path(c, batch, k, b, idx, tmpl_default, path, sizeof path, canon, sizeof canon, &e) ||
                      sd_check_output_name(path, &e);
            int state = bad ? 0 : sd_output_state(path, &e);
            if (state < 0) bad = 1;
            if (!bad && state == 1 && !c->overwrite && !c->skip_existing) {
                sd_errf(&e, "%s: already exists (use --overwrite to replace it)", path);
                bad = 1;
            }
            if (!bad) {
                /* the folder: checked, and cleared of stale temporary files, once (value 1 good, 2 bad) */
                char dir[PATH_MAX + 4096];
                snprintf(dir, sizeof dir, "%s", canon);
                char *slash = strrchr(dir, '/');
                if (slash) *slash = 0;
                int found = 0, *v = canon[0] ? hmap_slot(&dirs, fnv1a(dir), &found) : NULL;
                if (canon[0] && !v) {
                    oom = 1;
                } else if (!v || !found || *v == 2) {
                    if (sd_check_output_dir(path, &e)) {
                        bad = 1;
                        if (v) *v = 2;
                    } else if (v && !found) {
                        *v = 1;
                        char first[256];
                        int n = sd_remove_stale_temps(dir, start_ns, first, sizeof first);
                        if (n && !c->quiet)
                            say("%s: removed %d stale temporary file%s of a killed sdgen run (%s%s)", dir, n,
                                n > 1 ? "s" : "", first, n > 1 ? ", ..." : "");
                    }
                }
            }
            if (!bad && canon[0] && !oom) {
                int found = 0, *v = hmap_slot(&paths, fnv1a(canon), &found);
                char opath[4096], ocanon[PATH_MAX + 4096];
                sd_err oe = {0};
                int old = v ? *v : 0;
                if (!v) {
                    oom = 1;
                } else if (!found) {
                    *v = idx;
                } else if (image_path(c, batch, img_item[old], old - item_first[img_item[old]], old, tmpl_default,
                                      opath, sizeof opath, ocanon, sizeof ocanon, &oe) == 0 &&
                           !strcmp(ocanon, canon)) {
                    /* (a 64-bit hash match of two different paths would only skip this check) */
                    if (c->prompts_file)
                        sd_errf(&e, "%s: also the output of image %d (line %d); every image needs its own file (put "
                                    "{index} or {seed} in the name)",
                                path, old, batch->items[img_item[old]].line);
                    else
                        sd_errf(&e, "%s: also the output of image %d; every image needs its own file (put {index} or "
                                    "{seed} in the name)",
                                path, old);
                    bad = 1;
                }
            }
            if (bad) {
                if (c->prompts_file) say("%s:%d: %s", c->prompts_file, batch->items[k].line, e.msg);
                else say("%s", e.msg);
                r->img_bad[idx] = 1;
                r->failed++;
                failures++;
            }
        }
    }
    free(img_item);
    free(item_first);
    hmap_free(&dirs);
    hmap_free(&paths);
    return oom ? -1 : failures;
}

/* The most images one run makes (the product of --batch-count and a batch file's lines is bounded by it, so
 * the image counter and the progress total stay in an int). */
#define SD_RUN_MAX_IMAGES 1000000

int sd_cmd_generate(int argc, char **argv)
{
    /* The start of the run: temporary files older than this, of processes no longer running, were left by
     * a killed run (sd_remove_stale_temps). */
    struct timespec t_start;
    clock_gettime(CLOCK_REALTIME, &t_start);
    const int64_t start_ns = (int64_t)t_start.tv_sec * 1000000000LL + t_start.tv_nsec;
    cli_opts c;
    int pr = parse_args(argc, argv, &c);
    if (pr > 0) return 0;
    if (pr < 0) return SD_EXIT_INPUT;
    if (c.threads) sd_set_threads(c.threads);
    int demo = 0;
    sd_err err = {0};
    char demo_path[4096];
    if (!c.model) {
        if (sd_default_model_path(demo_path, sizeof demo_path, &err)) {
            fprintf(stderr, "sdgen: %s (pass --model)\n", err.msg);
            return SD_EXIT_INPUT;
        }
        c.model = demo_path;
        demo = 1;
    }
    sd_batch batch = {0};
    if (c.prompts_file) {
        if (sd_batch_parse_file(c.prompts_file, &batch, &err)) {
            say("%s", err.msg);
            return err.code ? err.code : SD_EXIT_INPUT;
        }
        if (batch.n == 0) {
            /* Nothing to do is almost certainly a mistake (wrong file): say so instead of exiting 0. */
            say("%s: no prompts in the batch file (only blank lines and # comments)", c.prompts_file);
            sd_batch_free(&batch);
            return SD_EXIT_INPUT;
        }
    } else if (!c.gen.prompt[0] && !c.gen.init_image && !c.quiet) {
        fprintf(stderr, "sdgen: note: empty prompt (use -p \"...\")\n");
    }
    /* Drawn now, not after loading: {seed} in output names is checked before the model loads. */
    if (!c.have_seed) c.gen.seed = random_seed();
    const char *out_tmpl = c.output ? c.output : "sdgen-{index}.png";
    /* Fail before loading gigabytes when the output folder can't be written (for the command line's own
     * first image, also when a non-regular file is in the way: the folder probe must not write into /dev). */
    char probe[4096];
    if (!c.prompts_file || c.output) {
        if (sd_output_path(out_tmpl, 1, c.gen.seed, c.gen.prompt, probe, sizeof probe, &err) ||
            (!c.prompts_file && (sd_check_output_name(probe, &err) || sd_output_state(probe, &err) < 0)) ||
            sd_check_output_dir(probe, &err)) {
            say("%s", err.msg);
            sd_batch_free(&batch);
            return SD_EXIT_INPUT;
        }
    }
    if (c.dump_dir && mkdir(c.dump_dir, 0777) != 0 && errno != EEXIST) {
        say("%s: cannot create directory: %s", c.dump_dir, strerror(errno));
        sd_batch_free(&batch);
        return SD_EXIT_INPUT;
    }

    /* From here on a stop signal is reported, also while the run is planned or the model loads: the loop
     * below then starts no image and the summary says 0 written. */
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);

    /* Plan the run before loading anything: every item's settings, then every image's output path. */
    run_ctx r = {0};
    r.c = &c;
    int exit_code = 0, n_items = c.prompts_file ? batch.n : 1, many = 0;
    int *item_bc = calloc((size_t)n_items, sizeof *item_bc);
    r.item_bad = calloc((size_t)n_items, 1);
    sd_pipeline p;
    int p_open = 0;
    const char *tmpl_default = out_tmpl;
    char tmpl_buf[4096];
    if (!item_bc || !r.item_bad) {
        say("out of memory planning the run");
        exit_code = SD_EXIT_OOM;
        goto done;
    }
    long long total = 0;
    for (int k = 0; k < n_items; k++) {
        sd_gen_opts o;
        const char *tmpl;
        char tbuf[4096];
        sd_err ie = {0};
        if (item_setup(&c, &batch, k, out_tmpl, &o, &item_bc[k], &tmpl, tbuf, sizeof tbuf, &ie)) {
            say("%s", ie.msg);
            r.item_bad[k] = 1;
            r.failed++;
            item_bc[k] = 0;
            if (!c.prompts_file) {
                exit_code = ie.code ? ie.code : SD_EXIT_INPUT;
                goto done;
            }
        }
        total += item_bc[k];
    }
    if (total > SD_RUN_MAX_IMAGES) {
        say("the run would make %lld images; at most %d per run (split the batch file or lower --batch-count)", total,
            SD_RUN_MAX_IMAGES);
        exit_code = SD_EXIT_INPUT;
        goto done;
    }
    r.n_images_total = (int)total;
    r.img_bad = calloc((size_t)total + 1, 1);
    if (!r.img_bad) {
        say("out of memory planning the run");
        exit_code = SD_EXIT_OOM;
        goto done;
    }
    many = r.n_images_total > 1;
    tmpl_default = numbered(out_tmpl, many, tmpl_buf, sizeof tmpl_buf);
    int n_bad = plan_run(&r, &batch, n_items, item_bc, tmpl_default, start_ns, !c.prompts_file);
    if (n_bad < 0) {
        say("out of memory planning the run");
        exit_code = SD_EXIT_OOM;
        goto done;
    }
    if (n_bad && !c.prompts_file) {
        exit_code = SD_EXIT_INPUT; /* the command line alone: its one problem was reported */
        goto done;
    }
    if (c.prompts_file && n_bad == r.n_images_total && !g_interrupted) {
        /* every line failed already: no reason to load the model */
        say("%d images written, %d skipped, %d failed", r.written, r.skipped, r.failed);
        exit_code = SD_EXIT_ITEMS_FAILED;
        goto done;
    }

    if (sd_pipeline_open(&p, c.model, c.vocab, &err)) {
        say("%s", err.msg);
        exit_code = err.code ? err.code : SD_EXIT_INPUT;
        goto done;
    }
    p_open = 1;
    if (c.weights_f32 && sd_model_set_weights_mode(&p.model, SD_WEIGHTS_F32, &err)) {
        say("%s", err.msg);
        exit_code = err.code ? err.code : SD_EXIT_INPUT;
        goto done;
    }
    sd_prediction pred = c.gen.prediction != SD_PRED_UNKNOWN ? c.gen.prediction : p.model.prediction;
    if (!c.quiet) {
        if (demo) say("using the demo model %s (pass --model for a real checkpoint)", c.model);
        say("model %s (%s), prediction %s: %s", c.model, sd_family_name(p.model.family), sd_prediction_name(pred),
            c.gen.prediction != SD_PRED_UNKNOWN ? "set by --prediction" : p.model.prediction_why);
    }
    int dw, dh;
    sd_family_default_size(&p.model, pred, &dw, &dh);
    if (!c.have_width) c.gen.width = dw;
    if (!c.have_height) c.gen.height = dh;
    if (c.gen.init_image && !c.have_width && !c.have_height) c.gen.width = c.gen.height = 0;
    if (!c.have_seed && !c.quiet) fprintf(stderr, "sdgen: seed %llu\n", (unsigned long long)c.gen.seed);

    r.p = &p;
    sd_params_model_name(c.model, r.model_name, sizeof r.model_name);
    r.prog.quiet = c.quiet;
    r.prog.tty = isatty(2);
    c.gen.progress = on_step;
    c.gen.progress_user = &r.prog;
    c.gen.interrupted = &g_interrupted;

    /* Validate the command line's settings against the model once, before any work. */
    if (!c.prompts_file && sd_gen_validate(&p, &c.gen, &err)) {
        say("%s", err.msg);
        exit_code = err.code ? err.code : SD_EXIT_INPUT;
        goto done;
    }
    r.prog.n_images = r.n_images_total;

    for (int k = 0; k < n_items && !g_interrupted; k++) {
        if (r.item_bad[k]) continue; /* reported before the model loaded */
        sd_gen_opts o;
        int bc;
        const char *tmpl;
        char tbuf[4096];
        const char *where = "";
        char wbuf[4200];
        sd_err ie = {0};
        if (item_setup(&c, &batch, k, tmpl_default, &o, &bc, &tmpl, tbuf, sizeof tbuf, &ie)) {
            say("%s", ie.msg); /* not expected: the plan passed this item */
            r.failed++;
            continue;
        }
        if (c.prompts_file) {
            snprintf(wbuf, sizeof wbuf, "%s:%d: ", c.prompts_file, batch.items[k].line);
            where = wbuf;
        }
        uint64_t seed0 = o.seed;
        for (int b = 0; b < bc && !g_interrupted; b++) {
            o.seed = seed0 + (uint64_t)b;
            r.index++;
            if (r.img_bad[r.index]) continue; /* reported before the model loaded */
            ie = (sd_err){0};
            if (one_image(&r, &o, tmpl, c.dump_dir, many, &ie)) {
                if (ie.code == SD_EXIT_INTERRUPTED || g_interrupted) break;
                say("%s%s", where, ie.msg);
                r.failed++;
                if (!c.prompts_file && r.n_images_total == 1) exit_code = ie.code ? ie.code : SD_EXIT_INPUT;
            }
        }
    }
    if (g_interrupted) {
        fprintf(stderr, "\nsdgen: interrupted%s: %d of %d images written, %d skipped, %d failed; the image in progress "
                        "was abandoned (rerun with --skip-existing to resume)\n",
                g_interrupted == SIGTERM ? " (SIGTERM)" : "", r.written, r.n_images_total, r.skipped, r.failed);
        exit_code = g_interrupted == SIGTERM ? 128 + SIGTERM : SD_EXIT_INTERRUPTED;
    } else if (r.failed) {
        if (r.n_images_total > 1 || c.prompts_file) {
            fprintf(stderr, "sdgen: %d images written, %d skipped, %d failed\n", r.written, r.skipped, r.failed);
            exit_code = SD_EXIT_ITEMS_FAILED;
        }
    }
done:
    if (p_open) sd_pipeline_close(&p);
    sd_batch_free(&batch);
    free(item_bc);
    free(r.item_bad);
    free(r.img_bad);
    return exit_code;
}
