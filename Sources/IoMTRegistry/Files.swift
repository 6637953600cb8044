#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file-system failure, naming the path and the system call.
public struct FileError: Error, Hashable, Sendable, CustomStringConvertible {
    public var path: String
    public var operation: String
    public var errno: Int32
    public init(path: String, operation: String, errno: Int32) {
        self.path = path
        self.operation = operation
        self.errno = errno
    }
    public var description: String { "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// Small POSIX file helpers for the registry and the audit log.
public enum Files {
    /// The directory part of `path` ("." when there is none).
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// The whole file, or nil if it does not exist.
    public static func read(_ path: String) throws(FileError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw FileError(path: path, operation: "open", errno: errno)
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Writes all of `bytes` to `fd` (retrying short writes and EINTR).
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(FileError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, operation: "write", errno: errno)
            }
            offset += n
        }
    }

    /// Replaces `path` atomically: writes `<path>.tmp` (mode `mode`), fsyncs it, renames it over
    /// `path` and fsyncs the directory, so after a crash the file is either the old or the new
    /// content, never a mix. A torn `.tmp` left by a crash is simply overwritten next time.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600) throws(FileError) {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError(path: tmp, operation: "open", errno: errno) }
        do throws(FileError) {
            _ = fchmod(fd, mode)
            try writeAll(fd, bytes, path: tmp)
            if fsync(fd) != 0 { throw FileError(path: tmp, operation: "fsync", errno: errno) }
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        close(fd)
        if rename(tmp, path) != 0 {
            let e = errno
            unlink(tmp)
            throw FileError(path: path, operation: "rename", errno: e)
        }
        try syncDirectory(of: path)
    }

    /// fsync of the directory holding `path`, so a create or rename in it is durable.
    public static func syncDirectory(of path: String) throws(FileError) {
        let dir = directory(of: path)
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw FileError(path: dir, operation: "open", errno: errno) }
        defer { close(dfd) }
        if fsync(dfd) != 0 { throw FileError(path: dir, operation: "fsync", errno: errno) }
    }

    /// Creates `path` (and missing parents) with mode 0700 when absent.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws(FileError) {
        if exists(path) { return }
        let parent = directory(of: path)
        if parent != path, parent != ".", parent != "/" { try makeDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw FileError(path: path, operation: "mkdir", errno: errno) }
    }

    /// Renames `path` to `<path>.corrupt-<stamp>` (adding `-n` if taken); never deletes.
    public static func moveAside(_ path: String, stamp: String) throws(FileError) -> String {
        var destination = "\(path).corrupt-\(stamp)"
        var n = 1
        while exists(destination) {
            destination = "\(path).corrupt-\(stamp)-\(n)"
            n += 1
        }
        if rename(path, destination) != 0 { throw FileError(path: path, operation: "rename to \(destination)", errno: errno) }
        try? syncDirectory(of: path)
        return destination
    }

    /// Runs `body` holding an exclusive `flock` on `lockPath` (created 0600 if absent), so the
    /// daemon and a CLI working alone never interleave a read-modify-write.
    public static func withLock<T, E: Error>(_ lockPath: String, _ body: () throws(E) -> T) throws -> T {
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: lockPath, operation: "open", errno: errno) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { throw FileError(path: lockPath, operation: "flock", errno: errno) }
        }
        return try body()
    }
}

/// The user a uid belongs to (`getpwuid_r`), nil if unknown.
public func userName(uid: uid_t) -> String? {
    var pwd = passwd()
    var result: UnsafeMutablePointer<passwd>?
    var buffer = [CChar](repeating: 0, count: 4096)
    let rc = getpwuid_r(uid, &pwd, &buffer, buffer.count, &result)
    guard rc == 0, result != nil, let name = pwd.pw_name else { return nil }
    return String(cString: name)
}
