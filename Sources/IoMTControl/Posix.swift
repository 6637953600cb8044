#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A `sockaddr_un` for `path`, or nil when the path does not fit `sun_path` (108 bytes on Linux).
func unixAddress(_ path: String) -> sockaddr_un? {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: addr.sun_path)
    guard !bytes.isEmpty, bytes.count < capacity else { return nil }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
    }
    return addr
}

func withSockaddr<T>(_ addr: sockaddr_un, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    var a = addr
    return withUnsafePointer(to: &a) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// The peer of a connected Unix socket, from `SO_PEERCRED`.
public struct PeerCredentials: Hashable, Sendable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    static func of(_ fd: Int32) -> PeerCredentials? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (socket(7)): three 32-bit fields.
        var cred = [UInt32](repeating: 0, count: 3)
        var len = socklen_t(12)
        let rc = cred.withUnsafeMutableBytes { getsockopt(fd, SOL_SOCKET, SO_PEERCRED, $0.baseAddress, &len) }
        guard rc == 0, len == 12 else { return nil }
        return PeerCredentials(pid: Int32(bitPattern: cred[0]), uid: cred[1], gid: cred[2])
    }

    /// The supplementary groups of the peer process, from the `Groups:` line of
    /// `/proc/<pid>/status` (empty if the process is gone or the line unreadable).
    public var supplementaryGroups: [UInt32] {
        let path = "/proc/\(pid)/status"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while data.count < 65536 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            data.append(contentsOf: chunk[0..<n])
        }
        return PeerCredentials.groups(fromProcStatus: String(decoding: data, as: UTF8.self))
    }

    /// Parses the `Groups:` line of a `/proc/<pid>/status` text.
    public static func groups(fromProcStatus text: String) -> [UInt32] {
        for line in text.split(separator: "\n") where line.hasPrefix("Groups:") {
            return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
        }
        return []
    }
}

/// The gid of a group name (`getgrnam_r`), nil if there is no such group.
public func groupID(named name: String) -> UInt32? {
    var grp = group()
    var result: UnsafeMutablePointer<group>?
    var buffer = [CChar](repeating: 0, count: 16384)
    let rc = getgrnam_r(name, &grp, &buffer, buffer.count, &result)
    guard rc == 0, result != nil else { return nil }
    return grp.gr_gid
}
