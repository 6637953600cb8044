import IoMTCore
import IoMTHealthProfiles
import Testing

@Suite struct MedicalFloatTests {
    // Reference §1.3 (PHD IG FLOATS.md): on-air bytes, value, decimal text with precision.
    static let floats: [(String, Double, String)] = [
        ("02 00 00 00", 2, "2"), ("14 00 00 FF", 2, "2.0"), ("C8 00 00 FE", 2, "2.00"),
        ("02 00 00 01", 20, "20"), ("02 00 00 02", 200, "200"), ("D2 04 00 00", 1234, "1234"),
        ("2E FB FF 00", -1234, "-1234"), ("B0 0E 00 FE", 37.6, "37.60"), ("6D 01 00 FF", 36.5, "36.5"),
    ]
    static let sfloats: [(String, Double, String)] = [
        ("02 00", 2, "2"), ("14 F0", 2, "2.0"), ("C8 E0", 2, "2.00"), ("02 10", 20, "20"), ("02 20", 200, "200"),
        ("D2 04", 1234, "1234"), ("2E 0B", -1234, "-1234"), ("BD F0", 18.9, "18.9"), ("E8 F3", 100, "100.0"),
        ("84 F3", 90, "90.0"), ("57 F0", 8.7, "8.7"), ("78 B0", 0.0012, "0.00120"),
    ]

    @Test(arguments: floats.indices) func floatVectors(_ i: Int) throws {
        let (bytes, v, text) = Self.floats[i]
        var r = ByteReader(hex(bytes))
        let f = try r.float("value")
        #expect(f.doubleValue == v)
        #expect(f.decimalString == text)
    }

    @Test(arguments: sfloats.indices) func sfloatVectors(_ i: Int) throws {
        let (bytes, v, text) = Self.sfloats[i]
        var r = ByteReader(hex(bytes))
        let f = try r.sfloat("value")
        #expect(f.doubleValue == v)
        #expect(f.decimalString == text)
    }

    @Test func sfloatSpecialsAreStatusesNotNumbers() {
        let cases: [(UInt16, ValueStatus)] = [(0x07FF, .notANumber), (0x0800, .notAtThisResolution),
                                              (0x07FE, .positiveInfinity), (0x0802, .negativeInfinity),
                                              (0x0801, .reserved)]
        for (word, s) in cases {
            let f = MedicalFloat(sfloat: word)
            #expect(f.kind == .special(s))
            #expect(f.doubleValue == nil)
            #expect(f.observationValue == .unavailable(s))
        }
        // Reserved mantissas with a non-zero exponent are not numbers either.
        for e: UInt16 in 1...15 {
            for m: UInt16 in [0x7FE, 0x7FF, 0x800, 0x801, 0x802] {
                #expect(MedicalFloat(sfloat: e << 12 | m).doubleValue == nil)
            }
        }
        // The largest finite mantissa is still a number.
        #expect(MedicalFloat(sfloat: 0x07FD).doubleValue == 2045)
        #expect(MedicalFloat(sfloat: 0x0803).doubleValue == -2045)
    }

    @Test func floatSpecialsAreStatusesNotNumbers() {
        let cases: [(UInt32, ValueStatus)] = [(0x007F_FFFF, .notANumber), (0x0080_0000, .notAtThisResolution),
                                              (0x007F_FFFE, .positiveInfinity), (0x0080_0002, .negativeInfinity),
                                              (0x0080_0001, .reserved)]
        for (word, s) in cases {
            #expect(MedicalFloat(float: word).kind == .special(s))
            #expect(MedicalFloat(float: 0x0300_0000 | word).doubleValue == nil)
        }
        #expect(MedicalFloat(float: 0x007F_FFFD).doubleValue == 8_388_605)
    }

    @Test func encodeRoundTrips() throws {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let m = Int32.random(in: -2045...2045, using: &rng), e = Int8.random(in: -8...7, using: &rng)
            let word = try #require(MedicalFloat.sfloatWord(mantissa: m, exponent: e))
            #expect(MedicalFloat(sfloat: word).kind == .finite(mantissa: m, exponent: e))
            let m32 = Int32.random(in: -0x7F_FFFD...0x7F_FFFD, using: &rng), e32 = Int8.random(in: -128...127, using: &rng)
            let w32 = try #require(MedicalFloat.floatWord(mantissa: m32, exponent: e32))
            #expect(MedicalFloat(float: w32).kind == .finite(mantissa: m32, exponent: e32))
        }
        #expect(MedicalFloat.sfloatWord(mantissa: 2047, exponent: 0) == nil)
    }

    @Test func everyWordDecodesToAFiniteNumberOrAStatus() {
        for w in 0...UInt16.max {
            let f = MedicalFloat(sfloat: w)
            switch f.kind {
            case .finite: #expect(f.doubleValue?.isFinite == true)
            case .special: #expect(f.doubleValue == nil)
            }
        }
        // FLOAT: huge exponents must not produce infinity as a number.
        #expect(MedicalFloat(float: 0x7F00_0001).doubleValue == nil || MedicalFloat(float: 0x7F00_0001).doubleValue!.isFinite)
        #expect(MedicalFloat(float: 0x7F7F_FFFD).doubleValue?.isFinite == true)
        #expect(MedicalFloat(float: 0x807F_FFFD).doubleValue.map { $0 > 0 && $0 < 1e-120 } == true)
    }
}
