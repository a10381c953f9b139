/* fuzz_batch.c — libFuzzer target: the --prompts batch file parser (sd_batch_parse_mem: JSON
 * Lines or plain prompts) and the output-path template with the parsed items.
 *
 * Checks (include/sdgen/batch.h): every failed item's error reads "FILE:LINE: ..." with its own
 * line; n_errors counts them; a good item has a prompt; the sanitised {prompt} part of a file
 * name never holds a path separator, a control character, or a leading dot (no way out of the
 * output folder), and stays within SD_PROMPT_PART_MAX bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdgen/batch.h"

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_batch: %s: %s\n", what, detail ? detail : "");
    abort();
}

static void check_sanitized(const char *prompt)
{
    char out[SD_PROMPT_PART_MAX + 1];
    sd_sanitize_prompt(prompt, out, sizeof out);
    size_t n = strlen(out);
    if (n == 0 || n > SD_PROMPT_PART_MAX) fail("sanitised prompt length", out);
    if (out[0] == '.' || out[0] == '-') fail("sanitised prompt starts with . or -", out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c == '/' || c == '\\' || c < 0x20 || c == 0x7f) fail("sanitised prompt holds a separator/control", out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sd_batch b;
    memset(&b, 0, sizeof b);
    sd_err err = {0};
    if (sd_batch_parse_mem((const char *)data, size, "fuzz.txt", &b, &err) != 0) {
        if (!err.msg[0]) fail("parse failed without a message", NULL);
        return 0;
    }
    int errors = 0;
    for (int i = 0; i < b.n; i++) {
        const sd_batch_item *it = &b.items[i];
        if (it->error) {
            errors++;
            char want[64];
            snprintf(want, sizeof want, "fuzz.txt:%d: ", it->line);
            if (strncmp(it->error, want, strlen(want))) fail("error does not start with FILE:LINE", it->error);
            continue;
        }
        if (!it->prompt) fail("good item without a prompt", NULL);
        check_sanitized(it->prompt);
        char path[4096];
        sd_err e2 = {0};
        const char *tmpl = it->output ? it->output : "out/{index}-{seed}-{prompt}.png";
        if (sd_output_path(tmpl, i + 1, it->has_seed ? it->seed : 0, it->prompt, path, sizeof path, &e2) != 0 &&
            !e2.msg[0])
            fail("sd_output_path failed without a message", NULL);
        (void)sd_output_template_varies(tmpl);
    }
    if (errors != b.n_errors) fail("n_errors does not count the failed items", NULL);
    sd_batch_free(&b);
    return 0;
}
