/* sdgen/ops.h — the neural-network operations the text encoders, U-Net and VAE are built from.
 *
 * All activations are f32, contiguous. Images are NCHW [n, c, h, w]; sequences are
 * [batch, tokens, channels]. Every op that makes a new tensor takes it from the arena;
 * functions ending in `_` work in place. Weights follow PyTorch's layouts:
 * linear w [out, in], conv w [out, in, kh, kw]. Matrix products and convolutions run
 * through OpenBLAS sgemm; the rest is parallelised with OpenMP over sd_threads().
 *
 * Model code reads like the paper:
 *     h = sd_groupnorm(a, x, 32, &g, &b, 1e-5f);  sd_silu_(h);  h = sd_conv2d(a, h, &w, &bias, 1, 1);
 */
#ifndef SDGEN_OPS_H
#define SDGEN_OPS_H

#include "sdgen/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Threads used by OpenBLAS and by sdgen's own loops (default: all online CPUs). */
void sd_set_threads(int n);
int sd_threads(void);
/* Give OpenBLAS sd_threads() threads of its own for a caller's direct cblas calls (the bench's
 * sgemm reference), and take them back: sdgen's ops decide their own threading. */
void sd_blas_threads_begin(void);
void sd_blas_threads_end(void);

/* OpenBLAS (0.3.x, memory.c blas_memory_alloc) maps one work buffer of this many bytes for every
 * thread that is inside a BLAS call at the same time, on first need, and keeps it; when the mmap
 * fails it retries forever. Under an address-space limit (ulimit -v) that is a hang, not an error,
 * so the pipeline checks the room first and then takes the buffers at once with sd_blas_warm(). */
#define SD_BLAS_BUFFER_BYTES ((size_t)128 << 20)
/* Have every one of the sd_threads() threads hold an OpenBLAS buffer at the same time, so that the
 * pool maps all of them (and OpenMP starts its threads) now, while the room for them is known. */
void sd_blas_warm(void);

/* 3×3 stride-1 convolutions by Winograd F(2×2, 3×3) (2.25× fewer multiplications; see
 * src/winograd.c and docs/PERFORMANCE.md for the measured difference from the direct sum), for
 * images of at least 32×32 pixels. Process-wide setting like the thread count. */
void sd_set_winograd(int on);
int sd_winograd(void);

/* The CPU kernels the ops run on (docs/ARCHITECTURE.md "CPU backend"): "generic" (plain C, any
 * CPU), and on x86-64 "avx2" (AVX2 + FMA + F16C) and "avx512" (adds AVX-512F attention and F16
 * conversion). By default the best one the CPU runs, or the one $SDGEN_CPU names when the first
 * op runs (a name the CPU cannot run is ignored there; sdgen rejects it at start). Process-wide
 * like the thread count: change it between model calls. sd_cpu_select: "auto" (or NULL) or a
 * name; -1 with a message when unknown or not runnable here. sd_cpu_available: 1 when this
 * build and CPU can run the named set. sd_cpu_name: the set in use. */
int sd_cpu_select(const char *name, sd_err *err);
int sd_cpu_available(const char *name);
const char *sd_cpu_name(void);

/* y[..., out] = x[..., in] @ w[out, in]^T + b[out]   (b may be NULL). Any leading dims.
 * The weight of sd_linear and of the convolutions below may be F16 halves not yet converted (w->f16
 * set, w->data NULL: sd_model_weight_f16); the product converts it a block at a time, exactly, and gives
 * the bits it gives the converted weight. */
sd_tensor sd_linear(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b);

/* 2-D convolution, x [n, cin, h, w], w [cout, cin, kh, kw], b [cout] or NULL.
 * Symmetric zero padding `pad` on every side (PyTorch Conv2d padding=pad). */
sd_tensor sd_conv2d(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b,
                    int stride, int pad);
/* Same with explicit padding (top, bottom, left, right), e.g. the VAE encoder's stride-2
 * downsample pads (0, 1, 0, 1) as in the CompVis/diffusers Downsample. */
sd_tensor sd_conv2d_pad(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b,
                        int stride, int pad_t, int pad_b, int pad_l, int pad_r);

/* What a convolution does to its output before returning it, applied to each band of rows while it
 * is still in cache (a separate pass over a 64-channel 512×512 activation moves 128 MB):
 * y = relu(y + add) with add (same shape as y) optional and relu 0 or 1. The same float32
 * operations as sd_add_ and a ReLU afterwards, so the same bits. */
typedef struct sd_conv_epilogue {
    const float *add;
    int relu;
} sd_conv_epilogue;
/* sd_conv2d (symmetric padding) followed by the epilogue (NULL: none). */
sd_tensor sd_conv2d_ep(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b, int stride, int pad,
                       const sd_conv_epilogue *ep);
/* sd_conv2d_ep for the autoencoders (VAE, TAESD): a 3×3 stride-1 convolution over a large image may
 * use Winograd F(4×4, 3×3), 1.2–1.55× faster than F(2×2, 3×3) there, with a rounding error about
 * 15× larger (≈ 1e-5 of the output's scale per convolution, against 1e-6). Their result is an 8-bit
 * image, or latents whose sampling noise is far larger, and the golden tolerances hold (tests/test_ops.c,
 * the golden VAE and TAESD cases). The U-Net keeps F(2×2, 3×3): its output is fed back every step
 * (docs/PERFORMANCE.md "Winograd F(4×4, 3×3) in the autoencoders"). */
sd_tensor sd_conv2d_ae(sd_arena *a, sd_tensor x, const sd_tensor *w, const sd_tensor *b, int stride, int pad,
                       const sd_conv_epilogue *ep);
/* sd_conv2d_ae into y, which the caller allocated with the output's shape (not overlapping x): lets a block
 * allocate a result below the input it is computed from, so that dropping the input afterwards frees the
 * top of the arena without moving the result. Returns y. */
sd_tensor sd_conv2d_ae_into(sd_arena *a, sd_tensor y, sd_tensor x, const sd_tensor *w, const sd_tensor *b, int stride,
                            int pad, const sd_conv_epilogue *ep);

/* GroupNorm over x [n, c, h, w] (or [n, c, L]) with `groups` groups, affine gain/bias [c]. */
sd_tensor sd_groupnorm(sd_arena *a, sd_tensor x, int groups, const sd_tensor *gain,
                       const sd_tensor *bias, float eps);
/* GroupNorm followed by SiLU (fused; same result as the two ops in sequence). */
sd_tensor sd_groupnorm_silu(sd_arena *a, sd_tensor x, int groups, const sd_tensor *gain,
                            const sd_tensor *bias, float eps);
/* The same in place on x (a writable tensor): the same bits. */
void sd_groupnorm_silu_(sd_tensor x, int groups, const sd_tensor *gain, const sd_tensor *bias, float eps);
/* LayerNorm over the last dimension, gain/bias [last dim]. */
sd_tensor sd_layernorm(sd_arena *a, sd_tensor x, const sd_tensor *gain, const sd_tensor *bias,
                       float eps);

/* Activations, in place. */
void sd_silu_(sd_tensor x);        /* x * sigmoid(x) */
void sd_gelu_(sd_tensor x);        /* exact GELU: 0.5 x (1 + erf(x / sqrt 2)) */
void sd_quick_gelu_(sd_tensor x);  /* x * sigmoid(1.702 x), as CLIP ViT-L/14 (OpenAI) */
/* GEGLU: x [..., 2F] split in two halves along the last dim, h = x[..., :F], g = x[..., F:],
 * out = h * gelu(g)  -> [..., F]  (diffusers GEGLU / CompVis GEGLU: proj then chunk(2)). */
sd_tensor sd_geglu(sd_arena *a, sd_tensor x);

/* Elementwise. */
void sd_add_(sd_tensor x, sd_tensor y);                    /* x += y (same numel) */
void sd_scale_(sd_tensor x, float s);                      /* x *= s */
/* x [n, c, h, w] += v [n, c] broadcast over h, w (time embedding into a res block). */
void sd_add_channel_bias_(sd_tensor x, sd_tensor v);
/* Concatenate along dim 1 (channels for NCHW): [n, ca, ...] ++ [n, cb, ...]. */
sd_tensor sd_concat1(sd_arena *a, sd_tensor x, sd_tensor y);
/* Nearest-neighbour ×2 upsampling of NCHW. */
sd_tensor sd_upsample2x(sd_arena *a, sd_tensor x);
/* [n, c, h, w] -> [n, h*w, c] and back. */
sd_tensor sd_nchw_to_nlc(sd_arena *a, sd_tensor x);
sd_tensor sd_nlc_to_nchw(sd_arena *a, sd_tensor x, int64_t h, int64_t w);

/* Softmax over the last dimension, in place. */
void sd_softmax_(sd_tensor x);

/* Scaled dot-product attention, multi-head.
 * q [b, lq, heads*d], k and v [b, lk, heads*d] -> [b, lq, heads*d];
 * scores scaled by 1/sqrt(d); causal: position i sees keys 0..i (CLIP text).
 * Computed in blocks of queries, so the full lq × lk score matrix is never held at once. */
sd_tensor sd_attention(sd_arena *a, sd_tensor q, sd_tensor k, sd_tensor v, int heads, int causal);

/* Sinusoidal timestep embedding as in SD / diffusers get_timestep_embedding with
 * flip_sin_to_cos=True, downscale_freq_shift=0: out [n, dim] = [cos(t·f_j) | sin(t·f_j)],
 * f_j = exp(-ln(10000)·j/(dim/2)). */
sd_tensor sd_timestep_embedding(sd_arena *a, const float *t, int n, int dim);


/* ---- per-op profile (`sdgen bench --profile`) ----
 * Off unless a caller installs a profile: every op then adds its wall time, process CPU time
 * (all threads), call count and FLOPs (2 per multiply-add, products only) to its class. The
 * profile pointer is the only state ops.c keeps besides the thread count. */
typedef enum sd_op_kind {
    SD_OP_CONV3X3,     /* 3×3 convolutions (stride 1 and 2) */
    SD_OP_CONV1X1,     /* 1×1 convolutions (ResBlock skips, VAE quant convs) */
    SD_OP_CONV_OTHER,  /* other kernel sizes */
    SD_OP_LINEAR,      /* linear layers (attention projections, feed-forward, proj_in/out) */
    SD_OP_ATTENTION,   /* scaled dot-product attention: QK^T, softmax, PV */
    SD_OP_GROUPNORM,   /* GroupNorm (with its fused SiLU) */
    SD_OP_LAYERNORM,   /* LayerNorm */
    SD_OP_ACTIVATION,  /* SiLU, GELU, GEGLU, quick GELU, softmax outside attention */
    SD_OP_ELEMENTWISE, /* add, scale, channel bias */
    SD_OP_LAYOUT,      /* concat, upsample, NCHW <-> NLC transposes */
    SD_OP_WEIGHTS,     /* weight fetch (F16 -> F32 conversion of the vectors, and of the matrices where the
                        * model code converts them), timed by the model code; the products' own conversion
                        * of F16 weights counts in their op */
    SD_OP_KINDS
} sd_op_kind;

typedef struct sd_op_profile {
    double wall[SD_OP_KINDS];  /* seconds */
    double cpu[SD_OP_KINDS];   /* process CPU seconds, all threads */
    double flops[SD_OP_KINDS];
    int64_t calls[SD_OP_KINDS];
} sd_op_profile;

/* Install (or with NULL remove) the profile that ops add to. Not thread-safe: set it between
 * model calls. */
void sd_ops_set_profile(sd_op_profile *p);
const char *sd_op_kind_name(sd_op_kind k);
/* For code outside ops.c that wants its own work in the profile (weight conversion):
 * t = sd_op_begin(); ...; sd_op_end(SD_OP_WEIGHTS, t, 0). Free when no profile is set. */
typedef struct sd_op_timer {
    double wall, cpu;
} sd_op_timer;
sd_op_timer sd_op_begin(void);
void sd_op_end(sd_op_kind k, sd_op_timer t, double flops);

#ifdef __cplusplus
}
#endif
#endif
