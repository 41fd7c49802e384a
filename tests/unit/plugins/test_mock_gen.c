/* Unit tests of tb_mock_gen: deterministic sequences, natural length vs max_tokens, stop strings
 * held back across tokens and cut, stop ids, min_tokens, ignore_eos, tokens mode, logprobs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../plugins/mock/tb_mock_gen.h" /* plugin-private header */

struct run {
    char text[8192];
    size_t len;
    int32_t ids[512];
    size_t n_ids;
    const char *finish;
    int steps;
};

/* Runs a sequence to its end, `k` tokens per advance. */
static void run_all(const struct tb_mock_seq_config *c, size_t k, bool lp, struct run *out)
{
    memset(out, 0, sizeof(*out));
    tb_mock_seq_t *s = tb_mock_seq_new(c, lp);
    assert_non_null(s);
    struct tb_mock_step st;
    do {
        assert_int_equal(tb_mock_seq_advance(s, k, &st), 0);
        assert_true(out->len + st.text_len < sizeof(out->text));
        if (st.text_len > 0) {
            memcpy(out->text + out->len, st.text, st.text_len);
        }
        out->len += st.text_len;
        for (size_t i = 0; i < st.n_ids; i++) {
            out->ids[out->n_ids++] = st.ids[i];
            if (lp) {
                assert_non_null(st.logprobs);
                assert_int_equal(st.logprobs[i].token_id, st.ids[i]);
                assert_true(st.logprobs[i].logprob < 0);
                assert_int_equal(st.logprobs[i].top_count, (size_t)c->top_logprobs);
            }
        }
        out->steps++;
        assert_true(out->steps < 10000);
    } while (!st.finished);
    out->text[out->len] = 0;
    out->finish = st.finish_reason;
    assert_true(tb_mock_seq_finished(s));
    tb_mock_seq_destroy(&s);
    assert_null(s);
}

static struct tb_mock_seq_config base(void)
{
    struct tb_mock_seq_config c = {.seed = 7,
                                   .natural_length = 12,
                                   .token_id_min = 1000,
                                   .token_id_max = 1999};
    return c;
}

static void test_deterministic(void **state)
{
    (void)state;
    struct tb_mock_seq_config c = base();
    struct run a, b, d;
    run_all(&c, 1, false, &a);
    run_all(&c, 5, false, &b); /* chunking does not change the sequence */
    assert_string_equal(a.text, b.text);
    assert_int_equal(a.n_ids, 12);
    assert_memory_equal(a.ids, b.ids, sizeof(int32_t) * 12);
    assert_string_equal(a.finish, "stop");
    assert_true(a.text[0] != ' '); /* the first word has no leading space */
    c.seed = 8;
    run_all(&c, 1, false, &d);
    assert_string_not_equal(a.text, d.text);
    assert_int_equal(tb_mock_hash("ab", 2, 0), tb_mock_hash("ab", 2, 0));
    assert_int_not_equal(tb_mock_hash("ab", 2, 0), tb_mock_hash("ba", 2, 0));
    assert_int_equal(tb_mock_count_words("  a bc\td\n"), 3);
    assert_int_equal(tb_mock_count_words(""), 0);
}

static void test_max_tokens(void **state)
{
    (void)state;
    struct tb_mock_seq_config c = base();
    c.max_tokens = 5;
    struct run r;
    run_all(&c, 1, false, &r);
    assert_int_equal(r.n_ids, 5);
    assert_string_equal(r.finish, "length");
    c.max_tokens = 50; /* above the natural length: ends by itself */
    run_all(&c, 3, false, &r);
    assert_int_equal(r.n_ids, 12);
    assert_string_equal(r.finish, "stop");
    c.ignore_eos = true;
    run_all(&c, 7, false, &r);
    assert_int_equal(r.n_ids, 50);
    assert_string_equal(r.finish, "length");
    c.ignore_eos = false;
    c.min_tokens = 20;
    run_all(&c, 1, false, &r);
    assert_int_equal(r.n_ids, 20);
    assert_string_equal(r.finish, "stop");
}

static void test_stop_strings(void **state)
{
    (void)state;
    struct tb_mock_seq_config c = base();
    c.natural_length = 200;
    struct run full;
    run_all(&c, 1, false, &full);
    /* Choose a stop string spanning two words in the middle of the text. */
    const char *mid = strchr(full.text + 40, ' ');
    assert_non_null(mid);
    char stop[16];
    memcpy(stop, mid - 2, 5);
    stop[5] = 0;
    size_t cut = (size_t)(strstr(full.text, stop) - full.text);
    const char *stops[] = {"never-there", stop};
    c.stop = stops;
    c.n_stop = 2;
    for (size_t k = 1; k <= 3; k++) {
        struct run r;
        run_all(&c, k, false, &r);
        assert_string_equal(r.finish, "stop");
        assert_int_equal(r.len, cut);                /* cut before the stop string */
        assert_memory_equal(r.text, full.text, cut); /* nothing of it was sent early */
        assert_null(strstr(r.text, stop));
    }
}

static void test_stop_ids_and_tokens_mode(void **state)
{
    (void)state;
    struct tb_mock_seq_config c = base();
    c.tokens_mode = true;
    c.natural_length = 30;
    c.token_id_min = 5;
    c.token_id_max = 9;
    struct run r;
    run_all(&c, 4, false, &r);
    assert_int_equal(r.len, 0); /* no text in tokens mode */
    assert_int_equal(r.n_ids, 30);
    for (size_t i = 0; i < r.n_ids; i++) {
        assert_true(r.ids[i] >= 5 && r.ids[i] <= 9);
    }
    int32_t stop_id = r.ids[10];
    size_t first = 0;
    while (r.ids[first] != stop_id) {
        first++;
    }
    c.stop_ids = &stop_id;
    c.n_stop_ids = 1;
    struct run s;
    run_all(&c, 1, false, &s);
    assert_string_equal(s.finish, "stop");
    assert_int_equal(s.n_ids, first); /* the stop id itself is not output */
}

/* A scripted answer: its ids in order, then the end; max_tokens and stop ids still cut it. */
static void test_script(void **state)
{
    (void)state;
    static const int32_t script[] = {40, 41, 42, 43, 44};
    struct tb_mock_seq_config c = base();
    c.tokens_mode = true;
    c.script = script;
    c.natural_length = 5;
    c.min_tokens = 9; /* cannot stretch a script */
    struct run r;
    run_all(&c, 2, false, &r);
    assert_int_equal(r.n_ids, 5);
    assert_memory_equal(r.ids, script, sizeof(script));
    assert_string_equal(r.finish, "stop");
    c.min_tokens = 0;
    c.max_tokens = 3;
    run_all(&c, 1, false, &r);
    assert_int_equal(r.n_ids, 3);
    assert_string_equal(r.finish, "length");
    c.max_tokens = 0;
    int32_t stop_id = 43;
    c.stop_ids = &stop_id;
    c.n_stop_ids = 1;
    run_all(&c, 1, false, &r);
    assert_int_equal(r.n_ids, 3);
    assert_string_equal(r.finish, "stop");
}

static void test_logprobs(void **state)
{
    (void)state;
    struct tb_mock_seq_config c = base();
    c.top_logprobs = 3;
    struct run a, b;
    run_all(&c, 2, true, &a);
    run_all(&c, 2, false, &b);
    assert_int_equal(a.n_ids, 12);
    /* asking for log-probabilities changes the draws but not the shape */
    assert_int_equal(b.n_ids, 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic), cmocka_unit_test(test_max_tokens),
        cmocka_unit_test(test_stop_strings),  cmocka_unit_test(test_stop_ids_and_tokens_mode),
        cmocka_unit_test(test_logprobs),      cmocka_unit_test(test_script),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
