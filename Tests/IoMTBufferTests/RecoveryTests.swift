import CSQLite
import Foundation
import IoMTCore
import Testing
@testable import IoMTBuffer

private func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

private func truncate(_ path: String, to size: Int) throws {
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try h.truncate(atOffset: UInt64(size))
    try h.close()
}

private func randomData(_ n: Int) -> Data {
    var g = SystemRandomNumberGenerator()
    return Data((0..<n).map { _ in UInt8.random(in: 0...255, using: &g) })
}

@Suite struct RecoveryTests {
    @Test func fileOfRandomBytesIsMovedAsideNeverDeleted() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        let garbage = randomData(64 * 1024)
        try garbage.write(to: URL(fileURLWithPath: path))

        let buffer = try await openBuffer(path)
        let moved = try #require(buffer.recoveredFromCorruption)
        #expect(moved.hasPrefix(path + ".corrupt-"))
        #expect(bytes(moved) == garbage)                       // original bytes kept
        #expect(buffer.salvagedRowCount == 0)
        #expect(try await buffer.stats().recoveredFromCorruption == moved)

        var f = MessageFactory()
        _ = try await buffer.append(f.readings("dev-a", 1...2))
        #expect(seqs(try await buffer.lease(limit: 10)) == [1, 2])
    }

    @Test func garbageAfterTheHeaderPageIsMovedAside() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        do {
            let b = try await openBuffer(path)
            _ = try await b.append(f.readings("dev-a", 1...200, payloadSize: 1_000))
            await b.close()
        }
        var data = try #require(bytes(path))
        #expect(data.count > 64 * 1024)
        data.replaceSubrange(4096..<data.count, with: randomData(data.count - 4096))
        try data.write(to: URL(fileURLWithPath: path))

        let buffer = try await openBuffer(path)
        let moved = try #require(buffer.recoveredFromCorruption)
        #expect(bytes(moved) == data)
        _ = try await buffer.append(f.readings("dev-b", 1...1))
        #expect(try await buffer.stats().messageCount >= 1)
    }

    @Test func mainFileTruncatedMidPageIsMovedAsideAndReadableRowsSalvaged() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        let originals = f.readings("dev-a", 1...300, payloadSize: 1_000)
        do {
            let b = try await openBuffer(path)
            _ = try await b.append(originals, sequences: ["dev-a": 300])
            await b.close()   // last connection: checkpoints everything into the main file
        }
        #expect((try? FileManager.default.attributesOfItem(atPath: path + "-wal")) == nil)
        let full = try #require(bytes(path))
        let cut = full.count / 2 + 1_000                        // not a page boundary
        try truncate(path, to: cut)
        let truncated = try #require(bytes(path))

        let buffer = try await openBuffer(path)
        let moved = try #require(buffer.recoveredFromCorruption)
        #expect(bytes(moved) == truncated)
        #expect(truncated.count == cut)

        // Whatever was salvaged is genuine (same ids and content), and the high-water mark survived.
        let salvaged = try await buffer.lease(limit: 1_000).filter { $0.message.kind == .reading }
        let byID = Dictionary(uniqueKeysWithValues: originals.map { ($0.id, $0) })
        #expect(salvaged.allSatisfy { byID[$0.message.id] == $0.message })
        #expect(salvaged.count > 0)
        #expect(buffer.salvagedRowCount >= salvaged.count)
        #expect(try await buffer.loadSequences()["dev-a"] == 300)
        print("truncated main file: salvaged \(salvaged.count) of \(originals.count) messages")
    }

    /// Power cut: copy the database and its WAL while the buffer is open, then cut the WAL in
    /// the middle of a frame. Only the transactions in the cut-off tail may be lost, each batch
    /// entirely or not at all, together with its sequence high-water mark.
    @Test func walTruncatedMidFrameLosesOnlyTheUncommittedTail() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("live.db")
        let buffer = try await openBuffer(path)
        var f = MessageFactory()
        let batches = 20, perBatch = 10
        for b in 0..<batches {
            let first = UInt64(b * perBatch + 1)
            _ = try await buffer.append(f.readings("dev-a", first...(first + UInt64(perBatch) - 1)),
                                        sequences: ["dev-a": first + UInt64(perBatch) - 1])
        }
        let fixture = dir.path("cut.db")
        try FileManager.default.copyItem(atPath: path, toPath: fixture)
        try FileManager.default.copyItem(atPath: path + "-wal", toPath: fixture + "-wal")
        let pageSize = 4096
        let frame = 24 + pageSize
        let walSize = try #require(bytes(fixture + "-wal")).count
        let frames = (walSize - 32) / frame
        #expect(frames > batches)                              // nothing was checkpointed yet
        try truncate(fixture + "-wal", to: 32 + (frames * 6 / 10) * frame + frame / 2)

        let reopened = try await openBuffer(fixture)
        #expect(reopened.recoveredFromCorruption == nil)
        let got = seqs(try await reopened.lease(limit: 1_000))
        #expect(got.count % perBatch == 0)                     // whole batches only
        #expect(got == (0..<got.count).map { UInt64($0 + 1) })   // a prefix, no holes
        #expect(got.count >= perBatch)
        #expect(got.count < batches * perBatch)
        #expect(try await reopened.loadSequences()["dev-a"] == UInt64(got.count))
        print("WAL cut after \(frames * 6 / 10) of \(frames) frames: \(got.count / perBatch) of \(batches) batches survive")

        // The untouched original still has everything.
        #expect(try await buffer.stats().messageCount == batches * perBatch)
    }

    /// Power cut, second fixture: copied while open after an automatic checkpoint, so the main
    /// file holds older batches and the WAL newer ones; the main file is then cut mid-page.
    /// The file (with its WAL) is moved aside byte for byte, nothing fake is salvaged, and the
    /// fresh buffer works.
    @Test func mainFileCopiedWhileOpenAndTruncatedMidPage() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("live.db")
        let buffer = try await openBuffer(path)
        var f = MessageFactory()
        var originals: [OutgoingMessage] = []
        for b in 0..<14 {   // ~5.6 MB: passes the 256-page auto-checkpoint many times
            let first = UInt64(b * 100 + 1)
            let batch = f.readings("dev-a", first...(first + 99), payloadSize: 4_000)
            originals += batch
            _ = try await buffer.append(batch, sequences: ["dev-a": first + 99])
        }
        let fixture = dir.path("cut.db")
        try FileManager.default.copyItem(atPath: path, toPath: fixture)
        try FileManager.default.copyItem(atPath: path + "-wal", toPath: fixture + "-wal")
        let mainSize = try #require(bytes(fixture)).count
        #expect(mainSize > 1_000 * 4096 / 2)                    // a checkpoint did write the main file
        try truncate(fixture, to: mainSize / 2 + 777)
        let cutMain = try #require(bytes(fixture))
        let wal = try #require(bytes(fixture + "-wal"))

        let reopened = try await openBuffer(fixture)
        let moved = try #require(reopened.recoveredFromCorruption)
        #expect(bytes(moved) == cutMain)
        #expect(bytes(moved + "-wal") == wal)
        let byID = Dictionary(uniqueKeysWithValues: originals.map { ($0.id, $0) })
        let salvaged = try await reopened.lease(limit: 10_000).filter { $0.message.kind == .reading }
        #expect(salvaged.allSatisfy { byID[$0.message.id] == $0.message })
        _ = try await reopened.append([f.reading("dev-b", 1)])
        #expect(try await reopened.stats().messageCount == salvaged.count + 1)
        print("open copy, main file cut: salvaged \(salvaged.count) of \(originals.count)")
    }

    @Test func schemaTooNewIsRefusedAndTheFileLeftAlone() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        do { let b = try await openBuffer(path); await b.close() }
        let (rc, out) = try sh("sqlite3 '\(path)' 'PRAGMA user_version=99;'")
        #expect(rc == 0, "\(out)")
        await #expect(throws: BufferError.schemaTooNew(path: path, found: 99, supported: bufferSchemaVersion)) {
            _ = try await openBuffer(path)
        }
        #expect(dir.files().filter { $0.contains("corrupt") }.isEmpty)
    }

    @Test func missingDirectoryIsCannotOpenNamingThePath() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("no/such/dir/b.db")
        do {
            _ = try await openBuffer(path)
            Issue.record("opening under a missing directory must fail")
        } catch let error as BufferError {
            guard case .cannotOpen(let p, _, _) = error else { Issue.record("expected cannotOpen, got \(error)"); return }
            #expect(p == path)
            #expect(error.description.contains(path))
            #expect(error.description.contains("directory exists"))
        }
    }

    @Test func directoryInsteadOfFileIsCannotOpen() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("adir")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        await #expect { _ = try await openBuffer(path) } throws: { e in
            guard let e = e as? BufferError, case .cannotOpen = e else { return false }
            return e.path == path
        }
    }

    @Test func invalidMaxBytesIsRefused() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        await #expect { _ = try await openBuffer(path, maxBytes: 0) } throws: { e in
            guard let e = e as? BufferError, case .invalidConfiguration = e else { return false }
            return e.description.contains(path) && e.description.contains("max_bytes")
        }
    }

    @Test func sqliteResultCodesMapToTheRightCase() {
        let p = "/var/lib/iomt/buffer.db"
        func map(_ rc: Int32) -> BufferError { mapSQLiteError(rc, db: nil, path: p, during: "test") }
        if case .diskFull = map(SQLITE_FULL) {} else { Issue.record("SQLITE_FULL") }
        if case .readOnly = map(SQLITE_READONLY) {} else { Issue.record("SQLITE_READONLY") }
        if case .corrupt = map(SQLITE_CORRUPT) {} else { Issue.record("SQLITE_CORRUPT") }
        if case .corrupt = map(SQLITE_NOTADB) {} else { Issue.record("SQLITE_NOTADB") }
        if case .cannotOpen = map(SQLITE_CANTOPEN) {} else { Issue.record("SQLITE_CANTOPEN") }
        if case .cannotOpen = map(SQLITE_PERM) {} else { Issue.record("SQLITE_PERM") }
        if case .ioError = map(SQLITE_IOERR) {} else { Issue.record("SQLITE_IOERR") }
        if case .busy = map(SQLITE_BUSY) {} else { Issue.record("SQLITE_BUSY") }
        if case .sqlite = map(SQLITE_MISMATCH) {} else { Issue.record("SQLITE_MISMATCH") }
        for rc in [SQLITE_FULL, SQLITE_READONLY, SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_CANTOPEN, SQLITE_IOERR, SQLITE_BUSY, SQLITE_MISMATCH] {
            #expect(map(rc).description.contains(p))
            #expect(map(rc).path == p)
        }
        #expect(map(SQLITE_FULL).description.hasPrefix("disk full at \(p): free space on that file system or lower buffer.max_bytes"))
        let others: [BufferError] = [.schemaTooNew(path: p, found: 2, supported: 1), .closed(path: p),
                                     .cannotMoveAside(path: p, destination: p + ".corrupt-x", systemErrno: 13),
                                     .cannotStartThread(path: p, systemErrno: 11)]
        #expect(others.allSatisfy { $0.description.contains(p) })
    }
}
