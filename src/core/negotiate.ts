/**
 * Negotiation as pure functions: protocol version, mechanism (with the reason and every
 * rejection), and session features. No sockets, no native code: the server feeds them what it
 * knows and sends what they return (unit-tested in test/unit/negotiate.test.ts).
 */
import { SurfaceLinkError } from '../errors.js';
import type { FormatSet } from '../format-set.js';
import type { Acceptance, AcceptContext, Mechanism } from '../mechanisms/types.js';
import type { MechanismOffer } from '../protocol/codec.js';

/** A client's offer the server turned down, and why. */
export interface Rejection {
  name: string;
  reason: string;
}

/** The mechanism a client gets. */
export interface MechanismChoice {
  mechanism: Mechanism;
  /** Index of the chosen offer in the client's list. */
  index: number;
  reason: string;
  /** Formats both sides can use (mechanisms that negotiate formats), else null. */
  formats: FormatSet | null;
  /** Extra WELCOME fields the mechanism asked for. */
  welcome: Record<string, unknown> | undefined;
}

/** What the server brings to a choice. */
export interface ServerOffer {
  /** Mechanisms this server serves, by name. */
  served: ReadonlyMap<string, Mechanism>;
  /** Why a mechanism the server does not serve is missing (registry probe, planned, unknown). */
  unavailableReason(name: string): string | undefined;
  context: AcceptContext;
}

/** The highest version both speak, or null. */
export function chooseVersion(
  client: { minVersion: number; maxVersion: number },
  server: { min: number; max: number },
): number | null {
  const version = Math.min(client.maxVersion, server.max);
  return version < Math.max(client.minVersion, server.min) ? null : version;
}

/** Why handles cannot reach this client (it runs on another host), or null. Compares boot ids. */
export function otherHostReason(ours: string | null, theirs: string | null): string | null {
  return ours !== null && theirs !== null && ours !== theirs
    ? `the client runs on another host (boot id ${theirs}, ours ${ours}): handles cannot cross hosts`
    : null;
}

export function ordinal(n: number): string {
  return n === 1 ? '1st' : n === 2 ? '2nd' : n === 3 ? '3rd' : `${n}th`;
}

/**
 * The first of `offers` from index `from` on that the server can serve, in the client's order,
 * with the reason; every offer passed over lands in `rejected` with why. Unless `atHello` (by
 * default: `from` is 0) this is a fallback: mechanisms that may only be chosen at HELLO are passed over.
 */
export function chooseMechanism(
  offers: readonly MechanismOffer[],
  from: number,
  server: ServerOffer,
  otherHost: string | null,
  rejected: Rejection[],
  atHello = from === 0,
): MechanismChoice | null {
  for (let i = from; i < offers.length; i++) {
    const offer = offers[i];
    const mechanism = server.served.get(offer.name);
    const handlesBarred = otherHost !== null && (mechanism === undefined || mechanism.caps.handles);
    if (handlesBarred) {
      rejected.push({ name: offer.name, reason: otherHost });
      continue;
    }
    if (mechanism === undefined) {
      rejected.push({
        name: offer.name,
        reason: server.unavailableReason(offer.name) ?? 'this server was configured without it',
      });
      continue;
    }
    let acceptance: Acceptance;
    try {
      acceptance = mechanism.accept(offer, server.context);
    } catch (error) {
      // A malformed offer is the client's protocol error (E_MALFORMED ends the session, as any bad HELLO does);
      // anything else a mechanism throws only rules that mechanism out.
      if (error instanceof SurfaceLinkError) throw error;
      acceptance = { refused: `the offer's parameters are not usable: ${(error as Error).message}` };
    }
    if (acceptance.refused !== undefined) {
      rejected.push({ name: offer.name, reason: acceptance.refused });
      continue;
    }
    if (!atHello && !mechanism.caps.fallback) {
      rejected.push({ name: offer.name, reason: `${offer.name} is chosen only at HELLO, not as a fallback` });
      continue;
    }
    const skipped = rejected.length ? ` (skipped ${rejected.map((r) => `${r.name}: ${r.reason}`).join('; ')})` : '';
    return {
      mechanism,
      index: i,
      formats: acceptance.formats ?? null,
      welcome: acceptance.welcome,
      reason:
        `${offer.name} is the client's ${ordinal(i + 1)} choice` +
        `${acceptance.summary ?? ' and the server supports it'}${skipped}${acceptance.detail ?? ''}`,
    };
  }
  return null;
}

/** The feature every v1 peer has, implied when a HELLO names none. */
export const IMPLIED_FEATURES: readonly string[] = ['frames.v1'];

/**
 * Session features both sides support, in the client's order. A HELLO without `features`
 * asks for the implied set (and its WELCOME carries no `features` either: the bytes of a v1
 * session without features are unchanged); unknown names are left out, never an error.
 */
export function chooseFeatures(
  requested: readonly string[] | undefined,
  supported: readonly string[],
): { features: string[]; announce: boolean } {
  const wanted = requested ?? IMPLIED_FEATURES;
  return {
    features: wanted.filter((f, i) => supported.includes(f) && wanted.indexOf(f) === i),
    announce: requested !== undefined,
  };
}
