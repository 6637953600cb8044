import IoMTRegistry
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum ControlClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Nothing listens on the socket (absent, or left by a crashed agent).
    case noAgent(path: String)
    case permissionDenied(path: String)
    case system(path: String, call: String, errno: Int32)
    /// The agent answered with an error.
    case remote(ControlError)
    /// The agent closed the connection before the final response.
    case disconnected(path: String)
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .noAgent(let p):
            "no agent is running at \(p): start it with `systemctl start iomt-agent` or `iomt-agent run`"
        case .permissionDenied(let p):
            "permission denied on \(p): run as root, as the agent's user, or as a member of its group (default iomt)"
        case let .system(p, call, e): "\(p): \(call): \(String(cString: strerror(e))) (errno \(e))"
        case .remote(let e): e.message
        case .disconnected(let p): "the agent at \(p) closed the connection before answering"
        case .protocolViolation(let m): m
        }
    }
}

/// A connection to the daemon's control socket, for the CLI: blocking calls, one at a time.
public final class ControlClient {
    public let path: String
    private let fd: Int32
    private var framer = LineFramer(maxLength: ControlProtocol.maxResponseLineBytes)
    private var pending: [LineFramer.Item] = []
    private var nextID: Int64 = 1

    /// Connects. `receiveTimeout` bounds each blocking read (for tests); nil waits as long as
    /// the agent takes (a `pair` can take a minute).
    public init(path: String, receiveTimeout: Duration? = nil) throws(ControlClientError) {
        self.path = path
        guard let addr = unixAddress(path) else { throw .system(path: path, call: "socket path", errno: ENAMETOOLONG) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(path: path, call: "socket", errno: errno) }
        if withSockaddr(addr, { connect(fd, $0, $1) }) != 0 {
            let e = errno
            close(fd)
            switch e {
            case ENOENT, ECONNREFUSED, ENOTDIR: throw .noAgent(path: path)
            case EACCES, EPERM: throw .permissionDenied(path: path)
            default: throw .system(path: path, call: "connect", errno: e)
            }
        }
        if let t = receiveTimeout {
            let (s, atto) = t.components
            var tv = timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// True when a daemon accepts connections on `path`.
    public static func agentIsListening(at path: String) -> Bool {
        (try? ControlClient(path: path)) != nil
    }

    /// Sends one request and reads until its final response: events go to `onEvent`, prompts
    /// to `onPrompt` (its answer is sent back as `input`). Returns the `result`.
    public func call(_ cmd: String, args: JSONValue = .object([]),
                     onEvent: (JSONValue) -> Void = { _ in },
                     onPrompt: (ServerMessage.Prompt) throws -> JSONValue = { _ in .null }) throws -> JSONValue {
        let id = nextID
        nextID += 1
        do {
            try sendLine(ClientMessage.request(id: id, cmd: cmd, args: args).line)
        } catch {
            // The agent may have refused us at once (not permitted, too many clients) and closed:
            // its error line is still readable.
            if case .disconnected = error, let refusal = pendingRefusal() { throw ControlClientError.remote(refusal) }
            throw error
        }
        while true {
            let message = try ServerMessage.decodeOrThrow(try readLine())
            if message.id != id, message.id != nil { continue } // another request's line
            switch message {
            case .result(_, let r): return r
            case .failure(_, let e): throw ControlClientError.remote(e)
            case .event(_, let e): onEvent(e)
            case .prompt(_, let p):
                let answer = try onPrompt(p)
                try sendLine(ClientMessage.input(id: id, value: answer).line)
            }
        }
    }

    private func pendingRefusal() -> ControlError? {
        guard let line = try? readLine(), let message = try? ServerMessage.decode(line),
              case .failure(_, let e) = message else { return nil }
        return e
    }

    /// Writes raw bytes (tests use it to send malformed lines).
    public func sendLine(_ bytes: [UInt8]) throws(ControlClientError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE || errno == ECONNRESET { throw .disconnected(path: path) }
                throw .system(path: path, call: "send", errno: errno)
            }
            offset += n
        }
    }

    /// Reads the next line from the agent (blocking).
    public func readLine() throws(ControlClientError) -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if !pending.isEmpty {
                switch pending.removeFirst() {
                case .line(let l): return l
                case .tooLong(let n): throw .protocolViolation("the agent sent a line of \(n) bytes, longer than \(ControlProtocol.maxResponseLineBytes)")
                }
            }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw .system(path: path, call: "read (timed out)", errno: errno) }
                if errno == ECONNRESET { throw .disconnected(path: path) }
                throw .system(path: path, call: "read", errno: errno)
            }
            if n == 0 { throw .disconnected(path: path) }
            pending += framer.feed(chunk[0..<n])
        }
    }
}

extension ServerMessage {
    static func decodeOrThrow(_ line: [UInt8]) throws(ControlClientError) -> ServerMessage {
        do { return try decode(line) } catch { throw .protocolViolation(error.message) }
    }
}
