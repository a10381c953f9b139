/* sdgen/params.h — AUTOMATIC1111 "infotext": the generation parameters stored in a PNG's `parameters`
 * chunk, written as A1111's create_infotext (modules/processing.py) does and read back as its
 * parse_generation_parameters (modules/infotext_utils.py) does.
 *
 *   a red apple on a table
 *   Negative prompt: blurry                                   (line omitted when the negative is empty)
 *   Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, Size: 512x512,
 *   Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, RNG: CPU, Version: sdgen 0.1.0   (one line)
 *
 * Order of the last line as in A1111 1.9+: Steps, Sampler, Schedule type, CFG scale, Seed, Size,
 * Model hash, Model, Denoising strength (img2img), Clip skip (only when > 1), RNG (omitted for "GPU",
 * A1111's default), extra pairs, Version. A value containing ',', ':' or a newline is written as a JSON
 * string (json.dumps(ensure_ascii=False)), as A1111's quote(). Numbers are written as Python prints them
 * (shortest round-trip digits; integral CFG values without ".0", as the web UI's sliders give them).
 */
#ifndef SDGEN_PARAMS_H
#define SDGEN_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "sdgen/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_PARAMS_MAX_EXTRA 8
#define SD_PARAMS_MAX_TEXT (1 << 20)  /* longest infotext accepted by the parser */

typedef struct sd_param_kv {
    char *key;
    char *value;
} sd_param_kv;

typedef struct sd_gen_params {
    const char *prompt;           /* UTF-8 */
    const char *negative_prompt;  /* "" or NULL: no "Negative prompt:" line */
    int steps;
    const char *sampler;          /* A1111 display name: "DDIM", "Euler", "Euler a", "DPM++ 2M" */
    const char *schedule_type;    /* "Automatic", "Karras", ...; NULL: omitted */
    double cfg_scale;
    uint64_t seed;
    int width, height;
    const char *model_hash;       /* 10 hex digits; NULL: omitted */
    const char *model_name;       /* file name without extension; NULL: omitted */
    double denoising_strength;    /* img2img strength; < 0: txt2img, omitted */
    int clip_skip;                /* written only when > 1 */
    const char *rng;              /* "CPU", "GPU", "NV"; NULL or "GPU": omitted (A1111 default) */
    int n_extra;                  /* extra "Key: value" pairs, written before Version */
    const char *extra_key[SD_PARAMS_MAX_EXTRA];
    const char *extra_value[SD_PARAMS_MAX_EXTRA];
    const char *version;          /* "sdgen 0.1.0"; NULL: omitted */

    /* Filled by sd_params_parse (owned; sd_params_free releases them): every "Key: value" pair of the
     * last line in order, unquoted, "Size" split into "Size-1"/"Size-2" as A1111 does, plus A1111's
     * defaults for missing "Clip skip" ("1"), "RNG" ("GPU") and "Schedule type" ("Automatic"). */
    int n_kv;
    sd_param_kv *kv;
    char *owned_prompt, *owned_negative;
} sd_gen_params;

/* Defaults: steps 20, cfg 7, clip_skip 1, denoising_strength -1, version "sdgen <VERSION>". */
void sd_params_init(sd_gen_params *p);
void sd_params_free(sd_gen_params *p);

/* Format the infotext (malloc'ed, *out). Prompts must be valid UTF-8. */
int sd_params_format(const sd_gen_params *p, char **out, sd_err *err);

/* Parse an infotext. All text fields of *p then point into storage owned by *p (sd_params_free).
 * Fields without a pair keep sd_params_init() defaults (steps 0, cfg 0, seed 0, size 0 there). An
 * unparsable number leaves its field at the default; the raw pair stays in kv. Never fails on
 * content; fails only on NULL/oversized input or out of memory. */
int sd_params_parse(const char *text, sd_gen_params *p, sd_err *err);

/* Value of a parsed pair (exact key), NULL if absent. */
const char *sd_params_get(const sd_gen_params *p, const char *key);

/* A1111 names of the CLI's sampler/schedule/rng values and back.
 *   sampler: ddim -> "DDIM", ddpm -> "DDPM", euler -> "Euler", euler_a -> "Euler a", dpmpp_2m -> "DPM++ 2M"
 *   schedule: default -> "Automatic", karras -> "Karras"
 *   rng: cpu -> "CPU", cuda -> "GPU"
 * Unknown values give NULL. sd_params_cli_sampler also understands pre-1.9 names with the schedule
 * folded in ("DPM++ 2M Karras" -> dpmpp_2m + karras); *schedule gets "default" or "karras". */
const char *sd_params_sampler_name(const char *cli_sampler);
const char *sd_params_schedule_name(const char *cli_schedule);
const char *sd_params_rng_name(const char *cli_rng);
int sd_params_cli_sampler(const char *a1111_sampler, const char *a1111_schedule, const char **sampler,
                          const char **schedule);

/* A1111's "Model" value for a checkpoint path: the file name without its folder and without a
 * .safetensors / .ckpt extension ("models/v1-5.safetensors" -> "v1-5"); trailing slashes dropped. */
void sd_params_model_name(const char *path, char *out, size_t n);

/* Python repr()-style shortest round-trip decimal of v, with a trailing ".0" dropped ("7", "7.5",
 * "0.6", "1e-05"). buf of 32 bytes is enough. */
void sd_params_fmt_number(double v, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
