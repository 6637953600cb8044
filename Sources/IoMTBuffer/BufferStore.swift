import CSQLite
import IoMTCore
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything the store needs to open; built by the actor, handed to the storage thread.
struct BufferConfig: Sendable {
    var path: String
    var maxBytes: Int64
    var onFull: OnFullPolicy
    var gatewayID: String
    var gapTopic: String
    var logger: Logger?
    var clock: any WallClock
    /// Seals payloads at rest when set (issue 8).
    var sealer: PayloadSealer?
}

/// Schema version written to `PRAGMA user_version`.
/// 1: messages, gaps, device_state. 2: `messages.sealed` and the `meta` table (issue 8).
/// 3: message rows in segment tables (`Segment`); a v2 `messages` table is kept as the legacy
/// segment until it is empty.
let bufferSchemaVersion: Int32 = 3

/// Tables other than the message rows, as version 1 created them (`gaps`, `device_state`).
private let stateTablesV1 = """
CREATE TABLE gaps(
    gap_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    id_high        INTEGER NOT NULL,
    id_low         INTEGER NOT NULL,
    device_id      TEXT NOT NULL,
    first_sequence INTEGER NOT NULL,
    last_sequence  INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    first_lost_at  INTEGER NOT NULL,
    last_lost_at   INTEGER NOT NULL
);
CREATE INDEX gaps_by_device ON gaps(device_id);
CREATE TABLE device_state(
    device_id     TEXT PRIMARY KEY NOT NULL,
    last_sequence INTEGER NOT NULL DEFAULT 0,
    lost_total    INTEGER NOT NULL DEFAULT 0,
    cursor        TEXT
) WITHOUT ROWID;
"""

/// The `meta` table of version 2 (encryption at rest): the key check (the known constant
/// sealed under the buffer's key), so a wrong key is refused at open; since version 3 also the
/// row-id high-water mark.
private let metaTable = """
CREATE TABLE meta(
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
"""

/// A new file: version 3 directly (message rows go to segment tables as they come).
private let freshSchema = stateTablesV1 + metaTable + "PRAGMA user_version = 3;"

/// Version 1 kept message rows in one table, `messages` (the columns of `Segment.createSQL`
/// without `sealed`, `row_id` AUTOINCREMENT, an index on `priority`). Version 2 added a `sealed`
/// flag per row (1: `payload` is `nonce || ciphertext || tag`, see `PayloadSealer`; 0:
/// plaintext, as every v1 row) and the `meta` table. Rows of a v1 file stay plaintext and
/// readable. `gaps` and `device_state` stay plaintext by design: they hold device ids, sequence
/// numbers, loss reasons, times and source cursors, no patient id and no reading value.
private let migrationV2 = "ALTER TABLE messages ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;" + metaTable + "PRAGMA user_version = 2;"

/// Name of the `meta` row holding the highest row id any segment was created for, so row ids
/// are not reused after every segment was dropped.
private let rowHighWaterName = "row_high_water"

private let messageColumns = "row_id, id_high, id_low, kind, priority, device_id, sequence, created_at, size, topic, payload, checksum, sealed"
/// The same columns from a v1 file, which has no `sealed` column (every v1 row is plaintext).
private let messageColumnsV1 = "row_id, id_high, id_low, kind, priority, device_id, sequence, created_at, size, topic, payload, checksum, 0 AS sealed"
private let gapColumns = "gap_id, id_high, id_low, device_id, first_sequence, last_sequence, count, reason, first_lost_at, last_lost_at"

/// The synchronous core of the buffer. Owned by `SQLiteBuffer` and only used on its thread.
final class BufferStore {
    let config: BufferConfig
    private let conn: SQLiteConnection
    private let lock: InstanceLock
    /// Where a corrupt database was moved at open.
    let recoveredFromCorruption: String?
    /// Rows copied out of the corrupt database into the fresh one.
    let salvagedRows: Int

    /// In-memory accounting, restored from a snapshot when a transaction fails.
    private struct Accounting {
        var bytes: Int64 = 0
        var count = 0
        var priorityCounts: [UInt8: Int] = [:]
        var lastRowID: Int64 = 0
        var lostTotals: [String: UInt64] = [:]
        /// The message tables in row order (see `Segment`).
        var segments: [Segment] = []
        /// Rows of the legacy (v2) table still stored.
        var legacyRows = 0
        /// Acknowledged rows of full segments not deleted yet: each goes with its whole segment
        /// (one `DROP TABLE`), or row by row once more than `heldLimit` are waiting.
        var held: [Int64: RowInfo] = [:]
    }
    /// What the buffer remembers of a leased (or acknowledged and held) message row.
    struct RowInfo {
        var size: Int64
        var priority: UInt8
        var kind: MessageKind
        var deviceID: String?
    }
    /// At most this many acknowledged rows wait for their segment to be dropped; a crash loses
    /// their deletion, so after a restart they are delivered again (same ids): a duplicate a
    /// consumer recognises, never a loss. A segment plus half of one: a drain in row order holds
    /// at most one segment and one batch of acknowledgements, so it never reaches the limit.
    static let heldLimit = Int(Segment.rows + Segment.rows / 2)
    private var acct = Accounting()
    private var leasedMessages: [Int64: RowInfo] = [:]
    /// False while the connection runs at `synchronous=NORMAL` (only for deletes).
    private var fullSync = true
    /// Per priority: every message row with a row id up to this is leased or deleted.
    private var leaseCursor: [UInt8: Int64] = [:]
    private var leasedGaps = Set<Int64>()
    /// Gap rows that may already have been published under their id, so they must not grow:
    /// every gap row that existed at open (`gap_id <= sealedGapsUpTo`) and every one leased since.
    private var sealedGaps = Set<Int64>()
    private var sealedGapsUpTo: Int64 = 0
    private var idGenerator = ReadingIDGenerator()
    private let reserve: DiskReserve
    /// Seals payloads when the buffer has an at-rest key.
    let sealer: PayloadSealer?
    /// Sealed rows found unreadable during the current lease, by row id.
    private var unreadable: [Int64: UnreadableRow] = [:]
    /// Message rows discarded as unreadable at rest since open.
    private(set) var unreadableTotal = 0

    // MARK: open

    static func open(_ config: BufferConfig) throws(BufferError) -> BufferStore {
        let path = config.path
        guard config.maxBytes > 0 else {
            throw BufferError.invalidConfiguration(path: path, detail: "buffer.max_bytes must be positive (got \(config.maxBytes))")
        }
        try checkWritable(path: path)
        let lock = try InstanceLock(databasePath: path)
        do throws(BufferError) {
            try validateExisting(path: path, sealer: config.sealer)
            let conn = try openReadWrite(path: path)
            try prepareKey(conn, sealer: config.sealer, path: path)
            return try BufferStore(config: config, conn: conn, lock: lock, recovered: nil, salvaged: 0)
        } catch where error.isCorruption {
            let destination = try moveAside(path: path, clock: config.clock)
            config.logger?.error("buffer database was corrupt; moved aside, starting a fresh buffer",
                                 metadata: ["path": "\(path)", "moved_to": "\(destination)", "reason": "\(error)"])
            let conn = try openReadWrite(path: path)
            let salvaged = salvage(from: destination, into: conn, logger: config.logger)
            config.logger?.error("salvaged rows from the corrupt buffer database",
                                 metadata: ["path": "\(path)", "moved_to": "\(destination)", "rows": "\(salvaged)"])
            // Salvaged sealed rows stay sealed, and the salvaged key check still decides.
            try prepareKey(conn, sealer: config.sealer, path: path)
            return try BufferStore(config: config, conn: conn, lock: lock, recovered: destination, salvaged: salvaged)
        }
    }

    /// WAL mode needs to create `<path>-wal` and `<path>-shm` next to the database, so both the
    /// file and its directory must be writable; say so plainly instead of SQLite's "unable to
    /// open database file". A missing directory is left to SQLite (`cannotOpen`).
    private static func checkWritable(path: String) throws(BufferError) {
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        guard access(directory, F_OK) == 0 else { return }
        if access(directory, W_OK) != 0 {
            let e = errno
            throw BufferError.readOnly(path: path, detail: "directory \(directory) is not writable (errno \(e)\(e == EROFS ? ", read-only file system" : "")); the buffer creates \(path)-wal and -shm there")
        }
        if access(path, F_OK) == 0, access(path, W_OK) != 0 {
            let e = errno
            throw BufferError.readOnly(path: path, detail: "file is not writable (errno \(e)\(e == EROFS ? ", read-only file system" : ""))")
        }
    }

    /// Checks an existing, non-empty file on a read-only connection: a read-only connection
    /// never checkpoints or truncates, so a damaged file keeps its original bytes for the move.
    /// The at-rest key is checked here too, before anything opens the file for writing: a
    /// missing or wrong key leaves the file's bytes exactly as they were.
    private static func validateExisting(path: String, sealer: PayloadSealer?) throws(BufferError) {
        var st = stat()
        guard stat(path, &st) == 0, st.st_size > 0, (st.st_mode & S_IFMT) == S_IFREG else { return }
        let ro = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY)
        defer { ro.close() }
        if let h = ro.handle { sqlite3_busy_timeout(h, 5000) }
        try checkIntegrity(ro)
        _ = try verifyKey(ro, sealer: sealer, path: path)
    }

    /// Checks the at-rest key against the database (schema v2 only; v1 holds nothing sealed).
    /// Returns true when a key is given and no key check is stored yet (a new or v1 file).
    ///
    /// - Throws: `.keyRequired` when the file has a key check or sealed rows and no key is
    ///   given; `.wrongKey` when the key does not open the key check. Neither changes the file.
    private static func verifyKey(_ conn: SQLiteConnection, sealer: PayloadSealer?, path: String) throws(BufferError) -> Bool {
        let version = try conn.scalarInt("PRAGMA user_version") ?? 0
        guard version >= 2 else { return sealer != nil }
        let check = try conn.with("SELECT value FROM meta WHERE name = ?1") { s throws(BufferError) -> [UInt8]? in
            try s.bind(1, PayloadSealer.keyCheckName)
            return try s.step() ? s.blob(0) : nil
        }
        if let check {
            guard let sealer else { throw BufferError.keyRequired(path: path) }
            guard sealer.opensKeyCheck(check) else {
                throw BufferError.wrongKey(path: path, detail: "the key check stored in the buffer does not open with this key")
            }
            return false
        }
        // No key check (someone removed it): the first sealed row decides.
        var opens: Bool?
        for segment in try Segment.list(conn) where opens == nil {
            opens = try conn.once("SELECT id_high, id_low, topic, payload FROM \(segment.table) WHERE sealed = 1 ORDER BY row_id LIMIT 1") { s throws(BufferError) -> Bool? in
                guard try s.step() else { return nil }
                guard let sealer else { return false }
                let topic = s.text(2) ?? ""
                return s.withBlob(3) { sealer.open($0, idHigh: s.int64(0), idLow: s.int64(1), topic: topic) != nil }
            }
        }
        switch (opens, sealer) {
        case (nil, _): return sealer != nil
        case (.some, nil): throw BufferError.keyRequired(path: path)
        case (.some(false), _):
            throw BufferError.wrongKey(path: path, detail: "the buffer has no key check and its first sealed row does not open with this key")
        case (.some(true), _): return true
        }
    }

    /// On the read-write connection: checks the key again and writes the key check into a new
    /// or v1 database that is sealed from now on.
    private static func prepareKey(_ conn: SQLiteConnection, sealer: PayloadSealer?, path: String) throws(BufferError) {
        guard try verifyKey(conn, sealer: sealer, path: path), let sealer else { return }
        let record = try sealer.makeKeyCheck(path: path)
        try conn.transaction { () throws(BufferError) in
            try conn.with("INSERT OR REPLACE INTO meta(name, value) VALUES(?1, ?2)") { s throws(BufferError) in
                try s.bind(1, PayloadSealer.keyCheckName); try s.bind(2, record); try s.run()
            }
        }
    }

    private static func checkIntegrity(_ conn: SQLiteConnection) throws(BufferError) {
        let result = try conn.with("PRAGMA quick_check") { s throws(BufferError) -> [String] in
            var lines: [String] = []
            while try s.step(), lines.count < 5 { lines.append(s.text(0) ?? "") }
            return lines
        }
        guard result == ["ok"] else {
            throw BufferError.corrupt(path: conn.path, detail: "quick_check: " + result.joined(separator: "; "))
        }
    }

    private static func openReadWrite(path: String) throws(BufferError) -> SQLiteConnection {
        let conn = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        guard let h = conn.handle else { throw BufferError.closed(path: path) }
        sqlite3_busy_timeout(h, 5000)
        if sqlite3_db_readonly(h, "main") == 1 {
            throw BufferError.readOnly(path: path, detail: "opened read-only (file or directory not writable)")
        }
        let mode = try conn.scalarText("PRAGMA journal_mode=WAL")
        guard mode?.lowercased() == "wal" else {
            throw BufferError.sqlite(path: path, code: 0, detail: "could not switch to WAL mode (journal_mode is \(mode ?? "unknown"))")
        }
        try conn.exec("PRAGMA synchronous=FULL")
        // Debian builds SQLite with SQLITE_SECURE_DELETE (`PRAGMA secure_delete` defaults to 1
        // there, 0 upstream): every delete then zeroes the row AND writes each freed page to the
        // WAL and, at the checkpoint, to the file again: about one page write per acknowledged
        // message, most of the buffer thread's time while draining. FAST (SQLite >= 3.20) still
        // zeroes deleted content on every page that is written anyway, but does not write freed
        // pages only to zero them (their old content stays until the page is reused; the WAL
        // keeps old page images until it is reset either way). Same setting on every distro.
        try conn.exec("PRAGMA secure_delete=FAST")
        // Checkpoint every 256 pages (~1 MiB) and keep the WAL file near that size: a checkpoint
        // then never needs more new disk than the disk reserve holds (see DiskReserve).
        try conn.exec("PRAGMA wal_autocheckpoint=256")
        try conn.exec("PRAGMA journal_size_limit=2097152")
        let version = Int32(truncatingIfNeeded: try conn.scalarInt("PRAGMA user_version") ?? 0)
        if version > bufferSchemaVersion {
            throw BufferError.schemaTooNew(path: path, found: version, supported: bufferSchemaVersion)
        }
        if version == 0 {
            try conn.transaction { () throws(BufferError) in try conn.exec(freshSchema) }
        } else if version < bufferSchemaVersion {
            try conn.transaction { () throws(BufferError) in
                if version == 1 { try conn.exec(migrationV2) }
                try migrateToV3(conn)
            }
        }
        return conn
    }

    /// Version 3: new rows go to segment tables (`Segment`). A `messages` table that still
    /// holds rows stays as the legacy segment; an empty one is dropped with its index.
    private static func migrateToV3(_ conn: SQLiteConnection) throws(BufferError) {
        if try conn.scalarInt("SELECT EXISTS (SELECT 1 FROM messages)") == 0 {
            // Its row ids are not reused: the next segment starts above them.
            let high = try conn.scalarInt("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'messages'") ?? 0
            try conn.exec("DROP TABLE messages")
            try conn.exec("DELETE FROM sqlite_sequence WHERE name = 'messages'")
            if high > 0 { try storeRowHighWater(conn, high) }
        }
        try conn.exec("PRAGMA user_version = 3")
    }

    private static func storeRowHighWater(_ conn: SQLiteConnection, _ rowID: Int64) throws(BufferError) {
        try conn.with("INSERT OR REPLACE INTO meta(name, value) VALUES(?1, ?2)") { s throws(BufferError) in
            try s.bind(1, rowHighWaterName); try s.bind(2, rowID); try s.run()
        }
    }

    /// Renames `path` (and its `-wal`/`-shm`) to `<path>.corrupt-<UTC time>`; never deletes.
    private static func moveAside(path: String, clock: any WallClock) throws(BufferError) -> String {
        let stamp = clock.now().rfc3339.filter { $0 != "-" && $0 != ":" }
        var destination = "\(path).corrupt-\(stamp)"
        var n = 1
        var st = stat()
        while stat(destination, &st) == 0 {
            destination = "\(path).corrupt-\(stamp)-\(n)"
            n += 1
        }
        if rename(path, destination) != 0 {
            throw BufferError.cannotMoveAside(path: path, destination: destination, systemErrno: errno)
        }
        for suffix in ["-wal", "-shm"] {
            if rename(path + suffix, destination + suffix) != 0 && errno != ENOENT {
                throw BufferError.cannotMoveAside(path: path + suffix, destination: destination + suffix, systemErrno: errno)
            }
        }
        return destination
    }

    /// Copies what can still be read from a corrupt database into `conn`, table by table,
    /// row by row, stopping a table at its first error. Returns the number of rows copied.
    private static func salvage(from source: String, into conn: SQLiteConnection, logger: Logger?) -> Int {
        guard let src = try? SQLiteConnection(path: source, flags: SQLITE_OPEN_READONLY) else { return 0 }
        defer { src.close() }
        // A truncated file's header claims more pages than the file has; SQLite then refuses to
        // load the schema unless writable_schema is on (it then trusts the file size). The
        // connection is read-only, so this cannot modify the moved-aside file.
        try? src.exec("PRAGMA writable_schema=ON")
        var copied = 0
        // The message tables of the source (v1/v2: `messages`; v3: its segments). A schema that
        // cannot be listed still gets the v2 name tried.
        let sourceTables = ((try? Segment.tables(src)) ?? []).map(\.name)
        let tables = sourceTables.isEmpty ? [Segment.legacyTable] : sourceTables
        // A v1 file has no `sealed` column (all its rows are plaintext) and no meta table.
        func hasSealedColumn(_ table: String) -> Bool {
            ((try? src.scalarInt("SELECT count(*) FROM pragma_table_info('\(table)') WHERE name = 'sealed'")) ?? nil ?? 0) > 0
        }
        let hasMeta = ((try? src.scalarInt("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'")) ?? nil ?? 0) > 0
        do throws(BufferError) {
            try conn.transaction { () throws(BufferError) in
                // The key check first: it decides whether the salvaged sealed rows can be opened.
                if hasMeta {
                    copied += salvageTable(src, "SELECT name, value FROM meta WHERE name = '\(PayloadSealer.keyCheckName)'", logger) { s throws(BufferError) in
                        guard let name = s.text(0), !name.isEmpty else { return false }
                        return try conn.with("INSERT OR REPLACE INTO meta(name, value) VALUES(?1, ?2)") { ins throws(BufferError) in
                            try ins.bind(1, name); try ins.bind(2, s.blob(1)); try ins.run()
                            return true
                        }
                    }
                }
                // device_state first: the sequence high-water marks matter most.
                copied += salvageTable(src, "SELECT device_id, last_sequence, lost_total FROM device_state", logger) { s throws(BufferError) in
                    guard let device = s.text(0), !device.isEmpty else { return false }
                    return try conn.with("INSERT OR REPLACE INTO device_state(device_id, last_sequence, lost_total) VALUES(?1, ?2, ?3)") { ins throws(BufferError) in
                        try ins.bind(1, device); try ins.bind(2, s.int64(1)); try ins.bind(3, s.int64(2)); try ins.run()
                        return true
                    }
                }
                copied += salvageTable(src, "SELECT \(gapColumns) FROM gaps ORDER BY gap_id", logger) { s throws(BufferError) in
                    guard let device = s.text(3), !device.isEmpty, let reason = s.text(7), !reason.isEmpty,
                          s.int64(6) > 0, s.int64(5) >= s.int64(4) else { return false }
                    return try conn.with("INSERT INTO gaps(id_high, id_low, device_id, first_sequence, last_sequence, count, reason, first_lost_at, last_lost_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)") { ins throws(BufferError) in
                        try ins.bind(1, s.int64(1)); try ins.bind(2, s.int64(2)); try ins.bind(3, device)
                        try ins.bind(4, s.int64(4)); try ins.bind(5, s.int64(5)); try ins.bind(6, s.int64(6))
                        try ins.bind(7, reason); try ins.bind(8, s.int64(8)); try ins.bind(9, s.int64(9))
                        try ins.run()
                        return true
                    }
                }
                // Rows are copied as they are: a sealed payload stays sealed (its associated data,
                // the id and topic, is copied with it, so it still opens). They get new row ids
                // from 1, in the order of the source.
                var rowID: Int64 = 0
                for table in tables {
                let sourceColumns = hasSealedColumn(table) ? messageColumns : messageColumnsV1
                copied += salvageTable(src, "SELECT \(sourceColumns) FROM \(table) ORDER BY row_id", logger) { s throws(BufferError) in
                    // A page cut short reads back partly as zeros: keep only rows that are
                    // self-consistent (a UUIDv7 id, a topic, and the stored logical size).
                    guard let topic = s.text(9), !topic.isEmpty else { return false }
                    let payload = s.blob(10)
                    let device = s.text(5)
                    let expectedSize = Int64(payload.count) + Int64(topic.utf8.count) + Int64(device?.utf8.count ?? 0) + perRowOverhead
                    let idHigh = UInt64(bitPattern: s.int64(1))
                    guard s.int64(8) == expectedSize, (idHigh >> 12) & 0xF == 7 else { return false }
                    // Same length is not same content: a page reused between checkpoint and cut
                    // can hand back another row's bytes. The checksum written with the row decides.
                    let sealed = s.int64(12) == 1
                    let checksum = rowChecksum(idHigh: s.int64(1), idLow: s.int64(2), kind: s.int64(3), device: device,
                                               sequence: s.optionalInt64(6), createdAt: s.int64(7), topic: topic, payload: payload,
                                               sealed: sealed)
                    guard checksum == s.int64(11) else { return false }
                    rowID += 1
                    let segment = Segment.forRow(rowID, floor: 1)
                    if rowID == segment.first { try conn.exec(Segment.createSQL(segment.table)) }
                    return try conn.with(insertSQL(segment.table), table: segment.table) { ins throws(BufferError) in
                        try ins.bind(1, s.int64(1)); try ins.bind(2, s.int64(2)); try ins.bind(3, s.int64(3))
                        try ins.bind(4, s.int64(4) & 0xFF); try ins.bind(5, device); try ins.bind(6, s.optionalInt64(6))
                        try ins.bind(7, s.int64(7)); try ins.bind(8, s.int64(8)); try ins.bind(9, topic)
                        try ins.bind(10, payload); try ins.bind(11, checksum); try ins.bind(12, Int64(sealed ? 1 : 0))
                        try ins.bind(13, rowID)
                        try ins.run()
                        return true
                    }
                }
                }
                if rowID > 0 { try storeRowHighWater(conn, Segment.forRow(rowID, floor: 1).last) }
                // One cached INSERT per segment written: not kept.
                for n in stride(from: Int64(0), through: rowID > 0 ? Segment.number(of: rowID) : -1, by: 1) {
                    conn.forgetStatements(for: Segment.table(n))
                }
            }
        } catch {
            logger?.error("could not write salvaged rows", metadata: ["path": "\(conn.path)", "error": "\(error)"])
            return 0
        }
        return copied
    }

    /// Steps `sql` on `src`, calling `copy` for each row (which returns false for a row it
    /// skipped as implausible); stops at the first error. Returns the number of rows copied.
    private static func salvageTable(_ src: SQLiteConnection, _ sql: String, _ logger: Logger?,
                                     _ copy: (Statement) throws(BufferError) -> Bool) -> Int {
        var n = 0
        do throws(BufferError) {
            try src.with(sql) { s throws(BufferError) in
                while try s.step() {
                    if try copy(s) { n += 1 }
                }
            }
        } catch {
            logger?.warning("salvage stopped", metadata: ["path": "\(src.path)", "query": "\(sql)", "error": "\(error)", "rows": "\(n)"])
        }
        return n
    }

    private init(config: BufferConfig, conn: SQLiteConnection, lock: InstanceLock, recovered: String?,
                 salvaged: Int) throws(BufferError) {
        self.config = config
        self.conn = conn
        self.lock = lock
        self.recoveredFromCorruption = recovered
        self.salvagedRows = salvaged
        self.sealer = config.sealer
        self.reserve = DiskReserve(path: config.path + ".reserve")
        reserve.restoreIfDue(logger: config.logger)
        acct.segments = try Segment.list(conn)
        var emptyFull: [Segment] = []
        for segment in acct.segments {
            var rows = 0
            var maxRow: Int64 = 0
            try conn.once("SELECT priority, count(*), coalesce(sum(size), 0), max(row_id) FROM \(segment.table) GROUP BY priority") { s throws(BufferError) in
                while try s.step() {
                    acct.priorityCounts[UInt8(truncatingIfNeeded: s.int64(0)), default: 0] += Int(s.int64(1))
                    rows += Int(s.int64(1))
                    acct.bytes += s.int64(2)
                    maxRow = max(maxRow, s.int64(3))
                }
            }
            acct.count += rows
            if segment.isLegacy { acct.legacyRows = rows }
            if rows == 0 { emptyFull.append(segment) }
            acct.lastRowID = max(acct.lastRowID, maxRow, segment.isLegacy ? segment.last : 0)
        }
        // Restarted, new rows go to a new segment: the one that was being filled is full now.
        acct.lastRowID = max(acct.lastRowID, try conn.scalarInt("SELECT value FROM meta WHERE name = '\(rowHighWaterName)'") ?? 0)
        if !emptyFull.isEmpty {
            // The segment that was being filled when the buffer last closed, every row of it
            // delivered: full now that new rows start a new segment. Best effort: on a full disk
            // the buffer must still open and forward what it holds; it goes next time.
            let segments = acct.segments
            do throws(BufferError) {
                try conn.transaction { () throws(BufferError) in
                    for segment in emptyFull { try dropSegment(segment) }
                }
            } catch {
                acct.segments = segments
                config.logger?.warning("could not drop empty buffer segment tables; tried again at the next start",
                                       metadata: ["path": "\(config.path)", "tables": "\(emptyFull.count)", "error": "\(error)"])
            }
        }
        try conn.with("SELECT device_id, lost_total FROM device_state WHERE lost_total > 0") { s throws(BufferError) in
            while try s.step() {
                if let d = s.text(0) { acct.lostTotals[d] = UInt64(bitPattern: s.int64(1)) }
            }
        }
        sealedGapsUpTo = try conn.scalarInt("SELECT coalesce(max(gap_id), 0) FROM gaps") ?? 0
    }

    func close() {
        deleteHeldBeforeClose()
        conn.close()
        lock.release()
    }

    private func ensureOpen() throws(BufferError) {
        if !conn.isOpen { throw BufferError.closed(path: config.path) }
    }

    // MARK: size accounting

    /// Fixed per-row overhead counted against `maxBytes` on top of payload, topic and device id:
    /// an estimate of the row header, the ids, integers and index entries.
    static let perRowOverhead: Int64 = 64

    static func logicalSize(_ m: OutgoingMessage) -> Int64 {
        Int64(m.payload.count) + Int64(m.topic.utf8.count) + Int64(m.deviceID?.utf8.count ?? 0) + perRowOverhead
    }

    // MARK: append

    func append(_ messages: [OutgoingMessage], sequences: [String: UInt64]) throws(BufferError) -> AppendOutcome {
        try ensureOpen()
        try requireFullSync()
        let saved = acct
        do throws(BufferError) {
            return try conn.transaction { () throws(BufferError) -> AppendOutcome in
                try appendInTransaction(messages, sequences: sequences)
            }
        } catch {
            acct = saved
            throw error
        }
    }

    private func appendInTransaction(_ messages: [OutgoingMessage], sequences: [String: UInt64]) throws(BufferError) -> AppendOutcome {
        var rowIDs: [Int64?] = []
        rowIDs.reserveCapacity(messages.count)
        var rejected: [Int] = []
        var evicted: [LostReading] = []
        var losses: [LostReading] = []
        var cursors: [String: String] = [:]
        var batchRows: [Int64: Int] = [:]   // row id -> input index, for evictions within the batch
        var highWater = sequences
        let now = config.clock.now()

        for (index, m) in messages.enumerated() {
            if let d = m.deviceID, let s = m.sequence { highWater[d] = max(highWater[d] ?? 0, s) }
            // A sealed row counts what it stores (the payload plus nonce and tag).
            let size = Self.logicalSize(m) + (sealer == nil ? 0 : Int64(PayloadSealer.overhead))
            if acct.bytes + size > config.maxBytes {
                if config.onFull == .dropOldest, size <= config.maxBytes {
                    let freed = try evict(atLeast: acct.bytes + size - config.maxBytes, at: now)
                    for (rowID, loss) in freed {
                        evicted.append(loss)
                        losses.append(loss)
                        if let i = batchRows[rowID] { rowIDs[i] = nil }
                    }
                }
                if acct.bytes + size > config.maxBytes {
                    rowIDs.append(nil)
                    rejected.append(index)
                    if let d = m.deviceID, let s = m.sequence {
                        losses.append(LostReading(deviceID: d, sequence: s, reason: .bufferFullRejected, at: now))
                    }
                    continue
                }
            }
            let rowID = acct.lastRowID + 1
            let table = try segmentTable(forNewRow: rowID)
            try conn.with(Self.insertSQL(table), table: table) { s throws(BufferError) in
                try s.bind(13, rowID)
                let idHigh = Int64(bitPattern: m.id.high), idLow = Int64(bitPattern: m.id.low)
                let sequence = m.sequence.map { Int64(bitPattern: $0) }
                try s.bind(1, idHigh); try s.bind(2, idLow)
                try s.bind(3, Int64(m.kind.rawValue)); try s.bind(4, Int64(m.priority))
                try s.bind(5, m.deviceID); try s.bind(6, sequence)
                try s.bind(7, m.createdAt.millisecondsSinceEpoch); try s.bind(8, size)
                try s.bind(9, m.topic)
                // The checksum covers what is stored (the sealed bytes for a sealed row), so
                // salvage can still tell an intact row from a damaged one without the key.
                if let sealer {
                    let stored = try sealer.seal(m.payload, idHigh: idHigh, idLow: idLow, topic: m.topic, path: config.path)
                    try s.bind(10, stored)
                    try s.bind(11, rowChecksum(idHigh: idHigh, idLow: idLow, kind: Int64(m.kind.rawValue), device: m.deviceID,
                                               sequence: sequence, createdAt: m.createdAt.millisecondsSinceEpoch,
                                               topic: m.topic, payload: stored, sealed: true))
                    try s.bind(12, Int64(1))
                } else {
                    try s.bind(10, m.payload)
                    try s.bind(11, rowChecksum(idHigh: idHigh, idLow: idLow, kind: Int64(m.kind.rawValue), device: m.deviceID,
                                               sequence: sequence, createdAt: m.createdAt.millisecondsSinceEpoch,
                                               topic: m.topic, payload: m.payload, sealed: false))
                    try s.bind(12, Int64(0))
                }
                try s.run()
            }
            rowIDs.append(rowID)
            batchRows[rowID] = index
            acct.bytes += size
            acct.count += 1
            acct.priorityCounts[m.priority, default: 0] += 1
            acct.lastRowID = rowID
            if let cursor = m.sourceCursor, let device = m.deviceID { cursors[device] = cursor }
        }
        for loss in losses { highWater[loss.deviceID] = max(highWater[loss.deviceID] ?? 0, loss.sequence) }
        try storeHighWater(highWater)
        try storeCursors(cursors)
        try recordLossesInTransaction(losses)
        return AppendOutcome(rowIDs: rowIDs, rejectedIndices: rejected, evicted: evicted, losses: losses)
    }

    /// Deletes the oldest non-leased readings (lowest priority first) until `needed` bytes are
    /// free. Evicts nothing if even all candidates would not free enough.
    private func evict(atLeast needed: Int64, at now: Timestamp) throws(BufferError) -> [(Int64, LostReading)] {
        var victims: [(rowID: Int64, size: Int64, priority: UInt8, loss: LostReading)] = []
        var freed: Int64 = 0
        for priority in acct.priorityCounts.keys.sorted() where freed < needed {
            for segment in acct.segments where freed < needed {
            try conn.with("SELECT row_id, size, device_id, sequence FROM \(segment.table) WHERE priority = ?1 AND kind = \(MessageKind.reading.rawValue) AND device_id IS NOT NULL AND sequence IS NOT NULL ORDER BY row_id", table: segment.table) { s throws(BufferError) in
                try s.bind(1, Int64(priority))
                while freed < needed, try s.step() {
                    let rowID = s.int64(0)
                    if leasedMessages[rowID] != nil || acct.held[rowID] != nil { continue }
                    guard let device = s.text(2) else { continue }
                    let loss = LostReading(deviceID: device, sequence: UInt64(bitPattern: s.int64(3)),
                                           reason: .bufferFullEvicted, at: now)
                    victims.append((rowID, s.int64(1), priority, loss))
                    freed += s.int64(1)
                }
            }
            }
        }
        guard freed >= needed else { return [] }
        for v in victims { try deleteRow(v.rowID, size: v.size, priority: v.priority) }
        try dropFinishedSegments(holding: victims.map(\.rowID))
        return victims.map { ($0.rowID, $0.loss) }
    }

    /// Deletes one message row (inside the caller's transaction) and takes it out of the
    /// accounting. The caller then calls `dropFinishedSegments` for the rows it deleted.
    private func deleteRow(_ rowID: Int64, size: Int64, priority: UInt8) throws(BufferError) {
        guard let i = acct.segments.index(holding: rowID) else { return }
        try conn.with("DELETE FROM \(acct.segments[i].table) WHERE row_id = ?1", table: acct.segments[i].table) { s throws(BufferError) in
            try s.bind(1, rowID); try s.run()
        }
        guard (conn.handle.map { sqlite3_changes($0) } ?? 0) > 0 else { return }
        if acct.segments[i].isLegacy { acct.legacyRows -= 1 }
        acct.bytes -= size
        acct.count -= 1
        decrementPriority(priority)
    }

    // MARK: segments

    /// The table a new row `rowID` (above every stored row) goes to; creates its segment when
    /// `rowID` is the first of it, and drops the segment before it if that one is now full and
    /// empty (every row of it acknowledged while it was being filled).
    private func segmentTable(forNewRow rowID: Int64) throws(BufferError) -> String {
        if let last = acct.segments.last, !last.isLegacy, rowID >= last.first, rowID <= last.last { return last.table }
        let segment = Segment.forRow(rowID, floor: (acct.segments.last?.last ?? 0) + 1)
        try conn.exec(Segment.createSQL(segment.table))
        try Self.storeRowHighWater(conn, segment.last)
        let previous = acct.segments.last
        acct.segments.append(segment)
        if let previous {
            // Full now: nothing is inserted there again (a backlog of 1M rows would otherwise
            // keep ~2000 prepared INSERTs).
            conn.forget(Self.insertSQL(previous.table))
            try dropIfFinished(previous)
        }
        return segment.table
    }

    /// The INSERT of a message row into `table`; parameter 13 is the row id.
    static func insertSQL(_ table: String) -> String {
        "INSERT INTO \(table)(row_id, id_high, id_low, kind, priority, device_id, sequence, created_at, size, topic, payload, checksum, sealed) VALUES(?13, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    }

    /// A segment is full once a row id above it was assigned (the legacy one always is).
    private func isFull(_ segment: Segment) -> Bool { segment.isLegacy || acct.lastRowID >= segment.last }

    /// Drops the segments holding any of `rowIDs` that are full and hold nothing but
    /// acknowledged rows (or nothing at all).
    private func dropFinishedSegments<S: Sequence>(holding rowIDs: S) throws(BufferError) where S.Element == Int64 {
        // By index (the list does not change until the drops below): no string hashing per row.
        var seen = Set<Int>()
        for rowID in rowIDs {
            if let i = acct.segments.index(holding: rowID) { seen.insert(i) }
        }
        for segment in seen.sorted().map({ acct.segments[$0] }) { try dropIfFinished(segment) }
    }

    private func dropIfFinished(_ segment: Segment) throws(BufferError) {
        guard isFull(segment) else { return }
        if segment.isLegacy {
            if acct.legacyRows <= 0 { try dropSegment(segment) }
            return
        }
        // Newest first: a drain acknowledges in row order, so a segment that is not finished
        // usually shows a row that is not held at once.
        let finished = try conn.with("SELECT row_id FROM \(segment.table) ORDER BY row_id DESC", table: segment.table) { s throws(BufferError) -> Bool in
            while try s.step() {
                if acct.held[s.int64(0)] == nil { return false }
            }
            return true
        }
        if finished { try dropSegment(segment) }
    }

    /// Drops a segment table (inside the caller's transaction) with the acknowledged rows it held.
    private func dropSegment(_ segment: Segment) throws(BufferError) {
        try conn.exec("DROP TABLE IF EXISTS \(segment.table)")
        if segment.isLegacy {
            try conn.exec("DELETE FROM sqlite_sequence WHERE name = '\(Segment.legacyTable)'")
            try Self.storeRowHighWater(conn, max(segment.last, acct.lastRowID))
            acct.legacyRows = 0
        }
        acct.segments.removeAll { $0.table == segment.table }
        if !acct.held.isEmpty {
            acct.held = acct.held.filter { $0.key < segment.first || $0.key > segment.last }
        }
        conn.forgetStatements(for: segment.table)
    }

    private func decrementPriority(_ p: UInt8) {
        let n = (acct.priorityCounts[p] ?? 0) - 1
        if n > 0 { acct.priorityCounts[p] = n } else { acct.priorityCounts[p] = nil }
    }

    private func storeHighWater(_ highWater: [String: UInt64]) throws(BufferError) {
        for (device, sequence) in highWater {
            try conn.with("INSERT INTO device_state(device_id, last_sequence) VALUES(?1, ?2) ON CONFLICT(device_id) DO UPDATE SET last_sequence = max(last_sequence, excluded.last_sequence)") { s throws(BufferError) in
                try s.bind(1, device); try s.bind(2, Int64(bitPattern: sequence)); try s.run()
            }
        }
    }

    // MARK: losses

    func recordLosses(_ losses: [LostReading], sequences: [String: UInt64]) throws(BufferError) {
        try ensureOpen()
        try requireFullSync()
        let saved = acct
        do throws(BufferError) {
            try conn.transaction { () throws(BufferError) in
                var highWater = sequences
                for l in losses { highWater[l.deviceID] = max(highWater[l.deviceID] ?? 0, l.sequence) }
                try storeHighWater(highWater)
                try recordLossesInTransaction(losses)
            }
        } catch {
            acct = saved
            throw error
        }
    }

    private struct OpenGap {
        var gapID: Int64
        var lastSequence: UInt64
        var reason: String
        var extendable: Bool
    }

    /// Writes losses as coalesced gap rows and bumps `lost_total`. Per device, a loss whose
    /// sequence follows the device's newest gap row, with the same reason, extends that row
    /// unless it is sealed (leased now or before, or older than this process).
    private func recordLossesInTransaction(_ losses: [LostReading]) throws(BufferError) {
        guard !losses.isEmpty else { return }
        let sorted = losses.enumerated().sorted { a, b in
            (a.element.deviceID, a.element.sequence, a.offset) < (b.element.deviceID, b.element.sequence, b.offset)
        }.map(\.element)
        var open: [String: OpenGap?] = [:]
        var perDevice: [String: UInt64] = [:]
        for loss in sorted {
            perDevice[loss.deviceID, default: 0] += 1
            if open[loss.deviceID] == nil {
                open[loss.deviceID] = .some(try newestGap(for: loss.deviceID))
            }
            if let g = open[loss.deviceID] ?? nil, g.extendable, g.reason == loss.reason.rawValue,
               g.lastSequence != UInt64.max, loss.sequence == g.lastSequence + 1 {
                try conn.with("UPDATE gaps SET last_sequence = ?1, count = count + 1, last_lost_at = max(last_lost_at, ?2) WHERE gap_id = ?3") { s throws(BufferError) in
                    try s.bind(1, Int64(bitPattern: loss.sequence)); try s.bind(2, loss.at.millisecondsSinceEpoch)
                    try s.bind(3, g.gapID); try s.run()
                }
                open[loss.deviceID] = .some(OpenGap(gapID: g.gapID, lastSequence: loss.sequence, reason: g.reason, extendable: true))
            } else {
                let id = idGenerator.next(at: config.clock.now())
                try conn.with("INSERT INTO gaps(id_high, id_low, device_id, first_sequence, last_sequence, count, reason, first_lost_at, last_lost_at) VALUES(?1, ?2, ?3, ?4, ?4, 1, ?5, ?6, ?6)") { s throws(BufferError) in
                    try s.bind(1, Int64(bitPattern: id.high)); try s.bind(2, Int64(bitPattern: id.low))
                    try s.bind(3, loss.deviceID); try s.bind(4, Int64(bitPattern: loss.sequence))
                    try s.bind(5, loss.reason.rawValue); try s.bind(6, loss.at.millisecondsSinceEpoch)
                    try s.run()
                }
                open[loss.deviceID] = .some(OpenGap(gapID: conn.lastInsertRowID, lastSequence: loss.sequence,
                                                    reason: loss.reason.rawValue, extendable: true))
            }
        }
        for (device, n) in perDevice {
            try conn.with("INSERT INTO device_state(device_id, lost_total) VALUES(?1, ?2) ON CONFLICT(device_id) DO UPDATE SET lost_total = lost_total + excluded.lost_total") { s throws(BufferError) in
                try s.bind(1, device); try s.bind(2, Int64(bitPattern: n)); try s.run()
            }
            acct.lostTotals[device, default: 0] += n
        }
    }

    private func newestGap(for device: String) throws(BufferError) -> OpenGap? {
        try conn.with("SELECT gap_id, last_sequence, reason FROM gaps WHERE device_id = ?1 ORDER BY gap_id DESC LIMIT 1") { s throws(BufferError) -> OpenGap? in
            try s.bind(1, device)
            guard try s.step() else { return nil }
            let id = s.int64(0)
            let extendable = id > sealedGapsUpTo && !sealedGaps.contains(id) && !leasedGaps.contains(id)
            return OpenGap(gapID: id, lastSequence: UInt64(bitPattern: s.int64(1)), reason: s.text(2) ?? "", extendable: extendable)
        }
    }

    // MARK: lease / release / ack

    /// Gap rows first, then message rows by priority (high first) and insertion order.
    /// With `liveAfter`, backlog rows (row id <= boundary) get up to `backlogLimit` places first
    /// (so they never starve), live rows fill the rest, and unused places go to more backlog.
    /// The result lists gaps, then live rows, then backlog rows.
    func lease(limit: Int, backlogLimit: Int, liveAfter: Int64?) throws(BufferError) -> [StoredMessage] {
        try ensureOpen()
        guard limit > 0 else { return [] }
        // Rows found unreadable by this lease are recorded as lost once the scan is over.
        defer { discardUnreadable() }
        var out: [StoredMessage] = []
        try leaseGaps(limit: limit, into: &out)
        guard let boundary = liveAfter else {
            try leaseMessages(limit: limit - out.count, above: 0, upTo: Int64.max, isBacklog: false, into: &out)
            return out
        }
        var backlog: [StoredMessage] = []
        try leaseMessages(limit: min(max(backlogLimit, 0), limit - out.count), above: 0, upTo: boundary, isBacklog: true, into: &backlog)
        try leaseMessages(limit: limit - out.count - backlog.count, above: boundary, upTo: Int64.max, isBacklog: false, into: &out)
        try leaseMessages(limit: limit - out.count - backlog.count, above: 0, upTo: boundary, isBacklog: true, into: &backlog)
        return out + backlog
    }

    private func leaseGaps(limit: Int, into out: inout [StoredMessage]) throws(BufferError) {
        guard out.count < limit else { return }
        try conn.with("SELECT \(gapColumns) FROM gaps ORDER BY gap_id") { s throws(BufferError) in
            while out.count < limit, try s.step() {
                let gapID = s.int64(0)
                if leasedGaps.contains(gapID) { continue }
                let id = ReadingID(high: UInt64(bitPattern: s.int64(1)), low: UInt64(bitPattern: s.int64(2)))
                let record = GapRecord(
                    deviceID: s.text(3) ?? "", firstSequence: UInt64(bitPattern: s.int64(4)),
                    lastSequence: UInt64(bitPattern: s.int64(5)), count: UInt64(bitPattern: s.int64(6)),
                    reason: LossReason(rawValue: s.text(7) ?? ""),
                    firstLostAt: Timestamp(millisecondsSinceEpoch: s.int64(8)),
                    lastLostAt: Timestamp(millisecondsSinceEpoch: s.int64(9)))
                let message = OutgoingMessage(
                    id: id, kind: .gap, topic: config.gapTopic,
                    payload: WireFormat.json(record, gatewayID: config.gatewayID, id: id),
                    deviceID: record.deviceID, sequence: nil, priority: SQLiteBuffer.gapPriority,
                    createdAt: record.firstLostAt)
                leasedGaps.insert(gapID)
                sealedGaps.insert(gapID)
                out.append(StoredMessage(token: .gap(gapID), message: message, isBacklog: false))
            }
        }
    }

    private func leaseMessages(limit: Int, above low: Int64, upTo high: Int64, isBacklog: Bool,
                               into out: inout [StoredMessage]) throws(BufferError) {
        let target = out.count + limit
        guard limit > 0 else { return }
        let top = min(high, acct.lastRowID)
        for priority in acct.priorityCounts.keys.sorted(by: >) where out.count < target {
            // Start past the rows already leased (the cursor), not at the front: with a large
            // backlog and a full window, skipping every leased row again made each lease O(n).
            let cursor = leaseCursor[priority] ?? 0
            let from = max(low, cursor)
            var lastExamined: Int64?
            var i = acct.segments.firstIndex(reaching: from + 1)
            while out.count < target, i < acct.segments.count, acct.segments[i].first <= top {
                try conn.with("SELECT \(messageColumns) FROM \(acct.segments[i].table) WHERE row_id > ?2 AND row_id <= ?3 AND priority = ?1 ORDER BY row_id", table: acct.segments[i].table) { s throws(BufferError) in
                    try s.bind(1, Int64(priority)); try s.bind(2, from); try s.bind(3, top)
                    while out.count < target, try s.step() {
                        let rowID = s.int64(0)
                        lastExamined = rowID
                        if leasedMessages[rowID] != nil || acct.held[rowID] != nil || unreadable[rowID] != nil { continue }
                        guard let message = readMessage(s) else {
                            unreadable[rowID] = unreadableRow(s)
                            continue
                        }
                        leasedMessages[rowID] = RowInfo(size: s.int64(8), priority: message.priority, kind: message.kind,
                                                        deviceID: message.deviceID)
                        out.append(StoredMessage(token: .message(rowID), message: message, isBacklog: isBacklog))
                    }
                }
                i += 1
            }
            // Every row of this priority up to `lastExamined` is now leased (or gone), or up to
            // `top` when the scan ran out of rows; but only if the scan began at the cursor (a
            // live-only lease starts above it).
            if from == cursor {
                if out.count < target {
                    leaseCursor[priority] = max(cursor, top)
                } else if let lastExamined {
                    leaseCursor[priority] = lastExamined
                }
            }
        }
    }

    func release(_ tokens: [BufferToken]) {
        for t in tokens {
            switch t {
            case .message(let id):
                leasedMessages[id] = nil
                for (priority, cursor) in leaseCursor where cursor >= id { leaseCursor[priority] = id - 1 }
            case .gap(let id): leasedGaps.remove(id)
            }
        }
    }

    /// Deletes acknowledged rows in one transaction. On failure nothing is deleted and the
    /// tokens STAY leased: the caller retries the ack (releasing them would send them again).
    /// Under disk full, the disk reserve is given up once so the delete (and the checkpoint it
    /// may need) can proceed: deleting is what frees space, so it must never be the step that
    /// wedges.
    func ack(_ tokens: [BufferToken]) throws(BufferError) -> Int {
        try ensureOpen()
        guard !tokens.isEmpty else { return 0 }
        do throws(BufferError) {
            return try deleteAcknowledged(tokens)
        } catch {
            guard case .diskFull = error, reserve.release(logger: config.logger) else { throw error }
            return try deleteAcknowledged(tokens)
        }
    }

    /// An acknowledged row of a full segment is held (see `Accounting.held`) until its whole
    /// segment can be dropped; any other acknowledged row is deleted now, runs of consecutive
    /// row ids with one range `DELETE` each. Held rows leave the accounting at once: they are
    /// delivered, and never leased, exported, evicted or purged again.
    private func deleteAcknowledged(_ tokens: [BufferToken]) throws(BufferError) -> Int {
        // A delete needs no fsync of its own: the next commit of readings (synchronous=FULL)
        // syncs the WAL up to and including it. Lost in a power cut, it means a duplicate.
        try conn.exec("PRAGMA synchronous=NORMAL")
        fullSync = false
        defer { if (try? conn.exec("PRAGMA synchronous=FULL")) != nil { fullSync = true } }
        let saved = acct
        do throws(BufferError) {
            let deleted = try conn.transaction { () throws(BufferError) -> Int in
                var n = 0
                var rowIDs: [Int64] = []
                rowIDs.reserveCapacity(tokens.count)
                var touched: [Int64] = []
                for t in tokens {
                    switch t {
                    case .message(let rowID):
                        if let info = leasedMessages[rowID], acct.held[rowID] == nil,
                           let i = acct.segments.index(holding: rowID), !acct.segments[i].isLegacy, isFull(acct.segments[i]) {
                            acct.held[rowID] = info
                            acct.bytes -= info.size
                            acct.count -= 1
                            decrementPriority(info.priority)
                            touched.append(rowID)
                            n += 1
                        } else {
                            rowIDs.append(rowID)
                        }
                    case .gap(let gapID):
                        try conn.with("DELETE FROM gaps WHERE gap_id = ?1") { s throws(BufferError) in
                            try s.bind(1, gapID); try s.run()
                        }
                        if let h = conn.handle { n += Int(sqlite3_changes(h)) }
                    }
                }
                n += try deleteRuns(rowIDs)
                touched.append(contentsOf: rowIDs)
                try dropFinishedSegments(holding: touched)
                if acct.held.count > Self.heldLimit { try deleteHeld() }
                return n
            }
            for t in tokens {
                switch t {
                case .message(let id): leasedMessages[id] = nil
                case .gap(let id): leasedGaps.remove(id); sealedGaps.remove(id)
                }
            }
            reserve.restoreIfDue(logger: config.logger)
            return deleted
        } catch {
            acct = saved
            throw error
        }
    }

    /// Calls `body` with each run of consecutive row ids of `ids` within one segment (its
    /// first and last id), in row order: one range statement per run instead of one per row.
    /// Every id of a run is in `ids`, so a range holds no other row.
    private func forEachRun(_ ids: [Int64], _ body: (Segment, Int64, Int64) throws(BufferError) -> Void) throws(BufferError) {
        let rowIDs = ids.sorted()
        var i = 0
        while i < rowIDs.count {
            guard let s = acct.segments.index(holding: rowIDs[i]) else { i += 1; continue }
            let segment = acct.segments[s]
            var j = i
            while j + 1 < rowIDs.count, rowIDs[j + 1] <= rowIDs[j] + 1, rowIDs[j + 1] <= segment.last { j += 1 }
            try body(segment, rowIDs[i], rowIDs[j])
            i = j + 1
        }
    }

    /// Deletes message rows now (inside the caller's transaction), a range `DELETE` per run (a
    /// drain acknowledges rows leased in order), and takes them out of the accounting. Returns
    /// the number of rows deleted.
    private func deleteRuns(_ ids: [Int64]) throws(BufferError) -> Int {
        var n = 0
        try forEachRun(ids) { segment, low, high throws(BufferError) in
            try conn.with("DELETE FROM \(segment.table) WHERE row_id >= ?1 AND row_id <= ?2 RETURNING priority, size", table: segment.table) { st throws(BufferError) in
                try st.bind(1, low); try st.bind(2, high)
                while try st.step() {
                    acct.bytes -= st.int64(1)
                    acct.count -= 1
                    if segment.isLegacy { acct.legacyRows -= 1 }
                    decrementPriority(UInt8(truncatingIfNeeded: st.int64(0)))
                    n += 1
                }
            }
        }
        return n
    }

    /// Deletes the held rows row by row (inside the caller's transaction): when more than
    /// `heldLimit` wait (their segments still hold rows not acknowledged, e.g. refused ones),
    /// and at close, so a clean restart sends none of them again. (They are out of the
    /// accounting already.)
    private func deleteHeld() throws(BufferError) {
        let ids = Array(acct.held.keys)
        try forEachRun(ids) { segment, low, high throws(BufferError) in
            try conn.with("DELETE FROM \(segment.table) WHERE row_id >= ?1 AND row_id <= ?2", table: segment.table) { st throws(BufferError) in
                try st.bind(1, low); try st.bind(2, high); try st.run()
            }
        }
        acct.held = [:]
        try dropFinishedSegments(holding: ids)
    }

    /// Deletes the held rows before the buffer closes (best effort: if it fails they are
    /// delivered again after the restart, with the same ids).
    private func deleteHeldBeforeClose() {
        guard conn.isOpen, !acct.held.isEmpty else { return }
        let saved = acct
        do throws(BufferError) {
            try conn.transaction { () throws(BufferError) in try deleteHeld() }
        } catch {
            acct = saved
            config.logger?.warning("could not delete acknowledged messages at close; they are sent again after the restart (same ids)",
                                   metadata: ["path": "\(config.path)", "rows": "\(saved.held.count)", "error": "\(error)"])
        }
    }

    /// Readings and losses are committed only with `synchronous=FULL`.
    private func requireFullSync() throws(BufferError) {
        guard !fullSync else { return }
        try conn.exec("PRAGMA synchronous=FULL")
        fullSync = true
    }

    // MARK: queries

    var maxRowID: Int64 { acct.lastRowID }

    func loadSequences() throws(BufferError) -> [String: UInt64] {
        try ensureOpen()
        return try conn.with("SELECT device_id, last_sequence FROM device_state") { s throws(BufferError) -> [String: UInt64] in
            var out: [String: UInt64] = [:]
            while try s.step() {
                if let d = s.text(0) { out[d] = UInt64(bitPattern: s.int64(1)) }
            }
            return out
        }
    }

    var lostTotals: [String: UInt64] { acct.lostTotals }

    /// The per-device source cursors stored with the readings (see `OutgoingMessage.sourceCursor`).
    func loadCursors() throws(BufferError) -> [String: String] {
        try ensureOpen()
        return try conn.with("SELECT device_id, cursor FROM device_state WHERE cursor IS NOT NULL") { s throws(BufferError) -> [String: String] in
            var out: [String: String] = [:]
            while try s.step() {
                if let d = s.text(0), let c = s.text(1) { out[d] = c }
            }
            return out
        }
    }

    private func storeCursors(_ cursors: [String: String]) throws(BufferError) {
        for (device, cursor) in cursors {
            try conn.with("INSERT INTO device_state(device_id, cursor) VALUES(?1, ?2) ON CONFLICT(device_id) DO UPDATE SET cursor = excluded.cursor") { s throws(BufferError) in
                try s.bind(1, device); try s.bind(2, cursor); try s.run()
            }
        }
    }

    func stats() throws(BufferError) -> BufferStats {
        try ensureOpen()
        // The first stored row that is not acknowledged (held rows are delivered).
        var oldest: Int64?
        for segment in acct.segments where oldest == nil {
            oldest = try conn.with("SELECT row_id, created_at FROM \(segment.table) ORDER BY row_id", table: segment.table) { s throws(BufferError) -> Int64? in
                while try s.step() {
                    if acct.held[s.int64(0)] == nil { return s.int64(1) }
                }
                return nil
            }
        }
        let gapRows = try conn.scalarInt("SELECT count(*) FROM gaps") ?? 0
        return BufferStats(
            messageCount: acct.count, bytes: acct.bytes, maxBytes: config.maxBytes,
            oldestCreatedAt: oldest.map { Timestamp(millisecondsSinceEpoch: $0) },
            leasedCount: leasedMessages.count + leasedGaps.count,
            gapRowsPending: Int(gapRows),
            lostByDevice: acct.lostTotals,
            totalLost: acct.lostTotals.values.reduce(0, &+),
            databasePath: config.path,
            databaseFileBytes: fileSize(config.path) + fileSize(config.path + "-wal"),
            recoveredFromCorruption: recoveredFromCorruption)
    }

    private func fileSize(_ p: String) -> Int64 {
        var st = stat()
        return stat(p, &st) == 0 ? Int64(st.st_size) : 0
    }

    // MARK: support queries (control socket)

    /// Stored readings (not yet acknowledged, leased or not) per device.
    func pendingReadingCounts() throws(BufferError) -> [String: Int] {
        try ensureOpen()
        var out: [String: Int] = [:]
        for segment in acct.segments {
            try conn.once("SELECT device_id, count(*) FROM \(segment.table) WHERE kind = \(MessageKind.reading.rawValue) AND device_id IS NOT NULL GROUP BY device_id") { s throws(BufferError) in
                while try s.step() {
                    if let d = s.text(0) { out[d, default: 0] += Int(s.int64(1)) }
                }
            }
        }
        for info in acct.held.values where info.kind == .reading {
            if let d = info.deviceID, let n = out[d] { out[d] = n > 1 ? n - 1 : nil }
        }
        return out
    }

    /// Up to `limit` stored message rows with a row id above `after`, in row order, optionally
    /// only readings of `deviceIDs`. Nothing is leased or changed (for export).
    func pending(after: Int64, limit: Int, deviceIDs: Set<String>?) throws(BufferError) -> [StoredMessage] {
        try ensureOpen()
        guard limit > 0 else { return [] }
        var out: [StoredMessage] = []
        let filter = deviceIDs == nil ? "" : " AND kind = \(MessageKind.reading.rawValue) AND device_id IS NOT NULL"
        var i = acct.segments.firstIndex(reaching: after + 1)
        while out.count < limit, i < acct.segments.count {
        try conn.once("SELECT \(messageColumns) FROM \(acct.segments[i].table) WHERE row_id > ?1\(filter) ORDER BY row_id") { s throws(BufferError) in
            try s.bind(1, after)
            while out.count < limit, try s.step() {
                let device = s.text(5)
                if let deviceIDs, !deviceIDs.contains(device ?? "") { continue }
                let rowID = s.int64(0)
                if acct.held[rowID] != nil { continue }
                guard let message = readMessage(s) else {
                    // Export changes nothing: the row stays, and the next lease records it as lost.
                    config.logger?.error("a buffered message cannot be opened with the at-rest key (tampered or damaged); left out of the export",
                                         metadata: ["path": "\(config.path)", "row_id": "\(rowID)", "device_id": "\(device ?? "-")"])
                    continue
                }
                out.append(StoredMessage(token: .message(rowID), message: message, isBacklog: false))
            }
        }
        i += 1
        }
        return out
    }

    // MARK: sealed rows

    /// A message row (selected with `messageColumns`) as a message, its payload opened when
    /// sealed; nil when a sealed payload does not authenticate (or no key is loaded).
    private func readMessage(_ s: Statement) -> OutgoingMessage? {
        let idHigh = s.int64(1), idLow = s.int64(2)
        let topic = s.text(9) ?? ""
        let payload: [UInt8]
        if s.int64(12) == 1 {
            guard let sealer, let opened = s.withBlob(10, { sealer.open($0, idHigh: idHigh, idLow: idLow, topic: topic) }) else {
                return nil
            }
            payload = opened
        } else {
            payload = s.blob(10)
        }
        return OutgoingMessage(
            id: ReadingID(high: UInt64(bitPattern: idHigh), low: UInt64(bitPattern: idLow)),
            kind: MessageKind(rawValue: UInt8(truncatingIfNeeded: s.int64(3))),
            topic: topic, payload: payload, deviceID: s.text(5),
            sequence: s.optionalInt64(6).map { UInt64(bitPattern: $0) },
            priority: UInt8(truncatingIfNeeded: s.int64(4)),
            createdAt: Timestamp(millisecondsSinceEpoch: s.int64(7)))
    }

    /// A message row that could not be opened (see `discardUnreadable`).
    private struct UnreadableRow {
        var rowID: Int64
        var size: Int64
        var priority: UInt8
        var kind: MessageKind
        var deviceID: String?
        var sequence: UInt64?
    }

    private func unreadableRow(_ s: Statement) -> UnreadableRow {
        UnreadableRow(rowID: s.int64(0), size: s.int64(8), priority: UInt8(truncatingIfNeeded: s.int64(4)),
                      kind: MessageKind(rawValue: UInt8(truncatingIfNeeded: s.int64(3))),
                      deviceID: s.text(5), sequence: s.optionalInt64(6).map { UInt64(bitPattern: $0) })
    }

    /// Sealed rows whose payload did not authenticate with the right key (the key check
    /// passed at open): changed on disk, moved between rows, or damaged. Each is deleted and
    /// recorded as a loss (`LossReason.unreadableAtRest`, so a gap record announces it) in one
    /// transaction, and logged as an error; it is never published. A message without a device
    /// and sequence number (an alert, an audit event) cannot be a gap: it is logged and counted.
    /// If the transaction fails the rows stay skipped and are tried again after a restart.
    private func discardUnreadable() {
        let rows = unreadable.values.sorted { $0.rowID < $1.rowID }
        guard !rows.isEmpty else { return }
        let now = config.clock.now()
        for r in rows {
            config.logger?.error("a buffered message does not open with the at-rest key (changed on disk or damaged): not published, recorded as lost",
                                 metadata: ["path": "\(config.path)", "row_id": "\(r.rowID)", "kind": "\(r.kind.rawValue)",
                                            "device_id": "\(r.deviceID ?? "-")", "sequence": "\(r.sequence.map(String.init) ?? "-")",
                                            "reason": "\(LossReason.unreadableAtRest.rawValue)"])
        }
        let saved = acct
        do throws(BufferError) {
            try requireFullSync()
            try conn.transaction { () throws(BufferError) in
                var losses: [LostReading] = []
                for r in rows {
                    try deleteRow(r.rowID, size: r.size, priority: r.priority)
                    if let d = r.deviceID, let q = r.sequence {
                        losses.append(LostReading(deviceID: d, sequence: q, reason: .unreadableAtRest, at: now))
                    }
                }
                try dropFinishedSegments(holding: rows.map(\.rowID))
                try recordLossesInTransaction(losses)
            }
            unreadableTotal += rows.count
            unreadable = [:]
        } catch {
            acct = saved
            config.logger?.error("could not record unreadable buffered messages as lost; they stay unpublished",
                                 metadata: ["path": "\(config.path)", "rows": "\(rows.count)", "error": "\(error)"])
        }
    }

    /// Deletes every stored reading that is not in flight (optionally only of `deviceIDs`) and
    /// records each as lost with `reason`, in one transaction: gap records follow. Other
    /// messages (audit events, alerts) and gap records are kept.
    func purgeReadings(deviceIDs: Set<String>?, reason: LossReason) throws(BufferError) -> PurgeOutcome {
        try ensureOpen()
        try requireFullSync()
        let saved = acct
        let now = config.clock.now()
        do throws(BufferError) {
            return try conn.transaction { () throws(BufferError) -> PurgeOutcome in
                var victims: [(rowID: Int64, size: Int64, priority: UInt8, loss: LostReading?)] = []
                var inFlight = 0
                for segment in acct.segments {
                try conn.once("SELECT row_id, size, priority, device_id, sequence FROM \(segment.table) WHERE kind = \(MessageKind.reading.rawValue) ORDER BY row_id") { s throws(BufferError) in
                    while try s.step() {
                        let device = s.text(3)
                        if let deviceIDs, !deviceIDs.contains(device ?? "") { continue }
                        let rowID = s.int64(0)
                        if acct.held[rowID] != nil { continue }
                        if leasedMessages[rowID] != nil { inFlight += 1; continue }
                        let loss = device.flatMap { d in
                            s.optionalInt64(4).map { LostReading(deviceID: d, sequence: UInt64(bitPattern: $0), reason: reason, at: now) }
                        }
                        victims.append((rowID, s.int64(1), UInt8(truncatingIfNeeded: s.int64(2)), loss))
                    }
                }
                }
                for v in victims { try deleteRow(v.rowID, size: v.size, priority: v.priority) }
                try dropFinishedSegments(holding: victims.map(\.rowID))
                let losses = victims.compactMap(\.loss)
                try recordLossesInTransaction(losses)
                return PurgeOutcome(purged: victims.count, leftInFlight: inFlight, losses: losses)
            }
        } catch {
            acct = saved
            throw error
        }
    }

    /// Test hook: the message tables in the file (not the in-memory list), in row order.
    func messageTables() throws(BufferError) -> [String] {
        try Segment.list(conn).map(\.table)
    }

    /// Test hook: an integer PRAGMA of this connection.
    func pragmaInt(_ name: String) throws(BufferError) -> Int64? {
        try conn.scalarInt("PRAGMA \(name)")
    }

    func setQueryOnly(_ on: Bool) throws(BufferError) {
        try conn.exec("PRAGMA query_only = \(on ? 1 : 0)")
    }

    /// Test hook: caps the database at `pages` pages so writes fail with `SQLITE_FULL`.
    func setMaxPageCount(_ pages: Int) throws(BufferError) {
        _ = try conn.scalarInt("PRAGMA max_page_count = \(pages)")
    }
}

/// An exclusive `flock` on `<path>.lock`, held while the buffer is open, so a second agent
/// instance (or a second buffer in this process) cannot use the same database: leases and the
/// size accounting live in memory and would be wrong for both. The kernel drops the lock when
/// the process dies, so a `kill -9` never leaves it stale. The lock file is never deleted.
final class InstanceLock {
    private var fd: Int32

    init(databasePath: String) throws(BufferError) {
        let lockPath = databasePath + ".lock"
        fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 {
            let e = errno
            if e == EROFS || e == EACCES || e == EPERM {
                throw BufferError.readOnly(path: databasePath, detail: "cannot create lock file \(lockPath) (errno \(e))")
            }
            throw BufferError.cannotOpen(path: databasePath, systemErrno: e, detail: "cannot create lock file \(lockPath)")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            close(fd)
            fd = -1
            throw BufferError.busy(path: databasePath, detail: "\(lockPath) is locked (errno \(e)): another buffer has this database open")
        }
    }

    func release() {
        if fd >= 0 { close(fd) }   // closing the descriptor drops the flock
        fd = -1
    }

    deinit { release() }
}

/// FNV-1a (64-bit) over a message row's identity and content, stored with the row so salvage
/// from a damaged file keeps only rows whose bytes are exactly what was written.
///
/// For a sealed row it covers the stored bytes (`nonce || ciphertext || tag`) and the flag, so a
/// damaged `sealed` column is caught too; a plaintext row's checksum is the same as in schema v1.
func rowChecksum<P: Sequence>(idHigh: Int64, idLow: Int64, kind: Int64, device: String?, sequence: Int64?, createdAt: Int64,
                              topic: String, payload: P, sealed: Bool) -> Int64 where P.Element == UInt8 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    func mix<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    }
    func mix(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { mix($0) } }
    mix(idHigh); mix(idLow); mix(kind); mix(createdAt); mix(sequence ?? -1)
    mix(device.map { Array($0.utf8) } ?? [0xFF]); mix([0]); mix(topic.utf8); mix([0]); mix(payload)
    if sealed { mix([0x5E, 0xA1]) }
    return Int64(bitPattern: h)
}
