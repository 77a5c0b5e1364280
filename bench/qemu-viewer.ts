/**
 * The viewer bench/qemu-bridge.ts runs beside the bridge: a SurfaceClient in its own process that
 * reads the guest's frame number from each frame's bar (test/qemu/pattern.ts: a few dozen pixels)
 * and records when the frame arrived (Frame.receiveTimeNs, CLOCK_MONOTONIC), then releases it.
 *
 *   node --import tsx bench/qemu-viewer.ts SOCKET   (a forked child: IPC 'arrivals' → [frame, ns][])
 */
import { SurfaceClient } from '../src/index.js';
import { bgrxPicture, readState } from '../test/qemu/pattern.js';

const arrivals: [number, number][] = [];
let frames = 0;
let unreadable = 0;

async function main(): Promise<void> {
  const client = await SurfaceClient.connect({ path: process.argv[2], name: 'bench-qemu-viewer' });
  client.on('frame', (frame) => {
    frames++;
    try {
      const { frame: n } = readState(bgrxPicture(frame.pixels(), frame.width, frame.height, frame.stride));
      if (arrivals.length < 200000) arrivals.push([n, frame.receiveTimeNs]);
    } catch {
      unreadable++;
    } finally {
      frame.release();
    }
  });
  client.on('disconnect', () => process.exit(0));
  process.on('message', () => {
    process.send!({ frames, unreadable, arrivals: arrivals.splice(0) });
  });
  process.send!({ ready: true });
}

main().catch((error) => {
  process.stderr.write(`qemu-viewer: ${(error as Error).message}\n`);
  process.exit(1);
});
