/* agent._gaen: the compiled backend of agent.crypto's batch primitive.
 *
 * Built by the package build (setup.py, an optional extension: without a C compiler,
 * Python headers or OpenSSL headers the build skips it and agent.crypto uses its pure
 * backend, with the same results). Nothing here is compiled or loaded at run time
 * other than by the normal import of an installed module.
 *
 * rpis_into(teks, firsts, counts, out): for each row i, RPIK_i = HKDF-SHA256(TEK_i,
 * salt=None, info="EN-RPIK", 16) and the RPIs AES-128-ECB(RPIK_i, PaddedData_j) for
 * j = firsts[i] .. firsts[i] + counts[i] - 1, written one after another into out.
 * teks: 16 bytes per row; firsts, counts: native uint32 per row. The GIL is released
 * while it runs, so threads run it in parallel.
 *
 * rpis_match(teks, firsts, counts, bloom, shift, high, low, buckets, hits): the
 * candidate search's inner loop. The same RPIs, each checked while in the L1 cache
 * against the observed ones: first in bloom, a blocked Bloom filter of 2^(32-shift)
 * native uint64 words (see observed() below), then exactly in high/low, the observed
 * RPIs as little-endian uint64 halves sorted by (high, low), searched from buckets
 * (2^bits + 1 uint32: the first row whose high's top bits are each value, then the
 * number of rows; a bucket's rows are a cache line or two of high). The index of each
 * observed one, counted as rpis_into would place it in out, goes to hits (int64, room
 * for one per RPI); returns their number. Nothing is written for the others. Equal to
 * rpis_into followed by agent.matching.kernel's numpy probe and check (tested).
 *
 * RPIK uses precomputed SHA-256 midstates of the HMAC pads (salt=None is 32 zero bytes,
 * so the key XOR pad is just the pad): 6 block transforms per key instead of 8+. AES is
 * the CPU's AES instructions on x86-64 where it has them, else OpenSSL's EVP (one
 * context re-keyed per key). The module's import runs the spec's test vector on both
 * paths: it fails to import when EVP differs, and keeps to EVP when the other does.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Transform: midstates need the raw transform */
#include <Python.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#define RPI_LEN 16
#define TEMPLATE_BLOCKS 144

/* SHA-256 states: the initial one and the midstates after the HMAC pads of the salt
 * (32 zero bytes, so the key XOR pad is just the pad). A state is copied, then advanced
 * by whole 64-byte blocks with SHA256_Transform; only its h words are read. */
static SHA256_CTX iv, mid_in0, mid_out0;

/* The first ``words`` state words as big-endian bytes, each XORed with ``mask`` (a byte
 * repeated four times: the HMAC pad of a key, or 0). Word stores, no byte loops. */
static void put_be(unsigned char *out, const uint32_t *h, int words, uint32_t mask) {
    for (int i = 0; i < words; i++) {
        uint32_t v = __builtin_bswap32(h[i]) ^ mask;
        memcpy(out + 4 * i, &v, 4);
    }
}

/* The final block of a message whose first 64 bytes are already in the state. */
static void last_block(unsigned char block[64], const unsigned char *tail, int len) {
    memset(block, 0, 64);
    memcpy(block, tail, (size_t)len);
    block[len] = 0x80;
    unsigned bits = (unsigned)(64 + len) * 8;
    block[62] = (unsigned char)(bits >> 8);
    block[63] = (unsigned char)bits;
}

static void init_midstates(void) {
    unsigned char pad[64];
    SHA256_Init(&iv);
    memset(pad, 0x36, 64);
    mid_in0 = iv;
    SHA256_Transform(&mid_in0, pad);
    memset(pad, 0x5c, 64);
    mid_out0 = iv;
    SHA256_Transform(&mid_out0, pad);
}

/* One SHA-256 block compression for each of two states (h0..h7) and blocks, by
 * OpenSSL's transform, one after the other (the CPU path has its own, sha256_x2). */
typedef void (*sha256_pair)(uint32_t sa[8], const unsigned char *da, uint32_t sb[8],
                            const unsigned char *db);

static void openssl_x2(uint32_t sa[8], const unsigned char *da, uint32_t sb[8],
                       const unsigned char *db) {
    SHA256_CTX c = iv;
    memcpy(c.h, sa, 32);
    SHA256_Transform(&c, da);
    memcpy(sa, c.h, 32);
    memcpy(c.h, sb, 32);
    SHA256_Transform(&c, db);
    memcpy(sb, c.h, 32);
    explicit_bzero(&c, sizeof c);
}

/* PaddedData_j = "EN-RPI" || 0x00 x 6 || LE32(j): the constant part of count blocks, */
static void padded_prefix(unsigned char *out, uint32_t count) {
    for (uint32_t k = 0; k < count; k++) memcpy(out + RPI_LEN * k, "EN-RPI\0\0\0\0\0\0", 12);
}

/* ... and their interval numbers first .. first + count - 1 (word stores: a key whose
 * day differs from the last key's costs a few dozen nanoseconds, not a new template). */
static void padded_intervals(unsigned char *out, uint32_t first, uint32_t count) {
    for (uint32_t k = 0; k < count; k++) {
        uint32_t v = first + k;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap32(v);
#endif
        memcpy(out + RPI_LEN * k + 12, &v, 4);
    }
}

/* The x86 CPU's own instructions, where it has them (elsewhere, e.g. ARM on the
 * Raspberry Pi, OpenSSL runs):
 * - AES-128: the RPIs of one RPIK for count intervals from first. OpenSSL's EVP path
 *   spends ~190 ns a key re-keying its context through the provider layer; the key
 *   schedule here is ten instructions. The cipher is the same AES (FIPS-197).
 * - SHA-256: the RPIKs of two keys at once. One chain of the SHA instructions waits on
 *   its own latency (OpenSSL's transform does one block at a time); two independent
 *   chains keep the unit busy, so a pair costs about what one key did.
 * Both are checked against the spec's vectors at import (the module keeps to OpenSSL
 * when they differ) and against OpenSSL by the tests (_path). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_CPU_PATH 1

#define AESNI_TARGET __attribute__((target("aes,sse2")))
#define EXPAND(prev, rcon) expand_step(prev, _mm_aeskeygenassist_si128(prev, rcon))

AESNI_TARGET static inline __m128i expand_step(__m128i key, __m128i assist) {
    assist = _mm_shuffle_epi32(assist, 0xff);
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    return _mm_xor_si128(key, assist);
}

AESNI_TARGET static void aesni_rpis(const unsigned char rpik[16], uint32_t first, uint32_t count,
                                    unsigned char *out) {
    __m128i rk[11];
    rk[0] = _mm_loadu_si128((const __m128i *)rpik);
    rk[1] = EXPAND(rk[0], 0x01);
    rk[2] = EXPAND(rk[1], 0x02);
    rk[3] = EXPAND(rk[2], 0x04);
    rk[4] = EXPAND(rk[3], 0x08);
    rk[5] = EXPAND(rk[4], 0x10);
    rk[6] = EXPAND(rk[5], 0x20);
    rk[7] = EXPAND(rk[6], 0x40);
    rk[8] = EXPAND(rk[7], 0x80);
    rk[9] = EXPAND(rk[8], 0x1b);
    rk[10] = EXPAND(rk[9], 0x36);
    /* PaddedData_j: "EN-R", "PI\0\0", 0, LE32(j) as little-endian words */
    const int w0 = 'E' | 'N' << 8 | '-' << 16 | 'R' << 24, w1 = 'P' | 'I' << 8;
    uint32_t k = 0;
#define BLOCK(i) _mm_xor_si128(_mm_set_epi32((int)(first + k + i), 0, w1, w0), rk[0])
#define ROUND(f, key)                                                                      \
    b0 = f(b0, key), b1 = f(b1, key), b2 = f(b2, key), b3 = f(b3, key), b4 = f(b4, key),    \
    b5 = f(b5, key), b6 = f(b6, key), b7 = f(b7, key)
    for (; k + 8 <= count; k += 8) { /* eight blocks in flight: the AES unit's pipeline */
        __m128i b0 = BLOCK(0), b1 = BLOCK(1), b2 = BLOCK(2), b3 = BLOCK(3), b4 = BLOCK(4),
                b5 = BLOCK(5), b6 = BLOCK(6), b7 = BLOCK(7);
        for (int r = 1; r < 10; r++) ROUND(_mm_aesenc_si128, rk[r]);
        ROUND(_mm_aesenclast_si128, rk[10]);
        __m128i *to = (__m128i *)(out + RPI_LEN * k);
        _mm_storeu_si128(to, b0), _mm_storeu_si128(to + 1, b1), _mm_storeu_si128(to + 2, b2);
        _mm_storeu_si128(to + 3, b3), _mm_storeu_si128(to + 4, b4), _mm_storeu_si128(to + 5, b5);
        _mm_storeu_si128(to + 6, b6), _mm_storeu_si128(to + 7, b7);
    }
#undef ROUND
    for (; k < count; k++) {
        __m128i b = BLOCK(0);
        for (int r = 1; r < 10; r++) b = _mm_aesenc_si128(b, rk[r]);
        _mm_storeu_si128((__m128i *)(out + RPI_LEN * k), _mm_aesenclast_si128(b, rk[10]));
    }
#undef BLOCK
    for (int r = 0; r < 11; r++) rk[r] = _mm_setzero_si128();
    __asm__ __volatile__("" : : "m"(rk) : "memory"); /* the wipe is not optimised away */
}

#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

static const uint32_t sha256_k[64] __attribute__((aligned(16))) = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u
};

/* One SHA-256 block compression for each of two states (h0..h7) and blocks. */
SHANI_TARGET static void sha256_x2(uint32_t sa[8], const unsigned char *da, uint32_t sb[8],
                                   const unsigned char *db) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i a0, a1, b0, b1, ta, tb, wa[4], wb[4];
    /* h0..h7 -> the instructions' ABEF / CDGH halves */
    ta = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)sa), 0xB1);
    a1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(sa + 4)), 0x1B);
    a0 = _mm_alignr_epi8(ta, a1, 8);
    a1 = _mm_blend_epi16(a1, ta, 0xF0);
    tb = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)sb), 0xB1);
    b1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(sb + 4)), 0x1B);
    b0 = _mm_alignr_epi8(tb, b1, 8);
    b1 = _mm_blend_epi16(b1, tb, 0xF0);
    const __m128i a0_in = a0, a1_in = a1, b0_in = b0, b1_in = b1;
    for (int i = 0; i < 4; i++) {
        wa[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(da + 16 * i)), bswap);
        wb[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(db + 16 * i)), bswap);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) { /* four rounds a step; W in four rotating registers */
        const __m128i k = _mm_load_si128((const __m128i *)(sha256_k + 4 * i));
        __m128i ma = _mm_add_epi32(wa[i & 3], k), mb = _mm_add_epi32(wb[i & 3], k);
        a1 = _mm_sha256rnds2_epu32(a1, a0, ma);
        b1 = _mm_sha256rnds2_epu32(b1, b0, mb);
        a0 = _mm_sha256rnds2_epu32(a0, a1, _mm_shuffle_epi32(ma, 0x0E));
        b0 = _mm_sha256rnds2_epu32(b0, b1, _mm_shuffle_epi32(mb, 0x0E));
        if (i >= 3 && i <= 14) { /* the message schedule: W[4(i+1) ..] */
            __m128i na = _mm_add_epi32(wa[(i + 1) & 3], _mm_alignr_epi8(wa[i & 3], wa[(i - 1) & 3], 4));
            __m128i nb = _mm_add_epi32(wb[(i + 1) & 3], _mm_alignr_epi8(wb[i & 3], wb[(i - 1) & 3], 4));
            wa[(i + 1) & 3] = _mm_sha256msg2_epu32(na, wa[i & 3]);
            wb[(i + 1) & 3] = _mm_sha256msg2_epu32(nb, wb[i & 3]);
        }
        if (i >= 1 && i <= 12) {
            wa[(i - 1) & 3] = _mm_sha256msg1_epu32(wa[(i - 1) & 3], wa[i & 3]);
            wb[(i - 1) & 3] = _mm_sha256msg1_epu32(wb[(i - 1) & 3], wb[i & 3]);
        }
    }
    a0 = _mm_add_epi32(a0, a0_in), a1 = _mm_add_epi32(a1, a1_in);
    b0 = _mm_add_epi32(b0, b0_in), b1 = _mm_add_epi32(b1, b1_in);
    ta = _mm_shuffle_epi32(a0, 0x1B); /* back to h0..h7 */
    a1 = _mm_shuffle_epi32(a1, 0xB1);
    _mm_storeu_si128((__m128i *)sa, _mm_blend_epi16(ta, a1, 0xF0));
    _mm_storeu_si128((__m128i *)(sa + 4), _mm_alignr_epi8(a1, ta, 8));
    tb = _mm_shuffle_epi32(b0, 0x1B);
    b1 = _mm_shuffle_epi32(b1, 0xB1);
    _mm_storeu_si128((__m128i *)sb, _mm_blend_epi16(tb, b1, 0xF0));
    _mm_storeu_si128((__m128i *)(sb + 4), _mm_alignr_epi8(b1, tb, 8));
}

static int cpu_path_available(void) {
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("sha") &&
           __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3");
}
#else
#define HAVE_CPU_PATH 0
static void aesni_rpis(const unsigned char *rpik, uint32_t first, uint32_t count,
                       unsigned char *out) {
    (void)rpik, (void)first, (void)count, (void)out;
}
static void sha256_x2(uint32_t sa[8], const unsigned char *da, uint32_t sb[8],
                      const unsigned char *db) {
    (void)sa, (void)da, (void)sb, (void)db;
}
static int cpu_path_available(void) { return 0; }
#endif

static int use_cpu; /* set at import: the CPU has the AES and SHA instructions */

/* The RPIKs of two TEKs: extract PRK = HMAC(0^32, TEK), expand T1 = HMAC(PRK, info || 1),
 * 6 block transforms each, done in pairs by sha256 (openssl_x2, or sha256_x2 on the
 * CPU path). */
static void derive_rpik_x2(sha256_pair sha256, const unsigned char *tek_a,
                           const unsigned char *tek_b, unsigned char *rpik_a,
                           unsigned char *rpik_b) {
    unsigned char ba[64], bb[64], da[32], db[32];
    uint32_t pa[8], pb[8], ia[8], ib[8], oa[8], ob[8];
    last_block(ba, tek_a, 16);
    last_block(bb, tek_b, 16);
    memcpy(pa, mid_in0.h, 32);
    memcpy(pb, mid_in0.h, 32);
    sha256(pa, ba, pb, bb);
    put_be(da, pa, 8, 0);
    put_be(db, pb, 8, 0);
    last_block(ba, da, 32);
    last_block(bb, db, 32);
    memcpy(pa, mid_out0.h, 32);
    memcpy(pb, mid_out0.h, 32);
    sha256(pa, ba, pb, bb); /* the PRKs */
    memset(ba + 32, 0x36, 32);
    memset(bb + 32, 0x36, 32);
    put_be(ba, pa, 8, 0x36363636u);
    put_be(bb, pb, 8, 0x36363636u);
    memcpy(ia, iv.h, 32);
    memcpy(ib, iv.h, 32);
    sha256(ia, ba, ib, bb);
    memset(ba + 32, 0x5c, 32);
    memset(bb + 32, 0x5c, 32);
    put_be(ba, pa, 8, 0x5c5c5c5cu);
    put_be(bb, pb, 8, 0x5c5c5c5cu);
    memcpy(oa, iv.h, 32);
    memcpy(ob, iv.h, 32);
    sha256(oa, ba, ob, bb);
    last_block(ba, (const unsigned char *)"EN-RPIK\x01", 8);
    sha256(ia, ba, ib, ba);
    put_be(da, ia, 8, 0);
    put_be(db, ib, 8, 0);
    last_block(ba, da, 32);
    last_block(bb, db, 32);
    sha256(oa, ba, ob, bb);
    put_be(rpik_a, oa, 4, 0);
    put_be(rpik_b, ob, 4, 0);
    explicit_bzero(pa, sizeof pa); /* the PRKs */
    explicit_bzero(pb, sizeof pb);
}

/* The observed RPIs a search looks for: a blocked Bloom filter of them and the RPIs
 * themselves as two little-endian 64-bit halves, sorted by (high, low). */
typedef struct {
    const uint64_t *bloom;
    int shift; /* of the Bloom filter's word index */
    const uint64_t *high, *low;
    Py_ssize_t count;
    const uint32_t *buckets; /* first row of each value of high's top bits, and count */
    int bucket_shift;        /* 64 - those bits */
} observed_t;

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Whether the RPI at r is one of the observed. First the Bloom filter: its word is
 * picked by bytes 4-7, its three bits by bits 0-5, 6-11 and 12-17 of bytes 0-3 (as
 * agent.matching.kernel.bloom_masks); then a search of its bucket of the halves. */
static int observed(const observed_t *o, const unsigned char *r) {
    uint32_t v = le32(r);
    uint64_t word = o->bloom[le32(r + 4) >> o->shift];
    uint64_t mask = 1ull << (v & 63) | 1ull << (v >> 6 & 63) | 1ull << (v >> 12 & 63);
    if ((word & mask) != mask) return 0;
    uint64_t h = le64(r), l = le64(r + 8);
    uint64_t bucket = h >> o->bucket_shift;
    Py_ssize_t lo = o->buckets[bucket], hi = o->buckets[bucket + 1];
    if (hi > o->count) hi = o->count; /* memory-safe whatever the table holds */
    while (lo < hi) { /* the first row of the bucket whose high is >= h */
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (o->high[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < o->count && o->high[lo] == h; lo++)
        if (o->low[lo] == l) return 1;
    return 0;
}

/* All rows; 0 on success, -1 when libcrypto failed. With out, the RPIs are written
 * there one after another; without (match), each range's RPIs go to a buffer in the L1
 * cache and the index of each observed one (counted as if written one after another) to
 * hits, their number to *found. */
static int run(const unsigned char *teks, const uint32_t *firsts, const uint32_t *counts,
               Py_ssize_t n, unsigned char *out, const observed_t *match, int64_t *hits,
               int64_t *found) {
    static const unsigned char zero[16] = {0};
    unsigned char rpiks[32], tpl[RPI_LEN * TEMPLATE_BLOCKS], local[RPI_LEN * TEMPLATE_BLOCKS];
    int64_t tpl_first = -1, position = 0;
    int result = 0, cpu = use_cpu;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx || EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), NULL, zero, NULL) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return -1;
    }
    EVP_CIPHER_CTX_set_padding(ctx, 0);
    padded_prefix(tpl, TEMPLATE_BLOCKS);
    for (Py_ssize_t i = 0; i < n && result == 0; i++) {
        uint32_t first = firsts[i], left = counts[i];
        unsigned char *rpik = rpiks + 16 * (i & 1);
        if (!(i & 1)) /* the RPIKs of this key and the next (or itself again) */
            derive_rpik_x2(cpu ? sha256_x2 : openssl_x2, teks + 16 * i,
                           teks + 16 * (i + 1 < n ? i + 1 : i), rpiks, rpiks + 16);
        if (!left) continue;
        if (!cpu && EVP_EncryptInit_ex(ctx, NULL, NULL, rpik, NULL) != 1) {
            result = -1;
            break;
        }
        while (left) {
            uint32_t take = left < TEMPLATE_BLOCKS ? left : TEMPLATE_BLOCKS;
            unsigned char *into = out ? out : local;
            int outl = 0;
            if (cpu) {
                aesni_rpis(rpik, first, take, into);
            } else {
                if ((int64_t)first != tpl_first) { /* keys of one day share their first */
                    padded_intervals(tpl, first, TEMPLATE_BLOCKS);
                    tpl_first = first;
                }
                if (EVP_EncryptUpdate(ctx, into, &outl, tpl, (int)(RPI_LEN * take)) != 1 ||
                    outl != (int)(RPI_LEN * take)) {
                    result = -1;
                    break;
                }
            }
            if (match) {
                for (uint32_t k = 0; k < take; k++)
                    if (observed(match, into + RPI_LEN * k)) hits[(*found)++] = position + k;
            } else {
                out += RPI_LEN * take;
            }
            position += take;
            first += take;
            left -= take;
        }
    }
    explicit_bzero(rpiks, sizeof rpiks);
    EVP_CIPHER_CTX_free(ctx);
    return result;
}

/* The rows' sizes; -1 with a Python error when they disagree. */
static Py_ssize_t rows(const Py_buffer *teks, const Py_buffer *firsts, const Py_buffer *counts,
                       unsigned long long *blocks) {
    Py_ssize_t n = teks->len / 16;
    if (teks->len % 16 || firsts->len != 4 * n || counts->len != 4 * n) {
        PyErr_SetString(PyExc_ValueError, "teks: 16 bytes per row; firsts, counts: 4 per row");
        return -1;
    }
    const uint32_t *count = counts->buf;
    *blocks = 0;
    for (Py_ssize_t i = 0; i < n; i++) *blocks += count[i];
    return n;
}

/* The buffers of args[index[0..count-1]] (the last one writable) and the rows' sizes.
 * Returns how many buffers it holds (the caller releases them); *n < 0 with a Python
 * error when one could not be had or the rows disagree. */
static int acquire(PyObject *const *args, const int *index, int count, Py_buffer *b,
                   Py_ssize_t *n, unsigned long long *blocks) {
    int got = 0;
    *n = -1;
    for (; got < count; got++)
        if (PyObject_GetBuffer(args[index[got]], &b[got],
                               got == count - 1 ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
            return got;
    *n = rows(&b[0], &b[1], &b[2], blocks);
    return got;
}

static PyObject *rpis_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Py_buffer b[4];
    PyObject *result = NULL;
    int got = 0, failed = 0;
    unsigned long long blocks;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "rpis_into(teks, firsts, counts, out)");
        return NULL;
    }
    static const int index[4] = {0, 1, 2, 3};
    Py_ssize_t n;
    got = acquire(args, index, 4, b, &n, &blocks);
    if (n < 0) goto release;
    if ((unsigned long long)b[3].len < blocks * RPI_LEN) {
        PyErr_SetString(PyExc_ValueError, "out is smaller than 16 bytes per RPI");
        goto release;
    }
    Py_BEGIN_ALLOW_THREADS
    failed = run(b[0].buf, b[1].buf, b[2].buf, n, b[3].buf, NULL, NULL, NULL);
    Py_END_ALLOW_THREADS
    if (failed)
        PyErr_SetString(PyExc_RuntimeError, "libcrypto AES-128-ECB failed");
    else
        result = Py_NewRef(Py_None);
release:
    while (got--) PyBuffer_Release(&b[got]);
    return result;
}

static PyObject *rpis_match(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Py_buffer b[8]; /* teks, firsts, counts, bloom, high, low, buckets, hits */
    static const int index[8] = {0, 1, 2, 3, 5, 6, 7, 8};
    PyObject *result = NULL;
    int got = 0, failed = 0;
    unsigned long long blocks;
    int64_t found = 0;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "rpis_match(teks, firsts, counts, bloom, shift, "
                                         "high, low, buckets, hits)");
        return NULL;
    }
    int shift = (int)PyLong_AsLong(args[4]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t n;
    got = acquire(args, index, 8, b, &n, &blocks);
    if (n < 0) goto release;
    Py_ssize_t nb = b[6].len / 4 - 1; /* buckets: 2^bits + 1 uint32, 1 <= bits <= 32 */
    int bits = 0;
    while (bits < 33 && ((Py_ssize_t)1 << bits) < nb) bits++;
    if (shift < 0 || shift > 31 ||
        (unsigned long long)b[3].len < (8ull << (32 - shift)) || b[4].len % 8 ||
        b[5].len != b[4].len || b[6].len % 4 || bits < 1 || bits > 32 ||
        ((Py_ssize_t)1 << bits) != nb || (unsigned long long)b[7].len < blocks * 8) {
        PyErr_SetString(PyExc_ValueError,
                        "bloom: 2^(32-shift) uint64; high, low: 8 bytes per observed RPI; "
                        "buckets: 2^bits + 1 uint32; hits: 8 bytes per RPI");
        goto release;
    }
    observed_t o = {b[3].buf, shift, b[4].buf, b[5].buf, b[4].len / 8, b[6].buf, 64 - bits};
    Py_BEGIN_ALLOW_THREADS
    failed = run(b[0].buf, b[1].buf, b[2].buf, n, NULL, &o, b[7].buf, &found);
    Py_END_ALLOW_THREADS
    if (failed)
        PyErr_SetString(PyExc_RuntimeError, "libcrypto AES-128-ECB failed");
    else
        result = PyLong_FromLongLong(found);
release:
    while (got--) PyBuffer_Release(&b[got]);
    return result;
}

static PyObject *path(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "_path([name])");
        return NULL;
    }
    PyObject *previous = PyUnicode_FromString(use_cpu ? "cpu" : "openssl");
    if (nargs == 1 && previous) {
        const char *name = PyUnicode_AsUTF8(args[0]);
        if (!name || (strcmp(name, "openssl") && (strcmp(name, "cpu") || !cpu_path_available()))) {
            if (name)
                PyErr_SetString(PyExc_ValueError, "_path: openssl, or cpu where it has the instructions");
            Py_DECREF(previous);
            return NULL;
        }
        use_cpu = strcmp(name, "cpu") == 0;
    }
    return previous;
}

static PyMethodDef methods[] = {
    {"rpis_into", (PyCFunction)(void (*)(void))rpis_into, METH_FASTCALL,
     "rpis_into(teks, firsts, counts, out): the RPIs of each key's interval range."},
    {"rpis_match", (PyCFunction)(void (*)(void))rpis_match, METH_FASTCALL,
     "rpis_match(teks, firsts, counts, bloom, shift, high, low, buckets, hits) -> hits."},
    {"_path", (PyCFunction)(void (*)(void))path, METH_FASTCALL,
     "_path([name]) -> the path in use: cpu (the CPU's AES and SHA instructions) or "
     "openssl; for the tests: sets it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "agent._gaen", "Compiled GAEN RPI batch primitive.", -1, methods,
    NULL, NULL, NULL, NULL,
};

/* The spec's test vector: TEK 75c734c6..., its RPIK, and its RPIs at intervals
 * 2642976 (the first of its day) and 2642976 + 143 (the last), by the AES path given. */
static int self_test(int cpu) {
    static const unsigned char tek[16] = {0x75, 0xc7, 0x34, 0xc6, 0xdd, 0x1a, 0x78, 0x2d,
                                          0xe7, 0xa9, 0x65, 0xda, 0x5e, 0xb9, 0x31, 0x25};
    static const unsigned char rpik[16] = {0x18, 0x5a, 0xd9, 0x1d, 0xb6, 0x9e, 0xc7, 0xdd,
                                           0x04, 0x89, 0x60, 0xf1, 0xf3, 0xba, 0x61, 0x75};
    static const unsigned char first[16] = {0x8b, 0xe6, 0xcd, 0x37, 0x1c, 0x5c, 0x89, 0x16,
                                            0x04, 0xbf, 0xbe, 0x49, 0xdf, 0x84, 0x50, 0x96};
    static const unsigned char last[16] = {0xf4, 0x31, 0xb6, 0x2e, 0xcf, 0x44, 0x31, 0x02,
                                           0xce, 0x4e, 0xd0, 0x40, 0x7d, 0xe5, 0x4b, 0xd4};
    static const uint32_t interval = 2642976, count = TEMPLATE_BLOCKS;
    unsigned char got[32], out[RPI_LEN * TEMPLATE_BLOCKS];
    derive_rpik_x2(openssl_x2, tek, tek, got, got + 16);
    if (memcmp(got, rpik, 16) != 0 || memcmp(got + 16, rpik, 16) != 0) return -1;
    /* alone, then second of a pair (the CPU path derives two RPIKs at once) */
    static const uint32_t intervals[2] = {interval, interval}, counts[2] = {0, count};
    unsigned char pair[32];
    memset(pair, 0xa5, 16);
    memcpy(pair + 16, tek, 16);
    int saved = use_cpu, failed = 0;
    use_cpu = cpu;
    for (int alone = 1; alone >= 0 && !failed; alone--) {
        memset(out, 0, sizeof out);
        failed = alone ? run(tek, &interval, &count, 1, out, NULL, NULL, NULL)
                       : run(pair, intervals, counts, 2, out, NULL, NULL, NULL);
        failed = failed || memcmp(out, first, 16) || memcmp(out + RPI_LEN * 143, last, 16);
    }
    use_cpu = saved;
    return failed ? -1 : 0;
}

PyMODINIT_FUNC PyInit__gaen(void) {
    init_midstates();
    if (self_test(0) != 0) {
        PyErr_SetString(PyExc_ImportError, "agent._gaen failed the spec's test vector");
        return NULL;
    }
    use_cpu = HAVE_CPU_PATH && cpu_path_available() && self_test(1) == 0;
    return PyModule_Create(&module);
}
