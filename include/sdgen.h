/* sdgen.h — the C library API of sdgen: Stable Diffusion 1.x / 2.x image generation on the CPU.
 *
 * This is the only public header. Everything under include/sdgen/ is internal and may change.
 *
 * USAGE
 *
 *     #include <sdgen.h>
 *
 *     sdgen_ctx *ctx;
 *     if (sdgen_open(NULL, NULL, &ctx) != SDGEN_OK) {        // NULL path: the installed demo model
 *         fprintf(stderr, "%s\n", sdgen_errmsg(ctx));
 *         sdgen_close(ctx);
 *         return 1;
 *     }
 *     sdgen_params p = sdgen_params_default();
 *     p.prompt = "a large red circle on the left, blue background";
 *     p.seed = 42;
 *     int rc = sdgen_generate_png(ctx, &p, "out.png");      // or sdgen_generate() into memory
 *     if (rc != SDGEN_OK) fprintf(stderr, "%s: %s\n", sdgen_status_string(rc), sdgen_errmsg(ctx));
 *     sdgen_close(ctx);
 *
 * Build against an installed copy (the library is static; --static adds OpenBLAS, cJSON, zlib, libm
 * and OpenMP):
 *
 *     cc prog.c $(pkg-config --cflags --static --libs sdgen)
 *
 * The same settings and seed give the same pixels as the `sdgen` command (`sdgen -p ... --seed ...`),
 * and sdgen_generate_png() writes the same A1111 `parameters` text into the PNG.
 *
 * STATUS CODES AND MESSAGES
 *
 * Every fallible function returns an sdgen_status: SDGEN_OK (0) or one of the SDGEN_ERR_* codes. After
 * a failure, sdgen_errmsg(ctx) gives one line of English that names the file or the parameter and what
 * is wrong with it, e.g. "steps must be between 1 and 1000 (got 0)". These codes are the library's own:
 * they are not process exit codes. The `sdgen` command maps them to its exit codes (input 2, memory 3,
 * cancelled by a signal 130/143, README "Exit codes"); a program using the library chooses its own.
 * The library never prints, never calls exit() or abort() on bad input or when memory runs out, and
 * installs no signal handlers.
 *
 * THREADS
 *
 * A handle (sdgen_ctx) may be used by one thread at a time: calls on the same handle must not overlap.
 * Separate handles may be used from separate threads at once; each holds its own model mapping,
 * vocabulary and working memory, and the library keeps no global mutable state of its own. Two things
 * are process-wide or per-thread and worth knowing: during a call the library sets the OpenMP thread
 * count of the calling thread to the handle's `threads` (restored when the call returns), and it runs
 * OpenBLAS single-threaded (openblas_set_num_threads(1), a process-wide setting), splitting the work
 * across its own OpenMP threads instead. Callbacks run on the thread that called sdgen_generate*().
 * sdgen_status_string() and sdgen_version() may be called from any thread.
 *
 * OPENBLAS KERNELS
 *
 * OpenBLAS picks its kernels from the CPU model when it loads, before main(). Where a hypervisor hides
 * the model it falls back to slow SSE3 kernels; the `sdgen` command then re-executes itself with
 * OPENBLAS_CORETYPE set from the CPU's features (SkylakeX with AVX-512, else Haswell with AVX2+FMA). A
 * library cannot do that for its host program: set OPENBLAS_CORETYPE in the environment of a program
 * that uses sdgen for the same speed. Different kernels round differently, so pixels can then differ
 * from the command's by a least significant bit; with the same kernels they are identical.
 */
#ifndef SDGEN_H
#define SDGEN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status ---- */

typedef enum sdgen_status {
    SDGEN_OK = 0,
    SDGEN_ERR_INPUT = 1,     /* a bad argument or parameter; a model, vocabulary or image file that is
                              * missing, unreadable, malformed or not supported */
    SDGEN_ERR_NOMEM = 2,     /* not enough memory; also when the size needs more activation memory than
                              * is available (or than max_memory allows), checked before any work */
    SDGEN_ERR_CANCELLED = 3, /* the cancel flag or callback stopped the run between two steps */
    SDGEN_ERR_IO = 4         /* the output file or its folder could not be written */
} sdgen_status;

/* A short English name of a status: "ok", "bad input", "out of memory", "cancelled", "write error". */
const char *sdgen_status_string(int status);

/* "0.1.0" */
const char *sdgen_version(void);

/* ---- opening a model ---- */

typedef struct sdgen_ctx sdgen_ctx; /* opaque: one loaded model with its vocabulary and working memory */

typedef enum sdgen_weights {
    SDGEN_WEIGHTS_F16 = 0, /* half-precision files stay half precision in memory, converted per use
                            * (half the memory; the same images) */
    SDGEN_WEIGHTS_F32 = 1  /* convert every weight to float32 once (about twice the memory, faster) */
} sdgen_weights;

typedef struct sdgen_model_opts {
    int weights;            /* SDGEN_WEIGHTS_F16 (default) or SDGEN_WEIGHTS_F32 */
    int threads;            /* worker threads for this handle's calls, 1..1024; 0 (default): OpenMP's
                             * default for the calling thread (OMP_NUM_THREADS, else all CPUs) */
    const char *vocab_path; /* CLIP vocabulary: bpe_simple_vocab_16e6.txt.gz, vocab.json, merges.txt or a
                             * folder holding them. NULL (default): $SDGEN_VOCAB, the model's own
                             * (embedded or a diffusers tokenizer/ folder), beside the checkpoint, then
                             * the install folder <prefix>/share/sdgen[/clip] */
    const char *vae_decoder; /* the tiny autoencoder (TAESD / TAESDXL) to decode with instead of the model's
                             * VAE, and to encode init images when its encoder is there: a diffusers
                             * AutoencoderTiny folder or taesd_decoder.safetensors. NULL (default): the VAE */
} sdgen_model_opts;

sdgen_model_opts sdgen_model_opts_default(void);

/* Open a model: a single-file .safetensors checkpoint (CompVis/LDM layout) or a diffusers folder.
 * model_path NULL: $SDGEN_MODEL, else the demo model installed with the library
 * (<prefix>/share/sdgen/models/demo.safetensors). opts NULL: sdgen_model_opts_default().
 * Only the headers are read here; weights are mapped and read on first use.
 * *out always receives a handle, also on failure, so that sdgen_errmsg(*out) can say what went wrong;
 * release it with sdgen_close() in both cases. *out is NULL only when even the handle could not be
 * allocated (SDGEN_ERR_NOMEM) or out itself is NULL (SDGEN_ERR_INPUT). */
int sdgen_open(const char *model_path, const sdgen_model_opts *opts, sdgen_ctx **out);

/* Release everything the handle holds. NULL is ignored. */
void sdgen_close(sdgen_ctx *ctx);

/* The message of the last failed call on this handle ("" after a successful one). The text stays valid
 * until the next call on the handle. For a NULL handle: a fixed message about the missing handle. */
const char *sdgen_errmsg(const sdgen_ctx *ctx);

/* Path of the opened model (what model_path resolved to); "" when the open failed. */
const char *sdgen_model_path(const sdgen_ctx *ctx);

/* The model's own image size: its "modelspec.resolution" metadata, else 768x768 for SD 2.x
 * v-prediction checkpoints, else 512x512. Width and height 0 in sdgen_params mean this size (for the
 * prediction type the run uses, when sdgen_params.prediction overrides the model's). */
int sdgen_default_size(const sdgen_ctx *ctx, int *width, int *height);

/* ---- generating ---- */

/* Called after each model evaluation: step runs 1..total (total = steps, or 2·steps − 1 for the samplers
 * that evaluate the model twice per step: heun, dpm2, dpm2_a). */
typedef void (*sdgen_progress_fn)(int step, int total, void *user);
/* Polled before the first step and after each step; return non-zero to stop the run. */
typedef int (*sdgen_cancel_fn)(void *user);

typedef struct sdgen_params {
    const char *prompt;           /* UTF-8; A1111 syntax: (word) (word:1.5) [word] BREAK, \( \) escapes. "" */
    const char *negative_prompt;  /* UTF-8. "" */
    int width, height;            /* pixels, positive multiples of 8. 0 (default): the model's size
                                   * (sdgen_default_size); image-to-image with both 0: the init image's size */
    int steps;                    /* denoising steps, 1..1000. 20 */
    double cfg_scale;             /* classifier-free guidance, 0..100; <= 1 skips the negative pass. 7.5 */
    const char *sampler;          /* "euler_a" (default), "euler", "ddim", "ddpm", "dpmpp_2m", "dpmpp_2m_sde",
                                   * "lcm", "unipc", "heun", "lms", "dpm2", "dpm2_a", or A1111's names */
    const char *schedule;         /* "default" (default) or "karras" (euler, euler_a, dpmpp_2m(_sde)) */
    const char *timestep_spacing; /* NULL (default: the sampler's own), "leading", "linspace", "trailing" */
    const char *prediction;       /* NULL (default: the model's), "eps" or "v" */
    uint64_t seed;                /* 0 */
    const char *rng;              /* "cpu" (default: PyTorch's CPU generator) or "cuda" (its CUDA Philox
                                   * generator, A1111's "GPU" seeds) */
    int clip_skip;                /* stop clip_skip-1 text-encoder layers early (A1111's count). 1 */
    int prompt_weighting;         /* 1 (default): A1111 weights; 0: brackets are taken literally */

    /* Image-to-image: set one of the two sources. The image is rounded down to multiples of 8 (Lanczos
     * resize) and resized to width x height when those are set. */
    const char *init_image_path;  /* a PNG or JPEG file. NULL */
    const uint8_t *init_rgb;      /* or pixels in memory: init_width x init_height x 3 bytes, RGB,
                                   * row-major, no padding (read only during the call). NULL */
    int init_width, init_height;
    double strength;              /* how much of the init image is redrawn, 0..1. 0.75 */

    int vae_tiling;               /* 1: decode in overlapping 512-pixel tiles (diffusers' tiled decode):
                                   * flat memory for large images, pixels differ slightly. 0 */
    size_t max_memory;            /* activation memory allowed in bytes; 0 (default): what the machine has */

    sdgen_progress_fn progress;   /* NULL */
    void *progress_user;
    sdgen_cancel_fn cancel;       /* NULL */
    void *cancel_user;
    const volatile sig_atomic_t *cancel_flag; /* non-zero stops the run (may be set from a signal
                                   * handler or another thread). NULL */
    double eta;                   /* DDIM's eta, 0..1 (> 0 draws variance noise each step); other samplers
                                   * take only 0. 0 */
} sdgen_params;

/* The defaults listed above. */
sdgen_params sdgen_params_default(void);

typedef struct sdgen_image {
    int width, height;
    uint8_t *rgb; /* width x height x 3 bytes, RGB, row-major; release with sdgen_image_free() */
} sdgen_image;

/* Generate one image into memory. All parameters are checked before any work. Cancellation is checked
 * before the first denoising step and between steps (the text encoder and the image decoder run to
 * their end; a request after the last step lets the image finish), and a cancelled run returns
 * SDGEN_ERR_CANCELLED with out->rgb NULL. On any failure *out is left empty. */
int sdgen_generate(sdgen_ctx *ctx, const sdgen_params *p, sdgen_image *out);

/* Generate one image and write it as a PNG with the A1111 `parameters` text chunk (prompt, steps,
 * sampler, CFG scale, seed, size, model hash and name, ...), the same text the `sdgen` command writes.
 * The file is written to a temporary name in the same folder and renamed, so `path` never holds a
 * partial image; an existing file is replaced. The folder is checked before the run. The model hash is
 * the SHA-256 of the checkpoint file, computed on the first call (seconds for gigabyte files) and
 * cached in $XDG_CACHE_HOME/sdgen/hashes.json (else ~/.cache/sdgen), as the command does. */
int sdgen_generate_png(sdgen_ctx *ctx, const sdgen_params *p, const char *path);

/* Free the pixels of an sdgen_image and zero it. NULL is ignored. */
void sdgen_image_free(sdgen_image *img);

#ifdef __cplusplus
}
#endif
#endif
