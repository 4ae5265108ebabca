import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClip } from "../helpers/clips";
import { expectCleanEndState, jobRows, report, startFaultStack, TERMINAL, until, variationRows, type FaultStack } from "./support";

const JOBS = 50;
const PER_JOB = 4;

let fs: FaultStack;
beforeAll(async () => {
  fs = await startFaultStack({ label: "storm", runners: 2 });
});
afterAll(() => fs?.stop());

interface Sent {
  group: string;
  /** Body text when it was not JSON (what a 5xx from the runtime looks like). */
  raw?: string;
  target: string;
  status: number;
  /** Status of the job in the reply (single cancel) or of each result (bulk). */
  jobStatuses: string[];
  errorCode?: string;
}

async function readJson(res: Response): Promise<{ json: any; raw?: string }> {
  const text = await res.text();
  try {
    return { json: JSON.parse(text) };
  } catch {
    return { json: null, raw: text.slice(0, 300) };
  }
}

describe("fault: cancel storm — 50 jobs × 4 variations on 2 runners, 200 cancel requests", () => {
  it("leaves no job stuck, no FFmpeg alive, no unrecorded object, consistent counts, and completed wins", async () => {
    const clip = await makeClip({ seconds: 2 });
    const sent: Sent[] = [];
    const inFlight: Promise<void>[] = [];
    let seq = 0;
    const random = () => ((seq = (seq * 1103515245 + 12345) % 2 ** 31) / 2 ** 31); // seeded: reproducible targets

    const cancelOne = (group: string, id: string) =>
      inFlight.push(
        (async () => {
          const res = await fs.user.call(`/api/jobs/${id}/cancel`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ reason: `storm ${group}` }),
          });
          const { json: body, raw } = await readJson(res);
          sent.push({ group, target: id, status: res.status, jobStatuses: [body?.status ?? body?.job?.status], errorCode: body?.error?.code, raw });
        })(),
      );
    const cancelBulk = (group: string, body: unknown) =>
      inFlight.push(
        (async () => {
          const res = await fs.user.call(`/api/jobs/cancel`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(body),
          });
          const { json, raw } = await readJson(res);
          sent.push({ group, target: JSON.stringify(body).slice(0, 40), status: res.status, jobStatuses: (json?.results ?? []).map((r: { status: string }) => r.status), raw });
        })(),
      );

    // Phase 1: create the jobs; the first 10 get two concurrent cancels (duplicates) the moment they exist.
    const ids: string[] = [];
    const t0 = Date.now();
    for (let i = 0; i < JOBS; i++) {
      ids.push((await fs.user.createJob([clip], PER_JOB)).id);
      if (i < 10) for (let d = 0; d < 2; d++) cancelOne("duplicate-on-create", ids[i]!);
    }

    // Phase 2, concurrently, as the runners work through the queue (oldest first):
    // - jobs 10–19 are cancelled (twice) the moment a runner claims them (queued → processing);
    // - jobs 20–29 the moment 3 of their 4 variations are done, racing the last one's completion;
    // - jobs 30–34 are left to complete, then cancelled twice each (409 not_cancellable, or completed wins);
    // - 80 more cancels in waves hit random jobs that were already asked (duplicates in every state).
    // The watchers read the database, not the API: polling GET /api/jobs every 30 ms, three of them would spend the
    // account's request budget (600 per 10 s, wrangler.toml) on a fast machine, and the cancels would get 429.
    const asked = new Set<string>(ids.slice(0, 10));
    const watch = async (from: number, to: number, group: string, ready: (j: { status: string; completedVariations: number }) => boolean) => {
      const pending = new Set(ids.slice(from, to));
      await until(`${group} watchers`, async () => {
        for (const j of await jobRows(fs.db, [...pending])) {
          if (pending.has(j.id) && (ready(j) || TERMINAL.includes(j.status))) {
            pending.delete(j.id);
            cancelOne(group, j.id);
            cancelOne(group, j.id);
            asked.add(j.id);
          }
        }
        return pending.size === 0;
      }, 180_000, 30);
    };
    let watching = true;
    const waves = (async () => {
      let n = 0;
      while (n < 80) {
        const pool = [...asked];
        for (let k = 0; k < 8 && n < 80; k++, n++) cancelOne("random-repeat", pool[Math.floor(random() * pool.length)]!);
        // Spread over the watchers' phase; once it is over, send the rest at once.
        if (watching) await new Promise((r) => setTimeout(r, 400));
      }
    })();
    await Promise.all([
      watch(10, 20, "mid-claim", (j) => j.status !== "queued"),
      watch(20, 30, "at-completion", (j) => j.completedVariations >= PER_JOB - 1),
      watch(30, 35, "after-completion", (j) => j.status === "completed"),
    ]);
    watching = false;
    await waves;

    // Phase 3: bulk cancels (5 overlapping requests by ids over jobs 35–44; 5 by status "queued", catching
    // 45–49) and 40 single cancels over jobs 35–49, whatever state they are in by then.
    for (let b = 0; b < 5; b++) cancelBulk("bulk-ids", { ids: ids.slice(35 + b, 45), reason: "storm bulk" });
    for (let b = 0; b < 5; b++) cancelBulk("bulk-queued", { status: "queued" });
    for (let k = 0; k < 40; k++) cancelOne("late-single", ids[35 + Math.floor(random() * 15)]!);
    while (inFlight.length < 200) await new Promise((r) => setTimeout(r, 10));
    await Promise.all(inFlight);
    const requestsDoneMs = Date.now() - t0;

    await until("every job to be terminal", async () => {
      const rows = await jobRows(fs.db, ids);
      return rows.every((j) => TERMINAL.includes(j.status));
    }, 180_000, 250).catch(async (err: unknown) => {
      const stuck = (await jobRows(fs.db, ids)).filter((j) => !TERMINAL.includes(j.status));
      console.log("[fault] stuck jobs:", JSON.stringify(stuck), JSON.stringify(await variationRows(fs.db, stuck.map((j) => j.id))));
      throw err;
    });
    const settledMs = Date.now() - t0;

    const broken = sent.filter((s) => s.raw !== undefined || s.status >= 500);
    if (broken.length) console.log(`[fault] non-JSON or 5xx replies (${broken.length}):`, JSON.stringify(broken.slice(0, 5), null, 1));
    // 200 requests, every answer a clean 200/202/409 (no 5xx, no 404 for the owner), 409 only for finished jobs.
    expect(sent).toHaveLength(200);
    // A 429 means the drill spent the account's request budget: it tested the limiter, not cancels.
    expect(sent.filter((s) => s.status === 429), "requests refused by the per-user request limit (600 per 10 s): the storm must stay under it").toEqual([]);
    expect(sent.filter((s) => ![200, 202, 409].includes(s.status))).toEqual([]);
    expect(sent.filter((s) => s.status === 409 && (s.errorCode !== "not_cancellable" || !["completed", "failed"].includes(s.jobStatuses[0]!)))).toEqual([]);
    expect(sent.filter((s) => s.status === 200 && s.group !== "bulk-ids" && s.group !== "bulk-queued" && !["cancelled", "completed"].includes(s.jobStatuses[0]!))).toEqual([]);

    const rows = await variationRows(fs.db, ids);
    // An exit after a stop stage is never a completion.
    expect(rows.filter((r) => r.status === "completed" && r.stopStage !== null)).toEqual([]);
    const jobs = await jobRows(fs.db, ids);
    const completedDespiteCancel = jobs.filter((j) => j.cancelRequestedAt !== null && j.status === "completed");
    for (const j of completedDespiteCancel) {
      const mine = rows.filter((r) => r.jobId === j.id);
      // Completed wins only when every variation really completed.
      expect(mine.every((r) => r.status === "completed")).toBe(true);
    }
    const end = await expectCleanEndState(fs, ids);
    const stages = await fs.db.all<{ stage: string | null; n: number }>(
      sql`SELECT stop_stage AS stage, count(*) AS n FROM variations WHERE status = 'cancelled' GROUP BY stop_stage`,
    );
    const byGroup: Record<string, Record<number, number>> = {};
    for (const s of sent) ((byGroup[s.group] ??= {})[s.status] = (byGroup[s.group]![s.status] ?? 0) + 1);
    const completedWinsLogged = fs.lines.filter((l) => /cancel requested after FFmpeg finished: completing anyway/.test(l.line)).length;
    report("cancel storm: 50 jobs × 4 variations, 2 runners, 200 cancel requests", {
      requestsByGroupAndStatus: byGroup,
      allRequestsAnsweredAfterMs: requestsDoneMs,
      allJobsTerminalAfterMs: settledMs,
      completedJobsDespiteCancelRequest: completedDespiteCancel.length,
      runnerCompletedWinsEvents: completedWinsLogged,
      cancelledVariationsByStopStage: Object.fromEntries(stages.map((s) => [s.stage ?? "none (queued or before FFmpeg)", s.n])),
      end,
    });
  });
});
