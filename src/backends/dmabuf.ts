/**
 * dmabuf.v1: buffers are Linux dma-bufs (1–4 fds, per-plane offset/stride, a DRM fourcc and
 * a 64-bit modifier). Allocation is tried in order, each skip with its reason:
 *   GBM on a render node → the dma-heap system heap → udmabuf over a sealed memfd.
 * vgem dumb buffers (a virtual GPU's allocator, present in the test VM) are used only when
 * asked for by name. Every CPU read and write of a mapping is bracketed by
 * DMA_BUF_IOCTL_SYNC; fences are sync_files (see fences.ts).
 */
import * as fs from 'node:fs';
import { SurfaceLinkError } from '../errors.js';
import { FORMATS, MODIFIER_LINEAR, linearLayout, type FormatInfo, type PlaneLayout } from '../formats.js';
import { FormatSet } from '../format-set.js';
import { loadNative, probeNative, type CpuAccess, type NativeDmabuf, type NativeFd } from '../native.js';
import { Mechanism } from '../protocol/constants.js';
import type { ScanoutBody } from '../protocol/codec.js';
import { checkPlanesFit, validateDescriptor } from '../protocol/validate.js';
import { allocateMemfd, shmExport, unmap } from './shm.js';
import { gbmAllocate, gbmProbe } from './gbm.js';
import { ImportRefused, type Backend, type BufferExport, type ExportedBuffer, type ImportOptions, type ImportedBuffer, type ProbeResult } from './types.js';

export type AllocatorName = 'gbm' | 'dma-heap' | 'udmabuf' | 'vgem';

/** Tried in this order when no allocator is named. */
export const ALLOCATOR_ORDER: readonly AllocatorName[] = ['gbm', 'dma-heap', 'udmabuf'];

interface Allocation {
  /** The dma-bufs (usually one holding every plane). */
  fds: NativeFd[];
  /** Bytes in each of `fds`. */
  sizes: number[];
  /** The memfd behind them, when there is one (udmabuf): shm clients get it directly. */
  memfd: NativeFd | null;
  memfdMemory: ArrayBuffer | null;
  planes: { handleIndex: number; layout: PlaneLayout }[];
  modifier: bigint;
  allocator: AllocatorName;
}

/** A single dma-buf holding every plane in our linear layout. */
function single(fd: NativeFd, planes: PlaneLayout[], size: number, allocator: AllocatorName, memfd: NativeFd | null = null, memfdMemory: ArrayBuffer | null = null): Allocation {
  return { fds: [fd], sizes: [size], memfd, memfdMemory, planes: planes.map((layout) => ({ handleIndex: 0, layout })), modifier: MODIFIER_LINEAR, allocator };
}

interface Allocator {
  name: AllocatorName;
  probe(): ProbeResult;
  allocate(format: FormatInfo, width: number, height: number, label: string): Allocation;
}

function dmabufModule(): NativeDmabuf {
  const d = loadNative().dmabuf;
  if (!d) throw new SurfaceLinkError('E_NO_MECHANISM', 'this build of the addon has no dma-buf support');
  return d;
}

const why = (e: unknown): string => (e as Error).message.split('\n')[0];

const gbmAllocator: Allocator = {
  name: 'gbm',
  probe() {
    const r = gbmProbe();
    return { available: r.available, reason: r.reason };
  },
  allocate(format, width, height) {
    // LINEAR: what every importer here (CPU, shm shadow copies) can read. Tiled modifiers
    // need an importer that declares them, which only a GPU client does (issue 4).
    const g = gbmAllocate(format, width, height, [MODIFIER_LINEAR]);
    const planes = g.planes.map((p, i) => {
      const rows = Math.ceil(height / (format.planes[i]?.yDiv ?? 1));
      const layout: PlaneLayout = { offset: p.offset, stride: p.stride, size: p.stride * rows, width: Math.ceil(width / (format.planes[i]?.xDiv ?? 1)), height: rows };
      return { handleIndex: p.handleIndex, layout };
    });
    return { fds: g.fds, sizes: g.sizes, memfd: null, memfdMemory: null, planes, modifier: g.modifier, allocator: 'gbm' };
  },
};

const heapAllocator: Allocator = {
  name: 'dma-heap',
  probe() {
    if (!fs.existsSync('/dev/dma_heap/system')) return { available: false, reason: '/dev/dma_heap/system is absent (kernel without CONFIG_DMABUF_HEAPS_SYSTEM)' };
    try {
      dmabufModule().heapAlloc('system', 4096).close();
      return { available: true, reason: 'the system dma-heap allocates' };
    } catch (e) {
      return { available: false, reason: `the system dma-heap refused: ${why(e)}` };
    }
  },
  allocate(format, width, height) {
    const { planes, totalSize } = linearLayout(format, width, height);
    return single(dmabufModule().heapAlloc('system', totalSize), planes, totalSize, 'dma-heap');
  },
};

const udmabufAllocator: Allocator = {
  name: 'udmabuf',
  probe() {
    if (!fs.existsSync('/dev/udmabuf')) return { available: false, reason: '/dev/udmabuf is absent (kernel without CONFIG_UDMABUF)' };
    try {
      const m = loadNative().createMemfd('surfacelink-probe', 4096);
      try {
        dmabufModule().createUdmabuf(m, 0, 4096).close();
      } finally {
        m.close();
      }
      return { available: true, reason: 'udmabuf wraps sealed memfds' };
    } catch (e) {
      return { available: false, reason: `udmabuf refused: ${why(e)}` };
    }
  },
  allocate(format, width, height, label) {
    const m = allocateMemfd(format, width, height, label);
    try {
      return single(dmabufModule().createUdmabuf(m.fd, 0, m.size), m.planes, m.size, 'udmabuf', m.fd, m.memory);
    } catch (error) {
      unmap(m.memory);
      m.fd.close();
      throw SurfaceLinkError.fromNative(error);
    }
  },
};

/** The vgem card, opened once per process. */
let vgemCard: NativeFd | null | undefined;
function findVgem(): NativeFd | null {
  if (vgemCard !== undefined) return vgemCard;
  vgemCard = null;
  const drm = loadNative().drm;
  for (const node of drm?.listNodes() ?? []) {
    if (node.kind !== 'card') continue;
    try {
      const card = drm!.open(node.path);
      if (drm!.version(card).name === 'vgem') return (vgemCard = card);
      card.close();
    } catch {
      /* not ours to use */
    }
  }
  return null;
}

const vgemAllocator: Allocator = {
  name: 'vgem',
  probe() {
    return findVgem() ? { available: true, reason: 'vgem (a virtual GPU) makes dumb buffers' } : { available: false, reason: 'no vgem card in /dev/dri (module vgem not loaded)' };
  },
  allocate(format, width, height) {
    const card = findVgem();
    const drm = loadNative().drm;
    if (!card || !drm) throw new SurfaceLinkError('E_NO_MECHANISM', 'no vgem card');
    const { planes, totalSize } = linearLayout(format, width, height);
    // A dumb buffer is bytes to us: 4096-byte rows, as many as the layout needs.
    const dumb = drm.createDumb(card, 1024, Math.ceil(totalSize / 4096), 32);
    try {
      return single(drm.primeExport(card, dumb.handle), planes, totalSize, 'vgem');
    } finally {
      drm.closeHandle(card, dumb.handle); // the dma-buf keeps the object alive
    }
  },
};

const ALLOCATORS: Record<AllocatorName, Allocator> = { gbm: gbmAllocator, 'dma-heap': heapAllocator, udmabuf: udmabufAllocator, vgem: vgemAllocator };

let probes: Map<AllocatorName, ProbeResult> | undefined;

/** Every allocator's probe, in preference order (vgem last: only used when named). */
export function allocatorReports(): { name: AllocatorName; available: boolean; reason: string }[] {
  if (!probes) {
    probes = new Map();
    const native = probeNative().addon;
    for (const name of [...ALLOCATOR_ORDER, 'vgem'] as AllocatorName[]) {
      if (!native?.dmabuf) probes.set(name, { available: false, reason: 'the native addon has no dma-buf support on this platform' });
      else {
        try {
          probes.set(name, ALLOCATORS[name].probe());
        } catch (e) {
          probes.set(name, { available: false, reason: why(e) });
        }
      }
    }
  }
  return [...probes].map(([name, r]) => ({ name, ...r }));
}

function pickAllocator(name?: AllocatorName): Allocator {
  const reports = allocatorReports();
  if (name) {
    const r = reports.find((x) => x.name === name);
    if (!r?.available) throw new SurfaceLinkError('E_NO_MECHANISM', `dma-buf allocator ${name} is unavailable: ${r?.reason ?? 'unknown allocator'}`);
    return ALLOCATORS[name];
  }
  for (const n of ALLOCATOR_ORDER) if (reports.find((x) => x.name === n)?.available) return ALLOCATORS[n];
  throw new SurfaceLinkError('E_NO_MECHANISM', `no dma-buf allocator works here: ${reports.map((r) => `${r.name}: ${r.reason}`).join('; ')}`);
}

/** CPU access on a set of dma-buf fds, bracketed with DMA_BUF_IOCTL_SYNC. */
function syncAll(fds: readonly NativeFd[], phase: 'start' | 'end', access: CpuAccess): void {
  const d = dmabufModule();
  for (const fd of fds) d.sync(fd, phase, access);
}

/** Everything the CPU can read from the mapped objects, as one view per plane. */
function viewsOf(memories: ArrayBuffer[], planes: readonly { handleIndex: number; layout: PlaneLayout }[]): Uint8Array[] {
  return planes.map((p) => new Uint8Array(memories[p.handleIndex], p.layout.offset, p.layout.size));
}

/** An exported buffer over dma-buf `fds` (owned), mapped for the CPU. */
function exportDmabufs(fds: NativeFd[], planes: { handleIndex: number; layout: PlaneLayout }[], modifier: bigint, sizes: number[], extra: { memfd: NativeFd | null; memfdMemory: ArrayBuffer | null; kind: string }): ExportedBuffer {
  const memories: ArrayBuffer[] = [];
  try {
    for (let i = 0; i < fds.length; i++) memories.push(fds[i].map(0, sizes[i], 'shared'));
  } catch (error) {
    for (const m of memories) unmap(m);
    throw SurfaceLinkError.fromNative(error);
  }
  const st = fds[0].stat();
  const primary: BufferExport = { mechanism: Mechanism.DMABUF_V1, handles: fds, planes, modifier };
  const layouts = planes.map((p) => p.layout);
  const d = dmabufModule();
  return {
    primary,
    shm: extra.memfd ? shmExport(extra.memfd, layouts) : null,
    dmabuf: fds[0],
    planes: layouts,
    views: viewsOf(memories, planes),
    identity: { kind: extra.kind, inode: st.inode, device: st.device, size: sizes[0] },
    handles: fds,
    beginCpuAccess: (access) => syncAll(fds, 'start', access),
    endCpuAccess: (access) => syncAll(fds, 'end', access),
    busy() {
      for (let i = 0; i < fds.length; i++) if (!d.idle(fds[i], 'rw')) return true;
      return false;
    },
    close() {
      for (const m of memories) unmap(m);
      if (extra.memfdMemory) unmap(extra.memfdMemory);
      for (const fd of fds) fd.close();
      extra.memfd?.close();
    },
  };
}

/** Formats × modifiers our allocators make and our CPU importer reads: every known format, LINEAR. */
export function linearFormats(): FormatSet {
  return FormatSet.of(Object.values(FORMATS).map((f) => [f.fourcc, [MODIFIER_LINEAR]] as [number, bigint[]]));
}

export interface DmabufAllocateOptions {
  allocator?: AllocatorName;
}

export const dmabufBackend: Backend & { allocateWith(format: FormatInfo, width: number, height: number, label: string, options: DmabufAllocateOptions): ExportedBuffer } = {
  name: Mechanism.DMABUF_V1,

  probe(): ProbeResult {
    if (process.platform !== 'linux') return { available: false, reason: `dma-bufs are Linux-only (this is ${process.platform})` };
    const reports = allocatorReports();
    const usable = reports.find((r) => r.available && ALLOCATOR_ORDER.includes(r.name));
    const skipped = reports.filter((r) => r !== usable && ALLOCATOR_ORDER.includes(r.name)).map((r) => `${r.name}: ${r.reason}`);
    if (usable) return { available: true, reason: `allocating with ${usable.name} (${usable.reason})${skipped.length ? `; skipped ${skipped.join('; ')}` : ''}` };
    return { available: false, reason: `no dma-buf allocator: ${skipped.join('; ')}` };
  },

  allocate(format, width, height, label) {
    return this.allocateWith(format, width, height, label, {});
  },

  allocateWith(format, width, height, label, options) {
    const a = pickAllocator(options.allocator).allocate(format, width, height, label);
    for (const fd of a.fds) {
      try {
        dmabufModule().setName(fd, label.slice(0, 31));
      } catch {
        /* naming is for debugging (fdinfo); older kernels lack it */
      }
    }
    try {
      return exportDmabufs(a.fds, a.planes, a.modifier, a.sizes, { memfd: a.memfd, memfdMemory: a.memfdMemory, kind: `dmabuf:${a.allocator}` });
    } catch (error) {
      for (const fd of a.fds) fd.close();
      if (a.memfdMemory) unmap(a.memfdMemory);
      a.memfd?.close();
      throw error;
    }
  },

  offer() {
    return { formats: linearFormats().toJSON(), device: null };
  },

  formats() {
    return linearFormats();
  },

  importBuffer(desc: ScanoutBody, format: FormatInfo, handles: NativeFd[], options?: ImportOptions): ImportedBuffer {
    return importDmabufs(desc, format, handles, options?.accepts ?? linearFormats());
  },
};

/**
 * Validates dma-bufs against a descriptor, then maps them: each fd must really be a
 * dma-buf (the kernel says so, not the peer), its size (lseek) must cover every plane on
 * it, and the format × modifier must be one we declared we can read.
 */
export function importDmabufs(desc: ScanoutBody, format: FormatInfo, handles: NativeFd[], accepts: { has(format: number, modifier: bigint): boolean }): ImportedBuffer {
  if (handles.length < 1 || handles.length > 4) throw new SurfaceLinkError('E_HANDLE_COUNT', `dmabuf.v1 buffers carry 1..4 dma-bufs; got ${handles.length}`);
  const { planes } = validateDescriptor(desc);
  const sizes = handles.map((fd, i) => {
    const st = fd.stat();
    if (st.kind !== 'dmabuf') throw new SurfaceLinkError('E_HANDLE_TYPE', `handle ${i} must be a dma-buf; it is a ${st.kind}`);
    return st.size ?? 0;
  });
  for (let i = 0; i < handles.length; i++) checkPlanesFit(planes, (p) => desc.planes[p].handleIndex, i, sizes[i]);
  if (!accepts.has(format.fourcc, desc.modifier))
    throw new ImportRefused('E_UNSUPPORTED_FORMAT', `${format.name} with modifier 0x${desc.modifier.toString(16)} was not declared; this importer reads LINEAR buffers with the CPU`);
  const memories: ArrayBuffer[] = [];
  try {
    for (let i = 0; i < handles.length; i++) memories.push(handles[i].map(0, sizes[i], 'shared'));
  } catch (error) {
    for (const m of memories) unmap(m);
    throw new ImportRefused('E_IMPORT_FAILED', `mapping the dma-buf failed: ${why(error)}`);
  }
  const st = handles[0].stat();
  const placed = planes.map((layout, i) => ({ handleIndex: desc.planes[i].handleIndex, layout }));
  return {
    planes,
    views: viewsOf(memories, placed),
    identity: { kind: 'dmabuf', inode: st.inode, device: st.device, size: sizes[0] },
    handles,
    beginCpuAccess: (access) => syncAll(handles, 'start', access),
    endCpuAccess: (access) => syncAll(handles, 'end', access),
    close() {
      for (const m of memories) unmap(m);
      for (const fd of handles) fd.close();
    },
  };
}

export interface ExternalDmabuf {
  /** The dma-bufs (1–4). surfacelink duplicates them; you keep and close yours. */
  fds: NativeFd[];
  /** Per plane: which fd, its offset and stride. */
  planes: { fdIndex: number; offset: number; stride: number }[];
}

/**
 * Adopts dma-bufs made by someone else (a GPU driver, QEMU, a vfio vGPU) as an exported
 * buffer, after validating them like any import.
 */
export function adoptDmabufs(format: FormatInfo, width: number, height: number, modifier: bigint, buffer: ExternalDmabuf): ExportedBuffer {
  const desc: ScanoutBody = {
    surfaceId: 0, bufferId: 0, generation: 0, width, height, format: format.fourcc, modifier, orientation: 0,
    visible: { x: 0, y: 0, width, height },
    planes: buffer.planes.map((p, i) => {
      const rows = Math.ceil(height / (format.planes[i]?.yDiv ?? 1));
      return { handleIndex: p.fdIndex, stride: p.stride, offset: p.offset, size: p.stride * rows };
    }),
  };
  if (buffer.fds.length < 1 || buffer.fds.length > 4) throw new SurfaceLinkError('E_HANDLE_COUNT', `1..4 dma-bufs; got ${buffer.fds.length}`);
  for (const p of buffer.planes) if (!Number.isInteger(p.fdIndex) || p.fdIndex < 0 || p.fdIndex >= buffer.fds.length) throw new SurfaceLinkError('E_HANDLE_COUNT', `plane names fd ${p.fdIndex}; ${buffer.fds.length} given`);
  const { planes } = validateDescriptor(desc);
  const sizes = buffer.fds.map((fd, i) => {
    const st = fd.stat();
    if (st.kind !== 'dmabuf') throw new SurfaceLinkError('E_HANDLE_TYPE', `fds[${i}] must be a dma-buf; it is a ${st.kind}`);
    return st.size ?? 0;
  });
  for (let i = 0; i < buffer.fds.length; i++) checkPlanesFit(planes, (p) => desc.planes[p].handleIndex, i, sizes[i]);
  const owned = buffer.fds.map((fd) => fd.dup());
  try {
    return exportDmabufs(owned, planes.map((layout, i) => ({ handleIndex: desc.planes[i].handleIndex, layout })), modifier, sizes, { memfd: null, memfdMemory: null, kind: 'dmabuf:external' });
  } catch (error) {
    for (const fd of owned) fd.close();
    throw error;
  }
}
