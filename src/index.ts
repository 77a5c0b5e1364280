/**
 * surfacelink: share frames between processes — zero-copy where the peer can import the
 * handle, shared memory where it cannot, an encoded stream for remote peers. See README.md
 * and docs/. GL import/rendering is `surfacelink/gl`; remote viewers are `surfacelink/stream`.
 */
export {
  SurfaceServer,
  type ServerOptions,
  type ClientInfo,
  type ServerEvents,
  type FrameTap,
  type PoolEvent,
} from './server.js';
export {
  TELEMETRY_WINDOW,
  type StageStats,
  type ServerFrameTelemetry,
  type ClientStageTelemetry,
  type ClientTelemetry,
} from './telemetry.js';
export {
  SurfaceClient,
  type ClientOptions,
  type Negotiation,
  type DisconnectInfo,
  type ClientEvents,
} from './client.js';
export { Frame } from './frame.js';
export {
  MAX_CURSOR_SIDE,
  type InputMode,
  type InputSource,
  type InputEvent,
  type KeyEvent,
  type PointerEvent,
  type MotionEvent,
  type ButtonEvent,
  type ScrollEvent,
  type TouchEvent,
  type CursorImage,
  type CursorState,
} from './input.js';
export {
  SharedSurface,
  SurfaceBuffer,
  type SurfaceOptions,
  type AdoptSurfaceOptions,
  type DmabufSurfaceOptions,
  type ReconfigureOptions,
  type PresentOptions,
  type Orientation,
  type Viewport,
  type PoolStats,
} from './surface.js';
export { allocatorReports, type AllocatorName } from './mechanisms/dmabuf/index.js';
export {
  mechanismReports,
  mechanisms,
  MechanismRegistry,
  ImportRefused,
  isRefusal,
  noCpuAccess,
  type MechanismReport,
} from './mechanisms/index.js';
export type {
  AcceptContext,
  Acceptance,
  AdoptRequest,
  AllocateRequest,
  BackingIdentity,
  BufferExport,
  ConsumerBuffer,
  CourierClient,
  CourierFactory,
  CourierServer,
  CpuAccessor,
  ExternalBacking,
  ExternalDmabuf,
  ExternalMemfd,
  ImplicitFences,
  ImportOptions,
  Mechanism,
  MechanismCaps,
  OfferOptions,
  PeerParams,
  ProbeResult,
  ProducerBacking,
  Refusal,
  SyncKind,
} from './mechanisms/types.js';
export { FormatSet, modifierName } from './format-set.js';
export type {
  ChannelLimits,
  CpuAccess,
  FdKind,
  NativeFd,
  NativeIOSurface,
  NativeNtHandle,
  NtObjectType,
  SendResult,
} from './native/index.js';
export {
  fdHandle,
  ntHandle,
  handleIdentity,
  type OsHandle,
  type BufferKey,
  type NativeHandle,
  type NativeMachPort,
} from './handles.js';
export { SurfaceLinkError, ErrorCode, errorCodeName, type ErrorCodeName } from './errors.js';
export {
  FORMATS,
  MODIFIER_INVALID,
  MODIFIER_LINEAR,
  formatByName,
  formatByFourcc,
  fourcc,
  fourccToString,
  linearLayout,
  type FormatInfo,
  type FormatName,
  type PlaneInfo,
  type PlaneLayout,
} from './formats.js';
export { MessageWriter } from './protocol/codec.js';
export type {
  MechanismOffer,
  PeerInfo,
  PlaneDescriptor,
  Rect,
  ScanoutBody,
  StreamEndpoint,
  WelcomeInfo,
} from './protocol/codec.js';
export {
  defaultSocketPath,
  defaultPipePath,
  defaultAddress,
  availableTransports,
  type Transport,
  type PeerIdentity,
  type AccessPolicy,
  type ConnectOptions,
  type ListenOptions,
  type Listener,
  type MessageChannel,
  type MessageHandler,
} from './transport/index.js';
export type { Logger, LogLevel } from './log.js';
export {
  StreamServer,
  type StreamServerOptions,
  type StreamClientInfo,
  type StreamServerEvents,
  type StreamServerStats,
  type ViewerStats,
} from './stream/server.js';
export {
  RemoteStreamClient,
  type RemoteClientOptions,
  type RemoteWelcome,
  type RemoteFrame,
  type RemoteCursor,
  type RemoteClientEvents,
  type StreamStats,
} from './stream/client.js';
export type { Codec as StreamCodec } from './stream/protocol.js';
export type { StreamTlsOption, StreamTlsPem, StreamCertificateInfo } from './stream/tls.js';
export type { BitrateState } from './stream/bitrate.js';
