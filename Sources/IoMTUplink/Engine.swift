import CMosquitto
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a libmosquitto callback hands over to the loop thread. Callbacks do nothing else.
enum RawEvent: Sendable {
    case connack(reasonCode: Int32, flags: Int32)
    case published(mid: Int32, reasonCode: Int32)
    case disconnect(rc: Int32)
    /// An error/warning log line; with OpenSSL errors, the `SSL*`'s X509 verify result then.
    case log(level: Int32, message: String, verifyResult: Int?)
}

/// `SSL_get_verify_result` from the libssl that libmosquitto already loaded, looked up at run
/// time (IoMTUplink does not link OpenSSL itself). Needed to tell an expired certificate from an
/// unknown CA: libmosquitto only logs OpenSSL's generic "certificate verify failed"
/// (lib/net_mosq.c `net__print_ssl_error`), and when the handshake fails inside
/// `mosquitto_connect` it frees the `SSL*` right after logging (`net__socket_connect_step3` →
/// `net__socket_close`). Stored as an address (an Int is Sendable).
private let sslGetVerifyResultAddress: Int = {
    guard let h = dlopen(nil, RTLD_LAZY), let sym = dlsym(h, "SSL_get_verify_result") else { return 0 }
    return Int(bitPattern: sym)
}()

/// The X509 verify result (X509_V_OK = 0) of an `SSL*` from `mosquitto_ssl_get`.
func sslVerifyResult(_ ssl: UnsafeMutableRawPointer) -> Int? {
    guard let raw = UnsafeRawPointer(bitPattern: sslGetVerifyResultAddress) else { return nil }
    typealias Fn = @convention(c) (UnsafeMutableRawPointer?) -> Int
    return unsafeBitCast(raw, to: Fn.self)(ssl)
}

/// Reached from libmosquitto callbacks through the `obj`/userdata pointer. Callbacks run on the
/// loop thread inside `mosquitto_connect*` / `mosquitto_loop`; they only append to `pending`,
/// which the loop thread drains right after each call returns.
final class CallbackInbox: Sendable {
    let pending = Mutex<[RawEvent]>([])
    func hand(_ e: RawEvent) { pending.withLock { $0.append(e) } }
    func drain() -> [RawEvent] { pending.withLock { p in defer { p.removeAll() }; return p } }
}

private func inbox(_ obj: UnsafeMutableRawPointer?) -> CallbackInbox? {
    guard let obj else { return nil }
    return Unmanaged<CallbackInbox>.fromOpaque(obj).takeUnretainedValue()
}

private let onConnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, Int32, OpaquePointer?) -> Void = {
    _, obj, rc, flags, _ in inbox(obj)?.hand(.connack(reasonCode: rc, flags: flags))
}
private let onPublish: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, Int32, OpaquePointer?) -> Void = {
    _, obj, mid, rc, _ in inbox(obj)?.hand(.published(mid: mid, reasonCode: rc))
}
private let onDisconnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, OpaquePointer?) -> Void = {
    _, obj, rc, _ in inbox(obj)?.hand(.disconnect(rc: rc))
}
/// Hands over error/warning lines. For an OpenSSL error it also copies the verify result of the
/// still-alive `SSL*`: it is freed as soon as this callback returns (see `sslVerifyResult`), so
/// this is the only moment the fact exists. No other logic.
private let onLog: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?) -> Void = {
    mosq, obj, level, msg in
    guard level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING) != 0, let msg else { return }
    let message = String(cString: msg)
    var verify: Int? = nil
    if message.hasPrefix("OpenSSL Error"), let mosq, let ssl = mosquitto_ssl_get(mosq) {
        verify = sslVerifyResult(ssl)
    }
    inbox(obj)?.hand(.log(level: level, message: message, verifyResult: verify))
}

/// Owns the `mosquitto*` handle and the loop thread.
///
/// `@unchecked Sendable`, and why that is sound: the stored properties are either immutable
/// (`config`, `mosq`, the wake pipe, `callbacks`, `continuation` — the latter two Sendable) or inside
/// a `Mutex` (`state`, `qos0Pending`). The raw `mosquitto*` is used from two kinds of threads:
/// - the loop thread: `mosquitto_connect_bind_v5`, `mosquitto_loop` (while connecting),
///   `mosquitto_loop_read`/`_write`/`_misc` (once connected), `mosquitto_ssl_get`;
/// - caller threads: `mosquitto_publish_v5` and `mosquitto_disconnect_v5` only.
/// libmosquitto 2.0 (built WITH_THREADING on Debian) protects what those share with its own
/// pthread mutexes (`msgs_out.mutex`, `out_packet_mutex`, `current_out_packet_mutex`,
/// `state_mutex`, `mid_mutex`), exactly as in its supported "publish from any thread while
/// `mosquitto_loop_start` runs" usage. With `mosquitto_threaded_set(true)` a publish from a
/// caller thread only queues the packet (lib/packet_mosq.c `packet__queue`); it never writes
/// the socket itself, and the caller then rings our wake pipe, on which the loop thread waits. (`mosquitto__connect_init`
/// sets host and quota fields without a lock while a publish may run; `message__reconnect_reset`
/// then recomputes the quota under `msgs_out.mutex` — the same interleaving libmosquitto's own
/// `mosquitto_loop_start` reconnects have.) Everything else
/// (setup in `init`, `mosquitto_destroy` in `deinit`) happens with no other thread running.
final class Engine: @unchecked Sendable {
    struct State {
        var started = false
        var stopRequested = false
        var exited = false
        var thread: pthread_t? = nil
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
        /// A credential reload waits for the loop thread (``requestReload(password:)``).
        var reloadPending = false
        /// The password to apply with the pending reload (nil: keep the current one).
        var pendingPassword: String? = nil
        /// The password in use (the configured one until a reload replaces it); the session
        /// reset instance uses it too.
        var password: String? = nil
        /// Address of the `SSL_CTX` this engine installed in `mosq` (0: libmosquitto's own).
        var sslContext: Int = 0
    }

    let config: UplinkConfig
    let mosq: OpaquePointer
    let callbacks = CallbackInbox()
    let continuation: AsyncStream<MQTTEvent>.Continuation
    /// Self-pipe that wakes the loop thread: its backoff wait and its connected turn (`poll`).
    /// Rung by `stop()`, a reload, and publishes from other threads.
    let wakeFD: Int32
    let wakeWriteFD: Int32
    let state = Mutex(State())
    /// QoS 0 mids whose "written" callback must not be reported as an acknowledgement.
    let qos0Pending = Mutex<Set<Int32>>([])
    /// Messages queued by ``submit(_:)`` and the packet ids of those in flight (see `Outbox`).
    let outbox = Mutex(Outbox())

    init(config: UplinkConfig, continuation: AsyncStream<MQTTEvent>.Continuation) throws(UplinkError) {
        self.config = config
        self.continuation = continuation
        guard let m = mosquitto_new(config.clientID, false, nil) else {
            throw .invalidConfiguration("mosquitto_new failed (errno \(errno)); check the client id")
        }
        self.mosq = m
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            mosquitto_destroy(m)
            throw .invalidConfiguration("pipe2 failed: \(String(cString: strerror(errno)))")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        }
        self.wakeFD = fds[0]
        self.wakeWriteFD = fds[1]
        do {
            try Engine.configure(m, config: config, userdata: Unmanaged.passUnretained(callbacks).toOpaque(),
                                 cleanStart: false)
        } catch {
            mosquitto_destroy(m)
            close(fds[0])
            close(fds[1])
            throw error
        }
        state.withLock { $0.password = config.password }
        installFreshSSLContext()
    }

    /// Whether this libmosquitto keeps an `SSL_CTX` given with `MOSQ_OPT_SSL_CTX` the way this
    /// engine relies on: in 2.0.0 to 2.0.11 (lib/options.c `mosquitto_void_option`) it replaces
    /// `mosq->ssl_ctx` at once, takes its own reference (`SSL_CTX_up_ref`) and, with
    /// `ssl_ctx_defaults` (the default), `net__init_ssl_ctx` still applies the CA, certificate,
    /// key, TLS version and verify callback to it at every connect. 2.0.12 moved it to
    /// `user_ssl_ctx` with other ownership, so there the swap is skipped.
    static let sslContextSwapSupported: Bool = {
        var major: Int32 = 0, minor: Int32 = 0, revision: Int32 = 0
        _ = mosquitto_lib_version(&major, &minor, &revision)
        return major == 2 && minor == 0 && revision <= 11
    }()

    /// Gives `mosq` a new, empty client `SSL_CTX` and releases the previous one this engine had
    /// installed. Why: libmosquitto creates its `SSL_CTX` once per instance and at every connect
    /// re-reads the certificate and key into it (they replace the old ones) but ADDS the CA file
    /// to its trust store (`SSL_CTX_load_verify_locations`): a CA removed from `caFile` would
    /// stay trusted. A fresh context per reload makes the files on disk the whole truth.
    /// Called in `init` and on the loop thread between connections (no `SSL*` alive in `mosq`).
    func installFreshSSLContext() {
        guard config.brokers.first?.tls == true, Engine.sslContextSwapSupported,
              let ctx = OpenSSL.newClientContext() else { return }
        let rc = mosquitto_void_option(mosq, MOSQ_OPT_SSL_CTX, ctx)
        OpenSSL.free(ctx)  // on success libmosquitto holds its own reference; on failure this frees it
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { return }
        let previous = state.withLock { s in defer { s.sslContext = Int(bitPattern: ctx) }; return s.sslContext }
        if let old = UnsafeMutableRawPointer(bitPattern: previous) { OpenSSL.free(old) }  // libmosquitto's reference
    }

    /// Caller side of a reload: records it and wakes the loop thread's backoff wait. The loop
    /// thread applies it (``applyPendingReload()``) between connections. If connected, it sees
    /// the request after its current `mosquitto_loop` turn (at most 1 s, sooner with traffic),
    /// stops handing outbox messages to libmosquitto, lets those in flight be acknowledged (at
    /// most 3 s) and sends DISCONNECT (0x00, so the broker drops the Will); see `runConnection`.
    func requestReload(password: String?) throws(UplinkError) {
        let running = state.withLock { s -> Bool in
            guard !s.stopRequested else { return false }
            s.reloadPending = true
            if let password { s.pendingPassword = password }
            return true
        }
        guard running else { throw .notRunning }
        wake()
    }

    var reloadPending: Bool { state.withLock { $0.reloadPending } }

    /// Loop thread, between connections: a fresh `SSL_CTX` (so the CA, certificate and key are
    /// read anew at the next connect) and the new password. Returns whether there was a reload.
    func applyPendingReload() -> Bool {
        let (pending, password) = state.withLock { s -> (Bool, String?) in
            defer { s.reloadPending = false; s.pendingPassword = nil }
            if s.reloadPending, let p = s.pendingPassword { s.password = p }
            return (s.reloadPending, s.pendingPassword)
        }
        guard pending else { return false }
        installFreshSSLContext()
        if let password {
            _ = mosquitto_username_pw_set(mosq, config.username, password)
        }
        return true
    }

    var currentPassword: String? { state.withLock { $0.password } }

    deinit {
        mosquitto_destroy(mosq)  // frees the SSL_CTX it holds (the one `installFreshSSLContext` gave it)
        close(wakeFD)
        close(wakeWriteFD)
    }

    /// Applies protocol version, credentials, TLS, Will and callbacks to an instance.
    static func configure(_ m: OpaquePointer, config: UplinkConfig, userdata: UnsafeMutableRawPointer?,
                          cleanStart: Bool) throws(UplinkError) {
        func check(_ rc: Int32, _ what: String) throws(UplinkError) {
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                throw .invalidConfiguration("\(what): \(String(cString: mosquitto_strerror(rc)))")
            }
        }
        mosquitto_user_data_set(m, userdata)
        try check(mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION,
                                       config.protocolVersion == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311),
                  "protocol version")
        try check(mosquitto_threaded_set(m, true), "threaded mode")
        // No Nagle: the loop thread corks the socket around each burst of writes instead (see
        // `writeQueued` in LoopThread.swift), so a burst leaves as few full segments and nothing small waits
        // for the broker's delayed ACK (with Nagle on, drains stalled for ~40 ms at a time).
        try check(mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1), "TCP_NODELAY")
        if config.username != nil || config.password != nil {
            try check(mosquitto_username_pw_set(m, config.username, config.password), "username/password")
        }
        if config.brokers.first?.tls == true {
            // With caFile nil, libmosquitto needs a capath; use the system store then.
            let caPath: String? = config.caFile == nil ? "/etc/ssl/certs" : nil
            try check(mosquitto_tls_set(m, config.caFile, caPath, config.certFile, config.keyFile, nil),
                      "TLS files (caFile '\(config.caFile ?? "-")', certFile '\(config.certFile ?? "-")', keyFile '\(config.keyFile ?? "-")')")
            // SSL_VERIFY_PEER = 1, minimum TLS 1.2 (libmosquitto's "tlsv1.2" = 1.2 or later).
            try check(mosquitto_tls_opts_set(m, 1, "tlsv1.2", nil), "TLS options")
            try check(mosquitto_tls_insecure_set(m, false), "TLS host name verification")
        }
        if let w = config.will, !cleanStart {
            let rc = w.payload.withUnsafeBytes { buf in
                mosquitto_will_set_v5(m, w.topic, Int32(buf.count), buf.baseAddress, w.qos.rawValue, w.retain, nil)
            }
            try check(rc, "Last Will")
        }
        if !cleanStart && config.protocolVersion == .v5 && config.sessionExpiry > 0 {
            // Store the CONNECT properties in the instance without connecting: in libmosquitto
            // 2.0.11 `mosquitto_connect_bind_v5` (lib/connect.c) copies `properties` into
            // `mosq->connect_properties` BEFORE `mosquitto__connect_init` validates the port, so
            // port -1 returns MOSQ_ERR_INVAL with the properties kept; every later
            // `mosquitto_connect_bind_async` / reconnect sends them. (There is no async v5
            // connect taking properties.) The broker-restart and reconnect tests fail if the
            // Session Expiry does not reach the broker (Session Present would be 0).
            var props: OpaquePointer? = nil
            defer { mosquitto_property_free_all(&props) }
            try check(mosquitto_property_add_int32(&props, Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue), config.sessionExpiry),
                      "session expiry property")
            let rc = mosquitto_connect_bind_v5(m, "localhost", -1, config.keepalive, nil, props)
            guard rc == MOSQ_ERR_INVAL.rawValue else {
                throw .invalidConfiguration("storing CONNECT properties: unexpected \(String(cString: mosquitto_strerror(rc)))")
            }
        }
        mosquitto_connect_v5_callback_set(m, onConnect)
        mosquitto_publish_v5_callback_set(m, onPublish)
        mosquitto_disconnect_v5_callback_set(m, onDisconnect)
        mosquitto_log_callback_set(m, onLog)
    }

    /// The log callback is needed only to diagnose a failing connection (TLS verify results,
    /// alerts); the loop thread removes it once connected and sets it again before connecting.
    /// While one is set, libmosquitto formats EVERY debug line with `vsnprintf` into a fresh
    /// `malloc` before calling it (lib/logging_mosq.c `log__printf`), e.g. "Client … sending
    /// PUBLISH (d0, q1, r0, m…, '…', … (822 bytes))" and "received PUBACK" for each message:
    /// with one set, that was a large part of the loop thread's CPU while draining.
    static func setLogCallback(_ m: OpaquePointer, enabled: Bool) {
        mosquitto_log_callback_set(m, enabled ? onLog : nil)
    }

    // MARK: caller side

    func start() throws(UplinkError) {
        let ok: Bool = state.withLock { s in
            if s.started || s.stopRequested { return false }
            s.started = true
            return true
        }
        guard ok else { return }
        var tid = pthread_t()
        let ctx = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&tid, nil, { ctx in
            guard let ctx else { return nil }
            let engine = Unmanaged<Engine>.fromOpaque(ctx).takeRetainedValue()
            engine.runLoopThread()
            return nil
        }, ctx)
        if rc != 0 {
            Unmanaged<Engine>.fromOpaque(ctx).release()
            state.withLock { $0.started = false }
            throw .invalidConfiguration("cannot start the MQTT thread: \(String(cString: strerror(rc)))")
        }
        state.withLock { $0.thread = tid }
    }

    func publish(topic: String, payload: [UInt8], qos: MQTTQoS, retain: Bool,
                 userProperties: [(String, String)]) throws(UplinkError) -> Int32 {
        let running = state.withLock { $0.started && !$0.stopRequested }
        guard running else { throw .notRunning }
        func send() -> (rc: Int32, mid: Int32, detail: String?) {
            rawPublish(topic: topic, payload: payload, qos: qos, retain: retain, userProperties: userProperties)
        }
        let (rc, mid, detail): (Int32, Int32, String?)
        if qos == .atMostOnce {
            // libmosquitto calls on_publish_v5 for QoS 0 once the PUBLISH is WRITTEN
            // (lib/packet_mosq.c `packet__write`), with reason 0: that is no acknowledgement.
            // Remember the mid (under the lock, held across the call, so the loop thread cannot
            // look before it is recorded) and let the loop thread swallow that callback.
            (rc, mid, detail) = qos0Pending.withLock { pending in
                let r = send()
                if r.rc == MOSQ_ERR_SUCCESS.rawValue { pending.insert(r.mid) }
                return r
            }
        } else {
            (rc, mid, detail) = send()
        }
        wake()  // the loop thread writes it (it waits on the wake pipe, see `connectedTurn`)
        // QoS 1/2 while disconnected: libmosquitto 2.0.11 (lib/actions.c, lib/messages_mosq.c
        // `message__release_to_inflight`) has already appended the message to `msgs_out` and set
        // its state before `send__publish` fails with MOSQ_ERR_NO_CONN; `message__reconnect_reset`
        // + `message__retry_check` send it after the next CONNACK. So NO_CONN means "queued".
        if rc == MOSQ_ERR_NO_CONN.rawValue && qos != .atMostOnce && mid != 0 {
            return mid
        }
        if let detail { throw .publishRejected(detail: detail) }
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            throw .publishRejected(detail: "topic '\(topic)', \(payload.count) bytes, QoS \(qos.rawValue): \(String(cString: mosquitto_strerror(rc)))")
        }
        return mid
    }

    /// Sets the stop flag, queues DISCONNECT and wakes the loop thread. Returns whether the loop
    /// thread was started (and so must be waited for).
    @discardableResult
    func requestStop() -> Bool {
        let (wasStarted, firstStop) = state.withLock { s -> (Bool, Bool) in
            let first = !s.stopRequested
            s.stopRequested = true
            return (s.started, first)
        }
        guard wasStarted else {
            if firstStop { continuation.finish() }
            return false
        }
        if firstStop {
            // Queues DISCONNECT (reason 0x00) and wakes the loop thread through the wake pipe;
            // MOSQ_ERR_NO_CONN when not connected, which is fine: the loop thread then wakes from
            // its backoff wait, and disconnects by itself if it connected meanwhile.
            _ = mosquitto_disconnect_v5(mosq, Int32(MQTT_RC_NORMAL_DISCONNECTION.rawValue), nil)
            wake()
        }
        return true
    }

    func stop() async {
        guard requestStop() else { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.exited { return true }
                s.exitWaiters.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
        let tid: pthread_t? = state.withLock { s in defer { s.thread = nil }; return s.thread }
        if let tid { pthread_join(tid, nil) }  // the thread has already returned: immediate
    }

    func wake() {
        var one: UInt8 = 1
        _ = write(wakeWriteFD, &one, 1)
    }

    var stopRequested: Bool { state.withLock { $0.stopRequested } }

    func emit(_ e: MQTTEvent) { continuation.yield(e) }
}
