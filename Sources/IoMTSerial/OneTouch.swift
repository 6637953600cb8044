import IoMTCore

/// LifeScan OneTouch Ultra 2 (and original Ultra) "DM" ASCII protocol, 9600 8N1, PL2303 cable.
/// Reference §4 (glucometerutils `drivers/otultra2.py`; insulaudit `onetouch2.py`).
///
/// Host command: `11 0D` (XON, CR) + ASCII command + `0D`. Reply lines end CR LF; each ends
/// with a space and 4 upper-case hex digits: the 16-bit sum of every byte before that space.
public enum OneTouchUltra2 {
    /// The bytes for a command such as `DM@` (serial), `DMF` (clock), `DMP` (dump).
    public static func command(_ text: String) -> [UInt8] {
        [0x11, 0x0D] + Array(text.utf8) + [0x0D]
    }

    /// Checks a reply line (without CR LF) and returns its body without the checksum, or nil if
    /// the checksum is missing or wrong.
    public static func verifiedBody(_ line: [UInt8]) -> [UInt8]? {
        guard line.count >= 6, line[line.count - 5] == UInt8(ascii: " ") else { return nil }
        var expected: UInt16 = 0
        for c in line[(line.count - 4)...] {
            switch c {
            case 0x30...0x39: expected = expected << 4 | UInt16(c - 0x30)
            case 0x41...0x46: expected = expected << 4 | UInt16(c - 0x41 + 10)
            default: return nil
            }
        }
        let body = Array(line[..<(line.count - 5)])
        var sum: UInt16 = 0
        for c in body { sum &+= UInt16(c) }
        return sum == expected ? body : nil
    }

    /// The checksum suffix for a body (for simulators): `" XXXX"`.
    public static func checksumSuffix(_ body: [UInt8]) -> [UInt8] {
        var sum: UInt16 = 0
        for c in body { sum &+= UInt16(c) }
        let hex = Array("0123456789ABCDEF".utf8)
        return [UInt8(ascii: " "), hex[Int(sum >> 12)], hex[Int(sum >> 8 & 0xF)], hex[Int(sum >> 4 & 0xF)], hex[Int(sum & 0xF)]]
    }

    /// One stored record of the `DMP` dump.
    public struct Record: Hashable, Sendable {
        public var time: DeviceDateTime
        /// mg/dL (the meter always reports mg/dL), or a status (HIGH, meter error flag).
        public var glucose: ObservationValue
        /// Control-solution test: not a patient reading.
        public var isControl: Bool
        /// The raw 6-character result field, part of the record's identity.
        public var rawResult: String
    }

    /// A decoded reply line.
    public enum Reply: Hashable, Sendable {
        case serial(String)
        case clock(DeviceDateTime)
        case dumpHeader(count: Int, serial: String, unit: String)
        case record(Record)
        case other(String)
    }

    /// Parses a checked reply body.
    public static func parseReply(_ body: [UInt8]) -> Reply? {
        guard let first = body.first else { return nil }
        let quoted = quotedFields(body)
        switch first {
        case UInt8(ascii: "@"):
            guard let s = quoted.first else { return nil }
            return .serial(s)
        case UInt8(ascii: "F"), UInt8(ascii: "T"):
            guard quoted.count >= 3, let t = dateTime(quoted[1], quoted[2]) else { return nil }
            return .clock(t)
        case UInt8(ascii: "P"):
            guard body.count > 2 else { return nil }
            if (0x30...0x39).contains(body[2]) {
                var n = 0
                var i = 2
                while i < body.count, (0x30...0x39).contains(body[i]), n < 100_000 {
                    n = n * 10 + Int(body[i] - 0x30); i += 1
                }
                guard quoted.count >= 2 else { return nil }
                return .dumpHeader(count: n, serial: quoted[0], unit: quoted[1])
            }
            guard quoted.count >= 4, let t = dateTime(quoted[1], quoted[2]) else { return nil }
            let r = Array(quoted[3].utf8)
            guard r.count == 6 else { return nil }
            let isControl = r[0] == UInt8(ascii: "C")
            let middle = String(decoding: r[1...4], as: UTF8.self)
            let glucose: ObservationValue
            if middle == "HIGH" {
                glucose = .unavailable(.aboveRange)
            } else if r[5] == UInt8(ascii: "?") {
                glucose = .unavailable(.deviceError)
            } else {
                let digits = r[1...4].filter { $0 != UInt8(ascii: " ") }
                guard !digits.isEmpty, digits.allSatisfy({ (0x30...0x39).contains($0) }), r[5] == UInt8(ascii: " ") else { return nil }
                let v = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
                glucose = Plausible.check(Double(v), Plausible.glucoseMgPerDL)
            }
            return .record(Record(time: t, glucose: glucose, isControl: isControl, rawResult: quoted[3]))
        default:
            return .other(String(decoding: body, as: UTF8.self))
        }
    }

    static func quotedFields(_ body: [UInt8]) -> [String] {
        var out: [String] = []
        var current: [UInt8]?
        for c in body {
            if c == UInt8(ascii: "\"") {
                if let cur = current { out.append(String(decoding: cur, as: UTF8.self)); current = nil } else { current = [] }
            } else if current != nil {
                current?.append(c)
            }
        }
        return out
    }

    /// `"MM/DD/YY"`, `"HH:MM:SS   "`.
    static func dateTime(_ date: String, _ time: String) -> DeviceDateTime? {
        let d = Array(date.utf8), t = Array(time.utf8.prefix(8))
        return MasimoASCII1Decoder.dateTime(d, t)
    }
}

/// The records already stored for one meter: the newest record's time and the identities of
/// the records at that very second. Records at or before it are not downloaded again.
public struct OneTouchWatermark: Hashable, Sendable {
    public var time: DeviceDateTime
    public var keysAtTime: Set<String>
    public init(time: DeviceDateTime, keysAtTime: Set<String>) {
        self.time = time
        self.keysAtTime = keysAtTime
    }

    /// Whether a record with this time and key was already stored.
    public func covers(time t: DeviceDateTime, key: String) -> Bool {
        let a = t.asIfUTC, b = time.asIfUTC
        return a < b || (a == b && keysAtTime.contains(key))
    }

    /// The watermark after also storing a record with this time and key.
    public func advanced(time t: DeviceDateTime, key: String) -> OneTouchWatermark {
        if t.asIfUTC > time.asIfUTC { return OneTouchWatermark(time: t, keysAtTime: [key]) }
        if t.asIfUTC == time.asIfUTC { return OneTouchWatermark(time: time, keysAtTime: keysAtTime.union([key])) }
        return self
    }
}

/// The host side of one OneTouch download, a pure state machine: ask the serial number (`DM@`),
/// the clock (`DMF`), then the dump (`DMP`); check every line's checksum; collect the records
/// (newest first on the wire) and, when the dump is complete, emit the ones the watermark does
/// not cover, oldest first, so the caller can advance the watermark one accepted record at a
/// time. A bad or missing line makes the step retry (up to `maxAttempts`), never a partial dump.
public struct OneTouchSession: Sendable {
    public enum Phase: Hashable, Sendable { case idle, serial, clock, dump, done, failed }

    public private(set) var phase: Phase = .idle
    public private(set) var serial: String?
    public var watermarkFor: @Sendable (String) -> OneTouchWatermark?
    public var replyTimeoutMilliseconds: Int64
    public var maxAttempts: Int
    private var lines = LineFraming(maxLength: 200)
    private var deadline: Int64 = .max
    private var attempts = 0
    private var expected = -1
    private var records: [OneTouchUltra2.Record] = []

    /// - Parameter watermark: looks up the stored watermark for a meter serial number.
    public init(replyTimeoutMilliseconds: Int64 = 3000, maxAttempts: Int = 3,
                watermark: @escaping @Sendable (String) -> OneTouchWatermark?) {
        self.replyTimeoutMilliseconds = replyTimeoutMilliseconds
        self.maxAttempts = maxAttempts
        self.watermarkFor = watermark
    }

    public var nextDeadline: Int64 { deadline }

    public static func recordKey(serial: String, _ r: OneTouchUltra2.Record) -> String {
        "\(serial)|\(r.time)|\(r.rawResult)"
    }

    /// Starts the download: the first command to send.
    public mutating func opened(atMilliseconds now: Int64) -> [UInt8] {
        attempts = 0
        return enter(.serial, now)
    }

    private mutating func enter(_ p: Phase, _ now: Int64) -> [UInt8] {
        phase = p
        records = []
        expected = -1  // no dump header yet
        deadline = now + replyTimeoutMilliseconds
        switch p {
        case .serial: return OneTouchUltra2.command("DM@")
        case .clock: return OneTouchUltra2.command("DMF")
        case .dump: return OneTouchUltra2.command("DMP")
        default:
            deadline = .max
            return []
        }
    }

    private mutating func retry(_ now: Int64) -> [UInt8] {
        attempts += 1
        if attempts >= maxAttempts {
            phase = .failed
            deadline = .max
            return []
        }
        return enter(phase, now)
    }

    /// Bytes due at `now` (a retry after a reply timeout).
    public mutating func tick(atMilliseconds now: Int64) -> [UInt8] {
        guard now >= deadline else { return [] }
        return retry(now)
    }

    /// Feeds received bytes; returns events and bytes to send next.
    public mutating func received<S: Sequence<UInt8>>(_ bytes: S, atMilliseconds now: Int64) -> (events: [DecoderEvent], send: [UInt8]) {
        var events: [DecoderEvent] = []
        var send: [UInt8] = []
        for byte in bytes {
            var skipped = 0
            guard let line = lines.push(byte, discardedBefore: &skipped) else { continue }
            guard phase == .serial || phase == .clock || phase == .dump else { continue }
            guard let body = OneTouchUltra2.verifiedBody(line), let reply = OneTouchUltra2.parseReply(body) else {
                events.append(.discarded(bytes: skipped + lines.lastLineRawCount, reason: .badChecksum))
                if phase == .dump { send += retry(now) }  // a partial dump is never used
                continue
            }
            if skipped > 0 { events.append(.discarded(bytes: skipped, reason: .badLine)) }
            switch (phase, reply) {
            case (.serial, .serial(let s)):
                serial = s
                events.append(.info(.serialNumber(s)))
                attempts = 0
                send += enter(.clock, now)
            case (.clock, .clock(let t)):
                events.append(.info(.clock(t)))
                attempts = 0
                send += enter(.dump, now)
            case (.dump, .dumpHeader(let n, let s, _)):
                if let known = serial, known != s {
                    send += retry(now)  // a different meter answered
                    continue
                }
                expected = n
                records = []
                records.reserveCapacity(min(n, 1000))
                events.append(.info(.recordCount(n)))
                deadline = now + replyTimeoutMilliseconds
                if n == 0 { finish(&events) }
            case (.dump, .record(let r)) where expected >= 0:
                records.append(r)
                deadline = now + replyTimeoutMilliseconds
                if records.count >= expected { finish(&events) }
            default:
                break  // an echo or an unrelated line
            }
        }
        return (events, send)
    }

    private mutating func finish(_ events: inout [DecoderEvent]) {
        phase = .done
        deadline = .max
        let s = serial ?? ""
        let mark = watermarkFor(s)
        for r in records.reversed() where !r.isControl {
            let key = Self.recordKey(serial: s, r)
            if let mark, mark.covers(time: r.time, key: key) { continue }
            events.append(.reading(DecodedReading(
                observations: [Observation(code: .glucoseCapillaryWholeBlood, value: r.glucose, unit: .milligramPerDecilitre)],
                deviceTime: r.time, recordKey: key)))
        }
        records = []
    }
}
