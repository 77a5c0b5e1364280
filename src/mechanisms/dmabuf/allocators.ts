/**
 * Where dma-bufs come from, tried in order, each skip with its reason:
 *   GBM on a render node → the dma-heap system heap → udmabuf over a sealed memfd.
 * vgem dumb buffers (a virtual GPU's allocator, present in the test VM) are used only when
 * asked for by name.
 */
import * as fs from 'node:fs';
import { SurfaceLinkError } from '../../errors.js';
import { MODIFIER_LINEAR, linearLayout, type FormatInfo, type PlaneLayout } from '../../formats.js';
import { linuxNative, probeNative, type NativeDmabuf, type NativeFd } from '../../native/index.js';
import type { ProbeResult } from '../types.js';
import { allocateMemfd, unmap } from '../shm.js';
import { gbmAllocate, gbmProbe } from './gbm.js';

/**
 * Where dmabuf.v1 gets its dma-bufs: GBM on a render node, the dma-heap system heap, udmabuf over a
 * sealed memfd, or vgem dumb buffers (only when named).
 */
export type AllocatorName = 'gbm' | 'dma-heap' | 'udmabuf' | 'vgem';

/** Tried in this order when no allocator is named. */
export const ALLOCATOR_ORDER: readonly AllocatorName[] = ['gbm', 'dma-heap', 'udmabuf'];

export interface Allocation {
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
function single(
  fd: NativeFd,
  planes: PlaneLayout[],
  size: number,
  allocator: AllocatorName,
  memfd: NativeFd | null = null,
  memfdMemory: ArrayBuffer | null = null,
): Allocation {
  return {
    fds: [fd],
    sizes: [size],
    memfd,
    memfdMemory,
    planes: planes.map((layout) => ({ handleIndex: 0, layout })),
    modifier: MODIFIER_LINEAR,
    allocator,
  };
}

interface Allocator {
  name: AllocatorName;
  probe(): ProbeResult;
  allocate(format: FormatInfo, width: number, height: number, label: string): Allocation;
}

export function dmabufModule(): NativeDmabuf {
  const d = linuxNative().dmabuf;
  if (!d) throw new SurfaceLinkError('E_NO_MECHANISM', 'this build of the addon has no dma-buf support');
  return d;
}

export const why = (e: unknown): string => (e as Error).message.split('\n')[0];

const gbmAllocator: Allocator = {
  name: 'gbm',
  probe() {
    const r = gbmProbe();
    return { available: r.available, reason: r.reason };
  },
  allocate(format, width, height) {
    // LINEAR: what every importer here (CPU, shm shadow copies) can read. Tiled modifiers
    // need an importer that declares them, which only a GPU client does.
    const g = gbmAllocate(format, width, height, [MODIFIER_LINEAR]);
    const planes = g.planes.map((p, i) => {
      const rows = Math.ceil(height / (format.planes[i]?.yDiv ?? 1));
      const layout: PlaneLayout = {
        offset: p.offset,
        stride: p.stride,
        size: p.stride * rows,
        width: Math.ceil(width / (format.planes[i]?.xDiv ?? 1)),
        height: rows,
      };
      return { handleIndex: p.handleIndex, layout };
    });
    return {
      fds: g.fds,
      sizes: g.sizes,
      memfd: null,
      memfdMemory: null,
      planes,
      modifier: g.modifier,
      allocator: 'gbm',
    };
  },
};

const heapAllocator: Allocator = {
  name: 'dma-heap',
  probe() {
    if (!fs.existsSync('/dev/dma_heap/system'))
      return { available: false, reason: '/dev/dma_heap/system is absent (kernel without CONFIG_DMABUF_HEAPS_SYSTEM)' };
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
    if (!fs.existsSync('/dev/udmabuf'))
      return { available: false, reason: '/dev/udmabuf is absent (kernel without CONFIG_UDMABUF)' };
    try {
      const m = linuxNative().createMemfd('surfacelink-probe', 4096);
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
  const drm = linuxNative().drm;
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
    return findVgem()
      ? { available: true, reason: 'vgem (a virtual GPU) makes dumb buffers' }
      : { available: false, reason: 'no vgem card in /dev/dri (module vgem not loaded)' };
  },
  allocate(format, width, height) {
    const card = findVgem();
    const drm = linuxNative().drm;
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

const ALLOCATORS: Record<AllocatorName, Allocator> = {
  gbm: gbmAllocator,
  'dma-heap': heapAllocator,
  udmabuf: udmabufAllocator,
  vgem: vgemAllocator,
};

export const ALLOCATOR_NAMES = Object.keys(ALLOCATORS) as AllocatorName[];

let probes: Map<AllocatorName, ProbeResult> | undefined;

/** Every allocator's probe, in preference order (vgem last: only used when named). */
export function allocatorReports(): {
  /** The allocator. */
  name: AllocatorName;
  /** Whether it allocates here. */
  available: boolean;
  /** Why (not), in words a person can act on. */
  reason: string;
}[] {
  if (!probes) {
    probes = new Map();
    const native = probeNative().addon;
    for (const name of [...ALLOCATOR_ORDER, 'vgem'] as AllocatorName[]) {
      if (native?.platform !== 'linux' || !native.dmabuf)
        probes.set(name, { available: false, reason: 'the native addon has no dma-buf support on this platform' });
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

/** The named allocator, or the first that works; E_NO_MECHANISM with every reason otherwise. */
export function allocateDmabuf(
  format: FormatInfo,
  width: number,
  height: number,
  label: string,
  name?: string,
): Allocation {
  const reports = allocatorReports();
  let allocator: Allocator | undefined;
  if (name !== undefined) {
    const r = reports.find((x) => x.name === name);
    if (!r?.available)
      throw new SurfaceLinkError(
        'E_NO_MECHANISM',
        `dma-buf allocator ${name} is unavailable: ${r?.reason ?? 'unknown allocator'}`,
      );
    allocator = ALLOCATORS[name as AllocatorName];
  } else {
    const first = ALLOCATOR_ORDER.find((n) => reports.find((x) => x.name === n)?.available);
    if (first === undefined)
      throw new SurfaceLinkError(
        'E_NO_MECHANISM',
        `no dma-buf allocator works here: ${reports.map((r) => `${r.name}: ${r.reason}`).join('; ')}`,
      );
    allocator = ALLOCATORS[first];
  }
  return allocator.allocate(format, width, height, label);
}
