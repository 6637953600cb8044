import IoMTCore

// Pure decoders for USB-serial medical devices. Byte-level facts, sources and example frames:
// ../shared/reference/serial-medical-protocols.md (cited below as "reference §n").
//
// Every decoder here is a value-type state machine fed bytes, one at a time or in chunks of any
// size, with identical results; it never traps on device bytes, re-synchronises byte by byte
// after noise, a bad frame or a bad checksum, and turns every invalid device value into an
// `ObservationValue.unavailable(...)` status, never a number.

/// What a decoder found in the bytes it was fed.
public enum DecoderEvent: Hashable, Sendable {
    /// A normalized measurement (numbers, statuses, a waveform batch).
    case reading(DecodedReading)
    /// The device's state changed (finger out, searching, alarm bits...). Published as status.
    case state(DeviceState)
    /// Bytes thrown away while re-synchronising (noise, a bad frame, a bad checksum), reported
    /// once the decoder is back in sync, with the reason for the first of them.
    case discarded(bytes: Int, reason: DiscardReason)
    /// Something the device told about itself (serial number, firmware, clock, record count).
    case info(DeviceInfo)
}

/// One measurement decoded from the device, before the gateway stamps it.
public struct DecodedReading: Hashable, Sendable {
    public var observations: [Observation]
    /// How long before the last byte of the frame that completed it the first sample was
    /// measured (a one-second pleth batch is about 1000 ms old when it completes). The source
    /// subtracts it from the receipt time for live streams.
    public var ageMilliseconds: Double
    /// The time the device's own clock gave it (stored records, ASCII lines), if any.
    public var deviceTime: DeviceDateTime?
    /// For stored records: a stable key of the record (device serial, time, value), used for
    /// the download watermark.
    public var recordKey: String?

    public init(observations: [Observation], ageMilliseconds: Double = 0, deviceTime: DeviceDateTime? = nil,
                recordKey: String? = nil) {
        self.observations = observations
        self.ageMilliseconds = ageMilliseconds
        self.deviceTime = deviceTime
        self.recordKey = recordKey
    }
}

/// The device's condition, as a set of open-ended condition names plus raw alarm/exception
/// words where the protocol has them. Compared as a whole: a decoder emits `.state` when it changes.
public struct DeviceState: Hashable, Sendable, CustomStringConvertible {
    public var conditions: Set<DeviceCondition>
    /// Masimo `ALARM=` word (reference §3), if the device sends one.
    public var alarmBits: UInt32?
    /// Masimo `EXC=` word (reference §3), if the device sends one.
    public var exceptionBits: UInt32?

    public init(conditions: Set<DeviceCondition> = [], alarmBits: UInt32? = nil, exceptionBits: UInt32? = nil) {
        self.conditions = conditions
        self.alarmBits = alarmBits
        self.exceptionBits = exceptionBits
    }

    public var description: String {
        var parts = conditions.map(\.rawValue).sorted()
        if let alarmBits { parts.append("alarm=0x" + String(alarmBits, radix: 16)) }
        if let exceptionBits { parts.append("exc=0x" + String(exceptionBits, radix: 16)) }
        return parts.isEmpty ? "ok" : parts.joined(separator: ",")
    }
}

/// A device condition. Open set.
public struct DeviceCondition: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public static let sensorOff: DeviceCondition = "sensor-off"
    public static let searching: DeviceCondition = "searching"
    public static let searchingTooLong: DeviceCondition = "searching-too-long"
    public static let outOfTrack: DeviceCondition = "out-of-track"
    public static let artifact: DeviceCondition = "artifact"
    public static let lowPerfusion: DeviceCondition = "low-perfusion"
    public static let marginalPerfusion: DeviceCondition = "marginal-perfusion"
    public static let spo2Dropping: DeviceCondition = "spo2-dropping"
    public static let lowBattery: DeviceCondition = "low-battery"
    public static let sensorFault: DeviceCondition = "sensor-fault"
    public static let interference: DeviceCondition = "interference"
    public static let alarmActive: DeviceCondition = "alarm-active"
    public static let alarmSilenced: DeviceCondition = "alarm-silenced"
}

/// Statuses the serial profiles add to `ValueStatus`.
extension ValueStatus {
    /// The device has no such value (e.g. a Contec without perfusion index reports 0xFFFF).
    public static let notSupported: ValueStatus = "not-supported"
    /// A sensor fault (defective, unrecognized or incompatible sensor; Masimo EXC).
    public static let sensorFault: ValueStatus = "sensor-fault"
    /// The device flagged the value itself as erroneous (OneTouch '?' flag).
    public static let deviceError: ValueStatus = "device-error"
    /// Above the meter's measuring range (OneTouch "HIGH": > 600 mg/dL).
    public static let aboveRange: ValueStatus = "above-range"
}

/// Why bytes were thrown away.
public struct DiscardReason: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    /// Not the start of a frame (noise, start-up garbage, a wrong baud rate).
    public static let noise: DiscardReason = "noise"
    /// A frame whose checksum did not match.
    public static let badChecksum: DiscardReason = "bad-checksum"
    /// A frame whose structure was wrong (a sync bit where none belongs, a bad field).
    public static let badFrame: DiscardReason = "bad-frame"
    /// A text line that was too long or not the expected layout.
    public static let badLine: DiscardReason = "bad-line"
}

/// Facts a device reports about itself.
public enum DeviceInfo: Hashable, Sendable {
    case serialNumber(String)
    /// A user-settable device name (Contec "device id", e.g. `user`): not a serial number.
    case deviceName(String)
    case firmware(String)
    case clock(DeviceDateTime)
    case recordCount(Int)
    case model(String)
}

/// A civil date and time from a device clock (no time zone: the device does not know it).
public struct DeviceDateTime: Hashable, Sendable, CustomStringConvertible {
    public var year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int

    /// Nil unless every field is in range (month 1-12, day 1-31, hour < 24, ...).
    public init?(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        guard (1...12).contains(month), (1...31).contains(day), (0..<24).contains(hour),
              (0..<60).contains(minute), (0..<61).contains(second), (1970...2200).contains(year)
        else { return nil }
        self.year = year; self.month = month; self.day = day
        self.hour = hour; self.minute = minute; self.second = second
    }

    /// The instant this civil time names if the device clock were UTC.
    public var asIfUTC: Timestamp {
        let days = Timestamp.days(fromCivil: Int64(year), Int64(month), Int64(day))
        let secs = days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
        return Timestamp(millisecondsSinceEpoch: secs * 1000)
    }

    public var description: String {
        func p(_ v: Int, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
        return "\(p(year, 4))-\(p(month, 2))-\(p(day, 2)) \(p(hour, 2)):\(p(minute, 2)):\(p(second, 2))"
    }
}

/// A stream decoder: bytes in, events out. Feeding the same bytes in any chunking gives the
/// same events.
public protocol StreamDecoder: Sendable {
    mutating func feed<S: Sequence<UInt8>>(_ bytes: S) -> [DecoderEvent]
}

/// Plausibility limits a numeric value must meet to be published as a number; anything
/// outside becomes `.unavailable(.outOfRange)`.
public enum Plausible {
    public static let spo2: ClosedRange<Double> = 1...100
    public static let pulseRate: ClosedRange<Double> = 15...350
    public static let perfusionIndex: ClosedRange<Double> = 0.01...30
    public static let glucoseMgPerDL: ClosedRange<Double> = 10...600

    static func check(_ v: Double, _ range: ClosedRange<Double>) -> ObservationValue {
        range.contains(v) ? .numeric(v) : .unavailable(.outOfRange)
    }
}

extension UCUMUnit {
    /// Milligrams per decilitre (glucose).
    public static let milligramPerDecilitre: UCUMUnit = "mg/dL"
}
