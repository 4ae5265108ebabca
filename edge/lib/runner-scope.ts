import { outputKey, parseOutputKey, thumbnailKey, variationThumbnailKey } from "../../db/keys";
import type { TicketRow } from "../../db/queries/variations";
import { TERMINAL_JOB_STATUSES, type JobStatus } from "../../db/schema";
import { TICKET_HEADERS, type Ticket } from "../../db/tickets";

/**
 * Which objects a runner may reach through `/internal/*`: only those of the variation it currently holds, judged
 * from its ticket (runner id + variation + attempt) against the lease in the database. Pure: the route reads the
 * rows, these functions decide. Each returns null when allowed, else the reason for a 403 `not_your_work`.
 */

/**
 * A lease this recently expired still counts: runner and edge clocks differ, and the runner's own view of its lease
 * ends before the database's. The attempt number, not the lease time, is what fences off a newer holder.
 */
export const LEASE_GRACE_MS = 60_000;

export type Refusal = string | null;

const NO_TICKET = `No ticket: send ${TICKET_HEADERS.runnerId}, ${TICKET_HEADERS.variationId} and ${TICKET_HEADERS.attempt} of the variation you hold`;
const LEASE_NOT_HELD = "Lease not held: this runner does not hold that attempt of the variation";
const NOT_THIS_ATTEMPTS = "Key not this attempt's: the object does not belong to the variation attempt you hold";
const TERMINAL = new Set<string>(TERMINAL_JOB_STATUSES);

/** The ticket from request headers; null when any part is missing or malformed. */
export function parseTicket(header: (name: string) => string | undefined): Ticket | null {
  const runnerId = header(TICKET_HEADERS.runnerId)?.trim();
  const variationId = header(TICKET_HEADERS.variationId)?.trim();
  const attempt = header(TICKET_HEADERS.attempt)?.trim();
  if (!runnerId || !variationId || !attempt || !/^[1-9][0-9]{0,8}$/.test(attempt)) return null;
  return { runnerId, variationId, attempt: Number(attempt) };
}

/** The ticket names the running attempt the database gives this runner, with a lease not long expired. */
function holds(ticket: Ticket, row: TicketRow | null, now: number): row is TicketRow {
  return (
    !!row &&
    row.variationId === ticket.variationId &&
    row.status === "running" &&
    row.runnerId === ticket.runnerId &&
    row.attempt === ticket.attempt &&
    row.leaseExpiresAt !== null &&
    row.leaseExpiresAt > now - LEASE_GRACE_MS
  );
}

/** GET of an object: only the source of the variation the ticket holds (runners never read outputs or thumbnails). */
export function mayRead(key: string, ticket: Ticket | null, row: TicketRow | null, now: number): Refusal {
  if (!ticket) return NO_TICKET;
  if (!holds(ticket, row, now)) return LEASE_NOT_HELD;
  return key === row.sourceKey ? null : NOT_THIS_ATTEMPTS;
}

/**
 * PUT of an object or a multipart upload to it: the output key (or the variation thumbnail key) of exactly the held
 * attempt; or the job's thumbnail
 * while the job has none, for the runner and attempt the row still names in any status (a thumbnail may be
 * finished after its short variation).
 */
export function mayWrite(key: string, ticket: Ticket | null, row: TicketRow | null, now: number): Refusal {
  if (!ticket) return NO_TICKET;
  if (row && row.variationId === ticket.variationId && key === thumbnailKey(row.jobId)) {
    if (row.runnerId !== ticket.runnerId || row.attempt !== ticket.attempt) return LEASE_NOT_HELD;
    return row.jobThumbnailKey === null ? null : "The job already has a thumbnail";
  }
  if (!holds(ticket, row, now)) return LEASE_NOT_HELD;
  const own = [outputKey(row.jobId, row.variationId, ticket.attempt), variationThumbnailKey(row.jobId, row.variationId, ticket.attempt)];
  return own.includes(key) ? null : NOT_THIS_ATTEMPTS;
}

/** What the route read for a delete: the variation an output key names, or the key's job status otherwise. */
export interface DeleteFacts {
  /** For a key that parses as an output key: its variation (null when gone). */
  variation: TicketRow | null;
  /** For any other key under outputs/<job>/: that job's status (null when gone). */
  jobStatus: JobStatus | null;
}

/**
 * DELETE of an object the database does not record (the route refuses recorded ones first, 409). The only such
 * object worth protecting is the output of an attempt still running, which may yet be recorded: only its holder
 * deletes it. Every other output key can never be recorded (superseded attempt, variation finished, job over or
 * gone), so deleting it is harmless and needs no ticket — the orphan sweep of a finished job relies on that.
 */
export function mayDelete(key: string, ticket: Ticket | null, facts: DeleteFacts): Refusal {
  if (!key.startsWith("outputs/")) return "Runners delete only outputs";
  const parsed = parseOutputKey(key);
  if (!parsed) {
    return facts.jobStatus === null || TERMINAL.has(facts.jobStatus) ? null : "The job is still active: only its finished outputs can be swept";
  }
  const v = facts.variation;
  // Recorded keys are always outputKey(v.jobId, v.id, attempt): a key naming another job is never recorded.
  if (!v || v.jobId !== parsed.jobId || v.status !== "running" || v.attempt !== parsed.attempt) return null;
  if (!ticket) return NO_TICKET;
  const holder = ticket.variationId === v.variationId && ticket.runnerId === v.runnerId && ticket.attempt === v.attempt;
  return holder ? null : "That attempt is still running: only its runner may delete its output";
}

/**
 * Abort of a multipart upload (never touches a stored object): allowed to whoever may write the key, and also
 * where a delete of it would be harmless, so a runner that lost its lease mid-upload can still clean up.
 */
export function mayAbort(key: string, ticket: Ticket | null, row: TicketRow | null, facts: DeleteFacts | null, now: number): Refusal {
  const write = mayWrite(key, ticket, row, now);
  if (write === null || !facts || !parseOutputKey(key)) return write;
  return mayDelete(key, ticket, facts) === null ? null : write;
}

/** Listing a job's outputs (the orphan sweep): only once the job is finished or gone. */
export function mayList(jobStatus: JobStatus | null): Refusal {
  return jobStatus === null || TERMINAL.has(jobStatus) ? null : "The job is still active: its outputs are listed once it is finished";
}
