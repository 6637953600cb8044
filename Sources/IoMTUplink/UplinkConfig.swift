/// One broker endpoint, parsed from `mqtt://host:port` or `mqtts://host:port`.
public struct BrokerAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// `true` for `mqtts://`: TLS (minimum TLS 1.2, server certificate and host name verified).
    public var tls: Bool

    public init(host: String, port: Int, tls: Bool) {
        self.host = host
        self.port = port
        self.tls = tls
    }

    /// Parses `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]` (default 8883).
    /// An IPv6 literal is written in brackets: `mqtt://[::1]:1883`.
    public init(parsing url: String) throws(UplinkError) {
        let tls: Bool
        let rest: Substring
        if url.hasPrefix("mqtts://") {
            tls = true
            rest = url.dropFirst("mqtts://".count)
        } else if url.hasPrefix("mqtt://") {
            tls = false
            rest = url.dropFirst("mqtt://".count)
        } else {
            throw .invalidConfiguration("broker URL '\(url)' must start with mqtt:// or mqtts://")
        }
        var hostPart = rest
        var portPart: Substring? = nil
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                throw .invalidConfiguration("broker URL '\(url)': unterminated IPv6 literal")
            }
            hostPart = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") { portPart = after.dropFirst() } else if !after.isEmpty {
                throw .invalidConfiguration("broker URL '\(url)': unexpected '\(after)' after the host")
            }
        } else if let colon = rest.lastIndex(of: ":") {
            hostPart = rest[..<colon]
            portPart = rest[rest.index(after: colon)...]
        }
        if hostPart.hasSuffix("/") { hostPart = hostPart.dropLast() }
        if let p = portPart, p.hasSuffix("/") { portPart = p.dropLast() }
        guard !hostPart.isEmpty, !hostPart.contains("/") else {
            throw .invalidConfiguration("broker URL '\(url)': missing or invalid host (expected mqtt://host:port)")
        }
        var port = tls ? 8883 : 1883
        if let p = portPart {
            guard let n = Int(p), (1...65535).contains(n) else {
                throw .invalidConfiguration("broker URL '\(url)': port must be 1...65535")
            }
            port = n
        }
        self.init(host: String(hostPart), port: port, tls: tls)
    }

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(tls ? "mqtts" : "mqtt")://\(h):\(port)"
    }
}

/// MQTT protocol version spoken on the wire.
public enum MQTTProtocolVersion: Sendable, Hashable {
    /// MQTT 5.0 (default): reason codes on acknowledgements, user properties, session expiry.
    case v5
    /// MQTT 3.1.1: no reason codes (a refusal cannot be signalled except by disconnecting),
    /// no user properties (they are silently not sent), no session expiry interval.
    case v311
}

public enum MQTTQoS: Int32, Sendable, Hashable {
    case atMostOnce = 0
    case atLeastOnce = 1
    case exactlyOnce = 2
}

/// The Last Will (MQTT 5.0 §3.1.2.5, §3.1.3.2; MQTT 3.1.1 §3.1.2.5): published by the broker
/// when the connection ends without a normal DISCONNECT (network loss, keepalive expiry, crash).
/// A clean ``MQTTClient/stop()`` sends DISCONNECT with reason 0x00, which makes the broker
/// discard the Will (MQTT 5.0 §3.14.4; 3.1.1 §3.14.4): publish an explicit final status first.
public struct LastWill: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: MQTTQoS
    public var retain: Bool

    public init(topic: String, payload: [UInt8], qos: MQTTQoS = .atLeastOnce, retain: Bool = true) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }
}

/// Configuration of an ``MQTTClient``.
public struct UplinkConfig: Sendable {
    /// Cluster nodes, tried round-robin on failure. All must use the same scheme (all `mqtt://` or
    /// all `mqtts://`): libmosquitto configures TLS per client instance, not per host.
    public var brokers: [BrokerAddress]
    /// Client identifier (MQTT 5.0 §3.1.3.1). Must be stable and unique per gateway: the persistent
    /// session is keyed by it.
    public var clientID: String
    public var protocolVersion: MQTTProtocolVersion
    public var username: String?
    /// The password (the caller reads it from a file; it is never logged).
    public var password: String?
    /// PEM CA bundle used to verify the broker certificate (`mqtts://`). `nil`: the system default
    /// trust store.
    public var caFile: String?
    /// PEM client certificate and key for mutual TLS (both or neither).
    public var certFile: String?
    public var keyFile: String?
    /// Keepalive in seconds (MQTT 5.0 §3.1.2.10); 0 or 5...65535.
    public var keepalive: Int32
    /// MQTT 5 Session Expiry Interval in seconds (MQTT 5.0 §3.1.2.11.2). Must be > 0 for the
    /// broker to keep the session (and its QoS 2 state) across a connection loss. Ignored by 3.1.1,
    /// where a session with Clean Session 0 lasts until it is cleaned.
    public var sessionExpiry: UInt32
    /// Reconnect backoff: the n-th consecutive failure waits a uniformly random time in
    /// `reconnectMinDelay ... min(reconnectMaxDelay, reconnectMinDelay * 2^n)` ("full jitter").
    public var reconnectMinDelay: Duration
    public var reconnectMaxDelay: Duration
    /// Upper bound for TCP connect + TLS handshake + CONNACK.
    public var connectTimeout: Duration
    public var will: LastWill?
    /// Deliver successful acknowledgements as ``MQTTEvent/acknowledgedBatch(mids:)`` (one event
    /// per loop turn) instead of one event each. Off by default.
    public var batchAcknowledgements = false
    /// How long one turn of the MQTT thread waits when nothing happens on a live connection;
    /// between turns it runs libmosquitto's keepalive bookkeeping (`mosquitto_loop_misc`).
    /// Internal: a test raises it so that a publish that failed to wake the thread would wait
    /// for the test's own timeout instead of a second.
    var idleTurnMilliseconds: Int32 = 1000

    public init(brokers: [BrokerAddress], clientID: String, protocolVersion: MQTTProtocolVersion = .v5,
                username: String? = nil, password: String? = nil,
                caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil,
                keepalive: Int32 = 30, sessionExpiry: UInt32 = 3600,
                reconnectMinDelay: Duration = .milliseconds(500), reconnectMaxDelay: Duration = .seconds(30),
                connectTimeout: Duration = .seconds(10), will: LastWill? = nil) {
        self.brokers = brokers
        self.clientID = clientID
        self.protocolVersion = protocolVersion
        self.username = username
        self.password = password
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.keepalive = keepalive
        self.sessionExpiry = sessionExpiry
        self.reconnectMinDelay = reconnectMinDelay
        self.reconnectMaxDelay = reconnectMaxDelay
        self.connectTimeout = connectTimeout
        self.will = will
    }

    /// Convenience: parses each URL with ``BrokerAddress/init(parsing:)``.
    public init(brokerURLs: [String], clientID: String) throws(UplinkError) {
        var list: [BrokerAddress] = []
        for u in brokerURLs { list.append(try BrokerAddress(parsing: u)) }
        self.init(brokers: list, clientID: clientID)
    }

    func validate() throws(UplinkError) {
        guard let first = brokers.first else { throw .invalidConfiguration("no broker configured") }
        if brokers.contains(where: { $0.tls != first.tls }) {
            throw .invalidConfiguration("brokers mix mqtt:// and mqtts://; use one scheme for the whole cluster")
        }
        if clientID.isEmpty || clientID.utf8.count > 65535 {
            throw .invalidConfiguration("clientID must be non-empty (it keys the persistent session)")
        }
        if keepalive != 0 && !(5...65535).contains(keepalive) {
            throw .invalidConfiguration("keepalive must be 0 or 5...65535 seconds")
        }
        if (certFile == nil) != (keyFile == nil) {
            throw .invalidConfiguration("certFile and keyFile must be given together for mutual TLS")
        }
        if !first.tls && (caFile != nil || certFile != nil) {
            throw .invalidConfiguration("caFile/certFile given but brokers use mqtt://; use mqtts://")
        }
        if reconnectMinDelay <= .zero || reconnectMaxDelay < reconnectMinDelay {
            throw .invalidConfiguration("need 0 < reconnectMinDelay <= reconnectMaxDelay")
        }
        if let w = will, w.topic.isEmpty { throw .invalidConfiguration("Last Will topic is empty") }
    }
}

extension UplinkConfig: CustomStringConvertible, CustomDebugStringConvertible {
    /// For logs: never contains the password.
    public var description: String {
        "UplinkConfig(brokers: \(brokers.map(\.description)), clientID: \(clientID), protocol: \(protocolVersion), "
            + "username: \(username ?? "-"), password: \(password == nil ? "-" : "<redacted>"), caFile: \(caFile ?? "-"), "
            + "certFile: \(certFile ?? "-"), keepalive: \(keepalive)s, sessionExpiry: \(sessionExpiry)s, "
            + "reconnect: \(reconnectMinDelay)...\(reconnectMaxDelay), will: \(will?.topic ?? "-"))"
    }
    public var debugDescription: String { description }
}
