/**
 * The friendly client: one method per RPC of OperatorService and
 * LifecycleService, typed results, typed errors.
 *
 * It sits over the generated descriptors and Connect's gRPC transport
 * (HTTP/2, plaintext unless the address says `https://`). The raw Connect
 * clients stay reachable as {@link CorralClient.operator} and
 * {@link CorralClient.lifecycle} for anything the friendly layer does not
 * cover. Every method throws a {@link CorralError} subclass, never a raw
 * ConnectError.
 */

import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type CallOptions,
  type Client,
  type Interceptor,
  type Transport,
  createClient,
} from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { connect as netConnect } from "node:net";

import type { Container, ContainerSpecSchema } from "./gen/corral/v1/container_pb.js";
import {
  LifecycleService,
  type ReportEventRequestSchema,
  type ReportEventResponse,
} from "./gen/corral/v1/lifecycle_pb.js";
import {
  type GetOperatorInfoResponse,
  type ListContainersResponse,
  type ListEventsResponse,
  OperatorService,
  type ReconcileFleetResponse,
} from "./gen/corral/v1/operator_pb.js";
import { fromConnectError } from "./errors.js";
import { EventWatch, type WatchOptions } from "./watch.js";

/** A spec as a plain object, in the generated type's field names. */
export type ContainerSpecInit = MessageInitShape<typeof ContainerSpecSchema>;

/** A report as a plain object, in the generated type's field names. */
export type ReportEventInit = MessageInitShape<typeof ReportEventRequestSchema>;

/** A sequence in the event log: int64 on the wire, bigint in results. */
export type Sequence = bigint | number;

/** How to reach corral. */
export interface CorralClientOptions {
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /** Deadline applied to unary calls without their own `timeoutMs`. */
  defaultTimeoutMs?: number;
  /** Extra Connect interceptors, run before the token one. */
  interceptors?: Interceptor[];
  /** Use this transport instead of creating one (the client will not close it). */
  transport?: Transport;
}

/** Options for {@link CorralClient.startContainer}. */
export interface StartOptions extends CallOptions {
  /** The spec to create or update the container with. */
  spec?: ContainerSpecInit;
  /** Start even while crash looping. */
  force?: boolean;
  /** Makes a retried request a no-op. */
  requestId?: string;
}

/** Options for {@link CorralClient.listContainers}. */
export interface ListContainersOptions extends CallOptions {
  pageSize?: number;
  pageToken?: string;
  /** Such as `"state=RUNNING label.team=web"`. */
  filter?: string;
}

/** Options for {@link CorralClient.listEvents}. */
export interface ListEventsOptions extends CallOptions {
  afterSequence?: Sequence;
  pageSize?: number;
  names?: string[];
  pageToken?: string;
}

/** A client for one corral operator. Close it when done. */
export class CorralClient {
  /** The raw Connect client for OperatorService. */
  readonly operator: Client<typeof OperatorService>;
  /** The raw Connect client for LifecycleService. */
  readonly lifecycle: Client<typeof LifecycleService>;
  /** The URL the client talks to, such as `http://127.0.0.1:50051`. */
  readonly baseUrl: string;

  private readonly sessions: Http2SessionManager | undefined;

  /**
   * @param address `host:port` (plaintext), or a full `http://` / `https://` URL.
   */
  constructor(address: string, options: CorralClientOptions = {}) {
    this.baseUrl = /^https?:\/\//.test(address) ? address : `http://${address}`;
    const interceptors = [...(options.interceptors ?? [])];
    if (options.token) {
      interceptors.push(bearer(options.token));
    }

    let transport = options.transport;
    if (transport === undefined) {
      this.sessions = new Http2SessionManager(this.baseUrl, undefined, noDelay(this.baseUrl));
      transport = createGrpcTransport({
        baseUrl: this.baseUrl,
        sessionManager: this.sessions,
        interceptors,
        defaultTimeoutMs: options.defaultTimeoutMs,
      });
    }
    this.operator = createClient(OperatorService, transport);
    this.lifecycle = createClient(LifecycleService, transport);
  }

  /** Starts a container, creating or updating it when a spec is given. */
  async startContainer(name: string, options: StartOptions = {}): Promise<Container> {
    const { spec, force, requestId, ...call } = options;
    const response = await guard(
      this.operator.startContainer({ name, spec, force, requestId: requestId ?? "" }, call),
    );
    return required(response.container);
  }

  /** Stops a container; `gracePeriod` (such as `"5s"`) overrides the spec's. */
  async stopContainer(
    name: string,
    options: CallOptions & { gracePeriod?: string } = {},
  ): Promise<Container> {
    const { gracePeriod, ...call } = options;
    const response = await guard(
      this.operator.stopContainer({ name, gracePeriod: gracePeriod ?? "" }, call),
    );
    return required(response.container);
  }

  /** Stops the running instance, if any, and starts a new one. */
  async restartContainer(name: string, options: CallOptions = {}): Promise<Container> {
    const response = await guard(this.operator.restartContainer({ name }, options));
    return required(response.container);
  }

  /** Returns one container. */
  async getContainer(name: string, options: CallOptions = {}): Promise<Container> {
    const response = await guard(this.operator.getContainer({ name }, options));
    return required(response.container);
  }

  /** Returns one page of containers in name order; see {@link listAllContainers}. */
  async listContainers(options: ListContainersOptions = {}): Promise<ListContainersResponse> {
    const { pageSize, pageToken, filter, ...call } = options;
    return guard(this.operator.listContainers({ pageSize, pageToken, filter }, call));
  }

  /** Every container matching `filter`, following the page tokens. */
  async *listAllContainers(
    options: Omit<ListContainersOptions, "pageToken"> = {},
  ): AsyncGenerator<Container> {
    let pageToken = "";
    do {
      const page = await this.listContainers({ ...options, pageToken });
      yield* page.containers;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** Deletes a stopped container that is not in the min replica set. */
  async deleteContainer(name: string, options: CallOptions = {}): Promise<void> {
    await guard(this.operator.deleteContainer({ name }, options));
  }

  /** Forgets a container's crash history, re-arming the crash-loop breaker. */
  async clearCrashHistory(name: string, options: CallOptions = {}): Promise<Container> {
    const response = await guard(this.operator.clearCrashHistory({ name }, options));
    return required(response.container);
  }

  /** Runs one reconciliation pass over the min replica set now. */
  async reconcileFleet(options: CallOptions = {}): Promise<ReconcileFleetResponse> {
    return guard(this.operator.reconcileFleet({}, options));
  }

  /** The operator's version, runtime, min replica set and settings. */
  async getOperatorInfo(options: CallOptions = {}): Promise<GetOperatorInfoResponse> {
    return guard(this.operator.getOperatorInfo({}, options));
  }

  /** One page of the event log after `afterSequence`. */
  async listEvents(options: ListEventsOptions = {}): Promise<ListEventsResponse> {
    const { afterSequence, pageSize, names, pageToken, ...call } = options;
    return guard(
      this.operator.listEvents(
        { afterSequence: BigInt(afterSequence ?? 0), pageSize, names, pageToken },
        call,
      ),
    );
  }

  /**
   * Follows the event log from `afterSequence`: the logged events, then live
   * ones. The watch resumes by itself after a disconnect or an operator
   * restart, so each event is seen once, in order.
   */
  watchEvents(options: WatchOptions = {}): EventWatch {
    return new EventWatch(
      (request, signal) => this.operator.watchEvents(request, { signal }),
      options,
    );
  }

  /**
   * Sends one lifecycle report (what {@link WorkloadReporter} does for a
   * workload). `token` is the workload's CORRAL_TOKEN when the client was
   * not created with it.
   */
  async reportEvent(
    report: ReportEventInit,
    options: CallOptions & { token?: string } = {},
  ): Promise<ReportEventResponse> {
    const { token, ...call } = options;
    if (token) {
      call.headers = new Headers(call.headers);
      call.headers.set("authorization", `Bearer ${token}`);
    }
    return guard(this.lifecycle.reportEvent(report, call));
  }

  /** Closes the connection; calls in flight fail with UNAVAILABLE or CANCELLED. */
  close(): void {
    this.sessions?.abort();
  }
}

/**
 * Plaintext connections with TCP_NODELAY. Node's sockets default to Nagle's
 * algorithm, and a gRPC request is several small HTTP/2 frames written
 * separately: with Nagle on, each call waits out the server's delayed ACK
 * (about 40 ms on Linux), capping a connection at a few hundred calls per
 * second. TLS connections keep Node's defaults.
 */
function noDelay(baseUrl: string): { createConnection?: () => ReturnType<typeof netConnect> } {
  const url = new URL(baseUrl);
  if (url.protocol !== "http:") {
    return {};
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || 80);
  return { createConnection: () => netConnect({ host, port, noDelay: true }) };
}

function bearer(token: string): Interceptor {
  return (next) => (request) => {
    if (!request.header.has("authorization")) {
      request.header.set("authorization", `Bearer ${token}`);
    }
    return next(request);
  };
}

async function guard<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    throw fromConnectError(error);
  }
}

function required(container: Container | undefined): Container {
  if (container === undefined) {
    throw new TypeError("corral answered without a container");
  }
  return container;
}
