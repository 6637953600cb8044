import IoMTCore

/// The MQTT topic layout under the configured prefix (default `iomt/<gateway-id>`).
///
/// - `<prefix>/readings/<device-id>`: one message per reading (QoS 1 or 2, not retained).
/// - `<prefix>/status`: retained gateway status: `online` with health, or `offline` (Last Will).
/// - `<prefix>/status/gaps`: gap records, one per run of lost readings of a device.
/// - `<prefix>/alerts/<patient-ref>/<rule>`: alert raises and clears (`alerts`, issue 9).
public struct Topics: Sendable, Equatable {
    public let prefix: String

    public init(prefix: String) { self.prefix = prefix }

    public var status: String { "\(prefix)/status" }
    public var gaps: String { "\(prefix)/status/gaps" }

    /// `<prefix>/alerts/<patient-ref>/<rule>`: one `iomt-alert/1` message per raise and per
    /// clear (QoS `alerts.qos`, not retained). `patientRef` is the patient as named on the wire
    /// (the pseudonym with `output.patient_pseudonym_key_file`); nil (gateway-wide alerts: buffer,
    /// broker) gives the level `_gateway`.
    public func alert(patientRef: String?, rule: String) -> String {
        "\(prefix)/alerts/\(Topics.level(patientRef ?? "_gateway"))/\(Topics.level(rule))"
    }

    public func readings(deviceID: String) -> String {
        "\(prefix)/readings/\(Topics.level(deviceID))"
    }

    /// Makes a value safe as one topic level: `/`, `+`, `#`, NUL and control characters
    /// become `_` (MQTT 5.0 §4.7: wildcards are not allowed in a topic name).
    public static func level(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "/", "+", "#": out.append("_")
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: out.append("_")
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out.isEmpty ? "_" : out
    }
}
