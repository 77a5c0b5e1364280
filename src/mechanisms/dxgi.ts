/**
 * dxgi.v1 (Windows): each buffer is a D3D11 texture created SHARED_NTHANDLE | SHARED_KEYEDMUTEX on
 * the server's GPU; the SCANOUT carries one NT handle to it (IDXGIResource1::CreateSharedHandle),
 * duplicated into the client by the named-pipe transport, and the client opens it with
 * ID3D11Device1::OpenSharedResource1 on its own device. Zero-copy between GPUs' views of one
 * texture; preferred over winshm.v1 wherever both processes share the adapter.
 *
 * - **Adapter.** The client's HELLO offer carries its adapter LUID (`{"name":"dxgi.v1","luid":"hhhhhhhh:llllllll"}`);
 *   the server accepts only its own LUID, so a client on another GPU gets its next offer (shared memory).
 * - **Keyed mutex: everyone uses key 0.** A writer or reader does AcquireSync(0) → its GPU work →
 *   ReleaseSync(0). The protocol's FRAME / RELEASE decide *whose turn* it is (the producer never
 *   writes a buffer a client holds); the mutex only orders GPU work across devices. No ping-pong
 *   keys (0→1→0): with several clients per buffer, or a frame released unseen, a turn-passing key
 *   would be left with nobody to acquire it. (docs/mechanisms/windows-dxgi.md)
 * - **CPU access** is by copy through a staging texture: the producer writes a CPU shadow of
 *   the buffer (`views`), uploaded under the mutex when its write bracket ends (present); a
 *   consumer's read bracket downloads the texture into its own memory under the mutex.
 * - The SCANOUT's planes describe that CPU copy (linear layout, modifier 0); the texture itself
 *   is checked against the descriptor (size and DXGI format, by GetDesc) before anything is read.
 */
import { SurfaceLinkError } from '../errors.js';
import { MODIFIER_LINEAR, linearLayout, type FormatInfo, type PlaneLayout } from '../formats.js';
import { closeHandles, handleNt, ntHandle, type OsHandle } from '../handles.js';
import { addonMissingReason, loadNative, type NativeD3D11, type NativeD3D11Texture } from '../native/index.js';
import type { MechanismOffer, ScanoutBody } from '../protocol/codec.js';
import { validateDescriptor } from '../protocol/validate.js';
import {
  ImportRefused,
  type AllocateRequest,
  type BufferExport,
  type ConsumerBuffer,
  type Mechanism,
  type ProbeResult,
  type ProducerBacking,
} from './types.js';

const NAME = 'dxgi.v1';

/** The key every side acquires and releases (see the file comment). */
export const DXGI_KEY = 0;
/** How long a CPU copy waits for the other side's GPU work before E_TIMEOUT. */
export const DXGI_ACQUIRE_TIMEOUT_MS = 1000;

const LUID_PATTERN = /^[0-9a-f]{8}:[0-9a-f]{8}$/;

/** The native D3D11 module, or why there is none. */
function d3d11Module(): NativeD3D11 | string {
  if (process.platform !== 'win32') return `DXGI is Windows-only (this is ${process.platform})`;
  const missing = addonMissingReason();
  if (missing) return missing;
  const addon = loadNative();
  if (addon.platform !== 'win32') return `the addon is built for ${addon.platform}, not win32`;
  return addon.d3d11 ?? 'this build of the addon has no D3D11 support';
}

function d3d11(): NativeD3D11 {
  const m = d3d11Module();
  if (typeof m === 'string') throw new SurfaceLinkError('E_UNSUPPORTED', m);
  return m;
}

interface NativeProbe {
  available: boolean;
  reason: string;
  adapter: string;
  luid: string;
}

let probed: NativeProbe | undefined;

/** The native probe, run once per process (it creates two devices and a texture). */
function nativeProbe(): NativeProbe {
  if (probed) return probed;
  const m = d3d11Module();
  if (typeof m === 'string') return (probed = { available: false, reason: m, adapter: '', luid: '' });
  try {
    probed = m.probe();
  } catch (error) {
    probed = { available: false, reason: `the D3D11 probe failed: ${(error as Error).message}`, adapter: '', luid: '' };
  }
  return probed;
}

/** This process's adapter LUID ('hhhhhhhh:llllllll'), as the probe found it. */
export function dxgiLuid(): string {
  return nativeProbe().luid;
}

/** A LUID as the bigint BackingIdentity.device holds. */
const luidValue = (luid: string): bigint => (LUID_PATTERN.test(luid) ? BigInt(`0x${luid.replace(':', '')}`) : 0n);

/** A DXGI_FORMAT the native module can share and copy, for `format`. */
function dxgiFormat(format: FormatInfo): number {
  return format.dxgi;
}

function planeList(planes: readonly PlaneLayout[]): { offset: number; stride: number }[] {
  return planes.map((p) => ({ offset: p.offset, stride: p.stride }));
}

/** Acquires key 0 or fails with E_TIMEOUT naming what waited. */
function acquire(texture: NativeD3D11Texture, what: string): void {
  let acquired: boolean;
  try {
    acquired = texture.acquire(DXGI_KEY, DXGI_ACQUIRE_TIMEOUT_MS);
  } catch (error) {
    throw SurfaceLinkError.fromNative(error);
  }
  if (!acquired)
    throw new SurfaceLinkError(
      'E_TIMEOUT',
      `${what}: the texture's keyed mutex (key ${DXGI_KEY}) stayed held by another process for ` +
        `${DXGI_ACQUIRE_TIMEOUT_MS} ms`,
    );
}

/** Runs `body` holding key 0; releases it whatever happens. */
function underMutex(texture: NativeD3D11Texture, what: string, body: () => void): void {
  acquire(texture, what);
  try {
    body();
  } finally {
    texture.release(DXGI_KEY);
  }
}

export const dxgiMechanism: Mechanism = {
  name: NAME,
  caps: {
    handles: true,
    // By copy through a staging texture inside the CPU-access brackets (see the file comment).
    cpuAccess: true,
    sync: 'keyed_mutex',
    negotiatesFormats: false,
    copyTarget: false,
    fallback: true,
  },

  probe(): ProbeResult {
    const p = nativeProbe();
    return { available: p.available, reason: p.reason };
  },

  offer() {
    return { luid: dxgiLuid() };
  },

  accept(offer: MechanismOffer) {
    const luid = offer.luid;
    if (typeof luid !== 'string' || !LUID_PATTERN.test(luid.toLowerCase()))
      throw new Error(`luid: must be a string "hhhhhhhh:llllllll" (8 + 8 hex digits); got ${JSON.stringify(luid)}`);
    const ours = dxgiLuid();
    if (luid.toLowerCase() !== ours)
      return { refused: `the client's GPU (LUID ${luid}) is not the server's (${ours}); it gets shared memory` };
    return { detail: `; adapter "${nativeProbe().adapter}" (LUID ${ours})` };
  },

  allocate(request: AllocateRequest): ProducerBacking {
    const { format, width, height } = request;
    const { planes, totalSize } = linearLayout(format, width, height);
    let texture: NativeD3D11Texture;
    try {
      texture = d3d11().createTexture(width, height, dxgiFormat(format));
    } catch (error) {
      throw SurfaceLinkError.fromNative(error);
    }
    let handles: OsHandle[];
    try {
      handles = [ntHandle(texture.sharedHandle())];
    } catch (error) {
      texture.close();
      throw SurfaceLinkError.fromNative(error);
    }
    // The producer's CPU shadow: what it draws, uploaded to the texture when it presents.
    const memory = new ArrayBuffer(totalSize);
    const own: BufferExport = {
      mechanism: NAME,
      handles,
      planes: planes.map((layout) => ({ handleIndex: 0, layout })),
      modifier: MODIFIER_LINEAR,
    };
    const layout = planeList(planes);
    return {
      mechanism: NAME,
      planes,
      planeHandles: planes.map(() => 0),
      views: planes.map((p) => new Uint8Array(memory, p.offset, p.size)),
      identity: { kind: 'dxgi', inode: 0n, device: luidValue(dxgiLuid()), size: totalSize },
      handles,
      modifier: MODIFIER_LINEAR,
      // Other mechanisms' clients get a CPU copy of the shadow (./cpu-copy.ts).
      exportSame: (mechanism) => (mechanism === NAME ? own : null),
      // The shadow is the producer's own memory: only the upload needs the texture.
      beginCpuAccess() {},
      endCpuAccess(access) {
        if (access === 'read') return;
        underMutex(texture, `uploading ${request.label}`, () => texture.write(memory, layout));
      },
      close() {
        closeHandles(handles);
        texture.close();
      },
    };
  },

  /**
   * Validates the handle against the descriptor, then opens the texture: one NT handle, a linear
   * descriptor, a shared texture with a keyed mutex (E_HANDLE_TYPE otherwise) whose size and
   * DXGI format are the descriptor's (E_BAD_GEOMETRY otherwise).
   */
  importBuffer(desc: ScanoutBody, format: FormatInfo, handles: OsHandle[]): ConsumerBuffer {
    if (handles.length !== 1)
      throw new SurfaceLinkError(
        'E_HANDLE_COUNT',
        `dxgi.v1 buffers carry exactly one texture handle; got ${handles.length}`,
      );
    if (desc.modifier !== MODIFIER_LINEAR)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `dxgi.v1 describes a linear CPU copy; modifier 0x${desc.modifier.toString(16)} is not`,
      );
    const { planes } = validateDescriptor(desc);
    const handle = handleNt(handles[0], 'a dxgi.v1 buffer');
    // The kernel names a shared texture's object "DxgkSharedResource" ('other' here): refuse what it is not.
    const kind = handle.type();
    if (kind !== 'other')
      throw new SurfaceLinkError('E_HANDLE_TYPE', `a dxgi.v1 buffer must be a shared texture; the handle is a ${kind}`);
    let texture: NativeD3D11Texture;
    try {
      texture = d3d11().openTexture(handle);
    } catch (error) {
      const e = SurfaceLinkError.fromNative(error);
      if (e.code === 'E_HANDLE_TYPE' || e.code === 'E_INVALID_ARGUMENT' || e.code === 'E_CLOSED') throw e;
      throw new ImportRefused('E_IMPORT_FAILED', `opening the shared texture failed: ${e.message}`);
    }
    const mismatch =
      texture.width !== desc.width || texture.height !== desc.height
        ? `the texture is ${texture.width}x${texture.height}; the SCANOUT says ${desc.width}x${desc.height}`
        : texture.format !== dxgiFormat(format)
          ? `the texture is DXGI_FORMAT ${texture.format}; ${format.name} is DXGI_FORMAT ${dxgiFormat(format)}`
          : null;
    if (mismatch !== null) {
      texture.close();
      throw new SurfaceLinkError('E_BAD_GEOMETRY', mismatch);
    }
    const size = Math.max(...planes.map((p) => p.offset + p.size));
    const memory = new ArrayBuffer(size);
    const layout = planeList(planes);
    return {
      planes,
      planeHandles: planes.map(() => 0),
      views: planes.map((p) => new Uint8Array(memory, p.offset, p.size)),
      identity: { kind: 'dxgi', inode: 0n, device: luidValue(dxgiLuid()), size },
      handles,
      // The frame's pixels are copied out under the mutex when a read starts; nothing to end.
      beginCpuAccess() {
        underMutex(texture, `reading surface ${desc.surfaceId} buffer ${desc.bufferId}`, () =>
          texture.read(memory, layout),
        );
      },
      endCpuAccess() {},
      close() {
        texture.close();
        closeHandles(handles);
      },
    };
  },
};
