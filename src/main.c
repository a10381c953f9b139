/* main.c — the sdgen command line entry point; see cli.c for the commands. */
#include "cli.h"

int main(int argc, char **argv) { return sd_cli_main(argc, argv); }
