import IoMTCore
import IoMTRegistry

/// The control protocol between `iomt-agent` commands and the daemon (docs/control-protocol.md):
/// JSON lines over a Unix stream socket.
///
/// Client → daemon: `{"v":1,"id":N,"cmd":"status","args":{...}}` and, to answer a prompt,
/// `{"v":1,"id":N,"input":...}`. Daemon → client: zero or more `{"v":1,"id":N,"event":...}` and
/// `{"v":1,"id":N,"prompt":{"kind":"passkey"|"confirm","text":...}}`, then exactly one final
/// `{"v":1,"id":N,"ok":true,"result":...}` or `{"v":1,"id":N,"ok":false,"error":{"code":...,"message":...}}`.
public enum ControlProtocol {
    /// The version this build speaks.
    public static let version: Int64 = 1
    /// Every version this build accepts.
    public static let supportedVersions: [Int64] = [1]
    /// The longest line (without its newline) either side accepts from a client.
    public static let maxRequestLineBytes = 64 * 1024
    /// The longest response line a client accepts (status and device lists can be large).
    public static let maxResponseLineBytes = 16 * 1024 * 1024
    /// The default socket path.
    public static let defaultSocketPath = "/run/iomt-agent/control.sock"
}

/// A failure reported to the client: a stable `code` for scripts and a message for people.
public struct ControlError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { rawValue = value }
        /// Not JSON, not an object, a field missing or of the wrong type.
        public static let badRequest: Code = "bad-request"
        /// A line longer than `ControlProtocol.maxRequestLineBytes`.
        public static let lineTooLong: Code = "line-too-long"
        /// `v` names a version this agent does not speak (`supported` lists those it does).
        public static let unsupportedVersion: Code = "unsupported-version"
        public static let unknownCommand: Code = "unknown-command"
        public static let invalidArgument: Code = "invalid-argument"
        /// The peer is not root, the agent's user or a member of the control group.
        public static let notPermitted: Code = "not-permitted"
        public static let notFound: Code = "not-found"
        /// The agent will not do it in this state (e.g. discharge while readings are buffered).
        public static let refused: Code = "refused"
        /// A facility is not configured or not running (e.g. Bluetooth).
        public static let unavailable: Code = "unavailable"
        /// A request id already in progress on this connection.
        public static let duplicateID: Code = "duplicate-id"
        /// Pairing and scanning failures from the Bluetooth side.
        public static let timeout: Code = "timeout"
        public static let pairingFailed: Code = "pairing-failed"
        public static let cancelled: Code = "cancelled"
        public static let internalError: Code = "internal"
    }

    public var code: Code
    public var message: String
    /// With `unsupported-version`: the versions this agent speaks.
    public var supported: [Int64]?

    public init(_ code: Code, _ message: String, supported: [Int64]? = nil) {
        self.code = code
        self.message = message
        self.supported = supported
    }

    public var description: String { message }

    public var json: JSONValue {
        var members: [JSONValue.Member] = [.init("code", .string(code.rawValue)), .init("message", .string(message))]
        if let supported { members.append(.init("supported", .array(supported.map { .int($0) }))) }
        return .object(members)
    }
}

/// What a client sends.
public enum ClientMessage: Hashable, Sendable {
    case request(id: Int64, cmd: String, args: JSONValue)
    /// The answer to a prompt of request `id`.
    case input(id: Int64, value: JSONValue)

    public var id: Int64 {
        switch self {
        case .request(let id, _, _), .input(let id, _): id
        }
    }

    /// One line, newline included.
    public var line: [UInt8] {
        let v: JSONValue
        switch self {
        case let .request(id, cmd, args):
            v = .obj(["v": .int(ControlProtocol.version), "id": .int(id), "cmd": .string(cmd), "args": args])
        case let .input(id, value):
            v = .obj(["v": .int(ControlProtocol.version), "id": .int(id), "input": value])
        }
        return v.bytes + [0x0A]
    }

    /// Decodes one line (without its newline). On failure returns the error to answer with and
    /// the request id if one could be read (so the client can match the error to its request).
    public static func decode(_ line: [UInt8]) -> Result<ClientMessage, DecodeFailure> {
        let v: JSONValue
        do {
            v = try JSONValue.parse(line, maxDepth: 32)
        } catch {
            return .failure(DecodeFailure(id: nil, error: ControlError(.badRequest, "not a JSON line: \(error)")))
        }
        guard case .object = v else {
            return .failure(DecodeFailure(id: nil, error: ControlError(.badRequest, "a request must be a JSON object")))
        }
        let id = v["id"]?.intValue
        guard let version = v["v"]?.intValue else {
            return .failure(DecodeFailure(id: id, error: ControlError(.badRequest, "field v (protocol version, an integer) is missing")))
        }
        guard ControlProtocol.supportedVersions.contains(version) else {
            let list = ControlProtocol.supportedVersions.map(String.init).joined(separator: ", ")
            return .failure(DecodeFailure(id: id, error: ControlError(
                .unsupportedVersion, "protocol version \(version) is not supported; this agent speaks version \(list)",
                supported: ControlProtocol.supportedVersions)))
        }
        guard let id else {
            return .failure(DecodeFailure(id: nil, error: ControlError(.badRequest, "field id (an integer) is missing")))
        }
        if let input = v["input"] {
            return .success(.input(id: id, value: input))
        }
        guard let cmd = v["cmd"]?.stringValue, !cmd.isEmpty else {
            return .failure(DecodeFailure(id: id, error: ControlError(.badRequest, "field cmd (a string) is missing")))
        }
        let args = v["args"] ?? .object([])
        guard case .object = args else {
            return .failure(DecodeFailure(id: id, error: ControlError(.badRequest, "field args must be an object")))
        }
        return .success(.request(id: id, cmd: cmd, args: args))
    }

    public struct DecodeFailure: Error, Hashable, Sendable {
        public var id: Int64?
        public var error: ControlError
    }
}

/// What the daemon sends.
public enum ServerMessage: Hashable, Sendable {
    case result(id: Int64, JSONValue)
    /// `id` is nil when the failing line had no readable id.
    case failure(id: Int64?, ControlError)
    case event(id: Int64, JSONValue)
    case prompt(id: Int64, Prompt)

    public struct Prompt: Hashable, Sendable {
        /// `passkey` (answer with a 6-digit number) or `confirm` (answer true or false).
        public var kind: String
        public var text: String
        public init(kind: String, text: String) { self.kind = kind; self.text = text }
    }

    public var id: Int64? {
        switch self {
        case .result(let id, _), .event(let id, _), .prompt(let id, _): id
        case .failure(let id, _): id
        }
    }

    public var isFinal: Bool {
        switch self {
        case .result, .failure: true
        case .event, .prompt: false
        }
    }

    /// One line, newline included.
    public var line: [UInt8] {
        var m: [JSONValue.Member] = [.init("v", .int(ControlProtocol.version)), .init("id", id.map { .int($0) } ?? .null)]
        switch self {
        case .result(_, let r):
            m += [.init("ok", .bool(true)), .init("result", r)]
        case .failure(_, let e):
            m += [.init("ok", .bool(false)), .init("error", e.json)]
        case .event(_, let e):
            m.append(.init("event", e))
        case .prompt(_, let p):
            m.append(.init("prompt", .obj(["kind": .string(p.kind), "text": .string(p.text)])))
        }
        return JSONValue.object(m).bytes + [0x0A]
    }

    public static func decode(_ line: [UInt8]) throws(ControlError) -> ServerMessage {
        let v: JSONValue
        do { v = try JSONValue.parse(line) } catch { throw ControlError(.badRequest, "the agent sent a line that is not JSON: \(error)") }
        guard let version = v["v"]?.intValue, ControlProtocol.supportedVersions.contains(version) else {
            throw ControlError(.unsupportedVersion, "the agent answered with protocol version \(v["v"]?.text ?? "none"); this client speaks \(ControlProtocol.version)")
        }
        let id = v["id"]?.intValue
        if let ok = v["ok"]?.boolValue {
            if ok { return .result(id: id ?? 0, v["result"] ?? .null) }
            let e = v["error"]
            return .failure(id: id, ControlError(.init(rawValue: e?["code"]?.stringValue ?? "unknown"),
                                                 e?["message"]?.stringValue ?? "(no message)",
                                                 supported: e?["supported"]?.arrayValue?.compactMap(\.intValue)))
        }
        guard let id else { throw ControlError(.badRequest, "the agent sent a line without id") }
        if let e = v["event"] { return .event(id: id, e) }
        if let p = v["prompt"], let kind = p["kind"]?.stringValue {
            return .prompt(id: id, Prompt(kind: kind, text: p["text"]?.stringValue ?? ""))
        }
        throw ControlError(.badRequest, "the agent sent a line that is neither a result, an event nor a prompt")
    }
}

/// Splits a byte stream into lines, never trusting read boundaries, with a bound on the line
/// length: bytes of an over-long line are dropped up to its newline and reported once as
/// `.tooLong`, so one bad line costs no more than `maxLength` bytes of memory.
public struct LineFramer: Sendable {
    public enum Item: Hashable, Sendable {
        case line([UInt8])
        case tooLong(length: Int)
    }

    public let maxLength: Int
    private var buffer: [UInt8] = []
    private var discarding = false
    private var discarded = 0

    public init(maxLength: Int) { self.maxLength = maxLength }

    public mutating func feed(_ bytes: some Collection<UInt8>) -> [Item] {
        var out: [Item] = []
        for b in bytes {
            if b == 0x0A {
                if discarding {
                    out.append(.tooLong(length: discarded))
                    discarding = false
                    discarded = 0
                } else {
                    if buffer.last == 0x0D { buffer.removeLast() }
                    out.append(.line(buffer))
                }
                buffer.removeAll(keepingCapacity: true)
                continue
            }
            if discarding { discarded += 1; continue }
            buffer.append(b)
            if buffer.count > maxLength {
                discarding = true
                discarded = buffer.count
                buffer.removeAll()
            }
        }
        return out
    }

    /// Bytes of an unfinished line at end of stream (nil if none).
    public var remainder: [UInt8]? { buffer.isEmpty ? nil : buffer }
}
