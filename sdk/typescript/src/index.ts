/**
 * corral's TypeScript SDK.
 *
 * - {@link CorralClient}: one method per RPC, typed results and errors.
 * - {@link EventWatch}: follows the event log and resumes by itself.
 * - {@link WorkloadReporter}: a workload's STARTED / STOPPED / ERROR reports.
 * - The generated messages and enums of `corral.v1` (also under
 *   `@corral/sdk/gen/corral/v1/*_pb`), produced by `buf generate` with the
 *   local protoc-gen-es; never edited by hand.
 */

export * from "./client.js";
export * from "./errors.js";
export * from "./watch.js";
export * from "./workload.js";
export * from "./gen/corral/v1/container_pb.js";
export * from "./gen/corral/v1/event_pb.js";
export * from "./gen/corral/v1/lifecycle_pb.js";
export * from "./gen/corral/v1/operator_pb.js";
