/**
 * surfacelink/stream: remote viewers. StreamServer serves a SurfaceServer's surfaces to browsers
 * and other remote peers over WebSocket (lossless tiles, H.264 through GStreamer);
 * RemoteStreamClient is the Node viewer. The wire protocol is docs/remote.md.
 */
export {
  StreamServer,
  type StreamServerOptions,
  type StreamClientInfo,
  type StreamServerEvents,
  type StreamServerStats,
  type ViewerStats,
} from './server.js';
export {
  RemoteStreamClient,
  parseStreamUrl,
  type RemoteClientOptions,
  type RemoteWelcome,
  type RemoteFrame,
  type RemoteCursor,
  type RemoteClientEvents,
  type StreamStats,
} from './client.js';
export type { Codec as StreamCodec } from './protocol.js';
export type { StreamTlsOption, StreamTlsPem, StreamCertificateInfo } from './tls.js';
export type { BitrateState } from './bitrate.js';
