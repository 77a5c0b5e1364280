/**
 * Formats × modifiers as a set (the shape negotiation needs): what an importer can take,
 * what an allocator can make, and their intersection. Modifiers travel in JSON as
 * "0x…" hex strings because they do not fit in a JSON number.
 */
import { SurfaceLinkError } from './errors.js';
import { MODIFIER_INVALID, MODIFIER_LINEAR, formatByFourcc, fourcc, fourccToString } from './formats.js';

/**
 * A set of DRM format × modifier pairs: what an importer can take (`ClientOptions.dmabufFormats`),
 * what an allocator can make, and their intersection. Formats are DRM fourccs, modifiers DRM format
 * modifiers.
 */
export class FormatSet {
  private readonly map = new Map<number, Set<bigint>>();

  /** A set of every `[format, modifiers]` pair given, e.g. `FormatSet.of([[fourcc('XR24'), [MODIFIER_LINEAR]]])`. */
  static of(entries: Iterable<[format: number, modifiers: Iterable<bigint>]>): FormatSet {
    const set = new FormatSet();
    for (const [f, mods] of entries) for (const m of mods) set.add(f, m);
    return set;
  }

  /** Adds one format × modifier; returns the set. */
  add(format: number, modifier: bigint): this {
    let mods = this.map.get(format);
    if (!mods) this.map.set(format, (mods = new Set()));
    mods.add(modifier);
    return this;
  }

  /** Whether the set holds `format` × `modifier`. */
  has(format: number, modifier: bigint): boolean {
    return this.map.get(format)?.has(modifier) ?? false;
  }

  /** The modifiers the set holds for `format` (empty if none). */
  modifiers(format: number): bigint[] {
    return [...(this.map.get(format) ?? [])];
  }

  /** Every format the set holds, each once. */
  formats(): number[] {
    return [...this.map.keys()];
  }

  /** How many format × modifier pairs it holds. */
  get size(): number {
    let n = 0;
    for (const mods of this.map.values()) n += mods.size;
    return n;
  }

  /** A new set of the pairs both sets hold. */
  intersect(other: FormatSet): FormatSet {
    const out = new FormatSet();
    for (const [f, mods] of this.map) for (const m of mods) if (other.has(f, m)) out.add(f, m);
    return out;
  }

  /** JSON form for HELLO: [{ format: "XR24", modifiers: ["0x0", …] }]. */
  toJSON(): {
    /** The fourcc as four characters, e.g. 'XR24'. */
    format: string;
    /** Its modifiers as '0x…' hex strings. */
    modifiers: string[];
  }[] {
    return [...this.map].map(([f, mods]) => ({
      format: fourccToString(f),
      modifiers: [...mods].map((m) => `0x${m.toString(16)}`),
    }));
  }

  /** Parses the JSON form; anything malformed is E_MALFORMED. Unknown formats are kept (they never intersect). */
  static fromJSON(value: unknown, limit = 64): FormatSet {
    const bad = (why: string) => new SurfaceLinkError('E_MALFORMED', `formats: ${why}`);
    if (!Array.isArray(value) || value.length > limit) throw bad(`must be a list of at most ${limit} entries`);
    const set = new FormatSet();
    for (const entry of value) {
      const e = entry as { format?: unknown; modifiers?: unknown };
      if (typeof e?.format !== 'string' || e.format.length !== 4)
        throw bad('each entry needs a four-character "format"');
      if (!Array.isArray(e.modifiers) || e.modifiers.length === 0 || e.modifiers.length > limit)
        throw bad(`"modifiers" must list 1..${limit} hex strings`);
      for (const m of e.modifiers) {
        if (typeof m !== 'string' || !/^0x[0-9a-fA-F]{1,16}$/.test(m))
          throw bad(`modifier ${JSON.stringify(m)} is not a 64-bit hex string`);
        set.add(fourcc(e.format), BigInt(m));
      }
    }
    return set;
  }

  /** For messages: `XR24[LINEAR] NV12[LINEAR,0x…]`. */
  toString(): string {
    return this.toJSON()
      .map((e) => `${e.format}[${e.modifiers.map((m) => modifierName(BigInt(m))).join(',')}]`)
      .join(' ');
  }
}

/** A DRM format modifier for people: 'LINEAR', 'INVALID', or 16 hex digits. */
export function modifierName(m: bigint): string {
  if (m === MODIFIER_LINEAR) return 'LINEAR';
  if (m === MODIFIER_INVALID) return 'INVALID';
  return `0x${m.toString(16).padStart(16, '0')}`;
}

/** Known DRM formats only. */
export function knownFormat(f: number): boolean {
  return formatByFourcc(f) !== undefined;
}
