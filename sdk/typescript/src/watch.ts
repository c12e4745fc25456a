/**
 * An event watch that resumes by itself.
 *
 * The watch remembers the sequence of the last event it handed out. When the
 * stream breaks (corral shutting down, a lost connection, an operator
 * restart) it reconnects with a capped exponential backoff and asks for the
 * events after that sequence, so the caller sees every event once, in order.
 * The server's log is the source of truth: nothing is buffered here.
 *
 * Never retried: a cursor the log no longer holds (CursorOutOfRangeError;
 * skipping ahead silently would lose events), bad arguments, refused
 * credentials, and anything else that is not a transport fault.
 *
 * Heartbeats do not move the cursor: a heartbeat's head sequence may include
 * an event the stream has not sent yet, and resuming after it would skip it.
 */

import { Code } from "@connectrpc/connect";

import type { Event, EventType } from "./gen/corral/v1/event_pb.js";
import type {
  Heartbeat,
  WatchEventsRequestSchema,
  WatchEventsResponse,
} from "./gen/corral/v1/operator_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { CorralError, UnavailableError, fromConnectError } from "./errors.js";

/** First reconnect delay: short, since an operator restart is usually quick. */
export const INITIAL_BACKOFF_MS = 50;
/** Largest reconnect delay: a restarted operator is found promptly. */
export const MAX_BACKOFF_MS = 2000;

/** What a watch follows and how it resumes. */
export interface WatchOptions {
  /** Send the events after this sequence (0: the whole log), then live ones. */
  afterSequence?: bigint | number;
  /** Only events about these containers. */
  names?: string[];
  /** Only events of these types. */
  types?: EventType[];
  /** Reconnect after transport faults (default true). */
  resume?: boolean;
  /** Give up when reconnecting has failed for this long (default: never). */
  reconnectTimeoutMs?: number;
  /** Called before each reconnect, with the fault and the delay. */
  onReconnect?: (error: CorralError, delayMs: number) => void;
}

/** One item of {@link EventWatch.withHeartbeats}. */
export type WatchItem =
  | { kind: "event"; event: Event }
  | { kind: "heartbeat"; heartbeat: Heartbeat };

type OpenStream = (
  request: MessageInitShape<typeof WatchEventsRequestSchema>,
  signal: AbortSignal,
) => AsyncIterable<WatchEventsResponse>;

/**
 * An async iterable over corral's events that resumes by itself.
 *
 * Made by {@link CorralClient.watchEvents}. Use `for await`; call
 * {@link close} (or `break` out of the loop) to stop. Iterate it once.
 */
export class EventWatch implements AsyncIterable<Event> {
  /** The last event handed out (or the starting cursor); resume from here later. */
  lastSequence: bigint;
  /** How many times the stream was resumed. */
  reconnects = 0;

  private readonly options: WatchOptions;
  private readonly open: OpenStream;
  private closed = false;
  private stream: AbortController | undefined;
  private wake: (() => void) | undefined;
  private delayMs = INITIAL_BACKOFF_MS;
  private failingSince: number | undefined;

  constructor(open: OpenStream, options: WatchOptions = {}) {
    this.open = open;
    this.options = options;
    this.lastSequence = BigInt(options.afterSequence ?? 0);
  }

  /** Events only. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Event> {
    for await (const item of this.withHeartbeats()) {
      if (item.kind === "event") {
        yield item.event;
      }
    }
  }

  /** Events and heartbeats, for a subscriber that wants to see liveness. */
  async *withHeartbeats(): AsyncGenerator<WatchItem> {
    while (!this.closed) {
      const stream = new AbortController();
      this.stream = stream;
      let fault: CorralError;
      try {
        const request: MessageInitShape<typeof WatchEventsRequestSchema> = {
          afterSequence: this.lastSequence,
          names: this.options.names ?? [],
          types: this.options.types ?? [],
        };
        for await (const response of this.open(request, stream.signal)) {
          this.delayMs = INITIAL_BACKOFF_MS;
          this.failingSince = undefined;
          const kind = response.kind;
          if (kind.case === "heartbeat") {
            yield { kind: "heartbeat", heartbeat: kind.value };
          } else if (kind.case === "event" && kind.value.sequence > this.lastSequence) {
            // Events at or below the cursor were handed out before a reconnect.
            this.lastSequence = kind.value.sequence;
            yield { kind: "event", event: kind.value };
          }
          if (this.closed) {
            return;
          }
        }
        fault = new UnavailableError(
          Code.Unavailable,
          `the event stream ended after sequence ${this.lastSequence}; resuming`,
        );
      } catch (error) {
        if (this.closed) {
          return;
        }
        fault = fromConnectError(error);
      } finally {
        stream.abort();
        this.stream = undefined;
      }
      await this.sleep(this.retryDelay(fault));
    }
  }

  /** Ends the watch; a pending `for await` returns. */
  close(): void {
    this.closed = true;
    this.stream?.abort();
    this.wake?.();
  }

  /** Milliseconds to wait before reconnecting, or throws `fault` when it is final. */
  private retryDelay(fault: CorralError): number {
    if (this.options.resume === false || !transient(fault)) {
      throw fault;
    }
    const now = Date.now();
    this.failingSince ??= now;
    const limit = this.options.reconnectTimeoutMs;
    if (limit !== undefined && now - this.failingSince >= limit) {
      throw fault;
    }

    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, MAX_BACKOFF_MS);
    this.reconnects += 1;
    this.options.onReconnect?.(fault, delay);
    return delay;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

/** Whether a broken stream is a transport fault worth resuming. */
export function transient(error: CorralError): boolean {
  switch (error.code) {
    case Code.Unavailable:
    case Code.Canceled: // Cut by the peer; our own close() returns before this.
    case Code.Internal: // An HTTP/2 stream reset or a GOAWAY mid-stream.
      return true;
    default:
      return false;
  }
}
