/* sched.c — noise schedules and sampler steps (sdgen/sched.h), as diffusers computes them.
 *
 * Reference classes (docs/SEMANTICS.md §5, §6, §9): diffusers 0.25.1 DDIMScheduler,
 * DDPMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler; diffusers 0.27.0
 * DPMSolverMultistepScheduler (dpmsolver++, solver_order 2, midpoint, lower_order_final,
 * final_sigmas_type "zero"). Tensor arithmetic there is float32, one rounding per torch op, and
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

static const char *const k_sampler_names[SD_SAMPLER_COUNT] = {"ddim", "ddpm", "euler", "euler_a", "dpmpp_2m"};
static const char *const k_sampler_a1111[SD_SAMPLER_COUNT] = {"DDIM", "DDPM", "Euler", "Euler a", "DPM++ 2M"};

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
    char n[64];
    normalize_name(name, n, sizeof n);
    size_t len = strlen(n);
    int karras = 0;
    if (len > 7 && !strcmp(n + len - 7, "_karras")) { /* A1111's old combined names */
        karras = 1;
        n[len - 7] = 0;
    }
    sd_sampler s;
    if (!strcmp(n, "ddim")) s = SD_SAMPLER_DDIM;
    else if (!strcmp(n, "ddpm")) s = SD_SAMPLER_DDPM;
    else if (!strcmp(n, "euler")) s = SD_SAMPLER_EULER;
    else if (!strcmp(n, "euler_a") || !strcmp(n, "euler_ancestral")) s = SD_SAMPLER_EULER_A;
    else if (!strcmp(n, "dpmpp_2m") || !strcmp(n, "dpm++_2m") || !strcmp(n, "dpmpp2m") || !strcmp(n, "dpm++2m"))
        s = SD_SAMPLER_DPMPP_2M;
    else return -1;
    if (karras && !schedule) return -1;
    *out = s;
    if (karras) *schedule = SD_SCHEDULE_KARRAS;
    return 0;
}

const char *sd_sampler_name(sd_sampler s)
{
    return (unsigned)s < SD_SAMPLER_COUNT ? k_sampler_names[s] : "unknown";
}

const char *sd_sampler_a1111_name(sd_sampler s)
{
    return (unsigned)s < SD_SAMPLER_COUNT ? k_sampler_a1111[s] : "unknown";
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
    if (schedule == SD_SCHEDULE_KARRAS && (sampler == SD_SAMPLER_DDIM || sampler == SD_SAMPLER_DDPM))
        return sd_errf(err, "--schedule karras is not available for the %s sampler (diffusers' %s has no "
                       "Karras sigmas); use euler, euler_a or dpmpp_2m, or --schedule default",
                       sd_sampler_name(sampler), sampler == SD_SAMPLER_DDIM ? "DDIMScheduler" : "DDPMScheduler");
    s->sampler = sampler;
    s->schedule = schedule;
    s->prediction = prediction;

    int offset;
    char spacing_cfg[32];
    if (build_tables(s, cfg, &offset, spacing_cfg, sizeof spacing_cfg, err)) return -1;
    s->steps_offset = offset;
    const int T = s->num_train;
    int max_steps = T < SD_SCHED_MAX_STEPS ? T : SD_SCHED_MAX_STEPS;
    if (steps < 1 || steps > max_steps)
        return sd_errf(err, "steps %d out of range 1..%d", steps, max_steps);
    s->steps = steps;

    if (spacing == SD_SPACING_DEFAULT && spacing_cfg[0]) {
        if (sd_spacing_parse(spacing_cfg, &spacing))
            return sd_errf(err, "scheduler config: unknown timestep_spacing \"%s\"", spacing_cfg);
    }
    if (spacing == SD_SPACING_DEFAULT)
        spacing = (sampler == SD_SAMPLER_DDIM || sampler == SD_SAMPLER_DDPM) ? SD_SPACING_LEADING : SD_SPACING_LINSPACE;
    s->spacing = spacing;

    s->has_sigmas = sampler == SD_SAMPLER_EULER || sampler == SD_SAMPLER_EULER_A || sampler == SD_SAMPLER_DPMPP_2M;
    s->int_timesteps = sampler != SD_SAMPLER_EULER && sampler != SD_SAMPLER_EULER_A;

    double t[SD_SCHED_MAX_STEPS + 1];
    double tmp[SD_SCHED_MAX_STEPS + 2];
    const int n = steps;
    if (sampler == SD_SAMPLER_DPMPP_2M) {
        /* 0.27.0 set_timesteps; last_timestep = T (lambda_min_clipped = −inf). */
        if (spacing == SD_SPACING_LINSPACE) {
            for (int i = 0; i < n; i++) t[i] = round_half_even(np_linspace0((double)(T - 1), n + 1, n - i));
        } else if (spacing == SD_SPACING_LEADING) {
            int ratio = T / (n + 1);
            if (ratio < 1) return sd_errf(err, "dpmpp_2m with leading spacing needs steps < %d", T);
            for (int i = 0; i < n; i++) t[i] = (double)((n - i) * ratio + offset);
        } else {
            int len = np_arange_down((double)T, (double)T / n, SD_SCHED_MAX_STEPS + 1, tmp);
            if (len != n)
                return sd_errf(err, "trailing spacing with %d steps gives %d timesteps in diffusers; choose another step count", n, len);
            for (int i = 0; i < n; i++) t[i] = round_half_even(tmp[i]) - 1.0;
        }
    } else if (sampler == SD_SAMPLER_DDIM || sampler == SD_SAMPLER_DDPM || sampler == SD_SAMPLER_EULER ||
               sampler == SD_SAMPLER_EULER_A) {
        /* 0.25.1 DDIM/DDPM (int64) and Euler/Euler a (float32) set_timesteps. */
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
    if (s->has_sigmas) {
        float log_sigmas[SD_SCHED_MAX_TRAIN];
        for (int k = 0; k < T; k++) log_sigmas[k] = np_logf(s->sigma_table[k]);
        if (schedule == SD_SCHEDULE_KARRAS) {
            double smin, smax;
            if (sampler == SD_SAMPLER_DPMPP_2M) {
                /* 0.27.0: Karras over the whole flipped σ table. */
                smin = s->sigma_table[0];
                smax = s->sigma_table[T - 1];
            } else {
                /* 0.25.1 Euler classes: Karras between the first and last interpolated σ of
                 * the spacing's timesteps (σ_999 and σ_0 for linspace). */
                smax = np_interp_table(s->sigma_table, T, t[0]);
                smin = np_interp_table(s->sigma_table, T, t[n - 1]);
            }
            sd_sched_karras_sigmas(smin, smax, n, sig);
            for (int i = 0; i < n; i++) {
                double tt = sigma_to_t(log_sigmas, T, sig[i]);
                /* dpmpp_2m rounds to integers; the Euler classes keep the fractional t (float32). */
                t[i] = sampler == SD_SAMPLER_DPMPP_2M ? round_half_even(tt) : (double)(float)tt;
            }
        } else {
            for (int i = 0; i < n; i++) sig[i] = np_interp_table(s->sigma_table, T, t[i]);
        }
        sig[n] = 0.0;
        for (int i = 0; i <= n; i++) s->sigmas_all[i] = (float)sig[i];
    }
    for (int i = 0; i < n; i++) s->timesteps_all[i] = (float)t[i];

    /* init_noise_sigma: 1 for ddim/ddpm/dpmpp_2m; the Euler classes take max σ (linspace,
     * trailing) or sqrt(max σ² + 1) (leading), float32. */
    s->init_noise_sigma = 1.0f;
    if (sampler == SD_SAMPLER_EULER || sampler == SD_SAMPLER_EULER_A) {
        float mx = 0.0f;
        for (int i = 0; i <= n; i++)
            if (s->sigmas_all[i] > mx) mx = s->sigmas_all[i];
        s->init_noise_sigma = spacing == SD_SPACING_LEADING ? sqrtf(mx * mx + 1.0f) : mx;
    }

    /* Run the whole schedule until sd_sched_set_strength says otherwise. */
    s->t_start = 0;
    s->sigma_start = 0;
    s->n_steps = n;
    memcpy(s->timesteps, s->timesteps_all, sizeof(float) * (size_t)n);
    if (s->has_sigmas) memcpy(s->sigmas, s->sigmas_all, sizeof(float) * (size_t)(n + 1));
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
        memcpy(s->sigmas, s->sigmas_all + s->sigma_start, sizeof(float) * (size_t)(s->n_steps + 1));
    }
    s->have_prev = 0;
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
    if (s->sampler == SD_SAMPLER_DDIM || s->sampler == SD_SAMPLER_DDPM) {
        int t = (int)s->timesteps[0];
        float a = s->alphas_cumprod[t];
        float sa = sqrtf(a), sb = sqrtf(1.0f - a);
        for (int64_t j = 0; j < n; j++) out[j] = sa * x0[j] + sb * noise[j];
    } else if (s->sampler == SD_SAMPLER_DPMPP_2M) {
        float alpha, st;
        vp_alpha_sigma(s->sigmas[0], &alpha, &st);
        for (int64_t j = 0; j < n; j++) out[j] = alpha * x0[j] + st * noise[j];
    } else {
        float sigma = s->sigmas[0];
        for (int64_t j = 0; j < n; j++) out[j] = x0[j] + noise[j] * sigma;
    }
}

float sd_sched_input_divisor(const sd_sched *s, int i)
{
    if ((s->sampler == SD_SAMPLER_EULER || s->sampler == SD_SAMPLER_EULER_A) && i >= 0 && i < s->n_steps) {
        float sigma = s->sigmas[i];
        return sqrtf(sigma * sigma + 1.0f);
    }
    return 1.0f;
}

void sd_sched_scale_input(const sd_sched *s, int i, const float *x, float *out, int64_t n)
{
    if (s->sampler == SD_SAMPLER_EULER || s->sampler == SD_SAMPLER_EULER_A) {
        float d = sd_sched_input_divisor(s, i);
        for (int64_t j = 0; j < n; j++) out[j] = x[j] / d;
    } else if (out != x) {
        memmove(out, x, sizeof(float) * (size_t)n);
    }
}

int sd_sched_needs_noise(const sd_sched *s, int i)
{
    if (i < 0 || i >= s->n_steps) return 0;
    switch (s->sampler) {
    case SD_SAMPLER_DDPM: return s->timesteps[i] > 0.0f;
    case SD_SAMPLER_EULER:
    case SD_SAMPLER_EULER_A: return 1;
    default: return 0;
    }
}

/* ------------------------------------------------------------------ steps */

/* DDIMScheduler.step, eta = 0 (0.25.1). */
static void step_ddim(const sd_sched *s, int i, float *x, const float *g, int64_t n)
{
    int t = (int)s->timesteps[i];
    int prev = t - s->num_train / s->steps;
    float a = s->alphas_cumprod[t];
    float ap = prev >= 0 ? s->alphas_cumprod[prev] : s->alphas_cumprod[0]; /* set_alpha_to_one = false */
    float b = 1.0f - a;
    float sa = sqrtf(a), sb = sqrtf(b), sap = sqrtf(ap);
    float dir = sqrtf(1.0f - ap - 0.0f); /* (1 − ᾱ' − std²)^0.5 with std = 0 */
    if (s->prediction == SD_PRED_V) {
        for (int64_t j = 0; j < n; j++) {
            float x0 = sa * x[j] - sb * g[j];
            float eps = sa * g[j] + sb * x[j];
            x[j] = sap * x0 + dir * eps;
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            float x0 = (x[j] - sb * g[j]) / sa;
            x[j] = sap * x0 + dir * g[j];
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

int sd_sched_step(sd_sched *s, int i, float *x, const float *g, const float *noise, int64_t n, sd_err *err)
{
    if (i < 0 || i >= s->n_steps) return sd_errf(err, "scheduler: step %d out of range 0..%d", i, s->n_steps - 1);
    if (i != s->last_step + 1)
        return sd_errf(err, "scheduler: step %d taken after step %d (steps must run in order)", i, s->last_step);
    if (n < 0) return sd_errf(err, "scheduler: negative latent size");
    if (!s->has_sigmas && (s->timesteps[i] < 0.0f || s->timesteps[i] >= (float)s->num_train))
        return sd_errf(err, "scheduler: timestep %g of step %d lies outside the %d-step noise schedule",
                       (double)s->timesteps[i], i, s->num_train);
    int rc = 0;
    switch (s->sampler) {
    case SD_SAMPLER_DDIM: step_ddim(s, i, x, g, n); break;
    case SD_SAMPLER_DDPM: rc = step_ddpm(s, i, x, g, noise, n, err); break;
    case SD_SAMPLER_EULER: step_euler(s, i, x, g, n); break;
    case SD_SAMPLER_EULER_A: rc = step_euler_a(s, i, x, g, noise, n, err); break;
    case SD_SAMPLER_DPMPP_2M: rc = step_dpmpp_2m(s, i, x, g, n, err); break;
    default: return sd_errf(err, "scheduler: unknown sampler");
    }
    if (rc == 0) s->last_step = i;
    return rc;
}
