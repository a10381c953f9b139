/* test_safetensors.c — the safetensors reader (src/safetensors.c) and model opening on files that
 * are broken in every way the cases below list.
 *
 * 1. Conversions: all 65,536 F16 bit patterns through the vector path (sd_f16_to_f32) and the
 *    scalar one (sd_f16_to_f32_1) against a reference written here from the IEEE 754 binary16
 *    definition (value = (-1)^s · 2^(e-15) · 1.m, subnormals 2^-14 · 0.m): bit-exact for every
 *    non-NaN; NaN stays NaN with its sign and payload (the quiet bit set, as F16C/AVX-512 and
 *    PyTorch's half->float do). Same for BF16 (the top half of a float32). sd_f32_to_f16_1: every
 *    half round-trips, and rounding is to nearest even at every midpoint (normal, subnormal,
 *    overflow to inf), checked against the exact midpoints of consecutive halves.
 * 2. sd_st_read_f32 through every dtype, aligned and unaligned F16.
 * 3. Malformed files written into $SDGEN_TEST_TMP, each refused with exit code 2 and one line that
 *    names the file and the fault (substring checks).
 * 4. The golden tiny models open; their weights convert (tiny-sd2 is all F16: every value equals the
 *    F32 conversion of its raw half).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "diffusers.h"
#include "sdgen/model.h"
#include "sdgen/safetensors.h"
#include "testutil.h"

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}


/* binary16 by its definition, in double arithmetic (exact: every half is a double). */
static float ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = ldexp((double)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp((double)(1024 + m), e - 25);
    return (float)(s ? -v : v);
}

/* bfloat16 by its definition: 8 exponent bits (bias 127), 7 mantissa bits. */
static float ref_bf16(uint16_t h)
{
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v;
    if (e == 0) v = ldexp((double)m, -133);
    else if (e == 255) v = m ? NAN : INFINITY;
    else v = ldexp((double)(128 + m), e - 134);
    return (float)(s ? -v : v);
}

static void test_f16_all(void)
{
    uint16_t *h = malloc(65536 * sizeof *h);
    float *vec = malloc(65536 * sizeof *vec);
    float *vec_odd = malloc(65536 * sizeof *vec_odd);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    sd_f16_to_f32(h, vec, 65536);
    /* misaligned start and a length that leaves a tail for the scalar loop */
    sd_f16_to_f32(h + 1, vec_odd + 1, 65535);
    vec_odd[0] = vec[0];
    int bad_vec = 0, bad_scalar = 0, bad_nan = 0, bad_odd = 0, nans = 0, first = -1;
    for (int i = 0; i < 65536; i++) {
        float r = ref_f16((uint16_t)i), s = sd_f16_to_f32_1((uint16_t)i), v = vec[i];
        if (fbits(v) != fbits(vec_odd[i])) bad_odd++;
        if (fbits(v) != fbits(s)) { bad_vec++; if (first < 0) first = i; }
        if (isnan(r)) {
            nans++;
            uint32_t b = fbits(s);
            /* NaN, same sign, payload kept in the top mantissa bits, quiet bit set */
            int ok = isnan(s) && (b >> 31) == (uint32_t)(i >> 15) && ((b >> 13) & 0x1ff) == (uint32_t)(i & 0x1ff) &&
                     (b & 0x00400000u) && (b & 0x1fff) == 0;
            if (!ok) bad_nan++;
        } else if (fbits(s) != fbits(r)) {
            bad_scalar++;
            if (first < 0) first = i;
        }
    }
    CHECK(nans == 2 * 1023, "F16 NaN patterns counted: %d", nans);
    CHECK(bad_scalar == 0, "sd_f16_to_f32_1 differs from the binary16 definition for %d patterns (first 0x%04x)",
          bad_scalar, first);
    CHECK(bad_vec == 0, "sd_f16_to_f32 (vector) differs from the scalar path for %d patterns (first 0x%04x)", bad_vec,
          first);
    CHECK(bad_odd == 0, "sd_f16_to_f32 on a misaligned, odd-length run differs in %d patterns", bad_odd);
    CHECK(bad_nan == 0, "%d F16 NaNs lost their sign/payload or were not quietened", bad_nan);
    /* a few values by hand */
    CHECK(sd_f16_to_f32_1(0x3c00) == 1.0f && sd_f16_to_f32_1(0xc000) == -2.0f && sd_f16_to_f32_1(0x7bff) == 65504.0f,
          "F16 1, -2, 65504");
    CHECK(sd_f16_to_f32_1(0x0001) == 0x1p-24f && sd_f16_to_f32_1(0x03ff) == 1023 * 0x1p-24f &&
              sd_f16_to_f32_1(0x0400) == 0x1p-14f,
          "F16 subnormals and the smallest normal");
    CHECK(fbits(sd_f16_to_f32_1(0x8000)) == 0x80000000u && isinf(sd_f16_to_f32_1(0xfc00)) &&
              sd_f16_to_f32_1(0xfc00) < 0,
          "F16 -0 and -inf");
    printf("ok   F16: 65536 patterns, vector == scalar == definition (%d NaNs checked)\n", nans);
    free(h);
    free(vec);
    free(vec_odd);
}

static void test_bf16_all(void)
{
    uint16_t *h = malloc(65536 * sizeof *h);
    float *vec = malloc(65536 * sizeof *vec);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    sd_bf16_to_f32(h, vec, 65536);
    int bad = 0, bad_nan = 0, first = -1;
    for (int i = 0; i < 65536; i++) {
        float r = ref_bf16((uint16_t)i);
        if (isnan(r)) {
            if (!isnan(vec[i]) || fbits(vec[i]) != (uint32_t)i << 16) bad_nan++;
        } else if (fbits(vec[i]) != fbits(r)) {
            bad++;
            if (first < 0) first = i;
        }
    }
    CHECK(bad == 0, "sd_bf16_to_f32 differs from the bfloat16 definition for %d patterns (first 0x%04x)", bad, first);
    CHECK(bad_nan == 0, "%d BF16 NaNs changed bits", bad_nan);
    printf("ok   BF16: 65536 patterns\n");
    free(h);
    free(vec);
}

static void test_f32_to_f16(void)
{
    /* every half round-trips */
    int bad = 0, first = -1;
    for (int i = 0; i < 65536; i++) {
        float f = sd_f16_to_f32_1((uint16_t)i);
        uint16_t back = sd_f32_to_f16_1(f);
        if (isnan(f)) {
            /* NaN stays NaN with its sign and payload (quiet bit set) */
            if ((back & 0x7c00) != 0x7c00 || !(back & 0x3ff) || (back >> 15) != (i >> 15) ||
                (back & 0x1ff) != (i & 0x1ff))
                bad++;
        } else if (back != (uint16_t)i) {
            bad++;
            if (first < 0) first = i;
        }
    }
    CHECK(bad == 0, "sd_f32_to_f16_1(sd_f16_to_f32_1(h)) != h for %d halves (first 0x%04x)", bad, first);

    /* rounding at the exact midpoint between consecutive positive halves a, a+1 (a even: stays;
     * a odd: goes up) and just either side of it; 0x7bff..0x7c00 is the overflow to inf. */
    int bad_mid = 0, bad_side = 0, first_mid = -1;
    for (int a = 0; a < 0x7c00; a++) {
        double lo = ref_f16((uint16_t)a), hi = a + 1 == 0x7c00 ? 65536.0 : ref_f16((uint16_t)(a + 1));
        double mid = (lo + hi) / 2; /* exact in double, and exactly a float (11+1 significant bits) */
        float fm = (float)mid;
        uint16_t want = (a & 1) ? (uint16_t)(a + 1) : (uint16_t)a;
        if (sd_f32_to_f16_1(fm) != want || sd_f32_to_f16_1(-fm) != (want | 0x8000)) {
            bad_mid++;
            if (first_mid < 0) first_mid = a;
        }
        float below = nextafterf(fm, 0.0f), above = nextafterf(fm, INFINITY);
        if (sd_f32_to_f16_1(below) != (uint16_t)a || sd_f32_to_f16_1(above) != (uint16_t)(a + 1)) {
            bad_side++;
            if (first_mid < 0) first_mid = a;
        }
    }
    CHECK(bad_mid == 0, "sd_f32_to_f16_1: %d midpoints not rounded to even (first between 0x%04x and the next)",
          bad_mid, first_mid);
    CHECK(bad_side == 0, "sd_f32_to_f16_1: %d values next to a midpoint rounded the wrong way (first near 0x%04x)",
          bad_side, first_mid);
    CHECK(sd_f32_to_f16_1(0x1p-15f) == 0x0200, "2^-15 -> 0x0200 (subnormal), got 0x%04x", sd_f32_to_f16_1(0x1p-15f));
    CHECK(sd_f32_to_f16_1(0x1p-24f) == 0x0001, "2^-24 -> 0x0001, got 0x%04x", sd_f32_to_f16_1(0x1p-24f));
    CHECK(sd_f32_to_f16_1(0x1p-25f) == 0x0000, "2^-25 (tie) -> 0, got 0x%04x", sd_f32_to_f16_1(0x1p-25f));
    CHECK(sd_f32_to_f16_1(1e-30f) == 0 && sd_f32_to_f16_1(-1e-30f) == 0x8000, "tiny values flush to signed zero");
    CHECK(sd_f32_to_f16_1(1e10f) == 0x7c00 && sd_f32_to_f16_1(-INFINITY) == 0xfc00, "overflow and inf");
    printf("ok   sd_f32_to_f16_1: round trip of 65536 halves, %d midpoints\n", 0x7c00);
}

/* ---------------------------------------------------------------- files */

static char tmpdir[4096];

static const char *tpath(const char *name)
{
    static char bufs[4][4096];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 4096, "%s/%s", tmpdir, name);
    return b;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    if (n && fwrite(data, 1, n, f) != n) exit(1);
    fclose(f);
}

/* A safetensors file: 8-byte length, header (padded with spaces to 8), data. */
static void write_st(const char *path, const char *header, const void *data, size_t dlen)
{
    size_t hl = strlen(header), pl = (hl + 7) / 8 * 8;
    uint8_t *buf = calloc(1, 8 + pl + dlen + 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)pl >> (8 * i));
    memcpy(buf + 8, header, hl);
    memset(buf + 8 + hl, ' ', pl - hl);
    if (dlen) memcpy(buf + 8 + pl, data, dlen);
    write_bytes(path, buf, 8 + pl + dlen);
    free(buf);
}

static int one_line(const char *s) { return strchr(s, '\n') == NULL; }

static void expect_refused_here(const char *what, const char *path, const char *fault, int st_too);

/* sd_st_open and sd_model_open must both refuse the file with exit code 2 and a message that
 * names it and holds `fault`. Run in a child process: a crash on a hostile file is reported as
 * this case's failure and the other cases still run. */
static void expect_refused(const char *what, const char *path, const char *fault, int st_too)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        t_fail = 0;
        expect_refused_here(what, path, fault, st_too);
        fflush(stdout);
        fflush(stderr);
        _exit(t_fail ? 1 : 0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        CHECK(0, "%s: fork/wait failed", what);
        return;
    }
    CHECK(!WIFSIGNALED(status), "%s: CRASHED (signal %d) opening %s", what, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
          path);
    if (WIFEXITED(status)) CHECK(WEXITSTATUS(status) == 0, "%s: failed (see above)", what);
}

static void expect_refused_here(const char *what, const char *path, const char *fault, int st_too)
{
    sd_err err = {0};
    if (st_too) {
        sd_safetensors st;
        int rc = sd_st_open(&st, path, &err);
        CHECK(rc != 0, "%s: sd_st_open accepted the file", what);
        if (rc == 0) sd_st_close(&st);
        else {
            CHECK(err.code == SD_ERR_INPUT, "%s: exit code %d, want 2", what, err.code);
            CHECK(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", what, err.msg);
            CHECK(strstr(err.msg, fault) != NULL, "%s: message lacks \"%s\": %s", what, fault, err.msg);
            CHECK(one_line(err.msg), "%s: message is not one line", what);
        }
    }
    memset(&err, 0, sizeof err);
    sd_model m;
    int rc = sd_model_open(&m, path, &err);
    CHECK(rc != 0, "%s: sd_model_open accepted the file", what);
    if (rc == 0) {
        sd_model_close(&m);
        return;
    }
    CHECK(err.code == SD_ERR_INPUT, "%s: model exit code %d, want 2", what, err.code);
    CHECK(strstr(err.msg, path) != NULL, "%s: model message does not name the file: %s", what, err.msg);
    CHECK(strstr(err.msg, fault) != NULL, "%s: model message lacks \"%s\": %s", what, fault, err.msg);
    CHECK(one_line(err.msg), "%s: model message is not one line", what);
    printf("ok   %-34s -> %s\n", what, err.msg);
}

static void bad_st(const char *name, const char *header, size_t dlen, const char *fault)
{
    uint8_t *data = calloc(1, dlen + 1);
    const char *p = tpath(name);
    write_st(p, header, data, dlen);
    expect_refused(name, p, fault, 1);
    free(data);
}

static void test_malformed(void)
{
    const char *p;
    /* empty and truncated files */
    p = tpath("empty.safetensors");
    write_bytes(p, "", 0);
    expect_refused("empty file", p, "truncated", 1);
    p = tpath("short.safetensors");
    write_bytes(p, "\x10\x00\x00\x00", 4);
    expect_refused("truncated file (< 8 bytes)", p, "truncated", 1);
    /* header length past EOF; absurdly large */
    {
        uint8_t b[16] = {0x00, 0x10, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
        p = tpath("hlen_past_eof.safetensors");
        write_bytes(p, b, sizeof b);
        expect_refused("header length past EOF", p, "past the end of the file", 1);
        uint8_t c[16] = {0, 0, 0, 0, 0, 0, 0, 0x40, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
        p = tpath("hlen_huge.safetensors");
        write_bytes(p, c, sizeof c);
        expect_refused("absurdly large header length", p, "absurdly large", 1);
    }
    bad_st("bad_json.safetensors", "{\"w\": {\"dtype\": \"F32\", ", 0, "not valid JSON");
    bad_st("not_object.safetensors", "[1, 2, 3]", 0, "not a JSON object");
    bad_st("dtype.safetensors", "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
           "unknown dtype \"F8_E4M3\"");
    /* the file's dtype text escaped in the message: a line break in it must not make a second line */
    bad_st("dtype_newline.safetensors", "{\"w\":{\"dtype\":\"F3\\n2\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
           "unknown dtype \"F3\\n2\"");
    bad_st("outside.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
           "outside the data area");
    bad_st("reversed.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
           "outside the data area");
    bad_st("overlap.safetensors",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
           24, "overlap");
    /* an empty tensor between two overlapping ones must not hide the overlap */
    bad_st("overlap_hidden.safetensors",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
           "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
           "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[10,14]}}",
           16, "overlap");
    bad_st("span.safetensors", "{\"w\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,8]}}", 8,
           "needs 12 bytes but data_offsets span 8");
    bad_st("duplicate.safetensors",
           "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
           "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
           2, "listed twice");
    bad_st("meta_number.safetensors", "{\"__metadata__\":{\"format\":\"pt\",\"steps\":5}}", 0, "__metadata__");
    bad_st("meta_array.safetensors", "{\"__metadata__\":[\"pt\"]}", 0, "__metadata__");
    /* two __metadata__ objects: the second must not index past the first's arrays */
    bad_st("meta_twice.safetensors", "{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"},\"__metadata__\":{}}", 0,
           "__metadata__");
    /* control characters in a name (JSON-escaped): the message must stay one clean line */
    bad_st("ctrl_name.safetensors", "{\"a\\nb\\u001b[31m\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
           "control character");
    bad_st("dim_negative.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1,
           "bad shape dimension");
    bad_st("dim_fraction.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1,
           "bad shape dimension");
    bad_st("dim_string.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1,
           "bad shape dimension");
    bad_st("too_many_dims.safetensors",
           "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "shape");
    bad_st("offsets_fraction.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,0.5]}}", 1,
           "data_offsets");
    bad_st("no_dtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "missing dtype");
    bad_st("entry_not_object.safetensors", "{\"w\":[1,2]}", 0, "not an object");
    /* a valid safetensors file that is no Stable Diffusion model */
    p = tpath("not_sd.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "\0\0\0\0", 4);
    expect_refused("not a Stable Diffusion file", p, "not a Stable Diffusion checkpoint", 0);

    /* a directory that is not a diffusers folder */
    p = tpath("not_diffusers");
    mkdir(p, 0755);
    expect_refused("directory without unet/config.json", p, "not a diffusers folder", 0);
    p = tpath("no_such_file.safetensors");
    unlink(p);
    expect_refused("missing file", p, "cannot open", 1);
}

/* ---------------------------------------------------------------- tiny-sd1 variants */

typedef struct {
    uint8_t *bytes;
    size_t n, data_start;
    cJSON *header;
} st_image;

static int load_st(st_image *im, const char *path)
{
    memset(im, 0, sizeof *im);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    im->n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    im->bytes = malloc(im->n);
    if (fread(im->bytes, 1, im->n, f) != im->n) {
        fclose(f);
        return -1;
    }
    fclose(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | im->bytes[i];
    im->data_start = 8 + (size_t)hl;
    im->header = cJSON_ParseWithLength((const char *)im->bytes + 8, (size_t)hl);
    return im->header ? 0 : -1;
}

/* Write the (edited) header with the original data area. */
static void save_st(const st_image *im, const char *path)
{
    char *h = cJSON_PrintUnformatted(im->header);
    write_st(path, h, im->bytes + im->data_start, im->n - im->data_start);
    free(h);
}

static void test_model_faults(void)
{
    const char *sd1 = sd_test_path("golden/models/tiny-sd1.safetensors");
    st_image im;
    if (load_st(&im, sd1)) {
        CHECK(0, "cannot read %s", sd1);
        return;
    }
    /* a missing required U-Net tensor */
    const char *drop = "model.diffusion_model.input_blocks.1.0.emb_layers.1.bias";
    cJSON *saved = cJSON_DetachItemFromObjectCaseSensitive(im.header, drop);
    CHECK(saved != NULL, "tiny-sd1 has %s", drop);
    const char *p = tpath("missing_tensor.safetensors");
    save_st(&im, p);
    expect_refused("missing required U-Net tensor", p, "required tensor \"model.diffusion_model.input_blocks.1.0.emb_layers.1.bias\" is missing", 0);
    cJSON_AddItemToObject(im.header, drop, saved);

    /* the same data with a wrong shape for the family: [32,32,3,3] stored as [32,32,9,1] */
    const char *name = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight";
    cJSON *shape = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(im.header, name), "shape");
    CHECK(cJSON_GetArraySize(shape) == 4, "%s has 4 dims", name);
    if (cJSON_GetArraySize(shape) == 4) {
        cJSON_ReplaceItemInArray(shape, 2, cJSON_CreateNumber(9));
        cJSON_ReplaceItemInArray(shape, 3, cJSON_CreateNumber(1));
        p = tpath("wrong_shape.safetensors");
        save_st(&im, p);
        expect_refused("tensor of the wrong shape", p, "has shape [32,32,9,1], expected [32,32,3,3]", 0);
        cJSON_ReplaceItemInArray(shape, 2, cJSON_CreateNumber(3));
        cJSON_ReplaceItemInArray(shape, 3, cJSON_CreateNumber(3));
    }
    /* a text-encoder tensor missing */
    const char *drop2 = "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight";
    saved = cJSON_DetachItemFromObjectCaseSensitive(im.header, drop2);
    CHECK(saved != NULL, "tiny-sd1 has %s", drop2);
    p = tpath("missing_text_tensor.safetensors");
    save_st(&im, p);
    expect_refused("missing text-encoder tensor", p, "fc2.weight\" is missing", 0);
    cJSON_AddItemToObject(im.header, drop2, saved);

    /* an unsupported dtype for a weight: relabel an F32 [32] bias as I32 (same byte span) */
    const char *bias = "model.diffusion_model.out.2.bias";
    cJSON *dt = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(im.header, bias), "dtype");
    if (cJSON_IsString(dt)) {
        cJSON_SetValuestring(dt, "I32");
        p = tpath("int_weight.safetensors");
        save_st(&im, p);
        expect_refused("integer weight", p, "has dtype I32", 0);
        cJSON_SetValuestring(dt, "F32");
    }
    /* the unmodified header round-trips through save_st and opens */
    p = tpath("resaved.safetensors");
    save_st(&im, p);
    sd_model m;
    sd_err err = {0};
    int rc = sd_model_open(&m, p, &err);
    CHECK(rc == 0, "re-saved tiny-sd1 opens: %s", err.msg);
    if (rc == 0) sd_model_close(&m);
    cJSON_Delete(im.header);
    free(im.bytes);
}

/* ---------------------------------------------------------------- diffusers faults */

static void copy_file(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    if (!f) {
        CHECK(0, "cannot read %s", from);
        return;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    write_bytes(to, b, (size_t)n);
    free(b);
}

/* A copy of tiny-cfg (weights symlinked) whose config file `rel` holds `text`. */
static const char *cfg_variant(const char *name, const char *rel, const char *text)
{
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0) return dir;
    static const char *const sub[] = {"unet", "vae", "text_encoder", "scheduler", "tokenizer"};
    for (int i = 0; i < 5; i++) {
        char d[4200];
        snprintf(d, sizeof d, "%s/%s", dir, sub[i]);
        mkdir(d, 0755);
    }
    static const char *const links[] = {"unet/diffusion_pytorch_model.safetensors",
                                        "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                                        "tokenizer/vocab.json", "tokenizer/merges.txt"};
    for (int i = 0; i < 5; i++) {
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s", sd_test_path("golden/models/tiny-cfg"));
        snprintf(src + strlen(src), sizeof src - strlen(src), "/%s", links[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, links[i]);
        if (symlink(src, dst) != 0) CHECK(0, "symlink %s", dst);
    }
    static const char *const cfgs[] = {"unet/config.json", "vae/config.json", "text_encoder/config.json",
                                       "scheduler/scheduler_config.json", "tokenizer/special_tokens_map.json",
                                       "model_index.json"};
    for (int i = 0; i < 6; i++) {
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/%s", sd_test_path("golden/models/tiny-cfg"), cfgs[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, cfgs[i]);
        if (rel && !strcmp(rel, cfgs[i])) write_bytes(dst, text, strlen(text));
        else copy_file(src, dst);
    }
    return dir;
}

static void test_diffusers_faults(void)
{
    const char *d = cfg_variant("cfg_ok", NULL, NULL);
    sd_model m;
    sd_err err = {0};
    int rc = sd_model_open(&m, d, &err);
    CHECK(rc == 0, "copy of tiny-cfg opens: %s", err.msg);
    if (rc == 0) sd_model_close(&m);

    d = cfg_variant("cfg_bad_json", "unet/config.json", "{\"block_out_channels\": [32, 64],");
    expect_refused("diffusers unet/config.json bad JSON", d, "unet/config.json: invalid JSON: the file ends before the JSON is complete", 0);
    d = cfg_variant("cfg_no_block_out", "unet/config.json",
                    "{\"layers_per_block\": 2, \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"]}");
    expect_refused("diffusers config without block_out_channels", d, "\"block_out_channels\" is missing", 0);
    d = cfg_variant("cfg_vae_no_block_out", "vae/config.json", "{\"latent_channels\": 4}");
    expect_refused("diffusers vae config without block_out_channels", d, "vae/config.json: \"block_out_channels\" is missing", 0);
    d = cfg_variant("cfg_text_bad", "text_encoder/config.json", "[]");
    expect_refused("diffusers text config not an object", d, "text_encoder/config.json: not a JSON object", 0);
    d = cfg_variant("cfg_layers_huge", "unet/config.json",
                    "{\"block_out_channels\": [32, 64], \"layers_per_block\": 1e10, \"down_block_types\": "
                    "[\"CrossAttnDownBlock2D\", \"DownBlock2D\"]}");
    expect_refused("diffusers layers_per_block 1e10", d, "\"layers_per_block\" must be an integer", 0);
    d = cfg_variant("cfg_blocks_mismatch", "unet/config.json",
                    "{\"block_out_channels\": [32, 64], \"down_block_types\": [\"CrossAttnDownBlock2D\"]}");
    expect_refused("diffusers down_block_types length", d, "down_block_types", 0);
    d = cfg_variant("cfg_wrong_width", "unet/config.json",
                    "{\"block_out_channels\": [64, 128], \"attention_head_dim\": 8, \"cross_attention_dim\": 32, "
                    "\"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"up_block_types\": "
                    "[\"UpBlock2D\", \"CrossAttnUpBlock2D\"]}");
    expect_refused("diffusers config disagreeing with the weights", d, "expected [", 0);
    d = cfg_variant("cfg_sched_bad", "scheduler/scheduler_config.json", "{\"prediction_type\": \"sample\"}");
    expect_refused("diffusers scheduler prediction_type", d, "prediction_type \"sample\" is not supported", 0);

    /* names with no LDM counterpart translate to nothing (and never read past the name) */
    sd_diffusers_layout lay = {.unet_res_blocks = 2, .vae_levels = 4};
    static const char *const odd[] = {"down_blocks.0.resnets.1", "down_blocks.0.extra.weight", "up_blocks.1.extra",
                                      "mid_block.resnets.0", "down_blocks.7.downsamplers.0.conv"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        char out[1024];
        int conv = 0;
        int r = sd_diffusers_ldm_name("unet", odd[i], &lay, out, sizeof out, &conv);
        CHECK(r == -1, "diffusers name \"%s\" has no LDM counterpart, got %d (\"%s\")", odd[i], r, r == 0 ? out : "");
    }
    char out[1024];
    int conv = 0;
    rc = sd_diffusers_ldm_name("unet", "down_blocks.1.resnets.0.conv1.weight", &lay, out, sizeof out, &conv);
    CHECK(rc == 0 && !strcmp(out, "model.diffusion_model.input_blocks.4.0.in_layers.2.weight"), "resnet name: %s", out);
}

/* ---------------------------------------------------------------- read_f32 and the tiny models */

static void test_read_dtypes(void)
{
    /* one tensor per dtype, an F16 tensor at an odd offset (unaligned path) and one aligned */
    uint8_t data[256];
    memset(data, 0, sizeof data);
    size_t o = 0;
    char hdr[2048];
    int hn = 0;
    float f32v[2] = {1.5f, -2.25f};
    memcpy(data + o, f32v, 8);
    hn += snprintf(hdr + hn, sizeof hdr - hn, "{\"f32\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[%zu,%zu]}", o, o + 8);
    o += 8;
    double f64v[2] = {0.1, -1e300};
    memcpy(data + o, f64v, 16);
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"f64\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[%zu,%zu]}", o, o + 16);
    o += 16;
    int64_t i64v[2] = {-7, (int64_t)1 << 40};
    memcpy(data + o, i64v, 16);
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[%zu,%zu]}", o, o + 16);
    o += 16;
    int32_t i32v[2] = {-3, 100000};
    memcpy(data + o, i32v, 8);
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"i32\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[%zu,%zu]}", o, o + 8);
    o += 8;
    int16_t i16v[2] = {-300, 300};
    memcpy(data + o, i16v, 4);
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"i16\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[%zu,%zu]}", o, o + 4);
    o += 4;
    uint16_t bf[2] = {0x3fc0, 0xc040}; /* 1.5, -3 */
    memcpy(data + o, bf, 4);
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"bf16\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[%zu,%zu]}", o, o + 4);
    o += 4;
    uint16_t h16[19];
    for (int i = 0; i < 19; i++) h16[i] = (uint16_t)(0x3c00 + 97 * i); /* 19: vector blocks + a tail */
    memcpy(data + o, h16, sizeof h16);
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"f16a\":{\"dtype\":\"F16\",\"shape\":[19],\"data_offsets\":[%zu,%zu]}", o,
                   o + sizeof h16);
    o += sizeof h16;
    data[o] = (uint8_t)-5;
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}", o, o + 1);
    o += 1;
    memcpy(data + o, h16, sizeof h16); /* odd offset */
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"f16u\":{\"dtype\":\"F16\",\"shape\":[19],\"data_offsets\":[%zu,%zu]}", o,
                   o + sizeof h16);
    o += sizeof h16;
    data[o] = 200;
    data[o + 1] = 1;
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"u8\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}", o, o + 1);
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"b\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}", o + 1, o + 2);
    o += 2;
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"scalar0d\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[%zu,%zu]}", o, o + 4);
    float s = 4.605170186f;
    memcpy(data + o, &s, 4);
    o += 4;
    hn += snprintf(hdr + hn, sizeof hdr - hn, ",\"empty\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[%zu,%zu]}", o, o);
    snprintf(hdr + hn, sizeof hdr - hn, ",\"__metadata__\":{\"format\":\"pt\",\"note\":\"ü\"}}");
    const char *p = tpath("dtypes.safetensors");
    write_st(p, hdr, data, o);

    sd_safetensors st;
    sd_err err = {0};
    int rc = sd_st_open(&st, p, &err);
    CHECK(rc == 0, "dtypes file opens: %s", err.msg);
    if (rc) return;
    CHECK(st.n_tensors == 13, "13 tensors, got %d", st.n_tensors);
    CHECK(sd_st_meta(&st, "note") && !strcmp(sd_st_meta(&st, "note"), "ü") && !sd_st_meta(&st, "nope"), "metadata");
    float out[32];
#define READ(nm)                                                                  \
    do {                                                                          \
        const sd_st_tensor *t_ = sd_st_find(&st, nm);                             \
        CHECK(t_ != NULL, "find %s", nm);                                         \
        memset(out, 0, sizeof out);                                               \
        if (t_) CHECK(sd_st_read_f32(&st, t_, out, &err) == 0, "read %s", nm);    \
    } while (0)
    READ("f32");
    CHECK(out[0] == 1.5f && out[1] == -2.25f, "F32 values");
    READ("f64");
    CHECK(out[0] == (float)0.1 && isinf(out[1]) && out[1] < 0, "F64 values (rounded to float)");
    READ("i64");
    CHECK(out[0] == -7.0f && out[1] == 1099511627776.0f, "I64 values");
    READ("i32");
    CHECK(out[0] == -3.0f && out[1] == 100000.0f, "I32 values");
    READ("i16");
    CHECK(out[0] == -300.0f && out[1] == 300.0f, "I16 values");
    READ("bf16");
    CHECK(out[0] == 1.5f && out[1] == -3.0f, "BF16 values");
    READ("i8");
    CHECK(out[0] == -5.0f, "I8 value");
    READ("u8");
    CHECK(out[0] == 200.0f, "U8 value");
    READ("b");
    CHECK(out[0] == 1.0f, "BOOL value");
    READ("scalar0d");
    CHECK(out[0] == s, "0-D value");
    const sd_st_tensor *t0 = sd_st_find(&st, "scalar0d");
    CHECK(t0 && t0->ndim == 0 && t0->numel == 1, "0-D tensor has 1 element");
    const sd_st_tensor *te = sd_st_find(&st, "empty");
    CHECK(te && te->numel == 0 && te->ndim == 2, "empty tensor");
    READ("f16a");
    int bad = 0;
    for (int i = 0; i < 19; i++) bad += fbits(out[i]) != fbits(ref_f16(h16[i]));
    READ("f16u");
    const sd_st_tensor *tu = sd_st_find(&st, "f16u");
    CHECK(tu && ((st.data_start + tu->begin) & 1), "f16u really is at an odd file offset");
    for (int i = 0; i < 19; i++) bad += fbits(out[i]) != fbits(ref_f16(h16[i]));
    CHECK(bad == 0, "F16 aligned / unaligned reads: %d wrong", bad);
    CHECK(sd_st_find(&st, "absent") == NULL, "absent name not found");
    sd_st_close(&st);
#undef READ
}

static void test_tiny_models(void)
{
    /* tiny-sd1: every manifest tensor is in the file with its dtype and shape */
    const char *sd1 = sd_test_path("golden/models/tiny-sd1.safetensors");
    sd_safetensors st;
    sd_err err = {0};
    int rc = sd_st_open(&st, sd1, &err);
    CHECK(rc == 0, "tiny-sd1 opens: %s", err.msg);
    if (rc == 0) {
        FILE *f = fopen(sd_test_path("golden/manifests/tiny-sd1.json"), "rb");
        char *txt = NULL;
        long n = 0;
        if (f) {
            fseek(f, 0, SEEK_END);
            n = ftell(f);
            fseek(f, 0, SEEK_SET);
            txt = calloc(1, (size_t)n + 1);
            if (fread(txt, 1, (size_t)n, f) != (size_t)n) n = 0;
            fclose(f);
        }
        cJSON *man = txt ? cJSON_Parse(txt) : NULL;
        cJSON *list = cJSON_GetObjectItem(man, "tensors");
        int total = cJSON_GetArraySize(list), bad = 0;
        CHECK(total == 533 && st.n_tensors == 533, "tiny-sd1: 533 tensors (manifest %d, file %d)", total, st.n_tensors);
        cJSON *e;
        cJSON_ArrayForEach(e, list)
        {
            const char *nm = cJSON_GetArrayItem(e, 0)->valuestring, *dt = cJSON_GetArrayItem(e, 1)->valuestring;
            cJSON *shp = cJSON_GetArrayItem(e, 2);
            const sd_st_tensor *t = sd_st_find(&st, nm);
            int ok = t && !strcmp(sd_dtype_name(t->dtype), dt) && t->ndim == cJSON_GetArraySize(shp);
            for (int d = 0; ok && d < t->ndim; d++) ok = t->shape[d] == (int64_t)cJSON_GetArrayItem(shp, d)->valuedouble;
            if (!ok) bad++;
        }
        CHECK(bad == 0, "tiny-sd1: %d manifest tensors missing or different", bad);
        CHECK(sd_st_meta(&st, "format") && !strcmp(sd_st_meta(&st, "format"), "pt"), "tiny-sd1 metadata format=pt");
        cJSON_Delete(man);
        free(txt);
        sd_st_close(&st);
    }

    /* tiny-sd1 weights: F32 values are the raw bytes */
    sd_model m;
    rc = sd_model_open(&m, sd1, &err);
    CHECK(rc == 0, "tiny-sd1 model opens: %s", err.msg);
    if (rc == 0) {
        int bad = 0;
        for (int i = 0; i < m.n_weights; i++) {
            const sd_st_tensor *t = &m.files[0].tensors[m.weights[i].index];
            if (t->dtype != SD_DT_F32) continue;
            sd_tensor w;
            if (sd_model_weight(&m, NULL, m.weights[i].name, &w, &err)) {
                bad++;
                continue;
            }
            if (memcmp(w.data, sd_st_data(&m.files[0], t), (size_t)t->numel * 4)) bad++;
        }
        CHECK(bad == 0, "tiny-sd1: %d F32 weights differ from their bytes", bad);
        sd_tensor w;
        CHECK(sd_model_weight(&m, NULL, "model.diffusion_model.nonexistent.weight", &w, &err) != 0 &&
                  strstr(err.msg, "nonexistent"),
              "missing weight is an error naming it");
        sd_model_close(&m);
    }

    /* tiny-sd2: every tensor F16; converted values equal the F32 of the raw halves */
    const char *sd2 = sd_test_path("golden/models/tiny-sd2.safetensors");
    rc = sd_model_open(&m, sd2, &err);
    CHECK(rc == 0, "tiny-sd2 model opens: %s", err.msg);
    if (rc == 0) {
        const sd_safetensors *f = &m.files[0];
        CHECK(f->n_tensors == 538, "tiny-sd2: 538 tensors, got %d", f->n_tensors);
        int non_f16 = 0, bad = 0, bad_model = 0;
        long values = 0;
        float *buf = NULL;
        size_t cap = 0;
        for (int i = 0; i < f->n_tensors; i++) {
            const sd_st_tensor *t = &f->tensors[i];
            if (t->dtype != SD_DT_F16) {
                non_f16++;
                continue;
            }
            if ((size_t)t->numel > cap) {
                cap = (size_t)t->numel;
                buf = realloc(buf, cap * sizeof *buf);
            }
            if (sd_st_read_f32(f, t, buf, &err)) {
                bad++;
                continue;
            }
            const uint8_t *raw = sd_st_data(f, t);
            for (int64_t k = 0; k < t->numel; k++) {
                uint16_t h;
                memcpy(&h, raw + 2 * k, 2);
                if (fbits(buf[k]) != fbits(ref_f16(h))) bad++;
            }
            values += t->numel;
            const sd_weight_ref *wr = sd_model_find(&m, t->name);
            if (wr && !strncmp(t->name, "model.diffusion_model.out.", 26)) {
                sd_tensor w;
                if (sd_model_weight(&m, NULL, t->name, &w, &err) || memcmp(w.data, buf, (size_t)t->numel * 4)) bad_model++;
                /* F16 mode: converted into the caller's arena scope, same bits; refused without one */
                sd_model_set_weights_mode(&m, SD_WEIGHTS_F16, &err);
                sd_arena ar;
                sd_arena_init(&ar, (size_t)t->numel * 4, 0); /* one block: the scope gives it all back */
                sd_scope sc = sd_scope_open(&ar);
                if (sd_model_weight(&m, &ar, t->name, &w, &err) || memcmp(w.data, buf, (size_t)t->numel * 4) ||
                    ar.in_use < (size_t)t->numel * 4)
                    bad_model++;
                sd_scope_close(&ar, sc);
                if (ar.in_use != 0) bad_model++;
                if (sd_model_weight(&m, NULL, t->name, &w, &err) == 0 || !strstr(err.msg, "arena scope")) bad_model++;
                sd_arena_free(&ar);
                sd_model_set_weights_mode(&m, SD_WEIGHTS_F32, &err);
            }
        }
        /* embedding rows converted alone equal the rows of the whole converted table */
        const char *emb = "cond_stage_model.model.token_embedding.weight";
        const sd_weight_ref *er = sd_model_find(&m, emb);
        CHECK(er && er->ndim == 2, "tiny-sd2 has %s", emb);
        if (er && er->ndim == 2) {
            const int64_t R = er->shape[0], C = er->shape[1];
            const int32_t rows[4] = {0, (int32_t)(R - 1), 7, 7};
            float *full = malloc((size_t)(R * C) * sizeof *full), *got = malloc((size_t)(4 * C) * sizeof *got);
            sd_tensor w;
            int rbad = sd_model_weight(&m, NULL, emb, &w, &err) != 0;
            if (!rbad) memcpy(full, w.data, (size_t)(R * C) * sizeof *full);
            sd_model_set_weights_mode(&m, SD_WEIGHTS_F16, &err); /* rows read from the file's halves */
            rbad |= sd_model_weight_rows(&m, emb, rows, 4, got, &err) != 0;
            for (int r = 0; !rbad && r < 4; r++) rbad |= memcmp(got + r * C, full + rows[r] * C, (size_t)C * 4) != 0;
            const int32_t out_of_range = (int32_t)R;
            CHECK(!rbad, "tiny-sd2: sd_model_weight_rows equals the rows of the converted table");
            CHECK(sd_model_weight_rows(&m, emb, &out_of_range, 1, got, &err) != 0 && strstr(err.msg, "outside"),
                  "a row past the table is refused: %s", err.msg);
            sd_model_set_weights_mode(&m, SD_WEIGHTS_F32, &err);
            free(full);
            free(got);
        }
        free(buf);
        CHECK(non_f16 == 0, "tiny-sd2: %d tensors are not F16", non_f16);
        CHECK(bad == 0, "tiny-sd2: %d F16 values differ from the conversion of their raw halves", bad);
        CHECK(bad_model == 0, "tiny-sd2: sd_model_weight differs from sd_st_read_f32 for %d tensors", bad_model);
        printf("ok   tiny-sd2: %ld F16 values convert exactly\n", values);
        sd_model_close(&m);
    }

    /* tiny-cfg: diffusers folder opens, weights convert (VAE attention [C,C] viewed as [C,C,1,1]) */
    const char *cfg = sd_test_path("golden/models/tiny-cfg");
    rc = sd_model_open(&m, cfg, &err);
    CHECK(rc == 0, "tiny-cfg opens: %s", err.msg);
    if (rc == 0) {
        sd_tensor w;
        rc = sd_model_weight(&m, NULL, "first_stage_model.decoder.mid.attn_1.q.weight", &w, &err);
        CHECK(rc == 0 && w.ndim == 4 && w.ne[0] == 64 && w.ne[1] == 64 && w.ne[2] == 1 && w.ne[3] == 1,
              "tiny-cfg VAE q as a [64,64,1,1] conv: %s", err.msg);
        const sd_weight_ref *r = sd_model_find(&m, "first_stage_model.decoder.mid.attn_1.q.weight");
        if (rc == 0 && r) {
            const sd_st_tensor *t = &m.files[r->file].tensors[r->index];
            CHECK(!strcmp(t->name, "decoder.mid_block.attentions.0.to_q.weight") &&
                      !memcmp(w.data, sd_st_data(&m.files[r->file], t), 64 * 64 * 4),
                  "tiny-cfg q weight comes from %s unchanged", t->name);
        }
        rc = sd_model_weight(&m, NULL, "cond_stage_model.transformer.text_model.final_layer_norm.weight", &w, &err);
        CHECK(rc == 0 && w.ndim == 1 && w.ne[0] == 32, "tiny-cfg text weight: %s", err.msg);
        sd_model_close(&m);
    }
}

/* Each part runs in a child process, so that a crash or a sanitizer abort in one (a bug in the
 * reader) is reported as that part's failure while the other parts still run. */
static void part(const char *name, void (*fn)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        t_pass = t_fail = 0;
        fn();
        printf("  %s: %d passed, %d failed\n", name, t_pass, t_fail);
        fflush(stdout);
        fflush(stderr);
        _exit(t_fail ? 1 : 0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        CHECK(0, "%s: fork/wait failed", name);
        return;
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "part %s %s", name,
          WIFSIGNALED(status) ? "CRASHED" : "failed (or was aborted by a sanitizer)");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/safetensors", sd_test_tmp());
    mkdir(tmpdir, 0755);
    part("f16", test_f16_all);
    part("bf16", test_bf16_all);
    part("f32_to_f16", test_f32_to_f16);
    part("read_dtypes", test_read_dtypes);
    part("malformed", test_malformed);
    if (!sd_test_skip_shared("model_faults, diffusers_faults, tiny_models (the golden tiny models)")) {
        part("model_faults", test_model_faults);
        part("diffusers_faults", test_diffusers_faults);
        part("tiny_models", test_tiny_models);
    }
    TEST_MAIN_END();
}
