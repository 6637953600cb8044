import Foundation
import IoMTTestSupport
import Testing

@Suite(.serialized, .timeLimit(.minutes(3)))
struct ConnectionAndStorageTests {
    @Test func wrongPasswordKeepsEverythingBufferedUntilFixed() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start(BrokerOptions(users: ["gw": "right-secret"], allowAnonymous: false))
        defer { broker.killNow() }
        try dir.write("password", "wrong-secret\n")
        chmod(dir.file("password"), 0o600)
        var setup = AgentSetup(gateway: "creds", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.extraBroker = ["username: gw", "password_file: \(dir.file("password"))"]
        setup.simulators = [Sim(id: "th-1", profile: "thermometer", rate: 50, count: 30)]
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#",
                                                     username: "gw", password: "right-secret")
        defer { sub.stop() }

        let agent = try setup.start(in: dir)
        defer { agent.signal(SIGKILL) }
        #expect(await agent.output.wait(timeout: .seconds(15)) { $0.contains("cannot connect to the broker") },
                "no connection error logged: \(agent.output.value)")
        try await Task.sleep(for: .seconds(1.5))  // all 30 readings made durable meanwhile
        let log = agent.output.value
        #expect(log.lowercased().contains("password") || log.lowercased().contains("not authorized"),
                "the error names the cause: \(log)")
        #expect(!log.contains("wrong-secret"), "the password never reaches the log")
        #expect(readings(sub.messages).isEmpty)
        await agent.terminate()
        #expect(try highWaterSequence(stateDir: setup.stateDir, device: "th-1") == 30)

        // Fix the password: everything buffered goes out.
        try dir.write("password", "right-secret\n")
        chmod(dir.file("password"), 0o600)
        setup.simulators = []
        let fixed = try setup.start(in: dir, exitWhenDrained: true)
        defer { fixed.signal(SIGKILL) }
        #expect(await fixed.waitForExit(timeout: .seconds(30)), "did not drain: \(fixed.output.value)")
        #expect(await waitUntil(sub) { Set(readings($0).map(\.sequence)).count >= 30 })
        #expect(expectNoLossAndRecognisableDuplicates(readings(sub.messages), device: "th-1") == 30)
    }

    @Test func passwordFileReadableByOthersIsRefusedWithTheFix() async throws {
        let dir = try TempDir()
        try dir.write("password", "secret\n")
        chmod(dir.file("password"), 0o644)
        var setup = AgentSetup(gateway: "perm", stateDir: dir.file("state"), brokerURL: "mqtt://127.0.0.1:1")
        setup.extraBroker = ["username: gw", "password_file: \(dir.file("password"))"]
        let agent = try setup.start(in: dir)
        defer { agent.signal(SIGKILL) }
        #expect(await agent.waitForExit(timeout: .seconds(15)))
        let status = agent.exitStatus.value ?? 0
        #expect((status >> 8) & 0xFF == 78, "exit code 78 (configuration): \(agent.output.value)")
        #expect(agent.output.value.contains("chmod 600"))
        #expect(!agent.output.value.contains("secret\n"))
    }

    @Test func mutualTLSWithGeneratedCertificates() async throws {
        let dir = try TempDir()
        let pki = try TestPKI()
        let broker = try await MosquittoBroker.start(BrokerOptions(
            tls: BrokerTLS(caFile: pki.caCert, certFile: pki.serverCert, keyFile: pki.serverKey, requireCertificate: true)))
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "tls", stateDir: dir.file("state"), brokerURL: try #require(broker.tlsURL()))
        setup.extraBroker = ["ca_file: \(pki.caCert)", "cert_file: \(pki.clientCert)", "key_file: \(pki.clientKey)"]
        setup.simulators = [Sim(id: "bp-1", profile: "blood-pressure", rate: 50, count: 25)]
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#")
        defer { sub.stop() }
        let agent = try setup.start(in: dir, exitWhenDrained: true)
        defer { agent.signal(SIGKILL) }
        #expect(await agent.waitForExit(timeout: .seconds(30)), "did not drain: \(agent.output.value)")
        #expect(await waitUntil(sub) { Set(readings($0).map(\.sequence)).count >= 25 })
        #expect(expectNoLossAndRecognisableDuplicates(readings(sub.messages), device: "bp-1") == 25)
    }

    @Test func unknownCertificateAuthorityIsAClearErrorAndNothingIsDropped() async throws {
        let dir = try TempDir()
        let pki = try TestPKI()
        let broker = try await MosquittoBroker.start(BrokerOptions(
            tls: BrokerTLS(caFile: pki.caCert, certFile: pki.serverCert, keyFile: pki.serverKey)))
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "badca", stateDir: dir.file("state"), brokerURL: try #require(broker.tlsURL()))
        setup.extraBroker = ["ca_file: \(pki.otherCACert)"]
        setup.simulators = [Sim(id: "th-1", profile: "thermometer", rate: 50, count: 10)]
        let agent = try setup.start(in: dir)
        defer { agent.signal(SIGKILL) }
        #expect(await agent.output.wait(timeout: .seconds(15)) { $0.contains("cannot connect to the broker") })
        try await Task.sleep(for: .seconds(0.5))
        await agent.terminate()
        #expect(agent.output.value.lowercased().contains("certificate"), "names the certificate problem: \(agent.output.value)")
        #expect(try highWaterSequence(stateDir: setup.stateDir, device: "th-1") == 10)
        let db = "\(setup.stateDir)/buffer.db"
        let left = try await ChildProcess.run(["sqlite3", db, "SELECT count(*) FROM \(try bufferMessagesTable(db));"])
        #expect(left.output.trimmingCharacters(in: .whitespacesAndNewlines) == "10", "all 10 still buffered")
    }

    @Test(arguments: ["garbage", "truncated"])
    func corruptBufferIsMovedAsideAndTheAgentCarriesOn(kind: String) async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "corrupt", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.simulators = [Sim(id: "th-1", profile: "thermometer", rate: 100, count: 40)]
        // A real buffer with readings in it, made while the broker is unreachable.
        var offline = setup
        offline.brokerURL = "mqtt://127.0.0.1:\(try freeLoopbackPort())"
        let first = try offline.start(in: dir, name: "offline.yaml")
        defer { first.signal(SIGKILL) }
        try await Task.sleep(for: .seconds(1.5))
        await first.terminate()
        let db = "\(setup.stateDir)/buffer.db"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: db))
        #expect(bytes.count > 4096)
        if kind == "garbage" {
            bytes = Data((0..<bytes.count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        } else {
            bytes = bytes.prefix(bytes.count / 2 + 100)  // a power cut mid-page
        }
        try bytes.write(to: URL(fileURLWithPath: db))
        try? FileManager.default.removeItem(atPath: db + "-wal")

        setup.simulators = [Sim(id: "th-2", profile: "thermometer", rate: 100, count: 10)]
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#")
        defer { sub.stop() }
        let agent = try setup.start(in: dir, exitWhenDrained: true)
        defer { agent.signal(SIGKILL) }
        #expect(await agent.waitForExit(timeout: .seconds(30)), "did not run: \(agent.output.value)")
        #expect(agent.output.value.contains("moved aside"), "the move is logged: \(agent.output.value)")
        let moved = try FileManager.default.contentsOfDirectory(atPath: setup.stateDir).filter { $0.contains(".corrupt-") && !$0.hasSuffix("-shm") && !$0.hasSuffix("-wal") }
        #expect(moved.count == 1, "one moved-aside file: \(moved)")
        if let name = moved.first {
            let kept = try Data(contentsOf: URL(fileURLWithPath: "\(setup.stateDir)/\(name)"))
            #expect(kept == bytes, "the corrupt file is kept byte for byte")
        }
        #expect(await waitUntil(sub) { Set(readings($0).filter { $0.device == "th-2" }.map(\.sequence)).count >= 10 })
        expectNoLossAndRecognisableDuplicates(readings(sub.messages), device: "th-2")
    }
}

/// A small tmpfs for disk-full tests (needs root, as on the CI machines; skipped elsewhere).
final class SmallFileSystem {
    let path: String
    init(in dir: TempDir, size: String) throws {
        path = dir.file("small-fs")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let r = try ChildProcess.runBlocking(["mount", "-t", "tmpfs", "-o", "size=\(size)", "tmpfs", path])
        guard r.status == 0 else { throw TestSupportError("mount tmpfs: \(r.output)") }
    }
    deinit { _ = try? ChildProcess.runBlocking(["umount", "-l", path]) }

    static let available: Bool = {
        guard getuid() == 0, let dir = try? TempDir() else { return false }
        return (try? SmallFileSystem(in: dir, size: "64k")) != nil
    }()
}

@Suite(.serialized, .timeLimit(.minutes(3)))
struct DiskFullTests {
    @Test(.enabled(if: SmallFileSystem.available, "needs root to mount a small tmpfs"))
    func diskFullLosesOnlyAtTheSourceKeepsForwardingAndRecovers() async throws {
        let dir = try TempDir()
        let fs = try SmallFileSystem(in: dir, size: "8m")
        let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true))
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "diskfull", stateDir: fs.path + "/state", brokerURL: broker.url)
        setup.maxBytes = "64MiB" // the file system, not the bound, runs out
        setup.simulators = [Sim(id: "ox-1", rate: 100)]
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#",
                                                     clientID: "test-sub-diskfull", persistentSession: true, qos: 1)
        defer { sub.stop() }
        await broker.stop()
        let agent = try setup.start(in: dir)
        defer { agent.signal(SIGKILL) }
        // Another process fills the disk once the agent runs (its 4 MiB reserve is in place),
        // leaving ~300 KiB for the buffer.
        #expect(await agent.output.wait(timeout: .seconds(10)) { $0.contains("agent starting") })
        var st = statvfs()
        #expect(statvfs(fs.path, &st) == 0)
        let free = Int64(st.f_bavail) * Int64(st.f_frsize)
        let ballast = try await ChildProcess.run(["fallocate", "-l", "\(max(free - 300 * 1024, 4096))", fs.path + "/ballast"])
        #expect(ballast.status == 0, "fallocate: \(ballast.output)")
        #expect(await agent.output.wait(timeout: .seconds(30)) { $0.contains("buffer cannot store readings") },
                "the disk never filled: \(agent.output.value)")
        #expect(agent.output.value.contains("disk full"), "the error says disk full: \(agent.output.value)")
        #expect(agent.output.value.contains(fs.path), "the error names the path")
        try await Task.sleep(for: .seconds(1))

        // The broker returns: what is held drains, space comes back, new readings are accepted.
        try await broker.restart()
        #expect(await agent.output.wait(timeout: .seconds(30)) { $0.contains("buffer writable again") },
                "never recovered: \(agent.output.value)")
        #expect(await waitUntil(sub) { !gaps($0).isEmpty }, "no gap record")
        let lostLast = gaps(sub.messages).map(\.last).max() ?? 0
        #expect(await waitUntil(sub) { readings($0).contains { $0.sequence > lostLast + 50 } },
                "readings after the disk-full period did not flow")
        await agent.terminate()

        let delivered = Set(readings(sub.messages).map(\.sequence))
        var announced = Set<Int>()
        for g in gaps(sub.messages) {
            #expect(g.reason == "storage-error")
            announced.formUnion(g.first...g.last)
        }
        #expect(!announced.isEmpty)
        #expect(delivered.isDisjoint(with: announced))
        let top = delivered.max() ?? 0
        let holes = Set(1...top).subtracting(delivered).subtracting(announced)
        #expect(holes.isEmpty, "sequence numbers neither delivered nor announced: \(holes.sorted().prefix(20))")
    }
}

@Suite(.timeLimit(.minutes(2)))
struct FHIROutputTests {
    @Test func fhirBundlesFromEveryProfileValidateAndCarryTheReadingIdentifier() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "fhir", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.format = "fhir"
        setup.simulators = [Sim(id: "ox-1", rate: 50, count: 41), Sim(id: "bp-1", profile: "blood-pressure", rate: 50, count: 5),
                            Sim(id: "th-1", profile: "thermometer", rate: 50, count: 5)]
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/readings/#")
        defer { sub.stop() }
        let agent = try setup.start(in: dir, exitWhenDrained: true)
        defer { agent.signal(SIGKILL) }
        #expect(await agent.waitForExit(timeout: .seconds(30)), "did not drain: \(agent.output.value)")
        let messages = await sub.waitFor(count: 51)
        #expect(messages.count == 51)
        try await expectValidFHIR(messages.map(\.payloadString), dir: dir)
        for m in messages {
            let bundle = try #require(json(m))
            #expect(bundle["resourceType"] as? String == "Bundle")
            let id = try #require(m.userProperty("reading-id"))
            #expect((bundle["identifier"] as? [String: Any])?["value"] as? String == "urn:uuid:\(id)",
                    "the Bundle carries the reading id: redeliveries are recognisable")
        }
        // The finger-out reading (index 39) is a dataAbsentReason, never a number.
        #expect(messages.contains { $0.payloadString.contains("dataAbsentReason") })
    }
}
