/* npy.c — NumPy .npy reading (tests, reference data) and writing (--dump-dir). */
#include "sdgen/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NPY_MAX_HEADER 65536

static int parse_header(sd_npy *a, const char *h, const char *path, sd_err *err)
{
    const char *d = strstr(h, "'descr'");
    const char *f = strstr(h, "'fortran_order'");
    const char *s = strstr(h, "'shape'");
    if (!d || !f || !s) return sd_errf(err, "%s: not a .npy header", path);
    d = strchr(d + 7, '\'');
    if (!d) return sd_errf(err, "%s: bad descr", path);
    d++;
    size_t n = strcspn(d, "'");
    if (n == 0 || n >= sizeof a->dtype) return sd_errf(err, "%s: bad descr", path);
    memcpy(a->dtype, d, n);
    a->dtype[n] = 0;
    if (strstr(f, "True") && strstr(f, "True") < s + 1 && strstr(f, "True") - f < 25)
        return sd_errf(err, "%s: Fortran-order arrays are not supported", path);
    s = strchr(s, '(');
    if (!s) return sd_errf(err, "%s: bad shape", path);
    s++;
    a->ndim = 0;
    a->numel = 1;
    while (*s && *s != ')') {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        char *e;
        long long v = strtoll(s, &e, 10);
        if (e == s || v < 0 || a->ndim >= 8) return sd_errf(err, "%s: bad shape", path);
        a->shape[a->ndim++] = v;
        if (v > 0 && a->numel > ((int64_t)1 << 40) / v) return sd_errf(err, "%s: array too large", path);
        a->numel *= v;
        s = e;
    }
    return 0;
}

int sd_npy_read(sd_npy *a, const char *path, sd_err *err)
{
    memset(a, 0, sizeof *a);
    FILE *fp = fopen(path, "rb");
    if (!fp) return sd_errf(err, "%s: cannot open", path);
    unsigned char pre[10];
    int rc = -1;
    char *hdr = NULL;
    void *raw = NULL;
    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        sd_errf(err, "%s: not a .npy file", path);
        goto out;
    }
    size_t hlen;
    if (pre[6] == 1) {
        hlen = pre[8] | (size_t)pre[9] << 8;
    } else {
        unsigned char more[2];
        if (fread(more, 1, 2, fp) != 2) { sd_errf(err, "%s: truncated", path); goto out; }
        hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)more[0] << 16 | (size_t)more[1] << 24;
    }
    if (hlen > NPY_MAX_HEADER) { sd_errf(err, "%s: header too large", path); goto out; }
    hdr = calloc(1, hlen + 1);
    if (!hdr || fread(hdr, 1, hlen, fp) != hlen) { sd_errf(err, "%s: truncated header", path); goto out; }
    if (parse_header(a, hdr, path, err)) goto out;
    size_t es;
    const char *t = a->dtype;
    if (!strcmp(t, "<f4") || !strcmp(t, "<i4") || !strcmp(t, "<u4")) es = 4;
    else if (!strcmp(t, "<f8") || !strcmp(t, "<i8") || !strcmp(t, "<u8")) es = 8;
    else if (!strcmp(t, "|u1") || !strcmp(t, "|i1") || !strcmp(t, "|b1")) es = 1;
    else if (!strcmp(t, "<f2") || !strcmp(t, "<i2") || !strcmp(t, "<u2")) es = 2;
    else { sd_errf(err, "%s: unsupported dtype %s", path, t); goto out; }
    size_t n = (size_t)a->numel;
    raw = malloc(n * es + 1);
    a->f32 = malloc(n * sizeof(float) + 1);
    a->i64 = malloc(n * sizeof(int64_t) + 1);
    if (!raw || !a->f32 || !a->i64) { sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", path); goto out; }
    if (fread(raw, es, n, fp) != n) { sd_errf(err, "%s: truncated data", path); goto out; }
    for (size_t i = 0; i < n; i++) {
        double v;
        int64_t iv;
        switch (t[1]) {
        case 'f':
            if (es == 4) v = ((float *)raw)[i];
            else if (es == 8) v = ((double *)raw)[i];
            else { sd_errf(err, "%s: float16 arrays are not supported", path); goto out; }
            iv = (int64_t)v;
            break;
        case 'i':
            iv = es == 1 ? ((int8_t *)raw)[i] : es == 2 ? ((int16_t *)raw)[i] : es == 4 ? ((int32_t *)raw)[i] : ((int64_t *)raw)[i];
            v = (double)iv;
            break;
        default: /* u, b */
            iv = es == 1 ? (int64_t)((uint8_t *)raw)[i] : es == 2 ? (int64_t)((uint16_t *)raw)[i] : es == 4 ? (int64_t)((uint32_t *)raw)[i] : (int64_t)((uint64_t *)raw)[i];
            v = (double)iv;
        }
        a->f32[i] = (float)v;
        a->i64[i] = iv;
    }
    rc = 0;
out:
    free(hdr);
    free(raw);
    fclose(fp);
    if (rc) sd_npy_free(a);
    return rc;
}

void sd_npy_free(sd_npy *a)
{
    free(a->f32);
    free(a->i64);
    a->f32 = NULL;
    a->i64 = NULL;
}

static int write_npy(const char *path, const void *data, size_t es, const char *descr, int ndim,
                     const int64_t *shape, sd_err *err)
{
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
        count *= (size_t)shape[i];
    }
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "), }");
    /* pad with spaces so that 10 + header length is a multiple of 64, ending in '\n' */
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    memset(hdr + n, ' ', (size_t)pad);
    n += pad;
    hdr[n++] = '\n';
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return sd_errf(err, "%s: cannot write", path);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(n & 255), (unsigned char)(n >> 8)};
    int ok = fwrite(pre, 1, 10, fp) == 10 && fwrite(hdr, 1, (size_t)n, fp) == (size_t)n &&
             fwrite(data, es, count, fp) == count;
    ok = (fclose(fp) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return sd_errf(err, "%s: write failed", path);
    }
    return 0;
}

int sd_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, sd_err *err)
{
    return write_npy(path, data, 4, "<f4", ndim, shape, err);
}

int sd_npy_write_i32(const char *path, const int32_t *data, int ndim, const int64_t *shape, sd_err *err)
{
    return write_npy(path, data, 4, "<i4", ndim, shape, err);
}
