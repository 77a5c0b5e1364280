/**
 * Which H.264 encoders this machine has: the GStreamer worker is run once in probe mode (each
 * hardware encoder present must encode a frame to count), hardware first, x264enc last.
 */
import { spawn } from 'node:child_process';
import { WORKER_SCRIPT, workerPython } from './gst-worker.js';
import type { H264Candidate, H264Probe } from './h264.js';

const PROBE_TIMEOUT_MS = 60000;
let probeCache: { python: string; result: Promise<H264Probe> } | null = null;

/**
 * Which H.264 encoders this machine can use, hardware first, and whether the decoder exists.
 * Runs the worker once (each hardware encoder present must encode a frame to count) and caches
 * the answer per Python; `refresh` probes again. Never rejects: a missing Python, PyGObject or
 * GStreamer comes back as `encoder: null` with the reason.
 */
export function probeH264(options: { refresh?: boolean } = {}): Promise<H264Probe> {
  const python = workerPython();
  if (!options.refresh && probeCache && probeCache.python === python) return probeCache.result;
  const result = runProbe(python);
  probeCache = { python, result };
  return result;
}

interface WorkerProbe {
  python?: string;
  gstreamer?: string | null;
  candidates?: H264Candidate[];
  decoder?: boolean;
  missing?: string[];
  error?: string;
}

function unavailable(
  python: string | null,
  reason: string,
  gstreamer: string | null = null,
  candidates: H264Candidate[] = [],
): H264Probe {
  return { encoder: null, hardware: false, decoder: false, python, gstreamer, reason, candidates };
}

function runProbe(python: string): Promise<H264Probe> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let child;
    try {
      child = spawn(python, [WORKER_SCRIPT, 'probe'], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      resolve(unavailable(null, `cannot run ${python}: ${(error as Error).message}`));
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
    timer.unref();
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = error.code === 'ENOENT' ? 'not found' : error.message;
      resolve(
        unavailable(
          null,
          `cannot run ${python}: ${why} (set SURFACELINK_PYTHON to a Python 3 with PyGObject and GStreamer 1.x)`,
        ),
      );
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let parsed: WorkerProbe;
      try {
        parsed = JSON.parse(stdout) as WorkerProbe;
      } catch {
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        resolve(
          unavailable(
            null,
            `the GStreamer probe ` +
              `(${python} ${WORKER_SCRIPT}) ${how}: ${stderr.trim().split('\n').slice(-2).join(' | ') || 'no output'}`,
          ),
        );
        return;
      }
      const py = parsed.python ?? python;
      const gst = parsed.gstreamer ?? null;
      if (parsed.error) return resolve(unavailable(py, parsed.error, gst));
      const candidates = parsed.candidates ?? [];
      if (parsed.missing?.length)
        return resolve(
          unavailable(py, `GStreamer base plugins missing: ${parsed.missing.join(', ')}`, gst, candidates),
        );
      const chosen = candidates.find((c) => c.usable) ?? null;
      const skipped = candidates.filter(
        (c) => c !== chosen && c.reason !== 'not installed' && candidates.indexOf(c) < candidates.indexOf(chosen!),
      );
      const reason = chosen
        ? `${chosen.element} (${chosen.hardware ? 'hardware' : 'software'})` +
          (skipped.length
            ? `; skipped ${skipped.map((c) => `${c.element}: ${c.reason}`).join('; ')}`
            : chosen.hardware
              ? ''
              : '; no hardware H.264 encoder installed')
        : `no usable H.264 encoder: ${candidates.map((c) => `${c.element}: ${c.reason}`).join('; ')}`;
      resolve({
        encoder: chosen?.element ?? null,
        hardware: chosen?.hardware ?? false,
        decoder: parsed.decoder ?? false,
        python: py,
        gstreamer: gst,
        reason,
        candidates,
      });
    });
  });
}
