"""The fast candidate finder (performance.md, designs 4-6, 8-10): same answers, many keys.

It finds exactly the (key, interval offset) pairs of :func:`agent.matching.reference_candidates`
and hands them to the shared evaluation, so the two matchers cannot disagree about what a
match is. Speed comes from:

- keys as flat arrays (:class:`KeyArrays`, 25 bytes per key), no object per key;
- the native kernel of :mod:`agent.native` when a C compiler and libcrypto exist
  (HKDF midstates, one re-keyed EVP context, bitmap + hash probe in C; about 1 us per
  key), run in threads since it releases the GIL; else the Python kernel below:
- RPIK by HKDF-SHA256 with precomputed SHA-256 midstates (``hashlib``), 4 hashes per key;
- all 144 RPIs of a key in one AES-128-ECB call over a cached 2304-byte PaddedData
  template, written into a chunk buffer: through one re-keyed OpenSSL context by
  ``ctypes`` when the system libcrypto loads and passes a self-test (design 6), else
  through the public ``cryptography`` API (design 4);
- a numpy prefilter per chunk of 1024 keys (a bit table on each RPI's first 32 bits),
  confirmed exactly against the observed RPIs sorted as 64-bit halves;
- chunks of 64k keys spread over worker processes (design 9), at niceness 10.

:func:`candidate_finder` picks the kernel (``$CONTACT_AGENT_AES_BACKEND``:
``native``, ``ctypes``, ``public``, ``auto``).

Modules: :mod:`.keys` (keys as flat arrays from verified exports), :mod:`.kernel` (the
Python kernel), :mod:`.finder` (which kernel runs), :mod:`.parallel` (threads or worker
processes, and :func:`~agent.matching_fast.parallel.fast_match`), :mod:`.worker` (the
worker process). This package imports nothing itself, so that a worker process loads
only the kernel (numpy, hashlib, ctypes): ~25 MB instead of ~45 MB.
"""
