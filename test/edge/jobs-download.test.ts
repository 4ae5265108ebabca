import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { recordSourceProbe } from "../../db/queries/media";
import { finishVariation, recordVariationParams } from "../../db/queries/variations";
import { jobs, variations } from "../../db/schema";
import { call, claimAll, crc32, db, fakeMp4, readZip, runJob, sameBytes, seedJob, sha256Hex, signIn, variationsOf } from "./helpers";

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
