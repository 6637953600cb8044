import CMosquitto
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// OpenSSL X509_V_ERR_* values (x509_vfy.h), stable across 1.1 and 3.x.
private let x509CertNotYetValid = 9, x509CertHasExpired = 10
private let x509UnknownCAErrors: Set<Int> = [2, 18, 19, 20, 21]

/// Outcome of one connection on one instance.
private enum ConnectionOutcome {
    /// Never got a successful CONNACK.
    case failed(UplinkError)
    /// Was connected; the connection ended (nil: clean DISCONNECT after stop()).
    case lost(UplinkError?)
    /// Stop requested before or while connecting.
    case stopped
}

extension Engine {
    func runLoopThread() {
        defer {
            continuation.finish()
            let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                s.exited = true
                defer { s.exitWaiters.removeAll() }
                return s.exitWaiters
            }
            for w in waiters { w.resume() }
        }
        let brokers = config.brokers
        var index = 0
        var failures = 0
        var sessionReset = false

        while !stopRequested {
            // Reloaded credentials (SIGHUP): applied here, between connections, on this thread.
            // The next attempt goes to the same node at once, as after a lost connection.
            if applyPendingReload() { failures = 0 }
            let broker = brokers[index]
            if !sessionReset {
                if let error = resetOldSession(broker) {
                    if stopRequested { return }
                    emit(.connectionFailed(broker: broker, error: error))
                    failures += 1
                    index = (index + 1) % brokers.count
                    waitBackoff(failures: failures)
                    continue
                }
                sessionReset = true
            }
            let outcome = runConnection(mosq, inbox: callbacks, broker: broker, resetOnly: false)
            let (_, delivered) = setOutboxConnected(false)
            if !delivered.isEmpty { emit(.delivered(tags: delivered)) }
            switch outcome {
            case .stopped:
                return
            case .failed(let error):
                if stopRequested { return }
                emit(.connectionFailed(broker: broker, error: error))
                failures += 1
                index = (index + 1) % brokers.count  // failover, round-robin
            case .lost(let error):
                emit(.disconnected(error: error))
                if stopRequested { return }
                failures = 0  // first retry goes to the same node after the minimum delay
            }
            waitBackoff(failures: failures)
        }
    }

    /// Connects a throwaway instance with Clean Start = 1 and no session expiry, so the broker
    /// discards the session a previous process may have left (see ``MQTTClient``). nil on success.
    private func resetOldSession(_ broker: BrokerAddress) -> UplinkError? {
        let inbox = CallbackInbox()
        guard let r = mosquitto_new(config.clientID, true, nil) else {
            return .protocolError(broker: broker, detail: "mosquitto_new failed for the session reset")
        }
        defer { mosquitto_destroy(r) }
        do {
            try Engine.configure(r, config: config, userdata: Unmanaged.passUnretained(inbox).toOpaque(), cleanStart: true)
        } catch {
            return error
        }
        if let password = currentPassword, password != config.password {
            _ = mosquitto_username_pw_set(r, config.username, password)  // reloaded since start
        }
        switch runConnection(r, inbox: inbox, broker: broker, resetOnly: true) {
        case .failed(let e): return e
        case .lost, .stopped: return nil
        }
    }

    /// Connects `m` to `broker` and drives it with `mosquitto_loop` until the connection ends.
    /// With `resetOnly`, disconnects right after a successful CONNACK and reports nothing.
    private func runConnection(_ m: OpaquePointer, inbox: CallbackInbox, broker: BrokerAddress,
                               resetOnly: Bool) -> ConnectionOutcome {
        _ = inbox.drain()
        if stopRequested { return .stopped }
        Engine.setLogCallback(m, enabled: true)
        errno = 0
        // Non-blocking TCP connect (only the DNS lookup blocks): a SYN black hole must not stall
        // failover for the kernel's ~2 min; `connectTimeout` bounds TCP + TLS + CONNACK in the
        // loop below. The CONNECT properties (Session Expiry) were stored in the instance by
        // `Engine.configure`; `mosquitto__reconnect` sends `mosq->connect_properties`.
        var rc = mosquitto_connect_bind_async(m, broker.host, Int32(broker.port), config.keepalive, nil)
        let connectErrno = errno
        var logs: [String] = []
        var verifyResults: [Int] = []
        var connackError: UplinkError? = nil
        var connected = false
        var disconnectIssued = false
        var disconnectRC: Int32? = nil
        let clock = ContinuousClock()
        let connectDeadline = clock.now.advanced(by: config.connectTimeout)
        var stopDeadline: ContinuousClock.Instant? = nil
        /// Set when a credential reload waits for the in-flight messages before its DISCONNECT.
        var drainDeadline: ContinuousClock.Instant? = nil

        func process(_ events: [RawEvent]) {
            // Acknowledgements of one loop turn are matched against the outbox together, and
            // the window is refilled from its queue right here on the loop thread (one lock).
            var acks: [(mid: Int32, reason: Int32)] = []
            for e in events {
                switch e {
                case .log(_, let msg, let verify):
                    if logs.count >= 32 { logs.removeFirst() }  // only recent lines matter for diagnosis
                    logs.append(msg)
                    if let verify { verifyResults.append(verify) }
                case .connack(let reason, let flags):
                    if reason == 0 {
                        connected = true
                        Engine.setLogCallback(m, enabled: false)  // connected: nothing to diagnose
                        if !resetOnly {
                            emit(.connected(broker: broker, sessionPresent: flags & 1 != 0))
                            let (failed, delivered) = setOutboxConnected(true)
                            if !delivered.isEmpty { emit(.delivered(tags: delivered)) }
                            for (tag, why) in failed { emit(.outboxRefused(tag: tag, reason: why)) }
                        }
                    } else {
                        connackError = connackFailure(broker, reason)
                    }
                case .published(let mid, let reason):
                    if resetOnly { break }
                    if qos0Pending.withLock({ $0.remove(mid) != nil }) { break }  // QoS 0 written, not acked
                    acks.append((mid, reason))
                case .disconnect(let r):
                    disconnectRC = r
                }
            }
            if resetOnly { return }
            let (match, failed) = matchAndRefill(acks)
            if !match.delivered.isEmpty { emit(.delivered(tags: match.delivered)) }
            for (tag, why) in match.refused + failed { emit(.outboxRefused(tag: tag, reason: why)) }
            // Publishes made with `publish` (not the outbox): as before. With
            // `batchAcknowledgements`, consecutive successes go out as one event, order kept.
            var batch: [Int32] = []
            func flushBatch() {
                if !batch.isEmpty { emit(.acknowledgedBatch(mids: batch)); batch.removeAll() }
            }
            for (mid, reason) in match.others {
                if reason >= 0x80 {
                    flushBatch()
                    emit(.refused(mid: mid, reason: RefusalReason(code: reason)))
                } else if config.batchAcknowledgements {
                    batch.append(mid)
                } else {
                    emit(.acknowledged(mid: mid, reasonCode: reason))
                }
            }
            flushBatch()
        }
        process(inbox.drain())
        if rc != MOSQ_ERR_SUCCESS.rawValue {
            return .failed(connectFailure(m, broker, rc, errnoValue: connectErrno, logs: logs, verifyResults: verifyResults))
        }

        while true {
            // A credential reload ends a live connection with our own DISCONNECT (0x00: the broker
            // discards the Will); the loop thread reconnects with the new files right after.
            // libmosquitto keeps every unacknowledged message and retransmits it (see MQTTClient).
            if !resetOnly && connected && !disconnectIssued && drainDeadline == nil && reloadPending {
                // Reload, step 1: hand libmosquitto nothing new and let what is in flight be
                // acknowledged (bounded), so the DISCONNECT goes out with nothing more coming
                // from the broker: closing a TCP socket with unread data sends RST, which
                // makes the broker discard what it has not read yet, our DISCONNECT included
                // (it then publishes the Will: a false "offline"; mosquitto logged
                // "disconnected: Protocol error"). Anything left is retransmitted after the reconnect.
                drainDeadline = clock.now.advanced(by: .seconds(3))
                let (_, delivered) = setOutboxConnected(false)
                if !delivered.isEmpty { emit(.delivered(tags: delivered)) }
            }
            let drained = drainDeadline.map { clock.now >= $0 || outbox.withLock { $0.inFlight.isEmpty } } ?? false
            if (stopRequested || (resetOnly && connected) || drained) && !disconnectIssued {
                disconnectIssued = true
                let deadline = clock.now.advanced(by: .seconds(2))
                stopDeadline = deadline
                _ = mosquitto_disconnect_v5(m, Int32(MQTT_RC_NORMAL_DISCONNECTION.rawValue), nil)
                // Write the DISCONNECT out BEFORE reading anything more: `mosquitto_disconnect_v5`
                // leaves the "active" state, and libmosquitto 2.0.11 answers a PUBACK/PUBREC/PUBCOMP
                // read after that with MOSQ_ERR_PROTOCOL (lib/handle_pubackcomp.c,
                // lib/handle_pubrec.c) and drops the socket WITHOUT the DISCONNECT: the broker then
                // publishes the Will (a false "offline"). Seen with acknowledgements in flight at a
                // reload (mosquitto logged "disconnected: Protocol error"). Only writes here, waiting
                // for the socket to be writable (no sleep); the acknowledgements not read are not
                // lost: those messages are retransmitted after the reconnect.
                if connected, flushDisconnect(m, until: deadline, clock: clock) {
                    process(inbox.drain())
                    return .lost(nil)
                }
            }
            // A turn blocks in select()/poll() (see `connectedTurn`). The 1 s cap lets it run
            // its keepalive bookkeeping (PINGREQ, `mosquitto_loop_misc`) and bounds the connect.
            var timeoutMs: Int32 = config.idleTurnMilliseconds
            if !connected {
                let left = connectDeadline - clock.now
                timeoutMs = max(10, min(1000, Int32(clamping: wholeMilliseconds(left))))
            }
            errno = 0
            // Connected (and not a session reset): our own turn, without the socket pair; see
            // `connectedTurn`. Connecting (TCP, TLS handshake, CONNACK): libmosquitto's loop.
            rc = connected && !resetOnly && !disconnectIssued ? connectedTurn(m, timeoutMs: timeoutMs) : mosquitto_loop(m, timeoutMs, 1)
            let loopErrno = errno
            process(inbox.drain())
            if let connackError {
                return .failed(connackError)
            }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                if !connected {
                    if stopRequested { return .stopped }
                    return .failed(connectFailure(m, broker, rc, errnoValue: loopErrno, logs: logs, verifyResults: verifyResults))
                }
                if disconnectIssued {
                    return .lost(nil)  // our own DISCONNECT (stop, a reload, or the end of a session reset)
                }
                return .lost(lostFailure(broker, rc, errnoValue: loopErrno, disconnectRC: disconnectRC))
            }
            let now = clock.now
            if !connected && now >= connectDeadline {
                if stopRequested { return .stopped }
                return .failed(.connectTimeout(broker: broker))
            }
            if let stopDeadline, now >= stopDeadline {
                return connected ? .lost(nil) : .stopped
            }
        }
    }

    /// One turn of a live connection, driven with libmosquitto's parts (`mosquitto_loop_write`,
    /// `mosquitto_loop_read`, `mosquitto_loop_misc`: its API for an application that watches the
    /// socket itself) instead of `mosquitto_loop`. Why (measured, BENCHMARKS.md):
    /// - `mosquitto_loop` also watches the socket pair that every `mosquitto_publish` writes a
    ///   byte to (lib/packet_mosq.c `packet__queue`) and reads ONE byte of it per turn: while
    ///   draining, every message cost an extra `read` and an extra turn (`pselect`). Here the
    ///   turn waits in `poll` on the socket and our wake pipe only; publishes from other threads
    ///   (`submit`, `publish`, `requestStop`) ring the wake pipe. Nothing reads the socket pair
    ///   any more: once its buffer is full, libmosquitto's write to it fails with EAGAIN, which
    ///   it ignores (its return value is not checked).
    /// - With errno cleared first, `mosquitto_loop_read` reads every acknowledgement that has
    ///   arrived (it stops after one packet while errno still holds an old EAGAIN, lib/loop.c).
    /// - The refills published after the previous turn's acknowledgements are written at once,
    ///   as one corked burst (``writeQueued(_:socket:)``).
    /// Returns a libmosquitto result, as `mosquitto_loop` does.
    private func connectedTurn(_ m: OpaquePointer, timeoutMs: Int32) -> Int32 {
        let success = MOSQ_ERR_SUCCESS.rawValue
        var sock = mosquitto_socket(m)
        guard sock >= 0 else { return MOSQ_ERR_NO_CONN.rawValue }
        if mosquitto_want_write(m) {
            let rc = writeQueued(m, socket: sock)
            sock = mosquitto_socket(m)
            if rc != success { return rc }
            if sock < 0 { return MOSQ_ERR_NO_CONN.rawValue }
        }
        let wantWrite = mosquitto_want_write(m)  // the socket buffer was full: wait until writable
        var fds = [pollfd(fd: sock, events: Int16(POLLIN) | (wantWrite ? Int16(POLLOUT) : 0), revents: 0),
                   pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        let n = poll(&fds, 2, timeoutMs)
        if n < 0 { return errno == EINTR ? success : MOSQ_ERR_ERRNO.rawValue }
        let woken = fds[1].revents & Int16(POLLIN) != 0
        if woken {
            var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            _ = withUnsafeMutableBytes(of: &bytes) { read(wakeFD, $0.baseAddress, $0.count) }
        }
        if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            errno = 0
            let rc = mosquitto_loop_read(m, 1)
            if rc != success { return rc }
            if mosquitto_socket(m) < 0 { return MOSQ_ERR_NO_CONN.rawValue }
            quickAck(sock)
        }
        if fds[0].revents & Int16(POLLOUT) != 0 || (woken && mosquitto_want_write(m)) {
            let rc = writeQueued(m, socket: sock)
            if rc != success { return rc }
            if mosquitto_socket(m) < 0 { return MOSQ_ERR_NO_CONN.rawValue }
        }
        return mosquitto_loop_misc(m)
    }

    /// Acknowledges what was just read at once instead of after the delayed-ACK timer (tcp(7)
    /// `TCP_QUICKACK`; the kernel may leave quick-ACK mode again, so it is set after every read).
    /// A broker with Nagle on (mosquitto's default, `set_tcp_nodelay false`) holds a PUBACK until
    /// its previous one is acknowledged at the TCP level; with our ACK delayed until the next
    /// PUBLISH carried it, every PUBACK of a steady trickle arrived one publish interval late
    /// (10 ms at 100 readings/s in the benchmark's section 3).
    private func quickAck(_ sock: Int32) {
        var on: Int32 = 1
        _ = setsockopt(sock, Int32(IPPROTO_TCP), TCP_QUICKACK, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Writes every queued packet (`mosquitto_loop_write` writes them one `write` each) with
    /// the socket corked (`TCP_CORK`, tcp(7)), so a burst of publishes leaves as full segments,
    /// pushed out at once when the cork is pulled (the socket has `TCP_NODELAY`, see
    /// `Engine.configure`). Without the cork each message was a segment of its own: about 20 %
    /// more broker CPU per message; with Nagle instead, a drain stalled for a delayed ACK
    /// (~40 ms) every so often. The cork never outlives this call.
    private func writeQueued(_ m: OpaquePointer, socket sock: Int32) -> Int32 {
        var on: Int32 = 1, off: Int32 = 0
        _ = setsockopt(sock, Int32(IPPROTO_TCP), TCP_CORK, &on, socklen_t(MemoryLayout<Int32>.size))
        errno = 0
        let rc = mosquitto_loop_write(m, 1)
        if mosquitto_socket(m) == sock {
            _ = setsockopt(sock, Int32(IPPROTO_TCP), TCP_CORK, &off, socklen_t(MemoryLayout<Int32>.size))
        }
        return rc
    }

    /// Writes what is queued (ending with our DISCONNECT, after which libmosquitto closes the
    /// socket, lib/packet_mosq.c `packet__write`) without reading. True once the socket is closed.
    private func flushDisconnect(_ m: OpaquePointer, until deadline: ContinuousClock.Instant, clock: ContinuousClock) -> Bool {
        while true {
            let rc = mosquitto_loop_write(m, 1)
            let fd = mosquitto_socket(m)
            if fd < 0 { return true }
            if rc != MOSQ_ERR_SUCCESS.rawValue { return false }
            let left = deadline - clock.now
            let ms = wholeMilliseconds(left)
            if ms <= 0 { return false }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&pfd, 1, Int32(min(ms, 1000)))
        }
    }

    private func connackFailure(_ b: BrokerAddress, _ reason: Int32) -> UplinkError {
        if config.protocolVersion == .v5 {
            switch reason {
            case 0x86: return .badCredentials(broker: b)
            case 0x87: return .notAuthorized(broker: b)
            default:
                return .connectRefusedByBroker(broker: b, reasonCode: reason,
                                               reason: String(cString: mosquitto_reason_string(reason)))
            }
        }
        switch reason {
        case 4: return .badCredentials(broker: b)
        case 5: return .notAuthorized(broker: b)
        default:
            return .connectRefusedByBroker(broker: b, reasonCode: reason,
                                           reason: String(cString: mosquitto_connack_string(reason)))
        }
    }

    private func connectFailure(_ m: OpaquePointer, _ b: BrokerAddress, _ rc: Int32, errnoValue: Int32,
                                logs: [String], verifyResults: [Int]) -> UplinkError {
        // A TLS alert from the broker about OUR certificate (with TLS 1.3 it arrives after the
        // client considers the handshake done, so rc may be a plain read error).
        if b.tls, let alert = logs.first(where: {
            $0.contains("alert certificate required") || $0.contains("alert bad certificate")
                || $0.contains("alert unknown ca") || $0.contains("alert certificate unknown")
        }) {
            return .tlsClientCertificateRejected(broker: b, detail: alert)
        }
        switch rc {
        case MOSQ_ERR_ERRNO.rawValue:
            if errnoValue == ECONNREFUSED { return .connectionRefused(broker: b) }
            if errnoValue == ECONNRESET && b.tls {
                return .tls(broker: b, detail: "connection reset during the TLS handshake (client certificate rejected?)")
            }
            return .network(broker: b, detail: String(cString: strerror(errnoValue)))
        case MOSQ_ERR_EAI.rawValue:
            // lib/net_mosq.c `net__try_connect_tcp` puts getaddrinfo's code in errno.
            return .dnsFailure(broker: b, detail: String(cString: gai_strerror(errnoValue)))
        case MOSQ_ERR_TLS.rawValue, MOSQ_ERR_TLS_HANDSHAKE.rawValue:
            if logs.contains(where: { $0.contains("host name verification failed") }) {
                return .tlsHostnameMismatch(broker: b)
            }
            if let v = verifyResults.last(where: { $0 != 0 }) ?? (mosquitto_ssl_get(m).flatMap { sslVerifyResult($0) }) {
                if v == x509CertHasExpired || v == x509CertNotYetValid { return .tlsCertificateExpired(broker: b) }
                if x509UnknownCAErrors.contains(v) { return .tlsUnknownCA(broker: b) }
            }
            let detail = logs.filter { $0.contains("OpenSSL") || $0.contains("Error") }.joined(separator: "; ")
            return .tls(broker: b, detail: detail.isEmpty ? "handshake failed" : detail)
        case MOSQ_ERR_CONN_LOST.rawValue, MOSQ_ERR_NO_CONN.rawValue:
            return .network(broker: b, detail: "connection closed by the broker before CONNACK"
                            + (b.tls ? " (TLS client certificate rejected?)" : ""))
        case MOSQ_ERR_PROTOCOL.rawValue, MOSQ_ERR_MALFORMED_PACKET.rawValue, MOSQ_ERR_MALFORMED_UTF8.rawValue:
            return .protocolError(broker: b, detail: String(cString: mosquitto_strerror(rc)))
        default:
            return .protocolError(broker: b, detail: String(cString: mosquitto_strerror(rc)))
        }
    }

    private func lostFailure(_ b: BrokerAddress, _ rc: Int32, errnoValue: Int32, disconnectRC: Int32?) -> UplinkError {
        if config.protocolVersion == .v5, let d = disconnectRC, d >= 0x80 {
            // The broker sent DISCONNECT with a reason (MQTT 5.0 §3.14.2.1), e.g. 0x8E session taken over.
            return .protocolError(broker: b, detail: "broker disconnected us: \(String(cString: mosquitto_reason_string(d)))")
        }
        if rc == MOSQ_ERR_ERRNO.rawValue {
            return .connectionLost(broker: b, detail: String(cString: strerror(errnoValue)))
        }
        if rc == MOSQ_ERR_PROTOCOL.rawValue || rc == MOSQ_ERR_MALFORMED_PACKET.rawValue {
            return .protocolError(broker: b, detail: String(cString: mosquitto_strerror(rc)))
        }
        return .connectionLost(broker: b, detail: String(cString: mosquitto_strerror(rc)))
    }

    /// Waits the full-jitter backoff delay (``backoffDelay(failures:min:max:)``). Blocks on the
    /// wake pipe (woken by `stop()` and by a credential reload, which ends the wait), not a sleep loop.
    private func waitBackoff(failures: Int) {
        let delay = backoffDelay(failures: failures, min: config.reconnectMinDelay, max: config.reconnectMaxDelay)
        let deadline = ContinuousClock.now.advanced(by: delay)
        while !stopRequested && !reloadPending {
            let left = deadline - ContinuousClock.now
            let ms = wholeMilliseconds(left)
            if ms <= 0 { return }
            var pfd = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
            let n = poll(&pfd, 1, Int32(min(ms, Int64(Int32.max))))
            if n > 0 {
                var buf = [UInt8](repeating: 0, count: 64)
                _ = read(wakeFD, &buf, buf.count)
            }
            // n == 0: deadline reached (checked above); n < 0: EINTR, wait for the rest.
        }
    }
}

/// `d` in whole milliseconds (rounded toward zero).
func wholeMilliseconds(_ d: Duration) -> Int64 {
    d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
}

/// Full-jitter exponential backoff: after `failures` consecutive failures, a uniformly random
/// delay in `min ... min(max, min * 2^failures)` (so `min` after a lost connection, and never
/// more than `max`).
func backoffDelay(failures: Int, min minDelay: Duration, max maxDelay: Duration) -> Duration {
    let minMs = Double(minDelay.components.seconds) * 1000 + Double(minDelay.components.attoseconds) / 1e15
    let maxMs = Double(maxDelay.components.seconds) * 1000 + Double(maxDelay.components.attoseconds) / 1e15
    let upper = Swift.min(maxMs, minMs * Double(1 << Swift.min(Swift.max(failures, 0), 30)))
    let ms = upper > minMs ? Double.random(in: minMs...upper) : minMs
    return .microseconds(Int64(ms * 1000))
}
