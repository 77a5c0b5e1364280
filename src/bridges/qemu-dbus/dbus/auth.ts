/**
 * The D-Bus authentication conversation (the specification's "Authentication Protocol"), as
 * synchronous state machines fed with the bytes that arrive: EXTERNAL only, for the client role
 * (what QEMU's peer needs) and a minimal server role (SO_PEERCRED must match the claimed uid),
 * with NEGOTIATE_UNIX_FD. Lines are ASCII, end in CRLF and are bounded in length and number.
 */
import { randomBytes } from 'node:crypto';
import { SurfaceLinkError } from '../../../errors.js';

/** Longest authentication line accepted, in bytes (CRLF included). */
export const MAX_AUTH_LINE = 16 * 1024;
/** Most lines one side may send before authentication must be over. */
const MAX_AUTH_LINES = 64;
/** Most failed attempts the server role answers before it gives up on the client. */
const MAX_REJECTIONS = 8;

/** What the authentication produced. */
export interface AuthResult {
  /** The server's GUID (32 hex digits). */
  guid: string;
  /** Both sides agreed to pass fds. */
  unixFds: boolean;
}

/** What feeding bytes to an authenticator produced. */
export interface AuthProgress {
  /** Bytes to send to the peer now ('' for none). */
  send: string;
  /** Authentication finished successfully. */
  done: boolean;
  /** When done: the rest of this chunk after the last authentication line (D-Bus messages; valid during the call). */
  rest: Uint8Array | null;
}

function hexOf(text: string): string {
  return Buffer.from(text, 'ascii').toString('hex');
}

function malformed(message: string): SurfaceLinkError {
  return new SurfaceLinkError('E_MALFORMED', `D-Bus authentication: ${message}`);
}

/** Line splitting and bounds shared by both roles. */
abstract class Authenticator {
  /** Set once authentication has finished; null before. */
  result: AuthResult | null = null;
  private partial = '';
  private lines = 0;
  protected expectNul = false;

  /** The first bytes to send ('' when the peer speaks first). */
  abstract start(): string;

  protected abstract onLine(line: string): string;

  /** Feeds a chunk; throws a SurfaceLinkError when the peer breaks the protocol or is refused. */
  feed(chunk: Uint8Array): AuthProgress {
    let off = 0;
    let send = '';
    if (this.expectNul && chunk.length > 0) {
      if (chunk[0] !== 0) throw malformed('the client did not start with the NUL credentials byte');
      this.expectNul = false;
      off = 1;
    }
    while (off < chunk.length && this.result === null) {
      let end = chunk.indexOf(0x0a, off);
      const stop = end < 0 ? chunk.length : end;
      if (this.partial.length + (stop - off) > MAX_AUTH_LINE)
        throw new SurfaceLinkError('E_TOO_LARGE', `D-Bus authentication: a line over ${MAX_AUTH_LINE} bytes`);
      for (let p = off; p < stop; p++)
        if (chunk[p] >= 0x80 || chunk[p] === 0) throw malformed('a line with a byte that is not printable ASCII');
      this.partial += Buffer.from(chunk.buffer, chunk.byteOffset + off, stop - off).toString('latin1');
      if (end < 0) {
        off = chunk.length;
        break;
      }
      end++;
      off = end;
      const line = this.partial;
      this.partial = '';
      if (!line.endsWith('\r')) throw malformed('a line that does not end in CRLF');
      if (++this.lines > MAX_AUTH_LINES) throw malformed(`more than ${MAX_AUTH_LINES} lines`);
      send += this.onLine(line.slice(0, -1));
    }
    const done = this.result !== null;
    return { send, done, rest: done && off < chunk.length ? chunk.subarray(off) : null };
  }
}

/** Options of the client role. */
export interface AuthClientOptions {
  /** Our uid (process.getuid()). */
  uid: number;
  /** Send the uid with AUTH EXTERNAL (default true); false: `AUTH EXTERNAL`, then an empty DATA. */
  initialResponse?: boolean;
  /** Ask for fd passing (default true). */
  negotiateUnixFds?: boolean;
  /** The server GUID the address names (guid=): anything else is refused. */
  expectedGuid?: string;
}

/** The client side: EXTERNAL, then NEGOTIATE_UNIX_FD, then BEGIN. */
export class AuthClient extends Authenticator {
  private state: 'auth' | 'fd' = 'auth';
  private guid = '';
  private dataRounds = 0;

  /** The conversation for one connection. */
  constructor(private readonly options: AuthClientOptions) {
    super();
  }

  /** The NUL byte and the AUTH line. */
  start(): string {
    const ir = this.options.initialResponse ?? true;
    return `\0AUTH EXTERNAL${ir ? ' ' + hexOf(String(this.options.uid)) : ''}\r\n`;
  }

  protected onLine(line: string): string {
    const [command, ...args] = line.split(' ');
    if (this.state === 'auth') {
      switch (command) {
        case 'OK': {
          const guid = args[0] ?? '';
          if (!/^[0-9a-fA-F]{32}$/.test(guid) || args.length !== 1) throw malformed(`OK with a bad GUID: ${line}`);
          const expected = this.options.expectedGuid;
          if (expected !== undefined && expected.toLowerCase() !== guid.toLowerCase())
            throw new SurfaceLinkError(
              'E_PERMISSION',
              `D-Bus authentication: the server's GUID ${guid} is not the ${expected} its address names`,
            );
          this.guid = guid;
          if (this.options.negotiateUnixFds ?? true) {
            this.state = 'fd';
            return 'NEGOTIATE_UNIX_FD\r\n';
          }
          return this.finish(false);
        }
        case 'DATA':
          if (++this.dataRounds > 2) throw malformed('the server keeps asking for DATA');
          return (this.options.initialResponse ?? true) ? `DATA ${hexOf(String(this.options.uid))}\r\n` : 'DATA\r\n';
        case 'REJECTED':
          throw new SurfaceLinkError(
            'E_PERMISSION',
            `D-Bus authentication: the server rejected EXTERNAL as uid ${this.options.uid}` +
              ` (it offers: ${args.join(' ') || 'nothing'})`,
          );
        case 'ERROR':
          throw new SurfaceLinkError('E_PERMISSION', `D-Bus authentication: the server answered ${line}`);
        default:
          throw malformed(`unexpected ${JSON.stringify(line.slice(0, 80))} while authenticating`);
      }
    }
    if (command === 'AGREE_UNIX_FD') return this.finish(true);
    if (command === 'ERROR') return this.finish(false);
    throw malformed(`unexpected ${JSON.stringify(line.slice(0, 80))} after NEGOTIATE_UNIX_FD`);
  }

  private finish(unixFds: boolean): string {
    this.result = { guid: this.guid, unixFds };
    return 'BEGIN\r\n';
  }
}

/** Options of the server role. */
export interface AuthServerOptions {
  /** The peer's uid by SO_PEERCRED (null: unknown, every attempt is rejected). */
  peerUid: number | null;
  /** The uid allowed to connect (ours: process.getuid()). */
  allowedUid: number;
  /** Agree to fd passing when asked (default true). */
  allowUnixFds?: boolean;
  /** The GUID to announce (default: random). */
  guid?: string;
}

/** The server side: accepts EXTERNAL when the claimed uid is the peer's (SO_PEERCRED) and allowed. */
export class AuthServer extends Authenticator {
  private state: 'auth' | 'data' | 'begin' = 'auth';
  private rejections = 0;
  private unixFds = false;
  /** The GUID announced in OK. */
  readonly guid: string;

  /** The conversation for one connection. */
  constructor(private readonly options: AuthServerOptions) {
    super();
    this.expectNul = true;
    this.guid = options.guid ?? randomBytes(16).toString('hex');
  }

  /** The client speaks first. */
  start(): string {
    return '';
  }

  protected onLine(line: string): string {
    const [command, ...args] = line.split(' ');
    if (command === 'BEGIN') {
      if (this.state !== 'begin') throw new SurfaceLinkError('E_PERMISSION', 'D-Bus authentication: BEGIN before OK');
      this.result = { guid: this.guid, unixFds: this.unixFds };
      return '';
    }
    if (command === 'CANCEL' || command === 'ERROR') return this.reject();
    switch (this.state) {
      case 'auth':
        if (command !== 'AUTH') return 'ERROR "expected AUTH"\r\n';
        if (args[0] !== 'EXTERNAL' || args.length > 2) return this.reject();
        if (args.length === 1) {
          this.state = 'data';
          return 'DATA\r\n';
        }
        return this.check(args[1]);
      case 'data':
        if (command !== 'DATA' || args.length > 1) return 'ERROR "expected DATA"\r\n';
        return this.check(args[0] ?? '');
      default:
        if (command === 'NEGOTIATE_UNIX_FD' && args.length === 0) {
          if (!(this.options.allowUnixFds ?? true)) return 'ERROR "fd passing is not enabled"\r\n';
          this.unixFds = true;
          return 'AGREE_UNIX_FD\r\n';
        }
        return 'ERROR "expected BEGIN or NEGOTIATE_UNIX_FD"\r\n';
    }
  }

  /** `hex`: the claimed identity, hex-encoded decimal uid ('' = whoever the socket says). */
  private check(hex: string): string {
    const { peerUid, allowedUid } = this.options;
    let claimed = peerUid;
    if (hex !== '') {
      const text = /^(?:[0-9a-fA-F]{2})+$/.test(hex) ? Buffer.from(hex, 'hex').toString('latin1') : '';
      claimed = /^[0-9]{1,10}$/.test(text) ? Number(text) : null;
    }
    if (peerUid === null || claimed !== peerUid || peerUid !== allowedUid) return this.reject();
    this.state = 'begin';
    return `OK ${this.guid}\r\n`;
  }

  private reject(): string {
    if (++this.rejections > MAX_REJECTIONS)
      throw new SurfaceLinkError('E_PERMISSION', 'D-Bus authentication: too many failed attempts');
    this.state = 'auth';
    this.unixFds = false;
    return 'REJECTED EXTERNAL\r\n';
  }
}
