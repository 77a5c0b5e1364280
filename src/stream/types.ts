/** The public shapes of the stream server: options, client info, events (docs/remote.md). */
import type { BitrateState } from './bitrate.js';
import type { StreamTlsOption } from './tls.js';
import type { ErrorCodeName } from '../errors.js';
import type { Logger } from '../log.js';
import type { Codec } from './protocol.js';

/** How `StreamServer.start()` listens, authenticates and paces its clients (defaults in docs/remote.md). */
export interface StreamServerOptions {
  /** Address to bind; default 127.0.0.1 (this host only). */
  host?: string;
  /** Port; default 0 (any free port: read `.port` / `.url`). */
  port?: number;
  /**
   * Serve HTTPS and WSS (docs/remote.md §2.2): `{ cert, key }` (PEM) or `'self-signed'` (a
   * certificate made at start for every address of this server; `certificate.fingerprint256` is
   * what users compare). Browsers give WebCodecs (H.264) only to secure contexts, which plain http
   * is only on localhost: a viewer on another machine needs this. Default: plain HTTP.
   */
  tls?: StreamTlsOption;
  /**
   * The token clients must present for full access (frames and input); default
   * $SURFACELINK_STREAM_TOKEN, else 32 random bytes as hex.
   */
  token?: string;
  /**
   * A second token that gives frames and the cursor but no input (view only): its clients' input is
   * refused with E_PERMISSION, once, then dropped. Default none; at least 16 characters, not `token`.
   */
  viewToken?: string;
  /** Messages per second a client may send, in bursts of up to as many; more is E_LIMIT (close 4429). Default 1000. */
  maxMessageRate?: number;
  /** Origins (scheme://host:port) allowed besides the server's own. */
  allowOrigins?: string[];
  /** Codecs this server may use; default both. H.264 also needs an encoder (probeH264). */
  codecs?: Codec[];
  /** Frames per second per client, at most; default 30. */
  maxFps?: number;
  /** H.264 target bitrate per client in kbit/s; default 8000. */
  bitrateKbps?: number;
  /**
   * How H.264 encoders get frames (docs/remote.md §6.3): 'shared' (default) — the encoder's worker
   * maps the producer's buffer and reads it in place, held until it has (Linux; a frame whose buffer
   * cannot be shared is copied instead); 'copy' — every frame copied out and written through a pipe.
   */
  h264Input?: 'shared' | 'copy';
  /**
   * H.264: the bitrate follows what each client's connection drains (docs/remote.md §5.1): down at
   * once to 85% of the acked rate when its window keeps stalling, up 15% per 3 s clear, never over
   * `bitrateKbps` (or the client's `maxBitrateKbps`). Default true; false keeps the fixed target.
   */
  adaptiveBitrate?: boolean;
  /** Frames sent and not yet acked, per client; default 2. */
  window?: number;
  /** Folder of the browser viewer; default the package's web/; null serves no pages. */
  webRoot?: string | null;
  /** Most stream clients at once (past a good hello; pending connections are bounded apart); default 16. */
  maxClients?: number;
  /** zlib level of the tile codec (1–9); default 1. */
  tileLevel?: number;
  /** A client with frames in flight and no ack for this long is disconnected; default 10000 ms. */
  ackTimeoutMs?: number;
  /** A client that has not sent its hello by then is disconnected (E_TIMEOUT); default 2000 ms. */
  helloTimeoutMs?: number;
  /**
   * Connections still waiting for their hello from one address (IPv6: one /64); another is refused
   * with HTTP 429. Default 8. They never take a `maxClients` slot.
   */
  maxPendingPerAddress?: number;
  /** Connections still waiting for their hello, all addresses; another is refused with HTTP 503. Default 64. */
  maxPending?: number;
  /** Server name sent in `welcome`; default the SurfaceServer's. */
  name?: string;
  /** Where log lines go; default warnings and errors to stderr. */
  logger?: Logger;
}

/** A StreamServer's connections and what its connection budgets refused (docs/remote.md §2.1). */
export interface StreamServerStats {
  /** Connections that have not yet said a good hello (they hold no viewer slot). */
  readonly pending: number;
  /** Clients past a good hello: the ones `maxClients` counts. */
  readonly authenticated: number;
  /** Upgrades refused (HTTP 429) because their address had `maxPendingPerAddress` connections pending. */
  readonly refusedPerAddress: number;
  /** Upgrades refused (HTTP 503) because `maxPending` connections were pending. */
  readonly refusedPending: number;
  /** Upgrades refused (HTTP 503) or hellos refused (E_LIMIT) because `maxClients` clients were connected. */
  readonly refusedClients: number;
  /** Connections closed because they sent no hello within `helloTimeoutMs` (E_TIMEOUT). */
  readonly helloTimeouts: number;
}

/** What the viewer last reported about itself (`stats` messages). */
export interface ViewerStats {
  /** Frames drawn in the last second. */
  fps?: number;
  /** Median latency, present on the server → drawn, in ms. */
  latencyP50Ms?: number;
  /** 99th-percentile latency, in ms. */
  latencyP99Ms?: number;
  /** Frames decoded since it connected. */
  decoded?: number;
  /** Frames that failed to decode. */
  errors?: number;
  /** Median of the server's send → arrival at the viewer (server clock, via the viewer's offset), ms. */
  transitP50Ms?: number;
  /** Median of a frame handed to the viewer's decoder → its picture out, ms. */
  decodeP50Ms?: number;
  /** Median of a picture out of the decoder → on the viewer's screen (queueing included), ms. */
  paintP50Ms?: number;
}

/** A stream client, as `clients` and the events show it. */
export interface StreamClientInfo {
  /** Unique per StreamServer. */
  readonly id: number;
  /** The name it gave in its hello. */
  readonly name: string;
  /** Its IP address, as the socket reports it. */
  readonly remoteAddress: string;
  /** The codec chosen for it (null before its welcome). */
  readonly codec: Codec | null;
  /** Why that codec, in words. */
  readonly reason: string;
  /** The surface it watches (null before its welcome). */
  readonly surfaceId: number | null;
  /** GStreamer element encoding for it (H.264), else null. */
  readonly encoder: string | null;
  /** The H.264 encoder's worker process, else null. */
  readonly encoderPid: number | null;
  /** Its frame cap: the smaller of the server's and its own (`hello.maxFps`, clamped to 1…240). */
  readonly maxFps: number;
  /** The byte budget it asked for (`hello.maxBitrateKbps`, clamped to 100…1,000,000 kbit/s); null if none. */
  readonly maxBitrateKbps: number | null;
  /** Frames it may have in flight (sent, not yet acked). */
  readonly window: number;
  /** Frames sent to it. */
  readonly framesSent: number;
  /** Frames of its surface it never got (latest wins). */
  readonly framesSkipped: number;
  /** Of those, keyframes (H.264) or full refreshes (tiles). */
  readonly keyframes: number;
  /** Bytes of frames sent to it, headers included. */
  readonly bytesSent: number;
  /** Frames sent and not yet acked. */
  readonly inFlight: number;
  /** Bytes queued in its socket, not yet sent. */
  readonly bufferedAmount: number;
  /** What it last reported about itself (null until its first `stats`). */
  readonly viewer: ViewerStats | null;
  /** Whether it may send input: false for a client of the view-only token (and before its hello). */
  readonly input: boolean;
  /** Input events it sent that reached the producer (SurfaceServer 'input'). */
  readonly inputEvents: number;
  /**
   * H.264: how the newest frame reached its encoder — 'shared' (the worker read the producer's
   * buffer in place) or 'copy' (copied out of it, then written through a pipe); null for tiles or
   * before the first frame.
   */
  readonly h264Input: 'shared' | 'copy' | null;
  /** H.264: copies of that frame's picture out of the producer's memory: 0 (shared) or 1 (copy); null as above. */
  readonly copiesPerFrame: number | null;
  /** H.264: why that frame was copied (copy input asked for, a bottom-up buffer, …); null when shared. */
  readonly h264InputReason: string | null;
  /** H.264: frames handed to its encoders as the producer's shared buffers. */
  readonly framesShared: number;
  /** H.264: frames handed to its encoders as copies. */
  readonly framesCopied: number;
  /** H.264: the encoder's target now, kbit/s (adaptive: what its connection drains; else the cap); null for tiles. */
  readonly targetBitrateKbps: number | null;
  /** H.264 with `adaptiveBitrate`: the acked rate over the last second and how often the target moved; else null. */
  readonly bitrate: BitrateState | null;
}

/** StreamServer's events and their arguments. */
export interface StreamServerEvents {
  /** A client said a good hello and got its welcome. */
  client: [StreamClientInfo];
  /** A client left or was disconnected; code E_PEER_CLOSED when it simply went away. */
  clientGone: [
    StreamClientInfo,
    {
      /** Stable error code (docs/remote.md §3). */
      code: ErrorCodeName;
      /** The same, for people. */
      message: string;
    },
  ];
}
