import { describe, expect, it } from "vitest";
import { newId } from "../../../db/ids";
import { reissueApiToken, TOKEN_KEY_REPLAY_MS, tokenFingerprint } from "../../../db/queries/reissue-api-token";
import { API_TOKENS_PER_USER, authenticateApiToken, createApiToken, listApiTokens } from "../../../db/queries/tokens";
import { createUser } from "../../../db/queries/users";
import { useTestLibsql } from "../../helpers/libsql";
import { freshDb } from "../../helpers/seed";

const server = useTestLibsql();

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

  it("answers 409 idempotency_key_in_flight to a twin create holding the same key, leaving the first token's secret working", async () => {
    const { db } = await freshDb(server, "token_twin");
    const userId = (await createUser(db, { email: `t-${newId()}@test.example`, password: "pw-for-tokens", role: "user" })).id;
    const fingerprint = tokenFingerprint({ name: "ci", scope: "full", expiresInDays: null });
    const now = Date.now();
    const first = await createApiToken(db, { userId, name: "ci", idempotencyKey: "k1", fingerprint }, now);
    await expect(createApiToken(db, { userId, name: "ci", idempotencyKey: "k1", fingerprint }, now)).rejects.toMatchObject({
      status: 409,
      code: "idempotency_key_in_flight",
    });
    expect(await authenticateApiToken(db, first.token, now)).toMatchObject({ id: userId });
    expect(await listApiTokens(db, userId)).toHaveLength(1);
  });

  it(`reissues a key's token only within ${TOKEN_KEY_REPLAY_MS / 3_600_000} h of its creation (then 422 idempotency_key_expired), and not once it was revoked`, async () => {
    const { db } = await freshDb(server, "token_reissue_window");
    const userId = (await createUser(db, { email: `t-${newId()}@test.example`, password: "pw-for-tokens", role: "user" })).id;
    const fingerprint = tokenFingerprint({ name: "ci", scope: "full", expiresInDays: null });
    const t0 = Date.now();
    const made = await createApiToken(db, { userId, name: "ci", idempotencyKey: "k2", fingerprint }, t0);
    const again = await reissueApiToken(db, { userId, key: "k2", fingerprint }, t0 + TOKEN_KEY_REPLAY_MS - 1000);
    expect(again).toMatchObject({ id: made.id });
    expect(await authenticateApiToken(db, made.token, t0)).toBeNull();
    await expect(reissueApiToken(db, { userId, key: "k2", fingerprint }, t0 + TOKEN_KEY_REPLAY_MS + 1000)).rejects.toMatchObject({
      status: 422,
      code: "idempotency_key_expired",
    });
    // The expired try changed nothing: the secret the last answer carried still works.
    expect(await authenticateApiToken(db, again!.token, t0)).toMatchObject({ id: userId });
    expect(await reissueApiToken(db, { userId, key: "unknown", fingerprint }, t0)).toBeNull();
  });

  it("never reissues a token that has expired (409 token_expired): its new secret could not work", async () => {
    const { db } = await freshDb(server, "token_reissue_expired");
    const userId = (await createUser(db, { email: `t-${newId()}@test.example`, password: "pw-for-tokens", role: "user" })).id;
    const fingerprint = tokenFingerprint({ name: "ci", scope: "full", expiresInDays: 1 });
    const t0 = Date.now();
    await createApiToken(db, { userId, name: "ci", expiresAt: t0 + 60_000, idempotencyKey: "k3", fingerprint }, t0);
    expect(await reissueApiToken(db, { userId, key: "k3", fingerprint }, t0 + 30_000)).not.toBeNull();
    await expect(reissueApiToken(db, { userId, key: "k3", fingerprint }, t0 + 60_000)).rejects.toMatchObject({ status: 409, code: "token_expired" });
  });
});
