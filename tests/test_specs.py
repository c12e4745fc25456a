"""Tests for corral.core.specs: durations, spec conversion and validation."""

from __future__ import annotations

import json
import signal
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from corral.core.errors import FieldViolation, InvalidArgumentError
from corral.core.model import (
    Backoff,
    ContainerSpec,
    CrashPolicy,
    RestartPolicy,
    RestartWhen,
)
from corral.core.policy import backoff_delay
from corral.core.specs import (
    MAX_ENV_BYTES,
    RESERVED_LABELS,
    PortMapping,
    format_duration,
    parse_duration,
    parse_memory,
    parse_port,
    signal_number,
    spec_from_dict,
    spec_to_dict,
    validate_name,
    validate_spec,
    validate_spec_or_raise,
)


def fields(violations: list[FieldViolation]) -> list[str]:
    return [v.field for v in violations]


def error_fields(error: InvalidArgumentError) -> list[str]:
    return [v.field for v in error.violations]


def valid_spec(**changes: Any) -> ContainerSpec:
    values: dict[str, Any] = {"command": ("python3", "app.py")}
    values.update(changes)
    return ContainerSpec(**values)


def policy(
    *,
    window: timedelta = timedelta(minutes=10),
    allowed: int = 3,
    **backoff: Any,
) -> RestartPolicy:
    return RestartPolicy(
        crash=CrashPolicy(window=window, allowed_crashes=allowed),
        backoff=Backoff(**backoff),
    )


# --- durations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("10s", timedelta(seconds=10)),
        ("1.5s", timedelta(seconds=1.5)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("0s", timedelta(0)),
        ("1m30s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        ("5us", timedelta(microseconds=5)),
        ("0.25s", timedelta(milliseconds=250)),
    ],
)
def test_parse_duration_accepts_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "f") == expected


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", "it is empty"),
        ("-1s", "must not be negative"),
        ("10", "has no unit"),
        ("ten seconds", "with a unit"),
        ("1m30", "with a unit"),
        (".5s", "with a unit"),
        (" 1s", "with a unit"),
        ("1d", "with a unit"),
        ("１s", "with a unit"),  # a full-width digit is not a digit here
        ("0.0000001s", "whole number of microseconds"),
        ("9999999999999999h", "too large"),
    ],
)
def test_parse_duration_refuses_with_actionable_message(text: str, hint: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_duration(text, "spec.restart_policy.crash.window")

    assert error_fields(caught.value) == ["spec.restart_policy.crash.window"]
    assert hint in caught.value.violations[0].description
    if hint == "with a unit":
        assert 'like "10s" or "250ms"' in caught.value.message


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(seconds=10), "10s"),
        (timedelta(minutes=10), "10m"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(0), "0s"),
        (timedelta(microseconds=7), "7us"),
        (timedelta(days=2), "48h"),
        (timedelta(seconds=-10), "-10s"),
    ],
)
def test_format_duration_gives_shortest_exact_form(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000)))
def test_format_then_parse_is_identity(value: timedelta) -> None:
    assert parse_duration(format_duration(value), "f") == value


# --- spec_from_dict / spec_to_dict -------------------------------------------


def test_spec_from_dict_reads_the_fleet_file_shape() -> None:
    spec = spec_from_dict(
        {
            "command": ["python3", "worker.py"],
            "env": {"LOG_LEVEL": "info", "API_KEY": "${secret:API_KEY}"},
            "config": {"queue": "jobs", "concurrency": 4, "tags": ["a"]},
            "working_dir": "/srv",
            "stop_signal": "SIGINT",
            "stop_grace_period": "30s",
            "labels": {"team": "core"},
            "restart_policy": {
                "when": "always",
                "crash": {"window": "5m", "allowed_crashes": 2},
                "success_exit_codes": [0, 75],
                "backoff": {
                    "initial": "250ms",
                    "max": "30s",
                    "multiplier": 3,
                    "reset_after": "2m",
                    "jitter": 0.5,
                },
            },
        }
    )

    assert spec.command == ("python3", "worker.py")
    assert spec.env == {"LOG_LEVEL": "info", "API_KEY": "${secret:API_KEY}"}
    assert spec.config == {"queue": "jobs", "concurrency": 4, "tags": ["a"]}
    assert spec.stop_grace_period == timedelta(seconds=30)
    assert spec.restart_policy == RestartPolicy(
        when=RestartWhen.ALWAYS,
        crash=CrashPolicy(window=timedelta(minutes=5), allowed_crashes=2),
        success_exit_codes=(0, 75),
        backoff=Backoff(
            initial=timedelta(milliseconds=250),
            max=timedelta(seconds=30),
            multiplier=3.0,
            reset_after=timedelta(minutes=2),
            jitter=0.5,
        ),
    )


def test_spec_from_dict_fills_missing_keys_with_model_defaults() -> None:
    assert spec_from_dict({}) == ContainerSpec()
    partial = spec_from_dict({"restart_policy": {"crash": {"window": "1m"}}})
    assert partial.restart_policy.crash == CrashPolicy(window=timedelta(minutes=1))
    assert partial.restart_policy.backoff == Backoff()


def test_spec_from_dict_collects_every_violation_with_field_paths() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        spec_from_dict(
            {
                "command": "python3 app.py",
                "image": 3,
                "env": {"A": 1},
                "config": {"when": date(2024, 1, 1)},
                "colour": "blue",
                "stop_grace_period": 10,
                "labels": ["a"],
                "restart_policy": {
                    "when": "sometimes",
                    "crash": {"window": "10", "allowed_crashes": "3", "x": 1},
                    "success_exit_codes": [0, "75"],
                    "backoff": {"multiplier": True, "jitter": "0.1", "max": "1 m"},
                },
            },
            field_prefix="containers[1]",
        )

    assert sorted(error_fields(caught.value)) == sorted(
        [
            "containers[1].colour",
            "containers[1].command",
            "containers[1].image",
            "containers[1].env.A",
            "containers[1].config.when",
            "containers[1].stop_grace_period",
            "containers[1].labels",
            "containers[1].restart_policy.when",
            "containers[1].restart_policy.crash.window",
            "containers[1].restart_policy.crash.allowed_crashes",
            "containers[1].restart_policy.crash.x",
            "containers[1].restart_policy.success_exit_codes[1]",
            "containers[1].restart_policy.backoff.multiplier",
            "containers[1].restart_policy.backoff.jitter",
            "containers[1].restart_policy.backoff.max",
        ]
    )
    assert "containers[1].colour: unknown field" in caught.value.message


def test_spec_from_dict_names_the_allowed_values_of_when() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        spec_from_dict({"restart_policy": {"when": "ALWAYS"}})

    description = caught.value.violations[0].description
    assert '"always", "on_failure", "never"' in description


def test_spec_from_dict_refuses_non_tables() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        spec_from_dict({"restart_policy": {"crash": 5, "backoff": "fast"}})
    assert sorted(error_fields(caught.value)) == [
        "spec.restart_policy.backoff",
        "spec.restart_policy.crash",
    ]

    with pytest.raises(InvalidArgumentError):
        spec_from_dict([])  # type: ignore[arg-type]  # hostile input on purpose


def test_spec_from_dict_copies_its_input() -> None:
    data: dict[str, Any] = {"env": {"A": "1"}, "config": {"nested": {"k": [1]}}}
    spec = spec_from_dict(data)

    data["env"]["A"] = "2"
    data["config"]["nested"]["k"].append(2)

    assert spec.env == {"A": "1"}
    assert spec.config == {"nested": {"k": [1]}}


def test_spec_to_dict_is_json_and_round_trips() -> None:
    spec = valid_spec(env={"A": "b"}, config={"x": [1, {"y": None}]})

    data = json.loads(json.dumps(spec_to_dict(spec)))

    assert data["restart_policy"]["crash"]["window"] == "10m"
    assert data["stop_grace_period"] == "10s"
    assert spec_from_dict(data) == spec


_text = st.text(max_size=12)
_durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3))
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3)
    ),
    max_leaves=8,
)
_specs = st.builds(
    ContainerSpec,
    command=st.lists(_text, max_size=4).map(tuple),
    image=_text,
    env=st.dictionaries(_text, _text, max_size=4),
    config=st.dictionaries(_text, _json, max_size=4),
    working_dir=_text,
    restart_policy=st.builds(
        RestartPolicy,
        when=st.sampled_from(RestartWhen),
        crash=st.builds(CrashPolicy, window=_durations, allowed_crashes=st.integers()),
        success_exit_codes=st.lists(st.integers(), max_size=4).map(tuple),
        backoff=st.builds(
            Backoff,
            initial=_durations,
            max=_durations,
            multiplier=st.floats(allow_nan=False, allow_infinity=False),
            reset_after=_durations,
            jitter=st.floats(allow_nan=False, allow_infinity=False),
        ),
    ),
    stop_signal=_text,
    stop_grace_period=_durations,
    labels=st.dictionaries(_text, _text, max_size=4),
)


@given(_specs)
def test_spec_round_trips_through_json(spec: ContainerSpec) -> None:
    data = json.loads(json.dumps(spec_to_dict(spec)))

    assert spec_from_dict(data) == spec


# --- validate_spec -----------------------------------------------------------


def test_a_minimal_process_spec_is_valid() -> None:
    assert validate_spec(valid_spec()) == []
    validate_spec_or_raise(valid_spec())


def test_process_runtime_needs_a_program() -> None:
    assert fields(validate_spec(ContainerSpec())) == ["spec.command"]
    assert fields(validate_spec(ContainerSpec(command=("", "x")))) == [
        "spec.command[0]"
    ]
    assert fields(validate_spec(ContainerSpec(image="nginx"))) == ["spec.command"]


def test_docker_runtime_needs_an_image_and_not_a_command() -> None:
    assert validate_spec(ContainerSpec(image="nginx:1"), runtime="docker") == []
    assert fields(validate_spec(ContainerSpec(command=("x",)), runtime="docker")) == [
        "spec.image"
    ]


def test_unknown_runtime_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown runtime"):
        validate_spec(valid_spec(), runtime="kubernetes")


def test_nul_characters_are_refused_where_exec_would_choke() -> None:
    spec = valid_spec(command=("py\0", "a\0"), working_dir="/tmp\0")
    assert fields(validate_spec(spec)) == [
        "spec.command[0]",
        "spec.command[1]",
        "spec.working_dir",
    ]


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"": "x"}, "spec.env"),
        ({"A=B": "x"}, "spec.env"),
        ({"A\0": "x"}, "spec.env"),
        ({"A": "x\0y"}, "spec.env.A"),
    ],
)
def test_env_names_and_values_are_checked(env: dict[str, str], field: str) -> None:
    assert fields(validate_spec(valid_spec(env=env))) == [field]


def test_env_size_is_capped_at_one_mebibyte() -> None:
    # Each entry costs len(key) + len(value) + 2 bytes ("=" and the NUL).
    at_limit = {"A": "x" * (MAX_ENV_BYTES - 3)}
    over = {"A": "x" * (MAX_ENV_BYTES - 2)}
    multibyte = {"A": "é" * (MAX_ENV_BYTES // 2)}

    assert validate_spec(valid_spec(env=at_limit)) == []
    assert fields(validate_spec(valid_spec(env=over))) == ["spec.env"]
    assert fields(validate_spec(valid_spec(env=multibyte))) == ["spec.env"]


def test_label_keys_must_not_be_empty() -> None:
    assert fields(validate_spec(valid_spec(labels={"": "x"}))) == ["spec.labels"]
    assert validate_spec(valid_spec(labels={"team": ""})) == []


@pytest.mark.parametrize("key", sorted(RESERVED_LABELS))
def test_corral_s_own_label_keys_are_refused(key: str) -> None:
    violations = validate_spec(valid_spec(labels={key: "sandbox", "team": "x"}))

    assert fields(violations) == ["spec.labels"]
    assert key in violations[0].description
    assert "reserved" in violations[0].description
    # Other keys under corral. stay the user's.
    assert validate_spec(valid_spec(labels={"corral.test": "x"})) == []


def test_every_label_the_docker_runtime_sets_is_reserved() -> None:
    from corral.runtimes import docker

    ours = {docker.LABEL_MANAGED, docker.LABEL_NAME, docker.LABEL_INSTANCE}
    ours |= {docker.LABEL_ROLE, docker.LABEL_SANDBOX_CONFIG}
    assert ours == RESERVED_LABELS


@pytest.mark.parametrize("name", ["SIGTERM", "TERM", "sigint", "SIGKILL", "HUP"])
def test_known_stop_signals_are_accepted(name: str) -> None:
    assert validate_spec(valid_spec(stop_signal=name)) == []


@pytest.mark.parametrize("name", ["", "SIGBOGUS", "15", "SIG_IGN", "SIG"])
def test_unknown_stop_signals_are_refused(name: str) -> None:
    violations = validate_spec(valid_spec(stop_signal=name))
    assert fields(violations) == ["spec.stop_signal"]
    assert "SIGTERM" in violations[0].description


def test_signal_number_resolves_names() -> None:
    assert signal_number("SIGTERM") == signal.SIGTERM
    assert signal_number("term") == signal.SIGTERM
    assert signal_number("INT") == signal.SIGINT
    with pytest.raises(ValueError, match="unknown signal"):
        signal_number("SIGNOPE")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (valid_spec(stop_grace_period=timedelta(seconds=-1)), "spec.stop_grace_period"),
        (
            valid_spec(restart_policy=policy(allowed=-1)),
            "spec.restart_policy.crash.allowed_crashes",
        ),
        (
            valid_spec(restart_policy=policy(window=timedelta(0))),
            "spec.restart_policy.crash.window",
        ),
        (
            valid_spec(restart_policy=policy(initial=timedelta(seconds=-1))),
            "spec.restart_policy.backoff.initial",
        ),
        (
            valid_spec(restart_policy=policy(max=timedelta(milliseconds=500))),
            "spec.restart_policy.backoff.max",
        ),
        (
            valid_spec(restart_policy=policy(multiplier=0.5)),
            "spec.restart_policy.backoff.multiplier",
        ),
        (
            valid_spec(restart_policy=policy(multiplier=float("inf"))),
            "spec.restart_policy.backoff.multiplier",
        ),
        (
            valid_spec(restart_policy=policy(jitter=1.5)),
            "spec.restart_policy.backoff.jitter",
        ),
        (
            valid_spec(restart_policy=policy(jitter=float("nan"))),
            "spec.restart_policy.backoff.jitter",
        ),
        (
            valid_spec(restart_policy=policy(reset_after=timedelta(seconds=-1))),
            "spec.restart_policy.backoff.reset_after",
        ),
        (
            valid_spec(restart_policy=RestartPolicy(success_exit_codes=(0, 256))),
            "spec.restart_policy.success_exit_codes[1]",
        ),
    ],
)
def test_policy_bounds_are_checked(spec: ContainerSpec, field: str) -> None:
    assert fields(validate_spec(spec)) == [field]


def test_all_semantic_violations_are_reported_together() -> None:
    spec = ContainerSpec(
        env={"": "x"},
        stop_signal="NOPE",
        restart_policy=policy(allowed=-1, jitter=2.0),
    )

    assert len(validate_spec(spec, field_prefix="containers[0]")) == 5
    with pytest.raises(InvalidArgumentError) as caught:
        validate_spec_or_raise(spec, field_prefix="containers[0]")
    assert all(f.startswith("containers[0].") for f in error_fields(caught.value))


def test_breaker_that_can_never_trip_is_refused() -> None:
    # Delays before crashes 2, 3 and 4: 1 s + 2 s + 4 s = 7 s. The fourth
    # crash comes at least 7 s after the first, so a 7 s window never holds
    # all four of them.
    unreachable = valid_spec(restart_policy=policy(window=timedelta(seconds=7)))
    reachable = valid_spec(
        restart_policy=policy(window=timedelta(seconds=7, microseconds=1))
    )

    violations = validate_spec(unreachable)
    assert fields(violations) == ["spec.restart_policy.backoff"]
    assert "can never trip" in violations[0].description
    assert validate_spec(reachable) == []


def test_breaker_reachability_accounts_for_the_cap() -> None:
    capped = policy(
        window=timedelta(seconds=30),
        allowed=10,
        initial=timedelta(seconds=1),
        max=timedelta(seconds=2),
    )
    # 1 + 2 * 9 = 19 s < 30 s.
    assert validate_spec(valid_spec(restart_policy=capped)) == []

    huge = policy(allowed=10**9, initial=timedelta(seconds=1), multiplier=1.0000001)
    # Past the cap, the cap is what the user hears about.
    assert fields(validate_spec(valid_spec(restart_policy=huge))) == [
        "spec.restart_policy.crash.allowed_crashes"
    ]


def test_allowed_crashes_is_capped() -> None:
    at_cap = policy(allowed=100, initial=timedelta(0))
    assert validate_spec(valid_spec(restart_policy=at_cap)) == []
    too_many = valid_spec(restart_policy=policy(allowed=101, initial=timedelta(0)))
    assert fields(validate_spec(too_many)) == [
        "spec.restart_policy.crash.allowed_crashes"
    ]


def test_breaker_with_zero_allowed_crashes_is_always_reachable() -> None:
    spec = valid_spec(restart_policy=policy(allowed=0, window=timedelta(seconds=1)))
    assert validate_spec(spec) == []


def test_default_policy_is_reachable() -> None:
    assert validate_spec(valid_spec(restart_policy=RestartPolicy())) == []


# --- validate_name -----------------------------------------------------------


@pytest.mark.parametrize("name", ["web", "a", "worker-2", "a" * 63, "x-"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == []


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("", "it is empty"),
        ("a" * 64, "it has 64 characters"),
        ("Web", "it starts with 'W'"),
        ("1web", "it starts with '1'"),
        ("-web", "it starts with '-'"),
        ("we_b", "it contains '_'"),
        ("web.1", "it contains '.'"),
        ("wéb", "it contains 'é'"),
        ("web ", "it contains ' '"),
    ],
)
def test_invalid_names_say_the_rule(name: str, detail: str) -> None:
    violations = validate_name(name, "containers[2].name")

    assert fields(violations) == ["containers[2].name"]
    assert "lower-case letters, digits and '-'" in violations[0].description
    assert detail in violations[0].description


def test_breaker_check_survives_hostile_crash_counts() -> None:
    tiny = policy(
        allowed=10**30,
        initial=timedelta(microseconds=1),
        multiplier=1.0000001,
    )
    violations = validate_spec(valid_spec(restart_policy=tiny))
    assert fields(violations) == ["spec.restart_policy.crash.allowed_crashes"]


@given(
    allowed=st.integers(min_value=0, max_value=40),
    initial_ms=st.integers(min_value=0, max_value=5_000),
    max_ms=st.integers(min_value=0, max_value=120_000),
    multiplier=st.floats(min_value=1.0, max_value=4.0),
    window_ms=st.integers(min_value=1, max_value=600_000),
)
def test_breaker_check_agrees_with_summing_the_delays(
    allowed: int, initial_ms: int, max_ms: int, multiplier: float, window_ms: int
) -> None:
    initial = timedelta(milliseconds=initial_ms)
    backoff = Backoff(
        initial=initial,
        max=max(initial, timedelta(milliseconds=max_ms)),
        multiplier=multiplier,
        jitter=0.0,
    )
    window = timedelta(milliseconds=window_ms)
    total = sum((backoff_delay(backoff, k, 0.0) for k in range(allowed)), timedelta(0))
    # Float rounding may differ within a microsecond per delay; skip the edge.
    assume(abs(total - window) > timedelta(microseconds=allowed + 1))

    spec = valid_spec(
        restart_policy=RestartPolicy(
            crash=CrashPolicy(window=window, allowed_crashes=allowed), backoff=backoff
        )
    )

    refused = "spec.restart_policy.backoff" in fields(validate_spec(spec))
    assert refused == (total >= window)


# --- docker resources: ports, memory, cpus -----------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("512m", 512 * 2**20),
        ("512M", 512 * 2**20),
        ("512mb", 512 * 2**20),
        ("1GiB", 2**30),
        ("1.5g", 3 * 2**29),
        ("64k", 64 * 2**10),
        ("2t", 2 * 2**40),
        (" 32m ", 32 * 2**20),
    ],
)
def test_parse_memory_reads_binary_sizes(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("lots", "like"),
        ("", "like"),
        ("-1m", "like"),
        ("12x", "like"),
        ("1e9", "like"),
        ("0", "more than zero"),
        ("0m", "more than zero"),
        ("0.5", "more than zero"),
    ],
)
def test_parse_memory_refuses_with_actionable_message(text: str, hint: str) -> None:
    with pytest.raises(ValueError, match=hint):
        parse_memory(text)


@pytest.mark.parametrize(
    ("entry", "mapping"),
    [
        ("80", PortMapping(80)),
        ("8080:80", PortMapping(80, host_port=8080)),
        ("53:53/udp", PortMapping(53, "udp", host_port=53)),
        ("127.0.0.1:8080:80", PortMapping(80, host_ip="127.0.0.1", host_port=8080)),
        ("127.0.0.1::80/sctp", PortMapping(80, "sctp", host_ip="127.0.0.1")),
        ("[::1]:8080:80", PortMapping(80, host_ip="::1", host_port=8080)),
    ],
)
def test_parse_port_reads_docker_short_syntax(entry: str, mapping: PortMapping) -> None:
    assert parse_port(entry) == mapping


@pytest.mark.parametrize(
    "entry",
    ["http", "", "80/icmp", "0", "99999", "70000:80", "a:1:2", "::80", "1:2:3:4"],
)
def test_parse_port_refuses_with_the_syntax(entry: str) -> None:
    with pytest.raises(ValueError, match="port mapping like"):
        parse_port(entry)


def test_resource_fields_round_trip_through_the_dict_form() -> None:
    spec = ContainerSpec(
        image="app:1", ports=("8080:80", "53/udp"), memory="512m", cpus=1.5
    )

    data = json.loads(json.dumps(spec_to_dict(spec)))

    assert data["ports"] == ["8080:80", "53/udp"]
    assert data["memory"] == "512m"
    assert data["cpus"] == 1.5
    assert spec_from_dict(data) == spec
    assert spec_from_dict({"image": "app:1", "cpus": 2}).cpus == 2.0


def test_resource_fields_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        spec_from_dict({"ports": "80", "memory": 512, "cpus": "1"})

    assert sorted(error_fields(refused.value)) == [
        "spec.cpus",
        "spec.memory",
        "spec.ports",
    ]


def test_docker_runtime_accepts_resources() -> None:
    spec = ContainerSpec(
        image="app:1", ports=("127.0.0.1::80",), memory="6m", cpus=0.01
    )

    assert validate_spec(spec, runtime="docker") == []


def test_docker_runtime_checks_every_resource_field() -> None:
    spec = ContainerSpec(
        image="app:1", ports=("80", "http", "99999"), memory="lots", cpus=-1.0
    )

    violations = validate_spec(spec, runtime="docker")

    assert fields(violations) == [
        "spec.ports[1]",
        "spec.ports[2]",
        "spec.memory",
        "spec.cpus",
    ]


@pytest.mark.parametrize(
    ("change", "field", "hint"),
    [
        ({"memory": "0m"}, "spec.memory", "more than zero"),
        ({"memory": "4m"}, "spec.memory", "at least 6m"),
        ({"cpus": 0.001}, "spec.cpus", "at least 0.01"),
        ({"cpus": float("nan")}, "spec.cpus", "finite"),
        ({"cpus": float("inf")}, "spec.cpus", "finite"),
    ],
)
def test_docker_resource_limits_are_bounded(
    change: dict[str, Any], field: str, hint: str
) -> None:
    spec = ContainerSpec(image="app:1", **change)

    violations = validate_spec(spec, runtime="docker")

    assert fields(violations) == [field]
    assert hint in violations[0].description


def test_process_runtime_refuses_docker_only_resources() -> None:
    spec = valid_spec(ports=("80",), memory="512m", cpus=1.0)

    violations = validate_spec(spec)

    assert fields(violations) == ["spec.ports", "spec.memory", "spec.cpus"]
    for violation in violations:
        assert "process runtime does not support" in violation.description


_resource_specs = st.builds(
    ContainerSpec,
    image=_text,
    ports=st.lists(_text, max_size=3).map(tuple),
    memory=_text,
    cpus=st.floats(allow_nan=False, allow_infinity=False),
)


@given(_resource_specs)
def test_resource_fields_round_trip_through_json(spec: ContainerSpec) -> None:
    data = json.loads(json.dumps(spec_to_dict(spec)))

    assert spec_from_dict(data) == spec
