import { env, exports } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { newId } from "../../db/ids";
import { outputKey, thumbnailKey } from "../../db/keys";
import { jobs, multipartUploads, sources, variations } from "../../db/schema";
import { ticketHeaders, type Ticket } from "../../db/tickets";
import { db, makeUser, seedJob, signIn } from "./helpers";

const ORIGIN = "http://edge.test";
const MiB = 1024 * 1024;

function internal(path: string, init: RequestInit & { token?: string | null; ticket?: Ticket | null } = {}): Promise<Response> {
  const { token = env.RUNNER_TOKEN, ticket = null, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  for (const [name, value] of Object.entries(ticketHeaders(ticket))) headers.set(name, value);
  return exports.default.fetch(new Request(`${ORIGIN}/internal${path}`, { ...rest, headers }));
}

interface Held {
  jobId: string;
  variationId: string;
  /** The job's other variation (queued). */
  otherVariationId: string;
  sourceKey: string;
  /** The ticket of the runner holding the variation. */
  ticket: Ticket;
  /** This attempt's output key. */
  output: string;
}

/**
 * A processing job (one source, two variations) whose first variation is running under a fresh runner id:
 * attempt `attempt`, lease until `leaseExpiresAt` (30 s ahead by default).
 */
async function holdVariation(opts: { attempt?: number; leaseExpiresAt?: number } = {}): Promise<Held> {
  const user = await makeUser();
  const job = await seedJob(user.id, { variations: 2 });
  const [source] = await db.select().from(sources).where(eq(sources.jobId, job.id));
  const rows = await db.select().from(variations).where(eq(variations.jobId, job.id)).orderBy(variations.position);
  const attempt = opts.attempt ?? 1;
  const runnerId = `runner-${newId()}`;
  await db
    .update(variations)
    .set({ status: "running", runnerId, attempts: attempt, claims: attempt, leaseExpiresAt: opts.leaseExpiresAt ?? Date.now() + 30_000, startedAt: Date.now() })
    .where(eq(variations.id, rows[0]!.id));
  await db.update(jobs).set({ status: "processing" }).where(eq(jobs.id, job.id));
  return {
    jobId: job.id,
    variationId: rows[0]!.id,
    otherVariationId: rows[1]!.id,
    sourceKey: source!.objectKey,
    ticket: { runnerId, variationId: rows[0]!.id, attempt },
    output: outputKey(job.id, rows[0]!.id, attempt),
  };
}

async function setVariation(id: string, set: Partial<typeof variations.$inferInsert>): Promise<void> {
  await db.update(variations).set(set).where(eq(variations.id, id));
}

async function setJob(id: string, set: Partial<typeof jobs.$inferInsert>): Promise<void> {
  await db.update(jobs).set(set).where(eq(jobs.id, id));
}

async function refusal(res: Response): Promise<string> {
  expect(res.status).toBe(403);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe("not_your_work");
  return body.error.message;
}

function put(key: string, body: string | Uint8Array, ticket: Ticket | null): Promise<Response> {
  const size = typeof body === "string" ? new TextEncoder().encode(body).length : body.length;
  return internal(`/objects/${key}`, { method: "PUT", body, headers: { "content-length": String(size) }, ticket });
}

/** Deterministic bytes, so a byte-exact comparison means the whole path kept every byte in order. */
function bytes(size: number, fill = 3): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 131 + fill) & 0xff;
  return out;
}

async function bodyBytes(res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer());
}

/** SHA-256 hex: comparing megabytes element by element with toEqual is needlessly slow. */
async function digest(data: Uint8Array | ArrayBuffer): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", data);
  return [...new Uint8Array(hash)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

describe("runner authentication on /internal", () => {
  it("refuses requests without the runner token, with a wrong one, or with a user's session or API token", async () => {
    const key = `sources/${newId()}/${newId()}`;
    await env.BUCKET.put(key, "secret bytes");
    expect((await internal(`/objects/${key}`, { token: null })).status).toBe(401);
    const wrong = await internal(`/objects/${key}`, { token: `${env.RUNNER_TOKEN}x` });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ error: { code: "runner_unauthorized" } });

    const user = await signIn("admin");
    const bySession = await exports.default.fetch(
      new Request(`${ORIGIN}/internal/objects/${key}`, { headers: { cookie: user.cookie } }),
    );
    expect(bySession.status).toBe(401);
    const created = await user.call("/api/tokens", { method: "POST", json: { name: "script" } });
    const { token } = (await created.json()) as { token: string };
    expect((await internal(`/objects/${key}`, { token })).status).toBe(401);
  });

  it("does not let the runner token act as a user on the public API", async () => {
    const res = await exports.default.fetch(
      new Request(`${ORIGIN}/api/jobs`, { headers: { authorization: `Bearer ${env.RUNNER_TOKEN}` } }),
    );
    expect(res.status).toBe(401);
  });
});

describe("GET /internal/clock", () => {
  it("answers the edge's clock to the runner token, and 401 to anyone else", async () => {
    const before = Date.now();
    const res = await internal("/clock");
    expect(res.status).toBe(200);
    const { now } = (await res.json()) as { now: number };
    expect(now).toBeGreaterThanOrEqual(before - 1000);
    expect(now).toBeLessThanOrEqual(Date.now() + 1000);
    const refused = await internal("/clock", { token: "not-the-runner-token-at-all" });
    expect([refused.status, ((await refused.json()) as { error: { code: string } }).error.code]).toEqual([401, "runner_unauthorized"]);
  });
});

describe("GET /internal/objects/:key", () => {
  it("streams the held variation's source with its length", async () => {
    const held = await holdVariation();
    const data = bytes(70_000);
    await env.BUCKET.put(held.sourceKey, data);
    const res = await internal(`/objects/${held.sourceKey}`, { ticket: held.ticket });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe("70000");
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    expect(await bodyBytes(res)).toEqual(data);
  });

  it("answers a Range with 206 and Content-Range, a suffix range too, and 416 past the end", async () => {
    const held = await holdVariation();
    // A source from the upload API keeps its uploads/ key.
    const key = `uploads/${newId()}`;
    await db.update(sources).set({ objectKey: key }).where(eq(sources.objectKey, held.sourceKey));
    const data = bytes(1000, 9);
    await env.BUCKET.put(key, data);
    const ticket = held.ticket;

    const part = await internal(`/objects/${key}`, { headers: { range: "bytes=100-199" }, ticket });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe("bytes 100-199/1000");
    expect(await bodyBytes(part)).toEqual(data.slice(100, 200));

    const open = await internal(`/objects/${key}`, { headers: { range: "bytes=990-" }, ticket });
    expect(open.status).toBe(206);
    expect(await bodyBytes(open)).toEqual(data.slice(990));

    const suffix = await internal(`/objects/${key}`, { headers: { range: "bytes=-5" }, ticket });
    expect(suffix.headers.get("content-range")).toBe("bytes 995-999/1000");
    expect(await bodyBytes(suffix)).toEqual(data.slice(995));

    const past = await internal(`/objects/${key}`, { headers: { range: "bytes=5000-" }, ticket });
    expect(past.status).toBe(416);
    expect(past.headers.get("content-range")).toBe("bytes */1000");
  });

  it("answers 404 with the JSON error body when the held variation's source object is missing", async () => {
    const held = await holdVariation();
    await env.BUCKET.delete(held.sourceKey);
    const res = await internal(`/objects/${held.sourceKey}`, { ticket: held.ticket });
    expect(res.status).toBe(404);
    // Its own code: the runner fails a source for this 404 only, not for a route the edge does not have.
    expect(await res.json()).toMatchObject({ error: { code: "no_such_object" } });
    const noRoute = await internal(`/no-such-route/${held.sourceKey}`, { ticket: held.ticket });
    expect(noRoute.status).toBe(404);
    expect(await noRoute.json()).not.toMatchObject({ error: { code: "no_such_object" } });
  });

  it("rejects keys outside the known prefixes or with dot-dot segments", async () => {
    for (const key of ["secrets/x", "sources/../users", "sources/a/../../x", "outputs//x"]) {
      const res = await internal(`/objects/${key}`);
      expect(res.status, key).toBeGreaterThanOrEqual(400);
      expect(res.status, key).toBeLessThan(500);
    }
    expect((await internal("/objects/secrets/x")).status).toBe(400);
  });

  it("refuses a runner reading another job's source, even with a valid ticket", async () => {
    const held = await holdVariation();
    const other = await holdVariation();
    expect(await refusal(await internal(`/objects/${other.sourceKey}`, { ticket: held.ticket }))).toMatch(/^Key not this attempt's/);
  });

  it("refuses a read without a ticket, or with an expired, another runner's or another attempt's ticket", async () => {
    const held = await holdVariation();
    const key = `/objects/${held.sourceKey}`;
    expect(await refusal(await internal(key))).toMatch(/^No ticket/);
    expect(await refusal(await internal(key, { ticket: { ...held.ticket, runnerId: "someone-else" } }))).toMatch(/^Lease not held/);
    expect(await refusal(await internal(key, { ticket: { ...held.ticket, attempt: 2 } }))).toMatch(/^Lease not held/);

    // Within the minute of clock-skew grace the lease still counts; past it, it does not.
    await setVariation(held.variationId, { leaseExpiresAt: Date.now() - 30_000 });
    expect((await internal(key, { ticket: held.ticket })).status).toBe(200);
    await setVariation(held.variationId, { leaseExpiresAt: Date.now() - 61_000 });
    expect(await refusal(await internal(key, { ticket: held.ticket }))).toMatch(/^Lease not held/);

    // A finished variation holds no lease either.
    await setVariation(held.variationId, { status: "completed", leaseExpiresAt: null });
    expect(await refusal(await internal(key, { ticket: held.ticket }))).toMatch(/^Lease not held/);
  });

  it("never lets a runner read outputs or thumbnails, not even its own", async () => {
    const held = await holdVariation();
    await env.BUCKET.put(held.output, "mine");
    await env.BUCKET.put(thumbnailKey(held.jobId), "thumb");
    expect(await refusal(await internal(`/objects/${held.output}`, { ticket: held.ticket }))).toMatch(/^Key not this attempt's/);
    expect(await refusal(await internal(`/objects/${thumbnailKey(held.jobId)}`, { ticket: held.ticket }))).toMatch(/^Key not this attempt's/);
  });
});

describe("PUT and DELETE /internal/objects/:key", () => {
  it("stores the held attempt's output streamed with a known length, byte for byte, as video/mp4", async () => {
    const held = await holdVariation();
    const data = bytes(3 * MiB + 17);
    const res = await put(held.output, data, held.ticket);
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ key: held.output, size: data.length });
    const stored = await env.BUCKET.get(held.output);
    expect(stored?.httpMetadata?.contentType).toBe("video/mp4");
    expect(await digest(await stored!.arrayBuffer())).toBe(await digest(data));
  });

  it("stores a body whose SHA-256 is the one the runner sends, and refuses one that differs without storing it", async () => {
    const held = await holdVariation();
    const data = bytes(300_000);
    const right = await digest(data);
    const send = (sha: string) =>
      internal(`/objects/${held.output}`, { method: "PUT", body: data, headers: { "content-length": String(data.length), "x-content-sha256": sha }, ticket: held.ticket });

    const wrong = await send(right.replace(/^./, (ch) => (ch === "0" ? "1" : "0")));
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe("digest_mismatch");
    expect(await env.BUCKET.head(held.output)).toBeNull();

    const malformed = await send("ABC");
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error: { message: string } }).error.message).toMatch(/^x-content-sha256: /);
    expect(await env.BUCKET.head(held.output)).toBeNull();

    const ok = await send(right);
    expect(ok.status).toBe(201);
    expect(await digest(await (await env.BUCKET.get(held.output))!.arrayBuffer())).toBe(right);
  });

  it("refuses a body without Content-Length with 411", async () => {
    const held = await holdVariation();
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(bytes(10));
        controller.close();
      },
    });
    const res = await internal(`/objects/${held.output}`, { method: "PUT", body: stream, ticket: held.ticket });
    expect(res.status).toBe(411);
    expect(await env.BUCKET.head(held.output)).toBeNull();
  });

  it("refuses a single PUT above the production body limit, pointing at multipart", async () => {
    const held = await holdVariation();
    const res = await internal(`/objects/${held.output}`, {
      method: "PUT",
      body: "x",
      headers: { "content-length": "100000001" },
      ticket: held.ticket,
    });
    expect(res.status).toBe(413);
  });

  it("refuses writing the output key of another variation or another attempt, or without a live lease", async () => {
    const held = await holdVariation({ attempt: 2 });
    expect(await refusal(await put(outputKey(held.jobId, held.otherVariationId, 2), "x", held.ticket))).toMatch(/^Key not this attempt's/);
    expect(await refusal(await put(outputKey(held.jobId, held.variationId, 1), "x", held.ticket))).toMatch(/^Key not this attempt's/);
    expect(await refusal(await put(outputKey(held.jobId, held.variationId, 3), "x", held.ticket))).toMatch(/^Key not this attempt's/);
    const other = await holdVariation();
    expect(await refusal(await put(other.output, "x", held.ticket))).toMatch(/^Key not this attempt's/);
    expect(await refusal(await put(held.output, "x", null))).toMatch(/^No ticket/);
    await setVariation(held.variationId, { leaseExpiresAt: Date.now() - 61_000 });
    expect(await refusal(await put(held.output, "x", held.ticket))).toMatch(/^Lease not held/);
    expect(await env.BUCKET.head(held.output)).toBeNull();
  });

  it("does not let runners overwrite or delete sources", async () => {
    const held = await holdVariation();
    await env.BUCKET.put(held.sourceKey, "original");
    expect(await refusal(await put(held.sourceKey, "evil", held.ticket))).toMatch(/^Key not this attempt's/);
    // The database records it: never deleted, whoever asks.
    const del = await internal(`/objects/${held.sourceKey}`, { method: "DELETE", ticket: held.ticket });
    expect(del.status).toBe(409);
    expect(await (await env.BUCKET.get(held.sourceKey))!.text()).toBe("original");
    const stray = `sources/${held.jobId}/${newId()}`;
    await env.BUCKET.put(stray, "unrecorded");
    expect(await refusal(await internal(`/objects/${stray}`, { method: "DELETE", ticket: held.ticket }))).toMatch(/only outputs/);
    expect(await env.BUCKET.head(stray)).not.toBeNull();
  });

  it("takes the job's thumbnail from the runner and attempt of its variation, once, even after the variation finished", async () => {
    const held = await holdVariation();
    const thumb = thumbnailKey(held.jobId);
    expect(await refusal(await put(thumb, "t", { ...held.ticket, runnerId: "someone-else" }))).toMatch(/^Lease not held/);
    await setVariation(held.variationId, { status: "completed", leaseExpiresAt: null });
    expect((await put(thumb, "jpeg", held.ticket)).status).toBe(201);
    await setJob(held.jobId, { thumbnailKey: thumb });
    expect(await refusal(await put(thumb, "again", held.ticket))).toMatch(/already has a thumbnail/);
    expect(await (await env.BUCKET.get(thumb))!.text()).toBe("jpeg");
  });

  it("refuses deleting the current holder's in-flight output to anyone but its holder", async () => {
    const held = await holdVariation();
    await env.BUCKET.put(held.output, "in flight");
    expect(await refusal(await internal(`/objects/${held.output}`, { method: "DELETE" }))).toMatch(/^No ticket/);
    const other = await holdVariation();
    expect(await refusal(await internal(`/objects/${held.output}`, { method: "DELETE", ticket: other.ticket }))).toMatch(/still running/);
    expect(await env.BUCKET.head(held.output)).not.toBeNull();
    expect((await internal(`/objects/${held.output}`, { method: "DELETE", ticket: held.ticket })).status).toBe(204);
    expect(await env.BUCKET.head(held.output)).toBeNull();
  });

  it("deletes a superseded attempt's unrecorded output without a ticket", async () => {
    const held = await holdVariation({ attempt: 2 });
    const superseded = outputKey(held.jobId, held.variationId, 1);
    await env.BUCKET.put(superseded, "late upload of attempt 1");
    expect((await internal(`/objects/${superseded}`, { method: "DELETE" })).status).toBe(204);
    expect(await env.BUCKET.head(superseded)).toBeNull();
  });

  it("refuses deleting a recorded output, even to the runner that recorded it", async () => {
    const held = await holdVariation();
    await env.BUCKET.put(held.output, "recorded");
    await setVariation(held.variationId, { status: "completed", outputKey: held.output, outputSize: 8, leaseExpiresAt: null });
    const res = await internal(`/objects/${held.output}`, { method: "DELETE", ticket: held.ticket });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: "object_recorded" } });
    expect(await env.BUCKET.head(held.output)).not.toBeNull();
  });

  it("deletes an output key of no attempt only once its job is finished", async () => {
    const held = await holdVariation();
    const odd = `outputs/${held.jobId}/stray.mp4`;
    await env.BUCKET.put(odd, "stray");
    expect(await refusal(await internal(`/objects/${odd}`, { method: "DELETE", ticket: held.ticket }))).toMatch(/still active/);
    await setJob(held.jobId, { status: "cancelled" });
    expect((await internal(`/objects/${odd}`, { method: "DELETE" })).status).toBe(204);
    expect(await env.BUCKET.head(odd)).toBeNull();
  });
});

describe("GET /internal/objects?prefix=", () => {
  it("lists exactly the objects under a finished job's output prefix", async () => {
    const held = await holdVariation();
    await setJob(held.jobId, { status: "completed" });
    const jobId = held.jobId;
    const other = newId();
    await env.BUCKET.put(`outputs/${jobId}/a.mp4`, "aa");
    await env.BUCKET.put(`outputs/${jobId}/b.mp4`, "bbb");
    await env.BUCKET.put(`outputs/${other}/c.mp4`, "c");
    const res = await internal(`/objects?prefix=${encodeURIComponent(`outputs/${jobId}/`)}`);
    expect(res.status).toBe(200);
    const { objects } = (await res.json()) as { objects: { key: string; size: number; uploaded: string }[] };
    expect(objects.map((o) => [o.key, o.size])).toEqual([
      [`outputs/${jobId}/a.mp4`, 2],
      [`outputs/${jobId}/b.mp4`, 3],
    ]);
    expect(objects[0]!.uploaded).toMatch(/Z$/);
  });

  it("lists a job that is gone, but not a job that is still active", async () => {
    expect((await internal(`/objects?prefix=${encodeURIComponent(`outputs/${newId()}/`)}`)).status).toBe(200);
    const held = await holdVariation();
    const res = await internal(`/objects?prefix=${encodeURIComponent(`outputs/${held.jobId}/`)}`, { ticket: held.ticket });
    expect(await refusal(res)).toMatch(/still active/);
  });

  it("refuses to list anything but one job's output prefix", async () => {
    for (const prefix of ["", "outputs/", "sources/x/", "outputs/x"]) {
      expect((await internal(`/objects?prefix=${encodeURIComponent(prefix)}`)).status, prefix).toBe(400);
    }
  });
});

function createUpload(key: string, ticket: Ticket | null): Promise<Response> {
  return internal("/uploads", {
    method: "POST",
    body: JSON.stringify({ key }),
    headers: { "content-type": "application/json" },
    ticket,
  });
}

/** The multipart uploads the edge has on record as neither completed nor aborted, of this key. */
async function openOnRecord(key: string): Promise<string[]> {
  return (await db.select().from(multipartUploads).where(eq(multipartUploads.objectKey, key))).map((r) => r.uploadId);
}

describe("multipart uploads on record", () => {
  it("records an upload a runner opens until it is completed, so one whose create was sent again is left for the lifecycle rule", async () => {
    const held = await holdVariation();
    const q = `key=${encodeURIComponent(held.output)}`;
    const open = async () => ((await (await createUpload(held.output, held.ticket)).json()) as { uploadId: string }).uploadId;
    // A create whose answer was lost and was sent again: two uploads, the runner only knows the second.
    const lost = await open();
    const used = await open();
    expect((await openOnRecord(held.output)).sort()).toEqual([lost, used].sort());
    const data = bytes(5 * MiB + 1, 4);
    const part = await internal(`/uploads/${encodeURIComponent(used)}/parts/1?${q}`, { method: "PUT", body: data, headers: { "content-length": String(data.length) }, ticket: held.ticket });
    const done = await internal(`/uploads/${encodeURIComponent(used)}/complete?${q}`, {
      method: "POST", body: JSON.stringify({ parts: [await part.json()], size: data.length }), headers: { "content-type": "application/json" }, ticket: held.ticket,
    });
    expect(done.status).toBe(200);
    expect(await openOnRecord(held.output)).toEqual([lost]);
  });

  it("forgets an upload the runner aborts", async () => {
    const held = await holdVariation();
    const { uploadId } = (await (await createUpload(held.output, held.ticket)).json()) as { uploadId: string };
    const res = await internal(`/uploads/${encodeURIComponent(uploadId)}?key=${encodeURIComponent(held.output)}`, { method: "DELETE", ticket: held.ticket });
    expect(res.status).toBe(204);
    expect(await openOnRecord(held.output)).toEqual([]);
  });
});

describe("multipart uploads for large outputs", () => {
  it("assembles parts into one object and the result is byte-exact", async () => {
    const held = await holdVariation();
    const key = held.output;
    const ticket = held.ticket;
    const first = bytes(5 * MiB, 1);
    const last = bytes(123_457, 2);
    const created = await createUpload(key, ticket);
    expect(created.status).toBe(201);
    const { uploadId } = (await created.json()) as { uploadId: string };
    const q = `key=${encodeURIComponent(key)}`;
    const id = encodeURIComponent(uploadId);
    const parts = [];
    // Parts may arrive in any order; completion sorts them.
    for (const [n, data] of [[2, last], [1, first]] as const) {
      const res = await internal(`/uploads/${id}/parts/${n}?${q}`, {
        method: "PUT",
        body: data,
        headers: { "content-length": String(data.length) },
        ticket,
      });
      expect(res.status).toBe(200);
      parts.push(await res.json());
    }
    const done = await internal(`/uploads/${id}/complete?${q}`, {
      method: "POST",
      body: JSON.stringify({ parts }),
      headers: { "content-type": "application/json" },
      ticket,
    });
    expect(done.status).toBe(200);
    expect(await done.json()).toMatchObject({ key, size: first.length + last.length });
    const stored = new Uint8Array(await (await env.BUCKET.get(key))!.arrayBuffer());
    expect(stored.length).toBe(first.length + last.length);
    expect(await digest(stored.slice(0, first.length))).toBe(await digest(first));
    expect(await digest(stored.slice(first.length))).toBe(await digest(last));
  });

  it("answers a complete sent again after the first one landed (its answer lost) with the stored object, when the runner names its size", async () => {
    const held = await holdVariation();
    const key = held.output;
    const data = bytes(5 * MiB + 11, 3);
    const { uploadId } = (await (await createUpload(key, held.ticket)).json()) as { uploadId: string };
    const q = `key=${encodeURIComponent(key)}`;
    const id = encodeURIComponent(uploadId);
    const put = await internal(`/uploads/${id}/parts/1?${q}`, {
      method: "PUT", body: data, headers: { "content-length": String(data.length) }, ticket: held.ticket,
    });
    const parts = [await put.json()];
    const complete = (body: unknown) =>
      internal(`/uploads/${id}/complete?${q}`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" }, ticket: held.ticket });
    expect((await complete({ parts, size: data.length })).status).toBe(200);
    // The runner never saw that answer and sends the same complete again.
    const again = await complete({ parts, size: data.length });
    expect([again.status, await again.json()]).toMatchObject([200, { key, size: data.length }]);
    // Another length is not this upload's result; nor is a retry that names none (a runner of the previous release).
    const wrong = await complete({ parts, size: data.length - 1 });
    expect([wrong.status, await wrong.json()]).toMatchObject([404, { error: { code: "no_such_upload" } }]);
    expect((await complete({ parts })).status).toBe(404);
    expect((await env.BUCKET.head(key))!.size).toBe(data.length);
  });

  it("aborts an upload so nothing is stored and a later complete answers 404 no_such_upload", async () => {
    const held = await holdVariation();
    const key = held.output;
    const created = await createUpload(key, held.ticket);
    const { uploadId } = (await created.json()) as { uploadId: string };
    const q = `key=${encodeURIComponent(key)}`;
    const id = encodeURIComponent(uploadId);
    expect((await internal(`/uploads/${id}?${q}`, { method: "DELETE", ticket: held.ticket })).status).toBe(204);
    const late = await internal(`/uploads/${id}/complete?${q}`, {
      method: "POST",
      body: JSON.stringify({ parts: [{ partNumber: 1, etag: "x" }] }),
      headers: { "content-type": "application/json" },
      ticket: held.ticket,
    });
    expect([late.status, await late.json()]).toMatchObject([404, { error: { code: "no_such_upload" } }]);
    expect(await env.BUCKET.head(key)).toBeNull();
  });

  it("refuses multipart uploads of keys the ticket does not hold, and parts from another runner", async () => {
    const held = await holdVariation();
    expect(await refusal(await createUpload(`sources/${held.jobId}/x`, held.ticket))).toMatch(/^Key not this attempt's/);
    expect(await refusal(await createUpload(held.output, null))).toMatch(/^No ticket/);
    const created = await createUpload(held.output, held.ticket);
    const { uploadId } = (await created.json()) as { uploadId: string };
    const part = await internal(`/uploads/${encodeURIComponent(uploadId)}/parts/1?key=${encodeURIComponent(held.output)}`, {
      method: "PUT",
      body: "x",
      headers: { "content-length": "1" },
      ticket: { ...held.ticket, runnerId: "someone-else" },
    });
    expect(await refusal(part)).toMatch(/^Lease not held/);
  });

  it("lets a runner whose lease was taken over abort its own multipart upload", async () => {
    const held = await holdVariation();
    const created = await createUpload(held.output, held.ticket);
    const { uploadId } = (await created.json()) as { uploadId: string };
    // Attempt 2 (another runner) took the variation over: attempt 1's key can never be recorded.
    await setVariation(held.variationId, { runnerId: "heir", attempts: 2, claims: 2 });
    const abort = await internal(`/uploads/${encodeURIComponent(uploadId)}?key=${encodeURIComponent(held.output)}`, {
      method: "DELETE",
      ticket: held.ticket,
    });
    expect(abort.status).toBe(204);
  });
});
