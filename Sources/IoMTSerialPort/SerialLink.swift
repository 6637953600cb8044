#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import IoMTCore
import IoMTSerial

/// Where a serial device is found.
public enum PortSpec: Hashable, Sendable, CustomStringConvertible {
    /// A fixed path: `/dev/iomt/oximeter-1`, `/dev/serial/by-id/...`.
    case path(String)
    /// A USB identity read from sysfs; the first matching tty is used.
    case usb(USBMatch)

    public var description: String {
        switch self {
        case .path(let p): p
        case .usb(let m): "usb \(m)"
        }
    }
}

/// What the link thread reports to the async side.
enum LinkEvent: Sendable {
    case connected(path: String, settings: LineSettings)
    case lineSettingsChanged(LineSettings)
    case disconnected(reason: String)
    case waiting(reason: String)
    case decoded(DecoderEvent, receivedAt: Timestamp)
}

/// The blocking side of one serial device, run on its own thread: resolve the port, open it raw
/// and exclusive, run the device driver on received bytes and its timers, detect unplug (read 0,
/// EIO/ENXIO, POLLHUP/POLLERR) at once, and reopen with back-off, woken early by inotify when
/// a node appears. Blocks only in poll(2), with the driver's next deadline as the timeout.
struct SerialLink: Sendable {
    var port: PortSpec
    var profile: SerialProfile
    var lineSettings: [LineSettings]
    var reconnectMinMilliseconds: Int64
    var reconnectMaxMilliseconds: Int64
    var sysfs: SysfsScanner
    var clock: any WallClock
    var watermark: @Sendable (String) -> OneTouchWatermark?

    func run(emit: @Sendable (LinkEvent) -> Void, wake: WakeSignal) {
        let watchDir: String
        switch port {
        case .path(let p): watchDir = dirName(p)
        case .usb: watchDir = sysfs.devRoot
        }
        var watch = DirectoryWatch(directory: watchDir)
        var backoff = reconnectMinMilliseconds
        var lastWaiting: String?
        while !wake.isSignalled {
            if watch == nil { watch = DirectoryWatch(directory: watchDir) }
            let path: String
            switch port {
            case .path(let p): path = p
            case .usb(let m):
                // More than one match is refused, not resolved by picking one: readings must never
                // be attributed to the wrong patient's device.
                let matches = sysfs.devices().filter { $0.matches(m) }
                if matches.count > 1 {
                    let reason = "\(matches.count) USB serial devices match \(m) (\(matches.map(\.devicePath).joined(separator: ", "))); add the serial number to match, or use port"
                    if reason != lastWaiting { emit(.waiting(reason: reason)); lastWaiting = reason }
                    if !waitForChange(backoff, watch, wake) { return }
                    backoff = min(backoff * 2, reconnectMaxMilliseconds)
                    continue
                }
                guard let found = matches.first?.devicePath else {
                    let reason = "no USB serial device matches \(m)"
                    if reason != lastWaiting { emit(.waiting(reason: reason)); lastWaiting = reason }
                    if !waitForChange(backoff, watch, wake) { return }
                    backoff = min(backoff * 2, reconnectMaxMilliseconds)
                    continue
                }
                path = found
            }
            let serialPort: SerialPort
            do {
                serialPort = try SerialPort(path: path, settings: lineSettings[0])
            } catch {
                let reason = error.code == ENOENT ? "\(path) is not present" : error.description
                if reason != lastWaiting { emit(.waiting(reason: reason)); lastWaiting = reason }
                if !waitForChange(backoff, watch, wake) { return }
                backoff = min(backoff * 2, reconnectMaxMilliseconds)
                continue
            }
            lastWaiting = nil
            backoff = reconnectMinMilliseconds
            emit(.connected(path: path, settings: lineSettings[0]))
            let reason = session(serialPort, emit: emit, wake: wake)
            guard let reason else { return }  // woken: stop
            emit(.disconnected(reason: reason))
            watch?.drain()
            if !waitForChange(reconnectMinMilliseconds, watch, wake) { return }
        }
    }

    /// Runs the driver on an open port until it goes away (returns why) or the link is woken (nil).
    private func session(_ port: SerialPort, emit: @Sendable (LinkEvent) -> Void, wake: WakeSignal) -> String? {
        var driver = profile.makeDriver(watermark)
        var alternative = 0
        var now = monotonicMilliseconds()
        var lastProgress = now
        var buffer = [UInt8](repeating: 0, count: 4096)
        do {
            try port.write(driver.opened(atMilliseconds: now))
        } catch {
            return error.description
        }
        while true {
            now = monotonicMilliseconds()
            var deadline = driver.nextDeadline
            if lineSettings.count > 1, profile.noFrameTimeoutMilliseconds != .max {
                deadline = min(deadline, lastProgress + profile.noFrameTimeoutMilliseconds)
            }
            let timeout: Int32 = deadline == .max ? -1 : Int32(clamping: max(0, deadline - now))
            var fds = [pollfd(fd: port.fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wake.readFD, events: Int16(POLLIN), revents: 0)]
            let rc = poll(&fds, 2, timeout)
            if rc < 0, errno != EINTR { return SerialPortError("poll", path: port.path, code: errno).description }
            if fds[1].revents != 0 { return nil }
            now = monotonicMilliseconds()
            if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR | POLLNVAL) != 0 {
                switch port.read(into: &buffer) {
                case .bytes(let n):
                    let (events, send) = driver.received(buffer[0..<n], atMilliseconds: now)
                    if !events.isEmpty {
                        let at = clock.now()
                        for e in events {
                            emit(.decoded(e, receivedAt: at))
                            switch e {
                            case .reading, .state, .info: lastProgress = now
                            default: break
                            }
                        }
                    }
                    if !send.isEmpty {
                        do { try port.write(send) } catch { return error.description }
                    }
                case .wouldBlock:
                    if fds[0].revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 {
                        return "the device hung up"
                    }
                case .gone(let error):
                    return error.description
                }
            }
            let due = driver.tick(atMilliseconds: now)
            if !due.isEmpty {
                do { try port.write(due) } catch { return error.description }
            }
            if lineSettings.count > 1, profile.noFrameTimeoutMilliseconds != .max,
               now - lastProgress >= profile.noFrameTimeoutMilliseconds {
                // Nothing decodes: try the profile's next line settings (Contec 19200 8O1 → 4800 8N1).
                alternative = (alternative + 1) % lineSettings.count
                do { try port.configure(lineSettings[alternative]) } catch { return error.description }
                tcflush(port.fd, TCIOFLUSH)
                emit(.lineSettingsChanged(lineSettings[alternative]))
                driver = profile.makeDriver(watermark)
                lastProgress = now
                do { try port.write(driver.opened(atMilliseconds: now)) } catch { return error.description }
            }
        }
    }

    /// Waits up to `milliseconds` for a node to appear in the watched directory. False if woken to stop.
    private func waitForChange(_ milliseconds: Int64, _ watch: DirectoryWatch?, _ wake: WakeSignal) -> Bool {
        var fds = [pollfd(fd: wake.readFD, events: Int16(POLLIN), revents: 0)]
        if let watch { fds.append(pollfd(fd: watch.fd, events: Int16(POLLIN), revents: 0)) }
        _ = poll(&fds, nfds_t(fds.count), Int32(clamping: milliseconds))
        if fds[0].revents != 0 { return false }
        if fds.count > 1, fds[1].revents != 0 {
            watch?.drain()
            // udev creates the node, then sets its group and mode: give it a moment.
            var p = pollfd(fd: wake.readFD, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 20) > 0 { return false }
        }
        return true
    }
}
