/**
 * When a stream session may send its next frame: the client's frame-rate cap (`maxFps`) and, for tiles, its
 * byte budget (`maxBitrateKbps`), as docs/remote.md §3 describes them. Arithmetic on the caller's clock only,
 * so the rule is tested on made-up timelines (test/unit/pacer.test.ts) rather than on a machine's timers.
 */

/**
 * How far above a client's maxFps sends may go. A producer "at 30 fps" is rarely at exactly 30.000 (Node's
 * 33 ms timers give 30.3): held to the exact rate, each of its frames would wait a little longer than the one
 * before, a sawtooth averaging half a period of latency. 5% lets any producer at the nominal rate through
 * undelayed; one clearly faster is still paced.
 */
export const FPS_TOLERANCE = 1.05;

export class SendPacer {
  /** The grid point the next send is due at (ms, the caller's clock); sends may come a quarter period early. */
  private nextAllowedMs = 0;

  /**
   * 0 when a frame may go at `now` (the grid then advances by one period), otherwise how many ms until it may.
   * Sends keep to a grid of 1/(maxFps · FPS_TOLERANCE); a send may come a quarter period before its grid point,
   * and the grid never runs more than one period behind the clock (a bucket of two frames). So a producer
   * presenting at maxFps with timer jitter is never held back, and one late frame does not hold back the
   * ones after it: when the grid was restarted at the late frame, a producer only a little faster than the
   * grid took dozens of frames to catch up, each of them delayed (the sawtooth FPS_TOLERANCE is there to
   * avoid). Over n sends the rate is at most maxFps · FPS_TOLERANCE · n / (n − 1¼).
   */
  admit(now: number, maxFps: number): number {
    const period = 1000 / (maxFps * FPS_TOLERANCE);
    const wait = this.nextAllowedMs - period / 4 - now;
    if (wait > 0) return wait;
    this.nextAllowedMs = Math.max(this.nextAllowedMs, now - period) + period;
    return 0;
  }

  /** A frame of `bytes` went out at `now` under a budget of `kbps` (0: none): the next waits for its bits to drain. */
  charge(now: number, bytes: number, kbps: number): void {
    if (kbps > 0) this.nextAllowedMs = Math.max(this.nextAllowedMs, now + (bytes * 8) / kbps);
  }
}
