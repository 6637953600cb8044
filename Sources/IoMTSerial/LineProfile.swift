import IoMTCore

/// A declarative profile for the long tail of text-line devices (issue 4, item 5): line
/// settings, a line pattern with named captures, and for each capture either a measurement
/// (MDC code, UCUM unit, scale, plausible range) or a flags word whose bits become device
/// conditions and, for some bits, block every number of the line.
///
/// Values that are only dashes (and dots), as `---` or `--.--`, are missing. Any other
/// capture that is not a plain decimal number rejects the whole line (text lines carry no
/// checksum: a corrupted line is not trusted).
///
/// The Masimo ASCII 1 profile is expressible this way (`LineProfile.masimoASCII1Example`;
/// the tests decode the reference's real lines with it and compare with `MasimoASCII1Decoder`):
/// SpO2, BPM and PI with dashes, EXC bits blocking the numbers. Not expressible: the ALARM
/// word as raw bits in the device state (only as conditions), and the device's date/time.
public struct LineProfile: Sendable {
    public struct Field: Sendable {
        public enum Kind: Sendable {
            case measurement(code: MDCCode, unit: UCUMUnit, scale: Double, plausible: ClosedRange<Double>?)
            case flags(radix: Int, rules: [FlagRule])
        }
        /// The named capture in `pattern`.
        public var capture: String
        public var kind: Kind
        public init(capture: String, kind: Kind) {
            self.capture = capture
            self.kind = kind
        }
    }

    /// Bits of a flags capture: when any bit of `mask` is set the device has `condition`, and if
    /// `blocks` is set every measurement of the line becomes `.unavailable(blocks)` (the first
    /// matching blocking rule wins).
    public struct FlagRule: Sendable {
        public var mask: UInt64
        public var condition: DeviceCondition
        public var blocks: ValueStatus?
        public init(mask: UInt64, condition: DeviceCondition, blocks: ValueStatus? = nil) {
            self.mask = mask
            self.condition = condition
            self.blocks = blocks
        }
    }

    public var name: String
    public var lineSettings: LineSettings
    /// A Swift `Regex` pattern with named captures (`(?<spo2>[-0-9]+)`), searched in each line.
    public var pattern: String
    public var maxLineLength: Int
    public var fields: [Field]

    public init(name: String, lineSettings: LineSettings, pattern: String, maxLineLength: Int = 256, fields: [Field]) {
        self.name = name
        self.lineSettings = lineSettings
        self.pattern = pattern
        self.maxLineLength = maxLineLength
        self.fields = fields
    }

    /// Masimo ASCII 1 as a line profile (reference §3).
    public static let masimoASCII1Example = LineProfile(
        name: "masimo-ascii1-line", lineSettings: LineSettings(baud: 9600),
        pattern: #"SPO2=(?<spo2>[-0-9]+)% BPM=(?<bpm>[-0-9]+)(?: PI=(?<pi>[-.0-9]+)%?)?.* ALARM=(?<alarm>[0-9A-Fa-f]+) EXC=(?<exc>[0-9A-Fa-f]+)"#,
        maxLineLength: 400,
        fields: [
            Field(capture: "spo2", kind: .measurement(code: .pulseOximetrySpO2, unit: .percent, scale: 1, plausible: Plausible.spo2)),
            Field(capture: "bpm", kind: .measurement(code: .pulseOximetryPulseRate, unit: .perMinute, scale: 1, plausible: Plausible.pulseRate)),
            Field(capture: "pi", kind: .measurement(code: .pulseOximetryPerfusionIndex, unit: .percent, scale: 1, plausible: Plausible.perfusionIndex)),
            Field(capture: "exc", kind: .flags(radix: 16, rules: [
                FlagRule(mask: 0x21, condition: .sensorOff, blocks: .sensorOff),
                FlagRule(mask: 0x182, condition: .sensorFault, blocks: .sensorFault),
                FlagRule(mask: 0x08, condition: .searching, blocks: .searching),
                FlagRule(mask: 0x04, condition: .lowPerfusion),
                FlagRule(mask: 0x10, condition: .interference),
            ])),
            Field(capture: "alarm", kind: .flags(radix: 16, rules: [
                FlagRule(mask: 0x10, condition: .alarmActive),
                FlagRule(mask: 0x20, condition: .alarmSilenced),
                FlagRule(mask: 0x40, condition: .lowBattery),
            ])),
        ])
}

extension SerialProfile {
    /// A serial profile for a declarative line profile (live timing; no line-settings alternatives).
    public static func line(_ p: LineProfile) -> SerialProfile {
        SerialProfile(name: p.name, lineSettings: [p.lineSettings], timing: .live, noFrameTimeoutMilliseconds: .max,
                      makeDriver: { _ in StreamDriver(LineProfileDecoder(unchecked: p)) })
    }
}

/// Decodes a byte stream with a `LineProfile`.
public struct LineProfileDecoder: StreamDecoder {
    public let profile: LineProfile
    // `Regex<AnyRegexOutput>` is not Sendable, so the pattern is compiled per line (checked once
    // in `init`); text devices send about a line a second, so this costs nothing that matters.
    private var lines: LineFraming
    private var lastState: DeviceState?

    /// Fails if the pattern is not a valid regular expression.
    public init(profile: LineProfile) throws {
        self.profile = profile
        _ = try Regex(profile.pattern)
        self.lines = LineFraming(maxLength: max(16, profile.maxLineLength))
    }

    public mutating func feed<S: Sequence<UInt8>>(_ bytes: S) -> [DecoderEvent] {
        var events: [DecoderEvent] = []
        for byte in bytes {
            var skipped = 0
            guard let line = lines.push(byte, discardedBefore: &skipped) else { continue }
            guard let (reading, state) = decode(String(decoding: line, as: UTF8.self)) else {
                lines.reject(skipped + lines.lastLineRawCount)  // still unreported: carry the earlier ones too
                continue
            }
            if skipped > 0 { events.append(.discarded(bytes: skipped, reason: .badLine)) }
            if state != lastState {
                lastState = state
                events.append(.state(state))
            }
            events.append(.reading(reading))
        }
        return events
    }

    /// Without checking the pattern first: an invalid pattern then matches no line (every line
    /// is discarded as `bad-line`). For profiles already checked, e.g. by the configuration.
    public init(unchecked profile: LineProfile) {
        self.profile = profile
        self.lines = LineFraming(maxLength: max(16, profile.maxLineLength))
    }

    enum Parsed { case missing, number(Double) }

    func decode(_ line: String) -> (DecodedReading, DeviceState)? {
        guard let regex = try? Regex(profile.pattern), let match = try? regex.firstMatch(in: line) else { return nil }
        var conditions: Set<DeviceCondition> = []
        var blocked: ValueStatus?
        var measured: [(MDCCode, UCUMUnit, Parsed, Double, ClosedRange<Double>?)] = []
        for field in profile.fields {
            guard let element = match.output[field.capture], let sub = element.substring else { continue }
            let text = String(sub)
            switch field.kind {
            case let .measurement(code, unit, scale, plausible):
                guard let v = Self.number(text) else { return nil }
                measured.append((code, unit, v, scale, plausible))
            case let .flags(radix, rules):
                guard !text.isEmpty, text.count <= 16, let bits = UInt64(text, radix: radix) else { return nil }
                for rule in rules where bits & rule.mask != 0 {
                    conditions.insert(rule.condition)
                    if blocked == nil, let b = rule.blocks { blocked = b }
                }
            }
        }
        guard !measured.isEmpty else { return nil }
        let observations = measured.map { code, unit, parsed, scale, plausible -> Observation in
            let value: ObservationValue
            if let blocked {
                value = .unavailable(blocked)
            } else if case .number(let v) = parsed {
                let scaled = v * scale
                value = plausible.map { Plausible.check(scaled, $0) } ?? .number(scaled)
            } else {
                value = .unavailable(.missing)
            }
            return Observation(code: code, value: value, unit: unit)
        }
        return (DecodedReading(observations: observations), DeviceState(conditions: conditions))
    }

    /// `098`, `-02`, `+1.5`, `03.60`; `---`, `--.--`, `+--` are missing; anything else is nil.
    static func number(_ text: String) -> Parsed? {
        var t = Substring(text)
        var sign = 1.0
        if let f = t.first, f == "+" || f == "-", t.count > 1, t.dropFirst().first != "-" {
            if f == "-" { sign = -1 }
            t = t.dropFirst()
        } else if t.first == "+" {
            t = t.dropFirst()
        }
        guard !t.isEmpty, t.count <= 12 else { return nil }
        if t.contains("-") {
            return t.allSatisfy({ $0 == "-" || $0 == "." }) ? .missing : nil
        }
        guard let v = MasimoASCII1Decoder.number(Array(t.utf8), percent: false), case .number(let n) = v else { return nil }
        return .number(sign * n)
    }
}
