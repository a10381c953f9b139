/* common.c — error messages, the activation arena, clocks and memory figures. */
#include "sdgen/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

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
    verr(err, SD_EXIT_INPUT, fmt, ap);
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

static void arena_fail(sd_arena *a, size_t bytes)
{
    if (a->guard) longjmp(*a->guard, 1);
    fprintf(stderr, "sdgen: out of memory allocating %zu bytes of activations\n", bytes);
    exit(SD_EXIT_OOM);
}

static sd_arena_block *block_new(size_t size)
{
    void *p = NULL;
    if (posix_memalign(&p, ARENA_ALIGN, header_size() + size) != 0) return NULL;
    sd_arena_block *b = p;
    b->next = NULL;
    b->size = size;
    b->used = 0;
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
        if (a->limit && a->in_use + n > a->limit) arena_fail(a, bytes);
        size_t grow = n;
        if (b && b->size > grow) grow = b->size; /* geometric-ish growth */
        if (grow < ((size_t)64 << 20)) grow = (size_t)64 << 20;
        sd_arena_block *nb = block_new(grow);
        if (!nb) arena_fail(a, bytes);
        nb->next = b;
        a->head = b = nb;
    }
    void *p = (char *)b + header_size() + b->used;
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
        a->head = block_new(align_up(a->peak));
        if (!a->head) arena_fail(a, a->peak);
    } else if (b) {
        b->used = 0;
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
    if (delta <= a->head->used) {
        a->head->used -= delta;
        a->in_use = mark;
    } else {
        a->in_use -= a->head->used;
        a->head->used = 0;
    }
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
        return sd_errcf(err, e == ENOMEM ? SD_EXIT_OOM : SD_EXIT_INPUT, "%s: cannot open: %s", path, strerror(e));
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
        sd_errcf(err, e == ENOMEM ? SD_EXIT_OOM : SD_EXIT_INPUT, "%s: cannot open: %s", path, strerror(e));
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
