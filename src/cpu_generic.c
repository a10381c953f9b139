/* cpu_generic.c — the portable CPU kernel table: cpu_loops.h compiled without instruction-set
 * flags, so it runs on any x86-64 or aarch64 CPU. Every other table starts from this one
 * (cpu.c) and replaces what it does faster. */
#include "cpu_loops.h"
#include "ops_internal.h"

static void generic_affine_act(float *dst, const float *src, int64_t n, float sc, float sh, int silu)
{
    sd_loop_affine_act(dst, src, n, sc, sh, silu);
}

static void generic_gelu_mul(float *o, const float *h, const float *g, int64_t n) { sd_loop_gelu_mul(o, h, g, n); }

static void generic_quick_gelu(float *p, int64_t n) { sd_loop_quick_gelu(p, n); }

static void generic_softmax_row(float *p, int64_t n, int64_t valid) { sd_loop_softmax_row(p, n, valid); }

static void generic_mean_var(const float *p, int64_t n, double *mean, double *var)
{
    sd_loop_mean_var(p, n, mean, var);
}

static void generic_layernorm_row(const float *p, float *q, int64_t d, const float *g, const float *b, float eps)
{
    sd_loop_layernorm_row(p, q, d, g, b, eps);
}

static void generic_f16_to_f32(const uint16_t *src, float *dst, size_t n) { sd_loop_f16_to_f32(src, dst, n); }

static void generic_wg_weights(const float *w, int64_t cout, int64_t cin, float *u)
{
    sd_loop_wg_weights(w, cout, cin, u);
}

static void generic_wg_in_rows(const float *xc, int64_t h, int64_t w, int64_t ty0, int64_t ty1, int64_t tw,
                               float *vb, int64_t vs, float *ws)
{
    sd_loop_wg_in_rows(xc, h, w, ty0, ty1, tw, vb, vs, ws);
}

static void generic_wg_out_rows(const float *mb, int64_t ms, float bias, float *yc, int64_t h, int64_t w,
                                int64_t ty0, int64_t ty1, int64_t tw, float *ws)
{
    sd_loop_wg_out_rows(mb, ms, bias, yc, h, w, ty0, ty1, tw, ws);
}

static void generic_wg4_in_rows(const float *xc, int64_t h, int64_t w, int64_t ty0, int64_t ty1, int64_t tw, float *vb,
                            int64_t vs, float *ws)
{
    sd_loop_wg4_in_rows(xc, h, w, ty0, ty1, tw, vb, vs, ws);
}

static void generic_wg4_out_rows(const float *mb, int64_t ms, float bias, float *yc, int64_t h, int64_t w, int64_t ty0,
                             int64_t ty1, int64_t tw, float *ws)
{
    sd_loop_wg4_out_rows(mb, ms, bias, yc, h, w, ty0, ty1, tw, ws);
}

void sd_cpu_fill_generic(sd_cpu_kernels *k)
{
    *k = (sd_cpu_kernels){
        .name = "generic",
        .affine_act = generic_affine_act,
        .gelu_mul = generic_gelu_mul,
        .quick_gelu = generic_quick_gelu,
        .softmax_row = generic_softmax_row,
        .mean_var = generic_mean_var,
        .layernorm_row = generic_layernorm_row,
        .f16_to_f32 = generic_f16_to_f32,
        .wg_weights = generic_wg_weights,
        .wg_in_rows = generic_wg_in_rows,
        .wg_out_rows = generic_wg_out_rows,
        .wg4_in_rows = generic_wg4_in_rows,
        .wg4_out_rows = generic_wg4_out_rows,
        .attn_max_d = 0, /* sd_attention's sgemm path */
    };
}
