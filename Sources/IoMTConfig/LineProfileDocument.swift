import IoMTYAML

/// A declarative line profile file (issue 4, item 5), for text-line devices without a built-in
/// profile. Used by `serial[]` entries with `profile: line` and `line_profile: <path>`.
///
/// ```yaml
/// name: rad8-line
/// line: {baud: 9600, data_bits: 8, parity: none, stop_bits: 1}
/// max_line_length: 400
/// pattern: 'SPO2=(?<spo2>[-0-9]+)% BPM=(?<bpm>[-0-9]+)(?: PI=(?<pi>[-.0-9]+)%?)?.* ALARM=(?<alarm>[0-9A-F]+) EXC=(?<exc>[0-9A-F]+)'
/// fields:
///   spo2: {mdc: 150456, unit: "%", min: 1, max: 100}
///   bpm:  {mdc: 149530, unit: /min, min: 15, max: 350}
///   pi:   {mdc: 150488, unit: "%", scale: 1, min: 0.01, max: 30}
///   exc:
///     flags: 16
///     bits:
///       - {mask: 0x21, condition: sensor-off, status: sensor-off}
///       - {mask: 0x08, condition: searching, status: searching}
/// ```
///
/// `pattern` is a Swift `Regex` with one named capture per field, searched in each line (CR LF
/// removed). A measurement field's capture is a decimal number (times `scale`, published only
/// within `min`...`max` when given) or dashes for "missing". A flags field's capture is an
/// integer in base `flags` (10 or 16); each `bits` entry whose `mask` has a bit set adds the
/// `condition` to the device state and, with `status`, publishes every measurement of the line
/// as unavailable with that status (the first such entry wins).
public struct LineProfileDocument: Sendable, Equatable {
    public struct Field: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            case measurement(mdc: UInt32, unit: String, scale: Double, min: Double?, max: Double?)
            case flags(radix: Int, bits: [Bit])
        }
        public var capture: String
        public var kind: Kind
    }

    public struct Bit: Sendable, Equatable {
        public var mask: UInt64
        public var condition: String
        public var status: String?
    }

    /// `name`: 1-64 of `[A-Za-z0-9._-]`; the profile name readings carry.
    public var name: String
    /// `line.baud`: one of `AgentConfig.Serial.supportedBauds`. Required.
    public var baud: Int
    /// `line.data_bits`: 5...8. Default 8.
    public var dataBits: Int
    /// `line.parity`. Default none.
    public var parity: SerialParity
    /// `line.stop_bits`: 1 or 2. Default 1.
    public var stopBits: Int
    /// `line.rtscts`. Default false.
    public var hardwareFlowControl: Bool
    /// `max_line_length`: 16...4096 bytes. Default 256.
    public var maxLineLength: Int
    /// `pattern`. Required.
    public var pattern: String
    /// `fields`, in file order. At least one measurement.
    public var fields: [Field]

    /// Parses and validates a line profile; every problem has the file, line and key path.
    public static func parse(yaml: String, source: String) throws(ConfigErrors) -> LineProfileDocument {
        try ConfigReader.read(yaml: yaml, source: source, what: "line profile") { $0.buildLineProfile($1) }
    }

    /// Reads and parses a line profile file.
    public static func load(path: String) throws(ConfigErrors) -> LineProfileDocument {
        switch readTextFile(path) {
        case .success(let text): return try parse(yaml: text, source: path)
        case .failure(let message):
            throw ConfigErrors([ConfigProblem(source: path, line: nil, keyPath: "", message: message.text)])
        }
    }
}

extension Keys {
    static let lineProfile = ["name", "line", "max_line_length", "pattern", "fields"]
    static let lineProfileLine = ["baud", "data_bits", "parity", "stop_bits", "rtscts"]
    static let lineProfileMeasurement = ["mdc", "unit", "scale", "min", "max"]
    static let lineProfileFlags = ["flags", "bits"]
    static let lineProfileBit = ["mask", "condition", "status"]
}

extension ConfigReader {
    mutating func buildLineProfile(_ root: Node?) -> LineProfileDocument? {
        guard let top = section(root, path: "", parentLine: 1, keys: Keys.lineProfile) else { return nil }
        let before = problems.count
        var name: String?
        if let (n, line) = requiredText(top, "name", example: "rad8-line") {
            if let problem = identifierProblem(n, maxLength: 64) { report("name", line, problem) } else { name = n }
        }
        var baud = 0, dataBits = 8, stopBits = 1, rtscts = false
        var parity = SerialParity.none
        if value(top, "line") == nil {
            report("line", line(top, "line"), "is required (e.g. line: {baud: 9600})")
        } else if let l = section(top.values["line"], path: "line", parentLine: line(top, "line"), keys: Keys.lineProfileLine) {
            let supported = AgentConfig.Serial.supportedBauds
            if value(l, "baud") == nil {
                report("line.baud", l.line, "is required (one of \(supported.map(String.init).joined(separator: ", ")))")
            } else {
                let b = Int(integer(l, "baud", 1...10_000_000, default: 0).0)
                if supported.contains(b) { baud = b } else if b != 0 {
                    report("line.baud", line(l, "baud"), "must be one of \(supported.map(String.init).joined(separator: ", ")), got \(b)")
                }
            }
            dataBits = Int(integer(l, "data_bits", 5...8, default: 8).0)
            stopBits = Int(integer(l, "stop_bits", 1...2, default: 1, rangeMessage: "must be 1 or 2").0)
            parity = choice(l, "parity", default: SerialParity.none) ?? .none
            if let node = value(l, "rtscts") {
                if case let .scalar(s) = node, ["true", "false"].contains(s.string) { rtscts = s.string == "true" } else {
                    report("line.rtscts", line(l, "rtscts"), "must be true or false, got \(describe(node))")
                }
            }
        }
        let maxLineLength = Int(integer(top, "max_line_length", 16...4096, default: 256).0)
        var pattern: String?
        if let (p, line) = requiredText(top, "pattern", example: "'T=(?<temp>[-0-9.]+)'") {
            if (try? Regex(p)) == nil {
                report("pattern", line, "is not a valid regular expression")
            } else {
                pattern = p
            }
        }
        var fields: [LineProfileDocument.Field] = []
        if let node = value(top, "fields") {
            if case let .mapping(mapping) = node {
                for (keyNode, fieldNode) in mapping {
                    let keyLine = self.line(keyNode, line(top, "fields"))
                    guard case let .scalar(k) = keyNode else { continue }
                    let capture = k.string
                    let path = "fields.\(capture)"
                    if let pattern, !pattern.contains("(?<\(capture)>") {
                        report(path, keyLine, "the pattern has no named capture (?<\(capture)>...)")
                    }
                    let isFlags: Bool
                    if case let .mapping(m) = fieldNode { isFlags = m.keys.contains { if case let .scalar(s) = $0 { s.string == "flags" } else { false } } } else { isFlags = false }
                    guard let f = section(fieldNode, path: path, parentLine: keyLine,
                                          keys: isFlags ? Keys.lineProfileFlags : Keys.lineProfileMeasurement) else { continue }
                    if isFlags {
                        let (radix, _) = integer(f, "flags", 2...16, default: 16)
                        if radix != 10 && radix != 16 { report(f.path("flags"), line(f, "flags"), "must be 10 or 16, got \(radix)") }
                        var bits: [LineProfileDocument.Bit] = []
                        if case let .sequence(seq)? = value(f, "bits") {
                            for (i, item) in seq.enumerated() {
                                guard let b = section(item, path: f.path("bits[\(i)]"), parentLine: line(item, line(f, "bits")),
                                                      keys: Keys.lineProfileBit) else { continue }
                                var mask: UInt64?
                                if case let .scalar(s)? = value(b, "mask") {
                                    let t = s.string
                                    mask = t.hasPrefix("0x") || t.hasPrefix("0X") ? UInt64(t.dropFirst(2), radix: 16) : UInt64(t)
                                }
                                if mask == nil || mask == 0 {
                                    report(b.path("mask"), line(b, "mask"), "is required: a non-zero bit mask such as 0x20")
                                }
                                let condition = requiredText(b, "condition", example: "sensor-off")
                                var status: String?
                                if let (st, stLine) = optionalText(b, "status") {
                                    if let problem = identifierProblem(st, maxLength: 32) { report(b.path("status"), stLine, problem) } else { status = st }
                                }
                                if let condition, let problem = identifierProblem(condition.0, maxLength: 32) {
                                    report(b.path("condition"), condition.1, problem)
                                }
                                if let mask, mask != 0, let condition {
                                    bits.append(.init(mask: mask, condition: condition.0, status: status))
                                }
                            }
                        } else {
                            report(f.path("bits"), line(f, "bits"), "is required: a list of {mask, condition, status}")
                        }
                        fields.append(.init(capture: capture, kind: .flags(radix: Int(radix), bits: bits)))
                    } else {
                        let (mdc, _) = integer(f, "mdc", 1...Int64(UInt32.max), default: 0)
                        if value(f, "mdc") == nil { report(f.path("mdc"), f.line, "is required (the IEEE 11073 MDC code, e.g. 150456)") }
                        let unit = requiredText(f, "unit", example: "\"%\"")
                        if let unit, unit.0.contains(" ") { report(f.path("unit"), unit.1, "must be a UCUM code without spaces, e.g. /min") }
                        let scale = number(f, "scale", { $0.isFinite && $0 != 0 }, rangeMessage: "must be a non-zero number")?.0 ?? 1
                        let minimum = number(f, "min", { $0.isFinite }, rangeMessage: "must be a finite number")?.0
                        let maximum = number(f, "max", { $0.isFinite }, rangeMessage: "must be a finite number")?.0
                        if let minimum, let maximum, minimum > maximum {
                            report(f.path("max"), line(f, "max"), "must be at least min (\(minimum)), got \(maximum)")
                        }
                        if let unit, mdc > 0 {
                            fields.append(.init(capture: capture, kind: .measurement(mdc: UInt32(mdc), unit: unit.0, scale: scale,
                                                                                    min: minimum, max: maximum)))
                        }
                    }
                }
            } else {
                report("fields", line(top, "fields"), "must be a mapping of capture names to fields, got \(describe(node))")
            }
        }
        if !fields.contains(where: { if case .measurement = $0.kind { true } else { false } }) {
            report("fields", line(top, "fields"), "must define at least one measurement (mdc, unit)")
        }
        guard problems.count == before, let name, let pattern else { return nil }
        return LineProfileDocument(name: name, baud: baud, dataBits: dataBits, parity: parity, stopBits: stopBits,
                                   hardwareFlowControl: rtscts, maxLineLength: maxLineLength, pattern: pattern, fields: fields)
    }
}
