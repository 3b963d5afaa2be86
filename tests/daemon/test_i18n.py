"""Catalogs compiled by the package build, and the language choice."""

from __future__ import annotations

import gettext
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from agent.daemon import i18n
from agent.daemon.notify import Notice, render

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


def _messages(language: str) -> dict[str | tuple[str, ...], object]:
    """The non-fuzzy messages of a ``.po`` as Babel reads it (the build's own reader)."""
    with _po(language).open("rb") as source:
        catalog = read_po(source, locale=language)
    return {m.id: m.string for m in catalog if m.id and not m.fuzzy}


def test_every_catalog_translates_every_message() -> None:
    english = _messages("en")
    for language in ("ru", "kk"):
        catalog = _messages(language)
        assert set(catalog) == set(english), language
        for key, value in catalog.items():
            forms = value if isinstance(value, tuple) else (value,)
            assert all(forms) and forms != (key,), (language, key)


@pytest.mark.parametrize("language", ["ru", "kk"])
def test_the_built_catalog_says_what_its_source_says(language: str) -> None:
    """The ``.mo`` the package build wrote, read by gettext, against the ``.po``."""
    assert i18n.catalog_path(language).is_file(), "the package build compiles the catalogs"
    ours = i18n.translations(language)
    assert isinstance(ours, gettext.GNUTranslations)
    assert ours.info()["language"] == language
    for key, value in _messages(language).items():
        if isinstance(key, tuple):
            assert isinstance(value, tuple)
            assert ours.ngettext(key[0], key[1], 1) == value[0]
        else:
            assert ours.gettext(key) == value


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU msgfmt not installed")
@pytest.mark.parametrize("language", ["ru", "kk"])
def test_the_built_catalog_agrees_with_gnu_msgfmt(language: str, tmp_path: Path) -> None:
    gnu_mo = tmp_path / "gnu.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(gnu_mo), str(_po(language))], check=True)
    gnu = gettext.GNUTranslations(io.BytesIO(gnu_mo.read_bytes()))
    ours = i18n.translations(language)
    for key in _messages("en"):
        if isinstance(key, tuple):
            for n in (1, 2, 5, 11, 21, 102):
                assert ours.ngettext(key[0], key[1], n) == gnu.ngettext(key[0], key[1], n)
        else:
            assert ours.gettext(key) == gnu.gettext(key)


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


def test_a_missing_catalog_falls_back_to_english(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path / "nowhere")
    message = render(Notice(DAY, 25, 1), "ru")
    assert message.title == "Possible exposure"
    assert "for about 25 minutes." in message.body
    assert "no compiled ru catalog" in caplog.text


def _po(language: str) -> Path:
    return i18n.LOCALE_DIR / language / "LC_MESSAGES" / "contact-agent.po"


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "possibly relayed"), ("ru", "ретранслирована"), ("kk", "қайта таратылған")],
)
def test_a_possibly_relayed_exposure_says_so(language: str, expected: str) -> None:
    assert expected in render(Notice(DAY, 20, 1, possibly_relayed=True), language).body
    assert expected not in render(Notice(DAY, 20, 1), language).body
