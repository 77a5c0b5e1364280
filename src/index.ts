/**
 * surfacelink: share frames between processes — zero-copy where the peer can import the
 * handle, shared memory where it cannot. See README.md and docs/.
 */
export { SurfaceServer, type ServerOptions, type ClientInfo, type ServerEvents, type FrameTap } from './server.js';
export { SurfaceClient, Frame, type ClientOptions, type Negotiation, type DisconnectInfo, type ClientEvents } from './client.js';
export { SharedSurface, SurfaceBuffer, type SurfaceOptions, type PresentOptions, type DmabufSurfaceOptions } from './surface.js';
export { allocatorReports, type AllocatorName, type ExternalDmabuf } from './backends/dmabuf.js';
export { FormatSet, modifierName } from './format-set.js';
export type { NativeFd } from './native.js';
export { SurfaceLinkError, ErrorCode, errorCodeName, type ErrorCodeName } from './errors.js';
export { FORMATS, MODIFIER_INVALID, MODIFIER_LINEAR, formatByName, formatByFourcc, fourcc, fourccToString, linearLayout, type FormatInfo, type FormatName, type PlaneLayout } from './formats.js';
export { mechanismReports, type MechanismReport } from './backends/index.js';
export type { BackingIdentity } from './backends/types.js';
export type { Rect } from './protocol/codec.js';
export { defaultSocketPath } from './transport/unix.js';
export type { Logger, LogLevel } from './log.js';
export { StreamServer, type StreamServerOptions, type StreamClientInfo, type StreamServerEvents, type ViewerStats } from './stream/server.js';
export { RemoteStreamClient, type RemoteClientOptions, type RemoteWelcome, type RemoteFrame, type RemoteClientEvents } from './stream/client.js';
export type { Codec as StreamCodec } from './stream/protocol.js';
