#include "dgb_format.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

typedef struct {
    char *out;
    size_t cap;
    size_t len;
    bool ok;
} sbuf_t;

static void sb_printf(sbuf_t *sb, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (!sb->ok) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(sb->out + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sb->cap - sb->len) {
        sb->ok = false;
        return;
    }
    sb->len += (size_t)n;
}

static void sb_float(sbuf_t *sb, float f)
{
    if (isnan(f)) {
        sb_printf(sb, "nan");
    } else {
        sb_printf(sb, "%.9g", (double)f);
    }
}

static void sb_joints(sbuf_t *sb, const char *name, const float *v)
{
    unsigned i;
    sb_printf(sb, " %s=[", name);
    for (i = 0; i < DGB_NUM_JOINTS; ++i) {
        if (i > 0u) {
            sb_printf(sb, ",");
        }
        sb_float(sb, v[i]);
    }
    sb_printf(sb, "]");
}

bool dgb_format_msg(const dgb_msg_t *m, char *out, size_t cap)
{
    sbuf_t sb;
    unsigned i;
    const char *name = dgb_msg_type_name(m->type);
    sb.out = out;
    sb.cap = cap;
    sb.len = 0;
    sb.ok = cap > 0u;
    if (sb.ok) {
        out[0] = '\0';
    }
    sb_printf(&sb, "%s seq=%lu session=0x%08lx", name != NULL ? name : "UNKNOWN", (unsigned long)m->seq,
              (unsigned long)m->session_id);
    switch (m->type) {
    case DGB_MSG_HELLO:
        sb_printf(&sb, " protocol_version=%u num_joints=%u schema_hash=0x%08lx host_nonce=0x%08lx",
                  (unsigned)m->u.hello.protocol_version, (unsigned)m->u.hello.num_joints,
                  (unsigned long)m->u.hello.schema_hash, (unsigned long)m->u.hello.host_nonce);
        break;
    case DGB_MSG_HELLO_ACK:
        sb_printf(&sb,
                  " protocol_version=%u num_joints=%u schema_hash=0x%08lx session_id=0x%08lx host_nonce=0x%08lx"
                  " firmware_version=0x%08lx result=%u max_traj_points=%u hold_timeout_us=%lu safe_off_timeout_us=%lu",
                  (unsigned)m->u.hello_ack.protocol_version, (unsigned)m->u.hello_ack.num_joints,
                  (unsigned long)m->u.hello_ack.schema_hash, (unsigned long)m->u.hello_ack.session_id,
                  (unsigned long)m->u.hello_ack.host_nonce, (unsigned long)m->u.hello_ack.firmware_version,
                  (unsigned)m->u.hello_ack.result, (unsigned)m->u.hello_ack.max_traj_points,
                  (unsigned long)m->u.hello_ack.hold_timeout_us, (unsigned long)m->u.hello_ack.safe_off_timeout_us);
        if (m->u.hello_ack.has_limits) {
            sb_joints(&sb, "lower", m->u.hello_ack.lower);
            sb_joints(&sb, "upper", m->u.hello_ack.upper);
            sb_joints(&sb, "max_velocity", m->u.hello_ack.max_velocity);
            sb_joints(&sb, "max_acceleration", m->u.hello_ack.max_acceleration);
        }
        break;
    case DGB_MSG_HEARTBEAT:
        sb_printf(&sb, " host_time_us=%llu", (unsigned long long)m->u.heartbeat.host_time_us);
        break;
    case DGB_MSG_TARGETS:
        sb_printf(&sb, " host_time_us=%llu reach_in_us=%lu", (unsigned long long)m->u.targets.host_time_us,
                  (unsigned long)m->u.targets.reach_in_us);
        sb_joints(&sb, "positions", m->u.targets.positions);
        break;
    case DGB_MSG_TRAJECTORY:
        sb_printf(&sb, " host_time_us=%llu num_points=%u", (unsigned long long)m->u.trajectory.host_time_us,
                  (unsigned)m->u.trajectory.num_points);
        for (i = 0; i < m->u.trajectory.num_points; ++i) {
            char key[32];
            sb_printf(&sb, " p%u.t_offset_us=%lu", i, (unsigned long)m->u.trajectory.points[i].t_offset_us);
            snprintf(key, sizeof key, "p%u.positions", i);
            sb_joints(&sb, key, m->u.trajectory.points[i].positions);
        }
        break;
    case DGB_MSG_STATE:
        sb_printf(&sb,
                  " mcu_time_us=%llu echo_host_time_us=%llu last_applied_seq=%lu mode=%u flags=0x%02x"
                  " fault_flags=0x%04x last_error=%u rx_errors=%u",
                  (unsigned long long)m->u.state.mcu_time_us, (unsigned long long)m->u.state.echo_host_time_us,
                  (unsigned long)m->u.state.last_applied_seq, (unsigned)m->u.state.mode, (unsigned)m->u.state.flags,
                  (unsigned)m->u.state.fault_flags, (unsigned)m->u.state.last_error, (unsigned)m->u.state.rx_errors);
        sb_joints(&sb, "positions", m->u.state.positions);
        sb_joints(&sb, "velocities", m->u.state.velocities);
        sb_joints(&sb, "efforts", m->u.state.efforts);
        break;
    case DGB_MSG_ACK:
        sb_printf(&sb, " acked_seq=%lu acked_type=0x%02x result=%u", (unsigned long)m->u.ack.acked_seq,
                  (unsigned)m->u.ack.acked_type, (unsigned)m->u.ack.result);
        break;
    case DGB_MSG_FAULT:
        sb_printf(&sb, " error=%u rejected_type=0x%02x rejected_seq=%lu", (unsigned)m->u.fault.error,
                  (unsigned)m->u.fault.rejected_type, (unsigned long)m->u.fault.rejected_seq);
        break;
    default:
        break;
    }
    return sb.ok;
}
