/**
 * The named-pipe transport (Windows): a byte-mode pipe `\\.\pipe\surfacelink-<user>-<name>`
 * whose messages carry HANDLEs duplicated into the peer process (native/windows/pipe.cc;
 * docs/protocol.md §9.2). The pipe is created with a DACL that grants only the current user
 * (and SYSTEM) and rejects remote clients; each side then checks the other's user SID from its
 * process token, never from what the peer says. Mechanisms never see pipes; this file never
 * interprets pixels.
 */
import * as os from 'node:os';
import { SurfaceLinkError } from '../errors.js';
import { handleNt, ntHandle } from '../handles.js';
import {
  probeNative,
  win32Native,
  type NativeNtHandle,
  type NativePipeChannel,
  type NativePipeListener,
} from '../native/index.js';
import { FramedChannel } from './channel.js';
import type {
  AccessPolicy,
  ConnectOptions,
  ListenOptions,
  Listener,
  MessageChannel,
  PeerIdentity,
  Transport,
} from './types.js';

/** What every pipe name starts with. */
export const PIPE_PREFIX = '\\\\.\\pipe\\';
/** The local system account: trusted as a server, as root is on POSIX. */
const SYSTEM_SID = 'S-1-5-18';
/** A pipe name is at most 256 characters, prefix included. */
const MAX_PIPE_PATH = 256;

/** The user part of default pipe names: the login name, reduced to characters safe in a pipe name. */
function userTag(): string {
  let name: string;
  try {
    name = os.userInfo().username;
  } catch {
    name = process.env.USERNAME ?? 'user';
  }
  return name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64) || 'user';
}

/** `\\.\pipe\surfacelink-<user>-<name>`: where a server listens when given no address, and where clients look. */
export function defaultPipePath(name = 'default'): string {
  return `${PIPE_PREFIX}surfacelink-${userTag()}-${name}`;
}

/** The part of `address` after `\\.\pipe\`; E_INVALID_ARGUMENT for anything that is not a local pipe path. */
function pipeName(address: unknown): string {
  if (typeof address !== 'string' || !address.toLowerCase().startsWith(PIPE_PREFIX) || address === PIPE_PREFIX)
    throw new SurfaceLinkError(
      'E_INVALID_ARGUMENT',
      `a named-pipe address must look like ${PIPE_PREFIX}name; got ${JSON.stringify(address)}`,
    );
  if (address.length > MAX_PIPE_PATH)
    throw new SurfaceLinkError(
      'E_INVALID_ARGUMENT',
      `pipe path ${address} is ${address.length} characters; Windows allows at most ${MAX_PIPE_PATH}`,
    );
  return address.slice(PIPE_PREFIX.length);
}

function peerOf(native: NativePipeChannel): PeerIdentity {
  const p = native.peer;
  return { pid: p?.pid ?? -1, uid: -1, user: p?.sid ?? 'unknown' };
}

function frame(native: NativePipeChannel): FramedChannel<NativeNtHandle> {
  return new FramedChannel<NativeNtHandle>(native, peerOf(native), ntHandle, (h) =>
    handleNt(h, 'a handle sent over a named pipe'),
  );
}

class PipeListener implements Listener {
  private closed = false;

  constructor(
    private readonly native: NativePipeListener,
    readonly address: string,
    private readonly ownSid: string,
  ) {}

  start(
    onChannel: (channel: MessageChannel, refusal: string | null) => void,
    onError: (message: string) => void,
  ): void {
    const accept = (native: NativePipeChannel | null, code?: string, message?: string): void => {
      if (this.closed) return native?.close();
      if (native) {
        const channel = frame(native);
        const sid = channel.peer.user;
        onChannel(channel, sid === this.ownSid ? null : `user ${sid} may not connect (only ${this.ownSid} may)`);
        return;
      }
      onError(`accepting clients failed (${code}): ${message}; retrying in 100 ms`);
      setTimeout(() => !this.closed && this.native.start(accept), 100).unref();
    };
    this.native.start(accept);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.native.close();
  }
}

function unsupportedPolicy(policy: AccessPolicy): void {
  if (policy.allowUids?.length || policy.mode !== undefined)
    throw new SurfaceLinkError(
      'E_INVALID_ARGUMENT',
      'allowUids and socketMode are POSIX options; a named pipe admits only the current user (its DACL)',
    );
}

export const pipeTransport: Transport = {
  name: 'pipe',

  probe() {
    const { addon, error } = probeNative();
    if (!addon)
      return { available: false, reason: `the native addon is not loaded (${error?.code ?? 'E_NATIVE_UNAVAILABLE'})` };
    if (addon.platform !== 'win32')
      return { available: false, reason: `named pipes are Windows-only (${addon.platform})` };
    return {
      available: true,
      reason: 'byte-mode named pipe (current-user DACL, remote clients rejected), HANDLEs duplicated into the peer',
    };
  },

  defaultAddress: defaultPipePath,

  listen(options: ListenOptions): Listener {
    unsupportedPolicy(options.policy);
    const addon = win32Native();
    const address = options.address ?? defaultPipePath(options.name);
    const native = addon.pipeListen(pipeName(address));
    return new PipeListener(native, address, addon.currentUserSid());
  },

  connect(options: ConnectOptions): MessageChannel {
    unsupportedPolicy({ mode: undefined, allowUids: options.policy.allowUids });
    const addon = win32Native();
    const address = options.address ?? defaultPipePath();
    let native: NativePipeChannel;
    try {
      native = addon.pipeConnect(pipeName(address));
    } catch (error) {
      const e = error as { code?: string; message?: string };
      if (e.code === 'E_CONNECT' || e.code === 'E_PERMISSION' || e.code === 'E_INVALID_ARGUMENT') throw error;
      throw new SurfaceLinkError('E_CONNECT', `cannot connect to ${address}: ${e.message ?? String(error)}`, {
        cause: error,
      });
    }
    const channel = frame(native);
    const own = addon.currentUserSid();
    if (channel.peer.user !== own && channel.peer.user !== SYSTEM_SID) {
      channel.close();
      throw new SurfaceLinkError(
        'E_PERMISSION',
        `the server at ${address} runs as ${channel.peer.user}, which is not this user (${own})`,
      );
    }
    return channel;
  },

  pair(): [MessageChannel, MessageChannel] {
    const [a, b] = win32Native().pipePair();
    return [frame(a), frame(b)];
  },
};
