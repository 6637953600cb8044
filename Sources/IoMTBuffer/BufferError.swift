/// Why the durable buffer could not do what was asked.
///
/// Every case names the file it is about and `description` says what to do about it, so the
/// message can go straight into a log line or the agent's status output.
public enum BufferError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file system holding the database is full (`SQLITE_FULL`, or an I/O error with `ENOSPC`/`EDQUOT`).
    /// Nothing was written; the next call simply retries.
    case diskFull(path: String, detail: String)
    /// The database or its directory cannot be written (`SQLITE_READONLY`, `EROFS`, a read-only mount).
    case readOnly(path: String, detail: String)
    /// The operating system reported an I/O error while reading or writing the database.
    case ioError(path: String, code: Int32, systemErrno: Int32, detail: String)
    /// The database file is damaged (`SQLITE_CORRUPT`, `SQLITE_NOTADB`, a failing `quick_check`)
    /// and was found so while running (at open the file is moved aside instead).
    case corrupt(path: String, detail: String)
    /// The database file could not be opened or created (missing directory, permissions, it is a directory).
    case cannotOpen(path: String, systemErrno: Int32, detail: String)
    /// Another process holds the database locked for longer than the busy timeout.
    case busy(path: String, detail: String)
    /// The database was written by a newer agent with a schema this version does not know.
    case schemaTooNew(path: String, found: Int32, supported: Int32)
    /// A corrupt database could not be renamed out of the way (it is never deleted instead).
    case cannotMoveAside(path: String, destination: String, systemErrno: Int32)
    /// The dedicated SQLite thread could not be started.
    case cannotStartThread(path: String, systemErrno: Int32)
    /// The buffer was closed with `close()`; open a new one.
    case closed(path: String)
    /// A configuration value is unusable (for example a non-positive `maxBytes`).
    case invalidConfiguration(path: String, detail: String)
    /// Any other SQLite failure, with its (extended) result code and message.
    case sqlite(path: String, code: Int32, detail: String)
    /// The database holds sealed readings (or a key check) but no at-rest key was given.
    /// Nothing was opened for writing, deleted or moved.
    case keyRequired(path: String)
    /// The at-rest key given does not open the database's key check (or its sealed rows): it
    /// was sealed with another key. Nothing was deleted or moved; this is not corruption.
    case wrongKey(path: String, detail: String)

    /// The database path this error is about.
    public var path: String {
        switch self {
        case .diskFull(let p, _), .readOnly(let p, _), .ioError(let p, _, _, _), .corrupt(let p, _),
             .cannotOpen(let p, _, _), .busy(let p, _), .schemaTooNew(let p, _, _),
             .cannotMoveAside(let p, _, _), .cannotStartThread(let p, _), .closed(let p),
             .invalidConfiguration(let p, _), .sqlite(let p, _, _), .keyRequired(let p), .wrongKey(let p, _):
            return p
        }
    }

    /// True for the cases that mean the file itself is damaged.
    public var isCorruption: Bool {
        if case .corrupt = self { return true }
        return false
    }

    /// What went wrong, on which file, and what to do about it.
    public var description: String {
        switch self {
        case .diskFull(let p, let d):
            return "disk full at \(p): free space on that file system or lower buffer.max_bytes (\(d))"
        case .readOnly(let p, let d):
            return "buffer database \(p) is read-only: make the file, its directory and the file system writable for the agent user (\(d))"
        case .ioError(let p, let c, let e, let d):
            return "I/O error on buffer database \(p) (SQLite code \(c), errno \(e)): check the storage device and the kernel log (\(d))"
        case .corrupt(let p, let d):
            return "buffer database \(p) is corrupt: restart the agent to move it aside and start a fresh buffer, then inspect the moved file (\(d))"
        case .cannotOpen(let p, let e, let d):
            return "cannot open buffer database \(p) (errno \(e)): make sure its directory exists and is writable by the agent user, or change state_dir (\(d))"
        case .busy(let p, let d):
            return "buffer database \(p) is locked by another process: stop the other agent instance using that file (\(d))"
        case .schemaTooNew(let p, let f, let s):
            return "buffer database \(p) has schema version \(f), this agent understands up to \(s): upgrade the agent, or point state_dir at a new directory (the old file still holds unsent readings)"
        case .cannotMoveAside(let p, let dst, let e):
            return "buffer database \(p) is corrupt and could not be renamed to \(dst) (errno \(e)): make its directory writable, or move the file away by hand"
        case .cannotStartThread(let p, let e):
            return "cannot start the storage thread for buffer database \(p) (errno \(e)): raise the process/thread limit"
        case .closed(let p):
            return "buffer database \(p) was closed: open a new buffer"
        case .invalidConfiguration(let p, let d):
            return "invalid buffer configuration for \(p): \(d)"
        case .sqlite(let p, let c, let d):
            return "SQLite error \(c) on buffer database \(p): \(d)"
        case .keyRequired(let p):
            return "the buffer at \(p) is encrypted; give the key in security.key_file or the systemd credential state-key (nothing was deleted; the file keeps its unsent readings)"
        case .wrongKey(let p, let d):
            return "the buffer at \(p) is encrypted with another key (wrong key: \(d)); give the key it was written with in security.key_file or the systemd credential state-key (nothing was deleted; do not remove the file unless its unsent readings are to be given up)"
        }
    }
}
