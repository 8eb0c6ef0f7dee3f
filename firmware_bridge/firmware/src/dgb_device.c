/* Firmware state machine and safety. Every rule here is described in PROTOCOL.md. */
#include "dgb_device.h"

#include <math.h>
#include <string.h>

static const float k_arm_limit[DGB_NUM_ARM_JOINTS] = {3.1f, 2.268f, 3.1f, 2.355f, 3.1f, 2.233f, 6.28f};

void dgb_device_default_config(dgb_device_config_t *cfg)
{
    unsigned i;
    memset(cfg, 0, sizeof *cfg);
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        if (i < DGB_NUM_ARM_JOINTS) {
            cfg->lower[i] = -k_arm_limit[i];
            cfg->upper[i] = k_arm_limit[i];
            cfg->max_velocity[i] = 1.5f;
            cfg->max_acceleration[i] = 10.0f;
        } else {
            cfg->lower[i] = 0.0f;
            cfg->upper[i] = 1.0f;
            cfg->max_velocity[i] = 2.0f;
            cfg->max_acceleration[i] = 20.0f;
        }
    }
    cfg->schema_hash = 0u; /* the caller sets the hash of its joint names */
    cfg->hold_timeout_us = 20000u;
    cfg->safe_off_timeout_us = 150000u;
}

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static void send_msg(dgb_device_t *dev, dgb_msg_t *msg)
{
    uint8_t wire[DGB_MAX_WIRE];
    size_t n = 0;
    dgb_error_t err;
    msg->seq = ++dev->tx_seq;
    msg->session_id = dev->session_id;
    if (dgb_encode(msg, wire, sizeof wire, &n, &err) && dev->write != NULL) {
        dev->write(dev->ctx, wire, n);
    }
}

static void send_fault(dgb_device_t *dev, dgb_error_t code, uint8_t type, uint32_t seq)
{
    dgb_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_FAULT;
    m.u.fault.error = (uint16_t)code;
    m.u.fault.rejected_type = type;
    m.u.fault.rejected_seq = seq;
    dev->last_error = (uint16_t)code;
    dev->rx_errors = (uint16_t)(dev->rx_errors + 1u);
    send_msg(dev, &m);
}

static void send_ack(dgb_device_t *dev, const dgb_msg_t *req, dgb_error_t result)
{
    dgb_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_ACK;
    m.u.ack.acked_seq = req->seq;
    m.u.ack.acked_type = req->type;
    m.u.ack.result = (uint16_t)result;
    if (result != DGB_OK) {
        dev->last_error = (uint16_t)result;
    }
    send_msg(dev, &m);
}

void dgb_device_init(dgb_device_t *dev, const dgb_device_config_t *cfg, uint32_t session_id,
                     uint64_t now_us, const float initial[DGB_NUM_JOINTS], dgb_write_fn write,
                     dgb_applied_fn applied, void *ctx)
{
    unsigned i;
    memset(dev, 0, sizeof *dev);
    dev->cfg = *cfg;
    dev->write = write;
    dev->applied = applied;
    dev->ctx = ctx;
    dev->session_id = session_id;
    dev->boot_us = now_us;
    dev->mode = DGB_MODE_DISARMED;
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        float v = initial != NULL ? initial[i] : 0.5f * (cfg->lower[i] + cfg->upper[i]);
        dev->setpoint[i] = clampf(v, cfg->lower[i], cfg->upper[i]);
        dev->goal[i] = dev->setpoint[i];
    }
    dgb_framer_init(&dev->framer);
}

static bool all_finite(const float *v, unsigned n)
{
    unsigned i;
    for (i = 0; i < n; ++i) {
        if (!isfinite(v[i])) {
            return false;
        }
    }
    return true;
}

/* Clamp a target into the position limits; returns true if anything was clamped. */
static bool clamp_target(const dgb_device_t *dev, const float *in, float *out)
{
    unsigned i;
    bool clamped = false;
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        out[i] = clampf(in[i], dev->cfg.lower[i], dev->cfg.upper[i]);
        clamped = clamped || out[i] != in[i];
    }
    return clamped;
}

static dgb_error_t motion_allowed(const dgb_device_t *dev)
{
    switch (dev->mode) {
    case DGB_MODE_ARMED:
    case DGB_MODE_HOLD: return DGB_OK;
    case DGB_MODE_SAFE_OFF: return DGB_ERR_SAFE_OFF;
    case DGB_MODE_PSTOP: return DGB_ERR_PSTOP;
    default: return DGB_ERR_NOT_ARMED;
    }
}

static void handle_hello(dgb_device_t *dev, const dgb_msg_t *msg, uint64_t now_us)
{
    dgb_msg_t m;
    dgb_error_t result = DGB_OK;
    if (msg->u.hello.protocol_version != DGB_PROTOCOL_VERSION) {
        result = DGB_ERR_VERSION;
    } else if (msg->u.hello.num_joints != DGB_NUM_JOINTS || msg->u.hello.schema_hash != dev->cfg.schema_hash) {
        result = DGB_ERR_SCHEMA;
    }
    /* A handshake always ends motion: the host must ARM again after it. */
    dev->handshaked = result == DGB_OK;
    dev->last_rx_seq = msg->seq;
    dev->last_cmd_host_time_us = 0u;
    dev->last_host_frame_us = now_us;
    dev->traj_active = false;
    if (dev->mode == DGB_MODE_ARMED || dev->mode == DGB_MODE_HOLD) {
        dev->mode = DGB_MODE_DISARMED;
    }
    if (result != DGB_OK) {
        dev->last_error = (uint16_t)result;
    }
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_HELLO_ACK;
    m.u.hello_ack.protocol_version = DGB_PROTOCOL_VERSION;
    m.u.hello_ack.num_joints = DGB_NUM_JOINTS;
    m.u.hello_ack.schema_hash = dev->cfg.schema_hash;
    m.u.hello_ack.session_id = dev->session_id;
    m.u.hello_ack.host_nonce = msg->u.hello.host_nonce;
    m.u.hello_ack.firmware_version = DGB_FIRMWARE_VERSION;
    m.u.hello_ack.result = (uint16_t)result;
    m.u.hello_ack.max_traj_points = DGB_MAX_TRAJ_POINTS;
    m.u.hello_ack.hold_timeout_us = dev->cfg.hold_timeout_us;
    m.u.hello_ack.safe_off_timeout_us = dev->cfg.safe_off_timeout_us;
    /* The envelope this firmware enforces, so the host can refuse to command a wider one. */
    m.u.hello_ack.has_limits = true;
    memcpy(m.u.hello_ack.lower, dev->cfg.lower, sizeof m.u.hello_ack.lower);
    memcpy(m.u.hello_ack.upper, dev->cfg.upper, sizeof m.u.hello_ack.upper);
    memcpy(m.u.hello_ack.max_velocity, dev->cfg.max_velocity, sizeof m.u.hello_ack.max_velocity);
    memcpy(m.u.hello_ack.max_acceleration, dev->cfg.max_acceleration, sizeof m.u.hello_ack.max_acceleration);
    send_msg(dev, &m);
}

static void apply_targets(dgb_device_t *dev, const dgb_msg_t *msg, uint64_t now_us)
{
    const dgb_targets_t *t = &msg->u.targets;
    bool clamped = clamp_target(dev, t->positions, dev->goal);
    dev->goal_deadline_us = now_us + t->reach_in_us;
    dev->traj_active = false;
    dev->flags = (uint8_t)(clamped ? (dev->flags | DGB_FLAG_CLAMPED_POSITION)
                                   : (dev->flags & ~DGB_FLAG_CLAMPED_POSITION));
    if (dev->applied != NULL) {
        dev->applied(dev->ctx, msg->seq, now_us - dev->boot_us, dev->goal);
    }
}

static void apply_trajectory(dgb_device_t *dev, const dgb_msg_t *msg, uint64_t now_us)
{
    unsigned i;
    bool clamped = false;
    dev->traj = msg->u.trajectory;
    for (i = 0; i < dev->traj.num_points; ++i) {
        float *p = dev->traj.points[i].positions;
        float tmp[DGB_NUM_JOINTS];
        clamped = clamp_target(dev, p, tmp) || clamped;
        memcpy(p, tmp, sizeof tmp);
        if (dev->applied != NULL) {
            dev->applied(dev->ctx, msg->seq, now_us - dev->boot_us, p);
        }
    }
    dev->traj_start_us = now_us;
    dev->traj_active = true;
    dev->flags = (uint8_t)(clamped ? (dev->flags | DGB_FLAG_CLAMPED_POSITION)
                                   : (dev->flags & ~DGB_FLAG_CLAMPED_POSITION));
}

static dgb_error_t check_motion(dgb_device_t *dev, const dgb_msg_t *msg)
{
    unsigned i;
    uint64_t host_time = msg->type == DGB_MSG_TARGETS ? msg->u.targets.host_time_us
                                                       : msg->u.trajectory.host_time_us;
    if (msg->type == DGB_MSG_TARGETS) {
        if (!all_finite(msg->u.targets.positions, DGB_NUM_JOINTS)) {
            dev->fault_flags |= DGB_FAULT_NONFINITE;
            return DGB_ERR_NONFINITE;
        }
    } else {
        for (i = 0; i < msg->u.trajectory.num_points; ++i) {
            if (!all_finite(msg->u.trajectory.points[i].positions, DGB_NUM_JOINTS)) {
                dev->fault_flags |= DGB_FAULT_NONFINITE;
                return DGB_ERR_NONFINITE;
            }
            if (i > 0u && msg->u.trajectory.points[i].t_offset_us <= msg->u.trajectory.points[i - 1u].t_offset_us) {
                return DGB_ERR_TRAJ_TIME;
            }
        }
    }
    if (host_time < dev->last_cmd_host_time_us) {
        return DGB_ERR_STALE;
    }
    return motion_allowed(dev);
}

void dgb_device_handle(dgb_device_t *dev, const dgb_msg_t *msg, uint64_t now_us)
{
    dgb_error_t e;
    if (msg->type & 0x80u) {
        send_fault(dev, DGB_ERR_DIRECTION, msg->type, msg->seq);
        return;
    }
    if (msg->type == DGB_MSG_HELLO) {
        handle_hello(dev, msg, now_us);
        return;
    }
    if (msg->session_id != dev->session_id) {
        send_fault(dev, DGB_ERR_SESSION, msg->type, msg->seq);
        return;
    }
    if (!dev->handshaked) {
        send_fault(dev, DGB_ERR_NO_HANDSHAKE, msg->type, msg->seq);
        return;
    }
    if (msg->seq <= dev->last_rx_seq) {
        send_fault(dev, DGB_ERR_REPLAY, msg->type, msg->seq);
        return;
    }
    /* From here the frame is authentic and new: it feeds the safe-off watchdog. */
    dev->last_rx_seq = msg->seq;
    dev->last_host_frame_us = now_us;
    switch (msg->type) {
    case DGB_MSG_ARM:
        if (dev->mode == DGB_MODE_PSTOP) {
            send_ack(dev, msg, DGB_ERR_PSTOP);
            return;
        }
        dev->mode = DGB_MODE_ARMED;
        dev->fault_flags = 0u;
        dev->traj_active = false;
        memcpy(dev->goal, dev->setpoint, sizeof dev->goal);
        dev->goal_deadline_us = now_us;
        dev->last_motion_cmd_us = now_us;
        send_ack(dev, msg, DGB_OK);
        return;
    case DGB_MSG_DISARM:
        if (dev->mode != DGB_MODE_PSTOP) {
            dev->mode = DGB_MODE_DISARMED;
        }
        dev->traj_active = false;
        send_ack(dev, msg, DGB_OK);
        return;
    case DGB_MSG_PSTOP:
        dev->mode = DGB_MODE_PSTOP;
        dev->fault_flags |= DGB_FAULT_PSTOP;
        dev->traj_active = false;
        send_ack(dev, msg, DGB_OK);
        return;
    case DGB_MSG_CLEAR_PSTOP:
        if (dev->mode == DGB_MODE_PSTOP) {
            dev->mode = DGB_MODE_DISARMED;
        }
        send_ack(dev, msg, DGB_OK);
        return;
    case DGB_MSG_HEARTBEAT:
        send_ack(dev, msg, DGB_OK);
        return;
    case DGB_MSG_TARGETS:
    case DGB_MSG_TRAJECTORY:
        e = check_motion(dev, msg);
        if (e != DGB_OK) {
            send_fault(dev, e, msg->type, msg->seq);
            return;
        }
        dev->last_cmd_host_time_us = msg->type == DGB_MSG_TARGETS ? msg->u.targets.host_time_us
                                                                  : msg->u.trajectory.host_time_us;
        dev->echo_host_time_us = dev->last_cmd_host_time_us;
        dev->last_applied_seq = msg->seq;
        dev->last_motion_cmd_us = now_us;
        dev->mode = DGB_MODE_ARMED;
        if (msg->type == DGB_MSG_TARGETS) {
            apply_targets(dev, msg, now_us);
        } else {
            apply_trajectory(dev, msg, now_us);
        }
        dev->state_due = true;
        return;
    default:
        send_fault(dev, DGB_ERR_TYPE, msg->type, msg->seq);
        return;
    }
}

void dgb_device_rx(dgb_device_t *dev, const uint8_t *data, size_t len, uint64_t now_us)
{
    size_t i;
    for (i = 0; i < len; ++i) {
        dgb_msg_t msg;
        dgb_error_t err = DGB_OK;
        dgb_framer_event_t ev = dgb_framer_push(&dev->framer, data[i], &msg, &err);
        if (ev == DGB_FRAMER_FRAME) {
            dgb_device_handle(dev, &msg, now_us);
        } else if (ev == DGB_FRAMER_ERROR) {
            dev->fault_flags |= DGB_FAULT_RX_ERROR;
            send_fault(dev, err, 0u, 0u);
        }
    }
}

/* The goal at `now_us`: the single target, or the trajectory interpolated linearly. */
static void current_goal(dgb_device_t *dev, uint64_t now_us, float *goal, float *remaining_s)
{
    unsigned i;
    unsigned k;
    if (!dev->traj_active) {
        memcpy(goal, dev->goal, sizeof dev->goal);
        *remaining_s = now_us < dev->goal_deadline_us ? (float)(dev->goal_deadline_us - now_us) * 1e-6f : 0.0f;
        return;
    }
    {
        const dgb_trajectory_t *t = &dev->traj;
        uint64_t rel = now_us - dev->traj_start_us;
        const dgb_traj_point_t *last = &t->points[t->num_points - 1u];
        if (rel >= last->t_offset_us) {
            memcpy(goal, last->positions, sizeof dev->goal);
            memcpy(dev->goal, last->positions, sizeof dev->goal);
            *remaining_s = 0.0f;
            return;
        }
        for (k = 0; k < t->num_points; ++k) {
            if (rel < t->points[k].t_offset_us) {
                break;
            }
        }
        if (k == 0u) {
            /* Before the first point: head for it, arriving on time. */
            memcpy(goal, t->points[0].positions, sizeof dev->goal);
            *remaining_s = (float)(t->points[0].t_offset_us - rel) * 1e-6f;
            return;
        }
        {
            const dgb_traj_point_t *a = &t->points[k - 1u];
            const dgb_traj_point_t *b = &t->points[k];
            float u = (float)(rel - a->t_offset_us) / (float)(b->t_offset_us - a->t_offset_us);
            for (i = 0; i < DGB_NUM_JOINTS; ++i) {
                goal[i] = a->positions[i] + u * (b->positions[i] - a->positions[i]);
            }
            *remaining_s = 0.0f;
        }
    }
}

static void run_watchdog(dgb_device_t *dev, uint64_t now_us)
{
    if (dev->mode != DGB_MODE_ARMED && dev->mode != DGB_MODE_HOLD) {
        return;
    }
    if (now_us - dev->last_host_frame_us > dev->cfg.safe_off_timeout_us &&
        now_us - dev->last_motion_cmd_us > dev->cfg.safe_off_timeout_us) {
        dev->mode = DGB_MODE_SAFE_OFF;
        dev->fault_flags |= DGB_FAULT_WATCHDOG_SAFE_OFF;
        dev->traj_active = false;
        return;
    }
    if (dev->mode == DGB_MODE_ARMED && !dev->traj_active &&
        now_us - dev->last_motion_cmd_us > dev->cfg.hold_timeout_us) {
        dev->mode = DGB_MODE_HOLD;
    }
    if (dev->mode == DGB_MODE_ARMED && dev->traj_active) {
        const dgb_trajectory_t *t = &dev->traj;
        uint64_t end = dev->traj_start_us + t->points[t->num_points - 1u].t_offset_us;
        if (now_us > end + dev->cfg.hold_timeout_us) {
            dev->mode = DGB_MODE_HOLD;
            dev->traj_active = false;
        }
    }
}

/* Largest speed toward a point `dist` ahead from which braking at `amax` in whole ticks of
 * `dt` (this tick moves at v, later ones at v - k*amax*dt) stops without passing it.
 * The exact discrete sum is at most v^2/(2a) + v*dt/2 + a*dt^2/8, so solve that for v. */
static float stop_speed(float dist, float amax, float dt)
{
    float half = 0.5f * amax * dt;
    float room = dist - 0.125f * amax * dt * dt;
    float v;
    if (!(room > 0.0f)) {
        return 0.0f;
    }
    v = -half + sqrtf(half * half + 2.0f * amax * room);
    return v > 0.0f ? v : 0.0f;
}

/* Clamp v into [lo, hi], noting in *limited when it had to. */
static float clamp_noted(float v, float lo, float hi, bool *limited)
{
    if (v > hi) {
        *limited = true;
        return hi;
    }
    if (v < lo) {
        *limited = true;
        return lo;
    }
    return v;
}

void dgb_device_tick(dgb_device_t *dev, uint64_t now_us, float dt_s)
{
    unsigned i;
    float goal[DGB_NUM_JOINTS];
    float remaining_s = 0.0f;
    bool limited = false;
    run_watchdog(dev, now_us);
    if (dt_s <= 0.0f) {
        return;
    }
    current_goal(dev, now_us, goal, &remaining_s);
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        const float vmax = dev->cfg.max_velocity[i];
        const float amax = dev->cfg.max_acceleration[i];
        float v = dev->setpoint_velocity[i];
        float v_des;
        if (dev->mode == DGB_MODE_ARMED) {
            float err = goal[i] - dev->setpoint[i];
            float horizon = remaining_s > dt_s ? remaining_s : dt_s;
            float v_goal = stop_speed(fabsf(err), amax, dt_s);
            v_des = err / horizon;
            if (v_des > v_goal) {
                v_des = v_goal;
            } else if (v_des < -v_goal) {
                v_des = -v_goal;
            }
        } else {
            v_des = 0.0f; /* hold, disarmed, safe-off, protective stop: decelerate to rest */
        }
        v_des = clamp_noted(v_des, -vmax, vmax, &limited);
        /* Brake for the position limits with the same whole-tick stopping rule, so the joint
         * never has to be stopped at the limit in one tick. */
        v_des = clamp_noted(v_des, -stop_speed(dev->setpoint[i] - dev->cfg.lower[i], amax, dt_s),
                            stop_speed(dev->cfg.upper[i] - dev->setpoint[i], amax, dt_s), &limited);
        v_des = clamp_noted(v_des, v - amax * dt_s, v + amax * dt_s, &limited);
        /* No snap to the goal: a goal too close to stop for is overshot only as far as the
         * acceleration limit forces, and the next ticks come back to it. */
        dev->setpoint[i] += v_des * dt_s;
        if (dev->setpoint[i] < dev->cfg.lower[i] || dev->setpoint[i] > dev->cfg.upper[i]) {
            /* Float rounding of the stopping rule: hold the position at the limit but keep the
             * (accel-limited) velocity, which the limit brake decays at amax next ticks; zeroing
             * it here would be a one-tick stop above the acceleration limit. */
            dev->setpoint[i] = clampf(dev->setpoint[i], dev->cfg.lower[i], dev->cfg.upper[i]);
        }
        dev->setpoint_velocity[i] = v_des;
    }
    dev->flags = (uint8_t)(limited ? (dev->flags | DGB_FLAG_LIMITED_VELOCITY)
                                   : (dev->flags & ~DGB_FLAG_LIMITED_VELOCITY));
}

void dgb_device_send_state(dgb_device_t *dev, uint64_t now_us, const float pos[DGB_NUM_JOINTS],
                           const float vel[DGB_NUM_JOINTS], const float eff[DGB_NUM_JOINTS])
{
    dgb_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = DGB_MSG_STATE;
    m.u.state.mcu_time_us = now_us - dev->boot_us;
    m.u.state.echo_host_time_us = dev->echo_host_time_us;
    m.u.state.last_applied_seq = dev->last_applied_seq;
    m.u.state.mode = (uint8_t)dev->mode;
    m.u.state.flags = (uint8_t)((dev->flags & ~(DGB_FLAG_HANDSHAKED | DGB_FLAG_TRAJECTORY)) |
                                (dev->handshaked ? DGB_FLAG_HANDSHAKED : 0u) |
                                (dev->traj_active ? DGB_FLAG_TRAJECTORY : 0u));
    m.u.state.fault_flags = dev->fault_flags;
    m.u.state.last_error = dev->last_error;
    m.u.state.rx_errors = dev->rx_errors;
    memcpy(m.u.state.positions, pos, sizeof m.u.state.positions);
    memcpy(m.u.state.velocities, vel, sizeof m.u.state.velocities);
    memcpy(m.u.state.efforts, eff, sizeof m.u.state.efforts);
    dev->state_due = false;
    send_msg(dev, &m);
}
