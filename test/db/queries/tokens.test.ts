import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../../db/ids";
import { API_TOKENS_PER_USER, createApiToken, listApiTokens } from "../../../db/queries/tokens";
import { createUser } from "../../../db/queries/users";
import { startTestLibsql, type TestLibsqlServer } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

let server: TestLibsqlServer;
beforeAll(async () => {
  server = await startTestLibsql();
});
afterAll(() => server.close());

describe("API tokens", () => {
  it(`refuses a token past ${API_TOKENS_PER_USER} per account with 409 too_many_tokens, also when created in parallel, and leaves other accounts alone`, async () => {
    const { db } = await freshDb(server, "token_limit");
    const make = async () => (await createUser(db, { email: `t-${newId()}@test.example`, password: "pw-for-tokens", role: "user" })).id;
    const [userId, other] = [await make(), await make()];
    const now = Date.now();
    const results = await Promise.allSettled(
      Array.from({ length: API_TOKENS_PER_USER + 5 }, (_, i) => createApiToken(db, { userId, name: `t${i}` }, now)),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(API_TOKENS_PER_USER);
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(refused).toHaveLength(5);
    for (const r of refused) expect(r.reason).toMatchObject({ status: 409, code: "too_many_tokens" });
    expect(await listApiTokens(db, userId)).toHaveLength(API_TOKENS_PER_USER);
    await createApiToken(db, { userId: other, name: "mine" }, now);
  });
});
