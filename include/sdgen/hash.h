/* sdgen/hash.h — SHA-256 (FIPS 180-4) and the AUTOMATIC1111 "Model hash".
 *
 * A1111 (modules/sd_models.py, modules/hashes.py) writes "Model hash: " + the first 10 hex digits of
 * the SHA-256 of the whole checkpoint file into its infotext. Hashing a 2–7 GB file takes seconds, so
 * the result is cached in $XDG_CACHE_HOME/sdgen/hashes.json (else ~/.cache/sdgen/hashes.json), keyed by
 * the file's absolute path and validated by its size and mtime (ns): a changed file is rehashed.
 * A cache that cannot be read or written is ignored (never an error).
 *
 *     char hex[65], short10[11];
 *     if (sd_model_hash(path, hex, short10, &err)) ...
 */
#ifndef SDGEN_HASH_H
#define SDGEN_HASH_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "sdgen/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_sha256 {
    uint32_t h[8];
    uint64_t nbytes;      /* total bytes fed so far */
    uint8_t buf[64];
    size_t nbuf;          /* bytes pending in buf */
} sd_sha256;

void sd_sha256_init(sd_sha256 *s);
void sd_sha256_update(sd_sha256 *s, const void *data, size_t n);
void sd_sha256_final(sd_sha256 *s, uint8_t digest[32]);
/* One shot over a buffer. */
void sd_sha256_buf(const void *data, size_t n, uint8_t digest[32]);
/* 32 bytes -> 64 lowercase hex digits + NUL. */
void sd_sha256_hex(const uint8_t digest[32], char hex[65]);

/* SHA-256 of a whole file, read in 4 MiB blocks (no mmap: works on pipes/NFS the same). */
int sd_sha256_file(const char *path, uint8_t digest[32], sd_err *err);
/* Same, giving up (code SD_ERR_INTERRUPTED, "PATH: interrupted while hashing") as soon as *stop is
 * non-zero when a block starts; stop may be NULL. */
int sd_sha256_file_stop(const char *path, uint8_t digest[32], const volatile sig_atomic_t *stop, sd_err *err);

/* The file whose hash names a model: `path` itself for a single-file checkpoint; for a diffusers
 * folder its U-Net weights (unet/diffusion_pytorch_model.safetensors, then .fp16.safetensors, then
 * .bin). Writes the chosen path into out (size n). */
int sd_model_hash_file(const char *path, char *out, size_t n, sd_err *err);

/* SHA-256 of the model (see sd_model_hash_file), through the cache. hex64 (65 bytes) receives the full
 * digest, short10 (11 bytes) the A1111 "Model hash"; either may be NULL. */
int sd_model_hash(const char *path, char *hex64, char *short10, sd_err *err);

/* Same with an explicit cache file (NULL: no cache). Used by tests; sd_model_hash() calls it with
 * sd_hash_cache_path(). */
int sd_model_hash_cached(const char *path, const char *cache_file, char *hex64, char *short10,
                         sd_err *err);

/* The two above with a stop flag, as sd_sha256_file_stop (the CLI's SIGINT/SIGTERM flag). */
int sd_model_hash_stop(const char *path, char *hex64, char *short10, const volatile sig_atomic_t *stop, sd_err *err);
int sd_model_hash_cached_stop(const char *path, const char *cache_file, char *hex64, char *short10,
                              const volatile sig_atomic_t *stop, sd_err *err);

/* $XDG_CACHE_HOME/sdgen/hashes.json or $HOME/.cache/sdgen/hashes.json; 0 when neither is set. */
int sd_hash_cache_path(char *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
