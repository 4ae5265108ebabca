import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/**
 * Where the kernel picks ports for outgoing connections (and for listen(0)). A port handed out from inside that
 * range can be taken by some process's outgoing connection between our check and the server's bind, so test ports
 * come from below it, where only another explicit bind can take them.
 */
export function ephemeralLow(): number {
  try {
    return Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || 32_768;
  } catch {
    return 32_768;
  }
}

const LOWEST = 20_000;

/**
 * Ports this process already handed out. A port is only checked free, not held, until whatever it is for binds it
 * (a runner's metrics port binds seconds later, after the stack started): without this, the libSQL server of one
 * drill once got the port just handed to its own runner, which then failed with EADDRINUSE.
 */
const handedOut = new Set<number>();

/**
 * The workers of one vitest run (VITEST_POOL_ID 1..n, one parent process) draw from disjoint slices of the range,
 * so two of its stacks starting at the same time cannot pick the same port. Separate runs (`npm test` beside
 * `npm run test:faults` or the bench) are spread by their parent's pid rather than all starting at slice 0. Up to
 * SLICES workers get a slice each; more would share.
 */
const SLICES = 8;
function slice(): { low: number; high: number } {
  const top = Math.max(LOWEST + 8_000, ephemeralLow());
  const width = Math.floor((top - LOWEST) / SLICES);
  const pool = Number(process.env.VITEST_POOL_ID);
  const i = ((Number.isInteger(pool) && pool > 0 ? pool - 1 : 0) + process.ppid) % SLICES;
  return { low: LOWEST + i * width, high: LOWEST + (i + 1) * width };
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/**
 * A base port with `count` consecutive ports that were free a moment ago on 127.0.0.1, outside the ephemeral range
 * (runner i of a stack listens on METRICS_PORT + i, so one free port is not always enough).
 */
export async function freePortRun(count: number): Promise<number> {
  const { low, high } = slice();
  if (count < 1 || count >= high - low) throw new Error(`a run of ${count} ports does not fit ${low}..${high}`);
  for (let tries = 0; tries < 200; tries++) {
    const base = low + Math.floor(Math.random() * (high - count - low));
    const run = Array.from({ length: count }, (_, i) => base + i);
    if (run.some((p) => handedOut.has(p))) continue;
    // Reserved before the first await, so two concurrent calls in this process cannot check the same run.
    for (const p of run) handedOut.add(p);
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = await canListen(run[i]!);
    if (ok) return base;
    for (const p of run) handedOut.delete(p);
  }
  throw new Error(`no run of ${count} free ports found between ${low} and ${high}`);
}

/** A TCP port that was free a moment ago on 127.0.0.1, outside the ephemeral range. */
export const freePort = (): Promise<number> => freePortRun(1);
