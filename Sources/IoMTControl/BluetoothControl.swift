import IoMTCore
import IoMTRegistry

/// One advertiser seen while scanning, as the `scan` command shows it.
public struct ScanRow: Hashable, Sendable {
    /// `AA:BB:CC:DD:EE:FF`.
    public var address: String
    /// `public` or `random`.
    public var addressType: String
    public var name: String?
    public var rssi: Int?
    /// Advertised service UUIDs (16-bit as `0x1822`, 128-bit in full).
    public var services: [String]
    /// The profile that would serve this device, if any.
    public var profile: String?
    /// Already in the registry (bonded).
    public var paired: Bool

    public init(address: String, addressType: String, name: String? = nil, rssi: Int? = nil, services: [String] = [],
                profile: String? = nil, paired: Bool = false) {
        self.address = address
        self.addressType = addressType
        self.name = name
        self.rssi = rssi
        self.services = services
        self.profile = profile
        self.paired = paired
    }

    public var json: JSONValue {
        .obj(["address": .string(address), "address_type": .string(addressType), "name": .opt(name),
              "rssi": rssi.map { .int(Int64($0)) } ?? .null, "services": .array(services.map { .string($0) }),
              "profile": .opt(profile), "paired": .bool(paired)])
    }

    public init(json v: JSONValue) {
        self.init(address: v["address"]?.stringValue ?? "?", addressType: v["address_type"]?.stringValue ?? "?",
                  name: v["name"]?.stringValue, rssi: v["rssi"]?.intValue.map { Int($0) },
                  services: v["services"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                  profile: v["profile"]?.stringValue, paired: v["paired"]?.boolValue ?? false)
    }
}

/// What the pairing asks of the person at the terminal (Core v5.4 Vol 3 Part H 2.3.5.1).
public enum PairingQuestion: Hashable, Sendable {
    /// Passkey Entry, the device displays: type the 6 digits it shows.
    case enterPasskey
    /// Numeric Comparison: does the device show this number?
    case confirmNumber(UInt32)
    /// Passkey Entry, we display: type this on the device (no answer needed beyond acknowledging).
    case displayPasskey(UInt32)
}

public enum PairingAnswer: Hashable, Sendable {
    case passkey(UInt32)
    case confirmed(Bool)
}

/// How the Bluetooth side asks the person running `pair` (through the control socket, or
/// answered at once from `--passkey`).
public struct PasskeyPrompt: Sendable {
    public let ask: @Sendable (PairingQuestion) async throws -> PairingAnswer
    public init(ask: @escaping @Sendable (PairingQuestion) async throws -> PairingAnswer) { self.ask = ask }
}

/// What pairing learned about the device (Device Information Service and the bond).
public struct PairedDevice: Hashable, Sendable {
    /// Identity address `AA:BB:CC:DD:EE:FF` (after address resolution).
    public var address: String
    /// `public` or `random`.
    public var addressType: String
    public var profile: String
    public var name: String?
    public var manufacturer: String?
    public var model: String?
    public var serialNumber: String?
    public var firmware: String?
    /// When the first reading from the device was accepted, if one arrived before `pair` returned.
    public var firstReadingAt: Timestamp?

    public init(address: String, addressType: String, profile: String, name: String? = nil, manufacturer: String? = nil,
                model: String? = nil, serialNumber: String? = nil, firmware: String? = nil, firstReadingAt: Timestamp? = nil) {
        self.address = address
        self.addressType = addressType
        self.profile = profile
        self.name = name
        self.manufacturer = manufacturer
        self.model = model
        self.serialNumber = serialNumber
        self.firmware = firmware
        self.firstReadingAt = firstReadingAt
    }
}

/// A Bluetooth device's link as the `devices` command shows it.
public struct LinkState: Hashable, Sendable {
    public var connected: Bool
    public var rssi: Int?
    /// Battery level in percent (Battery Service), if read.
    public var battery: Int?
    /// Short, PHI-free description (`connected`, `reconnecting in 8 s`, `bond missing`...).
    public var detail: String?

    public init(connected: Bool, rssi: Int? = nil, battery: Int? = nil, detail: String? = nil) {
        self.connected = connected
        self.rssi = rssi
        self.battery = battery
        self.detail = detail
    }
}

/// A failure of scanning or pairing with a message for the nurse. `code` is one of
/// `not-found`, `pairing-failed` (rejected, wrong passkey), `timeout`, `unavailable`, `cancelled`.
public struct BluetoothControlError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ControlError.Code
    public var message: String
    public init(_ code: ControlError.Code, _ message: String) { self.code = code; self.message = message }
    public var description: String { message }
}

/// What the daemon needs from the Bluetooth host to serve `scan`, `pair`, `discharge` and
/// `devices`. The daemon owns the registry and the audit: `pair` only pairs, bonds, reads the
/// device information and starts the link; the daemon records the binding.
public protocol BluetoothControl: Sendable {
    /// The adapter in use (e.g. `hci0 00:1A:7D:DA:71:13`), for `status`.
    var adapterDescription: String { get async }
    /// Scans for `seconds`, calling `report` for each advertiser (again when its row changes).
    func scan(seconds: Int, report: @escaping @Sendable (ScanRow) async -> Void) async throws
    /// Connects, pairs and bonds (asking `passkey` when the device wants it), reads device
    /// information and keeps the link. Throws `BluetoothControlError` with a clear message.
    func pair(address: String, patient: String, profile: String?, passkey: PasskeyPrompt) async throws -> PairedDevice
    /// Disconnects and deletes the bond (keys) of a registered device.
    func forget(deviceID: String) async throws
    /// Link state per device id, for every device the host knows.
    func linkStates() async -> [String: LinkState]
}

extension BluetoothControl {
    public var adapterDescription: String { get async { "bluetooth" } }
}

public enum BluetoothNotConfigured {
    public static let message = "Bluetooth is not configured (set bluetooth.adapter in agent.yaml)"
}
