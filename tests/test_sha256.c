/* test_sha256.c — SHA-256 against the FIPS 180-4 / NIST CSRC example vectors, streaming vs one-shot,
 * file hashing across the 4 MiB read blocks, the golden tiny-sd1 checkpoint's published SHA-256, and the
 * A1111 model-hash cache (hit, invalidation by mtime, unwritable cache, diffusers folder). */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sdgen/hash.h"
#include "testutil.h"

static void hex_of(const void *d, size_t n, char hex[65])
{
    uint8_t dg[32];
    sd_sha256_buf(d, n, dg);
    sd_sha256_hex(dg, hex);
}

static void test_vectors(void)
{
    static const struct { const char *msg, *want; } V[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[65];
    for (size_t i = 0; i < sizeof V / sizeof *V; i++) {
        hex_of(V[i].msg, strlen(V[i].msg), hex);
        CHECK(!strcmp(hex, V[i].want), "sha256(\"%.20s...\") = %s, want %s", V[i].msg, hex, V[i].want);
    }
    /* one million 'a' (FIPS 180-2 appendix B.3), fed in uneven pieces */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sd_sha256 s;
    sd_sha256_init(&s);
    size_t off = 0, step = 1;
    while (off < 1000000) {
        size_t k = step < 1000000 - off ? step : 1000000 - off;
        sd_sha256_update(&s, a + off, k);
        off += k;
        step = step * 3 % 1031 + 1;
    }
    uint8_t dg[32];
    sd_sha256_final(&s, dg);
    sd_sha256_hex(dg, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "million a: %s", hex);
    free(a);
    /* padding edge lengths 55, 56, 63, 64, 65: streaming byte by byte == one shot */
    uint8_t buf[130];
    for (int i = 0; i < 130; i++) buf[i] = (uint8_t)(i * 37 + 1);
    int lens[] = {55, 56, 63, 64, 65, 119, 120, 128};
    for (size_t t = 0; t < sizeof lens / sizeof *lens; t++) {
        char h1[65], h2[65];
        hex_of(buf, (size_t)lens[t], h1);
        sd_sha256_init(&s);
        for (int i = 0; i < lens[t]; i++) sd_sha256_update(&s, buf + i, 1);
        sd_sha256_final(&s, dg);
        sd_sha256_hex(dg, h2);
        CHECK(!strcmp(h1, h2), "length %d: streaming differs", lens[t]);
    }
}

static void write_file(const char *path, const uint8_t *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(d, 1, n, f);
        fclose(f);
    }
}

static void test_files(const char *tmp)
{
    /* 9 MiB + 123 bytes: three read blocks, the last partial */
    size_t n = (9u << 20) + 123;
    uint8_t *d = malloc(n);
    uint32_t x = 1;
    for (size_t i = 0; i < n; i++) { x = x * 1664525u + 1013904223u; d[i] = (uint8_t)(x >> 24); }
    char path[4200], want[65], got[65];
    snprintf(path, sizeof path, "%s/blob.bin", tmp);
    write_file(path, d, n);
    hex_of(d, n, want);
    uint8_t dg[32];
    sd_err err = {0};
    int rc = sd_sha256_file(path, dg, &err);
    sd_sha256_hex(dg, got);
    CHECK(rc == 0 && !strcmp(got, want), "file hash %s vs buffer %s (%s)", got, want, err.msg);
    free(d);
    rc = sd_sha256_file("/nonexistent/file.safetensors", dg, &err);
    CHECK(rc != 0 && strstr(err.msg, "/nonexistent/file.safetensors"), "missing file: '%s'", err.msg);

    /* the golden checkpoint's SHA-256 as listed in docs/SEMANTICS.md §14.1 */
    if (sd_test_skip_shared("golden checkpoint hash")) return;
    const char *ck = sd_test_path("golden/models/tiny-sd1.safetensors");
    char h[65], s10[11];
    rc = sd_model_hash_cached(ck, NULL, h, s10, &err);
    CHECK(rc == 0 && !strcmp(h, "20fd32b15764ee05be59f4cc7f06c4a6fd57af769398eb08f8895b218860e644") && !strcmp(s10, "20fd32b157"),
          "tiny-sd1.safetensors: %s / %s (%s)", h, s10, err.msg);
}

static void test_cache(const char *tmp)
{
    char model[4200], cache[4200], h[65], s10[11];
    sd_err err = {0};
    snprintf(model, sizeof model, "%s/model.safetensors", tmp);
    snprintf(cache, sizeof cache, "%s/cache/sdgen/hashes.json", tmp);
    unlink(cache);
    write_file(model, (const uint8_t *)"abc", 3);
    int rc = sd_model_hash_cached(model, cache, h, s10, &err);
    CHECK(rc == 0 && !strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") && !strcmp(s10, "ba7816bf8f"),
          "first hash: %s (%s)", h, err.msg);
    CHECK(access(cache, R_OK) == 0, "cache file %s not written", cache);

    /* Prove the cache is used: plant a different digest for the same size+mtime */
    FILE *f = fopen(cache, "rb");
    char buf[8192] = {0};
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    char *p = strstr(buf, "ba7816bf");
    CHECK(p != NULL, "cache does not hold the digest");
    if (p) {
        memcpy(p, "00000000", 8);
        write_file(cache, (const uint8_t *)buf, n);
        rc = sd_model_hash_cached(model, cache, h, s10, &err);
        CHECK(rc == 0 && !strcmp(s10, "000000008f"), "cache hit expected, got %s", s10);
    }
    /* Changed content and mtime: rehashed */
    struct timespec ts[2] = {{0, 0}, {1000000000, 123456789}};
    write_file(model, (const uint8_t *)"abd", 3);
    utimensat(AT_FDCWD, model, ts, 0);
    rc = sd_model_hash_cached(model, cache, h, s10, &err);
    char want[65];
    hex_of("abd", 3, want);
    CHECK(rc == 0 && !strcmp(h, want), "after mtime change: %s want %s", h, want);
    /* same size, only the ns part of mtime differs: still rehashed */
    ts[1].tv_nsec = 123456790;
    write_file(model, (const uint8_t *)"abe", 3);
    utimensat(AT_FDCWD, model, ts, 0);
    rc = sd_model_hash_cached(model, cache, h, s10, &err);
    hex_of("abe", 3, want);
    CHECK(rc == 0 && !strcmp(h, want), "after a 1 ns mtime change: %s want %s", h, want);

    /* A cache that cannot be written is not an error */
    rc = sd_model_hash_cached(model, "/proc/sdgen-no/hashes.json", h, s10, &err);
    CHECK(rc == 0 && !strcmp(h, want), "unwritable cache: rc %d (%s)", rc, err.msg);
    /* A corrupt cache is ignored and replaced */
    write_file(cache, (const uint8_t *)"{not json", 9);
    rc = sd_model_hash_cached(model, cache, h, s10, &err);
    CHECK(rc == 0 && !strcmp(h, want), "corrupt cache: rc %d (%s)", rc, err.msg);

    /* diffusers folder: the U-Net weights name the model */
    char dir[4200], unet[4300], file[4400];
    snprintf(dir, sizeof dir, "%s/diffusers-model", tmp);
    snprintf(unet, sizeof unet, "%s/unet", dir);
    mkdir(dir, 0755);
    mkdir(unet, 0755);
    snprintf(file, sizeof file, "%s/diffusion_pytorch_model.safetensors", unet);
    unlink(file); /* left by an earlier run */
    rc = sd_model_hash_file(dir, file, sizeof file, &err);
    CHECK(rc != 0 && strstr(err.msg, "unet"), "diffusers folder without unet weights: '%s'", err.msg);
    snprintf(file, sizeof file, "%s/diffusion_pytorch_model.safetensors", unet);
    write_file(file, (const uint8_t *)"abc", 3);
    char chosen[4400];
    rc = sd_model_hash_file(dir, chosen, sizeof chosen, &err);
    CHECK(rc == 0 && !strcmp(chosen, file), "diffusers hash file: %s", chosen);
    rc = sd_model_hash_cached(dir, NULL, h, s10, &err);
    CHECK(rc == 0 && !strcmp(s10, "ba7816bf8f"), "diffusers folder hash %s", s10);

    /* cache location from the environment */
    char cp[4096];
    setenv("XDG_CACHE_HOME", "/x/cache", 1);
    CHECK(sd_hash_cache_path(cp, sizeof cp) && !strcmp(cp, "/x/cache/sdgen/hashes.json"), "XDG path %s", cp);
    setenv("XDG_CACHE_HOME", "relative", 1);
    setenv("HOME", "/home/u", 1);
    CHECK(sd_hash_cache_path(cp, sizeof cp) && !strcmp(cp, "/home/u/.cache/sdgen/hashes.json"), "HOME path %s", cp);
}

/* The stop flag (SIGINT/SIGTERM in the CLI) ends hashing between blocks: set before the call, not one
 * block is hashed, and the model-hash path passes the flag through without touching the cache. */
static void test_stop(const char *tmp)
{
    char path[4200], cache[4200];
    snprintf(path, sizeof path, "%s/stop.bin", tmp);
    snprintf(cache, sizeof cache, "%s/stop-cache.json", tmp);
    unlink(cache);
    size_t n = 9u << 20;
    uint8_t *d = calloc(1, n);
    write_file(path, d, n);
    free(d);
    volatile sig_atomic_t stop = 0;
    uint8_t dg[32];
    sd_err err = {0};
    CHECK(sd_sha256_file_stop(path, dg, &stop, &err) == 0, "flag clear: hashed (%s)", err.msg);
    stop = SIGINT;
    err = (sd_err){0};
    int rc = sd_sha256_file_stop(path, dg, &stop, &err);
    CHECK(rc != 0 && err.code == SD_ERR_INTERRUPTED && strstr(err.msg, "interrupted while hashing"),
          "flag set: rc %d code %d '%s'", rc, err.code, err.msg);
    char h[65], s10[11];
    err = (sd_err){0};
    rc = sd_model_hash_cached_stop(path, cache, h, s10, &stop, &err);
    CHECK(rc != 0 && err.code == SD_ERR_INTERRUPTED && access(cache, F_OK) != 0,
          "model hash with the flag set: rc %d code %d, no cache written", rc, err.code);
    stop = 0;
    rc = sd_model_hash_cached_stop(path, cache, h, s10, &stop, &err);
    CHECK(rc == 0 && access(cache, F_OK) == 0 && !strcmp(h, "d2ee4703cd9698945ca7b9fe1689ea3095597eac1a0afd8dba00cac7894fdc43"),
          "flag clear: SHA-256 of 9 MiB of zeros %s", h);
}

int main(void)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/sha256", sd_test_tmp());
    mkdir(tmp, 0755);
    test_vectors();
    test_files(tmp);
    test_cache(tmp);
    test_stop(tmp);
    TEST_MAIN_END();
}
