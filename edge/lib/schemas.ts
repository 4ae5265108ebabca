import { z } from "zod";
import { DEFAULT_EFFECTS_JSON, EFFECT_FAMILIES, EFFECT_INTENSITIES, EffectsSchema } from "../../db/effects";
import { ValidationError } from "../../db/errors";
import { MAX_VIDEOS_PER_JOB } from "../../db/limits";
import { MIN_PASSWORD_LENGTH, passwordProblem } from "../../db/passwords";
import { DELIVERY_STATUSES, JOB_STATUSES, VARIATION_STATUSES, WEBHOOK_EVENTS } from "../../db/schema";
import type { BulkCancelResult, JobView } from "../../db/queries/jobs";
import { RETIRING_SECRET_DEFAULT_MS, RETIRING_SECRET_MAX_MS } from "../../db/queries/webhooks/retiring-secrets";

/**
 * The API's request and response schemas. Requests are validated with them (edge/lib/validate.ts) and
 * /api/openapi.json is generated from the same objects, so the document cannot drift from the code.
 */

/** Schemas documented under components/schemas, split by direction (request bodies are described as input). */
export const requestRegistry = z.registry<{ id: string }>();
export const responseRegistry = z.registry<{ id: string }>();

export { MAX_VIDEOS_PER_JOB };
export const MAX_VARIATIONS_PER_VIDEO = 20;
export const DEFAULT_VARIATIONS_PER_VIDEO = 5;

const Id = z.string().regex(/^[0-9a-z]{1,40}$/, "not an id");
const Time = z.iso.datetime().describe("ISO-8601 UTC");
const Email = z.email().max(254);

/**
 * A count: a JSON number, or the decimal digits of a form field, query or path. Not z.coerce, which takes `true`,
 * `[7]`, "0x10" and "1e1" for numbers and so creates work from input nobody meant as a count.
 */
function countOf<T extends z.ZodType<number | undefined>>(n: T) {
  // A preprocess, not a union: the OpenAPI document (and the CLI's types generated from it) keeps the integer with
  // its bounds and default.
  return z.preprocess((v) => (typeof v === "string" && /^\s*[0-9]{1,9}\s*$/.test(v) ? Number(v) : v), n);
}

// --- accounts ---------------------------------------------------------------------------------------------------

export const Role = z.enum(["admin", "user"]);
export const User = z.object({ id: z.string(), email: z.string(), role: Role });
export const UserEnvelope = z.object({ user: User }).register(responseRegistry, { id: "UserEnvelope" });
export const UserList = z
  .object({ users: z.array(User.extend({ createdAt: Time, disabledAt: Time.nullable() })) })
  .register(responseRegistry, { id: "UserList" });
export const AdminUserEnvelope = z
  .object({ user: User.extend({ createdAt: Time, disabledAt: Time.nullable() }) })
  .register(responseRegistry, { id: "AdminUserEnvelope" });

/** New passwords only (login accepts whatever was set before the rules). */
const NewPassword = z
  .string()
  .max(1024)
  .superRefine((pw, ctx) => {
    const problem = passwordProblem(pw);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .describe(`At least ${MIN_PASSWORD_LENGTH} characters, not a common password`);

export const LoginBody = z.object({ email: Email, password: z.string().min(1).max(1024) }).register(requestRegistry, { id: "LoginBody" });
export const CreateUserBody = z
  .object({
    email: Email,
    password: NewPassword,
    role: Role.default("user"),
  })
  .register(requestRegistry, { id: "CreateUserBody" });

export const SetUserPasswordBody = z.object({ password: NewPassword }).register(requestRegistry, { id: "SetUserPasswordBody" });

export const ChangePasswordBody = z
  .object({ currentPassword: z.string().min(1).max(1024), newPassword: NewPassword })
  .register(requestRegistry, { id: "ChangePasswordBody" });
export const SessionList = z
  .object({
    sessions: z.array(
      z.object({
        id: z.string(),
        createdAt: Time,
        lastSeenAt: Time,
        expiresAt: Time,
        userAgent: z.string().nullable(),
        current: z.boolean().describe("The session making this request"),
      }),
    ),
  })
  .register(responseRegistry, { id: "SessionList" });

export const TokenScope = z.enum(["full", "read"]).describe("read: GET/HEAD only; state-changing requests answer 403 read_only_token");
export const CreateTokenBody = z
  .object({
    name: z.string().trim().min(1).max(100),
    scope: TokenScope.default("full"),
    expiresInDays: z.number().int().min(1).max(3650).nullable().default(null).describe("Omit or null: never expires"),
  })
  .register(requestRegistry, { id: "CreateTokenBody" });
export const ApiToken = z
  .object({
    id: z.string(),
    name: z.string(),
    scope: TokenScope,
    createdAt: Time,
    lastUsedAt: Time.nullable(),
    expiresAt: Time.nullable(),
  })
  .register(responseRegistry, { id: "ApiToken" });
export const CreatedApiToken = z
  .object({
    id: z.string(),
    name: z.string(),
    scope: TokenScope,
    expiresAt: Time.nullable(),
    token: z.string().describe("Shown once; send as Authorization: Bearer"),
  })
  .register(responseRegistry, { id: "CreatedApiToken" });
export const ApiTokenList = z.object({ tokens: z.array(ApiToken) }).register(responseRegistry, { id: "ApiTokenList" });
export const IdParam = z.object({ id: Id });

// --- uploads ----------------------------------------------------------------------------------------------------

export const CreateUploadBody = z
  .object({
    filename: z.string().trim().min(1).max(255),
    size: z.number().int().positive().describe("Total bytes; at most MAX_UPLOAD_BYTES"),
  })
  .register(requestRegistry, { id: "CreateUploadBody" });
export const CreatedUpload = z
  .object({ id: z.string(), partSize: z.number().int(), partCount: z.number().int() })
  .register(responseRegistry, { id: "CreatedUpload" });
export const PartParams = z.object({ id: Id, n: countOf(z.number().int().min(1).max(10_000)) });
export const UploadedPart = z.object({ etag: z.string() }).register(responseRegistry, { id: "UploadedPart" });
export const CompletedUpload = z
  .object({ id: z.string(), filename: z.string(), size: z.number().int(), status: z.literal("completed") })
  .register(responseRegistry, { id: "CompletedUpload" });

// --- jobs -------------------------------------------------------------------------------------------------------

export const JobStatus = z.enum(JOB_STATUSES);
const VARIATIONS_DESCRIPTION = `Variations per video (1–${MAX_VARIATIONS_PER_VIDEO})`;
const variationsNumber = () => z.number().int().min(1).max(MAX_VARIATIONS_PER_VIDEO);
export const VariationsCount = countOf(variationsNumber()).describe(VARIATIONS_DESCRIPTION);
/** The count of POST /api/jobs, DEFAULT_VARIATIONS_PER_VIDEO when absent. */
const VariationsCountOrDefault = countOf(variationsNumber().default(DEFAULT_VARIATIONS_PER_VIDEO)).describe(VARIATIONS_DESCRIPTION);

/** `effects` of POST /api/jobs (the contract lives in db/effects.ts; the runner derives the recipe from it). */
export const EffectsRequest = EffectsSchema.describe(
  `Effects every variation of the job applies; absent = ${DEFAULT_EFFECTS_JSON}`,
).register(requestRegistry, { id: "EffectsRequest" });
/** The multipart field: JSON text of EffectsRequest. */
export const EffectsField = z
  .string()
  .transform((text, ctx) => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      ctx.addIssue({ code: "custom", message: "malformed JSON" });
      return z.NEVER;
    }
  })
  .pipe(EffectsRequest);
export const Effects = z
  .object({ intensity: z.enum(EFFECT_INTENSITIES), families: z.array(z.enum(EFFECT_FAMILIES)) })
  .describe("What every variation applies: families in recipe order, intensity scales their ranges")
  .register(responseRegistry, { id: "Effects" });

export const CreateJobForm = z
  .object({
    videos: z.array(z.file()).min(1).max(MAX_VIDEOS_PER_JOB).describe("1–10 video files (MP4, MOV, M4V, WebM, MKV)"),
    variations: VariationsCountOrDefault,
    effects: z
      .string()
      .optional()
      .describe(`JSON text of EffectsRequest, e.g. {"intensity":"medium","families":["color","zoom","mirror"]}; absent = ${DEFAULT_EFFECTS_JSON}`),
  })
  .register(requestRegistry, { id: "CreateJobForm" });
export const CreateJobJson = z
  .object({
    uploads: z
      .array(Id)
      .min(1)
      .max(MAX_VIDEOS_PER_JOB)
      .refine((ids) => new Set(ids).size === ids.length, "upload ids must be distinct"),
    variations: VariationsCountOrDefault,
    effects: EffectsRequest.optional(),
  })
  .register(requestRegistry, { id: "CreateJobJson" });

export const ListJobsQuery = z.object({
  status: JobStatus.optional(),
  limit: countOf(z.number().int().min(1).max(100).default(20)),
  cursor: z.string().max(200).optional(),
});

export const CancelBody = z
  .object({ reason: z.string().trim().max(500).optional() })
  .register(requestRegistry, { id: "CancelBody" });
export const BulkCancelBody = z
  .union([
    z.object({ ids: z.array(Id).min(1).max(200), reason: z.string().trim().max(500).optional() }).strict(),
    z.object({ status: z.enum(["queued", "processing"]), reason: z.string().trim().max(500).optional() }).strict(),
  ])
  .register(requestRegistry, { id: "BulkCancelBody" });

export const MoreVariationsBody = z
  .object({ variations: VariationsCount.describe(`New variations per video (1–${MAX_VARIATIONS_PER_VIDEO})`) })
  .register(requestRegistry, { id: "MoreVariationsBody" });

export const OutputParams = z.object({ id: Id, outputId: Id });

export const Variation = z
  .object({
    index: z.number().int().describe("1-based within its file"),
    status: z.enum(VARIATION_STATUSES),
    progress: z.number().min(0).max(100),
    params: z.record(z.string(), z.unknown()).nullable().describe("Effect parameters the runner applied"),
    outputId: z.string().nullable().describe("For GET /api/jobs/{id}/outputs/{outputId}"),
    outputSize: z.number().int().nullable(),
    error: z.string().nullable(),
    quality: z
      .object({
        ssim: z.number().nullable().describe("SSIM against the source on sampled frames, 0–1 (1 = identical)"),
        psnr: z.number().nullable().describe("PSNR against the source on the same frames, dB (capped at 100)"),
        distinct: z
          .number()
          .nullable()
          .describe("Mean absolute pixel difference to the closest completed sibling of the same file, % of the 8-bit range"),
      })
      .describe("Measured by the runner after the encode; each figure null until measured"),
    redraws: z.number().int().describe("How many times the runner re-drew this variation with a new seed"),
    redrawReason: z.string().nullable().describe("Why the last re-draw happened (or which draw was kept)"),
    thumbnailUrl: z.string().nullable().describe("A still of this variation: GET /api/jobs/{id}/outputs/{outputId}/thumbnail"),
  })
  .register(responseRegistry, { id: "Variation" });
export const JobFile = z
  .object({
    id: z.string(),
    name: z.string(),
    size: z.number().int(),
    status: z.enum(["queued", "processing", "completed", "failed", "cancelled"]),
    progress: z.number().min(0).max(100),
    completedVariations: z.number().int(),
    error: z.string().nullable(),
    variations: z.array(Variation).optional().describe("Absent in job lists"),
  })
  .register(responseRegistry, { id: "JobFile" });
export const Job = z
  .object({
    id: z.string(),
    status: JobStatus,
    previousStatus: JobStatus.optional().describe("On cancel and pause replies: the status before this request"),
    createdAt: Time,
    startedAt: Time.nullable(),
    completedAt: Time.nullable(),
    cancelledAt: Time.nullable(),
    cancelReason: z.string().nullable(),
    cancelledBy: z.string().nullable().describe("Email of the user who requested the cancel"),
    expiresAt: Time.nullable().describe("When outputs are deleted (finish + JOB_TTL_HOURS)"),
    variationsPerVideo: z.number().int(),
    effects: Effects,
    totalVariations: z.number().int(),
    completedVariations: z.number().int(),
    failedVariations: z.number().int(),
    cancelledVariations: z.number().int(),
    progress: z.number().min(0).max(100),
    error: z.string().nullable(),
    downloadUrl: z.string().nullable(),
    thumbnailUrl: z.string().nullable(),
    queuePosition: z
      .number()
      .int()
      .min(0)
      .nullable()
      .describe("Queued jobs: variations of other jobs runners will start before this job's first one (users take turns); null otherwise"),
    etaSeconds: z
      .number()
      .int()
      .min(0)
      .nullable()
      .describe("Queued/processing jobs: estimated seconds until done, from the online runners' slots and recent encode times; null when unknown or finished"),
    files: z.array(JobFile),
  })
  .register(responseRegistry, { id: "Job" });
export const JobList = z
  .object({ jobs: z.array(Job), nextCursor: z.string().nullable() })
  .register(responseRegistry, { id: "JobList" });
export const BulkCancelResults = z
  .object({
    results: z.array(
      z.object({
        id: z.string(),
        status: JobStatus.nullable(),
        previousStatus: JobStatus.nullable(),
        error: z.enum(["not_found", "not_cancellable"]).optional(),
      }),
    ),
  })
  .register(responseRegistry, { id: "BulkCancelResults" });

export const ErrorBody = z
  .object({
    error: z.object({ code: z.string(), message: z.string(), field: z.string().optional() }),
    job: Job.optional().describe("On 409 not_cancellable, not_pausable, job_active, not_retryable, nothing_to_retry, not_resumable, nothing_to_resume"),
  })
  .register(responseRegistry, { id: "Error" });

// The presenters in db/queries/jobs.ts produce these shapes; this fails to compile if they drift apart.
type Assert<T extends true> = T;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export type _JobMatches = Assert<Same<JobView, z.output<typeof Job>>>;
export type _BulkMatches = Assert<Same<BulkCancelResult, z.output<typeof BulkCancelResults>["results"][number]>>;

/** Parses `value` with `schema` or throws the same 400 as the validate middleware, naming `field`. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, field?: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const name = [field, ...issue.path].filter((p) => p !== undefined && p !== "").join(".") || undefined;
  throw new ValidationError(name ? `${name}: ${issue.message}` : issue.message, name);
}

// --- webhooks ---------------------------------------------------------------------------------------------------

export const WebhookEvent = z.enum(WEBHOOK_EVENTS);
export const CreateWebhookBody = z
  .object({
    url: z.string().trim().min(1).max(2048).describe("https:// endpoint on a public host (private, loopback and link-local targets are refused)"),
    events: z.array(WebhookEvent).min(1).max(WEBHOOK_EVENTS.length).default([...WEBHOOK_EVENTS]).describe("Omit: every event"),
  })
  .register(requestRegistry, { id: "CreateWebhookBody" });
export const UpdateWebhookBody = z
  .object({
    url: CreateWebhookBody.shape.url.optional(),
    events: z.array(WebhookEvent).min(1).max(WEBHOOK_EVENTS.length).optional().describe("Replaces the list; omit to keep it"),
  })
  .strict()
  .refine((b) => b.url !== undefined || b.events !== undefined, { message: "Send url, events or both" })
  .register(requestRegistry, { id: "UpdateWebhookBody" });
const WebhookFields = { id: z.string(), url: z.string(), events: z.array(WebhookEvent), createdAt: Time };
export const Webhook = z.object(WebhookFields).register(responseRegistry, { id: "Webhook" });
export const CreatedWebhook = z
  .object({ ...WebhookFields, secret: z.string().describe("whsec_…, shown once: verify webhook-signature with it (Standard Webhooks)") })
  .register(responseRegistry, { id: "CreatedWebhook" });
export const RotateWebhookSecretBody = z
  .object({
    keepPreviousSeconds: z
      .number()
      .int()
      .min(0)
      .max(RETIRING_SECRET_MAX_MS / 1000)
      .default(RETIRING_SECRET_DEFAULT_MS / 1000)
      .describe("How long the replaced secret keeps signing next to the new one (default a day); 0 stops every old secret now"),
  })
  .strict()
  .register(requestRegistry, { id: "RotateWebhookSecretBody" });
export const RotatedWebhookSecret = z
  .object({
    id: z.string(),
    secret: z.string().describe("The new whsec_…, shown once"),
    previousSecretsValidUntil: Time.nullable().describe("Until then deliveries carry a signature by the replaced secret(s) too; null: none"),
  })
  .register(responseRegistry, { id: "RotatedWebhookSecret" });
export const WebhookList = z.object({ webhooks: z.array(Webhook) }).register(responseRegistry, { id: "WebhookList" });
export const WebhookDelivery = z
  .object({
    id: z.string().describe("The webhook-id header of every attempt"),
    event: z.string().describe("job.completed | job.cancelled | job.failed | job.paused | webhook.test"),
    jobId: z.string().nullable(),
    status: z.enum(DELIVERY_STATUSES).describe("pending: being attempted (retries with backoff for 24 h); failed: gave up"),
    attempts: z.number().int(),
    occurredAt: Time,
    nextAttemptAt: Time.nullable().describe("While pending"),
    lastAttemptAt: Time.nullable(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    deliveredAt: Time.nullable(),
  })
  .register(responseRegistry, { id: "WebhookDelivery" });
export const WebhookDeliveryList = z.object({ deliveries: z.array(WebhookDelivery) }).register(responseRegistry, { id: "WebhookDeliveryList" });
export const QueuedDelivery = z.object({ id: z.string(), status: z.literal("pending") }).register(responseRegistry, { id: "QueuedDelivery" });
export const DeliveryParams = z.object({ id: Id, deliveryId: Id });

// --- idempotency ------------------------------------------------------------------------------------------------

/**
 * The `Idempotency-Key` request header of POST /api/jobs and POST /api/uploads: any 1–255 visible ASCII characters (a UUID is typical).
 * Keys are per user and last as long as the job they created.
 */
export const IdempotencyKey = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, "use 1–255 visible ASCII characters, e.g. a UUID")
  .describe("Names one job creation: the same key again answers the job it created instead of creating another");
