/*
 * check.h - the one assertion macro the C unit tests share: counts checks,
 * prints every failure with its location and a printf-style reason, and
 * lets the test run on so one run reports all failures.
 */
#ifndef VT_TEST_CHECK_H
#define VT_TEST_CHECK_H

#include <stdio.h>

static int n_fail;
static int n_check;

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        n_check++;                                                                            \
        if (!(cond)) {                                                                        \
            n_fail++;                                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, "\n");                                                            \
        }                                                                                     \
    } while (0)

#endif /* VT_TEST_CHECK_H */
