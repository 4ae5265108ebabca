// .ci/run on a machine made of stand-ins: a PATH holding only the tools it may use, where apt-get, sudo, npm, node
// and id are scripts that record their calls. Nothing is installed and no test suite runs.
import { execa } from "execa";
import { chmod, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { resolveExecutable } from "../../runner/config";
import { tempDirs } from "../helpers/tmp";

const root = fileURLToPath(new URL("../..", import.meta.url));
const dirs = tempDirs("vr-ci-run");
afterAll(() => dirs.cleanup());

const recorder = (log: string) => `#!/bin/sh\necho "$(basename "$0") $*" >> '${log}'\n`;

/** A bin directory with the basics .ci/run needs, stand-ins that record, and `present` tools as no-op stand-ins. */
async function machine(opts: { node?: string | null; uid?: number; present?: string[] }) {
  const dir = await dirs.make();
  const log = join(dir, "calls.log");
  await writeFile(log, "");
  const tool = async (name: string, body: string) => {
    await writeFile(join(dir, name), body);
    await chmod(join(dir, name), 0o755);
  };
  for (const real of ["dirname", "basename", "sed", "cat", "head", "tr"]) {
    const path = resolveExecutable(real);
    if (path) await symlink(path, join(dir, real));
  }
  await tool("apt-get", recorder(log));
  await tool("npm", recorder(log));
  // Records what it would run as root, and runs nothing.
  await tool("sudo", recorder(log));
  await tool("env", `#!/bin/sh\nwhile [ "\${1#*=}" != "$1" ]; do shift; done\nexec "$@"\n`);
  await tool("id", `#!/bin/sh\necho ${opts.uid ?? 0}\n`);
  if (opts.node !== null) await tool("node", `#!/bin/sh\necho v${opts.node ?? "20.19.0"}\n`);
  for (const name of opts.present ?? []) await tool(name, "#!/bin/sh\n");
  const res = await execa("/bin/bash", [join(root, ".ci/run")], { reject: false, env: { PATH: dir, HOME: dir }, extendEnv: false, stdin: "ignore" });
  const calls = (await readFile(log, "utf8")).split("\n").filter(Boolean);
  return { ...res, calls };
}

const installs = (calls: string[]) => calls.find((c) => / install /.test(c)) ?? "";

describe(".ci/run", () => {
  it("installs every tool the tests use that the machine lacks: ffmpeg, unzip, python3 and procps (ps)", async () => {
    const res = await machine({});
    expect(res.exitCode, res.stderr).toBe(0);
    const line = installs(res.calls);
    for (const pkg of ["ffmpeg", "unzip", "python3", "procps"]) expect(line.split(" "), line).toContain(pkg);
    expect(res.calls.filter((c) => c.startsWith("sudo")), "root needs no sudo").toEqual([]);
    expect(res.calls.filter((c) => c.startsWith("npm"))).toEqual(["npm ci --no-audit --no-fund --loglevel=error", "npm test", "npm run test:faults"]);
  });

  it("installs nothing when every tool is there", async () => {
    const res = await machine({ present: ["ffmpeg", "ffprobe", "unzip", "python3", "ps"] });
    expect(res.exitCode, res.stderr).toBe(0);
    // Chromium is looked for at /usr/bin/chromium, which a PATH cannot stand in for.
    expect(installs(res.calls).split(" ").filter((w) => ["ffmpeg", "unzip", "python3", "procps"].includes(w))).toEqual([]);
  });

  it("installs through sudo when not run as root", async () => {
    const res = await machine({ uid: 1000 });
    expect(res.exitCode, res.stderr).toBe(0);
    const aptGet = res.calls.filter((c) => c.includes("apt-get"));
    expect(aptGet.map((c) => c.split(" ")[0])).toEqual(["sudo", "sudo"]);
    expect(aptGet[1]).toMatch(/^sudo env DEBIAN_FRONTEND=noninteractive apt-get install .* unzip /);
    expect(res.calls.filter((c) => c.startsWith("npm")), "the tests run as the user").toHaveLength(3);
  });

  it("stops with a clear message, before installing or testing anything, on a Node older than package.json's engines", async () => {
    const res = await machine({ node: "20.18.3" });
    expect(res.exitCode).not.toBe(0);
    expect(res.stderr).toContain("Node.js 20.19 or newer is needed (this is v20.18.3)");
    expect(res.calls).toEqual([]);
  });

  it("stops with a clear message when there is no Node at all", async () => {
    const res = await machine({ node: null });
    expect(res.exitCode).not.toBe(0);
    expect(res.stderr).toContain("Node.js 20.19 or newer is needed (no `node` on PATH)");
    expect(res.calls).toEqual([]);
  });

  it("accepts any newer Node", async () => {
    for (const node of ["20.19.0", "22.0.0", "24.3.1"]) expect((await machine({ node, present: ["ffmpeg", "ffprobe", "unzip", "python3", "ps"] })).exitCode, node).toBe(0);
  });
});
