"""A small client for the Gooee Cloud REST API: authentication, paging by ``Link``, retries.

What is known of the API (from Gooee's public SDK and integrations) is kept in one place,
``mapping.py``; this module knows only HTTP. Every error is one line that names the request
but never the token.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

logger = logging.getLogger(__name__)

DEFAULT_URL = "https://api.gooee.io"
AUTH_SCHEMES = ("Bearer", "JWT")
PAGE_SIZE = 100
# A list longer than this is not a building's inventory but a paging loop.
MAX_PAGES = 1000
MAX_RETRY_AFTER = 60.0
# A page of 100 objects is tens of KB; more is not an answer to read into memory.
MAX_RESPONSE_BYTES = 16 * 2**20


class CloudApiError(Exception):
    """The API could not be read; the message is one line for the command's output."""


class TokenRefused(CloudApiError):
    """401 or 403: the token is wrong, expired or lacks access."""


class NotFound(CloudApiError):
    """404: the object (or, for areas, the endpoint) does not exist."""


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``: seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class CloudClient:
    """Reads JSON from the Gooee Cloud API with a token; synchronous (commands, worker threads)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        scheme: str = "Bearer",
        timeout: float = 15.0,
        retries: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if scheme not in AUTH_SCHEMES:
            raise ValueError(f"auth scheme must be one of {', '.join(AUTH_SCHEMES)}")
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self._http = httpx.Client(
            headers={"Authorization": f"{scheme} {token}", "Accept": "application/json"},
            timeout=timeout,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, path: str, params: dict[str, Any] | None = None) -> httpx.URL:
        url = self.base_url.join(path.lstrip("/"))
        return url.copy_merge_params(params) if params else url

    def _shown(self, url: httpx.URL) -> str:
        """The request as errors name it: path and query, never a header."""
        query = url.query.decode() if url.query else ""
        return url.path + (f"?{query}" if query else "")

    def _send(self, url: httpx.URL) -> httpx.Response:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._get(url)
            except httpx.TransportError as exc:
                problem = type(exc).__name__
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}"
            if attempt >= self._retries:
                raise CloudApiError(
                    f"GET {self._shown(url)}: {problem}, still failing after {attempt + 1} attempts"
                )
            wait = _retry_after(response) if response is not None else None
            if wait is None:
                wait = self._backoff * (2**attempt)
            logger.warning(
                "Cloud API: GET %s: %s, retrying in %.1f s", self._shown(url), problem, wait
            )
            self._sleep(wait)
            attempt += 1

    def _get(self, url: httpx.URL) -> httpx.Response:
        """One GET, its body read up to ``MAX_RESPONSE_BYTES``: the answer is untrusted."""
        with self._http.stream("GET", url) as streamed:
            body = bytearray()
            for chunk in streamed.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise CloudApiError(
                        f"GET {self._shown(url)}: the answer is over "
                        f"{MAX_RESPONSE_BYTES:,} bytes; not reading it"
                    )
        return httpx.Response(
            streamed.status_code,
            headers=streamed.headers,
            content=bytes(body),
            request=streamed.request,
        )

    def _json(self, response: httpx.Response, url: httpx.URL) -> Any:
        status = response.status_code
        if status in (401, 403):
            raise TokenRefused(
                f"GET {self._shown(url)}: the Gooee Cloud API refused the token (HTTP {status})"
            )
        if status == 404:
            raise NotFound(f"GET {self._shown(url)}: not found (HTTP 404)")
        if status != 200:
            raise CloudApiError(f"GET {self._shown(url)}: unexpected HTTP {status}")
        try:
            return response.json()
        except ValueError:
            raise CloudApiError(f"GET {self._shown(url)}: the answer is not JSON") from None

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """One object (or any JSON) from ``path``."""
        url = self._url(path, params)
        return self._json(self._send(url), url)

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[list[Any]]:
        """Every page of a list, following ``Link: <...>; rel="next"`` on the same server."""
        url = self._url(path, {**(params or {}), "limit": PAGE_SIZE})
        for _ in range(MAX_PAGES):
            response = self._send(url)
            data = self._json(response, url)
            # A bare list, or the common {"results": [...]} envelope.
            if isinstance(data, dict) and isinstance(data.get("results"), list):
                data = data["results"]
            if not isinstance(data, list):
                raise CloudApiError(f"GET {self._shown(url)}: expected a list of objects")
            yield data
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            url = response.url.join(following)
            # The token goes only where it was meant to: never to a host a header names.
            if (url.scheme, url.host, url.port) != (
                self.base_url.scheme,
                self.base_url.host,
                self.base_url.port,
            ):
                raise CloudApiError(
                    f"GET {self._shown(response.url)}: the next page is on another server "
                    f"({url.host}); not following it"
                )
        raise CloudApiError(f"GET {path}: more than {MAX_PAGES} pages")

    def list(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """All objects of a paged list."""
        return [item for page in self.pages(path, params) for item in page]
