import { describe, expect, it } from "vitest";
import { checkWebhookUrl, hostClass } from "../../../../edge/lib/webhooks/address";

const prod = { allowLocalHttp: false };
const local = { allowLocalHttp: true };
const hostOf = (url: string) => hostClass(new URL(url).hostname);

describe("webhook URL policy (SSRF)", () => {
  it("accepts https on public names and public addresses", () => {
    for (const url of ["https://hooks.example.com/x", "https://8.8.8.8/", "https://[2606:4700:4700::1111]/hook", "https://a.b.co:8443/p?q=1"]) {
      expect(checkWebhookUrl(url, prod), url).toMatchObject({ ok: true });
    }
  });

  it("refuses plain http in production", () => {
    expect(checkWebhookUrl("http://hooks.example.com/x", prod)).toMatchObject({ ok: false, code: "webhook_url_not_allowed" });
  });

  it("refuses loopback, private, CGNAT, link-local and reserved IPv4, however the address is spelled", () => {
    const urls = [
      "https://127.0.0.1/", "https://127.9.9.9/", "https://2130706433/", "https://0x7f.1/", "https://0177.0.0.1/",
      "https://10.1.2.3/", "https://172.16.0.1/", "https://172.31.255.255/", "https://192.168.1.1/",
      "https://100.64.0.1/", "https://100.127.255.255/", "https://169.254.169.254/latest/meta-data",
      "https://0.0.0.0/", "https://224.0.0.1/", "https://255.255.255.255/", "https://192.0.2.1/", "https://198.18.0.1/",
    ];
    for (const url of urls) expect(checkWebhookUrl(url, prod), url).toMatchObject({ ok: false, code: "webhook_url_not_allowed" });
  });

  it("keeps the public neighbours of private ranges", () => {
    for (const url of ["https://172.15.255.255/", "https://172.32.0.1/", "https://100.63.255.255/", "https://100.128.0.1/", "https://11.0.0.1/"]) {
      expect(hostOf(url), url).toBe("public");
    }
  });

  it("refuses loopback, unique-local, link-local, IPv4-mapped and other non-global IPv6", () => {
    const urls = [
      "https://[::1]/", "https://[::]/", "https://[fc00::1]/", "https://[fd12:3456::1]/", "https://[fe80::1]/",
      "https://[::ffff:127.0.0.1]/", "https://[::ffff:8.8.8.8]/", "https://[64:ff9b::a00:1]/", "https://[ff02::1]/",
      "https://[2001:db8::1]/", "https://[2002:a00:1::]/", "https://[::127.0.0.1]/",
    ];
    for (const url of urls) expect(checkWebhookUrl(url, prod), url).toMatchObject({ ok: false, code: "webhook_url_not_allowed" });
  });

  it("refuses local-only names", () => {
    for (const url of ["https://localhost/", "https://LOCALHOST./", "https://api.localhost/", "https://printer.local/", "https://db.internal/", "https://intranet/", "https://x.home.arpa/"]) {
      expect(checkWebhookUrl(url, prod), url).toMatchObject({ ok: false, code: "webhook_url_not_allowed" });
    }
  });

  it("refuses what is not an http(s) URL, and credentials in it", () => {
    expect(checkWebhookUrl("not a url", prod)).toMatchObject({ ok: false, code: "invalid_webhook_url" });
    expect(checkWebhookUrl("ftp://example.com/", prod)).toMatchObject({ ok: false, code: "invalid_webhook_url" });
    expect(checkWebhookUrl("https://user:pw@example.com/", prod)).toMatchObject({ ok: false, code: "invalid_webhook_url" });
  });

  it("with WEBHOOKS_ALLOW_LOCAL_HTTP allows http and loopback only, never other private addresses", () => {
    for (const url of ["http://127.0.0.1:9999/hook", "http://localhost:1234/", "http://[::1]:80/", "https://127.0.0.1/"]) {
      expect(checkWebhookUrl(url, local), url).toMatchObject({ ok: true });
    }
    for (const url of ["http://10.0.0.1/", "https://192.168.1.1/", "http://169.254.169.254/", "http://example.com/"]) {
      expect(checkWebhookUrl(url, local), url).toMatchObject({ ok: false });
    }
  });
});
