import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../db/ids";
import { signIn } from "./helpers";

const ORIGIN = "http://edge.test";
const MiB = 1024 * 1024;

function internal(path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
  const { token = env.RUNNER_TOKEN, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  return exports.default.fetch(new Request(`${ORIGIN}/internal${path}`, { ...rest, headers }));
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

describe("GET /internal/objects/:key", () => {
  it("streams a whole source object with its length", async () => {
    const key = `sources/${newId()}/${newId()}`;
    const data = bytes(70_000);
    await env.BUCKET.put(key, data);
    const res = await internal(`/objects/${key}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe("70000");
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    expect(await bodyBytes(res)).toEqual(data);
  });

  it("answers a Range with 206 and Content-Range, a suffix range too, and 416 past the end", async () => {
    const key = `uploads/${newId()}`;
    const data = bytes(1000, 9);
    await env.BUCKET.put(key, data);

    const part = await internal(`/objects/${key}`, { headers: { range: "bytes=100-199" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe("bytes 100-199/1000");
    expect(await bodyBytes(part)).toEqual(data.slice(100, 200));

    const open = await internal(`/objects/${key}`, { headers: { range: "bytes=990-" } });
    expect(open.status).toBe(206);
    expect(await bodyBytes(open)).toEqual(data.slice(990));

    const suffix = await internal(`/objects/${key}`, { headers: { range: "bytes=-5" } });
    expect(suffix.headers.get("content-range")).toBe("bytes 995-999/1000");
    expect(await bodyBytes(suffix)).toEqual(data.slice(995));

    const past = await internal(`/objects/${key}`, { headers: { range: "bytes=5000-" } });
    expect(past.status).toBe(416);
    expect(past.headers.get("content-range")).toBe("bytes */1000");
  });

  it("answers 404 with the JSON error body for a missing object", async () => {
    const res = await internal(`/objects/sources/${newId()}/${newId()}`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: "not_found" } });
  });

  it("rejects keys outside the known prefixes or with dot-dot segments", async () => {
    for (const key of ["secrets/x", "sources/../users", "sources/a/../../x", "outputs//x"]) {
      const res = await internal(`/objects/${key}`);
      expect(res.status, key).toBeGreaterThanOrEqual(400);
      expect(res.status, key).toBeLessThan(500);
    }
    expect((await internal("/objects/secrets/x")).status).toBe(400);
  });
});

describe("PUT and DELETE /internal/objects/:key", () => {
  it("stores an output streamed with a known length, byte for byte, as video/mp4", async () => {
    const key = `outputs/${newId()}/${newId()}.mp4`;
    const data = bytes(3 * MiB + 17);
    const res = await internal(`/objects/${key}`, {
      method: "PUT",
      body: data,
      headers: { "content-length": String(data.length) },
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ key, size: data.length });
    const stored = await env.BUCKET.get(key);
    expect(stored?.httpMetadata?.contentType).toBe("video/mp4");
    expect(await digest(await stored!.arrayBuffer())).toBe(await digest(data));
  });

  it("refuses a body without Content-Length with 411", async () => {
    const key = `outputs/${newId()}/${newId()}.mp4`;
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(bytes(10));
        controller.close();
      },
    });
    const res = await internal(`/objects/${key}`, { method: "PUT", body: stream });
    expect(res.status).toBe(411);
    expect(await env.BUCKET.head(key)).toBeNull();
  });

  it("refuses a single PUT above the production body limit, pointing at multipart", async () => {
    const res = await internal(`/objects/outputs/${newId()}/big.mp4`, {
      method: "PUT",
      body: "x",
      headers: { "content-length": "100000001" },
    });
    expect(res.status).toBe(413);
  });

  it("does not let runners overwrite or delete sources", async () => {
    const key = `sources/${newId()}/${newId()}`;
    await env.BUCKET.put(key, "original");
    const put = await internal(`/objects/${key}`, { method: "PUT", body: "evil", headers: { "content-length": "4" } });
    expect(put.status).toBe(400);
    expect(await put.json()).toMatchObject({ error: { code: "key_not_allowed" } });
    expect((await internal(`/objects/${key}`, { method: "DELETE" })).status).toBe(400);
    expect(await (await env.BUCKET.get(key))!.text()).toBe("original");
  });

  it("deletes an output object", async () => {
    const key = `outputs/${newId()}/${newId()}.mp4`;
    await env.BUCKET.put(key, "orphan");
    expect((await internal(`/objects/${key}`, { method: "DELETE" })).status).toBe(204);
    expect(await env.BUCKET.head(key)).toBeNull();
  });
});

describe("GET /internal/objects?prefix=", () => {
  it("lists exactly the objects under a job's output prefix", async () => {
    const jobId = newId();
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

  it("refuses to list anything but one job's output prefix", async () => {
    for (const prefix of ["", "outputs/", "sources/x/", "outputs/x"]) {
      expect((await internal(`/objects?prefix=${encodeURIComponent(prefix)}`)).status, prefix).toBe(400);
    }
  });
});

describe("multipart uploads for large outputs", () => {
  it("assembles parts into one object and the result is byte-exact", async () => {
    const key = `outputs/${newId()}/${newId()}.mp4`;
    const first = bytes(5 * MiB, 1);
    const last = bytes(123_457, 2);
    const created = await internal("/uploads", {
      method: "POST",
      body: JSON.stringify({ key }),
      headers: { "content-type": "application/json" },
    });
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
      });
      expect(res.status).toBe(200);
      parts.push(await res.json());
    }
    const done = await internal(`/uploads/${id}/complete?${q}`, {
      method: "POST",
      body: JSON.stringify({ parts }),
      headers: { "content-type": "application/json" },
    });
    expect(done.status).toBe(200);
    expect(await done.json()).toMatchObject({ key, size: first.length + last.length });
    const stored = new Uint8Array(await (await env.BUCKET.get(key))!.arrayBuffer());
    expect(stored.length).toBe(first.length + last.length);
    expect(await digest(stored.slice(0, first.length))).toBe(await digest(first));
    expect(await digest(stored.slice(first.length))).toBe(await digest(last));
  });

  it("aborts an upload so nothing is stored and later parts are refused", async () => {
    const key = `outputs/${newId()}/${newId()}.mp4`;
    const created = await internal("/uploads", {
      method: "POST",
      body: JSON.stringify({ key }),
      headers: { "content-type": "application/json" },
    });
    const { uploadId } = (await created.json()) as { uploadId: string };
    const q = `key=${encodeURIComponent(key)}`;
    const id = encodeURIComponent(uploadId);
    expect((await internal(`/uploads/${id}?${q}`, { method: "DELETE" })).status).toBe(204);
    const late = await internal(`/uploads/${id}/complete?${q}`, {
      method: "POST",
      body: JSON.stringify({ parts: [{ partNumber: 1, etag: "x" }] }),
      headers: { "content-type": "application/json" },
    });
    expect(late.status).toBeGreaterThanOrEqual(400);
    expect(await env.BUCKET.head(key)).toBeNull();
  });

  it("refuses multipart uploads outside outputs/ and thumbs/", async () => {
    const res = await internal("/uploads", {
      method: "POST",
      body: JSON.stringify({ key: `sources/${newId()}/x` }),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(400);
  });
});
