"""The environment each workload starts with.

Assembled in layers, each overriding the one before (DESIGN.md,
"Configuration"):

1. a small passthrough from the operator's own environment (``PATH``,
   ``HOME``, locale and the like), never anything else, so the operator's
   credentials do not leak into workloads by accident;
2. the spec's ``env``, with every ``${secret:NAME}`` replaced by the
   operator's ``NAME`` variable (a reference may sit inside a longer value
   and appear several times; there is no escape syntax);
3. what the optional environment builder returns for the spec;
4. the variables corral owns: the container name (key configurable),
   ``CORRAL_INSTANCE_ID``, ``CORRAL_ADDR`` and ``CORRAL_TOKEN``.

Secret values never appear in an error raised here; :func:`secret_values`
gives the resolved values to whoever must redact them from output.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from corral.core.model import ContainerSpec
from corral.runtimes.base import WorkloadStartError

__all__ = [
    "PASSTHROUGH_VARIABLES",
    "EnvironmentBuilder",
    "EnvironmentBuilderError",
    "InvalidBuilderError",
    "MissingSecretError",
    "build_environment",
    "load_builder",
    "secret_values",
]

EnvironmentBuilder = Callable[[ContainerSpec, Mapping[str, str]], Mapping[str, str]]
"""A callable named in the fleet file: given the spec and the operator's
environment, returns extra variables for the workload."""

PASSTHROUGH_VARIABLES = (
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
)
"""Operator variables every workload inherits when they are set. Enough to
find programs and speak the locale; nothing that could carry a credential."""

_SECRET_REFERENCE = re.compile(r"\$\{secret:([^}]*)\}")
_MESSAGE_LIMIT = 200


class MissingSecretError(Exception):
    """A ``${secret:NAME}`` reference names a variable the operator lacks.

    Attributes:
        secret: the secret's name (never its value).
        variable: the workload variable that refers to it.
    """

    def __init__(self, secret: str, variable: str) -> None:
        shown = secret if secret else "(empty)"
        super().__init__(
            f"env {variable} refers to secret {shown}, which is not set in the "
            f"operator's environment; set {shown} where corral runs, or remove "
            "the reference from the spec"
        )
        self.secret = secret
        self.variable = variable


class EnvironmentBuilderError(WorkloadStartError):
    """The environment builder raised or returned something other than a
    mapping of strings to strings. The instance fails to start."""


class InvalidBuilderError(ValueError):
    """An environment builder reference cannot be loaded."""


def build_environment(
    *,
    name: str,
    instance_id: str,
    spec: ContainerSpec,
    operator_environ: Mapping[str, str],
    builder: EnvironmentBuilder | None,
    name_key: str,
    addr: str,
    token: str,
) -> dict[str, str]:
    """Assembles the complete environment of one instance.

    Args:
        name: the container's name, set under ``name_key``.
        instance_id: the instance being started (``CORRAL_INSTANCE_ID``).
        spec: the container's spec; its ``env`` may hold secret references.
        operator_environ: the operator's own environment, the source of the
            passthrough variables and of secrets.
        builder: the optional environment builder.
        name_key: the variable that carries the name, ``CONTAINER_NAME`` by
            default.
        addr: the address the workload reports to (``CORRAL_ADDR``).
        token: the instance's reporting token (``CORRAL_TOKEN``).

    Returns:
        A new dict, layered as the module docstring describes.

    Raises:
        MissingSecretError: a referenced secret is not set.
        EnvironmentBuilderError: the builder failed or returned bad data.
    """
    env = {
        key: operator_environ[key]
        for key in PASSTHROUGH_VARIABLES
        if key in operator_environ
    }
    for key, value in spec.env.items():
        env[key] = _resolve(value, key, operator_environ)

    if builder is not None:
        env.update(_call_builder(builder, spec, operator_environ))

    env[name_key] = name
    env["CORRAL_INSTANCE_ID"] = instance_id
    env["CORRAL_ADDR"] = addr
    env["CORRAL_TOKEN"] = token
    return env


def _resolve(value: str, variable: str, environ: Mapping[str, str]) -> str:
    """Replaces every secret reference in ``value``."""

    def lookup(match: re.Match[str]) -> str:
        secret = match.group(1)
        if not secret or secret not in environ:
            raise MissingSecretError(secret, variable)
        return environ[secret]

    return _SECRET_REFERENCE.sub(lookup, value)


def _call_builder(
    builder: EnvironmentBuilder, spec: ContainerSpec, environ: Mapping[str, str]
) -> dict[str, str]:
    """Calls the builder and checks what it returns.

    Its exception message is kept for the person debugging it, truncated
    and with the spec's secret values masked, since a builder is handed the
    whole operator environment.
    """
    try:
        result = builder(spec, environ)
    except Exception as error:  # any failure of user code fails the start
        message = _redact(str(error), secret_values(spec, environ))
        raise EnvironmentBuilderError(
            f"environment builder failed: {type(error).__name__}: "
            f"{message[:_MESSAGE_LIMIT]}"
        ) from error

    if not isinstance(result, Mapping):
        raise EnvironmentBuilderError(
            "environment builder must return a mapping of strings to strings, "
            f"got {type(result).__name__}"
        )
    for key, value in result.items():
        if not isinstance(key, str) or not isinstance(value, str):
            shown = key if isinstance(key, str) else type(key).__name__
            raise EnvironmentBuilderError(
                "environment builder must return a mapping of strings to strings; "
                f"entry {shown[:_MESSAGE_LIMIT]} has a {type(value).__name__} value"
            )
    return dict(result)


def _redact(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def secret_values(spec: ContainerSpec, operator_environ: Mapping[str, str]) -> set[str]:
    """Returns the values the spec's secret references resolve to.

    For redaction: whoever shows workload output or error text masks these.
    References to unset secrets and empty values are skipped.

    Args:
        spec: the container's spec.
        operator_environ: the operator's own environment.

    Returns:
        The non-empty resolved secret values.
    """
    names = {
        match.group(1)
        for value in spec.env.values()
        for match in _SECRET_REFERENCE.finditer(value)
    }
    return {operator_environ[n] for n in names if operator_environ.get(n)}


def load_builder(ref: str, search_path: Path | None = None) -> EnvironmentBuilder:
    """Imports an environment builder named ``"package.module:function"``.

    The part after the colon may be a dotted path inside the module
    (``"pkg.mod:Builder.build"``).

    Args:
        ref: the reference, as written in the fleet file.
        search_path: a directory to import from as well, normally the fleet
            file's own, so a builder can live next to the file that names it.

    Returns:
        The callable.

    Raises:
        InvalidBuilderError: the reference is malformed, the module cannot be
            imported, the attribute is missing or is not callable.
    """
    module_name, colon, attribute = ref.partition(":")
    if not colon or not module_name or not attribute:
        raise InvalidBuilderError(
            f'env_builder {ref!r} must look like "package.module:function"'
        )

    if search_path is not None and str(search_path) not in sys.path:
        sys.path.insert(0, str(search_path))
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as error:
        raise InvalidBuilderError(
            f"env_builder {ref!r}: cannot import module {module_name!r}: {error}; "
            "is it installed, or on PYTHONPATH?"
        ) from error
    except Exception as error:  # the module's own code failed while importing
        raise InvalidBuilderError(
            f"env_builder {ref!r}: importing {module_name!r} failed: "
            f"{type(error).__name__}: {error}"
        ) from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as error:
            raise InvalidBuilderError(
                f"env_builder {ref!r}: module {module_name!r} has no {attribute!r}"
            ) from error

    if not callable(target):
        raise InvalidBuilderError(
            f"env_builder {ref!r}: {attribute!r} is a {type(target).__name__}, "
            "not a callable"
        )
    return target
