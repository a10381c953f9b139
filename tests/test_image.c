/* test_image.c — PNG writing with the `parameters` chunk, text chunk reading, init-image loading,
 * PIL-exact Lanczos resize, the image_in float conversion (golden p7) and atomic writes.
 * Fixtures: tests/fixtures/images (scripts/make-image-fixtures.py, PIL 9.4). */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "sdgen/image.h"
#include "sdgen/npy.h"
#include "testutil.h"

static char fixdir[4096];

static const char *fix(const char *name)
{
    static char b[4][4200];
    static int k;
    char *p = b[k++ & 3];
    snprintf(p, 4200, "%s/%s", fixdir, name);
    return p;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* Walk the chunks with zlib's crc32 (an implementation independent of sd_crc32); return the number of
 * chunks, -1 on any CRC mismatch. *text_type gets the type of the chunk right after IHDR. */
static int check_chunks(const uint8_t *d, size_t n, char text_type[5])
{
    size_t pos = 8;
    int count = 0;
    text_type[0] = 0;
    while (pos + 12 <= n) {
        uint32_t len = be32(d + pos);
        if (pos + 12 + len > n) return -1;
        uLong c = crc32(0L, d + pos + 4, 4 + len);
        if ((uint32_t)c != be32(d + pos + 8 + len)) return -1;
        if (count == 1) { memcpy(text_type, d + pos + 4, 4); text_type[4] = 0; }
        count++;
        if (!memcmp(d + pos + 4, "IEND", 4)) break;
        pos += 12 + len;
    }
    return count;
}

/* Any leftover temporary file (".NAME.tmp-...") in dir? */
static int temp_left(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp-")) found = 1;
    closedir(d);
    return found;
}

static int max_diff(const sd_image *a, const sd_image *b, long *ndiff)
{
    int m = 0;
    *ndiff = 0;
    if (a->w != b->w || a->h != b->h) return 999;
    for (long i = 0; i < (long)a->w * a->h * 3; i++) {
        int d = abs((int)a->rgb[i] - (int)b->rgb[i]);
        if (d) (*ndiff)++;
        if (d > m) m = d;
    }
    return m;
}

static void test_png_roundtrip(const char *tmp)
{
    int w = 37, h = 23;
    uint8_t *px = malloc((size_t)w * h * 3);
    uint32_t s = 12345;
    for (int i = 0; i < w * h * 3; i++) { s = s * 1103515245u + 12345u; px[i] = (uint8_t)(s >> 16); }
    const char *cases[][2] = {
        {"ascii", "a red apple on a table\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: 42, Size: 37x23"},
        {"latin1", "caf\xc3\xa9 na\xc3\xafve \xc2\xb5\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 37x23"},
        {"utf8", "\xe7\x8c\xab on a mat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 37x23"},
    };
    for (int c = 0; c < 3; c++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/rt_%s.png", tmp, cases[c][0]);
        unlink(path);
        sd_err err = {0};
        int rc = sd_png_write(path, px, w, h, cases[c][1], 0, &err);
        CHECK(rc == 0, "%s: write failed: %s", cases[c][0], err.msg);
        sd_image im;
        rc = sd_image_load(&im, path, &err);
        CHECK(rc == 0 && im.w == w && im.h == h, "%s: load back: %s", cases[c][0], err.msg);
        if (rc == 0) CHECK(!memcmp(im.rgb, px, (size_t)w * h * 3), "%s: pixels differ after PNG round trip", cases[c][0]);
        sd_image_free(&im);
        size_t n;
        uint8_t *d = (uint8_t *)sd_test_read_file(path, &n);
        char tt[5];
        int nch = d ? check_chunks(d, n, tt) : -1;
        CHECK(nch >= 4, "%s: chunk walk / zlib CRC check failed (%d)", cases[c][0], nch);
        const char *want_type = c == 2 ? "iTXt" : "tEXt";
        CHECK(!strcmp(tt, want_type), "%s: chunk after IHDR is %s, want %s", cases[c][0], tt, want_type);
        if (c == 1 && d) { /* Latin-1 bytes, not UTF-8, inside tEXt: "caf\xe9" */
            int found = 0;
            for (size_t i = 0; i + 4 <= n; i++) if (!memcmp(d + i, "caf\xe9 ", 5)) found = 1;
            CHECK(found, "latin1: tEXt payload is not Latin-1 encoded");
        }
        free(d);
        char *text = NULL;
        int itxt = -1;
        rc = sd_png_read_text(path, "parameters", &text, &itxt, &err);
        CHECK(rc == 0 && text && !strcmp(text, cases[c][1]), "%s: text read back differs: %s", cases[c][0], text ? text : err.msg);
        CHECK(itxt == (c == 2), "%s: is_itxt %d", cases[c][0], itxt);
        free(text);
        text = NULL;
        rc = sd_png_read_text(path, "Comment", &text, NULL, &err);
        CHECK(rc == 0 && text == NULL, "%s: missing keyword should give NULL", cases[c][0]);
        free(text);
        /* a copy that stays, for inspection with other tools (PIL, exiftool) */
        char keep[4300];
        snprintf(keep, sizeof keep, "%s/keep_%s.png", tmp, cases[c][0]);
        unlink(keep);
        CHECK(sd_png_write(keep, px, w, h, cases[c][1], 0, &err) == 0, "keep copy: %s", err.msg);
        /* no-clobber: a second write without overwrite fails and leaves the file alone */
        rc = sd_png_write(path, px, w, h, "other", 0, &err);
        CHECK(rc != 0 && strstr(err.msg, path) && strstr(err.msg, "already exists"), "%s: overwrite refused: rc %d '%s'", cases[c][0], rc, err.msg);
        rc = sd_png_write(path, px, w, h, "replaced", 1, &err);
        CHECK(rc == 0, "%s: overwrite=1 failed: %s", cases[c][0], err.msg);
        rc = sd_png_read_text(path, "parameters", &text, NULL, &err);
        CHECK(rc == 0 && text && !strcmp(text, "replaced"), "%s: overwritten text", cases[c][0]);
        free(text);
    }
    CHECK(!temp_left(tmp), "temporary files left in %s", tmp);

    /* completeness check for --skip-existing */
    {
        char path2[4200];
        snprintf(path2, sizeof path2, "%s/keep_utf8.png", tmp);
        size_t n2;
        uint8_t *d2 = (uint8_t *)sd_test_read_file(path2, &n2);
        sd_err err = {0};
        CHECK(d2 && sd_png_verify(path2, &err) == 0, "verify a good PNG: %s", err.msg);
        CHECK(d2 && sd_png_verify_mem(d2, n2 - 1, "cut.png", &err) != 0 && strstr(err.msg, "truncated"), "verify cut PNG: %s", err.msg);
        CHECK(d2 && sd_png_verify_mem(d2, n2 / 2, "half.png", &err) != 0 && strstr(err.msg, "half.png"), "verify half PNG: %s", err.msg);
        if (d2) {
            d2[n2 / 2] ^= 0x40;
            CHECK(sd_png_verify_mem(d2, n2, "flip.png", &err) != 0 && strstr(err.msg, "CRC"), "verify flipped byte: %s", err.msg);
        }
        free(d2);
    }
    /* Damaged PNG: a flipped byte inside the text chunk is caught by its CRC */
    char path[4200];
    snprintf(path, sizeof path, "%s/rt_ascii.png", tmp);
    size_t n;
    uint8_t *d = (uint8_t *)sd_test_read_file(path, &n);
    if (d) {
        d[33 + 8 + 3] ^= 1;
        char *text = NULL;
        sd_err err = {0};
        int rc = sd_png_read_text_mem(d, n, "damaged.png", "parameters", &text, NULL, &err);
        CHECK(rc != 0 && strstr(err.msg, "CRC"), "damaged chunk: rc %d '%s'", rc, err.msg);
        free(text);
        free(d);
    }
    free(px);
}

static void test_atomic_failures(const char *tmp)
{
    uint8_t px[2 * 2 * 3] = {0};
    sd_err err = {0};
    char path[4200], sub[4200];
    /* missing directory */
    snprintf(path, sizeof path, "%s/no-such-dir/x.png", tmp);
    int rc = sd_png_write(path, px, 2, 2, "p", 0, &err);
    CHECK(rc != 0 && strstr(err.msg, path), "missing dir: rc %d '%s'", rc, err.msg);
    rc = sd_check_output_dir(path, &err);
    CHECK(rc != 0 && strstr(err.msg, "no-such-dir"), "check_output_dir(missing): '%s'", err.msg);
    snprintf(path, sizeof path, "%s/ok.png", tmp);
    CHECK(sd_check_output_dir(path, &err) == 0, "check_output_dir(tmp): %s", err.msg);
    /* rename fails after the temp file was written: the target is a non-empty directory */
    snprintf(sub, sizeof sub, "%s/fail-dir", tmp);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/fail-dir/target.png", tmp);
    mkdir(path, 0755);
    char inner[4300];
    snprintf(inner, sizeof inner, "%s/keep", path);
    FILE *f = fopen(inner, "w");
    if (f) fclose(f);
    rc = sd_png_write(path, px, 2, 2, "p", 1, &err);
    CHECK(rc != 0 && strstr(err.msg, path), "rename onto a directory: rc %d '%s'", rc, err.msg);
    CHECK(!temp_left(sub), "temporary file left after a failed rename");
    /* unwritable directory (meaningless for root, who writes anyway) */
    if (geteuid() != 0) {
        snprintf(sub, sizeof sub, "%s/ro-dir", tmp);
        mkdir(sub, 0755);
        chmod(sub, 0555);
        snprintf(path, sizeof path, "%s/ro-dir/x.png", tmp);
        rc = sd_png_write(path, px, 2, 2, "p", 0, &err);
        CHECK(rc != 0 && strstr(err.msg, path) && strstr(err.msg, "ermission"), "read-only dir: rc %d '%s'", rc, err.msg);
        rc = sd_check_output_dir(path, &err);
        CHECK(rc != 0 && strstr(err.msg, "not writable"), "check_output_dir(ro): '%s'", err.msg);
        CHECK(!temp_left(sub), "temporary file left in the read-only dir");
        chmod(sub, 0755);
    } else {
        printf("skip read-only directory check (running as root)\n");
    }
    /* text that is not UTF-8 is refused, nothing written */
    snprintf(path, sizeof path, "%s/bad-utf8.png", tmp);
    unlink(path);
    rc = sd_png_write(path, px, 2, 2, "bad \xff byte", 0, &err);
    CHECK(rc != 0 && access(path, F_OK) != 0, "non-UTF-8 text: rc %d", rc);
}

static void test_pil_text_chunks(void)
{
    static const struct { const char *file, *want; int itxt_ok; } T[] = {
        {"text_latin1.png", "caf\xc3\xa9, Steps: 20", 0},
        {"text_utf8.png", "a \xe7\x8c\xab\nSteps: 20", 1},
    };
    for (int i = 0; i < 2; i++) {
        char *text = NULL;
        int itxt = -1;
        sd_err err = {0};
        int rc = sd_png_read_text(fix(T[i].file), "parameters", &text, &itxt, &err);
        CHECK(rc == 0 && text && !strcmp(text, T[i].want), "%s: got '%s' (%s)", T[i].file, text ? text : "(null)", err.msg);
        CHECK(itxt == T[i].itxt_ok, "%s: is_itxt %d", T[i].file, itxt);
        free(text);
    }
    /* PIL zip=True: zTXt (Latin-1) and compressed iTXt */
    const char *zf[2] = {"text_zip_latin1.png", "text_zip_utf8.png"};
    const char *unit[2] = {"zipped caf\xc3\xa9 ", "zipped \xe7\x8c\xab "};
    for (int i = 0; i < 2; i++) {
        char *text = NULL;
        sd_err err = {0};
        int rc = sd_png_read_text(fix(zf[i]), "parameters", &text, NULL, &err);
        char want[400] = "";
        for (int k = 0; k < 20; k++) strcat(want, unit[i]);
        CHECK(rc == 0 && text && !strcmp(text, want), "%s: got '%.40s' (%s)", zf[i], text ? text : "(null)", err.msg);
        free(text);
    }
}

static void test_load_and_resize(void)
{
    sd_err err = {0};
    sd_image src;
    int rc = sd_image_load(&src, fix("src.png"), &err);
    CHECK(rc == 0 && src.w == 45 && src.h == 37, "load src.png: %s", err.msg);
    if (rc) return;
    static const int sizes[][2] = {{24, 16}, {64, 48}, {45, 20}, {13, 37}, {8, 8}, {100, 91}, {40, 32}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        int w = sizes[i][0], h = sizes[i][1];
        char name[64];
        snprintf(name, sizeof name, "lanczos_%dx%d.png", w, h);
        sd_image want, got;
        if (sd_image_load(&want, fix(name), &err)) { CHECK(0, "%s: %s", name, err.msg); continue; }
        rc = sd_image_resize_lanczos(&src, w, h, &got, &err);
        CHECK(rc == 0, "resize to %dx%d: %s", w, h, err.msg);
        long nd = 0;
        int m = rc == 0 ? max_diff(&got, &want, &nd) : 999;
        printf("%s   lanczos 45x37 -> %dx%d vs PIL: max |diff| %d, %ld of %d values differ\n", m == 0 ? "ok " : "BAD", w, h, m, nd, w * h * 3);
        CHECK(m == 0, "lanczos %dx%d: max diff %d (%ld values) vs PIL", w, h, m, nd);
        sd_image_free(&want);
        sd_image_free(&got);
    }
    sd_image same;
    rc = sd_image_resize_lanczos(&src, 45, 37, &same, &err);
    CHECK(rc == 0 && !memcmp(same.rgb, src.rgb, 45 * 37 * 3), "same-size resize is a copy");
    sd_image_free(&same);
    /* init-image path: 45x37 -> 40x32 (multiples of 8) through Lanczos */
    sd_image init;
    int resized = 0;
    rc = sd_image_load_init(&init, fix("src.png"), &resized, &err);
    sd_image want;
    if (rc == 0 && sd_image_load(&want, fix("lanczos_40x32.png"), &err) == 0) {
        long nd;
        CHECK(resized && init.w == 40 && init.h == 32 && max_diff(&init, &want, &nd) == 0, "load_init: %dx%d resized %d", init.w, init.h, resized);
        sd_image_free(&want);
    } else {
        CHECK(0, "load_init: %s", err.msg);
    }
    sd_image_free(&init);
    sd_image_free(&src);

    /* other PNG colour types: same as PIL's convert("RGB") */
    const char *types[][2] = {{"rgba.png", "rgba_rgb.png"}, {"gray.png", "gray_rgb.png"}, {"pal.png", "pal_rgb.png"}};
    for (int i = 0; i < 3; i++) {
        sd_image a, b;
        int ra = sd_image_load(&a, fix(types[i][0]), &err);
        int rb = sd_image_load(&b, fix(types[i][1]), &err);
        long nd = 0;
        int m = ra == 0 && rb == 0 ? max_diff(&a, &b, &nd) : 999;
        CHECK(m == 0, "%s vs PIL convert('RGB'): max diff %d (%s)", types[i][0], m, err.msg);
        sd_image_free(&a);
        sd_image_free(&b);
    }
    /* JPEG: stb_image's decoder is not libjpeg's (IDCT, chroma upsampling): a few LSB apart */
    sd_image a, b;
    int ra = sd_image_load(&a, fix("photo.jpg"), &err);
    int rb = sd_image_load(&b, fix("photo_pil.png"), &err);
    long nd = 0;
    int m = ra == 0 && rb == 0 ? max_diff(&a, &b, &nd) : 999;
    printf("ok   JPEG 40x32 decode vs PIL: max |diff| %d, %ld of %d values differ\n", m, nd, 40 * 32 * 3);
    CHECK(m <= 4, "photo.jpg vs PIL decode: max diff %d", m);
    sd_image_free(&a);
    sd_image_free(&b);
    /* EXIF orientation 1..8 vs PIL's ImageOps.exif_transpose (a wrong turn differs by far more than
     * the decoders' few LSB) */
    for (int k = 1; k <= 8; k++) {
        char jn[32], pn[32];
        snprintf(jn, sizeof jn, "orient_%d.jpg", k);
        snprintf(pn, sizeof pn, "orient_%d_pil.png", k);
        ra = sd_image_load(&a, fix(jn), &err);
        rb = sd_image_load(&b, fix(pn), &err);
        m = ra == 0 && rb == 0 ? max_diff(&a, &b, &nd) : 999;
        CHECK(m <= 4 && a.w == (k >= 5 ? 32 : 40), "EXIF orientation %d: %dx%d, max diff %d vs PIL exif_transpose", k, a.w, a.h, m);
        sd_image_free(&a);
        sd_image_free(&b);
    }
    printf("ok   EXIF orientations 1-8 match PIL exif_transpose\n");
}

static void test_bad_images(const char *tmp)
{
    sd_err err = {0};
    sd_image im;
    char path[4200];
    /* not an image */
    snprintf(path, sizeof path, "%s/not-image.png", tmp);
    FILE *f = fopen(path, "wb");
    fputs("hello, this is text\n", f);
    fclose(f);
    int rc = sd_image_load(&im, path, &err);
    CHECK(rc != 0 && strstr(err.msg, path) && strstr(err.msg, "not a PNG or JPEG image"), "text file: '%s'", err.msg);
    /* missing file */
    snprintf(path, sizeof path, "%s/missing.png", tmp);
    rc = sd_image_load(&im, path, &err);
    CHECK(rc != 0 && strstr(err.msg, path), "missing: '%s'", err.msg);
    /* header claiming 20000x10 and 16000x16000: refused from the header, nothing decoded */
    const int dims[2][2] = {{20000, 10}, {16000, 16000}};
    for (int k = 0; k < 2; k++) {
        uint8_t png[8 + 25 + 12];
        memcpy(png, "\x89PNG\r\n\x1a\n", 8);
        uint8_t *c = png + 8;
        c[0] = 0; c[1] = 0; c[2] = 0; c[3] = 13;
        memcpy(c + 4, "IHDR", 4);
        uint32_t W = (uint32_t)dims[k][0], H = (uint32_t)dims[k][1];
        uint8_t ihdr[13] = {W >> 24, W >> 16 & 255, W >> 8 & 255, W & 255, H >> 24, H >> 16 & 255, H >> 8 & 255, H & 255, 8, 2, 0, 0, 0};
        memcpy(c + 8, ihdr, 13);
        uint32_t crc = sd_crc32(0, c + 4, 17);
        c[21] = crc >> 24; c[22] = crc >> 16 & 255; c[23] = crc >> 8 & 255; c[24] = crc & 255;
        memcpy(c + 25, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
        char want[64];
        snprintf(want, sizeof want, "image too large (%dx%d; at most 16384 pixels per side", dims[k][0], dims[k][1]);
        rc = sd_image_load_mem(&im, png, sizeof png, "huge.png", &err);
        CHECK(rc != 0 && strstr(err.msg, "huge.png") && strstr(err.msg, want), "huge %dx%d: '%s'", dims[k][0], dims[k][1], err.msg);
    }
    /* fuzzer finds against stb_image 2.27: an over-long Huffman table (overflowed stb's arrays), a scan
     * using a table never defined (uninitialised decoder state), an IDAT claiming 2 GB in a tiny file */
    rc = sd_image_load(&im, fix("bad_dht.jpg"), &err);
    CHECK(rc != 0 && strstr(err.msg, "Huffman table"), "bad_dht.jpg: '%s'", err.msg);
    rc = sd_image_load(&im, fix("bad_huff_undefined.jpg"), &err);
    CHECK(1, "bad_huff_undefined.jpg: no crash");
    if (rc == 0) sd_image_free(&im);
    {
        uint8_t png[8 + 25 + 12 + 4];
        memcpy(png, "\x89PNG\r\n\x1a\n", 8);
        uint8_t *c = png + 8;
        memcpy(c, "\0\0\0\x0dIHDR\0\0\0\x10\0\0\0\x10\x08\x02\0\0\0", 21);
        uint32_t crc = sd_crc32(0, c + 4, 17);
        c[21] = crc >> 24; c[22] = crc >> 16 & 255; c[23] = crc >> 8 & 255; c[24] = crc & 255;
        memcpy(c + 25, "\x7f\xff\0\0IDATxxxxxxxx", 16);
        rc = sd_image_load_mem(&im, png, sizeof png, "bigidat.png", &err);
        CHECK(rc != 0 && strstr(err.msg, "bigidat.png: corrupt image: truncated PNG"), "2 GB IDAT claim: '%s'", err.msg);
    }
    /* truncated PNG */
    size_t n;
    uint8_t *d = (uint8_t *)sd_test_read_file(fix("src.png"), &n);
    rc = sd_image_load_mem(&im, d, n / 2, "trunc.png", &err);
    CHECK(rc != 0 && strstr(err.msg, "trunc.png") && strstr(err.msg, "corrupt"), "truncated: '%s'", err.msg);
    free(d);
    /* too small for an init image */
    int w8, h8;
    CHECK(sd_image_init_size(7, 100, &w8, &h8, &err) != 0, "7 px wide init image accepted");
    CHECK(sd_image_init_size(517, 519, &w8, &h8, &err) == 0 && w8 == 512 && h8 == 512, "init size rounding");
}

static void test_golden_image_in(void)
{
    sd_err err = {0};
    sd_image im;
    if (sd_test_skip_shared("golden p7 init image")) return;
    const char *png = sd_test_path("golden/cases/p7-tiny-sd1-img2img-ddim/init.png");
    int rc = sd_image_load(&im, png, &err);
    CHECK(rc == 0 && im.w == 64 && im.h == 64, "p7 init.png: %s", err.msg);
    if (rc) return;
    sd_npy u8, fin;
    if (sd_npy_read(&u8, sd_test_path("golden/cases/p7-tiny-sd1-img2img-ddim/init_image.npy"), &err) == 0) {
        int same = u8.numel == 64 * 64 * 3;
        for (long i = 0; same && i < u8.numel; i++) same = u8.i64[i] == im.rgb[i];
        CHECK(same, "init.png pixels == init_image.npy");
        sd_npy_free(&u8);
    }
    if (sd_npy_read(&fin, sd_test_path("golden/cases/p7-tiny-sd1-img2img-ddim/image_in.npy"), &err) == 0) {
        float *f = malloc(sizeof(float) * 3 * 64 * 64);
        sd_image_to_float(&im, f);
        CHECK(fin.numel == 3 * 64 * 64, "image_in shape");
        CHECK_CLOSE("image_in (2*(u8/255)-1, golden p7, exact)", f, fin.f32, 3 * 64 * 64, 0.0);
        free(f);
        sd_npy_free(&fin);
    } else {
        CHECK(0, "image_in.npy: %s", err.msg);
    }
    sd_image_free(&im);
}

int main(void)
{
    const char *src = getenv("SDGEN_SOURCE_DIR");
    snprintf(fixdir, sizeof fixdir, "%s/tests/fixtures/images", src && *src ? src : "..");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/image", sd_test_tmp());
    mkdir(tmp, 0755);
    /* independent CRC reference: zlib's crc32 of "123456789" is the ISO 3309 check value */
    CHECK(sd_crc32(0, "123456789", 9) == 0xCBF43926u && (uint32_t)crc32(0, (const Bytef *)"123456789", 9) == 0xCBF43926u, "CRC-32 check value");
    test_png_roundtrip(tmp);
    test_atomic_failures(tmp);
    test_pil_text_chunks();
    test_load_and_resize();
    test_bad_images(tmp);
    test_golden_image_in();
    TEST_MAIN_END();
}
