/* cli.c — dispatch `sdgen [COMMAND] ...`: info, tokenize, bench, manifest, serve, or (default) generate. */
#include "cli.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "sdgen/common.h"
#include "sdgen/options.h"

int sd_cli_exit_code(int status)
{
    switch (status) {
    case SD_OK: return SD_EXIT_OK;
    case SD_ERR_NOMEM: return SD_EXIT_OOM;
    case SD_ERR_INTERRUPTED: return SD_EXIT_INTERRUPTED;
    default: return SD_EXIT_INPUT;
    }
}

void sd_cli_vsay(const char *who, const char *fmt, va_list ap)
{
    char raw[4096], safe[8192];
    vsnprintf(raw, sizeof raw, fmt, ap);
    sd_escape_text(raw, safe, sizeof safe);
    fprintf(stderr, "%s: %s\n", who, safe);
}

void sd_cli_say(const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sd_cli_vsay(who, fmt, ap);
    va_end(ap);
}

/* Model files are mapped (safetensors.c), and F32 weights are read straight from the mapping by every
 * op, on every thread. When the file is truncated (or rewritten through a truncation, as cp and most
 * editors do) while sdgen runs, the next read of a page past the new end raises SIGBUS with si_code
 * BUS_ADRERR (mmap(2): "access to a portion of the buffer that does not correspond to the file").
 * No computation can continue from there, so the handler reports it in one line and exits with the
 * bad-input code; nothing half-written is left, since PNGs are only written after the image is done
 * (temporary file, then rename). Other SIGBUS causes get the default action. */
static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    if (si && si->si_code == BUS_ADRERR) {
        static const char msg[] = "sdgen: the model file changed while in use (truncated or rewritten while sdgen "
                                  "was reading it); the image in progress was abandoned\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(SD_EXIT_INPUT);
    }
    signal(sig, SIG_DFL);
    raise(sig); /* pending until the handler returns, then the default action */
}

static void guard_mapped_files(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

int sd_cli_main(int argc, char **argv)
{
    guard_mapped_files();
    if (argc > 1 && !strcmp(argv[1], "info")) return sd_cmd_info(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "tokenize")) return sd_cmd_tokenize(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "bench")) return sd_cmd_bench(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "manifest")) return sd_cmd_manifest(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "serve")) return sd_cmd_serve(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "generate")) return sd_cmd_generate(argc - 1, argv + 1);
    return sd_cmd_generate(argc, argv);
}
