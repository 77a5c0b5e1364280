/**
 * `surfacelink doctor`: what this machine can do and, where it cannot, why. Everything it
 * prints comes from the library's own probes, so the answer matches what a server or
 * client in this process would decide.
 */
import * as os from 'node:os';
import { mechanismReports, mechanisms as registry, type MechanismReport } from '../mechanisms/index.js';
import { TRANSPORTS, defaultAddress } from '../transport/index.js';
import { probeH264, type H264Probe } from '../stream/h264.js';
import { hostIdentity } from '../host.js';
import { probeNative } from '../native/index.js';
import { memoryObjectUnavailable, openGpuContext, type GpuContext } from '../gl/index.js';

/** One way frames reach GL or leave it, and whether this EGL offers it. */
export interface GlPathReport {
  name: string;
  available: boolean;
  reason: string;
}

/** One EGL candidate: what loaded, from where, and its import/render/export paths. */
export interface GlReport {
  /** Which discovery order was asked for: the bundled ANGLE first, or the system's EGL first. */
  prefer: 'angle' | 'system';
  loaded: boolean;
  /** Who chose the libraries ('angle (@sparticuz/chromium 147.0.0)', 'system'), and their paths. */
  source: string | null;
  egl: string | null;
  gles: string | null;
  display: string | null;
  eglVersion: string | null;
  eglVendor: string | null;
  renderer: string | null;
  version: string | null;
  maxTextureSize: number | null;
  imports: GlPathReport[];
  renders: GlPathReport[];
  exports: GlPathReport[];
  error: string | null;
}

function glPaths(ctx: GpuContext): Pick<GlReport, 'imports' | 'renders' | 'exports'> {
  const display = ctx.advertised.display;
  const memory = memoryObjectUnavailable(ctx);
  const memoryReason =
    'memfd buffers whose stride is align(width, 2) × 4 (rows a multiple of 64 bytes) are the texture ' +
    '(GL_EXT_memory_object_fd)';
  const extension = (name: string, platform: NodeJS.Platform, what: string): GlPathReport => {
    const advertised = display.has(name);
    return {
      name: what,
      available: advertised && process.platform === platform,
      reason: advertised
        ? process.platform === platform
          ? `${name} is advertised`
          : `${name} is advertised, but it is for ${platform}`
        : `${name} is not advertised${process.platform === platform ? '' : ` (a ${platform} path)`}`,
    };
  };
  return {
    imports: [
      { name: 'memory-object', available: memory === null, reason: memory ?? `zero-copy: ${memoryReason}` },
      {
        name: 'dmabuf-egl-image',
        available: ctx.capabilities.dmabufImport,
        reason: ctx.capabilities.dmabufImport
          ? 'EGL_EXT_image_dma_buf_import is advertised (zero-copy dma-bufs)'
          : 'EGL_EXT_image_dma_buf_import is not advertised (needs a GPU driver)',
      },
      extension('EGL_ANGLE_iosurface_client_buffer', 'darwin', 'iosurface'),
      extension('EGL_ANGLE_d3d_texture_client_buffer', 'win32', 'd3d11'),
      { name: 'upload', available: true, reason: 'always: glTexSubImage2D of the damage rectangles' },
    ],
    renders: [
      { name: 'memory-object', available: memory === null, reason: memory ?? `zero-copy: ${memoryReason}` },
      {
        name: 'readback',
        available: true,
        reason: 'always: render to a texture, glReadPixels of the damage rectangles',
      },
    ],
    exports: [
      {
        name: 'dmabuf-export',
        available: ctx.capabilities.dmabufExport,
        reason: ctx.capabilities.dmabufExport
          ? 'EGL_MESA_image_dma_buf_export is advertised'
          : 'EGL_MESA_image_dma_buf_export is not advertised (surfacelink allocates dma-bufs itself)',
      },
    ],
  };
}

/** Opens GL the way a producer or consumer would; never throws (a failure is reported). */
export function glReport(prefer: 'angle' | 'system'): GlReport {
  const empty: GlReport = {
    prefer,
    loaded: false,
    source: null,
    egl: null,
    gles: null,
    display: null,
    eglVersion: null,
    eglVendor: null,
    renderer: null,
    version: null,
    maxTextureSize: null,
    imports: [],
    renders: [],
    exports: [],
    error: null,
  };
  let ctx: GpuContext | undefined;
  try {
    ctx = openGpuContext({ prefer });
    const libs = ctx.api.libraries;
    return {
      ...empty,
      loaded: true,
      source: libs.source,
      egl: libs.egl,
      gles: libs.gles,
      display: ctx.displaySpec.name,
      eglVersion: ctx.eglVersion,
      eglVendor: ctx.eglVendor,
      renderer: ctx.renderer,
      version: ctx.version,
      maxTextureSize: ctx.maxTextureSize,
      ...glPaths(ctx),
    };
  } catch (error) {
    return { ...empty, error: error instanceof Error ? error.message : String(error) };
  } finally {
    ctx?.close();
  }
}

export interface DoctorReport {
  version: string;
  platform: { os: string; arch: string; release: string };
  node: { version: string; napi: string | null; abi: string };
  addon: { loaded: boolean; path: string | null; platform: string | null; abi: number | null; error: string | null };
  host: { bootId: string | null; machineId: string | null };
  socketPath: string;
  /** This OS's backend: whether surfacelink can share frames here at all, and what is missing. */
  backend: { complete: boolean; summary: string };
  /** Transports (how peers connect and pass handles), each with why it is (not) available. */
  transports: { name: string; available: boolean; reason: string }[];
  mechanisms: MechanismReport[];
  /** GL by both discovery orders: the bundled ANGLE first, and the system's EGL first. */
  gl: GlReport[];
  /** H.264 for remote viewers (stream.v1): the GStreamer encoders tried and the decoder; null when not probed. */
  h264: H264Probe | null;
  /** A transport and a mechanism that allocates buffers both work: a server can serve here. */
  ok: boolean;
}

export function doctorReport(version: string, options: { gl?: boolean } = {}): DoctorReport {
  const { addon, path: addonPath, error } = probeNative();
  const mechanisms = mechanismReports();
  const transports = TRANSPORTS.map((t) => ({ name: t.name, ...t.probe() }));
  const serving = registry
    .available()
    .filter((m) => m.allocate && !m.explicitOnly)
    .map((m) => m.name);
  const connecting = transports.filter((t) => t.available).map((t) => t.name);
  const ok = serving.length > 0 && connecting.length > 0;
  return {
    version,
    platform: { os: process.platform, arch: process.arch, release: os.release() },
    node: { version: process.version, napi: process.versions.napi ?? null, abi: process.versions.modules },
    addon: {
      loaded: addon !== undefined,
      path: addonPath ?? null,
      platform: addon?.platform ?? null,
      abi: addon?.abi ?? null,
      error: error ? `${error.code}: ${error.message}` : null,
    },
    host: { ...hostIdentity() },
    socketPath: defaultAddress(),
    backend: backendSummary(addon?.platform ?? null, serving, connecting),
    transports,
    mechanisms,
    gl: options.gl === false ? [] : [glReport('angle'), glReport('system')],
    h264: null,
    ok,
  };
}

/** What this OS's backend can do, in one line a user can act on. */
function backendSummary(platform: string | null, serving: string[], connecting: string[]): DoctorReport['backend'] {
  if (platform === null) return { complete: false, summary: 'unknown: the native addon did not load (see above)' };
  if (serving.length > 0 && connecting.length > 0)
    return { complete: true, summary: `${platform}: serves ${serving.join(', ')} over ${connecting.join(', ')}` };
  const missing =
    process.platform === 'win32'
      ? 'a working named pipe and file-mapping section'
      : process.platform === 'darwin'
        ? 'IOSurface and shared-memory sharing'
        : 'a working mechanism or transport';
  return {
    complete: false,
    summary:
      `${platform}: the addon loads, but surfacelink's backend for ${platform} is not written yet ` +
      `(${missing}); remote viewers of a server elsewhere work (surfacelink view --remote)`,
  };
}

export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  const row = (label: string, value: string): void => {
    lines.push(`${label.padEnd(11)} ${value}`);
  };
  row('surfacelink', r.version);
  row('platform', `${r.platform.os} ${r.platform.arch} (kernel ${r.platform.release})`);
  row('node', `${r.node.version} (N-API ${r.node.napi ?? '?'}, ABI ${r.node.abi})`);
  if (r.addon.loaded)
    row('addon', `loaded from ${r.addon.path ?? '(unknown path)'} (platform ${r.addon.platform}, abi ${r.addon.abi})`);
  else {
    row('addon', 'NOT loaded');
    for (const line of (r.addon.error ?? 'unknown error').split('\n')) lines.push(`            ${line}`);
  }
  row('boot id', r.host.bootId ?? '(unknown: /proc/sys/kernel/random/boot_id unreadable)');
  row('machine id', r.host.machineId ?? '(unknown: /etc/machine-id unreadable)');
  row(process.platform === 'win32' ? 'pipe' : 'socket', `${r.socketPath} (default)`);
  row('backend', r.backend.summary);
  lines.push('transports');
  for (const t of r.transports) lines.push(`  ${t.available ? '✔' : '✘'} ${t.name}  ${t.reason}`);
  lines.push('mechanisms');
  const width = Math.max(...r.mechanisms.map((m) => m.name.length));
  for (const m of r.mechanisms) lines.push(`  ${m.available ? '✔' : '✘'} ${m.name.padEnd(width)}  ${m.reason}`);
  const seen = new Set<string>();
  for (const g of r.gl) {
    const key = g.loaded ? `${g.egl}\n${g.renderer}` : `error ${g.prefer}`;
    if (seen.has(key)) {
      lines.push(`gl (${g.prefer} first)  the same EGL as above`);
      continue;
    }
    seen.add(key);
    if (!g.loaded) {
      lines.push(`gl (${g.prefer} first)  NOT available`);
      for (const line of (g.error ?? 'unknown error').split('\n')) lines.push(`            ${line}`);
      continue;
    }
    lines.push(`gl (${g.prefer} first)  ${g.renderer}`);
    lines.push(
      `            ${g.version}; EGL ${g.eglVersion} (${g.eglVendor}), ${g.display}, max texture ${g.maxTextureSize}`,
    );
    lines.push(`            loaded ${g.egl} + ${g.gles} [${g.source}]`);
    for (const [label, list] of [
      ['import', g.imports],
      ['render', g.renders],
      ['export', g.exports],
    ] as const) {
      for (const p of list) lines.push(`    ${p.available ? '✔' : '✘'} ${label} ${p.name.padEnd(17)} ${p.reason}`);
    }
  }
  if (r.h264) {
    const h = r.h264;
    lines.push(
      'h264        ' +
        (h.encoder
          ? `${h.encoder} (${h.hardware ? 'hardware' : 'software'})`
          : 'NO encoder: remote viewers get lossless tiles only') +
        `; decoder avdec_h264 ${h.decoder ? 'present' : 'missing'}; ` +
        `${h.gstreamer ?? 'GStreamer not found'} via ${h.python ?? 'no usable python'}`,
    );
    lines.push(`            ${h.reason}`);
    for (const c of h.candidates) lines.push(`    ${c.usable ? '✔' : '✘'} ${c.element.padEnd(13)} ${c.reason}`);
  }
  lines.push(
    r.ok
      ? `ready: ${r.mechanisms
          .filter((m) => m.available)
          .map((m) => m.name)
          .join(', ')}`
      : `NOT ready: ${r.backend.complete ? 'no sharing mechanism is available on this machine' : r.backend.summary}`,
  );
  return lines.join('\n');
}

/** Prints the report; the exit status is 0 when a server can serve here (a transport and a mechanism work), else 1. */
export async function runDoctor(options: { json: boolean; version: string }): Promise<number> {
  const report = doctorReport(options.version);
  try {
    report.h264 = await probeH264();
  } catch {
    report.h264 = null; // probeH264 reports failures in its result; anything else leaves the line out
  }
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctor(report)}\n`);
  return report.ok ? 0 : 1;
}
