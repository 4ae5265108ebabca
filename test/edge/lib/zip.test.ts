import { describe, expect, it } from "vitest";
import writer from "../../../node_modules/client-zip/package.json";
import { buildManifests, ZIP_LAYOUT } from "../../../edge/lib/zip";
import { zipEtag } from "../../../edge/lib/zip-resume";

describe("the ZIP layout a download's ETag covers", () => {
  it("names the ZIP writer that is installed, so upgrading it changes every ETag and no resume splices two layouts", () => {
    expect(ZIP_LAYOUT.split(";")[0]).toBe(`client-zip@${writer.version}`);
  });

  it("is part of the ETag: the same entries give the same ETag, and it is not the hash of the entries and manifests alone", async () => {
    const job = { id: "job-1", effects: "{}" };
    const a = await zipEtag(job, []);
    expect(await zipEtag(job, [])).toBe(a);
    // What the ETag hashed before the layout was in it: a deploy that changed the container kept this one.
    const withoutLayout = JSON.stringify([[], buildManifests(job, [], []).map((m) => [...m.bytes])]);
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(withoutLayout));
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    expect(a).toMatch(/^"zip-[0-9a-f]{32}"$/);
    expect(a).not.toBe(`"zip-${hex.slice(0, 32)}"`);
  });
});
