import IoMTCore
import IoMTHealthProfiles
import Testing

/// Golden bytes from `ble-health-profiles.md` (section noted per test).
@Suite struct HeartRateTests {
    @Test func uint8NoContactSupport() throws {  // §2.1 `00 55`
        let m = try HeartRateMeasurement.decode(hex("00 55")).normalized
        #expect(value(m, .heartRate) == 85)
        #expect(unit(m, .heartRate) == .perMinute)
        #expect(m.observations.first?.loinc == "8867-4")
        #expect(m.statuses == [.sensorContactNotSupported])
        #expect(m.observations.count == 1)
    }

    @Test func contactNotDetectedIsNotANumber() throws {  // §2.1 `04 FF`
        let hr = try HeartRateMeasurement.decode(hex("04 FF"))
        #expect(hr.heartRate == 255 && hr.sensorContact == 2)
        let m = hr.normalized
        #expect(status(m, .heartRate) == .sensorOff)
        #expect(m.statuses.contains(.sensorContactNotDetected))
    }

    @Test func energyAndOneRR() throws {  // §2.1 `1E 55 32 00 21 00`
        let hr = try HeartRateMeasurement.decode(hex("1E 55 32 00 21 00"))
        #expect(hr.heartRate == 85 && hr.energyExpendedKilojoules == 50 && hr.rrIntervalsRaw == [33])
        #expect(hr.normalized.statuses == [.sensorContactDetected])
        // 33/1024 s = 32.2 ms is not a plausible RR interval: the batch is out of range, not a number.
        #expect(status(hr.normalized, .rrInterval) == .outOfRange)
    }

    @Test func uint16WithImplausibleRRs() throws {  // §2.1 `1F 01 01 32 01 01 00 02 01 FF FF`
        let hr = try HeartRateMeasurement.decode(hex("1F 01 01 32 01 01 00 02 01 FF FF"))
        #expect(hr.heartRate == 257 && hr.energyExpendedKilojoules == 306 && hr.rrIntervalsRaw == [1, 258, 65535])
        #expect(value(hr.normalized, .heartRate) == 257)
        #expect(status(hr.normalized, .rrInterval) == .outOfRange)
    }

    @Test func rrSeriesIsOneBatch() throws {  // §2.1 `16 48 00 04 A4 03`
        let m = try HeartRateMeasurement.decode(hex("16 48 00 04 A4 03")).normalized
        #expect(value(m, .heartRate) == 72)
        let rr = try #require(m.observations.first { $0.code == .rrInterval })
        #expect(rr.unit == .millisecond)
        guard case .waveform(let samples, let period) = rr.value else { Issue.record("not a batch"); return }
        #expect(samples.count == 2 && period == 0)
        #expect(samples[0] == 1000 && close(samples[1], 910.15625))
    }

    @Test func truncatedAtEveryLength() throws {
        for v in ["00 55", "01 55 00", "1E 55 32 00 21 00", "08 48 32 00"] {
            expectEveryPrefixThrows(hex(v)) { _ = try HeartRateMeasurement.decode($0) }
        }
        // An odd octet after RR intervals is a truncated interval.
        #expect(throws: ByteReaderError.self) { try HeartRateMeasurement.decode(hex("16 48 00 04 A4")) }
        #expect(throws: ByteReaderError.self) { try BodySensorLocation.decode([]) }
        #expect(try BodySensorLocation.decode([1]) == .chest)
    }
}

@Suite struct ThermometerTests {
    @Test func fullMeasurement() throws {  // §3.1 `06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04`
        let t = try TemperatureMeasurement.decode(hex("06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04"))
        #expect(t.type == .finger && !t.isFahrenheit)
        #expect(t.timeStamp == DateTime(year: 2012, month: 12, day: 5, hours: 11, minutes: 50, seconds: 27))
        let m = t.normalized
        #expect(value(m, .bodyTemperature) == 37.6)
        #expect(unit(m, .bodyTemperature) == .celsius)
        #expect(m.observations.first?.loinc == "8310-5")
        let dt = try #require(m.deviceTime)
        #expect(dt.instant(assumedUTCOffsetMinutes: 60).rfc3339 == "2012-12-05T10:50:27.000Z")
        #expect(t.type?.siteCode == HealthCodes.tempFinger)
    }

    @Test func celsiusAndFahrenheitKeptAsSent() throws {  // §3.1 `00 6D 01 00 FF`, `01 C9 03 00 FF`
        let c = try TemperatureMeasurement.decode(hex("00 6D 01 00 FF")).normalized
        #expect(value(c, .bodyTemperature) == 36.5 && c.deviceTime == nil)
        let f = try TemperatureMeasurement.decode(hex("01 C9 03 00 FF")).normalized
        #expect(value(f, .bodyTemperature) == 96.9)
        #expect(unit(f, .bodyTemperature) == .fahrenheit)
        // Explicit conversion only.
        let converted = UnitConversion.apply([.celsius], to: f)
        #expect(close(value(converted, .bodyTemperature), 36.05555555556, 1e-9))
        #expect(unit(converted, .bodyTemperature) == .celsius)
    }

    @Test func specialsAndRanges() throws {
        // NaN FLOAT → status; 50.0 °C → out of range; unknown date → no device time.
        #expect(status(try TemperatureMeasurement.decode(hex("00 FF FF 7F 00")).normalized, .bodyTemperature) == .notANumber)
        #expect(status(try TemperatureMeasurement.decode(hex("00 FE FF 7F 00")).normalized, .bodyTemperature) == .positiveInfinity)
        #expect(status(try TemperatureMeasurement.decode(hex("00 F4 01 00 FF")).normalized, .bodyTemperature) == .outOfRange)
        let unknown = try TemperatureMeasurement.decode(hex("02 6D 01 00 FF 00 00 00 00 00 00 00")).normalized
        #expect(unknown.deviceTime == nil && unknown.statuses.contains(.deviceTimeUnknown))
        let bad = try TemperatureMeasurement.decode(hex("02 6D 01 00 FF E8 07 02 1E 00 00 00")).normalized  // 30 Feb
        #expect(bad.deviceTime == nil && bad.statuses.contains(.deviceTimeInvalid))
    }

    @Test func truncatedAtEveryLength() throws {
        expectEveryPrefixThrows(hex("06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04")) { _ = try TemperatureMeasurement.decode($0) }
        expectEveryPrefixThrows(hex("3C 00")) { _ = try MeasurementInterval.decode($0) }
        #expect(try MeasurementInterval.decode(hex("3C 00")) == 60)
        #expect(try TemperatureType.decode([9]) == .tympanum)
    }
}

@Suite struct BloodPressureTests {
    static let mmHg = "1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00"
    static let kPa = "15 BD F0 0B 00 9F F0 3C 00 12 00"

    @Test func mmHgFull() throws {  // §4.1
        let bp = try BloodPressureMeasurement.decode(hex(Self.mmHg))
        #expect(bp.userID == 1 && bp.measurementStatus == 0x0027)
        let m = bp.normalized
        #expect(value(m, .systolic) == 138 && value(m, .diastolic) == 88 && value(m, .meanArterialPressure) == 120)
        #expect(unit(m, .systolic) == .millimetreMercury)
        #expect(value(m, .pulseRateNonInvasive) == 60)
        #expect(Set(m.statuses) == ["body-movement", "cuff-too-loose", "irregular-pulse", "improper-body-position", .deviceTimeUnknown])
        // Year 0 = unknown: no fabricated date (§13.12).
        #expect(m.deviceTime == nil && m.statuses.contains(.deviceTimeUnknown))
        #expect(m.userID == 1)
    }

    @Test func kPaKeptAndConvertedOnlyOnRequest() throws {  // §4.1
        let m = try BloodPressureMeasurement.decode(hex(Self.kPa)).normalized
        #expect(unit(m, .systolic) == .kilopascal)
        #expect(value(m, .systolic) == 18.9 && value(m, .diastolic) == 11 && value(m, .meanArterialPressure) == 15.9)
        #expect(value(m, .pulseRateNonInvasive) == 60 && unit(m, .pulseRateNonInvasive) == .perMinute)
        #expect(Set(m.statuses) == ["cuff-too-loose", "pulse-under-range-limit"])
        let c = UnitConversion.apply([.millimetreMercury], to: m)
        #expect(unit(c, .systolic) == .millimetreMercury)
        #expect(close(value(c, .systolic), 18.9 / 0.133322387415, 1e-9))
        #expect(value(c, .pulseRateNonInvasive) == 60)  // pulse untouched
    }

    @Test func intermediateCuffPressure() throws {  // §4.1 `00 96 00 FF 07 FF 07`
        let bp = try BloodPressureMeasurement.decode(hex("00 96 00 FF 07 FF 07"))
        let m = bp.normalizedAsIntermediateCuffPressure
        #expect(m.observations.count == 1)
        #expect(value(m, HealthCodes.cuffPressure) == 150)
        #expect(!m.observations.contains { $0.code == .diastolic || $0.code == .systolic })
        // Read as a full BPM, the NaN fields are statuses.
        #expect(status(bp.normalized, .diastolic) == .notANumber)
    }

    @Test func featureAndTruncation() throws {
        #expect(try BloodPressureFeature.decode(hex("21 00")) == [.bodyMovementDetection, .multipleBonds])
        expectEveryPrefixThrows(hex(Self.mmHg)) { _ = try BloodPressureMeasurement.decode($0) }
        expectEveryPrefixThrows(hex(Self.kPa)) { _ = try BloodPressureMeasurement.decode($0) }
        #expect(BloodPressureMeasurement.statuses(0x0008) == ["pulse-over-range-limit"])
    }
}

@Suite struct PulseOximeterTests {
    @Test func continuousMinimal() throws {  // §5.4 `00 E8 F3 84 F3`
        let m = try PLXContinuousMeasurement.decode(hex("00 E8 F3 84 F3")).normalized
        #expect(value(m, .pulseOximetrySpO2) == 100 && value(m, .pulseOximetryPulseRate) == 90)
        #expect(m.observations.map(\.loinc) == ["2708-6", "8867-4"])
        #expect(m.deviceTime == nil)
    }

    @Test func continuousWithStatusAndPAI() throws {  // §5.4 `1C 5F 00 5A 00 20 00 00 00 00 57 F0`
        let c = try PLXContinuousMeasurement.decode(hex("1C 5F 00 5A 00 20 00 00 00 00 57 F0"))
        #expect(c.measurementStatus == 0x20 && c.deviceAndSensorStatus == 0)
        let m = c.normalized
        #expect(value(m, .pulseOximetrySpO2) == 95 && value(m, .pulseOximetryPulseRate) == 90)
        #expect(value(m, .pulseOximetryPerfusionIndex) == 8.7)
        #expect(m.statuses == ["measurement-ongoing"])
    }

    @Test func continuousAllFields() throws {  // §5.4
        let c = try PLXContinuousMeasurement.decode(hex("1F DE F3 CA F3 CA F3 5A F5 D4 F3 B2 F2 20 01 00 00 00 7A E3"))
        #expect(c.spo2.doubleValue == 99 && c.pulseRate.doubleValue == 97)
        #expect(c.fast?.spo2.doubleValue == 97 && c.fast?.pulseRate.doubleValue == 137)
        #expect(c.slow?.spo2.doubleValue == 98 && c.slow?.pulseRate.doubleValue == 69)
        #expect(c.pulseAmplitudeIndex?.decimalString == "8.90")
        #expect(Set(c.normalized.statuses) == ["measurement-ongoing", "fully-qualified-data"])
    }

    @Test func spotCheck() throws {  // §5.4 `0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3`
        let s = try PLXSpotCheckMeasurement.decode(hex("0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3"))
        #expect(s.measurementStatus == 0x4020 && s.deviceAndSensorStatus == 0x22 && !s.deviceClockNotSet)
        let m = s.normalized
        #expect(value(m, .pulseOximetrySpO2) == 94 && value(m, .pulseOximetryPulseRate) == 147)
        #expect(value(m, .pulseOximetryPerfusionIndex) == 8.7)
        #expect(Set(m.statuses) == ["measurement-ongoing", .questionable, "device-equipment-malfunction",
                                    "signal-low-perfusion", "modality-spot"])
        let dt = try #require(m.deviceTime)
        #expect(!dt.clockFlaggedUnreliable)
        #expect(dt.instant(assumedUTCOffsetMinutes: 60).rfc3339 == "2024-11-29T22:08:57.000Z")
    }

    @Test func clockNotSetAndInvalidAndDemo() throws {
        // Flag bit 4: device clock not set → device time flagged unreliable.
        let s = try PLXSpotCheckMeasurement.decode(hex("11 AC F3 BE F5 E8 07 0B 1D 17 08 39")).normalized
        #expect(s.deviceTime?.clockFlaggedUnreliable == true && s.statuses.contains(.deviceClockNotSet))
        let (_, q) = resolveMeasurementTime(s.deviceTime, receivedAt: Timestamp(millisecondsSinceEpoch: 0),
                                            clock: .setByGateway, gatewayUTCOffsetMinutes: 0)
        #expect(q == .deviceUnsynchronized)
        // Invalid measurement (bit 15) → no numbers.
        let inv = try PLXContinuousMeasurement.decode(hex("04 5F 00 5A 00 00 80")).normalized
        #expect(status(inv, .pulseOximetrySpO2) == .invalidMeasurement && status(inv, .pulseOximetryPulseRate) == .invalidMeasurement)
        // Demonstration data (bit 10) is not patient data.
        #expect(try PLXContinuousMeasurement.decode(hex("04 5F 00 5A 00 00 04")).normalized.isPatientData == false)
        // SpO2 101 % is out of range.
        #expect(status(try PLXContinuousMeasurement.decode(hex("00 65 00 5A 00")).normalized, .pulseOximetrySpO2) == .outOfRange)
    }

    @Test func features() throws {  // §5.4 `A3 00 40 10 80 01 00`
        let f = try PLXFeatures.decode(hex("A3 00 40 10 80 01 00"))
        #expect(f.supportedFeatures == 0x00A3 && f.measurementStatusSupport == 0x1040 && f.deviceAndSensorStatusSupport == 0x000180)
        #expect(f.slowSupported && f.multipleBonds && !f.fastSupported)
    }

    @Test func truncatedAtEveryLength() {
        expectEveryPrefixThrows(hex("0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3")) { _ = try PLXSpotCheckMeasurement.decode($0) }
        expectEveryPrefixThrows(hex("1F DE F3 CA F3 CA F3 5A F5 D4 F3 B2 F2 20 01 00 00 00 7A E3")) { _ = try PLXContinuousMeasurement.decode($0) }
        expectEveryPrefixThrows(hex("A3 00 40 10 80 01 00")) { _ = try PLXFeatures.decode($0) }
    }
}

@Suite struct WeightAndBodyCompositionTests {
    @Test func siWithBMIAndHeight() throws {  // §7.1 `0C 14 37 01 E6 00 D6 06`
        let m = try WeightMeasurement.decode(hex("0C 14 37 01 E6 00 D6 06")).normalized
        #expect(value(m, .bodyWeight) == 70.5 && unit(m, .bodyWeight) == .kilogram)
        #expect(value(m, .bodyMassIndex) == 23 && value(m, .bodyHeight) == 175 && unit(m, .bodyHeight) == .centimetre)
        #expect(m.userID == 1)
        #expect(m.observations.map(\.loinc) == ["29463-7", "39156-5", "8302-2"])
    }

    @Test func imperialAndTimeStamp() throws {  // §7.1 `01 48 3C`, `02 14 37 E8 07 03 0F 07 2D 00`
        let lb = try WeightMeasurement.decode(hex("01 48 3C")).normalized
        #expect(value(lb, .bodyWeight) == 154.32 && unit(lb, .bodyWeight) == .pound)
        let kg = UnitConversion.apply([.kilogram], to: lb)
        #expect(close(value(kg, .bodyWeight), 154.32 * 0.45359237, 1e-9))
        let t = try WeightMeasurement.decode(hex("02 14 37 E8 07 03 0F 07 2D 00")).normalized
        #expect(value(t, .bodyWeight) == 70.5)
        #expect(t.deviceTime?.instant(assumedUTCOffsetMinutes: 0).rfc3339 == "2024-03-15T07:45:00.000Z")
        #expect(status(try WeightMeasurement.decode(hex("00 FF FF")).normalized, .bodyWeight) == .missing)
    }

    @Test func featureResolutions() throws {
        // Time stamp + BMI, weight resolution 7 (0.005 kg), height resolution 3 (0.001 m).
        let f = try WeightScaleFeature.decode(hex("BD 01 00 00"))
        #expect(f.timeStampSupported && f.bmiSupported && !f.multipleUsers)
        #expect(f.weightResolutionCode == 7 && f.weightResolution(imperial: false) == 0.005 && f.weightResolution(imperial: true) == 0.01)
        #expect(f.heightResolutionCode == 3 && f.heightResolution(imperial: false) == 0.001)
        #expect(try WeightScaleFeature.decode(hex("00 00 00 00")).weightResolution(imperial: false) == nil)
    }

    @Test func bodyComposition() throws {
        // Flags 0x0C04 (user, weight, height); body fat 25.3 %; user 2; weight 70.5 kg; height 175.0 cm.
        let b = try BodyCompositionMeasurement.decode(hex("04 0C FD 00 02 14 37 D6 06"))
        let m = b.normalized
        #expect(value(m, .bodyFat) == 25.3 && value(m, .bodyWeight) == 70.5 && value(m, .bodyHeight) == 175)
        #expect(m.userID == 2 && !b.isMultiplePacket)
        // All optional fields, imperial, multiple packet.
        let all = try BodyCompositionMeasurement.decode(hex("FF 1F C8 00 E8 07 03 0F 07 2D 00 01 10 27 90 01 A0 0F 10 27 20 4E 30 75 88 13 48 3C BC 02"))
        #expect(all.isMultiplePacket && all.basalMetabolismKilojoules == 10000 && all.impedanceRaw == 5000)
        #expect(value(all.normalized, .bodyWeight) == 154.32 && value(all.normalized, .bodyHeight) == 70)
        #expect(all.normalized.statuses.contains("multiple-packet"))
        expectEveryPrefixThrows(hex("FF 1F C8 00 E8 07 03 0F 07 2D 00 01 10 27 90 01 A0 0F 10 27 20 4E 30 75 88 13 48 3C BC 02")) {
            _ = try BodyCompositionMeasurement.decode($0)
        }
        let bf = try BodyCompositionFeature.decode(hex("00 38 01 00"))  // mass res 7, height res 2
        #expect(bf.massResolution(imperial: false) == 0.005 && bf.heightResolution(imperial: true) == 0.5)
    }

    @Test func truncatedAtEveryLength() {
        expectEveryPrefixThrows(hex("0E 14 37 E8 07 03 0F 07 2D 00 01 E6 00 D6 06")) { _ = try WeightMeasurement.decode($0) }
        expectEveryPrefixThrows(hex("BD 01 00 00")) { _ = try WeightScaleFeature.decode($0) }
    }
}

@Suite struct GlucoseTests {
    @Test func nordicVector() throws {  // §6.1 `1B 01 00 E3 07 02 1B 0B 0A 1E FB FF 1E 00 12 05 01`
        let g = try GlucoseMeasurement.decode(hex("1B 01 00 E3 07 02 1B 0B 0A 1E FB FF 1E 00 12 05 01"))
        #expect(g.sequenceNumber == 1 && g.timeOffsetMinutes == -5 && g.type == 2 && g.sampleLocation == 1)
        #expect(g.contextFollows && g.sensorStatus == 0x0105)
        let m = g.normalized
        // 30 kg/L is not a plausible glucose: out of range, never a number.
        #expect(status(m, .glucoseCapillaryPlasma) == .outOfRange)
        #expect(Set(m.statuses).isSuperset(of: ["device-battery-low", "sample-size-insufficient", "sensor-temp-too-low", "context-follows"]))
        #expect(m.deviceTime?.instant(assumedUTCOffsetMinutes: 0).rfc3339 == "2019-02-27T11:05:30.000Z")
    }

    @Test func massAndMolarUnits() throws {  // §6.1 computed vectors
        let mg = try GlucoseMeasurement.decode(hex("0A 2A 00 E8 07 03 0F 08 1E 00 78 B0 11 00 00")).normalized
        #expect(value(mg, .glucoseCapillaryWholeBlood) == 120 && unit(mg, .glucoseCapillaryWholeBlood) == .milligramPerDecilitre)
        #expect(mg.observations.first?.loinc == nil)  // no vital-signs LOINC for glucose (§6.1)
        let mol = try GlucoseMeasurement.decode(hex("06 2A 00 E8 07 03 0F 08 1E 00 41 C0 11")).normalized
        #expect(value(mol, .glucoseCapillaryWholeBlood) == 6.5 && unit(mol, .glucoseCapillaryWholeBlood) == .millimolePerLitre)
        let off = try GlucoseMeasurement.decode(hex("03 2A 00 E8 07 03 0F 08 1E 00 F6 FF 78 B0 11")).normalized
        #expect(off.deviceTime?.instant(assumedUTCOffsetMinutes: 0).rfc3339 == "2024-03-15T08:20:00.000Z")
        #expect(value(off, .glucoseCapillaryWholeBlood) == 120)
        let conv = UnitConversion.apply([.milligramPerDecilitre], to: mol)
        #expect(close(value(conv, .glucoseCapillaryWholeBlood), 117))
    }

    @Test func statusBitsOverrideValues() throws {
        // Bit 5 "result higher than device can process" (S1/nRF5 numbering, §13.3).
        let hi = try GlucoseMeasurement.decode(hex("0A 2A 00 E8 07 03 0F 08 1E 00 78 B0 11 20 00")).normalized
        #expect(status(hi, .glucoseCapillaryWholeBlood) == .aboveDeviceRange && hi.statuses.contains("sensor-result-too-high"))
        // Time fault (bit 11) → device time unreliable.
        let tf = try GlucoseMeasurement.decode(hex("0A 2A 00 E8 07 03 0F 08 1E 00 78 B0 11 00 08")).normalized
        #expect(tf.deviceTime?.clockFlaggedUnreliable == true)
        // Control solution (type 10) is not patient data.
        let ctl = try GlucoseMeasurement.decode(hex("02 2A 00 E8 07 03 0F 08 1E 00 78 B0 4A")).normalized
        #expect(!ctl.isPatientData && ctl.observations.first?.code == HealthCodes.glucoseControlSolution)
        // A reserved type nibble (0) is coded "undetermined plasma" and flagged.
        let reserved = try GlucoseMeasurement.decode(hex("02 2A 00 E8 07 03 0F 08 1E 00 78 B0 10")).normalized
        #expect(reserved.observations.first?.code == HealthCodes.glucoseUndeterminedPlasma)
        #expect(reserved.statuses.contains("glucose-type-reserved-0") && reserved.isPatientData)
    }

    @Test func context() throws {  // §6.2 `02 2A 00 01`
        let c = try GlucoseMeasurementContext.decode(hex("02 2A 00 01"))
        #expect(c.sequenceNumber == 42 && c.meal == 1 && c.statuses == ["meal-preprandial"])
        let full = try GlucoseMeasurementContext.decode(hex("FF 2A 00 00 01 32 D0 02 51 10 0E 32 01 0A E0 05 F0"))
        #expect(full.carbohydrateID == 1 && full.carbohydrate?.decimalString == "0.050" && full.meal == 2)
        #expect(full.tester == 1 && full.health == 5 && full.exerciseDurationSeconds == 3600 && full.exerciseIntensityPercent == 50)
        #expect(full.medicationID == 1 && full.medicationInLitres && full.hbA1c?.doubleValue == 0.5)
        expectEveryPrefixThrows(hex("FF 2A 00 00 01 32 D0 02 51 10 0E 32 01 0A E0 05 F0")) { _ = try GlucoseMeasurementContext.decode($0) }
    }

    @Test func truncatedAtEveryLength() {
        expectEveryPrefixThrows(hex("1B 01 00 E3 07 02 1B 0B 0A 1E FB FF 1E 00 12 05 01")) { _ = try GlucoseMeasurement.decode($0) }
        expectEveryPrefixThrows(hex("03 2A 00 E8 07 03 0F 08 1E 00 F6 FF 78 B0 11")) { _ = try GlucoseMeasurement.decode($0) }
    }
}

@Suite struct RACPTests {
    @Test func requestEncoding() {  // §6.3 byte examples
        #expect(RACP.reportAllRecords() == hex("01 01"))
        #expect(RACP.reportRecords(greaterThanOrEqualTo: 43) == hex("01 03 01 2B 00"))
        #expect(RACP.reportRecords(in: 10...20) == hex("01 04 01 0A 00 14 00"))
        #expect(RACP.reportLastRecord() == hex("01 06"))
        #expect(RACP.reportNumberOfRecords() == hex("04 01"))
        #expect(RACP.deleteAllRecords() == hex("02 01"))
        #expect(RACP.abort() == hex("03 00"))
        #expect(RACP.reportNumberOfRecords(greaterThanOrEqualTo: 0x1234) == hex("04 03 01 34 12"))
        #expect(RACP.reportRecords(greaterThanOrEqualTo: 0x0102_0304, filter: .sequenceNumber, width: 4) == hex("01 03 01 04 03 02 01"))
    }

    @Test func incrementalDownload() {
        #expect(RACP.incrementalRequest(lastStoredSequence: nil) == hex("01 01"))
        #expect(RACP.incrementalRequest(lastStoredSequence: 42) == hex("01 03 01 2B 00"))
        #expect(RACP.incrementalRequest(lastStoredSequence: 0xFFFF) == hex("01 01"))
    }

    @Test func responses() throws {
        #expect(try RACP.decodeResponse(hex("05 00 0A 00")) == .numberOfRecords(10))
        #expect(try RACP.decodeResponse(hex("05 00 02 01")) == .numberOfRecords(258))
        #expect(try RACP.decodeResponse(hex("05 00 07")) == .numberOfRecords(7))
        #expect(try RACP.decodeResponse(hex("05 00 01 00 01 00")) == .numberOfRecords(65537))
        #expect(try RACP.decodeResponse(hex("06 00 01 01")) == .responseCode(request: .reportStoredRecords, value: .success))
        #expect(try RACP.decodeResponse(hex("06 00 01 06")) == .responseCode(request: .reportStoredRecords, value: .noRecordsFound))
        #expect(try RACP.decodeResponse(hex("06 00 02 01")) == .responseCode(request: .deleteStoredRecords, value: .success))
        #expect(try RACP.decodeResponse(hex("06 00 03 01")) == .responseCode(request: .abortOperation, value: .success))
        // Unknown response value survives.
        #expect(try RACP.decodeResponse(hex("06 00 01 0A")) == .responseCode(request: .reportStoredRecords, value: .serverBusy))
        #expect(try RACP.decodeResponse(hex("06 00 01 7F")) == .responseCode(request: .reportStoredRecords, value: RACP.ResponseValue(rawValue: 0x7F)))
        #expect(throws: HealthDecodeError.self) { try RACP.decodeResponse(hex("05 00 01 02 03")) }
        expectEveryPrefixThrows(hex("06 00 01 01")) { _ = try RACP.decodeResponse($0) }
        expectEveryPrefixThrows(hex("05 00")) { _ = try RACP.decodeResponse($0) }
    }

    @Test func oldAndNewErrorCodes() {
        #expect(RACP.WriteError(attErrorCode: 0x80) == .procedureAlreadyInProgress)  // GLS 1.0
        #expect(RACP.WriteError(attErrorCode: 0xFE) == .procedureAlreadyInProgress)  // newer specs
        #expect(RACP.WriteError(attErrorCode: 0x81) == .cccdImproperlyConfigured)
        #expect(RACP.WriteError(attErrorCode: 0xFD) == .cccdImproperlyConfigured)
        #expect(RACP.WriteError(attErrorCode: 0x0F) == .insufficientSecurity)
        #expect(RACP.WriteError(attErrorCode: 0x42) == .other(0x42))
    }
}

@Suite struct CGMTests {
    @Test func crcCheckValues() {  // §8
        #expect(crc16MCRF4XX(Array("123456789".utf8)) == 0x6F91)
        #expect(crc16MCRF4XX(hex("3E 01 02 03 04 05 06 07 08 09")) == 0x2F01)
    }

    @Test func minimalRecord() throws {  // §8 `06 00 0C 10 06 00`
        let r = try CGMMeasurement.decode(hex("06 00 0C 10 06 00"))
        #expect(r.count == 1 && r[0].timeOffsetMinutes == 6 && r[0].e2eCRC == nil)
        let m = r[0].normalized()
        #expect(value(m, .glucoseISF) == 120 && unit(m, .glucoseISF) == .milligramPerDecilitre)
        #expect(throws: HealthDecodeError.self) { try CGMMeasurement.decode(hex("06 00 0C 10 06 00"), requireCRC: true) }
    }

    @Test func fullRecordWithCRC() throws {  // §8
        let bytes = hex("0F E3 D2 E4 05 00 02 14 FF 02 F0 E5 F3 8E 3F")
        let r = try #require(try CGMMeasurement.decode(bytes, requireCRC: true).first)
        #expect(r.glucose.doubleValue == 12.34 && r.timeOffsetMinutes == 5)
        #expect(r.warning == 0x02 && r.calTemp == 0x14 && r.status == 0xFF)
        #expect(r.trend?.doubleValue == 0.2 && r.quality?.doubleValue == 99.7 && r.e2eCRC == 0x3F8E)
        // Status octet 0xFF includes "sensor malfunction": no number.
        #expect(status(r.normalized(), .glucoseISF) == .invalidMeasurement)
        #expect(r.normalized().statuses.contains("above-patient-high"))
        // One bit flipped anywhere → CRC mismatch (or a size error), never a value.
        for i in 1..<(bytes.count - 2) {
            var b = bytes; b[i] ^= 0x01
            #expect(throws: (any Error).self) { try CGMMeasurement.decode(b) }
        }
    }

    @Test func severalRecordsAndSessionTime() throws {
        let two = try CGMMeasurement.decode(hex("06 00 0C 10 06 00 06 00 0D 10 0B 00"))
        #expect(two.map(\.timeOffsetMinutes) == [6, 11])
        let ss = try CGMSessionStartTime.decode(hex("E8 07 03 0F 08 00 00 04 00"))
        #expect(ss.utcOffsetMinutes == 60)
        let m = two[1].normalized(sessionStart: ss)
        #expect(m.deviceTime?.instant(assumedUTCOffsetMinutes: 0).rfc3339 == "2024-03-15T07:11:00.000Z")
        let withCRC = ss.encoded(withCRC: true)
        #expect(try CGMSessionStartTime.decode(withCRC) == ss)
        expectEveryPrefixThrows(hex("0F E3 D2 E4 05 00 02 14 FF 02 F0 E5 F3 8E 3F")) { _ = try CGMMeasurement.decode($0) }
    }
}
