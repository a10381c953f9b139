/* serve_request.c — `sdgen serve` request bodies: JSON -> a validated job (serve.h), base64, error bodies.
 *
 * Field names, defaults and meanings follow AUTOMATIC1111's web API (modules/api/models.py builds the request
 * models from modules/processing.py StableDiffusionProcessing: prompt "", negative_prompt "", seed -1,
 * sampler_name/sampler_index "Euler", scheduler None (= "Automatic"), batch_size 1, n_iter 1, steps 50,
 * cfg_scale 7.0, width/height 512, send_images true, save_images false; img2img adds init_images and
 * denoising_strength 0.75) and OpenAI's images API (prompt, n, size "WxH", response_format). Unknown fields
 * are ignored, as pydantic does for A1111. Where sdgen differs it is on purpose and listed in
 * docs/SERVER.md: width/height default to the model's own size, the rng default is the CLI's ("CPU"), and
 * fields asking for a feature sdgen does not have (hires fix, face restoration, variation seeds, ...) are
 * refused with 422 instead of being silently ignored, so that an image never claims settings it was not
 * made with.
 *
 * Every number goes through the command line's range table (options.c) with its strict parser, so
 * `"steps": 0` and `--steps 0` are refused by the same check with the same bounds.
 */
#include "serve.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdgen/image.h"
#include "sdgen/options.h"
#include "sdgen/params.h"
#include "sdgen/rng.h"
#include "sdgen/sched.h"
#include "sdgen/unet.h"

/* ---- UTF-8 ---- */

size_t sv_utf8_bad(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (s[i]) {
        unsigned c = s[i], lo = 0x80, hi = 0xBF;
        int n;
        if (c < 0x80) n = 0;
        else if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c == 0xE0) n = 2, lo = 0xA0;
        else if (c == 0xED) n = 2, hi = 0x9F; /* no UTF-16 surrogates (RFC 3629 §3) */
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

/* ---- base64 (RFC 4648 §4) ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *sv_base64_encode(const unsigned char *d, size_t n, size_t *out_len)
{
    if (n > (SIZE_MAX - 1) / 4 * 3 - 3) return NULL;
    size_t len = (n + 2) / 3 * 4;
    char *o = malloc(len + 1);
    if (!o) return NULL;
    size_t k = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        o[k++] = B64[v >> 18];
        o[k++] = B64[(v >> 12) & 63];
        o[k++] = B64[(v >> 6) & 63];
        o[k++] = B64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0);
        o[k++] = B64[v >> 18];
        o[k++] = B64[(v >> 12) & 63];
        o[k++] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
        o[k++] = '=';
    }
    o[k] = 0;
    if (out_len) *out_len = k;
    return o;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int sv_base64_decode(const char *t, size_t n, const char *what, unsigned char **out, size_t *out_len, sd_err *err)
{
    *out = NULL;
    *out_len = 0;
    unsigned char *o = malloc(n / 4 * 3 + 3);
    if (!o) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory decoding base64", what);
    size_t k = 0, pad = 0, digits = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad) {
            free(o);
            if (v >= 0) return sd_errf(err, "%s: invalid base64: data after '=' padding (offset %zu)", what, i);
            return sd_errf(err, "%s: invalid base64: byte 0x%02x at offset %zu is not in the base64 alphabet", what,
                           c, i);
        }
        acc = acc << 6 | (uint32_t)v;
        if (++digits % 4 == 0) {
            o[k++] = (unsigned char)(acc >> 16);
            o[k++] = (unsigned char)(acc >> 8);
            o[k++] = (unsigned char)acc;
            acc = 0;
        }
    }
    size_t rem = digits % 4;
    if (rem == 1 || pad > 2 || (pad && (rem + pad) % 4 != 0)) {
        free(o);
        return sd_errf(err, "%s: invalid base64: %zu digits%s cannot be whole bytes", what, digits,
                       pad ? " with that padding" : "");
    }
    if (rem == 2) o[k++] = (unsigned char)(acc >> 4);
    if (rem == 3) {
        o[k++] = (unsigned char)(acc >> 10);
        o[k++] = (unsigned char)(acc >> 2);
    }
    *out = o;
    *out_len = k;
    return 0;
}

int sv_decode_image_field(const char *text, const char *what, unsigned char **out, size_t *out_len, sd_err *err)
{
    /* A1111 decode_base64_to_image: "data:image/png;base64,<data>" -> <data>. */
    if (!strncmp(text, "data:", 5)) {
        const char *comma = strchr(text, ',');
        if (!comma) return sd_errf(err, "%s: a data: URL without a ',' before its data", what);
        text = comma + 1;
    }
    if (!*text) return sd_errf(err, "%s: empty image", what);
    return sv_base64_decode(text, strlen(text), what, out, out_len, err);
}

/* ---- JSON ---- */

/* cJSON 1.7 records where the last parse failed in a global (cJSON_GetErrorPtr) that every parse writes, so
 * the connection threads take turns parsing. Parsing is fast next to generating; the position is taken while
 * the lock is held. *err_off receives the offset of the failure (0 when unknown). */
static pthread_mutex_t g_json_mu = PTHREAD_MUTEX_INITIALIZER;

static cJSON *json_parse(const char *body, size_t n, size_t *err_off)
{
    pthread_mutex_lock(&g_json_mu);
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, n, &end, 0);
    pthread_mutex_unlock(&g_json_mu);
    if (err_off) *err_off = !o && end && end >= body && end <= body + n ? (size_t)(end - body) : 0;
    return o;
}

int sv_json_precheck(const char *s, size_t n, int max_depth, sd_err *err)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!c) return sd_errf(err, "the body holds a NUL byte at offset %zu", i);
        if (in_str) {
            if (c == '\\') {
                /* \u0000 would end the C string that cJSON gives back: the text after it would vanish */
                if (i + 5 < n && s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4))
                    return sd_errf(err, "a JSON string holds \\u0000 (offset %zu): NUL characters are not accepted", i);
                i++;
            } else if (c == '"') {
                in_str = 0;
            }
            continue;
        }
        if (c == '"') in_str = 1;
        else if (c == '{' || c == '[') {
            if (++depth > max_depth) return sd_errf(err, "JSON nested deeper than %d levels (offset %zu)", max_depth, i);
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 0;
}

char *sv_error_json(int status, const char *raw_detail, int openai)
{
    char detail[1100];
    sd_escape_text(raw_detail, detail, sizeof detail);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (openai) {
        /* https://platform.openai.com/docs/guides/error-codes: {"error": {"message", "type", "param", "code"}} */
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        if (e) {
            cJSON_AddStringToObject(e, "message", detail);
            cJSON_AddStringToObject(e, "type", status == 401 ? "authentication_error"
                                               : status >= 500 ? "server_error"
                                                               : "invalid_request_error");
            cJSON_AddNullToObject(e, "param");
            cJSON_AddNullToObject(e, "code");
        }
    } else {
        char errors[1200];
        snprintf(errors, sizeof errors, "%d: %s", status, detail);
        cJSON_AddStringToObject(o, "error", "HTTPException");
        cJSON_AddStringToObject(o, "detail", detail);
        cJSON_AddStringToObject(o, "body", "");
        cJSON_AddStringToObject(o, "errors", errors);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* A client's text inside a message: at most 64 bytes, control characters and bad UTF-8 escaped, so that the
 * message stays one line (options.h sd_escape_text). */
static const char *esc(const char *text, char *buf, size_t n)
{
    char cut[65];
    snprintf(cut, sizeof cut, "%s", text);
    sd_escape_text(cut, buf, n);
    return buf;
}

/* Library messages may quote bytes of the input (a PNG chunk's name): escaped in place, as the CLI does
 * when it prints them (sd_cli_vsay). Returns -1 for `return one_line(err);`. */
static int one_line(sd_err *err)
{
    char buf[sizeof err->msg];
    sd_escape_text(err->msg, buf, sizeof buf);
    memcpy(err->msg, buf, sizeof buf);
    return -1;
}

/* ---- field readers: each returns 0 absent (or null), 1 present and valid, -1 invalid (err set) ---- */

static const cJSON *field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

/* A number or a numeric string as text for the strict parsers (a JSON number's double printed so that it
 * reads back as the same double). */
static int num_text(const cJSON *v, char *buf, size_t n, const char **text)
{
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 1e18) snprintf(buf, n, "%.0f", d);
        else snprintf(buf, n, "%.17g", d);
        *text = buf;
        return 0;
    }
    /* a numeric string: only the characters numbers are made of (so that a message quoting it is one line) */
    if (cJSON_IsString(v) && strlen(v->valuestring) < 64 && !v->valuestring[strspn(v->valuestring, "0123456789+-.eE")]) {
        *text = v->valuestring;
        return 0;
    }
    return -1;
}

/* A number checked against the command line's table entry `table` (options.c), named `key` in messages. */
static int get_num(const cJSON *o, const char *key, const char *table, sd_num *out, sd_err *err)
{
    const cJSON *v = field(o, key);
    if (!v) return 0;
    const sd_num_opt *t = sd_num_opt_by_key(table);
    char name[80], buf[64];
    const char *text;
    snprintf(name, sizeof name, "\"%s\"", key);
    if (!t) return sd_errf(err, "%s: no range defined", name);
    if (num_text(v, buf, sizeof buf, &text)) return sd_errf(err, "%s must be a number, got %s", name, type_name(v));
    return sd_num_parse(t, name, text, out, err) ? -1 : 1;
}

static int get_real(const cJSON *o, const char *key, double lo, double hi, double *out, sd_err *err)
{
    const cJSON *v = field(o, key);
    if (!v) return 0;
    char buf[64];
    const char *text;
    double d;
    if (num_text(v, buf, sizeof buf, &text)) return sd_errf(err, "\"%s\" must be a number, got %s", key, type_name(v));
    if (sd_parse_real(text, &d) || !(d >= lo && d <= hi))
        return sd_errf(err, "\"%s\" expects a number in [%g, %g], got \"%.64s\"", key, lo, hi, text);
    *out = d;
    return 1;
}

static int get_bool(const cJSON *o, const char *key, int *out, sd_err *err)
{
    const cJSON *v = field(o, key);
    if (!v) return 0;
    if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) *out = v->valuedouble == 1;
    else return sd_errf(err, "\"%s\" must be true or false, got %s", key, type_name(v));
    return 1;
}

/* A text field: a string of valid UTF-8 of at most max bytes. */
static int get_text(const cJSON *o, const char *key, size_t max, const char **out, sd_err *err)
{
    const cJSON *v = field(o, key);
    if (!v) return 0;
    if (!cJSON_IsString(v)) return sd_errf(err, "\"%s\" must be a string, got %s", key, type_name(v));
    size_t len = strlen(v->valuestring), bad;
    if (len > max) return sd_errf(err, "\"%s\" is %zu bytes long; at most %zu are accepted", key, len, max);
    if ((bad = sv_utf8_bad(v->valuestring))) return sd_errf(err, "\"%s\" is not valid UTF-8 (byte %zu)", key, bad);
    *out = v->valuestring;
    return 1;
}

/* A1111 seeds: -1 (or "", or absent) draws a random one (modules/processing.py get_fixed_seed); otherwise
 * 0 .. 2^64-1 as the CLI's --seed. */
static int get_seed(const cJSON *o, const char *key, int *random, uint64_t *seed, sd_err *err)
{
    const cJSON *v = field(o, key);
    *random = 1;
    if (!v) return 0;
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == -1) return 1;
        if (d >= 0 && d == floor(d) && d <= SV_SEED_EXACT_MAX) {
            *random = 0;
            *seed = (uint64_t)d;
            return 1;
        }
        return sd_errf(err,
                       "\"%s\" expects an integer in [0, 2^64-1] or -1 for random (above 2^53 give it as a string "
                       "of digits to keep it exact), got %.17g",
                       key, d);
    }
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        if (!*s || !strcmp(s, "-1")) return 1;
        if (sd_parse_u64(s, seed) == 0) {
            *random = 0;
            return 1;
        }
        char e[300];
        return sd_errf(err, "\"%s\" expects an integer in [0, 2^64-1] or -1 for random, got \"%s\"", key,
                       esc(s, e, sizeof e));
    }
    return sd_errf(err, "\"%s\" must be an integer, got %s", key, type_name(v));
}

/* A1111 names a sampler by its display name ("Euler a", "DPM++ 2M", old "DPM++ 2M Karras"); sdgen's own
 * names (euler_a, dpmpp_2m) are accepted too (sd_sampler_parse). The scheduler label (A1111
 * modules/sd_schedulers.py: name or label, "automatic"/"Automatic", "karras"/"Karras") overrides a schedule
 * folded into the name unless it is Automatic (sd_samplers.get_sampler_and_scheduler). */
static int resolve_sampler(const char *name, const char *sched_key, const char *sched, int *sampler, int *schedule,
                           sd_err *err)
{
    sd_sampler s;
    sd_schedule implied = SD_SCHEDULE_DEFAULT, explicit_s = SD_SCHEDULE_DEFAULT;
    char e[300];
    if (sd_sampler_parse(name, &s, &implied))
        return sd_errf(err, "Sampler not found: \"%s\" (GET /sdapi/v1/samplers lists them; \"... Karras\" for "
                            "the Karras schedule)",
                       esc(name, e, sizeof e));
    if (sched && *sched && sd_schedule_parse(sched, &explicit_s))
        return sd_errf(err, "\"%s\": unknown scheduler \"%s\" (Automatic, Karras)", sched_key, esc(sched, e, sizeof e));
    *sampler = s;
    *schedule = explicit_s != SD_SCHEDULE_DEFAULT ? explicit_s : implied;
    if (*schedule == SD_SCHEDULE_KARRAS && !sd_sampler_has_karras(s))
        return sd_errf(err, "the Karras schedule does not apply to %s (its diffusers scheduler has no Karras "
                            "sigmas; use a sigma sampler such as Euler, DPM++ 2M, Heun, LMS, DPM2 or UniPC)",
                       sd_sampler_a1111_name(s));
    return 0;
}

/* Fields that ask for a feature sdgen lacks. A value other than the "off" one is refused (422): silently
 * ignoring it would return an image that does not match its request. */
typedef enum { OFF_FALSE, OFF_ZERO, OFF_NOT_POSITIVE, OFF_EMPTY } off_kind;
static const struct {
    const char *key;
    off_kind off;
    const char *what;
} UNSUPPORTED[] = {
    {"enable_hr", OFF_FALSE, "hires fix"},
    {"restore_faces", OFF_FALSE, "face restoration"},
    {"tiling", OFF_FALSE, "tiling"},
    {"subseed_strength", OFF_ZERO, "variation seeds"},
    {"seed_resize_from_h", OFF_NOT_POSITIVE, "seed resize"},
    {"seed_resize_from_w", OFF_NOT_POSITIVE, "seed resize"},
    {"styles", OFF_EMPTY, "prompt styles"},
    {"script_name", OFF_EMPTY, "scripts"},
    {"alwayson_scripts", OFF_EMPTY, "extension scripts"},
    {"refiner_checkpoint", OFF_EMPTY, "a refiner model"},
    {"infotext", OFF_EMPTY, "settings from an infotext"},
    {"mask", OFF_EMPTY, "inpainting"},
};

static int check_unsupported(const cJSON *o, sd_err *err)
{
    for (size_t i = 0; i < sizeof UNSUPPORTED / sizeof *UNSUPPORTED; i++) {
        const cJSON *v = field(o, UNSUPPORTED[i].key);
        if (!v) continue;
        int on;
        switch (UNSUPPORTED[i].off) {
        case OFF_FALSE: on = !(cJSON_IsFalse(v) || (cJSON_IsNumber(v) && v->valuedouble == 0)); break;
        case OFF_ZERO: on = !(cJSON_IsNumber(v) && v->valuedouble == 0); break;
        case OFF_NOT_POSITIVE: on = !(cJSON_IsNumber(v) && v->valuedouble <= 0); break;
        default:
            on = !((cJSON_IsString(v) && !*v->valuestring) || ((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child) ||
                   cJSON_IsFalse(v));
            break;
        }
        if (on)
            return sd_errf(err, "\"%s\": %s is not supported by sdgen serve (leave it out or at its default)",
                           UNSUPPORTED[i].key, UNSUPPORTED[i].what);
    }
    return 0;
}

static int model_matches(const sv_parse_ctx *c, const char *name)
{
    for (int i = 0; i < 3; i++)
        if (c->model_names[i] && !strcmp(c->model_names[i], name)) return 1;
    return 0;
}

/* The A1111 settings a request may override (override_settings) or /options may set. */
static int apply_settings(const cJSON *o, const char *where, const sv_parse_ctx *c, int *clip_skip, int *rng,
                          sd_err *err)
{
    const cJSON *v;
    sd_num x;
    int r = get_num(o, "CLIP_stop_at_last_layers", "clip_skip", &x, err);
    if (r < 0) return sd_err_prefix(err, "%s", where);
    if (r > 0) {
        if (x.i > c->max_clip_skip)
            return sd_errf(err, "%s: \"CLIP_stop_at_last_layers\" must be between 1 and %d for this model (got %lld)",
                           where, c->max_clip_skip, x.i);
        *clip_skip = (int)x.i;
    }
    if ((v = field(o, "sd_model_checkpoint"))) {
        if (!cJSON_IsString(v)) return sd_errf(err, "%s: \"sd_model_checkpoint\" must be a string", where);
        char e[300];
        if (!model_matches(c, v->valuestring))
            return sd_errf(err, "%s: model \"%s\" not found: this server has one model, \"%s\"", where,
                           esc(v->valuestring, e, sizeof e), c->model_names[0]);
    }
    if ((v = field(o, "randn_source"))) {
        /* A1111 shared options randn_source: "GPU" (Philox, torch on CUDA), "CPU", "NV" */
        if (cJSON_IsString(v) && !strcmp(v->valuestring, "CPU")) *rng = SD_RNG_CPU;
        else if (cJSON_IsString(v) && !strcmp(v->valuestring, "GPU")) *rng = SD_RNG_CUDA;
        else return sd_errf(err, "%s: \"randn_source\" must be \"CPU\" or \"GPU\" (\"NV\" is not supported)", where);
    }
    if ((v = field(o, "eta_noise_seed_delta")) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
        return sd_errf(err, "%s: \"eta_noise_seed_delta\" other than 0 is not supported", where);
    if ((v = field(o, "samples_format")) && !(cJSON_IsString(v) && !strcmp(v->valuestring, "png")))
        return sd_errf(err, "%s: \"samples_format\" must be \"png\"", where);
    return 0;
}

void sv_spec_free(sv_spec *s)
{
    if (!s) return;
    free(s->prompt);
    free(s->negative_prompt);
    free(s->init_data);
    free(s->init_b64);
    memset(s, 0, sizeof *s);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* img2img's init image: exactly one, base64 (data URL or plain), a PNG or JPEG within the image caps. */
static int parse_init(const cJSON *o, sv_spec *s, sd_err *err)
{
    const cJSON *arr = field(o, "init_images");
    if (!arr) return sd_errf(err, "\"init_images\" is required for image-to-image (a list with one base64 image)");
    if (!cJSON_IsArray(arr)) return sd_errf(err, "\"init_images\" must be a list of base64 images, got %s", type_name(arr));
    int n = cJSON_GetArraySize(arr);
    if (n != 1) return sd_errf(err, "\"init_images\" must hold exactly one image (got %d)", n);
    const cJSON *im = cJSON_GetArrayItem(arr, 0);
    if (!cJSON_IsString(im)) return sd_errf(err, "\"init_images[0]\" must be a base64 string, got %s", type_name(im));
    if (sv_decode_image_field(im->valuestring, "\"init_images[0]\"", &s->init_data, &s->init_len, err)) return -1;
    /* Decoded once here so that a broken image is a 422 now and not after the queue; the worker decodes
     * the bytes again (the queue holds the compressed file, not the pixels). */
    sd_image probe = {0};
    if (sd_image_load_mem(&probe, s->init_data, s->init_len, "\"init_images[0]\"", err)) return one_line(err);
    sd_image_free(&probe);
    /* kept only when it is to be echoed (A1111 include_init_images) */
    if (s->include_init_images && !(s->init_b64 = dup_str(im->valuestring)))
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    return 0;
}

/* OpenAI "size": "WxH". */
static int parse_size(const cJSON *o, sv_spec *s, sd_err *err)
{
    const cJSON *v = field(o, "size");
    if (!v) return 0;
    if (!cJSON_IsString(v)) return sd_errf(err, "\"size\" must be a string \"WIDTHxHEIGHT\", got %s", type_name(v));
    char buf[64];
    snprintf(buf, sizeof buf, "%s", v->valuestring);
    char *x = strchr(buf, 'x');
    char e[300];
    if (strlen(v->valuestring) >= sizeof buf || !x || buf[strspn(buf, "0123456789x")])
        return sd_errf(err, "\"size\" must look like \"512x512\", got \"%s\"", esc(v->valuestring, e, sizeof e));
    *x = 0;
    sd_num w, h;
    if (sd_num_parse(sd_num_opt_by_key("width"), "\"size\" width", buf, &w, err) ||
        sd_num_parse(sd_num_opt_by_key("height"), "\"size\" height", x + 1, &h, err))
        return -1;
    s->width = (int)w.i;
    s->height = (int)h.i;
    return 0;
}

/* SDXL micro-conditioning pairs (see sv_spec): absent or null = the default; else a list of two integers in
 * 0..16384, the range of the CLI's --original-size, --crop-top-left and --target-size. */
static int parse_micro(const cJSON *o, sv_spec *s, sd_err *err)
{
    static const char *const keys[3] = {"original_size", "crops_coords_top_left", "target_size"};
    int *const dst[3] = {s->original_size, s->crop_top_left, s->target_size};
    for (int k = 0; k < 3; k++) {
        const cJSON *v = field(o, keys[k]);
        if (!v || cJSON_IsNull(v)) continue;
        const char *shape = k == 1 ? "[top, left]" : "[height, width]";
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
            return sd_errf(err, "\"%s\" must be %s: a list of two integers 0..16384, got %s", keys[k], shape,
                           cJSON_IsArray(v) ? "a list of another length" : type_name(v));
        for (int i = 0; i < 2; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            /* range first: converting an out-of-range double to int is undefined behaviour */
            if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble <= 16384) ||
                e->valuedouble != (double)(int)e->valuedouble)
                return sd_errf(err, "\"%s\" must be %s: two integers 0..16384 (item %d is not)", keys[k], shape, i);
            dst[k][i] = (int)e->valuedouble;
        }
        s->micro_given |= 1 << k;
    }
    return 0;
}

int sv_parse_request(const char *body, size_t n, sv_kind kind, const sv_parse_ctx *c, sv_spec *s, int *status,
                     sd_err *err)
{
    memset(s, 0, sizeof *s);
    *status = 400;
    if (sv_json_precheck(body, n, SV_MAX_JSON_DEPTH, err)) return -1;
    size_t off;
    cJSON *o = json_parse(body, n, &off);
    if (!o) return sd_errf(err, "the body is not valid JSON (near offset %zu)", off);
    *status = 422;
    int rc = -1;
    sd_num x;
    int r;
    const char *text = NULL;
    s->kind = kind;
    if (!cJSON_IsObject(o)) {
        sd_errf(err, "the body must be a JSON object, got %s", type_name(o));
        goto out;
    }
    const int openai = kind == SV_OPENAI;
    /* defaults: A1111's (modules/processing.py), or the CLI's for the OpenAI endpoint, which has none */
    s->steps = openai ? 20 : 50;
    s->cfg_requested = openai ? 7.5 : 7.0;
    s->batch_size = s->n_iter = 1;
    s->strength = 0.75;
    s->denoising_echo = kind == SV_IMG2IMG ? 0.75 : 0;
    s->clip_skip = c->def_clip_skip;
    s->rng_kind = c->def_rng;
    s->send_images = 1;
    s->sampler = openai ? SD_SAMPLER_EULER_A : SD_SAMPLER_EULER;
    s->schedule = SD_SCHEDULE_DEFAULT;
    s->random_seed = 1;
    if (kind != SV_IMG2IMG) {
        s->width = c->def_width;
        s->height = c->def_height;
    }

    if (!openai && check_unsupported(o, err)) goto out;
    if ((r = get_text(o, "prompt", SV_MAX_PROMPT, &text, err)) < 0) goto out;
    if (openai && (r == 0 || !*text)) {
        sd_errf(err, "\"prompt\" is required");
        goto out;
    }
    if (!(s->prompt = dup_str(r ? text : ""))) goto oom;
    text = NULL;
    if (get_text(o, "negative_prompt", SV_MAX_PROMPT, &text, err) < 0) goto out;
    if (!(s->negative_prompt = dup_str(text ? text : ""))) goto oom;
    if (get_seed(o, "seed", &s->random_seed, &s->seed, err) < 0) goto out;
    if ((r = get_num(o, "steps", "steps", &x, err)) < 0) goto out;
    if (r) s->steps = (int)x.i;
    if ((r = get_num(o, "cfg_scale", "cfg_scale", &x, err)) < 0) goto out;
    if (r) s->cfg_requested = x.d;
    s->cfg_scale = (float)s->cfg_requested;

    /* size */
    if (openai) {
        if (parse_size(o, s, err)) goto out;
    } else {
        int hw = 0, hh = 0;
        if ((hw = get_num(o, "width", "width", &x, err)) < 0) goto out;
        if (hw) s->width = (int)x.i;
        if ((hh = get_num(o, "height", "height", &x, err)) < 0) goto out;
        if (hh) s->height = (int)x.i;
        if (kind == SV_IMG2IMG && (hw || hh)) { /* one of the two: the other is the model's (as the library API) */
            if (!hw) s->width = c->def_width;
            if (!hh) s->height = c->def_height;
        }
    }
    if (s->width / 8 > SD_UNET_MAX_SIDE || s->height / 8 > SD_UNET_MAX_SIDE) {
        sd_errf(err, "width and height must be at most %d (got %dx%d)", 8 * SD_UNET_MAX_SIDE, s->width, s->height);
        goto out;
    }

    /* sampler and schedule */
    {
        const char *name = NULL, *sched = NULL;
        const char *skey = openai ? "sampler" : "sampler_name";
        if (get_text(o, skey, 64, &name, err) < 0) goto out;
        if (!openai && (!name || !*name) && get_text(o, "sampler_index", 64, &name, err) < 0) goto out;
        if (get_text(o, "scheduler", 64, &sched, err) < 0) goto out;
        if ((name && *name) || sched) {
            const char *dflt = openai ? "euler_a" : "Euler";
            if (resolve_sampler(name && *name ? name : dflt, "scheduler", sched, &s->sampler, &s->schedule, err))
                goto out;
        }
    }

    /* A1111's "eta" is DDIM's η there and the ancestral samplers' noise multiplier (eta_ancestral) for the
     * others; clients such as webuiapi send 1.0 by default. sdgen has η for ddim only: it is applied to ddim
     * and accepted but has no effect with any other sampler (docs/SERVER.md). */
    s->eta = -1;
    if ((r = get_num(o, "eta", "eta", &x, err)) < 0) goto out;
    if (r) s->eta = x.d;

    /* how many images */
    if (openai) {
        const cJSON *v = field(o, "n");
        if (v) {
            char buf[64];
            long long nn;
            if (num_text(v, buf, sizeof buf, &text) || sd_parse_ll(text, 0, &nn) || nn < 1 || nn > SV_OPENAI_MAX_N) {
                sd_errf(err, "\"n\" expects an integer in [1, %d]", SV_OPENAI_MAX_N);
                goto out;
            }
            s->batch_size = (int)nn;
        }
    } else {
        if ((r = get_num(o, "batch_size", "batch_count", &x, err)) < 0) goto out;
        if (r) s->batch_size = (int)x.i;
        if ((r = get_num(o, "n_iter", "batch_count", &x, err)) < 0) goto out;
        if (r) s->n_iter = (int)x.i;
    }
    if ((long long)s->batch_size * s->n_iter > c->max_images) {
        sd_errf(err, "%d images requested (batch_size %d x n_iter %d); this server makes at most %d per request "
                     "(--max-images)",
                s->batch_size * s->n_iter, s->batch_size, s->n_iter, c->max_images);
        goto out;
    }

    /* image-to-image */
    if (kind == SV_IMG2IMG) {
        if (!c->can_img2img) {
            sd_errf(err, "image-to-image needs a VAE encoder, which this model lacks");
            goto out;
        }
        if ((r = get_num(o, "denoising_strength", "strength", &x, err)) < 0) goto out;
        if (r) s->strength = s->denoising_echo = x.d;
        if ((int)((double)s->steps * s->strength) < 1) { /* diffusers Img2Img get_timesteps: no step would run */
            sd_errf(err, "denoising_strength %g with %d steps runs no denoising step (int(steps*strength) = 0)",
                    s->strength, s->steps);
            goto out;
        }
        const cJSON *v = field(o, "resize_mode");
        if (v && !(cJSON_IsNumber(v) && v->valuedouble == 0)) {
            sd_errf(err, "\"resize_mode\": only 0 (just resize) is supported");
            goto out;
        }
        if (get_bool(o, "include_init_images", &s->include_init_images, err) < 0) goto out;
        if (parse_init(o, s, err)) goto out;
    } else if (!openai && get_real(o, "denoising_strength", 0, 1, &s->denoising_echo, err) < 0) {
        goto out;
    }

    /* settings */
    if (!openai) {
        const cJSON *ov = field(o, "override_settings");
        if (ov && !cJSON_IsObject(ov)) {
            sd_errf(err, "\"override_settings\" must be an object, got %s", type_name(ov));
            goto out;
        }
        if (ov && apply_settings(ov, "override_settings", c, &s->clip_skip, &s->rng_kind, err)) goto out;
        if (parse_micro(o, s, err)) goto out;
        if (get_bool(o, "send_images", &s->send_images, err) < 0) goto out;
        if (get_bool(o, "save_images", &s->save_images, err) < 0) goto out;
        if (s->save_images && !c->save_enabled) {
            sd_errf(err, "\"save_images\": saving on the server is off (start sdgen serve with --save-dir DIR)");
            goto out;
        }
    } else {
        const cJSON *v = field(o, "response_format");
        if (v && !(cJSON_IsString(v) && (!strcmp(v->valuestring, "b64_json") || !strcmp(v->valuestring, "url")))) {
            sd_errf(err, "\"response_format\" must be \"b64_json\" or \"url\"");
            goto out;
        }
        s->url_format = v && !strcmp(v->valuestring, "url");
        v = field(o, "output_format");
        if (v && !(cJSON_IsString(v) && !strcmp(v->valuestring, "png"))) {
            sd_errf(err, "\"output_format\": only \"png\" is supported");
            goto out;
        }
    }
    rc = 0;
    goto out;
oom:
    sd_errcf(err, SD_ERR_NOMEM, "out of memory parsing the request");
    *status = 503;
out:
    cJSON_Delete(o);
    if (rc) sv_spec_free(s);
    return rc;
}

/* ---- the "parameters" echo ---- */

char *sv_spec_echo_json(const sv_spec *s)
{
    cJSON *o = sv_spec_echo(s);
    char *out = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return out;
}

struct cJSON *sv_spec_echo(const sv_spec *s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "prompt", s->prompt);
    cJSON_AddStringToObject(o, "negative_prompt", s->negative_prompt);
    cJSON_AddNullToObject(o, "styles");
    if (s->random_seed) {
        cJSON_AddNumberToObject(o, "seed", -1);
    } else if ((double)s->seed <= SV_SEED_EXACT_MAX) {
        cJSON_AddNumberToObject(o, "seed", (double)s->seed);
    } else {
        char b[32];
        snprintf(b, sizeof b, "%llu", (unsigned long long)s->seed);
        cJSON_AddRawToObject(o, "seed", b); /* digits: exact, still a JSON number */
    }
    cJSON_AddNumberToObject(o, "subseed", -1);
    cJSON_AddNumberToObject(o, "subseed_strength", 0);
    cJSON_AddNumberToObject(o, "seed_resize_from_h", -1);
    cJSON_AddNumberToObject(o, "seed_resize_from_w", -1);
    cJSON_AddStringToObject(o, "sampler_name", sd_sampler_a1111_name((sd_sampler)s->sampler));
    cJSON_AddStringToObject(o, "scheduler", sd_schedule_a1111_name((sd_schedule)s->schedule));
    cJSON_AddNumberToObject(o, "batch_size", s->batch_size);
    cJSON_AddNumberToObject(o, "n_iter", s->n_iter);
    cJSON_AddNumberToObject(o, "steps", s->steps);
    cJSON_AddNumberToObject(o, "cfg_scale", s->cfg_requested);
    cJSON_AddNumberToObject(o, "width", s->width);
    cJSON_AddNumberToObject(o, "height", s->height);
    cJSON_AddFalseToObject(o, "restore_faces");
    cJSON_AddFalseToObject(o, "tiling");
    cJSON_AddFalseToObject(o, "do_not_save_samples");
    cJSON_AddFalseToObject(o, "do_not_save_grid");
    if (s->eta >= 0) cJSON_AddNumberToObject(o, "eta", s->eta);
    else cJSON_AddNullToObject(o, "eta");
    cJSON_AddNumberToObject(o, "denoising_strength", s->denoising_echo);
    cJSON *ov = cJSON_AddObjectToObject(o, "override_settings");
    if (ov) {
        cJSON_AddNumberToObject(ov, "CLIP_stop_at_last_layers", s->clip_skip);
        cJSON_AddStringToObject(ov, "randn_source", s->rng_kind == SD_RNG_CUDA ? "GPU" : "CPU");
    }
    cJSON_AddTrueToObject(o, "override_settings_restore_afterwards");
    cJSON_AddStringToObject(o, "sampler_index", sd_sampler_a1111_name((sd_sampler)s->sampler));
    cJSON_AddNullToObject(o, "script_name");
    cJSON_AddItemToObject(o, "script_args", cJSON_CreateArray());
    cJSON_AddBoolToObject(o, "send_images", s->send_images);
    cJSON_AddBoolToObject(o, "save_images", s->save_images);
    cJSON_AddItemToObject(o, "alwayson_scripts", cJSON_CreateObject());
    /* the SDXL micro-conditioning extension, echoed as given */
    static const char *const micro[3] = {"original_size", "crops_coords_top_left", "target_size"};
    const int *mv[3] = {s->original_size, s->crop_top_left, s->target_size};
    for (int k = 0; k < 3; k++)
        if (s->micro_given & (1 << k)) cJSON_AddItemToObject(o, micro[k], cJSON_CreateIntArray(mv[k], 2));
    if (s->kind == SV_IMG2IMG) {
        /* A1111 img2imgapi: the init images are echoed only with include_init_images */
        if (s->include_init_images) {
            cJSON *a = cJSON_AddArrayToObject(o, "init_images");
            if (a && s->init_b64) cJSON_AddItemToArray(a, cJSON_CreateString(s->init_b64));
        } else {
            cJSON_AddNullToObject(o, "init_images");
        }
        cJSON_AddNumberToObject(o, "resize_mode", 0);
        cJSON_AddNullToObject(o, "mask");
        cJSON_AddBoolToObject(o, "include_init_images", s->include_init_images);
    }
    return o;
}

/* ---- /sdapi/v1/png-info ---- */

char *sv_png_info(const char *body, size_t n, int *status, sd_err *err)
{
    *status = 400;
    if (sv_json_precheck(body, n, SV_MAX_JSON_DEPTH, err)) return NULL;
    cJSON *o = json_parse(body, n, NULL);
    if (!o) {
        sd_errf(err, "the body is not valid JSON");
        return NULL;
    }
    *status = 422;
    char *out = NULL, *text = NULL;
    unsigned char *png = NULL;
    size_t len = 0;
    cJSON *res = NULL;
    sd_gen_params gp;
    sd_params_init(&gp);
    const cJSON *im = cJSON_IsObject(o) ? field(o, "image") : NULL;
    if (!im || !cJSON_IsString(im)) {
        sd_errf(err, "\"image\" is required: a base64 PNG");
        goto done;
    }
    if (sv_decode_image_field(im->valuestring, "\"image\"", &png, &len, err)) goto done;
    static const unsigned char SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 8 && !memcmp(png, SIG, 8)) {
        if (sd_png_read_text_mem(png, len, "\"image\"", "parameters", &text, NULL, err)) {
            one_line(err);
            goto done;
        }
    } else {
        /* not a PNG: an image without a parameters chunk when it decodes (A1111 answers info "") */
        sd_image probe = {0};
        if (sd_image_load_mem(&probe, png, len, "\"image\"", err)) {
            one_line(err);
            goto done;
        }
        sd_image_free(&probe);
    }
    size_t bad;
    if (text && (bad = sv_utf8_bad(text))) {
        sd_errf(err, "\"image\": its parameters text is not valid UTF-8 (byte %zu)", bad);
        goto done;
    }
    res = cJSON_CreateObject();
    if (!res) goto oom;
    cJSON_AddStringToObject(res, "info", text ? text : "");
    cJSON_AddItemToObject(res, "items", cJSON_CreateObject());
    cJSON *params = cJSON_AddObjectToObject(res, "parameters");
    if (text && params) {
        /* A1111 parse_generation_parameters: Prompt, Negative prompt, then every "Key: value" pair (Size split
         * into Size-1 / Size-2), with its defaults for a few missing keys (sd_params_parse) */
        if (sd_params_parse(text, &gp, err)) {
            one_line(err);
            goto done;
        }
        cJSON_AddStringToObject(params, "Prompt", gp.prompt ? gp.prompt : "");
        cJSON_AddStringToObject(params, "Negative prompt", gp.negative_prompt ? gp.negative_prompt : "");
        for (int i = 0; i < gp.n_kv; i++)
            if (!cJSON_GetObjectItemCaseSensitive(params, gp.kv[i].key))
                cJSON_AddStringToObject(params, gp.kv[i].key, gp.kv[i].value);
    }
    out = cJSON_PrintUnformatted(res);
    if (!out) goto oom;
    *status = 200;
    goto done;
oom:
    sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    *status = 503;
done:
    sd_params_free(&gp);
    cJSON_Delete(res);
    cJSON_Delete(o);
    free(text);
    free(png);
    return out;
}

/* ---- POST /sdapi/v1/options ---- */

int sv_parse_options(const char *body, size_t n, const sv_parse_ctx *c, int *clip_skip, int *rng, int *status,
                     sd_err *err)
{
    *status = 400;
    if (sv_json_precheck(body, n, SV_MAX_JSON_DEPTH, err)) return -1;
    cJSON *o = json_parse(body, n, NULL);
    if (!o) return sd_errf(err, "the body is not valid JSON");
    *status = 422;
    int cs = *clip_skip, rk = *rng, rc = -1;
    if (!cJSON_IsObject(o)) sd_errf(err, "the body must be a JSON object of settings");
    else if (apply_settings(o, "options", c, &cs, &rk, err) == 0) rc = 0;
    cJSON_Delete(o);
    if (rc == 0) {
        *clip_skip = cs;
        *rng = rk;
    }
    return rc;
}
