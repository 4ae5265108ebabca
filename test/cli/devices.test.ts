import { mkdtemp, readFile, rm, stat, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { deviceCookie, saveDeviceCookie } from "../../cli/devices";

async function configHome() {
  const dir = await mkdtemp(join(tmpdir(), "vr-cli-devices-"));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return { XDG_CONFIG_HOME: dir };
}

describe("the CLI's device cookies", () => {
  it("keeps both when two logins to different accounts save theirs at the same time", async () => {
    const env = await configHome();
    const url = "http://127.0.0.1:8787";
    const accounts = Array.from({ length: 6 }, (_, i) => `user${i}@test.example`);
    await Promise.all(accounts.map((email, i) => saveDeviceCookie(env, url, email, `vr_device=d${i}`)));
    for (const [i, email] of accounts.entries()) expect(await deviceCookie(env, url, email)).toBe(`vr_device=d${i}`);
    expect((await stat(join(env.XDG_CONFIG_HOME, "video-refresher", "devices.json"))).mode & 0o777).toBe(0o600);
  });

  it("starts a file it cannot read over instead of never saving again", async () => {
    const env = await configHome();
    await mkdir(join(env.XDG_CONFIG_HOME, "video-refresher"), { recursive: true });
    const file = join(env.XDG_CONFIG_HOME, "video-refresher", "devices.json");
    await writeFile(file, '{"http://a me@x": {"cookie": "vr_dev');
    await saveDeviceCookie(env, "http://a", "Me@X ", "vr_device=new");
    expect(await deviceCookie(env, "http://a", "me@x")).toBe("vr_device=new");
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual({ "http://a me@x": { cookie: "vr_device=new", savedAt: expect.any(Number) } });
    // Several logins finding it unreadable at once: each starts it over under the lock, none removes another's save.
    await writeFile(file, "{");
    await Promise.all(["a", "b", "c"].map((n) => saveDeviceCookie(env, "http://a", `${n}@x`, `vr_device=${n}`)));
    for (const n of ["a", "b", "c"]) expect(await deviceCookie(env, "http://a", `${n}@x`)).toBe(`vr_device=${n}`);
  });
});
