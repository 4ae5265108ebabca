import { chartBars } from "../shared/variation-words.js";
import type { Variation } from "../shared/types.js";

/**
 * The small per-source chart of the job page: for each measured variation a pair of bars, SSIM against the source
 * (0–1) and distinctness from the closest sibling (relative to the most distinct one). Built with DOM APIs only
 * (createElementNS, textContent): nothing is parsed as markup.
 */
const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 72;
const BAR = 10;
const GAP = 2;
const GROUP = 2 * BAR + GAP + 10;

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Renders the chart into `figure` (replacing what was there); hides it while nothing is measured. */
export function renderQualityChart(figure: HTMLElement, fileName: string, variations: readonly Variation[]): void {
  const { bars, distinctScale } = chartBars(variations);
  const key = JSON.stringify(bars);
  if (figure.dataset.key === key) return;
  figure.dataset.key = key;
  figure.hidden = bars.length === 0;
  if (bars.length === 0) {
    figure.replaceChildren();
    return;
  }
  const width = bars.length * GROUP + 4;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${HEIGHT + 14}`,
    width,
    height: HEIGHT + 14,
    role: "img",
    class: "quality-chart-svg",
  });
  chart.append(svg("title", {}, `Quality of the variations of ${fileName}: SSIM and distinctness per variation`));
  chart.append(svg("line", { x1: 0, y1: HEIGHT + 0.5, x2: width, y2: HEIGHT + 0.5, class: "axis" }));
  bars.forEach((b, i) => {
    const x = 2 + i * GROUP;
    const g = svg("g", { "data-index": b.index });
    g.append(svg("title", {}, b.label));
    const hs = Math.max(1, Math.round(b.ssim * HEIGHT));
    const hd = Math.max(1, Math.round(b.distinct * HEIGHT));
    g.append(svg("rect", { x, y: HEIGHT - hs, width: BAR, height: hs, class: "bar-ssim" }));
    g.append(svg("rect", { x: x + BAR + GAP, y: HEIGHT - hd, width: BAR, height: hd, class: "bar-distinct" }));
    g.append(svg("text", { x: x + BAR + GAP / 2, y: HEIGHT + 12, "text-anchor": "middle", class: "bar-label" }, String(b.index)));
    chart.append(g);
  });
  const caption = document.createElement("figcaption");
  const swatch = (cls: string) => {
    const s = document.createElement("span");
    s.className = `swatch ${cls}`;
    s.setAttribute("aria-hidden", "true");
    return s;
  };
  caption.append(
    swatch("swatch-ssim"),
    " SSIM vs source (0–1) ",
    swatch("swatch-distinct"),
    ` distinct from closest sibling (full bar = ${distinctScale.toFixed(1)}\u00a0%)`,
  );
  figure.replaceChildren(chart, caption);
}
