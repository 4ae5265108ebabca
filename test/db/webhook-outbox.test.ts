import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { useTestLibsql } from "../helpers/libsql";
import { freshDb } from "../helpers/seed";

const server = useTestLibsql();

/** The DELETE in the newest jobs_webhook_outbox trigger, with NEW.<column> as a bound value. */
function triggerDelete(): { sql: string; args: string[] } {
  const migration = readFileSync(new URL("../../db/migrations/0024_webhook_outbox_coalesce.sql", import.meta.url), "utf8");
  const statement = /(DELETE FROM `webhook_deliveries`[\s\S]*?);\n/.exec(migration)![1]!.replace(/--[^\n]*\n/g, "\n");
  const args: string[] = [];
  const sql = statement.replace(/NEW\.`(\w+)`/g, (_m, column: string) => {
    args.push(column === "status" ? "paused" : `x-${column}`);
    return "?";
  });
  return { sql, args };
}

describe("the webhook outbox trigger", () => {
  it("finds the waiting event it replaces through (webhook_id, job_id, event), not by walking every user's pending deliveries", async () => {
    const { db } = await freshDb(server, "outbox_plan");
    const { sql, args } = triggerDelete();
    const plan = await db.$client.execute({ sql: `EXPLAIN QUERY PLAN ${sql}`, args });
    const details = plan.rows.map((r) => String(r.detail));
    expect(details.join("\n")).toMatch(/SEARCH webhook_deliveries USING INDEX webhook_deliveries_occurrence_uq \(webhook_id=\? AND job_id=\? AND event=\?\)/);
    expect(details.filter((d) => /^SCAN webhook_deliveries\b/.test(d) || /window_idx|due_idx/.test(d))).toEqual([]);
  });
});
