import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../client";

/** db.batch for a list whose length is only known at run time (one round trip, one transaction). */
export async function batchOf(db: Db, items: readonly BatchItem<"sqlite">[]): Promise<unknown[]> {
  return (await db.batch(items as unknown as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]])) as unknown as unknown[];
}
