/**
 * dmabuf.v1: buffers are Linux dma-bufs (1–4 fds, per-plane offset/stride, a DRM fourcc and a
 * 64-bit modifier), allocated by ./allocators.ts or adopted from someone else (a GPU driver,
 * QEMU, a vfio vGPU). Clients declare formats × modifiers at HELLO; the server serves only
 * what they declared. Every CPU read and write of a mapping is bracketed by
 * DMA_BUF_IOCTL_SYNC; fences are sync_files (FRAME's acquire fence, RELEASE's release fence).
 */
import { SurfaceLinkError } from '../../errors.js';
import { FORMATS, MODIFIER_LINEAR, type FormatInfo, type PlaneLayout } from '../../formats.js';
import { FormatSet, modifierName } from '../../format-set.js';
import { fdHandle, handleFd, type OsHandle } from '../../handles.js';
import { probeNative, type CpuAccess, type NativeFd } from '../../native/index.js';
import type { ScanoutBody } from '../../protocol/codec.js';
import { checkPlanesFit, validateDescriptor } from '../../protocol/validate.js';
import { asOsHandle } from '../external.js';
import { descriptor, shmExport, unmap } from '../shm.js';
import {
  ImportRefused,
  type AdoptRequest,
  type AllocateRequest,
  type BufferExport,
  type ConsumerBuffer,
  type ExternalDmabuf,
  type ImplicitFences,
  type ImportOptions,
  type Mechanism,
  type ProbeResult,
  type ProducerBacking,
} from '../types.js';
import { ALLOCATOR_NAMES, ALLOCATOR_ORDER, allocateDmabuf, allocatorReports, dmabufModule, why } from './allocators.js';

export { allocatorReports, type AllocatorName } from './allocators.js';

const NAME = 'dmabuf.v1';

/** CPU access on a set of dma-buf fds, bracketed with DMA_BUF_IOCTL_SYNC. */
function syncAll(fds: readonly NativeFd[], phase: 'start' | 'end', access: CpuAccess): void {
  const d = dmabufModule();
  for (const fd of fds) d.sync(fd, phase, access);
}

/** Everything the CPU can read from the mapped objects, as one view per plane. */
function viewsOf(
  memories: ArrayBuffer[],
  planes: readonly { handleIndex: number; layout: PlaneLayout }[],
): Uint8Array[] {
  return planes.map((p) => new Uint8Array(memories[p.handleIndex], p.layout.offset, p.layout.size));
}

function mapAll(fds: readonly NativeFd[], sizes: readonly number[], onError: (error: unknown) => Error): ArrayBuffer[] {
  const memories: ArrayBuffer[] = [];
  try {
    for (let i = 0; i < fds.length; i++) memories.push(fds[i].map(0, sizes[i], 'shared'));
  } catch (error) {
    for (const m of memories) unmap(m);
    throw onError(error);
  }
  return memories;
}

/** The fences a reader must wait for (the writers'), as a sync_file owned by the caller. */
function exportImplicitFence(dmabuf: NativeFd): OsHandle {
  try {
    return fdHandle(dmabufModule().exportSyncFile(dmabuf, 'read'));
  } catch (error) {
    throw SurfaceLinkError.fromNative(error);
  }
}

function implicitFences(fds: readonly NativeFd[]): ImplicitFences {
  const d = dmabufModule();
  return {
    busy() {
      for (let i = 0; i < fds.length; i++) if (!d.idle(fds[i], 'rw')) return true;
      return false;
    },
    export: () => exportImplicitFence(fds[0]),
    tryExport() {
      // Before Linux 6.0 the kernel cannot export fences: readers then rely on implicit sync in the kernel.
      try {
        return exportImplicitFence(fds[0]);
      } catch (error) {
        if ((error as SurfaceLinkError).code === 'E_UNSUPPORTED') return null;
        throw error;
      }
    },
  };
}

/** A producer buffer over dma-buf `fds` (owned), mapped for the CPU. */
function dmabufBacking(
  fds: NativeFd[],
  planes: { handleIndex: number; layout: PlaneLayout }[],
  format: FormatInfo,
  modifier: bigint,
  sizes: number[],
  extra: { memfd: NativeFd | null; memfdMemory: ArrayBuffer | null; kind: string },
): ProducerBacking {
  const memories = mapAll(fds, sizes, (e) => SurfaceLinkError.fromNative(e));
  const st = fds[0].stat();
  const handles = fds.map(fdHandle);
  const own: BufferExport = { mechanism: NAME, handles, planes, modifier };
  const layouts = planes.map((p) => p.layout);
  // udmabuf: the memfd behind the dma-buf is the same memory, and shm.v1 clients can map it.
  const sameMemory = extra.memfd ? shmExport(extra.memfd, layouts) : null;
  return {
    mechanism: NAME,
    planes: layouts,
    planeHandles: planes.map((p) => p.handleIndex),
    views: viewsOf(memories, planes),
    identity: { kind: extra.kind, inode: st.inode, device: st.device, size: sizes[0] },
    handles,
    modifier,
    exportSame(mechanism, peer) {
      if (mechanism === NAME) {
        if (peer.formats && !peer.formats.has(format.fourcc, modifier))
          return {
            refused:
              `the buffer is ${format.name} with modifier ${modifierName(modifier)}, which the client ` +
              `did not declare`,
          };
        return own;
      }
      return sameMemory !== null && sameMemory.mechanism === mechanism ? sameMemory : null;
    },
    fences: implicitFences(fds),
    beginCpuAccess: (access) => syncAll(fds, 'start', access),
    endCpuAccess: (access) => syncAll(fds, 'end', access),
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

/** Checks each fd is really a dma-buf and every plane fits in it; returns the sizes. */
function dmabufSizes(
  fds: readonly NativeFd[],
  planes: readonly PlaneLayout[],
  handleOf: (plane: number) => number,
  name: (i: number) => string,
): number[] {
  const sizes = fds.map((fd, i) => {
    const st = fd.stat();
    if (st.kind !== 'dmabuf')
      throw new SurfaceLinkError('E_HANDLE_TYPE', `${name(i)} must be a dma-buf; it is a ${st.kind}`);
    return st.size ?? 0;
  });
  for (let i = 0; i < fds.length; i++) checkPlanesFit(planes, handleOf, i, sizes[i]);
  return sizes;
}

export const dmabufMechanism: Mechanism = {
  name: NAME,
  caps: {
    handles: true,
    cpuAccess: true,
    sync: 'sync_file',
    negotiatesFormats: true,
    copyTarget: false,
    fallback: true,
  },

  probe(): ProbeResult {
    if (process.platform !== 'linux')
      return { available: false, reason: `dma-bufs are Linux-only (this is ${process.platform})` };
    const reports = allocatorReports();
    const usable = reports.find((r) => r.available && ALLOCATOR_ORDER.includes(r.name));
    const skipped = reports
      .filter((r) => r !== usable && ALLOCATOR_ORDER.includes(r.name))
      .map((r) => `${r.name}: ${r.reason}`);
    if (usable)
      return {
        available: true,
        reason:
          `allocating with ${usable.name} ` +
          `(${usable.reason})${skipped.length ? `; skipped ${skipped.join('; ')}` : ''}`,
      };
    return { available: false, reason: `no dma-buf allocator: ${skipped.join('; ')}` };
  },

  offer(options) {
    return { formats: (options.formats ?? linearFormats()).toJSON(), device: null };
  },

  accept(offer) {
    // The client declares what it can import; the server keeps what it can also allocate.
    const declared = FormatSet.fromJSON((offer.formats as unknown[]) ?? []);
    const ours = linearFormats();
    const formats = declared.intersect(ours);
    if (formats.size === 0)
      return {
        refused: `no common format × modifier (client: ${declared.toString() || 'none'}; server: ${ours.toString()})`,
      };
    return { formats, detail: `; common formats: ${formats.toString()}` };
  },

  allocators: ALLOCATOR_NAMES,

  allocate(request: AllocateRequest): ProducerBacking {
    const a = allocateDmabuf(request.format, request.width, request.height, request.label, request.allocator);
    for (const fd of a.fds) {
      try {
        dmabufModule().setName(fd, request.label.slice(0, 31));
      } catch {
        /* naming is for debugging (fdinfo); older kernels lack it */
      }
    }
    try {
      return dmabufBacking(a.fds, a.planes, request.format, a.modifier, a.sizes, {
        memfd: a.memfd,
        memfdMemory: a.memfdMemory,
        kind: `dmabuf:${a.allocator}`,
      });
    } catch (error) {
      for (const fd of a.fds) fd.close();
      if (a.memfdMemory) unmap(a.memfdMemory);
      a.memfd?.close();
      throw error;
    }
  },

  adopts: ['dmabuf'],

  canAdopt(): ProbeResult {
    // Adopting needs only the dma-buf ioctls (CPU sync, fences), not an allocator.
    const { addon } = probeNative();
    if (addon?.platform !== 'linux')
      return { available: false, reason: `dma-bufs are Linux-only (this is ${process.platform})` };
    return addon.dmabuf
      ? { available: true, reason: 'the addon has the dma-buf ioctls' }
      : { available: false, reason: 'this build of the addon has no dma-buf support' };
  },

  adopt(request: AdoptRequest): ProducerBacking {
    const backing = request.backing;
    if (backing.kind !== 'dmabuf')
      throw new SurfaceLinkError('E_INVALID_ARGUMENT', `dmabuf.v1 adopts dma-bufs, not ${backing.kind} buffers`);
    const buffer: ExternalDmabuf = backing.buffers[request.index];
    const modifier = backing.modifier ?? MODIFIER_LINEAR;
    if (buffer.fds.length < 1 || buffer.fds.length > 4)
      throw new SurfaceLinkError('E_HANDLE_COUNT', `1..4 dma-bufs; got ${buffer.fds.length}`);
    for (const p of buffer.planes)
      if (!Number.isInteger(p.fdIndex) || p.fdIndex < 0 || p.fdIndex >= buffer.fds.length)
        throw new SurfaceLinkError('E_HANDLE_COUNT', `plane names fd ${p.fdIndex}; ${buffer.fds.length} given`);
    const desc = descriptor(
      request,
      modifier,
      buffer.planes.map((p) => ({ handleIndex: p.fdIndex, offset: p.offset, stride: p.stride })),
    );
    const { planes } = validateDescriptor(desc);
    const given = buffer.fds.map((fd, i) => handleFd(asOsHandle(fd), `fds[${i}]`));
    const sizes = dmabufSizes(
      given,
      planes,
      (p) => desc.planes[p].handleIndex,
      (i) => `fds[${i}]`,
    );
    const owned = given.map((fd) => fd.dup());
    try {
      const placed = planes.map((layout, i) => ({ handleIndex: desc.planes[i].handleIndex, layout }));
      return dmabufBacking(owned, placed, request.format, modifier, sizes, {
        memfd: null,
        memfdMemory: null,
        kind: 'dmabuf:external',
      });
    } catch (error) {
      for (const fd of owned) fd.close();
      throw error;
    }
  },

  /**
   * Validates dma-bufs against a descriptor, then maps them: each fd must really be a dma-buf
   * (the kernel says so, not the peer), its size (lseek) must cover every plane on it, and the
   * format × modifier must be one we declared we can read.
   */
  importBuffer(desc: ScanoutBody, format: FormatInfo, handles: OsHandle[], options: ImportOptions): ConsumerBuffer {
    if (handles.length < 1 || handles.length > 4)
      throw new SurfaceLinkError('E_HANDLE_COUNT', `dmabuf.v1 buffers carry 1..4 dma-bufs; got ${handles.length}`);
    const { planes } = validateDescriptor(desc);
    const fds = handles.map((h, i) => handleFd(h, `handle ${i}`));
    const sizes = dmabufSizes(
      fds,
      planes,
      (p) => desc.planes[p].handleIndex,
      (i) => `handle ${i}`,
    );
    if (!(options.accepts ?? linearFormats()).has(format.fourcc, desc.modifier))
      throw new ImportRefused(
        'E_UNSUPPORTED_FORMAT',
        `${format.name} with modifier 0x${desc.modifier.toString(16)} was not declared; this importer reads ` +
          `LINEAR buffers with the CPU`,
      );
    const memories = mapAll(
      fds,
      sizes,
      (e) => new ImportRefused('E_IMPORT_FAILED', `mapping the dma-buf failed: ${why(e)}`),
    );
    const st = fds[0].stat();
    const placed = planes.map((layout, i) => ({ handleIndex: desc.planes[i].handleIndex, layout }));
    return {
      planes,
      planeHandles: placed.map((p) => p.handleIndex),
      views: viewsOf(memories, placed),
      identity: { kind: 'dmabuf', inode: st.inode, device: st.device, size: sizes[0] },
      handles,
      beginCpuAccess: (access) => syncAll(fds, 'start', access),
      endCpuAccess: (access) => syncAll(fds, 'end', access),
      close() {
        for (const m of memories) unmap(m);
        for (const fd of fds) fd.close();
      },
    };
  },
};
