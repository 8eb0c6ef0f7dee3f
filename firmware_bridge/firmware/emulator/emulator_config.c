#include "emulator_config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_usage =
    "usage: dexgrasp-fw-emulator [--limits FILE] [--state-rate-hz HZ] [--no-state-on-command]\n"
    "         [--servo-rate-hz HZ] [--hold-ms MS] [--safe-off-ms MS] [--log-applied FILE]\n"
    "         [--link PATH] [--noise STD] [--tau-ms MS] [--seed N] [--exit-on-stdin-eof]\n"
    "         [--initial-positions V1,...,V13]\n"
    "Prints the pseudo-terminal path on the first stdout line, then serves the firmware protocol.\n"
    "--limits FILE: 13 lines 'name lower upper max_velocity [max_acceleration]' ('#' comments).\n"
    "SIGUSR1 simulates a firmware reset (new session id).\n";

static void default_names(emu_options_t *opt)
{
    unsigned i;
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        if (i < DGB_NUM_ARM_JOINTS) {
            snprintf(opt->names[i], EMU_NAME_MAX, "arm_joint_%u", i + 1u);
        } else {
            snprintf(opt->names[i], EMU_NAME_MAX, "hand_joint_%u", i + 1u - DGB_NUM_ARM_JOINTS);
        }
    }
}

static void update_hash(emu_options_t *opt)
{
    const char *ptrs[DGB_NUM_JOINTS];
    unsigned i;
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        ptrs[i] = opt->names[i];
    }
    opt->cfg.schema_hash = dgb_schema_hash(ptrs, DGB_NUM_JOINTS);
}

bool emu_load_limits(const char *path, emu_options_t *opt)
{
    char line[512];
    unsigned n = 0;
    unsigned lineno = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "dexgrasp-fw-emulator: cannot open --limits %s: %s\n", path, strerror(errno));
        return false;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char name[EMU_NAME_MAX];
        double lo, hi, vmax, amax = -1.0;
        int got;
        char *p = line;
        ++lineno;
        while (*p == ' ' || *p == '\t') {
            ++p;
        }
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0') {
            continue;
        }
        got = sscanf(p, "%63s %lf %lf %lf %lf", name, &lo, &hi, &vmax, &amax);
        if (got < 4 || n >= DGB_NUM_JOINTS || !isfinite(lo) || !isfinite(hi) || !(lo < hi) || !(vmax > 0.0) ||
            !isfinite(vmax) || (got == 5 && !(amax > 0.0 && isfinite(amax)))) {
            fprintf(stderr,
                    "dexgrasp-fw-emulator: %s:%u: expected 'name lower upper max_velocity [max_acceleration]' "
                    "with lower < upper, positive finite limits, at most %u joints; got: %s",
                    path, lineno, DGB_NUM_JOINTS, p);
            fclose(f);
            return false;
        }
        strcpy(opt->names[n], name);
        opt->cfg.lower[n] = (float)lo;
        opt->cfg.upper[n] = (float)hi;
        opt->cfg.max_velocity[n] = (float)vmax;
        if (got == 5) {
            opt->cfg.max_acceleration[n] = (float)amax;
        }
        ++n;
    }
    fclose(f);
    if (n != DGB_NUM_JOINTS) {
        fprintf(stderr, "dexgrasp-fw-emulator: %s: %u joints, expected %u\n", path, n, DGB_NUM_JOINTS);
        return false;
    }
    update_hash(opt);
    return true;
}

static bool parse_double(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "dexgrasp-fw-emulator: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool emu_parse_args(int argc, char **argv, emu_options_t *opt)
{
    int i;
    double v;
    memset(opt, 0, sizeof *opt);
    dgb_device_default_config(&opt->cfg);
    default_names(opt);
    update_hash(opt);
    opt->state_rate_hz = 500.0;
    opt->servo_rate_hz = 1000.0;
    opt->state_on_command = true;
    opt->noise = 1e-5;
    opt->tau_ms = 15.0;
    for (i = 1; i < argc; ++i) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(k_usage, stdout);
            exit(0);
        } else if (strcmp(a, "--no-state-on-command") == 0) {
            opt->state_on_command = false;
            continue;
        } else if (strcmp(a, "--exit-on-stdin-eof") == 0) {
            opt->exit_on_stdin_eof = true;
            continue;
        }
        if (val == NULL) {
            fprintf(stderr, "dexgrasp-fw-emulator: unknown option or missing value: %s\n%s", a, k_usage);
            return false;
        }
        ++i;
        if (strcmp(a, "--limits") == 0) {
            if (!emu_load_limits(val, opt)) {
                return false;
            }
        } else if (strcmp(a, "--state-rate-hz") == 0) {
            if (!parse_double(a, val, 0.0, 20000.0, &opt->state_rate_hz)) {
                return false;
            }
        } else if (strcmp(a, "--servo-rate-hz") == 0) {
            if (!parse_double(a, val, 10.0, 20000.0, &opt->servo_rate_hz)) {
                return false;
            }
        } else if (strcmp(a, "--hold-ms") == 0) {
            if (!parse_double(a, val, 1.0, 60000.0, &v)) {
                return false;
            }
            opt->cfg.hold_timeout_us = (uint32_t)(v * 1000.0);
        } else if (strcmp(a, "--safe-off-ms") == 0) {
            if (!parse_double(a, val, 1.0, 600000.0, &v)) {
                return false;
            }
            opt->cfg.safe_off_timeout_us = (uint32_t)(v * 1000.0);
        } else if (strcmp(a, "--log-applied") == 0) {
            opt->log_applied = val;
        } else if (strcmp(a, "--link") == 0) {
            opt->link = val;
        } else if (strcmp(a, "--noise") == 0) {
            if (!parse_double(a, val, 0.0, 1.0, &opt->noise)) {
                return false;
            }
        } else if (strcmp(a, "--tau-ms") == 0) {
            if (!parse_double(a, val, 0.1, 10000.0, &opt->tau_ms)) {
                return false;
            }
        } else if (strcmp(a, "--initial-positions") == 0) {
            const char *p = val;
            unsigned k;
            for (k = 0; k < DGB_NUM_JOINTS; ++k) {
                char *end = NULL;
                double x = strtod(p, &end);
                if (end == p || !isfinite(x) || (k + 1u < DGB_NUM_JOINTS ? *end != ',' : *end != '\0')) {
                    fprintf(stderr, "dexgrasp-fw-emulator: --initial-positions expects %u comma-separated "
                            "finite numbers, got '%s'\n", DGB_NUM_JOINTS, val);
                    return false;
                }
                opt->initial[k] = (float)x;
                p = end + 1;
            }
            opt->has_initial = true;
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_double(a, val, 0.0, 4294967295.0, &v)) {
                return false;
            }
            opt->seed = (unsigned long)v;
        } else {
            fprintf(stderr, "dexgrasp-fw-emulator: unknown option %s\n%s", a, k_usage);
            return false;
        }
    }
    if (opt->cfg.safe_off_timeout_us <= opt->cfg.hold_timeout_us) {
        fprintf(stderr, "dexgrasp-fw-emulator: --safe-off-ms must be longer than --hold-ms\n");
        return false;
    }
    return true;
}
