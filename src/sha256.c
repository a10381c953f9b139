/* sha256.c — SHA-256 per FIPS 180-4, file hashing, and the cached A1111 model hash (hash.h). */
#include "sdgen/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sdgen/image.h" /* sd_file_write_atomic */

/* FIPS 180-4 §4.2.2: first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

/* One 512-bit block (FIPS 180-4 §6.2.2). */
static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 |
               (uint32_t)p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + K256[t] + w[t];
        uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void sd_sha256_init(sd_sha256 *s)
{
    /* §5.3.3: first 32 bits of the fractional parts of the square roots of the first 8 primes. */
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, H0, sizeof H0);
    s->nbytes = 0;
    s->nbuf = 0;
}

void sd_sha256_update(sd_sha256 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->nbytes += n;
    if (s->nbuf) {
        size_t take = 64 - s->nbuf < n ? 64 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, p, take);
        s->nbuf += take; p += take; n -= take;
        if (s->nbuf < 64) return;
        sha256_block(s->h, s->buf);
        s->nbuf = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(s->h, p);
    memcpy(s->buf, p, n);
    s->nbuf = n;
}

void sd_sha256_final(sd_sha256 *s, uint8_t digest[32])
{
    /* §5.1.1 padding: 0x80, zeros to 56 mod 64, then the bit length big-endian. */
    uint64_t bits = s->nbytes * 8;
    s->buf[s->nbuf++] = 0x80;
    if (s->nbuf > 56) {
        memset(s->buf + s->nbuf, 0, 64 - s->nbuf);
        sha256_block(s->h, s->buf);
        s->nbuf = 0;
    }
    memset(s->buf + s->nbuf, 0, 56 - s->nbuf);
    for (int i = 0; i < 8; i++) s->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_block(s->h, s->buf);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(s->h[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        digest[4 * i + 3] = (uint8_t)s->h[i];
    }
    s->nbuf = 0;
}

void sd_sha256_buf(const void *data, size_t n, uint8_t digest[32])
{
    sd_sha256 s;
    sd_sha256_init(&s);
    sd_sha256_update(&s, data, n);
    sd_sha256_final(&s, digest);
}

void sd_sha256_hex(const uint8_t digest[32], char hex[65])
{
    static const char xd[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = xd[digest[i] >> 4];
        hex[2 * i + 1] = xd[digest[i] & 15];
    }
    hex[64] = 0;
}

int sd_sha256_file(const char *path, uint8_t digest[32], sd_err *err)
{
    return sd_sha256_file_stop(path, digest, NULL, err);
}

int sd_sha256_file_stop(const char *path, uint8_t digest[32], const volatile sig_atomic_t *stop, sd_err *err)
{
    int fd = sd_open_regular(path, NULL, err);
    if (fd < 0) return -1;
    enum { BLOCK = 4 << 20 };
    uint8_t *buf = malloc(BLOCK);
    if (!buf) {
        close(fd);
        return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory for the hash buffer", path);
    }
    sd_sha256 s;
    sd_sha256_init(&s);
    for (;;) {
        /* A multi-gigabyte file takes seconds: look at the stop flag between blocks (about 10 ms each). */
        if (stop && *stop) {
            free(buf);
            close(fd);
            return sd_errcf(err, SD_ERR_INTERRUPTED, "%s: interrupted while hashing", path);
        }
        ssize_t r = read(fd, buf, BLOCK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return sd_errf(err, "%s: read error while hashing: %s", path, strerror(e));
        }
        if (r == 0) break;
        sd_sha256_update(&s, buf, (size_t)r);
    }
    free(buf);
    close(fd);
    sd_sha256_final(&s, digest);
    return 0;
}

int sd_model_hash_file(const char *path, char *out, size_t n, sd_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0) return sd_errf(err, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if ((size_t)snprintf(out, n, "%s", path) >= n) return sd_errf(err, "%s: path too long", path);
        return 0;
    }
    /* diffusers layout: the U-Net carries almost all of the weights and identifies the model. */
    static const char *cands[] = {"unet/diffusion_pytorch_model.safetensors",
                                  "unet/diffusion_pytorch_model.fp16.safetensors",
                                  "unet/diffusion_pytorch_model.bin"};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        if ((size_t)snprintf(out, n, "%s/%s", path, cands[i]) >= n) return sd_errf(err, "%s: path too long", path);
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) return 0;
    }
    return sd_errf(err, "%s: diffusers folder without unet/diffusion_pytorch_model.safetensors", path);
}

int sd_hash_cache_path(char *out, size_t n)
{
    const char *x = getenv("XDG_CACHE_HOME");
    int k;
    if (x && x[0] == '/')  /* XDG spec: relative values are invalid and must be ignored */
        k = snprintf(out, n, "%s/sdgen/hashes.json", x);
    else if ((x = getenv("HOME")) && *x)
        k = snprintf(out, n, "%s/.cache/sdgen/hashes.json", x);
    else
        return 0;
    return k > 0 && (size_t)k < n;
}

/* mkdir -p of the parent directory of file (best effort). */
static void mkdir_parents(const char *file)
{
    char d[PATH_MAX];
    if (snprintf(d, sizeof d, "%s", file) >= (int)sizeof d) return;
    char *slash = strrchr(d, '/');
    if (!slash || slash == d) return;
    *slash = 0;
    for (char *p = d + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(d, 0755);
        *p = '/';
    }
    mkdir(d, 0755);
}

/* Read the cache (capped at 16 MiB: it holds one short entry per model file). NULL when absent/bad. */
static cJSON *cache_load(const char *cache_file)
{
    sd_err e;
    FILE *f = sd_fopen_regular(cache_file, &e); /* a FIFO or device there must not block: treat as absent */
    if (!f) return NULL;
    enum { CAP = 16 << 20 };
    char *buf = malloc(CAP + 1);
    size_t n = buf ? fread(buf, 1, CAP + 1, f) : 0;
    fclose(f);
    cJSON *root = NULL;
    if (buf && n <= CAP) {
        buf[n] = 0;
        root = cJSON_Parse(buf);
        if (root && !cJSON_IsObject(root)) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    free(buf);
    return root;
}

static int valid_hex64(const char *s)
{
    if (!s || strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int sd_model_hash_cached(const char *path, const char *cache_file, char *hex64, char *short10, sd_err *err)
{
    return sd_model_hash_cached_stop(path, cache_file, hex64, short10, NULL, err);
}

int sd_model_hash_cached_stop(const char *path, const char *cache_file, char *hex64, char *short10,
                              const volatile sig_atomic_t *stop, sd_err *err)
{
    char file[PATH_MAX], abs[PATH_MAX];
    if (sd_model_hash_file(path, file, sizeof file, err)) return -1;
    if (!realpath(file, abs)) return sd_errf(err, "%s: %s", file, strerror(errno));
    struct stat st;
    if (stat(abs, &st) != 0) return sd_errf(err, "%s: %s", abs, strerror(errno));
    char size_s[32], mtime_s[32];
    snprintf(size_s, sizeof size_s, "%lld", (long long)st.st_size);
    /* ns as a string: a JSON number is a double and would lose the low digits of a ns timestamp */
    snprintf(mtime_s, sizeof mtime_s, "%lld", (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);

    char hex[65] = {0};
    cJSON *root = cache_file ? cache_load(cache_file) : NULL;
    cJSON *ent = root ? cJSON_GetObjectItemCaseSensitive(root, abs) : NULL;
    if (ent && cJSON_IsObject(ent)) {
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, "size"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, "mtime_ns"));
        const char *h = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, "sha256"));
        if (s && m && valid_hex64(h) && !strcmp(s, size_s) && !strcmp(m, mtime_s)) memcpy(hex, h, 65);
    }
    if (!hex[0]) {
        uint8_t dg[32];
        if (sd_sha256_file_stop(abs, dg, stop, err)) {
            cJSON_Delete(root);
            return -1;
        }
        sd_sha256_hex(dg, hex);
        if (cache_file) {
            /* Update the cache; any failure here only costs a rehash next time. */
            if (!root || cJSON_GetArraySize(root) > 10000) {
                cJSON_Delete(root);
                root = cJSON_CreateObject();
            }
            cJSON *e = root ? cJSON_CreateObject() : NULL;
            if (e) {
                cJSON_AddStringToObject(e, "size", size_s);
                cJSON_AddStringToObject(e, "mtime_ns", mtime_s);
                cJSON_AddStringToObject(e, "sha256", hex);
                if (cJSON_GetObjectItemCaseSensitive(root, abs)) cJSON_ReplaceItemInObjectCaseSensitive(root, abs, e);
                else cJSON_AddItemToObject(root, abs, e);
                char *txt = cJSON_Print(root);
                struct stat cst;
                if (txt && stat(cache_file, &cst) == 0 && !S_ISREG(cst.st_mode)) {
                    /* not ours to replace (a FIFO, a device, a folder): the hash is recomputed next time */
                    free(txt);
                    txt = NULL;
                }
                if (txt) {
                    sd_err e2;
                    mkdir_parents(cache_file);
                    (void)sd_file_write_atomic(cache_file, txt, strlen(txt), &e2);
                    free(txt);
                }
            }
        }
    }
    cJSON_Delete(root);
    if (hex64) memcpy(hex64, hex, 65);
    if (short10) {
        memcpy(short10, hex, 10);
        short10[10] = 0;
    }
    return 0;
}

int sd_model_hash(const char *path, char *hex64, char *short10, sd_err *err)
{
    return sd_model_hash_stop(path, hex64, short10, NULL, err);
}

int sd_model_hash_stop(const char *path, char *hex64, char *short10, const volatile sig_atomic_t *stop, sd_err *err)
{
    char cache[PATH_MAX];
    int have = sd_hash_cache_path(cache, sizeof cache);
    return sd_model_hash_cached_stop(path, have ? cache : NULL, hex64, short10, stop, err);
}
