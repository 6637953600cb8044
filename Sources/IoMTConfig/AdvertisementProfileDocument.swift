import IoMTCore
import IoMTYAML

extension AgentConfig.Bluetooth {
    /// One entry of `bluetooth.broadcasters`: a broadcast-only sensor (a scale or thermometer that
    /// never connects) whose measurements are read from its advertisements (issue 6).
    ///
    /// ```yaml
    /// broadcasters:
    ///   - id: scale-bed-4
    ///     address: "F0:F1:F2:F3:F4:10"
    ///     patient: P-1001
    ///     profile: /etc/iomt-agent/profiles/weight-scale-advert.yaml
    ///     repeat_window_s: 30
    /// ```
    public struct Broadcaster: Sendable, Equatable {
        /// `id`: default `ble-` and the address in hex; required without `address`.
        public var id: String
        /// `address`: `AA:BB:CC:DD:EE:FF`, most significant first; nil only with `any_address: true`.
        public var address: String?
        /// `any_address`: accept any advertiser carrying the profile's source. Default false; must be
        /// explicit, since a neighbour's scale must not be attributed to this patient.
        public var anyAddress: Bool
        /// `patient`.
        public var patient: String
        /// `profile`: the absolute path of an advertisement profile file (``AdvertisementProfileDocument``).
        public var profile: String
        /// `repeat_window_s`: the same payload is published again only after this long. 1...3600, default 30.
        public var repeatWindowSeconds: Int
        /// The parsed `profile` file: set by ``AgentConfig/load(path:)`` (which reports its problems).
        public var profileDocument: AdvertisementProfileDocument?

        public init(id: String, address: String?, anyAddress: Bool = false, patient: String, profile: String,
                    repeatWindowSeconds: Int = 30, profileDocument: AdvertisementProfileDocument? = nil) {
            self.id = id
            self.address = address
            self.anyAddress = anyAddress
            self.patient = patient
            self.profile = profile
            self.repeatWindowSeconds = repeatWindowSeconds
            self.profileDocument = profileDocument
        }
    }
}

/// A declarative advertisement profile file (issue 6, broadcast-only sensors): which part of an
/// advertisement carries the measurement and where each value sits in it.
///
/// ```yaml
/// name: weight-scale-advert
/// source: {service_data: "181D"}      # or {manufacturer_data: "0157"} (company id, hex)
/// require:                            # all must hold, else the advertisement is ignored
///   - {offset: 0, mask: 0x01, equals: 0x00}
/// fields:
///   - {name: weight, offset: 1, encoding: u16le, scale: 0.005, mdc: 188736, unit: kg,
///      invalid_raw: [0xFFFF], when: [{offset: 0, mask: 0x01, equals: 0x00}]}
/// ```
///
/// Offsets count from the first octet after the UUID (service data) or company id
/// (manufacturer data). A field's value is `raw × scale + offset_value`, coded with `mdc` and
/// `unit` as given; a raw value in `invalid_raw` is published as unavailable; a field whose `when`
/// conditions do not all hold is left out. A condition holds when `payload[offset] & mask == equals`.
public struct AdvertisementProfileDocument: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        /// `service_data`: a 16-bit service UUID (AD type 0x16).
        case serviceData(uuid16: UInt16)
        /// `manufacturer_data`: a company identifier (AD type 0xFF).
        case manufacturerData(companyID: UInt16)
    }

    public struct Condition: Sendable, Equatable {
        public var offset: Int
        public var mask: UInt8
        public var equals: UInt8
        public init(offset: Int, mask: UInt8, equals: UInt8) { self.offset = offset; self.mask = mask; self.equals = equals }
    }

    public struct Field: Sendable, Equatable {
        /// `name`: 1-64 of `[A-Za-z0-9._-]`, unique in the file.
        public var name: String
        /// `offset`: 0...255.
        public var offset: Int
        /// `encoding`.
        public var encoding: AdvertisedEncoding
        /// `scale`: non-zero, default 1.
        public var scale: Double
        /// `offset_value`: default 0.
        public var offsetValue: Double
        /// `mdc`: the IEEE 11073 MDC code (partition << 16 | term), e.g. 188736.
        public var mdc: UInt32
        /// `unit`: a UCUM code, e.g. `kg`.
        public var unit: String
        /// `invalid_raw`: raw values meaning "no value".
        public var invalidRaw: [Int64]
        /// `when`.
        public var when: [Condition]
    }

    /// `name`: 1-64 of `[A-Za-z0-9._-]`; the profile name readings carry.
    public var name: String
    public var source: Source
    /// `require`: conditions on the payload; unmet → nothing published (e.g. not yet stable).
    public var require: [Condition]
    /// `fields`, in file order; at least one.
    public var fields: [Field]

    /// Parses and validates an advertisement profile; every problem has the file, line and key path.
    public static func parse(yaml: String, source: String) throws(ConfigErrors) -> AdvertisementProfileDocument {
        try ConfigReader.read(yaml: yaml, source: source, what: "advertisement profile") { $0.buildAdvertisementProfile($1) }
    }

    /// Reads and parses an advertisement profile file.
    public static func load(path: String) throws(ConfigErrors) -> AdvertisementProfileDocument {
        switch readTextFile(path) {
        case .success(let text): return try parse(yaml: text, source: path)
        case .failure(let message):
            throw ConfigErrors([ConfigProblem(source: path, line: nil, keyPath: "", message: message.text)])
        }
    }
}

/// `fields[].encoding`: how a field's octets are read (little- or big-endian, signed or not;
/// `sfloat`/`float` are IEEE 11073-20601 SFLOAT-Type / FLOAT-Type).
public enum AdvertisedEncoding: String, CaseIterable, Sendable {
    case u8, s8, u16le, u16be, s16le, s16be, u24le, u32le, u32be, s32le, sfloat, float
}

extension Keys {
    static let advertisementProfile = ["name", "source", "require", "fields"]
    static let advertisementSource = ["service_data", "manufacturer_data"]
    static let advertisementCondition = ["offset", "mask", "equals"]
    static let advertisementField = ["name", "offset", "encoding", "scale", "offset_value", "mdc", "unit", "invalid_raw", "when"]
}

extension ConfigReader {
    // MARK: bluetooth.broadcasters

    mutating func buildBroadcasters(_ b: Section, otherIDs: Set<String>) -> [AgentConfig.Bluetooth.Broadcaster] {
        guard let node = value(b, "broadcasters") else { return [] }
        guard case let .sequence(seq) = node else {
            report("bluetooth.broadcasters", line(b, "broadcasters"), "must be a list ('- id: ...' entries), got \(describe(node))")
            return []
        }
        var out: [AgentConfig.Bluetooth.Broadcaster] = []
        var seen: [String: String] = [:]
        var seenAddresses: [String: String] = [:]
        for (index, item) in seq.enumerated() {
            let path = "bluetooth.broadcasters[\(index)]"
            guard let d = section(item, path: path, parentLine: line(item, line(b, "broadcasters")),
                                  keys: BluetoothKeys.broadcaster) else { continue }
            let patient = patientID(d)
            var anyAddress = false
            if let n = value(d, "any_address") {
                if case let .scalar(s) = n, ["true", "false"].contains(s.string) { anyAddress = s.string == "true" } else {
                    report(d.path("any_address"), line(d, "any_address"), "must be true or false, got \(describe(n))")
                }
            }
            var address: String?
            var addressOK = true
            if let (a, l) = text(d, "address") {
                if Self.isAddress(a) { address = a.uppercased() } else {
                    addressOK = false
                    report(d.path("address"), l, "must be a Bluetooth address like F0:F1:F2:F3:F4:10, got \"\(clip(a))\"")
                }
                if anyAddress {
                    report(d.path("any_address"), line(d, "any_address"), "must not be true when an address is given")
                }
            } else if value(d, "address") == nil && !anyAddress {
                addressOK = false
                report(d.path("address"), d.line,
                       "is required: without it any advertiser would match and a neighbour's device could be attributed to this patient (set any_address: true to accept that)")
            }
            var id: String?
            if let (explicit, l) = text(d, "id") {
                if let problem = identifierProblem(explicit, maxLength: 64) { report(d.path("id"), l, problem) } else { id = explicit }
            } else if let address {
                id = BluetoothDeviceID.make(address: address)
            } else if addressOK {
                report(d.path("id"), d.line, "is required when no address is given (e.g. id: scale-bed-4)")
            }
            if let id {
                if let first = seen[id] {
                    report(d.path("id"), line(d, "id"), "duplicate device id '\(id)' (also used by \(first))")
                } else if otherIDs.contains(id) {
                    report(d.path("id"), line(d, "id"), "duplicate device id '\(id)' (also used by another device)")
                }
                seen[id] = path
            }
            if let address {
                if let first = seenAddresses[address] {
                    report(d.path("address"), line(d, "address"), "the same device as \(first)")
                }
                seenAddresses[address] = path
            }
            var profile: String?
            if let (p, l) = requiredText(d, "profile", example: "/etc/iomt-agent/profiles/weight-scale-advert.yaml") {
                if p.hasPrefix("/") { profile = p } else { report(d.path("profile"), l, "must be an absolute path, got \"\(clip(p))\"") }
            }
            let window = integer(d, "repeat_window_s", 1...3600, default: 30).0
            if let id, let patient, let profile, addressOK {
                out.append(.init(id: id, address: address, anyAddress: anyAddress, patient: patient, profile: profile,
                                 repeatWindowSeconds: Int(window)))
            }
        }
        return out
    }

    // MARK: The profile file

    mutating func buildAdvertisementProfile(_ root: Node?) -> AdvertisementProfileDocument? {
        guard let top = section(root, path: "", parentLine: 1, keys: Keys.advertisementProfile) else { return nil }
        let before = problems.count
        var name: String?
        if let (n, l) = requiredText(top, "name", example: "weight-scale-advert") {
            if let problem = identifierProblem(n, maxLength: 64) { report("name", l, problem) } else { name = n }
        }
        var source: AdvertisementProfileDocument.Source?
        if value(top, "source") == nil {
            report("source", line(top, "source"), "is required (e.g. source: {service_data: \"181D\"} or {manufacturer_data: \"0157\"})")
        } else if let s = section(top.values["source"], path: "source", parentLine: line(top, "source"), keys: Keys.advertisementSource) {
            let given = Keys.advertisementSource.filter { value(s, $0) != nil }
            if given.count != 1 {
                report("source", s.line, "must have exactly one of service_data (a 16-bit UUID) or manufacturer_data (a company id)")
            } else if let id = hex16(s, given[0]) {
                source = given[0] == "service_data" ? .serviceData(uuid16: id) : .manufacturerData(companyID: id)
            }
        }
        let require = conditions(top, "require")
        var fields: [AdvertisementProfileDocument.Field] = []
        var noFieldsGiven = value(top, "fields") == nil
        if let node = value(top, "fields") {
            if case let .sequence(seq) = node {
                noFieldsGiven = seq.isEmpty
                var names: [String: Int] = [:]
                for (i, item) in seq.enumerated() {
                    guard let f = section(item, path: "fields[\(i)]", parentLine: line(item, line(top, "fields")),
                                          keys: Keys.advertisementField) else { continue }
                    var fieldName: String?
                    if let (n, l) = requiredText(f, "name", example: "weight") {
                        if let problem = identifierProblem(n, maxLength: 64) { report(f.path("name"), l, problem) } else if let first = names[n] {
                            report(f.path("name"), l, "duplicate field name '\(n)' (also fields[\(first)])")
                        } else {
                            fieldName = n
                            names[n] = i
                        }
                    }
                    if value(f, "offset") == nil { report(f.path("offset"), f.line, "is required (the octet where the value starts, 0 = first after the UUID or company id)") }
                    let offset = integer(f, "offset", 0...255, default: 0).0
                    let encoding: AdvertisedEncoding? = requiredChoice(f, "encoding")
                    let scale = number(f, "scale", { $0.isFinite && $0 != 0 }, rangeMessage: "must be a non-zero number")?.0 ?? 1
                    let offsetValue = number(f, "offset_value", { $0.isFinite }, rangeMessage: "must be a finite number")?.0 ?? 0
                    if value(f, "mdc") == nil { report(f.path("mdc"), f.line, "is required (the IEEE 11073 MDC code, e.g. 188736)") }
                    let mdc = integer(f, "mdc", 1...Int64(UInt32.max), default: 0).0
                    let unit = requiredText(f, "unit", example: "kg")
                    if let unit, unit.0.contains(where: { $0 == " " || $0.isNewline }) {
                        report(f.path("unit"), unit.1, "must be a UCUM code without spaces, e.g. kg")
                    }
                    var invalid: [Int64] = []
                    if let n = value(f, "invalid_raw") {
                        if case let .sequence(values) = n {
                            for (j, v) in values.enumerated() {
                                if case let .scalar(sc) = v, sc.style == .plain, let x = Self.integerOrHex(sc.string) { invalid.append(x) } else {
                                    report(f.path("invalid_raw[\(j)]"), line(v, line(f, "invalid_raw")), "must be an integer (decimal or 0x hex), got \(describe(v))")
                                }
                            }
                        } else {
                            report(f.path("invalid_raw"), line(f, "invalid_raw"), "must be a list of integers, e.g. [0xFFFF], got \(describe(n))")
                        }
                    }
                    let when = conditions(f, "when")
                    if let fieldName, let encoding, let unit, mdc > 0 {
                        fields.append(.init(name: fieldName, offset: Int(offset), encoding: encoding, scale: scale, offsetValue: offsetValue,
                                            mdc: UInt32(mdc), unit: unit.0, invalidRaw: invalid, when: when))
                    }
                }
            } else {
                report("fields", line(top, "fields"), "must be a list of fields ('- {name: ..., offset: ...}'), got \(describe(node))")
            }
        }
        if noFieldsGiven || (fields.isEmpty && problems.count == before) {
            report("fields", line(top, "fields"), "must define at least one field (name, offset, encoding, mdc, unit)")
        }
        guard problems.count == before, let name, let source else { return nil }
        return AdvertisementProfileDocument(name: name, source: source, require: require, fields: fields)
    }

    /// A list of `{offset, mask, equals}` under `key`.
    mutating func conditions(_ s: Section, _ key: String) -> [AdvertisementProfileDocument.Condition] {
        guard let node = value(s, key) else { return [] }
        guard case let .sequence(seq) = node else {
            report(s.path(key), line(s, key), "must be a list of {offset, mask, equals}, got \(describe(node))")
            return []
        }
        var out: [AdvertisementProfileDocument.Condition] = []
        for (i, item) in seq.enumerated() {
            guard let c = section(item, path: s.path("\(key)[\(i)]"), parentLine: line(item, line(s, key)),
                                  keys: Keys.advertisementCondition) else { continue }
            let before = problems.count
            for k in Keys.advertisementCondition where value(c, k) == nil {
                report(c.path(k), c.line, "is required (a condition is {offset, mask, equals})")
            }
            let offset = integer(c, "offset", 0...255, default: 0).0
            let mask = byte(c, "mask"), equals = byte(c, "equals")
            if let mask, let equals, equals & ~mask != 0 {
                report(c.path("equals"), line(c, "equals"), "has bits outside mask 0x\(hex(mask)), so the condition could never hold")
            }
            if problems.count == before, let mask, let equals {
                out.append(.init(offset: Int(offset), mask: mask, equals: equals))
            }
        }
        return out
    }

    /// An octet, decimal or `0x` hex.
    mutating func byte(_ s: Section, _ key: String) -> UInt8? {
        guard let node = value(s, key) else { return nil }
        guard case let .scalar(sc) = node, sc.style == .plain, let v = Self.integerOrHex(sc.string), (0...255).contains(v) else {
            report(s.path(key), line(s, key), "must be an octet, 0...255 or 0x00...0xFF, got \(describe(node))")
            return nil
        }
        return UInt8(v)
    }

    /// A 16-bit id written as 4 hex digits (`"181D"`, `0x181D`).
    mutating func hex16(_ s: Section, _ key: String) -> UInt16? {
        guard let node = value(s, key) else { return nil }
        var text = ""
        if case let .scalar(sc) = node { text = sc.string }
        if text.hasPrefix("0x") || text.hasPrefix("0X") { text = String(text.dropFirst(2)) }
        guard text.count == 4, let v = UInt16(text, radix: 16) else {
            report(s.path(key), line(s, key), "must be 4 hex digits, e.g. \"181D\", got \(describe(node))")
            return nil
        }
        return v
    }

    /// A decimal integer or `0x` hex (no sign for hex).
    static func integerOrHex(_ t: String) -> Int64? {
        if t.hasPrefix("0x") || t.hasPrefix("0X") {
            let digits = t.dropFirst(2)
            return digits.isEmpty ? nil : Int64(digits, radix: 16)
        }
        return parseInteger(t)?.int64
    }
}

private func hex(_ b: UInt8) -> String {
    let s = String(b, radix: 16, uppercase: true)
    return s.count == 1 ? "0" + s : s
}
