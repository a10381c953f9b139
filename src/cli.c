/* cli.c — argument parsing and the sdgen commands (generate, info, tokenize, bench). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int sd_cli_main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("sdgen %s\n", SDGEN_VERSION);
        return 0;
    }
    fprintf(stderr, "sdgen: the command line is being assembled; only --version works in this build\n");
    return 2;
}
