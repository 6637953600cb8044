import IoMTTestSupport
@testable import IoMTUplink
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct UplinkBrokerTests {
    @Test func qos1AndQos2AreAcknowledgedAndCarryUserProperties() async throws {
        try await withBroker { broker in
            let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/#")
            defer { sub.stop() }
            try await withClient(try config([broker.url])) { client, rec in
                #expect(await rec.wait { $0.contains { if case .connected(_, false) = $0 { true } else { false } } })
                let m1 = try client.publish(topic: "iomt/a", payload: Array("one".utf8), qos: .atLeastOnce,
                                            userProperties: [("reading-id", "r-1"), ("seq", "1")])
                let m2 = try client.publish(topic: "iomt/b", payload: Array("two".utf8), qos: .exactlyOnce,
                                            userProperties: [("reading-id", "r-2")])
                #expect(m1 != m2)
                #expect(await rec.wait { acked($0).isSuperset(of: [m1, m2]) })
                let got = await sub.waitFor(count: 2)
                #expect(got.count == 2)
                let one = got.first { $0.topic == "iomt/a" }
                let two = got.first { $0.topic == "iomt/b" }
                #expect(one?.payloadString == "one")
                #expect(one?.qos == 1)
                #expect(one?.userProperties == [UserProperty(name: "reading-id", value: "r-1"), UserProperty(name: "seq", value: "1")])
                #expect(two?.payloadString == "two")
                #expect(two?.qos == 2)
                #expect(two?.userProperty("reading-id") == "r-2")
            }
        }
    }

    @Test func batchedAcknowledgementsCoverEveryMessageOnceAndInOrder() async throws {
        try await withBroker { broker in
            var c = try config([broker.url])
            c.batchAcknowledgements = true
            try await withClient(c) { client, rec in
                #expect(await rec.wait { connectedCount($0) == 1 })
                var mids: [Int32] = []
                for i in 0..<300 {
                    mids.append(try client.publish(topic: "iomt/batch", payload: Array("m\(i)".utf8), qos: .atLeastOnce))
                }
                #expect(await rec.wait { batchedAcks($0).count >= 300 })
                let acks = batchedAcks(rec.events.value)
                #expect(acks == mids, "each message acknowledged exactly once, in publish order")
                #expect(acked(rec.events.value).isEmpty, "no single acknowledgement events in batch mode")
                let batches = rec.events.value.filter { if case .acknowledgedBatch = $0 { true } else { false } }.count
                #expect(batches < 300, "acknowledgements were actually batched (\(batches) events)")
            }
        }
    }

    @Test func refusedPublishIsReportedAsRefusedNotDelivered() async throws {
        let dir = try TempDir()
        try dir.write("acl", "topic readwrite allowed/#\n")
        try await withBroker(BrokerOptions(extraConfig: ["acl_file \(dir.file("acl"))"])) { broker in
            try await withClient(try config([broker.url])) { client, rec in
                #expect(await rec.wait { $0.contains { if case .connected = $0 { true } else { false } } })
                let denied = try client.publish(topic: "forbidden/x", payload: [1], qos: .atLeastOnce)
                let allowed = try client.publish(topic: "allowed/x", payload: [2], qos: .atLeastOnce)
                #expect(await rec.wait { evs in
                    evs.contains(.refused(mid: denied, reason: .notAuthorized)) && acked(evs).contains(allowed)
                })
                #expect(!rec.acknowledgedMids.contains(denied))
            }
        }
    }

    @Test func brokerRestartMidStreamLosesNothing() async throws {
        try await withBroker(BrokerOptions(persistence: true)) { broker in
            // Persistent subscriber (session survives the broker restart thanks to persistence).
            let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/#",
                                                         clientID: "restart-sub", persistentSession: true)
            defer { sub.stop() }
            try await withClient(try config([broker.url])) { client, rec in
                #expect(await rec.wait { connectedCount($0) == 1 })
                var published: [Int32: String] = [:]
                for i in 0..<10 {
                    let p = "msg-\(i)"
                    published[try client.publish(topic: "iomt/r", payload: Array(p.utf8), qos: i % 2 == 0 ? .atLeastOnce : .exactlyOnce)] = p
                }
                #expect(await rec.wait { acked($0).count >= 5 })
                await broker.stop()  // mid-stream: some of the first 10 may still be in flight
                #expect(await rec.wait { $0.contains { if case .disconnected(.some) = $0 { true } else { false } } })
                for i in 10..<20 {  // queued while the broker is down
                    let p = "msg-\(i)"
                    published[try client.publish(topic: "iomt/r", payload: Array(p.utf8), qos: i % 2 == 0 ? .atLeastOnce : .exactlyOnce)] = p
                }
                try await broker.restart()
                #expect(await rec.wait(.seconds(20)) { connectedCount($0) >= 2 })
                let resumed = rec.events.value.last { if case .connected = $0 { true } else { false } }
                #expect(resumed == .connected(broker: try BrokerAddress(parsing: broker.url), sessionPresent: true))
                let mids = Set(published.keys)
                #expect(await rec.wait(.seconds(20)) { acked($0).isSuperset(of: mids) })
                let all = Set(published.values)
                #expect(await sub.waitUntil(timeout: .seconds(20)) { Set($0.map(\.payloadString)).isSuperset(of: all) })
                let received = sub.messages.map(\.payloadString)
                #expect(Set(received) == all, "missing: \(all.subtracting(received))")
                // Duplicates allowed only as identical payloads: nothing unknown was received.
                #expect(received.allSatisfy { all.contains($0) })
            }
        }
    }

    @Test func failsOverToSecondBroker() async throws {
        let deadPort = try freeLoopbackPort()
        try await withBroker { broker in
            let dead = "mqtt://127.0.0.1:\(deadPort)"
            try await withClient(try config([dead, broker.url])) { client, rec in
                #expect(await rec.wait { connectedCount($0, try? BrokerAddress(parsing: broker.url)) == 1 })
                #expect(rec.failures.first == .connectionRefused(broker: try BrokerAddress(parsing: dead)))
                let mid = try client.publish(topic: "iomt/f", payload: [1], qos: .atLeastOnce)
                #expect(await rec.wait { acked($0).contains(mid) })
            }
        }
    }

    /// Connected to A, A dies, the queued and in-flight messages go to B on the SAME
    /// `mosquitto*` (libmosquitto keeps `msgs_out` across `mosquitto_connect` to another host).
    @Test func failsOverMidStreamWithoutLosingQueuedMessages() async throws {
        let b = try await MosquittoBroker.start()
        defer { b.killNow() }
        try await withBroker { a in
            let subB = try await MQTTTestSubscriber.start(port: b.port, topicFilter: "iomt/#")
            defer { subB.stop() }
            try await withClient(try config([a.url, b.url])) { client, rec in
                let addrA = try BrokerAddress(parsing: a.url), addrB = try BrokerAddress(parsing: b.url)
                #expect(await rec.wait { connectedCount($0, addrA) == 1 })
                await a.kill9()
                #expect(await rec.wait { $0.contains { if case .disconnected(.some) = $0 { true } else { false } } })
                var published: [Int32: String] = [:]
                for i in 0..<8 {
                    let p = "fo-\(i)"
                    published[try client.publish(topic: "iomt/fo", payload: Array(p.utf8), qos: i % 2 == 0 ? .atLeastOnce : .exactlyOnce)] = p
                }
                #expect(await rec.wait { connectedCount($0, addrB) == 1 })
                #expect(rec.failures.contains(.connectionRefused(broker: addrA)))
                let mids = Set(published.keys)
                #expect(await rec.wait { acked($0).isSuperset(of: mids) })
                let all = Set(published.values)
                #expect(await subB.waitUntil { Set($0.map(\.payloadString)).isSuperset(of: all) })
            }
        }
        await b.stop()
    }

    /// A node that never answers (SYN black hole) must cost at most `connectTimeout` before the
    /// next node is tried, not the kernel's ~2 min blocking connect.
    @Test func unansweringNodeIsBoundedByConnectTimeout() async throws {
        let hole = try TCPBlackHole()
        try await withBroker { broker in
            var c = try config([hole.url, broker.url])
            c.connectTimeout = .seconds(1)
            try await withClient(c) { _, rec in
                #expect(await rec.wait(.seconds(6)) { connectedCount($0) == 1 })
                let holeAddress = try BrokerAddress(parsing: hole.url)
                #expect(rec.failures.first == .connectTimeout(broker: holeAddress))
            }
        }
    }

    @Test func qos0GetsNoAcknowledgementEvent() async throws {
        try await withBroker { broker in
            try await withClient(try config([broker.url])) { client, rec in
                #expect(await rec.wait { connectedCount($0) == 1 })
                let m0 = try client.publish(topic: "iomt/q0", payload: [0], qos: .atMostOnce)
                let m1 = try client.publish(topic: "iomt/q1", payload: [1], qos: .atLeastOnce)
                #expect(await rec.wait { acked($0).contains(m1) })
                #expect(!rec.acknowledgedMids.contains(m0))
            }
        }
    }

    @Test func wrongPasswordIsNotAuthorized() async throws {
        try await withBroker(BrokerOptions(users: ["gw": "right"], allowAnonymous: false)) { broker in
            var c = try config([broker.url])
            c.username = "gw"
            c.password = "wrong"
            try await withClient(c) { _, rec in
                #expect(await rec.wait { failures($0).count >= 2 })  // keeps retrying
                let addr = try BrokerAddress(parsing: broker.url)
                #expect(rec.failures.first == .notAuthorized(broker: addr))
                #expect(rec.connectedCount() == 0)
                #expect("\(rec.failures[0])".contains("127.0.0.1"))
            }
            c.password = "right"
            try await withClient(c) { _, rec in
                #expect(await rec.wait { connectedCount($0) == 1 })
            }
        }
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct UplinkTLSTests {
    /// A fresh PKI per test (EC keys: fast); its temp dir goes away with it.
    func tlsBroker(cert: KeyPath<TestPKI, String>, requireCertificate: Bool = false) async throws -> (MosquittoBroker, TestPKI) {
        let pki = try TestPKI()
        let b = try await MosquittoBroker.start(BrokerOptions(tls: BrokerTLS(
            caFile: pki.caCert, certFile: pki[keyPath: cert], keyFile: pki.serverKey, requireCertificate: requireCertificate)))
        return (b, pki)
    }

    func firstFailure(_ url: String, ca: String, cert: String? = nil, key: String? = nil) async throws -> UplinkError? {
        var c = try config([url])
        c.caFile = ca
        c.certFile = cert
        c.keyFile = key
        var failure: UplinkError?
        try await withClient(c) { _, rec in
            #expect(await rec.wait { !failures($0).isEmpty })
            #expect(rec.connectedCount() == 0)
            failure = rec.failures.first
        }
        return failure
    }

    @Test func serverVerificationSucceeds() async throws {
        let (broker, pki) = try await tlsBroker(cert: \.serverCert)
        defer { broker.killNow() }
        let url = try #require(broker.tlsURL())
        var c = try config([url])
        c.caFile = pki.caCert
        try await withClient(c) { client, rec in
            #expect(await rec.wait { connectedCount($0) == 1 })
            let mid = try client.publish(topic: "iomt/tls", payload: [1], qos: .exactlyOnce)
            #expect(await rec.wait { acked($0).contains(mid) })
        }
        await broker.stop()
    }

    @Test func mutualTLS() async throws {
        let (broker, pki) = try await tlsBroker(cert: \.serverCert, requireCertificate: true)
        defer { broker.killNow() }
        let url = try #require(broker.tlsURL())
        var c = try config([url])
        c.caFile = pki.caCert
        c.certFile = pki.clientCert
        c.keyFile = pki.clientKey
        try await withClient(c) { client, rec in
            #expect(await rec.wait { connectedCount($0) == 1 })
            let mid = try client.publish(topic: "iomt/mtls", payload: [1], qos: .atLeastOnce)
            #expect(await rec.wait { acked($0).contains(mid) })
        }
        // Without a client certificate the broker refuses the handshake.
        let failure = try await firstFailure(url, ca: pki.caCert)
        guard case .tlsClientCertificateRejected(let b, _)? = failure else {
            Issue.record("expected tlsClientCertificateRejected, got \(String(describing: failure))")
            await broker.stop()
            return
        }
        #expect(b == (try BrokerAddress(parsing: url)))
        await broker.stop()
    }

    @Test func unknownCA() async throws {
        let (broker, pki) = try await tlsBroker(cert: \.serverCert)
        defer { broker.killNow() }
        let url = try #require(broker.tlsURL())
        let failure = try await firstFailure(url, ca: pki.otherCACert)
        #expect(failure == .tlsUnknownCA(broker: try BrokerAddress(parsing: url)), "\(String(describing: failure))")
        await broker.stop()
    }

    @Test func expiredCertificate() async throws {
        let (broker, pki) = try await tlsBroker(cert: \.expiredServerCert)
        defer { broker.killNow() }
        let url = try #require(broker.tlsURL())
        let failure = try await firstFailure(url, ca: pki.caCert)
        #expect(failure == .tlsCertificateExpired(broker: try BrokerAddress(parsing: url)), "\(String(describing: failure))")
        await broker.stop()
    }

    @Test func wrongHostCertificate() async throws {
        let (broker, pki) = try await tlsBroker(cert: \.wrongHostServerCert)
        defer { broker.killNow() }
        let url = try #require(broker.tlsURL())
        let failure = try await firstFailure(url, ca: pki.caCert)
        #expect(failure == .tlsHostnameMismatch(broker: try BrokerAddress(parsing: url)), "\(String(describing: failure))")
        await broker.stop()
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct UplinkWillTests {
    @Test func retainedStatusThenLastWillAfterConnectionIsCut() async throws {
        try await withBroker { broker in
            let proxy = try TCPProxy(upstreamPort: broker.port)
            defer { proxy.close() }
            let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/status/#")
            defer { sub.stop() }
            var c = try config([proxy.url], clientID: "gw-will")
            c.will = LastWill(topic: "iomt/status/gw-will", payload: Array("offline".utf8), qos: .atLeastOnce, retain: true)
            try await withClient(c) { client, rec in
                #expect(await rec.wait { connectedCount($0) == 1 })
                let mid = try client.publish(topic: "iomt/status/gw-will", payload: Array("online".utf8), qos: .atLeastOnce, retain: true)
                #expect(await rec.wait { acked($0).contains(mid) })
                #expect(await sub.waitFor { $0.payloadString == "online" } != nil)
                proxy.severAll()  // TCP reset, no DISCONNECT: the broker must publish the Will
                let will = await sub.waitFor { $0.payloadString == "offline" }
                #expect(will?.topic == "iomt/status/gw-will")
                // The client notices and reconnects through the proxy.
                #expect(await rec.wait { $0.contains { if case .disconnected(.some) = $0 { true } else { false } } })
                #expect(await rec.wait { connectedCount($0) == 2 })
            }
            // The Will was retained: a late subscriber sees "offline" (the clean stop sent no Will).
            let late = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/status/#")
            defer { late.stop() }
            let retained = await late.waitFor(count: 1)
            #expect(retained.first?.payloadString == "offline")
            #expect(retained.first?.retain == true)
        }
    }

    @Test func cleanStopSuppressesWill() async throws {
        try await withBroker { broker in
            let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/status/#")
            defer { sub.stop() }
            var c = try config([broker.url], clientID: "gw-clean")
            c.will = LastWill(topic: "iomt/status/gw-clean", payload: Array("offline".utf8), qos: .atLeastOnce, retain: false)
            try await withClient(c) { _, rec in
                #expect(await rec.wait { connectedCount($0) == 1 })
            }
            #expect(await broker.waitForLog("Client gw-clean disconnected"))
            // Bounded negative check: the broker processed the DISCONNECT (logged above); no Will follows.
            #expect(await sub.waitFor(timeout: .seconds(1)) { $0.payloadString == "offline" } == nil)
        }
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct UplinkSessionTests {
    /// In-flight QoS 1/2 messages (PUBLISH written, no PUBACK/PUBREC seen) are retransmitted on
    /// the same `mosquitto*` after a reconnect, and nothing is lost.
    @Test func inFlightMessagesAreRetransmittedAfterReconnect() async throws {
        try await withBroker { broker in
            let proxy = try TCPProxy(upstreamPort: broker.port)
            defer { proxy.close() }
            let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/#")
            defer { sub.stop() }
            try await withClient(try config([proxy.url], clientID: "gw-inflight")) { client, rec in
                #expect(await rec.wait { connectedCount($0) == 1 })
                let warm = try client.publish(topic: "iomt/w", payload: Array("warm".utf8), qos: .atLeastOnce)
                #expect(await rec.wait { acked($0).contains(warm) })
                proxy.freeze(.toClient)  // the broker's acknowledgements vanish
                var published: [Int32: String] = [:]
                for i in 0..<6 {
                    let p = "inflight-\(i)"
                    published[try client.publish(topic: "iomt/i", payload: Array(p.utf8), qos: i % 2 == 0 ? .atLeastOnce : .exactlyOnce)] = p
                }
                let mids = Set(published.keys)
                // Not acknowledged while the acks are black-holed (a real check: it fails if acks leak).
                #expect(await rec.wait(.milliseconds(700)) { !acked($0).isDisjoint(with: mids) } == false)
                proxy.thaw()
                proxy.severAll()
                #expect(await rec.wait { connectedCount($0) == 2 })
                #expect(rec.events.value.contains(.connected(broker: try BrokerAddress(parsing: proxy.url), sessionPresent: true)))
                #expect(await rec.wait { acked($0).isSuperset(of: mids) })
                let all = Set(published.values).union(["warm"])
                #expect(await sub.waitUntil { Set($0.map(\.payloadString)).isSuperset(of: all) })
                let got = sub.messages.map(\.payloadString)
                #expect(Set(got) == all)
                #expect(got.allSatisfy { all.contains($0) })  // duplicates only as identical payloads
            }
        }
    }

    /// The QoS 2 packet-id pitfall: the broker keeps, in the old persistent session, an incoming
    /// QoS 2 packet id 1 that never got PUBREL. A new process starts packet ids at 1 again; a
    /// broker following MQTT 5.0 §4.3.3 literally would take the new PUBLISH for the old one and
    /// drop it. mosquitto 2.0.11 happens to compare content (src/handle_publish.c: "Reused
    /// message ID ... detected. Clearing from storage.") and delivers the new one, so with
    /// mosquitto the observable proof is that the old session is gone BEFORE the first publish:
    /// Session Present 0 on the first CONNACK and no reused-id warning. (Checked: with the reset
    /// disabled, this test fails on Session Present and on the warning.)
    @Test func newProcessSessionResetAvoidsQoS2PacketIdCollision() async throws {
        try await withBroker(BrokerOptions(debugLog: true)) { broker in
            let proxy = try TCPProxy(upstreamPort: broker.port)
            defer { proxy.close() }
            let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/#")
            defer { sub.stop() }
            // "Old process": its QoS 2 PUBLISH reaches the broker, the PUBREC never comes back.
            try await withClient(try config([proxy.url], clientID: "gw-crash")) { client, rec in
                #expect(await rec.wait { connectedCount($0) == 1 })
                proxy.freeze(.toClient)
                let mid = try client.publish(topic: "iomt/q2", payload: Array("old".utf8), qos: .exactlyOnce)
                #expect(mid == 1)
                #expect(await broker.waitForLog("Received PUBLISH from gw-crash"))
            }  // stop(): DISCONNECT reaches the broker, the session (expiry 3600 s) keeps mid 1 pending
            // "New process", same client id: packet ids start at 1 again.
            // The forwarder publishes its backlog at once (queued until the CONNACK), as it does.
            try await withClient(try config([broker.url], clientID: "gw-crash")) { client, rec in
                let mid = try client.publish(topic: "iomt/q2", payload: Array("new".utf8), qos: .exactlyOnce)
                #expect(mid == 1)
                #expect(await rec.wait { connectedCount($0) == 1 })
                #expect(rec.events.value.first == .connected(broker: try BrokerAddress(parsing: broker.url), sessionPresent: false))
                #expect(await rec.wait { acked($0).contains(mid) })
                let new = await sub.waitFor { $0.payloadString == "new" }
                #expect(new != nil, "the new QoS 2 message was dropped as a duplicate of the old packet id")
                #expect(!broker.log.contains("Reused message ID"))
            }
        }
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct UplinkMiscTests {
    @Test func dnsFailureIsReported() async throws {
        let url = "mqtt://no-such-broker.invalid:1883"
        try await withClient(try config([url])) { _, rec in
            #expect(await rec.wait { !failures($0).isEmpty })
            guard case .dnsFailure(let b, _)? = rec.failures.first else {
                Issue.record("expected dnsFailure, got \(String(describing: rec.failures.first))")
                return
            }
            let expected = try BrokerAddress(parsing: url)
            #expect(b == expected)
        }
    }

    @Test func mqtt311PublishesWithoutUserProperties() async throws {
        try await withBroker { broker in
            let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/#")
            defer { sub.stop() }
            var c = try config([broker.url])
            c.protocolVersion = .v311
            try await withClient(c) { client, rec in
                let mid = try client.publish(topic: "iomt/v3", payload: Array("v3".utf8), qos: .exactlyOnce,
                                             userProperties: [("reading-id", "r-3")])
                #expect(await rec.wait { acked($0).contains(mid) })
                let got = await sub.waitFor { $0.topic == "iomt/v3" }
                #expect(got?.payloadString == "v3")
                #expect(got?.userProperties == [])  // silently not sent under 3.1.1
            }
        }
    }

    @Test func mqtt311WrongPasswordIsNotAuthorized() async throws {
        try await withBroker(BrokerOptions(users: ["gw": "right"], allowAnonymous: false)) { broker in
            var c = try config([broker.url])
            c.protocolVersion = .v311
            c.username = "gw"
            c.password = "wrong"
            try await withClient(c) { _, rec in
                #expect(await rec.wait { !failures($0).isEmpty })
                let addr = try BrokerAddress(parsing: broker.url)
                #expect(rec.failures.first == .notAuthorized(broker: addr))
            }
        }
    }

    @Test func stopWhileBrokerIsDownEndsPromptly() async throws {
        let dead = "mqtt://127.0.0.1:\(try freeLoopbackPort())"
        var c = try config([dead])
        c.reconnectMinDelay = .seconds(20)
        c.reconnectMaxDelay = .seconds(30)
        let client = try MQTTClient(config: c)
        let rec = EventRecorder(client)
        try client.start()
        #expect(await rec.wait { !failures($0).isEmpty })  // now in a 20 s backoff
        let t0 = ContinuousClock.now
        await client.stop()
        #expect(ContinuousClock.now - t0 < .seconds(3))
        await rec.task.value  // the event stream finished
        #expect(throws: UplinkError.notRunning) { _ = try client.publish(topic: "t", payload: [1]) }
    }
}
