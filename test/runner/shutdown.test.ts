import { afterAll, afterEach, describe, expect, it } from "vitest";
import { startDbProxy, type DbProxy } from "../helpers/db-proxy";
import { useTestLibsql } from "../helpers/libsql";
import { freePort } from "../helpers/ports";
import { FAST, startRunnerProcess, type RunnerProcess } from "../helpers/runner";
import { freshDb, getVariationRows, seedJob } from "../helpers/seed";
import { tempDirs } from "../helpers/tmp";
import { runners } from "../../db/schema";
import { until } from "../helpers/until";

const server = useTestLibsql();
const dirs = tempDirs("vr-runner-shutdown");
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});
afterAll(() => dirs.cleanup());

/** The claim statement's text, as it appears in a Hrana pipeline body (runner/claim: db/queries/variations/claim.ts). */
const CLAIM = "claims = max(claims, attempts) + 1";

async function runnerBehind(proxy: DbProxy): Promise<RunnerProcess> {
  // No edge: nothing here gets as far as a download (a claim made while stopping is handed straight back).
  const r = startRunnerProcess({
    ...FAST,
    LIBSQL_URL: proxy.url,
    EDGE_URL: `http://127.0.0.1:${await freePort()}`,
    RUNNER_TOKEN: "runner-shutdown-test-token",
    WORK_DIR: await dirs.make(),
    METRICS_PORT: "",
    // Long enough that nothing here depends on a lease running out.
    LEASE_MS: "30000",
  });
  cleanup.push(() => r.destroy());
  return r;
}

/** A proxy to the database that holds the first request `matches` picks until `letGo` (called at clean-up too). */
async function holdFirst(url: string, matches: (body: string) => boolean): Promise<{ proxy: DbProxy; gate: Promise<void>; letGo: () => void }> {
  let letGo!: () => void;
  const gate = new Promise<void>((r) => (letGo = r));
  let holding = false;
  const proxy = await startDbProxy(url, (body) => {
    if (!matches(body) || holding) return "pass";
    holding = true;
    return { hold: gate };
  });
  cleanup.push(async () => {
    letGo();
    await proxy.close();
  });
  return { proxy, gate, letGo };
}

describe("a runner's graceful shutdown", () => {
  it("waits for a claim in flight when the signal comes and hands what it claimed back to the queue, attempt refunded, before exiting", async () => {
    const { db, url } = await freshDb(server, "shutdown_claim");
    const job = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 1 });
    // The first claim batch is held until the test lets it go; everything else passes.
    const { proxy, gate, letGo } = await holdFirst(url, (body) => body.includes(CLAIM));
    const runner = await runnerBehind(proxy);
    await until("the claim batch to be held", async () => proxy.held.length > 0, 30_000, 20);

    runner.child.kill("SIGTERM");
    await runner.waitForLog(/shutting down/);
    // The claim commits and its reply comes 3 s into the shutdown: past the 1 s the runner used to wait for it, well
    // inside its 7 s budget. A reply that came after the exit left the row running under an id nobody restarts with.
    const timer = setTimeout(letGo, 3000);
    cleanup.push(async () => clearTimeout(timer));
    const exit = await runner.exited;
    expect(exit.code, runner.logs()).toBe(0);

    // A runner that exited first has not seen the claim commit yet: wait for it, then look at what it left.
    await gate;
    const row = await until("the held claim to have committed", async () => ((r) => (r && r.claims === 1 ? r : null))((await getVariationRows(db, job.jobId))[0]), 30_000);
    expect(row, runner.logs()).toMatchObject({ status: "queued", attempts: 0, claims: 1, leaseExpiresAt: null });
  }, 60_000);

  it("leaves no registration behind when the signal comes while its start-up registration is in flight", async () => {
    const { db, url } = await freshDb(server, "shutdown_registering");
    // The registration is held until the test lets it go; the deregistration is noted when it reaches the database.
    let deregistered = false;
    const { proxy, letGo } = await holdFirst(url, (body) => {
      if (/delete from \W*runners/i.test(body)) deregistered = true;
      return /insert into \W*runners/i.test(body);
    });
    const runner = await runnerBehind(proxy);
    await until("the registration to be held", async () => proxy.held.length > 0, 30_000, 20);
    runner.child.kill("SIGTERM");
    await runner.waitForLog(/shutting down/);
    // Let the registration land once the deregistration has gone out (what the runner did before), or after 1.5 s
    // without one (it now waits for the registration first, within its shutdown budget).
    await until("the deregistration, or 1.5 s", async () => deregistered, 1500, 20).catch(() => {});
    letGo();
    const exit = await runner.exited;
    expect(exit.code, runner.logs()).toBe(0);
    expect(await db.select().from(runners), runner.logs()).toEqual([]);
  }, 60_000);
});
