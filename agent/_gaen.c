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
 * rpis_probe(teks, firsts, counts, out, bitmap, shift, hits): the same, and then the
 * search's prefilter over each key's RPIs while they are still in the L1 cache: the
 * index (in out) of every RPI whose bit ``first LE uint32 >> shift`` is set in bitmap
 * (little-endian bit order, as numpy.packbits(..., bitorder="little")) is written to
 * hits (int64, one slot per RPI); returns their number. Equal to rpis_into followed by
 * agent.matching.kernel's numpy probe, which the tests check.
 *
 * RPIK uses precomputed SHA-256 midstates of the HMAC pads (salt=None is 32 zero bytes,
 * so the key XOR pad is just the pad): 6 block transforms per key instead of 8+. The
 * module's import runs the spec's test vector and fails to import when it differs.
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

static uint32_t iv[8], mid_in0[8], mid_out0[8];

static void transform(uint32_t state[8], const unsigned char block[64]) {
    SHA256_CTX c;
    SHA256_Init(&c);
    memcpy(c.h, state, 32);
    SHA256_Transform(&c, block);
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
    SHA256_CTX c;
    unsigned char pad[64];
    SHA256_Init(&c);
    memcpy(iv, c.h, 32);
    memset(pad, 0x36, 64);
    memcpy(mid_in0, iv, 32);
    transform(mid_in0, pad);
    memset(pad, 0x5c, 64);
    memcpy(mid_out0, iv, 32);
    transform(mid_out0, pad);
}

/* RPIK of one TEK: extract PRK = HMAC(0^32, TEK), expand T1 = HMAC(PRK, info || 1). */
static void derive_rpik(const unsigned char tek[16], unsigned char rpik[16]) {
    unsigned char block[64], digest[32], prk[32];
    uint32_t s[8], inner[8], outer[8];
    last_block(block, tek, 16);
    memcpy(s, mid_in0, 32);
    transform(s, block);
    put_be(digest, s, 8);
    last_block(block, digest, 32);
    memcpy(s, mid_out0, 32);
    transform(s, block);
    put_be(prk, s, 8);
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

/* PaddedData_j = "EN-RPI" || 0x00 x 6 || LE32(j) for count intervals from first. */
static void padded_blocks(uint32_t first, uint32_t count, unsigned char *out) {
    for (uint32_t k = 0; k < count; k++) {
        unsigned char *b = out + RPI_LEN * k;
        uint32_t v = first + k;
        memcpy(b, "EN-RPI\0\0\0\0\0\0", 12);
        b[12] = (unsigned char)v;
        b[13] = (unsigned char)(v >> 8);
        b[14] = (unsigned char)(v >> 16);
        b[15] = (unsigned char)(v >> 24);
    }
}

typedef struct {
    const unsigned char *bitmap; /* NULL: no probe */
    int shift;
    int64_t *hits;
    int64_t found;
} probe_t;

/* All rows; 0 on success, -1 when libcrypto failed. */
static int run(const unsigned char *teks, const uint32_t *firsts, const uint32_t *counts,
               Py_ssize_t n, unsigned char *out, probe_t *probe) {
    unsigned char *const base = out;
    static const unsigned char zero[16] = {0};
    unsigned char rpik[16], tpl[RPI_LEN * TEMPLATE_BLOCKS];
    int64_t tpl_first = -1;
    int result = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx || EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), NULL, zero, NULL) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return -1;
    }
    EVP_CIPHER_CTX_set_padding(ctx, 0);
    for (Py_ssize_t i = 0; i < n && result == 0; i++) {
        uint32_t first = firsts[i], left = counts[i];
        if (!left) continue;
        derive_rpik(teks + 16 * i, rpik);
        if (EVP_EncryptInit_ex(ctx, NULL, NULL, rpik, NULL) != 1) {
            result = -1;
            break;
        }
        while (left) {
            uint32_t take = left < TEMPLATE_BLOCKS ? left : TEMPLATE_BLOCKS;
            int outl = 0;
            if ((int64_t)first != tpl_first) { /* keys of one day share their first interval */
                padded_blocks(first, TEMPLATE_BLOCKS, tpl);
                tpl_first = first;
            }
            if (EVP_EncryptUpdate(ctx, out, &outl, tpl, (int)(RPI_LEN * take)) != 1 ||
                outl != (int)(RPI_LEN * take)) {
                result = -1;
                break;
            }
            if (probe && probe->bitmap) {
                for (uint32_t k = 0; k < take; k++) {
                    const unsigned char *r = out + RPI_LEN * k;
                    uint32_t v = (uint32_t)r[0] | (uint32_t)r[1] << 8 | (uint32_t)r[2] << 16 |
                                 (uint32_t)r[3] << 24;
                    v >>= probe->shift;
                    if (probe->bitmap[v >> 3] >> (v & 7) & 1)
                        probe->hits[probe->found++] = (int64_t)((r - base) / RPI_LEN);
                }
            }
            out += RPI_LEN * take;
            first += take;
            left -= take;
        }
    }
    memset(rpik, 0, sizeof rpik);
    EVP_CIPHER_CTX_free(ctx);
    return result;
}

/* Shared by rpis_into (4 arguments) and rpis_probe (7 arguments). */
static PyObject *call(PyObject *const *args, int with_probe) {
    Py_buffer teks, firsts, counts, out, bitmap = {0}, hits = {0};
    PyObject *result = NULL;
    probe_t probe = {NULL, 0, NULL, 0};
    int shift = 0;
    if (PyObject_GetBuffer(args[0], &teks, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &firsts, PyBUF_SIMPLE) < 0) goto release_teks;
    if (PyObject_GetBuffer(args[2], &counts, PyBUF_SIMPLE) < 0) goto release_firsts;
    if (PyObject_GetBuffer(args[3], &out, PyBUF_WRITABLE) < 0) goto release_counts;
    if (with_probe) {
        shift = (int)PyLong_AsLong(args[5]);
        if (PyErr_Occurred()) goto release_out;
        if (PyObject_GetBuffer(args[4], &bitmap, PyBUF_SIMPLE) < 0) goto release_out;
        if (PyObject_GetBuffer(args[6], &hits, PyBUF_WRITABLE) < 0) goto release_bitmap;
    }
    Py_ssize_t n = teks.len / 16;
    if (teks.len % 16 || firsts.len != 4 * n || counts.len != 4 * n) {
        PyErr_SetString(PyExc_ValueError, "teks: 16 bytes per row; firsts, counts: 4 per row");
        goto release_hits;
    }
    const uint32_t *count = counts.buf;
    unsigned long long blocks = 0;
    for (Py_ssize_t i = 0; i < n; i++) blocks += count[i];
    if ((unsigned long long)out.len < blocks * RPI_LEN) {
        PyErr_SetString(PyExc_ValueError, "out is smaller than 16 bytes per RPI");
        goto release_hits;
    }
    if (with_probe) {
        if (shift < 0 || shift > 31 || (unsigned long long)bitmap.len * 8 < (1ull << (32 - shift)) ||
            (unsigned long long)hits.len < blocks * 8) {
            PyErr_SetString(PyExc_ValueError, "bitmap: 2^(32-shift) bits; hits: 8 bytes per RPI");
            goto release_hits;
        }
        probe.bitmap = bitmap.buf;
        probe.shift = shift;
        probe.hits = hits.buf;
    }
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = run(teks.buf, firsts.buf, count, n, out.buf, &probe);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_SetString(PyExc_RuntimeError, "libcrypto AES-128-ECB failed");
        goto release_hits;
    }
    if (with_probe) {
        result = PyLong_FromLongLong(probe.found);
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
release_hits:
    if (with_probe && hits.obj) PyBuffer_Release(&hits);
release_bitmap:
    if (with_probe && bitmap.obj) PyBuffer_Release(&bitmap);
release_out:
    PyBuffer_Release(&out);
release_counts:
    PyBuffer_Release(&counts);
release_firsts:
    PyBuffer_Release(&firsts);
release_teks:
    PyBuffer_Release(&teks);
    return result;
}

static PyObject *rpis_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "rpis_into(teks, firsts, counts, out)");
        return NULL;
    }
    return call(args, 0);
}

static PyObject *rpis_probe(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "rpis_probe(teks, firsts, counts, out, bitmap, shift, hits)");
        return NULL;
    }
    return call(args, 1);
}

static PyMethodDef methods[] = {
    {"rpis_into", (PyCFunction)(void (*)(void))rpis_into, METH_FASTCALL,
     "rpis_into(teks, firsts, counts, out): the RPIs of each key's interval range."},
    {"rpis_probe", (PyCFunction)(void (*)(void))rpis_probe, METH_FASTCALL,
     "rpis_probe(teks, firsts, counts, out, bitmap, shift, hits) -> number of hits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "agent._gaen", "Compiled GAEN RPI batch primitive.", -1, methods,
    NULL, NULL, NULL, NULL,
};

/* The spec's test vector: TEK 75c734c6..., its RPI at interval 2642976. */
static int self_test(void) {
    static const unsigned char tek[16] = {0x75, 0xc7, 0x34, 0xc6, 0xdd, 0x1a, 0x78, 0x2d,
                                          0xe7, 0xa9, 0x65, 0xda, 0x5e, 0xb9, 0x31, 0x25};
    static const unsigned char rpik[16] = {0x18, 0x5a, 0xd9, 0x1d, 0xb6, 0x9e, 0xc7, 0xdd,
                                           0x04, 0x89, 0x60, 0xf1, 0xf3, 0xba, 0x61, 0x75};
    unsigned char got[16];
    derive_rpik(tek, got);
    return memcmp(got, rpik, 16) == 0 ? 0 : -1;
}

PyMODINIT_FUNC PyInit__gaen(void) {
    init_midstates();
    if (self_test() != 0) {
        PyErr_SetString(PyExc_ImportError, "agent._gaen failed the spec's RPIK test vector");
        return NULL;
    }
    return PyModule_Create(&module);
}
