/**
 * winshm.v1 (Windows): one pagefile-backed section (CreateFileMapping) per buffer, all planes in
 * it — the shared-memory baseline that works on every Windows machine, the same role shm.v1 plays
 * on Linux: a copy target for any CPU-readable buffer (./cpu-copy.ts) and what a client falls
 * back to when it cannot open a GPU texture. The SCANOUT carries the section handle, duplicated
 * into the client by the named-pipe transport (docs/protocol.md §9.2).
 *
 * The consumer checks what the handle is (a section, by the kernel's answer) and that the
 * section holds every plane before it maps a view: a section cannot shrink once created, so a
 * view that fits can never fault (the Windows counterpart of F_SEAL_SHRINK).
 */
import { SurfaceLinkError } from '../errors.js';
import { MODIFIER_LINEAR, linearLayout, type FormatInfo, type PlaneLayout } from '../formats.js';
import { handleNt, ntHandle, type OsHandle } from '../handles.js';
import { addonMissingReason, win32Native, type NativeNtHandle } from '../native/index.js';
import type { ScanoutBody } from '../protocol/codec.js';
import { checkPlanesFit, validateDescriptor } from '../protocol/validate.js';
import {
  noCpuAccess,
  type AllocateRequest,
  type BufferExport,
  type ConsumerBuffer,
  type Mechanism,
  type ProbeResult,
  type ProducerBacking,
} from './types.js';

const NAME = 'winshm.v1';

function planeViews(memory: ArrayBuffer, planes: readonly PlaneLayout[]): Uint8Array[] {
  return planes.map((p) => new Uint8Array(memory, p.offset, p.size));
}

/** Views, identity and close() of one mapped section. */
function sectionParts(section: NativeNtHandle, memory: ArrayBuffer, planes: readonly PlaneLayout[], size: number) {
  return {
    ...noCpuAccess,
    planes: [...planes],
    planeHandles: planes.map(() => 0),
    views: planeViews(memory, planes),
    // A section has no inode; processes prove they share it by its pixels (test/windows).
    identity: { kind: 'section', inode: 0n, device: 0n, size },
    handles: [ntHandle(section)] as readonly OsHandle[],
    close() {
      win32Native().unmap(memory);
      section.close();
    },
  };
}

export const winshmMechanism: Mechanism = {
  name: NAME,
  caps: { handles: true, cpuAccess: true, sync: 'none', negotiatesFormats: false, copyTarget: true, fallback: true },

  probe(): ProbeResult {
    if (process.platform !== 'win32')
      return { available: false, reason: `file-mapping sections are Windows-only (this is ${process.platform})` };
    const missing = addonMissingReason();
    if (missing) return { available: false, reason: missing };
    try {
      const addon = win32Native();
      const section = addon.createSection(4096);
      try {
        addon.unmap(addon.mapSection(section, 0, 4096, 'write'));
      } finally {
        section.close();
      }
      return { available: true, reason: 'pagefile-backed sections (CreateFileMapping) work' };
    } catch (e) {
      return { available: false, reason: `CreateFileMapping/MapViewOfFile failed: ${(e as Error).message}` };
    }
  },

  accept: () => ({}),

  allocate(request: AllocateRequest): ProducerBacking {
    const addon = win32Native();
    const { planes, totalSize } = linearLayout(request.format, request.width, request.height);
    const section = addon.createSection(totalSize);
    let memory: ArrayBuffer;
    try {
      memory = addon.mapSection(section, 0, totalSize, 'write');
    } catch (error) {
      section.close();
      throw SurfaceLinkError.fromNative(error);
    }
    const parts = sectionParts(section, memory, planes, totalSize);
    // Clients get a handle that maps for reading only: a viewer can never write the producer's pixels.
    let shared: NativeNtHandle;
    try {
      shared = addon.readOnlySection(section);
    } catch (error) {
      parts.close();
      throw SurfaceLinkError.fromNative(error);
    }
    const exported: BufferExport = {
      mechanism: NAME,
      handles: [ntHandle(shared)],
      planes: planes.map((layout) => ({ handleIndex: 0, layout })),
      modifier: MODIFIER_LINEAR,
    };
    return {
      ...parts,
      mechanism: NAME,
      modifier: MODIFIER_LINEAR,
      exportSame: (mechanism) => (mechanism === NAME ? exported : null),
      close() {
        parts.close();
        shared.close();
      },
    };
  },

  importBuffer(desc: ScanoutBody, _format: FormatInfo, handles: OsHandle[]): ConsumerBuffer {
    if (handles.length !== 1)
      throw new SurfaceLinkError(
        'E_HANDLE_COUNT',
        `winshm.v1 buffers carry exactly one section; got ${handles.length}`,
      );
    if (desc.modifier !== MODIFIER_LINEAR)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `winshm.v1 buffers are linear; modifier 0x${desc.modifier.toString(16)} is not`,
      );
    const { planes } = validateDescriptor(desc);
    const section = handleNt(handles[0], 'a winshm.v1 buffer');
    const addon = win32Native();
    const type = section.type();
    if (type !== 'section')
      throw new SurfaceLinkError('E_HANDLE_TYPE', `winshm.v1 needs a section (file mapping); the handle is a ${type}`);
    const size = addon.sectionSize(section);
    checkPlanesFit(planes, (i) => desc.planes[i].handleIndex, 0, size);
    const end = Math.max(...planes.map((p) => p.offset + p.size));
    let memory: ArrayBuffer;
    try {
      memory = addon.mapSection(section, 0, end, 'copy');
    } catch (error) {
      throw SurfaceLinkError.fromNative(error);
    }
    return sectionParts(section, memory, planes, size) as ConsumerBuffer;
  },
};

/**
 * A section holding a copy of `bytes`, as a read-only handle (cursor.v1's images on Windows: the
 * counterpart of a sealed memfd). The caller owns the handle.
 */
export function readOnlySectionOf(bytes: Uint8Array, label: string): OsHandle {
  const addon = win32Native();
  const section = addon.createSection(Math.max(bytes.length, 1));
  try {
    const memory = addon.mapSection(section, 0, Math.max(bytes.length, 1), 'write');
    new Uint8Array(memory).set(bytes);
    addon.unmap(memory);
    return ntHandle(addon.readOnlySection(section));
  } catch (error) {
    throw new SurfaceLinkError('E_SYSTEM', `${label}: ${(error as Error).message}`, { cause: error });
  } finally {
    section.close();
  }
}
