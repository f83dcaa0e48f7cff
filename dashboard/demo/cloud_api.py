"""The Gooee Cloud REST API, as far as ``dashboard/cloud/mapping.py`` knows it, over real HTTP.

Serves buildings, spaces, areas and devices from buildings in the inventory file format (the
demo's, or a test's), in pages with ``Link: <...>; rel="next"``, to one token (``Bearer`` or
``JWT``). Tests queue faults (``fail_next``) to see retries, and edit ``buildings`` to see a
re-sync follow the cloud. A device's ``cloud`` object holds fields answered as they are (a
malformed object, as a test wants one).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

logger = logging.getLogger(__name__)

MAX_LIMIT = 100


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("cloud API: %s", format % args)

    def do_GET(self) -> None:
        api = self.server.api
        with api.lock:
            api.requests.append(self.path)
            fault = api.faults.popleft() if api.faults else None
        if fault is not None:
            status, headers, body = fault
            self._answer(status, body, headers)
            return
        if self.headers.get("Authorization", "") not in api.accepted_headers():
            self._answer(401, {"detail": "Authentication credentials were not provided."})
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        status, payload = api.answer(parts, query)
        if isinstance(payload, list):
            self._page(url.path, query, payload)
        else:
            self._answer(status, payload)

    def _page(self, path: str, query: dict[str, str], items: list[Any]) -> None:
        try:
            limit = max(1, min(int(query.get("limit", MAX_LIMIT)), MAX_LIMIT))
            offset = max(0, int(query.get("offset", 0)))
        except ValueError:
            self._answer(400, {"detail": "limit and offset are numbers"})
            return
        headers = {}
        if offset + limit < len(items):
            following = urlencode({**query, "limit": limit, "offset": offset + limit})
            headers["Link"] = f'<{path}?{following}>; rel="next"'
        self._answer(200, items[offset : offset + limit], headers)

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: CloudApiEmulator) -> None:
        self.api = api
        super().__init__((api.host, 0), _Handler)


class CloudApiEmulator:
    """An HTTP server on ``host`` and a free port answering as the Gooee Cloud API would."""

    def __init__(
        self,
        buildings: Iterable[dict[str, Any]],
        token: str,
        *,
        host: str = "127.0.0.1",
        areas_endpoint: bool = True,
    ) -> None:
        self.buildings = {b["id"]: b for b in buildings}
        self.token = token
        self.host = host
        self.areas_endpoint = areas_endpoint
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.faults: deque[tuple[int, dict[str, str], Any]] = deque()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the cloud API emulator is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def accepted_headers(self) -> set[str]:
        return {f"Bearer {self.token}", f"JWT {self.token}"}

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``headers``, ``body``)."""
        with self.lock:
            for _ in range(times):
                self.faults.append(
                    (status, headers or {}, {"detail": "fault"} if body is None else body)
                )

    def start(self) -> None:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cloud-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- what each endpoint answers ----------------------------------------------------

    def answer(self, parts: list[str], query: dict[str, str]) -> tuple[int, Any]:
        """(status, a JSON object or a list to page) for a GET of ``parts``."""
        with self.lock:
            buildings = dict(self.buildings)
        if parts == ["buildings"]:
            return 200, [self._building(b) for b in buildings.values()]
        if len(parts) == 2 and parts[0] == "buildings":
            building = buildings.get(parts[1])
            return (200, self._building(building)) if building else (404, {"detail": "Not found."})
        if len(parts) == 1 and parts[0] in ("spaces", "devices", "areas"):
            if parts[0] == "areas" and not self.areas_endpoint:
                return 404, {"detail": "Not found."}
            chosen = [buildings[query["building"]]] if query.get("building") in buildings else []
            if "building" not in query:
                chosen = list(buildings.values())
            return 200, [item for b in chosen for item in getattr(self, f"_{parts[0]}")(b)]
        return 404, {"detail": "Not found."}

    @staticmethod
    def _building(b: dict[str, Any]) -> dict[str, Any]:
        return {"id": b["id"], "name": b["name"], "timezone": b.get("timezone") or "UTC"}

    @staticmethod
    def _spaces(b: dict[str, Any]) -> list[dict[str, Any]]:
        devices = b.get("devices", [])
        return [
            {
                "id": s["id"],
                "name": s["name"],
                "building": b["id"],
                "parent_space": s.get("parent"),
                "child_spaces": [
                    c["id"] for c in b.get("spaces", []) if c.get("parent") == s["id"]
                ],
                "devices": [d["id"] for d in devices if s["id"] in _device_spaces(d)],
                "capacity": s.get("capacity"),
                "meta": s.get("meta", []),
            }
            for s in b.get("spaces", [])
        ]

    @staticmethod
    def _areas(b: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "id": a["id"],
                "name": a["name"],
                "building": b["id"],
                "space": a.get("space"),
                "capacity": a.get("capacity"),
            }
            for a in b.get("areas", [])
        ]

    @staticmethod
    def _devices(b: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "id": d["id"],
                "name": d["name"],
                "building": b["id"],
                "spaces": _device_spaces(d),
                "type": d.get("type") or "wim",
                "meta": d.get("meta", []),
                # Fields answered as they are, over the rest: a test's malformed object.
                **d.get("cloud", {}),
            }
            for d in b.get("devices", [])
        ]


def _device_spaces(device: dict[str, Any]) -> list[str]:
    if device.get("spaces"):
        return list(device["spaces"])
    return [device["space"]] if device.get("space") else []
