#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// TLS listener settings for ``MosquittoBroker``.
public struct BrokerTLS: Sendable {
    public var caFile: String
    public var certFile: String
    public var keyFile: String
    /// Mutual TLS: clients must present a certificate signed by `caFile`.
    public var requireCertificate: Bool
    public init(caFile: String, certFile: String, keyFile: String, requireCertificate: Bool = false) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.requireCertificate = requireCertificate
    }
}

/// Options of a test broker.
public struct BrokerOptions: Sendable {
    /// Keep retained messages and sessions across restarts (saved on SIGTERM and after every
    /// change, so even `kill9()` loses little).
    public var persistence: Bool = false
    /// Where the store lives; default: inside the broker's temp dir (kept across `restart()`).
    public var persistenceLocation: String? = nil
    public var tls: BrokerTLS? = nil
    /// user → password; written with `mosquitto_passwd -b`.
    public var users: [String: String] = [:]
    public var allowAnonymous: Bool = true
    /// Also log at debug level (every packet: "Received PUBLISH from <client> ..."), for tests
    /// that wait on a packet with ``MosquittoBroker/waitForLog(_:timeout:)``.
    public var debugLog: Bool = false
    /// Extra raw lines appended to mosquitto.conf (global section).
    public var extraConfig: [String] = []
    public init(persistence: Bool = false, persistenceLocation: String? = nil, tls: BrokerTLS? = nil,
                users: [String: String] = [:], allowAnonymous: Bool = true, debugLog: Bool = false,
                extraConfig: [String] = []) {
        self.debugLog = debugLog
        self.persistence = persistence
        self.persistenceLocation = persistenceLocation
        self.tls = tls
        self.users = users
        self.allowAnonymous = allowAnonymous
        self.extraConfig = extraConfig
    }
}

/// A real `mosquitto` broker on 127.0.0.1 for tests.
///
/// Writes `mosquitto.conf` into its own temp dir, listens on a free port (``port``, plain MQTT)
/// and, with TLS options, on a second one (``tlsPort``). ``start()`` returns once the broker
/// logged that it is running (bounded wait on its log, no polling). ``stop()`` sends SIGTERM and
/// waits; ``kill9()`` SIGKILLs; ``restart()`` starts again on the SAME ports with the same store.
/// When released, a running broker is SIGKILLed and the temp dir removed.
///
/// ```swift
/// let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true))
/// defer { broker.killNow() }   // or `await broker.stop()`
/// ```
public final class MosquittoBroker: Sendable {
    public let options: BrokerOptions
    public let dir: TempDir
    public let port: Int
    public let tlsPort: Int?
    private let process = Mutex<ChildProcess?>(nil)
    /// Log of all runs of this broker (each run's output is appended on stop).
    private let previousLogs = Mutex("")

    public var url: String { "mqtt://127.0.0.1:\(port)" }
    /// TLS URL using `host` (default `localhost`, which the test server certificate names).
    public func tlsURL(host: String = "localhost") -> String? { tlsPort.map { "mqtts://\(host):\($0)" } }

    private init(options: BrokerOptions) throws {
        self.options = options
        self.dir = try TempDir(prefix: "iomt-mosquitto")
        self.port = try freeLoopbackPort()
        var tp: Int? = nil
        if options.tls != nil {
            var p = try freeLoopbackPort()
            while p == port { p = try freeLoopbackPort() }
            tp = p
        }
        self.tlsPort = tp
        try writeConfig()
    }

    /// Creates the configuration and starts the broker; throws if it is not running within `timeout`.
    public static func start(_ options: BrokerOptions = BrokerOptions(), timeout: Duration = .seconds(10)) async throws -> MosquittoBroker {
        // A free port can be taken by someone else (e.g. as the local port of an outgoing
        // connection) before mosquitto binds it: retry with new ports on "Address already in use".
        var attempt = 0
        while true {
            attempt += 1
            let b = try MosquittoBroker(options: options)
            do {
                try await b.launch(timeout: timeout)
                return b
            } catch let error as TestSupportError where attempt < 3 && error.description.contains("Address already in use") {
                continue
            }
        }
    }

    private func writeConfig() throws {
        var lines: [String] = [
            "# written by IoMTTestSupport.MosquittoBroker",
            "per_listener_settings false",
            "allow_anonymous \(options.allowAnonymous)",
            "log_dest stderr",  // unbuffered (stdout to a pipe is block-buffered)
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if options.debugLog { lines.append("log_type debug") }
        if getuid() == 0 { lines.append("user root") }  // otherwise mosquitto drops to 'mosquitto' and cannot read our files
        if options.persistence {
            let loc = options.persistenceLocation ?? dir.file("store")
            if options.persistenceLocation == nil { try dir.makeDirectory("store") }
            lines += ["persistence true", "persistence_location \(loc.hasSuffix("/") ? loc : loc + "/")",
                      "autosave_interval 1", "autosave_on_changes true"]
        } else {
            lines.append("persistence false")
        }
        if !options.users.isEmpty {
            let pw = dir.file("passwords")
            try dir.write("passwords", "")
            for (user, password) in options.users.sorted(by: { $0.key < $1.key }) {
                let r = try ChildProcess.runBlocking(["mosquitto_passwd", "-b", pw, user, password])
                guard r.status == 0 else { throw TestSupportError("mosquitto_passwd failed: \(r.output)") }
            }
            lines.append("password_file \(pw)")
        }
        lines += options.extraConfig
        lines.append("listener \(port) 127.0.0.1")
        if let tls = options.tls, let tlsPort {
            lines += ["listener \(tlsPort) 127.0.0.1",
                      "cafile \(tls.caFile)", "certfile \(tls.certFile)", "keyfile \(tls.keyFile)",
                      "tls_version tlsv1.2",
                      "require_certificate \(tls.requireCertificate)"]
        }
        try dir.write("mosquitto.conf", lines.joined(separator: "\n") + "\n")
    }

    private func launch(timeout: Duration) async throws {
        let p = try ChildProcess(["mosquitto", "-c", dir.file("mosquitto.conf")])
        process.withLock { $0 = p }
        let ok = await p.output.wait(timeout: timeout) { $0.contains(" running") || $0.contains("Error") }
        let out = p.output.value
        guard ok, out.contains(" running"), p.isRunning else {
            await p.kill9()
            throw TestSupportError("mosquitto did not start on port \(port) within \(timeout):\n\(out)")
        }
    }

    /// The broker's PID while running.
    public var pid: pid_t? { process.withLock { $0?.isRunning == true ? $0?.pid : nil } }
    public var isRunning: Bool { pid != nil }

    /// All log output (earlier runs and the current one).
    public var log: String {
        previousLogs.withLock { $0 } + (process.withLock { $0 }?.output.value ?? "")
    }

    /// Waits (bounded) until the current run's log contains `text`.
    public func waitForLog(_ text: String, timeout: Duration = .seconds(10)) async -> Bool {
        guard let p = process.withLock({ $0 }) else { return false }
        return await p.output.wait(timeout: timeout) { $0.contains(text) }
    }

    /// Graceful stop: SIGTERM (mosquitto saves its store), wait up to 5 s, then SIGKILL.
    public func stop() async {
        guard let p = process.withLock({ p in defer { p = nil }; return p }) else { return }
        await p.terminate()
        previousLogs.withLock { $0 += p.output.value }
    }

    /// Abrupt stop: SIGKILL (no store save beyond the autosave, sockets reset by the kernel).
    public func kill9() async {
        guard let p = process.withLock({ p in defer { p = nil }; return p }) else { return }
        await p.kill9()
        previousLogs.withLock { $0 += p.output.value }
    }

    /// Synchronous SIGKILL, for `defer` blocks.
    public func killNow() {
        if let p = process.withLock({ $0 }) { p.signal(SIGKILL) }
    }

    /// Stops (if running) and starts again on the same port(s), with the same store.
    public func restart(timeout: Duration = .seconds(10)) async throws {
        await stop()
        try await launch(timeout: timeout)
    }

    deinit {
        if let p = process.withLock({ $0 }) { p.signal(SIGKILL) }
    }
}

/// A throwaway PKI made with the `openssl` CLI (EC P-256, fast): a CA, a server certificate for
/// `localhost` + `127.0.0.1`, a client certificate, an EXPIRED server certificate, a server
/// certificate for the wrong host, and an unrelated CA (to provoke "unknown CA").
public final class TestPKI: Sendable {
    public let dir: TempDir
    public var caCert: String { dir.file("ca.crt") }
    public var serverCert: String { dir.file("server.crt") }
    public var serverKey: String { dir.file("server.key") }
    public var clientCert: String { dir.file("client.crt") }
    public var clientKey: String { dir.file("client.key") }
    /// Same key as `serverKey`; valid for localhost but expired yesterday.
    public var expiredServerCert: String { dir.file("expired.crt") }
    /// Same key as `serverKey`; signed by the CA but issued for `wrong.example.com` only.
    public var wrongHostServerCert: String { dir.file("wronghost.crt") }
    /// A CA that signed none of the above.
    public var otherCACert: String { dir.file("other-ca.crt") }

    public init() throws {
        dir = try TempDir(prefix: "iomt-pki")
        func ossl(_ args: [String]) throws {
            let r = try ChildProcess.runBlocking(["openssl"] + args)
            guard r.status == 0 else { throw TestSupportError("openssl \(args.joined(separator: " ")) failed:\n\(r.output)") }
        }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ["ca", "other-ca"] {
            try ossl(["req", "-x509"] + ec + ["-keyout", dir.file("\(ca).key"), "-out", dir.file("\(ca).crt"),
                      "-days", "3650", "-subj", "/CN=IoMT Test \(ca)",
                      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        }
        try dir.write("server.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        try dir.write("wronghost.ext", "subjectAltName=DNS:wrong.example.com\nextendedKeyUsage=serverAuth\n")
        try dir.write("client.ext", "extendedKeyUsage=clientAuth\n")
        try ossl(["req"] + ec + ["-keyout", serverKey, "-out", dir.file("server.csr"), "-subj", "/CN=localhost"])
        try ossl(["req"] + ec + ["-keyout", clientKey, "-out", dir.file("client.csr"), "-subj", "/CN=iomt-test-client"])
        func sign(_ csr: String, _ out: String, ext: String, days: String) throws {
            try ossl(["x509", "-req", "-in", dir.file(csr), "-CA", caCert, "-CAkey", dir.file("ca.key"),
                      "-CAcreateserial", "-out", dir.file(out), "-days", days, "-extfile", dir.file(ext)])
        }
        try sign("server.csr", "server.crt", ext: "server.ext", days: "365")
        try sign("server.csr", "expired.crt", ext: "server.ext", days: "-1")
        try sign("server.csr", "wronghost.crt", ext: "wronghost.ext", days: "365")
        try sign("client.csr", "client.crt", ext: "client.ext", days: "365")
    }
}
