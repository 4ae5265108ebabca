import { describe, expect, it } from "vitest";
import { outputKey, parseOutputKey, thumbnailKey, variationThumbnailKey } from "../../../db/keys";
import type { TicketRow } from "../../../db/queries/variations";
import { LEASE_GRACE_MS, mayAbort, mayDelete, mayList, mayRead, mayWrite, parseTicket } from "../../../edge/lib/runner-scope";

const NOW = 1_900_000_000_000;
const row = (over: Partial<TicketRow> = {}): TicketRow => ({
  variationId: "v1",
  jobId: "j1",
  status: "running",
  runnerId: "r1",
  attempt: 2,
  leaseExpiresAt: NOW + 10_000,
  sourceKey: "sources/j1/s1",
  jobStatus: "processing",
  jobThumbnailKey: null,
  ...over,
});
const ticket = { runnerId: "r1", variationId: "v1", attempt: 2 };

describe("runner scope", () => {
  it("parses output keys back into job, variation and attempt, and nothing else", () => {
    expect(parseOutputKey(outputKey("j1", "v1", 12))).toEqual({ jobId: "j1", variationId: "v1", attempt: 12 });
    // A variation's still is attempt-scoped like its output.
    expect(parseOutputKey(variationThumbnailKey("j1", "v1", 3))).toEqual({ jobId: "j1", variationId: "v1", attempt: 3 });
    for (const key of ["outputs/j1/v1.mp4", "outputs/j1/v1.a0.mp4", "outputs/j1/x/v1.a1.mp4", "thumbs/j1.jpg", "outputs/j1/v1.a1.png"]) {
      expect(parseOutputKey(key), key).toBeNull();
    }
  });

  it("lets a variation's still be written only by the attempt holding the lease, and deleted like its output", () => {
    expect(mayWrite(variationThumbnailKey("j1", "v1", 2), ticket, row(), NOW)).toBeNull();
    expect(mayWrite(variationThumbnailKey("j1", "v1", 1), ticket, row(), NOW)).toMatch(/^Key not this attempt's/);
    expect(mayWrite(variationThumbnailKey("j1", "v2", 2), ticket, row(), NOW)).toMatch(/^Key not this attempt's/);
    expect(mayWrite(variationThumbnailKey("j1", "v1", 2), ticket, row({ status: "completed" }), NOW)).toMatch(/^Lease not held/);
    const running = { variation: row(), jobStatus: "processing" as const };
    expect(mayDelete(variationThumbnailKey("j1", "v1", 2), ticket, running)).toBeNull();
    expect(mayDelete(variationThumbnailKey("j1", "v1", 2), { ...ticket, runnerId: "r9" }, running)).toMatch(/only its runner/);
    expect(mayDelete(variationThumbnailKey("j1", "v1", 1), null, running)).toBeNull();
  });

  it("reads a ticket only when all three headers are present and the attempt is a positive integer", () => {
    const headers = (h: Record<string, string>) => (name: string) => h[name];
    const full = { "x-runner-id": "r1", "x-variation-id": "v1", "x-variation-attempt": "2" };
    expect(parseTicket(headers(full))).toEqual(ticket);
    expect(parseTicket(headers({ ...full, "x-variation-attempt": "0" }))).toBeNull();
    expect(parseTicket(headers({ ...full, "x-variation-attempt": "2x" }))).toBeNull();
    expect(parseTicket(headers({ "x-runner-id": "r1", "x-variation-id": "v1" }))).toBeNull();
  });

  it("counts a lease expired less than the grace ago, not one expired longer", () => {
    expect(mayRead("sources/j1/s1", ticket, row({ leaseExpiresAt: NOW - LEASE_GRACE_MS + 1 }), NOW)).toBeNull();
    expect(mayRead("sources/j1/s1", ticket, row({ leaseExpiresAt: NOW - LEASE_GRACE_MS }), NOW)).toMatch(/^Lease not held/);
    expect(mayWrite(outputKey("j1", "v1", 2), ticket, row({ leaseExpiresAt: null }), NOW)).toMatch(/^Lease not held/);
  });

  it("lets a thumbnail through for the row's runner and attempt in any status, while the job has none", () => {
    const thumb = thumbnailKey("j1");
    expect(mayWrite(thumb, ticket, row({ status: "completed", leaseExpiresAt: null }), NOW)).toBeNull();
    expect(mayWrite(thumb, ticket, row({ attempt: 3 }), NOW)).toMatch(/^Lease not held/);
    expect(mayWrite(thumb, ticket, row({ jobThumbnailKey: thumb }), NOW)).toMatch(/already has a thumbnail/);
    expect(mayWrite(thumbnailKey("j2"), ticket, row(), NOW)).toMatch(/^Key not this attempt's/);
  });

  it("protects only the output of an attempt still running when deleting", () => {
    const key = outputKey("j1", "v1", 2);
    expect(mayDelete(key, null, { variation: row(), jobStatus: null })).toMatch(/^No ticket/);
    expect(mayDelete(key, { ...ticket, runnerId: "r2" }, { variation: row(), jobStatus: null })).toMatch(/still running/);
    expect(mayDelete(key, ticket, { variation: row(), jobStatus: null })).toBeNull();
    // Superseded attempt, finished variation, a key naming another job, a variation that is gone: never recordable.
    expect(mayDelete(outputKey("j1", "v1", 1), null, { variation: row(), jobStatus: null })).toBeNull();
    expect(mayDelete(key, null, { variation: row({ status: "cancelled" }), jobStatus: null })).toBeNull();
    expect(mayDelete(outputKey("j9", "v1", 2), null, { variation: row(), jobStatus: null })).toBeNull();
    expect(mayDelete(key, null, { variation: null, jobStatus: null })).toBeNull();
    expect(mayDelete("outputs/j1/odd.mp4", null, { variation: null, jobStatus: "processing" })).toMatch(/still active/);
    expect(mayDelete("outputs/j1/odd.mp4", null, { variation: null, jobStatus: "failed" })).toBeNull();
    expect(mayDelete("thumbs/j1.jpg", ticket, { variation: null, jobStatus: null })).toMatch(/only outputs/);
  });

  it("lets a runner that lost its lease abort its own multipart upload, but not anyone abort a running attempt's", () => {
    const mine = outputKey("j1", "v1", 1);
    const taken = row({ runnerId: "r2", attempt: 2 });
    expect(mayAbort(mine, { ...ticket, attempt: 1 }, taken, { variation: taken, jobStatus: null }, NOW)).toBeNull();
    const running = outputKey("j1", "v1", 2);
    expect(mayAbort(running, { ...ticket, attempt: 1 }, taken, { variation: taken, jobStatus: null }, NOW)).toMatch(/^Lease not held/);
  });

  it("lists a job's outputs only once it is finished or gone", () => {
    expect(mayList(null)).toBeNull();
    expect(mayList("cancelled")).toBeNull();
    expect(mayList("cancelling")).toMatch(/still active/);
  });
});
