/* cmd_generate.c — `sdgen [OPTIONS]`: generate images from prompts (one, N per prompt, or a
 * --prompts batch file), write PNGs with A1111-style parameters, report progress. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "sdgen/batch.h"
#include "sdgen/hash.h"
#include "sdgen/image.h"
#include "sdgen/ops.h"
#include "sdgen/params.h"
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
    int check_weights;
} cli_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdgen [OPTIONS] -p PROMPT [-o OUT.png]\n"
            "       sdgen info MODEL [--json]      describe a model (headers only)\n"
            "       sdgen tokenize [--vocab P] [--family sd1|sd2] [--chunks] TEXT\n"
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
            "      --seed N               random seed, 0..2^64-1 (default: random, printed)\n"
            "      --rng cpu|cuda         noise as PyTorch's CPU generator (default) or its CUDA generator\n"
            "                             (Philox, A1111's \"GPU\" seeds)\n"
            "  -i, --init-image FILE      image-to-image from a PNG/JPEG (size rounded down to multiples of 8)\n"
            "      --strength X           image-to-image strength 0..1 (default 0.75)\n"
            "Output\n"
            "  -o, --output TEMPLATE      PNG path; {index} {seed} {prompt} are replaced (default sdgen-{index}.png)\n"
            "      --batch-count N        N images per prompt, seeds S, S+1, ... (default 1)\n"
            "      --prompts FILE         batch file: one prompt per line, or JSON Lines with case.json keys\n"
            "      --overwrite            replace existing outputs (default: that item fails)\n"
            "      --skip-existing        skip items whose output exists (resume a batch)\n"
            "      --dump-dir DIR         write intermediate tensors as .npy (golden-case names)\n"
            "Machine\n"
            "      --threads N            worker threads (default: all CPUs)\n"
            "      --max-memory SIZE      activation memory allowed, e.g. 8G (default: what is available)\n"
            "      --vae-tiling           decode in overlapping 512-pixel tiles (diffusers' tiled_decode): memory stays\n"
            "                             flat with the image size; pixels differ slightly from the untiled decode\n"
            "      --weights f16|f32      keep F16 weights as F16 and convert per use (default: less memory),\n"
            "                             or convert once to F32 (faster, twice the memory); same images\n"
            "      --check-weights        scan every weight for NaN/Inf before generating (reads the whole file)\n"
            "  -q, --quiet, -v, --verbose, --version, -h, --help\n"
            "\n"
            "Exit codes: 0 ok, 1 some batch items failed, 2 usage or input error, 3 out of memory, 130 interrupted\n"
            "(SIGINT), 143 terminated (SIGTERM).\n");
}

static int parse_int(const char *opt, const char *v, long lo, long hi, int *out)
{
    char *e;
    errno = 0;
    long x = strtol(v, &e, 10);
    if (errno || e == v || *e || x < lo || x > hi) {
        fprintf(stderr, "sdgen: %s expects an integer in [%ld, %ld], got \"%s\"\n", opt, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_float(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *e;
    errno = 0;
    double x = strtod(v, &e);
    if (errno || e == v || *e || !(x >= lo && x <= hi)) {
        fprintf(stderr, "sdgen: %s expects a number in [%g, %g], got \"%s\"\n", opt, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_u64(const char *opt, const char *v, uint64_t *out)
{
    char *e;
    errno = 0;
    if (v[0] == '-') {
        /* A1111 uses -1 for "random" */
        if (!strcmp(v, "-1")) return 1;
        fprintf(stderr, "sdgen: %s expects an integer in [0, 2^64-1] (or -1 for random), got \"%s\"\n", opt, v);
        return -1;
    }
    unsigned long long x = strtoull(v, &e, 10);
    if (errno || e == v || *e) {
        fprintf(stderr, "sdgen: %s expects an integer in [0, 2^64-1], got \"%s\"\n", opt, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_size(const char *opt, const char *v, size_t *out)
{
    char *e;
    errno = 0;
    double x = strtod(v, &e);
    double mul = 1;
    if (*e == 'k' || *e == 'K') mul = 1e3, e++;
    else if (*e == 'm' || *e == 'M') mul = 1e6, e++;
    else if (*e == 'g' || *e == 'G') mul = 1e9, e++;
    else if (*e == 't' || *e == 'T') mul = 1e12, e++;
    if (*e == 'B' || *e == 'b') e++;
    if (errno || e == v || *e || !(x > 0)) {
        fprintf(stderr, "sdgen: %s expects a size like 8G or 512M, got \"%s\"\n", opt, v);
        return -1;
    }
    *out = (size_t)(x * mul);
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

/* The demo model: beside the binary's source tree or in the install data dir. */
static const char *default_model(void)
{
    static char path[4096];
    const char *cands[] = {SDGEN_DATA_DIR "/models/demo.safetensors", SDGEN_SOURCE_DIR "/models/demo.safetensors"};
    const char *env = getenv("SDGEN_MODEL");
    if (env && *env) return env;
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (access(cands[i], R_OK) == 0) {
            snprintf(path, sizeof path, "%s", cands[i]);
            return path;
        }
    }
    return NULL;
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
        double d;

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
            if (parse_int(a, v, 8, 65536, &c->gen.width)) return -1;
            c->have_width = 1;
        } else if (OPT("-H", "--height")) {
            NEEDV();
            if (parse_int(a, v, 8, 65536, &c->gen.height)) return -1;
            c->have_height = 1;
        } else if (!strcmp(a, "--steps")) {
            NEEDV();
            if (parse_int(a, v, 1, SD_SCHED_MAX_STEPS, &c->gen.steps)) return -1;
        } else if (!strcmp(a, "--cfg-scale")) {
            NEEDV();
            if (parse_float(a, v, 0, 100, &d)) return -1;
            c->gen.cfg_scale = (float)d;
        } else if (!strcmp(a, "--seed")) {
            NEEDV();
            int r = parse_u64(a, v, &c->gen.seed);
            if (r < 0) return -1;
            c->have_seed = r == 0;
        } else if (!strcmp(a, "--sampler")) {
            NEEDV();
            sd_schedule implied = SD_SCHEDULE_DEFAULT;
            if (sd_sampler_parse(v, &c->gen.sampler, &implied)) {
                fprintf(stderr, "sdgen: --sampler: unknown sampler \"%s\" (ddim, ddpm, euler, euler_a, dpmpp_2m)\n", v);
                return -1;
            }
            if (implied == SD_SCHEDULE_KARRAS) c->gen.schedule = implied;
        } else if (!strcmp(a, "--schedule")) {
            NEEDV();
            if (sd_schedule_parse(v, &c->gen.schedule)) {
                fprintf(stderr, "sdgen: --schedule: unknown schedule \"%s\" (default, karras)\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--timestep-spacing")) {
            NEEDV();
            if (sd_spacing_parse(v, &c->gen.spacing)) {
                fprintf(stderr, "sdgen: --timestep-spacing: unknown spacing \"%s\" (leading, linspace, trailing)\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--prediction")) {
            NEEDV();
            if (!strcmp(v, "eps") || !strcmp(v, "epsilon")) c->gen.prediction = SD_PRED_EPS;
            else if (!strcmp(v, "v") || !strcmp(v, "v_prediction")) c->gen.prediction = SD_PRED_V;
            else {
                fprintf(stderr, "sdgen: --prediction: expected eps or v, got \"%s\"\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--rng")) {
            NEEDV();
            if (sd_rng_kind_parse(v, &c->gen.rng_kind)) {
                fprintf(stderr, "sdgen: --rng: expected cpu or cuda, got \"%s\"\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--clip-skip")) {
            NEEDV();
            if (parse_int(a, v, 1, 64, &c->gen.clip_skip)) return -1;
        } else if (!strcmp(a, "--threads")) {
            NEEDV();
            if (parse_int(a, v, 1, 1024, &c->threads)) return -1;
        } else if (!strcmp(a, "--vocab")) {
            NEEDV();
            c->vocab = v;
        } else if (!strcmp(a, "--batch-count")) {
            NEEDV();
            if (parse_int(a, v, 1, 100000, &c->batch_count)) return -1;
        } else if (OPT("-i", "--init-image")) {
            NEEDV();
            c->gen.init_image = v;
        } else if (!strcmp(a, "--strength")) {
            NEEDV();
            if (parse_float(a, v, 0, 1, &d)) return -1;
            c->gen.strength = d;
        } else if (!strcmp(a, "--prompts")) {
            NEEDV();
            c->prompts_file = v;
        } else if (!strcmp(a, "--dump-dir")) {
            NEEDV();
            c->dump_dir = v;
        } else if (!strcmp(a, "--max-memory")) {
            NEEDV();
            if (parse_size(a, v, &c->gen.max_memory)) return -1;
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
                fprintf(stderr, "sdgen: --weights: expected f16 or f32, got \"%s\"\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--check-weights")) {
            c->check_weights = 1;
        } else if (!strcmp(a, "--no-weighting")) {
            c->gen.weighting = 0;
        } else if (!strcmp(a, "--version")) {
            printf("sdgen %s\n", SDGEN_VERSION);
            return 1;
        } else {
            fprintf(stderr, "sdgen: unknown option \"%s\" (see --help)\n", a);
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
    progress prog;
} run_ctx;

static void model_name_of(const char *path, char *out, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b && b[1] ? b + 1 : path;
    snprintf(out, n, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && (!strcmp(dot, ".safetensors") || !strcmp(dot, ".ckpt"))) *dot = 0;
    size_t l = strlen(out);
    while (l > 0 && out[l - 1] == '/') out[--l] = 0;
}

static char *infotext(run_ctx *r, const sd_gen_opts *o, const sd_gen_result *res, sd_err *err)
{
    sd_gen_params gp;
    sd_params_init(&gp);
    gp.prompt = o->prompt;
    gp.negative_prompt = o->negative_prompt;
    gp.steps = o->steps;
    gp.sampler = sd_sampler_a1111_name(o->sampler);
    gp.schedule_type = sd_schedule_a1111_name(o->schedule);
    gp.cfg_scale = o->cfg_scale;
    gp.seed = o->seed;
    gp.width = res->w;
    gp.height = res->h;
    gp.model_hash = r->model_hash[0] ? r->model_hash : NULL;
    gp.model_name = r->model_name;
    gp.denoising_strength = o->init_image ? o->strength : -1;
    gp.clip_skip = o->clip_skip;
    gp.rng = o->rng_kind == SD_RNG_CUDA ? "GPU" : "CPU";
    char *text = NULL;
    if (sd_params_format(&gp, &text, err)) text = NULL;
    return text;
}

/* Generate image `r->index` with options o into path; returns 0, or -1 with err (item failed). */
static int one_image(run_ctx *r, sd_gen_opts *o, const char *out_tmpl, const char *dump_root, int many, sd_err *err)
{
    char path[4096];
    if (sd_output_path(out_tmpl, r->index, o->seed, o->prompt, path, sizeof path, err)) return -1;
    struct stat pst;
    /* A folder in the way would only fail at the final rename, after all the compute. */
    if (stat(path, &pst) == 0 && S_ISDIR(pst.st_mode))
        return sd_errf(err, "%s: is a directory, not an image file name", path);
    if (access(path, F_OK) == 0) {
        if (r->c->skip_existing) {
            if (!r->c->quiet) fprintf(stderr, "sdgen: %s exists, skipped (--skip-existing)\n", path);
            r->skipped++;
            return 0;
        }
        if (!r->c->overwrite) return sd_errf(err, "%s: already exists (use --overwrite to replace it)", path);
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
    char *text = infotext(r, o, &res, err);
    if (!text) {
        sd_gen_result_free(&res);
        return -1;
    }
    /* No clobbering unless --overwrite: with --skip-existing too, a file that appeared meanwhile (another
     * run resuming the same batch) is kept and this item fails instead of replacing it. */
    int rc = sd_png_write(path, res.rgb, res.w, res.h, text, r->c->overwrite, err);
    free(text);
    if (rc == 0) {
        r->written++;
        if (!r->c->quiet)
            fprintf(stderr, "sdgen: wrote %s (seed %llu; text %.2f s, denoise %.2f s, decode %.2f s)\n", path,
                    (unsigned long long)o->seed, res.t_text + res.t_encode, res.t_denoise, res.t_decode);
        if (r->c->quiet) printf("%s\n", path);
    }
    sd_gen_result_free(&res);
    return rc;
}

/* Default size from the model: modelspec.resolution "WxH", else 768 for SD 2.x v, else 512. */
static void model_default_size(const sd_model *m, sd_prediction pred, int *w, int *h)
{
    const char *res = sd_model_meta(m, "modelspec.resolution");
    int a, b;
    if (res && sscanf(res, "%dx%d", &a, &b) == 2 && a >= 8 && b >= 8 && a % 8 == 0 && b % 8 == 0 && a <= 8192 &&
        b <= 8192) {
        *w = a;
        *h = b;
        return;
    }
    int s = m->family == SD_FAMILY_SD2 && pred == SD_PRED_V ? 768 : 512;
    *w = *h = s;
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
    if (it->has_steps) {
        if (it->steps < 1 || it->steps > SD_SCHED_MAX_STEPS) return sd_errf(err, "steps must be 1..%d", SD_SCHED_MAX_STEPS);
        o->steps = it->steps;
    }
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
    if (it->prediction) {
        if (!strcmp(it->prediction, "eps") || !strcmp(it->prediction, "epsilon")) o->prediction = SD_PRED_EPS;
        else if (!strcmp(it->prediction, "v") || !strcmp(it->prediction, "v_prediction")) o->prediction = SD_PRED_V;
        else return sd_errf(err, "unknown prediction \"%s\"", it->prediction);
    }
    if (it->init_image) o->init_image = it->init_image;
    if (it->output) *output = it->output;
    if (it->model && c->model && strcmp(it->model, c->model) != 0)
        return sd_errf(err, "\"model\" differs from the loaded model (%s); a batch uses one model", c->model);
    if (it->has_eta && it->eta != 0) return sd_errf(err, "eta other than 0 is not supported");
    return 0;
}

int sd_cmd_generate(int argc, char **argv)
{
    cli_opts c;
    int pr = parse_args(argc, argv, &c);
    if (pr > 0) return 0;
    if (pr < 0) return SD_EXIT_INPUT;
    if (c.threads) sd_set_threads(c.threads);
    int demo = 0;
    if (!c.model) {
        c.model = default_model();
        if (!c.model) {
            fprintf(stderr, "sdgen: no --model given and the demo model (models/demo.safetensors) is not installed\n");
            return SD_EXIT_INPUT;
        }
        demo = 1;
    }
    sd_batch batch = {0};
    sd_err err = {0};
    if (c.prompts_file) {
        if (sd_batch_parse_file(c.prompts_file, &batch, &err)) {
            fprintf(stderr, "sdgen: %s\n", err.msg);
            return err.code ? err.code : SD_EXIT_INPUT;
        }
        if (batch.n == 0) {
            /* Nothing to do is almost certainly a mistake (wrong file): say so instead of exiting 0. */
            fprintf(stderr, "sdgen: %s: no prompts in the batch file (only blank lines and # comments)\n",
                    c.prompts_file);
            sd_batch_free(&batch);
            return SD_EXIT_INPUT;
        }
    } else if (!c.gen.prompt[0] && !c.gen.init_image && !c.quiet) {
        fprintf(stderr, "sdgen: note: empty prompt (use -p \"...\")\n");
    }
    const char *out_tmpl = c.output ? c.output : "sdgen-{index}.png";
    /* Fail before loading gigabytes when the output folder can't be written. */
    char probe[4096];
    if (!c.prompts_file || c.output) {
        if (sd_output_path(out_tmpl, 1, c.gen.seed, c.gen.prompt, probe, sizeof probe, &err) ||
            sd_check_output_dir(probe, &err)) {
            fprintf(stderr, "sdgen: %s\n", err.msg);
            sd_batch_free(&batch);
            return SD_EXIT_INPUT;
        }
    }

    /* From here on a stop signal is reported, also while the model loads or its hash is computed: the
     * loop below then starts no image and the summary says 0 written. */
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    sd_pipeline p;
    if (sd_pipeline_open(&p, c.model, c.vocab, &err)) {
        fprintf(stderr, "sdgen: %s\n", err.msg);
        sd_batch_free(&batch);
        return err.code ? err.code : SD_EXIT_INPUT;
    }
    if ((c.weights_f32 && sd_model_set_weights_mode(&p.model, SD_WEIGHTS_F32, &err)) ||
        (c.check_weights && sd_model_check_weights(&p.model, &err))) {
        fprintf(stderr, "sdgen: %s\n", err.msg);
        sd_pipeline_close(&p);
        sd_batch_free(&batch);
        return err.code ? err.code : SD_EXIT_INPUT;
    }
    sd_prediction pred = c.gen.prediction != SD_PRED_UNKNOWN ? c.gen.prediction : p.model.prediction;
    if (!c.quiet) {
        if (demo) fprintf(stderr, "sdgen: using the demo model %s (pass --model for a real checkpoint)\n", c.model);
        fprintf(stderr, "sdgen: model %s (%s), prediction %s: %s\n", c.model, sd_family_name(p.model.family),
                sd_prediction_name(pred),
                c.gen.prediction != SD_PRED_UNKNOWN ? "set by --prediction" : p.model.prediction_why);
    }
    int dw, dh;
    model_default_size(&p.model, pred, &dw, &dh);
    if (!c.have_width) c.gen.width = dw;
    if (!c.have_height) c.gen.height = dh;
    if (c.gen.init_image && !c.have_width && !c.have_height) c.gen.width = c.gen.height = 0;
    if (!c.have_seed) {
        c.gen.seed = random_seed();
        if (!c.quiet) fprintf(stderr, "sdgen: seed %llu\n", (unsigned long long)c.gen.seed);
    }

    run_ctx r = {0};
    r.c = &c;
    r.p = &p;
    model_name_of(c.model, r.model_name, sizeof r.model_name);
    {
        sd_err he = {0};
        char h10[16];
        if (sd_model_hash(c.model, NULL, h10, &he) == 0) snprintf(r.model_hash, sizeof r.model_hash, "%s", h10);
        else if (c.verbose) fprintf(stderr, "sdgen: model hash unavailable: %s\n", he.msg);
    }
    r.prog.quiet = c.quiet;
    r.prog.tty = isatty(2);
    c.gen.progress = on_step;
    c.gen.progress_user = &r.prog;
    c.gen.interrupted = &g_interrupted;

    /* Validate the command line's settings once, before any work. */
    if (!c.prompts_file && sd_gen_validate(&p, &c.gen, &err)) {
        fprintf(stderr, "sdgen: %s\n", err.msg);
        sd_pipeline_close(&p);
        return err.code ? err.code : SD_EXIT_INPUT;
    }

    int n_items = c.prompts_file ? batch.n : 1;
    /* count images for {index} and the progress display */
    for (int k = 0; k < n_items; k++) {
        int bc = c.batch_count;
        if (c.prompts_file && batch.items[k].has_batch_count) bc = batch.items[k].batch_count;
        if (!c.prompts_file || !batch.items[k].error) r.n_images_total += bc;
    }
    r.prog.n_images = r.n_images_total;
    int many = r.n_images_total > 1;
    const char *tmpl_default = out_tmpl;
    char tmpl_buf[4096];
    if (many && !sd_output_template_varies(out_tmpl)) {
        /* several images into one fixed name: number them "name-{index}.png" */
        const char *dot = strrchr(out_tmpl, '.');
        const char *slash = strrchr(out_tmpl, '/');
        if (dot && (!slash || dot > slash))
            snprintf(tmpl_buf, sizeof tmpl_buf, "%.*s-{index}%s", (int)(dot - out_tmpl), out_tmpl, dot);
        else snprintf(tmpl_buf, sizeof tmpl_buf, "%s-{index}", out_tmpl);
        tmpl_default = tmpl_buf;
    }

    int exit_code = 0;
    for (int k = 0; k < n_items && !g_interrupted; k++) {
        sd_gen_opts o = c.gen;
        int bc = c.batch_count;
        const char *tmpl = tmpl_default;
        const char *where = "";
        char wbuf[4200];
        if (c.prompts_file) {
            const sd_batch_item *it = &batch.items[k];
            if (it->error) {
                fprintf(stderr, "sdgen: %s\n", it->error);
                r.failed++;
                continue;
            }
            o.seed = c.gen.seed + (uint64_t)k; /* items without a seed: run seed + index − 1 */
            if (it->has_seed) o.seed = it->seed;
            sd_err ie = {0};
            const char *item_out = NULL;
            if (apply_item(it, &o, &bc, &item_out, &c, &ie)) {
                fprintf(stderr, "sdgen: %s:%d: %s\n", c.prompts_file, it->line, ie.msg);
                r.failed++;
                continue;
            }
            if (item_out) tmpl = item_out;
            snprintf(wbuf, sizeof wbuf, "%s:%d: ", c.prompts_file, it->line);
            where = wbuf;
            if (!it->has_width && !it->has_height && o.init_image && !c.have_width && !c.have_height)
                o.width = o.height = 0;
        }
        uint64_t seed0 = o.seed;
        for (int b = 0; b < bc && !g_interrupted; b++) {
            o.seed = seed0 + (uint64_t)b;
            r.index++;
            sd_err ie = {0};
            if (one_image(&r, &o, tmpl, c.dump_dir, many, &ie)) {
                if (ie.code == SD_EXIT_INTERRUPTED || g_interrupted) break;
                fprintf(stderr, "sdgen: %s%s\n", where, ie.msg);
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
    sd_pipeline_close(&p);
    sd_batch_free(&batch);
    return exit_code;
}
