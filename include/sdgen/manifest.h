/* sdgen/manifest.h — the record of a batch run, one JSON object a line (JSON Lines), and what merges and
 * checks it (docs/SCALE-OUT.md "Manifests").
 *
 * `sdgen --prompts FILE --manifest PATH` appends one record per image (and one per item that failed before
 * it could make any), each written with a single write() and fsync'ed, so that a task killed at any moment
 * leaves every finished record readable; a re-run appends to the same file. A record:
 *
 *   item, image      the item's 0-based position among the batch file's items (malformed ones included)
 *                    and the image's 0-based position within the item (--batch-count / "batch_count")
 *   images, items    how many images the item makes, how many items the batch has
 *   index, line      the {index} of the image (0: none), the item's line in the batch file
 *   shard            "I/N" of the task that wrote it
 *   status           "ok" (generated), "skipped-existing" (--skip-existing found a complete PNG), "failed"
 *   message          the failure (failed only)
 *   prompt ... model the image's settings: prompt, negative_prompt, seed, steps, cfg_scale, sampler,
 *                    schedule, timestep_spacing, prediction, rng, width, height, clip_skip, strength,
 *                    init_image, model
 *   output, sha256   the PNG's path as written and the SHA-256 of its bytes
 *   parameters       the text of its `parameters` chunk (the A1111 infotext, params.h)
 *   seconds          time spent on the image; time: Unix time the record was written
 *   batch, batch_sha256  the batch file as named and the SHA-256 of its bytes
 *
 * Merging: for every (item, image) the latest record wins: the later line within one file, else the later
 * "time", else the file given later. An image is complete when its latest record is ok or skipped-existing.
 */
#ifndef SDGEN_MANIFEST_H
#define SDGEN_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "sdgen/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_MANIFEST_MAX_LINE (4 << 20)      /* one record: two prompts of a 64 KiB batch line, the infotext */
#define SD_MANIFEST_MAX_FILE (1LL << 30)
#define SD_MANIFEST_MAX_IMAGES 1000000      /* images of one batch (as one run may make) */
#define SD_MANIFEST_MAX_KEYS 48

enum { SD_MREC_OK = 0, SD_MREC_SKIPPED = 1, SD_MREC_FAILED = 2 };

typedef struct sd_manifest_rec {
    int item, image, images, items, index, line;
    int status;                   /* SD_MREC_* */
    char *message;                /* failed: what went wrong */
    char *shard, *batch, *batch_sha256;
    char *prompt, *negative_prompt, *sampler, *schedule, *timestep_spacing, *prediction, *rng;
    char *init_image, *model;
    int has_seed;     uint64_t seed;
    int steps, width, height, clip_skip; /* 0: not recorded */
    int has_cfg;      double cfg_scale;
    int has_strength; double strength;
    char *output, *sha256, *parameters;
    double seconds, time;
} sd_manifest_rec;

/* The record as one JSON line with its '\n' (*out malloc'ed). Strings that are not UTF-8 get their bad
 * bytes written as \u00XX escapes. */
int sd_manifest_format(const sd_manifest_rec *r, char **out, size_t *len, sd_err *err);
/* Parse one line (without its '\n') into r (strings malloc'ed; sd_manifest_rec_free). Checks every field's
 * type and range and what the status requires (ok / skipped-existing: output, a 64-digit sha256,
 * parameters, prompt, seed; failed: message). On failure msg says why (one line). */
int sd_manifest_parse_line(const char *s, size_t n, sd_manifest_rec *r, char *msg, size_t msg_n);
void sd_manifest_rec_free(sd_manifest_rec *r);
const char *sd_manifest_status_name(int status);

/* Appending records: opened (created 0666 & ~umask) for O_APPEND; when the file does not end with '\n' (a
 * writer was killed inside a record) a '\n' is written first, so the torn record stays a line of its own
 * that the reader skips instead of spoiling the next one. Every append is one write() + fsync(). */
typedef struct sd_manifest_writer {
    int fd;
    char path[4096];
} sd_manifest_writer;
int sd_manifest_open(sd_manifest_writer *w, const char *path, sd_err *err);
int sd_manifest_append(sd_manifest_writer *w, const sd_manifest_rec *r, sd_err *err);
void sd_manifest_close(sd_manifest_writer *w);

/* ---- reading and merging ---- */

typedef struct sd_manifest_entry {
    sd_manifest_rec rec;
    char *raw;                    /* the record's line as read, without '\n' */
    int file, line;               /* which input (0-based) and its 1-based line */
    int n_ok;                     /* ok records seen for this image (more than 1: generated twice) */
    int ok_file[2], ok_line[2];   /* where the first two were */
} sd_manifest_entry;

typedef struct sd_manifest_set {
    int n_files;
    char **names;                 /* the inputs, for messages */
    int items;                    /* the batch's item count (-1: no record yet) */
    char batch_sha256[65];
    int n_records, n_torn;        /* records read; lines skipped as torn (not JSON: a killed writer) */
    char torn_first[512];         /* "FILE:LINE" of the first torn line */
    /* the winning record of every (item, image) seen, in a hash table keyed by item * 2^20 + image */
    sd_manifest_entry *slot;
    size_t cap, n;
} sd_manifest_set;

void sd_manifest_set_init(sd_manifest_set *m);
void sd_manifest_set_free(sd_manifest_set *m);
/* Add one file's records (its bytes in memory; `name` in messages). A line that is not JSON is counted as
 * torn and skipped; a JSON line that is not a valid record, or a record of another batch (items or
 * batch_sha256 differ from what came before), fails with "NAME:LINE: problem". Bounded by
 * SD_MANIFEST_MAX_FILE, SD_MANIFEST_MAX_LINE and SD_MANIFEST_MAX_IMAGES. */
int sd_manifest_add_mem(sd_manifest_set *m, const char *data, size_t n, const char *name, sd_err *err);
int sd_manifest_add_file(sd_manifest_set *m, const char *path, sd_err *err);

/* The state of the batch after merging. */
typedef struct sd_manifest_summary {
    int items;                    /* in the batch */
    int complete;                 /* items whose every image's latest record is ok / skipped-existing */
    int failed;                   /* items with an image whose latest record is failed */
    int missing;                  /* items with an image that has no record (none at all, or fewer than "images") */
    int duplicated;               /* images with more than one ok record */
    int images;                   /* winning records */
} sd_manifest_summary;

/* The winners sorted by (item, image): *out gets a malloc'ed array of pointers into m (n of them). */
int sd_manifest_sorted(const sd_manifest_set *m, const sd_manifest_entry ***out, size_t *n, sd_err *err);
/* Count complete / failed / missing items and duplicated images. `report` (may be NULL) is called once per
 * problem with a one-line message (user text in it unescaped: print it through sd_escape_text). */
typedef void (*sd_manifest_report_fn)(void *user, const char *line);
int sd_manifest_summarize(const sd_manifest_set *m, sd_manifest_summary *s, sd_manifest_report_fn report,
                          void *user, sd_err *err);

/* Check one ok / skipped-existing record's output: the file exists and is a regular file, a complete PNG
 * (sd_png_verify), its SHA-256 is the record's, its `parameters` chunk is the record's text and parses
 * (sd_params_parse) to the record's prompt, negative prompt, seed, steps, CFG scale, sampler and size.
 * 0 ok, -1 with the first difference in err (SD_EXIT_OOM when memory ran out). */
int sd_manifest_verify_output(const sd_manifest_rec *r, sd_err *err);

#ifdef __cplusplus
}
#endif
#endif
