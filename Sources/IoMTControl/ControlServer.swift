import IoMTThreads
import IoMTRegistry
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One request as the daemon's handler sees it.
public struct ControlRequest: Hashable, Sendable {
    public var id: Int64
    public var cmd: String
    public var args: JSONValue
    public init(id: Int64, cmd: String, args: JSONValue) {
        self.id = id
        self.cmd = cmd
        self.args = args
    }
}

/// What a handler can do while it serves one request: stream events, ask the client, and
/// learn who asked.
public struct ControlSession: Sendable {
    public let requestID: Int64
    public let peer: PeerCredentials
    let connection: ControlConnection

    /// Sends `{"v":1,"id":N,"event":...}`. If the client does not read and its socket buffer
    /// is full, the client is dropped (the daemon never waits for a client).
    public func event(_ value: JSONValue) {
        connection.send(.event(id: requestID, value))
    }

    /// Asks the client (`passkey` or `confirm`) and waits for its `input` line. Throws
    /// `cancelled` if the client goes away first.
    public func prompt(kind: String, text: String) async throws -> JSONValue {
        try await connection.prompt(id: requestID, ServerMessage.Prompt(kind: kind, text: text))
    }

    /// True once the client disconnected (a long command may stop early).
    public var clientGone: Bool { connection.isClosed }
}

/// Serves requests: the daemon implements it (IoMTAgent's ControlService).
public protocol ControlHandler: Sendable {
    /// Returns the `result`, or throws a `ControlError` (any other error is reported as
    /// `internal` with its description).
    func handle(_ request: ControlRequest, session: ControlSession) async throws -> JSONValue
}

public enum ControlServerError: Error, Hashable, Sendable, CustomStringConvertible {
    case pathTooLong(String)
    case notASocket(String)
    case alreadyRunning(String)
    case system(path: String, call: String, errno: Int32)

    public var description: String {
        switch self {
        case .pathTooLong(let p): "control socket path \(p) is too long (at most 107 bytes)"
        case .notASocket(let p): "control socket path \(p) exists and is not a socket; remove it or set control.socket"
        case .alreadyRunning(let p): "another agent is running: its control socket \(p) answers"
        case let .system(p, call, e): "control socket \(p): \(call): \(String(cString: strerror(e))) (errno \(e))"
        }
    }
}

/// The daemon's control socket: a Unix stream socket (mode 0660, group `control.group` when it
/// exists) serving JSON lines (`ControlProtocol`).
///
/// - A socket left by a crashed daemon (nothing accepts on it) is replaced; one that answers
///   is refused (`alreadyRunning`).
/// - Peers are checked with `SO_PEERCRED`: root, the daemon's own uid, or a process whose
///   primary or supplementary groups (`/proc/<pid>/status`) include the control group.
///   Others get a `not-permitted` error and a log line with their uid and pid.
/// - One thread blocks in `accept`, one per client in `read`; requests are served by one task
///   per client (commands concurrently, so `input` lines can answer a running `pair`).
/// - Bounds: request lines of 64 KiB (longer ones get `line-too-long`, the connection lives
///   on), 64 unprocessed lines and 16 running commands per client, 32 clients. Writes never
///   block: a client whose socket buffer (256 KiB) is full because it does not read is dropped.
public final class ControlServer: Sendable {
    public let path: String
    public let groupName: String?
    let handler: any ControlHandler
    let logger: Logger
    let allowedGroup: UInt32?
    let ownUID: UInt32
    private let state = Mutex(ServerState())
    static let maxClients = 32

    struct ServerState {
        var listenFD: Int32 = -1
        var inode: UInt64 = 0
        var connections: [ObjectIdentifier: ControlConnection] = [:]
        var tasks: [ObjectIdentifier: Task<Void, Never>] = [:]
        var stopped = false
        var acceptDone: CheckedContinuation<Void, Never>?
        var acceptFinished = false
        /// A descriptor kept in reserve for turning clients away when the process runs out.
        var spareFD: Int32 = -1
    }

    public init(path: String, group: String?, handler: any ControlHandler, logger: Logger) {
        self.path = path
        self.groupName = group
        self.handler = handler
        self.logger = logger
        self.allowedGroup = group.flatMap { groupID(named: $0) }
        self.ownUID = geteuid()
    }

    /// Creates the socket and starts accepting. Returns a note for the log when the group does
    /// not exist (then only root and the agent's user may connect).
    @discardableResult
    public func start() throws(ControlServerError) -> String? {
        guard let addr = unixAddress(path) else { throw .pathTooLong(path) }
        let dir = Files.directory(of: path)
        if !Files.exists(dir), mkdir(dir, 0o755) != 0, errno != EEXIST {
            throw .system(path: dir, call: "mkdir", errno: errno)
        }
        try replaceStale(addr)

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(path: path, call: "socket", errno: errno) }
        // Bind under a temporary name, set mode and group, then rename into place, so the
        // socket is never reachable with the umask's permissions.
        let tmp = dir + "/.ctl-\(getpid())"
        let bindPath = unixAddress(tmp) != nil ? tmp : path
        unlink(tmp)
        let rc = withSockaddr(unixAddress(bindPath) ?? addr) { bind(fd, $0, $1) }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw .system(path: bindPath, call: "bind", errno: e)
        }
        var note: String?
        if chmod(bindPath, 0o660) != 0 {
            let e = errno
            close(fd); unlink(bindPath)
            throw .system(path: bindPath, call: "chmod", errno: e)
        }
        if let groupName {
            if let gid = allowedGroup {
                if chown(bindPath, uid_t.max, gid) != 0 {
                    note = "cannot give the control socket to group \(groupName) (errno \(errno)): only root and the agent's user can use it"
                }
            } else {
                note = "group \(groupName) does not exist: only root and the agent's user can use the control socket"
            }
        }
        if bindPath != path, rename(bindPath, path) != 0 {
            let e = errno
            close(fd); unlink(bindPath)
            throw .system(path: path, call: "rename", errno: e)
        }
        guard listen(fd, 16) == 0 else {
            let e = errno
            close(fd); unlink(path)
            throw .system(path: path, call: "listen", errno: e)
        }
        var st = stat()
        _ = stat(path, &st)
        let spare = open("/dev/null", O_RDONLY | O_CLOEXEC)
        state.withLock {
            $0.listenFD = fd
            $0.inode = UInt64(st.st_ino)
            $0.spareFD = spare
        }
        guard startDetachedThread({ [self] in acceptLoop(fd) }) else {
            close(fd); unlink(path)
            throw .system(path: path, call: "pthread_create (accept thread)", errno: EAGAIN)
        }
        return note
    }

    private func replaceStale(_ addr: sockaddr_un) throws(ControlServerError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else { throw .notASocket(path) }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { throw .system(path: path, call: "socket", errno: errno) }
        defer { close(probe) }
        if withSockaddr(addr, { connect(probe, $0, $1) }) == 0 { throw .alreadyRunning(path) }
        let e = errno
        guard e == ECONNREFUSED || e == ENOENT else { throw .system(path: path, call: "connect (checking for a running agent)", errno: e) }
        logger.notice("replacing a stale control socket (no agent answers on it)", metadata: ["path": "\(path)"])
        if unlink(path) != 0 && errno != ENOENT { throw .system(path: path, call: "unlink", errno: errno) }
    }

    private func acceptLoop(_ listenFD: Int32) {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                if errno == EMFILE || errno == ENFILE {
                    // Out of descriptors: give up the spare one to accept and close the waiting
                    // client (it sees EOF), rather than spin on a connection that stays queued.
                    logger.error("control socket: out of file descriptors; a client was turned away")
                    let spare = state.withLock { s -> Int32 in defer { s.spareFD = -1 }; return s.spareFD }
                    if spare >= 0 { close(spare) }
                    let turnedAway = accept(listenFD, nil, nil)
                    if turnedAway >= 0 { close(turnedAway) }
                    let again = open("/dev/null", O_RDONLY | O_CLOEXEC)
                    state.withLock { $0.spareFD = again }
                    if spare < 0 && turnedAway < 0 { break } // nothing to give up: stop rather than spin
                    continue
                }
                break // shut down (EINVAL) or the socket is gone
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            admit(fd)
        }
        close(listenFD)
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.acceptFinished = true
            if s.spareFD >= 0 { close(s.spareFD) }
            s.spareFD = -1
            defer { s.acceptDone = nil }
            return s.acceptDone
        }
        waiter?.resume()
    }

    private func admit(_ fd: Int32) {
        var size: Int32 = 256 * 1024
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        guard let peer = PeerCredentials.of(fd) else {
            close(fd)
            return
        }
        let connection = ControlConnection(fd: fd, peer: peer, logger: logger)
        guard isAllowed(peer) else {
            logger.warning("control socket: peer refused", metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)", "gid": "\(peer.gid)"])
            connection.send(.failure(id: nil, ControlError(
                .notPermitted, "not permitted: uid \(peer.uid) is not root, the agent's user, or a member of group \(groupName ?? "(none)")")))
            connection.closeNow()
            return
        }
        let key = ObjectIdentifier(connection)
        let admitted = state.withLock { s -> Bool in
            guard !s.stopped, s.connections.count < ControlServer.maxClients else { return false }
            s.connections[key] = connection
            return true
        }
        guard admitted else {
            connection.send(.failure(id: nil, ControlError(.unavailable, "too many control clients (at most \(ControlServer.maxClients)) or the agent is stopping")))
            connection.closeNow()
            return
        }
        logger.debug("control client connected", metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)"])
        guard let lines = connection.startReading() else {
            logger.error("control socket: cannot start a reader thread; client turned away")
            forget(key)
            connection.closeNow()
            return
        }
        let handler = self.handler
        let task = Task { [weak self] in
            await connection.serve(lines: lines, handler: handler)
            self?.forget(key)
        }
        state.withLock { s in
            if s.connections[key] != nil { s.tasks[key] = task }
        }
    }

    private func forget(_ key: ObjectIdentifier) {
        state.withLock { s in
            s.connections[key] = nil
            s.tasks[key] = nil
        }
    }

    func isAllowed(_ peer: PeerCredentials) -> Bool {
        if peer.uid == 0 || peer.uid == ownUID { return true }
        guard let gid = allowedGroup else { return false }
        return peer.gid == gid || peer.supplementaryGroups.contains(gid)
    }

    /// Stops accepting, disconnects every client, waits for their commands to end and removes
    /// the socket file (only if it is still ours).
    public func stop() async {
        let (fd, inode, connections, tasks) = state.withLock { s in
            s.stopped = true
            return (s.listenFD, s.inode, Array(s.connections.values), Array(s.tasks.values))
        }
        guard fd >= 0 else { return }
        var st = stat()
        if stat(path, &st) == 0, UInt64(st.st_ino) == inode { unlink(path) }
        shutdown(fd, Int32(SHUT_RDWR))
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let finished = state.withLock { s -> Bool in
                if s.acceptFinished { return true }
                s.acceptDone = c
                return false
            }
            if finished { c.resume() }
        }
        for c in connections { c.hangUp() }
        for t in tasks { await t.value }
    }
}

/// One client of the control socket.
final class ControlConnection: Sendable {
    let fd: Int32
    let peer: PeerCredentials
    let logger: Logger
    private let state = Mutex(State())
    static let maxQueuedLines = 64
    static let maxRunningCommands = 16

    struct State {
        var closed = false
        var readerDone = false
        var fdClosed = false
        var prompts: [Int64: CheckedContinuation<JSONValue, any Error>] = [:]
        var running: Set<Int64> = []
    }

    init(fd: Int32, peer: PeerCredentials, logger: Logger) {
        self.fd = fd
        self.peer = peer
        self.logger = logger
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Starts the reader thread; lines (or over-long markers) arrive on the stream, which ends
    /// at EOF, on a read error, or when the client floods it.
    func startReading() -> AsyncStream<LineFramer.Item>? {
        let (stream, continuation) = AsyncStream.makeStream(of: LineFramer.Item.self,
                                                            bufferingPolicy: .bufferingOldest(ControlConnection.maxQueuedLines))
        let started = startDetachedThread { [self] in
            var framer = LineFramer(maxLength: ControlProtocol.maxRequestLineBytes)
            var chunk = [UInt8](repeating: 0, count: 16384)
            reading: while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR { continue }
                if n <= 0 { break }
                for item in framer.feed(chunk[0..<n]) {
                    if case .dropped = continuation.yield(item) {
                        logger.warning("control client sends faster than it is served; dropped",
                                       metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)"])
                        hangUp()
                        break reading
                    }
                }
            }
            failPrompts(reason: "the client closed its side of the connection")
            state.withLock { $0.readerDone = true }
            continuation.finish()
        }
        return started ? stream : nil
    }

    /// Serves the client's lines until it disconnects and its commands are done; then closes.
    func serve(lines: AsyncStream<LineFramer.Item>, handler: any ControlHandler) async {
        await withTaskGroup(of: Void.self) { group in
            for await item in lines {
                switch item {
                case .tooLong(let length):
                    send(.failure(id: nil, ControlError(.lineTooLong, "request line of \(length) bytes is longer than \(ControlProtocol.maxRequestLineBytes)")))
                case .line(let bytes):
                    if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                    switch ClientMessage.decode(bytes) {
                    case .failure(let f):
                        send(.failure(id: f.id, f.error))
                    case .success(.input(let id, let value)):
                        let waiter = state.withLock { $0.prompts.removeValue(forKey: id) }
                        if let waiter {
                            waiter.resume(returning: value)
                        } else {
                            send(.failure(id: id, ControlError(.badRequest, "request \(id) is not waiting for input")))
                        }
                    case .success(.request(let id, let cmd, let args)):
                        let verdict = state.withLock { s -> ControlError? in
                            if s.running.contains(id) { return ControlError(.duplicateID, "request id \(id) is already running on this connection") }
                            if s.running.count >= ControlConnection.maxRunningCommands {
                                return ControlError(.unavailable, "too many commands running on this connection (at most \(ControlConnection.maxRunningCommands))")
                            }
                            s.running.insert(id)
                            return nil
                        }
                        if let verdict {
                            send(.failure(id: id, verdict))
                            continue
                        }
                        let session = ControlSession(requestID: id, peer: peer, connection: self)
                        group.addTask { [self] in
                            let reply: ServerMessage
                            do {
                                reply = .result(id: id, try await handler.handle(ControlRequest(id: id, cmd: cmd, args: args), session: session))
                            } catch let e as ControlError {
                                reply = .failure(id: id, e)
                            } catch {
                                reply = .failure(id: id, ControlError(.internalError, "\(error)"))
                            }
                            state.withLock { _ = $0.running.remove(id) }
                            send(reply)
                        }
                    }
                }
            }
            // A client that was dropped (or a server that is stopping) cannot receive replies:
            // its running commands (a long scan, a pairing) are cancelled. A client that only
            // closed its sending side still gets its answers.
            if isClosed { group.cancelAll() }
            await group.waitForAll()
        }
        closeNow()
    }

    /// Writes one message without blocking. A client that does not read fills its socket
    /// buffer; it is then dropped rather than let the daemon wait.
    func send(_ message: ServerMessage) {
        let line = message.line
        let dropped = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            let n = line.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL)) }
            if n == line.count { return false }
            s.closed = true
            shutdown(fd, Int32(SHUT_RDWR))
            return true
        }
        if dropped {
            logger.warning("control client does not read its replies; dropped",
                           metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)"])
        }
        if isClosed { failPrompts(reason: "the client was disconnected") }
    }

    func prompt(id: Int64, _ prompt: ServerMessage.Prompt) async throws -> JSONValue {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<JSONValue, any Error>) in
                let gone = state.withLock { s -> Bool in
                    if s.closed || s.readerDone { return true }
                    s.prompts[id] = c
                    return false
                }
                if gone {
                    c.resume(throwing: ControlError(.cancelled, "the client is gone; nobody can answer"))
                } else {
                    send(.prompt(id: id, prompt))
                }
            }
        } onCancel: {
            let waiter = state.withLock { $0.prompts.removeValue(forKey: id) }
            waiter?.resume(throwing: ControlError(.cancelled, "cancelled"))
        }
    }

    private func failPrompts(reason: String) {
        let waiters = state.withLock { s -> [CheckedContinuation<JSONValue, any Error>] in
            defer { s.prompts.removeAll() }
            return Array(s.prompts.values)
        }
        for w in waiters { w.resume(throwing: ControlError(.cancelled, reason)) }
    }

    /// Disconnects (the reader sees EOF, running commands finish, then `closeNow` closes).
    func hangUp() {
        state.withLock { s in
            s.closed = true
            if !s.fdClosed { shutdown(fd, Int32(SHUT_RDWR)) }
        }
        failPrompts(reason: "the agent is closing the connection")
    }

    /// Closes the descriptor once (after the reader is done with it, or when never started).
    func closeNow() {
        let needsClose = state.withLock { s -> Bool in
            s.closed = true
            guard !s.fdClosed else { return false }
            s.fdClosed = true
            return true
        }
        if needsClose {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }
}
