/* test_model.c — the architecture sd_model_open derives (src/model.c, src/diffusers.c) for the three
 * golden tiny models, field by field against docs/SEMANTICS.md §14.1 and §12, and the diffusers
 * name translation against the LDM names of equivalent single files.
 *
 *   tiny-sd1, §14.1: SD 1.x rules from shapes: U-Net 32×(1,2), attention at level 0 + middle, 8 heads,
 *                    conv proj, context 64; CLIP text 64 wide, 2 layers, 1 head, MLP 256; VAE
 *                    32×(1,2,2,2), 1 res block per encoder level.
 *   tiny-sd2, §14.1: SD 2.x rules: U-Net 64×(1,2), head width 64, linear proj, context 128; OpenCLIP
 *                    text 128 wide, 3 blocks of which 2 are used, 2 heads, MLP 512, GELU, pad 0; v.
 *   tiny-cfg, §14.1: sizes from config.json: U-Net 32×(1,2) with 8 heads ("attention_head_dim" 8),
 *                    context 32; text 32 wide, 5 layers, 4 heads, MLP 37; VAE 32×(1,2,2,2) with 2
 *                    res blocks per level; scheduler config read.
 * Name translation: tiny-cfg's U-Net has tiny-sd1's U-Net structure, so its translated names must be
 * exactly tiny-sd1's model.diffusion_model.* names (and the shapes equal but for the context width);
 * its VAE has the block structure of SD 1.5's, so its names must be the sd15 manifest's
 * first_stage_model.* names (less the two nin_shortcut pairs SD 1.5 needs for its wider levels).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdgen/model.h"
#include "testutil.h"

#define EQ(what, got, want) CHECK((got) == (want), "%s: %s = %lld, want %lld", model, what, (long long)(got), (long long)(want))

static void check_ints(const char *model, const char *what, const int *got, int n_got, const int *want, int n_want)
{
    int ok = n_got == n_want;
    for (int i = 0; ok && i < n_want; i++) ok = got[i] == want[i];
    char g[128] = "", w[128] = "";
    for (int i = 0; i < n_got && i < 8; i++) snprintf(g + strlen(g), sizeof g - strlen(g), "%s%d", i ? "," : "", got[i]);
    for (int i = 0; i < n_want; i++) snprintf(w + strlen(w), sizeof w - strlen(w), "%s%d", i ? "," : "", want[i]);
    CHECK(ok, "%s: %s = (%s), want (%s)", model, what, g, w);
}

typedef struct {
    int in, out, mc, n_levels, mult[4], res, attn[4], mid_attn, depth, heads, head_dim, context, linear, ted, groups;
} unet_want;
typedef struct {
    int in, z, ch, n_levels, mult[4], res, groups, enc, dec;
    float scale;
} vae_want;
typedef struct {
    sd_text_kind kind;
    int width, layers, layers_used, heads, mlp, vocab, positions;
    sd_act act;
    int pad;
} text_want;

static void check_unet(const char *model, const sd_unet_config *u, const unet_want *w)
{
    EQ("unet.in_channels", u->in_channels, w->in);
    EQ("unet.out_channels", u->out_channels, w->out);
    EQ("unet.model_channels", u->model_channels, w->mc);
    check_ints(model, "unet.channel_mult", u->channel_mult, u->n_levels, w->mult, w->n_levels);
    EQ("unet.num_res_blocks", u->num_res_blocks, w->res);
    check_ints(model, "unet.attn", u->attn, u->n_levels, w->attn, w->n_levels);
    EQ("unet.mid_attn", u->mid_attn, w->mid_attn);
    EQ("unet.transformer_depth", u->transformer_depth, w->depth);
    EQ("unet.num_heads", u->num_heads, w->heads);
    EQ("unet.head_dim", u->head_dim, w->head_dim);
    EQ("unet.context_dim", u->context_dim, w->context);
    EQ("unet.linear_proj", u->linear_proj, w->linear);
    EQ("unet.time_embed_dim", u->time_embed_dim, w->ted);
    EQ("unet.groups", u->groups, w->groups);
    for (int l = SD_MAX_LEVELS > u->n_levels ? u->n_levels : SD_MAX_LEVELS; l < SD_MAX_LEVELS; l++)
        CHECK(u->channel_mult[l] == 0 && u->attn[l] == 0, "%s: unet level %d beyond n_levels is set", model, l);
}

static void check_vae(const char *model, const sd_vae_config *v, const vae_want *w)
{
    EQ("vae.in_channels", v->in_channels, w->in);
    EQ("vae.z_channels", v->z_channels, w->z);
    EQ("vae.ch", v->ch, w->ch);
    check_ints(model, "vae.ch_mult", v->ch_mult, v->n_levels, w->mult, w->n_levels);
    EQ("vae.num_res_blocks", v->num_res_blocks, w->res);
    EQ("vae.groups", v->groups, w->groups);
    EQ("vae.has_encoder", v->has_encoder, w->enc);
    EQ("vae.has_decoder", v->has_decoder, w->dec);
    CHECK(v->scale_factor == w->scale, "%s: vae.scale_factor %.9g, want %.9g", model, v->scale_factor, w->scale);
}

static void check_text(const char *model, const sd_text_config *t, const text_want *w)
{
    EQ("text.kind", t->kind, w->kind);
    EQ("text.width", t->width, w->width);
    EQ("text.layers", t->layers, w->layers);
    EQ("text.layers_used", t->layers_used, w->layers_used);
    EQ("text.heads", t->heads, w->heads);
    EQ("text.mlp", t->mlp, w->mlp);
    EQ("text.vocab", t->vocab, w->vocab);
    EQ("text.positions", t->positions, w->positions);
    EQ("text.act", t->act, w->act);
    EQ("text.pad_id", t->pad_id, w->pad);
}

/* Manifest (name, dtype, shape) list as a cJSON array; NULL if unreadable. */
static cJSON *manifest(const char *rel, cJSON **root)
{
    FILE *f = fopen(sd_test_path(rel), "rb");
    *root = NULL;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc(1, (size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    *root = got == (size_t)n ? cJSON_Parse(b) : NULL;
    free(b);
    return cJSON_GetObjectItem(*root, "tensors");
}

static int64_t manifest_params(const cJSON *list, const char *prefix)
{
    int64_t total = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        if (strncmp(cJSON_GetArrayItem(e, 0)->valuestring, prefix, strlen(prefix))) continue;
        int64_t n = 1;
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetArrayItem(e, 2)) n *= (int64_t)d->valuedouble;
        total += n;
    }
    return total;
}

static void test_tiny_sd1(void)
{
    const char *model = "tiny-sd1";
    sd_model m;
    sd_err err = {0};
    int rc = sd_model_open(&m, sd_test_path("golden/models/tiny-sd1.safetensors"), &err);
    CHECK(rc == 0, "tiny-sd1 opens: %s", err.msg);
    if (rc) return;
    EQ("family", m.family, SD_FAMILY_SD1);
    EQ("prediction", m.prediction, SD_PRED_EPS);
    EQ("is_folder", m.is_folder, 0);
    CHECK(m.has_unet && m.has_vae && m.has_text, "tiny-sd1: all three components");
    unet_want u = {4, 4, 32, 2, {1, 2}, 2, {1, 0}, 1, 1, 8, 0, 64, 0, 128, 32};
    check_unet(model, &m.unet, &u);
    vae_want v = {3, 4, 32, 4, {1, 2, 2, 2}, 1, 32, 1, 1, 0.18215f};
    check_vae(model, &m.vae, &v);
    text_want t = {SD_TEXT_CLIP_HF, 64, 2, 2, 1, 256, 49408, 77, SD_ACT_QUICK_GELU, 49407};
    check_text(model, &m.text[0], &t);
    CHECK(sd_unet_heads(&m.unet, 32) == 8 && sd_unet_heads(&m.unet, 64) == 8, "tiny-sd1: 8 heads at every width");
    /* scheduler: the v1-inference.yaml defaults */
    EQ("sched.num_train_timesteps", m.sched.num_train_timesteps, 1000);
    CHECK(m.sched.beta_start == 0.00085 && m.sched.beta_end == 0.012 && !strcmp(m.sched.beta_schedule, "scaled_linear") &&
              m.sched.steps_offset == 1 && !m.sched.from_file,
          "tiny-sd1: default scheduler config");
    /* parameter counts = the manifest's */
    cJSON *root;
    cJSON *list = manifest("golden/manifests/tiny-sd1.json", &root);
    CHECK(list != NULL, "tiny-sd1 manifest readable");
    if (list) {
        static const char *const pre[] = {SD_PREFIX_UNET, SD_PREFIX_VAE, "cond_stage_model."};
        for (int i = 0; i < 3; i++)
            CHECK(sd_model_param_count(&m, pre[i]) == manifest_params(list, pre[i]), "tiny-sd1: %s parameters %lld, manifest %lld",
                  pre[i], (long long)sd_model_param_count(&m, pre[i]), (long long)manifest_params(list, pre[i]));
        EQ("n_weights", m.n_weights, cJSON_GetArraySize(list));
    }
    cJSON_Delete(root);
    sd_model_close(&m);
}

static void test_tiny_sd2(void)
{
    const char *model = "tiny-sd2";
    sd_model m;
    sd_err err = {0};
    int rc = sd_model_open(&m, sd_test_path("golden/models/tiny-sd2.safetensors"), &err);
    CHECK(rc == 0, "tiny-sd2 opens: %s", err.msg);
    if (rc) return;
    EQ("family", m.family, SD_FAMILY_SD2);
    EQ("prediction", m.prediction, SD_PRED_V);
    CHECK(m.has_unet && m.has_vae && m.has_text, "tiny-sd2: all three components");
    unet_want u = {4, 4, 64, 2, {1, 2}, 2, {1, 0}, 1, 1, 0, 64, 128, 1, 256, 32};
    check_unet(model, &m.unet, &u);
    CHECK(sd_unet_heads(&m.unet, 64) == 1 && sd_unet_heads(&m.unet, 128) == 2,
          "tiny-sd2: 1 head at 64 channels, 2 in the 128-wide middle block");
    vae_want v = {3, 4, 32, 4, {1, 2, 2, 2}, 1, 32, 1, 1, 0.18215f};
    check_vae(model, &m.vae, &v);
    text_want t = {SD_TEXT_OPENCLIP, 128, 3, 2, 2, 512, 49408, 77, SD_ACT_GELU, 0};
    check_text(model, &m.text[0], &t);
    CHECK(sd_model_find(&m, "cond_stage_model.model.transformer.resblocks.2.attn.in_proj_weight") != NULL,
          "tiny-sd2: the unused last block is kept (and ignored)");
    sd_model_close(&m);
}

/* Tensors say where their data lives (tensor.h, sd_memory): an aligned F32 weight is a view into the
 * read-only mapping, an F16 weight converted into an arena scope is host memory ops may write. */
static void test_weight_memory(void)
{
    sd_model m1, m2;
    sd_err err = {0};
    sd_arena a;
    sd_arena_init(&a, 1 << 20, 0);
    CHECK(sd_model_open(&m1, sd_test_path("golden/models/tiny-sd1.safetensors"), &err) == 0, "tiny-sd1: %s", err.msg);
    CHECK(sd_model_open(&m2, sd_test_path("golden/models/tiny-sd2.safetensors"), &err) == 0, "tiny-sd2: %s", err.msg);
    sd_tensor w1, w2;
    const char *name = "model.diffusion_model.input_blocks.0.0.weight";
    CHECK(sd_model_weight(&m1, &a, name, &w1, &err) == 0, "tiny-sd1 %s: %s", name, err.msg);
    CHECK(w1.mem == SD_MEM_MAPPED && !sd_tensor_writable(w1), "tiny-sd1 (F32, aligned) %s: mem %d, want mapped", name,
          (int)w1.mem);
    int64_t flat[1] = {sd_numel(w1)};
    CHECK(sd_tensor_reshape(w1, 1, flat).mem == SD_MEM_MAPPED, "a view of a mapped weight is mapped too");
    CHECK(sd_model_weight(&m2, &a, name, &w2, &err) == 0, "tiny-sd2 %s: %s", name, err.msg);
    CHECK(w2.mem == SD_MEM_HOST && sd_tensor_writable(w2), "tiny-sd2 (F16, converted) %s: mem %d, want host", name,
          (int)w2.mem);
    CHECK(sd_tensor_4d(&a, 1, 1, 2, 2).mem == SD_MEM_HOST, "an arena tensor is host memory");
    sd_arena_free(&a);
    sd_model_close(&m1);
    sd_model_close(&m2);
}

static void test_tiny_cfg(void)
{
    const char *model = "tiny-cfg";
    sd_model m;
    sd_err err = {0};
    int rc = sd_model_open(&m, sd_test_path("golden/models/tiny-cfg"), &err);
    CHECK(rc == 0, "tiny-cfg opens: %s", err.msg);
    if (rc) return;
    EQ("family", m.family, SD_FAMILY_SD1);
    EQ("prediction", m.prediction, SD_PRED_EPS);
    EQ("is_folder", m.is_folder, 1);
    EQ("n_files", m.n_files, 3);
    CHECK(m.tokenizer_dir && strstr(m.tokenizer_dir, "tiny-cfg/tokenizer"), "tiny-cfg: tokenizer folder found (%s)",
          m.tokenizer_dir ? m.tokenizer_dir : "none");
    unet_want u = {4, 4, 32, 2, {1, 2}, 2, {1, 0}, 1, 1, 8, 0, 32, 0, 128, 32};
    check_unet(model, &m.unet, &u);
    vae_want v = {3, 4, 32, 4, {1, 2, 2, 2}, 2, 32, 1, 1, 0.18215f};
    check_vae(model, &m.vae, &v);
    /* text heads are 8 wide here: only the config can say so */
    text_want t = {SD_TEXT_CLIP_HF, 32, 5, 5, 4, 37, 49408, 77, SD_ACT_QUICK_GELU, 49407};
    check_text(model, &m.text[0], &t);
    EQ("sched.num_train_timesteps", m.sched.num_train_timesteps, 1000);
    CHECK(m.sched.beta_start == 0.00085 && m.sched.beta_end == 0.012 && !strcmp(m.sched.beta_schedule, "scaled_linear") &&
              m.sched.steps_offset == 1 && m.sched.from_file && m.sched.timestep_spacing[0] == 0,
          "tiny-cfg: scheduler config read (beta %g..%g %s offset %d, spacing \"%s\")", m.sched.beta_start,
          m.sched.beta_end, m.sched.beta_schedule, m.sched.steps_offset, m.sched.timestep_spacing);
    /* parameter counts = the three manifests' */
    static const struct {
        const char *manifest, *prefix;
    } parts[] = {{"golden/manifests/tiny-cfg-unet.json", SD_PREFIX_UNET},
                 {"golden/manifests/tiny-cfg-vae.json", SD_PREFIX_VAE},
                 {"golden/manifests/tiny-cfg-text.json", "cond_stage_model."}};
    for (int i = 0; i < 3; i++) {
        cJSON *root;
        cJSON *list = manifest(parts[i].manifest, &root);
        int64_t want = manifest_params(list, "");
        CHECK(list && sd_model_param_count(&m, parts[i].prefix) == want, "tiny-cfg: %s parameters %lld, manifest %lld",
              parts[i].prefix, (long long)sd_model_param_count(&m, parts[i].prefix), (long long)want);
        cJSON_Delete(root);
    }
    sd_model_close(&m);
}

static int has_prefix(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

/* tiny-cfg's translated U-Net names = tiny-sd1's U-Net names; shapes equal except the context width. */
static void test_unet_names(void)
{
    sd_model a, b;
    sd_err err = {0};
    if (sd_model_open(&a, sd_test_path("golden/models/tiny-cfg"), &err)) {
        CHECK(0, "tiny-cfg: %s", err.msg);
        return;
    }
    if (sd_model_open(&b, sd_test_path("golden/models/tiny-sd1.safetensors"), &err)) {
        CHECK(0, "tiny-sd1: %s", err.msg);
        sd_model_close(&a);
        return;
    }
    int na = 0, nb = 0, missing = 0, extra = 0, shape_diff = 0, other_diff = 0;
    for (int i = 0; i < a.n_weights; i++) {
        const sd_weight_ref *w = &a.weights[i];
        if (!has_prefix(w->name, SD_PREFIX_UNET)) continue;
        na++;
        const sd_weight_ref *o = sd_model_find(&b, w->name);
        if (!o) {
            if (extra++ < 5) fprintf(stderr, "  tiny-cfg U-Net name not in tiny-sd1: %s\n", w->name);
            continue;
        }
        int same = o->ndim == w->ndim;
        for (int d = 0; same && d < w->ndim; d++) same = o->shape[d] == w->shape[d];
        if (!same) {
            /* context width: 32 in tiny-cfg, 64 in tiny-sd1 */
            int ctx = (strstr(w->name, "attn2.to_k.weight") || strstr(w->name, "attn2.to_v.weight")) && w->ndim == 2 &&
                      o->ndim == 2 && w->shape[0] == o->shape[0] && w->shape[1] == 32 && o->shape[1] == 64;
            if (ctx) shape_diff++;
            else if (other_diff++ < 5) fprintf(stderr, "  shape differs: %s\n", w->name);
        }
    }
    for (int i = 0; i < b.n_weights; i++) {
        const sd_weight_ref *w = &b.weights[i];
        if (!has_prefix(w->name, SD_PREFIX_UNET)) continue;
        nb++;
        if (!sd_model_find(&a, w->name) && missing++ < 5) fprintf(stderr, "  tiny-sd1 U-Net name missing in tiny-cfg: %s\n", w->name);
    }
    CHECK(na == nb && na == 304, "U-Net names: tiny-cfg %d, tiny-sd1 %d (want 304 each)", na, nb);
    CHECK(missing == 0 && extra == 0, "U-Net name sets differ: %d missing, %d extra", missing, extra);
    CHECK(other_diff == 0, "%d U-Net shapes differ beyond the context width", other_diff);
    /* transformers: 2 in input level 0, 3 in output level 0, 1 in the middle block */
    CHECK(shape_diff == 12, "context-width shape differences: %d (want 6 transformers × to_k, to_v)", shape_diff);
    printf("ok   tiny-cfg U-Net translates to tiny-sd1's %d LDM names\n", nb);
    sd_model_close(&b);

    /* VAE: SD 1.5's names (same block structure: 4 levels, 2 res blocks) less its extra shortcuts */
    cJSON *root;
    cJSON *list = manifest("golden/manifests/sd15.json", &root);
    CHECK(list != NULL, "sd15 manifest readable");
    int nv = 0, nv15 = 0, vmiss = 0, vextra = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        const char *name = cJSON_GetArrayItem(e, 0)->valuestring;
        if (!has_prefix(name, SD_PREFIX_VAE)) continue;
        /* SD 1.5 (128,256,512,512) has shortcuts at encoder.down.1/2 and decoder.up.0/1;
         * tiny-cfg (32,64,64,64) only at encoder.down.1 and decoder.up.0 */
        if (strstr(name, "encoder.down.2.block.0.nin_shortcut") || strstr(name, "decoder.up.1.block.0.nin_shortcut"))
            continue;
        nv15++;
        if (!sd_model_find(&a, name) && vmiss++ < 5) fprintf(stderr, "  sd15 VAE name missing in tiny-cfg: %s\n", name);
    }
    for (int i = 0; i < a.n_weights; i++) {
        const char *name = a.weights[i].name;
        if (!has_prefix(name, SD_PREFIX_VAE)) continue;
        nv++;
        int found = 0;
        cJSON_ArrayForEach(e, list) if (!strcmp(cJSON_GetArrayItem(e, 0)->valuestring, name)) found = 1;
        if (!found && vextra++ < 5) fprintf(stderr, "  tiny-cfg VAE name not in sd15: %s\n", name);
    }
    CHECK(nv == 244 && nv15 == 244 && vmiss == 0 && vextra == 0,
          "VAE names: tiny-cfg %d, sd15 %d (want 244), %d missing, %d extra", nv, nv15, vmiss, vextra);
    /* the mid-block attention projections become 1×1 convolutions, as LDM stores them */
    const sd_weight_ref *q = sd_model_find(&a, "first_stage_model.encoder.mid.attn_1.proj_out.weight");
    CHECK(q && q->ndim == 4 && q->shape[2] == 1 && q->shape[3] == 1, "VAE proj_out viewed as [C,C,1,1]");
    /* text: transformers names under cond_stage_model.transformer. (as sd15's, for the 5 layers) */
    int nt = 0, tmiss = 0;
    for (int i = 0; i < a.n_weights; i++) {
        const char *name = a.weights[i].name;
        if (!has_prefix(name, "cond_stage_model.")) continue;
        nt++;
        int found = 0;
        cJSON_ArrayForEach(e, list) if (!strcmp(cJSON_GetArrayItem(e, 0)->valuestring, name)) found = 1;
        if (!found && tmiss++ < 5) fprintf(stderr, "  tiny-cfg text name not in sd15: %s\n", name);
    }
    CHECK(nt == 84 && tmiss == 0, "text names: %d (want 84), %d not SD 1.5 names", nt, tmiss);
    cJSON_Delete(root);
    sd_model_close(&a);
}

int main(void)
{
    sd_test_require_shared();
    test_tiny_sd1();
    test_tiny_sd2();
    test_tiny_cfg();
    test_unet_names();
    test_weight_memory();
    TEST_MAIN_END();
}
