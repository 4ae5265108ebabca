import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";
import { liveGroupMembers, stopInOrder } from "../../scripts/stack";
import { tempDirs } from "../helpers/tmp";
import { until } from "../helpers/until";

const dirs = tempDirs("vr-stack-script");
const started: ChildProcess[] = [];
afterEach(async () => {
  vi.unstubAllEnvs();
  for (const child of started.splice(0)) {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await dirs.cleanup();
});

/** A shell leading a process group of its own: `script` runs in it. */
function group(script: string): ChildProcess {
  const child = spawn("/bin/sh", ["-c", script], { detached: true, stdio: "ignore" });
  started.push(child);
  return child;
}

const state = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0];
  } catch {
    return undefined;
  }
};

describe("liveGroupMembers", () => {
  it("finds the running processes of a group without `ps` on PATH", async () => {
    const leader = group("sleep 30 & wait");
    await until("the group's sleep to start", async () => liveGroupMembers(leader.pid!).length === 2, 10_000, 20);
    // An empty directory as PATH: a slim image without procps.
    vi.stubEnv("PATH", await dirs.make());
    const members = liveGroupMembers(leader.pid!);
    expect(members).toHaveLength(2);
    expect(members).toContain(leader.pid!);
  });

  it("leaves out a group's zombies: they hold no port and run no code", async () => {
    // `sleep 0` exits at once and the shell, replaced by `sleep 30`, never reaps it.
    const leader = group("sleep 0 & exec sleep 30");
    let zombie: number | undefined;
    await until(
      "the group's unreaped child to become a zombie",
      async () => {
        const children = readFileSync(`/proc/${leader.pid}/task/${leader.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
        zombie = children.find((pid) => state(pid) === "Z");
        return zombie !== undefined;
      },
      10_000,
      20,
    );
    expect(liveGroupMembers(leader.pid!)).toEqual([leader.pid!]);
  });

  it("finds nothing once the group is gone", async () => {
    const leader = group("sleep 30");
    const exited = new Promise((r) => leader.once("exit", r));
    process.kill(-leader.pid!, "SIGKILL");
    await exited;
    expect(liveGroupMembers(leader.pid!)).toEqual([]);
  });
});

describe("stopInOrder", () => {
  it("still stops every later group and the rest of a group when one child's stop fails, then names the failure", async () => {
    const stopped: string[] = [];
    const child = (name: string, fails = false) => ({
      name,
      stop: async () => {
        if (fails) throw new Error("spawnSync ps ENOENT");
        stopped.push(name);
      },
    });
    const stopping = stopInOrder([[child("runner-1", true), child("runner-2")], [child("edge")], [child("db")]]);
    await expect(stopping).rejects.toThrow(/runner-1: spawnSync ps ENOENT/);
    expect(stopped).toEqual(["runner-2", "edge", "db"]);
  });

  it("stops the groups one after another: a later group starts stopping only once the earlier one has stopped", async () => {
    const events: string[] = [];
    let release!: () => void;
    const runnerStopped = new Promise<void>((r) => (release = r));
    const stopping = stopInOrder([
      [
        {
          name: "runner",
          stop: async () => {
            events.push("runner: stopping");
            await runnerStopped;
            events.push("runner: stopped");
          },
        },
      ],
      [{ name: "db", stop: async () => void events.push("db: stopping") }],
    ]);
    await Promise.resolve();
    expect(events).toEqual(["runner: stopping"]);
    release();
    await stopping;
    expect(events).toEqual(["runner: stopping", "runner: stopped", "db: stopping"]);
  });
});
