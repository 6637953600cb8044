import CBluetooth
import IoMTHCI
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// H4 over TCP with TCP_NODELAY (HCI packets are small and latency matters).
func openTCP(_ host: String, _ port: UInt16) throws(HCITransportError) -> Int32 {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var res: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &res)
    guard rc == 0, let first = res else {
        throw HCITransportError("tcp:\(host):\(port): cannot resolve '\(host)': \(String(cString: gai_strerror(rc)))")
    }
    defer { freeaddrinfo(res) }
    var lastErr: Int32 = 0
    var ai: UnsafeMutablePointer<addrinfo>? = first
    while let a = ai {
        let fd = socket(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd >= 0 {
            if connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 {
                var one: Int32 = 1
                _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            lastErr = errno
            _ = Glibc.close(fd)
        } else {
            lastErr = errno
        }
        ai = a.pointee.ai_next
    }
    throw HCITransportError("tcp:\(host):\(port): connect failed: \(String(cString: strerror(lastErr))) (is the controller listening?)", code: lastErr)
}

/// termios speed constant for a baud rate.
func termiosSpeed(_ baud: Int) -> speed_t? {
    switch baud {
    case 9600: return speed_t(B9600)
    case 19200: return speed_t(B19200)
    case 38400: return speed_t(B38400)
    case 57600: return speed_t(B57600)
    case 115200: return speed_t(B115200)
    case 230400: return speed_t(B230400)
    case 460800: return speed_t(B460800)
    case 500000: return speed_t(B500000)
    case 576000: return speed_t(B576000)
    case 921600: return speed_t(B921600)
    case 1000000: return speed_t(B1000000)
    case 1500000: return speed_t(B1500000)
    case 2000000: return speed_t(B2000000)
    case 3000000: return speed_t(B3000000)
    case 4000000: return speed_t(B4000000)
    default: return nil
    }
}

/// H4 over a UART: raw termios (8N1, no echo, no translation), the baud rate, CRTSCTS when asked,
/// and a flush of stale bytes on open (a controller on a serial line has no "host went away"
/// signal; Bumble reference quirk 10). Send HCI_Reset next.
func openUART(_ path: String, baud: Int, rtscts: Bool) throws(HCITransportError) -> Int32 {
    guard let speed = termiosSpeed(baud) else {
        throw HCITransportError("uart:\(path): baud \(baud) is not supported")
    }
    // O_NONBLOCK so open() does not wait for carrier before CLOCAL is set; cleared below.
    let fd = Glibc.open(path, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else {
        let e = errno
        let hint = e == EACCES ? " (add the user to the dialout group)" : e == ENOENT ? " (no such device)" : ""
        throw HCITransportError("uart:\(path): open failed: \(String(cString: strerror(e)))\(hint)", code: e)
    }
    var t = termios()
    guard tcgetattr(fd, &t) == 0 else {
        let e = errno
        _ = Glibc.close(fd)
        throw HCITransportError("uart:\(path): not a terminal: \(String(cString: strerror(e)))", code: e)
    }
    cfmakeraw(&t)
    t.c_cflag |= tcflag_t(CLOCAL | CREAD)
    t.c_cflag &= ~tcflag_t(CSTOPB | PARENB)
    if rtscts { t.c_cflag |= tcflag_t(CRTSCTS) } else { t.c_cflag &= ~tcflag_t(CRTSCTS) }
    withUnsafeMutableBytes(of: &t.c_cc) { cc in
        cc[Int(VMIN)] = 1
        cc[Int(VTIME)] = 0
    }
    cfsetispeed(&t, speed)
    cfsetospeed(&t, speed)
    guard tcsetattr(fd, TCSANOW, &t) == 0 else {
        let e = errno
        _ = Glibc.close(fd)
        throw HCITransportError("uart:\(path): cannot set \(baud) baud: \(String(cString: strerror(e)))", code: e)
    }
    _ = tcflush(fd, TCIOFLUSH)
    let flags = fcntl(fd, F_GETFL)
    _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)  // the reader thread blocks (after poll) and writes block
    return fd
}

/// Message for a failing user-channel call, with the fix.
func userChannelMessage(_ index: UInt16, _ step: String, _ e: Int32) -> String {
    switch e {
    case EAFNOSUPPORT:
        return "hci\(index): this kernel has no Bluetooth support (AF_BLUETOOTH unavailable); use a UART or TCP controller, or load the bluetooth module"
    case ENODEV:
        return "hci\(index): adapter hci\(index) not found (see `ls /sys/class/bluetooth`)"
    case EBUSY, EALREADY:
        return "hci\(index): hci\(index) is in use, probably by bluetoothd: stop it (`systemctl stop bluetooth`) or give the agent a second adapter"
    case EPERM, EACCES:
        return "hci\(index): needs CAP_NET_ADMIN (the systemd unit grants it with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)"
    default:
        return "hci\(index): \(step) failed: \(String(cString: strerror(e)))"
    }
}

/// The Linux HCI user channel (exclusive raw access; the kernel's own stack lets go of the adapter):
/// socket(AF_BLUETOOTH, SOCK_RAW, BTPROTO_HCI), HCIDEVDOWN, bind to HCI_CHANNEL_USER. Each read and
/// write is one H4-indicated packet. NOT tested against a real adapter (no Bluetooth in the test kernel).
func openUserChannel(_ index: UInt16) throws(HCITransportError) -> Int32 {
    let fd = socket(AF_BLUETOOTH, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), BTPROTO_HCI)
    guard fd >= 0 else {
        let e = errno
        throw HCITransportError(userChannelMessage(index, "socket(AF_BLUETOOTH)", e), code: e)
    }
    if ioctl(fd, UInt(iomt_HCIDEVDOWN()), Int32(index)) < 0 {
        let e = errno
        if e != EALREADY {  // already down is fine
            _ = Glibc.close(fd)
            throw HCITransportError(userChannelMessage(index, "HCIDEVDOWN", e), code: e)
        }
    }
    var addr = sockaddr_hci()
    addr.hci_family = sa_family_t(AF_BLUETOOTH)
    addr.hci_dev = index
    addr.hci_channel = UInt16(HCI_CHANNEL_USER)
    let rc = withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_hci>.size))
        }
    }
    guard rc == 0 else {
        let e = errno
        _ = Glibc.close(fd)
        throw HCITransportError(userChannelMessage(index, "bind(HCI_CHANNEL_USER)", e), code: e)
    }
    return fd
}
