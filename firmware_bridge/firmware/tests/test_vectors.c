/*
 * Checks the C codec against every checked-in test vector (firmware_bridge/vectors/ *.vec files):
 * the wire bytes are fed to a fresh framer, each event must equal the vector's next `expect:`
 * line, and every decoded frame must re-encode to exactly the bytes it came from.
 * Usage: dgb_vector_tests DIR
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dgb_format.h"
#include "dgb_framer.h"

#define MAX_WIRE_BYTES 70000u
#define MAX_EXPECT 16u

typedef struct {
    char name[128];
    uint8_t wire[MAX_WIRE_BYTES];
    size_t wire_len;
    char expect[MAX_EXPECT][4096];
    unsigned n_expect;
} vector_t;

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n > 0u && (s[n - 1u] == '\n' || s[n - 1u] == '\r' || s[n - 1u] == ' ')) {
        s[--n] = '\0';
    }
}

static bool append_hex(vector_t *v, const char *s)
{
    while (*s != '\0') {
        int hi, lo;
        if (*s == ' ') {
            ++s;
            continue;
        }
        hi = hexval(s[0]);
        lo = s[1] != '\0' ? hexval(s[1]) : -1;
        if (hi < 0 || lo < 0 || v->wire_len >= MAX_WIRE_BYTES) {
            return false;
        }
        v->wire[v->wire_len++] = (uint8_t)((hi << 4) | lo);
        s += 2;
    }
    return true;
}

/* Returns the number of failures in this vector. */
static int check_vector(const vector_t *v)
{
    dgb_framer_t f;
    size_t i, frame_start = 0;
    unsigned k = 0;
    int failures = 0;
    char got[4096];
    dgb_framer_init(&f);
    for (i = 0; i < v->wire_len; ++i) {
        dgb_msg_t m;
        dgb_error_t e = DGB_OK;
        dgb_framer_event_t ev = dgb_framer_push(&f, v->wire[i], &m, &e);
        if (ev == DGB_FRAMER_NONE) {
            if (v->wire[i] == 0u) {
                frame_start = i + 1u;
            }
            continue;
        }
        if (ev == DGB_FRAMER_FRAME) {
            uint8_t re[DGB_MAX_WIRE];
            size_t rn = 0;
            dgb_error_t e2;
            char canon[4000];
            dgb_format_msg(&m, canon, sizeof canon);
            snprintf(got, sizeof got, "FRAME %s", canon);
            if (!dgb_encode(&m, re, sizeof re, &rn, &e2) || rn != i + 1u - frame_start ||
                memcmp(re, v->wire + frame_start, rn) != 0) {
                fprintf(stderr, "%s: frame at byte %zu does not re-encode to the same bytes\n", v->name, frame_start);
                failures++;
            }
        } else {
            snprintf(got, sizeof got, "ERROR %s", dgb_error_name(e));
        }
        if (v->wire[i] == 0u) {
            frame_start = i + 1u;
        }
        if (k >= v->n_expect || strcmp(got, v->expect[k]) != 0) {
            fprintf(stderr, "%s: event %u\n  expected: %s\n  got:      %s\n", v->name, k,
                    k < v->n_expect ? v->expect[k] : "(nothing)", got);
            failures++;
        }
        ++k;
    }
    if (k != v->n_expect) {
        fprintf(stderr, "%s: %u events, expected %u\n", v->name, k, v->n_expect);
        failures++;
    }
    return failures;
}

int main(int argc, char **argv)
{
    static vector_t v;
    static char line[200000];
    DIR *d;
    struct dirent *ent;
    int failures = 0;
    unsigned checked = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTOR_DIR\n", argv[0]);
        return 2;
    }
    d = opendir(argv[1]);
    if (d == NULL) {
        perror(argv[1]);
        return 2;
    }
    while ((ent = readdir(d)) != NULL) {
        char path[4096];
        FILE *fp;
        size_t nl = strlen(ent->d_name);
        bool in_vector = false;
        if (nl < 5u || strcmp(ent->d_name + nl - 4u, ".vec") != 0) {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", argv[1], ent->d_name);
        fp = fopen(path, "r");
        if (fp == NULL) {
            perror(path);
            return 2;
        }
        while (fgets(line, sizeof line, fp) != NULL) {
            chomp(line);
            if (strncmp(line, "name: ", 6) == 0) {
                memset(&v, 0, sizeof v);
                snprintf(v.name, sizeof v.name, "%.60s:%.60s", ent->d_name, line + 6);
                in_vector = true;
            } else if (in_vector && strncmp(line, "wire: ", 6) == 0) {
                if (!append_hex(&v, line + 6)) {
                    fprintf(stderr, "%s: bad hex\n", v.name);
                    failures++;
                }
            } else if (in_vector && strncmp(line, "expect: ", 8) == 0 && v.n_expect < MAX_EXPECT) {
                snprintf(v.expect[v.n_expect++], sizeof v.expect[0], "%.4000s", line + 8);
            } else if (in_vector && strcmp(line, "end") == 0) {
                failures += check_vector(&v);
                checked++;
                in_vector = false;
            }
        }
        fclose(fp);
    }
    closedir(d);
    printf("%u vectors checked, %d failures\n", checked, failures);
    return (failures == 0 && checked > 0u) ? 0 : 1;
}
