/**
 * PBKDF2-SHA256 through WebCrypto (same code in workerd and Node). Cloudflare's production runtime refuses more
 * than 100,000 iterations (local workerd does not enforce it: 600,000 measured 91 ms there, 100,000 15 ms; see
 * docs/api.md), so that is the count, and an optional pepper (PASSWORD_PEPPER, a secret kept out of the database)
 * makes a stolen database alone useless for offline guessing. The stored string names the scheme and the count,
 * so either can change later: a login with an older hash rehashes it (`needsRehash`).
 */
export const PBKDF2_ITERATIONS = 100_000;
/** A stored hash asking for more than this is refused rather than run (a crafted row must not pin the CPU). */
const MAX_ITERATIONS = 1_000_000;
export const MIN_PASSWORD_LENGTH = 12;

const PLAIN = "pbkdf2-sha256";
const PEPPERED = "pbkdf2-sha256-hmac";

const enc = new TextEncoder();

function toB64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}
function fromB64(s: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(s), (ch) => ch.charCodeAt(0));
}

/** With a pepper the PBKDF2 input is HMAC-SHA256(pepper, password), so the hash cannot be checked without it. */
async function secretOf(password: string, pepper: string | undefined): Promise<Uint8Array<ArrayBuffer>> {
  if (!pepper) return new Uint8Array(enc.encode(password));
  const key = await crypto.subtle.importKey("raw", enc.encode(pepper), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(password)));
}

async function derive(secret: Uint8Array<ArrayBuffer>, salt: Uint8Array<ArrayBuffer>, iterations: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", secret, "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, key, 256);
  return new Uint8Array(bits);
}

/** Returns `<scheme>$<iterations>$<salt b64>$<hash b64>` with a fresh 16-byte salt. */
export async function hashPassword(password: string, pepper?: string): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const hash = await derive(await secretOf(password, pepper), salt, PBKDF2_ITERATIONS);
  return `${pepper ? PEPPERED : PLAIN}$${PBKDF2_ITERATIONS}$${toB64(salt)}$${toB64(hash)}`;
}

/** Constant-time comparison of a password against a stored hash (of either scheme). */
export async function verifyPassword(password: string, stored: string, pepper?: string): Promise<boolean> {
  const [scheme, iter, salt, hash] = stored.split("$");
  const iterations = Number(iter);
  if (!salt || !hash || !Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) return false;
  if (scheme !== PLAIN && !(scheme === PEPPERED && pepper)) return false;
  const expected = fromB64(hash);
  const actual = await derive(await secretOf(password, scheme === PEPPERED ? pepper : undefined), fromB64(salt), iterations);
  if (actual.length !== expected.length) return false;
  let diff = 0;
  for (let i = 0; i < actual.length; i++) diff |= actual[i]! ^ expected[i]!;
  return diff === 0;
}

/** True when a verified hash is weaker than what hashPassword makes now (fewer iterations, or no pepper). */
export function needsRehash(stored: string, pepper?: string): boolean {
  const [scheme, iter] = stored.split("$");
  return Number(iter) < PBKDF2_ITERATIONS || (!!pepper && scheme !== PEPPERED);
}

/**
 * Passwords that pass the length rule but are among the first guesses of any attacker (and their simple
 * variants). Small on purpose: it catches the obvious, it is not a breach corpus.
 */
const COMMON = new Set([
  "password1234", "password12345", "password123456", "passwordpassword", "123456789012", "1234567890123",
  "12345678901234", "qwertyuiopas", "qwerty123456", "qwertyuiop123", "1q2w3e4r5t6y", "1qaz2wsx3edc",
  "iloveyou1234", "letmein12345", "welcome12345", "administrator", "admin1234567", "changeme1234",
  "abc123456789", "abcdefghijkl", "aaaaaaaaaaaa", "111111111111", "000000000000", "monkey123456",
  "dragon123456", "football1234", "baseball1234", "sunshine1234", "princess1234", "trustno11234",
  "superman1234", "starwars1234", "correcthorse", "videorefresher", "passw0rd1234", "p@ssw0rd1234",
  "p@ssword1234", "zaq12wsxcde3", "asdfghjkl123", "qazwsxedcrfv", "michael12345", "shadow123456",
]);

/** Why a new password is refused, or null. Applied to new passwords only; existing ones keep working. */
export function passwordProblem(password: string): string | null {
  if (password.length < MIN_PASSWORD_LENGTH) return `at least ${MIN_PASSWORD_LENGTH} characters`;
  const folded = password.toLowerCase();
  if (COMMON.has(folded) || /^(.)\1+$/.test(password) || /^(.{1,4})\1+$/.test(folded)) {
    return "too common or too repetitive; choose something harder to guess";
  }
  return null;
}

/** A readable random password for seeded accounts (≈ 120 bits). */
export function generatePassword(): string {
  const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return [...bytes].map((b) => alphabet[b % alphabet.length]).join("").replace(/(.{6})(?!$)/g, "$1-");
}
