import IoMTThreads
import IoMTHCI
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A byte pipe to an HCI controller carrying H4-framed packets.
public protocol HCITransport: Sendable {
    /// Writes one packet (may block briefly while the kernel buffer is full).
    func send(_ packet: HCIPacket) throws(HCITransportError)
    /// Packets from the controller. Finishes normally after `close()`; finishes with an error when
    /// the controller side goes away (EOF, read error) or the byte stream cannot be framed
    /// (`H4Error`: reset the controller on a fresh transport).
    var incoming: AsyncThrowingStream<HCIPacket, any Error> { get }
    /// Stops the reader thread, closes the descriptor and finishes `incoming`. Idempotent. Also
    /// happens when the task iterating `incoming` is cancelled. Without either, the reader thread
    /// (and the descriptor) live until the controller side closes.
    func close()
}

/// A transport failure, with a message that says what to do about it.
public struct HCITransportError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String
    /// errno when a system call failed.
    public var code: Int32?
    public init(_ description: String, code: Int32? = nil) { self.description = description; self.code = code }

    static func errno(_ what: String, _ e: Int32) -> HCITransportError {
        HCITransportError("\(what): \(String(cString: strerror(e)))", code: e)
    }
}

/// Where the controller is.
public enum HCITransportSpec: Sendable, Hashable, CustomStringConvertible {
    /// Linux HCI user channel on hciN (exclusive; the kernel stack lets go of the adapter).
    case userChannel(index: UInt16)
    /// H4 over a serial port.
    case uart(path: String, baud: Int, rtscts: Bool)
    /// H4 over TCP (e.g. a Bumble controller).
    case tcp(host: String, port: UInt16)

    public static let supportedBauds = [9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000,
                                        921600, 1000000, 1500000, 2000000, 3000000, 4000000]

    /// Parses `hci0`, `uart:/dev/ttyAMA0?baud=3000000&flow=rts` (flow none|rts, baud default 115200,
    /// flow default none) or `tcp:127.0.0.1:9000`.
    public init(parsing text: String) throws(HCITransportError) {
        if text.hasPrefix("hci") {
            let digits = text.dropFirst(3)
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let i = UInt16(digits) else {
                throw HCITransportError("HCI transport '\(text)': adapter index '\(digits)' is not a number (expected e.g. hci0)")
            }
            self = .userChannel(index: i)
        } else if text.hasPrefix("uart:") {
            let rest = text.dropFirst(5)
            let parts = rest.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            let path = String(parts[0])
            guard path.hasPrefix("/") else {
                throw HCITransportError("HCI transport '\(text)': UART path '\(path)' must be absolute (e.g. uart:/dev/ttyAMA0)")
            }
            var baud = 115200
            var rtscts = false
            if parts.count == 2 {
                for item in parts[1].split(separator: "&") {
                    let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    let key = String(kv[0])
                    let value = kv.count == 2 ? String(kv[1]) : ""
                    switch key {
                    case "baud":
                        guard let b = Int(value), Self.supportedBauds.contains(b) else {
                            throw HCITransportError("HCI transport '\(text)': baud '\(value)' is not supported (one of \(Self.supportedBauds.map(String.init).joined(separator: ", ")))")
                        }
                        baud = b
                    case "flow":
                        switch value {
                        case "rts", "rtscts": rtscts = true
                        case "none": rtscts = false
                        default: throw HCITransportError("HCI transport '\(text)': flow '\(value)' must be none or rts")
                        }
                    default:
                        throw HCITransportError("HCI transport '\(text)': unknown UART option '\(key)' (use baud= and flow=)")
                    }
                }
            }
            self = .uart(path: path, baud: baud, rtscts: rtscts)
        } else if text.hasPrefix("tcp:") {
            let rest = text.dropFirst(4)
            guard let colon = rest.lastIndex(of: ":") else {
                throw HCITransportError("HCI transport '\(text)': missing port (expected tcp:HOST:PORT)")
            }
            var host = String(rest[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            let portText = rest[rest.index(after: colon)...]
            guard !host.isEmpty else { throw HCITransportError("HCI transport '\(text)': empty host (expected tcp:HOST:PORT)") }
            guard let port = UInt16(portText), port != 0 else {
                throw HCITransportError("HCI transport '\(text)': port '\(portText)' is not a number 1-65535")
            }
            self = .tcp(host: host, port: port)
        } else {
            throw HCITransportError("HCI transport '\(text)': expected hciN, uart:/dev/PATH?baud=N&flow=none|rts or tcp:HOST:PORT")
        }
    }

    public var description: String {
        switch self {
        case .userChannel(let i): return "hci\(i)"
        case .uart(let p, let b, let f): return "uart:\(p)?baud=\(b)&flow=\(f ? "rts" : "none")"
        case .tcp(let h, let p): return "tcp:\(h):\(p)"
        }
    }
}

/// Opens the transport and starts its reader thread. With `snoopPath`, every packet both ways is
/// appended to that btsnoop file (created 0600: it can contain link keys).
public func openHCITransport(_ spec: HCITransportSpec, snoopPath: String? = nil) throws(HCITransportError) -> any HCITransport {
    let snoop: SnoopFile? = try snoopPath.map { (p: String) throws(HCITransportError) -> SnoopFile in try SnoopFile(path: p) }
    let fd: Int32
    switch spec {
    case .userChannel(let index): fd = try openUserChannel(index)
    case .uart(let path, let baud, let rtscts): fd = try openUART(path, baud: baud, rtscts: rtscts)
    case .tcp(let host, let port): fd = try openTCP(host, port)
    }
    do {
        return try FDTransport(fd: fd, name: spec.description, snoop: snoop)
    } catch {
        _ = Glibc.close(fd)
        throw error
    }
}

/// A transport over one file descriptor. The reader thread blocks in poll() on the descriptor and a
/// wake pipe (no timeout, no polling loop); `close()` writes to the pipe, the thread then closes the
/// descriptor under the write lock (so `send` never writes to a reused fd) and finishes the stream.
final class FDTransport: HCITransport {
    private struct WriteState { var fd: Int32; var closed = false; var isSocket: Bool }
    private let write: Mutex<WriteState>
    private let wakeWrite: Int32
    private let wakeRead: Int32
    private let closeRequested = Atomic<Bool>(false)
    let name: String
    let incoming: AsyncThrowingStream<HCIPacket, any Error>
    private let snoop: SnoopFile?

    init(fd: Int32, name: String, snoop: SnoopFile?) throws(HCITransportError) {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw .errno("pipe", errno) }
        _ = fcntl(pipeFDs[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(pipeFDs[1], F_SETFD, FD_CLOEXEC)
        var st = stat()
        let isSocket = fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK
        self.write = Mutex(WriteState(fd: fd, isSocket: isSocket))
        self.wakeWrite = pipeFDs[1]
        self.name = name
        self.snoop = snoop
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: HCIPacket.self, throwing: (any Error).self)
        self.incoming = stream
        self.wakeRead = pipeFDs[0]
        let started = startDetachedThread { [self] in self.readLoop(fd: fd, continuation: continuation) }
        // A consumer that stops listening (its task cancelled) closes the transport: nobody can read it any more.
        continuation.onTermination = { [weak self] _ in self?.close() }
        if !started {
            continuation.finish()
            throw HCITransportError("\(name): cannot start the reader thread")
        }
    }

    /// Writes under the write lock (a stuck UART with RTS/CTS holds it until the line moves). Sockets
    /// use MSG_NOSIGNAL so a vanished peer is an EPIPE error, not a SIGPIPE. The snoop record is
    /// written first so a trace shows the command before its reply.
    func send(_ packet: HCIPacket) throws(HCITransportError) {
        let bytes = packet.h4Bytes
        let result: Int32? = write.withLock { s -> Int32? in
            if s.closed { return EBADF }
            snoop?.append(packet, sent: true)
            var off = 0
            while off < bytes.count {
                let n = bytes[off...].withUnsafeBytes { b in
                    s.isSocket ? Glibc.send(s.fd, b.baseAddress, b.count, Int32(MSG_NOSIGNAL)) : Glibc.write(s.fd, b.baseAddress, b.count)
                }
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                off += n
            }
            return nil
        }
        if let e = result {
            if e == EBADF { throw HCITransportError("\(name): transport is closed", code: e) }
            throw .errno("\(name): write", e)
        }
    }

    func close() {
        if closeRequested.exchange(true, ordering: .acquiringAndReleasing) { return }
        var one: UInt8 = 1
        _ = Glibc.write(wakeWrite, &one, 1)
    }

    private func readLoop(fd: Int32, continuation: AsyncThrowingStream<HCIPacket, any Error>.Continuation) {
        var framer = H4Framer()
        var buffer = [UInt8](repeating: 0, count: 4096)
        var failure: (any Error)?
        loop: while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let r = poll(&fds, 2, -1)
            if r < 0 {
                if errno == EINTR { continue }
                failure = HCITransportError.errno("\(name): poll", errno)
                break
            }
            if fds[1].revents != 0 { break }  // close() requested
            if fds[0].revents == 0 { continue }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                failure = HCITransportError.errno("\(name): read", errno)
                break
            }
            if n == 0 {
                failure = HCITransportError("\(name): the controller side closed the connection")
                break
            }
            do {
                for p in try framer.push(buffer[0..<n]) {
                    snoop?.append(p, sent: false)
                    continuation.yield(p)
                }
            } catch {
                failure = HCITransportError("\(name): \(error)")
                break loop
            }
        }
        write.withLock { s in
            s.closed = true
            _ = Glibc.close(s.fd)
        }
        if closeRequested.load(ordering: .acquiring) {
            continuation.finish()
        } else {
            continuation.finish(throwing: failure)
        }
    }

    deinit {
        // The reader thread holds `self` until it ends, so both pipe ends are idle here.
        _ = Glibc.close(wakeWrite)
        _ = Glibc.close(wakeRead)
    }
}

