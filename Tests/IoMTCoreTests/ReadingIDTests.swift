import Testing
@testable import IoMTCore

@Suite struct ReadingIDTests {
    @Test func hasVersion7VariantAndTimestamp() {
        var gen = ReadingIDGenerator()
        let t = Timestamp(millisecondsSinceEpoch: 1_764_093_159_123)
        let id = gen.next(at: t)
        #expect(id.unixMilliseconds == t.millisecondsSinceEpoch)
        #expect((id.high >> 12) & 0xF == 7)
        #expect(id.low >> 62 == 0b10)
        let text = id.description
        #expect(text.count == 36)
        #expect(Array(text)[14] == "7")
        #expect(ReadingID(text) == id)
        #expect(ReadingID(text.uppercased()) == id)
    }

    @Test func strictlyIncreasingWithinAMillisecondAndAcrossClockStepBack() {
        var gen = ReadingIDGenerator()
        let t = Timestamp(millisecondsSinceEpoch: 1_764_093_159_123)
        var last = gen.next(at: t)
        for i in 0..<10_000 {
            // same millisecond for many ids, then the clock steps back by a second
            let now = i < 5000 ? t : t.adding(milliseconds: -1000)
            let id = gen.next(at: now)
            #expect(id > last)
            last = id
        }
    }

    @Test(arguments: ["", "0192e0a0-0000-7000-8000-00000000000", "0192e0a0x0000-7000-8000-000000000000",
                      "0192e0a0-0000-7000-8000-00000000000g", "0192e0a0-0000-7000-8000-0000000000000"])
    func rejectsMalformed(_ text: String) {
        #expect(ReadingID(text) == nil)
    }
}
