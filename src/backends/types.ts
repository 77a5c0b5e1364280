/** The contract every mechanism implements: probe, allocate (export), import. */
import type { FormatInfo, PlaneLayout } from '../formats.js';
import type { NativeFd } from '../native.js';
import type { ScanoutBody } from '../protocol/codec.js';

export interface ProbeResult {
  available: boolean;
  /** Why it is (or is not) available, in words a person can act on. */
  reason: string;
}

/** A buffer we allocated and can hand out: its handles, layout and CPU mapping. */
export interface ExportedBuffer {
  readonly handles: NativeFd[];
  readonly planes: PlaneLayout[];
  readonly modifier: bigint;
  /** Writable CPU mapping of the whole allocation. */
  readonly memory: ArrayBuffer;
  readonly identity: BackingIdentity;
  close(): void;
}

/** A buffer received from a peer, validated and mapped. */
export interface ImportedBuffer {
  readonly memory: ArrayBuffer;
  readonly planes: PlaneLayout[];
  readonly identity: BackingIdentity;
  close(): void;
}

/** What the memory is, so tests and tools can prove two processes share one object. */
export interface BackingIdentity {
  kind: string;
  inode: bigint;
  device: bigint;
  size: number;
}

export interface Backend {
  readonly name: string;
  probe(): ProbeResult;
  allocate(format: FormatInfo, width: number, height: number, label: string): ExportedBuffer;
  /** Validates `handles` against `desc` before touching them; throws SurfaceLinkError with a stable code. */
  importBuffer(desc: ScanoutBody, format: FormatInfo, handles: NativeFd[]): ImportedBuffer;
}
