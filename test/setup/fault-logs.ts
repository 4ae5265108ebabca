// Setup file of the fault drills: when a drill fails, its stack's last log lines are the evidence of what the
// runners, the edge and the database were doing (a timeout alone says nothing about which side stalled).
import { beforeEach } from "vitest";
import { liveFaultStacks, logTail } from "../faults/support";

const TAIL = 120;

beforeEach(({ onTestFailed }) => {
  onTestFailed(() => {
    for (const fs of liveFaultStacks) {
      const shown = Math.min(TAIL, fs.lines.length);
      console.log(`\n[fault] last ${shown} of ${fs.lines.length} log lines of the stack in ${fs.dir}:\n${logTail(fs.lines, TAIL)}`);
    }
  });
});
