/**
 * The filter language: whitespace-separated terms that must all match.
 * `status:5xx` (a class), `status:404` (exact), `pid:123` (exact pid), and
 * anything else a case-insensitive substring of the row's shown text.
 */

/**
 * A predicate `(row, haystack) => boolean` for the text, or null when the
 * text has no terms (everything matches). `statusIndex` is the row index of
 * the status value, or -1 when the module has none (status terms are then
 * plain text). The haystack is the row's lowercased text, made once per row.
 */
export function compileFilter(text, statusIndex) {
  const tests = [];
  for (const term of text.trim().split(/\s+/)) {
    if (term) tests.push(compileTerm(term, statusIndex));
  }
  if (tests.length === 0) return null;
  if (tests.length === 1) return tests[0];
  return (row, hay) => {
    for (const test of tests) if (!test(row, hay)) return false;
    return true;
  };
}

function compileTerm(term, statusIndex) {
  let m;
  if ((m = /^pid:(\d+)$/i.exec(term))) {
    const pid = Number(m[1]);
    return (row) => row[2] === pid;
  }
  if (statusIndex >= 0 && (m = /^status:([1-5])xx$/i.exec(term))) {
    const low = Number(m[1]) * 100;
    return (row) => {
      const s = statusNumber(row[statusIndex]);
      return s >= low && s < low + 100;
    };
  }
  if (statusIndex >= 0 && (m = /^status:(\d+)$/i.exec(term))) {
    const want = Number(m[1]);
    return (row) => statusNumber(row[statusIndex]) === want;
  }
  const needle = term.toLowerCase();
  return (_row, hay) => hay.includes(needle);
}

/** The number a status value starts with ("404", 404, "500 oops"), else NaN. */
export function statusNumber(v) {
  // parseInt, not Number: a missing status (null, "") must not count as 0
  return typeof v === "number" ? v : parseInt(v, 10);
}
