/* Drive dgb_device_tick directly and print the worst per-tick acceleration, speed and position
 * excursion so the Python test can assert the motion-law invariants (why: a snap to the goal or
 * a stop at the position limit must never exceed the acceleration limit).
 * usage: motion_probe <scenario 0|1|2> [seed] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dgb_device.h"

static void nop_write(void *c, const uint8_t *b, size_t n) { (void)c; (void)b; (void)n; }

int main(int argc, char **argv)
{
    int sc = argc > 1 ? atoi(argv[1]) : 0;
    unsigned seed = argc > 2 ? (unsigned)atoi(argv[2]) : 1u;
    dgb_device_config_t cfg;
    static dgb_device_t dev;
    float init[DGB_NUM_JOINTS] = {0};
    const float dt = 0.001f;
    uint64_t now = 1000000u;
    double max_acc_ratio = 0, max_vel_ratio = 0, max_lim_excess = 0;
    int k;
    unsigned i;
    const int steps = sc == 2 ? 200000 : 4000;
    dgb_device_default_config(&cfg);
    dgb_device_init(&dev, &cfg, 7u, now, init, nop_write, NULL, NULL);
    srand(seed);
    dev.mode = DGB_MODE_ARMED;
    dev.traj_active = false;
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        if (sc == 0) {
            dev.setpoint[i] = 0.0f;
            dev.setpoint_velocity[i] = cfg.max_velocity[i];
            dev.goal[i] = 0.001f;
        } else {
            dev.setpoint[i] = 0.0f;
            dev.goal[i] = sc == 1 ? cfg.upper[i] : dev.setpoint[i];
        }
    }
    dev.goal_deadline_us = now;
    for (k = 0; k < steps; ++k) {
        float v_prev[DGB_NUM_JOINTS];
        memcpy(v_prev, dev.setpoint_velocity, sizeof v_prev);
        if (sc == 2 && rand() % 300 == 0) {
            for (i = 0; i < DGB_NUM_JOINTS; ++i) {
                float u = (float)rand() / (float)RAND_MAX;
                float span = cfg.upper[i] - cfg.lower[i];
                dev.goal[i] = cfg.lower[i] - 0.1f * span + 1.2f * span * u;
                if (dev.goal[i] > cfg.upper[i]) dev.goal[i] = cfg.upper[i];
                if (dev.goal[i] < cfg.lower[i]) dev.goal[i] = cfg.lower[i];
            }
            dev.goal_deadline_us = now + (uint64_t)(rand() % 500000);
        }
        now += 1000u;
        dev.last_motion_cmd_us = now;
        dev.last_host_frame_us = now;
        dgb_device_tick(&dev, now, dt);
        for (i = 0; i < DGB_NUM_JOINTS; ++i) {
            double a = fabs((double)dev.setpoint_velocity[i] - v_prev[i]) / dt / cfg.max_acceleration[i];
            double v = fabs((double)dev.setpoint_velocity[i]) / cfg.max_velocity[i];
            double e = fmax(dev.setpoint[i] - cfg.upper[i], cfg.lower[i] - dev.setpoint[i]);
            if (a > max_acc_ratio) max_acc_ratio = a;
            if (v > max_vel_ratio) max_vel_ratio = v;
            if (e > max_lim_excess) max_lim_excess = e;
        }
    }
    printf("acc_ratio=%.6f vel_ratio=%.6f lim_excess=%.9f final_err=%.9f\n", max_acc_ratio,
           max_vel_ratio, max_lim_excess, fabs((double)dev.goal[0] - dev.setpoint[0]));
    return 0;
}
