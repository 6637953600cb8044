import Testing
@testable import IoMTCore

@Suite struct TimestampTests {
    @Test func formatsEpochAndKnownInstants() {
        #expect(Timestamp(millisecondsSinceEpoch: 0).rfc3339 == "1970-01-01T00:00:00.000Z")
        // 2024-02-29T12:34:56.789Z (leap day)
        #expect(Timestamp(millisecondsSinceEpoch: 1_709_210_096_789).rfc3339 == "2024-02-29T12:34:56.789Z")
        #expect(Timestamp(millisecondsSinceEpoch: -1).rfc3339 == "1969-12-31T23:59:59.999Z")
    }

    @Test func parsesOffsetsAndFractions() {
        #expect(Timestamp(rfc3339: "2024-02-29T12:34:56.789Z")?.millisecondsSinceEpoch == 1_709_210_096_789)
        #expect(Timestamp(rfc3339: "2024-02-29T14:34:56.7+02:00")?.millisecondsSinceEpoch == 1_709_210_096_700)
        #expect(Timestamp(rfc3339: "2024-02-29T12:34:56.123456Z")?.millisecondsSinceEpoch == 1_709_210_096_123)
        #expect(Timestamp(rfc3339: "2024-02-29T12:34:56Z")?.millisecondsSinceEpoch == 1_709_210_096_000)
    }

    @Test(arguments: ["", "2024-02-29", "2024-13-01T00:00:00Z", "2024-02-29T12:34:56", "2024-02-29T12:34:56.Z",
                      "2024-02-29T25:00:00Z", "2024-02-29T12:34:56Zjunk", "x024-02-29T12:34:56Z"])
    func rejectsMalformed(_ text: String) {
        #expect(Timestamp(rfc3339: text) == nil)
    }

    @Test func roundTripsOverFourCenturies() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let ms = Int64(rng.next() % 12_000_000_000_000) - 2_000_000_000_000
            let t = Timestamp(millisecondsSinceEpoch: ms)
            #expect(Timestamp(rfc3339: t.rfc3339) == t)
        }
    }
}

