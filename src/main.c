/* main.c — the sdgen command line entry point; see cli.c for the commands. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "sdgen/ops.h"

/* OpenBLAS picks its kernels from the CPU model when the library loads. Under many hypervisors the
 * model is hidden ("Intel Xeon Processor") and OpenBLAS 0.3.21 falls back to its Prescott (SSE3)
 * kernels, about 5× slower than its AVX-512 ones on the same machine (docs/PERFORMANCE.md). The only
 * way to choose is OPENBLAS_CORETYPE before the library initialises, so when it is unset we set it
 * from what the CPU really supports and re-execute ourselves once. A value already in the
 * environment (some machines set one for correctness) is always respected. */
static void select_blas_kernels(char **argv)
{
#if defined(__x86_64__)
    if (getenv("OPENBLAS_CORETYPE") || getenv("SDGEN_NO_BLAS_SELECT")) return;
    const char *core = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
    if (!core) return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the library's own choice */
#else
    (void)argv; /* the hidden-model fallback above is an x86 problem: elsewhere OpenBLAS decides alone */
#endif
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
    select_blas_kernels(argv);
    if (check_cpu_kernels()) return SD_EXIT_INPUT;
    return sd_cli_main(argc, argv);
}
