"""``manage.py serve`` as deployed: DEBUG off, static files served, clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.brokers import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_serve_with_debug_off_serves_pages_and_static_files_and_stops_cleanly(tmp_path, broker):
    env = {
        **os.environ,
        "DEBUG": "false",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MQTT_URL": broker.url,
        "LOG_LEVEL": "WARNING",
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, timeout=120)
    subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], env=env, check=True, timeout=120)
    port = free_port()
    server = subprocess.Popen(
        [*manage, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == (
            f"Gooee dashboard at http://127.0.0.1:{port}/ (Ctrl-C to stop)"
        )
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/accounts/login/", timeout=10) as response:
            assert response.status == 200
            assert "Log in" in response.read().decode()
        with urllib.request.urlopen(
            f"{base}/static/dashboard/dashboard.css", timeout=10
        ) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            assert response.url.startswith(f"{base}/accounts/login/")  # login required
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=15) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_malformed_setting_stops_with_one_clear_line(tmp_path):
    env = {**os.environ, "MQTT_URL": "http://broker.example", "DEBUG": "false"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "configuration error: MQTT_URL: scheme must be one of mqtt, mqtts, ws, wss (got 'http')"
    ]
