/**
 * shm.v1: one sealed memfd per buffer, all planes in it. Works on every Linux kernel and is
 * the baseline every other mechanism falls back to. The consumer maps it MAP_PRIVATE: it
 * sees the producer's writes directly (zero-copy) and can never fault on it (the memfd is
 * sealed against shrinking, and that is checked before mapping).
 */
import { SurfaceLinkError } from '../errors.js';
import { MODIFIER_LINEAR, linearLayout, type FormatInfo, type PlaneLayout } from '../formats.js';
import { loadNative, probeNative, type NativeFd } from '../native.js';
import { Mechanism } from '../protocol/constants.js';
import type { ScanoutBody } from '../protocol/codec.js';
import { checkPlanesFit, validateDescriptor } from '../protocol/validate.js';
import { noCpuAccess, type Backend, type BufferExport, type ExportedBuffer, type ImportedBuffer, type ProbeResult } from './types.js';

export const unmap = (memory: ArrayBuffer): void => loadNative().unmap(memory);

export function planeViews(memory: ArrayBuffer, planes: readonly PlaneLayout[]): Uint8Array[] {
  return planes.map((p) => new Uint8Array(memory, p.offset, p.size));
}

/** The shm.v1 description of one memfd holding every plane. */
export function shmExport(memfd: NativeFd, planes: readonly PlaneLayout[]): BufferExport {
  return { mechanism: Mechanism.SHM_V1, handles: [memfd], planes: planes.map((layout) => ({ handleIndex: 0, layout })), modifier: MODIFIER_LINEAR };
}

/** A sealed memfd sized for `format` at width×height, mapped read-write. */
export function allocateMemfd(format: FormatInfo, width: number, height: number, label: string): { fd: NativeFd; memory: ArrayBuffer; planes: PlaneLayout[]; size: number } {
  const { planes, totalSize } = linearLayout(format, width, height);
  const fd = loadNative().createMemfd(label, totalSize);
  try {
    return { fd, memory: fd.map(0, totalSize, 'shared'), planes, size: totalSize };
  } catch (error) {
    fd.close();
    throw SurfaceLinkError.fromNative(error);
  }
}

/** A buffer over one memfd and its mapping; closing unmaps and closes. */
function memfdBuffer(fd: NativeFd, memory: ArrayBuffer, planes: PlaneLayout[], size: number) {
  const st = fd.stat();
  return {
    ...noCpuAccess,
    planes,
    views: planeViews(memory, planes),
    identity: { kind: 'memfd', inode: st.inode, device: st.device, size },
    handles: [fd],
    close() {
      unmap(memory);
      fd.close();
    },
  };
}

export const shmBackend: Backend = {
  name: Mechanism.SHM_V1,

  probe(): ProbeResult {
    if (process.platform !== 'linux') return { available: false, reason: `memfd is Linux-only (this is ${process.platform})` };
    const { addon, error } = probeNative();
    if (!addon) return { available: false, reason: `the native addon is not loaded (${error?.code ?? 'E_NATIVE_UNAVAILABLE'}; \`surfacelink doctor\` shows every path tried)` };
    try {
      addon.createMemfd('surfacelink-probe', 4096).close();
      return { available: true, reason: 'sealed memfd works' };
    } catch (e) {
      return { available: false, reason: `memfd_create failed: ${(e as Error).message}` };
    }
  },

  allocate(format: FormatInfo, width: number, height: number, label: string): ExportedBuffer {
    const { fd, memory, planes, size } = allocateMemfd(format, width, height, label);
    const exported = shmExport(fd, planes);
    return { ...memfdBuffer(fd, memory, planes, size), primary: exported, shm: exported, dmabuf: null };
  },

  importBuffer(desc: ScanoutBody, _format: FormatInfo, handles: NativeFd[]): ImportedBuffer {
    if (handles.length !== 1) throw new SurfaceLinkError('E_HANDLE_COUNT', `shm.v1 buffers carry exactly one memfd; got ${handles.length}`);
    if (desc.modifier !== MODIFIER_LINEAR) throw new SurfaceLinkError('E_BAD_GEOMETRY', `shm.v1 buffers are linear; modifier 0x${desc.modifier.toString(16)} is not`);
    const { planes } = validateDescriptor(desc);
    const fd = handles[0];
    const st = fd.stat();
    if (st.kind !== 'memfd') throw new SurfaceLinkError('E_HANDLE_TYPE', `shm.v1 needs a memfd; the handle is a ${st.kind}`);
    const seals = fd.seals();
    if ((seals & loadNative().seals.SHRINK) === 0) throw new SurfaceLinkError('E_UNSEALED', 'the memfd is not sealed against shrinking (F_SEAL_SHRINK); mapping it could crash the reader');
    const size = st.size ?? 0;
    checkPlanesFit(planes, (i) => desc.planes[i].handleIndex, 0, size);
    let memory: ArrayBuffer;
    try {
      memory = fd.map(0, size, 'private');
    } catch (error) {
      throw SurfaceLinkError.fromNative(error);
    }
    return memfdBuffer(fd, memory, planes, size);
  },
};
