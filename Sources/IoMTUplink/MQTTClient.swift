import CMosquitto
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `mosquitto_lib_init` exactly once per process. It is NOT thread-safe (lib/mosquitto.c: an
/// unguarded `init_refcount`; two racing first calls would run `net__init` twice and replace
/// the SSL ex-data index libmosquitto's certificate-verify callback uses). A global `let` is
/// initialised lazily and thread-safely by the Swift runtime (`swift_once`), so every user in
/// the process — this module and IoMTTestSupport — must go through ``initialiseLibmosquitto()``.
private let libmosquittoInitialised: Int32 = mosquitto_lib_init()

/// Initialises libmosquitto once per process (thread-safe); returns its result code
/// (MOSQ_ERR_SUCCESS = 0). Call before any other libmosquitto function outside ``MQTTClient``.
@discardableResult
public func initialiseLibmosquitto() -> Int32 { libmosquittoInitialised }

/// MQTT client for the forwarder, over one `mosquitto*` instance driven by a dedicated thread.
///
/// ## Threading
/// A dedicated OS thread (not `mosquitto_loop_start`) runs `mosquitto_connect_bind_async`
/// (non-blocking TCP connect; only DNS blocks) and a blocking `mosquitto_loop` until CONNACK or
/// ``UplinkConfig/connectTimeout``; for the life of the connection it then drives the socket
/// itself (`poll` on the socket and a self-pipe, `mosquitto_loop_read`/`_write`; see
/// `connectedTurn` in LoopThread.swift); between attempts it waits in `poll` on the same
/// self-pipe with a timeout (the backoff), which `stop()` wakes. Why not
/// `mosquitto_loop_start`: its thread reconnects by itself with `mosquitto_reconnect` to the SAME
/// host with libmosquitto's own backoff, which gives neither failover round-robin, nor full
/// jitter, nor a connect timeout, nor a place to classify errors. Owning the thread makes the
/// connection state machine plain sequential code, and `stop()` can join it.
///
/// ## Delivery guarantees (confirmed in libmosquitto 2.0.11)
/// - `mosquitto_publish_v5` (lib/actions.c) queues every QoS 1/2 message in `msgs_out` even
///   while disconnected, and beyond the broker's Receive Maximum (held in state "invalid" until
///   quota is free, lib/messages_mosq.c `message__release_to_inflight`). The queue is not capped.
///   While disconnected, `mosquitto_publish_v5` returns MOSQ_ERR_NO_CONN for QoS 1/2 although
///   the message IS queued (it is appended before `send__publish` fails); ``publish(topic:payload:qos:retain:userProperties:)``
///   therefore treats NO_CONN as success for QoS > 0.
/// - `mosquitto_connect*` (lib/connect.c `mosquitto__connect_init`) only replaces host/port and
///   keepalive; `mosquitto__reconnect` calls `message__reconnect_reset` (lib/messages_mosq.c),
///   which keeps every queued message and resets QoS 1 to "publish", QoS 2 awaiting PUBREC to
///   "publish" and QoS 2 awaiting PUBCOMP to "resend PUBREL". After a successful CONNACK
///   (lib/handle_connack.c) `message__retry_check` resends them (PUBLISH with DUP=1, or PUBREL).
///   So a reconnect, to the same or to ANOTHER host, on the same `mosquitto*` loses nothing
///   queued, and may duplicate (same payload, same packet id, DUP set).
/// - Acknowledgement callbacks (lib/handle_pubackcomp.c, lib/handle_pubrec.c): PUBACK/PUBCOMP
///   call `on_publish_v5` with the reason code; a v5 PUBREC >= 0x80 deletes the message and
///   calls ONLY `on_publish_v5` (not `on_publish`) — hence the v5 callback is used for both
///   protocol versions (with 3.1.1 the reason is always 0).
///
/// ## Sessions and the QoS 2 packet-id pitfall
/// Packet ids come from `mosquitto__mid_generate` (lib/util_mosq.c): a per-instance counter
/// that starts at 1. After a crash a NEW process starts again at 1, while the broker may still
/// hold, in the old persistent session of the same client id, incoming QoS 2 packet ids that
/// got PUBREC but never PUBREL. A new QoS 2 PUBLISH reusing such an id would be taken for a
/// retransmission of the old one and dropped (MQTT 5.0 §4.3.3 / §4.4): silent loss.
///
/// Decision: the FIRST connect of each `MQTTClient` (each `mosquitto*`, hence each packet-id
/// counter: per process, and again if the agent recreates the client) discards any old session;
/// every later connect of that client resumes the session. `clean_start` is fixed per `mosquitto*` at `mosquitto_new`,
/// and `mosquitto_reinitialise` would throw away messages already queued by the caller, so the
/// client uses a short-lived second instance: before the main instance's first CONNECT it
/// connects a throwaway instance with the same client id, Clean Start = 1 and (MQTT 5) Session
/// Expiry 0, waits for its CONNACK and disconnects (MQTT 5.0 §3.1.2.4, §3.1.2.11.2; 3.1.1
/// §3.1.2.4): the broker drops the old session and its pending QoS 2 ids. The main instance
/// then always connects with Clean Start = 0 and Session Expiry ``UplinkConfig/sessionExpiry``,
/// so reconnects within the process resume the session and libmosquitto's retransmissions
/// complete QoS 2 exchanges exactly once. Anything the old process had not seen acknowledged is
/// still in the agent's durable buffer and is republished with the same reading id.
/// The broker list is assumed to be one cluster sharing sessions: the reset is done once per
/// client, on whichever node answers first.
///
/// Observed with mosquitto 2.0.11 (test `newProcessSessionResetAvoidsQoS2PacketIdCollision`,
/// run once with the reset disabled): a QoS 2 message queued before the first CONNACK got packet
/// id 1, collided with the old session's pending id 1, and was neither delivered nor completed
/// (the client waited for ever). When the publish came after the CONNACK instead, mosquitto's
/// content check (src/handle_publish.c, "Reused message ID ... detected") let it through: the
/// outcome depends on packet ordering and on the broker, so it must not be left to chance.
///
/// The reset instance carries no Will. If the session expires or the broker loses it anyway,
/// see ``MQTTEvent/connected(broker:sessionPresent:)`` for what the forwarder must do.
public final class MQTTClient: Sendable {
    /// The event stream. Single consumer; buffered without limit (events are small and the
    /// consumer is the forwarder, which must see every acknowledgement).
    public let events: AsyncStream<MQTTEvent>
    private let engine: Engine

    /// Creates the client (validates the configuration, creates the libmosquitto instance and
    /// configures TLS, credentials and the Will). Does not connect: call ``start()``.
    public init(config: UplinkConfig) throws(UplinkError) {
        try config.validate()
        _ = libmosquittoInitialised
        let (stream, continuation) = AsyncStream.makeStream(of: MQTTEvent.self, bufferingPolicy: .unbounded)
        self.events = stream
        self.engine = try Engine(config: config, continuation: continuation)
    }

    /// Starts connecting in the background. Idempotent.
    public func start() throws(UplinkError) {
        try engine.start()
    }

    /// Queues a message; returns libmosquitto's message id (the MQTT packet id for QoS > 0),
    /// matched later by ``MQTTEvent/acknowledged(mid:reasonCode:)`` or
    /// ``MQTTEvent/refused(mid:reason:)``. Works while disconnected: QoS 1/2 messages wait in
    /// libmosquitto's queue and go out after the next CONNACK. QoS 0 while disconnected fails with
    /// ``UplinkError/publishRejected(detail:)`` (nothing would be sent). QoS 0 gets no
    /// acknowledgement event at all (fire and forget): do not use it for readings.
    ///
    /// Message ids are libmosquitto's 16-bit packet ids (1...65535, wrapping; lib/util_mosq.c
    /// `mosquitto__mid_generate` does not skip ids still in flight): keep fewer than 65535
    /// messages unacknowledged (the forwarder's in-flight window) so a mid is unambiguous.
    ///
    /// `userProperties` are sent as MQTT 5 User Properties (MQTT 5.0 §3.3.2.3.7), in order, e.g.
    /// `("reading-id", id.description)`. With ``MQTTProtocolVersion/v311`` they are SILENTLY NOT
    /// SENT (3.1.1 has no properties); encode anything essential in the payload too.
    public func publish(topic: String, payload: [UInt8], qos: MQTTQoS = .atLeastOnce, retain: Bool = false,
                        userProperties: [(String, String)] = []) throws(UplinkError) -> Int32 {
        try engine.publish(topic: topic, payload: payload, qos: qos, retain: retain, userProperties: userProperties)
    }

    /// Queues pre-rendered messages in the client's outbox: a bounded window of them (see
    /// ``setOutboxWindow(_:)``) is handed to libmosquitto, and each acknowledgement that frees a
    /// place is refilled from the queue on the MQTT thread itself, in the same loop turn, with no
    /// hand-off to the caller. Results come back by tag: ``MQTTEvent/delivered(tags:)`` and
    /// ``MQTTEvent/outboxRefused(tag:reason:)``. Queued messages go out only while connected;
    /// those in flight at a disconnect are retransmitted by libmosquitto after the reconnect
    /// (same packet id, DUP set), as with ``publish(topic:payload:qos:retain:userProperties:)``.
    /// The caller bounds the queue (it holds what it submitted until it hears back).
    /// Throws ``UplinkError/notRunning`` before ``start()`` or after ``stop()``, and
    /// ``UplinkError/publishRejected(detail:)`` for QoS 0 (never acknowledged).
    public func submit(_ messages: [OutboundMessage]) throws(UplinkError) {
        try engine.submit(messages)
    }

    /// How many outbox messages may be unacknowledged at once (1...65000; default 64). Also
    /// raises libmosquitto's in-flight cap (`MOSQ_OPT_SEND_MAXIMUM`, default 20) to the window
    /// plus 8 (for publishes outside the outbox); a broker's Receive Maximum still bounds it.
    /// Call before ``start()``.
    public func setOutboxWindow(_ n: Int) {
        engine.setOutboxLimit(n)
    }

    /// Empties the outbox queue and forgets which packet ids belong to outbox messages (their
    /// late acknowledgements then arrive as ``MQTTEvent/acknowledged(mid:reasonCode:)`` /
    /// ``MQTTEvent/acknowledgedBatch(mids:)``). Returns the tags of every message it held,
    /// queued or in flight. For a reconnect where the broker lost the session.
    @discardableResult
    public func discardOutbox() -> [UInt64] {
        engine.discardOutbox()
    }

    /// Reloads the broker credentials without losing anything queued (the agent calls it on
    /// SIGHUP): re-reads the configured CA, certificate and key files (same paths) and, when
    /// `password` is given, replaces the password; then the loop thread lets the outbox messages
    /// in flight be acknowledged (new ones wait; at most 3 s), ends the connection with a normal
    /// DISCONNECT (0x00: the broker discards the Will) and reconnects at once with the new settings, on the SAME libmosquitto instance and session, so every
    /// unacknowledged QoS 1/2 message is retransmitted after the CONNACK (lib/messages_mosq.c
    /// `message__reconnect_reset`, as for any reconnect) and the outbox queue is untouched.
    /// Not connected (e.g. the broker refuses the old certificate): the backoff wait ends and
    /// the next attempt uses the new files.
    ///
    /// Validation first, here on the caller's thread: each file must be a readable regular
    /// file, the key readable by its owner only (`chmod 600`), and OpenSSL must load the CA,
    /// the certificate chain and a key that matches the certificate. Anything wrong throws
    /// ``UplinkError/tlsFilesRefused(detail:)`` and changes NOTHING: the running connection and
    /// the previous settings stay. (Files replaced again between this check and the reconnect
    /// are read as they are then; libmosquitto loads them at every connect.)
    ///
    /// Why a fresh `SSL_CTX` and not only `mosquitto_tls_set`: libmosquitto 2.0.11 creates its
    /// `SSL_CTX` once per instance and re-applies the files to it at every connect
    /// (lib/net_mosq.c `net__init_ssl_ctx`), replacing certificate and key but ADDING the CA
    /// file to the trust store; and a failing `mosquitto_tls_set` clears the CA (a later connect
    /// would skip TLS). So the paths stay as configured and the loop thread gives the instance
    /// a new empty context (`MOSQ_OPT_SSL_CTX`) between connections; a CA removed from `caFile`
    /// is then no longer trusted. (Only on libmosquitto 2.0.0...2.0.11, whose ownership of that
    /// option is verified; on others the CA store keeps the old CAs too until a restart.)
    ///
    /// Throws ``UplinkError/notRunning`` after ``stop()``. Without TLS only the password applies.
    public func reloadCredentials(password: String? = nil) throws(UplinkError) {
        if engine.config.brokers.first?.tls == true {
            try TLSFiles(caFile: engine.config.caFile, certFile: engine.config.certFile, keyFile: engine.config.keyFile)
                .validate()
        }
        try engine.requestReload(password: password)
    }

    /// ``reloadCredentials(password:)`` for the TLS files alone.
    public func reloadTLS() throws(UplinkError) {
        try reloadCredentials(password: nil)
    }

    /// Graceful stop: sends DISCONNECT with reason 0x00 Normal disconnection (MQTT 5.0 §3.14.2.1),
    /// which makes the broker DISCARD the Last Will (MQTT 5.0 §3.1.2.5, §3.14.4; 3.1.1 §3.1.2.5),
    /// waits for the loop thread to end (bounded: about 2 s after the DISCONNECT is queued) and
    /// finishes ``events``. To leave a final status, publish it (retained) and wait for its
    /// acknowledgement before calling `stop()`. Unacknowledged messages are not waited for: they
    /// remain in the agent's durable buffer. Idempotent.
    public func stop() async {
        await engine.stop()
    }

    /// Releasing a started client without `stop()` still ends its loop thread (it disconnects
    /// cleanly in the background), but nobody waits for it: call `stop()`.
    deinit {
        engine.requestStop()
    }
}
