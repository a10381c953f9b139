/* sdgen/lora.h — LoRA adapters and how prompts name them (A1111 `<lora:NAME:W>`).
 *
 * A LoRA file holds, per patched layer ("module"), a down matrix D [r, in(, kh, kw)], an up matrix
 * U [out, r(, 1, 1)] and optionally a 0-D alpha. The patch rule is the reference's (diffusers
 * 0.25.1 LoRACompatibleLinear/Conv._fuse_lora; docs/LORA.md):
 *     W' = W + s · f · reshape(U.reshape(out, r) @ D.reshape(r, in·kh·kw), W.shape),  f = alpha / r (1 without alpha)
 * Several LoRAs are fused one after another: W' = W + s1·f1·ΔW1 + s2·f2·ΔW2 (in float32, in order).
 *
 * Key formats read: kohya / A1111 (`lora_unet_<module>`, `lora_te_`, `lora_te1_`, `lora_te2_` with
 * `.lora_down.weight`, `.lora_up.weight`, `.alpha`, the module path with '.' written '_', diffusers
 * or LDM module names) and diffusers / PEFT (`unet.<module>.lora.down.weight` / `.lora.up.weight`,
 * `.lora_A.weight` / `.lora_B.weight`, `…processor.to_q_lora.down.weight`, `text_encoder.<module>.
 * lora_linear_layer.down.weight`, `text_encoder_2.…`). Every key is resolved through one table built
 * from the model's own weights (sd_lora_map): the module's canonical name "unet/<m>", "te1/<m>" or
 * "te2/<m>" (m with '_' for '.') → the LDM weight and the rows of it the module patches.
 *
 * Application (sd_lora_apply): only the touched weights get copies, base values read from the model
 * file and the deltas added in float32. A weight stored as F16 in a model run with SD_WEIGHTS_F16 is
 * merged one weight at a time in a float32 scratch and kept as an F16 copy (sd_weight_ref.f16, rounded
 * to nearest even), as diffusers' _fuse_lora casts the fused weight back to the weight's dtype; other
 * weights (BF16, F32 files, SD_WEIGHTS_F32) keep float32 copies. Restoring frees the copies or reads the
 * base values from the file again — never subtracts — so a run after a LoRA run is bit-identical to a
 * run without one.
 *
 * On the fly (SD_LORA_FLY, sdgen/lowrank.h): no weight is touched; each module's D and s·f·U are kept as
 * float32 matrices and the layers add U'·(D·x) to their output at every use. Restoring drops them.
 */
#ifndef SDGEN_LORA_H
#define SDGEN_LORA_H

#include <stdint.h>

#include "sdgen/common.h"
#include "sdgen/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_LORA_MAX 16          /* LoRAs in one generation */
#define SD_LORA_MAX_RANK 65536  /* bound on a module's rank (the shapes bound it further) */

/* ---- the key mapper ---- */

typedef enum sd_lora_part { SD_LORA_PART_DOWN, SD_LORA_PART_UP, SD_LORA_PART_ALPHA } sd_lora_part;

/* Split a LoRA tensor name into its canonical module ("unet/…", "te1/…", "te2/…") and part. 0, or
 * -1 when the name is not a LoRA tensor sdgen reads (the loader lists those as unknown). */
int sd_lora_parse_key(const char *key, char *module, size_t cap, sd_lora_part *part);

/* What a module patches: rows [row0, row0 + rows) of model weight `weight` (an index into
 * m->weights), each row `cols` values (in·kh·kw). Rows are a slice only for OpenCLIP's fused q/k/v. */
typedef struct sd_lora_target {
    int weight;
    int64_t row0, rows, cols;
} sd_lora_target;

typedef struct sd_lora_map {
    int n, cap;
    char **names;             /* canonical module names (owned) */
    sd_lora_target *targets;
    sd_name_index index;      /* name -> entry */
} sd_lora_map;

/* Every module of model m a LoRA can address, under its diffusers and its LDM spelling. */
int sd_lora_map_build(const sd_model *m, sd_lora_map *map, sd_err *err);
void sd_lora_map_free(sd_lora_map *map);
/* The entry of a canonical module name, or -1. */
int sd_lora_map_find(const sd_lora_map *map, const char *module);

/* ---- prompt tags ---- */

/* One LoRA named for a generation: a file (path) or a name to look up in the LoRA folder. */
typedef struct sd_lora_use {
    char *name;     /* as the user wrote it (tag NAME, or the file name without extension); owned */
    char *path;     /* resolved file; owned (NULL until resolved) */
    double scale;      /* the text encoders' multiplier (A1111's "te"; the only one of --lora PATH:W) */
    double scale_unet; /* the U-Net's (A1111's "unet"): equal to scale unless a tag gives it */
} sd_lora_use;

typedef struct sd_lora_list {
    int n;
    sd_lora_use items[SD_LORA_MAX];
} sd_lora_list;

void sd_lora_list_free(sd_lora_list *l);
/* Append a use (name and path copied; path may be NULL). */
int sd_lora_list_add(sd_lora_list *l, const char *name, const char *path, double scale, sd_err *err);

/* Remove every `<lora:NAME>`, `<lora:NAME:W>`, `<lora:NAME:TE:UNET>` tag from text (A1111
 * extra_networks.parse_prompt: the tag is `<lora:` up to the next `>`, fields split at ':', a field
 * with '=' is a named one) and append the uses to l. Multipliers as A1111's ExtraNetworkLora.activate:
 * te = the first number after the name (default 1), then `te=`; unet = the second number, else te, then
 * `unet=`. DyLoRA's `dyn` and unknown names are refused. *out: the text without the tags (malloc'd).
 * An unclosed tag, an empty name or a bad weight is an error naming the tag. */
int sd_lora_strip_tags(const char *text, char **out, sd_lora_list *l, sd_err *err);

/* "PATH" or "PATH:W" of --lora (and of a batch line) → a use named after the file; a bare NAME (no '/',
 * not ending in .safetensors) is looked up in the LoRA folder like a tag. */
int sd_lora_parse_arg(const char *arg, sd_lora_list *l, sd_err *err);

/* Resolve every use without a path: DIR/NAME.safetensors (dir: the LoRA folder). */
int sd_lora_resolve(sd_lora_list *l, const char *dir, sd_err *err);

/* A1111's short hash of a LoRA file: the first 12 hex digits of the sha256 of the safetensors data
 * after the header (kohya's addnet_hash_safetensors, which A1111's networks use for .safetensors). */
int sd_lora_short_hash(const char *path, char out[13], sd_err *err);

/* ---- application ---- */

typedef struct sd_lora_patch {
    int weight;        /* index into m->weights */
    float *saved;      /* the weight's f32 pointer before (NULL, a view of the mapping, or the model's own copy) */
    int saved_owned;   /* saved is the model's converted copy, patched in place and re-read on restore */
    int f16;           /* the merged weight is an F16 copy (sd_weight_ref.f16), freed on restore */
} sd_lora_patch;

/* How a set of LoRAs is applied (docs/LORA.md, "Memory and speed"). */
typedef enum sd_lora_mode {
    SD_LORA_AUTO = 0, /* on the fly when that adds little work per step (SD_LORA_FLY_MAX_EXTRA), else merged */
    SD_LORA_MERGE,    /* into copies of the touched weights */
    SD_LORA_FLY,      /* as low-rank products added by the layers at each use (sdgen/lowrank.h) */
} sd_lora_mode;

/* SD_LORA_AUTO applies a set on the fly when its low-rank products add at most this fraction to the
 * multiply-adds per token of the layers they patch (Σ r·(in + out) over Σ in·out), else merges it. Measured
 * (docs/LORA.md): a rank-32 SDXL LoRA (3.9 %) costs a few per cent of CPU time per step on the fly (under 1 %
 * at 1024²), while merging it takes 16–39 s and 1.4–3.5 GB more peak memory; a rank-128 SD 1.5 LoRA (21 %)
 * costs 12–20 % more CPU time per step on the fly, against a merge of 1.5–3.7 s. */
#define SD_LORA_FLY_MAX_EXTRA 0.05

/* "auto" / "merge" / "fly" → mode: 0, or -1 for another word. */
int sd_lora_mode_parse(const char *s, sd_lora_mode *mode);

struct sd_lowrank;

typedef struct sd_lora_state {
    sd_lora_map map;
    int have_map;
    int n_patched;
    sd_lora_patch *patched;
    char *applied;     /* the applied set ("path\tscale\n" per LoRA), NULL: none */
    char *warning;     /* unknown keys of the last apply (one line), or NULL */
    double seconds;    /* time of the last apply (load + merge) */
    int changed;       /* the last sd_lora_apply changed the weights (else the set was already applied) */
    size_t copy_limit; /* refuse (SD_ERR_NOMEM) a merge whose copies (F16 or float32, plus the float32 scratch of
                        * the largest F16 one) need more bytes than this; 0: no
                        * limit; SIZE_MAX: the machine's available memory, read after the previous set is restored */
    sd_lora_mode mode; /* how the next sd_lora_apply applies a set (a change of mode re-applies the same set) */
    double fly_extra;  /* the last applied set's Σ r·(in + out) / Σ in·out (what SD_LORA_AUTO decides on) */
    int n_fly;         /* modules applied on the fly now */
    struct sd_lowrank **fly; /* each one block with its matrices; the model's sd_weight_ref.lowrank lists point
                              * into them until the restore */
} sd_lora_state;

/* Make m's weights base + Σ uses (in order), merged or on the fly as s->mode says. No-op when the same
 * set is applied already in that mode; an empty list restores the base weights. On failure the base
 * weights are restored. */
int sd_lora_apply(sd_lora_state *s, sd_model *m, const sd_lora_list *l, sd_err *err);
/* Give every patched weight its base values back (from the file). */
int sd_lora_restore(sd_lora_state *s, sd_model *m, sd_err *err);
void sd_lora_state_free(sd_lora_state *s, sd_model *m);

#ifdef __cplusplus
}
#endif
#endif
