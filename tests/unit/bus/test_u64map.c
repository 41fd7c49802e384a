/* Unit tests of tb_u64map: insert, replace, lookup, delete with tombstones, growth, iteration
 * with deletion, reserved keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_u64map.h"

static void test_put_get_del(void **state)
{
    (void)state;
    struct tb_u64map m;
    tb_u64map_init(&m);
    assert_null(tb_u64map_get(&m, 5));
    assert_int_equal(tb_u64map_put(&m, 5, (void *)0x50), 0);
    assert_int_equal(tb_u64map_put(&m, 6, (void *)0x60), 0);
    assert_ptr_equal(tb_u64map_get(&m, 5), (void *)0x50);
    assert_int_equal(tb_u64map_put(&m, 5, (void *)0x51), 0); /* replace */
    assert_int_equal(m.count, 2);
    assert_ptr_equal(tb_u64map_get(&m, 5), (void *)0x51);
    assert_ptr_equal(tb_u64map_del(&m, 5), (void *)0x51);
    assert_null(tb_u64map_get(&m, 5));
    assert_null(tb_u64map_del(&m, 5));
    assert_ptr_equal(tb_u64map_get(&m, 6), (void *)0x60);
    assert_int_equal(tb_u64map_put(&m, 0, (void *)1), TB_EINVAL);
    assert_int_equal(tb_u64map_put(&m, UINT64_MAX, (void *)1), TB_EINVAL);
    assert_null(tb_u64map_get(&m, 0));
    tb_u64map_release(&m);
    assert_int_equal(m.count, 0);
}

static void test_many_with_churn(void **state)
{
    (void)state;
    struct tb_u64map m;
    tb_u64map_init(&m);
    enum { N = 20000 };
    for (uint64_t k = 1; k <= N; k++) {
        assert_int_equal(tb_u64map_put(&m, k * 0x9e3779b97f4a7c15ULL, (void *)(uintptr_t)k), 0);
    }
    assert_int_equal(m.count, N);
    /* delete every other key, then insert new ones into the tombstones */
    for (uint64_t k = 1; k <= N; k += 2) {
        assert_ptr_equal(tb_u64map_del(&m, k * 0x9e3779b97f4a7c15ULL), (void *)(uintptr_t)k);
    }
    for (uint64_t k = N + 1; k <= N + N / 2; k++) {
        assert_int_equal(tb_u64map_put(&m, k * 0x9e3779b97f4a7c15ULL, (void *)(uintptr_t)k), 0);
    }
    for (uint64_t k = 1; k <= N + N / 2; k++) {
        void *v = tb_u64map_get(&m, k * 0x9e3779b97f4a7c15ULL);
        if (k <= N && k % 2 == 1) {
            assert_null(v);
        } else {
            assert_ptr_equal(v, (void *)(uintptr_t)k);
        }
    }
    assert_int_equal(m.count, N / 2 + N / 2);
    tb_u64map_release(&m);
}

static void test_iterate_and_delete(void **state)
{
    (void)state;
    struct tb_u64map m;
    tb_u64map_init(&m);
    for (uint64_t k = 1; k <= 100; k++) {
        tb_u64map_put(&m, k, (void *)(uintptr_t)k);
    }
    uint64_t sum = 0, seen = 0, key;
    void *val;
    for (size_t it = 0; tb_u64map_next(&m, &it, &key, &val);) {
        assert_int_equal(key, (uint64_t)(uintptr_t)val);
        sum += key;
        seen++;
        if (key % 3 == 0) {
            tb_u64map_del(&m, key); /* deleting the current entry is allowed */
        }
    }
    assert_int_equal(seen, 100);
    assert_int_equal(sum, 5050);
    assert_int_equal(m.count, 100 - 33);
    tb_u64map_release(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_many_with_churn),
        cmocka_unit_test(test_iterate_and_delete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
