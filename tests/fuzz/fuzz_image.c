/* fuzz_image.c — libFuzzer target: init-image loading (sd_image_load_mem: PNG/JPEG through
 * stb_image with sdgen's size caps), the size rounding + PIL-Lanczos resize + float conversion
 * that follow it in img2img, and the PNG text-chunk reader (sd_png_read_text_mem).
 *
 * Checks: a decoded image is within the caps of include/sdgen/image.h with pixels allocated;
 * failures carry a message naming the input; the text reader returns 0 / -1 only.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdgen/image.h"

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_image: %s: %s\n", what, detail ? detail : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sd_image im = {0};
    sd_err err = {0};
    if (sd_image_load_mem(&im, data, size, "fuzz.img", &err) == 0) {
        if (im.w <= 0 || im.h <= 0 || im.w > SD_IMAGE_MAX_SIDE || im.h > SD_IMAGE_MAX_SIDE ||
            (long long)im.w * im.h > SD_IMAGE_MAX_PIXELS || !im.rgb)
            fail("decoded image outside the caps", NULL);
        int w8, h8;
        sd_err e2 = {0};
        /* resizing is O(pixels): keep it to small images so the fuzzer stays fast */
        if ((long long)im.w * im.h <= 256 * 256 && sd_image_init_size(im.w, im.h, &w8, &h8, &e2) == 0) {
            sd_image r = {0};
            if (sd_image_resize_lanczos(&im, w8, h8, &r, &e2) == 0) {
                float *f = malloc((size_t)w8 * h8 * 3 * sizeof(float));
                if (!f) abort();
                sd_image_to_float(&r, f);
                free(f);
                sd_image_free(&r);
            } else if (!e2.msg[0]) {
                fail("resize failed without a message", NULL);
            }
        }
        sd_image_free(&im);
    } else if (!err.msg[0] || !strstr(err.msg, "fuzz.img")) {
        fail("load error does not name the input", err.msg);
    }

    char *text = NULL;
    int itxt = 0;
    sd_err e3 = {0};
    int rc = sd_png_read_text_mem(data, size, "fuzz.img", "parameters", &text, &itxt, &e3);
    if (rc != 0 && rc != -1) fail("read_text returned neither 0 nor -1", NULL);
    if (rc == -1 && !e3.msg[0]) fail("read_text failed without a message", NULL);
    free(text);
    return 0;
}
