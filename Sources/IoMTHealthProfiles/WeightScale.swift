import IoMTCore

/// Weight Measurement 0x2A9D (Weight Scale Service 0x181D). GSS §3.256 Weight Measurement;
/// reference §7.1.
///
/// `Flags | Weight u16 | [Date Time 7] | [User ID u8] | [BMI u16 | Height u16]`.
/// Field units are fixed (reference §13.8, follows the SIG XML): weight 0.005 kg / 0.01 lb,
/// BMI 0.1 kg/m², height 0.001 m / 0.1 in. Height is reported in `cm` (a rescale within SI,
/// not a unit-system change); imperial stays imperial. Weight 0xFFFF = measurement unsuccessful [U].
public struct WeightMeasurement: Hashable, Sendable {
    public var flags: UInt8
    public var isImperial: Bool
    public var weightRaw: UInt16
    public var timeStamp: DateTime?
    public var userID: UInt8?
    public var bmiRaw: UInt16?
    public var heightRaw: UInt16?

    public static func decode(_ bytes: [UInt8]) throws -> WeightMeasurement {
        var r = ByteReader(bytes)
        let flags = try r.u8("flags")
        let w = try r.u16le("weight")
        let ts = flags & 0x02 != 0 ? try DateTime.read(&r) : nil
        let user = flags & 0x04 != 0 ? try r.u8("user id") : nil
        var bmi: UInt16?, height: UInt16?
        if flags & 0x08 != 0 { bmi = try r.u16le("bmi"); height = try r.u16le("height") }
        return WeightMeasurement(flags: flags, isImperial: flags & 0x01 != 0, weightRaw: w, timeStamp: ts,
                                 userID: user, bmiRaw: bmi, heightRaw: height)
    }

    public var normalized: DecodedMeasurement {
        var obs = [weightObservation(weightRaw, imperial: isImperial)]
        if let bmiRaw {
            obs.append(makeObservation(.bodyMassIndex, bmiRaw == 0xFFFF ? .unavailable(.missing)
                                       : .numeric(scaled(Double(bmiRaw), 0.1)), .kilogramPerSquareMetre))
        }
        if let heightRaw { obs.append(heightObservation(heightRaw, imperial: isImperial)) }
        var m = DecodedMeasurement(observations: obs, userID: userID)
        if let ts = timeStamp {
            if let dt = DeviceTime(ts) { m.deviceTime = dt } else { m.statuses.append(ts.isUnknown ? .deviceTimeUnknown : .deviceTimeInvalid) }
        }
        return m
    }
}

func weightObservation(_ raw: UInt16, imperial: Bool) -> Observation {
    let unit: UCUMUnit = imperial ? .pound : .kilogram
    if raw == 0xFFFF { return Observation(code: .bodyWeight, value: .unavailable(.missing), unit: unit) }
    return makeObservation(.bodyWeight, .numeric(scaled(Double(raw), imperial ? 0.01 : 0.005)), unit)
}

func heightObservation(_ raw: UInt16, imperial: Bool) -> Observation {
    let unit: UCUMUnit = imperial ? .inch : .centimetre
    if raw == 0xFFFF { return Observation(code: .bodyHeight, value: .unavailable(.missing), unit: unit) }
    return makeObservation(.bodyHeight, .numeric(scaled(Double(raw), 0.1)), unit)  // 0.001 m = 0.1 cm; 0.1 in
}

/// Weight Scale Feature 0x2A9E (u32). GSS §3.255; reference §7.1.
public struct WeightScaleFeature: Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static func decode(_ bytes: [UInt8]) throws -> WeightScaleFeature {
        var r = ByteReader(bytes)
        return WeightScaleFeature(rawValue: try r.u32le("weight scale feature"))
    }

    public var timeStampSupported: Bool { rawValue & 1 != 0 }
    public var multipleUsers: Bool { rawValue & 2 != 0 }
    public var bmiSupported: Bool { rawValue & 4 != 0 }
    /// Weight resolution code, bits 3-6 (0 = not specified).
    public var weightResolutionCode: UInt8 { UInt8((rawValue >> 3) & 0x0F) }
    /// Height resolution code, bits 7-9.
    public var heightResolutionCode: UInt8 { UInt8((rawValue >> 7) & 0x07) }

    /// Weight resolution in kg (SI) or lb (imperial); nil when not specified or reserved.
    public func weightResolution(imperial: Bool) -> Double? {
        Self.massResolution(code: weightResolutionCode, imperial: imperial)
    }
    /// Height resolution in m (SI) or in (imperial).
    public func heightResolution(imperial: Bool) -> Double? {
        Self.heightResolution(code: heightResolutionCode, imperial: imperial)
    }

    static func massResolution(code: UInt8, imperial: Bool) -> Double? {
        let si: [Double] = [0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005]
        let imp: [Double] = [1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]
        guard (1...7).contains(code) else { return nil }
        return (imperial ? imp : si)[Int(code) - 1]
    }
    static func heightResolution(code: UInt8, imperial: Bool) -> Double? {
        let si: [Double] = [0.01, 0.005, 0.001]
        let imp: [Double] = [1, 0.5, 0.1]
        guard (1...3).contains(code) else { return nil }
        return (imperial ? imp : si)[Int(code) - 1]
    }
}

/// Body Composition Measurement 0x2A9C (Body Composition Service 0x181B). GSS §3.34;
/// reference §7.2. Flags are u16.
///
/// A multiple-packet measurement (flag bit 12) sends its fields over several indications, each
/// a complete packet with its own flags: each packet decodes on its own, and the observations of
/// all packets together form the measurement (`isMultiplePacket` tells the host to group them).
public struct BodyCompositionMeasurement: Hashable, Sendable {
    public var flags: UInt16
    public var isImperial: Bool
    public var bodyFatRaw: UInt16
    public var timeStamp: DateTime?
    public var userID: UInt8?
    public var basalMetabolismKilojoules: UInt16?
    public var musclePercentRaw: UInt16?
    public var muscleMassRaw: UInt16?
    public var fatFreeMassRaw: UInt16?
    public var softLeanMassRaw: UInt16?
    public var bodyWaterMassRaw: UInt16?
    /// 0.1 Ω units.
    public var impedanceRaw: UInt16?
    public var weightRaw: UInt16?
    public var heightRaw: UInt16?
    public var isMultiplePacket: Bool { flags & (1 << 12) != 0 }

    public static func decode(_ bytes: [UInt8]) throws -> BodyCompositionMeasurement {
        var r = ByteReader(bytes)
        let f = try r.u16le("flags")
        let fat = try r.u16le("body fat percentage")
        var m = BodyCompositionMeasurement(flags: f, isImperial: f & 1 != 0, bodyFatRaw: fat)
        if f & (1 << 1) != 0 { m.timeStamp = try DateTime.read(&r) }
        if f & (1 << 2) != 0 { m.userID = try r.u8("user id") }
        if f & (1 << 3) != 0 { m.basalMetabolismKilojoules = try r.u16le("basal metabolism") }
        if f & (1 << 4) != 0 { m.musclePercentRaw = try r.u16le("muscle percentage") }
        if f & (1 << 5) != 0 { m.muscleMassRaw = try r.u16le("muscle mass") }
        if f & (1 << 6) != 0 { m.fatFreeMassRaw = try r.u16le("fat free mass") }
        if f & (1 << 7) != 0 { m.softLeanMassRaw = try r.u16le("soft lean mass") }
        if f & (1 << 8) != 0 { m.bodyWaterMassRaw = try r.u16le("body water mass") }
        if f & (1 << 9) != 0 { m.impedanceRaw = try r.u16le("impedance") }
        if f & (1 << 10) != 0 { m.weightRaw = try r.u16le("weight") }
        if f & (1 << 11) != 0 { m.heightRaw = try r.u16le("height") }
        return m
    }

    init(flags: UInt16, isImperial: Bool, bodyFatRaw: UInt16) {
        self.flags = flags; self.isImperial = isImperial; self.bodyFatRaw = bodyFatRaw
    }

    /// Body fat → `MDC_BODY_FAT` 188748 `%` (0.1 % units; 0xFFFF = unsuccessful [U]); weight and
    /// height as in `WeightMeasurement`. Fields without a verified MDC code (muscle, water, lean
    /// mass, impedance, basal metabolism) stay in the typed fields.
    public var normalized: DecodedMeasurement {
        var obs = [makeObservation(.bodyFat, bodyFatRaw == 0xFFFF ? .unavailable(.missing)
                                   : .numeric(scaled(Double(bodyFatRaw), 0.1)), .percent)]
        if let weightRaw { obs.append(weightObservation(weightRaw, imperial: isImperial)) }
        if let heightRaw { obs.append(heightObservation(heightRaw, imperial: isImperial)) }
        var m = DecodedMeasurement(observations: obs, userID: userID)
        if isMultiplePacket { m.statuses.append("multiple-packet") }
        if let ts = timeStamp {
            if let dt = DeviceTime(ts) { m.deviceTime = dt } else { m.statuses.append(ts.isUnknown ? .deviceTimeUnknown : .deviceTimeInvalid) }
        }
        return m
    }
}

/// Body Composition Feature 0x2A9B (u32): bits 0-10 supported fields, 11-14 mass resolution,
/// 15-17 height resolution (same encodings as WSS). Reference §7.2.
public struct BodyCompositionFeature: Hashable, Sendable {
    public var rawValue: UInt32
    public static func decode(_ bytes: [UInt8]) throws -> BodyCompositionFeature {
        var r = ByteReader(bytes)
        return BodyCompositionFeature(rawValue: try r.u32le("body composition feature"))
    }
    public var massResolutionCode: UInt8 { UInt8((rawValue >> 11) & 0x0F) }
    public var heightResolutionCode: UInt8 { UInt8((rawValue >> 15) & 0x07) }
    public func massResolution(imperial: Bool) -> Double? { WeightScaleFeature.massResolution(code: massResolutionCode, imperial: imperial) }
    public func heightResolution(imperial: Bool) -> Double? { WeightScaleFeature.heightResolution(code: heightResolutionCode, imperial: imperial) }
}
