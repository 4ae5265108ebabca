import { describe, expect, it } from "vitest";
import { clientAddress, throttleGroup } from "../../../edge/lib/client-address";

const req = (headers: Record<string, string>) => new Request("http://edge.test/api/auth/login", { headers });

describe("clientAddress", () => {
  it("uses CF-Connecting-IP and ignores X-Real-IP / X-Forwarded-For when no proxy is trusted", () => {
    expect(clientAddress(req({ "cf-connecting-ip": "192.0.2.7", "x-real-ip": "203.0.113.1" }))).toBe("192.0.2.7");
    expect(clientAddress(req({ "x-real-ip": "203.0.113.1", "x-forwarded-for": "203.0.113.2" }))).toBeNull();
  });

  it("reads only the configured header behind a trusted proxy, the proxy's own (rightmost) X-Forwarded-For entry", () => {
    expect(clientAddress(req({ "x-real-ip": "203.0.113.1", "cf-connecting-ip": "192.0.2.7" }), "x-real-ip")).toBe("203.0.113.1");
    expect(clientAddress(req({ "x-forwarded-for": "6.6.6.6, 203.0.113.9" }), "x-forwarded-for")).toBe("203.0.113.9");
    expect(clientAddress(req({ "cf-connecting-ip": "192.0.2.7" }), "x-real-ip")).toBeNull();
  });

  it("behind Cloudflare, skips the proxy's own address Cloudflare appended to X-Forwarded-For, so users behind the proxy are not one address", () => {
    const viaCloudflare = (xff: string) => req({ "x-forwarded-for": xff, "cf-connecting-ip": "198.51.100.20" });
    expect(clientAddress(viaCloudflare("6.6.6.6, 203.0.113.9, 198.51.100.20"), "x-forwarded-for")).toBe("203.0.113.9");
    expect(clientAddress(viaCloudflare("203.0.113.10, 198.51.100.20"), "x-forwarded-for")).toBe("203.0.113.10");
    // Nothing before Cloudflare's entry: the proxy's address is all there is.
    expect(clientAddress(viaCloudflare("198.51.100.20"), "x-forwarded-for")).toBe("198.51.100.20");
  });

  it("answers null for a value that is not an IP address", () => {
    expect(clientAddress(req({ "cf-connecting-ip": "unknown" }))).toBeNull();
  });
});

describe("throttleGroup", () => {
  it("keeps IPv4, groups IPv6 by /64 in every spelling, and unwraps IPv4-mapped IPv6", () => {
    expect(throttleGroup("198.51.100.4")).toBe("198.51.100.4");
    expect(throttleGroup("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(throttleGroup("2001:0DB8:0001:0002:ffff:ffff:ffff:ffff")).toBe("2001:db8:1:2::/64");
    expect(throttleGroup("[2001:db8:1:2:3::4]")).toBe("2001:db8:1:2::/64");
    expect(throttleGroup("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(throttleGroup("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(throttleGroup("::")).toBe("0:0:0:0::/64");
  });

  it("rejects malformed addresses", () => {
    for (const bad of ["", "1.2.3", "256.1.1.1", "2001:db8::1::2", "1:2:3:4:5:6:7:8:9", "g::1", "localhost"]) {
      expect(throttleGroup(bad)).toBeNull();
    }
  });
});
