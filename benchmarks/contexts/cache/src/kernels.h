/* The kernels of the cache benchmark: one template, instantiated many times with
 * different constants (an X-macro), so that the compile is CPU-bound the way a real
 * project's is: loops gcc vectorises and unrolls, a switch it turns into a jump
 * table, constant folding across inlined helpers. Each translation unit kern_*.c
 * instantiates KERNELS_PER_UNIT of them. */
#ifndef KERNELS_H
#define KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifndef SEED
#define SEED 0 /* the benchmark passes a fresh one per cold run (ARG SEED) */
#endif

#define KERNELS_PER_UNIT 32
#define UNITS 4

typedef uint64_t (*kernel_fn)(const uint32_t *restrict in, uint32_t *restrict out, size_t n);

extern const kernel_fn kernels_a[KERNELS_PER_UNIT], kernels_b[KERNELS_PER_UNIT],
    kernels_c[KERNELS_PER_UNIT], kernels_d[KERNELS_PER_UNIT];

static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static inline uint32_t mix32(uint32_t x, uint32_t k) {
    x ^= x >> 16;
    x *= 0x7feb352du ^ k;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* A 4x4 matrix of 32-bit words multiplied by a constant one, fully unrolled. */
static inline void mat4(uint32_t m[16], uint32_t k) {
    uint32_t r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            uint32_t s = 0;
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) s += m[i * 4 + t] * (k + (uint32_t)(t * 4 + j) * 0x9e3779b9u);
            r[i * 4 + j] = rotl32(s, (i + j) % 31 + 1);
        }
    }
    for (int i = 0; i < 16; i++) m[i] = r[i];
}

/* A tiny stack machine: a constant program, run over each block of the input. */
static inline uint32_t vm(const uint32_t *block, uint32_t k) {
    static const uint8_t program[] = {1, 4, 2, 7, 3, 5, 0, 6, 9, 8, 11, 10, 13, 12, 15, 14,
                                      2, 3, 1, 9, 7, 5, 4, 11, 6, 13, 8, 15, 10, 0, 12, 14};
    uint32_t a = k, b = ~k, c = k * 3u;
    for (size_t pc = 0; pc < sizeof program; pc++) {
        uint32_t v = block[pc % 16];
        switch (program[pc]) {
        case 0: a += v; break;
        case 1: b ^= rotl32(v, 7); break;
        case 2: c = c * 33u + v; break;
        case 3: a = mix32(a ^ b, k); break;
        case 4: b += c >> 3; break;
        case 5: c ^= a << 5; break;
        case 6: a = rotl32(a, 13) + c; break;
        case 7: b = mix32(b, v); break;
        case 8: c -= a ^ v; break;
        case 9: a ^= b * 0x2545f491u; break;
        case 10: b = (b >> 11) | (c << 21); break;
        case 11: c += mix32(v, a); break;
        case 12: a -= rotl32(c, 3); break;
        case 13: b ^= a + v; break;
        case 14: c = rotl32(c ^ b, 17); break;
        default: a += b + c + v; break;
        }
    }
    return a ^ b ^ c;
}

#define KERNEL(ID)                                                                        \
    enum { k_##ID = __COUNTER__ };                                                        \
    static uint64_t kernel_##ID(const uint32_t *restrict in, uint32_t *restrict out,     \
                                size_t n) {                                               \
        const uint32_t k = 0x9e3779b1u * (uint32_t)(k_##ID + 1) ^ (uint32_t)(SEED);       \
        uint64_t acc = k;                                                                 \
        for (size_t i = 0; i < n; i++) out[i] = mix32(in[i] + (uint32_t)i, k);            \
        uint32_t m[16];                                                                   \
        for (int i = 0; i < 16; i++) m[i] = out[i % n] ^ (uint32_t)i;                     \
        for (size_t i = 0; i + 16 <= n; i += 16) {                                        \
            mat4(m, k + (uint32_t)i);                                                     \
            uint32_t v = vm(out + i, m[i / 16 % 16]);                                     \
            out[i] ^= v;                                                                  \
            acc = acc * 0x100000001b3ull ^ v;                                             \
        }                                                                                 \
        return acc ^ m[(size_t)k % 16];                                                   \
    }

#define ADDRESS(ID) kernel_##ID,

#define R8(M, p) M(p##0) M(p##1) M(p##2) M(p##3) M(p##4) M(p##5) M(p##6) M(p##7)
#define R32(M, p) R8(M, p##0) R8(M, p##1) R8(M, p##2) R8(M, p##3)

/* The body of one translation unit: its kernels and their table. */
#define UNIT(name)     \
    R32(KERNEL, name)  \
    const kernel_fn kernels_##name[KERNELS_PER_UNIT] = {R32(ADDRESS, name)};

#endif
