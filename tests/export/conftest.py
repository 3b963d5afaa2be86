from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.export import generate_signing_key


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return generate_signing_key()


@pytest.fixture(scope="session")
def other_key() -> ec.EllipticCurvePrivateKey:
    return generate_signing_key()
