/* sdgen/common.h — error reporting and the activation arena shared by every module.
 *
 * Errors: every fallible function returns int (0 = ok, non-zero = failure) and fills an
 * sd_err for its caller; main() prints the message once. sd_errf() formats the message and
 * returns -1, so a check reads  `if (bad) return sd_errf(err, "%s: bad thing", path);`.
 * The `code` field says why (sd_status): the library's own codes, which the command line maps to
 * its exit codes (cli.c sd_cli_exit_code) and the public API to sdgen_status (api.c).
 *
 * Arena: activations of one model call are bump-allocated from an sd_arena and released all
 * at once with sd_arena_reset(). The arena grows by blocks while the first step finds its
 * peak; the next reset merges the blocks into one, so later steps never call malloc. When a
 * block cannot be had the arena jumps to the guard of the model call in flight (`guard` below),
 * which turns it into an SD_ERR_NOMEM error instead of crashing; with no guard set the allocation
 * returns NULL and the caller checks for it. The library never prints or exits on its own.
 */
#ifndef SDGEN_COMMON_H
#define SDGEN_COMMON_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Why a call failed (sd_err.code). */
typedef enum sd_status {
    SD_OK = 0,
    SD_ERR_INPUT = 1,      /* a bad argument, option, or input file (model, vocabulary, image, batch) */
    SD_ERR_NOMEM = 2,      /* not enough memory (or address space) for what was asked */
    SD_ERR_INTERRUPTED = 3 /* stopped on request (a signal, a cancel flag) between steps */
} sd_status;

typedef struct sd_err {
    int code;       /* sd_status; SD_ERR_INPUT unless set otherwise */
    char msg[1024]; /* one line, no trailing newline */
} sd_err;

/* Format msg into err (if err is non-NULL), set code = SD_ERR_INPUT, return -1. */
int sd_errf(sd_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same with an explicit status. */
int sd_errcf(sd_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix an existing message: "prefix: old message". Returns -1. */
int sd_err_prefix(sd_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- arena ---- */
typedef struct sd_arena_block {
    struct sd_arena_block *next;
    size_t size, used;
    /* 64-byte aligned payload follows */
} sd_arena_block;

typedef struct sd_arena {
    sd_arena_block *head;   /* current block (newest first) */
    size_t in_use;          /* bytes handed out since the last reset */
    size_t peak;            /* largest in_use seen */
    size_t limit;           /* 0 = no limit; else refuse to grow past this many bytes */
    jmp_buf *guard;         /* where to jump when memory runs out (NULL: sd_arena_alloc returns NULL) */
} sd_arena;

void sd_arena_init(sd_arena *a, size_t initial_bytes, size_t limit);
void *sd_arena_alloc(sd_arena *a, size_t bytes);     /* 64-byte aligned; NULL only when out of memory with no guard */
void sd_arena_reset(sd_arena *a);                    /* free everything handed out */
void sd_arena_free(sd_arena *a);
size_t sd_arena_mark(const sd_arena *a);             /* for scoped release inside a call */
void sd_arena_release(sd_arena *a, size_t mark);     /* free what was handed out since the mark */
/* Make sure the current block has `bytes` free (adding one block if needed, inside the caller's
 * guard), so that the scopes of the call that follows can give their memory back. */
void sd_arena_reserve(sd_arena *a, size_t bytes);

/* Scopes: the lifetime of everything a block of model code allocates, weights converted for it
 * included (model.h, sd_model_weight). Open one where the block starts; sd_scope_close frees what
 * was allocated since; sd_scope_keep (tensor.h) frees all but the block's output. Memory is given
 * back only when it all sits in the block the scope started in: while the first call grows the
 * arena, a new block keeps its contents until the next reset (later calls run in one block).
 * Under AddressSanitizer released memory is poisoned, so a read of anything used past the end
 * of its scope (an activation or a converted weight) is reported where it happens. */
typedef struct sd_scope {
    sd_arena_block *blk;
    size_t mark;
} sd_scope;

sd_scope sd_scope_open(sd_arena *a);
void sd_scope_close(sd_arena *a, sd_scope s);
/* Free everything allocated since s except the `bytes` at p, which move down to the scope's start;
 * returns their new address (p itself when p was not allocated inside the scope). */
void *sd_scope_keep_bytes(sd_arena *a, sd_scope s, void *p, size_t bytes);

/* Use around a model call:
 *   jmp_buf jb; if (setjmp(jb)) { a->guard = NULL; return sd_errcf(err, SD_ERR_NOMEM, ...); }
 *   a->guard = &jb; ... ; a->guard = NULL;                                              */

/* ---- whole files ----
 * The whole of an untrusted file (or pipe) into *data (malloc'd, *size bytes), refused past max_bytes:
 * a regular file by its size before anything is read, a stream as soon as it passes the cap. */
int sd_read_whole(const char *path, long long max_bytes, char **data, size_t *size, sd_err *err);

/* ---- name index ----
 * Names to indices by open addressing (FNV-1a, linear probing), for tensor tables of up to a few
 * hundred thousand names. The names are not copied: they must outlive the index. */
typedef struct sd_name_index {
    const char **keys; /* cap slots, NULL = empty */
    int *vals;
    int cap;
} sd_name_index;

/* Room for n names; -1 when out of memory. */
int sd_name_index_init(sd_name_index *ix, int n);
/* 1 when added, 0 when the name is already there (the index is unchanged). */
int sd_name_index_add(sd_name_index *ix, const char *name, int val);
/* The value of name, or -1. */
int sd_name_index_find(const sd_name_index *ix, const char *name);
void sd_name_index_free(sd_name_index *ix);

/* ---- misc ---- */
double sd_now(void);                 /* monotonic seconds */
size_t sd_peak_rss_bytes(void);      /* from getrusage */
size_t sd_available_memory_bytes(void); /* MemAvailable from /proc/meminfo, 0 if unknown */
/* The address-space limit (RLIMIT_AS, `ulimit -v`) in bytes and how much of it is not mapped yet
 * (limit − VmSize). Returns 0 when there is no limit (both outputs then untouched), 1 otherwise. */
int sd_address_space_left(size_t *limit, size_t *left);

/* ---- files named by the user ----
 * Model files, init images, configs, vocabularies and the hash cache are opened through these:
 * the open is non-blocking, so that a FIFO (or a device) named by mistake or on purpose cannot
 * hang it, then fstat refuses everything that is not a regular file, and O_NONBLOCK is cleared
 * again (POSIX open(2): O_NONBLOCK on a FIFO opened for reading returns at once). */
/* Descriptor (O_CLOEXEC) or -1 with err: "PATH: cannot open: REASON", or "PATH: not a regular file
 * (a FIFO)" etc. (exit code 2). st (may be NULL) receives the fstat result. */
int sd_open_regular(const char *path, struct stat *st, sd_err *err);
/* The same as a stdio stream ("rb"), or NULL with err. */
FILE *sd_fopen_regular(const char *path, sd_err *err);
/* "a directory", "a FIFO", "a character device", ... for messages. */
const char *sd_file_kind(mode_t mode);

/* Index of the first NaN or ±Inf in x[0..n), or -1 when all are finite. */
int64_t sd_find_nonfinite(const float *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
