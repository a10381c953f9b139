/* safetensors.c — mmap a .safetensors file and validate its header before any use.
 *
 * Format (huggingface/safetensors): u64 little-endian header length N, N bytes of JSON
 * { "name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *   "__metadata__": {"key": "value", ...} }, then the data area; offsets are relative to it.
 * Every field is checked against the file before the data is touched, since model files
 * come from strangers.
 */
#include "sdgen/safetensors.h"
#include "sdgen/options.h"

#include "ops_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[SD_DT_COUNT] = {
    [SD_DT_F32] = {"F32", 4}, [SD_DT_F16] = {"F16", 2}, [SD_DT_BF16] = {"BF16", 2},
    [SD_DT_F64] = {"F64", 8}, [SD_DT_I64] = {"I64", 8}, [SD_DT_I32] = {"I32", 4},
    [SD_DT_I16] = {"I16", 2}, [SD_DT_I8] = {"I8", 1},   [SD_DT_U8] = {"U8", 1},
    [SD_DT_BOOL] = {"BOOL", 1},
};

const char *sd_dtype_name(sd_dtype d) { return d < SD_DT_COUNT ? dtype_info[d].name : "?"; }
size_t sd_dtype_size(sd_dtype d) { return d < SD_DT_COUNT ? dtype_info[d].size : 0; }

static int parse_dtype(const char *s, sd_dtype *out)
{
    for (int i = 0; i < SD_DT_COUNT; i++)
        if (!strcmp(s, dtype_info[i].name)) {
            *out = (sd_dtype)i;
            return 0;
        }
    return -1;
}

const sd_st_tensor *sd_st_find(const sd_safetensors *st, const char *name)
{
    const int i = sd_name_index_find(&st->index, name);
    return i >= 0 ? &st->tensors[i] : NULL;
}

const char *sd_st_meta(const sd_safetensors *st, const char *key)
{
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_vals[i];
    return NULL;
}

/* A JSON number that is a non-negative integer representable exactly. */
static int json_u64(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || v != floor(v)) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int cmp_begin(const void *a, const void *b)
{
    const sd_st_tensor *x = *(const sd_st_tensor *const *)a, *y = *(const sd_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* The header's JSON into st, every rule of the format checked before any tensor byte is used. Long on
 * purpose: one pass in the order the format defines (the object, __metadata__, then each entry's
 * dtype, shape, offsets and span), then the overlap sweep; the checks share the entry's variables and
 * read best top to bottom. */
static int parse_header(sd_safetensors *st, const char *json, size_t len, sd_err *err)
{
    const char *path = st->path;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) return sd_errf(err, "%s: header is not valid JSON", path);
    int rc = -1;
    /* The format (huggingface/safetensors README, "Format"): the header MUST begin with '{' and MAY be
     * padded at the end with spaces (0x20). Anything else inside the declared length (a NUL, junk, or
     * the first bytes of the data when the length is too large) means every offset is read from the
     * wrong place. */
    if (!cJSON_IsObject(root) || json[0] != '{') {
        sd_errf(err, "%s: header is not a JSON object (it must start with '{')", path);
        goto out;
    }
    size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : len;
    for (size_t k = at; k < len; k++)
        if (json[k] != ' ') {
            sd_errf(err, "%s: header has byte 0x%02x after its JSON at header byte %zu of %zu (only space padding may "
                    "follow the JSON: wrong header length or damaged file)", path, (unsigned char)json[k], k, len);
            goto out;
        }
    int n = cJSON_GetArraySize(root);
    if (n > SD_ST_MAX_TENSORS + 1) {
        sd_errf(err, "%s: header lists %d entries (limit %d)", path, n, SD_ST_MAX_TENSORS);
        goto out;
    }
    st->tensors = calloc((size_t)n + 1, sizeof *st->tensors);
    if (!st->tensors || sd_name_index_init(&st->index, n)) {
        sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory reading the header", path);
        goto out;
    }
    uint64_t data_size = st->size - st->data_start;

    for (cJSON *e = root->child; e; e = e->next) {
        const char *name = e->string;
        if (!name) continue;
        if (!strcmp(name, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                sd_errf(err, "%s: __metadata__ is not an object of strings", path);
                goto out;
            }
            if (st->meta_keys) { /* a second "__metadata__": its count would not fit the first's arrays */
                sd_errf(err, "%s: __metadata__ is listed twice", path);
                goto out;
            }
            int m = cJSON_GetArraySize(e);
            st->meta_keys = calloc((size_t)m + 1, sizeof(char *));
            st->meta_vals = calloc((size_t)m + 1, sizeof(char *));
            if (!st->meta_keys || !st->meta_vals) {
                sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory reading the header", path);
                goto out;
            }
            for (cJSON *kv = e->child; kv; kv = kv->next) {
                if (!cJSON_IsString(kv) || !kv->string) {
                    sd_errf(err, "%s: __metadata__ value of \"%.64s\" is not a string", path,
                            kv->string ? kv->string : "?");
                    goto out;
                }
                st->meta_keys[st->n_meta] = strdup(kv->string);
                st->meta_vals[st->n_meta] = strdup(kv->valuestring);
                st->n_meta++;
                if (!st->meta_keys[st->n_meta - 1] || !st->meta_vals[st->n_meta - 1]) {
                    sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory reading the header", path);
                    goto out;
                }
            }
            continue;
        }
        if (strlen(name) > SD_ST_MAX_NAME) {
            sd_errf(err, "%s: tensor name longer than %d bytes", path, SD_ST_MAX_NAME);
            goto out;
        }
        /* Names go into one-line messages and terminals: no control characters (no real file has them). */
        for (const char *c = name; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                sd_errf(err, "%s: a tensor name contains the control character 0x%02x", path, (unsigned char)*c);
                goto out;
            }
        if (!cJSON_IsObject(e)) {
            sd_errf(err, "%s: tensor \"%s\": entry is not an object", path, name);
            goto out;
        }
        sd_st_tensor *t = &st->tensors[st->n_tensors];
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(jd)) {
            sd_errf(err, "%s: tensor \"%s\": missing dtype", path, name);
            goto out;
        }
        if (parse_dtype(jd->valuestring, &t->dtype)) {
            char dt[100]; /* the file's text, escaped: a line break in it must not break the one-line message */
            sd_escape_text(jd->valuestring, dt, 40);
            sd_errf(err, "%s: tensor \"%s\": unknown dtype \"%s\"", path, name, dt);
            goto out;
        }
        if (!cJSON_IsArray(js) || cJSON_GetArraySize(js) > SD_ST_MAX_DIMS) {
            sd_errf(err, "%s: tensor \"%s\": shape is not an array of at most %d integers", path, name,
                    SD_ST_MAX_DIMS);
            goto out;
        }
        t->ndim = 0;
        uint64_t numel = 1;
        for (const cJSON *d = js->child; d; d = d->next) {
            uint64_t v;
            if (json_u64(d, &v) || v > ((uint64_t)1 << 40)) {
                sd_errf(err, "%s: tensor \"%s\": bad shape dimension", path, name);
                goto out;
            }
            if (v && numel > (((uint64_t)1 << 50) / v)) {
                sd_errf(err, "%s: tensor \"%s\": shape is absurdly large", path, name);
                goto out;
            }
            numel *= v;
            t->shape[t->ndim++] = (int64_t)v;
        }
        t->numel = (int64_t)numel;
        uint64_t b, en;
        if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || json_u64(jo->child, &b) ||
            json_u64(jo->child->next, &en)) {
            sd_errf(err, "%s: tensor \"%s\": data_offsets is not [begin, end]", path, name);
            goto out;
        }
        if (b > en || en > data_size) {
            sd_errf(err, "%s: tensor \"%s\": data_offsets [%llu, %llu] lie outside the data area (%llu bytes)",
                    path, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_size);
            goto out;
        }
        if (en - b != numel * sd_dtype_size(t->dtype)) {
            sd_errf(err, "%s: tensor \"%s\": %s shape needs %llu bytes but data_offsets span %llu", path, name,
                    jd->valuestring, (unsigned long long)(numel * sd_dtype_size(t->dtype)),
                    (unsigned long long)(en - b));
            goto out;
        }
        t->begin = b;
        t->end = en;
        t->name = strdup(name);
        if (!t->name) {
            sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory reading the header", path);
            goto out;
        }
        st->n_tensors++;
        if (!sd_name_index_add(&st->index, t->name, st->n_tensors - 1)) {
            sd_errf(err, "%s: tensor \"%s\" is listed twice", path, name);
            goto out;
        }
    }

    /* No two tensors may share bytes. */
    if (st->n_tensors > 1) {
        const sd_st_tensor **order = malloc((size_t)st->n_tensors * sizeof *order);
        if (!order) {
            sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", path);
            goto out;
        }
        for (int i = 0; i < st->n_tensors; i++) order[i] = &st->tensors[i];
        qsort(order, (size_t)st->n_tensors, sizeof *order, cmp_begin);
        /* Sorted by begin: a non-empty tensor overlaps an earlier one iff it begins before the furthest
         * end seen so far (empty tensors own no bytes, and must not hide an overlap around them). */
        const sd_st_tensor *reach = NULL;
        for (int i = 0; i < st->n_tensors; i++) {
            const sd_st_tensor *t = order[i];
            if (t->begin == t->end) continue;
            if (reach && t->begin < reach->end) {
                sd_errf(err, "%s: tensors \"%s\" and \"%s\" overlap in the data area", path, reach->name, t->name);
                free(order);
                goto out;
            }
            if (!reach || t->end > reach->end) reach = t;
        }
        free(order);
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int sd_st_open(sd_safetensors *st, const char *path, sd_err *err)
{
    memset(st, 0, sizeof *st);
    st->fd = -1;
    st->path = strdup(path);
    struct stat sb;
    int fd = sd_open_regular(path, &sb, err);
    if (fd < 0) goto fail;
    st->fd = fd;
    st->size = (size_t)sb.st_size;
    st->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    if (st->size < 8) {
        sd_errf(err, "%s: truncated file (%zu bytes; a safetensors file starts with an 8-byte header length)",
                path, st->size);
        goto fail;
    }
    void *map = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        /* ENOMEM: no room in the address space (ulimit -v) for the whole file: out of memory, not bad input */
        int e = errno;
        if (e == ENOMEM)
            sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory: cannot map the %.1f MB file (address space limit, ulimit -v?)",
                     path, (double)st->size / 1e6);
        else
            sd_errf(err, "%s: cannot map the file: %s", path, strerror(e));
        goto fail;
    }
    st->map = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | st->map[i];
    if (hlen > SD_ST_MAX_HEADER) {
        sd_errf(err, "%s: header length %llu is absurdly large (limit %llu bytes)", path, (unsigned long long)hlen,
                (unsigned long long)SD_ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > st->size - 8) {
        sd_errf(err, "%s: header length %llu runs past the end of the file (%zu bytes): truncated file?", path,
                (unsigned long long)hlen, st->size);
        goto fail;
    }
    if (hlen < 2) {
        sd_errf(err, "%s: header of %llu bytes is too short to be JSON", path, (unsigned long long)hlen);
        goto fail;
    }
    st->data_start = 8 + (size_t)hlen;
    if (parse_header(st, (const char *)st->map + 8, (size_t)hlen, err)) goto fail;
    return 0;
fail:
    sd_st_close(st);
    return -1;
}

void sd_st_close(sd_safetensors *st)
{
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_vals);
    sd_name_index_free(&st->index);
    if (st->map) munmap((void *)st->map, st->size);
    if (st->fd >= 0) close(st->fd);
    free(st->path);
    memset(st, 0, sizeof *st);
    st->fd = -1;
}

/* ---- conversions ---- */

float sd_f16_to_f32_1(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        /* inf, or NaN with its payload kept and the quiet bit set (as the hardware converts) */
        bits = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0);
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t sd_f32_to_f16_1(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* rounds to inf */
    if (ax < 0x38800000) { /* result subnormal or zero */
        if (ax < 0x33000000) return (uint16_t)sign;
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        int shift = 126 - (int)e; /* bits to drop: 14 (e = 112, 2^-15) .. 24 (e = 102) */
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t r = ax - 0x38000000; /* rebias exponent 127 -> 15 */
    uint32_t half = r >> 13, rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

/* F16C / AVX-512 vcvtph2ps where the CPU has them, else the scalar conversion: exact either way
 * (the CPU kernel table, ops_internal.h). */
void sd_f16_to_f32(const uint16_t *src, float *dst, size_t n) { sd_cpu()->f16_to_f32(src, dst, n); }

void sd_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    /* bf16 is the top half of an f32: widening is a shift, exact for every pattern. */
    uint32_t *d = (uint32_t *)dst;
    for (size_t i = 0; i < n; i++) d[i] = (uint32_t)src[i] << 16;
}

int sd_st_read_f32(const sd_safetensors *st, const sd_st_tensor *t, float *out, sd_err *err)
{
    const uint8_t *p = sd_st_data(st, t);
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case SD_DT_F32: memcpy(out, p, n * 4); break;
    case SD_DT_F16: {
        if (((uintptr_t)p & 1) == 0) {
            sd_f16_to_f32((const uint16_t *)p, out, n);
        } else {
            for (size_t i = 0; i < n; i++) {
                uint16_t h;
                memcpy(&h, p + 2 * i, 2);
                out[i] = sd_f16_to_f32_1(h);
            }
        }
        break;
    }
    case SD_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            uint32_t b = (uint32_t)h << 16;
            memcpy(&out[i], &b, 4);
        }
        break;
    case SD_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, p + 8 * i, 8);
            out[i] = (float)v;
        }
        break;
    case SD_DT_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            out[i] = (float)v;
        }
        break;
    case SD_DT_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            out[i] = (float)v;
        }
        break;
    case SD_DT_I16:
        for (size_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = (float)v;
        }
        break;
    case SD_DT_I8:
        for (size_t i = 0; i < n; i++) out[i] = (float)(int8_t)p[i];
        break;
    case SD_DT_U8:
    case SD_DT_BOOL:
        for (size_t i = 0; i < n; i++) out[i] = (float)p[i];
        break;
    default: return sd_errf(err, "%s: tensor \"%s\": unsupported dtype", st->path, t->name);
    }
    return 0;
}

int sd_st_check_unchanged(const sd_safetensors *st, sd_err *err)
{
    struct stat sb;
    if (st->fd < 0) return 0;
    if (fstat(st->fd, &sb) != 0) return sd_errf(err, "%s: cannot stat: %s", st->path, strerror(errno));
    int64_t mt = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    if ((size_t)sb.st_size != st->size || mt != st->mtime_ns)
        return sd_errf(err, "%s: the model file changed while in use (%s; was %zu bytes, now %lld): what was "
                       "computed from it cannot be trusted and is not written", st->path,
                       (size_t)sb.st_size != st->size ? "size changed" : "rewritten", st->size, (long long)sb.st_size);
    return 0;
}
