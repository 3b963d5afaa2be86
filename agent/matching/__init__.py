"""Matching diagnosis keys against observed RPIs: the rules, and the one search.

:mod:`.core` holds the GAEN rules (the +-2 h tolerance, candidates, their evaluation
into matched scans; :func:`.core.match_keys` is the whole matcher for a few keys).
:mod:`.kernel` is the search itself (which intervals can match, the crypto seam's batch
primitive, prefilter, exact check), the same code whoever runs it:
:func:`agent.matching.core.search_candidates` in one thread, or :mod:`.parallel` in threads
(native crypto backend, which releases the GIL) or worker processes (pure backend; each
~35 MB, at niceness 10). :mod:`.match` splits a cycle into the search over all keys with
only the observed RPIs, and the evaluation of the few keys with candidates. Keys arrive
as columns (:class:`agent.export.KeyArrays`), never as files. This package imports
nothing itself, so that a worker process (:mod:`.worker`) loads only the search.
"""
