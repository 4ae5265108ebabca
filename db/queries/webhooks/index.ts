/**
 * Webhook queries, one operation per file: the user's endpoints (create, list, change, delete, rotate the secret), their delivery log (list,
 * test event, redeliver) and the delivery engine's steps (take due, claim, record an attempt, expire), with the
 * per-endpoint hold they share (endpoint-hold.ts). Job events are written
 * by the jobs_webhook_outbox trigger (migrations 0007, 0024), not here.
 */
export * from "./create-webhook";
export * from "./find-webhook-by-idempotency-key";
export * from "./list-webhooks";
export * from "./delete-webhook";
export * from "./update-webhook";
export * from "./rotate-webhook-secret";
export { signingSecrets, RETIRING_SECRET_DEFAULT_MS, RETIRING_SECRET_MAX_MS } from "./retiring-secrets";
export * from "./list-deliveries";
export * from "./create-test-delivery";
export * from "./redeliver-delivery";
export * from "./manual-send-limit";
export * from "./release-enqueued-deliveries";
export * from "./take-due-deliveries";
export * from "./claim-delivery";
export * from "./record-delivery-attempt";
export * from "./prune-deliveries";
export * from "./expire-deliveries";
export { isEndpointFailure } from "./endpoint-hold";
