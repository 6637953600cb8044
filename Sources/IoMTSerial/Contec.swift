import IoMTCore

/// Contec CMS50D+/E/F "old" streaming protocol (firmware <= 4.5): 5-byte frames at 60 frames/s,
/// 19200 8O1 (4800 8N1 per one translated manual), no command needed. Reference §1a.
///
/// | byte | content |
/// |---|---|
/// | 1 | b7 = 1 (sync), b6 beep, b5 SpO2 dropping, b4 "searching too long"/"finger out" (sources disagree), b3..0 signal |
/// | 2 | pleth 7 bits |
/// | 3 | b6 PR bit 7, b5 searching, b4 probe error, b3..0 bargraph |
/// | 4 | PR bits 6..0 |
/// | 5 | SpO2 |
///
/// No public document defines sentinels for this protocol; the reference's rule (mirroring the
/// new protocol) is applied: the frame's numbers are invalid if byte 3 b4 (probe error) or b5
/// (searching) or byte 1 b4 is set, or SpO2 in {0, 127}, or PR in {0, 255}. Byte 1 b4 is read
/// as "searching too long" (translated manual, Yujia-Yan, V7.0) but, since atbrask calls it
/// "finger out", it blocks the numbers either way.
public struct ContecLegacyDecoder: StreamDecoder {
    public static let framesPerSecond = 60
    private var sync = FrameSync(capacity: 8)
    private var assembler: OximetryAssembler
    private var discardedSeen = 0

    /// - Parameter samplesPerBatch: pleth samples per reading (60 = one reading a second).
    public init(samplesPerBatch: Int = ContecLegacyDecoder.framesPerSecond) {
        assembler = OximetryAssembler(samplesPerBatch: samplesPerBatch, samplePeriodMilliseconds: 1000.0 / 60)
    }

    static func parse(_ b: ArraySlice<UInt8>) -> FrameParse {
        let s = b.startIndex
        guard b[s] & 0x80 != 0 else { return .invalid(.noise) }
        for i in 1..<min(b.count, 5) where b[s + i] & 0x80 != 0 { return .invalid(.badFrame) }
        return b.count >= 5 ? .frame(5) : .needMore
    }

    public mutating func feed<S: Sequence<UInt8>>(_ bytes: S) -> [DecoderEvent] {
        var events: [DecoderEvent] = []
        for byte in bytes {
            sync.append(byte)
            while let f = sync.nextFrame(Self.parse, events: &events) {
                if sync.totalDiscarded != discardedSeen {
                    discardedSeen = sync.totalDiscarded
                    assembler.breakBatch()
                }
                assembler.add(Self.frame(f), into: &events)
            }
        }
        return events
    }

    /// Decodes one 5-byte frame (already checked by `parse`) into per-frame values.
    static func frame(_ f: [UInt8]) -> OximetryAssembler.Frame {
        let probeError = f[2] & 0x10 != 0
        let searching = f[2] & 0x20 != 0
        let searchingTooLong = f[0] & 0x10 != 0
        var conditions: Set<DeviceCondition> = []
        if probeError { conditions.insert(.sensorOff) }
        if searching { conditions.insert(.searching) }
        if searchingTooLong { conditions.insert(.searchingTooLong) }
        if f[0] & 0x20 != 0 { conditions.insert(.spo2Dropping) }
        let pr = Int(f[2] & 0x40) << 1 | Int(f[3] & 0x7F)
        let spo2 = Int(f[4] & 0x7F)
        let blocked: ValueStatus? = probeError ? .sensorOff : (searching || searchingTooLong) ? .searching : nil
        return .init(
            spo2: blocked.map { .unavailable($0) } ?? contecValue(spo2, invalid: [0, 127], Plausible.spo2),
            pulse: blocked.map { .unavailable($0) } ?? contecValue(pr, invalid: [0, 255], Plausible.pulseRate),
            perfusionIndex: nil, pleth: Double(f[1] & 0x7F), plethValid: !probeError, conditions: conditions)
    }
}

func contecValue(_ v: Int, invalid: [Int], _ range: ClosedRange<Double>) -> ObservationValue {
    invalid.contains(v) ? .unavailable(.missing) : Plausible.check(Double(v), range)
}

/// Contec "Communication protocol of pulse oximeter V7.0" (CMS50D+ fw 4.6, CMS50E/F/FW, CMS50I):
/// command-driven, 115200 8N1. Reference §1b.
///
/// Framing (both directions): byte 0 = packet type (b7 = 0), byte 1 = "high byte" (b7 = 1,
/// bit i = bit 7 of data byte i), then data bytes with b7 forced to 1:
/// `D[i] = (b[2+i] & 0x7F) | ((b[1] >> i) & 1) << 7`.
///
/// Real-time package: type 0x01, 7 data bytes, 60/s: D0 b3..0 signal, b4 searching too long,
/// b5 SpO2 dropping, b6 beep, b7 probe error (finger out); D1 b6..0 pleth, b7 searching; D2 b3..0
/// bargraph, b4 PI valid; D3 PR (0xFF invalid); D4 SpO2 (0x7F invalid); D5,D6 PI little-endian
/// x0.01 % (0xFFFF invalid / not supported). Invalid if D0.b7 or D1.b7, SpO2 in {0, 0x7F},
/// PR in {0, 0xFF} (a v4.6 unit reports 0 while unusable: tobac, OSCAR).
public struct ContecV7Decoder: StreamDecoder {
    public static let framesPerSecond = 60
    private var sync = FrameSync(capacity: 16)
    private var assembler: OximetryAssembler
    private var discardedSeen = 0
    /// Set once a PI other than 0xFFFF was seen: from then on a missing PI is published as a status.
    private var perfusionSupported = false

    public init(samplesPerBatch: Int = ContecV7Decoder.framesPerSecond) {
        assembler = OximetryAssembler(samplesPerBatch: samplesPerBatch, samplePeriodMilliseconds: 1000.0 / 60)
    }

    /// Data bytes by packet type (bmartin427 from V7.0; 0x02/0x03/0x06 from headrotor's captures [U]).
    static func dataLength(type: UInt8) -> Int? {
        switch type {
        case 0x01, 0x02, 0x03, 0x04, 0x05, 0x11, 0x15, 0x7D: 7
        case 0x07, 0x08, 0x0F, 0x12: 6
        case 0x09: 4
        case 0x06, 0x0A, 0x0B: 2
        case 0x0D, 0x0E, 0x10: 1
        case 0x0C: 0
        default: nil
        }
    }

    static func parse(_ b: ArraySlice<UInt8>) -> FrameParse {
        let s = b.startIndex
        guard b[s] & 0x80 == 0, let n = dataLength(type: b[s]) else { return .invalid(.noise) }
        for i in 1..<min(b.count, n + 2) where b[s + i] & 0x80 == 0 { return .invalid(.badFrame) }
        return b.count >= n + 2 ? .frame(n + 2) : .needMore
    }

    /// Restores the data bytes of a checked frame.
    static func data(_ f: [UInt8]) -> [UInt8] {
        guard f.count >= 2 else { return [] }
        return (2..<f.count).map { i in (f[i] & 0x7F) | (((f[1] >> UInt8((i - 2) & 7)) & 1) << 7) }
    }

    public mutating func feed<S: Sequence<UInt8>>(_ bytes: S) -> [DecoderEvent] {
        var events: [DecoderEvent] = []
        for byte in bytes {
            sync.append(byte)
            while let f = sync.nextFrame(Self.parse, events: &events) {
                if sync.totalDiscarded != discardedSeen {
                    discardedSeen = sync.totalDiscarded
                    assembler.breakBatch()
                }
                let d = Self.data(f)
                switch f[0] {
                case 0x01:
                    let pi = UInt16(d[5]) | UInt16(d[6]) << 8
                    if pi != 0xFFFF { perfusionSupported = true }
                    assembler.add(frame(d, pi: pi), into: &events)
                case 0x04:
                    // Device id: 7 ASCII characters, set by the user (headrotor: `04 80 F5 F3 E5 F2 A0 A0 A0`
                    // = "user   "): a name, not a serial number.
                    if let text = printable(d) { events.append(.info(.deviceName(text))) }
                case 0x02:
                    if let text = printable(d) { events.append(.info(.model(text))) }
                default:
                    break // command feedback, notices, storage packets: not used for live readings
                }
            }
        }
        return events
    }

    func frame(_ d: [UInt8], pi: UInt16) -> OximetryAssembler.Frame {
        let probeError = d[0] & 0x80 != 0
        let searching = d[1] & 0x80 != 0
        var conditions: Set<DeviceCondition> = []
        if probeError { conditions.insert(.sensorOff) }
        if searching { conditions.insert(.searching) }
        if d[0] & 0x10 != 0 { conditions.insert(.searchingTooLong) }
        if d[0] & 0x20 != 0 { conditions.insert(.spo2Dropping) }
        let blocked: ValueStatus? = probeError ? .sensorOff : searching ? .searching : nil
        let perfusion: ObservationValue?
        if pi == 0xFFFF, !perfusionSupported {
            perfusion = nil  // this unit has no perfusion index
        } else if let blocked {
            perfusion = .unavailable(blocked)
        } else if pi == 0xFFFF || d[2] & 0x10 == 0 {
            perfusion = .unavailable(.missing)  // 0xFFFF, or the PI-valid bit clear
        } else {
            perfusion = Plausible.check(Double(pi) / 100, Plausible.perfusionIndex)
        }
        return .init(
            spo2: blocked.map { .unavailable($0) } ?? contecValue(Int(d[4]), invalid: [0, 0x7F], Plausible.spo2),
            pulse: blocked.map { .unavailable($0) } ?? contecValue(Int(d[3]), invalid: [0, 0xFF], Plausible.pulseRate),
            perfusionIndex: perfusion, pleth: Double(d[1] & 0x7F), plethValid: !probeError, conditions: conditions)
    }
}

private func printable(_ d: [UInt8]) -> String? {
    let chars = d.filter { $0 >= 0x20 && $0 < 0x7F }
    guard chars.count == d.count else { return nil }
    var s = String(decoding: chars, as: UTF8.self)
    while s.hasSuffix(" ") { s.removeLast() }
    return s
}

/// Commands of the Contec V7.0 protocol (bmartin427 `cms50.py` constants; reference §1b).
public struct ContecV7Command: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let startRealTime = ContecV7Command(rawValue: 0xA1)
    public static let stopRealTime = ContecV7Command(rawValue: 0xA2)
    public static let model = ContecV7Command(rawValue: 0xA8)
    public static let vendor = ContecV7Command(rawValue: 0xA9)
    public static let deviceID = ContecV7Command(rawValue: 0xAA)
    public static let perfusionSupport = ContecV7Command(rawValue: 0xAC)
    public static let keepAlive = ContecV7Command(rawValue: 0xAF)

    /// The 9-byte packet: type 0x7D, high byte, command code + 6 zero bytes, each data byte with
    /// b7 forced to 1. `startRealTime` encodes as `7D 81 A1 80 80 80 80 80 80`.
    public var encoded: [UInt8] {
        let data: [UInt8] = [rawValue, 0, 0, 0, 0, 0, 0]
        var high: UInt8 = 0x80
        for (i, d) in data.enumerated() where d & 0x80 != 0 { high |= 1 << UInt8(i) }
        return [0x7D, high] + data.map { $0 | 0x80 }
    }
}

/// The host side of the V7.0 session, as a pure timer state machine: what to send when the port
/// opens and when. The real-time stream stops about 30 s after `A1` unless refreshed (MarkMLl,
/// tobac); this sends the keep-alive `AF` every `keepAliveInterval` (5 s, as timegrid does) and
/// re-sends the start command when no real-time packet came for `restartAfter`.
public struct ContecV7Session: Sendable {
    public var keepAliveIntervalMilliseconds: Int64
    public var restartAfterMilliseconds: Int64
    private var nextKeepAlive: Int64 = .max
    private var lastData: Int64 = 0
    private var lastStart: Int64 = 0

    public init(keepAliveIntervalMilliseconds: Int64 = 5000, restartAfterMilliseconds: Int64 = 3000) {
        self.keepAliveIntervalMilliseconds = keepAliveIntervalMilliseconds
        self.restartAfterMilliseconds = restartAfterMilliseconds
    }

    /// Bytes to send once the port is open: the start command.
    public mutating func opened(atMilliseconds now: Int64) -> [UInt8] {
        lastData = now
        lastStart = now
        nextKeepAlive = now + keepAliveIntervalMilliseconds
        return ContecV7Command.startRealTime.encoded
    }

    /// Tells the session that real-time data arrived.
    public mutating func receivedData(atMilliseconds now: Int64) { lastData = now }

    /// The next time `tick` has something to do (a poll(2) timeout for the I/O side).
    public var nextDeadline: Int64 {
        min(nextKeepAlive, max(lastData, lastStart) + restartAfterMilliseconds)
    }

    /// Bytes due at `now`: keep-alive, or the start command again when the stream went quiet.
    public mutating func tick(atMilliseconds now: Int64) -> [UInt8] {
        var out: [UInt8] = []
        if now - max(lastData, lastStart) >= restartAfterMilliseconds {
            lastStart = now
            nextKeepAlive = now + keepAliveIntervalMilliseconds
            out += ContecV7Command.startRealTime.encoded
        } else if now >= nextKeepAlive {
            nextKeepAlive = now + keepAliveIntervalMilliseconds
            out += ContecV7Command.keepAlive.encoded
        }
        return out
    }
}
