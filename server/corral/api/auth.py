"""Who may call what: admin and reader tokens, the rule table, the interceptor.

Roles:

- ``admin`` may call every method of ``OperatorService``.
- ``reader`` may call the read-only ones (Get, List, ListEvents,
  WatchEvents, GetOperatorInfo).
- A workload's per-instance ``CORRAL_TOKEN`` may call only
  ``LifecycleService.ReportEvent`` for its own container; the operator checks
  it (:meth:`corral.core.operator.Operator.report`). An admin or reader token
  is *not* a workload token: ReportEvent refuses it as UNAUTHENTICATED, so no
  credential can forge a workload's lifecycle but the workload's own.
- Health and reflection are open to everyone.

Admin and reader tokens come from ``CORRAL_ADMIN_TOKEN`` and
``CORRAL_READER_TOKEN`` (comma-separated) and from the files named by the
``admin_token_file`` and ``reader_token_file`` settings (one per line). When
none is configured at all, ``OperatorService`` is open to anyone who can
reach the socket, which is why corral refuses a non-loopback address in that
case unless ``insecure`` is set (:func:`check_exposure`).

Tokens travel as ``authorization: Bearer <token>``. corral keeps only their
SHA-256 digests and compares digests with :func:`hmac.compare_digest`
against every configured token, so neither the time taken nor the memory of
the process reveals them. Credentials are checked before the request is
even parsed, so a caller without the right learns nothing about which
containers exist or what a valid request looks like.

The interceptor also parses every unary request itself, so that bytes which
are not a valid message are refused with INVALID_ARGUMENT instead of the
INTERNAL that gRPC would answer, and enforces ``max_watchers_per_token``.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from corral.api.errors import to_status
from corral.config import ConfigError, ConfigProblem, OperatorConfig
from corral.core.errors import (
    CorralError,
    InvalidArgumentError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
)
from corral.v1 import lifecycle_pb2, operator_pb2

logger = logging.getLogger(__name__)

ADMIN_TOKEN_ENV = "CORRAL_ADMIN_TOKEN"
READER_TOKEN_ENV = "CORRAL_READER_TOKEN"
TOKEN_VARIABLES = frozenset({ADMIN_TOKEN_ENV, READER_TOKEN_ENV})
"""Variables holding API tokens; never passed on to workloads or builders."""

MIN_TOKEN_LENGTH = 16
"""Shortest token accepted; shorter ones are guessable."""


class Role(enum.Enum):
    """What a method requires of its caller."""

    OPEN = "open"
    """Anyone: health checks and reflection."""
    READER = "reader"
    """A reader or admin token (or nothing, when no token is configured)."""
    ADMIN = "admin"
    """An admin token (or nothing, when no token is configured)."""
    WORKLOAD = "workload"
    """The instance's own token, checked by the operator itself."""


def _methods(service: Any, role: Role, names: Sequence[str]) -> dict[str, Role]:
    return {f"/{service.full_name}/{name}": role for name in names}


_OPERATOR = operator_pb2.DESCRIPTOR.services_by_name["OperatorService"]
_LIFECYCLE = lifecycle_pb2.DESCRIPTOR.services_by_name["LifecycleService"]

RULES: Mapping[str, Role] = {
    **_methods(
        _OPERATOR,
        Role.ADMIN,
        (
            "StartContainer",
            "StopContainer",
            "RestartContainer",
            "DeleteContainer",
            "ClearCrashHistory",
            "ReconcileFleet",
        ),
    ),
    **_methods(
        _OPERATOR,
        Role.READER,
        (
            "GetContainer",
            "ListContainers",
            "ListEvents",
            "WatchEvents",
            "GetOperatorInfo",
        ),
    ),
    **_methods(_LIFECYCLE, Role.WORKLOAD, ("ReportEvent",)),
    "/grpc.health.v1.Health/Check": Role.OPEN,
    "/grpc.health.v1.Health/Watch": Role.OPEN,
    "/grpc.health.v1.Health/List": Role.OPEN,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Role.OPEN,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Role.OPEN,
}
"""Full method name to the role it requires. A method missing here is
refused (PERMISSION_DENIED) for everyone: new RPCs fail closed."""

WATCH_METHOD = f"/{_OPERATOR.full_name}/WatchEvents"


# --- credentials ---------------------------------------------------------------


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Credentials:
    """The configured admin and reader tokens, held as SHA-256 digests only."""

    def __init__(self, admin: Sequence[str] = (), reader: Sequence[str] = ()) -> None:
        self._admin = tuple(_digest(token) for token in admin)
        self._reader = tuple(_digest(token) for token in reader)

    @property
    def enabled(self) -> bool:
        """True when any token is configured (OperatorService is then closed)."""
        return bool(self._admin or self._reader)

    def role_of(self, token: str) -> tuple[Role, str] | None:
        """The role of ``token`` and a stable, non-secret identity for it.

        Every configured digest is compared, matched or not, so the time
        taken does not depend on which token (if any) matched.
        """
        digest = _digest(token)
        admin = False
        reader = False
        for known in self._admin:
            admin |= hmac.compare_digest(known, digest)
        for known in self._reader:
            reader |= hmac.compare_digest(known, digest)
        identity = digest.hex()[:16]
        if admin:
            return Role.ADMIN, identity
        if reader:
            return Role.READER, identity
        return None


def load_credentials(
    settings: OperatorConfig, environ: Mapping[str, str]
) -> Credentials:
    """Reads the admin and reader tokens from the environment and files.

    Raises:
        ConfigError: a file cannot be read, or a token is malformed. The
            message names the variable or file and line, never the token.
    """
    problems: list[ConfigProblem] = []
    tokens: dict[Role, list[str]] = {Role.ADMIN: [], Role.READER: []}
    sources = (
        (Role.ADMIN, ADMIN_TOKEN_ENV, settings.admin_token_file),
        (Role.READER, READER_TOKEN_ENV, settings.reader_token_file),
    )
    for role, variable, path in sources:
        for index, token in enumerate(environ.get(variable, "").split(",")):
            token = token.strip()
            if token:
                where = f"{variable} (item {index + 1})"
                _check_token(token, "environment", where, problems)
                tokens[role].append(token)
        if path is not None:
            tokens[role].extend(_read_token_file(path, role, problems))
    if problems:
        raise ConfigError(problems, None)
    return Credentials(tokens[Role.ADMIN], tokens[Role.READER])


def _read_token_file(
    path: Path, role: Role, problems: list[ConfigProblem]
) -> list[str]:
    field = f"{role.value}_token_file"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "is not UTF-8 text"
        problems.append(ConfigProblem(str(path), field, f"cannot be read: {reason}"))
        return []
    tokens = []
    for number, line in enumerate(text.splitlines(), start=1):
        token = line.strip()
        if token and not token.startswith("#"):
            _check_token(token, str(path), f"line {number}", problems)
            tokens.append(token)
    if not tokens:
        problems.append(ConfigProblem(str(path), field, "holds no token"))
    return tokens


def _check_token(
    token: str, source: str, where: str, problems: list[ConfigProblem]
) -> None:
    """Records why ``token`` is unusable, without ever quoting it."""
    if len(token) < MIN_TOKEN_LENGTH:
        reason = f"a token must be at least {MIN_TOKEN_LENGTH} characters"
    elif not all("!" <= char <= "~" for char in token):
        reason = "a token must be printable ASCII without spaces"
    else:
        return
    problems.append(ConfigProblem(source, where, reason))


def is_loopback(listen: str) -> bool:
    """True when ``listen`` (``host:port`` or ``unix:path``) is local only."""
    if listen.startswith("unix:"):
        return True
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost, or empty (every address)
        return False


def check_exposure(settings: OperatorConfig, credentials: Credentials) -> None:
    """Refuses to serve an open operator beyond loopback.

    Authentication is configured when there is an admin or reader token, or
    a client CA (mutual TLS admits only clients with a certificate).

    Raises:
        ConfigError: non-loopback ``listen`` with neither, and not ``insecure``.
    """
    if is_loopback(settings.listen) or settings.insecure:
        return
    if credentials.enabled or settings.tls_client_ca_file is not None:
        return
    reason = (
        f"{settings.listen} is reachable beyond this machine and no authentication "
        f"is configured; set {ADMIN_TOKEN_ENV} (and {READER_TOKEN_ENV}), "
        "admin_token_file or tls_client_ca_file, listen on 127.0.0.1, or pass "
        "--insecure (CORRAL_INSECURE=true) to serve an open operator anyway"
    )
    raise ConfigError([ConfigProblem("configuration", "listen", reason)], None)


# --- the interceptor -------------------------------------------------------------

Context = grpc.aio.ServicerContext[Any, Any]


def bearer(metadata: Sequence[tuple[str, Any]] | None) -> str:
    """The token of an ``authorization: Bearer <token>`` entry, or ''."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


async def _abort(context: Context, error: CorralError) -> None:
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # not subscriptable at run time
    _ServerInterceptor = grpc.aio.ServerInterceptor


class AuthInterceptor(_ServerInterceptor):
    """Enforces :data:`RULES`, parses requests safely, caps watchers per token.

    Args:
        credentials: the configured tokens; none means OperatorService is open.
        max_watchers_per_token: concurrent WatchEvents streams per credential.
        rules: the rule table; :data:`RULES` unless a test replaces it.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        max_watchers_per_token: int,
        rules: Mapping[str, Role] = RULES,
    ) -> None:
        self._credentials = credentials
        self._max_watchers = max_watchers_per_token
        self._rules = rules
        self._watchers: collections.Counter[str] = collections.Counter()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: gRPC answers UNIMPLEMENTED
            return handler
        method = handler_call_details.method
        rule = self._rules.get(method)
        identity = "anonymous"
        refusal: CorralError | None = None
        if rule is None:
            logger.error("method without an access rule", extra={"method": method})
            refusal = PermissionDeniedError(
                f"{method} has no access rule in this corral; nobody may call it",
                reason="NO_ACCESS_RULE",
            )
        elif rule in (Role.ADMIN, Role.READER) and self._credentials.enabled:
            metadata = handler_call_details.invocation_metadata
            token = bearer(metadata)
            found = self._credentials.role_of(token) if token else None
            if found is None:
                refusal = UnauthenticatedError(
                    f"{method.rpartition('/')[2]} needs "
                    f"{'an admin' if rule is Role.ADMIN else 'a reader or admin'} "
                    "token as 'authorization: Bearer <token>'; "
                    + ("this one is not recognised" if token else "none was sent"),
                    reason="MISSING_CREDENTIALS" if not token else "INVALID_TOKEN",
                )
            elif rule is Role.ADMIN and found[0] is not Role.ADMIN:
                refusal = PermissionDeniedError(
                    f"a {found[0].value} token may not call "
                    f"{method.rpartition('/')[2]}; it needs an admin token",
                    reason="ROLE_NOT_ALLOWED",
                    metadata={"role": found[0].value, "required": rule.value},
                )
            else:
                identity = found[1]
        return self._wrap(handler, method, refusal, identity)

    def _wrap(
        self,
        handler: grpc.RpcMethodHandler[Any, Any],
        method: str,
        refusal: CorralError | None,
        identity: str,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if handler.request_streaming:
            if refusal is None:
                return handler  # reflection: its own parser, open to all

            async def refuse_stream(requests: Any, context: Context) -> Any:
                assert refusal is not None
                await _abort(context, refusal)

            if handler.response_streaming:
                return grpc.stream_stream_rpc_method_handler(
                    refuse_stream,
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
            return grpc.stream_unary_rpc_method_handler(
                refuse_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        parse = _parser(handler.request_deserializer, method)
        if handler.response_streaming:
            behavior: Any = handler.unary_stream
            watch = method == WATCH_METHOD

            async def stream(raw: bytes, context: Context) -> AsyncIterator[Any]:
                if refusal is not None:
                    await _abort(context, refusal)
                request = await parse(raw, context)
                if watch:
                    await self._claim_watcher(identity, context)
                try:
                    result = behavior(request, context)
                    if hasattr(result, "__aiter__"):
                        async for item in result:
                            yield item
                    else:
                        await result
                finally:
                    if watch:
                        self._release_watcher(identity)

            return grpc.unary_stream_rpc_method_handler(
                stream, response_serializer=handler.response_serializer
            )

        unary_behavior: Any = handler.unary_unary

        async def unary(raw: bytes, context: Context) -> Any:
            if refusal is not None:
                await _abort(context, refusal)
            request = await parse(raw, context)
            return await unary_behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary, response_serializer=handler.response_serializer
        )

    async def _claim_watcher(self, identity: str, context: Context) -> None:
        if self._watchers[identity] >= self._max_watchers:
            await _abort(
                context,
                ResourceExhaustedError(
                    f"this credential holds {self._watchers[identity]} event "
                    "streams, the limit per token (max_watchers_per_token = "
                    f"{self._max_watchers}); close one or retry later",
                    reason="TOO_MANY_WATCHERS_FOR_TOKEN",
                    metadata={"limit": str(self._max_watchers)},
                ),
            )
        self._watchers[identity] += 1

    def _release_watcher(self, identity: str) -> None:
        self._watchers[identity] -= 1
        if self._watchers[identity] <= 0:
            del self._watchers[identity]


def _parser(
    deserializer: Callable[[bytes], Any] | None, method: str
) -> Callable[[bytes, Context], Awaitable[Any]]:
    """Parses a request, refusing bytes that are not a valid message."""
    kind = method.rpartition("/")[2]

    async def parse(raw: bytes, context: Context) -> Any:
        if deserializer is None:
            return raw
        try:
            return deserializer(raw)
        except Exception:  # any parse failure is the caller's malformed input
            await _abort(
                context,
                InvalidArgumentError(
                    f"the request is not a valid {kind} request message; "
                    "send the message the proto defines",
                    reason="MALFORMED_REQUEST",
                ),
            )

    return parse
