#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import IoMTSerial

/// An error from the serial port layer, with the errno and the call that failed.
public struct SerialPortError: Error, Hashable, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var code: Int32
    public init(_ operation: String, path: String, code: Int32) {
        self.operation = operation
        self.path = path
        self.code = code
    }
    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(code))) (errno \(code))"
    }
    /// The device went away (unplugged): reopen when it comes back.
    public var isGone: Bool { [EIO, ENXIO, ENODEV, ENOENT, EBADF].contains(code) }
}

/// An open serial port: raw termios, exclusive, flushed, non-blocking. Not shared between
/// threads: the link thread that opened it is the only one using it.
///
/// Raw mode per the reference's general rules: `cfmakeraw`, `CLOCAL|CREAD`, no IXON/IXOFF/IXANY
/// (IXON silently eats 0x11/0x13 data bytes), RTS/CTS only if the profile says so; `TIOCEXCL` so
/// no other process can open the same tty; `tcflush(TCIOFLUSH)` so stale bytes are not decoded.
final class SerialPort {
    let fd: Int32
    let path: String

    init(path: String, settings: LineSettings) throws(SerialPortError) {
        let fd = Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw SerialPortError("open", path: path, code: errno) }
        self.fd = fd
        self.path = path
        if ioctl(fd, UInt(TIOCEXCL)) != 0 {
            let e = errno
            Glibc.close(fd)
            throw SerialPortError("ioctl(TIOCEXCL)", path: path, code: e)
        }
        do {
            try configure(settings)
        } catch {
            Glibc.close(fd)
            throw error
        }
        tcflush(fd, TCIOFLUSH)
    }

    deinit { Glibc.close(fd) }

    func configure(_ s: LineSettings) throws(SerialPortError) {
        var t = termios()
        guard tcgetattr(fd, &t) == 0 else { throw SerialPortError("tcgetattr", path: path, code: errno) }
        guard SerialPort.apply(s, to: &t) else { throw SerialPortError("baud \(s.baud)", path: path, code: EINVAL) }
        guard tcsetattr(fd, TCSANOW, &t) == 0 else { throw SerialPortError("tcsetattr", path: path, code: errno) }
    }

    /// The termios for `s` on top of the port's current one (pure: tested without a device,
    /// since a pty forces CS8 and clears PARENB). False if the baud rate has no B* constant.
    static func apply(_ s: LineSettings, to t: inout termios) -> Bool {
        cfmakeraw(&t)
        t.c_iflag &= ~tcflag_t(IXON | IXOFF | IXANY | INPCK | ISTRIP)
        t.c_cflag |= tcflag_t(CLOCAL | CREAD)
        t.c_cflag &= ~tcflag_t(CSIZE | PARENB | PARODD | CSTOPB)
        switch s.dataBits {
        case 5: t.c_cflag |= tcflag_t(CS5)
        case 6: t.c_cflag |= tcflag_t(CS6)
        case 7: t.c_cflag |= tcflag_t(CS7)
        default: t.c_cflag |= tcflag_t(CS8)
        }
        switch s.parity {
        case .none: break
        case .odd: t.c_cflag |= tcflag_t(PARENB | PARODD)
        case .even: t.c_cflag |= tcflag_t(PARENB)
        }
        // With parity on, check it and drop a byte that fails (IGNPAR): the decoder then sees a
        // short frame and resynchronises. Without IGNPAR the byte would be read as 0x00 and could
        // turn into a plausible wrong number (a pulse-rate byte with no checksum behind it).
        t.c_iflag &= ~tcflag_t(PARMRK | IGNPAR)
        if s.parity != .none { t.c_iflag |= tcflag_t(INPCK | IGNPAR) }
        if s.stopBits == 2 { t.c_cflag |= tcflag_t(CSTOPB) }
        let crtscts = tcflag_t(0o20000000000)  // CRTSCTS
        if s.hardwareFlowControl { t.c_cflag |= crtscts } else { t.c_cflag &= ~crtscts }
        withUnsafeMutableBytes(of: &t.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        guard let speed = SerialPort.speed(s.baud) else { return false }
        cfsetispeed(&t, speed)
        cfsetospeed(&t, speed)
        return true
    }

    static func speed(_ baud: Int) -> speed_t? {
        switch baud {
        case 1200: speed_t(B1200)
        case 2400: speed_t(B2400)
        case 4800: speed_t(B4800)
        case 9600: speed_t(B9600)
        case 19200: speed_t(B19200)
        case 38400: speed_t(B38400)
        case 57600: speed_t(B57600)
        case 115200: speed_t(B115200)
        case 230400: speed_t(B230400)
        default: nil
        }
    }

    enum ReadResult { case bytes(Int), wouldBlock, gone(SerialPortError) }

    func read(into buffer: inout [UInt8]) -> ReadResult {
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n > 0 { return .bytes(n) }
        if n == 0 { return .gone(SerialPortError("read (end of file)", path: path, code: EIO)) }
        let e = errno
        if e == EAGAIN || e == EINTR { return .wouldBlock }
        return .gone(SerialPortError("read", path: path, code: e))
    }

    /// Writes everything, waiting (poll) at most `timeoutMilliseconds` for room.
    func write(_ bytes: [UInt8], timeoutMilliseconds: Int32 = 1000) throws(SerialPortError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n > 0 { offset += n; continue }
            let e = errno
            if n < 0, e == EINTR { continue }
            if n < 0, e == EAGAIN {
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if Glibc.poll(&p, 1, timeoutMilliseconds) <= 0 { throw SerialPortError("write (timed out)", path: path, code: ETIMEDOUT) }
                continue
            }
            throw SerialPortError("write", path: path, code: n < 0 ? e : EIO)
        }
    }
}
