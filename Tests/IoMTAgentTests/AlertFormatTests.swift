import Foundation
import IoMTAlerts
import IoMTConfig
import IoMTCore
import IoMTFHIR
import IoMTRegistry
import IoMTTestSupport
import Testing
@testable import IoMTAgent

/// The alert's wire forms (iomt-alert/1 JSON against its schema, the FHIR Flag against the R4
/// models) and the alerts.json state (round trip; a damaged file names the field).
@Suite struct AlertFormatTests {
    static let t0: UInt64 = 1_750_000_000_000
    static func rid(_ n: UInt64) -> ReadingID { ReadingID(high: 0x0190_0000_0000_7000 | n, low: 0x8000_0000_0000_0000 | n) }

    static let alert = Alert(id: rid(99).description, rule: "spo2-low", kind: .clinical, severity: .high, patientID: "P-1",
                             deviceID: "ox-1", profile: "pulse-oximeter", code: .pulseOximetrySpO2, conditionSince: t0,
                             raisedAt: t0 + 15_000, readingIDs: [rid(1), rid(2)], values: [85, 84.5],
                             summary: "MDC_PULS_OXIM_SAT_O2 < 90 for 15 s (clears at 92)")
    static let gatewayAlert = Alert(id: rid(98).description, rule: "buffer-high", kind: .technical, severity: .medium,
                                    patientID: nil, deviceID: nil, profile: nil, code: nil, conditionSince: t0, raisedAt: t0,
                                    readingIDs: [], values: [81], summary: "buffer above 80 % of its bound")

    static var events: [AlertEvent] {
        [AlertEvent(phase: .raise, alert: alert, at: t0 + 15_000, readingIDs: alert.readingIDs, values: alert.values),
         AlertEvent(phase: .clear, alert: alert, at: t0 + 40_000, readingIDs: [rid(3)], values: [95]),
         AlertEvent(phase: .raise, alert: gatewayAlert, at: t0, readingIDs: [], values: [81])]
    }

    @Test func jsonPayloadsMatchTheSchema() async throws {
        let dir = try TempDir()
        var gen = ReadingIDGenerator()
        let docs = Self.events.map { e in
            String(decoding: AlertFormat.json(e, messageID: gen.next(at: Timestamp(millisecondsSinceEpoch: Int64(Self.t0))),
                                              gatewayID: "hub", patientRef: e.alert.patientID.map { "psn-\($0)" }), as: UTF8.self)
        }
        #expect(docs[0].contains(#""alert_id":"\#(Self.alert.id)""#))
        #expect(docs[1].contains(#""alert_id":"\#(Self.alert.id)""#))
        #expect(docs[1].contains(#""event":"clear""#) && docs[1].contains(#""raised_by":["#))
        #expect(docs[0].contains(#""patient_id":"psn-P-1""#))
        #expect(docs[2].contains(#""patient_id":null"#) && docs[2].contains(#""device":null"#))
        // The backlog marker the forwarder adds under live-first is allowed too.
        let marked = String(decoding: Forwarder.markBacklog(Array(docs[0].utf8)), as: UTF8.self)
        try await expectValid(docs + [marked], schema: "alert.schema.json", dir: dir)
    }

    @Test func schemaRejectsAnAlertWithoutItsId() async throws {
        let dir = try TempDir()
        var gen = ReadingIDGenerator()
        var doc = String(decoding: AlertFormat.json(Self.events[0], messageID: gen.next(at: Timestamp(millisecondsSinceEpoch: 1)),
                                                    gatewayID: "hub", patientRef: "P-1"), as: UTF8.self)
        doc = doc.replacingOccurrences(of: #""alert_id":"\#(Self.alert.id)","#, with: "")
        try doc.write(toFile: dir.file("bad.json"), atomically: true, encoding: .utf8)
        let r = try await ChildProcess.run(["\(repoRoot)/.venv/bin/python", "\(repoRoot)/scripts/validate_json.py",
                                            "\(repoRoot)/schemas/alert.schema.json", dir.file("bad.json")])
        #expect(r.status != 0)
    }

    @Test func fhirFlagIsValidR4AndTracksRaiseAndClear() async throws {
        let dir = try TempDir()
        var gen = ReadingIDGenerator()
        let flags = Self.events.prefix(2).map { e in
            String(decoding: AlertFormat.fhirFlag(e, messageID: gen.next(at: Timestamp(millisecondsSinceEpoch: 1)), gatewayID: "hub",
                                                  patientRef: "P-1", options: FHIROptions()), as: UTF8.self)
        }
        #expect(flags[0].contains(#""status":"active""#) && !flags[0].contains(#""end""#))
        #expect(flags[1].contains(#""status":"inactive""#) && flags[1].contains(#""end":"#))
        #expect(flags.allSatisfy { $0.contains(Self.alert.id) })
        try await expectValidFHIR(flags, dir: dir)
    }

    @Test func stateRoundTrips() throws {
        let bytes = AlertFormat.stateJSON([Self.alert, Self.gatewayAlert])
        #expect(try AlertFormat.parseState(bytes) == [Self.alert, Self.gatewayAlert])
    }

    @Test func damagedStateNamesTheField() throws {
        var doc = AlertFormat.stateValue(Self.alert)
        if case .object(var members) = doc {
            members.removeAll { $0.key == "raised_at" }
            doc = .object(members)
        }
        do {
            _ = try AlertFormat.parseState(JSONValue.array([doc]).bytes)
            Issue.record("a state without raised_at parsed")
        } catch {
            #expect("\(error)".contains("[0].raised_at"))
        }
        let truncated = Array(AlertFormat.stateJSON([Self.alert]).dropLast(10))
        #expect(throws: (any Error).self) { try AlertFormat.parseState(truncated) }
    }

    @Test func topicIsPerPatientAndRuleWithAGatewayLevel() {
        let t = Topics(prefix: "iomt/hub")
        #expect(t.alert(patientRef: "psn-ab", rule: "spo2-low") == "iomt/hub/alerts/psn-ab/spo2-low")
        #expect(t.alert(patientRef: nil, rule: "buffer-high") == "iomt/hub/alerts/_gateway/buffer-high")
        #expect(t.alert(patientRef: "a/b+#", rule: "x") == "iomt/hub/alerts/a_b__/x")
    }

    @Test func configuredRulesReplaceDefaultsOfTheSameNameAndScope() {
        var c = IoMTConfig.AgentConfig.Alerts(enabled: true, useDefaults: true)
        c.rules = [.init(name: "spo2-low", condition: .threshold(code: .pulseOximetrySpO2, direction: "below", raise: 88, clear: 91))]
        let rules = AlertRules.from(c)
        #expect(rules.filter { $0.name == "spo2-low" }.count == 1)
        #expect(rules.first { $0.name == "spo2-low" }?.condition == .threshold(code: .pulseOximetrySpO2, direction: .below, raise: 88, clear: 91))
        #expect(rules.count == AlertRule.defaults.count)
    }
}
