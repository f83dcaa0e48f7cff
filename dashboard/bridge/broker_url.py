"""``MQTT_URL`` parsing: which broker, over which transport, with which credentials."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


class BrokerUrlError(ValueError):
    """An MQTT_URL we cannot connect with."""


@dataclass(frozen=True)
class BrokerUrl:
    """Where and how to reach the broker. The password never shows in ``repr``."""

    scheme: str
    host: str
    port: int
    path: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def transport(self) -> Literal["tcp", "websockets"]:
        """paho's transport name."""
        return "websockets" if self.scheme in ("ws", "wss") else "tcp"

    @property
    def tls(self) -> bool:
        return self.scheme in ("mqtts", "wss")

    def redacted(self) -> str:
        """The URL for logs and pages: credentials left out."""
        user = f"{self.username}:***@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}{self.path}"

    def __str__(self) -> str:
        return self.redacted()


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt://``, ``mqtts://``, ``ws://`` or ``wss://`` URLs; raise ``BrokerUrlError``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BrokerUrlError(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise BrokerUrlError(
            f"scheme must be one of mqtt, mqtts, ws, wss (got {scheme or 'none'!r})"
        )
    if not parts.hostname:
        raise BrokerUrlError("no host")
    path = parts.path
    if scheme in ("mqtt", "mqtts") and path not in ("", "/"):
        raise BrokerUrlError(f"{scheme}:// URLs take no path")
    if scheme in ("ws", "wss") and not path:
        path = "/mqtt"
    return BrokerUrl(
        scheme=scheme,
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        path=path if scheme in ("ws", "wss") else "",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )
