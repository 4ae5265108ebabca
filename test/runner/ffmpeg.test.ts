import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildEncodeArgs,
  detectZoomScaler,
  durationTolerance,
  makeThumbnail,
  NotAVideoError,
  pictureMs,
  probeMedia,
  spawnFfmpeg,
  verifyOutput,
  type MediaInfo,
} from "../../runner/ffmpeg";
import { deriveParams } from "../../runner/params";
import { encodeSampleChain, keepEncodeSamples, sampleKeyframes, sampleTimes } from "../../runner/samples";
import { makeClip, makeNotAVideo, probeFile } from "../helpers/clips";
import { writeFfmpegStandIn } from "../helpers/runner";

const run = promisify(execFile);
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vr-ffmpeg-test-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/**
 * Rewrites the durations an MP4 declares (mvhd, and every track's tkhd and mdhd) to `seconds`, leaving its samples
 * and edit lists alone: ffprobe then reports `seconds` (so the source passes MAX_SOURCE_SECONDS), while a decode
 * still finds every frame the file holds.
 */
async function declareDuration(src: string, dest: string, seconds: number): Promise<void> {
  const b = await readFile(src);
  let movieScale = 0;
  const walk = (start: number, end: number) => {
    for (let at = start; at + 8 <= end; ) {
      let size = b.readUInt32BE(at);
      const type = b.toString("latin1", at + 4, at + 8);
      let header = 8;
      if (size === 1) {
        size = Number(b.readBigUInt64BE(at + 8));
        header = 16;
      } else if (size === 0) {
        size = end - at;
      }
      const body = at + header;
      const v1 = b[body] === 1;
      const put = (offset: number, value: number) => (v1 ? b.writeBigUInt64BE(BigInt(value), body + offset) : b.writeUInt32BE(value, body + offset));
      if (type === "moov" || type === "trak" || type === "mdia") {
        walk(body, at + size);
      } else if (type === "mvhd" || type === "mdhd") {
        // version/flags, creation and modification times, timescale, duration.
        const scale = b.readUInt32BE(body + (v1 ? 20 : 12));
        if (type === "mvhd") movieScale = scale;
        put(v1 ? 24 : 16, Math.round(seconds * scale));
      } else if (type === "tkhd") {
        // version/flags, creation and modification times, track id, reserved, duration in the movie's timescale.
        put(v1 ? 28 : 20, Math.round(seconds * movieScale));
      }
      at += size;
    }
  };
  walk(0, b.length);
  await writeFile(dest, b);
}

const media: MediaInfo = { durationMs: 10_000, width: 1080, height: 1920, hasAudio: true, videoCodec: "h264", fps: 30 };

describe("buildEncodeArgs", () => {
  it("asks for H.264/AAC, yuv420p, 29.97 fps, no metadata, faststart and progress on stdout, with stdin left as a pipe", () => {
    const { args } = buildEncodeArgs({ source: "in.mp4", output: "out.mp4", params: deriveParams(1), media });
    const joined = args.join(" ");
    for (const part of [
      "-c:v libx264",
      "-c:a aac",
      "-pix_fmt yuv420p",
      "-r 30000/1001",
      "-map_metadata -1",
      "-movflags +faststart",
      "-progress pipe:1",
      "-nostats",
      "-map 0:v:0",
      "-map 0:a:0",
    ]) {
      expect(joined).toContain(part);
    }
    expect(args).not.toContain("-nostdin");
    expect(args.at(-1)).toBe("out.mp4");
  });

  it("crops an even window inside the frame near its centre and scales back to the source size", () => {
    for (let seed = 1; seed < 200; seed++) {
      const { geometry: g, args } = buildEncodeArgs({ source: "i", output: "o", params: deriveParams(seed), media });
      expect(g).toMatchObject({ width: 1080, height: 1920 });
      expect(g.cropW % 2).toBe(0);
      expect(g.cropH % 2).toBe(0);
      expect(g.cropW).toBeLessThan(1080);
      expect(g.cropW).toBeGreaterThanOrEqual(1080 * 0.99);
      expect(g.cropX + g.cropW).toBeLessThanOrEqual(1080);
      expect(g.cropY + g.cropH).toBeLessThanOrEqual(1920);
      expect(args[args.indexOf("-vf") + 1]).toContain(`crop=${g.cropW}:${g.cropH}:${g.cropX}:${g.cropY},scale=1080:1920`);
    }
  });

  it("drops frames of a faster source before the filters, and leaves a 30 fps source to the output rate", () => {
    const vf = (fps: number) => {
      const { args } = buildEncodeArgs({ source: "i", output: "o", params: deriveParams(8), media: { ...media, fps } });
      return args[args.indexOf("-vf") + 1]!;
    };
    expect(vf(59.94)).toMatch(/^fps=30000\/1001,crop=/);
    expect(vf(30)).toMatch(/^crop=/);
    expect(vf(25)).toMatch(/^crop=/);
  });

  it("rounds odd source sizes to even (yuv420p) and still zooms tiny frames by at least 2 px", () => {
    const { geometry } = buildEncodeArgs({
      source: "i",
      output: "o",
      params: deriveParams(3),
      media: { ...media, width: 161, height: 121 },
    });
    expect(geometry).toMatchObject({ width: 160, height: 120, cropW: 158, cropH: 118 });
  });

  it("leaves audio out for a silent source and adjusts timing for a speed change", () => {
    const silent = buildEncodeArgs({ source: "i", output: "o", params: deriveParams(4), media: { ...media, hasAudio: false } });
    expect(silent.args.join(" ")).not.toContain("-c:a");
    const params = { ...deriveParams(4), speed: 1.02 };
    const fast = buildEncodeArgs({ source: "i", output: "o", params, media });
    expect(fast.args.join(" ")).toContain("atempo=1.02");
    expect(fast.args[fast.args.indexOf("-vf") + 1]).toMatch(/^setpts=PTS\/1\.02,crop=/);
    expect(fast.expectedDurationMs).toBe(Math.round(10_000 / 1.02));
  });
});

describe("detectZoomScaler", () => {
  it("scales a zoom back with zscale when this FFmpeg lists it, and with scale when it does not or fails to answer", async () => {
    const standIn = async (name: string, body: string) => {
      const path = join(dir, name);
      await writeFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      return path;
    };
    const listing = (names: string[]) => `echo "Filters:"; ${names.map((n) => `echo " T.C ${n}            V->V       A filter."`).join("; ")}`;
    expect(await detectZoomScaler(await standIn("with", listing(["scale", "zscale", "eq"])))).toBe("zscale");
    expect(await detectZoomScaler(await standIn("without", listing(["scale", "zscale_cuda", "eq"])))).toBe("scale");
    expect(await detectZoomScaler(await standIn("broken", "exit 1"))).toBe("scale");
    expect(await detectZoomScaler(join(dir, "no-such-ffmpeg"))).toBe("scale");
    const { args } = buildEncodeArgs({ source: "i", output: "o", params: deriveParams(1), media, scaler: "zscale" });
    expect(args[args.indexOf("-vf") + 1]).toMatch(/,zscale=w=1080:h=1920:filter=bilinear,/);
  });
});

describe("encoding with real FFmpeg", () => {
  it("produces a valid MP4 with the expected streams, duration and no source metadata", async () => {
    const clip = await makeClip({ seconds: 3 });
    const source = await probeMedia("ffprobe", clip);
    const output = join(dir, "ok.mp4");
    const plan = buildEncodeArgs({ source: clip, output, params: deriveParams(42), media: source });
    const progress: number[] = [];
    const proc = spawnFfmpeg("ffmpeg", plan.args, (ms) => progress.push(ms));
    expect((await proc.exited).code).toBe(0);
    await verifyOutput(output, plan.expectedDurationMs);
    const out = await probeFile(output);
    const video = out.streams.find((s) => s.codec_type === "video")!;
    expect(video).toMatchObject({ codec_name: "h264", pix_fmt: "yuv420p", width: 320, height: 240, r_frame_rate: "30000/1001" });
    expect(out.streams.find((s) => s.codec_type === "audio")?.codec_name).toBe("aac");
    expect(out.faststart).toBe(true);
    expect(Object.keys(out.tags).filter((k) => !["major_brand", "minor_version", "compatible_brands"].includes(k))).toEqual([]);
    expect(Math.max(...progress)).toBeGreaterThan(2000);
  });

  it("rejects an output whose FFmpeg was stopped by q right after starting, even though it exited 0", async () => {
    const clip = await makeClip({ seconds: 30 });
    const source = await probeMedia("ffprobe", clip);
    const output = join(dir, "early-q.mp4");
    const plan = buildEncodeArgs({ source: clip, output, params: deriveParams(7), media: source });
    const proc = spawnFfmpeg("ffmpeg", plan.args);
    proc.child.stdin!.write("q\n");
    expect((await proc.exited).code).toBe(0);
    await expect(verifyOutput(output, plan.expectedDurationMs)).rejects.toThrow(/not a valid video|incomplete/);
  });

  it("accepts the encode of a source whose audio runs on past its video (the output keeps both lengths), and still rejects it cut short", async () => {
    const clip = await makeClip({ seconds: 2, audioSeconds: 3.5 });
    const source = await probeMedia("ffprobe", clip);
    expect(source.durationMs).toBeGreaterThanOrEqual(3450);
    expect(source.videoMs).toBeGreaterThanOrEqual(1950);
    expect(source.videoMs).toBeLessThanOrEqual(2050);
    const plan = buildEncodeArgs({ source: clip, output: join(dir, "long-audio.mp4"), params: deriveParams(11), media: source });
    expect((await spawnFfmpeg("ffmpeg", plan.args).exited).code).toBe(0);
    await verifyOutput(join(dir, "long-audio.mp4"), plan.expectedDurationMs, plan.expectedVideoMs);

    const cut = join(dir, "long-audio-cut.mp4");
    await run("ffmpeg", ["-v", "error", "-y", "-i", join(dir, "long-audio.mp4"), "-t", "1", "-c", "copy", cut]);
    await expect(verifyOutput(cut, plan.expectedDurationMs, plan.expectedVideoMs)).rejects.toThrow(/incomplete/);
  });

  it("accepts the encode of a source with a second audio track longer than the streams it keeps, and makes a poster frame of a picture shorter than its audio", async () => {
    const clip = join(dir, "two-tracks.mp4");
    await run("ffmpeg", [
      "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=30:d=2", "-f", "lavfi", "-i", "sine=f=440:d=2", "-f", "lavfi", "-i", "sine=f=660:d=4",
      "-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", clip,
    ]);
    const source = await probeMedia("ffprobe", clip);
    expect(source.durationMs).toBeGreaterThanOrEqual(3950);
    expect(source.keptMs).toBeLessThanOrEqual(2100);
    const plan = buildEncodeArgs({ source: clip, output: join(dir, "two-tracks-out.mp4"), params: deriveParams(12), media: source });
    expect((await spawnFfmpeg("ffmpeg", plan.args).exited).code).toBe(0);
    await verifyOutput(join(dir, "two-tracks-out.mp4"), plan.expectedDurationMs, plan.expectedVideoMs, plan.expectedKeptMs);

    const short = await makeClip({ seconds: 0.6, audioSeconds: 3 });
    await makeThumbnail("ffmpeg", short, join(dir, "poster.jpg"), await probeMedia("ffprobe", short));
    expect((await readFile(join(dir, "poster.jpg"))).subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
  });

  it("expects an output to reach where a late-starting audio track ends, not just its length, and refuses one cut short of it", async () => {
    const clip = join(dir, "late-audio.mp4");
    // 2 s of video, 1.5 s of audio starting at 1 s: the source ends at 2.5 s, though no stream is that long.
    await run("ffmpeg", [
      "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=30:d=2", "-itsoffset", "1", "-f", "lavfi", "-i", "sine=f=440:d=1.5",
      "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", clip,
    ]);
    const source = await probeMedia("ffprobe", clip);
    expect(source.keptMs).toBeUndefined();
    const plan = buildEncodeArgs({ source: clip, output: join(dir, "late-audio-out.mp4"), params: deriveParams(13), media: source });
    expect((await spawnFfmpeg("ffmpeg", plan.args).exited).code).toBe(0);
    await verifyOutput(join(dir, "late-audio-out.mp4"), plan.expectedDurationMs, plan.expectedVideoMs, plan.expectedKeptMs);
    const cut = join(dir, "late-audio-cut.mp4");
    await run("ffmpeg", ["-v", "error", "-y", "-i", join(dir, "late-audio-out.mp4"), "-t", "2.05", "-c", "copy", cut]);
    await expect(verifyOutput(cut, plan.expectedDurationMs, plan.expectedVideoMs, plan.expectedKeptMs)).rejects.toThrow(/incomplete/);
  });

  it("takes quality samples within the picture: the container's span for ordinary sources, the video's when the audio runs on", () => {
    expect(pictureMs({ durationMs: 3020 })).toBe(3020);
    expect(pictureMs({ durationMs: 3020, videoMs: 3000 })).toBe(3020);
    expect(pictureMs({ durationMs: 3500, videoMs: 2000 })).toBe(2000);
  });

  it("ends the encode of a source holding far more than its header declares at the declared length, without decoding the rest", async () => {
    // 300 s of frames (a cached 30 s clip looped, no re-encode) in a file whose header says 2 s.
    const held = join(dir, "held-300s.mp4");
    await run("ffmpeg", ["-v", "error", "-y", "-stream_loop", "9", "-i", await makeClip({ seconds: 30 }), "-c", "copy", held]);
    const lying = join(dir, "declares-2s.mp4");
    await declareDuration(held, lying, 2);
    const source = await probeMedia("ffprobe", lying);
    expect(source.durationMs).toBe(2000);
    const output = join(dir, "declared-length.mp4");
    // With the source's samples as a second output, as a source's first encode on a runner has: that branch, too,
    // would otherwise go on decoding to the end of the file.
    const times = sampleTimes(source.durationMs);
    const params = deriveParams(21);
    const samples = { chain: encodeSampleChain(times, source.fps), file: join(dir, "declares-2s.samples.nut.part") };
    const plan = buildEncodeArgs({ source: lying, output, params, media: source, keyframes: sampleKeyframes(times, params.speed), samples });
    // FFmpeg gets a few CPU seconds (its own, whatever else the machine runs): far more than 2 s of this clip takes,
    // far less than decoding and encoding all 300 s. Past it the kernel stops FFmpeg (SIGXCPU, then SIGKILL).
    const { dir: limitDir, path: limited } = await writeFfmpegStandIn("cpu-limited", () => '#!/bin/sh\nulimit -t 5\nexec ffmpeg "$@"\n');
    const progress: number[] = [];
    try {
      const proc = spawnFfmpeg(limited, plan.args, (ms) => progress.push(ms));
      expect(await proc.exited, proc.stderrTail()).toMatchObject({ code: 0, signal: null });
    } finally {
      await rm(limitDir, { recursive: true, force: true });
    }
    // What the user gets: a completed variation of the length the source declared.
    await verifyOutput(output, plan.expectedDurationMs, plan.expectedVideoMs, plan.expectedKeptMs);
    const out = await probeFile(output);
    const limit = plan.expectedDurationMs + durationTolerance(plan.expectedDurationMs);
    expect(out.durationMs).toBeLessThanOrEqual(limit);
    expect(Math.max(...progress)).toBeLessThanOrEqual(limit);
    // The samples, all within the declared length, are every one there (kept as the source's, in `out/` beside it).
    await mkdir(join(dir, "out"), { recursive: true });
    expect(await keepEncodeSamples(samples, { ...source, path: lying })).toBe(true);
  });

  it("rejects an output shorter than the source", async () => {
    const clip = await makeClip({ seconds: 3 });
    const output = join(dir, "short.mp4");
    await run("ffmpeg", ["-v", "error", "-y", "-i", clip, "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", output]);
    await expect(verifyOutput(output, 3000)).rejects.toThrow(/incomplete: \d+ ms of 3000 ms/);
  });
});

describe("spawnFfmpeg", () => {
  it("reports an FFmpeg that could not be started as a spawn error on its exit, instead of a code the runner would take for the video's", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vr-spawn-"));
    const notExecutable = join(dir, "ffmpeg");
    await writeFile(notExecutable, "#!/bin/sh\nexit 0\n", { mode: 0o644 });
    const exit = await spawnFfmpeg(notExecutable, ["-version"]).exited;
    expect(exit).toMatchObject({ code: null, signal: null, spawnError: { code: "EACCES" } });
    await rm(dir, { recursive: true, force: true });
  });
});

describe("probeMedia", () => {
  it("reports duration, size and audio of a clip", async () => {
    const clip = await makeClip({ seconds: 3, width: 320, height: 240 });
    expect(await probeMedia("ffprobe", clip)).toMatchObject({ durationMs: expect.any(Number), width: 320, height: 240, hasAudio: true, videoCodec: "h264", fps: 30 });
  });

  it("refuses a file that only pretends to be an MP4, and an audio-only file, as not a decodable video", async () => {
    await expect(probeMedia("ffprobe", await makeNotAVideo())).rejects.toBeInstanceOf(NotAVideoError);
    const audio = join(dir, "tone.m4a");
    await run("ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", audio]);
    await expect(probeMedia("ffprobe", audio)).rejects.toThrow(/not a decodable video: no video stream/);
    const text = join(dir, "notes.mp4");
    await writeFile(text, "hello, this is not a video");
    await expect(probeMedia("ffprobe", text)).rejects.toThrow(/^not a decodable video/);
  });
});

describe("FFmpeg is confined to the runner", () => {
  const ROOT = new URL("../..", import.meta.url).pathname;
  const outDirs: string[] = [];
  afterAll(async () => {
    for (const d of outDirs) await rm(d, { recursive: true, force: true });
  });

  async function orphanAfterParentKilled(setpriv: string, user?: string): Promise<{ pid: number; uid: number; aliveAfterMs: (ms: number) => Promise<boolean> }> {
    const { spawn } = await import("node:child_process");
    const { isAlive, killGroup } = await import("../helpers/runner");
    // FFMPEG_USER's FFmpeg must be able to reach and write its output (`dir` is mkdtemp's 0700).
    const outDir = user ? await mkdtemp(join(tmpdir(), "vr-as-user-")) : dir;
    if (user) {
      await chmod(outDir, 0o777);
      outDirs.push(outDir);
    }
    const out = join(outDir, `orphan-${setpriv === "none" ? "plain" : "pdeath"}.mp4`);
    const parent = spawn(process.execPath, ["--import", "tsx", "test/runner/fixtures/spawn-parent.ts", setpriv, out, ...(user ? [user] : [])], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    });
    // The stand-in runner waits forever: never leave it behind when the test fails before killing it.
    const exited = new Promise((r) => parent.once("exit", r));
    const fail = (err: unknown) => {
      parent.kill("SIGKILL");
      throw err;
    };
    const pid = await new Promise<number>((resolve, reject) => {
      let out = "";
      parent.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /ffmpeg pid=(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
        else if (/ffmpeg exited/.test(out)) reject(new Error(`FFmpeg ended before encoding: ${out}`));
      });
      parent.once("exit", () => reject(new Error(`parent exited early: ${out}`)));
    }).catch(fail);
    // FFmpeg reported progress, so it is encoding (as its user) until the parent dies: read it while the parent lives.
    const uid = Number(/^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/status`, "utf8").catch(fail))?.[1]);
    parent.kill("SIGKILL");
    await exited;
    return {
      pid,
      uid,
      aliveAfterMs: async (ms) => {
        const until = performance.now() + ms;
        while (performance.now() < until && (await isAlive(pid))) await new Promise((r) => setTimeout(r, 50));
        const alive = await isAlive(pid);
        killGroup(pid);
        return alive;
      },
    };
  }

  it("dies with its runner when started through setpriv --pdeathsig (a SIGKILLed runner leaves no encode behind)", async () => {
    const orphan = await orphanAfterParentKilled("/usr/bin/setpriv");
    expect(await orphan.aliveAfterMs(2000)).toBe(false);
  });

  // The kernel clears a parent-death signal when credentials change: setpriv must set it after switching user.
  it.skipIf(process.getuid?.() !== 0 || !existsSync("/usr/bin/setpriv"))("dies with its runner when it runs as FFMPEG_USER too", async () => {
    const orphan = await orphanAfterParentKilled("/usr/bin/setpriv", "65534:65534");
    const alive = await orphan.aliveAfterMs(2000); // first: it also kills a survivor
    expect(orphan.uid).toBe(65534);
    expect(alive).toBe(false);
  });

  it("reads local files only: a playlist naming a URL is refused without any request going out", async () => {
    const { createServer } = await import("node:http");
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const playlist = join(dir, "remote.m3u8");
    await writeFile(playlist, `#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nhttp://127.0.0.1:${port}/segment.ts\n#EXT-X-ENDLIST\n`);
    try {
      await expect(probeMedia("ffprobe", playlist)).rejects.toBeInstanceOf(NotAVideoError);
      const { args } = buildEncodeArgs({ source: playlist, output: join(dir, "x.mp4"), params: deriveParams(1), media });
      expect(args.slice(0, args.indexOf("-i")).join(" ")).toContain("-protocol_whitelist file");
      expect(requests).toBe(0);
    } finally {
      server.close();
    }
  });
});
