import Foundation
import IoMTBuffer
import IoMTConfig
import IoMTControl
import IoMTCore
import IoMTRegistry
import IoMTTestSupport
import Logging
import Testing
@testable import IoMTAgent

// The control socket against a real daemon process (`iomt-agent run`) and a real mosquitto,
// and the CLI as child processes. No mocks here (the Bluetooth mock is in-process, in
// ControlServiceBluetoothTests below, and says so).

/// Runs a blocking client call on its own thread (never on the cooperative pool).
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
        Thread { c.resume(with: Result { try body() }) }.start()
    }
}

/// One request to the daemon at `socket`, with a 20 s bound on each read.
func control(_ socket: String, _ cmd: String, _ args: JSONValue = .object([])) async throws -> JSONValue {
    try await onThread {
        let client = try ControlClient(path: socket, receiveTimeout: .seconds(20))
        return try client.call(cmd, args: args)
    }
}

/// The error of a request that must fail.
func controlError(_ socket: String, _ cmd: String, _ args: JSONValue = .object([])) async throws -> ControlError {
    do {
        let r = try await control(socket, cmd, args)
        throw TestSupportError("\(cmd) succeeded: \(r.text)")
    } catch ControlClientError.remote(let e) {
        return e
    }
}

struct ControlAgent {
    let dir: TempDir
    let setup: AgentSetup
    let socket: String
    var config: String { dir.file("agent.yaml") }

    init(dir: TempDir, setup: AgentSetup) {
        self.dir = dir
        self.setup = setup
        self.socket = dir.file("ctl.sock")
    }

    func writeConfig() throws {
        try dir.write("agent.yaml", setup.yaml() + "control:\n  socket: \(socket)\n  group: iomt\n")
    }

    /// Starts the daemon and waits until its control socket listens.
    func start() async throws -> ChildProcess {
        try writeConfig()
        let agent = try ChildProcess([agentBinary, "run", "--config", config])
        let up = await agent.output.wait(timeout: .seconds(20)) { $0.contains("control socket listening") }
        guard up else {
            agent.signal(SIGKILL)
            throw TestSupportError("agent did not open its control socket:\n\(agent.output.value)")
        }
        return agent
    }

    /// Runs the CLI (`iomt-agent ARGS --config ...`) to completion.
    func cli(_ args: [String], prefix: [String] = []) async throws -> (status: Int32, output: String) {
        try await ChildProcess.run(prefix + [agentBinary] + args + ["--config", config], timeout: .seconds(60))
    }
}

/// Stores readings of `device` (sequences 1...n) in the buffer of `stateDir`, as the ingestor would.
func prefill(stateDir: String, gateway: String, device: String, patient: String, count: Int) async throws {
    try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true,
                                            attributes: [.posixPermissions: 0o700])
    let topics = "iomt/\(gateway)"
    let buffer = try await SQLiteBuffer(path: stateDir + "/buffer.db", maxBytes: 16 << 20, onFull: .reject,
                                        gatewayID: gateway, gapTopic: topics + "/status/gaps")
    var ids = ReadingIDGenerator()
    let now = SystemWallClock().now()
    let messages = (1...count).map { i -> OutgoingMessage in
        let body = DeviceReading(device: DeviceRef(id: device, profile: "pulse-oximeter", transport: .ble), patientID: patient,
                                 measuredAt: now, receivedAt: now, timeQuality: .gatewayReceipt,
                                 observations: [Observation(code: MDCCode(rawValue: 150456), value: .number(97), unit: UCUMUnit(rawValue: "%"))])
        let r = Reading(id: ids.next(at: now), gatewayID: gateway, sequence: UInt64(i), body: body)
        return OutgoingMessage(id: r.id, kind: .reading, topic: "\(topics)/readings/\(device)", payload: WireFormat.json(r),
                               deviceID: device, sequence: UInt64(i), createdAt: now)
    }
    _ = try await buffer.append(messages)
    await buffer.close()
}

func bleEntry(_ address: String, patient: String) -> RegisteredDevice {
    let now = SystemWallClock().now()
    return RegisteredDevice(id: RegisteredDevice.bleID(address: address)!, transport: "ble", address: address, addressType: "public",
                            profile: "pulse-oximeter", patientID: patient, serialNumber: "SN-\(address.suffix(2))",
                            pairedAt: now, boundAt: now)
}

func audits(_ messages: [ReceivedMessage]) -> [JSONValue] {
    messages.filter { $0.topic.hasSuffix("/audit") }.compactMap { try? JSONValue.parse($0.payload) }
}

@Suite(.serialized, .timeLimit(.minutes(3)))
struct ControlSocketTests {
    @Test func statusDevicesAndAssignOverTheSocketWithTheAuditOnTheBroker() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "ctl-a", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.simulators = [Sim(id: "ox-1", patient: "P-1", rate: 20)]
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/ctl-a/#")
        defer { sub.stop() }
        let ctl = ControlAgent(dir: dir, setup: setup)
        let agent = try await ctl.start()
        defer { agent.signal(SIGKILL) }
        #expect(await waitUntil(sub) { !readings($0).isEmpty })

        let hello = try await control(ctl.socket, "hello")
        #expect(hello["versions"] == .array([.int(1)]))
        let status = try await control(ctl.socket, "status")
        #expect(status["daemon"]?.boolValue == true)
        #expect(status["broker"]?["state"]?.stringValue == "connected")
        #expect(status["broker"]?["connected_to"]?.stringValue?.contains("\(broker.port)") == true)
        #expect(status["buffer"]?["messages"]?.intValue != nil)
        #expect(status["sources"]?.arrayValue?.first?["id"]?.stringValue == "ox-1")
        #expect(status["bluetooth"]?.stringValue == "Bluetooth is not configured (set bluetooth.adapter in agent.yaml)")

        let devices = try await control(ctl.socket, "devices")
        let row = try #require(devices["devices"]?.arrayValue?.first)
        #expect(row["id"]?.stringValue == "ox-1")
        #expect(row["patient_id"]?.stringValue == "P-1")
        #expect(row["binding"]?.stringValue == "agent.yaml")
        #expect(row["connected"]?.boolValue == true)

        let assigned = try await control(ctl.socket, "assign", .obj(["device": .string("ox-1"), "patient": .string("P-2")]))
        #expect(assigned["patient_before"]?.stringValue == "P-1")
        #expect(await waitUntil(sub) { m in audits(m).contains { $0["action"]?.stringValue == "assign" } })
        // Readings from now on carry the new patient.
        #expect(await waitUntil(sub) { m in readings(m).contains { $0.payload.contains(#""patient_id":"P-2""#) } })
        let audit = try #require(audits(sub.messages).first { $0["action"]?.stringValue == "assign" })
        #expect(audit["device_id"]?.stringValue == "ox-1")
        #expect(audit["patient"]?["before"]?.stringValue == "P-1")
        #expect(audit["patient"]?["after"]?.stringValue == "P-2")
        #expect(audit["actor"]?["uid"]?.intValue == Int64(getuid()))
        #expect(audit["actor"]?["via"]?.stringValue == "socket")
        try await expectValid(sub.messages.filter { $0.topic.hasSuffix("/audit") }.map(\.payloadString), schema: "audit.schema.json", dir: dir)

        let file = AuditLog(stateDir: setup.stateDir, gatewayID: "ctl-a")
        #expect(try file.read().events.map(\.action) == [.assign])
        var st = stat()
        #expect(stat(file.path, &st) == 0 && st.st_mode & 0o777 == 0o600)
        var sock = stat()
        #expect(stat(ctl.socket, &sock) == 0 && sock.st_mode & 0o777 == 0o660)

        let unknown = try await controlError(ctl.socket, "assign", .obj(["device": .string("nope"), "patient": .string("P-2")]))
        #expect(unknown.code == .notFound)
        let noBluetooth = try await controlError(ctl.socket, "pair", .obj(["address": .string("C0:FF:EE:00:00:01"), "patient": .string("P")]))
        #expect(noBluetooth.code == .unavailable && noBluetooth.message == BluetoothNotConfigured.message)

        agent.signal(SIGTERM)
        #expect(await agent.waitForExit(timeout: .seconds(15)))
        #expect(!FileManager.default.fileExists(atPath: ctl.socket), "the socket is removed on a clean stop")
    }

    @Test func dischargeIsRefusedWhileReadingsAreBufferedThenSucceedsAfterDeliveryOrExport() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true))
        defer { broker.killNow() }
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/ctl-d/#",
                                                     clientID: "ctl-d-sub", persistentSession: true, qos: 1)
        defer { sub.stop() }
        await broker.stop() // readings stay buffered
        let setup = AgentSetup(gateway: "ctl-d", stateDir: dir.file("state"), brokerURL: broker.url)
        let a = bleEntry("C0:FF:EE:00:00:0A", patient: "P-A")
        let b = bleEntry("C0:FF:EE:00:00:0B", patient: "P-B")
        try await prefill(stateDir: setup.stateDir, gateway: "ctl-d", device: a.id, patient: "P-A", count: 3)
        try await prefill(stateDir: setup.stateDir, gateway: "ctl-d", device: b.id, patient: "P-B", count: 2)
        let registry = try DeviceRegistry(stateDir: setup.stateDir)
        try registry.add(a)
        try registry.add(b)
        let ctl = ControlAgent(dir: dir, setup: setup)
        let agent = try await ctl.start()
        defer { agent.signal(SIGKILL) }

        let refused = try await controlError(ctl.socket, "discharge", .obj(["device": .string(a.id)]))
        #expect(refused.code == .refused)
        #expect(refused.message.contains("3 reading(s)"))
        #expect(try DeviceRegistry(stateDir: setup.stateDir).device(id: a.id) != nil, "still bound after the refusal")
        let forcedWithoutReason = try await controlError(ctl.socket, "discharge", .obj(["device": .string(a.id), "force": .bool(true)]))
        #expect(forcedWithoutReason.code == .invalidArgument)

        // With --export FILE (the CLI writes the file, then discharges).
        let exportFile = dir.file("P-A.jsonl")
        let exported = try await ctl.cli(["discharge", a.id, "--export", exportFile])
        #expect(exported.status == 0, "\(exported.output)")
        let lines = try String(contentsOfFile: exportFile, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines.allSatisfy { (try? JSONValue.parse(String($0)))?["payload"]?["patient_id"]?.stringValue == "P-A" })
        #expect(try DeviceRegistry(stateDir: setup.stateDir).device(id: a.id) == nil)

        // After delivery.
        try await broker.restart()
        #expect(await waitUntil(sub) { m in Set(readings(m).filter { $0.device == b.id }.map(\.sequence)) == [1, 2] })
        // The delete follows the acknowledgement: the status topic (every second) says when
        // the buffer is empty.
        #expect(await waitUntil(sub) { m in
            m.contains { $0.topic == "iomt/ctl-d/status" && (try? JSONValue.parse($0.payload))?["buffer"]?["messages"]?.intValue == 0 }
        })
        let result: JSONValue? = try await control(ctl.socket, "discharge", .obj(["device": .string(b.id)]))
        let done = try #require(result, "discharge after delivery kept being refused")
        #expect(done["discharged"]?.arrayValue?.first?["bond"]?.stringValue?.contains("Bluetooth is not configured") == true)
        let events = try AuditLog(stateDir: setup.stateDir, gatewayID: "ctl-d").read().events
        #expect(events.filter { $0.action == .discharge }.map(\.outcome) == ["refused", "ok", "ok"])
        #expect(events.contains { $0.action == .bufferExport })
        #expect(events.last?.patientBefore == "P-B" && events.last?.patientAfter == nil)
    }

    @Test func bufferExportThenPurgeReachTheBrokerAsGapAndAuditRecords() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true))
        defer { broker.killNow() }
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/ctl-p/#",
                                                     clientID: "ctl-p-sub", persistentSession: true, qos: 1)
        defer { sub.stop() }
        await broker.stop()
        let setup = AgentSetup(gateway: "ctl-p", stateDir: dir.file("state"), brokerURL: broker.url)
        try await prefill(stateDir: setup.stateDir, gateway: "ctl-p", device: "dev-x", patient: "P-X", count: 5)
        let ctl = ControlAgent(dir: dir, setup: setup)
        let agent = try await ctl.start()
        defer { agent.signal(SIGKILL) }

        let stats = try await ctl.cli(["buffer", "stats", "--json"])
        #expect(stats.status == 0)
        #expect(try JSONValue.parse(stats.output.trimmingCharacters(in: .whitespacesAndNewlines))["readings_by_device"]?["dev-x"]?.intValue == 5)
        let out = dir.file("export.jsonl")
        let export = try await ctl.cli(["buffer", "export", "--out", out])
        #expect(export.status == 0, "\(export.output)")
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map { try JSONValue.parse(String($0)) }
        #expect(lines.map { $0["sequence"]?.intValue } == [1, 2, 3, 4, 5], "\(lines.map(\.text))")
        #expect(lines.allSatisfy { $0["kind"]?.stringValue == "reading" && $0["payload"]?["schema"]?.stringValue == "iomt-reading/1" })
        var st = stat()
        #expect(stat(out, &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(try await ctl.cli(["buffer", "export", "--out", out]).status == 1, "an existing file is never overwritten")

        #expect(try await ctl.cli(["buffer", "purge"]).status != 0, "purge without --confirm is refused")
        let purge = try await ctl.cli(["buffer", "purge", "--confirm", "--json"])
        #expect(purge.status == 0, "\(purge.output)")
        #expect(try JSONValue.parse(purge.output.trimmingCharacters(in: .whitespacesAndNewlines))["purged"]?.intValue == 5)

        try await broker.restart()
        let sub2 = sub
        #expect(await waitUntil(sub2) { m in
            gaps(m).contains { $0.device == "dev-x" } && audits(m).contains { $0["action"]?.stringValue == "buffer-purge" }
        })
        let gap = try #require(gaps(sub2.messages).first { $0.device == "dev-x" })
        #expect(gap.first == 1 && gap.last == 5 && gap.count == 5 && gap.reason == "purged-by-operator")
        #expect(readings(sub2.messages).isEmpty, "purged readings are never published")
        let actions = Set(audits(sub2.messages).compactMap { $0["action"]?.stringValue })
        #expect(actions.isSuperset(of: ["buffer-export", "buffer-purge"]))
        try await expectValid(sub2.messages.filter { $0.topic.hasSuffix("/audit") }.map(\.payloadString), schema: "audit.schema.json", dir: dir)
        try await expectValid(sub2.messages.filter { $0.topic.hasSuffix("/status/gaps") }.map(\.payloadString), schema: "gap.schema.json", dir: dir)
    }

    @Test func aPeerOutsideTheAllowedUsersIsRefusedAndLogged() async throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("skipped: needs root and setpriv to run the client as nobody (uid 65534)")
            return
        }
        let dir = try TempDir()
        chmod(dir.path, 0o755)
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "ctl-u", stateDir: dir.file("state"), brokerURL: broker.url)
        let ctl = ControlAgent(dir: dir, setup: setup)
        let agent = try await ctl.start()
        defer { agent.signal(SIGKILL) }
        chmod(ctl.config, 0o644)
        let asNobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

        // Mode 0660: the kernel already refuses a stranger.
        let denied = try await ctl.cli(["status"], prefix: asNobody)
        #expect(denied.status == 1)
        #expect(denied.output.contains("permission denied"), "\(denied.output)")

        // Even with the file opened up, SO_PEERCRED refuses uid 65534 (not root, not the agent, not in the group).
        chmod(ctl.socket, 0o666)
        let refused = try await ctl.cli(["status"], prefix: asNobody)
        #expect(refused.status == 1)
        #expect(refused.output.contains("not permitted: uid 65534"), "\(refused.output)")
        #expect(await agent.output.wait(timeout: .seconds(5)) { $0.contains("peer refused") && $0.contains("uid=65534") })
        // And root still gets through.
        #expect(try await control(ctl.socket, "hello")["daemon"]?.boolValue == true)
    }

    @Test func garbageOverlongLinesAndAClientThatNeverReadsDoNotHurtTheDaemon() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "ctl-g", stateDir: dir.file("state"), brokerURL: broker.url)
        let ctl = ControlAgent(dir: dir, setup: setup)
        let agent = try await ctl.start()
        defer { agent.signal(SIGKILL) }
        let socket = ctl.socket

        let answers: [ServerMessage] = try await onThread {
            let c = try ControlClient(path: socket, receiveTimeout: .seconds(10))
            var out: [ServerMessage] = []
            try c.sendLine(Array("garbage\n".utf8))
            out.append(try ServerMessage.decode(c.readLine()))
            try c.sendLine(Array(#"{"v":3,"id":5,"cmd":"status"}"#.utf8) + [0x0A])
            out.append(try ServerMessage.decode(c.readLine()))
            try c.sendLine([UInt8](repeating: UInt8(ascii: "x"), count: 100_000) + [0x0A])
            out.append(try ServerMessage.decode(c.readLine()))
            try c.sendLine(Array(#"{"v":1,"id":6,"cmd":"nope"}"#.utf8) + [0x0A])
            out.append(try ServerMessage.decode(c.readLine()))
            // The connection survived all of that.
            out.append(.result(id: 0, try c.call("hello")))
            return out
        }
        guard answers.count == 5, case .failure(nil, let garbage) = answers[0], case .failure(5, let version) = answers[1],
              case .failure(nil, let long) = answers[2], case .failure(6, let unknown) = answers[3] else {
            Issue.record("unexpected answers \(answers)")
            return
        }
        #expect(garbage.code == .badRequest)
        #expect(version.code == .unsupportedVersion && version.supported == [1])
        #expect(long.code == .lineTooLong)
        #expect(unknown.code == .unknownCommand)

        // A client that floods requests and never reads its replies is dropped...
        let flooded: Bool = try await onThread {
            let c = try ControlClient(path: socket, receiveTimeout: .seconds(20))
            let request = ClientMessage.request(id: 1, cmd: "status", args: .object([])).line
            for i in 0..<5000 {
                var line = request
                if i > 0 { line = ClientMessage.request(id: Int64(i + 1), cmd: "status", args: .object([])).line }
                do { try c.sendLine(line) } catch { return true } // the daemon hung up on us
            }
            // Now read: the daemon closed the connection at some point, so the stream ends.
            while true {
                do { _ = try c.readLine() } catch ControlClientError.disconnected { return true } catch { return false }
            }
        }
        #expect(flooded)
        #expect(await agent.output.wait(timeout: .seconds(5)) { $0.contains("dropped") })
        // ...while others are served as before.
        #expect(try await control(socket, "status")["daemon"]?.boolValue == true)
        #expect(agent.isRunning)
    }

    @Test func aStaleSocketIsReplacedAndALiveOneIsNotTakenOver() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "ctl-s", stateDir: dir.file("state"), brokerURL: broker.url)
        let ctl = ControlAgent(dir: dir, setup: setup)
        // A socket file left by a crashed daemon: bound, never listened on, closed.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in ctl.socket.utf8.enumerated() { raw[i] = b } }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(fd)
        #expect(FileManager.default.fileExists(atPath: ctl.socket))

        let agent = try await ctl.start()
        defer { agent.signal(SIGKILL) }
        #expect(agent.output.value.contains("replacing a stale control socket"))
        #expect(try await control(ctl.socket, "hello")["gateway_id"]?.stringValue == "ctl-s")

        // A second agent (other state dir, same socket path) must not steal the live socket.
        let other = TempDir2(dir, "second")
        let setup2 = AgentSetup(gateway: "ctl-s2", stateDir: other, brokerURL: broker.url)
        try dir.write("second.yaml", setup2.yaml() + "control:\n  socket: \(ctl.socket)\n")
        let second = try ChildProcess([agentBinary, "run", "--config", dir.file("second.yaml")])
        defer { second.signal(SIGKILL) }
        #expect(await second.output.wait(timeout: .seconds(20)) { $0.contains("another agent is running") })
        #expect(try await control(ctl.socket, "hello")["gateway_id"]?.stringValue == "ctl-s")
    }

    @Test func theCLIWorksAloneOnTheStateDirectoryAndSaysHowToStartTheAgentOtherwise() async throws {
        let dir = try TempDir()
        var setup = AgentSetup(gateway: "ctl-c", stateDir: dir.file("state"), brokerURL: "mqtt://127.0.0.1:1")
        setup.simulators = [Sim(id: "ox-9", patient: "P-1", rate: 1)]
        let ctl = ControlAgent(dir: dir, setup: setup)
        try ctl.writeConfig()

        let status = try await ctl.cli(["status", "--json"])
        #expect(status.status == 0, "\(status.output)")
        let s = try JSONValue.parse(status.output.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(s["daemon"]?.boolValue == false)
        #expect(s["broker"]?["state"]?.stringValue == "agent not running")
        let devices = try await ctl.cli(["devices"])
        #expect(devices.status == 0 && devices.output.contains("ox-9") && devices.output.contains("agent not running"))
        let assign = try await ctl.cli(["assign", "ox-9", "--patient", "P-7"])
        #expect(assign.status == 0, "\(assign.output)")
        let events = try AuditLog(stateDir: setup.stateDir, gatewayID: "ctl-c").read().events
        #expect(events.map(\.action) == [.assign])
        #expect(events.first?.actor.via == "local" && events.first?.actor.uid == getuid())
        #expect(try DeviceRegistry(stateDir: setup.stateDir).patient(of: "ox-9") == "P-7")
        #expect(try await ctl.cli(["buffer", "stats"]).status == 0)

        for needsDaemon in [["scan"], ["discharge", "ox-9"], ["buffer", "purge", "--confirm"],
                            ["pair", "C0:FF:EE:00:00:01", "--patient", "P-1"]] {
            let r = try await ctl.cli(needsDaemon)
            #expect(r.status == 69, "\(needsDaemon): \(r.output)")
            #expect(r.output.contains("no agent is running at \(ctl.socket): start it with `systemctl start iomt-agent` or `iomt-agent run`"),
                    "\(needsDaemon): \(r.output)")
        }
        for sub in [["status"], ["devices"], ["assign"], ["discharge"], ["buffer", "stats"], ["buffer", "export"],
                    ["buffer", "purge"], ["scan"], ["pair"], ["simulate", "serial"], ["simulate", "readings"]] {
            let r = try await ChildProcess.run([agentBinary] + sub + ["--help"])
            #expect(r.status == 0 && r.output.contains("USAGE"), "\(sub) --help")
        }
        let completion = try await ChildProcess.run([agentBinary, "--generate-completion-script", "bash"])
        #expect(completion.status == 0 && completion.output.contains("discharge"))

        // With the daemon up, the same CLI goes through the socket.
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        var live = setup
        live.brokerURL = broker.url
        let liveCtl = ControlAgent(dir: dir, setup: live)
        let agent = try await liveCtl.start()
        defer { agent.signal(SIGKILL) }
        let viaSocket = try await liveCtl.cli(["devices", "--json"])
        #expect(viaSocket.status == 0)
        let row = try JSONValue.parse(viaSocket.output.trimmingCharacters(in: .whitespacesAndNewlines))["devices"]?.arrayValue?.first
        #expect(row?["patient_id"]?.stringValue == "P-7")
        #expect(row?["link"]?.stringValue != "agent not running")
        let scan = try await liveCtl.cli(["scan", "--json"])
        #expect(scan.status == 1 && scan.output.contains("Bluetooth is not configured"))
    }

    @Test func rootWorkingAloneLeavesTheStateDirectoryToItsOwner() async throws {
        guard getuid() == 0 else {
            print("skipped: needs root to own files as another user")
            return
        }
        let dir = try TempDir()
        var setup = AgentSetup(gateway: "ctl-o", stateDir: dir.file("state"), brokerURL: "mqtt://127.0.0.1:1")
        setup.simulators = [Sim(id: "ox-1", patient: "P-1", rate: 1)]
        try FileManager.default.createDirectory(atPath: setup.stateDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        chown(setup.stateDir, 65534, 65534) // as systemd's StateDirectory= would for User=iomt
        let ctl = ControlAgent(dir: dir, setup: setup)
        try ctl.writeConfig()
        let r = try await ctl.cli(["assign", "ox-1", "--patient", "P-2"])
        #expect(r.status == 0, "\(r.output)")
        let names = try FileManager.default.contentsOfDirectory(atPath: setup.stateDir)
        #expect(names.contains("registry.json") && names.contains("audit.jsonl") && names.contains("buffer.db"))
        for name in names {
            var st = stat()
            #expect(lstat(setup.stateDir + "/" + name, &st) == 0 && st.st_uid == 65534, "\(name) is not owned by the state directory's owner")
        }
    }

    @Test func simulateReadingsPrintsValidNormalizedReadings() async throws {
        let dir = try TempDir()
        let r = try await ChildProcess.run([agentBinary, "simulate", "readings", "--profile", "pulse-oximeter", "--count", "3"])
        #expect(r.status == 0)
        let lines = r.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        try await expectValid(lines, schema: "reading.schema.json", dir: dir)
    }

    @Test func simulateSerialPrintsAPseudoTerminalThatCarriesFrames() async throws {
        let child = try ChildProcess([agentBinary, "simulate", "serial", "--profile", "masimo-ascii1", "--seconds", "10"])
        defer { child.signal(SIGKILL) }
        #expect(await child.output.wait(timeout: .seconds(10)) { $0.contains("/dev/pts/") })
        let path = child.output.value.split(separator: "\n").first.map(String.init) ?? ""
        let fd = open(path, O_RDONLY | O_NOCTTY)
        #expect(fd >= 0, "cannot open \(path)")
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        #expect(n > 0, "no bytes from the simulator")
    }
}

/// A sub-directory path of `dir` (created by the agent).
func TempDir2(_ dir: TempDir, _ name: String) -> String { dir.file(name) }

// MARK: - scan and pair through the socket, with a mock Bluetooth host

/// THE MOCK of these tests: a stand-in for the Bluetooth host (the lead plugs the real one in
/// through `Agent(bluetooth:)`). Everything else here is real: the socket server, the service,
/// the registry, the audit file and the buffer.
final class MockBluetooth: BluetoothControl {
    let forgotten = Watched<[String]>([])
    /// Why each passkey prompt failed (the prompt's error text), in order.
    let promptFailures = Watched<[String]>([])
    var adapterDescription: String { get async { "mock hci0" } }

    func scan(seconds: Int, report: @escaping @Sendable (ScanRow) async -> Void) async throws {
        await report(ScanRow(address: "C0:FF:EE:00:00:01", addressType: "public", name: "Nonin3230", rssi: -60,
                             services: ["0x1822"], profile: "pulse-oximeter"))
        await report(ScanRow(address: "C0:FF:EE:00:00:02", addressType: "random", name: nil, rssi: -80, services: ["0x1810"],
                             profile: "blood-pressure"))
    }

    func pair(address: String, patient: String, profile: String?, passkey: PasskeyPrompt) async throws -> PairedDevice {
        if address.hasSuffix("99") { throw BluetoothControlError(.notFound, "no device \(address) answered within 30 s") }
        let answer: PairingAnswer
        do { answer = try await passkey.ask(.enterPasskey) } catch {
            promptFailures.update { $0.append("\(error)") }
            throw error
        }
        guard answer == .passkey(123456) else {
            throw BluetoothControlError(.pairingFailed, "pairing rejected: wrong passkey")
        }
        return PairedDevice(address: address, addressType: "public", profile: profile ?? "pulse-oximeter", name: "Nonin 3230",
                            manufacturer: "Nonin", model: "3230", serialNumber: "502", firmware: "1.0",
                            firstReadingAt: SystemWallClock().now())
    }

    func forget(deviceID: String) async throws { forgotten.update { $0.append(deviceID) } }

    func linkStates() async -> [String: LinkState] {
        ["ble-c0ffee000001": LinkState(connected: true, rssi: -60, battery: 80, detail: "connected")]
    }
}

@Suite(.timeLimit(.minutes(1)))
struct ControlServiceBluetoothTests {
    func serve(_ dir: TempDir, _ bluetooth: MockBluetooth) async throws -> (ControlServer, SQLiteBuffer, String) {
        var logger = Logger(label: "control-test")
        logger.logLevel = .critical
        let buffer = try await SQLiteBuffer(path: dir.file("buffer.db"), maxBytes: 1 << 20, onFull: .reject, gatewayID: "mock",
                                            gapTopic: "iomt/mock/status/gaps")
        let config = AgentConfig(gateway: .init(id: "mock"), stateDir: dir.path,
                                 broker: .init(endpoints: [try BrokerEndpoint(parsing: "mqtt://127.0.0.1:1")], gatewayID: "mock"))
        let service = ControlService(
            config: config, buffer: buffer, registry: try DeviceRegistry(stateDir: dir.path),
            audit: AuditTrail(log: AuditLog(stateDir: dir.path, gatewayID: "mock"), buffer: buffer, topic: "iomt/mock/audit", logger: logger),
            sources: [], live: nil, bluetooth: bluetooth, clock: SystemWallClock(), logger: logger)
        let socket = dir.file("c.sock")
        let server = ControlServer(path: socket, group: nil, handler: service, logger: logger)
        try server.start()
        return (server, buffer, socket)
    }

    @Test func scanStreamsRowsBeforeItsFinalResponse() async throws {
        let dir = try TempDir()
        let (server, buffer, socket) = try await serve(dir, MockBluetooth())
        let (rows, result): ([ScanRow], JSONValue) = try await onThread {
            let c = try ControlClient(path: socket, receiveTimeout: .seconds(10))
            var rows: [ScanRow] = []
            let r = try c.call("scan", args: .obj(["seconds": .int(2)]), onEvent: { rows.append(ScanRow(json: $0)) })
            return (rows, r)
        }
        #expect(rows.map(\.address) == ["C0:FF:EE:00:00:01", "C0:FF:EE:00:00:02"])
        #expect(rows.first?.profile == "pulse-oximeter" && rows.first?.rssi == -60)
        #expect(result["seen"]?.intValue == 2)
        await server.stop()
        await buffer.close()
    }

    @Test func pairAsksForThePasskeyOverTheSocketBindsAuditsAndDischargeForgetsTheBond() async throws {
        let dir = try TempDir()
        let mock = MockBluetooth()
        let (server, buffer, socket) = try await serve(dir, mock)
        let (prompts, paired): ([ServerMessage.Prompt], JSONValue) = try await onThread {
            let c = try ControlClient(path: socket, receiveTimeout: .seconds(10))
            var prompts: [ServerMessage.Prompt] = []
            let r = try c.call("pair", args: .obj(["address": .string("C0:FF:EE:00:00:01"), "patient": .string("P-7")]),
                               onPrompt: { p in prompts.append(p); return .string("123456") })
            return (prompts, r)
        }
        #expect(prompts.map(\.kind) == ["passkey"])
        #expect(paired["id"]?.stringValue == "ble-c0ffee000001")
        #expect(paired["serial_number"]?.stringValue == "502")
        #expect(paired["first_reading_at"]?.stringValue != nil)
        let registry = try DeviceRegistry(stateDir: dir.path)
        #expect(registry.device(address: "C0:FF:EE:00:00:01")?.patientID == "P-7")

        let devices = try await control(socket, "devices")
        #expect(devices["devices"]?.arrayValue?.first?["battery"]?.intValue == 80)

        let wrong = try await controlError(socket, "pair", .obj(["address": .string("C0:FF:EE:00:00:03"), "patient": .string("P-8"),
                                                                  "passkey": .int(111111)]))
        #expect(wrong.code == .pairingFailed && wrong.message.contains("wrong passkey"))
        let missing = try await controlError(socket, "pair", .obj(["address": .string("C0:FF:EE:00:00:99"), "patient": .string("P-8"),
                                                                    "passkey": .int(123456)]))
        #expect(missing.code == .notFound)
        let badAddress = try await controlError(socket, "pair", .obj(["address": .string("nonsense"), "patient": .string("P-8")]))
        #expect(badAddress.code == .invalidArgument)

        let discharged = try await control(socket, "discharge", .obj(["patient": .string("P-7")]))
        #expect(discharged["discharged"]?.arrayValue?.first?["bond"]?.stringValue == "deleted")
        #expect(mock.forgotten.value == ["ble-c0ffee000001"])
        #expect(try DeviceRegistry(stateDir: dir.path).list().isEmpty)

        let events = try AuditLog(stateDir: dir.path, gatewayID: "mock").read().events
        #expect(events.map(\.action.rawValue) == ["pair", "pair", "pair", "discharge"])
        #expect(events.map(\.outcome) == ["ok", "failed", "failed", "ok"])
        #expect(events.first?.patientAfter == "P-7" && events.first?.actor.via == "socket")
        // Each audit event is also queued for <prefix>/audit in the buffer.
        let queued = try await buffer.pending(after: 0, limit: 10).filter { $0.message.topic == "iomt/mock/audit" }
        #expect(queued.count == 4)
        await server.stop()
        await buffer.close()
    }

    @Test func aClientThatLeavesDuringAPromptCancelsIt() async throws {
        let dir = try TempDir()
        let mock = MockBluetooth()
        let (server, buffer, socket) = try await serve(dir, mock)
        try await onThread {
            let c = try ControlClient(path: socket, receiveTimeout: .seconds(10))
            try c.sendLine(ClientMessage.request(id: 1, cmd: "pair", args: .obj(["address": .string("C0:FF:EE:00:00:01"),
                                                                                   "patient": .string("P-1")])).line)
            _ = try c.readLine() // the stage event
            _ = try c.readLine() // the prompt; then leave without answering
        }
        // The server notices the disconnect on its reader thread: wait for the prompt to fail
        // (stopping first would cancel it for another reason: "the agent is closing").
        #expect(await mock.promptFailures.wait(timeout: .seconds(10)) { !$0.isEmpty }, "the prompt was never cancelled")
        // Stopping the server waits for the running command: the pairing failed and was audited.
        await server.stop()
        let events = try AuditLog(stateDir: dir.path, gatewayID: "mock").read().events
        #expect(events.map(\.outcome) == ["failed"])
        #expect(events.first?.detail?.contains("client") == true, "\(events)")
        #expect(try DeviceRegistry(stateDir: dir.path).list().isEmpty, "nothing was bound")
        await buffer.close()
    }
}

@Suite struct ControlConfigTests {
    let base = "gateway:\n  id: hub-1\nbroker:\n  url: mqtt://127.0.0.1:1883\n"

    @Test func theControlSectionDefaultsToTheRunDirectoryAndGroupIomt() throws {
        let c = try AgentConfig.parse(yaml: base, source: "t.yaml")
        #expect(c.control.socket == "/run/iomt-agent/control.sock")
        #expect(c.control.group == "iomt")
        #expect(c.renderSummary().contains("control:\n  socket: /run/iomt-agent/control.sock\n  group: iomt"))
    }

    @Test func socketAndGroupAreRead() throws {
        let c = try AgentConfig.parse(yaml: base + "control:\n  socket: /tmp/x/ctl.sock\n  group: nurses\n", source: "t.yaml")
        #expect(c.control == AgentConfig.Control(socket: "/tmp/x/ctl.sock", group: "nurses"))
    }

    @Test func badValuesAreReportedWithLineAndKeyPath() {
        do {
            _ = try AgentConfig.parse(yaml: base + "control:\n  socket: run/ctl.sock\n  group: \"a b\"\n  sokcet: x\n", source: "t.yaml")
            Issue.record("accepted")
        } catch {
            let text = error.description
            #expect(text.contains("t.yaml:6: control.socket: must be an absolute path"), "\(text)")
            #expect(text.contains("control.group"), "\(text)")
            #expect(text.contains("control.sokcet"), "\(text)")
        }
        do {
            _ = try AgentConfig.parse(yaml: base + "control:\n  socket: /" + String(repeating: "s", count: 120) + "\n", source: "t.yaml")
            Issue.record("accepted a socket path longer than sun_path")
        } catch {
            #expect(error.description.contains("at most 107 bytes"))
        }
    }
}

@Suite struct BufferSupportQueryTests {
    func message(_ device: String?, _ seq: UInt64?, kind: MessageKind = .reading, topic: String = "t") -> OutgoingMessage {
        var ids = ReadingIDGenerator()
        return OutgoingMessage(id: ids.next(at: SystemWallClock().now()), kind: kind, topic: topic, payload: Array("{}".utf8),
                               deviceID: device, sequence: seq, createdAt: SystemWallClock().now())
    }

    @Test func pendingPagesByRowAndFiltersByDeviceWithoutLeasing() async throws {
        let dir = try TempDir()
        let b = try await SQLiteBuffer(path: dir.file("b.db"), maxBytes: 1 << 20, onFull: .reject, gatewayID: "g", gapTopic: "gaps")
        _ = try await b.append([message("a", 1), message("b", 1), message("a", 2), message(nil, nil, kind: .event, topic: "audit")])
        #expect(try await b.pendingReadingCounts() == ["a": 2, "b": 1])
        let page1 = try await b.pending(after: 0, limit: 2)
        #expect(page1.map(\.token) == [.message(1), .message(2)])
        let page2 = try await b.pending(after: 2, limit: 10)
        #expect(page2.map(\.token) == [.message(3), .message(4)])
        #expect(try await b.pending(after: 0, limit: 10, deviceIDs: ["a"]).map(\.message.sequence) == [1, 2])
        #expect(try await b.lease(limit: 10).count == 4, "pending leased nothing")
        await b.close()
    }

    @Test func purgeRecordsLossesKeepsInFlightRowsAndNonReadings() async throws {
        let dir = try TempDir()
        let b = try await SQLiteBuffer(path: dir.file("b.db"), maxBytes: 1 << 20, onFull: .reject, gatewayID: "g", gapTopic: "gaps")
        _ = try await b.append([message("a", 1), message("a", 2), message("a", 3), message(nil, nil, kind: .event, topic: "audit")])
        let inFlight = try await b.lease(limit: 1) // row 1
        let outcome = try await b.purgeReadings(reason: .purgedByOperator)
        #expect(outcome.purged == 2 && outcome.leftInFlight == 1)
        #expect(outcome.losses.map(\.sequence) == [2, 3])
        let stats = try await b.stats()
        #expect(stats.messageCount == 2) // the in-flight reading and the audit event
        #expect(stats.lostByDevice == ["a": 2])
        #expect(stats.gapRowsPending == 1)
        try await b.ack(inFlight.map(\.token))
        let next = try await b.lease(limit: 10)
        let gap = try #require(next.first { $0.message.kind == .gap })
        let g = try JSONValue.parse(gap.message.payload)
        #expect(g["first_sequence"]?.intValue == 2 && g["last_sequence"]?.intValue == 3 && g["reason"]?.stringValue == "purged-by-operator")
        #expect(next.contains { $0.message.topic == "audit" })
        await b.close()
    }
}
