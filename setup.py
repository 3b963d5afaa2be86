"""The package build: pyproject.toml holds the metadata; this only adds the optional C
extension ``agent._gaen`` (agent/crypto.py's compiled backend).

``optional=True``: a machine without a C compiler, Python headers or OpenSSL headers
(Raspberry Pi OS Lite ships none; ``scripts/install.sh`` installs them) gets a warning
and the pure backend, with the same results. Nothing is compiled after installation.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "agent._gaen",
            sources=["agent/_gaen.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
