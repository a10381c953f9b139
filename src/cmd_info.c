/* cmd_info.c — `sdgen info MODEL [--json]`: what a model file is, read from headers only. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "sdgen/family.h"
#include "sdgen/model.h"
#include "sdgen/options.h"

static const char *component_of(const char *name)
{
    if (!strncmp(name, SD_PREFIX_UNET, strlen(SD_PREFIX_UNET))) return "unet";
    if (!strncmp(name, SD_PREFIX_VAE, strlen(SD_PREFIX_VAE))) return "vae";
    if (!strncmp(name, "cond_stage_model.", 17)) return "text";
    if (!strncmp(name, "conditioner.", 12)) return "text";
    return "other";
}

static cJSON *int_array(const int *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

/* What a text tower is, whatever its tensor names: towers trained by OpenCLIP (SD 2.x's ViT-H, SDXL's second
 * tower, ViT-bigG) use GELU, OpenAI's CLIP ViT-L quick_gelu. A diffusers folder stores OpenCLIP towers under
 * transformers names (CLIPTextModel, CLIPTextModelWithProjection with hidden_act "gelu" in
 * text_encoder_2/config.json), so the name layout (t->kind) alone would call them CLIP. */
static int text_is_openclip(const sd_text_config *t) { return t->kind == SD_TEXT_OPENCLIP || t->act == SD_ACT_GELU; }

/* Build the JSON description; the text form is printed from it too, so both agree. */
static cJSON *describe(const sd_model *m)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", m->path);
    cJSON_AddStringToObject(j, "format", m->is_folder ? "diffusers" : "ldm-single-file");
    cJSON_AddStringToObject(j, "family", sd_family_name(m->family));
    const sd_family_desc *fam = sd_family_get(m->family);
    cJSON_AddBoolToObject(j, "supported", fam && fam->supported);
    cJSON_AddStringToObject(j, "prediction", sd_prediction_name(m->prediction));
    cJSON_AddStringToObject(j, "prediction_source", m->prediction_why);

    cJSON *comp = cJSON_AddArrayToObject(j, "components");
    if (m->has_unet) cJSON_AddItemToArray(comp, cJSON_CreateString("unet"));
    if (m->has_vae && m->vae.has_decoder) cJSON_AddItemToArray(comp, cJSON_CreateString("vae_decoder"));
    if (m->has_vae && m->vae.has_encoder) cJSON_AddItemToArray(comp, cJSON_CreateString("vae_encoder"));
    if (m->has_text) cJSON_AddItemToArray(comp, cJSON_CreateString("text_encoder"));
    if (m->n_text > 1) cJSON_AddItemToArray(comp, cJSON_CreateString("text_encoder_2"));

    /* parameter counts and dtypes per component */
    const char *names[] = {"unet", "vae", "text", "other"};
    int64_t params[4] = {0};
    int dtc[4][SD_DT_COUNT] = {{0}};
    int64_t bytes = 0;
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        const sd_st_tensor *t = &m->files[w->file].tensors[w->index];
        const char *c = component_of(w->name);
        int k = 0;
        while (k < 3 && strcmp(names[k], c)) k++;
        params[k] += t->numel;
        dtc[k][t->dtype]++;
        bytes += (int64_t)(t->end - t->begin);
    }
    cJSON *pc = cJSON_AddObjectToObject(j, "parameters");
    cJSON *dt = cJSON_AddObjectToObject(j, "dtypes");
    for (int k = 0; k < 4; k++) {
        if (!params[k] && k == 3) continue;
        cJSON_AddNumberToObject(pc, names[k], (double)params[k]);
        cJSON *d = cJSON_AddObjectToObject(dt, names[k]);
        for (int t = 0; t < SD_DT_COUNT; t++)
            if (dtc[k][t]) cJSON_AddNumberToObject(d, sd_dtype_name((sd_dtype)t), dtc[k][t]);
    }
    cJSON_AddNumberToObject(j, "tensors", m->n_weights);
    cJSON_AddNumberToObject(j, "tensor_bytes", (double)bytes);

    if (m->has_unet) {
        const sd_unet_config *u = &m->unet;
        cJSON *o = cJSON_AddObjectToObject(j, "unet");
        cJSON_AddNumberToObject(o, "in_channels", u->in_channels);
        cJSON_AddNumberToObject(o, "out_channels", u->out_channels);
        cJSON_AddNumberToObject(o, "model_channels", u->model_channels);
        cJSON_AddItemToObject(o, "channel_mult", int_array(u->channel_mult, u->n_levels));
        cJSON_AddNumberToObject(o, "num_res_blocks", u->num_res_blocks);
        cJSON_AddItemToObject(o, "attention_levels", int_array(u->attn, u->n_levels));
        cJSON_AddBoolToObject(o, "middle_attention", u->mid_attn);
        cJSON_AddNumberToObject(o, "transformer_depth", u->transformer_depth);
        int depth[SD_MAX_LEVELS + 1];
        for (int l = 0; l <= u->n_levels; l++)
            depth[l] = (l < u->n_levels ? u->attn[l] : u->mid_attn) ? (u->depth[l] ? u->depth[l] : u->transformer_depth) : 0;
        cJSON_AddItemToObject(o, "transformer_depth_per_level", int_array(depth, u->n_levels + 1));
        if (u->adm_in > 0) cJSON_AddNumberToObject(o, "adm_in", u->adm_in);
        if (u->num_heads > 0) cJSON_AddNumberToObject(o, "num_heads", u->num_heads);
        if (u->head_dim > 0) cJSON_AddNumberToObject(o, "head_dim", u->head_dim);
        cJSON_AddNumberToObject(o, "context_dim", u->context_dim);
        cJSON_AddStringToObject(o, "proj", u->linear_proj ? "linear" : "conv1x1");
        cJSON_AddNumberToObject(o, "time_embed_dim", u->time_embed_dim);
    }
    if (m->has_vae) {
        const sd_vae_config *v = &m->vae;
        cJSON *o = cJSON_AddObjectToObject(j, "vae");
        cJSON_AddNumberToObject(o, "ch", v->ch);
        cJSON_AddItemToObject(o, "ch_mult", int_array(v->ch_mult, v->n_levels));
        cJSON_AddNumberToObject(o, "num_res_blocks", v->num_res_blocks);
        cJSON_AddNumberToObject(o, "z_channels", v->z_channels);
        cJSON_AddNumberToObject(o, "scale_factor", v->scale_factor);
        cJSON_AddBoolToObject(o, "encoder", v->has_encoder);
        cJSON_AddBoolToObject(o, "decoder", v->has_decoder);
    }
    for (int i = 0; i < m->n_text; i++) {
        const sd_text_config *t = &m->text[i];
        cJSON *o = cJSON_AddObjectToObject(j, i ? "text_2" : "text");
        cJSON_AddStringToObject(o, "kind", text_is_openclip(t) ? "openclip" : "clip");
        cJSON_AddStringToObject(o, "names", t->kind == SD_TEXT_OPENCLIP ? "open_clip" : "transformers");
        cJSON_AddStringToObject(o, "prefix", t->prefix);
        cJSON_AddNumberToObject(o, "width", t->width);
        cJSON_AddNumberToObject(o, "layers", t->layers);
        cJSON_AddNumberToObject(o, "layers_used", t->layers_used);
        cJSON_AddNumberToObject(o, "heads", t->heads);
        cJSON_AddNumberToObject(o, "mlp", t->mlp);
        cJSON_AddNumberToObject(o, "vocab", t->vocab);
        cJSON_AddNumberToObject(o, "positions", t->positions);
        cJSON_AddStringToObject(o, "activation", t->act == SD_ACT_GELU ? "gelu" : "quick_gelu");
        cJSON_AddNumberToObject(o, "pad_id", t->pad_id);
        cJSON_AddBoolToObject(o, "final_norm", t->final_norm);
        if (t->proj_dim > 0) cJSON_AddNumberToObject(o, "projection_dim", t->proj_dim);
    }
    cJSON *meta = cJSON_AddObjectToObject(j, "metadata");
    for (int f = 0; f < m->n_files; f++)
        for (int i = 0; i < m->files[f].n_meta; i++)
            if (!cJSON_GetObjectItemCaseSensitive(meta, m->files[f].meta_keys[i]))
                cJSON_AddStringToObject(meta, m->files[f].meta_keys[i], m->files[f].meta_vals[i]);
    return j;
}

static void print_ints(const cJSON *a)
{
    const cJSON *e;
    int first = 1;
    printf("(");
    cJSON_ArrayForEach(e, a)
    {
        printf("%s%d", first ? "" : ", ", e->valueint);
        first = 0;
    }
    printf(")");
}

/* Metadata comes from the file: print it with control characters escaped (a value holding "\033[2J" or a
 * newline must not drive the terminal or forge lines of this report), cut at `max` bytes on a UTF-8
 * character boundary. */
static void put_escaped(const char *s, size_t max)
{
    size_t n = strlen(s), cut = n > max ? max : n;
    while (cut < n && cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
    char part[256], safe[1100]; /* max is at most 200 here; an escape is at most 6 bytes per byte */
    if (cut >= sizeof part) cut = sizeof part - 1;
    memcpy(part, s, cut);
    part[cut] = 0;
    sd_escape_text(part, safe, sizeof safe); /* the messages' escaping (options.h): C0, DEL, C1, non-UTF-8 */
    fputs(safe, stdout);
    if (cut < n) fputs("…", stdout);
}

static void print_text(const sd_model *m, const cJSON *j)
{
    printf("model:       %s (%s)\n", m->path, m->is_folder ? "diffusers folder" : "single-file LDM checkpoint");
    const sd_family_desc *fam = sd_family_get(m->family);
    if (fam && !fam->supported)
        printf("family:      %s (%s is not supported yet: sdgen runs SD 1.x and 2.x)\n", fam->name, fam->display);
    else
        printf("family:      %s\n", sd_family_name(m->family));
    printf("prediction:  %s (%s)\n", sd_prediction_name(m->prediction), m->prediction_why[0] ? m->prediction_why : "unknown");
    printf("components:");
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "components")) printf(" %s", e->valuestring);
    printf("\nparameters: ");
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "parameters")) printf(" %s %.1fM", e->string, e->valuedouble / 1e6);
    printf("\ndtypes:     ");
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "dtypes"))
    {
        const cJSON *d;
        printf(" %s:", e->string);
        cJSON_ArrayForEach(d, e) printf(" %s×%d", d->string, d->valueint);
    }
    printf("\ntensors:     %d (%.1f MB)\n", m->n_weights, cJSON_GetObjectItem(j, "tensor_bytes")->valuedouble / 1e6);
    if (m->has_unet) {
        const sd_unet_config *u = &m->unet;
        printf("unet:        %d channels × ", u->model_channels);
        print_ints(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "unet"), "channel_mult"));
        printf(", %d res blocks per level, attention at levels", u->num_res_blocks);
        for (int l = 0; l < u->n_levels; l++)
            if (u->attn[l]) printf(" %d", l);
        printf("%s, depth", u->mid_attn ? " + middle" : "");
        for (int l = 0; l <= u->n_levels; l++)
            if (l < u->n_levels ? u->attn[l] : u->mid_attn) printf(" %d", u->depth[l] ? u->depth[l] : u->transformer_depth);
        printf(", ");
        if (u->num_heads > 0) printf("%d heads", u->num_heads);
        else printf("%d-wide heads", u->head_dim);
        printf(", context %d, %s proj_in/out, time embedding %d", u->context_dim,
               u->linear_proj ? "linear" : "1x1 conv", u->time_embed_dim);
        if (u->adm_in > 0) printf(", label_emb from %d values", u->adm_in);
        printf("\n");
    }
    if (m->has_vae) {
        const sd_vae_config *v = &m->vae;
        printf("vae:         %d channels × ", v->ch);
        print_ints(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "vae"), "ch_mult"));
        printf(", %d res blocks per encoder level, %d latent channels, scale %g, %s%s%s\n", v->num_res_blocks,
               v->z_channels, v->scale_factor, v->has_encoder ? "encoder" : "",
               v->has_encoder && v->has_decoder ? " + " : "", v->has_decoder ? "decoder" : "");
    }
    for (int i = 0; i < m->n_text; i++) {
        const sd_text_config *t = &m->text[i];
        printf("%s %s, width %d, %d layers (%d used%s), %d heads, MLP %d, %s, vocab %d, %d positions, pad %d",
               i ? "text 2:     " : "text:       ", text_is_openclip(t) ? "OpenCLIP" : "CLIP", t->width, t->layers,
               t->layers_used, t->final_norm ? ", final norm" : ", no final norm", t->heads, t->mlp,
               t->act == SD_ACT_GELU ? "gelu" : "quick_gelu", t->vocab, t->positions, t->pad_id);
        if (t->proj_dim > 0) printf(", projection %d", t->proj_dim);
        printf("\n");
    }
    const cJSON *meta = cJSON_GetObjectItem(j, "metadata");
    if (cJSON_GetArraySize(meta) > 0) {
        printf("metadata:\n");
        cJSON_ArrayForEach(e, meta)
        {
            printf("  ");
            put_escaped(e->string, 200);
            printf(": ");
            put_escaped(e->valuestring, 200);
            printf("\n");
        }
    }
}

int sd_cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: sdgen info [-m] MODEL [--json]\n"
                   "Print a model's family, components, parameter counts, dtypes, architecture and metadata\n"
                   "(reads headers only). MODEL is a .safetensors checkpoint or a diffusers folder.\n");
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            sd_cli_say("sdgen info", "unknown option %s", argv[i]);
            return SD_EXIT_INPUT;
        } else if (!path) path = argv[i];
        else {
            sd_cli_say("sdgen info", "more than one model given (%s)", argv[i]);
            return SD_EXIT_INPUT;
        }
    }
    if (!path) {
        fprintf(stderr, "sdgen info: no model given (usage: sdgen info MODEL [--json])\n");
        return SD_EXIT_INPUT;
    }
    sd_model m;
    sd_err err = {0};
    if (sd_model_open(&m, path, &err)) {
        sd_cli_say("sdgen", "%s", err.msg);
        return sd_cli_exit_code(err.code);
    }
    cJSON *j = describe(&m);
    if (json) {
        char *s = cJSON_PrintUnformatted(j);
        printf("%s\n", s);
        free(s);
    } else {
        print_text(&m, j);
    }
    cJSON_Delete(j);
    sd_model_close(&m);
    return 0;
}
