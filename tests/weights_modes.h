/* weights_modes.h — run one generation through the sdgen binary with the default weights mode
 * (F16/BF16 tensors converted per use into the arena scopes) and with --weights f32 (converted
 * once and kept), dumping every stage, and compare the two runs stage by stage. The conversion is
 * exact, so the two runs must agree; a converted weight reused while still in use (the defect
 * this guards against) shows up as a difference at the first stage that read it. */
#ifndef SDGEN_WEIGHTS_MODES_H
#define SDGEN_WEIGHTS_MODES_H

#include "golden_cli.h"

/* Runs MODEL twice with extra options argv_extra (NULL-terminated) into TMP/<tag>-{f16,f32}/ and
 * compares the dumped stages within rel × max|f32 value|, then the PNG bytes. */
static inline void compare_weight_modes(const char *sdgen, const char *model, const char *tag, const char *const *extra,
                                        double rel)
{
    char dir[2][4096], png[2][4200];
    const char *mode[2] = {"f16", "f32"};
    for (int k = 0; k < 2; k++) {
        snprintf(dir[k], sizeof dir[k], "%s/%s-%s", sd_test_tmp(), tag, mode[k]);
        snprintf(png[k], sizeof png[k], "%s/image.png", dir[k]);
        char rm[4200];
        snprintf(rm, sizeof rm, "rm -rf '%s'", dir[k]);
        if (system(rm) != 0) fprintf(stderr, "cannot clear %s\n", dir[k]);
        mkdir(dir[k], 0777);
        char *argv[64];
        int n = 0;
        char vocab[4096];
        snprintf(vocab, sizeof vocab, "%s", sd_test_path("clip"));
        argv[n++] = (char *)sdgen;
        argv[n++] = "-q";
        argv[n++] = "--model";
        argv[n++] = (char *)model;
        argv[n++] = "--vocab";
        argv[n++] = vocab;
        argv[n++] = "--dump-dir";
        argv[n++] = dir[k];
        argv[n++] = "--output";
        argv[n++] = png[k];
        argv[n++] = "--weights";
        argv[n++] = (char *)mode[k];
        for (int i = 0; extra[i] && n < 62; i++) argv[n++] = (char *)extra[i];
        argv[n] = NULL;
        int rc = run_argv(argv);
        CHECK(rc == 0, "%s: sdgen --weights %s exited with %d", tag, mode[k], rc);
        if (rc) return;
    }
    static const char *const stages[] = {"text_emb_cond", "text_emb_uncond", "unet0_out", "latents_final",
                                         "image_float"};
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) compare_npy_rel(dir[0], dir[1], stages[i], rel);
    char *a = sd_test_read_text(png[0]), *b = sd_test_read_text(png[1]);
    struct stat sa, sb;
    int same = a && b && stat(png[0], &sa) == 0 && stat(png[1], &sb) == 0 && sa.st_size == sb.st_size &&
               memcmp(a, b, (size_t)sa.st_size) == 0;
    CHECK(same, "%s: the PNGs of --weights f16 and f32 differ", tag);
    free(a);
    free(b);
}

#endif
