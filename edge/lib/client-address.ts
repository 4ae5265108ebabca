/**
 * The client address the login throttle keys on. Only an address the platform vouches for counts: Cloudflare sets
 * `CF-Connecting-IP` and clients cannot forge it; `X-Real-IP` / `X-Forwarded-For` are client-settable unless a
 * proxy we run overwrites them, so they are read only when `TRUSTED_PROXY` names that header. No address → null
 * (never a shared "unknown" key, which would let anyone throttle everyone).
 */
export function clientAddress(req: Request, trustedProxy?: string): string | null {
  const header = trustedProxy ?? "cf-connecting-ip";
  const raw = req.headers.get(header);
  if (!raw) return null;
  if (header !== "x-forwarded-for") return throttleGroup(raw.trim());
  // A trusted proxy appends the peer it saw to X-Forwarded-For; entries to its left came from the client. Cloudflare,
  // between that proxy and the Worker, appends the proxy's own address (its CF-Connecting-IP) after it: read as the
  // client, that put every user behind one address, and 20 wrong logins locked everyone's sign-in.
  const entries = raw.split(",").map((e) => e.trim());
  const connecting = req.headers.get("cf-connecting-ip")?.trim();
  if (entries.length > 1 && connecting && entries.at(-1) === connecting) entries.pop();
  return throttleGroup(entries.at(-1)!);
}

/**
 * IPv4 as is; IPv6 by its /64 (one subscriber usually holds a whole /64, so per-address limits would be
 * meaningless per /128); IPv4-mapped IPv6 as the IPv4 address. Anything unparsable → null.
 */
export function throttleGroup(address: string): string | null {
  const a = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (isIpv4(a)) return a;
  const groups = ipv6Groups(a);
  if (!groups) return null;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 255, groups[7]! >> 8, groups[7]! & 255].join(".");
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`;
}

function isIpv4(a: string): boolean {
  const parts = a.split(".");
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

function ipv6Groups(a: string): number[] | null {
  if (!/^[0-9a-fA-F:.]+$/.test(a)) return null;
  let tail: number[] = [];
  let head = a;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (v4) {
    if (!isIpv4(v4[1]!)) return null;
    const [b0, b1, b2, b3] = v4[1]!.split(".").map(Number) as [number, number, number, number];
    tail = [(b0 << 8) | b1, (b2 << 8) | b3];
    head = a.slice(0, -v4[1]!.length);
    if (head.endsWith(":") && !head.endsWith("::")) head = head.slice(0, -1);
  }
  const halves = head.split("::");
  if (halves.length > 2) return null;
  const parse = (s: string) => (s === "" ? [] : s.split(":"));
  const left = parse(halves[0]!);
  const right = halves.length === 2 ? parse(halves[1]!) : [];
  if ([...left, ...right].some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  const known = left.length + right.length + tail.length;
  if (halves.length === 1 ? known !== 8 : known > 7) return null;
  const zeros = new Array<number>(8 - known).fill(0);
  return [...left.map((g) => parseInt(g, 16)), ...zeros, ...right.map((g) => parseInt(g, 16)), ...tail];
}
