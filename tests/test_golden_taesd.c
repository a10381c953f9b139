/* test_golden_taesd.c — the tiny autoencoder (src/taesd.c) against the golden TAESD cases (golden README §11,
 * §12): decode pt1, pt2, pt4 and encode pt5 through the library with both file namings (the diffusers
 * AutoencoderTiny folder and the original taesd_decoder / taesd_encoder files), the whole txt2img run pt3
 * through the sdgen binary, image-to-image with the tiny encoder (no posterior draw), the live preview, and
 * bad TAESD files (truncated, wrong shapes, missing, wrong latent channels). The synthetic-file checks run
 * without the reference data; the rest exits 77 without it. */
#include <dirent.h>
#include <fcntl.h>

#include "golden_cli.h"
#include "sdgen/pipeline.h"
#include "sdgen/rng.h"
#include "sdgen/sched.h"
#include "sdgen/taesd.h"

/* ---- a small synthetic TAESD written here (width 8), in either naming ---- */

typedef struct st_entry {
    char name[64];
    int64_t shape[4];
    int ndim;
} st_entry;

/* Write F32 tensors (values from a fixed formula of the position) as a safetensors file. */
static int write_st(const char *path, const st_entry *e, int n)
{
    char *hdr = malloc(1 << 16);
    size_t off = 0, len = 0;
    len += (size_t)snprintf(hdr + len, (1 << 16) - len, "{");
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        char shp[96] = "";
        size_t sl = 0;
        for (int d = 0; d < e[i].ndim; d++) {
            numel *= e[i].shape[d];
            sl += (size_t)snprintf(shp + sl, sizeof shp - sl, "%s%lld", d ? "," : "", (long long)e[i].shape[d]);
        }
        len += (size_t)snprintf(hdr + len, (1 << 16) - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                                i ? "," : "", e[i].name, shp, off, off + (size_t)numel * 4);
        off += (size_t)numel * 4;
    }
    len += (size_t)snprintf(hdr + len, (1 << 16) - len, "}");
    while (len % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(hdr);
        return -1;
    }
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, len, f);
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < e[i].ndim; d++) numel *= e[i].shape[d];
        for (int64_t k = 0; k < numel; k++) {
            float v = (float)(((k * 37 + i * 11) % 17) - 8) / 40.0f;
            fwrite(&v, 4, 1, f);
        }
    }
    fclose(f);
    free(hdr);
    return 0;
}

static void add_conv(st_entry *e, int *n, const char *name, int64_t cout, int64_t cin, int bias)
{
    snprintf(e[*n].name, sizeof e[*n].name, "%s.weight", name);
    e[*n].ndim = 4;
    e[*n].shape[0] = cout, e[*n].shape[1] = cin, e[*n].shape[2] = 3, e[*n].shape[3] = 3;
    (*n)++;
    if (!bias) return;
    snprintf(e[*n].name, sizeof e[*n].name, "%s.bias", name);
    e[*n].ndim = 1;
    e[*n].shape[0] = cout;
    (*n)++;
}

/* DecoderTiny with blocks (1,1,1,1) and width 8: layers 0 conv, 1 relu, 2 block, 3 up, 4 conv, 5 block, 6 up,
 * 7 conv, 8 block, 9 up, 10 conv, 11 block, 12 conv. original: key index + 1. latent_c: its latent channels. */
static int synth_decoder(st_entry *e, int original, int latent_c)
{
    int n = 0;
    char nm[64];
    const int shift = original ? 1 : 0;
    const char *pre = original ? "" : "decoder.layers.";
    snprintf(nm, sizeof nm, "%s%d", pre, 0 + shift);
    add_conv(e, &n, nm, 8, latent_c, 1);
    const int blocks[4] = {2, 5, 8, 11}, ups[3] = {4, 7, 10};
    for (int b = 0; b < 4; b++)
        for (int j = 0; j < 3; j++) {
            snprintf(nm, sizeof nm, "%s%d.conv.%d", pre, blocks[b] + shift, 2 * j);
            add_conv(e, &n, nm, 8, 8, 1);
        }
    for (int u = 0; u < 3; u++) {
        snprintf(nm, sizeof nm, "%s%d", pre, ups[u] + shift);
        add_conv(e, &n, nm, 8, 8, 0);
    }
    snprintf(nm, sizeof nm, "%s%d", pre, 12 + shift);
    add_conv(e, &n, nm, 3, 8, 1);
    return n;
}

static void synthetic_checks(const char *dir)
{
    st_entry e[64];
    char dif[4200], orig[4200], bad[4200], cut[4200], sub[4200];
    snprintf(dif, sizeof dif, "%s/taesd-synth.safetensors", dir);
    snprintf(orig, sizeof orig, "%s/synth_taesd_decoder.safetensors", dir);
    int n = synth_decoder(e, 0, 4);
    CHECK(write_st(dif, e, n) == 0, "cannot write %s", dif);
    n = synth_decoder(e, 1, 4);
    CHECK(write_st(orig, e, n) == 0, "cannot write %s", orig);

    sd_taesd a, b;
    sd_err err = {0};
    int oa = sd_taesd_open(&a, dif, &err) == 0;
    CHECK(oa, "open %s: %s", dif, err.msg);
    int ob = sd_taesd_open(&b, orig, &err) == 0;
    CHECK(ob, "open %s: %s", orig, err.msg);
    if (oa && ob) {
        CHECK(a.dec.n == 9 && a.dec.factor == 8 && a.latent_channels == 4 && !a.enc.n,
              "synthetic: %d layers, factor %d, %d latent channels, encoder %d", a.dec.n, a.dec.factor,
              a.latent_channels, a.enc.n);
        CHECK(b.dec.n == a.dec.n && b.dec.layer[8].index == 12, "original naming: %d layers, last index %d", b.dec.n,
              b.dec.layer[8].index);
        /* the same bytes under both namings decode alike, bit for bit */
        sd_arena ar;
        sd_arena_init(&ar, 0, 0);
        sd_tensor z = sd_tensor_4d(&ar, 1, 4, 3, 2), ia, ib;
        for (int i = 0; i < 24; i++) z.data[i] = (float)(i % 7) - 3.0f;
        int da = sd_taesd_decode(&a, &ar, z, &ia, &err) == 0;
        CHECK(da, "decode: %s", err.msg);
        int db = sd_taesd_decode(&b, &ar, z, &ib, &err) == 0;
        CHECK(db, "decode: %s", err.msg);
        if (da && db) {
            CHECK(ia.ne[1] == 3 && ia.ne[2] == 24 && ia.ne[3] == 16, "decoded shape [%lld,%lld,%lld]",
                  (long long)ia.ne[1], (long long)ia.ne[2], (long long)ia.ne[3]);
            CHECK(!memcmp(ia.data, ib.data, (size_t)sd_numel(ia) * 4), "the two namings decode differently");
        }
        /* a latent of the wrong channel count is refused */
        sd_tensor z3 = sd_tensor_4d(&ar, 1, 3, 2, 2), o;
        CHECK(sd_taesd_decode(&a, &ar, z3, &o, &err) != 0 && strstr(err.msg, "[1,3,2,2]"),
              "3-channel latent: \"%s\"", err.msg);
        sd_arena_free(&ar);
    }
    if (oa) sd_taesd_close(&a);
    if (ob) sd_taesd_close(&b);

    /* missing */
    snprintf(bad, sizeof bad, "%s/no-such-taesd.safetensors", dir);
    CHECK(sd_taesd_open(&a, bad, &err) != 0 && strstr(err.msg, "no-such-taesd"), "missing file: \"%s\"", err.msg);
    /* truncated: the header promises more bytes than the file has */
    snprintf(cut, sizeof cut, "%s/taesd-cut.safetensors", dir);
    {
        FILE *f = fopen(dif, "rb"), *g = fopen(cut, "wb");
        char buf[3000];
        size_t k = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (g) fwrite(buf, 1, k, g);
        if (f) fclose(f);
        if (g) fclose(g);
    }
    CHECK(sd_taesd_open(&a, cut, &err) != 0 && strstr(err.msg, "taesd-cut"), "truncated file: \"%s\"", err.msg);
    /* wrong shape: one Block conv 3x1 */
    snprintf(sub, sizeof sub, "%s/taesd-shape.safetensors", dir);
    n = synth_decoder(e, 0, 4);
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].name, "decoder.layers.5.conv.2.weight")) e[i].shape[3] = 1;
    write_st(sub, e, n);
    CHECK(sd_taesd_open(&a, sub, &err) != 0 && strstr(err.msg, "decoder.layers.5.conv.2.weight") &&
              strstr(err.msg, "[8,8,3,1]") && strstr(err.msg, "[8,8,3,3]"),
          "wrong shape: \"%s\"", err.msg);
    printf("wrong-shape message: %s\n", err.msg);
    /* the same in the original naming: the message names the key as stored, and its diffusers name */
    snprintf(sub, sizeof sub, "%s/shape_taesd_decoder.safetensors", dir);
    n = synth_decoder(e, 1, 4);
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].name, "13.weight")) e[i].shape[1] = 4;
    write_st(sub, e, n);
    CHECK(sd_taesd_open(&a, sub, &err) != 0 && strstr(err.msg, "\"13.weight\" (decoder.layers.12.weight)") &&
              strstr(err.msg, "[3,4,3,3]") && strstr(err.msg, "[3,8,3,3]") && strstr(err.msg, "shape_taesd_decoder"),
          "wrong shape, original naming: \"%s\"", err.msg);
    printf("wrong-shape message (original naming): %s\n", err.msg);
}

/* ---- the golden cases through the library ---- */

static int load(const char *dir, const char *name, sd_npy *a)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s.npy", dir, name);
    sd_err e = {0};
    int ok = sd_npy_read(a, p, &e) == 0;
    CHECK(ok, "%s", e.msg);
    return ok;
}

static sd_tensor as_tensor(const sd_npy *a)
{
    sd_tensor t = {.data = a->f32, .ndim = 4, .ne = {1, 1, 1, 1}};
    for (int d = 0; d < 4 && d < a->ndim; d++) t.ne[d] = a->shape[d];
    return t;
}

/* PNG rule: every value within 1 LSB of the reference, at most 0.2% differ. */
static void compare_png(const char *what, const float *img, int w, int h, const char *ref_png)
{
    sd_image ref = {0};
    sd_err e = {0};
    int ok = sd_image_load(&ref, ref_png, &e) == 0;
    CHECK(ok && ref.w == w && ref.h == h, "%s: reference PNG %s: %s", what, ref_png, e.msg);
    if (!ok || ref.w != w || ref.h != h) return;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    sd_image_float_to_rgb8(img, w, h, rgb);
    long nval = (long)w * h * 3, ndiff = 0;
    int maxd = 0;
    for (long i = 0; i < nval; i++) {
        int d = abs((int)rgb[i] - (int)ref.rgb[i]);
        if (d) ndiff++;
        if (d > maxd) maxd = d;
    }
    printf("%s image.png: max diff %d LSB, %ld of %ld values differ\n", what, maxd, ndiff, nval);
    CHECK(maxd <= 1 && ndiff * 500 <= nval, "%s: PNG max diff %d, %ld of %ld differ", what, maxd, ndiff, nval);
    free(rgb);
    sd_image_free(&ref);
}

static void decode_case(sd_taesd *t, const char *label, const char *case_name)
{
    char dir[4200], what[4400], png[4300];
    snprintf(dir, sizeof dir, "%s/%s", sd_test_path("golden/cases-taesd"), case_name);
    sd_npy lat, clamped, raw, imgf;
    if (!load(dir, "latents", &lat)) return;
    if (!load(dir, "taesd_clamped", &clamped) || !load(dir, "taesd_raw", &raw) || !load(dir, "image_float", &imgf)) {
        sd_npy_free(&lat);
        return;
    }
    sd_arena ar;
    sd_arena_init(&ar, 0, 0);
    sd_err err = {0};
    sd_tensor z = as_tensor(&lat), zc = sd_tensor_new(&ar, 4, z.ne), r, img;
    sd_taesd_soft_clamp(z.data, zc.data, sd_numel(z));
    snprintf(what, sizeof what, "%s %s taesd_clamped", label, case_name);
    CHECK_CLOSE(what, zc.data, clamped.f32, clamped.numel, 1e-6);
    int ok = sd_taesd_decode_layers(t, &ar, zc, &r, &err) == 0;
    CHECK(ok, "%s: %s", case_name, err.msg);
    if (ok) {
        snprintf(what, sizeof what, "%s %s taesd_raw", label, case_name);
        CHECK(sd_numel(r) == raw.numel, "%s: %lld values", what, (long long)sd_numel(r));
        if (sd_numel(r) == raw.numel) CHECK_CLOSE(what, r.data, raw.f32, raw.numel, 1e-4);
    }
    ok = sd_taesd_decode(t, &ar, z, &img, &err) == 0;
    CHECK(ok, "%s: %s", case_name, err.msg);
    if (ok && sd_numel(img) == imgf.numel) {
        snprintf(what, sizeof what, "%s %s image_float", label, case_name);
        CHECK_CLOSE(what, img.data, imgf.f32, imgf.numel, 1e-4);
        snprintf(png, sizeof png, "%s/image.png", dir);
        compare_png(what, img.data, (int)img.ne[3], (int)img.ne[2], png);
    }
    sd_arena_free(&ar);
    sd_npy_free(&lat);
    sd_npy_free(&clamped);
    sd_npy_free(&raw);
    sd_npy_free(&imgf);
}

static void encode_case(sd_taesd *t, const char *label)
{
    char dir[4200], what[4400];
    snprintf(dir, sizeof dir, "%s/pt5-taesd-encode-p7", sd_test_path("golden/cases-taesd"));
    sd_npy in, enc, lat;
    if (!load(dir, "image_in", &in)) return;
    if (!load(dir, "taesd_encoded", &enc) || !load(dir, "latents_encoded", &lat)) {
        sd_npy_free(&in);
        return;
    }
    sd_arena ar;
    sd_arena_init(&ar, 0, 0);
    sd_err err = {0};
    sd_tensor out;
    int ok = sd_taesd_encode(t, &ar, as_tensor(&in), &out, &err) == 0;
    CHECK(ok, "%s pt5: %s", label, err.msg);
    if (ok && sd_numel(out) == enc.numel) {
        snprintf(what, sizeof what, "%s pt5 taesd_encoded", label);
        CHECK_CLOSE(what, out.data, enc.f32, enc.numel, 1e-5);
        snprintf(what, sizeof what, "%s pt5 latents_encoded (scaling factor 1.0)", label);
        CHECK_CLOSE(what, out.data, lat.f32, lat.numel, 1e-5);
    } else if (ok) {
        CHECK(0, "%s pt5: %lld values, reference %lld", label, (long long)sd_numel(out), (long long)enc.numel);
    }
    sd_arena_free(&ar);
    sd_npy_free(&in);
    sd_npy_free(&enc);
    sd_npy_free(&lat);
}

/* The decoder alone on pt3's golden final latents (README §12: 1e-4 there, 1e-3 for the whole run). */
static void pt3_decoder_alone(sd_taesd *t)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/pt3-tiny-sd1-taesd-ddim", sd_test_path("golden/cases-taesd"));
    sd_npy lat, imgf;
    if (!load(dir, "latents_final", &lat)) return;
    if (load(dir, "image_float", &imgf)) {
        sd_arena ar;
        sd_arena_init(&ar, 0, 0);
        sd_err err = {0};
        sd_tensor img;
        int ok = sd_taesd_decode(t, &ar, as_tensor(&lat), &img, &err) == 0;
        CHECK(ok && sd_numel(img) == imgf.numel, "pt3 decode: %s", err.msg);
        if (ok && sd_numel(img) == imgf.numel) CHECK_CLOSE("pt3 latents_final -> image_float", img.data, imgf.f32, imgf.numel, 1e-4);
        sd_arena_free(&ar);
        sd_npy_free(&imgf);
    }
    sd_npy_free(&lat);
}

/* ---- the binary ---- */

/* Run argv with stderr into err_path; the exit code. */
static int run_err(char **argv, const char *err_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* `sdgen bench` with the few-step settings: the tiny decoder is timed and named, guidance off, whole images
 * timed (--json, values checked for presence and sign, never for speed); a bad --cfg-scale is refused. */
static void cli_bench(const char *sdgen, const char *tmp)
{
    char model[4200], tz[4200], outf[4200], errf[4200];
    snprintf(model, sizeof model, "%s", sd_test_path("golden/models/tiny-sd1.safetensors"));
    snprintf(tz, sizeof tz, "%s", sd_test_path("golden/models/taesd"));
    snprintf(outf, sizeof outf, "%s/taesd-bench.json", tmp);
    snprintf(errf, sizeof errf, "%s/taesd-bench.err", tmp);
    char *argv[] = {(char *)sdgen, "bench", "-m", model, "--vocab", (char *)sd_test_path("clip"), "-W", "64", "-H", "64",
                    "--steps", "2", "--sampler", "heun", "--cfg-scale", "1", "--vae-decoder", tz, "--json", NULL};
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(outf, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo >= 0) dup2(fo, 1);
        if (fe >= 0) dup2(fe, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    const int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    CHECK(rc == 0, "bench --vae-decoder --cfg-scale 1 exited %d", rc);
    char *txt = sd_test_read_text(outf);
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    CHECK(j != NULL, "bench --json printed no JSON: %s", txt ? txt : "(nothing)");
    if (j) {
        const cJSON *cfg = cJSON_GetObjectItem(j, "cfg_scale"), *img = cJSON_GetObjectItem(j, "image_again_s"),
                    *first = cJSON_GetObjectItem(j, "text_encode_first_s"), *dec = cJSON_GetObjectItem(j, "vae_decoder"),
                    *tfl = cJSON_GetObjectItem(j, "vae_tflop");
        CHECK(cJSON_IsNumber(cfg) && cfg->valuedouble == 1.0, "bench cfg_scale");
        CHECK(cJSON_IsNumber(img) && img->valuedouble > 0, "bench image_again_s");
        CHECK(cJSON_IsNumber(first) && first->valuedouble > 0, "bench text_encode_first_s");
        CHECK(cJSON_IsString(dec) && !strcmp(dec->valuestring, tz), "bench vae_decoder");
        /* heun calls the model twice a step but not after the last: 2 steps = 3 model calls */
        const cJSON *smp = cJSON_GetObjectItem(j, "sampler"), *calls = cJSON_GetObjectItem(j, "image_model_calls");
        CHECK(cJSON_IsString(smp) && !strcmp(smp->valuestring, "heun"), "bench sampler");
        CHECK(cJSON_IsNumber(calls) && calls->valueint == 3, "bench image_model_calls %d, want 3",
              cJSON_IsNumber(calls) ? calls->valueint : -1);
        /* the TAESD's work at 64x64 (8x8 latent), not the VAE's: 2.2 GFLOP for the golden TAESD's layers */
        sd_taesd t;
        sd_err e = {0};
        if (sd_taesd_open(&t, tz, &e) == 0) {
            const double want = sd_taesd_decode_flops(&t, 8, 8) / 1e12;
            CHECK(cJSON_IsNumber(tfl) && fabs(tfl->valuedouble - want) <= 1e-9 * fmax(1.0, want),
                  "bench vae_tflop %g, want the TAESD's %g", cJSON_IsNumber(tfl) ? tfl->valuedouble : -1.0, want);
            sd_taesd_close(&t);
        }
        cJSON_Delete(j);
    }
    free(txt);
    char *bad[] = {(char *)sdgen, "bench", "-m", model, "--cfg-scale", "x", NULL};
    CHECK(run_err(bad, errf) == 2, "bench --cfg-scale x: not exit 2");
    char *msg = sd_test_read_text(errf);
    CHECK(msg && strstr(msg, "--cfg-scale"), "bench --cfg-scale x: \"%s\"", msg ? msg : "");
    free(msg);
    char *bad_sampler[] = {(char *)sdgen, "bench", "-m", model, "--sampler", "plms", NULL};
    CHECK(run_err(bad_sampler, errf) == 2, "bench --sampler plms: not exit 2");
    msg = sd_test_read_text(errf);
    CHECK(msg && strstr(msg, "--sampler: unknown sampler \"plms\""), "bench --sampler plms: \"%s\"", msg ? msg : "");
    free(msg);
}

static void cli_bad_input(const char *sdgen, const char *tmp, const char *taesd_path, const char *want)
{
    char model[4200], out[4200], errf[4200];
    snprintf(model, sizeof model, "%s", sd_test_path("golden/models/tiny-sd1.safetensors"));
    snprintf(out, sizeof out, "%s/taesd-bad.png", tmp);
    snprintf(errf, sizeof errf, "%s/taesd-bad.err", tmp);
    unlink(out);
    char *argv[] = {(char *)sdgen, "-q", "-m", model, "--vocab", (char *)sd_test_path("clip"), "-p", "x", "-W", "64", "-H",
                    "64", "--steps", "1", "--seed", "1", "--taesd", (char *)taesd_path, "-o", out, NULL};
    int rc = run_err(argv, errf);
    char *msg = sd_test_read_text(errf);
    CHECK(rc == 2 && msg && strstr(msg, want), "--taesd %s: exit %d (want 2), stderr \"%s\" lacks \"%s\"", taesd_path, rc,
          msg ? msg : "", want);
    struct stat sb;
    CHECK(stat(out, &sb) != 0, "--taesd %s: an image was written", taesd_path);
    free(msg);
}

static void cli_preview(const char *sdgen, const char *tmp)
{
    char model[4200], out[4200], dump[4200], prev[4200], errf[4200], tz[4200];
    snprintf(model, sizeof model, "%s", sd_test_path("golden/models/tiny-sd1.safetensors"));
    snprintf(tz, sizeof tz, "%s", sd_test_path("golden/models/taesd"));
    snprintf(out, sizeof out, "%s/taesd-prev-out.png", tmp);
    snprintf(dump, sizeof dump, "%s/taesd-prev-dump", tmp);
    snprintf(prev, sizeof prev, "%s/taesd-preview.png", tmp);
    snprintf(errf, sizeof errf, "%s/taesd-prev.err", tmp);
    unlink(prev);
    /* 5 steps, a preview every 2: written after steps 2 and 4; the file holds step 4's */
    char *argv[] = {(char *)sdgen, "-q", "--overwrite", "-m", model, "--vocab", (char *)sd_test_path("clip"), "-p",
                    "a lighthouse", "-W", "64", "-H", "96", "--steps", "5", "--sampler", "euler_a", "--seed", "3",
                    "--vae-decoder", tz, "--preview", prev, "--preview-every", "2", "--dump-dir", dump, "-o", out, NULL};
    int rc = run_err(argv, errf);
    CHECK(rc == 0, "preview run exited %d", rc);
    sd_image im = {0};
    sd_err e = {0};
    int ok = rc == 0 && sd_image_load(&im, prev, &e) == 0;
    CHECK(ok && im.w == 64 && im.h == 96, "preview %s: %s (%dx%d)", prev, e.msg, im.w, im.h);
    sd_npy steps;
    if (ok && load(dump, "step_latents", &steps)) {
        sd_taesd t;
        if (sd_taesd_open(&t, tz, &e) == 0) {
            sd_arena ar;
            sd_arena_init(&ar, 0, 0);
            const int64_t per = 4 * 12 * 8;
            sd_tensor z = {.data = steps.f32 + 3 * per, .ndim = 4, .ne = {1, 4, 12, 8}}, img;
            CHECK(steps.numel == 5 * per, "step_latents has %lld values", (long long)steps.numel);
            if (steps.numel == 5 * per && sd_taesd_decode(&t, &ar, z, &img, &e) == 0) {
                uint8_t *rgb = malloc(64 * 96 * 3);
                sd_image_float_to_rgb8(img.data, 64, 96, rgb);
                /* the binary runs OpenBLAS's kernels for this CPU (main.c), this test its defaults: the PNG rule */
                long ndiff = 0, nval = 64 * 96 * 3;
                int maxd = 0;
                for (long i = 0; i < nval; i++) {
                    const int d = abs((int)rgb[i] - (int)im.rgb[i]);
                    ndiff += d != 0;
                    if (d > maxd) maxd = d;
                }
                printf("preview vs TAESD decode of step 4's latent: max diff %d LSB, %ld of %ld values differ\n", maxd,
                       ndiff, nval);
                CHECK(maxd <= 1 && ndiff * 500 <= nval, "preview vs the decode of step 4's latent: max diff %d, %ld of %ld differ",
                      maxd, ndiff, nval);
                free(rgb);
            } else {
                CHECK(0, "decode of the dumped latent: %s", e.msg);
            }
            sd_arena_free(&ar);
            sd_taesd_close(&t);
        } else {
            CHECK(0, "%s", e.msg);
        }
        sd_npy_free(&steps);
    }
    sd_image_free(&im);
    /* replaced through temporary files (sd_file_write_atomic): none is left behind */
    DIR *dir = opendir(tmp);
    int temps = 0;
    for (struct dirent *de; dir && (de = readdir(dir));)
        temps += !strncmp(de->d_name, ".taesd-preview.png.tmp", 22);
    if (dir) closedir(dir);
    CHECK(temps == 0, "%d temporary preview files left in %s", temps, tmp);

    /* without --vae-decoder: A1111's Approx cheap at latent size */
    unlink(prev);
    char *argv2[] = {(char *)sdgen, "-q", "--overwrite", "-m", model, "--vocab", (char *)sd_test_path("clip"), "-p",
                     "a lighthouse", "-W", "64", "-H", "96", "--steps", "2", "--seed", "3", "--preview", prev, "-o", out,
                     NULL};
    rc = run_err(argv2, errf);
    ok = rc == 0 && sd_image_load(&im, prev, &e) == 0;
    CHECK(ok && im.w == 8 && im.h == 12, "cheap preview: exit %d, %s (%dx%d, want 8x12)", rc, e.msg, im.w, im.h);
    sd_image_free(&im);
}

/* img2img with the tiny encoder: the encoded latents are pt5's, and the start latent is add_noise(encoded,
 * the FIRST draw of the seed): no posterior sample is drawn before it (README §11.2). */
static void cli_img2img(const char *sdgen, const char *tmp)
{
    char model[4200], out[4200], dump[4200], errf[4200], tz[4200], init[4200], dir5[4200];
    snprintf(model, sizeof model, "%s", sd_test_path("golden/models/tiny-sd1.safetensors"));
    snprintf(tz, sizeof tz, "%s", sd_test_path("golden/models/taesd_decoder.safetensors"));
    snprintf(init, sizeof init, "%s", sd_test_path("golden/cases/p7-tiny-sd1-img2img-ddim/init.png"));
    snprintf(dir5, sizeof dir5, "%s", sd_test_path("golden/cases-taesd/pt5-taesd-encode-p7"));
    snprintf(out, sizeof out, "%s/taesd-i2i.png", tmp);
    snprintf(dump, sizeof dump, "%s/taesd-i2i-dump", tmp);
    snprintf(errf, sizeof errf, "%s/taesd-i2i.err", tmp);
    char *argv[] = {(char *)sdgen, "-q", "--overwrite", "-m", model, "--vocab", (char *)sd_test_path("clip"), "-p", "x",
                    "--init-image", init, "--strength", "0.5", "--steps", "4", "--sampler", "ddim", "--seed", "9",
                    "--taesd", tz, "--dump-dir", dump, "-o", out, NULL};
    int rc = run_err(argv, errf);
    CHECK(rc == 0, "img2img with the tiny encoder exited %d", rc);
    if (rc) return;
    compare_npy_in(dump, dir5, "latents_encoded", (npy_tol){1e-5, 0, 0}, "img2img tiny encoder");
    sd_npy enc, init_lat;
    if (!load(dump, "latents_encoded", &enc)) return;
    if (load(dump, "latents_init", &init_lat)) {
        sd_sched *s = malloc(sizeof *s);
        sd_err e = {0};
        int ok = sd_sched_init(s, SD_SAMPLER_DDIM, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT, SD_PRED_EPS, 4, NULL, &e) == 0 &&
                 sd_sched_set_strength(s, 0.5, &e) == 0;
        CHECK(ok, "schedule: %s", e.msg);
        if (ok) {
            float *noise = malloc((size_t)enc.numel * 4), *want = malloc((size_t)enc.numel * 4);
            sd_rng rng;
            sd_rng_init(&rng, SD_RNG_CPU, 9);
            sd_rng_randn(&rng, noise, enc.numel);
            sd_sched_add_noise(s, enc.f32, noise, want, enc.numel);
            CHECK_CLOSE("img2img latents_init = add_noise(encoded, first draw)", init_lat.f32, want, enc.numel, 1e-6);
            free(noise);
            free(want);
            sd_sched_free(s);
        }
        free(s);
        sd_npy_free(&init_lat);
    }
    sd_npy_free(&enc);
}

/* A JSON Lines batch takes the command line's --vae-decoder for every item (a run-wide setting): each item's
 * PNG is the tiny decoder's image of its own latent (compared with its dump). */
static void cli_batch(const char *sdgen, const char *tmp)
{
    char model[4200], tz[4200], jl[4200], tmpl[4200], dump[4200], errf[4200];
    snprintf(model, sizeof model, "%s", sd_test_path("golden/models/tiny-sd1.safetensors"));
    snprintf(tz, sizeof tz, "%s", sd_test_path("golden/models/taesd"));
    snprintf(jl, sizeof jl, "%s/taesd-batch.jsonl", tmp);
    snprintf(tmpl, sizeof tmpl, "%s/taesd-batch-{index}.png", tmp);
    snprintf(dump, sizeof dump, "%s/taesd-batch-dump", tmp);
    snprintf(errf, sizeof errf, "%s/taesd-batch.err", tmp);
    FILE *f = fopen(jl, "w");
    if (!f) {
        CHECK(0, "cannot write %s", jl);
        return;
    }
    fprintf(f, "{\"prompt\": \"a red apple\", \"seed\": 1, \"steps\": 2, \"width\": 64, \"height\": 64}\n"
               "{\"prompt\": \"a house\", \"seed\": 2, \"steps\": 2, \"width\": 64, \"height\": 96}\n");
    fclose(f);
    char *argv[] = {(char *)sdgen, "-q", "--overwrite", "-m", model, "--vocab", (char *)sd_test_path("clip"),
                    "--prompts", jl, "--vae-decoder", tz, "--dump-dir", dump, "-o", tmpl, NULL};
    int rc = run_err(argv, errf);
    CHECK(rc == 0, "batch with --vae-decoder exited %d", rc);
    for (int i = 1; i <= 2 && rc == 0; i++) {
        char png[4300], d[4300], what[64];
        snprintf(png, sizeof png, "%s/taesd-batch-%d.png", tmp, i);
        snprintf(d, sizeof d, "%s/%d", dump, i);
        sd_npy raw, imgf;
        sd_image im = {0};
        sd_err e = {0};
        int ok = sd_image_load(&im, png, &e) == 0;
        CHECK(ok && im.w == 64 && im.h == (i == 1 ? 64 : 96), "batch item %d: %s (%dx%d)", i, e.msg, im.w, im.h);
        /* taesd_raw is dumped only on the tiny decoder's path */
        if (ok && load(d, "taesd_raw", &raw)) {
            if (load(d, "image_float", &imgf)) {
                snprintf(what, sizeof what, "batch item %d", i);
                compare_png(what, imgf.f32, im.w, im.h, png);
                sd_npy_free(&imgf);
            }
            sd_npy_free(&raw);
        }
        sd_image_free(&im);
    }
}

int main(void)
{
    const char *tmp = sd_test_tmp();
    synthetic_checks(tmp);
    if (sd_test_skip_shared("golden TAESD cases")) TEST_MAIN_END();

    const char *layouts[2][2] = {{"folder", "golden/models/taesd"}, {"original", "golden/models/taesd_decoder.safetensors"}};
    for (int k = 0; k < 2; k++) {
        sd_taesd t;
        sd_err err = {0};
        int ok = sd_taesd_open(&t, sd_test_path(layouts[k][1]), &err) == 0;
        CHECK(ok, "%s: %s", layouts[k][1], err.msg);
        if (!ok) continue;
        CHECK(t.dec.n == 15 && t.enc.n == 15 && t.dec.factor == 8 && t.latent_channels == 4,
              "%s: decoder %d layers, encoder %d, factor %d, %d latent channels", layouts[k][0], t.dec.n, t.enc.n,
              t.dec.factor, t.latent_channels);
        decode_case(&t, layouts[k][0], "pt1-taesd-decode-p1");
        decode_case(&t, layouts[k][0], "pt2-taesd-decode-p2");
        decode_case(&t, layouts[k][0], "pt4-taesd-decode-p1-noise");
        encode_case(&t, layouts[k][0]);
        if (k == 0) pt3_decoder_alone(&t);
        sd_taesd_close(&t);
    }

    const char *sdgen = getenv("SDGEN");
    CHECK(sdgen && *sdgen, "SDGEN (path of the binary) is not set");
    if (!sdgen || !*sdgen) TEST_MAIN_END();
    run_golden_case_in(sdgen, "cases-taesd", "pt3-tiny-sd1-taesd-ddim", NULL);
    cli_preview(sdgen, tmp);
    cli_img2img(sdgen, tmp);
    cli_batch(sdgen, tmp);
    cli_bench(sdgen, tmp);

    char p[4200], wrong[4200];
    snprintf(p, sizeof p, "%s/no-such-taesd", tmp);
    cli_bad_input(sdgen, tmp, p, "no-such-taesd");
    snprintf(p, sizeof p, "%s/taesd-cut.safetensors", tmp);
    cli_bad_input(sdgen, tmp, p, "taesd-cut.safetensors");
    snprintf(p, sizeof p, "%s/taesd-shape.safetensors", tmp);
    cli_bad_input(sdgen, tmp, p, "decoder.layers.5.conv.2.weight");
    /* a tiny decoder for 16-channel latents (SD3 / FLUX) with an SD 1.x model */
    st_entry e[64];
    snprintf(wrong, sizeof wrong, "%s/taesd-16ch.safetensors", tmp);
    write_st(wrong, e, synth_decoder(e, 0, 16));
    cli_bad_input(sdgen, tmp, wrong, "16-channel latents");
    TEST_MAIN_END();
}
