/* cli.c — dispatch `sdgen [COMMAND] ...` to the subcommands. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "commands.h"

int sd_cli_main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("sdgen %s\n", SDGEN_VERSION);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "info")) return sd_cmd_info(argc - 1, argv + 1);
    /* tokenize: wired once cmd_tokenize.c lands */
    fprintf(stderr, "sdgen: usage: sdgen info MODEL | sdgen tokenize TEXT | sdgen --version\n");
    return 2;
}
