/* cmd_manifest.c — `sdgen manifest merge FILE...` and `sdgen manifest verify FILE...`: join the manifests of
 * a sharded batch (manifest.h) and check that the batch is complete and its outputs intact
 * (docs/SCALE-OUT.md "Manifests"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "sdgen/manifest.h"

/* Exit codes of both subcommands (README "sdgen manifest", docs/SCALE-OUT.md). */
enum {
    MF_COMPLETE = 0,   /* every item's every image has an ok / skipped-existing latest record (verify: intact) */
    MF_INCOMPLETE = 1, /* an item is missing or failed (verify: or an output is missing, damaged, changed) */
    MF_INPUT = 2,      /* usage, unreadable file, a line that is not a record, records of two batches */
    MF_DUPLICATED = 4  /* complete, but an image was generated more than once (overlapping shards, a task that
                        * ran twice at once): the outputs were written by several processes */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdgen manifest merge FILE...    join shard manifests: the latest record of every image on\n"
            "                                       stdout (sorted by item), missing / failed / duplicated items\n"
            "                                       on stderr\n"
            "       sdgen manifest verify FILE...   check every output the (merged) records name: it exists, is a\n"
            "                                       complete PNG, its SHA-256 and parameters chunk are the record's\n"
            "  -q, --quiet                          only the problems on stderr, no summary\n"
            "\n"
            "Exit codes: 0 the batch is complete (verify: and every output intact), 1 incomplete (an item missing\n"
            "or failed; verify: or an output missing, damaged or changed), 2 usage or a file that is not a\n"
            "manifest, 3 out of memory, 4 complete but some image was generated more than once.\n");
}

typedef struct report_ctx {
    int lines;
} report_ctx;

static void on_report(void *user, const char *line)
{
    report_ctx *r = user;
    r->lines++;
    sd_cli_say("sdgen manifest", "%s", line);
}

static int load(int argc, char **argv, int first, sd_manifest_set *m, int *quiet)
{
    sd_manifest_set_init(m);
    int n_files = 0;
    for (int i = first; i < argc; i++) {
        if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) {
            *quiet = 1;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            sd_cli_say("sdgen manifest", "unknown option \"%s\" (see sdgen manifest --help)", argv[i]);
            return MF_INPUT;
        }
        sd_err err = {0};
        if (sd_manifest_add_file(m, argv[i], &err)) {
            sd_cli_say("sdgen manifest", "%s", err.msg);
            return sd_cli_exit_code(err.code);
        }
        n_files++;
    }
    if (!n_files) {
        usage(stderr);
        return MF_INPUT;
    }
    if (m->n_torn)
        sd_cli_say("sdgen manifest", "%d torn record%s skipped (a task killed while writing; first at %s)", m->n_torn,
                   m->n_torn > 1 ? "s" : "", m->torn_first);
    return 0;
}

static int verdict(const sd_manifest_summary *s, int bad_outputs)
{
    if (s->failed || s->missing || bad_outputs || !s->items) return MF_INCOMPLETE;
    return s->duplicated ? MF_DUPLICATED : MF_COMPLETE;
}

/* The named manifests loaded, their latest records sorted by (item, image) and summarized (missing,
 * failed and duplicated items reported on stderr). Returns -1 to go on, else the exit code (everything
 * freed then). */
static int load_latest(int argc, char **argv, sd_manifest_set *m, int *quiet, const sd_manifest_entry ***v,
                       size_t *n, sd_manifest_summary *s)
{
    int rc = load(argc, argv, 2, m, quiet);
    if (rc) {
        sd_manifest_set_free(m);
        return rc;
    }
    sd_err err = {0};
    report_ctx rep = {0};
    if (sd_manifest_sorted(m, v, n, &err) || sd_manifest_summarize(m, s, on_report, &rep, &err)) {
        sd_cli_say("sdgen manifest", "%s", err.msg);
        free(*v);
        *v = NULL;
        sd_manifest_set_free(m);
        return sd_cli_exit_code(err.code);
    }
    return -1;
}

static int merge(int argc, char **argv)
{
    sd_manifest_set m;
    int quiet = 0;
    const sd_manifest_entry **v = NULL;
    size_t n = 0;
    sd_manifest_summary s;
    int rc = load_latest(argc, argv, &m, &quiet, &v, &n, &s);
    if (rc >= 0) return rc;
    int write_failed = 0;
    for (size_t i = 0; i < n && !write_failed; i++)
        if (printf("%s\n", v[i]->raw) < 0) write_failed = 1;
    if (fflush(stdout) != 0 || ferror(stdout)) write_failed = 1;
    if (write_failed) {
        sd_cli_say("sdgen manifest", "cannot write the merged manifest to stdout");
        free(v);
        sd_manifest_set_free(&m);
        return MF_INPUT;
    }
    if (!quiet)
        sd_cli_say("sdgen manifest", "%d records from %d files: %d items, %d complete, %d failed, %d missing; %d "
                                     "images, %d generated more than once",
                   m.n_records, m.n_files, s.items, s.complete, s.failed, s.missing, s.images, s.duplicated);
    free(v);
    sd_manifest_set_free(&m);
    return verdict(&s, 0);
}

static int cmp_output(const void *a, const void *b)
{
    const sd_manifest_entry *x = *(const sd_manifest_entry *const *)a, *y = *(const sd_manifest_entry *const *)b;
    return strcmp(x->rec.output, y->rec.output);
}

static int verify(int argc, char **argv)
{
    sd_manifest_set m;
    int quiet = 0;
    const sd_manifest_entry **v = NULL;
    size_t n = 0;
    sd_manifest_summary s;
    int rc = load_latest(argc, argv, &m, &quiet, &v, &n, &s);
    if (rc >= 0) return rc;
    int checked = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        const sd_manifest_rec *r = &v[i]->rec;
        if (r->status == SD_MREC_FAILED) continue;
        sd_err e = {0};
        checked++;
        if (sd_manifest_verify_output(r, &e)) {
            if (e.code == SD_ERR_NOMEM) {
                sd_cli_say("sdgen manifest", "%s", e.msg);
                free(v);
                sd_manifest_set_free(&m);
                return SD_EXIT_OOM;
            }
            bad++;
            sd_cli_say("sdgen manifest", "bad output: item %d (line %d) image %d: %s", r->item, r->line, r->image,
                       e.msg);
        }
    }
    /* One file claimed by two images: at most one of them can be in it. Sorted by path, neighbours compare. */
    const sd_manifest_entry **byp = malloc((n ? n : 1) * sizeof *byp);
    size_t np = 0;
    if (!byp) {
        sd_cli_say("sdgen manifest", "out of memory");
        free(v);
        sd_manifest_set_free(&m);
        return SD_EXIT_OOM;
    }
    for (size_t i = 0; i < n; i++)
        if (v[i]->rec.status != SD_MREC_FAILED) byp[np++] = v[i];
    qsort(byp, np, sizeof *byp, cmp_output);
    for (size_t i = 1; i < np; i++) {
        if (strcmp(byp[i - 1]->rec.output, byp[i]->rec.output)) continue;
        bad++;
        sd_cli_say("sdgen manifest", "bad output: %s is the output of item %d image %d and of item %d image %d",
                   byp[i]->rec.output, byp[i - 1]->rec.item, byp[i - 1]->rec.image, byp[i]->rec.item,
                   byp[i]->rec.image);
    }
    free(byp);
    if (!quiet)
        sd_cli_say("sdgen manifest", "%d outputs checked, %d bad; %d items, %d complete, %d failed, %d missing; %d "
                                     "generated more than once",
                   checked, bad, s.items, s.complete, s.failed, s.missing, s.duplicated);
    free(v);
    sd_manifest_set_free(&m);
    return verdict(&s, bad);
}

int sd_cmd_manifest(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MF_INPUT : 0;
    }
    if (!strcmp(argv[1], "merge")) return merge(argc, argv);
    if (!strcmp(argv[1], "verify")) return verify(argc, argv);
    sd_cli_say("sdgen manifest", "unknown subcommand \"%s\" (merge, verify)", argv[1]);
    return MF_INPUT;
}
