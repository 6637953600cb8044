import IoMTCore

/// Reassembles Generic Health Sensor segments (Live Health Observations 0x2B8B, Stored Health
/// Observations 0x2BDD). GHS 1.0 §3.x segmentation header; reference §9.3: 1 octet — bit 0 first
/// segment, bit 1 last segment, bits 2-7 rolling counter (0-63, wraps).
///
/// A segment out of sequence, a continuation without a first segment, or a message over
/// `maximumSize` throws and drops the partial message (never a half-assembled observation).
public struct GHSSegmentReassembler: Sendable {
    public var maximumSize: Int
    private var buffer: [UInt8] = []
    private var lastCounter: UInt8?

    public init(maximumSize: Int = 8192) { self.maximumSize = maximumSize }

    /// True while a message is partly received.
    public var isAssembling: Bool { lastCounter != nil }

    /// Adds one notification; returns the complete message when this was its last segment.
    public mutating func append(_ segment: [UInt8]) throws -> [UInt8]? {
        var r = ByteReader(segment)
        let header = try r.u8("segmentation header")
        let first = header & 0x01 != 0, last = header & 0x02 != 0, counter = header >> 2
        if first {
            buffer = []
        } else {
            guard let prev = lastCounter else {
                throw HealthDecodeError(field: "segmentation header", reason: "continuation without a first segment")
            }
            guard counter == (prev &+ 1) & 0x3F else {
                reset()
                throw HealthDecodeError(field: "segmentation header", reason: "counter \(counter) after \(prev)")
            }
        }
        buffer += segment.dropFirst()
        guard buffer.count <= maximumSize else {
            reset()
            throw HealthDecodeError(field: "segmented message", reason: "longer than \(maximumSize) octets")
        }
        if last {
            defer { reset() }
            return buffer
        }
        lastCounter = counter
        return nil
    }

    public mutating func reset() { buffer = []; lastCounter = nil }
}

/// The GHS / Elapsed Time Service time stamp (9 octets): `Flags u8 | Time Value u48 | Time Sync
/// Source u8 | TZ/DST Offset s8`. ETS 1.0 §3.1 Current Elapsed Time; reference §9.5.
public struct ElapsedTime: Hashable, Sendable {
    public var flags: UInt8
    public var value: UInt64
    public var syncSource: UInt8
    public var offset: Int8

    public static func read(_ r: inout ByteReader) throws(ByteReaderError) -> ElapsedTime {
        let flags = try r.u8("time stamp flags")
        let v = try r.bytes(6, "time stamp value")
        let value = v.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        return ElapsedTime(flags: flags, value: value, syncSource: try r.u8("time sync source"),
                           offset: Int8(bitPattern: try r.u8("tz/dst offset")))
    }

    public var isTickCounter: Bool { flags & 0x01 != 0 }
    public var isUTC: Bool { flags & 0x02 != 0 }
    public var offsetUsed: Bool { flags & 0x10 != 0 }
    public var isCurrentTimeline: Bool { flags & 0x20 != 0 }

    /// Milliseconds since 2000-01-01 (epoch per reference §9.5); resolution bits 2-3.
    public var millisecondsSince2000: Int64 {
        let v = Int64(value)  // < 2^48
        switch (flags >> 2) & 0x03 {
        case 0: return v * 1000
        case 1: return v * 100
        case 2: return v
        default: return v / 10
        }
    }

    /// Nil for a tick counter (no wall-clock time). Unreliable when not on the current
    /// timeline or the sync source says "not synchronized" (7).
    public var deviceTime: DeviceTime? {
        guard !isTickCounter else { return nil }
        return DeviceTime(fieldsAsUTCMilliseconds: 946_684_800_000 + millisecondsSince2000, isUTC: isUTC,
                          statedUTCOffsetMinutes: offsetUsed ? Int(offset) * 15 : nil,
                          clockFlaggedUnreliable: !isCurrentTimeline || syncSource == 7)
    }
}

/// One decoded GHS health observation. Reference §9.4.
public struct GHSObservation: Hashable, Sendable {
    public enum Value: Hashable, Sendable {
        /// Numeric (class 0x01): MDC unit (partition 4 term, expanded to 32 bits) and FLOAT.
        case numeric(unit: MDCCode, value: MedicalFloat)
        /// Observation bundle (class 0xFF).
        case bundle([GHSObservation])
        /// Other classes, kept as bytes (not turned into observations).
        case other(classType: UInt8, bytes: [UInt8])
    }
    public var classType: UInt8
    public var flags: UInt16
    public var type: MDCCode?
    public var time: ElapsedTime?
    public var measurementStatus: UInt16?
    public var patientID: UInt8?
    public var supplementalInformation: [MDCCode]
    public var value: Value
}

/// Generic Health Sensor 0x1840 health observations. Reference §9.
public enum GenericHealthSensor {
    /// Decodes one reassembled Live Health Observation (or, with `stored: true`, a Stored Health
    /// Observation prefixed by its u32 record number).
    ///
    /// The Length field is read both ways the implementations disagree on (reference §13.6:
    /// ST excludes Class+Length, Philips includes them); the one that matches the message size
    /// wins. Fields whose size the reference does not verify (duration, object id, derived-from,
    /// is-member-of, TLVs) make the observation undecodable rather than guessed.
    public static func decode(_ message: [UInt8], stored: Bool = false) throws -> (recordNumber: UInt32?, observation: GHSObservation) {
        var r = ByteReader(message)
        let record = stored ? try r.u32le("record number") : nil
        let start = r.offset
        var peek = r
        _ = try peek.u8("observation class")
        let len = Int(try peek.u16le("observation length"))
        let total = message.count - start
        let includesHeader: Bool
        if total == len + 3 { includesHeader = false }
        else if total == len { includesHeader = true }
        else { throw HealthDecodeError(field: "observation length", reason: "\(len) does not match \(total) octets") }
        let obs = try parse(&r, includesHeader: includesHeader, inherited: nil, depth: 0)
        return (record, obs)
    }

    static func parse(_ r: inout ByteReader, includesHeader: Bool, inherited: ElapsedTime?, depth: Int) throws -> GHSObservation {
        guard depth < 4 else { throw HealthDecodeError(field: "observation bundle", reason: "nested too deep") }
        let start = r.offset
        let cls = try r.u8("observation class")
        let len = Int(try r.u16le("observation length"))
        let end = includesHeader ? start + len : start + 3 + len
        guard end <= r.bytes.count, end >= r.offset + 2 else {
            throw HealthDecodeError(field: "observation length", reason: "\(len) overruns the message")
        }
        var body = ByteReader(Array(r.bytes[r.offset..<end]))
        r = ByteReader(r.bytes, offset: end)
        let flags = try body.u16le("observation flags")
        var type: MDCCode?, time: ElapsedTime? = inherited, status: UInt16?, patient: UInt8?, supp: [MDCCode] = []
        if flags & 0x0001 != 0 { type = MDCCode(rawValue: try body.u32le("observation type")) }
        if flags & 0x0002 != 0 { time = try ElapsedTime.read(&body) }
        for (bit, name) in [(2, "measurement duration"), (4, "object id")] where flags & (1 << bit) != 0 {
            throw HealthDecodeError(field: name, reason: "present but its size is unverified")
        }
        if flags & 0x0008 != 0 { status = try body.u16le("measurement status") }
        if flags & 0x0020 != 0 { patient = try body.u8("patient id") }
        if flags & 0x0040 != 0 {
            let n = try body.u8("supplemental information count")
            for _ in 0..<n { supp.append(MDCCode(rawValue: try body.u32le("supplemental information"))) }
        }
        for (bit, name) in [(7, "derived-from"), (8, "is-member-of"), (9, "tlvs")] where flags & (1 << bit) != 0 {
            throw HealthDecodeError(field: name, reason: "present but its format is unverified")
        }
        let value: GHSObservation.Value
        switch cls {
        case 0x01:
            let unit = try body.u16le("unit")
            value = .numeric(unit: MDCCode(partition: 4, term: unit), value: try body.float("numeric value"))
        case 0xFF:
            let n = try body.u8("bundle count")
            var members: [GHSObservation] = []
            for _ in 0..<n { members.append(try parse(&body, includesHeader: includesHeader, inherited: time, depth: depth + 1)) }
            value = .bundle(members)
        default:
            value = .other(classType: cls, bytes: Array(try body.bytes(body.remaining, "observation value")))
        }
        return GHSObservation(classType: cls, flags: flags, type: type, time: time, measurementStatus: status,
                              patientID: patient, supplementalInformation: supp, value: value)
    }

    /// MDC unit (partition 4) → UCUM (reference §11). Unknown units become `mdc:<code>` so the
    /// FHIR output can code them with the MDC system (PHD IG allows this for units without UCUM).
    public static func ucum(forUnit unit: MDCCode) -> UCUMUnit {
        switch unit.rawValue {
        case 262688: "%"
        case 264864, 264928: "/min"
        case 266016: "mm[Hg]"
        case 265987: "kPa"
        case 268192: "Cel"
        case 266560: "[degF]"
        case 264338: "ms"
        case 263875: "kg"
        case 263904: "[lb_av]"
        case 263441: "cm"
        case 263520: "[in_i]"
        case 264096: "kg/m2"
        case 264274: "mg/dL"
        case 266866: "mmol/L"
        case 262656: "1"
        default: UCUMUnit(rawValue: "mdc:\(unit.rawValue)")
        }
    }

    /// GHS measurement status bits (ST ghs.h, reference §9.4) → statuses.
    public static func statuses(_ s: UInt16) -> [ProfileStatus] {
        let names: [Int: ProfileStatus] = [0: .invalid, 1: .questionable, 2: .notAvailable, 3: .calibrationOngoing,
                                           4: .testData, 5: .earlyEstimate, 6: .manuallyEntered, 7: "setting",
                                           14: "threshold-error", 15: "thresholding-disabled"]
        return setBits(s).compactMap { names[$0] }
    }

    /// Numeric observations (bundles flattened) as normalized observations, with the statuses of
    /// every member; device time from the (bundle) time stamp.
    public static func normalized(_ o: GHSObservation) -> DecodedMeasurement {
        var m = DecodedMeasurement()
        m.deviceTime = o.time?.deviceTime
        if let t = o.time, t.isTickCounter { m.statuses.append("tick-counter-time") }
        collect(o, into: &m, inheritedStatus: nil, supplemental: [])
        return m
    }

    static func collect(_ o: GHSObservation, into m: inout DecodedMeasurement, inheritedStatus: UInt16?, supplemental: [MDCCode]) {
        let status = o.measurementStatus ?? inheritedStatus
        let supp = supplemental + o.supplementalInformation
        for code in o.supplementalInformation {
            let s = ProfileStatus(rawValue: "supplemental-\(code.rawValue)")
            if !m.statuses.contains(s) { m.statuses.append(s) }
        }
        if let s = o.measurementStatus {
            for st in statuses(s) where !m.statuses.contains(st) { m.statuses.append(st) }
            if s & (1 << 4) != 0 { m.isPatientData = false }
        }
        switch o.value {
        case .numeric(let unit, let f):
            guard let type = o.type else { m.statuses.append("observation-without-type"); return }
            var obs = makeObservation(type, f, ucum(forUnit: unit))
            if let s = status, s & 0x0001 != 0 { obs.value = .unavailable(.invalidMeasurement) }
            else if let s = status, s & 0x0004 != 0 { obs.value = .unavailable(.notAvailable) }
            m.observations.append(obs)
        case .bundle(let members):
            for member in members { collect(member, into: &m, inheritedStatus: status, supplemental: supp) }
        case .other(let cls, _):
            m.statuses.append(ProfileStatus(rawValue: "unsupported-observation-class-\(cls)"))
        }
    }
}

/// Health Sensor Features 0x2BF3: `Flags u8 | Count u8 | Count × type u32 | [...]`. Reference §9.2.
public struct HealthSensorFeatures: Hashable, Sendable {
    public var flags: UInt8
    public var observationTypes: [MDCCode]

    public static func decode(_ bytes: [UInt8]) throws -> HealthSensorFeatures {
        var r = ByteReader(bytes)
        let flags = try r.u8("features flags")
        let n = try r.u8("observation type count")
        var types: [MDCCode] = []
        for _ in 0..<n { types.append(MDCCode(rawValue: try r.u32le("observation type"))) }
        return HealthSensorFeatures(flags: flags, observationTypes: types)
    }
}
