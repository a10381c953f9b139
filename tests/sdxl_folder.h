/* sdxl_folder.h — write a diffusers SDXL folder from an SGM single-file SDXL checkpoint, for the tests that
 * check that both layouts of one model give the same results.
 *
 * The renaming runs forward here (SGM -> diffusers, as diffusers' convert_original_stable_diffusion_to_diffusers
 * names things), independently of the backward map in src/diffusers.c, so a mistake in either shows up as a
 * mismatch. Tensor bytes are copied unchanged (any dtype), except that the second text tower is rewritten
 * the way transformers stores an OpenCLIP tower (CLIPTextModelWithProjection): the packed in_proj rows split
 * into q/k/v, and text_projection [width, proj] transposed into a Linear weight [proj, width].
 *
 * The config.json files describe the golden tiny SDXL (golden README §6.2); sizes the writer can read
 * from the shapes are taken from them. */
#ifndef SDGEN_TEST_SDXL_FOLDER_H
#define SDGEN_TEST_SDXL_FOLDER_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sdgen/safetensors.h"

typedef struct sdxf_tensor {
    char name[256];
    const char *dtype;
    int ndim;
    int64_t shape[4];
    const uint8_t *src; /* bytes in the source mapping, or NULL: owned */
    uint8_t *owned;
    size_t nbytes;
} sdxf_tensor;

typedef struct sdxf_part {
    sdxf_tensor *t;
    int n, cap;
} sdxf_part;

static inline sdxf_tensor *sdxf_add(sdxf_part *p, const char *name, const sd_st_tensor *st, const uint8_t *bytes)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 256;
        p->t = realloc(p->t, (size_t)p->cap * sizeof *p->t);
    }
    sdxf_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = sd_dtype_name(st->dtype);
    t->ndim = st->ndim;
    for (int d = 0; d < st->ndim; d++) t->shape[d] = st->shape[d];
    t->src = bytes;
    t->nbytes = (size_t)(st->end - st->begin);
    return t;
}

/* Write part p as a .safetensors file (header entries in the order added). */
static inline int sdxf_write(const sdxf_part *p, const char *path)
{
    cJSON *h = cJSON_CreateObject();
    uint64_t off = 0;
    for (int i = 0; i < p->n; i++) {
        const sdxf_tensor *t = &p->t[i];
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", t->dtype);
        cJSON *s = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(s, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + t->nbytes)));
        off += t->nbytes;
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    FILE *f = fopen(path, "wb");
    if (!f || !js) {
        free(js);
        if (f) fclose(f);
        return -1;
    }
    uint64_t n = strlen(js);
    uint8_t len[8];
    for (int b = 0; b < 8; b++) len[b] = (uint8_t)(n >> (8 * b));
    int ok = fwrite(len, 1, 8, f) == 8 && fwrite(js, 1, n, f) == n;
    for (int i = 0; ok && i < p->n; i++) {
        const sdxf_tensor *t = &p->t[i];
        ok = fwrite(t->src ? t->src : t->owned, 1, t->nbytes, f) == t->nbytes;
    }
    free(js);
    return fclose(f) == 0 && ok ? 0 : -1;
}

static inline void sdxf_free(sdxf_part *p)
{
    for (int i = 0; i < p->n; i++) free(p->t[i].owned);
    free(p->t);
}

/* Replace the first `from` in s by `to`. */
static inline void sdxf_swap(char *s, size_t cap, const char *from, const char *to)
{
    char *q = strstr(s, from);
    if (!q) return;
    char tail[512];
    snprintf(tail, sizeof tail, "%s", q + strlen(from));
    snprintf(q, cap - (size_t)(q - s), "%s%s", to, tail);
}

static inline void sdxf_resnet(char *s, size_t cap)
{
    static const char *const m[][2] = {{"in_layers.0.", "norm1."},          {"in_layers.2.", "conv1."},
                                       {"emb_layers.1.", "time_emb_proj."}, {"out_layers.0.", "norm2."},
                                       {"out_layers.3.", "conv2."},         {"skip_connection.", "conv_shortcut."}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (strstr(s, m[i][0])) {
            sdxf_swap(s, cap, m[i][0], m[i][1]);
            return;
        }
}

/* U-Net name (after model.diffusion_model.) -> diffusers; R res blocks per level. 0, or -1 if unknown. */
static inline int sdxf_unet_name(const char *n, int R, char *out, size_t cap)
{
    int k, c, len = 0;
    static const char *const fixed[][2] = {{"input_blocks.0.0.", "conv_in."},       {"time_embed.0.", "time_embedding.linear_1."},
                                           {"time_embed.2.", "time_embedding.linear_2."}, {"label_emb.0.0.", "add_embedding.linear_1."},
                                           {"label_emb.0.2.", "add_embedding.linear_2."}, {"out.0.", "conv_norm_out."},
                                           {"out.2.", "conv_out."}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!strncmp(n, fixed[i][0], strlen(fixed[i][0]))) {
            snprintf(out, cap, "%s%s", fixed[i][1], n + strlen(fixed[i][0]));
            return 0;
        }
    if (sscanf(n, "input_blocks.%d.%d.%n", &k, &c, &len) == 2 && len > 0) {
        const int lv = (k - 1) / (R + 1), j = (k - 1) % (R + 1);
        if (j == R) snprintf(out, cap, "down_blocks.%d.downsamplers.0.conv.%s", lv, n + len + 3); /* "op." */
        else if (c == 0) snprintf(out, cap, "down_blocks.%d.resnets.%d.%s", lv, j, n + len);
        else snprintf(out, cap, "down_blocks.%d.attentions.%d.%s", lv, j, n + len);
        if (j < R && c == 0) sdxf_resnet(out, cap);
        return 0;
    }
    if (sscanf(n, "middle_block.%d.%n", &c, &len) == 1 && len > 0) {
        if (c == 1) snprintf(out, cap, "mid_block.attentions.0.%s", n + len);
        else snprintf(out, cap, "mid_block.resnets.%d.%s", c / 2, n + len);
        if (c != 1) sdxf_resnet(out, cap);
        return 0;
    }
    if (sscanf(n, "output_blocks.%d.%d.%n", &k, &c, &len) == 2 && len > 0) {
        const int lv = k / (R + 1), j = k % (R + 1);
        if (!strncmp(n + len, "conv.", 5)) snprintf(out, cap, "up_blocks.%d.upsamplers.0.%s", lv, n + len);
        else if (c == 0) snprintf(out, cap, "up_blocks.%d.resnets.%d.%s", lv, j, n + len);
        else snprintf(out, cap, "up_blocks.%d.attentions.%d.%s", lv, j, n + len);
        if (c == 0) sdxf_resnet(out, cap);
        return 0;
    }
    return -1;
}

/* VAE name (after first_stage_model.) -> diffusers; L levels. *flat: a 1×1 conv stored as Linear there. */
static inline int sdxf_vae_name(const char *n, int L, char *out, size_t cap, int *flat)
{
    int i, j, len = 0;
    *flat = 0;
    const char *coder = !strncmp(n, "encoder.", 8) ? "encoder" : !strncmp(n, "decoder.", 8) ? "decoder" : NULL;
    if (!coder) {
        snprintf(out, cap, "%s", n); /* quant_conv, post_quant_conv */
        return 0;
    }
    const char *r = n + 8;
    if (sscanf(r, "down.%d.block.%d.%n", &i, &j, &len) == 2 && len > 0)
        snprintf(out, cap, "%s.down_blocks.%d.resnets.%d.%s", coder, i, j, r + len);
    else if (sscanf(r, "down.%d.downsample.%n", &i, &len) == 1 && len > 0)
        snprintf(out, cap, "%s.down_blocks.%d.downsamplers.0.%s", coder, i, r + len);
    else if (sscanf(r, "up.%d.block.%d.%n", &i, &j, &len) == 2 && len > 0)
        snprintf(out, cap, "%s.up_blocks.%d.resnets.%d.%s", coder, L - 1 - i, j, r + len);
    else if (sscanf(r, "up.%d.upsample.%n", &i, &len) == 1 && len > 0)
        snprintf(out, cap, "%s.up_blocks.%d.upsamplers.0.%s", coder, L - 1 - i, r + len);
    else if (sscanf(r, "mid.block_%d.%n", &i, &len) == 1 && len > 0)
        snprintf(out, cap, "%s.mid_block.resnets.%d.%s", coder, i - 1, r + len);
    else if (!strncmp(r, "mid.attn_1.", 11)) {
        static const char *const m[][2] = {{"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."},
                                           {"v.", "to_v."},          {"proj_out.", "to_out.0."}};
        const char *a = r + 11;
        for (size_t q = 0; q < sizeof m / sizeof m[0]; q++)
            if (!strncmp(a, m[q][0], strlen(m[q][0]))) {
                snprintf(out, cap, "%s.mid_block.attentions.0.%s%s", coder, m[q][1], a + strlen(m[q][0]));
                *flat = q > 0 && strstr(a, ".weight") != NULL;
                return 0;
            }
        return -1;
    } else if (!strncmp(r, "norm_out.", 9))
        snprintf(out, cap, "%s.conv_norm_out.%s", coder, r + 9);
    else
        snprintf(out, cap, "%s", n); /* conv_in, conv_out */
    sdxf_swap(out, cap, "nin_shortcut", "conv_shortcut");
    return 0;
}

/* OpenCLIP tower name (after conditioner.embedders.1.model.) -> transformers; 1 = handled specially
 * (in_proj, text_projection), -1 = dropped (logit_scale). */
static inline int sdxf_openclip_name(const char *n, char *out, size_t cap)
{
    int l, len = 0;
    if (!strcmp(n, "token_embedding.weight")) snprintf(out, cap, "text_model.embeddings.token_embedding.weight");
    else if (!strcmp(n, "positional_embedding")) snprintf(out, cap, "text_model.embeddings.position_embedding.weight");
    else if (!strncmp(n, "ln_final.", 9)) snprintf(out, cap, "text_model.final_layer_norm.%s", n + 9);
    else if (!strcmp(n, "text_projection") || strstr(n, "attn.in_proj_")) return 1;
    else if (sscanf(n, "transformer.resblocks.%d.%n", &l, &len) == 1 && len > 0) {
        static const char *const m[][2] = {{"ln_1.", "layer_norm1."},     {"ln_2.", "layer_norm2."},
                                           {"attn.out_proj.", "self_attn.out_proj."},
                                           {"mlp.c_fc.", "mlp.fc1."},     {"mlp.c_proj.", "mlp.fc2."}};
        for (size_t q = 0; q < sizeof m / sizeof m[0]; q++)
            if (!strncmp(n + len, m[q][0], strlen(m[q][0]))) {
                snprintf(out, cap, "text_model.encoder.layers.%d.%s%s", l, m[q][1], n + len + strlen(m[q][0]));
                return 0;
            }
        return -1;
    } else
        return -1;
    return 0;
}

static inline int sdxf_put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static inline int sdxf_copy(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    int ok = a && b;
    char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, a)) > 0) ok = fwrite(buf, 1, n, b) == n;
    if (a) fclose(a);
    if (b && fclose(b) != 0) ok = 0;
    return ok ? 0 : -1;
}

/* The config files of the tiny SDXL as diffusers 0.25.1 / transformers 4.33 write them (the keys sdgen
 * reads, plus the class names). */
static const char sdxf_unet_cfg[] =
    "{\"_class_name\": \"UNet2DConditionModel\", \"addition_embed_type\": \"text_time\", \"addition_time_embed_dim\": 32,\n"
    " \"attention_head_dim\": [1, 1, 2], \"block_out_channels\": [64, 64, 128], \"cross_attention_dim\": 192,\n"
    " \"down_block_types\": [\"DownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\"], \"in_channels\": 4,\n"
    " \"layers_per_block\": 2, \"mid_block_type\": \"UNetMidBlock2DCrossAttn\", \"norm_num_groups\": 32,\n"
    " \"num_attention_heads\": null, \"out_channels\": 4, \"projection_class_embeddings_input_dim\": 288,\n"
    " \"reverse_transformer_layers_per_block\": null, \"transformer_layers_per_block\": [1, 1, 2],\n"
    " \"up_block_types\": [\"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"UpBlock2D\"], \"use_linear_projection\": true}\n";
static const char sdxf_vae_cfg[] =
    "{\"_class_name\": \"AutoencoderKL\", \"block_out_channels\": [32, 64, 64, 64], \"force_upcast\": true,\n"
    " \"in_channels\": 3, \"latent_channels\": 4, \"layers_per_block\": 1, \"norm_num_groups\": 32,\n"
    " \"out_channels\": 3, \"scaling_factor\": 0.13025}\n";
static const char sdxf_te1_cfg[] =
    "{\"architectures\": [\"CLIPTextModel\"], \"hidden_act\": \"quick_gelu\", \"hidden_size\": 64,\n"
    " \"intermediate_size\": 256, \"max_position_embeddings\": 77, \"num_attention_heads\": 1, \"num_hidden_layers\": 3,\n"
    " \"projection_dim\": 768, \"vocab_size\": 49408}\n";
static const char sdxf_te2_cfg[] =
    "{\"architectures\": [\"CLIPTextModelWithProjection\"], \"hidden_act\": \"gelu\", \"hidden_size\": 128,\n"
    " \"intermediate_size\": 512, \"max_position_embeddings\": 77, \"num_attention_heads\": 2, \"num_hidden_layers\": 3,\n"
    " \"projection_dim\": 96, \"vocab_size\": 49408}\n";
static const char sdxf_sched_cfg[] =
    "{\"_class_name\": \"EulerDiscreteScheduler\", \"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\",\n"
    " \"beta_start\": 0.00085, \"interpolation_type\": \"linear\", \"num_train_timesteps\": 1000,\n"
    " \"prediction_type\": \"epsilon\", \"sample_max_value\": 1.0, \"set_alpha_to_one\": false, \"skip_prk_steps\": true,\n"
    " \"steps_offset\": 1, \"timestep_spacing\": \"leading\", \"trained_betas\": null, \"use_karras_sigmas\": false}\n";
static const char sdxf_index[] =
    "{\"_class_name\": \"StableDiffusionXLPipeline\", \"_diffusers_version\": \"0.25.1\",\n"
    " \"force_zeros_for_empty_prompt\": true, \"scheduler\": [\"diffusers\", \"EulerDiscreteScheduler\"],\n"
    " \"text_encoder\": [\"transformers\", \"CLIPTextModel\"], \"text_encoder_2\": [\"transformers\", "
    "\"CLIPTextModelWithProjection\"],\n"
    " \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], \"tokenizer_2\": [\"transformers\", \"CLIPTokenizer\"],\n"
    " \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], \"vae\": [\"diffusers\", \"AutoencoderKL\"]}\n";

/* Write the folder `dir` (created, with its sub-folders) from the single file `src`; tok_src: a tokenizer
 * folder whose vocab.json and merges.txt are copied into tokenizer/ and tokenizer_2/. Returns 0, or -1 with
 * a message in why. */
static inline int sdxf_make(const char *src, const char *tok_src, const char *dir, char *why, size_t why_cap)
{
    sd_safetensors st;
    sd_err e = {0};
    if (sd_st_open(&st, src, &e)) {
        snprintf(why, why_cap, "%s", e.msg);
        return -1;
    }
    sdxf_part unet = {0}, vae = {0}, te1 = {0}, te2 = {0};
    int rc = 0;
    char name[512];
    const char *U = "model.diffusion_model.", *V = "first_stage_model.",
               *T1 = "conditioner.embedders.0.transformer.", *T2 = "conditioner.embedders.1.model.";
    for (int i = 0; i < st.n_tensors && rc == 0; i++) {
        const sd_st_tensor *t = &st.tensors[i];
        const uint8_t *b = sd_st_data(&st, t);
        const size_t es = sd_dtype_size(t->dtype);
        if (!strncmp(t->name, U, strlen(U))) {
            if (sdxf_unet_name(t->name + strlen(U), 2, name, sizeof name)) rc = -1;
            else sdxf_add(&unet, name, t, b);
        } else if (!strncmp(t->name, V, strlen(V))) {
            int flat = 0;
            if (sdxf_vae_name(t->name + strlen(V), 4, name, sizeof name, &flat)) rc = -1;
            else {
                sdxf_tensor *o = sdxf_add(&vae, name, t, b);
                if (flat) o->ndim = 2; /* [C, C, 1, 1] -> [C, C] */
            }
        } else if (!strncmp(t->name, T1, strlen(T1))) {
            sdxf_add(&te1, t->name + strlen(T1), t, b);
        } else if (!strncmp(t->name, T2, strlen(T2))) {
            const char *n = t->name + strlen(T2);
            int k = sdxf_openclip_name(n, name, sizeof name);
            if (k == 0) sdxf_add(&te2, name, t, b);
            else if (k == 1 && !strcmp(n, "text_projection")) {
                /* [W, P] -> Linear weight [P, W] */
                sdxf_tensor *o = sdxf_add(&te2, "text_projection.weight", t, NULL);
                const int64_t W = t->shape[0], P = t->shape[1];
                o->shape[0] = P;
                o->shape[1] = W;
                o->owned = malloc(o->nbytes);
                for (int64_t r = 0; r < W; r++)
                    for (int64_t c = 0; c < P; c++) memcpy(o->owned + (c * W + r) * es, b + (r * P + c) * es, es);
            } else if (k == 1) {
                /* in_proj_weight [3W, W] / in_proj_bias [3W]: rows q, k, v */
                int l = -1;
                sscanf(n, "transformer.resblocks.%d.", &l);
                const int bias = strstr(n, "in_proj_bias") != NULL;
                static const char *const qkv[] = {"q_proj", "k_proj", "v_proj"};
                for (int q = 0; q < 3; q++) {
                    snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.%s.%s", l, qkv[q],
                             bias ? "bias" : "weight");
                    sdxf_tensor *o = sdxf_add(&te2, name, t, NULL);
                    o->shape[0] = t->shape[0] / 3;
                    o->nbytes /= 3;
                    o->src = b + (size_t)q * o->nbytes;
                }
            }
        }
        if (rc) snprintf(why, why_cap, "%s: no diffusers name for tensor %s", src, t->name);
    }
    char p[4096];
    static const char *const subs[] = {"", "/unet", "/vae", "/text_encoder", "/text_encoder_2", "/tokenizer",
                                       "/tokenizer_2", "/scheduler"};
    for (size_t s = 0; rc == 0 && s < sizeof subs / sizeof subs[0]; s++) {
        snprintf(p, sizeof p, "%s%s", dir, subs[s]);
        mkdir(p, 0777);
    }
    const struct {
        const char *rel;
        const sdxf_part *part; /* a weights file, or */
        const char *text;      /* a config file, or */
        const char *copy;      /* a file of tok_src */
    } files[] = {
        {"unet/diffusion_pytorch_model.safetensors", &unet, NULL, NULL},
        {"vae/diffusion_pytorch_model.safetensors", &vae, NULL, NULL},
        {"text_encoder/model.safetensors", &te1, NULL, NULL},
        {"text_encoder_2/model.safetensors", &te2, NULL, NULL},
        {"unet/config.json", NULL, sdxf_unet_cfg, NULL},
        {"vae/config.json", NULL, sdxf_vae_cfg, NULL},
        {"text_encoder/config.json", NULL, sdxf_te1_cfg, NULL},
        {"text_encoder_2/config.json", NULL, sdxf_te2_cfg, NULL},
        {"scheduler/scheduler_config.json", NULL, sdxf_sched_cfg, NULL},
        {"model_index.json", NULL, sdxf_index, NULL},
        {"tokenizer/special_tokens_map.json", NULL, "{\"pad_token\": \"<|endoftext|>\"}\n", NULL},
        {"tokenizer_2/special_tokens_map.json", NULL, "{\"pad_token\": \"!\"}\n", NULL},
        {"tokenizer/vocab.json", NULL, NULL, "vocab.json"},
        {"tokenizer/merges.txt", NULL, NULL, "merges.txt"},
        {"tokenizer_2/vocab.json", NULL, NULL, "vocab.json"},
        {"tokenizer_2/merges.txt", NULL, NULL, "merges.txt"},
    };
    for (size_t f = 0; rc == 0 && f < sizeof files / sizeof files[0]; f++) {
        char from[4096];
        snprintf(p, sizeof p, "%s/%s", dir, files[f].rel);
        snprintf(from, sizeof from, "%s/%s", tok_src, files[f].copy ? files[f].copy : "");
        rc = files[f].part ? sdxf_write(files[f].part, p) : files[f].text ? sdxf_put(p, files[f].text) : sdxf_copy(from, p);
        if (rc) snprintf(why, why_cap, "cannot write %s", p);
    }
    sdxf_free(&unet);
    sdxf_free(&vae);
    sdxf_free(&te1);
    sdxf_free(&te2);
    sd_st_close(&st);
    return rc;
}

#endif
