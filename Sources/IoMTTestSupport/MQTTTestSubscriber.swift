import CMosquitto
import IoMTUplink  // initialiseLibmosquitto(): one process-wide, thread-safe mosquitto_lib_init
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A message received by ``MQTTTestSubscriber``.
public struct ReceivedMessage: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: Int32
    public var retain: Bool
    /// MQTT 5 User Properties, in wire order.
    public var userProperties: [UserProperty]
    public var payloadString: String { String(decoding: payload, as: UTF8.self) }
    public func userProperty(_ name: String) -> String? { userProperties.first { $0.name == name }?.value }
}

public struct UserProperty: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(name: String, value: String) { self.name = name; self.value = value }
}

private final class SubscriberSink: Sendable {
    let messages = Watched<[ReceivedMessage]>([])
    let connack = Watched<Int32?>(nil)
    let subscribed = Watched(false)
}

private func sink(_ obj: UnsafeMutableRawPointer?) -> SubscriberSink? {
    obj.map { Unmanaged<SubscriberSink>.fromOpaque($0).takeUnretainedValue() }
}

private let subOnConnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, Int32, OpaquePointer?) -> Void = {
    _, obj, rc, _, _ in sink(obj)?.connack.update { $0 = rc }
}
private let subOnSubscribe: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, Int32, UnsafePointer<Int32>?, OpaquePointer?) -> Void = {
    _, obj, _, _, _, _ in sink(obj)?.subscribed.update { $0 = true }
}
/// Copies the message out (libmosquitto frees it after the callback) and hands it over.
private let subOnMessage: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafePointer<mosquitto_message>?, OpaquePointer?) -> Void = {
    _, obj, msg, props in
    guard let msg, let s = sink(obj) else { return }
    let m = msg.pointee
    let topic = m.topic.map { String(cString: $0) } ?? ""
    var payload: [UInt8] = []
    if let p = m.payload, m.payloadlen > 0 {
        payload = Array(UnsafeRawBufferPointer(start: p, count: Int(m.payloadlen)))
    }
    var userProps: [UserProperty] = []
    var name: UnsafeMutablePointer<CChar>? = nil
    var value: UnsafeMutablePointer<CChar>? = nil
    let userProperty = Int32(MQTT_PROP_USER_PROPERTY.rawValue)
    var cursor = mosquitto_property_read_string_pair(props, userProperty, &name, &value, false)
    while cursor != nil {
        if let name, let value { userProps.append(UserProperty(name: String(cString: name), value: String(cString: value))) }
        free(name); free(value); name = nil; value = nil
        cursor = mosquitto_property_read_string_pair(cursor, userProperty, &name, &value, true)
    }
    let received = ReceivedMessage(topic: topic, payload: payload, qos: m.qos, retain: m.retain, userProperties: userProps)
    s.messages.update { $0.append(received) }
}

/// An MQTT 5 subscriber (libmosquitto, its own network thread) that records every message with
/// topic, payload bytes, QoS, retain flag and user properties.
///
/// ```swift
/// let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/#")
/// defer { sub.stop() }
/// let got = await sub.waitFor(count: 3, timeout: .seconds(10))
/// ```
/// It connects with Clean Start and QoS 2 subscription, so it sees each PUBLISH the broker
/// forwards (a broker may forward a duplicate if the publisher's retransmission is a new message).
public final class MQTTTestSubscriber: @unchecked Sendable {
    // @unchecked: `mosq` is only used by `start` (before the network thread exists) and `stop`
    // (mosquitto_disconnect + mosquitto_loop_stop join the thread, then destroy), which
    // libmosquitto supports from another thread; messages flow only through `SubscriberSink`.
    private let mosq: OpaquePointer
    private let sinkBox: SubscriberSink
    private let stopped = Mutex(false)

    private init(mosq: OpaquePointer, sink: SubscriberSink) {
        self.mosq = mosq
        self.sinkBox = sink
    }

    /// With `persistentSession` (needs `clientID`): Clean Start 0 and Session Expiry 3600 s, so
    /// libmosquitto's automatic reconnect (e.g. after ``MosquittoBroker/restart()`` with
    /// persistence) resumes the subscription and receives what was queued meanwhile.
    ///
    /// Connects to 127.0.0.1:`port`, subscribes to `topicFilter` with QoS 2 and returns after the
    /// SUBACK (bounded by `timeout`).
    public static func start(host: String = "127.0.0.1", port: Int, topicFilter: String,
                             username: String? = nil, password: String? = nil,
                             clientID: String? = nil, persistentSession: Bool = false,
                             timeout: Duration = .seconds(10)) async throws -> MQTTTestSubscriber {
        initialiseLibmosquitto()
        let s = SubscriberSink()
        guard let m = mosquitto_new(clientID, !persistentSession, Unmanaged.passUnretained(s).toOpaque()) else {
            throw TestSupportError("mosquitto_new failed")
        }
        let sub = MQTTTestSubscriber(mosq: m, sink: s)
        mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5)
        if username != nil { mosquitto_username_pw_set(m, username, password) }
        mosquitto_connect_v5_callback_set(m, subOnConnect)
        mosquitto_subscribe_v5_callback_set(m, subOnSubscribe)
        mosquitto_message_v5_callback_set(m, subOnMessage)
        var props: OpaquePointer? = nil
        defer { mosquitto_property_free_all(&props) }
        if persistentSession {
            mosquitto_property_add_int32(&props, Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue), 3600)
        }
        var rc = mosquitto_connect_bind_v5(m, host, Int32(port), 30, nil, props)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            sub.stop()
            throw TestSupportError("subscriber connect to \(host):\(port) failed: \(String(cString: mosquitto_strerror(rc)))")
        }
        rc = mosquitto_loop_start(m)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { sub.stop(); throw TestSupportError("mosquitto_loop_start failed") }
        guard await s.connack.wait(timeout: timeout, until: { $0 != nil }), s.connack.value == 0 else {
            sub.stop()
            throw TestSupportError("subscriber: no successful CONNACK from \(host):\(port) (\(String(describing: s.connack.value)))")
        }
        rc = mosquitto_subscribe_v5(m, nil, topicFilter, 2, 0, nil)
        guard rc == MOSQ_ERR_SUCCESS.rawValue, await s.subscribed.wait(timeout: timeout, until: { $0 }) else {
            sub.stop()
            throw TestSupportError("subscriber: no SUBACK for '\(topicFilter)'")
        }
        return sub
    }

    /// Everything received so far, in arrival order.
    public var messages: [ReceivedMessage] { sinkBox.messages.value }

    /// Waits (bounded) until at least `count` messages arrived; returns all received so far.
    @discardableResult
    public func waitFor(count: Int, timeout: Duration = .seconds(10)) async -> [ReceivedMessage] {
        _ = await sinkBox.messages.wait(timeout: timeout) { $0.count >= count }
        return sinkBox.messages.value
    }

    /// Waits (bounded) until a message satisfies `predicate`; returns it, or nil on timeout.
    public func waitFor(timeout: Duration = .seconds(10),
                        where predicate: @escaping @Sendable (ReceivedMessage) -> Bool) async -> ReceivedMessage? {
        _ = await sinkBox.messages.wait(timeout: timeout) { $0.contains(where: predicate) }
        return sinkBox.messages.value.first(where: predicate)
    }

    /// Waits (bounded) until `predicate` holds for the whole list received so far (it runs under
    /// a lock: look only at its argument). Returns whether it held; e.g. all payloads present:
    /// `await sub.waitUntil { Set($0.map(\.payloadString)).isSuperset(of: expected) }`.
    public func waitUntil(timeout: Duration = .seconds(10),
                          _ predicate: @escaping @Sendable ([ReceivedMessage]) -> Bool) async -> Bool {
        await sinkBox.messages.wait(timeout: timeout, until: predicate)
    }

    /// Disconnects, joins the network thread and frees the client. Idempotent.
    public func stop() {
        let first = stopped.withLock { s in defer { s = true }; return !s }
        guard first else { return }
        mosquitto_disconnect_v5(mosq, 0, nil)
        mosquitto_loop_stop(mosq, false)  // DISCONNECT set the state to "disconnecting": the thread exits
        mosquitto_destroy(mosq)
    }

    deinit { stop() }
}
