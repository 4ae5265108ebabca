// Refuses SQL that would make the server touch files other than its own databases.
//
// libsql 0.5.29's authorizer is a table allow-list that also denies every PRAGMA, transaction and function call,
// and the package exposes neither sqlite3_set_authorizer with a callback nor sqlite3_limit(SQLITE_LIMIT_ATTACHED),
// so the check is lexical: a real tokenizer (comments, string literals and quoted identifiers are understood, so
// `AT/**/TACH` is two words and `'attach'` is a string), erring on the side of refusing.

type Token = { kind: "word" | "quoted" | "punct"; text: string };

/** Keywords that open another database file. A bare word anywhere refuses the SQL, even as an identifier. */
const FILE_KEYWORDS = new Set(["attach", "detach"]);
/**
 * Functions and table-valued functions the libsql build ships that reach outside the database: readfile/writefile
 * and fsdir (the fileio extension), sha3_query (runs the SQL text it is given, past this check), fts3_tokenizer
 * (takes a pointer), load_extension. Refused wherever they are named, quoted or not ("readfile"(…) is a call too).
 */
const FILE_FUNCTIONS = new Set(["load_extension", "readfile", "writefile", "fsdir", "sha3_query", "fts3_tokenizer"]);
/** PRAGMAs that take a directory to write into. */
const FILE_PRAGMAS = new Set(["temp_store_directory", "data_store_directory"]);

/** Throws a Hrana error result (code SQLITE_AUTH, as a denying authorizer would) when `sql` could touch files. */
export function refuseFileAccess(sql: string): void {
  const tokens = tokenize(sql);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const name = t.text.toLowerCase();
    if (t.kind === "word" && FILE_KEYWORDS.has(name)) {
      refuse(`${name.toUpperCase()} is refused: this server only serves its own databases`);
    }
    if (t.kind !== "punct" && FILE_FUNCTIONS.has(name)) {
      refuse(`${name} is refused: this server does not touch files or run SQL strings on behalf of clients`);
    }
    if (t.kind === "word" && name === "vacuum") {
      for (let j = i + 1; j < tokens.length && tokens[j]!.text !== ";"; j++) {
        if (tokens[j]!.kind === "word" && tokens[j]!.text.toLowerCase() === "into") refuse("VACUUM INTO is refused: it writes a file");
      }
    }
    if (t.kind === "word" && name === "pragma") {
      // PRAGMA [schema.]name
      const pragma = tokens[i + 2]?.text === "." ? tokens[i + 3] : tokens[i + 1];
      if (pragma && FILE_PRAGMAS.has(pragma.text.toLowerCase())) refuse(`PRAGMA ${pragma.text} is refused: it names a directory`);
    }
  }
}

/** Shaped like a SqliteError, so toHranaError reports it as an ordinary SQLite error result. */
function refuse(message: string): never {
  throw Object.assign(new Error(`not authorized: ${message}`), { code: "SQLITE_AUTH" });
}

const WORD_START = /[A-Za-z_\u0080-\uffff]/;
const WORD_PART = /[A-Za-z0-9_$\u0080-\uffff]/;

/** SQLite's lexical rules, reduced to what the guard needs. String literals are dropped. */
export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "-" && sql[i + 1] === "-") {
      const end = sql.indexOf("\n", i);
      i = end < 0 ? n : end + 1;
    } else if (c === "/" && sql[i + 1] === "*") {
      const end = sql.indexOf("*/", i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === "'") {
      i = skipQuoted(sql, i, "'").end;
    } else if (c === '"' || c === "`") {
      const q = skipQuoted(sql, i, c);
      tokens.push({ kind: "quoted", text: q.text });
      i = q.end;
    } else if (c === "[") {
      const end = sql.indexOf("]", i + 1);
      tokens.push({ kind: "quoted", text: sql.slice(i + 1, end < 0 ? n : end) });
      i = end < 0 ? n : end + 1;
    } else if (WORD_START.test(c)) {
      let j = i + 1;
      while (j < n && WORD_PART.test(sql[j]!)) j++;
      tokens.push({ kind: "word", text: sql.slice(i, j) });
      i = j;
    } else {
      tokens.push({ kind: "punct", text: c });
      i++;
    }
  }
  return tokens;
}

/** A quoted run where the quote character is escaped by doubling it. */
function skipQuoted(sql: string, start: number, quote: string): { text: string; end: number } {
  let text = "";
  let i = start + 1;
  while (i < sql.length) {
    if (sql[i] === quote) {
      if (sql[i + 1] !== quote) return { text, end: i + 1 };
      text += quote;
      i += 2;
    } else {
      text += sql[i];
      i++;
    }
  }
  return { text, end: sql.length };
}
