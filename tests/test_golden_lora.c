/* test_golden_lora.c — the golden LoRA cases (golden README §10, §12) end to end through the sdgen
 * binary: pl1 (kohya file with LoCon convolutions and alphas, weight 0.8, ddim) and pl2 (diffusers-format
 * file, weight 1.0, euler) on the tiny SD 1.x model, every dumped tensor compared with the reference —
 * the text embeddings and the first U-Net output carry the LoRA. Each case runs twice: merged (the default)
 * and with --lora-apply fly (docs/LORA.md). */
#include "golden_cli.h"

int main(void)
{
    const char *sdgen = getenv("SDGEN");
    CHECK(sdgen && *sdgen, "SDGEN (path of the binary) is not set");
    if (!sdgen) TEST_MAIN_END();
    sd_test_require_shared();
    const char *cases[] = {"pl1-tiny-sd1-lora-kohya-ddim", "pl2-tiny-sd1-lora-diffusers-euler"};
    /* merged into the weights (the default), then added as low-rank products at each use: the same tolerances */
    static const char *const fly[] = {"--lora-apply", "fly", NULL};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_golden_case_in(sdgen, "cases-lora", cases[i], NULL);
        run_golden_case_opts(sdgen, "cases-lora", cases[i], NULL, fly, "fly");
    }
    TEST_MAIN_END();
}
