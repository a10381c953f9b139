/* sdgen/model.h — a Stable Diffusion model: its files, its architecture, its weights.
 *
 * A model is either one single-file LDM checkpoint (`model.diffusion_model.*`,
 * `first_stage_model.*`, `cond_stage_model.*`) or a diffusers folder (model_index.json with
 * unet/, vae/, text_encoder/, tokenizer/, scheduler/). Either way, sdgen addresses every
 * weight by its name in the original LDM layout: diffusers names are translated once at
 * open, so the model code in unet.c, vae.c and clip.c has one naming to follow.
 *
 *     sd_model m; sd_err err;
 *     if (sd_model_open(&m, path, &err)) ...            // headers only, validated
 *     sd_scope s = sd_scope_open(&arena);
 *     sd_tensor w;
 *     if (sd_model_weight(&m, &arena, "first_stage_model.decoder.conv_in.weight", &w, &err)) ...
 *     ... w.data is f32: valid until the scope closes (or longer, see sd_model_weight) ...
 *     sd_scope_close(&arena, s);
 *     sd_model_close(&m);
 */
#ifndef SDGEN_MODEL_H
#define SDGEN_MODEL_H

#include "sdgen/common.h"
#include "sdgen/safetensors.h"
#include "sdgen/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_MAX_LEVELS 8

typedef enum sd_family { SD_FAMILY_UNKNOWN, SD_FAMILY_SD1, SD_FAMILY_SD2, SD_FAMILY_SDXL } sd_family;
typedef enum sd_prediction { SD_PRED_UNKNOWN, SD_PRED_EPS, SD_PRED_V } sd_prediction;
typedef enum sd_text_kind { SD_TEXT_CLIP_HF, SD_TEXT_OPENCLIP } sd_text_kind;
typedef enum sd_act { SD_ACT_QUICK_GELU, SD_ACT_GELU } sd_act;

const char *sd_family_name(sd_family f);         /* "sd1", "sd2", "sdxl", "unknown" */
const char *sd_prediction_name(sd_prediction p); /* "eps", "v", "unknown" */
int sd_prediction_parse(const char *name, sd_prediction *out); /* "eps"/"epsilon", "v"/"v_prediction"; -1 else */

/* LDM prefixes of the three components. */
#define SD_PREFIX_UNET "model.diffusion_model."
#define SD_PREFIX_VAE "first_stage_model."
#define SD_PREFIX_CLIP "cond_stage_model.transformer.text_model."
#define SD_PREFIX_OPENCLIP "cond_stage_model.model."

typedef struct sd_unet_config {
    int in_channels, out_channels;     /* 4, 4 */
    int model_channels;                /* 320 in SD 1.x/2.x */
    int n_levels;                      /* 4 */
    int channel_mult[SD_MAX_LEVELS];   /* 1 2 4 4 */
    int num_res_blocks;                /* 2 */
    int attn[SD_MAX_LEVELS];           /* 1 where the level has transformer blocks */
    int mid_attn;                      /* middle block has a transformer */
    int transformer_depth;             /* 1: transformer blocks of the first attention level */
    int depth[SD_MAX_LEVELS + 1];      /* per level (index n_levels: the middle block); 0 = transformer_depth
                                        * (SDXL: [-, 2, 10], middle 10) */
    int adm_in;                        /* label_emb input width: the vector y added to the time embedding (SDXL
                                        * "text_time": pooled + 6 time ids); 0 = none */
    int num_heads;                     /* > 0: fixed head count (SD 1.x: 8) */
    int head_dim;                      /* > 0: fixed head width (SD 2.x: 64) */
    int context_dim;                   /* 768 / 1024 */
    int linear_proj;                   /* proj_in/out are linear (SD 2.x) rather than 1×1 conv */
    int time_embed_dim;                /* 4 × model_channels */
    int groups;                        /* GroupNorm groups, 32 */
} sd_unet_config;

/* Heads of an attention block with `channels` channels. */
static inline int sd_unet_heads(const sd_unet_config *c, int channels)
{
    return c->num_heads > 0 ? c->num_heads : channels / c->head_dim;
}

typedef struct sd_vae_config {
    int in_channels;                   /* 3 */
    int z_channels;                    /* 4 */
    int ch;                            /* 128 */
    int n_levels;                      /* 4 */
    int ch_mult[SD_MAX_LEVELS];        /* 1 2 4 4 */
    int num_res_blocks;                /* encoder: per level; decoder has one more */
    int groups;                        /* 32 */
    float scale_factor;                /* 0.18215 for SD 1.x/2.x */
    int has_encoder, has_decoder;
} sd_vae_config;

#define SD_MAX_TEXT 3 /* text encoders of one model (SDXL: 2) */

typedef struct sd_text_config {
    sd_text_kind kind;
    char prefix[64];   /* LDM prefix of the tower's tensors */
    int final_norm;    /* the context is taken after the final LayerNorm (SD 1.x/2.x), or before it (SDXL) */
    int penultimate;   /* the context is the second-to-last layer's output (SD 2.x, SDXL) */
    int proj_dim;      /* text_projection output width: the pooled vector's (0: no pooled output) */
    int width, layers, heads, mlp, vocab, positions;
    int layers_used;   /* how many transformer layers run before the final norm (SD 2.x: layers − 1) */
    sd_act act;
    int pad_id;        /* 49407 (SD 1.x CLIP) or 0 (SD 2.x) */
} sd_text_config;

typedef struct sd_sched_config {
    int num_train_timesteps;          /* 1000 */
    double beta_start, beta_end;      /* 0.00085, 0.012 */
    char beta_schedule[32];           /* "scaled_linear" */
    int steps_offset;                 /* 1 */
    char timestep_spacing[16];        /* "" = each sampler's default */
    int from_file;                    /* 1 when read from a diffusers scheduler config */
} sd_sched_config;

/* One translated weight name → where its bytes are. */
typedef struct sd_weight_ref {
    char *name;        /* LDM name */
    int file;          /* index into files[] */
    int index;         /* tensor index in that file */
    int64_t shape[SD_ST_MAX_DIMS]; /* LDM shape (diffusers linear [C,C] may become [C,C,1,1]) */
    int ndim;
    float *f32;        /* converted data (owned) or NULL; may also point into an F32 mapping */
    int f32_owned;
    uint16_t *f16;     /* owned F16 values that replace the stored F16 tensor, or NULL (a LoRA merged into an
                        * F16 weight in SD_WEIGHTS_F16 mode, sdgen/lora.h): read instead of the mapping */
    const struct sd_lowrank *lowrank; /* LoRA modules the layer adds as low-rank products at each use (a LoRA
                                       * applied on the fly, sdgen/lowrank.h), or NULL; owned by the LoRA state */
} sd_weight_ref;

/* How F16/BF16 weights are held (F32 files are always zero-copy views of the mapping):
 * F32: converted once, on first use, and kept by the model until it is closed (fastest; 4 bytes
 *      per parameter);
 * F16: left in the mapping and converted at each use into the arena scope of the code that uses
 *      it (2 bytes per parameter resident; one conversion pass per use). The converted copy is
 *      memory of that scope like an activation: it lives until the scope closes, whatever the
 *      model's size or how many weights are alive at once, and a read after that is a
 *      use-after-scope that ASan builds report (common.h, sd_scope). */
typedef enum sd_weights_mode { SD_WEIGHTS_F32 = 0, SD_WEIGHTS_F16 } sd_weights_mode;

typedef struct sd_model {
    char *path;                       /* as given */
    int is_folder;                    /* diffusers folder */
    char *tokenizer_dir;              /* diffusers tokenizer/ folder, or NULL */
    sd_family family;
    sd_prediction prediction;
    char prediction_why[256];         /* where the prediction type came from */
    int has_unet, has_vae, has_text;
    sd_unet_config unet;
    sd_vae_config vae;
    sd_text_config text[SD_MAX_TEXT];
    int n_text;                       /* text encoders present (has_text: n_text > 0) */
    sd_sched_config sched;

    int n_files;
    sd_safetensors files[4];

    int n_weights;
    sd_weight_ref *weights;           /* every tensor, LDM-named */
    sd_name_index index;              /* LDM name -> weights[] index */

    size_t converted_bytes;           /* f32 copies made so far */
    sd_weights_mode weights_mode;
    /* Textual-inversion vectors the prompts may use (sdgen/embeddings.h; owned by the caller, NULL: none). */
    const struct sd_embeddings *embeddings;
} sd_model;

/* Open and validate (headers only; no weight is converted). Faults: exit code 2. */
int sd_model_open(sd_model *m, const char *path, sd_err *err);
void sd_model_close(sd_model *m);
/* A bare weight table for a companion network that owns its architecture (taesd.c): the tensors of
 * n_files safetensors files (at most 4), each kept under the name rename() writes into out (return 1),
 * or left out (0); no family, no derive, no check. Names that clash are refused. Only F32, F16 and BF16
 * tensors are accepted. label names the table in messages (m->path). Faults: exit code 2. */
typedef int (*sd_model_rename_fn)(void *user, int file, const char *name, char *out, size_t n);
int sd_model_open_table(sd_model *m, const char *label, int n_files, const char *const *paths,
                        sd_model_rename_fn rename, void *user, sd_err *err);

/* Choose how weights are held (default SD_WEIGHTS_F32); switching to F16 frees converted copies.
 * Returns 0. */
int sd_model_set_weights_mode(sd_model *m, sd_weights_mode mode, sd_err *err);
/* Give the pages of the mapping under an LDM prefix back to the kernel (they are read again
 * from the page cache when next touched): the pipeline drops the text encoder's while the
 * U-Net runs and the U-Net's while the VAE decodes, so peak memory holds one network at a time. */
void sd_model_release_pages(sd_model *m, const char *prefix);
/* Ask the kernel to start reading the file pages of the weights under an LDM prefix now
 * (MADV_WILLNEED, asynchronous): the pipeline announces the text encoder and the U-Net before the
 * text stage, so that a model that is not in the page cache streams from disk while the text
 * encoder computes instead of being read a fault at a time as each layer first touches it. */
void sd_model_prefetch_pages(const sd_model *m, const char *prefix);

/* f32 view of a weight by LDM name. Its lifetime:
 *  - F32 in the file: a view into the read-only mapping, valid until sd_model_close;
 *  - SD_WEIGHTS_F32: converted on first use and kept by the model until sd_model_close;
 *  - SD_WEIGHTS_F16 and stored as F16/BF16/…: converted into `a` at the current position, valid
 *    until the caller's scope that holds it closes (or the arena is reset). With a NULL arena such
 *    a weight is refused with an error rather than converted into memory of unclear lifetime. */
int sd_model_weight(sd_model *m, sd_arena *a, const char *name, sd_tensor *out, sd_err *err);
/* sd_model_weight for the weight operand of a product (sd_linear, sd_conv2d*: sdgen/ops.h): a matrix or
 * kernel (2 or more dims) that SD_WEIGHTS_F16 would convert from F16 into `a` comes back unconverted
 * instead, out->data NULL and out->f16 its halves (in the mapping, or the LoRA-merged copy), valid as
 * long as the model's weights are. The product converts it a block at a time in cache, which saves the
 * converted copy's trip through memory. Anything else is sd_model_weight's. */
int sd_model_weight_f16(sd_model *m, sd_arena *a, const char *name, sd_tensor *out, sd_err *err);
/* Same with a printf-formatted name. */
int sd_model_weightf(sd_model *m, sd_arena *a, sd_tensor *out, sd_err *err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* sd_model_weight, then the shape: ndim dims equal to shape[] (shape[i] < 0: any), else an error
 * naming the tensor, its shape and the expected one. */
int sd_model_weight_shaped(sd_model *m, sd_arena *a, const char *name, int ndim, const int64_t *shape,
                           sd_tensor *out, sd_err *err);
/* Rows rows[0..n_rows) of a 2-D weight converted into dst (n_rows × columns floats), without
 * converting the rest: embedding look-ups read 77 rows of a 49408-row table. */
int sd_model_weight_rows(sd_model *m, const char *name, const int32_t *rows, int64_t n_rows, float *dst,
                         sd_err *err);
/* The reference (or NULL) without converting. */
const sd_weight_ref *sd_model_find(const sd_model *m, const char *name);
/* The low-rank modules a layer adds for weight `name` (sd_weight_ref.lowrank), or NULL: none (or no such
 * weight). Valid while the LoRA state that made them keeps them applied (sdgen/lora.h). */
const struct sd_lowrank *sd_model_lowrank(const sd_model *m, const char *name);
/* Element count of the largest tensor under an LDM prefix that sd_model_weight would convert into
 * an arena scope in the current mode (0 if none): what a network reserves for its weights. */
int64_t sd_model_scoped_numel(const sd_model *m, const char *prefix);
/* ---- what the networks use to derive and check their architecture ---- */

/* Whether a tensor of that (printf-formatted) LDM name exists; dimension d of it, -1 if absent. */
int sd_model_has(const sd_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int64_t sd_model_dim(const sd_model *m, int d, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A check of required tensors: the first failure is recorded in err ("<file>: required tensor
 * "x" is missing" / "has shape [..], expected [..]") and later checks do nothing. */
typedef struct sd_check {
    const sd_model *m;
    sd_err *err;
    int failed;
} sd_check;
/* "<pre><suffix>" exists with ndim dims d0.. (unused dims ignored). */
void sd_check_shape(sd_check *k, const char *pre, const char *suffix, int ndim, int64_t d0, int64_t d1, int64_t d2,
                    int64_t d3);
void sd_check_linear(sd_check *k, const char *pre, int64_t out, int64_t in, int bias); /* pre "weight" [out,in] */
void sd_check_conv(sd_check *k, const char *pre, int64_t out, int64_t in, int64_t ksize); /* + "bias" [out] */
void sd_check_norm(sd_check *k, const char *pre, int64_t c);                           /* weight, bias [c] */
void sd_check_fail(sd_check *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Metadata value from the (first) file's __metadata__, or NULL. */
const char *sd_model_meta(const sd_model *m, const char *key);

/* Parameter count of the tensors under an LDM prefix. */
int64_t sd_model_param_count(const sd_model *m, const char *prefix);

/* Bytes of f32 copies SD_WEIGHTS_F32 will still make (weights not converted yet that cannot be
 * zero-copy views); 0 in SD_WEIGHTS_F16 mode. For the address-space plan. */
size_t sd_model_pending_f32_bytes(const sd_model *m);
/* Every file still has the size and modification time it had at open (sd_st_check_unchanged). */
int sd_model_check_unchanged(const sd_model *m, sd_err *err);
/* Scan every weight (F32, F16, BF16, F64 as stored) for NaN and Inf: --check-weights. 0, or -1 with
 * err naming the file, the tensor and the first bad element (exit code 2). Reads the whole file. */
int sd_model_check_weights(const sd_model *m, sd_err *err);

#ifdef __cplusplus
}
#endif
#endif
