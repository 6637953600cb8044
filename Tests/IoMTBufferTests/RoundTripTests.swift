import Foundation
import IoMTCore
import Testing
@testable import IoMTBuffer

@Suite struct RoundTripTests {
    @Test func appendLeaseAckRoundTrip() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        let msgs = f.readings("dev-a", 1...3)
        let outcome = try await buffer.append(msgs, sequences: ["dev-a": 3])
        #expect(outcome.storedCount == 3)
        #expect(outcome.rejectedIndices.isEmpty)

        let leased = try await buffer.lease(limit: 10)
        #expect(leased.map(\.message) == msgs)   // every field round-trips, ids included
        #expect(leased.allSatisfy { !$0.isBacklog })

        #expect(try await buffer.ack(leased.map(\.token)) == 3)
        #expect(try await buffer.lease(limit: 10).isEmpty)
        let stats = try await buffer.stats()
        #expect(stats.messageCount == 0)
        #expect(stats.bytes == 0)
        #expect(stats.leasedCount == 0)
        #expect(try await buffer.loadSequences() == ["dev-a": 3])
    }

    @Test func fifoWithinPriorityAndPriorityFirst() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        var msgs = f.readings("dev-a", 1...5)
        msgs.append(f.reading("dev-a", 6, priority: 10))   // an alert-priority message, appended last
        msgs.append(f.reading("dev-b", 1, priority: 5))
        _ = try await buffer.append(Array(msgs[0..<3]))
        _ = try await buffer.append(Array(msgs[3...]))
        let leased = try await buffer.lease(limit: 100)
        #expect(leased.map(\.message.priority) == [10, 5, 0, 0, 0, 0, 0])
        #expect(leased.map { "\($0.message.deviceID!):\($0.message.sequence!)" }
                == ["dev-a:6", "dev-b:1", "dev-a:1", "dev-a:2", "dev-a:3", "dev-a:4", "dev-a:5"])
    }

    @Test func leaseExcludesLeasedRowsAndReleaseReturnsThem() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        _ = try await buffer.append(f.readings("dev-a", 1...10))
        let first = try await buffer.lease(limit: 4)
        let second = try await buffer.lease(limit: 4)
        #expect(seqs(first) == [1, 2, 3, 4])
        #expect(seqs(second) == [5, 6, 7, 8])
        #expect(try await buffer.stats().leasedCount == 8)

        await buffer.release(Array(first.map(\.token)[1...2]))   // give back 2 and 3
        let third = try await buffer.lease(limit: 10)
        #expect(seqs(third) == [2, 3, 9, 10])

        // Acking out of order keeps the rest.
        try await buffer.ack(second.map(\.token))
        await buffer.release(first.map(\.token) + third.map(\.token))
        #expect(seqs(try await buffer.lease(limit: 100)) == [1, 2, 3, 4, 9, 10])
    }

    @Test func restartKeepsUnackedRowsAndSequencesAndForgetsLeases() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        let msgs = f.readings("dev-a", 1...6) + f.readings("dev-b", 1...2)
        do {
            let buffer = try await openBuffer(path)
            _ = try await buffer.append(msgs, sequences: ["dev-a": 6, "dev-b": 2, "dev-c": 41])
            let leased = try await buffer.lease(limit: 3)
            try await buffer.ack([leased[0].token])          // dev-a:1 acked
            _ = try await buffer.lease(limit: 2)              // more leases, never acked
            await buffer.close()
            await #expect(throws: BufferError.closed(path: path)) { try await buffer.lease(limit: 1) }
        }
        let reopened = try await openBuffer(path)
        #expect(try await reopened.loadSequences() == ["dev-a": 6, "dev-b": 2, "dev-c": 41])
        let leased = try await reopened.lease(limit: 100)
        #expect(leased.map(\.message) == Array(msgs[1...]))  // same ids: redelivery is de-duplicable
        let stats = try await reopened.stats()
        #expect(stats.messageCount == 7)
        #expect(stats.bytes == msgs[1...].reduce(0) { $0 + BufferStore.logicalSize($1) })
        #expect(stats.oldestCreatedAt == msgs[1].createdAt)
        #expect(stats.databasePath == path)
        #expect(stats.databaseFileBytes > 0)
    }

    @Test func sequencesNeverGoBackwards() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        _ = try await buffer.append(f.readings("dev-a", 10...12), sequences: ["dev-a": 5])
        #expect(try await buffer.loadSequences()["dev-a"] == 12)   // the messages' own sequence wins
        _ = try await buffer.append([], sequences: ["dev-a": 7])
        #expect(try await buffer.loadSequences()["dev-a"] == 12)
        _ = try await buffer.append([], sequences: ["dev-a": 20])
        #expect(try await buffer.loadSequences()["dev-a"] == 20)
    }

    @Test func liveFirstWithBoundedBacklogShare() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        _ = try await buffer.append(f.readings("dev-a", 1...20))      // backlog
        let boundary = await buffer.maxRowID()
        _ = try await buffer.append(f.readings("dev-a", 21...30))     // live
        #expect(await buffer.maxRowID() == boundary + 10)

        let batch = try await buffer.lease(limit: 8, backlogLimit: 2, liveAfter: boundary)
        #expect(seqs(batch) == [21, 22, 23, 24, 25, 26, 1, 2])
        #expect(batch.map(\.isBacklog) == [false, false, false, false, false, false, true, true])

        // Live rows run out: unused places go to the backlog.
        let next = try await buffer.lease(limit: 8, backlogLimit: 2, liveAfter: boundary)
        #expect(seqs(next) == [27, 28, 29, 30, 3, 4, 5, 6])
        #expect(next.filter(\.isBacklog).count == 4)
    }

    @Test func storageWorkRunsOnTheDedicatedThread() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        #expect(await buffer._isOnStorageThread())
    }

    @Test func rowIDsAreNeverReused() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        var buffer = try await openBuffer(path)
        let a = try await buffer.append(f.readings("dev-a", 1...3))
        try await buffer.ack(try await buffer.lease(limit: 10).map(\.token))
        await buffer.close()
        buffer = try await openBuffer(path)
        // After a restart new rows start a new segment table (Segment), above every id used.
        #expect(await buffer.maxRowID() >= a.rowIDs.last!!)
        let b = try await buffer.append(f.readings("dev-a", 4...4))
        #expect(b.rowIDs[0]! > a.rowIDs.last!!)
        #expect(b.rowIDs[0]! == Segment.rows + 1)
    }
}

@Suite struct FailedWriteTests {
    /// A failed ack (as under disk full in WAL mode) deletes nothing and keeps the tokens leased
    /// (the forwarder retries the ack; releasing them would publish them again).
    @Test func failedAckLosesNothingAndKeepsTheLease() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        _ = try await buffer.append(f.readings("dev-a", 1...5))
        try await buffer.recordLosses([LostReading(deviceID: "dev-a", sequence: 6, reason: .storageError,
                                                   at: Timestamp(millisecondsSinceEpoch: 0))])
        let before = try await buffer.stats()
        let leased = try await buffer.lease(limit: 10)
        #expect(leased.count == 6)

        try await buffer._setQueryOnly(true)
        await #expect { try await buffer.ack(leased.map(\.token)) } throws: { e in
            guard let e = e as? BufferError, case .readOnly = e else { return false }
            return e.path == dir.path("b.db")
        }
        await #expect(throws: BufferError.self) { _ = try await buffer.append(f.readings("dev-a", 7...7)) }
        var after = try await buffer.stats()
        #expect(after.leasedCount == 6)
        after.leasedCount = before.leasedCount
        #expect(after == before)                                     // accounting restored
        #expect(try await buffer.lease(limit: 10).isEmpty)             // still leased: not sent twice

        try await buffer._setQueryOnly(false)
        #expect(try await buffer.ack(leased.map(\.token)) == 6)
        #expect(try await buffer.stats().messageCount == 0)
    }
}

@Suite struct InstanceLockTests {
    @Test func secondBufferOnTheSameFileIsBusyUntilTheFirstCloses() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        let first = try await openBuffer(path)
        await #expect { _ = try await openBuffer(path) } throws: { e in
            guard let e = e as? BufferError, case .busy = e else { return false }
            return e.path == path && e.description.contains("another")
        }
        await first.close()
        let second = try await openBuffer(path)
        #expect(try await second.stats().messageCount == 0)
    }
}

/// Pins the lease cursor that replaced skipping every leased row from the front (which made a
/// 1M-row drain quadratic): released rows come back first, live-only leases do not move it.
@Suite struct LeaseCursorTests {
    @Test func leasesResumeAfterLeasedRowsAndReleasedRowsComeBackFirst() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        _ = try await buffer.append(f.readings("dev-a", 1...30))
        let first = try await buffer.lease(limit: 10)
        let second = try await buffer.lease(limit: 10)
        #expect(first.map(\.message.sequence) == (1...10).map { UInt64($0) })
        #expect(second.map(\.message.sequence) == (11...20).map { UInt64($0) })

        await buffer.release([first[2].token, second[0].token])       // sequences 3 and 11
        let third = try await buffer.lease(limit: 4)
        #expect(third.map(\.message.sequence) == [3, 11, 21, 22])

        // Acked rows are gone for good; unacked leased ones are never handed out twice.
        _ = try await buffer.ack(first.map(\.token) + third.map(\.token))
        let rest = try await buffer.lease(limit: 100)
        #expect(rest.map(\.message.sequence) == (23...30).map { UInt64($0) })
    }

    @Test func aLiveOnlyLeaseDoesNotSkipTheBacklog() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        _ = try await buffer.append(f.readings("dev-a", 1...10))
        let boundary = await buffer.maxRowID()
        _ = try await buffer.append(f.readings("dev-a", 11...15))
        let live = try await buffer.lease(limit: 5, backlogLimit: 0, liveAfter: boundary)
        #expect(live.map(\.message.sequence) == (11...15).map { UInt64($0) })
        let backlog = try await buffer.lease(limit: 20)
        #expect(backlog.map(\.message.sequence) == (1...10).map { UInt64($0) })
    }
}

/// The per-device source cursor (a meter's download watermark) is stored in the same
/// transaction as the message carrying it, and only if that message is stored.
@Suite struct SourceCursorTests {
    @Test func cursorIsStoredWithItsMessageAndNotWithARejectedOne() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        let buffer = try await openBuffer(path, maxBytes: 1000)
        var f = MessageFactory()
        var first = f.reading("meter", 1, payloadSize: 100)
        first.sourceCursor = "mark-1"
        _ = try await buffer.append([first], sequences: ["meter": 1])
        #expect(try await buffer.loadCursors() == ["meter": "mark-1"])

        var tooBig = f.reading("meter", 2, payloadSize: 2000)   // rejected: does not fit
        tooBig.sourceCursor = "mark-2"
        let outcome = try await buffer.append([tooBig], sequences: ["meter": 2])
        #expect(outcome.rejectedIndices == [0])
        #expect(try await buffer.loadCursors() == ["meter": "mark-1"], "a rejected record does not move the cursor")

        await buffer.close()
        let reopened = try await openBuffer(path, maxBytes: 1000)
        #expect(try await reopened.loadCursors() == ["meter": "mark-1"])
    }
}
