import IoMTCore

/// Masimo Rad-8 / Radical-7 / Radical-5 "ASCII 1" serial text: one line a second, CR LF, 9600
/// 8N1, fields `NAME=value` separated by spaces, after `MM/DD/YY HH:MM:SS`. Reference §3
/// (Rad-8 Operator's Manual §7; MD PnP `poxrad_discrete.h`; yahnatan/pulseox).
///
/// Parsed by key, not column (the newer Radical-7 adds fields, drops the `%` on PI, widens
/// ALARM/EXC). Missing values are dashes (`SPO2=---%`, `PI=--.--%`) and become
/// `.unavailable(.missing)`. A value that is neither dashes nor all digits (and one '.') makes
/// the whole line rejected: it has no checksum, so a corrupted line is not trusted.
/// EXC bits 0x1 (no sensor), 0x20 (sensor off) → sensor off; 0x8 (pulse search) → searching;
/// 0x2, 0x80, 0x100 (defective, unrecognized, incompatible sensor) → sensor fault: no numbers.
/// ALARM bits 0x10 alarm active, 0x20 silenced (MD PnP; agrees with remkolems for bits 0-5).
public struct MasimoASCII1Decoder: StreamDecoder {
    private var lines = LineFraming(maxLength: 400)
    private var lastState: DeviceState?

    public init() {}

    public mutating func feed<S: Sequence<UInt8>>(_ bytes: S) -> [DecoderEvent] {
        var events: [DecoderEvent] = []
        for byte in bytes {
            var skipped = 0
            guard let line = lines.push(byte, discardedBefore: &skipped) else { continue }
            guard let parsed = Self.parse(line) else {
                lines.reject(skipped + lines.lastLineRawCount)  // still unreported: carry the earlier ones too
                continue
            }
            if skipped > 0 { events.append(.discarded(bytes: skipped, reason: .badLine)) }
            if parsed.state != lastState {
                lastState = parsed.state
                events.append(.state(parsed.state))
            }
            events.append(.reading(parsed.reading))
        }
        return events
    }

    struct Parsed {
        var reading: DecodedReading
        var state: DeviceState
    }

    enum Field {
        case missing
        case number(Double)
    }

    /// Parses one line (no CR LF). Nil if it is not an ASCII 1 line or a field is corrupt.
    static func parse(_ line: [UInt8]) -> Parsed? {
        var fields: [String: [UInt8]] = [:]
        var deviceTime: DeviceDateTime?
        var tokens = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        if tokens.count >= 2, let t = dateTime(Array(tokens[0]), Array(tokens[1])) {
            deviceTime = t
            tokens.removeFirst(2)
        }
        for token in tokens {
            guard let eq = token.firstIndex(of: UInt8(ascii: "=")) else { return nil }
            let name = String(decoding: token[token.startIndex..<eq], as: UTF8.self)
            fields[name] = Array(token[(eq + 1)...])
        }
        guard let spo2Text = fields["SPO2"], let bpmText = fields["BPM"] else { return nil }
        guard let spo2 = number(spo2Text, percent: true), let bpm = number(bpmText, percent: false) else { return nil }
        var pi: Field?
        if let t = fields["PI"] {
            guard let v = number(t, percent: true) else { return nil }
            pi = v
        }
        let alarm = fields["ALARM"].flatMap(hex)
        let exc = fields["EXC"].flatMap(hex)
        if fields["ALARM"] != nil, alarm == nil { return nil }
        if fields["EXC"] != nil, exc == nil { return nil }

        var conditions: Set<DeviceCondition> = []
        var blocked: ValueStatus?
        if let e = exc {
            if e & 0x08 != 0 { conditions.insert(.searching); blocked = .searching }
            if e & (0x02 | 0x80 | 0x100) != 0 { conditions.insert(.sensorFault); blocked = .sensorFault }
            if e & (0x01 | 0x20) != 0 { conditions.insert(.sensorOff); blocked = .sensorOff }
            if e & 0x04 != 0 { conditions.insert(.lowPerfusion) }
            if e & 0x10 != 0 { conditions.insert(.interference) }
        }
        if let a = alarm {
            if a & 0x10 != 0 { conditions.insert(.alarmActive) }
            if a & 0x20 != 0 { conditions.insert(.alarmSilenced) }
            if a & 0x40 != 0 { conditions.insert(.lowBattery) }
        }
        func value(_ f: Field, _ range: ClosedRange<Double>) -> ObservationValue {
            if let blocked { return .unavailable(blocked) }
            switch f {
            case .missing: return .unavailable(.missing)
            case .number(let v): return Plausible.check(v, range)
            }
        }
        var observations = [
            Observation(code: .pulseOximetrySpO2, value: value(spo2, Plausible.spo2), unit: .percent),
            Observation(code: .pulseOximetryPulseRate, value: value(bpm, Plausible.pulseRate), unit: .perMinute),
        ]
        if let pi {
            observations.append(Observation(code: .pulseOximetryPerfusionIndex,
                                            value: value(pi, Plausible.perfusionIndex), unit: .percent))
        }
        return Parsed(reading: DecodedReading(observations: observations, deviceTime: deviceTime),
                      state: DeviceState(conditions: conditions, alarmBits: alarm, exceptionBits: exc))
    }

    /// `098%`, `03.60%`, `00.55`, `---%`, `--.--%`, `+--`. Nil if malformed.
    static func number(_ text: [UInt8], percent: Bool) -> Field? {
        var t = text[...]
        if t.last == UInt8(ascii: "%") { t = t.dropLast() }
        guard !t.isEmpty, t.count <= 8 else { return nil }
        if t.allSatisfy({ $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }), t.contains(UInt8(ascii: "-")) {
            return .missing
        }
        var value = 0.0
        var scale = 0.0
        var digits = 0
        for c in t {
            if c == UInt8(ascii: ".") {
                guard scale == 0 else { return nil }
                scale = 1
            } else if c >= 0x30, c <= 0x39 {
                digits += 1
                if scale == 0 { value = value * 10 + Double(c - 0x30) } else { scale /= 10; value += Double(c - 0x30) * scale }
            } else {
                return nil
            }
        }
        guard digits > 0 else { return nil }
        return .number(value)
    }

    static func hex(_ text: [UInt8]) -> UInt32? {
        guard !text.isEmpty, text.count <= 8 else { return nil }
        var v: UInt32 = 0
        for c in text {
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: return nil
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    /// `MM/DD/YY` `HH:MM:SS`.
    static func dateTime(_ date: [UInt8], _ time: [UInt8]) -> DeviceDateTime? {
        guard date.count == 8, time.count == 8, date[2] == UInt8(ascii: "/"), date[5] == UInt8(ascii: "/"),
              time[2] == UInt8(ascii: ":"), time[5] == UInt8(ascii: ":") else { return nil }
        func two(_ b: [UInt8], _ i: Int) -> Int? {
            guard (0x30...0x39).contains(b[i]), (0x30...0x39).contains(b[i + 1]) else { return nil }
            return Int(b[i] - 0x30) * 10 + Int(b[i + 1] - 0x30)
        }
        guard let mo = two(date, 0), let d = two(date, 3), let y = two(date, 6),
              let h = two(time, 0), let mi = two(time, 3), let s = two(time, 6) else { return nil }
        return DeviceDateTime(year: 2000 + y, month: mo, day: d, hour: h, minute: mi, second: s)
    }
}
