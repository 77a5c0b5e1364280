/**
 * A small QMP client (QEMU Machine Protocol: JSON objects over a unix socket, one per line) with
 * fd passing, for what the bridge needs: `qmp_capabilities`, `getfd` (an fd attached with
 * SCM_RIGHTS) and `add_client` — how QEMU and libvirt connect a D-Bus display peer
 * (`add_client protocol=@dbus-display`). Commands run one at a time, in order; events are emitted.
 */
import { EventEmitter } from 'eventemitter3';
import { SurfaceLinkError } from '../../errors.js';
import type { NativeFd } from '../../native/index.js';
import { connectStream, type ByteStream } from '../stream-socket.js';

/** Events of a QMP connection. */
export interface QmpEvents {
  /** An asynchronous QMP event (`{ event, data, timestamp }`). */
  event: [{ event: string; data?: unknown }];
  /** The connection ended. */
  close: [SurfaceLinkError];
}

/** The most bytes one QMP line may have before the connection is dropped (QEMU's replies are small). */
const MAX_LINE = 1 << 20;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: SurfaceLinkError) => void;
  timer: NodeJS.Timeout;
  command: string;
}

/** One QMP connection, past its capabilities negotiation. */
export class QmpClient extends EventEmitter<QmpEvents> {
  private buffer = '';
  private readonly queue: Pending[] = [];
  private greeting: ((version: string) => void) | null = null;
  private closedValue = false;
  /** QEMU's version, from the greeting ("7.2.x", "10.0.2"). */
  version = '';

  private constructor(private readonly stream: ByteStream) {
    super();
    stream.on('data', (chunk, fds) => {
      for (const fd of fds ?? []) fd.close(); // QMP never sends us fds
      this.onData(Buffer.from(chunk).toString('utf8'));
    });
    stream.on('close', (error) => this.fail(error));
  }

  /** Connects to QEMU's QMP socket (`-qmp unix:PATH,server=on,wait=off`) and negotiates capabilities. */
  static async connect(path: string, timeoutMs = 10000): Promise<QmpClient> {
    const client = new QmpClient(connectStream(path));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new SurfaceLinkError('E_TIMEOUT', `no QMP greeting from ${path} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        client.greeting = (version) => {
          clearTimeout(timer);
          client.version = version;
          resolve();
        };
        client.once('close', (error) => {
          clearTimeout(timer);
          reject(error);
        });
      });
      await client.execute('qmp_capabilities');
      return client;
    } catch (error) {
      client.close();
      throw error;
    }
  }

  get closed(): boolean {
    return this.closedValue;
  }

  /**
   * Runs a command and resolves with its `return` value; rejects with E_SYSTEM carrying QEMU's
   * error class and description, E_TIMEOUT, or E_PEER_CLOSED. `fds` go with the command's bytes
   * (SCM_RIGHTS), as `getfd` needs; the caller keeps its fds.
   */
  execute(command: string, args?: Record<string, unknown>, options: { fds?: NativeFd[]; timeoutMs?: number } = {}) {
    return new Promise<unknown>((resolve, reject) => {
      if (this.closedValue) return reject(new SurfaceLinkError('E_PEER_CLOSED', 'the QMP connection is closed'));
      const timer = setTimeout(() => {
        const i = this.queue.findIndex((p) => p.timer === timer);
        if (i >= 0) this.queue.splice(i, 1);
        reject(new SurfaceLinkError('E_TIMEOUT', `QMP ${command}: no answer within ${options.timeoutMs ?? 10000} ms`));
        this.close(); // answers would no longer match their commands
      }, options.timeoutMs ?? 10000);
      this.queue.push({ resolve, reject, timer, command });
      const text = `${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\r\n`;
      try {
        this.stream.write(Buffer.from(text, 'utf8'), options.fds);
      } catch (error) {
        this.queue.pop();
        clearTimeout(timer);
        reject(SurfaceLinkError.fromNative(error));
      }
    });
  }

  /** Runs an HMP command line through QMP (`human-monitor-command`) and resolves with its output. */
  async hmp(commandLine: string): Promise<string> {
    return String(await this.execute('human-monitor-command', { 'command-line': commandLine }));
  }

  /** Closes the connection. Idempotent; pending commands reject with E_PEER_CLOSED. */
  close(): void {
    this.stream.close();
  }

  private onData(text: string): void {
    this.buffer += text;
    if (this.buffer.length > MAX_LINE && !this.buffer.includes('\n')) {
      this.fail(new SurfaceLinkError('E_TOO_LARGE', 'QEMU sent a QMP line over 1 MiB'));
      return;
    }
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line.length > 0) this.onLine(line);
      if (this.closedValue) return;
    }
  }

  private onLine(line: string): void {
    let message: Record<string, any>;
    try {
      message = JSON.parse(line);
    } catch {
      return this.fail(
        new SurfaceLinkError('E_MALFORMED', `QEMU sent a QMP line that is not JSON: ${line.slice(0, 80)}`),
      );
    }
    if (message.QMP) {
      const v = message.QMP?.version?.qemu;
      this.greeting?.(v ? `${v.major}.${v.minor}.${v.micro}` : 'unknown');
      this.greeting = null;
      return;
    }
    if (typeof message.event === 'string') {
      this.emit('event', { event: message.event, data: message.data });
      return;
    }
    const pending = this.queue.shift();
    if (!pending) return; // an answer nobody waits for (its command timed out): the connection was closed then
    clearTimeout(pending.timer);
    if ('error' in message) {
      const e = message.error ?? {};
      pending.reject(
        new SurfaceLinkError('E_SYSTEM', `QMP ${pending.command}: ${e.class ?? 'Error'}: ${e.desc ?? '?'}`),
      );
    } else pending.resolve(message.return);
  }

  private fail(error: SurfaceLinkError): void {
    if (this.closedValue) return;
    this.closedValue = true;
    this.stream.close();
    for (const p of this.queue.splice(0)) {
      clearTimeout(p.timer);
      p.reject(new SurfaceLinkError('E_PEER_CLOSED', `QMP ${p.command}: the connection ended (${error.message})`));
    }
    this.emit('close', error);
  }
}
