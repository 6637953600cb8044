import CSQLite
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// SQLite's "copy the bytes now" destructor sentinel.
private var sqliteTransient: sqlite3_destructor_type {
    unsafeBitCast(-1 as Int, to: sqlite3_destructor_type.self)
}

/// Maps an SQLite result code (plus the OS errno SQLite saw) to a `BufferError` naming `path`.
func mapSQLiteError(_ rc: Int32, db: OpaquePointer?, path: String, during operation: String) -> BufferError {
    let extended = db.map { sqlite3_extended_errcode($0) } ?? rc
    let sysErrno = db.map { sqlite3_system_errno($0) } ?? 0
    let message: String
    if let db, let m = sqlite3_errmsg(db) {
        message = String(cString: m)
    } else if let m = sqlite3_errstr(rc) {
        message = String(cString: m)
    } else {
        message = "unknown error"
    }
    let detail = "\(operation): \(message) [code \(extended)\(sysErrno != 0 ? ", errno \(sysErrno)" : "")]"
    switch rc & 0xFF {
    case SQLITE_FULL:
        return .diskFull(path: path, detail: detail)
    case SQLITE_IOERR:
        if sysErrno == ENOSPC || sysErrno == EDQUOT { return .diskFull(path: path, detail: detail) }
        if sysErrno == EROFS { return .readOnly(path: path, detail: detail) }
        return .ioError(path: path, code: extended, systemErrno: sysErrno, detail: detail)
    case SQLITE_READONLY:
        return .readOnly(path: path, detail: detail)
    case SQLITE_CORRUPT, SQLITE_NOTADB:
        return .corrupt(path: path, detail: detail)
    case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_AUTH:
        if sysErrno == EROFS { return .readOnly(path: path, detail: detail) }
        return .cannotOpen(path: path, systemErrno: sysErrno, detail: detail)
    case SQLITE_BUSY, SQLITE_LOCKED:
        return .busy(path: path, detail: detail)
    default:
        return .sqlite(path: path, code: extended, detail: detail)
    }
}

/// One SQLite connection with a cache of prepared statements. Not thread-safe: it is owned by
/// the buffer and only used from the buffer's dedicated thread.
final class SQLiteConnection {
    let path: String
    private(set) var handle: OpaquePointer?
    private var statements: [String: Statement] = [:]
    /// Cached statements by the segment table they name (see `with(_:table:_:)`).
    private var statementsByTable: [String: [String]] = [:]

    init(path: String, flags: Int32) throws(BufferError) {
        self.path = path
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        if rc != SQLITE_OK {
            let error = mapSQLiteError(rc, db: db, path: path, during: "open")
            sqlite3_close_v2(db)
            throw error
        }
        sqlite3_extended_result_codes(db, 1)
        handle = db
    }

    deinit { close() }

    var isOpen: Bool { handle != nil }

    func close() {
        for (_, s) in statements { sqlite3_finalize(s.raw) }
        statements.removeAll()
        statementsByTable.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    func error(_ rc: Int32, _ operation: String) -> BufferError {
        mapSQLiteError(rc, db: handle, path: path, during: operation)
    }

    private func db() throws(BufferError) -> OpaquePointer {
        guard let handle else { throw BufferError.closed(path: path) }
        return handle
    }

    /// Runs one or more statements without results.
    func exec(_ sql: String) throws(BufferError) {
        let db = try db()
        let rc = sqlite3_exec(db, sql, nil, nil, nil)
        if rc != SQLITE_OK { throw error(rc, sql) }
    }

    /// A cached prepared statement; callers must go through `with(_:_:)` so it is reset after use.
    private func prepare(_ sql: String, table: String? = nil) throws(BufferError) -> Statement {
        if let s = statements[sql] { return s }
        let db = try db()
        var raw: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil)
        guard rc == SQLITE_OK, let raw else {
            sqlite3_finalize(raw)
            throw error(rc, "prepare \(sql)")
        }
        let s = Statement(raw: raw, connection: self, sql: sql)
        statements[sql] = s
        if let table { statementsByTable[table, default: []].append(sql) }
        return s
    }

    /// Finalizes the cached statements prepared for `table` (`with(_:table:_:)`) after the
    /// table was dropped: the cache would otherwise keep one set per segment ever used.
    func forgetStatements(for table: String) {
        for sql in statementsByTable.removeValue(forKey: table) ?? [] {
            if let s = statements.removeValue(forKey: sql) { sqlite3_finalize(s.raw) }
        }
    }

    /// Finalizes the cached statement for `sql`, if any.
    func forget(_ sql: String) {
        if let s = statements.removeValue(forKey: sql) { sqlite3_finalize(s.raw) }
    }

    /// Prepares (or reuses) `sql`, hands it to `body`, and resets it afterwards.
    /// `table`: the segment table `sql` names, so `forgetStatements(for:)` finds it.
    func with<T>(_ sql: String, table: String? = nil, _ body: (Statement) throws(BufferError) -> T) throws(BufferError) -> T {
        let s = try prepare(sql, table: table)
        defer { s.reset() }
        return try body(s)
    }

    /// Prepares `sql` for this one use and finalizes it afterwards, bypassing the cache: for
    /// statements run once per segment table over all of them (open, support queries), which
    /// would otherwise keep one prepared statement per segment in memory.
    func once<T>(_ sql: String, _ body: (Statement) throws(BufferError) -> T) throws(BufferError) -> T {
        let db = try db()
        var raw: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, 0, &raw, nil)
        guard rc == SQLITE_OK, let raw else {
            sqlite3_finalize(raw)
            throw error(rc, "prepare \(sql)")
        }
        defer { sqlite3_finalize(raw) }
        return try body(Statement(raw: raw, connection: self, sql: sql))
    }

    /// The first column of the first row of `sql`, as text (nil if no row or NULL).
    func scalarText(_ sql: String) throws(BufferError) -> String? {
        try with(sql) { s throws(BufferError) in try s.step() ? s.text(0) : nil }
    }

    /// The first column of the first row of `sql`, as an integer (nil if no row).
    func scalarInt(_ sql: String) throws(BufferError) -> Int64? {
        try with(sql) { s throws(BufferError) in try s.step() ? s.int64(0) : nil }
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`; any error rolls back and is rethrown.
    func transaction<T>(_ body: () throws(BufferError) -> T) throws(BufferError) -> T {
        try exec("BEGIN IMMEDIATE")
        do throws(BufferError) {
            let result = try body()
            try exec("COMMIT")
            return result
        } catch {
            rollbackIfActive()
            throw error
        }
    }

    func rollbackIfActive() {
        guard let handle, sqlite3_get_autocommit(handle) == 0 else { return }
        _ = sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
    }

    var lastInsertRowID: Int64 {
        handle.map { sqlite3_last_insert_rowid($0) } ?? 0
    }
}

/// A prepared statement. Column and parameter indices follow SQLite (columns from 0, parameters from 1).
final class Statement {
    let raw: OpaquePointer
    unowned let connection: SQLiteConnection
    let sql: String

    init(raw: OpaquePointer, connection: SQLiteConnection, sql: String) {
        self.raw = raw
        self.connection = connection
        self.sql = sql
    }

    func reset() {
        sqlite3_reset(raw)
        sqlite3_clear_bindings(raw)
    }

    private func check(_ rc: Int32) throws(BufferError) {
        if rc != SQLITE_OK { throw connection.error(rc, "bind \(sql)") }
    }

    func bind(_ index: Int32, _ value: Int64) throws(BufferError) {
        try check(sqlite3_bind_int64(raw, index, value))
    }

    func bind(_ index: Int32, _ value: Int64?) throws(BufferError) {
        if let value { try bind(index, value) } else { try check(sqlite3_bind_null(raw, index)) }
    }

    func bind(_ index: Int32, _ value: String?) throws(BufferError) {
        guard let value else { try check(sqlite3_bind_null(raw, index)); return }
        try check(sqlite3_bind_text(raw, index, value, -1, sqliteTransient))
    }

    func bind(_ index: Int32, _ value: [UInt8]) throws(BufferError) {
        try bind(index, bytes: value)
    }

    /// Binds any contiguous bytes as a blob (SQLite copies them).
    func bind<C: Collection>(_ index: Int32, bytes value: C) throws(BufferError) where C.Element == UInt8 {
        if value.isEmpty {
            try check(sqlite3_bind_zeroblob(raw, index, 0))
            return
        }
        let rc = value.withContiguousStorageIfAvailable { buf in
            sqlite3_bind_blob(raw, index, buf.baseAddress, Int32(buf.count), sqliteTransient)
        } ?? Array(value).withUnsafeBytes { buf in
            sqlite3_bind_blob(raw, index, buf.baseAddress, Int32(buf.count), sqliteTransient)
        }
        try check(rc)
    }

    /// Steps once: true if a row is available, false when done.
    func step() throws(BufferError) -> Bool {
        let rc = sqlite3_step(raw)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        throw connection.error(rc, sql)
    }

    /// Steps until done (for statements without result rows).
    func run() throws(BufferError) {
        while try step() {}
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(raw, column) == SQLITE_NULL }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(raw, column) }

    func optionalInt64(_ column: Int32) -> Int64? { isNull(column) ? nil : int64(column) }

    func text(_ column: Int32) -> String? {
        guard let p = sqlite3_column_text(raw, column) else { return nil }
        return String(cString: p)
    }

    /// Calls `body` with the column's bytes in place (valid only inside `body`).
    func withBlob<T>(_ column: Int32, _ body: (UnsafeRawBufferPointer) -> T) -> T {
        let count = Int(sqlite3_column_bytes(raw, column))
        guard count > 0, let p = sqlite3_column_blob(raw, column) else { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return body(UnsafeRawBufferPointer(start: p, count: count))
    }

    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(raw, column))
        guard count > 0, let p = sqlite3_column_blob(raw, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: count))
    }
}
