#if canImport(Glibc)
import Glibc
#endif
import IoMTTestSupport
@testable import IoMTUplink
import Testing

/// A second client identity for the reload tests: key and certificate (CN `iomt-test-client-b`)
/// signed by the PKI's OTHER CA, so a broker can be told to trust B and not A.
func makeClientB(_ pki: TestPKI) throws -> (cert: String, key: String) {
    func ossl(_ args: [String]) throws {
        let r = try ChildProcess.runBlocking(["openssl"] + args)
        guard r.status == 0 else { throw TestSupportError("openssl \(args.joined(separator: " ")): \(r.output)") }
    }
    let d = pki.dir
    try ossl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", d.file("client-b.key"), "-out", d.file("client-b.csr"), "-subj", "/CN=iomt-test-client-b"])
    try ossl(["x509", "-req", "-in", d.file("client-b.csr"), "-CA", pki.otherCACert, "-CAkey", d.file("other-ca.key"),
              "-CAcreateserial", "-out", d.file("client-b.crt"), "-days", "365", "-extfile", d.file("client.ext")])
    chmod(d.file("client-b.key"), 0o600)
    return (d.file("client-b.crt"), d.file("client-b.key"))
}

/// Appends `use_identity_as_username true` to the broker's configuration: after the TLS
/// listener line, so it applies to that listener (the connection log then names the client
/// certificate's CN as `u'...'`). Takes effect at the next `restart()`.
func useIdentityAsUsername(_ broker: MosquittoBroker) throws {
    let conf = broker.dir.file("mosquitto.conf")
    let r = try ChildProcess.runBlocking(["sh", "-c", "echo 'use_identity_as_username true' >> '\(conf)'"])
    guard r.status == 0 else { throw TestSupportError("cannot extend \(conf): \(r.output)") }
}

func delivered(_ evs: [MQTTEvent]) -> [UInt64] {
    evs.flatMap { if case .delivered(let tags) = $0 { return tags }; return [] }
}

/// Copies `from` over `to` (content only; `to` keeps its mode).
func replaceContents(of to: String, with from: String) throws {
    let r = try ChildProcess.runBlocking(["cp", from, to])
    guard r.status == 0 else { throw TestSupportError("cp \(from) \(to): \(r.output)") }
}

/// `MQTTClient.reloadCredentials` against a real mosquitto with `require_certificate true` and
/// `use_identity_as_username true`, so the broker log names the certificate each connection used.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct TLSReloadTests {
    struct Setup {
        let pki: TestPKI
        let broker: MosquittoBroker
        let url: String
        /// The files the client is configured with (copies it owns, 0600 key).
        let cert: String
        let key: String
        let b: (cert: String, key: String)
    }

    /// Broker trusting both client CAs (its CA file is a bundle the test can rewrite).
    func setup() async throws -> Setup {
        let pki = try TestPKI()
        let b = try makeClientB(pki)
        let bundle = pki.dir.file("client-cas.pem")
        let r = try ChildProcess.runBlocking(["sh", "-c", "cat '\(pki.caCert)' '\(pki.otherCACert)' > '\(bundle)'"])
        #expect(r.status == 0)
        let broker = try await MosquittoBroker.start(BrokerOptions(
            tls: BrokerTLS(caFile: bundle, certFile: pki.serverCert, keyFile: pki.serverKey, requireCertificate: true)))
        try useIdentityAsUsername(broker)
        try await broker.restart()
        try replaceContents(of: pki.dir.file("in-use.crt"), with: pki.clientCert)
        try replaceContents(of: pki.dir.file("in-use.key"), with: pki.clientKey)
        chmod(pki.dir.file("in-use.key"), 0o600)
        return Setup(pki: pki, broker: broker, url: try #require(broker.tlsURL()),
                     cert: pki.dir.file("in-use.crt"), key: pki.dir.file("in-use.key"), b: b)
    }

    func tlsConfig(_ s: Setup) throws -> UplinkConfig {
        var c = try config([s.url])
        c.caFile = s.pki.caCert
        c.certFile = s.cert
        c.keyFile = s.key
        return c
    }

    @Test func reloadReconnectsWithTheNewCertificateAndLosesNoQueuedMessage() async throws {
        let s = try await setup()
        defer { s.broker.killNow() }
        try await withClient(tlsConfig(s)) { client, rec in
            #expect(await rec.wait { connectedCount($0) == 1 })
            #expect(s.broker.log.contains("u'iomt-test-client'"), "connected with certificate A")
            try replaceContents(of: s.cert, with: s.b.cert)
            try replaceContents(of: s.key, with: s.b.key)
            // 300 QoS 2 messages through the outbox (the forwarder's path), many queued or in
            // flight when the reload starts: every one is delivered once the client reconnected.
            let tags = Set<UInt64>(1...300)
            try client.submit(tags.sorted().map {
                OutboundMessage(tag: $0, topic: "iomt/reload", payload: Array("\($0)".utf8), qos: .exactlyOnce, userProperties: [])
            })
            try client.reloadTLS()
            #expect(await rec.wait { connectedCount($0) == 2 })
            #expect(await rec.wait { Set(delivered($0)).isSuperset(of: tags) }, "every message delivered after the reload")
            #expect(delivered(rec.events.value).count == 300, "each reported once")
            #expect(s.broker.log.contains("u'iomt-test-client-b'"), "reconnected with certificate B:\n\(s.broker.log.suffix(1500))")
            #expect(rec.events.value.contains(.disconnected(error: nil)), "the reload's own clean DISCONNECT")
            #expect(rec.failures.isEmpty)
            // Our DISCONNECT was clean although publishes raced with it (a protocol error would
            // make the broker publish the Will: a false "offline").
            #expect(!s.broker.log.contains("Protocol error"), "\(s.broker.log.suffix(1500))")
        }
        await s.broker.stop()
    }

    @Test func brokenKeyIsRefusedAndTheConnectionKeepsWorking() async throws {
        let s = try await setup()
        defer { s.broker.killNow() }
        try await withClient(tlsConfig(s)) { client, rec in
            #expect(await rec.wait { connectedCount($0) == 1 })
            try s.pki.dir.write("in-use.key", "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
            let refused = #expect(throws: UplinkError.self) { try client.reloadTLS() }
            guard case .tlsFilesRefused(let detail)? = refused else { Issue.record("\(String(describing: refused))"); return }
            #expect(detail.contains(s.key) && detail.contains("does not load"), "\(detail)")
            // A key matching another certificate is refused as well.
            try replaceContents(of: s.key, with: s.b.key)
            let mismatch = #expect(throws: UplinkError.self) { try client.reloadTLS() }
            guard case .tlsFilesRefused(let detail)? = mismatch else { Issue.record("\(String(describing: mismatch))"); return }
            #expect(detail.contains(s.key) && detail.contains("does not match the certificate"), "\(detail)")
            let mid = try client.publish(topic: "iomt/reload", payload: [1], qos: .atLeastOnce)
            #expect(await rec.wait { acked($0).contains(mid) })
            #expect(rec.connectedCount() == 1, "no reconnect happened")
            #expect(!rec.events.value.contains { if case .disconnected = $0 { return true }; return false })
        }
        await s.broker.stop()
    }

    @Test func keyWithLoosePermissionsOrMissingFileIsRefusedNamingTheFix() async throws {
        let s = try await setup()
        defer { s.broker.killNow() }
        let client = try MQTTClient(config: tlsConfig(s))
        chmod(s.key, 0o644)
        let loose = #expect(throws: UplinkError.self) { try client.reloadTLS() }
        guard case .tlsFilesRefused(let detail)? = loose else { Issue.record("\(String(describing: loose))"); return }
        #expect(detail.contains("chmod 600 \(s.key)") && detail.contains("644"), "\(detail)")
        chmod(s.key, 0o600)
        unlink(s.cert)
        let missing = #expect(throws: UplinkError.self) { try client.reloadTLS() }
        guard case .tlsFilesRefused(let detail)? = missing else { Issue.record("\(String(describing: missing))"); return }
        #expect(detail.contains("certificate file \(s.cert)") && detail.contains("No such file"), "\(detail)")
        #expect(UplinkError.tlsFilesRefused(detail: "x").description.contains("previous TLS settings stay in use"))
        await client.stop()
        await s.broker.stop()
    }

    @Test func reloadWhileRefusedByTheBrokerConnectsWithTheNewCertificate() async throws {
        let s = try await setup()
        defer { s.broker.killNow() }
        var c = try tlsConfig(s)
        c.reconnectMinDelay = .seconds(5)  // a retry on its own would come too late for the wait below
        c.reconnectMaxDelay = .seconds(5)
        // The broker now trusts only B's CA: A is refused.
        try replaceContents(of: s.pki.dir.file("client-cas.pem"), with: s.pki.otherCACert)
        try await s.broker.restart()
        try await withClient(c) { client, rec in
            #expect(await rec.wait { !failures($0).isEmpty })
            let queued = try client.publish(topic: "iomt/reload", payload: [7], qos: .exactlyOnce)
            try replaceContents(of: s.cert, with: s.b.cert)
            try replaceContents(of: s.key, with: s.b.key)
            let before = ContinuousClock.now
            try client.reloadTLS()
            // The reload ends the 5 s backoff wait at once.
            #expect(await rec.wait(.seconds(4)) { connectedCount($0) == 1 })
            #expect(ContinuousClock.now - before < .seconds(4))
            #expect(await rec.wait { acked($0).contains(queued) })
        }
        await s.broker.stop()
    }

    @Test func passwordReloadAppliesToTheNextConnection() async throws {
        let broker = try await MosquittoBroker.start(BrokerOptions(users: ["hub": "new-secret"], allowAnonymous: false))
        defer { broker.killNow() }
        var c = try config([broker.url])
        c.username = "hub"
        c.password = "old-secret"
        try await withClient(c) { client, rec in
            #expect(await rec.wait { !failures($0).isEmpty }, "the old password is refused")
            try client.reloadCredentials(password: "new-secret")
            #expect(await rec.wait { connectedCount($0) == 1 })
        }
        await broker.stop()
    }

    /// Minimum TLS 1.2 (`tls_version tlsv1.2`): a server that speaks only TLS 1.1 is refused.
    /// mosquitto 2.0.11 cannot be limited to 1.1 (its `tls_version` is a minimum), so the
    /// server is `openssl s_server -tls1_1` with `@SECLEVEL=0` (OpenSSL 3 refuses TLS 1.1 at
    /// its default level); the test also proves that it does complete a TLS 1.1 handshake.
    @Test func aTLS11OnlyServerIsRefused() async throws {
        let pki = try TestPKI()
        let port = try freeLoopbackPort()
        let server = try ChildProcess(["openssl", "s_server", "-accept", "127.0.0.1:\(port)", "-tls1_1",
                                       "-cipher", "DEFAULT:@SECLEVEL=0", "-www", "-cert", pki.serverCert, "-key", pki.serverKey])
        defer { server.signal(SIGKILL) }
        #expect(await server.output.wait(timeout: .seconds(10)) { $0.contains("ACCEPT") }, "\(server.output.value)")

        var c = try config(["mqtts://localhost:\(port)"])
        c.caFile = pki.caCert
        var failure: UplinkError?
        try await withClient(c) { _, rec in
            #expect(await rec.wait { !failures($0).isEmpty })
            #expect(rec.connectedCount() == 0)
            failure = rec.failures.first
        }
        // (Probed after the client: s_server serves one connection at a time.)
        let probe = try await ChildProcess.run(["sh", "-c", "echo | openssl s_client -connect 127.0.0.1:\(port) -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' 2>&1"])
        #expect(probe.output.contains("Protocol  : TLSv1.1"), "the server speaks TLS 1.1: \(probe.output.suffix(800))")
        guard case .tls(_, let detail)? = failure else {
            Issue.record("expected a TLS failure, got \(String(describing: failure))")
            return
        }
        #expect(detail.contains("unsupported protocol") || detail.contains("version"), "\(detail)")
    }

    /// A CA removed from `caFile` is no longer trusted after a reload: the loop thread gives
    /// libmosquitto a fresh `SSL_CTX` (on its own, libmosquitto 2.0.11 would ADD the new file to
    /// the trust store it built at the first connect, and the old CA would still be trusted).
    @Test func aCARemovedFromTheCAFileIsNoLongerTrustedAfterAReload() async throws {
        let pki = try TestPKI()
        let broker = try await MosquittoBroker.start(BrokerOptions(tls: BrokerTLS(
            caFile: pki.caCert, certFile: pki.serverCert, keyFile: pki.serverKey)))
        defer { broker.killNow() }
        let trusted = pki.dir.file("trusted.pem")
        let cat = try ChildProcess.runBlocking(["sh", "-c", "cat '\(pki.caCert)' '\(pki.otherCACert)' > '\(trusted)'"])
        #expect(cat.status == 0)
        var c = try config([try #require(broker.tlsURL())])
        c.caFile = trusted
        try await withClient(c) { client, rec in
            #expect(await rec.wait { connectedCount($0) == 1 })
            // The broker's CA is dropped from the bundle; only the other CA stays.
            try replaceContents(of: trusted, with: pki.otherCACert)
            try client.reloadTLS()
            #expect(await rec.wait { !failures($0).isEmpty }, "the reconnect is refused")
            #expect(rec.connectedCount() == 1)
            guard case .tlsUnknownCA? = rec.failures.first else {
                Issue.record("expected tlsUnknownCA, got \(rec.failures)")
                return
            }
        }
        await broker.stop()
    }
}
