import type { Db } from "../../client";
import { ConflictError } from "../../errors";
import { loadJobRow } from "./load";
import { isTerminal, type Viewer } from "./present";

/** Checks that the viewer may delete the job now (it exists, is theirs and is finished). */
export async function assertJobDeletable(db: Db, input: { jobId: string; viewer: Viewer }): Promise<void> {
  const job = await loadJobRow(db, input.jobId, input.viewer);
  if (!isTerminal(job.status)) {
    throw new ConflictError("job_active", `A ${job.status} job cannot be deleted; cancel it first`);
  }
}
