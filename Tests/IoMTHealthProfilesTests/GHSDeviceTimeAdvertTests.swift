import IoMTCore
import IoMTHealthProfiles
import Testing

@Suite struct GenericHealthSensorTests {
    // §9.4 ST Live Health Observation bundle (payload after the segmentation header).
    static let stBundleBytes = hex("FF 2F 00 42 00 22 72 9D 2B 29 00 00 06 00 01 3C 4C 02 00 02 01 0C 00 01 00 B8 4B 02 00 20 02 62 00 00 00 01 0C 00 01 00 1A 48 02 00 A0 0A 62 00 00 00")

    @Test func stBundle() throws {
        #expect(Self.stBundleBytes.count == 50)
        let (record, o) = try GenericHealthSensor.decode(Self.stBundleBytes)
        #expect(record == nil && o.classType == 0xFF && o.supplementalInformation == [HealthCodes.modalitySpot])
        let m = GenericHealthSensor.normalized(o)
        #expect(value(m, .pulseOximetrySpO2) == 98 && unit(m, .pulseOximetrySpO2) == .percent)
        #expect(value(m, .pulseOximetryPulseRate) == 98 && unit(m, .pulseOximetryPulseRate) == .perMinute)
        #expect(m.statuses.contains("supplemental-150588"))
        let dt = try #require(m.deviceTime)
        #expect(dt.isUTC && !dt.clockFlaggedUnreliable)
        #expect(dt.instant(assumedUTCOffsetMinutes: 120).rfc3339 == "2021-11-20T11:50:10.000Z")
    }

    @Test func philipsLengthSemanticsAndStoredRecords() throws {
        // The same bundle with Length counting the whole observation (Philips, §13.6).
        var p = Self.stBundleBytes
        p[1] = 50
        p[20 + 1] = 15; p[35 + 1] = 15
        let (_, o) = try GenericHealthSensor.decode(p)
        #expect(value(GenericHealthSensor.normalized(o), .pulseOximetrySpO2) == 98)
        // Stored observation: record number u32 first.
        let (rec, so) = try GenericHealthSensor.decode(hex("07 00 00 00") + Self.stBundleBytes, stored: true)
        #expect(rec == 7 && so.classType == 0xFF)
        // A length matching neither reading is refused.
        var bad = Self.stBundleBytes; bad[1] = 40
        #expect(throws: HealthDecodeError.self) { try GenericHealthSensor.decode(bad) }
    }

    @Test func segmentation() throws {
        var ra = GHSSegmentReassembler()
        let body = Self.stBundleBytes
        let parts = [Array(body[0..<20]), Array(body[20..<35]), Array(body[35...])]
        // first (bit0) counter 62, then 63, then wrap to 0 with last (bit1).
        #expect(try ra.append([0x01 | 62 << 2] + parts[0]) == nil)
        #expect(ra.isAssembling)
        #expect(try ra.append([63 << 2] + parts[1]) == nil)
        #expect(try ra.append([0x02 | 0 << 2] + parts[2]) == body)
        #expect(!ra.isAssembling)
        // Single-segment message.
        #expect(try ra.append([0x03] + body) == body)
        // Out-of-order counter, continuation without a first segment.
        _ = try ra.append([0x01 | 5 << 2] + parts[0])
        #expect(throws: HealthDecodeError.self) { try ra.append([7 << 2] + parts[1]) }
        #expect(throws: HealthDecodeError.self) { try ra.append([0x02 | 8 << 2] + parts[2]) }
        #expect(throws: ByteReaderError.self) { try ra.append([]) }
        var small = GHSSegmentReassembler(maximumSize: 10)
        #expect(throws: HealthDecodeError.self) { try small.append([0x01] + body) }
    }

    @Test func statusesAndUnknownUnits() throws {
        // Numeric with type + measurement status (invalid) + unknown unit 0x0FFF.
        let o = hex("01 0E 00 09 00 1A 48 02 00 01 00 FF 0F 62 00 00 00")
        let (_, obs) = try GenericHealthSensor.decode(o)
        let m = GenericHealthSensor.normalized(obs)
        #expect(status(m, .pulseOximetryPulseRate) == .invalidMeasurement && m.statuses.contains(.invalid))
        #expect(unit(m, .pulseOximetryPulseRate)?.rawValue == "mdc:\(4 * 65536 + 0x0FFF)")
        // An observation with a field of unverified size is refused, not guessed.
        #expect(throws: HealthDecodeError.self) { try GenericHealthSensor.decode(hex("01 0C 00 05 00 1A 48 02 00 00 00 00 00 20 02")) }
    }

    @Test func featuresAndTruncation() throws {  // §9.2 `00 02 B8 4B 02 00 1A 48 02 00`
        let f = try HealthSensorFeatures.decode(hex("00 02 B8 4B 02 00 1A 48 02 00"))
        #expect(f.observationTypes == [.pulseOximetrySpO2, .pulseOximetryPulseRate])
        expectEveryPrefixThrows(hex("00 02 B8 4B 02 00 1A 48 02 00")) { _ = try HealthSensorFeatures.decode($0) }
        expectEveryPrefixThrows(Self.stBundleBytes) { _ = try GenericHealthSensor.decode($0) }
    }
}

@Suite struct DeviceInformationTests {
    @Test func systemID() throws {  // §10.1 `DE BC 9A FE FF 56 34 12`
        let s = try SystemID.decode(hex("DE BC 9A FE FF 56 34 12"))
        #expect(s.eui64 == 0x1234_56FF_FE9A_BCDE)
        #expect(s.phdIdentifier == "DE-BC-9A-FE-FF-56-34-12")
        #expect(s.compactHex == "DEBC9AFEFF563412")
        expectEveryPrefixThrows(hex("DE BC 9A FE FF 56 34 12")) { _ = try SystemID.decode($0) }
    }

    @Test func identity() throws {
        var id = DeviceIdentity()
        try id.apply(uuid: 0x2A29, value: Array("Nonin Medical\0\0".utf8))
        try id.apply(uuid: 0x2A24, value: Array("3230 ".utf8))
        try id.apply(uuid: 0x2A25, value: [0x35, 0x30, 0x01, 0x31, 0xFF])
        #expect(id.manufacturer == "Nonin Medical" && id.model == "3230")
        #expect(id.serialNumber == "501\u{FFFD}")
        #expect(id.stableID == "serial-NoninMedical_3230_501")
        try id.apply(uuid: 0x2A23, value: hex("DE BC 9A FE FF 56 34 12"))
        #expect(id.stableID == "sysid-DEBC9AFEFF563412")
        try id.apply(uuid: 0x2A50, value: hex("01 59 00 01 02 03 04"))
        #expect(id.pnpID == PnPID(vendorIDSource: 1, vendorID: 0x59, productID: 0x0201, productVersion: 0x0403))
        // 11073-20601 regulatory data: big-endian MDER, one entry (auth body 2, type 1, 2 octets).
        try id.apply(uuid: 0x2A2A, value: hex("00 01 00 06 02 01 00 02 AB CD"))
        #expect(id.regulatoryData?.entries == [.init(authorizingBody: 2, structureType: 1, data: [0xAB, 0xCD])])
        #expect(throws: HealthDecodeError.self) { try RegulatoryCertificationData.decode(hex("00 01 00 FF 02")) }
        expectEveryPrefixThrows(hex("00 01 00 06 02 01 00 02 AB CD")) { _ = try RegulatoryCertificationData.decode($0) }
    }

    @Test func battery() throws {
        let b = try DeviceStatus.decodeBatteryLevel([87])
        #expect(b.battery.code == .batteryCharge && b.battery.value == .numeric(87) && b.battery.unit == .percent)
        #expect(try DeviceStatus.decodeBatteryLevel([101]).battery.value == .unavailable(.outOfRange))
        #expect(throws: ByteReaderError.self) { try DeviceStatus.decodeBatteryLevel([]) }
    }
}

@Suite struct TimeTests {
    @Test func currentTime() throws {  // §10.4 `E8 07 03 0F 0E 1E 00 05 00 01`
        let ct = try CurrentTime.decode(hex("E8 07 03 0F 0E 1E 00 05 00 01"))
        #expect(ct.dateTime == DateTime(year: 2024, month: 3, day: 15, hours: 14, minutes: 30, seconds: 0))
        #expect(ct.dayOfWeek == 5 && ct.fractions256 == 0 && ct.adjustReason == 1)
        #expect(ct.encoded == hex("E8 07 03 0F 0E 1E 00 05 00 01"))
        expectEveryPrefixThrows(hex("E8 07 03 0F 0E 1E 00 05 00 01")) { _ = try CurrentTime.decode($0) }
    }

    @Test func encodeFromGatewayClock() throws {
        // 2024-03-15T13:30:00.500Z at UTC+1 → local 14:30:00, Friday, 128/256 s.
        let t = try #require(Timestamp(rfc3339: "2024-03-15T13:30:00.500Z"))
        let ct = CurrentTime(gatewayTime: t, utcOffsetMinutes: 60, adjustReason: 0x01)
        #expect(ct.encoded == hex("E8 07 03 0F 0E 1E 00 05 80 01"))
        #expect(ct.offset(from: t, utcOffsetMinutes: 60) == 0)
        #expect(!ct.needsSetting(gatewayNow: t, utcOffsetMinutes: 60))
        #expect(ct.needsSetting(gatewayNow: t.adding(milliseconds: 9000), utcOffsetMinutes: 60))
        // Round trip across many instants, incl. day of week (1970-01-01 was a Thursday).
        var rng = SplitMix64(seed: 3)
        for _ in 0..<500 {
            let ms = Int64.random(in: 0...4_102_444_800_000, using: &rng) / 1000 * 1000
            let c = CurrentTime(gatewayTime: Timestamp(millisecondsSinceEpoch: ms), utcOffsetMinutes: 0)
            #expect(c.deviceTime?.instant(assumedUTCOffsetMinutes: 0).millisecondsSinceEpoch == ms)
            #expect(Int(c.dayOfWeek) == Int(((ms / 86_400_000) + 3) % 7) + 1)
        }
        #expect(CurrentTime(gatewayTime: Timestamp(millisecondsSinceEpoch: 0), utcOffsetMinutes: 0).dayOfWeek == 4)
    }

    @Test func localTimeAndDateTime() throws {
        #expect(try LocalTimeInformation.decode(hex("04 04")).utcOffsetMinutes == 120)
        #expect(try LocalTimeInformation.decode(hex("80 00")).utcOffsetMinutes == nil)
        #expect(try LocalTimeInformation.decode(hex("F8 FF")).utcOffsetMinutes == nil)
        #expect(try DateTimeCharacteristic.decode(hex("DC 07 0C 05 0B 32 1B")) == DateTime(year: 2012, month: 12, day: 5, hours: 11, minutes: 50, seconds: 27))
        #expect(DateTimeCharacteristic.encode(DateTime(year: 2012, month: 12, day: 5, hours: 11, minutes: 50, seconds: 27)) == hex("DC 07 0C 05 0B 32 1B"))
        expectEveryPrefixThrows(hex("DC 07 0C 05 0B 32 1B")) { _ = try DateTimeCharacteristic.decode($0) }
    }

    @Test func timeQualityResolution() {
        let received = Timestamp(millisecondsSinceEpoch: 1_000_000)
        #expect(resolveMeasurementTime(nil, receivedAt: received, clock: .setByGateway, gatewayUTCOffsetMinutes: 0) == (received, .gatewayReceipt))
        let dt = DeviceTime(fieldsAsUTCMilliseconds: 500_000)
        #expect(resolveMeasurementTime(dt, receivedAt: received, clock: .unknown, gatewayUTCOffsetMinutes: 0).1 == .deviceUnsynchronized)
        #expect(resolveMeasurementTime(dt, receivedAt: received, clock: .setByGateway, gatewayUTCOffsetMinutes: 0).1 == .deviceSynchronized)
        let corrected = resolveMeasurementTime(dt, receivedAt: received, clock: .measuredOffset(milliseconds: 2000), gatewayUTCOffsetMinutes: 0)
        #expect(corrected.0.millisecondsSinceEpoch == 498_000 && corrected.1 == .deviceCorrected)
        #expect(resolveMeasurementTime(dt, receivedAt: received, clock: .unknown, gatewayUTCOffsetMinutes: 60).0.millisecondsSinceEpoch == 500_000 - 3_600_000)
    }
}

@Suite struct AdvertisementProfileTests {
    /// A made-up broadcast scale: service data 0x181D, flags octet (bit 0 = lb, bit 5 = stable),
    /// weight u16le at offset 1 in 0.005 kg or 0.01 lb; a thermometer in manufacturer data.
    static let scale = AdvertisementProfile(
        name: "example-scale", source: .serviceData(uuid16: 0x181D),
        require: [.init(offset: 0, mask: 0x20, equals: 0x20)],
        fields: [
            .init(name: "weight-kg", offset: 1, encoding: .u16le, scale: 0.005, code: .bodyWeight, unit: .kilogram,
                  invalidRaw: [0xFFFF], when: [.init(offset: 0, mask: 0x01, equals: 0)]),
            .init(name: "weight-lb", offset: 1, encoding: .u16le, scale: 0.01, code: .bodyWeight, unit: .pound,
                  when: [.init(offset: 0, mask: 0x01, equals: 1)]),
        ])
    static let thermometer = AdvertisementProfile(
        name: "example-thermometer", source: .manufacturerData(companyID: 0x0059),
        fields: [.init(name: "temperature", offset: 2, encoding: .s16le, scale: 0.01, code: .bodyTemperature, unit: .celsius),
                 .init(name: "battery", offset: 0, encoding: .u8, code: .batteryCharge, unit: .percent),
                 .init(name: "sfloat", offset: 4, encoding: .sfloat, code: .bodyTemperature, unit: .celsius)])

    @Test func scale() throws {
        let kg = try #require(try Self.scale.decode(serviceData: [0x181D: hex("20 14 37")]))
        #expect(value(kg, .bodyWeight) == 70.5 && unit(kg, .bodyWeight) == .kilogram && kg.observations.count == 1)
        let lb = try #require(try Self.scale.decode(serviceData: [0x181D: hex("21 48 3C")]))
        #expect(value(lb, .bodyWeight) == 154.32 && unit(lb, .bodyWeight) == .pound)
        #expect(try Self.scale.decode(serviceData: [0x181D: hex("00 14 37")]) == nil)  // not stable
        #expect(try Self.scale.decode(serviceData: [0x180F: hex("20 14 37")]) == nil)  // other service
        #expect(status(try #require(try Self.scale.decode(serviceData: [0x181D: hex("20 FF FF")])), .bodyWeight) == .missing)
        // A truncated field names the profile's field, not the reader's generic label.
        #expect(throws: HealthDecodeError(field: "weight-kg", reason: "needs 2 octet(s) at offset 1, 1 left")) {
            try Self.scale.decode(serviceData: [0x181D: hex("20 14")])
        }
        #expect(throws: HealthDecodeError.self) { try Self.scale.decode(serviceData: [0x181D: []]) }
    }

    @Test func thermometer() throws {
        let m = try #require(try Self.thermometer.decode(manufacturerData: [0x0059: hex("5A 00 6A 0E FF 07")]))
        #expect(value(m, .batteryCharge) == 90)
        #expect(m.observations[0].value == .numeric(36.9))
        #expect(m.observations[2].value == .unavailable(.notANumber))
        let hot = try #require(try Self.thermometer.decode(manufacturerData: [0x0059: hex("5A 00 88 13 71 01")]))
        #expect(hot.observations[0].value == .unavailable(.outOfRange))  // 50.00 °C
    }
}
