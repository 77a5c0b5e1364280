/**
 * D-Bus messages: the fixed header, the header fields, encoding (little-endian) and decoding
 * (either byte order), and MessageFramer, which cuts messages out of a byte stream — a message
 * may span many chunks, a chunk may hold many messages — and hands each one the fds its
 * UNIX_FDS header field claims from the FIFO of fds received so far.
 */
import { SurfaceLinkError, invalidArgument } from '../../../errors.js';
import type { NativeFd } from '../../../native/index.js';
import { Reader, Variant, Writer, type Marshalled } from './marshal.js';
import {
  isValidBusName,
  isValidInterfaceName,
  isValidMemberName,
  isValidObjectPath,
  parseSignature,
} from './signature.js';

/** Message types (the second header byte). */
export const MessageType = {
  /** A method call; the peer answers with METHOD_RETURN or ERROR unless NO_REPLY_EXPECTED is set. */
  METHOD_CALL: 1,
  /** A method's successful reply. */
  METHOD_RETURN: 2,
  /** A method's error reply. */
  ERROR: 3,
  /** A signal emission. */
  SIGNAL: 4,
} as const;

/** Message flags (the third header byte). */
export const MessageFlags = {
  /** The caller wants no reply (and gets none). */
  NO_REPLY_EXPECTED: 0x1,
  /** The bus must not start a service to deliver this call. */
  NO_AUTO_START: 0x2,
  /** The caller is willing to wait for interactive authorization. */
  ALLOW_INTERACTIVE_AUTHORIZATION: 0x4,
} as const;

/** Header field codes. */
export const HeaderField = {
  /** Object path (o). */
  PATH: 1,
  /** Interface (s). */
  INTERFACE: 2,
  /** Member (s). */
  MEMBER: 3,
  /** Error name (s). */
  ERROR_NAME: 4,
  /** The serial this message replies to (u). */
  REPLY_SERIAL: 5,
  /** Destination bus name (s). */
  DESTINATION: 6,
  /** Sender's unique name, set by the bus (s). */
  SENDER: 7,
  /** Body signature (g). */
  SIGNATURE: 8,
  /** Number of fds that travel with the message (u). */
  UNIX_FDS: 9,
} as const;

const FIELD_SIGNATURE: Record<number, string> = {
  1: 'o',
  2: 's',
  3: 's',
  4: 's',
  5: 'u',
  6: 's',
  7: 's',
  8: 'g',
  9: 'u',
};

/** Largest message the specification allows (128 MiB). */
export const MAX_MESSAGE_SIZE = 128 * 1024 * 1024;

/** A received message, or one about to be sent (then `serial` is assigned when it is sent). */
export interface DBusMessage {
  /** A MessageType value. */
  type: number;
  /** MessageFlags bits. */
  flags: number;
  /** The sender's serial for this message. */
  serial: number;
  /** Object path (METHOD_CALL, SIGNAL). */
  path?: string;
  /** Interface (SIGNAL; optional for METHOD_CALL). */
  interface?: string;
  /** Method or signal name. */
  member?: string;
  /** Error name (ERROR). */
  errorName?: string;
  /** The serial this message answers (METHOD_RETURN, ERROR). */
  replySerial?: number;
  /** Destination bus name. */
  destination?: string;
  /** Sender's unique name (set by a bus; absent peer-to-peer). */
  sender?: string;
  /** Body signature ('' for no body). */
  signature: string;
  /** The body's values (see marshal.ts for the JS mapping). */
  body: unknown[];
  /**
   * Every fd the message carries, in index order (`h` values in `body` are these objects).
   * Received: owned by whoever receives the message (close what you do not keep).
   * Sent: borrowed; `h` values not listed here are appended.
   */
  fds: NativeFd[];
}

/** What encodeMessage needs: a DBusMessage without the serial, body and fds optional. */
export type OutgoingMessage = Omit<DBusMessage, 'serial' | 'body' | 'fds' | 'signature' | 'flags'> & {
  /** MessageFlags bits (0 when absent). */
  flags?: number;
  /** Body signature ('' or absent for no body). */
  signature?: string;
  /** Body values. */
  body?: readonly unknown[];
  /** Fds to send in this order (borrowed); `h` values not listed are appended. */
  fds?: readonly NativeFd[];
};

function check(ok: boolean, name: string, expected: string, actual: unknown): void {
  if (!ok) throw invalidArgument(name, expected, actual);
}

/**
 * Encodes a message with `serial`. Returns its bytes and the fds to attach (borrowed). Throws
 * E_INVALID_ARGUMENT for a missing or invalid header field or a body that does not match the
 * signature, E_TOO_LARGE beyond `maxMessageBytes` (128 MiB).
 */
export function encodeMessage(
  msg: OutgoingMessage,
  serial: number,
  options: { littleEndian?: boolean; maxMessageBytes?: number } = {},
): Marshalled {
  const { type } = msg;
  const flags = msg.flags ?? 0;
  const signature = msg.signature ?? '';
  const body = msg.body ?? [];
  check(type >= 1 && type <= 4, 'the message type', '1..4', type);
  check(Number.isInteger(flags) && flags >= 0 && flags <= 0xff, 'flags', 'a byte', flags);
  check(Number.isInteger(serial) && serial >= 1 && serial <= 0xffffffff, 'the serial', '1..2^32-1', serial);
  const needsPath = type === MessageType.METHOD_CALL || type === MessageType.SIGNAL;
  if (needsPath || msg.path !== undefined) check(isValidObjectPath(msg.path!), 'path', 'an object path', msg.path);
  if (type === MessageType.SIGNAL || msg.interface !== undefined)
    check(isValidInterfaceName(msg.interface!), 'interface', 'an interface name', msg.interface);
  if (needsPath || msg.member !== undefined)
    check(isValidMemberName(msg.member!), 'member', 'a member name', msg.member);
  if (type === MessageType.ERROR || msg.errorName !== undefined)
    check(isValidInterfaceName(msg.errorName!), 'errorName', 'an error name', msg.errorName);
  if (type === MessageType.METHOD_RETURN || type === MessageType.ERROR || msg.replySerial !== undefined) {
    const rs = msg.replySerial;
    check(Number.isInteger(rs) && rs! >= 1 && rs! <= 0xffffffff, 'replySerial', '1..2^32-1', rs);
  }
  if (msg.destination !== undefined)
    check(isValidBusName(msg.destination), 'destination', 'a bus name', msg.destination);
  if (msg.sender !== undefined) check(isValidBusName(msg.sender), 'sender', 'a bus name', msg.sender);
  const types = parseSignature(signature, 'E_INVALID_ARGUMENT');
  if (!Array.isArray(body) || body.length !== types.length)
    throw invalidArgument(`the body for signature "${signature}"`, `an array of ${types.length} values`, body);

  const w = new Writer({ littleEndian: options.littleEndian ?? true, fds: msg.fds });
  w.byte((options.littleEndian ?? true) ? 0x6c : 0x42);
  w.byte(type);
  w.byte(flags);
  w.byte(1);
  w.u32(0); // body length, patched below
  w.u32(serial);
  w.u32(0); // header fields array length, patched below
  const fieldsStart = w.length;
  const field = (code: number, sig: string, value: string | number): void => {
    w.align(8);
    w.byte(code);
    w.byte(1);
    w.byte(sig.charCodeAt(0));
    w.byte(0);
    if (sig === 'u') w.u32(value as number);
    else w.write({ code: sig, signature: sig, align: sig === 'g' ? 1 : 4 }, value);
  };
  if (msg.path !== undefined) field(HeaderField.PATH, 'o', msg.path);
  if (msg.interface !== undefined) field(HeaderField.INTERFACE, 's', msg.interface);
  if (msg.member !== undefined) field(HeaderField.MEMBER, 's', msg.member);
  if (msg.errorName !== undefined) field(HeaderField.ERROR_NAME, 's', msg.errorName);
  if (msg.replySerial !== undefined) field(HeaderField.REPLY_SERIAL, 'u', msg.replySerial);
  if (msg.destination !== undefined) field(HeaderField.DESTINATION, 's', msg.destination);
  if (msg.sender !== undefined) field(HeaderField.SENDER, 's', msg.sender);
  if (signature !== '') field(HeaderField.SIGNATURE, 'g', signature);
  let fdCountAt = -1;
  if (signature.includes('h') || (msg.fds !== undefined && msg.fds.length > 0)) {
    field(HeaderField.UNIX_FDS, 'u', 0);
    fdCountAt = w.length - 4;
  }
  w.patchU32(12, w.length - fieldsStart);
  w.align(8);
  const bodyStart = w.length;
  for (let i = 0; i < types.length; i++) w.write(types[i], body[i]);
  const max = options.maxMessageBytes ?? MAX_MESSAGE_SIZE;
  if (w.length > max)
    throw new SurfaceLinkError('E_TOO_LARGE', `a D-Bus message of ${w.length} bytes; the limit is ${max}`);
  w.patchU32(4, w.length - bodyStart);
  if (fdCountAt >= 0) w.patchU32(fdCountAt, w.fds.length);
  return { bytes: w.result(), fds: w.fds };
}

function malformed(message: string): SurfaceLinkError {
  return new SurfaceLinkError('E_MALFORMED', message);
}

/** Bytes before anything else of a message can be judged: the fixed header and the fields array's length. */
export const FIXED_HEADER_SIZE = 16;

/**
 * The total size of a message from its first 16 bytes, checked before anything is allocated:
 * E_MALFORMED for a bad byte-order mark or version, E_TOO_LARGE beyond `maxMessageBytes`.
 */
export function messageLength(head: Uint8Array, maxMessageBytes = MAX_MESSAGE_SIZE): number {
  const endian = head[0];
  if (endian !== 0x6c && endian !== 0x42)
    throw malformed(`a message starts with byte 0x${endian.toString(16)}, not a byte-order mark ('l' or 'B')`);
  if (head[3] !== 1) throw malformed(`a message has protocol version ${head[3]}, not 1`);
  const view = new DataView(head.buffer, head.byteOffset, FIXED_HEADER_SIZE);
  const le = endian === 0x6c;
  const bodyLength = view.getUint32(4, le);
  const fieldsLength = view.getUint32(12, le);
  const total = FIXED_HEADER_SIZE + fieldsLength + ((8 - (fieldsLength % 8)) % 8) + bodyLength;
  if (total > maxMessageBytes)
    throw new SurfaceLinkError(
      'E_TOO_LARGE',
      `a message declares ${total} bytes (header fields ${fieldsLength}, body ${bodyLength}); ` +
        `the limit is ${maxMessageBytes}`,
    );
  return total;
}

const REQUIRED: Record<number, [string, number][]> = {
  [MessageType.METHOD_CALL]: [
    ['path', HeaderField.PATH],
    ['member', HeaderField.MEMBER],
  ],
  [MessageType.METHOD_RETURN]: [['replySerial', HeaderField.REPLY_SERIAL]],
  [MessageType.ERROR]: [
    ['errorName', HeaderField.ERROR_NAME],
    ['replySerial', HeaderField.REPLY_SERIAL],
  ],
  [MessageType.SIGNAL]: [
    ['path', HeaderField.PATH],
    ['interface', HeaderField.INTERFACE],
    ['member', HeaderField.MEMBER],
  ],
};

/**
 * Decodes one complete message held in `buf` (exactly its bytes). Takes the fds its UNIX_FDS
 * field claims from the front of `fdQueue` (E_MALFORMED when fewer are there); on any error the
 * fds taken are closed. Returns null for a message of an unknown type (ignored, as the
 * specification says; its fds closed). Throws only SurfaceLinkError (E_MALFORMED, E_TOO_LARGE).
 */
export function decodeMessage(buf: Buffer, fdQueue: NativeFd[] = []): DBusMessage | null {
  let fds: NativeFd[] = [];
  try {
    if (buf.length < FIXED_HEADER_SIZE) throw malformed('a message shorter than its fixed header');
    if (messageLength(buf, Infinity) !== buf.length) throw malformed("the buffer is not exactly one message's bytes");
    const le = buf[0] === 0x6c;
    const type = buf[1];
    const flags = buf[2];
    if (type === 0) throw malformed('a message of type 0 (INVALID)');
    const r = new Reader(buf, le, [], 4);
    const bodyLength = r.u32();
    const serial = r.u32();
    if (serial === 0) throw malformed('a message with serial 0');
    const fieldsArray = r.read(HEADER_FIELDS_TYPE) as [number, Variant][];
    r.align(8);
    if (r.pos + bodyLength !== buf.length) throw malformed('the header fields overrun their declared length');
    const msg: DBusMessage = { type, flags, serial, signature: '', body: [], fds };
    const seen = new Set<number>();
    let unixFds = 0;
    for (const [code, variant] of fieldsArray) {
      const expected = FIELD_SIGNATURE[code];
      if (expected === undefined) continue; // unknown fields are ignored
      if (seen.has(code)) throw malformed(`header field ${code} appears twice`);
      seen.add(code);
      if (variant.signature !== expected)
        throw malformed(`header field ${code} has type '${variant.signature}', not '${expected}'`);
      const v = variant.value as string & number;
      switch (code) {
        case HeaderField.PATH:
          msg.path = v;
          break;
        case HeaderField.INTERFACE:
          if (!isValidInterfaceName(v)) throw malformed(`invalid interface name ${JSON.stringify(v)}`);
          msg.interface = v;
          break;
        case HeaderField.MEMBER:
          if (!isValidMemberName(v)) throw malformed(`invalid member name ${JSON.stringify(v)}`);
          msg.member = v;
          break;
        case HeaderField.ERROR_NAME:
          if (!isValidInterfaceName(v)) throw malformed(`invalid error name ${JSON.stringify(v)}`);
          msg.errorName = v;
          break;
        case HeaderField.REPLY_SERIAL:
          if (v === 0) throw malformed('REPLY_SERIAL 0');
          msg.replySerial = v;
          break;
        case HeaderField.DESTINATION:
          if (!isValidBusName(v)) throw malformed(`invalid destination ${JSON.stringify(v)}`);
          msg.destination = v;
          break;
        case HeaderField.SENDER:
          if (!isValidBusName(v)) throw malformed(`invalid sender ${JSON.stringify(v)}`);
          msg.sender = v;
          break;
        case HeaderField.SIGNATURE:
          msg.signature = v;
          break;
        case HeaderField.UNIX_FDS:
          unixFds = v;
          break;
      }
    }
    if (unixFds > fdQueue.length)
      throw malformed(`a message claims ${unixFds} file descriptors but ${fdQueue.length} arrived`);
    fds = fdQueue.splice(0, unixFds);
    msg.fds = fds;
    if (type > 4) {
      closeAll(fds);
      return null;
    }
    for (const [name, code] of REQUIRED[type])
      if (!seen.has(code)) throw malformed(`a message of type ${type} without its ${name} header field`);
    const br = new Reader(buf, le, fds, r.pos);
    const types = parseSignature(msg.signature);
    const body: unknown[] = new Array(types.length);
    for (let i = 0; i < types.length; i++) body[i] = br.read(types[i]);
    if (br.pos !== buf.length) throw malformed(`${buf.length - br.pos} bytes after the body's "${msg.signature}"`);
    msg.body = body;
    return msg;
  } catch (error) {
    closeAll(fds);
    if (error instanceof SurfaceLinkError) throw error;
    throw new SurfaceLinkError('E_MALFORMED', `an undecodable message: ${(error as Error)?.message}`, { cause: error });
  }
}

const HEADER_FIELDS_TYPE = parseSignature('a(yv)')[0];

/** Closes every fd in `fds` (idempotent per fd). */
export function closeAll(fds: readonly NativeFd[] | undefined): void {
  if (!fds) return;
  for (const fd of fds) {
    try {
      fd.close();
    } catch {
      // already closed or not ours to fail on
    }
  }
}

/** Limits a MessageFramer enforces. */
export interface FramerLimits {
  /** Largest message accepted (default 128 MiB): E_TOO_LARGE before allocating. */
  maxMessageBytes?: number;
  /** Most received fds waiting for their message (default 1024): E_MALFORMED beyond. */
  maxQueuedFds?: number;
}

/** Messages at least this large may get a recycled buffer (see MessageFramer.release). */
const RECYCLE_MIN = 64 * 1024;
/** Most bytes of released buffers kept for reuse. */
const RECYCLE_POOL_BYTES = 32 * 1024 * 1024;
/** Most released buffers kept for reuse. */
const RECYCLE_POOL_COUNT = 4;

/**
 * Cuts D-Bus messages out of a byte stream. Each message gets one buffer (its `ay` values are
 * views into it); a chunk is copied into it once. push() throws a SurfaceLinkError for a
 * malformed stream; after that (or dispose()) the framer takes nothing more.
 *
 * Fresh memory costs page faults on first touch (on the VMs measured, far more than the copy), so
 * a receiver done with a large message may release() it: a later message reuses its buffer.
 */
export class MessageFramer {
  private readonly head = Buffer.alloc(FIXED_HEADER_SIZE);
  private headLength = 0;
  private message: Buffer | null = null;
  private backing: Buffer | null = null;
  private filled = 0;
  private readonly lent = new WeakMap<DBusMessage, Buffer>();
  private readonly pool: Buffer[] = [];
  private poolBytes = 0;
  private readonly fdQueue: NativeFd[] = [];
  private stopped = false;
  private readonly maxMessageBytes: number;
  private readonly maxQueuedFds: number;

  /** `onMessage` gets each decoded message (it owns the message's fds); it may call dispose(). */
  constructor(
    private readonly onMessage: (message: DBusMessage) => void,
    limits: FramerLimits = {},
  ) {
    this.maxMessageBytes = limits.maxMessageBytes ?? MAX_MESSAGE_SIZE;
    this.maxQueuedFds = limits.maxQueuedFds ?? 1024;
  }

  /** Whether no partial message is buffered. */
  get idle(): boolean {
    return this.headLength === 0 && this.message === null;
  }

  /** Fds received and not yet given to a message. */
  get queuedFds(): number {
    return this.fdQueue.length;
  }

  /** Queues fds that arrived with the next chunk (taken over: closed if no message claims them). */
  pushFds(fds: readonly NativeFd[] | undefined): void {
    if (!fds || fds.length === 0) return;
    if (this.stopped) return closeAll(fds);
    this.fdQueue.push(...fds);
    if (this.fdQueue.length > this.maxQueuedFds) {
      this.dispose();
      throw malformed(`more than ${this.maxQueuedFds} file descriptors arrived that no message claimed`);
    }
  }

  /** Takes a chunk (read during the call only). Throws a SurfaceLinkError for a malformed stream. */
  push(chunk: Uint8Array): void {
    let off = 0;
    try {
      while (off < chunk.length && !this.stopped) {
        if (this.message === null) {
          const n = Math.min(FIXED_HEADER_SIZE - this.headLength, chunk.length - off);
          this.head.set(chunk.subarray(off, off + n), this.headLength);
          this.headLength += n;
          off += n;
          if (this.headLength < FIXED_HEADER_SIZE) break;
          const total = messageLength(this.head, this.maxMessageBytes);
          this.backing = this.allocate(total);
          this.message = this.backing.length === total ? this.backing : this.backing.subarray(0, total);
          this.head.copy(this.message, 0);
          this.filled = FIXED_HEADER_SIZE;
        }
        const message = this.message;
        const n = Math.min(message.length - this.filled, chunk.length - off);
        if (n > 0) {
          message.set(chunk.subarray(off, off + n), this.filled);
          this.filled += n;
          off += n;
        }
        if (this.filled < message.length) break;
        const backing = this.backing!;
        this.message = null;
        this.backing = null;
        this.headLength = 0;
        const decoded = decodeMessage(message, this.fdQueue);
        if (!decoded) continue;
        if (backing.length >= RECYCLE_MIN) this.lent.set(decoded, backing);
        this.onMessage(decoded);
      }
    } catch (error) {
      this.dispose();
      throw error;
    }
    // Fds arrive with their message's first byte: those left at a message boundary belong to none.
    if (!this.stopped && this.idle && this.fdQueue.length > 0) closeAll(this.fdQueue.splice(0));
  }

  /**
   * Gives back the buffer of a message this framer produced, for a later message to reuse. Only
   * when nothing will read the message's `ay` views again: they will show other bytes. Messages
   * under 64 KiB, unknown ones and second releases are ignored.
   */
  release(message: DBusMessage): void {
    const buffer = this.lent.get(message);
    if (!buffer) return;
    this.lent.delete(message);
    if (this.stopped) return;
    if (this.pool.length >= RECYCLE_POOL_COUNT || this.poolBytes + buffer.length > RECYCLE_POOL_BYTES) return;
    this.pool.push(buffer);
    this.poolBytes += buffer.length;
  }

  /** A buffer for a message of `total` bytes: a released one that fits (at most twice as large), or a new one. */
  private allocate(total: number): Buffer {
    if (total >= RECYCLE_MIN && this.pool.length > 0) {
      let best = -1;
      for (let i = 0; i < this.pool.length; i++) {
        const n = this.pool[i].length;
        if (n >= total && n <= total * 2 && (best < 0 || n < this.pool[best].length)) best = i;
      }
      if (best >= 0) {
        const [buffer] = this.pool.splice(best, 1);
        this.poolBytes -= buffer.length;
        return buffer;
      }
    }
    return Buffer.allocUnsafe(total);
  }

  /** Stops the framer and closes every fd it still holds. Idempotent. */
  dispose(): void {
    this.stopped = true;
    this.message = null;
    this.backing = null;
    this.pool.length = 0;
    this.poolBytes = 0;
    closeAll(this.fdQueue.splice(0));
  }
}
