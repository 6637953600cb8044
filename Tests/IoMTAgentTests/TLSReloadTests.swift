import Foundation
import IoMTTestSupport
import Testing

/// Issue 8: `kill -HUP` makes the running agent re-read its broker certificate and key (and
/// password file) and reconnect with them, losing nothing buffered or in flight; a broken file
/// is refused with an error line and the running connection stays.
///
/// The broker requires a client certificate (`require_certificate true`) and names each
/// connection's certificate in its log (`use_identity_as_username true`: `u'<CN>'`).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct AgentTLSReloadTests {
    struct World {
        let dir: TempDir
        let pki: TestPKI
        let broker: MosquittoBroker
        let subscriber: MQTTTestSubscriber
        let setup: AgentSetup
        /// Client identity B (CN iomt-test-client-b), signed by the PKI's other CA.
        let certB: String
        let keyB: String
        /// The CA bundle the broker checks client certificates against.
        let clientCAs: String
    }

    static let count = 160

    func start() async throws -> World {
        let dir = try TempDir()
        let pki = try TestPKI()
        func ossl(_ args: [String]) throws {
            let r = try ChildProcess.runBlocking(["openssl"] + args)
            guard r.status == 0 else { throw TestSupportError("openssl \(args.joined(separator: " ")): \(r.output)") }
        }
        try ossl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", dir.file("b.key"), "-out", dir.file("b.csr"), "-subj", "/CN=iomt-test-client-b"])
        try ossl(["x509", "-req", "-in", dir.file("b.csr"), "-CA", pki.otherCACert, "-CAkey", pki.dir.file("other-ca.key"),
                  "-CAcreateserial", "-out", dir.file("b.crt"), "-days", "365", "-extfile", pki.dir.file("client.ext")])
        let clientCAs = dir.file("client-cas.pem")
        try dir.write("client-cas.pem", try String(contentsOfFile: pki.caCert, encoding: .utf8)
                      + String(contentsOfFile: pki.otherCACert, encoding: .utf8))
        // The agent's files, A to begin with (0600 key, as the agent demands).
        try FileManager.default.copyItem(atPath: pki.clientCert, toPath: dir.file("client.crt"))
        try FileManager.default.copyItem(atPath: pki.clientKey, toPath: dir.file("client.key"))
        chmod(dir.file("client.key"), 0o600)

        let broker = try await MosquittoBroker.start(BrokerOptions(
            persistence: true,
            tls: BrokerTLS(caFile: clientCAs, certFile: pki.serverCert, keyFile: pki.serverKey, requireCertificate: true)))
        // After the TLS listener line, so it applies to that listener; then restart to load it.
        let conf = broker.dir.file("mosquitto.conf")
        try (String(contentsOfFile: conf, encoding: .utf8) + "use_identity_as_username true\n")
            .write(toFile: conf, atomically: true, encoding: .utf8)
        try await broker.restart()
        let subscriber = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/reload/readings/#",
                                                            clientID: "reload-sub", persistentSession: true, qos: 1)
        var setup = AgentSetup(gateway: "reload", stateDir: dir.file("state"), brokerURL: try #require(broker.tlsURL()))
        setup.qos = 2
        setup.extraBroker = ["ca_file: \(pki.caCert)", "cert_file: \(dir.file("client.crt"))", "key_file: \(dir.file("client.key"))"]
        setup.simulators = [Sim(id: "ox-r", patient: "P-R", rate: 20, count: Self.count)]
        return World(dir: dir, pki: pki, broker: broker, subscriber: subscriber, setup: setup,
                     certB: dir.file("b.crt"), keyB: dir.file("b.key"), clientCAs: clientCAs)
    }

    func received(_ w: World) -> Int { readings(w.subscriber.messages).count }

    /// Every reading of the run arrived: sequences 1...count, one id each. The agent publishes at
    /// QoS 2; the subscriber holds QoS 1 across the broker restart (mosquitto 2.0.11 resends a
    /// queued QoS 2 backlog past the client's receive maximum and libmosquitto drops the
    /// connection: see `MQTTTestSubscriber.start`), so a redelivery from the broker to the
    /// subscriber may repeat a message: with the same id, which is what is checked.
    func expectEveryReadingByID(_ w: World, sourceLocation: SourceLocation = #_sourceLocation) async {
        let all = await w.subscriber.waitUntil(timeout: .seconds(40)) { readings($0).count >= Self.count }
        #expect(all, "only \(received(w)) of \(Self.count) readings arrived", sourceLocation: sourceLocation)
        let seen = readings(w.subscriber.messages)
        let maxSeq = expectNoLossAndRecognisableDuplicates(seen, device: "ox-r", sourceLocation: sourceLocation)
        #expect(maxSeq == Self.count, sourceLocation: sourceLocation)
        #expect(Set(seen.map(\.id)).count == Self.count,
                "\(seen.count) messages for \(Set(seen.map(\.id)).count) ids", sourceLocation: sourceLocation)
    }

    @Test func sighupSwitchesToTheNewCertificateAndEveryBufferedReadingArrives() async throws {
        let w = try await start()
        defer { w.broker.killNow() }
        defer { w.subscriber.stop() }
        let agent = try w.setup.start(in: w.dir)
        defer { agent.signal(SIGKILL) }
        #expect(await w.subscriber.waitUntil(timeout: .seconds(20)) { readings($0).count >= 10 }, "\(agent.output.value.suffix(2000))")
        #expect(w.broker.log.contains("u'iomt-test-client'"), "connected with certificate A")

        // Certificate B replaces A on disk; SIGHUP makes the agent use it now.
        try FileManager.default.removeItem(atPath: w.dir.file("client.crt"))
        try FileManager.default.copyItem(atPath: w.certB, toPath: w.dir.file("client.crt"))
        try String(contentsOfFile: w.keyB, encoding: .utf8).write(toFile: w.dir.file("client.key"), atomically: false, encoding: .utf8)
        agent.signal(SIGHUP)
        #expect(await agent.output.wait(timeout: .seconds(10)) { $0.contains("SIGHUP: broker credentials reloaded") },
                "\(agent.output.value.suffix(2000))")
        #expect(await w.broker.waitForLog("u'iomt-test-client-b'", timeout: .seconds(10)), "reconnected with certificate B")

        // The broker is restarted trusting only B's CA: A would be refused now. Readings made
        // meanwhile stay buffered and arrive after the reconnect.
        await w.broker.stop()
        try String(contentsOfFile: w.pki.otherCACert, encoding: .utf8).write(toFile: w.clientCAs, atomically: true, encoding: .utf8)
        let buffered = received(w)
        try await w.broker.restart()
        #expect(await w.broker.waitForLog("u'iomt-test-client-b'", timeout: .seconds(15)))
        #expect(buffered < Self.count, "the restart happened while readings were still produced")
        await expectEveryReadingByID(w)
        if received(w) < Self.count { Issue.record("agent:\n\(agent.output.value.suffix(3000))\nbroker:\n\(w.broker.log.suffix(3000))") }
        #expect(!agent.output.value.contains("NOT reloaded"))
        agent.signal(SIGTERM)
        #expect(await agent.waitForExit(timeout: .seconds(20)))
    }

    @Test func sighupWithABrokenKeyLogsAnErrorAndTheConnectionKeepsWorking() async throws {
        let w = try await start()
        defer { w.broker.killNow() }
        defer { w.subscriber.stop() }
        let agent = try w.setup.start(in: w.dir)
        defer { agent.signal(SIGKILL) }
        #expect(await w.subscriber.waitUntil(timeout: .seconds(20)) { readings($0).count >= 10 }, "\(agent.output.value.suffix(2000))")
        let connections = w.broker.log.components(separatedBy: "New client connected").count

        try "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n"
            .write(toFile: w.dir.file("client.key"), atomically: false, encoding: .utf8)
        agent.signal(SIGHUP)
        #expect(await agent.output.wait(timeout: .seconds(10)) { $0.contains("SIGHUP: broker credentials NOT reloaded") },
                "\(agent.output.value.suffix(2000))")
        let line = agent.output.value.split(separator: "\n").first { $0.contains("NOT reloaded") }.map(String.init) ?? ""
        #expect(line.contains("client.key") && line.contains("error"), "\(line)")
        #expect(!line.contains("garbage"), "no key material in the log")

        // Loose permissions are refused too, with the fix named.
        try String(contentsOfFile: w.pki.clientKey, encoding: .utf8).write(toFile: w.dir.file("client.key"), atomically: false, encoding: .utf8)
        chmod(w.dir.file("client.key"), 0o644)
        agent.signal(SIGHUP)
        #expect(await agent.output.wait(timeout: .seconds(10)) { $0.contains("chmod 600") }, "\(agent.output.value.suffix(2000))")

        let before = received(w)
        #expect(await w.subscriber.waitUntil(timeout: .seconds(10)) { readings($0).count >= before + 10 }, "readings keep flowing")
        #expect(w.broker.log.components(separatedBy: "New client connected").count == connections, "no reconnect")
        await expectEveryReadingByID(w)
        agent.signal(SIGTERM)
        #expect(await agent.waitForExit(timeout: .seconds(20)))
    }

    /// The password file is reloaded too: the broker's password changes (the broker restarts
    /// with it) and refuses the agent; the new password written to the file plus SIGHUP lets it
    /// in, and every reading buffered meanwhile arrives.
    @Test func sighupReloadsThePasswordFile() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true, users: ["hub": "old-secret"], allowAnonymous: false))
        defer { broker.killNow() }
        let subscriber = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/reload/readings/#",
                                                            username: "hub", password: "old-secret",
                                                            clientID: "reload-pw-sub", persistentSession: true, qos: 2)
        defer { subscriber.stop() }
        try dir.write("broker.password", "old-secret\n")
        chmod(dir.file("broker.password"), 0o600)
        var setup = AgentSetup(gateway: "reload", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.qos = 2
        setup.extraBroker = ["username: hub", "password_file: \(dir.file("broker.password"))"]
        setup.simulators = [Sim(id: "ox-r", patient: "P-R", rate: 20, count: Self.count)]
        let agent = try setup.start(in: dir)
        defer { agent.signal(SIGKILL) }
        #expect(await subscriber.waitUntil(timeout: .seconds(20)) { readings($0).count >= 10 }, "\(agent.output.value.suffix(2000))")

        // The broker's password changes; the subscriber is let in with it too (same user).
        subscriber.stop()
        let r = try await ChildProcess.run(["mosquitto_passwd", "-b", broker.dir.file("passwords"), "hub", "new-secret"])
        #expect(r.status == 0, "\(r.output)")
        try await broker.restart()
        #expect(await agent.output.wait(timeout: .seconds(15)) { $0.contains("cannot connect to the broker") },
                "the old password is refused: \(agent.output.value.suffix(1500))")
        let after = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/reload/readings/#",
                                                       username: "hub", password: "new-secret",
                                                       clientID: "reload-pw-sub", persistentSession: true, qos: 2)
        defer { after.stop() }
        try dir.write("broker.password", "new-secret\n")
        agent.signal(SIGHUP)
        #expect(await agent.output.wait(timeout: .seconds(10)) { $0.contains("SIGHUP: broker credentials reloaded") },
                "\(agent.output.value.suffix(2000))")
        let log = agent.output.value
        #expect(!log.contains("new-secret") && !log.contains("old-secret"), "no password in the log")
        // Everything not delivered before the change arrives now (the first subscriber saw the rest).
        let everything = await after.waitUntil(timeout: .seconds(40)) { m in
            Set(readings(m).map(\.sequence)).union(Set(readings(subscriber.messages).map(\.sequence))).count >= Self.count
        }
        let seen = readings(subscriber.messages) + readings(after.messages)
        #expect(everything, "\(Set(seen.map(\.sequence)).count) of \(Self.count) readings arrived")
        expectNoLossAndRecognisableDuplicates(seen, device: "ox-r")
        agent.signal(SIGTERM)
        #expect(await agent.waitForExit(timeout: .seconds(20)))
    }
}
