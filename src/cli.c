/* cli.c — dispatch `sdgen [COMMAND] ...`: info, tokenize, bench, or (default) generate. */
#include "cli.h"

#include <string.h>

#include "commands.h"

int sd_cli_main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "info")) return sd_cmd_info(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "tokenize")) return sd_cmd_tokenize(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "bench")) return sd_cmd_bench(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "generate")) return sd_cmd_generate(argc - 1, argv + 1);
    return sd_cmd_generate(argc, argv);
}
