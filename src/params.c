/* params.c — A1111 infotext writer and parser (params.h). */
#include "sdgen/params.h"

#include "sdgen/json.h"
#include "sdgen/sched.h"
#include "sdgen/utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SDGEN_VERSION
#define SDGEN_VERSION "0.0.0"
#endif

/* ---- growable string ---- */
typedef struct { char *p; size_t n, cap; int oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* ---- numbers ---- */

void sd_params_fmt_number(double v, char *buf, size_t n)
{
    if (isnan(v)) { snprintf(buf, n, "nan"); return; }
    if (isinf(v)) { snprintf(buf, n, v < 0 ? "-inf" : "inf"); return; }
    if (v == 0) { snprintf(buf, n, signbit(v) ? "-0" : "0"); return; }
    /* Shortest digit string that reads back to v (Python's repr, David Gay's algorithm mode 0). */
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    /* e = "-d.ddde±XX": split into sign, digits, exponent */
    const char *s = e;
    int neg = *s == '-';
    if (neg) s++;
    char dig[24];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') dig[nd++] = *s;
    int ex = atoi(s + 1);
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    dig[nd] = 0;
    char out[64];
    int k = 0;
    if (neg) out[k++] = '-';
    if (ex >= -5 && ex < 16) { /* Python repr switches to exponent form below 1e-4 and from 1e16 */
        if (ex < -4) goto expo;
        if (ex < 0) {
            out[k++] = '0';
            out[k++] = '.';
            for (int i = 0; i < -ex - 1; i++) out[k++] = '0';
            for (int i = 0; i < nd; i++) out[k++] = dig[i];
        } else {
            for (int i = 0; i <= ex; i++) out[k++] = i < nd ? dig[i] : '0';
            if (nd > ex + 1) {
                out[k++] = '.';
                for (int i = ex + 1; i < nd; i++) out[k++] = dig[i];
            }
        }
        out[k] = 0;
        snprintf(buf, n, "%s", out);
        return;
    }
expo:
    out[k++] = dig[0];
    if (nd > 1) {
        out[k++] = '.';
        for (int i = 1; i < nd; i++) out[k++] = dig[i];
    }
    snprintf(out + k, sizeof out - (size_t)k, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
    snprintf(buf, n, "%s", out);
}

/* ---- writer ---- */

/* A1111 infotext_utils.quote(): values with ',', '\n' or ':' become json.dumps(v, ensure_ascii=False). */
static void put_value(sbuf *b, const char *v)
{
    if (!strpbrk(v, ",\n:")) {
        sb_str(b, v);
        return;
    }
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sb_str(b, esc);
            } else {
                sb_put(b, (const char *)p, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

static void put_pair(sbuf *b, int *first, const char *k, const char *v)
{
    if (!*first) sb_put(b, ", ", 2);
    *first = 0;
    sb_str(b, k);
    sb_put(b, ": ", 2);
    put_value(b, v);
}


/* Python str.isspace() for the ASCII range (what strip() removes). */
static int py_space(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f); }

int sd_params_format(const sd_gen_params *p, char **out, sd_err *err)
{
    *out = NULL;
    const char *prompt = p->prompt ? p->prompt : "";
    const char *neg = p->negative_prompt ? p->negative_prompt : "";
    if (!!sd_utf8_bad_byte(prompt) || !!sd_utf8_bad_byte(neg)) return sd_errf(err, "prompt is not valid UTF-8");
    sbuf b = {0};
    sb_str(&b, prompt);
    if (*neg) {
        sb_str(&b, "\nNegative prompt: ");
        sb_str(&b, neg);
    }
    sb_put(&b, "\n", 1);
    int first = 1;
    char num[64];
    snprintf(num, sizeof num, "%d", p->steps);
    put_pair(&b, &first, "Steps", num);
    if (p->sampler && *p->sampler) put_pair(&b, &first, "Sampler", p->sampler);
    if (p->schedule_type && *p->schedule_type) put_pair(&b, &first, "Schedule type", p->schedule_type);
    sd_params_fmt_number(p->cfg_scale, num, sizeof num);
    put_pair(&b, &first, "CFG scale", num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)p->seed);
    put_pair(&b, &first, "Seed", num);
    snprintf(num, sizeof num, "%dx%d", p->width, p->height);
    put_pair(&b, &first, "Size", num);
    if (p->model_hash && *p->model_hash) put_pair(&b, &first, "Model hash", p->model_hash);
    if (p->model_name && *p->model_name) put_pair(&b, &first, "Model", p->model_name);
    if (p->denoising_strength >= 0) {
        sd_params_fmt_number(p->denoising_strength, num, sizeof num);
        put_pair(&b, &first, "Denoising strength", num);
    }
    if (p->clip_skip > 1) {
        snprintf(num, sizeof num, "%d", p->clip_skip);
        put_pair(&b, &first, "Clip skip", num);
    }
    if (p->rng && *p->rng && strcmp(p->rng, "GPU")) put_pair(&b, &first, "RNG", p->rng);
    for (int i = 0; i < p->n_extra && i < SD_PARAMS_MAX_EXTRA; i++)
        if (p->extra_key[i] && p->extra_value[i]) put_pair(&b, &first, p->extra_key[i], p->extra_value[i]);
    if (p->version && *p->version) put_pair(&b, &first, "Version", p->version);
    if (b.oom) {
        free(b.p);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory formatting the infotext");
    }
    /* create_infotext returns f"...".strip(): leading whitespace of the prompt goes */
    size_t lead = 0;
    while (lead < b.n && py_space((unsigned char)b.p[lead])) lead++;
    if (lead) memmove(b.p, b.p + lead, b.n - lead + 1);
    *out = b.p;
    return 0;
}

/* ---- parser ---- */

void sd_params_init(sd_gen_params *p)
{
    memset(p, 0, sizeof *p);
    p->steps = 20;
    p->cfg_scale = 7.0;
    p->clip_skip = 1;
    p->denoising_strength = -1;
    p->version = "sdgen " SDGEN_VERSION;
}

void sd_params_free(sd_gen_params *p)
{
    for (int i = 0; i < p->n_kv; i++) {
        free(p->kv[i].key);
        free(p->kv[i].value);
    }
    free(p->kv);
    free(p->owned_prompt);
    free(p->owned_negative);
    p->kv = NULL;
    p->n_kv = 0;
    p->owned_prompt = p->owned_negative = NULL;
}

const char *sd_params_get(const sd_gen_params *p, const char *key)
{
    for (int i = 0; i < p->n_kv; i++)
        if (!strcmp(p->kv[i].key, key)) return p->kv[i].value;
    return NULL;
}

/* Python's \s and \w on UTF-8 text, one code point at a time. Non-ASCII: the Unicode spaces are \s,
 * every other code point counts as \w (an approximation of str.isalnum() that only matters for keys
 * written in other scripts). */
static int cp_at(const char *s, size_t n, size_t i, unsigned *cp)
{
    const unsigned char *p = (const unsigned char *)s + i;
    unsigned c = p[0];
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    if (i + (size_t)len > n) len = 1;
    unsigned v = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (int k = 1; k < len; k++) v = v << 6 | (p[k] & 0x3F);
    *cp = v;
    return len;
}
static int is_s(unsigned c)
{
    return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
static int is_w(unsigned c)
{
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return !is_s(c);
}

/* One match of A1111's re_param  \s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)  at pos.
 * Returns the end of the match or 0 when it does not match there. */
static size_t re_param_at(const char *s, size_t n, size_t pos, size_t *k0, size_t *k1, size_t *v0, size_t *v1,
                          size_t *next)
{
    size_t i = pos;
    unsigned c;
    int l;
    /* On failure *next is where the scan stopped: every start between pos and there stops at the same
     * place (same whitespace run, same maximal key run) and fails the same way, so findall may resume
     * there. This keeps the search linear where the regex engine would go quadratic. */
    *next = n;
    while (i < n && (l = cp_at(s, n, i, &c)) && is_s(c)) i += (size_t)l;
    if (i >= n) return 0;
    *next = i;
    l = cp_at(s, n, i, &c);
    if (!is_w(c)) return 0;
    *k0 = i;
    i += (size_t)l;
    size_t more = 0;
    while (i < n && (l = cp_at(s, n, i, &c)) && (is_w(c) || c == ' ' || c == '-' || c == '/')) {
        i += (size_t)l;
        more++;
    }
    /* the key run is maximal and ':' is not in its class, so no shorter key can be followed by ':' */
    *next = i;
    if (!more || i >= n || s[i] != ':') return 0;
    *k1 = i;
    i++;
    while (i < n && (l = cp_at(s, n, i, &c)) && is_s(c)) i += (size_t)l;
    *v0 = i;
    if (i < n && s[i] == '"') { /* quoted alternative: deterministic, falls back to [^,]* on failure */
        /* Walk (?:\\.|[^\\"])+ to the closing quote, a lone trailing backslash or the end. This stays
         * linear over a whole findall: a value's opening quote follows ':' or a space, so it can never be
         * the escaped half of a pair, and every walk stops at or before the next value's quote. */
        size_t q = i + 1;
        while (q < n && s[q] != '"' && !(s[q] == '\\' && q + 1 >= n))
            q += s[q] == '\\' ? 1 + (size_t)cp_at(s, n, q + 1, &c) : (size_t)cp_at(s, n, q, &c);
        int items = q > i + 1;
        if (items && q < n && s[q] == '"' && (q + 1 == n || s[q + 1] == ',')) {
            *v1 = q + 1;
            return q + 1 == n ? n : q + 2;
        }
    }
    const char *comma = memchr(s + i, ',', n - i);
    *v1 = comma ? (size_t)(comma - s) : n;
    return comma ? *v1 + 1 : n;
}

/* json.loads of a whole JSON string literal (strict: no raw control characters). NULL if invalid. */
static char *json_unquote(const char *s, size_t n)
{
    if (n < 2 || s[0] != '"') return NULL;
    char *o = malloc(n);
    size_t used = 0, at = 0;
    if (!o || sd_json_string(s + 1, n - 1, o, &used, &at) != SD_JSON_OK || used != n - 1) { /* one literal, all of it */
        free(o);
        return NULL;
    }
    return o;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* dict assignment: replace the value of an existing key (keeps its position) or append. */
static int kv_set(sd_gen_params *p, char *key, char *value, int *cap)
{
    if (!key || !value) { free(key); free(value); return -1; }
    for (int i = 0; i < p->n_kv; i++)
        if (!strcmp(p->kv[i].key, key)) {
            free(key);
            free(p->kv[i].value);
            p->kv[i].value = value;
            return 0;
        }
    if (p->n_kv == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        sd_param_kv *q = realloc(p->kv, (size_t)nc * sizeof *q);
        if (!q) { free(key); free(value); return -1; }
        p->kv = q;
        *cap = nc;
    }
    p->kv[p->n_kv].key = key;
    p->kv[p->n_kv].value = value;
    p->n_kv++;
    return 0;
}

/* Count matches of re_param in [s, s+n) (findall), optionally storing them. */
static int findall(const char *s, size_t n, sd_gen_params *p, int *cap, int *oom)
{
    int count = 0;
    size_t pos = 0;
    while (pos <= n) {
        size_t k0, k1, v0, v1, next = n;
        size_t end = pos < n ? re_param_at(s, n, pos, &k0, &k1, &v0, &v1, &next) : 0;
        if (!end) {
            if (pos >= n) break;
            unsigned c;
            size_t step = pos + (size_t)cp_at(s, n, pos, &c);
            pos = next > step ? next : step;
            continue;
        }
        count++;
        pos = end;
        if (!p) continue;
        if (v1 == v0) continue; /* v[0] raises IndexError in A1111: the pair is skipped */
        char *val = NULL;
        if (s[v0] == '"' && s[v1 - 1] == '"') val = json_unquote(s + v0, v1 - v0);
        if (!val) val = dupn(s + v0, v1 - v0);
        char *key = dupn(s + k0, k1 - k0);
        if (!val || !key) { free(val); free(key); *oom = 1; break; }
        /* re_imagesize ^(\d+)x(\d+)$ splits "Size: 512x768" into Size-1 / Size-2 */
        const char *x = val;
        size_t d1 = strspn(x, "0123456789");
        if (d1 && x[d1] == 'x') {
            size_t d2 = strspn(x + d1 + 1, "0123456789");
            if (d2 && x[d1 + 1 + d2] == 0) {
                size_t kl = strlen(key);
                char *ka = malloc(kl + 3), *kb = malloc(kl + 3);
                if (ka) snprintf(ka, kl + 3, "%s-1", key);
                if (kb) snprintf(kb, kl + 3, "%s-2", key);
                if (kv_set(p, ka, dupn(x, d1), cap) || kv_set(p, kb, dupn(x + d1 + 1, d2), cap)) *oom = 1;
                free(key);
                free(val);
                continue;
            }
        }
        if (kv_set(p, key, val, cap)) *oom = 1;
    }
    return count;
}

/* Python str.strip() (ASCII whitespace) of [*s, *s+*n). */
static void strip(const char **s, size_t *n)
{
    while (*n && py_space((unsigned char)**s)) { (*s)++; (*n)--; }
    while (*n && py_space((unsigned char)(*s)[*n - 1])) (*n)--;
}

static int append_line(sbuf *b, const char *s, size_t n)
{
    if (b->n) sb_put(b, "\n", 1);
    sb_put(b, s, n);
    return b->oom;
}

static int parse_int(const char *s, long long lo, long long hi, long long *out)
{
    if (!s) return -1;
    char *e;
    long long v = strtoll(s, &e, 10);
    if (e == s || *e || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int sd_params_parse(const char *text, sd_gen_params *p, sd_err *err)
{
    sd_params_init(p);
    p->steps = 0;
    p->cfg_scale = 0;
    p->version = NULL;
    if (!text) return sd_errf(err, "no infotext");
    size_t n = strlen(text);
    if (n > SD_PARAMS_MAX_TEXT) return sd_errf(err, "infotext too long (%zu bytes)", n);
    const char *s = text;
    strip(&s, &n);
    /* *lines, lastline = x.strip().split("\n") */
    const char *last = s;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == '\n') { last = s + i; break; }
    size_t lastn = n - (size_t)(last - s);
    int cap = 0, oom = 0;
    int use_last = findall(last, lastn, NULL, NULL, NULL) >= 3;
    /* the lines before lastline (none when it is the only line), or every line when lastline holds
     * fewer than 3 pairs and so is prompt text too */
    int have_lines = use_last ? last > s : 1;
    size_t region_n = use_last ? (last > s ? (size_t)(last - s) - 1 : 0) : n;

    sbuf pr = {0}, ng = {0};
    int done_with_prompt = 0;
    if (have_lines) {
        const char *q = s, *qend = s + region_n;
        for (;;) {
            const char *nl = memchr(q, '\n', (size_t)(qend - q));
            const char *ls = q;
            size_t ln = (size_t)((nl ? nl : qend) - q);
            strip(&ls, &ln);
            if (ln >= 16 && !memcmp(ls, "Negative prompt:", 16)) {
                done_with_prompt = 1;
                ls += 16;
                ln -= 16;
                strip(&ls, &ln);
            }
            oom |= append_line(done_with_prompt ? &ng : &pr, ls, ln);
            if (!nl) break;
            q = nl + 1;
        }
    }
    p->owned_prompt = pr.p ? pr.p : dupn("", 0);
    p->owned_negative = ng.p ? ng.p : dupn("", 0);
    if (!p->owned_prompt || !p->owned_negative) oom = 1;
    if (use_last) findall(last, lastn, p, &cap, &oom);
    /* A1111 defaults for missing keys */
    if (!sd_params_get(p, "Clip skip") && kv_set(p, dupn("Clip skip", 9), dupn("1", 1), &cap)) oom = 1;
    if (!sd_params_get(p, "RNG") && kv_set(p, dupn("RNG", 3), dupn("GPU", 3), &cap)) oom = 1;
    if (!sd_params_get(p, "Schedule type") && kv_set(p, dupn("Schedule type", 13), dupn("Automatic", 9), &cap)) oom = 1;
    if (oom) {
        sd_params_free(p);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory parsing the infotext");
    }
    p->prompt = p->owned_prompt;
    p->negative_prompt = p->owned_negative;
    long long v;
    if (!parse_int(sd_params_get(p, "Steps"), 0, 1000000, &v)) p->steps = (int)v;
    p->sampler = sd_params_get(p, "Sampler");
    p->schedule_type = sd_params_get(p, "Schedule type");
    const char *c = sd_params_get(p, "CFG scale");
    if (c) {
        char *e;
        double d = strtod(c, &e);
        if (e != c && !*e) p->cfg_scale = d;
    }
    c = sd_params_get(p, "Seed");
    if (c && *c >= '0' && *c <= '9') {
        char *e;
        unsigned long long u = strtoull(c, &e, 10);
        if (!*e) p->seed = u;
    }
    if (!parse_int(sd_params_get(p, "Size-1"), 0, 1 << 30, &v)) p->width = (int)v;
    if (!parse_int(sd_params_get(p, "Size-2"), 0, 1 << 30, &v)) p->height = (int)v;
    p->model_hash = sd_params_get(p, "Model hash");
    p->model_name = sd_params_get(p, "Model");
    c = sd_params_get(p, "Denoising strength");
    if (c) {
        char *e;
        double d = strtod(c, &e);
        if (e != c && !*e) p->denoising_strength = d;
    }
    if (!parse_int(sd_params_get(p, "Clip skip"), 0, 1000, &v)) p->clip_skip = (int)v;
    p->rng = sd_params_get(p, "RNG");
    p->version = sd_params_get(p, "Version");
    return 0;
}

/* ---- names ---- */

/* Sampler names (sdgen's and A1111's) come from sched.c's table: one list for the CLI, the
 * infotext and the server. */
static const char *const SCHEDULES[][2] = {{"default", "Automatic"}, {"karras", "Karras"}};
static const char *const RNGS[][2] = {{"cpu", "CPU"}, {"cuda", "GPU"}};

const char *sd_params_sampler_name(const char *cli)
{
    for (int i = 0; cli && i < SD_SAMPLER_COUNT; i++)
        if (!strcmp(cli, sd_sampler_name((sd_sampler)i))) return sd_sampler_a1111_name((sd_sampler)i);
    return NULL;
}
const char *sd_params_schedule_name(const char *cli)
{
    for (size_t i = 0; cli && i < sizeof SCHEDULES / sizeof *SCHEDULES; i++)
        if (!strcmp(cli, SCHEDULES[i][0])) return SCHEDULES[i][1];
    return NULL;
}
const char *sd_params_rng_name(const char *cli)
{
    for (size_t i = 0; cli && i < sizeof RNGS / sizeof *RNGS; i++)
        if (!strcmp(cli, RNGS[i][0])) return RNGS[i][1];
    return NULL;
}

int sd_params_cli_sampler(const char *a_sampler, const char *a_schedule, const char **sampler, const char **schedule)
{
    *sampler = NULL;
    *schedule = "default";
    if (!a_sampler) return -1;
    char name[64];
    snprintf(name, sizeof name, "%s", a_sampler);
    size_t l = strlen(name);
    if (l > 7 && !strcmp(name + l - 7, " Karras")) { /* pre-1.9 names: "DPM++ 2M Karras" */
        name[l - 7] = 0;
        *schedule = "karras";
    } else if (a_schedule && !strcmp(a_schedule, "Karras")) {
        *schedule = "karras";
    } else if (a_schedule && strcmp(a_schedule, "Automatic")) {
        return -1; /* a schedule sdgen does not have */
    }
    for (int i = 0; i < SD_SAMPLER_COUNT; i++)
        if (!strcmp(name, sd_sampler_a1111_name((sd_sampler)i))) {
            *sampler = sd_sampler_name((sd_sampler)i);
            return 0;
        }
    return -1;
}

void sd_params_model_name(const char *path, char *out, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b && b[1] ? b + 1 : path;
    snprintf(out, n, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && (!strcmp(dot, ".safetensors") || !strcmp(dot, ".ckpt"))) *dot = 0;
    size_t l = strlen(out);
    while (l > 0 && out[l - 1] == '/') out[--l] = 0;
}
