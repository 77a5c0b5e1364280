/**
 * `surfacelink demo`, the parent: forks the CLI itself twice (hidden subcommands demo-producer
 * and demo-consumer) so what it shows is real cross-process sharing, relays the consumer's
 * stats to one status line, and stops both cleanly on Ctrl-C, SIGTERM, a failure or the end
 * of --duration.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  counterVerdict,
  formatStages,
  formatStatus,
  formatSummary,
  type ConsumerMessage,
  type StagesSnapshot,
  type StatsSnapshot,
} from '../demo/consumer.js';
import type { ProducerMessage } from '../demo/producer.js';
import { SIGNAL_EXIT, STAGES_EVERY, StatusLine } from './view.js';

export interface DemoOptions {
  width: number;
  height: number;
  fps: number;
  durationS: number | null;
  gl: 'angle' | 'system' | 'cpu';
  /** Port for remote viewers (0: any), or null for none. */
  streamPort: number | null;
}

type Role = 'producer' | 'consumer';
type StopReason = 'duration' | 'failure' | 'SIGINT' | 'SIGTERM';

/** How long a child may take to start, and to exit once told to stop. */
const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;

/** Runs the demo; `entry` is the CLI's own file, forked for the two children. */
export function runDemo(o: DemoOptions, entry: string): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'surfacelink-demo-'));
  const socketPath = path.join(dir, 'demo.sock');
  const status = new StatusLine();
  const children = new Map<Role, ChildProcess>();
  const exited = new Map<Role, Promise<void>>();
  const lastError = new Map<Role, string>();
  const failures: string[] = [];
  let state: 'starting' | 'running' | 'stopping' = 'starting';
  let stats: StatsSnapshot | null = null;
  let presented = 0;
  /** The producer's view of the consumer's frames (present → sent → released). */
  let serverStages: StagesSnapshot | null = null;
  let statsTicks = 0;
  let producerGl = o.gl === 'cpu' ? 'producer drew on the CPU (--gl cpu)' : 'producer GL unknown';
  let consumerGl = o.gl === 'cpu' ? 'consumer GL off (--gl cpu)' : 'consumer GL not reported';
  let durationTimer: NodeJS.Timeout | null = null;
  let stopReason: StopReason | null = null;

  // Whatever happens to this process, its children must not outlive it.
  const killAll = (): void => {
    for (const child of children.values())
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', killAll);

  return new Promise<number>((resolve) => {
    const spawn = (role: Role, args: string[]): ChildProcess => {
      // execArgv is inherited, so this also works when the CLI itself runs under a loader.
      const child = fork(entry, [`demo-${role}`, '--path', socketPath, ...args], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.set(role, child);
      exited.set(
        role,
        new Promise<void>((done) =>
          // 'close' rather than 'exit': it comes after the last IPC message (the totals) was read.
          child.once('close', (code, signal) => {
            done();
            if (state === 'stopping') return;
            /*
             * A signal sent to the whole process group (kill -TERM -pgid, timeout(1)) can end
             * a child before our own handler has run; wait a moment before calling it a
             * failure. The pause also lets the other child report what it saw.
             */
            setTimeout(() => {
              if (stopReason === 'SIGINT' || stopReason === 'SIGTERM') return;
              const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
              const why = lastError.get(role);
              failures.push(`the ${role} (pid ${child.pid}) ${how}${why ? `: ${why}` : ''}`);
              void stop('failure');
            }, 100);
          }),
        ),
      );
      child.on('error', (error) => {
        failures.push(`the ${role} process failed: ${error.message}`);
        void stop('failure');
      });
      return child;
    };

    const onProducer = (m: ProducerMessage): void => {
      switch (m.type) {
        case 'ready':
          if (state !== 'starting' || children.has('consumer')) return;
          producerGl =
            m.rendering.path === 'cpu'
              ? 'producer drew on the CPU'
              : `producer rendered with GL (${m.rendering.path}) on ${m.rendering.renderer}`;
          status.log(`${producerGl}: ${m.rendering.reason}`);
          if (m.viewer)
            status.log(`watch it in a browser: ${m.viewer.url} (codecs: ${m.viewer.codecs}; this host only)`);
          else if (m.viewerError) status.log(`no browser viewer: ${m.viewerError}`);
          spawn('consumer', ['--gl', o.gl]).on('message', onConsumer);
          return;
        case 'stats':
          serverStages = m.stages;
          presented = m.presented;
          return;
        case 'final':
          presented = m.presented;
          return;
        case 'error':
          lastError.set('producer', m.message);
          return;
      }
    };

    const onConsumer = (m: ConsumerMessage): void => {
      switch (m.type) {
        case 'negotiated':
          status.log(`consumer negotiated ${m.mechanism}: ${m.reason}`);
          if (state === 'starting') {
            state = 'running';
            clearTimeout(startTimer);
            if (o.durationS !== null) durationTimer = setTimeout(() => void stop('duration'), o.durationS * 1000);
          }
          return;
        case 'stats':
          stats = m.stats;
          if (state !== 'running') return;
          // Every few seconds, each side's per-stage durations on lines of their own.
          if (m.stats.stages && m.stats.stages.frames > 0 && statsTicks++ % STAGES_EVERY === 0) {
            status.log(formatStages('consumer stages', m.stats.stages));
            if (serverStages && serverStages.frames > 0) status.log(formatStages('server stages', serverStages));
          }
          status.update(formatStatus(m.stats));
          return;
        case 'final':
          stats = m.stats;
          return;
        case 'gl':
          consumerGl =
            m.report.path === 'off'
              ? `consumer GL off (${m.report.reason.split(':')[0]})`
              : `consumer imported and drew with GL (${m.report.path}) on ${m.report.renderer}`;
          status.log(`${consumerGl}: ${m.report.reason}`);
          return;
        case 'warning':
          status.log(`consumer: ${m.message}`, process.stderr);
          return;
        case 'error':
          lastError.set('consumer', m.message);
          return;
      }
    };

    const onSigint = (): void => void stop('SIGINT');
    const onSigterm = (): void => void stop('SIGTERM');

    /** Asks a child to stop, and kills it if it has not exited within the grace period. */
    const stopChild = async (role: Role): Promise<void> => {
      const child = children.get(role);
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send({ type: 'stop' });
      else child.kill('SIGTERM');
      const grace = setTimeout(() => {
        failures.push(
          `the ${role} (pid ${child.pid}) did not exit within ${STOP_GRACE_MS} ms of being told to stop; killed it`,
        );
        child.kill('SIGKILL');
      }, STOP_GRACE_MS);
      await exited.get(role);
      clearTimeout(grace);
    };

    let stopping: Promise<void> | null = null;
    let stopStartedMs = 0;
    const stop = (reason: StopReason): Promise<void> => {
      if (stopping) {
        /*
         * Another Ctrl-C while stopping means stop waiting for anyone. But timeout(1) and
         * `kill -INT -pgid` signal us twice at once (directly and via the process group),
         * so only a signal that comes a while after the first counts.
         */
        if ((reason === 'SIGINT' || reason === 'SIGTERM') && Date.now() - stopStartedMs > 500) killAll();
        return stopping;
      }
      state = 'stopping';
      stopReason = reason;
      stopStartedMs = Date.now();
      stopping = (async () => {
        clearTimeout(startTimer);
        if (durationTimer) clearTimeout(durationTimer);
        // The consumer first, so its totals are from a live stream, not a shutdown.
        await stopChild('consumer');
        await stopChild('producer');
        fs.rmSync(dir, { recursive: true, force: true });
        process.off('SIGINT', onSigint);
        process.off('SIGTERM', onSigterm);
        process.off('exit', killAll);
        resolve(finish(reason));
      })();
      return stopping;
    };

    const finish = (reason: StopReason): number => {
      const s: StatsSnapshot | null = stats;
      const gl = `; ${producerGl}; ${consumerGl}`;
      const summary =
        s && s.total.frames > 0
          ? `${formatSummary(s)}; producer presented ${presented}` +
            (serverStages && serverStages.frames > 0 ? `; ${formatStages('server stages', serverStages)}` : '') +
            gl
          : `no frames received (producer presented ${presented})${gl}`;
      status.finish(`surfacelink demo: ${summary}`);
      for (const f of failures) process.stderr.write(`surfacelink demo: ${f}\n`);
      if (failures.length > 0) return 1;
      const verdict = s ? counterVerdict(s) : 'waiting';
      // The demo's producer always draws the counter, so one that cannot be read is wrong too.
      if (verdict === 'BAD' || verdict === 'unreadable') {
        process.stderr.write(
          'surfacelink demo: the counter read back from the pixels did not always match the frame sequence\n',
        );
        return 1;
      }
      if (reason === 'SIGINT' || reason === 'SIGTERM') return SIGNAL_EXIT[reason];
      if (!s || s.total.frames === 0) {
        process.stderr.write('surfacelink demo: the consumer received no frames\n');
        return 1;
      }
      return 0;
    };

    const startTimer = setTimeout(() => {
      failures.push(`the demo did not start within ${START_TIMEOUT_MS / 1000} s (the consumer never negotiated)`);
      void stop('failure');
    }, START_TIMEOUT_MS);

    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);
    status.log(
      `surfacelink demo: ${o.width}x${o.height} at ${o.fps} fps, producer and consumer in separate processes, ` +
        `socket ${socketPath}`,
    );
    spawn('producer', [
      '--width',
      String(o.width),
      '--height',
      String(o.height),
      '--fps',
      String(o.fps),
      '--gl',
      o.gl,
      ...(o.streamPort === null ? [] : ['--stream-port', String(o.streamPort)]),
    ]).on('message', onProducer);
  });
}
