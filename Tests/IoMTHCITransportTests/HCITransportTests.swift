import IoMTHCI
import IoMTTestSupport
import Synchronization
import Testing
@testable import IoMTHCITransport
#if canImport(Glibc)
import Glibc
#endif

private func expectError(_ text: String, contains fragment: String) {
    do {
        _ = try HCITransportSpec(parsing: text)
        Issue.record("'\(text)' parsed")
    } catch {
        #expect(error.description.contains(fragment), "\(error.description)")
    }
}

/// Waits for the first incoming event for which `match` holds (bounded by a timeout task).
private func firstEvent(_ t: any HCITransport, timeout: Duration = .seconds(10),
                        _ match: @escaping @Sendable (HCIEvent) -> Bool) async throws -> HCIEvent? {
    try await withThrowingTaskGroup(of: HCIEvent?.self) { group in
        group.addTask {
            for try await p in t.incoming {
                if case .event(let code, let params) = p, let e = try? HCIEvent.decode(code: code, parameters: params), match(e) {
                    return e
                }
            }
            return nil
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let r = try await group.next() ?? nil
        group.cancelAll()
        return r
    }
}

@Suite struct HCITransportSpecTests {
    @Test func parsesTheThreeForms() throws {
        #expect(try HCITransportSpec(parsing: "hci0") == .userChannel(index: 0))
        #expect(try HCITransportSpec(parsing: "hci12") == .userChannel(index: 12))
        #expect(try HCITransportSpec(parsing: "uart:/dev/ttyAMA0?baud=3000000&flow=rts")
                == .uart(path: "/dev/ttyAMA0", baud: 3_000_000, rtscts: true))
        #expect(try HCITransportSpec(parsing: "uart:/dev/ttyUSB0") == .uart(path: "/dev/ttyUSB0", baud: 115_200, rtscts: false))
        #expect(try HCITransportSpec(parsing: "uart:/dev/ttyS1?flow=none&baud=921600") == .uart(path: "/dev/ttyS1", baud: 921_600, rtscts: false))
        #expect(try HCITransportSpec(parsing: "tcp:127.0.0.1:9000") == .tcp(host: "127.0.0.1", port: 9000))
        #expect(try HCITransportSpec(parsing: "tcp:[::1]:9000") == .tcp(host: "::1", port: 9000))
        #expect(HCITransportSpec.uart(path: "/dev/x", baud: 460800, rtscts: true).description == "uart:/dev/x?baud=460800&flow=rts")
    }

    @Test func errorsNameTheBadPart() {
        expectError("hci", contains: "adapter index")
        expectError("hcix", contains: "'x'")
        expectError("uart:/dev/ttyAMA0?baud=12345", contains: "baud '12345'")
        expectError("uart:/dev/ttyAMA0?flow=xon", contains: "flow 'xon'")
        expectError("uart:/dev/ttyAMA0?parity=even", contains: "unknown UART option 'parity'")
        expectError("uart:ttyAMA0", contains: "must be absolute")
        expectError("tcp:127.0.0.1", contains: "port '")
        expectError("tcp:localhost:99999", contains: "port '99999'")
        expectError("tcp::9000", contains: "empty host")
        expectError("usb:0", contains: "expected hciN")
    }
}

@Suite(.serialized) struct HCITransportTests {
    /// This machine's kernel has no Bluetooth, so only the error path of the user channel is tested.
    /// The user channel is UNTESTED against a real adapter.
    @Test func userChannelWithoutKernelBluetoothSaysSo() {
        do {
            let t = try openHCITransport(.userChannel(index: 0))
            t.close()
            Issue.record("AF_BLUETOOTH unexpectedly available: this test assumes a kernel without Bluetooth")
        } catch {
            #expect(error.code == EAFNOSUPPORT)
            #expect(error.description.contains("this kernel has no Bluetooth support (AF_BLUETOOTH unavailable)"))
        }
    }

    @Test func userChannelMessagesCarryTheFix() {
        #expect(userChannelMessage(1, "bind", ENODEV).contains("adapter hci1 not found (see `ls /sys/class/bluetooth`)"))
        #expect(userChannelMessage(0, "bind", EBUSY).contains("systemctl stop bluetooth"))
        #expect(userChannelMessage(0, "bind", EALREADY).contains("in use, probably by bluetoothd"))
        #expect(userChannelMessage(0, "ioctl", EPERM).contains("CAP_NET_ADMIN"))
        #expect(userChannelMessage(0, "ioctl", EACCES).contains("AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW"))
    }

    @Test func tcpConnectRefusedIsClear() throws {
        let port = try freeLoopbackPort()
        do {
            _ = try openHCITransport(.tcp(host: "127.0.0.1", port: UInt16(port)))
            Issue.record("connected to a closed port")
        } catch {
            #expect(error.description.contains("connect failed"))
        }
    }

    /// A real Bumble 0.0.236 controller served as H4 over TCP (Fixtures/bumble_tcp_controller.py).
    @Test func tcpTransportAgainstBumbleController() async throws {
        let python = "/work/main/.venv/bin/python"
        guard access(python, X_OK) == 0 else {
            Issue.record("bumble venv missing at \(python)"); return
        }
        let script = String(#filePath.dropLast("HCITransportTests.swift".count)) + "Fixtures/bumble_tcp_controller.py"
        let child = try ChildProcess([python, script])
        let ready = await child.output.wait(timeout: .seconds(30)) { $0.contains("PORT ") && $0.contains("\n") }
        guard ready else {
            await child.kill9()
            Issue.record("controller did not start: \(child.output.value)"); return
        }
        let line = child.output.value.split(separator: "\n").first { $0.hasPrefix("PORT ") }
        let port = try #require(line.flatMap { UInt16($0.dropFirst(5)) })
        let tmp = try TempDir()
        let snoop = tmp.file("hci.btsnoop")
        let t = try openHCITransport(.tcp(host: "127.0.0.1", port: port), snoopPath: snoop)

        try t.send(.command(.reset))
        let reset = try await firstEvent(t) { if case .commandComplete(_, .reset, _) = $0 { return true }; return false }
        #expect(reset == .commandComplete(numHCICommandPackets: 1, opcode: .reset, returnParameters: [0]))

        try t.send(.command(.readBDADDR))
        let addr = try await firstEvent(t) { if case .commandComplete(_, .readBDADDR, _) = $0 { return true }; return false }
        guard case .commandComplete(_, _, let rp)? = addr else { Issue.record("no Read BD_ADDR reply"); return }
        let result = try ReadBDADDRResult.decode(rp)
        #expect(result.status == .success)
        #expect(result.address.description == "F0:F1:F2:F3:F4:F5")

        t.close()
        // After close the stream finishes (the reader thread is unblocked) and send fails.
        var drained = 0
        for try await _ in t.incoming { drained += 1 }
        #expect(throws: HCITransportError.self) { try t.send(.command(.reset)) }
        await child.terminate()

        // The snoop file: 0600, btsnoop header, 4 records (2 sent commands, 2 received events).
        var st = stat()
        #expect(stat(snoop, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        let bytes = try #require(readAll(snoop))
        #expect(Array(bytes.prefix(16)) == BTSnoop.fileHeader)
        let records = parseRecords(Array(bytes.dropFirst(16)))
        #expect(records.count == 4)
        #expect(records.first?.flags == 2 && records.first?.data == HCIPacket.command(.reset).h4Bytes)
        #expect(records.filter { $0.flags == 3 }.count == 2)
    }

    /// H4 over a pty pair with a fake controller thread answering HCI_Reset.
    @Test func uartTransportOverPty() async throws {
        // Linux devpts directly (Glibc's module does not export posix_openpt): open the multiplexer,
        // unlock the slave (TIOCSPTLCK), ask its number (TIOCGPTN).
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        try #require(master >= 0)
        var unlock: Int32 = 0
        var number: UInt32 = 0
        try #require(ioctl(master, 0x4004_5431, &unlock) == 0 && ioctl(master, 0x8004_5430, &number) == 0)
        let slave = "/dev/pts/\(number)"
        // Make the master side raw too so bytes pass unchanged.
        var tio = termios()
        tcgetattr(master, &tio)
        cfmakeraw(&tio)
        tcsetattr(master, TCSANOW, &tio)

        let t = try openHCITransport(.uart(path: slave, baud: 3_000_000, rtscts: false))
        let received = Mutex<[UInt8]>([])
        let controller = Task.detached {
            var framer = H4Framer()
            var buf = [UInt8](repeating: 0, count: 256)
            while true {
                let n = read(master, &buf, buf.count)
                if n <= 0 { return }
                received.withLock { $0 += buf[0..<n] }
                guard let packets = try? framer.push(buf[0..<n]) else { return }
                for case .command(let c) in packets where c.opcode == .reset {
                    let reply = HCIPacket.event(code: 0x0E, parameters: [1, 0x03, 0x0C, 0]).h4Bytes
                    _ = reply.withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
                    return
                }
            }
        }
        try t.send(.command(.reset))
        let ev = try await firstEvent(t) { if case .commandComplete(_, .reset, _) = $0 { return true }; return false }
        #expect(ev == .commandComplete(numHCICommandPackets: 1, opcode: .reset, returnParameters: [0]))
        await controller.value
        #expect(received.withLock { $0 } == hex("01030c00"))
        t.close()
        for try await _ in t.incoming {}
        close(master)
    }

    @Test func uartOnANonTerminalIsAClearError() throws {
        do {
            _ = try openHCITransport(.uart(path: "/dev/null", baud: 115_200, rtscts: false))
            Issue.record("opened /dev/null as a UART")
        } catch {
            #expect(error.description.contains("not a terminal"))
        }
        do {
            _ = try openHCITransport(.uart(path: "/nonexistent/tty", baud: 115_200, rtscts: false))
            Issue.record("opened a missing path")
        } catch {
            #expect(error.description.contains("no such device"))
        }
    }

    @Test func peerCloseFinishesTheStreamWithAnError() async throws {
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        let t = try FDTransport(fd: fds[0], name: "test", snoop: nil)
        let ev = HCIPacket.event(code: 0x10, parameters: [7]).h4Bytes
        _ = ev.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
        close(fds[1])
        var got: [HCIPacket] = []
        do {
            for try await p in t.incoming { got.append(p) }
            Issue.record("stream finished without an error")
        } catch {
            #expect("\(error)".contains("closed the connection"))
        }
        #expect(got == [.event(code: 0x10, parameters: [7])])
        t.close()
    }

    @Test func garbageFromTheControllerFinishesTheStreamWithTheH4Error() async throws {
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        let t = try FDTransport(fd: fds[0], name: "test", snoop: nil)
        _ = [UInt8(0x09), 0, 0].withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
        do {
            for try await _ in t.incoming {}
            Issue.record("no error")
        } catch {
            #expect("\(error)".contains("unknown packet indicator 0x9"))
        }
        close(fds[1])
        t.close()
    }
}

func hex(_ s: String) -> [UInt8] {
    let c = Array(s.filter { !$0.isWhitespace })
    return stride(from: 0, to: c.count, by: 2).compactMap { UInt8(String(c[$0...$0 + 1]), radix: 16) }
}

func readAll(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

struct SnoopRecord { var flags: UInt32; var data: [UInt8] }

func parseRecords(_ b: [UInt8]) -> [SnoopRecord] {
    func be32(_ i: Int) -> UInt32 { (0..<4).reduce(0) { $0 << 8 | UInt32(b[i + $1]) } }
    var out: [SnoopRecord] = []
    var i = 0
    while i + 24 <= b.count {
        let len = Int(be32(i + 4))
        guard i + 24 + len <= b.count else { break }
        out.append(SnoopRecord(flags: be32(i + 8), data: Array(b[(i + 24)..<(i + 24 + len)])))
        i += 24 + len
    }
    return out
}

@Suite struct HCITransportCancellationTests {
    @Test func cancellingTheConsumerClosesTheTransport() async throws {
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        let t = try FDTransport(fd: fds[0], name: "test", snoop: nil)
        let consumer = Task { for try await _ in t.incoming {} }
        consumer.cancel()
        _ = await consumer.result
        // The peer sees EOF once the reader thread has closed its end (a blocking read, no polling).
        let peer = fds[1]
        let eof = await Task.detached { () -> Int in
            var b: UInt8 = 0
            return read(peer, &b, 1)
        }.value
        #expect(eof == 0)
        #expect(throws: HCITransportError.self) { try t.send(.command(.reset)) }
        close(peer)
    }
}

@Suite struct SnoopFileTests {
    @Test func reopeningAppendsRecordsWithoutASecondHeader() throws {
        let tmp = try TempDir()
        let path = tmp.file("again.btsnoop")
        do {
            let s = try SnoopFile(path: path)
            s.append(.command(.reset), sent: true)
        }
        do {
            let s = try SnoopFile(path: path)
            s.append(.event(code: 0x0E, parameters: [1, 3, 0x0C, 0]), sent: false)
        }
        let bytes = try #require(readAll(path))
        #expect(Array(bytes.prefix(16)) == BTSnoop.fileHeader)
        let records = parseRecords(Array(bytes.dropFirst(16)))
        #expect(records.map(\.flags) == [2, 3])
        #expect(records.last?.data == hex("040e0401030c00"))
    }

    @Test func everyListedBaudHasATermiosSpeed() {
        for b in HCITransportSpec.supportedBauds { #expect(termiosSpeed(b) != nil, "\(b)") }
        #expect(termiosSpeed(12345) == nil)
    }
}

@Suite struct HCITransportWriteTests {
    @Test func sendingToAVanishedPeerIsAnErrorNotSIGPIPE() async throws {
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        let t = try FDTransport(fd: fds[0], name: "test", snoop: nil)
        close(fds[1])
        // Either EPIPE from the write or "closed" once the reader saw EOF: never a signal.
        #expect(throws: HCITransportError.self) {
            for _ in 0..<3 { try t.send(.command(.reset)) }
        }
        t.close()
    }
}
