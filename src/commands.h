/* commands.h — the sdgen subcommands; each returns the process exit code (SD_EXIT_*). */
#ifndef SDGEN_COMMANDS_H
#define SDGEN_COMMANDS_H
int sd_cmd_info(int argc, char **argv);     /* cmd_info.c */
int sd_cmd_tokenize(int argc, char **argv); /* cmd_tokenize.c */
int sd_cmd_generate(int argc, char **argv); /* cmd_generate.c */
int sd_cmd_bench(int argc, char **argv);    /* cmd_bench.c */
#endif
