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

export interface ProbeResult {
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
  beginCpuAccess(access: CpuAccess): void;
  endCpuAccess(access: CpuAccess): void;
}

export const noCpuAccess: CpuAccessor = { beginCpuAccess() {}, endCpuAccess() {} };

/** What the memory is, so tests and tools can prove two processes share one object. */
export interface BackingIdentity {
  kind: string;
  inode: bigint;
  device: bigint;
  size: number;
}

/** A buffer as one mechanism's clients see it: handles and per-plane layout. */
export interface BufferExport {
  readonly mechanism: string;
  /** Owned by the backing; the transport sends duplicates. */
  readonly handles: readonly OsHandle[];
  /** Per plane: the handle it lives in, and its layout within that handle's object. */
  readonly planes: readonly { handleIndex: number; layout: PlaneLayout }[];
  readonly modifier: bigint;
}

/** Why a buffer cannot be given to a client in some form. */
export interface Refusal {
  readonly refused: string;
}

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
  readonly planes: readonly PlaneLayout[];
  /** For each plane, the index in `handles` of the object it lives in. */
  readonly planeHandles: readonly number[];
  /** CPU views, one per plane (writable for allocated buffers). */
  readonly views: readonly Uint8Array[];
  readonly identity: BackingIdentity;
  /** The handles holding the planes, owned by the backing (for GL import and exports). */
  readonly handles: readonly OsHandle[];
  readonly modifier: bigint;
  /**
   * This same memory described for `mechanism`'s clients: its own mechanism, or another that
   * can reach the same memory (udmabuf's memfd as shm.v1). A Refusal says why it cannot for
   * this peer; null means there is no same-memory form (a CPU copy may serve the client).
   */
  exportSame(mechanism: string, peer: PeerParams): BufferExport | Refusal | null;
  /** Present where the buffer carries implicit GPU fences (dma-bufs). */
  readonly fences?: ImplicitFences;
  /** Frees it; called once nobody uses the buffer any more. */
  close(): void;
}

/** A buffer received from a peer, validated and mapped. */
export interface ConsumerBuffer extends CpuAccessor {
  readonly planes: PlaneLayout[];
  /** For each plane, the index in `handles` of the object it lives in. */
  readonly planeHandles: readonly number[];
  /** CPU views, one per plane (read-only by contract). */
  readonly views: Uint8Array[];
  readonly identity: BackingIdentity;
  /** The handles holding the planes, owned by the buffer: for GL import. */
  readonly handles: readonly OsHandle[];
  close(): void;
}

export interface AllocateRequest {
  format: FormatInfo;
  width: number;
  height: number;
  /** A label for the buffer (visible in /proc/<pid>/fd as memfd:<label>). */
  label: string;
  /** A mechanism-specific allocator ('gbm', 'dma-heap', …), from its `allocators`. */
  allocator?: string;
}

/** Buffers made by someone else, by kind: what `SurfaceServer.adoptSurface` takes. */
export type ExternalBacking =
  { kind: 'dmabuf'; buffers: ExternalDmabuf[]; modifier?: bigint } | { kind: 'memfd'; buffers: ExternalMemfd[] };

export interface ExternalDmabuf {
  /** The dma-bufs (1–4). surfacelink duplicates them; you keep and close yours. */
  fds: (OsHandle | NativeFd)[];
  /** Per plane: which fd, its offset and stride. */
  planes: { fdIndex: number; offset: number; stride: number }[];
}

export interface ExternalMemfd {
  /** A memfd holding every plane. surfacelink duplicates it; you keep and close yours. */
  fd: OsHandle | NativeFd;
  /** Per plane: offset and stride in the memfd. */
  planes: { offset: number; stride: number }[];
}

export interface AdoptRequest {
  format: FormatInfo;
  width: number;
  height: number;
  label: string;
  /** The external buffers (of a kind this mechanism `adopts`), and which of them to adopt. */
  backing: ExternalBacking;
  index: number;
}

export interface ImportOptions {
  /** Formats × modifiers this importer declared; a buffer outside them is refused. */
  accepts?: { has(format: number, modifier: bigint): boolean };
}

/** Options a client gives its offers. */
export interface OfferOptions {
  /** For mechanisms that negotiate formats: what to declare instead of the default. */
  formats?: FormatSet;
}

/** What a server component attached to a server for one mechanism (StreamServer → stream.v1). */
export interface AcceptContext {
  attachment(mechanism: string): unknown;
}

/** A server's verdict on a client's offer. */
export type Acceptance =
  | Refusal
  | {
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

export interface Mechanism {
  /** Versioned wire name: 'shm.v1', 'dmabuf.v1', 'stream.v1', … A name never changes meaning. */
  readonly name: string;
  readonly caps: MechanismCaps;
  probe(): ProbeResult;
  /** Client: the parameters of its HELLO offer (what this process can import). */
  offer?(options: OfferOptions): Record<string, unknown>;
  /** Server: whether it can serve a client with this offer. */
  accept(offer: MechanismOffer, context: AcceptContext): Acceptance;
  /** Names accepted by AllocateRequest.allocator. */
  readonly allocators?: readonly string[];
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
}

/**
 * Thrown by an importer for a valid buffer it cannot take (a format × modifier it did not
 * declare, a kernel that refuses the mapping): reported to the server with IMPORT_FAILED so
 * it can fall back, instead of being treated as a protocol violation.
 */
export class ImportRefused extends SurfaceLinkError {}
