"""Tests for corral.config: the fleet file, CORRAL_* variables and flags."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from corral.config import (
    ENV_VARIABLES,
    ConfigError,
    FleetConfig,
    OperatorConfig,
    load_config,
)
from corral.core.model import ContainerSpec, RestartWhen

DESIGN_SKETCH = """
[operator]
listen = "127.0.0.1:50051"
runtime = "process"                 # or "docker"
reconcile_interval = "60s"
allow_ad_hoc_containers = true
container_name_env_key = "CONTAINER_NAME"

[[containers]]                      # the min replica set
name = "web"
command = ["python3", "-m", "http.server", "8080"]
env = { LOG_LEVEL = "info", API_KEY = "${secret:API_KEY}" }
restart_policy = { when = "always", crash = { window = "10m", allowed_crashes = 3 } }

[[containers]]
name = "worker"
command = ["python3", "worker.py"]
config = { queue = "jobs", concurrency = 4 }   # handed to the environment builder
stop_signal = "SIGTERM"
stop_grace_period = "10s"
restart_policy.when = "on_failure"
restart_policy.success_exit_codes = [0, 75]
restart_policy.backoff = { initial = "1s", max = "60s", multiplier = 2.0, reset_after = "60s" }
"""  # noqa: E501  # verbatim copy of the DESIGN.md sketch

WEB = """
[[containers]]
name = "web"
command = ["python3", "app.py"]
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs the test from an empty working directory."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write(directory: Path, text: str, name: str = "fleet.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def load(
    path: Path | None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> FleetConfig:
    return load_config(path, environ=environ or {}, overrides=overrides)


def problems_of(error: ConfigError) -> list[tuple[str, str]]:
    return [(p.field, p.reason) for p in error.problems]


def fails(
    path: Path | None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(path, environ, overrides)
    return caught.value


# --- the happy path ----------------------------------------------------------


def test_design_sketch_loads(in_tmp: Path) -> None:
    path = write(in_tmp, DESIGN_SKETCH)

    config = load(path)

    assert config.operator == OperatorConfig(
        data_dir=in_tmp / "data", config_file=in_tmp / "fleet.toml"
    )
    names = [name for name, _ in config.containers]
    assert names == ["web", "worker"]
    web, worker = (spec for _, spec in config.containers)
    assert web.restart_policy.when is RestartWhen.ALWAYS
    assert web.env["API_KEY"] == "${secret:API_KEY}"
    assert worker.config == {"queue": "jobs", "concurrency": 4}
    assert worker.restart_policy.success_exit_codes == (0, 75)


def test_no_file_gives_defaults_and_no_containers(in_tmp: Path) -> None:
    config = load(None)

    assert config.containers == ()
    assert config.operator == OperatorConfig(data_dir=in_tmp / "data")
    assert config.operator.config_file is None


def test_every_operator_setting_is_read_from_the_file(in_tmp: Path) -> None:
    path = write(
        in_tmp,
        """
        [operator]
        listen = "0.0.0.0:6000"
        runtime = "docker"
        reconcile_interval = "0s"
        allow_ad_hoc_containers = false
        container_name_env_key = "APP_NAME"
        data_dir = "/var/lib/corral"
        database_url = "postgresql+psycopg://db/corral"
        env_builder = "myapp.env:build"
        log_max_bytes = 1024
        log_backups = 0
        shutdown_grace = "30s"
        """,
    )

    assert load(path).operator == OperatorConfig(
        listen="0.0.0.0:6000",
        runtime="docker",
        reconcile_interval=timedelta(0),
        allow_ad_hoc_containers=False,
        container_name_env_key="APP_NAME",
        data_dir=Path("/var/lib/corral"),
        database_url="postgresql+psycopg://db/corral",
        env_builder="myapp.env:build",
        log_max_bytes=1024,
        log_backups=0,
        shutdown_grace=timedelta(seconds=30),
        config_file=in_tmp / "fleet.toml",
    )


def test_every_setting_has_a_corral_variable() -> None:
    fields = {f.name for f in OperatorConfig.__dataclass_fields__.values()}
    assert set(ENV_VARIABLES.values()) == fields - {"config_file"}
    assert ENV_VARIABLES["CORRAL_RECONCILE_INTERVAL"] == "reconcile_interval"


def test_settings_are_read_from_the_environment(in_tmp: Path) -> None:
    environ = {
        "CORRAL_LISTEN": "127.0.0.1:7000",
        "CORRAL_RUNTIME": "docker",
        "CORRAL_RECONCILE_INTERVAL": "5m",
        "CORRAL_ALLOW_AD_HOC_CONTAINERS": "false",
        "CORRAL_CONTAINER_NAME_ENV_KEY": "NAME",
        "CORRAL_DATA_DIR": "state",
        "CORRAL_DATABASE_URL": "sqlite:///x.db",
        "CORRAL_ENV_BUILDER": "pkg.mod:fn",
        "CORRAL_LOG_MAX_BYTES": "2048",
        "CORRAL_LOG_BACKUPS": "7",
        "CORRAL_SHUTDOWN_GRACE": "1s",
        "CORRAL_UNRELATED": "ignored",
    }

    assert load(None, environ).operator == OperatorConfig(
        listen="127.0.0.1:7000",
        runtime="docker",
        reconcile_interval=timedelta(minutes=5),
        allow_ad_hoc_containers=False,
        container_name_env_key="NAME",
        data_dir=in_tmp / "state",
        database_url="sqlite:///x.db",
        env_builder="pkg.mod:fn",
        log_max_bytes=2048,
        log_backups=7,
        shutdown_grace=timedelta(seconds=1),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False)],
)
def test_boolean_variables_accept_common_spellings(
    in_tmp: Path, text: str, expected: bool
) -> None:
    environ = {"CORRAL_ALLOW_AD_HOC_CONTAINERS": text}
    assert load(None, environ).operator.allow_ad_hoc_containers is expected


def test_empty_variables_count_as_unset(in_tmp: Path) -> None:
    path = write(in_tmp, '[operator]\ndatabase_url = "sqlite:///file.db"\n')
    environ = {"CORRAL_DATABASE_URL": "", "CORRAL_LISTEN": ""}

    operator = load(path, environ).operator

    assert operator.database_url == "sqlite:///file.db"
    assert operator.listen == "127.0.0.1:50051"


# --- precedence --------------------------------------------------------------


def test_flag_over_environment_over_file(in_tmp: Path) -> None:
    path = write(
        in_tmp,
        """
        [operator]
        listen = "127.0.0.1:1001"
        runtime = "docker"
        reconcile_interval = "10s"
        log_backups = 1
        """,
    )
    environ = {
        "CORRAL_LISTEN": "127.0.0.1:2002",
        "CORRAL_RECONCILE_INTERVAL": "20s",
    }
    overrides = {"listen": "127.0.0.1:3003"}

    operator = load(path, environ, overrides).operator

    assert operator.listen == "127.0.0.1:3003"  # flag beats environment and file
    assert operator.reconcile_interval == timedelta(seconds=20)  # env beats file
    assert operator.runtime == "docker"  # file beats default
    assert operator.log_backups == 1


def test_flags_may_be_typed_or_text(in_tmp: Path) -> None:
    overrides: dict[str, Any] = {
        "reconcile_interval": timedelta(seconds=3),
        "data_dir": Path("flagged"),
        "allow_ad_hoc_containers": "no",
        "log_max_bytes": 99,
        "database_url": None,  # an absent flag
    }

    operator = load(None, {"CORRAL_DATABASE_URL": "sqlite:///e.db"}, overrides).operator

    assert operator.reconcile_interval == timedelta(seconds=3)
    assert operator.data_dir == in_tmp / "flagged"
    assert operator.allow_ad_hoc_containers is False
    assert operator.log_max_bytes == 99
    assert operator.database_url == "sqlite:///e.db"


# --- data_dir resolution -----------------------------------------------------


def test_relative_data_dir_in_file_is_taken_from_the_file_directory(
    in_tmp: Path, tmp_path: Path
) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    path = write(conf, '[operator]\ndata_dir = "../state"\n')

    operator = load(path).operator

    assert operator.data_dir == tmp_path / "state"
    assert operator.config_file == conf / "fleet.toml"


def test_relative_fleet_path_is_taken_from_cwd(in_tmp: Path) -> None:
    (in_tmp / "etc").mkdir()
    write(in_tmp / "etc", '[operator]\ndata_dir = "data"\n')

    operator = load(Path("etc/fleet.toml")).operator

    assert operator.data_dir == in_tmp / "etc" / "data"
    assert operator.config_file == in_tmp / "etc" / "fleet.toml"


def test_relative_data_dir_from_env_or_flag_is_taken_from_cwd(
    in_tmp: Path, tmp_path: Path
) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    path = write(conf, '[operator]\ndata_dir = "from-file"\n')

    from_env = load(path, {"CORRAL_DATA_DIR": "from-env"}).operator
    from_flag = load(path, overrides={"data_dir": "from-flag"}).operator
    default = load(write(conf, "", "empty.toml")).operator

    assert from_env.data_dir == in_tmp / "from-env"
    assert from_flag.data_dir == in_tmp / "from-flag"
    assert default.data_dir == in_tmp / "data"


def test_absolute_data_dir_is_kept(in_tmp: Path) -> None:
    path = write(in_tmp, '[operator]\ndata_dir = "/srv/corral"\n')
    assert load(path).operator.data_dir == Path("/srv/corral")


# --- invalid files -----------------------------------------------------------


def test_problems_name_file_and_field_one_per_line(in_tmp: Path) -> None:
    path = write(
        in_tmp,
        WEB
        + """
        [[containers]]
        name = "worker"
        command = ["python3", "worker.py"]
        restart_policy.crash.window = "10"
        stop_grace_period = "soon"
        """,
    )

    error = fails(path)

    lines = str(error).splitlines()
    assert lines == [
        f"{path}: containers[1].restart_policy.crash.window: must be a duration "
        'with a unit, like "10s" or "250ms"; "10" has no unit',
        f"{path}: containers[1].stop_grace_period: must be a duration with a "
        'unit, like "10s" or "250ms"; got \'soon\'',
    ]
    assert error.file == path
    assert error.field == "containers[1].restart_policy.crash.window"
    assert error.reason.startswith("must be a duration with a unit")


def test_message_uses_the_path_as_given(in_tmp: Path) -> None:
    write(in_tmp, '[operator]\nruntime = "k8s"\n')

    error = fails(Path("fleet.toml"))

    assert str(error) == (
        'fleet.toml: operator.runtime: must be "process" or "docker", got \'k8s\''
    )


def test_toml_syntax_error_is_reported_with_its_position(in_tmp: Path) -> None:
    path = write(in_tmp, "[operator\nlisten = 1\n")

    error = fails(path)

    assert error.field == ""
    assert error.reason.startswith("invalid TOML")
    assert "line 1" in error.reason


def test_missing_file_is_reported(in_tmp: Path) -> None:
    error = fails(in_tmp / "nope.toml")
    assert "cannot read the fleet file" in error.reason


def test_non_utf8_file_is_reported(in_tmp: Path) -> None:
    path = in_tmp / "fleet.toml"
    path.write_bytes(b'[operator]\nlisten = "\xff"\n')

    assert fails(path).reason == "is not UTF-8 text"


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("[operator]\nport = 1\n", "operator.port", "unknown setting 'port'"),
        ("[operatr]\n", "operatr", "unknown top-level table"),
        ("operator = 3\n", "operator", "must be a table"),
        ('[operator]\nlisten = "localhost"\n', "operator.listen", "host:port"),
        ('[operator]\nlisten = "h:99999"\n', "operator.listen", "host:port"),
        ("[operator]\nlisten = 50051\n", "operator.listen", "must be a string"),
        (
            "[operator]\nreconcile_interval = 60\n",
            "operator.reconcile_interval",
            "must be a duration with a unit",
        ),
        (
            '[operator]\nreconcile_interval = "-1s"\n',
            "operator.reconcile_interval",
            "must not be negative",
        ),
        (
            '[operator]\nallow_ad_hoc_containers = "yes"\n',
            "operator.allow_ad_hoc_containers",
            "must be true or false",
        ),
        (
            '[operator]\ncontainer_name_env_key = "A=B"\n',
            "operator.container_name_env_key",
            "variable name",
        ),
        (
            '[operator]\ncontainer_name_env_key = "CORRAL_TOKEN"\n',
            "operator.container_name_env_key",
            "set by corral itself",
        ),
        ('[operator]\ndata_dir = ""\n', "operator.data_dir", "not empty"),
        ('[operator]\nenv_builder = "mod.fn"\n', "operator.env_builder", "module:"),
        ("[operator]\nlog_max_bytes = 0\n", "operator.log_max_bytes", "at least 1"),
        ("[operator]\nlog_backups = -1\n", "operator.log_backups", "at least 0"),
        ("[operator]\nlog_backups = true\n", "operator.log_backups", "integer"),
        ("[operator]\nlog_backups = 1.5\n", "operator.log_backups", "integer"),
        ("[containers]\nname = 'web'\n", "containers", "array of tables"),
        ("containers = [1]\n", "containers[0]", "must be a table"),
        ("[[containers]]\ncommand = ['x']\n", "containers[0].name", "is required"),
        (
            "[[containers]]\nname = 'Web'\ncommand = ['x']\n",
            "containers[0].name",
            "lower-case letters",
        ),
        (
            "[[containers]]\nname = 'web'\ncommand = ['x']\ncolour = 'red'\n",
            "containers[0].colour",
            "unknown field",
        ),
        (
            "[[containers]]\nname = 'web'\n",
            "containers[0].command",
            "needs a command",
        ),
        (
            "[[containers]]\nname = 'web'\ncommand = ['x']\n"
            "restart_policy.when = 'sometimes'\n",
            "containers[0].restart_policy.when",
            "must be one of",
        ),
        (
            "[[containers]]\nname = 'web'\ncommand = ['x']\n"
            "restart_policy.crash.window = '7s'\n",
            "containers[0].restart_policy.backoff",
            "can never trip",
        ),
        (
            "[[containers]]\nname = 'web'\ncommand = ['x']\n"
            "config = { d = 2024-01-01 }\n",
            "containers[0].config.d",
            "only strings, numbers",
        ),
    ],
)
def test_invalid_file_values_are_refused(
    in_tmp: Path, text: str, field: str, reason: str
) -> None:
    error = fails(write(in_tmp, text))

    assert [f for f, _ in problems_of(error)] == [field]
    assert reason in error.reason


def test_duplicate_names_are_refused(in_tmp: Path) -> None:
    error = fails(write(in_tmp, WEB + WEB + WEB))

    assert problems_of(error) == [
        ("containers[1].name", "duplicate name 'web', already used by containers[0]"),
        ("containers[2].name", "duplicate name 'web', already used by containers[0]"),
    ]


def test_specs_are_validated_for_the_configured_runtime(in_tmp: Path) -> None:
    path = write(in_tmp, "[[containers]]\nname = 'web'\nimage = 'nginx:1'\n")

    assert fails(path).field == "containers[0].command"
    config = load(path, {"CORRAL_RUNTIME": "docker"})
    assert config.containers == (("web", ContainerSpec(image="nginx:1")),)


def test_all_problems_are_reported_together(in_tmp: Path) -> None:
    path = write(
        in_tmp,
        """
        [operator]
        runtime = "k8s"
        bogus = 1

        [[containers]]
        name = "-bad"
        command = []
        """,
    )

    error = fails(path, {"CORRAL_LOG_BACKUPS": "many"}, {"listen": "nope"})

    assert [f for f, _ in problems_of(error)] == [
        "operator.runtime",
        "operator.bogus",
        "CORRAL_LOG_BACKUPS",
        "--listen",
        "containers[0].name",
        "containers[0].command",
    ]
    assert len(str(error).splitlines()) == 6


# --- invalid environment and flags -------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("CORRAL_RECONCILE_INTERVAL", "60", "has no unit"),
        ("CORRAL_ALLOW_AD_HOC_CONTAINERS", "maybe", 'must be "true" or "false"'),
        ("CORRAL_LOG_MAX_BYTES", "10MB", "must be an integer"),
        ("CORRAL_RUNTIME", "podman", '"process" or "docker"'),
        ("CORRAL_ENV_BUILDER", "nocolon", "package.module:function"),
    ],
)
def test_environment_errors_name_the_variable(
    in_tmp: Path, variable: str, value: str, reason: str
) -> None:
    error = fails(None, {variable: value})

    assert error.file is None
    assert error.field == variable
    assert reason in error.reason
    assert str(error).startswith(f"environment: {variable}: ")


def test_flag_errors_name_the_flag(in_tmp: Path) -> None:
    error = fails(None, overrides={"reconcile_interval": "soon", "colour": "red"})

    assert [f for f, _ in problems_of(error)] == ["--reconcile-interval", "--colour"]
    assert error.file is None
    assert "unknown setting 'colour'" in str(error)
    assert str(error).startswith("command line: --reconcile-interval: ")


def test_a_file_mistake_is_reported_even_when_overridden(in_tmp: Path) -> None:
    path = write(in_tmp, '[operator]\nreconcile_interval = "often"\n')

    error = fails(path, overrides={"reconcile_interval": "10s"})

    assert error.field == "operator.reconcile_interval"


def test_load_config_does_not_read_the_real_environment(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(os.environ, "CORRAL_LISTEN", "not an address")
    assert load(None).operator.listen == "127.0.0.1:50051"


def _readme_toml_blocks() -> list[str]:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    return re.findall(r"```toml\n(.*?)```", readme, flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(_readme_toml_blocks())))
def test_every_fleet_file_in_the_readme_loads(index: int, tmp_path: Path) -> None:
    """The README's examples are fleet files corral accepts as written."""
    block = _readme_toml_blocks()[index]
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(block)
    (tmp_path / "envbuilder.py").write_text("def build(spec, config):\n    return {}\n")

    loaded = load_config(fleet, environ={})

    assert loaded.containers, "each README example declares a container"
