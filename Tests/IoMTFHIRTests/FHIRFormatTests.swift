import Foundation
import IoMTCore
import IoMTFHIR
import IoMTHealthProfiles
import IoMTTestSupport
import Testing

/// The repository root, from this file's path (Tests/IoMTFHIRTests/FHIRFormatTests.swift), as in
/// Tests/IoMTAgentTests/Harness.swift.
let repoRoot: String = {
    if let root = ProcessInfo.processInfo.environment["IOMT_REPO_ROOT"] { return root }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
}()

func hex(_ s: String) -> [UInt8] { s.split(separator: " ").map { UInt8($0, radix: 16)! } }

/// A deterministic RNG so reading ids are reproducible.
struct FixedRNG: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 { state &+= 0x9E37_79B9_7F4A_7C15; return state ^ (state >> 29) }
}

struct Sample: Sendable {
    var name: String
    var reading: Reading
}

/// One reading per profile, decoded from the reference's golden bytes (empty if decoding
/// failed: `samplesDecoded` then fails).
let samples: [Sample] = (try? makeSamples()) ?? []

func makeSamples() throws -> [Sample] {
    var gen = ReadingIDGenerator()
    var rng = FixedRNG(state: 42)
    let received = Timestamp(rfc3339: "2024-11-29T22:09:00.250Z")!
    var seq: UInt64 = 0
    func make(_ name: String, _ profile: String, _ m: DecodedMeasurement, patient: String = "P-001",
              clock: DeviceClockState = .setByGateway) -> Sample {
        seq += 1
        let (t, q) = resolveMeasurementTime(m.deviceTime, receivedAt: received, clock: clock, gatewayUTCOffsetMinutes: 60)
        let body = DeviceReading(device: DeviceRef(id: "sysid-DEBC9AFEFF563412", profile: profile, transport: .ble),
                                 patientID: patient, measuredAt: t, receivedAt: received, timeQuality: q,
                                 observations: m.observations)
        return Sample(name: name, reading: Reading(id: gen.next(at: received, using: &rng), gatewayID: "gw-ward-3",
                                                   sequence: seq, body: body))
    }
    do {
        let cgm = try CGMMeasurement.decode(hex("06 00 0C 10 06 00"))[0]
        let ghs = try GenericHealthSensor.decode(hex("FF 2F 00 42 00 22 72 9D 2B 29 00 00 06 00 01 3C 4C 02 00 02 01 0C 00 01 00 B8 4B 02 00 20 02 62 00 00 00 01 0C 00 01 00 1A 48 02 00 A0 0A 62 00 00 00")).observation
        let ghsUnknownUnit = try GenericHealthSensor.decode(hex("01 0E 00 09 00 1A 48 02 00 00 00 FF 0F 62 00 00 00")).observation
        let advert = AdvertisementProfile(name: "t", source: .manufacturerData(companyID: 0x59), fields: [
            .init(name: "temperature", offset: 0, encoding: .sfloat, code: .bodyTemperature, unit: .celsius)])
        return [
            make("heart rate + RR", "heart-rate", try HeartRateMeasurement.decode(hex("16 48 00 04 A4 03")).normalized, clock: .unknown),
            make("heart rate without contact", "heart-rate", try HeartRateMeasurement.decode(hex("04 FF")).normalized),
            make("temperature", "thermometer", try TemperatureMeasurement.decode(hex("06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04")).normalized),
            make("temperature F", "thermometer", try TemperatureMeasurement.decode(hex("01 C9 03 00 FF")).normalized),
            make("temperature NaN", "thermometer", try TemperatureMeasurement.decode(hex("00 FF FF 7F 00")).normalized),
            make("temperature +INF", "thermometer", try TemperatureMeasurement.decode(hex("00 FE FF 7F 00")).normalized),
            make("temperature -INF", "thermometer", try TemperatureMeasurement.decode(hex("00 02 00 80 00")).normalized),
            make("temperature NRes", "thermometer", try TemperatureMeasurement.decode(hex("00 00 00 80 00")).normalized),
            make("blood pressure mmHg", "blood-pressure", try BloodPressureMeasurement.decode(hex("1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00")).normalized),
            make("blood pressure kPa", "blood-pressure", try BloodPressureMeasurement.decode(hex("15 BD F0 0B 00 9F F0 3C 00 12 00")).normalized),
            make("blood pressure kPa→mmHg", "blood-pressure", UnitConversion.apply([.millimetreMercury],
                 to: try BloodPressureMeasurement.decode(hex("15 BD F0 0B 00 9F F0 3C 00 12 00")).normalized)),
            make("cuff pressure", "blood-pressure", try BloodPressureMeasurement.decode(hex("00 96 00 FF 07 FF 07")).normalizedAsIntermediateCuffPressure),
            make("blood pressure NaN diastolic", "blood-pressure", try BloodPressureMeasurement.decode(hex("00 96 00 FF 07 FF 07")).normalized),
            make("spo2 spot-check", "pulse-oximeter", try PLXSpotCheckMeasurement.decode(hex("0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3")).normalized),
            make("spo2 continuous", "pulse-oximeter", try PLXContinuousMeasurement.decode(hex("1F DE F3 CA F3 CA F3 5A F5 D4 F3 B2 F2 20 01 00 00 00 7A E3")).normalized),
            make("spo2 invalid", "pulse-oximeter", try PLXContinuousMeasurement.decode(hex("04 5F 00 5A 00 00 80")).normalized),
            make("spo2 unavailable", "pulse-oximeter", try PLXContinuousMeasurement.decode(hex("04 5F 00 5A 00 00 20")).normalized),
            make("weight SI", "weight-scale", try WeightMeasurement.decode(hex("0C 14 37 01 E6 00 D6 06")).normalized),
            make("weight lb", "weight-scale", try WeightMeasurement.decode(hex("01 48 3C")).normalized),
            make("body composition", "body-composition", try BodyCompositionMeasurement.decode(hex("04 0C FD 00 02 14 37 D6 06")).normalized),
            make("glucose mg/dL", "glucose", try GlucoseMeasurement.decode(hex("0A 2A 00 E8 07 03 0F 08 1E 00 78 B0 11 00 00")).normalized),
            make("glucose mmol/L", "glucose", try GlucoseMeasurement.decode(hex("06 2A 00 E8 07 03 0F 08 1E 00 41 C0 11")).normalized),
            make("glucose out of range", "glucose", try GlucoseMeasurement.decode(hex("1B 01 00 E3 07 02 1B 0B 0A 1E FB FF 1E 00 12 05 01")).normalized),
            make("cgm", "cgm", cgm.normalized(sessionStart: try CGMSessionStartTime.decode(hex("E8 07 03 0F 08 00 00 04 00")))),
            make("ghs bundle", "generic-health-sensor", GenericHealthSensor.normalized(ghs)),
            make("ghs unknown unit", "generic-health-sensor", GenericHealthSensor.normalized(ghsUnknownUnit)),
            make("battery", "device-status", DecodedMeasurement(observations: [try DeviceStatus.decodeBatteryLevel([87]).battery])),
            make("advert NaN", "advert-thermometer", try advert.decode(manufacturerData: [0x59: hex("FF 07")])!),
            make("odd patient id", "thermometer", try TemperatureMeasurement.decode(hex("00 6D 01 00 FF")).normalized,
                 patient: "P 1|x&y=ü"),
            make("empty", "thermometer", DecodedMeasurement()),
        ]
    }
}

func render(_ r: Reading, _ options: FHIROptions = FHIROptions()) throws -> [String: Any] {
    let bytes = FHIRFormat.json(r, options: options)
    return try #require(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

func resources(_ bundle: [String: Any]) -> [[String: Any]] {
    ((bundle["entry"] as? [[String: Any]]) ?? []).compactMap { $0["resource"] as? [String: Any] }
}

func codings(_ concept: Any?) -> [(String, String)] {
    ((concept as? [String: Any])?["coding"] as? [[String: Any]] ?? []).map { ($0["system"] as? String ?? "", $0["code"] as? String ?? "") }
}

func sample(_ name: String) throws -> Reading { try #require(samples.first { $0.name == name }).reading }

@Suite struct FHIRFormatTests {
    @Test func samplesDecoded() throws {
        _ = try makeSamples()
        #expect(samples.count == 30)
    }

    @Test func bundleIsATransactionOfConditionalCreates() throws {
        let r = try sample("spo2 spot-check")
        let b = try render(r)
        #expect(b["resourceType"] as? String == "Bundle" && b["type"] as? String == "transaction")
        #expect((b["identifier"] as? [String: Any])?["value"] as? String == "urn:uuid:\(r.id)")
        let entries = try #require(b["entry"] as? [[String: Any]])
        #expect(entries.count == 3)  // SpO2, PR, PAI
        var fullUrls = Set<String>()
        for (i, e) in entries.enumerated() {
            let req = try #require(e["request"] as? [String: Any])
            #expect(req["method"] as? String == "POST" && req["url"] as? String == "Observation")
            #expect(req["ifNoneExist"] as? String == "identifier=urn:iomt-agent:observation-id|\(r.id)-\(i)")
            let res = try #require(e["resource"] as? [String: Any])
            let ids = try #require(res["identifier"] as? [[String: Any]])
            #expect(ids.first?["value"] as? String == "\(r.id)-\(i)")
            fullUrls.insert(try #require(e["fullUrl"] as? String))
        }
        #expect(fullUrls.count == 3 && fullUrls.allSatisfy { $0.hasPrefix("urn:uuid:") && $0.count == 45 })
        // A redelivery of the same reading renders the same bytes (same identifiers).
        #expect(FHIRFormat.json(r) == FHIRFormat.json(r))
    }

    @Test func spo2IsShapedAsThePHDIG() throws {
        let r = try sample("spo2 spot-check")
        let obs = resources(try render(r))[0]
        #expect((obs["meta"] as? [String: Any])?["profile"] as? [String] == ["http://hl7.org/fhir/uv/phd/StructureDefinition/PhdNumericObservation"])
        let ext = try #require((obs["extension"] as? [[String: Any]])?.first)
        #expect(ext["url"] as? String == "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice")
        #expect(((ext["valueReference"] as? [String: Any])?["identifier"] as? [String: Any])?["value"] as? String == "gw-ward-3")
        #expect(obs["status"] as? String == "final")
        let cats = (obs["category"] as? [Any] ?? []).flatMap { codings($0) }
        #expect(cats.contains { $0 == ("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs") })
        #expect(cats.contains { $0 == ("http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories", "phd") })
        let code = codings(obs["code"])
        #expect(code.contains { $0 == ("urn:iso:std:iso:11073:10101", "150456") })
        #expect(code.contains { $0 == ("http://loinc.org", "2708-6") })
        let q = try #require(obs["valueQuantity"] as? [String: Any])
        #expect(q["value"] as? Double == 94 && q["system"] as? String == "http://unitsofmeasure.org" && q["code"] as? String == "%")
        #expect((obs["subject"] as? [String: Any])?["reference"] as? String == "Patient?identifier=urn:iomt-agent:patient-id|P-001")
        // Device time 2024-11-29 23:08:57 local at UTC+1, clock set by the gateway.
        #expect(obs["effectiveDateTime"] as? String == "2024-11-29T22:08:57.000Z")
        #expect(obs["note"] == nil)
        let dev = try #require((obs["device"] as? [String: Any])?["identifier"] as? [String: Any])
        #expect(dev["value"] as? String == "sysid-DEBC9AFEFF563412")
    }

    @Test func bloodPressureIsOneCompoundObservationPlusPulse() throws {
        let res = resources(try render(try sample("blood pressure mmHg")))
        #expect(res.count == 2)
        let bp = res[0]
        #expect(codings(bp["code"]).contains { $0 == ("urn:iso:std:iso:11073:10101", "150020") })
        #expect(codings(bp["code"]).contains { $0 == ("http://loinc.org", "85354-9") })
        #expect(bp["valueQuantity"] == nil)
        let comps = try #require(bp["component"] as? [[String: Any]])
        #expect(comps.map { codings($0["code"]).first?.1 } == ["150021", "150022", "150023"])
        #expect(codings(comps[0]["code"]).contains { $0 == ("http://loinc.org", "8480-6") })
        #expect(comps.map { ($0["valueQuantity"] as? [String: Any])?["value"] as? Double } == [138, 88, 120])
        #expect(comps.allSatisfy { ($0["valueQuantity"] as? [String: Any])?["code"] as? String == "mm[Hg]" })
        #expect(codings(res[1]["code"]).contains { $0 == ("urn:iso:std:iso:11073:10101", "149546") })
        // Year 0 on the device: gateway receipt time, said so in a note.
        #expect(bp["effectiveDateTime"] as? String == "2024-11-29T22:09:00.250Z")
        #expect((bp["note"] as? [[String: Any]])?.first?["text"] as? String == "time-quality: gateway receipt time (the device sent no time)")
        // kPa stays kPa unless converted on request.
        let kpa = resources(try render(try sample("blood pressure kPa")))[0]
        #expect(((kpa["component"] as? [[String: Any]])?[0]["valueQuantity"] as? [String: Any])?["code"] as? String == "kPa")
        let conv = resources(try render(try sample("blood pressure kPa→mmHg")))[0]
        let sys = try #require(((conv["component"] as? [[String: Any]])?[0]["valueQuantity"] as? [String: Any])?["value"] as? Double)
        #expect(abs(sys - 141.76) < 0.01)
    }

    @Test func specialsBecomeDataAbsentReasons() throws {
        let expected = ["temperature NaN": "not-a-number", "temperature +INF": "positive-infinity",
                        "temperature -INF": "negative-infinity", "temperature NRes": "error",
                        "heart rate without contact": "not-performed", "spo2 invalid": "error",
                        "spo2 unavailable": "not-performed", "glucose out of range": "error", "advert NaN": "not-a-number"]
        for (name, reason) in expected {
            let obs = resources(try render(try sample(name)))[0]
            #expect(obs["valueQuantity"] == nil, "\(name)")
            #expect(codings(obs["dataAbsentReason"]).first?.1 == reason, "\(name)")
            #expect(codings(obs["dataAbsentReason"]).first?.0 == "http://terminology.hl7.org/CodeSystem/data-absent-reason")
        }
        // A NaN component inside the BP panel.
        let bp = resources(try render(try sample("blood pressure NaN diastolic")))[0]
        let dia = try #require((bp["component"] as? [[String: Any]])?[1])
        #expect(dia["valueQuantity"] == nil && codings(dia["dataAbsentReason"]).first?.1 == "not-a-number")
    }

    @Test func waveformAndUnitsAndCategories() throws {
        let hr = resources(try render(try sample("heart rate + RR")))
        let rr = try #require(hr.first { codings($0["code"]).first?.1 == "147240" })
        let sd = try #require(rr["valueSampledData"] as? [String: Any])
        #expect(sd["data"] as? String == "1000 910.15625" && sd["period"] as? Double == 0 && sd["dimensions"] as? Int == 1)
        #expect((rr["meta"] as? [String: Any])?["profile"] as? [String] == ["http://hl7.org/fhir/uv/phd/StructureDefinition/PhdRtsaObservation"])
        #expect((rr["category"] as? [Any])?.count == 1)  // phd only: no vital-signs LOINC for RR
        // Device clock unknown → the time quality is said.
        #expect((hr[0]["note"] as? [[String: Any]])?.first?["text"] as? String == "time-quality: gateway receipt time (the device sent no time)")
        let glucose = resources(try render(try sample("glucose mg/dL")))[0]
        #expect((glucose["category"] as? [Any])?.count == 1 && codings(glucose["code"]).count == 1)
        #expect((glucose["valueQuantity"] as? [String: Any])?["value"] as? Double == 120)
        let unknown = resources(try render(try sample("ghs unknown unit")))[0]
        let uq = try #require(unknown["valueQuantity"] as? [String: Any])
        #expect(uq["system"] as? String == "urn:iso:std:iso:11073:10101" && uq["code"] as? String == "266239")
        let f = resources(try render(try sample("temperature F")))[0]
        #expect((f["valueQuantity"] as? [String: Any])?["code"] as? String == "[degF]")
    }

    @Test func patientReferenceUsesTheConfiguredSystemAndIsEscaped() throws {
        let r = try sample("odd patient id")
        let opts = FHIROptions(patientIdentifierSystem: "urn:oid:2.16.840.1.113883.3.999", observationIdentifierSystem: "https://gw.example/obs")
        let obs = resources(try render(r, opts))[0]
        #expect((obs["subject"] as? [String: Any])?["reference"] as? String
                == "Patient?identifier=urn:oid:2.16.840.1.113883.3.999|P%201%7Cx%26y%3D%C3%BC")
        let entry = try #require((try render(r, opts)["entry"] as? [[String: Any]])?.first)
        #expect((entry["request"] as? [String: Any])?["ifNoneExist"] as? String == "identifier=https://gw.example/obs|\(r.id)-0")
        #expect((try render(try sample("empty"))["entry"] as? [Any])?.isEmpty == true)
    }

    @Test func everyEmittedResourceValidatesWithFHIRResourcesR4() async throws {
        let dir = try TempDir(prefix: "iomt-fhir")
        let docs = samples.map { String(decoding: FHIRFormat.json($0.reading), as: UTF8.self) }
        #expect(docs.count == samples.count && docs.allSatisfy { !$0.contains("\n") && !$0.contains(":nan") && !$0.contains(":NaN") && !$0.contains(":Infinity") && !$0.contains(":-Infinity") })
        try docs.joined(separator: "\n").write(toFile: dir.file("bundles.jsonl"), atomically: true, encoding: .utf8)
        let python = "\(repoRoot)/.venv/bin/python"
        #expect(FileManager.default.isExecutableFile(atPath: python), "\(python) is missing: run scripts/setup.sh")
        let result = try await ChildProcess.run([python, "\(repoRoot)/scripts/validate_fhir.py", dir.file("bundles.jsonl")])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("validated \(samples.count) FHIR R4 document(s)"), "\(result.output)")
        #expect(result.output.contains("(FHIR 4.0.1)"), "\(result.output)")
    }

    /// The validator must be able to fail: broken documents are refused.
    @Test(arguments: [
        ("\"status\":\"final\"", "\"status\":\"bogus\""),                         // bad code
        ("\"effectiveDateTime\":\"2024", "\"effectiveDateTime\":\"24"),            // bad dateTime
        ("\"resourceType\":\"Observation\",", "\"resourceType\":\"Observation\",\"madeUp\":1,"),  // unknown element
        ("\"valueQuantity\":{", "\"dataAbsentReason\":{\"text\":\"x\"},\"valueQuantity\":{"),      // obs-6
        ("\"ifNoneExist\"", "\"ifNoneExistX\""),                                   // not a conditional create
    ])
    func validatorRejectsBrokenDocuments(_ change: (String, String)) async throws {
        let dir = try TempDir(prefix: "iomt-fhir-bad")
        let good = String(decoding: FHIRFormat.json(try sample("spo2 spot-check")), as: UTF8.self)
        #expect(good.contains(change.0))
        let bad = good.replacingOccurrences(of: change.0, with: change.1)
        try bad.write(toFile: dir.file("bad.json"), atomically: true, encoding: .utf8)
        let result = try await ChildProcess.run(["\(repoRoot)/.venv/bin/python", "\(repoRoot)/scripts/validate_fhir.py", dir.file("bad.json")])
        #expect(result.status != 0, "accepted: \(change.1)")
        #expect(result.output.contains("invalid"), "\(result.output)")
    }
}
