import IoMTCore

// MARK: - Codes this module needs that IoMTCore's MDCCode does not (yet) name

/// MDC codes (IEEE 11073-10101) used by the decoders beyond `MDCCode`'s named constants.
/// Reference `ble-health-profiles.md` §3, §6, §11; entries marked [U] are unverified there
/// (reference §13) and are listed in the hand-over for a decision before IoMTCore adopts them.
public enum HealthCodes {
    public static let tempAxilla = MDCCode(rawValue: 188452)          // MDC_TEMP_AXILLA, §3 [V S9 code]
    public static let tempEar = MDCCode(rawValue: 188428)             // MDC_TEMP_EAR
    public static let tempFinger = MDCCode(rawValue: 188432)          // MDC_TEMP_FINGER
    public static let tempGIT = MDCCode(rawValue: 188456)             // MDC_TEMP_GIT
    public static let tempOral = MDCCode(rawValue: 188424)            // MDC_TEMP_ORAL
    public static let tempRectal = MDCCode(rawValue: 188420)          // MDC_TEMP_RECT
    public static let tempToe = MDCCode(rawValue: 188448)             // MDC_TEMP_TOE
    public static let tempTympanic = MDCCode(rawValue: 150392)        // MDC_TEMP_TYMP
    public static let glucoseVenousWholeBlood = MDCCode(rawValue: 160192)
    public static let glucoseVenousPlasma = MDCCode(rawValue: 160196)
    public static let glucoseArterialWholeBlood = MDCCode(rawValue: 160200)
    public static let glucoseArterialPlasma = MDCCode(rawValue: 160204)
    public static let glucoseUndeterminedWholeBlood = MDCCode(rawValue: 160364)
    public static let glucoseUndeterminedPlasma = MDCCode(rawValue: 160368)
    public static let glucoseControlSolution = MDCCode(rawValue: 160208)
    /// MDC_PRESS_CUFF (2:18964). [U]: not in the reference; used only for intermediate cuff pressure.
    public static let cuffPressure = MDCCode(rawValue: 150036)
    public static let bpMeasurementStatus = MDCCode(rawValue: 8_410_608)  // MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS
    public static let plxDeviceStatus = MDCCode(rawValue: 150_604)        // MDC_PULS_OXIM_DEV_STATUS
    public static let modalitySpot = MDCCode(rawValue: 150_588)           // MDC_MODALITY_SPOT

    /// Reference ids for the codes above (IoMTCore's `MDCCode.referenceID` knows the others).
    public static let referenceIDs: [UInt32: String] = [
        188452: "MDC_TEMP_AXILLA", 188428: "MDC_TEMP_EAR", 188432: "MDC_TEMP_FINGER", 188456: "MDC_TEMP_GIT",
        188424: "MDC_TEMP_ORAL", 188420: "MDC_TEMP_RECT", 188448: "MDC_TEMP_TOE", 150392: "MDC_TEMP_TYMP",
        160192: "MDC_CONC_GLU_VENOUS_WHOLEBLOOD", 160196: "MDC_CONC_GLU_VENOUS_PLASMA",
        160200: "MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD", 160204: "MDC_CONC_GLU_ARTERIAL_PLASMA",
        160364: "MDC_CONC_GLU_UNDETERMINED_WHOLEBLOOD", 160368: "MDC_CONC_GLU_UNDETERMINED_PLASMA",
        160208: "MDC_CONC_GLU_CONTROL", 150036: "MDC_PRESS_CUFF",
        8_410_608: "MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS", 150_604: "MDC_PULS_OXIM_DEV_STATUS",
        150_588: "MDC_MODALITY_SPOT",
    ]

    /// The reference id from IoMTCore's table, else this module's.
    public static func referenceID(_ code: MDCCode) -> String? {
        code.referenceID ?? referenceIDs[code.rawValue]
    }
}

/// UCUM units used here beyond `UCUMUnit`'s named constants (reference §11).
extension UCUMUnit {
    public static let pound: UCUMUnit = "[lb_av]"
    public static let centimetre: UCUMUnit = "cm"
    public static let inch: UCUMUnit = "[in_i]"
    public static let kilogramPerSquareMetre: UCUMUnit = "kg/m2"
    public static let milligramPerDecilitre: UCUMUnit = "mg/dL"
    public static let millimolePerLitre: UCUMUnit = "mmol/L"
    public static let kilojoule: UCUMUnit = "kJ"
    public static let mgPerDLPerMinute: UCUMUnit = "mg/dL/min"
    public static let ohm: UCUMUnit = "Ohm"
    public static let gram: UCUMUnit = "g"
    public static let second: UCUMUnit = "s"
}

// MARK: - Statuses

/// A profile-specific status flag (sensor contact, measurement-status bits, device-and-sensor
/// status, annunciations). Open set: unknown flags survive as raw strings. Names follow the
/// PHD IG `ASN1ToHL7` names where the reference gives them (§4.1, §5.3, §6.1).
public struct ProfileStatus: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    // Heart rate (GSS §3.113 Heart Rate Measurement; reference §2.1)
    public static let sensorContactNotSupported: ProfileStatus = "sensor-contact-not-supported"
    public static let sensorContactDetected: ProfileStatus = "sensor-contact-detected"
    public static let sensorContactNotDetected: ProfileStatus = "sensor-contact-not-detected"
    // Time
    public static let deviceClockNotSet: ProfileStatus = "device-clock-not-set"
    public static let deviceTimeUnknown: ProfileStatus = "device-time-unknown"
    public static let deviceTimeInvalid: ProfileStatus = "device-time-invalid"
    // Data that is not a patient measurement (reference §13.15)
    public static let controlSolution: ProfileStatus = "control-solution"
    public static let demonstrationData: ProfileStatus = "demonstration-data"
    public static let testData: ProfileStatus = "test-data"
    // Common 11073 measurement-status meanings (PHD IG §12.3 mapping)
    public static let invalid: ProfileStatus = "invalid"
    public static let questionable: ProfileStatus = "questionable"
    public static let notAvailable: ProfileStatus = "not-available"
    public static let calibrationOngoing: ProfileStatus = "calibration-ongoing"
    public static let earlyEstimate: ProfileStatus = "early-estimate"
    public static let fromStorage: ProfileStatus = "from-measurement-storage"
    public static let manuallyEntered: ProfileStatus = "manually-entered"
}

/// Value statuses added by this module (besides IoMTCore's `ValueStatus` constants).
extension ValueStatus {
    /// The device marked the measurement invalid.
    public static let invalidMeasurement: ValueStatus = "invalid"
    /// The device said no measurement is available.
    public static let notAvailable: ValueStatus = "not-available"
    /// The device said the result is above / below what it can process.
    public static let aboveDeviceRange: ValueStatus = "above-device-range"
    public static let belowDeviceRange: ValueStatus = "below-device-range"
}

// MARK: - Errors

/// Why a payload was refused (besides a truncated field, which is `ByteReaderError`).
public struct HealthDecodeError: Error, Hashable, Sendable, CustomStringConvertible {
    public var field: String
    public var reason: String
    public init(field: String, reason: String) { self.field = field; self.reason = reason }
    public var description: String { "malformed \(field): \(reason)" }
}

// MARK: - Time

/// The GATT Date Time (0x2A08) value: GSS §3.70 Date Time; reference §10.4. Zero year, month or
/// day means "unknown" (reference §13.12): such a time is never turned into an instant.
public struct DateTime: Hashable, Sendable {
    public var year: UInt16
    public var month: UInt8
    public var day: UInt8
    public var hours: UInt8
    public var minutes: UInt8
    public var seconds: UInt8

    public init(year: UInt16, month: UInt8, day: UInt8, hours: UInt8, minutes: UInt8, seconds: UInt8) {
        self.year = year; self.month = month; self.day = day
        self.hours = hours; self.minutes = minutes; self.seconds = seconds
    }

    public static func read(_ r: inout ByteReader) throws(ByteReaderError) -> DateTime {
        DateTime(year: try r.u16le("date time year"), month: try r.u8("date time month"),
                 day: try r.u8("date time day"), hours: try r.u8("date time hours"),
                 minutes: try r.u8("date time minutes"), seconds: try r.u8("date time seconds"))
    }

    public var encoded: [UInt8] {
        [UInt8(year & 0xFF), UInt8(year >> 8), month, day, hours, minutes, seconds]
    }

    /// True when a field is 0 = unknown (year, month or day).
    public var isUnknown: Bool { year == 0 || month == 0 || day == 0 }

    /// True when every field is inside its GSS range and the day exists in that month.
    public var isValid: Bool {
        guard (1582...9999).contains(year), (1...12).contains(month), day >= 1,
              hours < 24, minutes < 60, seconds < 60 else { return false }
        return Int(day) <= DateTime.daysIn(month: Int(month), year: Int(year))
    }

    /// Seconds since 1970-01-01T00:00:00 reading the fields as if they were UTC; nil when
    /// unknown or invalid.
    public var secondsSinceEpochAsUTC: Int64? {
        guard isValid else { return nil }
        return CivilTime.days(Int64(year), Int64(month), Int64(day)) * 86_400
            + Int64(hours) * 3600 + Int64(minutes) * 60 + Int64(seconds)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}

/// Proleptic Gregorian day arithmetic: IoMTCore's (`Timestamp.days(fromCivil:)`).
enum CivilTime {
    static func days(_ y: Int64, _ m: Int64, _ d: Int64) -> Int64 { Timestamp.days(fromCivil: y, m, d) }
    static func civil(_ z: Int64) -> (year: Int64, month: Int64, day: Int64) { Timestamp.civil(fromDays: z) }
}

/// The time a device stamped on a measurement, before the gateway decides how far to trust it.
///
/// Profile Date Time fields carry no UTC offset (reference §10.5): `isUTC == false` and the
/// caller supplies the device's offset (Local Time Information, CGM TZ/DST) or the gateway's.
public struct DeviceTime: Hashable, Sendable {
    /// Milliseconds since 1970-01-01 reading the device's fields as if they were UTC.
    public var fieldsAsUTCMilliseconds: Int64
    /// The device stated UTC (GHS/ETS with the UTC flag).
    public var isUTC: Bool
    /// An offset the device itself stated (ETS TZ/DST, CGM session TZ+DST), minutes east of UTC.
    public var statedUTCOffsetMinutes: Int?
    /// The device flagged its own clock as not set / faulty (PLX flag bit 4, glucose time fault,
    /// ETS not-current-timeline). Such a time is `.deviceUnsynchronized` whatever the gateway knows.
    public var clockFlaggedUnreliable: Bool

    public init(fieldsAsUTCMilliseconds: Int64, isUTC: Bool = false, statedUTCOffsetMinutes: Int? = nil,
                clockFlaggedUnreliable: Bool = false) {
        self.fieldsAsUTCMilliseconds = fieldsAsUTCMilliseconds
        self.isUTC = isUTC
        self.statedUTCOffsetMinutes = statedUTCOffsetMinutes
        self.clockFlaggedUnreliable = clockFlaggedUnreliable
    }

    /// From a Date Time plus an added offset in minutes (glucose Time Offset). Nil if unknown/invalid.
    public init?(_ dt: DateTime, addingMinutes: Int = 0, clockFlaggedUnreliable: Bool = false) {
        guard let s = dt.secondsSinceEpochAsUTC else { return nil }
        self.init(fieldsAsUTCMilliseconds: (s + Int64(addingMinutes) * 60) * 1000,
                  clockFlaggedUnreliable: clockFlaggedUnreliable)
    }

    /// The instant, using the device's stated offset, else `assumedUTCOffsetMinutes` (the gateway's
    /// own offset; the PHD IG assumes device and gateway share a time zone, reference §10.5).
    public func instant(assumedUTCOffsetMinutes: Int) -> Timestamp {
        if isUTC { return Timestamp(millisecondsSinceEpoch: fieldsAsUTCMilliseconds) }
        let offset = Int64(statedUTCOffsetMinutes ?? assumedUTCOffsetMinutes)
        return Timestamp(millisecondsSinceEpoch: fieldsAsUTCMilliseconds - offset * 60_000)
    }
}

/// What the gateway knows about a device's clock at the time of a measurement (reference §10.5).
public enum DeviceClockState: Hashable, Sendable {
    /// Nothing: the clock was neither set nor compared.
    case unknown
    /// The gateway wrote the device clock (CTS / ETS) on this connection.
    case setByGateway
    /// The gateway read the device clock: device − gateway, in milliseconds.
    case measuredOffset(milliseconds: Int64)
}

/// Picks the measurement time and its quality (IoMTCore `TimeQuality`), reference §10.5:
/// no device time → gateway receipt; a flagged clock → the device time, `.deviceUnsynchronized`;
/// a measured offset → corrected; a clock the gateway set → synchronized.
public func resolveMeasurementTime(_ deviceTime: DeviceTime?, receivedAt: Timestamp, clock: DeviceClockState,
                                   gatewayUTCOffsetMinutes: Int) -> (Timestamp, TimeQuality) {
    guard let deviceTime else { return (receivedAt, .gatewayReceipt) }
    let t = deviceTime.instant(assumedUTCOffsetMinutes: gatewayUTCOffsetMinutes)
    if deviceTime.clockFlaggedUnreliable { return (t, .deviceUnsynchronized) }
    switch clock {
    case .unknown: return (t, .deviceUnsynchronized)
    case .setByGateway: return (t, .deviceSynchronized)
    case .measuredOffset(let ms):
        let (corrected, overflow) = t.millisecondsSinceEpoch.subtractingReportingOverflow(ms)
        return overflow ? (t, .deviceUnsynchronized) : (Timestamp(millisecondsSinceEpoch: corrected), .deviceCorrected)
    }
}

// MARK: - Decoded measurement

/// What every decoder returns: normalized observations, profile statuses (never numbers), and
/// the device's time stamp if it sent one.
public struct DecodedMeasurement: Hashable, Sendable {
    public var observations: [Observation]
    public var statuses: [ProfileStatus]
    public var deviceTime: DeviceTime?
    /// False for control solution, demonstration or test data (reference §13.15): the agent
    /// should not publish these as patient measurements.
    public var isPatientData: Bool
    /// The device's user index where the profile carries one (0xFF = unknown user).
    public var userID: UInt8?

    public init(observations: [Observation] = [], statuses: [ProfileStatus] = [], deviceTime: DeviceTime? = nil,
                isPatientData: Bool = true, userID: UInt8? = nil) {
        self.observations = observations
        self.statuses = statuses
        self.deviceTime = deviceTime
        self.isPatientData = isPatientData
        self.userID = userID
    }
}

// MARK: - Plausible ranges

/// Per (MDC code, UCUM unit) ranges a decoder accepts; anything outside becomes
/// `.unavailable(.outOfRange)` (never a number). Deliberately wide: they catch corrupt or
/// mis-scaled values (e.g. the reference's test glucose 30 kg/L), not clinical alarms.
public enum PlausibleRange {
    public static func range(for code: MDCCode, unit: UCUMUnit) -> ClosedRange<Double>? {
        switch (code.rawValue, unit.rawValue) {
        case (147842, "/min"), (149530, "/min"), (149546, "/min"): return 20...300
        case (147240, "ms"): return 200...3000
        case (150456, "%"): return 0...100
        case (150488, "%"): return 0...100
        case (150021, "mm[Hg]"), (150022, "mm[Hg]"), (150023, "mm[Hg]"): return 10...300
        case (150021, "kPa"), (150022, "kPa"), (150023, "kPa"): return 1.3...40
        case (150036, "mm[Hg]"): return 0...350
        case (150036, "kPa"): return 0...47
        case (150364, "Cel"), (188452, "Cel"), (188428, "Cel"), (188432, "Cel"), (188456, "Cel"),
             (188424, "Cel"), (188420, "Cel"), (188448, "Cel"), (150392, "Cel"): return 20...45
        case (150364, "[degF]"), (188452, "[degF]"), (188428, "[degF]"), (188432, "[degF]"), (188456, "[degF]"),
             (188424, "[degF]"), (188420, "[degF]"), (188448, "[degF]"), (150392, "[degF]"): return 68...113
        case (188736, "kg"): return 0.5...500
        case (188736, "[lb_av]"): return 1...1100
        case (188740, "cm"): return 30...275
        case (188740, "[in_i]"): return 12...108
        case (188752, "kg/m2"): return 5...150
        case (188748, "%"): return 0...100
        case (151562, "/min"): return 1...150
        case (67996, "%"): return 0...100
        case (160184...160212, "mg/dL"), (160364, "mg/dL"), (160368, "mg/dL"): return 10...1000
        case (160184...160212, "mmol/L"), (160364, "mmol/L"), (160368, "mmol/L"): return 0.5...55.5
        default: return nil
        }
    }

    /// Applies the range to a value: a number outside it becomes `.unavailable(.outOfRange)`;
    /// waveform samples outside it make the whole batch `.outOfRange` (a partial series would
    /// misplace the remaining samples in time).
    public static func check(_ value: ObservationValue, code: MDCCode, unit: UCUMUnit) -> ObservationValue {
        switch value {
        case .numeric(let v):
            guard v.isFinite else { return .unavailable(.outOfRange) }
            if let r = range(for: code, unit: unit), !r.contains(v) { return .unavailable(.outOfRange) }
            return value
        case .waveform(let samples, _):
            if samples.contains(where: { !$0.isFinite }) { return .unavailable(.outOfRange) }
            if let r = range(for: code, unit: unit), samples.contains(where: { !r.contains($0) }) {
                return .unavailable(.outOfRange)
            }
            return value
        case .unavailable:
            return value
        }
    }
}

/// Builds an observation with the range check applied and the LOINC code from IoMTCore.
public func makeObservation(_ code: MDCCode, _ value: ObservationValue, _ unit: UCUMUnit) -> Observation {
    Observation(code: code, value: PlausibleRange.check(value, code: code, unit: unit), unit: unit)
}

/// Builds an observation from a medical float, scaled by `scale` (e.g. kg/L → mg/dL = 10⁵).
func makeObservation(_ code: MDCCode, _ f: MedicalFloat, _ unit: UCUMUnit, scale: Double = 1) -> Observation {
    switch f.kind {
    case .special(let s): return Observation(code: code, value: .unavailable(s), unit: unit)
    case .finite:
        guard let d = f.doubleValue else { return Observation(code: code, value: .unavailable(.outOfRange), unit: unit) }
        return makeObservation(code, .numeric(scale == 1 ? d : scaled(d, scale)), unit)
    }
}

/// Multiplies and rounds away binary noise at 12 significant digits (1.2e-3 × 1e5 = 120, not 120.00000000000001).
func scaled(_ v: Double, _ factor: Double) -> Double {
    let r = v * factor
    guard r.isFinite, r != 0 else { return r }
    var magnitude = 1.0
    var a = abs(r)
    var e = 0
    while a >= 10, e < 400 { a /= 10; e += 1 }
    while a < 1, e > -400 { a *= 10; e -= 1 }
    let digits = 11 - e
    if digits > 0, digits < 300 {
        magnitude = MedicalFloat.pow10(digits)
        let q = (r * magnitude).rounded() / magnitude
        return q.isFinite ? q : r
    }
    return r
}

// MARK: - Explicit unit conversion (opt-in)

/// Unit conversions the configuration can ask for; decoders never convert between unit systems
/// on their own. Reference §4.1 (kPa→mmHg ÷ 0.133322387415), §6.1 (glucose 18.0 [U constant]).
public enum UnitConversion {
    /// The conversions this function knows (from → to).
    public static let supported: [(UCUMUnit, UCUMUnit)] = [
        (.kilopascal, .millimetreMercury), (.millimetreMercury, .kilopascal),
        (.fahrenheit, .celsius), (.celsius, .fahrenheit),
        (.pound, .kilogram), (.kilogram, .pound),
        (.inch, .centimetre), (.centimetre, .inch),
        (.millimolePerLitre, .milligramPerDecilitre), (.milligramPerDecilitre, .millimolePerLitre),
    ]

    /// Converts a value between units; nil if this pair is not supported.
    public static func convert(_ v: Double, from: UCUMUnit, to: UCUMUnit) -> Double? {
        if from == to { return v }
        let r: Double
        switch (from.rawValue, to.rawValue) {
        case ("kPa", "mm[Hg]"): r = v / 0.133322387415
        case ("mm[Hg]", "kPa"): r = v * 0.133322387415
        case ("[degF]", "Cel"): r = (v - 32) * 5 / 9
        case ("Cel", "[degF]"): r = v * 9 / 5 + 32
        case ("[lb_av]", "kg"): r = v * 0.45359237
        case ("kg", "[lb_av]"): r = v / 0.45359237
        case ("[in_i]", "cm"): r = v * 2.54
        case ("cm", "[in_i]"): r = v / 2.54
        case ("mmol/L", "mg/dL"): r = v * 18.0
        case ("mg/dL", "mmol/L"): r = v / 18.0
        default: return nil
        }
        return scaled(r, 1)
    }

    /// Converts an observation (number or waveform) to `unit` when the pair is supported;
    /// otherwise returns it unchanged. Unavailable values keep their status. The range check is
    /// applied again in the new unit.
    public static func convert(_ o: Observation, to unit: UCUMUnit) -> Observation {
        guard o.unit != unit, convert(1, from: o.unit, to: unit) != nil else { return o }
        var out = o
        out.unit = unit
        switch o.value {
        case .numeric(let v):
            out.value = convert(v, from: o.unit, to: unit).map { ObservationValue.numeric($0) } ?? .unavailable(.outOfRange)
        case .waveform(let samples, let period):
            out.value = .waveform(samples: samples.map { convert($0, from: o.unit, to: unit) ?? .nan },
                                  samplePeriodMilliseconds: period)
        case .unavailable:
            break
        }
        out.value = PlausibleRange.check(out.value, code: o.code, unit: unit)
        return out
    }

    /// Applies a configured set of target units (e.g. `[.millimetreMercury, .celsius]`) to a decoding.
    public static func apply(_ targets: [UCUMUnit], to m: DecodedMeasurement) -> DecodedMeasurement {
        var out = m
        out.observations = m.observations.map { o in
            targets.first { t in convert(1, from: o.unit, to: t) != nil }.map { convert(o, to: $0) } ?? o
        }
        return out
    }
}

/// Bits set in `value`, lowest first.
func setBits<T: FixedWidthInteger>(_ value: T) -> [Int] {
    (0..<T.bitWidth).filter { value & (T(1) << $0) != 0 }
}
