/// Why a connection attempt, a connection or a publish failed. Every message names the broker
/// (when there is one) and the likely fix. Connection errors are delivered as
/// ``MQTTEvent/connectionFailed(broker:error:)`` / ``MQTTEvent/disconnected(error:)`` and the
/// client keeps retrying with backoff; nothing queued is dropped.
public enum UplinkError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalidConfiguration(String)
    /// TCP connection refused (nothing listening on that port).
    case connectionRefused(broker: BrokerAddress)
    /// The host name did not resolve.
    case dnsFailure(broker: BrokerAddress, detail: String)
    /// Other network error (unreachable, reset, timeout), with the OS error text.
    case network(broker: BrokerAddress, detail: String)
    /// No CONNACK within the connect timeout.
    case connectTimeout(broker: BrokerAddress)
    /// Bad user name or password: CONNACK 0x86 (MQTT 5.0 §3.2.2.2) or return code 4 (3.1.1 §3.2.2.3).
    case badCredentials(broker: BrokerAddress)
    /// Not authorized: CONNACK 0x87 (MQTT 5.0) or return code 5 (3.1.1).
    case notAuthorized(broker: BrokerAddress)
    /// Other CONNACK refusal (reason code >= 0x80, or 3.1.1 return codes 1-3).
    case connectRefusedByBroker(broker: BrokerAddress, reasonCode: Int32, reason: String)
    /// The server certificate's name does not match the host we connected to.
    case tlsHostnameMismatch(broker: BrokerAddress)
    /// The server certificate is not signed by a CA in `caFile` (or the chain is incomplete).
    case tlsUnknownCA(broker: BrokerAddress)
    /// The server certificate has expired or is not yet valid.
    case tlsCertificateExpired(broker: BrokerAddress)
    /// The broker rejected our client certificate (mutual TLS): none given, or not signed by a CA
    /// the broker trusts (TLS alerts "certificate required", "bad certificate", "unknown ca").
    case tlsClientCertificateRejected(broker: BrokerAddress, detail: String)
    /// Other TLS failure (handshake, protocol version, client certificate rejected), with OpenSSL's text.
    case tls(broker: BrokerAddress, detail: String)
    /// ``MQTTClient/reloadCredentials(password:)`` refused the CA, certificate or key file (missing,
    /// unreadable, a key others can read, not loadable by OpenSSL, key not matching the
    /// certificate). Nothing was changed: the previous settings and connection stay in use.
    case tlsFilesRefused(detail: String)
    /// MQTT protocol error (malformed packet, unexpected packet, broker disconnect with a reason).
    case protocolError(broker: BrokerAddress?, detail: String)
    /// The connection was lost (broker went away, keepalive expired).
    case connectionLost(broker: BrokerAddress, detail: String)
    /// `publish` called after `stop()`, or before `start()`.
    case notRunning
    /// `publish` rejected locally by libmosquitto (invalid topic, payload too large, QoS above the
    /// broker's Maximum QoS, out of memory).
    case publishRejected(detail: String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let s):
            return "invalid MQTT uplink configuration: \(s)"
        case .connectionRefused(let b):
            return "\(b): connection refused; is the broker running and listening on port \(b.port)? Check the host and port."
        case .dnsFailure(let b, let d):
            return "\(b): cannot resolve host '\(b.host)' (\(d)); check the broker host name and DNS."
        case .network(let b, let d):
            return "\(b): network error: \(d); check connectivity and firewall."
        case .connectTimeout(let b):
            return "\(b): no CONNACK within the connect timeout; check the port (TLS vs plain) and firewall."
        case .badCredentials(let b):
            return "\(b): bad user name or password (CONNACK 0x86 / rc 4); fix the username and password file."
        case .notAuthorized(let b):
            return "\(b): not authorized (CONNACK 0x87 / rc 5); give this client id / user access in the broker's ACL or password file."
        case .connectRefusedByBroker(let b, let rc, let r):
            return "\(b): broker refused the connection: \(r) (reason code 0x\(String(rc, radix: 16)))."
        case .tlsHostnameMismatch(let b):
            return "\(b): TLS host name verification failed: the broker certificate is not issued for '\(b.host)'; connect using a name in its subjectAltName or reissue the certificate."
        case .tlsUnknownCA(let b):
            return "\(b): TLS certificate verification failed: the broker certificate is not signed by a CA in caFile; configure the right CA bundle."
        case .tlsCertificateExpired(let b):
            return "\(b): TLS certificate verification failed: the broker certificate has expired or is not yet valid; renew it (and check the gateway clock)."
        case .tlsClientCertificateRejected(let b, let d):
            return "\(b): the broker rejected the client certificate (\(d)); configure certFile/keyFile with a certificate issued by the broker's client CA."
        case .tls(let b, let d):
            return "\(b): TLS failure: \(d); check caFile/certFile/keyFile, that the port speaks TLS, and that the broker accepts TLS 1.2+."
        case .tlsFilesRefused(let d):
            return "TLS files not reloaded: \(d); the previous TLS settings stay in use."
        case .protocolError(let b, let d):
            return "\(b.map { "\($0)" } ?? "MQTT"): protocol error: \(d)."
        case .connectionLost(let b, let d):
            return "\(b): connection lost: \(d); reconnecting."
        case .notRunning:
            return "MQTT uplink is not running (publish before start() or after stop())."
        case .publishRejected(let d):
            return "publish rejected: \(d)."
        }
    }
}

/// What happened to the uplink. Delivered in order on ``MQTTClient/events``.
public enum MQTTEvent: Sendable, Hashable {
    /// CONNACK with reason 0x00 received. `sessionPresent` is the Session Present flag
    /// (MQTT 5.0 §3.2.2.1.1; 3.1.1 §3.2.2.2). `false` on a *reconnect* means the broker lost our
    /// session (restart without persistence, session expired, a node not sharing sessions):
    /// libmosquitto still retransmits everything unacknowledged, but a QoS 2 message the broker had
    /// already answered with PUBREC may have been discarded with that session, and the broker will
    /// nevertheless answer our retransmitted PUBREL with PUBCOMP. The forwarder should therefore
    /// republish every message still unacknowledged when it sees `sessionPresent == false` on a
    /// reconnect (duplicates carry the same reading id and are recognisable).
    case connected(broker: BrokerAddress, sessionPresent: Bool)
    /// A connection attempt failed; the client retries (next broker, with backoff).
    case connectionFailed(broker: BrokerAddress, error: UplinkError)
    /// An established connection ended. `error == nil` only for our own clean DISCONNECT: that of
    /// `stop()`, or the one before reconnecting with reloaded credentials
    /// (``MQTTClient/reloadCredentials(password:)``), which a `connected` event follows.
    case disconnected(error: UplinkError?)
    /// The broker took responsibility for the message: PUBACK (QoS 1) or PUBCOMP (QoS 2) with a
    /// reason code < 0x80 (0x00 Success, 0x10 No matching subscribers; MQTT 5.0 §3.4.2.1, §3.7.2.1).
    /// Under MQTT 3.1.1 the reason code is always 0.
    case acknowledged(mid: Int32, reasonCode: Int32)
    /// Several successful acknowledgements read in one loop turn, in order; emitted instead of
    /// ``acknowledged(mid:reasonCode:)`` when ``UplinkConfig/batchAcknowledgements`` is on, so
    /// a draining consumer pays one hand-off per batch, not per message.
    case acknowledgedBatch(mids: [Int32])
    /// The broker REFUSED the message: PUBACK / PUBREC / PUBCOMP with a reason code >= 0x80
    /// (e.g. 0x87 Not authorized, 0x90 Topic Name invalid, 0x97 Quota exceeded, 0x92 Packet
    /// Identifier not found). The message was NOT delivered; libmosquitto has forgotten it.
    case refused(mid: Int32, reason: RefusalReason)
    /// Messages of ``MQTTClient/submit(_:)`` acknowledged with success (PUBACK / PUBCOMP with a
    /// reason code < 0x80), by their tags, in the order the acknowledgements were read (one event
    /// per loop turn).
    case delivered(tags: [UInt64])
    /// A message of ``MQTTClient/submit(_:)`` that was not delivered: the broker refused it
    /// (reason code >= 0x80), or libmosquitto would not queue it (0x83). It left the outbox.
    case outboxRefused(tag: UInt64, reason: RefusalReason)
}

/// A negative acknowledgement reason code (MQTT 5.0 §2.4, table 2-6).
public struct RefusalReason: Sendable, Hashable, CustomStringConvertible {
    public var code: Int32
    public init(code: Int32) { self.code = code }
    public static let unspecifiedError = RefusalReason(code: 0x80)
    public static let implementationSpecificError = RefusalReason(code: 0x83)
    public static let notAuthorized = RefusalReason(code: 0x87)
    public static let topicNameInvalid = RefusalReason(code: 0x90)
    public static let packetIdentifierInUse = RefusalReason(code: 0x91)
    public static let packetIdentifierNotFound = RefusalReason(code: 0x92)
    public static let quotaExceeded = RefusalReason(code: 0x97)
    public static let payloadFormatInvalid = RefusalReason(code: 0x99)
    public var description: String {
        switch code {
        case 0x80: return "unspecified error (0x80)"
        case 0x83: return "implementation specific error (0x83)"
        case 0x87: return "not authorized (0x87)"
        case 0x90: return "topic name invalid (0x90)"
        case 0x91: return "packet identifier in use (0x91)"
        case 0x92: return "packet identifier not found (0x92)"
        case 0x97: return "quota exceeded (0x97)"
        case 0x99: return "payload format invalid (0x99)"
        default: return "reason code 0x\(String(code, radix: 16))"
        }
    }
}
