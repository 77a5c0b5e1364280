/**
 * macOS: buffers are IOSurfaces, shared two ways (docs/protocol.md §9.1; ownership in
 * docs/ownership.md §6):
 *
 * - **iosurface.v1** (the default): no global ID. Each buffer travels as a mach send right
 *   (IOSurfaceCreateMachPort → IOSurfaceLookupFromMachPort). Mach ports cannot cross a unix
 *   socket, so each session has a courier (`Mechanism.courier`): the server checks in a
 *   per-session bootstrap service and names it, with a 16-byte nonce, in WELCOME; the client
 *   sends the nonce and a receive right to it; the server accepts only a message whose kernel
 *   audit token is the unix socket's peer's (LOCAL_PEERTOKEN) and whose nonce matches, then sends
 *   each SCANOUT's ports ahead of that SCANOUT, in order (key = 1, 2, 3 … per session).
 * - **iosurface-pipe.v1** (UTM/CocoaSpice compatible): the SCANOUT's fd is a pipe holding the
 *   surface's 32-bit IOSurfaceID (./surface-id-pipe.ts); the surface is created kIOSurfaceIsGlobal,
 *   which lets *any* process on the Mac read it by guessing the number. Served only by a server
 *   that names it in `ServerOptions.mechanisms` (`explicitOnly`), and said so in `doctor` and in
 *   the negotiation reason.
 *
 * CPU access locks the surface (IOSurfaceLock; kIOSurfaceLockReadOnly on the consumer), and the
 * plane views point into the locked memory only between begin and end of the access. A consumer
 * also holds a use count while it reads (IOSurfaceIncrementUseCount), which IOSurfaceIsInUse shows.
 *
 * UNVERIFIED: written from Apple's documentation and cross-compiled on every CI run; it has never
 * run on a Mac (test/macos/ is where it runs, on a macOS runner).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { SurfaceLinkError } from '../errors.js';
import { MODIFIER_LINEAR, type FormatInfo, type PlaneLayout } from '../formats.js';
import { closeHandles, type NativeMachPort, type OsHandle } from '../handles.js';
import {
  addonMissingReason,
  darwinNative,
  loadNative,
  type DarwinAddon,
  type NativeIOSurface,
  type NativeMachClient,
} from '../native/index.js';
import type { ScanoutBody, WelcomeInfo } from '../protocol/codec.js';
import { validateDescriptor } from '../protocol/validate.js';
import type { PeerIdentity } from '../transport/types.js';
import { readSurfaceId, wrapSurfaceId, type WrappedSurfaceId } from './surface-id-pipe.js';
import {
  ImportRefused,
  type AllocateRequest,
  type BufferExport,
  type ConsumerBuffer,
  type CourierClient,
  type CourierServer,
  type Mechanism,
  type PeerParams,
  type ProbeResult,
  type ProducerBacking,
  type Refusal,
} from './types.js';
import type { CpuAccess } from '../native/index.js';

const NAME = 'iosurface.v1';
const PIPE_NAME = 'iosurface-pipe.v1';

/** Rows of an IOSurface are aligned like CoreVideo's (64 bytes). */
const ROW_ALIGN = 64;
/** The prefix of the process's bootstrap service name (the native side adds its pid and 64 random bits). */
export const MACH_SERVICE_PREFIX = 'org.surfacelink.courier';
/** How long a client waits for a SCANOUT's ports (they are sent before it, so normally not at all). */
export const COURIER_TAKE_TIMEOUT_MS = 2000;
/** Deliveries a server queues for a client that has not yet sent its receive right. */
export const COURIER_MAX_QUEUED = 64;

const GLOBAL_WARNING =
  'its surfaces are created kIOSurfaceIsGlobal: any process on this Mac, of any user, can read them by ' +
  'guessing a 32-bit IOSurfaceID';

/** The macOS addon with IOSurface support, or why there is none. */
function iosurfaceModule(): DarwinAddon | string {
  if (process.platform !== 'darwin') return `IOSurface is macOS-only (this is ${process.platform})`;
  const missing = addonMissingReason();
  if (missing) return missing;
  const addon = loadNative();
  if (addon.platform !== 'darwin') return `the addon is built for ${addon.platform}, not darwin`;
  const why = addon.iosurfaceMissingReason();
  return why === null ? addon : `IOSurface.framework could not be loaded: ${why}`;
}

function native(): DarwinAddon {
  const m = iosurfaceModule();
  if (typeof m === 'string') throw new SurfaceLinkError('E_UNSUPPORTED', m);
  return m;
}

let probed: ProbeResult | undefined;

/** Creates and frees one small surface, once per process. */
function probeIOSurface(): ProbeResult {
  if (probed) return probed;
  const m = iosurfaceModule();
  if (typeof m === 'string') return (probed = { available: false, reason: m });
  try {
    m.createIOSurface({
      width: 16,
      height: 16,
      pixelFormat: 0x42475241,
      bytesPerElement: 4,
      bytesPerRow: 64,
      global: false,
    }).release();
    probed = { available: true, reason: 'IOSurfaceCreate works' };
  } catch (error) {
    probed = { available: false, reason: `IOSurfaceCreate failed: ${(error as Error).message}` };
  }
  return probed;
}

/** The one plane of a single-plane format, as an IOSurface lays it out. */
function surfaceLayout(format: FormatInfo, width: number, height: number): PlaneLayout {
  if (format.planes.length !== 1)
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `${format.name} has ${format.planes.length} planes; IOSurface sharing takes single-plane formats in this version`,
    );
  const bpp = format.planes[0].bytesPerPixel;
  const stride = Math.ceil((width * bpp) / ROW_ALIGN) * ROW_ALIGN;
  return { offset: 0, stride, size: stride * height, width, height };
}

/**
 * CPU views over a surface's locked memory: `views[0]` points into it between begin and end of
 * an access (the base address is valid only while locked), and is empty otherwise.
 */
class LockedViews {
  readonly views: Uint8Array[] = [new Uint8Array(0)];
  private depth = 0;

  constructor(
    private readonly surface: NativeIOSurface,
    private readonly plane: PlaneLayout,
    private readonly consumer: boolean,
  ) {}

  begin(access: CpuAccess): void {
    if (this.depth++ > 0) return;
    const readOnly = this.consumer || access === 'read';
    try {
      if (this.consumer) this.surface.incrementUseCount();
      const memory = this.surface.lock(readOnly);
      this.views[0] = new Uint8Array(memory, this.plane.offset, this.plane.size);
    } catch (error) {
      this.depth--;
      throw SurfaceLinkError.fromNative(error);
    }
  }

  end(): void {
    if (this.depth === 0 || --this.depth > 0) return;
    this.views[0] = new Uint8Array(0);
    this.surface.unlock();
    if (this.consumer) this.surface.decrementUseCount();
  }
}

/** A producer's IOSurface, exported as a mach port (iosurface.v1) and, if global, as an ID pipe. */
function surfaceBacking(request: AllocateRequest, global: boolean): ProducerBacking {
  const { format, width, height } = request;
  const plane = surfaceLayout(format, width, height);
  let surface: NativeIOSurface;
  try {
    surface = native().createIOSurface({
      width,
      height,
      pixelFormat: format.iosurface,
      bytesPerElement: format.planes[0].bytesPerPixel,
      bytesPerRow: plane.stride,
      global,
    });
  } catch (error) {
    throw SurfaceLinkError.fromNative(error);
  }
  const planes = [plane];
  const locked = new LockedViews(surface, plane, false);
  let port: OsHandle | null = null;
  // One ID pipe per client session (reading consumes the ID); the write ends live as long as the surface.
  const pipes = new WeakMap<PeerParams, WrappedSurfaceId>();
  const writeEnds: WrappedSurfaceId[] = [];
  const describe = (handle: OsHandle, mechanism: string): BufferExport => ({
    mechanism,
    handles: [handle],
    planes: [{ handleIndex: 0, layout: plane }],
    modifier: MODIFIER_LINEAR,
  });
  return {
    mechanism: global ? PIPE_NAME : NAME,
    planes,
    planeHandles: [0],
    views: locked.views,
    identity: { kind: 'iosurface', inode: BigInt(surface.id), device: 0n, size: surface.allocSize },
    handles: [],
    modifier: MODIFIER_LINEAR,
    exportSame(mechanism: string, peer: PeerParams): BufferExport | Refusal | null {
      if (mechanism === NAME) {
        const handle: OsHandle = port ?? { kind: 'mach', port: surface.createMachPort() };
        port = handle;
        return describe(handle, NAME);
      }
      if (mechanism !== PIPE_NAME) return null; // other clients get a CPU copy (./cpu-copy.ts)
      if (!global)
        return {
          refused:
            'the surface is not global (iosurface-pipe.v1 needs kIOSurfaceIsGlobal): a server serves ' +
            'iosurface-pipe.v1 only when ServerOptions.mechanisms names it first',
        };
      let wrapped = pipes.get(peer);
      if (!wrapped) {
        wrapped = wrapSurfaceId(surface.id);
        pipes.set(peer, wrapped);
        writeEnds.push(wrapped);
      }
      return describe(wrapped.readEnd, PIPE_NAME);
    },
    beginCpuAccess: (access) => locked.begin(access),
    endCpuAccess: () => locked.end(),
    close() {
      // Closing the write ends first tells every holder of an ID pipe that the ID is stale.
      for (const w of writeEnds) {
        w.writeEnd.close();
        closeHandles([w.readEnd]);
      }
      writeEnds.length = 0;
      if (port) closeHandles([port]);
      surface.release();
    },
  };
}

/** The one plane of `planes` if `surface` is what the SCANOUT says (E_BAD_GEOMETRY, E_OUT_OF_BOUNDS otherwise). */
function checkAgainstDescriptor(
  surface: NativeIOSurface,
  desc: ScanoutBody,
  format: FormatInfo,
  planes: PlaneLayout[],
): PlaneLayout {
  const fail = (why: string): never => {
    throw new SurfaceLinkError('E_BAD_GEOMETRY', why);
  };
  if (planes.length !== 1)
    fail(`${format.name} has ${planes.length} planes; IOSurface sharing takes single-plane formats`);
  const plane = planes[0];
  if (surface.width !== desc.width || surface.height !== desc.height)
    fail(`the IOSurface is ${surface.width}x${surface.height}; the SCANOUT says ${desc.width}x${desc.height}`);
  if (surface.pixelFormat !== format.iosurface)
    fail(
      `the IOSurface's pixel format is 0x${surface.pixelFormat.toString(16)}; ` +
        `${format.name} is 0x${format.iosurface.toString(16)}`,
    );
  if (surface.bytesPerRow !== plane.stride)
    fail(`the IOSurface has ${surface.bytesPerRow} bytes per row; the SCANOUT says ${plane.stride}`);
  if (plane.offset + plane.size > surface.allocSize)
    throw new SurfaceLinkError(
      'E_OUT_OF_BOUNDS',
      `the plane ends at ${plane.offset + plane.size}, past the surface's ${surface.allocSize} bytes`,
    );
  return plane;
}

/** Checks a looked-up surface against the SCANOUT that named it, then wraps it for reading. */
function consumerSurface(
  surface: NativeIOSurface,
  desc: ScanoutBody,
  format: FormatInfo,
  handles: OsHandle[],
): ConsumerBuffer {
  // The IOSurfaceRef holds the surface now: the port or pipe is not needed, whatever happens next.
  closeHandles(handles);
  let plane: PlaneLayout;
  let planes: PlaneLayout[];
  try {
    ({ planes } = validateDescriptor(desc));
    plane = checkAgainstDescriptor(surface, desc, format, planes);
  } catch (error) {
    surface.release();
    throw error;
  }
  const locked = new LockedViews(surface, plane, true);
  return {
    planes,
    planeHandles: [0],
    views: locked.views,
    identity: { kind: 'iosurface', inode: BigInt(surface.id), device: 0n, size: surface.allocSize },
    handles: [],
    get ioSurface() {
      return surface.released ? 0n : surface.address;
    },
    beginCpuAccess: (access) => {
      if (access !== 'read')
        throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'a consumer reads an IOSurface; it never writes it');
      locked.begin(access);
    },
    endCpuAccess: () => locked.end(),
    close: () => surface.release(),
  };
}

/** What a looked-up surface's failure means for the session: a valid buffer this process cannot take. */
function lookupFailed(error: unknown, what: string): never {
  const e = SurfaceLinkError.fromNative(error);
  if (e.code === 'E_INVALID_ARGUMENT' || e.code === 'E_CLOSED') throw e;
  throw new ImportRefused(e.code === 'E_STALE' ? 'E_STALE' : 'E_IMPORT_FAILED', `${what}: ${e.message}`);
}

// --- iosurface.v1's courier: mach ports beside the unix socket ------------------------------------------

const NONCE_BYTES = 16;

/** One session waiting for, or bound to, its client's receive right. */
interface CourierSession {
  readonly token: Uint8Array;
  bind(client: NativeMachPort): void;
}

/**
 * The process's one bootstrap service, made at the first iosurface.v1 session and kept for the
 * process's life: launchd may keep advertising a checked-in name until its process exits
 * (launch(3)), so one name per session would pile up. Sessions are told apart by their nonce, as
 * Chromium's rendezvous tells children apart by pid.
 */
let service: { name: string; sessions: Map<string, CourierSession> } | null = null;

function courierService(addon: DarwinAddon): { name: string; sessions: Map<string, CourierSession> } {
  if (service) return service;
  const sessions = new Map<string, CourierSession>();
  const native = addon.machService(
    MACH_SERVICE_PREFIX,
    (nonce, auditToken, port) => {
      // Anyone may look the name up: only the session's own socket peer, proving its nonce, is bound.
      const session = nonce.length === NONCE_BYTES ? sessions.get(nonce.toString('hex')) : undefined;
      if (!session || auditToken.length !== session.token.length || !timingSafeEqual(auditToken, session.token))
        return port.close();
      sessions.delete(nonce.toString('hex')); // once
      session.bind(port);
    },
    () => {}, // rate-limited in native code; nothing a peer sends reaches a log from here
  );
  return (service = { name: native.name, sessions });
}

/** A failed machSend: E_BACKPRESSURE (the client's queue is full), E_PEER_CLOSED (its port is dead), E_SYSTEM. */
function sendError(error: unknown): SurfaceLinkError {
  const e = SurfaceLinkError.fromNative(error);
  return new SurfaceLinkError(e.code, `sending a buffer's mach port to the client failed: ${e.message}`, {
    cause: error,
  });
}

/** Server side: a nonce in the process's service; only the socket's own peer (by audit token) may bind it. */
function courierServer(peer: PeerIdentity): CourierServer {
  const token = peer.auditToken;
  if (!token || token.length !== 32)
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      "the transport did not report the client's audit token (LOCAL_PEERTOKEN)",
    );
  const addon = native();
  const shared = courierService(addon);
  const nonce = randomBytes(NONCE_BYTES).toString('hex');
  let client: NativeMachPort | null = null;
  let closed = false;
  let key = 0n;
  let failure: SurfaceLinkError | null = null;
  const queued: { key: bigint; ports: NativeMachPort[] }[] = [];
  const send = (k: bigint, ports: readonly NativeMachPort[]): void => {
    try {
      addon.machSend(client!, k, ports);
    } catch (error) {
      throw sendError(error);
    }
  };
  shared.sessions.set(nonce, {
    token,
    bind(port) {
      if (closed) return port.close();
      client = port;
      for (const q of queued.splice(0)) {
        try {
          if (failure === null) send(q.key, q.ports);
        } catch (error) {
          failure = error as SurfaceLinkError; // the next deliver() ends the session with it
        } finally {
          for (const p of q.ports) p.close();
        }
      }
    },
  });
  return {
    welcome: { machService: shared.name, machNonce: nonce },
    deliver(handles) {
      if (failure) throw failure;
      const ports = handles.map((h) => {
        if (h.kind !== 'mach')
          throw new SurfaceLinkError('E_HANDLE_TYPE', `iosurface.v1 sends mach ports, not ${h.kind} handles`);
        return h.port;
      });
      key += 1n;
      if (client !== null) return send(key, ports);
      if (queued.length >= COURIER_MAX_QUEUED)
        throw new SurfaceLinkError(
          'E_BACKPRESSURE',
          `the client has not bound its mach port after ${COURIER_MAX_QUEUED} buffers`,
        );
      const copies: NativeMachPort[] = [];
      try {
        for (const p of ports) copies.push(p.dup());
      } catch (error) {
        for (const c of copies) c.close();
        throw SurfaceLinkError.fromNative(error);
      }
      queued.push({ key, ports: copies });
    },
    close() {
      if (closed) return;
      closed = true;
      shared.sessions.delete(nonce);
      client?.close();
      for (const q of queued.splice(0)) for (const p of q.ports) p.close();
    },
  };
}

/** Client side: binds to the server's service with the nonce, then takes each SCANOUT's ports in order. */
function courierClient(welcome: WelcomeInfo): CourierClient {
  const { machService, machNonce } = welcome.extra as { machService: string; machNonce: string };
  let connection: NativeMachClient;
  try {
    connection = native().machConnect(machService, Buffer.from(machNonce, 'hex'));
  } catch (error) {
    throw SurfaceLinkError.fromNative(error);
  }
  let key = 0n;
  return {
    collect() {
      key += 1n;
      let ports: NativeMachPort[] | null;
      try {
        ports = connection.take(key, COURIER_TAKE_TIMEOUT_MS);
      } catch (error) {
        throw new ImportRefused(
          SurfaceLinkError.fromNative(error).code,
          `the buffer's mach port: ${(error as Error).message}`,
        );
      }
      if (ports === null)
        throw new ImportRefused(
          'E_TIMEOUT',
          `the buffer's mach port (delivery ${key}) did not arrive within ${COURIER_TAKE_TIMEOUT_MS} ms`,
        );
      return ports.map((port): OsHandle => ({ kind: 'mach', port }));
    },
    close: () => connection.close(),
  };
}

const caps = {
  handles: true,
  cpuAccess: true,
  sync: 'none',
  negotiatesFormats: false,
  copyTarget: false,
} as const;

export const iosurfaceMechanism: Mechanism = {
  name: NAME,
  // Chosen only at HELLO: its courier's service travels in WELCOME.
  caps: { ...caps, fallback: false },
  probe: () => {
    const p = probeIOSurface();
    return p.available
      ? { available: true, reason: 'IOSurface by mach port (no global ID), per-session bootstrap service' }
      : p;
  },
  accept: () => ({}),
  allocate: (request) => surfaceBacking(request, false),
  checkWelcome(welcome) {
    const w = welcome.extra ?? {};
    if (typeof w.machService !== 'string' || w.machService.length === 0 || w.machService.length > 127)
      throw new SurfaceLinkError('E_MALFORMED', 'WELCOME for iosurface.v1 needs machService (a bootstrap name)');
    if (typeof w.machNonce !== 'string' || !/^[0-9a-f]{32}$/.test(w.machNonce))
      throw new SurfaceLinkError('E_MALFORMED', 'WELCOME for iosurface.v1 needs machNonce (32 lowercase hex digits)');
  },
  courier: {
    server: (peer) => courierServer(peer),
    client: (welcome) => courierClient(welcome),
  },
  importBuffer(desc, format, handles) {
    if (handles.length !== 1 || handles[0].kind !== 'mach')
      throw new SurfaceLinkError(
        'E_HANDLE_COUNT',
        `an iosurface.v1 buffer is one mach port; got ${handles.length} handles`,
      );
    let surface: NativeIOSurface;
    try {
      surface = native().ioSurfaceFromMachPort(handles[0].port);
    } catch (error) {
      closeHandles(handles);
      return lookupFailed(error, 'IOSurfaceLookupFromMachPort');
    }
    return consumerSurface(surface, desc, format, handles);
  },
};

export const iosurfacePipeMechanism: Mechanism = {
  name: PIPE_NAME,
  caps: { ...caps, fallback: true },
  explicitOnly:
    `iosurface-pipe.v1 (UTM/CocoaSpice compatibility) is off: ${GLOBAL_WARNING}. A server enables it by ` +
    'naming it in ServerOptions.mechanisms (surfacelink serve --mechanism iosurface-pipe.v1)',
  probe: () => {
    const p = probeIOSurface();
    return p.available ? { available: true, reason: `IOSurfaceID in a pipe, UTM-compatible; ${GLOBAL_WARNING}` } : p;
  },
  accept: () => ({ detail: `; warning: ${GLOBAL_WARNING}` }),
  allocate: (request) => surfaceBacking(request, true),
  importBuffer(desc, format, handles) {
    if (handles.length !== 1)
      throw new SurfaceLinkError('E_HANDLE_COUNT', `an iosurface-pipe.v1 buffer is one pipe fd; got ${handles.length}`);
    let id: number;
    try {
      // E_STALE when the writer is closed: the surface is gone and its ID may be another's now.
      id = readSurfaceId(handles[0]);
    } catch (error) {
      const e = SurfaceLinkError.fromNative(error);
      if (e.code === 'E_STALE') throw new ImportRefused('E_STALE', e.message);
      throw e;
    }
    let surface: NativeIOSurface;
    try {
      surface = darwinNative().lookupIOSurface(id);
    } catch (error) {
      closeHandles(handles);
      return lookupFailed(error, `IOSurfaceLookup(${id})`);
    }
    return consumerSurface(surface, desc, format, handles);
  },
};

/** @internal The courier's two sides, for test/macos (one process playing both, to test the audit-token check). */
export const courierServerFor = courierServer;
/** @internal See courierServerFor. */
export const courierClientFor = courierClient;
