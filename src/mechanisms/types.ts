/**
 * The contract every sharing mechanism implements. The core never compares mechanism names: it
 * asks a mechanism's capabilities, lets it judge a client's offer, and asks a producer's buffer
 * to describe itself for a mechanism (`exportSame`, or a copy through ./cpu-copy.ts).
 *
 * Vocabulary (as in wlroots): the producer's buffers are *backings* a mechanism allocated or
 * adopted; a consumer *imports* a buffer from a SCANOUT's descriptor and handles.
 */
import { SurfaceLinkError } from '../errors.js';
import type { FormatSet } from '../format-set.js';
import type { FormatInfo, PlaneLayout } from '../formats.js';
import type { OsHandle } from '../handles.js';
import type { CpuAccess, NativeFd } from '../native/index.js';
import type { MechanismOffer, ScanoutBody, WelcomeInfo } from '../protocol/codec.js';
import type { PeerIdentity } from '../transport/types.js';

/** Whether a mechanism, allocator or transport works in this process. */
export interface ProbeResult {
  /** True when it can be used here. */
  available: boolean;
  /** Why it is (or is not) available, in words a person can act on. */
  reason: string;
}

/** How writes and reads are ordered between producer and consumer beyond the messages themselves. */
export type SyncKind = 'none' | 'sync_file' | 'keyed_mutex' | 'shared_event';

/** What the core may ask of a mechanism; one field per question, never its name. */
export interface MechanismCaps {
  /** SCANOUT carries OS handles to its buffers. False: frames reach the client another way (stream.v1). */
  readonly handles: boolean;
  /** A consumer can read the pixels with the CPU. */
  readonly cpuAccess: boolean;
  /** FRAME may carry an acquire fence and RELEASE a release fence of this kind ('none': the messages are the fence). */
  readonly sync: SyncKind;
  /** HELLO declares formats × modifiers, which the server intersects with its own. */
  readonly negotiatesFormats: boolean;
  /** Any other mechanism's buffer can be served to its clients as a CPU copy (the shared-memory baseline). */
  readonly copyTarget: boolean;
  /** The server may switch a client to it after an import failure (MECHANISM); false: only at HELLO. */
  readonly fallback: boolean;
}

/** CPU access brackets: every CPU read/write of a buffer's pixels happens between begin and end. */
export interface CpuAccessor {
  /** Starts a CPU read and/or write of the pixels (dma-bufs: DMA_BUF_IOCTL_SYNC start). */
  beginCpuAccess(access: CpuAccess): void;
  /** Ends the access begun with the same `access`. */
  endCpuAccess(access: CpuAccess): void;
}

/** Brackets that do nothing, for memory the CPU reads coherently (memfds). */
export const noCpuAccess: CpuAccessor = { beginCpuAccess() {}, endCpuAccess() {} };

/** What the memory is, so tests and tools can prove two processes share one object. */
export interface BackingIdentity {
  /**
   * What the object is: 'memfd', 'shm' (a POSIX shm object), 'dmabuf', or 'dmabuf:<allocator>' /
   * 'dmabuf:external' on the producer's side.
   */
  kind: string;
  /** The kernel's inode number of the object: equal in every process that shares it. */
  inode: bigint;
  /** The device of the inode (st_dev). */
  device: bigint;
  /** Bytes in the (first) object. */
  size: number;
}

/** A buffer as one mechanism's clients see it: handles and per-plane layout. */
export interface BufferExport {
  /** The mechanism whose clients this form is for. */
  readonly mechanism: string;
  /** Owned by the backing; the transport sends duplicates. */
  readonly handles: readonly OsHandle[];
  /** Per plane: the handle it lives in, and its layout within that handle's object. */
  readonly planes: readonly {
    /** Index in `handles` of the object the plane lives in. */
    handleIndex: number;
    /** Where the plane lies in that object. */
    layout: PlaneLayout;
  }[];
  /** DRM format modifier of the buffer (MODIFIER_LINEAR for memfds). */
  readonly modifier: bigint;
}

/** Why a buffer cannot be given to a client in some form. */
export interface Refusal {
  /** Why, in words for a log. */
  readonly refused: string;
}

/** Whether an export result is a Refusal. */
export const isRefusal = (value: object): value is Refusal => 'refused' in value;

/** Per-client facts an export depends on (what it declared at HELLO). */
export interface PeerParams {
  /** Formats × modifiers it can import, for mechanisms that negotiate formats; null: not declared. */
  readonly formats: FormatSet | null;
}

/** GPU work a buffer carries implicitly (dma-bufs): what present() turns into an explicit fence. */
export interface ImplicitFences {
  /** Unfinished GPU work is attached (a CPU access would wait). */
  busy(): boolean;
  /** The fences a reader must wait for, as a fence handle; null where the kernel cannot export them. */
  tryExport(): OsHandle | null;
  /** Like tryExport, but an error where it cannot. */
  export(): OsHandle;
}

/** A producer's buffer as its mechanism made (allocate) or adopted it. */
export interface ProducerBacking extends CpuAccessor {
  /** The mechanism that made it. */
  readonly mechanism: string;
  /** Layout of each plane within its handle's object. */
  readonly planes: readonly PlaneLayout[];
  /** For each plane, the index in `handles` of the object it lives in. */
  readonly planeHandles: readonly number[];
  /** CPU views, one per plane (writable for allocated buffers). */
  readonly views: readonly Uint8Array[];
  /** The object behind the pixels, for proving that processes share it. */
  readonly identity: BackingIdentity;
  /** The handles holding the planes, owned by the backing (for GL import and exports). */
  readonly handles: readonly OsHandle[];
  /** DRM format modifier of every plane (MODIFIER_LINEAR for memfds). */
  readonly modifier: bigint;
  /**
   * This same memory described for `mechanism`'s clients: its own mechanism, or another that
   * can reach the same memory (udmabuf's memfd as shm.v1). A Refusal says why it cannot for
   * this peer; null means there is no same-memory form (a CPU copy may serve the client).
   */
  exportSame(mechanism: string, peer: PeerParams): BufferExport | Refusal | null;
  /** Present where the buffer carries implicit GPU fences (dma-bufs). */
  readonly fences?: ImplicitFences;
  /**
   * Present where another process can shrink the memory under this process's mapping (a POSIX shm
   * object: the fd its clients hold is writable): true once it did. The mapping then reads zeros
   * (the SIGBUS guard) and the pool retires the buffer instead of reusing it.
   */
  truncated?(): boolean;
  /** Frees it; called once nobody uses the buffer any more. */
  close(): void;
}

/** A buffer received from a peer, validated and mapped. */
export interface ConsumerBuffer extends CpuAccessor {
  /** Layout of each plane within its handle's object, as the SCANOUT described it. */
  readonly planes: PlaneLayout[];
  /** For each plane, the index in `handles` of the object it lives in. */
  readonly planeHandles: readonly number[];
  /** CPU views, one per plane (read-only by contract). */
  readonly views: Uint8Array[];
  /** The object behind the pixels, by the kernel's own answers (never what the peer claimed). */
  readonly identity: BackingIdentity;
  /** The handles holding the planes, owned by the buffer: for GL import. */
  readonly handles: readonly OsHandle[];
  /** macOS IOSurface buffers: the IOSurfaceRef's address, for EGL_ANGLE_iosurface_client_buffer (0n once closed). */
  readonly ioSurface?: bigint;
  /**
   * Present where the producer (or anyone holding the handle) can shrink the memory under the
   * mapping (a POSIX shm object): true once it did. The mapping then reads zeros instead of
   * raising SIGBUS; the client drops the buffer and reports E_TRUNCATED.
   */
  truncated?(): boolean;
  /** Unmaps and closes its handles. Idempotent. */
  close(): void;
}

/** What a producer asks a mechanism to allocate: one buffer of the surface's format and size. */
export interface AllocateRequest {
  /** Pixel format of the buffer. */
  format: FormatInfo;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** A label for the buffer (visible in /proc/<pid>/fd as memfd:<label>). */
  label: string;
  /** A mechanism-specific allocator ('gbm', 'dma-heap', …), from its `allocators`. */
  allocator?: string;
}

/** Buffers made by someone else, by kind: what `SurfaceServer.adoptSurface` takes. */
export type ExternalBacking =
  | {
      /** Dma-bufs (from a GPU driver, QEMU, a vfio vGPU). */
      kind: 'dmabuf';
      /** One entry per buffer of the pool. */
      buffers: ExternalDmabuf[];
      /** DRM format modifier of every buffer (default LINEAR). */
      modifier?: bigint;
    }
  | {
      /** Memfds (e.g. QEMU's display memory). */
      kind: 'memfd';
      /** One entry per buffer of the pool. */
      buffers: ExternalMemfd[];
    };

/** One buffer of an adopted dma-buf pool: its dma-bufs and where each plane lies in them. */
export interface ExternalDmabuf {
  /** The dma-bufs (1–4). surfacelink duplicates them; you keep and close yours. */
  fds: (OsHandle | NativeFd)[];
  /** Per plane: which fd, its offset and stride. */
  planes: {
    /** Index in `fds` of the dma-buf holding the plane. */
    fdIndex: number;
    /** Byte offset of the plane's first row. */
    offset: number;
    /** Bytes per row. */
    stride: number;
  }[];
}

/** One buffer of an adopted memfd pool: the memfd and where each plane lies in it. */
export interface ExternalMemfd {
  /** A memfd holding every plane. surfacelink duplicates it; you keep and close yours. */
  fd: OsHandle | NativeFd;
  /** Per plane: offset and stride in the memfd. */
  planes: {
    /** Byte offset of the plane's first row. */
    offset: number;
    /** Bytes per row. */
    stride: number;
  }[];
}

/** What a producer asks a mechanism to adopt: buffer `index` of someone else's `backing`. */
export interface AdoptRequest {
  /** Pixel format of the buffer. */
  format: FormatInfo;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** A label for the buffer (logs, dma-buf names). */
  label: string;
  /** The external buffers (of a kind this mechanism `adopts`), and which of them to adopt. */
  backing: ExternalBacking;
  /** Which of `backing.buffers` this request adopts. */
  index: number;
}

/** What a client declared, for an importer to check a received buffer against. */
export interface ImportOptions {
  /** Formats × modifiers this importer declared; a buffer outside them is refused. */
  accepts?: {
    /** Whether the DRM `format` × `modifier` was declared. */
    has(format: number, modifier: bigint): boolean;
  };
}

/** Options a client gives its offers. */
export interface OfferOptions {
  /** For mechanisms that negotiate formats: what to declare instead of the default. */
  formats?: FormatSet;
}

/** What a server component attached to a server for one mechanism (StreamServer → stream.v1). */
export interface AcceptContext {
  /** What a server component attached for `mechanism` (stream.v1: its endpoint), or undefined when none is. */
  attachment(mechanism: string): unknown;
}

/** A server's verdict on a client's offer. */
export type Acceptance =
  | Refusal
  | {
      /** Absent: the offer is accepted. */
      readonly refused?: undefined;
      /** The formats both sides can use (mechanisms that negotiate formats). */
      readonly formats?: FormatSet;
      /** Appended to the reason ("; common formats: …"). */
      readonly detail?: string;
      /** Replaces " and the server supports it" in the reason. */
      readonly summary?: string;
      /** Extra WELCOME fields for this mechanism (stream.v1: the endpoint). */
      readonly welcome?: Record<string, unknown>;
    };

/**
 * Server side of a handle courier: one per session of a mechanism whose handles the transport
 * cannot carry (iosurface.v1: mach ports cannot cross a unix socket). The SCANOUT then declares
 * no handles; the courier hands them over first, in order, on its own channel.
 */
export interface CourierServer {
  /** WELCOME fields the client needs to reach the courier (iosurface.v1: the mach service and a nonce). */
  readonly welcome: Record<string, unknown>;
  /** Sends `handles` (those of the SCANOUT about to go out) ahead of it; throws SurfaceLinkError. */
  deliver(handles: readonly OsHandle[]): void;
  /** Ends it: the session ended or moved to another mechanism. Idempotent. */
  close(): void;
}

/** Client side of a handle courier (see CourierServer). */
export interface CourierClient {
  /** The handles delivered for the SCANOUT just received, in order; throws SurfaceLinkError. */
  collect(): OsHandle[];
  /** Ends it. Idempotent. */
  close(): void;
}

/** Makes both sides of a mechanism's handle courier. */
export interface CourierFactory {
  /** Server: when the mechanism is chosen for a session; `peer` is the transport's view of the client. */
  server(peer: PeerIdentity): CourierServer;
  /** Client: from the WELCOME that chose the mechanism; `server` is the transport's view of the server. */
  client(welcome: WelcomeInfo, server: PeerIdentity): CourierClient;
}

/**
 * A way to share buffers between processes: shm.v1 (memfds), dmabuf.v1 (dma-bufs), stream.v1 (an
 * encoded stream). Register an implementation with `mechanisms.register()`; the core asks its
 * `caps` and never compares its name. Methods marked "Client" run in the viewer's process, "Server"
 * in the producer's; each is optional where the mechanism has no such role.
 */
export interface Mechanism {
  /** Versioned wire name: 'shm.v1', 'dmabuf.v1', 'stream.v1', … A name never changes meaning. */
  readonly name: string;
  /** What the core may rely on (handles, CPU access, fences, format negotiation, copies, fallback). */
  readonly caps: MechanismCaps;
  /**
   * Whether it works in this process, and why (not). Called once per process by the registry; may
   * allocate a little.
   */
  probe(): ProbeResult;
  /** Client: the parameters of its HELLO offer (what this process can import). */
  offer?(options: OfferOptions): Record<string, unknown>;
  /** Server: whether it can serve a client with this offer. */
  accept(offer: MechanismOffer, context: AcceptContext): Acceptance;
  /** Names accepted by AllocateRequest.allocator. */
  readonly allocators?: readonly string[];
  /**
   * Server: a new buffer for a surface; throws SurfaceLinkError (E_NO_MECHANISM, E_UNSUPPORTED,
   * E_SYSTEM) if it cannot.
   */
  allocate?(request: AllocateRequest): ProducerBacking;
  /** ExternalBacking kinds it adopts. */
  readonly adopts?: readonly ExternalBacking['kind'][];
  /** Whether adopting works here (it may where allocating does not: dma-bufs need no allocator); default: probe(). */
  canAdopt?(): ProbeResult;
  /** Validates the external buffer like any import, then takes its own duplicates. */
  adopt?(request: AdoptRequest): ProducerBacking;
  /** Client: checks the WELCOME that chose it carries what the mechanism needs (E_MALFORMED otherwise). */
  checkWelcome?(welcome: WelcomeInfo): void;
  /** Validates `handles` against `desc` before touching them; throws SurfaceLinkError with a stable code. */
  importBuffer?(desc: ScanoutBody, format: FormatInfo, handles: OsHandle[], options: ImportOptions): ConsumerBuffer;
  /**
   * Present where the transport cannot carry this mechanism's handles: they travel through a
   * per-session courier instead, and the SCANOUT declares none (docs/protocol.md §9.1.3).
   * Such a mechanism is chosen only at HELLO (`caps.fallback` false).
   */
  readonly courier?: CourierFactory;
  /**
   * Present where a server must name the mechanism in `ServerOptions.mechanisms` to serve it (it is
   * never served by default); says why, for the negotiation reason and `doctor`.
   */
  readonly explicitOnly?: string;
}

/**
 * Thrown by an importer for a valid buffer it cannot take (a format × modifier it did not
 * declare, a kernel that refuses the mapping): reported to the server with IMPORT_FAILED so
 * it can fall back, instead of being treated as a protocol violation.
 */
export class ImportRefused extends SurfaceLinkError {}
