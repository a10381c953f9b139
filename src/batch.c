/* batch.c — `--prompts FILE` parser (JSON Lines or one prompt per line) and output-path templates
 * (batch.h). The JSON reader is a small strict RFC 8259 parser for one flat object per line: it keeps
 * numbers as written (a 64-bit seed does not fit a double) and reports the first problem precisely. */
#include "sdgen/batch.h"

#include "sdgen/hash.h"
#include "sdgen/json.h"
#include "sdgen/lora.h"
#include "sdgen/options.h"
#include "sdgen/preset.h"
#include "sdgen/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- UTF-8 ---- */

static int utf8_seq_len(const unsigned char *s, size_t n) { return sd_utf8_decode(s, n, NULL); }

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* ---- the JSON line reader ---- */

typedef struct {
    const char *s;
    size_t n, i;
    char msg[200];
} jp;

static int jfail(jp *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jfail(jp *j, const char *fmt, ...)
{
    if (!j->msg[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->msg, sizeof j->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void jws(jp *j)
{
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\r')) j->i++;
}


/* String at j->i (which is '"'). *out malloc'ed (NULL when out is NULL: just skip). */
static int jstring(jp *j, char **out)
{
    const size_t start = j->i, body = j->i + 1;
    char *o = out ? malloc(j->n - start + 1) : NULL; /* decoded is never longer than the source */
    if (out && !o) return jfail(j, "out of memory");
    size_t used = 0, at = 0;
    const sd_json_error e = sd_json_string(j->s + body, j->n - body, o, &used, &at);
    const size_t col = body + at + 1;
    if (e != SD_JSON_OK) free(o);
    switch (e) {
    case SD_JSON_OK: break;
    case SD_JSON_UNTERMINATED: return jfail(j, "unterminated string (column %zu)", start + 1);
    case SD_JSON_CONTROL: return jfail(j, "control character in a string (column %zu)", col);
    case SD_JSON_BAD_ESCAPE: return jfail(j, "bad escape \\%c in a string (column %zu)", j->s[body + at + 1], col);
    case SD_JSON_BAD_U: return jfail(j, "bad \\u escape (column %zu)", col);
    case SD_JSON_SURROGATE: return jfail(j, "unpaired UTF-16 surrogate in a \\u escape (column %zu)", col);
    case SD_JSON_NUL: return jfail(j, "NUL character (\\u0000) in a string");
    }
    j->i = body + used;
    if (o) *out = o;
    return 0;
}

/* Number at j->i: RFC 8259 grammar. Span in [*a, *b); *is_int when no fraction/exponent. */
static int jnumber(jp *j, size_t *a, size_t *b, int *is_int)
{
    size_t i = j->i, n = j->n;
    const char *s = j->s;
    *a = i;
    *is_int = 1;
    if (i < n && s[i] == '-') i++;
    if (i >= n || s[i] < '0' || s[i] > '9') return jfail(j, "bad number (column %zu)", *a + 1);
    if (s[i] == '0') i++;
    else while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i < n && s[i] == '.') {
        *is_int = 0;
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return jfail(j, "bad number (column %zu)", *a + 1);
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        *is_int = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return jfail(j, "bad number (column %zu)", *a + 1);
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    j->i = i;
    *b = i;
    return 0;
}

static int jliteral(jp *j, const char *lit)
{
    size_t l = strlen(lit);
    if (j->n - j->i < l || memcmp(j->s + j->i, lit, l)) return jfail(j, "unexpected character '%c' (column %zu)", j->s[j->i], j->i + 1);
    j->i += l;
    return 0;
}

/* Skip any value (for the ignored informational keys); nesting capped. */
static int jskip(jp *j, int depth)
{
    if (depth > 32) return jfail(j, "JSON nested too deeply");
    jws(j);
    if (j->i >= j->n) return jfail(j, "unexpected end of line, a value was expected");
    char c = j->s[j->i];
    if (c == '"') return jstring(j, NULL);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->i++;
        jws(j);
        if (j->i < j->n && j->s[j->i] == close) { j->i++; return 0; }
        for (;;) {
            if (c == '{') {
                jws(j);
                if (j->i >= j->n || j->s[j->i] != '"') return jfail(j, "object key must be a string (column %zu)", j->i + 1);
                if (jstring(j, NULL)) return -1;
                jws(j);
                if (j->i >= j->n || j->s[j->i] != ':') return jfail(j, "':' expected (column %zu)", j->i + 1);
                j->i++;
            }
            if (jskip(j, depth + 1)) return -1;
            jws(j);
            if (j->i < j->n && j->s[j->i] == ',') { j->i++; continue; }
            if (j->i < j->n && j->s[j->i] == close) { j->i++; return 0; }
            return jfail(j, "',' or '%c' expected (column %zu)", close, j->i + 1);
        }
    }
    if (c == 't') return jliteral(j, "true");
    if (c == 'f') return jliteral(j, "false");
    if (c == 'n') return jliteral(j, "null");
    if (c != '-' && (c < '0' || c > '9')) {
        if (c > 32 && c < 127) return jfail(j, "invalid JSON value starting with '%c' (column %zu)", c, j->i + 1);
        return jfail(j, "invalid JSON value (column %zu)", j->i + 1);
    }
    size_t a, b;
    int is_int;
    return jnumber(j, &a, &b, &is_int);
}

/* ---- keys ---- */

enum { K_STR, K_INT, K_U64, K_NUM, K_PAIR, K_IGNORE, K_LORAS };

typedef struct {
    const char *name;
    int type;
    const char *choices; /* "a|b|c" for enumerations; NULL: any string (the generator checks option
                          * values such as sampler names itself, with its aliases) */
} keydef;

static const keydef KEYS[] = {
    {"prompt", K_STR, NULL},
    {"negative_prompt", K_STR, NULL},
    {"sampler", K_STR, NULL},
    {"schedule", K_STR, NULL},
    {"rng", K_STR, NULL},
    {"prediction", K_STR, NULL},
    {"timestep_spacing", K_STR, NULL},
    {"output", K_STR, NULL},
    {"init_image", K_STR, NULL},
    {"model", K_STR, NULL},
    {"preset", K_STR, NULL},
    {"lora_apply", K_STR, "auto|merge|fly"},
    {"loras", K_LORAS, NULL},
    {"seed", K_U64, NULL},
    {"steps", K_INT, NULL},
    {"width", K_INT, NULL},
    {"height", K_INT, NULL},
    {"clip_skip", K_INT, NULL},
    {"batch_count", K_INT, NULL},
    {"cfg_scale", K_NUM, NULL},
    {"strength", K_NUM, NULL},
    {"eta", K_NUM, NULL},
    /* SDXL micro-conditioning under the names of diffusers' StableDiffusionXLPipeline arguments (and the
     * golden case.json keys): [height, width], [top, left], [height, width] */
    {"original_size", K_PAIR, NULL},
    {"crops_coords_top_left", K_PAIR, NULL},
    {"target_size", K_PAIR, NULL},
    /* golden case.json keys that describe a run rather than set an option */
    {"name", K_IGNORE, NULL},
    {"family", K_IGNORE, NULL},
    {"model_sha256", K_IGNORE, NULL},
    {"latent_shape", K_IGNORE, NULL},
    {"timesteps", K_IGNORE, NULL},
    {"timesteps_all", K_IGNORE, NULL},
    {"init_timestep", K_IGNORE, NULL},
    {"t_start", K_IGNORE, NULL},
    {"init_noise_sigma", K_IGNORE, NULL},
    {"vae_scaling_factor", K_IGNORE, NULL},
    {"tokenizer_pad_id", K_IGNORE, NULL},
    {"tokenizer_2_pad_id", K_IGNORE, NULL},
    {"uncond", K_IGNORE, NULL},
    {"force_zeros_for_empty_prompt", K_IGNORE, NULL},
    {"addition_time_embed_dim", K_IGNORE, NULL},
    {"cfg_enabled", K_IGNORE, NULL},
    {"scheduler_order", K_IGNORE, NULL},
    {"unet_calls", K_IGNORE, NULL},
    {"stats", K_IGNORE, NULL},
    {"reference", K_IGNORE, NULL},
};

static int in_choices(const char *v, const char *choices)
{
    size_t l = strlen(v);
    for (const char *c = choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t cl = bar ? (size_t)(bar - c) : strlen(c);
        if (cl == l && !memcmp(c, v, l)) return 1;
        if (!bar) break;
        c = bar + 1;
    }
    return 0;
}

static char **str_field(sd_batch_item *it, const char *k)
{
    if (!strcmp(k, "prompt")) return &it->prompt;
    if (!strcmp(k, "negative_prompt")) return &it->negative_prompt;
    if (!strcmp(k, "sampler")) return &it->sampler;
    if (!strcmp(k, "schedule")) return &it->schedule;
    if (!strcmp(k, "rng")) return &it->rng;
    if (!strcmp(k, "prediction")) return &it->prediction;
    if (!strcmp(k, "timestep_spacing")) return &it->timestep_spacing;
    if (!strcmp(k, "output")) return &it->output;
    if (!strcmp(k, "init_image")) return &it->init_image;
    if (!strcmp(k, "preset")) return &it->preset;
    if (!strcmp(k, "lora_apply")) return &it->lora_apply;
    return &it->model;
}

static void item_clear(sd_batch_item *it)
{
    free(it->error);
    free(it->prompt); free(it->negative_prompt); free(it->sampler); free(it->schedule); free(it->rng);
    free(it->prediction); free(it->timestep_spacing); free(it->output); free(it->init_image); free(it->model);
    free(it->loras); free(it->preset); free(it->lora_apply);
    for (int i = 0; i < it->n_set; i++) {
        free(it->set_key[i]);
        free(it->set_value[i]);
    }
    int line = it->line;
    memset(it, 0, sizeof *it);
    it->line = line;
}

static int add_set(sd_batch_item *it, jp *j, const char *k, const char *v, size_t vn)
{
    if (it->n_set >= SD_BATCH_MAX_KEYS) return jfail(j, "too many keys (max %d)", SD_BATCH_MAX_KEYS);
    it->set_key[it->n_set] = dupn(k, strlen(k));
    it->set_value[it->n_set] = dupn(v, vn);
    it->n_set++;
    if (!it->set_key[it->n_set - 1] || !it->set_value[it->n_set - 1]) return jfail(j, "out of memory");
    return 0;
}

/* A micro-conditioning pair at j->i: a JSON array of two integers 0..16384 (the range of the command-line
 * options --original-size, --crop-top-left, --target-size). Stored in the item and, as "A,B", in its generic
 * settings. */
static int parse_pair(jp *j, const char *key, sd_batch_item *it)
{
    const int crop = !strcmp(key, "crops_coords_top_left");
    const char *shape = crop ? "[top, left]" : "[height, width]";
    long long v[2];
    if (j->s[j->i] != '[') {
        if (jskip(j, 0)) return -1;
        return jfail(j, "\"%s\" must be %s: two integers 0..16384", key, shape);
    }
    j->i++;
    for (int k = 0; k < 2; k++) {
        jws(j);
        if (k == 1) {
            if (j->i >= j->n || j->s[j->i] != ',') return jfail(j, "\"%s\" must be %s: two integers 0..16384", key, shape);
            j->i++;
            jws(j);
        }
        size_t a, b;
        int is_int;
        if (j->i >= j->n || (j->s[j->i] != '-' && (j->s[j->i] < '0' || j->s[j->i] > '9')))
            return jfail(j, "\"%s\" must be %s: two integers 0..16384", key, shape);
        if (jnumber(j, &a, &b, &is_int)) return -1;
        char num[32];
        if (!is_int || b - a >= sizeof num) return jfail(j, "\"%s\": %.*s is not an integer 0..16384", key, (int)(b - a), j->s + a);
        memcpy(num, j->s + a, b - a);
        num[b - a] = 0;
        v[k] = strtoll(num, NULL, 10);
        if (v[k] < 0 || v[k] > 16384) return jfail(j, "\"%s\": %s is outside 0..16384", key, num);
    }
    jws(j);
    if (j->i >= j->n || j->s[j->i] != ']') return jfail(j, "\"%s\" must be %s: exactly two integers", key, shape);
    j->i++;
    if (!strcmp(key, "original_size")) {
        it->has_original_size = 1;
        it->original_h = (int)v[0];
        it->original_w = (int)v[1];
    } else if (crop) {
        it->has_crop = 1;
        it->crop_top = (int)v[0];
        it->crop_left = (int)v[1];
    } else {
        it->has_target_size = 1;
        it->target_h = (int)v[0];
        it->target_w = (int)v[1];
    }
    char text[48];
    snprintf(text, sizeof text, "%lld,%lld", v[0], v[1]);
    return add_set(it, j, key, text, strlen(text));
}

/* "loras": one "PATH[:W]" / "NAME[:W]" string or an array of them (sd_lora_parse_arg), each checked now
 * and kept one a line in it->loras. */
static int parse_loras(jp *j, sd_batch_item *it)
{
    sd_lora_list l;
    memset(&l, 0, sizeof l);
    char *joined = NULL;
    size_t jn = 0;
    const int array = j->s[j->i] == '[';
    if (array) {
        j->i++;
        jws(j);
    }
    int rc = 0;
    while (!rc) {
        if (array && j->i < j->n && j->s[j->i] == ']' && l.n == 0) break;
        if (j->i >= j->n || j->s[j->i] != '"') {
            rc = jfail(j, "\"loras\" must be a string \"PATH[:WEIGHT]\" or an array of them");
            break;
        }
        char *v;
        if (jstring(j, &v)) {
            rc = -1;
            break;
        }
        sd_err e = {0};
        if (strchr(v, '\n') || sd_lora_parse_arg(v, &l, &e)) {
            rc = jfail(j, "\"loras\": %s", e.msg[0] ? e.msg : "a line break in a LoRA name");
            free(v);
            break;
        }
        char *nj = realloc(joined, jn + strlen(v) + 2);
        if (!nj) {
            free(v);
            rc = jfail(j, "out of memory");
            break;
        }
        joined = nj;
        jn += (size_t)sprintf(joined + jn, "%s%s", jn ? "\n" : "", v);
        free(v);
        if (!array) break;
        jws(j);
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            jws(j);
            continue;
        }
        if (j->i < j->n && j->s[j->i] == ']') break;
        rc = jfail(j, "\"loras\": ',' or ']' expected (column %zu)", j->i + 1);
    }
    if (!rc && array) j->i++; /* the ']' */
    sd_lora_list_free(&l);
    if (rc) {
        free(joined);
        return -1;
    }
    free(it->loras);
    it->loras = joined;
    return joined ? add_set(it, j, "loras", joined, jn) : 0;
}

/* Parse one JSON line into it. Returns 0 or -1 with j->msg. */
static int parse_object(jp *j, sd_batch_item *it)
{
    unsigned char seen[sizeof KEYS / sizeof *KEYS] = {0};
    jws(j);
    if (j->i >= j->n || j->s[j->i] != '{') return jfail(j, "not a JSON object (a line must start with '{')");
    j->i++;
    jws(j);
    int first = 1;
    if (j->i < j->n && j->s[j->i] == '}') {
        j->i++;
        first = -1;
    }
    while (first >= 0) {
        jws(j);
        if (!first && j->i < j->n && j->s[j->i] == '}') return jfail(j, "trailing comma before '}' (column %zu)", j->i + 1);
        first = 0;
        if (j->i >= j->n || j->s[j->i] != '"') return jfail(j, "object key must be a string (column %zu)", j->i + 1);
        char *key;
        if (jstring(j, &key)) return -1;
        size_t kidx = 0;
        while (kidx < sizeof KEYS / sizeof *KEYS && strcmp(KEYS[kidx].name, key)) kidx++;
        if (kidx == sizeof KEYS / sizeof *KEYS) {
            jfail(j, "unknown key \"%.60s\"", key);
            free(key);
            return -1;
        }
        free(key);
        const keydef *kd = &KEYS[kidx];
        if (seen[kidx]) return jfail(j, "duplicate key \"%s\"", kd->name);
        seen[kidx] = 1;
        jws(j);
        if (j->i >= j->n || j->s[j->i] != ':') return jfail(j, "':' expected after \"%s\" (column %zu)", kd->name, j->i + 1);
        j->i++;
        jws(j);
        if (j->i >= j->n) return jfail(j, "value expected for \"%s\"", kd->name);
        char c = j->s[j->i];
        if (kd->type == K_IGNORE) {
            if (jskip(j, 0)) return -1;
        } else if (kd->type == K_LORAS && c != 'n') {
            if (parse_loras(j, it)) return -1;
        } else if (c == 'n') {
            if (jliteral(j, "null")) return -1; /* null: not set */
        } else if (kd->type == K_PAIR) {
            if (parse_pair(j, kd->name, it)) return -1;
        } else if (kd->type == K_STR) {
            if (c != '"') {
                if (jskip(j, 0)) return -1;
                return jfail(j, "\"%s\" must be a string", kd->name);
            }
            char *v;
            if (jstring(j, &v)) return -1;
            if (kd->choices && !in_choices(v, kd->choices)) {
                jfail(j, "\"%s\": unknown value \"%.60s\" (expected %s)", kd->name, v, kd->choices);
                free(v);
                return -1;
            }
            sd_preset pr;
            if (!strcmp(kd->name, "preset") && sd_preset_parse(v, &pr)) { /* the names --preset takes */
                jfail(j, "\"preset\": unknown preset \"%.60s\" (turbo, lcm, lightning, none)", v);
                free(v);
                return -1;
            }
            char **f = str_field(it, kd->name);
            free(*f);
            *f = v;
            if (add_set(it, j, kd->name, v, strlen(v))) return -1;
        } else {
            if (c != '-' && (c < '0' || c > '9')) {
                if (jskip(j, 0)) return -1;
                return jfail(j, "\"%s\" must be a number", kd->name);
            }
            size_t a, b;
            int is_int;
            if (jnumber(j, &a, &b, &is_int)) return -1;
            char num[64];
            if (b - a >= sizeof num) return jfail(j, "\"%s\": number too long", kd->name);
            memcpy(num, j->s + a, b - a);
            num[b - a] = 0;
            if (kd->type != K_NUM && !is_int) return jfail(j, "\"%s\" must be an integer, not %s", kd->name, num);
            /* The same table and parser as the command-line option of the same meaning (options.c). */
            const sd_num_opt *range = sd_num_opt_by_key(kd->name);
            char qname[48];
            snprintf(qname, sizeof qname, "\"%s\"", kd->name);
            sd_num v;
            sd_err ne = {0};
            if (!range) return jfail(j, "\"%s\": no range defined", kd->name);
            if (sd_num_parse(range, qname, num, &v, &ne)) return jfail(j, "%s", ne.msg);
            if (!strcmp(kd->name, "cfg_scale")) { it->has_cfg_scale = 1; it->cfg_scale = v.d; }
            else if (!strcmp(kd->name, "strength")) { it->has_strength = 1; it->strength = v.d; }
            else if (!strcmp(kd->name, "eta")) { it->has_eta = 1; it->eta = v.d; }
            else if (!strcmp(kd->name, "seed")) { it->has_seed = 1; it->seed = v.u; }
            else if (!strcmp(kd->name, "steps")) { it->has_steps = 1; it->steps = (int)v.i; }
            else if (!strcmp(kd->name, "width")) { it->has_width = 1; it->width = (int)v.i; }
            else if (!strcmp(kd->name, "height")) { it->has_height = 1; it->height = (int)v.i; }
            else if (!strcmp(kd->name, "clip_skip")) { it->has_clip_skip = 1; it->clip_skip = (int)v.i; }
            else { it->has_batch_count = 1; it->batch_count = (int)v.i; }
            if (add_set(it, j, kd->name, num, strlen(num))) return -1;
        }
        jws(j);
        if (j->i < j->n && j->s[j->i] == ',') { j->i++; continue; }
        if (j->i < j->n && j->s[j->i] == '}') { j->i++; break; }
        return jfail(j, "',' or '}' expected (column %zu)", j->i + 1);
    }
    jws(j);
    if (j->i < j->n) return jfail(j, "unexpected text after the object (column %zu)", j->i + 1);
    if (!it->prompt) return jfail(j, "missing \"prompt\"");
    return 0;
}

/* ---- the file ---- */

static int add_item(sd_batch *b, int *cap, int line, const char *name, sd_err *err)
{
    if (b->n >= SD_BATCH_MAX_ITEMS) return sd_errf(err, "%s:%d: more than %d items in one batch file", name, line, SD_BATCH_MAX_ITEMS);
    if (b->n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        sd_batch_item *q = realloc(b->items, (size_t)nc * sizeof *q);
        if (!q) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", name);
        b->items = q;
        *cap = nc;
    }
    memset(&b->items[b->n], 0, sizeof b->items[b->n]);
    b->items[b->n].line = line;
    b->n++;
    return 0;
}

static int set_error(sd_batch *b, sd_batch_item *it, const char *name, const char *msg, sd_err *err)
{
    item_clear(it);
    size_t l = strlen(name) + strlen(msg) + 32;
    it->error = malloc(l);
    if (!it->error) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", name);
    snprintf(it->error, l, "%s:%d: %s", name, it->line, msg);
    b->n_errors++;
    return 0;
}

void sd_batch_free(sd_batch *b)
{
    for (int i = 0; i < b->n; i++) item_clear(&b->items[i]);
    free(b->items);
    memset(b, 0, sizeof *b);
}

int sd_batch_parse_mem(const char *data, size_t n, const char *name, sd_batch *b, sd_err *err)
{
    memset(b, 0, sizeof *b);
    if (!name) name = "batch";
    if ((long long)n > SD_BATCH_MAX_FILE) return sd_errf(err, "%s: file too large (%zu bytes)", name, n);
    size_t pos = 0;
    if (n >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3)) pos = 3; /* UTF-8 byte order mark */
    int cap = 0, mode = -1, line = 0, first_json_failed = 0;
    while (pos < n) {
        line++;
        const char *nl = memchr(data + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - data) : n;
        const char *s = data + pos;
        size_t len = end - pos;
        pos = nl ? end + 1 : n;
        if (len && s[len - 1] == '\r') len--; /* CRLF files */
        size_t f = 0;
        while (f < len && (s[f] == ' ' || s[f] == '\t' || s[f] == '\r' || s[f] == '\v' || s[f] == '\f')) f++;
        if (f == len || s[f] == '#') continue; /* blank or comment */
        if (mode < 0) mode = s[f] == '{';
        if (add_item(b, &cap, line, name, err)) {
            sd_batch_free(b);
            return -1;
        }
        sd_batch_item *it = &b->items[b->n - 1];
        const char *problem = NULL;
        char msg[512];
        if (len > SD_BATCH_MAX_LINE) {
            snprintf(msg, sizeof msg, "line too long (%zu bytes, max %d)", len, SD_BATCH_MAX_LINE);
            problem = msg;
        } else if (memchr(s, 0, len)) {
            problem = "contains a NUL byte";
        } else {
            for (size_t i = 0; i < len;) {
                int l = utf8_seq_len((const unsigned char *)s + i, len - i);
                if (!l) {
                    snprintf(msg, sizeof msg, "not valid UTF-8 (byte %zu)", i + 1);
                    problem = msg;
                    break;
                }
                i += (size_t)l;
            }
        }
        if (!problem && mode == 1) {
            jp j = {s, len, 0, {0}};
            if (parse_object(&j, it)) {
                /* The first prompt line decides the format: when that very line is not valid JSON, the file
                 * is most likely plain prompts, one of which happens to start with '{'. */
                if (b->n == 1) first_json_failed = 1;
                if (first_json_failed)
                    snprintf(msg, sizeof msg, "%s (the file is read as JSON Lines because its first prompt line "
                             "starts with '{'; for plain prompts, start the first line with another character)", j.msg);
                else
                    snprintf(msg, sizeof msg, "%s", j.msg);
                problem = msg;
            }
        } else if (!problem) {
            size_t e = len;
            while (e > f && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\v' || s[e - 1] == '\f')) e--;
            it->prompt = dupn(s + f, e - f);
            it->set_key[0] = dupn("prompt", 6);
            it->set_value[0] = dupn(s + f, e - f);
            it->n_set = 1;
            if (!it->prompt || !it->set_key[0] || !it->set_value[0]) {
                sd_batch_free(b);
                return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", name);
            }
        }
        if (problem && set_error(b, it, name, problem, err)) {
            sd_batch_free(b);
            return -1;
        }
    }
    b->json = mode == 1;
    uint8_t digest[32];
    sd_sha256_buf(data, n, digest);
    sd_sha256_hex(digest, b->sha256);
    return 0;
}

int sd_batch_parse_file(const char *path, sd_batch *b, sd_err *err)
{
    memset(b, 0, sizeof *b);
    char *buf;
    size_t n;
    if (sd_read_whole(path, SD_BATCH_MAX_FILE, &buf, &n, err)) return -1;
    int rc = sd_batch_parse_mem(buf, n, path, b, err);
    free(buf);
    return rc;
}

/* ---- output paths ---- */

void sd_sanitize_prompt(const char *prompt, char *out, size_t n)
{
    size_t cap = n - 1 < SD_PROMPT_PART_MAX ? n - 1 : SD_PROMPT_PART_MAX;
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)(prompt ? prompt : "");
    size_t plen = strlen((const char *)p);
    for (size_t i = 0; i < plen && k < cap;) {
        unsigned c = p[i];
        int l = utf8_seq_len(p + i, plen - i);
        /* C1 controls (U+0080..U+009F) drive some terminals as C0 ones do: never part of a file name */
        int bad = !l || c < 0x20 || c == 0x7F || (l == 2 && c == 0xC2 && p[i + 1] < 0xA0) ||
                  strchr(" \t/\\\"'<>:|?*#", (int)c) != NULL;
        if (bad) {
            if (k > 0 && out[k - 1] != '_') out[k++] = '_';
            i += l ? (size_t)l : 1;
            continue;
        }
        if (k + (size_t)l > cap) break; /* never cut a character in two */
        memcpy(out + k, p + i, (size_t)l);
        k += (size_t)l;
        i += (size_t)l;
    }
    while (k > 0 && (out[k - 1] == '_' || out[k - 1] == '.' || out[k - 1] == '-')) k--;
    size_t s = 0;
    while (s < k && (out[s] == '_' || out[s] == '.' || out[s] == '-')) s++;
    memmove(out, out + s, k - s);
    k -= s;
    if (!k) {
        snprintf(out, n, "image");
        return;
    }
    out[k] = 0;
}

int sd_output_path(const char *tmpl, int index, uint64_t seed, const char *prompt, char *out, size_t n, sd_err *err)
{
    size_t k = 0;
    char tmp[SD_PROMPT_PART_MAX + 32];
    for (const char *t = tmpl; *t;) {
        const char *piece;
        size_t pl;
        if (t[0] == '{' && t[1] == '{') { piece = "{"; pl = 1; t += 2; }
        else if (t[0] == '}' && t[1] == '}') { piece = "}"; pl = 1; t += 2; }
        else if (t[0] == '{') {
            const char *close = strchr(t, '}');
            size_t nl = close ? (size_t)(close - t - 1) : 0;
            if (close && nl == 5 && !memcmp(t + 1, "index", 5)) snprintf(tmp, sizeof tmp, "%d", index);
            else if (close && nl == 4 && !memcmp(t + 1, "seed", 4)) snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)seed);
            else if (close && nl == 6 && !memcmp(t + 1, "prompt", 6)) sd_sanitize_prompt(prompt, tmp, sizeof tmp);
            else return sd_errf(err, "output template \"%s\": unknown placeholder %.*s (use {index}, {seed}, {prompt}, {{, }})",
                                tmpl, close ? (int)(nl + 2) : 1, t);
            piece = tmp;
            pl = strlen(tmp);
            t = close + 1;
        } else { piece = t; pl = 1; t++; }
        if (k + pl >= n) return sd_errf(err, "output template \"%s\": path too long", tmpl);
        memcpy(out + k, piece, pl);
        k += pl;
    }
    if (n == 0) return sd_errf(err, "output path buffer too small");
    out[k] = 0;
    if (!k) return sd_errf(err, "empty output path");
    return 0;
}

int sd_output_template_varies(const char *tmpl)
{
    /* Walk it as sd_output_path does: "{{index}}" is the literal text "{index}", not a placeholder. */
    for (const char *t = tmpl; *t;) {
        if ((t[0] == '{' && t[1] == '{') || (t[0] == '}' && t[1] == '}')) {
            t += 2;
        } else if (t[0] == '{') {
            if (!strncmp(t, "{index}", 7) || !strncmp(t, "{seed}", 6)) return 1;
            const char *close = strchr(t, '}');
            if (!close) return 0;
            t = close + 1;
        } else {
            t++;
        }
    }
    return 0;
}

/* ---- shards ---- */

/* A whole number 0..SD_SHARD_MAX_COUNT, digits only (options.c's strict parser: no sign, no space). */
static int shard_number(const char *t, long long *v)
{
    return sd_parse_ll(t, 0, v) || *v > SD_SHARD_MAX_COUNT ? -1 : 0;
}

static int shard_check(long long index, long long count, const char *what, sd_err *err)
{
    if (count < 1) return sd_errf(err, "%s: the shard count must be at least 1", what);
    if (index >= count)
        return sd_errf(err, "%s: shard index %lld is not below the shard count %lld (indices run 0..%lld)", what, index,
                       count, count - 1);
    return 0;
}

int sd_shard_parse(const char *what, const char *text, sd_shard *s, sd_err *err)
{
    memset(s, 0, sizeof *s);
    char buf[64];
    const char *slash = strchr(text, '/');
    long long i, n;
    if (!slash || strlen(text) >= sizeof buf)
        return sd_errf(err, "%s \"%.40s\": expected I/N, two whole numbers with 0 <= I < N (e.g. 0/4)", what, text);
    memcpy(buf, text, (size_t)(slash - text));
    buf[slash - text] = 0;
    if (shard_number(buf, &i))
        return sd_errf(err, "%s \"%s\": the index \"%s\" is not a whole number in [0, %d]", what, text, buf,
                       SD_SHARD_MAX_COUNT - 1);
    if (shard_number(slash + 1, &n))
        return sd_errf(err, "%s \"%s\": the count \"%s\" is not a whole number in [1, %d]", what, text, slash + 1,
                       SD_SHARD_MAX_COUNT);
    char w[96];
    snprintf(w, sizeof w, "%s %s", what, text);
    if (shard_check(i, n, w, err)) return -1;
    s->index = (int)i;
    s->count = (int)n;
    snprintf(s->source, sizeof s->source, "%s", what);
    return 0;
}

/* Variable `name` as a whole number; 0 unset, 1 set, -1 with err when set but not a number. */
static int env_number(sd_getenv_fn get, void *user, const char *name, long long *v, sd_err *err)
{
    const char *t = get(user, name);
    if (!t) return 0;
    if (shard_number(t, v))
        return sd_errf(err, "%s=\"%.40s\" is not a whole number in [0, %d]", name, t, SD_SHARD_MAX_COUNT);
    return 1;
}

int sd_shard_from_env(sd_getenv_fn get, void *user, sd_shard *s, sd_err *err)
{
    memset(s, 0, sizeof *s);
    long long id, count, min = 0, max = 0, step = 1;
    int r;
    const char *hint = "pass --shard I/N with the count of the original array";
    if ((r = env_number(get, user, "SLURM_ARRAY_TASK_ID", &id, err)) != 0) {
        if (r < 0) return -1;
        if ((r = env_number(get, user, "SLURM_ARRAY_TASK_COUNT", &count, err)) <= 0)
            return r < 0 ? -1
                         : sd_errf(err, "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: %s", hint);
        if (env_number(get, user, "SLURM_ARRAY_TASK_MIN", &min, err) < 0) return -1;
        int have_max = env_number(get, user, "SLURM_ARRAY_TASK_MAX", &max, err);
        if (have_max < 0 || env_number(get, user, "SLURM_ARRAY_TASK_STEP", &step, err) < 0) return -1;
        /* Slurm documents these in its job array page (job_array.html). A single index submitted again on its
         * own (sbatch --array=2 after a failure) is a new array of one task, with MIN = MAX = 2: its position
         * in that array says nothing about the shard count of the original one. */
        if (count == 1)
            return sd_errf(err, "SLURM_ARRAY_TASK_ID=%lld in an array of one task (SLURM_ARRAY_TASK_COUNT=1): a "
                                "re-submitted index looks the same and cannot tell the shard count; %s", id, hint);
        if (step != 1)
            return sd_errf(err, "SLURM_ARRAY_TASK_STEP=%lld: a stepped array does not number its tasks 0..N-1; %s",
                           step, hint);
        if (have_max && max - min + 1 != count)
            return sd_errf(err, "the array %lld-%lld is not one range of SLURM_ARRAY_TASK_COUNT=%lld tasks; %s", min,
                           max, count, hint);
        if (id < min)
            return sd_errf(err, "SLURM_ARRAY_TASK_ID=%lld is below SLURM_ARRAY_TASK_MIN=%lld", id, min);
        char w[160];
        snprintf(w, sizeof w, "SLURM_ARRAY_TASK_ID=%lld, SLURM_ARRAY_TASK_MIN=%lld, SLURM_ARRAY_TASK_COUNT=%lld", id,
                 min, count);
        if (shard_check(id - min, count, w, err)) return -1;
        s->index = (int)(id - min);
        s->count = (int)count;
        snprintf(s->source, sizeof s->source, "%s", w);
        return 1;
    }
    static const char *const pairs[][3] = {
        {"JOB_COMPLETION_INDEX", "SDGEN_SHARD_COUNT",
         "a Kubernetes Indexed Job does not expose its completions: set SDGEN_SHARD_COUNT to spec.completions"},
        {"AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE", "pass --shard I/N"},
    };
    for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
        if ((r = env_number(get, user, pairs[p][0], &id, err)) == 0) continue;
        if (r < 0) return -1;
        if ((r = env_number(get, user, pairs[p][1], &count, err)) <= 0)
            return r < 0 ? -1 : sd_errf(err, "%s is set but %s is not (%s)", pairs[p][0], pairs[p][1], pairs[p][2]);
        char w[160];
        snprintf(w, sizeof w, "%s=%lld, %s=%lld", pairs[p][0], id, pairs[p][1], count);
        if (shard_check(id, count, w, err)) return -1;
        s->index = (int)id;
        s->count = (int)count;
        snprintf(s->source, sizeof s->source, "%s", w);
        return 1;
    }
    return 0;
}

/* ---- flat JSON objects ---- */

void sd_json_fields_free(sd_json_field *f, int n)
{
    for (int i = 0; i < n; i++) {
        free(f[i].key);
        free(f[i].value);
        f[i].key = f[i].value = NULL;
    }
}

static int flat_object(jp *j, sd_json_field *f, int max, int *nf)
{
    jws(j);
    if (j->i >= j->n || j->s[j->i] != '{') return jfail(j, "not a JSON object (a line must start with '{')");
    j->i++;
    jws(j);
    if (j->i < j->n && j->s[j->i] == '}') {
        j->i++;
    } else {
        for (;;) {
            jws(j);
            if (j->i >= j->n || j->s[j->i] != '"') return jfail(j, "object key must be a string (column %zu)", j->i + 1);
            if (*nf >= max) return jfail(j, "too many keys (max %d)", max);
            sd_json_field *x = &f[*nf];
            memset(x, 0, sizeof *x);
            (*nf)++;
            if (jstring(j, &x->key)) return -1;
            for (int k = 0; k < *nf - 1; k++)
                if (!strcmp(f[k].key, x->key)) return jfail(j, "duplicate key \"%.60s\"", x->key);
            jws(j);
            if (j->i >= j->n || j->s[j->i] != ':') return jfail(j, "':' expected (column %zu)", j->i + 1);
            j->i++;
            jws(j);
            if (j->i >= j->n) return jfail(j, "value expected for \"%.60s\"", x->key);
            char c = j->s[j->i];
            if (c == '"') {
                x->type = SD_JSON_STRING;
                if (jstring(j, &x->value)) return -1;
            } else if (c == 't' || c == 'f' || c == 'n') {
                x->type = c == 't' ? SD_JSON_TRUE : c == 'f' ? SD_JSON_FALSE : SD_JSON_NULL;
                if (jliteral(j, c == 't' ? "true" : c == 'f' ? "false" : "null")) return -1;
            } else if (c == '{' || c == '[') {
                return jfail(j, "\"%.60s\": nested value (column %zu)", x->key, j->i + 1);
            } else {
                size_t a, b;
                int is_int;
                if (c != '-' && (c < '0' || c > '9'))
                    return jfail(j, "\"%.60s\": invalid JSON value (column %zu)", x->key, j->i + 1);
                if (jnumber(j, &a, &b, &is_int)) return -1;
                x->type = SD_JSON_NUMBER;
                if (!(x->value = dupn(j->s + a, b - a))) return jfail(j, "out of memory");
            }
            jws(j);
            if (j->i < j->n && j->s[j->i] == ',') { j->i++; continue; }
            if (j->i < j->n && j->s[j->i] == '}') { j->i++; break; }
            return jfail(j, "',' or '}' expected (column %zu)", j->i + 1);
        }
    }
    jws(j);
    if (j->i < j->n) return jfail(j, "unexpected text after the object (column %zu)", j->i + 1);
    return 0;
}

int sd_json_flat_parse(const char *s, size_t n, sd_json_field *f, int max, char *msg, size_t msg_n)
{
    if (msg_n) msg[0] = 0;
    if (memchr(s, 0, n)) {
        snprintf(msg, msg_n, "contains a NUL byte");
        return -1;
    }
    for (size_t i = 0; i < n;) {
        int l = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (!l) {
            snprintf(msg, msg_n, "not valid UTF-8 (byte %zu)", i + 1);
            return -1;
        }
        i += (size_t)l;
    }
    jp j = {s, n, 0, {0}};
    int nf = 0;
    if (flat_object(&j, f, max, &nf)) {
        snprintf(msg, msg_n, "%s", j.msg);
        sd_json_fields_free(f, nf);
        return -1;
    }
    return nf;
}
