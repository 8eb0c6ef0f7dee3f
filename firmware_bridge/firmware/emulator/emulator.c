/*
 * dexgrasp-fw-emulator - the firmware bridge's device side, running on a PC.
 *
 * It runs the REAL firmware library (dgb_device_*) behind a pseudo-terminal and simulates the
 * joints it drives (first-order tracking of the setpoint, small noise). The first stdout line is
 * the pty slave path; hosts open that path exactly as they would open /dev/ttyACM0.
 *
 *   dexgrasp-fw-emulator [--limits FILE] [--state-rate-hz 500] [--no-state-on-command]
 *       [--servo-rate-hz 1000] [--hold-ms 20] [--safe-off-ms 150] [--log-applied FILE]
 *       [--link PATH] [--noise STD] [--tau-ms 15] [--seed N] [--exit-on-stdin-eof]
 *       [--initial-positions V1,...,V13]
 *
 * Signals: SIGTERM / SIGINT exit cleanly; SIGUSR1 simulates a firmware reset (new session id,
 * disarmed, handshake required). It also exits when its parent process dies (getppid() changes)
 * and, with --exit-on-stdin-eof, when its stdin closes, so tests never leave orphans.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "dgb_device.h"
#include "emulator_config.h"

static volatile sig_atomic_t g_stop = 0;
static volatile sig_atomic_t g_reboot = 0;

static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void on_reboot(int sig)
{
    (void)sig;
    g_reboot = 1;
}

typedef struct {
    int master_fd;
    FILE *applied_log;
    unsigned long tx_dropped;
    unsigned long applied_count;
    bool partial_pending;
} io_ctx_t;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void write_bytes(void *ctx, const uint8_t *bytes, size_t len)
{
    io_ctx_t *io = (io_ctx_t *)ctx;
    ssize_t n;
    if (io->partial_pending) {
        /* A previous frame went out cut short: end it with a delimiter so that only it is lost. */
        static const uint8_t delim = 0u;
        if (write(io->master_fd, &delim, 1u) != 1) {
            io->tx_dropped++;
            return;
        }
        io->partial_pending = false;
    }
    n = write(io->master_fd, bytes, len);
    if (n != (ssize_t)len) {
        /* Nobody reading (buffer full) or a partial write: the frame is lost, the host resyncs. */
        io->tx_dropped++;
        io->partial_pending = n > 0;
    }
}

static void log_applied(void *ctx, uint32_t seq, uint64_t mcu_time_us, const float positions[DGB_NUM_JOINTS])
{
    io_ctx_t *io = (io_ctx_t *)ctx;
    unsigned i;
    io->applied_count++;
    if (io->applied_log == NULL) {
        return;
    }
    fprintf(io->applied_log, "%u,%llu", (unsigned)seq, (unsigned long long)mcu_time_us);
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        fprintf(io->applied_log, ",%.9g", (double)positions[i]);
    }
    fputc('\n', io->applied_log);
    fflush(io->applied_log);
}

/* xorshift64* and Box-Muller: noise without libc rand() state surprises. */
static uint64_t g_rng = 0x9E3779B97F4A7C15u;

static double rng_uniform(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 0x2545F4914F6CDD1Du) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_normal(void)
{
    double u1 = rng_uniform();
    double u2 = rng_uniform();
    if (u1 < 1e-300) {
        u1 = 1e-300;
    }
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static uint32_t random_session_id(void)
{
    uint32_t id = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &id, sizeof id) != (ssize_t)sizeof id) {
            id = 0;
        }
        close(fd);
    }
    if (id == 0u) {
        id = (uint32_t)(now_us() ^ ((uint64_t)getpid() << 16));
    }
    return id == 0u ? 1u : id;
}

static int open_pty(char *slave_path, size_t cap, int *slave_fd)
{
    struct termios tio;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    const char *name;
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        perror("dexgrasp-fw-emulator: posix_openpt");
        return -1;
    }
    name = ptsname(master);
    if (name == NULL || strlen(name) + 1u > cap) {
        perror("dexgrasp-fw-emulator: ptsname");
        return -1;
    }
    strcpy(slave_path, name);
    /* Keep one slave fd open so the master never sees a hang-up while no host is connected, and
     * put the line in raw mode (no echo, no newline translation: this is a binary link). */
    *slave_fd = open(slave_path, O_RDWR | O_NOCTTY);
    if (*slave_fd < 0 || tcgetattr(*slave_fd, &tio) != 0) {
        perror("dexgrasp-fw-emulator: open slave");
        return -1;
    }
    cfmakeraw(&tio);
    tcsetattr(*slave_fd, TCSANOW, &tio);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    return master;
}

static int make_link(const char *target, const char *link_path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", link_path, (long)getpid()) >= (int)sizeof tmp) {
        return -1;
    }
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link_path) != 0) {
        perror("dexgrasp-fw-emulator: --link");
        unlink(tmp);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    emu_options_t opt;
    dgb_device_t dev;
    io_ctx_t io;
    char slave_path[256];
    int slave_fd = -1;
    float pos[DGB_NUM_JOINTS], vel[DGB_NUM_JOINTS], eff[DGB_NUM_JOINTS];
    double pos_true[DGB_NUM_JOINTS];
    uint64_t t_start, next_tick, next_state, last_tick;
    const pid_t parent = getppid();
    struct sigaction sa;
    unsigned i;
    unsigned long reboots = 0;

    if (!emu_parse_args(argc, argv, &opt)) {
        return 2;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = on_reboot;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Parent death is detected by polling getppid() every servo tick (below), not with
     * PR_SET_PDEATHSIG: that fires when the parent THREAD exits, which would kill an emulator
     * started from a short-lived worker thread of a still-running host. */

    memset(&io, 0, sizeof io);
    io.master_fd = open_pty(slave_path, sizeof slave_path, &slave_fd);
    if (io.master_fd < 0) {
        return 1;
    }
    if (opt.log_applied != NULL) {
        io.applied_log = fopen(opt.log_applied, "a");
        if (io.applied_log == NULL) {
            fprintf(stderr, "dexgrasp-fw-emulator: cannot open --log-applied %s: %s\n", opt.log_applied,
                    strerror(errno));
            return 1;
        }
    }
    if (opt.link != NULL && make_link(slave_path, opt.link) != 0) {
        return 1;
    }
    g_rng ^= (uint64_t)opt.seed * 0x9E3779B97F4A7C15u + 1u;

    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        float v = opt.has_initial ? opt.initial[i] : 0.5f * (opt.cfg.lower[i] + opt.cfg.upper[i]);
        pos[i] = v < opt.cfg.lower[i] ? opt.cfg.lower[i] : (v > opt.cfg.upper[i] ? opt.cfg.upper[i] : v);
        pos_true[i] = pos[i];
        vel[i] = 0.0f;
        eff[i] = 0.0f;
    }
    t_start = now_us();
    dgb_device_init(&dev, &opt.cfg, random_session_id(), t_start, pos, write_bytes, log_applied, &io);

    printf("%s\n", slave_path);
    fflush(stdout);
    fprintf(stderr, "dexgrasp-fw-emulator: %s session=0x%08x state=%.0f Hz servo=%.0f Hz hold=%u ms safe-off=%u ms\n",
            slave_path, (unsigned)dev.session_id, opt.state_rate_hz, opt.servo_rate_hz,
            (unsigned)(opt.cfg.hold_timeout_us / 1000u), (unsigned)(opt.cfg.safe_off_timeout_us / 1000u));

    {
        const uint64_t servo_period = (uint64_t)(1e6 / opt.servo_rate_hz);
        const uint64_t state_period = opt.state_rate_hz > 0.0 ? (uint64_t)(1e6 / opt.state_rate_hz) : 0u;
        const double tau_s = opt.tau_ms * 1e-3;
        next_tick = t_start + servo_period;
        next_state = t_start + state_period;
        last_tick = t_start;
        while (!g_stop) {
            struct pollfd fds[2];
            nfds_t nfds = 1;
            uint64_t t = now_us();
            int timeout_ns;
            struct timespec ts;
            uint8_t buf[4096];
            if (getppid() != parent) {
                break;
            }
            if (g_reboot) {
                /* Simulated firmware reset: everything volatile is lost, a new session begins. */
                g_reboot = 0;
                reboots++;
                dgb_device_init(&dev, &opt.cfg, random_session_id(), t, pos, write_bytes, log_applied, &io);
                fprintf(stderr, "dexgrasp-fw-emulator: reset, new session=0x%08x\n", (unsigned)dev.session_id);
            }
            fds[0].fd = io.master_fd;
            fds[0].events = POLLIN;
            fds[0].revents = 0;
            if (opt.exit_on_stdin_eof) {
                fds[1].fd = STDIN_FILENO;
                fds[1].events = POLLIN;
                fds[1].revents = 0;
                nfds = 2;
            }
            timeout_ns = next_tick > t ? (int)((next_tick - t) * 1000u) : 0;
            ts.tv_sec = 0;
            ts.tv_nsec = timeout_ns;
            if (ppoll(fds, nfds, &ts, NULL) < 0 && errno != EINTR) {
                perror("dexgrasp-fw-emulator: ppoll");
                break;
            }
            if (nfds == 2 && (fds[1].revents & (POLLIN | POLLHUP))) {
                ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
                if (n <= 0) {
                    break; /* parent closed our stdin: it is gone or wants us gone */
                }
            }
            if (fds[0].revents & POLLIN) {
                ssize_t n = read(io.master_fd, buf, sizeof buf);
                if (n > 0) {
                    /* Byte by byte so that every applied command gets its own state report, even
                     * when several frames arrive in one read. */
                    const uint64_t t_rx = now_us();
                    ssize_t k;
                    for (k = 0; k < n; ++k) {
                        dgb_device_rx(&dev, buf + k, 1u, t_rx);
                        if (dev.state_due && opt.state_on_command) {
                            dgb_device_send_state(&dev, now_us(), pos, vel, eff);
                            next_state = now_us() + state_period;
                        }
                    }
                }
            }
            t = now_us();
            if (t >= next_tick) {
                float dt = (float)(t - last_tick) * 1e-6f;
                float sp_before[DGB_NUM_JOINTS];
                unsigned sub, n_sub = (unsigned)ceil((double)dt / 0.001);
                double alpha;
                if (n_sub < 1u) {
                    n_sub = 1u;
                }
                alpha = 1.0 - exp(-(double)dt / (double)n_sub / tau_s);
                memcpy(sp_before, dev.setpoint, sizeof sp_before);
                last_tick = t;
                next_tick += servo_period;
                if (next_tick <= t) {
                    next_tick = t + servo_period; /* overran: skip, never burst */
                }
                dgb_device_tick(&dev, t, dt);
                /* Plant: first-order lag behind the setpoint, integrated in <= 1 ms sub-steps along
                 * the setpoint's ramp, so a late tick never makes the joint faster than the ramp. */
                for (i = 0; i < DGB_NUM_JOINTS; ++i) {
                    double p = pos_true[i];
                    for (sub = 1; sub <= n_sub; ++sub) {
                        double sp = sp_before[i] + (dev.setpoint[i] - sp_before[i]) * (double)sub / (double)n_sub;
                        p += alpha * (sp - p);
                    }
                    pos_true[i] = p;
                    /* the lag's own derivative (a finite difference over an irregular dt would turn
                     * the sensor noise into velocity spikes) */
                    vel[i] = (float)(((double)dev.setpoint[i] - p) / tau_s);
                    pos[i] = (float)(p + opt.noise * rng_normal()); /* measured = true + sensor noise */
                    eff[i] = 20.0f * (dev.setpoint[i] - pos[i]);
                }
                if (state_period > 0u && t >= next_state) {
                    dgb_device_send_state(&dev, t, pos, vel, eff);
                    next_state += state_period;
                    if (next_state <= t) {
                        next_state = t + state_period;
                    }
                }
            }
        }
    }
    fprintf(stderr, "dexgrasp-fw-emulator: exiting (applied=%lu rx_frames=%lu rejected=%lu tx_dropped=%lu resets=%lu)\n",
            io.applied_count, (unsigned long)dev.framer.frames_ok, (unsigned long)dev.framer.frames_rejected,
            io.tx_dropped, reboots);
    if (opt.link != NULL) {
        unlink(opt.link);
    }
    if (io.applied_log != NULL) {
        fclose(io.applied_log);
    }
    close(slave_fd);
    close(io.master_fd);
    return 0;
}
