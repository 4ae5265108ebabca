import { describe, expect, it } from "vitest";
import { perFileProgress, rejectReason, sniffVideo, useMultipart, MULTIPART_THRESHOLD_BYTES } from "../../../edge/ui/shared/files";

const mp4Head = new Uint8Array([0, 0, 0, 0x20, 0x66, 0x74, 0x79, 0x70, 0x69, 0x73, 0x6f, 0x6d]);
const mkvHead = new Uint8Array([0x1a, 0x45, 0xdf, 0xa3, 0x01, 0, 0, 0]);
const textHead = new TextEncoder().encode("hello, world\n");

describe("upload file checks", () => {
  it("recognises MP4/MOV by ftyp and WebM/MKV by the EBML magic", () => {
    expect(sniffVideo(mp4Head)).toBe("iso-bmff");
    expect(sniffVideo(mkvHead)).toBe("ebml");
    expect(sniffVideo(textHead)).toBeNull();
  });

  it("refuses a text file with a message that names it and lists the accepted formats", () => {
    expect(rejectReason({ name: "notes.txt", size: 13 }, textHead, 1e9)).toBe(
      "“notes.txt” is not a supported video. Use MP4, MOV, M4V, WebM or MKV videos.",
    );
  });

  it("refuses a text file renamed to .mp4 by its content", () => {
    expect(rejectReason({ name: "fake.mp4", size: 13 }, textHead, 1e9)).toMatch(/“fake\.mp4” does not look like a video file/);
  });

  it("refuses empty and oversized files and accepts real video headers", () => {
    expect(rejectReason({ name: "a.mp4", size: 0 }, mp4Head, 1e9)).toBe("“a.mp4” is empty.");
    expect(rejectReason({ name: "a.mkv", size: 2e9 }, mkvHead, 1e9)).toMatch(/too large/);
    expect(rejectReason({ name: "A.MOV", size: 100 }, mp4Head, 1e9)).toBeNull();
  });

  it("sends big files through the multipart upload API", () => {
    expect(useMultipart([1000, 2000])).toBe(false);
    expect(useMultipart([MULTIPART_THRESHOLD_BYTES + 1])).toBe(true);
    expect(useMultipart([MULTIPART_THRESHOLD_BYTES / 2 + 1, MULTIPART_THRESHOLD_BYTES / 2 + 1])).toBe(true);
  });

  it("splits one request's byte position into per-file progress in body order", () => {
    expect(perFileProgress([100, 300], 0, 420)).toEqual([0, 0]);
    const mid = perFileProgress([100, 300], 210, 420); // half the body = 200 of 400 file bytes
    expect(mid[0]).toBe(100);
    expect(mid[1]).toBeCloseTo(33.33, 1);
    expect(perFileProgress([100, 300], 420, 420)).toEqual([100, 100]);
  });
});
