/* sdgen/batch.h — the `--prompts FILE` batch file and output-path templates.
 *
 * Format: JSON Lines when the first line that is neither blank nor a '#' comment starts with
 * '{' (leading whitespace allowed); otherwise one prompt per line. In both modes blank lines and lines
 * whose first non-blank character is '#' are skipped, and lines are numbered from 1 as in the file. In
 * JSON mode each line is one flat object whose keys are golden case.json names:
 *
 *   strings : prompt, negative_prompt, sampler, schedule, rng, prediction, timestep_spacing, output,
 *             init_image, model (values of sampler/schedule/rng/... are checked by the generator,
 *             which knows their aliases)
 *   integers: seed (0 … 2^64−1), steps, width, height, clip_skip, batch_count
 *   numbers : cfg_scale, strength, eta
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
    int has_seed;        uint64_t seed;
    int has_steps;       int steps;
    int has_width;       int width;
    int has_height;      int height;
    int has_clip_skip;   int clip_skip;
    int has_batch_count; int batch_count;
    int has_cfg_scale;   double cfg_scale;
    int has_strength;    double strength;
    int has_eta;         double eta;

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

#ifdef __cplusplus
}
#endif
#endif
