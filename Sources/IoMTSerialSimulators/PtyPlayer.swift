#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// A pseudo-terminal standing in for a USB-serial device: the agent opens the slave (through a
/// symlink, as udev's `/dev/iomt/...`), a `PtyPlayer` plays a `SimulatedDevice` on the master
/// in real time. Unplug = close the master (the slave then reads EIO / POLLHUP); replug = a new
/// pty with the symlink swapped atomically (rename) at the same path.
public final class PtyDevice: Sendable {
    public let masterFD: Int32
    public let slavePath: String
    private let links = Mutex<[String]>([])

    public init() throws(PtyError) {
        // Linux devpts directly (Glibc's module does not export posix_openpt/ptsname_r):
        // open the multiplexer, unlock the slave (TIOCSPTLCK), ask its number (TIOCGPTN).
        let fd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { throw PtyError("open /dev/ptmx", errno) }
        var unlock: Int32 = 0
        var number: UInt32 = 0
        guard ioctl(fd, 0x4004_5431 /* TIOCSPTLCK */, &unlock) == 0,
              ioctl(fd, 0x8004_5430 /* TIOCGPTN */, &number) == 0 else {
            let e = errno
            close(fd)
            throw PtyError("ioctl(TIOCSPTLCK/TIOCGPTN)", e)
        }
        masterFD = fd
        slavePath = "/dev/pts/\(number)"
        // Raw from the start, so nothing the device sends before the agent opens it is echoed or mangled.
        let slave = open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        if slave >= 0 {
            var t = termios()
            tcgetattr(slave, &t)
            cfmakeraw(&t)
            tcsetattr(slave, TCSANOW, &t)
            close(slave)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Points `link` at this pty's slave, atomically replacing whatever was there.
    public func link(at path: String) throws(PtyError) {
        let tmp = path + ".new"
        unlink(tmp)
        guard symlink(slavePath, tmp) == 0 else { throw PtyError("symlink", errno) }
        guard rename(tmp, path) == 0 else { throw PtyError("rename", errno) }
        links.withLock { $0.append(path) }
    }

    /// Unplug: removes the symlinks that still point here (as udev removes a device's links when
    /// it goes: the pty number is reused by the next pty, like a ttyUSB number), then closes the
    /// master side.
    public func unplug() {
        for link in links.withLock({ $0 }) {
            var buffer = [CChar](repeating: 0, count: 256)
            let n = readlink(link, &buffer, buffer.count - 1)
            if n > 0, String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == slavePath { unlink(link) }
        }
        close(masterFD)
    }
}

public struct PtyError: Error, CustomStringConvertible {
    public var call: String
    public var code: Int32
    init(_ call: String, _ code: Int32) { self.call = call; self.code = code }
    public var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// Plays a simulated device on a pty master on its own thread, at the device's real rate
/// (test-side code: the simulated device, not the agent).
public final class PtyPlayer: Sendable {
    public let pty: PtyDevice
    private let state = PlayerState()
    private let thread: pthread_t?

    final class PlayerState: Sendable {
        let stop = Atomic<Bool>(false)
        let finished = Atomic<Bool>(false)
        let sent = Atomic<Int>(0)
        let final = Mutex<(any SimulatedDevice)?>(nil)
    }

    final class Context: Sendable {
        let device: any SimulatedDevice
        let fd: Int32
        let state: PlayerState
        init(device: any SimulatedDevice, fd: Int32, state: PlayerState) {
            self.device = device
            self.fd = fd
            self.state = state
        }

        func run() {
            var device = self.device
            let period = Int64(max(1, device.periodMilliseconds))
            var next = now() + period
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !state.stop.load(ordering: .relaxed) {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, Int32(clamping: max(0, min(next - now(), 50))))
                if p.revents & Int16(POLLIN) != 0 {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n > 0 { send(device.hostSent(Array(buffer[0..<n]))) }
                }
                if now() >= next {
                    send(device.tick())
                    next += period
                }
            }
            state.final.withLock { $0 = device }
            state.finished.store(true, ordering: .releasing)
        }

        func send(_ bytes: [UInt8]) {
            guard !bytes.isEmpty else { return }
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { state.sent.add(n, ordering: .relaxed) }
        }

        func now() -> Int64 {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
        }
    }

    public init(_ device: any SimulatedDevice, on pty: PtyDevice) {
        self.pty = pty
        let ctx = Unmanaged.passRetained(Context(device: device, fd: pty.masterFD, state: state)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Context>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, ctx)
        if rc == 0 { self.thread = thread } else {
            Unmanaged<Context>.fromOpaque(ctx).release()
            self.thread = nil
            state.finished.store(true, ordering: .releasing)
        }
    }

    /// Bytes written so far.
    public var bytesSent: Int { state.sent.load(ordering: .relaxed) }

    /// Stops playing (the master stays open: `pty.unplug()` unplugs) and returns the device's
    /// final state (e.g. how many commands it received).
    @discardableResult
    public func stop() -> (any SimulatedDevice)? {
        // Joined once (the first stop); the player thread notices the flag within 50 ms.
        if !state.stop.exchange(true, ordering: .acquiringAndReleasing), let thread {
            pthread_join(thread, nil)
        }
        return state.final.withLock { $0 }
    }
}
