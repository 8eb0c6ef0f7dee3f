/* Command-line options and the limits file of dexgrasp-fw-emulator. */
#ifndef EMULATOR_CONFIG_H
#define EMULATOR_CONFIG_H
#include <stdbool.h>

#include "dgb_device.h"

#define EMU_NAME_MAX 64

typedef struct {
    dgb_device_config_t cfg;
    char names[DGB_NUM_JOINTS][EMU_NAME_MAX];
    double state_rate_hz;
    double servo_rate_hz;
    bool state_on_command;
    const char *log_applied;
    const char *link;
    double noise;
    double tau_ms;
    unsigned long seed;
    bool exit_on_stdin_eof;
    bool has_initial;
    float initial[DGB_NUM_JOINTS]; /* joint positions at boot (default: the middle of the limits) */
} emu_options_t;

/* Parse argv into *opt (defaults first); prints usage / the error and returns false on bad input. */
bool emu_parse_args(int argc, char **argv, emu_options_t *opt);

/* Read a limits file: 13 lines "name lower upper max_velocity [max_acceleration]", '#' comments. */
bool emu_load_limits(const char *path, emu_options_t *opt);
#endif
