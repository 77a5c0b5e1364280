/**
 * shm.v1: one shared-memory object per buffer, all planes in it. The baseline every other
 * mechanism falls back to: a copy target (./cpu-copy.ts serves any CPU-readable buffer to shm.v1
 * clients). What the object is depends on the OS (the backing, `shmBacking()`):
 *
 * - 'memfd' (Linux): a sealed memfd. The consumer maps it MAP_PRIVATE: it sees the producer's
 *   writes directly (zero-copy) and can never fault on it (the memfd is sealed against shrinking,
 *   and that is checked before mapping).
 * - 'posix-shm' (macOS, which has neither memfd nor seals; on Linux with
 *   SURFACELINK_SHM_BACKING=posix-shm, which is how the macOS rules are exercised on Linux): a
 *   POSIX shm object (shm_open, unlinked at once). Its size is checked with fstat before mapping
 *   (XNU fixes it at the object's one ftruncate); it is mapped MAP_SHARED and guarded against
 *   SIGBUS (native/posix/sigbus_guard.h), because on Linux anyone holding the fd can shrink it. A
 *   guarded mapping whose object shrank reads zeros; `truncated()` says so, and the buffer is
 *   dropped: E_TRUNCATED on a client, retired and replaced in a producer's pool.
 *
 * A consumer accepts either kind, whatever its own backing, on every OS.
 *
 * Adopted memfds (someone else's, e.g. QEMU's display memory) are shared as they are when
 * sealed against shrinking; an unsealed one could be shrunk under a reader (SIGBUS), so its
 * clients get a sealed copy instead, and the refusal says so.
 */
import { SurfaceLinkError } from '../errors.js';
import { MODIFIER_LINEAR, formatByName, linearLayout, type FormatInfo, type PlaneLayout } from '../formats.js';
import { fdHandle, handleFd, type OsHandle } from '../handles.js';
import {
  addonMissingReason,
  linuxNative,
  loadNative,
  type DarwinAddon,
  type LinuxAddon,
  type NativeFd,
} from '../native/index.js';
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

/** The environment variable that picks the backing on Linux ('memfd', the default, or 'posix-shm'). */
export const SHM_BACKING_ENV = 'SURFACELINK_SHM_BACKING';

/** What this process makes shm.v1 buffers of: sealed memfds, or POSIX shm objects. */
export type ShmBacking = 'memfd' | 'posix-shm';

/**
 * The backing this process allocates (clients import both): 'posix-shm' on macOS; on Linux
 * 'memfd' unless SURFACELINK_SHM_BACKING=posix-shm. Throws E_UNSUPPORTED elsewhere, or for a
 * backing this OS lacks, and E_INVALID_ARGUMENT for an unknown value.
 */
export function shmBacking(): ShmBacking {
  const asked = process.env[SHM_BACKING_ENV] || undefined;
  if (asked !== undefined && asked !== 'memfd' && asked !== 'posix-shm')
    throw new SurfaceLinkError(
      'E_INVALID_ARGUMENT',
      `${SHM_BACKING_ENV} must be 'memfd' or 'posix-shm'; got ${JSON.stringify(asked)}`,
    );
  if (process.platform === 'darwin') {
    if (asked === 'memfd')
      throw new SurfaceLinkError('E_UNSUPPORTED', `${SHM_BACKING_ENV}=memfd: memfd is Linux-only (this is darwin)`);
    return 'posix-shm';
  }
  if (process.platform !== 'linux')
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `memfd is Linux-only and POSIX shm needs Linux or macOS (this is ${process.platform})`,
    );
  return asked ?? 'memfd';
}

/** The POSIX addon (Linux or macOS): fds, mappings, POSIX shm. */
function posix(): LinuxAddon | DarwinAddon {
  const addon = loadNative();
  if (addon.platform !== 'linux' && addon.platform !== 'darwin')
    throw new SurfaceLinkError('E_UNSUPPORTED', `shm.v1 needs Linux or macOS; this addon is for ${addon.platform}`);
  return addon;
}

export const unmap = (memory: ArrayBuffer): void => posix().unmap(memory);

export function planeViews(memory: ArrayBuffer, planes: readonly PlaneLayout[]): Uint8Array[] {
  return planes.map((p) => new Uint8Array(memory, p.offset, p.size));
}

/** The shm.v1 description of one memfd (or shm object) holding every plane. */
export function shmExport(memfd: NativeFd | OsHandle, planes: readonly PlaneLayout[]): BufferExport {
  const handle = 'kind' in memfd ? memfd : fdHandle(memfd);
  return {
    mechanism: NAME,
    handles: [handle],
    planes: planes.map((layout) => ({ handleIndex: 0, layout })),
    modifier: MODIFIER_LINEAR,
  };
}

/** Memory for `format` at width×height, mapped read-write: `make(size)` creates the object. */
function allocateWith(
  make: (size: number) => NativeFd,
  format: FormatInfo,
  width: number,
  height: number,
): { fd: NativeFd; memory: ArrayBuffer; planes: PlaneLayout[]; size: number } {
  const { planes, totalSize } = linearLayout(format, width, height);
  const fd = make(totalSize);
  try {
    return { fd, memory: fd.map(0, totalSize, 'shared'), planes, size: totalSize };
  } catch (error) {
    fd.close();
    throw SurfaceLinkError.fromNative(error);
  }
}

/** A sealed memfd sized for `format` at width×height, mapped read-write. */
export function allocateMemfd(format: FormatInfo, width: number, height: number, label: string) {
  return allocateWith((size) => linuxNative().createMemfd(label, size), format, width, height);
}

/** A POSIX shm object sized for `format` at width×height, mapped read-write through the SIGBUS guard. */
export function allocateShm(format: FormatInfo, width: number, height: number, label: string) {
  return allocateWith((size) => posix().createShm(label, size), format, width, height);
}

/**
 * Whether the object behind a guarded mapping of `size` bytes shrank: the guard already replaced
 * the mapping (a read or write faulted), or fstat says it is shorter now (nothing touched the lost
 * pages yet). Always false for a memfd (sealed, or trusted) and once closed.
 */
function shrank(kind: string, fd: NativeFd, memory: ArrayBuffer, size: number): boolean {
  if (kind !== 'shm' || fd.closed) return false;
  if (posix().mappingTruncated(memory)) return true;
  const now = fd.stat().size;
  return now !== null && now < size;
}

/** Views, identity, truncated() and close() of one mapped memfd or shm object. */
function mappedParts(fd: NativeFd, memory: ArrayBuffer, planes: readonly PlaneLayout[], size: number) {
  const st = fd.stat();
  return {
    ...noCpuAccess,
    planes: [...planes],
    planeHandles: planes.map(() => 0),
    views: planeViews(memory, planes),
    identity: { kind: st.kind, inode: st.inode, device: st.device, size },
    handles: [fdHandle(fd)] as readonly OsHandle[],
    truncated: () => shrank(st.kind, fd, memory, size),
    close() {
      unmap(memory);
      fd.close();
    },
  };
}

/** A producer buffer over one memfd or shm object; `unsealed` says why its clients must get a copy instead. */
function memfdBacking(
  fd: NativeFd,
  memory: ArrayBuffer,
  planes: readonly PlaneLayout[],
  size: number,
  unsealed: string | null,
): ProducerBacking {
  const parts = mappedParts(fd, memory, planes, size);
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
    if (process.platform !== 'linux' && process.platform !== 'darwin')
      return {
        available: false,
        reason: `memfd is Linux-only and POSIX shm needs Linux or macOS (this is ${process.platform})`,
      };
    let backing: ShmBacking;
    try {
      backing = shmBacking();
    } catch (e) {
      return { available: false, reason: (e as Error).message };
    }
    const missing = addonMissingReason();
    if (missing) return { available: false, reason: missing };
    if (backing === 'memfd') {
      try {
        linuxNative().createMemfd('surfacelink-probe', 4096).close();
        return { available: true, reason: 'sealed memfd works' };
      } catch (e) {
        return { available: false, reason: `memfd_create failed: ${(e as Error).message}` };
      }
    }
    try {
      const { fd, memory } = allocateShm(formatByName('XRGB8888'), 16, 16, 'surfacelink-probe');
      unmap(memory);
      fd.close();
    } catch (e) {
      return { available: false, reason: `POSIX shm failed: ${(e as Error).message}` };
    }
    return {
      available: true,
      reason:
        process.platform === 'darwin'
          ? 'POSIX shm works (macOS has no memfd: size fixed at creation, checked before mapping, reads guarded)'
          : `POSIX shm works (${SHM_BACKING_ENV}=posix-shm: the macOS rules, with reads guarded against SIGBUS)`,
    };
  },

  accept: () => ({}),

  allocate(request: AllocateRequest): ProducerBacking {
    const make = shmBacking() === 'memfd' ? allocateMemfd : allocateShm;
    const { fd, memory, planes, size } = make(request.format, request.width, request.height, request.label);
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
      throw new SurfaceLinkError(
        'E_HANDLE_COUNT',
        `shm.v1 buffers carry exactly one memfd or shm object; got ${handles.length}`,
      );
    if (desc.modifier !== MODIFIER_LINEAR)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `shm.v1 buffers are linear; modifier 0x${desc.modifier.toString(16)} is not`,
      );
    const { planes } = validateDescriptor(desc);
    const fd = handleFd(handles[0], 'a shm.v1 buffer');
    const st = fd.stat();
    if (st.kind === 'memfd') {
      const problem = sealProblem(fd);
      if (problem !== null) throw new SurfaceLinkError('E_UNSEALED', problem);
    } else if (st.kind !== 'shm') {
      throw new SurfaceLinkError(
        'E_HANDLE_TYPE',
        `shm.v1 needs a sealed memfd or a POSIX shm object; the handle is a ${st.kind}`,
      );
    }
    // A shm object has no seals: its size now is what the planes must fit, and the mapping is
    // guarded (a later shrink reads zeros and shows in truncated()). 'private' is MAP_SHARED for it.
    const size = st.size ?? 0;
    checkPlanesFit(planes, (i) => desc.planes[i].handleIndex, 0, size);
    let memory: ArrayBuffer;
    try {
      memory = fd.map(0, size, 'private');
    } catch (error) {
      throw SurfaceLinkError.fromNative(error);
    }
    return mappedParts(fd, memory, planes, size) as ConsumerBuffer;
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
