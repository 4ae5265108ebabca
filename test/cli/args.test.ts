import { describe, expect, it } from "vitest";
import type { Handlers } from "../../cli/commands";
import { EXIT } from "../../cli/errors";
import { runCapturedCli } from "../helpers/cli";

/** Runs the real argument parser with handlers that only record what they were given. */
async function parse(argv: string[]) {
  const calls: { command: string; args: unknown[] }[] = [];
  const record =
    (command: string) =>
    async (_ctx: unknown, ...args: unknown[]) => {
      calls.push({ command, args });
      return EXIT.ok;
    };
  const handlers = Object.fromEntries(
    ["login", "logout", "submit", "ls", "status", "cancel", "download", "control", "more"].map((c) => [c, record(c)]),
  ) as unknown as Handlers;
  const { code, out, err } = await runCapturedCli(argv, {}, handlers);
  return { code, calls, out, err };
}

describe("video-refresher argument parsing", () => {
  it("passes files, the variation count and --wait to submit", async () => {
    const r = await parse(["submit", "a.mp4", "b.mov", "-n", "3", "--wait"]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.calls).toEqual([{ command: "submit", args: [["a.mp4", "b.mov"], { variations: 3, wait: true, intervalMs: 1000 }] }]);
  });

  it("passes the chosen effects to submit: families as a list or the API's JSON, with an intensity", async () => {
    const list = await parse(["submit", "a.mp4", "-n", "2", "--effects", "color, mirror,speed", "--intensity", "strong"]);
    expect(list.calls[0]!.args[1]).toMatchObject({ effects: { intensity: "strong", families: ["color", "mirror", "speed"] } });
    const json = await parse(["submit", "a.mp4", "-n", "2", "--effects", '{"intensity":"medium","families":["zoom","noise"]}']);
    expect(json.calls[0]!.args[1]).toMatchObject({ effects: { intensity: "medium", families: ["zoom", "noise"] } });
    const onlyIntensity = await parse(["submit", "a.mp4", "-n", "2", "--intensity", "medium"]);
    expect(onlyIntensity.calls[0]!.args[1]).toMatchObject({ effects: { intensity: "medium", families: ["color", "zoom"] } });
    expect((await parse(["submit", "a.mp4", "-n", "2"])).calls[0]!.args[1]).not.toHaveProperty("effects.families");
  });

  it("exits 2 without calling anything for an unknown effect family or intensity, or effects JSON that is not", async () => {
    for (const argv of [
      ["--effects", "color,sparkle"],
      ["--effects", ","],
      ["--intensity", "extreme"],
      ["--effects", "{not json"],
      ["--effects", '{"families":"color"}'],
      ["--effects", '{"intensity":"strong","families":["color"]}', "--intensity", "subtle"],
    ]) {
      const r = await parse(["submit", "a.mp4", "-n", "2", ...argv]);
      expect(r.code, argv.join(" ")).toBe(EXIT.usage);
      expect(r.calls).toEqual([]);
    }
    expect((await parse(["submit", "a.mp4", "-n", "2", "--effects", "color,sparkle"])).err).toMatch(/unknown family sparkle/);
  });

  it("passes pause, resume and retry with the job id (and --wait where the job then runs), and more with its count", async () => {
    expect((await parse(["pause", "j1"])).calls).toEqual([{ command: "control", args: ["pause", "j1", { wait: false, intervalMs: 1000 }] }]);
    expect((await parse(["resume", "j2", "--wait"])).calls).toEqual([{ command: "control", args: ["resume", "j2", { wait: true, intervalMs: 1000 }] }]);
    expect((await parse(["retry", "j3", "--json"])).calls[0]!.args).toEqual(["retry", "j3", { wait: false, intervalMs: 1000 }]);
    expect((await parse(["more", "j4", "-n", "3", "--wait"])).calls).toEqual([{ command: "more", args: ["j4", { variations: 3, wait: true, intervalMs: 1000 }] }]);
    expect((await parse(["pause", "j1", "--wait"])).code).toBe(EXIT.usage);
    expect((await parse(["more", "j4"])).code).toBe(EXIT.usage);
    expect((await parse(["resume"])).code).toBe(EXIT.usage);
  });

  it("accepts --variations as the long form of -n", async () => {
    const r = await parse(["submit", "a.mp4", "--variations", "20"]);
    expect(r.calls[0]!.args[1]).toMatchObject({ variations: 20, wait: false });
  });

  it("exits 2 without calling anything when -n is missing, out of range or not a number", async () => {
    for (const argv of [["submit", "a.mp4"], ["submit", "a.mp4", "-n", "0"], ["submit", "a.mp4", "-n", "21"], ["submit", "a.mp4", "-n", "2.5"], ["submit", "a.mp4", "-n", "two"]]) {
      const r = await parse(argv);
      expect(r.code, argv.join(" ")).toBe(EXIT.usage);
      expect(r.calls).toEqual([]);
      expect(r.err).toMatch(/variations/);
    }
  });

  it("exits 2 for submit without files or with more than 10", async () => {
    expect((await parse(["submit", "-n", "2"])).code).toBe(EXIT.usage);
    const many = Array.from({ length: 11 }, (_, i) => `v${i}.mp4`);
    const r = await parse(["submit", ...many, "-n", "2"]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/at most 10/);
  });

  it("exits 2 for an unknown command, an unknown option, or no command at all", async () => {
    expect((await parse(["frobnicate"])).code).toBe(EXIT.usage);
    expect((await parse(["ls", "--bogus"])).code).toBe(EXIT.usage);
    expect((await parse([])).code).toBe(EXIT.usage);
  });

  it("reports a usage error as JSON on stdout when --json is given", async () => {
    const r = await parse(["ls", "--status", "sleeping", "--json"]);
    expect(r.code).toBe(EXIT.usage);
    expect(JSON.parse(r.out)).toMatchObject({ error: { code: "usage" } });
  });

  it("exits 0 for --help and prints the commands on stdout", async () => {
    const r = await parse(["--help"]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out).toMatch(/submit/);
  });

  it("limits ls --status to the job statuses and passes --limit as a number", async () => {
    const r = await parse(["ls", "--status", "queued", "--limit", "5"]);
    expect(r.calls).toEqual([{ command: "ls", args: [{ status: "queued", limit: 5 }] }]);
    expect((await parse(["ls", "--limit", "101"])).code).toBe(EXIT.usage);
  });

  it("requires --url for login and passes --token", async () => {
    expect((await parse(["login"])).code).toBe(EXIT.usage);
    const r = await parse(["login", "--url", "http://x.test", "--token", "t0k"]);
    expect(r.calls[0]).toEqual({ command: "login", args: [{ url: "http://x.test", token: "t0k", email: undefined }] });
  });

  it("cancels by ids with a reason, or every queued job, but not both and not neither", async () => {
    const r = await parse(["cancel", "j1", "j2", "--reason", "wrong cut"]);
    expect(r.calls[0]).toEqual({ command: "cancel", args: [["j1", "j2"], { reason: "wrong cut", allQueued: false }] });
    expect((await parse(["cancel", "--all-queued"])).calls[0]!.args).toEqual([[], { reason: undefined, allQueued: true }]);
    expect((await parse(["cancel", "j1", "--all-queued"])).code).toBe(EXIT.usage);
    expect((await parse(["cancel"])).code).toBe(EXIT.usage);
  });

  it("says in cancel --help that --all-queued reaches every user's queued jobs when an admin runs it", async () => {
    const r = await parse(["cancel", "--help"]);
    expect(r.code).toBe(EXIT.ok);
    const help = r.out.replace(/\s+/g, " ");
    expect(help).toContain("every user's when you are an admin");
    expect(help).not.toContain("every queued job of yours");
  });

  it("passes status --watch, and download -o with --unzip", async () => {
    expect((await parse(["status", "j1", "--watch"])).calls[0]!.args).toEqual(["j1", { watch: true, intervalMs: 1000 }]);
    expect((await parse(["download", "j1", "-o", "out", "--unzip"])).calls[0]!.args).toEqual(["j1", { output: "out", unzip: true }]);
    expect((await parse(["download", "j1"])).calls[0]!.args).toEqual(["j1", { output: ".", unzip: false }]);
  });
});
