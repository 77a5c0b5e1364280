/**
 * Property-based fuzzing of everything a peer parses (fast-check, pinned in package.json):
 * the unix codec's readers (src/protocol/codec.ts), the stream protocol's client-message parser,
 * frame header and tile decoder (src/stream/protocol.ts, src/stream/tiles.ts), and the native
 * channel's framing (native/posix/channel.cc) through a real socketpair with real fds.
 *
 * Jazzer.js (coverage-guided, libFuzzer) was the first choice; its only release with prebuilt
 * addons (@jazzer.js/fuzzer 4.0.0) needs glibc 2.38 (`__isoc23_strtol`), and Debian 12 here and in
 * CI has 2.36; the older releases download their addon at install time. So these are
 * property-based: structured generators (valid messages, then byte mutations and arbitrary
 * bytes), shrinking to a minimal counterexample when a property fails.
 *
 * Properties: a reader either returns or throws a SurfaceLinkError with a stable code (never a
 * TypeError, RangeError or a hang); a valid message written by the codec reads back to the same
 * values; the native channel delivers exactly the messages, handles and error the spec's framing
 * rules (docs/protocol.md §2.2–§2.4) give for the same bytes.
 */
import fc from 'fast-check';
import { ErrorCode, SurfaceLinkError } from '../../../src/errors.js';
import { posixChannels, type NativeChannel, type NativeFd } from '../../../src/native/index.js';
import * as codec from '../../../src/protocol/codec.js';
import { parseClientMessage, readFrameHeader, type FrameHeader } from '../../../src/stream/protocol.js';
import { applyTilesSync } from '../../../src/stream/tiles.js';

const STABLE = new Set(Object.keys(ErrorCode));

/** Runs `fn`; a SurfaceLinkError with a stable code is fine, anything else is a finding. */
function onlyStableErrors(what: string, fn: () => unknown): void {
  try {
    fn();
  } catch (error) {
    if (error instanceof SurfaceLinkError && STABLE.has(error.code)) return;
    throw new Error(`${what} threw ${(error as Error)?.name}: ${(error as Error)?.message}`, { cause: error });
  }
}

type Reader = (view: DataView, start: number, length: number) => unknown;
const READERS: [string, Reader][] = [
  ['readHello', codec.readHello],
  ['readWelcome', codec.readWelcome],
  ['readError', codec.readError],
  ['readScanout', (v, s, l) => codec.readScanout(v, s, l, v.getUint8(s + 6))],
  ['readFrame', codec.readFrame],
  ['checkRelease', codec.checkRelease],
  ['readRetire', codec.readRetire],
  ['readSurfaceGone', codec.readSurfaceGone],
  ['readImportFailed', codec.readImportFailed],
  ['readMechanism', codec.readMechanism],
  ['readKey', codec.readKey],
  ['readPointer', codec.readPointer],
  ['readMotion', codec.readMotion],
  ['readButton', codec.readButton],
  ['readScroll', codec.readScroll],
  ['readTouch', codec.readTouch],
  ['readInputMode', codec.readInputMode],
  ['readCursorShape', codec.readCursorShape],
  ['readCursorMove', codec.readCursorMove],
];

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const i32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const u53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const rect = fc.record({ x: u32, y: u32, width: u32, height: u32 });
const shortText = fc.string({ maxLength: 200, unit: 'grapheme' });
const peer = fc.record({
  name: shortText,
  pid: fc.integer(),
  platform: fc.constantFrom('linux', 'darwin', 'win32'),
  host: fc.record({ bootId: fc.option(shortText), machineId: fc.option(shortText) }),
});

/** A valid message of any type, written by the codec, with what reading it must give back. */
const validMessage: fc.Arbitrary<{ bytes: Buffer; check: (view: DataView, length: number) => void }> = fc.oneof(
  fc.record({ s: u32, c: u32, p: fc.boolean() }).map(({ s, c, p }) =>
    encoded(
      (w) => codec.writeKey(w, s, c, p),
      (v, l) => same(codec.readKey(v, 0, l), { surfaceId: s, code: c, pressed: p ? 1 : 0 }),
    ),
  ),
  fc.record({ s: u32, x: u32, y: u32 }).map(({ s, x, y }) =>
    encoded(
      (w) => codec.writePointer(w, s, x, y),
      (v, l) => same(codec.readPointer(v, 0, l), { surfaceId: s, x, y }),
    ),
  ),
  fc.record({ s: u32, x: i32, y: i32 }).map(({ s, x, y }) =>
    encoded(
      (w) => codec.writeMotion(w, s, x, y),
      (v, l) => same(codec.readMotion(v, 0, l), { surfaceId: s, dx: x, dy: y }),
    ),
  ),
  fc.record({ s: u32, b: u32, p: fc.boolean() }).map(({ s, b, p }) =>
    encoded(
      (w) => codec.writeButton(w, s, b, p),
      (v, l) => same(codec.readButton(v, 0, l), { surfaceId: s, button: b, pressed: p ? 1 : 0 }),
    ),
  ),
  fc.record({ s: u32, x: i32, y: i32 }).map(({ s, x, y }) =>
    encoded(
      (w) => codec.writeScroll(w, s, x, y),
      (v, l) => same(codec.readScroll(v, 0, l), { surfaceId: s, dx: x, dy: y }),
    ),
  ),
  fc.record({ s: u32, ph: u32, sl: u32, x: u32, y: u32 }).map(({ s, ph, sl, x, y }) =>
    encoded(
      (w) => codec.writeTouch(w, s, ph, sl, x, y),
      (v, l) => same(codec.readTouch(v, 0, l), { surfaceId: s, phase: ph, slot: sl, x, y }),
    ),
  ),
  fc.record({ s: u32, b: u32, q: u53 }).map(({ s, b, q }) =>
    encoded(
      (w) => codec.writeRelease(w, s, b, q),
      (v, l) => {
        codec.checkRelease(v, 0, l);
        same(
          { s: codec.releaseSurfaceId(v, 0), b: codec.releaseBufferId(v, 0), q: codec.releaseSequence(v, 0) },
          { s, b, q },
        );
      },
    ),
  ),
  fc.record({ s: u32, b: u32, q: u53, t: u53, d: fc.array(rect, { maxLength: 64 }) }).map(({ s, b, q, t, d }) =>
    encoded(
      (w) => codec.writeFrame(w, s, b, q, t, d, d.length),
      (v, l) =>
        same(codec.readFrame(v, 0, l), {
          surfaceId: s,
          bufferId: b,
          sequence: q,
          presentTimeNs: t,
          fenced: false,
          damage: d,
        }),
    ),
  ),
  fc.record({ c: u32, f: fc.boolean(), m: shortText }).map(({ c, f, m }) =>
    encoded(
      (w) => codec.writeError(w, c, f, m),
      (v, l) => same(codec.readError(v, 0, l), { code: c, fatal: f, message: m.slice(0, 1024) }),
    ),
  ),
  fc.record({ s: u32, b: u32, c: u32, r: shortText }).map(({ s, b, c, r }) =>
    encoded(
      (w) => codec.writeImportFailed(w, s, b, c, r),
      (v, l) => same(codec.readImportFailed(v, 0, l), { surfaceId: s, bufferId: b, code: c, reason: r }),
    ),
  ),
  fc.record({ m: shortText, r: shortText }).map(({ m, r }) =>
    encoded(
      (w) => codec.writeMechanism(w, m, r),
      (v, l) => same(codec.readMechanism(v, 0, l), { mechanism: m, reason: r }),
    ),
  ),
  fc.record({ s: u32, b: u32 }).map(({ s, b }) =>
    encoded(
      (w) => codec.writeRetire(w, s, b),
      (v, l) => same(codec.readRetire(v, 0, l), { surfaceId: s, bufferId: b }),
    ),
  ),
  fc.record({ s: u32 }).map(({ s }) =>
    encoded(
      (w) => codec.writeSurfaceGone(w, s),
      (v, l) => same(codec.readSurfaceGone(v, 0, l), { surfaceId: s }),
    ),
  ),
  fc.record({ s: u32, m: fc.integer({ min: 0, max: 1 }) }).map(({ s, m }) =>
    encoded(
      (w) => codec.writeInputMode(w, s, m),
      (v, l) => same(codec.readInputMode(v, 0, l), { surfaceId: s, mode: m }),
    ),
  ),
  fc.record({ s: u32, x: i32, y: i32, vis: fc.boolean() }).map(({ s, x, y, vis }) =>
    encoded(
      (w) => codec.writeCursorMove(w, s, x, y, vis),
      (v, l) => same(codec.readCursorMove(v, 0, l), { surfaceId: s, x, y, visible: vis }),
    ),
  ),
  fc
    .record({
      p: peer,
      min: fc.integer({ min: 0, max: 65535 }),
      max: fc.integer({ min: 0, max: 65535 }),
      mech: fc.uniqueArray(fc.string({ minLength: 1, maxLength: 64 }), { minLength: 1, maxLength: 16 }),
    })
    .map(({ p, min, max, mech }) => {
      const info = { ...p, mechanisms: mech.map((name) => ({ name })) };
      return encoded(
        (w) => codec.writeHello(w, min, max, info),
        (v, l) => {
          const r = codec.readHello(v, 0, l);
          same(
            { min: r.minVersion, max: r.maxVersion, mech: r.info.mechanisms.map((m) => m.name), name: r.info.name },
            { min, max, mech, name: p.name.slice(0, 256) },
          );
        },
      );
    }),
);

function encoded(write: (w: codec.MessageWriter) => number, check: (view: DataView, length: number) => void) {
  const w = new codec.MessageWriter(65536);
  const n = write(w);
  return { bytes: Buffer.from(w.bytes.subarray(0, n)), check };
}

function same(actual: unknown, expected: unknown): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`read back ${a}, wrote ${e}`);
}

const viewOf = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** A header (8 bytes; a known type or not; a length that may lie) and a body: what a peer's bytes look like. */
const messageLike = fc
  .record({
    type: fc.oneof(
      fc.constantFrom(
        1,
        2,
        3,
        0x10,
        0x11,
        0x12,
        0x13,
        0x14,
        0x20,
        0x21,
        0x30,
        0x31,
        0x32,
        0x33,
        0x34,
        0x35,
        0x36,
        0x40,
        0x41,
      ),
      fc.integer({ min: 0, max: 0xffff }),
    ),
    handles: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })),
    flags: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })),
    body: fc.oneof(
      fc.uint8Array({ maxLength: 400 }),
      fc
        .json()
        .map((j) => new Uint8Array(Buffer.concat([Buffer.from([0x53, 0x4c, 0x4e, 0x4b, 1, 0, 1, 0]), Buffer.from(j)]))),
    ),
  })
  .map(({ type, handles, flags, body }) => {
    const b = Buffer.alloc(8 + body.length);
    b.writeUInt32LE(b.length, 0);
    b.writeUInt16LE(type, 4);
    b[6] = handles;
    b[7] = flags;
    b.set(body, 8);
    return b;
  });

/** A valid message with 1–4 random byte edits. */
const mutatedMessage = fc
  .tuple(validMessage, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }))
  .map(([m, edits]) => {
    const b = Buffer.from(m.bytes);
    for (const [at, v] of edits) b[at % b.length] = v;
    return b;
  });

export interface PropertyRun {
  name: string;
  runs: number;
  ms: number;
}

/** Every property, `runs` cases each (or until `deadline`, ms since the epoch); throws the first counterexample. */
export function runCodecProperties(runs: number, seed: number, log: (s: string) => void = () => {}): PropertyRun[] {
  const results: PropertyRun[] = [];
  const check = (name: string, prop: fc.IProperty<any>, n = runs): void => {
    const t0 = performance.now();
    const out = fc.check(prop, { numRuns: n, seed, endOnFailure: false });
    if (out.failed)
      throw new Error(
        `${name}: counterexample ${fc.stringify(out.counterexample)} ` +
          `(seed ${out.seed}, path ${out.counterexamplePath}): ` +
          `${(out.errorInstance as Error)?.message ?? out.errorInstance}`,
      );
    results.push({ name, runs: out.numRuns, ms: performance.now() - t0 });
    log(`  ${name}: ${out.numRuns} cases in ${(performance.now() - t0).toFixed(0)} ms`);
  };
  check(
    'a valid message reads back as written',
    fc.property(validMessage, (m) => m.check(viewOf(m.bytes), m.bytes.length)),
  );
  const everyReader = (b: Uint8Array): void => {
    const v = viewOf(b);
    for (const [name, read] of READERS) onlyStableErrors(name, () => read(v, 0, b.length));
  };
  check('every reader, on message-like bytes: a value or a stable error', fc.property(messageLike, everyReader));
  check(
    'every reader, on a mutated valid message: a value or a stable error',
    fc.property(mutatedMessage, everyReader),
  );
  check(
    'every reader, on arbitrary bytes: a value or a stable error',
    fc.property(fc.uint8Array({ minLength: 8, maxLength: 300 }), everyReader),
  );
  check(
    'the stream parser (parseClientMessage): a message or a stable error',
    fc.property(
      fc.oneof(
        fc.json(),
        fc.string(),
        fc
          .record({
            type: fc.constantFrom(
              'hello',
              'ack',
              'keyframe',
              'ping',
              'stats',
              'key',
              'pointer',
              'motion',
              'button',
              'scroll',
              'touch',
            ),
            a: fc.jsonValue(),
          })
          .map((o) => JSON.stringify(o)),
        fc
          .dictionary(
            fc.constantFrom(
              'type',
              'token',
              'name',
              'codecs',
              'surface',
              'maxFps',
              'maxBitrateKbps',
              'seq',
              't',
              'code',
              'pressed',
              'x',
              'y',
              'dx',
              'dy',
              'button',
              'phase',
              'slot',
            ),
            fc.jsonValue(),
          )
          .map((o) => JSON.stringify(o)),
      ),
      (text) => onlyStableErrors('parseClientMessage', () => parseClientMessage(text, Buffer.byteLength(text))),
    ),
  );
  const header: FrameHeader = { kind: 0, flags: 0, sequence: 0, presentMs: 0, sendMs: 0, width: 0, height: 0 };
  check(
    'the stream frame header and tile decoder: a picture or a stable error',
    fc.property(
      fc.record({ w: fc.integer({ min: 1, max: 130 }), h: fc.integer({ min: 1, max: 70 }), payload: tilePayload() }),
      ({ w, h, payload }) => {
        onlyStableErrors('readFrameHeader', () => readFrameHeader(payload, header));
        const image = new Uint8Array(w * h * 4);
        onlyStableErrors('applyTilesSync', () => applyTilesSync(payload, image, w * 4, w, h));
      },
    ),
  );
  return results;
}

/** Tile payloads: a count, a compressed length and records, mostly plausible, sometimes lying. */
function tilePayload(): fc.Arbitrary<Uint8Array> {
  const record = fc.record({
    x: fc.oneof(fc.integer({ min: 0, max: 128 }), fc.integer({ min: 0, max: 65535 })),
    y: fc.integer({ min: 0, max: 80 }),
    w: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 65535 })),
    h: fc.integer({ min: 0, max: 64 }),
    enc: fc.integer({ min: 0, max: 3 }),
    value: u32,
  });
  return fc
    .record({
      records: fc.array(record, { maxLength: 6 }),
      compressed: fc.uint8Array({ maxLength: 64 }),
      countLie: fc.integer({ min: -2, max: 2 }),
      cLie: fc.integer({ min: -2, max: 2 }),
    })
    .map(({ records, compressed, countLie, cLie }) => {
      const b = Buffer.alloc(8 + 16 * records.length + compressed.length);
      b.writeUInt32LE(Math.max(0, records.length + countLie), 0);
      b.writeUInt32LE(Math.max(0, compressed.length + cLie), 4);
      records.forEach((r, i) => {
        const o = 8 + 16 * i;
        b.writeUInt16LE(r.x, o);
        b.writeUInt16LE(r.y, o + 2);
        b.writeUInt16LE(r.w, o + 4);
        b.writeUInt16LE(r.h, o + 6);
        b[o + 8] = r.enc;
        b.writeUInt32LE(r.value, o + 12);
      });
      b.set(compressed, 8 + 16 * records.length);
      return b;
    });
}

// ---- the native channel's framing ------------------------------------------------------------

interface Delivered {
  messages: { length: number; type: number; handles: number }[];
  error: string | null;
}

/** docs/protocol.md §2.2–§2.4 for a byte stream whose fds each arrive with the message that declares them. */
export function referenceFraming(stream: Buffer, maxMessage = 65536, maxHandles = 8): Delivered {
  const out: Delivered = { messages: [], error: null };
  let pos = 0;
  while (stream.length - pos >= 8) {
    const length = stream.readUInt32LE(pos);
    const handles = stream[pos + 6];
    if (length < 8) return { ...out, error: 'E_MALFORMED' };
    if (length > maxMessage) return { ...out, error: 'E_TOO_LARGE' };
    if (handles > maxHandles) return { ...out, error: 'E_HANDLE_COUNT' };
    if (stream.length - pos < length) break;
    out.messages.push({ length, type: stream.readUInt16LE(pos + 4), handles });
    pos += length;
  }
  // The peer closes: in the middle of a message, E_TRUNCATED; between messages, E_PEER_CLOSED.
  out.error = pos < stream.length ? 'E_TRUNCATED' : 'E_PEER_CLOSED';
  return out;
}

/**
 * Sends `chunks` (each a sendmsg(); fds on the chunks that start a message declaring some) through
 * a real socketpair into a framed native channel, closes, and reports what the channel delivered.
 */
export async function throughChannel(chunks: { bytes: Buffer; fds: number }[], memfd: NativeFd): Promise<Delivered> {
  const [a, b] = posixChannels().socketpair();
  const rx = Buffer.alloc(131072);
  const got: Delivered = { messages: [], error: null };
  const done = new Promise<void>((resolve) => {
    b.start(
      rx,
      (offset, length, fds) => {
        got.messages.push({ length, type: rx.readUInt16LE(offset + 4), handles: fds?.length ?? 0 });
        for (const fd of fds ?? []) fd.close();
      },
      (code) => {
        got.error = code;
        resolve();
      },
      { maxMessage: 65536, maxHandles: 8 },
    );
  });
  const raw: NativeChannel = a;
  // The sending side in byte-stream mode: any bytes, fds on the first byte of a send.
  raw.start(
    Buffer.alloc(65536),
    () => {},
    () => {},
    { stream: true, maxQueuedBytes: 1 << 24 },
  );
  for (const c of chunks) {
    if (
      raw.send(
        c.bytes,
        Array.from({ length: c.fds }, () => memfd),
      ) < 0
    )
      break;
    if (Math.random() < 0.3) await new Promise((r) => setImmediate(r));
  }
  while (raw.queuedBytes > 0) await new Promise((r) => setTimeout(r, 1));
  raw.close();
  await done;
  b.close();
  return got;
}

/** A stream of message-like frames (lengths that lie now and then) cut into sends at random points. */
export const framedStream = fc
  .record({
    messages: fc.array(
      fc.record({
        type: fc.integer({ min: 0, max: 0xffff }),
        handles: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3 }), fc.constant(9)),
        body: fc.nat({ max: 300 }),
        lie: fc.oneof(
          { weight: 8, arbitrary: fc.constant(0) },
          { weight: 1, arbitrary: fc.integer({ min: -12, max: 12 }) },
          { weight: 1, arbitrary: fc.constantFrom(65537, 0x7fffffff) },
        ),
      }),
      { maxLength: 12 },
    ),
    cuts: fc.array(fc.nat(), { maxLength: 8 }),
  })
  .map(({ messages, cuts }) => {
    const parts: { bytes: Buffer; handles: number }[] = messages.map((m) => {
      const b = Buffer.alloc(8 + m.body, 0x41);
      const declared = m.lie > 1000 ? m.lie : Math.max(0, b.length + m.lie);
      b.writeUInt32LE(declared >>> 0, 0);
      b.writeUInt16LE(m.type, 4);
      b[6] = m.handles;
      return { bytes: b, handles: m.handles };
    });
    return { parts, cuts };
  });

/** Cuts the parts into sends: a part declaring handles starts a send carrying them (§2.4), other cuts anywhere. */
export function toChunks(
  parts: { bytes: Buffer; handles: number }[],
  cuts: number[],
): { bytes: Buffer; fds: number }[] {
  const chunks: { bytes: Buffer; fds: number }[] = [];
  for (const p of parts) {
    if (p.handles > 0 || chunks.length === 0) chunks.push({ bytes: Buffer.alloc(0), fds: Math.min(p.handles, 8) });
    const last = chunks[chunks.length - 1];
    last.bytes = Buffer.concat([last.bytes, p.bytes]);
  }
  const out: { bytes: Buffer; fds: number }[] = [];
  for (const c of chunks) {
    let rest = c.bytes;
    const fds = c.fds;
    for (const cut of cuts) {
      if (fds > 0 || rest.length < 2) break; // fds go with the first piece; split only fd-less sends
      const at = 1 + (cut % (rest.length - 1));
      out.push({ bytes: rest.subarray(0, at), fds: 0 });
      rest = rest.subarray(at);
    }
    if (rest.length) out.push({ bytes: rest, fds });
  }
  return out;
}

/** The native channel's framing against referenceFraming(), through a real socketpair with real memfds. */
export async function runChannelProperty(runs: number, seed: number, log: (s: string) => void = () => {}) {
  const { linuxNative } = await import('../../../src/native/index.js');
  const memfd = linuxNative().createMemfd('framing', 4096);
  const t0 = performance.now();
  let exact = 0;
  try {
    await fc.assert(
      fc.asyncProperty(framedStream, async ({ parts, cuts }) => {
        const chunks = toChunks(parts, cuts);
        const stream = Buffer.concat(chunks.map((c) => c.bytes));
        const want = referenceFraming(stream);
        const got = await throughChannel(chunks, memfd);
        const lied = parts.some((p) => p.bytes.readUInt32LE(0) !== p.bytes.length);
        if (!lied || parts.every((p) => p.handles === 0)) {
          exact++;
          same(got, want);
        } else {
          // A length that lies moves the message boundaries off the sends that carry the fds: only
          // a prefix of the reference's messages, then a stable error.
          if (got.error === null || !STABLE.has(got.error)) throw new Error(`the channel ended with ${got.error}`);
          same(got.messages, want.messages.slice(0, got.messages.length));
        }
      }),
      { numRuns: runs, seed },
    );
  } finally {
    memfd.close();
  }
  const ms = performance.now() - t0;
  log(`  native channel framing: ${runs} streams (${exact} compared exactly) in ${ms.toFixed(0)} ms`);
  return { name: 'native channel framing', runs, ms, exact };
}
