/* cli.h — command-line front end (cli.c). */
#ifndef SDGEN_CLI_H
#define SDGEN_CLI_H
int sd_cli_main(int argc, char **argv);
#endif
