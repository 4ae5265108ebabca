import { describe, expect, it } from "vitest";
import { parseRange } from "../../../edge/lib/range";
import { sniffVideoType } from "../../../edge/lib/sniff";
import { partSizeFor } from "../../../edge/lib/storage";
import { nameEntries, sanitizeBaseName } from "../../../edge/lib/zip";

const bytes = (...b: (number | string)[]) =>
  new Uint8Array(b.flatMap((x) => (typeof x === "string" ? [...x].map((c) => c.charCodeAt(0)) : [x])));

describe("sniffVideoType", () => {
  it("recognises ISO-BMFF by ftyp at offset 4 and Matroska/WebM by the EBML magic", () => {
    expect(sniffVideoType(bytes(0, 0, 0, 0x20, "ftypisom"))).toBe("video/mp4");
    expect(sniffVideoType(bytes(0, 0, 0, 0x14, "ftypqt  "))).toBe("video/quicktime");
    expect(sniffVideoType(bytes(0, 0, 0, 0x1c, "ftypM4V "))).toBe("video/x-m4v");
    expect(sniffVideoType(bytes(0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x82, 0x84, "webm"))).toBe("video/webm");
    expect(sniffVideoType(bytes(0x1a, 0x45, 0xdf, 0xa3, 0xa3, 0x42, 0x82, 0x88, "matroska"))).toBe("video/x-matroska");
  });

  it("rejects everything else, including truncated headers", () => {
    expect(sniffVideoType(bytes(0x89, "PNG\r\n", 0x1a, "\n", 0, 0, 0, 0))).toBeNull();
    expect(sniffVideoType(bytes("GIF89a......"))).toBeNull();
    expect(sniffVideoType(bytes(0, 0, 0, 0x20, "ftyp"))).toBeNull();
    expect(sniffVideoType(bytes(0x1a, 0x45))).toBeNull();
  });
});

describe("ZIP entry names", () => {
  it("sanitises base names: no extension, separators, reserved or control characters", () => {
    expect(sanitizeBaseName("Beach Day.mp4")).toBe("Beach Day");
    expect(sanitizeBaseName("../../etc/passwd.mov")).toBe("passwd");
    expect(sanitizeBaseName("C:\\clips\\a<b>|c?.webm")).toBe("a_b_c_");
    expect(sanitizeBaseName("tab\there.mkv")).toBe("tab_here");
    expect(sanitizeBaseName("...")).toBe("video");
    expect(sanitizeBaseName("CON.mp4")).toBe("_CON");
    expect([...sanitizeBaseName("é".repeat(300) + ".mp4")]).toHaveLength(100);
  });

  it("keeps every entry's folder and file name within 255 bytes, so long CJK or emoji names still extract", () => {
    const e = (sourceId: string, sourceName: string, sourcePosition: number, position: number) => ({
      sourceId, sourceName, sourcePosition, position, key: "k", size: 1, finishedAt: 0,
    });
    const names = ["日本語のタイトル".repeat(20) + ".mp4", "🎬".repeat(120) + ".mov", "a".repeat(99) + "日本" + ".mp4"];
    const named = nameEntries(names.flatMap((n, i) => [e(`s${i}`, n, i, 1), e(`s${i}b`, n, i + 10, 100)]));
    const utf8 = new TextEncoder();
    for (const { name } of named) for (const part of name.split("/")) expect(utf8.encode(part).length).toBeLessThanOrEqual(255);
    // Cut on a character, never inside one.
    expect(named[0]!.name).toMatch(/^(日本語のタイトル)+[日本語のタイトル]*\/.*_var01\.mp4$/u);
    expect(named.find((n) => n.sourceId === "s1b")!.name).toMatch(/^(🎬)+-2\/(🎬)+-2_var100\.mp4$/u);
    expect(sanitizeBaseName("a".repeat(99) + "日本.mp4")).toBe("a".repeat(99) + "日");
    expect(sanitizeBaseName("日".repeat(66) + ". x.mp4")).toBe("日".repeat(66));
  });

  it("numbers variations with two digits and suffixes repeated base names -2, -3", () => {
    const e = (sourceId: string, sourceName: string, sourcePosition: number, position: number) => ({
      sourceId, sourceName, sourcePosition, position, key: "k", size: 1, finishedAt: 0,
    });
    const named = nameEntries([
      e("s3", "clip.webm", 3, 1),
      e("s1", "clip.mp4", 1, 12),
      e("s1", "clip.mp4", 1, 2),
      e("s2", "CLIP.mov", 2, 1),
      e("s4", "clip-2.mp4", 4, 1),
    ]);
    expect(named.map((n) => n.name)).toEqual([
      "clip/clip_var02.mp4",
      "clip/clip_var12.mp4",
      "CLIP-2/CLIP-2_var01.mp4",
      "clip-3/clip-3_var01.mp4",
      "clip-2-2/clip-2-2_var01.mp4",
    ]);
  });

  it("never names a folder like a file at the ZIP's root (the manifests), in any case", () => {
    const named = nameEntries([
      { sourceId: "s1", sourceName: "manifest.json.mp4", sourcePosition: 1, position: 1 },
      { sourceId: "s2", sourceName: "Manifest.CSV.mov", sourcePosition: 2, position: 1 },
    ]);
    expect(named.map((n) => n.name)).toEqual(["manifest.json-2/manifest.json-2_var01.mp4", "Manifest.CSV-2/Manifest.CSV-2_var01.mp4"]);
  });
});

describe("parseRange", () => {
  it("handles closed, open and suffix ranges and refuses unsatisfiable ones", () => {
    expect(parseRange(undefined, 100)).toBeNull();
    expect(parseRange("bytes=0-9", 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange("bytes=90-", 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange("bytes=90-500", 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange("bytes=-10", 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange("bytes=-500", 100)).toEqual({ start: 0, end: 99 });
    expect(parseRange("bytes=100-", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=5-1", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=0-1,5-6", 100)).toBeNull();
    expect(parseRange("items=0-1", 100)).toBeNull();
  });
});

describe("partSizeFor", () => {
  it("uses 8 MiB parts, growing only when 10,000 parts would not be enough", () => {
    expect(partSizeFor(1)).toBe(8 * 1024 * 1024);
    expect(partSizeFor(2 * 1024 ** 3)).toBe(8 * 1024 * 1024);
    const huge = 200 * 1024 ** 3;
    expect(Math.ceil(huge / partSizeFor(huge))).toBeLessThanOrEqual(10_000);
  });
});
