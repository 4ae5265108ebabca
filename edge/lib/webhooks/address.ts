/**
 * Which webhook URLs the edge may POST to (SSRF). Production: https only, and the host must not name a private,
 * loopback, link-local, CGNAT, unique-local, multicast, reserved or documentation address, nor a local-only name
 * (localhost, *.local, *.internal, single labels). Checked at creation and again before every attempt.
 *
 * Limit: Workers cannot resolve DNS, so a public-looking name that resolves to a private address is not caught
 * here. Cloudflare's network does not route a Worker's subrequests into private networks, and redirects are never
 * followed (a 3xx counts as a failed attempt), so such a name reaches nothing of ours. Literal addresses are
 * judged after the WHATWG URL parser has canonicalised them (`http://2130706433/`, `0x7f.1` → 127.0.0.1).
 */
export type UrlVerdict = { ok: true; url: string } | { ok: false; code: "invalid_webhook_url" | "webhook_url_not_allowed"; message: string };

export interface AddressPolicy {
  /** WEBHOOKS_ALLOW_LOCAL_HTTP: local development and tests may use http:// and loopback (127.0.0.0/8, ::1, localhost). */
  allowLocalHttp: boolean;
}

export function checkWebhookUrl(raw: string, policy: AddressPolicy): UrlVerdict {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, code: "invalid_webhook_url", message: "url must be an absolute https:// URL" };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { ok: false, code: "invalid_webhook_url", message: "url must be an https:// URL" };
  }
  if (url.username || url.password) {
    return { ok: false, code: "invalid_webhook_url", message: "url must not contain credentials" };
  }
  const host = hostClass(url.hostname);
  const localOk = policy.allowLocalHttp && host === "loopback";
  if (url.protocol === "http:" && !localOk) {
    return { ok: false, code: "webhook_url_not_allowed", message: "url must use https" };
  }
  if (host !== "public" && !localOk) {
    return { ok: false, code: "webhook_url_not_allowed", message: `url points to a ${host} address; webhooks go to public hosts only` };
  }
  // One spelling per endpoint: a fragment is never sent, and a bare `?` asks for nothing. Writing the same endpoint
  // differently must not pass for a new one (a new URL clears the endpoint's failure hold).
  url.hash = "";
  if (url.search === "") url.search = "";
  return { ok: true, url: url.toString() };
}

export type HostClass = "public" | "loopback" | "private" | "link-local" | "reserved" | "local-name";

/** Classifies a URL hostname (as `URL.hostname` gives it: IPv6 in brackets, IPv4 canonical dotted decimal). */
export function hostClass(hostname: string): HostClass {
  // Any number of trailing dots names the same host (`localhost..`, `10.0.0.1..`: the URL parser keeps them and
  // only turns a single trailing dot of an address into the address), so all of them go before judging.
  const h = hostname.toLowerCase().replace(/\.+$/, "");
  if (h.startsWith("[") && h.endsWith("]")) return ipv6Class(h.slice(1, -1));
  // An empty label inside the name is no DNS name at all: nothing public is reached that way.
  if (h === "" || h.includes("..")) return "reserved";
  const v4 = parseIpv4(h);
  if (v4) return ipv4Class(v4);
  if (h === "localhost" || h.endsWith(".localhost")) return "loopback";
  if (!h.includes(".")) return "local-name";
  if (/\.(local|internal|intranet|lan|home|corp|localdomain|home\.arpa|test|invalid|example|onion)$/.test(h)) return "local-name";
  // A numeric-looking last label the URL parser did not turn into an address is not a public name.
  if (/^\d+$/.test(h.slice(h.lastIndexOf(".") + 1))) return "reserved";
  return "public";
}

function parseIpv4(h: string): number[] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? parts : null;
}

export function ipv4Class([a, b, c]: number[]): HostClass {
  if (a === 127) return "loopback";
  if (a === 10 || (a === 172 && b! >= 16 && b! <= 31) || (a === 192 && b === 168)) return "private";
  if (a === 100 && b! >= 64 && b! <= 127) return "private"; // CGNAT 100.64.0.0/10
  if (a === 169 && b === 254) return "link-local";
  if (a === 0) return "reserved";
  if (a === 192 && b === 0 && (c === 0 || c === 2)) return "reserved"; // IETF protocol assignments, TEST-NET-1
  if (a === 198 && (b === 18 || b === 19)) return "reserved"; // benchmarking
  if ((a === 198 && b === 51 && c === 100) || (a === 203 && b === 0 && c === 113)) return "reserved"; // TEST-NET-2/3
  if (a! >= 224) return "reserved"; // multicast, 240/4, broadcast
  return "public";
}

function parseIpv6(text: string): number[] | null {
  let s = text;
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(":");
  if (s.slice(lastColon + 1).includes(".")) {
    const v4 = parseIpv4(s.slice(lastColon + 1));
    if (!v4) return null;
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    s = s.slice(0, lastColon + 1) + "0:0";
    tail.length = 2;
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const read = (part: string) => (part === "" ? [] : part.split(":").map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? parseInt(g, 16) : NaN)));
  const head = read(halves[0]!);
  const rest = halves.length === 2 ? read(halves[1]!) : [];
  const fill = halves.length === 2 ? 8 - head.length - rest.length : 0;
  const groups = [...head, ...Array(Math.max(fill, 0)).fill(0), ...rest];
  if (groups.length !== 8 || groups.some((g) => Number.isNaN(g))) return null;
  if (tail.length === 2) groups.splice(6, 2, tail[0]!, tail[1]!);
  return groups;
}

export function ipv6Class(text: string): HostClass {
  const g = parseIpv6(text);
  if (!g) return "reserved";
  const allZero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (allZero(0, 7) && g[7] === 1) return "loopback";
  if (allZero(0, 8)) return "reserved";
  // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96): refused whatever they embed,
  // so an IPv4 target can never be smuggled in through IPv6 notation.
  if (allZero(0, 5) && g[5] === 0xffff) return "reserved";
  if (allZero(0, 6)) return "reserved";
  if (g[0] === 0x64 && g[1] === 0xff9b) return "reserved";
  if ((g[0]! & 0xfe00) === 0xfc00) return "private"; // unique local fc00::/7
  if ((g[0]! & 0xffc0) === 0xfe80) return "link-local";
  if ((g[0]! & 0xffc0) === 0xfec0) return "private"; // site-local (deprecated)
  if ((g[0]! & 0xff00) === 0xff00) return "reserved"; // multicast
  if (g[0] === 0x2001 && g[1] === 0x0db8) return "reserved"; // documentation
  if (g[0] === 0x2002 || (g[0] === 0x2001 && g[1] === 0)) return "reserved"; // 6to4, Teredo: embed IPv4
  if ((g[0]! & 0xe000) !== 0x2000) return "reserved"; // only 2000::/3 is global unicast
  return "public";
}
