"""TLS for broker sessions: the context (CA, client certificate), and failures in plain words.

The words are for the person setting up the broker connection: they name the setting to
change (MQTT_CA_FILE, MQTT_CLIENT_CERT, MQTT_CLIENT_KEY).
"""

from __future__ import annotations

import ssl

# TLS alerts as a person setting up the broker connection understands them.
_TLS_REASONS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the broker requires a client certificate "
    "(set MQTT_CLIENT_CERT and MQTT_CLIENT_KEY)",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "TLS handshake refused by the broker (does it require a "
    "client certificate? set MQTT_CLIENT_CERT and MQTT_CLIENT_KEY)",
    "TLSV1_ALERT_UNKNOWN_CA": "the broker does not trust our client certificate (MQTT_CLIENT_CERT)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the broker refused our client certificate (MQTT_CLIENT_CERT)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the broker says our client certificate has expired",
}


def context(ca_file: str | None, client_cert: str | None, client_key: str | None) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` (or the system's CAs), showing our certificate."""
    result = ssl.create_default_context(cafile=ca_file)
    if client_cert:
        result.load_cert_chain(client_cert, client_key)
    return result


def closed_before_connack(tls: bool, client_cert: str | None) -> str:
    """Why a broker closes before its CONNACK: where TLS 1.3 reports a refused certificate."""
    if not tls:
        return "the broker closed the connection before accepting it"
    if client_cert:
        return (
            "the broker closed the TLS connection before accepting it: does it trust "
            "the client certificate (MQTT_CLIENT_CERT)?"
        )
    return (
        "the broker closed the TLS connection before accepting it: it may require a client "
        "certificate (set MQTT_CLIENT_CERT and MQTT_CLIENT_KEY)"
    )


def describe(exc: BaseException) -> str:
    """A connection failure in one short line; TLS alerts in plain words."""
    if isinstance(exc, ssl.SSLError) and exc.reason in _TLS_REASONS:
        return f"TLS: {_TLS_REASONS[exc.reason]}"
    text = str(exc) or type(exc).__name__
    return text[:300]
