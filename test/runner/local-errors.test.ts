import { describe, expect, it } from "vitest";
import { asLocalError, ffmpegLocalError, LocalError, scrubPaths } from "../../runner/local-errors";

describe("local errors", () => {
  it("names the runner's own disk and permission failures in words a user can read, without paths", () => {
    const enospc = Object.assign(new Error("ENOSPC: no space left on device, write '/tmp/video-refresher/runner-x/j/src-1.part'"), { code: "ENOSPC" });
    const local = asLocalError(enospc, "source download failed");
    expect(local).toBeInstanceOf(LocalError);
    expect(local!.message).toBe("source download failed: the runner ran out of disk space");
    expect(local!.diskFull).toBe(true);
    expect(asLocalError(Object.assign(new Error("x"), { code: "EACCES" }), "upload failed")!.diskFull).toBe(false);
    expect(asLocalError(Object.assign(new Error("x"), { code: "ECONNRESET" }), "download")).toBeNull();
  });

  it("recognises FFmpeg's own words for a full disk", () => {
    const stderr = "[mp4 @ 0x55] Error writing trailer of /tmp/video-refresher/runner-x/j/v.a1.part.mp4: No space left on device";
    expect(ffmpegLocalError(stderr, "encoding failed")?.message).toBe("encoding failed: the runner ran out of disk space");
    expect(ffmpegLocalError("Invalid data found when processing input", "encoding failed")).toBeNull();
  });

  it("recognises a thread FFmpeg could not start (its uid's process limit) as the runner's trouble", () => {
    const stderr = "Error while opening decoder for input stream #0:0 : Resource temporarily unavailable";
    expect(ffmpegLocalError(stderr, "encoding failed")).toMatchObject({ code: "EAGAIN", diskFull: false, detail: stderr });
    // An input can make FFmpeg quote a name with those words in it (an ffconcat entry): that is not this runner's.
    expect(ffmpegLocalError("[concat @ 0x5] Unsafe file name 'x: Resource temporarily unavailable'", "checking the video failed")).toBeNull();
    // A check of the source reads only: a full disk in its stderr can only be quoted from the input.
    expect(ffmpegLocalError("x.mp4: No space left on device", "checking the video failed", ["EAGAIN"])).toBeNull();
  });

  it("recognises FFmpeg's full file table as the runner's trouble (retried elsewhere), not a name an input quotes", () => {
    const full = "/work/runner-a/j/v.a1.part.mp4: Too many open files";
    expect(ffmpegLocalError(`x\n${full}\n`, "encoding failed")).toMatchObject({ code: "EMFILE", detail: full, message: "encoding failed: the runner has too many open files" });
    expect(ffmpegLocalError("Impossible to open 'x: Too many open files'", "encoding failed")).toBeNull();
  });

  it("removes absolute paths from reasons shown to users", () => {
    expect(scrubPaths("/tmp/video-refresher/runner-x/j/src-1: Invalid data found")).toBe("src-1: Invalid data found");
    expect(scrubPaths("ffmpeg exited with code 1: Error opening output /work/dir/out.mp4.")).toBe("ffmpeg exited with code 1: Error opening output out.mp4.");
    expect(scrubPaths("all 3 variations failed")).toBe("all 3 variations failed");
    expect(scrubPaths("source download failed: download sources/j1/s1: edge unreachable (fetch failed)")).toBe(
      "source download failed: download the stored file: edge unreachable (fetch failed)",
    );
    expect(scrubPaths("upload failed: http://10.0.0.5:8787/internal/objects/x: HTTP 500")).toBe("upload failed: the service: HTTP 500");
    expect(scrubPaths("contrast/brightness out of range")).toBe("contrast/brightness out of range");
  });

  it("removes the runner's work directory even when its name has a space, which the path pattern stops at", () => {
    const dir = "/srv/video refresher";
    expect(scrubPaths("not a decodable video: /srv/video refresher/runner-h-1/j1/src-1: Invalid data", [dir])).toBe(
      "not a decodable video: src-1: Invalid data",
    );
    expect(scrubPaths("Error opening output /srv/video refresher/runner-h-1/j1/v.part.mp4.", [`${dir}/`])).toBe("Error opening output v.part.mp4.");
  });
});
