"""The benchmark harness at toy sizes (``python -m bench.run --smoke``), so it cannot rot.

Only that it produces every figure, with sane values, in the documented shape; the targets
are for the full run (``make bench``) on a quiet machine, not for this one.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests import brokers

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parent.parent
FIGURE_KEYS = {"name", "value", "unit", "baseline", "ratio", "target", "pass"}
EXPECTED = [
    "ingest.rate@",
    "ingest.dropped@",
    "fresh.latency_p50",
    "fresh.latency_p95",
    "fresh.latency_p99",
    "fresh.final_values",
    "bandwidth.bytes_per_client",
    "bandwidth.frames_per_client",
    "render.page@",
    "memory.per_idle_client@",
    "memory.rss_after_",
    "growth.ingest.rate@",
    "growth.render@",
    "fresh.latency_p99@",
    "bandwidth.bytes_per_client@",
    "growth.memory.per_idle_client@",
    "growth.exponent.ingest_cost_per_message",
    "growth.exponent.render_time",
    "growth.exponent.server_cpu_vs_pages",
    "growth.exponent.server_memory_vs_pages",
    "confirm.latency_p50",
    "confirm.latency_p99",
    "broadcast.cpu_per_page_frame@",
    "broadcast.fanout_cpu_per_page_frame@",
    "broadcast.latency_p99@",
    "broadcast.final_values@",
    "broadcast.client_cpu@",
    "broadcast.machine_cpu@",
    "occupancy.report@",
    "mqtt.read_us_per_message",
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    if brokers.find_mosquitto() is None:
        pytest.fail("mosquitto not found: install Debian's mosquitto package (see README)")
    out = tmp_path_factory.mktemp("bench") / "latest.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return json.loads(out.read_text()), run.stdout


def by_name(data: dict) -> dict[str, dict]:
    return {f["name"]: f for f in data["figures"]}


def test_results_have_the_documented_shape(smoke: tuple[dict, str]) -> None:
    data, _ = smoke
    assert {"machine", "figures"} <= set(data)
    assert data["machine"]["logical_cores"] >= 1 and data["machine"]["mode"] == "smoke"
    for f in data["figures"]:
        assert set(f) == FIGURE_KEYS, f
        assert isinstance(f["name"], str) and isinstance(f["unit"], str)
        assert f["pass"] in (True, False, None)
        assert (f["pass"] is None) == (f["target"] == "informational"), f


def test_every_figure_is_produced_with_a_value_and_a_baseline(smoke: tuple[dict, str]) -> None:
    data, stdout = smoke
    names = list(by_name(data))
    for prefix in EXPECTED:
        assert any(n.startswith(prefix) for n in names), f"no figure {prefix}…: {names}"
    for f in data["figures"]:
        assert f["value"] is not None and math.isfinite(f["value"]), f
        assert f["baseline"] is not None and math.isfinite(f["baseline"]), f
        assert f["name"] in stdout  # the table shows the same figures


def test_values_are_sane(smoke: tuple[dict, str]) -> None:
    figures = by_name(smoke[0])

    def first(prefix: str) -> dict:
        return next(f for n, f in figures.items() if n.startswith(prefix))

    rate = first("ingest.rate@")
    assert rate["value"] > 0 and rate["baseline"] > 0 and rate["ratio"] > 0
    assert first("ingest.dropped@")["value"] == 0
    # The ingest scenario's third phase: with actions awaiting confirmation.
    pending = next(f for n, f in figures.items() if n.startswith("ingest.rate@") and "pending" in n)
    assert pending["value"] > 0 and pending["baseline"] == rate["baseline"]
    # And without the history writer's rollup step: the with/without ratio is the plain rate's.
    no_rollups = next(f for n, f in figures.items() if n.endswith("dev-no-rollups"))
    assert no_rollups["value"] > 0 and no_rollups["baseline"] == rate["baseline"]
    versus = next(f for n, f in figures.items() if n.endswith("dev/no-rollups"))
    assert versus["value"] == rate["value"] and versus["baseline"] == no_rollups["value"]
    p50, p99 = figures["fresh.latency_p50"], figures["fresh.latency_p99"]
    assert 0 < p50["value"] <= p99["value"] < 10_000
    assert 0 < p50["baseline"] <= p99["baseline"]
    # Every page ends up with every final value at toy sizes; a parser out of step with the
    # templates would see none.
    assert figures["fresh.final_values"]["value"] == 100
    bandwidth = figures["bandwidth.bytes_per_client"]
    assert bandwidth["value"] > 0 and bandwidth["baseline"] > 0
    assert figures["bandwidth.frames_per_client"]["baseline"] > 0
    assert 0 < first("render.page@")["value"] < 10_000
    assert first("memory.rss_after_")["value"] > 0
    # Memory is judged twice: against the first round, and against the second.
    rounds = [n for n in figures if n.startswith("memory.rss_after_")]
    assert len(rounds) == 2 and any(n.endswith("_from_round_2") for n in rounds), rounds
    assert 0 < first("occupancy.report@")["value"] < 10_000
    # Both reads took every packet; the bridge's own is the cheaper (a few µs against ~15).
    read = figures["mqtt.read_us_per_message"]
    assert 0 < read["value"] < read["baseline"], read
    # Cores busy over the measured window: no more than the machine has, and at least the
    # CPU the server and the pages it counts used in that window.
    for pages, run in smoke[0]["details"]["broadcast"].items():
        cores = psutil.cpu_count() or 1
        assert 0 < run["machine_cpu"] <= cores + 0.1, (pages, run)
        busy = run["machine_cpu"] * run["window_seconds"]
        assert busy >= run["server_cpu"] + run["pages_cpu"] * run["seconds"] - 0.1, (pages, run)


def test_redis_per_frame_at_1000_pages_is_judged_against_100_pages_of_the_same_run() -> None:
    """`make bench-scaled`'s Redis figures: what grows with pages fails issue #20's 1.2."""
    from bench import hub_redis

    def run(pages: int, commands: float, bytes_in: int, delivered: int) -> dict:
        return {
            "pages": pages,
            "redis_commands_per_frame": commands,
            "redis_input_bytes_per_frame": bytes_in,
            "redis_output_bytes_per_frame": 3_839,
            "delivered": delivered,
            "expected": pages * 40,
        }

    one_member_per_process = hub_redis.figures(
        [run(100, 25.3, 5_875, 4_000), run(1000, 25.3, 5_873, 40_000)]
    )
    assert all(f.passed for f in one_member_per_process)
    one_member_per_page = {
        f.name: f.passed
        for f in hub_redis.figures(
            [run(100, 25.3, 20_783, 4_000), run(1000, 25.5, 157_609, 39_990)]
        )
    }
    assert one_member_per_page == {
        "scaled.commands_per_frame@1000pages": True,
        "scaled.input_bytes_per_frame@1000pages": False,
        "scaled.output_bytes_per_frame@1000pages": True,
        "scaled.delivered@100pages": True,
        "scaled.delivered@1000pages": False,
    }


def test_freshness_at_1000_pages_is_judged_by_issue_20s_wider_bound() -> None:
    """p99 within window + 50 ms up to 100 pages; window + 150 ms at 1,000 on one process."""
    from bench import freshness

    def p99_passes(pages: int, p99_ms: float) -> bool | None:
        result = freshness.Freshness(
            clients=pages,
            latencies_ms=[p99_ms] * 100,
            bare_latencies_ms=[1.0] * 100,
            final_share=100.0,
            worst_final_share=100.0,
            bare_final_share=100.0,
            bytes_per_client=1.0,
            frames_per_client=1.0,
            deflated_bytes_per_client=1.0,
            compressed_once_bytes_per_client=1.0,
            server_cpu=1.0,
            harness_cpu=0.1,
            cut_off=0,
            reconnects=0,
            resyncs=0,
            published=100,
        )
        (p99,) = (f for f in freshness.freshness_figures(result, 250, "") if "p99" in f.name)
        return p99.passed

    assert p99_passes(100, 299) and not p99_passes(100, 301)
    assert p99_passes(1000, 399) and not p99_passes(1000, 401)


def test_a_paired_run_measures_both_servers_on_the_same_stream() -> None:
    """``python -m bench.paired``: this checkout against itself, one short stream."""
    if brokers.find_mosquitto() is None:
        pytest.fail("mosquitto not found: install Debian's mosquitto package (see README)")
    argv = ["--against", str(ROOT), "--runs", "1", "--rate", "500", "--seconds", "2"]
    run = subprocess.run(
        [sys.executable, "-m", "bench.paired", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = re.search(
        r"^over 1 streams: A ([\d.]+) s, B ([\d.]+) s, B/A ([\d.]+)$", run.stdout, re.M
    )
    assert found, run.stdout
    a, b, ratio = map(float, found.groups())
    # Both servers ingested and showed the same 1,000 values: each used CPU for them.
    assert a > 0.05 and b > 0.05, run.stdout
    assert ratio == pytest.approx(b / a, abs=0.01)
