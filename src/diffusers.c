/* diffusers.c — read a diffusers folder: translate its tensor names to the LDM layout and
 * its config.json files to sdgen's architecture structs.
 *
 * The name correspondence is the one diffusers' own conversion script
 * (scripts/convert_original_stable_diffusion_to_diffusers.py) applies, run backwards:
 *   U-Net: down_blocks.i.{resnets,attentions}.j -> input_blocks.(1 + i·(R+1) + j).{0,1},
 *          down_blocks.i.downsamplers.0.conv -> input_blocks.(1 + i·(R+1) + R).0.op,
 *          up_blocks.i.{resnets,attentions}.j -> output_blocks.(i·(R+1) + j).{0,1},
 *          up_blocks.i.upsamplers.0 -> output_blocks.(i·(R+2)... last of level).{1|2}.conv,
 *          resnet norm1/conv1/time_emb_proj/norm2/conv2/conv_shortcut ->
 *          in_layers.0/in_layers.2/emb_layers.1/out_layers.0/out_layers.3/skip_connection.
 *   VAE:   down_blocks.i.resnets.j -> down.i.block.j, up_blocks.i -> up.(L-1-i) (reversed),
 *          mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0} -> mid.attn_1.{norm,q,k,v,proj_out}
 *          (diffusers stores these as linear [C,C]; LDM as 1×1 conv [C,C,1,1]),
 *          conv_norm_out -> norm_out, conv_shortcut -> nin_shortcut.
 *   Text:  transformers CLIPTextModel "text_model.*" -> "cond_stage_model.transformer.text_model.*".
 *   SDXL (unet addition_embed_type "text_time"; diffusers' convert_original_stable_diffusion_to_diffusers
 *          with the SGM conditioner): add_embedding.linear_{1,2} -> label_emb.0.{0,2}; text_encoder ->
 *          conditioner.embedders.0.transformer.text_model.*; text_encoder_2 keeps its transformers names
 *          under SD_DIFFUSERS_SDXL_TEXT2 (clip.c runs the tower by those names).
 */
#include "diffusers.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Replace a leading `from` in s by `to`; returns 1 if it matched. */
static int swap_prefix(char *s, size_t cap, const char *from, const char *to)
{
    size_t nf = strlen(from), nt = strlen(to), ns = strlen(s);
    if (strncmp(s, from, nf) != 0) return 0;
    if (ns - nf + nt + 1 > cap) return 0;
    memmove(s + nt, s + nf, ns - nf + 1);
    memcpy(s, to, nt);
    return 1;
}

/* Replace the first occurrence of `from` anywhere in s by `to`. */
static int swap_part(char *s, size_t cap, const char *from, const char *to)
{
    char *p = strstr(s, from);
    if (!p) return 0;
    size_t nf = strlen(from), nt = strlen(to), ns = strlen(s);
    if (ns - nf + nt + 1 > cap) return 0;
    memmove(p + nt, p + nf, strlen(p + nf) + 1);
    memcpy(p, to, nt);
    return 1;
}

static void resnet_names(char *s, size_t cap, int vae)
{
    if (vae) {
        swap_part(s, cap, "conv_shortcut", "nin_shortcut");
        return;
    }
    (void)(swap_part(s, cap, ".norm1.", ".in_layers.0.") || swap_part(s, cap, ".conv1.", ".in_layers.2.") ||
        swap_part(s, cap, ".time_emb_proj.", ".emb_layers.1.") || swap_part(s, cap, ".norm2.", ".out_layers.0.") ||
        swap_part(s, cap, ".conv2.", ".out_layers.3.") || swap_part(s, cap, ".conv_shortcut.", ".skip_connection."));
}

int sd_diffusers_ldm_name(const char *component, const char *name, const sd_diffusers_layout *lay, char *out,
                          size_t cap, int *to_conv1x1)
{
    *to_conv1x1 = 0;
    char rest[512];
    int i = -1, j = -1, n = -1;
/* sscanf stores %n only when the whole pattern matched (a one-%d pattern "matches" any name that
 * starts with its prefix): reset n first and require it; indices are bounded so the block
 * arithmetic below cannot overflow. */
#define MATCH(str, fmt, cnt, ...) \
    (n = i = j = -1, sscanf(str, fmt, __VA_ARGS__, &n) == (cnt) && n > 0 && i >= 0 && i < 64 && \
     ((cnt) == 1 || (j >= 0 && j < 64)))
    if (strlen(name) >= 400) return -1;
    if (!strcmp(component, "text_encoder")) {
        if (lay->sdxl && !strncmp(name, "text_model.", 11)) snprintf(out, cap, SD_DIFFUSERS_SDXL_TEXT1 "%s", name + 11);
        else snprintf(out, cap, "cond_stage_model.transformer.%s", name);
        return 0;
    }
    if (!strcmp(component, "text_encoder_2")) {
        /* CLIPTextModelWithProjection: the tower under text_model.*, its projection beside it */
        if (!strncmp(name, "text_model.", 11)) snprintf(out, cap, SD_DIFFUSERS_SDXL_TEXT2 "%s", name + 11);
        else if (!strcmp(name, "text_projection.weight")) snprintf(out, cap, SD_DIFFUSERS_SDXL_TEXT2 "%s", name);
        else return -1;
        return 0;
    }
    if (!strcmp(component, "unet")) {
        const int R = lay->unet_res_blocks;
        char body[512];
        snprintf(body, sizeof body, "%s", name);
        if (MATCH(name, "down_blocks.%d.resnets.%d.%n", 2, &i, &j)) {
            snprintf(body, sizeof body, "input_blocks.%d.0.%s", 1 + i * (R + 1) + j, name + n);
            resnet_names(body, sizeof body, 0);
        } else if (MATCH(name, "down_blocks.%d.attentions.%d.%n", 2, &i, &j)) {
            snprintf(body, sizeof body, "input_blocks.%d.1.%s", 1 + i * (R + 1) + j, name + n);
        } else if (MATCH(name, "down_blocks.%d.downsamplers.0.conv.%n", 1, &i)) {
            snprintf(body, sizeof body, "input_blocks.%d.0.op.%s", 1 + i * (R + 1) + R, name + n);
        } else if (MATCH(name, "mid_block.resnets.%d.%n", 1, &i)) {
            snprintf(body, sizeof body, "middle_block.%d.%s", i == 0 ? 0 : 2, name + n);
            resnet_names(body, sizeof body, 0);
        } else if (!strncmp(name, "mid_block.attentions.0.", 23)) {
            snprintf(body, sizeof body, "middle_block.1.%s", name + 23);
        } else if (MATCH(name, "up_blocks.%d.resnets.%d.%n", 2, &i, &j)) {
            snprintf(body, sizeof body, "output_blocks.%d.0.%s", i * (R + 1) + j, name + n);
            resnet_names(body, sizeof body, 0);
        } else if (MATCH(name, "up_blocks.%d.attentions.%d.%n", 2, &i, &j)) {
            snprintf(body, sizeof body, "output_blocks.%d.1.%s", i * (R + 1) + j, name + n);
        } else if (MATCH(name, "up_blocks.%d.upsamplers.0.conv.%n", 1, &i)) {
            if (i < 0 || i >= SD_MAX_LEVELS) return -1;
            int has_attn = lay->unet_up_attn[i];
            snprintf(body, sizeof body, "output_blocks.%d.%d.conv.%s", i * (R + 1) + R, has_attn ? 2 : 1, name + n);
        } else if (swap_prefix(body, sizeof body, "conv_in.", "input_blocks.0.0.") ||
                   swap_prefix(body, sizeof body, "time_embedding.linear_1.", "time_embed.0.") ||
                   swap_prefix(body, sizeof body, "time_embedding.linear_2.", "time_embed.2.") ||
                   /* SDXL's "text_time" additional embedding (diffusers TimestepEmbedding add_embedding) is
                    * SGM's label_emb: Linear, SiLU, Linear */
                   swap_prefix(body, sizeof body, "add_embedding.linear_1.", "label_emb.0.0.") ||
                   swap_prefix(body, sizeof body, "add_embedding.linear_2.", "label_emb.0.2.") ||
                   swap_prefix(body, sizeof body, "conv_norm_out.", "out.0.") ||
                   swap_prefix(body, sizeof body, "conv_out.", "out.2.")) {
            /* renamed in place */
        } else {
            return -1;
        }
        snprintf(out, cap, "model.diffusion_model.%s", body);
        return 0;
    }
    if (!strcmp(component, "vae")) {
        char body[512];
        snprintf(body, sizeof body, "%s", name);
        const char *coder = !strncmp(name, "encoder.", 8) ? "encoder" : !strncmp(name, "decoder.", 8) ? "decoder" : NULL;
        if (coder) {
            const char *r = name + 8;
            if (MATCH(r, "down_blocks.%d.resnets.%d.%n", 2, &i, &j)) {
                snprintf(body, sizeof body, "%s.down.%d.block.%d.%s", coder, i, j, r + n);
                resnet_names(body, sizeof body, 1);
            } else if (MATCH(r, "down_blocks.%d.downsamplers.0.conv.%n", 1, &i)) {
                snprintf(body, sizeof body, "%s.down.%d.downsample.conv.%s", coder, i, r + n);
            } else if (MATCH(r, "up_blocks.%d.resnets.%d.%n", 2, &i, &j)) {
                snprintf(body, sizeof body, "%s.up.%d.block.%d.%s", coder, lay->vae_levels - 1 - i, j, r + n);
                resnet_names(body, sizeof body, 1);
            } else if (MATCH(r, "up_blocks.%d.upsamplers.0.conv.%n", 1, &i)) {
                snprintf(body, sizeof body, "%s.up.%d.upsample.conv.%s", coder, lay->vae_levels - 1 - i, r + n);
            } else if (MATCH(r, "mid_block.resnets.%d.%n", 1, &i)) {
                snprintf(body, sizeof body, "%s.mid.block_%d.%s", coder, i + 1, r + n);
                resnet_names(body, sizeof body, 1);
            } else if (!strncmp(r, "mid_block.attentions.0.", 23)) {
                snprintf(rest, sizeof rest, "%s", r + 23);
                /* current (group_norm, to_q, to_k, to_v, to_out.0) and older (query, key, value, proj_attn) names */
                static const char *map[][2] = {{"group_norm.", "norm."}, {"to_q.", "q."},      {"to_k.", "k."},
                                               {"to_v.", "v."},          {"to_out.0.", "proj_out."}, {"query.", "q."},
                                               {"key.", "k."},           {"value.", "v."},    {"proj_attn.", "proj_out."}};
                int found = 0;
                for (size_t m = 0; m < sizeof map / sizeof map[0]; m++) {
                    if (swap_prefix(rest, sizeof rest, map[m][0], map[m][1])) {
                        found = 1;
                        if (strcmp(map[m][1], "norm.") != 0 && strstr(rest, ".weight")) *to_conv1x1 = 1;
                        break;
                    }
                }
                if (!found) return -1;
                snprintf(body, sizeof body, "%s.mid.attn_1.%s", coder, rest);
            } else if (!strncmp(r, "conv_norm_out.", 14)) {
                snprintf(body, sizeof body, "%s.norm_out.%s", coder, r + 14);
            } else if (!strncmp(r, "conv_in.", 8) || !strncmp(r, "conv_out.", 9)) {
                /* same name */
            } else {
                return -1;
            }
        } else if (strncmp(name, "quant_conv.", 11) && strncmp(name, "post_quant_conv.", 16)) {
            return -1;
        }
        snprintf(out, cap, "first_stage_model.%s", body);
        return 0;
    }
    return -1;
#undef MATCH
}

/* ---- config.json reading ---- */

static cJSON *read_json(const char *path, sd_err *err, int required)
{
    struct stat sb;
    if (!required && stat(path, &sb) != 0) return NULL;
    FILE *f = sd_fopen_regular(path, err);
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (16 << 20)) {
        fclose(f);
        sd_errf(err, "%s: config file too large", path);
        return NULL;
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        sd_errf(err, "%s: cannot read", path);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(buf, (size_t)n, &end, 0);
    if (!j) {
        /* cJSON reports where it stopped; for a file cut short that is its last byte (or just past it). */
        size_t at = end && end >= buf && end <= buf + n ? (size_t)(end - buf) : 0;
        if (at + 1 >= (size_t)n)
            sd_errf(err, "%s: invalid JSON: the file ends before the JSON is complete (truncated?)", path);
        else
            sd_errf(err, "%s: invalid JSON at byte %zu", path, at);
        free(buf);
        return NULL;
    }
    free(buf);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        sd_errf(err, "%s: not a JSON object (a diffusers config.json is one {...} object)", path);
        return NULL;
    }
    return j;
}

static int get_int(const cJSON *o, const char *key, int lo, int hi, int *out, const char *path, sd_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 1; /* absent */
    /* range first: converting an out-of-range double to int is undefined behaviour */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        v->valuedouble != (double)(int)v->valuedouble)
        return sd_errf(err, "%s: \"%s\" must be an integer in [%d, %d]", path, key, lo, hi);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_int_list(const cJSON *o, const char *key, int *out, int max, int *count, const char *path, sd_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 1;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) < 1 || cJSON_GetArraySize(v) > max)
        return sd_errf(err, "%s: \"%s\" must be a list of 1 to %d integers", path, key, max);
    int n = 0;
    for (const cJSON *e = v->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > 65536 ||
            e->valuedouble != (double)(int)e->valuedouble)
            return sd_errf(err, "%s: \"%s\" must hold positive integers", path, key);
        out[n++] = (int)e->valuedouble;
    }
    *count = n;
    return 0;
}

static const char *get_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* transformer_layers_per_block: one count for every level, or one per level (SDXL: [1, 2, 10]); the
 * middle block takes the last level's (diffusers UNetMidBlock2DCrossAttn gets
 * transformer_layers_per_block[-1]), and the up blocks mirror the down ones unless
 * reverse_transformer_layers_per_block says otherwise, which the LDM layout cannot express. */
static int read_depths(const cJSON *j, sd_unet_config *c, const char *path, sd_err *err)
{
    const cJSON *rev = cJSON_GetObjectItemCaseSensitive(j, "reverse_transformer_layers_per_block");
    if (rev && !cJSON_IsNull(rev))
        return sd_errf(err, "%s: \"reverse_transformer_layers_per_block\" is not supported (the up blocks must mirror "
                       "the down blocks' depths)", path);
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "transformer_layers_per_block")))
        return get_int(j, "transformer_layers_per_block", 1, 64, &c->transformer_depth, path, err) < 0 ? -1 : 0;
    int d[SD_MAX_LEVELS], nd = 0;
    if (get_int_list(j, "transformer_layers_per_block", d, SD_MAX_LEVELS, &nd, path, err)) return -1;
    if (nd != c->n_levels)
        return sd_errf(err, "%s: \"transformer_layers_per_block\" lists %d depths for %d levels", path, nd, c->n_levels);
    for (int i = 0; i < nd; i++) {
        if (d[i] > 64) return sd_errf(err, "%s: \"transformer_layers_per_block\" %d is above 64", path, d[i]);
        c->depth[i] = d[i];
    }
    c->depth[nd] = d[nd - 1];
    /* the first attention level's, as the single-file reading counts it (unet.c) */
    c->transformer_depth = c->depth[nd];
    for (int i = nd - 1; i >= 0; i--)
        if (c->attn[i]) c->transformer_depth = c->depth[i];
    return 0;
}

/* The additional embedding added to the time embedding: none, or SDXL's "text_time" (diffusers
 * UNet2DConditionModel: add_time_proj on each of the six size ids, concatenated after the pooled text
 * vector, through add_embedding from projection_class_embeddings_input_dim values). */
static int read_addition(const cJSON *j, sd_unet_config *c, sd_diffusers_layout *lay, const char *path, sd_err *err)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "addition_embed_type");
    if (!t || cJSON_IsNull(t)) return 0;
    if (!cJSON_IsString(t) || strcmp(t->valuestring, "text_time"))
        return sd_errf(err, "%s: addition_embed_type %s%.32s%s is not supported (null, or \"text_time\" as in SDXL)", path,
                       cJSON_IsString(t) ? "\"" : "", cJSON_IsString(t) ? t->valuestring : "(not a string)",
                       cJSON_IsString(t) ? "\"" : "");
    int r1 = get_int(j, "projection_class_embeddings_input_dim", 1, 1 << 20, &c->adm_in, path, err);
    if (r1 < 0) return -1;
    int r2 = get_int(j, "addition_time_embed_dim", 2, 1 << 16, &lay->add_time_dim, path, err);
    if (r2 < 0) return -1;
    if (r1 > 0 || r2 > 0)
        return sd_errf(err, "%s: addition_embed_type \"text_time\" needs \"%s\"", path,
                       r1 > 0 ? "projection_class_embeddings_input_dim" : "addition_time_embed_dim");
    if (lay->add_time_dim % 2)
        return sd_errf(err, "%s: \"addition_time_embed_dim\" %d must be even (a cos and a sin half)", path,
                       lay->add_time_dim);
    lay->sdxl = 1;
    return 0;
}

static int read_unet(const char *dir, sd_model *m, sd_diffusers_layout *lay, sd_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/unet/config.json", dir);
    cJSON *j = read_json(path, err, 1);
    if (!j) return -1;
    int rc = -1, n = 0, heads[SD_MAX_LEVELS], nh = 0, v;
    sd_unet_config *c = &m->unet;
    memset(c, 0, sizeof *c);
    c->in_channels = c->out_channels = 4;
    c->groups = 32;
    c->transformer_depth = 1;
    c->num_res_blocks = 2;
    int bo[SD_MAX_LEVELS];
    int r0 = get_int_list(j, "block_out_channels", bo, SD_MAX_LEVELS, &n, path, err);
    if (r0 != 0) {
        if (r0 > 0) sd_errf(err, "%s: \"block_out_channels\" is missing", path);
        goto out;
    }
    c->n_levels = n;
    c->model_channels = bo[0];
    for (int i = 0; i < n; i++) {
        if (bo[i] % bo[0]) {
            sd_errf(err, "%s: block_out_channels must be multiples of the first", path);
            goto out;
        }
        c->channel_mult[i] = bo[i] / bo[0];
    }
    if (get_int(j, "layers_per_block", 1, 16, &c->num_res_blocks, path, err) < 0) goto out;
    if (get_int(j, "in_channels", 1, 64, &c->in_channels, path, err) < 0) goto out;
    if (get_int(j, "out_channels", 1, 64, &c->out_channels, path, err) < 0) goto out;
    if (get_int(j, "norm_num_groups", 1, 1024, &c->groups, path, err) < 0) goto out;
    if (get_int(j, "cross_attention_dim", 1, 65536, &c->context_dim, path, err) < 0) goto out;
    if (read_addition(j, c, lay, path, err)) goto out;
    const cJSON *lin = cJSON_GetObjectItemCaseSensitive(j, "use_linear_projection");
    c->linear_proj = cJSON_IsTrue(lin);
    const cJSON *down = cJSON_GetObjectItemCaseSensitive(j, "down_block_types");
    if (!cJSON_IsArray(down) || cJSON_GetArraySize(down) != n) {
        sd_errf(err, "%s: down_block_types must list one block per entry of block_out_channels", path);
        goto out;
    }
    int i = 0;
    for (const cJSON *e = down->child; e; e = e->next, i++)
        c->attn[i] = cJSON_IsString(e) && strstr(e->valuestring, "CrossAttn") != NULL;
    const cJSON *up = cJSON_GetObjectItemCaseSensitive(j, "up_block_types");
    i = 0;
    if (cJSON_IsArray(up) && cJSON_GetArraySize(up) == n)
        for (const cJSON *e = up->child; e; e = e->next, i++)
            lay->unet_up_attn[i] = cJSON_IsString(e) && strstr(e->valuestring, "CrossAttn") != NULL;
    else
        for (i = 0; i < n; i++) lay->unet_up_attn[i] = c->attn[n - 1 - i];
    const char *mid = get_str(j, "mid_block_type");
    c->mid_attn = !mid || strstr(mid, "CrossAttn") != NULL;
    if (read_depths(j, c, path, err)) goto out;
    /* Heads: diffusers names the head count "attention_head_dim" in SD 1.x/2.x configs (a
     * historical misnomer it keeps for compatibility); "num_attention_heads" wins if set. */
    const char *key = cJSON_GetObjectItemCaseSensitive(j, "num_attention_heads") &&
                              !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "num_attention_heads"))
                          ? "num_attention_heads"
                          : "attention_head_dim";
    if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, key))) {
        if (get_int_list(j, key, heads, SD_MAX_LEVELS, &nh, path, err) != 0) goto out;
    } else {
        int r = get_int(j, key, 1, 4096, &v, path, err);
        if (r < 0) goto out;
        if (r > 0) v = 8; /* absent: the SD 1.x default */
        for (i = 0; i < n; i++) heads[i] = v;
        nh = n;
    }
    if (nh != n) {
        sd_errf(err, "%s: \"%s\" must give one head count per level", path, key);
        goto out;
    }
    int same_heads = 1, same_dim = 1;
    for (i = 1; i < n; i++) {
        if (heads[i] != heads[0]) same_heads = 0;
        if (bo[i] / heads[i] != bo[0] / heads[0] || bo[i] % heads[i]) same_dim = 0;
    }
    if (same_heads) c->num_heads = heads[0];
    else if (same_dim && bo[0] % heads[0] == 0) c->head_dim = bo[0] / heads[0];
    else {
        sd_errf(err, "%s: per-level head counts that keep neither the count nor the width fixed are not supported", path);
        goto out;
    }
    c->time_embed_dim = 4 * c->model_channels;
    lay->unet_res_blocks = c->num_res_blocks;
    m->has_unet = 1;
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

static int read_vae(const char *dir, sd_model *m, sd_diffusers_layout *lay, sd_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    cJSON *j = read_json(path, err, 1);
    if (!j) return -1;
    int rc = -1, n = 0, bo[SD_MAX_LEVELS];
    sd_vae_config *c = &m->vae;
    memset(c, 0, sizeof *c);
    c->in_channels = 3;
    c->z_channels = 4;
    c->groups = 32;
    c->num_res_blocks = 2;
    c->scale_factor = 0; /* the family's unless the config says (scaling_factor) */
    int r0 = get_int_list(j, "block_out_channels", bo, SD_MAX_LEVELS, &n, path, err);
    if (r0 != 0) {
        if (r0 > 0) sd_errf(err, "%s: \"block_out_channels\" is missing", path);
        goto out;
    }
    c->n_levels = n;
    c->ch = bo[0];
    for (int i = 0; i < n; i++) c->ch_mult[i] = bo[i] / bo[0];
    if (get_int(j, "layers_per_block", 1, 16, &c->num_res_blocks, path, err) < 0) goto out;
    if (get_int(j, "latent_channels", 1, 64, &c->z_channels, path, err) < 0) goto out;
    if (get_int(j, "in_channels", 1, 64, &c->in_channels, path, err) < 0) goto out;
    if (get_int(j, "norm_num_groups", 1, 1024, &c->groups, path, err) < 0) goto out;
    const cJSON *sf = cJSON_GetObjectItemCaseSensitive(j, "scaling_factor");
    if (cJSON_IsNumber(sf)) {
        /* Used as float32 (the latent is divided by it): a value that rounds to 0 or a subnormal there
         * turns every latent into Inf. */
        if (!(sf->valuedouble >= FLT_MIN && sf->valuedouble < 100)) {
            sd_errf(err, "%s: scaling_factor %g is out of range (a float32 number in [%g, 100); SD uses 0.18215)", path,
                    sf->valuedouble, (double)FLT_MIN);
            goto out;
        }
        c->scale_factor = (float)sf->valuedouble;
    }
    lay->vae_levels = n;
    m->has_vae = 1;
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

/* The pad token's id from a tokenizer folder's special_tokens_map.json (else its tokenizer_config.json):
 * "!" is id 0 of the CLIP vocabulary (SD 2.x, SDXL's tokenizer_2), "<|endoftext|>" its last id (SD 1.x,
 * SDXL's tokenizer); anything else, or no file, keeps *pad. */
static void read_pad(const char *dir, const char *tok, int vocab, int *pad_id)
{
    static const char *const files[] = {"special_tokens_map.json", "tokenizer_config.json"};
    for (int f = 0; f < 2; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/%s", dir, tok, files[f]);
        sd_err e2;
        cJSON *t = read_json(path, &e2, 0);
        if (!t) continue;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(t, "pad_token");
        const char *pad = cJSON_IsString(p) ? p->valuestring : cJSON_IsObject(p) ? get_str(p, "content") : NULL;
        if (pad && !strcmp(pad, "!")) *pad_id = 0;
        else if (pad && !strcmp(pad, "<|endoftext|>")) *pad_id = vocab - 1;
        cJSON_Delete(t);
        if (pad) return;
    }
}

/* Text tower idx: 0 = text_encoder (+ tokenizer), 1 = text_encoder_2 (+ tokenizer_2, SDXL). */
static int read_text(const char *dir, int idx, const sd_diffusers_layout *lay, sd_model *m, sd_err *err)
{
    const char *comp = idx ? "text_encoder_2" : "text_encoder", *tok = idx ? "tokenizer_2" : "tokenizer";
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/config.json", dir, comp);
    cJSON *j = read_json(path, err, 1);
    if (!j) return -1;
    int rc = -1;
    sd_text_config *c = &m->text[idx];
    memset(c, 0, sizeof *c);
    c->kind = SD_TEXT_CLIP_HF; /* transformers' CLIPTextModel names, translated to the LDM ones */
    snprintf(c->prefix, sizeof c->prefix, "%s",
             !lay->sdxl ? SD_PREFIX_CLIP : idx ? SD_DIFFUSERS_SDXL_TEXT2 : SD_DIFFUSERS_SDXL_TEXT1);
    c->final_norm = 1;
    c->width = 768;
    c->layers = 12;
    c->heads = 12;
    c->mlp = 3072;
    c->vocab = 49408;
    c->positions = 77;
    c->act = SD_ACT_QUICK_GELU;
    if (get_int(j, "hidden_size", 1, 65536, &c->width, path, err) < 0 ||
        get_int(j, "num_hidden_layers", 1, 1024, &c->layers, path, err) < 0 ||
        get_int(j, "num_attention_heads", 1, 1024, &c->heads, path, err) < 0 ||
        get_int(j, "intermediate_size", 1, 1 << 20, &c->mlp, path, err) < 0 ||
        get_int(j, "vocab_size", 1, 1 << 22, &c->vocab, path, err) < 0 ||
        get_int(j, "max_position_embeddings", 1, 1 << 16, &c->positions, path, err) < 0)
        goto out;
    if (c->width % c->heads) {
        sd_errf(err, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->width, c->heads);
        goto out;
    }
    const char *act = get_str(j, "hidden_act");
    if (act && !strcmp(act, "gelu")) c->act = SD_ACT_GELU;
    else if (act && strcmp(act, "quick_gelu") != 0) {
        sd_errf(err, "%s: hidden_act \"%.32s\" is not supported (quick_gelu or gelu)", path, act);
        goto out;
    }
    if (idx == 1) {
        /* CLIPTextModelWithProjection: text_projection is Linear(hidden_size -> projection_dim), no bias
         * (transformers' default width 512 when the config leaves it out) */
        c->proj_dim = 512;
        if (get_int(j, "projection_dim", 1, 65536, &c->proj_dim, path, err) < 0) goto out;
    }
    /* The pipeline feeds last_hidden_state (all layers + final LayerNorm): SD 2.x diffusers
     * folders already hold only the 23 layers that the penultimate-layer rule keeps. */
    c->layers_used = c->layers;
    if (lay->sdxl) {
        /* diffusers StableDiffusionXLPipeline.encode_prompt: hidden_states[-2] of both towers, no final
         * LayerNorm (docs/SEMANTICS.md) */
        if (c->layers < 2) {
            sd_errf(err, "%s: SDXL takes the second-to-last layer's output, but num_hidden_layers is %d", path, c->layers);
            goto out;
        }
        c->final_norm = 0;
        c->penultimate = 1;
        c->layers_used = c->layers - 1;
    }
    rc = 0;
out:
    cJSON_Delete(j);
    if (rc == 0) {
        /* Pad token from the tokenizer: "<|endoftext|>" (SD 1.x, SDXL's first) or "!" (SD 2.x and SDXL's
         * second, id 0); without a tokenizer config the second tower pads with 0 as in every SDXL. */
        c->pad_id = idx ? 0 : c->vocab - 1;
        read_pad(dir, tok, c->vocab, &c->pad_id);
        m->has_text = 1;
        m->n_text = idx + 1;
    }
    return rc;
}

static int read_scheduler(const char *dir, sd_model *m, sd_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
    sd_err e2 = {0};
    cJSON *j = read_json(path, &e2, 0);
    if (!j) {
        if (e2.msg[0] && strstr(e2.msg, "cannot open") == NULL) {
            *err = e2;
            return -1;
        }
        return 0; /* absent: SD defaults */
    }
    int rc = -1;
    sd_sched_config *s = &m->sched;
    const cJSON *v;
    if (get_int(j, "num_train_timesteps", 2, 100000, &s->num_train_timesteps, path, err) < 0) goto out;
    if (get_int(j, "steps_offset", 0, 1000, &s->steps_offset, path, err) < 0) goto out;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "beta_start")) && cJSON_IsNumber(v)) s->beta_start = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "beta_end")) && cJSON_IsNumber(v)) s->beta_end = v->valuedouble;
    if (!(s->beta_start > 0 && s->beta_start < s->beta_end && s->beta_end < 1)) {
        sd_errf(err, "%s: beta_start/beta_end must satisfy 0 < start < end < 1", path);
        goto out;
    }
    const char *bs = get_str(j, "beta_schedule");
    if (bs) {
        if (strcmp(bs, "scaled_linear") && strcmp(bs, "linear")) {
            sd_errf(err, "%s: beta_schedule \"%.32s\" is not supported (scaled_linear or linear)", path, bs);
            goto out;
        }
        snprintf(s->beta_schedule, sizeof s->beta_schedule, "%s", bs);
    }
    const char *sp = get_str(j, "timestep_spacing");
    if (sp) {
        if (strcmp(sp, "leading") && strcmp(sp, "linspace") && strcmp(sp, "trailing")) {
            sd_errf(err, "%s: timestep_spacing \"%.32s\" is not one of leading, linspace, trailing", path, sp);
            goto out;
        }
        snprintf(s->timestep_spacing, sizeof s->timestep_spacing, "%s", sp);
    }
    const char *pt = get_str(j, "prediction_type");
    if (pt) {
        if (!strcmp(pt, "epsilon")) m->prediction = SD_PRED_EPS;
        else if (!strcmp(pt, "v_prediction")) m->prediction = SD_PRED_V;
        else {
            sd_errf(err, "%s: prediction_type \"%.32s\" is not supported (epsilon or v_prediction)", path, pt);
            goto out;
        }
        snprintf(m->prediction_why, sizeof m->prediction_why, "prediction_type \"%s\" in scheduler/scheduler_config.json", pt);
    }
    s->from_file = 1;
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

int sd_diffusers_read_configs(const char *dir, sd_model *m, sd_diffusers_layout *lay, sd_err *err)
{
    memset(lay, 0, sizeof *lay);
    char path[4096];
    snprintf(path, sizeof path, "%s/unet/config.json", dir);
    /* Present in any form: read_json then refuses a FIFO or folder by name instead of blocking on it. */
    struct stat sb;
    if (stat(path, &sb) == 0 && read_unet(dir, m, lay, err)) return -1;
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    if (stat(path, &sb) == 0 && read_vae(dir, m, lay, err)) return -1;
    snprintf(path, sizeof path, "%s/text_encoder/config.json", dir);
    const int has_text1 = stat(path, &sb) == 0;
    if (has_text1 && read_text(dir, 0, lay, m, err)) return -1;
    snprintf(path, sizeof path, "%s/text_encoder_2/config.json", dir);
    const int has_text2 = stat(path, &sb) == 0;
    if (lay->sdxl && (has_text1 || has_text2)) {
        /* SDXL conditions on both towers side by side and on the second one's pooled vector */
        if (!has_text1 || !has_text2)
            return sd_errf(err, "%s/%s/config.json: missing (an SDXL folder, whose unet has addition_embed_type "
                           "\"text_time\", needs both text_encoder and text_encoder_2)", dir,
                           has_text1 ? "text_encoder_2" : "text_encoder");
        if (read_text(dir, 1, lay, m, err)) return -1;
        /* add_embedding's input: the pooled vector, then six addition_time_embed_dim-wide sinusoids */
        const long want = (long)m->text[1].proj_dim + 6L * lay->add_time_dim;
        if (m->unet.adm_in != want)
            return sd_errf(err, "%s/unet/config.json: projection_class_embeddings_input_dim %d is not text_encoder_2's "
                           "projection_dim %d + 6 x addition_time_embed_dim %d = %ld", dir, m->unet.adm_in,
                           m->text[1].proj_dim, lay->add_time_dim, want);
    }
    return read_scheduler(dir, m, err);
}
