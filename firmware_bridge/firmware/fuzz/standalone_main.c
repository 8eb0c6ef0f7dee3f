/*
 * Runs the fuzz target without libFuzzer (gcc builds, ctest): every file given on the command line
 * (or in a directory) is replayed, then N pseudo-random and mutated inputs derived from them.
 * Usage: dgb_fuzz_replay [--random N] FILE_OR_DIR...
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 70000u
#define MAX_SEEDS 256u

static uint8_t g_seeds[MAX_SEEDS][1024];
static size_t g_seed_len[MAX_SEEDS];
static unsigned g_n_seeds = 0;

static void run_file(const char *path)
{
    static uint8_t buf[FUZZ_MAX_INPUT];
    FILE *f = fopen(path, "rb");
    size_t n;
    if (f == NULL) {
        return;
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    if (g_n_seeds < MAX_SEEDS && n <= sizeof g_seeds[0]) {
        memcpy(g_seeds[g_n_seeds], buf, n);
        g_seed_len[g_n_seeds++] = n;
    }
}

static void run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "dgb_fuzz_replay: cannot stat %s\n", path);
        exit(2);
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            char p[4096];
            if (e->d_name[0] == '.') {
                continue;
            }
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            run_file(p);
        }
        if (d != NULL) {
            closedir(d);
        }
    } else {
        run_file(path);
    }
}

int main(int argc, char **argv)
{
    static uint8_t buf[FUZZ_MAX_INPUT];
    unsigned long n_random = 0, k;
    uint32_t rng = 2463534242u;
    int i;
    for (i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--random") == 0 && i + 1 < argc) {
            n_random = strtoul(argv[++i], NULL, 10);
        } else {
            run_path(argv[i]);
        }
    }
    for (k = 0; k < n_random; ++k) {
        size_t n, j;
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        if (g_n_seeds > 0u && (k % 2u) == 0u) {
            /* mutate a seed: flip, insert delimiters, truncate */
            unsigned s = rng % g_n_seeds;
            n = g_seed_len[s];
            memcpy(buf, g_seeds[s], n);
            for (j = 0; j < 1u + (rng >> 8) % 4u && n > 0u; ++j) {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                buf[rng % n] ^= (uint8_t)(1u << ((rng >> 16) % 8u));
            }
            if ((rng >> 20) % 4u == 0u && n > 0u) {
                n = (rng >> 4) % n;
            }
        } else {
            n = rng % 1200u;
            for (j = 0; j < n; ++j) {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                buf[j] = (uint8_t)((rng & 0x1Fu) == 0u ? 0u : rng >> 24);
            }
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("dgb_fuzz_replay: %u corpus files, %lu generated inputs, no invariant violated\n", g_n_seeds, n_random);
    return 0;
}
