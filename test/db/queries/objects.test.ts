import { describe, expect, it } from "vitest";
import type { Db } from "../../../db/client";
import { isObjectRecorded } from "../../../db/queries/is-object-recorded";
import { deleteFinishedJobRows, recordedObjectKeys } from "../../../db/queries/objects";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb, seedJob } from "../../helpers/seed";
import { fullScans, planOf, statementsOf } from "../../helpers/statements";

const server = useTestLibsql();

describe("object key lookups", () => {
  it("read no table in full: the orphan rule's page of keys and a runner's check before a delete use indexes", async () => {
    const { db } = await freshDb(server, "object_lookups");
    const keys = ["outputs/j1/v1.a1.mp4", "thumbs/j1.jpg", "sources/j1/s1", "uploads/u1", "outputs/j1/v1.a1.jpg"];
    const statements = [
      ...(await statementsOf(db, () => recordedObjectKeys(db, keys, 0))),
      ...(await statementsOf(db, async () => {
        for (const k of keys) await isObjectRecorded(db, k);
      })),
    ];
    expect(statements.length).toBeGreaterThanOrEqual(keys.length + 1);
    const scans = new Map<string, string[]>();
    for (const s of statements) {
      const found = await fullScans(db, s);
      if (found.length) scans.set(s.sql, found);
    }
    expect(Object.fromEntries(scans)).toEqual({});
  });
});

describe("deleteFinishedJobRows", () => {
  it("finds a finished job's consumed uploads by their key, not among every consumed upload of every user", async () => {
    const { db } = await freshDb(server, "purge_plan");
    const { db: plans } = await freshDb(server, "purge_plan_explained");
    const job = await seedJob(db, { sources: [{ objectKey: "sources/j/s" }], variationsPerSource: 1, status: "completed" });
    const statements = await statementsOf(db, () => deleteFinishedJobRows(db, job.jobId));
    const uploadsDelete = statements.find((s) => /^\s*delete from "uploads"/i.test(s.sql));
    expect(uploadsDelete).toBeDefined();
    // Without statistics (nothing runs ANALYZE) SQLite took the status index: every consumed upload of every user.
    expect((await planOf(plans, uploadsDelete!)).filter((d) => /\buploads\b/.test(d))).toEqual([expect.stringMatching(/^SEARCH uploads USING INDEX uploads_object_key_idx \(object_key=\?\)$/)]);
    for (const s of statements) expect(await fullScans(plans, s), s.sql).toEqual([]);
  });
});
