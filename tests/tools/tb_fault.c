/*
 * tb_fault - a tool built only for the test suite's own tests (tests/integration/test_runner.py):
 * it refuses its input like every other tool (an error line on stderr, exit 1), and on that
 * error path first commits the fault it is asked for. The suite must report each fault as a
 * failure even though the status is the 1 an error-path test expects.
 *
 * usage: tb_fault refuse|heap-overflow|use-after-free|leak|ub|segv
 *        exit 1 after the fault (or at once for 'refuse'), 2 on a usage error
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* volatile: the optimiser must neither see through the faults nor remove them. */
static volatile int s_index = 8;
static volatile int s_big = INT_MAX;

static void s_heap_overflow(void)
{
    volatile char *buf = malloc(8);
    if (buf == NULL) {
        return;
    }
    buf[s_index] = 'x'; /* one past the end */
    free((void *)buf);
}

static void s_use_after_free(void)
{
    volatile char *volatile buf = malloc(8);
    if (buf == NULL) {
        return;
    }
    free((void *)buf);
    buf[0] = 'x';
}

static void s_leak(void)
{
    char *volatile buf = malloc(64);
    if (buf != NULL) {
        memset(buf, 1, 64);
    }
    buf = NULL; /* the only pointer is gone */
}

static int s_ub(void)
{
    int v = s_big;
    return v + 1; /* signed overflow */
}

static void s_segv(void)
{
    volatile int *volatile p = NULL;
    *p = 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tb_fault refuse|heap-overflow|use-after-free|leak|ub|segv\n");
        return 2;
    }
    const char *k = argv[1];
    if (strcmp(k, "heap-overflow") == 0) {
        s_heap_overflow();
    } else if (strcmp(k, "use-after-free") == 0) {
        s_use_after_free();
    } else if (strcmp(k, "leak") == 0) {
        s_leak();
    } else if (strcmp(k, "ub") == 0) {
        printf("%d\n", s_ub());
    } else if (strcmp(k, "segv") == 0) {
        s_segv();
    } else if (strcmp(k, "refuse") != 0) {
        fprintf(stderr, "tb_fault: unknown fault '%s'\n", k);
        return 2;
    }
    fprintf(stderr, "error: input refused\n");
    return 1;
}
