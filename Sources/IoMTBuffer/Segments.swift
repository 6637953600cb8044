import CSQLite

/// Message rows live in segment tables of `Segment.rows` consecutive row ids each
/// (`messages_<n>` holds row ids `n * rows + 1 ... (n + 1) * rows`), schema version 3.
///
/// Why: SQLite deletes a row by rebalancing its B-tree leaf with its neighbours, so deleting
/// acknowledged rows from the front of one big table rewrote about 660 bytes of live
/// neighbouring rows per deleted row into the WAL and again into the file at the checkpoint
/// (measured: 4.3 µs per row with the checkpoints, BENCHMARKS.md "Session 5"). Dropping a
/// table whose rows are all acknowledged frees its pages without rewriting any (0.35 µs per
/// row). The buffer therefore deletes an acknowledged row of a full segment only when its
/// whole segment can go (see `BufferStore.ack`).
///
/// A file of schema version 2 keeps its single `messages` table as the *legacy* segment
/// (rows below every new row id), drained and deleted row by row as before, and dropped once
/// empty; new rows go to segment tables.
struct Segment: Equatable {
    /// Row ids per segment table (~1.7 MB of 820-byte readings). Not smaller: `PRAGMA
    /// quick_check` at open needs ~6 KB per table (a 1M backlog in 512-row segments raised the
    /// agent's peak RSS from 22.7 to 29.9 MB; 2048 rows: 489 tables), and each CREATE or DROP
    /// makes SQLite re-prepare the cached statements. Not larger: acknowledged rows wait for
    /// their whole segment (`BufferStore.heldLimit`), and are sent again after a crash.
    static let rows: Int64 = 2048

    var table: String
    /// Lowest and highest row id this segment can hold.
    var first: Int64
    var last: Int64
    var isLegacy: Bool { table == Segment.legacyTable }

    static let legacyTable = "messages"

    static func number(of rowID: Int64) -> Int64 { (rowID - 1) / rows }

    static func table(_ number: Int64) -> String { "messages_\(number)" }

    /// The segment holding `rowID`, its range starting no lower than `floor`.
    static func forRow(_ rowID: Int64, floor: Int64) -> Segment {
        let n = number(of: rowID)
        return Segment(table: table(n), first: max(n * rows + 1, floor), last: (n + 1) * rows)
    }

    /// Same columns as the v2 `messages` table (so `messageColumns` reads either), without
    /// AUTOINCREMENT (the buffer assigns row ids) and without an index: a lease scans a
    /// segment by row id.
    static func createSQL(_ table: String) -> String {
        """
        CREATE TABLE \(table) (
            row_id     INTEGER PRIMARY KEY,
            id_high    INTEGER NOT NULL,
            id_low     INTEGER NOT NULL,
            kind       INTEGER NOT NULL,
            priority   INTEGER NOT NULL,
            device_id  TEXT,
            sequence   INTEGER,
            created_at INTEGER NOT NULL,
            size       INTEGER NOT NULL,
            topic      TEXT NOT NULL,
            payload    BLOB NOT NULL,
            checksum   INTEGER NOT NULL,
            sealed     INTEGER NOT NULL DEFAULT 0
        )
        """
    }

    /// The message tables of a database in row order: the legacy table first (if any), then
    /// the segments by number. `last` of the legacy table is its highest row id ever assigned.
    static func list(_ conn: SQLiteConnection) throws(BufferError) -> [Segment] {
        var out: [Segment] = []
        var floor: Int64 = 1
        for (number, name) in try tables(conn) {
            if let n = number {
                let s = Segment(table: name, first: max(n * rows + 1, floor), last: (n + 1) * rows)
                if s.last >= s.first { out.append(s) }
            } else {
                let maxRow = try conn.scalarInt("SELECT coalesce(max(row_id), 0) FROM messages") ?? 0
                let seq = (try? conn.scalarInt("SELECT seq FROM sqlite_sequence WHERE name = 'messages'")) ?? nil ?? 0
                let legacy = Segment(table: name, first: 1, last: max(maxRow, seq))
                out.append(legacy)
                floor = legacy.last + 1
            }
        }
        return out
    }

    /// The names of the message tables in row order (the legacy table, number nil, first),
    /// read from the schema only: salvage uses it on a damaged file.
    static func tables(_ conn: SQLiteConnection) throws(BufferError) -> [(number: Int64?, name: String)] {
        var names: [String] = []
        try conn.with("SELECT name FROM sqlite_schema WHERE type = 'table' AND (name = 'messages' OR name GLOB 'messages_[0-9]*')") { s throws(BufferError) in
            while try s.step() { if let n = s.text(0) { names.append(n) } }
        }
        var out: [(number: Int64?, name: String)] = names.contains(legacyTable) ? [(nil, legacyTable)] : []
        var numbered: [(Int64, String)] = []
        for name in names where name != legacyTable {
            if let n = Int64(name.dropFirst("messages_".count)), n >= 0, n < Int64.max / rows - 1 { numbered.append((n, name)) }
        }
        for (n, name) in numbered.sorted(by: { $0.0 < $1.0 }) { out.append((n, name)) }
        return out
    }
}

extension Array where Element == Segment {
    /// Index of the segment that can hold `rowID` (binary search; segments are disjoint and sorted).
    func index(holding rowID: Int64) -> Int? {
        var lo = 0, hi = count - 1
        while lo <= hi {
            let mid = (lo + hi) / 2
            if rowID < self[mid].first { hi = mid - 1 } else if rowID > self[mid].last { lo = mid + 1 } else { return mid }
        }
        return nil
    }

    /// Index of the first segment that can hold a row id of at least `low` (`count` if none):
    /// callers walk on from there in row order.
    func firstIndex(reaching low: Int64) -> Int {
        var lo = 0, hi = count
        while lo < hi { let mid = (lo + hi) / 2; if self[mid].last < low { lo = mid + 1 } else { hi = mid } }
        return lo
    }
}
