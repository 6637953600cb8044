import IoMTCore

/// Temperature Type 0x2A1D and the in-measurement type field (GSS §3.218 Temperature Type;
/// reference §3.1): 1 Armpit … 9 Tympanum. Open set.
public struct TemperatureType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let armpit = TemperatureType(rawValue: 1)
    public static let body = TemperatureType(rawValue: 2)
    public static let ear = TemperatureType(rawValue: 3)
    public static let finger = TemperatureType(rawValue: 4)
    public static let gastroIntestinal = TemperatureType(rawValue: 5)
    public static let mouth = TemperatureType(rawValue: 6)
    public static let rectum = TemperatureType(rawValue: 7)
    public static let toe = TemperatureType(rawValue: 8)
    public static let tympanum = TemperatureType(rawValue: 9)

    public static func decode(_ bytes: [UInt8]) throws -> TemperatureType {
        var r = ByteReader(bytes)
        return TemperatureType(rawValue: try r.u8("temperature type"))
    }

    /// The site-specific MDC code (reference §3, mapping by name [U]); nil for unknown types.
    public var siteCode: MDCCode? {
        switch rawValue {
        case 1: HealthCodes.tempAxilla
        case 2: .bodyTemperature
        case 3: HealthCodes.tempEar
        case 4: HealthCodes.tempFinger
        case 5: HealthCodes.tempGIT
        case 6: HealthCodes.tempOral
        case 7: HealthCodes.tempRectal
        case 8: HealthCodes.tempToe
        case 9: HealthCodes.tempTympanic
        default: nil
        }
    }
}

/// Temperature Measurement 0x2A1C and Intermediate Temperature 0x2A1E (same format).
/// GSS §3.216 Temperature Measurement; reference §3.1.
///
/// `Flags u8 | Temperature FLOAT | [Date Time 7] | [Temperature Type u8]`; flag bit 0 = °F.
public struct TemperatureMeasurement: Hashable, Sendable {
    public var flags: UInt8
    public var temperature: MedicalFloat
    public var isFahrenheit: Bool
    public var timeStamp: DateTime?
    public var type: TemperatureType?

    public static func decode(_ bytes: [UInt8]) throws -> TemperatureMeasurement {
        var r = ByteReader(bytes)
        let flags = try r.u8("flags")
        let t = try r.float("temperature")
        let ts = flags & 0x02 != 0 ? try DateTime.read(&r) : nil
        let type = flags & 0x04 != 0 ? TemperatureType(rawValue: try r.u8("temperature type")) : nil
        return TemperatureMeasurement(flags: flags, temperature: t, isFahrenheit: flags & 0x01 != 0, timeStamp: ts, type: type)
    }

    /// `MDC_TEMP_BODY` 150364 (LOINC 8310-5) in `Cel` or `[degF]` as sent (never converted).
    /// The reference's "simplest compliant choice" (§3): always 150364; the site stays in `type`
    /// (`siteCode` gives the site-specific code when a deployment wants it).
    public var normalized: DecodedMeasurement {
        let unit: UCUMUnit = isFahrenheit ? .fahrenheit : .celsius
        var m = DecodedMeasurement(observations: [makeObservation(.bodyTemperature, temperature, unit)])
        if let ts = timeStamp {
            if let dt = DeviceTime(ts) { m.deviceTime = dt } else { m.statuses.append(ts.isUnknown ? .deviceTimeUnknown : .deviceTimeInvalid) }
        }
        return m
    }
}

/// Measurement Interval 0x2A21: u16 seconds, 0 = no periodic measurement (reference §3.1).
public enum MeasurementInterval {
    public static func decode(_ bytes: [UInt8]) throws -> UInt16 {
        var r = ByteReader(bytes)
        return try r.u16le("measurement interval")
    }
}
