/**
 * Logging: the Logger type embedders give us, the default stderr logger, and the budgets that
 * keep what a peer can make us log bounded (docs/protocol.md §6.2): peer-supplied text is cut
 * (peerText), lines a peer causes are rate-limited per peer and for all peers together
 * (PeerLog), and the default logger never queues more than LOG_QUEUE_LIMIT bytes on a stream
 * that is not being read: it drops lines, and says how many once it can write again.
 */
import { performance } from 'node:perf_hooks';

/** Severity of a log line; the default logger prints only 'warn' and 'error'. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/**
 * Receives surfacelink's log lines (one line each, no trailing newline): a function the embedder
 * gives us (`ServerOptions.logger`), never called on per-frame paths. Must not throw.
 */
export type Logger = (level: LogLevel, message: string) => void;

/** Most characters of a peer-supplied string (an ERROR's message, a name, a reason) that go into a log line. */
export const PEER_TEXT_MAX = 200;
/** Most bytes the default logger leaves queued on stderr; past that, lines are dropped and counted. */
export const LOG_QUEUE_LIMIT = 64 * 1024;
/** Longest line the default logger writes; a longer one is cut, its length noted. */
export const LOG_LINE_MAX = 4096;
/** Log lines one peer may cause: a burst of this many… */
export const PEER_LOG_BURST = 10;
/** …and this many a second after it; the rest are suppressed and counted. */
export const PEER_LOG_RATE = 2;
/** Log lines all peers together may cause: a burst of this many… */
export const ALL_PEERS_LOG_BURST = 50;
/** …and this many a second after it. */
export const ALL_PEERS_LOG_RATE = 10;
/** Peers whose log budget is remembered at once (the oldest is forgotten beyond). */
const PEER_LOG_ENTRIES = 1024;

// C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: a peer's text stays on its line.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/**
 * A peer-supplied string as it may appear in a log line: control characters (newlines included)
 * escaped as \uXXXX, so one message stays one line and cannot forge others, and cut to `max`
 * characters with the original length noted.
 */
export function peerText(text: string, max = PEER_TEXT_MAX): string {
  const s = String(text);
  const cut = s.length > max ? s.slice(0, max) : s;
  const clean = cut.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return s.length > max ? `${clean}… (${s.length} characters)` : clean;
}

/** A token bucket: `rate` tokens a second, at most `burst` saved up (it starts full). */
export class TokenBucket {
  private tokens: number;
  private lastMs = performance.now();

  constructor(
    /** Tokens added per second. */
    readonly rate: number,
    /** Most tokens saved up: the largest burst. */
    readonly burst: number = rate,
  ) {
    this.tokens = burst;
  }

  /** Takes one token; false when there is none. */
  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.lastMs) * this.rate) / 1000);
    this.lastMs = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** How a PeerLog budgets lines; the defaults are PEER_LOG_* and ALL_PEERS_LOG_*. */
export interface PeerLogOptions {
  /** Lines per second per peer. */
  rate?: number;
  /** Burst per peer. */
  burst?: number;
  /** Lines per second for all peers together. */
  totalRate?: number;
  /** Burst for all peers together. */
  totalBurst?: number;
}

/**
 * Rate-limits the log lines peers cause (their errors, their disconnects): a token bucket per
 * peer and one for all peers together. A line over budget is suppressed and counted; the next
 * line that peer gets through is preceded by "<peer>: N log lines suppressed".
 */
export class PeerLog {
  private readonly peers = new Map<string, { bucket: TokenBucket; suppressed: number }>();
  private readonly total: TokenBucket;
  /** Lines suppressed so far, all peers. */
  suppressed = 0;

  constructor(
    private readonly logger: Logger,
    private readonly options: PeerLogOptions = {},
  ) {
    this.total = new TokenBucket(options.totalRate ?? ALL_PEERS_LOG_RATE, options.totalBurst ?? ALL_PEERS_LOG_BURST);
  }

  /** Logs a line caused by `peer` (e.g. "client 3"), if its budget and the overall one allow. */
  log(peer: string, level: LogLevel, message: string): void {
    this.write(peer, level, message, false);
  }

  /**
   * A peer's last line (why it was disconnected): charged to the overall budget only, so that what
   * the peer spent on earlier lines cannot hide it (a peer has one per connection).
   */
  final(peer: string, level: LogLevel, message: string): void {
    this.write(peer, level, message, true);
  }

  private write(peer: string, level: LogLevel, message: string, final: boolean): void {
    let entry = this.peers.get(peer);
    if (!entry) {
      if (this.peers.size >= PEER_LOG_ENTRIES) this.peers.delete(this.peers.keys().next().value!);
      entry = {
        bucket: new TokenBucket(this.options.rate ?? PEER_LOG_RATE, this.options.burst ?? PEER_LOG_BURST),
        suppressed: 0,
      };
      this.peers.set(peer, entry);
    }
    // The peer's budget is charged only when the overall one allows the line too.
    if (!(final || entry.bucket.take()) || !this.total.take()) {
      entry.suppressed++;
      this.suppressed++;
      return;
    }
    if (entry.suppressed > 0) {
      const n = entry.suppressed;
      entry.suppressed = 0;
      callLogger(this.logger, level, `${peer}: ${n} log line${n === 1 ? '' : 's'} suppressed (over its log budget)`);
    }
    callLogger(this.logger, level, message);
  }

  /** A Logger whose every line counts as `peer`'s. */
  for(peer: string): Logger {
    return (level, message) => this.log(peer, level, message);
  }
}

function callLogger(logger: Logger, level: LogLevel, message: string): void {
  try {
    logger(level, message);
  } catch {
    /* a Logger must not throw; if it does, the line is lost, not the session */
  }
}

/** What writeBounded() needs of a stream: a net.Socket or fs.WriteStream (process.stderr is either). */
interface LogStream {
  write(chunk: string): boolean;
  readonly writableLength?: number;
  readonly destroyed?: boolean;
  /** process.stdout / stderr: 'pipe' when fd 2 (or 1) is a pipe or a socket. */
  readonly _type?: string;
  readonly _handle?: { setBlocking?: (blocking: boolean) => number } | null;
}

const droppedLines = new WeakMap<LogStream, number>();

/**
 * Writes one line to `stream` unless more than LOG_QUEUE_LIMIT bytes would then wait in it (a
 * pipe or socket whose reader is slow or stopped): then the line is dropped and counted, and the
 * next line written is preceded by how many were. Never blocks longer than one write of at most
 * LOG_LINE_MAX characters, never queues more than LOG_QUEUE_LIMIT bytes. Returns whether it wrote.
 */
export function writeBounded(stream: LogStream, line: string): boolean {
  let text = line.length > LOG_LINE_MAX ? `${line.slice(0, LOG_LINE_MAX)}… (${line.length} characters)` : line;
  const dropped = droppedLines.get(stream) ?? 0;
  if (dropped > 0) text = `surfacelink warn: ${dropped} log lines dropped (the log stream was not draining)\n${text}`;
  if (stream.destroyed || (stream.writableLength ?? 0) + text.length + 1 > LOG_QUEUE_LIMIT) {
    droppedLines.set(stream, dropped + 1);
    return false;
  }
  try {
    // Node makes a stdio pipe non-blocking at start, but the flag belongs to the pipe, which other
    // processes share (a child that inherited it may have made it blocking again): a blocking write
    // to a full pipe would stop the whole producer. Made non-blocking again, a write that does not
    // fit waits in the stream, where writableLength sees it.
    if (stream._type === 'pipe') stream._handle?.setBlocking?.(false);
    stream.write(`${text}\n`);
  } catch {
    droppedLines.set(stream, dropped + 1);
    return false;
  }
  if (dropped > 0) droppedLines.delete(stream);
  return true;
}

/** Lines writeBounded() dropped on `stream` and has not yet reported. */
export function droppedLogLines(stream: LogStream = process.stderr): number {
  return droppedLines.get(stream) ?? 0;
}

/**
 * Default: warnings and errors to stderr, one line each, through writeBounded(): a stderr that is
 * not being read costs at most LOG_QUEUE_LIMIT bytes, never the producer's memory or loop.
 */
export const stderrLogger: Logger = (level, message) => {
  if (level === 'debug' || level === 'info') return;
  writeBounded(process.stderr, `surfacelink ${level}: ${message}`);
};

/** Drops everything. */
export const silentLogger: Logger = () => {};
