import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import type { Db } from "../../db/client";
import { newId } from "../../db/ids";
import { createUser } from "../../db/queries/users";

export interface ApiSession {
  userId: string;
  email: string;
  /** fetch against the edge with this user's session cookie (and a same-site Origin for writes). */
  call(path: string, init?: RequestInit): Promise<Response>;
  /** POST /api/jobs with local files as `videos`; returns the 202 Job body. */
  /** `effects`: the job's effects as the API takes them (absent: the server's default look). */
  createJob(files: string[], variations: number, effects?: { intensity?: string; families?: string[] }): Promise<{ id: string; files: { id: string }[] }>;
  getJob(id: string): Promise<any>;
}

/**
 * A fresh user on the real edge (wrangler dev): created in the database with the real password hashing, then
 * signed in through POST /api/auth/login like a browser.
 */
export async function signInToEdge(edgeUrl: string, db: Db, role: "admin" | "user" = "user"): Promise<ApiSession> {
  const email = `runner-test-${newId()}@test.example`;
  const password = `pw-${newId()}`;
  const user = await createUser(db, { email, password, role });
  const login = await fetch(`${edgeUrl}/api/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  if (login.status !== 200) throw new Error(`login failed: ${login.status} ${await login.text()}`);
  const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0]!;
  const call = (path: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    headers.set("cookie", cookie);
    headers.set("origin", edgeUrl);
    // Bounded so a request the edge never answers fails the step that made it instead of the whole test file.
    return fetch(`${edgeUrl}${path}`, { ...init, headers, signal: init.signal ?? AbortSignal.timeout(60_000) });
  };
  return {
    userId: user.id,
    email,
    call,
    async createJob(files, variations, effects) {
      const form = new FormData();
      for (const f of files) form.append("videos", new Blob([await readFile(f)], { type: "video/mp4" }), basename(f));
      form.append("variations", String(variations));
      if (effects) form.append("effects", JSON.stringify(effects));
      const res = await call("/api/jobs", { method: "POST", body: form });
      if (res.status !== 202) throw new Error(`POST /api/jobs: ${res.status} ${await res.text()}`);
      return (await res.json()) as { id: string; files: { id: string }[] };
    },
    async getJob(id) {
      const res = await call(`/api/jobs/${id}`);
      if (res.status !== 200) throw new Error(`GET /api/jobs/${id}: ${res.status} ${await res.text()}`);
      return res.json();
    },
  };
}
