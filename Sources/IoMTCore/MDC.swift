/// An IEEE 11073-10101 nomenclature code (MDC), as the 32-bit "context-free" number
/// (partition << 16 | term code), e.g. 150456 = 2:19384 `MDC_PULS_OXIM_SAT_O2`.
///
/// An open set: unknown codes round-trip unchanged (their reference id is nil).
public struct MDCCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(partition: UInt16, term: UInt16) {
        rawValue = UInt32(partition) << 16 | UInt32(term)
    }

    public var partition: UInt16 { UInt16(rawValue >> 16) }
    public var term: UInt16 { UInt16(rawValue & 0xFFFF) }

    /// The reference id (e.g. `MDC_PULS_OXIM_SAT_O2`) where this table knows it.
    public var referenceID: String? { MDCCode.referenceIDs[rawValue] }

    public var description: String { referenceID.map { "\($0) (\(rawValue))" } ?? String(rawValue) }

    // Codes and LOINC mappings from ../shared/reference/ble-health-profiles.md §11
    // (sources: IEEE 11073-10101 via the HL7 PHD IG and the FHIR vital-signs profile).
    public static let pulseOximetrySpO2 = MDCCode(rawValue: 150456)        // MDC_PULS_OXIM_SAT_O2
    public static let pulseOximetryPulseRate = MDCCode(rawValue: 149530)   // MDC_PULS_OXIM_PULS_RATE
    public static let pulseOximetryPerfusionIndex = MDCCode(rawValue: 150488) // MDC_PULS_OXIM_PERF_REL [U]
    public static let pulseOximetryPleth = MDCCode(rawValue: 150452)       // MDC_PULS_OXIM_PLETH [U]
    public static let pulseRateNonInvasive = MDCCode(rawValue: 149546)     // MDC_PULS_RATE_NON_INV
    public static let heartRate = MDCCode(rawValue: 147842)                // MDC_ECG_HEART_RATE
    public static let rrInterval = MDCCode(rawValue: 147240)               // MDC_ECG_TIME_PD_RR_GL
    public static let bloodPressure = MDCCode(rawValue: 150020)            // MDC_PRESS_BLD_NONINV
    public static let systolic = MDCCode(rawValue: 150021)                 // MDC_PRESS_BLD_NONINV_SYS
    public static let diastolic = MDCCode(rawValue: 150022)                // MDC_PRESS_BLD_NONINV_DIA
    public static let meanArterialPressure = MDCCode(rawValue: 150023)     // MDC_PRESS_BLD_NONINV_MEAN
    public static let bodyTemperature = MDCCode(rawValue: 150364)          // MDC_TEMP_BODY
    public static let bodyWeight = MDCCode(rawValue: 188736)               // MDC_MASS_BODY_ACTUAL
    public static let bodyHeight = MDCCode(rawValue: 188740)               // MDC_LEN_BODY_ACTUAL
    public static let bodyMassIndex = MDCCode(rawValue: 188752)            // MDC_RATIO_MASS_BODY_LEN_SQ
    public static let bodyFat = MDCCode(rawValue: 188748)                  // MDC_BODY_FAT
    public static let respirationRate = MDCCode(rawValue: 151562)          // MDC_RESP_RATE
    public static let batteryCharge = MDCCode(rawValue: 67996)             // MDC_ATTR_VAL_BATT_CHARGE
    public static let glucoseCapillaryWholeBlood = MDCCode(rawValue: 160184) // MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD
    public static let glucoseCapillaryPlasma = MDCCode(rawValue: 160188)   // MDC_CONC_GLU_CAPILLARY_PLASMA
    public static let glucoseISF = MDCCode(rawValue: 160212)               // MDC_CONC_GLU_ISF

    static let referenceIDs: [UInt32: String] = [
        150456: "MDC_PULS_OXIM_SAT_O2",
        149530: "MDC_PULS_OXIM_PULS_RATE",
        150488: "MDC_PULS_OXIM_PERF_REL",
        150452: "MDC_PULS_OXIM_PLETH",
        149546: "MDC_PULS_RATE_NON_INV",
        147842: "MDC_ECG_HEART_RATE",
        147240: "MDC_ECG_TIME_PD_RR_GL",
        150020: "MDC_PRESS_BLD_NONINV",
        150021: "MDC_PRESS_BLD_NONINV_SYS",
        150022: "MDC_PRESS_BLD_NONINV_DIA",
        150023: "MDC_PRESS_BLD_NONINV_MEAN",
        150364: "MDC_TEMP_BODY",
        188736: "MDC_MASS_BODY_ACTUAL",
        188740: "MDC_LEN_BODY_ACTUAL",
        188752: "MDC_RATIO_MASS_BODY_LEN_SQ",
        188748: "MDC_BODY_FAT",
        151562: "MDC_RESP_RATE",
        67996: "MDC_ATTR_VAL_BATT_CHARGE",
        160184: "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD",
        160188: "MDC_CONC_GLU_CAPILLARY_PLASMA",
        160212: "MDC_CONC_GLU_ISF",
    ]

    /// LOINC code of the FHIR vital-signs profile where one exists (reference §11).
    /// Codes the reference marks unverified are deliberately left out.
    public var loinc: String? {
        switch rawValue {
        case 150456: "2708-6"
        case 149530, 149546, 147842: "8867-4"
        case 150020: "85354-9"
        case 150021: "8480-6"
        case 150022: "8462-4"
        case 150364: "8310-5"
        case 188736: "29463-7"
        case 188740: "8302-2"
        case 188752: "39156-5"
        case 151562: "9279-1"
        default: nil
        }
    }
}

/// A UCUM unit code (case-sensitive form), e.g. `%`, `/min`, `mm[Hg]`, `Cel`.
public struct UCUMUnit: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    public static let percent: UCUMUnit = "%"
    public static let perMinute: UCUMUnit = "/min"
    public static let millimetreMercury: UCUMUnit = "mm[Hg]"
    public static let kilopascal: UCUMUnit = "kPa"
    public static let celsius: UCUMUnit = "Cel"
    public static let fahrenheit: UCUMUnit = "[degF]"
    public static let millisecond: UCUMUnit = "ms"
    public static let kilogram: UCUMUnit = "kg"
    public static let dimensionless: UCUMUnit = "1"
}
