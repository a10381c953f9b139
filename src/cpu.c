/* cpu.c — which CPU kernel table the ops use (ops_internal.h, docs/ARCHITECTURE.md "CPU backend").
 *
 * The tables are built once: "generic" everywhere; on x86-64 also "avx2" (needs AVX2, FMA and
 * F16C) and "avx512" (needs AVX-512F as well). The features come from GCC's
 * __builtin_cpu_supports, which also checks that the OS saves the wide registers (XCR0), and
 * F16C from CPUID leaf 1 (clang 14 knows no "f16c" name for the builtin). The best table the
 * CPU supports is used unless $SDGEN_CPU names another when the first kernel runs, or
 * sd_cpu_select() picks one. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ops_internal.h"
#include "sdgen/ops.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

enum { CPU_GENERIC, CPU_AVX2, CPU_AVX512, CPU_TABLES };

static const char *const table_names[CPU_TABLES] = {"generic", "avx2", "avx512"};

/* Filled once by cpu_init (pthread_once); n_usable: tables 0 .. n_usable-1 run on this CPU. */
static sd_cpu_kernels tables[CPU_TABLES];
static int n_usable;
static const sd_cpu_kernels *active;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int cpu_level(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    unsigned a = 0, b = 0, c = 0, d = 0;
    const int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)) return CPU_GENERIC;
    return __builtin_cpu_supports("avx512f") ? CPU_AVX512 : CPU_AVX2;
#else
    return CPU_GENERIC;
#endif
}

static int table_index(const char *name)
{
    for (int i = 0; i < CPU_TABLES; i++)
        if (!strcmp(name, table_names[i])) return i;
    return -1;
}

static void cpu_init(void)
{
    const int level = cpu_level();
    sd_cpu_fill_generic(&tables[CPU_GENERIC]);
#if defined(__x86_64__)
    if (level >= CPU_AVX2) {
        tables[CPU_AVX2] = tables[CPU_GENERIC];
        sd_cpu_fill_avx2(&tables[CPU_AVX2]);
    }
    if (level >= CPU_AVX512) {
        tables[CPU_AVX512] = tables[CPU_GENERIC];
        sd_cpu_fill_avx512(&tables[CPU_AVX512]);
    }
#endif
    n_usable = level + 1;
    active = &tables[level];
    /* A name this CPU cannot run is left to sd_cpu_select's caller to report (main.c). */
    const char *env = getenv("SDGEN_CPU");
    const int want = env && *env ? table_index(env) : -1;
    if (want >= 0 && want < n_usable) active = &tables[want];
}

const sd_cpu_kernels *sd_cpu(void)
{
    pthread_once(&once, cpu_init);
    return active;
}

const char *sd_cpu_name(void) { return sd_cpu()->name; }

int sd_cpu_available(const char *name)
{
    pthread_once(&once, cpu_init);
    const int i = name ? table_index(name) : -1;
    return i >= 0 && i < n_usable;
}

int sd_cpu_select(const char *name, sd_err *err)
{
    pthread_once(&once, cpu_init);
    if (!name || !strcmp(name, "auto")) {
        active = &tables[n_usable - 1];
        return 0;
    }
    const int i = table_index(name);
    if (i < 0)
        return sd_errf(err, "unknown CPU kernel set '%s' (expected auto, generic, avx2 or avx512)", name);
    if (i >= n_usable)
        return sd_errf(err, "CPU kernel set '%s' is not available on this machine (best here: %s)", name,
                       table_names[n_usable - 1]);
    active = &tables[i];
    return 0;
}
