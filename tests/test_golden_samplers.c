/* test_golden_samplers.c — the public sampler golden cases (golden README §8) end to end through the
 * sdgen binary on the tiny SD 1.x model: lcm, euler with trailing spacing, unipc, heun, lms, dpm2,
 * dpm2_a, dpmpp_2m_sde and ddim with eta. Besides the stages every golden case compares
 * (tests/golden_cli.h: tokens, text, timesteps, unet0_out, latents, image, PNG, parameters), each
 * model call's dumps are compared: its input latent, timestep, guided output and the sampler's noise
 * draws (exact: the random stream and its order, §3.3 and §8), the σ list (exact), the decoder input
 * and the first call's time projection (golden README §5/§9 tolerances). unet0_time_emb (the U-Net's
 * time MLP, an internal of the network) is not dumped. The heun, dpm2 and dpm2_a cases make 2n − 1 model
 * calls. */
#include "golden_cli.h"

/* Compare the per-call dumps of one case (already run by run_golden_case_in into its folder). */
static void compare_calls(const char *case_name, int has_sigmas, int has_noise)
{
    char case_dir[4096], out_dir[4096];
    snprintf(case_dir, sizeof case_dir, "%s/%s", sd_test_path("golden/cases-samplers"), case_name);
    snprintf(out_dir, sizeof out_dir, "%s/golden-%s", sd_test_tmp(), case_name);
    compare_npy(case_dir, out_dir, "noise", 0);
    compare_npy(case_dir, out_dir, "step_timesteps", 0);
    compare_npy(case_dir, out_dir, "unet0_timestep", 0);
    compare_npy(case_dir, out_dir, "unet0_sample", 0);
    compare_npy(case_dir, out_dir, "unet0_context", 2e-5);
    if (has_sigmas) compare_npy(case_dir, out_dir, "sigmas", 0);
    if (has_noise) compare_npy(case_dir, out_dir, "step_noise", 0);
    compare_npy(case_dir, out_dir, "step_sample_in", -1);
    compare_npy(case_dir, out_dir, "step_model_output", -1);
    compare_npy(case_dir, out_dir, "vae_in", -1);
    /* sin/cos of arguments up to ~1000 in float32: 2e-6·max(1, |arg|/64) (golden README §9), t ≤ 999 */
    compare_npy(case_dir, out_dir, "unet0_time_proj", 2e-6 * 999.0 / 64.0);
    /* a sampler without draws must not dump any */
    if (!has_noise) {
        char p[4200];
        snprintf(p, sizeof p, "%s/step_noise.npy", out_dir);
        struct stat st;
        CHECK(stat(p, &st) != 0, "%s: step_noise.npy written although the sampler draws no noise", case_name);
    }
}

int main(void)
{
    const char *sdgen = getenv("SDGEN");
    CHECK(sdgen && *sdgen, "SDGEN (path of the binary) is not set");
    if (!sdgen) TEST_MAIN_END();
    sd_test_require_shared();
    static const struct {
        const char *name;
        int sigmas, noise;
    } cases[] = {
        {"p15-tiny-sd1-lcm", 0, 1},           {"p16-tiny-sd1-euler-trailing", 1, 1}, {"p17-tiny-sd1-unipc", 1, 0},
        {"p18-tiny-sd1-heun", 1, 0},          {"p19-tiny-sd1-lms", 1, 0},            {"p20-tiny-sd1-dpm2", 1, 0},
        {"p21-tiny-sd1-dpm2-a", 1, 1},        {"p22-tiny-sd1-dpmpp-2m-sde", 1, 1},   {"p23-tiny-sd1-ddim-eta", 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int before = t_fail;
        run_golden_case_in(sdgen, "cases-samplers", cases[i].name, NULL);
        if (t_fail == before) compare_calls(cases[i].name, cases[i].sigmas, cases[i].noise);
    }
    TEST_MAIN_END();
}
