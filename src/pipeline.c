/* pipeline.c — the generator: prompt → conditioning → denoising loop → VAE decode → pixels.
 *
 * Follows diffusers 0.25.1 StableDiffusionPipeline / StableDiffusionImg2ImgPipeline, as pinned
 * down in docs/SEMANTICS.md §7–§9: one random generator per image, drawn in the order
 * (img2img: posterior sample, then start noise), (txt2img: start noise), then one draw per
 * step for the samplers that need it; classifier-free guidance as one batch of 2 with the
 * unconditional half first; g = u + cfg·(c − u) in float32.
 */
#include "sdgen/pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdgen/cond.h"
#include "sdgen/family.h"
#include "sdgen/image.h"
#include "sdgen/npy.h"
#include "sdgen/params.h"
#include "sdgen/ops.h"
#include "sdgen/rng.h"
#include "sdgen/unet.h"
#include "sdgen/taesd.h"
#include "sdgen/vae.h"

void sd_gen_opts_default(sd_gen_opts *o)
{
    memset(o, 0, sizeof *o);
    o->prompt = "";
    o->negative_prompt = "";
    o->width = 512;
    o->height = 512;
    o->steps = 20;
    o->cfg_scale = 7.5f;
    o->sampler = SD_SAMPLER_EULER_A;
    o->schedule = SD_SCHEDULE_DEFAULT;
    o->spacing = SD_SPACING_DEFAULT;
    o->prediction = SD_PRED_UNKNOWN;
    o->rng_kind = SD_RNG_CPU;
    o->clip_skip = 1;
    o->weighting = 1;
    o->strength = 0.75;
}

int sd_pipeline_open(sd_pipeline *p, const char *model_path, const char *vocab_path, sd_err *err)
{
    memset(p, 0, sizeof *p);
    if (sd_model_open(&p->model, model_path, err)) return -1;
    sd_model *m = &p->model;
    const sd_family_desc *fam = sd_family_get(m->family);
    if (!fam || !fam->supported) {
        sd_errf(err, "%s: %s checkpoints are not supported yet (sdgen runs SD 1.x and SD 2.x)", model_path,
                fam ? fam->display : "these");
        goto fail;
    }
    if (!m->has_unet || !m->has_text || !m->has_vae || !m->vae.has_decoder) {
        sd_errf(err, "%s: a text-to-image model needs a U-Net, a text encoder and a VAE decoder; this one has%s%s%s",
                model_path, m->has_unet ? " a U-Net" : "", m->has_text ? " a text encoder" : "",
                m->has_vae ? " a VAE" : "");
        goto fail;
    }
    if (m->unet.in_channels != m->vae.z_channels || m->unet.out_channels != m->vae.z_channels) {
        sd_errf(err, "%s: the U-Net works on %d channels but the VAE latent has %d", model_path, m->unet.in_channels,
                m->vae.z_channels);
        goto fail;
    }
    if (sd_tokenizer_for_model(&p->tok, m, vocab_path, err)) goto fail;
    if (sd_tokenizer_vocab_size(p->tok) > m->text[0].vocab) {
        sd_errf(err, "%s: the vocabulary (%s) has %d tokens but the text encoder only %d", model_path,
                sd_tokenizer_source(p->tok), sd_tokenizer_vocab_size(p->tok), m->text[0].vocab);
        goto fail;
    }
    sd_arena_init(&p->arena, 0, 0);
    /* F16 files stay F16 in memory by default (half the memory; conversion is exact, so images
     * are identical); --weights f32 trades memory for speed. */
    if (sd_model_set_weights_mode(m, SD_WEIGHTS_F16, err)) goto fail;
    return 0;
fail:
    sd_tokenizer_free(p->tok);
    sd_model_close(m);
    memset(p, 0, sizeof *p);
    return -1;
}

void sd_pipeline_close(sd_pipeline *p)
{
    if (p->taesd) {
        sd_taesd_close(p->taesd);
        free(p->taesd);
    }
    sd_lora_state_free(&p->lora, &p->model);
    p->model.embeddings = NULL;
    sd_embeddings_free(&p->emb);
    free(p->emb_dir);
    sd_arena_free(&p->arena);
    sd_tokenizer_free(p->tok);
    sd_model_close(&p->model);
    memset(p, 0, sizeof *p);
}

int sd_pipeline_set_taesd(sd_pipeline *p, const char *path, sd_err *err)
{
    sd_taesd *t = calloc(1, sizeof *t);
    if (!t) return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    if (sd_taesd_open(t, path, err)) {
        free(t);
        return -1;
    }
    const sd_model *m = &p->model;
    /* TAESD (SD 1.x/2.x) and TAESDXL both have 4 latent channels, like their models; a tiny decoder for
     * another latent space (16 channels: SD3, FLUX) would decode garbage, so a mismatch is refused. */
    if (t->latent_channels != m->vae.z_channels || t->dec.factor != sd_vae_factor(&m->vae)) {
        sd_errf(err, "%s: this tiny autoencoder works on %d-channel latents (%dx smaller than the image) but the %s "
                "model's have %d (%dx); use TAESD for SD 1.x/2.x and TAESDXL for SDXL", path, t->latent_channels,
                t->dec.factor, sd_family_name(m->family), m->vae.z_channels, sd_vae_factor(&m->vae));
        sd_taesd_close(t);
        free(t);
        return -1;
    }
    if (p->taesd) {
        sd_taesd_close(p->taesd);
        free(p->taesd);
    }
    p->taesd = t;
    return 0;
}

size_t sd_gen_memory_estimate(const sd_model *m, int width, int height, int batch, int vae_tile, int vae_tile_overlap)
{
    /* The larger of the two networks' arena reservations: the U-Net's for the batch (77 context
     * tokens per prompt chunk; longer prompts add their k/v only) and the VAE decoder's (tiled or
     * not), both including the weights converted per use. */
    const int f = sd_vae_factor(&m->vae);
    const size_t unet = sd_unet_memory_bytes(m, batch, height / f, width / f, SD_TOK_CONTEXT);
    const size_t vae = sd_vae_decode_bytes(m, 1, height / f, width / f, vae_tile, vae_tile_overlap);
    return unet > vae ? unet : vae;
}

/* Bytes of the arena's blocks: kept across images and reused, so they count as room for the next one. */
static size_t arena_held(const sd_arena *a)
{
    size_t n = 0;
    for (const sd_arena_block *b = a->head; b; b = b->next) n += b->size;
    return n;
}

/* The stack each new thread maps: glibc's default is RLIMIT_STACK when that is finite, else 32 MiB
 * on x86-64 (nptl ARCH_STACK_DEFAULT_SIZE); libgomp uses the default unless OMP_STACKSIZE says otherwise. */
static size_t thread_stack_bytes(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 0) return (size_t)rl.rlim_cur;
    return (size_t)32 << 20;
}

/* Under an address-space limit (ulimit -v, RLIMIT_AS) an allocation that does not fit fails instead of
 * swapping, and OpenBLAS does not fail but retries a failed buffer mmap forever: so the plan (the
 * activation estimate, OpenBLAS's per-thread buffers and thread stacks until they exist, weights still
 * to convert, latents and image) must fit in what the limit leaves before any BLAS call. */
static int check_address_space(const sd_pipeline *p, const sd_gen_opts *o, size_t activations, sd_err *err)
{
    size_t limit, left;
    if (!sd_address_space_left(&limit, &left)) return 0;
    const size_t threads = (size_t)sd_threads();
    const size_t blas = p->blas_warm ? 0 : threads * SD_BLAS_BUFFER_BYTES;
    const size_t stacks = p->blas_warm ? 0 : (threads > 1 ? threads - 1 : 0) * thread_stack_bytes();
    const size_t weights = sd_model_pending_f32_bytes(&p->model);
    const size_t other = ((size_t)64 << 20) + (size_t)o->width * (size_t)o->height * 24;
    const size_t need = activations + blas + stacks + weights + other;
    const size_t have = left + arena_held(&p->arena);
    if (need <= have) return 0;
    const double MB = 1e6;
    return sd_errcf(err, SD_ERR_NOMEM,
                    "%dx%d needs about %.0f MB of address space (activations %.0f MB, OpenBLAS buffers and thread "
                    "stacks for %zu threads %.0f MB, weights to convert %.0f MB, other %.0f MB) but the address-space "
                    "limit (ulimit -v) of %.0f MB leaves only %.0f MB (raise the limit, or use --threads 1 or a "
                    "smaller size)",
                    o->width, o->height, (double)need / MB, (double)activations / MB, threads,
                    (double)(blas + stacks) / MB, (double)weights / MB, (double)other / MB, (double)limit / MB,
                    (double)have / MB);
}

/* Build the schedule the run will use (img2img: its tail) to find what the sampler refuses, before any work. */
static int check_schedule(const sd_pipeline *p, const sd_gen_opts *o, sd_err *err)
{
    sd_prediction pred = o->prediction != SD_PRED_UNKNOWN ? o->prediction : p->model.prediction;
    if (pred == SD_PRED_UNKNOWN) pred = SD_PRED_EPS;
    sd_sched *s = malloc(sizeof *s);
    if (!s) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the schedule");
    int rc = sd_sched_init(s, o->sampler, o->schedule, o->spacing, pred, o->steps, &p->model.sched, err);
    if (rc == 0 && (rc = sd_sched_set_eta(s, o->eta, err)) != 0) sd_sched_free(s);
    if (rc == 0) {
        /* A strength that runs no step is reported where the run sets it, after the init image is read
         * (its errors come first); only the timesteps of a run that exists are checked here. */
        sd_err ignored;
        if (!o->init_image || sd_sched_set_strength(s, o->strength, &ignored) == 0)
            rc = sd_sched_check_run(s, o->init_image ? o->strength : 1.0, err);
        sd_sched_free(s);
    }
    free(s);
    return rc;
}

/* The activation memory of a run: sd_gen_memory_estimate, with the tiny decoder's in place of the VAE's
 * when one is set (the VAE then decodes nothing; it still encodes img2img without a tiny encoder). */
static size_t gen_memory_need(const sd_pipeline *p, const sd_gen_opts *o)
{
    const sd_model *m = &p->model;
    const int batch = o->cfg_scale <= 1.0f ? 1 : 2; /* guidance off: no negative pass */
    if (!p->taesd) return sd_gen_memory_estimate(m, o->width, o->height, batch, o->vae_tile, o->vae_tile_overlap);
    const int f = sd_vae_factor(&m->vae);
    const size_t unet = sd_unet_memory_bytes(m, batch, o->height / f, o->width / f, SD_TOK_CONTEXT);
    const size_t dec = sd_taesd_decode_bytes(p->taesd, 1, o->height / f, o->width / f);
    return unet > dec ? unet : dec;
}

int sd_gen_validate(const sd_pipeline *p, const sd_gen_opts *o, sd_err *err)
{
    if (o->steps < 1 || o->steps > SD_SCHED_MAX_STEPS)
        return sd_errf(err, "steps must be between 1 and %d (got %d)", SD_SCHED_MAX_STEPS, o->steps);
    if (!(o->cfg_scale >= 0) || o->cfg_scale > 100)
        return sd_errf(err, "cfg scale must be between 0 and 100 (got %g)", o->cfg_scale);
    if (!o->init_image || o->width || o->height) {
        if (o->width < 8 || o->height < 8 || o->width % 8 || o->height % 8)
            return sd_errf(err, "width and height must be positive multiples of 8 (got %dx%d)", o->width, o->height);
    }
    if (o->init_image && !(o->strength >= 0 && o->strength <= 1))
        return sd_errf(err, "strength must be between 0 and 1 (got %g)", o->strength);
    if (o->preview_path && (o->preview_every < 1 || o->preview_every > SD_SCHED_MAX_STEPS))
        return sd_errf(err, "preview every N steps needs 1 <= N <= %d (got %d)", SD_SCHED_MAX_STEPS, o->preview_every);
    if (o->init_image && !p->model.vae.has_encoder && !(p->taesd && p->taesd->enc.n))
        return sd_errf(err, "%s: image-to-image needs a VAE encoder, which this model lacks", p->model.path);
    if (o->clip_skip < 1 || o->clip_skip > p->model.text[0].layers_used)
        return sd_errf(err, "clip skip must be between 1 and %d for this model (got %d)", p->model.text[0].layers_used,
                       o->clip_skip);
    if (o->vae_tile && (o->vae_tile < 4 || o->vae_tile_overlap < 0 || 2 * o->vae_tile_overlap > o->vae_tile))
        return sd_errf(err, "VAE tiles must be at least 4 latent pixels with an overlap of 0..tile/2 (got %d / %d)",
                       o->vae_tile, o->vae_tile_overlap);
    if (o->width > 0 && o->height > 0) {
        /* Memory first: a size that cannot fit is reported as out of memory (exit 3) with the estimate,
         * even when it is also beyond the U-Net's side limit below. */
        size_t need = gen_memory_need(p, o);
        size_t have = o->max_memory ? o->max_memory : sd_available_memory_bytes();
        if (have && need > have) {
            /* GB, or MB below 1 GB so that small limits (--max-memory 1M) do not read "0.0 GB" */
            double nd = (double)need, hd = (double)have;
            return sd_errcf(err, SD_ERR_NOMEM,
                            "%dx%d needs about %.1f %s of activation memory but only %.1f %s is available "
                            "(use a smaller size, or --max-memory to override)",
                            o->width, o->height, nd >= 1e9 ? nd / 1e9 : nd / 1e6, nd >= 1e9 ? "GB" : "MB",
                            hd >= 1e9 ? hd / 1e9 : hd / 1e6, hd >= 1e9 ? "GB" : "MB");
        }
        if (check_address_space(p, o, need, err)) return -1;
        if (o->width / 8 > SD_UNET_MAX_SIDE || o->height / 8 > SD_UNET_MAX_SIDE)
            return sd_errf(err, "width and height must be at most %d (got %dx%d)", 8 * SD_UNET_MAX_SIDE, o->width,
                           o->height);
    }
    return check_schedule(p, o, err);
}

void sd_image_float_to_rgb8(const float *img, int w, int h, uint8_t *rgb)
{
    size_t plane = (size_t)w * h;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) {
            float v = img[c * plane + i] / 2.0f + 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            rgb[i * 3 + c] = (uint8_t)nearbyintf(v * 255.0f); /* round half to even (default FE mode) */
        }
}

/* ---- dumps (--dump-dir): the golden cases' file names and shapes ---- */

static int dump_f32(const char *dir, const char *name, const float *d, int ndim, const int64_t *shape, sd_err *err)
{
    if (!dir) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    return sd_npy_write_f32(path, d, ndim, shape, err);
}

static int dump_tokens(const char *dir, const char *name, sd_tokenizer *t, const char *text, int pad, int weighting,
                       sd_err *err)
{
    if (!dir) return 0;
    (void)weighting;
    int32_t ids[SD_TOK_CONTEXT];
    if (sd_tokenize_77(t, text, pad, ids, NULL, NULL, err)) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    return sd_npy_write_i32(path, ids, 2, (const int64_t[]){1, SD_TOK_CONTEXT}, err);
}

/* The first U-Net call's input and output, named as the golden cases name them. */
static int dump_unet0(const char *dir, float t, int int_timesteps, sd_tensor x, sd_tensor ctx, sd_tensor out,
                      sd_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/unet0_timestep.npy", dir);
    const int64_t one[1] = {1};
    if (int_timesteps) {
        const int32_t ti = (int32_t)t;
        if (sd_npy_write_i32(path, &ti, 1, one, err)) return -1;
    } else if (sd_npy_write_f32(path, &t, 1, one, err)) {
        return -1;
    }
    return dump_f32(dir, "unet0_sample", x.data, 4, x.ne, err) || dump_f32(dir, "unet0_context", ctx.data, 3, ctx.ne, err) ||
                   dump_f32(dir, "unet0_out", out.data, 4, out.ne, err)
               ? -1
               : 0;
}

/* ---- the stages ---- */

/* The conditioning of a negative prompt that was not given, for families that use zeros then:
 * cond's shape with every value 0, pooled vector included. */
static int zero_cond(const sd_cond *cond, sd_cond *out, sd_err *err)
{
    memset(out, 0, sizeof *out);
    const size_t n = (size_t)SD_TOK_CONTEXT * (size_t)cond->n_chunks * (size_t)cond->dim;
    out->data = calloc(n, sizeof(float));
    out->pooled = cond->pooled_dim ? calloc((size_t)cond->pooled_dim, sizeof(float)) : NULL;
    if (!out->data || (cond->pooled_dim && !out->pooled)) {
        sd_cond_free(out);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory (conditioning)");
    }
    out->n_chunks = cond->n_chunks;
    out->dim = cond->dim;
    out->pooled_dim = cond->pooled_dim;
    return 0;
}

int sd_pipeline_condition(sd_pipeline *p, const sd_gen_opts *o, sd_cond *cond, sd_cond *uncond, sd_err *err)
{
    sd_model *m = &p->model;
    const sd_family_desc *f = sd_family_get(m->family);
    memset(cond, 0, sizeof *cond);
    if (uncond) memset(uncond, 0, sizeof *uncond);
    int rc = f->condition(m, &p->arena, p->tok, o->prompt, o->weighting, o->clip_skip, cond, err);
    if (rc == 0 && uncond) {
        if (f->zeros_without_negative && !o->negative_given) {
            rc = zero_cond(cond, uncond, err);
        } else {
            rc = f->condition(m, &p->arena, p->tok, o->negative_prompt, o->weighting, o->clip_skip, uncond, err);
            if (rc == 0)
                rc = sd_cond_match_length(m, &p->arena, p->tok, o->clip_skip, f->condition, cond, uncond, err);
        }
    }
    sd_arena_reset(&p->arena);
    sd_model_release_pages(m, f->text_prefix); /* the text encoder is done for this image */
    if (rc) {
        sd_cond_free(cond);
        if (uncond) sd_cond_free(uncond);
    }
    return rc;
}

void sd_gen_time_ids(const sd_gen_opts *o, int width, int height, float ids[6])
{
    /* diffusers _get_add_time_ids: original_size + crops_coords_top_left + target_size, each (h, w) or
     * (top, left); original and target default to the output size */
    ids[0] = (float)(o->original_h ? o->original_h : height);
    ids[1] = (float)(o->original_w ? o->original_w : width);
    ids[2] = (float)o->crop_top;
    ids[3] = (float)o->crop_left;
    ids[4] = (float)(o->target_h ? o->target_h : height);
    ids[5] = (float)(o->target_w ? o->target_w : width);
}

int sd_pipeline_vectors(sd_pipeline *p, const sd_gen_opts *o, int width, int height, sd_cond *cond, sd_cond *uncond,
                        sd_err *err)
{
    sd_model *m = &p->model;
    const sd_family_desc *f = sd_family_get(m->family);
    if (!f->vector || m->unet.adm_in <= 0) return 0;
    float ids[6];
    sd_gen_time_ids(o, width, height, ids);
    for (int k = 0; k < 2; k++) {
        sd_cond *c = k ? uncond : cond;
        if (!c) continue;
        free(c->vec);
        c->vec = malloc((size_t)m->unet.adm_in * sizeof(float));
        if (!c->vec) return sd_errcf(err, SD_ERR_NOMEM, "out of memory (conditioning vector)");
        c->vec_dim = m->unet.adm_in;
        if (f->vector(m, &p->arena, c, ids, c->vec, err)) return -1;
    }
    sd_arena_reset(&p->arena);
    return 0;
}

int sd_pipeline_guided(sd_pipeline *p, sd_tensor x, float t, const sd_cond *cond, const sd_cond *uncond, float cfg,
                       float *g, const char *dump_dir, int int_timesteps, sd_err *err)
{
    sd_model *m = &p->model;
    sd_arena *a = &p->arena;
    const sd_family_desc *f = sd_family_get(m->family);
    const int B = uncond ? 2 : 1;
    const int64_t n = sd_numel(x), L = (int64_t)SD_TOK_CONTEXT * cond->n_chunks, D = cond->dim;
    if (uncond && (uncond->n_chunks != cond->n_chunks || uncond->dim != cond->dim))
        return sd_errf(err, "conditioning and unconditional conditioning differ in length");
    /* classifier-free guidance as one batch: the unconditional half first (diffusers) */
    const int64_t Y = cond->vec_dim;
    if (uncond && uncond->vec_dim != Y) return sd_errf(err, "conditioning vectors differ in width");
    sd_tensor xb = sd_tensor_4d(a, B, x.ne[1], x.ne[2], x.ne[3]);
    sd_tensor ctx = sd_tensor_3d(a, B, L, D);
    sd_tensor y = Y ? sd_tensor_2d(a, B, Y) : (sd_tensor){0};
    if (!xb.data || !ctx.data || (Y && !y.data)) {
        sd_arena_reset(a);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the denoiser's input");
    }
    for (int b = 0; b < B; b++) {
        memcpy(xb.data + b * n, x.data, (size_t)n * sizeof(float));
        const sd_cond *c = B == 2 && b == 0 ? uncond : cond;
        memcpy(ctx.data + (size_t)b * L * D, c->data, (size_t)(L * D) * sizeof(float));
        if (Y) memcpy(y.data + b * Y, c->vec, (size_t)Y * sizeof(float));
    }
    const float tt[2] = {t, t};
    sd_tensor out;
    int rc = f->denoise(m, a, xb, tt, ctx, y, &out, err);
    if (rc == 0 && dump_dir) rc = dump_unet0(dump_dir, t, int_timesteps, xb, ctx, out, err);
    if (rc == 0 && dump_dir) {
        /* the U-Net's sinusoidal time projection of that call (golden `unet0_time_proj`, one row per batch row) */
        sd_tensor tp = sd_timestep_embedding(a, tt, B, m->unet.model_channels);
        rc = tp.data ? dump_f32(dump_dir, "unet0_time_proj", tp.data, 2, tp.ne, err)
                     : sd_errcf(err, SD_ERR_NOMEM, "out of memory for --dump-dir");
    }
    if (rc == 0) {
        if (uncond) {
            const float *u = out.data, *c = out.data + n;
            for (int64_t k = 0; k < n; k++) g[k] = u[k] + cfg * (c[k] - u[k]);
        } else {
            memcpy(g, out.data, (size_t)n * sizeof(float));
        }
    }
    sd_arena_reset(a);
    return rc;
}

/* The conditioning stage's dumps, named as the golden cases name them: tokens of each encoder
 * (tokens_*, tokens_2_*), the context (text_emb_*), the pooled vector and the size ids (SDXL). */
static int dump_conditioning(sd_pipeline *p, const sd_gen_opts *o, const sd_cond *cond, const sd_cond *uncond, int W,
                             int H, sd_err *err)
{
    const sd_model *m = &p->model;
    const char *dir = o->dump_dir;
    const int D = cond->dim, L = SD_TOK_CONTEXT * cond->n_chunks;
    const int encoded_neg = uncond && !(sd_family_get(m->family)->zeros_without_negative && !o->negative_given);
    static const char *const tok_names[2][2] = {{"tokens_cond", "tokens_uncond"}, {"tokens_2_cond", "tokens_2_uncond"}};
    for (int i = 0; i < m->n_text && i < 2; i++) {
        if (dump_tokens(dir, tok_names[i][0], p->tok, o->prompt, m->text[i].pad_id, o->weighting, err)) return -1;
        if ((encoded_neg || !uncond) &&
            dump_tokens(dir, tok_names[i][1], p->tok, o->negative_prompt, m->text[i].pad_id, o->weighting, err))
            return -1;
    }
    if (dump_f32(dir, "text_emb_cond", cond->data, 3, (const int64_t[]){1, L, D}, err) ||
        (uncond && dump_f32(dir, "text_emb_uncond", uncond->data, 3, (const int64_t[]){1, L, D}, err)))
        return -1;
    if (cond->pooled) {
        const int64_t P[2] = {1, cond->pooled_dim};
        if (dump_f32(dir, "pooled_cond", cond->pooled, 2, P, err) ||
            (uncond && uncond->pooled && dump_f32(dir, "pooled_uncond", uncond->pooled, 2, P, err)))
            return -1;
        float ids[12]; /* one row per batch row: [uncond;] cond, the same ids */
        sd_gen_time_ids(o, W, H, ids);
        memcpy(ids + 6, ids, sizeof(float) * 6);
        if (dump_f32(dir, "add_time_ids", ids, 2, (const int64_t[]){uncond ? 2 : 1, 6}, err)) return -1;
    }
    return 0;
}

static int make_dir(const char *dir, sd_err *err)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return sd_errf(err, "%s: cannot create directory: %s", dir, strerror(errno));
    return 0;
}

/* ---- the run ---- */

/* A NaN or Inf never heals: it spreads through every later layer and ends as a black (or clamped) image
 * written with exit 0. So each stage's output is checked (once per step for the latent: a few thousand
 * values) and the item fails naming the stage where the first non-finite value appeared. */
static int check_finite(const float *x, int64_t n, const char *stage, sd_err *err)
{
    int64_t k = sd_find_nonfinite(x, (size_t)n);
    if (k < 0) return 0;
    return sd_errf(err, "%s produced a non-finite value (%s at element %lld of %lld): the model's weights are damaged or "
                   "the settings overflow float32 (--check-weights scans the weights)",
                   stage, isnan(x[k]) ? "NaN" : "Inf", (long long)k, (long long)n);
}

/* The state of one sd_generate call, shared by its stages. */
typedef struct gen_run {
    sd_pipeline *p;
    const sd_gen_opts *o;
    sd_gen_result *r;
    int W, H, h, w, zc;          /* image and latent sizes */
    int64_t n;                   /* latent values */
    int use_cfg;
    sd_cond cond, uncond;
    sd_sched s;
    int sched_ok;
    sd_rng rng;
    float *x, *noise, *xin, *g; /* latent, noise draws, scaled input, guided output */
    float *steps_dump;           /* --dump-dir: every model call's latent after the update, */
    float *in_dump, *g_dump;     /* its input latent and guided output, */
    float *noise_dump;           /* the sampler's draws (n_draws of them), */
    float call_t[SD_SCHED_MAX_CALLS]; /* and its timestep */
    int n_draws;
    sd_image init;               /* img2img */
} gen_run;

/* img2img: the init image, resized when a size is asked for; the run takes its size from it. */
static int gen_init_image(gen_run *g, sd_err *err)
{
    const sd_gen_opts *o = g->o;
    if (o->init_pixels ? sd_image_init_from(o->init_pixels, o->init_image, &g->init, &g->r->init_resized, err)
                       : sd_image_load_init(&g->init, o->init_image, &g->r->init_resized, err))
        return -1;
    /* diffusers' img2img takes its size from the image; an explicit size resizes to it. */
    if (g->W && g->H && (g->init.w != g->W || g->init.h != g->H)) {
        sd_image rs = {0};
        if (sd_image_resize_lanczos(&g->init, g->W, g->H, &rs, err)) return -1;
        sd_image_free(&g->init);
        g->init = rs;
        g->r->init_resized = 1;
    }
    g->W = g->init.w;
    g->H = g->init.h;
    sd_gen_opts sized = *o; /* all settings, at the image's size */
    sized.width = g->W;
    sized.height = g->H;
    return sd_gen_validate(g->p, &sized, err);
}

static int gen_dump_schedule(gen_run *g, sd_err *err);

/* The schedule, the random stream and the start latent: noise (txt2img), or the init image's
 * posterior sample noised to the first kept step (img2img), drawn in diffusers' order. */
static int gen_start(gen_run *g, sd_err *err)
{
    sd_model *m = &g->p->model;
    sd_arena *a = &g->p->arena;
    const sd_gen_opts *o = g->o;
    const char *dump = o->dump_dir;
    const int64_t n = g->n;
    g->r->prediction = o->prediction != SD_PRED_UNKNOWN ? o->prediction : m->prediction;
    if (g->r->prediction == SD_PRED_UNKNOWN) g->r->prediction = SD_PRED_EPS;
    if (sd_sched_init(&g->s, o->sampler, o->schedule, o->spacing, g->r->prediction, o->steps, &m->sched, err))
        return -1;
    g->sched_ok = 1;
    if (sd_sched_set_eta(&g->s, o->eta, err)) return -1;
    sd_rng_init(&g->rng, o->rng_kind, o->seed);
    g->x = malloc((size_t)n * sizeof(float));
    g->noise = malloc((size_t)n * sizeof(float));
    g->xin = malloc((size_t)n * sizeof(float));
    g->g = malloc((size_t)n * sizeof(float));
    if (!g->x || !g->noise || !g->xin || !g->g) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the latents");
    const int64_t lat[4] = {1, g->zc, g->h, g->w};
    if (o->init_image) {
        const double te = sd_now();
        sd_tensor img = sd_tensor_4d(a, 1, 3, g->H, g->W);
        if (!img.data) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the init image (%dx%d)", g->W, g->H);
        sd_image_to_float(&g->init, img.data);
        if (g->p->taesd && g->p->taesd->enc.n) {
            /* AutoencoderTiny: latents = 1.0 · encode(image).latents, deterministic, so the random stream
             * starts with the start noise (docs/SEMANTICS.md "TAESD") */
            sd_tensor enc;
            if (sd_taesd_encode(g->p->taesd, a, img, &enc, err)) return -1;
            if (check_finite(enc.data, n, "the tiny encoder (init image)", err)) return -1;
            memcpy(g->x, enc.data, (size_t)n * sizeof(float));
            sd_arena_reset(a);
            g->r->t_encode = sd_now() - te;
            if (dump_f32(dump, "latents_encoded", g->x, 4, lat, err)) return -1;
            if (sd_sched_set_strength(&g->s, o->strength, err)) return -1;
            sd_rng_randn(&g->rng, g->noise, n);
            sd_sched_add_noise(&g->s, g->x, g->noise, g->x, n);
            if (dump_f32(dump, "noise", g->noise, 4, lat, err)) return -1;
            if (dump_f32(dump, "latents_init", g->x, 4, lat, err)) return -1;
            return gen_dump_schedule(g, err);
        }
        sd_tensor moments;
        if (sd_vae_encode(m, a, img, &moments, err)) return -1;
        sd_rng_randn(&g->rng, g->noise, n); /* draw 1: the posterior sample's ε */
        if (check_finite(moments.data, sd_numel(moments), "the VAE encoder (init image)", err)) return -1;
        sd_vae_sample(moments.data, g->noise, (int64_t)g->h * g->w, g->zc, m->vae.scale_factor, g->x);
        if (check_finite(g->x, n, "the init image's latent (VAE scaling factor)", err)) return -1;
        sd_arena_reset(a);
        g->r->t_encode = sd_now() - te;
        if (dump_f32(dump, "latents_encoded", g->x, 4, lat, err)) return -1;
        if (sd_sched_set_strength(&g->s, o->strength, err)) return -1;
        sd_rng_randn(&g->rng, g->noise, n); /* draw 2: the start noise */
        sd_sched_add_noise(&g->s, g->x, g->noise, g->x, n);
    } else {
        sd_rng_randn(&g->rng, g->noise, n);
        sd_sched_init_latent(&g->s, g->noise, g->x, n);
    }
    if (dump_f32(dump, "noise", g->noise, 4, lat, err)) return -1;
    if (dump_f32(dump, "latents_init", g->x, 4, lat, err)) return -1;
    return gen_dump_schedule(g, err);
}

/* --dump-dir: the schedule (timesteps, sigmas) and room for every step's latent. */
static int gen_dump_schedule(gen_run *g, sd_err *err)
{
    const char *dump = g->o->dump_dir;
    const int64_t n = g->n;
    if (dump) {
        char path[4096];
        snprintf(path, sizeof path, "%s/timesteps.npy", dump);
        const sd_sched *s = &g->s;
        if (s->int_timesteps) {
            int32_t ts[SD_SCHED_MAX_CALLS];
            for (int i = 0; i < s->n_calls; i++) ts[i] = (int32_t)s->timesteps[i];
            if (sd_npy_write_i32(path, ts, 1, (const int64_t[]){s->n_calls}, err)) return -1;
        } else if (sd_npy_write_f32(path, s->timesteps, 1, (const int64_t[]){s->n_calls}, err)) {
            return -1;
        }
        if (s->has_sigmas && dump_f32(dump, "sigmas", s->sigmas, 1, (const int64_t[]){s->n_sigmas}, err))
            return -1;
        const size_t calls = (size_t)(s->n_calls ? s->n_calls : 1);
        g->steps_dump = malloc((size_t)n * calls * sizeof(float));
        g->in_dump = malloc((size_t)n * calls * sizeof(float));
        g->g_dump = malloc((size_t)n * calls * sizeof(float));
        g->noise_dump = malloc((size_t)n * calls * sizeof(float));
        if (!g->steps_dump || !g->in_dump || !g->g_dump || !g->noise_dump)
            return sd_errcf(err, SD_ERR_NOMEM, "out of memory for --dump-dir");
    }
    return 0;
}

/* --dump-dir: the per-call arrays of the golden cases (step_sample_in, step_timesteps,
 * step_model_output, step_noise, step_latents; one entry per model call, step_noise per draw). */
static int dump_calls(gen_run *g, sd_err *err)
{
    const char *dir = g->o->dump_dir;
    const int64_t c = g->s.n_calls;
    const int64_t shape[5] = {c, 1, g->zc, g->h, g->w};
    const int64_t nshape[5] = {g->n_draws, 1, g->zc, g->h, g->w};
    if (dump_f32(dir, "step_sample_in", g->in_dump, 5, shape, err) ||
        dump_f32(dir, "step_timesteps", g->call_t, 1, (const int64_t[]){c}, err) ||
        dump_f32(dir, "step_model_output", g->g_dump, 5, shape, err) ||
        dump_f32(dir, "step_latents", g->steps_dump, 5, shape, err))
        return -1;
    return g->n_draws ? dump_f32(dir, "step_noise", g->noise_dump, 5, nshape, err) : 0;
}

/* --preview: the current latent (what --dump-dir's step_latents holds after this step) as an image, written
 * over one file atomically (temporary file + rename, so a viewer never reads half a PNG). The current
 * latent rather than the sampler's x0 prediction that AUTOMATIC1111's live preview shows: it is the same
 * quantity for every sampler, needs no knowledge of their update rules, and is what the dumps record. With
 * the tiny decoder it is its full-size decode; without, A1111's "Approx cheap" linear map at latent size. */
static int gen_preview(gen_run *g, sd_err *err)
{
    sd_pipeline *p = g->p;
    sd_arena *a = &p->arena;
    const sd_tensor z = {.data = g->x, .ndim = 4, .ne = {1, g->zc, g->h, g->w}};
    int w = g->w, h = g->h, rc = -1;
    sd_tensor img = {0};
    if (p->taesd) {
        if (sd_taesd_decode(p->taesd, a, z, &img, err)) goto out;
        w = g->W;
        h = g->H;
    } else if (g->zc == 4) {
        img = sd_tensor_4d(a, 1, 3, h, w);
        if (!img.data) {
            sd_errcf(err, SD_ERR_NOMEM, "out of memory for the preview");
            goto out;
        }
        sd_latent_preview_cheap(g->x, h, w, p->model.family == SD_FAMILY_SDXL, img.data);
    } else {
        sd_errf(err, "--preview without --vae-decoder needs 4 latent channels (this model has %d)", g->zc);
        goto out;
    }
    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!rgb) {
        sd_errcf(err, SD_ERR_NOMEM, "out of memory for the preview");
        goto out;
    }
    sd_image_float_to_rgb8(img.data, w, h, rgb);
    rc = sd_png_write(g->o->preview_path, rgb, w, h, NULL, SD_WRITE_REPLACE, err);
    free(rgb);
    if (rc) sd_err_prefix(err, "preview");
out:
    sd_arena_reset(a);
    return rc;
}

/* The sampler's steps: scale, one guided model output, the sampler's update (with its noise draw). */
static int gen_denoise(gen_run *g, sd_err *err)
{
    const sd_gen_opts *o = g->o;
    sd_sched *s = &g->s;
    const int64_t n = g->n;
    /* One iteration per model call: the order-2 samplers (heun, dpm2, dpm2_a) make two per step, and
     * the progress callback counts those calls (model evaluations, the unit of time). */
    const char *unit = s->order == 2 ? "model call" : "step";
    for (int i = 0; i < s->n_calls; i++) {
        if (o->interrupted && *o->interrupted)
            return sd_errcf(err, SD_ERR_INTERRUPTED, "interrupted at %s %d of %d", unit, i, s->n_calls);
        const double ts0 = sd_now();
        if (g->in_dump) memcpy(g->in_dump + (size_t)i * n, g->x, (size_t)n * sizeof(float));
        sd_sched_scale_input(s, i, g->x, g->xin, n);
        const sd_tensor xt = {.data = g->xin, .ndim = 4, .ne = {1, g->zc, g->h, g->w}};
        if (sd_pipeline_guided(g->p, xt, s->timesteps[i], &g->cond, g->use_cfg ? &g->uncond : NULL, o->cfg_scale,
                               g->g, i == 0 ? o->dump_dir : NULL, s->int_timesteps, err))
            return -1;
        char stage[96];
        snprintf(stage, sizeof stage, "the U-Net at %s %d of %d", unit, i + 1, s->n_calls);
        if (check_finite(g->g, n, stage, err)) return -1;
        const float *z = NULL;
        if (sd_sched_needs_noise(s, i)) {
            sd_rng_randn(&g->rng, g->noise, n);
            z = g->noise;
            if (g->noise_dump) memcpy(g->noise_dump + (size_t)g->n_draws * n, z, (size_t)n * sizeof(float));
            g->n_draws++;
        }
        if (sd_sched_step(s, i, g->x, g->g, z, n, err)) return -1;
        snprintf(stage, sizeof stage, "the %s sampler at %s %d of %d", sd_sampler_name(o->sampler), unit, i + 1,
                 s->n_calls);
        if (check_finite(g->x, n, stage, err)) return -1;
        if (g->steps_dump) {
            memcpy(g->steps_dump + (size_t)i * n, g->x, (size_t)n * sizeof(float));
            memcpy(g->g_dump + (size_t)i * n, g->g, (size_t)n * sizeof(float));
            g->call_t[i] = s->timesteps[i];
        }
        if (o->preview_path && (i + 1) % o->preview_every == 0 && gen_preview(g, err)) return -1;
        g->r->steps_run = i + 1;
        if (o->progress) o->progress(o->progress_user, i + 1, s->n_calls, sd_now() - ts0);
    }
    if (g->steps_dump && dump_calls(g, err)) return -1;
    return dump_f32(o->dump_dir, "latents_final", g->x, 4, (const int64_t[]){1, g->zc, g->h, g->w}, err);
}

/* 8-bit pixels of the decoder's output img [1, 3, H, W] into the result; image_float dumped. */
static int gen_pixels(gen_run *g, sd_tensor img, sd_err *err)
{
    const int W = g->W, H = g->H;
    g->r->w = W;
    g->r->h = H;
    g->r->rgb = malloc((size_t)W * H * 3);
    if (!g->r->rgb) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the image");
    sd_image_float_to_rgb8(img.data, W, H, g->r->rgb);
    return dump_f32(g->o->dump_dir, "image_float", img.data, 4, (const int64_t[]){1, 3, H, W}, err);
}

/* image = TAESD(latents) with AutoencoderTiny's scaling factor 1.0: the latents are not divided by the VAE's
 * (golden README §11.2); the soft clamp's output and the layers' raw output are dumped under the golden
 * cases' names taesd_clamped and taesd_raw. */
static int gen_decode_taesd(gen_run *g, sd_err *err)
{
    sd_taesd *t = g->p->taesd;
    sd_arena *a = &g->p->arena;
    const char *dump = g->o->dump_dir;
    const int64_t lat[4] = {1, g->zc, g->h, g->w};
    sd_tensor zc = sd_tensor_new(a, 4, lat), raw;
    if (!zc.data) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the decoder input");
    sd_taesd_soft_clamp(g->x, zc.data, g->n);
    if (dump_f32(dump, "taesd_clamped", zc.data, 4, lat, err)) return -1;
    if (sd_taesd_decode_layers(t, a, zc, &raw, err)) return -1;
    if (check_finite(raw.data, sd_numel(raw), "the tiny decoder", err)) return -1;
    if (dump_f32(dump, "taesd_raw", raw.data, 4, raw.ne, err)) return -1;
    sd_taesd_raw_to_image(raw.data, sd_numel(raw));
    if (sd_model_check_unchanged(&t->m, err) || sd_model_check_unchanged(&g->p->model, err)) return -1;
    return gen_pixels(g, raw, err);
}

/* image = VAE(latents / scale_factor), then 8-bit pixels into the result. */
static int gen_decode(gen_run *g, sd_err *err)
{
    sd_model *m = &g->p->model;
    sd_arena *a = &g->p->arena;
    const sd_gen_opts *o = g->o;
    const int W = g->W, H = g->H;
    sd_model_release_pages(m, SD_PREFIX_UNET); /* hold one network at a time */
    if (g->p->taesd) return gen_decode_taesd(g, err);
    sd_tensor zt = sd_tensor_4d(a, 1, g->zc, g->h, g->w);
    if (!zt.data) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the decoder input");
    for (int64_t k = 0; k < g->n; k++) zt.data[k] = g->x[k] / m->vae.scale_factor;
    char stage[96];
    snprintf(stage, sizeof stage, "dividing the latent by the VAE scaling factor %g", (double)m->vae.scale_factor);
    if (check_finite(zt.data, g->n, stage, err)) return -1;
    if (dump_f32(o->dump_dir, "vae_in", zt.data, 4, zt.ne, err)) return -1;
    sd_tensor img;
    if (o->vae_tile ? sd_vae_decode_tiled(m, a, zt, o->vae_tile, o->vae_tile_overlap, &img, err)
                    : sd_vae_decode(m, a, zt, &img, err))
        return -1;
    if (check_finite(img.data, (int64_t)3 * H * W, "the VAE decoder", err)) return -1;
    /* A model file rewritten or truncated meanwhile was read through the mapping: nothing computed
     * from it can be trusted (a truncation usually stops the run with SIGBUS first, see cli.c). */
    if (sd_model_check_unchanged(m, err)) return -1;
    g->r->w = W;
    g->r->h = H;
    g->r->rgb = malloc((size_t)W * H * 3);
    if (!g->r->rgb) return sd_errcf(err, SD_ERR_NOMEM, "out of memory for the image");
    sd_image_float_to_rgb8(img.data, W, H, g->r->rgb);
    return dump_f32(o->dump_dir, "image_float", img.data, 4, (const int64_t[]){1, 3, H, W}, err);
}

static int generate_run(sd_pipeline *p, const sd_gen_opts *o, sd_gen_result *r, sd_err *err)
{
    sd_model *m = &p->model;
    gen_run g;
    memset(&g, 0, sizeof g);
    g.p = p;
    g.o = o;
    g.r = r;
    /* diffusers runs the unconditional pass only for guidance_scale > 1 (do_classifier_free_guidance):
     * 1 and below (SDXL-Turbo: 0) mean "off", the model's conditional output alone. */
    g.use_cfg = o->cfg_scale > 1.0f;
    if (sd_gen_validate(p, o, err)) return -1;
    if (o->dump_dir && make_dir(o->dump_dir, err)) return -1;
    g.W = o->width;
    g.H = o->height;
    int rc = -1;
    if (o->init_image && gen_init_image(&g, err)) goto out;
    /* OpenBLAS's buffers now, while the room checked for them above is still free (see check_address_space). */
    if (!p->blas_warm) {
        sd_blas_warm();
        p->blas_warm = 1;
    }
    const int f = sd_vae_factor(&m->vae);
    g.h = g.H / f;
    g.w = g.W / f;
    g.zc = m->vae.z_channels;
    g.n = (int64_t)g.zc * g.h * g.w;

    sd_cond *uc = g.use_cfg ? &g.uncond : NULL;
    /* a model not in the page cache streams from disk while the text encoder runs (model.h) */
    sd_model_prefetch_pages(m, sd_family_get(m->family)->text_prefix);
    sd_model_prefetch_pages(m, SD_PREFIX_UNET);
    const double t0 = sd_now();
    if (sd_pipeline_condition(p, o, &g.cond, uc, err)) goto out;
    r->chunks_cond = g.cond.n_chunks;
    r->chunks_uncond = uc ? g.uncond.n_chunks : 0;
    r->t_text = sd_now() - t0;
    if (sd_pipeline_vectors(p, o, g.W, g.H, &g.cond, uc, err)) goto out;
    if (o->dump_dir && dump_conditioning(p, o, &g.cond, uc, g.W, g.H, err)) goto out;
    if (gen_start(&g, err)) goto out;
    const double td = sd_now();
    if (gen_denoise(&g, err)) goto out;
    r->t_denoise = sd_now() - td;
    const double tv = sd_now();
    if (gen_decode(&g, err)) goto out;
    r->t_decode = sd_now() - tv;
    rc = 0;
out:
    if (rc) {
        free(r->rgb);
        r->rgb = NULL;
    }
    sd_arena_reset(&p->arena);
    if (g.sched_ok) sd_sched_free(&g.s);
    sd_cond_free(&g.cond);
    sd_cond_free(&g.uncond);
    sd_image_free(&g.init);
    free(g.x);
    free(g.noise);
    free(g.xin);
    free(g.g);
    free(g.steps_dump);
    free(g.in_dump);
    free(g.g_dump);
    free(g.noise_dump);
    return rc;
}

/* A folder beside the model ("DIR/<what>" for DIR/model.safetensors or the folder DIR/model/). */
static void dir_beside_model(const char *model_path, const char *what, char *out, size_t n)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", model_path);
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') dir[--len] = 0;
    char *slash = strrchr(dir, '/');
    if (slash == dir) snprintf(out, n, "/%s", what);
    else if (slash) {
        *slash = 0;
        snprintf(out, n, "%s/%s", dir, what);
    } else snprintf(out, n, "%s", what);
}

void sd_pipeline_lora_dir(const sd_pipeline *p, const char *given, char *out, size_t n)
{
    if (given) snprintf(out, n, "%s", given);
    else dir_beside_model(p->model.path, "loras", out, n);
}

/* The LoRAs of one image: the prompts' tags (removed from the texts in *pos / *neg) and o->loras, resolved
 * and merged into the model (a no-op when the previous image used the same set); r gets the infotext's
 * "Lora hashes" (A1111 extra_networks_lora: "name: shorthash" joined by ", ", ':' and ',' dropped from
 * the name). */
static int gen_loras(sd_pipeline *p, const sd_gen_opts *o, char **pos, char **neg, sd_gen_result *r, sd_err *err)
{
    sd_lora_list l;
    memset(&l, 0, sizeof l);
    int rc = -1;
    if (sd_lora_strip_tags(o->prompt ? o->prompt : "", pos, &l, err) ||
        sd_lora_strip_tags(o->negative_prompt ? o->negative_prompt : "", neg, &l, err))
        goto out;
    for (int i = 0; o->loras && i < o->loras->n; i++) {
        if (sd_lora_list_add(&l, o->loras->items[i].name, o->loras->items[i].path, o->loras->items[i].scale, err))
            goto out;
        l.items[l.n - 1].scale_unet = o->loras->items[i].scale_unet;
    }
    char dir[4200];
    sd_pipeline_lora_dir(p, o->lora_dir, dir, sizeof dir);
    if (sd_lora_resolve(&l, dir, err)) goto out;
    const double t0 = sd_now();
    p->lora.copy_limit = SIZE_MAX; /* the merge's copies must fit in the machine's available memory */
    p->lora.mode = o->lora_mode;
    if (sd_lora_apply(&p->lora, &p->model, &l, err)) goto out;
    const int changed = p->lora.changed;
    r->t_lora = sd_now() - t0;
    if (changed && l.n && p->lora.warning) r->lora_warning = strdup(p->lora.warning);
    if (!l.n) {
        rc = 0;
        goto out;
    }
    if (changed)
        for (int i = 0; i < l.n; i++)
            if (sd_lora_short_hash(l.items[i].path, p->lora_hashes[i], err)) {
                sd_err ignore = {0};
                (void)sd_lora_restore(&p->lora, &p->model, &ignore); /* so the next image hashes them again */
                goto out;
            }
    size_t cap = 1;
    for (int i = 0; i < l.n; i++) cap += strlen(l.items[i].name) + 16;
    char *h = malloc(cap);
    if (!h) {
        sd_errcf(err, SD_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t w = 0;
    for (int i = 0; i < l.n; i++) {
        if (i) w += (size_t)snprintf(h + w, cap - w, ", ");
        for (const char *c = l.items[i].name; *c; c++)
            if (*c != ':' && *c != ',') h[w++] = *c;
        w += (size_t)snprintf(h + w, cap - w, ": %s", p->lora_hashes[i]);
    }
    h[w] = 0;
    r->lora_hashes = h;
    rc = 0;
out:
    sd_lora_list_free(&l);
    return rc;
}

/* The textual-inversion words of the embeddings folder, read once per folder. */
static int gen_embeddings(sd_pipeline *p, const sd_gen_opts *o, sd_err *err)
{
    char dir[4200];
    if (o->embeddings_dir) snprintf(dir, sizeof dir, "%s", o->embeddings_dir);
    else dir_beside_model(p->model.path, "embeddings", dir, sizeof dir);
    if (p->emb_dir && !strcmp(p->emb_dir, dir)) {
        p->model.embeddings = &p->emb;
        return 0;
    }
    p->model.embeddings = NULL;
    sd_embeddings_free(&p->emb);
    free(p->emb_dir);
    p->emb_dir = NULL;
    if (sd_embeddings_load(&p->emb, &p->model, p->tok, dir, err)) return -1;
    p->emb_dir = strdup(dir);
    if (!p->emb_dir) return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    p->model.embeddings = &p->emb;
    return 0;
}

int sd_generate(sd_pipeline *p, const sd_gen_opts *o, sd_gen_result *r, sd_err *err)
{
    memset(r, 0, sizeof *r);
    char *pos = NULL, *neg = NULL;
    if (gen_embeddings(p, o, err) || gen_loras(p, o, &pos, &neg, r, err)) {
        free(pos);
        free(neg);
        sd_gen_result_free(r);
        return -1;
    }
    sd_gen_opts run = *o;
    run.prompt = pos;
    run.negative_prompt = neg;
    sd_gen_result keep = *r;
    int rc = generate_run(p, &run, r, err);
    r->lora_hashes = keep.lora_hashes;
    r->lora_warning = keep.lora_warning;
    r->t_lora = keep.t_lora;
    if (rc) {
        free(r->lora_hashes);
        free(r->lora_warning);
        r->lora_hashes = r->lora_warning = NULL;
    }
    free(pos);
    free(neg);
    return rc;
}

void sd_gen_result_free(sd_gen_result *r)
{
    free(r->rgb);
    r->rgb = NULL;
    free(r->lora_hashes);
    free(r->lora_warning);
    r->lora_hashes = r->lora_warning = NULL;
}

int sd_default_model_path(char *out, size_t n, sd_err *err)
{
    const char *env = getenv("SDGEN_MODEL");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return 0;
    }
    /* The install folder first, so that an installed program never picks up a source tree's copy. */
    const char *cands[] = {SDGEN_DATA_DIR "/models/demo.safetensors", SDGEN_SOURCE_DIR "/models/demo.safetensors"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (access(cands[i], R_OK) == 0) {
            snprintf(out, n, "%s", cands[i]);
            return 0;
        }
    }
    return sd_errf(err, "no model given and the demo model is not installed (looked for $SDGEN_MODEL, %s, %s)",
                   cands[0], cands[1]);
}

int sd_gen_infotext(const sd_gen_opts *o, int width, int height, const char *model_hash, const char *model_name,
                    char **out, sd_err *err)
{
    sd_gen_params gp;
    sd_params_init(&gp);
    gp.prompt = o->prompt;
    gp.negative_prompt = o->negative_prompt;
    gp.steps = o->steps;
    gp.sampler = sd_sampler_a1111_name(o->sampler);
    gp.schedule_type = sd_schedule_a1111_name(o->schedule);
    gp.cfg_scale = o->cfg_scale;
    gp.seed = o->seed;
    gp.width = width;
    gp.height = height;
    gp.model_hash = model_hash && *model_hash ? model_hash : NULL;
    gp.model_name = model_name;
    gp.denoising_strength = o->init_image ? o->strength : -1;
    gp.clip_skip = o->clip_skip;
    gp.rng = o->rng_kind == SD_RNG_CUDA ? "GPU" : "CPU";
    /* A1111 records a non-zero DDIM η as "Eta DDIM" (modules/sd_samplers_timesteps.py initialize). */
    char eta[32];
    if (o->sampler == SD_SAMPLER_DDIM && o->eta > 0 && gp.n_extra < SD_PARAMS_MAX_EXTRA) {
        sd_params_fmt_number(o->eta, eta, sizeof eta);
        gp.extra_key[gp.n_extra] = "Eta DDIM";
        gp.extra_value[gp.n_extra++] = eta;
    }
    if (o->lora_hashes && *o->lora_hashes && gp.n_extra < SD_PARAMS_MAX_EXTRA) {
        gp.extra_key[gp.n_extra] = "Lora hashes";
        gp.extra_value[gp.n_extra++] = o->lora_hashes;
    }
    return sd_params_format(&gp, out, err);
}
