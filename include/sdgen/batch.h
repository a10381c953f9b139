/* sdgen/batch.h — the `--prompts FILE` batch file and output-path templates.
 *
 * Format: JSON Lines when the first line that is neither blank nor a '#' comment starts with
 * '{' (leading whitespace allowed); otherwise one prompt per line. In both modes blank lines and lines
 * whose first non-blank character is '#' are skipped, and lines are numbered from 1 as in the file. In
 * JSON mode each line is one flat object whose keys are golden case.json names:
 *
 *   strings : prompt, negative_prompt, sampler, schedule, rng, prediction, timestep_spacing, output,
 *             init_image, model (values of sampler/schedule/rng/... are checked by the generator,
 *             which knows their aliases), preset (turbo, lcm, lightning or none, as --preset, checked
 *             here: it fills the line's sampler, spacing, schedule, steps and CFG that neither the line
 *             nor the command line sets; sd_preset_apply_item)
 *   integers: seed (0 … 2^64−1), steps, width, height, clip_skip, batch_count
 *   numbers : cfg_scale, strength, eta
 *   loras   : "PATH[:W]" or an array of such strings (as --lora; a bare NAME is looked up in the LoRA
 *             folder), added to the command line's
 *   ignored : the informational case.json keys (name, family, model_sha256, latent_shape, timesteps,
 *             timesteps_all, init_timestep, t_start, init_noise_sigma, vae_scaling_factor,
 *             tokenizer_pad_id, stats, reference), any JSON value
 *   null    : as if the key were absent
 *
 * A malformed line (not UTF-8, NUL byte, longer than SD_BATCH_MAX_LINE, bad JSON, not an object,
 * unknown or duplicate key, wrong value type, number outside its range, missing prompt) becomes an item
 * whose `error` is "FILE:LINE: problem"; parsing goes on. Every number is checked with the range of the
 * command-line option of the same meaning, from the one table in options.h ("batch_count": 0 and
 * --batch-count 0 get the same message). Only an unreadable file, more than SD_BATCH_MAX_ITEMS items or
 * a file over SD_BATCH_MAX_FILE (refused from its size before reading when it is a regular file; a
 * stream is read to at most one byte past the cap) fails the whole parse. Checks that need the model
 * (clip skip against its layers, memory) are left to the generator.
 */
#ifndef SDGEN_BATCH_H
#define SDGEN_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "sdgen/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_BATCH_MAX_LINE (64 * 1024)     /* bytes per line, newline excluded */
#define SD_BATCH_MAX_ITEMS 100000
#define SD_BATCH_MAX_FILE (256LL << 20)
#define SD_BATCH_MAX_KEYS 32              /* settings per JSON line */

typedef struct sd_batch_item {
    int line;            /* 1-based line number in the file */
    char *error;         /* "FILE:LINE: problem", or NULL for a good item */

    /* Settings; NULL / has_* == 0 means "not given: use the command line's value". */
    char *prompt, *negative_prompt, *sampler, *schedule, *rng, *prediction, *timestep_spacing;
    char *output, *init_image, *model;
    char *loras;         /* "loras": one "PATH[:W]" or "NAME[:W]" a line (sdgen/lora.h), or NULL */
    char *preset;        /* "preset": a name sd_preset_parse accepts, or NULL */
    char *lora_apply;    /* "lora_apply": auto, merge or fly (sd_lora_mode_parse, sdgen/lora.h), or NULL */
    int has_seed;        uint64_t seed;
    int has_steps;       int steps;
    int has_width;       int width;
    int has_height;      int height;
    int has_clip_skip;   int clip_skip;
    int has_batch_count; int batch_count;
    int has_cfg_scale;   double cfg_scale;
    int has_strength;    double strength;
    int has_eta;         double eta;
    /* SDXL micro-conditioning (keys original_size [h, w], crops_coords_top_left [top, left], target_size [h, w]) */
    int has_original_size; int original_h, original_w;
    int has_crop;          int crop_top, crop_left;
    int has_target_size;   int target_h, target_w;

    /* The same settings generically, in file order: key (case.json name) and value as text (strings
     * decoded, numbers as written). Plain-text mode: one pair, prompt. */
    int n_set;
    char *set_key[SD_BATCH_MAX_KEYS];
    char *set_value[SD_BATCH_MAX_KEYS];
} sd_batch_item;

typedef struct sd_batch {
    int json;              /* 1: JSON Lines mode, 0: plain prompts */
    int n;                 /* items (good and failed) */
    int n_errors;          /* items with error != NULL */
    sd_batch_item *items;  /* in file order */
    char sha256[65];       /* SHA-256 of the file's bytes (hex): names the batch in manifests */
} sd_batch;

/* Parse a batch file. `name` (NULL: path) is the FILE in messages. */
int sd_batch_parse_file(const char *path, sd_batch *b, sd_err *err);
/* Parse from memory (n bytes, need not be NUL-terminated). */
int sd_batch_parse_mem(const char *data, size_t n, const char *name, sd_batch *b, sd_err *err);
void sd_batch_free(sd_batch *b);

/* Output path from a template: {index} (1-based number of the image in the run), {seed}, {prompt}
 * (sanitised: see below), "{{" and "}}" for literal braces. Any other {...} is an error. The prompt is
 * made file-name safe: whitespace runs -> '_', '/', '\\', control characters, quotes and
 * <>:|?*# and C1 controls (U+0080..U+009F) -> '_', runs of '_' collapsed, leading/trailing '_', '.', '-' trimmed, at most
 * SD_PROMPT_PART_MAX bytes cut on a UTF-8 character boundary, invalid UTF-8 bytes -> '_'; an empty
 * result becomes "image". */
#define SD_PROMPT_PART_MAX 80
int sd_output_path(const char *tmpl, int index, uint64_t seed, const char *prompt, char *out, size_t n,
                   sd_err *err);
/* Does the template contain a placeholder that differs between images ({index}, {seed})? "{{index}}" is
 * the literal text "{index}", not a placeholder. */
int sd_output_template_varies(const char *tmpl);
/* The sanitised prompt alone (out of n ≥ SD_PROMPT_PART_MAX + 1 bytes). */
void sd_sanitize_prompt(const char *prompt, char *out, size_t n);

/* ---- shards: one batch split over the tasks of a job array (docs/SCALE-OUT.md) ----
 *
 * Item k (0-based position among the file's items, malformed ones included) belongs to shard k mod count.
 * Seeds and output names never depend on the shard, so the shards together make exactly what one run of the
 * whole file makes. */
#define SD_SHARD_MAX_COUNT SD_BATCH_MAX_ITEMS

typedef struct sd_shard {
    int index, count;    /* 0 <= index < count */
    char source[256];    /* where it came from, for the message: "--shard" or "SLURM_ARRAY_TASK_ID=2, ..." */
} sd_shard;

/* "I/N": two whole numbers (digits only) with 0 <= I < N <= SD_SHARD_MAX_COUNT. `what` names the text in
 * the message ("--shard"). */
int sd_shard_parse(const char *what, const char *text, sd_shard *s, sd_err *err);

/* The shard a batch system's environment assigns; `get` looks a variable up (NULL: unset). In this order:
 *   SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN (0 when unset) of SLURM_ARRAY_TASK_COUNT; refused for an
 *     array of one task, a stepped array or one that is not a single range (SLURM_ARRAY_TASK_MAX), since a
 *     re-submitted index (`sbatch --array=2`) is such an array and cannot tell the real count;
 *   JOB_COMPLETION_INDEX of SDGEN_SHARD_COUNT (a Kubernetes Indexed Job does not expose its completions);
 *   AWS_BATCH_JOB_ARRAY_INDEX of AWS_BATCH_JOB_ARRAY_SIZE.
 * Returns 1 with *s set, 0 when no index variable is set, -1 with err for a value that is not a number, an
 * index variable without its count, or an index not below the count. */
typedef const char *(*sd_getenv_fn)(void *user, const char *name);
int sd_shard_from_env(sd_getenv_fn get, void *user, sd_shard *s, sd_err *err);

/* ---- flat JSON objects (one manifest record a line) ----
 * One line that is one JSON object (RFC 8259) whose values are strings, numbers, true, false or null; the
 * text must be UTF-8 without NUL. Strings are decoded; numbers are kept as written (a 64-bit seed does not
 * fit a double). A duplicate key, a nested value, more than `max` keys or anything after the object is an
 * error. */
typedef enum { SD_JSON_STRING, SD_JSON_NUMBER, SD_JSON_TRUE, SD_JSON_FALSE, SD_JSON_NULL } sd_json_type;
typedef struct sd_json_field {
    char *key;
    char *value;         /* decoded string or the number's text; NULL for true/false/null */
    sd_json_type type;
} sd_json_field;
/* Returns the number of fields (f[0..n-1], free with sd_json_fields_free), or -1 with a one-line problem in
 * msg (column numbers 1-based). */
int sd_json_flat_parse(const char *s, size_t n, sd_json_field *f, int max, char *msg, size_t msg_n);
void sd_json_fields_free(sd_json_field *f, int n);

#ifdef __cplusplus
}
#endif
#endif
