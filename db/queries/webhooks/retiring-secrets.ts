import { z } from "zod";

/**
 * After a rotation the replaced secret keeps signing alongside the new one (Standard Webhooks sends one
 * `v1,<signature>` per secret, space-separated; a receiver accepts any it can verify), so deliveries keep verifying
 * while the receiver switches over. Not only the last replaced secret: a rotation whose reply was lost and is
 * repeated replaces a secret nobody ever saw, and the one the receiver still has must not stop signing because of it.
 */

/** How long a replaced secret keeps signing unless the rotation says otherwise. */
export const RETIRING_SECRET_DEFAULT_MS = 24 * 3_600_000;
/** The longest a rotation may keep the replaced secret signing. */
export const RETIRING_SECRET_MAX_MS = 7 * 24 * 3_600_000;
/**
 * Replaced secrets kept signing at once, newest first; a rotation beyond drops the oldest. Bounds the signature
 * header (about 50 bytes per secret) and the HMACs per attempt, while leaving room for a few repeated rotations.
 */
export const MAX_RETIRING_SECRETS = 5;

const RetiringSecrets = z.array(z.object({ secret: z.string().startsWith("whsec_"), until: z.number().int() }));
export type RetiringSecret = z.infer<typeof RetiringSecrets>[number];

/** The still-signing replaced secrets of a `webhooks.retiring_secrets` value at `now`, newest first. */
export function liveRetiringSecrets(json: string | null, now: number): RetiringSecret[] {
  if (json === null) return [];
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return [];
  }
  const parsed = RetiringSecrets.safeParse(value);
  return parsed.success ? parsed.data.filter((r) => r.until > now) : [];
}

/** Every secret a delivery attempt at `now` is signed with: the current one first, then the still-signing replaced ones. */
export function signingSecrets(current: string, retiringJson: string | null, now: number): string[] {
  return [current, ...liveRetiringSecrets(retiringJson, now).map((r) => r.secret)];
}
