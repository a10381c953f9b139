/* cli.c — dispatch `sdgen [COMMAND] ...`: info, tokenize, bench, serve, or (default) generate. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "sdgen/options.h"

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

int sd_cli_main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "info")) return sd_cmd_info(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "tokenize")) return sd_cmd_tokenize(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "bench")) return sd_cmd_bench(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "serve")) return sd_cmd_serve(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "generate")) return sd_cmd_generate(argc - 1, argv + 1);
    return sd_cmd_generate(argc, argv);
}
