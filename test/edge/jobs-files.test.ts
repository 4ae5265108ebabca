import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { recordSourceProbe, setJobThumbnail } from "../../db/queries/media";
import { failVariation, finishVariation, recordVariationParams } from "../../db/queries/variations";
import { jobs, variations } from "../../db/schema";
import { call, claimAll, crc32, db, fakeMp4, jobRow, readZip, sameBytes, seedJob, signIn, variationsOf } from "./helpers";

async function sha256Hex(b: Uint8Array): Promise<string> {
  return [...new Uint8Array(await crypto.subtle.digest("SHA-256", b))].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * Runs a seeded job like a runner would: claims every variation, stores an output for each except the ones listed
 * in `fail`, and settles them (the last settle finalizes the job).
 */
async function runJob(jobId: string, opts: { fail?: number[]; cancelAfter?: number; withoutDigests?: boolean } = {}) {
  const runner = `r-${jobId}`;
  await claimAll(jobId, runner);
  const outputs = new Map<string, Uint8Array>();
  const vars = await variationsOf(jobId);
  for (const [i, v] of vars.entries()) {
    if (opts.fail?.includes(i)) {
      await failVariation(db, { attempt: 1, variationId: v.id, runnerId: runner, error: "bad", now: Date.now() });
      continue;
    }
    const bytes = fakeMp4(500 + i * 17, i + 1);
    const key = `outputs/${jobId}/${v.id}.mp4`;
    await env.BUCKET.put(key, bytes);
    outputs.set(v.id, bytes);
    // A runner records the output's digest; outputs recorded before runners did have none.
    const digest = opts.withoutDigests ? undefined : { sha256: await sha256Hex(bytes), crc32: crc32(bytes) };
    await finishVariation(db, { attempt: 1, variationId: v.id, runnerId: runner, outputKey: key, outputSize: bytes.length, digest, now: Date.now() });
  }
  return { outputs, vars };
}

/** Rows of a CSV as RFC 4180 has them (quoted cells, doubled quotes, CRLF), to read cells the way a spreadsheet does. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (cell += '"'), i++;
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") row.push(cell), (cell = "");
    else if (ch === "\r" && text[i + 1] === "\n") row.push(cell), rows.push(row), (row = []), (cell = ""), i++;
    else cell += ch;
  }
  return rows;
}

describe("GET /api/jobs/:id/download", () => {
  it("streams a STORE zip of the completed outputs with exact names, bytes and Content-Length", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { names: ["Beach Day.mp4", "beach day.mov", "../we:ird?.webm"], variations: 2 });
    const { outputs, vars } = await runJob(seeded.id, { fail: [1] });

    const res = await s.call(`/api/jobs/${seeded.id}/download`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/zip");
    expect(res.headers.get("content-disposition")).toContain(".zip");
    const zip = new Uint8Array(await res.arrayBuffer());
    expect(Number(res.headers.get("content-length"))).toBe(zip.length);

    const entries = readZip(zip);
    const sourceOf = new Map(seeded.files.map((f, i) => [f.id, i]));
    // Entries come in source order, then variation order; the failed variation (index 1) is left out.
    const expected = vars
      .filter((_, i) => i !== 1)
      .sort((a, b) => sourceOf.get(a.sourceId)! - sourceOf.get(b.sourceId)! || a.position - b.position)
      .map((v) => {
        const folder = ["Beach Day", "beach day-2", "we_ird_"][sourceOf.get(v.sourceId)!]!;
        return { name: `${folder}/${folder}_var0${v.position}.mp4`, bytes: outputs.get(v.id)! };
      });
    expect(entries.map((e) => e.name)).toEqual([...expected.map((e) => e.name), "manifest.json", "manifest.csv"]);
    for (const e of entries.filter((x) => x.name.endsWith(".mp4"))) {
      const want = expected.find((x) => x.name === e.name)!;
      expect(e.method).toBe(0);
      expect(sameBytes(e.data, want.bytes)).toBe(true);
      expect(e.crc).toBe(crc32(want.bytes));
    }
  });

  it("ends the zip with manifest.json and manifest.csv whose sha256, sizes, seeds and params describe each entry", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { names: ["Promo, final.mp4", "b.mov"], variations: 2 });
    const runner = `r-${seeded.id}`;
    await claimAll(seeded.id, runner);
    const vars = await variationsOf(seeded.id);
    await recordSourceProbe(db, vars[0]!.sourceId, { durationMs: 2000, width: 160, height: 120, hasAudio: true });
    for (const [i, v] of vars.entries()) {
      const params = { recipe: 1, zoom: 0.004, speed: i === 0 ? 1.025 : 1, brightness: -0.01 };
      await recordVariationParams(db, { variationId: v.id, runnerId: runner, attempt: 1, params });
      // Larger than one R2 read chunk, so the hash really runs over a stream of several chunks.
      const bytes = fakeMp4(70_000 + i * 1013, i + 3);
      const key = `outputs/${seeded.id}/${v.id}.mp4`;
      await env.BUCKET.put(key, bytes);
      // The runner's quality figures, for all but the first (a variation never measured keeps nulls).
      const quality = i === 0 ? undefined : { seed: v.seed, params, ssim: 0.9 + i / 100, psnr: 30 + i, distinct: 1.5 * i, fingerprint: null, thumbnailKey: null, redrawReason: null };
      await finishVariation(db, { attempt: 1, variationId: v.id, runnerId: runner, outputKey: key, outputSize: bytes.length, now: Date.now(), quality });
    }
    const figures = (id: string) => {
      const i = vars.findIndex((x) => x.id === id);
      return i === 0 ? { ssim: null, psnr: null, distinct: null } : { ssim: 0.9 + i / 100, psnr: 30 + i, distinct: 1.5 * i };
    };

    const res = await s.call(`/api/jobs/${seeded.id}/download`);
    expect(res.status).toBe(200);
    const zip = new Uint8Array(await res.arrayBuffer());
    expect(Number(res.headers.get("content-length"))).toBe(zip.length);
    const entries = readZip(zip);
    expect(entries.slice(-2).map((e) => e.name)).toEqual(["manifest.json", "manifest.csv"]);
    const videos = entries.slice(0, -2);
    expect(videos).toHaveLength(4);

    const manifest = JSON.parse(new TextDecoder().decode(entries.at(-2)!.data)) as {
      job: string;
      effects: unknown;
      entries: Record<string, unknown>[];
    };
    expect(manifest).toMatchObject({ job: seeded.id, effects: { intensity: "subtle", families: ["color", "zoom"] } });
    expect(manifest.entries.map((e) => e.file)).toEqual(videos.map((v) => v.name));
    const bySource = new Map(seeded.files.map((f) => [f.id, f.name]));
    for (const [i, e] of manifest.entries.entries()) {
      const v = vars.find((x) => bySource.get(x.sourceId) === e.source && x.position === e.variation)!;
      expect(e).toEqual({
        file: videos[i]!.name,
        source: bySource.get(v.sourceId),
        variation: v.position,
        seed: v.seed,
        durationMs: v.sourceId === vars[0]!.sourceId ? Math.round(2000 / (v.id === vars[0]!.id ? 1.025 : 1)) : null,
        bytes: videos[i]!.data.length,
        sha256: await sha256Hex(videos[i]!.data),
        ...figures(v.id),
        params: { recipe: 1, zoom: 0.004, speed: v.id === vars[0]!.id ? 1.025 : 1, brightness: -0.01 },
      });
    }

    const csv = new TextDecoder().decode(entries.at(-1)!.data).trimEnd().split("\r\n");
    expect(csv[0]).toBe("file,source,variation,seed,duration_ms,bytes,sha256,ssim,psnr,distinct,params");
    expect(csv).toHaveLength(5);
    for (const [i, e] of manifest.entries.entries()) {
      // Names with a comma are quoted; the params JSON has quotes, doubled inside its quoted cell.
      const quoted = (x: unknown) => (String(x).includes(",") ? `"${String(x)}"` : String(x));
      const params = `"${JSON.stringify(e.params).replaceAll('"', '""')}"`;
      expect(csv[i + 1]).toBe(
        [quoted(e.file), quoted(e.source), e.variation, e.seed, e.durationMs ?? "", e.bytes, e.sha256, e.ssim ?? "", e.psnr ?? "", e.distinct ?? "", params].join(","),
      );
    }
  });

  it("writes source names that look like spreadsheet formulas into manifest.csv as text, and keeps numbers numbers", async () => {
    const names = ['=HYPERLINK("http://evil","x").mp4', "@SUM(A1).mov", "+cmd.mp4", "-2+3.mp4", "plain.mp4"];
    const s = await signIn();
    const seeded = await seedJob(s.id, { names, variations: 1 });
    const runner = `r-${seeded.id}`;
    await claimAll(seeded.id, runner);
    const params = { recipe: 1, brightness: -0.01 };
    for (const v of await variationsOf(seeded.id)) {
      await recordVariationParams(db, { variationId: v.id, runnerId: runner, attempt: 1, params });
      const bytes = fakeMp4(400);
      const key = `outputs/${seeded.id}/${v.id}.mp4`;
      await env.BUCKET.put(key, bytes);
      // A negative SSIM is a real (if rare) measurement: it must stay a number, not become text.
      const quality = { seed: v.seed, params, ssim: -0.25, psnr: 12, distinct: 3, fingerprint: null, thumbnailKey: null, redrawReason: null };
      await finishVariation(db, { attempt: 1, variationId: v.id, runnerId: runner, outputKey: key, outputSize: bytes.length, now: Date.now(), quality });
    }

    const entries = readZip(new Uint8Array(await (await s.call(`/api/jobs/${seeded.id}/download`)).arrayBuffer()));
    const manifest = JSON.parse(new TextDecoder().decode(entries.at(-2)!.data)) as { entries: { file: string; source: string }[] };
    expect(manifest.entries.map((e) => e.source)).toEqual(names);
    const rows = parseCsv(new TextDecoder().decode(entries.at(-1)!.data)).slice(1);
    expect(rows.map((r) => r[1])).toEqual(names.map((n) => (n === "plain.mp4" ? n : `'${n}`)));
    for (const [i, r] of rows.entries()) {
      const file = manifest.entries[i]!.file;
      expect(r[0]).toBe(/^[=+\-@]/.test(file) ? `'${file}` : file);
      expect(r.slice(7, 10)).toEqual(["-0.25", "12", "3"]);
      expect(r[10]).toBe(JSON.stringify(params));
    }
    expect(rows.map((r) => r[0])).toContain("'+cmd/+cmd_var01.mp4");
  });

  it("gives sources named like Windows devices before any dot (nul.tar.mp4, CON.x.mov) folders Windows can create", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { names: ["nul.tar.mp4", "CON.x.mov", "aux .tar.mp4", "console.mp4"], variations: 1 });
    await runJob(seeded.id);
    const res = await s.call(`/api/jobs/${seeded.id}/download`);
    expect(readZip(new Uint8Array(await res.arrayBuffer())).map((e) => e.name)).toEqual([
      "_nul.tar/_nul.tar_var01.mp4",
      "_CON.x/_CON.x_var01.mp4",
      "_aux .tar/_aux .tar_var01.mp4",
      "console/console_var01.mp4",
      "manifest.json",
      "manifest.csv",
    ]);
  });

  it("allows cancelled jobs with completed variations", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 2 });
    await claimAll(seeded.id, "r-c", Date.now(), 30_000, 1);
    const [v] = (await variationsOf(seeded.id)).filter((x) => x.status === "running");
    await env.BUCKET.put(`outputs/${seeded.id}/${v!.id}.mp4`, fakeMp4(300));
    await finishVariation(db, { attempt: 1, variationId: v!.id, runnerId: "r-c", outputKey: `outputs/${seeded.id}/${v!.id}.mp4`, outputSize: 300, now: Date.now() });
    const cancelled = await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    expect(await cancelled.json()).toMatchObject({ status: "cancelled", downloadUrl: `/api/jobs/${seeded.id}/download` });
    const res = await s.call(`/api/jobs/${seeded.id}/download`);
    expect(res.status).toBe(200);
    expect(readZip(new Uint8Array(await res.arrayBuffer())).map((e) => e.name)).toEqual([
      "clip1/clip1_var01.mp4",
      "manifest.json",
      "manifest.csv",
    ]);
  });

  it("answers 404 no_outputs for a cancelled job without completed variations and 409 while processing", async () => {
    const s = await signIn();
    const empty = await seedJob(s.id);
    await s.call(`/api/jobs/${empty.id}/cancel`, { method: "POST" });
    const res = await s.call(`/api/jobs/${empty.id}/download`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: "no_outputs" } });

    const busy = await seedJob(s.id);
    await claimAll(busy.id, "r-busy");
    const r2 = await s.call(`/api/jobs/${busy.id}/download`);
    expect(r2.status).toBe(409);
  });

  it("answers 410 once the job has expired", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 1 });
    await runJob(seeded.id);
    await db.update(jobs).set({ expiresAt: Date.now() - 1000 }).where(eq(jobs.id, seeded.id));
    const res = await s.call(`/api/jobs/${seeded.id}/download`);
    expect(res.status).toBe(410);
    expect(await res.json()).toMatchObject({ error: { code: "expired" } });
  });

  it("answers 404 for another user's job, 401 without a session or with the runner token", async () => {
    const alice = await signIn();
    const bob = await signIn();
    const seeded = await seedJob(alice.id, { variations: 1 });
    await runJob(seeded.id);
    expect((await bob.call(`/api/jobs/${seeded.id}/download`)).status).toBe(404);
    expect((await call(`/api/jobs/${seeded.id}/download`)).status).toBe(401);
    expect((await call(`/api/jobs/${seeded.id}/download`, { token: env.RUNNER_TOKEN })).status).toBe(401);
    const admin = await signIn("admin");
    expect((await admin.call(`/api/jobs/${seeded.id}/download`)).status).toBe(200);
  });
});

describe("GET /api/jobs/:id/download, resumed", () => {
  it("serves any byte range of the same ZIP with its ETag, so an interrupted download continues where it stopped", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { names: ["a.mp4", "b.mp4"], variations: 2 });
    await runJob(seeded.id);
    const fullRes = await s.call(`/api/jobs/${seeded.id}/download`);
    const etag = fullRes.headers.get("etag");
    expect(fullRes.headers.get("accept-ranges")).toBe("bytes");
    expect(etag).toMatch(/^"zip-[0-9a-f]{32}"$/);
    const full = new Uint8Array(await fullRes.arrayBuffer());

    // Cut inside the second entry's data, and once more in the manifests at the end.
    for (const start of [777, full.length - 300]) {
      const part = await s.call(`/api/jobs/${seeded.id}/download`, { headers: { range: `bytes=${start}-`, "if-range": etag! } });
      expect(part.status).toBe(206);
      expect(part.headers.get("content-range")).toBe(`bytes ${start}-${full.length - 1}/${full.length}`);
      expect(part.headers.get("etag")).toBe(etag);
      const tail = new Uint8Array(await part.arrayBuffer());
      expect(Number(part.headers.get("content-length"))).toBe(tail.length);
      expect(sameBytes(tail, full.subarray(start))).toBe(true);
    }
    const middle = await s.call(`/api/jobs/${seeded.id}/download`, { headers: { range: "bytes=10-19" } });
    expect(middle.status).toBe(206);
    expect(sameBytes(new Uint8Array(await middle.arrayBuffer()), full.subarray(10, 20))).toBe(true);

    const past = await s.call(`/api/jobs/${seeded.id}/download`, { headers: { range: `bytes=${full.length}-` } });
    expect(past.status).toBe(416);
    expect(past.headers.get("content-range")).toBe(`bytes */${full.length}`);
  });

  it("explains a resume past the ZIP's end as a JSON error instead of an empty .zip attachment", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 1 });
    await runJob(seeded.id);
    const fullRes = await s.call(`/api/jobs/${seeded.id}/download`);
    const etag = fullRes.headers.get("etag")!;
    const length = (await fullRes.arrayBuffer()).byteLength;

    const past = await s.call(`/api/jobs/${seeded.id}/download`, { headers: { range: `bytes=${length + 10}-`, "if-range": etag } });
    expect(past.status).toBe(416);
    expect(past.headers.get("content-type")).toMatch(/^application\/json/);
    expect(past.headers.get("content-disposition")).toBeNull();
    expect(past.headers.get("content-range")).toBe(`bytes */${length}`);
    expect(past.headers.get("etag")).toBe(etag);
    expect(past.headers.get("accept-ranges")).toBe("bytes");
    const body = (await past.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("range_not_satisfiable");
    expect(body.error.message).toContain(String(length));
  });

  it("sends the whole new ZIP (200) when the job changed since the part the client holds", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 2 });
    const { vars } = await runJob(seeded.id);
    const first = await s.call(`/api/jobs/${seeded.id}/download`);
    const etag = first.headers.get("etag")!;
    await first.arrayBuffer();
    // What a re-draw does to a finished entry: its recorded parameters (and so the manifest) change.
    await db.update(variations).set({ params: JSON.stringify({ zoom: 1.5 }) }).where(eq(variations.id, vars[0]!.id));
    const res = await s.call(`/api/jobs/${seeded.id}/download`, { headers: { range: "bytes=100-", "if-range": etag } });
    expect(res.status).toBe(200);
    expect(res.headers.get("etag")).not.toBe(etag);
    const zip = new Uint8Array(await res.arrayBuffer());
    expect(readZip(zip).map((e) => e.name)).toContain("manifest.json");
  });
});

describe("GET /api/jobs/:id/download, laid out from recorded digests", () => {
  it("serves a resume from the outputs it covers alone: an earlier output that is gone does not break it", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { names: ["a.mp4", "b.mp4"], variations: 2 });
    const { vars } = await runJob(seeded.id);
    const fullRes = await s.call(`/api/jobs/${seeded.id}/download`);
    const etag = fullRes.headers.get("etag")!;
    const full = new Uint8Array(await fullRes.arrayBuffer());
    const entries = readZip(full);
    const last = entries[3]!;
    const lastStart = last.data.byteOffset - full.byteOffset;

    // Before, every range was cut from a ZIP generated again from byte 0, reading (and hashing) every output
    // before it: a resume near the end cost the whole job's reads, and a lost first output broke every resume.
    const [first] = await variationsOf(seeded.id);
    await env.BUCKET.delete(first!.outputKey!);
    expect(vars.length).toBe(4);
    for (const start of [lastStart + 3, full.length - 200]) {
      const part = await s.call(`/api/jobs/${seeded.id}/download`, { headers: { range: `bytes=${start}-`, "if-range": etag } });
      expect(part.status).toBe(206);
      expect(sameBytes(new Uint8Array(await part.arrayBuffer()), full.subarray(start))).toBe(true);
    }
    // The whole ZIP needs that output: it breaks off rather than send other bytes under the announced length.
    const broken = await s.call(`/api/jobs/${seeded.id}/download`);
    expect(broken.status).toBe(200);
    await expect(broken.arrayBuffer()).rejects.toThrow();
  });

  it("keeps the digest of an output recorded without one on its first download, and serves the same ZIP after", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 2 });
    const { outputs } = await runJob(seeded.id, { withoutDigests: true });
    expect((await variationsOf(seeded.id)).map((v) => v.outputSha256)).toEqual([null, null]);

    const first = await s.call(`/api/jobs/${seeded.id}/download`);
    const zip = new Uint8Array(await first.arrayBuffer());
    for (const v of await variationsOf(seeded.id)) {
      const bytes = outputs.get(v.id)!;
      expect(v).toMatchObject({ outputSha256: await sha256Hex(bytes), outputCrc32: crc32(bytes) });
    }
    const again = await s.call(`/api/jobs/${seeded.id}/download`);
    expect(again.headers.get("etag")).toBe(first.headers.get("etag"));
    expect(sameBytes(new Uint8Array(await again.arrayBuffer()), zip)).toBe(true);
    expect(readZip(zip).map((e) => [e.name, e.crc === crc32(e.data)])).toEqual([
      ["clip1/clip1_var01.mp4", true],
      ["clip1/clip1_var02.mp4", true],
      ["manifest.json", true],
      ["manifest.csv", true],
    ]);
  });
});

describe("GET /api/jobs/:id/outputs/:outputId", () => {
  it("serves the whole output and byte ranges for seeking", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 1 });
    const { outputs, vars } = await runJob(seeded.id);
    const id = vars[0]!.id;
    const bytes = outputs.get(id)!;

    const full = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`);
    expect(full.status).toBe(200);
    expect(full.headers.get("content-type")).toBe("video/mp4");
    expect(full.headers.get("accept-ranges")).toBe("bytes");
    expect(Number(full.headers.get("content-length"))).toBe(bytes.length);
    // Kept by the browser for previews (its own choice, not the API's no-store).
    expect(full.headers.get("cache-control")).toMatch(/^private, max-age=/);
    expect(sameBytes(new Uint8Array(await full.arrayBuffer()), bytes)).toBe(true);

    const part = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`, { headers: { range: "bytes=10-19" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 10-19/${bytes.length}`);
    expect(new Uint8Array(await part.arrayBuffer())).toEqual(bytes.subarray(10, 20));

    const tail = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`, { headers: { range: "bytes=-5" } });
    expect(tail.status).toBe(206);
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 5));

    const open = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`, { headers: { range: `bytes=${bytes.length - 3}-` } });
    expect(new Uint8Array(await open.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 3));

    const beyond = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`, { headers: { range: `bytes=${bytes.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get("content-range")).toBe(`bytes */${bytes.length}`);
  });

  it("explains a range outside an output video as a JSON error naming the video's size", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 1 });
    const { outputs, vars } = await runJob(seeded.id);
    const id = vars[0]!.id;
    const size = outputs.get(id)!.length;

    const res = await s.call(`/api/jobs/${seeded.id}/outputs/${id}`, { headers: { range: "bytes=999999999-" } });
    expect(res.status).toBe(416);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.headers.get("content-disposition")).toBeNull();
    expect(res.headers.get("content-range")).toBe(`bytes */${size}`);
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("range_not_satisfiable");
    expect(body.error.message).toContain(`${size} bytes`);
  });

  it("answers 404 for an unknown output, another user's job or an output of another job", async () => {
    const alice = await signIn();
    const bob = await signIn();
    const a = await seedJob(alice.id, { variations: 1 });
    const { vars } = await runJob(a.id);
    const b = await seedJob(alice.id, { variations: 1 });
    expect((await alice.call(`/api/jobs/${a.id}/outputs/nope`)).status).toBe(404);
    expect((await bob.call(`/api/jobs/${a.id}/outputs/${vars[0]!.id}`)).status).toBe(404);
    expect((await alice.call(`/api/jobs/${b.id}/outputs/${vars[0]!.id}`)).status).toBe(404);
    expect((await call(`/api/jobs/${a.id}/outputs/${vars[0]!.id}`)).status).toBe(401);
    expect((await call(`/api/jobs/${a.id}/outputs/${vars[0]!.id}`, { token: env.RUNNER_TOKEN })).status).toBe(401);
  });
});

describe("GET /api/jobs/:id/thumbnail", () => {
  it("serves the thumbnail the runner recorded, and 404 before there is one", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id);
    expect((await s.call(`/api/jobs/${seeded.id}/thumbnail`)).status).toBe(404);
    const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9]);
    const key = `thumbs/${seeded.id}.jpg`;
    await env.BUCKET.put(key, jpeg, { httpMetadata: { contentType: "image/jpeg" } });
    await setJobThumbnail(db, seeded.id, key, Date.now());
    const res = await s.call(`/api/jobs/${seeded.id}/thumbnail`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/jpeg");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(jpeg);
    expect(await (await s.call(`/api/jobs/${seeded.id}`)).json()).toMatchObject({ thumbnailUrl: `/api/jobs/${seeded.id}/thumbnail` });
    const other = await signIn();
    expect((await other.call(`/api/jobs/${seeded.id}/thumbnail`)).status).toBe(404);
    expect((await call(`/api/jobs/${seeded.id}/thumbnail`)).status).toBe(401);
    expect((await call(`/api/jobs/${seeded.id}/thumbnail`, { token: env.RUNNER_TOKEN })).status).toBe(401);
  });
});

describe("GET /api/jobs/:id/outputs/:outputId/thumbnail", () => {
  it("serves the still the runner recorded for a completed variation, owner-checked; 404 without one", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { variations: 2 });
    const runner = `r-${seeded.id}`;
    await claimAll(seeded.id, runner);
    const [v1, v2] = await variationsOf(seeded.id);
    const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 9, 8, 7, 0xff, 0xd9]);
    const thumb = `outputs/${seeded.id}/${v1!.id}.a1.jpg`;
    await env.BUCKET.put(thumb, jpeg);
    const quality = { seed: v1!.seed, params: {}, ssim: 0.95, psnr: 30, distinct: null, fingerprint: null, thumbnailKey: thumb, redrawReason: null };
    await finishVariation(db, { attempt: 1, variationId: v1!.id, runnerId: runner, outputKey: `outputs/${seeded.id}/${v1!.id}.a1.mp4`, outputSize: 9, now: Date.now(), quality });
    await finishVariation(db, { attempt: 1, variationId: v2!.id, runnerId: runner, outputKey: `outputs/${seeded.id}/${v2!.id}.a1.mp4`, outputSize: 9, now: Date.now() });

    const job = (await (await s.call(`/api/jobs/${seeded.id}`)).json()) as { files: { variations: { outputId: string; thumbnailUrl: string | null }[] }[] };
    const [a, b] = job.files[0]!.variations;
    expect(a!.thumbnailUrl).toBe(`/api/jobs/${seeded.id}/outputs/${v1!.id}/thumbnail`);
    expect(b!.thumbnailUrl).toBeNull();
    const res = await s.call(a!.thumbnailUrl!);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/jpeg");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(jpeg);
    const none = await s.call(`/api/jobs/${seeded.id}/outputs/${v2!.id}/thumbnail`);
    expect(none.status).toBe(404);
    expect(await none.json()).toMatchObject({ error: { code: "no_thumbnail" } });
    const other = await signIn();
    expect((await other.call(a!.thumbnailUrl!)).status).toBe(404);
    expect((await call(a!.thumbnailUrl!)).status).toBe(401);
    expect((await call(a!.thumbnailUrl!, { token: env.RUNNER_TOKEN })).status).toBe(401);

    // Deleting the job deletes the recorded still with the rest.
    await s.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    expect((await s.call(`/api/jobs/${seeded.id}`, { method: "DELETE" })).status).toBe(204);
    expect(await env.BUCKET.get(thumb)).toBeNull();
  });
});

describe("DELETE /api/jobs/:id", () => {
  it("removes a finished job's objects (sources, outputs, thumbnail, strays) and rows", async () => {
    const s = await signIn();
    const seeded = await seedJob(s.id, { files: 2, variations: 2 });
    await runJob(seeded.id);
    await env.BUCKET.put(`thumbs/${seeded.id}.jpg`, "jpg");
    await setJobThumbnail(db, seeded.id, `thumbs/${seeded.id}.jpg`, Date.now());
    await env.BUCKET.put(`outputs/${seeded.id}/stray.mp4`, "late upload");
    const res = await s.call(`/api/jobs/${seeded.id}`, { method: "DELETE" });
    expect(res.status).toBe(204);
    for (const prefix of [`sources/${seeded.id}/`, `outputs/${seeded.id}/`, `thumbs/${seeded.id}`]) {
      expect((await env.BUCKET.list({ prefix })).objects, prefix).toEqual([]);
    }
    expect(await jobRow(seeded.id)).toBeUndefined();
    expect(await variationsOf(seeded.id)).toEqual([]);
    expect((await s.call(`/api/jobs/${seeded.id}`)).status).toBe(404);
  });

  it("answers 409 job_active for queued and processing jobs and keeps them", async () => {
    const s = await signIn();
    const queued = await seedJob(s.id);
    const res = await s.call(`/api/jobs/${queued.id}`, { method: "DELETE" });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: "job_active" } });
    const busy = await seedJob(s.id);
    await claimAll(busy.id, "r-del");
    expect((await s.call(`/api/jobs/${busy.id}`, { method: "DELETE" })).status).toBe(409);
    expect((await env.BUCKET.list({ prefix: `sources/${busy.id}/` })).objects).toHaveLength(1);
  });

  it("answers 404 for another user's job, 401 unauthenticated or with the runner token, 403 cross-origin", async () => {
    const alice = await signIn();
    const bob = await signIn();
    const seeded = await seedJob(alice.id);
    await alice.call(`/api/jobs/${seeded.id}/cancel`, { method: "POST" });
    expect((await bob.call(`/api/jobs/${seeded.id}`, { method: "DELETE" })).status).toBe(404);
    expect((await call(`/api/jobs/${seeded.id}`, { method: "DELETE" })).status).toBe(401);
    expect((await call(`/api/jobs/${seeded.id}`, { method: "DELETE", token: env.RUNNER_TOKEN })).status).toBe(401);
    expect((await alice.call(`/api/jobs/${seeded.id}`, { method: "DELETE", origin: "https://evil.example" })).status).toBe(403);
    expect(await jobRow(seeded.id)).toBeDefined();
  });
});
