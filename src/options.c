/* options.c — the shared table of numeric settings, strict number parsing and message-safe text
 * (options.h). */
#include "sdgen/options.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdgen/sched.h"
#include "sdgen/utf8.h"

/* Every numeric setting of a run, once. The command line (cmd_generate.c) and the batch-file parser
 * (batch.c) both look their setting up here, so a key and the option of the same meaning cannot drift
 * apart. Sizes: 65536 is the command line's historical bound (the memory estimate and the U-Net's side
 * limit refine it once the model is known); the multiple of 8 is the VAE's downsampling factor (diffusers
 * StableDiffusionPipeline.check_inputs). Strength 0 runs no denoising step (diffusers Img2Img get_timesteps
 * gives an empty schedule), so the range is (0, 1]. eta: DDIM's η, 0 (deterministic) to 1 (DDPM-like variance;
 * DDIMScheduler.step, A1111's "Eta DDIM" slider range). */
static const sd_num_opt NUM_OPTS[] = {
    {"steps", "--steps", SD_NUM_INT, 1, SD_SCHED_MAX_STEPS, 0, 0},
    {"width", "--width", SD_NUM_INT, 8, 65536, 0, 8},
    {"height", "--height", SD_NUM_INT, 8, 65536, 0, 8},
    {"cfg_scale", "--cfg-scale", SD_NUM_REAL, 0, 100, 0, 0},
    {"strength", "--strength", SD_NUM_REAL, 0, 1, 1, 0},
    {"seed", "--seed", SD_NUM_U64, 0, 0, 0, 0},
    {"clip_skip", "--clip-skip", SD_NUM_INT, 1, 64, 0, 0},
    {"batch_count", "--batch-count", SD_NUM_INT, 1, 100000, 0, 0},
    {"eta", "--eta", SD_NUM_REAL, 0, 1, 0, 0},
    {NULL, "--threads", SD_NUM_INT, 1, 1024, 0, 0},
    {NULL, "--max-memory", SD_NUM_SIZE, 1, 1e15, 0, 0},
};

const sd_num_opt *sd_num_opt_by_key(const char *key)
{
    for (size_t i = 0; i < sizeof NUM_OPTS / sizeof *NUM_OPTS; i++)
        if (NUM_OPTS[i].key && !strcmp(NUM_OPTS[i].key, key)) return &NUM_OPTS[i];
    return NULL;
}

const sd_num_opt *sd_num_opt_by_opt(const char *opt)
{
    for (size_t i = 0; i < sizeof NUM_OPTS / sizeof *NUM_OPTS; i++)
        if (NUM_OPTS[i].opt && !strcmp(NUM_OPTS[i].opt, opt)) return &NUM_OPTS[i];
    return NULL;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int sd_parse_ll(const char *s, int allow_minus, long long *out)
{
    int neg = 0;
    if (*s == '-' && allow_minus) neg = 1, s++;
    if (!is_digit(*s)) return -1;
    unsigned long long v = 0, lim = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (; is_digit(*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (lim - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (*s) return -1;
    *out = neg ? (long long)(0 - v) : (long long)v;
    return 0;
}

int sd_parse_u64(const char *s, uint64_t *out)
{
    if (!is_digit(*s)) return -1;
    uint64_t v = 0;
    for (; is_digit(*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (*s) return -1;
    *out = v;
    return 0;
}

/* Length of "[0-9]+(\.[0-9]*)?|\.[0-9]+" at s, 0 if none; *int_digits and *frac_digits are its parts. */
static size_t decimal_span(const char *s, size_t *int_digits, size_t *frac_digits)
{
    size_t i = 0, a, b = 0;
    while (is_digit(s[i])) i++;
    a = i;
    if (s[i] == '.') {
        i++;
        while (is_digit(s[i])) i++, b++;
    }
    if (a + b == 0) return 0;
    *int_digits = a;
    *frac_digits = b;
    return i;
}

int sd_parse_real(const char *s, double *out)
{
    size_t i = 0, a, b;
    if (s[i] == '-') i++;
    size_t m = decimal_span(s + i, &a, &b);
    if (!m) return -1;
    i += m;
    if (s[i] == 'e' || s[i] == 'E') {
        i++;
        if (s[i] == '+' || s[i] == '-') i++;
        if (!is_digit(s[i])) return -1;
        while (is_digit(s[i])) i++;
    }
    if (s[i]) return -1;
    /* The grammar above is a subset of what strtod reads, so it consumes exactly the same text. */
    double v = strtod(s, NULL);
    if (!isfinite(v)) return -1;
    *out = v;
    return 0;
}

int sd_parse_size(const char *s, uint64_t *bytes)
{
    size_t a, b;
    size_t m = decimal_span(s, &a, &b);
    if (!m) return -1;
    const char *u = s + m;
    int zeros = 0; /* decimal exponent of the unit */
    switch (*u) {
    case 'k': case 'K': zeros = 3; u++; break;
    case 'm': case 'M': zeros = 6; u++; break;
    case 'g': case 'G': zeros = 9; u++; break;
    case 't': case 'T': zeros = 12; u++; break;
    default: break;
    }
    if (*u == 'b' || *u == 'B') u++;
    if (*u) return -1;
    /* Exact decimal arithmetic: the fraction may not hold more (non-zero) digits than the unit has zeros,
     * so the result is a whole number of bytes. */
    const char *frac = s + a + 1;
    while (b > 0 && frac[b - 1] == '0') b--;
    if ((int)b > zeros) return -1;
    uint64_t v = 0;
    for (size_t k = 0; k < a; k++) {
        unsigned d = (unsigned)(s[k] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    for (size_t k = 0; k < b; k++) {
        unsigned d = (unsigned)(frac[k] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    for (int k = 0; k < zeros - (int)b; k++) {
        if (v > UINT64_MAX / 10) return -1;
        v *= 10;
    }
    *bytes = v;
    return 0;
}

int sd_num_parse(const sd_num_opt *o, const char *name, const char *text, sd_num *out, sd_err *err)
{
    memset(out, 0, sizeof *out);
    switch (o->kind) {
    case SD_NUM_INT: {
        long long v;
        int ok = sd_parse_ll(text, o->lo < 0, &v) == 0 && (double)v >= o->lo && (double)v <= o->hi &&
                 !(o->lo_open && (double)v == o->lo) && !(o->multiple > 1 && v % o->multiple);
        if (!ok) {
            char mult[48] = "";
            if (o->multiple > 1) snprintf(mult, sizeof mult, " that is a multiple of %d", o->multiple);
            return sd_errf(err, "%s expects an integer in [%.0f, %.0f]%s, got \"%.64s\"", name, o->lo, o->hi, mult, text);
        }
        out->i = v;
        out->d = (double)v;
        return 0;
    }
    case SD_NUM_U64:
        if (sd_parse_u64(text, &out->u))
            return sd_errf(err, "%s expects an integer in [0, 2^64-1], got \"%.64s\"", name, text);
        out->d = (double)out->u;
        return 0;
    case SD_NUM_REAL: {
        double v;
        int ok = sd_parse_real(text, &v) == 0 && v >= o->lo && v <= o->hi && !(o->lo_open && v == o->lo);
        if (!ok) {
            if (o->lo == o->hi)
                return sd_errf(err, "%s must be %g (the only value supported), got \"%.64s\"", name, o->lo, text);
            return sd_errf(err, "%s expects a number in %c%g, %g], got \"%.64s\"", name, o->lo_open ? '(' : '[', o->lo,
                           o->hi, text);
        }
        out->d = v;
        return 0;
    }
    case SD_NUM_SIZE: {
        uint64_t v;
        int ok = sd_parse_size(text, &v) == 0 && (double)v >= o->lo && (double)v <= o->hi;
        if (!ok)
            return sd_errf(err,
                           "%s expects a size like 8G or 512M (K, M, G, T = 10^3, 10^6, 10^9, 10^12 bytes; a whole "
                           "number of bytes from %.0f to %.0fT), got \"%.64s\"",
                           name, o->lo, o->hi / 1e12, text);
        out->u = v;
        out->d = (double)v;
        return 0;
    }
    }
    return sd_errf(err, "%s: unknown kind of number", name);
}

/* ---- text for messages ---- */

size_t sd_escape_text(const char *str, char *out, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t k = 0;
    if (!n) return 0;
    for (size_t i = 0; s[i];) {
        char piece[8];
        size_t pl;
        int l = sd_utf8_decode(s + i, 4, NULL);
        unsigned c = s[i];
        if (c == '\n') pl = (size_t)snprintf(piece, sizeof piece, "\\n");
        else if (c == '\t') pl = (size_t)snprintf(piece, sizeof piece, "\\t");
        else if (c == '\r') pl = (size_t)snprintf(piece, sizeof piece, "\\r");
        else if (c < 0x20 || c == 0x7F || !l) pl = (size_t)snprintf(piece, sizeof piece, "\\x%02x", c), l = 1;
        else if (l == 2 && c == 0xC2 && s[i + 1] < 0xA0) pl = (size_t)snprintf(piece, sizeof piece, "\\u%04x", s[i + 1]);
        else memcpy(piece, s + i, (size_t)l), pl = (size_t)l;
        if (k + pl >= n) break; /* whole characters or escapes only */
        memcpy(out + k, piece, pl);
        k += pl;
        i += (size_t)l;
    }
    out[k] = 0;
    return k;
}

size_t sd_find_control(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] < 0x20 || s[i] == 0x7F) return i + 1;
        if (s[i] == 0xC2 && s[i + 1] >= 0x80 && s[i + 1] < 0xA0) return i + 1;
    }
    return 0;
}
