/* test_output_files.c — what the generator does to the files at its output paths (image.h):
 *   - sd_png_verify: a PNG whose chunks are intact but whose image data is cut, padded or does not match its
 *     IHDR size is not complete (Adam7 sizes included);
 *   - the write modes: only regular files are replaced (FIFO, symbolic link, dangling link refused and left
 *     as they were), SD_WRITE_REPLACE_INCOMPLETE replaces a truncated PNG but keeps a complete one;
 *   - sd_remove_stale_temps removes exactly the temporary files of dead writers from before the run;
 *   - sd_check_output_name / sd_output_state: control characters, NAME_MAX, what is in the way. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "sdgen/image.h"
#include "testutil.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Append a chunk (length, type, data, CRC) at out + *n. */
static void chunk(uint8_t *out, size_t *n, const char *type, const uint8_t *data, uint32_t len)
{
    put32(out + *n, len);
    memcpy(out + *n + 4, type, 4);
    if (len) memcpy(out + *n + 8, data, len);
    put32(out + *n + 8 + len, sd_crc32(0, out + *n + 4, 4 + (size_t)len));
    *n += 12 + len;
}

/* A PNG from raw (already filtered) scanline bytes, IDAT = zlib of them; returns its length in out. */
static size_t mkpng(uint8_t *out, uint32_t w, uint32_t h, int depth, int ctype, int interlace, const uint8_t *raw,
                    size_t rawlen)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    size_t n = 8;
    memcpy(out, sig, 8);
    uint8_t ihdr[13];
    put32(ihdr, w);
    put32(ihdr + 4, h);
    ihdr[8] = (uint8_t)depth, ihdr[9] = (uint8_t)ctype, ihdr[10] = 0, ihdr[11] = 0, ihdr[12] = (uint8_t)interlace;
    chunk(out, &n, "IHDR", ihdr, 13);
    uLongf zl = compressBound((uLong)rawlen);
    uint8_t *z = malloc(zl);
    compress(z, &zl, raw, (uLong)rawlen);
    chunk(out, &n, "IDAT", z, (uint32_t)zl);
    free(z);
    chunk(out, &n, "IEND", NULL, 0);
    return n;
}

static void test_verify_image_data(void)
{
    uint8_t raw[4096], png[8192];
    memset(raw, 0, sizeof raw);
    sd_err err = {0};
    /* 5×3 RGB 8-bit: 3 rows of 1 + 15 bytes */
    size_t n = mkpng(png, 5, 3, 8, 2, 0, raw, 48);
    CHECK(sd_png_verify_mem(png, n, "ok.png", &err) == 0, "5x3 RGB with 48 raw bytes: %s", err.msg);
    n = mkpng(png, 5, 3, 8, 2, 0, raw, 47);
    CHECK(sd_png_verify_mem(png, n, "short.png", &err) != 0 && strstr(err.msg, "holds 47 bytes, its IHDR needs 48"),
          "one byte short (valid CRCs): '%s'", err.msg);
    n = mkpng(png, 5, 3, 8, 2, 0, raw, 49);
    CHECK(sd_png_verify_mem(png, n, "long.png", &err) != 0 && strstr(err.msg, "longer than its IHDR allows"),
          "one byte too many: '%s'", err.msg);
    /* IHDR claims 4 rows: the data is one row short */
    n = mkpng(png, 5, 4, 8, 2, 0, raw, 48);
    CHECK(sd_png_verify_mem(png, n, "tall.png", &err) != 0 && strstr(err.msg, "its IHDR needs 64"), "IHDR taller: '%s'",
          err.msg);
    /* a zlib stream cut inside IDAT, the chunk re-CRC'd: truncated image data */
    {
        uint8_t big[3000];
        for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7919u >> 3);
        n = mkpng(png, 999, 1, 8, 2, 0, big, 1 + 999 * 3);
        uint32_t idat_len = (uint32_t)png[33] << 24 | (uint32_t)png[34] << 16 | (uint32_t)png[35] << 8 | png[36];
        uint8_t cut[8192];
        size_t m = 33;
        memcpy(cut, png, 33);
        chunk(cut, &m, "IDAT", png + 33 + 8, idat_len / 2);
        chunk(cut, &m, "IEND", NULL, 0);
        CHECK(sd_png_verify_mem(cut, m, "cut.png", &err) != 0 && strstr(err.msg, "image data is truncated"),
              "IDAT cut in half with a valid CRC: '%s'", err.msg);
        /* the same data split over two IDAT chunks is complete */
        m = 33;
        chunk(cut, &m, "IDAT", png + 33 + 8, idat_len / 2);
        chunk(cut, &m, "IDAT", png + 33 + 8 + idat_len / 2, idat_len - idat_len / 2);
        chunk(cut, &m, "IEND", NULL, 0);
        CHECK(sd_png_verify_mem(cut, m, "split.png", &err) == 0, "IDAT split in two: %s", err.msg);
        /* no IDAT at all */
        m = 33;
        chunk(cut, &m, "IEND", NULL, 0);
        CHECK(sd_png_verify_mem(cut, m, "noidat.png", &err) != 0 && strstr(err.msg, "no IDAT"), "no IDAT: '%s'", err.msg);
        /* corrupt deflate data with a valid chunk CRC */
        m = 33;
        uint8_t junk[64];
        memset(junk, 0xFF, sizeof junk);
        chunk(cut, &m, "IDAT", junk, sizeof junk);
        chunk(cut, &m, "IEND", NULL, 0);
        CHECK(sd_png_verify_mem(cut, m, "junk.png", &err) != 0 && strstr(err.msg, "junk.png"), "junk IDAT: '%s'", err.msg);
    }
    /* Adam7, 3×3 grey 8-bit: passes 1, 4, 5, 6, 7 hold 1, 1, 2, 2, 3 pixels in 1, 1, 1, 2, 1 rows:
     * (1+1) + (1+1) + (1+2) + 2·(1+1) + (1+3) = 15 bytes (passes 2 and 3 are empty) */
    n = mkpng(png, 3, 3, 8, 0, 1, raw, 15);
    CHECK(sd_png_verify_mem(png, n, "adam7.png", &err) == 0, "Adam7 3x3: %s", err.msg);
    n = mkpng(png, 3, 3, 8, 0, 1, raw, 14);
    CHECK(sd_png_verify_mem(png, n, "adam7s.png", &err) != 0 && strstr(err.msg, "needs 15"), "Adam7 short: '%s'", err.msg);
    /* 1-bit grey 9×2: rows of 1 + 2 bytes; palette 4-bit 3×1: 1 + 2 */
    n = mkpng(png, 9, 2, 1, 0, 0, raw, 6);
    CHECK(sd_png_verify_mem(png, n, "bits.png", &err) == 0, "1-bit 9x2: %s", err.msg);
    n = mkpng(png, 3, 1, 4, 3, 0, raw, 3);
    CHECK(sd_png_verify_mem(png, n, "pal4.png", &err) == 0, "4-bit palette 3x1: %s", err.msg);
    /* invalid IHDRs: 0 width, RGB at 4 bits, interlace method 2 */
    n = mkpng(png, 0, 3, 8, 2, 0, raw, 3);
    CHECK(sd_png_verify_mem(png, n, "w0.png", &err) != 0 && strstr(err.msg, "invalid size or pixel format"), "0 width: '%s'",
          err.msg);
    n = mkpng(png, 2, 2, 4, 2, 0, raw, 8);
    CHECK(sd_png_verify_mem(png, n, "rgb4.png", &err) != 0, "RGB at 4 bits refused");
    n = mkpng(png, 2, 2, 8, 0, 2, raw, 6);
    CHECK(sd_png_verify_mem(png, n, "il2.png", &err) != 0, "interlace method 2 refused");
    /* what the encoder writes verifies */
    uint8_t px[8 * 6 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37);
    uint8_t *enc;
    size_t el;
    CHECK(sd_png_encode(px, 8, 6, "parameters", "p", &enc, &el, &err) == 0 &&
              sd_png_verify_mem(enc, el, "enc.png", &err) == 0,
          "encoded PNG verifies: %s", err.msg);
    free(enc);
}

static int is_kind(const char *p, mode_t kind)
{
    struct stat st;
    return lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == kind;
}

static void test_write_modes(const char *tmp)
{
    uint8_t px[4 * 4 * 3] = {0};
    char p[4300], t[4300];
    sd_err err = {0};

    snprintf(p, sizeof p, "%s/fifo.png", tmp);
    unlink(p);
    CHECK(mkfifo(p, 0644) == 0, "mkfifo: %s", strerror(errno));
    for (int mode = SD_WRITE_NEW; mode <= SD_WRITE_REPLACE_INCOMPLETE; mode++) {
        int rc = sd_png_write(p, px, 4, 4, "x", mode, &err);
        CHECK(rc != 0 && is_kind(p, S_IFIFO) && strstr(err.msg, "fifo.png"), "mode %d onto a FIFO: rc %d '%s'", mode, rc,
              err.msg);
    }
    CHECK(sd_png_write(p, px, 4, 4, "x", SD_WRITE_REPLACE, &err) != 0 && strstr(err.msg, "is a FIFO, not a regular file"),
          "--overwrite message: '%s'", err.msg);

    /* a symbolic link to a regular file: neither the link nor its target is touched */
    snprintf(t, sizeof t, "%s/target.txt", tmp);
    FILE *f = fopen(t, "w");
    if (f) fputs("precious", f), fclose(f);
    snprintf(p, sizeof p, "%s/link.png", tmp);
    unlink(p);
    CHECK(symlink(t, p) == 0, "symlink");
    CHECK(sd_png_write(p, px, 4, 4, "x", SD_WRITE_REPLACE, &err) != 0 && strstr(err.msg, "a symbolic link") &&
              is_kind(p, S_IFLNK),
          "--overwrite onto a symlink: '%s'", err.msg);
    struct stat st;
    CHECK(stat(t, &st) == 0 && st.st_size == 8, "symlink target unchanged");

    /* a dangling link: never followed to create its target */
    snprintf(p, sizeof p, "%s/dangling.png", tmp);
    snprintf(t, sizeof t, "%s/created-through-link.png", tmp);
    unlink(p);
    unlink(t);
    CHECK(symlink(t, p) == 0, "symlink");
    CHECK(sd_png_write(p, px, 4, 4, "x", SD_WRITE_NEW, &err) != 0 && access(t, F_OK) != 0 && is_kind(p, S_IFLNK),
          "new file onto a dangling link: '%s'", err.msg);
    CHECK(sd_png_write(p, px, 4, 4, "x", SD_WRITE_REPLACE, &err) != 0 && access(t, F_OK) != 0 && is_kind(p, S_IFLNK),
          "--overwrite onto a dangling link: '%s'", err.msg);

    /* --skip-existing's mode: a truncated file is replaced, a complete one kept */
    snprintf(p, sizeof p, "%s/resume.png", tmp);
    unlink(p);
    CHECK(sd_png_write(p, px, 4, 4, "first", SD_WRITE_NEW, &err) == 0, "write: %s", err.msg);
    CHECK(truncate(p, 20) == 0, "truncate");
    CHECK(sd_png_verify(p, &err) != 0, "cut file is incomplete");
    CHECK(sd_png_write(p, px, 4, 4, "second", SD_WRITE_REPLACE_INCOMPLETE, &err) == 0 && sd_png_verify(p, &err) == 0,
          "incomplete file replaced: %s", err.msg);
    char *text = NULL;
    CHECK(sd_png_read_text(p, "parameters", &text, NULL, &err) == 0 && text && !strcmp(text, "second"), "new text");
    free(text);
    CHECK(sd_png_write(p, px, 4, 4, "third", SD_WRITE_REPLACE_INCOMPLETE, &err) != 0 &&
              strstr(err.msg, "a complete PNG appeared there meanwhile"),
          "complete file kept: '%s'", err.msg);
    text = NULL;
    CHECK(sd_png_read_text(p, "parameters", &text, NULL, &err) == 0 && text && !strcmp(text, "second"), "kept text");
    free(text);
    CHECK(sd_png_write(p, px, 4, 4, "x", 7, &err) != 0 && strstr(err.msg, "unknown write mode"), "mode 7 refused");
}

static void touch_at(const char *path, time_t when)
{
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

static void test_stale_temps(const char *tmp)
{
    char dir[4300], p[4600];
    snprintf(dir, sizeof dir, "%s/stale", tmp);
    snprintf(p, sizeof p, "rm -rf '%s'", dir); /* a fresh folder: an earlier run's live pid may be dead now */
    CHECK(system(p) == 0 && mkdir(dir, 0755) == 0, "fresh %s", dir);
    /* a pid that surely ended: a child that has exited and been reaped */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    long live = (long)getppid();
    time_t old = time(NULL) - 3600, future = time(NULL) + 3600;
    char base65[80];
    memset(base65, 'b', 65);
    base65[65] = 0;
    struct { char name[200]; int kind; time_t when; int removed; } F[] = {
        {"", 0, 0, 1},  /* the stale one */
        {"", 0, 0, 0},  /* a live writer's */
        {"", 0, 0, 0},  /* uppercase hex */
        {"", 0, 0, 0},  /* 7 hex digits */
        {"", 0, 0, 0},  /* pid with a leading zero */
        {"", 0, 0, 0},  /* not hidden */
        {"", 0, 0, 0},  /* base of 65 bytes: longer than make_temp writes */
        {"", 1, 0, 0},  /* a directory with the name */
        {"", 2, 0, 0},  /* a symbolic link with the name */
        {"", 0, 0, 0},  /* newer than the run */
        {"", 0, 0, 0},  /* something after the hex digits */
        {"", 0, 0, 1},  /* the largest base make_temp writes: 64 bytes */
    };
    snprintf(F[0].name, 200, ".img-1.png.tmp-%ld-0123abcd", (long)dead);
    snprintf(F[1].name, 200, ".img-2.png.tmp-%ld-0123abcd", live);
    snprintf(F[2].name, 200, ".img-3.png.tmp-%ld-0123ABCD", (long)dead);
    snprintf(F[3].name, 200, ".img-4.png.tmp-%ld-0123abc", (long)dead);
    snprintf(F[4].name, 200, ".img-5.png.tmp-0%ld-0123abcd", (long)dead);
    snprintf(F[5].name, 200, "img-6.png.tmp-%ld-0123abcd", (long)dead);
    snprintf(F[6].name, 200, ".%s.tmp-%ld-0123abcd", base65, (long)dead);
    snprintf(F[7].name, 200, ".dir.png.tmp-%ld-0123abcd", (long)dead);
    snprintf(F[8].name, 200, ".link.png.tmp-%ld-0123abcd", (long)dead);
    snprintf(F[9].name, 200, ".new.png.tmp-%ld-0123abcd", (long)dead);
    snprintf(F[10].name, 200, ".img-7.png.tmp-%ld-0123abcd.png", (long)dead);
    snprintf(F[11].name, 200, ".%.64s.tmp-%ld-0123abcd", base65, (long)dead);
    const int nf = (int)(sizeof F / sizeof *F);
    for (int i = 0; i < nf; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, F[i].name);
        if (F[i].kind == 1) mkdir(p, 0755);
        else if (F[i].kind == 2) CHECK(symlink("/etc/hostname", p) == 0, "symlink %s", F[i].name);
        else {
            FILE *f = fopen(p, "w");
            if (f) fputs("partial", f), fclose(f);
        }
        touch_at(p, i == 9 ? future : old);
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char first[256];
    int n = sd_remove_stale_temps(dir, (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec, first, sizeof first);
    CHECK(n == 2, "removed %d stale files, want 2", n);
    for (int i = 0; i < nf; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, F[i].name);
        struct stat st;
        int there = lstat(p, &st) == 0;
        CHECK(there != F[i].removed, "%s: %s", F[i].name, there ? "still there" : "removed");
    }
    CHECK(!strcmp(first, F[0].name) || !strcmp(first, F[11].name), "first removed: %s", first);
    CHECK(sd_remove_stale_temps("/nonexistent/dir", 0, first, sizeof first) == 0 && first[0] == 0, "missing folder");
}

static void test_names_and_state(const char *tmp)
{
    sd_err err = {0};
    char p[4600], name[300];
    memset(name, 'n', 255);
    name[255] = 0;
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    CHECK(sd_check_output_name(p, &err) == 0, "255-byte name: %s", err.msg);
    snprintf(p, sizeof p, "%s/%sn", tmp, name);
    CHECK(sd_check_output_name(p, &err) != 0 && strstr(err.msg, "the file name is 256 bytes long, more than the 255"),
          "256-byte name: '%s'", err.msg);
    CHECK(sd_check_output_name("out\x1b[2J.png", &err) != 0 && strstr(err.msg, "control character (byte 4)"), "ESC: '%s'",
          err.msg);
    CHECK(sd_check_output_name("a\nb.png", &err) != 0, "newline refused");
    CHECK(sd_check_output_name("c1\xc2\x9b.png", &err) != 0, "C1 CSI refused");
    CHECK(sd_check_output_name("caf\xc3\xa9.png", &err) == 0, "UTF-8 name accepted: %s", err.msg);

    snprintf(p, sizeof p, "%s/absent.png", tmp);
    unlink(p);
    CHECK(sd_output_state(p, &err) == 0, "absent");
    CHECK(sd_output_state("/nonexistent/dir/x.png", &err) == 0, "missing folder: left to sd_check_output_dir");
    snprintf(p, sizeof p, "%s/regular.png", tmp);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
    CHECK(sd_output_state(p, &err) == 1, "regular file");
    CHECK(sd_output_state(tmp, &err) < 0 && strstr(err.msg, "is a directory"), "dir: '%s'", err.msg);
    snprintf(p, sizeof p, "%s/fifo.png", tmp);
    CHECK(sd_output_state(p, &err) < 0 && strstr(err.msg, "is a FIFO, not a regular file"), "fifo: '%s'", err.msg);
    snprintf(p, sizeof p, "%s/dangling.png", tmp);
    CHECK(sd_output_state(p, &err) < 0 && strstr(err.msg, "symbolic link to nothing (dangling)"), "dangling: '%s'",
          err.msg);
    snprintf(p, sizeof p, "%s/link.png", tmp);
    CHECK(sd_output_state(p, &err) < 0 && strstr(err.msg, "is a symbolic link;"), "link: '%s'", err.msg);
    CHECK(sd_output_state("/dev/null", &err) < 0 && strstr(err.msg, "a character device"), "/dev/null: '%s'", err.msg);
}

int main(void)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/output-files", sd_test_tmp());
    mkdir(tmp, 0755);
    test_verify_image_data();
    test_write_modes(tmp);
    test_stale_temps(tmp);
    test_names_and_state(tmp);
    TEST_MAIN_END();
}
