/** The contract every mechanism implements: probe, allocate (export), import. */
import type { FormatInfo, PlaneLayout } from '../formats.js';
import type { CpuAccess, NativeFd } from '../native.js';
import type { ScanoutBody } from '../protocol/codec.js';
import { SurfaceLinkError } from '../errors.js';

export interface ProbeResult {
  available: boolean;
  /** Why it is (or is not) available, in words a person can act on. */
  reason: string;
}

/** CPU access brackets: every CPU read/write of a buffer's pixels happens between begin and end. */
export interface CpuAccessor {
  beginCpuAccess(access: CpuAccess): void;
  endCpuAccess(access: CpuAccess): void;
}

/** The handles and layout that describe a buffer to a client of one mechanism. */
export interface BufferExport {
  readonly mechanism: string;
  readonly handles: NativeFd[];
  /** Per plane: the handle index it lives in, and its layout within that handle's object. */
  readonly planes: { handleIndex: number; layout: PlaneLayout }[];
  readonly modifier: bigint;
}

/** A buffer we allocated (or adopted) and can hand out. */
export interface ExportedBuffer extends CpuAccessor {
  /** How this buffer is described to clients of its own mechanism. */
  readonly primary: BufferExport;
  /** The same memory as a shm.v1 export (udmabuf's memfd), when there is one: zero-copy for shm clients. */
  readonly shm: BufferExport | null;
  /** The dma-buf to export implicit fences from, if any. */
  readonly dmabuf: NativeFd | null;
  readonly planes: PlaneLayout[];
  /** Writable CPU views, one per plane. */
  readonly views: Uint8Array[];
  readonly identity: BackingIdentity;
  /** The fds holding the planes (a memfd, or 1–4 dma-bufs), owned by the buffer: for GL import. */
  readonly handles: readonly NativeFd[];
  /** True while GPU work on the buffer (implicit fences) is unfinished; absent: never busy. */
  busy?(): boolean;
  close(): void;
}

/** A buffer received from a peer, validated and mapped. */
export interface ImportedBuffer extends CpuAccessor {
  readonly planes: PlaneLayout[];
  /** CPU views, one per plane (read-only by contract). */
  readonly views: Uint8Array[];
  readonly identity: BackingIdentity;
  /** The fds holding the planes (a memfd, or 1–4 dma-bufs), owned by the buffer: for GL import. */
  readonly handles: readonly NativeFd[];
  close(): void;
}

/** What the memory is, so tests and tools can prove two processes share one object. */
export interface BackingIdentity {
  kind: string;
  inode: bigint;
  device: bigint;
  size: number;
}

export interface ImportOptions {
  /** Formats × modifiers this importer declared; a buffer outside them is refused. */
  accepts?: { has(format: number, modifier: bigint): boolean };
}

export interface Backend {
  readonly name: string;
  probe(): ProbeResult;
  allocate(format: FormatInfo, width: number, height: number, label: string): ExportedBuffer;
  /** Validates `handles` against `desc` before touching them; throws SurfaceLinkError with a stable code. */
  importBuffer(desc: ScanoutBody, format: FormatInfo, handles: NativeFd[], options?: ImportOptions): ImportedBuffer;
  /** Parameters for this mechanism's HELLO offer (what this process can import). */
  offer?(): Record<string, unknown>;
  /** Formats × modifiers this process can allocate; mechanisms that negotiate formats have it. */
  formats?(): import('../format-set.js').FormatSet;
}

/**
 * Thrown by an importer for a valid buffer it cannot take (a format × modifier it did not
 * declare, a kernel that refuses the mapping): reported to the server with IMPORT_FAILED so
 * it can fall back, instead of being treated as a protocol violation.
 */
export class ImportRefused extends SurfaceLinkError {}

export const noCpuAccess: CpuAccessor = { beginCpuAccess() {}, endCpuAccess() {} };
