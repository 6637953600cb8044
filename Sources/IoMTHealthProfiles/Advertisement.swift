import IoMTCore

/// A declarative profile for broadcast-only sensors (scales and thermometers that never connect):
/// which advertisement field to read (service data for a 16-bit UUID, or manufacturer data for a
/// company id) and where each value sits in it. The config layer fills these structs from YAML
/// later; this module only applies them (issue 6, "Broadcast-only sensors").
public struct AdvertisementProfile: Hashable, Sendable {
    public enum Source: Hashable, Sendable {
        /// AD type 0x16 Service Data - 16-bit UUID (the payload after the UUID).
        case serviceData(uuid16: UInt16)
        /// AD type 0xFF Manufacturer Specific Data (the payload after the company id).
        case manufacturerData(companyID: UInt16)
    }

    /// How a field's bytes are read.
    public enum Encoding: String, Hashable, Sendable {
        case u8, s8, u16le, u16be, s16le, s16be, u24le, u32le, u32be, s32le
        /// IEEE 11073 SFLOAT / FLOAT (little-endian); specials become statuses.
        case sfloat, float
    }

    /// A bit test on one payload octet: `(payload[offset] & mask) == equals`.
    public struct Condition: Hashable, Sendable {
        public var offset: Int
        public var mask: UInt8
        public var equals: UInt8
        public init(offset: Int, mask: UInt8, equals: UInt8) { self.offset = offset; self.mask = mask; self.equals = equals }
    }

    /// One value: `observation = raw × scale + offsetValue`, coded with `code` and `unit` as given
    /// (never converted). `invalidRaw` lists raw values the vendor uses for "no value"; `when` skips
    /// the field unless its conditions hold (e.g. a unit flag selecting kg or lb fields).
    public struct Field: Hashable, Sendable {
        public var name: String
        public var offset: Int
        public var encoding: Encoding
        public var scale: Double
        public var offsetValue: Double
        public var code: MDCCode
        public var unit: UCUMUnit
        public var invalidRaw: [Int64]
        public var when: [Condition]

        public init(name: String, offset: Int, encoding: Encoding, scale: Double = 1, offsetValue: Double = 0,
                    code: MDCCode, unit: UCUMUnit, invalidRaw: [Int64] = [], when: [Condition] = []) {
            self.name = name; self.offset = offset; self.encoding = encoding; self.scale = scale
            self.offsetValue = offsetValue; self.code = code; self.unit = unit; self.invalidRaw = invalidRaw; self.when = when
        }
    }

    public var name: String
    public var source: Source
    /// Conditions on the whole payload (e.g. "measurement stabilized" bit); unmet → no observations.
    public var require: [Condition]
    public var fields: [Field]

    public init(name: String, source: Source, require: [Condition] = [], fields: [Field]) {
        self.name = name; self.source = source; self.require = require; self.fields = fields
    }

    /// The payload this profile reads from one advertisement, if present.
    public func payload(serviceData: [UInt16: [UInt8]], manufacturerData: [UInt16: [UInt8]]) -> [UInt8]? {
        switch source {
        case .serviceData(let uuid): serviceData[uuid]
        case .manufacturerData(let company): manufacturerData[company]
        }
    }

    /// Decodes one advertisement. Returns nil when the profile's source is absent or a `require`
    /// condition fails (e.g. an unstable weight); throws when a field lies beyond the payload.
    public func decode(serviceData: [UInt16: [UInt8]] = [:], manufacturerData: [UInt16: [UInt8]] = [:]) throws -> DecodedMeasurement? {
        guard let p = payload(serviceData: serviceData, manufacturerData: manufacturerData) else { return nil }
        for c in require where try !Self.holds(c, p) { return nil }
        var m = DecodedMeasurement()
        for f in fields {
            if try f.when.contains(where: { try !Self.holds($0, p) }) { continue }
            m.observations.append(try Self.read(f, p))
        }
        return m
    }

    static func holds(_ c: Condition, _ p: [UInt8]) throws -> Bool {
        guard c.offset >= 0, c.offset < p.count else {
            throw HealthDecodeError(field: "condition at offset \(c.offset)", reason: "beyond the \(p.count)-octet payload")
        }
        return p[c.offset] & c.mask == c.equals
    }

    static func read(_ f: Field, _ p: [UInt8]) throws -> Observation {
        do {
            return try readRaw(f, p)
        } catch let e as ByteReaderError {
            // Name the profile's field, not the reader's generic label.
            throw HealthDecodeError(field: f.name, reason: "needs \(e.needed) octet(s) at offset \(f.offset), \(e.available) left")
        }
    }

    static func readRaw(_ f: Field, _ p: [UInt8]) throws -> Observation {
        guard f.offset >= 0, f.offset <= p.count else {
            throw HealthDecodeError(field: f.name, reason: "offset \(f.offset) beyond the \(p.count)-octet payload")
        }
        var r = ByteReader(p, offset: f.offset)
        let raw: Int64
        switch f.encoding {
        case .u8: raw = Int64(try r.u8("advertised field"))
        case .s8: raw = Int64(Int8(bitPattern: try r.u8("advertised field")))
        case .u16le: raw = Int64(try r.u16le("advertised field"))
        case .u16be: raw = Int64(try r.u16be("advertised field"))
        case .s16le: raw = Int64(Int16(bitPattern: try r.u16le("advertised field")))
        case .s16be: raw = Int64(Int16(bitPattern: try r.u16be("advertised field")))
        case .u24le: raw = Int64(try r.u24le("advertised field"))
        case .u32le: raw = Int64(try r.u32le("advertised field"))
        case .u32be:
            let hi = UInt32(try r.u16be("advertised field")), lo = UInt32(try r.u16be("advertised field"))
            raw = Int64(hi << 16 | lo)
        case .s32le: raw = Int64(Int32(bitPattern: try r.u32le("advertised field")))
        case .sfloat, .float:
            let mf = f.encoding == .sfloat ? try r.sfloat("advertised field") : try r.float("advertised field")
            guard let d = mf.doubleValue else { return Observation(code: f.code, value: mf.observationValue, unit: f.unit) }
            return makeObservation(f.code, .number(scaled(d, f.scale) + f.offsetValue), f.unit)
        }
        if f.invalidRaw.contains(raw) { return Observation(code: f.code, value: .unavailable(.missing), unit: f.unit) }
        return makeObservation(f.code, .number(scaled(Double(raw), f.scale) + f.offsetValue), f.unit)
    }
}
