#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads a secret (e.g. the broker password) from a file that must be readable by its owner
/// only. The value never reaches a log line; errors name the path and the fix, never the content.
public enum SecretFile {
    /// The file's content without one trailing newline.
    public static func read(_ path: String, maxBytes: Int = 65536) throws(AgentError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw AgentError("cannot read secret file \(path): \(reason); check the path and that the agent's user owns it")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw AgentError("cannot stat secret file \(path): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw AgentError("secret file \(path) is not a regular file")
        }
        if st.st_mode & 0o077 != 0 {
            let mode = String(st.st_mode & 0o777, radix: 8)
            throw AgentError("secret file \(path) has loose permissions (\(mode)); it must be readable by the agent only: chmod 600 \(path)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw AgentError("cannot read secret file \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > maxBytes { throw AgentError("secret file \(path) is larger than \(maxBytes / 1024) KiB; it should hold one value") }
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Creates the state directory (mode 0700) if it is missing.
enum StateDirectory {
    static func prepare(_ path: String) throws(AgentError) {
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw AgentError("state_dir \(path) exists but is not a directory")
            }
            return
        }
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw AgentError("cannot create state_dir \(path) (at \(prefix)): \(String(cString: strerror(errno))); create it for the agent's user or set state_dir")
            }
        }
    }
}

/// A problem that stops the agent from starting, with the fix in the message.
public struct AgentError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
