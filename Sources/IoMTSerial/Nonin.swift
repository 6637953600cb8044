import IoMTCore

/// Nonin serial data formats #2 and #7: 5-byte frames, 25 frames a packet, 75 frames/s, 9600 8N1.
/// Reference §2 (Nonin "Model 9560 Bluetooth Specification"; pufferfish `TestNoninOEM3.cpp`;
/// mdpnp `Packet.java`).
///
/// - #2: `01 STATUS PLETH FLOAT CHK`, CHK = (b1+b2+b3+b4) mod 256.
/// - #7: `STATUS PLETH_MSB PLETH_LSB FLOAT CHK` (16-bit pleth), same checksum over 4 bytes.
///
/// STATUS: b7 = 1; b6 sensor disconnect (OEM III; reserved on the 9560); b5 ARTF artifact;
/// b4 OOT out of track; b3 SNSA sensor alarm (finger removed); b2..1 perfusion colour;
/// b0 SYNC (frame 1 of a packet only). FLOAT by frame: 1 HR MSB, 2 HR LSB, 3 SpO2, 8 STAT2
/// (b0 low battery). HR = (MSB & 0x03) << 7 | LSB & 0x7F. Missing: HR 511, SpO2 127.
///
/// The 4-beat averages of frames 1-3 are used (they go missing at once when the finger is
/// removed); the "-D" display values are not, since they are held for 10 s after removal.
/// A packet's numbers are used only if all its first three frames arrived in sequence; after
/// any lost sync the decoder waits for the next SYNC frame. Format #7 syncs on STATUS b7 +
/// checksum + the SYNC bit every 25th frame, since the pleth bytes may be >= 0x80.
public struct NoninFrameDecoder: StreamDecoder {
    public enum Format: Sendable { case df2, df7 }
    public static let framesPerSecond = 75
    public let format: Format
    private var sync = FrameSync(capacity: 8)
    private var assembler: OximetryAssembler
    private var discardedSeen = 0
    /// 1...25 within the packet, nil while out of sync.
    private var position: Int?
    private var hrMSB: UInt8?
    private var hr: ObservationValue = .unavailable(.missing)
    private var spo2: ObservationValue = .unavailable(.missing)
    private var lowBattery = false

    public init(format: Format, samplesPerBatch: Int = NoninFrameDecoder.framesPerSecond) {
        self.format = format
        assembler = OximetryAssembler(samplesPerBatch: samplesPerBatch, samplePeriodMilliseconds: 1000.0 / 75)
    }

    static func parseDF2(_ b: ArraySlice<UInt8>) -> FrameParse {
        let s = b.startIndex
        guard b[s] == 0x01 else { return .invalid(.noise) }
        if b.count >= 2, b[s + 1] & 0x80 == 0 { return .invalid(.badFrame) }
        if b.count >= 4, b[s + 3] & 0x80 != 0 { return .invalid(.badFrame) }
        guard b.count >= 5 else { return .needMore }
        let sum = b[s + 1] &+ b[s + 2] &+ b[s + 3]
        return (sum &+ b[s]) == b[s + 4] ? .frame(5) : .invalid(.badChecksum)
    }

    static func parseDF7(_ b: ArraySlice<UInt8>) -> FrameParse {
        let s = b.startIndex
        guard b[s] & 0x80 != 0 else { return .invalid(.noise) }
        if b.count >= 4, b[s + 3] & 0x80 != 0 { return .invalid(.badFrame) }
        guard b.count >= 5 else { return .needMore }
        let sum = b[s] &+ b[s + 1] &+ b[s + 2] &+ b[s + 3]
        return sum == b[s + 4] ? .frame(5) : .invalid(.badChecksum)
    }

    public mutating func feed<S: Sequence<UInt8>>(_ bytes: S) -> [DecoderEvent] {
        var events: [DecoderEvent] = []
        let parse = format == .df2 ? Self.parseDF2 : Self.parseDF7
        for byte in bytes {
            sync.append(byte)
            while let f = sync.nextFrame(parse, events: &events) {
                if sync.totalDiscarded != discardedSeen {
                    discardedSeen = sync.totalDiscarded
                    lostSync()
                }
                handle(f, into: &events)
            }
        }
        return events
    }

    private mutating func lostSync() {
        position = nil
        hrMSB = nil
        assembler.breakBatch()
    }

    private mutating func handle(_ f: [UInt8], into events: inout [DecoderEvent]) {
        let status: UInt8, pleth: Double, float: UInt8
        switch format {
        case .df2: (status, pleth, float) = (f[1], Double(f[2]), f[3])
        case .df7: (status, pleth, float) = (f[0], Double(UInt16(f[1]) << 8 | UInt16(f[2])), f[3])
        }
        let isSync = status & 0x01 != 0
        if isSync {
            if let p = position, p != 25 { assembler.breakBatch() }  // a short packet: frames were lost
            position = 1
        } else if let p = position, p < 25 {
            position = p + 1
        } else {
            // Out of sync (or a 26th frame): wait for the next SYNC frame.
            if position != nil { lostSync() }
            sync.reject(f.count, .badFrame)
            discardedSeen = sync.totalDiscarded
            return
        }
        switch position {
        case 1: hrMSB = float
        case 2:
            if let msb = hrMSB {
                let value = Int(msb & 0x03) << 7 | Int(float & 0x7F)
                hr = value == 511 ? .unavailable(.missing) : Plausible.check(Double(value), Plausible.pulseRate)
            }
        case 3:
            let value = Int(float & 0x7F)
            spo2 = value == 127 ? .unavailable(.missing) : Plausible.check(Double(value), Plausible.spo2)
        case 8: lowBattery = float & 0x01 != 0
        default: break
        }
        var conditions: Set<DeviceCondition> = []
        let sensorOff = status & 0x08 != 0 || status & 0x40 != 0
        if sensorOff { conditions.insert(.sensorOff) }
        if status & 0x10 != 0 { conditions.insert(.outOfTrack) }
        if status & 0x20 != 0 { conditions.insert(.artifact) }
        if lowBattery { conditions.insert(.lowBattery) }
        let blocked: ValueStatus? = sensorOff ? .sensorOff : status & 0x10 != 0 ? .searching : nil
        assembler.add(.init(spo2: blocked.map { .unavailable($0) } ?? spo2,
                            pulse: blocked.map { .unavailable($0) } ?? hr,
                            perfusionIndex: nil, pleth: pleth, plethValid: !sensorOff, conditions: conditions),
                      into: &events)
    }
}

/// Nonin data format #8: 4 bytes once a second, no checksum, 9600 8N1. Reference §2.
///
/// | byte | content |
/// |---|---|
/// | 1 | b7 = 1; b5 OOT; b4 LPRF low perfusion; b3 MPRF marginal; b2 ARTF; b1..0 HR bits 8..7 |
/// | 2 | b7 = 0; HR bits 6..0 (HR-D) |
/// | 3 | b7 = 0; SpO2-D |
/// | 4 | b7 = 0; b5 SmartPoint; b3 SNSA; b0 low battery |
///
/// Missing: HR 511, SpO2 127. `83 7F 7F 08` is HR/SpO2 missing with SNSA. The "-D" values are
/// held up to 10 s after finger removal, so SNSA blocks the numbers.
public struct NoninDF8Decoder: StreamDecoder {
    private var sync = FrameSync(capacity: 8)
    private var lastState: DeviceState?

    public init() {}

    static func parse(_ b: ArraySlice<UInt8>) -> FrameParse {
        let s = b.startIndex
        guard b[s] & 0x80 != 0 else { return .invalid(.noise) }
        for i in 1..<min(b.count, 4) where b[s + i] & 0x80 != 0 { return .invalid(.badFrame) }
        return b.count >= 4 ? .frame(4) : .needMore
    }

    public mutating func feed<S: Sequence<UInt8>>(_ bytes: S) -> [DecoderEvent] {
        var events: [DecoderEvent] = []
        for byte in bytes {
            sync.append(byte)
            while let f = sync.nextFrame(Self.parse, events: &events) {
                var conditions: Set<DeviceCondition> = []
                let sensorOff = f[3] & 0x08 != 0
                let outOfTrack = f[0] & 0x20 != 0
                if sensorOff { conditions.insert(.sensorOff) }
                if outOfTrack { conditions.insert(.outOfTrack) }
                if f[0] & 0x10 != 0 { conditions.insert(.lowPerfusion) }
                if f[0] & 0x08 != 0 { conditions.insert(.marginalPerfusion) }
                if f[0] & 0x04 != 0 { conditions.insert(.artifact) }
                if f[3] & 0x01 != 0 { conditions.insert(.lowBattery) }
                let state = DeviceState(conditions: conditions)
                if state != lastState {
                    lastState = state
                    events.append(.state(state))
                }
                let blocked: ValueStatus? = sensorOff ? .sensorOff : outOfTrack ? .searching : nil
                let hr = Int(f[0] & 0x03) << 7 | Int(f[1] & 0x7F)
                let spo2 = Int(f[2] & 0x7F)
                let hrValue: ObservationValue = blocked.map { .unavailable($0) }
                    ?? (hr == 511 ? .unavailable(.missing) : Plausible.check(Double(hr), Plausible.pulseRate))
                let spo2Value: ObservationValue = blocked.map { .unavailable($0) }
                    ?? (spo2 == 127 ? .unavailable(.missing) : Plausible.check(Double(spo2), Plausible.spo2))
                events.append(.reading(DecodedReading(observations: [
                    Observation(code: .pulseOximetrySpO2, value: spo2Value, unit: .percent),
                    Observation(code: .pulseOximetryPulseRate, value: hrValue, unit: .perMinute),
                ])))
            }
        }
        return events
    }
}
