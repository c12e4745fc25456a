import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  ContainerNotFoundError,
  ContainerState,
  CorralClient,
  CorralError,
  CrashLoopDetectedError,
  DesiredState,
  FailedPreconditionError,
  InvalidArgumentError,
  LifecycleService,
  NotFoundError,
  OperatorService,
  RestartWhen,
  UnavailableError,
} from "../src/index.js";
import { Code } from "../src/errors.js";
import { CorralServer, eventually } from "./harness.js";

const SLEEPER = { command: ["sleep", "300"], stopGracePeriod: "2s" };

describe("CorralClient against a real corral", () => {
  const server = new CorralServer(`
[[containers]]
name = "web"
command = ["sleep", "300"]
`);
  let client: CorralClient;

  before(async () => {
    await server.start();
    client = new CorralClient(server.address);
  });

  after(async () => {
    client?.close();
    await server.destroy();
  });

  test("has a method for every RPC of both services", () => {
    const missing = [OperatorService, LifecycleService].flatMap((service) =>
      service.methods
        .filter((method) => typeof Reflect.get(client, method.localName) !== "function")
        .map((method) => `${service.typeName}.${method.name}`),
    );
    assert.deepEqual(missing, [], `CorralClient lacks methods for ${missing.join(", ")}`);
  });

  test("reports the operator's info and its min replica set", async () => {
    const info = await client.getOperatorInfo();
    assert.equal(info.runtime, "process");
    assert.deepEqual(info.minReplicaSet, ["web"]);
    assert.equal(info.settings?.listen, server.address);
  });

  test("starts, lists, stops and deletes an ad-hoc container", async () => {
    const started = await client.startContainer("sleeper", { spec: SLEEPER });
    assert.equal(started.name, "sleeper");
    assert.equal(started.desiredState, DesiredState.RUNNING);
    assert.equal(started.minReplicaSet, false);
    const running = await eventually(async () => {
      const container = await client.getContainer("sleeper");
      return container.state === ContainerState.RUNNING && container;
    }, "sleeper to run");
    assert.match(running.runtimeId, /^\d+$/);

    const names = [];
    for await (const container of client.listAllContainers({ pageSize: 1 })) {
      names.push(container.name);
    }
    assert.deepEqual(names, ["sleeper", "web"]);
    const page = await client.listContainers({ filter: "min_replica_set=true" });
    assert.deepEqual(
      page.containers.map((c) => c.name),
      ["web"],
    );
    assert.ok(page.eventSequence > 0n);

    const stopped = await client.stopContainer("sleeper", { gracePeriod: "1s" });
    assert.equal(stopped.desiredState, DesiredState.STOPPED);
    await eventually(
      async () => (await client.getContainer("sleeper")).state === ContainerState.STOPPED,
      "sleeper to stop",
    );

    await client.deleteContainer("sleeper");
    await assert.rejects(client.getContainer("sleeper"), ContainerNotFoundError);
  });

  test("restarts a container into a new instance", async () => {
    const before = await eventually(async () => {
      const web = await client.getContainer("web");
      return web.state === ContainerState.RUNNING && web;
    }, "web to run");
    const restarted = await client.restartContainer("web");
    assert.notEqual(restarted.instanceId, before.instanceId);

    const reconciled = await client.reconcileFleet();
    assert.equal(reconciled.failed.length, 0);
  });

  test("refuses an unknown container with ContainerNotFoundError", async () => {
    const error = await client.getContainer("nope").then(
      () => assert.fail("expected an error"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ContainerNotFoundError);
    assert.ok(error instanceof NotFoundError);
    assert.ok(error instanceof CorralError);
    assert.equal(error.code, Code.NotFound);
    assert.equal(error.reason, "CONTAINER_NOT_FOUND");
    assert.equal(error.domain, "corral.dev");
    assert.equal(error.resourceName, "nope");
  });

  test("refuses an invalid spec with InvalidArgumentError naming each field", async () => {
    const error = await client
      .startContainer("bad", { spec: { command: ["true"], stopGracePeriod: "ten seconds" } })
      .then(
        () => assert.fail("expected an error"),
        (e: unknown) => e,
      );
    assert.ok(error instanceof InvalidArgumentError, String(error));
    assert.equal(error.code, Code.InvalidArgument);
    const fields = error.fieldViolations.map((v) => v.field);
    assert.ok(fields.includes("spec.stop_grace_period"), `fields: ${fields.join(", ")}`);

    const badName = await client.getContainer("Not_A_Name").catch((e: unknown) => e);
    assert.ok(badName instanceof InvalidArgumentError, String(badName));
    assert.deepEqual(
      badName.fieldViolations.map((v) => v.field),
      ["name"],
    );
  });

  test("refuses to start a crash-looping container with CrashLoopDetectedError", async () => {
    await client.startContainer("crasher", {
      spec: {
        command: ["sh", "-c", "exit 1"],
        restartPolicy: {
          when: RestartWhen.ON_FAILURE,
          crash: { window: "10m", allowedCrashes: 1 },
          backoff: { initial: "0s" },
        },
      },
    });
    const looping = await eventually(async () => {
      const crasher = await client.getContainer("crasher");
      return crasher.state === ContainerState.CRASH_LOOP && crasher;
    }, "crasher to crash loop");
    assert.equal(looping.crashLoop?.active, true);
    assert.equal(looping.crashHistory.length, 2);

    const error = await client.startContainer("crasher").catch((e: unknown) => e);
    assert.ok(error instanceof CrashLoopDetectedError, String(error));
    assert.ok(error instanceof FailedPreconditionError);
    assert.equal(error.reason, "CRASH_LOOP_DETECTED");
    assert.equal(error.resourceName, "crasher");
    assert.equal(error.preconditionViolations[0]?.type, "CRASH_LOOP_DETECTED");
    assert.match(error.message, /ClearCrashHistory/);

    const cleared = await client.clearCrashHistory("crasher");
    assert.equal(cleared.crashLoop?.active ?? false, false);
    await client.stopContainer("crasher");
  });

  test("turns an unreachable operator into a retryable UnavailableError", async () => {
    const nowhere = new CorralClient("127.0.0.1:1");
    try {
      const error = await nowhere.getOperatorInfo({ timeoutMs: 2000 }).catch((e: unknown) => e);
      assert.ok(error instanceof UnavailableError, String(error));
      assert.equal(error.retryable, true);
    } finally {
      nowhere.close();
    }
  });
});
