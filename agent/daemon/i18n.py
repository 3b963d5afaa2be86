"""Translations of the user-facing notification texts (gettext: en, ru, kk).

The catalogs are ``locale/<lang>/LC_MESSAGES/contact-agent.po`` inside this package. A
compiled ``.mo`` next to a ``.po`` is used when it is at least as new; otherwise the
``.po`` is compiled in memory by the small msgfmt below, so a read-only install
(``ProtectSystem=strict``) and a fresh checkout both work. ``python -m agent.daemon.i18n``
writes the ``.mo`` files at build time.
"""

from __future__ import annotations

import ast
import gettext
import io
import os
import struct
from collections.abc import Mapping
from pathlib import Path

from agent.errors import MalformedInputError

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


def parse_po(text: str) -> dict[bytes, bytes]:
    """Parse a ``.po`` file into ``.mo`` keys and values (plurals joined by NUL).

    Fuzzy entries are skipped, as msgfmt does.
    """
    catalog: dict[bytes, bytes] = {}
    entry: dict[str, list[str]] = {}
    current: str | None = None
    fuzzy = False

    def flush() -> None:
        nonlocal entry, fuzzy, current
        if "msgid" in entry and not fuzzy:
            key = "".join(entry["msgid"])
            if "msgctxt" in entry:
                key = "".join(entry["msgctxt"]) + "\x04" + key
            if "msgid_plural" in entry:
                key += "\0" + "".join(entry["msgid_plural"])
                forms = sorted(k for k in entry if k.startswith("msgstr["))
                value = "\0".join("".join(entry[k]) for k in forms)
            else:
                value = "".join(entry.get("msgstr", []))
            if value.replace("\0", "") or not key:
                catalog[key.encode()] = value.encode()
        entry, current, fuzzy = {}, None, False

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                if "msgid" in entry:
                    flush()
                fuzzy = True
            continue
        if line.startswith('"'):
            if current is None:
                raise MalformedInputError(f"po line {number}: string outside an entry")
            entry[current].append(_unquote(line, number))
            continue
        keyword, _, rest = line.partition(" ")
        if keyword in ("msgid", "msgctxt") and "msgid" in entry:
            flush()
        if keyword not in ("msgid", "msgid_plural", "msgstr", "msgctxt") and not (
            keyword.startswith("msgstr[") and keyword.endswith("]")
        ):
            raise MalformedInputError(f"po line {number}: unknown keyword {keyword!r}")
        current = keyword
        entry[keyword] = [_unquote(rest.strip(), number)]
    flush()
    return catalog


def _unquote(text: str, number: int) -> str:
    if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
        raise MalformedInputError(f"po line {number}: expected a quoted string")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise MalformedInputError(f"po line {number}: bad string {text}") from None
    if not isinstance(value, str):
        raise MalformedInputError(f"po line {number}: bad string {text}")
    return value


def build_mo(catalog: Mapping[bytes, bytes]) -> bytes:
    """The GNU ``.mo`` format: header, two sorted string tables, then the strings."""
    keys = sorted(catalog)
    count = len(keys)
    originals_at = 7 * 4
    translations_at = originals_at + count * 8
    data_at = translations_at + count * 8
    blob = bytearray()
    originals: list[tuple[int, int]] = []
    translations: list[tuple[int, int]] = []
    for table, strings in ((originals, keys), (translations, [catalog[k] for k in keys])):
        for value in strings:
            table.append((len(value), data_at + len(blob)))
            blob += value + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, count, originals_at, translations_at, 0, data_at)
    tables = b"".join(struct.pack("<2I", n, off) for n, off in originals + translations)
    return header + tables + bytes(blob)


def _catalog_paths(language: str) -> tuple[Path, Path]:
    base = LOCALE_DIR / language / "LC_MESSAGES" / DOMAIN
    return base.with_suffix(".po"), base.with_suffix(".mo")


def translations(language: str) -> gettext.NullTranslations:
    """The translations for ``language`` (English source strings for ``en``)."""
    if language not in LANGUAGES or language == "en":
        return gettext.NullTranslations()
    po, mo = _catalog_paths(language)
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        data = mo.read_bytes()
    else:
        data = build_mo(parse_po(po.read_text(encoding="utf-8")))
    return gettext.GNUTranslations(io.BytesIO(data))


def compile_all() -> list[Path]:
    """Write every ``.mo`` from its ``.po`` (run at build or package time)."""
    written = []
    for language in LANGUAGES:
        po, mo = _catalog_paths(language)
        if po.exists():
            mo.write_bytes(build_mo(parse_po(po.read_text(encoding="utf-8"))))
            written.append(mo)
    return written


if __name__ == "__main__":  # pragma: no cover - build helper
    for path in compile_all():
        print(path)  # noqa: T201
