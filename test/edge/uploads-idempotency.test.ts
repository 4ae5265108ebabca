import { eq } from "drizzle-orm";
import { afterEach, describe, expect, it, vi } from "vitest";
import { uploads } from "../../db/schema";
import { db, fakeMp4, onDatabaseRequest, type Session, signIn } from "./helpers";

const KEY = "Idempotency-Key";
const MiB = 1024 * 1024;

interface Created {
  id: string;
  partSize: number;
  partCount: number;
}

function start(s: Session, key: string | null, size = 3 * MiB) {
  return s.call("/api/uploads", { method: "POST", json: { filename: "big.mp4", size }, headers: key === null ? {} : { [KEY]: key } });
}

async function uploadIdsOf(userId: string): Promise<string[]> {
  return (await db.select({ id: uploads.id }).from(uploads).where(eq(uploads.userId, userId))).map((r) => r.id);
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("POST /api/uploads with an Idempotency-Key", () => {
  it("answers the same request sent again (its answer was lost) with the upload it opened, counting it once", async () => {
    const s = await signIn();
    const key = crypto.randomUUID();
    const first = await start(s, key);
    expect(first.status).toBe(201);
    expect(first.headers.get("Idempotent-Replayed")).toBeNull();
    const up = (await first.json()) as Created;

    const again = await start(s, key);
    expect(again.status).toBe(201);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await again.json()).toEqual(up);
    expect(await uploadIdsOf(s.id)).toEqual([up.id]);

    // The upload answered twice takes parts as one.
    const part = await s.call(`/api/uploads/${up.id}/parts/1`, { method: "PUT", body: fakeMp4(3 * MiB), headers: { "content-type": "application/octet-stream" } });
    expect(part.status).toBe(200);
    // A new key opens a new upload.
    const other = await start(s, crypto.randomUUID());
    expect(other.status).toBe(201);
    expect((await uploadIdsOf(s.id)).length).toBe(2);
  });

  it("opens one upload for two requests with the same key at once: both answer 201 with it, one as a replay", async () => {
    const s = await signIn();
    const key = crypto.randomUUID();
    const answers = await Promise.all([0, 1].map(() => start(s, key)));
    expect(answers.map((a) => a.status)).toEqual([201, 201]);
    const bodies = (await Promise.all(answers.map((a) => a.json()))) as Created[];
    expect(bodies[0]!.id).toBe(bodies[1]!.id);
    expect(answers.map((a) => a.headers.get("Idempotent-Replayed")).sort()).toEqual(["true", null].sort());
    expect(await uploadIdsOf(s.id)).toEqual([bodies[0]!.id]);
  });

  it("keeps keys per user: another user's request with the same key opens that user's own upload", async () => {
    const [a, b] = [await signIn(), await signIn()];
    const key = `shared-${crypto.randomUUID()}`;
    const ua = (await (await start(a, key)).json()) as Created;
    const res = await start(b, key);
    expect(res.status).toBe(201);
    expect(res.headers.get("Idempotent-Replayed")).toBeNull();
    const ub = (await res.json()) as Created;
    expect(ub.id).not.toBe(ua.id);
    expect(await uploadIdsOf(b.id)).toEqual([ub.id]);
  });

  it("refuses a malformed key with 400 naming the header, opening nothing", async () => {
    const s = await signIn();
    const res = await start(s, "has space");
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: "invalid_request", field: KEY } });
    expect(await uploadIdsOf(s.id)).toEqual([]);
  });

  it("answers 201 with the upload when the database committed the insert but its reply was lost, and the upload takes parts", async () => {
    const s = await signIn();
    let dropped = 0;
    // The insert commits, then its reply never arrives.
    onDatabaseRequest(async (body) => (dropped === 0 && body.includes('insert into \\"uploads\\"') ? (dropped++, "lose-reply") : "send"));
    const res = await start(s, null);
    vi.unstubAllGlobals();
    expect(dropped).toBe(1);
    expect(res.status).toBe(201);
    const up = (await res.json()) as Created;
    expect(await uploadIdsOf(s.id)).toEqual([up.id]);
    // Its R2 multipart upload was kept, not aborted.
    const part = await s.call(`/api/uploads/${up.id}/parts/1`, { method: "PUT", body: fakeMp4(3 * MiB), headers: { "content-type": "application/octet-stream" } });
    expect(part.status).toBe(200);
  });
});
