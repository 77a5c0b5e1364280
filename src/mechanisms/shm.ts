/**
 * shm.v1: one sealed memfd per buffer, all planes in it. Works on every Linux kernel and is the
 * baseline every other mechanism falls back to: a copy target (./cpu-copy.ts serves any CPU-
 * readable buffer to shm.v1 clients). The consumer maps it MAP_PRIVATE: it sees the producer's
 * writes directly (zero-copy) and can never fault on it (the memfd is sealed against shrinking,
 * and that is checked before mapping).
 *
 * Adopted memfds (someone else's, e.g. QEMU's display memory) are shared as they are when
 * sealed against shrinking; an unsealed one could be shrunk under a reader (SIGBUS), so its
 * clients get a sealed copy instead, and the refusal says so.
 */
import { SurfaceLinkError } from '../errors.js';
import { MODIFIER_LINEAR, linearLayout, type FormatInfo, type PlaneLayout } from '../formats.js';
import { fdHandle, handleFd, type OsHandle } from '../handles.js';
import { addonMissingReason, linuxNative, type NativeFd } from '../native/index.js';
import type { ScanoutBody } from '../protocol/codec.js';
import { checkPlanesFit, validateDescriptor } from '../protocol/validate.js';
import { asOsHandle } from './external.js';
import {
  noCpuAccess,
  type AdoptRequest,
  type AllocateRequest,
  type BufferExport,
  type ConsumerBuffer,
  type ExternalMemfd,
  type Mechanism,
  type ProbeResult,
  type ProducerBacking,
  type Refusal,
} from './types.js';

const NAME = 'shm.v1';

export const unmap = (memory: ArrayBuffer): void => linuxNative().unmap(memory);

export function planeViews(memory: ArrayBuffer, planes: readonly PlaneLayout[]): Uint8Array[] {
  return planes.map((p) => new Uint8Array(memory, p.offset, p.size));
}

/** The shm.v1 description of one memfd holding every plane. */
export function shmExport(memfd: NativeFd | OsHandle, planes: readonly PlaneLayout[]): BufferExport {
  const handle = 'kind' in memfd ? memfd : fdHandle(memfd);
  return {
    mechanism: NAME,
    handles: [handle],
    planes: planes.map((layout) => ({ handleIndex: 0, layout })),
    modifier: MODIFIER_LINEAR,
  };
}

/** A sealed memfd sized for `format` at width×height, mapped read-write. */
export function allocateMemfd(
  format: FormatInfo,
  width: number,
  height: number,
  label: string,
): { fd: NativeFd; memory: ArrayBuffer; planes: PlaneLayout[]; size: number } {
  const { planes, totalSize } = linearLayout(format, width, height);
  const fd = linuxNative().createMemfd(label, totalSize);
  try {
    return { fd, memory: fd.map(0, totalSize, 'shared'), planes, size: totalSize };
  } catch (error) {
    fd.close();
    throw SurfaceLinkError.fromNative(error);
  }
}

/** Views, identity and close() of one mapped memfd. */
function memfdParts(fd: NativeFd, memory: ArrayBuffer, planes: readonly PlaneLayout[], size: number) {
  const st = fd.stat();
  return {
    ...noCpuAccess,
    planes: [...planes],
    planeHandles: planes.map(() => 0),
    views: planeViews(memory, planes),
    identity: { kind: 'memfd', inode: st.inode, device: st.device, size },
    handles: [fdHandle(fd)] as readonly OsHandle[],
    close() {
      unmap(memory);
      fd.close();
    },
  };
}

/** A producer buffer over one memfd; `unsealed` says why its clients must get a copy instead. */
function memfdBacking(
  fd: NativeFd,
  memory: ArrayBuffer,
  planes: readonly PlaneLayout[],
  size: number,
  unsealed: string | null,
): ProducerBacking {
  const parts = memfdParts(fd, memory, planes, size);
  const exported = shmExport(parts.handles[0], planes);
  const refusal: Refusal | null = unsealed === null ? null : { refused: unsealed };
  return {
    ...parts,
    mechanism: NAME,
    modifier: MODIFIER_LINEAR,
    exportSame: (mechanism) => (mechanism !== NAME ? null : (refusal ?? exported)),
  };
}

function sealProblem(fd: NativeFd): string | null {
  let seals: number;
  try {
    seals = fd.seals();
  } catch {
    return 'the fd cannot be sealed';
  }
  return (seals & linuxNative().seals.SHRINK) === 0
    ? 'the memfd is not sealed against shrinking (F_SEAL_SHRINK); mapping it could crash the reader'
    : null;
}

export const shmMechanism: Mechanism = {
  name: NAME,
  caps: { handles: true, cpuAccess: true, sync: 'none', negotiatesFormats: false, copyTarget: true, fallback: true },

  probe(): ProbeResult {
    if (process.platform !== 'linux')
      return { available: false, reason: `memfd is Linux-only (this is ${process.platform})` };
    const missing = addonMissingReason();
    if (missing) return { available: false, reason: missing };
    try {
      linuxNative().createMemfd('surfacelink-probe', 4096).close();
      return { available: true, reason: 'sealed memfd works' };
    } catch (e) {
      return { available: false, reason: `memfd_create failed: ${(e as Error).message}` };
    }
  },

  accept: () => ({}),

  allocate(request: AllocateRequest): ProducerBacking {
    const { fd, memory, planes, size } = allocateMemfd(request.format, request.width, request.height, request.label);
    return memfdBacking(fd, memory, planes, size, null);
  },

  adopts: ['memfd'],

  adopt(request: AdoptRequest): ProducerBacking {
    if (request.backing.kind !== 'memfd')
      throw new SurfaceLinkError('E_INVALID_ARGUMENT', `shm.v1 adopts memfds, not ${request.backing.kind} buffers`);
    const external: ExternalMemfd = request.backing.buffers[request.index];
    const given = handleFd(asOsHandle(external.fd), 'an adopted memfd');
    const st = given.stat();
    if (st.kind !== 'memfd')
      throw new SurfaceLinkError('E_HANDLE_TYPE', `an adopted memfd must be a memfd; it is a ${st.kind}`);
    const size = st.size ?? 0;
    const desc = descriptor(
      request,
      MODIFIER_LINEAR,
      external.planes.map((p) => ({ handleIndex: 0, offset: p.offset, stride: p.stride })),
    );
    const { planes } = validateDescriptor(desc);
    checkPlanesFit(planes, () => 0, 0, size);
    const unsealed = sealProblem(given);
    const fd = given.dup();
    try {
      // Our own mapping trusts whoever handed us the memfd (the program we serve) not to shrink it.
      return memfdBacking(
        fd,
        fd.map(0, size, 'shared', unsealed !== null),
        planes,
        size,
        unsealed === null ? null : `${unsealed}; shm.v1 clients get a sealed copy`,
      );
    } catch (error) {
      fd.close();
      throw SurfaceLinkError.fromNative(error);
    }
  },

  importBuffer(desc: ScanoutBody, _format: FormatInfo, handles: OsHandle[]): ConsumerBuffer {
    if (handles.length !== 1)
      throw new SurfaceLinkError('E_HANDLE_COUNT', `shm.v1 buffers carry exactly one memfd; got ${handles.length}`);
    if (desc.modifier !== MODIFIER_LINEAR)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `shm.v1 buffers are linear; modifier 0x${desc.modifier.toString(16)} is not`,
      );
    const { planes } = validateDescriptor(desc);
    const fd = handleFd(handles[0], 'a shm.v1 buffer');
    const st = fd.stat();
    if (st.kind !== 'memfd')
      throw new SurfaceLinkError('E_HANDLE_TYPE', `shm.v1 needs a memfd; the handle is a ${st.kind}`);
    const problem = sealProblem(fd);
    if (problem !== null) throw new SurfaceLinkError('E_UNSEALED', problem);
    const size = st.size ?? 0;
    checkPlanesFit(planes, (i) => desc.planes[i].handleIndex, 0, size);
    let memory: ArrayBuffer;
    try {
      memory = fd.map(0, size, 'private');
    } catch (error) {
      throw SurfaceLinkError.fromNative(error);
    }
    return memfdParts(fd, memory, planes, size) as ConsumerBuffer;
  },
};

/** A descriptor for validating an adopted buffer exactly like a received one. */
export function descriptor(
  request: AdoptRequest,
  modifier: bigint,
  planes: { handleIndex: number; offset: number; stride: number }[],
): ScanoutBody {
  const { width, height, format } = request;
  return {
    surfaceId: 0,
    bufferId: 0,
    generation: 0,
    width,
    height,
    format: format.fourcc,
    modifier,
    orientation: 0,
    visible: { x: 0, y: 0, width, height },
    planes: planes.map((p, i) => ({
      handleIndex: p.handleIndex,
      stride: p.stride,
      offset: p.offset,
      size: p.stride * Math.ceil(height / (format.planes[i]?.yDiv ?? 1)),
    })),
  };
}
