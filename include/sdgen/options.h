/* sdgen/options.h — the ranges of the numeric settings, shared by the command line and the batch file,
 * the strict number parsers both use, and text made safe to print in a message.
 *
 * One table (options.c) holds every numeric setting once: its batch-file key (the golden case.json name),
 * its command-line option, its kind and its range. `--steps 0` and `"steps": 0` are therefore refused by
 * the same check with the same bounds (docs/RELIABILITY.md, "Robustness round 2, part B").
 *
 * Number syntax (strict: the whole text, no white space, no '+', no hex, no inf/nan):
 *   integer  -?[0-9]+           a '-' only where the range allows negative values; no overflow
 *   u64      [0-9]+             0 … 2^64−1
 *   real     -?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?   finite (JSON numbers are a subset)
 *   size     ([0-9]+(\.[0-9]*)?|\.[0-9]+)[kKmMgGtT]?[bB]?   K, M, G, T = 10^3, 10^6, 10^9, 10^12 bytes;
 *            a whole number of bytes ("1.5G" yes, "0.5" and "1.0001K" no)
 */
#ifndef SDGEN_OPTIONS_H
#define SDGEN_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "sdgen/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SD_NUM_INT, SD_NUM_U64, SD_NUM_REAL, SD_NUM_SIZE } sd_num_kind;

typedef struct sd_num_opt {
    const char *key;  /* batch-file key; NULL: a command-line-only setting */
    const char *opt;  /* long command-line option; NULL: a batch-file-only key */
    sd_num_kind kind;
    double lo, hi;    /* inclusive range (SD_NUM_SIZE: bytes); unused for SD_NUM_U64 */
    int lo_open;      /* lo itself is outside the range */
    int multiple;     /* > 1: the value must be a multiple of it */
} sd_num_opt;

typedef struct sd_num {
    long long i;      /* SD_NUM_INT */
    uint64_t u;       /* SD_NUM_U64, SD_NUM_SIZE (bytes) */
    double d;         /* every kind */
} sd_num;

/* The table entry of a batch-file key ("steps") or a long option ("--steps"); NULL when there is none. */
const sd_num_opt *sd_num_opt_by_key(const char *key);
const sd_num_opt *sd_num_opt_by_opt(const char *opt);

/* Parse `text` as o's kind and check o's range. `name` is how the setting is named in the message
 * (the option as typed, or "\"steps\"" for a batch key): NAME expects an integer in [1, 1000], got "0". */
int sd_num_parse(const sd_num_opt *o, const char *name, const char *text, sd_num *out, sd_err *err);

/* The strict parsers alone (syntax above); 0 = ok, -1 = not such a number or out of the type's range. */
int sd_parse_ll(const char *s, int allow_minus, long long *out);
int sd_parse_u64(const char *s, uint64_t *out);
int sd_parse_real(const char *s, double *out);
int sd_parse_size(const char *s, uint64_t *bytes);

/* Copy s into out (n bytes, always terminated) with what could drive a terminal or forge a line escaped:
 * \n \t \r, other C0 controls and DEL as \xHH, C1 controls (U+0080..U+009F) as \u00HH, bytes that are not
 * UTF-8 as \xHH. Cut on a character boundary when out is full. Returns the length written. */
size_t sd_escape_text(const char *s, char *out, size_t n);
/* Does s hold a control character (C0, DEL or C1)? Returns its 1-based byte offset, else 0. */
size_t sd_find_control(const char *s);

#ifdef __cplusplus
}
#endif
#endif
