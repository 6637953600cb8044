import IoMTCore
@testable import IoMTSerial
import IoMTSerialSimulators
import Testing

@Suite("Contec old 5-byte protocol (reference §1a)")
struct ContecLegacyTests {
    @Test("constructed frame 86 0B 00 48 61: signal 6, pleth 11, PR 72, SpO2 97; 60 frames make one reading")
    func constructedFrame() {
        let bytes = Array([[UInt8]](repeating: hex("86 0B 00 48 61"), count: 60).joined())
        let (events, agree) = decodeAllWays(ContecLegacyDecoder(), bytes)
        #expect(agree)
        #expect(events.readings.count == 1)
        let r = events.readings[0]
        #expect(r.value(.pulseOximetrySpO2) == .numeric(97))
        #expect(r.value(.pulseOximetryPulseRate) == .numeric(72))
        #expect(r.value(.pulseOximetryPleth) == .waveform(samples: Array(repeating: 11, count: 60), samplePeriodMilliseconds: 1000.0 / 60))
        #expect(r.value(.pulseOximetryPerfusionIndex) == nil)
        #expect(abs(r.ageMilliseconds - 59 * 1000.0 / 60) < 0.001)
        #expect(events.states == [DeviceState()])
    }

    @Test("atbrask vector 80 00 40 00 00: PR bit 7 comes from byte 3 bit 6 (PR 128), SpO2 0 is missing")
    func pulseHighBit() {
        let f = ContecLegacyDecoder.frame(hex("80 00 40 00 00"))
        #expect(f.pulse == .numeric(128))
        #expect(f.spo2 == .unavailable(.missing))
    }

    @Test("atbrask vector 80 00 10 00 00: probe error is sensor-off, never a number")
    func probeError() {
        let f = ContecLegacyDecoder.frame(hex("80 00 10 48 61"))
        #expect(f.spo2 == .unavailable(.sensorOff))
        #expect(f.pulse == .unavailable(.sensorOff))
        #expect(f.conditions.contains(.sensorOff))
        #expect(!f.plethValid)
    }

    @Test("atbrask vector 90 00 00 00 00 (byte 1 bit 4, searching too long / finger out) blocks the numbers")
    func byte1Bit4() {
        let f = ContecLegacyDecoder.frame(hex("90 00 00 48 61"))
        #expect(f.spo2 == .unavailable(.searching))
        #expect(f.conditions.contains(.searchingTooLong))
    }

    @Test("SpO2 127 and PR 255 are missing, not numbers")
    func sentinels() {
        let f = ContecLegacyDecoder.frame(hex("86 0B 40 7F 7F"))
        #expect(f.spo2 == .unavailable(.missing))
        #expect(f.pulse == .unavailable(.missing))
    }

    @Test("garbage, a frame cut short and a stray sync byte are skipped; sync comes back byte by byte")
    func resync() {
        let good = ContecLegacyEncoder.frame(spo2: 97, pulse: 72, pleth: 11)
        var bytes: [UInt8] = [0x00, 0x13, 0x11, 0x7F]           // start-up noise
        bytes += Array(good.prefix(3))                           // truncated frame
        for _ in 0..<60 { bytes += good }
        let (events, agree) = decodeAllWays(ContecLegacyDecoder(samplesPerBatch: 30), bytes)
        #expect(agree)
        #expect(events.discardedBytes == 7)
        #expect(events.readings.count == 2)
        #expect(events.readings.allSatisfy { $0.value(.pulseOximetrySpO2) == .numeric(97) })
    }

    @Test("a finger-out frame inside a batch makes the batch's pleth unavailable and reports the state change")
    func fingerOutBatch() {
        var bytes: [UInt8] = []
        for i in 0..<60 { bytes += ContecLegacyEncoder.frame(spo2: 97, pulse: 72, pleth: 11, probeError: i == 59) }
        let events = whole(ContecLegacyDecoder(), bytes)
        #expect(events.states.count == 2)
        #expect(events.states.last?.conditions.contains(.sensorOff) == true)
        #expect(events.readings[0].value(.pulseOximetryPleth) == .unavailable(.sensorOff))
        #expect(events.readings[0].value(.pulseOximetrySpO2) == .unavailable(.sensorOff))
    }
}

@Suite("Contec V7.0 command protocol (reference §1b)")
struct ContecV7Tests {
    @Test("real frame 01 E0 85 B3 96 C1 E1 FF FF (headrotor): PR 65, SpO2 97, pleth 51, PI not supported")
    func headrotorFrame() {
        let d = ContecV7Decoder.data(hex("01 E0 85 B3 96 C1 E1 FF FF"))
        #expect(d == [0x05, 0x33, 0x16, 0x41, 0x61, 0xFF, 0xFF])
        let frames = [hex("01 E0 85 B3 96 C1 E1 FF FF"), hex("01 E0 85 B0 96 C1 E1 FF FF"), hex("01 E0 85 AE 95 C1 E1 FF FF")]
        var bytes: [UInt8] = []
        for _ in 0..<20 { for f in frames { bytes += f } }
        let (events, agree) = decodeAllWays(ContecV7Decoder(), bytes)
        #expect(agree)
        #expect(events.readings.count == 1)
        let r = events.readings[0]
        #expect(r.value(.pulseOximetrySpO2) == .numeric(97))
        #expect(r.value(.pulseOximetryPulseRate) == .numeric(65))
        #expect(r.value(.pulseOximetryPerfusionIndex) == nil)
        guard case .waveform(let samples, _)? = r.value(.pulseOximetryPleth) else {
            Issue.record("no waveform"); return
        }
        #expect(Array(samples.prefix(3)) == [51, 48, 46])
    }

    @Test("real frame 01 E0 85 D5 9A BD E3 FF FF (MarkMLl): PR 61 (not the comment's 53), SpO2 99, pleth 85")
    func markMLlFrame() {
        let d = ContecV7Decoder.data(hex("01 E0 85 D5 9A BD E3 FF FF"))
        #expect(d[3] == 61)
        #expect(d[4] == 99)
        #expect(d[1] == 85)
        #expect(d[2] & 0x0F == 10)
    }

    @Test("high byte E1 (D0 bit 7, probe error) and E2 (D1 bit 7, searching) give statuses, not numbers")
    func invalidStates() {
        var bytes: [UInt8] = []
        for _ in 0..<60 { bytes += hex("01 E1 85 B3 96 C1 E1 FF FF") }
        for _ in 0..<60 { bytes += hex("01 E2 85 B3 96 C1 E1 FF FF") }
        let events = whole(ContecV7Decoder(), bytes)
        #expect(events.readings.count == 2)
        #expect(events.readings[0].value(.pulseOximetrySpO2) == .unavailable(.sensorOff))
        #expect(events.readings[0].value(.pulseOximetryPulseRate) == .unavailable(.sensorOff))
        #expect(events.readings[1].value(.pulseOximetrySpO2) == .unavailable(.searching))
        #expect(events.states.map { $0.conditions } == [[.sensorOff], [.searching]])
    }

    @Test("SpO2 0/0x7F and PR 0/0xFF are missing (V7.0 sentinels and the v4.6 zeroes)")
    func sentinels() {
        for (pr, spo2) in [(0, 97), (0xFF, 97), (65, 0), (65, 0x7F)] {
            var bytes: [UInt8] = []
            for _ in 0..<60 { bytes += ContecV7Encoder.realTime(spo2: spo2, pulse: pr, pleth: 10) }
            let r = whole(ContecV7Decoder(), bytes).readings[0]
            let numbers = [r.value(.pulseOximetrySpO2), r.value(.pulseOximetryPulseRate)].filter {
                if case .numeric? = $0 { true } else { false }
            }
            #expect(numbers.count == 1, "pr \(pr) spo2 \(spo2)")
        }
    }

    @Test("perfusion index x0.01 % little-endian when supported; 0xFFFF afterwards becomes a status")
    func perfusionIndex() {
        var bytes: [UInt8] = []
        for _ in 0..<60 { bytes += ContecV7Encoder.realTime(spo2: 97, pulse: 65, pleth: 10, perfusionIndex: 360) }
        for _ in 0..<60 { bytes += ContecV7Encoder.realTime(spo2: 97, pulse: 65, pleth: 10, perfusionIndex: nil) }
        let rs = whole(ContecV7Decoder(), bytes).readings
        #expect(rs[0].value(.pulseOximetryPerfusionIndex) == .numeric(3.6))
        #expect(rs[1].value(.pulseOximetryPerfusionIndex) == .unavailable(.missing))
    }

    @Test("command replies captured by headrotor do not break sync; the device id is reported")
    func commandReplies() {
        let frame = hex("01 E0 85 B3 96 C1 E1 FF FF")
        var bytes: [UInt8] = hex("0C 80") + hex("06 80 80 87") + hex("04 80 F5 F3 E5 F2 A0 A0 A0")
            + hex("11 80 81 81 80 80 80 80 80") + hex("0E 80 81")
        for _ in 0..<60 { bytes += frame }
        let (events, agree) = decodeAllWays(ContecV7Decoder(), bytes)
        #expect(agree)
        #expect(events.discardedBytes == 0)
        #expect(events.contains(.info(.deviceName("user"))))
        #expect(events.readings.count == 1)
    }

    @Test("start, keep-alive and other commands encode as the reference says")
    func commands() {
        #expect(ContecV7Command.startRealTime.encoded == hex("7D 81 A1 80 80 80 80 80 80"))
        #expect(ContecV7Command.keepAlive.encoded == hex("7D 81 AF 80 80 80 80 80 80"))
        #expect(ContecV7Command.stopRealTime.encoded == hex("7D 81 A2 80 80 80 80 80 80"))
    }

    @Test("session: start on open, keep-alive every 5 s while data flows, start again after 3 s of silence")
    func session() {
        var s = ContecV7Session()
        #expect(s.opened(atMilliseconds: 0) == ContecV7Command.startRealTime.encoded)
        #expect(s.tick(atMilliseconds: 1000).isEmpty)
        var t: Int64 = 0
        var sent: [[UInt8]] = []
        while t < 10_000 {
            t += 100
            s.receivedData(atMilliseconds: t)
            if t >= s.nextDeadline { sent.append(s.tick(atMilliseconds: t)) }
        }
        #expect(sent == [ContecV7Command.keepAlive.encoded, ContecV7Command.keepAlive.encoded])
        #expect(s.nextDeadline == 13_000)
        #expect(s.tick(atMilliseconds: 13_000) == ContecV7Command.startRealTime.encoded)
    }
}
