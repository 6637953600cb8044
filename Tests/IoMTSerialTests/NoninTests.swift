import IoMTCore
@testable import IoMTSerial
import IoMTSerialSimulators
import Testing

/// The pufferfish `TestNoninOEM3.cpp` frames (reference §2), completed to a 25-frame packet.
func pufferfishPacket() -> [UInt8] {
    var p = hex("01 81 01 00 83") + hex("01 80 01 48 CA") + hex("01 80 01 61 E3") + hex("01 80 01 30 B2")
    for _ in 5...25 { p += hex("01 80 01 00 82") }
    return p
}

@Suite("Nonin formats #2, #7, #8 (reference §2)")
struct NoninTests {
    @Test("pufferfish DF2 vectors: HR 72 (MSB 0, LSB 0x48), SpO2 97; 3 packets make one 75-sample reading")
    func df2Vectors() {
        let bytes = pufferfishPacket() + pufferfishPacket() + pufferfishPacket()
        let (events, agree) = decodeAllWays(NoninFrameDecoder(format: .df2), bytes)
        #expect(agree)
        #expect(events.discardedBytes == 0)
        #expect(events.readings.count == 1)
        let r = events.readings[0]
        #expect(r.value(.pulseOximetryPulseRate) == .numeric(72))
        #expect(r.value(.pulseOximetrySpO2) == .numeric(97))
        #expect(r.value(.pulseOximetryPleth) == .waveform(samples: Array(repeating: 1, count: 75), samplePeriodMilliseconds: 1000.0 / 75))
    }

    @Test("pufferfish negatives: bad checksum 01 80 01 48 CB and status bit 7 clear 01 7F 01 48 CA are rejected")
    func df2Negatives() {
        #expect(NoninFrameDecoder.parseDF2(hex("01 80 01 48 CB")[...]).isInvalid(.badChecksum))
        #expect(NoninFrameDecoder.parseDF2(hex("01 7F 01 48 CA")[...]).isInvalid(.badFrame))
        #expect(NoninFrameDecoder.parseDF2(hex("01 80 01 48 CA")[...]).isFrame)
    }

    @Test("a bad checksum costs the packet's numbers until the next SYNC frame, never a wrong value")
    func df2BadChecksumResync() {
        var bad = pufferfishPacket()
        bad[9] ^= 0x01  // corrupt frame 2's checksum (HR LSB)
        let bytes = pufferfishPacket() + bad + pufferfishPacket() + pufferfishPacket() + pufferfishPacket()
        let (events, agree) = decodeAllWays(NoninFrameDecoder(format: .df2), bytes)
        #expect(agree)
        #expect(events.discardReasons.first == .badChecksum)
        #expect(events.discardedBytes >= 5)
        for r in events.readings {
            #expect(r.value(.pulseOximetryPulseRate) == .numeric(72))
        }
        #expect(events.readings.count == 1)  // the broken batch was dropped; 3 good packets after it
    }

    @Test("HR 511 and SpO2 127 are missing; SNSA (finger removed) is sensor-off")
    func df2Missing() {
        var bytes: [UInt8] = []
        for _ in 0..<3 { bytes += NoninEncoder.packet(format: .df2, hr: 511, spo2: 127, pleth: { _ in 0 }) }
        for _ in 0..<3 { bytes += NoninEncoder.packet(format: .df2, hr: 72, spo2: 97, pleth: { _ in 0 }, sensorAlarm: true) }
        let events = whole(NoninFrameDecoder(format: .df2), bytes)
        #expect(events.readings.count == 2)
        #expect(events.readings[0].value(.pulseOximetryPulseRate) == .unavailable(.missing))
        #expect(events.readings[0].value(.pulseOximetrySpO2) == .unavailable(.missing))
        #expect(events.readings[1].value(.pulseOximetrySpO2) == .unavailable(.sensorOff))
        #expect(events.readings[1].value(.pulseOximetryPleth) == .unavailable(.sensorOff))
        #expect(events.states.last?.conditions.contains(.sensorOff) == true)
    }

    @Test("DF7: 16-bit pleth with bytes >= 0x80 stays in sync")
    func df7() {
        var bytes: [UInt8] = [0x85, 0x01]  // noise first
        for _ in 0..<3 { bytes += NoninEncoder.packet(format: .df7, hr: 300, spo2: 88, pleth: { 0x8000 + $0 * 0x0101 }) }
        let (events, agree) = decodeAllWays(NoninFrameDecoder(format: .df7), bytes)
        #expect(agree)
        #expect(events.readings.count == 1)
        let r = events.readings[0]
        #expect(r.value(.pulseOximetryPulseRate) == .numeric(300))
        #expect(r.value(.pulseOximetrySpO2) == .numeric(88))
        guard case .waveform(let s, _)? = r.value(.pulseOximetryPleth) else { Issue.record("no pleth"); return }
        #expect(s.prefix(2) == [Double(0x8000), Double(0x8101)])
    }

    @Test("DF8: 80 48 61 00 is HR 72 / SpO2 97; 83 7F 7F 08 is sensor-off, never 511/127")
    func df8() {
        let (events, agree) = decodeAllWays(NoninDF8Decoder(), hex("80 48 61 00 83 7F 7F 08 83 7F 7F 00"))
        #expect(agree)
        let rs = events.readings
        #expect(rs.count == 3)
        #expect(rs[0].value(.pulseOximetryPulseRate) == .numeric(72))
        #expect(rs[0].value(.pulseOximetrySpO2) == .numeric(97))
        #expect(rs[1].value(.pulseOximetryPulseRate) == .unavailable(.sensorOff))
        #expect(rs[2].value(.pulseOximetryPulseRate) == .unavailable(.missing))
        #expect(rs[2].value(.pulseOximetrySpO2) == .unavailable(.missing))
    }
}

extension FrameParse {
    func isInvalid(_ r: DiscardReason) -> Bool { if case .invalid(let x) = self { x == r } else { false } }
    var isFrame: Bool { if case .frame = self { true } else { false } }
}
