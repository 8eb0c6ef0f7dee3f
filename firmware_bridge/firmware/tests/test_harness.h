/* Minimal test harness shared by the C unit tests: CHECK, a deterministic RNG, frame helpers,
 * and the case runner (`<binary> <case>` runs one case, `--list` names them; CMake registers one
 * ctest per case). */
#ifndef DGB_TEST_HARNESS_H
#define DGB_TEST_HARNESS_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dgb_cobs.h"
#include "dgb_crc32.h"
#include "dgb_device.h"

static int g_failed;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            g_failed = 1;                                                           \
            return;                                                                 \
        }                                                                           \
    } while (0)

static uint32_t g_rng = 12345u;
static inline uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return g_rng;
}

static inline dgb_msg_t make_targets(uint32_t seq, uint32_t session, uint64_t host_time, float value)
{
    dgb_msg_t m;
    unsigned i;
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_TARGETS;
    m.seq = seq;
    m.session_id = session;
    m.u.targets.host_time_us = host_time;
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        m.u.targets.positions[i] = i < DGB_NUM_ARM_JOINTS ? value : 0.5f;
    }
    return m;
}

static inline size_t encode(const dgb_msg_t *m, uint8_t *wire)
{
    size_t n = 0;
    dgb_error_t err;
    if (!dgb_encode(m, wire, DGB_MAX_WIRE, &n, &err)) {
        return 0;
    }
    return n;
}

static const char *const k_names[DGB_NUM_JOINTS] = {
    "arm_joint_1", "arm_joint_2", "arm_joint_3", "arm_joint_4", "arm_joint_5", "arm_joint_6", "arm_joint_7",
    "hand_joint_1", "hand_joint_2", "hand_joint_3", "hand_joint_4", "hand_joint_5", "hand_joint_6"};

#define SESSION 0xA5A5F00Du

/* One named test case. */
typedef struct {
    const char *name;
    void (*fn)(void);
} test_case_t;

static inline int run_cases(const test_case_t *cases, size_t n, int argc, char **argv)
{
    size_t i;
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (i = 0; i < n; ++i) {
            printf("%s\n", cases[i].name);
        }
        return 0;
    }
    for (i = 0; i < n; ++i) {
        if (argc < 2 || strcmp(argv[1], cases[i].name) == 0) {
            g_failed = 0;
            cases[i].fn();
            printf("%s %s\n", g_failed ? "FAIL" : "ok  ", cases[i].name);
            if (g_failed) {
                return 1;
            }
            if (argc >= 2) {
                return 0;
            }
        }
    }
    if (argc >= 2) {
        fprintf(stderr, "unknown test case %s (see --list)\n", argv[1]);
        return 2;
    }
    return 0;
}

#endif
