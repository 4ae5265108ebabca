/**
 * Tiny element builder. Every string child becomes a Text node and every attribute goes through setAttribute, so
 * user data (file names, cancel reasons, e-mails) can never be parsed as HTML. There is deliberately no
 * innerHTML anywhere in the client.
 */
type Child = Node | string | number | null | undefined | false;

export interface Props {
  class?: string;
  text?: string;
  attrs?: Record<string, string | number | boolean | null | undefined>;
  on?: { [K in keyof HTMLElementEventMap]?: (ev: HTMLElementEventMap[K]) => void };
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.attrs) setAttrs(el, props.attrs);
  if (props.on) {
    for (const [type, fn] of Object.entries(props.on)) el.addEventListener(type, fn as EventListener);
  }
  if (props.text !== undefined) el.textContent = props.text;
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

export function setAttrs(el: Element, attrs: Record<string, string | number | boolean | null | undefined>): void {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) el.removeAttribute(name);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

export function clear(el: Element): void {
  el.replaceChildren();
}

/** Sets text only when it differs, so polling re-renders do not disturb selection or screen readers. */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
}

/** <time datetime="…" title="full local time">text</time> */
export function timeEl(iso: string, text: string): HTMLTimeElement {
  return h("time", { attrs: { datetime: iso, title: new Date(iso).toLocaleString() }, text });
}

export function formatDateTime(iso: string): string {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/** A labelled progress bar; the label gives the accessible name ("Progress of clip.mp4"). */
export function progressBar(label: string, value: number): HTMLProgressElement {
  return h("progress", { attrs: { max: 100, value, "aria-label": label } });
}

export function updateProgress(bar: HTMLProgressElement, value: number): void {
  if (bar.value !== value) bar.value = value;
}
