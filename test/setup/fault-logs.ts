// Setup file of the fault drills: when a drill fails, its stack's last log lines are the evidence of what the
// runners, the edge and the database were doing (a timeout alone says nothing about which side stalled).
import { beforeEach } from "vitest";
import { liveFaultStacks } from "../faults/support";

const TAIL = 120;

beforeEach(({ onTestFailed }) => {
  onTestFailed(() => {
    for (const fs of liveFaultStacks) {
      const t0 = fs.lines[0]?.at ?? 0;
      const tail = fs.lines.slice(-TAIL).map((l) => `+${((l.at - t0) / 1000).toFixed(1)}s ${l.line}`);
      console.log(`\n[fault] last ${tail.length} of ${fs.lines.length} log lines of the stack in ${fs.dir}:\n${tail.join("\n")}`);
    }
  });
});
