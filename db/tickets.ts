import type { Ownership } from "./queries/states";

/**
 * What a runner shows the edge with every object call: the variation it works on and the claim that gave it to
 * this runner (runner id + attempt). The edge checks it against the lease in the database, so the shared
 * RUNNER_TOKEN alone opens nothing but the orphan sweep's listing and deletes of objects nobody can record.
 */
export type Ticket = Ownership;

export const TICKET_HEADERS = {
  runnerId: "x-runner-id",
  variationId: "x-variation-id",
  attempt: "x-variation-attempt",
} as const;

/** The ticket as request headers (empty for no ticket). */
export function ticketHeaders(ticket: Ticket | null | undefined): Record<string, string> {
  if (!ticket) return {};
  return {
    [TICKET_HEADERS.runnerId]: ticket.runnerId,
    [TICKET_HEADERS.variationId]: ticket.variationId,
    [TICKET_HEADERS.attempt]: String(ticket.attempt),
  };
}
