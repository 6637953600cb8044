import IoMTCore

/// Blood Pressure Measurement 0x2A35 and Intermediate Cuff Pressure 0x2A36 (same layout).
/// GSS §3.31 Blood Pressure Measurement / §3.124 Intermediate Cuff Pressure; reference §4.1.
///
/// `Flags | Systolic SFLOAT | Diastolic SFLOAT | MAP SFLOAT | [Date Time 7] | [Pulse Rate SFLOAT]
///  | [User ID u8] | [Measurement Status u16]`; flag bit 0 = kPa (sys/dia/MAP only).
public struct BloodPressureMeasurement: Hashable, Sendable {
    public var flags: UInt8
    public var isKilopascal: Bool
    public var systolic: MedicalFloat
    public var diastolic: MedicalFloat
    public var meanArterialPressure: MedicalFloat
    public var timeStamp: DateTime?
    public var pulseRate: MedicalFloat?
    public var userID: UInt8?
    public var measurementStatus: UInt16?

    public static func decode(_ bytes: [UInt8]) throws -> BloodPressureMeasurement {
        var r = ByteReader(bytes)
        let flags = try r.u8("flags")
        let sys = try r.sfloat("systolic")
        let dia = try r.sfloat("diastolic")
        let map = try r.sfloat("mean arterial pressure")
        let ts = flags & 0x02 != 0 ? try DateTime.read(&r) : nil
        let pr = flags & 0x04 != 0 ? try r.sfloat("pulse rate") : nil
        let user = flags & 0x08 != 0 ? try r.u8("user id") : nil
        let status = flags & 0x10 != 0 ? try r.u16le("measurement status") : nil
        return BloodPressureMeasurement(flags: flags, isKilopascal: flags & 0x01 != 0, systolic: sys, diastolic: dia,
                                        meanArterialPressure: map, timeStamp: ts, pulseRate: pr, userID: user,
                                        measurementStatus: status)
    }

    /// Measurement status bits as statuses (reference §4.1; PHD IG `ASN1ToHL7` names):
    /// body-movement, cuff-too-loose, irregular-pulse, pulse-over/under-range-limit, improper-body-position.
    public static func statuses(_ s: UInt16) -> [ProfileStatus] {
        var out: [ProfileStatus] = []
        if s & 0x0001 != 0 { out.append("body-movement") }
        if s & 0x0002 != 0 { out.append("cuff-too-loose") }
        if s & 0x0004 != 0 { out.append("irregular-pulse") }
        switch (s >> 3) & 0x3 {
        case 1: out.append("pulse-over-range-limit")
        case 2: out.append("pulse-under-range-limit")
        case 3: out.append("pulse-range-reserved")
        default: break
        }
        if s & 0x0020 != 0 { out.append("improper-body-position") }
        return out
    }

    /// Systolic 150021, diastolic 150022, MAP 150023 in `mm[Hg]` or `kPa` as sent (kPa → mmHg
    /// only through `UnitConversion`); pulse rate → `MDC_PULS_RATE_NON_INV` 149546 `/min`.
    public var normalized: DecodedMeasurement {
        let unit: UCUMUnit = isKilopascal ? .kilopascal : .millimetreMercury
        var obs = [makeObservation(.systolic, systolic, unit), makeObservation(.diastolic, diastolic, unit),
                   makeObservation(.meanArterialPressure, meanArterialPressure, unit)]
        if let pr = pulseRate { obs.append(makeObservation(.pulseRateNonInvasive, pr, .perMinute)) }
        var m = DecodedMeasurement(observations: obs, statuses: measurementStatus.map(Self.statuses) ?? [],
                                   userID: userID)
        if let ts = timeStamp {
            if let dt = DeviceTime(ts) { m.deviceTime = dt } else { m.statuses.append(ts.isUnknown ? .deviceTimeUnknown : .deviceTimeInvalid) }
        }
        return m
    }

    /// As Intermediate Cuff Pressure 0x2A36: only the current cuff pressure (the "systolic"
    /// field) is meaningful; diastolic and MAP are unused (reference §13.11) and never become
    /// blood-pressure observations. Code `MDC_PRESS_CUFF` 150036 [U].
    public var normalizedAsIntermediateCuffPressure: DecodedMeasurement {
        let unit: UCUMUnit = isKilopascal ? .kilopascal : .millimetreMercury
        var obs = [makeObservation(HealthCodes.cuffPressure, systolic, unit)]
        if let pr = pulseRate { obs.append(makeObservation(.pulseRateNonInvasive, pr, .perMinute)) }
        var m = DecodedMeasurement(observations: obs, statuses: measurementStatus.map(Self.statuses) ?? [],
                                   userID: userID)
        if let ts = timeStamp, let dt = DeviceTime(ts) { m.deviceTime = dt }
        return m
    }
}

/// Blood Pressure Feature 0x2A49 (u16), reference §4.1. Open bit set.
public struct BloodPressureFeature: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let bodyMovementDetection = BloodPressureFeature(rawValue: 1 << 0)
    public static let cuffFitDetection = BloodPressureFeature(rawValue: 1 << 1)
    public static let irregularPulseDetection = BloodPressureFeature(rawValue: 1 << 2)
    public static let pulseRateRangeDetection = BloodPressureFeature(rawValue: 1 << 3)
    public static let measurementPositionDetection = BloodPressureFeature(rawValue: 1 << 4)
    public static let multipleBonds = BloodPressureFeature(rawValue: 1 << 5)
    public static let e2eCRC = BloodPressureFeature(rawValue: 1 << 6)
    public static let userDataService = BloodPressureFeature(rawValue: 1 << 7)
    public static let userFacingTime = BloodPressureFeature(rawValue: 1 << 8)

    public static func decode(_ bytes: [UInt8]) throws -> BloodPressureFeature {
        var r = ByteReader(bytes)
        return BloodPressureFeature(rawValue: try r.u16le("blood pressure feature"))
    }
}
