"""README's first command on a fresh machine: scripts/setup.sh and scripts/apt-need.sh.

apt-get, dpkg-query, sudo and id are replaced by recording stand-ins on PATH; the
scripts themselves run for real with bash.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APT_NEED = ROOT / "scripts" / "apt-need.sh"
README = ROOT / "README.md"


def _stand_ins(tmp_path: Path, *, uid: int, sudo: bool, installed: frozenset[str]) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    scripts = {
        "apt-get": f'echo "apt-get $*" >> {log}\n',
        "dpkg-query": (
            "for last; do :; done\n"
            f'case " {" ".join(sorted(installed))} " in *" $last "*) '
            'printf "install ok installed"; exit 0;; esac\nexit 1\n'
        ),
        "id": f'[ "$1" = "-u" ] && echo {uid} && exit 0\nexit 1\n',
    }
    if sudo:
        scripts["sudo"] = f'echo "sudo $*" >> {log}\nexec "$@"\n'
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    for tool in ("grep", "env", "sh"):  # what the script needs besides the stand-ins
        real = shutil.which(tool)
        assert real is not None
        (bin_dir / tool).symlink_to(real)
    return bin_dir


def _apt_need(
    tmp_path: Path,
    *packages: str,
    uid: int = 0,
    sudo: bool = False,
    installed: frozenset[str] = frozenset(),
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = _stand_ins(tmp_path, uid=uid, sudo=sudo, installed=installed)
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run(
        [bash, str(APT_NEED), *packages],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        check=False,
    )
    log = tmp_path / "calls.log"
    return result, log.read_text().splitlines() if log.exists() else []


def test_as_root_without_sudo_updates_then_installs_what_is_missing(tmp_path: Path) -> None:
    result, calls = _apt_need(
        tmp_path, "python3-venv", "dbus-daemon", installed=frozenset({"python3-venv"})
    )
    assert result.returncode == 0, result.stderr
    assert calls == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends dbus-daemon",
    ]


def test_as_a_user_it_goes_through_sudo(tmp_path: Path) -> None:
    result, calls = _apt_need(tmp_path, "dbus-daemon", uid=1000, sudo=True)
    assert result.returncode == 0, result.stderr
    assert calls[0].startswith("sudo env DEBIAN_FRONTEND=noninteractive apt-get update")
    assert calls[1] == "apt-get update -q"
    assert calls[-1] == "apt-get install -y -q --no-install-recommends dbus-daemon"


def test_as_a_user_without_sudo_it_says_what_to_do(tmp_path: Path) -> None:
    result, calls = _apt_need(tmp_path, "dbus-daemon", uid=1000, sudo=False)
    assert result.returncode == 1
    assert calls == []
    assert "dbus-daemon must be installed: run this as root or install sudo" in result.stderr


def test_nothing_happens_when_everything_is_installed(tmp_path: Path) -> None:
    result, calls = _apt_need(
        tmp_path, "dbus-daemon", uid=1000, installed=frozenset({"dbus-daemon"})
    )
    assert result.returncode == 0
    assert calls == []


def _first_command() -> str:
    blocks = re.findall(r"^    (\S.*)$", README.read_text(encoding="utf-8"), re.MULTILINE)
    return blocks[0]


def test_readme_first_command_runs_setup_without_sudo_and_ci_runs_the_same() -> None:
    first = _first_command()
    assert first == "bash scripts/setup.sh && .venv/bin/contact-agent demo"
    assert not first.startswith("sudo")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'SETUP_CMD="bash scripts/setup.sh"' in ci and "\n$SETUP_CMD\n" in ci
    assert "pip install" not in ci  # CI installs exactly what setup.sh installs
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert "pip install -q --disable-pip-version-check -e '.[test,field]'" in setup
    assert "apt-need.sh python3-venv dbus-daemon systemd" in setup
    readme = README.read_text(encoding="utf-8")
    assert "Python 3.11" in readme.split("## ")[0]
