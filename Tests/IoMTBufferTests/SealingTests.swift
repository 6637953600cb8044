import Crypto
import Foundation
import IoMTCore
import IoMTTestSupport
import Testing
@testable import IoMTBuffer

/// Issue 8: payloads sealed at rest with AES-256-GCM, on real files with real SQLite.
@Suite struct SealingTests {
    /// A reading whose payload carries a patient id and a value we can look for in the raw bytes.
    private func phiReading(_ f: inout MessageFactory, _ seq: UInt64) -> OutgoingMessage {
        var m = f.reading("dev-phi", seq)
        m.payload = Array("{\"patient\":\"PATIENT-4711-SECRET\",\"spo2\":\"SPO2-VALUE-97\",\"seq\":\(seq)}".utf8)
        return m
    }

    private func fileBytes(_ path: String) -> [UInt8] {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) } ?? []
    }

    /// Every file of the directory with its size and SHA-256, to show an open attempt changed nothing.
    private func snapshot(_ dir: TempDir) -> [String: String] {
        var out: [String: String] = [:]
        for f in dir.files() where !f.hasSuffix(".lock") {
            let bytes = fileBytes(dir.path(f))
            out[f] = "\(bytes.count) " + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        }
        return out
    }

    /// Every file that existed is byte for byte the same; the only new files are SQLite's empty
    /// `-wal` and its `-shm` index, which the read-only key check needs to read a WAL database.
    private func expectUnchanged(_ dir: TempDir, since before: [String: String], sourceLocation: SourceLocation = #_sourceLocation) {
        let after = snapshot(dir)
        for (name, digest) in before {
            #expect(after[name] == digest, "\(name) changed", sourceLocation: sourceLocation)
        }
        for name in after.keys where before[name] == nil {
            #expect(name == "b.db-shm" || (name == "b.db-wal" && after[name]?.hasPrefix("0 ") == true),
                    "new file \(name): \(after[name] ?? "")", sourceLocation: sourceLocation)
        }
    }

    private func sqlite(_ path: String, _ sql: String) throws -> String {
        let (rc, out) = try sh("sqlite3 '\(path)' \"\(sql)\"")
        #expect(rc == 0, "\(sql): \(out)")
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func sealedRoundTripDeliversThePlaintextAndExportsIt() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        let originals = (1...20).map { phiReading(&f, $0) }
        let b = try await openBuffer(path, key: testKey)
        #expect(b.isSealing)
        let outcome = try await b.append(originals, sequences: ["dev-phi": 20])
        #expect(outcome.storedCount == 20)
        let leased = try await b.lease(limit: 100)
        #expect(leased.map(\.message) == originals)
        let exported = try await b.pending(after: 0, limit: 100)
        #expect(exported.map(\.message) == originals)
        // Stored: nonce || ciphertext || tag, 28 bytes longer, flagged sealed; size counts it.
        // (The first rows are in the first segment table, messages_0.)
        #expect(try sqlite(path, "SELECT DISTINCT sealed FROM messages_0;") == "1")
        #expect(try sqlite(path, "SELECT length(payload) FROM messages_0 WHERE row_id = 1;") == "\(originals[0].payload.count + 28)")
        #expect(try await b.stats().bytes == originals.reduce(0) { $0 + BufferStore.logicalSize($1) + 28 })
        #expect(try await b.ack(leased.map(\.token)) == 20)
        #expect(try await b.stats().messageCount == 0)
        await b.close()
        // Reopened with the key: new rows still seal and open.
        let again = try await openBuffer(path, key: testKey)
        _ = try await again.append([phiReading(&f, 21)])
        #expect(try await again.lease(limit: 10).map { $0.message.sequence } == [21])
        await again.close()
    }

    @Test func theDatabaseAndItsWALHoldNeitherThePayloadNorThePatientID() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        let b = try await openBuffer(path, key: testKey)
        for k in 0..<10 {
            _ = try await b.append((1...50).map { phiReading(&f, UInt64(k * 50) + $0) })
        }
        // While open, the readings sit in the WAL; look there and in the main file.
        let needles = ["PATIENT-4711-SECRET", "SPO2-VALUE-97", "spo2", "patient"].map { Array($0.utf8) }
        func check(_ label: String) {
            var scanned = 0
            for suffix in ["", "-wal"] {
                let bytes = fileBytes(path + suffix)
                scanned += bytes.count
                for n in needles { #expect(!bytes.contains(subsequence: n), "\(label): \(String(decoding: n, as: UTF8.self)) in \(path + suffix)") }
            }
            #expect(scanned > 50_000, "\(label): the files were read (\(scanned) bytes)")
        }
        check("open")
        // The same check fails on a plaintext buffer (so the scan can see the text at all).
        do {
            let plain = try await openBuffer(dir.path("plain.db"))
            _ = try await plain.append([phiReading(&f, 1)])
            let bytes = fileBytes(dir.path("plain.db")) + fileBytes(dir.path("plain.db") + "-wal")
            #expect(bytes.contains(subsequence: Array("PATIENT-4711-SECRET".utf8)))
            await plain.close()
        }
        await b.close()   // checkpoints into the main file
        check("closed")
    }

    @Test func aWrongKeyIsRefusedAtOpenAndNothingChanges() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        do {
            let b = try await openBuffer(path, key: testKey)
            _ = try await b.append((1...5).map { phiReading(&f, $0) })
            await b.close()
        }
        let before = snapshot(dir)
        #expect(before["b.db"] != nil)
        do {
            _ = try await openBuffer(path, key: otherKey)
            Issue.record("a wrong key opened the buffer")
        } catch let error as BufferError {
            guard case .wrongKey(let p, _) = error else { Issue.record("not wrongKey: \(error)"); return }
            #expect(p == path)
            #expect(!error.isCorruption)
            #expect(error.description.contains(path) && error.description.contains("security.key_file")
                    && error.description.contains("state-key") && error.description.contains("nothing was deleted"))
        }
        expectUnchanged(dir, since: before)
        #expect(dir.files().allSatisfy { !$0.contains("corrupt") })
        // The right key still opens everything.
        let b = try await openBuffer(path, key: testKey)
        #expect(seqs(try await b.lease(limit: 10)) == [1, 2, 3, 4, 5])
        await b.close()
    }

    @Test func aMissingKeyIsRefusedNamingThePathAndTheFix() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        do {
            let b = try await openBuffer(path, key: testKey)
            _ = try await b.append([phiReading(&f, 1)])
            await b.close()
        }
        let before = snapshot(dir)
        await #expect(throws: BufferError.keyRequired(path: path)) { _ = try await openBuffer(path) }
        #expect(BufferError.keyRequired(path: path).description
            == "the buffer at \(path) is encrypted; give the key in security.key_file or the systemd credential state-key (nothing was deleted; the file keeps its unsent readings)")
        expectUnchanged(dir, since: before)
        // Even an empty sealed buffer (only the key check) needs its key.
        let emptyPath = dir.path("empty.db")
        await (try openBuffer(emptyPath, key: testKey)).close()
        await #expect(throws: BufferError.keyRequired(path: emptyPath)) { _ = try await openBuffer(emptyPath) }
    }

    @Test func withoutItsKeyCheckTheFirstSealedRowStillDecides() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        do {
            let b = try await openBuffer(path, key: testKey)
            _ = try await b.append((1...3).map { phiReading(&f, $0) })
            await b.close()
        }
        _ = try sqlite(path, "DELETE FROM meta;")
        await #expect(throws: BufferError.keyRequired(path: path)) { _ = try await openBuffer(path) }
        do {
            _ = try await openBuffer(path, key: otherKey)
            Issue.record("another key opened the buffer")
        } catch let error as BufferError {
            guard case .wrongKey = error else { Issue.record("not wrongKey: \(error)"); return }
        }
        // The right key opens it and writes the key check again.
        let b = try await openBuffer(path, key: testKey)
        #expect(seqs(try await b.lease(limit: 10)) == [1, 2, 3])
        #expect(try sqlite(path, "SELECT count(*) FROM meta WHERE name = 'key-check';") == "1")
        await b.close()
    }

    @Test func aV1PlaintextDatabaseOpenedWithAKeyDeliversOldRowsAndSealsNewOnes() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        let old = (1...3).map { phiReading(&f, $0) }
        do {
            let b = try await openBuffer(path)
            #expect(!b.isSealing)
            _ = try await b.append(old, sequences: ["dev-phi": 3])
            await b.close()
        }
        // Make it exactly a v1 file: the v1 `messages` table (AUTOINCREMENT, no `sealed`
        // column, its priority index) holding the rows, no meta table, user_version 1.
        _ = try sqlite(path, """
            CREATE TABLE messages(row_id INTEGER PRIMARY KEY AUTOINCREMENT, id_high INTEGER NOT NULL, id_low INTEGER NOT NULL, \
            kind INTEGER NOT NULL, priority INTEGER NOT NULL, device_id TEXT, sequence INTEGER, created_at INTEGER NOT NULL, \
            size INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, checksum INTEGER NOT NULL); \
            CREATE INDEX messages_by_priority ON messages(priority); \
            INSERT INTO messages SELECT row_id, id_high, id_low, kind, priority, device_id, sequence, created_at, size, topic, payload, checksum FROM messages_0; \
            DROP TABLE messages_0; DROP TABLE meta; PRAGMA user_version = 1;
            """)
        #expect(try sqlite(path, "PRAGMA user_version;") == "1")

        let b = try await openBuffer(path, key: testKey)
        let new = (4...5).map { phiReading(&f, $0) }
        _ = try await b.append(new)
        #expect(try await b.lease(limit: 10).map(\.message) == old + new)
        // The old rows stay in the v1 table (the legacy segment); new rows go to segment tables.
        #expect(try sqlite(path, "SELECT sealed, count(*) FROM messages GROUP BY sealed ORDER BY sealed;") == "0|3")
        #expect(try sqlite(path, "SELECT sealed, count(*) FROM messages_0 GROUP BY sealed ORDER BY sealed;") == "1|2")
        #expect(try sqlite(path, "SELECT count(*) FROM meta WHERE name = 'key-check';") == "1")
        #expect(try sqlite(path, "PRAGMA user_version;") == "3")
        #expect(try await b.loadSequences()["dev-phi"] == 5)
        await b.close()
        // From now on it is an encrypted buffer.
        await #expect(throws: BufferError.keyRequired(path: path)) { _ = try await openBuffer(path) }
    }

    @Test func aTamperedRowIsNotPublishedAndIsRecordedAsLostTheOthersAreDelivered() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        let originals = (1...6).map { phiReading(&f, $0) }
        do {
            let b = try await openBuffer(path, key: testKey)
            _ = try await b.append(originals, sequences: ["dev-phi": 6])
            await b.close()
        }
        // Flip one byte of row 2's ciphertext with sqlite3, and move row 4's sealed payload
        // onto row 5 (an intact box on the wrong row: the id and topic no longer match).
        // (The first rows are in the first segment table, messages_0.)
        let hex = try sqlite(path, "SELECT hex(payload) FROM messages_0 WHERE row_id = 2;")
        var bytes = try #require(hexBytes(hex))
        bytes[20] ^= 0x01
        _ = try sqlite(path, "UPDATE messages_0 SET payload = X'\(bytes.map { String(format: "%02X", $0) }.joined())' WHERE row_id = 2;")
        _ = try sqlite(path, "UPDATE messages_0 SET payload = (SELECT payload FROM messages_0 WHERE row_id = 4) WHERE row_id = 5;")

        let b = try await openBuffer(path, key: testKey)
        #expect(b.recoveredFromCorruption == nil)
        let first = try await b.lease(limit: 100)
        #expect(seqs(first) == [1, 3, 4, 6])
        #expect(first.allSatisfy { m in originals.contains(m.message) })
        #expect(await b.unreadableAtRestCount() == 2)
        #expect(await b.lostTotals()["dev-phi"] == 2)
        // The losses are announced as gap records with the reason.
        let gaps = try await b.lease(limit: 100).filter { $0.message.kind == .gap }
        let records = try gaps.map { try gapJSON($0) }
        #expect(gaps.count == 2, "\(records)")
        #expect(records.allSatisfy { ($0["reason"] as? String) == "unreadable-at-rest" }, "\(records)")
        #expect(Set(records.compactMap { $0["first_sequence"] as? Int }) == [2, 5], "\(records)")
        #expect(try await b.stats().messageCount == 4)
        await b.close()
    }

    @Test func aCorruptSealedDatabaseIsSalvagedWithItsRowsStillSealed() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        var originals: [OutgoingMessage] = []
        for s in 1...300 as ClosedRange<UInt64> {
            var m = phiReading(&f, s)
            m.payload += [UInt8](repeating: UInt8(ascii: " "), count: 900)
            originals.append(m)
        }
        do {
            let b = try await openBuffer(path, key: testKey)
            _ = try await b.append(originals, sequences: ["dev-phi": 300])
            await b.close()
        }
        let full = fileBytes(path)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.truncate(atOffset: UInt64(full.count / 2 + 1_000))
        try h.close()

        let b = try await openBuffer(path, key: testKey)
        #expect(b.recoveredFromCorruption != nil)
        let salvaged = try await b.lease(limit: 1_000).filter { $0.message.kind == .reading }
        #expect(salvaged.count > 0)
        let byID = Dictionary(uniqueKeysWithValues: originals.map { ($0.id, $0) })
        #expect(salvaged.allSatisfy { byID[$0.message.id] == $0.message })
        #expect(await b.unreadableAtRestCount() == 0)
        #expect(try sqlite(path, "SELECT DISTINCT sealed FROM \(try bufferMessagesTable(path));") == "1")
        await b.close()
        // The salvaged key check still guards the fresh file.
        await #expect(throws: BufferError.keyRequired(path: path)) { _ = try await openBuffer(path) }
    }

    @Test func purgeDeletesSealedReadingsWithoutOpeningThem() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let b = try await openBuffer(dir.path("b.db"), key: testKey)
        var f = MessageFactory()
        _ = try await b.append((1...4).map { phiReading(&f, $0) })
        let outcome = try await b.purgeReadings(reason: .purgedByOperator)
        #expect(outcome.purged == 4)
        #expect(try await b.stats().messageCount == 0)
        await b.close()
    }
}

private func hexBytes(_ s: String) -> [UInt8]? {
    var out: [UInt8] = []
    var it = Array(s.utf8).makeIterator()
    while let a = it.next() {
        guard let b = it.next(), let v = UInt8(String(decoding: [a, b], as: UTF8.self), radix: 16) else { return nil }
        out.append(v)
    }
    return out
}

extension Array where Element == UInt8 {
    func contains(subsequence s: [UInt8]) -> Bool {
        guard !s.isEmpty, s.count <= count else { return false }
        let first = s[0]
        var i = 0
        while i <= count - s.count {
            if self[i] == first, self[i..<(i + s.count)].elementsEqual(s) { return true }
            i += 1
        }
        return false
    }
}
