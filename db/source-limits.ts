/**
 * Caps on what a runner agrees to encode, checked when it probes a source (before any encode). A contract both
 * sides use: runners enforce them (MAX_SOURCE_SECONDS / MAX_SOURCE_DIMENSION override the defaults), the edge and
 * the docs show them. A longer or bigger source fails its job's variations with a reason that names the limit.
 */
export const SOURCE_LIMIT_DEFAULTS = {
  /** 30 minutes: ad creatives are seconds to minutes long; longer files are almost always a wrong upload. */
  maxSeconds: 1800,
  /** Either side, in pixels after rotation: 4096 covers 4K UHD and DCI in both orientations. */
  maxDimension: 4096,
} as const;

export interface SourceLimits {
  maxSeconds: number;
  maxDimension: number;
}

/** Why a probed source is over the limits, in words for the user, or null when it is within them. */
export function sourceOverLimits(media: { durationMs: number; width: number; height: number }, limits: SourceLimits): string | null {
  if (media.durationMs > limits.maxSeconds * 1000) {
    return `source is too long: ${formatDuration(media.durationMs / 1000)}; the limit is ${formatDuration(limits.maxSeconds)}`;
  }
  if (media.width > limits.maxDimension || media.height > limits.maxDimension) {
    return `source resolution ${media.width}×${media.height} is too large; the limit is ${limits.maxDimension} px on either side`;
  }
  return null;
}

function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  const rest = s % 60;
  return rest ? `${m} min ${rest} s` : `${m} min`;
}
