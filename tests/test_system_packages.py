"""``make test`` on a fresh machine: scripts/system-packages.sh installs the Debian packages
the suite needs as root, or stops at once with the line to run. Run here with a PATH of
stand-ins (``id``, ``apt-get``, the tools themselves), never by uninstalling anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "system-packages.sh"
BASH = shutil.which("bash")
# Debian's broker lives in /usr/sbin, which the script also looks in: not a stand-in's job.
MOSQUITTO = [] if os.access("/usr/sbin/mosquitto", os.X_OK) else ["mosquitto"]


def run(tmp_path: Path, *, uid: int, present: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The script with only stand-ins on PATH; apt-get records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins = {
        "id": f"echo {uid}",
        "apt-get": f'echo "$*" >> {tmp_path / "apt-get.log"}',
        **{tool: "true" for tool in present},
    }
    for name, body in stand_ins.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    return subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def apt_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "apt-get.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_user_without_the_packages_is_told_the_one_line_to_run(tmp_path):
    result = run(tmp_path, uid=1000)
    assert result.returncode == 1
    packages = " ".join([*MOSQUITTO, "openssl", "chromium"])
    assert result.stderr.splitlines()[-1] == (
        f"  sudo apt-get install -y --no-install-recommends {packages}"
    )
    assert apt_calls(tmp_path) == []


def test_root_gets_the_missing_packages_installed(tmp_path):
    result = run(tmp_path, uid=0, present=("openssl",))
    assert result.returncode == 0, result.stderr
    assert apt_calls(tmp_path) == [
        "update -qq",
        " ".join(["install -y -qq --no-install-recommends", *MOSQUITTO, "chromium"]),
    ]


@pytest.mark.parametrize("uid", [0, 1000])
def test_with_everything_installed_nothing_happens(tmp_path, uid):
    result = run(tmp_path, uid=uid, present=("mosquitto", "openssl", "chromium"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert apt_calls(tmp_path) == []
