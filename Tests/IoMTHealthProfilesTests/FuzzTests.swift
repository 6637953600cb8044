import IoMTCore
import IoMTHealthProfiles
import Testing

/// Property tests: random and mutated payloads never crash a decoder, and never yield a number
/// outside the plausible range of its (code, unit), nor a non-finite number.
@Suite struct FuzzTests {
    struct Target: Sendable, CustomStringConvertible {
        var name: String
        var seeds: [String]
        /// Every emitted numeric must have a defined range (fixed-code profiles).
        var everyCodeHasRange: Bool = true
        var decode: @Sendable ([UInt8]) throws -> [DecodedMeasurement]
        var description: String { name }
    }

    static let targets: [Target] = [
        Target(name: "heart rate", seeds: ["00 55", "04 FF", "1E 55 32 00 21 00", "1F 01 01 32 01 01 00 02 01 FF FF", "16 48 00 04 A4 03"]) {
            [try HeartRateMeasurement.decode($0).normalized]
        },
        Target(name: "temperature", seeds: ["06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04", "00 6D 01 00 FF", "01 C9 03 00 FF"]) {
            [try TemperatureMeasurement.decode($0).normalized]
        },
        Target(name: "blood pressure", seeds: [BloodPressureTests.mmHg, BloodPressureTests.kPa, "00 96 00 FF 07 FF 07"]) {
            let bp = try BloodPressureMeasurement.decode($0)
            return [bp.normalized, bp.normalizedAsIntermediateCuffPressure]
        },
        Target(name: "plx spot-check", seeds: ["0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3"]) {
            [try PLXSpotCheckMeasurement.decode($0).normalized]
        },
        Target(name: "plx continuous", seeds: ["00 E8 F3 84 F3", "1C 5F 00 5A 00 20 00 00 00 00 57 F0",
                                               "1F DE F3 CA F3 CA F3 5A F5 D4 F3 B2 F2 20 01 00 00 00 7A E3"]) {
            [try PLXContinuousMeasurement.decode($0).normalized]
        },
        Target(name: "weight", seeds: ["0C 14 37 01 E6 00 D6 06", "01 48 3C", "02 14 37 E8 07 03 0F 07 2D 00"]) {
            [try WeightMeasurement.decode($0).normalized]
        },
        Target(name: "body composition", seeds: ["04 0C FD 00 02 14 37 D6 06",
                                                 "FF 1F C8 00 E8 07 03 0F 07 2D 00 01 10 27 90 01 A0 0F 10 27 20 4E 30 75 88 13 48 3C BC 02"]) {
            [try BodyCompositionMeasurement.decode($0).normalized]
        },
        Target(name: "glucose", seeds: ["1B 01 00 E3 07 02 1B 0B 0A 1E FB FF 1E 00 12 05 01", "0A 2A 00 E8 07 03 0F 08 1E 00 78 B0 11 00 00",
                                        "06 2A 00 E8 07 03 0F 08 1E 00 41 C0 11", "03 2A 00 E8 07 03 0F 08 1E 00 F6 FF 78 B0 11"]) {
            [try GlucoseMeasurement.decode($0).normalized]
        },
        Target(name: "glucose context", seeds: ["02 2A 00 01", "FF 2A 00 00 01 32 D0 02 51 10 0E 32 01 0A E0 05 F0"]) {
            _ = try GlucoseMeasurementContext.decode($0).statuses
            return []
        },
        Target(name: "racp response", seeds: ["05 00 0A 00", "06 00 01 01"]) { _ = try RACP.decodeResponse($0); return [] },
        Target(name: "cgm", seeds: ["06 00 0C 10 06 00", "0F E3 D2 E4 05 00 02 14 FF 02 F0 E5 F3 8E 3F", "06 00 0C 10 06 00 06 00 0D 10 0B 00"]) {
            try CGMMeasurement.decode($0).map { $0.normalized(sessionStart: CGMSessionStartTime(
                start: DateTime(year: 2024, month: 3, day: 15, hours: 8, minutes: 0, seconds: 0), timeZone: 4, dstOffset: 0)) }
        },
        Target(name: "ghs", seeds: [GenericHealthSensorTests.stBundleBytes.map { String($0, radix: 16) }.joined(separator: " "),
                                    "01 0E 00 09 00 1A 48 02 00 01 00 FF 0F 62 00 00 00"], everyCodeHasRange: false) {
            [GenericHealthSensor.normalized(try GenericHealthSensor.decode($0).observation)]
        },
        Target(name: "device information", seeds: ["00 01 00 06 02 01 00 02 AB CD", "DE BC 9A FE FF 56 34 12"]) {
            var id = DeviceIdentity()
            for uuid: UInt16 in [0x2A23, 0x2A29, 0x2A50, 0x2A2A] { try? id.apply(uuid: uuid, value: $0) }
            _ = id.stableID
            return []
        },
        Target(name: "battery", seeds: ["64"]) { [DecodedMeasurement(observations: [try DeviceStatus.decodeBatteryLevel($0).battery])] },
        Target(name: "current time", seeds: ["E8 07 03 0F 0E 1E 00 05 00 01"]) { _ = try CurrentTime.decode($0).deviceTime; return [] },
        Target(name: "advertisement", seeds: ["5A 00 6A 0E FF 07"]) {
            [try AdvertisementProfileTests.thermometer.decode(manufacturerData: [0x0059: $0])].compactMap { $0 }
        },
    ]

    static func check(_ results: [DecodedMeasurement], _ t: Target, _ input: [UInt8]) {
        for m in results {
            for o in m.observations {
                let range = PlausibleRange.range(for: o.code, unit: o.unit)
                switch o.value {
                case .numeric(let v):
                    #expect(v.isFinite, "\(t): non-finite number from \(input)")
                    if let range { #expect(range.contains(v), "\(t): \(o.code) \(v) \(o.unit) from \(input)") }
                    else if t.everyCodeHasRange { Issue.record("\(t): no range for \(o.code) \(o.unit)") }
                case .waveform(let samples, let period):
                    #expect(period.isFinite && period >= 0)
                    for s in samples {
                        #expect(s.isFinite)
                        if let range { #expect(range.contains(s), "\(t): sample \(s) from \(input)") }
                    }
                case .unavailable:
                    break
                }
            }
        }
    }

    @Test(arguments: targets) func randomPayloads(_ t: Target) {
        var rng = SplitMix64(seed: UInt64(t.name.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }))
        var decoded = 0
        for _ in 0..<3000 {
            let n = Int.random(in: 0...40, using: &rng)
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if let r = try? t.decode(bytes) { decoded += 1; Self.check(r, t, bytes) }
        }
        // Something must have decoded, or the property says nothing (GHS/CGM/advert reject most noise).
        if !["ghs", "cgm", "racp response"].contains(t.name) { #expect(decoded > 100, "\(t): only \(decoded) decoded") }
    }

    @Test(arguments: targets) func mutatedGoldens(_ t: Target) throws {
        var rng = SplitMix64(seed: 0xC0FFEE ^ UInt64(t.name.utf8.count))
        var decoded = 0
        for seed in t.seeds {
            let base = hex(seed.split(separator: " ").map { $0.count == 1 ? "0" + $0 : String($0) }.joined(separator: " "))
            _ = try t.decode(base)  // the seed itself decodes
            for _ in 0..<1500 {
                var b = base
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    switch Int.random(in: 0..<5, using: &rng) {
                    case 0 where !b.isEmpty: b[Int.random(in: 0..<b.count, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
                    case 1 where !b.isEmpty: b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                    case 2 where !b.isEmpty: b.removeLast(Int.random(in: 1...b.count, using: &rng))
                    case 3: b.append(UInt8.random(in: 0...255, using: &rng))
                    default: if !b.isEmpty { b[0] = UInt8.random(in: 0...255, using: &rng) }  // flags
                    }
                }
                if let r = try? t.decode(b) { decoded += 1; Self.check(r, t, b) }
            }
        }
        #expect(decoded > 0, "\(t): no mutation decoded")
    }
}
