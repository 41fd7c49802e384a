/*
 * tb_test_isa.h - how a unit test that runs a kernel on each instruction set the CPU has says
 * which it ran. On a CPU without AVX-512 (or AVX2) such a test checks fewer paths; it must say
 * so rather than pass as if it had checked them all. tests/run.py gathers the '# hardware:'
 * lines into its summary (docs/testing.md).
 *
 * Needs tb_cpu_kernels.h (tb_cpu_isa_t, tb_cpu_isa_name) and <stdio.h> included before it.
 */
#ifndef TB_TEST_ISA_H
#define TB_TEST_ISA_H

/* Prints "# isa: WHAT ran N of M instruction-set paths: generic avx2 ..." and, when N < M, one
 * "# hardware: WHAT did not run ISA" line per path this CPU lacks. */
static inline void tb_test_isa_ran(const char *what, int n_ran)
{
    const int n_all = (int)TB_CPU_ISA_AVX512 + 1;
    printf("# isa: %s ran %d of %d instruction-set paths:", what, n_ran, n_all);
    for (int i = 0; i < n_ran && i < n_all; i++) {
        printf(" %s", tb_cpu_isa_name((tb_cpu_isa_t)i));
    }
    printf("\n");
    for (int i = n_ran; i < n_all; i++) {
        printf("# hardware: %s did not run the %s path (this CPU lacks it)\n", what,
               tb_cpu_isa_name((tb_cpu_isa_t)i));
    }
    fflush(stdout);
}

#endif
