"""Tests for corral.core.environment: layering, secrets and builders."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from corral.core.environment import (
    EnvironmentBuilderError,
    InvalidBuilderError,
    MissingSecretError,
    build_environment,
    load_builder,
    secret_values,
)
from corral.core.model import ContainerSpec
from corral.runtimes.base import WorkloadStartError

OPERATOR_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/corral",
    "LANG": "C.UTF-8",
    "AWS_SECRET_ACCESS_KEY": "operator-credential",
    "API_KEY": "s3cr3t-api-key",
    "DB_PASSWORD": "hunter2-password",
}


def build(
    spec: ContainerSpec,
    *,
    environ: Mapping[str, str] = OPERATOR_ENV,
    builder: Any = None,
    name_key: str = "CONTAINER_NAME",
) -> dict[str, str]:
    return build_environment(
        name="web",
        instance_id="inst-1",
        spec=spec,
        operator_environ=environ,
        builder=builder,
        name_key=name_key,
        addr="127.0.0.1:50051",
        token="tok-1",
    )


def test_environment_is_passthrough_then_spec_then_corral() -> None:
    env = build(ContainerSpec(env={"LOG_LEVEL": "info"}))

    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/corral",
        "LANG": "C.UTF-8",
        "LOG_LEVEL": "info",
        "CONTAINER_NAME": "web",
        "CORRAL_INSTANCE_ID": "inst-1",
        "CORRAL_ADDR": "127.0.0.1:50051",
        "CORRAL_TOKEN": "tok-1",
    }


def test_operator_secrets_do_not_leak_without_a_reference() -> None:
    env = build(ContainerSpec())

    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "operator-credential" not in env.values()


def test_all_passthrough_variables_are_inherited_when_set() -> None:
    names = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"]
    environ = {name: f"v-{name}" for name in [*names, "PYTHONPATH", "SHELL"]}

    env = build(ContainerSpec(), environ=environ)

    assert {k: env[k] for k in [*names, "PYTHONPATH"]} == {
        k: f"v-{k}" for k in [*names, "PYTHONPATH"]
    }
    assert "SHELL" not in env


def test_spec_env_overrides_passthrough() -> None:
    assert build(ContainerSpec(env={"PATH": "/opt/bin"}))["PATH"] == "/opt/bin"


def test_secret_references_are_resolved_inside_values_and_repeatedly() -> None:
    spec = ContainerSpec(
        env={
            "API_KEY": "${secret:API_KEY}",
            "DSN": "postgres://app:${secret:DB_PASSWORD}@db/${secret:DB_PASSWORD}",
            "PLAIN": "$API_KEY {secret:API_KEY}",
        }
    )

    env = build(spec)

    assert env["API_KEY"] == "s3cr3t-api-key"
    assert env["DSN"] == "postgres://app:hunter2-password@db/hunter2-password"
    assert env["PLAIN"] == "$API_KEY {secret:API_KEY}"


def test_missing_secret_names_it_but_never_a_value() -> None:
    spec = ContainerSpec(
        env={"A": "${secret:API_KEY}", "TOKEN": "x-${secret:NOT_SET}-y"}
    )

    with pytest.raises(MissingSecretError) as caught:
        build(spec)

    message = str(caught.value)
    assert caught.value.secret == "NOT_SET"
    assert caught.value.variable == "TOKEN"
    assert "NOT_SET" in message and "TOKEN" in message
    assert all(value not in message for value in OPERATOR_ENV.values())


def test_empty_secret_name_is_missing() -> None:
    with pytest.raises(MissingSecretError):
        build(ContainerSpec(env={"A": "${secret:}"}))


def test_builder_output_overrides_spec_env_but_not_corral_variables() -> None:
    seen: list[tuple[ContainerSpec, Mapping[str, str]]] = []

    def builder(spec: ContainerSpec, environ: Mapping[str, str]) -> dict[str, str]:
        seen.append((spec, environ))
        return {
            "QUEUE": str(spec.config["queue"]),
            "LOG_LEVEL": "debug",
            "CORRAL_TOKEN": "forged",
            "APP_NAME": "forged",
        }

    spec = ContainerSpec(env={"LOG_LEVEL": "info"}, config={"queue": "jobs"})
    env = build(spec, builder=builder, name_key="APP_NAME")

    assert seen == [(spec, OPERATOR_ENV)]
    assert env["QUEUE"] == "jobs"
    assert env["LOG_LEVEL"] == "debug"
    assert env["CORRAL_TOKEN"] == "tok-1"
    assert env["APP_NAME"] == "web"
    assert "CONTAINER_NAME" not in env


def test_failing_builder_fails_the_start_without_leaking_secrets() -> None:
    def builder(spec: ContainerSpec, environ: Mapping[str, str]) -> dict[str, str]:
        raise RuntimeError(f"cannot use key {environ['API_KEY']}")

    spec = ContainerSpec(env={"K": "${secret:API_KEY}"})
    with pytest.raises(EnvironmentBuilderError) as caught:
        build(spec, builder=builder)

    assert isinstance(caught.value, WorkloadStartError)
    assert "RuntimeError" in str(caught.value)
    assert "s3cr3t-api-key" not in str(caught.value)


@pytest.mark.parametrize(
    "result",
    [["A", "B"], {"A": 1}, {1: "A"}, None],
    ids=["list", "int-value", "int-key", "none"],
)
def test_builder_must_return_strings(result: object) -> None:
    with pytest.raises(EnvironmentBuilderError, match="mapping of strings"):
        build(ContainerSpec(), builder=lambda spec, environ: result)


def test_secret_values_lists_resolved_secrets_only() -> None:
    spec = ContainerSpec(
        env={
            "A": "${secret:API_KEY}",
            "B": "x${secret:DB_PASSWORD}${secret:API_KEY}",
            "C": "${secret:NOT_SET}",
            "D": "${secret:EMPTY}",
            "E": "plain",
        }
    )
    environ = {**OPERATOR_ENV, "EMPTY": ""}

    assert secret_values(spec, environ) == {"s3cr3t-api-key", "hunter2-password"}


# --- load_builder ------------------------------------------------------------


@pytest.fixture
def builder_module(tmp_path: Path) -> Iterator[str]:
    """A throwaway importable module holding builders."""
    name = "corral_test_builders"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            def build(spec, environ):
                return {"FROM_BUILDER": "yes"}

            class Builders:
                @staticmethod
                def nested(spec, environ):
                    return {}

            NOT_CALLABLE = 3
            """
        )
    )
    (tmp_path / "corral_broken_builder.py").write_text("raise RuntimeError('boom')\n")
    sys.path.insert(0, str(tmp_path))
    yield name
    sys.path.remove(str(tmp_path))
    sys.modules.pop(name, None)
    sys.modules.pop("corral_broken_builder", None)


def test_load_builder_imports_module_function(builder_module: str) -> None:
    builder = load_builder(f"{builder_module}:build")
    assert builder(ContainerSpec(), {}) == {"FROM_BUILDER": "yes"}
    assert callable(load_builder(f"{builder_module}:Builders.nested"))


@pytest.mark.parametrize(
    ("ref", "detail"),
    [
        ("no_colon_here", "must look like"),
        (":build", "must look like"),
        ("module:", "must look like"),
        ("corral_no_such_module_x:build", "cannot import module"),
        ("corral_test_builders:missing", "has no 'missing'"),
        ("corral_test_builders:NOT_CALLABLE", "not a callable"),
        ("corral_broken_builder:build", "RuntimeError: boom"),
    ],
)
def test_load_builder_explains_what_is_wrong(
    builder_module: str, ref: str, detail: str
) -> None:
    with pytest.raises(InvalidBuilderError, match=detail):
        load_builder(ref)
