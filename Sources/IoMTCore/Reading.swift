/// How a device is attached to the gateway.
public struct Transport: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public static let simulated: Transport = "simulated"
    public static let serial: Transport = "serial"
    public static let ble: Transport = "ble"
}

/// The device a reading came from.
public struct DeviceRef: Hashable, Sendable {
    /// Stable id of the device on this gateway (config name, BLE identity address, USB serial).
    public var id: String
    /// The device profile that decoded it (e.g. `pulse-oximeter`, `contec-cms50d`).
    public var profile: String
    public var transport: Transport
    public var serialNumber: String?
    /// Further identity the device reported (Bluetooth Device Information: manufacturer, model,
    /// firmware, system id as EUI-64 hex, IEEE 11073-20601 regulatory data as hex), by name.
    /// Published as `device.info`; empty for most sources.
    public var info: [String: String]

    public init(id: String, profile: String, transport: Transport, serialNumber: String? = nil, info: [String: String] = [:]) {
        self.info = info
        self.id = id
        self.profile = profile
        self.transport = transport
        self.serialNumber = serialNumber
    }
}

/// How far the measurement time can be trusted.
public struct TimeQuality: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    /// The device gave no time; the gateway's receipt time stands in for it.
    public static let gatewayReceipt: TimeQuality = "gateway-receipt"
    /// The device's own clock, known to be set (by the gateway or a trusted source).
    public static let deviceSynchronized: TimeQuality = "device-synchronized"
    /// The device's own clock, corrected by the offset the gateway measured.
    public static let deviceCorrected: TimeQuality = "device-corrected"
    /// The device's own clock, neither set nor corrected: may be wrong.
    public static let deviceUnsynchronized: TimeQuality = "device-unsynchronized"
    /// Produced by a simulator from the gateway clock.
    public static let simulated: TimeQuality = "simulated"
}

/// Why an observation has no number. An open set: decoders add their own.
public struct ValueStatus: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    /// IEEE 11073-20601 special values (SFLOAT/FLOAT).
    public static let notANumber: ValueStatus = "nan"
    public static let notAtThisResolution: ValueStatus = "nres"
    public static let positiveInfinity: ValueStatus = "+inf"
    public static let negativeInfinity: ValueStatus = "-inf"
    public static let reserved: ValueStatus = "reserved"
    /// The device reported the value as missing or invalid (e.g. Nonin 127, Masimo dashes).
    public static let missing: ValueStatus = "missing"
    public static let sensorOff: ValueStatus = "sensor-off"
    public static let searching: ValueStatus = "searching"
    /// Outside the physiological or device range the profile accepts.
    public static let outOfRange: ValueStatus = "out-of-range"
}

/// An observation's value. Invalid or missing values are never numbers.
public enum ObservationValue: Hashable, Sendable {
    /// A finite number.
    case numeric(Double)
    /// Evenly spaced samples (pleth, ECG, RR series), `samplePeriodMilliseconds` apart, the
    /// first at the reading's measurement time. Sent as one batch, not one message a sample.
    case waveform(samples: [Double], samplePeriodMilliseconds: Double)
    /// No usable value, and why.
    case unavailable(ValueStatus)

    /// Builds a numeric value, turning a non-finite number into `.unavailable`.
    public static func number(_ value: Double) -> ObservationValue {
        if value.isNaN { return .unavailable(.notANumber) }
        if value == .infinity { return .unavailable(.positiveInfinity) }
        if value == -.infinity { return .unavailable(.negativeInfinity) }
        return .numeric(value)
    }
}

/// One measured quantity: an MDC code, a value, a UCUM unit and a LOINC code where one exists.
public struct Observation: Hashable, Sendable {
    public var code: MDCCode
    public var value: ObservationValue
    public var unit: UCUMUnit
    /// LOINC code; by default the FHIR vital-signs code for `code` where one exists.
    public var loinc: String?

    public init(code: MDCCode, value: ObservationValue, unit: UCUMUnit, loinc: String? = nil) {
        self.code = code
        self.value = value
        self.unit = unit
        self.loinc = loinc ?? code.loinc
    }
}

/// What a source produces: a measurement from one device for one patient, before the gateway
/// has made it durable. The gateway adds the id, gateway id and per-device sequence number.
public struct DeviceReading: Hashable, Sendable {
    public var device: DeviceRef
    public var patientID: String
    public var measuredAt: Timestamp
    public var receivedAt: Timestamp
    public var timeQuality: TimeQuality
    public var observations: [Observation]
    /// Where the source is in the device's stored records after this reading (e.g. a glucose
    /// meter's download watermark). Opaque to the gateway; stored per device in the SAME
    /// transaction as the reading, so a reconnect never downloads an accepted record again.
    public var sourceCursor: String?
    /// What the device said about this measurement beyond its values, as open status names
    /// (e.g. `irregular-pulse`, `cuff-too-loose`, `sensor-contact-not-detected`, a glucose
    /// context such as `meal-preprandial`); published as `device_status`. Empty when none.
    public var deviceStatus: [String]

    public init(device: DeviceRef, patientID: String, measuredAt: Timestamp, receivedAt: Timestamp,
                timeQuality: TimeQuality, observations: [Observation], sourceCursor: String? = nil,
                deviceStatus: [String] = []) {
        self.deviceStatus = deviceStatus
        self.sourceCursor = sourceCursor
        self.device = device
        self.patientID = patientID
        self.measuredAt = measuredAt
        self.receivedAt = receivedAt
        self.timeQuality = timeQuality
        self.observations = observations
    }
}

/// The normalized reading the gateway publishes.
public struct Reading: Hashable, Sendable {
    /// Stable across redeliveries; time-ordered (UUIDv7).
    public var id: ReadingID
    public var gatewayID: String
    /// Per-device, starts at 1, continues across agent restarts; a hole means readings were lost
    /// (and a gap record says so).
    public var sequence: UInt64
    public var body: DeviceReading

    public init(id: ReadingID, gatewayID: String, sequence: UInt64, body: DeviceReading) {
        self.id = id
        self.gatewayID = gatewayID
        self.sequence = sequence
        self.body = body
    }

    public var device: DeviceRef { body.device }
    public var patientID: String { body.patientID }
}

/// Readings lost for one device, announced on the status topic so no loss is silent.
public struct GapRecord: Hashable, Sendable {
    public var deviceID: String
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    public var count: UInt64
    public var reason: LossReason
    public var firstLostAt: Timestamp
    public var lastLostAt: Timestamp

    public init(deviceID: String, firstSequence: UInt64, lastSequence: UInt64, count: UInt64,
                reason: LossReason, firstLostAt: Timestamp, lastLostAt: Timestamp) {
        self.deviceID = deviceID
        self.firstSequence = firstSequence
        self.lastSequence = lastSequence
        self.count = count
        self.reason = reason
        self.firstLostAt = firstLostAt
        self.lastLostAt = lastLostAt
    }
}

public struct LossReason: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    /// `buffer.on_full: reject` refused it.
    public static let bufferFullRejected: LossReason = "buffer-full-rejected"
    /// `buffer.on_full: drop-oldest` evicted it.
    public static let bufferFullEvicted: LossReason = "buffer-full-evicted"
    /// The buffer could not be written (disk full, read-only, I/O error).
    public static let storageError: LossReason = "storage-error"
}
