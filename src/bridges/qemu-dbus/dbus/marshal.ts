/**
 * D-Bus marshalling (the specification's "Marshaling (Wire Format)"): values to bytes and back,
 * with the alignment rules, both byte orders on receive and little-endian on send.
 *
 * JS mapping: y n q i u d → number; x t → bigint; b → boolean; s o g → string; h → NativeFd;
 * `ay` → Buffer (received as a view into the message's buffer, never copied); other arrays → JS
 * arrays; arrays of dict entries → Map; structs → arrays; v → Variant.
 *
 * Reading is bounded everywhere: every length is checked against what is left, padding must be
 * zero, strings must be valid UTF-8 without NUL, nesting is limited as the specification says.
 * Anything wrong is a SurfaceLinkError (E_MALFORMED, or E_TOO_LARGE for an array over 64 MiB).
 */
import { SurfaceLinkError, invalidArgument } from '../../../errors.js';
import type { NativeFd } from '../../../native/index.js';
import {
  MAX_NESTING,
  MAX_TOTAL_NESTING,
  isValidObjectPath,
  parseSignature,
  parseSingleType,
  type DBusType,
} from './signature.js';

/** Largest array the specification allows, in bytes (64 MiB). */
export const MAX_ARRAY_LENGTH = 64 * 1024 * 1024;

/** A D-Bus variant: a value with its own signature (one complete type). */
export class Variant<T = unknown> {
  /**
   * `signature` must be exactly one complete type (checked here: E_INVALID_ARGUMENT); `value` is
   * checked against it when marshalled.
   */
  constructor(
    /** The value's signature: exactly one complete type, e.g. `s`, `a{sv}`. */
    readonly signature: string,
    /** The value, in the JS mapping of this module. */
    readonly value: T,
  ) {
    parseSingleType(signature, 'E_INVALID_ARGUMENT');
  }
}

/** Raised for values that do not match the signature being written. */
function badValue(type: DBusType, value: unknown, why = ''): SurfaceLinkError {
  let shown: string;
  try {
    shown = typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value));
  } catch {
    shown = Object.prototype.toString.call(value);
  }
  if (shown.length > 60) shown = shown.slice(0, 57) + '...';
  return invalidArgument(`a D-Bus '${type.signature}' value`, why || describe(type), shown);
}

function describe(type: DBusType): string {
  switch (type.code) {
    case 'y':
      return 'an integer 0..255';
    case 'b':
      return 'a boolean';
    case 'n':
      return 'an integer -32768..32767';
    case 'q':
      return 'an integer 0..65535';
    case 'i':
      return 'an integer -2^31..2^31-1';
    case 'u':
      return 'an integer 0..2^32-1';
    case 'x':
      return 'a bigint (or safe integer) -2^63..2^63-1';
    case 't':
      return 'a bigint (or safe integer) 0..2^64-1';
    case 'd':
      return 'a number';
    case 's':
      return 'a string without NUL';
    case 'o':
      return 'an object path';
    case 'g':
      return 'a signature';
    case 'h':
      return 'an open NativeFd';
    case 'v':
      return 'a Variant';
    case 'a':
      return type.element!.code === '{'
        ? 'a Map (or a plain object for string keys)'
        : type.element!.code === 'y'
          ? 'a Uint8Array'
          : 'an array';
    default:
      return `an array of ${type.fields!.length} fields`;
  }
}

const utf8 = new TextEncoder();

/**
 * Growable output buffer. Positions are relative to its start, which is where alignment counts
 * from (a message's first byte). Little-endian unless told otherwise (big-endian exists for tests).
 */
export class Writer {
  /** The bytes so far: buf[0, length). */
  buf: Buffer;
  /** Bytes written. */
  length = 0;
  /** Fds referenced by `h` values, in index order. */
  readonly fds: NativeFd[];
  private view: DataView;
  private readonly le: boolean;

  /** `fds`: the fd table to start from (an `h` value found there keeps its index). */
  constructor(options: { littleEndian?: boolean; initialSize?: number; fds?: readonly NativeFd[] } = {}) {
    this.le = options.littleEndian ?? true;
    this.buf = Buffer.allocUnsafe(Math.max(64, options.initialSize ?? 256));
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.fds = options.fds ? [...options.fds] : [];
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    const need = this.length + n;
    if (need <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  /** Zero padding up to a multiple of `n`. */
  align(n: number): void {
    const pad = (n - (this.length % n)) % n;
    if (pad === 0) return;
    this.ensure(pad);
    this.buf.fill(0, this.length, this.length + pad);
    this.length += pad;
  }

  /** Writes one byte. */
  byte(v: number): void {
    this.ensure(1);
    this.buf[this.length++] = v;
  }

  /** Writes a uint32 at its alignment. */
  u32(v: number): void {
    this.align(4);
    this.ensure(4);
    this.view.setUint32(this.length, v, this.le);
    this.length += 4;
  }

  /** Overwrites a uint32 at `pos` (for lengths known only afterwards). */
  patchU32(pos: number, v: number): void {
    this.view.setUint32(pos, v, this.le);
  }

  /** Appends raw bytes. */
  bytes(b: Uint8Array): void {
    this.ensure(b.byteLength);
    this.buf.set(b, this.length);
    this.length += b.byteLength;
  }

  /** The bytes written (a view, no copy). */
  result(): Buffer {
    return this.buf.subarray(0, this.length);
  }

  /** Writes `value` as `type`. E_INVALID_ARGUMENT when the value does not fit the type. */
  write(type: DBusType, value: unknown, depth = 0): void {
    if (depth > MAX_TOTAL_NESTING)
      throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'a value nests more than 64 containers (variants included)');
    switch (type.code) {
      case 'y':
        if (!isInt(value, 0, 0xff)) throw badValue(type, value);
        return this.byte(value);
      case 'b':
        if (typeof value !== 'boolean') throw badValue(type, value);
        return this.u32(value ? 1 : 0);
      case 'n':
      case 'q': {
        const signed = type.code === 'n';
        if (!isInt(value, signed ? -0x8000 : 0, signed ? 0x7fff : 0xffff)) throw badValue(type, value);
        this.align(2);
        this.ensure(2);
        if (signed) this.view.setInt16(this.length, value, this.le);
        else this.view.setUint16(this.length, value, this.le);
        this.length += 2;
        return;
      }
      case 'i':
        if (!isInt(value, -0x80000000, 0x7fffffff)) throw badValue(type, value);
        this.align(4);
        this.ensure(4);
        this.view.setInt32(this.length, value, this.le);
        this.length += 4;
        return;
      case 'u':
        if (!isInt(value, 0, 0xffffffff)) throw badValue(type, value);
        return this.u32(value);
      case 'x':
      case 't': {
        const signed = type.code === 'x';
        const big = toBigInt(value);
        if (big === null) throw badValue(type, value);
        if (signed ? BigInt.asIntN(64, big) !== big : BigInt.asUintN(64, big) !== big) throw badValue(type, value);
        this.align(8);
        this.ensure(8);
        if (signed) this.view.setBigInt64(this.length, big, this.le);
        else this.view.setBigUint64(this.length, big, this.le);
        this.length += 8;
        return;
      }
      case 'd':
        if (typeof value !== 'number') throw badValue(type, value);
        this.align(8);
        this.ensure(8);
        this.view.setFloat64(this.length, value, this.le);
        this.length += 8;
        return;
      case 's':
      case 'o': {
        if (typeof value !== 'string' || value.includes('\0')) throw badValue(type, value);
        if (type.code === 'o' && !isValidObjectPath(value)) throw badValue(type, value);
        const encoded = utf8.encode(value);
        this.u32(encoded.byteLength);
        this.bytes(encoded);
        return this.byte(0);
      }
      case 'g': {
        if (typeof value !== 'string') throw badValue(type, value);
        parseSignature(value, 'E_INVALID_ARGUMENT');
        this.byte(value.length);
        this.bytes(Buffer.from(value, 'latin1'));
        return this.byte(0);
      }
      case 'h': {
        if (!isFd(value)) throw badValue(type, value);
        let index = this.fds.indexOf(value);
        if (index < 0) index = this.fds.push(value) - 1;
        return this.u32(index);
      }
      case 'v': {
        if (!(value instanceof Variant)) throw badValue(type, value);
        const inner = parseSingleType(value.signature, 'E_INVALID_ARGUMENT');
        this.byte(value.signature.length);
        this.bytes(Buffer.from(value.signature, 'latin1'));
        this.byte(0);
        return this.write(inner, value.value, depth + 1);
      }
      case 'a':
        return this.writeArray(type, value, depth);
      default: {
        // struct or dict entry (written by writeArray)
        if (!Array.isArray(value) || value.length !== type.fields!.length) throw badValue(type, value);
        this.align(8);
        for (let i = 0; i < value.length; i++) this.write(type.fields![i], value[i], depth + 1);
      }
    }
  }

  private writeArray(type: DBusType, value: unknown, depth: number): void {
    const element = type.element!;
    this.u32(0);
    const lengthAt = this.length - 4;
    this.align(element.align);
    const start = this.length;
    if (element.code === 'y' && value instanceof Uint8Array) {
      this.bytes(value);
    } else if (element.code === '{') {
      const [keyType, valueType] = element.fields!;
      let entries: Iterable<[unknown, unknown]>;
      if (value instanceof Map) entries = value.entries();
      else if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'sog'.includes(keyType.code))
        entries = Object.entries(value);
      else throw badValue(type, value);
      for (const [k, v] of entries) {
        this.align(8);
        this.write(keyType, k, depth + 2);
        this.write(valueType, v, depth + 2);
      }
    } else {
      if (!Array.isArray(value)) throw badValue(type, value);
      for (const item of value) this.write(element, item, depth + 1);
    }
    const length = this.length - start;
    if (length > MAX_ARRAY_LENGTH)
      throw new SurfaceLinkError('E_TOO_LARGE', `a D-Bus array of ${length} bytes; the limit is ${MAX_ARRAY_LENGTH}`);
    this.patchU32(lengthAt, length);
  }
}

function isInt(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

function toBigInt(value: unknown): bigint | null {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  return null;
}

function isFd(value: unknown): value is NativeFd {
  const fd = value as NativeFd;
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof fd.close === 'function' &&
    typeof fd.dup === 'function' &&
    fd.closed === false
  );
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function malformed(message: string): SurfaceLinkError {
  return new SurfaceLinkError('E_MALFORMED', message);
}

/**
 * Reads values from a buffer holding one message (or a stand-alone body). Positions count from
 * the buffer's first byte, which is where alignment counts from. Received `ay` arrays are views
 * into `buf`.
 */
export class Reader {
  /** Where the next value starts. */
  pos: number;
  private readonly view: DataView;
  private arrays = 0;
  private structs = 0;
  private total = 0;

  /**
   * Reads buf[start, end) with the byte order `littleEndian`; `h` values index `fds`
   * (an index outside it is E_MALFORMED).
   */
  constructor(
    /** The message (or stand-alone body) bytes. */
    readonly buf: Buffer,
    /** The byte order of `buf`: true for 'l' messages, false for 'B'. */
    readonly littleEndian: boolean,
    /** The fds `h` values index. */
    readonly fds: readonly NativeFd[] = [],
    start = 0,
    /** Where the data ends (exclusive). */
    readonly end = buf.length,
  ) {
    this.pos = start;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** Skips the padding to a multiple of `n`; the padding must be zero and inside the data. */
  align(n: number): void {
    const next = this.pos + ((n - (this.pos % n)) % n);
    if (next > this.end) throw malformed('the data ends inside alignment padding');
    for (let p = this.pos; p < next; p++) if (this.buf[p] !== 0) throw malformed('non-zero alignment padding');
    this.pos = next;
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.end) throw malformed(`the data ends inside ${what}`);
  }

  /** Reads a uint32 at its alignment. */
  u32(): number {
    this.align(4);
    this.need(4, 'a uint32');
    const v = this.view.getUint32(this.pos, this.littleEndian);
    this.pos += 4;
    return v;
  }

  /** Reads one value of `type`. */
  read(type: DBusType): unknown {
    const le = this.littleEndian;
    switch (type.code) {
      case 'y':
        this.need(1, 'a byte');
        return this.buf[this.pos++];
      case 'b': {
        const v = this.u32();
        if (v > 1) throw malformed(`a boolean holds ${v}`);
        return v === 1;
      }
      case 'n':
      case 'q': {
        this.align(2);
        this.need(2, 'an int16');
        const v = type.code === 'n' ? this.view.getInt16(this.pos, le) : this.view.getUint16(this.pos, le);
        this.pos += 2;
        return v;
      }
      case 'i': {
        this.align(4);
        this.need(4, 'an int32');
        const v = this.view.getInt32(this.pos, le);
        this.pos += 4;
        return v;
      }
      case 'u':
        return this.u32();
      case 'x':
      case 't':
      case 'd': {
        this.align(8);
        this.need(8, 'an 8-byte value');
        const p = this.pos;
        this.pos += 8;
        if (type.code === 'd') return this.view.getFloat64(p, le);
        return type.code === 'x' ? this.view.getBigInt64(p, le) : this.view.getBigUint64(p, le);
      }
      case 's':
      case 'o': {
        const length = this.u32();
        if (length > this.end - this.pos - 1) throw malformed(`a string claims ${length} bytes beyond the data`);
        const s = this.string(this.pos, this.pos + length);
        this.pos += length;
        if (this.buf[this.pos++] !== 0) throw malformed('a string is not NUL-terminated');
        if (type.code === 'o' && !isValidObjectPath(s)) throw malformed(`invalid object path ${JSON.stringify(s)}`);
        return s;
      }
      case 'g':
        return this.signature();
      case 'h': {
        const index = this.u32();
        if (index >= this.fds.length)
          throw malformed(`a file descriptor index ${index} but the message carries ${this.fds.length}`);
        return this.fds[index];
      }
      case 'v': {
        const signature = this.signature();
        const inner = parseSingleType(signature);
        if (++this.total > MAX_TOTAL_NESTING) throw malformed('more than 64 nested containers (variants included)');
        const value = this.read(inner);
        this.total--;
        return new Variant(signature, value);
      }
      case 'a':
        return this.readArray(type);
      default: {
        this.enterStruct();
        this.align(8);
        const out: unknown[] = new Array(type.fields!.length);
        for (let i = 0; i < type.fields!.length; i++) out[i] = this.read(type.fields![i]);
        this.structs--;
        this.total--;
        return out;
      }
    }
  }

  private enterStruct(): void {
    if (++this.structs > MAX_NESTING) throw malformed('more than 32 nested structs');
    if (++this.total > MAX_TOTAL_NESTING) throw malformed('more than 64 nested containers (variants included)');
  }

  private readArray(type: DBusType): unknown {
    const length = this.u32();
    if (length > MAX_ARRAY_LENGTH)
      throw new SurfaceLinkError('E_TOO_LARGE', `an array claims ${length} bytes; the limit is ${MAX_ARRAY_LENGTH}`);
    const element = type.element!;
    this.align(element.align);
    if (length > this.end - this.pos) throw malformed(`an array claims ${length} bytes beyond the data`);
    const end = this.pos + length;
    if (++this.arrays > MAX_NESTING) throw malformed('more than 32 nested arrays');
    if (++this.total > MAX_TOTAL_NESTING) throw malformed('more than 64 nested containers (variants included)');
    if (element.code === 'y') {
      this.arrays--;
      this.total--;
      const view = this.buf.subarray(this.pos, end);
      this.pos = end;
      return view;
    }
    let out: unknown;
    if (element.code === '{') {
      const map = new Map<unknown, unknown>();
      const [keyType, valueType] = element.fields!;
      while (this.pos < end) {
        this.enterStruct();
        this.align(8);
        const k = this.read(keyType);
        map.set(k, this.read(valueType));
        this.structs--;
        this.total--;
      }
      out = map;
    } else {
      const list: unknown[] = [];
      while (this.pos < end) list.push(this.read(element));
      out = list;
    }
    if (this.pos !== end) throw malformed(`an array's elements overrun its ${length}-byte length`);
    this.arrays--;
    this.total--;
    return out;
  }

  private signature(): string {
    this.need(1, 'a signature');
    const length = this.buf[this.pos++];
    this.need(length + 1, 'a signature');
    const s = this.buf.toString('latin1', this.pos, this.pos + length);
    this.pos += length;
    if (this.buf[this.pos++] !== 0) throw malformed('a signature is not NUL-terminated');
    parseSignature(s);
    return s;
  }

  private string(start: number, end: number): string {
    const buf = this.buf;
    let ascii = true;
    for (let p = start; p < end; p++) {
      const c = buf[p];
      if (c === 0) throw malformed('a string contains NUL');
      if (c >= 0x80) ascii = false;
    }
    if (ascii) return buf.toString('latin1', start, end);
    try {
      return strictUtf8.decode(buf.subarray(start, end));
    } catch {
      throw malformed('a string is not valid UTF-8');
    }
  }
}

/** Marshalled bytes with the fds their `h` values refer to. */
export interface Marshalled {
  /** The bytes (a view into the writer's buffer). */
  bytes: Buffer;
  /** The fds, in index order (borrowed: still the caller's). */
  fds: NativeFd[];
}

/**
 * Marshals `values` as `signature` (stand-alone, alignment counted from the first byte).
 * Returns the bytes and the fds the `h` values refer to (borrowed: still the caller's).
 */
export function marshal(
  signature: string,
  values: readonly unknown[],
  options: { littleEndian?: boolean; fds?: readonly NativeFd[] } = {},
): Marshalled {
  const types = parseSignature(signature, 'E_INVALID_ARGUMENT');
  if (!Array.isArray(values) || values.length !== types.length)
    throw invalidArgument(`the values for signature "${signature}"`, `an array of ${types.length}`, values);
  const w = new Writer(options);
  for (let i = 0; i < types.length; i++) w.write(types[i], values[i]);
  return { bytes: w.result(), fds: w.fds };
}

/**
 * Unmarshals `bytes` as `signature`; the bytes must hold exactly those values. `ay` values are
 * views into `bytes`. E_MALFORMED (or E_TOO_LARGE) for anything wrong; never another error.
 */
export function unmarshal(
  signature: string,
  bytes: Uint8Array,
  options: { littleEndian?: boolean; fds?: readonly NativeFd[] } = {},
): unknown[] {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const types = parseSignature(signature);
  const r = new Reader(buf, options.littleEndian ?? true, options.fds ?? []);
  const out = types.map((t) => r.read(t));
  if (r.pos !== buf.length) throw malformed(`${buf.length - r.pos} bytes after the values of "${signature}"`);
  return out;
}
