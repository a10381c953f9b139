/* test_robust.c — library-level checks behind tests/test_robust_inputs.sh: which runs the ddim/ddpm
 * schedule refuses (and which it keeps, as diffusers does), the step guard, the non-finite scan,
 * sd_open_regular on every kind of file, safetensors header padding, and the weight scan. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdgen/model.h"
#include "sdgen/safetensors.h"
#include "sdgen/sched.h"
#include "testutil.h"

static sd_sched g_s; /* ~60 KB: not on the stack */

/* Init + optional strength + check; returns the check's result (or -2 when init/strength fail). */
static int run_check(sd_sampler smp, sd_spacing sp, int steps, double strength, const sd_sched_config *cfg,
                     sd_err *err)
{
    if (sd_sched_init(&g_s, smp, SD_SCHEDULE_DEFAULT, sp, SD_PRED_EPS, steps, cfg, err)) return -2;
    int rc = 0;
    if (strength < 1.0 && sd_sched_set_strength(&g_s, strength, err)) rc = -2;
    if (rc == 0) rc = sd_sched_check_run(&g_s, strength, err);
    sd_sched_free(&g_s);
    return rc;
}

static void test_schedule_range(void)
{
    sd_err err = {0};
    /* leading spacing, steps_offset 1 (SD defaults): 1000 steps start at t = 1000 */
    CHECK(run_check(SD_SAMPLER_DDIM, SD_SPACING_DEFAULT, 1000, 1.0, NULL, &err) == -1 &&
              strstr(err.msg, "runs timestep 1000, past the end of the 1000-step noise schedule"),
          "ddim 1000 steps: %s", err.msg);
    CHECK(run_check(SD_SAMPLER_DDPM, SD_SPACING_DEFAULT, 1000, 1.0, NULL, &err) == -1 &&
              strstr(err.msg, "DDPMScheduler"),
          "ddpm 1000 steps: %s", err.msg);
    CHECK(run_check(SD_SAMPLER_DDIM, SD_SPACING_DEFAULT, 999, 1.0, NULL, &err) == 0, "ddim 999 steps: %s", err.msg);
    CHECK(run_check(SD_SAMPLER_DDIM, SD_SPACING_LINSPACE, 1000, 1.0, NULL, &err) == 0, "ddim linspace 1000: %s",
          err.msg);
    CHECK(run_check(SD_SAMPLER_DDIM, SD_SPACING_TRAILING, 1000, 1.0, NULL, &err) == 0, "ddim trailing 1000: %s",
          err.msg);
    /* the sigma samplers interpolate (np.interp clamps): diffusers runs them, so do we */
    CHECK(run_check(SD_SAMPLER_EULER, SD_SPACING_LEADING, 1000, 1.0, NULL, &err) == 0, "euler leading 1000: %s",
          err.msg);
    CHECK(run_check(SD_SAMPLER_EULER_A, SD_SPACING_LEADING, 1000, 1.0, NULL, &err) == 0, "euler_a leading 1000: %s",
          err.msg);
    /* img2img runs the tail: with strength 0.5 the first timestep run is 500 */
    CHECK(run_check(SD_SAMPLER_DDIM, SD_SPACING_DEFAULT, 1000, 0.5, NULL, &err) == 0, "ddim 1000 strength 0.5: %s",
          err.msg);
    CHECK(run_check(SD_SAMPLER_DDIM, SD_SPACING_DEFAULT, 1000, 0.9995, NULL, &err) == 0,
          "ddim 1000 strength 0.9995 (int(999.5) = 999 steps, from t = 999): %s", err.msg);
    /* a scheduler config with a large steps_offset: 20 steps, ratio 50, t0 = 19·50 + 500 = 1450 */
    sd_sched_config cfg = {.num_train_timesteps = 1000, .beta_start = 0.00085, .beta_end = 0.012,
                           .beta_schedule = "scaled_linear", .steps_offset = 500, .from_file = 1};
    CHECK(run_check(SD_SAMPLER_DDIM, SD_SPACING_DEFAULT, 20, 1.0, &cfg, &err) == -1 &&
              strstr(err.msg, "steps_offset 500 runs timestep 1450"),
          "steps_offset 500: %s", err.msg);
    /* its img2img tail with strength 0.3 (6 steps, t = 750..500) lies inside */
    CHECK(run_check(SD_SAMPLER_DDIM, SD_SPACING_DEFAULT, 20, 0.3, &cfg, &err) == 0, "steps_offset 500, 0.3: %s",
          err.msg);
    CHECK(run_check(SD_SAMPLER_EULER, SD_SPACING_LEADING, 20, 1.0, &cfg, &err) == 0, "euler offset 500: %s", err.msg);

    /* the step itself refuses a timestep outside the table (library callers that skip the check) */
    CHECK(sd_sched_init(&g_s, SD_SAMPLER_DDIM, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 1000, NULL, &err) ==
              0,
          "init: %s", err.msg);
    float x[4] = {0}, g[4] = {0};
    CHECK(g_s.timesteps[0] == 1000.0f, "first timestep %g", (double)g_s.timesteps[0]);
    CHECK(sd_sched_step(&g_s, 0, x, g, NULL, 4, &err) == -1 && strstr(err.msg, "outside the 1000-step noise schedule"),
          "step at t = 1000: %s", err.msg);
    sd_sched_free(&g_s);
}

static void test_nonfinite(void)
{
    float v[5] = {1.0f, -2.0f, 3.0f, 0.0f, -0.0f};
    CHECK(sd_find_nonfinite(v, 5) == -1, "finite values");
    v[3] = INFINITY;
    CHECK(sd_find_nonfinite(v, 5) == 3, "Inf at 3");
    v[1] = NAN;
    CHECK(sd_find_nonfinite(v, 5) == 1, "NaN at 1 comes first");
    v[1] = -INFINITY;
    CHECK(sd_find_nonfinite(v, 2) == 1, "-Inf at 1");
    CHECK(sd_find_nonfinite(v, 0) == -1, "empty");
}

static void test_open_regular(const char *dir)
{
    char reg[4200], fifo[4200];
    snprintf(reg, sizeof reg, "%s/regular.bin", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    FILE *f = fopen(reg, "wb");
    if (f) {
        fputs("abc", f);
        fclose(f);
    }
    unlink(fifo);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo: %s", strerror(errno));
    sd_err err = {0};
    struct stat st;
    int fd = sd_open_regular(reg, &st, &err);
    CHECK(fd >= 0 && st.st_size == 3, "regular file: %s", err.msg);
    if (fd >= 0) {
        CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) == 0, "O_NONBLOCK cleared");
        close(fd);
    }
    /* would block forever with a plain open() */
    CHECK(sd_open_regular(fifo, NULL, &err) == -1 && strstr(err.msg, "fifo: not a regular file (a FIFO)") &&
              err.code == SD_ERR_INPUT,
          "FIFO: %s", err.msg);
    CHECK(sd_open_regular(dir, NULL, &err) == -1 && strstr(err.msg, "not a regular file (a directory)"), "dir: %s",
          err.msg);
    CHECK(sd_open_regular("/dev/zero", NULL, &err) == -1 &&
              strstr(err.msg, "/dev/zero: not a regular file (a character device)"),
          "/dev/zero: %s", err.msg);
    char none[4200];
    snprintf(none, sizeof none, "%s/none", dir);
    CHECK(sd_open_regular(none, NULL, &err) == -1 && strstr(err.msg, "none: cannot open: No such file"), "missing: %s",
          err.msg);
    FILE *ff = sd_fopen_regular(fifo, &err);
    CHECK(!ff && strstr(err.msg, "(a FIFO)"), "fopen FIFO: %s", err.msg);
    if (ff) fclose(ff);
    unlink(fifo);
    unlink(reg);
}

/* A safetensors file: 8-byte length, the header bytes as given, data bytes of zeros. */
static void write_st(const char *path, const char *hdr, size_t hlen, size_t data)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    uint64_t n = hlen;
    for (int i = 0; i < 8; i++) fputc((int)(n >> (8 * i)) & 255, f);
    fwrite(hdr, 1, hlen, f);
    for (size_t i = 0; i < data; i++) fputc(0, f);
    fclose(f);
}

static void test_header_padding(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/pad.safetensors", dir);
    const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    char h[256];
    sd_safetensors st;
    sd_err err = {0};
    size_t jl = strlen(json);

    snprintf(h, sizeof h, "%s      ", json); /* the padding the format allows */
    write_st(p, h, strlen(h), 8);
    CHECK(sd_st_open(&st, p, &err) == 0 && st.n_tensors == 1, "space padding: %s", err.msg);
    sd_st_close(&st);

    snprintf(h, sizeof h, "%s  \n ", json); /* a newline is JSON whitespace but not the format's padding */
    write_st(p, h, strlen(h), 8);
    CHECK(sd_st_open(&st, p, &err) == -1 && strstr(err.msg, "header has byte 0x0a after its JSON"), "newline: %s",
          err.msg);

    memcpy(h, json, jl);
    memcpy(h + jl, " \0  ", 4);
    write_st(p, h, jl + 4, 8);
    CHECK(sd_st_open(&st, p, &err) == -1 && strstr(err.msg, "header has byte 0x00 after its JSON"), "NUL: %s", err.msg);

    snprintf(h, sizeof h, "%s{}", json);
    write_st(p, h, strlen(h), 8);
    CHECK(sd_st_open(&st, p, &err) == -1 && strstr(err.msg, "header has byte 0x7b after its JSON"), "second value: %s",
          err.msg);

    snprintf(h, sizeof h, "\t%s", json);
    write_st(p, h, strlen(h), 8);
    CHECK(sd_st_open(&st, p, &err) == -1 && strstr(err.msg, "must start with '{'"), "leading tab: %s", err.msg);
    unlink(p);
}

/* NaN/Inf in each float dtype as stored, found by sd_model_check_weights on the tiny checkpoint. */
static void test_check_weights(const char *dir)
{
    sd_model m;
    sd_err err = {0};
    const char *tiny = sd_test_path("golden/models/tiny-sd1.safetensors");
    if (sd_model_open(&m, tiny, &err)) {
        CHECK(0, "open tiny: %s", err.msg);
        return;
    }
    CHECK(sd_model_check_weights(&m, &err) == 0, "the golden tiny model is clean: %s", err.msg);
    const sd_weight_ref *w = sd_model_find(&m, "model.diffusion_model.out.2.bias");
    CHECK(w != NULL, "out.2.bias present");
    size_t off = 0;
    if (w) off = m.files[0].data_start + m.files[0].tensors[w->index].begin;
    sd_model_close(&m);
    if (!w) return;

    char p[4200], cmd[9000];
    snprintf(p, sizeof p, "%s/nan.safetensors", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod u+w '%s'", tiny, p, p);
    CHECK(system(cmd) == 0, "copy");
    int fd = open(p, O_WRONLY);
    const uint8_t ninf[4] = {0x00, 0x00, 0x80, 0xff}; /* -Inf, little endian */
    CHECK(fd >= 0 && pwrite(fd, ninf, 4, (off_t)(off + 8)) == 4, "patch");
    if (fd >= 0) close(fd);
    CHECK(sd_model_open(&m, p, &err) == 0, "open patched: %s", err.msg);
    CHECK(sd_model_check_weights(&m, &err) == -1 &&
              strstr(err.msg, "tensor \"model.diffusion_model.out.2.bias\" holds -Inf at element 2 (1 non-finite of 4"),
          "-Inf found: %s", err.msg);
    /* the mapping still matches the file: no change reported */
    CHECK(sd_model_check_unchanged(&m, &err) == 0, "unchanged: %s", err.msg);
    fd = open(p, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, ninf, 4, (off_t)off) == 4, "rewrite");
    if (fd >= 0) close(fd);
    /* the write may land in the same clock tick as the copy: move the mtime explicitly */
    struct timespec ts[2] = {{0, UTIME_OMIT}, {12345, 0}};
    utimensat(AT_FDCWD, p, ts, 0);
    CHECK(sd_model_check_unchanged(&m, &err) == -1 && strstr(err.msg, "the model file changed while in use (rewritten"),
          "rewritten: %s", err.msg);
    sd_model_close(&m);
    unlink(p);
}

int main(void)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/robust", sd_test_tmp());
    mkdir(dir, 0755);
    test_schedule_range();
    test_nonfinite();
    test_open_regular(dir);
    test_header_padding(dir);
    test_check_weights(dir);
    TEST_MAIN_END();
}
