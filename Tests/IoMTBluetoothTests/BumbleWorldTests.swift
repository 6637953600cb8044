import IoMTTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The virtual Bluetooth world (scripts/ble/virtual_world.py) works on its own, before our host
/// exists: raw H4 over TCP reaches a controller that sees the simulated peripherals advertise,
/// control commands answer, and Bumble's own host (scripts/ble/check_world.py) talks to every
/// peripheral kind end to end. One world per test (fresh controllers).
@Suite("BumbleWorld", .serialized)
struct BumbleWorldTests {
    static let heartRate = BumbleWorld.Peripheral(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01",
                                                 options: ["serial": "HR-0001", "manufacturer": "Acme"])
    static let thermometer = BumbleWorld.Peripheral(kind: .thermometerSecure, name: "t1", address: "F0:F1:F2:F3:F4:02",
                                                   options: ["serial": "TH-0002"])

    @Test("raw H4 over TCP: HCI_Reset completes and a scan reports the heart-rate peripheral's adverts",
          .timeLimit(.minutes(2)))
    func rawH4ResetAndScan() async throws {
        let world = try await BumbleWorld.start(spec: .init(hosts: 1, peripherals: [Self.heartRate, Self.thermometer]))
        defer { world.kill() }
        #expect(world.hostPorts.count == 1)
        #expect(world.address(of: "hr1") == "F0:F1:F2:F3:F4:01")
        #expect(world.addressType(of: "hr1") == "random")

        let socket = try H4Client(port: world.hostPorts[0])
        defer { socket.close() }
        try socket.send([0x01, 0x03, 0x0C, 0x00])  // HCI_Reset
        let reset = try socket.readPacket(timeoutMS: 5000)
        #expect(reset.count == 7)
        #expect(reset[0] == 0x04 && reset[1] == 0x0E && reset[2] == 0x04)  // Command Complete, 4 octets
        #expect(Array(reset[4...]) == [0x03, 0x0C, 0x00])  // opcode 0x0C03, status success

        // LE Set Random Address C0:00:00:00:00:42, LE Set Scan Parameters (active, random own
        // address), LE Set Scan Enable: each completes with success.
        let commands: [[UInt8]] = [
            [0x01, 0x05, 0x20, 0x06, 0x42, 0x00, 0x00, 0x00, 0x00, 0xC0],
            [0x01, 0x0B, 0x20, 0x07, 0x01, 0x10, 0x00, 0x10, 0x00, 0x01, 0x00],
            [0x01, 0x0C, 0x20, 0x02, 0x01, 0x00],
        ]
        for command in commands {
            try socket.send(command)
            let event = try socket.readPacket(timeoutMS: 5000, skippingLEMeta: true)
            #expect(event.count == 7 && event[1] == 0x0E)
            #expect(Array(event[4...]) == [command[1], command[2], 0x00])
        }
        let wanted: [UInt8] = [0x01, 0xF4, 0xF3, 0xF2, 0xF1, 0xF0]  // F0:F1:F2:F3:F4:01 on the wire
        var seen = false
        for _ in 0..<200 where !seen {  // a bounded number of events, each read with a deadline
            let event = try socket.readPacket(timeoutMS: 3000)
            guard event.count > 4, event[0] == 0x04, event[1] == 0x3E else { continue }
            if let report = advertisingReportAddress(event), report.type == 0x01, report.address == wanted {
                seen = true
            }
        }
        #expect(seen, "no advertising report from hr1")
    }

    @Test("a second TCP client replaces the first with its own H4 parser: a half packet from the first does not corrupt it",
          .timeLimit(.minutes(2)))
    func secondClientHasItsOwnParser() async throws {
        let world = try await BumbleWorld.start(spec: .init(hosts: 2, peripherals: [Self.heartRate]))
        defer { world.kill() }
        #expect(world.hostPorts.count == 2 && world.hostPorts[0] != world.hostPorts[1])
        let first = try H4Client(port: world.hostPorts[0])
        defer { first.close() }
        // A full command first: its answer proves the world serves this client.
        try first.send([0x01, 0x03, 0x0C, 0x00])
        #expect(try first.readPacket(timeoutMS: 5000) == [0x04, 0x0E, 0x04, 0x01, 0x03, 0x0C, 0x00])
        let status = try await world.commandJSON(#"{"cmd":"status"}"#)
        #expect(status["hosts"]?[0]?["client"]?.bool == true)
        #expect(status["hosts"]?[1]?["client"]?.bool == false)
        try first.send([0x01, 0x03])  // half an HCI_Reset, left in the first client's parser
        let second = try H4Client(port: world.hostPorts[0])
        defer { second.close() }
        try second.send([0x01, 0x03, 0x0C, 0x00])
        let reset = try second.readPacket(timeoutMS: 5000)
        #expect(reset == [0x04, 0x0E, 0x04, 0x01, 0x03, 0x0C, 0x00])
        #expect(try first.readToEOF(timeoutMS: 5000), "the replaced client was not closed")
    }

    @Test("control: status lists every peripheral advertising and idle; unknown commands and names answer ok=false; rotate-address gives a new RPA",
          .timeLimit(.minutes(2)))
    func controlCommands() async throws {
        var privateThermometer = Self.thermometer
        privateThermometer.name = "tp"
        privateThermometer.options["privacy"] = true
        let world = try await BumbleWorld.start(spec: .init(peripherals: [Self.heartRate, Self.thermometer, privateThermometer]))
        defer { world.kill() }
        let status = try await world.commandJSON(#"{"cmd":"status"}"#)
        for name in ["hr1", "t1", "tp"] {
            let p = try #require(status["peripherals"]?[name])
            #expect(p["advertising"]?.bool == true)
            #expect(p["connected"]?.bool == false)
            #expect(p["subscribed"]?.bool == false)
            #expect(p["notifications_sent"]?.int == 0)
            #expect(p["bonded"]?.array == [])
        }
        #expect(status["peripherals"]?["hr1"]?["kind"]?.string == "heart-rate")
        #expect(status["peripherals"]?["t1"]?["address"]?.string == "F0:F1:F2:F3:F4:02")

        let unknown = try TestJSON.parse(try await world.command(#"{"cmd":"fly"}"#))
        #expect(unknown["ok"]?.bool == false)
        let noSuch = try TestJSON.parse(try await world.command(#"{"cmd":"disconnect","peripheral":"nope"}"#))
        #expect(noSuch["ok"]?.bool == false)
        #expect(noSuch["error"]?.string?.contains("nope") == true)
        let noPrivacy = try TestJSON.parse(try await world.command(#"{"cmd":"rotate-address","peripheral":"t1"}"#))
        #expect(noPrivacy["ok"]?.bool == false)

        let before = world.address(of: "tp")
        #expect(before != "F0:F1:F2:F3:F4:02" && world.peripherals["tp"]?.irk != nil)
        let rotated = try await world.commandJSON(#"{"cmd":"rotate-address","peripheral":"tp"}"#)
        let after = try #require(rotated["address"]?.string)
        #expect(after != before)
        #expect(after.first.map { "4567".contains($0) } == true)  // resolvable private: top bits 01
        let again = try await world.commandJSON(#"{"cmd":"status"}"#)
        #expect(again["peripherals"]?["tp"]?["address"]?.string == after)

        try await world.commandJSON(#"{"cmd":"stop-advertising","peripheral":"hr1"}"#)
        #expect(try await world.commandJSON(#"{"cmd":"status"}"#)["peripherals"]?["hr1"]?["advertising"]?.bool == false)
        try await world.commandJSON(#"{"cmd":"start-advertising","peripheral":"hr1"}"#)
        #expect(try await world.commandJSON(#"{"cmd":"status"}"#)["peripherals"]?["hr1"]?["advertising"]?.bool == true)
    }

    @Test("stop() ends the process: its PID is gone and commands fail", .timeLimit(.minutes(2)))
    func stopKillsTheProcess() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [Self.heartRate]))
        let pid = world.pid
        #expect(kill(pid, 0) == 0)
        await world.stop()
        #expect(!world.isRunning)
        #expect(kill(pid, 0) == -1 && errno == ESRCH)
        await #expect(throws: TestSupportError.self) { try await world.command(#"{"cmd":"status"}"#) }
    }

    @Test("quit command: the world exits by itself", .timeLimit(.minutes(2)))
    func quitCommand() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: []))
        defer { world.kill() }
        _ = try await world.commandJSON(#"{"cmd":"quit"}"#)
        await world.stop(grace: .seconds(10))
        #expect(!world.isRunning)
        #expect(world.log.contains("bye"))
    }

    @Test("a bad spec fails start() with the world's own error in the message", .timeLimit(.minutes(2)))
    func badSpecFails() async throws {
        let spec = BumbleWorld.Spec(peripherals: [.init(kind: .init(rawValue: "toaster"), name: "x", address: "F0:00:00:00:00:01")])
        await #expect {
            _ = try await BumbleWorld.start(spec: spec)
        } throws: { error in
            "\(error)".contains("toaster")
        }
    }

    @Test("Bumble's own central (check_world.py) connects, subscribes, pairs (SC Just Works, passkey, numeric comparison, legacy, privacy), survives garbage and reconnects to the dropper",
          .timeLimit(.minutes(3)))
    func bumbleCentralEndToEnd() async throws {
        let spec = BumbleWorld.Spec(hosts: 1, peripherals: [
            Self.heartRate,
            Self.thermometer,
            .init(kind: .thermometerSecure, name: "t-passkey", address: "F0:F1:F2:F3:F4:03",
                  options: ["io_capability": "display-only", "passkey": 123456]),
            .init(kind: .thermometerSecure, name: "t-compare", address: "F0:F1:F2:F3:F4:06",
                  options: ["io_capability": "display-yes-no"]),
            .init(kind: .thermometerSecure, name: "t-legacy", address: "F0:F1:F2:F3:F4:07", options: ["legacy": true]),
            .init(kind: .thermometerSecure, name: "t-private", address: "F0:F1:F2:F3:F4:08", options: ["privacy": true]),
            .init(kind: .garbage, name: "junk", address: "F0:F1:F2:F3:F4:04"),
            .init(kind: .dropper, name: "drop", address: "F0:F1:F2:F3:F4:05", options: ["drop_after": 3, "away_ms": 500]),
        ])
        let world = try await BumbleWorld.start(spec: spec)
        defer { world.kill() }
        let root = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let result = try ChildProcess.run(
            ["\(root)/.venv/bin/python", "\(root)/scripts/ble/check_world.py",
             "--ready", world.readyFile, "--spec-json", world.specJSON],
            timeout: .seconds(150))
        let passes = result.output.split(separator: "\n").filter { $0.hasPrefix("PASS ") }
        #expect(result.status == 0, "check_world.py failed:\n\(result.output.suffix(4000))\nworld log:\n\(world.log.suffix(3000))")
        #expect(passes.count == 8)
        #expect(result.output.contains("ALL PASS"))
        // The world saw it too: bonds with the central on the secure thermometers, notifications sent.
        let status = try await world.commandJSON(#"{"cmd":"status"}"#)
        #expect(status["peripherals"]?["t1"]?["bonded"]?.array?.count == 1)
        #expect((status["peripherals"]?["hr1"]?["notifications_sent"]?.int ?? 0) >= 5)
        #expect((status["peripherals"]?["drop"]?["notifications_sent"]?.int ?? 0) >= 5)
    }
}

/// The advertiser address (type, octets as on the wire) of the first report in an LE
/// Advertising Report (subevent 0x02) or LE Extended Advertising Report (0x0D) event.
/// Core v5.4 Vol 4 Part E 7.7.65.2 and 7.7.65.13.
func advertisingReportAddress(_ packet: [UInt8]) -> (type: UInt8, address: [UInt8])? {
    // 04 3E len subevent num_reports ...
    guard packet.count > 5, packet[0] == 0x04, packet[1] == 0x3E, packet[4] >= 1 else { return nil }
    switch packet[3] {
    case 0x02:  // event type (1), address type (1), address (6)
        guard packet.count >= 13 else { return nil }
        return (packet[6], Array(packet[7..<13]))
    case 0x0D:  // event type (2), address type (1), address (6)
        guard packet.count >= 14 else { return nil }
        return (packet[7], Array(packet[8..<14]))
    default:
        return nil
    }
}

/// A blocking TCP client speaking raw H4 with a deadline on every read.
final class H4Client {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket failed") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            Glibc.close(fd)
            throw TestSupportError("connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
    }

    func send(_ bytes: [UInt8]) throws {
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n == bytes.count else { throw TestSupportError("send failed") }
    }

    /// Reads more bytes, waiting at most `timeoutMS`; false on EOF.
    private func fill(timeoutMS: Int32) throws -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, timeoutMS)
        guard ready > 0 else { throw TestSupportError("no data within \(timeoutMS) ms") }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &chunk, chunk.count, 0)
        if n <= 0 { return false }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }

    /// The next H4 packet (type octet included). Events only here (the world sends no ACL
    /// before a connection). With `skippingLEMeta`, advertising reports are skipped.
    func readPacket(timeoutMS: Int32, skippingLEMeta: Bool = false) throws -> [UInt8] {
        while true {
            while buffer.count < 3 || buffer.count < 3 + Int(buffer[2]) {
                guard buffer.isEmpty || buffer[0] == 0x04 else { throw TestSupportError("unexpected H4 type \(buffer[0])") }
                guard try fill(timeoutMS: timeoutMS) else { throw TestSupportError("EOF") }
            }
            let length = 3 + Int(buffer[2])
            let packet = Array(buffer[0..<length])
            buffer.removeFirst(length)
            if skippingLEMeta && packet[1] == 0x3E { continue }
            return packet
        }
    }

    /// True once the peer closed the connection (within `timeoutMS`).
    func readToEOF(timeoutMS: Int32) throws -> Bool {
        while try fill(timeoutMS: timeoutMS) {}
        return true
    }

    func close() { Glibc.close(fd) }
}
