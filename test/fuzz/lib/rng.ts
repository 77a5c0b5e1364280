/** A small seeded PRNG (mulberry32) so every fuzz session can be regenerated from its seed. */
export class Rng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of items) total += w;
    let r = this.next() * total;
    for (const [w, v] of items) {
      r -= w;
      if (r < 0) return v;
    }
    return items[items.length - 1][1];
  }

  /** A u32 that is often on an edge (0, 1, 2^31, 2^32-1, small, near limits). */
  edgeU32(): number {
    return (
      this.weighted<() => number>([
        [3, () => 0],
        [3, () => 1],
        [2, () => 0xffffffff],
        [2, () => 0x80000000],
        [2, () => 0x7fffffff],
        [4, () => this.int(64)],
        [2, () => 65535 + this.range(-2, 2)],
        [4, () => this.int(0x100000000)],
      ])() >>> 0
    );
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  /** A new independent generator derived from this one. */
  fork(): Rng {
    return new Rng(this.int(0x100000000));
  }
}
