#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Wakes a link thread blocked in poll(2): a self-pipe. Both ends are closed when the last
/// reference goes, so a late `signal()` never writes to a reused descriptor.
final class WakeSignal: Sendable {
    let readFD: Int32
    let writeFD: Int32

    init() throws(SerialPortError) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw SerialPortError("pipe", path: "", code: errno) }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        readFD = fds[0]
        writeFD = fds[1]
    }

    deinit {
        close(readFD)
        close(writeFD)
    }

    func signal() {
        var one: UInt8 = 1
        _ = write(writeFD, &one, 1)
    }

    /// Whether `signal()` was called (the byte is left in the pipe, so every later check agrees).
    var isSignalled: Bool {
        var p = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0
    }
}

/// inotify on one directory: wakes the link as soon as a device node or symlink appears there
/// (udev creating `/dev/iomt/oximeter-1`, a new `/dev/ttyUSB0`), so a replugged device is picked
/// up at once; the reconnect back-off is only the fallback.
final class DirectoryWatch {
    let fd: Int32

    init?(directory: String) {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { return nil }
        let mask = UInt32(IN_CREATE | IN_MOVED_TO | IN_ATTRIB)
        guard inotify_add_watch(fd, directory, mask) >= 0 else {
            close(fd)
            return nil
        }
        self.fd = fd
    }

    deinit { close(fd) }

    func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
    }
}

