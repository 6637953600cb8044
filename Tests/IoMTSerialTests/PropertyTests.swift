import IoMTCore
@testable import IoMTSerial
import IoMTSerialSimulators
import Testing

/// A decoder under test, type-erased, with the stream of valid bytes it should understand.
struct DecoderCase: Sendable, CustomStringConvertible {
    var description: String
    var make: @Sendable () -> any StreamDecoder
    var valid: @Sendable (inout SimRandom) -> [UInt8]
    /// Largest pleth sample the format can carry.
    var plethMax: Double
}

func feedAny(_ d: any StreamDecoder, _ bytes: [UInt8], chunk: Int) -> [DecoderEvent] {
    func go<D: StreamDecoder>(_ d: D) -> [DecoderEvent] {
        var d = d
        if chunk <= 0 { return d.feed(bytes) }
        var out: [DecoderEvent] = []
        var i = 0
        while i < bytes.count {
            out += d.feed(bytes[i..<min(bytes.count, i + chunk)])
            i += chunk
        }
        return out
    }
    return go(d)
}

let decoderCases: [DecoderCase] = [
    DecoderCase(description: "contec-legacy", make: { ContecLegacyDecoder() }, valid: { rng in
        var b: [UInt8] = []
        for i in 0..<180 {
            b += ContecLegacyEncoder.frame(spo2: Int.random(in: 85...100, using: &rng), pulse: Int.random(in: 40...200, using: &rng),
                                           pleth: i % 100, probeError: i % 50 == 49)
        }
        return b
    }, plethMax: 127),
    DecoderCase(description: "contec-v7", make: { ContecV7Decoder() }, valid: { rng in
        var b: [UInt8] = ContecV7Encoder.packet(type: 0x0C, data: [])
        for i in 0..<180 {
            b += ContecV7Encoder.realTime(spo2: Int.random(in: 85...100, using: &rng), pulse: Int.random(in: 40...250, using: &rng),
                                          pleth: i % 128, perfusionIndex: i < 90 ? nil : Int.random(in: 20...2000, using: &rng))
        }
        return b
    }, plethMax: 127),
    DecoderCase(description: "nonin-df2", make: { NoninFrameDecoder(format: .df2) }, valid: { rng in
        var b: [UInt8] = []
        for _ in 0..<9 { b += NoninEncoder.packet(format: .df2, hr: 72, spo2: 97, pleth: { ($0 * 37) & 0xFF }) }
        return b
    }, plethMax: 255),
    DecoderCase(description: "nonin-df7", make: { NoninFrameDecoder(format: .df7) }, valid: { rng in
        var b: [UInt8] = []
        for _ in 0..<9 { b += NoninEncoder.packet(format: .df7, hr: 72, spo2: 97, pleth: { ($0 * 2731) & 0xFFFF }) }
        return b
    }, plethMax: 65535),
    DecoderCase(description: "nonin-df8", make: { NoninDF8Decoder() }, valid: { rng in
        var b: [UInt8] = []
        for i in 0..<60 { b += NoninEncoder.df8(hr: 72, spo2: 97, sensorAlarm: i % 10 == 9) }
        return b
    }, plethMax: 0),
    DecoderCase(description: "masimo-ascii1", make: { MasimoASCII1Decoder() }, valid: { rng in
        var b: [UInt8] = []
        for i in 0..<20 { b += MasimoEncoder.line(second: i, spo2: i % 5 == 4 ? nil : 97, bpm: 72, pi: 3.6, exc: i % 7 == 6 ? 0x820 : 0x800) }
        return b
    }, plethMax: 0),
]

/// Every number a decoder publishes must be plausible, and every waveform well-formed.
func checkPlausible(_ events: [DecoderEvent], plethMax: Double, _ name: String) {
    for r in events.readings {
        for o in r.observations {
            switch o.value {
            case .numeric(let v):
                let range: ClosedRange<Double>
                switch o.code {
                case .pulseOximetrySpO2: range = Plausible.spo2
                case .pulseOximetryPulseRate: range = Plausible.pulseRate
                case .pulseOximetryPerfusionIndex: range = Plausible.perfusionIndex
                case .glucoseCapillaryWholeBlood: range = Plausible.glucoseMgPerDL
                default: range = -.infinity...(.infinity)
                }
                #expect(v.isFinite && range.contains(v), "\(name): \(o.code) = \(v)")
            case .waveform(let samples, let period):
                #expect(samples.count >= 1 && samples.count <= 75, "\(name): \(samples.count) samples")
                #expect(period > 0)
                #expect(samples.allSatisfy { $0 >= 0 && $0 <= plethMax }, "\(name): pleth out of range")
            case .unavailable:
                break
            }
        }
    }
}

@Suite("Property tests: random and mutated bytes into every decoder")
struct PropertyTests {
    @Test("random bytes: no crash, plausible numbers only, chunking never matters", arguments: decoderCases)
    func randomBytes(_ c: DecoderCase) {
        for seed in 0..<40 {
            var rng = SimRandom(seed: UInt64(seed))
            let n = Int.random(in: 0...4096, using: &rng)
            // Mix fully random bytes with bytes biased towards frame starts and line ends.
            let bytes: [UInt8] = (0..<n).map { _ in
                switch rng.next() % 8 {
                case 0: 0x01
                case 1: 0x0A
                case 2: 0x80 | UInt8(truncatingIfNeeded: rng.next() & 0x0F)
                default: UInt8(truncatingIfNeeded: rng.next())
                }
            }
            let a = feedAny(c.make(), bytes, chunk: 0)
            let b = feedAny(c.make(), bytes, chunk: 1)
            let d = feedAny(c.make(), bytes, chunk: 13)
            #expect(a == b && a == d, "\(c): chunking changed the result, seed \(seed)")
            checkPlausible(a, plethMax: c.plethMax, c.description)
            // Nothing is invented: at most one reading per minimal frame's worth of bytes.
            #expect(a.readings.count <= n / 4 + 1)
        }
    }

    @Test("mutated valid streams (bit flips, inserted, deleted and repeated bytes): plausible numbers, chunking never matters",
          arguments: decoderCases)
    func mutated(_ c: DecoderCase) {
        for seed in 0..<40 {
            var rng = SimRandom(seed: UInt64(seed) &+ 1000)
            var bytes = c.valid(&rng)
            let clean = feedAny(c.make(), bytes, chunk: 0)
            #expect(!clean.readings.isEmpty, "\(c): the valid stream decodes")
            for _ in 0..<Int.random(in: 1...12, using: &rng) {
                guard !bytes.isEmpty else { break }
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                switch rng.next() % 4 {
                case 0: bytes[at] ^= UInt8(1) << UInt8(rng.next() % 8)
                case 1: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                case 2: bytes.remove(at: at)
                default:
                    let len = min(9, bytes.count - at)
                    bytes.insert(contentsOf: bytes[at..<(at + len)], at: at)
                }
            }
            let a = feedAny(c.make(), bytes, chunk: 0)
            let b = feedAny(c.make(), bytes, chunk: 1)
            #expect(a == b, "\(c): chunking changed the result, seed \(seed)")
            checkPlausible(a, plethMax: c.plethMax, c.description)
        }
    }

    @Test("Nonin #2/#7 checksums: single bit flips never yield a value that was not sent",
          arguments: [NoninFrameDecoder.Format.df2, .df7])
    func noninBitFlips(_ format: NoninFrameDecoder.Format) {
        for seed in 0..<100 {
            var rng = SimRandom(seed: UInt64(seed) &+ 5000)
            var bytes: [UInt8] = []
            for _ in 0..<12 { bytes += NoninEncoder.packet(format: format, hr: 72, spo2: 97, pleth: { ($0 * 37) & 0x7F }) }
            // Flips at least 10 bytes apart (a 16-bit/8-bit sum catches any single-bit error in a frame).
            var at = Int.random(in: 0..<10, using: &rng)
            while at < bytes.count {
                bytes[at] ^= UInt8(1) << UInt8(rng.next() % 8)
                at += Int.random(in: 10...200, using: &rng)
            }
            for r in feedAny(NoninFrameDecoder(format: format), bytes, chunk: 0).readings {
                let hr = r.value(.pulseOximetryPulseRate), spo2 = r.value(.pulseOximetrySpO2)
                #expect(hr == .numeric(72) || hr == .unavailable(.missing), "seed \(seed): HR \(String(describing: hr))")
                #expect(spo2 == .numeric(97) || spo2 == .unavailable(.missing), "seed \(seed): SpO2 \(String(describing: spo2))")
            }
        }
    }

    @Test("OneTouch: a bit flip anywhere in the dump never yields a glucose value the meter did not store")
    func oneTouchBitFlips() {
        let stored = (0..<20).map { OneTouchMeterSimulator.StoredRecord(date: "03/\(10 + $0)/10", time: "08:00:00", mgPerDL: 80 + $0) }
        let truth = Set(stored.map { Double($0.mgPerDL) })
        var meter = OneTouchMeterSimulator(records: stored)
        _ = meter.hostSent(OneTouchUltra2.command("DM@") + OneTouchUltra2.command("DMF"))
        let dump = meter.hostSent(OneTouchUltra2.command("DMP"))
        for seed in 0..<200 {
            var rng = SimRandom(seed: UInt64(seed))
            var bytes = dump
            bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8(1) << UInt8(rng.next() % 7)
            var s = OneTouchSession(watermark: { _ in nil })
            _ = s.opened(atMilliseconds: 0)
            _ = s.received(OneTouchMeterSimulator.line("@ \"ZSK2326BY\""), atMilliseconds: 0)
            _ = s.received(OneTouchMeterSimulator.line("F \"TUE\",\"01/03/17\",\"17:59:55   \""), atMilliseconds: 0)
            let events = s.received(bytes, atMilliseconds: 0).events
            for r in events.readings {
                guard case .numeric(let v) = r.observations[0].value else { continue }
                #expect(truth.contains(v), "seed \(seed): \(v)")
            }
            checkPlausible(events, plethMax: 0, "onetouch")
        }
    }

    @Test("drivers with timers (Contec V7 session, OneTouch session) take random bytes and random clocks without trouble")
    func drivers() {
        for seed in 0..<30 {
            var rng = SimRandom(seed: UInt64(seed) &+ 77)
            var drivers: [any DeviceDriver] = [ContecV7Driver(), OneTouchDriver(watermark: { _ in nil })]
            for i in drivers.indices {
                func go<D: DeviceDriver>(_ d: D) -> (D, [DecoderEvent]) {
                    var d = d
                    var now: Int64 = 0
                    var events: [DecoderEvent] = []
                    _ = d.opened(atMilliseconds: now)
                    for _ in 0..<200 {
                        now += Int64.random(in: 0...2000, using: &rng)
                        let bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in
                            rng.next() % 3 == 0 ? UInt8(ascii: "\n") : UInt8(truncatingIfNeeded: rng.next())
                        }
                        events += d.received(bytes[...], atMilliseconds: now).events
                        let sent = d.tick(atMilliseconds: now)
                        #expect(sent.count <= 64)
                        #expect(d.nextDeadline >= now || d.nextDeadline == .max || now >= d.nextDeadline)
                    }
                    return (d, events)
                }
                let (d, events) = go(drivers[i])
                drivers[i] = d
                checkPlausible(events, plethMax: 127, "driver \(i)")
            }
        }
    }

    @Test("300 kB of noise decodes in bounded time (no hang, no quadratic re-scan)", arguments: decoderCases)
    func noHang(_ c: DecoderCase) {
        var rng = SimRandom(seed: 42)
        let bytes: [UInt8] = (0..<300_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let start = ContinuousClock.now
        let events = feedAny(c.make(), bytes, chunk: 4096)
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .seconds(20), "\(c): \(elapsed)")
        checkPlausible(events, plethMax: c.plethMax, c.description)
    }
}
