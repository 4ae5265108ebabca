/// <reference types="vite/client" />
import { env, exports } from "cloudflare:workers";
import { vi } from "vitest";
import { and, eq, inArray, sql } from "drizzle-orm";
import { createDb, type Db } from "../../db/client";
import { newId } from "../../db/ids";
import { createJob, type JobView } from "../../db/queries/jobs";
import { createUser, type Role } from "../../db/queries/users";
import { failVariation, finishVariation } from "../../db/queries/variations";
import { jobs, variations } from "../../db/schema";

export const ORIGIN = "http://edge.test";
export const PASSWORD = "correct horse battery staple";

/** The same database the worker under test talks to. */
export const db: Db = createDb(env.LIBSQL_URL);

export interface TestUser {
  id: string;
  email: string;
  role: Role;
  password: string;
}

/** A fresh account with a unique email (tests never share users). */
export async function makeUser(role: Role = "user"): Promise<TestUser> {
  const email = `${role}-${newId()}@test.example`;
  const user = await createUser(db, { email, password: PASSWORD, role });
  return { ...user, password: PASSWORD };
}

export interface CallInit extends RequestInit {
  cookie?: string;
  token?: string;
  /** Origin header; defaults to this site's origin for cookie calls. Pass null to omit it. */
  origin?: string | null;
  json?: unknown;
}

/** Calls the worker like a browser (cookie + same-site Origin) or a script (Bearer token). */
export async function call(path: string, init: CallInit = {}): Promise<Response> {
  const { cookie, token, origin, json, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (cookie) headers.set("cookie", cookie);
  if (token) headers.set("authorization", `Bearer ${token}`);
  const o = origin === undefined ? (cookie ? ORIGIN : null) : origin;
  if (o) headers.set("origin", o);
  let body = rest.body;
  if (json !== undefined) {
    headers.set("content-type", "application/json");
    body = JSON.stringify(json);
  }
  return exports.default.fetch(new Request(ORIGIN + path, { ...rest, headers, body }));
}

/** Signs in through the API and returns the `name=value` cookie pair. */
export async function loginCookie(user: { email: string; password: string }, ip = `10.0.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`): Promise<string> {
  const res = await call("/api/auth/login", {
    method: "POST",
    json: { email: user.email, password: user.password },
    headers: { "cf-connecting-ip": ip },
  });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`);
  const setCookie = res.headers.get("set-cookie") ?? "";
  return setCookie.split(";")[0]!;
}

export interface Session extends TestUser {
  cookie: string;
  /** call() with this user's cookie. */
  call(path: string, init?: CallInit): Promise<Response>;
}

export async function signIn(role: Role = "user"): Promise<Session> {
  const user = await makeUser(role);
  const cookie = await loginCookie(user);
  return { ...user, cookie, call: (path, init = {}) => call(path, { cookie, ...init }) };
}

/** Bytes that sniff as MP4 (`ftyp` at offset 4) followed by a deterministic payload. */
export function fakeMp4(size: number, fill = 7): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + fill) & 0xff;
  out.set([0, 0, 0, 0x18, 0x66, 0x74, 0x79, 0x70, 0x69, 0x73, 0x6f, 0x6d].slice(0, size), 0);
  return out;
}

export function fakeWebm(size: number): Uint8Array {
  const out = fakeMp4(size);
  out.set([0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x84, 0x77, 0x65, 0x62, 0x6d].slice(0, size), 0);
  return out;
}

/**
 * A queued job with `files` sources whose objects are stored, created through the same db/ call the API uses
 * (so tests that are not about uploading do not pay for multipart bodies).
 */
export async function seedJob(
  userId: string,
  opts: { files?: number; variations?: number; names?: string[]; retentionMs?: number; now?: number; db?: Db } = {},
): Promise<JobView> {
  const id = newId();
  const files = opts.names?.length ?? opts.files ?? 1;
  const sources = [];
  for (let i = 0; i < files; i++) {
    const sourceId = newId();
    const key = `sources/${id}/${sourceId}`;
    const bytes = fakeMp4(1000 + i);
    await env.BUCKET.put(key, bytes);
    sources.push({ id: sourceId, name: opts.names?.[i] ?? `clip${i + 1}.mp4`, size: bytes.length, contentType: "video/mp4", objectKey: key });
  }
  return createJob(
    opts.db ?? db,
    {
      id,
      userId,
      variationsPerVideo: opts.variations ?? 2,
      retentionMs: opts.retentionMs ?? 24 * 60 * 60 * 1000,
      sources,
    },
    opts.now ?? Date.now(),
  );
}

/**
 * Simulates a runner claiming every queued variation of one job (the real claim takes the oldest variation of any
 * job in the shared test database, which would steal other tests' work).
 */
export async function claimAll(
  jobId: string,
  runnerId: string,
  now = Date.now(),
  leaseMs = 30_000,
  limit = 1000,
  dbh: Db = db,
): Promise<string[]> {
  const pick = dbh
    .select({ id: variations.id })
    .from(variations)
    .where(and(eq(variations.jobId, jobId), eq(variations.status, "queued")))
    .orderBy(sql`rowid`)
    .limit(limit);
  const [claimed] = await dbh.batch([
    dbh
      .update(variations)
      .set({ status: "running", runnerId, leaseExpiresAt: now + leaseMs, attempts: sql`${variations.attempts} + 1`, claims: sql`${variations.claims} + 1`, startedAt: now })
      .where(and(eq(variations.status, "queued"), inArray(variations.id, pick)))
      .returning({ id: variations.id }),
    dbh
      .update(jobs)
      .set({ status: "processing", startedAt: now, updatedAt: now })
      .where(and(eq(jobs.id, jobId), eq(jobs.status, "queued"))),
  ]);
  return claimed.map((r) => r.id);
}

export async function variationsOf(jobId: string, dbh: Db = db) {
  return dbh.select().from(variations).where(eq(variations.jobId, jobId)).orderBy(variations.sourceId, variations.position);
}

export async function sha256Hex(b: Uint8Array): Promise<string> {
  return [...new Uint8Array(await crypto.subtle.digest("SHA-256", b))].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * Runs a seeded job like a runner would: claims every variation, stores an output for each except the ones listed
 * in `fail`, and settles them (the last settle finalizes the job).
 */
export async function runJob(jobId: string, opts: { fail?: number[]; cancelAfter?: number; withoutDigests?: boolean } = {}) {
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

export async function jobRow(jobId: string, dbh: Db = db) {
  const [row] = await dbh.select().from(jobs).where(eq(jobs.id, jobId));
  return row;
}

/** Builds a multipart/form-data body by hand, so tests control bytes, order and names exactly. */
export function formBody(
  parts: ({ name: string; value: string } | { name: string; filename: string; bytes: Uint8Array; type?: string })[],
  boundary = `----vrtest${newId()}`,
): { body: Uint8Array; contentType: string } {
  const enc = new TextEncoder();
  const chunks: Uint8Array[] = [];
  for (const p of parts) {
    if ("value" in p) {
      chunks.push(enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"\r\n\r\n${p.value}\r\n`));
    } else {
      chunks.push(
        enc.encode(
          `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"; filename="${p.filename}"\r\n` +
            `Content-Type: ${p.type ?? "video/mp4"}\r\n\r\n`,
        ),
      );
      chunks.push(p.bytes);
      chunks.push(enc.encode("\r\n"));
    }
  }
  chunks.push(enc.encode(`--${boundary}--\r\n`));
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const body = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.length;
  }
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

/** Byte equality without vitest's element-by-element diffing (which takes minutes on megabytes). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// A CRC-32 of the tests' own (the edge uses workerd's node:zlib), so a ZIP's checksums are checked independently.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export interface ZipEntry {
  name: string;
  method: number;
  crc: number;
  data: Uint8Array;
}

/**
 * A small independent ZIP reader (central directory → local headers), so the download test checks the archive
 * as an unzip tool would rather than trusting the library that wrote it.
 */
export function readZip(zip: Uint8Array): ZipEntry[] {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  let eocd = zip.length - 22;
  while (eocd >= 0 && view.getUint32(eocd, true) !== 0x06054b50) eocd--;
  if (eocd < 0) throw new Error("no end of central directory");
  const count = view.getUint16(eocd + 10, true);
  let at = view.getUint32(eocd + 16, true);
  const dec = new TextDecoder();
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    if (view.getUint32(at, true) !== 0x02014b50) throw new Error(`bad central header ${i}`);
    const method = view.getUint16(at + 10, true);
    const crc = view.getUint32(at + 16, true);
    const size = view.getUint32(at + 20, true);
    const nameLen = view.getUint16(at + 28, true);
    const extraLen = view.getUint16(at + 30, true);
    const commentLen = view.getUint16(at + 32, true);
    const local = view.getUint32(at + 42, true);
    const name = dec.decode(zip.subarray(at + 46, at + 46 + nameLen));
    if (view.getUint32(local, true) !== 0x04034b50) throw new Error(`bad local header for ${name}`);
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    entries.push({ name, method, crc, data: zip.subarray(start, start + size) });
    at += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

const migrations = import.meta.glob("../../db/migrations/*.sql", { query: "?raw", import: "default", eager: true });

/**
 * A fresh, migrated database of its own on the test libSQL server, for tests whose subject acts on every row
 * (the lifecycle rules), so they cannot touch the data of test files running in parallel.
 */
export async function isolatedDatabase(): Promise<{ db: Db; url: string }> {
  const url = `${env.LIBSQL_URL.replace(/\/+$/, "")}/t${newId()}/`;
  const fresh = createDb(url);
  for (const name of Object.keys(migrations).sort()) await fresh.$client.executeMultiple(migrations[name] as string);
  return { db: fresh, url };
}

export async function isolatedDb(): Promise<Db> {
  return (await isolatedDatabase()).db;
}

/**
 * Faults between the edge (or test) and the database: its client posts Hrana pipelines with fetch, and `hook` sees
 * each request body first — send it, send it and lose the reply (the statement committed), or fail it unsent. Undo
 * with vi.unstubAllGlobals().
 */
export function onDatabaseRequest(hook: (body: string) => Promise<"send" | "lose-reply" | "fail">) {
  const realFetch = globalThis.fetch;
  vi.stubGlobal("fetch", async (input: RequestInfo | URL, init?: RequestInit) => {
    const action = typeof init?.body === "string" ? await hook(init.body) : "send";
    if (action === "fail") throw new TypeError("Network connection lost.");
    const res = await realFetch(input, init);
    if (action === "lose-reply") throw new TypeError("Network connection lost.");
    return res;
  });
}
