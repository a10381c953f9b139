/* commands.h — the sdgen subcommands; each returns the process exit code (SD_EXIT_*). */
#ifndef SDGEN_COMMANDS_H
#define SDGEN_COMMANDS_H
#include <stdarg.h>

/* Process exit codes (README "Exit codes"). */
enum {
    SD_EXIT_OK = 0,
    SD_EXIT_ITEMS_FAILED = 1,  /* a batch ran, some items failed */
    SD_EXIT_INPUT = 2,         /* usage error or bad input file */
    SD_EXIT_OOM = 3,           /* not enough memory */
    SD_EXIT_INTERRUPTED = 130, /* SIGINT */
    SD_EXIT_TERMINATED = 143   /* SIGTERM */
};

/* The exit code of a library failure status (sd_status of sd_err.code): input 2, memory 3,
 * interrupted 130 (the generator says 143 itself when SIGTERM was the cause). cli.c. */
int sd_cli_exit_code(int status);

int sd_cmd_info(int argc, char **argv);     /* cmd_info.c */
int sd_cmd_tokenize(int argc, char **argv); /* cmd_tokenize.c */
int sd_cmd_generate(int argc, char **argv); /* cmd_generate.c */
int sd_cmd_bench(int argc, char **argv);    /* cmd_bench.c */
int sd_cmd_manifest(int argc, char **argv); /* cmd_manifest.c */
int sd_cmd_serve(int argc, char **argv);    /* cmd_serve.c: in the sdgen program, not the library */
/* One message line on stderr, "WHO: text", with the control characters of the text escaped
 * (sd_escape_text): paths, option values and file contents inside it come from the user. cli.c. */
void sd_cli_say(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sd_cli_vsay(const char *who, const char *fmt, va_list ap);
#endif
