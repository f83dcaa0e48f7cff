"""The scaled-out layout of docs/deploy.md for scenario 2: two web processes
(``serve --no-bridge``) and one bridge worker (``run_bridge``) on Redis and PostgreSQL.
A server variant (bench/experiments.py) applies to each of them.

A database of its own in PostgreSQL and a Redis database of its own (flushed before and
after); pages take turns between the two web processes, as behind a load balancer.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import psycopg
import redis

from bench.harness import Stack, VariantServed
from tests.served import ServedDashboard

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


class ScaledStack(Stack):
    """Mosquitto, Redis, PostgreSQL, two web processes and one bridge worker."""

    def __init__(
        self,
        directory: Path,
        settings: dict[str, str] | None = None,
        server_variant: str = "as-is",
    ) -> None:
        super().__init__(directory, server_variant=server_variant, settings=settings)
        self.database = f"gooee_bench_{secrets.token_hex(4)}"
        self.webs: list[ServedDashboard] = []
        self.worker: ServedDashboard | None = None

    def start(self) -> ScaledStack:
        self.broker.start()
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {self.database}")
        redis.Redis.from_url(REDIS_URL).flushdb()
        settings = {
            **self.settings,
            "DATABASE_URL": POSTGRES.rsplit("/", 1)[0] + f"/{self.database}",
            "REDIS_URL": REDIS_URL,
        }

        def process(name: str) -> ServedDashboard:
            (self.directory / name).mkdir()
            if self.server_variant == "as-is":
                return ServedDashboard(self.directory / name, self.broker.url, **settings)
            return VariantServed(
                self.directory / name, self.broker.url, self.server_variant, **settings
            )

        web_a, web_b, worker = process("web-a"), process("web-b"), process("bridge")
        web_a.migrate()
        web_b.manage("collectstatic", "--noinput", "-v0")
        for web in (web_a, web_b):
            web.start("serve", "--no-bridge")
            self.webs.append(web)
        self.worker = worker.start("run_bridge", ready="bridge running")
        self.served = web_a  # add_building and the render scenario use the first
        return self

    def stop(self) -> None:
        for served in [*self.webs, self.worker]:
            if served is not None and served.process is not None:
                served.stop()
        self.broker.stop()
        redis.Redis.from_url(REDIS_URL).flushdb()
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        shutil.rmtree(self.directory / "web-a", ignore_errors=True)

    @property
    def urls(self) -> list[str]:
        return [web.url for web in self.webs]

    @property
    def server_pids(self) -> list[int]:
        processes = [*self.webs, self.worker]
        return [p.process.pid for p in processes if p is not None and p.process is not None]
