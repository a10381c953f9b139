/* commands.h — the sdgen subcommands; each returns the process exit code (SD_EXIT_*). */
#ifndef SDGEN_COMMANDS_H
#define SDGEN_COMMANDS_H
#include <stdarg.h>
int sd_cmd_info(int argc, char **argv);     /* cmd_info.c */
int sd_cmd_tokenize(int argc, char **argv); /* cmd_tokenize.c */
int sd_cmd_generate(int argc, char **argv); /* cmd_generate.c */
int sd_cmd_bench(int argc, char **argv);    /* cmd_bench.c */
int sd_cmd_serve(int argc, char **argv);    /* cmd_serve.c: in the sdgen program, not the library */
/* One message line on stderr, "WHO: text", with the control characters of the text escaped
 * (sd_escape_text): paths, option values and file contents inside it come from the user. cli.c. */
void sd_cli_say(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sd_cli_vsay(const char *who, const char *fmt, va_list ap);
#endif
