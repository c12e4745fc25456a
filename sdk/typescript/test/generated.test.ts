import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { test } from "node:test";

import { PACKAGE_DIR } from "./harness.js";

function files(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      const path = join(entry.parentPath ?? entry.path, entry.name);
      found.set(relative(dir, path), readFileSync(path, "utf8"));
    }
  }
  return found;
}

test("the committed src/gen matches what buf generate makes from the protos", () => {
  const out = mkdtempSync(join(tmpdir(), "corral-ts-gen-"));
  try {
    const buf = join(PACKAGE_DIR, "node_modules", ".bin", "buf");
    const run = spawnSync(buf, ["generate", "--output", out], {
      cwd: PACKAGE_DIR,
      encoding: "utf8",
    });
    assert.equal(run.status, 0, run.stderr);

    const fresh = files(join(out, "src", "gen"));
    const committed = files(join(PACKAGE_DIR, "src", "gen"));
    assert.deepEqual(
      [...committed.keys()].sort(),
      [...fresh.keys()].sort(),
      "generated files differ: run `npm run generate` and commit src/gen",
    );
    for (const [path, text] of fresh) {
      assert.ok(
        committed.get(path) === text,
        `src/gen/${path} is out of date: run \`npm run generate\` and commit src/gen`,
      );
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
