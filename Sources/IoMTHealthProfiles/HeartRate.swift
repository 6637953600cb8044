import IoMTCore

/// Heart Rate Measurement 0x2A37 (Heart Rate Service 0x180D).
/// GATT Specification Supplement §3.113 Heart Rate Measurement; reference §2.1.
///
/// `Flags u8 | HR u8 or u16 | [Energy Expended u16 kJ] | [RR-Interval u16 (1/1024 s)]*`
public struct HeartRateMeasurement: Hashable, Sendable {
    public var flags: UInt8
    public var heartRate: UInt16
    /// 0/1 not supported, 2 supported but no contact, 3 contact detected.
    public var sensorContact: UInt8
    /// Cumulative energy expended in kJ since the last reset, when present.
    public var energyExpendedKilojoules: UInt16?
    /// RR intervals as sent, in 1/1024 s, oldest first.
    public var rrIntervalsRaw: [UInt16]

    public static func decode(_ bytes: [UInt8]) throws -> HeartRateMeasurement {
        var r = ByteReader(bytes)
        let flags = try r.u8("flags")
        let hr = flags & 0x01 != 0 ? try r.u16le("heart rate (uint16)") : UInt16(try r.u8("heart rate (uint8)"))
        let ee = flags & 0x08 != 0 ? try r.u16le("energy expended") : nil
        var rr: [UInt16] = []
        if flags & 0x10 != 0 {
            // At least one RR interval is promised by the flag.
            rr.append(try r.u16le("rr interval"))
            // An odd octet left over is a truncated RR interval: the read throws.
            while !r.isAtEnd { rr.append(try r.u16le("rr interval")) }
        }
        return HeartRateMeasurement(flags: flags, heartRate: hr, sensorContact: (flags >> 1) & 0x03,
                                    energyExpendedKilojoules: ee, rrIntervalsRaw: rr)
    }

    /// RR intervals in milliseconds (raw × 1000 / 1024).
    public var rrIntervalsMilliseconds: [Double] { rrIntervalsRaw.map { Double($0) * 1000 / 1024 } }

    /// Heart rate → `MDC_ECG_HEART_RATE` 147842 `/min` (LOINC 8867-4). With sensor contact
    /// "supported, not detected" (reference §13.10) the value is `.sensorOff`, not a number.
    /// RR intervals → one `MDC_ECG_TIME_PD_RR_GL` 147240 `ms` batch per notification:
    /// `.waveform` with `samplePeriodMilliseconds == 0`, meaning the samples are consecutive
    /// intervals (not evenly spaced; each starts where the previous one ended).
    public var normalized: DecodedMeasurement {
        var statuses: [ProfileStatus] = []
        var hrValue = ObservationValue.numeric(Double(heartRate))
        switch sensorContact {
        case 2:
            statuses.append(.sensorContactNotDetected)
            hrValue = .unavailable(.sensorOff)
        case 3: statuses.append(.sensorContactDetected)
        default: statuses.append(.sensorContactNotSupported)
        }
        var obs = [makeObservation(.heartRate, hrValue, .perMinute)]
        if !rrIntervalsRaw.isEmpty {
            let rrValue: ObservationValue = sensorContact == 2
                ? .unavailable(.sensorOff)
                : .waveform(samples: rrIntervalsMilliseconds, samplePeriodMilliseconds: 0)
            obs.append(makeObservation(.rrInterval, rrValue, .millisecond))
        }
        return DecodedMeasurement(observations: obs, statuses: statuses)
    }
}

/// Body Sensor Location 0x2A38 (GSS §3.29; reference §2): 0 Other, 1 Chest, 2 Wrist, 3 Finger,
/// 4 Hand, 5 Ear Lobe, 6 Foot. Open set.
public struct BodySensorLocation: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let other = BodySensorLocation(rawValue: 0)
    public static let chest = BodySensorLocation(rawValue: 1)
    public static let wrist = BodySensorLocation(rawValue: 2)
    public static let finger = BodySensorLocation(rawValue: 3)
    public static let hand = BodySensorLocation(rawValue: 4)
    public static let earLobe = BodySensorLocation(rawValue: 5)
    public static let foot = BodySensorLocation(rawValue: 6)

    public static func decode(_ bytes: [UInt8]) throws -> BodySensorLocation {
        var r = ByteReader(bytes)
        return BodySensorLocation(rawValue: try r.u8("body sensor location"))
    }
}

/// Heart Rate Control Point 0x2A39: the only command, Reset Energy Expended (reference §2).
public enum HeartRateControlPoint {
    public static let resetEnergyExpended: [UInt8] = [0x01]
}
