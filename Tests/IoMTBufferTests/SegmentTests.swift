import Foundation
import IoMTCore
import IoMTTestSupport
import Testing
@testable import IoMTBuffer

/// Message rows live in segment tables of `Segment.rows` row ids; an acknowledged row of a full
/// segment is held until its whole segment can be dropped (one DROP TABLE instead of a B-tree
/// rebalance per deleted row). Held rows are delivered: never leased, exported, evicted,
/// purged or counted again.
@Suite struct SegmentTests {
    let s = Int(Segment.rows)

    @Test func aDrainInRowOrderDropsEachFullSegmentAndLeavesNothing() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        let n = 3 * s + 10
        _ = try await buffer.append(f.readings("dev-a", 1...UInt64(n)), sequences: ["dev-a": UInt64(n)])
        #expect(try await buffer._messageTables() == ["messages_0", "messages_1", "messages_2", "messages_3"])
        let leased = try await buffer.lease(limit: n)
        #expect(leased.count == n)
        // Half of the first segment: held, its table stays, the rows are gone from the counts.
        #expect(try await buffer.ack(leased[0..<(s / 2)].map(\.token)) == s / 2)
        #expect(try await buffer._messageTables().first == "messages_0")
        #expect(try await buffer.stats().messageCount == n - s / 2)
        #expect(try await buffer.pendingReadingCounts()["dev-a"] == n - s / 2)
        // The rest of it: the table is dropped.
        #expect(try await buffer.ack(leased[(s / 2)..<s].map(\.token)) == s - s / 2)
        #expect(try await buffer._messageTables() == ["messages_1", "messages_2", "messages_3"])
        // Everything else, in batches of 256 as the forwarder acknowledges.
        var i = s
        while i < n {
            let j = min(n, i + 256)
            _ = try await buffer.ack(leased[i..<j].map(\.token))
            i = j
        }
        // The segment still being filled keeps its table (its rows were deleted one by one).
        #expect(try await buffer._messageTables() == ["messages_3"])
        let stats = try await buffer.stats()
        #expect(stats.messageCount == 0 && stats.bytes == 0 && stats.oldestCreatedAt == nil)
        #expect(try await buffer.pendingReadingCounts().isEmpty)
        #expect(try await buffer.lease(limit: 10).isEmpty)
        await buffer.close()
        #expect(try sqliteCount(dir.path("b.db")) == 0)
    }

    @Test func heldRowsAreNeverLeasedExportedEvictedOrPurgedAgain() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        let buffer = try await openBuffer(path, maxBytes: 10_000_000, onFull: .dropOldest)
        var f = MessageFactory()
        let n = s + 20
        _ = try await buffer.append(f.readings("dev-a", 1...UInt64(n)), sequences: ["dev-a": UInt64(n)])
        let leased = try await buffer.lease(limit: n)
        // Rows 1...10 of the first (full) segment acknowledged: held, the table stays.
        _ = try await buffer.ack(leased[0..<10].map(\.token))
        #expect(try await buffer._messageTables().first == "messages_0")
        await buffer.release(leased[10...].map(\.token))
        #expect(seqs(try await buffer.lease(limit: n)) == Array(11...UInt64(n)))
        await buffer.release(leased[10...].map(\.token))
        #expect(seqs(try await buffer.pending(after: 0, limit: n)) == Array(11...UInt64(n)))
        #expect(try await buffer.stats().oldestCreatedAt == leased[10].message.createdAt)
        // A purge deletes what is stored and not in flight: not the delivered rows, no loss for them.
        let purged = try await buffer.purgeReadings(reason: .purgedByOperator)
        #expect(purged.purged == n - 10)
        #expect(purged.losses.map(\.sequence) == Array(11...UInt64(n)))
        #expect(try await buffer.stats().messageCount == 0)
        // Nothing of the first segment is left, so its table went with the purge.
        #expect(try await buffer._messageTables() == ["messages_1"])
        await buffer.close()
    }

    @Test func heldRowsAreDeletedAtCloseSoARestartDoesNotSendThemAgain() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        let n = s + 5
        do {
            let buffer = try await openBuffer(path)
            _ = try await buffer.append(f.readings("dev-a", 1...UInt64(n)), sequences: ["dev-a": UInt64(n)])
            let leased = try await buffer.lease(limit: n)
            _ = try await buffer.ack(leased[0..<100].map(\.token))
            await buffer.close()
        }
        #expect(try sqliteCount(path) == n - 100)
        let buffer = try await openBuffer(path)
        #expect(seqs(try await buffer.lease(limit: n)) == Array(101...UInt64(n)))
        #expect(try await buffer.stats().messageCount == n - 100)
        await buffer.close()
    }

    @Test func moreThanTheHeldLimitAreDeletedRowByRowAndTheRestStaysDeliverable() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        let buffer = try await openBuffer(path)
        var f = MessageFactory()
        // Four full segments; the first row of each is refused (never acknowledged), so no
        // segment can be dropped and the acknowledged rows pass the held limit.
        let n = 4 * s + 1
        _ = try await buffer.append(f.readings("dev-a", 1...UInt64(n)), sequences: ["dev-a": UInt64(n)])
        let leased = try await buffer.lease(limit: n)
        let refused = Set(stride(from: 0, to: 4 * s, by: s))
        let acked = leased.indices.filter { !refused.contains($0) && $0 < 4 * s }
        #expect(acked.count > BufferStore.heldLimit)
        #expect(try await buffer.ack(acked.map { leased[$0].token }) == acked.count)
        // Deleted for real (the held limit was passed), not only held.
        #expect(try sqliteCount(path) == 4 + 1)
        #expect(try await buffer.stats().messageCount == 4 + 1)
        await buffer.release(refused.map { leased[$0].token } + [leased[4 * s].token])
        let again = try await buffer.lease(limit: n)
        #expect(seqs(again) == refused.sorted().map { UInt64($0 + 1) } + [UInt64(4 * s + 1)])
        // Now the refused rows go through: every full segment is dropped.
        _ = try await buffer.ack(again.map(\.token))
        #expect(try await buffer._messageTables() == ["messages_4"])
        await buffer.close()
    }

    @Test func aV2BufferKeepsItsRowsInTheLegacyTableUntilDrainedThenDropsIt() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        let old = f.readings("dev-a", 1...700)
        do {
            let buffer = try await openBuffer(path)
            _ = try await buffer.append(old, sequences: ["dev-a": 700])
            await buffer.close()
        }
        // Exactly a v2 file: the v2 `messages` table (AUTOINCREMENT, priority index) holding
        // the rows, with row ids 1...700 and the sequence where AUTOINCREMENT left it.
        let (rc, out) = try sh("""
            sqlite3 '\(path)' "CREATE TABLE messages(row_id INTEGER PRIMARY KEY AUTOINCREMENT, id_high INTEGER NOT NULL, \
            id_low INTEGER NOT NULL, kind INTEGER NOT NULL, priority INTEGER NOT NULL, device_id TEXT, sequence INTEGER, \
            created_at INTEGER NOT NULL, size INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, \
            checksum INTEGER NOT NULL, sealed INTEGER NOT NULL DEFAULT 0); \
            CREATE INDEX messages_by_priority ON messages(priority); \
            INSERT INTO messages SELECT * FROM messages_0; \
            DROP TABLE messages_0; DELETE FROM meta WHERE name = 'row_high_water'; \
            PRAGMA user_version = 2;"
            """)
        #expect(rc == 0, "\(out)")
        let buffer = try await openBuffer(path)
        #expect(try await buffer._messageTables() == ["messages"])
        #expect(try await buffer._pragmaInt("user_version") == 3)
        // New rows go to a segment above the legacy ids (from row 701 to the end of its segment).
        let new = try await buffer.append(f.readings("dev-a", 701...710))
        #expect(new.rowIDs.first == 701)
        let segment = Segment.table(Segment.number(of: 701))
        #expect(try await buffer._messageTables() == ["messages", segment])
        let leased = try await buffer.lease(limit: 1_000)
        #expect(seqs(leased) == Array(1...710))
        // Half the legacy rows: deleted row by row, the table stays.
        _ = try await buffer.ack(leased[0..<350].map(\.token))
        #expect(try await buffer._messageTables() == ["messages", segment])
        #expect(try await buffer.stats().messageCount == 360)
        // The rest: the legacy table is dropped.
        _ = try await buffer.ack(leased[350..<700].map(\.token))
        #expect(try await buffer._messageTables() == [segment])
        #expect(try await buffer.stats().messageCount == 10)
        await buffer.close()
        // Row ids are not reused after the legacy table went.
        let reopened = try await openBuffer(path)
        #expect(seqs(try await reopened.lease(limit: 100)) == Array(701...710))
        let more = try await reopened.append(f.readings("dev-a", 711...711))
        #expect(try #require(more.rowIDs.first ?? nil) > 710)
        await reopened.close()
    }

    @Test func liveTrafficDeletesRowsAtOnceAndDropsTheSegmentWithItsLastRow() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        let buffer = try await openBuffer(path)
        var f = MessageFactory()
        // Live traffic: each reading acknowledged before the next arrives. While its segment is
        // being filled a row is deleted at once (nothing is held, so a crash repeats nothing).
        for q in 1...UInt64(s - 1) {
            _ = try await buffer.append([f.reading("dev-a", q)], sequences: ["dev-a": q])
            _ = try await buffer.ack(try await buffer.lease(limit: 1).map(\.token))
            if q % 128 == 0 { #expect(try sqliteCount(path) == 0) }
        }
        #expect(try await buffer._messageTables() == ["messages_0"])
        // The last row id of the segment makes it full: its acknowledgement drops the table.
        _ = try await buffer.append([f.reading("dev-a", UInt64(s))], sequences: ["dev-a": UInt64(s)])
        _ = try await buffer.ack(try await buffer.lease(limit: 1).map(\.token))
        #expect(try await buffer._messageTables() == [])
        _ = try await buffer.append([f.reading("dev-a", UInt64(s) + 1)], sequences: ["dev-a": UInt64(s) + 1])
        #expect(try await buffer._messageTables() == ["messages_1"])
        await buffer.close()
    }

    @Test func theSegmentBeingFilledIsDroppedAtTheNextOpenWhenEverythingInItWasDelivered() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        do {
            let buffer = try await openBuffer(path)
            _ = try await buffer.append(f.readings("dev-a", 1...10), sequences: ["dev-a": 10])
            _ = try await buffer.ack(try await buffer.lease(limit: 10).map(\.token))
            #expect(try await buffer._messageTables() == ["messages_0"])
            await buffer.close()
        }
        let buffer = try await openBuffer(path)
        #expect(try await buffer._messageTables() == [])
        let next = try await buffer.append(f.readings("dev-a", 11...11))
        #expect(next.rowIDs == [Segment.rows + 1])
        #expect(try await buffer._messageTables() == ["messages_1"])
        await buffer.close()
    }

    /// Rows in every message table of the file, read by the sqlite3 command line.
    private func sqliteCount(_ path: String) throws -> Int {
        let (rc, out) = try sh("sqlite3 '\(path)' 'SELECT count(*) FROM \(try bufferMessagesTable(path));'")
        #expect(rc == 0, "\(out)")
        return Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }
}
