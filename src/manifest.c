/* manifest.c — batch-run manifests (manifest.h): one JSON record a line, appended and fsync'ed per image;
 * merging the records of many shards and checking the outputs they name. */
#include "sdgen/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdgen/batch.h"
#include "sdgen/hash.h"
#include "sdgen/image.h"
#include "sdgen/options.h"
#include "sdgen/params.h"

/* ---- writing ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 1024;
        while (nc < b->n + n + 1) nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* Length of a valid UTF-8 sequence at s (n bytes left), 0 if invalid (RFC 3629). */
static int utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len;
    unsigned v, min;
    if ((c & 0xE0) == 0xC0) { len = 2; v = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; v = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    return len;
}

/* A JSON string (RFC 8259 §7): '"' and '\\' escaped, control characters as \n \t \r or \u00XX; a byte that is
 * not UTF-8 as \u00XX, its Latin-1 reading (the file stays UTF-8; such text does not round-trip). */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        int l = utf8_len(p + i, n - i);
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c == '\n') {
            sb_put(b, "\\n", 2);
        } else if (c == '\t') {
            sb_put(b, "\\t", 2);
        } else if (c == '\r') {
            sb_put(b, "\\r", 2);
        } else if (c < 0x20 || c == 0x7F || !l) {
            sb_printf(b, "\\u%04x", c);
            i++;
            continue;
        } else {
            sb_put(b, (const char *)p + i, (size_t)l);
            i += (size_t)l;
            continue;
        }
        i++;
    }
    sb_put(b, "\"", 1);
}

static void kv_str(sbuf *b, const char *key, const char *v)
{
    if (!v) return;
    sb_printf(b, ",\"%s\":", key);
    sb_json_str(b, v);
}

static void kv_int(sbuf *b, const char *key, int v) { sb_printf(b, ",\"%s\":%d", key, v); }

static void kv_num(sbuf *b, const char *key, double v)
{
    char num[40];
    sd_params_fmt_number(v, num, sizeof num); /* shortest round trip: a valid JSON number */
    sb_printf(b, ",\"%s\":%s", key, num);
}

const char *sd_manifest_status_name(int status)
{
    return status == SD_MREC_OK ? "ok" : status == SD_MREC_SKIPPED ? "skipped-existing" : "failed";
}

int sd_manifest_format(const sd_manifest_rec *r, char **out, size_t *len, sd_err *err)
{
    sbuf b = {0};
    sb_printf(&b, "{\"item\":%d,\"image\":%d", r->item, r->image);
    kv_int(&b, "images", r->images);
    kv_int(&b, "items", r->items);
    kv_int(&b, "index", r->index);
    kv_int(&b, "line", r->line);
    kv_str(&b, "shard", r->shard);
    kv_str(&b, "status", sd_manifest_status_name(r->status));
    kv_str(&b, "message", r->message);
    kv_str(&b, "prompt", r->prompt);
    kv_str(&b, "negative_prompt", r->negative_prompt);
    if (r->has_seed) sb_printf(&b, ",\"seed\":%llu", (unsigned long long)r->seed);
    if (r->steps) kv_int(&b, "steps", r->steps);
    if (r->has_cfg) kv_num(&b, "cfg_scale", r->cfg_scale);
    kv_str(&b, "sampler", r->sampler);
    kv_str(&b, "schedule", r->schedule);
    kv_str(&b, "timestep_spacing", r->timestep_spacing);
    kv_str(&b, "prediction", r->prediction);
    kv_str(&b, "rng", r->rng);
    if (r->width) kv_int(&b, "width", r->width);
    if (r->height) kv_int(&b, "height", r->height);
    if (r->clip_skip) kv_int(&b, "clip_skip", r->clip_skip);
    if (r->has_strength) kv_num(&b, "strength", r->strength);
    kv_str(&b, "init_image", r->init_image);
    kv_str(&b, "model", r->model);
    kv_str(&b, "output", r->output);
    kv_str(&b, "sha256", r->sha256);
    sb_printf(&b, ",\"seconds\":%.3f", r->seconds >= 0 && r->seconds < 1e12 ? r->seconds : 0.0);
    kv_str(&b, "parameters", r->parameters);
    kv_str(&b, "batch", r->batch);
    kv_str(&b, "batch_sha256", r->batch_sha256);
    sb_printf(&b, ",\"time\":%.3f}\n", r->time >= 0 && r->time < 1e12 ? r->time : 0.0);
    if (b.oom) {
        free(b.p);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory writing a manifest record");
    }
    *out = b.p;
    *len = b.n;
    return 0;
}

int sd_manifest_open(sd_manifest_writer *w, const char *path, sd_err *err)
{
    w->fd = -1;
    snprintf(w->path, sizeof w->path, "%s", path);
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0) return sd_errf(err, "%s: cannot open the manifest: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sd_errf(err, "%s: the manifest must be a regular file", path);
    }
    char last = '\n';
    if (st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1) {
        int e = errno;
        close(fd);
        return sd_errf(err, "%s: cannot read the manifest: %s", path, strerror(e));
    }
    if (last != '\n' && (write(fd, "\n", 1) != 1 || fsync(fd) != 0)) {
        int e = errno;
        close(fd);
        return sd_errf(err, "%s: cannot write the manifest: %s", path, strerror(e));
    }
    w->fd = fd;
    return 0;
}

int sd_manifest_append(sd_manifest_writer *w, const sd_manifest_rec *r, sd_err *err)
{
    if (w->fd < 0) return sd_errf(err, "%s: the manifest is not open", w->path);
    char *line;
    size_t n;
    if (sd_manifest_format(r, &line, &n, err)) return -1;
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(w->fd, line + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int e = k < 0 ? errno : EIO;
            free(line);
            return sd_errf(err, "%s: cannot write the manifest: %s", w->path, strerror(e));
        }
        done += (size_t)k;
    }
    free(line);
    if (fsync(w->fd) != 0) return sd_errf(err, "%s: cannot sync the manifest: %s", w->path, strerror(errno));
    return 0;
}

void sd_manifest_close(sd_manifest_writer *w)
{
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
}

/* ---- parsing one record ---- */

void sd_manifest_rec_free(sd_manifest_rec *r)
{
    char **s[] = {&r->message, &r->shard, &r->batch, &r->batch_sha256, &r->prompt, &r->negative_prompt,
                  &r->sampler, &r->schedule, &r->timestep_spacing, &r->prediction, &r->rng, &r->init_image,
                  &r->model, &r->output, &r->sha256, &r->parameters};
    for (size_t i = 0; i < sizeof s / sizeof *s; i++) free(*s[i]);
    memset(r, 0, sizeof *r);
}

static int is_hex64(const char *s)
{
    if (!s || strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int field_int(const sd_json_field *f, long long lo, long long hi, int *out, char *msg, size_t mn)
{
    long long v;
    if (f->type != SD_JSON_NUMBER || sd_parse_ll(f->value, 1, &v) || v < lo || v > hi) {
        snprintf(msg, mn, "\"%s\" must be a whole number in [%lld, %lld]", f->key, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int field_real(const sd_json_field *f, double *out, char *msg, size_t mn)
{
    if (f->type != SD_JSON_NUMBER || sd_parse_real(f->value, out) || !isfinite(*out)) {
        snprintf(msg, mn, "\"%s\" must be a number", f->key);
        return -1;
    }
    return 0;
}

/* The string fields, by key. */
static char **str_slot(sd_manifest_rec *r, const char *k)
{
    static const char *const names[] = {"message", "shard", "batch", "batch_sha256", "prompt", "negative_prompt",
                                        "sampler", "schedule", "timestep_spacing", "prediction", "rng",
                                        "init_image", "model", "output", "sha256", "parameters"};
    char **slots[] = {&r->message, &r->shard, &r->batch, &r->batch_sha256, &r->prompt, &r->negative_prompt,
                      &r->sampler, &r->schedule, &r->timestep_spacing, &r->prediction, &r->rng, &r->init_image,
                      &r->model, &r->output, &r->sha256, &r->parameters};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(names[i], k)) return slots[i];
    return NULL;
}

static int parse_fields(sd_json_field *f, int nf, sd_manifest_rec *r, char *msg, size_t mn)
{
    int have_item = 0, have_image = 0, have_items = 0, have_status = 0;
    for (int i = 0; i < nf; i++) {
        const sd_json_field *x = &f[i];
        const char *k = x->key;
        char **slot = str_slot(r, k);
        int rc = 0;
        if (slot) {
            if (x->type == SD_JSON_NULL) continue;
            if (x->type != SD_JSON_STRING) {
                snprintf(msg, mn, "\"%s\" must be a string", k);
                return -1;
            }
            *slot = f[i].value; /* taken over */
            f[i].value = NULL;
        } else if (!strcmp(k, "status")) {
            const char *v = x->type == SD_JSON_STRING ? x->value : "";
            if (!strcmp(v, "ok")) r->status = SD_MREC_OK;
            else if (!strcmp(v, "skipped-existing")) r->status = SD_MREC_SKIPPED;
            else if (!strcmp(v, "failed")) r->status = SD_MREC_FAILED;
            else {
                snprintf(msg, mn, "\"status\" must be \"ok\", \"skipped-existing\" or \"failed\"");
                return -1;
            }
            have_status = 1;
        } else if (!strcmp(k, "item")) {
            rc = field_int(x, 0, SD_BATCH_MAX_ITEMS - 1, &r->item, msg, mn);
            have_item = 1;
        } else if (!strcmp(k, "image")) {
            rc = field_int(x, 0, SD_MANIFEST_MAX_IMAGES - 1, &r->image, msg, mn);
            have_image = 1;
        } else if (!strcmp(k, "items")) {
            rc = field_int(x, 1, SD_BATCH_MAX_ITEMS, &r->items, msg, mn);
            have_items = 1;
        } else if (!strcmp(k, "images")) {
            rc = field_int(x, 0, SD_MANIFEST_MAX_IMAGES, &r->images, msg, mn);
        } else if (!strcmp(k, "index")) {
            rc = field_int(x, 0, SD_MANIFEST_MAX_IMAGES, &r->index, msg, mn);
        } else if (!strcmp(k, "line")) {
            rc = field_int(x, 0, INT_MAX, &r->line, msg, mn);
        } else if (!strcmp(k, "steps") || !strcmp(k, "width") || !strcmp(k, "height") || !strcmp(k, "clip_skip")) {
            int *p = k[0] == 's' ? &r->steps : k[0] == 'w' ? &r->width : k[0] == 'h' ? &r->height : &r->clip_skip;
            if (x->type != SD_JSON_NULL) rc = field_int(x, 0, 1000000, p, msg, mn);
        } else if (!strcmp(k, "seed")) {
            if (x->type == SD_JSON_NULL) continue;
            if (x->type != SD_JSON_NUMBER || sd_parse_u64(x->value, &r->seed)) {
                snprintf(msg, mn, "\"seed\" must be a whole number in [0, 2^64-1]");
                return -1;
            }
            r->has_seed = 1;
        } else if (!strcmp(k, "cfg_scale")) {
            if (x->type == SD_JSON_NULL) continue;
            rc = field_real(x, &r->cfg_scale, msg, mn);
            r->has_cfg = 1;
        } else if (!strcmp(k, "strength")) {
            if (x->type == SD_JSON_NULL) continue;
            rc = field_real(x, &r->strength, msg, mn);
            r->has_strength = 1;
        } else if (!strcmp(k, "seconds")) {
            rc = field_real(x, &r->seconds, msg, mn);
        } else if (!strcmp(k, "time")) {
            rc = field_real(x, &r->time, msg, mn);
        }
        /* any other key: written by a newer sdgen, ignored */
        if (rc) return -1;
    }
    const char *missing = !have_item ? "item" : !have_image ? "image" : !have_items ? "items" : !have_status ? "status"
                        : !r->batch_sha256 ? "batch_sha256" : NULL;
    if (missing) {
        snprintf(msg, mn, "missing \"%s\"", missing);
        return -1;
    }
    if (!is_hex64(r->batch_sha256)) {
        snprintf(msg, mn, "\"batch_sha256\" must be 64 lowercase hex digits");
        return -1;
    }
    if (r->item >= r->items) {
        snprintf(msg, mn, "\"item\" %d is not below \"items\" %d", r->item, r->items);
        return -1;
    }
    if (r->images && r->image >= r->images) {
        snprintf(msg, mn, "\"image\" %d is not below \"images\" %d", r->image, r->images);
        return -1;
    }
    if (r->status == SD_MREC_FAILED) {
        if (!r->message) {
            snprintf(msg, mn, "a failed record needs \"message\"");
            return -1;
        }
    } else {
        missing = !r->output ? "output" : !r->sha256 ? "sha256" : !r->parameters ? "parameters"
                : !r->prompt ? "prompt" : !r->has_seed ? "seed" : NULL;
        if (missing) {
            snprintf(msg, mn, "a %s record needs \"%s\"", sd_manifest_status_name(r->status), missing);
            return -1;
        }
        if (!is_hex64(r->sha256)) {
            snprintf(msg, mn, "\"sha256\" must be 64 lowercase hex digits");
            return -1;
        }
        if (!r->output[0]) {
            snprintf(msg, mn, "\"output\" is empty");
            return -1;
        }
    }
    return 0;
}

int sd_manifest_parse_line(const char *s, size_t n, sd_manifest_rec *r, char *msg, size_t msg_n)
{
    memset(r, 0, sizeof *r);
    if (n > SD_MANIFEST_MAX_LINE) {
        snprintf(msg, msg_n, "record too long (%zu bytes, max %d)", n, SD_MANIFEST_MAX_LINE);
        return -1;
    }
    sd_json_field f[SD_MANIFEST_MAX_KEYS];
    int nf = sd_json_flat_parse(s, n, f, SD_MANIFEST_MAX_KEYS, msg, msg_n);
    if (nf < 0) return -1;
    int rc = parse_fields(f, nf, r, msg, msg_n);
    sd_json_fields_free(f, nf);
    if (rc) sd_manifest_rec_free(r);
    return rc;
}

/* ---- sets of records ---- */

static uint64_t entry_key(int item, int image) { return (uint64_t)item << 20 | (uint64_t)image; }

void sd_manifest_set_init(sd_manifest_set *m)
{
    memset(m, 0, sizeof *m);
    m->items = -1;
}

void sd_manifest_set_free(sd_manifest_set *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slot[i].raw) continue;
        sd_manifest_rec_free(&m->slot[i].rec);
        free(m->slot[i].raw);
    }
    free(m->slot);
    for (int i = 0; i < m->n_files; i++) free(m->names[i]);
    free(m->names);
    sd_manifest_set_init(m);
}

/* The entry of (item, image); a new one has raw == NULL. NULL when out of memory. */
static sd_manifest_entry *set_slot(sd_manifest_set *m, int item, int image)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 256;
        sd_manifest_entry *ns = calloc(nc, sizeof *ns);
        if (!ns) return NULL;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slot[i].raw) continue;
            uint64_t k = entry_key(m->slot[i].rec.item, m->slot[i].rec.image);
            size_t j = (size_t)(k * 0x9E3779B97F4A7C15ull >> 17) & (nc - 1);
            while (ns[j].raw) j = (j + 1) & (nc - 1);
            ns[j] = m->slot[i];
        }
        free(m->slot);
        m->slot = ns;
        m->cap = nc;
    }
    uint64_t k = entry_key(item, image);
    size_t j = (size_t)(k * 0x9E3779B97F4A7C15ull >> 17) & (m->cap - 1);
    while (m->slot[j].raw && entry_key(m->slot[j].rec.item, m->slot[j].rec.image) != k) j = (j + 1) & (m->cap - 1);
    return &m->slot[j];
}

/* One line of file `fi`: 0 added or skipped, -1 with err. */
static int add_line(sd_manifest_set *m, int fi, int ln, const char *s, size_t n, const char *name, sd_err *err)
{
    sd_manifest_rec r;
    char msg[512];
    if (sd_manifest_parse_line(s, n, &r, msg, sizeof msg)) {
        /* A record is written with one write(): a line cut short by a killed writer starts with '{' and is
         * not valid JSON. Such a line is skipped; anything else is not a manifest. */
        if (s[0] == '{' && n <= SD_MANIFEST_MAX_LINE) {
            sd_json_field f[SD_MANIFEST_MAX_KEYS];
            char jm[8];
            int nf = sd_json_flat_parse(s, n, f, SD_MANIFEST_MAX_KEYS, jm, sizeof jm);
            if (nf < 0) {
                if (!m->n_torn++) snprintf(m->torn_first, sizeof m->torn_first, "%s:%d", name, ln);
                return 0;
            }
            sd_json_fields_free(f, nf);
        }
        return sd_errf(err, "%s:%d: not a manifest record: %s", name, ln, msg);
    }
    if (m->items < 0) {
        m->items = r.items;
        snprintf(m->batch_sha256, sizeof m->batch_sha256, "%s", r.batch_sha256);
    } else if (r.items != m->items || strcmp(r.batch_sha256, m->batch_sha256)) {
        int items = r.items;
        char sha[16];
        snprintf(sha, sizeof sha, "%.12s", r.batch_sha256);
        sd_manifest_rec_free(&r);
        return sd_errf(err, "%s:%d: a record of another batch (%d items, batch_sha256 %s...; the records before: %d "
                            "items, %.12s...)", name, ln, items, sha, m->items, m->batch_sha256);
    }
    sd_manifest_entry *e = set_slot(m, r.item, r.image);
    char *raw = e ? malloc(n + 1) : NULL;
    if (!raw) {
        sd_manifest_rec_free(&r);
        return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", name);
    }
    memcpy(raw, s, n);
    raw[n] = 0;
    m->n_records++;
    int fresh = !e->raw;
    if (fresh) {
        if (m->n >= SD_MANIFEST_MAX_IMAGES) {
            free(raw);
            sd_manifest_rec_free(&r);
            return sd_errf(err, "%s:%d: more than %d images in one batch", name, ln, SD_MANIFEST_MAX_IMAGES);
        }
        m->n++;
        e->n_ok = 0;
    }
    if (r.status == SD_MREC_OK) {
        if (e->n_ok < 2) {
            e->ok_file[e->n_ok] = fi;
            e->ok_line[e->n_ok] = ln;
        }
        e->n_ok++;
    }
    /* The latest record wins: within one file the later line (appends are in order), across files the later
     * time, then the later file. */
    int newer = fresh || e->file == fi || r.time > e->rec.time || (r.time == e->rec.time && fi > e->file);
    if (newer) {
        if (!fresh) {
            sd_manifest_rec_free(&e->rec);
            free(e->raw);
        }
        e->rec = r;
        e->raw = raw;
        e->file = fi;
        e->line = ln;
    } else {
        sd_manifest_rec_free(&r);
        free(raw);
    }
    return 0;
}

int sd_manifest_add_mem(sd_manifest_set *m, const char *data, size_t n, const char *name, sd_err *err)
{
    if ((long long)n > SD_MANIFEST_MAX_FILE) return sd_errf(err, "%s: file too large (%zu bytes)", name, n);
    char **nn = realloc(m->names, (size_t)(m->n_files + 1) * sizeof *nn);
    if (!nn) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", name);
    m->names = nn;
    if (!(m->names[m->n_files] = strdup(name))) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", name);
    int fi = m->n_files++;
    size_t pos = 0;
    int ln = 0;
    while (pos < n) {
        ln++;
        const char *nl = memchr(data + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - data) : n;
        const char *s = data + pos;
        size_t len = end - pos;
        pos = nl ? end + 1 : n;
        if (len == 0) continue;
        if (len > SD_MANIFEST_MAX_LINE)
            return sd_errf(err, "%s:%d: line too long (%zu bytes, max %d)", name, ln, len, SD_MANIFEST_MAX_LINE);
        if (add_line(m, fi, ln, s, len, name, err)) return -1;
    }
    return 0;
}

int sd_manifest_add_file(sd_manifest_set *m, const char *path, sd_err *err)
{
    char *buf;
    size_t n;
    if (sd_read_whole(path, SD_MANIFEST_MAX_FILE, &buf, &n, err)) return -1;
    int rc = sd_manifest_add_mem(m, buf, n, path, err);
    free(buf);
    return rc;
}

static int cmp_entry(const void *a, const void *b)
{
    const sd_manifest_entry *x = *(const sd_manifest_entry *const *)a, *y = *(const sd_manifest_entry *const *)b;
    uint64_t kx = entry_key(x->rec.item, x->rec.image), ky = entry_key(y->rec.item, y->rec.image);
    return kx < ky ? -1 : kx > ky;
}

int sd_manifest_sorted(const sd_manifest_set *m, const sd_manifest_entry ***out, size_t *n, sd_err *err)
{
    *out = NULL;
    *n = 0;
    const sd_manifest_entry **v = malloc((m->n ? m->n : 1) * sizeof *v);
    if (!v) return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slot[i].raw) v[k++] = &m->slot[i];
    qsort(v, k, sizeof *v, cmp_entry);
    *out = v;
    *n = k;
    return 0;
}

static void reportf(sd_manifest_report_fn report, void *user, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reportf(sd_manifest_report_fn report, void *user, const char *fmt, ...)
{
    if (!report) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    report(user, line);
}

/* Items without any record, listed as positions (the first 24, then how many more). */
static void report_unrecorded(const int *list, int n, int items, sd_manifest_report_fn report, void *user)
{
    if (!n) return;
    char buf[512];
    size_t k = 0;
    for (int i = 0; i < n && i < 24; i++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%d", i ? ", " : "", list[i]);
    if (n > 24) snprintf(buf + k, sizeof buf - k, ", ... (%d more)", n - 24);
    reportf(report, user, "missing: %d of %d items have no record: %s (0-based positions in the batch; position k "
                          "belongs to shard k mod N)", n, items, buf);
}

int sd_manifest_summarize(const sd_manifest_set *m, sd_manifest_summary *s, sd_manifest_report_fn report,
                          void *user, sd_err *err)
{
    memset(s, 0, sizeof *s);
    if (m->items < 0) {
        reportf(report, user, "missing: no records at all");
        return 0;
    }
    s->items = m->items;
    const sd_manifest_entry **v;
    size_t n;
    if (sd_manifest_sorted(m, &v, &n, err)) return -1;
    int *unrecorded = malloc((size_t)m->items * sizeof *unrecorded);
    if (!unrecorded) {
        free(v);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    }
    int n_unrec = 0;
    s->images = (int)n;
    size_t i = 0;
    for (int item = 0; item < m->items; item++) {
        if (i >= n || v[i]->rec.item != item) {
            unrecorded[n_unrec++] = item;
            s->missing++;
            continue;
        }
        size_t j = i;
        int expect = 0, present = 0, failed = 0, line = v[i]->rec.line;
        for (; j < n && v[j]->rec.item == item; j++) {
            const sd_manifest_entry *e = v[j];
            if (e->rec.images > expect) expect = e->rec.images;
            if (e->rec.image + 1 > expect) expect = e->rec.image + 1;
            present++;
            if (e->rec.status == SD_MREC_FAILED) {
                failed++;
                reportf(report, user, "failed: item %d (line %d) image %d: %s (%s:%d)", item, e->rec.line,
                        e->rec.image, e->rec.message, m->names[e->file], e->line);
            }
            if (e->n_ok > 1) {
                s->duplicated++;
                reportf(report, user, "duplicated: item %d (line %d) image %d was generated %d times (%s:%d, %s:%d%s)",
                        item, e->rec.line, e->rec.image, e->n_ok, m->names[e->ok_file[0]], e->ok_line[0],
                        m->names[e->ok_file[1]], e->ok_line[1], e->n_ok > 2 ? ", ..." : "");
            }
        }
        if (present < expect)
            reportf(report, user, "missing: item %d (line %d): %d of its %d images have no record", item, line,
                    expect - present, expect);
        if (failed) s->failed++;
        else if (present < expect) s->missing++;
        else s->complete++;
        i = j;
    }
    report_unrecorded(unrecorded, n_unrec, m->items, report, user);
    free(unrecorded);
    free(v);
    return 0;
}

/* ---- checking an output ---- */

static const char *trim(const char *s, size_t *n)
{
    size_t l = strlen(s);
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\n' || s[l - 1] == '\t' || s[l - 1] == '\r')) l--;
    while (l && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++, l--;
    *n = l;
    return s;
}

static int same_text(const char *a, const char *b)
{
    size_t na, nb;
    a = trim(a ? a : "", &na);
    b = trim(b ? b : "", &nb);
    return na == nb && !memcmp(a, b, na);
}

int sd_manifest_verify_output(const sd_manifest_rec *r, sd_err *err)
{
    const char *path = r->output;
    struct stat st;
    if (stat(path, &st) != 0) return sd_errf(err, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return sd_errf(err, "%s: not a regular file", path);
    if (st.st_size > SD_IMAGE_MAX_FILE_BYTES) return sd_errf(err, "%s: too large for a PNG of sdgen", path);
    /* Read once: the checks below all see the same bytes. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sd_errf(err, "%s: cannot open: %s", path, strerror(errno));
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *d = malloc(n ? n : 1);
    if (!d) {
        close(fd);
        return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", path);
    }
    while (got < n) {
        ssize_t k = read(fd, d + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    int rc = -1;
    char *text = NULL;
    sd_gen_params gp;
    int have_gp = 0;
    if (got != n) {
        sd_errf(err, "%s: read error", path);
        goto out;
    }
    if (sd_png_verify_mem(d, n, path, err)) goto out;
    uint8_t digest[32];
    char hex[65];
    sd_sha256_buf(d, n, digest);
    sd_sha256_hex(digest, hex);
    if (strcmp(hex, r->sha256)) {
        sd_errf(err, "%s: SHA-256 %.16s... differs from the manifest's %.16s... (the file changed after it was written)",
                path, hex, r->sha256);
        goto out;
    }
    if (sd_png_read_text_mem(d, n, path, "parameters", &text, NULL, err)) goto out;
    if (!text) {
        sd_errf(err, "%s: no parameters chunk", path);
        goto out;
    }
    if (strcmp(text, r->parameters)) {
        sd_errf(err, "%s: its parameters chunk differs from the manifest's", path);
        goto out;
    }
    if (sd_params_parse(text, &gp, err)) goto out;
    have_gp = 1;
    char want[40], got_cfg[40];
    const char *sampler = r->sampler ? sd_params_sampler_name(r->sampler) : NULL;
    sd_params_fmt_number(r->cfg_scale, want, sizeof want);
    sd_params_fmt_number(gp.cfg_scale, got_cfg, sizeof got_cfg);
    const char *what = !same_text(gp.prompt, r->prompt) ? "prompt"
                     : !same_text(gp.negative_prompt, r->negative_prompt) ? "negative prompt"
                     : gp.seed != r->seed ? "seed"
                     : r->steps && gp.steps != r->steps ? "steps"
                     : r->has_cfg && strcmp(want, got_cfg) ? "CFG scale"
                     : r->width && (gp.width != r->width || gp.height != r->height) ? "size"
                     : sampler && (!gp.sampler || strcmp(gp.sampler, sampler)) ? "sampler" : NULL;
    if (what) {
        sd_errf(err, "%s: the %s in its parameters chunk is not the item's", path, what);
        goto out;
    }
    rc = 0;
out:
    if (have_gp) sd_params_free(&gp);
    free(text);
    free(d);
    return rc;
}
