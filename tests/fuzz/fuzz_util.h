/* fuzz_util.h — helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * The loaders under test take paths (they mmap or fopen their input, as sdgen does with real
 * files), so each target writes its input to files in a private scratch folder: /dev/shm when
 * it exists (no disk traffic at thousands of executions a second), else $TMPDIR or /tmp. The
 * folder is made once per process and removed at exit.
 *
 * Multi-file inputs (a diffusers folder's config.json files, a vocab.json + merges.txt pair)
 * are one fuzzer input cut into parts at FUZZ_SEP; the dictionaries (*.dict) contain it so
 * the mutator can create and remove part boundaries.
 */
#ifndef SDGEN_FUZZ_UTIL_H
#define SDGEN_FUZZ_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_SEP "\x01\x02"
#define FUZZ_SEP_LEN 2
#define FUZZ_MAX_PARTS 8
#define FUZZ_FN static __attribute__((unused))

static char fuzz_dir_buf[512];

FUZZ_FN void fuzz_rm_tree(const char *dir)
{
    /* Scratch folders hold only what the targets write: a fixed, shallow set of names. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) { /* best effort */
    }
}

FUZZ_FN void fuzz_cleanup(void)
{
    if (fuzz_dir_buf[0]) fuzz_rm_tree(fuzz_dir_buf);
}

/* Remove scratch folders left by earlier target processes that died (a crash skips atexit):
 * names carry the owner's pid, so only folders of processes that no longer exist go. */
FUZZ_FN void fuzz_sweep(const char *base)
{
    DIR *d = opendir(base);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid;
        char tail[16];
        if (sscanf(e->d_name, "sdgen-fuzz-%ld-%15s", &pid, tail) != 2 || pid <= 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[768];
        snprintf(path, sizeof path, "%s/%s", base, e->d_name);
        fuzz_rm_tree(path);
    }
    closedir(d);
}

/* The process's scratch folder (created on first use). */
FUZZ_FN const char *fuzz_dir(void)
{
    if (fuzz_dir_buf[0]) return fuzz_dir_buf;
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : (getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    fuzz_sweep(base);
    snprintf(fuzz_dir_buf, sizeof fuzz_dir_buf, "%s/sdgen-fuzz-%ld-XXXXXX", base, (long)getpid());
    if (!mkdtemp(fuzz_dir_buf)) {
        perror("mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup);
    return fuzz_dir_buf;
}

/* Write n bytes to dir/rel (rel may contain one level of sub-folder, created as needed). */
FUZZ_FN void fuzz_write(const char *rel, const uint8_t *data, size_t n, char *path_out, size_t cap)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), rel);
    char *slash = strrchr(path, '/');
    if (slash && slash > path + strlen(fuzz_dir())) {
        *slash = 0;
        mkdir(path, 0700);
        *slash = '/';
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w <= 0) {
            perror("write");
            abort();
        }
        off += (size_t)w;
    }
    close(fd);
    if (path_out) snprintf(path_out, cap, "%s", path);
}

FUZZ_FN void fuzz_unlink(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), rel);
    unlink(path);
}

/* Cut data into at most FUZZ_MAX_PARTS parts at FUZZ_SEP; returns the count (≥ 1). */
typedef struct {
    const uint8_t *p;
    size_t n;
} fuzz_part;

FUZZ_FN int fuzz_split(const uint8_t *data, size_t n, fuzz_part *parts)
{
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i + FUZZ_SEP_LEN <= n && k < FUZZ_MAX_PARTS - 1; i++) {
        if (!memcmp(data + i, FUZZ_SEP, FUZZ_SEP_LEN)) {
            parts[k].p = data + start;
            parts[k].n = i - start;
            k++;
            start = i + FUZZ_SEP_LEN;
            i = start - 1;
        }
    }
    parts[k].p = data + start;
    parts[k].n = n - start;
    return k + 1;
}

/* Is the "a message is one line" check on? FUZZ_ONE_LINE=0 turns it off, for long runs once a
 * known multi-line-message bug has been reported (see docs/FUZZING.md). */
FUZZ_FN int fuzz_one_line_check(void)
{
    const char *e = getenv("FUZZ_ONE_LINE");
    return !(e && !strcmp(e, "0"));
}

/* NUL-terminated copy of a byte range (caller frees). */
FUZZ_FN char *fuzz_strndup(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

#endif
