/**
 * FramedChannel: a MessageChannel over a native channel that already frames messages and moves
 * handles (native/posix/channel.cc; a named-pipe channel has the same shape). It owns the
 * receive buffer the native side writes into and the encode buffer messages are written to,
 * so neither sending nor receiving allocates per message; received native handles are wrapped
 * as OsHandles (only messages that carry handles pay for that).
 */
import { SurfaceLinkError, type ErrorCodeName } from '../errors.js';
import type { OsHandle } from '../handles.js';
import { DEFAULT_MAX_MESSAGE, MAX_HANDLES } from '../protocol/constants.js';
import { MessageWriter } from '../protocol/codec.js';
import type { ChannelLimits, MessageChannel, MessageHandler, PeerIdentity, SendResult } from './types.js';

/** What FramedChannel needs of a native channel whose handles are of type H. */
export interface NativeFramedChannel<H> {
  readonly closed: boolean;
  start(
    rx: Buffer,
    onMessage: (offset: number, length: number, handles: H[] | undefined) => void,
    onError: (code: string, message: string, errno: number) => void,
    limits?: ChannelLimits,
  ): void;
  send(bytes: Uint8Array, handles?: readonly H[], length?: number): SendResult;
  close(): void;
  readonly queuedBytes?: number;
  readonly sentBytes?: number;
  readPending?(): void;
}

export class FramedChannel<H> implements MessageChannel {
  readonly writer = new MessageWriter(DEFAULT_MAX_MESSAGE);
  /** Reused for every send with handles: no allocation per message. */
  private readonly outgoing: H[] = [];

  constructor(
    private readonly native: NativeFramedChannel<H>,
    readonly peer: PeerIdentity,
    private readonly wrap: (handle: H) => OsHandle,
    private readonly unwrap: (handle: OsHandle) => H,
  ) {}

  get closed(): boolean {
    return this.native.closed;
  }

  start(handler: MessageHandler, limits: ChannelLimits = {}): void {
    const maxMessage = limits.maxMessage ?? DEFAULT_MAX_MESSAGE;
    const rx = Buffer.allocUnsafeSlow(maxMessage * 2);
    const view = new DataView(rx.buffer, rx.byteOffset, rx.byteLength);
    const wrap = this.wrap;
    this.native.start(
      rx,
      (offset, length, handles) =>
        handler.onMessage(view, offset, length, handles === undefined ? undefined : handles.map(wrap)),
      (code, message, errno) =>
        handler.onChannelError(new SurfaceLinkError(code as ErrorCodeName, message, errno ? { errno } : undefined)),
      {
        maxMessage,
        maxHandles: limits.maxHandles ?? MAX_HANDLES,
        maxQueuedBytes: limits.maxQueuedBytes ?? 4 * 1024 * 1024,
      },
    );
  }

  send(length: number, handles?: readonly OsHandle[]): SendResult {
    if (handles === undefined || handles.length === 0) return this.native.send(this.writer.bytes, undefined, length);
    const out = this.outgoing;
    out.length = 0;
    for (let i = 0; i < handles.length; i++) out.push(this.unwrap(handles[i]));
    try {
      return this.native.send(this.writer.bytes, out, length);
    } finally {
      out.length = 0;
    }
  }

  close(): void {
    this.native.close();
  }

  sendMark(): number | undefined {
    const { sentBytes, queuedBytes } = this.native;
    return sentBytes === undefined || queuedBytes === undefined ? undefined : sentBytes + queuedBytes;
  }

  get sentBytes(): number | undefined {
    return this.native.sentBytes;
  }

  readPending(): void {
    if (!this.native.closed) this.native.readPending?.();
  }
}
