/* testutil.h — the little test harness every tests/test_*.c uses.
 *
 * CHECK(cond, fmt, ...) records a failure with a message and goes on; CHECK_CLOSE compares
 * two float arrays with an absolute tolerance and prints max abs / max rel error and where;
 * TEST_MAIN_END prints the "N passed, M failed" line and returns the exit code.
 * sd_test_path("golden/cases/p1-tiny-sd1-ddim/unet0_out.npy") resolves under $SDGEN_SHARED.
 * The reference data there is optional: a test that needs it and finds none reports a skip
 * (exit code 77, which tests/CMakeLists.txt declares as ctest's SKIP_RETURN_CODE) rather than a
 * failure: sd_test_require_shared() for tests made of such checks only, sd_test_skip_shared()
 * for a part of a test (the rest still runs; TEST_MAIN_END returns 77 if nothing failed).
 */
#ifndef SDGEN_TESTUTIL_H
#define SDGEN_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int t_pass, t_fail, t_skip;

/* The whole file at path, NUL-terminated (so text can be used as a string), its size in *len (may be
 * NULL); NULL when it cannot be read. The caller frees it. */
static inline char *sd_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        if (len) *len = (size_t)n;
    }
    return b;
}
static inline char *sd_test_read_text(const char *path) { return sd_test_read_file(path, NULL); }

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (cond) {                                                               \
            t_pass++;                                                             \
        } else {                                                                  \
            t_fail++;                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                  \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                \
        }                                                                         \
    } while (0)

/* Compare n floats; tolerance: |got - want| <= atol for every element. Prints the errors. */
static inline int check_close_impl(const char *what, const float *got, const float *want, long n,
                                   double atol, const char *file, int line)
{
    double max_abs = 0, max_rel = 0, max_ref = 0;
    long where = -1, nan = 0;
    for (long i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (isnan(g) != isnan(w)) { nan++; where = i; continue; }
        double d = fabs(g - w);
        double r = d / (fabs(w) > 1e-12 ? fabs(w) : 1e-12);
        if (d > max_abs) { max_abs = d; where = i; }
        if (r > max_rel) max_rel = r;
        if (fabs(w) > max_ref) max_ref = fabs(w);
    }
    int ok = max_abs <= atol && nan == 0;
    if (ok) {
        t_pass++;
        printf("ok   %s: n=%ld max_abs=%.3g (tol %.3g) max_rel=%.3g max|ref|=%.3g\n", what, n, max_abs, atol, max_rel, max_ref);
    } else {
        t_fail++;
        fprintf(stderr, "FAIL %s:%d: %s: n=%ld max_abs=%.3g > tol %.3g (max_rel=%.3g, nan mismatches %ld) at %ld: got %.9g want %.9g\n",
                file, line, what, n, max_abs, atol, max_rel, nan, where, where >= 0 ? got[where] : 0.0,
                where >= 0 ? want[where] : 0.0);
    }
    return ok;
}
#define CHECK_CLOSE(what, got, want, n, atol) check_close_impl(what, got, want, (long)(n), atol, __FILE__, __LINE__)

static inline const char *sd_test_shared(void)
{
    const char *s = getenv("SDGEN_SHARED");
    return s && *s ? s : "../shared";
}

/* Path under $SDGEN_SHARED (static buffer rotated among 8 entries). */
static inline const char *sd_test_path(const char *rel)
{
    static char bufs[8][4096];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 4096, "%s/%s", sd_test_shared(), rel);
    return b;
}

/* 1 when the reference data is there (its golden/ folder). */
static inline int sd_test_have_shared(void)
{
    struct stat st;
    return stat(sd_test_path("golden"), &st) == 0 && S_ISDIR(st.st_mode);
}

/* Without the reference data: say so and leave the part `what` out (returns 1), counted for
 * TEST_MAIN_END. Where the data is there but a file in it is missing, the test's own checks fail. */
static inline int sd_test_skip_shared(const char *what)
{
    if (sd_test_have_shared()) return 0;
    t_skip++;
    printf("SKIP %s: the reference data is not at %s (set SDGEN_SHARED)\n", what, sd_test_shared());
    return 1;
}

/* For tests that check nothing without the reference data: exit 77 (skipped) when it is absent. */
static inline void sd_test_require_shared(void)
{
    if (sd_test_have_shared()) return;
    printf("SKIP: the reference data is not at %s (set SDGEN_SHARED)\n", sd_test_shared());
    exit(77);
}

/* Scratch directory for test outputs ($SDGEN_TEST_TMP, created). */
static inline const char *sd_test_tmp(void)
{
    static char buf[4096];
    const char *s = getenv("SDGEN_TEST_TMP");
    snprintf(buf, sizeof buf, "%s", s && *s ? s : "/tmp/sdgen-test");
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", buf);
    if (system(cmd) != 0) fprintf(stderr, "cannot create %s\n", buf);
    return buf;
}

#define TEST_MAIN_END()                                                                       \
    do {                                                                                      \
        printf("%d passed, %d failed", t_pass, t_fail);                                       \
        if (t_skip) printf(", %d part(s) skipped", t_skip);                                   \
        printf("\n");                                                                         \
        return t_fail ? 1 : t_skip ? 77 : 0;                                                  \
    } while (0)

#endif
