import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

export const users = sqliteTable(
  "users",
  {
    id: text("id").primaryKey(),
    email: text("email").notNull(),
    passwordHash: text("password_hash").notNull(),
    role: text("role", { enum: ["admin", "user"] }).notNull().default("user"),
    createdAt: integer("created_at").notNull(),
    /** Set while an admin has disabled the account: its sessions are deleted and its tokens stop authenticating. */
    disabledAt: integer("disabled_at"),
    /**
     * Bytes the user has stored: sources, outputs and unused uploads (`storedBytesOf`). Kept by triggers on those
     * tables (migration 0031), never by application code: every admission reads it under the write lock, and the sum
     * it replaces visited every row of the user's history (a user who made a million cancelled variations slowed
     * every other user's writes). A migration that rebuilds sources, variations, uploads, jobs or users must create
     * the triggers again (drizzle-kit does not know them); test/db/queries/quotas/usage.test.ts fails without them.
     */
    storedBytes: integer("stored_bytes").notNull().default(0),
  },
  (t) => [uniqueIndex("users_email_uq").on(t.email)],
);

export const sessions = sqliteTable(
  "sessions",
  {
    id: text("id").primaryKey(),
    tokenHash: text("token_hash").notNull().unique("sessions_token_hash_uq"),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    createdAt: integer("created_at").notNull(),
    lastSeenAt: integer("last_seen_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
    /** Shown in the account's session list so the owner can tell their devices apart. */
    userAgent: text("user_agent"),
  },
  (t) => [index("sessions_user_idx").on(t.userId), index("sessions_expires_idx").on(t.expiresAt)],
);

export const apiTokens = sqliteTable(
  "api_tokens",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    tokenHash: text("token_hash").notNull().unique("api_tokens_token_hash_uq"),
    createdAt: integer("created_at").notNull(),
    lastUsedAt: integer("last_used_at"),
    /** Null: never expires. */
    expiresAt: integer("expires_at"),
    /** `read`: safe methods only (GET/HEAD/OPTIONS). */
    scope: text("scope", { enum: ["full", "read"] }).notNull().default("full"),
    /**
     * The `Idempotency-Key` of the POST that made it: the same key sent again after a lost answer gets this token with
     * a new secret (reissueApiToken) instead of a second token nobody ever saw.
     */
    idempotencyKey: text("idempotency_key"),
    /** What that POST asked for (name, scope, expiry): a repeat of its key must ask the same. */
    idempotencyFingerprint: text("idempotency_fingerprint"),
  },
  (t) => [index("api_tokens_user_idx").on(t.userId), uniqueIndex("api_tokens_user_idempotency_key_idx").on(t.userId, t.idempotencyKey)],
);

/**
 * Browsers that signed in to an account before (the `vr_device` cookie holds the token; only its hash is kept). A
 * login presenting one is throttled on its own counter instead of the account's, so someone guessing at an account
 * from elsewhere cannot lock its owner out (the "device cookie" defence). At most LOGIN_DEVICES_PER_USER per user.
 */
export const loginDevices = sqliteTable(
  "login_devices",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    tokenHash: text("token_hash").notNull().unique("login_devices_token_hash_uq"),
    createdAt: integer("created_at").notNull(),
    lastUsedAt: integer("last_used_at").notNull(),
  },
  (t) => [index("login_devices_user_idx").on(t.userId, t.lastUsedAt)],
);

/**
 * Login throttle counters, one row per key: `account:<email>` (all addresses together), `address:<ip or /64>`
 * (all accounts together), `device:<login device id>` (a browser that signed in before) or `password-change:<user>`. An attempt is reserved here before the password is checked, so concurrent guesses
 * cannot all be evaluated; past the free attempts each one sets `locked_until` further out (growing delay).
 * The table keeps its historical name so existing databases migrate in place.
 */
export const loginFailures = sqliteTable(
  "login_failures",
  {
    key: text("key").primaryKey(),
    attempts: integer("attempts").notNull(),
    lockedUntil: integer("locked_until").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("login_failures_updated_idx").on(t.updatedAt)],
);
