/* test_golden_cli.c — every tiny golden case end to end through the sdgen binary
 * (txt2img with ddim, euler_a, dpmpp_2m karras, euler on a diffusers folder, SD 2.x v-prediction,
 * and image-to-image), compared stage by stage with the reference. */
#include "golden_cli.h"

int main(void)
{
    const char *sdgen = getenv("SDGEN");
    CHECK(sdgen && *sdgen, "SDGEN (path of the binary) is not set");
    if (!sdgen) TEST_MAIN_END();
    sd_test_require_shared();
    const char *cases[] = {"p1-tiny-sd1-ddim", "p2-tiny-sd1-euler-a", "p3-tiny-sd1-dpmpp-karras", "p4-tiny-cfg-euler",
                           "p6-tiny-sd2-v-ddim", "p7-tiny-sd1-img2img-ddim"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_golden_case(sdgen, cases[i], NULL);
    TEST_MAIN_END();
}
