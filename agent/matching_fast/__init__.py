"""The candidate search for many keys: the one search, spread over cores.

:mod:`.kernel` is the search itself (which intervals can match, the crypto seam's batch
primitive, prefilter, exact check), the same code whoever runs it:
:func:`agent.matching.search_candidates` in one thread, or :mod:`.parallel` in threads
(native crypto backend, which releases the GIL) or worker processes (pure backend; each
~35 MB, at niceness 10). :mod:`.match` splits a cycle into the search over all keys with
only the observed RPIs, and the evaluation of the few keys with candidates;
:mod:`.keys` holds keys as flat arrays (about 25 bytes per key). This package imports
nothing itself, so that a worker process (:mod:`.worker`) loads only the search.
"""
