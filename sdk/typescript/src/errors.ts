/**
 * Typed errors decoded from corral's rich gRPC statuses.
 *
 * corral answers every refusal with one canonical status code and a
 * `google.rpc.Status` in the `grpc-status-details-bin` trailer: an `ErrorInfo`
 * with an UPPER_SNAKE reason, plus `ResourceInfo`, `BadRequest` and
 * `PreconditionFailure` where they fit. {@link fromConnectError} turns that
 * into one of the classes below, picked by the reason first and by the status
 * code second, so a caller writes `instanceof ContainerNotFoundError` instead
 * of comparing numbers. The tree mirrors the Python SDK's:
 *
 *     CorralError                              any other status code
 *     ├── NotFoundError                        NOT_FOUND
 *     │   └── ContainerNotFoundError           CONTAINER_NOT_FOUND
 *     ├── InvalidArgumentError                 INVALID_ARGUMENT (fieldViolations)
 *     ├── FailedPreconditionError              FAILED_PRECONDITION
 *     │   ├── CrashLoopDetectedError           CRASH_LOOP_DETECTED
 *     │   ├── ContainerNotStoppedError         CONTAINER_NOT_STOPPED
 *     │   ├── MinReplicaSetContainerError      MIN_REPLICA_SET_CONTAINER
 *     │   └── AdHocContainerNotAllowedError    AD_HOC_CONTAINER_NOT_ALLOWED
 *     ├── AbortedError                         ABORTED (retryable)
 *     ├── ResourceExhaustedError               RESOURCE_EXHAUSTED
 *     │   └── TooManyWatchersError             TOO_MANY_WATCHERS
 *     ├── CursorOutOfRangeError                OUT_OF_RANGE (oldest/head sequence)
 *     ├── UnauthenticatedError                 UNAUTHENTICATED
 *     ├── PermissionDeniedError                PERMISSION_DENIED
 *     ├── DeadlineExceededError                DEADLINE_EXCEEDED (retryable)
 *     └── UnavailableError                     UNAVAILABLE (retryable)
 */

import { Code, ConnectError } from "@connectrpc/connect";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  ResourceInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

export { Code };

/** One bad field of a refused request. */
export interface FieldViolation {
  /** Dotted path of the field, such as `spec.stop_grace_period`. */
  readonly field: string;
  /** Why it was refused and what would be accepted. */
  readonly description: string;
}

/** One failed precondition, such as a crash loop. */
export interface PreconditionViolation {
  /** The precondition's type, such as `CRASH_LOOP_DETECTED`. */
  readonly type: string;
  /** What it is about, such as the container's name. */
  readonly subject: string;
  /** How it failed. */
  readonly description: string;
}

/** What {@link CorralError}'s constructor takes besides the code and message. */
export interface CorralErrorDetails {
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  fieldViolations?: readonly FieldViolation[];
  preconditionViolations?: readonly PreconditionViolation[];
  resourceName?: string;
  cause?: unknown;
}

/** Root of the SDK's errors: a call corral (or the network) refused. */
export class CorralError extends Error {
  /** Whether the same request may succeed if simply sent again later. */
  get retryable(): boolean {
    return false;
  }

  /** The gRPC status code. */
  readonly code: Code;
  /** The UPPER_SNAKE `ErrorInfo.reason`, or the code's name without details. */
  readonly reason: string;
  /** The `ErrorInfo.domain` (`corral.dev` for corral's own errors). */
  readonly domain: string;
  /** The `ErrorInfo.metadata` facts. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The `BadRequest` field violations, if any. */
  readonly fieldViolations: readonly FieldViolation[];
  /** The `PreconditionFailure` violations, if any. */
  readonly preconditionViolations: readonly PreconditionViolation[];
  /** The container named by `ResourceInfo`, if any. */
  readonly resourceName: string;
  /** The message without the `[code]` prefix ConnectError adds. */
  readonly rawMessage: string;

  constructor(code: Code, message: string, details: CorralErrorDetails = {}) {
    super(message, { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.rawMessage = message;
    this.reason = details.reason || codeName(code);
    this.domain = details.domain ?? "";
    this.metadata = { ...(details.metadata ?? {}) };
    this.fieldViolations = details.fieldViolations ?? [];
    this.preconditionViolations = details.preconditionViolations ?? [];
    this.resourceName = details.resourceName ?? "";
  }
}

/** Something the request names does not exist. */
export class NotFoundError extends CorralError {}
/** The named container does not exist; pass a spec to create it. */
export class ContainerNotFoundError extends NotFoundError {}
/** The request or spec is invalid; `fieldViolations` names each bad field. */
export class InvalidArgumentError extends CorralError {}
/** The request is valid but the container's state does not allow it. */
export class FailedPreconditionError extends CorralError {}
/** Crash looping: start with `force` or clear the crash history first. */
export class CrashLoopDetectedError extends FailedPreconditionError {}
/** The operation needs the container stopped first. */
export class ContainerNotStoppedError extends FailedPreconditionError {}
/** The container is declared in the fleet file (the min replica set). */
export class MinReplicaSetContainerError extends FailedPreconditionError {}
/** The operator refuses containers its fleet file does not declare. */
export class AdHocContainerNotAllowedError extends FailedPreconditionError {}
/** A concurrent change won; sending the request again may succeed. */
export class AbortedError extends CorralError {
  override get retryable(): boolean {
    return true;
  }
}
/** A limit was reached (containers, watchers, message size). */
export class ResourceExhaustedError extends CorralError {}
/** The operator's cap on concurrent event watches was reached. */
export class TooManyWatchersError extends ResourceExhaustedError {}
/** An event cursor is older than the log's retention or past its head. */
export class CursorOutOfRangeError extends CorralError {
  /** The oldest sequence the log still holds, if the server said. */
  get oldestSequence(): bigint | undefined {
    return toBigInt(this.metadata.oldest_sequence);
  }
  /** The newest sequence in the log, if the server said. */
  get headSequence(): bigint | undefined {
    return toBigInt(this.metadata.head_sequence);
  }
}
/** Missing or bad credentials. */
export class UnauthenticatedError extends CorralError {}
/** The credentials do not allow this call. */
export class PermissionDeniedError extends CorralError {}
/** The call ran out of time; it may succeed if sent again. */
export class DeadlineExceededError extends CorralError {
  override get retryable(): boolean {
    return true;
  }
}
/** corral is unreachable or shutting down; retry shortly. */
export class UnavailableError extends CorralError {
  override get retryable(): boolean {
    return true;
  }
}

type ErrorClass = new (code: Code, message: string, details?: CorralErrorDetails) => CorralError;

const BY_REASON: Record<string, ErrorClass> = {
  CONTAINER_NOT_FOUND: ContainerNotFoundError,
  CRASH_LOOP_DETECTED: CrashLoopDetectedError,
  CONTAINER_NOT_STOPPED: ContainerNotStoppedError,
  MIN_REPLICA_SET_CONTAINER: MinReplicaSetContainerError,
  AD_HOC_CONTAINER_NOT_ALLOWED: AdHocContainerNotAllowedError,
  TOO_MANY_WATCHERS: TooManyWatchersError,
  CURSOR_OUT_OF_RANGE: CursorOutOfRangeError,
};

const BY_CODE: Partial<Record<Code, ErrorClass>> = {
  [Code.NotFound]: NotFoundError,
  [Code.InvalidArgument]: InvalidArgumentError,
  [Code.FailedPrecondition]: FailedPreconditionError,
  [Code.Aborted]: AbortedError,
  [Code.ResourceExhausted]: ResourceExhaustedError,
  [Code.OutOfRange]: CursorOutOfRangeError,
  [Code.Unauthenticated]: UnauthenticatedError,
  [Code.PermissionDenied]: PermissionDeniedError,
  [Code.DeadlineExceeded]: DeadlineExceededError,
  [Code.Unavailable]: UnavailableError,
};

/**
 * The typed error for anything a call threw.
 *
 * A ConnectError becomes the class its `ErrorInfo.reason` (else its code)
 * names, with the details decoded; a CorralError passes through; anything
 * else (a bug, not a refusal) becomes a plain `CorralError` with code Unknown.
 */
export function fromConnectError(error: unknown): CorralError {
  if (error instanceof CorralError) {
    return error;
  }
  const connect = ConnectError.from(error);
  const [info] = connect.findDetails(ErrorInfoSchema);
  const resource = connect.findDetails(ResourceInfoSchema)[0];
  const fieldViolations = connect
    .findDetails(BadRequestSchema)
    .flatMap((bad) => bad.fieldViolations)
    .map(({ field, description }) => ({ field, description }));
  const preconditionViolations = connect
    .findDetails(PreconditionFailureSchema)
    .flatMap((failure) => failure.violations)
    .map(({ type, subject, description }) => ({ type, subject, description }));

  const reason = info?.reason ?? "";
  const kind = BY_REASON[reason] ?? BY_CODE[connect.code] ?? CorralError;
  return new kind(connect.code, connect.rawMessage, {
    reason,
    domain: info?.domain,
    metadata: info?.metadata,
    fieldViolations,
    preconditionViolations,
    resourceName: resource?.resourceName,
    cause: error,
  });
}

/** The gRPC name of a status code, such as `NOT_FOUND`. */
export function codeName(code: Code): string {
  if (code === Code.Canceled) {
    return "CANCELLED";
  }
  const name = Code[code] ?? "UNKNOWN";
  return name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

function toBigInt(value: string | undefined): bigint | undefined {
  if (value === undefined || !/^-?\d+$/.test(value)) {
    return undefined;
  }
  return BigInt(value);
}
