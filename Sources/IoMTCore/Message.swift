/// What kind of message the buffer holds. Open set (`RawRepresentable`), stored as an integer.
public struct MessageKind: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let reading = MessageKind(rawValue: 1)
    public static let gap = MessageKind(rawValue: 2)
    public static let alert = MessageKind(rawValue: 3)
    public static let event = MessageKind(rawValue: 4)
}

/// A message ready for the uplink: rendered payload, topic and the identity needed for
/// de-duplication and gap accounting. This is the unit the durable buffer stores.
public struct OutgoingMessage: Hashable, Sendable {
    /// For a reading, the reading id. Sent as the `reading-id` MQTT 5 user property.
    public var id: ReadingID
    public var kind: MessageKind
    public var topic: String
    public var payload: [UInt8]
    public var deviceID: String?
    public var sequence: UInt64?
    /// Higher goes first (alerts and gap records ahead of the reading backlog).
    public var priority: UInt8
    public var createdAt: Timestamp
    /// The source's cursor after this message (see `DeviceReading.sourceCursor`); stored per
    /// device with the message, in the same transaction, and only if the message is stored.
    public var sourceCursor: String?

    public init(id: ReadingID, kind: MessageKind, topic: String, payload: [UInt8], deviceID: String?,
                sequence: UInt64?, priority: UInt8 = 0, createdAt: Timestamp, sourceCursor: String? = nil) {
        self.sourceCursor = sourceCursor
        self.id = id
        self.kind = kind
        self.topic = topic
        self.payload = payload
        self.deviceID = deviceID
        self.sequence = sequence
        self.priority = priority
        self.createdAt = createdAt
    }
}

/// The result of handing a reading to the gateway.
public enum IngestOutcome: Hashable, Sendable {
    /// Durable on disk (its transaction committed), with the id and sequence number given to it.
    case accepted(id: ReadingID, sequence: UInt64)
    /// Not stored; counted as lost with this sequence number and reason (a gap record follows).
    case lost(sequence: UInt64, reason: LossReason)
}

/// Where sources hand their readings. `submit` returns once the reading is durable or lost:
/// a source that awaits it sees back-pressure.
public protocol ReadingSink: Sendable {
    func submit(_ reading: DeviceReading) async -> IngestOutcome
}

/// A source of readings: a simulator, a serial port, a BLE link. Runs until cancelled or done.
public protocol ReadingSource: Sendable {
    /// Stable id used in logs and status (the device id for single-device sources).
    var sourceID: String { get }
    /// What the status topic says about this source right now.
    var sourceStatus: SourceStatus { get }
    /// One entry per device, for sources that serve several (the Bluetooth source).
    var sourceStatuses: [SourceStatus] { get }
    func run(into sink: any ReadingSink) async throws
}

extension ReadingSource {
    public var sourceStatuses: [SourceStatus] { [sourceStatus] }
}

/// A source's device and link state, for the gateway status.
public struct SourceStatus: Hashable, Sendable {
    public var deviceID: String
    public var profile: String
    public var transport: Transport
    public var connected: Bool
    /// A short, PHI-free description of the link or device state (e.g. "waiting for /dev/iomt/ox-1").
    public var detail: String?
    /// The device's battery level in percent as last read from it (Bluetooth Battery Service),
    /// nil when unknown. Feeds the battery-low alert.
    public var batteryPercent: Int?
    /// The device clock minus the gateway's, in milliseconds, as measured on the current link
    /// (Bluetooth Current Time / Date Time) when the gateway could not set the clock; nil when
    /// unknown or set. Feeds the clock-drift alert (its readings are corrected, so they do not).
    public var clockOffsetMs: Int64?

    public init(deviceID: String, profile: String, transport: Transport, connected: Bool, detail: String? = nil,
                batteryPercent: Int? = nil, clockOffsetMs: Int64? = nil) {
        self.deviceID = deviceID
        self.profile = profile
        self.transport = transport
        self.connected = connected
        self.detail = detail
        self.batteryPercent = batteryPercent
        self.clockOffsetMs = clockOffsetMs
    }
}
