"""Private MQTT brokers and paho helpers for tests.

``MosquittoBroker`` runs the real ``mosquitto`` binary (plain, TLS, websockets and, with
TLS, secure websockets listeners; optional password file); ``AmqttBroker`` runs the pure-Python amqtt broker (plain and
websockets) where there is no mosquitto. Both listen on 127.0.0.1, on free ports, and log
into their own temp dir. Every started process is also killed at interpreter exit, so a
test that forgets ``stop()`` cannot leave a broker behind.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import paho.mqtt.client as mqtt

HOST = "127.0.0.1"
# Generous: the CI box has two cores and the whole suite may be running beside us.
DEFAULT_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
MOSQUITTO_FALLBACK_PATH = "/usr/sbin/mosquitto"
AMQTT_RUNNER = Path(__file__).with_name("amqtt_runner.py")
AMQTT_READY_MARKER = "amqtt-runner: ready"  # keep in sync with amqtt_runner.READY_MARKER
MOSQUITTO_READY_MARKER = " running"  # "mosquitto version X running", logged after all binds
PORT_CLASH_HINTS = ("Address already in use", "Errno 98", "Unable to start any listening")

Transport = Literal["tcp", "tls", "websockets", "wss"]


class BrokerStartError(RuntimeError):
    """The broker process exited or did not become ready in time."""

    def __init__(self, message: str, *, port_clash: bool = False) -> None:
        super().__init__(message)
        self.port_clash = port_clash


class ConnectError(RuntimeError):
    """A paho client got no CONNACK in time, or a refusing one."""

    def __init__(self, message: str, reason_code: mqtt.ReasonCode | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports (sockets held together so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------ executables, TLS


def find_mosquitto() -> str | None:
    """Return the mosquitto broker binary, or None (Debian puts it in /usr/sbin, off PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return MOSQUITTO_FALLBACK_PATH if os.access(MOSQUITTO_FALLBACK_PATH, os.X_OK) else None


def find_mosquitto_passwd() -> str | None:
    """Return the ``mosquitto_passwd`` tool, or None."""
    return shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/sbin")


def find_openssl() -> str | None:
    """Return the ``openssl`` CLI, or None."""
    return shutil.which("openssl")


@dataclass(frozen=True)
class TlsMaterial:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it."""

    ca_file: Path
    ca_key: Path
    cert_file: Path
    key_file: Path
    # Mutual TLS: a separate CA for clients, and a client certificate it signed.
    client_ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None


_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = placeholder

[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[v3_client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_tls_material(directory: Path, *, days: int = 7) -> TlsMaterial:
    """Generate a test CA and a server certificate with the ``openssl`` CLI (EC P-256: fast),
    and a client CA with a client certificate for brokers that require one (mutual TLS)."""
    openssl = find_openssl()
    if openssl is None:
        raise FileNotFoundError("openssl CLI not found")
    directory.mkdir(parents=True, exist_ok=True)
    # Our own config, so the host's openssl.cnf defaults cannot change the extensions.
    cnf = directory / "openssl.cnf"
    cnf.write_text(_OPENSSL_CNF, encoding="utf-8")
    ca_key, ca_file = directory / "ca.key", directory / "ca.crt"
    key_file, csr, cert_file = (
        directory / "server.key",
        directory / "server.csr",
        directory / "server.crt",
    )

    def run(*args: str | Path | int) -> None:
        proc = subprocess.run(
            [openssl, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode:
            raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()}")

    client_ca_key, client_ca_file = directory / "client-ca.key", directory / "client-ca.crt"
    client_key, client_csr, client_cert = (
        directory / "client.key",
        directory / "client.csr",
        directory / "client.crt",
    )
    for key in (ca_key, key_file, client_ca_key, client_key):
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", key)
        key.chmod(0o600)
    run("req", "-x509", "-new", "-config", cnf, "-extensions", "v3_ca", "-key", ca_key,
        "-sha256", "-days", days, "-subj", "/CN=Gooee dashboard test CA", "-out", ca_file)  # fmt: skip
    run("req", "-new", "-config", cnf, "-key", key_file, "-subj", "/CN=localhost", "-out", csr)
    run("x509", "-req", "-in", csr, "-CA", ca_file, "-CAkey", ca_key,
        "-set_serial", f"0x{secrets.token_hex(8)}", "-days", days, "-sha256",
        "-extfile", cnf, "-extensions", "v3_server", "-out", cert_file)  # fmt: skip
    run("req", "-x509", "-new", "-config", cnf, "-extensions", "v3_ca", "-key", client_ca_key,
        "-sha256", "-days", days, "-subj", "/CN=Gooee dashboard test client CA",
        "-out", client_ca_file)  # fmt: skip
    run("req", "-new", "-config", cnf, "-key", client_key, "-subj", "/CN=gooee-dashboard",
        "-out", client_csr)  # fmt: skip
    run("x509", "-req", "-in", client_csr, "-CA", client_ca_file, "-CAkey", client_ca_key,
        "-set_serial", f"0x{secrets.token_hex(8)}", "-days", days, "-sha256",
        "-extfile", cnf, "-extensions", "v3_client", "-out", client_cert)  # fmt: skip
    return TlsMaterial(
        ca_file=ca_file,
        ca_key=ca_key,
        cert_file=cert_file,
        key_file=key_file,
        client_ca_file=client_ca_file,
        client_cert_file=client_cert,
        client_key_file=client_key,
    )


def write_password_file(path: Path, users: Mapping[str, str]) -> None:
    """Write a mosquitto password file, with ``mosquitto_passwd -b`` when installed."""
    path.write_text("", encoding="utf-8")
    path.chmod(0o600)  # newer mosquitto refuses world-readable password files
    tool = find_mosquitto_passwd()
    if tool is None:
        # "$6$" (salted SHA-512) is the format every mosquitto since 1.4 reads.
        lines = []
        for user, password in users.items():
            salt = secrets.token_bytes(12)
            digest = hashlib.sha512(password.encode() + salt).digest()
            b64 = base64.b64encode
            lines.append(f"{user}:$6${b64(salt).decode()}${b64(digest).decode()}\n")
        path.write_text("".join(lines), encoding="utf-8")
        return
    for user, password in users.items():
        subprocess.run(
            [tool, "-b", str(path), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )


# ------------------------------------------------------------------------- brokers

# Every broker not yet closed; the atexit hook below is the safety net for forgotten ones.
_open: set[BrokerProcess] = set()
_open_lock = threading.Lock()


@atexit.register
def _close_leftovers() -> None:
    """SIGKILL every broker still running at interpreter exit and delete its temp dir."""
    with _open_lock:
        leftovers = list(_open)
    for broker in leftovers:
        with contextlib.suppress(Exception):
            broker.close(graceful=False)


class BrokerProcess:
    """Shared process handling: temp dir, free ports, readiness polling, stop/kill/restart."""

    name = "broker"
    ready_marker: str | None = None

    def __init__(self, *, websockets: bool = True, start_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.start_timeout = start_timeout
        self.directory = Path(tempfile.mkdtemp(prefix=f"test-{self.name}-"))
        self.output_file = self.directory / "output.log"
        self._websockets = websockets
        self._port: int | None = None
        self._tls_port: int | None = None
        self._ws_port: int | None = None
        self._wss_port: int | None = None
        # Ports are chosen afresh until the first successful start; restarts reuse them.
        self._ports_fixed = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offsets: dict[Path, int] = {}
        with _open_lock:
            _open.add(self)

    # ----------------------------------------------------------- subclass hooks

    def _wants_tls(self) -> bool:
        return False

    def _prepare(self) -> list[str]:
        """Write config for the current ports and return the command line."""
        raise NotImplementedError

    def log_files(self) -> list[Path]:
        """Files worth showing when the broker misbehaves."""
        return [self.output_file]

    def _probe_ports(self) -> list[int]:
        """Ports to connect-probe while starting."""
        return self.listener_ports()

    # --------------------------------------------------------------- properties

    @property
    def host(self) -> str:
        """Address every listener binds to."""
        return HOST

    @property
    def port(self) -> int:
        """Plain MQTT port."""
        if self._port is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._port

    @property
    def tls_port(self) -> int | None:
        """MQTT over TLS port, or None without a TLS listener."""
        return self._tls_port

    @property
    def ws_port(self) -> int | None:
        """MQTT over websockets port, or None without a websockets listener."""
        return self._ws_port

    @property
    def wss_port(self) -> int | None:
        """MQTT over websockets with TLS port, or None without that listener."""
        return self._wss_port

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://{HOST}:{self.port}"

    @property
    def tls_url(self) -> str | None:
        """``mqtts://127.0.0.1:PORT``, or None."""
        return None if self._tls_port is None else f"mqtts://{HOST}:{self._tls_port}"

    @property
    def ws_url(self) -> str | None:
        """``ws://127.0.0.1:PORT/mqtt``, or None (both brokers accept any path)."""
        return None if self._ws_port is None else f"ws://{HOST}:{self._ws_port}/mqtt"

    @property
    def wss_url(self) -> str | None:
        """``wss://127.0.0.1:PORT/mqtt``, or None."""
        return None if self._wss_port is None else f"wss://{HOST}:{self._wss_port}/mqtt"

    @property
    def ca_file(self) -> Path | None:
        """CA that signed the TLS listener's certificate, or None."""
        return None

    @property
    def username(self) -> str | None:
        """A user the broker really checks the password of, or None."""
        return None

    @property
    def password(self) -> str | None:
        """That user's password, or None."""
        return None

    @property
    def pid(self) -> int | None:
        """Broker process id while running."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def listener_ports(self) -> list[int]:
        """Every port the broker listens on."""
        ports = (self._port, self._tls_port, self._ws_port, self._wss_port)
        return [p for p in ports if p is not None]

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start the broker and wait until every listener accepts connections."""
        if self.running:
            return self
        attempts = 1 if self._ports_fixed else 3
        for attempt in range(1, attempts + 1):
            if not self._ports_fixed:
                wss = self._wants_tls() and self._websockets
                ports = iter(free_ports(1 + self._wants_tls() + self._websockets + wss))
                self._port = next(ports)
                self._tls_port = next(ports) if self._wants_tls() else None
                self._ws_port = next(ports) if self._websockets else None
                self._wss_port = next(ports) if wss else None
            argv = self._prepare()
            self._launch(argv)
            try:
                self._wait_ready()
            except BrokerStartError as exc:
                self._terminate(graceful=False)
                # Someone grabbed a port between free_ports() and the bind: pick others.
                if exc.port_clash and attempt < attempts:
                    continue
                raise
            self._ports_fixed = True
            return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Safe to call when stopped."""
        self._terminate(graceful=True, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would."""
        self._terminate(graceful=False)

    def restart(self) -> Self:
        """Stop (if running) and start again on the same ports."""
        self.stop()
        return self.start()

    def close(self, *, graceful: bool = True) -> None:
        """Stop the broker and delete its temp dir."""
        self._terminate(graceful=graceful)
        shutil.rmtree(self.directory, ignore_errors=True)
        with _open_lock:
            _open.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of each log file, for error messages."""
        parts = []
        for path in self.log_files():
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- {path.name} ---\n{tail}")
        return "\n".join(parts) or "(no log output)"

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            # __exit__ does not run when __enter__ raises; don't leak the temp dir.
            self.close(graceful=False)
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {state} ports={self.listener_ports()}>"

    # ---------------------------------------------------------------- internals

    def _launch(self, argv: list[str]) -> None:
        # Remember where this run's log lines start: restarts append to the same files.
        self._log_offsets = {
            path: path.stat().st_size if path.exists() else 0 for path in self.log_files()
        }
        with self.output_file.open("ab") as out:
            # Same process group on purpose: Ctrl-C in the terminal reaches the broker too.
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )

    def _new_log_text(self) -> str:
        chunks = []
        for path, offset in self._log_offsets.items():
            with contextlib.suppress(OSError), path.open("rb") as fh:
                fh.seek(offset)
                chunks.append(fh.read().decode("utf-8", errors="replace"))
        return "\n".join(chunks)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            returncode = self._proc.poll()
            if returncode is not None:
                log = self._new_log_text()
                raise BrokerStartError(
                    f"{self.name} exited with {returncode} while starting\n{self.log_tail()}",
                    port_clash=any(hint in log for hint in PORT_CLASH_HINTS),
                )
            # The marker rules out a stranger that owns our port while our bind is failing.
            marker_seen = self.ready_marker is None or self.ready_marker in self._new_log_text()
            if marker_seen and all(port_accepts(p) for p in self._probe_ports()):
                # Re-check liveness: a bind failure may have killed it during the probes.
                if self._proc.poll() is None:
                    return
                continue
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"{self.name} not ready on {self.listener_ports()} after "
                    f"{self.start_timeout:.0f}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _terminate(self, *, graceful: bool, timeout: float = STOP_TIMEOUT) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            if graceful:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
            else:
                proc.kill()
        if proc is not None:
            # Reap it; SIGKILL cannot be ignored, so this is bounded in practice.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT)


class MosquittoBroker(BrokerProcess):
    """A private ``mosquitto``: plain listener, optional TLS and websockets, optional users.

    ``allow_anonymous`` stays true, so with ``users`` anonymous clients still connect while a
    named user must give the right password. Note: mosquitto 2.0.11's websockets listener
    (libwebsockets) ignores the bind address and listens on all interfaces.
    """

    name = "mosquitto"
    ready_marker = MOSQUITTO_READY_MARKER

    def __init__(
        self,
        *,
        tls: TlsMaterial | None = None,
        websockets: bool = True,
        users: Mapping[str, str] | None = None,
        executable: str | None = None,
        start_timeout: float = 5.0,
        require_certificate: bool = False,
    ) -> None:
        executable = executable or find_mosquitto()
        if executable is None:
            raise FileNotFoundError("mosquitto binary not found")
        super().__init__(websockets=websockets, start_timeout=start_timeout)
        self.executable = executable
        self.tls = tls
        # Mutual TLS on the TLS listener: clients must show a certificate of tls.client_ca_file.
        self.require_certificate = require_certificate
        if require_certificate and (tls is None or tls.client_ca_file is None):
            raise ValueError("require_certificate needs TLS material with a client CA")
        self.users = dict(users or {})
        self.config_file = self.directory / "mosquitto.conf"
        self.log_file = self.directory / "mosquitto.log"
        self.password_file = self.directory / "passwd" if self.users else None
        if self.password_file is not None:
            write_password_file(self.password_file, self.users)

    def _wants_tls(self) -> bool:
        return self.tls is not None

    @property
    def ca_file(self) -> Path | None:
        """CA that signed the TLS listener's certificate, or None."""
        return self.tls.ca_file if self.tls else None

    @property
    def username(self) -> str | None:
        """First configured user, or None."""
        return next(iter(self.users), None)

    @property
    def password(self) -> str | None:
        """That user's password, or None."""
        return self.users[self.username] if self.username else None

    def log_files(self) -> list[Path]:
        """mosquitto's own log plus its stdout/stderr (config errors land there)."""
        return [self.log_file, self.output_file]

    def _prepare(self) -> list[str]:
        lines = [
            "persistence false",
            "allow_anonymous true",
            f"log_dest file {self.log_file}",
            # One type per line: mosquitto ignores everything after the first word.
            *(f"log_type {kind}" for kind in ("error", "warning", "notice", "information")),
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            f"listener {self.port} {HOST}",
        ]
        if os.geteuid() == 0:
            # As root mosquitto would switch to user "mosquitto", who cannot read our 0700 dir.
            lines.insert(0, "user root")
        if self.password_file is not None:
            lines.insert(0, f"password_file {self.password_file}")
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} {HOST}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
            if self.require_certificate:
                lines += [f"cafile {self.tls.client_ca_file}", "require_certificate true"]
            else:
                lines.append(f"cafile {self.tls.ca_file}")
        if self.ws_port is not None:
            lines += [f"listener {self.ws_port} {HOST}", "protocol websockets"]
        if self.tls is not None and self.wss_port is not None:
            lines += [
                f"listener {self.wss_port} {HOST}",
                "protocol websockets",
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
        self.config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [self.executable, "-c", str(self.config_file)]


class AmqttBroker(BrokerProcess):
    """The pure-Python amqtt broker in a subprocess: plain and websockets, anonymous only."""

    name = "amqtt"
    ready_marker = AMQTT_READY_MARKER

    def __init__(self, *, websockets: bool = True, start_timeout: float = 20.0) -> None:
        # Python start-up plus importing amqtt takes seconds on a loaded 2-core box.
        super().__init__(websockets=websockets, start_timeout=start_timeout)
        self.config_file = self.directory / "amqtt.json"

    def _probe_ports(self) -> list[int]:
        # A bare TCP probe makes amqtt's websockets listener log a handshake traceback; the
        # ready marker is printed after every listener is bound, so the plain port suffices.
        return [self.port]

    def _prepare(self) -> list[str]:
        listeners: dict[str, dict[str, object]] = {
            "default": {"type": "tcp", "bind": f"{HOST}:{self.port}"},
        }
        if self.ws_port is not None:
            listeners["ws"] = {"type": "ws", "bind": f"{HOST}:{self.ws_port}"}
        config = {
            "listeners": listeners,
            # An explicit "plugins" map replaces amqtt's defaults (incl. $SYS chatter); without
            # any auth plugin amqtt refuses every client, so anonymous auth must be listed.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self.config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return [sys.executable, str(AMQTT_RUNNER), str(self.config_file)]


# --------------------------------------------------------------------- paho helpers


def connect_client(
    broker: BrokerProcess,
    *,
    transport: Transport = "tcp",
    client_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    clean_session: bool = True,
    keepalive: int = 30,
    timeout: float = DEFAULT_TIMEOUT,
    client_cert: bool = False,
) -> mqtt.Client:
    """Return a paho client (MQTT 3.1.1) connected to ``broker`` with its network loop running.

    Raises ``ConnectError`` on a refusing CONNACK or none within ``timeout``; TLS
    verification failures surface as ``ssl.SSLError`` from the socket connect.
    """
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-{uuid.uuid4().hex[:12]}",
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        transport="websockets" if transport in ("websockets", "wss") else "tcp",
    )
    client.connect_timeout = timeout
    if transport == "tls":
        if broker.tls_port is None or broker.ca_file is None:
            raise ValueError(f"{broker!r} has no TLS listener")
        # Default context: verifies the chain and that the cert names 127.0.0.1.
        cert = key = None
        if client_cert:
            tls = getattr(broker, "tls", None)
            if tls is None or tls.client_cert_file is None:
                raise ValueError(f"{broker!r} has no client certificate to show")
            cert, key = str(tls.client_cert_file), str(tls.client_key_file)
        client.tls_set(ca_certs=str(broker.ca_file), certfile=cert, keyfile=key)
        port = broker.tls_port
    elif transport == "websockets":
        if broker.ws_port is None:
            raise ValueError(f"{broker!r} has no websockets listener")
        client.ws_set_options(path="/mqtt")
        port = broker.ws_port
    elif transport == "wss":
        if broker.wss_port is None or broker.ca_file is None:
            raise ValueError(f"{broker!r} has no websockets listener with TLS")
        client.tls_set(ca_certs=str(broker.ca_file))
        client.ws_set_options(path="/mqtt")
        port = broker.wss_port
    else:
        port = broker.port
    if username is not None:
        client.username_pw_set(username, password)

    connack = threading.Event()
    result: list[mqtt.ReasonCode] = []

    def on_connect(
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: mqtt.ReasonCode,
        _properties: mqtt.Properties | None,
    ) -> None:
        result.append(reason_code)
        connack.set()

    client.on_connect = on_connect
    client.connect(broker.host, port, keepalive=keepalive)
    # Drive the loop ourselves until the CONNACK: a background loop would keep retrying a
    # refused connect, and stopping it then costs up to a second of paho's reconnect sleep.
    deadline = time.monotonic() + timeout
    while not connack.is_set():
        rc = client.loop(timeout=0.1)
        if connack.is_set():
            break
        if rc != mqtt.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
            close_client(client)
            why = mqtt.error_string(rc) if rc != mqtt.MQTT_ERR_SUCCESS else f"{timeout}s timeout"
            raise ConnectError(f"no CONNACK from {broker!r} via {transport}: {why}")
    if result[0].is_failure:
        close_client(client)
        raise ConnectError(f"connect refused: {result[0]}", reason_code=result[0])
    client.loop_start()
    return client


def close_client(client: mqtt.Client) -> None:
    """Disconnect and stop the network loop; fine on dead or refused connections."""
    close_clients([client])


def close_clients(clients: list[mqtt.Client]) -> None:
    """Close several clients: all disconnects first, then the (up to 1 s) loop joins.

    One at a time, a client whose broker was restarted wakes from paho's reconnect sleep
    while we wait for another's loop to stop, and reconnects half-way before we reach it;
    amqtt then hangs on shutdown waiting for that half-open session.
    """
    for client in clients:
        with contextlib.suppress(Exception):
            client.disconnect()
    for client in clients:
        with contextlib.suppress(Exception):
            client.loop_stop()


def publish(
    client: mqtt.Client,
    topic: str,
    payload: bytes | str,
    qos: int = 1,
    *,
    retain: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> mqtt.MQTTMessageInfo:
    """Publish and wait until done: the PUBACK for QoS 1, PUBCOMP for 2, the write for 0."""
    info = client.publish(topic, payload, qos=qos, retain=retain)
    info.wait_for_publish(timeout)
    if not info.is_published():
        raise TimeoutError(f"publish to {topic!r} (QoS {qos}) not acknowledged within {timeout}s")
    return info


@contextlib.contextmanager
def json_publisher(broker: BrokerProcess) -> Iterator[Callable[[str, Any], None]]:
    """A device's side of the broker: publish a value as JSON, or bytes as they are."""
    client = connect_client(broker)

    def send(topic: str, payload: Any) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        publish(client, topic, body)

    try:
        yield send
    finally:
        close_clients([client])


class Subscriber:
    """Collects the messages one paho client receives; takes over its on_message/on_subscribe."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self._cond = threading.Condition()
        self._messages: list[mqtt.MQTTMessage] = []
        self._subacks: dict[int, list[mqtt.ReasonCode]] = {}
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe

    def subscribe(self, topic: str, qos: int = 1, *, timeout: float = DEFAULT_TIMEOUT) -> Self:
        """Subscribe and wait for the SUBACK, so a publish right after cannot be missed."""
        rc, mid = self.client.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise RuntimeError(f"subscribe to {topic!r} failed: {mqtt.error_string(rc)}")
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                raise TimeoutError(f"no SUBACK for {topic!r} within {timeout}s")
            codes = self._subacks.pop(mid)
        if any(code.is_failure for code in codes):
            raise RuntimeError(f"subscription to {topic!r} refused: {codes}")
        return self

    def wait_for(
        self,
        match: str | Callable[[mqtt.MQTTMessage], bool],
        timeout: float = DEFAULT_TIMEOUT,
        *,
        count: int = 1,
    ) -> list[mqtt.MQTTMessage]:
        """Wait until ``count`` received messages match; return all matching so far.

        ``match`` is a topic filter (wildcards allowed) or a predicate on the message.
        """
        if isinstance(match, str):
            topic_filter = match

            def predicate(msg: mqtt.MQTTMessage) -> bool:
                return mqtt.topic_matches_sub(topic_filter, msg.topic)
        else:
            predicate = match

        def matching() -> list[mqtt.MQTTMessage]:
            return [m for m in self._messages if predicate(m)]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout):
                seen = [(m.topic, m.payload[:60]) for m in self._messages]
                raise TimeoutError(
                    f"{len(matching())}/{count} messages matching {match!r} within {timeout}s; "
                    f"received: {seen}"
                )
            return matching()

    @property
    def messages(self) -> list[mqtt.MQTTMessage]:
        """Everything received so far."""
        with self._cond:
            return list(self._messages)

    def clear(self) -> None:
        """Forget received messages."""
        with self._cond:
            self._messages.clear()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._messages.append(msg)
            self._cond.notify_all()

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason_codes: list[mqtt.ReasonCode],
        _properties: mqtt.Properties | None,
    ) -> None:
        with self._cond:
            self._subacks[mid] = list(reason_codes)
            self._cond.notify_all()
