import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { readJson, updatePrivateJson } from "../../cli/config";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe("a CLI state file changed by several processes at once", () => {
  it("keeps every change when many writers find the lock an ended process left, and leaves no lock behind", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-cli-config-"));
    dirs.push(dir);
    await mkdir(join(dir, "state"));
    const file = join(dir, "state", "entries.json");
    // Left by a process that ended while holding it (no such pid on this host).
    await writeFile(`${file}.lock`, JSON.stringify({ pid: 2 ** 30, host: hostname() }));
    const writers = Array.from({ length: 20 }, (_, i) => `writer-${i}`);
    await Promise.all(writers.map((w) => updatePrivateJson<Record<string, true>>(file, (now) => ({ ...now, [w]: true }))));
    expect(Object.keys((await readJson<Record<string, true>>(file)) ?? {}).sort()).toEqual([...writers].sort());
    expect(await readdir(join(dir, "state"))).toEqual(["entries.json"]);
  });
});
