/* sdgen/json.h — the body of a JSON string literal (RFC 8259 §7), decoded strictly: the one
 * unescaper behind the batch-file reader (batch.c) and the infotext parser (params.c), whose inputs
 * are untrusted text. (cJSON parses whole documents; these readers need the position of a problem
 * and the raw text of numbers, so they walk the text themselves and share this part.) */
#ifndef SDGEN_JSON_H
#define SDGEN_JSON_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sd_json_error {
    SD_JSON_OK = 0,
    SD_JSON_UNTERMINATED, /* no closing quote */
    SD_JSON_CONTROL,      /* a raw control character (below U+0020) */
    SD_JSON_BAD_ESCAPE,   /* a backslash followed by something else than "\/bfnrtu */
    SD_JSON_BAD_U,        /* \u not followed by four hex digits */
    SD_JSON_SURROGATE,    /* a UTF-16 surrogate escape without its pair */
    SD_JSON_NUL           /* \u0000: not representable in a C string */
} sd_json_error;

/* Decode the string body at s (just past the opening quote; n bytes available) up to and including
 * the closing quote. out (NULL: check only) receives the UTF-8 text and a NUL: it needs n + 1 bytes
 * (a decoded body is never longer than its source). *used: bytes consumed, the closing quote
 * included; *at: offset from s of the problem when the result is not SD_JSON_OK. */
sd_json_error sd_json_string(const char *s, size_t n, char *out, size_t *used, size_t *at);

#ifdef __cplusplus
}
#endif
#endif
