/* json.c — a JSON string literal's body, decoded (see sdgen/json.h). */
#include "sdgen/json.h"

#include "sdgen/utf8.h"

static int hex4(const char *s, unsigned *v)
{
    *v = 0;
    for (int d = 0; d < 4; d++) {
        const char h = s[d];
        const unsigned x = h >= '0' && h <= '9'   ? (unsigned)(h - '0')
                           : h >= 'a' && h <= 'f' ? (unsigned)(h - 'a' + 10)
                           : h >= 'A' && h <= 'F' ? (unsigned)(h - 'A' + 10)
                                                  : 99u;
        if (x > 15) return -1;
        *v = *v * 16 + x;
    }
    return 0;
}

sd_json_error sd_json_string(const char *s, size_t n, char *out, size_t *used, size_t *at)
{
    size_t i = 0, k = 0;
    for (;;) {
        *at = i;
        if (i >= n) return SD_JSON_UNTERMINATED;
        const unsigned char c = (unsigned char)s[i];
        if (c == '"') break;
        if (c < 0x20) return SD_JSON_CONTROL;
        if (c != '\\') {
            if (out) out[k++] = (char)c;
            i++;
            continue;
        }
        if (i + 1 >= n) return SD_JSON_UNTERMINATED;
        const char e = s[i + 1];
        char lit;
        switch (e) {
        case '"': lit = '"'; break;
        case '\\': lit = '\\'; break;
        case '/': lit = '/'; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': {
            unsigned v, lo;
            if (i + 6 > n || hex4(s + i + 2, &v)) return SD_JSON_BAD_U;
            i += 6;
            if (v >= 0xD800 && v <= 0xDBFF) { /* a high surrogate: its low half must follow */
                if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u' || hex4(s + i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return *at = i - 6, SD_JSON_SURROGATE;
                i += 6;
                v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
            } else if (v >= 0xDC00 && v <= 0xDFFF) {
                return *at = i - 6, SD_JSON_SURROGATE;
            }
            if (v == 0) return *at = i - 6, SD_JSON_NUL;
            if (out) k += (size_t)sd_utf8_encode(v, out + k);
            continue;
        }
        default: return SD_JSON_BAD_ESCAPE;
        }
        if (out) out[k++] = lit;
        i += 2;
    }
    if (out) out[k] = 0;
    *used = i + 1;
    return SD_JSON_OK;
}
