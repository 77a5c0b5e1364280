/**
 * The machine's own stalls on one CPU, seen by a witness pinned there, for tests that judge a
 * producer's present intervals (test/integration/chaos.test.ts).
 *
 * On this kind of machine (a VM with 2 vCPUs) a vCPU is now and then not run for tens to hundreds
 * of ms, and the guest cannot see it: no steal time, no run-queue wait — a thread whose timer was
 * due simply wakes late. A witness that does nothing but sleep 5 ms at a time on the same CPU as
 * the producer (bench/native/stall_witness.c, C: no collector, no event loop) wakes late by the
 * same amount; its lateness beyond its own CPU time and run-queue wait is the machine's. Work the
 * producer does on that CPU makes the witness wait on the run queue, which the witness subtracts:
 * so the producer's own stalls are never counted as the machine's (checked by injecting a busy
 * stall into the producer: the test still fails).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './helpers.js';

/** One late wake-up of the witness, CLOCK_MONOTONIC ms (process.hrtime's clock), and the part no CPU use explains. */
export interface MachineStall {
  startMs: number;
  endMs: number;
  unexplainedMs: number;
}

/** At most this many stalls are kept (a witness on a machine that stalls all the time says so by the count). */
const MAX_STALLS = 10000;

/** Pins every thread of `pid` to `cpu` (taskset -a -p); threads started later inherit it. */
export function pinToCpu(pid: number, cpu: number): void {
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

export class MachineWitness {
  readonly stalls: MachineStall[] = [];
  dropped = 0;
  private constructor(private readonly child: ChildProcess) {
    let rest = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop()!;
      for (const line of lines) {
        const m = /^stall (\S+) (\S+) (\S+)$/.exec(line);
        if (!m) continue;
        if (this.stalls.length >= MAX_STALLS) this.dropped++;
        else this.stalls.push({ startMs: Number(m[1]), endMs: Number(m[2]), unexplainedMs: Number(m[3]) });
      }
    });
  }

  /**
   * Compiles the witness into `dir` with cc ($CC) and starts it pinned to `cpu`. Returns why not
   * (no compiler, no taskset) instead of throwing: the caller decides whether that is allowed.
   */
  static start(cpu: number, dir: string): MachineWitness | string {
    const exe = path.join(dir, 'stall_witness');
    try {
      if (!fs.existsSync(exe))
        execFileSync(
          process.env.CC ?? 'cc',
          ['-O2', '-o', exe, path.join(ROOT, 'bench', 'native', 'stall_witness.c')],
          { stdio: 'pipe' },
        );
    } catch (error) {
      return `the witness (bench/native/stall_witness.c) did not compile: ${(error as Error).message.split('\n')[0]}`;
    }
    try {
      execFileSync('taskset', ['-c', String(cpu), 'true'], { stdio: 'ignore' });
    } catch (error) {
      return `taskset -c ${cpu} failed: ${(error as Error).message.split('\n')[0]}`;
    }
    const child = spawn('taskset', ['-c', String(cpu), exe, '3600', 'each'], { stdio: ['ignore', 'pipe', 'ignore'] });
    return new MachineWitness(child);
  }

  /**
   * The machine's stall time inside [fromMs, toMs] (CLOCK_MONOTONIC): each late wake-up counts its
   * unexplained part, at most as much of it as overlaps the span.
   */
  within(fromMs: number, toMs: number): number {
    let sum = 0;
    for (const s of this.stalls) {
      const overlap = Math.min(toMs, s.endMs) - Math.max(fromMs, s.startMs);
      if (overlap > 0) sum += Math.min(overlap, s.unexplainedMs);
    }
    return Math.min(sum, toMs - fromMs);
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}
