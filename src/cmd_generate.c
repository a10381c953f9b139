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
#include "sdgen/manifest.h"
#include "sdgen/ops.h"
#include "sdgen/options.h"
#include "sdgen/params.h"
#include "sdgen/family.h"
#include "sdgen/pipeline.h"
#include "sdgen/preset.h"
#include "sdgen/rng.h"
#include "sdgen/utf8.h"

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
    const char *model, *output, *vocab, *prompts_file, *dump_dir, *manifest;
    const char *vae_decoder; /* --vae-decoder / --taesd */
    int threads, batch_count, quiet, verbose, overwrite, skip_existing;
    int have_shard;     /* --shard, or a batch system's array index from the environment */
    sd_shard shard;
    int weights_f32;
    int have_seed, have_width, have_height;
    int check_weights;
    unsigned set;       /* SD_SET_* bits: settings given on the command line (a preset leaves them alone) */
    int have_preset;    /* --preset given (also "none": then the model's metadata picks none) */
    sd_preset preset;
    sd_lora_list loras;        /* --lora PATH[:W], in order */
} cli_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdgen [OPTIONS] -p PROMPT [-o OUT.png]\n"
            "       sdgen info MODEL [--json]      describe a model (headers only)\n"
            "       sdgen tokenize [--vocab P] [--family sd1|sd2] [--chunks] TEXT\n"
            "       sdgen manifest merge|verify FILE...  join / check the manifests of a sharded batch\n"
            "       sdgen serve [-m MODEL] [--listen HOST:PORT] ...  the AUTOMATIC1111 web API (sdgen serve --help)\n"
            "       sdgen --version\n"
            "\n"
            "Generate images with a Stable Diffusion 1.x / 2.x checkpoint on the CPU.\n"
            "\n"
            "Model and text\n"
            "  -m, --model PATH           .safetensors checkpoint or diffusers folder (default: the demo model)\n"
            "  -p, --prompt TEXT          prompt; A1111 syntax: (word) (word:1.5) [word] BREAK, \\( \\) escapes\n"
            "  -n, --negative-prompt TEXT negative prompt (default: none; SD 1.x/2.x encode \"\", SDXL uses zeros)\n"
            "      --no-weighting         take brackets in prompts literally\n"
            "      --vocab PATH           CLIP vocabulary: bpe_simple_vocab_16e6.txt.gz, vocab.json, merges.txt or\n"
            "                             a folder (default: $SDGEN_VOCAB, the model's tokenizer, the install dir)\n"
            "      --clip-skip N          stop N-1 text layers early, as A1111 counts it (default 1)\n"
            "LoRA (docs/LORA.md)\n"
            "      <lora:NAME:W>          in a prompt: apply DIR/NAME.safetensors at weight W (default 1); the tag\n"
            "                             is removed from the text\n"
            "      --lora PATH[:W]        apply a LoRA file at weight W (default 1); repeatable, LoRAs add up\n"
            "      --lora-dir DIR         where <lora:NAME> tags are looked up (default: loras/ beside the model)\n"
            "      --lora-apply auto|merge|fly  merge LoRAs into copies of the weights they patch, or add them as\n"
            "                             low-rank products at each use of a layer (no copies, more work per step);\n"
            "                             auto (default): on the fly when that adds at most 5%% to the patched\n"
            "                             layers' work, else merged\n"
            "      --embeddings-dir DIR   textual-inversion embeddings (.safetensors): a prompt word equal to a file\n"
            "                             name becomes its vectors (default: embeddings/ beside the model)\n"
            "      --original-size WxH    SDXL size conditioning (default: the image size)\n"
            "      --crop-top-left T,L    SDXL crop conditioning (default 0,0)\n"
            "      --target-size WxH      SDXL target-size conditioning (default: the image size)\n"
            "Image\n"
            "  -W, --width N, -H, --height N  size in pixels, multiples of 8 (default: the model's, 512 for SD 1.x)\n"
            "      --preset NAME          few-step settings for distilled models, filling what is not given:\n"
            "                             turbo (euler_a, trailing, 1 step, CFG 1), lcm (lcm, 4 steps, CFG 1.5),\n"
            "                             lightning (euler, trailing, 4 steps, CFG 1), none (default: the model's\n"
            "                             modelspec metadata names one, or none)\n"
            "      --steps N              denoising steps (default 20)\n"
            "      --cfg-scale X          classifier-free guidance scale; <= 1 is guidance off: no negative pass\n"
            "                             (default 7.5)\n"
            "      --sampler NAME         ddim | ddpm | euler | euler_a | dpmpp_2m | dpmpp_2m_sde | lcm | unipc | heun | lms | dpm2 | dpm2_a (default euler_a)\n"
            "                             or A1111's names (\"DPM++ 2M SDE\"); heun, dpm2 and dpm2_a evaluate the model\n"
            "                             twice per step (2*steps-1 model calls)\n"
            "      --schedule NAME        default | karras (default: default)\n"
            "      --timestep-spacing S   leading | linspace | trailing (default: the sampler's own)\n"
            "      --eta X                ddim's eta in [0, 1]: > 0 adds fresh noise each step (default 0)\n"
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
            "Many machines (docs/SCALE-OUT.md)\n"
            "      --shard I/N            make only the batch items at positions k (0-based, every item line) with\n"
            "                             k mod N = I; names and seeds stay those of the whole batch (default: from\n"
            "                             SLURM_ARRAY_TASK_ID/_COUNT/_MIN, JOB_COMPLETION_INDEX + SDGEN_SHARD_COUNT,\n"
            "                             AWS_BATCH_JOB_ARRAY_INDEX/_SIZE; --shard 0/1 ignores them)\n"
            "      --manifest PATH        append a JSON record per image (settings, output, SHA-256, status) to PATH,\n"
            "                             fsync'ed each; join and check with sdgen manifest merge / verify\n"
            "Machine\n"
            "      --threads N            worker threads (default: all CPUs)\n"
            "      --max-memory SIZE      activation memory allowed, e.g. 8G or 1.5G: K M G T = 10^3 10^6 10^9 10^12\n"
            "                             bytes, a whole number of bytes up to 1000T (default: what is available)\n"
            "      --vae-decoder PATH     decode with madebyollin's tiny autoencoder (alias --taesd): TAESD for SD 1.x/2.x,\n"
            "                             TAESDXL for SDXL; a diffusers AutoencoderTiny folder or taesd_decoder.safetensors\n"
            "                             (its taesd_encoder.safetensors beside it then encodes init images)\n"
            "      --preview PATH         write a live preview PNG of the current latent to PATH, replaced atomically\n"
            "                             (with --vae-decoder: its decode; without: A1111's \"Approx cheap\" at 1/8 size)\n"
            "      --preview-every N      steps between previews, 1..1000 (default 1)\n"
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

/* "AxB" (sep 'x': WxH sizes) or "A,B" (sep ',': TOP,LEFT crops), each 0..16384, strictly. */
static int parse_pair(const char *opt, const char *v, char sep, int *a, int *b)
{
    char buf[64];
    const char *cut = strchr(v, sep);
    long long x, y;
    if (!cut || (size_t)(cut - v) >= sizeof buf || sd_parse_ll(cut + 1, 0, &y) || y < 0 || y > 16384) goto bad;
    memcpy(buf, v, (size_t)(cut - v));
    buf[cut - v] = 0;
    if (sd_parse_ll(buf, 0, &x) || x < 0 || x > 16384) goto bad;
    *a = (int)x;
    *b = (int)y;
    return 0;
bad:
    say("%s expects %s with values 0..16384, got \"%.64s\"", opt, sep == 'x' ? "WIDTHxHEIGHT" : "TOP,LEFT", v);
    return -1;
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

static uint64_t random_seed(void)
{
    uint32_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) s = (uint32_t)(sd_now() * 1e6);
    return s; /* A1111 draws random seeds below 2^32 */
}

/* The command line into c. Longer than the rest of this file's functions on purpose: one short branch
 * per option, in the order `--help` lists them, so an option is found where the help says it is.
 * Returns 0 to go on, 1 after --help / --version, -1 on a usage error (reported). */
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
            c->gen.negative_given = 1;
        } else if (!strcmp(a, "--original-size")) {
            NEEDV();
            if (parse_pair(a, v, 'x', &c->gen.original_w, &c->gen.original_h)) return -1;
        } else if (!strcmp(a, "--target-size")) {
            NEEDV();
            if (parse_pair(a, v, 'x', &c->gen.target_w, &c->gen.target_h)) return -1;
        } else if (!strcmp(a, "--crop-top-left")) {
            NEEDV();
            if (parse_pair(a, v, ',', &c->gen.crop_top, &c->gen.crop_left)) return -1;
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
            c->set |= SD_SET_STEPS;
        } else if (!strcmp(a, "--preset")) {
            NEEDV();
            if (sd_preset_parse(v, &c->preset)) {
                say("--preset: unknown preset \"%s\" (turbo, lcm, lightning, none)", v);
                return -1;
            }
            c->have_preset = 1;
        } else if (!strcmp(a, "--cfg-scale")) {
            NEEDV();
            if (parse_num(a, "--cfg-scale", v, &x)) return -1;
            c->gen.cfg_scale = (float)x.d;
            c->set |= SD_SET_CFG;
        } else if (!strcmp(a, "--seed")) {
            NEEDV();
            int r = parse_seed(a, v, &c->gen.seed);
            if (r < 0) return -1;
            c->have_seed = r == 0;
        } else if (!strcmp(a, "--sampler")) {
            NEEDV();
            sd_schedule implied = SD_SCHEDULE_DEFAULT;
            if (sd_sampler_parse(v, &c->gen.sampler, &implied)) {
                say("--sampler: unknown sampler \"%s\" (%s)", v, sd_sampler_list());
                return -1;
            }
            c->set |= SD_SET_SAMPLER;
            if (implied == SD_SCHEDULE_KARRAS) {
                c->gen.schedule = implied;
                c->set |= SD_SET_SCHEDULE;
            }
        } else if (!strcmp(a, "--schedule")) {
            NEEDV();
            if (sd_schedule_parse(v, &c->gen.schedule)) {
                say("--schedule: unknown schedule \"%s\" (default, karras)", v);
                return -1;
            }
            c->set |= SD_SET_SCHEDULE;
        } else if (!strcmp(a, "--timestep-spacing")) {
            NEEDV();
            if (sd_spacing_parse(v, &c->gen.spacing)) {
                say("--timestep-spacing: unknown spacing \"%s\" (leading, linspace, trailing)", v);
                return -1;
            }
            c->set |= SD_SET_SPACING;
        } else if (!strcmp(a, "--eta")) {
            NEEDV();
            if (parse_num(a, "--eta", v, &x)) return -1;
            c->gen.eta = x.d;
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
        } else if (!strcmp(a, "--lora")) {
            NEEDV();
            sd_err e = {0};
            if (sd_lora_parse_arg(v, &c->loras, &e)) {
                say("--lora: %s", e.msg);
                return -1;
            }
            c->gen.loras = &c->loras;
        } else if (!strcmp(a, "--lora-dir")) {
            NEEDV();
            c->gen.lora_dir = v;
        } else if (!strcmp(a, "--lora-apply")) {
            NEEDV();
            if (sd_lora_mode_parse(v, &c->gen.lora_mode)) {
                say("--lora-apply: expected auto, merge or fly, got \"%s\"", v);
                return -1;
            }
        } else if (!strcmp(a, "--embeddings-dir")) {
            NEEDV();
            c->gen.embeddings_dir = v;
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
        } else if (!strcmp(a, "--shard")) {
            NEEDV();
            sd_err e = {0};
            if (sd_shard_parse("--shard", v, &c->shard, &e)) {
                say("%s", e.msg);
                return -1;
            }
            c->have_shard = 1;
        } else if (!strcmp(a, "--manifest")) {
            NEEDV();
            c->manifest = v;
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
        } else if (!strcmp(a, "--vae-decoder") || !strcmp(a, "--taesd")) {
            NEEDV();
            c->vae_decoder = v;
        } else if (!strcmp(a, "--preview")) {
            NEEDV();
            c->gen.preview_path = v;
            if (!c->gen.preview_every) c->gen.preview_every = 1;
        } else if (!strcmp(a, "--preview-every")) {
            NEEDV();
            long long pe;
            if (sd_parse_ll(v, 0, &pe) || pe < 1 || pe > 1000) {
                say("--preview-every expects an integer in [1, 1000], got \"%s\"", v);
                return -1;
            }
            c->gen.preview_every = (int)pe;
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
        } else if (!strcmp(a, "--check-weights")) {
            c->check_weights = 1;
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
    /* options given explicitly win over the preset, wherever they stand on the line */
    if (c->have_preset) sd_preset_apply(c->preset, c->set, &c->gen);
    if (c->overwrite && c->skip_existing) {
        fprintf(stderr, "sdgen: --overwrite and --skip-existing contradict each other\n");
        return -1;
    }
    if (c->gen.preview_every && !c->gen.preview_path) {
        fprintf(stderr, "sdgen: --preview-every needs --preview PATH\n");
        return -1;
    }
    if (c->have_shard && !c->prompts_file) {
        fprintf(stderr, "sdgen: --shard splits a batch file and needs --prompts FILE (a single prompt is one item)\n");
        return -1;
    }
    if (c->manifest && !c->prompts_file) {
        fprintf(stderr, "sdgen: --manifest records a batch and needs --prompts FILE\n");
        return -1;
    }
    size_t bad;
    if ((bad = sd_utf8_bad_byte(c->gen.prompt))) {
        fprintf(stderr, "sdgen: --prompt is not valid UTF-8 (byte %zu)\n", bad);
        return -1;
    }
    if ((bad = sd_utf8_bad_byte(c->gen.negative_prompt))) {
        fprintf(stderr, "sdgen: --negative-prompt is not valid UTF-8 (byte %zu)\n", bad);
        return -1;
    }
    return 0;
}

/* ---- progress ---- */

typedef struct progress {
    int quiet, tty;
    int image, n_images;
    int order;          /* model calls per step of the image's sampler: 2 counts calls, not steps */
    double start;
} progress;

static void on_step(void *user, int step, int n, double secs)
{
    progress *p = user;
    if (p->quiet) return;
    double el = sd_now() - p->start;
    double eta = step ? el / step * (n - step) : 0;
    /* heun, dpm2, dpm2_a: the callback counts model evaluations (2·steps − 1), the unit of time */
    const char *unit = p->order == 2 ? "eval" : "step";
    if (p->tty) {
        int width = 30, fill = n ? step * width / n : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r[%d/%d] [%s] %s %d/%d  %.2f s/%s  ETA %.0f s ", p->image, p->n_images, bar, unit, step, n,
                secs, unit, eta);
        if (step == n) fputc('\n', stderr);
    } else {
        fprintf(stderr, "image %d/%d %s %d/%d %.2f s/%s eta %.0f s\n", p->image, p->n_images, unit, step, n, secs, unit,
                eta);
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
    /* Sharding and the manifest (docs/SCALE-OUT.md) */
    int shard_i, shard_n;    /* this run makes the items k with k mod shard_n == shard_i */
    const sd_batch *batch;
    const int *item_bc;      /* images per item */
    sd_manifest_writer *mw;  /* NULL: no --manifest */
    int manifest_errors;
    char img_path[4096];     /* what one_image did last: the path, */
    char *img_text;          /* the infotext it wrote (malloc'ed), */
    int img_skipped, img_w, img_h; /* whether it found the file complete and skipped it, the size made */
} run_ctx;

static int in_shard(const run_ctx *r, int k) { return r->shard_n <= 1 || k % r->shard_n == r->shard_i; }

static double wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Append the record of image b of item k (index: its {index}) to the manifest, if there is one. o: the image's
 * settings (NULL when the item failed before they were known); for ok / skipped records the file one_image
 * wrote or found is hashed now. A manifest that cannot be written is reported once; the run goes on (its
 * outputs stay, and a rerun with --skip-existing records them). */
static void manifest_add(run_ctx *r, int k, int b, int index, const sd_gen_opts *o, int status, const char *msg,
                         double secs)
{
    if (!r->mw) return;
    const cli_opts *c = r->c;
    sd_manifest_rec m;
    memset(&m, 0, sizeof m);
    char shard[32], sha[65], fail[1200];
    char *found_text = NULL;
    snprintf(shard, sizeof shard, "%d/%d", r->shard_i, r->shard_n > 1 ? r->shard_n : 1);
    m.item = k;
    m.image = b;
    m.images = r->item_bc[k];
    m.items = r->batch->n;
    m.index = index;
    m.line = r->batch->items[k].line;
    m.shard = shard;
    m.status = status;
    m.message = (char *)msg;
    m.batch = (char *)c->prompts_file;
    m.batch_sha256 = (char *)r->batch->sha256;
    m.model = (char *)c->model;
    if (o) {
        m.prompt = (char *)o->prompt;
        m.negative_prompt = (char *)o->negative_prompt;
        m.has_seed = 1;
        m.seed = o->seed;
        m.steps = o->steps;
        m.has_cfg = 1;
        m.cfg_scale = o->cfg_scale;
        m.sampler = (char *)sd_sampler_name(o->sampler);
        m.schedule = (char *)sd_schedule_name(o->schedule);
        m.timestep_spacing = (char *)sd_spacing_name(o->spacing);
        sd_prediction pred = o->prediction != SD_PRED_UNKNOWN ? o->prediction : r->p ? r->p->model.prediction
                                                                                      : SD_PRED_UNKNOWN;
        m.prediction = (char *)sd_prediction_name(pred);
        m.rng = (char *)sd_rng_kind_name(o->rng_kind);
        m.width = o->width;
        m.height = o->height;
        m.clip_skip = o->clip_skip;
        m.init_image = (char *)o->init_image;
        m.has_strength = o->init_image != NULL;
        m.strength = o->strength;
    }
    if (status != SD_MREC_FAILED) {
        sd_err e = {0};
        uint8_t digest[32];
        m.output = r->img_path;
        if (status == SD_MREC_OK) {
            m.parameters = r->img_text;
            m.width = r->img_w;
            m.height = r->img_h;
        } else if (sd_png_read_text(r->img_path, "parameters", &found_text, NULL, &e) == 0) {
            m.parameters = found_text ? found_text : ""; /* a PNG without one: verify reports it */
        }
        if (!e.msg[0] && sd_sha256_file(r->img_path, digest, &e) == 0) {
            sd_sha256_hex(digest, sha);
            m.sha256 = sha;
        }
        if (e.msg[0]) {
            snprintf(fail, sizeof fail, "%s: cannot read it back for the manifest: %s", r->img_path, e.msg);
            m.status = SD_MREC_FAILED;
            m.message = fail;
            m.output = m.sha256 = m.parameters = NULL;
        }
    }
    m.seconds = secs;
    m.time = wall_time();
    sd_err e = {0};
    if (sd_manifest_append(r->mw, &m, &e) && !r->manifest_errors++) say("%s", e.msg);
    free(found_text);
}

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
    if (he.code == SD_ERR_INTERRUPTED || g_interrupted) return sd_errcf(err, SD_ERR_INTERRUPTED, "%s", he.msg);
    if (r->c->verbose) say("model hash unavailable: %s", he.msg);
    return 0;
}

/* Generate image `r->index` with options o into path; returns 0, or -1 with err (item failed). */
static int one_image(run_ctx *r, sd_gen_opts *o, const char *out_tmpl, const char *dump_root, int many, sd_err *err)
{
    char path[4096];
    if (sd_output_path(out_tmpl, r->index, o->seed, o->prompt, path, sizeof path, err)) return -1;
    snprintf(r->img_path, sizeof r->img_path, "%s", path);
    r->img_skipped = 0;
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
                r->img_skipped = 1;
                return 0;
            }
            if (ve.code == SD_ERR_NOMEM) return sd_errcf(err, SD_ERR_NOMEM, "%s", ve.msg);
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
    r->prog.start = sd_now();
    r->prog.order = sd_sampler_order(o->sampler);
    sd_gen_result res;
    if (sd_generate(r->p, o, &res, err)) return -1;
    if (res.lora_warning) say("warning: %s", res.lora_warning);
    if (r->c->verbose && res.lora_hashes && res.t_lora > 0)
        say("LoRA %s: loaded and %s in %.2f s (its low-rank products: %.1f%% of the patched layers' work)",
            res.lora_hashes, r->p->lora.n_fly ? "set up on the fly" : "merged", res.t_lora, 100 * r->p->lora.fly_extra);
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
    o->lora_hashes = res.lora_hashes;
    char *text = infotext(r, o, &res, err);
    o->lora_hashes = NULL;
    if (!text) {
        sd_gen_result_free(&res);
        return -1;
    }
    /* No clobbering unless --overwrite: with --skip-existing too, a file that appeared meanwhile (another
     * run resuming the same batch) is kept and this item fails instead of replacing it. */
    int rc = sd_png_write(path, res.rgb, res.w, res.h, text, mode, err);
    free(r->img_text);
    r->img_text = text; /* for the manifest record */
    r->img_w = res.w;
    r->img_h = res.h;
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
    if (it->prompt && (bad = sd_utf8_bad_byte(it->prompt))) return sd_errf(err, "prompt is not valid UTF-8 (byte %zu)", bad);
    if (it->negative_prompt && (bad = sd_utf8_bad_byte(it->negative_prompt)))
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
    if (it->has_eta) o->eta = it->eta;
    if (it->has_batch_count) *batch_count = it->batch_count;
    if (it->has_original_size) { o->original_h = it->original_h; o->original_w = it->original_w; }
    if (it->has_crop) { o->crop_top = it->crop_top; o->crop_left = it->crop_left; }
    if (it->has_target_size) { o->target_h = it->target_h; o->target_w = it->target_w; }
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
    if (it->lora_apply && sd_lora_mode_parse(it->lora_apply, &o->lora_mode))
        return sd_errf(err, "unknown LoRA apply mode \"%s\"", it->lora_apply);
    if (it->output) *output = it->output;
    if (it->model && c->model && strcmp(it->model, c->model) != 0)
        return sd_errf(err, "\"model\" differs from the loaded model (%s); a batch uses one model", c->model);
    sd_preset_apply_item(it, c->set, o); /* the line's "preset" fills what neither it nor the command line sets */
    return 0;
}

/* Settings that can be judged without the model, checked for every item before it loads: an eta for a
 * sampler without one; image-to-image
 * with int(steps·strength) = 0 runs no denoising step (diffusers StableDiffusionImg2ImgPipeline
 * get_timesteps; sd_sched_set_strength refuses it too, but only after the model and the image are loaded). */
static int check_early(const sd_gen_opts *o, sd_err *err)
{
    if (sd_sampler_check_eta(o->sampler, o->eta, err)) return -1;
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
        /* Another shard's images keep their numbers and take part in the same-file check (as in a run of the
         * whole batch); only this shard's are checked against the disk and reported. */
        int mine = in_shard(r, k);
        for (int b = 0; b < item_bc[k] && !oom && !(first_only && failures); b++) {
            int idx = ++index;
            img_item[idx] = k;
            char path[4096], canon[PATH_MAX + 4096];
            sd_err e = {0};
            int bad = image_path(c, batch, k, b, idx, tmpl_default, path, sizeof path, canon, sizeof canon, &e) ||
                      sd_check_output_name(path, &e);
            if (!bad && mine && r->mw && sd_utf8_bad_byte(path)) {
                sd_errf(&e, "%s: not valid UTF-8; a manifest (JSON) records UTF-8 paths only", path);
                bad = 1;
            }
            int state = bad || !mine ? 0 : sd_output_state(path, &e);
            if (state < 0) bad = 1;
            if (!bad && state == 1 && !c->overwrite && !c->skip_existing) {
                sd_errf(&e, "%s: already exists (use --overwrite to replace it)", path);
                bad = 1;
            }
            if (!bad && mine) {
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
            if (bad && !mine) continue;
            if (bad) {
                if (c->prompts_file) {
                    char where[5200];
                    snprintf(where, sizeof where, "%s:%d: %s", c->prompts_file, batch->items[k].line, e.msg);
                    say("%s", where);
                    manifest_add(r, k, b, idx, NULL, SD_MREC_FAILED, where, 0);
                } else {
                    say("%s", e.msg);
                }
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

/* A sharded run shares its output folders with tasks on other machines, whose PIDs mean nothing here: a
 * temporary file is taken as left by a killed run only when it was last written this long before the run
 * began (a live writer writes, syncs and renames its file within seconds). */
#define SD_SHARD_TEMP_GRACE_NS (600LL * 1000000000LL)

static const char *env_lookup(void *user, const char *name)
{
    (void)user;
    return getenv(name);
}

/* --shard, else a batch system's array index (batch.h sd_shard_from_env); says which. 0 or -1 (reported). */
static int choose_shard(cli_opts *c)
{
    if (!c->prompts_file) return 0;
    if (!c->have_shard) {
        sd_err e = {0};
        int found = sd_shard_from_env(env_lookup, NULL, &c->shard, &e);
        if (found < 0) {
            say("%s", e.msg);
            return -1;
        }
        c->have_shard = found;
        if (!found) return 0;
    } else if (c->quiet) {
        return 0;
    }
    /* Always said when the environment chose: a run that makes a quarter of the batch must not look like one
     * that makes all of it. */
    say("shard %d/%d from %s: the items at positions k with k mod %d = %d", c->shard.index, c->shard.count,
        c->shard.source, c->shard.count, c->shard.index);
    return 0;
}

/* Seeds must not depend on the shard: an item without its own "seed" takes the run's seed plus its position,
 * so with shards the run's seed has to be given, not drawn by each task. */
static int check_shard_seeds(const cli_opts *c, const sd_batch *b)
{
    if (!c->have_shard || c->shard.count <= 1 || c->have_seed) return 0;
    for (int k = 0; k < b->n; k++) {
        if (b->items[k].error || b->items[k].has_seed) continue;
        say("%s:%d: no \"seed\" and no --seed: each shard would draw its own random seed for it; pass --seed N to "
            "split this batch", c->prompts_file, b->items[k].line);
        return -1;
    }
    return 0;
}

/* Everything sd_cmd_generate's stages share. */
typedef struct gen_cmd {
    cli_opts c;
    sd_batch batch;
    sd_manifest_writer mw;
    run_ctx r;
    sd_pipeline p;
    int p_open, demo, n_items, n_run, sharded, many;
    int *item_bc;            /* images of each item (--batch-count or the line's batch_count) */
    int64_t start_ns;        /* when the run started (stale temporary files are older) */
    const char *out_tmpl, *tmpl_default;
    char demo_path[4096], tmpl_buf[4096];
} gen_cmd;

/* Before any signal handler and any planning: the model's path, the batch file, the output folder, the
 * dump folder and the manifest. Returns -1 to go on, else the exit code. */
static int gen_prepare(gen_cmd *g)
{
    cli_opts *c = &g->c;
    sd_err err = {0};
    if (!c->model) {
        if (sd_default_model_path(g->demo_path, sizeof g->demo_path, &err)) {
            fprintf(stderr, "sdgen: %s (pass --model)\n", err.msg);
            return SD_EXIT_INPUT;
        }
        c->model = g->demo_path;
        g->demo = 1;
    }
    if (c->prompts_file) {
        if (sd_batch_parse_file(c->prompts_file, &g->batch, &err)) {
            say("%s", err.msg);
            return sd_cli_exit_code(err.code);
        }
        if (g->batch.n == 0) {
            /* Nothing to do is almost certainly a mistake (wrong file): say so instead of exiting 0. */
            say("%s: no prompts in the batch file (only blank lines and # comments)", c->prompts_file);
            return SD_EXIT_INPUT;
        }
        if (check_shard_seeds(c, &g->batch)) return SD_EXIT_INPUT;
    } else if (!c->gen.prompt[0] && !c->gen.init_image && !c->quiet) {
        fprintf(stderr, "sdgen: note: empty prompt (use -p \"...\")\n");
    }
    /* Drawn now, not after loading: {seed} in output names is checked before the model loads. */
    if (!c->have_seed) c->gen.seed = random_seed();
    g->out_tmpl = c->output ? c->output : "sdgen-{index}.png";
    /* Fail before loading gigabytes when the output folder can't be written (for the command line's own
     * first image, also when a non-regular file is in the way: the folder probe must not write into /dev). */
    char probe[4096];
    if (!c->prompts_file || c->output) {
        if (sd_output_path(g->out_tmpl, 1, c->gen.seed, c->gen.prompt, probe, sizeof probe, &err) ||
            (!c->prompts_file && (sd_check_output_name(probe, &err) || sd_output_state(probe, &err) < 0)) ||
            sd_check_output_dir(probe, &err)) {
            say("%s", err.msg);
            return SD_EXIT_INPUT;
        }
    }
    if (c->dump_dir && mkdir(c->dump_dir, 0777) != 0 && errno != EEXIST) {
        say("%s: cannot create directory: %s", c->dump_dir, strerror(errno));
        return SD_EXIT_INPUT;
    }
    if (c->gen.preview_path &&
        (sd_check_output_name(c->gen.preview_path, &err) || sd_check_output_dir(c->gen.preview_path, &err))) {
        say("--preview: %s", err.msg);
        return SD_EXIT_INPUT;
    }
    if (c->manifest && sd_manifest_open(&g->mw, c->manifest, &err)) {
        say("%s", err.msg);
        return SD_EXIT_INPUT;
    }
    return -1;
}

/* Plan the run before loading anything: every item's settings, then every image's output path.
 * Returns -1 to go on, else the exit code (0: nothing to do). */
static int gen_plan(gen_cmd *g)
{
    cli_opts *c = &g->c;
    run_ctx *r = &g->r;
    g->n_items = c->prompts_file ? g->batch.n : 1;
    g->item_bc = calloc((size_t)g->n_items, sizeof *g->item_bc);
    r->item_bad = calloc((size_t)g->n_items, 1);
    r->c = c;
    r->shard_i = c->have_shard ? c->shard.index : 0;
    r->shard_n = c->have_shard ? c->shard.count : 1;
    r->batch = &g->batch;
    r->item_bc = g->item_bc;
    r->mw = c->manifest ? &g->mw : NULL;
    g->sharded = r->shard_n > 1;
    g->tmpl_default = g->out_tmpl;
    if (!g->item_bc || !r->item_bad) {
        say("out of memory planning the run");
        return SD_EXIT_OOM;
    }
    long long total = 0;
    for (int k = 0; k < g->n_items; k++) {
        sd_gen_opts o;
        const char *tmpl;
        char tbuf[4096];
        sd_err ie = {0};
        if (item_setup(c, &g->batch, k, g->out_tmpl, &o, &g->item_bc[k], &tmpl, tbuf, sizeof tbuf, &ie)) {
            r->item_bad[k] = 1;
            g->item_bc[k] = 0;
            if (c->prompts_file && !in_shard(r, k)) continue; /* another shard reports it */
            say("%s", ie.msg);
            r->failed++;
            if (!c->prompts_file) return sd_cli_exit_code(ie.code);
            manifest_add(r, k, 0, 0, NULL, SD_MREC_FAILED, ie.msg, 0);
        }
        total += g->item_bc[k];
        if (in_shard(r, k)) g->n_run += g->item_bc[k];
    }
    if (total > SD_RUN_MAX_IMAGES) {
        say("the run would make %lld images; at most %d per run (split the batch file or lower --batch-count)", total,
            SD_RUN_MAX_IMAGES);
        return SD_EXIT_INPUT;
    }
    r->n_images_total = (int)total;
    r->img_bad = calloc((size_t)total + 1, 1);
    if (!r->img_bad) {
        say("out of memory planning the run");
        return SD_EXIT_OOM;
    }
    g->many = r->n_images_total > 1;
    g->tmpl_default = numbered(g->out_tmpl, g->many, g->tmpl_buf, sizeof g->tmpl_buf);
    int n_bad = plan_run(r, &g->batch, g->n_items, g->item_bc, g->tmpl_default,
                         g->sharded ? g->start_ns - SD_SHARD_TEMP_GRACE_NS : g->start_ns, !c->prompts_file);
    if (n_bad < 0) {
        say("out of memory planning the run");
        return SD_EXIT_OOM;
    }
    if (n_bad && !c->prompts_file) return SD_EXIT_INPUT; /* the command line alone: its one problem was reported */
    if (g->sharded && g->n_run == 0 && !r->failed && !g_interrupted) {
        /* more shards than items: nothing to load the model for */
        say("shard %d/%d has no images to make (the batch has %d items)", r->shard_i, r->shard_n, g->n_items);
        return 0;
    }
    if (c->prompts_file && n_bad == g->n_run && !g_interrupted) {
        /* every line failed already: no reason to load the model */
        say("%d images written, %d skipped, %d failed", r->written, r->skipped, r->failed);
        return SD_EXIT_ITEMS_FAILED;
    }
    return -1;
}

/* Load the model, fill what depends on it (size, prediction), and check the command line's settings
 * against it once. Returns -1 to go on, else the exit code. */
static int gen_load(gen_cmd *g)
{
    cli_opts *c = &g->c;
    run_ctx *r = &g->r;
    sd_err err = {0};
    if (sd_pipeline_open(&g->p, c->model, c->vocab, &err)) {
        say("%s", err.msg);
        return sd_cli_exit_code(err.code);
    }
    g->p_open = 1;
    if ((c->vae_decoder && sd_pipeline_set_taesd(&g->p, c->vae_decoder, &err)) ||
        (c->weights_f32 && sd_model_set_weights_mode(&g->p.model, SD_WEIGHTS_F32, &err)) ||
        (c->check_weights && sd_model_check_weights(&g->p.model, &err))) {
        say("%s", err.msg);
        return sd_cli_exit_code(err.code);
    }
    const sd_model *m = &g->p.model;
    if (!c->have_preset) {
        /* a distilled model that says what it is in its modelspec metadata gets its preset */
        char why[160];
        sd_preset mp = sd_preset_from_model(m, why, sizeof why);
        if (mp != SD_PRESET_NONE) {
            sd_preset_apply(mp, c->set, &c->gen);
            if (!c->quiet) say("preset %s from the model's %s (--preset none turns it off)", sd_preset_name(mp), why);
            if (!c->prompts_file && check_early(&c->gen, &err)) {
                say("%s", err.msg);
                return SD_EXIT_INPUT;
            }
        }
    }
    sd_prediction pred = c->gen.prediction != SD_PRED_UNKNOWN ? c->gen.prediction : m->prediction;
    if (!c->quiet) {
        if (g->demo) say("using the demo model %s (pass --model for a real checkpoint)", c->model);
        say("model %s (%s), prediction %s: %s", c->model, sd_family_name(m->family), sd_prediction_name(pred),
            c->gen.prediction != SD_PRED_UNKNOWN ? "set by --prediction" : m->prediction_why);
    }
    int dw, dh;
    sd_family_default_size(m, pred, &dw, &dh);
    if (!c->have_width) c->gen.width = dw;
    if (!c->have_height) c->gen.height = dh;
    if (c->gen.init_image && !c->have_width && !c->have_height) c->gen.width = c->gen.height = 0;
    if (!c->have_seed && !c->quiet) fprintf(stderr, "sdgen: seed %llu\n", (unsigned long long)c->gen.seed);

    r->p = &g->p;
    sd_params_model_name(c->model, r->model_name, sizeof r->model_name);
    r->prog.quiet = c->quiet;
    r->prog.tty = isatty(2);
    r->prog.n_images = g->n_run;
    c->gen.progress = on_step;
    c->gen.progress_user = &r->prog;
    c->gen.interrupted = &g_interrupted;
    if (!c->prompts_file && sd_gen_validate(&g->p, &c->gen, &err)) {
        say("%s", err.msg);
        return sd_cli_exit_code(err.code);
    }
    return -1;
}

/* The LoRAs of one item into l: --lora's, then the batch line's (it may be NULL). */
static int item_loras(const cli_opts *c, const sd_batch_item *it, sd_lora_list *l, sd_err *err)
{
    memset(l, 0, sizeof *l);
    for (int i = 0; i < c->loras.n; i++) {
        if (sd_lora_list_add(l, c->loras.items[i].name, c->loras.items[i].path, c->loras.items[i].scale, err)) goto fail;
        l->items[l->n - 1].scale_unet = c->loras.items[i].scale_unet;
    }
    for (const char *s = it ? it->loras : NULL; s && *s;) {
        const char *nl = strchr(s, '\n');
        char *one = strndup(s, nl ? (size_t)(nl - s) : strlen(s));
        if (!one) {
            sd_errcf(err, SD_ERR_NOMEM, "out of memory");
            goto fail;
        }
        int rc = sd_lora_parse_arg(one, l, err);
        free(one);
        if (rc) goto fail;
        s = nl ? nl + 1 : NULL;
    }
    return 0;
fail:
    sd_lora_list_free(l);
    return -1;
}

/* Every image of this shard, in order; a failed image is reported (and recorded) and the run goes on.
 * Returns the exit code the images alone call for (0 unless the only image failed). */
static int gen_images(gen_cmd *g)
{
    cli_opts *c = &g->c;
    run_ctx *r = &g->r;
    int exit_code = 0, pos = 0; /* pos: the image of this shard in progress */
    for (int k = 0; k < g->n_items && !g_interrupted; k++) {
        if (r->item_bad[k]) continue; /* reported before the model loaded */
        if (!in_shard(r, k)) {
            r->index += g->item_bc[k]; /* another shard's images keep their {index} */
            continue;
        }
        sd_gen_opts o;
        int bc;
        const char *tmpl;
        char tbuf[4096], wbuf[4200];
        const char *where = "";
        sd_err ie = {0};
        if (item_setup(c, &g->batch, k, g->tmpl_default, &o, &bc, &tmpl, tbuf, sizeof tbuf, &ie)) {
            say("%s", ie.msg); /* not expected: the plan passed this item */
            r->failed++;
            continue;
        }
        if (c->prompts_file) {
            snprintf(wbuf, sizeof wbuf, "%s:%d: ", c->prompts_file, g->batch.items[k].line);
            where = wbuf;
        }
        /* the item's LoRAs: the command line's, then the batch line's "loras" */
        sd_lora_list il;
        if (item_loras(c, c->prompts_file ? &g->batch.items[k] : NULL, &il, &ie)) {
            say("%s%s", where, ie.msg);
            r->failed++;
            continue;
        }
        o.loras = &il;
        const uint64_t seed0 = o.seed;
        for (int b = 0; b < bc && !g_interrupted; b++) {
            o.seed = seed0 + (uint64_t)b;
            r->index++;
            pos++;
            if (r->img_bad[r->index]) continue; /* reported before the model loaded */
            ie = (sd_err){0};
            r->prog.image = g->sharded ? pos : r->index;
            const double t0 = sd_now();
            if (one_image(r, &o, tmpl, c->dump_dir, g->many, &ie)) {
                if (ie.code == SD_ERR_INTERRUPTED || g_interrupted) break;
                say("%s%s", where, ie.msg);
                r->failed++;
                char msg[5300];
                snprintf(msg, sizeof msg, "%s%s", where, ie.msg);
                manifest_add(r, k, b, r->index, &o, SD_MREC_FAILED, msg, sd_now() - t0);
                if (!c->prompts_file && r->n_images_total == 1) exit_code = sd_cli_exit_code(ie.code);
            } else {
                /* also when a stop signal came meanwhile: the image is on disk and its record must be too */
                manifest_add(r, k, b, r->index, &o, r->img_skipped ? SD_MREC_SKIPPED : SD_MREC_OK, NULL, sd_now() - t0);
            }
        }
        sd_lora_list_free(&il);
    }
    return exit_code;
}

int sd_cmd_generate(int argc, char **argv)
{
    gen_cmd *g = calloc(1, sizeof *g);
    if (!g) {
        fprintf(stderr, "sdgen: out of memory\n");
        return SD_EXIT_OOM;
    }
    g->mw.fd = -1;
    /* The start of the run: temporary files older than this, of processes no longer running, were left by
     * a killed run (sd_remove_stale_temps). */
    struct timespec t_start;
    clock_gettime(CLOCK_REALTIME, &t_start);
    g->start_ns = (int64_t)t_start.tv_sec * 1000000000LL + t_start.tv_nsec;
    cli_opts *c = &g->c;
    run_ctx *r = &g->r;
    int exit_code, pr = parse_args(argc, argv, c);
    if (pr > 0) exit_code = 0;
    else if (pr < 0 || choose_shard(c)) exit_code = SD_EXIT_INPUT;
    else exit_code = -1;
    if (exit_code < 0) {
        if (c->threads) sd_set_threads(c->threads);
        exit_code = gen_prepare(g);
    }
    if (exit_code < 0) {
        /* From here on a stop signal is reported, also while the run is planned or the model loads: no
         * image is started then and the summary says 0 written. */
        signal(SIGINT, on_stop_signal);
        signal(SIGTERM, on_stop_signal);
        exit_code = gen_plan(g);
    }
    if (exit_code < 0) exit_code = gen_load(g);
    if (exit_code < 0) {
        exit_code = gen_images(g);
        if (g_interrupted) {
            fprintf(stderr, "\nsdgen: interrupted%s: %d of %d images written, %d skipped, %d failed; the image in "
                            "progress was abandoned (rerun with --skip-existing to resume)\n",
                    g_interrupted == SIGTERM ? " (SIGTERM)" : "", r->written, g->n_run, r->skipped, r->failed);
            exit_code = g_interrupted == SIGTERM ? SD_EXIT_TERMINATED : SD_EXIT_INTERRUPTED;
        } else if (r->failed && (r->n_images_total > 1 || c->prompts_file)) {
            fprintf(stderr, "sdgen: %d images written, %d skipped, %d failed\n", r->written, r->skipped, r->failed);
            exit_code = SD_EXIT_ITEMS_FAILED;
        }
    }
    if (g->p_open) sd_pipeline_close(&g->p);
    sd_manifest_close(&g->mw);
    free(r->img_text);
    sd_batch_free(&g->batch);
    sd_lora_list_free(&c->loras);
    free(g->item_bc);
    free(r->item_bad);
    free(r->img_bad);
    free(g);
    return exit_code;
}
