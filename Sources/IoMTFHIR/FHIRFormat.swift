import IoMTCore
import IoMTHealthProfiles

/// Options of the FHIR output (`output.format: fhir`). The identifier systems are the
/// deployment's: a hospital sets the patient identifier system its EHR uses (e.g. an MRN OID).
public struct FHIROptions: Hashable, Sendable {
    /// System of the patient identifier: the subject is `Patient?identifier=<system>|<patient id>`.
    public var patientIdentifierSystem: String
    /// System of the sensor's identifier (`Observation.device`).
    public var deviceIdentifierSystem: String
    /// System of the gateway's identifier (the `observation-gatewayDevice` extension).
    public var gatewayIdentifierSystem: String
    /// System of the per-observation de-duplication identifier (value `<reading id>-<index>`).
    public var observationIdentifierSystem: String

    public init(patientIdentifierSystem: String = "urn:iomt-agent:patient-id",
                deviceIdentifierSystem: String = "urn:iomt-agent:device-id",
                gatewayIdentifierSystem: String = "urn:iomt-agent:gateway-id",
                observationIdentifierSystem: String = "urn:iomt-agent:observation-id") {
        self.patientIdentifierSystem = patientIdentifierSystem
        self.deviceIdentifierSystem = deviceIdentifierSystem
        self.gatewayIdentifierSystem = gatewayIdentifierSystem
        self.observationIdentifierSystem = observationIdentifierSystem
    }
}

/// FHIR R4 (4.0.1) rendering of a `Reading`, shaped as the HL7 Personal Health Device IG 2.0.0
/// describes (reference `ble-health-profiles.md` §12).
///
/// One reading → one **transaction** Bundle (chosen over `batch`: a reading is one measurement
/// event, and a blood-pressure panel or a reading's observations must not be stored in part).
/// Each entry is `POST Observation` with `ifNoneExist: identifier=<system>|<reading id>-<index>`:
/// conditional create on an identifier derived from the reading id, which is stable across
/// redeliveries, so a redelivered reading creates nothing new on a FHIR server.
///
/// Per Observation (PHD IG §12.1): `meta.profile` (PhdNumericObservation, PhdCompoundNumeric-
/// Observation for blood pressure, PhdRtsaObservation for waveforms), the
/// `observation-gatewayDevice` extension, the identifier, `status` final, category `phd`
/// (+ `vital-signs` where the code has a vital-signs LOINC), MDC coding
/// (`urn:iso:std:iso:11073:10101`) + LOINC coding, `subject`, `effectiveDateTime`, `device`,
/// `valueQuantity` with UCUM, `dataAbsentReason` for values without a number (§1.2, §12.3), and
/// `valueSampledData` for waveforms. Systolic/diastolic/mean of one reading become one compound
/// blood-pressure Observation (150020, LOINC 85354-9) with components, as in the IG example;
/// every other observation is its own Observation.
public enum FHIRFormat {
    public static let phdCategorySystem = "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories"
    public static let observationCategorySystem = "http://terminology.hl7.org/CodeSystem/observation-category"
    public static let mdcSystem = "urn:iso:std:iso:11073:10101"
    public static let loincSystem = "http://loinc.org"
    public static let ucumSystem = "http://unitsofmeasure.org"
    public static let dataAbsentReasonSystem = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
    public static let gatewayDeviceExtension = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
    static let profileBase = "http://hl7.org/fhir/uv/phd/StructureDefinition/"

    /// The FHIR Bundle for a reading with default options (what the agent calls instead of
    /// `WireFormat.json` when `output.format: fhir`).
    public static func json(_ reading: Reading) -> [UInt8] { json(reading, options: FHIROptions()) }

    public static func json(_ reading: Reading, options: FHIROptions) -> [UInt8] {
        var w = JSONWriter(capacity: 1024 + reading.body.observations.count * 1400)
        w.beginObject()
        w.field("resourceType", "Bundle")
        w.key("identifier"); w.beginObject()
        w.field("system", "urn:ietf:rfc:3986")
        w.field("value", "urn:uuid:\(reading.id)")
        w.endObject()
        w.field("type", "transaction")
        w.key("entry"); w.beginArray()
        for (i, item) in group(reading.body.observations).enumerated() {
            let identifier = "\(reading.id)-\(i)"
            w.beginObject()
            w.field("fullUrl", "urn:uuid:\(entryUUID(reading.id, i))")
            w.key("resource")
            writeObservation(&w, item, reading: reading, identifier: identifier, options: options)
            w.key("request"); w.beginObject()
            w.field("method", "POST")
            w.field("url", "Observation")
            w.field("ifNoneExist", "identifier=\(queryEscape(options.observationIdentifierSystem))|\(queryEscape(identifier))")
            w.endObject()
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes
    }

    /// What becomes one Observation resource.
    enum Item {
        case single(Observation)
        case bloodPressure([Observation])
    }

    /// Groups systolic + diastolic (+ mean) into one compound item; keeps everything else apart.
    static func group(_ observations: [Observation]) -> [Item] {
        let bpCodes: Set<MDCCode> = [.systolic, .diastolic, .meanArterialPressure]
        let bp = observations.filter { bpCodes.contains($0.code) }
        let hasPanel = bp.contains { $0.code == .systolic } && bp.contains { $0.code == .diastolic }
            && Set(bp.map(\.code)).count == bp.count
        var items: [Item] = []
        var bpPlaced = false
        for o in observations {
            if hasPanel, bpCodes.contains(o.code) {
                if !bpPlaced { items.append(.bloodPressure(bp)); bpPlaced = true }
            } else {
                items.append(.single(o))
            }
        }
        return items
    }

    static func writeObservation(_ w: inout JSONWriter, _ item: Item, reading: Reading, identifier: String,
                                 options: FHIROptions) {
        let code: MDCCode, loinc: String?, profile: String
        switch item {
        case .single(let o):
            code = o.code
            loinc = o.loinc
            if case .waveform = o.value { profile = "PhdRtsaObservation" } else { profile = "PhdNumericObservation" }
        case .bloodPressure:
            code = .bloodPressure
            loinc = MDCCode.bloodPressure.loinc
            profile = "PhdCompoundNumericObservation"
        }
        w.beginObject()
        w.field("resourceType", "Observation")
        w.key("meta"); w.beginObject()
        w.key("profile"); w.beginArray(); w.string(profileBase + profile); w.endArray()
        w.endObject()
        w.key("extension"); w.beginArray(); w.beginObject()
        w.field("url", gatewayDeviceExtension)
        w.key("valueReference"); w.beginObject()
        w.key("identifier"); identifierObject(&w, options.gatewayIdentifierSystem, reading.gatewayID)
        w.endObject()
        w.endObject(); w.endArray()
        w.key("identifier"); w.beginArray()
        identifierObject(&w, options.observationIdentifierSystem, identifier)
        w.endArray()
        w.field("status", "final")
        w.key("category"); w.beginArray()
        if code.loinc != nil { codeableConcept(&w, observationCategorySystem, "vital-signs", "Vital Signs") }
        codeableConcept(&w, phdCategorySystem, "phd", "PHD generated")
        w.endArray()
        w.key("code"); mdcConcept(&w, code, loinc: loinc)
        w.key("subject"); w.beginObject()
        w.field("reference", "Patient?identifier=\(queryEscape(options.patientIdentifierSystem))|\(queryEscape(reading.patientID))")
        w.endObject()
        w.field("effectiveDateTime", reading.body.measuredAt.rfc3339)
        var notes: [String] = []
        switch reading.body.timeQuality {
        case .deviceUnsynchronized: notes.append("time-quality: device clock not synchronized (device-unsynchronized)")
        case .gatewayReceipt: notes.append("time-quality: gateway receipt time (the device sent no time)")
        case .simulated: notes.append("time-quality: simulated")
        default: break
        }
        if !reading.body.deviceStatus.isEmpty {
            notes.append("device-status: " + reading.body.deviceStatus.joined(separator: ", "))
        }
        switch item {
        case .single(let o):
            writeValue(&w, o.value, unit: o.unit, notes: &notes, code: o.code)
        case .bloodPressure(let parts):
            w.key("component"); w.beginArray()
            for p in parts {
                w.beginObject()
                w.key("code"); mdcConcept(&w, p.code, loinc: p.loinc)
                var partNotes: [String] = []
                writeValue(&w, p.value, unit: p.unit, notes: &partNotes, code: p.code)
                notes += partNotes.map { "\(HealthCodes.referenceID(p.code) ?? String(p.code.rawValue)): \($0)" }
                w.endObject()
            }
            w.endArray()
        }
        w.key("device"); w.beginObject()
        w.key("identifier"); identifierObject(&w, options.deviceIdentifierSystem, reading.device.id)
        w.field("display", reading.device.profile)
        w.endObject()
        if !notes.isEmpty {
            w.key("note"); w.beginArray()
            for n in notes { w.beginObject(); w.field("text", n); w.endObject() }
            w.endArray()
        }
        w.endObject()
    }

    /// `valueQuantity`, `valueSampledData` or `dataAbsentReason` (PHD IG: value[x] omitted when absent).
    static func writeValue(_ w: inout JSONWriter, _ value: ObservationValue, unit: UCUMUnit, notes: inout [String], code: MDCCode) {
        switch value {
        case .numeric(let v) where v.isFinite:
            w.key("valueQuantity"); w.beginObject()
            w.key("value"); w.number(v)
            unitFields(&w, unit)
            w.endObject()
        case .numeric:
            dataAbsent(&w, .outOfRange, notes: &notes)
        case .waveform(let samples, let period):
            guard samples.allSatisfy(\.isFinite), period.isFinite, period >= 0 else { dataAbsent(&w, .outOfRange, notes: &notes); return }
            w.key("valueSampledData"); w.beginObject()
            w.key("origin"); w.beginObject()
            w.key("value"); w.number(0)
            unitFields(&w, unit)
            w.endObject()
            w.key("period"); w.number(period)
            w.key("dimensions"); w.uint(1)
            if !samples.isEmpty {
                var text = ""
                for (i, s) in samples.enumerated() { if i > 0 { text += " " }; text += decimalText(s) }
                w.field("data", text)
            }
            w.endObject()
            if period == 0 { notes.append("samples are consecutive intervals, not evenly spaced (period 0)") }
        case .unavailable(let status):
            dataAbsent(&w, status, notes: &notes)
        }
    }

    static func dataAbsent(_ w: inout JSONWriter, _ status: ValueStatus, notes: inout [String]) {
        let (code, display) = dataAbsentReason(status)
        w.key("dataAbsentReason"); codeableConcept(&w, dataAbsentReasonSystem, code, display)
        notes.append("gateway value status: \(status.rawValue)")
    }

    /// Status → `data-absent-reason` code (reference §1.2 for the 11073 specials, §12.3 for the
    /// measurement statuses: invalid → error, not available → not-performed).
    public static func dataAbsentReason(_ s: ValueStatus) -> (code: String, display: String) {
        switch s {
        case .notANumber: ("not-a-number", "Not a Number (NaN)")
        case .positiveInfinity: ("positive-infinity", "Positive Infinity (PINF)")
        case .negativeInfinity: ("negative-infinity", "Negative Infinity (NINF)")
        case .notAvailable, .sensorOff: ("not-performed", "Not Performed")
        case .missing: ("unknown", "Unknown")
        case .searching: ("temp-unknown", "Temporarily Unknown")
        default: ("error", "Error")  // NRes, reserved, out of range, invalid, device range, unknown statuses
        }
    }

    static func unitFields(_ w: inout JSONWriter, _ unit: UCUMUnit) {
        if unit.rawValue.hasPrefix("mdc:") {
            let code = String(unit.rawValue.dropFirst(4))
            w.field("unit", code)
            w.field("system", mdcSystem)
            w.field("code", code)
        } else {
            w.field("unit", unit.rawValue)
            w.field("system", ucumSystem)
            w.field("code", unit.rawValue)
        }
    }

    static func mdcConcept(_ w: inout JSONWriter, _ code: MDCCode, loinc: String?) {
        w.beginObject()
        w.key("coding"); w.beginArray()
        w.beginObject()
        w.field("system", mdcSystem)
        w.field("code", String(code.rawValue))
        if let display = HealthCodes.referenceID(code) { w.field("display", display) }
        w.endObject()
        if let loinc {
            w.beginObject(); w.field("system", loincSystem); w.field("code", loinc); w.endObject()
        }
        w.endArray()
        w.endObject()
    }

    static func codeableConcept(_ w: inout JSONWriter, _ system: String, _ code: String, _ display: String) {
        w.beginObject()
        w.key("coding"); w.beginArray(); w.beginObject()
        w.field("system", system); w.field("code", code); w.field("display", display)
        w.endObject(); w.endArray()
        w.endObject()
    }

    static func identifierObject(_ w: inout JSONWriter, _ system: String, _ value: String) {
        w.beginObject(); w.field("system", system); w.field("value", value); w.endObject()
    }

    /// A deterministic UUID per entry (the reading id with the index mixed into its random
    /// bits), so a redelivered reading renders byte-identical Bundles.
    static func entryUUID(_ id: ReadingID, _ index: Int) -> ReadingID {
        ReadingID(high: id.high, low: id.low ^ (UInt64(truncatingIfNeeded: index + 1) & 0x0000_FFFF_FFFF_FFFF))
    }

    /// Percent-encodes everything outside `A-Z a-z 0-9 - . _ ~ : /` for a search parameter value.
    static func queryEscape(_ s: String) -> String {
        let hex = Array("0123456789ABCDEF")
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ":"), UInt8(ascii: "/"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                out += "%" + String(hex[Int(b >> 4)]) + String(hex[Int(b & 0xF)])
            }
        }
        return out
    }

    /// A sample as JSON-number-compatible decimal text (SampledData.data is space-separated decimals).
    static func decimalText(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        var w = JSONWriter(capacity: 24)
        w.number(d)
        return String(decoding: w.bytes, as: UTF8.self)
    }
}
