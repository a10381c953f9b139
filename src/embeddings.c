/* embeddings.c — textual-inversion embedding files (sdgen/embeddings.h). */
#include "sdgen/embeddings.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sdgen/safetensors.h"

void sd_embeddings_free(sd_embeddings *e)
{
    for (int i = 0; i < e->n; i++) {
        free((void *)e->words[i].ids);
        free((void *)e->words[i].refuse);
        free(e->names[i]);
    }
    free(e->words);
    free(e->names);
    for (int t = 0; t < SD_MAX_TEXT; t++) free(e->rows[t]);
    memset(e, 0, sizeof *e);
}

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

/* The tensor(s) of one .safetensors embedding for each tower of m: vectors appended to e->rows. 0, or -1
 * with msg (the file is then refused). */
static int read_vectors(sd_embeddings *e, const sd_model *m, const char *path, int *n_vec, char *msg, size_t cap)
{
    sd_safetensors st;
    sd_err err = {0};
    if (sd_st_open(&st, path, &err)) {
        snprintf(msg, cap, "%s", err.msg);
        return -1;
    }
    const sd_st_tensor *per[SD_MAX_TEXT] = {0};
    const sd_st_tensor *l = sd_st_find(&st, "clip_l"), *g = sd_st_find(&st, "clip_g");
    int rc = -1;
    if (m->n_text == 2) {
        if (!l || !g) {
            snprintf(msg, cap, "%s: an SDXL model needs an embedding with \"clip_l\" and \"clip_g\" tensors", path);
            goto out;
        }
        per[0] = l;
        per[1] = g;
    } else {
        const sd_st_tensor *one = NULL;
        for (int i = 0; i < st.n_tensors; i++)
            if (!strncmp(st.tensors[i].name, "string_to_param.", 16) || !strcmp(st.tensors[i].name, "emb_params"))
                one = &st.tensors[i];
        if (!one && st.n_tensors == 1) one = &st.tensors[0];
        if (!one) {
            snprintf(msg, cap, "%s: expected one tensor (\"emb_params\" or \"string_to_param.*\"), found %d", path,
                     st.n_tensors);
            goto out;
        }
        per[0] = one;
    }
    int nv = -1;
    for (int t = 0; t < m->n_text; t++) {
        const sd_st_tensor *x = per[t];
        const int64_t n = x->ndim == 1 ? 1 : x->ndim == 2 ? x->shape[0] : -1;
        const int64_t d = x->ndim >= 1 ? x->shape[x->ndim - 1] : -1;
        if (n < 1 || n > SD_EMB_MAX_VECTORS || d != m->text[t].width || (nv >= 0 && n != nv) ||
            (x->dtype != SD_DT_F32 && x->dtype != SD_DT_F16 && x->dtype != SD_DT_BF16 && x->dtype != SD_DT_F64)) {
            char sh[64] = "";
            size_t w = 0;
            for (int k = 0; k < x->ndim && w < sizeof sh; k++)
                w += (size_t)snprintf(sh + w, sizeof sh - w, "%s%lld", k ? "," : "", (long long)x->shape[k]);
            snprintf(msg, cap, "%s: \"%s\" has shape [%s] (%s); expected [n, %d] float vectors with 1 <= n <= %d", path,
                     x->name, sh, sd_dtype_name(x->dtype), m->text[t].width, SD_EMB_MAX_VECTORS);
            goto out;
        }
        nv = (int)n;
    }
    for (int t = 0; t < m->n_text; t++) {
        const int D = m->text[t].width;
        float *r = realloc(e->rows[t], (size_t)(e->n_rows + nv) * (size_t)D * sizeof *r);
        if (!r) {
            snprintf(msg, cap, "%s: out of memory", path);
            goto out;
        }
        e->rows[t] = r;
        e->width[t] = D;
        float *dst = r + (size_t)e->n_rows * (size_t)D;
        if (sd_st_read_f32(&st, per[t], dst, &err)) {
            snprintf(msg, cap, "%s", err.msg);
            goto out;
        }
        int64_t bad = sd_find_nonfinite(dst, (size_t)nv * (size_t)D);
        if (bad >= 0) {
            snprintf(msg, cap, "%s: \"%s\" has a non-finite value (%s at element %lld)", path, per[t]->name,
                     isnan(dst[bad]) ? "NaN" : "Inf", (long long)bad);
            goto out;
        }
    }
    *n_vec = nv;
    rc = 0;
out:
    sd_st_close(&st);
    return rc;
}

int sd_embeddings_load(sd_embeddings *e, const sd_model *m, sd_tokenizer *t, const char *dir, sd_err *err)
{
    memset(e, 0, sizeof *e);
    DIR *d = opendir(dir);
    if (!d) return 0; /* no folder: no embeddings */
    int cap = 0, rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *fn = de->d_name;
        const int st_file = ends_with(fn, ".safetensors");
        const int pickle = ends_with(fn, ".pt") || ends_with(fn, ".bin");
        if (!st_file && !pickle) continue;
        if (e->n >= SD_EMB_MAX_FILES) break;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, fn);
        struct stat sb;
        if (stat(path, &sb) || !S_ISREG(sb.st_mode)) continue;
        if (e->n == cap) {
            int nc = cap ? cap * 2 : 16;
            sd_prompt_word *nw = realloc(e->words, (size_t)nc * sizeof *nw);
            if (!nw) { rc = sd_errcf(err, SD_ERR_NOMEM, "out of memory"); break; }
            e->words = nw;
            char **nn = realloc(e->names, (size_t)nc * sizeof *nn);
            if (!nn) { rc = sd_errcf(err, SD_ERR_NOMEM, "out of memory"); break; }
            e->names = nn;
            cap = nc;
        }
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(strrchr(fn, '.') - fn), fn);
        sd_tokens tk = {0};
        sd_err te = {0};
        if (!name[0] || sd_tokenize(t, name, m->text[0].pad_id, &tk, &te) || tk.n < 1) {
            sd_tokens_free(&tk);
            continue; /* a name no prompt can spell */
        }
        sd_prompt_word *w = &e->words[e->n];
        memset(w, 0, sizeof *w);
        int32_t *ids = malloc((size_t)tk.n * sizeof *ids);
        char *nm = strdup(name);
        if (!ids || !nm) {
            free(ids);
            free(nm);
            sd_tokens_free(&tk);
            rc = sd_errcf(err, SD_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(ids, tk.ids, (size_t)tk.n * sizeof *ids);
        w->ids = ids;
        w->n_ids = tk.n;
        sd_tokens_free(&tk);
        e->names[e->n] = nm;
        char msg[1200] = "";
        int nv = 0;
        if (pickle)
            snprintf(msg, sizeof msg, "embedding \"%s\": %s is a PyTorch pickle, which sdgen does not read; convert it to "
                     ".safetensors", name, path);
        else
            (void)read_vectors(e, m, path, &nv, msg, sizeof msg); /* msg set: refused below */
        if (msg[0]) {
            char *full = malloc(strlen(msg) + 64);
            if (full) sprintf(full, "%s%s", pickle ? "" : "embedding: ", msg);
            w->refuse = full ? full : strdup("embedding: unusable file");
        } else {
            w->n_vectors = nv;
            w->first_id = SD_EMB_ID_BASE + e->n_rows;
            e->n_rows += nv;
        }
        e->n++;
    }
    closedir(d);
    if (rc) sd_embeddings_free(e);
    return rc;
}
