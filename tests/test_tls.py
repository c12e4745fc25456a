"""TLS and mutual TLS: certificates generated here, connections accepted and
refused, through the Python SDK, a raw channel and the CLI."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.api import tls
from corral.config import ConfigError, load_config
from corral.sdk import AsyncClient, UnauthenticatedError, UnavailableError
from corral.v1 import operator_pb2, operator_pb2_grpc
from tests.harness import ServerFactory
from tests.test_auth import ADMIN, TOKENS, run_cli


@dataclass
class Issued:
    """A certificate and its key, as PEM bytes and as files."""

    cert: bytes
    key: bytes
    cert_file: Path
    key_file: Path


class Authority:
    """A throwaway certificate authority."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._subject = subject
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self.file = directory / f"{name}-ca.pem"
        self.file.write_bytes(self.pem)

    def issue(self, name: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
            )
        cert = builder.sign(self._key, hashes.SHA256())
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cert_file = self.directory / f"{name}.pem"
        key_file = self.directory / f"{name}-key.pem"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        return Issued(cert_pem, key_pem, cert_file, key_file)


@dataclass
class Pki:
    ca: Authority
    server: Issued
    client: Issued
    stranger: Issued
    """A client certificate signed by another CA."""


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca = Authority(directory, "corral-test")
    other = Authority(directory, "someone-else")
    return Pki(
        ca=ca,
        server=ca.issue("server", server=True),
        client=ca.issue("client", server=False),
        stranger=other.issue("stranger", server=False),
    )


async def info(address: str, **credentials: object) -> str:
    """GetOperatorInfo through the SDK; the version on success."""
    async with AsyncClient(address, timeout=5, **credentials) as client:  # type: ignore[arg-type]
        reply = await client.get_operator_info()
    return str(reply.version)


async def plaintext_works(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = operator_pb2_grpc.OperatorServiceStub(channel)
        try:
            await stub.GetOperatorInfo(operator_pb2.GetOperatorInfoRequest(), timeout=5)
        except grpc.aio.AioRpcError:
            return False
    return True


async def test_tls_is_accepted_and_plaintext_refused(
    servers: ServerFactory, pki: Pki
) -> None:
    h = await servers.start(
        tls_cert_file=pki.server.cert_file, tls_key_file=pki.server.key_file
    )
    assert await info(h.address, root_certificates=pki.ca.pem)
    assert not await plaintext_works(h.address)
    with pytest.raises(UnavailableError):  # a server the client's roots do not trust
        await info(h.address, root_certificates=Authority(pki.ca.directory, "x").pem)


async def test_mutual_tls_needs_a_client_certificate_from_the_ca(
    servers: ServerFactory, pki: Pki
) -> None:
    h = await servers.start(
        tls_cert_file=pki.server.cert_file,
        tls_key_file=pki.server.key_file,
        tls_client_ca_file=pki.ca.file,
    )
    assert await info(
        h.address,
        root_certificates=pki.ca.pem,
        private_key=pki.client.key,
        certificate_chain=pki.client.cert,
    )
    assert not await plaintext_works(h.address)
    with pytest.raises(UnavailableError):
        await info(h.address, root_certificates=pki.ca.pem)
    with pytest.raises(UnavailableError):
        await info(
            h.address,
            root_certificates=pki.ca.pem,
            private_key=pki.stranger.key,
            certificate_chain=pki.stranger.cert,
        )


async def test_tokens_work_over_mutual_tls(servers: ServerFactory, pki: Pki) -> None:
    h = await servers.start(
        environ=TOKENS,
        tls_cert_file=pki.server.cert_file,
        tls_key_file=pki.server.key_file,
        tls_client_ca_file=pki.ca.file,
    )
    credentials = {
        "root_certificates": pki.ca.pem,
        "private_key": pki.client.key,
        "certificate_chain": pki.client.cert,
    }
    assert await info(h.address, token=ADMIN, **credentials)
    with pytest.raises(UnauthenticatedError):
        await info(h.address, **credentials)


async def test_the_cli_speaks_mutual_tls(servers: ServerFactory, pki: Pki) -> None:
    h = await servers.start(
        tls_cert_file=pki.server.cert_file,
        tls_key_file=pki.server.key_file,
        tls_client_ca_file=pki.ca.file,
    )
    ok = await run_cli(
        h.address,
        "info",
        "--ca-cert",
        str(pki.ca.file),
        "--cert",
        str(pki.client.cert_file),
        "--key",
        str(pki.client.key_file),
    )
    assert ok.code == 0, ok.err
    assert "Version:" in ok.out
    via_env = await run_cli(
        h.address,
        "ls",
        env={
            "CORRAL_CA_CERT": str(pki.ca.file),
            "CORRAL_CERT": str(pki.client.cert_file),
            "CORRAL_KEY": str(pki.client.key_file),
        },
    )
    assert via_env.code == 0, via_env.err
    refused = await run_cli(h.address, "info", "--ca-cert", str(pki.ca.file))
    assert refused.code == 1
    half = await run_cli(h.address, "info", "--cert", str(pki.client.cert_file))
    assert half.code == 2
    assert "--cert and --key go together" in half.err


def test_incomplete_or_unreadable_tls_settings_are_refused(
    tmp_path: Path, pki: Pki
) -> None:
    def credentials(**overrides: object) -> object:
        config = load_config(
            None, environ={}, overrides={"data_dir": tmp_path, **overrides}
        )
        return tls.server_credentials(config.operator)

    assert credentials() is None
    cases = [
        {"tls_cert_file": pki.server.cert_file},
        {"tls_client_ca_file": pki.ca.file},
        {"tls_cert_file": pki.server.cert_file, "tls_key_file": tmp_path / "missing"},
        {"tls_cert_file": pki.server.key_file, "tls_key_file": pki.server.key_file},
    ]
    for overrides in cases:
        with pytest.raises(ConfigError) as refused:
            credentials(**overrides)
        assert b"PRIVATE" not in str(refused.value).encode()
