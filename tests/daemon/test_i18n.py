"""Catalogs, the small msgfmt, and the language choice."""

from __future__ import annotations

import gettext
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.daemon import i18n
from agent.daemon.notify import Notice, render
from agent.errors import MalformedInputError

DAY = 1_700_006_400  # 2023-11-15 00:00 UTC


@pytest.mark.parametrize(
    ("language", "minutes", "expected"),
    [
        ("en", 1, "for about 1 minute."),
        ("en", 25, "for about 25 minutes."),
        ("ru", 1, "примерно 1 минуту."),
        ("ru", 3, "примерно 3 минуты."),
        ("ru", 11, "примерно 11 минут."),
        ("ru", 21, "примерно 21 минуту."),
        ("kk", 25, "шамамен 25 минут болдыңыз."),
    ],
)
def test_plural_forms(language: str, minutes: int, expected: str) -> None:
    message = render(Notice(day=DAY, minutes=minutes, windows=1), language)
    assert expected in message.body
    assert "2023-11-15" in message.body


def test_titles_in_each_language() -> None:
    titles = {lang: render(Notice(DAY, 15, 1), lang).title for lang in i18n.LANGUAGES}
    assert titles == {
        "en": "Possible exposure",
        "ru": "Возможный контакт",
        "kk": "Ықтимал байланыс",
    }


def test_every_catalog_translates_every_message() -> None:
    english = i18n.parse_po(_po("en").read_text(encoding="utf-8"))
    for language in ("ru", "kk"):
        catalog = i18n.parse_po(_po(language).read_text(encoding="utf-8"))
        assert set(catalog) == set(english), language
        for key, value in catalog.items():
            if key:
                assert value and value != key, (language, key)


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU msgfmt not installed")
@pytest.mark.parametrize("language", ["ru", "kk"])
def test_own_msgfmt_agrees_with_gnu_msgfmt(language: str, tmp_path: Path) -> None:
    gnu_mo = tmp_path / "gnu.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(gnu_mo), str(_po(language))], check=True)
    gnu = gettext.GNUTranslations(io.BytesIO(gnu_mo.read_bytes()))
    ours = i18n.translations(language)
    english = i18n.parse_po(_po("en").read_text(encoding="utf-8"))
    for key in english:
        if not key:
            continue
        if b"\0" in key:
            singular, plural = key.decode().split("\0")
            for n in (1, 2, 5, 11, 21, 102):
                assert ours.ngettext(singular, plural, n) == gnu.ngettext(singular, plural, n)
        else:
            assert ours.gettext(key.decode()) == gnu.gettext(key.decode())
    assert ours.info()["language"] == language


def test_parse_po_handles_context_escapes_and_fuzzy() -> None:
    text = "\n".join(
        [
            'msgid ""',
            'msgstr ""',
            '"Content-Type: text/plain; charset=UTF-8\\n"',
            '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"',
            "",
            "#, fuzzy",
            'msgid "skip me"',
            'msgstr "draft"',
            "",
            'msgctxt "menu"',
            'msgid "Open"',
            'msgstr "Öffnen"',
            "",
            'msgid "Tab\\there"',
            'msgstr "Tab\\tda"',
            "",
            'msgid "untranslated"',
            'msgstr ""',
        ]
    )
    catalog = i18n.parse_po(text)
    assert b"skip me" not in catalog
    assert b"untranslated" not in catalog
    assert catalog[b"menu\x04Open"] == "Öffnen".encode()
    assert catalog[b"Tab\there"] == b"Tab\tda"
    translations = gettext.GNUTranslations(io.BytesIO(i18n.build_mo(catalog)))
    assert translations.pgettext("menu", "Open") == "Öffnen"


@pytest.mark.parametrize(
    "bad", ['msgid "a"\nmsgstr b', '"floating"', 'msgid "a"\nmsgwhat "b"', 'msgid "a\nmsgstr ""']
)
def test_parse_po_rejects_garbage_with_line_number(bad: str) -> None:
    with pytest.raises(MalformedInputError, match="po line"):
        i18n.parse_po(bad)


@pytest.mark.parametrize(
    ("configured", "environ", "expected"),
    [
        ("kk", {"LANG": "ru_RU.UTF-8"}, "kk"),
        ("", {"LANG": "ru_RU.UTF-8"}, "ru"),
        ("", {"LC_ALL": "kk_KZ.UTF-8", "LANG": "ru_RU.UTF-8"}, "kk"),
        ("", {"LANGUAGE": "de:ru", "LANG": "de_DE.UTF-8"}, "ru"),
        ("", {"LANG": "de_DE.UTF-8"}, "en"),
        ("", {"LANG": "C.UTF-8"}, "en"),
        ("", {}, "en"),
    ],
)
def test_choose_language(configured: str, environ: dict[str, str], expected: str) -> None:
    assert i18n.choose_language(configured, environ) == expected


def test_compiled_mo_is_preferred_when_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale)
    monkeypatch.setattr(i18n, "LOCALE_DIR", locale)
    written = i18n.compile_all()
    assert sorted(p.parent.parent.name for p in written) == ["en", "kk", "ru"]
    mo = locale / "ru" / "LC_MESSAGES" / "contact-agent.mo"
    catalog = {b"": b"Content-Type: text/plain; charset=UTF-8\n", b"Possible exposure": b"MO!"}
    mo.write_bytes(i18n.build_mo(catalog))
    assert i18n.translations("ru").gettext("Possible exposure") == "MO!"


def _po(language: str) -> Path:
    return i18n.LOCALE_DIR / language / "LC_MESSAGES" / "contact-agent.po"


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "possibly relayed"), ("ru", "ретранслирована"), ("kk", "қайта таратылған")],
)
def test_a_possibly_relayed_exposure_says_so(language: str, expected: str) -> None:
    assert expected in render(Notice(DAY, 20, 1, possibly_relayed=True), language).body
    assert expected not in render(Notice(DAY, 20, 1), language).body
