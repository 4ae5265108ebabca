import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/**
 * Where the kernel picks ports for outgoing connections (and for listen(0)). A port handed out from inside that
 * range can be taken by some process's outgoing connection between our check and the server's bind, so test ports
 * come from below it, where only another explicit bind can take them.
 */
function ephemeralLow(): number {
  try {
    return Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || 32_768;
  } catch {
    return 32_768;
  }
}

const LOWEST = 20_000;

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
  const highest = Math.max(LOWEST + 1_000, ephemeralLow()) - count;
  for (let tries = 0; tries < 100; tries++) {
    const base = LOWEST + Math.floor(Math.random() * (highest - LOWEST));
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = await canListen(base + i);
    if (ok) return base;
  }
  throw new Error(`no run of ${count} free ports found between ${LOWEST} and ${highest + count}`);
}

/** A TCP port that was free a moment ago on 127.0.0.1, outside the ephemeral range. */
export const freePort = (): Promise<number> => freePortRun(1);
