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
 *     sd_tensor w;
 *     if (sd_model_weight(&m, "first_stage_model.decoder.conv_in.weight", &w, &err)) ...
 *     ... w.data is f32, owned by the model (converted once, on first use) ...
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
    int transformer_depth;             /* 1 */
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

typedef struct sd_text_config {
    sd_text_kind kind;
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
} sd_weight_ref;

/* How F16/BF16 weights are held (F32 files are always zero-copy views of the mapping):
 * F32: converted once, on first use, and kept (fastest; 4 bytes per parameter);
 * F16: left in the mapping and converted per use into a ring buffer of three times the largest
 *      tensor (2 bytes per parameter resident plus the ring; one conversion pass per call).
 *      A view stays valid until at least two more tensors of the largest size have been fetched:
 *      model code fetches one block's weights, uses them, then moves on. */
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
    sd_text_config text;
    sd_sched_config sched;

    int n_files;
    sd_safetensors files[4];

    int n_weights;
    sd_weight_ref *weights;           /* every tensor, LDM-named */
    int *hash; int hash_cap;          /* name lookup */

    size_t converted_bytes;           /* f32 copies made so far */
    sd_weights_mode weights_mode;
    float *ring;                      /* SD_WEIGHTS_F16: per-use conversions */
    size_t ring_cap, ring_pos;        /* in floats */
} sd_model;

/* Open and validate (headers only; no weight is converted). Faults: exit code 2. */
int sd_model_open(sd_model *m, const char *path, sd_err *err);
void sd_model_close(sd_model *m);

/* Choose how weights are held (default SD_WEIGHTS_F32). Returns -1 only when the F16 ring
 * cannot be allocated. */
int sd_model_set_weights_mode(sd_model *m, sd_weights_mode mode, sd_err *err);
/* Give the pages of the mapping under an LDM prefix back to the kernel (they are read again
 * from the page cache when next touched): the pipeline drops the text encoder's while the
 * U-Net runs and the U-Net's while the VAE decodes, so peak memory holds one network at a time. */
void sd_model_release_pages(sd_model *m, const char *prefix);

/* f32 view of a weight by LDM name: converted on first use and kept (SD_WEIGHTS_F32), or
 * converted into the ring (SD_WEIGHTS_F16; see above for how long the view stays valid). */
int sd_model_weight(sd_model *m, const char *name, sd_tensor *out, sd_err *err);
/* Same with a printf-formatted name. */
int sd_model_weightf(sd_model *m, sd_tensor *out, sd_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The reference (or NULL) without converting. */
const sd_weight_ref *sd_model_find(const sd_model *m, const char *name);
/* The stored F16 data of a weight that is F16 in its file and has no f32 copy yet, or NULL (other
 * dtypes, or already converted): for callers that convert it themselves, into memory they choose
 * (unet.c converts per block into its arena). *shape gets the tensor's dims (data NULL). */
const uint16_t *sd_model_weight_f16(const sd_model *m, const char *name, sd_tensor *shape);
/* Element count of the largest F16-stored tensor under an LDM prefix (0 if none). */
int64_t sd_model_max_f16_numel(const sd_model *m, const char *prefix);
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
