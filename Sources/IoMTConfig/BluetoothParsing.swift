import IoMTCore
import IoMTYAML

extension AgentConfig {
    /// `bluetooth`: the LE controller the agent owns and the wearables it may connect to (issue 5).
    public struct Bluetooth: Sendable, Equatable {
        /// `bluetooth.adapter`: `hci0` (Linux HCI user channel), `uart:/dev/ttyAMA0?baud=3000000&flow=rts`
        /// (H4 over a serial line) or `tcp:127.0.0.1:PORT` (H4 over TCP: emulators, tests). Required.
        public var adapter: String
        /// `bluetooth.snoop`: write every HCI packet to this btsnoop file (Wireshark opens it). Optional.
        public var snoop: String?
        /// `bluetooth.connect_timeout_ms`. Default 10000.
        public var connectTimeoutMilliseconds: Int
        /// `bluetooth.reconnect_min_ms` / `reconnect_max_ms`: backoff between attempts. Defaults 1000 / 30000.
        public var reconnectMinMilliseconds: Int
        public var reconnectMaxMilliseconds: Int
        /// `bluetooth.devices`: wearables configured here rather than paired from the CLI.
        public var devices: [Device]
        /// `bluetooth.broadcasters`: broadcast-only sensors read from their advertisements (issue 6).
        public var broadcasters: [Broadcaster]

        public init(adapter: String, snoop: String? = nil, connectTimeoutMilliseconds: Int = 10_000,
                    reconnectMinMilliseconds: Int = 1_000, reconnectMaxMilliseconds: Int = 30_000, devices: [Device] = [],
                    broadcasters: [Broadcaster] = []) {
            self.adapter = adapter
            self.snoop = snoop
            self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
            self.reconnectMinMilliseconds = reconnectMinMilliseconds
            self.reconnectMaxMilliseconds = reconnectMaxMilliseconds
            self.devices = devices
            self.broadcasters = broadcasters
        }

        /// One entry of `bluetooth.devices`.
        public struct Device: Sendable, Equatable {
            /// `id`: default `ble-` and the address in hex.
            public var id: String
            /// `address`: `AA:BB:CC:DD:EE:FF`, most significant first.
            public var address: String
            /// `address_type`: `random` (default: most wearables) or `public`.
            public var addressType: BluetoothAddressType
            /// `profile`: which Bluetooth health profile serves it.
            public var profile: BluetoothProfileName
            /// `patient`.
            public var patient: String
            public init(id: String, address: String, addressType: BluetoothAddressType = .random,
                        profile: BluetoothProfileName, patient: String) {
                self.id = id
                self.address = address
                self.addressType = addressType
                self.profile = profile
                self.patient = patient
            }
        }
    }
}

/// `bluetooth.devices[].address_type`.
public enum BluetoothAddressType: String, CaseIterable, Sendable {
    case random, `public`
}

/// `bluetooth.devices[].profile`: the connected-device health profiles served over a link.
public enum BluetoothProfileName: String, CaseIterable, Sendable {
    case heartRate = "heart-rate"
    case thermometer
    case bloodPressure = "blood-pressure"
    case pulseOximeter = "pulse-oximeter"
    case weightScale = "weight-scale"
    case bodyComposition = "body-composition"
    case cgm
    case genericHealthSensor = "generic-health-sensor"
    case glucose
}

enum BluetoothKeys {
    static let section = ["adapter", "snoop", "connect_timeout_ms", "reconnect_min_ms", "reconnect_max_ms", "devices", "broadcasters"]
    static let device = ["id", "address", "address_type", "profile", "patient"]
    static let broadcaster = ["id", "address", "any_address", "patient", "profile", "repeat_window_s"]
}

extension ConfigReader {
    mutating func buildBluetooth(_ top: Section, otherIDs: Set<String>) -> AgentConfig.Bluetooth?? {
        guard value(top, "bluetooth") != nil else { return .some(nil) }
        guard let b = section(top.values["bluetooth"], path: "bluetooth", parentLine: line(top, "bluetooth"),
                              keys: BluetoothKeys.section) else { return nil }
        let before = problems.count
        var adapter = ""
        if let (a, line) = requiredText(b, "adapter", example: "hci0") {
            if let problem = Self.adapterProblem(a) { report("bluetooth.adapter", line, problem) } else { adapter = a }
        }
        var snoop: String?
        if let (s, line) = optionalText(b, "snoop") {
            if s.hasPrefix("/") { snoop = s } else { report("bluetooth.snoop", line, "must be an absolute path, got \"\(clip(s))\"") }
        }
        let connectTimeout = integer(b, "connect_timeout_ms", 500...120_000, default: 10_000).0
        let reconnectMin = integer(b, "reconnect_min_ms", 100...600_000, default: 1_000).0
        let (reconnectMax, maxLine) = integer(b, "reconnect_max_ms", 100...3_600_000, default: 30_000)
        if reconnectMax < reconnectMin {
            report("bluetooth.reconnect_max_ms", maxLine ?? line(b, "reconnect_min_ms"),
                   "must be at least reconnect_min_ms (\(reconnectMin)), got \(reconnectMax)")
        }
        var devices: [AgentConfig.Bluetooth.Device] = []
        if let node = value(b, "devices") {
            if case let .sequence(seq) = node {
                var seen: [String: String] = [:]
                var seenAddresses: [String: String] = [:]
                for (index, item) in seq.enumerated() {
                    let path = "bluetooth.devices[\(index)]"
                    guard let d = section(item, path: path, parentLine: line(item, line(b, "devices")), keys: BluetoothKeys.device) else { continue }
                    let profile: BluetoothProfileName? = requiredChoice(d, "profile")
                    let patient = patientID(d)
                    let type: BluetoothAddressType = choice(d, "address_type", default: .random) ?? .random
                    var address: String?
                    if let (a, line) = requiredText(d, "address", example: "F0:F1:F2:F3:F4:01") {
                        if Self.isAddress(a) { address = a.uppercased() } else {
                            report(d.path("address"), line, "must be a Bluetooth address like F0:F1:F2:F3:F4:01, got \"\(clip(a))\"")
                        }
                    }
                    var id: String?
                    if let (explicit, line) = text(d, "id") {
                        if let problem = identifierProblem(explicit, maxLength: 64) { report(d.path("id"), line, problem) } else { id = explicit }
                    } else if let address {
                        id = BluetoothDeviceID.make(address: address)
                    }
                    if let id {
                        if let first = seen[id] {
                            report(d.path("id"), line(d, "id"), "duplicate device id '\(id)' (also used by \(first))")
                        } else if otherIDs.contains(id) {
                            report(d.path("id"), line(d, "id"), "duplicate device id '\(id)' (also used by a simulator or serial device)")
                        }
                        seen[id] = path
                    }
                    if let address {
                        if let first = seenAddresses[address] {
                            report(d.path("address"), line(d, "address"), "the same device as \(first)")
                        }
                        seenAddresses[address] = path
                    }
                    if let id, let address, let profile, let patient {
                        devices.append(.init(id: id, address: address, addressType: type, profile: profile, patient: patient))
                    }
                }
            } else {
                report("bluetooth.devices", line(b, "devices"), "must be a list ('- address: ...' entries), got \(describe(node))")
            }
        }
        let broadcasters = buildBroadcasters(b, otherIDs: otherIDs.union(devices.map(\.id)))
        guard problems.count == before else { return nil }
        return .some(AgentConfig.Bluetooth(adapter: adapter, snoop: snoop, connectTimeoutMilliseconds: Int(connectTimeout),
                                           reconnectMinMilliseconds: Int(reconnectMin), reconnectMaxMilliseconds: Int(reconnectMax),
                                           devices: devices, broadcasters: broadcasters))
    }

    static func isAddress(_ a: String) -> Bool {
        let parts = a.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 6 && parts.allSatisfy { $0.count == 2 && UInt8($0, radix: 16) != nil }
    }

    /// The adapter forms the transports accept (the transport layer parses them fully).
    static func adapterProblem(_ a: String) -> String? {
        if a.hasPrefix("hci"), let n = Int(a.dropFirst(3)), (0...255).contains(n) { return nil }
        if a.hasPrefix("uart:/") { return nil }
        if a.hasPrefix("tcp:") {
            let rest = a.dropFirst(4)
            if let colon = rest.lastIndex(of: ":"), !rest[..<colon].isEmpty, let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) {
                return nil
            }
            return "must be tcp:HOST:PORT, got \"\(clip(a))\""
        }
        return "must be hciN (Linux HCI user channel), uart:/dev/PATH?baud=N&flow=rts|none, or tcp:HOST:PORT, got \"\(clip(a))\""
    }
}
