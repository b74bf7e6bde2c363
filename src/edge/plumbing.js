// The runtime calls of the request path that wasm would otherwise make one by one: the incoming
// request's head read in one call, and an upstream call (its `fetch`, its deadline timer and, for
// a small answer, its whole body) made as one promise. JS moves the bytes; wasm decides.
// Bound in `plumbing.rs`.

/** The request headers the core reads, in the order `runtime.rs` takes them apart (`head`). */
const HEAD_NAMES = [
  'content-type', 'authorization', 'origin', 'access-control-request-headers', 'x-imagegate-config',
  'x-imagegate-cache', 'cache-control', 'if-none-match', 'prefer', 'ouro-action-id', 'ouro-webhook-url',
  'ouro-webhook-token', 'ouro-route-id', 'content-length',
];
/** Stands for an absent header: no header value can hold a NUL (the Fetch standard). */
const ABSENT = '\0';

/**
 * `request`'s method, URL and the headers of `HEAD_NAMES`, one per line: a header value never
 * holds a line break, so the lines cannot be confused.
 */
export function head(request) {
  const { headers } = request;
  let text = `${request.method}\n${request.url}`;
  for (const name of HEAD_NAMES) text += `\n${headers.get(name) ?? ABSENT}`;
  return text;
}

/** The headers of `lines` (`name\0value` lines; a repeated name keeps its last value). */
function headersOf(lines) {
  const headers = new Headers();
  if (lines === '') return headers;
  for (const line of lines.split('\n')) {
    const at = line.indexOf('\0');
    headers.set(line.slice(0, at), line.slice(at + 1));
  }
  return headers;
}

/** What a call's promise rejects with when its time is up. */
export const TIMED_OUT = 'imagegate: the call timed out';

/**
 * Calls `url` (no redirects followed) within `limitMs`, and reads a small answer's body whole
 * (an unencoded one of declared length at most `wholeBytes`) within the same limit: one timer.
 * `headerLines` holds `name\0value` lines. Resolves to the answer's response, its head as
 * lines (status, retry-after, retry-after-ms, content-type, location, length or empty) and,
 * for a small answer, its body; rejects with `TIMED_OUT` when the time is up first (a late
 * answer's body is then cancelled) or with the runtime's error.
 */
export function call(url, method, headerLines, body, signal, limitMs, wholeBytes) {
  const init = { method, headers: headersOf(headerLines), redirect: 'manual' };
  if (body !== undefined) init.body = body;
  if (signal !== undefined) init.signal = signal;
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(TIMED_OUT);
    }, limitMs);
    const fail = (error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(error);
    };
    fetch(url, init).then((response) => {
      if (done) {
        response.body?.cancel().catch(() => {});
        return;
      }
      const answer = response.headers;
      const encoded = (answer.get('content-encoding') ?? 'identity').trim().toLowerCase() !== 'identity';
      const declared = answer.get('content-length');
      // The runtime decodes gzip and brotli but keeps the encoded length: trusted unencoded only.
      const length = !encoded && declared !== null && /^\d+$/.test(declared) ? declared : '';
      const meta = [response.status, answer.get('retry-after') ?? ABSENT, answer.get('retry-after-ms') ?? ABSENT,
        answer.get('content-type') ?? ABSENT, answer.get('location') ?? ABSENT, length].join('\n');
      const finish = (whole) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve({ response, meta, whole });
      };
      if (response.body !== null && length !== '' && Number(length) <= wholeBytes) {
        response.arrayBuffer().then((buffer) => finish(new Uint8Array(buffer)), fail);
      } else {
        finish(undefined);
      }
    }, fail);
  });
}

/** `reader`'s next chunk, or `undefined` at the end: read without taking the result apart in wasm. */
export function nextChunk(reader) {
  return reader.read().then((result) => (result.done ? undefined : result.value));
}

/**
 * Whether `bytes`, after the `tail` bytes that came before them, end a line right after another
 * (a blank line: the end of an event), however the line endings are written (LF, CR or CR LF).
 * Only a hint for gathering bytes: the gateway's reader parses them exactly.
 */
function endsAnEvent(tail, bytes) {
  const at = (i) => (i >= 0 ? bytes[i] : tail[tail.length + i]);
  const blankAt = (i) => {
    const previous = at(i - 1);
    return previous === 10 || (previous === 13 && (bytes[i] === 13 || at(i - 2) === 10 || at(i - 2) === 13));
  };
  for (const end of [10, 13]) {
    for (let i = bytes.indexOf(end); i !== -1; i = bytes.indexOf(end, i + 1)) if (blankAt(i)) return true;
  }
  return false;
}

/** The most bytes gathered before they are handed over, an event's end or not. */
const GATHERED_BYTES = 64 * 1024;

/** A reader for `nextEvents`: a BYOB reader, so that the runtime fills one buffer, where it can. */
export function eventsReader(stream) {
  try {
    return stream.getReader({ mode: 'byob' });
  } catch {
    return stream.getReader();
  }
}

/** Where a BYOB reader keeps its buffer between reads, and the last bytes it handed over. */
const SPARE = Symbol('imagegate: the buffer for the next read');
const TAIL = Symbol('imagegate: the last bytes handed over');

/** The last three bytes of `tail` followed by `bytes`, copied. */
function lastThree(tail, bytes) {
  return bytes.length >= 3 ? bytes.slice(bytes.length - 3) : Uint8Array.of(...tail, ...bytes).slice(-3);
}

/**
 * `reader`'s next bytes of an event stream, gathered until they hold the end of an event, fill
 * GATHERED_BYTES, or the stream ends, as one buffer; `undefined` at the end. One crossing into
 * wasm per event (or per GATHERED_BYTES of a larger one) rather than per chunk; the gateway's
 * reader does the exact parsing. From a BYOB reader the bytes are a view of its one buffer,
 * valid until the next call (wasm copies them at once).
 */
export async function nextEvents(reader) {
  // A stream without BYOB reads (none the runtime's fetch gives) is handed over a chunk at a time.
  if (typeof ReadableStreamBYOBReader === 'undefined' || !(reader instanceof ReadableStreamBYOBReader)) return nextChunk(reader);
  const carried = reader[TAIL] ?? new Uint8Array(0);
  let buffer = reader[SPARE] ?? new ArrayBuffer(GATHERED_BYTES);
  let filled = 0;
  for (;;) {
    const { done, value } = await reader.read(new Uint8Array(buffer, filled, buffer.byteLength - filled));
    // The stream was cancelled (the gateway gave it up): the buffer went with it, and so did
    // anything gathered.
    if (value === undefined) return undefined;
    buffer = value.buffer;
    if (done) break;
    const before = lastThree(carried, new Uint8Array(buffer, 0, filled));
    const fresh = new Uint8Array(buffer, filled, value.byteLength);
    filled += value.byteLength;
    if (filled === buffer.byteLength || endsAnEvent(before, fresh)) break;
  }
  reader[SPARE] = buffer;
  reader[TAIL] = lastThree(carried, new Uint8Array(buffer, 0, filled));
  return filled === 0 ? undefined : new Uint8Array(buffer, 0, filled);
}

/** Aborts `writer`, breaking its stream off (its reader sees an error); a failure is ignored. */
export function abortQuietly(writer) {
  writer.abort(new Error('imagegate: the client did not take the stream in time')).catch(() => {});
}

/** Closes `writer` without waiting for its reader; a failure (its reader has gone) is ignored. */
export function closeQuietly(writer) {
  writer.close().catch(() => {});
}

/**
 * The response of `status` with the headers of `headerLines` (`name\0value` lines) and `body`
 * (a buffer, a stream, or null): one call for what would be a call per header.
 */
export function respond(status, headerLines, body) {
  return new Response(body, { status, headers: headersOf(headerLines) });
}
