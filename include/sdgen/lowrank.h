/* sdgen/lowrank.h — a LoRA applied as a low-rank product at each use of a layer ("on the fly").
 *
 * Instead of merging W' = W + s·f·U·D into a copy of the weight (sdgen/lora.h, docs/LORA.md), the layer
 * keeps W as stored and adds the two thin products to its output in every call:
 *     y = W·x + b + Σ_modules U'·(D·x),   U' = s·f·U (scale times alpha / rank, folded in at load)
 * For a convolution D is an r-output convolution with the layer's kernel, stride and padding, and U' a 1×1
 * convolution (the same factorisation diffusers' LoRACompatibleConv uses when a LoRA is not fused:
 * models/lora.py LoRAConv2dLayer, down = Conv2d(in, r, kernel, stride, padding), up = Conv2d(r, out, 1)).
 * A module may patch a block of the layer's output features only (OpenCLIP's packed q/k/v in_proj):
 * it adds to output features [row0, row0 + rows).
 *
 * The modules of a weight are a list (next); the model's weight table points at it (sd_weight_ref.lowrank)
 * while a LoRA is applied in that mode. The lists and the matrices are owned by the LoRA state that made
 * them (sd_lora_state) and live until it restores the weights or is freed.
 */
#ifndef SDGEN_LOWRANK_H
#define SDGEN_LOWRANK_H

#include <stdint.h>

#include "sdgen/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_lowrank {
    const float *down;             /* D [r, cols], cols = in·kh·kw, float32 */
    const float *up;               /* U' [rows, r], float32, already times scale · alpha / r */
    int64_t r, row0, rows, cols;
    int kh, kw;                    /* D's kernel (1, 1 for a linear layer) */
    const struct sd_lowrank *next; /* the next module on the same weight, or NULL */
} sd_lowrank;

/* sd_linear(a, x, w, b) plus every module of lr (NULL: exactly sd_linear). */
sd_tensor sd_linear_lr(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b, const sd_lowrank *lr);
/* sd_conv2d(a, x, w, b, stride, pad) plus every module of lr (NULL: exactly sd_conv2d). */
sd_tensor sd_conv2d_lr(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b, int stride, int pad,
                       const sd_lowrank *lr);

#ifdef __cplusplus
}
#endif
#endif
