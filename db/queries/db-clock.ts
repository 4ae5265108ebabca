import { sql } from "drizzle-orm";
import type { Db } from "../client";

/**
 * The database's own clock in Unix milliseconds. Leases are written and compared with the runners' clocks
 * (`now` passed in by each caller), so a runner whose clock is far off takes over live leases or loses its own;
 * runners read this clock to notice that (runner/clock.ts). julianday('now') has millisecond resolution.
 */
export const DB_NOW_MS = sql<number>`CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)`;

export function dbClockStatement(db: Db) {
  return db.all<{ dbNow: number }>(sql`SELECT ${DB_NOW_MS} AS dbNow`);
}

/** The database's clock, read in one round trip. */
export async function readDbClock(db: Db): Promise<number> {
  const [row] = await dbClockStatement(db);
  return Number(row!.dbNow);
}
