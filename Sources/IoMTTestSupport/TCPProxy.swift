import IoMTThreads
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A loopback TCP relay in front of a broker, to cut connections abruptly: ``severAll()`` resets
/// every relayed connection (both sides) without any MQTT DISCONNECT, as a network failure or a
/// crashed client would. The broker then publishes the client's Last Will (MQTT 5.0 §3.1.2.5).
/// New connections keep being accepted (the client can reconnect); ``close()`` stops listening.
/// Call ``close()`` when done (e.g. `defer { proxy.close() }`): the accept thread keeps the proxy
/// alive until then.
public final class TCPProxy: Sendable {
    public let port: Int
    public let upstreamPort: Int
    private let listenFD: Int32
    private let connections = Mutex<Set<Int32>>([])
    private let closed = Mutex(false)
    private let frozen = Mutex<Direction>([])
    /// Number of connections accepted so far.
    public let accepted = Watched(0)

    public var url: String { "mqtt://127.0.0.1:\(port)" }

    public init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("proxy socket failed") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(4))
        var addr = TCPProxy.loopback(port: 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
                bind(fd, sp, len) == 0 && listen(fd, 16) == 0 ? getsockname(fd, sp, &len) : -1
            }
        }
        guard rc == 0 else { Glibc.close(fd); throw TestSupportError("proxy bind/listen failed") }
        self.listenFD = fd
        self.port = Int(UInt16(bigEndian: addr.sin_port))
        runDetachedOrInline { [self] in acceptLoop() }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return addr
    }

    private func acceptLoop() {
        while true {
            let client = accept(listenFD, nil, nil)
            if client >= 0 { _ = fcntl(client, F_SETFD, FD_CLOEXEC) }  // not inherited by children other tests spawn
            if client < 0 {
                if errno == EINTR { continue }
                return  // listening socket shut down by close()
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var addr = TCPProxy.loopback(port: upstreamPort)
            let ok = upstream >= 0 && withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            guard ok else {
                Glibc.close(client)
                if upstream >= 0 { Glibc.close(upstream) }
                continue
            }
            connections.withLock { $0.insert(client); $0.insert(upstream) }
            accepted.update { $0 += 1 }
            runDetachedOrInline { [self] in relay(client, upstream) }
        }
    }

    private func relay(_ a: Int32, _ b: Int32) {
        var buf = [UInt8](repeating: 0, count: 16384)
        var fds = [pollfd(fd: a, events: 0, revents: 0), pollfd(fd: b, events: 0, revents: 0)]
        loop: while true {
            let f = frozen.withLock { $0 }
            // A frozen direction is not read: its bytes stay in the kernel (a black hole). Only
            // POLLHUP/POLLERR (from severAll) wake a fully frozen relay.
            fds[0].events = f.contains(.toBroker) ? 0 : Int16(POLLIN)
            fds[1].events = f.contains(.toClient) ? 0 : Int16(POLLIN)
            fds[0].revents = 0
            fds[1].revents = 0
            let n = poll(&fds, 2, -1)
            if n < 0 { if errno == EINTR { continue }; break }
            let now = frozen.withLock { $0 }
            for i in 0..<2 where fds[i].revents != 0 {
                let dirFrozen = i == 0 ? now.contains(.toBroker) : now.contains(.toClient)
                if dirFrozen {
                    if fds[i].revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 { break loop }
                    continue  // frozen since poll returned: leave the bytes unread
                }
                let r = read(fds[i].fd, &buf, buf.count)
                if r <= 0 { break loop }
                var off = 0
                while off < r {
                    let w = buf[off..<r].withUnsafeBytes { write(fds[1 - i].fd, $0.baseAddress, $0.count) }
                    if w <= 0 { break loop }
                    off += w
                }
            }
        }
        connections.withLock { $0.remove(a); $0.remove(b) }
        Glibc.close(a)
        Glibc.close(b)
    }

    /// Directions that can be frozen.
    public struct Direction: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// Bytes from the client to the broker (PUBLISH, PUBREL, DISCONNECT...).
        public static let toBroker = Direction(rawValue: 1)
        /// Bytes from the broker to the client (CONNACK, PUBACK, PUBREC, PUBCOMP...).
        public static let toClient = Direction(rawValue: 2)
        public static let both: Direction = [.toBroker, .toClient]
    }

    /// Stops relaying in `direction` on current and future connections (a network black hole:
    /// sockets stay open, bytes are not delivered). Takes effect for bytes not yet read; a relay
    /// already inside a read may forward that one chunk. Use ``severAll()`` or ``thaw()`` after.
    public func freeze(_ direction: Direction = .both) {
        frozen.withLock { $0 = direction }
    }

    /// Relays normally again. New connections relay at once; an existing connection resumes at
    /// its relay's next wake-up (a byte in a direction that was not frozen); one frozen in BOTH
    /// directions stays frozen until ``severAll()``.
    public func thaw() {
        frozen.withLock { $0 = [] }
    }

    /// Resets every relayed connection now (SO_LINGER 0 + shutdown: RST, no DISCONNECT).
    public func severAll() {
        connections.withLock { set in
            for fd in set {
                var lg = linger(l_onoff: 1, l_linger: 0)
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, socklen_t(MemoryLayout<linger>.size))
                shutdown(fd, Int32(SHUT_RDWR))
            }
        }
    }

    /// Stops accepting and severs everything. Idempotent.
    public func close() {
        let first = closed.withLock { c in defer { c = true }; return !c }
        guard first else { return }
        shutdown(listenFD, Int32(SHUT_RDWR))
        severAll()
    }

    deinit {
        close()
        Glibc.close(listenFD)
    }
}

/// A loopback port whose SYNs go unanswered: a listening socket with a full accept queue that
/// never accepts (Linux drops further SYNs with the default `tcp_abort_on_overflow = 0`), so a
/// client's TCP connect hangs as with a firewall that drops packets. Closed on release.
public final class TCPBlackHole: Sendable {
    public let port: Int
    private let fds: [Int32]

    public var url: String { "mqtt://127.0.0.1:\(port)" }

    public init() throws {
        let l = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard l >= 0 else { throw TestSupportError("socket failed") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
                bind(l, sp, len) == 0 && listen(l, 0) == 0 ? getsockname(l, sp, &len) : -1
            }
        }
        guard rc == 0 else { Glibc.close(l); throw TestSupportError("black hole bind/listen failed") }
        var all = [l]
        // Fill the accept queue (backlog 0 still admits one or two completed connections).
        for _ in 0..<3 {
            let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard c >= 0 else { continue }
            _ = fcntl(c, F_SETFL, O_NONBLOCK)
            _ = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            all.append(c)
        }
        fds = all
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    deinit {
        for fd in fds { Glibc.close(fd) }
    }
}
