/* common.c — error messages, the activation arena, clocks and memory figures. */
#include "sdgen/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SD_ARENA_POISON 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SD_ARENA_POISON 1
#endif
#endif
#ifdef SD_ARENA_POISON
#include <sanitizer/asan_interface.h>
#endif

static int verr(sd_err *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return -1;
}

int sd_errf(sd_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(err, SD_ERR_INPUT, fmt, ap);
    va_end(ap);
    return -1;
}

int sd_errcf(sd_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

int sd_err_prefix(sd_err *err, const char *fmt, ...)
{
    if (!err) return -1;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3;
    size_t m = strnlen(old, rest);
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = 0;
    return -1;
}

/* ---- arena ---- */

#define ARENA_ALIGN 64

static size_t align_up(size_t n) { return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1); }
static size_t header_size(void) { return align_up(sizeof(sd_arena_block)); }

/* Memory of the arena that is not handed out is poisoned under ASan (see sd_scope in common.h). */
static void arena_poison(void *p, size_t n)
{
#ifdef SD_ARENA_POISON
    ASAN_POISON_MEMORY_REGION(p, n);
#else
    (void)p, (void)n;
#endif
}

static void arena_unpoison(void *p, size_t n)
{
#ifdef SD_ARENA_POISON
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
    (void)p, (void)n;
#endif
}

static char *block_payload(sd_arena_block *b) { return (char *)b + header_size(); }

/* Out of memory: jump to the guard of the model call in flight. Without a guard the allocation
 * returns NULL and the caller reports the error: the library never prints or exits. */
static void *arena_fail(sd_arena *a)
{
    if (a->guard) longjmp(*a->guard, 1);
    return NULL;
}

static sd_arena_block *block_new(size_t size)
{
    void *p = NULL;
    if (posix_memalign(&p, ARENA_ALIGN, header_size() + size) != 0) return NULL;
    sd_arena_block *b = p;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    arena_poison(block_payload(b), size);
    return b;
}

void sd_arena_init(sd_arena *a, size_t initial_bytes, size_t limit)
{
    memset(a, 0, sizeof *a);
    a->limit = limit;
    if (initial_bytes) a->head = block_new(align_up(initial_bytes));
}

void *sd_arena_alloc(sd_arena *a, size_t bytes)
{
    size_t n = align_up(bytes ? bytes : 1);
    sd_arena_block *b = a->head;
    if (!b || b->size - b->used < n) {
        if (a->limit && a->in_use + n > a->limit) return arena_fail(a);
        size_t grow = n;
        if (b && b->size > grow) grow = b->size; /* geometric-ish growth */
        if (grow < ((size_t)64 << 20)) grow = (size_t)64 << 20;
        sd_arena_block *nb = block_new(grow);
        if (!nb) return arena_fail(a);
        nb->next = b;
        a->head = b = nb;
    }
    void *p = block_payload(b) + b->used;
    arena_unpoison(p, n);
    b->used += n;
    a->in_use += n;
    if (a->in_use > a->peak) a->peak = a->in_use;
    return p;
}

void sd_arena_reset(sd_arena *a)
{
    sd_arena_block *b = a->head;
    if (b && b->next) {
        /* Several blocks: replace them with one block as large as the peak, so the next
         * call runs without allocating. */
        while (b) {
            sd_arena_block *n = b->next;
            free(b);
            b = n;
        }
        /* When that block cannot be had the arena is left empty: the next allocation grows it again
         * and fails there, under its caller's guard, if memory is still short. */
        a->head = block_new(align_up(a->peak));
    } else if (b) {
        b->used = 0;
        arena_poison(block_payload(b), b->size);
    }
    a->in_use = 0;
}

void sd_arena_free(sd_arena *a)
{
    sd_arena_block *b = a->head;
    while (b) {
        sd_arena_block *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->in_use = 0;
}

size_t sd_arena_mark(const sd_arena *a) { return a->in_use; }

void sd_arena_release(sd_arena *a, size_t mark)
{
    /* Everything handed out since the mark is dead. It can be taken back when it all sits in the
     * current block; when the arena grew a block since the mark, the older block's tail stays
     * used until the next reset (which merges the blocks anyway). */
    if (!a->head || mark > a->in_use) return;
    size_t delta = a->in_use - mark;
    sd_arena_block *b = a->head;
    if (delta <= b->used) {
        b->used -= delta;
        a->in_use = mark;
    } else {
        a->in_use -= b->used;
        b->used = 0;
    }
    arena_poison(block_payload(b) + b->used, b->size - b->used);
}

void sd_arena_reserve(sd_arena *a, size_t bytes)
{
    sd_arena_block *before = a->head;
    if (before && before->size - before->used >= bytes) return;
    if (a->limit && a->in_use + bytes > a->limit) return; /* let the real allocations decide */
    size_t mark = sd_arena_mark(a);
    (void)sd_arena_alloc(a, bytes);
    if (a->head != before) {
        /* the new block holds only this reservation: empty it again */
        a->in_use -= a->head->used;
        a->head->used = 0;
        arena_poison(block_payload(a->head), a->head->size);
    } else {
        sd_arena_release(a, mark);
    }
}

sd_scope sd_scope_open(sd_arena *a)
{
    sd_scope s = {a->head, sd_arena_mark(a)};
    return s;
}

void sd_scope_close(sd_arena *a, sd_scope s)
{
    if (s.blk && a->head == s.blk) sd_arena_release(a, s.mark);
}

void *sd_scope_keep_bytes(sd_arena *a, sd_scope s, void *p, size_t bytes)
{
    if (!s.blk || a->head != s.blk) return p;
    sd_arena_block *b = s.blk;
    char *start = block_payload(b) + (b->used - (a->in_use - s.mark));
    if ((char *)p < start) { /* not allocated inside the scope: leave it where it is */
        sd_arena_release(a, s.mark);
        return p;
    }
    if ((char *)p != start) memmove(start, p, bytes); /* before the release poisons the source */
    sd_arena_release(a, s.mark);
    void *q = sd_arena_alloc(a, bytes); /* = start: the same block has room for it */
    return q;
}

/* ---- whole files ---- */

int sd_read_whole(const char *path, long long max_bytes, char **data, size_t *size, sd_err *err)
{
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sd_errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        close(fd);
        return sd_errf(err, "%s: not a file", path);
    }
    /* A regular file's size is known: refuse an oversized one before allocating anything. */
    if (S_ISREG(st.st_mode) && st.st_size > max_bytes) {
        close(fd);
        return sd_errf(err, "%s: file too large (%lld bytes, max %lld)", path, (long long)st.st_size, max_bytes);
    }
    /* Read to EOF (pipes and /dev/stdin too). The buffer never grows past the cap + 1 byte, the byte that
     * tells a stream longer than the cap from one exactly that long. */
    const size_t limit = (size_t)max_bytes + 1;
    size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 65536, n = 0;
    if (cap > limit) cap = limit;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= limit) {
                free(buf);
                close(fd);
                return sd_errf(err, "%s: file too large (max %lld bytes)", path, max_bytes);
            }
            const size_t nc = cap > limit / 2 ? limit : cap * 2;
            char *q = realloc(buf, nc);
            if (!q) {
                free(buf);
                close(fd);
                return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = q;
            cap = nc;
        }
        const ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            const int e = errno;
            free(buf);
            close(fd);
            return sd_errf(err, "%s: read error: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = n;
    return 0;
}

/* ---- name index ---- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int sd_name_index_init(sd_name_index *ix, int n)
{
    memset(ix, 0, sizeof *ix);
    int cap = 16;
    while (cap < 2 * n && cap < (1 << 28)) cap *= 2; /* at most half full */
    ix->keys = calloc((size_t)cap, sizeof *ix->keys);
    ix->vals = malloc((size_t)cap * sizeof *ix->vals);
    if (!ix->keys || !ix->vals) {
        sd_name_index_free(ix);
        return -1;
    }
    ix->cap = cap;
    return 0;
}

/* The slot holding name, or the empty slot where it would go (-1 if the table is full). */
static int name_slot(const sd_name_index *ix, const char *name)
{
    const uint64_t h = fnv1a(name), mask = (uint64_t)(ix->cap - 1);
    for (int i = 0; i < ix->cap; i++) {
        const int s = (int)((h + (uint64_t)i) & mask);
        if (!ix->keys[s] || !strcmp(ix->keys[s], name)) return s;
    }
    return -1;
}

int sd_name_index_add(sd_name_index *ix, const char *name, int val)
{
    const int s = ix->cap ? name_slot(ix, name) : -1;
    if (s < 0 || ix->keys[s]) return 0;
    ix->keys[s] = name;
    ix->vals[s] = val;
    return 1;
}

int sd_name_index_find(const sd_name_index *ix, const char *name)
{
    const int s = ix->cap ? name_slot(ix, name) : -1;
    return s >= 0 && ix->keys[s] ? ix->vals[s] : -1;
}

void sd_name_index_free(sd_name_index *ix)
{
    free(ix->keys);
    free(ix->vals);
    memset(ix, 0, sizeof *ix);
}

/* ---- misc ---- */

double sd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t sd_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

size_t sd_available_memory_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %zu kB", &kb) == 1) break;
    }
    fclose(f);
    return kb * 1024;
}

int sd_address_space_left(size_t *limit, size_t *left)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
    /* VmSize: the first field of /proc/self/statm, in pages (proc(5)); read without stdio, whose buffer
     * is one more allocation under the very limit being measured. */
    size_t pages = 0;
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[64];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) pages = pages * 10 + (size_t)(buf[i] - '0');
    }
    long pg = sysconf(_SC_PAGESIZE);
    size_t used = pages * (size_t)(pg > 0 ? pg : 4096);
    size_t lim = (size_t)rl.rlim_cur;
    *limit = lim;
    *left = lim > used ? lim - used : 0;
    return 1;
}

/* ---- files named by the user ---- */

const char *sd_file_kind(mode_t mode)
{
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a file";
}

int sd_open_regular(const char *path, struct stat *st, sd_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return sd_errcf(err, e == ENOMEM ? SD_ERR_NOMEM : SD_ERR_INPUT, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return sd_errf(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sd_errf(err, "%s: not a regular file (%s)", path, sd_file_kind(sb.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return sd_errf(err, "%s: cannot open: %s", path, strerror(e));
    }
    if (st) *st = sb;
    return fd;
}

FILE *sd_fopen_regular(const char *path, sd_err *err)
{
    int fd = sd_open_regular(path, NULL, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        sd_errcf(err, e == ENOMEM ? SD_ERR_NOMEM : SD_ERR_INPUT, "%s: cannot open: %s", path, strerror(e));
    }
    return f;
}

int64_t sd_find_nonfinite(const float *x, size_t n)
{
    /* On the bits: an exponent of all ones is Inf or NaN (IEEE 754 binary32). Cheap enough to run on
     * every latent after every step. */
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        if ((u & 0x7f800000u) == 0x7f800000u) return (int64_t)i;
    }
    return -1;
}
