import Foundation
import Testing
@testable import IoMTCore

@Suite struct WireFormatTests {
    static func sample(_ observations: [Observation]) -> Reading {
        let t = Timestamp(millisecondsSinceEpoch: 1_764_093_159_123)
        var gen = ReadingIDGenerator()
        return Reading(
            id: gen.next(at: t), gatewayID: "hub-001", sequence: 42,
            body: DeviceReading(
                device: DeviceRef(id: "ox-1", profile: "pulse-oximeter", transport: .simulated, serialNumber: nil),
                patientID: "P-\"1\"\n", measuredAt: t, receivedAt: t.adding(milliseconds: 5),
                timeQuality: .simulated, observations: observations))
    }

    func decode(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test func readingIsValidJSONWithEveryField() throws {
        let r = Self.sample([
            Observation(code: .pulseOximetrySpO2, value: .numeric(97), unit: .percent),
            Observation(code: .pulseOximetryPulseRate, value: .numeric(72.5), unit: .perMinute),
        ])
        let obj = try decode(WireFormat.json(r))
        #expect(obj["schema"] as? String == "iomt-reading/1")
        #expect(obj["id"] as? String == r.id.description)
        #expect(obj["gateway_id"] as? String == "hub-001")
        #expect(obj["patient_id"] as? String == "P-\"1\"\n")
        #expect(obj["sequence"] as? Int == 42)
        #expect(obj["measured_at"] as? String == "2025-11-25T17:52:39.123Z")
        #expect(obj["received_at"] as? String == "2025-11-25T17:52:39.128Z")
        let device = try #require(obj["device"] as? [String: Any])
        #expect(device["transport"] as? String == "simulated")
        #expect(device["serial_number"] is NSNull)
        let obs = try #require(obj["observations"] as? [[String: Any]])
        #expect(obs.count == 2)
        #expect(obs[0]["mdc_code"] as? Int == 150456)
        #expect(obs[0]["mdc_ref_id"] as? String == "MDC_PULS_OXIM_SAT_O2")
        #expect(obs[0]["loinc"] as? String == "2708-6")
        #expect(obs[0]["unit"] as? String == "%")
        #expect(obs[0]["value"] as? Double == 97)
        #expect(obs[1]["value"] as? Double == 72.5)
    }

    @Test func deviceStatusIsPublishedOnlyWhenTheDeviceReportedSome() throws {
        var r = Self.sample([Observation(code: .pulseOximetrySpO2, value: .numeric(97), unit: .percent)])
        #expect(try decode(WireFormat.json(r))["device_status"] == nil)
        r.body.deviceStatus = ["irregular-pulse", "cuff-too-loose"]
        #expect(try decode(WireFormat.json(r))["device_status"] as? [String] == ["irregular-pulse", "cuff-too-loose"])
    }

    @Test func invalidValuesAreNeverNumbers() throws {
        let r = Self.sample([
            Observation(code: .pulseOximetrySpO2, value: .number(.nan), unit: .percent),
            Observation(code: .pulseOximetryPulseRate, value: .number(.infinity), unit: .perMinute),
            Observation(code: .bodyTemperature, value: .unavailable(.sensorOff), unit: .celsius),
        ])
        let obs = try #require(try decode(WireFormat.json(r))["observations"] as? [[String: Any]])
        #expect(obs.map { $0["status"] as? String } == ["nan", "+inf", "sensor-off"])
        #expect(obs.allSatisfy { $0["value"] is NSNull })
    }

    @Test func waveformIsOneBatchWithSamplePeriod() throws {
        let samples = (0..<75).map { Double($0 % 100) }
        let r = Self.sample([Observation(code: .pulseOximetryPleth, value: .waveform(samples: samples, samplePeriodMilliseconds: 13.333), unit: .dimensionless)])
        let obs = try #require(try decode(WireFormat.json(r))["observations"] as? [[String: Any]])
        #expect((obs[0]["samples"] as? [Double])?.count == 75)
        #expect(obs[0]["sample_period_ms"] as? Double == 13.333)
        #expect(obs[0]["value"] == nil)
    }

    @Test func unknownMDCCodeSurvives() throws {
        let r = Self.sample([Observation(code: MDCCode(rawValue: 0x0002_FFFF), value: .numeric(1), unit: "1")])
        let obs = try #require(try decode(WireFormat.json(r))["observations"] as? [[String: Any]])
        #expect(obs[0]["mdc_code"] as? Int == 0x0002_FFFF)
        #expect(obs[0]["mdc_ref_id"] is NSNull)
        #expect(obs[0]["loinc"] is NSNull)
    }

    @Test func jsonStringEscapesControlCharacters() throws {
        var w = JSONWriter()
        w.beginObject(); w.field("k", "a\u{01}b\\c\"d\te"); w.endObject()
        let s = String(decoding: w.bytes, as: UTF8.self)
        #expect(s == #"{"k":"a\u0001b\\c\"d\te"}"#)
        #expect(try decode(w.bytes)["k"] as? String == "a\u{01}b\\c\"d\te")
    }
}

@Suite struct ByteReaderTests {
    @Test func readsLittleAndBigEndian() throws {
        var r = ByteReader([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A])
        #expect(try r.u8("a") == 1)
        #expect(try r.u16le("b") == 0x0302)
        #expect(try r.u16be("c") == 0x0405)
        #expect(try r.u24le("d") == 0x080706)
        #expect(r.remaining == 2)
    }

    @Test func truncationNamesTheField() {
        var r = ByteReader([0x01])
        #expect(throws: ByteReaderError(field: "systolic", needed: 2, available: 1)) { try r.u16le("systolic") }
        #expect(r.offset == 0)
        #expect(throws: ByteReaderError.self) { try r.bytes(-1, "len") }
    }
}
