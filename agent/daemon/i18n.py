"""Translations of the user-facing notification texts (gettext: en, ru, kk).

The catalogs are ``locale/<lang>/LC_MESSAGES/contact-agent.po`` inside this package. The
package build compiles each into the ``.mo`` beside it (``setup.py``, with Babel); at run
time only the compiled catalog is read, with the standard library's :mod:`gettext`.
Nothing is compiled or written at run time.
"""

from __future__ import annotations

import gettext
import logging
import os
from collections.abc import Mapping
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

DOMAIN = "contact-agent"
LANGUAGES = ("en", "ru", "kk")
LOCALE_DIR = Path(__file__).with_name("locale")


def choose_language(configured: str = "", environ: Mapping[str, str] | None = None) -> str:
    """``notify.language`` if set, else the first supported language of the locale."""
    if configured:
        return configured if configured in LANGUAGES else "en"
    env = os.environ if environ is None else environ
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        for part in value.split(":"):
            code = part.split("_")[0].split(".")[0].split("@")[0].lower()
            if code in LANGUAGES:
                return code
            if code and var != "LANGUAGE":
                return "en"  # a set but unsupported locale: English
    return "en"


def catalog_path(language: str) -> Path:
    """The compiled catalog of ``language`` (written by the package build)."""
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo"


def translations(language: str) -> gettext.NullTranslations:
    """The translations for ``language`` (English source strings for ``en``).

    A missing catalog (an install that skipped the build step) falls back to English
    with one warning: a notification in English beats none.
    """
    if language not in LANGUAGES or language == "en":
        return gettext.NullTranslations()
    try:
        with catalog_path(language).open("rb") as catalog:
            return gettext.GNUTranslations(catalog)
    except OSError as exc:
        _LOGGER.warning(
            "no compiled %s catalog (%s): notifications in English; reinstall the package",
            language,
            exc.strerror,
        )
        return gettext.NullTranslations()
