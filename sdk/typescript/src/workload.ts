/**
 * The workload side: report lifecycle to corral from inside the workload.
 *
 * corral starts each workload with `CONTAINER_NAME` (the key is
 * configurable), `CORRAL_INSTANCE_ID`, `CORRAL_ADDR` and a per-instance
 * `CORRAL_TOKEN`. {@link WorkloadReporter} reads them and reports STARTED,
 * ERROR and STOPPED through `LifecycleService.ReportEvent`.
 *
 * Reporting never takes the workload down: a report retries briefly while
 * corral is unreachable, then gives up with a warning and resolves to
 * `undefined`; it never rejects. Each report carries one `eventId` for all its
 * attempts, so a retry that reaches corral twice is stored once. Outside
 * corral (no such environment) every report is a no-op.
 */

import { randomUUID } from "node:crypto";

import { CorralClient } from "./client.js";
import { type ReportEventResponse, ReportType } from "./gen/corral/v1/lifecycle_pb.js";
import { type CorralError, fromConnectError } from "./errors.js";

export const NAME_ENV = "CONTAINER_NAME";
export const INSTANCE_ENV = "CORRAL_INSTANCE_ID";
export const ADDRESS_ENV = "CORRAL_ADDR";
export const TOKEN_ENV = "CORRAL_TOKEN";

/**
 * Milliseconds one report may spend retrying: long enough to ride out an
 * operator restart, short enough that a workload is never held up for long.
 */
export const REPORT_BUDGET_MS = 5000;

const ATTEMPT_TIMEOUT_MS = 2000;
const FIRST_RETRY_DELAY_MS = 100;
const MAX_RETRY_DELAY_MS = 1000;

/** Options for {@link WorkloadReporter}. */
export interface WorkloadReporterOptions {
  /** The environment to read; defaults to `process.env`. */
  env?: Record<string, string | undefined>;
  /** The variable holding the container's name (`container_name_env_key`). */
  nameKey?: string;
  /** Milliseconds each report may spend retrying. */
  reportBudgetMs?: number;
  /** Where warnings go; defaults to `console.warn`. */
  warn?: (message: string, fields: Record<string, unknown>) => void;
}

/** Lifecycle reporting for a workload corral runs. */
export class WorkloadReporter {
  /** The container's name, or empty outside corral. */
  readonly name: string;
  /** This instance's id, or empty outside corral. */
  readonly instanceId: string;
  /** corral's address, or empty outside corral. */
  readonly address: string;

  private readonly token: string;
  private readonly budgetMs: number;
  private readonly warn: (message: string, fields: Record<string, unknown>) => void;
  private client: CorralClient | undefined;

  constructor(options: WorkloadReporterOptions = {}) {
    const env = options.env ?? process.env;
    this.name = env[options.nameKey ?? NAME_ENV] ?? "";
    this.instanceId = env[INSTANCE_ENV] ?? "";
    this.address = env[ADDRESS_ENV] ?? "";
    this.token = env[TOKEN_ENV] ?? "";
    this.budgetMs = options.reportBudgetMs ?? REPORT_BUDGET_MS;
    this.warn = options.warn ?? ((message, fields) => console.warn(message, fields));
  }

  /** True when running under corral (name, instance and address are set). */
  get managed(): boolean {
    return Boolean(this.name && this.instanceId && this.address);
  }

  /** Tells corral the workload is up and ready (the container turns ready). */
  reportStarted(): Promise<ReportEventResponse | undefined> {
    return this.report(ReportType.STARTED, {});
  }

  /** Tells corral the workload is ending with `exitCode`. */
  reportStopped(exitCode = 0): Promise<ReportEventResponse | undefined> {
    return this.report(ReportType.STOPPED, { exitCode });
  }

  /**
   * Tells corral the workload failed; `message` becomes the exit's cause.
   * `retryAfter` (such as `"30s"`) asks for a restart delay, kept within the
   * restart policy's bounds.
   */
  reportError(message: string, retryAfter = ""): Promise<ReportEventResponse | undefined> {
    return this.report(ReportType.ERROR, { message, retryAfter });
  }

  /**
   * On each of `signals` (default SIGTERM, corral's stop signal): runs
   * `onStop`, reports STOPPED with exit code 0 and exits with 0.
   */
  exitOnSignals(
    signals: NodeJS.Signals[] = ["SIGTERM"],
    onStop?: (signal: NodeJS.Signals) => void | Promise<void>,
  ): void {
    let stopping = false;
    const handler = (signal: NodeJS.Signals): void => {
      if (stopping) {
        return;
      }
      stopping = true;
      void (async () => {
        try {
          await onStop?.(signal);
        } catch (error) {
          this.warn("workload stop hook failed", { error: String(error) });
        }
        await this.reportStopped(0);
        this.close();
        process.exit(0);
      })();
    };
    for (const signal of signals) {
      process.on(signal, handler);
    }
  }

  /** Closes the connection to corral. Reports after this reconnect. */
  close(): void {
    this.client?.close();
    this.client = undefined;
  }

  private async report(
    type: ReportType,
    fields: { exitCode?: number; message?: string; retryAfter?: string },
  ): Promise<ReportEventResponse | undefined> {
    const kind = ReportType[type];
    if (!this.managed) {
      return undefined;
    }
    const request = {
      name: this.name,
      instanceId: this.instanceId,
      eventId: randomUUID(),
      type,
      exitCode: fields.exitCode,
      message: fields.message ?? "",
      retryAfter: fields.retryAfter ?? "",
    };
    const deadline = Date.now() + this.budgetMs;
    let delay = FIRST_RETRY_DELAY_MS;

    for (;;) {
      let fault: CorralError;
      try {
        this.client ??= new CorralClient(this.address, { token: this.token || undefined });
        const left = deadline - Date.now();
        return await this.client.reportEvent(request, {
          timeoutMs: Math.max(Math.min(left, ATTEMPT_TIMEOUT_MS), 50),
        });
      } catch (error) {
        // Anything at all, even a bug in the client, must not reach the workload.
        fault = fromConnectError(error);
      }

      if (!fault.retryable || Date.now() + delay >= deadline) {
        this.warn("could not report to corral; the workload carries on", {
          type: kind,
          eventId: request.eventId,
          code: fault.reason,
          error: fault.rawMessage,
        });
        return undefined;
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, MAX_RETRY_DELAY_MS);
    }
  }
}
