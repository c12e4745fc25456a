import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import {
  ContainerState,
  CorralClient,
  EventType,
  ReportType,
  WorkloadReporter,
} from "../src/index.js";
import { CorralServer, PACKAGE_DIR, eventually, freePort } from "./harness.js";

const server = new CorralServer();
let client: CorralClient;

before(async () => {
  await server.start();
  client = new CorralClient(server.address);
});

after(async () => {
  client?.close();
  await server.destroy();
});

test("a workload corral started reports through the TypeScript reporter", async () => {
  const started = await client.startContainer("ts-workload", {
    spec: {
      command: [process.execPath, join("dist", "test", "fixtures", "workload.js")],
      workingDir: PACKAGE_DIR,
      stopGracePeriod: "5s",
    },
  });
  assert.equal(started.ready, false);

  const ready = await eventually(async () => {
    const container = await client.getContainer("ts-workload");
    return container.ready && container;
  }, "the workload to report STARTED");
  assert.equal(ready.state, ContainerState.RUNNING);

  // SIGTERM: the reporter reports STOPPED and the workload exits 0.
  await client.stopContainer("ts-workload");
  const stopped = await eventually(async () => {
    const container = await client.getContainer("ts-workload");
    return container.state === ContainerState.STOPPED && container;
  }, "the workload to stop");
  assert.equal(stopped.lastExit?.exitCode, 0, server.readLog());

  const events = (await client.listEvents({ names: ["ts-workload"], pageSize: 1000 })).events;
  // STARTED is logged as READY, STOPPED as REPORTED, both from the instance.
  const reports = events
    .filter((e) => e.type === EventType.READY || e.type === EventType.REPORTED)
    .map((e) => [EventType[e.type], e.message, e.instanceId]);
  assert.deepEqual(reports, [
    ["READY", "STARTED", started.instanceId],
    ["REPORTED", "STOPPED (exit code 0)", started.instanceId],
  ]);
});

test("reportEvent refuses a report without the instance's token", async () => {
  await client.startContainer("tokenless", { spec: { command: ["sleep", "300"] } });
  const container = await client.getContainer("tokenless");
  await assert.rejects(
    client.reportEvent({
      name: "tokenless",
      instanceId: container.instanceId,
      eventId: "e1",
      type: ReportType.STARTED,
    }),
    (error: unknown) =>
      error instanceof Error && ["UnauthenticatedError", "PermissionDeniedError"].includes(error.name),
  );
  await client.stopContainer("tokenless");
});

test("the reporter never throws into the workload when corral is down", async () => {
  const warnings: string[] = [];
  const reporter = new WorkloadReporter({
    env: {
      CONTAINER_NAME: "ghost",
      CORRAL_INSTANCE_ID: "i-1",
      CORRAL_ADDR: `127.0.0.1:${await freePort()}`,
      CORRAL_TOKEN: "t",
    },
    reportBudgetMs: 400,
    warn: (message) => warnings.push(message),
  });
  assert.equal(reporter.managed, true);
  const begin = Date.now();
  assert.equal(await reporter.reportStarted(), undefined);
  assert.equal(await reporter.reportError("boom", "1s"), undefined);
  assert.ok(Date.now() - begin < 3000);
  assert.equal(warnings.length, 2);
  reporter.close();
});

test("the reporter is a no-op outside corral", async () => {
  const reporter = new WorkloadReporter({ env: {} });
  assert.equal(reporter.managed, false);
  assert.equal(await reporter.reportStopped(3), undefined);
});
