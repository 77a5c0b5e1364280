/**
 * A small D-Bus implementation for the QEMU `-display dbus` bridge: marshalling, messages,
 * EXTERNAL authentication (client and a minimal server role) and connections with method calls,
 * exported objects, properties and signals, over the native ByteStream (fd passing included).
 */
export { parseAddress, unixPathOf, type DBusAddressEntry } from './address.js';
export {
  AuthClient,
  AuthServer,
  MAX_AUTH_LINE,
  type AuthClientOptions,
  type AuthProgress,
  type AuthResult,
  type AuthServerOptions,
} from './auth.js';
export {
  DBusConnection,
  type CallOptions,
  type CallResult,
  type DBusConnectionEvents,
  type DBusConnectionOptions,
  type SignalOptions,
} from './connection.js';
export {
  DBusError,
  DBusErrorName,
  ObjectRegistry,
  type MethodHandler,
  type MethodReply,
  type PropertySource,
} from './objects.js';
export { MAX_ARRAY_LENGTH, Reader, Variant, Writer, marshal, unmarshal, type Marshalled } from './marshal.js';
export {
  FIXED_HEADER_SIZE,
  HeaderField,
  MAX_MESSAGE_SIZE,
  MessageFlags,
  MessageFramer,
  MessageType,
  closeAll,
  decodeMessage,
  encodeMessage,
  messageLength,
  type DBusMessage,
  type FramerLimits,
  type OutgoingMessage,
} from './message.js';
export {
  MAX_NESTING,
  MAX_SIGNATURE_LENGTH,
  MAX_TOTAL_NESTING,
  isBasicCode,
  isValidBusName,
  isValidInterfaceName,
  isValidMemberName,
  isValidObjectPath,
  isValidSignature,
  parseSignature,
  parseSingleType,
  type DBusType,
} from './signature.js';
