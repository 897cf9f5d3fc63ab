/*
 * test_tensor.c - the tensor type, ragged tensors, the planner and arenas
 * (src/core/tensor.h): strides, item views, alignment, no overlap, reuse of
 * a large enough arena, growth, the memory limit, overflow.
 */
#include "core/tensor.h"

#include "check.h"

#include <string.h>

static int overlaps(const void *a, size_t na, const void *b, size_t nb)
{
    const char *x = a, *y = b;
    return x < y + nb && y < x + na;
}

int main(void)
{
    vtok_status st = {0};
    vt_tensor t;
    const int64_t ne[3] = {2, 3, 5};
    CHECK(vt_tensor_init(&t, VT_F32, 3, ne) == 0, "init");
    CHECK(t.nb[0] == 60 && t.nb[1] == 20 && t.nb[2] == 4 && t.ne[3] == 1, "strides %lld %lld %lld",
          (long long)t.nb[0], (long long)t.nb[1], (long long)t.nb[2]);
    CHECK(vt_tensor_nelem(&t) == 30 && vt_tensor_nbytes(&t) == 120, "sizes");
    CHECK(vt_tensor_is_contiguous(&t), "contiguous");
    const int64_t bad[2] = {1, -1};
    CHECK(vt_tensor_init(&t, VT_F32, 2, bad) == VTOK_EINVAL, "negative size refused");
    const int64_t huge[4] = {1 << 30, 1 << 30, 1 << 30, 1 << 30};
    CHECK(vt_tensor_init(&t, VT_F32, 4, huge) == VTOK_ELIMIT, "overflow refused");

    /* plan: a tensor, a raw block, a ragged tensor */
    vt_planner p;
    vt_arena a = {0};
    vt_tensor x, y;
    void *raw = NULL;
    vt_ragged r;
    int64_t off[4], rows[3] = {3, 0, 7}, inner[1] = {5};
    vt_planner_init(&p);
    vt_plan_tensor(&p, &x, VT_F32, 3, 2, 3, 5, 0);
    vt_plan_bytes(&p, &raw, 13);
    vt_plan_ragged(&p, &r, VT_F32, 3, rows, 1, inner, off);
    vt_plan_tensor(&p, &y, VT_I64, 1, 7, 0, 0, 0);
    CHECK(off[0] == 0 && off[1] == 3 && off[2] == 3 && off[3] == 10, "ragged offsets");
    CHECK(vt_planner_commit(&p, &a, 0, "test", &st) == 0, "commit: %s", st.msg);
    CHECK(((uintptr_t)x.data | (uintptr_t)raw | (uintptr_t)r.flat.data | (uintptr_t)y.data) %
              64 == 0, "64-byte aligned");
    CHECK(!overlaps(x.data, 120, raw, 13) && !overlaps(raw, 13, r.flat.data, 200) &&
              !overlaps(r.flat.data, 200, y.data, 56) && !overlaps(x.data, 120, y.data, 56),
          "no overlap");
    CHECK((char *)y.data + 56 <= (char *)a.mem + a.cap, "inside the arena");
    vt_tensor it = vt_ragged_item(&r, 2);
    CHECK(it.ne[0] == 7 && it.ne[1] == 5 && it.data == (char *)r.flat.data + 3 * 5 * 4,
          "ragged item view");
    CHECK(vt_ragged_item(&r, 1).ne[0] == 0, "an empty item");
    vt_tensor row = vt_tensor_item(&x, 1);
    CHECK(row.n_dims == 2 && row.ne[0] == 3 && row.ne[1] == 5 && row.data == (char *)x.data + 60,
          "item view");
    memset(x.data, 1, 120); /* writable (ASan checks the bounds) */
    memset(r.flat.data, 2, 200);
    size_t need = vt_planner_bytes(&p);
    void *mem = a.mem;
    vt_planner_free(&p);

    /* a smaller plan reuses the block; a larger one grows it; a limit refuses */
    vt_planner_init(&p);
    vt_plan_tensor(&p, &x, VT_F32, 1, 4, 0, 0, 0);
    CHECK(vt_planner_commit(&p, &a, 0, "small", &st) == 0 && a.mem == mem, "reuse");
    vt_planner_free(&p);
    vt_planner_init(&p);
    vt_plan_tensor(&p, &x, VT_F32, 2, 1000, 1000, 0, 0);
    CHECK(vt_planner_bytes(&p) > need, "bigger");
    CHECK(vt_planner_commit(&p, &a, 1 << 20, "a big run", &st) == VTOK_ELIMIT &&
              strstr(st.msg, "a big run needs 4 MiB") && strstr(st.msg, "limit is 1 MiB"),
          "limit: %s", st.msg);
    CHECK(vt_planner_commit(&p, &a, 0, "big", &st) == 0 && a.cap >= 4000000, "grow");
    memset(x.data, 0, 4000000);
    vt_planner_free(&p);

    /* overflow in a request is reported at commit */
    vt_planner_init(&p);
    vt_plan_tensor(&p, &x, VT_F32, 4, 1 << 30, 1 << 30, 1 << 30, 1 << 30);
    CHECK(vt_planner_commit(&p, &a, 0, "huge", &st) == VTOK_ELIMIT, "overflow at commit");
    vt_planner_free(&p);
    vt_arena_free(&a);
    vt_arena_free(&a); /* twice is fine */

    printf("%d checks, %d failed\n", n_check, n_fail);
    return n_fail != 0;
}
