/**
 * The one shadow-copy adapter: serves a producer's buffer to clients of a copy-target mechanism
 * (shm.v1 on Linux) when the buffer has no same-memory form for it — a dma-buf from GBM or a
 * heap, an unsealed adopted memfd, and later an IOSurface or a D3D11 texture read back. One
 * shadow per target mechanism per buffer, shared by every such client, brought up to date by
 * one CPU copy per present (inside the source's CPU read bracket), and only when a client of
 * that mechanism is actually served the buffer.
 */
import { MODIFIER_LINEAR, planeMinStride, type FormatInfo } from '../formats.js';
import { modifierName } from '../format-set.js';
import type { BufferExport, Mechanism, ProducerBacking, Refusal } from './types.js';

interface Shadow {
  backing: ProducerBacking;
  export: BufferExport;
  version: number;
}

/** What the adapter copies from. */
export interface CopySource {
  readonly backing: ProducerBacking;
  readonly format: FormatInfo;
  readonly width: number;
  readonly height: number;
  readonly label: string;
  /** Bumped on every present: a shadow older than this is stale. */
  readonly contentVersion: number;
}

const NO_PEER = { formats: null };

export class CpuCopy {
  private readonly shadows = new Map<string, Shadow>();

  constructor(private readonly source: CopySource) {}

  /** A copy of the source for `target`'s clients, up to date, or why there cannot be one. */
  exportFor(target: Mechanism): BufferExport | Refusal {
    const src = this.source;
    if (!target.caps.copyTarget || !target.allocate) return { refused: `${target.name} cannot hold a copy` };
    if (src.backing.modifier !== MODIFIER_LINEAR)
      return {
        refused:
          `the buffers are tiled (modifier ${modifierName(src.backing.modifier)}); a ${target.name} ` +
          `copy would be unreadable`,
      };
    if (src.backing.views.length === 0)
      return { refused: `the CPU cannot read ${src.backing.mechanism} buffers; no ${target.name} copy` };
    let shadow = this.shadows.get(target.name);
    if (!shadow) {
      const backing = target.allocate({
        format: src.format,
        width: src.width,
        height: src.height,
        label: `${src.label}-shadow`,
      });
      const exported = backing.exportSame(target.name, NO_PEER);
      if (exported === null || 'refused' in exported) {
        backing.close();
        return { refused: `${target.name} cannot describe its own buffer` };
      }
      shadow = { backing, export: exported, version: -1 };
      this.shadows.set(target.name, shadow);
    }
    if (shadow.version !== src.contentVersion) {
      this.copy(shadow.backing);
      shadow.version = src.contentVersion;
    }
    return shadow.export;
  }

  private copy(dst: ProducerBacking): void {
    const src = this.source;
    src.backing.beginCpuAccess('read');
    try {
      for (let i = 0; i < dst.views.length; i++) {
        const from = src.backing.planes[i];
        const to = dst.planes[i];
        copyPlane(
          src.backing.views[i],
          from.stride,
          dst.views[i],
          to.stride,
          planeMinStride(src.format, i, src.width),
          to.height,
        );
      }
    } finally {
      src.backing.endCpuAccess('read');
    }
  }

  close(): void {
    for (const s of this.shadows.values()) s.backing.close();
    this.shadows.clear();
  }
}

/** Copies `rows` rows of `rowBytes` between two layouts (one set() when the strides agree). */
function copyPlane(
  src: Uint8Array,
  srcStride: number,
  dst: Uint8Array,
  dstStride: number,
  rowBytes: number,
  rows: number,
): void {
  if (srcStride === dstStride) {
    dst.set(src.subarray(0, Math.min(src.length, dst.length)));
    return;
  }
  for (let r = 0; r < rows; r++) dst.set(src.subarray(r * srcStride, r * srcStride + rowBytes), r * dstStride);
}
