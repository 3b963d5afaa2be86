"""The package build: pyproject.toml holds the metadata; this adds two build steps.

- The optional C extension ``agent._gaen`` (agent/crypto.py's compiled backend).
  ``optional=True``: a machine without a C compiler, Python headers or OpenSSL headers
  (Raspberry Pi OS Lite ships none; ``scripts/install.sh`` installs them) gets a warning
  and the pure backend, with the same results.
- The notification catalogs: every ``agent/daemon/locale/*/LC_MESSAGES/*.po`` compiled
  into the ``.mo`` beside it with Babel (fuzzy entries left out, as GNU msgfmt does).

Nothing is compiled after installation.
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithCatalogs(build_py):
    """``build_py`` that first compiles the gettext catalogs, so they ship as package data
    (a wheel) or sit beside their sources (an editable install)."""

    def run(self) -> None:
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in sorted((HERE / "agent" / "daemon" / "locale").glob("*/LC_MESSAGES/*.po")):
            with po.open("rb") as source:
                catalog = read_po(source, locale=po.parent.parent.name)
            with po.with_suffix(".mo").open("wb") as target:
                write_mo(target, catalog)
        super().run()


setup(
    cmdclass={"build_py": BuildPyWithCatalogs},
    ext_modules=[
        Extension(
            "agent._gaen",
            sources=["agent/_gaen.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ],
)
