"""``manage.py serve`` as deployed: DEBUG off, static files served, clean stop on Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from dashboard import serving
from tests.brokers import free_port
from tests.served import interruptible

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
        preexec_fn=interruptible,  # stopped with Ctrl-C below, however pytest was started
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


def served_env(tmp_path: Path, broker_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "false",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MQTT_URL": broker_url,
        "LOG_LEVEL": "WARNING",
        "STATIC_ROOT": str(tmp_path / "static"),
    }


def start_serve(env: dict[str, str], port: int) -> tuple[subprocess.Popen[str], list[str]]:
    """``serve`` until it says where it listens; with the lines it printed before that."""
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=interruptible,  # stopped with Ctrl-C below, however pytest was started
    )
    before: list[str] = []
    while not (line := server.stdout.readline()).startswith("Gooee dashboard at"):
        if not line:
            raise AssertionError("serve stopped:\n" + "".join(before))
        before.append(line.strip())
    return server, before


def stop_serve(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(timeout=15)
            assert code == 0, server.stdout.read()
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def test_a_first_start_after_migrate_collects_static_files_and_serves_pages(tmp_path, broker):
    env = served_env(tmp_path, broker.url)
    static_root = tmp_path / "static"
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, timeout=120)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    # Right after install and migrate: serve collects, then pages and their CSS work.
    server, before = start_serve(env, port)
    try:
        assert before == [f"Collecting static files into {static_root} (missing manifest)"]
        with urllib.request.urlopen(f"{base}/accounts/login/", timeout=10) as response:
            assert response.status == 200
            page = response.read().decode()
        [css] = re.findall(r'href="(/static/dashboard/dashboard\.[0-9a-f]+\.css)"', page)
        with urllib.request.urlopen(f"{base}{css}", timeout=10) as response:
            assert response.status == 200
    finally:
        stop_serve(server)

    # Collected and unchanged since: the next start does not collect again.
    server, before = start_serve(env, port)
    stop_serve(server)
    assert before == []

    # Sources newer than the collection (an update): collected again.
    manifest = static_root / "staticfiles.json"
    os.utime(manifest, (0, 0))
    server, before = start_serve(env, port)
    stop_serve(server)
    assert before == [f"Collecting static files into {static_root} (stale manifest)"]
    assert manifest.stat().st_mtime > 0


def test_daphne_without_collected_static_files_refuses_to_start_with_one_line(tmp_path):
    env = served_env(tmp_path, "")
    result = subprocess.run(
        [sys.executable, "-m", "daphne", "-p", str(free_port()), "gooee_site.asgi:application"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"static files are not collected in {tmp_path / 'static'}: "
        "run `python manage.py collectstatic --noinput` first"
    )
    assert "Traceback" not in result.stderr


async def test_a_stop_that_takes_too_long_says_which_task_waits_and_where(caplog):
    """The ops engineer whose `serve` would not stop reads, in its log, what it waits for."""
    release = asyncio.Event()

    async def final_flush() -> None:
        await release.wait()

    async def stop_bridge() -> None:
        await final_flush()

    stuck = asyncio.create_task(stop_bridge(), name="bridge")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="dashboard.serving"):
        serving.report_stuck_tasks(asyncio.get_running_loop())
    release.set()
    await stuck

    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("still stopping after 12 s;")
    bridge = next(line for line in lines if line.startswith("  bridge waits at "))
    assert "test_serve.py:" in bridge
    assert "in stop_bridge -> test_serve.py:" in bridge
    assert "in final_flush -> locks.py:" in bridge
