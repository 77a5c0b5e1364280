/**
 * The native addon, typed per OS. Nothing else imports the .node file: the loader
 * (./load.ts) finds it, and these accessors narrow it to what the caller needs, failing
 * with a stable code that names the OS when that part does not exist there.
 */
import { SurfaceLinkError } from '../errors.js';
import { loadAddon } from './load.js';
import type { DarwinAddon, IdPipeApi, LinuxAddon, NativeAddon, PosixChannelApi, Win32Addon } from './types.js';

export type * from './types.js';
export { addonCandidates } from './load.js';

/** The addon, loaded once. Throws E_NATIVE_UNAVAILABLE explaining every path tried. */
export function loadNative(): NativeAddon {
  return loadAddon().addon as NativeAddon;
}

/** The addon and where it was loaded from, or the reason it could not be (for `surfacelink doctor`). */
export function probeNative(): { addon?: NativeAddon; path?: string; error?: SurfaceLinkError } {
  try {
    const { addon, path } = loadAddon();
    return { addon: addon as NativeAddon, path };
  } catch (error) {
    return { error: SurfaceLinkError.fromNative(error) };
  }
}

/** Why the addon is not loaded, in the words mechanism probes report; null when it is. */
export function addonMissingReason(): string | null {
  const { addon, error } = probeNative();
  return addon
    ? null
    : `the native addon is not loaded (${error?.code ?? 'E_NATIVE_UNAVAILABLE'}; ` +
        `\`surfacelink doctor\` shows every path tried)`;
}

/** The Linux addon; E_UNSUPPORTED elsewhere (memfd, dma-bufs, DRM and sync_file are Linux's). */
export function linuxNative(): LinuxAddon {
  const addon = loadNative();
  if (addon.platform !== 'linux')
    throw new SurfaceLinkError('E_UNSUPPORTED', `this needs Linux; the addon is built for ${addon.platform}`);
  return addon;
}

/** The POSIX fd owner and SCM_RIGHTS channel (Linux and macOS); E_UNSUPPORTED on Windows. */
export function posixChannels(): PosixChannelApi {
  const addon = loadNative();
  if (addon.platform !== 'linux' && addon.platform !== 'darwin')
    throw new SurfaceLinkError('E_UNSUPPORTED', `the unix-socket channel is not written for ${addon.platform} yet`);
  return addon;
}

/** The surface-ID pipe of iosurface-pipe.v1 (POSIX: Linux and macOS builds); E_UNSUPPORTED elsewhere. */
export function idPipes(): IdPipeApi {
  const addon = loadNative();
  if (addon.platform !== 'linux' && addon.platform !== 'darwin')
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `surface-ID pipes are POSIX pipes; this addon is built for ${addon.platform}`,
    );
  return addon;
}

/** The macOS addon (IOSurface, mach ports); E_UNSUPPORTED elsewhere. */
export function darwinNative(): DarwinAddon {
  const addon = loadNative();
  if (addon.platform !== 'darwin')
    throw new SurfaceLinkError('E_UNSUPPORTED', `this needs macOS; the addon is built for ${addon.platform}`);
  return addon;
}

/** The Windows addon (named pipes, HANDLEs, sections, D3D11); E_UNSUPPORTED elsewhere. */
export function win32Native(): Win32Addon {
  const addon = loadNative();
  if (addon.platform !== 'win32')
    throw new SurfaceLinkError('E_UNSUPPORTED', `this needs Windows; the addon is built for ${addon.platform}`);
  return addon;
}
