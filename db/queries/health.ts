import { sql } from "drizzle-orm";
import type { Db } from "../client";

/** One real round trip to the database. */
export async function pingDb(db: Db): Promise<void> {
  await db.run(sql`select 1`);
}
