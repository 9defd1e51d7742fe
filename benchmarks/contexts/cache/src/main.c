/* Runs every kernel over a buffer, each one's output the next one's input, for a few
 * rounds, and prints a checksum per round: the "test" step of the cache benchmark. */
#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"

#define WORDS (1u << 14)

int main(int argc, char **argv) {
    unsigned rounds = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 8;
    const kernel_fn *units[UNITS] = {kernels_a, kernels_b, kernels_c, kernels_d};
    uint32_t *x = malloc(WORDS * sizeof *x), *y = malloc(WORDS * sizeof *y);
    if (!x || !y) return 1;
    for (uint32_t i = 0; i < WORDS; i++) x[i] = i * 2654435761u;
    printf("seed %llu, %d kernels, %u rounds\n", (unsigned long long)SEED, UNITS * KERNELS_PER_UNIT,
           rounds);
    for (unsigned r = 0; r < rounds; r++) {
        uint64_t sum = 0;
        for (int u = 0; u < UNITS; u++) {
            for (int k = 0; k < KERNELS_PER_UNIT; k++) {
                sum ^= units[u][k](x, y, WORDS) + (uint64_t)k;
                uint32_t *t = x;
                x = y;
                y = t;
            }
        }
        printf("round %u: %016llx\n", r, (unsigned long long)sum);
    }
    free(x);
    free(y);
    return 0;
}
