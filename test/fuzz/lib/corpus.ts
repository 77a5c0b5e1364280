/**
 * The regression corpus (test/fuzz/corpus/): inputs that once broke something, replayed on every
 * run. A unix entry is the exact sendmsg() sequence (bytes and fd kinds); a WebSocket entry the
 * exact messages. Replays are judged by the same oracles as fresh sessions (the spec model on the
 * replay's own log), so an entry keeps meaning something after the bug it found is fixed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FdKind } from './fds.js';
import type { SessionPlan } from './unix-gen.js';

export const CORPUS_DIR = path.resolve(__dirname, '..', 'corpus');

export interface UnixCorpusEntry {
  kind: 'unix';
  /** Why it is here: what it broke, or what it exercises. */
  about: string;
  seed?: number;
  sends: { hex: string; fds: FdKind[] }[];
}

export interface WsCorpusEntry {
  kind: 'ws';
  about: string;
  seed?: number;
  /** Text messages as sent; `{"binary": "<hex>"}` entries are binary messages. */
  messages: (string | { binary: string })[];
  /** Whether "$TOKEN" in the messages stands for the server's real token. */
  token?: boolean;
  /** A known server bug this entry reproduces (ws-fuzz.ts KNOWN_WS_BUGS): reported, not failed, while it does. */
  known?: string;
}

export type CorpusEntry = UnixCorpusEntry | WsCorpusEntry;

export function loadCorpus(kind: 'unix' | 'ws'): { file: string; entry: CorpusEntry }[] {
  const dir = path.join(CORPUS_DIR, kind);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: path.join(dir, f), entry: JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) }));
}

/**
 * Writes a new entry (formatted as `prettier --check` wants); returns its path. The name comes from
 * the content: a rerun that finds the same input does not add a second copy.
 */
export async function saveCorpus(entry: CorpusEntry): Promise<string> {
  const dir = path.join(CORPUS_DIR, entry.kind);
  fs.mkdirSync(dir, { recursive: true });
  const body = JSON.stringify(entry, null, 2);
  let h = 0x811c9dc5;
  for (let i = 0; i < body.length; i++) h = Math.imul(h ^ body.charCodeAt(i), 16777619) >>> 0;
  const file = path.join(dir, `found-${h.toString(16).padStart(8, '0')}.json`);
  const prettier = await import('prettier');
  const options = (await prettier.resolveConfig(file)) ?? {};
  fs.writeFileSync(file, await prettier.format(body, { ...options, filepath: file }));
  return file;
}

/** A fixed plan from a unix entry: the recorded sends, FRAMEs held (nothing reacts). */
export function planFromEntry(entry: UnixCorpusEntry): SessionPlan {
  return {
    seed: entry.seed ?? 1,
    sends: entry.sends.map((s) => ({
      bytes: Buffer.from(s.hex, 'hex'),
      fds: s.fds,
      boundary: true,
      yieldBefore: false,
    })),
    reaction: { release: 0, mutate: 0, fence: 0 },
    lingerMs: 20,
    closeMidMessage: false,
    notes: [entry.about],
  };
}
