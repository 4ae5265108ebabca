import { createClient, type Client } from "@libsql/client/web";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql/web";
import * as schema from "./schema";

export type Db = LibSQLDatabase<typeof schema> & { $client: Client };

/** Opens a drizzle database over the libSQL HTTP protocol (local server, sqld or Turso). Works in Node and workerd. */
export function createDb(url: string, authToken?: string): Db {
  const client = createClient({ url, authToken: authToken || undefined, intMode: "number" });
  return drizzle(client, { schema, casing: "snake_case" }) as Db;
}
