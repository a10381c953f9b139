/* model.c — open a Stable Diffusion model (single LDM file or diffusers folder), work out
 * its architecture, check every tensor the architecture needs, and serve f32 weights.
 *
 * Architecture rules (the original CompVis/Stability configs, v1-inference.yaml and
 * v2-inference-v.yaml): the U-Net's levels, widths, res blocks and attention placement
 * follow from tensor shapes; what shapes can't tell comes from the family:
 *   SD 1.x: U-Net 8 heads everywhere, CLIP ViT-L/14 text (head width 64, quick_gelu, last layer);
 *   SD 2.x: U-Net head width 64, linear proj_in/out, OpenCLIP ViT-H text (head width 64,
 *           GELU, penultimate layer), v-prediction for the common 768-v file.
 * A diffusers folder's config.json files take precedence over these rules.
 */
#include "sdgen/model.h"
#include "ops_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diffusers.h"
#include "sdgen/clip.h"
#include "sdgen/family.h"
#include "sdgen/unet.h"
#include "sdgen/vae.h"

const char *sd_prediction_name(sd_prediction p)
{
    return p == SD_PRED_EPS ? "eps" : p == SD_PRED_V ? "v" : "unknown";
}

int sd_prediction_parse(const char *name, sd_prediction *out)
{
    /* sdgen's short names and diffusers' prediction_type values */
    if (!strcmp(name, "eps") || !strcmp(name, "epsilon")) *out = SD_PRED_EPS;
    else if (!strcmp(name, "v") || !strcmp(name, "v_prediction")) *out = SD_PRED_V;
    else return -1;
    return 0;
}

/* ---- weight table ---- */

const sd_weight_ref *sd_model_find(const sd_model *m, const char *name)
{
    const int i = sd_name_index_find(&m->index, name);
    return i >= 0 ? &m->weights[i] : NULL;
}

const struct sd_lowrank *sd_model_lowrank(const sd_model *m, const char *name)
{
    const sd_weight_ref *w = sd_model_find(m, name);
    return w ? w->lowrank : NULL;
}

/* The stored tensor behind a reference, or NULL when the reference points nowhere valid. */
static const sd_st_tensor *stored(const sd_model *m, const sd_weight_ref *r, const sd_safetensors **file)
{
    if (!r || r->file < 0 || r->file >= m->n_files) return NULL;
    const sd_safetensors *st = &m->files[r->file];
    if (r->index < 0 || r->index >= st->n_tensors) return NULL;
    if (file) *file = st;
    return &st->tensors[r->index];
}

/* Whether a weight is converted into the caller's arena scope (rather than viewed or kept). */
static int scoped(const sd_model *m, const sd_weight_ref *w, const sd_st_tensor *t)
{
    return !w->f32 && m->weights_mode == SD_WEIGHTS_F16 && t->dtype != SD_DT_F32;
}

int64_t sd_model_scoped_numel(const sd_model *m, const char *prefix)
{
    const size_t np = strlen(prefix);
    int64_t best = 0;
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *r = &m->weights[i];
        if (strncmp(r->name, prefix, np)) continue;
        const sd_st_tensor *t = stored(m, r, NULL);
        if (t && scoped(m, r, t) && t->numel > best) best = t->numel;
    }
    return best;
}

int sd_model_has(const sd_model *m, const char *fmt, ...)
{
    char name[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return sd_model_find(m, name) != NULL;
}

int64_t sd_model_dim(const sd_model *m, int d, const char *fmt, ...)
{
    char name[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const sd_weight_ref *w = sd_model_find(m, name);
    if (!w || d >= w->ndim) return -1;
    return w->shape[d];
}

static int add_weight(sd_model *m, const char *name, int file, int index, const sd_st_tensor *t, int to_conv, int *cap,
                      sd_err *err)
{
    if (m->n_weights == *cap) {
        int nc = *cap ? *cap * 2 : 1024;
        sd_weight_ref *nw = realloc(m->weights, (size_t)nc * sizeof *nw);
        if (!nw) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", m->path);
        m->weights = nw;
        *cap = nc;
    }
    sd_weight_ref *w = &m->weights[m->n_weights];
    memset(w, 0, sizeof *w);
    w->name = strdup(name);
    if (!w->name) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", m->path);
    w->file = file;
    w->index = index;
    w->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) w->shape[d] = t->shape[d];
    if (to_conv && t->ndim == 2) {
        w->ndim = 4;
        w->shape[2] = w->shape[3] = 1;
    }
    m->n_weights++;
    return 0;
}

static int build_hash(sd_model *m, sd_err *err)
{
    if (sd_name_index_init(&m->index, m->n_weights)) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", m->path);
    for (int k = 0; k < m->n_weights; k++)
        if (!sd_name_index_add(&m->index, m->weights[k].name, k))
            return sd_errf(err, "%s: tensor \"%s\" appears twice", m->path, m->weights[k].name);
    return 0;
}

/* ---- architecture from shapes (single-file LDM) ---- */

/* ---- required tensors and their shapes ---- */

void sd_check_fail(sd_check *k, const char *fmt, ...)
{
    if (k->failed) return;
    k->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof k->err->msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sd_errf(k->err, "%s: %s", k->m->path, msg);
}

void sd_check_shape(sd_check *k, const char *pre, const char *suffix, int ndim, int64_t d0, int64_t d1, int64_t d2,
                    int64_t d3)
{
    if (k->failed) return;
    char name[1024];
    snprintf(name, sizeof name, "%s%s", pre, suffix);
    const int64_t shape[4] = {d0, d1, d2, d3};
    const sd_weight_ref *w = sd_model_find(k->m, name);
    if (!w) {
        k->failed = 1;
        sd_errf(k->err, "%s: required tensor \"%s\" is missing (%s model)", k->m->path, name,
                sd_family_name(k->m->family));
        return;
    }
    int ok = w->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = w->shape[d] == shape[d];
    if (!ok) {
        char want[128] = "", got[128] = "";
        int n = 0;
        for (int d = 0; d < ndim; d++) n += snprintf(want + n, sizeof want - (size_t)n, "%s%lld", d ? "," : "", (long long)shape[d]);
        n = 0;
        for (int d = 0; d < w->ndim; d++)
            n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", d ? "," : "", (long long)w->shape[d]);
        k->failed = 1;
        sd_errf(k->err, "%s: tensor \"%s\" has shape [%s], expected [%s] for this %s model", k->m->path, name, got,
                want, sd_family_name(k->m->family));
    }
}

void sd_check_linear(sd_check *k, const char *pre, int64_t out, int64_t in, int bias)
{
    sd_check_shape(k, pre, "weight", 2, out, in, 0, 0);
    if (bias) sd_check_shape(k, pre, "bias", 1, out, 0, 0, 0);
}

void sd_check_conv(sd_check *k, const char *pre, int64_t out, int64_t in, int64_t ksize)
{
    sd_check_shape(k, pre, "weight", 4, out, in, ksize, ksize);
    sd_check_shape(k, pre, "bias", 1, out, 0, 0, 0);
}

void sd_check_norm(sd_check *k, const char *pre, int64_t c)
{
    sd_check_shape(k, pre, "weight", 1, c, 0, 0, 0);
    sd_check_shape(k, pre, "bias", 1, c, 0, 0, 0);
}

/* ---- opening ---- */

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Something is there (a FIFO or a folder in a file's place is then refused by sd_open_regular with a
 * message that says so, rather than reported as missing). */
static int path_present(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int open_folder(sd_model *m, const char *dir, int *cap, sd_err *err)
{
    sd_diffusers_layout lay;
    if (sd_diffusers_read_configs(dir, m, &lay, err)) return -1;
    static const struct {
        const char *comp, *file;
    } parts[] = {{"unet", "unet/diffusion_pytorch_model.safetensors"},
                 {"vae", "vae/diffusion_pytorch_model.safetensors"},
                 {"text_encoder", "text_encoder/model.safetensors"},
                 {"text_encoder_2", "text_encoder_2/model.safetensors"}}; /* SDXL */
    int present[4] = {m->has_unet, m->has_vae, m->has_text, m->n_text > 1};
    for (int p = 0; p < 4; p++) {
        if (!present[p]) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, parts[p].file);
        if (!path_present(path)) {
            /* diffusers' variant naming (from_pretrained(variant="fp16"): "<name>.fp16.safetensors"), what a
             * download of only the half-precision files leaves; the plain file wins when both are there */
            char var[4096];
            snprintf(var, sizeof var, "%.*s.fp16.safetensors", (int)(strlen(path) - strlen(".safetensors")), path);
            if (path_present(var)) snprintf(path, sizeof path, "%s", var);
        }
        if (!path_present(path)) {
            char alt[4096];
            snprintf(alt, sizeof alt, "%s/%s/diffusion_pytorch_model.bin", dir, parts[p].comp);
            if (file_exists(alt))
                return sd_errf(err, "%s: only a PyTorch .bin file was found; sdgen reads .safetensors (convert it first)",
                               alt);
            return sd_errf(err, "%s: missing (the %s config is there but its weights are not)", path, parts[p].comp);
        }
        int fi = m->n_files;
        if (sd_st_open(&m->files[fi], path, err)) return -1;
        m->n_files++;
        const sd_safetensors *st = &m->files[fi];
        for (int i = 0; i < st->n_tensors; i++) {
            char ldm[1024];
            int conv = 0;
            if (sd_diffusers_ldm_name(parts[p].comp, st->tensors[i].name, &lay, ldm, sizeof ldm, &conv)) continue;
            if (add_weight(m, ldm, fi, i, &st->tensors[i], conv, cap, err)) return -1;
        }
    }
    char tok[4096];
    snprintf(tok, sizeof tok, "%s/tokenizer", dir);
    if (is_dir(tok)) m->tokenizer_dir = strdup(tok);
    return 0;
}

/* The prediction type: a diffusers scheduler config (already read), else modelspec metadata, else
 * the family's default. */
static void pick_prediction(sd_model *m, const sd_family_desc *f)
{
    if (m->prediction != SD_PRED_UNKNOWN) return;
    const char *pt = sd_model_meta(m, "modelspec.prediction_type");
    if (pt) {
        if (!strcmp(pt, "epsilon") || !strcmp(pt, "eps")) m->prediction = SD_PRED_EPS;
        else if (!strcmp(pt, "v") || !strcmp(pt, "v_prediction") || !strcmp(pt, "v-prediction")) m->prediction = SD_PRED_V;
        if (m->prediction != SD_PRED_UNKNOWN) {
            snprintf(m->prediction_why, sizeof m->prediction_why, "modelspec.prediction_type \"%s\" in the file's metadata", pt);
            return;
        }
    }
    if (f && f->default_prediction) f->default_prediction(m);
}

/* A vocabulary beside a checkpoint: tokenizer/ in the same folder. */
static void find_tokenizer_beside(sd_model *m, const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    char tok[4200];
    snprintf(tok, sizeof tok, "%s/tokenizer", dir);
    if (is_dir(tok)) m->tokenizer_dir = strdup(tok);
}

/* Single file: the family from the names, the networks' sizes from the shapes. Returns the
 * family (NULL with err set when the file is not a Stable Diffusion checkpoint). */
static const sd_family_desc *open_single_file(sd_model *m, const char *path, int *cap, sd_err *err)
{
    if (sd_st_open(&m->files[0], path, err)) return NULL;
    m->n_files = 1;
    const sd_safetensors *st = &m->files[0];
    for (int i = 0; i < st->n_tensors; i++)
        if (add_weight(m, st->tensors[i].name, 0, i, &st->tensors[i], 0, cap, err)) return NULL;
    if (build_hash(m, err)) return NULL;
    const sd_family_desc *f = sd_family_detect(m); /* from names and metadata: nothing derived yet */
    if (f && !f->supported) {
        m->family = f->id;
        return f; /* described by `info`; the generator refuses it */
    }
    const int has_unet = sd_model_has(m, "%sinput_blocks.0.0.weight", SD_PREFIX_UNET);
    if (!f && !has_unet) {
        sd_errf(err, "%s: not a Stable Diffusion checkpoint (no model.diffusion_model.*, first_stage_model.* or "
                "cond_stage_model.* tensors)", path);
        return NULL;
    }
    if (has_unet && sd_unet_derive(m, err)) return NULL;
    if ((sd_model_has(m, "%sencoder.conv_in.weight", SD_PREFIX_VAE) ||
         sd_model_has(m, "%sdecoder.conv_in.weight", SD_PREFIX_VAE)) &&
        sd_vae_derive(m, err))
        return NULL;
    if (!f) f = sd_family_detect(m); /* a U-Net alone: its shapes decide */
    if (!f) {
        sd_errf(err, "%s: the model family could not be recognised", path);
        return NULL;
    }
    m->family = f->id;
    if (f->before_derive) f->before_derive(m);
    /* the text towers the family named, where their tensors are present */
    for (int i = 0; i < SD_MAX_TEXT && m->text[i].prefix[0]; i++) {
        if (!sd_model_has(m, "%s%s", m->text[i].prefix,
                          m->text[i].kind == SD_TEXT_CLIP_HF ? "embeddings.token_embedding.weight" : "token_embedding.weight"))
            break;
        if (sd_text_derive(m, &m->text[i], err)) return NULL;
        m->n_text = i + 1;
    }
    m->has_text = m->n_text > 0;
    find_tokenizer_beside(m, path);
    return f;
}

int sd_model_open(sd_model *m, const char *path, sd_err *err)
{
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    sd_family_ldm_schedule(&m->sched); /* a diffusers scheduler config overrides it */
    int cap = 0;
    const sd_family_desc *f = NULL;
    if (is_dir(path)) {
        m->is_folder = 1;
        char idx[4096];
        snprintf(idx, sizeof idx, "%s/unet/config.json", path);
        if (!path_present(idx)) {
            sd_errf(err, "%s: not a diffusers folder (no unet/config.json) and not a .safetensors file", path);
            goto fail;
        }
        if (open_folder(m, path, &cap, err)) goto fail;
        if (build_hash(m, err)) goto fail;
        if (m->has_vae) {
            m->vae.has_encoder = sd_model_has(m, "%sencoder.conv_in.weight", SD_PREFIX_VAE);
            m->vae.has_decoder = sd_model_has(m, "%sdecoder.conv_in.weight", SD_PREFIX_VAE);
            if (!m->vae.has_encoder && !m->vae.has_decoder) {
                sd_errf(err, "%s/vae: neither an encoder nor a decoder was found", path);
                goto fail;
            }
        }
        f = sd_family_detect_folder(m);
        if (!f) {
            sd_errf(err, "%s: the model family could not be recognised from its configs", path);
            goto fail;
        }
        m->family = f->id;
    } else {
        f = open_single_file(m, path, &cap, err);
        if (!f) goto fail;
        if (!f->supported) {
            pick_prediction(m, f);
            return 0;
        }
    }
    if (f->after_derive) f->after_derive(m);
    /* The U-Net attends to the text encoders' outputs side by side (SDXL: 768 + 1280). */
    int ctx_width = 0;
    for (int i = 0; i < m->n_text; i++) ctx_width += m->text[i].width;
    if (m->has_unet && m->has_text && m->unet.context_dim != ctx_width && m->unet.context_dim > 0) {
        sd_errf(err, "%s: the U-Net attends to %d-wide text but the text encoder%s %d wide", path, m->unet.context_dim,
                m->n_text > 1 ? "s together are" : " is", ctx_width);
        goto fail;
    }
    if ((m->has_unet && sd_unet_check(m, err)) || (m->has_vae && sd_vae_check(m, err))) goto fail;
    for (int i = 0; i < m->n_text; i++)
        if (sd_text_check(m, &m->text[i], err)) goto fail;
    if (!m->has_unet && !m->has_vae && !m->has_text) {
        sd_errf(err, "%s: no U-Net, VAE or text encoder found", path);
        goto fail;
    }
    /* Only float weights can be computed with. */
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        sd_dtype dt = m->files[w->file].tensors[w->index].dtype;
        int used = !strncmp(w->name, SD_PREFIX_UNET, strlen(SD_PREFIX_UNET)) ||
                   !strncmp(w->name, SD_PREFIX_VAE, strlen(SD_PREFIX_VAE));
        for (int t = 0; t < m->n_text && !used; t++)
            used = !strncmp(w->name, m->text[t].prefix, strlen(m->text[t].prefix)) && !strstr(w->name, "position_ids");
        if (used && dt != SD_DT_F32 && dt != SD_DT_F16 && dt != SD_DT_BF16 && dt != SD_DT_F64 &&
            !strstr(w->name, "logit_scale"))
        {
            sd_errf(err, "%s: tensor \"%s\" has dtype %s; weights must be F32, F16 or BF16", m->files[w->file].path,
                    w->name, sd_dtype_name(dt));
            goto fail;
        }
    }
    pick_prediction(m, f);
    return 0;
fail:
    sd_model_close(m);
    return -1;
}

int sd_model_open_table(sd_model *m, const char *label, int n_files, const char *const *paths,
                        sd_model_rename_fn rename, void *user, sd_err *err)
{
    memset(m, 0, sizeof *m);
    m->path = strdup(label);
    if (!m->path) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", label);
    int cap = 0;
    if (n_files < 1 || n_files > (int)(sizeof m->files / sizeof m->files[0])) {
        sd_errf(err, "%s: %d files (1..4)", label, n_files);
        goto fail;
    }
    for (int f = 0; f < n_files; f++) {
        if (sd_st_open(&m->files[f], paths[f], err)) goto fail;
        m->n_files++;
        const sd_safetensors *st = &m->files[f];
        for (int i = 0; i < st->n_tensors; i++) {
            char name[512];
            if (!rename(user, f, st->tensors[i].name, name, sizeof name)) continue;
            const sd_dtype dt = st->tensors[i].dtype;
            if (dt != SD_DT_F32 && dt != SD_DT_F16 && dt != SD_DT_BF16) {
                sd_errf(err, "%s: tensor \"%s\" has dtype %s; weights must be F32, F16 or BF16", st->path,
                        st->tensors[i].name, sd_dtype_name(dt));
                goto fail;
            }
            if (add_weight(m, name, f, i, &st->tensors[i], 0, &cap, err)) goto fail;
        }
    }
    if (build_hash(m, err)) goto fail;
    return 0;
fail:
    sd_model_close(m);
    return -1;
}

void sd_model_close(sd_model *m)
{
    for (int i = 0; i < m->n_weights; i++) {
        if (m->weights[i].f32_owned) free(m->weights[i].f32);
        free(m->weights[i].f16);
        free(m->weights[i].name);
    }
    free(m->weights);
    sd_name_index_free(&m->index);
    for (int f = 0; f < m->n_files; f++) sd_st_close(&m->files[f]);
    free(m->path);
    free(m->tokenizer_dir);
    memset(m, 0, sizeof *m);
}

int sd_model_weight(sd_model *m, sd_arena *a, const char *name, sd_tensor *out, sd_err *err)
{
    sd_weight_ref *w = (sd_weight_ref *)sd_model_find(m, name);
    if (!w) return sd_errf(err, "%s: tensor \"%s\" is missing", m->path, name);
    if (w->ndim > SD_MAX_DIMS)
        return sd_errf(err, "%s: tensor \"%s\" has %d dimensions (at most %d supported)", m->path, name, w->ndim,
                       SD_MAX_DIMS);
    const sd_safetensors *st = &m->files[w->file];
    const sd_st_tensor *t = &st->tensors[w->index];
    float *data = w->f32;
    if (scoped(m, w, t)) {
        /* converted into the caller's scope: lives exactly as long as the scope (model.h) */
        if (!a)
            return sd_errf(err, "%s: tensor \"%s\" is stored as %s and needs an arena scope to be converted into "
                                "(internal error)", m->path, name, sd_dtype_name(t->dtype));
        data = sd_arena_alloc(a, (size_t)(t->numel ? t->numel : 1) * sizeof(float));
        const void *src = sd_st_data(st, t);
        if (w->f16 && t->dtype == SD_DT_F16)
            sd_f16_to_f32_par(w->f16, data, (size_t)t->numel); /* the LoRA-merged halves (lora.c) */
        else if (t->dtype == SD_DT_F16 && ((uintptr_t)src & 1) == 0)
            sd_f16_to_f32_par(src, data, (size_t)t->numel);
        else if (sd_st_read_f32(st, t, data, err))
            return -1;
    } else if (!w->f32) {
        const void *p = sd_st_data(st, t);
        if (t->dtype == SD_DT_F32 && ((uintptr_t)p & 3) == 0) {
            w->f32 = (float *)p; /* zero-copy view into the read-only mapping */
        } else {
            float *buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
            if (!buf) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory converting \"%s\"", m->path, name);
            if (sd_st_read_f32(st, t, buf, err)) {
                free(buf);
                return -1;
            }
            w->f32 = buf;
            w->f32_owned = 1;
            m->converted_bytes += (size_t)t->numel * sizeof(float);
        }
        data = w->f32;
    }
    memset(out, 0, sizeof *out);
    out->data = data;
    out->mem = data == sd_st_data(st, t) ? SD_MEM_MAPPED : SD_MEM_HOST;
    out->ndim = w->ndim ? w->ndim : 1;
    for (int d = 0; d < SD_MAX_DIMS; d++) out->ne[d] = d < w->ndim ? w->shape[d] : 1;
    return 0;
}

int sd_model_weight_f16(sd_model *m, sd_arena *a, const char *name, sd_tensor *out, sd_err *err)
{
    const sd_weight_ref *w = sd_model_find(m, name);
    if (w && w->ndim >= 2 && w->ndim <= SD_MAX_DIMS) {
        const sd_safetensors *st = &m->files[w->file];
        const sd_st_tensor *t = &st->tensors[w->index];
        const void *src = sd_st_data(st, t);
        /* the halves sd_model_weight would convert: the LoRA-merged copy, or the mapping where aligned */
        const uint16_t *h = !scoped(m, w, t) || t->dtype != SD_DT_F16 ? NULL
                            : w->f16                                 ? w->f16
                            : ((uintptr_t)src & 1) == 0              ? (const uint16_t *)src
                                                                     : NULL;
        if (h) {
            memset(out, 0, sizeof *out);
            out->f16 = h;
            out->mem = h == src ? SD_MEM_MAPPED : SD_MEM_HOST;
            out->ndim = w->ndim;
            for (int d = 0; d < SD_MAX_DIMS; d++) out->ne[d] = d < w->ndim ? w->shape[d] : 1;
            return 0;
        }
    }
    return sd_model_weight(m, a, name, out, err);
}

int sd_model_weight_shaped(sd_model *m, sd_arena *a, const char *name, int ndim, const int64_t *shape,
                           sd_tensor *out, sd_err *err)
{
    if (sd_model_weight(m, a, name, out, err)) return -1;
    if (sd_tensor_expect(out, name, ndim, shape, err)) return sd_err_prefix(err, "%s", m->path);
    return 0;
}

int sd_model_weight_rows(sd_model *m, const char *name, const int32_t *rows, int64_t n_rows, float *dst,
                         sd_err *err)
{
    sd_weight_ref *w = (sd_weight_ref *)sd_model_find(m, name);
    if (!w) return sd_errf(err, "%s: tensor \"%s\" is missing", m->path, name);
    if (w->ndim != 2) return sd_errf(err, "%s: tensor \"%s\" is not a matrix", m->path, name);
    const int64_t R = w->shape[0], C = w->shape[1];
    const sd_safetensors *st = &m->files[w->file];
    const sd_st_tensor *t = &st->tensors[w->index];
    /* a one-row view of the stored tensor, converted with the same exact routine as whole tensors */
    sd_st_tensor row = *t;
    row.ndim = 1;
    row.shape[0] = C;
    row.numel = C;
    const uint64_t row_bytes = (uint64_t)C * sd_dtype_size(t->dtype);
    for (int64_t i = 0; i < n_rows; i++) {
        if (rows[i] < 0 || rows[i] >= R)
            return sd_errf(err, "%s: row %d of \"%s\" is outside its %lld rows", m->path, (int)rows[i], name,
                           (long long)R);
        if (w->f32) {
            memcpy(dst + i * C, w->f32 + (int64_t)rows[i] * C, (size_t)C * sizeof(float));
            continue;
        }
        if (w->f16 && t->dtype == SD_DT_F16) {
            sd_f16_to_f32(w->f16 + (int64_t)rows[i] * C, dst + i * C, (size_t)C);
            continue;
        }
        row.begin = t->begin + (uint64_t)rows[i] * row_bytes;
        row.end = row.begin + row_bytes;
        if (sd_st_read_f32(st, &row, dst + i * C, err)) return -1;
    }
    return 0;
}

int sd_model_set_weights_mode(sd_model *m, sd_weights_mode mode, sd_err *err)
{
    (void)err;
    m->weights_mode = mode;
    if (mode == SD_WEIGHTS_F16) {
        /* drop converted copies; F32 views into the mapping stay */
        for (int i = 0; i < m->n_weights; i++) {
            sd_weight_ref *w = &m->weights[i];
            if (w->f32_owned) {
                free(w->f32);
                w->f32 = NULL;
                w->f32_owned = 0;
            }
        }
        m->converted_bytes = 0;
    }
    return 0;
}

void sd_model_release_pages(sd_model *m, const char *prefix)
{
    size_t np = strlen(prefix);
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) pg = 4096;
    for (int i = 0; i < m->n_weights; i++) {
        sd_weight_ref *w = &m->weights[i];
        if (strncmp(w->name, prefix, np)) continue;
        if (w->f32 && !w->f32_owned) continue; /* an F32 view in use: keep its pages */
        const sd_safetensors *st = &m->files[w->file];
        const sd_st_tensor *t = &st->tensors[w->index];
        uintptr_t b = (uintptr_t)sd_st_data(st, t), e = b + (t->end - t->begin);
        b = (b + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
        e &= ~((uintptr_t)pg - 1);
        if (e > b) madvise((void *)b, e - b, MADV_DONTNEED);
    }
}

void sd_model_prefetch_pages(const sd_model *m, const char *prefix)
{
    const size_t np = strlen(prefix);
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) pg = 4096;
    for (int f = 0; f < m->n_files; f++) {
        /* one range per file, from the first to the last byte of the prefix's tensors (in a checkpoint
         * each network's tensors lie together, and one call lets the kernel read ahead in large blocks) */
        uintptr_t lo = UINTPTR_MAX, hi = 0;
        for (int i = 0; i < m->n_weights; i++) {
            const sd_weight_ref *w = &m->weights[i];
            if (w->file != f || strncmp(w->name, prefix, np)) continue;
            const sd_safetensors *st = &m->files[f];
            const sd_st_tensor *t = &st->tensors[w->index];
            const uintptr_t b = (uintptr_t)sd_st_data(st, t), e = b + (t->end - t->begin);
            if (b < lo) lo = b;
            if (e > hi) hi = e;
        }
        if (hi <= lo) continue;
        lo &= ~((uintptr_t)pg - 1);
        madvise((void *)lo, hi - lo, MADV_WILLNEED); /* advice only: a failure changes nothing */
    }
}

int sd_model_weightf(sd_model *m, sd_arena *a, sd_tensor *out, sd_err *err, const char *fmt, ...)
{
    char name[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return sd_model_weight(m, a, name, out, err);
}

const char *sd_model_meta(const sd_model *m, const char *key)
{
    for (int f = 0; f < m->n_files; f++) {
        const char *v = sd_st_meta(&m->files[f], key);
        if (v) return v;
    }
    return NULL;
}

int64_t sd_model_param_count(const sd_model *m, const char *prefix)
{
    int64_t n = 0;
    size_t np = strlen(prefix);
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        if (strncmp(w->name, prefix, np)) continue;
        n += m->files[w->file].tensors[w->index].numel;
    }
    return n;
}

size_t sd_model_pending_f32_bytes(const sd_model *m)
{
    if (m->weights_mode != SD_WEIGHTS_F32) return 0;
    size_t n = 0;
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        if (w->f32) continue;
        const sd_safetensors *st = &m->files[w->file];
        const sd_st_tensor *t = &st->tensors[w->index];
        if (t->dtype == SD_DT_F32 && ((uintptr_t)sd_st_data(st, t) & 3) == 0) continue; /* zero-copy view */
        n += (size_t)t->numel * sizeof(float);
    }
    return n;
}

int sd_model_check_unchanged(const sd_model *m, sd_err *err)
{
    for (int f = 0; f < m->n_files; f++)
        if (sd_st_check_unchanged(&m->files[f], err)) return -1;
    return 0;
}

/* Index of the first NaN/Inf among n stored values of a float dtype (by the exponent bits: IEEE 754
 * binary16, bfloat16, binary32, binary64), -1 if none or not a float dtype; *count gets how many. */
static int64_t stored_nonfinite(const uint8_t *p, sd_dtype dt, int64_t n, int64_t *count)
{
    int64_t first = -1, c = 0;
    for (int64_t i = 0; i < n; i++) {
        int bad;
        if (dt == SD_DT_F32) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            bad = (u & 0x7f800000u) == 0x7f800000u;
        } else if (dt == SD_DT_F16 || dt == SD_DT_BF16) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            bad = dt == SD_DT_F16 ? (h & 0x7c00u) == 0x7c00u : (h & 0x7f80u) == 0x7f80u;
        } else if (dt == SD_DT_F64) {
            uint64_t u;
            memcpy(&u, p + 8 * i, 8);
            bad = (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
        } else {
            return -1;
        }
        if (bad) {
            if (first < 0) first = i;
            c++;
        }
    }
    *count = c;
    return first;
}

int sd_model_check_weights(const sd_model *m, sd_err *err)
{
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        const sd_safetensors *st = &m->files[w->file];
        const sd_st_tensor *t = &st->tensors[w->index];
        int64_t count = 0;
        int64_t k = stored_nonfinite(sd_st_data(st, t), t->dtype, t->numel, &count);
        if (k < 0) continue;
        const uint8_t *p = (const uint8_t *)sd_st_data(st, t);
        float v;
        if (t->dtype == SD_DT_F32) memcpy(&v, p + 4 * k, 4);
        else if (t->dtype == SD_DT_F64) {
            double d;
            memcpy(&d, p + 8 * k, 8);
            v = (float)d;
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * k, 2);
            if (t->dtype == SD_DT_F16) v = sd_f16_to_f32_1(h);
            else {
                uint32_t b = (uint32_t)h << 16;
                memcpy(&v, &b, 4);
            }
        }
        return sd_errf(err, "%s: tensor \"%s\" holds %s at element %lld (%lld non-finite of %lld values): the "
                       "file is damaged", st->path, t->name, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf",
                       (long long)k, (long long)count, (long long)t->numel);
    }
    return 0;
}
