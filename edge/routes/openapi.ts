import { Hono } from "hono";
import { z } from "zod";
import { USER_REQUEST_LIMIT } from "../../db/limits";
import type { AppEnv } from "../env";
import { ListJobsQuery, requestRegistry, responseRegistry } from "../lib/schemas";

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const json = (id: string) => ({ content: { "application/json": { schema: ref(id) } } });
const ok = (description: string, id?: string) => ({ description, ...(id ? json(id) : {}) });
const err = (description: string) => ok(description, "Error");

/** Every route that asks the database (all but this document): onError's answer when it cannot (edge/lib/errors.ts). */
const dbErrors = {
  "503": err("The database is unreachable (code db_unavailable) or busy (code db_busy, Retry-After: 1); send the request again shortly"),
};
/** requireUser's answers (edge/lib/auth.ts), for every route behind sign-in. */
const authErrors = {
  "401": err("Not signed in, or a bad/revoked token (the runner token is refused here)"),
  "403": err("CSRF: cookie-authenticated state change from another origin (code csrf), or a read-only API token on a state-changing route (code read_only_token)"),
  "429": err(`Over the account's request budget (code rate_limited: ${USER_REQUEST_LIMIT.requests} requests every ${USER_REQUEST_LIMIT.periodSeconds} s); see Retry-After. Nothing was done`),
  ...dbErrors,
};
/** For routes that document a 429 of their own (which names rate_limited too where the route is counted). */
const { "429": _rateLimited, ...authErrorsWithOwn429 } = authErrors;
/** /api/users: requireUser, then requireAdmin. */
const adminErrors = {
  ...authErrors,
  "403": err("Not an admin (code forbidden), CSRF (code csrf), or a read-only API token (code read_only_token)"),
};
/** jsonBodyLimit (edge/lib/validate.ts), in front of every /api route: listed where a route takes a JSON body. */
const JSON_TOO_LARGE = "JSON body over JSON_BODY_LIMIT_BYTES (code too_large), refused before it is read";
const jsonTooLarge = { "413": err(`A ${JSON_TOO_LARGE}`) };
/** A path id validated with IdParam (edge/lib/schemas.ts). */
const MALFORMED_ID = "malformed id in the path (not 1–40 lowercase letters and digits; field id)";
const malformedId = { "400": err(`A ${MALFORMED_ID}`) };
const jobIdParam = { name: "id", in: "path", required: true, schema: { type: "string" } };
/**
 * The optional `Idempotency-Key` header of a creating POST (edge/lib/idempotency.ts) or a reopen (resume, retry,
 * more: db/queries/jobs/reopen.ts); `what` it answers on a repeat.
 */
const idempotencyKeyParam = (what: string, lasts: string, per = "user") => ({
  name: "Idempotency-Key",
  in: "header",
  required: false,
  schema: { type: "string", minLength: 1, maxLength: 255, pattern: "^[\\x21-\\x7e]+$" },
  description: `Any 1–255 visible ASCII characters (a UUID): send the same key again after a lost answer, or twice at once, and get ${what}. Per ${per}; lasts as long as ${lasts}`,
});

/** Resume, retry and more: a repeat of the job's last keyed reopen answers the job instead of 409 or a second reopen. */
const reopenKeyParam = idempotencyKeyParam("the job as it is now instead of 409 job_active (or, for more, a second batch of variations)", "the job's next reopen, 24 hours at most", "job");

function queryParameters(schema: z.ZodObject) {
  const js = z.toJSONSchema(schema, { io: "input" }) as { properties: Record<string, object>; required?: string[] };
  return Object.entries(js.properties).map(([name, s]) => ({
    name,
    in: "query",
    required: js.required?.includes(name) ?? false,
    schema: s,
  }));
}

/** The OpenAPI 3.1 document, generated from the zod schemas the handlers validate with. */
export function buildOpenApi(version: string) {
  const uri = (id: string) => `#/components/schemas/${id}`;
  const requests = z.toJSONSchema(requestRegistry, { io: "input", uri, unrepresentable: "any" }).schemas;
  const responses = z.toJSONSchema(responseRegistry, { io: "output", uri }).schemas;
  const schemas = Object.fromEntries(
    Object.entries({ ...requests, ...responses }).map(([id, s]) => {
      // Components are addressed by $ref; a fragment-only $id is not valid JSON Schema 2020-12.
      const { $schema: _schema, $id: _id, ...rest } = s as Record<string, unknown>;
      return [id, rest];
    }),
  );
  const count = { type: "integer", minimum: 0 };
  const quotas = {
    type: "object",
    properties: { storageBytes: count, activeJobs: count, queuedVariations: count, openUploads: count, unusedUploads: count },
    required: ["storageBytes", "activeJobs", "queuedVariations", "openUploads", "unusedUploads"],
  };
  schemas.Limits = {
    type: "object",
    properties: {
      limits: {
        type: "object",
        properties: {
          ...quotas.properties,
          uploadBytes: count,
          jsonBodyBytes: count,
          sourceSeconds: { ...count, description: "Longest source runners encode (their default), in seconds" },
          sourceDimension: { ...count, description: "Largest source width or height runners encode (their default), in px" },
        },
        required: [...quotas.required, "uploadBytes", "jsonBodyBytes", "sourceSeconds", "sourceDimension"],
      },
      usage: quotas,
    },
    required: ["limits", "usage"],
  };
  schemas.Health = {
    type: "object",
    properties: { ok: { type: "boolean" }, db: { type: "string", enum: ["ok", "error"] }, version: { type: "string" } },
    required: ["ok", "db", "version"],
  };
  const doc = {
    openapi: "3.1.0",
    info: {
      title: "Video Refresher API",
      version,
      description:
        "Upload videos, get N subtly different variations of each, download them as a ZIP. Times are ISO-8601 UTC. " +
        "Errors are {error:{code,message,field?}}. A JSON body over JSON_BODY_LIMIT_BYTES answers 413 too_large on " +
        "every route. Per-user limits (GET /api/limits) answer quota_exceeded: 429 with Retry-After when runners " +
        "working off your jobs will free it (active jobs, queued variations), 409 otherwise (storage, open uploads, " +
        "or a job larger than a limit on its own). Every signed-in request counts against its account's budget " +
        `(${USER_REQUEST_LIMIT.requests} every ${USER_REQUEST_LIMIT.periodSeconds} s, all its tokens and sessions together): over it, 429 rate_limited with Retry-After, before the ` +
        "route does anything.",
    },
    servers: [{ url: "/" }],
    components: {
      schemas,
      securitySchemes: {
        session: { type: "apiKey", in: "cookie", name: "__Host-vr_session", description: "On loopback http also vr_session beside it; over other plain http vr_session only" },
        token: { type: "http", scheme: "bearer", description: "API token from POST /api/tokens" },
      },
    },
    security: [{ session: [] }, { token: [] }],
    paths: {
      "/api/auth/login": {
        post: {
          summary: "Sign in; sets the session cookie",
          security: [],
          requestBody: { required: true, ...json("LoginBody") },
          responses: {
            "200": ok("Signed in", "UserEnvelope"),
            "400": err("Invalid body"),
            "401": err("Wrong email or password (code invalid_credentials)"),
            "403": err("The right password for an account an administrator disabled (code account_disabled), or an Origin header of another site (code csrf)"),
            ...jsonTooLarge,
            "429": err("Too many attempts for this account (any address) or from this address (code too_many_attempts); see Retry-After"),
            ...dbErrors,
          },
        },
      },
      "/api/auth/logout": {
        post: {
          summary: "Sign out",
          security: [],
          responses: {
            "204": ok("Signed out"),
            "403": err("From a page of another site, with or without the session cookie (code csrf): nothing is signed out"),
            ...dbErrors,
          },
        },
      },
      "/api/me": { get: { summary: "The signed-in user", responses: { "200": ok("User", "UserEnvelope"), ...authErrors } } },
      "/api/me/password": {
        post: {
          summary: "Change your password (current one required); your other sessions end",
          requestBody: { required: true, ...json("ChangePasswordBody") },
          responses: {
            "204": ok("Changed"),
            "400": err("Weak new password (field newPassword) or wrong current password (code wrong_password)"),
            ...jsonTooLarge,
            "429": err("Too many wrong current passwords (the login throttle of this account; code too_many_attempts); see Retry-After; or over the account's request budget (code rate_limited)"),
            ...authErrorsWithOwn429,
          },
        },
      },
      "/api/me/sessions": {
        get: { summary: "Your live sessions (current one marked)", responses: { "200": ok("Sessions", "SessionList"), ...authErrors } },
      },
      "/api/me/sessions/{id}": {
        delete: {
          summary: "End one of your sessions",
          parameters: [jobIdParam],
          responses: { "204": ok("Ended"), ...malformedId, "404": err("Unknown, or someone else's"), ...authErrors },
        },
      },
      "/api/users": {
        get: { summary: "List accounts (admin)", responses: { "200": ok("Users", "UserList"), ...adminErrors } },
        post: {
          summary: "Create an account (admin)",
          requestBody: { required: true, ...json("CreateUserBody") },
          responses: {
            "201": ok("Created", "UserEnvelope"),
            "400": err("Invalid body"),
            "409": err(
              "Email taken (code email_taken). The same request again — same email, password and role, within 15 minutes of the creation, the account still enabled and never signed in to — answers 201 with the account it made (a reply lost after the commit, a double submit).",
            ),
            ...jsonTooLarge,
            ...adminErrors,
            "403": err(`${adminErrors["403"].description}, or an API token that expires (code expiring_token: an account would outlive it)`),
          },
        },
      },
      "/api/users/{id}/disable": {
        post: {
          summary: "Disable an account (admin): its sessions and API tokens stop working at once",
          parameters: [jobIdParam],
          responses: {
            "200": ok("Disabled (idempotent)", "AdminUserEnvelope"),
            ...malformedId,
            "404": err("Unknown user"),
            "409": err("Your own account (code cannot_disable_self)"),
            ...adminErrors,
            "403": err(`${adminErrors["403"].description}, or the acting admin was disabled meanwhile (code forbidden)`),
          },
        },
      },
      "/api/users/{id}/enable": {
        post: {
          summary: "Re-enable a disabled account (admin)",
          parameters: [jobIdParam],
          responses: {
            "200": ok("Enabled (idempotent)", "AdminUserEnvelope"),
            ...malformedId,
            "404": err("Unknown user"),
            ...adminErrors,
            "403": err(`${adminErrors["403"].description}, or an API token that expires (code expiring_token)`),
          },
        },
      },
      "/api/users/{id}/password": {
        post: {
          summary: "Set a new password for a user who lost theirs (admin): their sessions end, their API tokens stay",
          parameters: [jobIdParam],
          requestBody: { required: true, ...json("SetUserPasswordBody") },
          responses: {
            "204": ok("Set"),
            "400": err(`Weak password (field password), or a ${MALFORMED_ID}`),
            "404": err("Unknown user"),
            "409": err("Your own account (code cannot_reset_self: change it on /account, with the current password)"),
            ...jsonTooLarge,
            ...adminErrors,
            "403": err(`${adminErrors["403"].description}, an API token that expires (code expiring_token), or the acting admin was disabled meanwhile (code forbidden)`),
          },
        },
      },
      "/api/tokens": {
        get: { summary: "List your API tokens", responses: { "200": ok("Tokens", "ApiTokenList"), ...authErrors } },
        post: {
          summary: "Create an API token (the token is shown once)",
          parameters: [
            {
              ...idempotencyKeyParam("the token it made", "24 hours"),
              description:
                "Any 1–255 visible ASCII characters (a UUID): send the same request again with the same key after a lost answer and get " +
                "the token it made with a new secret (the lost one stops working: secrets are stored hashed), instead of a second token. " +
                "Each reissue voids the secret the one before gave: keep the one that works. Per user; for 24 hours, while that token was never used and has not expired; " +
                "a key whose token was revoked makes a new one",
            },
          ],
          requestBody: { required: true, ...json("CreateTokenBody") },
          responses: {
            "201": ok("Created (or, with an Idempotency-Key already used, the token that key made, with a new secret: header Idempotent-Replayed: true)", "CreatedApiToken"),
            "400": err("Invalid body, or a malformed Idempotency-Key; nothing is created"),
            "409": err(
              "The account holds 100 tokens already (code too_many_tokens): revoke unused ones; the Idempotency-Key's token has been used " +
                "since (code token_already_used: its answer was not lost) or has expired (code token_expired), or another request with it is being answered " +
                "(code idempotency_key_in_flight: send it again)",
            ),
            "422": err("The Idempotency-Key already made a token with another name, scope or expiry (code idempotency_key_reused), or did so more than 24 hours ago (code idempotency_key_expired); nothing is created"),
            ...jsonTooLarge,
            ...authErrors,
            "403": err(
              "CSRF (code csrf), a read-only API token (code read_only_token), or, with an Idempotency-Key, an API token that expires sooner " +
                "than the token the key made (code expiring_token)",
            ),
          },
        },
      },
      "/api/tokens/{id}": {
        delete: {
          summary: "Revoke one of your API tokens",
          parameters: [jobIdParam],
          responses: { "204": ok("Revoked"), "404": err("Unknown token"), ...authErrors },
        },
      },
      "/api/uploads": {
        post: {
          summary: "Start a large-file upload (R2 multipart)",
          parameters: [
            idempotencyKeyParam(
              "the upload the first request opened (201, header Idempotent-Replayed: true) instead of a second one counting against your open uploads and storage",
              "that upload",
            ),
          ],
          requestBody: { required: true, ...json("CreateUploadBody") },
          responses: {
            "201": ok("Send partCount parts of partSize bytes (the last one: the rest); with an Idempotency-Key already used, the upload that key opened (header Idempotent-Replayed: true)", "CreatedUpload"),
            "400": err("Invalid body, or a malformed Idempotency-Key; nothing is recorded"),
            "409": err("Over your open-uploads limit or storage quota (code quota_exceeded); nothing is recorded"),
            "413": err(`Larger than MAX_UPLOAD_BYTES (code too_large), or a ${JSON_TOO_LARGE}`),
            ...authErrors,
          },
        },
      },
      "/api/uploads/{id}/parts/{n}": {
        put: {
          summary: "Upload part n (raw bytes; may be retried)",
          parameters: [jobIdParam, { name: "n", in: "path", required: true, schema: { type: "integer", minimum: 1 } }],
          requestBody: { required: true, content: { "application/octet-stream": { schema: { type: "string", contentMediaType: "application/octet-stream" } } } },
          responses: {
            "200": ok("Stored", "UploadedPart"),
            "400": err("Wrong part number (field n) or size (field body), or a malformed upload id or part number in the path"),
            "404": err("Unknown upload"),
            "409": err("Upload already completed or aborted (code upload_closed)"),
            "415": err("Part 1 is not a supported video"),
            ...authErrors,
            "503": err("Storage did not take the part (code storage_unavailable), or the database is unreachable (code db_unavailable) or busy (code db_busy): send the part again"),
          },
        },
      },
      "/api/uploads/{id}": {
        delete: {
          summary: "Drop an upload no job uses (open or completed): its parts and bytes go, and it stops counting against your limits",
          parameters: [jobIdParam],
          responses: {
            "204": ok("Dropped"),
            "404": err("Unknown upload, or another user's"),
            "409": err("A job uses it (code upload_used): delete the job instead"),
            ...authErrors,
          },
        },
      },
      "/api/uploads/{id}/complete": {
        post: {
          summary: "Complete the upload once all parts are stored",
          parameters: [jobIdParam],
          responses: {
            "200": ok("Completed (also when it already was: a complete retried after a lost answer); pass the id to POST /api/jobs", "CompletedUpload"),
            "400": err("Missing parts (field parts)"),
            "404": err("Unknown upload"),
            "409": err("Aborted, or already used by a job (code upload_closed); a part sent twice at once with different bytes (code part_mismatch: send it again)"),
            "415": err("Part 1 was never recognised as a supported video"),
            ...authErrors,
          },
        },
      },
      "/api/jobs": {
        get: {
          summary: "List jobs, newest first (files carry no variations here)",
          parameters: queryParameters(ListJobsQuery),
          responses: { "200": ok("A page of jobs", "JobList"), "400": err("Bad query"), ...authErrors },
        },
        post: {
          summary: "Create a job from uploaded videos (streamed to storage) or from completed uploads",
          parameters: [
            idempotencyKeyParam(
              "the job the first request created (202, header Idempotent-Replayed: true; nothing of the body is stored) instead of a second job",
              "that job",
            ),
          ],
          requestBody: {
            required: true,
            content: {
              "multipart/form-data": { schema: ref("CreateJobForm") },
              "application/json": { schema: ref("CreateJobJson") },
            },
          },
          responses: {
            "202": ok("Queued (or, with an Idempotency-Key already used, the job that key created: header Idempotent-Replayed: true)", "Job"),
            "400": err("Empty file, bad counts or bad effects: unknown family or intensity, empty families, other keys, not JSON (field videos / variations / uploads / effects), or a malformed Idempotency-Key; nothing is created"),
            "409": err("A form upload that stalled past its window (code upload_expired), an upload already used or not completed (upload_used / upload_incomplete), or over your storage quota or a job larger than a limit on its own (quota_exceeded); nothing is created"),
            "413": err(`A file is larger than MAX_UPLOAD_BYTES (code too_large), or a ${JSON_TOO_LARGE}`),
            "429": err(
              "At your active-jobs or queued-variations limit (code quota_exceeded); see Retry-After; nothing is created; or, for a form sent again " +
                "with the Idempotency-Key of one still uploading, over your storage quota only by the room that first request holds (code request_in_progress, " +
                "Retry-After: 5: ask again for the job it makes); or over the account's request budget (code rate_limited)",
            ),
            "415": err("Not an MP4/MOV/M4V/WebM/MKV video, or a body neither multipart/form-data nor JSON (code unsupported_content_type)"),
            ...authErrorsWithOwn429,
          },
        },
      },
      "/api/jobs/cancel": {
        post: {
          summary: "Cancel several jobs (by ids, or all of yours in a status); does not wait",
          requestBody: { required: true, ...json("BulkCancelBody") },
          responses: { "200": ok("Per-job outcome", "BulkCancelResults"), "400": err("Invalid body"), ...jsonTooLarge, ...authErrors },
        },
      },
      "/api/jobs/{id}": {
        get: {
          summary: "One job with its files and variations",
          parameters: [jobIdParam],
          responses: { "200": ok("Job", "Job"), "404": err("Unknown, or another user's"), ...authErrors },
        },
        delete: {
          summary: "Delete a finished job with its files",
          parameters: [jobIdParam],
          responses: {
            "204": ok("Deleted"),
            "404": err("Unknown"),
            "409": err("Not finished: queued, processing, paused or cancelling (code job_active), also when a reopen won the race"),
            ...authErrors,
          },
        },
      },
      "/api/jobs/{id}/cancel": {
        post: {
          summary: "Cancel a job; waits up to 5 s for runners to stop",
          parameters: [jobIdParam],
          requestBody: { required: false, ...json("CancelBody") },
          responses: {
            "200": ok("Terminal: cancelled, or completed when every variation finished first", "Job"),
            "202": ok("Still cancelling (runners are stopping)", "Job"),
            "400": err("Invalid body: reason longer than 500 characters, or malformed JSON (an empty body is no body)"),
            "404": err("Unknown"),
            "409": err("Completed or failed (code not_cancellable, body carries job); a paused job can be cancelled"),
            ...jsonTooLarge,
            "415": err("A body that is not JSON (code unsupported_content_type)"),
            ...authErrors,
          },
        },
      },
      "/api/jobs/{id}/pause": {
        post: {
          summary: "Pause a queued/processing job: runners stop its encodes (like a cancel) and put them back in the queue; waits up to 5 s. Pausing a paused job answers it again (a retry after a lost answer)",
          parameters: [jobIdParam],
          responses: {
            "200": ok("Paused and nothing runs any more (or the job finished first)", "Job"),
            "202": ok("Paused; runners are still stopping", "Job"),
            "404": err("Unknown, or another user's"),
            "409": err("Not queued, processing or already paused (code not_pausable, body carries job); a paused job answers 200/202 again"),
            ...authErrors,
          },
        },
      },
      "/api/jobs/{id}/resume": {
        post: {
          summary: "Resume a paused job, or continue a cancelled one (every variation it did not complete, cancelled or failed, is queued again)",
          parameters: [jobIdParam, reopenKeyParam],
          responses: {
            "200": ok("Queued or processing again (or, with the Idempotency-Key of the job's last keyed reopen, the job as it is now: header Idempotent-Replayed: true)", "Job"),
            "400": err("A malformed Idempotency-Key"),
            "404": err("Unknown, or another user's"),
            "409": err("Not paused or cancelled (code job_active / not_resumable), nothing left to do in a cancelled job (nothing_to_resume), or over your storage quota / a limit on its own (quota_exceeded)"),
            "410": err("Expired (code expired) or a source video is gone (code source_gone)"),
            "422": err("The Idempotency-Key already asked this job for something else (code idempotency_key_reused); nothing changes"),
            "429": err("At your active-jobs or queued-variations limit (code quota_exceeded); see Retry-After; or over the account's request budget (code rate_limited)"),
            ...authErrorsWithOwn429,
          },
        },
      },
      "/api/jobs/{id}/retry": {
        post: {
          summary: "Retry the failed variations of a completed or failed job (same seeds, attempts reset)",
          parameters: [jobIdParam, reopenKeyParam],
          responses: {
            "200": ok("Queued or processing again (or, with the Idempotency-Key of the job's last keyed reopen, the job as it is now: header Idempotent-Replayed: true)", "Job"),
            "400": err("A malformed Idempotency-Key"),
            "404": err("Unknown, or another user's"),
            "409": err("Active (code job_active), cancelled (not_retryable: resume it), nothing failed (nothing_to_retry), or quota_exceeded"),
            "410": err("Expired (code expired) or a source video is gone (code source_gone)"),
            "422": err("The Idempotency-Key already asked this job for something else (code idempotency_key_reused); nothing changes"),
            "429": err("At your active-jobs or queued-variations limit (code quota_exceeded); see Retry-After; or over the account's request budget (code rate_limited)"),
            ...authErrorsWithOwn429,
          },
        },
      },
      "/api/jobs/{id}/more": {
        post: {
          summary: "Add N more variations per video to a finished (completed, cancelled or failed) job",
          parameters: [jobIdParam, reopenKeyParam],
          requestBody: { required: true, ...json("MoreVariationsBody") },
          responses: {
            "200": ok("Queued or processing again, with the new variations (or, with the Idempotency-Key of the job's last keyed reopen, the job as it is now, nothing added: header Idempotent-Replayed: true)", "Job"),
            "400": err("Bad count (field variations), or a malformed Idempotency-Key"),
            "404": err("Unknown, or another user's"),
            "409": err("Still active (code job_active), past 100 variations per video in all (too_many_variations), or quota_exceeded"),
            "410": err("Expired (code expired) or a source video is gone (code source_gone)"),
            "422": err("The Idempotency-Key already asked this job for something else (code idempotency_key_reused); nothing changes"),
            ...jsonTooLarge,
            "429": err("At your active-jobs or queued-variations limit (code quota_exceeded); see Retry-After; or over the account's request budget (code rate_limited)"),
            ...authErrorsWithOwn429,
          },
        },
      },
      "/api/jobs/{id}/download": {
        get: {
          summary: "ZIP (STORE) of the completed variations: <base>/<base>_varNN.mp4, then manifest.json and manifest.csv (per entry: source, variation, seed, duration, bytes, sha256, the runner's ssim/psnr/distinct (null when not measured), params)",
          parameters: [
            jobIdParam,
            { name: "Range", in: "header", required: false, schema: { type: "string" }, description: "bytes=<start>-[<end>]: resume an interrupted download" },
            { name: "If-Range", in: "header", required: false, schema: { type: "string" }, description: "The ETag of the ZIP the client holds part of; a changed job answers 200 with the whole new ZIP" },
          ],
          responses: {
            "200": { description: "ZIP with exact Content-Length and a strong ETag", content: { "application/zip": {} } },
            "206": { description: "The requested byte range of the same ZIP (Content-Range, ETag)", content: { "application/zip": {} } },
            "416": err("Range starts past the ZIP's end (code range_not_satisfiable; Content-Range: bytes */<length>)"),
            "404": err("Unknown, no completed outputs (code no_outputs), or an output without a recorded digest gone from storage (code output_missing, naming its ZIP entry)"),
            "409": err("Job not completed or cancelled: queued, processing, paused, cancelling or failed (code not_downloadable)"),
            "410": err("Expired (code expired)"),
            ...authErrors,
          },
        },
      },
      "/api/jobs/{id}/outputs/{outputId}": {
        get: {
          summary: "One output video (Range supported)",
          parameters: [jobIdParam, { name: "outputId", in: "path", required: true, schema: { type: "string" } }],
          responses: {
            "200": { description: "video/mp4", content: { "video/mp4": {} } },
            "206": { description: "Partial content", content: { "video/mp4": {} } },
            "404": err("Unknown, or its file is gone from storage"),
            "410": err("Expired"),
            "416": err("Range outside the video (code range_not_satisfiable; Content-Range: bytes */<size>)"),
            ...authErrors,
          },
        },
      },
      "/api/jobs/{id}/outputs/{outputId}/thumbnail": {
        get: {
          summary: "A still of one completed variation (made by its runner with the quality measurement, best effort)",
          parameters: [jobIdParam, { name: "outputId", in: "path", required: true, schema: { type: "string" } }],
          responses: {
            "200": { description: "Image", content: { "image/jpeg": {} } },
            "404": err("Unknown, or no thumbnail (no_thumbnail)"),
            "410": err("Expired"),
            ...authErrors,
          },
        },
      },
      "/api/jobs/{id}/thumbnail": {
        get: {
          summary: "Thumbnail of the first video (made by a runner, best effort)",
          parameters: [jobIdParam],
          responses: { "200": { description: "Image", content: { "image/jpeg": {} } }, "404": err("None"), ...authErrors },
        },
      },
      "/api/webhooks": {
        get: { summary: "List your webhooks (secrets are never shown again)", responses: { "200": ok("Webhooks", "WebhookList"), ...authErrors } },
        post: {
          summary: "Subscribe an endpoint to job events (Standard Webhooks; the secret is shown once)",
          description:
            "Events job.completed, job.cancelled, job.failed, job.paused; body: the job as GET /api/jobs/{id} returns it, " +
            "with {type, timestamp, data: the same job} beside its fields, signed with headers webhook-id, webhook-timestamp, webhook-signature (v1; a space-separated list, " +
            "one signature per secret while a rotated secret still signs). " +
            "At-least-once, retried with exponential backoff for 24 h. The url must be https on a public host.",
          parameters: [idempotencyKeyParam("the webhook it created, with its current secret, instead of a second one", "the webhook, answering for 24 hours")],
          requestBody: { required: true, ...json("CreateWebhookBody") },
          responses: {
            "201": ok("Created (or, with an Idempotency-Key already used, the webhook that key created: header Idempotent-Replayed: true)", "CreatedWebhook"),
            "400": err("Invalid body, or a malformed Idempotency-Key; invalid_webhook_url (not an http(s) URL, credentials in it) or webhook_url_not_allowed (plain http, or a private, loopback, link-local or local-only host)"),
            "409": err("At most 10 webhooks per account (code webhook_limit)"),
            "422": err("The Idempotency-Key already created a webhook from a request with another url or events (code idempotency_key_reused), or did so more than 24 hours ago (code idempotency_key_expired); nothing is created"),
            ...jsonTooLarge,
            ...authErrors,
            "403": err(`${authErrors["403"].description}, or an API token that expires (code expiring_token: the webhook would send your job events after it expired)`),
          },
        },
      },
      "/api/webhooks/{id}": {
        patch: {
          summary: "Change a webhook's url, events or both, keeping its id, secret and delivery log",
          description:
            "Deliveries still pending go to the new url; a new url starts with no failure hold (rows that were waiting " +
            "one out are tried now). New events apply to job changes from now on. Sending the same change again changes nothing.",
          parameters: [jobIdParam],
          requestBody: { required: true, ...json("UpdateWebhookBody") },
          responses: {
            "200": ok("Changed", "Webhook"),
            "400": err("Invalid body (neither url nor events, an unknown field, bad events); invalid_webhook_url or webhook_url_not_allowed as for POST; or a malformed id in the path"),
            "404": err("Unknown webhook, or another user's"),
            ...jsonTooLarge,
            ...authErrors,
            "403": err(`${authErrors["403"].description}, or a new url with an API token that expires (code expiring_token)`),
          },
        },
        delete: {
          summary: "Delete one of your webhooks and its delivery log",
          parameters: [jobIdParam],
          responses: { "204": ok("Deleted"), ...malformedId, "404": err("Unknown webhook, or another user's"), ...authErrors },
        },
      },
      "/api/webhooks/{id}/rotate-secret": {
        post: {
          summary: "Give the webhook a new signing secret (shown once); the replaced one keeps signing for a while",
          description:
            "Until previousSecretsValidUntil every delivery carries one signature per secret in webhook-signature " +
            "(space-separated, as Standard Webhooks allows), so a receiver holding either verifies while it switches. " +
            "The body is optional. keepPreviousSeconds 0 stops every old secret at once (a leaked secret). Secrets " +
            "replaced by earlier rotations that still sign keep signing, at least until previousSecretsValidUntil too (a " +
            "repeated rotation whose reply was lost drops nothing the receiver has), at most 5.",
          parameters: [jobIdParam],
          requestBody: { required: false, ...json("RotateWebhookSecretBody") },
          responses: {
            "200": ok("Rotated", "RotatedWebhookSecret"),
            "400": err("Invalid body: keepPreviousSeconds not an integer from 0 to 604800, an unknown field, or malformed JSON (an empty body is no body); or a malformed id in the path"),
            "404": err("Unknown webhook, or another user's"),
            "409": err("Other rotations of this webhook were under way at the same time (code rotation_conflict); try again"),
            ...jsonTooLarge,
            "415": err("A body that is not JSON (code unsupported_content_type)"),
            ...authErrors,
            "403": err(`${authErrors["403"].description}, or an API token that expires (code expiring_token: the new secret would sign for the webhook after it expired)`),
          },
        },
      },
      "/api/webhooks/{id}/deliveries": {
        get: {
          summary: "The webhook's delivery log, newest first (last 100)",
          parameters: [jobIdParam],
          responses: { "200": ok("Deliveries", "WebhookDeliveryList"), ...malformedId, "404": err("Unknown webhook, or another user's"), ...authErrors },
        },
      },
      "/api/webhooks/{id}/test": {
        post: {
          summary: "Send a webhook.test event",
          parameters: [jobIdParam],
          responses: {
            "202": ok("Queued", "QueuedDelivery"),
            ...malformedId,
            "404": err("Unknown webhook, or another user's"),
            "429": err("10 deliveries of this webhook are still being attempted (code too_many_pending); see Retry-After; or over the account's request budget (code rate_limited)"),
            ...authErrorsWithOwn429,
          },
        },
      },
      "/api/webhooks/{id}/deliveries/{deliveryId}/redeliver": {
        post: {
          summary: "Send a delivered or failed event again (same webhook-id and body, a new 24 h retry series)",
          parameters: [jobIdParam, { name: "deliveryId", in: "path", required: true, schema: { type: "string" } }],
          responses: {
            "202": ok("Queued", "QueuedDelivery"),
            "400": err("A malformed webhook or delivery id in the path (not 1–40 lowercase letters and digits; field id or deliveryId)"),
            "404": err("Unknown webhook or delivery, or another user's"),
            "409": err("Still being attempted (code delivery_pending)"),
            "429": err("10 deliveries of this webhook are still being attempted (code too_many_pending); see Retry-After; or over the account's request budget (code rate_limited)"),
            ...authErrorsWithOwn429,
          },
        },
      },
      "/api/limits": {
        get: {
          summary: "Your per-user limits and what you use of them",
          responses: { "200": ok("Limits and usage", "Limits"), ...authErrors },
        },
      },
      "/api/openapi.json": { get: { summary: "This document", security: [], responses: { "200": { description: "OpenAPI 3.1" } } } },
      "/api/health": {
        get: {
          summary: "Liveness and database reachability (no sign-in)",
          security: [],
          responses: { "200": ok("Up, database answered", "Health"), "503": ok("Database unreachable", "Health") },
        },
      },
    },
  };
  return withOperationIds(doc);
}

/**
 * Client generators name their methods after operationId: one stable, unique name per operation, written here
 * once. A route missing from this table (or from the document) fails test/edge/openapi.test.ts.
 */
export const OPERATION_IDS: Record<string, string> = {
  "POST /api/auth/login": "login",
  "POST /api/auth/logout": "logout",
  "GET /api/me": "getMe",
  "POST /api/me/password": "changePassword",
  "GET /api/me/sessions": "listSessions",
  "DELETE /api/me/sessions/{id}": "revokeSession",
  "POST /api/users/{id}/disable": "disableUser",
  "POST /api/users/{id}/enable": "enableUser",
  "POST /api/users/{id}/password": "setUserPassword",
  "GET /api/users": "listUsers",
  "POST /api/users": "createUser",
  "GET /api/tokens": "listTokens",
  "POST /api/tokens": "createToken",
  "DELETE /api/tokens/{id}": "deleteToken",
  "POST /api/uploads": "createUpload",
  "PUT /api/uploads/{id}/parts/{n}": "uploadPart",
  "POST /api/uploads/{id}/complete": "completeUpload",
  "DELETE /api/uploads/{id}": "deleteUpload",
  "GET /api/jobs": "listJobs",
  "POST /api/jobs": "createJob",
  "POST /api/jobs/cancel": "cancelJobs",
  "GET /api/jobs/{id}": "getJob",
  "DELETE /api/jobs/{id}": "deleteJob",
  "POST /api/jobs/{id}/cancel": "cancelJob",
  "POST /api/jobs/{id}/pause": "pauseJob",
  "POST /api/jobs/{id}/resume": "resumeJob",
  "POST /api/jobs/{id}/retry": "retryJob",
  "POST /api/jobs/{id}/more": "addVariations",
  "GET /api/jobs/{id}/download": "downloadJob",
  "GET /api/jobs/{id}/outputs/{outputId}": "getJobOutput",
  "GET /api/jobs/{id}/outputs/{outputId}/thumbnail": "getVariationThumbnail",
  "GET /api/jobs/{id}/thumbnail": "getJobThumbnail",
  "GET /api/limits": "getLimits",
  "GET /api/webhooks": "listWebhooks",
  "POST /api/webhooks": "createWebhook",
  "DELETE /api/webhooks/{id}": "deleteWebhook",
  "PATCH /api/webhooks/{id}": "updateWebhook",
  "POST /api/webhooks/{id}/rotate-secret": "rotateWebhookSecret",
  "GET /api/webhooks/{id}/deliveries": "listWebhookDeliveries",
  "POST /api/webhooks/{id}/test": "testWebhook",
  "POST /api/webhooks/{id}/deliveries/{deliveryId}/redeliver": "redeliverWebhookDelivery",
  "GET /api/openapi.json": "getOpenApi",
  "GET /api/health": "getHealth",
};

function withOperationIds<T extends { paths: Record<string, Record<string, object>> }>(doc: T): T {
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const id = OPERATION_IDS[`${method.toUpperCase()} ${path}`];
      if (id) ops[method] = { operationId: id, ...op };
    }
  }
  return doc;
}

let cached: ReturnType<typeof buildOpenApi> | undefined;

export const openapi = new Hono<AppEnv>().get("/", (c) => {
  cached ??= buildOpenApi(c.get("config").APP_VERSION);
  return c.json(cached);
});
