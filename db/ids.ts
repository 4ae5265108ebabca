const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/** 20-character random id (100 bits, Crockford base32 lowercase): URL-safe, no lookalike characters. */
export function newId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(20));
  let out = "";
  for (const b of bytes) out += ALPHABET[b & 31];
  return out;
}

/** A random secret token (256 bits, base64url) for sessions and API tokens. */
export function newToken(prefix = ""): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return prefix + btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Lowercase hex of bytes (a digest). */
export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** SHA-256 hex of a token: only this is stored, so a database leak does not leak live credentials. */
export async function hashToken(token: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token)));
}
