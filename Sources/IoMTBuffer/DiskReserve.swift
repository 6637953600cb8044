import IoMTCore
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A file of pre-allocated space next to the database (`buffer.db.reserve`), given up when
/// the file system is full so that deleting acknowledged rows, and the WAL checkpoint that
/// grows the database file, can still proceed.
///
/// Without it a full disk wedges the buffer: SQLite cannot checkpoint (the database file must
/// grow by the pages written meanwhile), so the WAL cannot be reset, so a DELETE, which needs
/// WAL frames, fails with SQLITE_FULL, and nothing ever frees space again. Re-created (at most
/// every 5 s) after a successful delete once space allows. Used only on the storage thread.
final class DiskReserve {
    /// Twice the WAL size at which SQLite checkpoints (`wal_autocheckpoint=256` pages).
    static let size: Int64 = 4 * 1024 * 1024
    let path: String
    private(set) var present = false
    private var lastAttempt: Int64 = .min
    private var warnedNoRoom = false

    init(path: String) {
        self.path = path
    }

    /// Frees the reserve. Returns false when there was none to give.
    func release(logger: Logger?) -> Bool {
        guard present || access(path, F_OK) == 0 else { return false }
        unlink(path)
        present = false
        lastAttempt = monotonicMilliseconds()
        logger?.warning("disk full: released the buffer's disk reserve so acknowledged readings can be deleted",
                        metadata: ["reserve": "\(path)", "bytes": "\(DiskReserve.size)"])
        return true
    }

    /// Re-creates the reserve if it is missing and the last attempt is over 5 s old.
    func restoreIfDue(logger: Logger?) {
        guard !present else { return }
        let now = monotonicMilliseconds()
        guard lastAttempt == .min || now - lastAttempt >= 5000 else { return }
        lastAttempt = now
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let rc = posix_fallocate(fd, 0, off_t(DiskReserve.size))
        if rc == 0 {
            present = true
            if warnedNoRoom {
                warnedNoRoom = false
                logger?.notice("the buffer's disk reserve is back", metadata: ["reserve": "\(path)"])
            }
        } else {
            ftruncate(fd, 0)
            unlink(path)
            guard !warnedNoRoom else { return }
            warnedNoRoom = true
            logger?.warning("no room for the buffer's disk reserve; a full disk may delay deletes",
                            metadata: ["reserve": "\(path)", "error": "\(String(cString: strerror(rc)))"])
        }
    }
}
