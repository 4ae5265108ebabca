/**
 * C0 controls (ESC, BEL, CR, LF…), DEL, the C1 controls (CSI U+009B…), the line and paragraph separators, and the
 * bidirectional overrides and isolates (U+202E reverses what follows: a name could make a row of `ls` read as
 * another). Applied where lines are written, to text the CLI composed too, so a backslash (the CLI's own) stays.
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * A string from the server (a file name, a job's error or cancel reason, an API message) made safe to print for
 * people: its control characters shown as `\xNN` (`\uNNNN` past U+00FF). An admin's `ls` lists other users'
 * files, and a name carrying escape sequences would otherwise drive the admin's terminal (rewrite the clipboard,
 * clear or hide the screen), or a newline fake a line of output. `--json` output is JSON's own escaping and left as is.
 */
export function printable(s: string): string {
  return s.replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? `\\u${code.toString(16).padStart(4, "0")}` : `\\x${code.toString(16).padStart(2, "0")}`;
  });
}

/** `printable` for text of several lines the CLI laid out itself (fields already printable): its line breaks stay. */
export function printableLines(text: string): string {
  return text.split("\n").map(printable).join("\n");
}
