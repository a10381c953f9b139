/* test_sdxl_folder.c — a diffusers SDXL folder (model_index.json, unet with addition_embed_type "text_time",
 * text_encoder + text_encoder_2 in transformers names, tokenizer + tokenizer_2, vae, scheduler) gives exactly
 * what the single-file SGM checkpoint it was made from gives.
 *
 * The folder is written at test time from the golden tiny SDXL (tests/sdxl_folder.h). Every public SDXL
 * golden case on the tiny model then runs on both through the sdgen binary (tests/golden_cli.h, which also
 * checks each run against the reference), and the two runs must agree bit for bit: every dumped tensor file
 * byte-identical, the PNGs' pixels identical and their parameters identical but for the "Model hash" (the
 * hash of a folder is its U-Net file's). `sdgen info` describes both the same way, and faulty SDXL configs
 * are refused with exit code 2 and a message that names the file and the key. */
#include <dirent.h>

#include "golden_cli.h"
#include "sdxl_folder.h"

/* The infotext without its "Model hash: XXXXXXXXXX, " entry. */
static void drop_model_hash(char *t)
{
    char *p = strstr(t, "Model hash: ");
    if (!p) return;
    char *e = strstr(p, ", ");
    if (e) memmove(p, e + 2, strlen(e + 2) + 1);
    else *p = 0;
}

/* The folder run (dir b) against the single-file run (dir a) of one case. */
static void compare_runs(const char *name, const char *a, const char *b)
{
    DIR *d = opendir(a);
    CHECK(d != NULL, "%s: cannot list %s", name, a);
    if (!d) return;
    int n_npy = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".npy")) continue;
        char pa[4400], pb[4400];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        size_t na = 0, nb = 0;
        unsigned char *xa = (unsigned char *)sd_test_read_file(pa, &na), *xb = (unsigned char *)sd_test_read_file(pb, &nb);
        size_t at = 0;
        while (xa && xb && at < na && at < nb && xa[at] == xb[at]) at++;
        CHECK(xa && xb && na == nb && at == na, "%s %s: folder and single file differ (%zu vs %zu bytes, first difference at byte %zu)",
              name, e->d_name, nb, na, at);
        n_npy++;
        free(xa);
        free(xb);
    }
    closedir(d);
    CHECK(n_npy >= 10, "%s: only %d dumped tensors to compare", name, n_npy);

    char pa[4400], pb[4400];
    snprintf(pa, sizeof pa, "%s/image.png", a);
    snprintf(pb, sizeof pb, "%s/image.png", b);
    sd_image ia = {0}, ib = {0};
    sd_err err = {0};
    int la = sd_image_load(&ia, pa, &err) == 0, lb = sd_image_load(&ib, pb, &err) == 0;
    CHECK(la && lb && ia.w == ib.w && ia.h == ib.h && !memcmp(ia.rgb, ib.rgb, (size_t)ia.w * ia.h * 3),
          "%s image.png: the folder's pixels differ from the single file's", name);
    sd_image_free(&ia);
    sd_image_free(&ib);
    char *ta = NULL, *tb = NULL;
    int itxt = 0;
    CHECK(sd_png_read_text(pa, "parameters", &ta, &itxt, &err) == 0 && sd_png_read_text(pb, "parameters", &tb, &itxt, &err) == 0,
          "%s: parameters chunk: %s", name, err.msg);
    if (ta && tb) {
        CHECK(strstr(ta, "Model: tiny-sdxl") && strstr(tb, "Model: tiny-sdxl"), "%s: Model entries: \"%s\" / \"%s\"", name, ta, tb);
        drop_model_hash(ta);
        drop_model_hash(tb);
        CHECK(!strcmp(ta, tb), "%s: parameters differ:\n  file:   %s\n  folder: %s", name, ta, tb);
    }
    free(ta);
    free(tb);
}

/* Run a command line through the shell; its stdout and stderr into files. Returns the exit code. */
static int run_sh(const char *cmd, const char *out, const char *errf)
{
    char line[8192];
    snprintf(line, sizeof line, "%s >'%s' 2>'%s'", cmd, out, errf);
    int st = system(line);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* `sdgen info` prints the same family, components, parameter counts and architecture for both. */
static void test_info(const char *sdgen, const char *file, const char *folder, const char *tmp)
{
    char cmd[8192], oa[4200], ob[4200], ea[4200];
    snprintf(oa, sizeof oa, "%s/info-file.txt", tmp);
    snprintf(ob, sizeof ob, "%s/info-folder.txt", tmp);
    snprintf(ea, sizeof ea, "%s/info.err", tmp);
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", sdgen, file);
    CHECK(run_sh(cmd, oa, ea) == 0, "sdgen info on the single file failed");
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", sdgen, folder);
    int rc = run_sh(cmd, ob, ea);
    char *err = sd_test_read_text(ea);
    CHECK(rc == 0, "sdgen info on the folder: exit %d: %s", rc, err ? err : "");
    free(err);
    char *ta = sd_test_read_text(oa), *tb = sd_test_read_text(ob);
    if (!ta || !tb) {
        CHECK(0, "no info output");
    } else {
        CHECK(strstr(tb, "(diffusers folder)") != NULL, "info: the folder is not described as one:\n%s", tb);
        /* the lines that describe the model (not the files: names, tensor counts and dtypes differ) */
        static const char *const keys[] = {"family:", "prediction:", "components:", "parameters:", "unet:",
                                           "vae:", "text:", "text 2:"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            char la[1024] = "", lb[1024] = "";
            for (int w = 0; w < 2; w++) {
                const char *t = w ? tb : ta;
                char *dst = w ? lb : la;
                for (const char *p = t; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
                    if (!strncmp(p, keys[k], strlen(keys[k]))) {
                        size_t n = strcspn(p, "\n");
                        snprintf(dst, 1024, "%.*s", (int)n, p);
                        break;
                    }
            }
            /* Where the prediction type came from differs (the folder's scheduler config names it). The rest
             * of each line is the same: the second tower is OpenCLIP (ViT-bigG style) in both, although the
             * folder stores it under transformers names (CLIPTextModelWithProjection). */
            if (!strcmp(keys[k], "prediction:")) {
                la[strcspn(la, "(")] = 0;
                lb[strcspn(lb, "(")] = 0;
            }
            if (!strcmp(keys[k], "text 2:"))
                CHECK(!strncmp(la, "text 2:      OpenCLIP, width 128,", 32) &&
                          !strncmp(lb, "text 2:      OpenCLIP, width 128,", 32),
                      "info text 2 is not OpenCLIP in both:\n  file:   %s\n  folder: %s", la, lb);
            if (!strcmp(keys[k], "text:"))
                CHECK(!strncmp(lb, "text:        CLIP, width 64,", 28), "info text (tower 1) of the folder: %s", lb);
            CHECK(la[0] && !strcmp(la, lb), "info %s\n  file:   %s\n  folder: %s", keys[k], la, lb);
        }
        /* --json: the same "kind" for tower 2, and its tensor-name layout under "names" */
        for (int w = 0; w < 2; w++) {
            snprintf(cmd, sizeof cmd, "'%s' info --json '%s'", sdgen, w ? folder : file);
            CHECK(run_sh(cmd, oa, ea) == 0, "sdgen info --json on the %s failed", w ? "folder" : "file");
            char *js = sd_test_read_text(oa);
            const char *t2 = js ? strstr(js, "\"text_2\":{\"kind\"") : NULL;
            const char *t1 = js ? strstr(js, "\"text\":{\"kind\"") : NULL; /* (also a key of the dtype counts) */
            const char *want2 = w ? "\"text_2\":{\"kind\":\"openclip\",\"names\":\"transformers\","
                                  : "\"text_2\":{\"kind\":\"openclip\",\"names\":\"open_clip\",";
            const char *want1 = "\"text\":{\"kind\":\"clip\",\"names\":\"transformers\",";
            CHECK(t2 && !strncmp(t2, want2, strlen(want2)), "info --json text_2 of the %s: %.80s", w ? "folder" : "file",
                  t2 ? t2 : "(none)");
            CHECK(t1 && !strncmp(t1, want1, strlen(want1)), "info --json text of the %s: %.80s", w ? "folder" : "file",
                  t1 ? t1 : "(none)");
            free(js);
        }
        CHECK(strstr(tb, "family:      sdxl") && strstr(tb, "scale 0.13025") && strstr(tb, "pad 0, projection 96") &&
                  strstr(tb, "label_emb from 288 values") && strstr(tb, "depth 1 2 2"),
              "info on the folder:\n%s", tb);
    }
    free(ta);
    free(tb);
}

/* Replace the first `from` in text by `to` into out. */
static void replaced(const char *text, const char *from, const char *to, char *out, size_t cap)
{
    const char *p = strstr(text, from);
    if (!p) {
        snprintf(out, cap, "%s", text);
        return;
    }
    snprintf(out, cap, "%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
}

/* Faulty configs: exit code 2, one message naming the file and the fault. */
static void test_bad_configs(const char *sdgen, const char *folder, const char *tmp)
{
    static const struct {
        const char *file, *from, *to, *want;
    } cases[] = {
        {"unet/config.json", "\"text_time\"", "\"image\"", "unet/config.json: addition_embed_type \"image\" is not supported"},
        {"unet/config.json", "\"projection_class_embeddings_input_dim\": 288", "\"projection_class_embeddings_input_dim\": 300",
         "projection_class_embeddings_input_dim 300 is not text_encoder_2's projection_dim 96 + 6 x addition_time_embed_dim 32"},
        {"unet/config.json", "\"addition_time_embed_dim\": 32", "\"addition_time_embed_dim\": 31",
         "unet/config.json: \"addition_time_embed_dim\" 31 must be even"},
        {"unet/config.json", "\"addition_time_embed_dim\": 32,", "",
         "unet/config.json: addition_embed_type \"text_time\" needs \"addition_time_embed_dim\""},
        {"unet/config.json", "\"transformer_layers_per_block\": [1, 1, 2]", "\"transformer_layers_per_block\": [1, 2]",
         "unet/config.json: \"transformer_layers_per_block\" lists 2 depths for 3 levels"},
        {"unet/config.json", "\"transformer_layers_per_block\": [1, 1, 2]", "\"transformer_layers_per_block\": [1, 1, 3]",
         "transformer_blocks.2"},
        {"unet/config.json", "\"reverse_transformer_layers_per_block\": null", "\"reverse_transformer_layers_per_block\": [2, 1, 1]",
         "unet/config.json: \"reverse_transformer_layers_per_block\" is not supported"},
        {"text_encoder_2/config.json", "\"projection_dim\": 96", "\"projection_dim\": 64",
         "projection_class_embeddings_input_dim 288 is not text_encoder_2's projection_dim 64"},
        {"text_encoder_2/config.json", "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 1",
         "text_encoder_2/config.json: SDXL takes the second-to-last layer's output, but num_hidden_layers is 1"},
        {"text_encoder_2/config.json", "\"hidden_act\": \"gelu\"", "\"hidden_act\": \"relu\"",
         "text_encoder_2/config.json: hidden_act \"relu\" is not supported"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char path[4200], out[4200], errf[4200], cmd[8192];
        snprintf(path, sizeof path, "%s/%s", folder, cases[c].file);
        char *orig = sd_test_read_text(path);
        CHECK(orig && strstr(orig, cases[c].from), "%s: \"%s\" not found", path, cases[c].from);
        if (!orig) continue;
        char bad[8192];
        replaced(orig, cases[c].from, cases[c].to, bad, sizeof bad);
        sdxf_put(path, bad);
        snprintf(out, sizeof out, "%s/bad.out", tmp);
        snprintf(errf, sizeof errf, "%s/bad.err", tmp);
        snprintf(cmd, sizeof cmd, "'%s' info '%s'", sdgen, folder);
        int rc = run_sh(cmd, out, errf);
        char *msg = sd_test_read_text(errf);
        CHECK(rc == 2 && msg && strstr(msg, cases[c].want) && strchr(msg, '\n') == msg + strlen(msg) - 1,
              "%s with %s: exit %d, message \"%s\", want exit 2 and one line with \"%s\"", cases[c].file, cases[c].to, rc,
              msg ? msg : "", cases[c].want);
        free(msg);
        sdxf_put(path, orig);
        free(orig);
    }
    /* an SDXL U-Net with one text encoder */
    char a[4200], b[4200], cmd[8192], out[4200], errf[4200];
    snprintf(a, sizeof a, "%s/text_encoder_2", folder);
    snprintf(b, sizeof b, "%s/text_encoder_2.off", folder);
    CHECK(rename(a, b) == 0, "cannot rename %s", a);
    snprintf(out, sizeof out, "%s/bad.out", tmp);
    snprintf(errf, sizeof errf, "%s/bad.err", tmp);
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", sdgen, folder);
    int rc = run_sh(cmd, out, errf);
    char *msg = sd_test_read_text(errf);
    CHECK(rc == 2 && msg && strstr(msg, "text_encoder_2/config.json: missing (an SDXL folder"),
          "folder without text_encoder_2: exit %d, message \"%s\"", rc, msg ? msg : "");
    free(msg);
    CHECK(rename(b, a) == 0, "cannot rename %s back", b);
}

int main(void)
{
    sd_test_require_shared();
    const char *sdgen = getenv("SDGEN");
    CHECK(sdgen && *sdgen, "SDGEN (path of the binary) is not set");
    if (!sdgen || !*sdgen) TEST_MAIN_END();
    char root[4096], folder[4200], file[4096], tok[4096], why[1024] = "";
    snprintf(root, sizeof root, "%s/sdxl-folder", sd_test_tmp());
    snprintf(file, sizeof file, "%s", sd_test_path("golden/models/tiny-sdxl.safetensors"));
    snprintf(tok, sizeof tok, "%s", sd_test_path("golden/models/tiny-cfg/tokenizer"));
    mkdir(root, 0777);
    /* named like the file, so that the infotext's "Model" entries agree */
    snprintf(folder, sizeof folder, "%s/tiny-sdxl", root);
    int made = sdxf_make(file, tok, folder, why, sizeof why) == 0;
    CHECK(made, "cannot write the SDXL folder: %s", why);
    if (!made) TEST_MAIN_END();

    /* golden_cli.h writes each run to $SDGEN_TEST_TMP/golden-CASE: here, under root */
    setenv("SDGEN_TEST_TMP", root, 1);
    static const char *const cases[] = {"p8-tiny-sdxl-euler",         "p9-tiny-sdxl-euler-64x96",
                                        "p10-tiny-sdxl-dpmpp-karras", "p11-tiny-sdxl-turbo-euler-a",
                                        "p12-tiny-sdxl-microcond",    "p13-tiny-sdxl-img2img-euler"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char run[4200], keep[4200], cmd[8800];
        snprintf(run, sizeof run, "%s/golden-%s", root, cases[i]);
        snprintf(keep, sizeof keep, "%s/file-%s", root, cases[i]);
        snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", run, keep);
        CHECK(system(cmd) == 0, "%s failed", cmd);
        run_golden_case_in(sdgen, "cases-sdxl", cases[i], NULL);
        CHECK(rename(run, keep) == 0, "cannot rename %s", run);
        run_golden_case_in(sdgen, "cases-sdxl", cases[i], folder);
        compare_runs(cases[i], keep, run);
    }
    test_info(sdgen, file, folder, root);
    test_bad_configs(sdgen, folder, root);
    TEST_MAIN_END();
}
