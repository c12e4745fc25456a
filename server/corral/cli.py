"""The ``corral`` command: ``serve`` runs the operator; the rest are clients.

Client commands reach the operator at ``--addr`` / ``CORRAL_ADDR``
(default ``127.0.0.1:50051``) and print tables, or JSON with ``--json``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from corral import logs
from corral.config import ConfigError, load_config


@click.group()
def main() -> None:
    """corral keeps a fleet of workloads alive."""


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="CORRAL_CONFIG",
    help="Fleet file (TOML).",
)
@click.option("--listen", help="Address to serve on, such as 127.0.0.1:50051.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Database and logs.")
@click.option("--runtime", type=click.Choice(["process", "docker"]), help="Runtime.")
@click.option("--database-url", help="SQLAlchemy URL; default: SQLite in the data dir.")
@click.option("--reconcile-interval", help='Such as "60s"; "0s" disables.')
@click.option(
    "--insecure",
    is_flag=True,
    default=None,
    help="Serve beyond loopback with no authentication configured.",
)
@click.option("--tls-cert", type=click.Path(path_type=Path), help="PEM certificate.")
@click.option("--tls-key", type=click.Path(path_type=Path), help="PEM private key.")
@click.option(
    "--tls-client-ca",
    type=click.Path(path_type=Path),
    help="PEM CA; clients must present a certificate it signed (mutual TLS).",
)
@click.option(
    "--log-level", default="info", envvar="CORRAL_LOG_LEVEL", show_default=True
)
@click.option(
    "--log-format",
    type=click.Choice(["logfmt", "json"]),
    default="logfmt",
    envvar="CORRAL_LOG_FORMAT",
    show_default=True,
)
def serve(
    config_path: Path | None,
    listen: str | None,
    data_dir: Path | None,
    runtime: str | None,
    database_url: str | None,
    reconcile_interval: str | None,
    insecure: bool | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run the operator: serve the fleet file's containers over gRPC."""
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "listen": listen,
            "data_dir": data_dir,
            "runtime": runtime,
            "database_url": database_url,
            "reconcile_interval": reconcile_interval,
            "insecure": insecure or None,
            "tls_cert_file": tls_cert,
            "tls_key_file": tls_key,
            "tls_client_ca_file": tls_client_ca,
        }.items()
        if value is not None
    }
    try:
        config = load_config(config_path, environ=os.environ, overrides=overrides)
    except ConfigError as error:
        click.echo(f"corral: invalid configuration:\n{error}", err=True)
        sys.exit(2)
    logs.configure(log_level, log_format)

    from corral.api.server import CorralServer, StartupError
    from corral.core.environment import InvalidBuilderError

    async def run() -> None:
        try:
            server = CorralServer(config)
        except (InvalidBuilderError, ConfigError) as error:
            click.echo(f"corral: invalid configuration:\n{error}", err=True)
            sys.exit(2)
        try:
            await server.start()
        except StartupError as error:
            click.echo(f"corral: {error}", err=True)
            sys.exit(2)
        click.echo(f"corral serving on {server.address}", err=True)
        await server.wait_for_termination()

    asyncio.run(run())


from corral import cli_client  # noqa: E402,F401  # registers the client commands
