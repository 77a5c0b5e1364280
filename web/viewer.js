/**
 * The surfacelink browser viewer: connects to the StreamServer that served this page
 * (docs/remote.md), decodes H.264 with WebCodecs or the lossless tile codec with
 * DecompressionStream, draws onto one canvas at the surface's resolution scaled to fit the
 * window, and shows fps, latency, bitrate and codec in an overlay.
 *
 * Keyboard, mouse, wheel and touch on the canvas go to the producer, and its cursor is drawn
 * over the canvas (./input.js); "view only" shows when the server takes no input from us.
 *
 * Plain ES2020 modules (this one, input.js, keymap.js), no dependencies, nothing fetched at run
 * time. The token comes in the URL fragment (#token=…) and is removed from the address bar at once.
 *
 * For tests and benchmarks, window.surfacelinkViewer exposes the state, counters, latency
 * samples, an atomic snapshot of the canvas with the sequence it shows, and hooks that
 * break the decoder on purpose.
 */

import { RemoteInput } from './input.js';
import { EVDEV_KEYS } from './keymap.js';

const SUBPROTOCOL = 'surfacelink.stream.v1';
const HEADER_BYTES = 32;
const KIND_H264 = 1;
const KIND_TILES = 2;
const FLAG_KEY = 1;
const TILE_RECORD_BYTES = 16;
const ENCODING_SOLID = 0;
const ENCODING_RAW = 1;
/** Latency samples kept (a ring): a little over two minutes at 60 fps. */
const SAMPLE_RING = 8192;
/** H.264 chunks submitted and not yet output that the viewer keeps track of. */
const DECODE_RING = 64;
/**
 * Decoded pictures waiting for the canvas while one is being copied (the copy is async); beyond
 * this the oldest is dropped. Each one holds a decoder output buffer.
 */
const PAINT_QUEUE = 2;
/** Pictures painted each way before the viewer keeps the faster way (see paint()). */
const PAINT_PROBE = 8;
const PING_BURST = 5;
const PING_BURST_GAP_MS = 100;
/** Clock samples kept; the offset comes from the one with the lowest round trip. */
const CLOCK_SAMPLES = 8;
/** While waiting for a keyframe, ask again after this long. */
const KEYFRAME_RETRY_MS = 1000;
/**
 * The decoder watchdog: a chunk submitted this long ago with no picture out of the decoder since
 * means the decoder sits on its frames (hardware decoders are known to, until more input comes,
 * which the server's in-flight window never sends): reset it and ask for a keyframe.
 */
const DECODER_WATCHDOG_MS = 1000;
/** Reconnecting after a drop: the first wait, doubled per failed attempt up to the cap, ±20% jitter. */
const RECONNECT_BASE_MS = 500;
const RECONNECT_MAX_MS = 10000;
/** Server errors after which reconnecting cannot help (the same hello would fail the same way). */
const FINAL_ERRORS = new Set([
  'E_AUTH',
  'E_MALFORMED',
  'E_TOO_LARGE',
  'E_UNKNOWN_TYPE',
  'E_INVALID_ARGUMENT',
  'E_NO_MECHANISM',
  'E_UNSUPPORTED_FORMAT',
]);
/** Close codes of those errors, for a close that came without its `error` message. */
const FINAL_CLOSE_CODES = new Set([4400, 4401, 4404, 4406]);
/** Codec strings tried, in order, to decide whether H.264 can be offered at all. */
const H264_PROBES = ['avc1.42E01F', 'avc1.42001F', 'avc1.640028'];

const FORMATS = {
  // Bytes in memory: B, G, R, X|A.
  XRGB8888: { swap: true, alpha: false },
  ARGB8888: { swap: true, alpha: true },
  // Bytes in memory: R, G, B, X|A — already the canvas's order.
  XBGR8888: { swap: false, alpha: false },
  ABGR8888: { swap: false, alpha: true },
};

const ERROR_TEXT = {
  E_AUTH: 'Not authorised: the token is wrong or missing. Open the exact URL the server printed (it ends in #token=…).',
  E_NO_MECHANISM: 'The server and this browser share no codec.',
  E_ENCODER: "The server's encoder failed.",
  E_RELEASE_TIMEOUT: 'The server gave up on this viewer: it stopped acknowledging frames.',
  E_LIMIT: 'The server cut this viewer off: it sent more messages than the server allows.',
};

const CLOSE_TEXT = {
  4400: 'The server rejected a message from this viewer.',
  4401: ERROR_TEXT.E_AUTH,
  4404: 'No such surface.',
  4406: 'The server and this browser share no codec.',
  4408: ERROR_TEXT.E_RELEASE_TIMEOUT,
  4429: ERROR_TEXT.E_LIMIT,
  4500: ERROR_TEXT.E_ENCODER,
};

const now = () => performance.now();

/** The `p` quantile (0..1) of `sorted`, nearest rank; NaN when empty. */
function quantile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** `a` is after `b` in u32 sequence space (wrapping). */
function seqAfter(a, b) {
  return (a - b) >>> 0 !== 0 && (a - b) >>> 0 < 0x80000000;
}

/** A fixed-size ring of float samples; reading copies them out oldest first. */
class SampleRing {
  constructor(size) {
    this.values = new Float64Array(size);
    this.next = 0;
    this.count = 0;
  }

  push(v) {
    this.values[this.next] = v;
    this.next = (this.next + 1) % this.values.length;
    if (this.count < this.values.length) this.count++;
  }

  clear() {
    this.next = 0;
    this.count = 0;
  }

  toArray() {
    const n = this.count;
    const out = new Array(n);
    const start = (this.next - n + this.values.length) % this.values.length;
    for (let i = 0; i < n; i++) out[i] = this.values[(start + i) % this.values.length];
    return out;
  }

  /** The last `n` samples, sorted ascending (for percentiles). */
  sortedTail(n) {
    const k = Math.min(n, this.count);
    const out = new Float64Array(k);
    for (let i = 0; i < k; i++) out[i] = this.values[(this.next - k + i + this.values.length) % this.values.length];
    return out.sort();
  }
}

/**
 * The codec string for the SPS in an Annex B access unit: avc1.PPCCLL from profile_idc,
 * the constraint flags and level_idc, or null when the unit carries no SPS.
 */
function h264CodecFromAnnexB(bytes) {
  for (let i = 0; i + 4 < bytes.length; i++) {
    if (bytes[i] !== 0 || bytes[i + 1] !== 0 || bytes[i + 2] !== 1) continue;
    const nal = i + 3;
    if ((bytes[nal] & 0x1f) !== 7) continue;
    // The three bytes after the NAL header; an emulation-prevention 0x03 after two zeros is skipped.
    const out = [];
    let zeros = 0;
    for (let j = nal + 1; j < bytes.length && out.length < 3; j++) {
      if (zeros >= 2 && bytes[j] === 3) {
        zeros = 0;
        continue;
      }
      zeros = bytes[j] === 0 ? zeros + 1 : 0;
      out.push(bytes[j]);
    }
    if (out.length < 3) return null;
    return (
      'avc1.' +
      out
        .map((b) => b.toString(16).padStart(2, '0'))
        .join('')
        .toUpperCase()
    );
  }
  return null;
}

async function h264Supported() {
  if (typeof VideoDecoder === 'undefined' || typeof EncodedVideoChunk === 'undefined') return false;
  for (const codec of H264_PROBES) {
    try {
      const { supported } = await VideoDecoder.isConfigSupported({ codec, optimizeForLatency: true });
      if (supported) return true;
    } catch {
      // An exception here means this config is not supported; try the next.
    }
  }
  return false;
}

/** Inflates raw DEFLATE (RFC 1951) data. */
async function inflateRaw(bytes) {
  const stream = new DecompressionStream('deflate-raw');
  const writer = stream.writable.getWriter();
  // A corrupt input errors the readable side, which rejects below; these two would only repeat it.
  writer.write(bytes).catch(() => {});
  writer.close().catch(() => {});
  return new Uint8Array(await new Response(stream.readable).arrayBuffer());
}

class Viewer {
  constructor(dom, options) {
    this.dom = dom;
    this.token = options.token;
    this.forcedCodec = options.forcedCodec;
    this.forcedPaint = options.forcedPaint ?? null;
    /** The surface asked for (?surface=N), or undefined: the server's first. */
    this.surfaceId = options.surfaceId;
    /** The codecs sent in `hello`, in preference order. */
    this.offered = [];
    this.state = 'starting';
    this.ws = null;
    this.closedByError = false;
    this.errorCode = null;
    // Reconnecting: attempts since the last welcome, welcomes after the first, the pending timer,
    // and a transient error the server gave before closing (it says why in the next message).
    this.reconnectAttempt = 0;
    this.reconnects = 0;
    this.welcomes = 0;
    this.reconnectTimer = 0;
    this.transientError = null;

    // What the server said in `welcome` / `resize`.
    this.codec = null;
    this.encoder = null;
    this.reason = '';
    this.surface = null;
    this.format = FORMATS.XRGB8888;
    this.width = 0;
    this.height = 0;
    this.window = 0;
    this.bitrateKbps = null;

    // Drawing.
    this.canvas = dom.canvas;
    this.ctx = null;
    this.image = null;
    this.image32 = null;

    // Clock sync: serverMs ≈ performance.now() + clockOffset, NaN until the first pong.
    this.clockOffset = NaN;
    this.rttMs = NaN;
    this.clockSamples = [];

    // Counters.
    this.framesReceived = 0;
    this.framesDrawn = 0;
    this.framesDropped = 0;
    this.errors = 0;
    this.lastError = null;
    this.keyframeRequests = 0;
    this.keyframesReceived = 0;
    this.lastSeq = -1;
    this.canvasSeq = -1;
    this.bytesReceived = 0;
    this.latency = new SampleRing(SAMPLE_RING);
    this.serverDelay = new SampleRing(SAMPLE_RING);
    // Per-stage durations (ms), each on one clock: the server's send → arrival here (needs the
    // clock offset), chunk submitted → picture out of the decoder, and the draw itself.
    this.transitDelay = new SampleRing(SAMPLE_RING);
    this.decodeDelay = new SampleRing(SAMPLE_RING);
    this.drawDelay = new SampleRing(SAMPLE_RING);
    this.fps = 0;
    this.kbps = 0;
    this.p50 = NaN;
    this.p99 = NaN;
    /** Per-stage medians (ms) over the last few seconds, updated once a second by tick(). */
    this.stageP50 = { server: NaN, transit: NaN, decode: NaN, paint: NaN };
    this.tickFrames = 0;
    this.tickBytes = 0;
    this.tickAt = now();
    this.ticks = 0;
    this.timer = 0;

    // H.264.
    this.decoder = null;
    this.decoderCodec = null;
    this.decoderWidth = 0;
    this.decoderHeight = 0;
    this.needKeyframe = true;
    this.keyframeAskedAt = -Infinity;
    this.corruptRemaining = 0;
    this.failuresSinceOutput = 0;
    // Submitted chunks in decode order: their sequences and presentMs, until output or reset.
    this.decodeSeq = new Uint32Array(DECODE_RING);
    this.decodePresent = new Float64Array(DECODE_RING);
    /** When each chunk was submitted (the watchdog looks at the oldest). */
    this.decodeAt = new Float64Array(DECODE_RING);
    this.watchdogResets = 0;
    this.watchdogTimer = 0;
    this.decodeHead = 0;
    this.decodeCount = 0;
    // Putting decoded pictures on the canvas: 'draw' (drawImage) or 'copy' (copyTo + putImageData),
    // or 'probe' while both are timed. Pictures wait in paintQueue while a copy is in flight.
    this.paintMode = this.forcedPaint ?? 'probe';
    this.paintTimes = { draw: [], copy: [] };
    this.paintQueue = [];
    this.painting = false;
    this.paintImage = null;
    this.copySupported = null;

    // Tiles: frames wait here while an earlier one is being inflated, so they apply in order.
    this.tileQueue = [];
    this.tilePumping = false;

    this.onResize = () => this.fit();
    this.input = new RemoteInput(this, {
      stage: dom.stage,
      layer: dom.cursorLayer,
      cursor: dom.cursor,
      status: dom.status,
    });
  }

  async start() {
    const offerH264 = this.forcedCodec !== 'tiles' && (await h264Supported());
    let codecs;
    if (this.forcedCodec === 'tiles') codecs = ['tiles'];
    else if (this.forcedCodec === 'h264') {
      if (!offerH264)
        return this.fail(
          'This browser cannot decode H.264 (no WebCodecs VideoDecoder for avc1, or the page is not a secure ' +
            'context), and ?codec=h264 asks for nothing else.',
        );
      codecs = ['h264'];
    } else codecs = offerH264 ? ['h264', 'tiles'] : ['tiles'];
    this.offered = codecs;

    addEventListener('resize', this.onResize);
    this.input.start();
    this.dom.overlay.addEventListener('click', () => this.dom.overlay.classList.toggle('collapsed'));
    this.connect(codecs);
  }

  connect(codecs) {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    this.state = 'connecting';
    let ws;
    try {
      ws = new WebSocket(`${scheme}://${location.host}/stream`, SUBPROTOCOL);
    } catch (error) {
      return this.fail(`Cannot open the stream: ${error.message}`);
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.closedByError = false;
    this.transientError = null;
    ws.onopen = () => {
      this.state = 'authenticating';
      const hello = { type: 'hello', token: this.token, name: 'browser viewer', codecs };
      if (this.surfaceId !== undefined) hello.surface = this.surfaceId;
      this.send(hello);
    };
    // A socket already replaced (a reconnect) says nothing more.
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      if (typeof event.data === 'string') this.onText(event.data);
      else this.onBinary(event.data);
    };
    ws.onclose = (event) => this.ws === ws && this.onClose(event);
    this.render();
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  // ---- control messages --------------------------------------------------------------

  onText(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      this.noteError('the server sent malformed JSON');
      return;
    }
    switch (m.type) {
      case 'welcome':
        return this.onWelcome(m);
      case 'pong':
        return this.onPong(m);
      case 'resize':
        this.setSurfaceSize(m.width, m.height, m.format);
        this.resetDecoder();
        return;
      case 'encoder':
        // A keyframe follows from the server; until then deltas cannot decode.
        this.noteError(`encoder ${m.state}: ${m.reason}`, false);
        this.needKeyframe = true;
        return;
      case 'cursor':
        return this.input.setCursor(m);
      case 'cursorMove':
        return this.input.moveCursor(m);
      case 'inputMode':
        return this.input.setMode(m.mode);
      case 'warning':
        return this.input.warning(m);
      case 'gone':
        this.showMessage(`The surface was closed${m.reason ? `: ${m.reason}` : ''}.`, false);
        this.closedByError = true;
        this.state = 'gone';
        return;
      case 'error':
        if (!FINAL_ERRORS.has(m.code)) {
          // Transient (a full server, an encoder that failed, …): the close follows, then a reconnect.
          this.transientError = { code: m.code, message: m.message };
          this.noteError(`${m.code}: ${m.message}`);
          return;
        }
        this.closedByError = true;
        this.fail(ERROR_TEXT[m.code] ?? (m.message || 'The server reported an error.'), m.code, m.message);
        return;
      default:
        // Newer servers may add messages; ignoring them keeps this viewer working.
        return;
    }
  }

  onWelcome(m) {
    if (this.welcomes++ > 0) this.reconnects++;
    this.reconnectAttempt = 0;
    this.errorCode = null;
    this.codec = m.codec;
    this.encoder = m.encoder ?? null;
    this.reason = m.reason ?? '';
    this.window = m.window ?? 0;
    this.bitrateKbps = m.bitrateKbps ?? null;
    this.surface = m.surface;
    this.state = 'streaming';
    this.hideMessage();
    this.setSurfaceSize(m.surface.width, m.surface.height, m.surface.format);
    this.input.welcome(m);
    for (let i = 0; i < PING_BURST; i++) setTimeout(() => this.ping(), i * PING_BURST_GAP_MS);
    this.tickAt = now();
    this.timer = setInterval(() => this.tick(), 1000);
    this.watchdogTimer = setInterval(() => this.watchdog(), DECODER_WATCHDOG_MS / 4);
    this.render();
  }

  ping() {
    this.send({ type: 'ping', t: now() });
  }

  onPong(m) {
    const t1 = now();
    const rtt = t1 - m.t;
    if (!(rtt >= 0) || typeof m.serverMs !== 'number') return;
    this.clockSamples.push({ rtt, offset: m.serverMs - (m.t + t1) / 2 });
    if (this.clockSamples.length > CLOCK_SAMPLES) this.clockSamples.shift();
    let best = this.clockSamples[0];
    for (const s of this.clockSamples) if (s.rtt < best.rtt) best = s;
    this.clockOffset = best.offset;
    this.rttMs = best.rtt;
  }

  onClose(event) {
    clearInterval(this.timer);
    clearInterval(this.watchdogTimer);
    this.timer = 0;
    this.watchdogTimer = 0;
    this.input.closed();
    this.closeDecoder();
    this.needKeyframe = true;
    // Frames of the old connection still queued for inflating or painting are of no use now.
    this.tileQueue.length = 0;
    for (const p of this.paintQueue.splice(0)) p.frame.close();
    if (this.closedByError) {
      if (this.state !== 'gone') this.state = 'error';
    } else if (FINAL_CLOSE_CODES.has(event.code)) {
      this.fail(CLOSE_TEXT[event.code], event.code === 4401 ? 'E_AUTH' : `close ${event.code}`, event.reason);
    } else {
      this.scheduleReconnect(event);
    }
    this.render();
  }

  /**
   * The connection dropped, or the server closed it for a reason that may pass (it restarted, it
   * was full, an encoder failed): try again, with the same token, after a backoff.
   */
  scheduleReconnect(event) {
    const attempt = ++this.reconnectAttempt;
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** (attempt - 1));
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    const why = this.transientError
      ? `${ERROR_TEXT[this.transientError.code] ?? this.transientError.message} (${this.transientError.code})`
      : this.welcomes === 0 && attempt === 1
        ? `Cannot reach the stream server (WebSocket close ${event.code})`
        : `Disconnected (WebSocket close ${event.code}${event.reason ? `: ${event.reason}` : ''})`;
    this.state = 'reconnecting';
    this.showMessage(`${why}. Reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${attempt})…`, false);
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = 0;
      // Server clock samples belong to the old connection (the server may be a new process).
      this.clockSamples = [];
      this.clockOffset = NaN;
      this.connect(this.offered);
    }, delay);
  }

  // ---- frames ------------------------------------------------------------------------

  onBinary(buffer) {
    if (buffer.byteLength < HEADER_BYTES) {
      this.noteError('a frame shorter than its header');
      return;
    }
    const view = new DataView(buffer);
    const kind = view.getUint8(0);
    const key = (view.getUint8(1) & FLAG_KEY) !== 0;
    const seq = view.getUint32(4, true);
    const presentMs = view.getFloat64(8, true);
    const sendMs = view.getFloat64(16, true);
    const width = view.getUint32(24, true);
    const height = view.getUint32(28, true);
    this.framesReceived++;
    this.bytesReceived += buffer.byteLength;
    this.tickBytes += buffer.byteLength;
    this.lastSeq = seq;
    if (key) this.keyframesReceived++;
    this.serverDelay.push(sendMs - presentMs);
    if (Number.isFinite(this.clockOffset)) this.transitDelay.push(now() + this.clockOffset - sendMs);
    if (width !== this.width || height !== this.height) this.setSurfaceSize(width, height, null);
    if (kind === KIND_H264) this.onH264(buffer, key, seq, presentMs);
    else if (kind === KIND_TILES) this.onTiles(buffer, key, seq, presentMs);
    else {
      this.noteError(`a frame of unknown kind ${kind}`);
      this.ack(seq, false);
    }
  }

  /** Frees the frame's slot in the server's window; `drawn` adds when (server clock) it was drawn. */
  ack(seq, drawn) {
    if (drawn && Number.isFinite(this.clockOffset))
      this.send({ type: 'ack', seq, decodedMs: now() + this.clockOffset });
    else this.send({ type: 'ack', seq });
  }

  /** Bookkeeping once `seq`'s pixels are on the canvas. */
  drawn(seq, presentMs) {
    this.canvasSeq = seq;
    this.framesDrawn++;
    this.tickFrames++;
    if (Number.isFinite(this.clockOffset)) this.latency.push(now() + this.clockOffset - presentMs);
    this.ack(seq, true);
  }

  requestKeyframe() {
    this.keyframeRequests++;
    this.keyframeAskedAt = now();
    this.send({ type: 'keyframe' });
  }

  // ---- H.264 -------------------------------------------------------------------------

  onH264(buffer, key, seq, presentMs) {
    const data = new Uint8Array(buffer, HEADER_BYTES);
    if (key) {
      const codec = h264CodecFromAnnexB(data);
      if (!codec) {
        this.noteError('a keyframe without an SPS');
        this.dropH264(seq);
        return;
      }
      if (!this.configure(codec)) {
        this.dropH264(seq);
        return;
      }
      this.needKeyframe = false;
    } else if (this.needKeyframe || !this.decoder) {
      this.dropH264(seq);
      return;
    }
    let chunkData = data;
    if (this.corruptRemaining > 0) {
      this.corruptRemaining--;
      chunkData = this.corrupt(data);
    }
    const slot = (this.decodeHead + this.decodeCount) % DECODE_RING;
    if (this.decodeCount === DECODE_RING) {
      // The decoder sits on more chunks than the server's window allows: it is wedged.
      this.decoderFailed(new Error('the decoder holds too many chunks'));
      this.dropH264(seq);
      return;
    }
    this.decodeSeq[slot] = seq;
    this.decodePresent[slot] = presentMs;
    this.decodeAt[slot] = now();
    this.decodeCount++;
    try {
      this.decoder.decode(new EncodedVideoChunk({ type: key ? 'key' : 'delta', timestamp: seq, data: chunkData }));
    } catch (error) {
      this.decoderFailed(error);
    }
  }

  /**
   * Every quarter of DECODER_WATCHDOG_MS while streaming: a decoder holding a chunk that long with
   * nothing out is reset (its chunks acked as dropped, so the server's window opens) and a keyframe
   * asked for.
   */
  watchdog() {
    if (this.decodeCount === 0 || !this.decoder) return;
    const waited = now() - this.decodeAt[this.decodeHead];
    if (waited < DECODER_WATCHDOG_MS) return;
    this.watchdogResets++;
    this.noteError(`decoder stalled: ${this.decodeCount} chunks in, no picture for ${Math.round(waited)} ms`);
    this.resetDecoder();
    this.requestKeyframe();
  }

  /** A frame that cannot be decoded now: acked so the window stays open, and a keyframe asked for. */
  dropH264(seq) {
    this.framesDropped++;
    this.ack(seq, false);
    if (now() - this.keyframeAskedAt >= KEYFRAME_RETRY_MS) this.requestKeyframe();
  }

  /** (Re)configures the decoder for a keyframe's codec and size; false when that failed. */
  configure(codec) {
    if (
      this.decoder &&
      this.decoder.state === 'configured' &&
      codec === this.decoderCodec &&
      this.decoderWidth === this.width &&
      this.decoderHeight === this.height
    )
      return true;
    try {
      if (!this.decoder || this.decoder.state === 'closed') {
        // Callbacks from a decoder already replaced (a late error or frame) must not touch its successor.
        const decoder = new VideoDecoder({
          output: (frame) => (this.decoder === decoder ? this.onVideoFrame(frame) : frame.close()),
          error: (error) => this.decoder === decoder && this.decoderFailed(error),
        });
        this.decoder = decoder;
      } else {
        // Chunks still inside the old configuration will not come out: release their slots.
        this.decoder.reset();
        this.flushDecodeRing();
      }
      // No description: the chunks are Annex B, SPS and PPS in band.
      this.decoder.configure({ codec, codedWidth: this.width, codedHeight: this.height, optimizeForLatency: true });
      this.decoderCodec = codec;
      this.decoderWidth = this.width;
      this.decoderHeight = this.height;
      return true;
    } catch (error) {
      this.decoderFailed(error);
      return false;
    }
  }

  onVideoFrame(frame) {
    let queued = false;
    try {
      const seq = frame.timestamp >>> 0;
      // Output is in decode order (no B-frames): everything submitted before it is done too.
      let presentMs = NaN;
      let submittedAt = NaN;
      while (this.decodeCount > 0) {
        const s = this.decodeSeq[this.decodeHead];
        if (seqAfter(s, seq)) break;
        const p = this.decodePresent[this.decodeHead];
        submittedAt = this.decodeAt[this.decodeHead];
        this.decodeHead = (this.decodeHead + 1) % DECODE_RING;
        this.decodeCount--;
        if (s === seq) {
          presentMs = p;
          break;
        }
        this.framesDropped++;
        this.ack(s, false);
      }
      if (Number.isNaN(presentMs)) return; // from before a reset: its slot was already released
      const outAt = now();
      this.decodeDelay.push(outAt - submittedAt);
      this.failuresSinceOutput = 0;
      if (this.paintQueue.length === PAINT_QUEUE) {
        const old = this.paintQueue.shift();
        old.frame.close();
        this.framesDropped++;
        this.ack(old.seq, false);
      }
      this.paintQueue.push({ frame, seq, presentMs, outAt });
      queued = true;
      if (!this.painting) this.pumpPaint();
    } finally {
      if (!queued) frame.close();
    }
  }

  /** Paints queued pictures in order, one at a time. */
  async pumpPaint() {
    this.painting = true;
    while (this.paintQueue.length > 0) {
      const { frame, seq, presentMs, outAt } = this.paintQueue.shift();
      try {
        await this.paint(frame);
        this.drawDelay.push(now() - outAt);
        this.drawn(seq, presentMs);
      } catch (error) {
        this.framesDropped++;
        this.noteError(`drawing a decoded picture: ${error && error.message ? error.message : error}`);
        this.ack(seq, false);
      } finally {
        frame.close();
      }
    }
    this.painting = false;
  }

  /**
   * Puts one decoded picture on the canvas, by whichever of two ways is cheaper here. drawImage
   * is nearly free on a GPU-backed canvas, but a software canvas converts each picture through a
   * freshly allocated RGBA buffer: 20–30 ms per 1080p picture on a machine where page faults are
   * slow. VideoFrame.copyTo(…, {format: 'RGBA'}) into one reused ImageData and putImageData costs
   * ~2 ms there. The first PAINT_PROBE pictures each way are timed (on the page's own thread:
   * what delays the next picture) and the faster way is kept; `?paint=draw|copy` forces one.
   */
  async paint(frame) {
    const width = this.canvas.width;
    const height = this.canvas.height;
    let mode = this.paintMode;
    if (mode === 'probe') mode = this.paintTimes.draw.length <= this.paintTimes.copy.length ? 'draw' : 'copy';
    if (mode === 'copy' && !this.canCopy(frame, width, height)) mode = 'draw';
    const t0 = now();
    if (mode === 'draw') {
      this.ctx.drawImage(frame, 0, 0, width, height);
    } else {
      if (!this.paintImage || this.paintImage.width !== width || this.paintImage.height !== height)
        this.paintImage = new ImageData(width, height);
      await frame.copyTo(this.paintImage.data, { format: 'RGBA' });
      // The canvas may have been replaced (a resize) while the copy ran.
      if (this.canvas.width !== width || this.canvas.height !== height) throw new Error('the surface was resized');
      this.ctx.putImageData(this.paintImage, 0, 0);
    }
    if (this.paintMode === 'probe') this.probePaint(mode, now() - t0);
  }

  /** Whether copyTo can write this picture as RGBA at the canvas's size (else drawImage scales it). */
  canCopy(frame, width, height) {
    if (frame.visibleRect.width !== width || frame.visibleRect.height !== height) return false;
    if (this.copySupported === null) {
      // A browser without RGB conversion in copyTo ignores `format` and would size I420 instead.
      try {
        this.copySupported = frame.allocationSize({ format: 'RGBA' }) === width * height * 4;
      } catch {
        this.copySupported = false;
      }
      if (!this.copySupported && this.paintMode === 'probe') this.paintMode = 'draw';
    }
    return this.copySupported;
  }

  probePaint(mode, ms) {
    const times = this.paintTimes;
    times[mode].push(ms);
    if (times.draw.length < PAINT_PROBE || (times.copy.length < PAINT_PROBE && this.copySupported !== false)) return;
    this.paintMode = times.copy.length && median(times.copy) < median(times.draw) ? 'copy' : 'draw';
  }

  /** The decoder errored (or was made to): start over from the next keyframe. */
  decoderFailed(error) {
    this.failuresSinceOutput++;
    this.noteError(`decoder: ${error && error.message ? error.message : error}`);
    this.closeDecoder();
    this.needKeyframe = true;
    if (this.failuresSinceOutput >= 5) {
      this.showMessage(`The H.264 decoder keeps failing (${this.decoderCodec ?? 'no codec'}): ${this.lastError}`, true);
    }
    this.requestKeyframe();
  }

  closeDecoder() {
    if (this.decoder && this.decoder.state !== 'closed') {
      try {
        this.decoder.close();
      } catch {
        // Already closed by the browser after an error.
      }
    }
    this.decoder = null;
    this.decoderCodec = null;
    this.flushDecodeRing();
  }

  resetDecoder() {
    this.closeDecoder();
    this.needKeyframe = true;
  }

  /** Acks every submitted chunk that will now never come out of the decoder. */
  flushDecodeRing() {
    while (this.decodeCount > 0) {
      this.framesDropped++;
      this.ack(this.decodeSeq[this.decodeHead], false);
      this.decodeHead = (this.decodeHead + 1) % DECODE_RING;
      this.decodeCount--;
    }
  }

  /** Test hook's damage: keeps the start codes and NAL headers, scrambles the slice data. */
  corrupt(data) {
    const out = data.slice();
    let nal = -1;
    for (let i = 0; i + 3 < out.length; i++) {
      if (out[i] === 0 && out[i + 1] === 0 && out[i + 2] === 1) {
        nal = i + 3;
        i += 3;
        continue;
      }
      const type = nal >= 0 ? out[nal] & 0x1f : 0;
      if ((type === 1 || type === 5) && i > nal + 1) out[i] = (out[i] * 167 + 13 + i) & 0xff || 0xa5;
    }
    return out;
  }

  // ---- tiles -------------------------------------------------------------------------

  onTiles(buffer, key, seq, presentMs) {
    this.tileQueue.push({ buffer, key, seq, presentMs, at: now() });
    if (!this.tilePumping) this.pumpTiles();
  }

  async pumpTiles() {
    this.tilePumping = true;
    while (this.tileQueue.length > 0) {
      const job = this.tileQueue.shift();
      try {
        await this.applyTiles(job);
      } catch (error) {
        this.noteError(`tiles: ${error && error.message ? error.message : error}`);
        this.ack(job.seq, false);
        this.framesDropped++;
        // Pixels outside what was applied are now unknown: ask for a full refresh.
        if (now() - this.keyframeAskedAt >= KEYFRAME_RETRY_MS / 4) this.requestKeyframe();
      }
    }
    this.tilePumping = false;
  }

  async applyTiles({ buffer, seq, presentMs, at }) {
    const view = new DataView(buffer, HEADER_BYTES);
    if (view.byteLength < 8) throw new Error('tile frame shorter than its counts');
    const count = view.getUint32(0, true);
    const compressed = view.getUint32(4, true);
    const recordsEnd = 8 + count * TILE_RECORD_BYTES;
    if (recordsEnd + compressed !== view.byteLength)
      throw new Error(
        `tile frame of ${view.byteLength} bytes does not hold ${count} records and ${compressed} compressed bytes`,
      );
    let rawBytes = 0;
    for (let r = 8; r < recordsEnd; r += TILE_RECORD_BYTES) {
      const x = view.getUint16(r, true);
      const y = view.getUint16(r + 2, true);
      const w = view.getUint16(r + 4, true);
      const h = view.getUint16(r + 6, true);
      if (x + w > this.width || y + h > this.height)
        throw new Error(`tile ${x},${y} ${w}x${h} outside the ${this.width}x${this.height} surface`);
      const encoding = view.getUint8(r + 8);
      if (encoding === ENCODING_RAW) rawBytes += w * h * 4;
      else if (encoding !== ENCODING_SOLID) throw new Error(`unknown tile encoding ${encoding}`);
    }
    let raw = null;
    if (compressed > 0) {
      raw = await inflateRaw(new Uint8Array(buffer, HEADER_BYTES + recordsEnd, compressed));
      if (raw.byteLength !== rawBytes)
        throw new Error(`tiles inflate to ${raw.byteLength} bytes, expected ${rawBytes}`);
    } else if (rawBytes > 0) throw new Error('raw tiles but no compressed data');
    // The surface may have been resized while this frame was inflating; such a frame is stale.
    if (!this.image) throw new Error('no surface yet');
    // Tiles' "decode" is the wait in the queue and the inflate; "paint" applying and putting them.
    const decodedAt = now();
    this.decodeDelay.push(decodedAt - at);
    const src32 = raw && new Uint32Array(raw.buffer, raw.byteOffset, raw.byteLength >> 2);
    const full = count > 0 && this.coversSurface(view, recordsEnd);
    let offset = 0;
    for (let r = 8; r < recordsEnd; r += TILE_RECORD_BYTES) {
      const x = view.getUint16(r, true);
      const y = view.getUint16(r + 2, true);
      const w = view.getUint16(r + 4, true);
      const h = view.getUint16(r + 6, true);
      if (view.getUint8(r + 8) === ENCODING_SOLID) this.fillTile(x, y, w, h, view.getUint32(r + 12, true));
      else {
        this.copyTile(x, y, w, h, src32, offset);
        offset += w * h;
      }
      if (!full) this.ctx.putImageData(this.image, 0, 0, x, y, w, h);
    }
    if (full) this.ctx.putImageData(this.image, 0, 0);
    this.drawDelay.push(now() - decodedAt);
    this.drawn(seq, presentMs);
  }

  /** Whether the records cover the whole surface (a full refresh): then one blit beats hundreds. */
  coversSurface(view, recordsEnd) {
    let area = 0;
    for (let r = 8; r < recordsEnd; r += TILE_RECORD_BYTES)
      area += view.getUint16(r + 4, true) * view.getUint16(r + 6, true);
    return area >= this.width * this.height;
  }

  /** A surface pixel (memory order, read as a little-endian u32) → canvas RGBA (as a little-endian u32). */
  toRgba(v) {
    if (this.format.swap) v = (v & 0xff00ff00) | ((v >>> 16) & 0xff) | ((v & 0xff) << 16);
    return this.format.alpha ? v >>> 0 : (v | 0xff000000) >>> 0;
  }

  fillTile(x, y, w, h, value) {
    const rgba = this.toRgba(value);
    const stride = this.width;
    for (let row = y; row < y + h; row++) this.image32.fill(rgba, row * stride + x, row * stride + x + w);
  }

  copyTile(x, y, w, h, src32, offset) {
    const dst = this.image32;
    const stride = this.width;
    const { swap, alpha } = this.format;
    for (let row = 0; row < h; row++) {
      let d = (y + row) * stride + x;
      let s = offset + row * w;
      const end = s + w;
      if (!swap && alpha) {
        dst.set(src32.subarray(s, end), d);
        continue;
      }
      for (; s < end; s++, d++) {
        let v = src32[s];
        if (swap) v = (v & 0xff00ff00) | ((v >>> 16) & 0xff) | ((v & 0xff) << 16);
        dst[d] = alpha ? v : v | 0xff000000;
      }
    }
  }

  // ---- canvas and overlay ------------------------------------------------------------

  /** A new size (and format, when known): the canvas is recreated, so its context's options can follow the format. */
  setSurfaceSize(width, height, format) {
    if (format && FORMATS[format]) this.format = FORMATS[format];
    if (width === this.width && height === this.height && this.ctx && !format) return;
    this.width = width;
    this.height = height;
    const canvas = document.createElement('canvas');
    canvas.id = this.canvas.id;
    canvas.setAttribute('aria-label', this.canvas.getAttribute('aria-label') || 'remote surface');
    canvas.width = width;
    canvas.height = height;
    const old = this.canvas;
    old.replaceWith(canvas);
    this.canvas = canvas;
    this.input.canvasReplaced(old, canvas);
    // Tiles read back exactly only from a CPU-backed canvas; H.264 frames draw faster on the GPU's.
    this.ctx = canvas.getContext('2d', { alpha: this.format.alpha, willReadFrequently: this.codec === 'tiles' });
    this.image = this.codec === 'tiles' ? new ImageData(width, height) : null;
    this.image32 = this.image && new Uint32Array(this.image.data.buffer);
    this.canvasSeq = -1;
    // Pixels outside later damage are unknown until a full refresh.
    this.needKeyframe = true;
    this.fit();
  }

  /** Scales the canvas (CSS only) to the largest size that fits the window, aspect ratio kept. */
  fit() {
    if (!this.width || !this.height) return;
    const scale = Math.min(innerWidth / this.width, innerHeight / this.height);
    this.canvas.style.width = `${Math.max(1, Math.floor(this.width * scale))}px`;
    this.canvas.style.height = `${Math.max(1, Math.floor(this.height * scale))}px`;
    this.input.layout();
  }

  /** Once a second: rates, percentiles, the `stats` message, clock pings, the overlay. */
  tick() {
    const t = now();
    const seconds = (t - this.tickAt) / 1000;
    this.tickAt = t;
    this.fps = seconds > 0 ? this.tickFrames / seconds : 0;
    this.kbps = seconds > 0 ? (this.tickBytes * 8) / 1000 / seconds : 0;
    this.tickFrames = 0;
    this.tickBytes = 0;
    const recentCount = Math.max(60, Math.ceil(this.fps * 5));
    const recent = this.latency.sortedTail(recentCount);
    this.p50 = quantile(recent, 0.5);
    this.p99 = quantile(recent, 0.99);
    const stage = (ring) => quantile(ring.sortedTail(recentCount), 0.5);
    this.stageP50 = {
      server: stage(this.serverDelay),
      transit: stage(this.transitDelay),
      decode: stage(this.decodeDelay),
      paint: stage(this.drawDelay),
    };
    const stats = { type: 'stats', fps: round(this.fps, 2), decoded: this.framesDrawn, errors: this.errors };
    if (Number.isFinite(this.p50)) {
      stats.latencyP50Ms = round(this.p50, 3);
      stats.latencyP99Ms = round(this.p99, 3);
    }
    if (Number.isFinite(this.stageP50.transit)) stats.transitP50Ms = round(this.stageP50.transit, 3);
    if (Number.isFinite(this.stageP50.decode)) stats.decodeP50Ms = round(this.stageP50.decode, 3);
    if (Number.isFinite(this.stageP50.paint)) stats.paintP50Ms = round(this.stageP50.paint, 3);
    this.send(stats);
    if (++this.ticks % 2 === 0) this.ping();
    this.render();
  }

  render() {
    const o = this.dom.overlay;
    if (this.state !== 'streaming') {
      // Still on the way (starting, connecting, authenticating), or ended (error, closed, gone).
      o.textContent = this.state.endsWith('ing') ? `${this.state}…` : this.state;
      return;
    }
    const ms = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : '–');
    o.textContent = [
      `${this.codec}${this.encoder ? ` · ${this.encoder}` : ''} · ${this.width}×${this.height}`,
      `fps ${this.fps.toFixed(1)}   drawn ${this.framesDrawn}   dropped ${this.framesDropped}`,
      `latency p50 ${ms(this.p50)}   p99 ${ms(this.p99)}`,
      `  server ${ms(this.stageP50.server)} · transit ${ms(this.stageP50.transit)} · ` +
        `decode ${ms(this.stageP50.decode)} · paint ${ms(this.stageP50.paint)}`,
      `bitrate ${Math.round(this.kbps).toLocaleString()} kb/s` +
        `${this.bitrateKbps ? ` (target ${this.bitrateKbps})` : ''}`,
      `clock rtt ${ms(this.rttMs)}${this.codec === 'h264' ? `   paint ${this.paintMode}` : ''}` +
        `${this.errors ? `   errors ${this.errors}` : ''}`,
    ].join('\n');
  }

  noteError(text, count = true) {
    if (count) this.errors++;
    this.lastError = text;
  }

  fail(text, code, detail) {
    this.state = 'error';
    this.errorCode = code ?? null;
    this.noteError(detail ? `${code}: ${detail}` : text);
    this.showMessage(text, true, code, detail);
    this.render();
  }

  showMessage(text, isError, code, detail) {
    const m = this.dom.message;
    m.replaceChildren(document.createTextNode(text));
    if (code) {
      const c = document.createElement('code');
      c.textContent = detail && detail !== text ? `${code} — ${detail}` : code;
      m.append(document.createElement('br'), c);
    }
    m.classList.toggle('error', isError);
    m.hidden = false;
  }

  hideMessage() {
    this.dom.message.hidden = true;
  }

  // ---- what tests and benchmarks see -------------------------------------------------

  stats() {
    return {
      state: this.state,
      codec: this.codec,
      encoder: this.encoder,
      reason: this.reason,
      offered: this.offered,
      width: this.width,
      height: this.height,
      format: this.surface ? this.surface.format : null,
      framesReceived: this.framesReceived,
      framesDrawn: this.framesDrawn,
      framesDropped: this.framesDropped,
      errors: this.errors,
      lastError: this.lastError,
      errorCode: this.errorCode,
      keyframeRequests: this.keyframeRequests,
      keyframesReceived: this.keyframesReceived,
      watchdogResets: this.watchdogResets,
      paintMode: this.paintMode,
      paintProbeMs: { draw: median(this.paintTimes.draw), copy: median(this.paintTimes.copy) },
      reconnects: this.reconnects,
      reconnectAttempt: this.reconnectAttempt,
      secureContext: window.isSecureContext,
      lastSeq: this.lastSeq,
      canvasSeq: this.canvasSeq,
      bytesReceived: this.bytesReceived,
      fps: this.fps,
      kbps: this.kbps,
      latencyP50Ms: this.p50,
      latencyP99Ms: this.p99,
      latencySamples: this.latency.count,
      clockOffsetMs: this.clockOffset,
      clockSynced: this.clockSamples.length > 0,
      rttMs: this.rttMs,
      message: this.dom.message.hidden ? null : this.dom.message.textContent,
    };
  }

  /**
   * The canvas's pixels (RGBA, base64) and the sequence they show, read in one go so no
   * frame can land between the two. `rect` defaults to the whole surface.
   */
  snapshot(rect) {
    const r = rect ?? { x: 0, y: 0, width: this.width, height: this.height };
    const seq = this.canvasSeq;
    const bytes = new Uint8Array(this.ctx.getImageData(r.x, r.y, r.width, r.height).data.buffer);
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000)
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return { seq, x: r.x, y: r.y, width: r.width, height: r.height, rgba: btoa(binary) };
  }

  /** The canvas's RGBA at each point, with the sequence shown, read together. */
  sample(points) {
    const seq = this.canvasSeq;
    const colours = points.map(([x, y]) => Array.from(this.ctx.getImageData(x, y, 1, 1).data));
    return { seq, colours };
  }
}

/** The median of an array of numbers, or null for none. */
function median(values) {
  return values.length ? [...values].sort((a, b) => a - b)[values.length >> 1] : null;
}

function round(v, digits) {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function boot() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('token') ?? '';
  // The token leaves the address bar (and history) before anything else happens.
  if (location.hash) history.replaceState(history.state, '', location.pathname + location.search);
  const query = new URLSearchParams(location.search);
  const forced = query.get('codec');
  const paint = query.get('paint');
  const surface = query.has('surface') ? Number(query.get('surface')) : NaN;
  const dom = {
    stage: document.getElementById('stage'),
    canvas: document.getElementById('screen'),
    cursorLayer: document.getElementById('cursor-layer'),
    cursor: document.getElementById('cursor'),
    status: document.getElementById('input-status'),
    overlay: document.getElementById('overlay'),
    message: document.getElementById('message'),
  };
  const viewer = new Viewer(dom, {
    token,
    forcedCodec: forced === 'tiles' || forced === 'h264' ? forced : null,
    forcedPaint: paint === 'draw' || paint === 'copy' ? paint : null,
    surfaceId: Number.isInteger(surface) && surface >= 0 ? surface : undefined,
  });
  window.surfacelinkViewer = {
    get state() {
      return viewer.state;
    },
    stats: () => viewer.stats(),
    snapshot: (rect) => viewer.snapshot(rect),
    sample: (points) => viewer.sample(points),
    /** Latency samples (ms, producer present → drawn), oldest first; `clear` starts afresh. */
    latencySamples: (clear = false) => {
      const out = viewer.latency.toArray();
      if (clear) viewer.latency.clear();
      return out;
    },
    /** Server-side delay samples (present → queued for sending), oldest first. */
    serverDelaySamples: (clear = false) => {
      const out = viewer.serverDelay.toArray();
      if (clear) viewer.serverDelay.clear();
      return out;
    },
    /**
     * Per-stage samples (ms), oldest first: `transit` (server send → arrival, server clock),
     * `decode` (H.264: chunk submitted → picture out; tiles: arrival → inflated), `draw` (picture
     * out → on the canvas, queueing included; tiles: applied and put).
     */
    stageSamples: (clear = false) => {
      const rings = { transit: viewer.transitDelay, decode: viewer.decodeDelay, draw: viewer.drawDelay };
      const out = {};
      for (const [name, ring] of Object.entries(rings)) {
        out[name] = ring.toArray();
        if (clear) ring.clear();
      }
      return out;
    },
    /** Scrambles the slice data of the next `n` H.264 chunks (a decoder that errors on them recovers). */
    corruptNext: (n = 1) => {
      viewer.corruptRemaining = n;
    },
    /** Acts as if the decoder had errored: reset, drop until a keyframe, ask for one. */
    failDecoder: () => viewer.decoderFailed(new Error('failed on request (test hook)')),
    requestKeyframe: () => viewer.requestKeyframe(),
    /** Input and cursor state: allowed, mode, captured, locked, keys held, messages sent, the overlay's place. */
    input: () => viewer.input.state(),
    /** The cursor overlay's pixels (RGBA, base64). */
    cursorPixels: () => viewer.input.cursorPixels(),
    /** KeyboardEvent.code → evdev code, as sent. */
    keyTable: () => ({ ...EVDEV_KEYS }),
  };
  // A new token pasted into this tab's address bar is a same-document navigation: start over with it.
  addEventListener('hashchange', () => {
    if (new URLSearchParams(location.hash.slice(1)).has('token')) location.reload();
  });
  viewer.start().catch((error) => viewer.fail(`The viewer failed to start: ${error.message}`));
}

boot();
