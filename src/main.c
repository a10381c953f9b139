/* main.c — the sdgen command line entry point; see cli.c for the commands. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "sdgen/ops.h"

/* OpenBLAS picks its kernels from the CPU model when the library loads. Under many hypervisors the
 * model is hidden ("Intel Xeon Processor") and OpenBLAS 0.3.21 falls back to its Prescott (SSE3)
 * kernels, about 5× slower than its AVX-512 ones on the same machine (docs/PERFORMANCE.md). The only
 * way to choose is OPENBLAS_CORETYPE before the library initialises, so when it is unset we set it
 * from what the CPU really supports and re-execute ourselves once. A value already in the
 * environment (some machines set one for correctness) is always respected. */
static int select_blas_kernels(void)
{
#if defined(__x86_64__)
    if (getenv("OPENBLAS_CORETYPE")) return 0;
    const char *core = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
    if (!core) return 0;
    setenv("OPENBLAS_CORETYPE", core, 1);
    return 1;
#else
    return 0; /* the hidden-model fallback above is an x86 problem: elsewhere OpenBLAS decides alone */
#endif
}

/* OpenBLAS's pthread build starts one worker per CPU when it loads, and each worker maps a 128 MiB
 * buffer as it starts and retries forever when the mmap fails (memory.c blas_memory_alloc). Under an
 * address-space limit (ulimit -v) that is a thread spinning at 100% from the start and a process that
 * never exits (the library's exit handler joins it). sdgen never lets OpenBLAS use its workers (ops.c
 * splits the products over its own threads), so with a finite RLIMIT_AS OpenBLAS is started with one
 * thread; an OPENBLAS_NUM_THREADS already set is respected. */
static int limit_blas_threads(void)
{
    struct rlimit rl;
    if (getenv("OPENBLAS_NUM_THREADS") || getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    return 1;
}

/* libgomp lets a thread that reaches the end of a parallel region spin for a while before it sleeps
 * (OMP_WAIT_POLICY unset; libgomp manual, GOMP_SPINCOUNT). On a machine whose cores other programs
 * also use, a spinning thread takes the core its partner needs, and every parallel region then waits
 * for a descheduled thread. Measured with the SD 2.1 layout on 2 shared cores at load 6-8: the text
 * encoder (about 600 short regions per prompt at 77 tokens) took 2.0-6.5 s by default against 1.1-1.9 s
 * with OMP_WAIT_POLICY=passive, and a whole 512x512 image (1 step, TAESD) 33-36 s against 16.5-20 s;
 * on a quiet machine the two measure alike (docs/PERFORMANCE.md, "OpenMP wait policy"). So passive is
 * the default; a policy or spin count already in the environment is respected. libgomp reads it when
 * it loads, hence the re-execution. */
static int select_wait_policy(void)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return 0;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    return 1;
}

/* Conditions of the process that must not kill a run or corrupt its files:
 *  - SIGPIPE: stdout or stderr piped into a reader that quit (`sdgen -q ... | head -1`). Ignored, a write
 *    then fails with EPIPE, and the generator stops printing but finishes the batch.
 *  - SIGXFSZ: a file size limit (ulimit -f) below a PNG's size. Ignored, the write fails with EFBIG and is
 *    reported as a write error, the temporary file removed (POSIX setrlimit RLIMIT_FSIZE).
 *  - fds 0-2 closed by the caller (`sdgen ... >&-`): the next open() would return 1 or 2 and printf would
 *    write into a PNG or the hash cache. They are opened on /dev/null first.
 * Ignored dispositions survive the exec in select_blas_kernels (POSIX execve). */
static void harden_process(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        int nfd = open("/dev/null", O_RDWR);
        if (nfd >= 0 && nfd != fd) close(nfd); /* lowest free descriptor: normally fd itself */
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
}

/* $SDGEN_CPU forces a CPU kernel set (docs/ARCHITECTURE.md "CPU backend"); the library would
 * ignore a name this machine cannot run, so it is checked here and refused with exit code 2. */
static int check_cpu_kernels(void)
{
    const char *want = getenv("SDGEN_CPU");
    if (!want || !*want) return 0;
    sd_err err;
    if (sd_cpu_select(want, &err) == 0) return 0;
    fprintf(stderr, "sdgen: SDGEN_CPU: %s\n", err.msg);
    return -1;
}

int main(int argc, char **argv)
{
    harden_process();
    /* Both settings are read when OpenBLAS initialises, before main: re-execute once to apply them. */
    if (!getenv("SDGEN_NO_BLAS_SELECT")) {
        int again = limit_blas_threads();
        again |= select_blas_kernels();
        again |= select_wait_policy();
        if (again) execv("/proc/self/exe", argv);
        /* exec failed: carry on with the library's own choices */
    }
    if (check_cpu_kernels()) return SD_EXIT_INPUT;
    return sd_cli_main(argc, argv);
}
