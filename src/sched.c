/* sched.c — noise schedules and sampler steps (sdgen/sched.h), as diffusers computes them.
 *
 * Reference classes (docs/SEMANTICS.md §5, §6, §9): diffusers 0.25.1 DDIMScheduler,
 * DDPMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, LCMScheduler,
 * UniPCMultistepScheduler, HeunDiscreteScheduler, LMSDiscreteScheduler, KDPM2DiscreteScheduler,
 * KDPM2AncestralDiscreteScheduler; diffusers 0.27.0 DPMSolverMultistepScheduler (dpmsolver++ and
 * sde-dpmsolver++, solver_order 2, midpoint, lower_order_final, final_sigmas_type "zero"). Tensor arithmetic there is float32, one rounding per torch op, and
 * the schedule set-up is numpy float64 (np.interp, np.linspace, Karras ρ = 7). The code below
 * follows the operation order of those classes so results agree to the last bit where the
 * reference's own math functions allow it. The compiler must not fuse a*b+c (gnu11 defaults to
 * -ffp-contract=fast), hence the pragma; the one place the reference itself fuses (PyTorch's
 * linspace kernel) uses fmaf() explicitly.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "sdgen/sched.h"
#include "torch_expf.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ float32 helpers */

/* torch.log / torch.exp on float32 tensors. PyTorch's CPU kernels (AVX2 build) evaluate them with
 * SLEEF's Sleef_logf8_u10 / Sleef_expf8_u10 (Vectorized<float>::log/exp; a 0-d tensor goes through
 * the same vector code). These are one-lane transcriptions of SLEEF's xlogf_u1 (here) and xexpf
 * (sd_expf in torch_expf.h), both from sleefsimdsp.c, FMA variant (double-float arithmetic for the
 * log), which reproduce torch 1.13's
 * torch.log / torch.exp bit for bit on 250,000 sampled inputs each; correctly rounded ln/exp
 * differ from them in ~0.2% / ~9% of cases (1 ulp). */
typedef struct { float x, y; } sd_f2; /* unevaluated sum x + y (SLEEF vfloat2) */

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static sd_f2 f2_add_ff(float x, float y) /* dfadd2_vf2_vf_vf: exact two-sum */
{
    float s = x + y, v = s - x;
    sd_f2 r = {s, (x - (s - v)) + (y - v)};
    return r;
}
static sd_f2 f2_add_22(sd_f2 x, sd_f2 y) /* dfadd_vf2_vf2_vf2 (|x| >= |y|) */
{
    float s = x.x + y.x;
    sd_f2 r = {s, (((x.x - s) + y.x) + x.y) + y.y};
    return r;
}
static sd_f2 f2_add_2f(sd_f2 x, float y) /* dfadd_vf2_vf2_vf */
{
    float s = x.x + y;
    sd_f2 r = {s, ((x.x - s) + y) + x.y};
    return r;
}
static sd_f2 f2_mul_2f(sd_f2 x, float y) /* dfmul_vf2_vf2_vf, FMA */
{
    float s = x.x * y;
    sd_f2 r = {s, fmaf(x.y, y, fmaf(x.x, y, -s))};
    return r;
}
static sd_f2 f2_div_22(sd_f2 n, sd_f2 d) /* dfdiv_vf2_vf2_vf2, FMA */
{
    float t = 1.0f / d.x;
    float s = n.x * t;
    float u = fmaf(t, n.x, -s);
    float v = fmaf(-d.y, t, fmaf(-d.x, t, 1.0f));
    sd_f2 r = {s, fmaf(s, v, fmaf(n.y, t, u))};
    return r;
}

static float log_f32(float d)
{
    if (isnan(d) || d < 0.0f) return NAN;
    if (d == 0.0f) return -INFINITY;
    if (isinf(d)) return INFINITY;
    int tiny = d < 1.17549435e-38f;
    if (tiny) d = d * (4294967296.0f * 4294967296.0f);
    int e = (int)((f32_bits(d * (1.0f / 0.75f)) >> 23) & 0xff) - 0x7f;
    float m = f32_from_bits(f32_bits(d) + ((uint32_t)(-e) << 23));
    if (tiny) e -= 64;
    const sd_f2 ln2 = {0.69314718246459960938f, -1.904654323148236017e-09f};
    sd_f2 s = f2_mul_2f(ln2, (float)e);
    sd_f2 x = f2_div_22(f2_add_ff(-1.0f, m), f2_add_ff(1.0f, m));
    float x2 = x.x * x.x;
    float t = fmaf(0.3027294874e+0f, x2, 0.3996108174e+0f);
    t = fmaf(t, x2, 0.6666694880e+0f);
    sd_f2 x_2 = {x.x * 2.0f, x.y * 2.0f};
    s = f2_add_22(s, x_2);
    s = f2_add_2f(s, (x2 * x.x) * t);
    return s.x + s.y;
}

/* np.log on a float32 array, numpy 1.x on x86-64 with AVX2/AVX512F (the reference's numpy
 * 1.24 dispatches its SIMD float32 log there: loops_exponent_log.dispatch.c.src, a 5th/5th-order
 * rational approximation on the mantissa in [√½, √2) with FMAs, then + e·ln 2). Used for
 * diffusers' log_sigmas = np.log(σ table); matches np.log bit for bit on all σ > 0 tested.
 * Positive finite normal x only (the σ table). */
static float np_logf(float x)
{
    const float p1 = 9.999999999999998702752e-01f, p2 = 2.112677543073053063722e+00f,
                p3 = 1.480000633576506585156e+00f, p4 = 3.808837741388407920751e-01f,
                p5 = 2.589979117907922693523e-02f;
    const float q1 = 2.612677543073109236779e+00f, q2 = 2.453006071784736363091e+00f,
                q3 = 9.864942958519418960339e-01f, q4 = 1.546476374983906719538e-01f,
                q5 = 5.875095403124574342950e-03f;
    uint32_t bits;
    memcpy(&bits, &x, 4);
    float e = (float)((int32_t)(bits >> 23) - 126);
    bits = (bits & 0x7fffffu) | 0x3f000000u; /* mantissa in [0.5, 1) */
    float m;
    memcpy(&m, &bits, 4);
    if (m <= 0.707106781186547524400844362104849039f) {
        m = m + m;
        e = e - 1.0f;
    }
    float y = m - 1.0f;
    float num = fmaf(p5, y, p4);
    num = fmaf(num, y, p3);
    num = fmaf(num, y, p2);
    num = fmaf(num, y, p1);
    num = fmaf(num, y, 0.0f);
    float den = fmaf(q5, y, q4);
    den = fmaf(den, y, q3);
    den = fmaf(den, y, q2);
    den = fmaf(den, y, q1);
    den = fmaf(den, y, 1.0f);
    return fmaf(e, 0.693147180559945309417232121458176568f, num / den);
}

/* numpy round(): half to even (the default rounding mode of nearbyint). */
static double round_half_even(double x) { return nearbyint(x); }

/* torch.linspace(start, end, steps, dtype=float32) on the CPU, PyTorch 1.13
 * (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp): step = (end − start)/(steps − 1) in
 * float; the first half counts up from start, the second half down from end; the kernel runs
 * 8-wide vectors in pairs (16 values) with the scalar lambda for the remainder, and the vector
 * lanes are base + j·step. The build contracts `start + step·i` and `end − step·(steps−i−1)`
 * into FMAs; lane offsets j·step are rounded before the add. Checked bit for bit against
 * torch 1.13 on 300 random (start, end, steps). */
static void torch_linspace_f32(float start, float end, int steps, float *out)
{
    if (steps == 1) { out[0] = start; return; }
    float step = (end - start) / (float)(steps - 1);
    int half = steps / 2, i = 0;
    for (; i + 16 <= steps; i += 16) {
        for (int k = i; k < i + 16; k += 8) {
            float base = k < half ? fmaf(step, (float)k, start) : fmaf(-step, (float)(steps - k - 1), end);
            out[k] = base;
            for (int j = 1; j < 8; j++) out[k + j] = base + (float)j * step;
        }
    }
    for (int k = i; k < steps; k++)
        out[k] = k < half ? fmaf(step, (float)k, start) : fmaf(-step, (float)(steps - k - 1), end);
}

/* np.linspace(0, stop, num) in float64: k·(stop/(num−1)), the last value exactly stop. */
static double np_linspace0(double stop, int num, int k)
{
    if (num == 1) return 0.0;
    if (k == num - 1) return stop;
    double step = stop / (double)(num - 1);
    return (double)k * step;
}

/* np.arange(start, 0, -step) for float step (numpy fills start + i·delta with
 * delta = (start − step) − start), and its length ceil(start/step). */
static int np_arange_down(double start, double step, int max_n, double *out)
{
    double len_d = ceil((0.0 - start) / -step);
    if (!(len_d >= 0) || len_d > max_n) return -1;
    int len = (int)len_d;
    double second = start + -step;
    double delta = second - start;
    for (int i = 0; i < len; i++) out[i] = i == 0 ? start : i == 1 ? second : start + (double)i * delta;
    return len;
}

/* np.interp(x, arange(len), fp) with fp the float32 table promoted to double (numpy's
 * compiled_base.c: exact hits return the table value, else slope·(x − x_j) + fp_j). */
static double np_interp_table(const float *fp, int len, double x)
{
    if (!(x > 0)) return fp[0];
    if (x >= (double)(len - 1)) return fp[len - 1];
    int j = (int)floor(x);
    if ((double)j == x) return fp[j];
    double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
    return slope * (x - (double)j) + (double)fp[j];
}

/* ------------------------------------------------------------------ names */

/* The one sampler table: sdgen's CLI name, A1111's display name (the infotext's "Sampler" and the
 * web API's sampler_name: AUTOMATIC1111 modules/sd_samplers_kdiffusion.py, sd_samplers_timesteps.py,
 * sd_samplers_lcm.py) and further accepted spellings (k-diffusion's function names; A1111's k_ aliases
 * lose their prefix before the lookup). Compared after normalize_name and "++" → "pp". */
static const struct {
    const char *name, *a1111, *alias[3];
} k_samplers[SD_SAMPLER_COUNT] = {
    [SD_SAMPLER_DDIM] = {"ddim", "DDIM", {NULL}},
    [SD_SAMPLER_DDPM] = {"ddpm", "DDPM", {NULL}},
    [SD_SAMPLER_EULER] = {"euler", "Euler", {NULL}},
    [SD_SAMPLER_EULER_A] = {"euler_a", "Euler a", {"euler_ancestral", NULL}},
    [SD_SAMPLER_DPMPP_2M] = {"dpmpp_2m", "DPM++ 2M", {"dpmpp2m", NULL}},
    [SD_SAMPLER_LCM] = {"lcm", "LCM", {NULL}},
    [SD_SAMPLER_UNIPC] = {"unipc", "UniPC", {"uni_pc", NULL}},
    [SD_SAMPLER_HEUN] = {"heun", "Heun", {NULL}},
    [SD_SAMPLER_LMS] = {"lms", "LMS", {NULL}},
    [SD_SAMPLER_DPM2] = {"dpm2", "DPM2", {"dpm_2", NULL}},
    [SD_SAMPLER_DPM2_A] = {"dpm2_a", "DPM2 a", {"dpm_2_a", "dpm_2_ancestral", "dpm2_ancestral"}},
    [SD_SAMPLER_DPMPP_2M_SDE] = {"dpmpp_2m_sde", "DPM++ 2M SDE", {"dpmpp2m_sde", NULL}},
};

static void normalize_name(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in && o + 1 < cap; in++) {
        char c = (char)tolower((unsigned char)*in);
        if (c == '-' || c == ' ') c = '_';
        out[o++] = c;
    }
    out[o] = 0;
}

int sd_sampler_parse(const char *name, sd_sampler *out, sd_schedule *schedule)
{
    if (!name) return -1;
    char raw[64], n[64];
    normalize_name(name, raw, sizeof raw);
    size_t o = 0;
    for (const char *c = raw; *c && o + 2 < sizeof n; c++) {
        if (c[0] == '+' && c[1] == '+') { /* "dpm++" is spelled "dpmpp" in the table */
            n[o++] = 'p';
            n[o++] = 'p';
            c++;
        } else {
            n[o++] = *c;
        }
    }
    n[o] = 0;
    if (!strncmp(n, "k_", 2)) memmove(n, n + 2, strlen(n + 2) + 1);
    size_t len = strlen(n);
    int karras = 0;
    if (len > 7 && !strcmp(n + len - 7, "_karras")) { /* A1111's old combined names */
        karras = 1;
        n[len - 7] = 0;
    }
    int found = -1;
    for (int i = 0; i < SD_SAMPLER_COUNT && found < 0; i++) {
        if (!strcmp(n, k_samplers[i].name)) found = i;
        for (int k = 0; k < 3 && found < 0 && k_samplers[i].alias[k]; k++)
            if (!strcmp(n, k_samplers[i].alias[k])) found = i;
    }
    if (found < 0) return -1;
    if (karras && !schedule) return -1;
    *out = (sd_sampler)found;
    if (karras) *schedule = SD_SCHEDULE_KARRAS;
    return 0;
}

const char *sd_sampler_name(sd_sampler s)
{
    return (unsigned)s < SD_SAMPLER_COUNT ? k_samplers[s].name : "unknown";
}

const char *sd_sampler_a1111_name(sd_sampler s)
{
    return (unsigned)s < SD_SAMPLER_COUNT ? k_samplers[s].a1111 : "unknown";
}

const char *sd_sampler_list(void)
{
    return "ddim, ddpm, euler, euler_a, dpmpp_2m, dpmpp_2m_sde, lcm, unipc, heun, lms, dpm2, dpm2_a";
}

/* Every σ sampler: their diffusers classes all take use_karras_sigmas (Euler, Euler a, Heun, LMS, KDPM2,
 * KDPM2 a, UniPC in 0.25.1, DPMSolverMultistep in 0.27.0). DDIM, DDPM and LCM have no such option. */
int sd_sampler_has_karras(sd_sampler s)
{
    return (unsigned)s < SD_SAMPLER_COUNT && s != SD_SAMPLER_DDIM && s != SD_SAMPLER_DDPM && s != SD_SAMPLER_LCM;
}

int sd_sampler_order(sd_sampler s)
{
    return s == SD_SAMPLER_HEUN || s == SD_SAMPLER_DPM2 || s == SD_SAMPLER_DPM2_A ? 2 : 1;
}

int sd_sampler_model_calls(sd_sampler s, int steps)
{
    return sd_sampler_order(s) == 2 && steps > 0 ? 2 * steps - 1 : steps;
}

int sd_schedule_parse(const char *name, sd_schedule *out)
{
    if (!name) return -1;
    if (!strcasecmp(name, "default") || !strcasecmp(name, "automatic")) { *out = SD_SCHEDULE_DEFAULT; return 0; }
    if (!strcasecmp(name, "karras")) { *out = SD_SCHEDULE_KARRAS; return 0; }
    return -1;
}

const char *sd_schedule_name(sd_schedule s) { return s == SD_SCHEDULE_KARRAS ? "karras" : "default"; }

/* AUTOMATIC1111 modules/sd_schedulers.py labels: 'Automatic' (the sampler's own default
 * schedule), 'Karras'. */
const char *sd_schedule_a1111_name(sd_schedule s) { return s == SD_SCHEDULE_KARRAS ? "Karras" : "Automatic"; }

int sd_spacing_parse(const char *name, sd_spacing *out)
{
    if (!name) return -1;
    if (!*name || !strcasecmp(name, "default")) { *out = SD_SPACING_DEFAULT; return 0; }
    if (!strcasecmp(name, "leading")) { *out = SD_SPACING_LEADING; return 0; }
    if (!strcasecmp(name, "linspace")) { *out = SD_SPACING_LINSPACE; return 0; }
    if (!strcasecmp(name, "trailing")) { *out = SD_SPACING_TRAILING; return 0; }
    return -1;
}

const char *sd_spacing_name(sd_spacing s)
{
    switch (s) {
    case SD_SPACING_LEADING: return "leading";
    case SD_SPACING_LINSPACE: return "linspace";
    case SD_SPACING_TRAILING: return "trailing";
    default: return "default";
    }
}

/* ------------------------------------------------------------------ schedule set-up */

/* k-diffusion get_sigmas_karras / diffusers _convert_to_karras: ramp = np.linspace(0, 1, n),
 * (σmax^(1/ρ) + ramp·(σmin^(1/ρ) − σmax^(1/ρ)))^ρ with ρ = 7, all float64. */
void sd_sched_karras_sigmas(double sigma_min, double sigma_max, int n, double *out)
{
    const double rho = 7.0;
    double min_inv = pow(sigma_min, 1.0 / rho), max_inv = pow(sigma_max, 1.0 / rho);
    for (int i = 0; i < n; i++) {
        double ramp = np_linspace0(1.0, n, i);
        out[i] = pow(max_inv + ramp * (min_inv - max_inv), rho);
    }
}

/* diffusers _sigma_to_t (Euler / DPM-Solver classes) as numpy 1.x evaluates it: log_sigmas is
 * np.log of the float32 σ table (float32, np_logf), and the float64 log σ meets it through value-based
 * casting, so the distances and the weight w are float32; only t = (1 − w)·low + w·high is
 * float64. low = the last index with log σ_k ≤ log σ (0 if none), at most len − 2. */
static double sigma_to_t(const float *log_sigmas, int len, double sigma)
{
    double ls = log(sigma > 1e-10 ? sigma : 1e-10);
    float lsf = (float)ls;
    int low = 0;
    for (int k = 0; k < len; k++)
        if (lsf - log_sigmas[k] >= 0.0f) low = k;
    if (low > len - 2) low = len - 2;
    float lo = log_sigmas[low], hi = log_sigmas[low + 1];
    float w = (lo - lsf) / (lo - hi);
    if (w < 0.0f) w = 0.0f;
    if (w > 1.0f) w = 1.0f;
    float a = 1.0f - w;
    return (double)a * (double)low + (double)w * (double)(low + 1);
}

/* _sigma_to_t of the KDPM2 classes (0.25.1) on a float32 σ from their own torch tensors: np.log of
 * max(σ, 1e-10) in float32 (np_logf), float32 distances and weight, and t = (1 − w)·low + w·high
 * in float32 too (torch arithmetic with the index arrays). NaN in, NaN out. */
static float sigma_to_t_f32(const float *log_sigmas, int len, float sigma)
{
    if (isnan(sigma)) return NAN;
    float ls = np_logf(sigma > 1e-10f ? sigma : 1e-10f);
    int low = 0;
    for (int k = 0; k < len; k++)
        if (ls - log_sigmas[k] >= 0.0f) low = k;
    if (low > len - 2) low = len - 2;
    float lo = log_sigmas[low], hi = log_sigmas[low + 1];
    float w = (lo - ls) / (lo - hi);
    if (w < 0.0f) w = 0.0f;
    if (w > 1.0f) w = 1.0f;
    float a = (1.0f - w) * (float)low;
    float b = w * (float)(low + 1);
    return a + b;
}

/* torch.lerp(start, end, 0.5) on float32 (ATen's lerp: a weight of 0.5 is not "small", so
 * end − (end − start)·(1 − 0.5)); the product by 0.5 is exact. */
static float lerp_half(float start, float end) { return end - (end - start) * 0.5f; }

/* KDPM2DiscreteScheduler / KDPM2AncestralDiscreteScheduler.set_timesteps (0.25.1): from the step σ
 * list sf[0..n] (σ_n = 0) and timesteps t[0..n−1], the interleaved per-call lists
 *   X_il = [X_0, X_1, X_1, …, X_n, X_n, X_n]   (2n + 2 entries, for σ, σ̂, σ_up, σ_down)
 * with σ̂ the geometric midpoint exp(lerp(ln σ_j, ln σ_{j−1}, ½)) (dpm2) or between σ_j and σ_down_j
 * (dpm2_a, σ_down = sqrt(σ_{j+1}² − σ_up²), σ_up = sqrt(σ_{j+1}²(σ_j² − σ_{j+1}²)/σ_j²), the last two
 * midpoints 0), all float32 torch arithmetic; the calls' timesteps interleave t_j with t(σ̂). */
static void dpm2_lists(sd_sched *s, int ancestral, const float *sf, const double *t, int n, const float *log_sigmas)
{
    float si[SD_SCHED_MAX_STEPS + 1], up[SD_SCHED_MAX_STEPS + 1], down[SD_SCHED_MAX_STEPS + 1];
    for (int j = 0; j <= n; j++) {
        if (!ancestral) {
            float prev = sf[j == 0 ? n : j - 1]; /* sigmas.roll(1) */
            si[j] = sd_expf(lerp_half(log_f32(sf[j]), log_f32(prev)));
            up[j] = down[j] = 0.0f;
        } else {
            float next = j < n ? sf[j + 1] : 0.0f; /* sigmas.roll(−1) with the last set to 0 */
            float nn = next * next, ss = sf[j] * sf[j];
            up[j] = sqrtf(nn * (ss - nn) / ss);
            down[j] = j < n ? sqrtf(nn - up[j] * up[j]) : 0.0f;
            si[j] = j >= n - 1 ? 0.0f : sd_expf(lerp_half(log_f32(sf[j]), log_f32(down[j])));
        }
    }
    s->n_sigmas_all = 2 * n + 2;
    const float *src[4] = {sf, si, up, down};
    float *dst[4] = {s->sigmas_all, s->interp_all, s->up_all, s->down_all};
    for (int a = 0; a < 4; a++) {
        dst[a][0] = src[a][0];
        for (int j = 1; j <= n; j++) dst[a][2 * j - 1] = dst[a][2 * j] = src[a][j];
        dst[a][2 * n + 1] = src[a][n];
    }
    s->timesteps_all[0] = (float)t[0];
    for (int j = 1; j < n; j++) {
        s->timesteps_all[2 * j - 1] = sigma_to_t_f32(log_sigmas, s->num_train, si[ancestral ? j - 1 : j]);
        s->timesteps_all[2 * j] = (float)t[j];
    }
}

static int build_tables(sd_sched *s, const sd_sched_config *cfg, int *steps_offset, char *spacing_cfg,
                        size_t spacing_cap, sd_err *err)
{
    int T = 1000;
    double b0 = 0.00085, b1 = 0.012;
    const char *sched = "scaled_linear";
    *steps_offset = 1;
    spacing_cfg[0] = 0;
    if (cfg) {
        if (cfg->num_train_timesteps) T = cfg->num_train_timesteps;
        if (cfg->beta_start > 0) b0 = cfg->beta_start;
        if (cfg->beta_end > 0) b1 = cfg->beta_end;
        if (cfg->beta_schedule[0]) sched = cfg->beta_schedule;
        *steps_offset = cfg->steps_offset;
        if (!cfg->from_file && !cfg->num_train_timesteps) *steps_offset = 1; /* zeroed struct = SD defaults */
        snprintf(spacing_cfg, spacing_cap, "%.*s", (int)sizeof cfg->timestep_spacing, cfg->timestep_spacing);
    }
    if (T < 2 || T > SD_SCHED_MAX_TRAIN)
        return sd_errf(err, "scheduler: num_train_timesteps %d out of range 2..%d", T, SD_SCHED_MAX_TRAIN);
    if (!(b0 > 0 && b0 < 1 && b1 > 0 && b1 < 1))
        return sd_errf(err, "scheduler: beta_start %g / beta_end %g must lie in (0, 1)", b0, b1);
    if (*steps_offset < 0 || *steps_offset > T)
        return sd_errf(err, "scheduler: steps_offset %d out of range", *steps_offset);
    s->num_train = T;

    float *betas = s->sigma_table; /* scratch */
    if (!strcmp(sched, "scaled_linear")) {
        /* betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=float32) ** 2 */
        torch_linspace_f32((float)sqrt(b0), (float)sqrt(b1), T, betas);
        for (int k = 0; k < T; k++) betas[k] = betas[k] * betas[k];
    } else if (!strcmp(sched, "linear")) {
        torch_linspace_f32((float)b0, (float)b1, T, betas);
    } else {
        return sd_errf(err, "scheduler: beta_schedule \"%s\" is not supported (scaled_linear, linear)", sched);
    }
    /* alphas = 1 − betas (float32); torch.cumprod on the CPU accumulates in double. */
    double acc = 1.0;
    for (int k = 0; k < T; k++) {
        float alpha = 1.0f - betas[k];
        acc *= (double)alpha;
        s->alphas_cumprod[k] = (float)acc;
    }
    for (int k = 0; k < T; k++) {
        float a = s->alphas_cumprod[k];
        s->sigma_table[k] = sqrtf((1.0f - a) / a);
    }
    return 0;
}

int sd_sched_init(sd_sched *s, sd_sampler sampler, sd_schedule schedule, sd_spacing spacing,
                  sd_prediction prediction, int steps, const sd_sched_config *cfg, sd_err *err)
{
    memset(s, 0, sizeof *s);
    s->last_step = -1;
    if ((unsigned)sampler >= SD_SAMPLER_COUNT) return sd_errf(err, "scheduler: unknown sampler %d", (int)sampler);
    if (prediction != SD_PRED_EPS && prediction != SD_PRED_V)
        return sd_errf(err, "scheduler: prediction type must be eps or v");
    if (schedule != SD_SCHEDULE_DEFAULT && schedule != SD_SCHEDULE_KARRAS)
        return sd_errf(err, "scheduler: unknown schedule %d", (int)schedule);
    if (schedule == SD_SCHEDULE_KARRAS && !sd_sampler_has_karras(sampler))
        return sd_errf(err, "--schedule karras is not available for the %s sampler (diffusers' %s has no "
                       "Karras sigmas); use a sigma sampler (euler, euler_a, dpmpp_2m, heun, lms, dpm2, unipc, …) "
                       "or --schedule default",
                       sd_sampler_name(sampler),
                       sampler == SD_SAMPLER_DDIM   ? "DDIMScheduler"
                       : sampler == SD_SAMPLER_DDPM ? "DDPMScheduler"
                                                    : "LCMScheduler");
    const int vp_multistep = sampler == SD_SAMPLER_DPMPP_2M || sampler == SD_SAMPLER_DPMPP_2M_SDE;
    s->sampler = sampler;
    s->schedule = schedule;
    s->prediction = prediction;
    s->order = sd_sampler_order(sampler);

    int offset;
    char spacing_cfg[32];
    if (build_tables(s, cfg, &offset, spacing_cfg, sizeof spacing_cfg, err)) return -1;
    s->steps_offset = offset;
    const int T = s->num_train;
    int max_steps = T < SD_SCHED_MAX_STEPS ? T : SD_SCHED_MAX_STEPS;
    if (steps < 1 || steps > max_steps)
        return sd_errf(err, "steps %d out of range 1..%d", steps, max_steps);
    s->steps = steps;

    if (sampler == SD_SAMPLER_LCM) {
        /* LCMScheduler picks its timesteps from the distillation grid, whatever the spacing. */
        if (spacing != SD_SPACING_DEFAULT)
            return sd_errf(err, "--timestep-spacing does not apply to the lcm sampler (LCMScheduler takes its "
                           "timesteps from the %d-step distillation grid)", SD_LCM_ORIGINAL_STEPS);
        spacing_cfg[0] = 0;
        spacing = SD_SPACING_LEADING;
    }
    if (spacing == SD_SPACING_DEFAULT && spacing_cfg[0]) {
        if (sd_spacing_parse(spacing_cfg, &spacing))
            return sd_errf(err, "scheduler config: unknown timestep_spacing \"%s\"", spacing_cfg);
    }
    if (spacing == SD_SPACING_DEFAULT)
        spacing = (sampler == SD_SAMPLER_DDIM || sampler == SD_SAMPLER_DDPM) ? SD_SPACING_LEADING : SD_SPACING_LINSPACE;
    s->spacing = spacing;

    s->has_sigmas = sampler != SD_SAMPLER_DDIM && sampler != SD_SAMPLER_DDPM && sampler != SD_SAMPLER_LCM;
    s->int_timesteps = sampler == SD_SAMPLER_DDIM || sampler == SD_SAMPLER_DDPM || sampler == SD_SAMPLER_LCM ||
                       sampler == SD_SAMPLER_UNIPC || vp_multistep;

    double t[SD_SCHED_MAX_STEPS + 1];
    double tmp[SD_SCHED_MAX_STEPS + 2];
    const int n = steps;
    if (sampler == SD_SAMPLER_LCM) {
        /* LCMScheduler.set_timesteps (0.25.1): the origin grid k·(T // original_steps) − 1 for k = 1 …
         * original_steps, reversed, sampled at floor(linspace(0, original_steps, n, endpoint=False)). */
        const int orig = SD_LCM_ORIGINAL_STEPS;
        if (n > orig)
            return sd_errf(err, "the lcm sampler runs at most %d steps (LCMScheduler original_inference_steps), got %d",
                           orig, n);
        const int kk = T / orig;
        const double step = (double)orig / (double)n;
        for (int i = 0; i < n; i++) {
            int idx = (int)floor((double)i * step);
            t[i] = (double)((orig - idx) * kk - 1);
        }
    } else if (vp_multistep || sampler == SD_SAMPLER_UNIPC) {
        /* 0.27.0 DPMSolverMultistepScheduler / 0.25.1 UniPCMultistepScheduler set_timesteps (the same
         * grids); last_timestep = T (lambda_min_clipped = −inf). */
        if (spacing == SD_SPACING_LINSPACE) {
            for (int i = 0; i < n; i++) t[i] = round_half_even(np_linspace0((double)(T - 1), n + 1, n - i));
        } else if (spacing == SD_SPACING_LEADING) {
            int ratio = T / (n + 1);
            if (ratio < 1) return sd_errf(err, "%s with leading spacing needs steps < %d", sd_sampler_name(sampler), T);
            for (int i = 0; i < n; i++) t[i] = (double)((n - i) * ratio + offset);
        } else {
            int len = np_arange_down((double)T, (double)T / n, SD_SCHED_MAX_STEPS + 1, tmp);
            if (len != n)
                return sd_errf(err, "trailing spacing with %d steps gives %d timesteps in diffusers; choose another step count", n, len);
            for (int i = 0; i < n; i++) t[i] = round_half_even(tmp[i]) - 1.0;
        }
    } else {
        /* 0.25.1 DDIM/DDPM (int64) and Euler, Euler a, Heun, LMS, KDPM2, KDPM2 a (float32) set_timesteps. */
        if (spacing == SD_SPACING_LINSPACE) {
            for (int i = 0; i < n; i++) {
                double v = np_linspace0((double)(T - 1), n, n - 1 - i);
                t[i] = s->int_timesteps ? round_half_even(v) : (double)(float)v;
            }
        } else if (spacing == SD_SPACING_LEADING) {
            int ratio = T / n;
            for (int i = 0; i < n; i++) t[i] = (double)((n - 1 - i) * ratio + offset);
        } else {
            int len = np_arange_down((double)T, (double)T / n, SD_SCHED_MAX_STEPS + 1, tmp);
            if (len != n)
                return sd_errf(err, "trailing spacing with %d steps gives %d timesteps in diffusers; choose another step count", n, len);
            for (int i = 0; i < n; i++) t[i] = round_half_even(tmp[i]) - 1.0;
        }
    }

    double sig[SD_SCHED_MAX_STEPS + 1];
    float log_sigmas[SD_SCHED_MAX_TRAIN];
    if (s->has_sigmas) {
        for (int k = 0; k < T; k++) log_sigmas[k] = np_logf(s->sigma_table[k]);
        if (schedule == SD_SCHEDULE_KARRAS) {
            double smin, smax;
            if (vp_multistep || sampler == SD_SAMPLER_UNIPC) {
                /* 0.27.0 DPMSolverMultistep, 0.25.1 UniPC: Karras over the whole flipped σ table
                 * (the spacing's timesteps are discarded). */
                smin = s->sigma_table[0];
                smax = s->sigma_table[T - 1];
            } else {
                /* 0.25.1 Euler, Euler a, Heun, LMS, KDPM2, KDPM2 a: Karras between the first and last
                 * interpolated σ of the spacing's timesteps (σ_999 and σ_0 for linspace). */
                smax = np_interp_table(s->sigma_table, T, t[0]);
                smin = np_interp_table(s->sigma_table, T, t[n - 1]);
            }
            sd_sched_karras_sigmas(smin, smax, n, sig);
            /* _sigma_to_t gives each σ_i a timestep. DPMSolverMultistep, UniPC, KDPM2 and KDPM2 a
             * round it (`.round()` after _sigma_to_t in their set_timesteps; KDPM2's interpolated
             * midpoint timesteps stay fractional); Euler, Euler a, Heun and LMS keep the fraction,
             * which the U-Net receives as float32. */
            const int round_t = vp_multistep || sampler == SD_SAMPLER_UNIPC || sampler == SD_SAMPLER_DPM2 ||
                                sampler == SD_SAMPLER_DPM2_A;
            for (int i = 0; i < n; i++) {
                double tt = sigma_to_t(log_sigmas, T, sig[i]);
                t[i] = round_t ? round_half_even(tt) : (double)(float)tt;
            }
        } else {
            for (int i = 0; i < n; i++) sig[i] = np_interp_table(s->sigma_table, T, t[i]);
        }
        /* The list ends at 0, except UniPC (0.25.1), which ends at σ_0 of the table, or with Karras
         * σ at a repeat of its last σ (set_timesteps: concatenate([sigmas, sigmas[-1:]])), so that its
         * last predictor step has h = 0 and returns the corrected sample unchanged. */
        if (sampler == SD_SAMPLER_UNIPC)
            sig[n] = schedule == SD_SCHEDULE_KARRAS ? sig[n - 1] : (double)s->sigma_table[0];
        else
            sig[n] = 0.0;
    }

    /* The per-call lists (docs/SEMANTICS.md): one call per step, or for the order-2 samplers the
     * diffusers classes' interleaved lists. */
    if (s->order == 2) {
        float sf[SD_SCHED_MAX_STEPS + 1];
        for (int i = 0; i <= n; i++) sf[i] = (float)sig[i];
        if (sampler == SD_SAMPLER_HEUN) {
            /* HeunDiscreteScheduler: sigmas = [σ0, σ1, σ1, …, σ_{n−1}, σ_{n−1}, 0], timesteps = [t0, t1, t1, …]. */
            s->n_sigmas_all = 2 * n;
            s->sigmas_all[0] = sf[0];
            for (int j = 1; j < n; j++) s->sigmas_all[2 * j - 1] = s->sigmas_all[2 * j] = sf[j];
            s->sigmas_all[2 * n - 1] = sf[n];
            s->timesteps_all[0] = (float)t[0];
            for (int j = 1; j < n; j++) s->timesteps_all[2 * j - 1] = s->timesteps_all[2 * j] = (float)t[j];
        } else {
            dpm2_lists(s, sampler == SD_SAMPLER_DPM2_A, sf, t, n, log_sigmas);
        }
        s->n_calls_all = 2 * n - 1;
    } else {
        s->n_calls_all = n;
        for (int i = 0; i < n; i++) s->timesteps_all[i] = (float)t[i];
        if (s->has_sigmas) {
            s->n_sigmas_all = n + 1;
            for (int i = 0; i <= n; i++) s->sigmas_all[i] = (float)sig[i];
        }
    }

    /* init_noise_sigma: 1 for ddim/ddpm/lcm and the multistep solvers; the k-diffusion style classes
     * take max σ (linspace, trailing) or sqrt(max σ² + 1) (leading), float32. */
    s->init_noise_sigma = 1.0f;
    if (s->has_sigmas && !vp_multistep && sampler != SD_SAMPLER_UNIPC) {
        float mx = 0.0f;
        for (int i = 0; i < s->n_sigmas_all; i++)
            if (s->sigmas_all[i] > mx) mx = s->sigmas_all[i];
        s->init_noise_sigma = spacing == SD_SPACING_LEADING ? sqrtf(mx * mx + 1.0f) : mx;
    }

    /* Run the whole schedule until sd_sched_set_strength says otherwise. */
    s->t_start = 0;
    s->sigma_start = 0;
    s->call_start = 0;
    s->n_steps = n;
    s->n_calls = s->n_calls_all;
    s->n_sigmas = s->n_sigmas_all;
    memcpy(s->timesteps, s->timesteps_all, sizeof(float) * (size_t)s->n_calls);
    if (s->has_sigmas) memcpy(s->sigmas, s->sigmas_all, sizeof(float) * (size_t)s->n_sigmas);
    return 0;
}

int sd_sched_check_run(const sd_sched *s, double strength, sd_err *err)
{
    /* DDIMScheduler.step / DDPMScheduler.step (0.25.1) index alphas_cumprod[t], and img2img's add_noise
     * indexes it at the first timestep run: with leading spacing, timesteps are (n−1−i)·(T//n) +
     * steps_offset, so 1000 steps with steps_offset 1 (or a scheduler config with a large steps_offset)
     * reach t ≥ T and diffusers stops with an IndexError. sdgen refuses the same settings, before any
     * work. The σ samplers interpolate their σ table with np.interp, which clamps to its ends, so they
     * run such timesteps in diffusers and here alike. */
    if (s->sampler != SD_SAMPLER_DDIM && s->sampler != SD_SAMPLER_DDPM) return 0;
    for (int i = 0; i < s->n_steps; i++) {
        if (s->timesteps[i] < (float)s->num_train) continue;
        char how[96] = "";
        if (strength < 1.0) snprintf(how, sizeof how, " and --strength %g", strength);
        return sd_errf(err,
                       "%s with %d steps%s, %s timestep spacing and steps_offset %d runs timestep %d, past the end of "
                       "the %d-step noise schedule (diffusers' %s stops with an IndexError here); use fewer steps, or "
                       "--timestep-spacing linspace or trailing",
                       sd_sampler_name(s->sampler), s->steps, how, sd_spacing_name(s->spacing), s->steps_offset,
                       (int)s->timesteps[i], s->num_train,
                       s->sampler == SD_SAMPLER_DDIM ? "DDIMScheduler" : "DDPMScheduler");
    }
    return 0;
}

void sd_sched_free(sd_sched *s)
{
    free(s->prev_x0);
    s->prev_x0 = NULL;
    s->prev_n = 0;
    s->have_prev = 0;
    free(s->work);
    s->work = NULL;
    s->work_n = 0;
    s->work_k = 0;
    s->n_hist = 0;
}

int sd_sampler_check_eta(sd_sampler sampler, double eta, sd_err *err)
{
    if (!(eta >= 0.0 && eta <= 1.0)) return sd_errf(err, "--eta %g must lie in [0, 1]", eta);
    if (eta > 0.0 && sampler != SD_SAMPLER_DDIM)
        return sd_errf(err, "--eta %g: only the ddim sampler has an eta (DDIMScheduler); %s has none", eta,
                       sd_sampler_name(sampler));
    return 0;
}

int sd_sched_set_eta(sd_sched *s, double eta, sd_err *err)
{
    if (sd_sampler_check_eta(s->sampler, eta, err)) return -1;
    s->eta = (float)eta; /* DDIMScheduler.step: eta * variance ** 0.5 with eta as a float32 scalar */
    return 0;
}

int sd_sched_set_strength(sd_sched *s, double strength, sd_err *err)
{
    if (!(strength > 0.0 && strength <= 1.0))
        return sd_errf(err, "--strength %g must lie in (0, 1]", strength);
    /* StableDiffusionImg2ImgPipeline.get_timesteps (0.25.1): int() of the double product. */
    double prod = (double)s->steps * strength;
    int init_timestep = (int)prod;
    if (init_timestep > s->steps) init_timestep = s->steps;
    int t_start = s->steps - init_timestep;
    if (t_start < 0) t_start = 0;
    if (init_timestep < 1)
        return sd_errf(err, "--strength %g with %d steps runs no denoising step (int(steps·strength) = 0)", strength,
                       s->steps);
    s->t_start = t_start;
    s->n_steps = s->steps - t_start;
    if (s->order == 2) {
        /* get_timesteps keeps timesteps[t_start · order:]: the call lists from the first-order call of
         * step t_start on, where index_for_timestep lands too (the second of a repeated timestep). */
        s->call_start = s->sigma_start = 2 * t_start;
        s->n_calls = s->n_calls_all - s->call_start;
        s->n_sigmas = s->n_sigmas_all - s->sigma_start;
        memcpy(s->timesteps, s->timesteps_all + s->call_start, sizeof(float) * (size_t)s->n_calls);
        memcpy(s->sigmas, s->sigmas_all + s->sigma_start, sizeof(float) * (size_t)s->n_sigmas);
        s->have_prev = 0;
        s->n_hist = 0;
        s->last_step = -1;
        return 0;
    }
    s->call_start = t_start;
    s->n_calls = s->n_steps;
    memcpy(s->timesteps, s->timesteps_all + t_start, sizeof(float) * (size_t)s->n_steps);
    /* The σ samplers find their first index with index_for_timestep: the second match when the
     * timestep occurs more than once in the schedule (diffusers _init_step_index). */
    s->sigma_start = t_start;
    if (s->has_sigmas) {
        int first = -1, count = 0, second = -1;
        for (int k = 0; k < s->steps; k++)
            if (s->timesteps_all[k] == s->timesteps_all[t_start]) {
                if (first < 0) first = k;
                else if (second < 0) second = k;
                count++;
            }
        s->sigma_start = count > 1 ? second : first;
        if (s->sigma_start + s->n_steps > s->steps)
            return sd_errf(err, "--strength %g: the first timestep repeats in the schedule and diffusers would run "
                           "past its end; choose another step count", strength);
        s->n_sigmas = s->n_steps + 1;
        memcpy(s->sigmas, s->sigmas_all + s->sigma_start, sizeof(float) * (size_t)s->n_sigmas);
    }
    s->have_prev = 0;
    s->n_hist = 0;
    s->last_step = -1;
    return 0;
}

/* ------------------------------------------------------------------ latents */

void sd_sched_init_latent(const sd_sched *s, const float *noise, float *x, int64_t n)
{
    float k = s->init_noise_sigma;
    for (int64_t j = 0; j < n; j++) x[j] = noise[j] * k;
}

/* _sigma_to_alpha_sigma_t (DPMSolverMultistepScheduler 0.27.0): α = 1/(σ² + 1)^0.5, σ_t = σ·α. */
static void vp_alpha_sigma(float sigma, float *alpha, float *sigma_t)
{
    float a = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *alpha = a;
    *sigma_t = sigma * a;
}

void sd_sched_add_noise(const sd_sched *s, const float *x0, const float *noise, float *out, int64_t n)
{
    if (s->sampler == SD_SAMPLER_DDIM || s->sampler == SD_SAMPLER_DDPM || s->sampler == SD_SAMPLER_LCM ||
        s->sampler == SD_SAMPLER_UNIPC) {
        /* UniPCMultistepScheduler.add_noise (0.25.1) and LCMScheduler's index ᾱ_t as DDPM does */
        int t = (int)s->timesteps[0];
        float a = s->alphas_cumprod[t];
        float sa = sqrtf(a), sb = sqrtf(1.0f - a);
        for (int64_t j = 0; j < n; j++) out[j] = sa * x0[j] + sb * noise[j];
    } else if (s->sampler == SD_SAMPLER_DPMPP_2M || s->sampler == SD_SAMPLER_DPMPP_2M_SDE) {
        float alpha, st;
        vp_alpha_sigma(s->sigmas[0], &alpha, &st);
        for (int64_t j = 0; j < n; j++) out[j] = alpha * x0[j] + st * noise[j];
    } else {
        float sigma = s->sigmas[0];
        for (int64_t j = 0; j < n; j++) out[j] = x0[j] + noise[j] * sigma;
    }
}

/* Whether the sampler scales the U-Net input by 1/sqrt(σ² + 1) (the k-diffusion style classes). */
static int scales_input(sd_sampler m)
{
    return m == SD_SAMPLER_EULER || m == SD_SAMPLER_EULER_A || m == SD_SAMPLER_HEUN || m == SD_SAMPLER_LMS ||
           m == SD_SAMPLER_DPM2 || m == SD_SAMPLER_DPM2_A;
}

/* σ of call i for scale_model_input: the call's own σ; the second-order calls of KDPM2 use the
 * midpoint σ̂ (KDPM2: sigmas_interpol[step_index], KDPM2 a: sigmas_interpol[step_index − 1]). */
static float call_sigma(const sd_sched *s, int i)
{
    int k = s->sigma_start + i;
    if (s->sampler == SD_SAMPLER_DPM2 && (k & 1)) return s->interp_all[k];
    if (s->sampler == SD_SAMPLER_DPM2_A && (k & 1)) return s->interp_all[k - 1];
    return s->sigmas[i];
}

float sd_sched_input_divisor(const sd_sched *s, int i)
{
    if (scales_input(s->sampler) && i >= 0 && i < s->n_calls) {
        float sigma = call_sigma(s, i);
        return sqrtf(sigma * sigma + 1.0f);
    }
    return 1.0f;
}

void sd_sched_scale_input(const sd_sched *s, int i, const float *x, float *out, int64_t n)
{
    if (scales_input(s->sampler)) {
        float d = sd_sched_input_divisor(s, i);
        for (int64_t j = 0; j < n; j++) out[j] = x[j] / d;
    } else if (out != x) {
        memmove(out, x, sizeof(float) * (size_t)n);
    }
}

int sd_sched_needs_noise(const sd_sched *s, int i)
{
    if (i < 0 || i >= s->n_calls) return 0;
    switch (s->sampler) {
    case SD_SAMPLER_DDPM: return s->timesteps[i] > 0.0f;
    case SD_SAMPLER_DDIM: return s->eta > 0.0f;            /* DDIMScheduler.step: if eta > 0 */
    case SD_SAMPLER_LCM: return s->t_start + i != s->steps - 1; /* not after the last step */
    case SD_SAMPLER_EULER:
    case SD_SAMPLER_EULER_A:
    case SD_SAMPLER_DPM2_A:        /* KDPM2AncestralDiscreteScheduler draws on every call */
    case SD_SAMPLER_DPMPP_2M_SDE: return 1;
    default: return 0;
    }
}

/* ------------------------------------------------------------------ steps */

/* DDIMScheduler.step (0.25.1): std = η·sqrt(variance), variance = (1 − ᾱ')/(1 − ᾱ)·(1 − ᾱ/ᾱ'); with
 * η > 0 the step's draw is added times std (noise non-NULL then). η = 0 gives std = 0 exactly. */
static void step_ddim(const sd_sched *s, int i, float *x, const float *g, const float *noise, int64_t n)
{
    int t = (int)s->timesteps[i];
    int prev = t - s->num_train / s->steps;
    float a = s->alphas_cumprod[t];
    float ap = prev >= 0 ? s->alphas_cumprod[prev] : s->alphas_cumprod[0]; /* set_alpha_to_one = false */
    float b = 1.0f - a;
    float sa = sqrtf(a), sb = sqrtf(b), sap = sqrtf(ap);
    float var = ((1.0f - ap) / b) * (1.0f - a / ap);
    float std = s->eta * sqrtf(var);
    float dir = sqrtf(1.0f - ap - std * std); /* (1 − ᾱ' − std²)^0.5 */
    const int add = s->eta > 0.0f && noise;
    if (s->prediction == SD_PRED_V) {
        for (int64_t j = 0; j < n; j++) {
            float x0 = sa * x[j] - sb * g[j];
            float eps = sa * g[j] + sb * x[j];
            float v = sap * x0 + dir * eps;
            x[j] = add ? v + std * noise[j] : v;
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            float x0 = (x[j] - sb * g[j]) / sa;
            float v = sap * x0 + dir * g[j];
            x[j] = add ? v + std * noise[j] : v;
        }
    }
}

/* DDPMScheduler.step (0.25.1), variance_type fixed_small, no clipping. */
static int step_ddpm(const sd_sched *s, int i, float *x, const float *g, const float *noise, int64_t n, sd_err *err)
{
    int t = (int)s->timesteps[i];
    int prev = t - s->num_train / s->steps;
    float a = s->alphas_cumprod[t];
    float ap = prev >= 0 ? s->alphas_cumprod[prev] : 1.0f;
    float b = 1.0f - a, bp = 1.0f - ap;
    float cur_a = a / ap;
    float cur_b = 1.0f - cur_a;
    float sa = sqrtf(a), sb = sqrtf(b);
    float c_x0 = (sqrtf(ap) * cur_b) / b;
    float c_x = (sqrtf(cur_a) * bp) / b;
    float std = 0.0f;
    if (t > 0) {
        if (!noise) return sd_errf(err, "ddpm step %d needs a noise draw", i);
        /* _get_variance: (1 − ᾱ')/(1 − ᾱ) · (1 − ᾱ/ᾱ'), clamped at 1e-20. */
        float var = (1.0f - ap) / (1.0f - a) * (1.0f - a / ap);
        if (var < 1e-20f) var = 1e-20f;
        std = sqrtf(var);
    }
    for (int64_t j = 0; j < n; j++) {
        float x0 = s->prediction == SD_PRED_V ? sa * x[j] - sb * g[j] : (x[j] - sb * g[j]) / sa;
        float v = c_x0 * x0 + c_x * x[j];
        if (t > 0) v = v + std * noise[j];
        x[j] = v;
    }
    return 0;
}

/* σ-space x0 of the Euler classes (0.25.1): eps x − σ·g; v g·(−σ/(σ²+1)^0.5) + x/(σ²+1). */
static inline float euler_x0(const sd_sched *s, float sigma, float c_out, float c_in2, float xj, float gj)
{
    if (s->prediction == SD_PRED_V) return gj * c_out + xj / c_in2;
    return xj - sigma * gj;
}

static void step_euler(const sd_sched *s, int i, float *x, const float *g, int64_t n)
{
    float sigma = s->sigmas[i];
    float sigma_hat = sigma * (0.0f + 1.0f); /* s_churn = 0 → γ = 0 */
    float c_in2 = sigma * sigma + 1.0f;
    float c_out = -sigma / sqrtf(c_in2);
    float dt = s->sigmas[i + 1] - sigma_hat;
    for (int64_t j = 0; j < n; j++) {
        float x0 = s->prediction == SD_PRED_V ? euler_x0(s, sigma, c_out, c_in2, x[j], g[j]) : x[j] - sigma_hat * g[j];
        float d = (x[j] - x0) / sigma_hat;
        x[j] = x[j] + d * dt;
    }
}

static int step_euler_a(const sd_sched *s, int i, float *x, const float *g, const float *noise, int64_t n,
                        sd_err *err)
{
    if (!noise) return sd_errf(err, "euler_a step %d needs a noise draw", i);
    float sigma = s->sigmas[i];
    float sf = sigma, st = s->sigmas[i + 1];
    float up = sqrtf(st * st * (sf * sf - st * st) / (sf * sf));
    float down = sqrtf(st * st - up * up);
    float c_in2 = sigma * sigma + 1.0f;
    float c_out = -sigma / sqrtf(c_in2);
    float dt = down - sigma;
    for (int64_t j = 0; j < n; j++) {
        float x0 = euler_x0(s, sigma, c_out, c_in2, x[j], g[j]);
        float d = (x[j] - x0) / sigma;
        float v = x[j] + d * dt;
        x[j] = v + noise[j] * up;
    }
    return 0;
}

/* DPMSolverMultistepScheduler.step (0.27.0), dpmsolver++ / order 2 / midpoint. */
static int step_dpmpp_2m(sd_sched *s, int i, float *x, const float *g, int64_t n, sd_err *err)
{
    int k = s->sigma_start + i; /* step_index in the full schedule */
    float sig_s0 = s->sigmas[i], sig_t = s->sigmas[i + 1];
    float alpha_s0, sigma_s0, alpha_t, sigma_t;
    vp_alpha_sigma(sig_s0, &alpha_s0, &sigma_s0);
    vp_alpha_sigma(sig_t, &alpha_t, &sigma_t);

    if (s->have_prev && s->prev_n != n) return sd_errf(err, "dpmpp_2m: latent size changed between steps");
    if (!s->prev_x0) {
        s->prev_x0 = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
        if (!s->prev_x0) return sd_errcf(err, SD_ERR_NOMEM, "dpmpp_2m: out of memory for the solver history");
        s->prev_n = n;
    } else if (s->prev_n != n) {
        float *p = realloc(s->prev_x0, sizeof(float) * (size_t)(n > 0 ? n : 1));
        if (!p) return sd_errcf(err, SD_ERR_NOMEM, "dpmpp_2m: out of memory for the solver history");
        s->prev_x0 = p;
        s->prev_n = n;
    }

    /* lower_order_final: the last step is first order (final_sigmas_type "zero"); a first
     * step (no history) is first order too. */
    int last = k == s->steps - 1;
    int second = s->have_prev && !last;

    float lambda_t = log_f32(alpha_t) - log_f32(sigma_t);
    float lambda_s0 = log_f32(alpha_s0) - log_f32(sigma_s0);
    float h = lambda_t - lambda_s0;
    float c = alpha_t * (sd_expf(-h) - 1.0f);
    float ratio = sigma_t / sigma_s0;
    if (!second) {
        for (int64_t j = 0; j < n; j++) {
            float x0 = s->prediction == SD_PRED_V ? alpha_s0 * x[j] - sigma_s0 * g[j] : (x[j] - sigma_s0 * g[j]) / alpha_s0;
            s->prev_x0[j] = x0;
            x[j] = ratio * x[j] - c * x0;
        }
    } else {
        float sig_s1 = s->sigmas[i - 1]; /* have_prev implies i ≥ 1 */
        float alpha_s1, sigma_s1;
        vp_alpha_sigma(sig_s1, &alpha_s1, &sigma_s1);
        float lambda_s1 = log_f32(alpha_s1) - log_f32(sigma_s1);
        float h0 = lambda_s0 - lambda_s1;
        float r0 = h0 / h;
        float inv_r0 = 1.0f / r0;
        float c_half = 0.5f * c;
        for (int64_t j = 0; j < n; j++) {
            float x0 = s->prediction == SD_PRED_V ? alpha_s0 * x[j] - sigma_s0 * g[j] : (x[j] - sigma_s0 * g[j]) / alpha_s0;
            float d1 = inv_r0 * (x0 - s->prev_x0[j]);
            s->prev_x0[j] = x0;
            x[j] = ratio * x[j] - c * x0 - c_half * d1;
        }
    }
    s->have_prev = 1;
    return 0;
}

/* The history buffer of the newer samplers: k slices of n floats (kept across calls). */
static int ensure_work(sd_sched *s, int64_t n, int k, sd_err *err)
{
    if (s->work && s->work_n == n && s->work_k >= k) return 0;
    if (s->work && s->last_step >= 0 && s->work_n != n)
        return sd_errf(err, "%s: latent size changed between steps", sd_sampler_name(s->sampler));
    float *w = realloc(s->work, sizeof(float) * (size_t)(n > 0 ? n : 1) * (size_t)k);
    if (!w) return sd_errcf(err, SD_ERR_NOMEM, "%s: out of memory for the solver history", sd_sampler_name(s->sampler));
    s->work = w;
    s->work_n = n;
    s->work_k = k;
    return 0;
}

/* LCMScheduler.step (0.25.1): x0 from g at ᾱ_t; boundary-condition scalings of the consistency
 * model (get_scalings_for_boundary_condition_discrete: σ_data = 0.5, c = t·timestep_scaling with
 * timestep_scaling 10, c_skip = σ_data²/(c² + σ_data²), c_out = c/sqrt(c² + σ_data²));
 * denoised = c_out·x0 + c_skip·x; every step but the last re-noises to the next timestep with a
 * fresh draw: √ᾱ'·denoised + √(1 − ᾱ')·z. */
static int step_lcm(const sd_sched *s, int i, float *x, const float *g, const float *noise, int64_t n, sd_err *err)
{
    const int k = s->t_start + i;
    const int last = k == s->steps - 1;
    if (!last && !noise) return sd_errf(err, "lcm step %d needs a noise draw", i);
    int t = (int)s->timesteps[i];
    int tp = last ? t : (int)s->timesteps_all[k + 1];
    float a = s->alphas_cumprod[t], ap = tp >= 0 ? s->alphas_cumprod[tp] : s->alphas_cumprod[0];
    float b = 1.0f - a, bp = 1.0f - ap;
    float c = (float)t * 10.0f;
    float c2 = c * c;
    float c_skip = 0.25f / (c2 + 0.25f);
    float c_out = c / sqrtf(c2 + 0.25f);
    float sa = sqrtf(a), sb = sqrtf(b), sap = sqrtf(ap), sbp = sqrtf(bp);
    for (int64_t j = 0; j < n; j++) {
        float x0 = s->prediction == SD_PRED_V ? sa * x[j] - sb * g[j] : (x[j] - sb * g[j]) / sa;
        float d = c_out * x0 + c_skip * x[j];
        x[j] = last ? d : sap * d + sbp * noise[j];
    }
    return 0;
}

/* HeunDiscreteScheduler.step (0.25.1). Call k of the interleaved lists: even k is the first-order
 * (Euler) half σ → σ' (the slope d, x and σ' − σ are kept), odd k the correction at σ' that
 * averages the two slopes from the kept x. The last call (to σ = 0) is a plain Euler step. */
static int step_heun(sd_sched *s, int i, float *x, const float *g, int64_t n, sd_err *err)
{
    const int k = s->sigma_start + i;
    if (ensure_work(s, n, 2, err)) return -1;
    float *dsave = s->work, *xsave = s->work + n;
    if (!(k & 1)) {
        float sigma = s->sigmas_all[k], next = s->sigmas_all[k + 1];
        float c_in2 = sigma * sigma + 1.0f, c_out = -sigma / sqrtf(c_in2);
        float dt = next - sigma;
        for (int64_t j = 0; j < n; j++) {
            float x0 = euler_x0(s, sigma, c_out, c_in2, x[j], g[j]);
            float d = (x[j] - x0) / sigma;
            dsave[j] = d;
            xsave[j] = x[j];
            x[j] = x[j] + d * dt;
        }
        s->saved_dt = dt;
    } else {
        if (i == 0) return sd_errf(err, "heun: a run cannot start with a second-order call");
        float next = s->sigmas_all[k];
        float c_in2 = next * next + 1.0f, c_out = -next / sqrtf(c_in2);
        float dt = s->saved_dt;
        for (int64_t j = 0; j < n; j++) {
            float x0 = euler_x0(s, next, c_out, c_in2, x[j], g[j]);
            float d2 = (x[j] - x0) / next;
            float d = (dsave[j] + d2) / 2.0f;
            x[j] = xsave[j] + d * dt;
        }
    }
    return 0;
}

/* KDPM2DiscreteScheduler.step / KDPM2AncestralDiscreteScheduler.step (0.25.1): the first-order call
 * (even k) goes from σ to the midpoint σ̂ with the slope at σ and keeps x; the second-order call
 * (odd k, the model evaluated at σ̂) steps the kept x from σ to σ' (dpm2) or to σ_down and adds
 * σ_up·z (dpm2_a; z is drawn on every call, used only here). */
static int step_dpm2(sd_sched *s, int i, float *x, const float *g, const float *noise, int64_t n, sd_err *err)
{
    const int anc = s->sampler == SD_SAMPLER_DPM2_A;
    const int k = s->sigma_start + i;
    if (anc && !noise) return sd_errf(err, "dpm2_a call %d needs a noise draw", i);
    if (ensure_work(s, n, 1, err)) return -1;
    float *xsave = s->work;
    if (!(k & 1)) {
        float sigma = s->sigmas_all[k];
        float mid = anc ? s->interp_all[k] : s->interp_all[k + 1];
        float c_in2 = sigma * sigma + 1.0f, c_out = -sigma / sqrtf(c_in2);
        float dt = mid - sigma;
        for (int64_t j = 0; j < n; j++) {
            float x0 = euler_x0(s, sigma, c_out, c_in2, x[j], g[j]);
            float d = (x[j] - x0) / sigma;
            xsave[j] = x[j];
            x[j] = x[j] + d * dt;
        }
    } else {
        if (i == 0) return sd_errf(err, "%s: a run cannot start with a second-order call", sd_sampler_name(s->sampler));
        float sigma = s->sigmas_all[k - 1];
        float mid = anc ? s->interp_all[k - 1] : s->interp_all[k];
        float target = anc ? s->down_all[k - 1] : s->sigmas_all[k];
        float up = anc ? s->up_all[k - 1] : 0.0f;
        float c_in2 = mid * mid + 1.0f, c_out = -mid / sqrtf(c_in2);
        float dt = target - sigma;
        for (int64_t j = 0; j < n; j++) {
            float x0 = euler_x0(s, mid, c_out, c_in2, x[j], g[j]);
            float d = (x[j] - x0) / mid;
            float v = xsave[j] + d * dt;
            x[j] = anc ? v + noise[j] * up : v;
        }
    }
    return 0;
}

/* ∫_{σ_i}^{σ_{i+1}} Π_{m≠j, m<o} (τ − σ_{i−m})/(σ_{i−j} − σ_{i−m}) dτ, LMSDiscreteScheduler's
 * get_lms_coefficient (scipy quad, exact for this polynomial of degree < 4), here by 4-point
 * Gauss–Legendre, also exact for it, in double. */
static double lms_coeff(const float *sig, int i, int o, int j)
{
    static const double gx[4] = {-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526};
    static const double gw[4] = {0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538};
    double a = sig[i], b = sig[i + 1], half = 0.5 * (b - a), mid = 0.5 * (a + b), sum = 0;
    for (int q = 0; q < 4; q++) {
        double tau = mid + half * gx[q], prod = 1.0;
        for (int m = 0; m < o; m++) {
            if (m == j) continue;
            prod *= (tau - (double)sig[i - m]) / ((double)sig[i - j] - (double)sig[i - m]);
        }
        sum += gw[q] * prod;
    }
    return sum * half;
}

/* LMSDiscreteScheduler.step (0.25.1, order 4): d_i = (x − x0)/σ_i joins the last derivatives;
 * x' = x + Σ_j c_j·d_{i−j} over o = min(i + 1, 4) of them (the coefficients as float32 scalars). */
static int step_lms(sd_sched *s, int i, float *x, const float *g, int64_t n, sd_err *err)
{
    const int k = s->sigma_start + i;
    if (ensure_work(s, n, 4, err)) return -1;
    /* work slice 0 = the newest derivative, 1 the one before, … */
    memmove(s->work + n, s->work, sizeof(float) * (size_t)n * 3);
    if (s->n_hist < 4) s->n_hist++;
    /* The coefficients are those of order min(step_index + 1, 4); zip() with the derivatives kept
     * uses as many terms as there are (fewer after an img2img start). */
    const int o = k + 1 < 4 ? k + 1 : 4;
    const int terms = s->n_hist < o ? s->n_hist : o;
    float sigma = s->sigmas_all[k];
    float c_in2 = sigma * sigma + 1.0f, c_out = -sigma / sqrtf(c_in2);
    float c[4];
    for (int jj = 0; jj < o; jj++) c[jj] = (float)lms_coeff(s->sigmas_all, k, o, jj);
    for (int64_t j = 0; j < n; j++) {
        float x0 = euler_x0(s, sigma, c_out, c_in2, x[j], g[j]);
        s->work[j] = (x[j] - x0) / sigma;
        float acc = c[0] * s->work[j];
        for (int jj = 1; jj < terms; jj++) acc = acc + c[jj] * s->work[(int64_t)jj * n + j];
        x[j] = x[j] + acc;
    }
    return 0;
}

/* λ(σ) = ln α − ln σ_t of the VP parametrisation (α = 1/sqrt(σ² + 1), σ_t = σ·α), torch.log in float32. */
static float vp_lambda(float sigma, float *alpha, float *sigma_t)
{
    vp_alpha_sigma(sigma, alpha, sigma_t);
    return log_f32(*alpha) - log_f32(*sigma_t);
}

/* UniPCMultistepScheduler.step (0.25.1; bh2, solver_order 2, predict_x0, lower_order_final): m_i = x0
 * from the input as given; for i ≥ 1 the UniC corrector first replaces the input with a corrected
 * one from the previous corrected input, m_{i−1} (and m_{i−2} at order 2) and m_i; then the UniP
 * predictor steps from it, order min(2, steps left, steps done + 1). B(h) = expm1(−h) (bh2). torch's
 * expm1 is SLEEF's; the C library's expm1f may differ from it by an ulp (measured on the golden case:
 * 4.5e-8 of max|x| per call), and torch.linalg.solve's 2×2 solve is written out. */
static int step_unipc(sd_sched *s, int i, float *x, const float *g, int64_t n, sd_err *err)
{
    const int k = s->sigma_start + i;
    if (ensure_work(s, n, 4, err)) return -1;
    float *m1 = s->work, *m2 = s->work + n, *xlast = s->work + 2 * n, *mi = s->work + 3 * n;
    float a_k, st_k;
    const float lam_k = vp_lambda(s->sigmas_all[k], &a_k, &st_k);
    for (int64_t j = 0; j < n; j++)
        mi[j] = s->prediction == SD_PRED_V ? a_k * x[j] - st_k * g[j] : (x[j] - st_k * g[j]) / a_k;
    if (i > 0) {
        /* multistep_uni_c_bh_update, order = the previous predictor's */
        const int oc = s->last_order;
        float a_p, st_p;
        const float lam_p = vp_lambda(s->sigmas_all[k - 1], &a_p, &st_p);
        const float h = lam_k - lam_p, hh = -h;
        const float phi1 = expm1f(hh), bh = expm1f(hh);
        float rho0 = 0.0f, rho_last = 0.5f, rk = 1.0f;
        if (oc == 2) {
            float a2, st2;
            const float lam2 = vp_lambda(s->sigmas_all[k - 2], &a2, &st2);
            rk = (lam2 - lam_p) / h;
            float phik = phi1 / hh - 1.0f;
            float b1 = phik * 1.0f / bh;
            phik = phik / hh - 1.0f / 2.0f;
            float b2 = phik * 2.0f / bh;
            /* torch.linalg.solve of [[1, 1], [rk, 1]]·ρ = [b1, b2] */
            rho0 = (b1 - b2) / (1.0f - rk);
            rho_last = b1 - rho0;
        }
        const float ratio = st_k / st_p, c0 = a_k * phi1, cb = a_k * bh;
        for (int64_t j = 0; j < n; j++) {
            float base = ratio * xlast[j] - c0 * m1[j];
            float corr = oc == 2 ? rho0 * ((m2[j] - m1[j]) / rk) : 0.0f;
            x[j] = base - cb * (corr + rho_last * (mi[j] - m1[j]));
        }
    }
    /* history: m_{i−2} ← m_{i−1} ← m_i; the (corrected) input is the next corrector's x */
    memcpy(m2, m1, sizeof(float) * (size_t)n);
    memcpy(m1, mi, sizeof(float) * (size_t)n);
    int order = s->steps - k < 2 ? s->steps - k : 2; /* lower_order_final */
    if (order > s->n_hist + 1) order = s->n_hist + 1;
    s->last_order = order;
    memcpy(xlast, x, sizeof(float) * (size_t)n);
    /* multistep_uni_p_bh_update to σ_{k+1} */
    float a_t, st_t;
    const float lam_t = vp_lambda(s->sigmas_all[k + 1], &a_t, &st_t);
    const float h = lam_t - lam_k, hh = -h;
    const float phi1 = expm1f(hh), bh = expm1f(hh);
    const float ratio = st_t / st_k, c0 = a_t * phi1, cb = a_t * bh;
    float rk = 1.0f;
    if (order == 2) {
        float a_p, st_p;
        const float lam_p = vp_lambda(s->sigmas_all[k - 1], &a_p, &st_p);
        rk = (lam_p - lam_k) / h;
    }
    for (int64_t j = 0; j < n; j++) {
        float v = ratio * x[j] - c0 * m1[j];
        if (order == 2) v = v - cb * (0.5f * ((m2[j] - m1[j]) / rk));
        x[j] = v;
    }
    if (s->n_hist < 2) s->n_hist++;
    return 0;
}

/* DPMSolverMultistepScheduler.step (0.27.0), sde-dpmsolver++ / order 2 / midpoint: the first-order
 * update (first step, last step) is (σ_t'/σ_t·e^−h)·x + α'(1 − e^−2h)·x0 + σ_t'·sqrt(1 − e^−2h)·z,
 * the second order adds ½·α'(1 − e^−2h)·D1; every step draws z. The step to σ = 0 gives x0. */
static int step_dpmpp_2m_sde(sd_sched *s, int i, float *x, const float *g, const float *noise, int64_t n, sd_err *err)
{
    if (!noise) return sd_errf(err, "dpmpp_2m_sde step %d needs a noise draw", i);
    if (s->have_prev && s->prev_n != n) return sd_errf(err, "dpmpp_2m_sde: latent size changed between steps");
    if (!s->prev_x0 || s->prev_n != n) {
        float *p = realloc(s->prev_x0, sizeof(float) * (size_t)(n > 0 ? n : 1));
        if (!p) return sd_errcf(err, SD_ERR_NOMEM, "dpmpp_2m_sde: out of memory for the solver history");
        s->prev_x0 = p;
        s->prev_n = n;
    }
    const int k = s->sigma_start + i;
    const int last = k == s->steps - 1;
    const int second = s->have_prev && !last;
    float a_s, st_s, a_t, st_t;
    const float lam_s = vp_lambda(s->sigmas[i], &a_s, &st_s);
    const float lam_t = vp_lambda(s->sigmas[i + 1], &a_t, &st_t);
    const float h = lam_t - lam_s;
    const float e1 = sd_expf(-h), e2 = sd_expf(-2.0f * h);
    const float cx = st_t / st_s * e1;
    const float c0 = a_t * (1.0f - e2);
    const float cz = st_t * sqrtf(1.0f - e2);
    float inv_r0 = 0.0f, c1 = 0.0f;
    if (second) {
        float a_p, st_p;
        const float lam_p = vp_lambda(s->sigmas[i - 1], &a_p, &st_p);
        const float r0 = (lam_s - lam_p) / h;
        inv_r0 = 1.0f / r0;
        c1 = 0.5f * c0;
    }
    for (int64_t j = 0; j < n; j++) {
        float x0 = s->prediction == SD_PRED_V ? a_s * x[j] - st_s * g[j] : (x[j] - st_s * g[j]) / a_s;
        float v = cx * x[j] + c0 * x0;
        if (second) v = v + c1 * (inv_r0 * (x0 - s->prev_x0[j]));
        s->prev_x0[j] = x0;
        x[j] = v + cz * noise[j];
    }
    s->have_prev = 1;
    return 0;
}

int sd_sched_step(sd_sched *s, int i, float *x, const float *g, const float *noise, int64_t n, sd_err *err)
{
    if (i < 0 || i >= s->n_calls) return sd_errf(err, "scheduler: call %d out of range 0..%d", i, s->n_calls - 1);
    if (i != s->last_step + 1)
        return sd_errf(err, "scheduler: step %d taken after step %d (steps must run in order)", i, s->last_step);
    if (n < 0) return sd_errf(err, "scheduler: negative latent size");
    if (!s->has_sigmas && (s->timesteps[i] < 0.0f || s->timesteps[i] >= (float)s->num_train))
        return sd_errf(err, "scheduler: timestep %g of step %d lies outside the %d-step noise schedule",
                       (double)s->timesteps[i], i, s->num_train);
    int rc = 0;
    switch (s->sampler) {
    case SD_SAMPLER_DDIM:
        if (s->eta > 0.0f && !noise) return sd_errf(err, "ddim step %d with eta needs a noise draw", i);
        step_ddim(s, i, x, g, noise, n);
        break;
    case SD_SAMPLER_DDPM: rc = step_ddpm(s, i, x, g, noise, n, err); break;
    case SD_SAMPLER_EULER: step_euler(s, i, x, g, n); break;
    case SD_SAMPLER_EULER_A: rc = step_euler_a(s, i, x, g, noise, n, err); break;
    case SD_SAMPLER_DPMPP_2M: rc = step_dpmpp_2m(s, i, x, g, n, err); break;
    case SD_SAMPLER_LCM: rc = step_lcm(s, i, x, g, noise, n, err); break;
    case SD_SAMPLER_UNIPC: rc = step_unipc(s, i, x, g, n, err); break;
    case SD_SAMPLER_HEUN: rc = step_heun(s, i, x, g, n, err); break;
    case SD_SAMPLER_LMS: rc = step_lms(s, i, x, g, n, err); break;
    case SD_SAMPLER_DPM2:
    case SD_SAMPLER_DPM2_A: rc = step_dpm2(s, i, x, g, noise, n, err); break;
    case SD_SAMPLER_DPMPP_2M_SDE: rc = step_dpmpp_2m_sde(s, i, x, g, noise, n, err); break;
    default: return sd_errf(err, "scheduler: unknown sampler");
    }
    if (rc == 0) s->last_step = i;
    return rc;
}
