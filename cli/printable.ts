/** C0 controls (ESC, BEL, CR, LF…), DEL and the C1 controls (CSI U+009B…). */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * A string from the server (a file name, a job's error or cancel reason, an API message) made safe to print for
 * people: its control characters shown as `\xNN`. An admin's `ls` lists other users' files, and a name carrying
 * escape sequences would otherwise drive the admin's terminal (rewrite the clipboard, clear or hide the screen), or
 * a newline fake a line of output. `--json` output is JSON's own escaping and left as is.
 */
export function printable(s: string): string {
  return s.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** `printable` for text of several lines the CLI laid out itself (fields already printable): its line breaks stay. */
export function printableLines(text: string): string {
  return text.split("\n").map(printable).join("\n");
}
