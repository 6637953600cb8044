import IoMTCore

/// Glucose Measurement 0x2A18 (Glucose Service 0x1808). GSS §3.102 Glucose Measurement;
/// reference §6.1.
///
/// `Flags | Sequence u16 | Base Time 7 | [Time Offset s16 min] | [Concentration SFLOAT |
///  Type:4 (low) + Location:4 (high)] | [Sensor Status Annunciation u16]`.
/// Units flag bit 2: 0 = kg/L, 1 = mol/L; reported as `mg/dL` (×10⁵) and `mmol/L` (×10³): a
/// rescale within one unit (mass or molar concentration), never mass↔molar.
public struct GlucoseMeasurement: Hashable, Sendable {
    public var flags: UInt8
    public var sequenceNumber: UInt16
    public var baseTime: DateTime
    public var timeOffsetMinutes: Int16?
    public var concentration: MedicalFloat?
    public var isMolar: Bool
    public var type: UInt8?
    public var sampleLocation: UInt8?
    public var sensorStatus: UInt16?
    /// A Glucose Measurement Context with the same sequence number follows (reference §13.14).
    public var contextFollows: Bool { flags & 0x10 != 0 }

    public static func decode(_ bytes: [UInt8]) throws -> GlucoseMeasurement {
        var r = ByteReader(bytes)
        let flags = try r.u8("flags")
        let seq = try r.u16le("sequence number")
        let base = try DateTime.read(&r)
        let offset = flags & 0x01 != 0 ? Int16(bitPattern: try r.u16le("time offset")) : nil
        var conc: MedicalFloat?, type: UInt8?, loc: UInt8?
        if flags & 0x02 != 0 {
            conc = try r.sfloat("glucose concentration")
            let tl = try r.u8("type and sample location")
            type = tl & 0x0F
            loc = tl >> 4
        }
        let status = flags & 0x08 != 0 ? try r.u16le("sensor status annunciation") : nil
        return GlucoseMeasurement(flags: flags, sequenceNumber: seq, baseTime: base, timeOffsetMinutes: offset,
                                  concentration: conc, isMolar: flags & 0x04 != 0, type: type, sampleLocation: loc,
                                  sensorStatus: status)
    }

    /// The MDC code for a glucose Type nibble (reference §11; pairing by name [U]).
    public static func code(forType t: UInt8) -> MDCCode {
        switch t {
        case 1: .glucoseCapillaryWholeBlood
        case 2: .glucoseCapillaryPlasma
        case 3: HealthCodes.glucoseVenousWholeBlood
        case 4: HealthCodes.glucoseVenousPlasma
        case 5: HealthCodes.glucoseArterialWholeBlood
        case 6: HealthCodes.glucoseArterialPlasma
        case 7: HealthCodes.glucoseUndeterminedWholeBlood
        case 9: .glucoseISF
        case 10: HealthCodes.glucoseControlSolution
        default: HealthCodes.glucoseUndeterminedPlasma  // 8, and reserved types (flagged by a status)
        }
    }

    /// Sensor Status Annunciation bits (reference §6.1; bits 5/6 per S1 and nRF5, not S4 — §13.3).
    public static func statuses(_ s: UInt16) -> [ProfileStatus] {
        let names: [ProfileStatus] = [
            "device-battery-low", "sensor-malfunction", "sample-size-insufficient", "strip-insertion-error",
            "strip-type-incorrect", "sensor-result-too-high", "sensor-result-too-low", "sensor-temp-too-high",
            "sensor-temp-too-low", "sensor-read-interrupted", "device-general-fault", "time-fault",
        ]
        return setBits(s).map { $0 < names.count ? names[$0] : ProfileStatus(rawValue: "glucose-status-bit-\($0)") }
    }

    /// One observation with the concentration (mg/dL or mmol/L) coded by Type; statuses from the
    /// annunciation; device time = Base Time + Time Offset, flagged unreliable on "time fault".
    /// "Result too high/low" makes the value unavailable (the number is a clamp, not a result).
    /// Control solution (type 10 or location 4) is marked as not patient data.
    public var normalized: DecodedMeasurement {
        var m = DecodedMeasurement()
        let status = sensorStatus ?? 0
        if let conc = concentration {
            let unit: UCUMUnit = isMolar ? .millimolePerLitre : .milligramPerDecilitre
            var o = makeObservation(Self.code(forType: type ?? 0), conc, unit, scale: isMolar ? 1e3 : 1e5)
            if status & (1 << 5) != 0 { o.value = .unavailable(.aboveDeviceRange) }
            else if status & (1 << 6) != 0 { o.value = .unavailable(.belowDeviceRange) }
            else if status & (1 << 1) != 0 || status & (1 << 10) != 0 { o.value = .unavailable(.invalidMeasurement) }
            m.observations.append(o)
        }
        m.statuses = Self.statuses(status)
        if type == 10 || sampleLocation == 4 { m.statuses.append(.controlSolution); m.isPatientData = false }
        if let t = type, !(1...10).contains(t) { m.statuses.append(ProfileStatus(rawValue: "glucose-type-reserved-\(t)")) }
        if contextFollows { m.statuses.append("context-follows") }
        let timeFault = status & (1 << 11) != 0
        if let dt = DeviceTime(baseTime, addingMinutes: Int(timeOffsetMinutes ?? 0), clockFlaggedUnreliable: timeFault) {
            m.deviceTime = dt
        } else {
            m.statuses.append(baseTime.isUnknown ? .deviceTimeUnknown : .deviceTimeInvalid)
        }
        return m
    }
}

/// Glucose Measurement Context 0x2A34. GSS §3.103; reference §6.2. Correlate with the
/// measurement by sequence number. Tester = low nibble, Health = high nibble [U] (§13.4).
public struct GlucoseMeasurementContext: Hashable, Sendable {
    public var flags: UInt8
    public var sequenceNumber: UInt16
    public var extendedFlags: UInt8?
    public var carbohydrateID: UInt8?
    /// Carbohydrate in kg (SFLOAT as sent).
    public var carbohydrate: MedicalFloat?
    public var meal: UInt8?
    public var tester: UInt8?
    public var health: UInt8?
    public var exerciseDurationSeconds: UInt16?
    public var exerciseIntensityPercent: UInt8?
    public var medicationID: UInt8?
    public var medication: MedicalFloat?
    /// Medication units: false = kilograms, true = litres (flag bit 5).
    public var medicationInLitres: Bool
    public var hbA1c: MedicalFloat?

    public static func decode(_ bytes: [UInt8]) throws -> GlucoseMeasurementContext {
        var r = ByteReader(bytes)
        let f = try r.u8("flags")
        var c = GlucoseMeasurementContext(flags: f, sequenceNumber: try r.u16le("sequence number"),
                                          medicationInLitres: f & 0x20 != 0)
        if f & 0x80 != 0 { c.extendedFlags = try r.u8("extended flags") }
        if f & 0x01 != 0 { c.carbohydrateID = try r.u8("carbohydrate id"); c.carbohydrate = try r.sfloat("carbohydrate") }
        if f & 0x02 != 0 { c.meal = try r.u8("meal") }
        if f & 0x04 != 0 { let th = try r.u8("tester and health"); c.tester = th & 0x0F; c.health = th >> 4 }
        if f & 0x08 != 0 {
            c.exerciseDurationSeconds = try r.u16le("exercise duration")
            c.exerciseIntensityPercent = try r.u8("exercise intensity")
        }
        if f & 0x10 != 0 { c.medicationID = try r.u8("medication id"); c.medication = try r.sfloat("medication") }
        if f & 0x40 != 0 { c.hbA1c = try r.sfloat("hba1c") }
        return c
    }

    init(flags: UInt8, sequenceNumber: UInt16, medicationInLitres: Bool) {
        self.flags = flags; self.sequenceNumber = sequenceNumber; self.medicationInLitres = medicationInLitres
    }

    /// Context as statuses (meal, tester, health) — the codes for context observations other than
    /// the meal are not verified (reference §6.2), so no observations are made from them.
    public var statuses: [ProfileStatus] {
        var out: [ProfileStatus] = []
        let meals = [1: "preprandial", 2: "postprandial", 3: "fasting", 4: "casual", 5: "bedtime"]
        if let meal { out.append(ProfileStatus(rawValue: "meal-" + (meals[Int(meal)] ?? "code-\(meal)"))) }
        let testers = [1: "self", 2: "health-care-professional", 3: "lab-test", 15: "not-available"]
        if let tester { out.append(ProfileStatus(rawValue: "tester-" + (testers[Int(tester)] ?? "code-\(tester)"))) }
        if let health { out.append(ProfileStatus(rawValue: "health-code-\(health)")) }
        return out
    }
}

/// Glucose Feature 0x2A51 (u16), reference §6.1.
public struct GlucoseFeature: Hashable, Sendable {
    public var rawValue: UInt16
    public static func decode(_ bytes: [UInt8]) throws -> GlucoseFeature {
        var r = ByteReader(bytes)
        return GlucoseFeature(rawValue: try r.u16le("glucose feature"))
    }
    public var timeFaultSupported: Bool { rawValue & (1 << 9) != 0 }
    public var multipleBond: Bool { rawValue & (1 << 10) != 0 }
}
