/* test_lora.c — the LoRA key mapper, prompt tags and weight merging (sdgen/lora.h, docs/LORA.md).
 *   1. key parsing: kohya (lora_unet_/lora_te_/lora_te1_/lora_te2_, down/up/alpha) and diffusers/PEFT
 *      spellings (lora.down, lora_A, lora_linear_layer, processor to_q_lora, text_encoder_2) → canonical
 *      modules; non-LoRA keys refused;
 *   2. tags: <lora:NAME>, <lora:NAME:W> removed from the text, weights, and every malformed tag refused
 *      with a message naming it; --lora PATH[:W] and bare names;
 *   3. (reference data) every module of the two reference LoRA files resolves to exactly the LDM tensor
 *      its .map.json names (golden README §10.2), with its shape;
 *   4. merging kohya @ 0.8: per module Σ(W' − W) = 0.8 · delta_sum of the map (alpha factors, no-alpha
 *      modules, LoCon 3×3 and 1×1 convs); two LoRAs add up; restoring gives back the file's exact bytes;
 *      an SDXL-only key set on SD 1.x and a LoRA that patches nothing are refused.
 *   5. F16 merging (tiny SD 2.x, all F16, SD_WEIGHTS_F16): two LoRAs (linear, LoCon 3×3, OpenCLIP q/k row blocks)
 *      give F16 copies equal bit for bit to round_to_f16(f32(W) + Σ s·f·U·D) computed here; sd_model_weight
 *      and sd_model_weight_rows read the copies; the F32-mode merge rounds to them; restoring gives every
 *      weight the file's bytes; the memory check counts F16 copies plus one float32 scratch; a merge past
 *      F16's range is refused.
 *   6. on the fly (SD_LORA_FLY) against the float32 merge, on the tiny SD 1.x, SD 2.x and SDXL models: every
 *      text tower's output and the U-Net's output agree within 2e-5 of their largest value (float32 sums in
 *      another order) while the LoRA moves them by far more; linear layers, LoCon 3×3 convolutions (stride 1
 *      and the stride-2 downsample), 1×1 convolutions, OpenCLIP q/k/v row blocks and two LoRAs on one weight;
 *      no weight is touched on the fly, and after the restore the outputs are bit-identical to the base run;
 *      a shape mismatch is refused in both modes with the key and both shapes, leaving nothing applied. */
#include <cjson/cJSON.h>

#include "sdgen/clip.h"
#include "sdgen/lora.h"
#include "sdgen/lowrank.h"
#include "sdgen/safetensors.h"
#include "sdgen/unet.h"
#include "testutil.h"

static void key_case(const char *key, int ok, const char *module, sd_lora_part part)
{
    char mod[640];
    sd_lora_part p = (sd_lora_part)-1;
    int rc = sd_lora_parse_key(key, mod, sizeof mod, &p);
    if (!ok) {
        CHECK(rc != 0, "\"%s\" parsed as a LoRA key (module %s)", key, mod);
        return;
    }
    CHECK(rc == 0 && !strcmp(mod, module) && p == part, "\"%s\": rc %d module \"%s\" part %d, want \"%s\" part %d", key,
          rc, rc ? "" : mod, (int)p, module, (int)part);
}

static void test_keys(void)
{
    key_case("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", 1, "unet/down_blocks_0_attentions_0_proj_in",
             SD_LORA_PART_DOWN);
    key_case("lora_unet_mid_block_resnets_1_conv2.lora_up.weight", 1, "unet/mid_block_resnets_1_conv2", SD_LORA_PART_UP);
    key_case("lora_unet_input_blocks_4_1_proj_in.alpha", 1, "unet/input_blocks_4_1_proj_in", SD_LORA_PART_ALPHA);
    key_case("lora_te_text_model_encoder_layers_3_mlp_fc1.alpha", 1, "te1/text_model_encoder_layers_3_mlp_fc1",
             SD_LORA_PART_ALPHA);
    key_case("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", 1,
             "te1/text_model_encoder_layers_0_self_attn_q_proj", SD_LORA_PART_DOWN);
    key_case("lora_te2_text_model_encoder_layers_9_self_attn_out_proj.lora_up.weight", 1,
             "te2/text_model_encoder_layers_9_self_attn_out_proj", SD_LORA_PART_UP);
    key_case("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0.lora.down.weight", 1,
             "unet/down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_out_0", SD_LORA_PART_DOWN);
    key_case("unet.up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_k.lora_B.weight", 1,
             "unet/up_blocks_1_attentions_2_transformer_blocks_0_attn1_to_k", SD_LORA_PART_UP);
    key_case("unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight", 1,
             "unet/mid_block_attentions_0_transformer_blocks_0_attn1_to_out_0", SD_LORA_PART_UP);
    key_case("text_encoder.text_model.encoder.layers.2.self_attn.v_proj.lora_linear_layer.down.weight", 1,
             "te1/text_model_encoder_layers_2_self_attn_v_proj", SD_LORA_PART_DOWN);
    key_case("text_encoder_2.text_model.encoder.layers.2.mlp.fc2.lora_A.weight", 1,
             "te2/text_model_encoder_layers_2_mlp_fc2", SD_LORA_PART_DOWN);
    key_case("lora_unet_down_blocks_0_attentions_0_proj_in.dora_scale", 0, NULL, 0);
    key_case("lora_unet_x.hada_w1_a", 0, NULL, 0);
    key_case("lora_unet_a.b.lora_down.weight", 0, NULL, 0);
    key_case("lora_unet_.lora_down.weight", 0, NULL, 0);
    key_case("model.diffusion_model.input_blocks.0.0.weight", 0, NULL, 0);
    key_case("unet.down_blocks.0.attentions.0.proj_in.weight", 0, NULL, 0);
    key_case("", 0, NULL, 0);
}

static void tag_case(const char *text, int ok, const char *want_text, int n, const char *name0, double scale0,
                     const char *msg_part)
{
    sd_lora_list l;
    memset(&l, 0, sizeof l);
    char *out = NULL;
    sd_err e = {0};
    int rc = sd_lora_strip_tags(text, &out, &l, &e);
    if (ok) {
        CHECK(rc == 0, "\"%s\": %s", text, e.msg);
        if (rc == 0) {
            CHECK(!strcmp(out, want_text), "\"%s\" -> \"%s\", want \"%s\"", text, out, want_text);
            CHECK(l.n == n, "\"%s\": %d LoRAs, want %d", text, l.n, n);
            if (n && l.n)
                CHECK(!strcmp(l.items[0].name, name0) && l.items[0].scale == scale0 && !l.items[0].path,
                      "\"%s\": first LoRA \"%s\" %g, want \"%s\" %g", text, l.items[0].name, l.items[0].scale, name0,
                      scale0);
        }
    } else {
        CHECK(rc != 0 && strstr(e.msg, msg_part), "\"%s\": rc %d message \"%s\", want one containing \"%s\"", text, rc,
              e.msg, msg_part);
    }
    free(out);
    sd_lora_list_free(&l);
}

/* A1111's two multipliers of one tag (ExtraNetworkLora.activate): text encoders, U-Net. */
static void mult_case(const char *text, double te, double unet)
{
    sd_lora_list l;
    memset(&l, 0, sizeof l);
    char *out = NULL;
    sd_err e = {0};
    int rc = sd_lora_strip_tags(text, &out, &l, &e);
    CHECK(rc == 0 && l.n == 1 && l.items[0].scale == te && l.items[0].scale_unet == unet,
          "\"%s\": rc %d (%s), te %g unet %g, want te %g unet %g", text, rc, e.msg, l.n ? l.items[0].scale : -1,
          l.n ? l.items[0].scale_unet : -1, te, unet);
    free(out);
    sd_lora_list_free(&l);
}

static void test_tags(void)
{
    mult_case("<lora:a>", 1, 1);
    mult_case("<lora:a:0.8>", 0.8, 0.8);
    mult_case("<lora:a:1:0.5>", 1, 0.5);
    mult_case("<lora:a:0:0.75>", 0, 0.75);
    mult_case("<lora:a:unet=0.3>", 1, 0.3);
    mult_case("<lora:a:te=0.2>", 0.2, 0.2);          /* unet follows te after te= */
    mult_case("<lora:a:0.7:te=0.2>", 0.2, 0.2);      /* te= wins over the positional one */
    mult_case("<lora:a:te=0.2:0.7:0.4>", 0.2, 0.4);  /* te= wins; positionals count without it */
    mult_case("<lora:a:0.6:unet=-1>", 0.6, -1);
    tag_case("<lora:a:1:0.5:8>", 0, NULL, 0, NULL, 0, "DyLoRA's dyn, which is not supported");
    tag_case("<lora:a:1:dyn=8>", 0, NULL, 0, NULL, 0, "\"dyn=8\" is not supported");
    tag_case("<lora:a:unt=0.5>", 0, NULL, 0, NULL, 0, "\"unt=0.5\" is not supported (named multipliers: te=, unet=");
    tag_case("<lora:a:1:x>", 0, NULL, 0, NULL, 0, "the weight \"x\" is not a number");
    tag_case("<lora:a:unet=>", 0, NULL, 0, NULL, 0, "the weight \"\" is not a number");
    tag_case("a castle <lora:watercolor:0.8>", 1, "a castle ", 1, "watercolor", 0.8, NULL);
    tag_case("<lora:w>a castle", 1, "a castle", 1, "w", 1.0, NULL);
    tag_case("x <lora:a:-0.5>, y <lora:b:1.25> z", 1, "x , y  z", 2, "a", -0.5, NULL);
    tag_case("no tags (at:1.2) <hypernet:x:1>", 1, "no tags (at:1.2) <hypernet:x:1>", 0, NULL, 0, NULL);
    tag_case("a <lora:watercolor:0.8", 0, NULL, 0, NULL, 0, "<lora:watercolor:0.8\" has no closing '>'");
    tag_case("a <lora:x <lora:y:1>", 0, NULL, 0, NULL, 0, "has no closing '>'");
    tag_case("<lora::1>", 0, NULL, 0, NULL, 0, "<lora::1>");
    tag_case("<lora:a:b>", 0, NULL, 0, NULL, 0, "the weight \"b\" is not a number");
    tag_case("<lora:../etc/x:1>", 0, NULL, 0, NULL, 0, "<lora:../etc/x:1>");
    tag_case("<lora:a:1e9>", 0, NULL, 0, NULL, 0, "between -100 and 100");
    tag_case("<lora:a:nan>", 0, NULL, 0, NULL, 0, "not a number");

    sd_lora_list l;
    memset(&l, 0, sizeof l);
    sd_err e = {0};
    CHECK(sd_lora_parse_arg("/d/style.v2.safetensors:0.5", &l, &e) == 0, "%s", e.msg);
    CHECK(sd_lora_parse_arg("/d/x:y/plain.safetensors", &l, &e) == 0, "%s", e.msg);
    CHECK(sd_lora_parse_arg("watercolor:2", &l, &e) == 0, "%s", e.msg);
    CHECK(l.n == 3, "%d uses", l.n);
    if (l.n == 3) {
        CHECK(!strcmp(l.items[0].name, "style.v2") && !strcmp(l.items[0].path, "/d/style.v2.safetensors") &&
                  l.items[0].scale == 0.5,
              "--lora path:0.5 -> %s %s %g", l.items[0].name, l.items[0].path, l.items[0].scale);
        CHECK(!strcmp(l.items[1].path, "/d/x:y/plain.safetensors") && l.items[1].scale == 1.0, "path with ':' -> %s %g",
              l.items[1].path, l.items[1].scale);
        CHECK(!strcmp(l.items[2].name, "watercolor") && !l.items[2].path && l.items[2].scale == 2.0,
              "bare name -> %s %p %g", l.items[2].name, (void *)l.items[2].path, l.items[2].scale);
    }
    sd_lora_list_free(&l);
}

/* Every module of a .map.json resolves to its ldm_tensor; with `m` patched at `scale` (U-Net modules at
 * `scale_unet`; after the base values `base`), Σ(W' − W) over the module's tensor equals scale · delta_sum. */
static void check_map(sd_model *m, const sd_lora_map *map, const char *map_json, double scale_te, double scale_unet,
                      float **base, int check_sums)
{
    int n_te = 0, n_unet = 0;
    char *txt = sd_test_read_text(sd_test_path(map_json));
    CHECK(txt != NULL, "cannot read %s", map_json);
    if (!txt) return;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    const cJSON *mods = cJSON_GetObjectItem(root, "modules");
    int n = 0, bad = 0;
    for (const cJSON *md = mods ? mods->child : NULL; md; md = md->next) {
        const char *ldm = cJSON_GetObjectItem(md, "ldm_tensor")->valuestring;
        const cJSON *keys = cJSON_GetObjectItem(md, "keys");
        for (const cJSON *k = keys->child; k; k = k->next) {
            char mod[640];
            sd_lora_part part;
            if (sd_lora_parse_key(k->valuestring, mod, sizeof mod, &part)) {
                CHECK(0, "%s: key \"%s\" not parsed", map_json, k->valuestring);
                bad++;
                continue;
            }
            int e = sd_lora_map_find(map, mod);
            const char *got = e >= 0 ? m->weights[map->targets[e].weight].name : "(none)";
            if (e < 0 || strcmp(got, ldm)) {
                CHECK(0, "%s: \"%s\" -> %s, the map says %s", map_json, k->valuestring, got, ldm);
                bad++;
            }
        }
        n++;
        if (!check_sums) continue;
        const sd_weight_ref *w = sd_model_find(m, ldm);
        const int wi = (int)(w - m->weights);
        const sd_st_tensor *t = &m->files[w->file].tensors[w->index];
        double s = 0;
        for (int64_t i = 0; i < t->numel; i++) s += (double)w->f32[i] - (double)base[wi][i];
        const int unet = !strncmp(ldm, "model.diffusion_model.", 22);
        const double scale = unet ? scale_unet : scale_te;
        *(unet ? &n_unet : &n_te) += 1;
        const double want = scale * cJSON_GetObjectItem(md, "delta_sum")->valuedouble;
        const double tol = 1e-4 * sqrt(cJSON_GetObjectItem(md, "delta_sumsq")->valuedouble) * scale + 1e-4;
        if (fabs(s - want) > tol) {
            CHECK(0, "%s: %s: sum of the patch %.9g, want %.9g (tol %.2g)", map_json, ldm, s, want, tol);
            bad++;
        }
    }
    printf("%s: %d modules checked%s, %d wrong\n", map_json, n, check_sums ? " (mapping and patch sums)" : "", bad);
    if (check_sums && scale_te != scale_unet)
        CHECK(n_te > 0 && n_unet > 0, "%s: %d text-encoder and %d U-Net modules: both multipliers need some", map_json,
              n_te, n_unet);
    CHECK(n > 50, "%s: only %d modules", map_json, n);
    cJSON_Delete(root);
}

static void test_reference(void)
{
    if (sd_test_skip_shared("reference LoRA files")) return;
    sd_model m;
    sd_err e = {0};
    if (sd_model_open(&m, sd_test_path("golden/models/tiny-sd1.safetensors"), &e)) {
        CHECK(0, "%s", e.msg);
        return;
    }
    sd_lora_map map;
    CHECK(sd_lora_map_build(&m, &map, &e) == 0, "%s", e.msg);
    check_map(&m, &map, "golden/models/lora-kohya-tiny-sd1.map.json", 0, 0, NULL, 0);
    check_map(&m, &map, "golden/models/lora-diffusers-tiny-sd1.map.json", 0, 0, NULL, 0);

    /* base values of every weight (the file's) */
    float **base = calloc((size_t)m.n_weights, sizeof *base);
    for (int i = 0; i < m.n_weights; i++) {
        const sd_safetensors *st = &m.files[m.weights[i].file];
        const sd_st_tensor *t = &st->tensors[m.weights[i].index];
        base[i] = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        sd_st_read_f32(st, t, base[i], &e);
    }
    char kohya[4096], diff[4096];
    snprintf(kohya, sizeof kohya, "%s", sd_test_path("golden/models/lora-kohya-tiny-sd1.safetensors"));
    snprintf(diff, sizeof diff, "%s", sd_test_path("golden/models/lora-diffusers-tiny-sd1.safetensors"));
    sd_lora_state s;
    memset(&s, 0, sizeof s);
    sd_lora_list l;
    memset(&l, 0, sizeof l);
    sd_lora_list_add(&l, "kohya", kohya, 0.8, &e);
    CHECK(sd_lora_apply(&s, &m, &l, &e) == 0, "apply kohya: %s", e.msg);
    CHECK(s.n_patched == 129, "kohya patched %d weights, want 129", s.n_patched);
    CHECK(s.warning == NULL, "unexpected warning: %s", s.warning ? s.warning : "");
    check_map(&m, &s.map, "golden/models/lora-kohya-tiny-sd1.map.json", 0.8, 0.8, base, 1);
    /* the same set again: nothing to do */
    CHECK(sd_lora_apply(&s, &m, &l, &e) == 0 && !s.changed, "re-applying the same set changed the weights");
    /* A1111's separate multipliers (<lora:kohya:0.5:0.25>): another set, the text encoder's modules at 0.5,
     * the U-Net's at 0.25 */
    l.items[0].scale = 0.5;
    l.items[0].scale_unet = 0.25;
    CHECK(sd_lora_apply(&s, &m, &l, &e) == 0 && s.changed, "apply te 0.5 / unet 0.25: %s", e.msg);
    check_map(&m, &s.map, "golden/models/lora-kohya-tiny-sd1.map.json", 0.5, 0.25, base, 1);
    l.items[0].scale = l.items[0].scale_unet = 0.8;

    /* kohya @ 0.8 then diffusers @ 1.0: on a weight both patch, the patch is the sum */
    sd_lora_list_add(&l, "diff", diff, 1.0, &e);
    CHECK(sd_lora_apply(&s, &m, &l, &e) == 0 && s.changed, "apply both: %s", e.msg);
    {
        const char *both = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight";
        const sd_weight_ref *w = sd_model_find(&m, both);
        const int wi = (int)(w - m.weights);
        double sum = 0;
        for (int64_t i = 0; i < w->shape[0] * w->shape[1]; i++) sum += (double)w->f32[i] - base[wi][i];
        /* delta sums of that module in the two maps (scale 1) */
        double dk = 0, dd = 0;
        const char *maps[2] = {"golden/models/lora-kohya-tiny-sd1.map.json", "golden/models/lora-diffusers-tiny-sd1.map.json"};
        for (int k = 0; k < 2; k++) {
            char *txt = sd_test_read_text(sd_test_path(maps[k]));
            cJSON *root = txt ? cJSON_Parse(txt) : NULL;
            free(txt);
            for (const cJSON *md = root ? cJSON_GetObjectItem(root, "modules")->child : NULL; md; md = md->next)
                if (!strcmp(cJSON_GetObjectItem(md, "ldm_tensor")->valuestring, both))
                    *(k ? &dd : &dk) = cJSON_GetObjectItem(md, "delta_sum")->valuedouble;
            cJSON_Delete(root);
        }
        CHECK(dk != 0 && dd != 0, "the module is in both maps (%g, %g)", dk, dd);
        CHECK(fabs(sum - (0.8 * dk + dd)) < 1e-3, "two LoRAs: patch sum %.9g, want 0.8·%.9g + %.9g = %.9g", sum, dk, dd,
              0.8 * dk + dd);
    }
    /* no LoRA: every weight has the file's exact values again */
    sd_lora_list_free(&l);
    CHECK(sd_lora_apply(&s, &m, &l, &e) == 0 && s.n_patched == 0, "restore: %s", e.msg);
    int differ = 0;
    for (int i = 0; i < m.n_weights; i++) {
        sd_tensor t;
        sd_arena a = {0};
        if (sd_model_weight(&m, &a, m.weights[i].name, &t, &e)) continue;
        const sd_st_tensor *st = &m.files[m.weights[i].file].tensors[m.weights[i].index];
        if (memcmp(t.data, base[i], (size_t)st->numel * sizeof(float))) differ++;
        sd_arena_free(&a);
    }
    CHECK(differ == 0, "after restoring, %d weights differ from the file", differ);

    /* refused before any copy is made: copies larger than the memory allowed (exit code 3) */
    sd_lora_list_add(&l, "kohya", kohya, 0.8, &e);
    s.copy_limit = 100000;
    e = (sd_err){0};
    CHECK(sd_lora_apply(&s, &m, &l, &e) != 0 && e.code == SD_ERR_NOMEM &&
              strstr(e.msg, "GB for float32 copies of the weights they patch, but only 0.00 GB of memory is available"),
          "copy limit: code %d \"%s\"", e.code, e.msg);
    CHECK(s.n_patched == 0, "a refused apply left %d weights patched", s.n_patched);
    s.copy_limit = 0;
    sd_lora_list_free(&l);

    /* refused: an SDXL key set on SD 1.x; a file of keys that patch nothing */
    sd_lora_list_add(&l, "x", sd_test_path("golden/models/tiny-sd1.safetensors"), 1.0, &e);
    e = (sd_err){0};
    CHECK(sd_lora_apply(&s, &m, &l, &e) != 0 && strstr(e.msg, "patches nothing"), "a checkpoint as a LoRA: \"%s\"",
          e.msg);
    CHECK(s.n_patched == 0, "a failed apply left %d weights patched", s.n_patched);
    sd_lora_list_free(&l);

    for (int i = 0; i < m.n_weights; i++) free(base[i]);
    free(base);
    sd_lora_state_free(&s, &m);
    sd_lora_map_free(&map);
    sd_model_close(&m);
}

/* SDXL (tiny): diffusers-style and LDM-style U-Net names, both text towers, OpenCLIP q/k/v row blocks. */
static void test_sdxl_map(void)
{
    if (sd_test_skip_shared("tiny SDXL model")) return;
    sd_model m;
    sd_err e = {0};
    if (sd_model_open(&m, sd_test_path("golden/models/tiny-sdxl.safetensors"), &e)) {
        CHECK(0, "%s", e.msg);
        return;
    }
    sd_lora_map map;
    CHECK(sd_lora_map_build(&m, &map, &e) == 0, "%s", e.msg);
    static const struct {
        const char *module, *weight;
        int64_t row0, rows;
    } want[] = {
        {"unet/down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k",
         "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", 0, 64},
        {"unet/input_blocks_4_1_transformer_blocks_0_attn2_to_k",
         "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", 0, 64},
        {"unet/up_blocks_0_upsamplers_0_conv", "model.diffusion_model.output_blocks.2.2.conv.weight", 0, 128},
        {"te1/text_model_encoder_layers_1_self_attn_q_proj",
         "conditioner.embedders.0.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight", 0, 64},
        {"te2/text_model_encoder_layers_1_self_attn_q_proj",
         "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight", 0, 128},
        {"te2/text_model_encoder_layers_1_self_attn_k_proj",
         "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight", 128, 128},
        {"te2/text_model_encoder_layers_1_self_attn_v_proj",
         "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight", 256, 128},
        {"te2/text_model_encoder_layers_1_mlp_fc2", "conditioner.embedders.1.model.transformer.resblocks.1.mlp.c_proj.weight",
         0, 128},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int k = sd_lora_map_find(&map, want[i].module);
        const char *got = k >= 0 ? m.weights[map.targets[k].weight].name : "(none)";
        CHECK(k >= 0 && !strcmp(got, want[i].weight) && map.targets[k].row0 == want[i].row0 &&
                  map.targets[k].rows == want[i].rows,
              "SDXL %s -> %s rows %lld+%lld, want %s rows %lld+%lld", want[i].module, got,
              k >= 0 ? (long long)map.targets[k].row0 : -1LL, k >= 0 ? (long long)map.targets[k].rows : -1LL,
              want[i].weight, (long long)want[i].row0, (long long)want[i].rows);
    }
    sd_lora_map_free(&map);
    sd_model_close(&m);
}

/* ---- F16 merging (SD_WEIGHTS_F16 on an F16 model) ---- */

typedef struct st_entry {
    const char *name;
    int ndim;
    int64_t shape[4];
    const float *v; /* numel values, written as F32 */
} st_entry;

static int64_t entry_numel(const st_entry *e)
{
    int64_t n = 1;
    for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
    return n;
}

/* A safetensors file of F32 tensors. */
static int write_st(const char *path, const st_entry *e, int n)
{
    cJSON *h = cJSON_CreateObject();
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(h, e[i].name);
        cJSON_AddStringToObject(t, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e[i].ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e[i].shape[d]));
        const size_t bytes = (size_t)entry_numel(&e[i]) * sizeof(float);
        cJSON *off = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)total));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(total + bytes)));
        total += bytes;
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    const size_t hl = strlen(js), pad = (8 - hl % 8) % 8;
    FILE *f = fopen(path, "wb");
    int rc = f ? 0 : -1;
    if (f) {
        uint64_t le = hl + pad;
        fwrite(&le, 8, 1, f);
        fwrite(js, 1, hl, f);
        for (size_t k = 0; k < pad; k++) fputc(' ', f);
        for (int i = 0; i < n; i++) fwrite(e[i].v, sizeof(float), (size_t)entry_numel(&e[i]), f);
        rc = fclose(f) ? -1 : 0;
    }
    free(js);
    return rc;
}

/* Small multiples of 1/64: every product and sum of the merge (rank ≤ 4, factors and scales that are powers of
 * two times 3) is exact in float32 whatever order sgemm adds in, so the expected weights can be computed here
 * with plain loops and compared bit for bit. */
static float *dyadic(int64_t n, int seed)
{
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)((int)((i * 7 + seed * 13) % 17) - 8) / 64.0f;
    return v;
}

/* W (float32, rows×cols) += scale·f·U·D, U [rows, r], D [r, cols]: the product in double (exact for dyadic
 * values), then one float32 addition per element, the rounding sgemm's C += alpha·AB makes. */
static void ref_merge(float *W, int64_t rows, int64_t cols, int64_t r, const float *U, const float *D, double f,
                      double scale)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double acc = 0;
            for (int64_t k = 0; k < r; k++) acc += (double)(float)(U[i * r + k] * (float)f) * (double)D[k * cols + j];
            W[i * cols + j] += (float)(scale * acc);
        }
}

static float *file_f32(const sd_model *m, const char *name)
{
    const sd_weight_ref *w = sd_model_find(m, name);
    const sd_safetensors *st = &m->files[w->file];
    const sd_st_tensor *t = &st->tensors[w->index];
    float *v = malloc((size_t)t->numel * sizeof *v);
    sd_err e = {0};
    if (sd_st_read_f32(st, t, v, &e)) CHECK(0, "%s", e.msg);
    return v;
}

/* Every weight as sd_model_weight serves it equals the file's values, and no merged copy is left. */
static int weights_equal_file(sd_model *m)
{
    int differ = 0;
    for (int i = 0; i < m->n_weights; i++) {
        sd_tensor t;
        sd_arena a = {0};
        sd_err e = {0};
        if (m->weights[i].f16) differ++;
        if (sd_model_weight(m, &a, m->weights[i].name, &t, &e) == 0) {
            float *want = file_f32(m, m->weights[i].name);
            const sd_st_tensor *st = &m->files[m->weights[i].file].tensors[m->weights[i].index];
            if (memcmp(t.data, want, (size_t)st->numel * sizeof(float))) differ++;
            free(want);
        } else {
            differ++;
        }
        sd_arena_free(&a);
    }
    return differ;
}

static void test_f16_merge(void)
{
    if (sd_test_skip_shared("tiny SD 2.x model")) return;
    sd_model m;
    sd_err e = {0};
    char model[4096];
    snprintf(model, sizeof model, "%s", sd_test_path("golden/models/tiny-sd2.safetensors"));
    if (sd_model_open(&m, model, &e)) {
        CHECK(0, "%s", e.msg);
        return;
    }
    sd_model_set_weights_mode(&m, SD_WEIGHTS_F16, &e);
    const char *PROJ = "model.diffusion_model.input_blocks.1.1.proj_in.weight";          /* [64, 64] */
    const char *CONV = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight";      /* [64, 64, 3, 3] */
    const char *QKV = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"; /* [384, 128] */
    const sd_weight_ref *wp = sd_model_find(&m, PROJ), *wc = sd_model_find(&m, CONV), *wq = sd_model_find(&m, QKV);
    CHECK(wp && wc && wq && wq->shape[0] == 384 && wq->shape[1] == 128, "tiny-sd2 lacks the weights the test patches");
    if (!wp || !wc || !wq || wq->shape[0] != 384) {
        sd_model_close(&m);
        return;
    }
    /* LoRA A @ 0.75: proj_in (r 4, alpha 2), a 3×3 LoCon conv (r 4, no alpha), OpenCLIP k rows (r 4, alpha 8);
     * LoRA B @ -0.5: proj_in again (r 2, alpha 1), OpenCLIP q rows (r 2, no alpha) */
    float *a_pd = dyadic(4 * 64, 1), *a_pu = dyadic(64 * 4, 2), *a_cd = dyadic(4 * 64 * 9, 3), *a_cu = dyadic(64 * 4, 4);
    float *a_kd = dyadic(4 * 128, 5), *a_ku = dyadic(128 * 4, 6), *b_pd = dyadic(2 * 64, 7), *b_pu = dyadic(64 * 2, 8);
    float *b_qd = dyadic(2 * 128, 9), *b_qu = dyadic(128 * 2, 10);
    const float two = 2, eight = 8, one = 1;
    const st_entry la[] = {
        {"lora_unet_input_blocks_1_1_proj_in.lora_down.weight", 2, {4, 64}, a_pd},
        {"lora_unet_input_blocks_1_1_proj_in.lora_up.weight", 2, {64, 4}, a_pu},
        {"lora_unet_input_blocks_1_1_proj_in.alpha", 0, {0}, &two},
        {"lora_unet_input_blocks_1_0_in_layers_2.lora_down.weight", 4, {4, 64, 3, 3}, a_cd},
        {"lora_unet_input_blocks_1_0_in_layers_2.lora_up.weight", 4, {64, 4, 1, 1}, a_cu},
        {"lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_down.weight", 2, {4, 128}, a_kd},
        {"lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_up.weight", 2, {128, 4}, a_ku},
        {"lora_te_text_model_encoder_layers_0_self_attn_k_proj.alpha", 0, {0}, &eight},
    };
    const st_entry lb[] = {
        {"lora_unet_input_blocks_1_1_proj_in.lora_down.weight", 2, {2, 64}, b_pd},
        {"lora_unet_input_blocks_1_1_proj_in.lora_up.weight", 2, {64, 2}, b_pu},
        {"lora_unet_input_blocks_1_1_proj_in.alpha", 0, {0}, &one},
        {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", 2, {2, 128}, b_qd},
        {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", 2, {128, 2}, b_qu},
    };
    char pa[4200], pb[4200], pbig[4200];
    snprintf(pa, sizeof pa, "%s/lora16-a.safetensors", sd_test_tmp());
    snprintf(pb, sizeof pb, "%s/lora16-b.safetensors", sd_test_tmp());
    snprintf(pbig, sizeof pbig, "%s/lora16-big.safetensors", sd_test_tmp());
    CHECK(write_st(pa, la, 8) == 0 && write_st(pb, lb, 5) == 0, "cannot write the test LoRAs");

    /* expected: float32 of the file's halves, the modules in order, one rounding to F16 at the end */
    float *xp = file_f32(&m, PROJ), *xc = file_f32(&m, CONV), *xq = file_f32(&m, QKV);
    ref_merge(xp, 64, 64, 4, a_pu, a_pd, 0.5, 0.75);
    ref_merge(xp, 64, 64, 2, b_pu, b_pd, 0.5, -0.5);
    ref_merge(xc, 64, 64 * 9, 4, a_cu, a_cd, 1.0, 0.75);
    ref_merge(xq + 128 * 128, 128, 128, 4, a_ku, a_kd, 2.0, 0.75);
    ref_merge(xq, 128, 128, 2, b_qu, b_qd, 1.0, -0.5);

    sd_lora_state s;
    memset(&s, 0, sizeof s);
    s.mode = SD_LORA_MERGE; /* this test is about the merge's copies */
    sd_lora_list l;
    memset(&l, 0, sizeof l);
    sd_lora_list_add(&l, "a", pa, 0.75, &e);
    sd_lora_list_add(&l, "b", pb, -0.5, &e);
    /* the memory check counts F16 copies and one float32 scratch: 2·(4096 + 36864 + 49152) + 4·49152 bytes */
    const size_t need = 2 * (4096 + 36864 + 49152) + 4 * 49152;
    s.copy_limit = need - 1;
    e = (sd_err){0};
    CHECK(sd_lora_apply(&s, &m, &l, &e) != 0 && e.code == SD_ERR_NOMEM &&
              strstr(e.msg, "the LoRAs need 0.00 GB for float16 copies of the weights they patch, but only 0.00 GB") &&
              !strstr(e.msg, "--weights f32"),
          "F16 copy limit %zu: code %d \"%s\"", need - 1, e.code, e.msg);
    CHECK(s.n_patched == 0, "a refused apply left %d weights patched", s.n_patched);
    s.copy_limit = need;
    e = (sd_err){0};
    CHECK(sd_lora_apply(&s, &m, &l, &e) == 0, "apply A + B in F16 mode (limit %zu bytes): %s", need, e.msg);
    CHECK(s.n_patched == 3, "%d weights patched, want 3", s.n_patched);
    struct {
        const char *name;
        const float *want;
    } cases[] = {{PROJ, xp}, {CONV, xc}, {QKV, xq}};
    int64_t small = 0;
    for (int c = 0; c < 3; c++) {
        const sd_weight_ref *w = sd_model_find(&m, cases[c].name);
        const int64_t n = m.files[w->file].tensors[w->index].numel;
        CHECK(w->f16 != NULL && w->f32 == NULL, "%s: merged as f16 %p, f32 %p", cases[c].name, (void *)w->f16,
              (void *)w->f32);
        if (!w->f16) continue;
        int64_t bad = 0, first = -1, rounded = 0;
        for (int64_t i = 0; i < n; i++) {
            const uint16_t want = sd_f32_to_f16_1(cases[c].want[i]);
            rounded += sd_f16_to_f32_1(want) != cases[c].want[i];
            small += (want & 0x7c00u) == 0; /* zero or subnormal: lora.c's exact fallback path */
            if (w->f16[i] != want && bad++ == 0) first = i;
        }
        CHECK(bad == 0, "%s: %lld of %lld halves differ from round_to_f16(W + Σ s·f·U·D) (first at %lld: 0x%04x, want "
              "0x%04x)", cases[c].name, (long long)bad, (long long)n, (long long)first,
              first >= 0 ? w->f16[first] : 0, first >= 0 ? sd_f32_to_f16_1(cases[c].want[first]) : 0);
        CHECK(rounded > 0, "%s: no value needed rounding to F16 (the test would not see the rounding)", cases[c].name);
        printf("f16 merge %s: %lld halves bit-identical, %lld of them rounded from float32\n", cases[c].name,
               (long long)(n - bad), (long long)rounded);
        /* what the networks read: sd_model_weight's scoped conversion of the copy, and its rows */
        sd_arena a = {0};
        sd_tensor t;
        if (sd_model_weight(&m, &a, cases[c].name, &t, &e) == 0) {
            int64_t d = 0;
            for (int64_t i = 0; i < n; i++) d += t.data[i] != sd_f16_to_f32_1(w->f16[i]);
            CHECK(d == 0 && t.mem == SD_MEM_HOST, "%s: sd_model_weight: %lld values differ from the F16 copy (mem %d)",
                  cases[c].name, (long long)d, (int)t.mem);
        } else {
            CHECK(0, "%s", e.msg);
        }
        sd_arena_free(&a);
    }
    CHECK(small > 0, "no merged value is zero or subnormal in F16 (the exact fallback of the rounding is not seen)");
    printf("f16 merge: %lld merged values are zero or subnormal halves\n", (long long)small);
    {
        /* the v rows of in_proj_weight are not patched: still the file's halves; rows come from the copy */
        const sd_weight_ref *w = sd_model_find(&m, QKV);
        const sd_safetensors *st = &m.files[w->file];
        const uint16_t *raw = sd_st_data(st, &st->tensors[w->index]);
        CHECK(w->f16 && !memcmp(w->f16 + 256 * 128, raw + 256 * 128, 128 * 128 * 2), "unpatched v rows changed");
        const int32_t rows[2] = {5, 200};
        float got[2 * 128];
        CHECK(sd_model_weight_rows(&m, QKV, rows, 2, got, &e) == 0, "%s", e.msg);
        int d = 0;
        for (int j = 0; w->f16 && j < 128; j++)
            d += got[j] != sd_f16_to_f32_1(w->f16[5 * 128 + j]) || got[128 + j] != sd_f16_to_f32_1(w->f16[200 * 128 + j]);
        CHECK(d == 0, "sd_model_weight_rows: %d values differ from the F16 copy", d);
    }

    /* restore: every weight is the file's again, byte for byte, read from the mapping */
    sd_lora_list empty;
    memset(&empty, 0, sizeof empty);
    CHECK(sd_lora_apply(&s, &m, &empty, &e) == 0 && s.n_patched == 0, "restore: %s", e.msg);
    int differ = weights_equal_file(&m);
    CHECK(differ == 0, "after restoring the F16 merge, %d weights differ from the file", differ);

    /* --weights f32 merges the same set in float32: those values, rounded, are the F16 merge */
    sd_model_set_weights_mode(&m, SD_WEIGHTS_F32, &e);
    s.copy_limit = 0;
    CHECK(sd_lora_apply(&s, &m, &l, &e) == 0, "apply in F32 mode: %s", e.msg);
    for (int c = 0; c < 3; c++) {
        const sd_weight_ref *w = sd_model_find(&m, cases[c].name);
        const int64_t n = m.files[w->file].tensors[w->index].numel;
        CHECK(w->f32 && !w->f16 && !memcmp(w->f32, cases[c].want, (size_t)n * sizeof(float)),
              "%s: the float32 merge differs from W + Σ s·f·U·D", cases[c].name);
    }
    CHECK(sd_lora_apply(&s, &m, &empty, &e) == 0 && s.n_patched == 0, "restore (f32): %s", e.msg);
    differ = weights_equal_file(&m);
    CHECK(differ == 0, "after restoring the F32 merge, %d weights differ from the file", differ);
    sd_model_set_weights_mode(&m, SD_WEIGHTS_F16, &e);

    /* a merge past F16's range is refused, naming the weight, and what was merged before it is restored */
    float *huge = malloc(64 * 64 * sizeof *huge);
    for (int i = 0; i < 64 * 64; i++) huge[i] = 100.0f;
    const st_entry lbig[] = {
        {"lora_unet_input_blocks_1_1_proj_in.lora_down.weight", 2, {4, 64}, a_pd},
        {"lora_unet_input_blocks_1_1_proj_in.lora_up.weight", 2, {64, 4}, a_pu},
        {"lora_unet_input_blocks_1_1_proj_out.lora_down.weight", 2, {4, 64}, huge},
        {"lora_unet_input_blocks_1_1_proj_out.lora_up.weight", 2, {64, 4}, huge},
    };
    CHECK(write_st(pbig, lbig, 4) == 0, "cannot write %s", pbig);
    sd_lora_list lbad;
    memset(&lbad, 0, sizeof lbad);
    sd_lora_list_add(&lbad, "big", pbig, 2.0, &e); /* 2 · 4 · 100 · 100 = 80000 on every element */
    e = (sd_err){0};
    CHECK(sd_lora_apply(&s, &m, &lbad, &e) != 0 && e.code == SD_ERR_INPUT &&
              strstr(e.msg, "the LoRA gives \"model.diffusion_model.input_blocks.1.1.proj_out.weight\" the value 800") &&
              strstr(e.msg, " at element 0, beyond float16's range of ±65504 (4096 such values); --weights f32 merges "
                            "in float32"),
          "F16 overflow: code %d \"%s\"", e.code, e.msg);
    CHECK(s.n_patched == 0, "a failed apply left %d weights patched", s.n_patched);
    differ = weights_equal_file(&m);
    CHECK(differ == 0, "after a refused F16 merge, %d weights differ from the file", differ);
    sd_lora_list_free(&lbad);
    free(huge);

    sd_lora_list_free(&l);
    sd_lora_state_free(&s, &m);
    float *all[] = {a_pd, a_pu, a_cd, a_cu, a_kd, a_ku, b_pd, b_pu, b_qd, b_qu, xp, xc, xq};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    sd_model_close(&m);
}


/* ---- on the fly against the float32 merge ---- */

typedef struct fly_mod {
    const char *key;    /* kohya stem */
    const char *weight; /* LDM name of the weight it patches */
    int block;          /* OpenCLIP in_proj row block (0 q, 1 k, 2 v), -1: the whole weight */
    int64_t r;
    float alpha;        /* 0: none */
    int lora;           /* 0: LoRA A, 1: LoRA B */
} fly_mod;

/* Values in [-0.25, 0.25) from a small linear congruential sequence. */
static float *noise(int64_t n, uint32_t seed)
{
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    uint32_t x = seed * 2654435761u + 12345u;
    for (int64_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        v[i] = (float)((x >> 8) & 0xffff) / 131072.0f - 0.25f;
    }
    return v;
}

/* The two LoRA files of mods (D and U shaped after each target weight). 0, or -1. */
static int write_fly_loras(const sd_model *m, const fly_mod *mods, int n, const char *pa, const char *pb)
{
    st_entry e[2][48];
    float *owned[96];
    char names[96][160];
    memset(e, 0, sizeof e);
    int ne[2] = {0, 0}, no = 0, rc = 0;
    CHECK(n <= 16, "write_fly_loras: %d modules, room for 16", n);
    if (n > 16) return -1;
    for (int i = 0; i < n && !rc; i++) {
        const sd_weight_ref *w = sd_model_find(m, mods[i].weight);
        CHECK(w != NULL, "the test model lacks %s", mods[i].weight);
        if (!w) return -1;
        const int64_t rows = mods[i].block >= 0 ? w->shape[0] / 3 : w->shape[0];
        int64_t cols = 1;
        for (int d = 1; d < w->ndim; d++) cols *= w->shape[d];
        st_entry *d = &e[mods[i].lora][ne[mods[i].lora]++], *u = &e[mods[i].lora][ne[mods[i].lora]++];
        snprintf(names[no], sizeof names[no], "%s.lora_down.weight", mods[i].key);
        *d = (st_entry){names[no], w->ndim, {mods[i].r, w->shape[1], w->ndim == 4 ? w->shape[2] : 0,
                                             w->ndim == 4 ? w->shape[3] : 0}, NULL};
        d->v = owned[no] = noise(mods[i].r * cols, (uint32_t)(2 * i + 1));
        no++;
        snprintf(names[no], sizeof names[no], "%s.lora_up.weight", mods[i].key);
        *u = (st_entry){names[no], w->ndim, {rows, mods[i].r, 1, 1}, NULL};
        u->v = owned[no] = noise(rows * mods[i].r, (uint32_t)(2 * i + 2));
        no++;
        if (mods[i].alpha != 0) {
            st_entry *a = &e[mods[i].lora][ne[mods[i].lora]++];
            snprintf(names[no], sizeof names[no], "%s.alpha", mods[i].key);
            *a = (st_entry){names[no], 0, {0}, &mods[i].alpha};
            owned[no++] = NULL;
        }
    }
    if (write_st(pa, e[0], ne[0]) || write_st(pb, e[1], ne[1])) rc = -1;
    for (int i = 0; i < no; i++) free(owned[i]);
    return rc;
}

/* Every text tower's output (concatenated, [77·D…]) and the U-Net's on fixed inputs, malloc'd; *n values. */
static float *fly_outputs(sd_model *m, int64_t *n)
{
    sd_arena a;
    sd_arena_init(&a, 0, 0);
    sd_err e = {0};
    int64_t total = 0;
    float *out = NULL;
    for (int t = 0; t < m->n_text; t++) {
        const sd_text_config *tc = &m->text[t];
        int32_t tok[77];
        for (int i = 0; i < 77; i++)
            tok[i] = i == 0 ? tc->vocab - 2 : i < 9 ? (int32_t)((i * 7919) % (tc->vocab - 2)) : i == 9 ? tc->vocab - 1 : tc->pad_id;
        sd_tensor emb;
        if (sd_text_encode(m, tc, &a, tok, 1, 1, &emb, NULL, &e)) {
            CHECK(0, "text encoder %d: %s", t, e.msg);
            continue;
        }
        out = realloc(out, (size_t)(total + sd_numel(emb)) * sizeof *out);
        memcpy(out + total, emb.data, (size_t)sd_numel(emb) * sizeof *out);
        total += sd_numel(emb);
    }
    const sd_unet_config *c = &m->unet;
    float *xv = noise(c->in_channels * 16 * 16, 77), *cv = noise(77 * c->context_dim, 78);
    float *yv = noise(c->adm_in > 0 ? c->adm_in : 1, 79);
    sd_tensor x = {.data = xv, .ndim = 4, .ne = {1, c->in_channels, 16, 16}};
    sd_tensor ctx = {.data = cv, .ndim = 3, .ne = {1, 77, c->context_dim, 1}};
    sd_tensor y = {0};
    if (c->adm_in > 0) y = (sd_tensor){.data = yv, .ndim = 2, .ne = {1, c->adm_in, 1, 1}};
    const float ts = 500;
    sd_tensor uo;
    if (sd_unet_forward(m, &a, x, &ts, ctx, y, &uo, &e) == 0) {
        out = realloc(out, (size_t)(total + sd_numel(uo)) * sizeof *out);
        memcpy(out + total, uo.data, (size_t)sd_numel(uo) * sizeof *out);
        total += sd_numel(uo);
    } else {
        CHECK(0, "U-Net: %s", e.msg);
    }
    free(xv);
    free(cv);
    free(yv);
    sd_arena_free(&a);
    *n = total;
    return out;
}

static double max_abs_diff(const float *a, const float *b, int64_t n, int64_t i0, int64_t i1)
{
    double d = 0;
    for (int64_t i = i0; i < i1 && i < n; i++) d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return d;
}

static double max_abs(const float *a, int64_t i0, int64_t i1)
{
    double d = 0;
    for (int64_t i = i0; i < i1; i++) d = fmax(d, fabs((double)a[i]));
    return d;
}

static void fly_case(const char *label, const char *model_file, const fly_mod *mods, int n_mods)
{
    sd_model m;
    sd_err e = {0};
    if (sd_model_open(&m, sd_test_path(model_file), &e)) {
        CHECK(0, "%s", e.msg);
        return;
    }
    /* the float32 merge patches the model's own float32 copies (the exact merge of golden README §10) */
    sd_model_set_weights_mode(&m, SD_WEIGHTS_F32, &e);
    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/fly-%s-a.safetensors", sd_test_tmp(), label);
    snprintf(pb, sizeof pb, "%s/fly-%s-b.safetensors", sd_test_tmp(), label);
    if (write_fly_loras(&m, mods, n_mods, pa, pb)) {
        CHECK(0, "%s: cannot write the test LoRAs", label);
        sd_model_close(&m);
        return;
    }
    sd_lora_list l, empty;
    memset(&l, 0, sizeof l);
    memset(&empty, 0, sizeof empty);
    sd_lora_list_add(&l, "a", pa, 0.75, &e);
    sd_lora_list_add(&l, "b", pb, -0.5, &e);
    sd_lora_state s;
    memset(&s, 0, sizeof s);

    int64_t nb = 0, nm = 0, nf = 0, na = 0;
    float *base = fly_outputs(&m, &nb);
    s.mode = SD_LORA_MERGE;
    CHECK(sd_lora_apply(&s, &m, &l, &e) == 0 && s.n_patched > 0 && s.n_fly == 0, "%s merge: %s", label, e.msg);
    float *merged = fly_outputs(&m, &nm);
    CHECK(sd_lora_apply(&s, &m, &empty, &e) == 0 && s.n_patched == 0, "%s restore: %s", label, e.msg);
    s.mode = SD_LORA_FLY;
    CHECK(sd_lora_apply(&s, &m, &l, &e) == 0 && s.n_patched == 0 && s.n_fly == n_mods, "%s fly: %d modules, %s",
          label, s.n_fly, e.msg);
    int on = 0, copies = 0;
    for (int i = 0; i < m.n_weights; i++) {
        on += m.weights[i].lowrank != NULL;
        copies += m.weights[i].f16 != NULL;
    }
    const int differ = weights_equal_file(&m);
    CHECK(differ == 0 && copies == 0 && on > 0, "%s fly: %d weights differ from the file, %d F16 copies, %d with modules",
          label, differ, copies, on);
    float *fly = fly_outputs(&m, &nf);
    CHECK(sd_lora_apply(&s, &m, &empty, &e) == 0 && s.n_fly == 0, "%s restore after fly: %s", label, e.msg);
    on = 0;
    for (int i = 0; i < m.n_weights; i++) on += m.weights[i].lowrank != NULL;
    CHECK(on == 0, "%s: %d weights still carry modules after the restore", label, on);
    float *after = fly_outputs(&m, &na);
    CHECK(nb > 0 && nb == nm && nb == nf && nb == na, "%s: output sizes %lld %lld %lld %lld", label, (long long)nb,
          (long long)nm, (long long)nf, (long long)na);
    if (nb > 0 && nb == nm && nb == nf && nb == na) {
        CHECK(!memcmp(base, after, (size_t)nb * sizeof(float)), "%s: outputs after the fly restore differ from the base run",
              label);
        /* per network: text towers in order, then the U-Net */
        int64_t i0 = 0;
        for (int t = 0; t <= m.n_text; t++) {
            const int64_t len = t < m.n_text ? 77 * (int64_t)m.text[t].width : nb - i0;
            const double moved = max_abs_diff(merged, base, nb, i0, i0 + len);
            const double gap = max_abs_diff(fly, merged, nb, i0, i0 + len), scale = max_abs(merged, i0, i0 + len);
            printf("fly %s %s%d: |fly - merge| %.3g, |merge - base| %.3g, max |merge| %.3g\n", label,
                   t < m.n_text ? "text" : "unet", t < m.n_text ? t + 1 : 0, gap, moved, scale);
            CHECK(gap <= 2e-5 * scale, "%s %s%d: fly and merge differ by %.3g (tolerance 2e-5 x %.3g)", label,
                  t < m.n_text ? "text" : "unet", t < m.n_text ? t + 1 : 0, gap, scale);
            CHECK(moved >= 1e-2 * scale, "%s %s%d: the LoRA moves the output by only %.3g (the test would not see it)",
                  label, t < m.n_text ? "text" : "unet", t < m.n_text ? t + 1 : 0, moved);
            i0 += len;
        }
    }

    /* a down matrix of the wrong width: refused in both modes with the key and both shapes, nothing applied */
    const sd_weight_ref *w = sd_model_find(&m, mods[0].weight);
    float *bad = noise(4 * (w->shape[1] + 1), 5);
    const st_entry lbad[] = {
        {"x.lora_down.weight", 2, {4, w->shape[1] + 1}, bad},
        {"x.lora_up.weight", 2, {mods[0].block >= 0 ? w->shape[0] / 3 : w->shape[0], 4}, bad},
    };
    char key[200], pbad[4200], want[600];
    snprintf(key, sizeof key, "%s.lora_down.weight", mods[0].key);
    st_entry named[2] = {lbad[0], lbad[1]};
    char ukey[200];
    snprintf(ukey, sizeof ukey, "%s.lora_up.weight", mods[0].key);
    named[0].name = key;
    named[1].name = ukey;
    snprintf(pbad, sizeof pbad, "%s/fly-%s-bad.safetensors", sd_test_tmp(), label);
    CHECK(write_st(pbad, named, 2) == 0, "cannot write %s", pbad);
    snprintf(want, sizeof want, "shape mismatch: \"%s\" has shape [4,%lld], expected [4,%lld] for \"%s\"", key,
             (long long)w->shape[1] + 1, (long long)w->shape[1], w->name);
    sd_lora_list lb;
    memset(&lb, 0, sizeof lb);
    sd_lora_list_add(&lb, "bad", pbad, 1.0, &e);
    for (int mode = 0; mode < 2; mode++) {
        s.mode = mode ? SD_LORA_FLY : SD_LORA_MERGE;
        e = (sd_err){0};
        const int rc = sd_lora_apply(&s, &m, &lb, &e);
        on = 0;
        for (int i = 0; i < m.n_weights; i++) on += m.weights[i].lowrank != NULL;
        CHECK(rc != 0 && e.code == SD_ERR_INPUT && strstr(e.msg, want) && s.n_fly == 0 && s.n_patched == 0 && on == 0,
              "%s %s: bad shape gave rc %d code %d \"%s\" (want \"%s\"), %d modules left", label, mode ? "fly" : "merge", rc,
              e.code, e.msg, want, on);
    }
    free(bad);
    sd_lora_list_free(&lb);
    free(base);
    free(merged);
    free(fly);
    free(after);
    sd_lora_list_free(&l);
    sd_lora_state_free(&s, &m);
    sd_model_close(&m);
}

/* SD_LORA_AUTO: a set whose products add at most SD_LORA_FLY_MAX_EXTRA of the patched layers' work goes on the
 * fly, a heavier one is merged */
static void test_auto(void)
{
    if (sd_test_skip_shared("tiny SD 1.x model")) return;
    sd_model m;
    sd_err e = {0};
    if (sd_model_open(&m, sd_test_path("golden/models/tiny-sd1.safetensors"), &e)) {
        CHECK(0, "%s", e.msg);
        return;
    }
    /* rank 1 on fc1 [256, 64]: 1·(256 + 64) / (256·64) = 1.95 %; rank 4 on a [32, 32] to_q: 4·64 / 1024 = 25 % */
    static const fly_mod light[] = {{"lora_te_text_model_encoder_layers_0_mlp_fc1",
                                     "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight", -1, 1, 0, 0}};
    static const fly_mod heavy[] = {{"lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q",
                                     "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", -1, 4, 0, 0}};
    const struct {
        const fly_mod *mod;
        double want_extra;
        int want_fly;
    } cases[] = {{light, 320.0 / 16384.0, 1}, {heavy, 0.25, 0}};
    sd_lora_state s;
    memset(&s, 0, sizeof s);
    CHECK(s.mode == SD_LORA_AUTO, "a zeroed state's mode is %d, not SD_LORA_AUTO", (int)s.mode);
    for (int c = 0; c < 2; c++) {
        char pa[4200], pb[4200];
        snprintf(pa, sizeof pa, "%s/auto-%d-a.safetensors", sd_test_tmp(), c);
        snprintf(pb, sizeof pb, "%s/auto-%d-b.safetensors", sd_test_tmp(), c);
        if (write_fly_loras(&m, cases[c].mod, 1, pa, pb)) continue;
        sd_lora_list l;
        memset(&l, 0, sizeof l);
        sd_lora_list_add(&l, "a", pa, 1.0, &e);
        CHECK(sd_lora_apply(&s, &m, &l, &e) == 0, "auto %d: %s", c, e.msg);
        CHECK(fabs(s.fly_extra - cases[c].want_extra) < 1e-12 && (s.n_fly > 0) == cases[c].want_fly &&
                  (s.n_patched > 0) == !cases[c].want_fly,
              "auto %d: extra work %.6f (want %.6f), %d modules on the fly, %d weights merged", c, s.fly_extra,
              cases[c].want_extra, s.n_fly, s.n_patched);
        sd_lora_list_free(&l);
    }
    sd_lora_state_free(&s, &m);
    sd_model_close(&m);
}

static void test_fly(void)
{
    if (sd_test_skip_shared("tiny models")) return;
#define U_ "model.diffusion_model."
    /* SD 1.x (F32 file): a linear layer and a LoCon 3×3 conv patched by both LoRAs, a 1×1 conv used as Linear
     * (proj_in), a 1×1 skip conv, the stride-2 downsample, the time embedding, CLIP q and fc1 */
    static const fly_mod sd1[] = {
        {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q", U_ "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", -1, 4, 2, 0},
        {"lora_unet_input_blocks_1_0_in_layers_2", U_ "input_blocks.1.0.in_layers.2.weight", -1, 4, 0, 0},
        {"lora_unet_input_blocks_1_1_proj_in", U_ "input_blocks.1.1.proj_in.weight", -1, 8, 4, 0},
        {"lora_unet_input_blocks_4_0_skip_connection", U_ "input_blocks.4.0.skip_connection.weight", -1, 4, 1, 0},
        {"lora_unet_input_blocks_3_0_op", U_ "input_blocks.3.0.op.weight", -1, 2, 0, 0},
        {"lora_unet_time_embed_0", U_ "time_embed.0.weight", -1, 4, 0, 0},
        {"lora_te_text_model_encoder_layers_0_self_attn_q_proj", "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight", -1, 4, 8, 0},
        {"lora_te_text_model_encoder_layers_0_mlp_fc1", "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight", -1, 4, 0, 0},
        {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q", U_ "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", -1, 2, 0, 1},
        {"lora_unet_input_blocks_1_0_in_layers_2", U_ "input_blocks.1.0.in_layers.2.weight", -1, 2, 1, 1},
    };
    fly_case("sd1", "golden/models/tiny-sd1.safetensors", sd1, (int)(sizeof sd1 / sizeof sd1[0]));
    /* SD 2.x (F16 file): OpenCLIP q and v row blocks of in_proj (q by both LoRAs), out_proj, attn2 to_k, LoCon */
    static const fly_mod sd2[] = {
        {"lora_te_text_model_encoder_layers_0_self_attn_q_proj", "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", 0, 4, 2, 0},
        {"lora_te_text_model_encoder_layers_0_self_attn_v_proj", "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", 2, 4, 0, 0},
        {"lora_te_text_model_encoder_layers_0_self_attn_out_proj", "cond_stage_model.model.transformer.resblocks.0.attn.out_proj.weight", -1, 4, 0, 0},
        {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k", U_ "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", -1, 4, 0, 0},
        {"lora_unet_input_blocks_1_0_in_layers_2", U_ "input_blocks.1.0.in_layers.2.weight", -1, 4, 2, 0},
        {"lora_te_text_model_encoder_layers_0_self_attn_q_proj", "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", 0, 2, 0, 1},
        {"lora_unet_input_blocks_1_1_proj_in", U_ "input_blocks.1.1.proj_in.weight", -1, 4, 0, 1},
    };
    fly_case("sd2", "golden/models/tiny-sd2.safetensors", sd2, (int)(sizeof sd2 / sizeof sd2[0]));
    /* SDXL (F16 file): both text towers (CLIP q, OpenCLIP k block and c_proj), attn2 to_k by both LoRAs, LoCon */
    static const fly_mod xl[] = {
        {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj", "conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight", -1, 4, 0, 0},
        {"lora_te2_text_model_encoder_layers_0_self_attn_k_proj", "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight", 1, 4, 2, 0},
        {"lora_te2_text_model_encoder_layers_0_mlp_fc2", "conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_proj.weight", -1, 4, 0, 0},
        {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", U_ "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", -1, 4, 0, 0},
        {"lora_unet_input_blocks_1_0_in_layers_2", U_ "input_blocks.1.0.in_layers.2.weight", -1, 4, 0, 0},
        {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", U_ "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", -1, 2, 1, 1},
    };
    fly_case("sdxl", "golden/models/tiny-sdxl.safetensors", xl, (int)(sizeof xl / sizeof xl[0]));
#undef U_
}

int main(void)
{
    test_fly();
    test_auto();
    test_f16_merge();
    test_sdxl_map();
    test_keys();
    test_tags();
    test_reference();
    TEST_MAIN_END();
}
