/* utf8.c — strict UTF-8 decoding and encoding (see sdgen/utf8.h). The ranges of each byte follow
 * RFC 3629 §4 (Table 3-7 of the Unicode standard): they exclude overlong forms and surrogates by
 * construction, so no code point needs checking afterwards. */
#include "sdgen/utf8.h"

/* Continuation bytes after lead c, and the allowed range of the first of them. -1: not a lead. */
static int utf8_lead(unsigned c, unsigned *lo, unsigned *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c < 0x80) return 0;
    if (c >= 0xC2 && c <= 0xDF) return 1;
    if (c == 0xE0) return *lo = 0xA0, 2;
    if (c == 0xED) return *hi = 0x9F, 2; /* U+D800..U+DFFF are surrogates */
    if (c >= 0xE1 && c <= 0xEF) return 2;
    if (c == 0xF0) return *lo = 0x90, 3;
    if (c >= 0xF1 && c <= 0xF3) return 3;
    if (c == 0xF4) return *hi = 0x8F, 3; /* nothing past U+10FFFF */
    return -1;
}

/* Bytes of the sequence at s that are well-formed (1 + continuations) before it breaks; *ok = 1 when
 * the whole sequence is. */
static int utf8_scan(const unsigned char *s, size_t n, uint32_t *cp, int *ok)
{
    unsigned lo, hi;
    *ok = 0;
    if (n == 0) return 0;
    const int k = utf8_lead(s[0], &lo, &hi);
    if (k < 0) return 0;
    uint32_t v = k == 0 ? s[0] : k == 1 ? (s[0] & 0x1Fu) : k == 2 ? (s[0] & 0x0Fu) : (s[0] & 0x07u);
    for (int i = 1; i <= k; i++) {
        if ((size_t)i >= n) return i;
        const unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) return i;
        v = v << 6 | (b & 0x3F);
    }
    if (cp) *cp = v;
    *ok = 1;
    return k + 1;
}

int sd_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    int ok;
    const int len = utf8_scan(s, n, cp, &ok);
    return ok ? len : 0;
}

size_t sd_utf8_bad_byte(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (s[i]) {
        int ok;
        const int len = utf8_scan(s + i, 4, NULL, &ok);
        if (!ok) return i + (size_t)len + 1;
        i += (size_t)len;
    }
    return 0;
}

int sd_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}
