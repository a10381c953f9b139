/* txt2img.c — draw one picture with libsdgen, using only the public header.
 *
 *     txt2img                      the installed demo model, a built-in prompt -> txt2img.png
 *     txt2img "PROMPT" [OUT.png]   another prompt / output file
 *
 * Build against an installed sdgen:
 *     cc -o txt2img txt2img.c $(pkg-config --cflags --static --libs sdgen)
 *
 * The environment variable SDGEN_MODEL names another checkpoint (the library reads it when no model
 * path is given).
 */
#include <sdgen.h>

#include <stdio.h>

static void show_progress(int step, int total, void *user)
{
    (void)user;
    fprintf(stderr, "\rstep %d/%d", step, total);
    if (step == total) fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    const char *prompt = argc > 1 ? argv[1] : "a large red circle on the left, blue background";
    const char *output = argc > 2 ? argv[2] : "txt2img.png";

    sdgen_ctx *ctx;
    int rc = sdgen_open(NULL, NULL, &ctx); /* NULL: the demo model installed with the library */
    if (rc != SDGEN_OK) {
        fprintf(stderr, "txt2img: %s\n", sdgen_errmsg(ctx));
        sdgen_close(ctx);
        return 1;
    }

    sdgen_params p = sdgen_params_default(); /* the model's size, 20 steps, euler_a, CFG 7.5 */
    p.prompt = prompt;
    p.seed = 42;
    p.progress = show_progress;

    rc = sdgen_generate_png(ctx, &p, output);
    if (rc != SDGEN_OK) {
        fprintf(stderr, "txt2img: %s: %s\n", sdgen_status_string(rc), sdgen_errmsg(ctx));
        sdgen_close(ctx);
        return 1;
    }
    printf("wrote %s with %s\n", output, sdgen_model_path(ctx));
    sdgen_close(ctx);
    return 0;
}
