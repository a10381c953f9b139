/* image.c — PNG output with text metadata, init-image loading, PIL-exact Lanczos resize, atomic writes
 * (image.h). stb_image / stb_image_write are compiled here, and only here. */
#include "sdgen/image.h"
#include "sdgen/utf8.h"

#include "sdgen/options.h" /* sd_find_control */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

/* stb: PNG and JPEG only (smaller attack surface for untrusted init images), no stdio (we read the
 * file ourselves under a size cap), dimensions capped in the decoder too (loosely, so that the
 * header read reports the size for the "image too large (WxH)" message). PNG deflate goes through
 * zlib (smaller files than stb's own compressor). */
static unsigned char *sd_stbiw_zlib(unsigned char *data, int data_len, int *out_len, int quality);
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
/* Zeroed allocations: stb_image 2.27 mallocs its JPEG decoder state without clearing it, so a file that
 * uses a Huffman table it never defined decodes with garbage tables (uninitialised reads, indices out of
 * bounds; found by fuzzing). With calloc an undefined table is all zeros, which decodes harmlessly.
 * Its internal consistency asserts are reachable from malformed files: they must not abort a debug
 * or sanitizer build, and the decoder stays in bounds without them (the index is range-checked first). */
#define STBI_MALLOC(sz) calloc(1, (sz))
#define STBI_REALLOC(p, newsz) realloc((p), (newsz))
#define STBI_FREE(p) free(p)
#define STBI_ASSERT(x) ((void)0)
#define STBI_MAX_DIMENSIONS (1 << 20) /* our own, tighter caps run on the header's size first */
#define STB_IMAGE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#define STBIW_ZLIB_COMPRESS sd_stbiw_zlib
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#ifdef __clang__
/* stb_image has benign undefined behaviour on malformed input (NULL + 0 for an empty first IDAT, shifts
 * by negative bit counts in a corrupt JPEG bit stream): UBSan would stop every fuzzing run on it.
 * AddressSanitizer still checks the stb code. (GCC has no way to do this per function: a GCC UBSan
 * build needs -fno-sanitize=shift,pointer-overflow on this file.) */
#pragma clang attribute push(__attribute__((no_sanitize("undefined"))), apply_to = function)
#endif
#include <stb_image.h>
#include <stb_image_write.h>
#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC diagnostic pop

static unsigned char *sd_stbiw_zlib(unsigned char *data, int data_len, int *out_len, int quality)
{
    (void)quality;
    uLongf cap = compressBound((uLong)data_len);
    unsigned char *out = malloc(cap);
    if (!out) return NULL;
    if (compress2(out, &cap, data, (uLong)data_len, 6) != Z_OK || cap > INT_MAX) {
        free(out);
        return NULL;
    }
    *out_len = (int)cap;
    return out;
}

void sd_image_free(sd_image *im)
{
    if (!im) return;
    free(im->rgb);
    im->rgb = NULL;
    im->w = im->h = 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* CRC-32 (PNG spec §5.5 / ISO 3309), table-driven. */

uint32_t sd_crc32(uint32_t crc, const void *data, size_t n)
{
    static uint32_t table[256];
    static int ready; /* benign race: every thread computes the same table */
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ------------------------------------------------------------------------------------------------ */
/* UTF-8 helpers. */

/* ------------------------------------------------------------------------------------------------ */
/* PNG text chunks. */

static int valid_keyword(const char *k)
{
    /* PNG spec §11.3.4.2: 1–79 bytes of printable Latin-1, no leading/trailing/double spaces. */
    size_t n = strlen(k);
    if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ') return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (!((c >= 32 && c <= 126) || c >= 161)) return 0;
        if (c == ' ' && k[i + 1] == ' ') return 0;
    }
    return 1;
}

int sd_png_insert_text(const uint8_t *png, size_t n, const char *keyword, const char *text,
                       uint8_t **out, size_t *out_len, sd_err *err)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    *out = NULL;
    *out_len = 0;
    if (n < 33 || memcmp(png, sig, 8) || get_be32(png + 8) != 13 || memcmp(png + 12, "IHDR", 4))
        return sd_errf(err, "PNG encoder output does not start with IHDR");
    if (!valid_keyword(keyword)) return sd_errf(err, "invalid PNG text keyword \"%s\"", keyword);
    size_t tlen = strlen(text);
    if (tlen > SD_PNG_TEXT_MAX) return sd_errf(err, "PNG text too long (%zu bytes, max %d)", tlen, SD_PNG_TEXT_MAX);

    /* Decide tEXt vs iTXt as PIL's PngInfo.add_text does: Latin-1 if every code point fits. */
    int latin1 = 1;
    size_t nlat = 0;
    for (size_t i = 0; i < tlen;) {
        uint32_t cp;
        int l = sd_utf8_decode((const unsigned char *)text + i, tlen - i, &cp);
        if (!l) return sd_errf(err, "PNG text is not valid UTF-8 (byte %zu)", i);
        if (cp > 0xFF) latin1 = 0;
        i += (size_t)l;
        nlat++;
    }
    size_t klen = strlen(keyword);
    size_t dlen = latin1 ? klen + 1 + nlat : klen + 1 + 2 + 1 + 1 + tlen; /* iTXt: flag, method, "", "" */
    size_t total = n + 12 + dlen;
    uint8_t *o = malloc(total);
    if (!o) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the PNG");
    memcpy(o, png, 33);
    uint8_t *c = o + 33;
    put_be32(c, (uint32_t)dlen);
    memcpy(c + 4, latin1 ? "tEXt" : "iTXt", 4);
    uint8_t *d = c + 8;
    memcpy(d, keyword, klen);
    d[klen] = 0;
    d += klen + 1;
    if (latin1) {
        for (size_t i = 0; i < tlen;) {
            uint32_t cp;
            i += (size_t)sd_utf8_decode((const unsigned char *)text + i, tlen - i, &cp);
            *d++ = (uint8_t)cp;
        }
    } else {
        *d++ = 0; /* compression flag: uncompressed */
        *d++ = 0; /* compression method */
        *d++ = 0; /* empty language tag */
        *d++ = 0; /* empty translated keyword */
        memcpy(d, text, tlen);
        d += tlen;
    }
    put_be32(d, sd_crc32(0, c + 4, 4 + dlen)); /* CRC covers type + data */
    memcpy(d + 4, png + 33, n - 33);
    *out = o;
    *out_len = total;
    return 0;
}

static int read_file_capped(const char *path, long long cap, uint8_t **data, size_t *n, sd_err *err);

typedef struct { uint8_t *p; size_t n, cap; int failed; } membuf;

static void membuf_write(void *ctx, void *data, int size)
{
    membuf *m = ctx;
    if (m->failed || size <= 0) return;
    if (m->n + (size_t)size > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 65536;
        while (cap < m->n + (size_t)size) cap *= 2;
        uint8_t *p = realloc(m->p, cap);
        if (!p) { m->failed = 1; return; }
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, (size_t)size);
    m->n += (size_t)size;
}

int sd_png_encode(const uint8_t *rgb, int w, int h, const char *keyword, const char *text,
                  uint8_t **png, size_t *png_len, sd_err *err)
{
    *png = NULL;
    *png_len = 0;
    if (w <= 0 || h <= 0 || w > SD_IMAGE_MAX_SIDE || h > SD_IMAGE_MAX_SIDE)
        return sd_errf(err, "cannot encode a %dx%d PNG", w, h);
    membuf m = {0};
    if (!stbi_write_png_to_func(membuf_write, &m, w, h, 3, rgb, w * 3) || m.failed) {
        free(m.p);
        return sd_errcf(err, SD_ERR_NOMEM, "PNG encoding failed (%dx%d): out of memory", w, h);
    }
    if (!text) {
        *png = m.p;
        *png_len = m.n;
        return 0;
    }
    int rc = sd_png_insert_text(m.p, m.n, keyword ? keyword : "parameters", text, png, png_len, err);
    free(m.p);
    return rc;
}

/* Inflate a zTXt / compressed iTXt payload, capped at SD_PNG_TEXT_MAX bytes. */
static int inflate_capped(const uint8_t *src, size_t n, uint8_t **out, size_t *out_len)
{
    size_t cap = SD_PNG_TEXT_MAX;
    uint8_t *buf = malloc(cap + 1);
    if (!buf) return -1;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) { free(buf); return -1; }
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)n;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    int r = inflate(&zs, Z_FINISH);
    size_t got = cap - zs.avail_out;
    inflateEnd(&zs);
    if (r != Z_STREAM_END) { free(buf); return -1; }
    buf[got] = 0;
    *out = buf;
    *out_len = got;
    return 0;
}

int sd_png_read_text_mem(const uint8_t *png, size_t n, const char *name, const char *keyword,
                         char **text, int *is_itxt, sd_err *err)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    *text = NULL;
    if (is_itxt) *is_itxt = 0;
    if (n < 8 || memcmp(png, sig, 8)) return sd_errf(err, "%s: not a PNG file", name);
    size_t klen = strlen(keyword);
    size_t pos = 8;
    while (pos < n) {
        if (n - pos < 12) return sd_errf(err, "%s: truncated PNG chunk at byte %zu", name, pos);
        uint32_t len = get_be32(png + pos);
        if (len > 0x7FFFFFFFu || len > n - pos - 12)
            return sd_errf(err, "%s: PNG chunk length %u at byte %zu runs past the end", name, len, pos);
        const uint8_t *type = png + pos + 4, *d = png + pos + 8;
        if (sd_crc32(0, type, 4 + (size_t)len) != get_be32(d + len))
            return sd_errf(err, "%s: CRC mismatch in PNG chunk %.4s at byte %zu", name, (const char *)type, pos);
        if (!memcmp(type, "IEND", 4)) break;
        int kind = !memcmp(type, "tEXt", 4) ? 1 : !memcmp(type, "zTXt", 4) ? 2 : !memcmp(type, "iTXt", 4) ? 3 : 0;
        if (kind && len > klen && !memcmp(d, keyword, klen) && d[klen] == 0) {
            const uint8_t *p = d + klen + 1, *end = d + len;
            uint8_t *raw = NULL;
            size_t rawn = 0;
            int latin1 = kind != 3;
            if (kind == 1) {
                rawn = (size_t)(end - p);
                if (rawn > SD_PNG_TEXT_MAX) return sd_errf(err, "%s: PNG text chunk too long", name);
                raw = malloc(rawn + 1);
                if (!raw) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", name);
                memcpy(raw, p, rawn);
            } else if (kind == 2) {
                if (p >= end || *p != 0) return sd_errf(err, "%s: zTXt with an unknown compression method", name);
                if (inflate_capped(p + 1, (size_t)(end - p - 1), &raw, &rawn))
                    return sd_errf(err, "%s: corrupt zTXt chunk", name);
            } else {
                if (end - p < 2) return sd_errf(err, "%s: truncated iTXt chunk", name);
                int compressed = p[0];
                if (p[1] != 0) return sd_errf(err, "%s: iTXt with an unknown compression method", name);
                p += 2;
                for (int skip = 0; skip < 2; skip++) { /* language tag, translated keyword */
                    const uint8_t *z = memchr(p, 0, (size_t)(end - p));
                    if (!z) return sd_errf(err, "%s: truncated iTXt chunk", name);
                    p = z + 1;
                }
                if (compressed) {
                    if (inflate_capped(p, (size_t)(end - p), &raw, &rawn))
                        return sd_errf(err, "%s: corrupt compressed iTXt chunk", name);
                } else {
                    rawn = (size_t)(end - p);
                    if (rawn > SD_PNG_TEXT_MAX) return sd_errf(err, "%s: PNG text chunk too long", name);
                    raw = malloc(rawn + 1);
                    if (!raw) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", name);
                    memcpy(raw, p, rawn);
                }
                if (is_itxt) *is_itxt = 1;
            }
            if (latin1) { /* Latin-1 -> UTF-8: at most 2 bytes each */
                char *u = malloc(2 * rawn + 1);
                if (!u) { free(raw); return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", name); }
                size_t k = 0;
                for (size_t i = 0; i < rawn; i++) {
                    uint8_t c = raw[i];
                    if (c < 0x80) u[k++] = (char)c;
                    else { u[k++] = (char)(0xC0 | c >> 6); u[k++] = (char)(0x80 | (c & 0x3F)); }
                }
                u[k] = 0;
                free(raw);
                *text = u;
            } else {
                raw[rawn] = 0;
                *text = (char *)raw;
            }
            return 0;
        }
        pos += 12 + (size_t)len;
    }
    return 0;
}

/* Read a whole file under a size cap. */
static int read_file_capped(const char *path, long long cap, uint8_t **data, size_t *n, sd_err *err)
{
    *data = NULL;
    *n = 0;
    struct stat st;
    int fd = sd_open_regular(path, &st, err); /* a FIFO must not block the open */
    if (fd < 0) return -1;
    if (st.st_size > cap) {
        close(fd);
        return sd_errf(err, "%s: file too large (%lld bytes, max %lld)", path, (long long)st.st_size, cap);
    }
    size_t sz = (size_t)st.st_size;
    uint8_t *buf = malloc(sz ? sz : 1);
    if (!buf) {
        close(fd);
        return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, sz);
    }
    size_t got = 0;
    while (got < sz) {
        ssize_t r = read(fd, buf + got, sz - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            free(buf);
            close(fd);
            return sd_errf(err, "%s: read error: %s", path, r < 0 ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *n = sz;
    return 0;
}

int sd_png_read_text(const char *path, const char *keyword, char **text, int *is_itxt, sd_err *err)
{
    uint8_t *d;
    size_t n;
    *text = NULL;
    if (read_file_capped(path, SD_IMAGE_MAX_FILE_BYTES, &d, &n, err)) return -1;
    int rc = sd_png_read_text_mem(d, n, path, keyword, text, is_itxt, err);
    free(d);
    return rc;
}

/* Bytes of filtered scanlines the IDAT stream must inflate to (PNG spec, ISO/IEC 15948 §7–8: one filter
 * byte per row, Adam7 passes for interlace method 1); 0 for an IHDR the spec does not allow. */
static uint64_t png_raw_size(const uint8_t *ihdr)
{
    uint32_t w = get_be32(ihdr), h = get_be32(ihdr + 4);
    unsigned depth = ihdr[8], ctype = ihdr[9], interlace = ihdr[12];
    unsigned ch = ctype == 0 ? 1 : ctype == 2 ? 3 : ctype == 3 ? 1 : ctype == 4 ? 2 : ctype == 6 ? 4 : 0;
    int depth_ok = depth == 8 || (depth == 16 && ctype != 3) ||
                   ((depth == 1 || depth == 2 || depth == 4) && (ctype == 0 || ctype == 3));
    if (!w || !h || w > 0x7FFFFFFFu || h > 0x7FFFFFFFu || !ch || !depth_ok || interlace > 1) return 0;
    static const int pass[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                   {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    uint64_t total = 0;
    for (int k = 0; k < (interlace ? 7 : 1); k++) {
        uint64_t pw = interlace ? ((uint64_t)w + (uint64_t)(pass[k][2] - pass[k][0] - 1)) / (uint64_t)pass[k][2] : w;
        uint64_t ph = interlace ? ((uint64_t)h + (uint64_t)(pass[k][3] - pass[k][1] - 1)) / (uint64_t)pass[k][3] : h;
        if (!pw || !ph) continue;
        total += ph * (1 + (pw * ch * depth + 7) / 8);
    }
    return total;
}

/* Inflate the concatenated IDAT data through a small window (nothing is kept) and compare the size with
 * what IHDR implies: a file whose chunks are intact but whose image data was cut or padded fails here. */
static int png_idat_ok(const uint8_t *png, size_t n, const char *name, sd_err *err)
{
    if (get_be32(png + 8) != 13) return sd_errf(err, "%s: PNG IHDR chunk is not 13 bytes", name);
    uint64_t want = png_raw_size(png + 16);
    if (!want) return sd_errf(err, "%s: PNG IHDR holds an invalid size or pixel format", name);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory for zlib", name);
    uint8_t window[1 << 16];
    uint64_t got = 0;
    int r = Z_OK, seen = 0;
    for (size_t pos = 8; pos + 12 <= n && r != Z_STREAM_END;) {
        uint32_t len = get_be32(png + pos);
        if (!memcmp(png + pos + 4, "IDAT", 4)) {
            seen = 1;
            zs.next_in = (Bytef *)(png + pos + 8);
            zs.avail_in = len;
            /* until this chunk's input is used up and no output is pending (a full window may hide more) */
            do {
                zs.next_out = window;
                zs.avail_out = sizeof window;
                r = inflate(&zs, Z_NO_FLUSH);
                got += sizeof window - zs.avail_out;
                if (r == Z_BUF_ERROR) { /* no progress without more input: the next IDAT */
                    r = Z_OK;
                    break;
                }
            } while (r == Z_OK && got <= want && (zs.avail_in > 0 || zs.avail_out == 0));
            if ((r != Z_OK && r != Z_STREAM_END) || got > want) break; /* corrupt, or more than IHDR allows */
        }
        pos += 12 + (size_t)len;
    }
    inflateEnd(&zs);
    if (!seen) return sd_errf(err, "%s: PNG without image data (no IDAT chunk)", name);
    if (r != Z_STREAM_END && got <= want)
        return sd_errf(err, "%s: PNG image data is %s", name, r == Z_OK ? "truncated" : "corrupt");
    if (got > want) return sd_errf(err, "%s: PNG image data is longer than its IHDR allows", name);
    if (got != want)
        return sd_errf(err, "%s: PNG image data holds %llu bytes, its IHDR needs %llu", name, (unsigned long long)got,
                       (unsigned long long)want);
    return 0;
}

int sd_png_verify_mem(const uint8_t *png, size_t n, const char *name, sd_err *err)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (n < 8 || memcmp(png, sig, 8)) return sd_errf(err, "%s: not a PNG file", name);
    size_t pos = 8;
    for (int k = 0;; k++) {
        if (n - pos < 12) return sd_errf(err, "%s: truncated PNG (no IEND chunk)", name);
        uint32_t len = get_be32(png + pos);
        if (len > 0x7FFFFFFFu || len > n - pos - 12)
            return sd_errf(err, "%s: truncated PNG (chunk at byte %zu runs past the end)", name, pos);
        const uint8_t *type = png + pos + 4;
        if (k == 0 && memcmp(type, "IHDR", 4)) return sd_errf(err, "%s: PNG does not start with IHDR", name);
        if (sd_crc32(0, type, 4 + (size_t)len) != get_be32(png + pos + 8 + len))
            return sd_errf(err, "%s: CRC mismatch in PNG chunk %.4s at byte %zu", name, (const char *)type, pos);
        pos += 12 + (size_t)len;
        if (!memcmp(type, "IEND", 4)) break;
    }
    if (pos != n) return sd_errf(err, "%s: %zu bytes of garbage after the PNG's IEND", name, n - pos);
    return png_idat_ok(png, n, name, err);
}

int sd_png_verify(const char *path, sd_err *err)
{
    uint8_t *d;
    size_t n;
    if (read_file_capped(path, SD_IMAGE_MAX_FILE_BYTES, &d, &n, err)) return -1;
    int rc = sd_png_verify_mem(d, n, path, err);
    free(d);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Loading. */

/* stb_image 2.27 (Debian's libstb-dev 0.0~git20220908) builds JPEG Huffman tables without bounding the
 * symbol count: a DHT table whose 16 counts add up to more than 256 overflows huff.size[257] and
 * huff.values[256] (found by fuzzing sd_image_load_mem; fixed upstream later). Walk the markers as
 * stb_image does (segments, entropy-coded data up to the next non-stuffed, non-RST marker) and refuse
 * such a table before stb sees it. Tables are read the way stb reads them, even past the segment's end. */
static int jpeg_dht_ok(const uint8_t *p, size_t n)
{
    size_t pos = 2; /* after SOI */
    while (pos < n) {
        while (pos < n && p[pos] != 0xFF) pos++;  /* stb skips junk between segments byte by byte */
        while (pos < n && p[pos] == 0xFF) pos++;
        if (pos >= n) return 1;
        uint8_t m = p[pos++];
        if (m == 0xD9) return 1;                                     /* EOI */
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue; /* no length */
        if (n - pos < 2) return 1;
        size_t len = (size_t)p[pos] << 8 | p[pos + 1];
        if (m == 0xC4) {
            long L = (long)len - 2;
            size_t t = pos + 2;
            while (L > 0) {
                int total = 0;
                for (int i = 0; i < 16; i++) total += t + 1 + (size_t)i < n ? p[t + 1 + i] : 0;
                if (total > 256) return 0;
                t += 17 + (size_t)total;
                L -= 17 + total;
            }
        }
        pos += len;
        if (m == 0xDA) { /* SOS: skip the entropy-coded data */
            while (pos + 1 < n && !(p[pos] == 0xFF && p[pos + 1] != 0x00 && p[pos + 1] != 0xFF &&
                                    !(p[pos + 1] >= 0xD0 && p[pos + 1] <= 0xD7)))
                pos++;
        }
    }
    return 1;
}

/* EXIF orientation (tag 0x0112 of IFD0 in an APP1 "Exif" segment) of a JPEG: 1..8, 1 when absent or
 * unreadable. Every offset is bounds-checked: the bytes are untrusted. */
static int jpeg_exif_orientation(const uint8_t *p, size_t n)
{
    size_t pos = 2;
    while (pos + 4 <= n && p[pos] == 0xFF) {
        uint8_t m = p[pos + 1];
        if (m == 0xFF) { pos++; continue; }
        if (m == 0xDA || m == 0xD9) break; /* scan data or end: EXIF comes before */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { pos += 2; continue; }
        size_t len = (size_t)p[pos + 2] << 8 | p[pos + 3];
        if (len < 2 || len > n - pos - 2) break;
        const uint8_t *seg = p + pos + 4;
        size_t sl = len - 2;
        if (m == 0xE1 && sl >= 14 && !memcmp(seg, "Exif\0\0", 6)) {
            const uint8_t *t = seg + 6; /* TIFF header */
            size_t tl = sl - 6;
            int le;
            if (!memcmp(t, "II*\0", 4)) le = 1;
            else if (!memcmp(t, "MM\0*", 4)) le = 0;
            else return 1;
#define RD16(q) (le ? (unsigned)(q)[0] | (unsigned)(q)[1] << 8 : (unsigned)(q)[0] << 8 | (unsigned)(q)[1])
#define RD32(q) (le ? (uint32_t)(q)[0] | (uint32_t)(q)[1] << 8 | (uint32_t)(q)[2] << 16 | (uint32_t)(q)[3] << 24 \
                    : (uint32_t)(q)[0] << 24 | (uint32_t)(q)[1] << 16 | (uint32_t)(q)[2] << 8 | (uint32_t)(q)[3])
            uint32_t ifd = RD32(t + 4);
            if (ifd > tl || tl - ifd < 2) return 1;
            unsigned cnt = RD16(t + ifd);
            for (unsigned i = 0; i < cnt; i++) {
                size_t e = ifd + 2 + (size_t)i * 12;
                if (e + 12 > tl) break;
                if (RD16(t + e) == 0x0112 && RD16(t + e + 2) == 3) {
                    unsigned v = RD16(t + e + 8);
                    return v >= 1 && v <= 8 ? (int)v : 1;
                }
            }
#undef RD16
#undef RD32
            return 1;
        }
        pos += 2 + len;
    }
    return 1;
}

/* stb_image trusts a PNG chunk's length field and grows its IDAT buffer to it before reading: a 100-byte
 * file claiming a 2 GB IDAT asks for 2 GB. Refuse chunks that claim more bytes than the file has. */
static int png_lengths_ok(const uint8_t *p, size_t n)
{
    size_t pos = 8;
    while (n - pos >= 8) {
        uint32_t len = get_be32(p + pos);
        if (len > 0x7FFFFFFFu || (size_t)len > n - pos - 8 || n - pos - 8 - len < 4) return 0;
        if (!memcmp(p + pos + 4, "IEND", 4)) return 1;
        pos += 12 + (size_t)len;
    }
    return 1;
}

/* JPEG frame types (ITU-T T.81 Table B.1) that stb_image cannot decode, and sizes it cannot represent, found
 * from the first SOF segment: stb fails on them with its own reason, then its other readers replace that
 * with "unknown image type". 1 if stb can read the frame (or none was found), else 0 with the message. */
static int jpeg_variant_ok(const uint8_t *p, size_t n, const char *name, sd_err *err)
{
    size_t pos = 2;
    while (pos + 4 <= n && p[pos] == 0xFF) {
        uint8_t m = p[pos + 1];
        if (m == 0xFF) { pos++; continue; }
        if (m == 0xDA || m == 0xD9) break; /* scan data or end: the frame header comes before */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { pos += 2; continue; }
        size_t len = (size_t)p[pos + 2] << 8 | p[pos + 3];
        if (len < 2 || len > n - pos - 2) break;
        int sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
        if (sof) {
            const char *why = NULL;
            char buf[64];
            if (m == 0xC3) why = "lossless (SOF3)";
            else if (m >= 0xC5 && m <= 0xC7) snprintf(buf, sizeof buf, "hierarchical (SOF%d)", m - 0xC0), why = buf;
            else if (m >= 0xC9) snprintf(buf, sizeof buf, "arithmetic coding (SOF%d)", m - 0xC0), why = buf;
            else if (len >= 8 && p[pos + 4] != 8) snprintf(buf, sizeof buf, "%d-bit samples", p[pos + 4]), why = buf;
            if (why) {
                sd_errf(err, "%s: unsupported JPEG variant: %s (sdgen reads 8-bit baseline and progressive JPEGs)", name,
                        why);
                return 0;
            }
            if (len >= 8) {
                unsigned h = (unsigned)p[pos + 5] << 8 | p[pos + 6], w = (unsigned)p[pos + 7] << 8 | p[pos + 8];
                if (w == 0) {
                    sd_errf(err, "%s: image has zero size (%ux%u)", name, w, h);
                    return 0;
                }
                if (h == 0) {
                    sd_errf(err, "%s: unsupported JPEG variant: height given by a DNL marker after the scan", name);
                    return 0;
                }
            }
            return 1;
        }
        pos += 2 + len;
    }
    return 1;
}

/* The size limits of an image to decode (from its header): 1 if within them, else 0 with the message. */
static int size_ok(const char *name, uint32_t w, uint32_t h, sd_err *err)
{
    if (w <= SD_IMAGE_MAX_SIDE && h <= SD_IMAGE_MAX_SIDE && (unsigned long long)w * h <= SD_IMAGE_MAX_PIXELS) return 1;
    sd_errf(err, "%s: image too large (%ux%u; at most %d pixels per side and %d Mpx)", name, w, h, SD_IMAGE_MAX_SIDE,
            (int)(SD_IMAGE_MAX_PIXELS >> 20));
    return 0;
}

int sd_image_load_mem(sd_image *out, const void *data, size_t n, const char *name, sd_err *err)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    const uint8_t *p = data;
    out->w = out->h = 0;
    out->rgb = NULL;
    int is_png = n >= 8 && !memcmp(p, png_sig, 8);
    int is_jpg = n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF;
    if (!is_png && !is_jpg) return sd_errf(err, "%s: not a PNG or JPEG image", name);
    if ((long long)n > SD_IMAGE_MAX_FILE_BYTES) return sd_errf(err, "%s: file too large (%zu bytes)", name, n);
    if (is_png && !png_lengths_ok(p, n)) return sd_errf(err, "%s: corrupt image: truncated PNG (a chunk runs past the end of the file)", name);
    if (is_jpg && !jpeg_dht_ok(p, n)) return sd_errf(err, "%s: corrupt image: JPEG Huffman table with more than 256 codes", name);
    int w = 0, h = 0, comp = 0;
    /* PNG: read the IHDR size ourselves. stb's PNG reader fails on a huge IHDR with "too large", then tries
     * its other readers, and the last one's "unknown image type" replaces the reason. */
    if (is_png && n >= 24 && !memcmp(p + 12, "IHDR", 4)) {
        uint32_t pw = (uint32_t)p[16] << 24 | (uint32_t)p[17] << 16 | (uint32_t)p[18] << 8 | p[19];
        uint32_t ph = (uint32_t)p[20] << 24 | (uint32_t)p[21] << 16 | (uint32_t)p[22] << 8 | p[23];
        if (pw == 0 || ph == 0) return sd_errf(err, "%s: image has zero size (%ux%u)", name, pw, ph);
        if (!size_ok(name, pw, ph, err)) return -1;
    }
    if (is_jpg && !jpeg_variant_ok(p, n, name, err)) return -1;
    /* Header first: refuse huge images before allocating their pixels. */
    if (!stbi_info_from_memory(p, (int)n, &w, &h, &comp)) {
        const char *why = stbi_failure_reason();
        if (why && strstr(why, "too large")) return sd_errf(err, "%s: image too large (over %d pixels per side)", name, SD_IMAGE_MAX_SIDE);
        return sd_errf(err, "%s: corrupt image: %s", name, why ? why : "unreadable header");
    }
    if (w <= 0 || h <= 0) return sd_errf(err, "%s: corrupt image: empty (%dx%d)", name, w, h);
    if (!size_ok(name, (uint32_t)w, (uint32_t)h, err)) return -1;
    int w2, h2, c2;
    uint8_t *px = stbi_load_from_memory(p, (int)n, &w2, &h2, &c2, 3);
    if (!px) {
        const char *why = stbi_failure_reason();
        if (why && !strcmp(why, "outofmem")) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory decoding %dx%d", name, w, h);
        return sd_errf(err, "%s: corrupt image: %s", name, why ? why : "decode failed");
    }
    if (w2 != w || h2 != h) {
        stbi_image_free(px);
        return sd_errf(err, "%s: corrupt image: size changed while decoding", name);
    }
    /* Copy into our own buffer (sd_image_free uses free()), applying the EXIF orientation of a JPEG as
     * diffusers.utils.load_image / A1111 do with PIL's ImageOps.exif_transpose. */
    int orient = is_jpg ? jpeg_exif_orientation(p, n) : 1;
    int ow = orient >= 5 ? h : w, oh = orient >= 5 ? w : h;
    size_t bytes = (size_t)w * h * 3;
    out->rgb = malloc(bytes);
    if (!out->rgb) {
        stbi_image_free(px);
        return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory (%dx%d)", name, w, h);
    }
    if (orient == 1) {
        memcpy(out->rgb, px, bytes);
    } else {
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                int sx, sy; /* source pixel of output (x, y), PIL Image.transpose semantics */
                switch (orient) {
                case 2: sx = w - 1 - x; sy = y; break;          /* FLIP_LEFT_RIGHT */
                case 3: sx = w - 1 - x; sy = h - 1 - y; break;  /* ROTATE_180 */
                case 4: sx = x; sy = h - 1 - y; break;          /* FLIP_TOP_BOTTOM */
                case 5: sx = y; sy = x; break;                  /* TRANSPOSE */
                case 6: sx = y; sy = h - 1 - x; break;          /* ROTATE_270 (90° clockwise) */
                case 7: sx = w - 1 - y; sy = h - 1 - x; break;  /* TRANSVERSE */
                default: sx = w - 1 - y; sy = x; break;         /* 8: ROTATE_90 (counter-clockwise) */
                }
                memcpy(out->rgb + ((size_t)y * ow + x) * 3, px + ((size_t)sy * w + sx) * 3, 3);
            }
    }
    stbi_image_free(px);
    out->w = ow;
    out->h = oh;
    return 0;
}

int sd_image_load(sd_image *out, const char *path, sd_err *err)
{
    uint8_t *d;
    size_t n;
    out->w = out->h = 0;
    out->rgb = NULL;
    if (read_file_capped(path, SD_IMAGE_MAX_FILE_BYTES, &d, &n, err)) return -1;
    int rc = sd_image_load_mem(out, d, n, path, err);
    free(d);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Lanczos resize, following Pillow's libImaging/Resample.c (8 bits per channel path). */

#define SD_PREC_BITS (32 - 8 - 2) /* Pillow PRECISION_BITS: 22 fraction bits, room for overshoot */

static double sinc(double x)
{
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos3(double x)
{
    if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
    return 0.0;
}

/* Per output index: first input index, tap count and ksize fixed-point weights. */
typedef struct { int ksize; int *bounds; int32_t *k; } sd_coeffs;

static int coeffs_compute(int in_size, int out_size, sd_coeffs *c)
{
    /* Pillow: scale = (in1 - in0) / out with the box (0, in) as floats; the filter widens by the
     * reduction factor when downscaling (antialiasing), never narrows when upscaling. */
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 3.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = malloc((size_t)out_size * 2 * sizeof(int));
    c->k = malloc((size_t)out_size * ksize * sizeof(int32_t));
    double *kd = malloc((size_t)ksize * sizeof(double));
    if (!c->bounds || !c->k || !kd) {
        free(c->bounds); free(c->k); free(kd);
        c->bounds = NULL; c->k = NULL;
        return -1;
    }
    double ss = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale; /* in0 = 0 */
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            double w = lanczos3((x + xmin - center + 0.5) * ss);
            kd[x] = w;
            ww += w;
        }
        int32_t *k = c->k + (size_t)xx * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? kd[x] / ww : kd[x]) : 0.0;
            /* Pillow normalize_coeffs_8bpc: round half away from zero to 22-bit fixed point */
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << SD_PREC_BITS)) : (int32_t)(0.5 + v * (1 << SD_PREC_BITS));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(kd);
    return 0;
}

static inline uint8_t clip8(int64_t acc)
{
    /* Pillow clip8: acc >> PRECISION_BITS, clamped to 0..255 (the +0.5 is in the initial acc). */
    if (acc < 0) return 0;
    int64_t v = acc >> SD_PREC_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

int sd_image_resize_lanczos(const sd_image *in, int w, int h, sd_image *out, sd_err *err)
{
    out->w = out->h = 0;
    out->rgb = NULL;
    if (w <= 0 || h <= 0 || w > SD_IMAGE_MAX_SIDE || h > SD_IMAGE_MAX_SIDE || (long long)w * h > SD_IMAGE_MAX_PIXELS)
        return sd_errf(err, "cannot resize to %dx%d", w, h);
    if (!in->rgb || in->w <= 0 || in->h <= 0) return sd_errf(err, "cannot resize an empty image");
    int need_h = w != in->w, need_v = h != in->h;
    const uint8_t *src = in->rgb;
    int sw = in->w, sh = in->h;
    uint8_t *tmp = NULL;
    if (need_h) {
        sd_coeffs c;
        if (coeffs_compute(in->w, w, &c)) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the resize");
        tmp = malloc((size_t)w * sh * 3);
        if (!tmp) {
            free(c.bounds); free(c.k);
            return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the resize");
        }
        for (int y = 0; y < sh; y++) {
            const uint8_t *row = src + (size_t)y * sw * 3;
            uint8_t *orow = tmp + (size_t)y * w * 3;
            for (int xx = 0; xx < w; xx++) {
                int xmin = c.bounds[2 * xx], xn = c.bounds[2 * xx + 1];
                const int32_t *k = c.k + (size_t)xx * c.ksize;
                int64_t a0 = 1 << (SD_PREC_BITS - 1), a1 = a0, a2 = a0;
                for (int x = 0; x < xn; x++) {
                    const uint8_t *p = row + (size_t)(xmin + x) * 3;
                    a0 += (int64_t)p[0] * k[x];
                    a1 += (int64_t)p[1] * k[x];
                    a2 += (int64_t)p[2] * k[x];
                }
                orow[3 * xx] = clip8(a0);
                orow[3 * xx + 1] = clip8(a1);
                orow[3 * xx + 2] = clip8(a2);
            }
        }
        free(c.bounds);
        free(c.k);
        src = tmp;
        sw = w;
    }
    uint8_t *dst = malloc((size_t)w * h * 3);
    if (!dst) {
        free(tmp);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the resize");
    }
    if (need_v) {
        sd_coeffs c;
        if (coeffs_compute(in->h, h, &c)) {
            free(tmp); free(dst);
            return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the resize");
        }
        for (int yy = 0; yy < h; yy++) {
            int ymin = c.bounds[2 * yy], yn = c.bounds[2 * yy + 1];
            const int32_t *k = c.k + (size_t)yy * c.ksize;
            uint8_t *orow = dst + (size_t)yy * w * 3;
            for (int xx = 0; xx < w * 3; xx++) {
                int64_t a = 1 << (SD_PREC_BITS - 1);
                for (int y = 0; y < yn; y++) a += (int64_t)src[(size_t)(ymin + y) * sw * 3 + xx] * k[y];
                orow[xx] = clip8(a);
            }
        }
        free(c.bounds);
        free(c.k);
    } else {
        memcpy(dst, src, (size_t)w * h * 3);
    }
    free(tmp);
    out->rgb = dst;
    out->w = w;
    out->h = h;
    return 0;
}

int sd_image_init_size(int w, int h, int *w8, int *h8, sd_err *err)
{
    *w8 = w - w % 8;
    *h8 = h - h % 8;
    if (*w8 <= 0 || *h8 <= 0) return sd_errf(err, "init image %dx%d is smaller than 8x8", w, h);
    return 0;
}

void sd_image_to_float(const sd_image *im, float *out)
{
    /* diffusers VaeImageProcessor: np.array(img).astype(float32) / 255.0 (a float32 division), then
     * 2.0 * x - 1.0 in float32 (the product is exact, only the subtraction rounds). */
    size_t plane = (size_t)im->w * im->h;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float v = (float)im->rgb[3 * i + c] / 255.0f;
            out[c * plane + i] = 2.0f * v - 1.0f;
        }
}

int sd_image_init_from(const sd_image *in, const char *name, sd_image *out, int *resized, sd_err *err)
{
    if (resized) *resized = 0;
    int w8, h8;
    if (sd_image_init_size(in->w, in->h, &w8, &h8, err)) return sd_err_prefix(err, "%s", name);
    /* Equal sizes copy (sd_image_resize_lanczos), so the result is always the caller's to free. */
    if (sd_image_resize_lanczos(in, w8, h8, out, err)) return sd_err_prefix(err, "%s", name);
    if (resized) *resized = w8 != in->w || h8 != in->h;
    return 0;
}

int sd_image_load_init(sd_image *out, const char *path, int *resized, sd_err *err)
{
    sd_image im;
    if (resized) *resized = 0;
    if (sd_image_load(&im, path, err)) return -1;
    int rc = sd_image_init_from(&im, path, out, resized, err);
    sd_image_free(&im);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Atomic file writes. */

static int split_dir(const char *path, char *dir, size_t dn, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        if (dn < 2) return -1;
        strcpy(dir, ".");
        *base = path;
        return 0;
    }
    size_t l = (size_t)(slash - path);
    if (l == 0) l = 1; /* "/file" -> dir "/" */
    if (l >= dn) return -1;
    memcpy(dir, path, l);
    dir[l] = 0;
    *base = slash + 1;
    return 0;
}

/* Create a unique temporary file next to path. Returns the fd, fills tmp. The name is
 * ".BASE.tmp-PID-HHHHHHHH" (BASE: the first 64 bytes of the file name, PID in decimal, HHHHHHHH 8 lowercase hex
 * digits): hidden, beside its target so that rename() is atomic, and recognisable by is_our_temp() so that
 * a later run can remove what a killed one left behind. */
static int make_temp(const char *path, char *tmp, size_t tn, int *eno)
{
    char dir[PATH_MAX];
    const char *base;
    if (split_dir(path, dir, sizeof dir, &base) || !*base) { *eno = EINVAL; return -1; }
    static unsigned counter; /* uniqueness within the process; pid + time across processes */
    for (int tries = 0; tries < 64; tries++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned r = (unsigned)ts.tv_nsec ^ (++counter * 2654435761u);
        int k = snprintf(tmp, tn, "%s/.%.64s.tmp-%ld-%08x", dir, base, (long)getpid(), r);
        if (k < 0 || (size_t)k >= tn) { *eno = ENAMETOOLONG; return -1; }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) return fd;
        if (errno != EEXIST) { *eno = errno; return -1; }
    }
    *eno = EEXIST;
    return -1;
}

/* Is `name` exactly what make_temp() creates? Returns the writer's pid, or 0 when it is not. */
static long is_our_temp(const char *name)
{
    size_t n = strlen(name);
    /* from the end: 8 hex digits, '-', the pid's digits, ".tmp-", then 1..64 bytes of BASE after the '.' */
    if (n < 1 + 1 + 5 + 1 + 1 + 8 || name[0] != '.') return 0;
    for (size_t i = n - 8; i < n; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return 0;
    if (name[n - 9] != '-') return 0;
    size_t e = n - 9, d = e;
    while (d > 0 && name[d - 1] >= '0' && name[d - 1] <= '9') d--;
    if (d == e || e - d > 10 || name[d] == '0') return 0;
    if (d < 6 || memcmp(name + d - 5, ".tmp-", 5)) return 0;
    size_t base_len = d - 5 - 1;
    if (base_len < 1 || base_len > 64) return 0;
    long pid = 0;
    for (size_t i = d; i < e; i++) pid = pid * 10 + (name[i] - '0');
    return pid > 0 && pid <= INT_MAX ? pid : 0;
}

int sd_remove_stale_temps(const char *dir, int64_t before_ns, char *first, size_t n)
{
    if (first && n) first[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = is_our_temp(e->d_name);
        if (!pid) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        if (st.st_uid != geteuid()) continue; /* another user's file is theirs to clean */
        int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        if (mt >= before_ns) continue; /* written since this run began: possibly a live writer's */
        /* The writer must be gone. kill(pid, 0) (POSIX) fails with ESRCH only when no such process exists;
         * EPERM means it exists. This process's own pid can only be on a file from before it started. */
        if (pid != (long)getpid() && !(kill((pid_t)pid, 0) != 0 && errno == ESRCH)) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0) {
            if (first && n && !first[0]) snprintf(first, n, "%s", e->d_name);
            removed++;
        }
    }
    closedir(d);
    return removed;
}

static void fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    const char *base;
    if (split_dir(path, dir, sizeof dir, &base)) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* What lstat() finds at path, for messages: "a directory", "a symbolic link", ... */
static const char *kind_of(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISLNK(m) ? "a symbolic link" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* mode: SD_WRITE_NEW, SD_WRITE_REPLACE or SD_WRITE_REPLACE_INCOMPLETE (image.h). In every mode only a
 * regular file is ever replaced: rename() would put the new file in place of a device node, a FIFO or a
 * symbolic link just as well. */
static int write_atomic(const char *path, const void *data, size_t n, int mode, sd_err *err)
{
    char tmp[PATH_MAX + 128];
    int eno = 0;
    int fd = make_temp(path, tmp, sizeof tmp, &eno);
    if (fd < 0) return sd_errf(err, "%s: cannot write: %s", path, strerror(eno));
    const uint8_t *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            eno = w < 0 ? errno : EIO;
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) { eno = errno; goto fail; }
    if (close(fd) != 0) { fd = -1; eno = errno; goto fail; }
    fd = -1;
    struct stat st;
    if (mode != SD_WRITE_REPLACE) {
        /* link() fails with EEXIST atomically; fall back to check + rename where links aren't supported */
        if (link(tmp, path) == 0) {
            unlink(tmp);
            fsync_dir_of(path);
            return 0;
        }
        int exists = errno == EEXIST || lstat(path, &st) == 0;
        if (exists && mode == SD_WRITE_NEW) {
            unlink(tmp);
            return sd_errf(err, "%s: already exists (use --overwrite to replace it)", path);
        }
        /* --skip-existing regenerating an incomplete file: replace it only while it is still incomplete
         * (another run resuming the same batch may have completed it meanwhile). */
        if (exists && lstat(path, &st) == 0 && S_ISREG(st.st_mode) && sd_png_verify(path, NULL) == 0) {
            unlink(tmp);
            return sd_errf(err, "%s: a complete PNG appeared there meanwhile; it is kept", path);
        }
    }
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        unlink(tmp);
        return sd_errf(err, "%s: is %s, not a regular file; sdgen replaces only regular files", path,
                       kind_of(st.st_mode));
    }
    if (rename(tmp, path) != 0) { eno = errno; goto fail; }
    fsync_dir_of(path);
    return 0;
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    if (eno == EFBIG)
        return sd_errf(err, "%s: cannot write %zu bytes: file too large for the process's file size limit (ulimit -f) "
                       "or the file system", path, n);
    return sd_errf(err, "%s: cannot write: %s", path, strerror(eno));
}

int sd_file_write_atomic(const char *path, const void *data, size_t n, sd_err *err)
{
    return write_atomic(path, data, n, SD_WRITE_REPLACE, err);
}

int sd_png_write(const char *path, const uint8_t *rgb, int w, int h, const char *parameters, int overwrite,
                 sd_err *err)
{
    uint8_t *png;
    size_t n;
    if (overwrite != SD_WRITE_NEW && overwrite != SD_WRITE_REPLACE && overwrite != SD_WRITE_REPLACE_INCOMPLETE)
        return sd_errf(err, "%s: unknown write mode %d", path, overwrite);
    if (sd_png_encode(rgb, w, h, "parameters", parameters, &png, &n, err)) return sd_err_prefix(err, "%s", path);
    int rc = write_atomic(path, png, n, overwrite, err);
    free(png);
    return rc;
}

int sd_check_output_name(const char *path, sd_err *err)
{
    size_t bad = sd_find_control(path);
    if (bad) return sd_errf(err, "%s: the output path holds a control character (byte %zu); refused", path, bad);
    char dir[PATH_MAX];
    const char *base;
    if (split_dir(path, dir, sizeof dir, &base) || !*base) return sd_errf(err, "%s: not a file name", path);
    /* POSIX pathconf(_PC_NAME_MAX): the longest name this directory's file system takes (255 bytes on
     * ext4, xfs, btrfs, tmpfs); NAME_MAX when the directory cannot tell (it may not exist yet). */
    long name_max = pathconf(dir, _PC_NAME_MAX);
    if (name_max <= 0) name_max = NAME_MAX;
    size_t bl = strlen(base);
    if (bl > (size_t)name_max)
        return sd_errf(err, "%s: the file name is %zu bytes long, more than the %ld the file system allows", path, bl,
                       name_max);
    return 0;
}

int sd_output_state(const char *path, sd_err *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        /* nothing there; a missing folder or a file in its place is sd_check_output_dir's to report */
        if (errno == ENOENT || errno == ENOTDIR) return 0;
        return sd_errf(err, "%s: %s", path, strerror(errno));
    }
    if (S_ISREG(st.st_mode)) return 1;
    if (S_ISDIR(st.st_mode)) return sd_errf(err, "%s: is a directory, not an image file name", path);
    if (S_ISLNK(st.st_mode)) {
        struct stat t;
        return sd_errf(err, "%s: is a symbolic link%s; sdgen writes only new files or replaces regular ones", path,
                       stat(path, &t) != 0 ? " to nothing (dangling)" : "");
    }
    return sd_errf(err, "%s: is %s, not a regular file; sdgen never replaces one", path, kind_of(st.st_mode));
}

int sd_check_output_dir(const char *path, sd_err *err)
{
    char dir[PATH_MAX];
    const char *base;
    if (split_dir(path, dir, sizeof dir, &base) || !*base) return sd_errf(err, "%s: not a file name", path);
    struct stat st;
    if (stat(dir, &st) != 0) return sd_errf(err, "%s: output directory %s: %s", path, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return sd_errf(err, "%s: %s is not a directory", path, dir);
    /* Try it: access(W_OK) misjudges read-only mounts, ACLs and root. */
    char tmp[PATH_MAX + 128];
    int eno = 0;
    int fd = make_temp(path, tmp, sizeof tmp, &eno);
    if (fd < 0) return sd_errf(err, "%s: output directory %s is not writable: %s", path, dir, strerror(eno));
    close(fd);
    unlink(tmp);
    return 0;
}
