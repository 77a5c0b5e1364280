/**
 * GBM (Mesa's Generic Buffer Manager) as a dma-buf allocator, called through koffi: no C
 * code of ours, the system's libgbm.so.1 (Debian: libgbm1) loaded on first use.
 *
 *   gbmProbe()    — can GBM allocate here, and if not, exactly why not;
 *   gbmAllocate() — a buffer with one of the given modifiers, exported as dma-bufs.
 *
 * Importing this module loads neither koffi nor libgbm: both are loaded by the first
 * gbmProbe() / gbmAllocate() / gbmBindings() call. The GBM device is opened once per
 * process (gbmRelease() destroys it).
 *
 * Two things worth knowing before reading on:
 *  - Mesa's gbm_create_device() falls back to the software rasterizer when the node has no
 *    Mesa driver: it "succeeds" even on /dev/null (vgem's render node: device created, every
 *    bo refused with EACCES). Only allocating, exporting and mapping a buffer proves GBM
 *    works for us, so the probe does exactly that once.
 *  - gbm_bo_get_fd*() return raw fd numbers that we own; the addon's adoptFd() turns each
 *    into a NativeFd owner at once (see adoptRawFd below).
 */
import { constants as osConstants } from 'node:os';
import { SurfaceLinkError, invalidArgument } from '../../errors.js';
import {
  FORMATS,
  MAX_DIMENSION,
  MODIFIER_INVALID,
  MODIFIER_LINEAR,
  fourccToString,
  type FormatInfo,
} from '../../formats.js';
import { linuxNative, type LinuxAddon, type NativeFd } from '../../native/index.js';

// ─── The C interface: every constant and every signature we use, nowhere else ──────────

/** The library, by soname (the dynamic linker's search path finds it). */
export const LIBGBM = 'libgbm.so.1';

/** enum gbm_bo_flags (gbm.h, Mesa 22.3; unchanged since). */
export const GBM_BO_USE_SCANOUT = 1 << 0;
export const GBM_BO_USE_CURSOR = 1 << 1;
export const GBM_BO_USE_RENDERING = 1 << 2;
export const GBM_BO_USE_WRITE = 1 << 3;
export const GBM_BO_USE_LINEAR = 1 << 4;

/** The usage the probe checks and the linear fallback allocates with. */
const LINEAR_USAGE = GBM_BO_USE_RENDERING | GBM_BO_USE_LINEAR;

/**
 * koffi declarations. Opaque C pointers (struct gbm_device *, struct gbm_bo *) are declared
 * `void *` so no koffi type name is registered process-wide (two modules registering the
 * same name would clash); koffi hands them to JS as bigint, NULL as null. `uint64_t`
 * comes back as a number when it fits in 2^53, else as a bigint: normalise with BigInt().
 */
const GBM_SIGNATURES = {
  // struct gbm_device *gbm_create_device(int fd) — borrows fd: it must stay open until destroy.
  gbm_create_device: 'void *gbm_create_device(int fd)',
  gbm_device_destroy: 'void gbm_device_destroy(void *gbm)',
  gbm_device_get_backend_name: 'const char *gbm_device_get_backend_name(void *gbm)',
  gbm_device_is_format_supported: 'int gbm_device_is_format_supported(void *gbm, uint32_t format, uint32_t usage)',
  gbm_device_get_format_modifier_plane_count:
    'int gbm_device_get_format_modifier_plane_count(void *gbm, uint32_t format, uint64_t modifier)',
  gbm_bo_create: 'void *gbm_bo_create(void *gbm, uint32_t width, uint32_t height, uint32_t format, uint32_t flags)',
  gbm_bo_create_with_modifiers:
    'void *gbm_bo_create_with_modifiers(void *gbm, uint32_t width, uint32_t height, uint32_t format, ' +
    'const uint64_t *modifiers, unsigned int count)',
  gbm_bo_create_with_modifiers2:
    'void *gbm_bo_create_with_modifiers2(void *gbm, uint32_t width, uint32_t height, uint32_t format, ' +
    'const uint64_t *modifiers, unsigned int count, uint32_t flags)',
  gbm_bo_destroy: 'void gbm_bo_destroy(void *bo)',
  gbm_bo_get_width: 'uint32_t gbm_bo_get_width(void *bo)',
  gbm_bo_get_height: 'uint32_t gbm_bo_get_height(void *bo)',
  gbm_bo_get_format: 'uint32_t gbm_bo_get_format(void *bo)',
  gbm_bo_get_plane_count: 'int gbm_bo_get_plane_count(void *bo)',
  gbm_bo_get_modifier: 'uint64_t gbm_bo_get_modifier(void *bo)',
  gbm_bo_get_stride: 'uint32_t gbm_bo_get_stride(void *bo)',
  gbm_bo_get_stride_for_plane: 'uint32_t gbm_bo_get_stride_for_plane(void *bo, int plane)',
  gbm_bo_get_offset: 'uint32_t gbm_bo_get_offset(void *bo, int plane)',
  // Both return a new fd (O_CLOEXEC) that the caller owns, or -1.
  gbm_bo_get_fd: 'int gbm_bo_get_fd(void *bo)',
  gbm_bo_get_fd_for_plane: 'int gbm_bo_get_fd_for_plane(void *bo, int plane)',
} as const;

/** Newer than the rest (Mesa 17.1 / 21.3 / 21.1 / 17.3): may be absent from an old libgbm. */
const GBM_OPTIONAL: ReadonlySet<GbmFunctionName> = new Set([
  'gbm_bo_create_with_modifiers',
  'gbm_bo_create_with_modifiers2',
  'gbm_bo_get_fd_for_plane',
  'gbm_device_get_format_modifier_plane_count',
]);

/** From libc: closing raw fds GBM gave us that could not be handed to a NativeFd. */
const LIBC = 'libc.so.6';
const LIBC_SIGNATURES = {
  close: 'int close(int fd)',
} as const;

type Ptr = bigint;
type U64Array = BigUint64Array | null;

/** The JS side of GBM_SIGNATURES. */
export interface GbmFunctions {
  gbm_create_device(fd: number): Ptr | null;
  gbm_device_destroy(gbm: Ptr): void;
  gbm_device_get_backend_name(gbm: Ptr): string | null;
  gbm_device_is_format_supported(gbm: Ptr, format: number, usage: number): number;
  gbm_device_get_format_modifier_plane_count(gbm: Ptr, format: number, modifier: bigint): number;
  gbm_bo_create(gbm: Ptr, width: number, height: number, format: number, flags: number): Ptr | null;
  gbm_bo_create_with_modifiers(
    gbm: Ptr,
    width: number,
    height: number,
    format: number,
    modifiers: U64Array,
    count: number,
  ): Ptr | null;
  gbm_bo_create_with_modifiers2(
    gbm: Ptr,
    width: number,
    height: number,
    format: number,
    modifiers: U64Array,
    count: number,
    flags: number,
  ): Ptr | null;
  gbm_bo_destroy(bo: Ptr): void;
  gbm_bo_get_width(bo: Ptr): number;
  gbm_bo_get_height(bo: Ptr): number;
  gbm_bo_get_format(bo: Ptr): number;
  gbm_bo_get_plane_count(bo: Ptr): number;
  gbm_bo_get_modifier(bo: Ptr): number | bigint;
  gbm_bo_get_stride(bo: Ptr): number;
  gbm_bo_get_stride_for_plane(bo: Ptr, plane: number): number;
  gbm_bo_get_offset(bo: Ptr, plane: number): number;
  gbm_bo_get_fd(bo: Ptr): number;
  gbm_bo_get_fd_for_plane(bo: Ptr, plane: number): number;
}
export type GbmFunctionName = keyof GbmFunctions & keyof typeof GBM_SIGNATURES;

/** Every function declared above, in declaration order. */
export const GBM_FUNCTION_NAMES = Object.keys(GBM_SIGNATURES) as GbmFunctionName[];

export interface GbmBindings {
  /** The resolved functions; an optional one that libgbm lacks is absent. */
  fn: Partial<GbmFunctions> &
    Omit<
      GbmFunctions,
      | 'gbm_bo_create_with_modifiers'
      | 'gbm_bo_create_with_modifiers2'
      | 'gbm_bo_get_fd_for_plane'
      | 'gbm_device_get_format_modifier_plane_count'
    >;
  /** Optional functions this libgbm does not export. */
  missing: GbmFunctionName[];
  /** errno as the last C call left it (read it right after the call). */
  errno(): number;
  /** close(2) on a raw fd. */
  closeRaw(fd: number): void;
}

type Koffi = typeof import('koffi');

let bindings: GbmBindings | undefined;
let bindingsError: SurfaceLinkError | undefined;

/**
 * Loads koffi and libgbm and resolves every function in GBM_SIGNATURES, once per process.
 * Throws E_NO_MECHANISM saying why (koffi's or the dynamic linker's message) when it cannot.
 */
export function gbmBindings(): GbmBindings {
  if (bindings) return bindings;
  if (bindingsError) throw bindingsError;
  let koffi: Koffi;
  try {
    koffi = require('koffi') as Koffi;
  } catch (e) {
    throw (bindingsError = new SurfaceLinkError(
      'E_NO_MECHANISM',
      `koffi (the FFI used to call libgbm) cannot be loaded: ${firstLine(e)}`,
      { cause: e },
    ));
  }
  let lib: ReturnType<Koffi['load']>;
  let libc: ReturnType<Koffi['load']>;
  try {
    lib = koffi.load(LIBGBM);
    libc = koffi.load(LIBC);
  } catch (e) {
    throw (bindingsError = new SurfaceLinkError('E_NO_MECHANISM', `${LIBGBM} cannot be loaded: ${firstLine(e)}`, {
      cause: e,
    }));
  }
  const fn: Record<string, unknown> = {};
  const missing: GbmFunctionName[] = [];
  for (const name of GBM_FUNCTION_NAMES) {
    try {
      fn[name] = lib.func(GBM_SIGNATURES[name]);
    } catch (e) {
      if (!GBM_OPTIONAL.has(name))
        throw (bindingsError = new SurfaceLinkError('E_NO_MECHANISM', `${LIBGBM} lacks ${name}: ${firstLine(e)}`, {
          cause: e,
        }));
      missing.push(name);
    }
  }
  const close = libc.func(LIBC_SIGNATURES.close) as (fd: number) => number;
  return (bindings = {
    fn: fn as unknown as GbmBindings['fn'],
    missing,
    errno: () => koffi.errno(),
    closeRaw: (fd) => void close(fd),
  });
}

// ─── Raw fds → NativeFd ─────────────────────────────────────────────────────────────────

/** Takes ownership of a raw fd libgbm returned; on failure the caller still owns (and closes) it. */
function adoptRawFd(fd: number): NativeFd {
  return linuxNative().adoptFd(fd);
}

// ─── The device ─────────────────────────────────────────────────────────────────────────

interface GbmDevice {
  node: string;
  /**
   * The render node. gbm_create_device() takes a bare fd number and borrows it for the
   * device's lifetime, and NativeFd deliberately exposes no number except debugNumber
   * (for diagnostics). Passing debugNumber is sound here because this NativeFd is kept
   * open, and never closed or dup2'd over, until gbm_device_destroy() has run.
   */
  fd: NativeFd;
  dev: Ptr;
  backend: string;
}

type DeviceResult = { ok: true; device: GbmDevice; reason: string } | { ok: false; reason: string };

let cachedDevice: DeviceResult | undefined;

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}

const ERRNO = osConstants.errno;
const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));
function errnoText(errno: number): string {
  return `errno ${errno} (${ERRNO_NAMES.get(errno) ?? 'unknown'})`;
}

/** The first render node on which GBM really allocates, or why none does. Cached. */
function openDevice(): DeviceResult {
  if (cachedDevice) return cachedDevice;
  return (cachedDevice = findDevice());
}

function findDevice(): DeviceResult {
  if (process.platform !== 'linux') return { ok: false, reason: `GBM is Linux-only (this is ${process.platform})` };
  let native: LinuxAddon;
  try {
    native = linuxNative();
  } catch (e) {
    return { ok: false, reason: `the native addon is unavailable: ${firstLine(e)}` };
  }
  const drm = native.drm;
  if (!drm) return { ok: false, reason: 'this build of the native addon has no DRM support' };
  const nodes = drm.listNodes().filter((n) => n.kind === 'render');
  if (nodes.length === 0) {
    let lib: string;
    try {
      gbmBindings();
      lib = `${LIBGBM} itself loads`;
    } catch (e) {
      lib = firstLine(e);
    }
    return { ok: false, reason: `no DRM render node in /dev/dri (no GPU, or its driver is not loaded); ${lib}` };
  }
  let g: GbmBindings;
  try {
    g = gbmBindings();
  } catch (e) {
    return { ok: false, reason: `${firstLine(e)} (render nodes: ${nodes.map((n) => n.path).join(', ')})` };
  }
  const failures: string[] = [];
  for (const node of nodes) {
    const result = tryNode(g, node.path);
    if (result.ok) return result;
    failures.push(result.reason);
  }
  return { ok: false, reason: failures.join('; ') };
}

function tryNode(g: GbmBindings, node: string): DeviceResult {
  let fd: NativeFd;
  try {
    fd = linuxNative().drm!.open(node);
  } catch (e) {
    return { ok: false, reason: `opening ${node} failed: ${firstLine(e)}` };
  }
  const dev = g.fn.gbm_create_device(fd.debugNumber);
  if (dev === null) {
    const errno = g.errno();
    fd.close();
    return { ok: false, reason: `gbm_create_device(${node}) failed: ${errnoText(errno)}` };
  }
  const fail = (reason: string): DeviceResult => {
    g.fn.gbm_device_destroy(dev);
    fd.close();
    return { ok: false, reason };
  };
  const backend = g.fn.gbm_device_get_backend_name(dev) ?? '(unnamed)';
  const xr24 = FORMATS.XRGB8888.fourcc;
  if (!g.fn.gbm_device_is_format_supported(dev, xr24, LINEAR_USAGE))
    return fail(
      `GBM backend "${backend}" on ${node}: XRGB8888 with GBM_BO_USE_RENDERING | GBM_BO_USE_LINEAR is not supported`,
    );
  // Mesa falls back to its software rasterizer when the node has no Mesa driver, so the
  // device and the format check above prove nothing: allocate and export one buffer, and
  // map it read-write as exportDmabufs() will (kms_swrast exports its dumb buffers
  // read-only, for one, so they cannot be written through a mapping).
  const at = `GBM backend "${backend}" on ${node}`;
  const bo = g.fn.gbm_bo_create(dev, 64, 64, xr24, LINEAR_USAGE);
  if (bo === null)
    return fail(`${at}: gbm_bo_create(64x64 XRGB8888, RENDERING | LINEAR) failed: ${errnoText(g.errno())}`);
  const raw = g.fn.gbm_bo_get_fd(bo);
  const exportErrno = g.errno();
  g.fn.gbm_bo_destroy(bo);
  if (raw < 0) return fail(`${at}: gbm_bo_get_fd failed: ${errnoText(exportErrno)}`);
  let trial: NativeFd;
  try {
    trial = adoptRawFd(raw);
  } catch (e) {
    g.closeRaw(raw);
    return fail(`${at}: adoptFd refused the fd gbm_bo_get_fd returned: ${firstLine(e)}`);
  }
  try {
    const st = trial.stat();
    if (st.kind !== 'dmabuf') return fail(`${at}: gbm_bo_get_fd returned a ${st.kind}, not a dma-buf`);
    try {
      linuxNative().unmap(trial.map(0, st.size ?? 0, 'shared'));
    } catch (e) {
      return fail(`${at} allocates, but its dma-bufs cannot be mapped read-write: ${firstLine(e)}`);
    }
  } finally {
    trial.close();
  }
  return {
    ok: true,
    device: { node, fd, dev, backend },
    reason: `${at} allocates, exports and maps XRGB8888 (rendering, linear)`,
  };
}

function gbmReleaseDevice(device: GbmDevice): void {
  gbmBindings().fn.gbm_device_destroy(device.dev);
  device.fd.close();
}

/**
 * Destroys the process's GBM device (if one was opened) and forgets the probe, so the next
 * call opens it afresh. Buffers already allocated stay valid: their dma-bufs hold the memory.
 */
export function gbmRelease(): void {
  const d = cachedDevice;
  cachedDevice = undefined;
  if (d?.ok) gbmReleaseDevice(d.device);
}

// ─── Public API ─────────────────────────────────────────────────────────────────────────

export interface GbmProbeResult {
  available: boolean;
  /** Why (not): which node, which backend, which call failed with which errno. */
  reason: string;
  /** The render node GBM allocates on. */
  renderNode?: string;
  /** gbm_device_get_backend_name(): "drm" for Mesa's DRI backend. */
  backend?: string;
}

/** Whether GBM allocates (and we can export what it allocates) here, and why not. */
export function gbmProbe(): GbmProbeResult {
  const r = openDevice();
  if (!r.ok) return { available: false, reason: r.reason };
  return { available: true, reason: r.reason, renderNode: r.device.node, backend: r.device.backend };
}

export interface GbmAllocation {
  /** The dma-bufs (deduplicated: planes on the same object share one fd). Owned: close() closes them. */
  fds: NativeFd[];
  /** Per GBM plane (gbm_bo_get_plane_count; may exceed the format's planes for compressed modifiers). */
  planes: { handleIndex: number; offset: number; stride: number }[];
  /** The modifier GBM chose (one of those asked for; LINEAR for the GBM_BO_USE_LINEAR fallback). */
  modifier: bigint;
  /** Bytes in each of `fds` (lseek(SEEK_END) on the dma-buf). */
  sizes: number[];
  close(): void;
}

function checkDimension(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1 || v > MAX_DIMENSION)
    throw invalidArgument(name, `an integer in 1..${MAX_DIMENSION}`, v);
}

/**
 * Allocates a `width`×`height` buffer of `format` with one of `modifiers` (GBM picks;
 * MODIFIER_INVALID entries are ignored; an empty list means "implicit": the driver's
 * choice, reported as gbm_bo_get_modifier says, possibly MODIFIER_INVALID), and exports
 * every plane as a dma-buf. The bo is destroyed before returning; the dma-bufs
 * keep the memory.
 *
 * Order of attempts: gbm_bo_create_with_modifiers2(…, RENDERING), or, where libgbm lacks
 * it, gbm_bo_create_with_modifiers(); then, if that failed (or is missing) and LINEAR is
 * acceptable, gbm_bo_create(…, RENDERING | LINEAR).
 *
 * Errors: E_NO_MECHANISM (no working GBM device, with the probe's reason), E_UNSUPPORTED
 * (a multi-plane buffer and a libgbm without gbm_bo_get_fd_for_plane), E_INVALID_ARGUMENT,
 * E_UNSUPPORTED_FORMAT (GBM refused the format/modifiers: unsupported format, EINVAL, or ENOSYS
 * from a driver without explicit-modifier allocation and LINEAR not acceptable), E_SYSTEM (a
 * GBM call failed; errno attached), E_HANDLE_TYPE (GBM returned something that is not a
 * dma-buf).
 */
export function gbmAllocate(format: FormatInfo, width: number, height: number, modifiers: bigint[]): GbmAllocation {
  checkDimension('width', width);
  checkDimension('height', height);
  if (!Array.isArray(modifiers) || modifiers.some((m) => typeof m !== 'bigint' || m < 0n || m > 0xffffffffffffffffn))
    throw invalidArgument('modifiers', 'an array of 64-bit bigint modifiers', modifiers);
  const asked = modifiers.filter((m) => m !== MODIFIER_INVALID);
  const d = openDevice();
  if (!d.ok) throw new SurfaceLinkError('E_NO_MECHANISM', `GBM is unavailable: ${d.reason}`);
  const g = gbmBindings();
  const { dev } = d.device;
  const what = `${width}x${height} ${format.name} (${fourccToString(format.fourcc)})`;

  // 1. Create the bo.
  const attempts: string[] = [];
  const errnos: number[] = [];
  const failed = (call: string): void => {
    const errno = g.errno();
    errnos.push(errno);
    attempts.push(`${call}: ${errnoText(errno)}`);
  };
  let bo: Ptr | null = null;
  let linearFallback = false;
  if (asked.length > 0) {
    const list = BigUint64Array.from(asked);
    const create2 = g.fn.gbm_bo_create_with_modifiers2;
    const create1 = g.fn.gbm_bo_create_with_modifiers;
    if (create2) {
      bo = create2(dev, width, height, format.fourcc, list, list.length, GBM_BO_USE_RENDERING);
      if (bo === null) failed('gbm_bo_create_with_modifiers2');
    } else if (create1) {
      bo = create1(dev, width, height, format.fourcc, list, list.length);
      if (bo === null) failed('gbm_bo_create_with_modifiers');
    } else {
      errnos.push(ERRNO.ENOSYS);
      attempts.push(`${LIBGBM} has no gbm_bo_create_with_modifiers[2]`);
    }
    if (bo === null && asked.includes(MODIFIER_LINEAR)) {
      bo = g.fn.gbm_bo_create(dev, width, height, format.fourcc, LINEAR_USAGE);
      if (bo === null) failed('gbm_bo_create(RENDERING | LINEAR)');
      else linearFallback = true;
    }
  } else {
    bo = g.fn.gbm_bo_create(dev, width, height, format.fourcc, GBM_BO_USE_RENDERING);
    if (bo === null) failed('gbm_bo_create(RENDERING)');
  }
  if (bo === null) {
    const mods = asked.length ? asked.map((m) => `0x${m.toString(16)}`).join(', ') : 'implicit';
    const supported = g.fn.gbm_device_is_format_supported(dev, format.fourcc, GBM_BO_USE_RENDERING) !== 0;
    // ENOSYS: the driver cannot allocate with explicit modifiers; EINVAL: it refused the
    // format or modifiers (the dimensions were checked above). Both are "not this format".
    const refused = !supported || errnos.every((e) => e === ERRNO.ENOSYS || e === ERRNO.EINVAL);
    throw new SurfaceLinkError(
      refused ? 'E_UNSUPPORTED_FORMAT' : 'E_SYSTEM',
      `GBM (${d.device.backend} on ${d.device.node}) could not allocate ${what} with modifiers ` +
        `[${mods}]${supported ? '' : ' (it does not support the format for rendering)'}: ${attempts.join('; ')}`,
      { syscall: 'gbm_bo_create', errno: errnos[errnos.length - 1] },
    );
  }

  // 2. Describe and export it; destroy the bo whatever happens (the dma-bufs keep the memory).
  const fds: NativeFd[] = [];
  const raws: number[] = [];
  try {
    const reported = BigInt(g.fn.gbm_bo_get_modifier(bo));
    const modifier =
      linearFallback || (reported === MODIFIER_INVALID && asked.length === 1 && asked[0] === MODIFIER_LINEAR)
        ? MODIFIER_LINEAR
        : reported;
    if (asked.length > 0 && !asked.includes(modifier))
      throw new SurfaceLinkError(
        'E_UNSUPPORTED_FORMAT',
        `GBM allocated ${what} with modifier 0x${modifier.toString(16)}, which was not asked for`,
      );
    const count = g.fn.gbm_bo_get_plane_count(bo);
    if (!Number.isInteger(count) || count < 1 || count > 4)
      throw new SurfaceLinkError('E_SYSTEM', `gbm_bo_get_plane_count returned ${count} for ${what}`);

    // Export every plane. Drivers usually put all planes in one GEM object, so the fds
    // refer to the same dma-buf (same inode): keep the first, close the rest.
    const getFdForPlane = g.fn.gbm_bo_get_fd_for_plane;
    const byInode = new Map<string, number>();
    const sizes: number[] = [];
    const planes: GbmAllocation['planes'] = [];
    for (let i = 0; i < count; i++) {
      let raw: number;
      if (getFdForPlane) raw = getFdForPlane(bo, i);
      else if (count === 1) raw = g.fn.gbm_bo_get_fd(bo);
      else
        throw new SurfaceLinkError(
          'E_UNSUPPORTED',
          `${LIBGBM} has no gbm_bo_get_fd_for_plane, needed for a ${count}-plane buffer`,
        );
      if (raw < 0) {
        const errno = g.errno();
        throw new SurfaceLinkError('E_SYSTEM', `exporting plane ${i} of ${what} failed: ${errnoText(errno)}`, {
          syscall: getFdForPlane ? 'gbm_bo_get_fd_for_plane' : 'gbm_bo_get_fd',
          errno,
        });
      }
      raws.push(raw);
      const fd = adoptRawFd(raw);
      raws.pop(); // owned by `fd` now
      const st = fd.stat();
      if (st.kind !== 'dmabuf') {
        fd.close();
        throw new SurfaceLinkError(
          'E_HANDLE_TYPE',
          `GBM exported plane ${i} of ${what} as a ${st.kind}, not a dma-buf`,
        );
      }
      const key = `${st.device}:${st.inode}`;
      let handleIndex = byInode.get(key);
      if (handleIndex === undefined) {
        if (st.size === null || st.size <= 0) {
          fd.close();
          throw new SurfaceLinkError('E_SYSTEM', `the dma-buf of plane ${i} of ${what} reports no size`);
        }
        handleIndex = fds.length;
        byInode.set(key, handleIndex);
        fds.push(fd);
        sizes.push(st.size);
      } else fd.close();
      planes.push({
        handleIndex,
        offset: g.fn.gbm_bo_get_offset(bo, i),
        stride: g.fn.gbm_bo_get_stride_for_plane(bo, i),
      });
    }
    let closed = false;
    return {
      fds,
      planes,
      modifier,
      sizes,
      close() {
        if (closed) return;
        closed = true;
        for (const fd of fds) fd.close();
      },
    };
  } catch (error) {
    for (const raw of raws) g.closeRaw(raw);
    for (const fd of fds) fd.close();
    throw SurfaceLinkError.fromNative(error);
  } finally {
    g.fn.gbm_bo_destroy(bo);
  }
}
