/**
 * Finds and loads the native addon (placeholder until the packaging work lands: same
 * candidates as before, relative to the package root).
 */
import * as path from 'node:path';
import { SurfaceLinkError } from '../errors.js';

/** The package root: dist/native/ and src/native/ both sit two levels below it. */
const ROOT = path.resolve(__dirname, '..', '..');

let cached: { addon: unknown; path: string } | undefined;
let cachedError: SurfaceLinkError | undefined;

/** Where the addon may be, in order. SURFACELINK_ADDON names one explicitly. */
export function addonCandidates(): string[] {
  const list = [
    path.join(ROOT, 'build', 'Release', 'surfacelink.node'),
    path.join(ROOT, 'build', 'Debug', 'surfacelink.node'),
    path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`, 'surfacelink.node'),
  ];
  const explicit = process.env.SURFACELINK_ADDON;
  return explicit ? [explicit, ...list] : list;
}

/** The addon, loaded once, and where from. Throws E_NATIVE_UNAVAILABLE explaining every path tried. */
export function loadAddon(): { addon: unknown; path: string } {
  if (cached) return cached;
  if (cachedError) throw cachedError;
  const tried: string[] = [];
  for (const candidate of addonCandidates()) {
    try {
      cached = { addon: require(candidate), path: candidate };
      return cached;
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      tried.push(`  ${candidate}: ${e.code === 'MODULE_NOT_FOUND' ? 'not found' : e.message.split('\n')[0]}`);
    }
  }
  cachedError = new SurfaceLinkError(
    'E_NATIVE_UNAVAILABLE',
    [
      `surfacelink's native addon could not be loaded on ${process.platform}-${process.arch} (Node ${process.version}). Tried:`,
      ...tried,
      'Possible solutions:',
      '  - build it: `npm run build:native` in the package directory; it needs cmake and a C++17 compiler;',
      '  - point SURFACELINK_ADDON at a surfacelink.node built for this platform.',
    ].join('\n'),
  );
  throw cachedError;
}
