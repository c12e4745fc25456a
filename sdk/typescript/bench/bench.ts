/**
 * The TypeScript client's side of bench/typescript_vs_python.py: unary call
 * rate and watch throughput against a running corral, printed as one JSON
 * line.
 *
 *     node dist/bench/bench.js ADDRESS CALLS CONCURRENCY HEAD_SEQUENCE
 */

import { performance } from "node:perf_hooks";

import { CorralClient } from "../src/index.js";

async function unaryRate(client: CorralClient, calls: number, concurrency: number): Promise<number> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < calls) {
      next += 1;
      await client.getOperatorInfo();
    }
  };
  const began = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return calls / ((performance.now() - began) / 1000);
}

async function watchRate(client: CorralClient, head: bigint): Promise<[number, number]> {
  const watch = client.watchEvents({ afterSequence: 0, resume: false });
  let count = 0;
  const began = performance.now();
  for await (const event of watch) {
    count += 1;
    if (event.sequence >= head) {
      watch.close();
    }
  }
  return [count, count / ((performance.now() - began) / 1000)];
}

const [address, callsText, concurrencyText, headText] = process.argv.slice(2);
if (!address || !callsText || !concurrencyText || !headText) {
  console.error("usage: bench.js ADDRESS CALLS CONCURRENCY HEAD_SEQUENCE");
  process.exit(2);
}
const calls = Number(callsText);
const concurrency = Number(concurrencyText);
const client = new CorralClient(address);
try {
  await unaryRate(client, Math.min(200, calls), concurrency); // warm-up
  const unary = await unaryRate(client, calls, concurrency);
  const [events, watch] = await watchRate(client, BigInt(headText));
  console.log(JSON.stringify({ unary_per_s: unary, watch_events: events, watch_per_s: watch }));
} finally {
  client.close();
}
