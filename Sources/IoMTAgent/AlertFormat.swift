import IoMTAlerts
import IoMTCore
import IoMTFHIR
import IoMTRegistry

/// The wire and state forms of alerts.
public enum AlertFormat {
    static func time(_ ms: UInt64) -> String { Timestamp(millisecondsSinceEpoch: Int64(clamping: ms)).rfc3339 }

    /// `iomt-alert/1` (`schemas/alert.schema.json`). `patientRef` is the patient as named on the
    /// wire (pseudonym or id), nil for gateway-wide alerts.
    public static func json(_ e: AlertEvent, messageID: ReadingID, gatewayID: String, patientRef: String?) -> [UInt8] {
        let a = e.alert
        var w = JSONWriter(capacity: 512 + e.readingIDs.count * 40)
        w.beginObject()
        w.field("schema", AlertService.schema)
        w.field("id", messageID.description)
        w.field("alert_id", a.id)
        w.field("event", e.phase.rawValue)
        w.field("gateway_id", gatewayID)
        w.field("rule", a.rule)
        w.field("kind", a.kind.rawValue)
        w.field("severity", a.severity.rawValue)
        w.field("patient_id", patientRef)
        w.key("device")
        if let device = a.deviceID {
            w.beginObject()
            w.field("id", device)
            w.field("profile", a.profile)
            w.endObject()
        } else {
            w.null()
        }
        w.key("code")
        if let code = a.code {
            w.beginObject()
            w.field("mdc_code", UInt64(code.rawValue))
            w.field("mdc_ref_id", code.referenceID)
            w.endObject()
        } else {
            w.null()
        }
        w.field("condition_since", time(a.conditionSince))
        w.field("raised_at", time(a.raisedAt))
        w.field("at", time(e.at))
        w.key("reading_ids")
        w.beginArray()
        for id in e.readingIDs { w.string(id.description) }
        w.endArray()
        w.key("values")
        w.beginArray()
        for v in e.values { w.number(v) }
        w.endArray()
        if e.phase == .clear {
            w.key("raised_by")
            w.beginArray()
            for id in a.readingIDs { w.string(id.description) }
            w.endArray()
        }
        w.field("summary", a.summary)
        w.endObject()
        return w.bytes
    }

    public static let alertIdentifierSystem = "urn:iomt-agent:alert-id"
    public static let ruleSystem = "urn:iomt-agent:alert-rule"
    public static let triggerExtension = "https://iomt-agent.example/fhir/StructureDefinition/alert-trigger-reading"

    /// The FHIR R4 form (`output.format: fhir`) of a patient alert: a `Flag`.
    ///
    /// Why Flag: an alert is a warning about a patient with a lifecycle, and Flag is exactly
    /// that: `status` active at raise, inactive at clear, `period.start`/`period.end` the raise
    /// and clear times, one `identifier` (the alert id) shared by both, so a consumer updates one
    /// resource. DetectedIssue is about problems with clinical actions (interactions, duplicate
    /// therapy) and Observation.interpretation would restate the reading without raise/clear.
    /// The triggering readings are extensions holding the observation identifiers the reading
    /// Bundles use (`<reading id>-0`). Gateway-wide alerts (buffer, broker) have no patient,
    /// which Flag.subject requires, so they stay `iomt-alert/1` JSON.
    public static func fhirFlag(_ e: AlertEvent, messageID: ReadingID, gatewayID: String, patientRef: String?,
                                options: FHIROptions) -> [UInt8] {
        let a = e.alert
        var w = JSONWriter(capacity: 1024)
        w.beginObject()
        w.field("resourceType", "Flag")
        w.key("extension")
        w.beginArray()
        for id in (e.phase == .raise ? e.readingIDs : a.readingIDs) {
            w.beginObject()
            w.field("url", triggerExtension)
            w.key("valueIdentifier")
            w.beginObject()
            w.field("system", options.observationIdentifierSystem)
            w.field("value", "\(id.description)-0")
            w.endObject()
            w.endObject()
        }
        w.endArray()
        w.key("identifier")
        w.beginArray()
        w.beginObject()
        w.field("system", alertIdentifierSystem)
        w.field("value", a.id)
        w.endObject()
        w.endArray()
        w.field("status", e.phase == .raise ? "active" : "inactive")
        w.key("category")
        w.beginArray()
        w.beginObject()
        w.key("coding")
        w.beginArray()
        w.beginObject()
        w.field("system", "http://terminology.hl7.org/CodeSystem/flag-category")
        w.field("code", a.kind == .clinical ? "clinical" : "safety")
        w.endObject()
        w.endArray()
        w.endObject()
        w.endArray()
        w.key("code")
        w.beginObject()
        w.key("coding")
        w.beginArray()
        w.beginObject()
        w.field("system", ruleSystem)
        w.field("code", a.rule)
        w.endObject()
        if let code = a.code {
            w.beginObject()
            w.field("system", FHIRFormat.mdcSystem)
            w.field("code", String(code.rawValue))
            w.field("display", code.referenceID)
            w.endObject()
        }
        w.endArray()
        w.field("text", "\(a.severity.rawValue): \(a.summary)")
        w.endObject()
        w.key("subject")
        w.beginObject()
        w.key("identifier")
        w.beginObject()
        w.field("system", options.patientIdentifierSystem)
        w.field("value", patientRef ?? "")
        w.endObject()
        w.endObject()
        w.key("period")
        w.beginObject()
        w.field("start", time(a.raisedAt))
        if e.phase == .clear { w.field("end", time(e.at)) }
        w.endObject()
        if let device = a.deviceID {
            w.key("author")
            w.beginObject()
            w.key("identifier")
            w.beginObject()
            w.field("system", options.deviceIdentifierSystem)
            w.field("value", device)
            w.endObject()
            w.endObject()
        }
        w.endObject()
        return w.bytes
    }

    // MARK: state_dir/alerts.json

    /// The active alerts, with the real patient ids (the file stays on the hub, 0600).
    static func stateJSON(_ alerts: [Alert]) -> [UInt8] {
        JSONValue.array(alerts.map(stateValue)).bytes
    }

    static func stateValue(_ a: Alert) -> JSONValue {
        .obj([
            "id": .string(a.id), "rule": .string(a.rule), "kind": .string(a.kind.rawValue),
            "severity": .string(a.severity.rawValue), "patient_id": .opt(a.patientID), "device_id": .opt(a.deviceID),
            "profile": .opt(a.profile), "code": a.code.map { .int(Int64($0.rawValue)) } ?? .null,
            "condition_since": .int(Int64(clamping: a.conditionSince)), "raised_at": .int(Int64(clamping: a.raisedAt)),
            "reading_ids": .array(a.readingIDs.map { .string($0.description) }),
            "values": .array(a.values.map { .double($0) }), "summary": .string(a.summary),
        ])
    }

    struct StateError: Error, CustomStringConvertible {
        var field: String
        var description: String { "alerts.json: \(field) missing or of the wrong type" }
    }

    static func parseState(_ bytes: [UInt8]) throws -> [Alert] {
        let doc = try JSONValue.parse(bytes)
        guard let items = doc.arrayValue else { throw StateError(field: "the top-level list") }
        return try items.enumerated().map { (i, v) throws -> Alert in
            func text(_ k: String) throws -> String {
                guard let s = v[k]?.stringValue else { throw StateError(field: "[\(i)].\(k)") }
                return s
            }
            func ms(_ k: String) throws -> UInt64 {
                guard let n = v[k]?.intValue, n >= 0 else { throw StateError(field: "[\(i)].\(k)") }
                return UInt64(n)
            }
            let ids = try (v["reading_ids"]?.arrayValue ?? []).map { x throws -> ReadingID in
                guard let s = x.stringValue, let id = ReadingID(s) else { throw StateError(field: "[\(i)].reading_ids") }
                return id
            }
            return Alert(id: try text("id"), rule: try text("rule"), kind: AlertKind(rawValue: try text("kind")),
                         severity: AlertSeverity(rawValue: try text("severity")), patientID: v["patient_id"]?.stringValue,
                         deviceID: v["device_id"]?.stringValue, profile: v["profile"]?.stringValue,
                         code: v["code"]?.intValue.flatMap { UInt32(exactly: $0) }.map { MDCCode(rawValue: $0) },
                         conditionSince: try ms("condition_since"), raisedAt: try ms("raised_at"), readingIDs: ids,
                         values: (v["values"]?.arrayValue ?? []).compactMap(\.doubleValue), summary: (try? text("summary")) ?? "")
        }
    }

    /// The `alerts` control command's answer.
    public static func listJSON(_ alerts: [Alert], patientReference: (String) -> String) -> JSONValue {
        .obj(["alerts": .array(alerts.map { a in
            .obj([
                "alert_id": .string(a.id), "rule": .string(a.rule), "kind": .string(a.kind.rawValue),
                "severity": .string(a.severity.rawValue), "patient": .opt(a.patientID.map(patientReference)),
                "device_id": .opt(a.deviceID), "raised_at": .string(time(a.raisedAt)),
                "condition_since": .string(time(a.conditionSince)), "summary": .string(a.summary),
                "values": .array(a.values.map { .double($0) }),
            ])
        })])
    }
}
