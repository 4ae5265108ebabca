import { afterAll, beforeAll } from "vitest";
import { type LibsqlServerOptions, startLibsqlServer } from "../../db/server/server";

export type TestLibsqlServer = Awaited<ReturnType<typeof startLibsqlServer>> & {
  /** Base URL of a separate database on this server (the trailing slash selects `/<name>/v2/pipeline`). */
  dbUrl(name: string): string;
};

/**
 * Starts a local libSQL server on a free port, with named databases (`dbUrl`) and — unless `authToken` is given —
 * without a token; pair with `afterAll(() => server.close())`.
 */
export async function startTestLibsql(opts: LibsqlServerOptions = {}): Promise<TestLibsqlServer> {
  const server = await startLibsqlServer({ port: 0, namedDatabases: true, insecureNoAuthForTests: !opts.authToken, ...opts });
  return { ...server, dbUrl: (name) => `${server.url}/${name}/` };
}

/**
 * A test file's own libSQL server: started before its tests, closed after them. Read it inside tests or hooks only
 * (it forwards to the server once started, which happens in beforeAll).
 */
export function useTestLibsql(opts: LibsqlServerOptions = {}): TestLibsqlServer {
  let started: TestLibsqlServer | undefined;
  beforeAll(async () => {
    started = await startTestLibsql(opts);
  });
  afterAll(() => started?.close());
  return new Proxy({} as TestLibsqlServer, {
    get(_target, key) {
      if (!started) throw new Error("the test libSQL server is read before its beforeAll started it");
      const value = Reflect.get(started, key);
      return typeof value === "function" ? value.bind(started) : value;
    },
  });
}

/** Posts a raw Hrana pipeline body; for protocol-level assertions the official client would hide. */
export async function postPipeline(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: res.headers.get("content-type") === "application/json" ? JSON.parse(text) : text };
}
