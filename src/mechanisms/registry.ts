/**
 * MechanismRegistry: the mechanisms this build knows, in preference order, each probed once
 * per process with the reason it is (not) available; `surfacelink doctor` prints exactly these
 * reports, and each skip is logged with its reason the first time a list of available
 * mechanisms is asked for. Adding a mechanism is one `register()` line in ./index.ts.
 */
import type { Logger } from '../log.js';
import type { ExternalBacking, Mechanism, ProbeResult } from './types.js';

/** A mechanism's name, availability and why: what `doctor` shows. */
export interface MechanismReport extends ProbeResult {
  /** The mechanism's versioned name, e.g. 'shm.v1'. */
  name: string;
}

/**
 * The mechanisms a process knows, in preference order, with their probes cached. The process-wide
 * one is `mechanisms`; `register()` adds one.
 */
export class MechanismRegistry {
  private readonly list: Mechanism[] = [];
  private readonly planned = new Map<string, string>();
  private readonly probes = new Map<string, ProbeResult>();
  private skipsLogged = false;

  /** Adds a mechanism after those already registered (later = less preferred). */
  register(mechanism: Mechanism): this {
    if (this.get(mechanism.name)) throw new Error(`mechanism ${mechanism.name} registered twice`);
    this.list.push(mechanism);
    return this;
  }

  /** A mechanism the protocol names but this build does not implement: reported, never chosen. */
  plan(name: string, reason: string): this {
    this.planned.set(name, reason);
    return this;
  }

  /** The registered mechanism called `name`, available or not. */
  get(name: string): Mechanism | undefined {
    return this.list.find((m) => m.name === name);
  }

  /** Every registered mechanism, most preferred first. */
  all(): readonly Mechanism[] {
    return this.list;
  }

  /** The probe of one mechanism, computed once per process (probing allocates a little). */
  probe(mechanism: Mechanism): ProbeResult {
    let r = this.probes.get(mechanism.name);
    if (!r) {
      try {
        r = mechanism.probe();
      } catch (error) {
        r = { available: false, reason: `its probe failed: ${(error as Error).message.split('\n')[0]}` };
      }
      this.probes.set(mechanism.name, r);
    }
    return r;
  }

  /** The mechanisms that work here, most preferred first; the first call logs each skip and why. */
  available(logger?: Logger): Mechanism[] {
    const usable = this.list.filter((m) => this.probe(m).available);
    if (logger && !this.skipsLogged) {
      this.skipsLogged = true;
      for (const m of this.list)
        if (!usable.includes(m)) logger('info', `mechanism ${m.name} skipped: ${this.probe(m).reason}`);
    }
    return usable;
  }

  /** Why `name` cannot be used here, or undefined if it can. */
  unavailableReason(name: string): string | undefined {
    const m = this.get(name);
    if (m) {
      const r = this.probe(m);
      return r.available ? undefined : r.reason;
    }
    return this.planned.get(name) ?? 'unknown mechanism';
  }

  /** The first mechanism that adopts this kind of external buffer here, or why none does. */
  adopterFor(kind: ExternalBacking['kind']): Mechanism | string {
    const why: string[] = [];
    for (const m of this.list) {
      if (!m.adopts?.includes(kind) || !m.adopt) continue;
      const r = m.canAdopt ? m.canAdopt() : this.probe(m);
      if (r.available) return m;
      why.push(`${m.name}: ${r.reason}`);
    }
    return why.length ? why.join('; ') : `no mechanism in this build adopts ${kind} buffers`;
  }

  /** Every mechanism with its probe, then the planned ones. */
  reports(): MechanismReport[] {
    const reports: MechanismReport[] = this.list.map((m) => {
      const p = this.probe(m);
      // Works here but is served only where a server names it: say so beside why it works.
      return {
        name: m.name,
        ...p,
        ...(p.available && m.explicitOnly ? { reason: `${p.reason}. ${m.explicitOnly}` } : {}),
      };
    });
    for (const [name, reason] of this.planned) reports.push({ name, available: false, reason });
    return reports;
  }
}
