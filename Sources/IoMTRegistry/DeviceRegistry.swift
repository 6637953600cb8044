import Crypto
import IoMTCore
import Synchronization

/// One paired (or explicitly bound) device and the patient its readings belong to.
public struct RegisteredDevice: Hashable, Sendable {
    /// Stable device id: `ble-<identity address, 12 lowercase hex digits>` for Bluetooth LE,
    /// the configured id for serial and simulated devices.
    public var id: String
    /// `ble`, `serial`, `simulated`.
    public var transport: String
    /// Bluetooth: the identity address `AA:BB:CC:DD:EE:FF`.
    public var address: String?
    /// Bluetooth: `public` or `random` (static or resolved identity).
    public var addressType: String?
    /// The profile that serves the device (e.g. `pulse-oximeter`, `contec-cms50-v7`).
    public var profile: String
    public var patientID: String
    public var displayName: String?
    public var manufacturer: String?
    public var model: String?
    public var serialNumber: String?
    public var firmware: String?
    /// When it was paired (Bluetooth), nil for devices that were only bound.
    public var pairedAt: Timestamp?
    /// When the current patient was bound.
    public var boundAt: Timestamp

    public init(id: String, transport: String, address: String? = nil, addressType: String? = nil, profile: String,
                patientID: String, displayName: String? = nil, manufacturer: String? = nil, model: String? = nil,
                serialNumber: String? = nil, firmware: String? = nil, pairedAt: Timestamp? = nil, boundAt: Timestamp) {
        self.id = id
        self.transport = transport
        self.address = address
        self.addressType = addressType
        self.profile = profile
        self.patientID = patientID
        self.displayName = displayName
        self.manufacturer = manufacturer
        self.model = model
        self.serialNumber = serialNumber
        self.firmware = firmware
        self.pairedAt = pairedAt
        self.boundAt = boundAt
    }

    /// The stable id of a Bluetooth LE device: `ble-` and its identity address as 12 lowercase
    /// hex digits (`C0:FF:EE:00:00:01` → `ble-c0ffee000001`). Nil unless `address` is 6 bytes.
    public static func bleID(address: String) -> String? { BluetoothDeviceID.make(address: address) }

    public var json: JSONValue {
        .obj([
            "id": .string(id), "transport": .string(transport), "address": .opt(address),
            "address_type": .opt(addressType), "profile": .string(profile), "patient_id": .string(patientID),
            "display_name": .opt(displayName), "manufacturer": .opt(manufacturer), "model": .opt(model),
            "serial_number": .opt(serialNumber), "firmware": .opt(firmware),
            "paired_at": .opt(pairedAt?.rfc3339), "bound_at": .string(boundAt.rfc3339),
        ])
    }

    /// Reads an entry written by `json`; throws naming the missing or wrong field.
    public init(json v: JSONValue) throws(RegistryError) {
        func text(_ k: String) throws(RegistryError) -> String {
            guard let s = v[k]?.stringValue, !s.isEmpty else { throw RegistryError.invalidEntry(field: k, detail: "a non-empty string is required") }
            return s
        }
        func optional(_ k: String) throws(RegistryError) -> String? {
            guard let x = v[k], !x.isNull else { return nil }
            guard let s = x.stringValue else { throw RegistryError.invalidEntry(field: k, detail: "must be a string or null") }
            return s
        }
        func time(_ k: String) throws(RegistryError) -> Timestamp? {
            guard let s = try optional(k) else { return nil }
            guard let t = Timestamp(rfc3339: s) else { throw RegistryError.invalidEntry(field: k, detail: "not an RFC 3339 time: \(s)") }
            return t
        }
        guard case .object = v else { throw RegistryError.invalidEntry(field: "devices[]", detail: "must be an object") }
        guard let bound = try time("bound_at") else { throw RegistryError.invalidEntry(field: "bound_at", detail: "required") }
        self.init(id: try text("id"), transport: try text("transport"), address: try optional("address"),
                  addressType: try optional("address_type"), profile: try text("profile"), patientID: try text("patient_id"),
                  displayName: try optional("display_name"), manufacturer: try optional("manufacturer"),
                  model: try optional("model"), serialNumber: try optional("serial_number"), firmware: try optional("firmware"),
                  pairedAt: try time("paired_at"), boundAt: bound)
    }
}

public enum RegistryError: Error, Hashable, Sendable, CustomStringConvertible {
    case io(FileError)
    /// The registry file could not be read as a registry; it was moved to `movedTo`.
    case corrupt(path: String, movedTo: String, detail: String)
    case invalidEntry(field: String, detail: String)
    case unknownDevice(String)
    case invalidValue(field: String, detail: String)
    /// A sealed file (issue 8) that cannot be opened: no at-rest key configured, the wrong key,
    /// or a damaged file. Nothing was changed or deleted.
    case sealed(path: String, detail: String)

    public var description: String {
        switch self {
        case .io(let e): "registry: \(e)"
        case let .corrupt(path, movedTo, detail): "the device registry \(path) was corrupt (\(detail)); it was moved to \(movedTo) and an empty registry started: re-pair or re-assign the devices it held"
        case let .invalidEntry(field, detail): "registry entry: \(field): \(detail)"
        case .unknownDevice(let id): "no device \(id) in the registry"
        case let .invalidValue(field, detail): "\(field): \(detail)"
        case let .sealed(path, detail): "\(path): \(detail); nothing was changed or deleted"
        }
    }
}

/// The paired-device registry with patient binding, persisted as `state_dir/registry.json`
/// (`iomt-registry/1`, mode 0600).
///
/// Every change is a read-modify-write under an exclusive `flock` on `registry.json.lock`
/// (so the daemon and a CLI working alone never interleave), written atomically (tmp + fsync
/// + rename + directory fsync): after a crash the file is the old or the new registry. A file
/// that cannot be read as a registry is moved aside (`registry.json.corrupt-<time>`) and an
/// empty registry started; `recoveredFromCorruption` says so, and the daemon logs and audits
/// it. A registry is never reset silently.
///
/// At rest (issue 8): with a `sealingKey` (the agent passes `AtRestKey.subkey("registry")`) the
/// whole file is sealed with AES-256-GCM: `IOMTREG1` then nonce || ciphertext || tag, the file
/// name as associated data. A plaintext registry from before is read and sealed right away (at
/// open, under the lock). A sealed file without a key, or with the wrong one, is an error naming
/// the file (``RegistryError/sealed(path:detail:)``); it is never moved aside or overwritten.
public final class DeviceRegistry: Sendable {
    public static let schema = "iomt-registry/1"
    public let path: String
    public let recoveredFromCorruption: RegistryError?
    private let lockPath: String
    private let cache: Mutex<[RegisteredDevice]>
    private let sealingKey: SymmetricKey?

    /// Whether the file on disk is sealed (always after opening with a key).
    public var isSealed: Bool { sealingKey != nil }

    public init(stateDir: String, clock: any WallClock = SystemWallClock(), sealingKey: SymmetricKey? = nil) throws(RegistryError) {
        path = stateDir + "/registry.json"
        lockPath = path + ".lock"
        self.sealingKey = sealingKey
        do {
            try Files.makeDirectories(stateDir)
        } catch {
            throw .io(error)
        }
        var recovered: RegistryError?
        let path = self.path
        let devices: [RegisteredDevice]
        do {
            devices = try Files.withLock(lockPath) { () throws(RegistryError) -> [RegisteredDevice] in
                do throws(RegistryError) {
                    let (list, plaintext) = try DeviceRegistry.load(path, key: sealingKey)
                    if plaintext, let sealingKey {
                        // Migration: a registry written before the key was configured.
                        let bytes = try DeviceRegistry.sealed(DeviceRegistry.render(list), path: path, key: sealingKey)
                        do throws(FileError) { try Files.writeAtomically(path, bytes) } catch { throw .io(error) }
                    }
                    return list
                } catch {
                    guard case let .invalidEntry(field, detail) = error else { throw error }
                    let stamp = clock.now().rfc3339.filter { $0 != "-" && $0 != ":" }
                    let moved: String
                    do throws(FileError) { moved = try Files.moveAside(path, stamp: stamp) } catch { throw .io(error) }
                    recovered = .corrupt(path: path, movedTo: moved, detail: "\(field): \(detail)")
                    return []
                }
            }
        } catch let e as RegistryError {
            throw e
        } catch let e as FileError {
            throw .io(e)
        } catch {
            throw .invalidValue(field: "registry", detail: "\(error)")
        }
        recoveredFromCorruption = recovered
        cache = Mutex(devices)
    }

    /// Reads the file; an absent file is an empty registry. A `.tmp` left by a crash is ignored.
    /// `plaintext`: the file exists and is not sealed.
    static func load(_ path: String, key: SymmetricKey?) throws(RegistryError) -> (devices: [RegisteredDevice], plaintext: Bool) {
        let raw: [UInt8]?
        do { raw = try Files.read(path) } catch { throw .io(error) }
        guard let raw else { return ([], false) }
        var bytes = raw
        let plaintext = !raw.starts(with: AtRestSealing.registryMagic)
        if !plaintext {
            guard let key else {
                throw .sealed(path: path, detail: "the device registry is sealed and no at-rest key is configured (security.key_file or the systemd credential state-key)")
            }
            guard let opened = AtRestSealing.open(raw.dropFirst(AtRestSealing.registryMagic.count), key: key,
                                                  associatedData: AtRestSealing.registryAssociatedData(path: path)) else {
                throw .sealed(path: path, detail: "the device registry cannot be opened: wrong key (the at-rest key, security.key_file) or a damaged file")
            }
            bytes = opened
        }
        return (try parse(bytes), plaintext)
    }

    /// The file content for `render(_:)` output: sealed under `key`.
    static func sealed(_ plain: [UInt8], path: String, key: SymmetricKey) throws(RegistryError) -> [UInt8] {
        guard let box = AtRestSealing.seal(plain, key: key, associatedData: AtRestSealing.registryAssociatedData(path: path)) else {
            throw .sealed(path: path, detail: "sealing the device registry failed")
        }
        return AtRestSealing.registryMagic + box
    }

    static func parse(_ bytes: [UInt8]) throws(RegistryError) -> [RegisteredDevice] {
        let doc: JSONValue
        do { doc = try JSONValue.parse(bytes) } catch { throw .invalidEntry(field: "(file)", detail: "\(error)") }
        guard doc["schema"]?.stringValue == schema else {
            throw .invalidEntry(field: "schema", detail: "expected \(schema), got \(doc["schema"]?.text ?? "nothing")")
        }
        guard let list = doc["devices"]?.arrayValue else { throw .invalidEntry(field: "devices", detail: "must be a list") }
        var seen = Set<String>()
        return try list.map { (v: JSONValue) throws(RegistryError) -> RegisteredDevice in
            let d = try RegisteredDevice(json: v)
            guard seen.insert(d.id).inserted else { throw .invalidEntry(field: "devices[].id", detail: "\(d.id) is listed twice") }
            return d
        }
    }

    static func render(_ devices: [RegisteredDevice]) -> [UInt8] {
        let doc = JSONValue.obj(["schema": .string(schema), "devices": .array(devices.map(\.json))])
        return doc.bytes + [0x0A]
    }

    /// Every entry, ordered by id.
    public func list() -> [RegisteredDevice] { cache.withLock { $0 } }

    public func device(id: String) -> RegisteredDevice? { cache.withLock { $0.first { $0.id == id } } }

    /// By Bluetooth address (any case, with or without colons) or by id.
    public func device(address: String) -> RegisteredDevice? {
        guard let id = RegisteredDevice.bleID(address: address) else { return device(id: address) }
        return device(id: id)
    }

    /// Devices bound to `patientID`.
    public func devices(patient patientID: String) -> [RegisteredDevice] {
        cache.withLock { $0.filter { $0.patientID == patientID } }
    }

    /// The patient bound to `deviceID`, if any.
    public func patient(of deviceID: String) -> String? { device(id: deviceID)?.patientID }

    /// Re-reads the file (after another process changed it).
    public func reload() throws(RegistryError) {
        let path = self.path
        let key = sealingKey
        let devices: [RegisteredDevice]
        do {
            devices = try Files.withLock(lockPath) { () throws(RegistryError) in try DeviceRegistry.load(path, key: key).devices }
        } catch let e as RegistryError { throw e } catch let e as FileError { throw .io(e) } catch { throw .invalidValue(field: "registry", detail: "\(error)") }
        cache.withLock { $0 = devices }
    }

    /// Adds or replaces the entry with `device.id` (pairing, binding). Returns the previous entry.
    @discardableResult
    public func add(_ device: RegisteredDevice) throws(RegistryError) -> RegisteredDevice? {
        try DeviceRegistry.validate(id: device.id, field: "device")
        try DeviceRegistry.validate(id: device.patientID, field: "patient")
        var previous: RegisteredDevice?
        try mutate { list in
            if let i = list.firstIndex(where: { $0.id == device.id }) {
                previous = list[i]
                list[i] = device
            } else {
                list.append(device)
            }
        }
        return previous
    }

    /// Binds an existing entry to another patient. Returns the previous patient and the entry.
    public func assign(deviceID: String, patientID: String, at now: Timestamp) throws(RegistryError) -> (previousPatient: String, device: RegisteredDevice) {
        try DeviceRegistry.validate(id: patientID, field: "patient")
        var result: (String, RegisteredDevice)?
        try mutate { list in
            guard let i = list.firstIndex(where: { $0.id == deviceID }) else { return }
            let old = list[i].patientID
            list[i].patientID = patientID
            list[i].boundAt = now
            result = (old, list[i])
        }
        guard let result else { throw .unknownDevice(deviceID) }
        return result
    }

    /// Removes the entry (discharge). Returns it.
    @discardableResult
    public func remove(deviceID: String) throws(RegistryError) -> RegisteredDevice {
        var removed: RegisteredDevice?
        try mutate { list in
            if let i = list.firstIndex(where: { $0.id == deviceID }) { removed = list.remove(at: i) }
        }
        guard let removed else { throw .unknownDevice(deviceID) }
        return removed
    }

    private func mutate(_ change: (inout [RegisteredDevice]) -> Void) throws(RegistryError) {
        let path = self.path
        let key = sealingKey
        do {
            try Files.withLock(lockPath) { () throws(RegistryError) in
                var list = try DeviceRegistry.load(path, key: key).devices
                change(&list)
                list.sort { $0.id < $1.id }
                var bytes = DeviceRegistry.render(list)
                if let key { bytes = try DeviceRegistry.sealed(bytes, path: path, key: key) }
                do throws(FileError) { try Files.writeAtomically(path, bytes) } catch { throw .io(error) }
                cache.withLock { $0 = list }
            }
        } catch let e as RegistryError { throw e } catch let e as FileError { throw .io(e) } catch { throw .invalidValue(field: "registry", detail: "\(error)") }
    }

    /// Device and patient ids: 1-64 characters, no control characters, no `/ + #`.
    public static func validate(id: String, field: String) throws(RegistryError) {
        guard !id.isEmpty, id.count <= 64 else { throw .invalidValue(field: field, detail: "must be 1 to 64 characters") }
        for s in id.unicodeScalars where s.value < 0x20 || s.value == 0x7F || s == "/" || s == "+" || s == "#" {
            throw .invalidValue(field: field, detail: "must not contain control characters or / + #")
        }
    }
}
