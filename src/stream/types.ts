/** The public shapes of the stream server: options, client info, events (docs/remote.md). */
import type { ErrorCodeName } from '../errors.js';
import type { Logger } from '../log.js';
import type { Codec } from './protocol.js';

export interface StreamServerOptions {
  /** Address to bind; default 127.0.0.1 (this host only). */
  host?: string;
  /** Port; default 0 (any free port: read `.port` / `.url`). */
  port?: number;
  /** The token clients must present; default $SURFACELINK_STREAM_TOKEN, else 32 random bytes as hex. */
  token?: string;
  /** Origins (scheme://host:port) allowed besides the server's own. */
  allowOrigins?: string[];
  /** Codecs this server may use; default both. H.264 also needs an encoder (probeH264). */
  codecs?: Codec[];
  /** Frames per second per client, at most; default 30. */
  maxFps?: number;
  /** H.264 target bitrate per client in kbit/s; default 8000. */
  bitrateKbps?: number;
  /** Frames sent and not yet acked, per client; default 2. */
  window?: number;
  /** Folder of the browser viewer; default the package's web/; null serves no pages. */
  webRoot?: string | null;
  /** Most stream clients at once; default 16. */
  maxClients?: number;
  /** zlib level of the tile codec (1–9); default 1. */
  tileLevel?: number;
  /** A client with frames in flight and no ack for this long is disconnected; default 10000 ms. */
  ackTimeoutMs?: number;
  helloTimeoutMs?: number;
  /** Server name sent in `welcome`; default the SurfaceServer's. */
  name?: string;
  logger?: Logger;
}

/** What the viewer last reported about itself (`stats` messages). */
export interface ViewerStats {
  fps?: number;
  latencyP50Ms?: number;
  latencyP99Ms?: number;
  decoded?: number;
  errors?: number;
}

/** A stream client, as `clients` and the events show it. */
export interface StreamClientInfo {
  readonly id: number;
  readonly name: string;
  readonly remoteAddress: string;
  readonly codec: Codec | null;
  readonly reason: string;
  readonly surfaceId: number | null;
  /** GStreamer element encoding for it (H.264), else null. */
  readonly encoder: string | null;
  /** The H.264 encoder's worker process, else null. */
  readonly encoderPid: number | null;
  readonly maxFps: number;
  readonly window: number;
  readonly framesSent: number;
  /** Frames of its surface it never got (latest wins). */
  readonly framesSkipped: number;
  readonly keyframes: number;
  readonly bytesSent: number;
  readonly inFlight: number;
  readonly bufferedAmount: number;
  readonly viewer: ViewerStats | null;
}

export interface StreamServerEvents {
  /** A client said a good hello and got its welcome. */
  client: [StreamClientInfo];
  /** A client left or was disconnected; code E_PEER_CLOSED when it simply went away. */
  clientGone: [StreamClientInfo, { code: ErrorCodeName; message: string }];
}
