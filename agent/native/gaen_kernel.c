/* contact-agent native matcher kernel (docs/performance.md, design 8).
 *
 * For each diagnosis key: RPIK = HKDF-SHA256(TEK, salt=None, "EN-RPIK", 16) from
 * precomputed SHA-256 midstates (6 block transforms), the 144 RPIs of its day by one
 * AES-128-ECB call through a single re-keyed EVP context, and every RPI probed in a
 * bitmap on its first 32 bits, then confirmed in an open-addressing table of the
 * observed RPIs by a full 16-byte comparison. Output: (key index, interval offset).
 *
 * No OpenSSL headers are needed: libcrypto is opened with dlopen() and the few
 * functions used are declared here (SHA256_Transform is a deprecated but exported
 * OpenSSL 1.1/3.x symbol). The Python loader checks the results against the spec's
 * test vector before using this code, and the tests check it against the reference.
 *
 * Thread safety: gaen_init once; then gaen_find may run in several threads at once
 * (each call has its own EVP context; tables are read-only after creation).
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RPI_LEN 16
#define PERIOD 144
#define BLOCKS_BYTES (RPI_LEN * PERIOD)

/* --- libcrypto, resolved at run time ------------------------------------------------- */

typedef struct {
    uint32_t h[8];
    uint32_t nl, nh;
    uint32_t data[16];
    unsigned int num, md_len;
} sha256_ctx; /* the layout of OpenSSL's SHA256_CTX (unchanged since 0.9.8) */

static int (*p_sha256_init)(sha256_ctx *);
static void (*p_sha256_transform)(sha256_ctx *, const unsigned char *);
static void *(*p_ctx_new)(void);
static void (*p_ctx_free)(void *);
static const void *(*p_aes_128_ecb)(void);
static int (*p_encrypt_init)(void *, const void *, void *, const unsigned char *,
                             const unsigned char *);
static int (*p_encrypt_update)(void *, unsigned char *, int *, const unsigned char *, int);
static int (*p_set_padding)(void *, int);

static uint32_t iv[8], mid_in0[8], mid_out0[8];

#define RESOLVE(var, name)                                                                 \
    do {                                                                                   \
        *(void **)(&var) = dlsym(lib, name);                                               \
        if (!var) return -2;                                                               \
    } while (0)

static void transform(uint32_t state[8], const unsigned char block[64]) {
    sha256_ctx c;
    memcpy(c.h, state, 32);
    p_sha256_transform(&c, block);
    memcpy(state, c.h, 32);
}

static void put_be(unsigned char *out, const uint32_t *h, int words) {
    for (int i = 0; i < words; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

/* Open libcrypto and precompute the HMAC midstates. 0 on success. */
int gaen_init(const char *libcrypto) {
    void *lib = dlopen(libcrypto, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return -1;
    RESOLVE(p_sha256_init, "SHA256_Init");
    RESOLVE(p_sha256_transform, "SHA256_Transform");
    RESOLVE(p_ctx_new, "EVP_CIPHER_CTX_new");
    RESOLVE(p_ctx_free, "EVP_CIPHER_CTX_free");
    RESOLVE(p_aes_128_ecb, "EVP_aes_128_ecb");
    RESOLVE(p_encrypt_init, "EVP_EncryptInit_ex");
    RESOLVE(p_encrypt_update, "EVP_EncryptUpdate");
    RESOLVE(p_set_padding, "EVP_CIPHER_CTX_set_padding");
    sha256_ctx c;
    if (p_sha256_init(&c) != 1) return -3;
    memcpy(iv, c.h, 32);
    unsigned char pad[64];
    memset(pad, 0x36, 64); /* the HMAC key is salt = 32 zero bytes: key ^ ipad = ipad */
    memcpy(mid_in0, iv, 32);
    transform(mid_in0, pad);
    memset(pad, 0x5c, 64);
    memcpy(mid_out0, iv, 32);
    transform(mid_out0, pad);
    return 0;
}

/* Final block of a message whose first 64 bytes are already in the state. */
static void last_block(unsigned char block[64], const unsigned char *tail, int len) {
    memset(block, 0, 64);
    memcpy(block, tail, (size_t)len);
    block[len] = 0x80;
    unsigned bits = (unsigned)(64 + len) * 8;
    block[62] = (unsigned char)(bits >> 8);
    block[63] = (unsigned char)bits;
}

/* RPIK of one TEK: 6 SHA-256 block transforms. */
static void derive_rpik(const unsigned char tek[16], unsigned char rpik[16]) {
    unsigned char block[64], digest[32], prk[32];
    uint32_t s[8], inner[8], outer[8];
    /* extract: PRK = HMAC(0^32, TEK) */
    last_block(block, tek, 16);
    memcpy(s, mid_in0, 32);
    transform(s, block);
    put_be(digest, s, 8);
    last_block(block, digest, 32);
    memcpy(s, mid_out0, 32);
    transform(s, block);
    put_be(prk, s, 8);
    /* expand: T1 = HMAC(PRK, "EN-RPIK" || 0x01), first 16 bytes */
    for (int i = 0; i < 64; i++) block[i] = (unsigned char)((i < 32 ? prk[i] : 0) ^ 0x36);
    memcpy(inner, iv, 32);
    transform(inner, block);
    for (int i = 0; i < 64; i++) block[i] = (unsigned char)((i < 32 ? prk[i] : 0) ^ 0x5c);
    memcpy(outer, iv, 32);
    transform(outer, block);
    last_block(block, (const unsigned char *)"EN-RPIK\x01", 8);
    transform(inner, block);
    put_be(digest, inner, 8);
    last_block(block, digest, 32);
    transform(outer, block);
    put_be(rpik, outer, 4);
    memset(prk, 0, sizeof prk);
}

/* PaddedData_j = "EN-RPI" || 0x00 x 6 || LE32(start + j), j = 0..143. */
static void padded_blocks(uint32_t start, unsigned char out[BLOCKS_BYTES]) {
    for (uint32_t j = 0; j < PERIOD; j++) {
        unsigned char *b = out + RPI_LEN * j;
        memcpy(b, "EN-RPI\0\0\0\0\0\0", 12);
        uint32_t v = start + j;
        b[12] = (unsigned char)v;
        b[13] = (unsigned char)(v >> 8);
        b[14] = (unsigned char)(v >> 16);
        b[15] = (unsigned char)(v >> 24);
    }
}

static void *new_ecb_context(void) {
    static const unsigned char zero[16] = {0};
    void *ctx = p_ctx_new();
    if (!ctx) return NULL;
    if (p_encrypt_init(ctx, p_aes_128_ecb(), NULL, zero, NULL) != 1) {
        p_ctx_free(ctx);
        return NULL;
    }
    p_set_padding(ctx, 0);
    return ctx;
}

/* RPIK, then the 144 RPIs of a key whose PaddedData is tpl. 0 on success. */
static int key_rpis(void *ctx, const unsigned char tek[16], const unsigned char *tpl,
                    unsigned char rpik[16], unsigned char out[BLOCKS_BYTES]) {
    int outl = 0;
    derive_rpik(tek, rpik);
    if (p_encrypt_init(ctx, NULL, NULL, rpik, NULL) != 1 ||
        p_encrypt_update(ctx, out, &outl, tpl, BLOCKS_BYTES) != 1 || outl != BLOCKS_BYTES)
        return -1;
    return 0;
}

/* --- the observed RPIs --------------------------------------------------------------- */

typedef struct {
    uint64_t *bitmap; /* 1 << bits bits, indexed by the top bits of the first LE u32 */
    int shift;
    int32_t *slots; /* open addressing on bytes 4..11; -1 = empty */
    uint64_t mask;
    unsigned char *rpis;
} table_t;

static inline uint32_t first_u32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t slot_of(const unsigned char *p, uint64_t mask) {
    uint64_t v;
    memcpy(&v, p + 4, 8);
    return (v * 0x9E3779B97F4A7C15ull >> 17) & mask;
}

void gaen_table_free(void *table) {
    table_t *t = table;
    if (!t) return;
    free(t->bitmap);
    free(t->slots);
    free(t->rpis);
    free(t);
}

/* A table of count distinct RPIs (16 bytes each) with a 2^bits-bit prefilter. */
void *gaen_table_new(const unsigned char *rpis, int64_t count, int bits) {
    if (count < 0 || count > INT32_MAX / 2 || bits < 6 || bits > 30) return NULL;
    table_t *t = calloc(1, sizeof(table_t));
    if (!t) return NULL;
    uint64_t size = 16;
    while (size < (uint64_t)count * 2) size <<= 1;
    t->bitmap = calloc(((uint64_t)1 << bits) / 64, 8);
    t->slots = malloc(size * sizeof(int32_t));
    t->rpis = malloc((size_t)(count ? count : 1) * RPI_LEN);
    if (!t->bitmap || !t->slots || !t->rpis) {
        gaen_table_free(t);
        return NULL;
    }
    memcpy(t->rpis, rpis, (size_t)count * RPI_LEN);
    memset(t->slots, 0xff, size * sizeof(int32_t));
    t->shift = 32 - bits;
    t->mask = size - 1;
    for (int64_t i = 0; i < count; i++) {
        const unsigned char *p = t->rpis + RPI_LEN * i;
        uint32_t b = first_u32(p) >> t->shift;
        t->bitmap[b >> 6] |= (uint64_t)1 << (b & 63);
        uint64_t s = slot_of(p, t->mask);
        while (t->slots[s] >= 0) s = (s + 1) & t->mask;
        t->slots[s] = (int32_t)i;
    }
    return t;
}

static inline int observed(const table_t *t, const unsigned char *rpi) {
    uint32_t b = first_u32(rpi) >> t->shift;
    if (!(t->bitmap[b >> 6] >> (b & 63) & 1)) return 0;
    for (uint64_t s = slot_of(rpi, t->mask);; s = (s + 1) & t->mask) {
        int32_t i = t->slots[s];
        if (i < 0) return 0;
        if (memcmp(t->rpis + RPI_LEN * (int64_t)i, rpi, RPI_LEN) == 0) return 1;
    }
}

/* --- the kernel ------------------------------------------------------------------------ */

/* Match keys [0, n) (16 bytes each, rolling starts in starts): writes (base + key index,
 * offset) pairs while at least 144 output slots are free; *done is the number of keys
 * finished. Returns the number of pairs written, or -1 when libcrypto failed. */
int64_t gaen_find(const void *table, const unsigned char *keys, const int32_t *starts, int64_t n,
                  int64_t base, int64_t *out_key, int32_t *out_offset, int64_t capacity,
                  int64_t *done) {
    const table_t *t = table;
    unsigned char rpik[16], buf[BLOCKS_BYTES], tpl[BLOCKS_BYTES];
    int64_t found = 0, k = 0;
    int64_t tpl_start = -1;
    void *ctx = new_ecb_context();
    *done = 0;
    if (!ctx) return -1;
    for (; k < n && capacity - found >= PERIOD; k++) {
        if (starts[k] != tpl_start) {
            tpl_start = starts[k];
            padded_blocks((uint32_t)tpl_start, tpl);
        }
        if (key_rpis(ctx, keys + 16 * k, tpl, rpik, buf) != 0) {
            p_ctx_free(ctx);
            return -1;
        }
        for (int j = 0; j < PERIOD; j++) {
            if (observed(t, buf + RPI_LEN * j)) {
                out_key[found] = base + k;
                out_offset[found] = j;
                found++;
            }
        }
    }
    p_ctx_free(ctx);
    memset(rpik, 0, sizeof rpik);
    memset(buf, 0, sizeof buf);
    *done = k;
    return found;
}

/* RPIK and the 144 RPIs of one key (the loader's self-test). 0 on success. */
int gaen_rpis(const unsigned char tek[16], int32_t start, unsigned char *rpik,
              unsigned char *rpis) {
    unsigned char tpl[BLOCKS_BYTES];
    void *ctx = new_ecb_context();
    if (!ctx) return -1;
    padded_blocks((uint32_t)start, tpl);
    int result = key_rpis(ctx, tek, tpl, rpik, rpis);
    p_ctx_free(ctx);
    return result;
}
