/* lora.c — LoRA files: key mapping, prompt tags, merging into the model's weights (sdgen/lora.h,
 * docs/LORA.md).
 *
 * The module names follow the two conventions LoRA trainers write:
 *  - kohya sd-scripts / A1111 (extensions-builtin/Lora): "lora_unet_" or "lora_te[12]_" + the
 *    module's path in the diffusers (or, for kohya's SDXL trainer, the LDM) model with every '.'
 *    written '_';
 *  - diffusers (loaders.LoraLoaderMixin, training scripts' save_lora_weights): "unet." /
 *    "text_encoder." + the dotted diffusers path + ".lora.down.weight" etc.
 * Both become one canonical spelling ("unet/down_blocks_0_attentions_0_proj_in") looked up in a table
 * built from the model's own weight names: the diffusers paths are enumerated from the U-Net's
 * architecture and translated with the model's diffusers→LDM name translation (diffusers.c), so
 * single files and diffusers folders resolve alike.
 */
#include "sdgen/lora.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diffusers.h"
#include "sdgen/hash.h"
#include "sdgen/lowrank.h"
#include "sdgen/safetensors.h"

/* ---- canonical names ---- */

static int ends_with(const char *s, const char *suf, size_t *stem)
{
    size_t n = strlen(s), k = strlen(suf);
    if (n < k || strcmp(s + n - k, suf)) return 0;
    *stem = n - k;
    return 1;
}

/* "<comp>/<module with '.' as '_'>" into out. */
static int canonical(const char *comp, const char *module, size_t len, char *out, size_t cap)
{
    size_t nc = strlen(comp);
    if (len == 0 || nc + 1 + len + 1 > cap) return -1;
    memcpy(out, comp, nc);
    out[nc] = '/';
    for (size_t i = 0; i < len; i++) out[nc + 1 + i] = module[i] == '.' ? '_' : module[i];
    out[nc + 1 + len] = 0;
    return 0;
}

int sd_lora_parse_key(const char *key, char *module, size_t cap, sd_lora_part *part)
{
    if (strlen(key) > 512) return -1;
    /* kohya / A1111 */
    static const struct { const char *prefix, *comp; } kohya[] = {
        {"lora_unet_", "unet"}, {"lora_te1_", "te1"}, {"lora_te2_", "te2"}, {"lora_te_", "te1"}};
    for (size_t k = 0; k < sizeof kohya / sizeof kohya[0]; k++) {
        size_t np = strlen(kohya[k].prefix);
        if (strncmp(key, kohya[k].prefix, np)) continue;
        const char *rest = key + np;
        size_t stem;
        if (ends_with(rest, ".lora_down.weight", &stem)) *part = SD_LORA_PART_DOWN;
        else if (ends_with(rest, ".lora_up.weight", &stem)) *part = SD_LORA_PART_UP;
        else if (ends_with(rest, ".alpha", &stem)) *part = SD_LORA_PART_ALPHA;
        else return -1;
        if (memchr(rest, '.', stem)) return -1; /* the module part of a kohya name has no dots */
        return canonical(kohya[k].comp, rest, stem, module, cap);
    }
    /* diffusers / PEFT */
    static const struct { const char *prefix, *comp; } diff[] = {
        {"unet.", "unet"}, {"text_encoder_2.", "te2"}, {"text_encoder.", "te1"}};
    static const struct { const char *suffix; sd_lora_part part; } sufs[] = {
        {".lora.down.weight", SD_LORA_PART_DOWN},
        {".lora.up.weight", SD_LORA_PART_UP},
        {".lora_A.weight", SD_LORA_PART_DOWN},
        {".lora_B.weight", SD_LORA_PART_UP},
        {".lora_linear_layer.down.weight", SD_LORA_PART_DOWN},
        {".lora_linear_layer.up.weight", SD_LORA_PART_UP},
        {".alpha", SD_LORA_PART_ALPHA}};
    /* the attention-processor spelling (diffusers before 0.21): "<attn>.processor.to_q_lora.down.weight" */
    static const struct { const char *mid, *leaf; } procs[] = {
        {".processor.to_q_lora.", ".to_q"}, {".processor.to_k_lora.", ".to_k"},
        {".processor.to_v_lora.", ".to_v"}, {".processor.to_out_lora.", ".to_out.0"}};
    for (size_t k = 0; k < sizeof diff / sizeof diff[0]; k++) {
        size_t np = strlen(diff[k].prefix);
        if (strncmp(key, diff[k].prefix, np)) continue;
        const char *rest = key + np;
        for (size_t p = 0; p < sizeof procs / sizeof procs[0]; p++) {
            const char *at = strstr(rest, procs[p].mid);
            if (!at) continue;
            const char *tail = at + strlen(procs[p].mid);
            if (!strcmp(tail, "down.weight")) *part = SD_LORA_PART_DOWN;
            else if (!strcmp(tail, "up.weight")) *part = SD_LORA_PART_UP;
            else return -1;
            char buf[600];
            int n = snprintf(buf, sizeof buf, "%.*s%s", (int)(at - rest), rest, procs[p].leaf);
            if (n <= 0 || (size_t)n >= sizeof buf) return -1;
            return canonical(diff[k].comp, buf, (size_t)n, module, cap);
        }
        for (size_t s = 0; s < sizeof sufs / sizeof sufs[0]; s++) {
            size_t stem;
            if (!ends_with(rest, sufs[s].suffix, &stem)) continue;
            *part = sufs[s].part;
            return canonical(diff[k].comp, rest, stem, module, cap);
        }
        return -1;
    }
    return -1;
}

/* ---- the table ---- */

static int map_add(sd_lora_map *map, const char *name, int weight, int64_t row0, int64_t rows, int64_t cols)
{
    if (map->n == map->cap) {
        int nc = map->cap ? map->cap * 2 : 512;
        char **nn = realloc(map->names, (size_t)nc * sizeof *nn);
        if (!nn) return -1;
        map->names = nn;
        sd_lora_target *nt = realloc(map->targets, (size_t)nc * sizeof *nt);
        if (!nt) return -1;
        map->targets = nt;
        map->cap = nc;
    }
    char *s = strdup(name);
    if (!s) return -1;
    map->names[map->n] = s;
    map->targets[map->n] = (sd_lora_target){weight, row0, rows, cols};
    map->n++;
    return 0;
}

static int64_t row_len(const sd_weight_ref *w)
{
    int64_t c = 1;
    for (int d = 1; d < w->ndim; d++) c *= w->shape[d];
    return c;
}

/* A whole weight (linear [out,in] or conv [out,in,kh,kw]) under a module name. */
static int map_add_weight(sd_lora_map *map, const sd_model *m, const char *comp, const char *module, const sd_weight_ref *w)
{
    if (!w || (w->ndim != 2 && w->ndim != 4)) return 0;
    char name[640];
    if (canonical(comp, module, strlen(module), name, sizeof name)) return 0;
    return map_add(map, name, (int)(w - m->weights), 0, w->shape[0], row_len(w));
}

/* A diffusers U-Net module path, if the model has the weight it translates to. */
static int map_add_unet_diffusers(sd_lora_map *map, const sd_model *m, const sd_diffusers_layout *lay, const char *module)
{
    char dn[512], ldm[1024];
    int conv = 0;
    snprintf(dn, sizeof dn, "%s.weight", module);
    if (sd_diffusers_ldm_name("unet", dn, lay, ldm, sizeof ldm, &conv)) return 0;
    return map_add_weight(map, m, "unet", module, sd_model_find(m, ldm));
}

static int map_add_resnet(sd_lora_map *map, const sd_model *m, const sd_diffusers_layout *lay, const char *pre)
{
    static const char *const leaves[] = {"conv1", "conv2", "time_emb_proj", "conv_shortcut"};
    char mod[512];
    for (size_t k = 0; k < sizeof leaves / sizeof leaves[0]; k++) {
        snprintf(mod, sizeof mod, "%s.%s", pre, leaves[k]);
        if (map_add_unet_diffusers(map, m, lay, mod)) return -1;
    }
    return 0;
}

static int map_add_attention(sd_lora_map *map, const sd_model *m, const sd_diffusers_layout *lay, const char *pre)
{
    static const char *const leaves[] = {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                                         "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
                                         "ff.net.0.proj", "ff.net.2"};
    char mod[512];
    snprintf(mod, sizeof mod, "%s.proj_in", pre);
    if (map_add_unet_diffusers(map, m, lay, mod)) return -1;
    snprintf(mod, sizeof mod, "%s.proj_out", pre);
    if (map_add_unet_diffusers(map, m, lay, mod)) return -1;
    for (int b = 0; b < 64; b++) {
        for (size_t k = 0; k < sizeof leaves / sizeof leaves[0]; k++) {
            snprintf(mod, sizeof mod, "%s.transformer_blocks.%d.%s", pre, b, leaves[k]);
            int before = map->n;
            if (map_add_unet_diffusers(map, m, lay, mod)) return -1;
            if (k == 0 && map->n == before) return 0; /* no more transformer blocks */
        }
    }
    return 0;
}

static int map_add_unet(sd_lora_map *map, const sd_model *m)
{
    const sd_unet_config *u = &m->unet;
    sd_diffusers_layout lay;
    memset(&lay, 0, sizeof lay);
    lay.unet_res_blocks = u->num_res_blocks;
    for (int i = 0; i < u->n_levels && i < SD_MAX_LEVELS; i++) lay.unet_up_attn[i] = u->attn[u->n_levels - 1 - i];
    char pre[256];
    for (int i = 0; i < u->n_levels; i++) {
        for (int j = 0; j < u->num_res_blocks; j++) {
            snprintf(pre, sizeof pre, "down_blocks.%d.resnets.%d", i, j);
            if (map_add_resnet(map, m, &lay, pre)) return -1;
            snprintf(pre, sizeof pre, "down_blocks.%d.attentions.%d", i, j);
            if (map_add_attention(map, m, &lay, pre)) return -1;
        }
        snprintf(pre, sizeof pre, "down_blocks.%d.downsamplers.0.conv", i);
        if (map_add_unet_diffusers(map, m, &lay, pre)) return -1;
        for (int j = 0; j <= u->num_res_blocks; j++) {
            snprintf(pre, sizeof pre, "up_blocks.%d.resnets.%d", i, j);
            if (map_add_resnet(map, m, &lay, pre)) return -1;
            snprintf(pre, sizeof pre, "up_blocks.%d.attentions.%d", i, j);
            if (map_add_attention(map, m, &lay, pre)) return -1;
        }
        snprintf(pre, sizeof pre, "up_blocks.%d.upsamplers.0.conv", i);
        if (map_add_unet_diffusers(map, m, &lay, pre)) return -1;
    }
    if (map_add_resnet(map, m, &lay, "mid_block.resnets.0") || map_add_resnet(map, m, &lay, "mid_block.resnets.1") ||
        map_add_attention(map, m, &lay, "mid_block.attentions.0"))
        return -1;
    static const char *const top[] = {"conv_in", "conv_out", "time_embedding.linear_1", "time_embedding.linear_2"};
    for (size_t k = 0; k < sizeof top / sizeof top[0]; k++)
        if (map_add_unet_diffusers(map, m, &lay, top[k])) return -1;
    /* kohya's SDXL trainer names modules by their LDM path ("input_blocks_4_1_transformer_blocks_0_attn1_to_q") */
    const size_t np = strlen(SD_PREFIX_UNET);
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        size_t stem;
        if (strncmp(w->name, SD_PREFIX_UNET, np) || !ends_with(w->name, ".weight", &stem) || stem <= np) continue;
        char mod[512];
        snprintf(mod, sizeof mod, "%.*s", (int)(stem - np), w->name + np);
        if (map_add_weight(map, m, "unet", mod, w)) return -1;
    }
    return 0;
}

/* Text tower t: the transformers CLIPTextModel module paths ("text_model.encoder.layers.N.self_attn.q_proj"),
 * which is how both formats name the text encoder's modules. OpenCLIP towers (SD 2.x, SDXL's second)
 * hold q, k and v as row blocks of one in_proj_weight [3C, C] (torch nn.MultiheadAttention), and
 * out_proj / fc1 / fc2 as attn.out_proj, mlp.c_fc, mlp.c_proj. */
static int map_add_text(sd_lora_map *map, const sd_model *m, int t)
{
    const sd_text_config *tc = &m->text[t];
    char comp[8], mod[512];
    snprintf(comp, sizeof comp, "te%d", t + 1);
    const size_t np = strlen(tc->prefix);
    for (int i = 0; i < m->n_weights; i++) {
        const sd_weight_ref *w = &m->weights[i];
        if (strncmp(w->name, tc->prefix, np) || w->ndim != 2) continue;
        const char *rest = w->name + np;
        size_t stem;
        if (tc->kind == SD_TEXT_CLIP_HF) {
            if (strncmp(rest, "encoder.layers.", 15) || !ends_with(rest, ".weight", &stem)) continue;
            snprintf(mod, sizeof mod, "text_model.%.*s", (int)stem, rest);
            if (map_add_weight(map, m, comp, mod, w)) return -1;
            continue;
        }
        int l = -1, n = -1;
        if (sscanf(rest, "transformer.resblocks.%d.%n", &l, &n) != 1 || n <= 0 || l < 0 || l > 4096) continue;
        const char *leaf = rest + n;
        char name[640];
        if (!strcmp(leaf, "attn.in_proj_weight") && w->shape[0] % 3 == 0) {
            const int64_t c = w->shape[0] / 3;
            static const char *const qkv[] = {"q_proj", "k_proj", "v_proj"};
            for (int k = 0; k < 3; k++) {
                snprintf(mod, sizeof mod, "text_model.encoder.layers.%d.self_attn.%s", l, qkv[k]);
                if (canonical(comp, mod, strlen(mod), name, sizeof name) ||
                    map_add(map, name, i, k * c, c, w->shape[1]))
                    return -1;
            }
        } else {
            const char *as = !strcmp(leaf, "attn.out_proj.weight") ? "self_attn.out_proj"
                             : !strcmp(leaf, "mlp.c_fc.weight")    ? "mlp.fc1"
                             : !strcmp(leaf, "mlp.c_proj.weight")  ? "mlp.fc2"
                                                                   : NULL;
            if (!as) continue;
            snprintf(mod, sizeof mod, "text_model.encoder.layers.%d.%s", l, as);
            if (map_add_weight(map, m, comp, mod, w)) return -1;
        }
    }
    return 0;
}

void sd_lora_map_free(sd_lora_map *map)
{
    for (int i = 0; i < map->n; i++) free(map->names[i]);
    free(map->names);
    free(map->targets);
    sd_name_index_free(&map->index);
    memset(map, 0, sizeof *map);
}

int sd_lora_map_build(const sd_model *m, sd_lora_map *map, sd_err *err)
{
    memset(map, 0, sizeof *map);
    int rc = 0;
    if (m->has_unet) rc = map_add_unet(map, m);
    for (int t = 0; !rc && t < m->n_text; t++) rc = map_add_text(map, m, t);
    if (!rc) rc = sd_name_index_init(&map->index, map->n > 0 ? map->n : 1);
    if (rc) {
        sd_lora_map_free(map);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory (LoRA name table)");
    }
    /* the diffusers and LDM spellings of one weight differ, so a repeated name is the same module twice */
    for (int i = 0; i < map->n; i++) (void)sd_name_index_add(&map->index, map->names[i], i);
    return 0;
}

int sd_lora_map_find(const sd_lora_map *map, const char *module)
{
    return sd_name_index_find(&map->index, module);
}

/* ---- prompt tags and names ---- */

void sd_lora_list_free(sd_lora_list *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->items[i].name);
        free(l->items[i].path);
    }
    memset(l, 0, sizeof *l);
}

int sd_lora_list_add(sd_lora_list *l, const char *name, const char *path, double scale, sd_err *err)
{
    if (l->n >= SD_LORA_MAX) return sd_errf(err, "more than %d LoRAs in one generation", SD_LORA_MAX);
    sd_lora_use *u = &l->items[l->n];
    u->name = strdup(name);
    u->path = path ? strdup(path) : NULL;
    u->scale = scale;
    u->scale_unet = scale;
    if (!u->name || (path && !u->path)) {
        free(u->name);
        free(u->path);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    }
    l->n++;
    return 0;
}

/* A LoRA weight: a finite decimal number, |w| ≤ 100 (a bound well past any useful weight). */
static int parse_scale(const char *s, size_t n, double *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(buf, &end);
    while (end && (*end == ' ' || *end == '\t')) end++;
    if (end == buf || !end || *end || errno || !isfinite(v) || fabs(v) > 100) return -1;
    *out = v;
    return 0;
}

/* A name that can only mean a file inside the LoRA folder. */
static int name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 255) return 0;
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || s[i] == '\\' || (unsigned char)s[i] < 0x20) return 0;
    return 1;
}

/* At most `max` bytes of s for a one-line message: control characters become '?', and "…" marks a cut. */
static const char *excerpt(const char *s, size_t n, size_t max, char *buf, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < n && i < max && w + 1 < cap; i++) {
        const unsigned char c = (unsigned char)s[i];
        buf[w++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    buf[w] = 0;
    if (n > max && w + 4 < cap) memcpy(buf + w, "…", 4);
    return buf;
}

/* The multipliers of a tag body "NAME[:FIELD]..." (len bytes, the name nlen): A1111's ExtraNetworkParams
 * splits the fields at ':' into positional ones and "key=value" ones; ExtraNetworkLora.activate takes
 * te = positional 1 (else 1.0), overridden by te=; unet = positional 2 (else te), overridden by unet=. */
static int tag_multipliers(const char *body, size_t len, size_t nlen, double *te, double *unet, sd_err *err)
{
    char ex[256], ex2[128];
    double pos[2];
    int npos = 0, has_te = 0, has_unet = 0;
    double named_te = 0, named_unet = 0;
    size_t at = nlen;
    while (at < len) {
        const char *f = body + at + 1;
        const char *c = memchr(f, ':', len - at - 1);
        const size_t fl = c ? (size_t)(c - f) : len - at - 1;
        const char *eq = memchr(f, '=', fl);
        double v;
        const char *vs = eq ? eq + 1 : f;
        const size_t vl = eq ? fl - (size_t)(eq + 1 - f) : fl;
        const size_t kl = eq ? (size_t)(eq - f) : 0;
        if (eq && !((kl == 2 && !strncmp(f, "te", 2)) || (kl == 4 && !strncmp(f, "unet", 4))))
            return sd_errf(err, "LoRA tag \"<lora:%s>\": \"%s\" is not supported (named multipliers: te=, unet=; "
                           "DyLoRA's dyn is not supported)", excerpt(body, len, 200, ex, sizeof ex),
                           excerpt(f, fl, 60, ex2, sizeof ex2));
        if (!eq && npos == 2)
            return sd_errf(err, "LoRA tag \"<lora:%s>\": at most two multipliers (text encoder, U-Net); a third "
                           "field is DyLoRA's dyn, which is not supported", excerpt(body, len, 200, ex, sizeof ex));
        if (parse_scale(vs, vl, &v))
            return sd_errf(err, "LoRA tag \"<lora:%s>\": the weight \"%s\" is not a number between -100 and 100",
                           excerpt(body, len, 200, ex, sizeof ex), excerpt(vs, vl, 60, ex2, sizeof ex2));
        if (!eq) pos[npos++] = v;
        else if (kl == 2) has_te = 1, named_te = v;
        else has_unet = 1, named_unet = v;
        at += fl + 1;
    }
    *te = npos > 0 ? pos[0] : 1.0;
    if (has_te) *te = named_te;
    *unet = npos > 1 ? pos[1] : *te;
    if (has_unet) *unet = named_unet;
    return 0;
}

int sd_lora_strip_tags(const char *text, char **out, sd_lora_list *l, sd_err *err)
{
    char ex[256];
    *out = NULL;
    const size_t n = strlen(text);
    char *o = malloc(n + 1);
    if (!o) return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    size_t w = 0, i = 0;
    while (i < n) {
        if (strncmp(text + i, "<lora:", 6)) {
            o[w++] = text[i++];
            continue;
        }
        const char *body = text + i + 6;
        const char *gt = strchr(body, '>');
        /* a '<' before the '>' means this tag was never closed */
        const char *lt = memchr(body, '<', gt ? (size_t)(gt - body) : strlen(body));
        if (!gt || lt) {
            const size_t rest = lt ? (size_t)(lt - (text + i)) : strlen(text + i);
            free(o);
            return sd_errf(err, "LoRA tag \"%s\" has no closing '>'", excerpt(text + i, rest, 40, ex, sizeof ex));
        }
        const size_t len = (size_t)(gt - body);
        const char *c1 = memchr(body, ':', len);
        const size_t nlen = c1 ? (size_t)(c1 - body) : len;
        double te = 1.0, unet = 0.0;
        if (tag_multipliers(body, len, nlen, &te, &unet, err)) {
            free(o);
            return -1;
        }
        if (!name_ok(body, nlen)) {
            free(o);
            return sd_errf(err, "LoRA tag \"<lora:%s>\": the name must be a file name in the LoRA folder (no '/', "
                           "not empty)", excerpt(body, len, 200, ex, sizeof ex));
        }
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)nlen, body);
        if (sd_lora_list_add(l, name, NULL, te, err)) {
            free(o);
            return -1;
        }
        l->items[l->n - 1].scale_unet = unet;
        i = (size_t)(gt - text) + 1;
    }
    o[w] = 0;
    *out = o;
    return 0;
}

int sd_lora_parse_arg(const char *arg, sd_lora_list *l, sd_err *err)
{
    const size_t n = strlen(arg);
    if (n == 0 || n > 4000) return sd_errf(err, "expected PATH or PATH:WEIGHT");
    double scale = 1.0;
    size_t plen = n;
    const char *colon = strrchr(arg, ':');
    if (colon && parse_scale(colon + 1, strlen(colon + 1), &scale) == 0) plen = (size_t)(colon - arg);
    else scale = 1.0;
    char ex[300];
    if (plen == 0) return sd_errf(err, "\"%s\": no file named", excerpt(arg, n, 200, ex, sizeof ex));
    char *path = strndup(arg, plen);
    if (!path) return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char name[256];
    snprintf(name, sizeof name, "%s", base);
    size_t stem;
    /* a bare name (no folder, no .safetensors) means a file of the LoRA folder, as a prompt tag does */
    const int bare = !strchr(path, '/') && !ends_with(path, ".safetensors", &stem);
    char *dot = strrchr(name, '.');
    if (dot && dot != name && !bare) *dot = 0;
    if (bare && !name_ok(name, strlen(name))) {
        free(path);
        return sd_errf(err, "\"%s\": not a usable LoRA name", excerpt(arg, n, 200, ex, sizeof ex));
    }
    int rc = sd_lora_list_add(l, name, bare ? NULL : path, scale, err);
    free(path);
    return rc;
}

static int regular_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int sd_lora_resolve(sd_lora_list *l, const char *dir, sd_err *err)
{
    for (int i = 0; i < l->n; i++) {
        sd_lora_use *u = &l->items[i];
        if (u->path) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s.safetensors", dir, u->name);
        if (!regular_file(p)) {
            static const char *const pickles[] = {".pt", ".ckpt", ".bin"};
            for (size_t k = 0; k < sizeof pickles / sizeof pickles[0]; k++) {
                char q[4400];
                snprintf(q, sizeof q, "%s/%s%s", dir, u->name, pickles[k]);
                if (regular_file(q))
                    return sd_errf(err, "<lora:%s>: %s is a PyTorch pickle, which sdgen does not read; convert it to "
                                   ".safetensors", u->name, q);
            }
            return sd_errf(err, "<lora:%s>: no file %s (LoRA folder: --lora-dir)", u->name, p);
        }
        u->path = strdup(p);
        if (!u->path) return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    }
    return 0;
}

int sd_lora_short_hash(const char *path, char out[13], sd_err *err)
{
    out[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sd_errf(err, "%s: cannot open: %s", path, strerror(errno));
    unsigned char h8[8];
    if (fread(h8, 1, 8, f) != 8) {
        fclose(f);
        return sd_errf(err, "%s: too short for a safetensors file", path);
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | h8[i];
    if (hl > SD_ST_MAX_HEADER || fseeko(f, (off_t)(8 + hl), SEEK_SET)) {
        fclose(f);
        return sd_errf(err, "%s: bad safetensors header length", path);
    }
    sd_sha256 s;
    sd_sha256_init(&s);
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) sd_sha256_update(&s, buf, got);
    int bad = ferror(f);
    fclose(f);
    if (bad) return sd_errf(err, "%s: read error", path);
    uint8_t d[32];
    char hex[65];
    sd_sha256_final(&s, d);
    sd_sha256_hex(d, hex);
    memcpy(out, hex, 12);
    out[12] = 0;
    return 0;
}

/* ---- one file ---- */

typedef struct lora_module {
    char name[640];
    int down, up, alpha;  /* tensor indexes in the file, -1 = absent */
    int target;           /* map entry */
} lora_module;

typedef struct lora_file {
    sd_safetensors st;
    int n;
    lora_module *mods;
} lora_file;

static void lora_file_close(lora_file *f)
{
    free(f->mods);
    sd_st_close(&f->st);
    memset(f, 0, sizeof *f);
}

static void shape_str(const int64_t *s, int nd, char *out, size_t cap)
{
    size_t w = 0;
    out[0] = 0;
    for (int d = 0; d < nd && w < cap; d++) w += (size_t)snprintf(out + w, cap - w, "%s%lld", d ? "," : "", (long long)s[d]);
}

static int is_float(sd_dtype d) { return d == SD_DT_F32 || d == SD_DT_F16 || d == SD_DT_BF16 || d == SD_DT_F64; }

/* Keys not applied, for the one warning line: the first few names and a count. */
typedef struct unknown_list {
    int n;
    char text[600];
} unknown_list;

static void unknown_add(unknown_list *u, const char *key)
{
    if (u->n < 4) {
        size_t w = strlen(u->text);
        snprintf(u->text + w, sizeof u->text - w, "%s\"%.120s\"", u->n ? ", " : "", key);
    }
    u->n++;
}

/* The family a kohya trainer wrote into the metadata (ss_base_model_version: "sd_v1", "sd_v2_…",
 * "sdxl_base_v1-0", …), or SD_FAMILY_UNKNOWN. */
static sd_family meta_family(const sd_safetensors *st)
{
    const char *v = sd_st_meta(st, "ss_base_model_version");
    if (!v) return SD_FAMILY_UNKNOWN;
    if (!strncmp(v, "sdxl", 4)) return SD_FAMILY_SDXL;
    if (!strncmp(v, "sd_v1", 5)) return SD_FAMILY_SD1;
    if (!strncmp(v, "sd_v2", 5)) return SD_FAMILY_SD2;
    return SD_FAMILY_UNKNOWN;
}

/* Open and check a LoRA against model m: every module's tensors, shapes, rank, alpha and values. */
static int lora_file_open(lora_file *f, const sd_model *m, const sd_lora_map *map, const char *path, unknown_list *unk,
                          sd_err *err)
{
    memset(f, 0, sizeof *f);
    if (sd_st_open(&f->st, path, err)) return -1;
    const sd_safetensors *st = &f->st;
    sd_family fam = meta_family(st);
    if (fam != SD_FAMILY_UNKNOWN && fam != m->family) {
        sd_errf(err, "%s: a LoRA for %s models (ss_base_model_version \"%s\"); the model is %s", path,
                sd_family_name(fam), sd_st_meta(st, "ss_base_model_version"), sd_family_name(m->family));
        goto fail;
    }
    f->mods = calloc((size_t)(st->n_tensors > 0 ? st->n_tensors : 1), sizeof *f->mods);
    sd_name_index ix = {0};
    if (!f->mods || sd_name_index_init(&ix, st->n_tensors > 0 ? st->n_tensors : 1)) {
        sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    int other_family_key = -1;
    for (int i = 0; i < st->n_tensors; i++) {
        const sd_st_tensor *t = &st->tensors[i];
        char mod[640];
        sd_lora_part part;
        if (sd_lora_parse_key(t->name, mod, sizeof mod, &part)) {
            unknown_add(unk, t->name);
            continue;
        }
        if (!strncmp(mod, "te2/", 4) && m->n_text < 2 && other_family_key < 0) other_family_key = i;
        int k = sd_name_index_find(&ix, mod);
        if (k < 0) {
            k = f->n++;
            lora_module *lm = &f->mods[k];
            snprintf(lm->name, sizeof lm->name, "%s", mod);
            lm->down = lm->up = lm->alpha = -1;
            (void)sd_name_index_add(&ix, lm->name, k);
        }
        lora_module *lm = &f->mods[k];
        int *slot = part == SD_LORA_PART_DOWN ? &lm->down : part == SD_LORA_PART_UP ? &lm->up : &lm->alpha;
        if (*slot >= 0) {
            sd_errf(err, "%s: duplicate keys: \"%s\" and \"%s\" are both the %s of one module", path,
                    st->tensors[*slot].name, t->name, part == SD_LORA_PART_DOWN ? "down weight"
                                                      : part == SD_LORA_PART_UP ? "up weight" : "alpha");
            sd_name_index_free(&ix);
            goto fail;
        }
        *slot = i;
    }
    sd_name_index_free(&ix);
    if (other_family_key >= 0) {
        sd_errf(err, "%s: an SDXL LoRA (it patches a second text encoder: \"%s\"); the model is %s with one text encoder",
                path, st->tensors[other_family_key].name, sd_family_name(m->family));
        goto fail;
    }
    /* every module: both matrices, a target, consistent shapes, finite values */
    int used = 0;
    /* which weights (and which of OpenCLIP's q/k/v row blocks) a module of this file patches already */
    unsigned char *hit = calloc((size_t)(m->n_weights > 0 ? m->n_weights : 1), 1);
    if (!hit) {
        sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (int k = 0; k < f->n; k++) {
        lora_module *lm = &f->mods[k];
        if (lm->down < 0 || lm->up < 0) {
            const int have = lm->down >= 0 ? lm->down : lm->up >= 0 ? lm->up : lm->alpha;
            sd_errf(err, "%s: \"%s\" has no matching %s weight", path, st->tensors[have].name,
                    lm->down < 0 ? "down" : "up");
            free(hit);
            goto fail;
        }
        lm->target = sd_lora_map_find(map, lm->name);
        if (lm->target < 0) {
            unknown_add(unk, st->tensors[lm->down].name);
            unknown_add(unk, st->tensors[lm->up].name);
            if (lm->alpha >= 0) unknown_add(unk, st->tensors[lm->alpha].name);
            continue;
        }
        const sd_lora_target *tg = &map->targets[lm->target];
        const sd_weight_ref *w = &m->weights[tg->weight];
        const sd_st_tensor *D = &st->tensors[lm->down], *U = &st->tensors[lm->up];
        const unsigned bit = 1u << (tg->rows > 0 ? (unsigned)(tg->row0 / tg->rows) & 7u : 0u);
        if (hit[tg->weight] & bit) {
            int other = -1;
            for (int q = 0; q < k && other < 0; q++)
                if (f->mods[q].target >= 0 && map->targets[f->mods[q].target].weight == tg->weight &&
                    map->targets[f->mods[q].target].row0 == tg->row0)
                    other = q;
            sd_errf(err, "%s: duplicate keys: \"%s\" and \"%s\" patch the same weight \"%s\"", path,
                    other >= 0 ? st->tensors[f->mods[other].down].name : "?", D->name, w->name);
            free(hit);
            goto fail;
        }
        hit[tg->weight] |= (unsigned char)bit;
        char ws[96], ds[96], us[96], want[96];
        int64_t wshape[SD_ST_MAX_DIMS];
        for (int d = 0; d < w->ndim; d++) wshape[d] = w->shape[d];
        wshape[0] = tg->rows;
        shape_str(wshape, w->ndim, ws, sizeof ws);
        shape_str(D->shape, D->ndim, ds, sizeof ds);
        shape_str(U->shape, U->ndim, us, sizeof us);
        if (!is_float(D->dtype) || !is_float(U->dtype)) {
            sd_errf(err, "%s: \"%s\" has dtype %s; LoRA weights must be F32, F16, BF16 or F64", path,
                    (is_float(D->dtype) ? U : D)->name, sd_dtype_name((is_float(D->dtype) ? U : D)->dtype));
            free(hit);
            goto fail;
        }
        const int64_t r = D->ndim >= 1 ? D->shape[0] : 0;
        if (D->ndim < 2 || r == 0) {
            sd_errf(err, "%s: \"%s\" has shape [%s]: rank 0 or no matrix", path, D->name, ds);
            free(hit);
            goto fail;
        }
        if (r > SD_LORA_MAX_RANK || r > tg->rows + tg->cols) {
            sd_errf(err, "%s: \"%s\" has rank %lld, more than the layer it patches (\"%s\" [%s]) can use", path, D->name,
                    (long long)r, w->name, ws);
            free(hit);
            goto fail;
        }
        /* D: [r, in(, kh, kw)] with W's trailing dims; U: [out, r] or [out, r, 1, 1] */
        int dok = D->ndim == w->ndim;
        for (int d = 1; dok && d < w->ndim; d++) dok = D->shape[d] == w->shape[d];
        if (!dok) {
            int64_t s[SD_ST_MAX_DIMS];
            s[0] = r;
            for (int d = 1; d < w->ndim; d++) s[d] = w->shape[d];
            shape_str(s, w->ndim, want, sizeof want);
            sd_errf(err, "%s: shape mismatch: \"%s\" has shape [%s], expected [%s] for \"%s\" [%s]", path, D->name, ds,
                    want, w->name, ws);
            free(hit);
            goto fail;
        }
        int uok = (U->ndim == 2 || (U->ndim == 4 && U->shape[2] == 1 && U->shape[3] == 1)) && U->shape[0] == tg->rows &&
                  U->shape[1] == r;
        if (!uok) {
            int64_t s[4] = {tg->rows, r, 1, 1};
            shape_str(s, w->ndim == 4 ? 4 : 2, want, sizeof want);
            sd_errf(err, "%s: shape mismatch: \"%s\" has shape [%s], expected [%s] for \"%s\" [%s]", path, U->name, us,
                    want, w->name, ws);
            free(hit);
            goto fail;
        }
        if (lm->alpha >= 0) {
            const sd_st_tensor *A = &st->tensors[lm->alpha];
            if (A->numel != 1 || !is_float(A->dtype)) {
                sd_errf(err, "%s: \"%s\" must be one float number (it has %lld values of %s)", path, A->name,
                        (long long)A->numel, sd_dtype_name(A->dtype));
                free(hit);
                goto fail;
            }
        }
        used++;
    }
    free(hit);
    if (!used) {
        sd_errf(err, "%s: the LoRA patches nothing in this %s model (%d tensors, none names a layer of it)", path,
                sd_family_name(m->family), st->n_tensors);
        goto fail;
    }
    return 0;
fail:
    lora_file_close(f);
    return -1;
}

/* The tensor as f32 (malloc'd), refusing NaN and Inf. */
static float *read_checked(const sd_safetensors *st, const sd_st_tensor *t, sd_err *err)
{
    float *p = malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof *p);
    if (!p) {
        sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory reading \"%s\"", st->path, t->name);
        return NULL;
    }
    if (sd_st_read_f32(st, t, p, err)) {
        free(p);
        return NULL;
    }
    int64_t bad = sd_find_nonfinite(p, (size_t)t->numel);
    if (bad >= 0) {
        sd_errf(err, "%s: \"%s\" has a non-finite value (%s at element %lld)", st->path, t->name,
                isnan(p[bad]) ? "NaN" : "Inf", (long long)bad);
        free(p);
        return NULL;
    }
    return p;
}

/* ---- application ---- */

static int restore_one(sd_model *m, const sd_lora_patch *p, sd_err *err)
{
    sd_weight_ref *w = &m->weights[p->weight];
    if (p->f16) {
        /* the merged F16 copy goes: the weight is read from the file's mapping again */
        free(w->f16);
        w->f16 = NULL;
        return 0;
    }
    if (p->saved_owned) {
        /* the model's own converted copy: its values come back from the file */
        const sd_safetensors *st = &m->files[w->file];
        return sd_st_read_f32(st, &st->tensors[w->index], w->f32, err);
    }
    free(w->f32);
    w->f32 = p->saved;
    w->f32_owned = 0;
    return 0;
}

/* Detach the modules applied on the fly from the model's weights and free them. */
static void drop_fly(sd_lora_state *s, sd_model *m)
{
    if (s->n_fly)
        for (int i = 0; i < m->n_weights; i++) m->weights[i].lowrank = NULL;
    for (int i = 0; i < s->n_fly; i++) free(s->fly[i]);
    free(s->fly);
    s->fly = NULL;
    s->n_fly = 0;
}

int sd_lora_mode_parse(const char *str, sd_lora_mode *mode)
{
    if (!strcmp(str, "auto")) *mode = SD_LORA_AUTO;
    else if (!strcmp(str, "merge")) *mode = SD_LORA_MERGE;
    else if (!strcmp(str, "fly")) *mode = SD_LORA_FLY;
    else return -1;
    return 0;
}

int sd_lora_restore(sd_lora_state *s, sd_model *m, sd_err *err)
{
    int rc = 0;
    drop_fly(s, m);
    for (int i = 0; i < s->n_patched; i++)
        if (restore_one(m, &s->patched[i], err)) rc = -1;
    s->n_patched = 0;
    free(s->applied);
    s->applied = NULL;
    return rc;
}

void sd_lora_state_free(sd_lora_state *s, sd_model *m)
{
    if (m) (void)sd_lora_restore(s, m, NULL);
    for (int i = 0; i < s->n_fly; i++) free(s->fly[i]); /* without a model: nothing points at them any more */
    free(s->fly);
    free(s->patched);
    free(s->applied);
    free(s->warning);
    if (s->have_map) sd_lora_map_free(&s->map);
    memset(s, 0, sizeof *s);
}

/* The float32 buffer of weight wi to patch (made on its first touch, holding the file's values). */
static float *patch_buffer(sd_lora_state *s, sd_model *m, int *slot_of, int wi, sd_err *err)
{
    sd_weight_ref *w = &m->weights[wi];
    if (slot_of[wi] >= 0) return w->f32;
    sd_lora_patch *np = realloc(s->patched, (size_t)(s->n_patched + 1) * sizeof *np);
    if (!np) {
        sd_errcf(err, SD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->patched = np;
    const sd_safetensors *st = &m->files[w->file];
    const sd_st_tensor *t = &st->tensors[w->index];
    sd_lora_patch p = {wi, w->f32, w->f32_owned, 0};
    if (!w->f32_owned) {
        float *buf = malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof *buf);
        if (!buf) {
            sd_errcf(err, SD_ERR_NOMEM, "out of memory: a float32 copy of \"%s\" (%lld values) for the LoRA", w->name,
                     (long long)t->numel);
            return NULL;
        }
        if (sd_st_read_f32(st, t, buf, err)) {
            free(buf);
            return NULL;
        }
        w->f32 = buf;
        w->f32_owned = 1;
    }
    slot_of[wi] = s->n_patched;
    s->patched[s->n_patched++] = p;
    return w->f32;
}

/* Whether weight w is merged into an F16 copy rather than a float32 one: stored as F16 and converted at
 * each use (SD_WEIGHTS_F16), so the merged weight costs what the stored one does. diffusers does the
 * same for a float16 model: models/lora.py LoRACompatibleLinear/Conv._fuse_lora compute
 * weight.float() + scale·(up @ down) and store the result with .to(dtype) of the original weight. */
static int merge_as_f16(const sd_model *m, const sd_weight_ref *w)
{
    return m->weights_mode == SD_WEIGHTS_F16 && !w->f32 && m->files[w->file].tensors[w->index].dtype == SD_DT_F16;
}

/* A module's D [r, cols] and U [rows, r] in float32 (both malloc'd), U already multiplied by f = alpha / r
 * as diffusers' _fuse_lora does (w_up = w_up * alpha / rank: the ratio in double, the product in float32;
 * no alpha: U as stored). The merge and the on-the-fly path both start here. */
static int module_matrices(const lora_file *f, const lora_module *lm, float **D, float **U, sd_err *err)
{
    const sd_safetensors *st = &f->st;
    const sd_st_tensor *Dt = &st->tensors[lm->down], *Ut = &st->tensors[lm->up];
    float a = 0;
    if (lm->alpha >= 0) {
        if (sd_st_read_f32(st, &st->tensors[lm->alpha], &a, err)) return -1;
        if (!isfinite(a))
            return sd_errf(err, "%s: \"%s\" is not a finite number", st->path, st->tensors[lm->alpha].name);
    }
    *D = read_checked(st, Dt, err);
    if (!*D) return -1;
    *U = read_checked(st, Ut, err);
    if (!*U) {
        free(*D);
        return -1;
    }
    if (lm->alpha >= 0) {
        const float ff = (float)((double)a / (double)Dt->shape[0]);
        for (int64_t i = 0; i < Ut->numel; i++) (*U)[i] *= ff;
    }
    return 0;
}

/* W[rows of the target] += scale·f·U·D for one module; W holds the target weight's float32 values. */
static int merge_module(const sd_lora_map *map, const lora_file *f, const lora_module *lm, double scale, float *W,
                        sd_err *err)
{
    const sd_lora_target *tg = &map->targets[lm->target];
    const int64_t r = f->st.tensors[lm->down].shape[0];
    float *D, *U;
    if (module_matrices(f, lm, &D, &U, err)) return -1;
    /* diffusers _fuse_lora: weight += scale · (w_up @ w_down) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tg->rows, (int)tg->cols, (int)r, (float)scale, U,
                (int)r, D, (int)tg->cols, 1.0f, W + tg->row0 * tg->cols, (int)tg->cols);
    free(D);
    free(U);
    return 0;
}

/* The file's values of weight w into the float32 scratch buf (room for the largest F16-merged weight). */
static float *f16_scratch(const sd_model *m, const sd_weight_ref *w, float *buf, sd_err *err)
{
    const sd_safetensors *st = &m->files[w->file];
    const sd_st_tensor *t = &st->tensors[w->index];
    if (sd_st_read_f32(st, t, buf, err)) return NULL;
    /* From now on the networks read the F16 copy, not the file: give the mapping's pages of this tensor back
     * (whole pages inside it; MADV_DONTNEED on a read-only file mapping only drops them from this process, and a
     * restore reads them from the page cache or the disk again), so the merge does not hold the touched weights
     * twice — the copies and the file pages read to make them. */
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) pg = 4096;
    uintptr_t b = (uintptr_t)sd_st_data(st, t), e = b + (t->end - t->begin);
    b = (b + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    e &= ~((uintptr_t)pg - 1);
    if (e > b) (void)madvise((void *)b, e - b, MADV_DONTNEED); /* advice: a failure only keeps the pages */
    return buf;
}

/* Round the merged float32 values W of weight wi to an F16 copy the model reads instead of the file (round
 * to nearest even, as torch's float→half conversion), and record it for the restore. A value past F16's
 * range would become an infinity: refused, naming the weight. */
static int keep_f16(sd_lora_state *s, sd_model *m, int wi, const float *W, sd_err *err)
{
    sd_weight_ref *w = &m->weights[wi];
    const int64_t n = m->files[w->file].tensors[w->index].numel;
    sd_lora_patch *np = realloc(s->patched, (size_t)(s->n_patched + 1) * sizeof *np);
    if (!np) return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    s->patched = np;
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    if (!h)
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory: a float16 copy of \"%s\" (%lld values) for the LoRA",
                        w->name, (long long)n);
    int64_t overflow = 0;
    const int64_t chunk = 1 << 16, nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) reduction(+ : overflow) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        const int64_t i0 = c * chunk, i1 = n - i0 < chunk ? n : i0 + chunk;
        /* values whose half is a normal number: round to nearest even by adding 0xfff plus the kept lowest bit
         * before dropping the 13 low mantissa bits (the rule of sd_f32_to_f16_1, written without branches so
         * the loop vectorizes) */
        for (int64_t i = i0; i < i1; i++) {
            uint32_t x;
            memcpy(&x, &W[i], 4);
            const uint32_t r = (x & 0x7fffffffu) - 0x38000000u;
            h[i] = (uint16_t)(((x >> 16) & 0x8000u) | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13));
        }
        /* the rest (zero, subnormal halves, past the largest half) exactly as sd_f32_to_f16_1 rounds them */
        for (int64_t i = i0; i < i1; i++) {
            uint32_t x;
            memcpy(&x, &W[i], 4);
            const uint32_t ax = x & 0x7fffffffu;
            if (ax < 0x38800000u || ax >= 0x477ff000u) h[i] = sd_f32_to_f16_1(W[i]);
            overflow += (h[i] & 0x7c00u) == 0x7c00u;
        }
    }
    if (overflow) {
        int64_t k = 0;
        while (k < n && (h[k] & 0x7c00u) != 0x7c00u) k++;
        free(h);
        return sd_errf(err, "the LoRA gives \"%s\" the value %g at element %lld, beyond float16's range of ±65504 "
                       "(%lld such values); --weights f32 merges in float32", w->name, (double)W[k], (long long)k,
                       (long long)overflow);
    }
    w->f16 = h;
    s->patched[s->n_patched++] = (sd_lora_patch){wi, NULL, 0, 1};
    return 0;
}

/* The multiplier of a use for one module: A1111's unet multiplier for the U-Net's weights, te for the text
 * encoders' (networks.py: te_multiplier for modules of the text model, unet_multiplier for the rest). */
static double module_scale(const sd_model *m, const sd_lora_map *map, const lora_module *lm, const sd_lora_use *u)
{
    const char *w = m->weights[map->targets[lm->target].weight].name;
    return strncmp(w, SD_PREFIX_UNET, strlen(SD_PREFIX_UNET)) ? u->scale : u->scale_unet;
}

/* A module to merge: file, module in it, next entry with the same target weight (-1: none). */
typedef struct merge_entry {
    int file, mod, next;
} merge_entry;

/* One target weight: every module that patches it (chain `first` of `ent`, in the order of the LoRAs and of
 * their keys) added to its float32 values. An F16-merged weight is done whole (scratch filled from the file,
 * every module added, rounded to its F16 copy) before the next one starts, so all share one float32 scratch
 * the size of the largest. */
static int merge_weight(sd_lora_state *s, sd_model *m, int *slot_of, int wi, const lora_file *files,
                        const sd_lora_list *l, const merge_entry *ent, int first, float *scratch, sd_err *err)
{
    const int as_f16 = merge_as_f16(m, &m->weights[wi]);
    float *W = as_f16 ? f16_scratch(m, &m->weights[wi], scratch, err) : patch_buffer(s, m, slot_of, wi, err);
    if (!W) return -1;
    int rc = 0;
    for (int e = first; !rc && e >= 0; e = ent[e].next) {
        const lora_file *f = &files[ent[e].file];
        const lora_module *lm = &f->mods[ent[e].mod];
        rc = merge_module(&s->map, f, lm, module_scale(m, &s->map, lm, &l->items[ent[e].file]), W, err);
    }
    if (as_f16 && !rc) rc = keep_f16(s, m, wi, W, err);
    return rc;
}

/* Every module of the open files, grouped by target weight (in the order each weight is first patched). */
static int merge_all(sd_lora_state *s, sd_model *m, int *slot_of, const lora_file *files, int n_open,
                     const sd_lora_list *l, sd_err *err)
{
    int n = 0;
    for (int i = 0; i < n_open; i++) n += files[i].n;
    merge_entry *ent = malloc((size_t)(n > 0 ? n : 1) * sizeof *ent);
    int *head = malloc((size_t)(m->n_weights > 0 ? m->n_weights : 1) * 2 * sizeof *head);
    if (!ent || !head) {
        free(ent);
        free(head);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    }
    int *tail = head + m->n_weights;
    for (int i = 0; i < m->n_weights; i++) head[i] = tail[i] = -1;
    int ne = 0;
    int64_t most = 0; /* values of the largest F16-merged weight: one float32 scratch serves them all */
    for (int i = 0; i < n_open; i++)
        for (int k = 0; k < files[i].n; k++) {
            const int t = files[i].mods[k].target;
            if (t < 0) continue;
            const int wi = s->map.targets[t].weight;
            ent[ne] = (merge_entry){i, k, -1};
            if (tail[wi] >= 0) ent[tail[wi]].next = ne;
            else head[wi] = ne;
            tail[wi] = ne++;
            const int64_t numel = m->files[m->weights[wi].file].tensors[m->weights[wi].index].numel;
            if (merge_as_f16(m, &m->weights[wi]) && numel > most) most = numel;
        }
    float *scratch = most ? malloc((size_t)most * sizeof *scratch) : NULL;
    int rc = most && !scratch ? sd_errcf(err, SD_ERR_NOMEM, "out of memory: a float32 scratch of %lld values for the "
                                         "LoRA merge", (long long)most) : 0;
    for (int e = 0; !rc && e < ne; e++) {
        const int wi = s->map.targets[files[ent[e].file].mods[ent[e].mod].target].weight;
        if (head[wi] == e) rc = merge_weight(s, m, slot_of, wi, files, l, ent, e, scratch, err);
    }
    free(scratch);
    free(ent);
    free(head);
    return rc;
}

/* The float32 values of a module on the fly: one block holding the list node, D [r, cols] and
 * U' = scale·f·U [rows, r] (f = alpha / r, applied to U in float32 first, as the merge does). */
static sd_lowrank *fly_module(const sd_lora_map *map, const sd_model *m, const lora_file *f, const lora_module *lm,
                              double scale, sd_err *err)
{
    const sd_lora_target *tg = &map->targets[lm->target];
    const sd_weight_ref *w = &m->weights[tg->weight];
    const int64_t r = f->st.tensors[lm->down].shape[0];
    float *D, *U;
    if (module_matrices(f, lm, &D, &U, err)) return NULL;
    /* Dt and Ut were checked against the target's shape when the file was opened (lora_file_open) */
    const size_t nd = (size_t)r * (size_t)tg->cols, nu = (size_t)tg->rows * (size_t)r;
    sd_lowrank *lr = malloc(sizeof *lr + (nd + nu) * sizeof(float));
    if (!lr) {
        free(D);
        free(U);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory: the LoRA matrices of \"%s\"", w->name), NULL;
    }
    float *dd = (float *)(lr + 1), *ud = dd + nd;
    memcpy(dd, D, nd * sizeof(float));
    const float sc = (float)scale;
    for (size_t i = 0; i < nu; i++) ud[i] = sc * U[i];
    free(D);
    free(U);
    *lr = (sd_lowrank){.down = dd, .up = ud, .r = r, .row0 = tg->row0, .rows = tg->rows, .cols = tg->cols,
                       .kh = w->ndim == 4 ? (int)w->shape[2] : 1, .kw = w->ndim == 4 ? (int)w->shape[3] : 1};
    return lr;
}

/* Every module of the open files attached to its weight's list, in the order of the LoRAs and their keys. */
static int fly_all(sd_lora_state *s, sd_model *m, const lora_file *files, int n_open, const sd_lora_list *l,
                   sd_err *err)
{
    int n = 0;
    for (int i = 0; i < n_open; i++) n += files[i].n;
    s->fly = calloc((size_t)(n > 0 ? n : 1), sizeof *s->fly);
    sd_lowrank **tail = calloc((size_t)(m->n_weights > 0 ? m->n_weights : 1), sizeof *tail);
    if (!s->fly || !tail) {
        free(tail);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n_open; i++)
        for (int k = 0; k < files[i].n; k++) {
            const lora_module *lm = &files[i].mods[k];
            if (lm->target < 0) continue;
            sd_lowrank *lr = fly_module(&s->map, m, &files[i], lm, module_scale(m, &s->map, lm, &l->items[i]), err);
            if (!lr) {
                free(tail);
                return -1;
            }
            s->fly[s->n_fly++] = lr;
            const int wi = s->map.targets[lm->target].weight;
            if (tail[wi]) tail[wi]->next = lr;
            else m->weights[wi].lowrank = lr;
            tail[wi] = lr;
        }
    free(tail);
    return 0;
}

/* Bytes of float32 matrices the open files' modules take on the fly. */
static double fly_bytes(const sd_lora_state *s, const lora_file *files, int n_open)
{
    double need = 0;
    for (int i = 0; i < n_open; i++)
        for (int k = 0; k < files[i].n; k++) {
            const lora_module *lm = &files[i].mods[k];
            if (lm->target < 0) continue;
            const sd_lora_target *tg = &s->map.targets[lm->target];
            const double r = (double)files[i].st.tensors[lm->down].shape[0];
            need += r * (double)(tg->cols + tg->rows) * sizeof(float) + sizeof(sd_lowrank);
        }
    return need;
}

/* The multiply-adds per token the open files' low-rank products add, as a fraction of those of the layers (or
 * OpenCLIP row blocks) they patch, each counted once: Σ r·(rows + cols) / Σ rows·cols. */
static double fly_extra(const sd_lora_state *s, const lora_file *files, int n_open)
{
    unsigned char *seen = calloc((size_t)(s->map.n > 0 ? s->map.n : 1), 1);
    double extra = 0, base = 0;
    for (int i = 0; i < n_open; i++)
        for (int k = 0; k < files[i].n; k++) {
            const lora_module *lm = &files[i].mods[k];
            if (lm->target < 0) continue;
            const sd_lora_target *tg = &s->map.targets[lm->target];
            extra += (double)files[i].st.tensors[lm->down].shape[0] * (double)(tg->rows + tg->cols);
            if (seen && !seen[lm->target]) base += (double)tg->rows * (double)tg->cols;
            if (seen) seen[lm->target] = 1;
        }
    free(seen);
    return base > 0 ? extra / base : 0;
}

int sd_lora_apply(sd_lora_state *s, sd_model *m, const sd_lora_list *l, sd_err *err)
{
    /* the set as text: the same set twice in a row is applied once */
    char *want = NULL;
    size_t wn = 0;
    FILE *mf = open_memstream(&want, &wn);
    if (!mf) return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < l->n; i++) fprintf(mf, "%s\t%.17g\t%.17g\n", l->items[i].path ? l->items[i].path : "", l->items[i].scale,
                l->items[i].scale_unet);
    if (s->mode != SD_LORA_AUTO) fputs(s->mode == SD_LORA_FLY ? "on the fly\n" : "merged\n", mf);
    if (fclose(mf)) {
        free(want);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    }
    s->changed = 0;
    if ((s->applied && !strcmp(s->applied, want)) || (!s->applied && l->n == 0)) {
        free(want);
        return 0;
    }
    s->changed = 1;
    if (sd_lora_restore(s, m, err)) {
        free(want);
        return -1;
    }
    free(s->warning);
    s->warning = NULL;
    if (l->n == 0) {
        free(want);
        return 0;
    }
    const double t0 = sd_now();
    if (!s->have_map) {
        if (sd_lora_map_build(m, &s->map, err)) {
            free(want);
            return -1;
        }
        s->have_map = 1;
    }
    int *slot_of = malloc((size_t)(m->n_weights > 0 ? m->n_weights : 1) * sizeof *slot_of);
    if (!slot_of) {
        free(want);
        return sd_errcf(err, SD_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < m->n_weights; i++) slot_of[i] = -1;
    int rc = 0, n_open = 0;
    lora_file files[SD_LORA_MAX];
    for (int i = 0; !rc && i < l->n && i < SD_LORA_MAX; i++) {
        const sd_lora_use *u = &l->items[i];
        if (!u->path) {
            rc = sd_errf(err, "<lora:%s>: not resolved to a file (internal error)", u->name);
            break;
        }
        unknown_list unk = {0};
        if (lora_file_open(&files[i], m, &s->map, u->path, &unk, err)) {
            rc = -1;
            break;
        }
        n_open++;
        if (unk.n) {
            char line[900];
            snprintf(line, sizeof line, "%s: %d key%s not applied (not a LoRA tensor of this %s model): %s%s", u->path,
                     unk.n, unk.n > 1 ? "s" : "", sd_family_name(m->family), unk.text, unk.n > 4 ? ", …" : "");
            free(s->warning);
            s->warning = strdup(line);
        }
    }
    s->fly_extra = fly_extra(s, files, n_open);
    const sd_lora_mode how = s->mode != SD_LORA_AUTO ? s->mode
                             : s->fly_extra <= SD_LORA_FLY_MAX_EXTRA ? SD_LORA_FLY : SD_LORA_MERGE;
    /* the copies the merge will make (weights the model does not hold as its own copy yet), against
     * the memory the caller allows: refused before any is made rather than found out by the OOM killer */
    const size_t avail = s->copy_limit == SIZE_MAX ? sd_available_memory_bytes() : s->copy_limit; /* after the restore */
    if (!rc && avail && how == SD_LORA_FLY) {
        const double need = fly_bytes(s, files, n_open);
        if (need > (double)avail)
            rc = sd_errcf(err, SD_ERR_NOMEM, "the LoRA%s %.2f GB for their float32 matrices, but only %.2f GB of "
                          "memory is available", l->n > 1 ? "s need" : " needs", need / 1e9, (double)avail / 1e9);
    } else if (!rc && avail) {
        /* F16-merged weights: their F16 copies and one float32 scratch (the largest); others: float32 copies */
        double need = 0, scratch = 0;
        int n16 = 0, n32 = 0;
        for (int i = 0; i < n_open; i++)
            for (int k = 0; k < files[i].n; k++) {
                const int t = files[i].mods[k].target;
                if (t < 0) continue;
                const int wi = s->map.targets[t].weight;
                if (slot_of[wi] == -2 || m->weights[wi].f32_owned) continue;
                slot_of[wi] = -2;
                const double numel = (double)m->files[m->weights[wi].file].tensors[m->weights[wi].index].numel;
                if (merge_as_f16(m, &m->weights[wi])) {
                    need += numel * sizeof(uint16_t);
                    if (numel * sizeof(float) > scratch) scratch = numel * sizeof(float);
                    n16++;
                } else {
                    need += numel * sizeof(float);
                    n32++;
                }
            }
        need += scratch;
        for (int i = 0; i < m->n_weights; i++) slot_of[i] = -1;
        if (need > (double)avail)
            rc = sd_errcf(err, SD_ERR_NOMEM, "the LoRA%s %.2f GB for %s copies of the weights they patch, but "
                          "only %.2f GB of memory is available%s", l->n > 1 ? "s need" : " needs", need / 1e9,
                          n16 && n32 ? "float16 and float32" : n16 ? "float16" : "float32", (double)avail / 1e9,
                          n32 ? " (--weights f32 patches the model's own copies instead, which it then holds for "
                                "every weight)" : "");
    }
    if (!rc && (how == SD_LORA_FLY ? fly_all(s, m, files, n_open, l, err)
                                       : merge_all(s, m, slot_of, files, n_open, l, err)))
        rc = -1;
    for (int i = 0; i < n_open; i++) lora_file_close(&files[i]);
    free(slot_of);
    if (rc) {
        sd_err ignore = {0};
        (void)sd_lora_restore(s, m, &ignore);
        free(want);
        return -1;
    }
    s->applied = want;
    s->seconds = sd_now() - t0;
    return 0;
}
