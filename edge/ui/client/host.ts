import type { PollHost } from "../shared/poll.js";

/** The real browser behind the DOM-free Poller. */
export const browserHost: PollHost = {
  setTimeout: (fn, ms) => window.setTimeout(fn, ms),
  clearTimeout: (handle) => window.clearTimeout(handle as number),
  isHidden: () => document.visibilityState === "hidden",
  onVisibilityChange(fn) {
    document.addEventListener("visibilitychange", fn);
    return () => document.removeEventListener("visibilitychange", fn);
  },
  random: () => Math.random(),
};
