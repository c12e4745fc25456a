/**
 * Real corral servers for the tests, and the cleanup that keeps the machine
 * clean.
 *
 * Each {@link CorralServer} is `corral serve` as a child process on a free
 * port with its own data directory. Workloads outlive corral by design, so
 * {@link CorralServer.destroy} SIGKILLs the server and every process whose
 * environment carries its `CORRAL_ADDR`, as tests/harness.py does.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { CorralClient } from "../src/index.js";

/** sdk/typescript, whether running from src or from dist. */
export const PACKAGE_DIR = resolve(
  fileURLToPath(new URL(".", import.meta.url)),
  import.meta.url.includes("/dist/") ? "../.." : "..",
);
export const REPO = resolve(PACKAGE_DIR, "../..");
export const CORRAL = process.env.CORRAL_BIN ?? join(REPO, ".venv", "bin", "corral");

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  if (address === null || typeof address === "string") {
    throw new Error("no port");
  }
  return address.port;
}

/** Re-checks `check` until it returns something truthy or time runs out. */
export async function eventually<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 15000,
): Promise<Exclude<T, false | null | undefined | 0 | "">> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) {
        return value as Exclude<T, false | null | undefined | 0 | "">;
      }
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: last });
    }
    await new Promise((done) => setTimeout(done, 20));
  }
}

/** Pids of live processes whose environment carries `CORRAL_ADDR=address`. */
export function workloadPids(address: string): number[] {
  const wanted = `CORRAL_ADDR=${address}`;
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, "latin1").split("\0");
      const stat = readFileSync(`/proc/${entry}/stat`, "latin1");
      const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
      if (state !== "Z" && environ.includes(wanted)) {
        found.push(Number(entry));
      }
    } catch {
      // The process ended meanwhile, or is not ours to read.
    }
  }
  return found;
}

/** SIGKILLs the process group of every workload of `address`, and waits. */
export async function killWorkloads(address: string): Promise<void> {
  for (const pid of workloadPids(address)) {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, "SIGKILL");
      } catch {
        // Already gone, or not a group leader.
      }
    }
  }
  await eventually(() => workloadPids(address).length === 0, `workloads of ${address} to end`);
}

/** `corral serve` as a child process, restartable on the same port and data. */
export class CorralServer {
  readonly dir: string;
  readonly dataDir: string;
  readonly config: string;
  readonly log: string;
  port = 0;
  private child: ChildProcess | undefined;

  /** @param fleet the fleet file's TOML. */
  constructor(fleet = "") {
    this.dir = mkdtempSync(join(tmpdir(), "corral-ts-"));
    this.dataDir = join(this.dir, "data");
    this.config = join(this.dir, "fleet.toml");
    this.log = join(this.dir, "corral-serve.log");
    writeFileSync(this.config, `[operator]\nheartbeat_interval = "1s"\n\n${fleet}`);
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts the server (on a fresh port the first time) and waits until it serves. */
  async start(timeoutMs = 30000): Promise<void> {
    if (this.port === 0) {
      this.port = await freePort();
    }
    const log = openSync(this.log, "a");
    const child = spawn(
      CORRAL,
      ["serve", "--config", this.config, "--data-dir", this.dataDir, "--listen", this.address],
      { stdio: ["ignore", log, log] },
    );
    this.child = child;

    const client = new CorralClient(this.address);
    try {
      await eventually(
        async () => {
          if (child.exitCode !== null) {
            throw new Error(`corral exited early:\n${readFileSync(this.log, "utf8")}`);
          }
          await client.getOperatorInfo({ timeoutMs: 1000 });
          return true;
        },
        `corral to serve on ${this.address}`,
        timeoutMs,
      );
    } catch (error) {
      throw new Error(`${String(error)}\n${readFileSync(this.log, "utf8")}`, { cause: error });
    } finally {
      client.close();
    }
  }

  /** Stops the server with SIGTERM (workloads keep running) and waits for it. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    }
  }

  /** Kills the server and every workload it started, and removes its files. */
  async destroy(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    }
    if (this.port !== 0) {
      await killWorkloads(this.address);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The server's log, for failure messages. */
  readLog(): string {
    return readFileSync(this.log, "utf8");
  }
}
