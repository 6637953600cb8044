import IoMTCore
@testable import IoMTSerial
import IoMTSerialSimulators
import Testing

@Suite("OneTouch Ultra 2 (reference §4)")
struct OneTouchTests {
    @Test("real reply lines pass the checksum; one changed byte fails it", arguments: [
        "@ \"DVGC32ETT\" 031A",
        "F \"TUE\",\"01/03/17\",\"17:59:55   \" 0616",
        "P 125,\"VJN486FAY\",\"MG/DL \" 05CB",
        "P \"SAT\",\"08/02/08\",\"04:06:02   \",\"  097 \",\"N\",\"00\", 00 09B6",
        "P \"WED\",\"11/10/10\",\"01:46:00   \",\"  076 \",\"N\",\"00\", 00 099C",
        "P \"SAT\",\"05/27/06\",\"16:42:08   \",\"  051 \", 00 0829",
        "T \"SAT\",\"08/03/13\",\"22:12:00   \" 0608",
    ])
    func checksums(_ line: String) {
        let bytes = Array(line.utf8)
        #expect(OneTouchUltra2.verifiedBody(bytes) != nil)
        var bad = bytes
        bad[2] &+= 1
        #expect(OneTouchUltra2.verifiedBody(bad) == nil)
    }

    @Test("records: Ultra 2 (97 mg/dL), original Ultra (51), HIGH, meter error flag, control solution")
    func records() throws {
        func rec(_ s: String) -> OneTouchUltra2.Record? {
            guard case .record(let r)? = OneTouchUltra2.parseReply(Array(s.utf8)) else { return nil }
            return r
        }
        let r1 = try #require(rec("P \"SAT\",\"08/02/08\",\"04:06:02   \",\"  097 \",\"N\",\"00\", 00"))
        #expect(r1.glucose == .numeric(97))
        #expect(r1.time.description == "2008-08-02 04:06:02")
        #expect(rec("P \"SAT\",\"05/27/06\",\"16:42:08   \",\"  051 \", 00")?.glucose == .numeric(51))
        #expect(rec("P \"SAT\",\"05/27/06\",\"16:42:08   \",\" HIGH \", 00")?.glucose == .unavailable(.aboveRange))
        #expect(rec("P \"SAT\",\"05/27/06\",\"16:42:08   \",\"  051?\", 00")?.glucose == .unavailable(.deviceError))
        #expect(rec("P \"SAT\",\"05/27/06\",\"16:42:08   \",\"C 100 \", 00")?.isControl == true)
        #expect(rec("P \"SAT\",\"13/27/06\",\"16:42:08   \",\"  051 \", 00") == nil)
        #expect(OneTouchUltra2.command("DMP") == [0x11, 0x0D, 0x44, 0x4D, 0x50, 0x0D])
    }

    func run(_ meter: inout OneTouchMeterSimulator, _ session: inout OneTouchSession, chunk: Int = 1) -> [DecoderEvent] {
        var events: [DecoderEvent] = []
        var toMeter = session.opened(atMilliseconds: 0)
        var now: Int64 = 0
        while !toMeter.isEmpty {
            let reply = meter.hostSent(toMeter)
            toMeter = []
            var i = 0
            while i < reply.count {
                let (e, s) = session.received(reply[i..<min(reply.count, i + chunk)], atMilliseconds: now)
                events += e
                toMeter += s
                i += chunk
            }
            now += 10
        }
        return events
    }

    let stored = [
        OneTouchMeterSimulator.StoredRecord(date: "03/07/10", time: "11:09:13", mgPerDL: 86),
        OneTouchMeterSimulator.StoredRecord(date: "03/06/10", time: "08:00:00", mgPerDL: 120),
        OneTouchMeterSimulator.StoredRecord(date: "03/05/10", time: "07:30:00", mgPerDL: 101),
    ]

    @Test("session: serial, clock, dump; records come out oldest first with a record key")
    func session() {
        var meter = OneTouchMeterSimulator(records: stored)
        var s = OneTouchSession(watermark: { _ in nil })
        let events = run(&meter, &s)
        #expect(s.phase == .done)
        #expect(events.contains(.info(.serialNumber("ZSK2326BY"))))
        #expect(events.contains(.info(.recordCount(3))))
        #expect(events.readings.map { $0.observations[0].value } == [.numeric(101), .numeric(120), .numeric(86)])
        #expect(events.readings.map { $0.observations[0].unit } == Array(repeating: UCUMUnit(rawValue: "mg/dL"), count: 3))
        var byteWise = OneTouchMeterSimulator(records: stored)
        var s2 = OneTouchSession(watermark: { _ in nil })
        #expect(run(&byteWise, &s2, chunk: 7) == events)
    }

    @Test("the watermark skips records already stored: a reconnect never duplicates a reading")
    func watermark() throws {
        var meter = OneTouchMeterSimulator(records: stored)
        var s = OneTouchSession(watermark: { _ in nil })
        let first = run(&meter, &s).readings
        var mark: OneTouchWatermark?
        for r in first.prefix(2) {
            let t = try #require(r.deviceTime), k = try #require(r.recordKey)
            mark = mark?.advanced(time: t, key: k) ?? OneTouchWatermark(time: t, keysAtTime: [k])
        }
        let saved = mark
        meter.records.insert(.init(date: "03/08/10", time: "09:00:00", mgPerDL: 140), at: 0)
        var again = OneTouchSession(watermark: { _ in saved })
        let second = run(&meter, &again).readings
        #expect(second.map { $0.observations[0].value } == [.numeric(86), .numeric(140)])
    }

    @Test("a record with a bad checksum restarts the dump; the result is complete, not partial")
    func badChecksumRetries() {
        var meter = OneTouchMeterSimulator(records: stored)
        meter.corruptRecordOnce = 1
        var s = OneTouchSession(watermark: { _ in nil })
        let events = run(&meter, &s)
        #expect(events.discardReasons.contains(.badChecksum))
        #expect(events.readings.count == 3)
        #expect(s.phase == .done)
    }

    @Test("no reply: retries then gives up (failed), never hangs")
    func timeout() {
        var s = OneTouchSession(replyTimeoutMilliseconds: 1000, maxAttempts: 3, watermark: { _ in nil })
        _ = s.opened(atMilliseconds: 0)
        #expect(s.tick(atMilliseconds: 999).isEmpty)
        #expect(s.tick(atMilliseconds: 1000) == OneTouchUltra2.command("DM@"))
        #expect(s.tick(atMilliseconds: 2000) == OneTouchUltra2.command("DM@"))
        #expect(s.tick(atMilliseconds: 3000).isEmpty)
        #expect(s.phase == .failed)
    }
}
