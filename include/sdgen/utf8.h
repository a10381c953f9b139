/* sdgen/utf8.h — strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF),
 * the one decoder every reader of user text uses (prompts, batch files, PNG text, messages). */
#ifndef SDGEN_UTF8_H
#define SDGEN_UTF8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Length (1-4) of the well-formed sequence at s, with n bytes available, and its code point in *cp
 * (cp may be NULL); 0 when the bytes there are not one. Stops at the first byte that breaks the
 * sequence, so a NUL terminator is never read past. */
int sd_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* 0 when the NUL-terminated s is well-formed, else the 1-based position of the first byte that
 * makes it not: an impossible lead byte, or the continuation byte that breaks a sequence. */
size_t sd_utf8_bad_byte(const char *s);
/* cp (at most U+10FFFF) encoded into out; returns the 1-4 bytes written. */
int sd_utf8_encode(uint32_t cp, char *out);

#ifdef __cplusplus
}
#endif
#endif
