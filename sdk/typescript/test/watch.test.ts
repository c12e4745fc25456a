import assert from "node:assert/strict";
import { after, test } from "node:test";

import {
  CorralClient,
  CursorOutOfRangeError,
  type Event,
  EventType,
} from "../src/index.js";
import { CorralServer, eventually } from "./harness.js";

const servers: CorralServer[] = [];
after(async () => {
  await Promise.all(servers.map((server) => server.destroy()));
});

async function allEvents(client: CorralClient): Promise<Event[]> {
  const events: Event[] = [];
  let pageToken = "";
  let afterSequence = 0n;
  do {
    const page = await client.listEvents({ afterSequence, pageSize: 1000, pageToken });
    events.push(...page.events);
    pageToken = page.nextPageToken;
    afterSequence = events.at(-1)?.sequence ?? 0n;
  } while (pageToken);
  return events;
}

test("a watch resumes across a server restart with no gap and no duplicate", async () => {
  const server = new CorralServer();
  servers.push(server);
  await server.start();
  const client = new CorralClient(server.address);
  const spec = { command: ["sleep", "300"], stopGracePeriod: "1s" };

  const watch = client.watchEvents({ afterSequence: 0 });
  const seen: Event[] = [];
  const following = (async () => {
    for await (const event of watch) {
      seen.push(event);
    }
  })();

  try {
    await client.startContainer("before", { spec });
    await eventually(
      () => seen.some((e) => e.name === "before" && e.type === EventType.RUNNING),
      "the watch to see 'before' running",
    );

    // The server goes away (its workloads stay up), then comes back on the
    // same port and data directory.
    await server.stop();
    await server.start();
    await client.startContainer("after", { spec });
    await client.stopContainer("before");

    await eventually(
      () => seen.some((e) => e.name === "before" && e.type === EventType.STOPPED),
      "the watch to see 'before' stopped after the restart",
    );
    const log = await allEvents(client);
    await eventually(() => seen.length >= log.length, "the watch to catch up with the log");

    assert.ok(watch.reconnects >= 1, `reconnects: ${watch.reconnects}`);
    assert.ok(seen.some((e) => e.type === EventType.ADOPTED && e.name === "before"));
    assert.ok(seen.some((e) => e.name === "after" && e.type === EventType.STARTING));
    const sequences = seen.map((e) => Number(e.sequence));
    assert.deepEqual(
      sequences,
      sequences.map((_, i) => i + 1),
      "sequences are 1..N with no gap or duplicate",
    );
    assert.deepEqual(
      sequences,
      log.map((e) => Number(e.sequence)),
    );
    assert.equal(watch.lastSequence, log.at(-1)?.sequence);
  } finally {
    watch.close();
    await following;
    client.close();
  }
});

test("a watch filters by name and resumes from a given sequence", async () => {
  const server = new CorralServer();
  servers.push(server);
  await server.start();
  const client = new CorralClient(server.address);
  try {
    await client.startContainer("one", { spec: { command: ["sleep", "300"] } });
    await client.startContainer("two", { spec: { command: ["sleep", "300"] } });
    const log = await allEvents(client);
    const firstOfTwo = log.find((e) => e.name === "two");
    assert.ok(firstOfTwo);

    const watch = client.watchEvents({ afterSequence: firstOfTwo.sequence - 1n, names: ["two"] });
    const got: Event[] = [];
    for await (const event of watch) {
      got.push(event);
      if (event.type === EventType.RUNNING) {
        watch.close();
      }
    }
    assert.equal(got[0]?.sequence, firstOfTwo.sequence);
    assert.ok(got.every((e) => e.name === "two"));
  } finally {
    client.close();
  }
});

test("a watch does not retry an out-of-range cursor", async () => {
  const server = new CorralServer();
  servers.push(server);
  await server.start();
  const client = new CorralClient(server.address);
  try {
    const future = client.watchEvents({ afterSequence: 1_000_000 });
    const error = await (async () => {
      for await (const _ of future) {
        // Nothing arrives: the cursor is past the head.
      }
    })().catch((e: unknown) => e);
    assert.ok(error instanceof CursorOutOfRangeError, String(error));
    assert.equal(error.reason, "CURSOR_OUT_OF_RANGE");
    // The log is empty: the error still says where it starts and ends.
    assert.equal(typeof error.oldestSequence, "bigint");
    assert.equal(error.headSequence, 0n);
    assert.equal(future.reconnects, 0);
  } finally {
    client.close();
  }
});
