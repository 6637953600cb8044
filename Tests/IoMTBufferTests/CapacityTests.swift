import Foundation
import IoMTCore
import Testing
@testable import IoMTBuffer

/// Logical size of one `MessageFactory` reading of dev-a/dev-b with a 100-byte payload.
private func size(_ m: OutgoingMessage) -> Int64 { BufferStore.logicalSize(m) }

@Suite struct CapacityTests {
    @Test func rejectRefusesWhatDoesNotFitAndRecordsCoalescedGap() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        var f = MessageFactory()
        let msgs = f.readings("dev-a", 1...5)
        let maxBytes = size(msgs[0]) * 3 + 10
        let buffer = try await openBuffer(dir.path("b.db"), maxBytes: maxBytes, onFull: .reject)

        let outcome = try await buffer.append(msgs)
        #expect(outcome.rowIDs.map { $0 != nil } == [true, true, true, false, false])
        #expect(outcome.rejectedIndices == [3, 4])
        #expect(outcome.losses.map(\.sequence) == [4, 5])
        #expect(outcome.losses.allSatisfy { $0.reason == .bufferFullRejected })
        // A later refusal continues the open (never leased) gap row.
        let later = try await buffer.append([f.reading("dev-a", 6)])
        #expect(later.rejectedIndices == [0])

        var stats = try await buffer.stats()
        #expect(stats.messageCount == 3)
        #expect(stats.bytes == size(msgs[0]) * 3)
        #expect(stats.bytes <= maxBytes)
        #expect(stats.gapRowsPending == 1)
        #expect(stats.lostByDevice == ["dev-a": 3])
        #expect(stats.totalLost == 3)
        #expect(try await buffer.loadSequences()["dev-a"] == 6)   // lost sequence numbers are never reused

        let leased = try await buffer.lease(limit: 10)
        #expect(leased.count == 4)
        let gap = leased[0]
        #expect(gap.message.kind == .gap)
        #expect(gap.message.topic == gapTopic)
        #expect(gap.message.priority == SQLiteBuffer.gapPriority)
        guard case .gap = gap.token else { Issue.record("gap row must carry a gap token"); return }
        let json = try gapJSON(gap)
        #expect(json["schema"] as? String == "iomt-gap/1")
        #expect(json["id"] as? String == gap.message.id.description)
        #expect(json["gateway_id"] as? String == testGateway)
        #expect(json["device_id"] as? String == "dev-a")
        #expect(json["first_sequence"] as? Int == 4)
        #expect(json["last_sequence"] as? Int == 6)
        #expect(json["count"] as? Int == 3)
        #expect(json["reason"] as? String == "buffer-full-rejected")
        #expect(seqs(Array(leased[1...])) == [1, 2, 3])

        // The gap row was handed out: a further loss must not change it under the same id.
        _ = try await buffer.append([f.reading("dev-a", 7)])
        stats = try await buffer.stats()
        #expect(stats.gapRowsPending == 2)
        await buffer.release([gap.token])
        let again = try await buffer.lease(limit: 1)
        #expect(again.first?.message == gap.message)   // redelivered gap keeps its id and content
    }

    @Test func dropOldestEvictsLowestPriorityThenOldestAndSkipsLeased() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        var f = MessageFactory()
        let a1 = f.reading("dev-a", 1, priority: 5)
        let a2 = f.reading("dev-a", 2)
        let a3 = f.reading("dev-a", 3)
        let maxBytes = size(a1) * 3 + 10
        let buffer = try await openBuffer(dir.path("b.db"), maxBytes: maxBytes, onFull: .dropOldest)
        _ = try await buffer.append([a1, a2, a3])

        let b1 = f.reading("dev-b", 1)
        let o1 = try await buffer.append([b1])
        #expect(o1.rejectedIndices.isEmpty)
        #expect(o1.evicted.map { "\($0.deviceID):\($0.sequence)" } == ["dev-a:2"])   // priority 5 survives
        #expect(o1.evicted.first?.reason == .bufferFullEvicted)

        // Lease the gap row, a1 and a3: leased rows are never evicted, so b1 goes next.
        let inFlight = try await buffer.lease(limit: 3)
        #expect(inFlight.map(\.message.kind) == [.gap, .reading, .reading])
        #expect(inFlight.dropFirst().map(\.message.id) == [a1.id, a3.id])
        let o2 = try await buffer.append([f.reading("dev-b", 2)])
        #expect(o2.evicted.map { "\($0.deviceID):\($0.sequence)" } == ["dev-b:1"])
        let b3 = f.reading("dev-b", 3)
        let o3 = try await buffer.append([b3])
        #expect(o3.evicted.map { "\($0.deviceID):\($0.sequence)" } == ["dev-b:2"])

        let stats = try await buffer.stats()
        #expect(stats.messageCount == 3)
        #expect(stats.bytes <= maxBytes)
        #expect(stats.lostByDevice == ["dev-a": 1, "dev-b": 2])
        #expect(stats.gapRowsPending == 2)    // dev-a 2, and dev-b 1...2 coalesced into one row

        await buffer.release(inFlight.map(\.token))
        let all = try await buffer.lease(limit: 10)
        let gaps = try all.filter { $0.message.kind == .gap }.map(gapJSON)
        #expect(gaps.count == 2)
        let byDevice = Dictionary(gaps.map { ($0["device_id"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        #expect(byDevice["dev-a"]?["first_sequence"] as? Int == 2)
        #expect(byDevice["dev-a"]?["count"] as? Int == 1)
        #expect(byDevice["dev-b"]?["first_sequence"] as? Int == 1)
        #expect(byDevice["dev-b"]?["last_sequence"] as? Int == 2)
        #expect(byDevice["dev-b"]?["count"] as? Int == 2)
        #expect(byDevice["dev-b"]?["reason"] as? String == "buffer-full-evicted")
        #expect(all.filter { $0.message.kind != .gap }.map(\.message.id) == [a1.id, a3.id, b3.id])
    }

    @Test func dropOldestNeverEvictsForAMessageThatCanNotFit() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        var f = MessageFactory()
        let small = f.readings("dev-a", 1...2)
        let buffer = try await openBuffer(dir.path("b.db"), maxBytes: size(small[0]) * 3, onFull: .dropOldest)
        _ = try await buffer.append(small)
        let huge = f.reading("dev-a", 3, payloadSize: 10_000)
        let outcome = try await buffer.append([huge])
        #expect(outcome.rejectedIndices == [0])
        #expect(outcome.evicted.isEmpty)
        #expect(try await buffer.stats().messageCount == 2)
        #expect(await buffer.lostTotals() == ["dev-a": 1])
    }

    @Test func rejectedAlertWithoutSequenceIsReportedButCannotBeAGap() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        var f = MessageFactory()
        var alert = f.reading("dev-a", 1, payloadSize: 5_000, kind: .alert)
        alert.deviceID = nil
        alert.sequence = nil
        let buffer = try await openBuffer(dir.path("b.db"), maxBytes: 1_000, onFull: .reject)
        let outcome = try await buffer.append([alert])
        #expect(outcome.rejectedIndices == [0])
        #expect(outcome.losses.isEmpty)
        #expect(try await buffer.stats().gapRowsPending == 0)
    }

    @Test func recordLossesCoalescesContiguousRunsPerDeviceAndReason() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        let t = Timestamp(millisecondsSinceEpoch: 1_764_000_000_000)
        func loss(_ d: String, _ s: UInt64, _ r: LossReason = .storageError, _ dt: Int64 = 0) -> LostReading {
            LostReading(deviceID: d, sequence: s, reason: r, at: t.adding(milliseconds: dt))
        }
        // Out of order within the call, two devices interleaved.
        try await buffer.recordLosses([loss("x", 7), loss("x", 5), loss("y", 1), loss("x", 6, .storageError, 30)],
                                      sequences: ["x": 9])
        try await buffer.recordLosses([loss("x", 8, .storageError, 50)])          // extends x 5...7
        try await buffer.recordLosses([loss("x", 9, "serial-overrun")])          // other reason: new row
        try await buffer.recordLosses([loss("x", 11)])                           // not contiguous: new row

        #expect(await buffer.lostTotals() == ["x": 6, "y": 1])
        #expect(try await buffer.loadSequences() == ["x": 11, "y": 1])
        let gaps = try await buffer.lease(limit: 10)
        #expect(gaps.count == 4)
        let rows = try gaps.map(gapJSON).map {
            "\($0["device_id"]!):\($0["first_sequence"]!)-\($0["last_sequence"]!)x\($0["count"]!):\($0["reason"]!)"
        }
        #expect(rows == ["x:5-8x4:storage-error", "y:1-1x1:storage-error", "x:9-9x1:serial-overrun", "x:11-11x1:storage-error"])
        let first = try gapJSON(gaps[0])
        #expect(first["first_lost_at"] as? String == t.rfc3339)
        #expect(first["last_lost_at"] as? String == t.adding(milliseconds: 50).rfc3339)

        // Acked gap rows disappear; the loss totals stay.
        try await buffer.ack(gaps.map(\.token))
        #expect(try await buffer.stats().gapRowsPending == 0)
        #expect(try await buffer.stats().totalLost == 7)
    }

    @Test func gapRowKeepsItsIdAcrossRestartAndIsNotExtendedAfterIt() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        let t = Timestamp(millisecondsSinceEpoch: 1_764_000_000_000)
        var firstDelivery: OutgoingMessage?
        do {
            let buffer = try await openBuffer(path)
            try await buffer.recordLosses([LostReading(deviceID: "x", sequence: 1, reason: .storageError, at: t)])
            firstDelivery = try await buffer.lease(limit: 1).first?.message    // published, never acked
            await buffer.close()
        }
        let buffer = try await openBuffer(path)
        // Contiguous loss after restart: the old row may have reached the broker, so a new row.
        try await buffer.recordLosses([LostReading(deviceID: "x", sequence: 2, reason: .storageError, at: t)])
        let gaps = try await buffer.lease(limit: 10)
        #expect(gaps.count == 2)
        #expect(gaps.first?.message == firstDelivery)
        #expect(gaps.first?.message.id != gaps.last?.message.id)
        #expect(await buffer.lostTotals() == ["x": 2])
    }
}
