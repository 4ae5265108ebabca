import { describe, expect, it } from "vitest";
import {
  canAddVariations,
  canDownloadZip,
  canRetryFailed,
  expiryLabel,
  fileNamesSummary,
  fileStatus,
  isCancellable,
  isPausable,
  isResumable,
  percent,
  queueLabel,
  safeNext,
  statusLabel,
  statusTone,
  variationFileName,
} from "../../../edge/ui/shared/format";

describe("status presentation", () => {
  it("labels a cancelled job with its completed count, e.g. Cancelled (3/10)", () => {
    expect(statusLabel({ status: "cancelled", completedVariations: 3, totalVariations: 10 })).toBe("Cancelled (3/10)");
    expect(statusLabel({ status: "cancelling", completedVariations: 1, totalVariations: 4 })).toBe("Cancelling…");
  });

  it("colours cancelled neutral gray, failed red and completed green", () => {
    expect(statusTone("cancelled")).toBe("neutral");
    expect(statusTone("cancelling")).toBe("neutral");
    expect(statusTone("failed")).toBe("danger");
    expect(statusTone("completed")).toBe("success");
    expect(statusTone("processing")).toBe("info");
  });

  it("offers Cancel only on queued, processing and paused jobs", () => {
    expect(["queued", "processing", "paused"].every((s) => isCancellable(s as never))).toBe(true);
    expect(["cancelling", "completed", "failed", "cancelled"].some((s) => isCancellable(s as never))).toBe(false);
  });

  it("labels a paused job Paused (k/N) in neutral gray", () => {
    expect(statusLabel({ status: "paused", completedVariations: 2, totalVariations: 5 })).toBe("Paused (2/5)");
    expect(statusTone("paused")).toBe("neutral");
  });

  it("offers Pause on queued/processing jobs, Resume on paused ones and on cancelled ones with cancelled or failed variations until they expire", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    expect(["queued", "processing"].every((s) => isPausable(s as never))).toBe(true);
    expect(["paused", "cancelling", "completed", "failed", "cancelled"].some((s) => isPausable(s as never))).toBe(false);
    expect(isResumable({ status: "paused", cancelledVariations: 0, failedVariations: 0, expiresAt: null }, now)).toBe(true);
    expect(isResumable({ status: "cancelled", cancelledVariations: 2, failedVariations: 0, expiresAt: "2030-01-02T00:00:00Z" }, now)).toBe(true);
    expect(isResumable({ status: "cancelled", cancelledVariations: 0, failedVariations: 1, expiresAt: "2030-01-02T00:00:00Z" }, now)).toBe(true);
    expect(isResumable({ status: "cancelled", cancelledVariations: 0, failedVariations: 0, expiresAt: "2030-01-02T00:00:00Z" }, now)).toBe(false);
    expect(isResumable({ status: "cancelled", cancelledVariations: 2, failedVariations: 0, expiresAt: "2029-12-31T00:00:00Z" }, now)).toBe(false);
  });

  it("offers Retry failed on finished jobs with failed variations and More variations on any finished job before expiry", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    const later = "2030-01-02T00:00:00Z";
    expect(canRetryFailed({ status: "completed", failedVariations: 1, expiresAt: later }, now)).toBe(true);
    expect(canRetryFailed({ status: "completed", failedVariations: 0, expiresAt: later }, now)).toBe(false);
    expect(canRetryFailed({ status: "cancelled", failedVariations: 1, expiresAt: later }, now)).toBe(false);
    expect(canAddVariations({ status: "cancelled", expiresAt: later }, now)).toBe(true);
    expect(canAddVariations({ status: "paused", expiresAt: null }, now)).toBe(false);
    expect(canAddVariations({ status: "completed", expiresAt: "2029-12-31T00:00:00Z" }, now)).toBe(false);
  });

  it("offers the ZIP for completed or cancelled jobs with at least one finished variation", () => {
    const base = { downloadUrl: "/api/jobs/j/download" };
    expect(canDownloadZip({ ...base, status: "cancelled", completedVariations: 2 })).toBe(true);
    expect(canDownloadZip({ ...base, status: "cancelled", completedVariations: 0 })).toBe(false);
    expect(canDownloadZip({ ...base, status: "processing", completedVariations: 2 })).toBe(false);
    expect(canDownloadZip({ status: "completed", completedVariations: 2, downloadUrl: null })).toBe(false);
  });
});

describe("file badge", () => {
  const v = (status: string) => ({ index: 1, status, progress: 0, params: null, outputId: null, outputSize: null, error: null }) as never;

  it("reads Cancelled (k/N) for a file whose remaining variations were cancelled, like the job badge", () => {
    const file = { status: "completed", completedVariations: 2, variations: [v("completed"), v("completed"), v("cancelled"), v("cancelled")] };
    expect(fileStatus(file, 4)).toEqual({ label: "Cancelled (2/4)", tone: "neutral" });
  });

  it("keeps the API's status while work is still going on or when the file failed", () => {
    expect(fileStatus({ status: "processing", completedVariations: 1, variations: [v("completed"), v("running")] }, 2)).toEqual({ label: "Processing", tone: "info" });
    expect(fileStatus({ status: "failed", completedVariations: 0, variations: [v("failed"), v("cancelled")] }, 2)).toEqual({ label: "Failed", tone: "danger" });
    expect(fileStatus({ status: "completed", completedVariations: 2, variations: [v("completed"), v("completed")] }, 2)).toEqual({ label: "Completed", tone: "success" });
  });
});

describe("text helpers", () => {
  it("lists the first three file names and counts the rest", () => {
    expect(fileNamesSummary(["a.mp4"])).toBe("a.mp4");
    expect(fileNamesSummary(["a", "b", "c", "d", "e"])).toBe("a, b, c +2 more");
  });

  it("counts down to expiry and says Expired once past it", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(expiryLabel("2026-01-01T23:12:30Z", now)).toBe("Expires in 23 h 12 min");
    expect(expiryLabel("2026-01-01T00:00:20Z", now)).toBe("Expires in less than a minute");
    expect(expiryLabel("2025-12-31T00:00:00Z", now)).toBe("Expired");
    expect(expiryLabel(null, now)).toBeNull();
  });

  it("clamps progress into 0..100", () => {
    expect(percent(-5)).toBe(0);
    expect(percent(140)).toBe(100);
    expect(percent(42.4)).toBe(42);
    expect(percent(Number.NaN)).toBe(0);
  });

  it("names single downloads like the ZIP entries", () => {
    expect(variationFileName("My clip.final.mov", 3)).toBe("My_clip.final_var03.mp4");
    expect(variationFileName("x".repeat(400) + ".mov", 3)).toBe("x".repeat(200) + "_var03.mp4");
  });
});

describe("queue and time left", () => {
  it("says how much is ahead of a queued job and about how long until it is done", () => {
    expect(queueLabel({ status: "queued", queuePosition: 3, etaSeconds: 250 })).toBe("3 ahead in the queue · about 4 min left");
    expect(queueLabel({ status: "queued", queuePosition: 0, etaSeconds: 30 })).toBe("next in the queue · less than a minute left");
    expect(queueLabel({ status: "queued", queuePosition: 12, etaSeconds: null })).toBe("12 ahead in the queue");
    expect(queueLabel({ status: "processing", queuePosition: null, etaSeconds: 3900 })).toBe("about 1 h 5 min left");
  });

  it("says nothing for finished or cancelling jobs, or when there is no estimate", () => {
    expect(queueLabel({ status: "completed", queuePosition: null, etaSeconds: null })).toBeNull();
    expect(queueLabel({ status: "cancelling", queuePosition: null, etaSeconds: 40 })).toBeNull();
    expect(queueLabel({ status: "processing", queuePosition: null, etaSeconds: null })).toBeNull();
  });
});

describe("safeNext", () => {
  it("returns to same-origin paths after login", () => {
    expect(safeNext("/jobs/abc?x=1")).toBe("/jobs/abc?x=1");
  });

  it("refuses anything that would leave the site or loop back to login", () => {
    for (const bad of ["//evil.example/", "/\\evil.example", "https://evil.example", "javascript:alert(1)", "/login?next=/", "", null]) {
      expect(safeNext(bad)).toBe("/jobs");
    }
  });
});
