"""``scripts/install.sh`` from a checkout: builds elsewhere, checks Python and the config.

pip and the network are replaced by a recording stand-in Python (the script's own steps
run for real); ``contact-agent`` in the stand-in venv is this checkout's real CLI, so the
configuration warnings are the ones a user sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FAKE_PYTHON = """#!/bin/sh
# Stand-in for python3: creates a venv whose python records pip's source directory.
if [ "$1" = "-c" ]; then exit 0; fi
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin"
    cat > "$3/bin/python" <<'EOF'
#!/bin/sh
if [ "$2" = "pip" ]; then
    for last; do :; done
    echo "$last" >> "$PIP_LOG"
    ls "$last" >> "$PIP_LOG"
    mkdir -p "$last/build" "$last/contact_agent.egg-info"  # what setuptools leaves
fi
exit 0
EOF
    printf '#!/bin/sh\\nexec %s -m agent "$@"\\n' "$REAL_PYTHON" > "$3/bin/contact-agent"
    chmod +x "$3/bin/python" "$3/bin/contact-agent"
    exit 0
fi
exit 1
"""


def _checkout(tmp_path: Path) -> Path:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "agent", "scripts", "systemd"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, checkout / name)
    return checkout


def _fake_python(tmp_path: Path) -> Path:
    path = tmp_path / "python3"
    path.write_text(_FAKE_PYTHON)
    path.chmod(0o755)
    return path


def test_install_builds_outside_the_checkout_and_warns_about_no_key_source(
    tmp_path: Path,
) -> None:
    checkout = _checkout(tmp_path)
    log = tmp_path / "pip.log"
    env = {
        **os.environ,
        "PIP_LOG": str(log),
        "REAL_PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT),
        "CONTACT_AGENT_CONFIG": "",
    }
    result = subprocess.run(
        ["bash", str(checkout / "scripts/install.sh"), "--root", str(tmp_path / "root"),
         "--python", str(_fake_python(tmp_path))],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    built_from, *listing = log.read_text().split()
    assert Path(built_from) != checkout and checkout not in Path(built_from).parents
    assert {"pyproject.toml", "setup.py", "README.md", "agent"} <= set(listing)
    assert not Path(built_from).exists()  # the build copy is removed
    assert not (checkout / "build").exists()
    assert not list(checkout.glob("*.egg-info"))
    # The default config has no key source: the installer says so and shows how to add one.
    assert "keys.sources is empty" in result.stderr
    assert "[[keys.sources]]" in result.stderr
    assert "config check" in result.stdout


def test_install_refuses_an_old_python(tmp_path: Path) -> None:
    old = tmp_path / "python3"
    old.write_text('#!/bin/sh\necho "Python 3.9.2"; exit 1\n')
    old.chmod(0o755)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/install.sh"), "--root", str(tmp_path / "root"),
         "--python", str(old)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "needs Python 3.11 or newer" in result.stderr


def test_install_gets_packages_the_way_setup_does() -> None:
    """apt-need.sh (tested in tests/unit/test_setup_scripts.py) runs apt-get update first
    and uses sudo only when not root; install.sh calls no apt-get of its own."""
    script = (ROOT / "scripts/install.sh").read_text()
    assert 'bash "$SRC/scripts/apt-need.sh" python3-venv bluez dbus' in script
    assert "apt-get install" not in script.split("set -euo pipefail", 1)[1]
