/* prompt.c — A1111 prompt weights and chunking (see include/sdgen/prompt.h).
 *
 * References: AUTOMATIC1111 stable-diffusion-webui modules/prompt_parser.py (re_attention,
 * re_break, parse_prompt_attention) and modules/sd_hijack_clip.py (tokenize_line,
 * process_tokens). The token scanner below reproduces re_attention's alternatives in order:
 *   \( \) \[ \] \\  |  lone \  |  (  |  [  |  :NUMBER)  |  )  |  ]  |  plain run  |  :
 */
#include "sdgen/prompt.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int *v; int n, cap; } int_stack;

static int push_int(int_stack *s, int x)
{
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 16;
        int *p = realloc(s->v, (size_t)nc * sizeof *p);
        if (!p) return -1;
        s->v = p;
        s->cap = nc;
    }
    s->v[s->n++] = x;
    return 0;
}

static int add_piece(sd_prompt_pieces *o, int *cap, const char *s, size_t n, double w)
{
    if (o->n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        sd_prompt_piece *p = realloc(o->items, (size_t)nc * sizeof *p);
        if (!p) return -1;
        o->items = p;
        *cap = nc;
    }
    char *c = malloc(n + 1);
    if (!c) return -1;
    memcpy(c, s, n);
    c[n] = 0;
    o->items[o->n].text = c;
    o->items[o->n].weight = w;
    o->n++;
    return 0;
}

void sd_prompt_pieces_free(sd_prompt_pieces *p)
{
    for (int i = 0; i < p->n; i++) free(p->items[i].text);
    free(p->items);
    p->items = NULL;
    p->n = 0;
}

int sd_prompt_piece_is_break(const sd_prompt_piece *p)
{
    return p->weight == -1.0 && !strcmp(p->text, "BREAK");
}

/* Python re's \w around "BREAK": ASCII letters, digits, '_'; any non-ASCII byte is taken as part
 * of a word (letters are by far the common case next to a word). */
static int is_word(unsigned char c) { return c >= 0x80 || isalnum(c) || c == '_'; }
static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* re.split(r"\s*\bBREAK\b\s*", text): parts with {"BREAK", -1} between them. */
static int add_text_split_break(sd_prompt_pieces *o, int *cap, const char *s, size_t n)
{
    size_t part = 0, i = 0;
    while (i + 5 <= n) {
        if (!memcmp(s + i, "BREAK", 5) && (i == 0 || !is_word((unsigned char)s[i - 1])) &&
            (i + 5 == n || !is_word((unsigned char)s[i + 5]))) {
            size_t b = i, e = i + 5;
            while (b > part && is_space((unsigned char)s[b - 1])) b--;
            while (e < n && is_space((unsigned char)s[e])) e++;
            if (add_piece(o, cap, s + part, b - part, 1.0)) return -1;
            if (add_piece(o, cap, "BREAK", 5, -1.0)) return -1;
            part = i = e;
            continue;
        }
        i++;
    }
    return add_piece(o, cap, s + part, n - part, 1.0);
}

/* Python float() of a [+-]?[.\d]+ string: digits with at most one '.', at least one digit. */
static int parse_weight(const char *s, size_t n, double *w)
{
    char buf[64];
    size_t k = 0, digits = 0, dots = 0;
    if (n == 0 || n >= sizeof buf) return -1;
    if (s[0] == '+' || s[0] == '-') k = 1;
    for (size_t i = k; i < n; i++) {
        if (s[i] == '.') dots++;
        else if (isdigit((unsigned char)s[i])) digits++;
        else return -1;
    }
    if (!digits || dots > 1) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    *w = strtod(buf, NULL);
    return 0;
}

int sd_prompt_parse(const char *text, sd_prompt_pieces *out, sd_err *err)
{
    sd_prompt_pieces o = {0};
    int cap = 0;
    int_stack round = {0}, square = {0};
    size_t n = strlen(text), i = 0;
    int rc = -1;
#define OOM() do { sd_errcf(err, SD_ERR_NOMEM, "out of memory"); goto fail; } while (0)
    while (i < n) {
        char c = text[i];
        if (c == '\\') {
            if (i + 1 < n && strchr("()[]\\", text[i + 1])) {
                if (add_piece(&o, &cap, text + i + 1, 1, 1.0)) OOM();
                i += 2;
            } else {
                if (add_piece(&o, &cap, "", 0, 1.0)) OOM(); /* text[1:] of a lone "\" */
                i += 1;
            }
            continue;
        }
        if (c == '(') { if (push_int(&round, o.n)) OOM(); i++; continue; }
        if (c == '[') { if (push_int(&square, o.n)) OOM(); i++; continue; }
        if (c == ':') {
            /* :([+-]?[.\d]+)\) */
            size_t j = i + 1;
            if (j < n && (text[j] == '+' || text[j] == '-')) j++;
            size_t ds = j;
            while (j < n && (text[j] == '.' || isdigit((unsigned char)text[j]))) j++;
            if (j > ds && j < n && text[j] == ')') {
                size_t tok_len = j + 1 - i;
                if (round.n) {
                    double w;
                    if (parse_weight(text + i + 1, j - i - 1, &w)) {
                        sd_errf(err, "prompt: bad weight \"%.*s\" (A1111 cannot read it either)", (int)(tok_len > 60 ? 60 : tok_len), text + i);
                        goto fail;
                    }
                    int from = round.v[--round.n];
                    for (int p = from; p < o.n; p++) o.items[p].weight *= w;
                } else if (add_text_split_break(&o, &cap, text + i, tok_len)) OOM();
                i = j + 1;
                continue;
            }
            if (add_text_split_break(&o, &cap, text + i, 1)) OOM(); /* lone ':' */
            i++;
            continue;
        }
        if (c == ')' || c == ']') {
            int_stack *st = c == ')' ? &round : &square;
            if (st->n) {
                double m = c == ')' ? 1.1 : 1 / 1.1;
                int from = st->v[--st->n];
                for (int p = from; p < o.n; p++) o.items[p].weight *= m;
            } else if (add_text_split_break(&o, &cap, text + i, 1)) OOM();
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !strchr("\\()[]:", text[j])) j++;
        if (add_text_split_break(&o, &cap, text + i, j - i)) OOM();
        i = j;
    }
    /* unclosed brackets, innermost... in the order they were opened (Python iterates the list) */
    for (int k = 0; k < round.n; k++)
        for (int p = round.v[k]; p < o.n; p++) o.items[p].weight *= 1.1;
    for (int k = 0; k < square.n; k++)
        for (int p = square.v[k]; p < o.n; p++) o.items[p].weight *= 1 / 1.1;
    if (o.n == 0 && add_piece(&o, &cap, "", 0, 1.0)) OOM();
    /* Weights are applied in float32 (A1111 sd_hijack_clip: torch.asarray(multipliers)). A product of
     * brackets beyond float32's range (about 931 nested "(", or a huge literal weight) becomes Inf there
     * and A1111 stops with "A tensor with all NaNs was produced"; refuse it here, naming the text. */
    for (int k = 0; k < o.n; k++) {
        double w = o.items[k].weight;
        if (!(fabs(w) <= FLT_MAX)) {
            sd_errf(err, "prompt: the weight of \"%.40s\" is %g after its brackets, beyond float32 (at most %g); use "
                    "fewer nested brackets or (text:WEIGHT)", o.items[k].text, w, (double)FLT_MAX);
            goto fail;
        }
    }
    /* merge runs of identical weights */
    for (int k = 0; k + 1 < o.n;) {
        if (o.items[k].weight == o.items[k + 1].weight) {
            size_t la = strlen(o.items[k].text), lb = strlen(o.items[k + 1].text);
            char *m = realloc(o.items[k].text, la + lb + 1);
            if (!m) OOM();
            memcpy(m + la, o.items[k + 1].text, lb + 1);
            o.items[k].text = m;
            free(o.items[k + 1].text);
            memmove(o.items + k + 1, o.items + k + 2, (size_t)(o.n - k - 2) * sizeof *o.items);
            o.n--;
        } else {
            k++;
        }
    }
#undef OOM
    rc = 0;
    *out = o;
    free(round.v);
    free(square.v);
    return rc;
fail:
    free(round.v);
    free(square.v);
    sd_prompt_pieces_free(&o);
    return rc;
}

/* ------------------------------------------------------------------ chunking */

typedef struct {
    int32_t tok[SD_TOK_CHUNK + 1];
    float mult[SD_TOK_CHUNK + 1];
    int n;
} chunk_buf;

typedef struct {
    sd_prompt_chunks *out;
    int cap;
    int bos, eos, pad;
} chunk_ctx;

/* next_chunk(): pad to 75 with EOS, wrap in BOS/EOS, append. */
static int emit_chunk(chunk_ctx *c, chunk_buf *b, int is_last)
{
    sd_prompt_chunks *o = c->out;
    o->token_count += is_last ? b->n : SD_TOK_CHUNK;
    if (o->n_chunks == c->cap) {
        int nc = c->cap ? c->cap * 2 : 4;
        int32_t *t = realloc(o->tokens, (size_t)nc * SD_TOK_CONTEXT * sizeof *t);
        if (!t) return -1;
        o->tokens = t;
        float *w = realloc(o->weights, (size_t)nc * SD_TOK_CONTEXT * sizeof *w);
        if (!w) return -1;
        o->weights = w;
        c->cap = nc;
    }
    int32_t *t = o->tokens + (size_t)o->n_chunks * SD_TOK_CONTEXT;
    float *w = o->weights + (size_t)o->n_chunks * SD_TOK_CONTEXT;
    t[0] = c->bos;
    w[0] = 1.0f;
    for (int i = 0; i < SD_TOK_CHUNK; i++) {
        t[1 + i] = i < b->n ? b->tok[i] : c->eos;
        w[1 + i] = i < b->n ? b->mult[i] : 1.0f;
    }
    t[SD_TOK_CONTEXT - 1] = c->eos;
    w[SD_TOK_CONTEXT - 1] = 1.0f;
    /* process_tokens: when pad differs from EOS (SD 2.x), everything after the first EOS is pad */
    if (c->pad != c->eos) {
        int i = 0;
        while (i < SD_TOK_CONTEXT && t[i] != c->eos) i++;
        for (i = i + 1; i < SD_TOK_CONTEXT; i++) t[i] = c->pad;
    }
    o->n_chunks++;
    b->n = 0;
    return 0;
}

void sd_prompt_chunks_free(sd_prompt_chunks *c)
{
    free(c->tokens);
    free(c->weights);
    memset(c, 0, sizeof *c);
}

int sd_prompt_chunk(sd_tokenizer *t, const char *prompt, int pad_id, int weighting,
                    sd_prompt_chunks *out, sd_err *err)
{
    return sd_prompt_chunk_words(t, prompt, pad_id, weighting, NULL, 0, out, err);
}

/* The longest word whose tokens start at ids[k] (n tokens left), or NULL. */
static const sd_prompt_word *word_at(const sd_prompt_word *words, int n_words, const int32_t *ids, int k, int n)
{
    const sd_prompt_word *best = NULL;
    for (int i = 0; i < n_words; i++) {
        const sd_prompt_word *w = &words[i];
        if (w->n_ids < 1 || w->n_ids > n - k || (best && w->n_ids <= best->n_ids)) continue;
        if (!memcmp(ids + k, w->ids, (size_t)w->n_ids * sizeof *ids)) best = w;
    }
    return best;
}

int sd_prompt_chunk_words(sd_tokenizer *t, const char *prompt, int pad_id, int weighting, const sd_prompt_word *words,
                          int n_words, sd_prompt_chunks *out, sd_err *err)
{
    memset(out, 0, sizeof *out);
    sd_prompt_pieces pieces = {0};
    if (weighting) {
        if (sd_prompt_parse(prompt, &pieces, err)) return -1;
    } else {
        pieces.items = malloc(sizeof *pieces.items);
        char *dup = strdup(prompt);
        if (!pieces.items || !dup) { free(pieces.items); free(dup); return sd_errcf(err, SD_ERR_NOMEM, "out of memory"); }
        pieces.items[0].text = dup;
        pieces.items[0].weight = 1.0;
        pieces.n = 1;
    }
    chunk_ctx c = {out, 0, sd_tokenizer_bos(t), sd_tokenizer_eos(t), pad_id};
    chunk_buf b = {.n = 0};
    int comma = sd_tokenizer_comma(t), last_comma = -1, rc = -1;
    sd_tokens tk = {0};
    for (int p = 0; p < pieces.n; p++) {
        const sd_prompt_piece *pc = &pieces.items[p];
        if (sd_prompt_piece_is_break(pc)) {
            if (emit_chunk(&c, &b, 0)) goto oom;
            last_comma = -1;
            continue;
        }
        tk.n = 0;
        if (sd_tokenize(t, pc->text, pad_id, &tk, err)) goto done;
        float w = (float)pc->weight;
        for (int k = 0; k < tk.n; k++) {
            int32_t id = tk.ids[k];
            if (id == comma) {
                last_comma = b.n;
            } else if (SD_PROMPT_COMMA_BACKTRACK != 0 && b.n == SD_TOK_CHUNK && last_comma != -1 &&
                       b.n - last_comma <= SD_PROMPT_COMMA_BACKTRACK) {
                /* move the tokens after the last comma into the next chunk */
                int at = last_comma + 1, nrel = b.n - at;
                int32_t rt[SD_TOK_CHUNK];
                float rm[SD_TOK_CHUNK];
                memcpy(rt, b.tok + at, (size_t)nrel * sizeof *rt);
                memcpy(rm, b.mult + at, (size_t)nrel * sizeof *rm);
                b.n = at;
                if (emit_chunk(&c, &b, 0)) goto oom;
                memcpy(b.tok, rt, (size_t)nrel * sizeof *rt);
                memcpy(b.mult, rm, (size_t)nrel * sizeof *rm);
                b.n = nrel;
                last_comma = -1;
            }
            if (b.n == SD_TOK_CHUNK) {
                if (emit_chunk(&c, &b, 0)) goto oom;
                last_comma = -1;
            }
            const sd_prompt_word *word = n_words ? word_at(words, n_words, tk.ids, k, tk.n) : NULL;
            if (word) {
                if (word->refuse) {
                    sd_errf(err, "%s", word->refuse);
                    goto done;
                }
                if (word->n_vectors < 1 || word->n_vectors > SD_TOK_CHUNK) {
                    sd_errf(err, "an embedding of %d vectors does not fit in a chunk of %d tokens", word->n_vectors,
                            SD_TOK_CHUNK);
                    goto done;
                }
                if (b.n + word->n_vectors > SD_TOK_CHUNK) {
                    if (emit_chunk(&c, &b, 0)) goto oom;
                    last_comma = -1;
                }
                for (int v = 0; v < word->n_vectors; v++) {
                    b.tok[b.n] = word->first_id + v;
                    b.mult[b.n++] = w;
                }
                if (w != 1.0f) out->weighted = 1;
                out->n_text_tokens += word->n_vectors;
                k += word->n_ids - 1;
                continue;
            }
            b.tok[b.n] = id;
            b.mult[b.n] = w;
            if (w != 1.0f) out->weighted = 1;
            b.n++;
            out->n_text_tokens++;
        }
    }
    if (b.n || out->n_chunks == 0)
        if (emit_chunk(&c, &b, 1)) goto oom;
    rc = 0;
    goto done;
oom:
    sd_errcf(err, SD_ERR_NOMEM, "out of memory");
done:
    sd_tokens_free(&tk);
    sd_prompt_pieces_free(&pieces);
    if (rc) sd_prompt_chunks_free(out);
    return rc;
}
