/**
 * Exported objects of a DBusConnection: method handlers per path and interface, and the
 * standard interfaces answered for them (org.freedesktop.DBus.Properties from the exported
 * property values, org.freedesktop.DBus.Peer on every path), with the standard error names.
 */
import * as fs from 'node:fs';
import { SurfaceLinkError, invalidArgument } from '../../../errors.js';
import type { NativeFd } from '../../../native/index.js';
import { Variant } from './marshal.js';
import type { DBusMessage } from './message.js';
import { isValidInterfaceName, isValidMemberName, isValidObjectPath } from './signature.js';

/** Standard error names this connection sends. */
export const DBusErrorName = {
  /** A generic failure (a handler threw something that is not a DBusError). */
  FAILED: 'org.freedesktop.DBus.Error.Failed',
  /** No object is exported at the path. */
  UNKNOWN_OBJECT: 'org.freedesktop.DBus.Error.UnknownObject',
  /** The object does not have the interface. */
  UNKNOWN_INTERFACE: 'org.freedesktop.DBus.Error.UnknownInterface',
  /** The interface does not have the method. */
  UNKNOWN_METHOD: 'org.freedesktop.DBus.Error.UnknownMethod',
  /** The interface does not have the property. */
  UNKNOWN_PROPERTY: 'org.freedesktop.DBus.Error.UnknownProperty',
  /** Properties here are read-only. */
  PROPERTY_READ_ONLY: 'org.freedesktop.DBus.Error.PropertyReadOnly',
  /** The arguments do not have the expected signature. */
  INVALID_ARGS: 'org.freedesktop.DBus.Error.InvalidArgs',
} as const;

/**
 * An ERROR reply: `name` is the D-Bus error name (e.g. org.freedesktop.DBus.Error.UnknownMethod),
 * `message` its text. `code` is always E_UNEXPECTED (the peer refused the call): branch on `name`.
 * Throw one from a method handler to answer with that error name.
 */
export class DBusError extends SurfaceLinkError {
  /** The D-Bus error name. */
  declare name: string;
  /** The error reply's body signature ('s' for the usual message-only errors). */
  readonly signature: string;
  /** The error reply's body (usually `[message]`). */
  readonly body: unknown[];

  /** `name` must be a valid error name (E_INVALID_ARGUMENT otherwise). */
  constructor(name: string, message: string, reply?: { signature: string; body: unknown[] }) {
    if (!isValidInterfaceName(name)) throw invalidArgument('a D-Bus error name', 'like "org.example.Error.X"', name);
    super('E_UNEXPECTED', message);
    this.name = name;
    this.signature = reply?.signature ?? 's';
    this.body = reply?.body ?? [message];
  }
}

/**
 * A method handler's reply. `fds` (optional) fixes the fd order; `h` values in `body` not listed
 * are appended. Fds are borrowed: the reply is written when the handler returns (or its promise
 * settles), so close them after that, e.g. in a setImmediate.
 */
export interface MethodReply {
  /** Body signature. */
  signature: string;
  /** Body values. */
  body: readonly unknown[];
  /** Fds in index order (borrowed). */
  fds?: readonly NativeFd[];
}

/**
 * Handles a method call. It owns `message.fds`. Return the reply (undefined: an empty reply);
 * throw (or reject with) a DBusError to answer with that error, anything else answers
 * org.freedesktop.DBus.Error.Failed. Nothing is sent for calls flagged NO_REPLY_EXPECTED.
 */
export type MethodHandler = (
  message: DBusMessage,
) => MethodReply | undefined | void | Promise<MethodReply | undefined | void>;

/** Property values of one interface: a record, or a function computing it (sync or async). */
export type PropertySource =
  | Readonly<Record<string, Variant>>
  | (() => Readonly<Record<string, Variant>> | Promise<Readonly<Record<string, Variant>>>);

const PROPERTIES = 'org.freedesktop.DBus.Properties';
const PEER = 'org.freedesktop.DBus.Peer';

/** One exported interface. */
interface ExportedInterface {
  /** Handlers by member name. */
  methods: Readonly<Record<string, MethodHandler>>;
  /** What Properties.Get/GetAll answer. */
  properties: PropertySource | undefined;
}

/** The objects one connection exports, and which handler answers a call. */
export class ObjectRegistry {
  private readonly objects = new Map<string, Map<string, ExportedInterface>>();

  /** See DBusConnection.export. E_INVALID_ARGUMENT for bad names or handlers. */
  export(
    path: string,
    interfaceName: string,
    methods: Readonly<Record<string, MethodHandler>>,
    properties?: PropertySource,
  ): void {
    if (!isValidObjectPath(path)) throw invalidArgument('path', 'an object path', path);
    if (!isValidInterfaceName(interfaceName) || interfaceName === PROPERTIES || interfaceName === PEER)
      throw invalidArgument('interfaceName', 'an interface name other than Properties and Peer', interfaceName);
    for (const [member, handler] of Object.entries(methods ?? {})) {
      if (!isValidMemberName(member)) throw invalidArgument('a method name', 'a member name', member);
      if (typeof handler !== 'function') throw invalidArgument(`the handler of ${member}`, 'a function', handler);
    }
    if (properties !== undefined && (properties === null || !['object', 'function'].includes(typeof properties)))
      throw invalidArgument('properties', 'a record of Variants or a function returning one', properties);
    let object = this.objects.get(path);
    if (!object) this.objects.set(path, (object = new Map()));
    object.set(interfaceName, { methods: { ...methods }, properties });
  }

  /** See DBusConnection.unexport. */
  unexport(path: string, interfaceName?: string): void {
    if (interfaceName === undefined) this.objects.delete(path);
    else {
      const object = this.objects.get(path);
      object?.delete(interfaceName);
      if (object?.size === 0) this.objects.delete(path);
    }
  }

  /** The handler for a call, or throws the DBusError to answer with. */
  find(message: DBusMessage): MethodHandler {
    const { path, member } = message;
    const iface = message.interface;
    const peer = (): MethodHandler => {
      if (member === 'Ping') return () => undefined;
      if (member === 'GetMachineId') return machineId;
      throw new DBusError(DBusErrorName.UNKNOWN_METHOD, `${PEER} has no method ${member}`);
    };
    if (iface === PEER) return peer();
    const object = this.objects.get(path!);
    if (iface === undefined) {
      // no interface given: any exported interface with that method, then Peer's
      for (const entry of object?.values() ?? [])
        if (Object.prototype.hasOwnProperty.call(entry.methods, member!)) return entry.methods[member!];
      if (member === 'Ping' || member === 'GetMachineId') return peer();
    }
    if (!object) throw new DBusError(DBusErrorName.UNKNOWN_OBJECT, `no object is exported at ${path}`);
    if (iface === PROPERTIES) return this.propertiesHandler(object, member!);
    if (iface === undefined) throw new DBusError(DBusErrorName.UNKNOWN_METHOD, `${path} has no method ${member}`);
    const entry = object.get(iface);
    if (!entry) throw new DBusError(DBusErrorName.UNKNOWN_INTERFACE, `${path} has no interface ${iface}`);
    if (!Object.prototype.hasOwnProperty.call(entry.methods, member!))
      throw new DBusError(DBusErrorName.UNKNOWN_METHOD, `${iface} at ${path} has no method ${member}`);
    return entry.methods[member!];
  }

  private propertiesHandler(object: Map<string, ExportedInterface>, member: string): MethodHandler {
    const wants = (message: DBusMessage, signature: string): void => {
      if (message.signature !== signature)
        throw new DBusError(DBusErrorName.INVALID_ARGS, `${PROPERTIES}.${member} takes "${signature}"`);
    };
    const entryOf = (name: string): ExportedInterface => {
      const entry = object.get(name);
      if (!entry) throw new DBusError(DBusErrorName.UNKNOWN_INTERFACE, `the object has no interface ${name}`);
      return entry;
    };
    switch (member) {
      case 'Get':
        return async (message) => {
          wants(message, 'ss');
          const [name, property] = message.body as [string, string];
          const values = await propertiesOf(entryOf(name));
          if (!Object.prototype.hasOwnProperty.call(values, property))
            throw new DBusError(DBusErrorName.UNKNOWN_PROPERTY, `${name} has no property ${property}`);
          return { signature: 'v', body: [values[property]] };
        };
      case 'GetAll':
        return async (message) => {
          wants(message, 's');
          const name = message.body[0] as string;
          const entries = name === '' ? [...object.values()] : [entryOf(name)];
          const all = new Map<string, Variant>();
          for (const entry of entries) for (const [k, v] of Object.entries(await propertiesOf(entry))) all.set(k, v);
          return { signature: 'a{sv}', body: [all] };
        };
      case 'Set':
        return async (message) => {
          wants(message, 'ssv');
          const [name, property] = message.body as [string, string];
          const values = await propertiesOf(entryOf(name));
          if (!Object.prototype.hasOwnProperty.call(values, property))
            throw new DBusError(DBusErrorName.UNKNOWN_PROPERTY, `${name} has no property ${property}`);
          throw new DBusError(DBusErrorName.PROPERTY_READ_ONLY, `${name}.${property} is read-only`);
        };
      default:
        throw new DBusError(DBusErrorName.UNKNOWN_METHOD, `${PROPERTIES} has no method ${member}`);
    }
  }
}

async function propertiesOf(entry: ExportedInterface): Promise<Readonly<Record<string, Variant>>> {
  const source = entry.properties;
  if (source === undefined) return {};
  const values = typeof source === 'function' ? await source() : source;
  for (const [k, v] of Object.entries(values ?? {}))
    if (!(v instanceof Variant)) throw new DBusError(DBusErrorName.FAILED, `property ${k} is not a Variant`);
  return values ?? {};
}

function machineId(): MethodReply {
  for (const file of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      const id = fs.readFileSync(file, 'latin1').trim();
      if (/^[0-9a-f]{32}$/.test(id)) return { signature: 's', body: [id] };
    } catch {
      // try the next one
    }
  }
  throw new DBusError(DBusErrorName.FAILED, 'no machine id on this host');
}
