"""Server TLS and mutual TLS from the ``tls_*`` settings.

``tls_cert_file`` and ``tls_key_file`` together turn TLS on; adding
``tls_client_ca_file`` requires every client to present a certificate signed
by one of those CAs (mutual TLS). Plaintext is then refused on that port.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from corral.config import ConfigError, ConfigProblem, OperatorConfig


def server_credentials(settings: OperatorConfig) -> grpc.ServerCredentials | None:
    """The server's TLS credentials, or None to serve plaintext.

    Raises:
        ConfigError: a file is missing, unreadable or not PEM, or the settings
            are incomplete. Key material never appears in the message.
    """
    cert, key, client_ca = (
        settings.tls_cert_file,
        settings.tls_key_file,
        settings.tls_client_ca_file,
    )
    problems: list[ConfigProblem] = []
    if cert is None and key is None:
        if client_ca is not None:
            problems.append(
                ConfigProblem(
                    "configuration",
                    "tls_client_ca_file",
                    "mutual TLS needs tls_cert_file and tls_key_file as well",
                )
            )
            raise ConfigError(problems, None)
        return None
    if cert is None or key is None:
        missing = "tls_cert_file" if cert is None else "tls_key_file"
        problems.append(
            ConfigProblem(
                "configuration",
                missing,
                "TLS needs both tls_cert_file and tls_key_file",
            )
        )
        raise ConfigError(problems, None)

    cert_pem = _read_pem(cert, "tls_cert_file", b"CERTIFICATE", problems)
    key_pem = _read_pem(key, "tls_key_file", b"PRIVATE KEY", problems)
    ca_pem = (
        _read_pem(client_ca, "tls_client_ca_file", b"CERTIFICATE", problems)
        if client_ca is not None
        else None
    )
    if problems:
        raise ConfigError(problems, None)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)],
        root_certificates=ca_pem,
        require_client_auth=ca_pem is not None,
    )


def _read_pem(
    path: Path, field: str, marker: bytes, problems: list[ConfigProblem]
) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        reason = f"cannot be read: {error.strerror or type(error).__name__}"
        problems.append(ConfigProblem(str(path), field, reason))
        return b""
    if b"-----BEGIN " not in data or marker not in data:
        reason = f"is not a PEM file holding a {marker.decode().lower()}"
        problems.append(ConfigProblem(str(path), field, reason))
    return data
