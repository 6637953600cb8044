import IoMTThreads
import IoMTCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A virtual Bluetooth LE world for integration tests: `scripts/ble/virtual_world.py` (Bumble
/// 0.0.236 virtual controllers on one in-process link) with simulated medical peripherals, and
/// one H4-over-TCP port per controller our host under test connects to.
///
/// ```swift
/// let world = try await BumbleWorld.start(spec: .init(hosts: 1, peripherals: [
///     .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01", options: ["serial": "HR-1"]),
///     .init(kind: .thermometerSecure, name: "t1", address: "F0:F1:F2:F3:F4:02",
///           options: ["io_capability": "display-only", "passkey": 123456]),
/// ]))
/// defer { world.kill() }                     // or `await world.stop()`
/// // connect the host under test to 127.0.0.1:world.hostPorts[0] (H4 over TCP)
/// let answer = try await world.command(#"{"cmd":"status"}"#)
/// ```
///
/// The child's stdin is a pipe owned by this object: commands go there, answers come back on its
/// stdout one JSON line each, in order. If the test process dies, the pipe closes and the world
/// quits on its own (stdin EOF). Its stderr (the log) goes to ``logFile``. Use one world per
/// test: a virtual controller keeps state a real one would drop (scripts/ble/README.md).
public final class BumbleWorld: Sendable {
    /// The kinds of simulated peripheral (scripts/ble/README.md lists their options).
    public struct Kind: RawRepresentable, Sendable, Hashable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let heartRate = Kind(rawValue: "heart-rate")
        public static let thermometerSecure = Kind(rawValue: "thermometer-secure")
        public static let garbage = Kind(rawValue: "garbage")
        public static let dropper = Kind(rawValue: "dropper")
        /// Any single-characteristic health profile replaying `payloads` (hex): options `service`,
        /// `characteristic` (hex UUIDs), `indicate`.
        public static let sigProfile = Kind(rawValue: "sig-profile")
        public static let glucoseMeter = Kind(rawValue: "glucose-meter")
        /// A broadcast-only sensor: advertises non-connectable with `service_data` or
        /// `manufacturer_data` (hex UUID / company id) carrying `payloads` (hex) in turn, switching
        /// on the `next-payload` command or every `switch_ms`.
        public static let broadcaster = Kind(rawValue: "broadcaster")
    }

    /// A spec option value (JSON scalar or list of strings).
    public enum Option: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
        ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral {
        case string(String)
        case int(Int)
        case bool(Bool)
        case strings([String])
        public init(stringLiteral value: String) { self = .string(value) }
        public init(integerLiteral value: Int) { self = .int(value) }
        public init(booleanLiteral value: Bool) { self = .bool(value) }
        public init(arrayLiteral elements: String...) { self = .strings(elements) }
    }

    public struct Peripheral: Sendable {
        public var kind: Kind
        public var name: String
        /// Random static address, e.g. `F0:F1:F2:F3:F4:01` (top two bits set).
        public var address: String
        /// Kind-specific options: `interval_ms`, `serial`, `io_capability`, `passkey`, `legacy`,
        /// `privacy`, `malformed`, `drop_after`, `away_ms`, `records`, `units`, `busy_first`, `att_errors`, ...
        public var options: [String: Option]
        public init(kind: Kind, name: String, address: String, options: [String: Option] = [:]) {
            self.kind = kind
            self.name = name
            self.address = address
            self.options = options
        }
    }

    public struct Spec: Sendable {
        /// Controllers exposed over TCP for hosts under test.
        public var hosts: Int
        /// Controllers exposed as H4 on a pseudo-terminal (a UART for the host under test).
        public var uartHosts: Int
        /// Fixed TCP ports for the hosts (default: free ports chosen by the kernel), e.g. to bring
        /// a controller back on the port a running agent keeps dialling.
        public var ports: [UInt16]
        public var peripherals: [Peripheral]
        public init(hosts: Int = 1, uartHosts: Int = 0, ports: [UInt16] = [], peripherals: [Peripheral] = []) {
            self.hosts = hosts
            self.uartHosts = uartHosts
            self.ports = ports
            self.peripherals = peripherals
        }

        /// The spec as virtual_world.py reads it.
        public var json: String {
            var w = JSONWriter()
            w.beginObject()
            w.field("hosts", Int64(hosts))
            w.field("uart_hosts", Int64(uartHosts))
            if !ports.isEmpty {
                w.key("ports")
                w.beginArray()
                for p in ports { w.int(Int64(p)) }
                w.endArray()
            }
            w.key("peripherals")
            w.beginArray()
            for p in peripherals {
                w.beginObject()
                w.field("name", p.name)
                w.field("kind", p.kind.rawValue)
                w.field("address", p.address)
                for (key, value) in p.options.sorted(by: { $0.key < $1.key }) {
                    w.key(key)
                    switch value {
                    case .string(let s): w.string(s)
                    case .int(let i): w.int(Int64(i))
                    case .bool(let b): w.bool(b)
                    case .strings(let list):
                        w.beginArray()
                        for s in list { w.string(s) }
                        w.endArray()
                    }
                }
                w.endObject()
            }
            w.endArray()
            w.endObject()
            return String(decoding: w.bytes, as: UTF8.self)
        }
    }

    /// Where a peripheral advertises.
    public struct PeripheralAddress: Sendable, Equatable {
        /// `F0:F1:F2:F3:F4:01` (most significant octet first); for `privacy: true` the
        /// current resolvable private address.
        public var address: String
        /// `"random"` (every simulated peripheral uses a random address).
        public var type: String
        /// The identity (static) address from the spec.
        public var identityAddress: String
        /// The IRK it distributes, hex, for `privacy: true`.
        public var irk: String?
    }

    public let pid: pid_t
    /// H4-over-TCP ports on 127.0.0.1, one per host controller, in spec order.
    public let hostPorts: [UInt16]
    /// Slave paths of the pseudo-terminals serving H4 (`Spec.uartHosts`), for `uart:` transports.
    public let uartPaths: [String]
    /// Addresses by peripheral name, as they were at start.
    public let peripherals: [String: PeripheralAddress]
    /// The ready document the world wrote (JSON).
    public let readyJSON: String
    public let specJSON: String
    /// The world's log (its stderr).
    public let logFile: String
    public let dir: TempDir

    private let stdinFD: Mutex<Int32>
    private let output: Watched<Output>
    private let exitStatus: Watched<Int32?>
    private let nextAnswer = Mutex(0)

    struct Output: Sendable {
        var lines: [String] = []
        /// The child closed its stdout (it exited).
        var closed = false
    }

    /// Starts `scripts/ble/virtual_world.py` with `.venv/bin/python` of this repository and
    /// returns once every host port listens and every peripheral advertises (its `READY` line).
    public static func start(spec: Spec, timeout: Duration = .seconds(20)) async throws -> BumbleWorld {
        let root = TestPaths.repositoryRoot
        let python = "\(root)/.venv/bin/python"
        guard access(python, X_OK) == 0 else {
            throw TestSupportError("run scripts/setup.sh: .venv lacks bumble (no \(python))")
        }
        let check = try await ChildProcess.run([python, "-c", "import bumble"], timeout: .seconds(30))
        guard check.status == 0 else {
            throw TestSupportError("run scripts/setup.sh: .venv lacks bumble (\(python): \(check.output.prefix(200)))")
        }
        let dir = try TempDir(prefix: "iomt-bumble")
        let specJSON = spec.json
        let readyFile = dir.file("ready.json")
        let logFile = dir.file("world.log")
        let (pid, stdinFD, stdoutFD) = try spawn(
            [python, "\(root)/scripts/ble/virtual_world.py", "--spec-json", specJSON, "--ready-file", readyFile],
            stderrPath: logFile)
        let output = Watched(Output())
        let exitStatus = Watched<Int32?>(nil)
        runDetachedOrInline {
            var pending: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(stdoutFD, &buf, buf.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                pending.append(contentsOf: buf[0..<n])
                var complete: [String] = []
                while let nl = pending.firstIndex(of: 0x0A) {
                    complete.append(String(decoding: pending[..<nl], as: UTF8.self))
                    pending.removeSubrange(...nl)
                }
                if !complete.isEmpty { output.update { $0.lines.append(contentsOf: complete) } }
            }
            close(stdoutFD)
            output.update { $0.closed = true }
        }
        runDetachedOrInline {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            exitStatus.update { $0 = status }
        }
        // READY, or the end of its stdout (it died), or the timeout: whichever comes first.
        let ready = await output.wait(timeout: timeout) { !$0.lines.isEmpty || $0.closed }
            && output.value.lines.first == "READY"
        func fail(_ why: String) -> TestSupportError {
            signalProcess(pid, SIGKILL)
            close(stdinFD)
            let log = dir.read("world.log") ?? ""
            return TestSupportError("virtual_world.py \(why); log:\n\(log.suffix(3000))")
        }
        guard ready else {
            let first = output.value.lines.first.map { " (first line: \($0.prefix(200)))" } ?? ""
            throw fail(output.value.closed ? "exited before READY\(first)" : "not READY within \(timeout)\(first)")
        }
        guard let readyJSON = dir.read("ready.json"), let doc = try? TestJSON.parse(readyJSON) else {
            throw fail("wrote no readable ready file")
        }
        var ports: [UInt16] = []
        for host in doc["hosts"]?.array ?? [] {
            guard let port = host["port"]?.int, let p = UInt16(exactly: port) else { throw fail("ready file: bad host port") }
            ports.append(p)
        }
        let uartPaths = (doc["uart_hosts"]?.array ?? []).compactMap { $0["path"]?.string }
        guard uartPaths.count == spec.uartHosts else { throw fail("ready file: \(uartPaths.count) uart hosts, wanted \(spec.uartHosts)") }
        var peripherals: [String: PeripheralAddress] = [:]
        for (name, entry) in doc["peripherals"]?.object ?? [:] {
            guard let address = entry["address"]?.string, let type = entry["address_type"]?.string else {
                throw fail("ready file: peripheral \(name) lacks address/address_type")
            }
            peripherals[name] = PeripheralAddress(address: address, type: type,
                                                  identityAddress: entry["identity_address"]?.string ?? address,
                                                  irk: entry["irk"]?.string)
        }
        guard ports.count == spec.hosts else { throw fail("ready file: \(ports.count) host ports, wanted \(spec.hosts)") }
        return BumbleWorld(pid: pid, hostPorts: ports, uartPaths: uartPaths, peripherals: peripherals, readyJSON: readyJSON,
                           specJSON: specJSON, logFile: logFile, dir: dir, stdinFD: stdinFD, output: output,
                           exitStatus: exitStatus)
    }

    private init(pid: pid_t, hostPorts: [UInt16], uartPaths: [String], peripherals: [String: PeripheralAddress], readyJSON: String,
                 specJSON: String, logFile: String, dir: TempDir, stdinFD: Int32, output: Watched<Output>,
                 exitStatus: Watched<Int32?>) {
        self.pid = pid
        self.hostPorts = hostPorts
        self.uartPaths = uartPaths
        self.peripherals = peripherals
        self.readyJSON = readyJSON
        self.specJSON = specJSON
        self.logFile = logFile
        self.dir = dir
        self.stdinFD = Mutex(stdinFD)
        self.output = output
        self.exitStatus = exitStatus
        self.nextAnswer.withLock { $0 = 1 }  // line 0 is READY
    }

    /// The address a peripheral advertised with at start ("" for an unknown name).
    public func address(of name: String) -> String { peripherals[name]?.address ?? "" }

    /// Its address type at start: `"random"` ("" for an unknown name).
    public func addressType(of name: String) -> String { peripherals[name]?.type ?? "" }

    public var isRunning: Bool { exitStatus.value == nil }

    /// Sends one control line (a JSON object, e.g. `{"cmd":"disconnect","peripheral":"hr1"}`)
    /// and returns the world's answer line (`{"ok": true, ...}` or `{"ok": false, "error": ...}`).
    public func command(_ json: String, timeout: Duration = .seconds(10)) async throws -> String {
        let line = Array((json.split(whereSeparator: \.isNewline).joined(separator: " ") + "\n").utf8)
        let index: Int = try nextAnswer.withLock { next in
            // Writing under the lock keeps the order of lines equal to the order of answers.
            try stdinFD.withLock { fd in
                guard fd >= 0 else { throw TestSupportError("the world is stopped") }
                var offset = 0
                while offset < line.count {
                    // A socket, not a pipe: MSG_NOSIGNAL turns a dead world into EPIPE, not SIGPIPE.
                    let n = line[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw TestSupportError("world stdin: \(String(cString: strerror(errno)))") }
                    offset += n
                }
            }
            defer { next += 1 }
            return next
        }
        guard await output.wait(timeout: timeout, until: { $0.lines.count > index || $0.closed }),
              output.value.lines.count > index else {
            throw TestSupportError("no answer to \(json) within \(timeout)\(output.value.closed ? " (the world exited)" : "")")
        }
        return output.value.lines[index]
    }

    /// Sends a command and parses its answer; throws if the answer is not `"ok": true`.
    @discardableResult
    public func commandJSON(_ json: String, timeout: Duration = .seconds(10)) async throws -> TestJSON {
        let answer = try await command(json, timeout: timeout)
        let parsed = try TestJSON.parse(answer)
        guard parsed["ok"]?.bool == true else { throw TestSupportError("\(json) failed: \(answer)") }
        return parsed
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL and wait (bounded). Idempotent.
    public func stop(grace: Duration = .seconds(5)) async {
        closeStdin()
        if isRunning { signalProcess(pid, SIGTERM) }
        if await exitStatus.wait(timeout: grace, until: { $0 != nil }) { return }
        if isRunning { signalProcess(pid, SIGKILL) }
        _ = await exitStatus.wait(timeout: .seconds(5)) { $0 != nil }
    }

    /// SIGKILL now, without waiting (for `defer`).
    public func kill() {
        closeStdin()
        if isRunning { signalProcess(pid, SIGKILL) }
    }

    /// The ready file the world wrote (for `check_world.py --ready`).
    public var readyFile: String { dir.file("ready.json") }

    /// The world's log so far.
    public var log: String { dir.read("world.log") ?? "" }

    private func closeStdin() {
        stdinFD.withLock { fd in
            if fd >= 0 { close(fd); fd = -1 }
        }
    }

    deinit {
        closeStdin()  // the world quits on stdin EOF
        if exitStatus.value == nil {
            signalProcess(pid, SIGTERM)
            // SIGKILL if it is still there after a bound.
            let (pid, exitStatus) = (self.pid, self.exitStatus)
            Task {
                if await exitStatus.wait(timeout: .seconds(3), until: { $0 != nil }) { return }
                signalProcess(pid, SIGKILL)
            }
        }
    }


    /// posix_spawn with stdin and stdout pipes and stderr to a file.
    private static func spawn(_ arguments: [String], stderrPath: String) throws -> (pid_t, Int32, Int32) {
        var input: [Int32] = [-1, -1]  // a socket pair, so writes can use MSG_NOSIGNAL
        var output: [Int32] = [-1, -1]
        // Every descriptor is close-on-exec from birth (SOCK_CLOEXEC; socket pairs rather than pipes,
        // since Glibc's module does not export pipe2): another test spawning
        // a child at the same moment must not inherit our ends (it would hold the pipe open).
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &input) == 0 else {
            throw TestSupportError("socketpair failed")
        }
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &output) == 0 else {
            close(input[0]); close(input[1])
            throw TestSupportError("pipe failed")
        }
        _ = fcntl(input[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(output[0], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_addclose(&actions, input[0])
        posix_spawn_file_actions_addclose(&actions, output[1])
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var child: pid_t = 0
        let rc = posix_spawn(&child, arguments[0], &actions, &attr, &argv, environ)
        close(input[0])
        close(output[1])
        guard rc == 0 else {
            close(input[1]); close(output[0])
            throw TestSupportError("cannot start \(arguments[0]): \(String(cString: strerror(rc)))")
        }
        return (child, input[1], output[0])
    }
}

private func signalProcess(_ pid: pid_t, _ sig: Int32) {
    _ = kill(pid, sig)
}

/// A parsed JSON value, for reading the world's ready file and control answers in tests
/// (a small strict parser: no Foundation in the test support).
public enum TestJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([TestJSON])
    case object([String: TestJSON])

    public subscript(key: String) -> TestJSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    public subscript(index: Int) -> TestJSON? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var double: Double? { if case .number(let d) = self { return d }; return nil }
    public var int: Int? {
        if case .number(let d) = self, d == d.rounded(), abs(d) < 1e15 { return Int(d) }
        return nil
    }
    public var array: [TestJSON]? { if case .array(let a) = self { return a }; return nil }
    public var object: [String: TestJSON]? { if case .object(let o) = self { return o }; return nil }

    public static func parse(_ text: String) throws -> TestJSON {
        var parser = Parser(bytes: Array(text.utf8))
        parser.skipSpace()
        let value = try parser.value()
        parser.skipSpace()
        guard parser.at == parser.bytes.count else { throw parser.error("trailing characters") }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        var at = 0

        func error(_ why: String) -> TestSupportError { TestSupportError("JSON: \(why) at offset \(at)") }

        mutating func skipSpace() {
            while at < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[at]) { at += 1 }
        }

        mutating func expect(_ literal: String) throws {
            let l = Array(literal.utf8)
            guard at + l.count <= bytes.count, Array(bytes[at..<at + l.count]) == l else { throw error("expected \(literal)") }
            at += l.count
        }

        mutating func value() throws -> TestJSON {
            guard at < bytes.count else { throw error("unexpected end") }
            switch bytes[at] {
            case UInt8(ascii: "{"):
                at += 1
                var object: [String: TestJSON] = [:]
                skipSpace()
                if at < bytes.count, bytes[at] == UInt8(ascii: "}") { at += 1; return .object(object) }
                while true {
                    skipSpace()
                    let key = try string()
                    skipSpace()
                    try expect(":")
                    skipSpace()
                    object[key] = try value()
                    skipSpace()
                    guard at < bytes.count else { throw error("unterminated object") }
                    if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                    try expect("}")
                    return .object(object)
                }
            case UInt8(ascii: "["):
                at += 1
                var array: [TestJSON] = []
                skipSpace()
                if at < bytes.count, bytes[at] == UInt8(ascii: "]") { at += 1; return .array(array) }
                while true {
                    skipSpace()
                    array.append(try value())
                    skipSpace()
                    guard at < bytes.count else { throw error("unterminated array") }
                    if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                    try expect("]")
                    return .array(array)
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "n"): try expect("null"); return .null
            default:
                let start = at
                while at < bytes.count, "+-0123456789.eE".utf8.contains(bytes[at]) { at += 1 }
                guard at > start, let d = Double(String(decoding: bytes[start..<at], as: UTF8.self)) else {
                    throw error("bad value")
                }
                return .number(d)
            }
        }

        mutating func string() throws -> String {
            try expect("\"")
            var out: [UInt8] = []
            while true {
                guard at < bytes.count else { throw error("unterminated string") }
                let c = bytes[at]
                at += 1
                if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                guard c == UInt8(ascii: "\\") else { out.append(c); continue }
                guard at < bytes.count else { throw error("unterminated escape") }
                let e = bytes[at]
                at += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"):
                    guard at + 4 <= bytes.count,
                          let code = UInt32(String(decoding: bytes[at..<at + 4], as: UTF8.self), radix: 16) else {
                        throw error("bad \\u escape")
                    }
                    at += 4
                    // Surrogate pairs are not joined (the world writes ASCII); a lone one becomes U+FFFD.
                    out.append(contentsOf: String(Character(Unicode.Scalar(code) ?? "\u{FFFD}")).utf8)
                default: out.append(e)
                }
            }
        }
    }
}
