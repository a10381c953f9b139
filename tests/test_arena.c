/* test_arena.c — the arena scopes every network runs its blocks in (common.h, sd_scope): what a
 * scope frees, what sd_scope_keep moves and keeps, reservations, and (in the AddressSanitizer
 * build) that memory given back is poisoned, so a weight or an activation read after its scope
 * closed is reported where it is read. */
#include "sdgen/tensor.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN_ON 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_ON 1
#endif
#endif
#ifdef ASAN_ON
#include <sanitizer/asan_interface.h>
#endif

static int poisoned(const void *p)
{
#ifdef ASAN_ON
    return __asan_address_is_poisoned(p);
#else
    (void)p;
    return -1; /* not observable without ASan */
#endif
}

int main(void)
{
    sd_arena a;
    sd_arena_init(&a, 1 << 20, 0);

    /* close frees everything since the open */
    float *before = sd_arena_alloc(&a, 100 * sizeof(float));
    const size_t m0 = a.in_use;
    sd_scope s = sd_scope_open(&a);
    float *w = sd_arena_alloc(&a, 1000 * sizeof(float));
    for (int i = 0; i < 1000; i++) w[i] = (float)i;
    CHECK(a.in_use > m0, "allocation inside the scope counted");
    sd_scope_close(&a, s);
    CHECK(a.in_use == m0, "close gives back what the scope allocated: in_use %zu, expected %zu", a.in_use, m0);
    CHECK(poisoned(before) != 1, "memory allocated before the scope stays usable");
#ifdef ASAN_ON
    CHECK(poisoned(w) == 1 && poisoned(w + 999) == 1, "memory of a closed scope is poisoned");
#endif

    /* keep: the output moves down to the scope start, its values intact, the rest is freed */
    s = sd_scope_open(&a);
    sd_tensor scratch = sd_tensor_2d(&a, 64, 64);
    sd_tensor out = sd_tensor_2d(&a, 3, 5);
    for (int i = 0; i < 15; i++) out.data[i] = 0.5f * (float)i;
    memset(scratch.data, 0, 64 * 64 * sizeof(float));
    sd_tensor kept = sd_scope_keep(&a, s, out);
    int same = 1;
    for (int i = 0; i < 15; i++) same &= kept.data[i] == 0.5f * (float)i;
    CHECK(same && kept.ne[0] == 3 && kept.ne[1] == 5, "kept tensor keeps its values and shape");
    CHECK(kept.data == scratch.data, "kept tensor moved down to the scope start");
    CHECK(a.in_use == m0 + 64, "only the kept tensor (15 floats, 64 aligned) stays: in_use %zu", a.in_use - m0);
#ifdef ASAN_ON
    CHECK(poisoned(kept.data + 14) == 0 && poisoned(kept.data + 16) == 1, "the rest of the scope is poisoned");
#endif

    /* keep of a tensor from outside the scope leaves it where it is */
    s = sd_scope_open(&a);
    (void)sd_arena_alloc(&a, 256);
    sd_tensor outside = {.data = before, .ndim = 1, .ne = {100, 1, 1, 1}};
    CHECK(sd_scope_keep(&a, s, outside).data == before, "an outside tensor is not moved");
    CHECK(a.in_use == m0 + 64, "and the scope is freed");

    /* a scope that grew a new block keeps its memory until the reset (never frees too early) */
    s = sd_scope_open(&a);
    float *big = sd_arena_alloc(&a, (size_t)2 << 20); /* larger than the 1 MB block */
    big[0] = 1.0f;
    sd_scope_close(&a, s);
    CHECK(a.in_use >= ((size_t)2 << 20), "memory in a block opened inside the scope stays until the reset");
    CHECK(poisoned(big) != 1, "and stays readable");
    sd_arena_reset(&a);
    CHECK(a.in_use == 0 && a.head && !a.head->next && a.head->size >= a.peak, "reset merges into one block of the peak");

    /* reserve: afterwards the block has the room, and nothing is counted as used */
    sd_arena_reserve(&a, (size_t)8 << 20);
    CHECK(a.in_use == 0 && a.head->size - a.head->used >= ((size_t)8 << 20), "reserve makes room without using it");
    s = sd_scope_open(&a);
    (void)sd_arena_alloc(&a, (size_t)7 << 20);
    sd_scope_close(&a, s);
    CHECK(a.in_use == 0, "a scope inside the reservation gives everything back");

    sd_arena_free(&a);
    TEST_MAIN_END();
}
