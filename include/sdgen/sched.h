/* sdgen/sched.h — noise schedules and samplers, step for step as the reference computes them.
 *
 * docs/SEMANTICS.md §5, §6 and §9 are the specification: diffusers 0.25.1's DDIMScheduler,
 * DDPMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, LCMScheduler,
 * UniPCMultistepScheduler (bh2), HeunDiscreteScheduler, LMSDiscreteScheduler, KDPM2DiscreteScheduler,
 * KDPM2AncestralDiscreteScheduler and 0.27.0's DPMSolverMultistepScheduler (dpmsolver++ and
 * sde-dpmsolver++, order 2, midpoint, final_sigmas_type "zero"), with
 * every operation in float32 as those classes do it (ᾱ table, σ table, timesteps, σ lists,
 * step arithmetic), so latents match the reference to float32 rounding.
 *
 * The generator loops like the diffusers pipeline:
 *
 *     sd_sched s; sd_err err;
 *     if (sd_sched_init(&s, SD_SAMPLER_EULER_A, SD_SCHEDULE_DEFAULT, SD_SPACING_DEFAULT,
 *                       SD_PRED_EPS, steps, NULL, &err)) ...
 *     // txt2img: x = noise · init_noise_sigma
 *     sd_rng_randn(&rng, noise, n); sd_sched_init_latent(&s, noise, x, n);
 *     // img2img instead: sd_sched_set_strength(&s, strength, &err); draw noise;
 *     //                  sd_sched_add_noise(&s, encoded, noise, x, n);
 *     for (int i = 0; i < s.n_calls; i++) {                 // model calls (2n − 1 for heun, dpm2)
 *         sd_sched_scale_input(&s, i, x, x_in, n);        // U-Net input
 *         ... U-Net on [x_in; x_in] at timestep s.timesteps[i], guidance → g ...
 *         if (sd_sched_needs_noise(&s, i)) sd_rng_randn(&rng, z, n);
 *         if (sd_sched_step(&s, i, x, g, z, n, &err)) ...;   // x updated in place
 *     }
 *     sd_sched_free(&s);
 */
#ifndef SDGEN_SCHED_H
#define SDGEN_SCHED_H

#include <stdint.h>

#include "sdgen/common.h"
#include "sdgen/model.h" /* sd_prediction, sd_sched_config */

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sd_sampler {
    SD_SAMPLER_DDIM = 0,
    SD_SAMPLER_DDPM,
    SD_SAMPLER_EULER,
    SD_SAMPLER_EULER_A,
    SD_SAMPLER_DPMPP_2M,
    SD_SAMPLER_LCM,          /* LCMScheduler */
    SD_SAMPLER_UNIPC,        /* UniPCMultistepScheduler, bh2, order 2 */
    SD_SAMPLER_HEUN,         /* HeunDiscreteScheduler: two model calls per step */
    SD_SAMPLER_LMS,          /* LMSDiscreteScheduler, order 4 */
    SD_SAMPLER_DPM2,         /* KDPM2DiscreteScheduler: two model calls per step */
    SD_SAMPLER_DPM2_A,       /* KDPM2AncestralDiscreteScheduler: two model calls per step */
    SD_SAMPLER_DPMPP_2M_SDE, /* DPMSolverMultistepScheduler, sde-dpmsolver++ */
    SD_SAMPLER_COUNT
} sd_sampler;

typedef enum sd_schedule { SD_SCHEDULE_DEFAULT = 0, SD_SCHEDULE_KARRAS } sd_schedule;

/* Timestep spacing (diffusers `timestep_spacing`). DEFAULT = the sampler class's default:
 * leading for ddim/ddpm, linspace for euler/euler_a/dpmpp_2m (docs/SEMANTICS.md §5.2). */
typedef enum sd_spacing {
    SD_SPACING_DEFAULT = 0,
    SD_SPACING_LEADING,
    SD_SPACING_LINSPACE,
    SD_SPACING_TRAILING
} sd_spacing;

#define SD_SCHED_MAX_TRAIN 4096 /* num_train_timesteps bound */
#define SD_SCHED_MAX_STEPS 1000 /* inference steps bound (also ≤ num_train_timesteps) */
#define SD_SCHED_MAX_CALLS (2 * SD_SCHED_MAX_STEPS) /* model calls: 2n − 1 for the order-2 samplers */
#define SD_SCHED_MAX_SIGMAS (2 * SD_SCHED_MAX_STEPS + 2) /* dpm2's per-call σ list has 2n + 2 entries */
#define SD_LCM_ORIGINAL_STEPS 50 /* LCMScheduler original_inference_steps (the distillation grid) */

typedef struct sd_sched {
    sd_sampler sampler;
    sd_schedule schedule;
    sd_spacing spacing;        /* resolved (never DEFAULT after init) */
    sd_prediction prediction;  /* SD_PRED_EPS or SD_PRED_V */
    int num_train;             /* 1000 */
    int steps;                 /* requested steps: the full schedule's length */
    int steps_offset;          /* as used (leading spacing) */

    float alphas_cumprod[SD_SCHED_MAX_TRAIN]; /* ᾱ_t, float32 as torch computes it */
    float sigma_table[SD_SCHED_MAX_TRAIN];    /* σ_t = sqrt((1 − ᾱ_t)/ᾱ_t), float32 */

    /* The full schedule for `steps` (img2img's timesteps_all), one entry per model call: heun, dpm2
     * and dpm2_a call the model twice per step (2·steps − 1 calls, docs/SEMANTICS.md); σ lists are
     * the diffusers class's own `sigmas` (n_sigmas_all entries; steps + 1 for the first-order ones). */
    float timesteps_all[SD_SCHED_MAX_CALLS];
    float sigmas_all[SD_SCHED_MAX_SIGMAS];
    int n_calls_all, n_sigmas_all;
    int has_sigmas;                           /* σ samplers: all but ddim, ddpm, lcm */
    int int_timesteps;                        /* ddim, ddpm, dpmpp_2m(_sde), unipc, lcm: integer timesteps */
    int order;                                /* model calls per step: 2 for heun, dpm2, dpm2_a, else 1 */
    /* dpm2 / dpm2_a, per call like sigmas_all: the interpolated σ̂ (both), σ_up and σ_down (dpm2_a). */
    float interp_all[SD_SCHED_MAX_SIGMAS], up_all[SD_SCHED_MAX_SIGMAS], down_all[SD_SCHED_MAX_SIGMAS];
    float eta;                                /* ddim's η (sd_sched_set_eta); 0 = deterministic */

    /* The steps run: the whole schedule, or its tail after sd_sched_set_strength(). */
    int t_start;                         /* index of the first step run in the full schedule */
    int n_steps;                         /* number of steps run */
    int n_calls;                         /* model calls run (= n_steps for order 1) */
    int call_start;                      /* index into timesteps_all of call 0 of the run */
    float timesteps[SD_SCHED_MAX_CALLS]; /* U-Net timestep of each call run */
    float sigmas[SD_SCHED_MAX_SIGMAS];   /* σ list from the run's first call on (σ samplers) */
    int n_sigmas;                        /* entries of sigmas[] */
    int sigma_start;                     /* index into sigmas_all of call 0 of the run */
    float init_noise_sigma;              /* txt2img latent = noise · init_noise_sigma */

    /* dpmpp_2m multistep history: x0 of the previous step. */
    float *prev_x0;
    int64_t prev_n;
    int have_prev;     /* lower_order_nums ≥ 1 */
    int last_step;     /* index of the last call taken, for order checks (−1: none) */
    /* History of the newer samplers (heun, dpm2, dpm2_a, lms, unipc), work_k slices of work_n values. */
    float *work;
    int64_t work_n;
    int work_k;
    int n_hist;        /* lms: derivatives kept; unipc: model outputs kept */
    int last_order;    /* unipc: order of the previous predictor (the corrector's order) */
    float saved_dt;    /* heun: σ' − σ of the first-order half */
} sd_sched;

/* Build the schedule. cfg may be NULL (SD 1.x/2.x defaults: 1000 steps, scaled_linear
 * 0.00085…0.012, steps_offset 1); a non-empty cfg->timestep_spacing is used when spacing is
 * SD_SPACING_DEFAULT. Errors (exit code 2): steps out of 1..min(1000, num_train_timesteps),
 * karras with ddim/ddpm/lcm, trailing spacing where diffusers' arange yields steps + 1 timesteps,
 * unknown beta schedule, prediction not eps/v. */
int sd_sched_init(sd_sched *s, sd_sampler sampler, sd_schedule schedule, sd_spacing spacing,
                  sd_prediction prediction, int steps, const sd_sched_config *cfg, sd_err *err);
void sd_sched_free(sd_sched *s);

/* DDIM's η (DDIMScheduler.step eta): 0 deterministic, > 0 adds σ_t-scaled noise each step. Only
 * the ddim sampler has it; eta must lie in [0, 1]. Call after sd_sched_init. */
int sd_sched_set_eta(sd_sched *s, double eta, sd_err *err);
/* The same check without a schedule (settings judged before the model loads). */
int sd_sampler_check_eta(sd_sampler sampler, double eta, sd_err *err);

/* Whether every timestep the run will use (after sd_sched_set_strength, if any) lies inside the
 * noise schedule, for ddim/ddpm, whose diffusers classes index ᾱ_t directly and fail with an
 * IndexError past its end (leading spacing with steps_offset: 1000 steps, or a large steps_offset
 * from a scheduler config). The σ samplers clamp such timesteps as np.interp does: always 0.
 * strength is only quoted in the message (1 = txt2img). 0, or -1 with err (exit code 2). */
int sd_sched_check_run(const sd_sched *s, double strength, sd_err *err);

/* img2img (docs/SEMANTICS.md §9.2): keep the last int(steps·strength) steps (double product, truncated;
 * t_start = steps − that). strength in (0, 1]; fails when no step would run. */
int sd_sched_set_strength(sd_sched *s, double strength, sd_err *err);

/* txt2img start latent: x = noise · init_noise_sigma (float32). x may equal noise. */
void sd_sched_init_latent(const sd_sched *s, const float *noise, float *x, int64_t n);

/* img2img start latent from the encoded image at the first timestep run (docs/SEMANTICS.md §9.4):
 * ddim/ddpm √ᾱ_t·x0 + √(1−ᾱ_t)·noise; euler/euler_a x0 + noise·σ; dpmpp_2m α(σ)·x0 + σα(σ)·noise.
 * out may equal x0 or noise. */
void sd_sched_add_noise(const sd_sched *s, const float *x0, const float *noise, float *out, int64_t n);

/* U-Net input of call i (docs/SEMANTICS.md §6.7): x / sqrt(σ² + 1) for the k-diffusion style σ
 * samplers (euler, euler_a, heun, lms, dpm2, dpm2_a; σ of that call), else a copy. out may equal x. */
void sd_sched_scale_input(const sd_sched *s, int i, const float *x, float *out, int64_t n);
/* The divisor above (1 for ddim, ddpm, lcm, unipc, dpmpp_2m, dpmpp_2m_sde). */
float sd_sched_input_divisor(const sd_sched *s, int i);

/* Whether call i consumes one randn draw of the latent's size (ddpm: t > 0; euler, euler_a,
 * dpm2_a, dpmpp_2m_sde: always; ddim: when η > 0; lcm: every call but the last; the others:
 * never). The caller draws it before sd_sched_step. */
int sd_sched_needs_noise(const sd_sched *s, int i);

/* One model call's update: x (the latent before call i, i < n_calls) becomes the latent after it.
 * g = guided model output (eps or v), noise = this call's draw (may be NULL when !needs_noise).
 * Calls must run in order 0, 1, … (the multistep and order-2 samplers keep history). Fails on
 * out-of-order use, a latent size change, missing noise or out of memory. */
int sd_sched_step(sd_sched *s, int i, float *x, const float *g, const float *noise, int64_t n,
                  sd_err *err);

/* Karras σ list (k-diffusion / diffusers use_karras_sigmas, ρ = 7) of n values from sigma_max
 * down to sigma_min, in double (exposed for tests). */
void sd_sched_karras_sigmas(double sigma_min, double sigma_max, int n, double *out);

/* ---- names ---- */
/* Accepts every sdgen name (ddim, ddpm, euler, euler_a, dpmpp_2m, lcm, unipc, heun, lms, dpm2,
 * dpm2_a, dpmpp_2m_sde) and A1111's display names ("Euler a", "DPM++ 2M", "DPM2 a", "DPM++ 2M SDE",
 * …) and k-diffusion's (k_dpm_2_a, …); case-insensitive; '-' and ' ' count as '_'. A1111's "DPM++ 2M Karras" also sets *schedule to
 * karras when schedule is non-NULL. 0 ok, −1 unknown. */
int sd_sampler_parse(const char *name, sd_sampler *out, sd_schedule *schedule);
const char *sd_sampler_name(sd_sampler s);        /* "ddim", "euler_a", … */
const char *sd_sampler_a1111_name(sd_sampler s);  /* "DDIM", "Euler a", "DPM++ 2M SDE", "DPM2 a", … */
const char *sd_sampler_list(void);                /* "ddim, ddpm, euler, …" for messages and --help */
/* Model calls per step (2 for heun, dpm2, dpm2_a: k-diffusion's second-order samplers, else 1), and
 * the model calls of a whole run of `steps` (2·steps − 1 for those: the last step is first order). */
int sd_sampler_order(sd_sampler s);
/* Whether --schedule karras applies to the sampler: every σ sampler (all but ddim, ddpm and lcm). */
int sd_sampler_has_karras(sd_sampler s);
int sd_sampler_model_calls(sd_sampler s, int steps);
int sd_schedule_parse(const char *name, sd_schedule *out); /* "default"/"automatic", "karras" */
const char *sd_schedule_name(sd_schedule s);               /* "default", "karras" */
/* A1111 infotext "Schedule type": "Karras" for karras, "Automatic" (the sampler's own
 * default schedule) otherwise. */
const char *sd_schedule_a1111_name(sd_schedule s);
int sd_spacing_parse(const char *name, sd_spacing *out);  /* "leading", "linspace", "trailing", "default" */
const char *sd_spacing_name(sd_spacing s);

#ifdef __cplusplus
}
#endif
#endif
