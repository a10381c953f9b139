/* fuzz_manifest.c — libFuzzer target: the manifest reader and merge (include/sdgen/manifest.h), and through
 * it the flat JSON reader of batch.c (sd_json_flat_parse).
 *
 * The input is one or two manifest files, cut at FUZZ_SEP; they are read into one set as `sdgen manifest
 * merge` does. Checks: a refused file has a message naming it; the summary adds up (complete + failed +
 * missing = items, one winner per image); the winners come sorted by (item, image) without repeats; every
 * winner's record, formatted again (sd_manifest_format), is one line that parses back to the same record.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sdgen/manifest.h"

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_manifest: %s: %s\n", what, detail ? detail : "");
    abort();
}

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static void round_trip(const sd_manifest_rec *r)
{
    char *line = NULL;
    size_t n = 0;
    sd_err e = {0};
    if (sd_manifest_format(r, &line, &n, &e)) {
        if (e.code != SD_ERR_NOMEM) fail("format failed", e.msg);
        return;
    }
    if (n == 0 || line[n - 1] != '\n' || memchr(line, '\n', n - 1) || strlen(line) != n) fail("not one line", line);
    sd_manifest_rec b;
    char msg[512];
    if (sd_manifest_parse_line(line, n - 1, &b, msg, sizeof msg)) fail("formatted record does not parse", msg);
    int same = b.item == r->item && b.image == r->image && b.images == r->images && b.items == r->items &&
               b.index == r->index && b.line == r->line && b.status == r->status && b.has_seed == r->has_seed &&
               b.seed == r->seed && b.steps == r->steps && b.width == r->width && b.height == r->height &&
               b.has_cfg == r->has_cfg && same_str(b.prompt, r->prompt) && same_str(b.message, r->message) &&
               same_str(b.output, r->output) && same_str(b.sha256, r->sha256) &&
               same_str(b.parameters, r->parameters) && same_str(b.batch_sha256, r->batch_sha256) &&
               same_str(b.negative_prompt, r->negative_prompt) && same_str(b.shard, r->shard);
    if (!same) fail("record changed in a round trip", line);
    sd_manifest_rec_free(&b);
    free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_part parts[FUZZ_MAX_PARTS];
    int np = fuzz_split(data, size, parts);
    if (np > 2) np = 2; /* two files are enough to merge across files */
    sd_manifest_set m;
    sd_manifest_set_init(&m);
    sd_err e = {0};
    int rc = 0;
    for (int i = 0; i < np && !rc; i++)
        rc = sd_manifest_add_mem(&m, (const char *)parts[i].p, parts[i].n, i ? "b.jsonl" : "a.jsonl", &e);
    if (rc) {
        if (strncmp(e.msg, "a.jsonl", 7) && strncmp(e.msg, "b.jsonl", 7)) fail("message does not name the file", e.msg);
        if (fuzz_one_line_check() && strchr(e.msg, '\n')) fail("message is not one line", e.msg);
        sd_manifest_set_free(&m);
        return 0;
    }
    sd_manifest_summary sum;
    const sd_manifest_entry **v = NULL;
    size_t nv = 0;
    if (sd_manifest_summarize(&m, &sum, NULL, NULL, &e) || sd_manifest_sorted(&m, &v, &nv, &e)) {
        if (e.code != SD_ERR_NOMEM) fail("summarize/sort failed", e.msg);
        free(v);
        sd_manifest_set_free(&m);
        return 0;
    }
    if (m.items >= 0 && sum.complete + sum.failed + sum.missing != sum.items) fail("summary does not add up", NULL);
    if ((size_t)sum.images != nv || nv != m.n) fail("one winner per image", NULL);
    for (size_t i = 0; i < nv; i++) {
        const sd_manifest_rec *r = &v[i]->rec;
        if (r->item >= m.items) fail("item not below items", NULL);
        if (i && ((uint64_t)v[i - 1]->rec.item << 20 | (uint64_t)v[i - 1]->rec.image) >=
                     ((uint64_t)r->item << 20 | (uint64_t)r->image))
            fail("winners not sorted or repeated", NULL);
        round_trip(r);
    }
    free(v);
    sd_manifest_set_free(&m);
    return 0;
}
