/* fuzz_serve.c — libFuzzer target: the request bodies of `sdgen serve` (src/serve_request.c): A1111
 * txt2img / img2img and OpenAI image requests (sv_parse_request), png-info (sv_png_info), POST options
 * (sv_parse_options), the JSON pre-check and base64.
 *
 * The first byte picks what the rest is: 0 txt2img, 1 img2img, 2 OpenAI, 3 png-info, 4 options, 5 base64.
 * Checks: a refused body has status 400 or 422 (503 only when out of memory) and a one-line message; an
 * accepted one is within the limits the worker relies on (steps 1..1000, sizes multiples of 8 up to 8192 or
 * 0 for img2img, batch_size x n_iter within max_images, prompts valid UTF-8 of at most 64 KiB, a known
 * sampler, an init image for img2img) and its "parameters" echo is valid JSON; png-info answers valid JSON;
 * base64 that decodes encodes back to text that decodes to the same bytes.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdgen/sched.h"
#include "serve.h"

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_serve: %s: %s\n", what, detail ? detail : "");
    abort();
}

static void check_refusal(int status, const sd_err *err)
{
    if (status != 400 && status != 422 && status != 503) fail("refused with an unexpected status", err->msg);
    if (!err->msg[0]) fail("refused without a message", NULL);
    if (strchr(err->msg, '\n')) fail("message of more than one line", err->msg);
}

static void check_json(const char *text, const char *what)
{
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    if (!o) fail(what, text);
    cJSON_Delete(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const int mode = data[0] % 6;
    const char *body = (const char *)data + 1;
    const size_t n = size - 1;
    sv_parse_ctx c;
    memset(&c, 0, sizeof c);
    c.def_width = c.def_height = 64;
    c.max_clip_skip = 2;
    c.can_img2img = 1;
    c.max_images = 16;
    c.def_clip_skip = 1;
    c.model_names[0] = "demo.safetensors [8c42de4eff]";
    c.model_names[1] = "demo";
    c.model_names[2] = "demo.safetensors";
    int status = 0;
    sd_err err = {0};

    if (mode <= 2) {
        sv_spec s;
        sv_kind kind = mode == 0 ? SV_TXT2IMG : mode == 1 ? SV_IMG2IMG : SV_OPENAI;
        if (sv_parse_request(body, n, kind, &c, &s, &status, &err)) {
            check_refusal(status, &err);
            return 0;
        }
        if (s.steps < 1 || s.steps > 1000) fail("steps out of range", NULL);
        if (s.width % 8 || s.height % 8 || s.width < 0 || s.height < 0 || s.width > 8192 || s.height > 8192)
            fail("size not a multiple of 8 within 8192", NULL);
        if (kind != SV_IMG2IMG && (s.width < 8 || s.height < 8)) fail("txt2img without a size", NULL);
        if (s.batch_size < 1 || s.n_iter < 1 || (long long)s.batch_size * s.n_iter > c.max_images)
            fail("image count out of range", NULL);
        if (!s.prompt || !s.negative_prompt || sv_utf8_bad(s.prompt) || sv_utf8_bad(s.negative_prompt) ||
            strlen(s.prompt) > SV_MAX_PROMPT || strlen(s.negative_prompt) > SV_MAX_PROMPT)
            fail("prompt not valid UTF-8 within the limit", NULL);
        if (s.sampler < 0 || s.sampler >= SD_SAMPLER_COUNT) fail("unknown sampler accepted", NULL);
        if (!(s.cfg_scale >= 0 && s.cfg_scale <= 100)) fail("cfg_scale out of range", NULL);
        if (s.clip_skip < 1 || s.clip_skip > c.max_clip_skip) fail("clip skip out of range", NULL);
        if (kind == SV_IMG2IMG && (!s.init_data || !s.init_len || !(s.strength > 0 && s.strength <= 1)))
            fail("img2img without an init image or strength", NULL);
        char *echo = sv_spec_echo_json(&s);
        check_json(echo, "parameters echo is not JSON");
        free(echo);
        sv_spec_free(&s);
    } else if (mode == 3) {
        char *out = sv_png_info(body, n, &status, &err);
        if (out) check_json(out, "png-info answer is not JSON");
        else check_refusal(status, &err);
        free(out);
    } else if (mode == 4) {
        int cs = 1, rng = 0;
        if (sv_parse_options(body, n, &c, &cs, &rng, &status, &err)) check_refusal(status, &err);
        else if (cs < 1 || cs > c.max_clip_skip || (rng != 0 && rng != 1)) fail("options out of range", NULL);
    } else {
        unsigned char *bytes = NULL, *again = NULL;
        size_t len = 0, len2 = 0, tl = 0;
        if (sv_base64_decode(body, n, "fuzz", &bytes, &len, &err) == 0) {
            char *text = sv_base64_encode(bytes, len, &tl);
            if (!text) fail("encode failed", NULL);
            if (tl % 4 || sv_base64_decode(text, tl, "fuzz", &again, &len2, &err) || len2 != len ||
                (len && memcmp(bytes, again, len)))
                fail("base64 round trip differs", NULL);
            free(text);
        } else if (!err.msg[0] || strchr(err.msg, '\n')) {
            fail("base64 refusal without a one-line message", err.msg);
        }
        free(bytes);
        free(again);
        err = (sd_err){0};
        if (sv_json_precheck(body, n, SV_MAX_JSON_DEPTH, &err) && !err.msg[0]) fail("precheck without message", NULL);
    }
    return 0;
}
