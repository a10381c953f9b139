/* test_golden_sdxl.c — the public SDXL golden cases on the tiny SDXL model, end to end through the
 * sdgen binary with their case.json keys as options (micro-conditioning, the negative prompt not given
 * = zeros, "" = encoded, turbo with guidance off and trailing timesteps, img2img), compared at every
 * dumped stage (golden README §9 tolerances). */
#include "golden_cli.h"

int main(void)
{
    const char *sdgen = getenv("SDGEN");
    CHECK(sdgen && *sdgen, "SDGEN (path of the binary) is not set");
    if (!sdgen) TEST_MAIN_END();
    static const char *const cases[] = {"p8-tiny-sdxl-euler",          "p9-tiny-sdxl-euler-64x96",
                                        "p10-tiny-sdxl-dpmpp-karras",  "p11-tiny-sdxl-turbo-euler-a",
                                        "p12-tiny-sdxl-microcond",     "p13-tiny-sdxl-img2img-euler"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_golden_case_in(sdgen, "cases-sdxl", cases[i], NULL);
    TEST_MAIN_END();
}
