/* test_arena_oom.c — the activation arena's out-of-memory contract (sdgen/common.h): inside a guarded call
 * an allocation that cannot be had jumps to the guard; without a guard it returns NULL (the library
 * never prints or exits), the arena stays usable, and a reset never fails. Memory running out is
 * modelled by the arena's byte limit. */
#include <setjmp.h>

#include "sdgen/common.h"
#include "sdgen/tensor.h"
#include "testutil.h"

#ifdef __SANITIZE_ADDRESS__
/* The impossible merge below asks malloc for 4 EiB: ASan must answer NULL, as glibc does, not stop. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
#endif

int main(void)
{
    const size_t MB = (size_t)1 << 20;
    sd_arena a;
    sd_arena_init(&a, 0, 100 * MB); /* blocks are at least 64 MB: one block fits, a second does not */

    /* no guard: NULL, nothing counted, and the arena goes on working */
    void *p = sd_arena_alloc(&a, 10 * MB);
    CHECK(p != NULL && ((uintptr_t)p & 63) == 0, "10 MB: %p", p);
    size_t used = a.in_use;
    void *q = sd_arena_alloc(&a, 200 * MB);
    CHECK(q == NULL, "200 MB past a 100 MB limit without a guard: %p, want NULL", q);
    CHECK(a.in_use == used, "a refused allocation counted: in_use %zu, was %zu", a.in_use, used);
    sd_tensor t = sd_tensor_4d(&a, 1, 4, 4096, 4096); /* 256 MB */
    CHECK(t.data == NULL, "tensor past the limit without a guard: data %p, want NULL", (void *)t.data);
    void *r = sd_arena_alloc(&a, 1 * MB);
    CHECK(r != NULL, "1 MB after a refusal: NULL");

    /* guarded: the failing allocation jumps, and the code after it does not run */
    jmp_buf jb;
    volatile int jumped = 0, after = 0;
    if (setjmp(jb)) {
        jumped = 1;
    } else {
        a.guard = &jb;
        (void)sd_arena_alloc(&a, 500 * MB);
        after = 1;
    }
    a.guard = NULL;
    CHECK(jumped == 1 && after == 0, "guarded failure: jumped %d, ran on %d", jumped, after);

    /* reset: blocks merged into one of the peak size; the arena is usable afterwards */
    sd_arena_reset(&a);
    CHECK(a.in_use == 0, "in_use after reset: %zu", a.in_use);
    void *s = sd_arena_alloc(&a, 11 * MB);
    CHECK(s != NULL, "allocation after reset: NULL");
    sd_arena_free(&a);

    /* a reset whose merged block cannot be had leaves an empty arena instead of failing: force it with
     * two blocks whose sum no malloc can give (the peak is recorded, the merge asks for it) */
    sd_arena b;
    sd_arena_init(&b, 0, 0);
    void *x = sd_arena_alloc(&b, 70 * MB);
    void *y = sd_arena_alloc(&b, 70 * MB); /* a second block */
    CHECK(x && y && b.head && b.head->next, "two blocks: %p %p", x, y);
    b.peak = (size_t)1 << 62; /* as if a run had peaked at 4 EiB: the merged block cannot be allocated */
    sd_arena_reset(&b);
    CHECK(b.head == NULL && b.in_use == 0, "reset with an impossible merge: head %p in_use %zu", (void *)b.head,
          b.in_use);
    void *z = sd_arena_alloc(&b, 1 * MB);
    CHECK(z != NULL, "allocation after the failed merge: NULL");
    sd_arena_free(&b);
    TEST_MAIN_END();
}
