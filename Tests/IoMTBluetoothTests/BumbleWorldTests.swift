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

    @Test("advertising data: flags, 16-bit service UUIDs and the name; the garbage peripheral's bad-adv option appends an overlong AD structure",
          .timeLimit(.minutes(2)))
    func advertisingData() async throws {
        let junk = BumbleWorld.Peripheral(kind: .garbage, name: "junk", address: "F0:F1:F2:F3:F4:09",
                                          options: ["malformed": ["bad-adv"]])
        let world = try await BumbleWorld.start(spec: .init(peripherals: [Self.heartRate, junk]))
        defer { world.kill() }
        let socket = try H4Client(port: world.hostPorts[0])
        defer { socket.close() }
        try socket.command([0x01, 0x05, 0x20, 0x06, 0x42, 0x00, 0x00, 0x00, 0x00, 0xC0])
        try socket.command([0x01, 0x0B, 0x20, 0x07, 0x00, 0x10, 0x00, 0x10, 0x00, 0x01, 0x00])
        try socket.command([0x01, 0x0C, 0x20, 0x02, 0x01, 0x00])
        var data: [String: [UInt8]] = [:]
        let names: [[UInt8]: String] = [[0x01, 0xF4, 0xF3, 0xF2, 0xF1, 0xF0]: "hr1", [0x09, 0xF4, 0xF3, 0xF2, 0xF1, 0xF0]: "junk"]
        for _ in 0..<400 where data.count < 2 {
            let event = try socket.readPacket(timeoutMS: 3000)
            if let report = advertisingReportAddress(event), let name = names[report.address],
               let payload = advertisingReportData(event) {
                data[name] = payload
            }
        }
        let hr = try #require(data["hr1"])
        let expected: [UInt8] = [0x02, 0x01, 0x06,  // flags
                                 0x07, 0x03, 0x0D, 0x18, 0x0A, 0x18, 0x0F, 0x18,  // 0x180D 0x180A 0x180F
                                 0x04, 0x09] + Array("hr1".utf8)  // complete local name
        #expect(hr == expected)
        let bad = try #require(data["junk"])
        #expect(Array(bad.suffix(3)) == [0x1E, 0xFF, 0x01])
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

    @Test("HCI_Reset drops the link (the peripheral advertises again) and LE Create Connection Cancel really cancels",
          .timeLimit(.minutes(2)))
    func resetDropsLinksAndCancelCancels() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [Self.heartRate]))
        defer { world.kill() }
        let socket = try H4Client(port: world.hostPorts[0])
        defer { socket.close() }
        try socket.command([0x01, 0x03, 0x0C, 0x00])
        try socket.command([0x01, 0x05, 0x20, 0x06, 0x42, 0x00, 0x00, 0x00, 0x00, 0xC0])
        // LE Create Connection to hr1 (random F0:F1:F2:F3:F4:01), own address random.
        let hr1: [UInt8] = [0x01, 0xF4, 0xF3, 0xF2, 0xF1, 0xF0]
        try socket.send(createConnection(peer: hr1))
        let pending = try socket.readPacket(timeoutMS: 5000, skippingLEMeta: true)
        #expect(pending == [0x04, 0x0F, 0x04, 0x00, 0x01, 0x0D, 0x20])  // Command Status, pending
        let complete = try socket.readPacket(timeoutMS: 5000)
        #expect(Array(complete.prefix(5)) == [0x04, 0x3E, 0x13, 0x01, 0x00])  // LE Connection Complete, success
        let connected = try await world.commandJSON(#"{"cmd":"status"}"#)
        #expect(connected["peripherals"]?["hr1"]?["connected"]?.bool == true)
        #expect(connected["peripherals"]?["hr1"]?["advertising"]?.bool == false)

        // Reset: no Disconnection Complete to us, but hr1 loses the link and advertises again,
        // which a new scan sees (event-driven: the advert is the proof).
        try socket.command([0x01, 0x03, 0x0C, 0x00])
        try socket.command([0x01, 0x0B, 0x20, 0x07, 0x01, 0x10, 0x00, 0x10, 0x00, 0x01, 0x00])
        try socket.command([0x01, 0x0C, 0x20, 0x02, 0x01, 0x00])
        var advertisingAgain = false
        for _ in 0..<200 where !advertisingAgain {
            let event = try socket.readPacket(timeoutMS: 3000)
            #expect(event[1] != 0x05, "Disconnection Complete after HCI_Reset")
            if let report = advertisingReportAddress(event), report.address == hr1 { advertisingAgain = true }
        }
        #expect(advertisingAgain)
        try socket.command([0x01, 0x03, 0x0C, 0x00])

        // Cancel a connection to nobody: Command Complete success, then LE Connection Complete
        // with 0x02; a new LE Create Connection is then accepted (stock Bumble: 0x0C).
        try socket.command([0x01, 0x05, 0x20, 0x06, 0x42, 0x00, 0x00, 0x00, 0x00, 0xC0])
        let nobody: [UInt8] = [0x09, 0x09, 0x09, 0x09, 0x09, 0xC9]
        try socket.send(createConnection(peer: nobody))
        #expect(try socket.readPacket(timeoutMS: 5000, skippingLEMeta: true) == [0x04, 0x0F, 0x04, 0x00, 0x01, 0x0D, 0x20])
        try socket.send([0x01, 0x0E, 0x20, 0x00])
        #expect(try socket.readPacket(timeoutMS: 5000, skippingLEMeta: true) == [0x04, 0x0E, 0x04, 0x01, 0x0E, 0x20, 0x00])
        let cancelled = try socket.readPacket(timeoutMS: 5000)
        #expect(Array(cancelled.prefix(5)) == [0x04, 0x3E, 0x13, 0x01, 0x02])
        try socket.send(createConnection(peer: nobody))
        #expect(try socket.readPacket(timeoutMS: 5000, skippingLEMeta: true) == [0x04, 0x0F, 0x04, 0x00, 0x01, 0x0D, 0x20])
        // Cancel without a pending attempt: Command Disallowed.
        try socket.send([0x01, 0x0E, 0x20, 0x00])
        _ = try socket.readPacket(timeoutMS: 5000, skippingLEMeta: true)
        _ = try socket.readPacket(timeoutMS: 5000)
        try socket.send([0x01, 0x0E, 0x20, 0x00])
        #expect(try socket.readPacket(timeoutMS: 5000, skippingLEMeta: true) == [0x04, 0x0E, 0x04, 0x01, 0x0E, 0x20, 0x0C])
    }

    @Test("when the host's TCP connection closes, its links drop and the peripheral advertises again",
          .timeLimit(.minutes(2)))
    func clientGoneDropsLinks() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [Self.heartRate]))
        defer { world.kill() }
        let hr1: [UInt8] = [0x01, 0xF4, 0xF3, 0xF2, 0xF1, 0xF0]
        do {
            let socket = try H4Client(port: world.hostPorts[0])
            defer { socket.close() }
            try socket.command([0x01, 0x05, 0x20, 0x06, 0x42, 0x00, 0x00, 0x00, 0x00, 0xC0])
            try socket.send(createConnection(peer: hr1))
            _ = try socket.readPacket(timeoutMS: 5000, skippingLEMeta: true)
            let complete = try socket.readPacket(timeoutMS: 5000)
            #expect(Array(complete.prefix(5)) == [0x04, 0x3E, 0x13, 0x01, 0x00])
        }
        // A new host sees hr1 advertising again.
        let socket = try H4Client(port: world.hostPorts[0])
        defer { socket.close() }
        try socket.command([0x01, 0x05, 0x20, 0x06, 0x43, 0x00, 0x00, 0x00, 0x00, 0xC0])
        try socket.command([0x01, 0x0B, 0x20, 0x07, 0x01, 0x10, 0x00, 0x10, 0x00, 0x01, 0x00])
        try socket.command([0x01, 0x0C, 0x20, 0x02, 0x01, 0x00])
        var seen = false
        for _ in 0..<200 where !seen {
            if let report = advertisingReportAddress(try socket.readPacket(timeoutMS: 3000)), report.address == hr1 { seen = true }
        }
        #expect(seen)
        let status = try await world.commandJSON(#"{"cmd":"status"}"#)
        #expect(status["peripherals"]?["hr1"]?["connected"]?.bool == false)
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
        // The adverts carry the new address.
        let socket = try H4Client(port: world.hostPorts[0])
        defer { socket.close() }
        try socket.command([0x01, 0x05, 0x20, 0x06, 0x42, 0x00, 0x00, 0x00, 0x00, 0xC0])
        try socket.command([0x01, 0x0C, 0x20, 0x02, 0x01, 0x00])
        let wire = Array(after.split(separator: ":").compactMap { UInt8($0, radix: 16) }.reversed())
        #expect(wire.count == 6)
        var seen = false
        for _ in 0..<300 where !seen {
            if let report = advertisingReportAddress(try socket.readPacket(timeoutMS: 3000)), report.address == wire { seen = true }
        }
        #expect(seen, "no advert from the rotated address \(after)")

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
        #expect(world.log.contains("bye"), "SIGTERM did not end the world cleanly")
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
        let result = try await ChildProcess.run(
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

extension BumbleWorldTests {
    @Test("check_world.py --spawn (its own world, with control): a bonded central reconnects and re-encrypts after the private address rotated",
          .timeLimit(.minutes(3)))
    func bumbleCentralWithRotation() async throws {
        let root = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let result = try await ChildProcess.run(
            ["\(root)/.venv/bin/python", "\(root)/scripts/ble/check_world.py", "--spawn"], timeout: .seconds(150))
        #expect(result.status == 0, "check_world.py --spawn failed:\n\(result.output.suffix(5000))")
        #expect(result.output.contains("PASS thermometer-secure therm-priv (no-input-no-output, privacy, rotation)"))
        #expect(result.output.contains("rotated to"))
        #expect(result.output.contains("ALL PASS"))
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

/// The advertising data of the first report in an LE (Extended) Advertising Report event.
func advertisingReportData(_ packet: [UInt8]) -> [UInt8]? {
    guard packet.count > 5, packet[0] == 0x04, packet[1] == 0x3E, packet[4] >= 1 else { return nil }
    let lengthAt: Int
    switch packet[3] {
    case 0x02: lengthAt = 13
    case 0x0D: lengthAt = 28
    default: return nil
    }
    guard packet.count > lengthAt, packet.count >= lengthAt + 1 + Int(packet[lengthAt]) else { return nil }
    return Array(packet[(lengthAt + 1)..<(lengthAt + 1 + Int(packet[lengthAt]))])
}

/// LE Create Connection (Core v5.4 Vol 4 Part E 7.8.12) to a random address, own address random.
func createConnection(peer: [UInt8]) -> [UInt8] {
    [0x01, 0x0D, 0x20, 25,
     0x10, 0x00, 0x10, 0x00,  // scan interval, window
     0x00,  // no filter accept list
     0x01] + peer + [  // peer address type random, address
     0x01,  // own address random
     0x18, 0x00, 0x28, 0x00, 0x00, 0x00, 0xF4, 0x01,  // interval min/max, latency, supervision timeout
     0x00, 0x00, 0x00, 0x00]  // CE lengths
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

    /// Sends a command and checks that its Command Complete reports success (advertising
    /// reports in between are skipped).
    func command(_ bytes: [UInt8]) throws {
        try send(bytes)
        let event = try readPacket(timeoutMS: 5000, skippingLEMeta: true)
        guard event.count >= 7, event[1] == 0x0E, event[4] == bytes[1], event[5] == bytes[2], event[6] == 0x00 else {
            throw TestSupportError("command \(bytes.prefix(3)) answered \(event)")
        }
    }

    /// True once the peer closed the connection (within `timeoutMS`).
    func readToEOF(timeoutMS: Int32) throws -> Bool {
        while try fill(timeoutMS: timeoutMS) {}
        return true
    }

    func close() { Glibc.close(fd) }
}

@Suite("TestJSON")
struct TestJSONTests {
    @Test("parses a ready document: nested objects, arrays, strings with escapes, numbers, null, booleans")
    func parsesReadyDocument() async throws {
        let doc = try TestJSON.parse(#" {"hosts": [{"port": 40731}], "ok": true, "x": null, "s": "a\"b\u0041", "n": -1.5e1} "#)
        #expect(doc["hosts"]?[0]?["port"]?.int == 40731)
        #expect(doc["ok"]?.bool == true)
        #expect(doc["x"] == .null)
        #expect(doc["s"]?.string == "a\"bA")
        #expect(doc["n"]?.double == -15)
        #expect(doc["missing"] == nil)
    }

    @Test("truncated or trailing input throws with the offset")
    func rejectsBadInput() {
        for bad in [#"{"a": [1, 2"#, #"{"a": "x"#, #"{"a" 1}"#, "[1] 2", ""] {
            #expect(throws: TestSupportError.self) { try TestJSON.parse(bad) }
        }
        #expect { try TestJSON.parse(#"{"a": [1, 2"#) } throws: { "\($0)".contains("offset") }
    }
}
