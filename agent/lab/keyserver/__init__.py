"""A local test key server: verification codes, certificates, publish, signed exports.

Not a production server: no TLS, in-memory codes, one process. It speaks the Google
verification-server and key-server protocols closely enough to test the
agent's real HTTP flow end to end, and serves the exports an agent downloads.
"""

from agent.lab.keyserver.server import LocalKeyServer, RecordedRequest

__all__ = ["LocalKeyServer", "RecordedRequest"]
